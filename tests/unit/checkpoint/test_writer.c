/* Tests for checkpoint/stream/writer.c: golden encodings, state and argument
 * errors, sink failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "ckpt_test_util.h"
#include "golden.h"

static void assert_bytes(const uint8_t *got, const uint8_t *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i]) {
			print_error("first difference at byte %zu: got %#x, want %#x\n",
				    i, got[i], want[i]);
			fail();
		}
}

static struct pvm_ckpt_writer *new_writer(struct mem_sink *s, uint32_t flags)
{
	struct pvm_ckpt_write_cfg cfg = { .write = mem_write, .write_ctx = s,
					  .flags = flags };
	struct pvm_ckpt_writer *w = NULL;

	pvm_buf_init(&s->b, 64u << 20);
	assert_int_equal(pvm_ckpt_writer_new(&cfg, &w), 0);
	return w;
}

static struct pvm_ckpt_meta small_meta(void)
{
	struct pvm_ckpt_meta m = { .nr_pages = 16, .nr_vcpus = 1, .domid = 7,
				   .fe_gen = PVM_CKPT_FE_GEN_LEGACY };

	strcpy(m.name, "g1");
	return m;
}

/* The calls golden_g1 encodes. */
static int write_g1(struct pvm_ckpt_writer *w)
{
	struct pvm_ckpt_meta m = small_meta();
	uint64_t pfns[2] = { 3, 5 };
	uint8_t types[2] = { PVM_CKPT_PFN_XALLOC, PVM_CKPT_PFN_XTAB };
	const void *data[2] = { NULL, NULL };
	struct pvm_ckpt_tsc_info tsc = { 1, 2000000, 0x1122334455667788ull, 3 };
	struct pvm_ckpt_hvm_param p = { 12, 0xfeff0 };
	struct pvm_ckpt_evtchn ev = { .port = 3,
				      .kind = PVM_CKPT_EVTCHN_INTERDOMAIN,
				      .flags = PVM_CKPT_EVTCHN_F_MASKED,
				      .remote = 9 };

	pvm_ckpt_write_begin(w, &m);
	pvm_ckpt_write_pages(w, pfns, types, data, 2);
	pvm_ckpt_write_tsc_info(w, &tsc);
	pvm_ckpt_write_hvm_params(w, &p, 1);
	pvm_ckpt_write_hvm_context(w, "hvmcx", 5);
	pvm_ckpt_write_evtchns(w, &ev, 1);
	return pvm_ckpt_write_finish(w);
}

static void test_g1_encode(void **state)
{
	struct mem_sink s = { 0 };
	struct pvm_ckpt_writer *w = new_writer(&s, 0);
	uint8_t digest[32];

	assert_int_equal(write_g1(w), 0);
	assert_int_equal(s.b.len, sizeof(golden_g1));
	assert_bytes(s.b.data, golden_g1, sizeof(golden_g1));
	assert_int_equal(pvm_ckpt_writer_offset(w), sizeof(golden_g1));
	/* The digest in the golden is SHA-256 of everything before it. */
	SHA256(golden_g1, GOLDEN_G1_CHECKSUM_OFF, digest);
	assert_memory_equal(golden_g1 + GOLDEN_G1_CHECKSUM_OFF + 24, digest, 32);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);
}

/* After the 64 header bytes and STATIC_DATA_END of a XEN_ONLY stream. */
#define FIRST_REC_OFF 72u

