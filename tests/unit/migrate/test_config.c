/*
 * Tests for migrate/config.c: pvmigd.conf parsing on real temporary files —
 * every key, comments, blank lines and whitespace, unknown keys and bad
 * values (each error naming file:line), over-long lines and values, a
 * missing file, and the defaults an empty file leaves alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate/migrate.h"

static char dir[64];
static char path[128];

/* ---- log capture ------------------------------------------------------- */

static char logbuf[1 << 14];
static size_t loglen;

static void sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
	size_t n = strlen(line);

	if (loglen + n + 2 < sizeof(logbuf)) {
		memcpy(logbuf + loglen, line, n);
		loglen += n;
		logbuf[loglen++] = '\n';
		logbuf[loglen] = '\0';
	}
	if (getenv("PVM_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", line);
}

static void log_clear(void)
{
	loglen = 0;
	logbuf[0] = '\0';
}

static void assert_log_has(const char *s)
{
	if (!strstr(logbuf, s))
		fail_msg("log lacks '%s'; log:\n%s", s, logbuf);
}

/* ---- fixtures ------------------------------------------------------------ */

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/pvm-test-conf-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/pvmigd.conf", dir);
	pvm_log_set_sink(sink, NULL);
	log_clear();
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	rmdir(dir);
	pvm_log_set_sink(NULL, NULL);
	return 0;
}

