/*
 * hv/sim/xenstored against the real client library: libxenstore (xs_open
 * with XENSTORED_PATH), as pvmig's own code and the stock tools use it.
 */
#include "harness.h"

#include <xenstore.h>

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

static struct xs_handle *open_at(const char *sock)
{
	struct xs_handle *h;

	assert_int_equal(setenv("XENSTORED_PATH", sock, 1), 0);
	h = xs_open(0);
	assert_non_null(h);
	return h;
}

/* Next watch event, or fail after RECV_TIMEOUT_MS (never blocks forever). */
static void expect_watch(struct xs_handle *h, const char *path,
			 const char *token)
{
	struct pollfd pfd = { .fd = xs_fileno(h), .events = POLLIN };
	unsigned int n;
	char **v;

	v = xs_check_watch(h);
	if (!v) {
		assert_int_equal(poll(&pfd, 1, RECV_TIMEOUT_MS), 1);
		v = xs_read_watch(h, &n);
	}
	assert_non_null(v);
	assert_string_equal(v[XS_WATCH_PATH], path);
	assert_string_equal(v[XS_WATCH_TOKEN], token);
	free(v);
}

static void test_read_write_directory(void **state)
{
	struct xs_handle *h = open_at(pvm_xenstored_socket_path(F->srv));
	unsigned int len, n;
	char *v, **d;

	(void)state;
	assert_true(xs_write(h, XBT_NULL, "/vm/a", "1", 1));
	assert_true(xs_write(h, XBT_NULL, "/vm/b", "22", 2));
	assert_true(xs_mkdir(h, XBT_NULL, "/vm/c"));
	v = xs_read(h, XBT_NULL, "/vm/b", &len);
	assert_non_null(v);
	assert_int_equal(len, 2);
	assert_string_equal(v, "22");
	free(v);
	d = xs_directory(h, XBT_NULL, "/vm", &n);
	assert_non_null(d);
	assert_int_equal(n, 3);
	assert_string_equal(d[0], "a");
	assert_string_equal(d[2], "c");
	free(d);
	assert_null(xs_read(h, XBT_NULL, "/vm/none", &len));
	assert_int_equal(errno, ENOENT);
	assert_true(xs_rm(h, XBT_NULL, "/vm"));
	assert_null(xs_read(h, XBT_NULL, "/vm/a", &len));
	xs_close(h);
}

static void test_large_directory(void **state)
{
	struct xs_handle *h = open_at(pvm_xenstored_socket_path(F->srv));
	unsigned int n;
	char **d, p[96];

	(void)state;
	/* Over one payload: libxenstore falls back to DIRECTORY_PART. */
	for (int i = 0; i < 400; i++) {
		snprintf(p, sizeof(p), "/many/entry-number-%04d", i);
		assert_true(xs_write(h, XBT_NULL, p, "", 0));
	}
	d = xs_directory(h, XBT_NULL, "/many", &n);
	assert_non_null(d);
	assert_int_equal(n, 400);
	assert_string_equal(d[399], "entry-number-0399");
	free(d);
	assert_true(xs_rm(h, XBT_NULL, "/many"));
	xs_close(h);
}

static void test_permissions(void **state)
{
	struct xs_handle *h = open_at(pvm_xenstored_socket_path(F->srv));
	struct xs_permissions set[2] = {
		{ .id = 4, .perms = XS_PERM_NONE },
		{ .id = 0, .perms = XS_PERM_READ },
	};
	struct xs_permissions *got;
	unsigned int n;

	(void)state;
	assert_true(xs_write(h, XBT_NULL, "/perm", "x", 1));
	assert_true(xs_set_permissions(h, XBT_NULL, "/perm", set, 2));
	got = xs_get_permissions(h, XBT_NULL, "/perm", &n);
	assert_non_null(got);
	assert_int_equal(n, 2);
	assert_int_equal(got[0].id, 4);
	assert_int_equal(got[0].perms, XS_PERM_NONE);
	assert_int_equal(got[1].perms, XS_PERM_READ);
	free(got);
	assert_true(xs_rm(h, XBT_NULL, "/perm"));
	xs_close(h);
}

static void test_watch(void **state)
{
	struct xs_handle *h = open_at(pvm_xenstored_socket_path(F->srv));
	struct xs_handle *w = open_at(pvm_xenstored_socket_path(F->srv));

	(void)state;
	assert_true(xs_watch(w, "/watched", "tok"));
	expect_watch(w, "/watched", "tok");
	assert_true(xs_write(h, XBT_NULL, "/watched/k", "v", 1));
	expect_watch(w, "/watched/k", "tok");
	assert_true(xs_unwatch(w, "/watched", "tok"));
	assert_true(xs_rm(h, XBT_NULL, "/watched"));
	xs_close(w);
	xs_close(h);
}

