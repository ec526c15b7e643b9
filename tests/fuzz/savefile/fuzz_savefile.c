/*
 * libFuzzer target over pvm_ckpt_inspect_keyed(): every input is a whole
 * save file — the xl header with pvmig's domain config (its text parser,
 * its checksum line, the device lines), the stream after it, plain, lz4 or
 * sealed with AES-256-GCM (checkpoint/crypt.c) — walked twice, without a
 * key and with the key the sealed seeds were made with. It must return 0
 * or a negative errno with a message, never crash, leak or read out of
 * bounds, and never report success with an error message set.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "common/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The sealed seeds' key: 32 bytes of 0x5a (CMakeLists.txt says how the
 * seeds were made). */
static const char fuzz_key[] = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
			       "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\n";

static int memfile(const void *p, size_t n, char *path, size_t len)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	snprintf(path, len, "/proc/self/fd/%d", fd);
	return fd;
}

static void quiet(void *ctx, enum pvm_log_level lvl, const char *line)
{
}

static void check(int rc, const struct pvm_ckpt_image *im)
{
	if (rc > 0 || (rc == 0 && im->err_msg[0]) || (rc < 0 && !im->err_msg[0]))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pvm_ckpt_image im;
	char fpath[64], kpath[64];
	int fd, kfd, rc;

	pvm_log_set_sink(quiet, NULL);
	fd = memfile(data, size, fpath, sizeof(fpath));
	kfd = memfile(fuzz_key, sizeof(fuzz_key) - 1, kpath, sizeof(kpath));
	if (fd < 0 || kfd < 0)
		abort();
	rc = pvm_ckpt_inspect(fpath, &im);
	check(rc, &im);
	rc = pvm_ckpt_inspect_keyed(fpath, kpath, &im);
	check(rc, &im);
	close(fd);
	close(kfd);
	return 0;
}
