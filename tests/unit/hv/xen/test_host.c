/*
 * hv/xen/host.c against the fake Xen host: opening and closing the
 * libraries, domain list/info, create/destroy through libxl, pause/unpause,
 * the throttle (scheduler cap).
 */
#include "xentest.h"

#include <errno.h>
#include <stdlib.h>

static void test_open_close(void **state)
{
	struct pvm_hv *hv = *state;

	assert_true(pvm_hv_is_xen(hv));
	assert_string_equal(hv->ops->name, "xen");
	assert_int_equal(fx.handles_open, 4);
}

/*
 * Every slot is filled: a slot added to hv.h and forgotten here would be
 * NULL. (The table is a name pointer followed by function pointers, all
 * pointer-sized on the ABIs pvmig builds for.)
 */
static void test_every_slot(void **state)
{
	struct pvm_hv *hv = *state;
	const size_t n = sizeof(*hv->ops) / sizeof(void *);
	void *slots[sizeof(*hv->ops) / sizeof(void *)];

	static_assert(sizeof(struct pvm_hv_ops) % sizeof(void *) == 0,
		      "pointers only");
	memcpy(slots, hv->ops, sizeof(slots));
	for (size_t i = 0; i < n; i++)
		assert_non_null(slots[i]);
}

/* Each library that fails to open fails the open, and nothing leaks. */
static void test_open_failures(void **state)
{
	static const struct {
		const char *fn;
		int err, rc;
	} cases[] = {
		{ "xc_interface_open", EACCES, -EACCES },
		/* Not on Xen (no device node, no socket). */
		{ "xenforeignmemory_open", ENOENT, -EOPNOTSUPP },
		{ "xc_interface_open", ENODEV, -EOPNOTSUPP },
		{ "xs_open", ECONNREFUSED, -ECONNREFUSED },
		{ "libxl_ctx_alloc", EIO, -EIO },
	};
	struct pvm_hv *hv = *state;

	hv->ops->close(hv);
	*state = NULL;
	for (size_t i = 0; i < PVM_ARRAY_SIZE(cases); i++) {
		struct pvm_hv *h = NULL;

		fx_fail(cases[i].fn, 1, cases[i].err);
		assert_fails_once(pvm_hv_xen_open(&h), cases[i].rc);
		assert_null(h);
		assert_int_equal(fx.handles_open, 0);
	}
}

static void test_list(void **state)
{
	struct pvm_hv *hv = *state;
	struct pvm_hv_dominfo out[8];
	size_t n = 99;

	fx_add_dom(7, 1000, 2, false);
	fx_add_dom(3, 64, 1, false);
	fx_add_dom(1, 128, 4, true);
	snprintf(fx_dom(3)->name, sizeof(fx_dom(3)->name), "guest-three");
	fx_dom(7)->pause_count = 0;

	assert_int_equal(hv->ops->domain_list(hv, out, 8, &n), 0);
	assert_int_equal(n, 3); /* dom0 is not listed */
	assert_int_equal(out[0].domid, 1);
	assert_int_equal(out[1].domid, 3);
	assert_int_equal(out[2].domid, 7);
	assert_int_equal(out[0].nr_vcpus, 4);
	assert_int_equal(out[0].nr_pages, 128);
	assert_int_equal(out[0].mem_pages, 128);
	assert_int_equal(out[2].nr_pages, 1000);
	assert_int_equal(out[2].mem_pages, 1000);

	/* An HVM guest of 128 pages whose gfns reach 0xfeff*: its memory is
	 * what it holds (xl list's Mem), not its gfn space (pvmig list said
	 * 4080 MiB for the nested hosts' 128 MiB HVM and PVH guests). */
	fx_dom(1)->gpfns = 0xff000;
	assert_int_equal(hv->ops->domain_list(hv, out, 8, &n), 0);
	assert_int_equal(out[0].nr_pages, 0xff000);
	assert_int_equal(out[0].mem_pages, 128);
	fx_dom(1)->gpfns = 0;
	assert_string_equal(out[1].name, "guest-three");
	assert_string_equal(out[0].name, "");
	assert_int_equal(out[1].flags, PVM_HV_DOMINF_PAUSED);
	assert_int_equal(out[2].flags, 0);

	/* More than max: the first max, -ENOSPC. */
	assert_int_equal(hv->ops->domain_list(hv, out, 2, &n), -ENOSPC);
	assert_int_equal(n, 2);
	assert_int_equal(out[1].domid, 3);

	fx_fail("xc_domain_getinfolist", 1, EPERM);
	assert_fails_once(hv->ops->domain_list(hv, out, 8, &n), -EPERM);
}

