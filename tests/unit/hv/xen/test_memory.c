/*
 * hv/xen/memory.c against the fake Xen host: log-dirty through
 * xc_shadow_control / xc_logdirty_control, the PV p2m read from the tree
 * the guest publishes, foreign mappings by pfn.
 */
#include "xentest.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#define NR 1000u /* not a multiple of 64: the bitmap tail must be masked */

/* A booted 64-bit PV guest at @domid whose page pfn starts with pfn^0x5a. */
static struct fx_dom *booted(uint32_t domid, uint64_t nr)
{
	struct fx_dom *d = fx_add_dom(domid, nr, 2, false);

	fx_boot(domid, false);
	/* Tree pages live in the top pfns; mark only the ones below. */
	for (uint64_t pfn = 0; pfn < nr - 8; pfn++)
		fx_page(domid, pfn)[0] = (uint8_t)(pfn ^ 0x5a);
	return d;
}

static void test_logdirty_enable(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *d = fx_add_dom(3, NR, 1, false);
	unsigned int calls;

	assert_int_equal(hv->ops->logdirty_enable(hv, 3), 0);
	assert_true(d->logdirty);
	/* Already on through us: refused without asking Xen. */
	calls = fx_calls("xc_shadow_control");
	assert_fails_once(hv->ops->logdirty_enable(hv, 3), -EBUSY);
	assert_int_equal(fx_calls("xc_shadow_control"), calls);
	assert_int_equal(hv->ops->logdirty_disable(hv, 3), 0);
	assert_false(d->logdirty);
	/* Disable is idempotent. */
	assert_int_equal(hv->ops->logdirty_disable(hv, 3), 0);

	/* On by someone else: Xen says EINVAL, we say EBUSY. */
	d->logdirty = true;
	assert_fails_once(hv->ops->logdirty_enable(hv, 3), -EBUSY);
	d->logdirty = false;
	fx_fail("xc_shadow_control", 1, ENOSYS);
	assert_fails_once(hv->ops->logdirty_enable(hv, 3), -EOPNOTSUPP);
	fx_fail("xc_shadow_control", 1, ENOMEM);
	assert_fails_once(hv->ops->logdirty_enable(hv, 3), -ENOMEM);
	assert_fails_once(hv->ops->logdirty_enable(hv, 9), -ESRCH);
	/* A failed enable leaves it off: enable works afterwards. */
	assert_int_equal(hv->ops->logdirty_enable(hv, 3), 0);

	fx_fail("xc_shadow_control", 1, EIO);
	assert_fails_once(hv->ops->logdirty_disable(hv, 3), -EIO);
	assert_int_equal(hv->ops->logdirty_disable(hv, 3), 0);
}

static void test_logdirty_read_clear(void **state)
{
	static const uint64_t written[] = { 0, 5, 63, 64, 511, 999 };
	struct pvm_hv *hv = *state;
	struct pvm_bitmap bm;

	fx_add_dom(3, NR, 1, false);
	assert_int_equal(pvm_bitmap_init(&bm, NR), 0);
	assert_int_equal(hv->ops->logdirty_enable(hv, 3), 0);
	/* The log starts empty (the fake's hypercall buffer is garbage). */
	assert_int_equal(hv->ops->logdirty_read_clear(hv, 3, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), 0);

	for (size_t i = 0; i < PVM_ARRAY_SIZE(written); i++)
		fx_guest_write(3, written[i], 7, 1);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, 3, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), PVM_ARRAY_SIZE(written));
	for (size_t i = 0; i < PVM_ARRAY_SIZE(written); i++)
		assert_true(pvm_bitmap_test(&bm, written[i]));
	/* Bits past nr_pages in the last word are never garbage. */
	assert_int_equal(bm.words[(NR - 1) / 64] >> (NR % 64), 0);
	/* Cleared: the next read is empty again. */
	assert_int_equal(hv->ops->logdirty_read_clear(hv, 3, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), 0);
	assert_int_equal(fx.live_hbufs, 0);

	fx_fail("xc__hypercall_buffer_alloc_pages", 1, ENOMEM);
	assert_fails_once(hv->ops->logdirty_read_clear(hv, 3, &bm), -ENOMEM);
	fx_fail("xc_logdirty_control", 1, EFAULT);
	assert_fails_once(hv->ops->logdirty_read_clear(hv, 3, &bm), -EFAULT);
	assert_int_equal(fx.live_hbufs, 0);
	fx_fail("xc_domain_nr_gpfns", 1, ESRCH);
	assert_fails_once(hv->ops->logdirty_read_clear(hv, 3, &bm), -ESRCH);

	/* Off: Xen's EINVAL. */
	assert_int_equal(hv->ops->logdirty_disable(hv, 3), 0);
	assert_fails_once(hv->ops->logdirty_read_clear(hv, 3, &bm), -EINVAL);
	pvm_bitmap_dispose(&bm);

	/* Wrong size. */
	assert_int_equal(pvm_bitmap_init(&bm, NR + 1), 0);
	assert_fails_once(hv->ops->logdirty_read_clear(hv, 3, &bm), -EINVAL);
	pvm_bitmap_dispose(&bm);
}

