/*
 * Framing check of a xenstore migration image (Xen
 * docs/designs/xenstore-migration.md): the header is big-endian, records are
 * {type u32, len u32, body, zero padding to 8} in the endianness the header's
 * flags give; pvmig accepts little-endian images only. Record bodies are the
 * xenstore server's business; this walk only proves every record lies inside
 * the image and counts nodes and watches for verify.
 */
#include "checkpoint/stream/internal.h"

int pvm_stream_xs_image_check(const uint8_t *p, size_t len,
			struct pvm_stream_xs_counts *counts_out, const char **why_out)
{
	struct pvm_stream_xs_counts counts = { 0, 0 };
	struct pvm_cursor c;
	const uint8_t *hdr, *pad;
	uint32_t version, flags, type, rlen, plen;
	bool ended = false;

	*why_out = NULL;
	pvm_cursor_init(&c, p, len);
	if (pvm_cursor_bytes(&c, PVM_CKPT_XS_IMAGE_HDR_SIZE, &hdr)) {
		*why_out = "xenstore image shorter than its header";
		return -EBADMSG;
	}
	if (get_be64(hdr) != PVM_CKPT_XS_IDENT) {
		*why_out = "xenstore image ident is not \"xenstore\"";
		return -EBADMSG;
	}
	version = get_be32(hdr + 8);
	flags = get_be32(hdr + 12);
	if (version < 1 || version > 2) {
		*why_out = "xenstore image version not 1 or 2";
		return -EBADMSG;
	}
	if (flags != 0) {
		*why_out = "xenstore image flags: big-endian or reserved bits";
		return -EBADMSG;
	}
	while (!ended) {
		if (pvm_cursor_u32(&c, &type) || pvm_cursor_u32(&c, &rlen)) {
			*why_out = "xenstore image truncated (no END record)";
			return -EBADMSG;
		}
		plen = rec_padded(rlen);
		if (plen < rlen || plen > pvm_cursor_remaining(&c)) {
			*why_out = "xenstore record runs past the image";
			return -EBADMSG;
		}
		pvm_cursor_skip(&c, rlen);
		pvm_cursor_bytes(&c, plen - rlen, &pad);
		if (!all_zero(pad, plen - rlen)) {
			*why_out = "xenstore record padding not zero";
			return -EBADMSG;
		}
		switch (type) {
		case PVM_CKPT_XS_REC_END:
			if (rlen != 0) {
				*why_out = "xenstore END record with a body";
				return -EBADMSG;
			}
			ended = true;
			break;
		case PVM_CKPT_XS_REC_NODE_DATA:
			counts.nodes++;
			break;
		case PVM_CKPT_XS_REC_WATCH_DATA:
		case PVM_CKPT_XS_REC_WATCH_DATA_EXTENDED:
			counts.watches++;
			break;
		default:
			if (type >= PVM_CKPT_XS_REC_NR) {
				*why_out = "xenstore record of a reserved type";
				return -EBADMSG;
			}
			break;
		}
	}
	if (pvm_cursor_remaining(&c)) {
		*why_out = "bytes after the xenstore END record";
		return -EBADMSG;
	}
	if (counts_out)
		*counts_out = counts;
	return 0;
}
