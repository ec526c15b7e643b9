/* hv/sim/dirty.c: log-dirty from userfaultfd WP_ASYNC + PAGEMAP_SCAN. */
#include "simtest.h"

#define WS_FIRST 64u
#define WS_COUNT 4096u

static void test_errors(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, NULL, false);
	struct pvm_bitmap bm, wrong;
	struct pvm_hv_dominfo info;

	(void)state;
	assert_int_equal(pvm_bitmap_init(&bm, 64), 0);
	assert_int_equal(pvm_bitmap_init(&wrong, 65), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), -EINVAL);
	assert_int_equal(hv->ops->logdirty_enable(hv, d), 0);
	assert_int_equal(hv->ops->domain_info(hv, d, &info), 0);
	assert_true(info.flags & PVM_HV_DOMINF_LOGDIRTY);
	assert_int_equal(hv->ops->logdirty_enable(hv, d), -EBUSY);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &wrong), -EINVAL);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, 99, &bm), -ESRCH);
	assert_int_equal(pvm_sim_mark_dirty(hv, d, 64), -EINVAL);
	assert_int_equal(hv->ops->logdirty_disable(hv, d), 0);
	assert_int_equal(hv->ops->logdirty_disable(hv, d), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), -EINVAL);
	pvm_bitmap_dispose(&bm);
	pvm_bitmap_dispose(&wrong);
	hv->ops->close(hv);
}

/* Guest writes show up, only where the guest writes; host writes only
 * when marked; a read clears. */
static void test_reports_what_was_written(void **state)
{
	struct pvm_hv *hv = simtest_host();
	char image[64];
	uint32_t d;
	uint8_t *mem;
	struct pvm_bitmap bm;

	(void)state;
	snprintf(image, sizeof(image), "dirty:%u:%u", WS_FIRST, 100u);
	d = simtest_domain(hv, 1024, 2, image, false);
	mem = simtest_mem(hv, d);
	assert_int_equal(pvm_bitmap_init(&bm, 1024), 0);
	simtest_wait_passes(hv, d, 0, 1);
	assert_int_equal(hv->ops->logdirty_enable(hv, d), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
	/* Two more passes per vCPU: every page of the set written again. */
	simtest_wait_each_vcpu(hv, d, 2, 2);
	mem[500 * PVM_PAGE_SIZE] = 1; /* a host write, unmarked */
	mem[501 * PVM_PAGE_SIZE] = 1; /* a host write, marked */
	assert_int_equal(pvm_sim_mark_dirty(hv, d, 501), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
	for (size_t i = WS_FIRST; i < WS_FIRST + 100; i++)
		assert_true(pvm_bitmap_test(&bm, i));
	assert_true(pvm_bitmap_test(&bm, 0)); /* the pass counters */
	assert_false(pvm_bitmap_test(&bm, 500));
	assert_true(pvm_bitmap_test(&bm, 501));
	assert_int_equal(pvm_bitmap_count(&bm), 100 + 1 + 1);

	/* Paused: nothing new from the guest, scanning still works. */
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), 0);
	/* Unmarked host writes stay invisible; marks arrive once. */
	mem[600 * PVM_PAGE_SIZE] = 1;
	assert_int_equal(pvm_sim_mark_dirty(hv, d, 601), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), 1);
	assert_true(pvm_bitmap_test(&bm, 601));
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), 0);

	/* Marks made while log-dirty is off are not kept. */
	assert_int_equal(hv->ops->logdirty_disable(hv, d), 0);
	assert_int_equal(pvm_sim_mark_dirty(hv, d, 602), 0);
	assert_int_equal(hv->ops->logdirty_enable(hv, d), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), 0);
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
	pvm_bitmap_dispose(&bm);
	hv->ops->close(hv);
}

/* A writable foreign mapping marks its pages at unmap. */
static void test_write_mapping_marks_dirty(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, NULL, true);
	uint64_t pfns[2] = { 30, 33 };
	int errs[2];
	struct pvm_bitmap bm;
	uint8_t *w;

	(void)state;
	assert_int_equal(pvm_bitmap_init(&bm, 64), 0);
	assert_int_equal(hv->ops->logdirty_enable(hv, d), 0);
	assert_int_equal(hv->ops->map_pages(hv, d, PVM_HV_MAP_WRITE, pfns, 2,
					    errs, (void **)&w), 0);
	w[0] = 1;
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), 0); /* still mapped */
	assert_int_equal(hv->ops->unmap_pages(hv, w, 2), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), 2);
	assert_true(pvm_bitmap_test(&bm, 30));
	assert_true(pvm_bitmap_test(&bm, 33));
	pvm_bitmap_dispose(&bm);
	hv->ops->close(hv);
}

