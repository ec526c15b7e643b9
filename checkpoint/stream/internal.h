/*
 * checkpoint/stream/internal.h — shared between the files of
 * checkpoint/stream/ only.
 *
 *   names.c      record type names
 *   digest.c     the running SHA-256 over stream bytes (writer and reader)
 *   xsimage.c    framing check of a xenstore migration image
 *   writer.c     struct pvm_ckpt_writer
 *   reader.c     pvm_ckpt_read() and its per-type dispatch tables
 *   file.c       plain and lz4 stream files, verify over a file
 *   xlhdr.c      the xl save-file header, libxl's stream head
 */
#ifndef PVM_CKPT_STREAM_INTERNAL_H
#define PVM_CKPT_STREAM_INTERNAL_H

#include "checkpoint/stream/stream.h"
#include "common/common.h"

/* Big-endian helpers for the three big-endian headers. */
static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static inline void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static inline uint64_t get_be64(const uint8_t *p)
{
	return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4);
}

static inline uint32_t rec_padded(uint32_t len)
{
	return (uint32_t)(((uint64_t)len + 7u) & ~(uint64_t)7u);
}

/* True when all @n bytes at @p are zero (any @n). */
static inline bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- xenstore image ---------------------------------------------------- */

struct pvm_stream_xs_counts {
	uint32_t nodes;
	uint32_t watches;
};

/* Checks a xenstore migration image's framing: header, every record inside
 * @len, zero padding, END last and nothing after it. Fills @counts_out
 * (may be NULL). 0 or -EBADMSG with *why_out set to a static string. */
int pvm_stream_xs_image_check(const uint8_t *p, size_t len,
			      struct pvm_stream_xs_counts *counts_out,
			      const char **why_out);

#endif /* PVM_CKPT_STREAM_INTERNAL_H */
