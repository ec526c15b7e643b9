/* Tests for checkpoint/stream/file.c: plain and lz4 stream files, atomic commit,
 * verify over a file, damaged files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt_test_util.h"

static char dir[256];

static void quiet_sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/pvm-ckpt-file-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	pvm_log_set_sink(quiet_sink, NULL);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

static bool exists(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0;
}

static void write_file(const char *path, uint32_t flags, uint64_t npages)
{
	struct pvm_ckpt_file *f = NULL;
	char tmp[320];

	assert_int_equal(pvm_ckpt_file_create(path, flags, &f), 0);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_true(exists(tmp));
	assert_false(exists(path));
	assert_int_equal(write_sample(pvm_ckpt_file_write, f, 0, 4096, npages),
			 0);
	assert_int_equal(pvm_ckpt_file_commit(f), 0);
	assert_true(exists(path));
	assert_false(exists(tmp));
}

static void read_back(const char *path, bool lz4, uint64_t npages)
{
	struct pvm_ckpt_file *f = NULL;
	struct rec_log log = { 0 };
	struct pvm_ckpt_info info;
	struct pvm_ckpt_read_cfg cfg = {
		.read = pvm_ckpt_file_read,
		.ops = &log_ops,
		.ops_ctx = &log,
		.max_pfns = 4096,
		.flags = PVM_CKPT_READ_REQUIRE_CHECKSUM,
	};
	uint8_t page[4096];
	uint64_t sum = 0;

	assert_int_equal(pvm_ckpt_file_open(path, &f), 0);
	assert_int_equal(pvm_ckpt_file_is_lz4(f), lz4);
	cfg.read_ctx = f;
	assert_int_equal(pvm_ckpt_read(&cfg, &info), 0);
	pvm_ckpt_file_close(f);
	for (uint64_t i = 0; i < npages; i++) {
		sample_page(page, i);
		for (int k = 0; k < 4096; k++)
			sum += page[k];
	}
	assert_int_equal(log.data_pages, npages);
	assert_int_equal(log.page_sum, sum);
	assert_int_equal(log.devices, 1);
	assert_int_equal(info.checksum, PVM_CKPT_CSUM_OK);
}

static void test_plain_round_trip(void **state)
{
	char path[300];
	struct pvm_ckpt_info info;

	path_of(path, sizeof(path), "plain.pvm");
	write_file(path, 0, 700);
	read_back(path, false, 700);
	assert_int_equal(pvm_ckpt_verify_file(path, 0, &info), 0);
	assert_int_equal(info.pages, 700);
	assert_int_equal(info.devices, 1);
	assert_int_equal(info.xs_nodes, 1);
	assert_int_equal(info.checksum, PVM_CKPT_CSUM_OK);
	assert_string_equal(info.meta.name, "sample-guest");
}

static void test_lz4_round_trip(void **state)
{
	char path[300], plain[300];
	struct stat a, b;
	struct pvm_ckpt_info info;

	path_of(path, sizeof(path), "z.pvm.lz4");
	path_of(plain, sizeof(plain), "z.pvm");
	write_file(path, PVM_CKPT_FILE_LZ4, 700);
	write_file(plain, 0, 700);
	read_back(path, true, 700);
	assert_int_equal(pvm_ckpt_verify_file(path, 4096, &info), 0);
	assert_int_equal(info.pages, 700);
	assert_int_equal(stat(path, &a), 0);
	assert_int_equal(stat(plain, &b), 0);
	/* the sample pages are patterned: lz4 must actually compress */
	assert_true(a.st_size < b.st_size / 2);
}

/* Overwriting: the old file stays whole until commit; abort keeps it. */
static void test_commit_and_abort(void **state)
{
	char path[300], tmp[320];
	struct pvm_ckpt_file *f = NULL;
	struct pvm_ckpt_info info;

	path_of(path, sizeof(path), "keep.pvm");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	write_file(path, 0, 3);
	assert_int_equal(pvm_ckpt_file_create(path, 0, &f), 0);
	assert_int_equal(pvm_ckpt_file_write(f, "garbage", 7), 0);
	pvm_ckpt_file_abort(f);
	assert_false(exists(tmp));
	assert_int_equal(pvm_ckpt_verify_file(path, 0, &info), 0);
	assert_int_equal(info.pages, 3);

	path_of(path, sizeof(path), "nodir/x.pvm");
	assert_int_equal(pvm_ckpt_file_create(path, 0, &f), -ENOENT);
	assert_null(f);
}

static void truncate_to(const char *path, off_t len)
{
	assert_int_equal(truncate(path, len), 0);
}

static void test_damaged_files(void **state)
{
	char path[300];
	struct pvm_ckpt_info info;
	struct stat st;
	FILE *fp;

	/* truncated plain file */
	path_of(path, sizeof(path), "cut.pvm");
	write_file(path, 0, 5);
	assert_int_equal(stat(path, &st), 0);
	truncate_to(path, st.st_size - 9);
	assert_int_equal(pvm_ckpt_verify_file(path, 0, &info), -EBADMSG);
	assert_non_null(strstr(info.error_msg, "truncated"));

	/* truncated lz4 frame */
	path_of(path, sizeof(path), "cut.pvm.lz4");
	write_file(path, PVM_CKPT_FILE_LZ4, 5);
	assert_int_equal(stat(path, &st), 0);
	truncate_to(path, st.st_size / 2);
	assert_int_equal(pvm_ckpt_verify_file(path, 0, &info), -EBADMSG);

	/* garbage after the lz4 frame */
	path_of(path, sizeof(path), "tail.pvm.lz4");
	write_file(path, PVM_CKPT_FILE_LZ4, 2);
	fp = fopen(path, "ab");
	assert_non_null(fp);
	fputs("tail", fp);
	fclose(fp);
	assert_int_equal(pvm_ckpt_verify_file(path, 0, &info), -EBADMSG);

	/* a file shorter than any header */
	path_of(path, sizeof(path), "tiny.pvm");
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("ab", fp);
	fclose(fp);
	assert_int_equal(pvm_ckpt_verify_file(path, 0, &info), -EBADMSG);
	assert_non_null(strstr(info.error_msg, "truncated"));

	/* bytes after the final END */
	path_of(path, sizeof(path), "tail.pvm");
	write_file(path, 0, 2);
	fp = fopen(path, "ab");
	assert_non_null(fp);
	fputs("tail", fp);
	fclose(fp);
	assert_int_equal(pvm_ckpt_verify_file(path, 0, &info), -EBADMSG);
	assert_non_null(strstr(info.error_msg, "after the final END"));

	/* not a stream at all */
	path_of(path, sizeof(path), "text.pvm");
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("just some text, not a stream\n", fp);
	fclose(fp);
	assert_int_equal(pvm_ckpt_verify_file(path, 0, &info), -EBADMSG);
	assert_non_null(strstr(info.error_msg, "not a Xen/pvmig stream"));

	/* missing file */
	path_of(path, sizeof(path), "missing.pvm");
	assert_int_equal(pvm_ckpt_verify_file(path, 0, &info), -ENOENT);
	assert_non_null(strstr(info.error_msg, "cannot open"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_round_trip),
		cmocka_unit_test(test_lz4_round_trip),
		cmocka_unit_test(test_commit_and_abort),
		cmocka_unit_test(test_damaged_files),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
