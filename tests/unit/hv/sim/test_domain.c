/* hv/sim/domain.c and host.c: domains as processes, pause, mappings, vCPU
 * contexts, death. */
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "simtest.h"

#define WORK "dirty:16:512"

static void test_create_list_info_destroy(void **state)
{
	struct pvm_hv *hv = simtest_host();
	struct pvm_hv_dominfo info[4];
	struct pvm_hv_domain_config cfg = {
		.domid = 7, .nr_pages = 64, .nr_vcpus = 2, .name = "seven",
	};
	uint32_t a, b = 0;
	size_t n = 0;

	(void)state;
	a = simtest_domain(hv, 64, 1, NULL, false);
	assert_int_equal(hv->ops->domain_create(hv, &cfg, &b), 0);
	assert_int_equal(b, 7);
	assert_int_equal(hv->ops->domain_create(hv, &cfg, &b), -EEXIST);
	cfg.domid = PVM_HV_DOMID_ANY;
	cfg.nr_pages = 3;
	assert_int_equal(hv->ops->domain_create(hv, &cfg, &b), -EINVAL);
	cfg.nr_pages = 64;
	cfg.nr_vcpus = 0;
	assert_int_equal(hv->ops->domain_create(hv, &cfg, &b), -EINVAL);

	assert_int_equal(hv->ops->domain_list(hv, info, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(info[0].domid, a);
	assert_int_equal(info[1].domid, 7);
	assert_string_equal(info[1].name, "seven");
	assert_int_equal(info[1].nr_vcpus, 2);
	assert_int_equal(info[1].nr_pages, 64);
	assert_int_equal(info[1].flags, 0);
	assert_int_equal(hv->ops->domain_list(hv, info, 1, &n), -ENOSPC);
	assert_int_equal(n, 1);

	assert_int_equal(hv->ops->domain_info(hv, 7, &info[0]), 0);
	assert_int_equal(hv->ops->domain_info(hv, 0, &info[0]), -ESRCH);
	assert_int_equal(hv->ops->domain_destroy(hv, 7), 0);
	assert_int_equal(hv->ops->domain_info(hv, 7, &info[0]), -ESRCH);
	assert_int_equal(hv->ops->domain_destroy(hv, 7), -ESRCH);
	assert_int_equal(hv->ops->domain_destroy(hv, 0), -EPERM);
	hv->ops->close(hv); /* destroys a */
}

/* True when every thread of @pid is in state T (stopped). */
static bool all_threads_stopped(pid_t pid)
{
	char path[320], buf[512];
	struct dirent *e;
	int threads = 0, stopped = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	assert_non_null(dir);
	while ((e = readdir(dir))) {
		FILE *f;
		char *p;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid,
			 e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')'))) {
			threads++;
			stopped += p[2] == 'T';
		}
		fclose(f);
	}
	closedir(dir);
	return threads > 1 && threads == stopped;
}

static void test_pause_stops_every_thread(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 256, 3, WORK, false);
	struct pvm_hv_dominfo info;
	uint64_t p0, p1;
	pid_t pid;

	(void)state;
	assert_int_equal(pvm_sim_domain_pid(hv, d, &pid), 0);
	simtest_wait_passes(hv, d, 0, 3);
	assert_int_equal(hv->ops->domain_unpause(hv, d), -EINVAL);
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_true(all_threads_stopped(pid));
	assert_int_equal(hv->ops->domain_info(hv, d, &info), 0);
	assert_true(info.flags & PVM_HV_DOMINF_PAUSED);
	p0 = simtest_passes(hv, d);
	simtest_sleep_ms(100);
	p1 = simtest_passes(hv, d);
	assert_int_equal(p0, p1);

	/* Pauses nest. */
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
	assert_true(all_threads_stopped(pid));
	simtest_sleep_ms(20);
	assert_int_equal(simtest_passes(hv, d), p0);
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
	simtest_wait_passes(hv, d, p0, 3);
	assert_int_equal(hv->ops->domain_info(hv, d, &info), 0);
	assert_false(info.flags & PVM_HV_DOMINF_PAUSED);

	/* Again: a second pause waits for its own stop. */
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_true(all_threads_stopped(pid));
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
	hv->ops->close(hv);
}

