/* hv/sim/grant.c: v1 grant tables with Xen's map/unmap/copy semantics. */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#include <xen/xen.h> /* after <stdint.h> */
#include <xen/grant_table.h>

#include "simtest.h"

#define NPAGES 64u
#define NENT (PVM_PAGE_SIZE / sizeof(grant_entry_v1_t))

static grant_entry_v1_t *table(uint8_t *mem)
{
	return (grant_entry_v1_t *)(mem + PVM_SIMGUEST_GNTTAB_PFN * PVM_PAGE_SIZE);
}

/* What a guest does to grant a page (the flags last, as Linux does). */
static void grant(uint8_t *mem, uint32_t ref, uint16_t domid, uint32_t frame,
		  uint16_t flags)
{
	grant_entry_v1_t *e = &table(mem)[ref];

	e->domid = domid;
	e->frame = frame;
	__atomic_store_n(&e->flags, flags, __ATOMIC_RELEASE);
}

static uint16_t flags_of(uint8_t *mem, uint32_t ref)
{
	return __atomic_load_n(&table(mem)[ref].flags, __ATOMIC_ACQUIRE);
}

static void quiet(void *ctx, enum pvm_log_level lvl, const char *line)
{
	(void)ctx;
	(void)lvl;
	(void)line;
}

struct fixture {
	struct pvm_hv *hv;
	uint32_t d;
	uint8_t *mem;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->hv = simtest_host();
	f->d = simtest_domain(f->hv, NPAGES, 1, NULL, false);
	f->mem = simtest_mem(f->hv, f->d);
	grant(f->mem, 1, 0, 40, GTF_permit_access);
	grant(f->mem, 2, 0, 41, GTF_permit_access | GTF_readonly);
	grant(f->mem, 3, 5, 42, GTF_permit_access); /* for another domain */
	grant(f->mem, 4, 0, 43, GTF_invalid);
	grant(f->mem, 5, 0, 0xffffffffu, GTF_permit_access); /* bad frame */
	grant(f->mem, 6, 0, NPAGES, GTF_permit_access); /* one past the end */
	grant(f->mem, 7, 0, 44, GTF_accept_transfer);
	grant(f->mem, 8, 0, 45, GTF_permit_access | GTF_sub_page);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	f->hv->ops->close(f->hv);
	free(f);
	return 0;
}

static void test_map_write_and_unmap(void **state)
{
	struct fixture *f = *state;
	uint32_t h1, h2;
	uint8_t *p, *q;

	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 1, 0, (void **)&p,
					   &h1), 0);
	assert_int_equal(flags_of(f->mem, 1),
			 GTF_permit_access | GTF_reading | GTF_writing);
	p[100] = 0x42;
	assert_int_equal(f->mem[40 * PVM_PAGE_SIZE + 100], 0x42);
	f->mem[40 * PVM_PAGE_SIZE + 101] = 0x43;
	assert_int_equal(p[101], 0x43);

	/* A second, read-only pin: dropping the writer keeps GTF_reading. */
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 1,
					   PVM_SIM_GNTMAP_READONLY, (void **)&q,
					   &h2), 0);
	assert_int_equal(q[100], 0x42);
	assert_int_equal(pvm_sim_grant_unmap(f->hv, h1), 0);
	assert_int_equal(flags_of(f->mem, 1), GTF_permit_access | GTF_reading);
	assert_int_equal(pvm_sim_grant_unmap(f->hv, h2), 0);
	assert_int_equal(flags_of(f->mem, 1), GTF_permit_access);
	assert_int_equal(pvm_sim_grant_unmap(f->hv, h2), -ENOENT);
}

static void test_readonly_grant(void **state)
{
	struct fixture *f = *state;
	uint32_t h;
	void *p;

	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 2, 0, &p, &h), -EPERM);
	assert_int_equal(flags_of(f->mem, 2), GTF_permit_access | GTF_readonly);
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 2,
					   PVM_SIM_GNTMAP_READONLY, &p, &h), 0);
	assert_int_equal(flags_of(f->mem, 2),
			 GTF_permit_access | GTF_readonly | GTF_reading);
	assert_int_equal(pvm_sim_grant_unmap(f->hv, h), 0);
	assert_int_equal(flags_of(f->mem, 2), GTF_permit_access | GTF_readonly);
}

