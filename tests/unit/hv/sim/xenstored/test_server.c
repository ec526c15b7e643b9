/*
 * hv/sim/xenstored/server.c (and the checks in ops.c): bad input, quotas,
 * misbehaving clients. Each case checks the documented error or action
 * and that another client is unaffected.
 */
#include "harness.h"

static struct srv_fixture *F;

/* ---- log capture -------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[16384];

static void log_sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
	size_t l;

	(void)ctx;
	(void)lvl;
	pthread_mutex_lock(&log_lock);
	l = strlen(log_text);
	snprintf(log_text + l, sizeof(log_text) - l, "%s\n", line);
	pthread_mutex_unlock(&log_lock);
}

static bool log_has(const char *s)
{
	bool r;

	pthread_mutex_lock(&log_lock);
	r = strstr(log_text, s) != NULL;
	pthread_mutex_unlock(&log_lock);
	return r;
}

/* The server logs from its own thread: wait for a line (at most 5 s). */
static bool wait_log(const char *s)
{
	for (int i = 0; i < 500; i++) {
		if (log_has(s))
			return true;
		usleep(10000);
	}
	return false;
}

static void log_clear(void)
{
	pthread_mutex_lock(&log_lock);
	log_text[0] = '\0';
	pthread_mutex_unlock(&log_lock);
}

static void small_event_queue(struct pvm_xenstored_opts *o)
{
	o->max_queued_events = 16;
}

static int setup(void **state)
{
	(void)state;
	pvm_log_set_sink(log_sink, NULL);
	F = srv_start(small_event_queue);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	srv_stop(F);
	pvm_log_set_sink(NULL, NULL);
	return 0;
}

/* A second client still gets served. */
static void other_client_ok(void)
{
	struct tc *o = tc_open(F);

	assert_string_equal(tc_write(o, 0, "/other/ok", "yes"), "OK");
	assert_string_equal(tc_one(o, XS_READ, 0, "/other/ok"), "yes");
	tc_close(o);
}

/* Waits for EOF on @t (after draining what was already sent). */
static void expect_dropped(struct tc *t)
{
	char buf[XENSTORE_PAYLOAD_MAX + 1];
	struct xsd_sockmsg h;
	int rc, n = 0;

	while ((rc = tc_recv(t, &h, buf, RECV_TIMEOUT_MS)) == 0)
		assert_true(++n < 100000);
	/* EOF, or a reset when the server closed with our bytes unread. */
	assert_true(rc == -EPIPE || rc == -ECONNRESET);
}

static void test_unknown_type(void **state)
{
	struct tc *t = tc_open(F);

	(void)state;
	assert_string_equal(tc_do(t, 99, 0, PL("/\0")), "ENOSYS");
	assert_string_equal(tc_do(t, XS_TYPE_COUNT, 0, PL("/\0")), "ENOSYS");
	assert_string_equal(tc_do(t, XS_INVALID, 0, PL("/\0")), "ENOSYS");
	assert_string_equal(tc_do(t, 0xffffffffu, 0, PL("/\0")), "ENOSYS");
	/* Reply-only types are not requests. */
	assert_string_equal(tc_do(t, XS_WATCH_EVENT, 0, PL("/\0t\0")), "ENOSYS");
	assert_string_equal(tc_do(t, XS_ERROR, 0, PL("EINVAL\0")), "ENOSYS");
	/* The connection survives. */
	assert_string_equal(tc_one(t, XS_READ, 0, "/local"), "");
	tc_close(t);
}