/* More domains than one getinfolist batch (64). */
static void test_list_batches(void **state)
{
	struct pvm_hv *hv = *state;
	static struct pvm_hv_dominfo out[100];
	size_t n = 0;

	for (uint32_t id = 1; id <= 70; id++)
		assert_non_null(fx_add_dom(id * 3, 16, 1, false));
	assert_int_equal(hv->ops->domain_list(hv, out, 100, &n), 0);
	assert_int_equal(n, 70);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(out[i].domid, (i + 1) * 3);
	assert_int_equal(fx_calls("xc_domain_getinfolist"), 2);
	/* Full at exactly the number there is: not -ENOSPC. */
	assert_int_equal(hv->ops->domain_list(hv, out, 70, &n), 0);
	assert_int_equal(hv->ops->domain_list(hv, out, 69, &n), -ENOSPC);
	assert_int_equal(n, 69);
}

static void test_info(void **state)
{
	struct pvm_hv *hv = *state;
	struct pvm_hv_dominfo di;
	struct fx_dom *d = fx_add_dom(5, 256, 2, false);

	d->shutdown = true;
	d->shutdown_reason = PVM_HV_SHUTDOWN_CRASH;
	d->dying = true;
	snprintf(d->name, sizeof(d->name), "%s", "a-very-long-name");
	assert_int_equal(hv->ops->domain_info(hv, 5, &di), 0);
	assert_int_equal(di.domid, 5);
	assert_int_equal(di.flags, PVM_HV_DOMINF_PAUSED |
					   PVM_HV_DOMINF_SHUTDOWN |
					   PVM_HV_DOMINF_DYING);
	assert_int_equal(di.shutdown_reason, PVM_HV_SHUTDOWN_CRASH);
	assert_int_equal(di.nr_pages, 256);
	assert_string_equal(di.name, "a-very-long-name");

	/* No p2m left (dying): size 0, still answered. */
	fx_fail("xc_domain_nr_gpfns", 1, ESRCH);
	assert_int_equal(hv->ops->domain_info(hv, 5, &di), 0);
	assert_int_equal(di.nr_pages, 0);

	/* Log-dirty is reported once this instance turned it on. */
	d->shutdown = d->dying = false;
	assert_int_equal(hv->ops->logdirty_enable(hv, 5), 0);
	assert_int_equal(hv->ops->domain_info(hv, 5, &di), 0);
	assert_int_equal(di.flags,
			 PVM_HV_DOMINF_PAUSED | PVM_HV_DOMINF_LOGDIRTY);
	assert_int_equal(hv->ops->logdirty_disable(hv, 5), 0);

	/* getinfolist answers the next domain: 4 is not 5. */
	assert_int_equal(hv->ops->domain_info(hv, 4, &di), -ESRCH);
	assert_int_equal(hv->ops->domain_info(hv, 0x7ff0, &di), -ESRCH);
	fx_fail("xc_domain_getinfolist", 1, EFAULT);
	assert_fails_once(hv->ops->domain_info(hv, 5, &di), -EFAULT);
}

static struct pvm_hv_domain_config cfg_default(void)
{
	struct pvm_hv_domain_config c;

	memset(&c, 0, sizeof(c));
	c.domid = PVM_HV_DOMID_ANY;
	c.nr_pages = 2048;
	c.nr_vcpus = 2;
	c.start_paused = true;
	c.name = "web";
	c.image = "/boot/vmlinuz-guest";
	return c;
}