static void test_refused_grants(void **state)
{
	struct fixture *f = *state;
	uint32_t h;
	void *p;

	/* Not granted to this domain, not a permit_access, sub-page. */
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 3, 0, &p, &h), -EPERM);
	assert_int_equal(pvm_sim_grant_map(f->hv, 5, f->d, 1, 0, &p, &h), -EPERM);
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 4, 0, &p, &h), -EPERM);
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 7, 0, &p, &h), -EPERM);
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 8, 0, &p, &h), -EPERM);
	/* Frames outside guest memory; the busy bits are dropped again. */
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 5, 0, &p, &h), -EINVAL);
	assert_int_equal(flags_of(f->mem, 5), GTF_permit_access);
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 6, 0, &p, &h), -EINVAL);
	assert_int_equal(flags_of(f->mem, 6), GTF_permit_access);
	/* Refs beyond the table. */
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, NENT, 0, &p, &h),
			 -EINVAL);
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, UINT32_MAX, 0, &p, &h),
			 -EINVAL);
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, 99, 1, 0, &p, &h), -ESRCH);
	/* Nothing above changed the entries' domids or frames. */
	assert_int_equal(table(f->mem)[3].domid, 5);
	assert_int_equal(table(f->mem)[5].frame, 0xffffffffu);
}

static void test_copy(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[64], back[64];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(pvm_sim_grant_copy_to(f->hv, 0, f->d, 1, 4000, buf, 64),
			 0);
	assert_memory_equal(f->mem + 40 * PVM_PAGE_SIZE + 4000, buf, 64);
	assert_int_equal(pvm_sim_grant_copy_from(f->hv, 0, f->d, 1, 4000, back,
						 64), 0);
	assert_memory_equal(back, buf, 64);
	assert_int_equal(flags_of(f->mem, 1), GTF_permit_access);
	/* Crossing the page end, read-only target, wrong domain. */
	assert_int_equal(pvm_sim_grant_copy_to(f->hv, 0, f->d, 1, 4033, buf, 64),
			 -EINVAL);
	assert_int_equal(pvm_sim_grant_copy_from(f->hv, 0, f->d, 1, 8192, back,
						 0), -EINVAL);
	assert_int_equal(pvm_sim_grant_copy_to(f->hv, 0, f->d, 2, 0, buf, 64),
			 -EPERM);
	assert_int_equal(pvm_sim_grant_copy_from(f->hv, 0, f->d, 2, 0, back, 64),
			 0);
	assert_int_equal(pvm_sim_grant_copy_from(f->hv, 0, f->d, 3, 0, back, 64),
			 -EPERM);
	assert_int_equal(pvm_sim_grant_copy_from(f->hv, 0, f->d, 5, 0, back, 64),
			 -EINVAL);
}

/* Backend writes and the busy bits are reported to log-dirty. */
static void test_logdirty_sees_backend_writes(void **state)
{
	struct fixture *f = *state;
	struct pvm_bitmap bm;
	uint8_t byte = 9;
	uint32_t h;
	uint8_t *p;

	assert_int_equal(pvm_bitmap_init(&bm, NPAGES), 0);
	assert_int_equal(f->hv->ops->domain_pause(f->hv, f->d), 0);
	assert_int_equal(f->hv->ops->logdirty_enable(f->hv, f->d), 0);
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 1, 0, (void **)&p,
					   &h), 0);
	p[0] = 1;
	assert_int_equal(pvm_sim_grant_unmap(f->hv, h), 0);
	assert_int_equal(pvm_sim_grant_copy_to(f->hv, 0, f->d, 1, 8, &byte, 1),
			 0);
	assert_int_equal(f->hv->ops->logdirty_read_clear(f->hv, f->d, &bm), 0);
	assert_true(pvm_bitmap_test(&bm, 40));
	assert_true(pvm_bitmap_test(&bm, PVM_SIMGUEST_GNTTAB_PFN));
	assert_int_equal(pvm_bitmap_count(&bm), 2);
	/* A read-only copy dirties only the table (busy bits). */
	assert_int_equal(pvm_sim_grant_copy_from(f->hv, 0, f->d, 2, 8, &byte, 1),
			 0);
	assert_int_equal(f->hv->ops->logdirty_read_clear(f->hv, f->d, &bm), 0);
	assert_int_equal(pvm_bitmap_count(&bm), 1);
	assert_true(pvm_bitmap_test(&bm, PVM_SIMGUEST_GNTTAB_PFN));
	assert_int_equal(f->hv->ops->domain_unpause(f->hv, f->d), 0);
	pvm_bitmap_dispose(&bm);
}