/* Copies into @copy every page set in @bm. */
static void copy_dirty(const struct pvm_bitmap *bm, uint8_t *copy,
		       const uint8_t *mem)
{
	for (size_t i = pvm_bitmap_next_set(bm, 0); i < bm->nbits;
	     i = pvm_bitmap_next_set(bm, i + 1))
		memcpy(copy + i * PVM_PAGE_SIZE, mem + i * PVM_PAGE_SIZE,
		       PVM_PAGE_SIZE);
}

/*
 * Stop-and-copy: pause, read once more, and the copy must then equal guest
 * memory byte for byte; every page that differed must have been reported.
 * Returns how many pages differed before that last read.
 */
static size_t checkpoint(struct pvm_hv *hv, uint32_t d, struct pvm_bitmap *bm,
			 uint8_t *copy, const uint8_t *mem)
{
	const size_t pages = bm->nbits;
	size_t stale = 0;

	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, bm), 0);
	for (size_t i = 0; i < pages; i++) {
		if (memcmp(copy + i * PVM_PAGE_SIZE, mem + i * PVM_PAGE_SIZE,
			   PVM_PAGE_SIZE) == 0)
			continue;
		stale++;
		if (!pvm_bitmap_test(bm, i))
			fail_msg("pfn %zu changed since its last copy but was "
				 "not reported", i);
	}
	copy_dirty(bm, copy, mem);
	assert_memory_equal(copy, mem, pages * PVM_PAGE_SIZE);
	/* Nothing outside the working set (and the header) was reported. */
	for (size_t i = pvm_bitmap_next_set(bm, 1); i < pages;
	     i = pvm_bitmap_next_set(bm, i + 1))
		assert_true(i >= WS_FIRST && i < WS_FIRST + WS_COUNT);
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
	return stale;
}

/*
 * The pre-copy invariant under fire: while two vCPUs write, copy every page
 * once, then for 300 rounds copy what each read-and-clear reports, and
 * every 30 rounds stop-and-copy (checkpoint above). A write that fell
 * between two reads without being reported leaves a stale page in the copy.
 * @rate: pages/s per vCPU, 0 flat out. Flat out, every page is dirty at
 * every read (races inside the scan); sparse, most pages are clean at a
 * read and written at random moments around it (races between the test and
 * the re-protection, which a non-atomic read-then-protect would lose).
 */
static void hammer(unsigned int rate)
{
	struct pvm_hv *hv = simtest_host();
	const uint64_t pages = SIMTEST_PAGES;
	char image[64];
	uint8_t *mem, *copy;
	struct pvm_bitmap bm;
	uint64_t p0, reported = 0;
	size_t stale = 0;
	uint32_t d;

	snprintf(image, sizeof(image), "dirty:%u:%u:%u", WS_FIRST, WS_COUNT,
		 rate);
	d = simtest_domain(hv, pages, 2, image, false);
	mem = simtest_mem(hv, d);
	copy = malloc(pages * PVM_PAGE_SIZE);
	assert_non_null(copy);
	assert_int_equal(pvm_bitmap_init(&bm, pages), 0);
	p0 = simtest_wait_passes(hv, d, 0, 1);

	assert_int_equal(hv->ops->logdirty_enable(hv, d), 0);
	memcpy(copy, mem, pages * PVM_PAGE_SIZE);
	for (int round = 1; round <= 300; round++) {
		/* Back-to-back reads race the writers inside the scan; the
		 * gaps let writes land between reads. */
		if (round % 3)
			simtest_sleep_ms((unsigned int)(round % 3));
		assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);
		reported += pvm_bitmap_count(&bm);
		copy_dirty(&bm, copy, mem);
		if (round % 30 == 0)
			stale += checkpoint(hv, d, &bm, copy, mem);
	}
	/* Writes after the last read: the last checkpoint has work. */
	simtest_wait_each_vcpu(hv, d, 2, 1);
	stale += checkpoint(hv, d, &bm, copy, mem);
	assert_true(stale > 0);
	assert_true(reported > 0);
	printf("# rate %u: %llu passes, %llu pages reported in 300 rounds, "
	       "%zu stale at 11 checkpoints\n", rate,
	       (unsigned long long)(simtest_passes(hv, d) - p0),
	       (unsigned long long)reported, stale);
	pvm_bitmap_dispose(&bm);
	free(copy);
	hv->ops->close(hv);
}

static void test_no_write_lost_flat_out(void **state)
{
	(void)state;
	hammer(0);
}

static void test_no_write_lost_sparse(void **state)
{
	(void)state;
	hammer(20000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_reports_what_was_written),
		cmocka_unit_test(test_write_mapping_marks_dirty),
		cmocka_unit_test(test_no_write_lost_flat_out),
		cmocka_unit_test(test_no_write_lost_sparse),
	};

	pvm_log_set_level(PVM_LOG_ERR);
	simtest_require_kernel();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
