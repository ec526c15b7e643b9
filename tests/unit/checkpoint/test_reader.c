/*
 * Tests for checkpoint/stream/reader.c: the goldens decode; every truncation and
 * every single-bit flip of golden_g1 fails cleanly; hand-made bad streams
 * fail with an error that names what is wrong; v2, bare libxc and xl-wrapped
 * streams read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "ckpt_test_util.h"
#include "golden.h"

static void quiet_sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
}

static void assert_msg(const struct pvm_ckpt_info *info, const char *want)
{
	if (!strstr(info->error_msg, want)) {
		print_error("error \"%s\" does not mention \"%s\"\n",
			    info->error_msg, want);
		fail();
	}
}

/* Reads @b and expects @rc with @msg in the error. */
static void expect_fail(const struct pvm_buf *b, uint64_t max_pfns, int rc,
			const char *msg)
{
	struct pvm_ckpt_info info;
	struct rec_log log = { 0 };

	assert_int_equal(read_mem(b->data, b->len, max_pfns, 0, &log, &info),
			 rc);
	assert_int_equal(info.error, rc);
	assert_msg(&info, msg);
}

static void test_g1_decode(void **state)
{
	struct pvm_ckpt_info info;
	struct rec_log log = { 0 };

	assert_int_equal(read_mem(golden_g1, sizeof(golden_g1), 16,
				  PVM_CKPT_READ_REQUIRE_CHECKSUM, &log, &info),
			 0);
	assert_string_equal(info.error_msg, "");
	assert_true(info.libxl);
	assert_false(info.xl_header);
	assert_int_equal(info.libxc_version, 3);
	assert_int_equal(info.domain_type, PVM_CKPT_DOM_X86_HVM);
	assert_int_equal(info.xen_major, 4);
	assert_int_equal(info.xen_minor, 17);
	assert_int_equal(info.bytes, sizeof(golden_g1));
	assert_int_equal(info.records, 9);
	assert_int_equal(info.nr_types, 9);
	assert_int_equal(info.by_type[0].type, PVM_CKPT_REC_META);
	assert_int_equal(info.by_type[2].type, PVM_CKPT_XC_REC_PAGE_DATA);
	assert_int_equal(info.pfns, 2);
	assert_int_equal(info.pages, 0);
	assert_int_equal(info.evtchns, 1);
	assert_int_equal(info.checksum, PVM_CKPT_CSUM_OK);
	assert_true(info.has_meta);
	assert_string_equal(info.meta.name, "g1");

	assert_int_equal(log.metas, 1);
	assert_int_equal(log.meta.nr_pages, 16);
	assert_int_equal(log.meta.nr_vcpus, 1);
	assert_int_equal(log.meta.domid, 7);
	assert_int_equal(log.meta.fe_gen, PVM_CKPT_FE_GEN_LEGACY);
	assert_int_equal(log.meta.checksum_alg, PVM_CKPT_CSUM_SHA256);
	assert_int_equal(log.pages, 2);
	assert_int_equal(log.data_pages, 0);
	assert_int_equal(log.last_pfn, 5);
	assert_int_equal(log.last_type, PVM_CKPT_PFN_XTAB);
	assert_int_equal(log.tscs, 1);
	assert_int_equal(log.tsc.mode, 1);
	assert_int_equal(log.tsc.khz, 2000000);
	assert_int_equal(log.tsc.nsec, 0x1122334455667788ull);
	assert_int_equal(log.tsc.incarnation, 3);
	assert_int_equal(log.nparams, 1);
	assert_int_equal(log.param0.index, 12);
	assert_int_equal(log.param0.value, 0xfeff0);
	assert_int_equal(log.ctx_len, 5);
	assert_memory_equal(log.ctx, "hvmcx", 5);
	assert_int_equal(log.nev, 1);
	assert_int_equal(log.ev0.port, 3);
	assert_int_equal(log.ev0.kind, PVM_CKPT_EVTCHN_INTERDOMAIN);
	assert_int_equal(log.ev0.flags, PVM_CKPT_EVTCHN_F_MASKED);
	assert_int_equal(log.ev0.remote, 9);
	assert_int_equal(log.records, 9);
}

