/*
 * common/ — what every layer of pvmig needs and nothing else.
 *
 *   logging      pvm_log() and the pvm_err/warn/info/debug shorthands; one
 *                process-wide sink (stderr by default, syslog or a test hook)
 *   cursor       struct pvm_cursor: bounds-checked little-endian decoding of
 *                a borrowed byte range; the first short read sticks as
 *                -EBADMSG and every later read fails too
 *   buffer       struct pvm_buf: little-endian encoding into a growable
 *                buffer with a hard cap; the first error sticks
 *   bitmap       struct pvm_bitmap: a fixed-size bit set (dirty page maps)
 *   error        struct pvm_error: an operation's first error, code and
 *                message; later errors do not overwrite it
 *
 * Errors follow the project rule: actions return 0 or a negative errno,
 * predicates return bool.
 */
#ifndef PVM_COMMON_H
#define PVM_COMMON_H

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PVM_PAGE_SHIFT 12
#define PVM_PAGE_SIZE (1u << PVM_PAGE_SHIFT)

#define PVM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define PVM_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))

/* ---- logging ---------------------------------------------------------- */

enum pvm_log_level {
	PVM_LOG_ERR = 0,
	PVM_LOG_WARN = 1,
	PVM_LOG_INFO = 2,
	PVM_LOG_DEBUG = 3,
};

/*
 * A sink receives one formatted line (no trailing newline). It may be called
 * from any thread; calls are serialised by the logger. The line is borrowed
 * for the duration of the call.
 */
typedef void (*pvm_log_sink_fn)(void *ctx, enum pvm_log_level lvl,
				const char *line);

void pvm_log(enum pvm_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void pvm_vlog(enum pvm_log_level lvl, const char *fmt, va_list ap);

/* Messages above @lvl are dropped. Default: PVM_LOG_INFO. */
void pvm_log_set_level(enum pvm_log_level lvl);
enum pvm_log_level pvm_log_get_level(void);

/* NULL restores the stderr sink. @prog prefixes stderr lines ("pvmigd"). */
void pvm_log_set_sink(pvm_log_sink_fn fn, void *ctx);
void pvm_log_set_prog(const char *prog);
/* Route logs to syslog(3) under @ident. */
void pvm_log_use_syslog(const char *ident);

/*
 * How lines on stderr look (the default sink):
 *   PVM_LOG_PLAIN    "PROG: LEVEL: MESSAGE" — for a person at a terminal
 *                    (pvmig, and pvmigd --check-config)
 *   PVM_LOG_STAMPED  "2026-12-08T01:02:03.456Z PROG: LEVEL: MESSAGE" — ISO
 *                    8601, UTC, milliseconds: a daemon's log file
 *   PVM_LOG_JOURNAL  "<3>LEVEL: MESSAGE" — stderr is systemd's journal,
 *                    which stamps each line itself and takes the sd-daemon
 *                    "<N>" prefix as its priority (and knows the program)
 */
enum pvm_log_format {
	PVM_LOG_PLAIN,
	PVM_LOG_STAMPED,
	PVM_LOG_JOURNAL,
};

void pvm_log_set_format(enum pvm_log_format fmt);
/*
 * A daemon's choice: PVM_LOG_JOURNAL when stderr is the stream systemd
 * named in $JOURNAL_STREAM ("DEV:INODE" of fd 2, see systemd.exec(5): a
 * redirected stderr is not), else PVM_LOG_STAMPED. Sets it and returns it.
 */
enum pvm_log_format pvm_log_use_daemon_format(void);

#define pvm_err(...) pvm_log(PVM_LOG_ERR, __VA_ARGS__)
#define pvm_warn(...) pvm_log(PVM_LOG_WARN, __VA_ARGS__)
#define pvm_info(...) pvm_log(PVM_LOG_INFO, __VA_ARGS__)
#define pvm_debug(...) pvm_log(PVM_LOG_DEBUG, __VA_ARGS__)

/* ---- decoding cursor --------------------------------------------------- */

/*
 * Reads from a borrowed range [buf, buf+len); the caller keeps it alive.
 * Every getter returns 0 or -EBADMSG; once one fails, c->err is set and all
 * later getters fail without reading, so a decoder may check once at the end.
 */
struct pvm_cursor {
	const uint8_t *buf;
	size_t len;
	size_t off;
	int err;
};

void pvm_cursor_init(struct pvm_cursor *c, const void *buf, size_t len);
int pvm_cursor_u8(struct pvm_cursor *c, uint8_t *out);
int pvm_cursor_u16(struct pvm_cursor *c, uint16_t *out);
int pvm_cursor_u32(struct pvm_cursor *c, uint32_t *out);
int pvm_cursor_u64(struct pvm_cursor *c, uint64_t *out);
/* Borrow @n bytes: *out points into the cursor's range. */
int pvm_cursor_bytes(struct pvm_cursor *c, size_t n, const uint8_t **out);
int pvm_cursor_copy(struct pvm_cursor *c, void *dst, size_t n);
int pvm_cursor_skip(struct pvm_cursor *c, size_t n);
size_t pvm_cursor_remaining(const struct pvm_cursor *c);

/* ---- encoding buffer --------------------------------------------------- */

/*
 * A growable little-endian output buffer that never grows past @max.
 * pvm_buf_init() leaves it empty (no allocation); pvm_buf_dispose() frees
 * and is idempotent. Putters return void: the first failure (-ENOMEM, or
 * -E2BIG past @max) sticks in b->err and later puts are ignored.
 */
struct pvm_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
	int err;
};

