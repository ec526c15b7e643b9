/*
 * hv/sim/xenstored/layout.c: a domain's and a device's nodes, with the
 * owners and ACLs Xen's toolstack gives them, checked from the guest's,
 * the backend's and a watcher's side.
 */
#include "harness.h"

static struct srv_fixture *F;

static int setup(void **state)
{
	(void)state;
	F = srv_start(NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	srv_stop(F);
	return 0;
}

static void expect_perms(struct tc *t, const char *path, const char *want,
			 uint32_t wantlen)
{
	char out[XENSTORE_PAYLOAD_MAX + 1];
	uint32_t len;

	assert_int_equal(tc_call(t, XS_GET_PERMS, 0, path, (uint32_t)strlen(path) + 1,
				 out, &len), XS_GET_PERMS);
	assert_int_equal(len, wantlen);
	assert_memory_equal(out, want, wantlen);
}

static void test_make_domain(void **state)
{
	struct tc *t = tc_open(F), *g;

	(void)state;
	assert_string_equal(tc_two(t, XS_WATCH, 0, "/local/domain", "d"), "OK");
	tc_expect_event(t, "/local/domain", "d");
	assert_int_equal(pvm_xenstored_make_domain(F->srv, 5, "guest5", 262144), 0);
	tc_expect_event(t, "/local/domain/5", "d");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/5/name"), "guest5");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/5/domid"), "5");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/5/memory/target"), "262144");
	expect_perms(t, "/local/domain/5", PL("n0\0r5\0"));
	expect_perms(t, "/local/domain/5/name", PL("n0\0r5\0"));
	expect_perms(t, "/local/domain/5/control/shutdown", PL("n5\0"));
	expect_perms(t, "/local/domain/5/data", PL("n5\0"));

	assert_int_equal(pvm_xenstored_introduce(F->srv, 5), 0);
	g = tc_open_dom(F, 5);
	assert_string_equal(tc_one(g, XS_READ, 0, "name"), "guest5");
	assert_string_equal(tc_write(g, 0, "name", "renamed"), "EACCES");
	assert_string_equal(tc_write(g, 0, "memory/target", "1"), "EACCES");
	assert_string_equal(tc_write(g, 0, "control/shutdown", "poweroff"), "OK");
	assert_string_equal(tc_write(g, 0, "data/x", "1"), "OK");
	assert_string_equal(tc_write(g, 0, "device/vif/9/state", "1"), "EACCES");
	tc_close(g);
	assert_int_equal(pvm_xenstored_release(F->srv, 5), 0);
	/* Remaking replaces. */
	assert_int_equal(pvm_xenstored_make_domain(F->srv, 5, "again", 1024), 0);
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/5/data/x"), "ENOENT");
	assert_int_equal(pvm_xenstored_make_domain(F->srv, 0, "x", 1), -EINVAL);
	assert_int_equal(pvm_xenstored_make_domain(F->srv, 5, "", 1), -EINVAL);
	assert_int_equal(pvm_xenstored_remove_domain(F->srv, 5), 0);
	tc_close(t);
}

static void test_add_device(void **state)
{
	struct tc *t = tc_open(F), *g;

	(void)state;
	assert_int_equal(pvm_xenstored_make_domain(F->srv, 6, "guest6", 1024), 0);
	assert_string_equal(tc_two(t, XS_WATCH, 0, "/local/domain/0/backend/vif", "be"), "OK");
	tc_expect_event(t, "/local/domain/0/backend/vif", "be");
	assert_int_equal(pvm_xenstored_add_device(F->srv, "vif", 6, 0, 0), 0);
	tc_expect_event(t, "/local/domain/0/backend/vif/6/0", "be");
	tc_expect_event(t, "/local/domain/0/backend/vif/6/0/frontend", "be");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/0/backend/vif/6/0/frontend"),
			    "/local/domain/6/device/vif/0");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/6/device/vif/0/backend"),
			    "/local/domain/0/backend/vif/6/0");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/6/device/vif/0/backend-id"), "0");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/0/backend/vif/6/0/state"), "1");
	expect_perms(t, "/local/domain/6/device/vif/0", PL("n6\0r0\0"));
	expect_perms(t, "/local/domain/6/device/vif/0/state", PL("n6\0r0\0"));
	expect_perms(t, "/local/domain/0/backend/vif/6/0", PL("n0\0r6\0"));

	/* The frontend drives its side, reads the backend's, not more. */
	assert_int_equal(pvm_xenstored_introduce(F->srv, 6), 0);
	g = tc_open_dom(F, 6);
	assert_string_equal(tc_write(g, 0, "device/vif/0/state", "3"), "OK");
	assert_string_equal(tc_one(g, XS_READ, 0, "/local/domain/0/backend/vif/6/0/state"), "1");
	assert_string_equal(tc_write(g, 0, "/local/domain/0/backend/vif/6/0/state", "4"), "EACCES");
	tc_close(g);
	assert_int_equal(pvm_xenstored_release(F->srv, 6), 0);

	assert_int_equal(pvm_xenstored_add_device(F->srv, "vbd", 6, 0, 51712), 0);
	assert_int_equal(pvm_xenstored_add_device(F->srv, "v/bd", 6, 0, 1), -EINVAL);
	assert_int_equal(pvm_xenstored_add_device(F->srv, "vbd", 0, 0, 1), -EINVAL);
	/* Removing the domain takes its backends along. */
	assert_int_equal(pvm_xenstored_remove_domain(F->srv, 6), 0);
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/6"), "ENOENT");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/0/backend/vif/6"), "ENOENT");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/0/backend/vbd/6"), "ENOENT");
	tc_close(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_make_domain),
		cmocka_unit_test(test_add_device),
	};

	pvm_log_set_level(PVM_LOG_WARN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