/* One byte per source call: the reader must not depend on chunking. */
static void test_g1_byte_at_a_time(void **state)
{
	struct mem_src src = { .p = golden_g1, .len = sizeof(golden_g1),
			       .step = 1 };
	struct pvm_ckpt_read_cfg cfg = { .read = mem_read, .read_ctx = &src,
					 .max_pfns = 16 };
	struct pvm_ckpt_info info;

	assert_int_equal(pvm_ckpt_read(&cfg, &info), 0);
	assert_int_equal(info.checksum, PVM_CKPT_CSUM_OK);
}

static void test_g1_every_truncation(void **state)
{
	for (size_t n = 0; n < sizeof(golden_g1); n++) {
		struct pvm_ckpt_info info;
		struct rec_log log = { 0 };
		int rc = read_mem(golden_g1, n, 16, 0, &log, &info);

		if (rc != -EBADMSG || !strstr(info.error_msg, "truncated")) {
			print_error("prefix %zu: rc %d, \"%s\"\n", n, rc,
				    info.error_msg);
			fail();
		}
	}
}

/* Every single-bit flip anywhere in golden_g1 is caught: by a structural
 * check, or by the checksum. */
static void test_g1_every_bit_flip(void **state)
{
	uint8_t copy[sizeof(golden_g1)];

	for (size_t i = 0; i < sizeof(golden_g1) * 8; i++) {
		struct pvm_ckpt_info info;
		struct rec_log log = { 0 };
		int rc;

		memcpy(copy, golden_g1, sizeof(copy));
		copy[i / 8] ^= (uint8_t)(1u << (i % 8));
		rc = read_mem(copy, sizeof(copy), 16, 0, &log, &info);
		if (rc == 0 || info.error_msg[0] == 0) {
			print_error("flip of bit %zu (byte %zu) not detected\n",
				    i % 8, i / 8);
			fail();
		}
	}
}

/* A sample stream with data pages and every pvmig record. */
static void sample_stream(struct mem_sink *s, uint32_t flags, uint64_t npages)
{
	memset(s, 0, sizeof(*s));
	pvm_buf_init(&s->b, 64u << 20);
	assert_int_equal(write_sample(mem_write, s, flags, 256, npages), 0);
}

/* Offset of the first libxc record of @type in a pvmig-written stream. */
static size_t find_record(const struct pvm_buf *b, uint32_t type)
{
	size_t off = 64;

	while (off + 8 <= b->len) {
		uint32_t t = pvm_get_le32(b->data + off);
		uint32_t len = pvm_get_le32(b->data + off + 4);

		if (t == type)
			return off;
		if (t == PVM_CKPT_XC_REC_END)
			break;
		off += 8 + ((len + 7u) & ~7u);
	}
	fail_msg("record %#x not found", type);
	return 0;
}

static void test_sample_round_trip(void **state)
{
	struct mem_sink s;
	struct pvm_ckpt_info info;
	struct rec_log log = { 0 };
	uint64_t sum = 0;
	uint8_t page[4096];

	sample_stream(&s, 0, 100);
	assert_int_equal(read_mem(s.b.data, s.b.len, 256,
				  PVM_CKPT_READ_REQUIRE_CHECKSUM, &log, &info),
			 0);
	for (uint64_t i = 0; i < 100; i++) {
		sample_page(page, i);
		for (int k = 0; k < 4096; k++)
			sum += page[k];
	}
	assert_int_equal(log.data_pages, 100);
	assert_int_equal(log.page_sum, sum);
	assert_int_equal(info.pages, 100);
	assert_int_equal(log.devices, 1);
	assert_int_equal(log.dev_type, PVM_CKPT_DEV_VIF);
	assert_int_equal(log.dev_nr_rings, 2);
	assert_int_equal(log.ring0_ref1, 9);
	assert_int_equal(log.ring0_req_cons, 100);
	assert_string_equal(log.fe_path, "/local/domain/7/device/vif/0");
	assert_int_equal(log.xs, 1);
	assert_int_equal(info.xs_nodes, 1);
	assert_int_equal(info.xs_watches, 1);
	assert_int_equal(log.nev, 2);
	assert_int_equal(log.grant_count, 2);
	assert_int_equal(log.g0.ref, 8);
	assert_int_equal(log.g0.frame, 0x1000);
	assert_int_equal(info.checksum, PVM_CKPT_CSUM_OK);
	assert_string_equal(info.meta.name, "sample-guest");
	pvm_buf_dispose(&s.b);
}

