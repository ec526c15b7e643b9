/*
 * The accepting side's listener: a TCP socket, one handshake thread per
 * incoming connection, and the table of channels being assembled from
 * their streams (the wire is docs/transport.md; the bounds are drawn
 * below). Entry points: pvm_transport_listen, pvm_listener_set_limits,
 * pvm_transport_accept (repeatedly), pvm_listener_close.
 */
#include "transport/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- listener ----------------------------------------------------------
 *
 * Every accepted socket gets its own handshake thread (hs_main): TLS, the
 * transport HELLO, the authorize hook, then it files the connection under
 * its channel (struct pending). Strangers are bounded where they cost:
 *
 *   unauthenticated   at most max_unauth handshakes at once, per_addr from
 *                     one address, not counting connections whose peer is
 *                     already verified; more are closed unread. Each one holds
 *                     a thread (1 MiB of stack reserved, a few pages used)
 *                     and one SSL object (tens of KiB at most) for
 *                     handshake_ms at most.
 *   half-built        PEND_GENERAL channels being assembled, PEND_PER_PEER
 *   channels          of them per certificate name, each dropped when no
 *                     stream arrived for 2 * handshake_ms. PEND_RESERVE more
 *                     slots take only small channels (one data stream, as
 *                     a QUERY opens), so a peer holding the general slots
 *                     cannot keep the settling of a hand-over out.
 *
 * pvm_transport_accept() waits for a group to complete (woken through
 * l->wake) while it accepts new sockets.
 */

#define PEND_GENERAL 8u
#define PEND_RESERVE 2u
#define PEND_PER_PEER 4u
#define PEND_ALL (PEND_GENERAL + PEND_RESERVE)
/* Handshake threads: the strangers' bound, and as many again for peers
 * already through (they end as soon as HELLO_ACK is written). */
#define HS_SLOTS(l) (2u * (l)->max_unauth)

struct pending {
	bool used, complete;
	uint8_t id[TP_HELLO_ID_LEN];
	unsigned count, have;
	uint32_t flags;
	uint64_t last_ms; /* when its last stream arrived */
	char cn[128];
	struct tp_conn conns[PVM_TP_STREAMS_MAX + 1];
	bool got[PVM_TP_STREAMS_MAX + 1];   /* filed */
	bool taken[PVM_TP_STREAMS_MAX + 1]; /* being answered (HELLO_ACK) */
};

/* One handshake in progress. */
struct hs_slot {
	bool used;
	bool authenticated; /* no longer counted against the bounds */
	int fd; /* a dup of the socket, ours: pvm_listener_close() shuts it
		 * down to cut the handshake (the thread's own fd may already
		 * be closed and its number reused) */
	int conn_fd; /* the socket, given to the thread's connection */
	char addr[INET6_ADDRSTRLEN];
	struct pvm_listener *l;
	struct pvm_tls_ctx tls; /* its own reference to the SSL_CTX */
	char peer_name[256];
	pvm_tp_authorize_fn authorize;
	void *authorize_ctx;
	unsigned hs_ms;
};

struct pvm_listener {
	int fd;
	uint16_t port;
	int wake[2]; /* hs_main -> accept: a group completed */
	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;
	bool closing;
	unsigned max_unauth, per_addr, handshake_ms;
	unsigned nhs;         /* handshake threads alive */
	struct hs_slot *hs;   /* max_unauth entries */
	uint64_t dropped;     /* connections closed for the bounds */
	uint64_t dropped_logged_ms;
	struct pending pend[PEND_ALL];
};

int pvm_transport_listen(const char *host, uint16_t port,
			 struct pvm_listener **out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE },
			*res = NULL;
	struct pvm_listener *l;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char portstr[8];
	int one = 1, rc;

	*out = NULL;
	snprintf(portstr, sizeof(portstr), "%u", port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc) {
		pvm_err("transport: cannot resolve listen address '%s': %s",
			host ? host : "*", gai_strerror(rc));
		return -EINVAL;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		freeaddrinfo(res);
		return -ENOMEM;
	}
	l->wake[0] = l->wake[1] = -1;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->max_unauth = 64;
	l->per_addr = 8;
	l->handshake_ms = 5000;
	l->fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0 || pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) < 0)
		goto out_errno;
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, res->ai_addr, res->ai_addrlen) < 0 ||
	    listen(l->fd, 64) < 0)
		goto out_errno;
	if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) == 0)
		l->port = ntohs(ss.ss_family == AF_INET6 ?
					((struct sockaddr_in6 *)&ss)->sin6_port :
					((struct sockaddr_in *)&ss)->sin_port);
	freeaddrinfo(res);
	*out = l;
	return 0;

