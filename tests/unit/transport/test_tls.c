/*
 * pvm_tls_files_check(): the files pvmigd.conf names, before anything uses
 * them. Good files pass; a host certificate as the CA, a CA bundle with one
 * host certificate in it, a missing file of each kind, a certificate file
 * without a certificate, an unrelated key, an encrypted key: each is
 * refused naming the right file and saying what is wrong, and
 * pvm_tls_ctx_new() refuses them with a log line naming the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "transport/transport.h"

static char dir[256];
static char logbuf[4096];

static void sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
	(void)ctx;
	(void)lvl;
	snprintf(logbuf, sizeof(logbuf), "%s", line);
}

static const char *path(const char *name)
{
	static char bufs[4][512];
	static unsigned next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
	return b;
}

static void cat(const char *out, const char *a, const char *b)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), "cat %s %s > %s", path(a), b ? path(b) : "",
		 path(out));
	assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
	const char *hosts[] = { "hosta", "hostb" };
	char sub[300], cmd[1024];

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/pvm-test-tls.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sub, sizeof(sub), "%s/other", dir);
	if (pvm_tls_init_dir(dir, hosts, 2, 0, 30) ||
	    pvm_tls_init_dir(sub, hosts, 1, 0, 30))
		return -1;
	/* An encrypted copy of hosta's key, and a bundle: CA + a host cert. */
	snprintf(cmd, sizeof(cmd),
		 "openssl pkey -in %s/hosta.key -aes256 -passout pass:x -out %s/enc.key 2>/dev/null",
		 dir, dir);
	if (system(cmd) != 0)
		return -1;
	cat("bundle.pem", "ca.pem", "hostb.pem");
	cat("empty.pem", "ca.key", NULL); /* a key where a cert should be */
	return 0;
}

static int teardown(void **state)
{
	char cmd[512];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Runs the check; returns rc, leaves which/why for the caller. */
static int check(const char *ca, const char *cert, const char *key,
		 enum pvm_tls_which *which, char *why, size_t len)
{
	struct pvm_tls_files f = { path(ca), path(cert), path(key), NULL };

	why[0] = '\0';
	return pvm_tls_files_check(&f, which, why, len);
}

static void test_good_files_pass(void **state)
{
	enum pvm_tls_which w;
	char why[512];

	(void)state;
	assert_int_equal(check("ca.pem", "hosta.pem", "hosta.key", &w, why,
			       sizeof(why)), 0);
	/* A bundle of CAs (old and new CA during a rotation) is fine. */
	cat("two-cas.pem", "ca.pem", "other/ca.pem");
	assert_int_equal(check("two-cas.pem", "hostb.pem", "hostb.key", &w,
			       why, sizeof(why)), 0);
}

static void test_host_certificate_as_ca_refused(void **state)
{
	enum pvm_tls_which w;
	char why[512];

	(void)state;
	assert_int_equal(check("hostb.pem", "hosta.pem", "hosta.key", &w, why,
			       sizeof(why)), -EINVAL);
	assert_int_equal(w, PVM_TLS_CA);
	assert_non_null(strstr(why, "not a CA certificate: certificate 1 (/O=pvmig/CN=hostb) has no basicConstraints CA:TRUE"));

	/* The second certificate of a bundle is named as the second. */
	assert_int_equal(check("bundle.pem", "hosta.pem", "hosta.key", &w, why,
			       sizeof(why)), -EINVAL);
	assert_int_equal(w, PVM_TLS_CA);
	assert_non_null(strstr(why, "certificate 2 (/O=pvmig/CN=hostb)"));
}

static void test_missing_files_named(void **state)
{
	enum pvm_tls_which w;
	char why[512];

	(void)state;
	assert_int_equal(check("nope.pem", "hosta.pem", "hosta.key", &w, why,
			       sizeof(why)), -ENOENT);
	assert_int_equal(w, PVM_TLS_CA);
	assert_string_equal(why, "cannot read it: No such file or directory");
	assert_int_equal(check("ca.pem", "nope.pem", "hosta.key", &w, why,
			       sizeof(why)), -ENOENT);
	assert_int_equal(w, PVM_TLS_CERT);
	assert_int_equal(check("ca.pem", "hosta.pem", "nope.key", &w, why,
			       sizeof(why)), -ENOENT);
	assert_int_equal(w, PVM_TLS_KEY);
	/* A directory is not a file either. */
	assert_int_not_equal(check("other", "hosta.pem", "hosta.key", &w, why,
				   sizeof(why)), 0);
	assert_int_equal(w, PVM_TLS_CA);
}

static void test_wrong_content_named(void **state)
{
	enum pvm_tls_which w;
	char why[512];

	(void)state;
	/* A key where the CA or the certificate should be. */
	assert_int_equal(check("ca.key", "hosta.pem", "hosta.key", &w, why,
			       sizeof(why)), -EINVAL);
	assert_int_equal(w, PVM_TLS_CA);
	assert_string_equal(why, "holds no PEM certificate");
	assert_int_equal(check("ca.pem", "empty.pem", "hosta.key", &w, why,
			       sizeof(why)), -EINVAL);
	assert_int_equal(w, PVM_TLS_CERT);
	assert_string_equal(why, "holds no PEM certificate");
	/* A certificate where the key should be. */
	assert_int_equal(check("ca.pem", "hosta.pem", "hosta.pem", &w, why,
			       sizeof(why)), -EINVAL);
	assert_int_equal(w, PVM_TLS_KEY);
	assert_non_null(strstr(why, "holds no PEM private key"));
	/* An encrypted key: refused, never a pass phrase prompt. */
	assert_int_equal(check("ca.pem", "hosta.pem", "enc.key", &w, why,
			       sizeof(why)), -EINVAL);
	assert_int_equal(w, PVM_TLS_KEY);
	assert_non_null(strstr(why, "encrypted"));
}

static void test_key_of_another_certificate_refused(void **state)
{
	enum pvm_tls_which w;
	char why[512], want[600];

	(void)state;
	assert_int_equal(check("ca.pem", "hosta.pem", "hostb.key", &w, why,
			       sizeof(why)), -EINVAL);
	assert_int_equal(w, PVM_TLS_KEY);
	snprintf(want, sizeof(want), "does not match the certificate %s",
		 path("hosta.pem"));
	assert_string_equal(why, want);
}

static void test_ctx_new_logs_the_file(void **state)
{
	struct pvm_tls_files f = { path("hosta.pem"), path("hosta.pem"),
				   path("hosta.key"), NULL };
	struct pvm_tls_ctx *ctx = (void *)1;
	char want[600];

	(void)state;
	pvm_log_set_sink(sink, NULL);
	assert_int_equal(pvm_tls_ctx_new(&f, &ctx), -EINVAL);
	pvm_log_set_sink(NULL, NULL);
	assert_null(ctx);
	snprintf(want, sizeof(want), "tls: CA certificate %s: not a CA certificate",
		 path("hosta.pem"));
	assert_non_null(strstr(logbuf, want));

	f.ca = path("ca.pem");
	assert_int_equal(pvm_tls_ctx_new(&f, &ctx), 0);
	pvm_tls_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_files_pass),
		cmocka_unit_test(test_host_certificate_as_ca_refused),
		cmocka_unit_test(test_missing_files_named),
		cmocka_unit_test(test_wrong_content_named),
		cmocka_unit_test(test_key_of_another_certificate_refused),
		cmocka_unit_test(test_ctx_new_logs_the_file),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