static void flip_and_expect_checksum(size_t off)
{
	struct mem_sink s;
	struct pvm_ckpt_info info;
	struct rec_log log = { 0 };

	sample_stream(&s, 0, 8);
	s.b.data[off] ^= 0x10;
	assert_int_equal(read_mem(s.b.data, s.b.len, 256, 0, &log, &info),
			 -EBADMSG);
	assert_int_equal(info.checksum, PVM_CKPT_CSUM_BAD);
	assert_msg(&info, "PVMIG_CHECKSUM mismatch");
	pvm_buf_dispose(&s.b);
}

static void test_flip_in_page_data(void **state)
{
	struct mem_sink s;

	sample_stream(&s, 0, 8);
	/* byte 100 of the first page's contents */
	flip_and_expect_checksum(find_record(&s.b, PVM_CKPT_XC_REC_PAGE_DATA) +
				 8 + 8 + 8 * 8 + 100);
	pvm_buf_dispose(&s.b);
}

static void test_flip_in_optional_record(void **state)
{
	struct mem_sink s;
	size_t dev, gnt;

	sample_stream(&s, 0, 8);
	dev = find_record(&s.b, PVM_CKPT_REC_DEVICE);
	gnt = find_record(&s.b, PVM_CKPT_REC_GRANT);
	pvm_buf_dispose(&s.b);
	/* ring 0's req_cons: still a well-formed record, only the
	 * checksum can tell */
	flip_and_expect_checksum(dev + 8 + 96 + 8);
	/* grant entry 0's frame */
	flip_and_expect_checksum(gnt + 8 + 16 + 8);
}

static void test_flip_in_header(void **state)
{
	struct pvm_buf b;

	pvm_buf_init(&b, 4096);
	pvm_buf_put_bytes(&b, golden_g1, sizeof(golden_g1));
	b.data[3] ^= 0x01; /* "LibxlFmt" */
	expect_fail(&b, 16, -EBADMSG, "not a Xen/pvmig stream");
	b.data[3] ^= 0x01;
	b.data[26] ^= 0x80; /* libxc marker */
	expect_fail(&b, 16, -EBADMSG, "marker is not all ones");
	b.data[26] ^= 0x80;
	b.data[46] ^= 0x04; /* image header reserved: only the checksum */
	expect_fail(&b, 16, -EBADMSG, "PVMIG_CHECKSUM mismatch");
	b.data[46] ^= 0x04;
	b.data[52] ^= 0x01; /* page_shift 12 -> 13 */
	expect_fail(&b, 16, -EBADMSG, "page shift 13");
	b.data[52] ^= 0x01;
	b.data[39] ^= 0x04; /* version 3 -> 7 */
	expect_fail(&b, 16, -ENOTSUP, "libxc image version 7");
	pvm_buf_dispose(&b);
}

/* Headers and STATIC_DATA_END of a v3 HVM stream in a libxl wrapper. */
static void v3_prefix(struct pvm_buf *b)
{
	pvm_buf_init(b, 1u << 20);
	sb_libxl_hdr(b);
	sb_libxc_hdr(b, 3, PVM_CKPT_DOM_X86_HVM);
	sb_rec(b, PVM_CKPT_XC_REC_STATIC_DATA_END, NULL, 0);
}

