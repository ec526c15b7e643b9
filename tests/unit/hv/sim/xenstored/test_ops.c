/*
 * hv/sim/xenstored/ops.c: every message type over the wire, through a raw
 * client, with the replies and errors docs/misc/xenstore.txt gives.
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

static void test_read_write_mkdir_rm(void **state)
{
	struct tc *t = tc_open(F);
	char out[XENSTORE_PAYLOAD_MAX + 1];
	uint32_t len;

	(void)state;
	assert_string_equal(tc_write(t, 0, "/a/b/c", "hello"), "OK");
	assert_string_equal(tc_one(t, XS_READ, 0, "/a/b/c"), "hello");
	/* WRITE created the parents, with empty values. */
	assert_string_equal(tc_one(t, XS_READ, 0, "/a/b"), "");
	/* Values are binary: NULs survive. */
	assert_string_equal(tc_do(t, XS_WRITE, 0, PL("/bin\0x\0y")), "OK");
	assert_int_equal(tc_call(t, XS_READ, 0, PL("/bin\0"), out, &len), XS_READ);
	assert_int_equal(len, 3);
	assert_memory_equal(out, "x\0y", 3);
	assert_string_equal(tc_one(t, XS_READ, 0, "/nope"), "ENOENT");
	/* MKDIR keeps an existing value. */
	assert_string_equal(tc_one(t, XS_MKDIR, 0, "/a/b/c"), "OK");
	assert_string_equal(tc_one(t, XS_READ, 0, "/a/b/c"), "hello");
	assert_string_equal(tc_one(t, XS_MKDIR, 0, "/m/n"), "OK");
	assert_string_equal(tc_one(t, XS_READ, 0, "/m/n"), "");
	/* RM removes children; a missing node is fine if its parent exists. */
	assert_string_equal(tc_one(t, XS_RM, 0, "/a"), "OK");
	assert_string_equal(tc_one(t, XS_READ, 0, "/a/b/c"), "ENOENT");
	assert_string_equal(tc_one(t, XS_RM, 0, "/m/gone"), "OK");
	assert_string_equal(tc_one(t, XS_RM, 0, "/a/b"), "ENOENT");
	assert_string_equal(tc_one(t, XS_RM, 0, "/"), "EINVAL");
	/* Relative paths of dom0 are below /local/domain/0. */
	assert_string_equal(tc_write(t, 0, "rel", "1"), "OK");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/0/rel"), "1");
	tc_one(t, XS_RM, 0, "/m");
	tc_one(t, XS_RM, 0, "/bin");
	tc_close(t);
}

static void test_directory(void **state)
{
	struct tc *t = tc_open(F);
	char out[XENSTORE_PAYLOAD_MAX + 1];
	uint32_t len;

	(void)state;
	assert_string_equal(tc_write(t, 0, "/d/x", ""), "OK");
	assert_string_equal(tc_write(t, 0, "/d/y", ""), "OK");
	assert_int_equal(tc_call(t, XS_DIRECTORY, 0, PL("/d\0"), out, &len),
			 XS_DIRECTORY);
	assert_int_equal(len, 4);
	assert_memory_equal(out, "x\0y\0", 4);
	assert_int_equal(tc_call(t, XS_DIRECTORY, 0, PL("/d/x\0"), out, &len),
			 XS_DIRECTORY);
	assert_int_equal(len, 0);
	assert_string_equal(tc_one(t, XS_DIRECTORY, 0, "/nope"), "ENOENT");
	tc_one(t, XS_RM, 0, "/d");
	tc_close(t);
}