static void test_create(void **state)
{
	struct pvm_hv *hv = *state;
	struct pvm_hv_domain_config c = cfg_default();
	struct pvm_hv_dominfo di;
	uint32_t domid = 0;
	struct fx_dom *d;

	assert_int_equal(hv->ops->domain_create(hv, &c, &domid), 0);
	assert_int_equal(domid, 1);
	d = fx_dom(1);
	assert_non_null(d);
	assert_int_equal(d->pause_count, 1);
	assert_int_equal(d->nr_pages, 2048);
	assert_int_equal(d->max_vcpus, 2);
	assert_string_equal(d->kernel, "/boot/vmlinuz-guest");
	assert_int_equal(hv->ops->domain_info(hv, 1, &di), 0);
	assert_string_equal(di.name, "web");
	assert_int_equal(di.nr_vcpus, 2);

	/* Running, at a chosen domid (a restore keeps its domid). */
	c.start_paused = false;
	c.domid = 42;
	c.name = NULL;
	assert_int_equal(hv->ops->domain_create(hv, &c, &domid), 0);
	assert_int_equal(domid, 42);
	assert_int_equal(fx_dom(42)->pause_count, 0);

	/* Taken: refused before libxl is asked. */
	unsigned int calls = fx_calls("libxl_domain_create_new");

	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EEXIST);
	assert_int_equal(fx_calls("libxl_domain_create_new"), calls);
}

/* Disks, NICs and the frontend generation go to libxl with the domain. */
static void test_create_devices(void **state)
{
	struct pvm_hv *hv = *state;
	struct pvm_hv_domain_config c = cfg_default();
	uint32_t domid = 0;

	c.nr_disks = 2;
	c.disks[0] = (struct pvm_hv_disk){ "/img/root.img", "xvda", false };
	c.disks[1] = (struct pvm_hv_disk){ "/img/data.img", "xvdb", true };
	c.nr_nics = 1;
	c.nics[0] = (struct pvm_hv_nic){ { 0, 0x16, 0x3e, 1, 2, 3 }, "br9" };
	c.frontend_gen = PVM_HV_FRONTEND_LEGACY;
	assert_int_equal(hv->ops->domain_create(hv, &c, &domid), 0);
	assert_int_equal(fx.n_devices, 3);
	assert_string_equal(fx.devices[0].target, "/img/root.img");
	assert_string_equal(fx.devices[0].vdev, "xvda");
	assert_int_equal(fx.devices[0].readwrite, 1);
	assert_string_equal(fx.devices[1].vdev, "xvdb");
	assert_int_equal(fx.devices[1].readwrite, 0);
	assert_false(fx.devices[2].disk);
	assert_int_equal(fx.devices[2].devid, 0);
	assert_int_equal(fx.devices[2].mac[5], 3);
	assert_string_equal(fx.devices[2].target, "br9");
	assert_string_equal(fx_dom(domid)->xsdata, "pvmig/frontend=legacy");

	c = cfg_default();
	assert_int_equal(hv->ops->domain_create(hv, &c, &domid), 0);
	assert_string_equal(fx_dom(domid)->xsdata, "pvmig/frontend=modern");

	c.nr_disks = PVM_HV_MAX_DISKS + 1;
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EINVAL);
	c.nr_disks = 1;
	c.disks[0] = (struct pvm_hv_disk){ NULL, "xvda", false };
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EINVAL);
	c.nr_disks = 0;
	c.frontend_gen = (enum pvm_hv_frontend_gen)7;
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EINVAL);
}

static void test_create_bad_config(void **state)
{
	struct pvm_hv *hv = *state;
	struct pvm_hv_domain_config c;
	uint32_t domid = 0;

	c = cfg_default();
	c.nr_vcpus = 0;
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EINVAL);
	c = cfg_default();
	c.nr_pages = 0;
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EINVAL);
	c = cfg_default();
	c.domid = 0x7ff0;
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EINVAL);
	c = cfg_default();
	c.domid = 0;
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EINVAL);
	c = cfg_default();
	c.image = NULL;
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EINVAL);
	assert_int_equal(fx_calls("libxl_domain_create_new"), 0);
}

