/*
 * common/log.c's stderr formats: plain (the CLI), stamped (ISO 8601 UTC
 * with milliseconds: a daemon's log), journal (sd-daemon "<N>" priority,
 * no stamp: systemd's journal stamps lines itself), and the daemon's
 * choice between the last two from $JOURNAL_STREAM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"

static char path[64];
static int saved_stderr = -1;

/* stderr goes to a fresh file for one test. */
static int redirect(void **state)
{
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/pvm-test-log.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	pvm_log_set_prog("pvmigd");
	return 0;
}

static int restore(void **state)
{
	(void)state;
	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	unlink(path);
	unsetenv("JOURNAL_STREAM");
	pvm_log_set_format(PVM_LOG_PLAIN);
	return 0;
}

/* What the test wrote to stderr so far. */
static const char *written(void)
{
	static char buf[4096];
	FILE *f;
	size_t n;

	fflush(stderr);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void assert_matches(const char *text, const char *re)
{
	regex_t r;
	int rc;

	assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NEWLINE), 0);
	rc = regexec(&r, text, 0, NULL, 0);
	regfree(&r);
	if (rc)
		fail_msg("'%s' does not match /%s/", text, re);
}

static void test_plain_by_default(void **state)
{
	(void)state;
	pvm_err("disk %d gone", 3);
	assert_string_equal(written(), "pvmigd: error: disk 3 gone\n");
}

static void test_stamped_is_iso8601_utc_ms(void **state)
{
	time_t before = time(NULL), after, t;
	const char *out;
	struct tm tm;

	(void)state;
	pvm_log_set_format(PVM_LOG_STAMPED);
	pvm_warn("slow peer");
	pvm_info("serving");
	after = time(NULL);
	out = written();
	assert_matches(out, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z pvmigd: warning: slow peer\n"
			    "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z pvmigd: info: serving\n$");
	/* The stamp is now, in UTC (not local time). */
	memset(&tm, 0, sizeof(tm));
	assert_non_null(strptime(out, "%Y-%m-%dT%H:%M:%S", &tm));
	t = timegm(&tm);
	assert_true(t >= before && t <= after);
}

static void test_journal_has_priority_no_stamp(void **state)
{
	(void)state;
	pvm_log_set_format(PVM_LOG_JOURNAL);
	pvm_err("a");
	pvm_warn("b");
	pvm_info("c");
	pvm_log_set_level(PVM_LOG_DEBUG);
	pvm_debug("d");
	pvm_log_set_level(PVM_LOG_INFO);
	assert_string_equal(written(), "<3>error: a\n<4>warning: b\n<6>info: c\n<7>debug: d\n");
}

static void test_daemon_format_follows_journal_stream(void **state)
{
	struct stat st;
	char js[64];

	(void)state;
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	/* No JOURNAL_STREAM: stamped. */
	unsetenv("JOURNAL_STREAM");
	assert_int_equal(pvm_log_use_daemon_format(), PVM_LOG_STAMPED);
	/* Another stream's (stderr redirected away from the journal): stamped. */
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + 1);
	setenv("JOURNAL_STREAM", js, 1);
	assert_int_equal(pvm_log_use_daemon_format(), PVM_LOG_STAMPED);
	/* Garbage: stamped. */
	setenv("JOURNAL_STREAM", "12:x", 1);
	assert_int_equal(pvm_log_use_daemon_format(), PVM_LOG_STAMPED);
	/* stderr's own device and inode: the journal. */
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	assert_int_equal(pvm_log_use_daemon_format(), PVM_LOG_JOURNAL);
	pvm_info("up");
	assert_string_equal(written(), "<6>info: up\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plain_by_default, redirect, restore),
		cmocka_unit_test_setup_teardown(test_stamped_is_iso8601_utc_ms, redirect, restore),
		cmocka_unit_test_setup_teardown(test_journal_has_priority_no_stamp, redirect, restore),
		cmocka_unit_test_setup_teardown(test_daemon_format_follows_journal_stream, redirect, restore),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