static void v3_suffix(struct pvm_buf *b)
{
	sb_rec(b, PVM_CKPT_XC_REC_END, NULL, 0);
	sb_rec(b, PVM_CKPT_XL_REC_END, NULL, 0);
}

static void test_record_length_max(void **state)
{
	struct pvm_buf b;

	v3_prefix(&b);
	pvm_buf_put_u32(&b, PVM_CKPT_XC_REC_HVM_CONTEXT);
	pvm_buf_put_u32(&b, 0xffffffffu);
	pvm_buf_put_zeros(&b, 64);
	expect_fail(&b, 16, -E2BIG, "length 4294967295 over the limit");
	pvm_buf_dispose(&b);

	/* Just inside the bound, but the data is not there: truncated, and
	 * the reader has not allocated the claimed 16 MiB up front. */
	v3_prefix(&b);
	pvm_buf_put_u32(&b, PVM_CKPT_XC_REC_HVM_CONTEXT);
	pvm_buf_put_u32(&b, PVM_CKPT_RECORD_DEFAULT_MAX);
	pvm_buf_put_zeros(&b, 64);
	expect_fail(&b, 16, -EBADMSG, "truncated");
	pvm_buf_dispose(&b);
}

static void test_page_count_over_domain(void **state)
{
	struct pvm_buf b;

	v3_prefix(&b);
	pvm_buf_put_u32(&b, PVM_CKPT_XC_REC_PAGE_DATA);
	pvm_buf_put_u32(&b, 16);
	pvm_buf_put_u32(&b, 1000000); /* count */
	pvm_buf_put_u32(&b, 0);
	pvm_buf_put_u64(&b, 0);
	v3_suffix(&b);
	expect_fail(&b, 16, -E2BIG, "larger than the domain");
	pvm_buf_dispose(&b);

	v3_prefix(&b);
	sb_page(&b, 16, 0xaa); /* pfn 16 of a 16-page domain */
	v3_suffix(&b);
	expect_fail(&b, 16, -E2BIG, "beyond the domain");
	pvm_buf_dispose(&b);

	/* count that does not fit the length */
	v3_prefix(&b);
	pvm_buf_put_u32(&b, PVM_CKPT_XC_REC_PAGE_DATA);
	pvm_buf_put_u32(&b, 16);
	pvm_buf_put_u32(&b, 4);
	pvm_buf_put_u32(&b, 0);
	pvm_buf_put_u64(&b, 0);
	v3_suffix(&b);
	expect_fail(&b, 16, -EBADMSG, "does not fit length");
	pvm_buf_dispose(&b);

	/* a page-table type in an HVM stream */
	v3_prefix(&b);
	pvm_buf_put_u32(&b, PVM_CKPT_XC_REC_PAGE_DATA);
	pvm_buf_put_u32(&b, 16 + 4096);
	pvm_buf_put_u32(&b, 1);
	pvm_buf_put_u32(&b, 0);
	pvm_buf_put_u64(&b, 1ull << 60 | 3);
	pvm_buf_put_zeros(&b, 4096);
	v3_suffix(&b);
	expect_fail(&b, 16, -EBADMSG, "page-table type");
	pvm_buf_dispose(&b);
}

static void test_meta_over_domain(void **state)
{
	struct mem_sink s;

	sample_stream(&s, 0, 1); /* META says 256 pages */
	expect_fail(&s.b, 128, -E2BIG, "PVMIG_META: 256 pages, the domain has 128");
	pvm_buf_dispose(&s.b);
}

