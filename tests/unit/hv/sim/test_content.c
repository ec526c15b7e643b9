/*
 * hv/sim/guest/content.c: the page content of benchmark guests. Generated
 * pages compress (lz4) like the profile measured from a real RAM image
 * says, class by class; random content does not compress; every page is a
 * pure function of (content, page, generation); a simulated guest's
 * boot:SIZE populates that region with the content at start, and a guest
 * that starts with memory brought by a restore or a migration populates
 * nothing over it.
 */
#include <lz4.h>

#include "simtest.h"
#include "hv/sim/guest/content.h"

#define PAGE PVM_CONTENT_PAGE

static double ratio_of(enum pvm_page_class k, unsigned n)
{
	static uint64_t page[PAGE / 8];
	static char out[LZ4_COMPRESSBOUND(PAGE)];
	size_t c = 0;

	for (unsigned i = 0; i < n; i++) {
		pvm_content_fill_class(k, page, 1000003ull * (i + 7),
				       pvm_content_profile[k].knob);
		int r = LZ4_compress_default((const char *)page, out, PAGE,
					     (int)sizeof(out));
		assert_true(r > 0);
		c += (size_t)r;
	}
	return (double)n * PAGE / (double)c;
}

static void test_profile(void **state)
{
	uint32_t sum = 0;
	size_t drawn[PVM_PC_COUNT] = { 0 };
	const unsigned n = 40000;

	(void)state;
	for (int k = 0; k < PVM_PC_COUNT; k++)
		sum += pvm_content_profile[k].share;
	assert_int_equal(sum, 10000);
	/* Each class compresses as measured, within 10%. */
	for (int k = PVM_PC_REPEAT; k < PVM_PC_COUNT; k++) {
		double want = pvm_content_profile[k].lz4_ratio,
		       got = ratio_of((enum pvm_page_class)k, 2000);

		if (got < want * 0.9 || got > want * 1.1)
			fail_msg("class %s: lz4 ratio %.2f, profile %.2f",
				 pvm_content_profile[k].name, got, want);
	}
	/* Random pages do not compress at all. */
	assert_true(ratio_of(PVM_PC_RANDOM, 500) < 1.0);
	/* mixed draws the classes with the profile's shares (within 1% of
	 * all pages over 40,000 draws). */
	for (unsigned i = 0; i < n; i++)
		drawn[pvm_content_class(PVM_CONTENT_MIXED, i, i % 7)]++;
	for (int k = 0; k < PVM_PC_COUNT; k++) {
		double got = 10000.0 * (double)drawn[k] / n;

		if (got < pvm_content_profile[k].share - 100.0 ||
		    got > pvm_content_profile[k].share + 100.0)
			fail_msg("class %s drawn %.0f per 10,000, profile %u",
				 pvm_content_profile[k].name, got,
				 pvm_content_profile[k].share);
	}
	assert_int_equal(pvm_content_class(PVM_CONTENT_RANDOM, 5, 5),
			 PVM_PC_RANDOM);
}

static void test_pure(void **state)
{
	static uint8_t a[PAGE], b[PAGE];

	(void)state;
	for (int c = PVM_CONTENT_COUNTER; c <= PVM_CONTENT_MIXED; c++)
		for (uint64_t p = 16; p < 16 + 200; p++) {
			memset(a, 0xaa, PAGE);
			memset(b, 0x55, PAGE);
			pvm_content_fill((enum pvm_content)c, a, p, 3);
			pvm_content_fill((enum pvm_content)c, b, p, 3);
			assert_memory_equal(a, b, PAGE);
		}
	/* A new generation rewrites the page. */
	pvm_content_fill(PVM_CONTENT_RANDOM, a, 16, 1);
	pvm_content_fill(PVM_CONTENT_RANDOM, b, 16, 2);
	assert_memory_not_equal(a, b, PAGE);
	pvm_content_fill(PVM_CONTENT_COUNTER, a, 17, 9);
	assert_int_equal(((uint64_t *)a)[PAGE / 8 - 1], 17ull << 32 | 9);
}