static void test_device_golden(void **state)
{
	static const uint8_t want[] = {
		/* PVMIG_DEVICE 0x80706d03, length 160 */
		0x03, 0x6d, 0x70, 0x80, 0xa0, 0x00, 0x00, 0x00,
		/* dev_type 2 (vif), devid 0 */
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* backend_domid 0, fe_state 4, be_state 4, flags 0 */
		0x00, 0x00, 0x04, 0x04, 0x00, 0x00, 0x00, 0x00,
		/* features: rx-copy | sg */
		0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* fe_path_len 29, be_path_len 32, nr_rings 2, reserved */
		0x1d, 0x00, 0x20, 0x00, 0x02, 0x00, 0x00, 0x00,
		/* "/local/domain/7/device/vif/0\0" */
		'/', 'l', 'o', 'c', 'a', 'l', '/', 'd', 'o', 'm', 'a', 'i',
		'n', '/', '7', '/', 'd', 'e', 'v', 'i', 'c', 'e', '/', 'v',
		'i', 'f', '/', '0', 0x00,
		/* "/local/domain/0/backend/vif/7/0\0" */
		'/', 'l', 'o', 'c', 'a', 'l', '/', 'd', 'o', 'm', 'a', 'i',
		'n', '/', '0', '/', 'b', 'a', 'c', 'k', 'e', 'n', 'd', '/',
		'v', 'i', 'f', '/', '7', '/', '0', 0x00,
		/* 32 + 61 = 93: pad to 96 */
		0x00, 0x00, 0x00,
		/* ring 0: queue 0, kind 1 (net tx), order 1, evtchn 5 */
		0x00, 0x00, 0x01, 0x01, 0x05, 0x00, 0x00, 0x00,
		/* req_cons 100, rsp_prod_pvt 99 */
		0x64, 0x00, 0x00, 0x00, 0x63, 0x00, 0x00, 0x00,
		/* req_prod_seen 100, reserved */
		0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* ring_ref[2] = 8, 9 */
		0x08, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
		/* ring 1: queue 0, kind 2 (net rx), order 0, evtchn 5 */
		0x00, 0x00, 0x02, 0x00, 0x05, 0x00, 0x00, 0x00,
		/* req_cons 0, rsp_prod_pvt 0, req_prod_seen 0, reserved */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* ring_ref[1] = 10, pad to 8 */
		0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	struct mem_sink s = { 0 };
	struct pvm_ckpt_writer *w = new_writer(&s, PVM_CKPT_WRITE_XEN_ONLY);
	struct pvm_ckpt_meta m = small_meta();
	struct pvm_ckpt_device d;
	struct pvm_ckpt_ring rings[2];

	sample_device(&d, rings);
	pvm_ckpt_write_begin(w, &m);
	/* STATIC_DATA_END comes with the first body record */
	assert_int_equal(s.b.len, FIRST_REC_OFF - 8);
	assert_int_equal(pvm_ckpt_write_device(w, &d), 0);
	assert_int_equal(s.b.len, FIRST_REC_OFF + sizeof(want));
	assert_bytes(s.b.data + FIRST_REC_OFF, want, sizeof(want));
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);
}

static void test_grant_xenstore_golden(void **state)
{
	static const uint8_t want_grant[] = {
		/* PVMIG_GRANT 0x80706d05, length 32 */
		0x05, 0x6d, 0x70, 0x80, 0x20, 0x00, 0x00, 0x00,
		/* version 1, nr_frames 4 */
		0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
		/* count 1, reserved */
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* ref 8, flags GTF_permit_access (1), domid 0 */
		0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
		/* frame 0x1000 */
		0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	static const uint8_t want_xs_head[] = {
		/* PVMIG_XENSTORE 0x80706d02, length 8 + image */
		0x02, 0x6d, 0x70, 0x80, 0x00, 0x00, 0x00, 0x00,
		/* format 1 (xenstore migration image), reserved */
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* image header, big-endian: "xenstore", version 1, flags 0 */
		'x', 'e', 'n', 's', 't', 'o', 'r', 'e',
		0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	};
	struct pvm_ckpt_grant ge = { 8, 1, 0, 0x1000 };
	struct pvm_ckpt_grant_table gt = { 1, 4, 1, &ge };
	struct mem_sink s = { 0 };
	struct pvm_ckpt_writer *w = new_writer(&s, PVM_CKPT_WRITE_XEN_ONLY);
	struct pvm_ckpt_meta m = small_meta();
	uint8_t xs[256], head[sizeof(want_xs_head)];
	size_t xs_len = sample_xs_image(xs);

	pvm_ckpt_write_begin(w, &m);
	assert_int_equal(pvm_ckpt_write_grants(w, &gt), 0);
	assert_bytes(s.b.data + FIRST_REC_OFF, want_grant, sizeof(want_grant));
	assert_int_equal(pvm_ckpt_write_xenstore(w, xs, xs_len), 0);
	memcpy(head, want_xs_head, sizeof(head));
	pvm_put_le32(head + 4, (uint32_t)(8 + xs_len));
	assert_bytes(s.b.data + FIRST_REC_OFF + sizeof(want_grant), head,
		     sizeof(head));
	assert_memory_equal(s.b.data + FIRST_REC_OFF + sizeof(want_grant) + 16,
			    xs, xs_len);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);
}