static void test_unknown_records(void **state)
{
	struct pvm_buf b;
	struct pvm_ckpt_info info;
	static const uint8_t body[12] = { 1, 2, 3 };

	v3_prefix(&b);
	sb_rec(&b, 0x13, body, sizeof(body));
	v3_suffix(&b);
	expect_fail(&b, 16, -ENOTSUP,
		    "unknown mandatory libxc record type 0x13");
	pvm_buf_dispose(&b);

	v3_prefix(&b);
	sb_rec(&b, 0x80001234u, body, sizeof(body));
	v3_suffix(&b);
	assert_int_equal(read_mem(b.data, b.len, 16, 0, NULL, &info), 0);
	assert_int_equal(info.optional_skipped, 1);
	assert_int_equal(info.checksum, PVM_CKPT_CSUM_ABSENT);
	pvm_buf_dispose(&b);

	/* libxl level: unknown mandatory fails, unknown optional skipped */
	v3_prefix(&b);
	sb_rec(&b, PVM_CKPT_XC_REC_END, NULL, 0);
	sb_rec(&b, 0x7, body, sizeof(body));
	sb_rec(&b, PVM_CKPT_XL_REC_END, NULL, 0);
	expect_fail(&b, 16, -ENOTSUP, "unknown mandatory libxl record type 0x7");
	pvm_buf_dispose(&b);

	/* Records Xen defines that pvmig cannot restore. */
	v3_prefix(&b);
	sb_rec(&b, PVM_CKPT_XC_REC_CHECKPOINT, NULL, 0);
	v3_suffix(&b);
	expect_fail(&b, 16, -ENOTSUP, "CHECKPOINT record");
	pvm_buf_dispose(&b);
}

static void test_not_a_stream(void **state)
{
	struct pvm_buf b;
	static const char text[] = "#!/bin/sh\necho this is not a stream\n";

	pvm_buf_init(&b, 4096);
	pvm_buf_put_bytes(&b, text, sizeof(text));
	expect_fail(&b, 16, -EBADMSG, "not a Xen/pvmig stream");
	pvm_buf_reset(&b);
	expect_fail(&b, 16, -EBADMSG, "truncated");
	pvm_buf_dispose(&b);
}

static void test_order_rules(void **state)
{
	struct pvm_buf b;
	uint8_t params[8] = { 0 };

	/* v3: memory before STATIC_DATA_END */
	pvm_buf_init(&b, 1u << 20);
	sb_libxl_hdr(&b);
	sb_libxc_hdr(&b, 3, PVM_CKPT_DOM_X86_HVM);
	sb_page(&b, 1, 0x11);
	v3_suffix(&b);
	expect_fail(&b, 16, -EPROTO, "PAGE_DATA record before STATIC_DATA_END");
	pvm_buf_dispose(&b);

	/* HVM_CONTEXT then HVM_PARAMS: libxenguest 4.17's order (xg_sr_save_
	 * x86_hvm.c, x86_hvm_end_of_checkpoint), read from every HVM save
	 * of the nested hosts; refused as -EPROTO before. */
	v3_prefix(&b);
	sb_rec(&b, PVM_CKPT_XC_REC_HVM_CONTEXT, "ctx", 3);
	sb_rec(&b, PVM_CKPT_XC_REC_HVM_PARAMS, params, sizeof(params));
	v3_suffix(&b);
	{
		struct pvm_ckpt_info info;
		struct rec_log log = { 0 };

		assert_int_equal(read_mem(b.data, b.len, 16, 0, &log, &info),
				 0);
		assert_string_equal(info.error_msg, "");
	}
	pvm_buf_dispose(&b);

	/* two STATIC_DATA_ENDs */
	v3_prefix(&b);
	sb_rec(&b, PVM_CKPT_XC_REC_STATIC_DATA_END, NULL, 0);
	v3_suffix(&b);
	expect_fail(&b, 16, -EPROTO, "second STATIC_DATA_END");
	pvm_buf_dispose(&b);

	/* END with no STATIC_DATA_END at all */
	pvm_buf_init(&b, 1u << 20);
	sb_libxl_hdr(&b);
	sb_libxc_hdr(&b, 3, PVM_CKPT_DOM_X86_HVM);
	v3_suffix(&b);
	expect_fail(&b, 16, -EBADMSG, "END before STATIC_DATA_END");
	pvm_buf_dispose(&b);

	/* PV record in an HVM stream */
	v3_prefix(&b);
	sb_rec(&b, PVM_CKPT_XC_REC_SHARED_INFO, NULL, 0);
	v3_suffix(&b);
	expect_fail(&b, 16, -EBADMSG, "SHARED_INFO record in an x86 HVM stream");
	pvm_buf_dispose(&b);
}

