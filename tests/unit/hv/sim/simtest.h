/*
 * Helpers shared by the simulated host's unit tests: a host per test, a
 * domain with a workload, bounded waits (a deadline only bounds a wait for
 * progress; no test asserts on elapsed time), and the skip rule: a kernel
 * without userfaultfd WP_ASYNC / PAGEMAP_SCAN makes the binary exit 77.
 */
#ifndef PVM_TEST_SIMTEST_H
#define PVM_TEST_SIMTEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/common.h"
#include "hv/hv.h"
#include "hv/sim/guest_abi.h"
#include "hv/sim/sim.h"

#define SIMTEST_PAGES 16384u /* 64 MiB */
#define SIMTEST_WAIT_MS 20000u

static inline struct pvm_hv *simtest_host(void)
{
	struct pvm_hv *hv = NULL;

	assert_int_equal(pvm_sim_host_create(NULL, &hv), 0);
	return hv;
}

static inline uint32_t simtest_domain(struct pvm_hv *hv, uint64_t pages,
				      uint32_t vcpus, const char *image,
				      bool paused)
{
	char wl[256];
	struct pvm_hv_domain_config cfg = {
		.domid = PVM_HV_DOMID_ANY,
		.nr_pages = pages,
		.nr_vcpus = vcpus,
		.start_paused = paused,
		.name = "test",
		.image = wl,
	};
	uint32_t domid = 0;

	/* The tests' deterministic content: nothing populated at start, one
	 * counter per page per pass (hv/sim/guest/content.h). */
	snprintf(wl, sizeof(wl), "content:counter,%s", image ? image : "idle");

	assert_int_equal(hv->ops->domain_create(hv, &cfg, &domid), 0);
	return domid;
}

static inline uint8_t *simtest_mem(struct pvm_hv *hv, uint32_t domid)
{
	void *mem = NULL;
	uint64_t n = 0;

	assert_int_equal(pvm_sim_domain_memory(hv, domid, &mem, &n), 0);
	return mem;
}

static inline uint64_t simtest_passes(struct pvm_hv *hv, uint32_t domid)
{
	const struct pvm_simguest_header *hdr = (const void *)simtest_mem(hv, domid);
	uint64_t sum = 0;

	for (unsigned int i = 0; i < PVM_SIMGUEST_MAX_VCPUS; i++)
		sum += __atomic_load_n(&hdr->passes[i], __ATOMIC_RELAXED);
	return sum;
}

static inline void simtest_sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Waits (bounded) until the workload has made @more passes past @from. */
static inline uint64_t simtest_wait_passes(struct pvm_hv *hv, uint32_t domid,
					   uint64_t from, uint64_t more)
{
	uint64_t deadline = pvm_now_ms() + SIMTEST_WAIT_MS, now;

	while ((now = simtest_passes(hv, domid)) < from + more) {
		if (pvm_now_ms() > deadline)
			fail_msg("workload of d%u made no progress: %llu passes",
				 domid, (unsigned long long)now);
		simtest_sleep_ms(2);
	}
	return now;
}

/*
 * Waits (bounded) until each of the first @nr_vcpus vCPUs has completed
 * @more passes from now: with @more >= 2, each has written every page of
 * its share at least once since the call.
 */
static inline void simtest_wait_each_vcpu(struct pvm_hv *hv, uint32_t domid,
					  unsigned int nr_vcpus, uint64_t more)
{
	const struct pvm_simguest_header *hdr = (const void *)simtest_mem(hv, domid);
	uint64_t from[PVM_SIMGUEST_MAX_VCPUS];
	uint64_t deadline = pvm_now_ms() + SIMTEST_WAIT_MS;

	for (unsigned int i = 0; i < nr_vcpus; i++)
		from[i] = __atomic_load_n(&hdr->passes[i], __ATOMIC_RELAXED);
	for (unsigned int i = 0; i < nr_vcpus; i++) {
		while (__atomic_load_n(&hdr->passes[i], __ATOMIC_RELAXED) <
		       from[i] + more) {
			if (pvm_now_ms() > deadline)
				fail_msg("vCPU %u of d%u made no progress", i,
					 domid);
			simtest_sleep_ms(2);
		}
	}
}

/*
 * Exits 77 if this kernel cannot run simulated domains (the reason is what
 * the sim logged); otherwise returns and the tests run.
 */
static inline void simtest_require_kernel(void)
{
	struct pvm_hv_domain_config cfg = {
		.domid = PVM_HV_DOMID_ANY,
		.nr_pages = PVM_SIMGUEST_MIN_PAGES,
		.nr_vcpus = 1,
	};
	struct pvm_hv *hv = NULL;
	uint32_t domid;
	int rc;

	rc = pvm_sim_host_create(NULL, &hv);
	if (rc < 0) {
		fprintf(stderr, "cannot create a simulated host: %s\n",
			strerror(-rc));
		exit(1);
	}
	rc = hv->ops->domain_create(hv, &cfg, &domid);
	hv->ops->close(hv);
	if (rc == -EOPNOTSUPP) {
		printf("SKIP: this kernel lacks userfaultfd WP_ASYNC or "
		       "PAGEMAP_SCAN (see the message above)\n");
		exit(77);
	}
	if (rc < 0) {
		fprintf(stderr, "cannot create a simulated domain: %s\n",
			strerror(-rc));
		exit(1);
	}
}

#endif /* PVM_TEST_SIMTEST_H */