static void test_directory_part(void **state)
{
	struct tc *t = tc_open(F);
	char out[XENSTORE_PAYLOAD_MAX + 1], name[64], gen[32];
	char *all = calloc(1, 300 * 64);
	size_t alllen = 0, off = 0, want = 0;
	uint32_t len;

	(void)state;
	assert_non_null(all);
	for (int i = 0; i < 300; i++) {
		char p[96];

		snprintf(name, sizeof(name), "child-with-a-long-name-%03d", i);
		snprintf(p, sizeof(p), "/big/%s", name);
		assert_string_equal(tc_write(t, 0, p, ""), "OK");
		want += strlen(name) + 1;
	}
	/* Too many children for one payload. */
	assert_string_equal(tc_one(t, XS_DIRECTORY, 0, "/big"), "E2BIG");
	for (int round = 0; round < 10; round++) {
		char req[64];
		int n = snprintf(req, sizeof(req), "/big%c%zu", '\0', off);
		size_t gl;

		assert_int_equal(tc_call(t, XS_DIRECTORY_PART, 0, req,
					 (uint32_t)n + 1, out, &len),
				 XS_DIRECTORY_PART);
		gl = strlen(out) + 1;
		if (round == 0)
			snprintf(gen, sizeof(gen), "%.31s", out);
		assert_string_equal(out, gen); /* unchanged between parts */
		memcpy(all + alllen, out + gl, len - gl);
		alllen += len - gl;
		off += len - gl;
		if (alllen >= 2 && all[alllen - 2] == '\0' && all[alllen - 1] == '\0')
			break;
	}
	/* All names, then the terminating empty string. */
	assert_int_equal(alllen, want + 1);
	assert_memory_equal(all, "child-with-a-long-name-000\0", 27);
	/* Past the end: the empty list. */
	assert_int_equal(tc_call(t, XS_DIRECTORY_PART, 0, PL("/big\0" "999999\0"),
				 out, &len), XS_DIRECTORY_PART);
	assert_int_equal(len, strlen(gen) + 2);
	assert_string_equal(out, gen);
	assert_int_equal(out[len - 1], '\0');
	assert_string_equal(tc_two(t, XS_DIRECTORY_PART, 0, "/big", "x"), "EINVAL");
	tc_one(t, XS_RM, 0, "/big");
	free(all);
	tc_close(t);
}

static void test_perms(void **state)
{
	struct tc *t = tc_open(F), *g;
	char out[XENSTORE_PAYLOAD_MAX + 1];
	uint32_t len;

	(void)state;
	assert_int_equal(pvm_xenstored_introduce(F->srv, 5), 0);
	g = tc_open_dom(F, 5);
	assert_string_equal(tc_write(t, 0, "/p/secret", "s"), "OK");
	assert_int_equal(tc_call(t, XS_GET_PERMS, 0, PL("/p/secret\0"), out, &len),
			 XS_GET_PERMS);
	assert_memory_equal(out, "n0\0", 3);
	/* dom5 can neither read nor learn whether a child exists. */
	assert_string_equal(tc_one(g, XS_READ, 0, "/p/secret"), "EACCES");
	assert_string_equal(tc_one(g, XS_READ, 0, "/p/secret/none"), "EACCES");
	assert_string_equal(tc_write(g, 0, "/p/x", "1"), "EACCES");
	/* Owner dom0, read for everyone, write for dom5. */
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/p\0n0\0w5\0")), "OK");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/p/secret\0r0\0")), "OK");
	assert_string_equal(tc_one(g, XS_READ, 0, "/p/secret"), "s");
	assert_string_equal(tc_one(g, XS_READ, 0, "/p/secret/none"), "ENOENT");
	assert_string_equal(tc_write(g, 0, "/p/mine", "m"), "OK");
	/* What dom5 creates it owns, inheriting the rest of the ACL. */
	assert_int_equal(tc_call(g, XS_GET_PERMS, 0, PL("/p/mine\0"), out, &len),
			 XS_GET_PERMS);
	assert_memory_equal(out, "n5\0w5\0", 6);
	/* Only the owner sets perms; unprivileged owners cannot give away. */
	assert_string_equal(tc_do(g, XS_SET_PERMS, 0, PL("/p/secret\0b5\0")), "EACCES");
	assert_string_equal(tc_do(g, XS_SET_PERMS, 0, PL("/p/mine\0r5\0b7\0")), "OK");
	assert_string_equal(tc_do(g, XS_SET_PERMS, 0, PL("/p/mine\0b7\0")), "EPERM");
	/* Malformed ACLs. */
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/p\0x0\0")), "EINVAL");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/p\0")), "EINVAL");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/p\0b99999\0")), "EINVAL");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/p\0b0")), "EINVAL");
	/* Relative paths of a domain are below its own directory. */
	assert_string_equal(tc_one(t, XS_MKDIR, 0, "/local/domain/5"), "OK");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/local/domain/5\0n5\0")), "OK");
	/* dom0 keeps the parent's ACL on what it creates. */
	assert_string_equal(tc_write(t, 0, "/local/domain/5/name", "guest"), "OK");
	assert_string_equal(tc_one(g, XS_READ, 0, "name"), "guest");
	assert_string_equal(tc_one(g, XS_READ, 0, "/local/domain/0/rel"), "EACCES");
	tc_one(t, XS_RM, 0, "/p");
	tc_one(t, XS_RM, 0, "/local/domain/5");
	tc_close(g);
	assert_int_equal(pvm_xenstored_release(F->srv, 5), 0);
	tc_close(t);
}