static void test_payload_too_long(void **state)
{
	struct tc *t = tc_open(F);
	char big[XENSTORE_PAYLOAD_MAX + 1];
	int rc;

	(void)state;
	log_clear();
	memset(big, 'a', sizeof(big));
	big[0] = '/';
	big[sizeof(big) - 1] = '\0';
	/* xenstored kills a connection that exceeds XENSTORE_PAYLOAD_MAX; it
	 * may do so before we finish sending the body. */
	rc = tc_send_raw(t, XS_WRITE, 1, 0, big, sizeof(big));
	assert_true(rc == 0 || rc == -EPIPE || rc == -ECONNRESET);
	expect_dropped(t);
	assert_true(log_has("over XENSTORE_PAYLOAD_MAX"));
	tc_close(t);
	/* Just the header claiming a huge length is enough. */
	t = tc_open(F);
	assert_int_equal(tc_send_raw(t, XS_READ, 1, 0, NULL, 0x7fffffffu), 0);
	expect_dropped(t);
	tc_close(t);
	/* Exactly XENSTORE_PAYLOAD_MAX is fine. */
	t = tc_open(F);
	memcpy(big, "/big", 5);
	assert_string_equal(tc_do(t, XS_WRITE, 0, big, XENSTORE_PAYLOAD_MAX), "OK");
	assert_int_equal(strlen(tc_one(t, XS_READ, 0, "/big")),
			 XENSTORE_PAYLOAD_MAX - 5);
	tc_one(t, XS_RM, 0, "/big");
	tc_close(t);
	other_client_ok();
}

static void test_missing_nuls(void **state)
{
	struct tc *t = tc_open(F);

	(void)state;
	assert_string_equal(tc_do(t, XS_READ, 0, PL("/local")), "EINVAL");
	assert_string_equal(tc_do(t, XS_READ, 0, NULL, 0), "EINVAL");
	assert_string_equal(tc_do(t, XS_READ, 0, PL("/local\0extra\0")), "EINVAL");
	assert_string_equal(tc_do(t, XS_WRITE, 0, PL("/no-nul")), "EINVAL");
	assert_string_equal(tc_do(t, XS_MKDIR, 0, PL("/x")), "EINVAL");
	assert_string_equal(tc_do(t, XS_RM, 0, PL("/x")), "EINVAL");
	assert_string_equal(tc_do(t, XS_DIRECTORY, 0, PL("/")), "EINVAL");
	assert_string_equal(tc_do(t, XS_GET_PERMS, 0, PL("/")), "EINVAL");
	assert_string_equal(tc_do(t, XS_WATCH, 0, PL("/a\0tok")), "EINVAL");
	assert_string_equal(tc_do(t, XS_UNWATCH, 0, PL("/a")), "EINVAL");
	assert_string_equal(tc_do(t, XS_DIRECTORY_PART, 0, PL("/\0" "0")), "EINVAL");
	assert_string_equal(tc_do(t, XS_GET_DOMAIN_PATH, 0, PL("1")), "EINVAL");
	assert_string_equal(tc_do(t, XS_INTRODUCE, 0, PL("3\0" "1\0" "1")), "EINVAL");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local"), "");
	tc_close(t);
	other_client_ok();
}

static void test_bad_paths(void **state)
{
	struct tc *t = tc_open(F);
	static char p[XENSTORE_PAYLOAD_MAX];

	(void)state;
	/* Over XENSTORE_ABS_PATH_MAX. */
	memset(p, 'a', XENSTORE_ABS_PATH_MAX + 1);
	p[0] = '/';
	p[XENSTORE_ABS_PATH_MAX + 1] = '\0';
	assert_string_equal(tc_one(t, XS_READ, 0, p), "EINVAL");
	assert_string_equal(tc_write(t, 0, p, "v"), "EINVAL");
	p[XENSTORE_ABS_PATH_MAX] = '\0'; /* exactly the limit is allowed */
	assert_string_equal(tc_one(t, XS_READ, 0, p), "ENOENT");
	/* A relative path over XENSTORE_REL_PATH_MAX. */
	memset(p, 'b', XENSTORE_REL_PATH_MAX + 1);
	p[XENSTORE_REL_PATH_MAX + 1] = '\0';
	assert_string_equal(tc_one(t, XS_READ, 0, p), "EINVAL");
	/* Below /local/domain/<id>/, at most XENSTORE_REL_PATH_MAX more. */
	snprintf(p, sizeof(p), "/local/domain/3/");
	memset(p + 16, 'c', XENSTORE_REL_PATH_MAX + 1);
	p[16 + XENSTORE_REL_PATH_MAX + 1] = '\0';
	assert_string_equal(tc_write(t, 0, p, "v"), "EINVAL");
	/* Syntax. */
	assert_string_equal(tc_one(t, XS_READ, 0, ""), "EINVAL");
	assert_string_equal(tc_one(t, XS_READ, 0, "//local"), "EINVAL");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/"), "EINVAL");
	assert_string_equal(tc_one(t, XS_READ, 0, "/lo cal"), "EINVAL");
	assert_string_equal(tc_one(t, XS_READ, 0, "/a.b"), "EINVAL");
	/* Special names are for watches only. */
	assert_string_equal(tc_one(t, XS_READ, 0, "@introduceDomain"), "EINVAL");
	assert_string_equal(tc_write(t, 0, "@releaseDomain", "x"), "EINVAL");
	assert_string_equal(tc_two(t, XS_WATCH, 0, "bad path!", "t"), "EINVAL");
	tc_close(t);
	other_client_ok();
}