static void test_start_paused(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, WORK, true);
	const struct pvm_simguest_header *hdr = (const void *)simtest_mem(hv, d);
	struct pvm_hv_dominfo info;

	(void)state;
	assert_int_equal(hv->ops->domain_info(hv, d, &info), 0);
	assert_true(info.flags & PVM_HV_DOMINF_PAUSED);
	simtest_sleep_ms(50);
	/* Nothing ran: the guest writes its magic when it starts its vCPUs. */
	assert_int_equal(__atomic_load_n(&hdr->magic, __ATOMIC_RELAXED), 0);
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
	simtest_wait_passes(hv, d, 0, 1);
	assert_int_equal(hdr->magic, PVM_SIMGUEST_MAGIC);
	hv->ops->close(hv);
}

static void test_map_pages(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, NULL, false);
	uint8_t *mem = simtest_mem(hv, d);
	uint64_t pfns[4] = { 40, 41, 99, 20 };
	int errs[4] = { 1, 1, 1, 1 };
	uint8_t *w = NULL, *r = NULL;

	(void)state;
	assert_int_equal(hv->ops->map_pages(hv, d, PVM_HV_MAP_WRITE, pfns, 4,
					    errs, (void **)&w), 0);
	assert_int_equal(errs[0], 0);
	assert_int_equal(errs[1], 0);
	assert_int_equal(errs[2], -EINVAL);
	assert_int_equal(errs[3], 0);
	memset(w, 0xa1, PVM_PAGE_SIZE);
	memset(w + PVM_PAGE_SIZE, 0xa2, PVM_PAGE_SIZE);
	memset(w + 3 * PVM_PAGE_SIZE, 0xa3, PVM_PAGE_SIZE);
	assert_int_equal(mem[40 * PVM_PAGE_SIZE + 17], 0xa1);
	assert_int_equal(mem[41 * PVM_PAGE_SIZE + 4095], 0xa2);
	assert_int_equal(mem[20 * PVM_PAGE_SIZE], 0xa3);
	assert_int_equal(hv->ops->unmap_pages(hv, w, 3), -EINVAL);
	assert_int_equal(hv->ops->unmap_pages(hv, w, 4), 0);

	pfns[2] = 42;
	mem[42 * PVM_PAGE_SIZE + 5] = 0x5a;
	assert_int_equal(hv->ops->map_pages(hv, d, PVM_HV_MAP_READ, pfns, 4,
					    errs, (void **)&r), 0);
	assert_int_equal(errs[2], 0);
	assert_int_equal(r[5], 0xa1);
	assert_int_equal(r[2 * PVM_PAGE_SIZE + 5], 0x5a);
	assert_int_equal(r[3 * PVM_PAGE_SIZE + 5], 0xa3);
	assert_int_equal(hv->ops->unmap_pages(hv, r, 4), 0);
	assert_int_equal(hv->ops->map_pages(hv, 99, PVM_HV_MAP_READ, pfns, 4,
					    errs, (void **)&r), -ESRCH);
	hv->ops->close(hv);
}

static void test_vcpu_context(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 2, NULL, false);
	struct pvm_buf b;

	(void)state;
	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(hv->ops->vcpu_context_get(hv, d, 0, &b), -EBUSY);
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_int_equal(hv->ops->vcpu_context_get(hv, d, 2, &b), -EINVAL);
	assert_int_equal(hv->ops->vcpu_context_get(hv, d, 1, &b), 0);
	assert_true(b.len > 12);
	b.data[b.len - 1] = 0x77;
	assert_int_equal(hv->ops->vcpu_context_set(hv, d, 1, b.data, b.len), 0);
	/* Every truncation, and a context of another vCPU, is refused. */
	for (size_t l = 0; l < b.len; l++)
		assert_int_equal(hv->ops->vcpu_context_set(hv, d, 1, b.data, l),
				 -EBADMSG);
	assert_int_equal(hv->ops->vcpu_context_set(hv, d, 0, b.data, b.len),
			 -EBADMSG);
	pvm_buf_reset(&b);
	assert_int_equal(hv->ops->vcpu_context_get(hv, d, 1, &b), 0);
	assert_int_equal(b.data[b.len - 1], 0x77);
	pvm_buf_dispose(&b);
	hv->ops->close(hv);
}