static void test_watches(void **state)
{
	struct tc *t = tc_open(F), *w = tc_open(F), *g;

	(void)state;
	assert_string_equal(tc_two(w, XS_WATCH, 0, "/w", "tok"), "OK");
	tc_expect_event(w, "/w", "tok"); /* fired once straight away */
	assert_string_equal(tc_two(w, XS_WATCH, 0, "/w", "tok"), "EEXIST");
	assert_string_equal(tc_write(t, 0, "/w/a/b", "1"), "OK");
	tc_expect_event(w, "/w/a/b", "tok");
	assert_string_equal(tc_write(t, 0, "/wx", "1"), "OK"); /* not a child */
	tc_expect_no_event(w);
	/* Removing a parent of the watched path fires with the watched path. */
	assert_string_equal(tc_two(w, XS_WATCH, 0, "/w/a/b/deep", "t2"), "OK");
	tc_expect_event(w, "/w/a/b/deep", "t2");
	assert_string_equal(tc_one(t, XS_RM, 0, "/w/a"), "OK");
	tc_expect_event(w, "/w/a", "tok");
	tc_expect_event(w, "/w/a/b/deep", "t2");
	/* SET_PERMS is a change too. */
	assert_string_equal(tc_write(t, 0, "/w/p", ""), "OK");
	tc_expect_event(w, "/w/p", "tok");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/w/p\0r0\0")), "OK");
	tc_expect_event(w, "/w/p", "tok");
	assert_string_equal(tc_two(w, XS_UNWATCH, 0, "/w", "tok"), "OK");
	assert_string_equal(tc_two(w, XS_UNWATCH, 0, "/w", "tok"), "ENOENT");
	assert_string_equal(tc_write(t, 0, "/w/p", "2"), "OK");
	tc_expect_no_event(w);
	assert_string_equal(tc_do(w, XS_WATCH, 0, PL("/w\0")), "EINVAL");

	/* A domain's relative watch sees relative paths, and only what it
	 * may read. */
	assert_int_equal(pvm_xenstored_introduce(F->srv, 6), 0);
	assert_string_equal(tc_write(t, 0, "/local/domain/6/device", ""), "OK");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/local/domain/6\0n6\0")), "OK");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/local/domain/6/device\0n6\0")), "OK");
	g = tc_open_dom(F, 6);
	assert_string_equal(tc_two(g, XS_WATCH, 0, "device", "dev"), "OK");
	tc_expect_event(g, "device", "dev");
	assert_string_equal(tc_two(g, XS_WATCH, 0, "/secret", "s"), "OK");
	tc_expect_event(g, "/secret", "s");
	assert_string_equal(tc_write(t, 0, "/local/domain/6/device/vif/0/state", "1"), "OK");
	tc_expect_event(g, "device/vif/0/state", "dev");
	assert_string_equal(tc_write(t, 0, "/secret/x", "1"), "OK");
	tc_expect_no_event(g);
	/* RESET_WATCHES forgets them all. */
	assert_string_equal(tc_do(g, XS_RESET_WATCHES, 0, PL("\0")), "OK");
	assert_string_equal(tc_write(t, 0, "/local/domain/6/device/vif/0/state", "2"), "OK");
	tc_expect_no_event(g);
	tc_close(g);
	assert_int_equal(pvm_xenstored_release(F->srv, 6), 0);
	tc_one(t, XS_RM, 0, "/local/domain/6");
	tc_one(t, XS_RM, 0, "/w");
	tc_one(t, XS_RM, 0, "/wx");
	tc_one(t, XS_RM, 0, "/secret");
	tc_close(w);
	tc_close(t);
}

static uint32_t tx_start(struct tc *t)
{
	const char *id = tc_do(t, XS_TRANSACTION_START, 0, PL("\0"));
	unsigned long v = strtoul(id, NULL, 10);

	assert_true(v > 0);
	return (uint32_t)v;
}