static void test_map_pv(void **state)
{
	const uint64_t pfns[] = { 0, 10, 991, NR, 37 };
	struct pvm_hv *hv = *state;
	int errs[5];
	uint8_t *p = NULL;

	booted(4, NR);
	assert_int_equal(hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ, pfns, 5,
					    errs, (void **)&p),
			 0);
	assert_int_equal(errs[0], 0);
	assert_int_equal(errs[1], 0);
	assert_int_equal(errs[2], 0);
	assert_int_equal(errs[3], -EINVAL); /* beyond nr_pages */
	assert_int_equal(errs[4], 0);
	assert_int_equal(p[0 * PVM_PAGE_SIZE], 0 ^ 0x5a);
	assert_int_equal(p[1 * PVM_PAGE_SIZE], 10 ^ 0x5a);
	assert_int_equal(p[2 * PVM_PAGE_SIZE], (uint8_t)(991 ^ 0x5a));
	assert_int_equal(p[4 * PVM_PAGE_SIZE], 37 ^ 0x5a);
	/* The mapping is live: a later guest write shows. */
	fx_guest_write(4, 10, 1, 0x77);
	assert_int_equal(p[1 * PVM_PAGE_SIZE + 1], 0x77);
	assert_int_equal(hv->ops->unmap_pages(hv, p, 5), 0);

	/* The p2m is read once and reused. */
	unsigned int maps = fx_calls("xenforeignmemory_map");

	assert_int_equal(hv->ops->map_pages(hv, 4, PVM_HV_MAP_WRITE, pfns, 1,
					    errs, (void **)&p),
			 0);
	assert_int_equal(fx_calls("xenforeignmemory_map"), maps + 1);
	p[100] = 0x42;
	assert_int_equal(fx_page(4, 0)[100], 0x42);
	assert_int_equal(hv->ops->unmap_pages(hv, p, 1), 0);

	/* Wrong count: the fake refuses, as munmap of a wrong range would. */
	assert_int_equal(hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ, pfns, 2,
					    errs, (void **)&p),
			 0);
	assert_fails_once(hv->ops->unmap_pages(hv, p, 1), -EINVAL);
	assert_int_equal(hv->ops->unmap_pages(hv, p, 2), 0);
}

/* A hole in the guest's p2m gives -ENOENT for that page only. */
static void test_map_pv_hole(void **state)
{
	const uint64_t pfns[] = { 6, 7 };
	struct pvm_hv *hv = *state;
	int errs[2];
	uint8_t *p;

	booted(4, 1024);
	/* fx_boot: fll at 1023, one frame list at 1022, leaves at 1020.. */
	((xen_pfn_t *)fx_page(4, 1020))[7] = INVALID_MFN;
	assert_int_equal(hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ, pfns, 2,
					    errs, (void **)&p),
			 0);
	assert_int_equal(errs[0], 0);
	assert_int_equal(errs[1], -ENOENT);
	assert_int_equal(p[0], 6 ^ 0x5a);
	assert_int_equal(hv->ops->unmap_pages(hv, p, 2), 0);
}

/*
 * Large enough for two frame lists (more than 512 p2m pages): the guest
 * is sparse, only the tree and the pages read are touched.
 */
static void test_map_pv_big(void **state)
{
	const uint64_t nr = 512 * 512 + 4096;
	const uint64_t pfns[] = { 1, 512 * 512 + 3, nr - 9 };
	struct pvm_hv *hv = *state;
	int errs[3];
	uint8_t *p;

	hv->ops->close(hv);
	fx_reset_sized(nr + 1024);
	assert_int_equal(pvm_hv_xen_open(&hv), 0);
	*state = hv;
	fx_add_dom(4, nr, 1, false);
	fx_boot(4, false);
	for (size_t i = 0; i < 3; i++)
		fx_page(4, pfns[i])[0] = (uint8_t)(i + 1);
	assert_int_equal(hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ, pfns, 3,
					    errs, (void **)&p),
			 0);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(errs[i], 0);
		assert_int_equal(p[i * PVM_PAGE_SIZE], i + 1);
	}
	assert_int_equal(hv->ops->unmap_pages(hv, p, 3), 0);
}