static void test_dead_guest_is_reaped(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, WORK, false);
	uint32_t keep = simtest_domain(hv, 64, 1, NULL, false);
	struct pvm_hv_dominfo info;
	struct pollfd pfd = { .fd = pvm_sim_host_fd(hv), .events = POLLIN };
	pid_t pid;

	(void)state;
	assert_int_equal(pvm_sim_domain_pid(hv, d, &pid), 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(poll(&pfd, 1, SIMTEST_WAIT_MS), 1);
	assert_int_equal(pvm_sim_host_reap(hv), 1);
	assert_int_equal(pvm_sim_host_reap(hv), 0);
	assert_int_equal(hv->ops->domain_info(hv, d, &info), 0);
	assert_true(info.flags & PVM_HV_DOMINF_DYING);
	assert_true(info.flags & PVM_HV_DOMINF_SHUTDOWN);
	assert_int_equal(info.shutdown_reason, PVM_HV_SHUTDOWN_CRASH);
	assert_int_equal(hv->ops->domain_pause(hv, d), -ESRCH);
	assert_int_equal(pvm_sim_domain_pid(hv, d, &pid), -ESRCH);
	assert_int_equal(hv->ops->domain_destroy(hv, d), 0);
	assert_int_equal(hv->ops->domain_info(hv, d, &info), -ESRCH);
	/* The other domain is unaffected. */
	assert_int_equal(hv->ops->domain_pause(hv, keep), 0);
	assert_int_equal(hv->ops->domain_unpause(hv, keep), 0);
	hv->ops->close(hv);
}

/* A guest killed while paused is found by the next operation on it. */
static void test_death_while_paused(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, WORK, false);
	struct pvm_hv_dominfo info;
	pid_t pid;

	(void)state;
	assert_int_equal(pvm_sim_domain_pid(hv, d, &pid), 0);
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	for (uint64_t end = pvm_now_ms() + SIMTEST_WAIT_MS;;) {
		assert_int_equal(hv->ops->domain_info(hv, d, &info), 0);
		if (info.flags & PVM_HV_DOMINF_DYING)
			break;
		assert_true(pvm_now_ms() < end);
		simtest_sleep_ms(2);
	}
	assert_false(info.flags & PVM_HV_DOMINF_PAUSED);
	assert_int_equal(hv->ops->domain_unpause(hv, d), -ESRCH);
	hv->ops->close(hv);
}

static void quiet(void *ctx, enum pvm_log_level lvl, const char *line)
{
	(void)ctx;
	(void)lvl;
	(void)line;
}

/* A guest program that dies at start-up, or none at all. */
static void test_create_failures(void **state)
{
	struct pvm_sim_config cfg = { .guest_prog = "/bin/false" };
	struct pvm_hv_domain_config dc = {
		.domid = PVM_HV_DOMID_ANY, .nr_pages = 64, .nr_vcpus = 1,
	};
	struct pvm_hv_dominfo info;
	struct pvm_hv *hv = NULL;
	uint32_t d;
	size_t n = 9;

	(void)state;
	pvm_log_set_sink(quiet, NULL);
	assert_int_equal(pvm_sim_host_create(&cfg, &hv), 0);
	assert_int_equal(hv->ops->domain_create(hv, &dc, &d), -ECHILD);
	assert_int_equal(hv->ops->domain_list(hv, &info, 1, &n), 0);
	assert_int_equal(n, 0);
	/* The failed guest was reaped: this process has no child left. */
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	hv->ops->close(hv);
	cfg.guest_prog = "/nonexistent/pvmig-simguest";
	assert_int_equal(pvm_sim_host_create(&cfg, &hv), -ENOENT);
	pvm_log_set_sink(NULL, NULL);
}