static void test_create_failures(void **state)
{
	struct pvm_hv *hv = *state;
	struct pvm_hv_domain_config c = cfg_default();
	uint32_t domid = 0;

	fx_fail("libxl_domain_create_new", 1, EIO);
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EIO);
	assert_null(fx_dom(1));
	fx_fail("libxl_domain_create_new", 1, EINVAL);
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EINVAL);

	/* Probing a fixed domid fails for another reason than ESRCH. */
	c.domid = 9;
	fx_fail("xc_domain_getinfolist", 1, EACCES);
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EACCES);

	/* Unpause fails: the new domain is destroyed, not left behind. */
	c.domid = PVM_HV_DOMID_ANY;
	c.start_paused = false;
	fx_fail("libxl_domain_unpause", 1, EIO);
	assert_fails_once(hv->ops->domain_create(hv, &c, &domid), -EIO);
	assert_null(fx_dom(1));
	assert_int_equal(fx_calls("libxl_domain_destroy"), 1);
}

static void test_destroy(void **state)
{
	struct pvm_hv *hv = *state;
	uint32_t before;

	fx_add_dom(4, 64, 1, false);
	fx_fail("libxl_domain_destroy", 1, EIO);
	assert_fails_once(hv->ops->domain_destroy(hv, 4), -EIO);
	assert_non_null(fx_dom(4));
	assert_int_equal(hv->ops->domain_destroy(hv, 4), 0);
	assert_null(fx_dom(4));
	assert_int_equal(hv->ops->domain_destroy(hv, 4), -ESRCH);
	before = xt_errors;
	fx_fail("xc_domain_getinfolist", 1, EIO);
	assert_int_equal(hv->ops->domain_destroy(hv, 4), -EIO);
	assert_int_equal(xt_errors - before, 1);
}

static void test_pause_nesting(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *d = fx_add_dom(2, 64, 1, false);

	d->pause_count = 0;
	assert_int_equal(hv->ops->domain_pause(hv, 2), 0);
	assert_int_equal(hv->ops->domain_pause(hv, 2), 0);
	assert_int_equal(d->pause_count, 2);
	assert_int_equal(hv->ops->domain_unpause(hv, 2), 0);
	assert_int_equal(d->pause_count, 1);
	assert_int_equal(hv->ops->domain_unpause(hv, 2), 0);
	assert_int_equal(d->pause_count, 0);
	assert_fails_once(hv->ops->domain_unpause(hv, 2), -EINVAL);
	assert_fails_once(hv->ops->domain_pause(hv, 77), -ESRCH);
	assert_fails_once(hv->ops->domain_unpause(hv, 77), -ESRCH);
	fx_fail("xc_domain_pause", 1, EPERM);
	assert_fails_once(hv->ops->domain_pause(hv, 2), -EPERM);
	assert_int_equal(d->pause_count, 0);
}

/* libxl's error codes become errnos. */
static void test_libxl_errno(void **state)
{
	(void)state;
	/* Through the public slots: a missing domain on destroy. */
	struct pvm_hv *hv = *state;

	fx_add_dom(6, 64, 1, false);
	fx_fail("libxl_domain_destroy", 1, EINVAL);
	assert_fails_once(hv->ops->domain_destroy(hv, 6), -EINVAL);
}

/*
 * domain_throttle sets the scheduler's cap to (100 - percent)% of what the
 * domain could use (all its vCPUs, or its own cap), keeps the weight, and
 * 0 puts the domain's own cap back; credit2 first, credit when the pool
 * runs credit, -EOPNOTSUPP for a scheduler without caps.
 */
