/*
 * Wire tests for transport/frame.c: annotated golden frames, encode and
 * compare, decode the goldens, and every truncation and corruption of them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "transport/internal.h"

static uint8_t page_a[PVM_PAGE_SIZE];

/* A PAGES frame: pfn 5 (zero page) and pfn 0x1234 (page_a), raw. */
static const uint8_t golden_head[] = {
	0x06, 0x00,             /* type PAGES */
	0x00, 0x00,             /* flags (reserved) */
	0x20, 0x10, 0x00, 0x00, /* length 16 + 2*8 + 4096 = 0x1020 */
	0x02, 0x00, 0x00, 0x00, /* count 2 */
	0x00, 0x00,             /* encoding raw */
	0x00, 0x00,             /* reserved */
	0x00, 0x10, 0x00, 0x00, /* data_len 4096 */
	0x00, 0x00, 0x00, 0x00, /* reserved */
	0x05, 0, 0, 0, 0, 0, 0, 0x80, /* pfn 5 | ZERO */
	0x34, 0x12, 0, 0, 0, 0, 0, 0, /* pfn 0x1234 */
};

static void fill_page_a(void)
{
	for (size_t i = 0; i < PVM_PAGE_SIZE; i++)
		page_a[i] = (uint8_t)(i * 7 + 3);
}

static void make_batch(struct tp_batch *b)
{
	memset(b, 0, sizeof(*b));
	b->data = malloc(TP_BATCH_BYTES);
	assert_non_null(b->data);
	b->pfns[0] = 5 | TP_PFN_ZERO;
	b->pfns[1] = 0x1234;
	memcpy(b->data, page_a, PVM_PAGE_SIZE);
	b->count = 2;
	b->nonzero = 1;
}

static void test_header_golden(void **state)
{
	static const uint8_t golden[] = { 0x05, 0x00, 0x00, 0x00,
					  0x10, 0x00, 0x00, 0x00 };
	uint8_t out[8];
	uint16_t type;
	uint32_t len;
	const char *why;

	tp_put_header(out, TP_MSG, 16);
	assert_memory_equal(out, golden, sizeof(golden));
	assert_int_equal(tp_parse_header(golden, &type, &len, &why), 0);
	assert_int_equal(type, TP_MSG);
	assert_int_equal(len, 16);
}

static void test_header_rejects(void **state)
{
	uint8_t h[8];
	uint16_t type;
	uint32_t len;
	const char *why = NULL;

	tp_put_header(h, 0, 0);
	assert_int_equal(tp_parse_header(h, &type, &len, &why), -EBADMSG);
	assert_string_equal(why, "unknown frame type");
	tp_put_header(h, TP_FRAME_TYPE_MAX + 1, 0);
	assert_int_equal(tp_parse_header(h, &type, &len, &why), -EBADMSG);
	/* Lengths just over each type's bound. */
	for (uint16_t t = 1; t <= TP_FRAME_TYPE_MAX; t++) {
		tp_put_header(h, t, (uint32_t)tp_body_max(t) + 1);
		assert_int_equal(tp_parse_header(h, &type, &len, &why), -EBADMSG);
		assert_string_equal(why, "frame length exceeds the bound for its type");
		tp_put_header(h, t, (uint32_t)tp_body_max(t));
		assert_int_equal(tp_parse_header(h, &type, &len, &why), 0);
	}
	tp_put_header(h, TP_PAGES, UINT32_MAX);
	assert_int_equal(tp_parse_header(h, &type, &len, &why), -EBADMSG);
	/* Reserved flags are ignored on read. */
	tp_put_header(h, TP_KEEPALIVE, 0);
	h[2] = 0xff;
	assert_int_equal(tp_parse_header(h, &type, &len, &why), 0);
}

static void test_pages_encode_golden(void **state)
{
	struct tp_batch b;
	uint8_t *out = malloc(TP_HDR_LEN + tp_pages_body_max());
	bool lz4 = true;
	size_t n;

	fill_page_a();
	make_batch(&b);
	n = tp_encode_pages(&b, false, out, &lz4);
	assert_false(lz4);
	assert_int_equal(n, sizeof(golden_head) + PVM_PAGE_SIZE);
	assert_memory_equal(out, golden_head, sizeof(golden_head));
	assert_memory_equal(out + sizeof(golden_head), page_a, PVM_PAGE_SIZE);
	free(out);
	free(b.data);
}

