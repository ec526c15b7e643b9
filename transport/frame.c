/*
 * Frame headers and page batches: pure encode/decode, no I/O, so that unit
 * tests and the fuzzer drive exactly what the receive threads run.
 */
#include "transport/internal.h"

#include <lz4.h>
#include <string.h>

static_assert(TP_BATCH_BYTES <= LZ4_MAX_INPUT_SIZE, "batch fits one lz4 block");

static const char *const frame_names[] = {
	[TP_HELLO] = "HELLO",	     [TP_HELLO_ACK] = "HELLO_ACK",
	[TP_ERROR] = "ERROR",	     [TP_KEEPALIVE] = "KEEPALIVE",
	[TP_MSG] = "MSG",	     [TP_PAGES] = "PAGES",
	[TP_MARK] = "MARK",	     [TP_CLOSE] = "CLOSE",
	[TP_CLOSE_ACK] = "CLOSE_ACK",
};

const char *tp_frame_name(uint16_t type)
{
	if (type == 0 || type > TP_FRAME_TYPE_MAX)
		return "unknown";
	return frame_names[type];
}

size_t tp_pages_body_max(void)
{
	return TP_PAGES_META_LEN + PVM_TP_BATCH_PAGES * 8 +
	       (size_t)LZ4_COMPRESSBOUND(TP_BATCH_BYTES);
}

size_t tp_body_max(uint16_t type)
{
	switch (type) {
	case TP_HELLO:
		return TP_HELLO_LEN;
	case TP_HELLO_ACK:
		return TP_HELLO_ACK_LEN;
	case TP_ERROR:
		return 8 + TP_ERROR_TEXT_MAX;
	case TP_KEEPALIVE:
	case TP_CLOSE:
	case TP_CLOSE_ACK:
		return 0;
	case TP_MSG:
		return TP_MSG_HDR_LEN + PVM_TP_MSG_MAX;
	case TP_PAGES:
		return tp_pages_body_max();
	case TP_MARK:
		return TP_MARK_LEN;
	default:
		return 0;
	}
}

void tp_put_header(uint8_t *p, uint16_t type, uint32_t len)
{
	pvm_put_le16(p, type);
	pvm_put_le16(p + 2, 0);
	pvm_put_le32(p + 4, len);
}

int tp_parse_header(const uint8_t *p, uint16_t *type_out, uint32_t *len_out,
		    const char **why_out)
{
	uint16_t type = pvm_get_le16(p);
	uint32_t len = pvm_get_le32(p + 4);

	/* flags (p+2) are reserved: written as zero, ignored on read. */
	if (type == 0 || type > TP_FRAME_TYPE_MAX) {
		*why_out = "unknown frame type";
		return -EBADMSG;
	}
	if (len > tp_body_max(type)) {
		*why_out = "frame length exceeds the bound for its type";
		return -EBADMSG;
	}
	*type_out = type;
	*len_out = len;
	return 0;
}

size_t tp_encode_pages(const struct tp_batch *b, bool compress, uint8_t *out,
		       bool *lz4_out)
{
	uint8_t *meta = out + TP_HDR_LEN;
	uint8_t *words = meta + TP_PAGES_META_LEN;
	uint8_t *data = words + b->count * 8;
	size_t raw_len = b->nonzero * PVM_PAGE_SIZE;
	size_t data_len = raw_len;
	uint16_t enc = TP_ENC_RAW;
	size_t body;

	for (size_t i = 0; i < b->count; i++)
		pvm_put_le64(words + i * 8, b->pfns[i]);

	if (compress && raw_len) {
		/* Bound the output to raw_len - 1: lz4 gives up (returns 0)
		 * as soon as the block would not shrink, which is both the
		 * "send raw" rule and the cheap path for random pages. */
		int n = LZ4_compress_default((const char *)b->data,
					     (char *)data, (int)raw_len,
					     (int)raw_len - 1);
		if (n > 0) {
			data_len = (size_t)n;
			enc = TP_ENC_LZ4;
		}
	}
	if (enc == TP_ENC_RAW && raw_len)
		memcpy(data, b->data, raw_len);

	pvm_put_le32(meta, (uint32_t)b->count);
	pvm_put_le16(meta + 4, enc);
	pvm_put_le16(meta + 6, 0);
	pvm_put_le32(meta + 8, (uint32_t)data_len);
	pvm_put_le32(meta + 12, 0);

	body = TP_PAGES_META_LEN + b->count * 8 + data_len;
	tp_put_header(out, TP_PAGES, (uint32_t)body);
	*lz4_out = enc == TP_ENC_LZ4;
	return TP_HDR_LEN + body;
}

int tp_decode_pages(const uint8_t *body, size_t len, uint8_t *scratch,
		    uint64_t *pfns_out, const uint8_t **pages_out,
		    size_t *n_out, const char **why_out)
{
	struct pvm_cursor c;
	uint32_t count, data_len, rsvd32;
	uint16_t enc, rsvd16;
	const uint8_t *data;
	size_t nonzero = 0, expect;

	pvm_cursor_init(&c, body, len);
	pvm_cursor_u32(&c, &count);
	pvm_cursor_u16(&c, &enc);
	pvm_cursor_u16(&c, &rsvd16);
	pvm_cursor_u32(&c, &data_len);
	pvm_cursor_u32(&c, &rsvd32);
	if (c.err) {
		*why_out = "PAGES frame shorter than its header";
		return -EBADMSG;
	}
	if (count == 0 || count > PVM_TP_BATCH_PAGES) {
		*why_out = "PAGES count out of range";
		return -EBADMSG;
	}
	if (enc != TP_ENC_RAW && enc != TP_ENC_LZ4) {
		*why_out = "PAGES encoding unknown";
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint64_t w;

		if (pvm_cursor_u64(&c, &w)) {
			*why_out = "PAGES frame shorter than its pfn list";
			return -EBADMSG;
		}
		if (w & TP_PFN_RESERVED) {
			*why_out = "PAGES pfn word has reserved bits set";
			return -EBADMSG;
		}
		pfns_out[i] = w & TP_PFN_MASK;
		pages_out[i] = (w & TP_PFN_ZERO) ? NULL : scratch; /* fixed below */
		if (!(w & TP_PFN_ZERO))
			nonzero++;
	}
	if (pvm_cursor_remaining(&c) != data_len ||
	    pvm_cursor_bytes(&c, data_len, &data)) {
		*why_out = "PAGES data length does not match the frame";
		return -EBADMSG;
	}
	expect = nonzero * PVM_PAGE_SIZE;
	if (enc == TP_ENC_RAW) {
		if (data_len != expect) {
			*why_out = "PAGES raw data is not one page per non-zero pfn";
			return -EBADMSG;
		}
		if (expect)
			memcpy(scratch, data, expect);
	} else {
		int n;

		if (expect == 0 || data_len == 0) {
			*why_out = "PAGES lz4 block with nothing to inflate";
			return -EBADMSG;
		}
		n = LZ4_decompress_safe((const char *)data, (char *)scratch,
					(int)data_len, (int)expect);
		if (n < 0 || (size_t)n != expect) {
			*why_out = "PAGES lz4 block is corrupt or of the wrong size";
			return -EBADMSG;
		}
	}
	for (uint32_t i = 0, k = 0; i < count; i++)
		if (pages_out[i])
			pages_out[i] = scratch + (size_t)k++ * PVM_PAGE_SIZE;
	*n_out = count;
	return 0;
}