static void test_unknown_transaction(void **state)
{
	struct tc *t = tc_open(F);

	(void)state;
	assert_string_equal(tc_one(t, XS_READ, 77, "/local"), "ENOENT");
	assert_string_equal(tc_write(t, 77, "/local/x", "1"), "ENOENT");
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, 77, "T"), "ENOENT");
	/* A transaction of another connection is unknown here. */
	{
		struct tc *o = tc_open(F);
		const char *id = tc_do(o, XS_TRANSACTION_START, 0, PL("\0"));
		uint32_t tx = (uint32_t)strtoul(id, NULL, 10);

		assert_true(tx != 0);
		assert_string_equal(tc_one(t, XS_READ, tx + 1000, "/local"), "ENOENT");
		tc_close(o);
	}
	/* WATCH ignores tx_id. */
	assert_string_equal(tc_two(t, XS_WATCH, 55, "/w", "t"), "OK");
	tc_close(t);
}

static void test_token_limit(void **state)
{
	struct tc *t = tc_open(F);
	static char tok[XENSTORE_REL_PATH_MAX + 2];

	(void)state;
	memset(tok, 'k', XENSTORE_REL_PATH_MAX + 1);
	tok[XENSTORE_REL_PATH_MAX + 1] = '\0';
	assert_string_equal(tc_two(t, XS_WATCH, 0, "/tok", tok), "E2BIG");
	tok[XENSTORE_REL_PATH_MAX] = '\0';
	assert_string_equal(tc_two(t, XS_WATCH, 0, "/tok", tok), "OK");
	tc_expect_event(t, "/tok", tok);
	tc_close(t);
}

static void test_disconnect_mid_message(void **state)
{
	struct tc *t;
	char half[10] = "/local/do";

	(void)state;
	log_clear();
	/* Header promises 100 bytes; 9 arrive; the client goes away. */
	t = tc_open(F);
	assert_int_equal(tc_send_raw(t, XS_READ, 1, 0, NULL, 100), 0);
	assert_int_equal(write_all(t->fd, half, 9), 0);
	tc_close(t);
	/* Half a header. */
	t = tc_open(F);
	assert_int_equal(write_all(t->fd, "\x02\x00\x00", 3), 0);
	tc_close(t);
	other_client_ok();
	assert_true(wait_log("in the middle of a message"));
}

static void test_event_flood(void **state)
{
	struct tc *lazy = tc_open(F), *w = tc_open(F);
	int i;

	(void)state;
	log_clear();
	/* lazy registers a watch and then never reads. */
	assert_string_equal(tc_two(lazy, XS_WATCH, 0, "/flood", "z"), "OK");
	for (i = 0; i < 20000 && !log_has("does not read its watch events"); i++)
		assert_string_equal(tc_write(w, 0, "/flood/x", "data"), "OK");
	assert_true(log_has("does not read its watch events"));
	/* The writer was never held up, and others still work. */
	other_client_ok();
	expect_dropped(lazy);
	tc_close(lazy);
	tc_one(w, XS_RM, 0, "/flood");
	tc_close(w);
}

static void test_outstanding_requests(void **state)
{
	struct tc *t = tc_open(F);
	char buf[XENSTORE_PAYLOAD_MAX + 1];
	struct xsd_sockmsg h;

	(void)state;
	/* 300 requests pipelined without reading: the server stops reading
	 * after the outstanding quota, but loses nothing. */
	for (uint32_t i = 0; i < 300; i++)
		assert_int_equal(tc_send_raw(t, XS_GET_DOMAIN_PATH, 1000 + i, 0,
					     PL("3\0")), 0);
	other_client_ok();
	for (uint32_t i = 0; i < 300; i++) {
		assert_int_equal(tc_recv(t, &h, buf, RECV_TIMEOUT_MS), 0);
		assert_int_equal(h.type, XS_GET_DOMAIN_PATH);
		assert_int_equal(h.req_id, 1000 + i);
		assert_string_equal(buf, "/local/domain/3");
	}
	tc_close(t);
}