static void test_checksum_rules(void **state)
{
	struct mem_sink s;
	struct pvm_ckpt_info info;
	size_t csum;

	/* XEN_ONLY: fine, unless the caller requires a checksum. */
	sample_stream(&s, PVM_CKPT_WRITE_XEN_ONLY, 4);
	assert_int_equal(read_mem(s.b.data, s.b.len, 256, 0, NULL, &info), 0);
	assert_int_equal(info.checksum, PVM_CKPT_CSUM_ABSENT);
	assert_false(info.has_meta);
	expect_fail(&s.b, 256, 0, "");
	assert_int_equal(read_mem(s.b.data, s.b.len, 256,
				  PVM_CKPT_READ_REQUIRE_CHECKSUM, NULL, &info),
			 -EBADMSG);
	assert_msg(&info, "PVMIG_CHECKSUM record missing");
	pvm_buf_dispose(&s.b);

	/* META promises a checksum: cutting the record out is caught. */
	sample_stream(&s, 0, 4);
	csum = find_record(&s.b, PVM_CKPT_REC_CHECKSUM);
	memmove(s.b.data + csum, s.b.data + csum + 56, s.b.len - csum - 56);
	s.b.len -= 56;
	expect_fail(&s.b, 256, -EBADMSG, "PVMIG_CHECKSUM record missing");
	pvm_buf_dispose(&s.b);

	/* Anything between CHECKSUM and END is refused. */
	sample_stream(&s, 0, 4);
	csum = find_record(&s.b, PVM_CKPT_REC_CHECKSUM);
	{
		struct pvm_buf b;

		pvm_buf_init(&b, 1u << 20);
		pvm_buf_put_bytes(&b, s.b.data, csum + 56);
		sb_rec(&b, 0x80001234u, "x", 1);
		pvm_buf_put_bytes(&b, s.b.data + csum + 56,
				  s.b.len - csum - 56);
		expect_fail(&b, 256, -EPROTO, "after PVMIG_CHECKSUM");
		pvm_buf_dispose(&b);
	}
	pvm_buf_dispose(&s.b);
}

/* What Xen 4.5 - 4.13 wrote: libxc v2, no STATIC_DATA_END. */
static void test_v2_stream(void **state)
{
	struct pvm_buf b;
	struct pvm_ckpt_info info;
	struct rec_log log = { 0 };
	uint8_t tsc[24] = { 0 };

	pvm_buf_init(&b, 1u << 20);
	sb_libxl_hdr(&b);
	sb_libxc_hdr(&b, 2, PVM_CKPT_DOM_X86_HVM);
	sb_page(&b, 1, 0x11);
	sb_page(&b, 2, 0x22);
	sb_rec(&b, PVM_CKPT_XC_REC_X86_TSC_INFO, tsc, sizeof(tsc));
	sb_rec(&b, PVM_CKPT_XC_REC_HVM_CONTEXT, "ctx", 3);
	v3_suffix(&b);
	assert_int_equal(read_mem(b.data, b.len, 16, 0, &log, &info), 0);
	assert_int_equal(info.libxc_version, 2);
	assert_int_equal(log.data_pages, 2);
	assert_int_equal(log.page_sum, 4096u * (0x11 + 0x22));
	pvm_buf_dispose(&b);

	/* STATIC_DATA_END does not exist in v2 */
	pvm_buf_init(&b, 1u << 20);
	sb_libxl_hdr(&b);
	sb_libxc_hdr(&b, 2, PVM_CKPT_DOM_X86_HVM);
	sb_rec(&b, PVM_CKPT_XC_REC_STATIC_DATA_END, NULL, 0);
	v3_suffix(&b);
	expect_fail(&b, 16, -EBADMSG, "STATIC_DATA_END record in a v2 stream");
	pvm_buf_dispose(&b);
}

