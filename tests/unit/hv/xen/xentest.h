/*
 * Shared by the hv/xen unit tests: cmocka set-up with a fresh fake Xen
 * host (fakexen.h) and an open Xen backend instance, and a log sink that
 * counts errors so tests can check "logged once".
 */
#ifndef PVM_TEST_XENTEST_H
#define PVM_TEST_XENTEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"
#include "hv/hv.h"
#include "hv/xen/xen.h"
#include "fakexen.h"

static unsigned int xt_errors;
static char xt_last[512];

static void xt_sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
	(void)ctx;
	if (lvl == PVM_LOG_ERR)
		xt_errors++;
	snprintf(xt_last, sizeof(xt_last), "%s", line);
}

/* Set-up: fake host with dom0 only, a backend instance in *state. */
__attribute__((unused)) static int xt_setup(void **state)
{
	struct pvm_hv *hv = NULL;

	fx_reset();
	xt_errors = 0;
	xt_last[0] = '\0';
	pvm_log_set_sink(xt_sink, NULL);
	if (pvm_hv_xen_open(&hv) != 0)
		return -1;
	*state = hv;
	return 0;
}

/* Tear-down: close; nothing of the fake may be left open. */
__attribute__((unused)) static int xt_teardown(void **state)
{
	struct pvm_hv *hv = *state;

	if (hv)
		hv->ops->close(hv);
	assert_int_equal(fx.handles_open, 0);
	assert_int_equal(fx.live_maps, 0);
	assert_int_equal(fx.live_hbufs, 0);
	pvm_log_set_sink(NULL, NULL);
	return 0;
}

/* Expect @call to return @rc and log exactly one error. */
#define assert_fails_once(call, rc)                                          \
	do {                                                                 \
		unsigned int before_ = xt_errors;                            \
		assert_int_equal((call), (rc));                              \
		assert_int_equal(xt_errors - before_, 1);                    \
	} while (0)

#define XT_TEST(fn) cmocka_unit_test_setup_teardown(fn, xt_setup, xt_teardown)

#endif /* PVM_TEST_XENTEST_H */
