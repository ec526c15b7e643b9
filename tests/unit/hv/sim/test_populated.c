/*
 * hv/sim/populated.c: domain_populated reports the pages of the guest's
 * memfd that exist — those the guest, a backend or a host mapping wrote —
 * and leaves clear only pages never touched, which read as zeros. Pages
 * written after log-dirty is on are dirty as well as populated, so a copy
 * that starts from the populated set and follows log-dirty misses none.
 */
#include "simtest.h"

static void test_populated(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 4096, 1, "idle", false);
	struct pvm_bitmap bm, dirty, small;
	uint64_t pfns[3] = { 1000, 1001, 4095 };
	int errs[3];
	void *addr;
	size_t before;

	(void)state;
	{
		/* The guest writes its header once it runs (bounded wait). */
		const volatile struct pvm_simguest_header *hdr =
			(const void *)simtest_mem(hv, d);
		uint64_t deadline = pvm_now_ms() + SIMTEST_WAIT_MS;

		while (hdr->magic != PVM_SIMGUEST_MAGIC) {
			if (pvm_now_ms() > deadline)
				fail_msg("d%u never wrote its header", d);
			simtest_sleep_ms(1);
		}
	}
	assert_int_equal(pvm_bitmap_init(&bm, 4096), 0);
	assert_int_equal(pvm_bitmap_init(&dirty, 4096), 0);
	assert_int_equal(pvm_bitmap_init(&small, 100), 0);
	assert_int_equal(hv->ops->domain_populated(hv, d, &bm), 0);
	before = pvm_bitmap_count(&bm);
	/* The guest's header page exists; an idle guest leaves most alone. */
	assert_true(pvm_bitmap_test(&bm, PVM_SIMGUEST_HEADER_PFN));
	assert_true(before < 4096 / 2);
	for (unsigned i = 0; i < 3; i++)
		assert_false(pvm_bitmap_test(&bm, pfns[i]));

	/* Written through a host mapping with log-dirty on: populated and
	 * dirty both. */
	assert_int_equal(hv->ops->logdirty_enable(hv, d), 0);
	assert_int_equal(hv->ops->map_pages(hv, d, PVM_HV_MAP_WRITE, pfns, 3,
					    errs, &addr), 0);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(errs[i], 0);
		((uint8_t *)addr)[i * PVM_PAGE_SIZE + 7] = 0x5a;
	}
	assert_int_equal(hv->ops->unmap_pages(hv, addr, 3), 0);
	assert_int_equal(hv->ops->domain_populated(hv, d, &bm), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &dirty), 0);
	for (unsigned i = 0; i < 3; i++) {
		assert_true(pvm_bitmap_test(&bm, pfns[i]));
		assert_true(pvm_bitmap_test(&dirty, pfns[i]));
	}
	assert_true(pvm_bitmap_count(&bm) >= before + 3);
	assert_false(pvm_bitmap_test(&bm, 1002));
	assert_int_equal(hv->ops->logdirty_disable(hv, d), 0);

	/* Paused works too; a bitmap of the wrong size, no such domain. */
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_int_equal(hv->ops->domain_populated(hv, d, &bm), 0);
	assert_true(pvm_bitmap_test(&bm, 4095));
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
	assert_int_equal(hv->ops->domain_populated(hv, d, &small), -EINVAL);
	assert_int_equal(hv->ops->domain_populated(hv, 4242, &bm), -ESRCH);

	pvm_bitmap_dispose(&bm);
	pvm_bitmap_dispose(&dirty);
	pvm_bitmap_dispose(&small);
	hv->ops->close(hv);
}

/* A guest that writes its working set: every page of it is populated. */
static void test_workload_pages(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 2048, 2, "dirty:16:512", false);
	struct pvm_bitmap bm;

	(void)state;
	simtest_wait_each_vcpu(hv, d, 2, 2);
	assert_int_equal(pvm_bitmap_init(&bm, 2048), 0);
	assert_int_equal(hv->ops->domain_populated(hv, d, &bm), 0);
	for (uint64_t p = 16; p < 16 + 512; p++)
		if (!pvm_bitmap_test(&bm, p))
			fail_msg("pfn %llu of the working set is not populated",
				 (unsigned long long)p);
	assert_false(pvm_bitmap_test(&bm, 2047));
	pvm_bitmap_dispose(&bm);
	hv->ops->close(hv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_populated),
		cmocka_unit_test(test_workload_pages),
	};

	pvm_log_set_level(PVM_LOG_ERR);
	simtest_require_kernel();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
