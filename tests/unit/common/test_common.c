/* Unit tests for common/: cursor, buffer, bitmap, zero detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "common/common.h"

static void test_cursor_reads_le(void **state)
{
	/* u8 0x01 | u16 0x0302 | u32 0x07060504 | u64 0x0f0e0d0c0b0a0908 */
	static const uint8_t golden[] = { 0x01, 0x02, 0x03, 0x04, 0x05,
					  0x06, 0x07, 0x08, 0x09, 0x0a,
					  0x0b, 0x0c, 0x0d, 0x0e, 0x0f };
	struct pvm_cursor c;
	uint8_t a;
	uint16_t b;
	uint32_t d;
	uint64_t e;

	pvm_cursor_init(&c, golden, sizeof(golden));
	assert_int_equal(pvm_cursor_u8(&c, &a), 0);
	assert_int_equal(pvm_cursor_u16(&c, &b), 0);
	assert_int_equal(pvm_cursor_u32(&c, &d), 0);
	assert_int_equal(pvm_cursor_u64(&c, &e), 0);
	assert_int_equal(a, 0x01);
	assert_int_equal(b, 0x0302);
	assert_int_equal(d, 0x07060504u);
	assert_true(e == 0x0f0e0d0c0b0a0908ull);
	assert_int_equal(pvm_cursor_remaining(&c), 0);
	assert_int_equal(pvm_cursor_u8(&c, &a), -EBADMSG);
}

static void test_cursor_error_sticks(void **state)
{
	static const uint8_t buf[6] = { 0 };
	struct pvm_cursor c;
	uint32_t v;
	uint16_t w;
	const uint8_t *p;

	pvm_cursor_init(&c, buf, sizeof(buf));
	assert_int_equal(pvm_cursor_u32(&c, &v), 0);
	assert_int_equal(pvm_cursor_u32(&c, &v), -EBADMSG); /* 2 left */
	/* Even a read that would fit fails once the cursor has failed. */
	assert_int_equal(pvm_cursor_u16(&c, &w), -EBADMSG);
	assert_int_equal(pvm_cursor_remaining(&c), 0);

	pvm_cursor_init(&c, buf, sizeof(buf));
	assert_int_equal(pvm_cursor_bytes(&c, SIZE_MAX, &p), -EBADMSG);
	pvm_cursor_init(&c, buf, sizeof(buf));
	assert_int_equal(pvm_cursor_skip(&c, 7), -EBADMSG);
	pvm_cursor_init(&c, NULL, 100);
	assert_int_equal(pvm_cursor_u8(&c, (uint8_t *)&w), -EBADMSG);
}

static void test_buf_encodes_and_caps(void **state)
{
	static const uint8_t golden[] = { 0xaa, 0x34, 0x12, 0x78, 0x56, 0x34,
					  0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	struct pvm_buf b;

	pvm_buf_init(&b, 16);
	pvm_buf_put_u8(&b, 0xaa);
	pvm_buf_put_u16(&b, 0x1234);
	pvm_buf_put_u32(&b, 0x12345678);
	pvm_buf_pad(&b, 8);
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 8);
	pvm_buf_put_u64(&b, 0);
	assert_int_equal(b.len, 16);
	assert_memory_equal(b.data, golden, 16);
	pvm_buf_put_u8(&b, 1); /* over the cap */
	assert_int_equal(b.err, -E2BIG);
	assert_int_equal(b.len, 16);
	pvm_buf_dispose(&b);
	pvm_buf_dispose(&b); /* idempotent */
}

static void test_bitmap(void **state)
{
	struct pvm_bitmap bm;

	assert_int_equal(pvm_bitmap_init(&bm, 130), 0);
	assert_int_equal(pvm_bitmap_next_set(&bm, 0), 130);
	pvm_bitmap_set(&bm, 0);
	pvm_bitmap_set(&bm, 64);
	pvm_bitmap_set(&bm, 129);
	pvm_bitmap_set(&bm, 130); /* out of range: ignored */
	assert_int_equal(pvm_bitmap_count(&bm), 3);
	assert_true(pvm_bitmap_test(&bm, 64));
	assert_false(pvm_bitmap_test(&bm, 65));
	assert_false(pvm_bitmap_test(&bm, 1000));
	assert_int_equal(pvm_bitmap_next_set(&bm, 1), 64);
	assert_int_equal(pvm_bitmap_next_set(&bm, 65), 129);
	assert_int_equal(pvm_bitmap_next_set(&bm, 130), 130);
	pvm_bitmap_clear(&bm, 64);
	assert_int_equal(pvm_bitmap_next_set(&bm, 1), 129);
	pvm_bitmap_clear_all(&bm);
	assert_int_equal(pvm_bitmap_count(&bm), 0);
	pvm_bitmap_dispose(&bm);
}

