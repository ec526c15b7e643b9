/* Minimal xenstore wire client; see xsc.h. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdint.h>
#include <unistd.h>

#include <xen/io/xs_wire.h>

#include "hv/sim/xsc.h"

void xsc_init(struct xsc *x, int fd)
{
	memset(x, 0, sizeof(*x));
	x->fd = fd;
}

int xsc_set_timeout(struct xsc *x, unsigned int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	if (setsockopt(x->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(x->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

void xsc_close(struct xsc *x)
{
	if (x->fd >= 0)
		close(x->fd);
	x->fd = -1;
	x->err = -EPIPE;
}

static int full_io(int fd, void *buf, size_t len, bool wr)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = wr ? send(fd, p, len, MSG_NOSIGNAL) :
				 recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int errno_of(const char *name)
{
	for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]);
	     i++)
		if (strcmp(xsd_errors[i].errstring, name) == 0)
			return xsd_errors[i].errnum;
	return EIO;
}

/* Reads one message; its body (NUL-terminated, at most XENSTORE_PAYLOAD_MAX)
 * into @body. */
static int read_msg(struct xsc *x, struct xsd_sockmsg *hdr, char *body)
{
	int rc = full_io(x->fd, hdr, sizeof(*hdr), false);

	if (rc == 0 && hdr->len > XENSTORE_PAYLOAD_MAX)
		rc = -EPROTO;
	if (rc == 0)
		rc = full_io(x->fd, body, hdr->len, false);
	if (rc < 0)
		x->err = rc;
	else
		body[hdr->len] = '\0';
	return rc;
}

/*
 * One request: @nparts strings (each sent with its NUL unless it is the
 * last of a WRITE) → reply body into @out (may be NULL). Returns the reply
 * length or a negative errno.
 */
static int request(struct xsc *x, enum xsd_sockmsg_type type,
		   const char *a, const char *b, bool b_nul, char *out,
		   size_t outlen)
{
	char msg[XENSTORE_PAYLOAD_MAX];
	struct xsd_sockmsg hdr = { .type = type };
	size_t la = strlen(a) + 1, lb = b ? strlen(b) + (b_nul ? 1 : 0) : 0;
	int rc;

	if (x->err)
		return x->err;
	if (la + lb > sizeof(msg))
		return -E2BIG;
	memcpy(msg, a, la);
	if (b)
		memcpy(msg + la, b, lb);
	hdr.req_id = ++x->req_id;
	hdr.tx_id = x->tx;
	hdr.len = (uint32_t)(la + lb);
	rc = full_io(x->fd, &hdr, sizeof(hdr), true);
	if (rc == 0)
		rc = full_io(x->fd, msg, hdr.len, true);
	if (rc < 0)
		return x->err = rc;
	for (;;) {
		struct xsd_sockmsg r;
		char rbody[XENSTORE_PAYLOAD_MAX + 1];

		rc = read_msg(x, &r, rbody);
		if (rc < 0)
			return rc;
		if (r.type == XS_WATCH_EVENT) {
			x->events++;
			continue;
		}
		if (r.req_id != hdr.req_id) {
			x->err = -EPROTO;
			return x->err;
		}
		if (r.type == XS_ERROR)
			return -errno_of(rbody);
		if (out) {
			if (r.len >= outlen)
				return -ERANGE;
			memcpy(out, rbody, r.len + 1);
		}
		return (int)r.len;
	}
}

int xsc_read(struct xsc *x, const char *path, char *buf, size_t len)
{
	return request(x, XS_READ, path, NULL, false, buf, len);
}

int xsc_read_u64(struct xsc *x, const char *path, uint64_t *out)
{
	char buf[32], *end;
	int rc = xsc_read(x, path, buf, sizeof(buf));

	if (rc < 0)
		return rc;
	errno = 0;
	*out = strtoull(buf, &end, 10);
	if (!buf[0] || *end || errno || buf[0] == '-')
		return -EINVAL;
	return 0;
}

int xsc_write(struct xsc *x, const char *path, const char *val)
{
	int rc = request(x, XS_WRITE, path, val, false, NULL, 0);

	return rc < 0 ? rc : 0;
}

int xsc_writef(struct xsc *x, const char *path, const char *fmt, ...)
{
	char val[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(val))
		return -E2BIG;
	return xsc_write(x, path, val);
}

int xsc_rm(struct xsc *x, const char *path)
{
	int rc = request(x, XS_RM, path, NULL, false, NULL, 0);

	return rc < 0 ? rc : 0;
}

int xsc_directory(struct xsc *x, const char *path, char *buf, size_t len)
{
	return request(x, XS_DIRECTORY, path, NULL, false, buf, len);
}

int xsc_watch(struct xsc *x, const char *path, const char *token)
{
	int rc = request(x, XS_WATCH, path, token, true, NULL, 0);

	return rc < 0 ? rc : 0;
}

int xsc_unwatch(struct xsc *x, const char *path, const char *token)
{
	int rc = request(x, XS_UNWATCH, path, token, true, NULL, 0);

	return rc < 0 ? rc : 0;
}

int xsc_tx_start(struct xsc *x)
{
	char buf[16], *end;
	unsigned long id;
	int rc;

	if (x->tx)
		return -EBUSY;
	rc = request(x, XS_TRANSACTION_START, "", NULL, false, buf,
		     sizeof(buf));
	if (rc < 0)
		return rc;
	errno = 0;
	id = strtoul(buf, &end, 10);
	if (!buf[0] || *end || errno || id == 0 || id > UINT32_MAX)
		return -EPROTO;
	x->tx = (uint32_t)id;
	return 0;
}

int xsc_tx_end(struct xsc *x, bool commit)
{
	int rc;

	if (!x->tx)
		return -EINVAL;
	rc = request(x, XS_TRANSACTION_END, commit ? "T" : "F", NULL, false,
		     NULL, 0);
	x->tx = 0;
	return rc < 0 ? rc : 0;
}

int xsc_cas(struct xsc *x, const char *path, const char *expect,
	    const char *val)
{
	char cur[256];

	for (int tries = 0; tries < 16; tries++) {
		int rc = xsc_tx_start(x);

		if (rc)
			return rc;
		rc = xsc_read(x, path, cur, sizeof(cur));
		if (rc == -ENOENT || (rc >= 0 && strcmp(cur, expect))) {
			xsc_tx_end(x, false);
			return -ECANCELED;
		}
		if (rc >= 0)
			rc = xsc_write(x, path, val);
		if (rc < 0) {
			xsc_tx_end(x, false);
			return rc;
		}
		rc = xsc_tx_end(x, true);
		if (rc != -EAGAIN)
			return rc;
	}
	return -EAGAIN;
}

int64_t xsc_take_events(struct xsc *x)
{
	int64_t n;

	while (!x->err) {
		struct pollfd p = { .fd = x->fd, .events = POLLIN };
		struct xsd_sockmsg r;
		char rbody[XENSTORE_PAYLOAD_MAX + 1];

		if (poll(&p, 1, 0) <= 0)
			break;
		if (read_msg(x, &r, rbody) < 0)
			break;
		if (r.type == XS_WATCH_EVENT)
			x->events++;
	}
	n = (int64_t)x->events;
	x->events = 0;
	return x->err && n == 0 ? x->err : n;
}