/* Whatever a guest writes into its table, a map either fails cleanly or
 * yields exactly the page the (checked) frame names. */
static void test_garbage_entries(void **state)
{
	struct fixture *f = *state;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	int ok = 0;

	/* Thousands of refusals, each logged by design. */
	pvm_log_set_sink(quiet, NULL);
	for (int round = 0; round < 8; round++) {
		for (uint32_t ref = 0; ref < NENT; ref++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(&table(f->mem)[ref], &x, sizeof(x));
			/* Often plausible: domid 0, small frame. */
			if (ref % 3 == 0) {
				table(f->mem)[ref].domid = 0;
				table(f->mem)[ref].frame %= NPAGES + 8;
			}
		}
		for (uint32_t ref = 0; ref < NENT; ref++) {
			for (unsigned int fl = 0; fl < 2; fl++) {
				uint32_t h, frame = table(f->mem)[ref].frame;
				uint8_t *p;
				int rc = pvm_sim_grant_map(f->hv, 0, f->d, ref,
							   fl, (void **)&p, &h);

				assert_true(rc == 0 || rc == -EPERM ||
					    rc == -EINVAL);
				if (rc)
					continue;
				ok++;
				assert_true(frame < NPAGES);
				assert_memory_equal(p, f->mem + (size_t)frame *
								 PVM_PAGE_SIZE,
						    PVM_PAGE_SIZE);
				assert_int_equal(pvm_sim_grant_unmap(f->hv, h), 0);
			}
		}
	}
	pvm_log_set_sink(NULL, NULL);
	assert_true(ok > 0);
}

struct writer {
	struct fixture *f;
	bool stop; /* __atomic */
	uint64_t writes;
	int rc;
};

/* A backend thread writing into granted page 40 (ref 1) by grant copy,
 * a new value each time, as fast as it can. */