void pvm_buf_init(struct pvm_buf *b, size_t max);
void pvm_buf_dispose(struct pvm_buf *b);
void pvm_buf_reset(struct pvm_buf *b);
void pvm_buf_put_u8(struct pvm_buf *b, uint8_t v);
void pvm_buf_put_u16(struct pvm_buf *b, uint16_t v);
void pvm_buf_put_u32(struct pvm_buf *b, uint32_t v);
void pvm_buf_put_u64(struct pvm_buf *b, uint64_t v);
void pvm_buf_put_bytes(struct pvm_buf *b, const void *p, size_t n);
void pvm_buf_put_zeros(struct pvm_buf *b, size_t n);
/* Pad with zero bytes to a multiple of @align (a power of two). */
void pvm_buf_pad(struct pvm_buf *b, size_t align);

/* Little-endian helpers for fixed fields in caller-owned memory. */
static inline void pvm_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void pvm_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void pvm_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t pvm_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t pvm_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
	       ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t pvm_get_le64(const uint8_t *p)
{
	return (uint64_t)pvm_get_le32(p) | ((uint64_t)pvm_get_le32(p + 4) << 32);
}

/* ---- bitmap ------------------------------------------------------------ */

struct pvm_bitmap {
	uint64_t *words;
	size_t nbits;
};

/* Allocates a cleared bitmap of @nbits; 0 or -ENOMEM. */
int pvm_bitmap_init(struct pvm_bitmap *bm, size_t nbits);
void pvm_bitmap_dispose(struct pvm_bitmap *bm);
void pvm_bitmap_set(struct pvm_bitmap *bm, size_t bit);
void pvm_bitmap_clear(struct pvm_bitmap *bm, size_t bit);
bool pvm_bitmap_test(const struct pvm_bitmap *bm, size_t bit);
void pvm_bitmap_clear_all(struct pvm_bitmap *bm);
size_t pvm_bitmap_count(const struct pvm_bitmap *bm);
/* First set bit at or after @from, or bm->nbits if none. */
size_t pvm_bitmap_next_set(const struct pvm_bitmap *bm, size_t from);

/* ---- first error ------------------------------------------------------- */

#define PVM_ERROR_MSG_MAX 256u

/*
 * The first error of an operation: its code and one sentence naming what
 * was wrong (the domain, file, record or device). pvm_error_set() keeps
 * the first error only and logs it once, at PVM_LOG_ERR, where it is
 * found; later calls change nothing and return the first code, so a
 * caller can write `return pvm_error_set(e, rc, ...)` at every failure
 * and the root cause survives the unwinding. Callers propagate the code;
 * whoever answers a user prints msg. Plain data: copy it, embed it, no
 * dispose.
 */
struct pvm_error {
	int rc;			     /* 0, or the first negative errno */
	char msg[PVM_ERROR_MSG_MAX]; /* "" while rc is 0 */
};

/* rc 0, msg "". */
void pvm_error_init(struct pvm_error *e);
/* Records @rc (a negative errno; anything else is taken as -EIO) and the
 * message unless @e already holds an error. Returns e->rc. */
int pvm_error_set(struct pvm_error *e, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int pvm_error_vset(struct pvm_error *e, int rc, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* For layers that still hand a why/why_len pair up: copies msg into @why
 * (@len bytes, always NUL-terminated; @why NULL or @len 0: nothing).
 * Returns e->rc. */
int pvm_error_copy(const struct pvm_error *e, char *why, size_t len);

/* ---- misc -------------------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds / milliseconds. */
uint64_t pvm_now_ns(void);
static inline uint64_t pvm_now_ms(void)
{
	return pvm_now_ns() / 1000000u;
}

/* True when all @len bytes at @p are zero (len a multiple of 8). */
bool pvm_is_zero(const void *p, size_t len);

/* Write all @len bytes to @fd, again after EINTR and short writes.
 * 0, or -errno of the write that failed. */
int pvm_write_all(int fd, const void *buf, size_t len);

/* Wipe a secret so the compiler cannot elide it. */
void pvm_wipe(void *p, size_t len);

#endif /* PVM_COMMON_H */
