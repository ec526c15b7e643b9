/* hv/xen/log.c: the Xen libraries' messages reach pvm_log, a level down. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hv/xen/internal.h"

static enum pvm_log_level last_lvl;
static char last[512];
static unsigned int lines;

static void sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
	(void)ctx;
	last_lvl = lvl;
	snprintf(last, sizeof(last), "%s", line);
	lines++;
}

static void test_levels_and_text(void **state)
{
	xentoollog_logger *l = xen_logger();

	(void)state;
	pvm_log_set_sink(sink, NULL);
	pvm_log_set_level(PVM_LOG_INFO);

	xtl_log(l, XTL_ERROR, ENOENT, "xencall", "no handle on %s", "privcmd");
	assert_int_equal(lines, 1);
	assert_int_equal(last_lvl, PVM_LOG_WARN);
	assert_string_equal(last, "xen: xencall: no handle on privcmd: "
				  "No such file or directory");

	xtl_log(l, XTL_NOTICE, -1, NULL, "plain");
	assert_int_equal(lines, 2);
	assert_int_equal(last_lvl, PVM_LOG_INFO);
	assert_string_equal(last, "xen: plain");

	/* Below the sink's level: dropped before formatting. */
	xtl_log(l, XTL_DEBUG, -1, "libxl", "chatter");
	assert_int_equal(lines, 2);
	pvm_log_set_level(PVM_LOG_DEBUG);
	xtl_log(l, XTL_DETAIL, -1, "libxl", "chatter");
	assert_int_equal(lines, 3);
	assert_int_equal(last_lvl, PVM_LOG_DEBUG);

	assert_int_equal(xen_log_level(XTL_CRITICAL), PVM_LOG_WARN);
	assert_int_equal(xen_log_level(XTL_WARN), PVM_LOG_INFO);
	assert_int_equal(xen_log_level(XTL_PROGRESS), PVM_LOG_DEBUG);

	/* Static: destroying it (as a library might) changes nothing. */
	xtl_logger_destroy(l);
	xtl_log(l, XTL_ERROR, -1, "xc", "still here");
	assert_int_equal(lines, 4);
	pvm_log_set_sink(NULL, NULL);
	pvm_log_set_level(PVM_LOG_INFO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_and_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