static void test_transactions(void **state)
{
	struct tc *t = tc_open(F), *o = tc_open(F), *w = tc_open(F);
	uint32_t tx, tx2;

	(void)state;
	assert_string_equal(tc_write(t, 0, "/tx/a", "0"), "OK");
	assert_string_equal(tc_two(w, XS_WATCH, 0, "/tx", "T"), "OK");
	tc_expect_event(w, "/tx", "T");

	/* Commit: invisible until the end, then visible with its events. */
	tx = tx_start(t);
	assert_string_equal(tc_write(t, tx, "/tx/a", "1"), "OK");
	assert_string_equal(tc_write(t, tx, "/tx/new/x", "n"), "OK");
	assert_string_equal(tc_one(t, XS_READ, tx, "/tx/a"), "1");
	assert_string_equal(tc_one(o, XS_READ, 0, "/tx/a"), "0");
	assert_string_equal(tc_one(o, XS_READ, 0, "/tx/new/x"), "ENOENT");
	tc_expect_no_event(w);
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, tx, "T"), "OK");
	assert_string_equal(tc_one(o, XS_READ, 0, "/tx/a"), "1");
	assert_string_equal(tc_one(o, XS_READ, 0, "/tx/new/x"), "n");
	tc_expect_event(w, "/tx/a", "T");
	tc_expect_event(w, "/tx/new/x", "T");
	/* The id is gone after the end. */
	assert_string_equal(tc_one(t, XS_READ, tx, "/tx/a"), "ENOENT");

	/* Abort discards. */
	tx = tx_start(t);
	assert_string_equal(tc_write(t, tx, "/tx/a", "aborted"), "OK");
	assert_string_equal(tc_one(t, XS_RM, tx, "/tx/new"), "OK");
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, tx, "F"), "OK");
	assert_string_equal(tc_one(o, XS_READ, 0, "/tx/a"), "1");
	assert_string_equal(tc_one(o, XS_READ, 0, "/tx/new/x"), "n");
	tc_expect_no_event(w);

	/* A conflicting commit answers EAGAIN and changes nothing. */
	tx = tx_start(t);
	assert_string_equal(tc_one(t, XS_READ, tx, "/tx/a"), "1");
	assert_string_equal(tc_write(t, tx, "/tx/b", "from-tx"), "OK");
	assert_string_equal(tc_write(o, 0, "/tx/a", "2"), "OK");
	tc_expect_event(w, "/tx/a", "T");
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, tx, "T"), "EAGAIN");
	assert_string_equal(tc_one(o, XS_READ, 0, "/tx/b"), "ENOENT");
	tc_expect_no_event(w);

	/* Non-overlapping transactions both commit. */
	tx = tx_start(t);
	tx2 = tx_start(o);
	assert_string_equal(tc_write(t, tx, "/tx/a", "3"), "OK");
	assert_string_equal(tc_write(o, tx2, "/tx/new/x", "4"), "OK");
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, tx, "T"), "OK");
	assert_string_equal(tc_one(o, XS_TRANSACTION_END, tx2, "T"), "OK");
	assert_string_equal(tc_one(o, XS_READ, 0, "/tx/a"), "3");
	assert_string_equal(tc_one(o, XS_READ, 0, "/tx/new/x"), "4");
	tc_expect_event(w, "/tx/a", "T");
	tc_expect_event(w, "/tx/new/x", "T");

	/* RM inside a transaction commits as a removal. */
	tx = tx_start(t);
	assert_string_equal(tc_one(t, XS_RM, tx, "/tx/new"), "OK");
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, tx, "T"), "OK");
	assert_string_equal(tc_one(o, XS_READ, 0, "/tx/new"), "ENOENT");
	tc_expect_event(w, "/tx/new", "T");

	/* Errors. */
	assert_string_equal(tc_one(t, XS_READ, 4242, "/tx/a"), "ENOENT");
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, 4242, "T"), "ENOENT");
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, 0, "T"), "ENOENT");
	tx = tx_start(t);
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, tx, "X"), "EINVAL");
	assert_string_equal(tc_do(t, XS_TRANSACTION_START, tx, PL("\0")), "EBUSY");
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, tx, "F"), "OK");

	tc_one(t, XS_RM, 0, "/tx");
	tc_close(w);
	tc_close(o);
	tc_close(t);
}

