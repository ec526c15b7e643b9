/*
 * The `lz4` command unpacks what pvm_ckpt_file writes with
 * PVM_CKPT_FILE_LZ4, and the unpacked bytes are a valid plain stream
 * identical to the plain file; a file packed by `lz4` reads back through
 * pvm_ckpt_file. Exit 77 (skipped) when `lz4` is missing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt_test_util.h"

static int write_one(const char *path, uint32_t flags)
{
	struct pvm_ckpt_file *f = NULL;
	int rc = pvm_ckpt_file_create(path, flags, &f);

	if (rc)
		return rc;
	rc = write_sample(pvm_ckpt_file_write, f, 0, 1024, 300);
	if (rc) {
		pvm_ckpt_file_abort(f);
		return rc;
	}
	return pvm_ckpt_file_commit(f);
}

int main(void)
{
	char dir[] = "/tmp/pvm-ckpt-lz4-XXXXXX";
	char z[128], plain[128], out[128], cmd[512];
	struct pvm_ckpt_info info;
	int rc = 1;

	if (system("command -v lz4 >/dev/null 2>&1") != 0) {
		printf("SKIP: the lz4 command is not installed (apt-get install lz4)\n");
		return 77;
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(z, sizeof(z), "%s/s.pvm.lz4", dir);
	snprintf(plain, sizeof(plain), "%s/s.pvm", dir);
	snprintf(out, sizeof(out), "%s/unpacked.pvm", dir);
	if (write_one(z, PVM_CKPT_FILE_LZ4) || write_one(plain, 0)) {
		printf("FAIL: writing the stream files\n");
		goto out;
	}
	snprintf(cmd, sizeof(cmd), "lz4 -d -q -f '%s' '%s'", z, out);
	if (system(cmd) != 0) {
		printf("FAIL: lz4 -d refused %s\n", z);
		goto out;
	}
	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", out, plain);
	if (system(cmd) != 0) {
		printf("FAIL: lz4 -d output differs from the plain stream\n");
		goto out;
	}
	if (pvm_ckpt_verify_file(out, 0, &info) || info.pages != 300 ||
	    info.checksum != PVM_CKPT_CSUM_OK) {
		printf("FAIL: unpacked stream does not verify: %s\n",
		       info.error_msg);
		goto out;
	}
	/* ... and the other way: a frame made by the lz4 command reads. */
	snprintf(cmd, sizeof(cmd), "lz4 -q -f '%s' '%s.lz4'", plain, out);
	if (system(cmd) != 0) {
		printf("FAIL: lz4 could not compress %s\n", plain);
		goto out;
	}
	snprintf(cmd, sizeof(cmd), "%s.lz4", out);
	if (pvm_ckpt_verify_file(cmd, 0, &info) || info.pages != 300) {
		printf("FAIL: lz4-made frame does not verify: %s\n",
		       info.error_msg);
		goto out;
	}
	printf("2 passed, 0 failed\n");
	rc = 0;
out:
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