/* xl save file (as `xl save` writes), and a bare libxc stream. */
static void test_xl_and_bare_libxc(void **state)
{
	struct pvm_buf b;
	struct pvm_ckpt_info info = { 0 };
	static const char emu[] = "k1\0v1\0k2\0v2";

	pvm_buf_init(&b, 1u << 20);
	pvm_buf_put_bytes(&b, PVM_CKPT_XL_MAGIC, PVM_CKPT_XL_MAGIC_LEN);
	pvm_buf_put_u32(&b, PVM_CKPT_XL_BYTEORDER);
	pvm_buf_put_u32(&b, PVM_CKPT_XL_MANDATORY_STREAMV2);
	pvm_buf_put_u32(&b, 0);
	pvm_buf_put_u32(&b, 5); /* option data: the domain config */
	pvm_buf_put_bytes(&b, "cfg=1", 5);
	sb_libxl_hdr(&b);
	sb_libxc_hdr(&b, 3, PVM_CKPT_DOM_X86_HVM);
	sb_rec(&b, PVM_CKPT_XC_REC_STATIC_DATA_END, NULL, 0);
	sb_page(&b, 3, 0x33);
	sb_rec(&b, PVM_CKPT_XC_REC_END, NULL, 0);
	{
		uint8_t body[8 + sizeof(emu)];

		pvm_put_le32(body, PVM_CKPT_EMULATOR_QEMU_UPSTREAM);
		pvm_put_le32(body + 4, 0);
		memcpy(body + 8, emu, sizeof(emu));
		sb_rec(&b, PVM_CKPT_XL_REC_EMULATOR_XENSTORE_DATA, body,
		       sizeof(body));
	}
	sb_rec(&b, PVM_CKPT_XL_REC_END, NULL, 0);
	assert_int_equal(read_mem(b.data, b.len, 16, 0, NULL, &info), 0);
	assert_true(info.xl_header);
	assert_true(info.libxl);
	assert_int_equal(info.pages, 1);
	assert_int_equal(info.emulator_records, 1);
	pvm_buf_dispose(&b);

	pvm_buf_init(&b, 1u << 20);
	sb_libxc_hdr(&b, 3, PVM_CKPT_DOM_X86_HVM);
	sb_rec(&b, PVM_CKPT_XC_REC_STATIC_DATA_END, NULL, 0);
	sb_page(&b, 3, 0x33);
	sb_rec(&b, PVM_CKPT_XC_REC_END, NULL, 0);
	assert_int_equal(read_mem(b.data, b.len, 16, 0, NULL, &info), 0);
	assert_false(info.libxl);
	assert_int_equal(info.pages, 1);
	pvm_buf_dispose(&b);
}