/* More than a pipe holds at once (64 KiB): the writer's short writes are
 * continued while a reader drains the other end; a bad fd is -EBADF. */
static void test_write_all(void **state)
{
	enum { LEN = 300000 };
	uint8_t *buf = malloc(LEN), *got = calloc(1, LEN);
	int fds[2];
	pid_t pid;
	size_t have = 0;

	(void)state;
	assert_non_null(buf);
	assert_non_null(got);
	for (size_t i = 0; i < LEN; i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		_exit(pvm_write_all(fds[1], buf, LEN) == 0 ? 0 : 1);
	}
	close(fds[1]);
	for (;;) {
		ssize_t n = read(fds[0], got + have, LEN - have);

		if (n <= 0)
			break;
		have += (size_t)n;
	}
	close(fds[0]);
	{
		int st = -1;

		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	assert_int_equal(have, LEN);
	assert_memory_equal(got, buf, LEN);
	assert_int_equal(pvm_write_all(-1, buf, 1), -EBADF);
	assert_int_equal(pvm_write_all(-1, buf, 0), 0);
	free(buf);
	free(got);
}

static void test_is_zero(void **state)
{
	uint64_t page[512];

	memset(page, 0, sizeof(page));
	assert_true(pvm_is_zero(page, sizeof(page)));
	for (size_t i = 0; i < 512; i += 37) {
		page[i] = 1;
		assert_false(pvm_is_zero(page, sizeof(page)));
		page[i] = 0;
	}
	page[511] = 1ull << 63;
	assert_false(pvm_is_zero(page, sizeof(page)));
}

/* struct pvm_error: the first error sticks, is logged once, is truncated
 * safely, and is copied out for why/why_len callers. */
static int err_lines;
static char err_last[512];

static void err_sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
	if (lvl == PVM_LOG_ERR) {
		err_lines++;
		snprintf(err_last, sizeof(err_last), "%s", line);
	}
}

static void test_error_first_sticks(void **state)
{
	struct pvm_error e;
	char why[8], big[600];

	pvm_log_set_sink(err_sink, NULL);
	err_lines = 0;
	pvm_error_init(&e);
	assert_int_equal(e.rc, 0);
	assert_string_equal(e.msg, "");
	assert_int_equal(pvm_error_set(&e, -ENOENT, "no file %s", "a"),
			 -ENOENT);
	assert_int_equal(pvm_error_set(&e, -EIO, "later %d", 2), -ENOENT);
	assert_int_equal(e.rc, -ENOENT);
	assert_string_equal(e.msg, "no file a");
	assert_int_equal(err_lines, 1);
	assert_string_equal(err_last, "no file a");
	assert_int_equal(pvm_error_copy(&e, why, sizeof(why)), -ENOENT);
	assert_string_equal(why, "no file");
	assert_int_equal(pvm_error_copy(&e, NULL, 0), -ENOENT);

	/* Not a negative errno: a failure all the same. */
	pvm_error_init(&e);
	assert_int_equal(pvm_error_set(&e, 0, "zero"), -EIO);
	pvm_error_init(&e);
	assert_int_equal(pvm_error_set(&e, 5, "positive"), -EIO);

	/* Longer than the message: cut, NUL-terminated. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	pvm_error_init(&e);
	pvm_error_set(&e, -E2BIG, "%s", big);
	assert_int_equal(strlen(e.msg), PVM_ERROR_MSG_MAX - 1);
	pvm_log_set_sink(NULL, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cursor_reads_le),
	    cmocka_unit_test(test_cursor_error_sticks),
	    cmocka_unit_test(test_buf_encodes_and_caps),
	    cmocka_unit_test(test_bitmap),
	    cmocka_unit_test(test_is_zero),
	    cmocka_unit_test(test_write_all),
	    cmocka_unit_test(test_error_first_sticks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