static void test_map_pv_unsupported(void **state)
{
	const uint64_t pfn = 1;
	struct pvm_hv *hv = *state;
	int err;
	void *p;

	/* Not booted: no tree published yet. */
	fx_add_dom(5, 256, 1, false);
	assert_fails_once(
		hv->ops->map_pages(hv, 5, PVM_HV_MAP_READ, &pfn, 1, &err, &p),
		-EOPNOTSUPP);
	/* Linear p2m only. */
	fx_boot(5, true);
	assert_fails_once(
		hv->ops->map_pages(hv, 5, PVM_HV_MAP_READ, &pfn, 1, &err, &p),
		-EOPNOTSUPP);
	/* 32-bit PV. */
	fx_boot(5, false);
	fx_dom(5)->width = 4;
	assert_fails_once(
		hv->ops->map_pages(hv, 5, PVM_HV_MAP_READ, &pfn, 1, &err, &p),
		-EOPNOTSUPP);
	fx_dom(5)->width = 8;
	assert_int_equal(
		hv->ops->map_pages(hv, 5, PVM_HV_MAP_READ, &pfn, 1, &err, &p),
		0);
	assert_int_equal(hv->ops->unmap_pages(hv, p, 1), 0);
}

static void test_map_failures(void **state)
{
	const uint64_t pfns[] = { 1, 2 };
	struct pvm_hv *hv = *state;
	int errs[2];
	void *p;

	booted(4, NR);
	fx_fail("xc_domain_get_guest_width", 1, EPERM);
	assert_fails_once(hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ, pfns, 2,
					     errs, &p),
			  -EPERM);
	/* Each step of reading the p2m: shared_info, fll, frame list, p2m. */
	for (unsigned int nth = 1; nth <= 4; nth++) {
		fx_fail("xenforeignmemory_map", nth, EFAULT);
		assert_fails_once(hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ,
						     pfns, 2, errs, &p),
				  -EFAULT);
		assert_int_equal(fx.live_maps, 0);
	}
	/* The final map (p2m loaded by now). */
	fx_fail("xenforeignmemory_map", 5, ENOMEM);
	assert_fails_once(hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ, pfns, 2,
					     errs, &p),
			  -ENOMEM);
	assert_fails_once(hv->ops->map_pages(hv, 8, PVM_HV_MAP_READ, pfns, 2,
					     errs, &p),
			  -ESRCH);
	assert_fails_once(hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ, pfns, 0,
					     errs, &p),
			  -EINVAL);
	assert_fails_once(hv->ops->map_pages(hv, 4, (enum pvm_hv_prot)2, pfns,
					     2, errs, &p),
			  -EINVAL);
}

/* The same domid, a new domain: the old p2m must not be reused. */
static void test_map_p2m_reload(void **state)
{
	const uint64_t pfn = 3;
	struct pvm_hv *hv = *state;
	struct fx_dom *d;
	int err;
	uint8_t *p;

	booted(4, NR);
	assert_int_equal(hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ, &pfn, 1,
					    &err, (void **)&p),
			 0);
	assert_int_equal(hv->ops->unmap_pages(hv, p, 1), 0);
	/* Replaced behind our back (xl destroy; xl create). */
	d = fx_dom(4);
	free(d->p2m);
	free(d->dirty);
	free(d->vcpu);
	memset(d, 0, sizeof(*d));
	booted(4, NR);
	fx_page(4, 3)[0] = 0xee;
	assert_int_equal(hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ, &pfn, 1,
					    &err, (void **)&p),
			 0);
	assert_int_equal(err, 0);
	assert_int_equal(p[0], 0xee);
	assert_int_equal(hv->ops->unmap_pages(hv, p, 1), 0);
}

static void test_map_hvm(void **state)
{
	const uint64_t pfns[] = { 0, 9, NR };
	struct pvm_hv *hv = *state;
	int errs[3];
	uint8_t *p;

	fx_add_dom(6, NR, 1, true);
	fx_page(6, 9)[0] = 0x99;
	assert_int_equal(hv->ops->map_pages(hv, 6, PVM_HV_MAP_READ, pfns, 3,
					    errs, (void **)&p),
			 0);
	assert_int_equal(errs[0], 0);
	assert_int_equal(errs[1], 0);
	assert_int_equal(errs[2], -EINVAL);
	assert_int_equal(p[PVM_PAGE_SIZE], 0x99);
	assert_int_equal(hv->ops->unmap_pages(hv, p, 3), 0);
	/* No p2m walk for an auto-translated guest. */
	assert_int_equal(fx_calls("xc_domain_get_guest_width"), 0);
}

