/*
 * Test harness for hv/sim/xenstored: a real server in a thread, in a
 * mkdtemp directory, and a raw wire-protocol client that speaks
 * xs_wire.h byte by byte (so tests can send what libxenstore never would).
 * Everything is static inline: each test file includes it once.
 */
#ifndef PVM_TEST_XENSTORED_HARNESS_H
#define PVM_TEST_XENSTORED_HARNESS_H

#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <xen/io/xs_wire.h>

#include "common/common.h"
#include "hv/sim/xenstored/xenstored.h"

#define RECV_TIMEOUT_MS 5000

struct srv_fixture {
	char dir[64];
	struct pvm_xenstored *srv;
	pthread_t thr;
	int run_rc;
};

static inline void *srv_thread(void *arg)
{
	struct srv_fixture *f = arg;

	f->run_rc = pvm_xenstored_run(f->srv);
	return NULL;
}

/* Starts a server; @tweak (may be NULL) adjusts the options first. */
static inline struct srv_fixture *
srv_start(void (*tweak)(struct pvm_xenstored_opts *o))
{
	struct srv_fixture *f = calloc(1, sizeof(*f));
	struct pvm_xenstored_opts o;

	assert_non_null(f);
	strcpy(f->dir, "/tmp/pvm-xs-test.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	pvm_xenstored_opts_default(&o);
	o.state_dir = f->dir;
	if (tweak)
		tweak(&o);
	assert_int_equal(pvm_xenstored_create(&o, &f->srv), 0);
	assert_int_equal(pthread_create(&f->thr, NULL, srv_thread, f), 0);
	return f;
}

static inline void srv_stop(struct srv_fixture *f)
{
	char lock[128];

	pvm_xenstored_stop(f->srv);
	pthread_join(f->thr, NULL);
	assert_int_equal(f->run_rc, 0);
	pvm_xenstored_destroy(f->srv);
	snprintf(lock, sizeof(lock), "%s/xenstore.sock", f->dir);
	assert_int_not_equal(access(lock, F_OK), 0); /* socket removed */
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
}

/* ---- raw client --------------------------------------------------------- */

struct tc_event {
	char path[XENSTORE_PAYLOAD_MAX];
	char token[XENSTORE_PAYLOAD_MAX];
};

struct tc {
	int fd;
	uint32_t req;
	struct tc_event *ev; /* queued events seen while waiting for replies */
	unsigned int nev, cap;
	char err[32];
};

static inline int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

static inline struct tc *tc_from_fd(int fd)
{
	struct tc *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_true(fd >= 0);
	t->fd = fd;
	t->req = 100;
	return t;
}

/* A dom0 client on the main socket. */
static inline struct tc *tc_open(struct srv_fixture *f)
{
	return tc_from_fd(unix_connect(pvm_xenstored_socket_path(f->srv)));
}

/* A client the host established for @domid (already introduced). */
static inline struct tc *tc_open_dom(struct srv_fixture *f, uint16_t domid)
{
	int fd = -1;

	assert_int_equal(pvm_xenstored_connect_domain(f->srv, domid, &fd), 0);
	return tc_from_fd(fd);
}

static inline void tc_close(struct tc *t)
{
	if (!t)
		return;
	if (t->fd >= 0)
		close(t->fd);
	free(t->ev);
	free(t);
}

static inline int write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n = send(fd, b, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static inline int read_all(int fd, void *p, size_t len, int timeout_ms)
{
	uint8_t *b = p;

	while (len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int r = poll(&pfd, 1, timeout_ms);

		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		n = recv(fd, b, len, 0);
		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static inline int tc_send_raw(struct tc *t, uint32_t type, uint32_t req,
			      uint32_t tx, const void *payload, uint32_t len)
{
	uint8_t h[16];

	pvm_put_le32(h, type);
	pvm_put_le32(h + 4, req);
	pvm_put_le32(h + 8, tx);
	pvm_put_le32(h + 12, len);
	if (write_all(t->fd, h, 16))
		return -EPIPE;
	/* NULL @payload: the header alone (a lying length). */
	return len && payload ? write_all(t->fd, payload, len) : 0;
}

/* Next message; body NUL-terminated in @buf (XENSTORE_PAYLOAD_MAX + 1). */
static inline int tc_recv(struct tc *t, struct xsd_sockmsg *hdr, char *buf,
			  int timeout_ms)
{
	uint8_t h[16];
	int rc = read_all(t->fd, h, 16, timeout_ms);

	if (rc)
		return rc;
	hdr->type = pvm_get_le32(h);
	hdr->req_id = pvm_get_le32(h + 4);
	hdr->tx_id = pvm_get_le32(h + 8);
	hdr->len = pvm_get_le32(h + 12);
	if (hdr->len > XENSTORE_PAYLOAD_MAX)
		return -E2BIG;
	rc = read_all(t->fd, buf, hdr->len, timeout_ms);
	if (rc)
		return rc;
	buf[hdr->len] = '\0';
	return 0;
}

static inline void tc_queue_event(struct tc *t, const char *body, uint32_t len)
{
	struct tc_event *e;
	size_t pl = strnlen(body, len);

	if (t->nev == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 8;
		t->ev = realloc(t->ev, t->cap * sizeof(*t->ev));
		assert_non_null(t->ev);
	}
	e = &t->ev[t->nev++];
	memcpy(e->path, body, pl);
	e->path[pl] = '\0';
	if (pl + 1 < len)
		snprintf(e->token, sizeof(e->token), "%s", body + pl + 1);
	else
		e->token[0] = '\0';
}

/*
 * Sends a request and waits for its reply (watch events that arrive
 * first are queued). Returns the reply type; the payload lands in @out
 * (if non-NULL, XENSTORE_PAYLOAD_MAX + 1 bytes) and its length in @outlen.
 */
static inline int tc_call(struct tc *t, uint32_t type, uint32_t tx,
			  const void *payload, uint32_t len, char *out,
			  uint32_t *outlen)
{
	static char scratch[XENSTORE_PAYLOAD_MAX + 1];
	uint32_t req = ++t->req;
	struct xsd_sockmsg h;
	int rc;

	if (!out)
		out = scratch;
	rc = tc_send_raw(t, type, req, tx, payload, len);
	if (rc)
		return rc;
	for (;;) {
		rc = tc_recv(t, &h, out, RECV_TIMEOUT_MS);
		if (rc)
			return rc;
		if (h.type == XS_WATCH_EVENT) {
			assert_int_equal(h.req_id, 0);
			tc_queue_event(t, out, h.len);
			continue;
		}
		assert_int_equal(h.req_id, req);
		assert_int_equal(h.tx_id, tx);
		if (outlen)
			*outlen = h.len;
		return (int)h.type;
	}
}

/* "OK", the value, or the error name ("ENOENT"): a string to compare. */
static inline const char *tc_do(struct tc *t, uint32_t type, uint32_t tx,
				const void *payload, uint32_t len)
{
	static char out[XENSTORE_PAYLOAD_MAX + 1];
	uint32_t olen = 0;
	int rt = tc_call(t, type, tx, payload, len, out, &olen);

	if (rt < 0) {
		snprintf(out, sizeof(out), "(io error %d)", rt);
		return out;
	}
	if (rt != (int)type && rt != XS_ERROR) {
		snprintf(out, sizeof(out), "(reply type %d)", rt);
		return out;
	}
	return out;
}

/* Payload of literal @s including the NULs written in it ("a\0b\0"). */
#define PL(s) (s), (uint32_t)(sizeof(s) - 1)

static inline const char *tc_write(struct tc *t, uint32_t tx, const char *path,
				   const char *val)
{
	char buf[XENSTORE_PAYLOAD_MAX];
	size_t pl = strlen(path) + 1, vl = strlen(val);

	memcpy(buf, path, pl);
	memcpy(buf + pl, val, vl);
	return tc_do(t, XS_WRITE, tx, buf, (uint32_t)(pl + vl));
}

/* One-string requests: READ, MKDIR, RM, DIRECTORY, GET_PERMS, ... */
static inline const char *tc_one(struct tc *t, uint32_t type, uint32_t tx,
				 const char *s)
{
	return tc_do(t, type, tx, s, (uint32_t)strlen(s) + 1);
}

static inline const char *tc_two(struct tc *t, uint32_t type, uint32_t tx,
				 const char *a, const char *b)
{
	char buf[XENSTORE_PAYLOAD_MAX];
	size_t al = strlen(a) + 1, bl = strlen(b) + 1;

	memcpy(buf, a, al);
	memcpy(buf + al, b, bl);
	return tc_do(t, type, tx, buf, (uint32_t)(al + bl));
}

/* Waits for the next watch event (queued or on the wire). */
static inline int tc_event(struct tc *t, struct tc_event *out, int timeout_ms)
{
	char buf[XENSTORE_PAYLOAD_MAX + 1];
	struct xsd_sockmsg h;
	int rc;

	while (t->nev == 0) {
		rc = tc_recv(t, &h, buf, timeout_ms);
		if (rc)
			return rc;
		if (h.type != XS_WATCH_EVENT)
			return -EPROTO;
		tc_queue_event(t, buf, h.len);
	}
	*out = t->ev[0];
	memmove(&t->ev[0], &t->ev[1], (t->nev - 1) * sizeof(t->ev[0]));
	t->nev--;
	return 0;
}

static inline void tc_expect_event(struct tc *t, const char *path,
				   const char *token)
{
	static struct tc_event e;

	assert_int_equal(tc_event(t, &e, RECV_TIMEOUT_MS), 0);
	assert_string_equal(e.path, path);
	assert_string_equal(e.token, token);
}

/*
 * No event pending: a round trip (GET_DOMAIN_PATH) is answered after any
 * event the server queued before it, so events not seen by then were not
 * sent.
 */
static inline void tc_expect_no_event(struct tc *t)
{
	assert_string_equal(tc_one(t, XS_GET_DOMAIN_PATH, 0, "0"),
			    "/local/domain/0");
	assert_int_equal(t->nev, 0);
}

#endif /* PVM_TEST_XENSTORED_HARNESS_H */
