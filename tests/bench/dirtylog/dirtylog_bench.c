/*
 * pvm-bench-dirtylog [GUEST_MIB [DIRTY_MIB [RUNS]]] — how long the simulated
 * host's logdirty_read_clear takes (userfaultfd WP_ASYNC + PAGEMAP_SCAN):
 * a GUEST_MIB guest (default 1024) whose vCPUs write DIRTY_MIB (default 256)
 * of it, paused once every page of that set has been written since the
 * previous read; then the read-and-clear is timed, and an immediate second
 * one (nothing dirty). Prints the median, min and max over RUNS (default 7).
 * Needs GUEST_MIB of memory; run by hand, not by CTest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "hv/hv.h"
#include "hv/sim/guest_abi.h"
#include "hv/sim/sim.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void wait_each_vcpu(const struct pvm_simguest_header *hdr,
			   unsigned int nr, uint64_t more)
{
	uint64_t from[PVM_SIMGUEST_MAX_VCPUS];
	struct timespec ts = { 0, 1000000 };

	for (unsigned int i = 0; i < nr; i++)
		from[i] = __atomic_load_n(&hdr->passes[i], __ATOMIC_RELAXED);
	for (unsigned int i = 0; i < nr; i++)
		while (__atomic_load_n(&hdr->passes[i], __ATOMIC_RELAXED) <
		       from[i] + more)
			nanosleep(&ts, NULL);
}

static void report(const char *what, uint64_t *ns, int runs)
{
	qsort(ns, (size_t)runs, sizeof(*ns), cmp_u64);
	printf("%-34s median %8.3f ms  min %8.3f ms  max %8.3f ms\n", what,
	       ns[runs / 2] / 1e6, ns[0] / 1e6, ns[runs - 1] / 1e6);
}

int main(int argc, char **argv)
{
	uint64_t guest_mib = argc > 1 ? strtoull(argv[1], NULL, 0) : 1024;
	uint64_t dirty_mib = argc > 2 ? strtoull(argv[2], NULL, 0) : 256;
	int runs = argc > 3 ? atoi(argv[3]) : 7;
	uint64_t pages = guest_mib << 8, dirty = dirty_mib << 8;
	const unsigned int vcpus = 2;
	struct pvm_hv_domain_config cfg = {
		.domid = PVM_HV_DOMID_ANY,
		.nr_pages = pages,
		.nr_vcpus = vcpus,
		.name = "bench",
	};
	uint64_t *full, *empty, t0, count = 0;
	struct pvm_hv *hv = NULL;
	struct pvm_bitmap bm;
	char image[64];
	uint32_t d;
	void *mem;
	uint64_t n;
	int rc;

	if (runs < 1 || dirty == 0 ||
	    dirty > pages - PVM_SIMGUEST_FIRST_FREE_PFN) {
		fprintf(stderr, "usage: %s [GUEST_MIB [DIRTY_MIB [RUNS]]]\n",
			argv[0]);
		return 2;
	}
	snprintf(image, sizeof(image), "content:counter,dirty:%u:%llu",
		 PVM_SIMGUEST_FIRST_FREE_PFN, (unsigned long long)dirty);
	cfg.image = image;
	full = calloc((size_t)runs, sizeof(*full));
	empty = calloc((size_t)runs, sizeof(*empty));
	if (!full || !empty || pvm_bitmap_init(&bm, pages) < 0)
		return 1;
	rc = pvm_sim_host_create(NULL, &hv);
	if (rc == 0)
		rc = hv->ops->domain_create(hv, &cfg, &d);
	if (rc == -EOPNOTSUPP) {
		printf("SKIP: kernel cannot track guest writes (see above)\n");
		return 77;
	}
	if (rc < 0 || pvm_sim_domain_memory(hv, d, &mem, &n) < 0 ||
	    hv->ops->logdirty_enable(hv, d) < 0)
		return 1;

	for (int r = 0; r < runs; r++) {
		if (hv->ops->logdirty_read_clear(hv, d, &bm) < 0)
			return 1;
		wait_each_vcpu(mem, vcpus, 2);
		if (hv->ops->domain_pause(hv, d) < 0)
			return 1;
		t0 = pvm_now_ns();
		rc = hv->ops->logdirty_read_clear(hv, d, &bm);
		full[r] = pvm_now_ns() - t0;
		count = pvm_bitmap_count(&bm);
		t0 = pvm_now_ns();
		rc |= hv->ops->logdirty_read_clear(hv, d, &bm);
		empty[r] = pvm_now_ns() - t0;
		if (rc < 0 || pvm_bitmap_count(&bm) != 0 ||
		    hv->ops->domain_unpause(hv, d) < 0)
			return 1;
	}
	printf("guest %llu MiB (%llu pages), %u vCPUs writing %llu MiB; "
	       "%d runs; mechanism: userfaultfd WP_ASYNC + PAGEMAP_SCAN\n",
	       (unsigned long long)guest_mib, (unsigned long long)pages, vcpus,
	       (unsigned long long)dirty_mib, runs);
	printf("dirty pages reported per read: %llu (expected %llu + header)\n",
	       (unsigned long long)count, (unsigned long long)dirty);
	report("read-and-clear, paused, dirty set:", full, runs);
	report("read-and-clear, nothing dirty:", empty, runs);
	hv->ops->close(hv);
	pvm_bitmap_dispose(&bm);
	free(full);
	free(empty);
	return 0;
}
