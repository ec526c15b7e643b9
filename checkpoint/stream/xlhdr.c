/*
 * The xl save-file header (docs/stream-format.md §2.3 and §7.1), the part
 * both `xl save` and `pvmig save` put in front of the libxl stream:
 *
 *   magic[32] "Xen saved domain, xl format\n \0 \r"
 *   le32 byteorder 0x01020304   le32 mandatory_flags
 *   le32 optional_flags         le32 optional_data_len
 *   optional data: le32 config_len, config[config_len], ignored tail
 *
 * Written from the layout Xen's tools/xl/xl.h documents: xl refuses unknown
 * mandatory flags, ignores optional flags, and reads the config as JSON
 * (libxl_domain_config) when mandatory bit 0 is set, else as xl.cfg text.
 * pvmig files written before the length word existed have the config text
 * straight at the start of the option data; those are still read.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint/stream/internal.h"

static int xfail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int xfail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

bool pvm_ckpt_xlhdr_is(const uint8_t *p, size_t len)
{
	return len >= PVM_CKPT_XL_MAGIC_LEN &&
	       memcmp(p, PVM_CKPT_XL_MAGIC, PVM_CKPT_XL_MAGIC_LEN) == 0;
}

int pvm_ckpt_xlhdr_decode(const uint8_t *h, size_t len,
			  struct pvm_ckpt_xlhdr *out, char *err, size_t errlen)
{
	uint32_t mandatory;

	memset(out, 0, sizeof(*out));
	if (len < PVM_CKPT_XL_HDR_SIZE)
		return xfail(err, errlen, -EBADMSG,
			     "xl save-file header: truncated (%zu of %u bytes)",
			     len, PVM_CKPT_XL_HDR_SIZE);
	if (!pvm_ckpt_xlhdr_is(h, len))
		return xfail(err, errlen, -EBADMSG,
			     "xl save-file header: bad magic (not an xl or pvmig save file)");
	if (pvm_get_le32(h + 32) != PVM_CKPT_XL_BYTEORDER)
		return xfail(err, errlen, -ENOTSUP,
			     "xl save-file header: saved on a big-endian host (byte order %#x)",
			     pvm_get_le32(h + 32));
	mandatory = pvm_get_le32(h + 36);
	if (!(mandatory & PVM_CKPT_XL_MANDATORY_STREAMV2))
		return xfail(err, errlen, -ENOTSUP,
			     "xl save file holds a legacy (pre-4.6) stream: convert it with Xen's convert-legacy-stream first");
	if (mandatory & ~PVM_CKPT_XL_MANDATORY_KNOWN)
		return xfail(err, errlen, -ENOTSUP,
			     "xl save-file header: unknown mandatory flags %#x (written by a newer xl?)",
			     mandatory & ~PVM_CKPT_XL_MANDATORY_KNOWN);
	out->mandatory = mandatory;
	out->optional = pvm_get_le32(h + 40);
	out->optlen = pvm_get_le32(h + 44);
	if (out->optlen > PVM_CKPT_XL_OPTDATA_MAX)
		return xfail(err, errlen, -E2BIG,
			     "xl save-file header: %u bytes of option data (at most %u accepted)",
			     out->optlen, PVM_CKPT_XL_OPTDATA_MAX);
	return 0;
}

int pvm_ckpt_xlhdr_config(const uint8_t *opt, uint32_t optlen,
			  const uint8_t **cfg_out, uint32_t *cfglen_out,
			  char *err, size_t errlen)
{
	static const char legacy[] = "# pvmig ";
	uint32_t clen;

	*cfg_out = NULL;
	*cfglen_out = 0;
	if (optlen == 0)
		return 0; /* no config at all: xl accepts that too */
	/* pvmig before the length word: the text itself, NUL-padded. */
	if (optlen >= sizeof(legacy) - 1 &&
	    memcmp(opt, legacy, sizeof(legacy) - 1) == 0) {
		clen = optlen;
		while (clen && opt[clen - 1] == '\0')
			clen--;
		*cfg_out = opt;
		*cfglen_out = clen;
		return 0;
	}
	if (optlen < 4)
		return xfail(err, errlen, -EBADMSG,
			     "xl save-file header: %u bytes of option data cannot hold the config length",
			     optlen);
	clen = pvm_get_le32(opt);
	if (clen > optlen - 4)
		return xfail(err, errlen, -EBADMSG,
			     "xl save-file header: config of %u bytes in %u bytes of option data (truncated file?)",
			     clen, optlen - 4);
	*cfg_out = opt + 4;
	*cfglen_out = clen;
	return 0;
}

size_t pvm_ckpt_xlhdr_encode(uint8_t out[PVM_CKPT_XL_PREFIX_SIZE],
			     uint32_t mandatory, uint32_t cfglen,
			     uint32_t *optlen_out)
{
	/* Option data: the length word, the config, zeros to 8 (xl skips
	 * the tail; the libxl header then starts 8-aligned). */
	uint64_t optlen = PVM_ALIGN_UP(4u + (uint64_t)cfglen, 8u);

	if (optlen > PVM_CKPT_XL_OPTDATA_MAX)
		return 0;
	memcpy(out, PVM_CKPT_XL_MAGIC, PVM_CKPT_XL_MAGIC_LEN);
	pvm_put_le32(out + 32, PVM_CKPT_XL_BYTEORDER);
	pvm_put_le32(out + 36, mandatory | PVM_CKPT_XL_MANDATORY_STREAMV2);
	pvm_put_le32(out + 40, 0);
	pvm_put_le32(out + 44, (uint32_t)optlen);
	pvm_put_le32(out + 48, cfglen);
	*optlen_out = (uint32_t)optlen;
	return PVM_CKPT_XL_PREFIX_SIZE;
}

size_t pvm_ckpt_libxl_head(uint8_t out[PVM_CKPT_LIBXL_HEAD_SIZE])
{
	memset(out, 0, PVM_CKPT_LIBXL_HEAD_SIZE);
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(PVM_CKPT_XL_IDENT >> (56 - 8 * i));
	out[11] = PVM_CKPT_XL_VERSION; /* be32 version; be32 options 0 */
	pvm_put_le32(out + 16, PVM_CKPT_XL_REC_LIBXC_CONTEXT);
	pvm_put_le32(out + 20, 0);
	return PVM_CKPT_LIBXL_HEAD_SIZE;
}
