/*
 * hv/sim/xenstored/records.c: one domain's store as migration records.
 * Encode and compare with an annotated golden stream; decode the golden
 * (also into another domid); feed every truncation and some corruptions,
 * each of which must fail cleanly and change nothing.
 */
#include "harness.h"

/* dom3: /local/domain/3 (n3), name = "ab" (n3 r1), a watch "dev"/"tk". */
static const uint8_t golden[] = {
	/* header: "xenstore", version 1 (BE), flags 0 (BE: little-endian) */
	'x', 'e', 'n', 's', 't', 'o', 'r', 'e',
	0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	/* CONNECTION_DATA, 24 bytes */
	0x02, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00,
	0x01, 0x00, 0x00, 0x00, /* conn-id 1 */
	0x00, 0x00, 0x00, 0x00, /* shared ring, flags 0 */
	0x03, 0x00, 0xf4, 0x7f, /* domid 3, tdomid DOMID_INVALID */
	0x00, 0x00, 0x00, 0x00, /* evtchn */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* no pending data */
	/* WATCH_DATA, 15 bytes + 1 pad */
	0x03, 0x00, 0x00, 0x00, 0x0f, 0x00, 0x00, 0x00,
	0x01, 0x00, 0x00, 0x00, /* conn-id 1 */
	0x04, 0x00, 0x03, 0x00, /* wpath-len 4, token-len 3 */
	'd', 'e', 'v', 0, 't', 'k', 0,
	0x00,
	/* NODE_DATA /local/domain/3, 36 bytes + 4 pad */
	0x05, 0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* committed */
	0x10, 0x00, 0x00, 0x00, /* path-len 16, value-len 0 */
	0x00, 0x00, 0x01, 0x00, /* access 0, 1 perm */
	'n', 0x00, 0x03, 0x00,
	'/', 'l', 'o', 'c', 'a', 'l', '/', 'd', 'o', 'm', 'a', 'i', 'n', '/', '3', 0,
	0x00, 0x00, 0x00, 0x00,
	/* NODE_DATA /local/domain/3/name, 47 bytes + 1 pad */
	0x05, 0x00, 0x00, 0x00, 0x2f, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x15, 0x00, 0x02, 0x00, /* path-len 21, value-len 2 */
	0x00, 0x00, 0x02, 0x00, /* access 0, 2 perms */
	'n', 0x00, 0x03, 0x00,
	'r', 0x00, 0x01, 0x00,
	'/', 'l', 'o', 'c', 'a', 'l', '/', 'd', 'o', 'm', 'a', 'i', 'n', '/', '3',
	'/', 'n', 'a', 'm', 'e', 0,
	'a', 'b',
	0x00,
	/* END */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static void make_dom3(struct srv_fixture *f, struct tc **guest_out)
{
	struct tc *t = tc_open(f), *g;

	assert_string_equal(tc_one(t, XS_MKDIR, 0, "/local/domain/3"), "OK");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0, PL("/local/domain/3\0n3\0")), "OK");
	assert_string_equal(tc_write(t, 0, "/local/domain/3/name", "ab"), "OK");
	assert_string_equal(tc_do(t, XS_SET_PERMS, 0,
				  PL("/local/domain/3/name\0n3\0r1\0")), "OK");
	assert_int_equal(pvm_xenstored_introduce(f->srv, 3), 0);
	g = tc_open_dom(f, 3);
	assert_string_equal(tc_two(g, XS_WATCH, 0, "dev", "tk"), "OK");
	tc_expect_event(g, "dev", "tk");
	tc_close(t);
	*guest_out = g;
}

static void test_export_golden(void **state)
{
	struct srv_fixture *f = srv_start(NULL);
	struct pvm_buf b;
	struct tc *g;

	(void)state;
	make_dom3(f, &g);
	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(pvm_xs_export_domain(f->srv, 3, &b), 0);
	assert_int_equal(b.len, sizeof(golden));
	assert_memory_equal(b.data, golden, sizeof(golden));
	pvm_buf_dispose(&b);
	/* A cap too small for the records fails, not truncates. */
	pvm_buf_init(&b, 64);
	assert_int_equal(pvm_xs_export_domain(f->srv, 3, &b), -E2BIG);
	pvm_buf_dispose(&b);
	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(pvm_xs_export_domain(f->srv, 4, &b), -ENOENT);
	assert_int_equal(pvm_xs_export_domain(f->srv, 0, &b), -EINVAL);
	pvm_buf_dispose(&b);
	tc_close(g);
	srv_stop(f);
}