static void test_domain_quotas(void **state)
{
	struct tc *t = tc_open(F), *g, *g2;
	char path[64], big[2100];
	int i, ok = 0;
	const char *r;

	(void)state;
	assert_int_equal(pvm_xenstored_introduce(F->srv, 7), 0);
	assert_int_equal(pvm_xenstored_introduce(F->srv, 8), 0);
	assert_string_equal(tc_one(t, XS_MKDIR, 0, "/local/domain/7"), "OK");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/local/domain/7\0n7\0")), "OK");
	assert_string_equal(tc_one(t, XS_MKDIR, 0, "/local/domain/8"), "OK");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/local/domain/8\0n8\0")), "OK");
	g = tc_open_dom(F, 7);
	g2 = tc_open_dom(F, 8);

	/* A flood of writes: dom7 owns at most 1000 nodes (it owns its
	 * directory already). */
	for (i = 0; i < 1100; i++) {
		snprintf(path, sizeof(path), "data/k%d", i);
		r = tc_write(g, 0, path, "v");
		if (strcmp(r, "OK") != 0) {
			assert_string_equal(r, "ENOSPC");
			break;
		}
		ok++;
	}
	assert_int_equal(ok, 1000 - 2); /* + /local/domain/7 and data */
	assert_string_equal(tc_write(g, 0, "data/k0", "rewrite is fine"), "OK");
	assert_string_equal(tc_one(g, XS_RM, 0, "data/k0"), "OK");
	assert_string_equal(tc_write(g, 0, "data/again", "v"), "OK");
	/* Others are unaffected: dom8 and dom0. */
	assert_string_equal(tc_write(g2, 0, "x", "1"), "OK");
	assert_string_equal(tc_write(t, 0, "/local/domain/7/data/by-dom0", "1"), "OK");
	other_client_ok();

	/* Entry size. */
	memset(big, 'v', sizeof(big));
	big[2049] = '\0';
	assert_string_equal(tc_write(g2, 0, "big", big), "ENOSPC");
	big[2048] = '\0';
	assert_string_equal(tc_write(g2, 0, "big", big), "OK");
	/* ACL length: owner + 5 more. */
	assert_string_equal(tc_do(g2, XS_SET_PERMS, 0,
				  PL("x\0n8\0r1\0r2\0r3\0r4\0r5\0r6\0")), "ENOSPC");
	assert_string_equal(tc_do(g2, XS_SET_PERMS, 0,
				  PL("x\0n8\0r1\0r2\0r3\0r4\0r5\0")), "OK");
	/* Watches: 128. */
	for (i = 0; i < 128; i++) {
		snprintf(path, sizeof(path), "w%d", i);
		assert_string_equal(tc_two(g2, XS_WATCH, 0, path, "t"), "OK");
	}
	assert_string_equal(tc_two(g2, XS_WATCH, 0, "w-too-many", "t"), "E2BIG");
	/* Transactions: 10. */
	for (i = 0; i < 10; i++)
		assert_string_not_equal(tc_do(g2, XS_TRANSACTION_START, 0, PL("\0")),
					"ENOSPC");
	assert_string_equal(tc_do(g2, XS_TRANSACTION_START, 0, PL("\0")), "ENOSPC");
	/* dom0 has no quota. */
	for (i = 0; i < 12; i++)
		assert_string_not_equal(tc_do(t, XS_TRANSACTION_START, 0, PL("\0")),
					"ENOSPC");
	tc_close(g);
	tc_close(g2);
	assert_int_equal(pvm_xenstored_release(F->srv, 7), 0);
	assert_int_equal(pvm_xenstored_release(F->srv, 8), 0);
	tc_one(t, XS_RM, 0, "/local/domain/7");
	tc_one(t, XS_RM, 0, "/local/domain/8");
	tc_close(t);
}