out_errno:
	rc = -errno;
	pvm_err("transport: cannot listen on %s:%u: %s", host ? host : "*",
		port, strerror(errno));
	freeaddrinfo(res);
	pvm_listener_close(l);
	return rc;
}

void pvm_listener_set_limits(struct pvm_listener *l, unsigned max_unauth,
			     unsigned per_addr, unsigned handshake_ms)
{
	pthread_mutex_lock(&l->lock);
	if (!l->hs && max_unauth)
		l->max_unauth = max_unauth;
	if (per_addr)
		l->per_addr = per_addr;
	if (handshake_ms)
		l->handshake_ms = handshake_ms;
	pthread_mutex_unlock(&l->lock);
}

uint16_t pvm_listener_port(const struct pvm_listener *l)
{
	return l->port;
}

int pvm_listener_fd(const struct pvm_listener *l)
{
	return l->fd;
}

static void pending_drop(struct pending *p)
{
	for (unsigned i = 0; i <= PVM_TP_STREAMS_MAX; i++)
		if (p->got[i])
			tp_conn_dispose(&p->conns[i]);
	memset(p, 0, sizeof(*p));
}

void pvm_listener_close(struct pvm_listener *l)
{
	if (!l)
		return;
	/* Cut every handshake short and wait for its thread: they use the
	 * pending table and their slot. */
	pthread_mutex_lock(&l->lock);
	l->closing = true;
	for (unsigned i = 0; l->hs && i < HS_SLOTS(l); i++)
		if (l->hs[i].used && l->hs[i].fd >= 0)
			shutdown(l->hs[i].fd, SHUT_RDWR);
	while (l->nhs)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
	for (unsigned i = 0; i < PEND_ALL; i++)
		if (l->pend[i].used)
			pending_drop(&l->pend[i]);
	if (l->fd >= 0)
		close(l->fd);
	if (l->wake[0] >= 0)
		close(l->wake[0]);
	if (l->wake[1] >= 0)
		close(l->wake[1]);
	free(l->hs);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l);
}