static void test_import_golden(void **state)
{
	struct srv_fixture *f = srv_start(NULL);
	struct tc *t = tc_open(f), *g;
	char out[XENSTORE_PAYLOAD_MAX + 1];
	struct pvm_buf b;
	uint32_t len;

	(void)state;
	/* Old content of the domain is replaced. */
	assert_string_equal(tc_write(t, 0, "/local/domain/3/stale", "x"), "OK");
	assert_int_equal(pvm_xs_import_domain(f->srv, 3, golden, sizeof(golden)), 0);
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/3/stale"), "ENOENT");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/3/name"), "ab");
	assert_int_equal(tc_call(t, XS_GET_PERMS, 0, PL("/local/domain/3/name\0"),
				 out, &len), XS_GET_PERMS);
	assert_int_equal(len, 6);
	assert_memory_equal(out, "n3\0r1\0", 6);
	/* The watch waits for the domain's connection, then works. */
	assert_int_equal(pvm_xenstored_introduce(f->srv, 3), 0);
	g = tc_open_dom(f, 3);
	assert_string_equal(tc_write(t, 0, "/local/domain/3/dev/vbd", "1"), "OK");
	tc_expect_event(g, "dev/vbd", "tk");
	/* Re-export gives the golden stream back (plus the new node). */
	assert_string_equal(tc_one(t, XS_RM, 0, "/local/domain/3/dev"), "OK");
	tc_expect_event(g, "dev", "tk");
	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(pvm_xs_export_domain(f->srv, 3, &b), 0);
	assert_int_equal(b.len, sizeof(golden));
	assert_memory_equal(b.data, golden, sizeof(golden));
	pvm_buf_dispose(&b);
	tc_close(g);
	tc_close(t);
	srv_stop(f);
}

static void test_import_other_domid(void **state)
{
	struct srv_fixture *f = srv_start(NULL);
	struct tc *t = tc_open(f), *g;
	char out[XENSTORE_PAYLOAD_MAX + 1];
	uint32_t len;

	(void)state;
	assert_int_equal(pvm_xenstored_introduce(f->srv, 12), 0);
	g = tc_open_dom(f, 12);
	/* With a connection already there, the watch joins it at once. */
	assert_int_equal(pvm_xs_import_domain(f->srv, 12, golden, sizeof(golden)), 0);
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/12/name"), "ab");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/3/name"), "ENOENT");
	assert_int_equal(tc_call(t, XS_GET_PERMS, 0, PL("/local/domain/12/name\0"),
				 out, &len), XS_GET_PERMS);
	assert_memory_equal(out, "n12\0r1\0", 7);
	assert_string_equal(tc_one(g, XS_READ, 0, "name"), "ab");
	assert_string_equal(tc_write(t, 0, "/local/domain/12/dev", "1"), "OK");
	tc_expect_event(g, "dev", "tk");
	tc_close(g);
	tc_close(t);
	srv_stop(f);
}

static void quiet(void *ctx, enum pvm_log_level lvl, const char *line)
{
	(void)ctx;
	(void)lvl;
	(void)line;
}

static void expect_rejected(struct srv_fixture *f, const uint8_t *buf,
			    size_t len)
{
	struct tc *t = tc_open(f);

	assert_int_equal(pvm_xs_import_domain(f->srv, 3, buf, len), -EBADMSG);
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/3/keep"), "me");
	assert_string_equal(tc_one(t, XS_READ, 0, "/local/domain/3/name"), "ENOENT");
	tc_close(t);
}