static void test_domains(void **state)
{
	struct tc *t = tc_open(F), *w = tc_open(F), *g;
	char sock[256];

	(void)state;
	assert_string_equal(tc_two(w, XS_WATCH, 0, "@introduceDomain", "i"), "OK");
	tc_expect_event(w, "@introduceDomain", "i");
	assert_string_equal(tc_two(w, XS_WATCH, 0, "@releaseDomain", "r"), "OK");
	tc_expect_event(w, "@releaseDomain", "r");

	assert_string_equal(tc_one(t, XS_IS_DOMAIN_INTRODUCED, 0, "9"), "F");
	assert_string_equal(tc_one(t, XS_IS_DOMAIN_INTRODUCED, 0, "0"), "T");
	assert_string_equal(tc_do(t, XS_INTRODUCE, 0, PL("9\0" "1234\0" "3\0")), "OK");
	tc_expect_event(w, "@introduceDomain", "i");
	assert_string_equal(tc_one(t, XS_IS_DOMAIN_INTRODUCED, 0, "9"), "T");
	assert_string_equal(tc_one(t, XS_GET_DOMAIN_PATH, 0, "9"), "/local/domain/9");
	assert_int_equal(pvm_xenstored_domain_socket_path(F->srv, 9, sock, sizeof(sock)), 0);
	assert_int_equal(access(sock, F_OK), 0);

	/* The domain's own connection may not manage domains. */
	g = tc_open_dom(F, 9);
	assert_string_equal(tc_do(g, XS_INTRODUCE, 0, PL("10\0" "1\0" "1\0")), "EACCES");
	assert_string_equal(tc_one(g, XS_RELEASE, 0, "9"), "EACCES");
	assert_string_equal(tc_one(g, XS_RESUME, 0, "9"), "EACCES");
	assert_string_equal(tc_two(g, XS_SET_TARGET, 0, "9", "1"), "EACCES");
	assert_string_equal(tc_two(g, XS_CONTROL, 0, "print", "x"), "EACCES");
	assert_string_equal(tc_one(g, XS_GET_DOMAIN_PATH, 0, "9"), "/local/domain/9");

	assert_string_equal(tc_do(t, XS_INTRODUCE, 0, PL("0\0" "1\0" "1\0")), "EINVAL");
	assert_string_equal(tc_do(t, XS_INTRODUCE, 0, PL("9\0" "1\0")), "EINVAL");
	assert_string_equal(tc_do(t, XS_INTRODUCE, 0, PL("x\0" "1\0" "1\0")), "EINVAL");
	assert_string_equal(tc_one(t, XS_RESUME, 0, "9"), "OK");
	assert_string_equal(tc_one(t, XS_RESUME, 0, "11"), "ENOENT");
	assert_string_equal(tc_two(t, XS_SET_TARGET, 0, "9", "3"), "OK");
	assert_string_equal(tc_two(t, XS_SET_TARGET, 0, "11", "3"), "ENOENT");
	assert_string_equal(tc_two(t, XS_CONTROL, 0, "print", "hello from test"), "OK");
	assert_string_equal(tc_one(t, XS_CONTROL, 0, "nonsense"), "EINVAL");
	assert_string_equal(tc_one(t, XS_GET_DOMAIN_PATH, 0, "abc"), "EINVAL");

	/* RELEASE drops the domain's connection and fires @releaseDomain. */
	assert_string_equal(tc_one(t, XS_RELEASE, 0, "9"), "OK");
	tc_expect_event(w, "@releaseDomain", "r");
	assert_string_equal(tc_one(g, XS_READ, 0, "/"), "(io error -32)");
	assert_string_equal(tc_one(t, XS_IS_DOMAIN_INTRODUCED, 0, "9"), "F");
	assert_int_not_equal(access(sock, F_OK), 0);
	assert_string_equal(tc_one(t, XS_RELEASE, 0, "9"), "ENOENT");
	assert_string_equal(tc_one(t, XS_RELEASE, 0, "0"), "EINVAL");
	assert_int_equal(pvm_xenstored_connect_domain(F->srv, 9, &(int){ 0 }), -ENOENT);
	tc_close(g);
	tc_close(w);
	tc_close(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_write_mkdir_rm),
		cmocka_unit_test(test_directory),
		cmocka_unit_test(test_directory_part),
		cmocka_unit_test(test_perms),
		cmocka_unit_test(test_watches),
		cmocka_unit_test(test_transactions),
		cmocka_unit_test(test_domains),
	};

	pvm_log_set_level(PVM_LOG_WARN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