static void test_page_data_streamed(void **state)
{
	static const uint8_t want_head[] = {
		/* PAGE_DATA, length 8 + 16 + 4096 = 4120 */
		0x01, 0x00, 0x00, 0x00, 0x18, 0x10, 0x00, 0x00,
		/* count 2, reserved */
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* pfn 9, NOTAB */
		0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* pfn 10, XTAB: no data */
		0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0,
	};
	struct mem_sink s = { 0 };
	struct pvm_ckpt_writer *w = new_writer(&s, PVM_CKPT_WRITE_XEN_ONLY);
	struct pvm_ckpt_meta m = small_meta();
	uint8_t page[4096];
	uint64_t pfns[2] = { 9, 10 };
	uint8_t types[2] = { PVM_CKPT_PFN_NOTAB, PVM_CKPT_PFN_XTAB };
	const void *data[2] = { page, NULL };

	sample_page(page, 9);
	pvm_ckpt_write_begin(w, &m);
	assert_int_equal(pvm_ckpt_write_pages(w, pfns, types, data, 2), 0);
	assert_int_equal(s.b.len, FIRST_REC_OFF + sizeof(want_head) + 4096);
	assert_bytes(s.b.data + FIRST_REC_OFF, want_head, sizeof(want_head));
	assert_memory_equal(s.b.data + FIRST_REC_OFF + sizeof(want_head), page,
			    4096);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);
}

static void test_static_records_golden(void **state)
{
	static const uint8_t want[] = {
		/* 64: X86_CPUID_POLICY (0x11), length 24: one xen_cpuid_leaf_t */
		0x11, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00,
		0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* leaf, subleaf */
		0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, /* a, b */
		0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, /* c, d */
		/* 96: X86_MSR_POLICY (0x12), length 16: one xen_msr_entry_t */
		0x12, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,
		0xce, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* idx, flags */
		0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* val */
		/* 120: STATIC_DATA_END, written by the first body record */
		0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* 128: X86_TSC_INFO ... */
		0x08, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00,
	};
	uint8_t leaf[24] = { 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
			     2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0 };
	uint8_t msr[16] = { 0xce, 0, 0, 0, 0, 0, 0, 0, 5 };
	struct pvm_ckpt_tsc_info tsc = { 0 };
	struct mem_sink s = { 0 };
	struct pvm_ckpt_writer *w = new_writer(&s, PVM_CKPT_WRITE_XEN_ONLY);
	struct pvm_ckpt_meta m = small_meta();

	pvm_ckpt_write_begin(w, &m);
	assert_int_equal(pvm_ckpt_write_static(w, PVM_CKPT_XC_REC_X86_CPUID_POLICY,
					       leaf, sizeof(leaf)), 0);
	assert_int_equal(pvm_ckpt_write_static(w, PVM_CKPT_XC_REC_X86_MSR_POLICY,
					       msr, sizeof(msr)), 0);
	assert_int_equal(pvm_ckpt_write_tsc_info(w, &tsc), 0);
	assert_bytes(s.b.data + 64, want, sizeof(want));
	/* too late now */
	assert_int_equal(pvm_ckpt_write_static(w, PVM_CKPT_XC_REC_X86_MSR_POLICY,
					       msr, sizeof(msr)), -EPROTO);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);

	w = new_writer(&s, 0);
	pvm_ckpt_write_begin(w, &m);
	assert_int_equal(pvm_ckpt_write_static(w, PVM_CKPT_XC_REC_X86_MSR_POLICY,
					       msr, 15), -EINVAL);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);
}