static void test_parse(void **state)
{
	enum pvm_content c;
	uint64_t b;

	(void)state;
	assert_int_equal(pvm_content_parse("random", &c), 0);
	assert_int_equal(c, PVM_CONTENT_RANDOM);
	assert_int_equal(pvm_content_parse("mixed", &c), 0);
	assert_int_equal(c, PVM_CONTENT_MIXED);
	assert_int_equal(pvm_content_parse("counter", &c), 0);
	assert_int_equal(c, PVM_CONTENT_COUNTER);
	assert_string_equal(pvm_content_name(c), "counter");
	assert_int_equal(pvm_content_parse("Random", &c), -EINVAL);
	assert_int_equal(pvm_content_parse("", &c), -EINVAL);
	assert_int_equal(pvm_content_parse_size("96M", &b), 0);
	assert_int_equal(b, 96ull << 20);
	assert_int_equal(pvm_content_parse_size("1GiB", &b), 0);
	assert_int_equal(b, 1ull << 30);
	assert_int_equal(pvm_content_parse_size("4096", &b), 0);
	assert_int_equal(b, 4096);
	assert_int_equal(pvm_content_parse_size("0", &b), 0);
	assert_int_equal(b, 0);
	assert_int_equal(pvm_content_parse_size("", &b), -EINVAL);
	assert_int_equal(pvm_content_parse_size("M", &b), -EINVAL);
	assert_int_equal(pvm_content_parse_size("-1", &b), -EINVAL);
	assert_int_equal(pvm_content_parse_size("12X", &b), -EINVAL);
	assert_int_equal(pvm_content_parse_size("99999999999G", &b), -EINVAL);
}

static void wait_magic(struct pvm_hv *hv, uint32_t d)
{
	const volatile struct pvm_simguest_header *hdr =
		(const void *)simtest_mem(hv, d);
	uint64_t deadline = pvm_now_ms() + SIMTEST_WAIT_MS;

	while (hdr->magic != PVM_SIMGUEST_MAGIC) {
		if (pvm_now_ms() > deadline)
			fail_msg("d%u never wrote its header", d);
		simtest_sleep_ms(1);
	}
}

/* Waits (bounded) until page @pfn holds what content @c has at gen 0. */
static void wait_page(struct pvm_hv *hv, uint32_t d, uint64_t pfn,
		      enum pvm_content c)
{
	static uint8_t want[PAGE];
	const uint8_t *mem = simtest_mem(hv, d);
	uint64_t deadline = pvm_now_ms() + SIMTEST_WAIT_MS;

	pvm_content_fill(c, want, pfn, 0);
	while (memcmp(mem + pfn * PAGE, want, PAGE) != 0) {
		if (pvm_now_ms() > deadline)
			fail_msg("d%u: pfn %llu never got its boot content", d,
				 (unsigned long long)pfn);
		simtest_sleep_ms(2);
	}
}

#define BOOT_PAGES 4096u
#define BOOT_GUEST 8192u

static void test_boot_populates(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, BOOT_GUEST, 2, "content:random,boot:16M",
				    false), r;
	struct pvm_bitmap bm;
	uint8_t *src, *dst;
	uint64_t first = BOOT_GUEST - BOOT_PAGES;

	(void)state;
	wait_magic(hv, d);
	/* The top 16 MiB, every page with its content; the rest untouched. */
	for (uint64_t p = first; p < BOOT_GUEST; p++)
		wait_page(hv, d, p, PVM_CONTENT_RANDOM);
	assert_int_equal(pvm_bitmap_init(&bm, BOOT_GUEST), 0);
	assert_int_equal(hv->ops->domain_populated(hv, d, &bm), 0);
	assert_true(pvm_bitmap_count(&bm) >= BOOT_PAGES);
	assert_true(pvm_bitmap_count(&bm) < BOOT_PAGES + 64);
	assert_false(pvm_bitmap_test(&bm, first - 1));

	/* A guest whose memory came with it (a restore: header magic set)
	 * populates nothing over it: a page changed in the copy stays. */
	r = simtest_domain(hv, BOOT_GUEST, 2, "content:random,boot:16M", true);
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	src = simtest_mem(hv, d);
	dst = simtest_mem(hv, r);
	memcpy(dst, src, (size_t)BOOT_GUEST * PAGE);
	memset(dst + (first + 5) * PAGE, 0x42, PAGE);
	assert_int_equal(hv->ops->domain_unpause(hv, r), 0);
	simtest_sleep_ms(200);
	for (unsigned i = 0; i < PAGE; i++)
		if (dst[(first + 5) * PAGE + i] != 0x42)
			fail_msg("restored guest rewrote its boot region");

	/* counter: nothing populated by default (the tests' content). */
	{
		uint32_t c = simtest_domain(hv, BOOT_GUEST, 1, "idle", false);

		wait_magic(hv, c);
		simtest_sleep_ms(100);
		assert_int_equal(hv->ops->domain_populated(hv, c, &bm), 0);
		assert_true(pvm_bitmap_count(&bm) < 64);
	}
	pvm_bitmap_dispose(&bm);
	hv->ops->close(hv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_profile),
		cmocka_unit_test(test_pure),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_boot_populates),
	};

	pvm_log_set_level(PVM_LOG_ERR);
	simtest_require_kernel();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