static void refuse(struct tp_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void refuse(struct tp_conn *c, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pvm_warn("transport: refused connection from %s%s%s%s: %s",
		 c->peer.addr[0] ? c->peer.addr : "?",
		 c->peer.cert ? " ('" : "", c->peer.cert ? c->peer.cn : "",
		 c->peer.cert ? "')" : "", msg);
	tp_conn_dispose(c);
}

static void send_refusal(struct tp_conn *c, int code, const char *text,
			 unsigned ms)
{
	uint8_t buf[TP_HDR_LEN + 8 + TP_ERROR_TEXT_MAX];
	size_t tlen = strnlen(text, TP_ERROR_TEXT_MAX);
	char why[64];

	tp_put_header(buf, TP_ERROR, (uint32_t)(8 + tlen));
	pvm_put_le32(buf + TP_HDR_LEN, (uint32_t)-code);
	pvm_put_le32(buf + TP_HDR_LEN + 4, 0);
	memcpy(buf + TP_HDR_LEN + 8, text, tlen);
	tp_conn_write(c, buf, TP_HDR_LEN + 8 + tlen, ms, NULL, why, sizeof(why));
}

/*
 * Under l->lock: the group @h's stream belongs to (found or newly taken),
 * or NULL with @why set. Marks the stream taken.
 */
static struct pending *pending_claim(struct pvm_listener *l,
				     const struct tp_hello *h, const char *cn,
				     const char **why)
{
	struct pending *p = NULL, *freep = NULL;
	unsigned mine = 0, slots = h->count <= 1 ? PEND_ALL : PEND_GENERAL;

	for (unsigned i = 0; i < PEND_ALL; i++) {
		struct pending *q = &l->pend[i];

		if (q->used && memcmp(q->id, h->id, TP_HELLO_ID_LEN) == 0)
			p = q;
		else if (q->used && !strcmp(q->cn, cn))
			mine++;
		else if (!q->used && !freep && i < slots)
			freep = q;
	}
	if (!p) {
		if (mine >= PEND_PER_PEER) {
			*why = "too many channels of this peer being set up";
			return NULL;
		}
		if (!freep) {
			*why = "too many channels being set up";
			return NULL;
		}
		p = freep;
		p->used = true;
		memcpy(p->id, h->id, TP_HELLO_ID_LEN);
		p->count = h->count;
		p->flags = h->flags;
		snprintf(p->cn, sizeof(p->cn), "%s", cn);
	}
	/* Every stream of a channel must come from the same identity: a
	 * stranger cannot graft a connection onto someone else's channel. */
	if (h->count != p->count || p->taken[h->idx] || p->complete ||
	    strcmp(p->cn, cn) != 0) {
		*why = "stream does not fit its channel";
		return NULL;
	}
	p->taken[h->idx] = true;
	p->last_ms = pvm_now_ms();
	return p;
}

/* A handshake thread: one accepted socket through TLS, HELLO and the
 * authorize hook, filed under its channel. */
static void hs_run(struct hs_slot *slot, int fd)
{
	struct pvm_listener *l = slot->l;
	unsigned hs_ms = slot->hs_ms;
	struct tp_conn c;
	uint8_t buf[TP_HDR_LEN + TP_HELLO_LEN];
	struct tp_hello h;
	struct pending *p;
	const char *bad;
	uint16_t type;
	uint32_t len;
	char why[320];
	int rc;

	tp_conn_init(&c);
	rc = tp_conn_accept(&c, &slot->tls, fd,
			    slot->peer_name[0] ? slot->peer_name : NULL, hs_ms,
			    why, sizeof(why));
	if (rc) {
		refuse(&c, "%s", why);
		return;
	}
	/* The HELLO is read before any refusal: closing with it unread
	 * would reset the connection and lose the refusal on its way. */
	rc = tp_conn_read(&c, buf, TP_HDR_LEN, hs_ms, NULL, why, sizeof(why));
	if (rc) {
		refuse(&c, "no HELLO after the handshake: %s", why);
		return;
	}
	if (tp_parse_header(buf, &type, &len, &bad) || type != TP_HELLO ||
	    len != TP_HELLO_LEN) {
		refuse(&c, "first frame is not a HELLO");
		return;
	}
	rc = tp_conn_read(&c, buf + TP_HDR_LEN, len, hs_ms, NULL, why, sizeof(why));
	if (rc) {
		refuse(&c, "truncated HELLO: %s", why);
		return;
	}
	rc = tp_parse_hello(buf + TP_HDR_LEN, &h, &bad);
	if (rc) {
		send_refusal(&c, rc, bad, hs_ms);
		refuse(&c, "%s", bad);
		return;
	}
	if (slot->authorize) {
		why[0] = '\0';
		rc = slot->authorize(slot->authorize_ctx, &c.peer, why,
				     sizeof(why));
		if (rc) {
			send_refusal(&c, rc, why[0] ? why : "not authorized",
				     hs_ms);
			refuse(&c, "%s", why[0] ? why : "not authorized");
			return;
		}
	}
	pthread_mutex_lock(&l->lock);
	/* A verified, authorized peer no longer counts as a stranger: its
	 * next stream may come before this thread has ended. */
	slot->authenticated = true;
	p = l->closing ? NULL : pending_claim(l, &h, c.peer.cn, &bad);
	pthread_mutex_unlock(&l->lock);
	if (!p) {
		if (l->closing)
			bad = "shutting down";
		send_refusal(&c, -EBUSY, bad, hs_ms);
		refuse(&c, "stream %u of %u: %s", h.idx, h.count + 1, bad);
		return;
	}
	tp_put_header(buf, TP_HELLO_ACK, TP_HELLO_ACK_LEN);
	memset(buf + TP_HDR_LEN, 0, TP_HELLO_ACK_LEN);
	pvm_put_le16(buf + TP_HDR_LEN, PVM_TP_VERSION);
	rc = tp_conn_write(&c, buf, TP_HDR_LEN + TP_HELLO_ACK_LEN, hs_ms, NULL,
			   why, sizeof(why));
	pthread_mutex_lock(&l->lock);
	/* The group may have expired meanwhile (used again under another id:
	 * compare it). */
	if (rc || !p->used || memcmp(p->id, h.id, TP_HELLO_ID_LEN) || l->closing) {
		pthread_mutex_unlock(&l->lock);
		refuse(&c, "cannot answer HELLO: %s",
		       rc ? why : "its channel expired");
		return;
	}
	p->conns[h.idx] = c; /* the mutex moves with it: not yet used */
	p->got[h.idx] = true;
	p->have++;
	p->last_ms = pvm_now_ms();
	if (p->have == p->count + 1) {
		char one = 1;
		ssize_t n;

		p->complete = true;
		n = write(l->wake[1], &one, 1);
		(void)n;
	}
	pthread_mutex_unlock(&l->lock);
}

static void *hs_main(void *arg)
{
	struct hs_slot *slot = arg;
	struct pvm_listener *l = slot->l;

	hs_run(slot, slot->conn_fd);
	SSL_CTX_free(slot->tls.ssl_ctx);
	pthread_mutex_lock(&l->lock);
	if (slot->fd >= 0)
		close(slot->fd);
	slot->used = false;
	slot->fd = -1;
	l->nhs--;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/* The address part of @sa, for the per-address bound. */
static void addr_key(const struct sockaddr_storage *sa, char *out, size_t len)
{
	const void *a = sa->ss_family == AF_INET6 ?
				(const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr :
				(const void *)&((const struct sockaddr_in *)sa)->sin_addr;

	if (!inet_ntop(sa->ss_family, a, out, (socklen_t)len))
		snprintf(out, len, "?");
}

/* Too many strangers: close @fd unread; logged at most once a second. */
static void hs_drop(struct pvm_listener *l, int fd, const char *addr,
		    const char *which)
{
	uint64_t now = pvm_now_ms();

	l->dropped++;
	if (now - l->dropped_logged_ms >= 1000) {
		pvm_warn("transport: closed a connection from %s unread: %s (%llu so far; see max-unauthenticated in pvmigd.conf(5))",
			 addr, which, (unsigned long long)l->dropped);
		l->dropped_logged_ms = now;
	}
	close(fd);
}

/* Under l->lock: starts a handshake thread for @fd, or closes it. */
static void hs_start(struct pvm_listener *l, struct pvm_tls_ctx *tls,
		     const struct pvm_channel_opts *opts, int fd,
		     const struct sockaddr_storage *sa)
{
	struct hs_slot *slot = NULL;
	unsigned from_addr = 0, unauth = 0;
	char addr[INET6_ADDRSTRLEN];
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	addr_key(sa, addr, sizeof(addr));
	if (!l->hs) {
		l->hs = calloc(HS_SLOTS(l), sizeof(*l->hs));
		if (!l->hs) {
			close(fd);
			return;
		}
	}
	for (unsigned i = 0; i < HS_SLOTS(l); i++) {
		if (l->hs[i].used && !l->hs[i].authenticated) {
			unauth++;
			from_addr += !strcmp(l->hs[i].addr, addr);
		} else if (!l->hs[i].used && !slot) {
			slot = &l->hs[i];
		}
	}
	if (!slot || unauth >= l->max_unauth) {
		hs_drop(l, fd, addr, "too many connections in their handshake");
		return;
	}
	if (from_addr >= l->per_addr) {
		hs_drop(l, fd, addr, "too many connections from this address in their handshake");
		return;
	}
	memset(slot, 0, sizeof(*slot));
	slot->used = true;
	slot->conn_fd = fd;
	slot->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	slot->l = l;
	snprintf(slot->addr, sizeof(slot->addr), "%s", addr);
	slot->tls = *tls;
	SSL_CTX_up_ref(tls->ssl_ctx);
	snprintf(slot->peer_name, sizeof(slot->peer_name), "%s",
		 opts->peer_name ? opts->peer_name : "");
	slot->authorize = opts->authorize;
	slot->authorize_ctx = opts->authorize_ctx;
	slot->hs_ms = opts->timeout_ms && opts->timeout_ms < l->handshake_ms ?
			      opts->timeout_ms : l->handshake_ms;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* 1 MiB of address space: OpenSSL's certificate checks and the log
	 * lines need a few tens of KiB, sanitizer builds several times that;
	 * only the pages touched cost memory. */
	pthread_attr_setstacksize(&attr, 1024 * 1024);
	rc = pthread_create(&t, &attr, hs_main, slot);
	pthread_attr_destroy(&attr);
	if (rc) {
		SSL_CTX_free(slot->tls.ssl_ctx);
		if (slot->fd >= 0)
			close(slot->fd);
		slot->used = false;
		slot->fd = -1;
		close(fd);
		return;
	}
	l->nhs++;
}

/* Under l->lock: drops groups whose peer stopped adding streams, and
 * takes a complete one (NULL if none). */
static struct pending *pending_take(struct pvm_listener *l, uint64_t now)
{
	for (unsigned i = 0; i < PEND_ALL; i++) {
		struct pending *q = &l->pend[i];

		if (q->used && !q->complete &&
		    now - q->last_ms > 2ull * l->handshake_ms) {
			pvm_warn("transport: dropping half-open channel from '%s' (%u of %u streams)",
				 q->cn, q->have, q->count + 1);
			/* A stream being answered now finds its group gone
			 * (hs_run compares the id). */
			pending_drop(q);
		}
	}
	for (unsigned i = 0; i < PEND_ALL; i++)
		if (l->pend[i].used && l->pend[i].complete)
			return &l->pend[i];
	return NULL;
}

int pvm_transport_accept(struct pvm_listener *l, struct pvm_tls_ctx *tls,
			 const struct pvm_channel_opts *opts,
			 unsigned timeout_ms, struct pvm_channel **out)
{
	uint64_t deadline = timeout_ms ? pvm_now_ms() + timeout_ms : UINT64_MAX;
	struct pending *p = NULL;
	int rc;

	*out = NULL;
	for (;;) {
		struct pollfd pfd[2] = { { .fd = l->fd, .events = POLLIN },
					 { .fd = l->wake[0], .events = POLLIN } };
		struct sockaddr_storage sa;
		socklen_t sl = sizeof(sa);
		uint64_t now = pvm_now_ms();
		char drain[64];
		int fd, wait;

		pthread_mutex_lock(&l->lock);
		p = pending_take(l, now);
		pthread_mutex_unlock(&l->lock);
		if (p)
			break;
		if (now >= deadline)
			return -ETIMEDOUT;
		wait = deadline == UINT64_MAX ? 1000 :
		       (int)(deadline - now < 1000 ? deadline - now : 1000);
		rc = poll(pfd, 2, wait);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc <= 0)
			continue;
		if (pfd[1].revents)
			while (read(l->wake[0], drain, sizeof(drain)) > 0)
				;
		if (!(pfd[0].revents & POLLIN))
			continue;
		fd = accept4(l->fd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == EAGAIN ||
			    errno == ECONNABORTED || errno == EMFILE ||
			    errno == ENFILE)
				continue;
			return -errno;
		}
		pthread_mutex_lock(&l->lock);
		hs_start(l, tls, opts, fd, &sa);
		pthread_mutex_unlock(&l->lock);
	}

	/* The connections move to the channel: taken out under the lock, the
	 * slot freed, then the channel built outside it. */
	{
		struct tp_conn conns[PVM_TP_STREAMS_MAX + 1];
		unsigned count;
		char cn[128];

		pthread_mutex_lock(&l->lock);
		count = p->count;
		memcpy(conns, p->conns, (count + 1) * sizeof(conns[0]));
		snprintf(cn, sizeof(cn), "%s", p->cn);
		memset(p, 0, sizeof(*p));
		pthread_mutex_unlock(&l->lock);
		rc = tp_channel_adopt(opts, count, conns, cn, out);
		if (rc == -ENOMEM)
			for (unsigned i = 0; i <= count; i++)
				tp_conn_dispose(&conns[i]);
		return rc;
	}
}