/* A PV stream: refused by a restore, walked by verify. */
static void test_pv_stream(void **state)
{
	struct pvm_buf b;
	struct pvm_ckpt_info info;
	struct mem_src src;
	uint8_t pv_info[8] = { 8, 4 };
	uint8_t p2m[16] = { 0 };

	pvm_buf_init(&b, 1u << 20);
	sb_libxl_hdr(&b);
	sb_libxc_hdr(&b, 3, PVM_CKPT_DOM_X86_PV);
	sb_rec(&b, PVM_CKPT_XC_REC_X86_PV_INFO, pv_info, sizeof(pv_info));
	sb_rec(&b, PVM_CKPT_XC_REC_STATIC_DATA_END, NULL, 0);
	sb_rec(&b, PVM_CKPT_XC_REC_X86_PV_P2M_FRAMES, p2m, sizeof(p2m));
	pvm_buf_put_u32(&b, PVM_CKPT_XC_REC_PAGE_DATA);
	pvm_buf_put_u32(&b, 16 + 4096);
	pvm_buf_put_u32(&b, 1);
	pvm_buf_put_u32(&b, 0);
	pvm_buf_put_u64(&b, 1ull << 60 | 3); /* L1TAB: fine in PV */
	pvm_buf_put_zeros(&b, 4096);
	v3_suffix(&b);
	expect_fail(&b, 16, -ENOTSUP, "guest type 1");
	src = (struct mem_src){ .p = b.data, .len = b.len };
	assert_int_equal(pvm_ckpt_verify(mem_read, &src, 0, &info), 0);
	assert_int_equal(info.domain_type, PVM_CKPT_DOM_X86_PV);
	assert_int_equal(info.pages, 1);
	pvm_buf_dispose(&b);
}

static void test_handler_error_stops(void **state)
{
	struct mem_sink s;
	struct pvm_ckpt_info info;
	struct rec_log log = { .fail_page = 3 };

	sample_stream(&s, 0, 10);
	assert_int_equal(read_mem(s.b.data, s.b.len, 256, 0, &log, &info),
			 -EIO);
	assert_int_equal(log.pages, 3);
	assert_msg(&info, "PAGE_DATA: handler failed");
	pvm_buf_dispose(&s.b);
}

static void test_bad_config(void **state)
{
	struct pvm_ckpt_info info;
	struct mem_src src = { .p = golden_g1, .len = sizeof(golden_g1) };
	struct pvm_ckpt_read_cfg cfg = { .read = mem_read, .read_ctx = &src };

	assert_int_equal(pvm_ckpt_read(&cfg, &info), -EINVAL); /* max_pfns 0 */
	cfg.max_pfns = 16;
	cfg.max_record = PVM_CKPT_REC_LENGTH_XEN_MAX + 1;
	assert_int_equal(pvm_ckpt_read(&cfg, &info), -EINVAL);
	assert_int_equal(pvm_ckpt_read(NULL, &info), -EINVAL);
}

static void test_names(void **state)
{
	assert_string_equal(pvm_ckpt_record_name(1), "PAGE_DATA");
	assert_string_equal(pvm_ckpt_record_name(PVM_CKPT_REC_DEVICE),
			    "PVMIG_DEVICE");
	assert_string_equal(pvm_ckpt_record_name(0x13), "unknown mandatory");
	assert_string_equal(pvm_ckpt_record_name(0x80000013u),
			    "unknown optional");
	assert_string_equal(pvm_ckpt_libxl_record_name(1), "LIBXC_CONTEXT");
}

static int quiet(void **state)
{
	pvm_log_set_sink(quiet_sink, NULL);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_g1_decode),
		cmocka_unit_test(test_g1_byte_at_a_time),
		cmocka_unit_test(test_g1_every_truncation),
		cmocka_unit_test(test_g1_every_bit_flip),
		cmocka_unit_test(test_sample_round_trip),
		cmocka_unit_test(test_flip_in_page_data),
		cmocka_unit_test(test_flip_in_optional_record),
		cmocka_unit_test(test_flip_in_header),
		cmocka_unit_test(test_record_length_max),
		cmocka_unit_test(test_page_count_over_domain),
		cmocka_unit_test(test_meta_over_domain),
		cmocka_unit_test(test_unknown_records),
		cmocka_unit_test(test_not_a_stream),
		cmocka_unit_test(test_order_rules),
		cmocka_unit_test(test_checksum_rules),
		cmocka_unit_test(test_v2_stream),
		cmocka_unit_test(test_xl_and_bare_libxc),
		cmocka_unit_test(test_pv_stream),
		cmocka_unit_test(test_handler_error_stops),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, quiet, NULL);
}