static uint8_t *golden_frame(size_t *len)
{
	uint8_t *f = malloc(sizeof(golden_head) + PVM_PAGE_SIZE);

	memcpy(f, golden_head, sizeof(golden_head));
	memcpy(f + sizeof(golden_head), page_a, PVM_PAGE_SIZE);
	*len = sizeof(golden_head) + PVM_PAGE_SIZE;
	return f;
}

static int decode(const uint8_t *body, size_t len, size_t *n,
		  uint64_t *pfns, const uint8_t **pages, const char **why)
{
	static uint8_t scratch[TP_BATCH_BYTES];

	return tp_decode_pages(body, len, scratch, pfns, pages, n, why);
}

static void test_pages_decode_golden(void **state)
{
	uint64_t pfns[PVM_TP_BATCH_PAGES];
	const uint8_t *pages[PVM_TP_BATCH_PAGES];
	size_t len, n = 0;
	const char *why;
	uint8_t *f;

	fill_page_a();
	f = golden_frame(&len);
	assert_int_equal(decode(f + TP_HDR_LEN, len - TP_HDR_LEN, &n, pfns,
				pages, &why), 0);
	assert_int_equal(n, 2);
	assert_int_equal(pfns[0], 5);
	assert_null(pages[0]);
	assert_int_equal(pfns[1], 0x1234);
	assert_memory_equal(pages[1], page_a, PVM_PAGE_SIZE);
	free(f);
}

static void test_pages_every_truncation_fails(void **state)
{
	uint64_t pfns[PVM_TP_BATCH_PAGES];
	const uint8_t *pages[PVM_TP_BATCH_PAGES];
	size_t len, n;
	const char *why;
	uint8_t *f;

	fill_page_a();
	f = golden_frame(&len);
	for (size_t cut = 0; cut < len - TP_HDR_LEN; cut++) {
		/* A heap copy of exactly @cut bytes so ASan sees overreads. */
		uint8_t *t = malloc(cut ? cut : 1);

		memcpy(t, f + TP_HDR_LEN, cut);
		assert_int_equal(decode(t, cut, &n, pfns, pages, &why), -EBADMSG);
		free(t);
	}
	free(f);
}

static void test_pages_lz4_roundtrip_and_corruption(void **state)
{
	uint64_t pfns[PVM_TP_BATCH_PAGES];
	const uint8_t *pages[PVM_TP_BATCH_PAGES];
	uint8_t *out = malloc(TP_HDR_LEN + tp_pages_body_max());
	struct tp_batch b;
	size_t n, len, flips = 0;
	const char *why;
	bool lz4;

	memset(&b, 0, sizeof(b));
	b.data = malloc(TP_BATCH_BYTES);
	for (size_t i = 0; i < PVM_TP_BATCH_PAGES; i++) {
		b.pfns[i] = 1000 + i;
		memset(b.data + i * PVM_PAGE_SIZE, (int)(i % 5) + 1,
		       PVM_PAGE_SIZE);
	}
	b.count = b.nonzero = PVM_TP_BATCH_PAGES;
	len = tp_encode_pages(&b, true, out, &lz4);
	assert_true(lz4);
	assert_true(len < TP_BATCH_BYTES / 10);
	assert_int_equal(decode(out + TP_HDR_LEN, len - TP_HDR_LEN, &n, pfns,
				pages, &why), 0);
	assert_int_equal(n, PVM_TP_BATCH_PAGES);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(pfns[i], 1000 + i);
		assert_memory_equal(pages[i], b.data + i * PVM_PAGE_SIZE,
				    PVM_PAGE_SIZE);
	}
	/* Flipping any byte of the lz4 block either fails cleanly or yields
	 * data of the right size: never a crash or an overrun. */
	for (size_t off = TP_HDR_LEN + TP_PAGES_META_LEN + n * 8; off < len;
	     off++) {
		out[off] ^= 0x5a;
		if (decode(out + TP_HDR_LEN, len - TP_HDR_LEN, &n, pfns, pages,
			   &why) == -EBADMSG)
			flips++;
		out[off] ^= 0x5a;
	}
	assert_true(flips > 0);
	/* Every truncation of the compressed frame fails. */
	for (size_t cut = 0; cut < len - TP_HDR_LEN; cut++)
		assert_int_equal(decode(out + TP_HDR_LEN, cut, &n, pfns, pages,
					&why), -EBADMSG);
	free(out);
	free(b.data);
}

