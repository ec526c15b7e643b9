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
 * Exit 77 (skipped) with the reason when the verifier or its Python package
 * cannot be found. PVM_XEN_VERIFY_STREAM / PVM_XEN_PYTHONPATH override the
 * locations (e.g. a `dpkg -x` of xen-utils-4.17).
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

int main(void)
{
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
	if (!tool) {
		printf("SKIP: Xen's verify-stream-v2 not found (apt-get install "
		       "xen-utils-4.17, or set PVM_XEN_VERIFY_STREAM)\n");
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