static void test_fault_injection(void **state)
{
	struct pvm_hv *hv = simtest_host();
	struct pvm_hv_domain_config dc = {
		.domid = PVM_HV_DOMID_ANY, .nr_pages = 64, .nr_vcpus = 1,
	};
	uint64_t pfn = 20;
	struct pvm_bitmap bm;
	uint32_t d, e;
	int err;
	void *p;

	(void)state;
	pvm_log_set_sink(quiet, NULL);
	assert_int_equal(pvm_bitmap_init(&bm, 64), 0);
	assert_int_equal(pvm_sim_fault_set(hv, PVM_SIM_FAULT_NR, 1, false,
					   -EIO), -EINVAL);
	assert_int_equal(pvm_sim_fault_set(hv, PVM_SIM_FAULT_MAP, 1, false, 0),
			 -EINVAL);

	/* The 2nd create fails, once. */
	assert_int_equal(pvm_sim_fault_set(hv, PVM_SIM_FAULT_CREATE, 2, false,
					   -ENOMEM), 0);
	assert_int_equal(hv->ops->domain_create(hv, &dc, &d), 0);
	assert_int_equal(hv->ops->domain_create(hv, &dc, &e), -ENOMEM);
	assert_int_equal(hv->ops->domain_create(hv, &dc, &e), 0);

	/* Pause fails from the 1st call on, until disarmed. */
	assert_int_equal(pvm_sim_fault_set(hv, PVM_SIM_FAULT_PAUSE, 1, true,
					   -EIO), 0);
	assert_int_equal(hv->ops->domain_pause(hv, d), -EIO);
	assert_int_equal(hv->ops->domain_pause(hv, e), -EIO);
	assert_int_equal(pvm_sim_fault_set(hv, PVM_SIM_FAULT_PAUSE, 0, false,
					   -EIO), 0);
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);

	assert_int_equal(pvm_sim_fault_set(hv, PVM_SIM_FAULT_MAP, 1, false,
					   -EFAULT), 0);
	assert_int_equal(hv->ops->map_pages(hv, d, PVM_HV_MAP_READ, &pfn, 1,
					    &err, &p), -EFAULT);
	assert_int_equal(hv->ops->map_pages(hv, d, PVM_HV_MAP_READ, &pfn, 1,
					    &err, &p), 0);
	assert_int_equal(hv->ops->unmap_pages(hv, p, 1), 0);

	assert_int_equal(hv->ops->logdirty_enable(hv, d), 0);
	assert_int_equal(pvm_sim_fault_set(hv, PVM_SIM_FAULT_READ_CLEAR, 1,
					   false, -EIO), 0);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), -EIO);
	assert_int_equal(hv->ops->logdirty_read_clear(hv, d, &bm), 0);

	assert_int_equal(pvm_sim_fault_set(hv, PVM_SIM_FAULT_GRANT_MAP, 1,
					   false, -ENOMEM), 0);
	assert_int_equal(pvm_sim_grant_map(hv, 0, d, 1, 0, &p, &e), -ENOMEM);
	pvm_log_set_sink(NULL, NULL);
	pvm_bitmap_dispose(&bm);
	hv->ops->close(hv);
}

static void test_open_by_name(void **state)
{
	struct pvm_hv *hv = NULL;

	(void)state;
	assert_int_equal(pvm_hv_open("sim", &hv), 0);
	assert_true(pvm_sim_is_sim(hv));
	assert_string_equal(hv->ops->name, "sim");
	hv->ops->close(hv);
	assert_int_equal(pvm_hv_open("xen", &hv), -EOPNOTSUPP);
	assert_int_equal(pvm_hv_open("vmware", &hv), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_by_name),
		cmocka_unit_test(test_create_list_info_destroy),
		cmocka_unit_test(test_pause_stops_every_thread),
		cmocka_unit_test(test_start_paused),
		cmocka_unit_test(test_map_pages),
		cmocka_unit_test(test_vcpu_context),
		cmocka_unit_test(test_dead_guest_is_reaped),
		cmocka_unit_test(test_death_while_paused),
		cmocka_unit_test(test_create_failures),
		cmocka_unit_test(test_fault_injection),
	};

	pvm_log_set_level(PVM_LOG_ERR);
	simtest_require_kernel();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