static void test_pages_incompressible_sent_raw(void **state)
{
	uint8_t *out = malloc(TP_HDR_LEN + tp_pages_body_max());
	struct tp_batch b;
	uint64_t x = 88172645463325252ull;
	bool lz4 = true;

	memset(&b, 0, sizeof(b));
	b.data = malloc(TP_BATCH_BYTES);
	for (size_t i = 0; i < TP_BATCH_BYTES; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b.data + i, &x, 8);
	}
	for (size_t i = 0; i < PVM_TP_BATCH_PAGES; i++)
		b.pfns[i] = i;
	b.count = b.nonzero = PVM_TP_BATCH_PAGES;
	assert_int_equal(tp_encode_pages(&b, true, out, &lz4),
			 TP_HDR_LEN + TP_PAGES_META_LEN + PVM_TP_BATCH_PAGES * 8 +
				 TP_BATCH_BYTES);
	assert_false(lz4);
	free(out);
	free(b.data);
}

static void test_pages_bad_fields(void **state)
{
	uint64_t pfns[PVM_TP_BATCH_PAGES];
	const uint8_t *pages[PVM_TP_BATCH_PAGES];
	size_t len, n;
	const char *why;
	uint8_t *f, *body;

	fill_page_a();
	f = golden_frame(&len);
	body = f + TP_HDR_LEN;
	len -= TP_HDR_LEN;

	pvm_put_le32(body, 0); /* count 0 */
	assert_int_equal(decode(body, len, &n, pfns, pages, &why), -EBADMSG);
	assert_string_equal(why, "PAGES count out of range");
	pvm_put_le32(body, PVM_TP_BATCH_PAGES + 1);
	assert_int_equal(decode(body, len, &n, pfns, pages, &why), -EBADMSG);
	pvm_put_le32(body, 2);

	pvm_put_le16(body + 4, 7); /* encoding */
	assert_int_equal(decode(body, len, &n, pfns, pages, &why), -EBADMSG);
	assert_string_equal(why, "PAGES encoding unknown");
	pvm_put_le16(body + 4, TP_ENC_LZ4); /* raw data labelled lz4 */
	assert_int_equal(decode(body, len, &n, pfns, pages, &why), -EBADMSG);
	pvm_put_le16(body + 4, TP_ENC_RAW);

	body[16 + 6] = 0x10; /* reserved pfn bit 52 */
	assert_int_equal(decode(body, len, &n, pfns, pages, &why), -EBADMSG);
	assert_string_equal(why, "PAGES pfn word has reserved bits set");
	body[16 + 6] = 0;

	pvm_put_le32(body + 8, 4095); /* data_len disagrees with the frame */
	assert_int_equal(decode(body, len, &n, pfns, pages, &why), -EBADMSG);
	pvm_put_le32(body + 8, UINT32_MAX);
	assert_int_equal(decode(body, len, &n, pfns, pages, &why), -EBADMSG);
	pvm_put_le32(body + 8, 4096);

	body[16 + 7] = 0; /* first page no longer zero: data too short */
	assert_int_equal(decode(body, len, &n, pfns, pages, &why), -EBADMSG);
	assert_string_equal(why, "PAGES raw data is not one page per non-zero pfn");
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_golden),
		cmocka_unit_test(test_header_rejects),
		cmocka_unit_test(test_pages_encode_golden),
		cmocka_unit_test(test_pages_decode_golden),
		cmocka_unit_test(test_pages_every_truncation_fails),
		cmocka_unit_test(test_pages_lz4_roundtrip_and_corruption),
		cmocka_unit_test(test_pages_incompressible_sent_raw),
		cmocka_unit_test(test_pages_bad_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