static void test_second_server_refused(void **state)
{
	struct pvm_xenstored_opts o;
	struct pvm_xenstored *s2 = NULL;

	(void)state;
	pvm_xenstored_opts_default(&o);
	o.state_dir = F->dir;
	assert_int_equal(pvm_xenstored_create(&o, &s2), -EBUSY);
	assert_null(s2);
	other_client_ok();
	o.state_dir = "/nonexistent/dir";
	assert_int_not_equal(pvm_xenstored_create(&o, &s2), 0);
	o.state_dir = NULL;
	assert_int_equal(pvm_xenstored_create(&o, &s2), -EINVAL);
}

/*
 * Deterministic garbage: well-formed headers (len within the limit) with
 * random types, transaction ids and payloads built from path-like pieces
 * and NULs, from a dom0 and a domain connection. Every request must get a
 * reply (never a crash or a dropped connection), and the server must still
 * serve afterwards.
 */
static void test_random_requests(void **state)
{
	static const char *const pieces[] = {
		"/", "/local", "/local/domain/4", "a", "b", "@introduceDomain",
		"T", "F", "0", "4", "n4", "b0", "r4", "", "..", "//", "/x/y/z",
		"data", "99999999999", "-1", "w4",
	};
	struct tc *t[2];
	unsigned int seed = 12345;
	char buf[XENSTORE_PAYLOAD_MAX + 1], out[XENSTORE_PAYLOAD_MAX + 1];

	(void)state;
	assert_int_equal(pvm_xenstored_introduce(F->srv, 4), 0);
	t[0] = tc_open(F);
	t[1] = tc_open_dom(F, 4);
	for (int i = 0; i < 3000; i++) {
		struct tc *c = t[i & 1];
		uint32_t len = 0, type, tx, olen;
		int n = rand_r(&seed) % 6, rt;

		for (int k = 0; k < n; k++) {
			const char *p = pieces[rand_r(&seed) % PVM_ARRAY_SIZE(pieces)];
			size_t pl = strlen(p);

			if (len + pl + 1 > 256)
				break;
			memcpy(buf + len, p, pl);
			len += (uint32_t)pl;
			if (rand_r(&seed) % 4)
				buf[len++] = '\0';
		}
		if (rand_r(&seed) % 8 == 0) /* raw bytes */
			for (uint32_t k = 0; k < len; k++)
				buf[k] = (char)rand_r(&seed);
		type = (uint32_t)(rand_r(&seed) % (XS_TYPE_COUNT + 3));
		/* Never INTRODUCE/RELEASE/RESET from dom0 at random: they would
		 * drop the domain's connection, which is their documented job. */
		if (c == t[0] && (type == XS_RELEASE || type == XS_INTRODUCE))
			type = XS_READ;
		tx = rand_r(&seed) % 4 == 0 ? (uint32_t)(rand_r(&seed) % 4) : 0;
		rt = tc_call(c, type, tx, buf, len, out, &olen);
		if (rt < 0)
			fail_msg("request %d (type %u, tx %u, len %u): no reply (%d)",
				 i, type, tx, len, rt);
	}
	assert_string_equal(tc_one(t[1], XS_GET_DOMAIN_PATH, 0, "4"), "/local/domain/4");
	tc_close(t[1]);
	tc_close(t[0]);
	assert_int_equal(pvm_xenstored_release(F->srv, 4), 0);
	other_client_ok();
	{
		struct tc *c = tc_open(F);

		tc_one(c, XS_RM, 0, "/x");
		tc_one(c, XS_RM, 0, "/data");
		tc_one(c, XS_RM, 0, "/a");
		tc_one(c, XS_RM, 0, "/b");
		tc_close(c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_type),
		cmocka_unit_test(test_payload_too_long),
		cmocka_unit_test(test_missing_nuls),
		cmocka_unit_test(test_bad_paths),
		cmocka_unit_test(test_unknown_transaction),
		cmocka_unit_test(test_token_limit),
		cmocka_unit_test(test_disconnect_mid_message),
		cmocka_unit_test(test_event_flood),
		cmocka_unit_test(test_outstanding_requests),
		cmocka_unit_test(test_domain_quotas),
		cmocka_unit_test(test_second_server_refused),
		cmocka_unit_test(test_random_requests),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
