/*
 * Helpers for the save/restore tests (test_save.c, test_epoch.c): a
 * simulated host with a workload guest, file helpers, and the checks that
 * a restore left the host as it was.
 */
#ifndef PVM_TEST_SR_TEST_H
#define PVM_TEST_SR_TEST_H

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "tests/unit/hv/sim/simtest.h"

#define SR_PAGES 4096u /* 16 MiB */

static inline void sr_tmpdir(char *buf, size_t len)
{
	snprintf(buf, len, "/tmp/pvm-sr-test.XXXXXX");
	assert_non_null(mkdtemp(buf));
}

static inline void sr_rm_rf(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* Reads a whole file into a malloc'd buffer (*len_out bytes). */
static inline uint8_t *sr_slurp(const char *path, size_t *len_out)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	assert_int_equal(read(fd, p, (size_t)st.st_size), st.st_size);
	close(fd);
	*len_out = (size_t)st.st_size;
	return p;
}

static inline void sr_spit(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, len), (ssize_t)len);
	close(fd);
}

static inline size_t sr_count_domains(struct pvm_hv *hv)
{
	struct pvm_hv_dominfo d[64];
	size_t n = 0;

	assert_int_equal(hv->ops->domain_list(hv, d, 64, &n), 0);
	return n;
}

/* A named guest of SR_PAGES running "dirty:16:COUNT:RATE" on 2 vCPUs,
 * with the tests' deterministic content (content:counter: nothing
 * populated at start, one counter per page per pass). */
static inline uint32_t sr_guest(struct pvm_hv *hv, const char *name,
				const char *image)
{
	char wl[256];
	struct pvm_hv_domain_config cfg = {
		.domid = PVM_HV_DOMID_ANY,
		.nr_pages = SR_PAGES,
		.nr_vcpus = 2,
		.name = name,
		.image = wl,
	};
	uint32_t domid = 0;

	snprintf(wl, sizeof(wl), "content:counter,%s", image);

	assert_int_equal(hv->ops->domain_create(hv, &cfg, &domid), 0);
	return domid;
}

/* SHA-256 of a domain's memory through pvm_sim_domain_memory (not the
 * code under test's map_pages path), compared as bytes. */
static inline void sr_mem_copy(struct pvm_hv *hv, uint32_t domid, uint8_t **out)
{
	*out = malloc((size_t)SR_PAGES * PVM_PAGE_SIZE);
	assert_non_null(*out);
	memcpy(*out, simtest_mem(hv, domid), (size_t)SR_PAGES * PVM_PAGE_SIZE);
}

#endif /* PVM_TEST_SR_TEST_H */