static void test_import_truncated_and_corrupt(void **state)
{
	struct srv_fixture *f = srv_start(NULL);
	struct tc *t = tc_open(f);
	uint8_t bad[sizeof(golden)];

	(void)state;
	pvm_log_set_sink(quiet, NULL); /* 200 rejections, one line each */
	assert_string_equal(tc_write(t, 0, "/local/domain/3/keep", "me"), "OK");
	for (size_t n = 0; n < sizeof(golden); n++)
		expect_rejected(f, golden, n);
	assert_int_equal(pvm_xs_import_domain(f->srv, 3, NULL, 0), -EINVAL);
	assert_int_equal(pvm_xs_import_domain(f->srv, 0, golden, sizeof(golden)), -EINVAL);

#define CORRUPT(off, val)                          \
	do {                                       \
		memcpy(bad, golden, sizeof(bad));  \
		bad[off] = (val);                  \
		expect_rejected(f, bad, sizeof(bad)); \
	} while (0)
	CORRUPT(0, 'X');        /* ident */
	CORRUPT(11, 2);         /* version 2 */
	CORRUPT(15, 1);         /* big-endian records */
	CORRUPT(16, 0x09);      /* unknown record type */
	CORRUPT(16, 0x04);      /* TRANSACTION_DATA: not in a migration */
	CORRUPT(21, 0x7f);      /* record length past the end */
	CORRUPT(23, 0x01);      /* record length over the bound */
	CORRUPT(28, 0x01);      /* conn-type socket */
	CORRUPT(56, 0x02);      /* watch of another connection */
	CORRUPT(60, 0x05);      /* wpath-len does not end on its NUL */
	CORRUPT(67, 'x');       /* wpath has no NUL */
	CORRUPT(80, 0x01);      /* node of a pending transaction */
	CORRUPT(88, 0x11);      /* path-len past the record */
	CORRUPT(94, 0x00);      /* no perms */
	CORRUPT(96, 'x');       /* perm letter */
	CORRUPT(114, '4');      /* first node is not the domain's root */
	CORRUPT(139, 0x10);     /* value-len over XENSTORE_PAYLOAD_MAX */
	CORRUPT(153, 'N');      /* node path outside the domain */
	CORRUPT(168, '.');      /* invalid path character */
	CORRUPT(169, '/');      /* a node whose parent is missing */
#undef CORRUPT
	pvm_log_set_sink(NULL, NULL);
	tc_close(t);
	srv_stop(f);
}

/* A tree as deep as the path limits allow: export, import, remove. */
static void test_deep_tree(void **state)
{
	struct srv_fixture *f = srv_start(NULL);
	struct tc *t = tc_open(f);
	static char path[XENSTORE_ABS_PATH_MAX + 1];
	struct pvm_buf b;
	size_t l;
	uint32_t tx;

	(void)state;
	l = (size_t)snprintf(path, sizeof(path), "/local/domain/3");
	/* 1024 levels: the most a path below /local/domain/3/ may have. */
	while (l + 2 - 16 <= XENSTORE_REL_PATH_MAX)
		l += (size_t)snprintf(path + l, sizeof(path) - l, "/d");
	assert_string_equal(tc_write(t, 0, path, "bottom"), "OK");
	pvm_buf_init(&b, 64u << 20);
	assert_int_equal(pvm_xs_export_domain(f->srv, 3, &b), 0);
	assert_string_equal(tc_one(t, XS_RM, 0, "/local/domain/3"), "OK");
	assert_int_equal(pvm_xs_import_domain(f->srv, 3, b.data, b.len), 0);
	assert_string_equal(tc_one(t, XS_READ, 0, path), "bottom");
	pvm_buf_dispose(&b);
	/* Removing it in a transaction touches every level. */
	tx = (uint32_t)strtoul(tc_do(t, XS_TRANSACTION_START, 0, PL("\0")), NULL, 10);
	assert_string_equal(tc_one(t, XS_RM, tx, "/local/domain/3"), "OK");
	assert_string_equal(tc_one(t, XS_TRANSACTION_END, tx, "T"), "OK");
	assert_string_equal(tc_one(t, XS_READ, 0, path), "ENOENT");
	tc_close(t);
	srv_stop(f);
}

/* Deterministic mutations of the golden stream: each import either
 * succeeds or fails with EBADMSG; never anything else, never a crash. */
static void test_import_mutations(void **state)
{
	struct srv_fixture *f = srv_start(NULL);
	uint8_t bad[sizeof(golden)];
	unsigned int seed = 4242;
	int ok = 0, rejected = 0;

	(void)state;
	pvm_log_set_sink(quiet, NULL);
	for (int i = 0; i < 3000; i++) {
		int flips = 1 + rand_r(&seed) % 4, rc;

		memcpy(bad, golden, sizeof(bad));
		for (int k = 0; k < flips; k++)
			bad[rand_r(&seed) % sizeof(bad)] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
		rc = pvm_xs_import_domain(f->srv, 3, bad, sizeof(bad));
		if (rc == 0)
			ok++;
		else if (rc == -EBADMSG)
			rejected++;
		else
			fail_msg("mutation %d: import returned %d", i, rc);
	}
	pvm_log_set_sink(NULL, NULL);
	/* Both outcomes happen (flips in values and padding are harmless). */
	assert_true(ok > 0);
	assert_true(rejected > 0);
	srv_stop(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_export_golden),
		cmocka_unit_test(test_import_golden),
		cmocka_unit_test(test_import_other_domid),
		cmocka_unit_test(test_import_truncated_and_corrupt),
		cmocka_unit_test(test_deep_tree),
		cmocka_unit_test(test_import_mutations),
	};

	pvm_log_set_level(PVM_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
