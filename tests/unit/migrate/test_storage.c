/*
 * Tests for migrate/storage.c: the destination's storage-roots policy on
 * real files, directories and symbolic links in a temporary tree — a disk
 * inside a root (resolved in place), one outside, a link inside a root that
 * leads out, ".." escapes, a prefix that is not a parent (/srv/a vs
 * /srv/ab), a missing file, a directory as a disk, no roots at all, and
 * roots that are not directories at start.
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

#include "migrate/internal.h"

static char dir[64];

static void path(char *out, size_t len, const char *rel)
{
	snprintf(out, len, "%s/%s", dir, rel);
}

static void touch(const char *rel)
{
	char p[256];
	FILE *f;

	path(p, sizeof(p), rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
}

static int setup(void **state)
{
	char p[256], t[256];

	snprintf(dir, sizeof(dir), "/tmp/pvm-test-storage-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	path(p, sizeof(p), "root");
	mkdir(p, 0700);
	path(p, sizeof(p), "root/sub");
	mkdir(p, 0700);
	path(p, sizeof(p), "rootx"); /* shares the prefix, is no child */
	mkdir(p, 0700);
	touch("root/ok.img");
	touch("root/sub/deep.img");
	touch("rootx/near.img");
	touch("secret");
	path(p, sizeof(p), "root/escape.img");
	path(t, sizeof(t), "secret");
	if (symlink(t, p))
		return -1;
	path(p, sizeof(p), "root/inner.img"); /* a link that stays inside */
	if (symlink("sub/deep.img", p))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A service with @root (relative to dir, NULL: none) resolved as at start. */
static struct pvm_service *svc_with(const char *root)
{
	struct pvm_service *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	pvm_service_config_defaults(&s->cfg);
	if (root) {
		path(s->cfg.storage_roots[0], sizeof(s->cfg.storage_roots[0]), root);
		s->cfg.nr_storage_roots = 1;
	}
	assert_int_equal(mig_storage_roots_resolve(s), 0);
	return s;
}

/* Checks one disk @rel; the resolved path comes back in @out. */
static int check(struct pvm_service *s, const char *rel, char *why,
		 size_t len, char *out, size_t olen)
{
	struct dom_config dc;
	int rc;

	memset(&dc, 0, sizeof(dc));
	dc.nr_disks = 1;
	if (rel[0] == '/')
		snprintf(dc.disks[0].path, sizeof(dc.disks[0].path), "%s", rel);
	else
		path(dc.disks[0].path, sizeof(dc.disks[0].path), rel);
	why[0] = '\0';
	rc = mig_storage_check(s, &dc, why, len);
	if (out)
		snprintf(out, olen, "%s", dc.disks[0].path);
	return rc;
}

static void test_inside_and_outside(void **state)
{
	struct pvm_service *s = svc_with("root");
	char why[512], out[256], want[256];

	assert_int_equal(check(s, "root/ok.img", why, sizeof(why), out, sizeof(out)), 0);
	path(want, sizeof(want), "root/ok.img");
	assert_string_equal(out, want);
	/* A link inside the root that stays inside: resolved to its target. */
	assert_int_equal(check(s, "root/inner.img", why, sizeof(why), out, sizeof(out)), 0);
	path(want, sizeof(want), "root/sub/deep.img");
	assert_string_equal(out, want);
	/* Outside: named with the key. */
	assert_int_equal(check(s, "secret", why, sizeof(why), NULL, 0), -EACCES);
	assert_non_null(strstr(why, "is outside storage-roots"));
	assert_non_null(strstr(why, "/secret"));
	/* A link in the root that leads out: both paths named. */
	assert_int_equal(check(s, "root/escape.img", why, sizeof(why), NULL, 0), -EACCES);
	assert_non_null(strstr(why, "root/escape.img -> "));
	assert_non_null(strstr(why, "outside storage-roots"));
	/* ".." out of the root. */
	assert_int_equal(check(s, "root/sub/../../secret", why, sizeof(why), NULL, 0), -EACCES);
	/* /x/root is not a parent of /x/rootx/near.img. */
	assert_int_equal(check(s, "rootx/near.img", why, sizeof(why), NULL, 0), -EACCES);
	/* A directory is no disk; a missing file is named. */
	assert_int_equal(check(s, "root/sub", why, sizeof(why), NULL, 0), -EACCES);
	assert_non_null(strstr(why, "not a file or block device"));
	assert_int_equal(check(s, "root/none.img", why, sizeof(why), NULL, 0), -ENOENT);
	assert_non_null(strstr(why, "No such file"));
	assert_int_equal(check(s, "/etc/shadow", why, sizeof(why), NULL, 0), -EACCES);
	free(s);
}

/* Without storage-roots no incoming disk is taken, and the message names
 * the key; a guest without disks passes. */
static void test_no_roots(void **state)
{
	struct pvm_service *s = svc_with(NULL);
	struct dom_config dc;
	char why[512];

	assert_int_equal(check(s, "root/ok.img", why, sizeof(why), NULL, 0), -EACCES);
	assert_non_null(strstr(why, "storage-roots is not set"));
	memset(&dc, 0, sizeof(dc));
	assert_int_equal(mig_storage_check(s, &dc, why, sizeof(why)), 0);
	free(s);
}

/* A root that is a file or missing stops the start. */
static void test_bad_roots(void **state)
{
	struct pvm_service *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	pvm_service_config_defaults(&s->cfg);
	s->cfg.nr_storage_roots = 1;
	path(s->cfg.storage_roots[0], sizeof(s->cfg.storage_roots[0]), "secret");
	assert_int_equal(mig_storage_roots_resolve(s), -EINVAL);
	path(s->cfg.storage_roots[0], sizeof(s->cfg.storage_roots[0]), "nowhere");
	assert_int_equal(mig_storage_roots_resolve(s), -EINVAL);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inside_and_outside),
		cmocka_unit_test(test_no_roots),
		cmocka_unit_test(test_bad_roots),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