static void *backend_writer(void *arg)
{
	struct writer *w = arg;
	uint64_t v = 0;

	while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED) && w->rc == 0) {
		v++;
		w->rc = pvm_sim_grant_copy_to(w->f->hv, 0, w->f->d, 1,
					      (uint32_t)(v % 512) * 8, &v, 8);
		__atomic_add_fetch(&w->writes, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* Backend writes racing log-dirty reads are never lost: the copy the
 * reads drive ends equal to guest memory. */
static void test_backend_writes_not_lost(void **state)
{
	struct fixture *f = *state;
	uint8_t *copy = malloc(NPAGES * PVM_PAGE_SIZE);
	struct writer w = { .f = f };
	struct pvm_bitmap bm;
	uint64_t deadline = 0;
	pthread_t t;

	assert_non_null(copy);
	assert_int_equal(pvm_bitmap_init(&bm, NPAGES), 0);
	assert_int_equal(f->hv->ops->logdirty_enable(f->hv, f->d), 0);
	memcpy(copy, f->mem, NPAGES * PVM_PAGE_SIZE);
	assert_int_equal(pthread_create(&t, NULL, backend_writer, &w), 0);
	/* At least 500 reads, and go on until the writer has got the lock
	 * often (the mutex does not promise it fairness). */
	for (int round = 0;
	     round < 500 || __atomic_load_n(&w.writes, __ATOMIC_RELAXED) < 5000;
	     round++) {
		if (round == 500)
			deadline = pvm_now_ms() + SIMTEST_WAIT_MS;
		if (round > 500 && pvm_now_ms() > deadline)
			fail_msg("backend thread made %llu writes",
				 (unsigned long long)w.writes);
		if (round % 50 == 0)
			sched_yield();
		assert_int_equal(f->hv->ops->logdirty_read_clear(f->hv, f->d, &bm),
				 0);
		for (size_t i = pvm_bitmap_next_set(&bm, 0); i < NPAGES;
		     i = pvm_bitmap_next_set(&bm, i + 1))
			memcpy(copy + i * PVM_PAGE_SIZE,
			       f->mem + i * PVM_PAGE_SIZE, PVM_PAGE_SIZE);
	}
	__atomic_store_n(&w.stop, true, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	assert_int_equal(w.rc, 0);
	assert_true(w.writes > 0);
	assert_int_equal(f->hv->ops->logdirty_read_clear(f->hv, f->d, &bm), 0);
	for (size_t i = pvm_bitmap_next_set(&bm, 0); i < NPAGES;
	     i = pvm_bitmap_next_set(&bm, i + 1))
		memcpy(copy + i * PVM_PAGE_SIZE, f->mem + i * PVM_PAGE_SIZE,
		       PVM_PAGE_SIZE);
	assert_memory_equal(copy, f->mem, NPAGES * PVM_PAGE_SIZE);
	pvm_bitmap_dispose(&bm);
	free(copy);
}

static void test_state_roundtrip(void **state)
{
	struct fixture *f = *state;
	uint32_t h, d2;
	struct pvm_buf b;
	uint8_t *mem2;
	void *p;

	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(f->hv->ops->grant_state_get(f->hv, f->d, &b), -EBUSY);
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 1, 0, &p, &h), 0);
	assert_int_equal(f->hv->ops->domain_pause(f->hv, f->d), 0);
	assert_int_equal(f->hv->ops->grant_state_get(f->hv, f->d, &b), 0);

	d2 = simtest_domain(f->hv, NPAGES, 1, NULL, true);
	mem2 = simtest_mem(f->hv, d2);
	pvm_log_set_sink(quiet, NULL);
	for (size_t l = 0; l < b.len; l++)
		assert_int_equal(f->hv->ops->grant_state_set(f->hv, d2, b.data, l),
				 -EBADMSG);
	pvm_log_set_sink(NULL, NULL);
	assert_int_equal(f->hv->ops->grant_state_set(f->hv, d2, b.data, b.len),
			 0);
	/* Same entries; the source's busy bits are not carried over. */
	assert_int_equal(flags_of(f->mem, 1),
			 GTF_permit_access | GTF_reading | GTF_writing);
	assert_int_equal(flags_of(mem2, 1), GTF_permit_access);
	assert_int_equal(table(mem2)[3].domid, 5);
	assert_int_equal(table(mem2)[2].frame, 41);
	assert_int_equal(flags_of(mem2, 2), GTF_permit_access | GTF_readonly);
	/* The restored grant works for the backend on this host. */
	assert_int_equal(pvm_sim_grant_unmap(f->hv, h), 0);
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, d2, 1, 0, &p, &h), 0);
	assert_int_equal(pvm_sim_grant_unmap(f->hv, h), 0);
	assert_int_equal(f->hv->ops->domain_unpause(f->hv, f->d), 0);
	pvm_buf_dispose(&b);
}

static void test_death_releases_grants(void **state)
{
	struct fixture *f = *state;
	struct pollfd pfd = { .fd = pvm_sim_host_fd(f->hv), .events = POLLIN };
	uint32_t h;
	uint8_t *p;
	pid_t pid;

	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 1, 0, (void **)&p,
					   &h), 0);
	p[7] = 0x99;
	assert_int_equal(pvm_sim_domain_pid(f->hv, f->d, &pid), 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(poll(&pfd, 1, SIMTEST_WAIT_MS), 1);
	assert_int_equal(pvm_sim_host_reap(f->hv), 1);
	/* The backend's page outlives the guest until it unmaps it. */
	assert_int_equal(p[7], 0x99);
	p[8] = 1;
	assert_int_equal(pvm_sim_grant_map(f->hv, 0, f->d, 1, 0, (void **)&p,
					   &h), -ESRCH);
	assert_int_equal(pvm_sim_grant_unmap(f->hv, h), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_map_write_and_unmap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_grant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_grants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logdirty_sees_backend_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_writes_not_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_death_releases_grants, setup, teardown),
	};

	pvm_log_set_level(PVM_LOG_ERR);
	simtest_require_kernel();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
