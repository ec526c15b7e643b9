/*
 * The ops table as migration code will drive it: a live migration between
 * two simulated hosts in one process, using only hv->ops for the transfer
 * (pre-copy rounds through log-dirty and foreign mappings, stop-and-copy,
 * vCPU / grant / event-channel state), then checked from outside.
 */
#include <stdint.h>

#include <xen/xen.h> /* after <stdint.h> */
#include <xen/grant_table.h>

#include "simtest.h"

#define PAGES 16384u
#define BATCH 512u

/* Copies @n pfns from domain @sd of @src to domain @dd of @dst. */
static void copy_pfns(struct pvm_hv *src, uint32_t sd, struct pvm_hv *dst,
		      uint32_t dd, const uint64_t *pfns, size_t n)
{
	int errs[BATCH];
	void *from, *to;

	for (size_t off = 0; off < n; off += BATCH) {
		size_t k = n - off < BATCH ? n - off : BATCH;

		assert_int_equal(src->ops->map_pages(src, sd, PVM_HV_MAP_READ,
						     pfns + off, k, errs, &from), 0);
		for (size_t i = 0; i < k; i++)
			assert_int_equal(errs[i], 0);
		assert_int_equal(dst->ops->map_pages(dst, dd, PVM_HV_MAP_WRITE,
						     pfns + off, k, errs, &to), 0);
		for (size_t i = 0; i < k; i++)
			assert_int_equal(errs[i], 0);
		memcpy(to, from, k * PVM_PAGE_SIZE);
		assert_int_equal(dst->ops->unmap_pages(dst, to, k), 0);
		assert_int_equal(src->ops->unmap_pages(src, from, k), 0);
	}
}

static size_t dirty_pfns(const struct pvm_bitmap *bm, uint64_t *pfns)
{
	size_t n = 0;

	for (size_t i = pvm_bitmap_next_set(bm, 0); i < bm->nbits;
	     i = pvm_bitmap_next_set(bm, i + 1))
		pfns[n++] = i;
	return n;
}

static void test_live_migration(void **state)
{
	struct pvm_hv *src = simtest_host(), *dst = simtest_host();
	struct pvm_hv_domain_config cfg = {
		.nr_pages = PAGES, .nr_vcpus = 2, .start_paused = true,
		.name = "migrated", .image = "content:counter",
	};
	struct pvm_hv_dominfo info;
	uint64_t *pfns = malloc(PAGES * sizeof(*pfns));
	grant_entry_v1_t *gt;
	struct pvm_bitmap bm;
	struct pvm_buf b;
	uint32_t sd, dd, gp, bp, x, h;
	uint8_t *smem, *dmem;
	size_t n;
	void *p;

	(void)state;
	assert_non_null(pfns);
	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(pvm_bitmap_init(&bm, PAGES), 0);
	sd = simtest_domain(src, PAGES, 2, "dirty:16:4096", false);
	smem = simtest_mem(src, sd);
	/* The guest's device state: a grant to dom0 and a bound channel. */
	gt = (grant_entry_v1_t *)(smem + PVM_SIMGUEST_GNTTAB_PFN * PVM_PAGE_SIZE);
	gt[3].domid = 0;
	gt[3].frame = 9000;
	__atomic_store_n(&gt[3].flags, GTF_permit_access, __ATOMIC_RELEASE);
	assert_int_equal(pvm_sim_evtchn_alloc_unbound(src, sd, 0, &gp), 0);
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(src, 0, sd, gp, &bp), 0);
	simtest_wait_passes(src, sd, 0, 2);

	/* Destination: same domid, paused, nothing run yet. */
	cfg.domid = sd;
	assert_int_equal(dst->ops->domain_create(dst, &cfg, &dd), 0);
	assert_int_equal(dd, sd);

	/* Pre-copy: everything, then what got dirty, while the guest runs. */
	assert_int_equal(src->ops->logdirty_enable(src, sd), 0);
	for (size_t i = 0; i < PAGES; i++)
		pfns[i] = i;
	copy_pfns(src, sd, dst, dd, pfns, PAGES);
	for (int round = 0; round < 5; round++) {
		assert_int_equal(src->ops->logdirty_read_clear(src, sd, &bm), 0);
		n = dirty_pfns(&bm, pfns);
		copy_pfns(src, sd, dst, dd, pfns, n);
	}

	/* Stop-and-copy. The backend unmaps its grant first (quiesce). */
	assert_int_equal(pvm_sim_grant_map(src, 0, sd, 3, 0, &p, &h), 0);
	assert_int_equal(pvm_sim_grant_unmap(src, h), 0);
	assert_int_equal(src->ops->domain_pause(src, sd), 0);
	assert_int_equal(src->ops->logdirty_read_clear(src, sd, &bm), 0);
	assert_true(pvm_bitmap_count(&bm) > 0);
	n = dirty_pfns(&bm, pfns);
	copy_pfns(src, sd, dst, dd, pfns, n);
	for (uint32_t v = 0; v < 2; v++) {
		pvm_buf_reset(&b);
		assert_int_equal(src->ops->vcpu_context_get(src, sd, v, &b), 0);
		assert_int_equal(dst->ops->vcpu_context_set(dst, dd, v, b.data,
							   b.len), 0);
	}
	pvm_buf_reset(&b);
	assert_int_equal(src->ops->grant_state_get(src, sd, &b), 0);
	assert_int_equal(dst->ops->grant_state_set(dst, dd, b.data, b.len), 0);
	pvm_buf_reset(&b);
	assert_int_equal(src->ops->evtchn_state_get(src, sd, &b), 0);
	assert_int_equal(dst->ops->evtchn_state_set(dst, dd, b.data, b.len), 0);

	/* The destination holds exactly the paused source's memory. */
	dmem = simtest_mem(dst, dd);
	assert_memory_equal(dmem, smem, (size_t)PAGES * PVM_PAGE_SIZE);

	/* Its backend re-attaches to the same grant ref and guest port. */
	assert_int_equal(pvm_sim_grant_map(dst, 0, dd, 3, 0, &p, &h), 0);
	assert_int_equal(pvm_sim_grant_unmap(dst, h), 0);
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(dst, 0, dd, gp, &x), 0);

	/* Hand-over: the destination runs, the source goes. */
	assert_int_equal(dst->ops->domain_unpause(dst, dd), 0);
	assert_int_equal(src->ops->domain_destroy(src, sd), 0);
	assert_int_equal(dst->ops->domain_info(dst, dd, &info), 0);
	assert_int_equal(info.flags, 0);
	assert_string_equal(info.name, "migrated");

	pvm_bitmap_dispose(&bm);
	pvm_buf_dispose(&b);
	free(pfns);
	src->ops->close(src);
	dst->ops->close(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_live_migration),
	};

	pvm_log_set_level(PVM_LOG_ERR);
	simtest_require_kernel();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