static void test_throttle(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *a = fx_add_dom(5, 64, 2, false);
	struct fx_dom *b = fx_add_dom(6, 64, 4, false);
	struct fx_dom *c = fx_add_dom(7, 64, 1, false);

	/* credit2, no cap of its own: 2 vCPUs = 200%. */
	assert_int_equal(hv->ops->domain_throttle(hv, 5, 20), 0);
	assert_int_equal(a->cap, 160);
	assert_int_equal(a->weight, 256);
	assert_int_equal(hv->ops->domain_throttle(hv, 5, 50), 0);
	assert_int_equal(a->cap, 100);
	assert_int_equal(hv->ops->domain_throttle(hv, 5, 99), 0);
	assert_int_equal(a->cap, 2);
	assert_int_equal(hv->ops->domain_throttle(hv, 5, 0), 0);
	assert_int_equal(a->cap, 0);
	/* Lifting twice, or an untouched domain: nothing to restore. */
	assert_int_equal(hv->ops->domain_throttle(hv, 5, 0), 0);
	assert_int_equal(hv->ops->domain_throttle(hv, 6, 0), 0);
	assert_int_equal(fx_calls("xc_sched_credit2_domain_set"), 4);

	/* credit, with a cap of its own (150%) and another weight. */
	b->sched = FX_CREDIT;
	b->cap = 150;
	b->weight = 512;
	assert_int_equal(hv->ops->domain_throttle(hv, 6, 40), 0);
	assert_int_equal(b->cap, 90);
	assert_int_equal(b->weight, 512);
	assert_int_equal(hv->ops->domain_throttle(hv, 6, 99), 0);
	assert_int_equal(b->cap, 1); /* never 0, which would mean no cap */
	assert_int_equal(hv->ops->domain_throttle(hv, 6, 0), 0);
	assert_int_equal(b->cap, 150);

	/* A scheduler without caps, out-of-range levels, no domain. */
	c->sched = FX_RTDS;
	xt_errors = 0;
	assert_int_equal(hv->ops->domain_throttle(hv, 7, 30), -EOPNOTSUPP);
	assert_int_equal(xt_errors, 1);
	assert_int_equal(hv->ops->domain_throttle(hv, 5, 100), -EINVAL);
	assert_int_equal(a->cap, 0);
	assert_int_equal(hv->ops->domain_throttle(hv, 42, 30), -ESRCH);

	/* A failed restore keeps the saved cap for the next try. */
	assert_int_equal(hv->ops->domain_throttle(hv, 5, 50), 0);
	fx_fail("xc_sched_credit2_domain_set", 1, EPERM);
	assert_int_equal(hv->ops->domain_throttle(hv, 5, 0), -EPERM);
	assert_int_equal(a->cap, 100);
	assert_int_equal(hv->ops->domain_throttle(hv, 5, 0), 0);
	assert_int_equal(a->cap, 0);
}

/* No populate-on-demand for PV: every pfn may hold data. */
static void test_populated(void **state)
{
	struct pvm_hv *hv = *state;
	struct pvm_bitmap bm, small;

	fx_add_dom(5, 300, 1, false);
	assert_int_equal(pvm_bitmap_init(&bm, 300), 0);
	assert_int_equal(pvm_bitmap_init(&small, 299), 0);
	assert_int_equal(hv->ops->domain_populated(hv, 5, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), 300);
	xt_errors = 0;
	assert_int_equal(hv->ops->domain_populated(hv, 5, &small), -EINVAL);
	assert_int_equal(xt_errors, 1);
	assert_int_equal(hv->ops->domain_populated(hv, 42, &bm), -ESRCH);
	pvm_bitmap_dispose(&bm);
	pvm_bitmap_dispose(&small);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		XT_TEST(test_open_close),
		XT_TEST(test_every_slot),
		XT_TEST(test_open_failures),
		XT_TEST(test_list),
		XT_TEST(test_list_batches),
		XT_TEST(test_info),
		XT_TEST(test_create),
		XT_TEST(test_create_devices),
		XT_TEST(test_create_bad_config),
		XT_TEST(test_create_failures),
		XT_TEST(test_destroy),
		XT_TEST(test_pause_nesting),
		XT_TEST(test_throttle),
		XT_TEST(test_populated),
		XT_TEST(test_libxl_errno),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