static void test_state_errors_stick(void **state)
{
	struct mem_sink s = { 0 };
	struct pvm_ckpt_writer *w = new_writer(&s, 0);
	struct pvm_ckpt_meta m = small_meta();
	struct pvm_ckpt_tsc_info tsc = { 0 };

	/* A record before the headers is our caller's bug: -EPROTO. */
	assert_int_equal(pvm_ckpt_write_tsc_info(w, &tsc), -EPROTO);
	assert_int_equal(s.b.len, 0);
	/* ... and it sticks. */
	assert_int_equal(pvm_ckpt_write_begin(w, &m), -EPROTO);
	assert_int_equal(pvm_ckpt_write_finish(w), -EPROTO);
	assert_int_equal(pvm_ckpt_writer_error(w), -EPROTO);
	assert_int_equal(s.b.len, 0);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);

	w = new_writer(&s, 0);
	assert_int_equal(pvm_ckpt_write_begin(w, &m), 0);
	assert_int_equal(pvm_ckpt_write_finish(w), 0);
	assert_int_equal(pvm_ckpt_write_tsc_info(w, &tsc), -EPROTO);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);
}

static void test_bad_arguments(void **state)
{
	struct mem_sink s = { 0 };
	struct pvm_ckpt_writer *w = new_writer(&s, 0);
	struct pvm_ckpt_meta m = small_meta();
	uint8_t page[4096] = { 0 }, junk[32] = { 0 };
	uint64_t pfn = 16; /* == nr_pages: one past the domain */
	const void *data[1] = { page };

	assert_int_equal(pvm_ckpt_write_begin(w, &m), 0);
	assert_int_equal(pvm_ckpt_write_pages(w, &pfn, NULL, data, 1), -EINVAL);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);

	w = new_writer(&s, 0);
	assert_int_equal(pvm_ckpt_write_begin(w, &m), 0);
	/* Not a xenstore image: refused, nothing written. */
	assert_int_equal(pvm_ckpt_write_xenstore(w, junk, sizeof(junk)),
			 -EINVAL);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);

	w = new_writer(&s, 0);
	m.nr_pages = 0;
	assert_int_equal(pvm_ckpt_write_begin(w, &m), -EINVAL);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);

	w = new_writer(&s, 0);
	m = small_meta();
	assert_int_equal(pvm_ckpt_write_begin(w, &m), 0);
	assert_int_equal(pvm_ckpt_write_raw(w, PVM_CKPT_REC_CHECKSUM, NULL, 0),
			 -EINVAL);
	pvm_ckpt_writer_free(w);
	pvm_buf_dispose(&s.b);
}

static void test_sink_failure_sticks(void **state)
{
	for (int n = 1; n <= 11; n++) {
		struct mem_sink s = { .fail_at = n };
		struct pvm_ckpt_writer *w = new_writer(&s, 0);

		s.fail_at = n;
		assert_int_equal(write_g1(w), -ENOSPC);
		assert_int_equal(pvm_ckpt_writer_error(w), -ENOSPC);
		pvm_ckpt_writer_free(w);
		pvm_buf_dispose(&s.b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_g1_encode),
		cmocka_unit_test(test_device_golden),
		cmocka_unit_test(test_grant_xenstore_golden),
		cmocka_unit_test(test_page_data_streamed),
		cmocka_unit_test(test_static_records_golden),
		cmocka_unit_test(test_state_errors_stick),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_sink_failure_sticks),
	};

	pvm_log_set_level(PVM_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