/* Destroy through us drops the p2m mapping (teardown checks the rest). */
static void test_destroy_drops_p2m(void **state)
{
	const uint64_t pfn = 3;
	struct pvm_hv *hv = *state;
	int err;
	void *p;

	booted(4, NR);
	assert_int_equal(
		hv->ops->map_pages(hv, 4, PVM_HV_MAP_READ, &pfn, 1, &err, &p),
		0);
	assert_int_equal(hv->ops->unmap_pages(hv, p, 1), 0);
	assert_int_equal(fx.live_maps, 1); /* the cached p2m */
	assert_int_equal(hv->ops->domain_destroy(hv, 4), 0);
	assert_int_equal(fx.live_maps, 0);
}

struct hammer {
	struct pvm_hv *hv;
	unsigned int seed;
	int failures;
};

static void *hammer_maps(void *arg)
{
	struct hammer *h = arg;

	for (int it = 0; it < 300; it++) {
		uint64_t pfns[8];
		int errs[8];
		uint8_t *p;

		for (int i = 0; i < 8; i++)
			pfns[i] = (uint64_t)rand_r(&h->seed) % (NR - 8);
		if (h->hv->ops->map_pages(h->hv, 4, PVM_HV_MAP_READ, pfns, 8,
					  errs, (void **)&p)) {
			h->failures++;
			continue;
		}
		for (int i = 0; i < 8; i++)
			if (errs[i] ||
			    p[i * PVM_PAGE_SIZE] != (uint8_t)(pfns[i] ^ 0x5a))
				h->failures++;
		if (h->hv->ops->unmap_pages(h->hv, p, 8))
			h->failures++;
	}
	return NULL;
}

static void *hammer_logdirty(void *arg)
{
	struct hammer *h = arg;
	struct pvm_bitmap bm;

	if (pvm_bitmap_init(&bm, NR))
		return NULL;
	for (int it = 0; it < 300; it++) {
		if (h->hv->ops->logdirty_read_clear(h->hv, 4, &bm))
			h->failures++;
		/* Off drops the p2m: the mappers load it again, racing. */
		if (it % 10 == 9 &&
		    (h->hv->ops->logdirty_disable(h->hv, 4) ||
		     h->hv->ops->logdirty_enable(h->hv, 4)))
			h->failures++;
	}
	pvm_bitmap_dispose(&bm);
	return NULL;
}

/*
 * Threads mapping pages of a PV guest whose p2m is not loaded yet (they
 * race to load it) while another reads the dirty log and now and then
 * turns it off and on (which drops the p2m): every map reads the right
 * pages and at most one p2m mapping is left at the end.
 */
static void test_threads(void **state)
{
	struct pvm_hv *hv = *state;
	struct hammer h[3] = { { hv, 1, 0 }, { hv, 2, 0 }, { hv, 3, 0 } };
	pthread_t t[3];

	booted(4, NR);
	assert_int_equal(hv->ops->logdirty_enable(hv, 4), 0);
	assert_int_equal(pthread_create(&t[0], NULL, hammer_maps, &h[0]), 0);
	assert_int_equal(pthread_create(&t[1], NULL, hammer_maps, &h[1]), 0);
	assert_int_equal(pthread_create(&t[2], NULL, hammer_logdirty, &h[2]),
			 0);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(h[i].failures, 0);
	}
	assert_true(fx.live_maps <= 1); /* the p2m, unless just dropped */
	assert_int_equal(xt_errors, 0);
	assert_int_equal(hv->ops->logdirty_disable(hv, 4), 0);
	assert_int_equal(fx.live_maps, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		XT_TEST(test_logdirty_enable),
		XT_TEST(test_logdirty_read_clear),
		XT_TEST(test_map_pv),
		XT_TEST(test_map_pv_hole),
		XT_TEST(test_map_pv_big),
		XT_TEST(test_map_pv_unsupported),
		XT_TEST(test_map_failures),
		XT_TEST(test_map_p2m_reload),
		XT_TEST(test_map_hvm),
		XT_TEST(test_destroy_drops_p2m),
		XT_TEST(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
