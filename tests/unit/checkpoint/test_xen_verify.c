/*
 * Interop: Xen's own stream verifier (tools/python/scripts/verify-stream-v2,
 * shipped by Debian's xen-utils-4.17 as /usr/lib/xen-4.17/bin/) must accept
 * a stream pvmig writes with only Xen's records (PVM_CKPT_WRITE_XEN_ONLY).
 *
 * The full pvmig stream is run through it too and the verdict printed, not
 * asserted: Xen's verifier raises "Unrecognised record type" on every record
 * type it does not know, optional ones included, although the spec (and
 * libxc's restore, xg_sr_restore.c) skip unknown optional records.
 *
 * Where the verifier comes from, first found wins: PVM_XEN_VERIFY_STREAM
 * (with PVM_XEN_PYTHONPATH), an installed xen-utils-4.17, or an unpacked copy
 * of Debian's xen-utils-4.17 package in the build tree, which this test
 * makes itself with `apt-get download` + `dpkg -x` (installing the package
 * would pull in systemd and udev; unpacking it does not). Exit 77 (skipped)
 * with the reason when none of these works (offline, no apt, no python3).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt_test_util.h"

static const char *const candidates[] = {
	"/usr/lib/xen-4.17/bin/verify-stream-v2",
	"/usr/lib/xen/bin/verify-stream-v2",
	"/usr/libexec/xen/bin/verify-stream-v2",
};

static int write_stream(const char *path, uint32_t flags)
{
	struct pvm_ckpt_file *f = NULL;
	int rc = pvm_ckpt_file_create(path, 0, &f);

	if (rc)
		return rc;
	rc = write_sample(pvm_ckpt_file_write, f, flags, 512, 130);
	if (rc) {
		pvm_ckpt_file_abort(f);
		return rc;
	}
	return pvm_ckpt_file_commit(f);
}

/* The verifier inside an unpacked xen-utils-4.17 under the build tree,
 * fetched on first use. 0 and @out set, or -1. */
static int fetch_unpacked(char *out, size_t n)
{
	const char *cache = PVM_XEN_CACHE_DIR;
	char cmd[2 * PATH_MAX];

	snprintf(out, n, "%s/root/usr/lib/xen-4.17/bin/verify-stream-v2", cache);
	if (access(out, R_OK) == 0)
		return 0;
	if (system("command -v apt-get >/dev/null && command -v dpkg >/dev/null"))
		return -1;
	snprintf(cmd, sizeof(cmd),
		 "set -e; rm -rf '%s'; mkdir -p '%s'; cd '%s'; "
		 "timeout 120 apt-get download -q xen-utils-4.17 >/dev/null 2>&1; "
		 "dpkg -x xen-utils-4.17_*.deb root",
		 cache, cache, cache);
	printf("fetching Debian's xen-utils-4.17 into %s\n", cache);
	fflush(stdout);
	if (system(cmd) != 0 || access(out, R_OK) != 0)
		return -1;
	return 0;
}

int main(void)
{
	char unpacked[PATH_MAX];
	const char *tool = getenv("PVM_XEN_VERIFY_STREAM");
	const char *pypath = getenv("PVM_XEN_PYTHONPATH");
	const char *python = access("/usr/bin/python3", X_OK) == 0
				     ? "/usr/bin/python3"
				     : "python3";
	char libdir[PATH_MAX], dir[] = "/tmp/pvm-ckpt-xen-XXXXXX";
	char xen_only[128], full[128], cmd[4 * PATH_MAX];
	int rc = 1, full_rc;

	for (size_t i = 0; !tool && i < PVM_ARRAY_SIZE(candidates); i++)
		if (access(candidates[i], R_OK) == 0)
			tool = candidates[i];
	if (!tool && !fetch_unpacked(unpacked, sizeof(unpacked)))
		tool = unpacked;
	if (!tool) {
		printf("SKIP: Xen's verify-stream-v2 not found and Debian's "
		       "xen-utils-4.17 could not be fetched (apt-get download); "
		       "set PVM_XEN_VERIFY_STREAM\n");
		return 77;
	}
	if (!pypath) {
		/* <prefix>/bin/verify-stream-v2 -> <prefix>/lib/python */
		snprintf(libdir, sizeof(libdir), "%s", tool);
		char *slash = strrchr(libdir, '/');

		if (slash)
			*slash = 0;
		slash = strrchr(libdir, '/');
		if (slash)
			*slash = 0;
		strncat(libdir, "/lib/python", sizeof(libdir) - strlen(libdir) - 1);
		pypath = libdir;
	}
	snprintf(cmd, sizeof(cmd),
		 "PYTHONPATH='%s' %s -c 'import xen.migration.libxl' 2>/dev/null",
		 pypath, python);
	if (system(cmd) != 0) {
		printf("SKIP: %s cannot import xen.migration from %s\n", python,
		       pypath);
		return 77;
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(xen_only, sizeof(xen_only), "%s/xen-only.pvm", dir);
	snprintf(full, sizeof(full), "%s/full.pvm", dir);
	if (write_stream(xen_only, PVM_CKPT_WRITE_XEN_ONLY) ||
	    write_stream(full, 0)) {
		printf("FAIL: writing the streams\n");
		goto out;
	}
	printf("verifier: %s (PYTHONPATH %s)\n", tool, pypath);
	snprintf(cmd, sizeof(cmd), "PYTHONPATH='%s' %s '%s' -v -f libxl -i '%s'",
		 pypath, python, tool, xen_only);
	fflush(stdout);
	if (system(cmd) != 0) {
		printf("FAIL: Xen's verify-stream-v2 rejected pvmig's stream\n");
		goto out;
	}
	snprintf(cmd, sizeof(cmd),
		 "PYTHONPATH='%s' %s '%s' -q -f libxl -i '%s'", pypath, python,
		 tool, full);
	full_rc = system(cmd);
	printf("note: full pvmig stream (optional records 0x80706d0x) %s by "
	       "Xen's verifier (it rejects all unknown types, optional or not)\n",
	       full_rc == 0 ? "accepted" : "rejected");
	printf("1 passed, 0 failed\n");
	rc = 0;
out:
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