static void write_file(const void *text, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void write_text(const char *text)
{
	write_file(text, strlen(text));
}

/* Loads @text over the defaults into @c. */
static int load_text(struct pvm_service_config *c, const char *text)
{
	write_text(text);
	pvm_service_config_defaults(c);
	log_clear();
	return pvm_service_config_load(c, path);
}

/* "PATH:LINE" as the error messages print it. */
static const char *at_line(unsigned line)
{
	static char s[160];

	snprintf(s, sizeof(s), "%s:%u:", path, line);
	return s;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_defaults(void **state)
{
	struct pvm_service_config c;

	memset(&c, 0xa5, sizeof(c));
	pvm_service_config_defaults(&c);
	assert_string_equal(c.backend, "sim");
	assert_string_equal(c.state_dir, PVM_STATE_DIR_DEFAULT);
	assert_string_equal(c.listen, "");
	assert_int_equal(c.port, PVM_PORT_DEFAULT);
	assert_string_equal(c.tls_ca, "");
	assert_string_equal(c.tls_cert, "");
	assert_string_equal(c.tls_key, "");
	assert_int_equal(c.max_migrations, 4);
	assert_int_equal(c.streams, 2);
	assert_true(c.log_syslog); /* for a detached pvmigd */
}

static void test_empty_file_keeps_defaults(void **state)
{
	static const char *const texts[] = {
		"",
		"\n",
		"# only a comment\n",
		"\n   \n\t\n# a\n   # indented comment\n\n",
		"# port = 1\n#backend=kvm\n",     /* commented-out keys */
		"   ",                              /* no newline at the end */
		"\r\n\r\n",
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(texts); i++) {
		struct pvm_service_config want, c;

		pvm_service_config_defaults(&want);
		if (load_text(&c, texts[i]) != 0)
			fail_msg("text %zu refused; log:\n%s", i, logbuf);
		assert_memory_equal(&c, &want, sizeof(c));
	}

	/* Loading over a non-default config leaves it as it was, too. */
	{
		struct pvm_service_config c, want;

		pvm_service_config_defaults(&c);
		snprintf(c.listen, sizeof(c.listen), "10.0.0.1");
		c.port = 1234;
		c.streams = 9;
		want = c;
		write_text("# nothing\n");
		assert_int_equal(pvm_service_config_load(&c, path), 0);
		assert_memory_equal(&c, &want, sizeof(c));
	}
}

static void test_every_key(void **state)
{
	struct pvm_service_config c;

	assert_int_equal(load_text(&c, "backend = xen\n"
					"state-dir = /srv/pvmig\n"
					"listen = 192.0.2.7\n"
					"port = 9002\n"
					"tls-ca = /etc/pvmig/ca.pem\n"
					"tls-cert = /etc/pvmig/host.pem\n"
					"tls-key = /etc/pvmig/host.key\n"
					"max-migrations = 7\n"
					"streams = 16\n"
					"log = syslog\n"),
			 0);
	assert_string_equal(c.backend, "xen");
	assert_string_equal(c.state_dir, "/srv/pvmig");
	assert_string_equal(c.listen, "192.0.2.7");
	assert_int_equal(c.port, 9002);
	assert_string_equal(c.tls_ca, "/etc/pvmig/ca.pem");
	assert_string_equal(c.tls_cert, "/etc/pvmig/host.pem");
	assert_string_equal(c.tls_key, "/etc/pvmig/host.key");
	assert_int_equal(c.max_migrations, 7);
	assert_int_equal(c.streams, 16);
	assert_true(c.log_syslog);

	/* The other value of each enumerated key, and the range ends. */
	assert_int_equal(load_text(&c, "backend = sim\nlog = stderr\n"
					"port = 1\nstreams = 1\n"
					"max-migrations = 1\n"),
			 0);
	assert_string_equal(c.backend, "sim");
	assert_false(c.log_syslog);
	assert_int_equal(c.port, 1);
	assert_int_equal(c.streams, 1);
	assert_int_equal(c.max_migrations, 1);
	assert_int_equal(load_text(&c, "port = 65535\nmax-migrations = 64\n"),
			 0);
	assert_int_equal(c.port, 65535);
	assert_int_equal(c.max_migrations, 64);
	/* 0: the kernel picks a free port (pvmig info says which). */
	assert_int_equal(load_text(&c, "port = 0\n"), 0);
	assert_int_equal(c.port, 0);

	/* Later lines win; "log = stderr" after "syslog" turns it off. */
	assert_int_equal(load_text(&c, "port = 1000\nport = 2000\n"
					"log = syslog\nlog = stderr\n"),
			 0);
	assert_int_equal(c.port, 2000);
	assert_false(c.log_syslog);

	/* An empty string value clears the listener. */
	pvm_service_config_defaults(&c);
	snprintf(c.listen, sizeof(c.listen), "0.0.0.0");
	write_text("listen =\n");
	assert_int_equal(pvm_service_config_load(&c, path), 0);
	assert_string_equal(c.listen, "");
}

static void test_whitespace_and_comments(void **state)
{
	struct pvm_service_config c;

	assert_int_equal(load_text(&c, "\n"
					"  # a comment\n"
					"port=9100\n"              /* no spaces */
					"\tstreams\t=\t3\t\n"      /* tabs */
					"   listen   =   ::1   \n" /* runs of spaces */
					"max-migrations = 5 # five at most\n"
					"tls-ca = /a b/c.pem\n"    /* inner space kept */
					"backend = xen\r\n"        /* CRLF */
					"state-dir = /x=y\n"       /* '=' in a value */
					"tls-key=/k.pem#trailing\n"
					"log = syslog"),           /* no final newline */
			 0);
	assert_int_equal(c.port, 9100);
	assert_int_equal(c.streams, 3);
	assert_string_equal(c.listen, "::1");
	assert_int_equal(c.max_migrations, 5);
	assert_string_equal(c.tls_ca, "/a b/c.pem");
	assert_string_equal(c.backend, "xen");
	assert_string_equal(c.state_dir, "/x=y");
	assert_string_equal(c.tls_key, "/k.pem");
	assert_true(c.log_syslog);
}

static void test_unknown_key(void **state)
{
	static const struct {
		const char *text;
		unsigned line;
		const char *key;
	} cases[] = {
		{ "colour = blue\n", 1, "'colour'" },
		{ "port = 1\n\n# c\nportt = 2\n", 4, "'portt'" },
		{ "Port = 9000\n", 1, "'Port'" },          /* keys are lower case */
		{ "state_dir = /x\n", 1, "'state_dir'" },  /* '-' not '_' */
		{ "= 5\n", 1, "''" },
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(cases); i++) {
		struct pvm_service_config c;

		assert_int_equal(load_text(&c, cases[i].text), -EINVAL);
		assert_log_has(at_line(cases[i].line));
		assert_log_has("unknown key");
		assert_log_has(cases[i].key);
	}
}

static void test_not_key_value(void **state)
{
	struct pvm_service_config c;

	assert_int_equal(load_text(&c, "port = 1\nport 9000\n"), -EINVAL);
	assert_log_has(at_line(2));
	assert_int_equal(load_text(&c, "backend\n"), -EINVAL);
	assert_log_has(at_line(1));
}

static bool has(void *ctx, const char *name)
{
	return strstr((const char *)ctx, name) != NULL;
}

/* allow-peers: names, rights, "*", several lines; what each peer gets. */
static void test_allow_peers(void **state)
{
	struct pvm_service_config c;
	char r[64];

	pvm_service_config_defaults(&c);
	assert_false(c.allow_peers_set); /* never a default */
	assert_int_equal(pvm_service_config_rights(&c, has, "hosta"), 0);

	assert_int_equal(load_text(&c, "allow-peers = hosta, hostb:tunnel + query\n"
					"allow-peers = *:query,ops-1.example.org:all\n"),
			 0);
	assert_true(c.allow_peers_set);
	assert_int_equal(c.nr_allow, 4);
	assert_string_equal(c.allow[0].name, "hosta");
	assert_int_equal(c.allow[0].rights, PVM_RIGHTS_DEFAULT);
	assert_string_equal(c.allow[1].name, "hostb");
	assert_int_equal(c.allow[1].rights, PVM_RIGHT_TUNNEL | PVM_RIGHT_QUERY);
	assert_string_equal(c.allow[2].name, "*");
	assert_int_equal(c.allow[3].rights, PVM_RIGHTS_ALL);
	/* A name alone: migrate-in and query, never tunnel (it runs a
	 * command); "*" adds query for every certificate of the CA. */
	assert_int_equal(pvm_service_config_rights(&c, has, "hosta"),
			 PVM_RIGHT_MIGRATE_IN | PVM_RIGHT_QUERY);
	assert_int_equal(pvm_service_config_rights(&c, has, "hostb"),
			 PVM_RIGHT_TUNNEL | PVM_RIGHT_QUERY);
	assert_int_equal(pvm_service_config_rights(&c, has, "evil"),
			 PVM_RIGHT_QUERY);
	assert_int_equal(pvm_service_config_rights(&c, has, "ops-1.example.org"),
			 PVM_RIGHTS_ALL);
	pvm_rights_format(PVM_RIGHTS_ALL, r, sizeof(r));
	assert_string_equal(r, "migrate-in+tunnel+query");
	pvm_rights_format(0, r, sizeof(r));
	assert_string_equal(r, "none");
	assert_string_equal(pvm_right_name(PVM_RIGHT_TUNNEL), "tunnel");

	/* No "*": a stranger of the same CA gets nothing. */
	assert_int_equal(load_text(&c, "allow-peers = hosta:migrate-in\n"), 0);
	assert_int_equal(pvm_service_config_rights(&c, has, "evil"), 0);
	assert_int_equal(pvm_service_config_rights(&c, has, "hosta"),
			 PVM_RIGHT_MIGRATE_IN);

	/* At most PVM_ALLOW_PEERS_MAX entries. */
	{
		char text[8192];
		size_t o = (size_t)snprintf(text, sizeof(text), "allow-peers = h0");

		for (unsigned i = 1; i <= PVM_ALLOW_PEERS_MAX; i++)
			o += (size_t)snprintf(text + o, sizeof(text) - o, ",h%u", i);
		snprintf(text + o, sizeof(text) - o, "\n");
		assert_int_equal(load_text(&c, text), -EINVAL);
		assert_log_has("bad value");
	}
}

/* storage-roots, sizes, the listener's bounds, tls-crl. */
static void test_policy_keys(void **state)
{
	struct pvm_service_config c;

	pvm_service_config_defaults(&c);
	assert_int_equal(c.nr_storage_roots, 0); /* no incoming disks */
	assert_int_equal(c.max_incoming_memory, 0);
	assert_false(c.tls_ip_without_san);
	assert_int_equal(c.max_unauth, 64);
	assert_int_equal(c.max_unauth_per_addr, 8);
	assert_int_equal(c.handshake_ms, 5000);
	assert_int_equal(load_text(&c, "storage-roots = /srv/a, /srv/b\n"
					"storage-roots = /var/lib/xen/images\n"
					"max-incoming-memory = 8G\n"
					"tls-crl = /etc/pvmig/crl.pem\n"
					"tls-allow-ip-without-san = yes\n"
					"max-unauthenticated = 10\n"
					"max-unauthenticated-per-address = 2\n"
					"handshake-timeout-ms = 800\n"),
			 0);
	assert_int_equal(c.nr_storage_roots, 3);
	assert_string_equal(c.storage_roots[1], "/srv/b");
	assert_string_equal(c.storage_roots[2], "/var/lib/xen/images");
	assert_int_equal(c.max_incoming_memory, 8ull << 30);
	assert_string_equal(c.tls_crl, "/etc/pvmig/crl.pem");
	assert_true(c.tls_ip_without_san);
	assert_int_equal(c.max_unauth, 10);
	assert_int_equal(c.max_unauth_per_addr, 2);
	assert_int_equal(c.handshake_ms, 800);
	assert_int_equal(load_text(&c, "max-incoming-memory = 512MiB\n"), 0);
	assert_int_equal(c.max_incoming_memory, 512ull << 20);
	assert_int_equal(load_text(&c, "max-incoming-memory = 1048576\n"), 0);
	assert_int_equal(c.max_incoming_memory, 1048576);
}

static void test_bad_values(void **state)
{
	static const char *const bad[] = {
		"port = 65536",
		"port = 100000",
		"port = abc",
		"port = 80a",
		"port = 0x50",
		"port = -1",
		"port = 1 2",
		"port =",
		"port = 4294967297",              /* wraps to 1 in 32 bits */
		"port = 99999999999999999999999", /* ERANGE */
		"backend = kvm",
		"backend = SIM",
		"backend = sim2",
		"backend =",
		"streams = 0",
		"streams = 17",
		"streams = -2",
		"streams =",
		"max-migrations = 0",
		"max-migrations = 65",
		"max-migrations = many",
		"log = file",
		"log = Syslog",
		"log =",
		"allow-peers =",
		"allow-peers = hosta,",
		"allow-peers = ,hosta",
		"allow-peers = hosta:",
		"allow-peers = hosta:root",
		"allow-peers = hosta:migrate-in+",
		"allow-peers = hosta,hostb:migrate-in+bogus", /* none of it */
		"allow-peers = host/a",
		"allow-peers = host a",
		"allow-peers = **",
		"storage-roots =",
		"storage-roots = relative/dir",
		"storage-roots = /srv/a,",
		"storage-roots = /srv/a,rel",
		"tls-allow-ip-without-san = maybe",
		"max-incoming-memory = 4X",
		"max-incoming-memory = -1G",
		"max-incoming-memory = 99999999999T",
		"max-unauthenticated = 0",
		"max-unauthenticated-per-address = 1025",
		"handshake-timeout-ms = 99",
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++) {
		struct pvm_service_config c, want;
		char text[128];

		/* The bad line is line 3. */
		snprintf(text, sizeof(text), "# header\n\n%s\n", bad[i]);
		pvm_service_config_defaults(&want);
		if (load_text(&c, text) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_log_has(at_line(3));
		assert_log_has("bad value");
		/* The bad value was not applied. */
		assert_memory_equal(&c, &want, sizeof(c));
	}
}

static void test_long_values(void **state)
{
	static const struct {
		const char *key;
		size_t max; /* longest accepted value */
	} keys[] = {
		{ "state-dir", sizeof(((struct pvm_service_config *)0)->state_dir) - 1 },
		{ "listen", sizeof(((struct pvm_service_config *)0)->listen) - 1 },
		{ "tls-ca", sizeof(((struct pvm_service_config *)0)->tls_ca) - 1 },
		{ "tls-cert", sizeof(((struct pvm_service_config *)0)->tls_cert) - 1 },
		{ "tls-key", sizeof(((struct pvm_service_config *)0)->tls_key) - 1 },
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(keys); i++) {
		struct pvm_service_config c;
		char text[600], val[300];

		assert_true(keys[i].max + 1 < sizeof(val));
		memset(val, 'p', keys[i].max);
		val[0] = '/';
		val[keys[i].max] = '\0';
		snprintf(text, sizeof(text), "%s = %s\n", keys[i].key, val);
		if (load_text(&c, text) != 0)
			fail_msg("%s of %zu chars refused", keys[i].key,
				 keys[i].max);

		val[keys[i].max] = 'p';
		val[keys[i].max + 1] = '\0';
		snprintf(text, sizeof(text), "port = 7\n%s = %s\n", keys[i].key,
			 val);
		if (load_text(&c, text) != -EINVAL)
			fail_msg("%s of %zu chars accepted", keys[i].key,
				 keys[i].max + 1);
		assert_log_has(at_line(2));
	}
}

static void test_long_lines(void **state)
{
	struct pvm_service_config c;
	char *text = malloc(8192);
	size_t n;

	assert_non_null(text);
	/* A 1000-character comment is fine. */
	n = (size_t)sprintf(text, "port = 7\n#");
	memset(text + n, 'c', 999);
	n += 999;
	strcpy(text + n, "\nstreams = 3\n");
	assert_int_equal(load_text(&c, text), 0);
	assert_int_equal(c.port, 7);
	assert_int_equal(c.streams, 3);

	/* A 5000-character line is refused, naming its line. */
	n = (size_t)sprintf(text, "port = 7\n\nlisten = ");
	memset(text + n, 'a', 5000);
	n += 5000;
	strcpy(text + n, "\nstreams = 3\n");
	assert_int_equal(load_text(&c, text), -EINVAL);
	assert_log_has(at_line(3));
	assert_log_has("too long");
	/* Not read as several lines: line 4 and beyond are never reached,
	 * and the tail of the long line is not taken as a line of its own. */
	assert_int_equal(c.streams, 2);

	/* The same as the last line, without a newline. */
	n = (size_t)sprintf(text, "# x\n");
	memset(text + n, '#', 3000);
	text[n + 3000] = '\0';
	assert_int_equal(load_text(&c, text), -EINVAL);
	assert_log_has(at_line(2));
	free(text);
}

static void test_missing_file(void **state)
{
	struct pvm_service_config c, want;
	char missing[160];

	pvm_service_config_defaults(&c);
	want = c;
	snprintf(missing, sizeof(missing), "%s/no-such.conf", dir);
	assert_int_equal(pvm_service_config_load(&c, missing), -ENOENT);
	assert_memory_equal(&c, &want, sizeof(c));
	assert_int_equal(pvm_service_config_load(&c, "/nonexistent-pvm/x.conf"),
			 -ENOENT);
}

/*
 * Was a bug (fixed; migrate/config.c, pvm_service_config_load): a path naming a
 * directory is "loaded" successfully. fopen(dir, "r") succeeds on Linux,
 * the first fgets() fails with EISDIR, the loop ends, ferror() is never
 * checked and 0 is returned with nothing read. The same silently ignores a
 * read error in the middle of a file (EIO), dropping the lines after it.
 * Expected: a negative errno (-EISDIR / -EIO). Regression test.
 */
static void test_directory_path(void **state)
{
	struct pvm_service_config c;

	pvm_service_config_defaults(&c);
	assert_true(pvm_service_config_load(&c, dir) < 0);
}

/*
 * Was a bug (fixed; migrate/config.c:48, set_uint): strtoul() accepts a leading '-' and
 * negates modulo 2^64, and only the result is range-checked, so
 * "streams = -18446744073709551615" loads as streams = 1 and
 * "max-migrations = -18446744073709551552" as 64 (rc 0). Expected -EINVAL
 * naming the line, like "streams = -2". (A leading '+' is accepted too,
 * unlike pvm_kv_get_u64; not asserted here.) Regression test.
 */
static void test_negative_wraps(void **state)
{
	static const char *const bad[] = {
		"streams = -18446744073709551615",
		"max-migrations = -18446744073709551552",
		"port = -18446744073709543614",
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++) {
		struct pvm_service_config c;

		if (load_text(&c, bad[i]) != -EINVAL)
			fail_msg("'%s' accepted: streams %u max-migrations %u port %u",
				 bad[i], c.streams, c.max_migrations, c.port);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test_setup_teardown(test_empty_file_keeps_defaults,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_whitespace_and_comments,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_not_key_value, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_allow_peers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_values, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_long_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_directory_path, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_negative_wraps, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
