/*
 * hv/sim/throttle.c: domain_throttle's duty cycle. A throttled guest is
 * stopped for part of each period and still makes progress; lifting the
 * throttle leaves it running; a pause while throttled stops it for good
 * (the duty cycle never continues a paused guest) and the unpause gives it
 * back; bad levels and domains are refused. Observed through the guest
 * process's state in /proc, never through elapsed time.
 */
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include "simtest.h"

#define WORK "dirty:16:512"

static unsigned int warnings;

static void sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
	(void)ctx;
	(void)line;
	if (lvl <= PVM_LOG_WARN)
		warnings++;
}

/* The process state letter of @pid's main thread ('T' = stopped). */
static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	char st = '?';

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1])
		st = p[2];
	fclose(f);
	return st;
}

/* Samples the state every 0.5 ms, at most @max times, until both a
 * stopped and a running sample were seen; returns which were. */
static void sample(pid_t pid, unsigned int max, bool *stopped, bool *ran)
{
	*stopped = *ran = false;
	for (unsigned int i = 0; i < max && !(*stopped && *ran); i++) {
		if (proc_state(pid) == 'T')
			*stopped = true;
		else
			*ran = true;
		usleep(500);
	}
}

static void test_duty_cycle(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 256, 2, WORK, false);
	bool stopped, ran;
	uint64_t p;
	pid_t pid;

	(void)state;
	assert_int_equal(pvm_sim_domain_pid(hv, d, &pid), 0);
	p = simtest_wait_passes(hv, d, 0, 3);

	/* Not throttled: never seen stopped. */
	sample(pid, 400, &stopped, &ran);
	assert_false(stopped);

	/* 90%: stopped most of the time, yet it runs and makes progress. */
	assert_int_equal(hv->ops->domain_throttle(hv, d, 90), 0);
	sample(pid, 20000, &stopped, &ran);
	assert_true(stopped);
	assert_true(ran);
	p = simtest_wait_passes(hv, d, p, 3);

	/* A new level replaces the old one. */
	assert_int_equal(hv->ops->domain_throttle(hv, d, 30), 0);
	sample(pid, 20000, &stopped, &ran);
	assert_true(stopped);
	assert_true(ran);

	/* Lifted: running, and never stopped again. */
	assert_int_equal(hv->ops->domain_throttle(hv, d, 0), 0);
	usleep(1000);
	sample(pid, 400, &stopped, &ran);
	assert_false(stopped);
	simtest_wait_passes(hv, d, simtest_passes(hv, d), 3);
	hv->ops->close(hv);
}

static void test_pause_while_throttled(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 256, 2, WORK, false);
	struct pvm_hv_dominfo info;
	bool stopped, ran;
	uint64_t p0;
	pid_t pid;

	(void)state;
	assert_int_equal(pvm_sim_domain_pid(hv, d, &pid), 0);
	simtest_wait_passes(hv, d, 0, 3);
	assert_int_equal(hv->ops->domain_throttle(hv, d, 99), 0);
	/* Pause lands on both halves of the duty cycle over a few tries. */
	for (int i = 0; i < 20; i++) {
		assert_int_equal(hv->ops->domain_pause(hv, d), 0);
		assert_int_equal(proc_state(pid), 'T');
		assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
		usleep(3000);
	}
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_int_equal(hv->ops->domain_info(hv, d, &info), 0);
	assert_true(info.flags & PVM_HV_DOMINF_PAUSED);
	p0 = simtest_passes(hv, d);
	/* Several duty-cycle periods: it must never be continued. */
	sample(pid, 200, &stopped, &ran);
	assert_false(ran);
	assert_int_equal(simtest_passes(hv, d), p0);
	/* The level can change while paused; the pause still holds. */
	assert_int_equal(hv->ops->domain_throttle(hv, d, 0), 0);
	sample(pid, 100, &stopped, &ran);
	assert_false(ran);
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
	simtest_wait_passes(hv, d, p0, 3);
	sample(pid, 200, &stopped, &ran);
	assert_false(stopped);
	hv->ops->close(hv);
}

static void test_bad_calls_and_close(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 256, 1, WORK, false);
	uint32_t e = simtest_domain(hv, 256, 1, WORK, false);

	(void)state;
	assert_int_equal(hv->ops->domain_throttle(hv, d, 100), -EINVAL);
	assert_int_equal(hv->ops->domain_throttle(hv, 4242, 50), -ESRCH);
	assert_int_equal(hv->ops->domain_throttle(hv, 4242, 0), -ESRCH);
	/* Destroyed while throttled, and a host closed with one throttled:
	 * neither hangs nor leaves anything behind. */
	assert_int_equal(hv->ops->domain_throttle(hv, d, 80), 0);
	assert_int_equal(hv->ops->domain_throttle(hv, e, 80), 0);
	usleep(30000);
	assert_int_equal(hv->ops->domain_destroy(hv, d), 0);
	assert_int_equal(hv->ops->domain_throttle(hv, d, 0), -ESRCH);
	usleep(30000);
	hv->ops->close(hv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duty_cycle),
		cmocka_unit_test(test_pause_while_throttled),
		cmocka_unit_test(test_bad_calls_and_close),
	};
	int rc;

	pvm_log_set_level(PVM_LOG_ERR);
	simtest_require_kernel();
	pvm_log_set_level(PVM_LOG_WARN);
	pvm_log_set_sink(sink, NULL);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	/* Lifting and pausing never logged a warning (e.g. a PV loop that
	 * could not park because the throttle held it stopped). */
	if (warnings) {
		fprintf(stderr, "%u warnings logged\n", warnings);
		return 1;
	}
	return rc;
}