static void test_transaction(void **state)
{
	struct xs_handle *h = open_at(pvm_xenstored_socket_path(F->srv));
	struct xs_handle *o = open_at(pvm_xenstored_socket_path(F->srv));
	xs_transaction_t t;
	unsigned int len;
	char *v;

	(void)state;
	assert_true(xs_write(h, XBT_NULL, "/t/n", "0", 1));
	t = xs_transaction_start(h);
	assert_int_not_equal(t, XBT_NULL);
	assert_true(xs_write(h, t, "/t/n", "1", 1));
	v = xs_read(o, XBT_NULL, "/t/n", &len);
	assert_string_equal(v, "0");
	free(v);
	assert_true(xs_transaction_end(h, t, false));
	v = xs_read(o, XBT_NULL, "/t/n", &len);
	assert_string_equal(v, "1");
	free(v);
	/* Conflict: the usual retry loop sees EAGAIN. */
	t = xs_transaction_start(h);
	v = xs_read(h, t, "/t/n", &len);
	free(v);
	assert_true(xs_write(o, XBT_NULL, "/t/n", "2", 1));
	assert_true(xs_write(h, t, "/t/n", "3", 1));
	assert_false(xs_transaction_end(h, t, false));
	assert_int_equal(errno, EAGAIN);
	v = xs_read(o, XBT_NULL, "/t/n", &len);
	assert_string_equal(v, "2");
	free(v);
	/* Abort. */
	t = xs_transaction_start(h);
	assert_true(xs_write(h, t, "/t/n", "4", 1));
	assert_true(xs_transaction_end(h, t, true));
	v = xs_read(o, XBT_NULL, "/t/n", &len);
	assert_string_equal(v, "2");
	free(v);
	assert_true(xs_rm(h, XBT_NULL, "/t"));
	xs_close(o);
	xs_close(h);
}

static void test_domains(void **state)
{
	struct xs_handle *h = open_at(pvm_xenstored_socket_path(F->srv));
	struct xs_handle *w = open_at(pvm_xenstored_socket_path(F->srv));
	struct xs_handle *g;
	char sock[256], *p;
	unsigned int len;

	(void)state;
	assert_true(xs_watch(w, "@introduceDomain", "in"));
	expect_watch(w, "@introduceDomain", "in");
	assert_true(xs_watch(w, "@releaseDomain", "out"));
	expect_watch(w, "@releaseDomain", "out");
	assert_false(xs_is_domain_introduced(h, 4));
	assert_true(xs_introduce_domain(h, 4, 0x1234, 5));
	expect_watch(w, "@introduceDomain", "in");
	assert_true(xs_is_domain_introduced(h, 4));
	p = xs_get_domain_path(h, 4);
	assert_string_equal(p, "/local/domain/4");
	free(p);

	/* The toolstack's part: the domain's directory, owned by it. */
	assert_true(xs_mkdir(h, XBT_NULL, "/local/domain/4"));
	{
		struct xs_permissions own = { .id = 4, .perms = XS_PERM_NONE };

		assert_true(xs_set_permissions(h, XBT_NULL, "/local/domain/4", &own, 1));
	}
	assert_true(xs_write(h, XBT_NULL, "/local/domain/4/name", "guest4", 6));

	/* The guest's side, through the per-domain socket: relative paths,
	 * and dom0's nodes are out of reach. */
	assert_int_equal(pvm_xenstored_domain_socket_path(F->srv, 4, sock, sizeof(sock)), 0);
	g = open_at(sock);
	p = xs_read(g, XBT_NULL, "name", &len);
	assert_string_equal(p, "guest4");
	free(p);
	assert_true(xs_write(g, XBT_NULL, "control/shutdown", "", 0));
	assert_null(xs_read(g, XBT_NULL, "/local/domain/0/rel", &len));
	assert_int_equal(errno, EACCES);
	assert_false(xs_introduce_domain(g, 5, 1, 1));
	assert_int_equal(errno, EACCES);
	xs_close(g);

	assert_true(xs_release_domain(h, 4));
	expect_watch(w, "@releaseDomain", "out");
	assert_false(xs_is_domain_introduced(h, 4));
	assert_true(xs_rm(h, XBT_NULL, "/local/domain/4"));
	xs_close(w);
	xs_close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_write_directory),
		cmocka_unit_test(test_large_directory),
		cmocka_unit_test(test_permissions),
		cmocka_unit_test(test_watch),
		cmocka_unit_test(test_transaction),
		cmocka_unit_test(test_domains),
	};

	pvm_log_set_level(PVM_LOG_WARN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
