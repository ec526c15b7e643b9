/*
 * Channels: N+1 TLS connections between two hosts that act as one ordered
 * channel. Stream 0 carries control messages both ways; streams 1..N carry
 * page batches from the connecting side to the accepting side only.
 *
 * Connecting side (the sender of pages):
 *
 *   caller --send_pages--> [worker 1 queue] --encode/lz4/TLS--> stream 1
 *          (copies pages   [worker 2 queue] --encode/lz4/TLS--> stream 2
 *           into a free    ...
 *           queue item)
 *   caller --send_msg----> MARK m on every data stream, then MSG(m) on 0
 *
 * Accepting side (the receiver of pages):
 *
 *   stream k --> rx thread k: read, inflate, on_pages(); at MARK m it waits
 *                until the message carrying m has been handed to the user
 *   stream 0 --> recv_msg() in the caller's thread: at MSG(m) it waits
 *                until every rx thread has passed MARK m
 *
 * Those two waits give the ordering rule of transport.h: pages before a
 * message are delivered before it, pages after it are delivered after it.
 * A sender issues a new mark only when pages went out since the last one,
 * so a message's mark is the previous message's mark or one more.
 *
 * Errors: the first failure anywhere (a thread, the caller, a keepalive)
 * sticks in ch->err with its explanation, is logged once, is reported to
 * the peer in an ERROR frame when possible, and shuts every socket down so
 * that each blocked call on both ends returns promptly.
 *
 * Keepalive: a thread writes KEEPALIVE on each stream this side writes to
 * when nothing else was written for timeout/4, so the reader's "nothing
 * received for timeout ms" rule finds only dead or stalled peers.
 */
#include "transport/internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TX_DEPTH 3u /* queue items per data stream: bounds sender memory */
#define HANDSHAKE_MS_MAX 10000u

enum tx_kind { TX_PAGES, TX_MARK, TX_CLOSE };

struct tx_item {
	enum tx_kind kind;
	uint64_t mark;
	struct tp_batch batch;
};

/* One connection of a channel. */
struct stream {
	struct pvm_channel *ch;
	unsigned idx;
	struct tp_conn conn;
	pthread_t thread;
	bool thread_started;

	/* Frame-level write lock: a frame's bytes are never interleaved with
	 * a keepalive's. Held for a whole frame write. */
	pthread_mutex_t wlock;
	bool tx_closed; /* CLOSE written: nothing more may follow (wlock) */
	_Atomic uint64_t last_write_ms;

	/* Sender queue (connecting side, data streams), under ch->lock:
	 * items[head..head+count) are published and owned by the worker; the
	 * item at head+count may be reserved by the caller (ch->cur) while it
	 * fills it. */
	struct tx_item items[TX_DEPTH];
	unsigned head, count;
	uint8_t *out; /* encode buffer, worker-owned */

	/* Receiver state (accepting side, data streams), under ch->lock. */
	uint64_t mark_seen;
	bool rx_closed;
	uint8_t *in;      /* frame body, rx-thread-owned */
	uint8_t *scratch; /* inflated pages, rx-thread-owned */
};

struct pvm_channel {
	bool connector;
	unsigned nstreams; /* data streams; stream 0 is control */
	struct stream *s;  /* nstreams + 1 entries */
	struct pvm_channel_opts opts;
	char peer[256];

	pthread_mutex_t lock;
	pthread_cond_t cond;

	atomic_bool stop;
	int err;
	char why[320];

	/* sender (caller thread) */
	struct tx_item *cur;     /* reserved, partly filled batch or NULL */
	struct stream *cur_s;
	unsigned rr;             /* next data stream to try */
	uint64_t mark_tx;        /* last mark issued */
	bool pages_since_mark;
	bool finished;

	/* receiver */
	uint64_t mark_consumed;  /* mark of the last message handed out */
	bool peer_closed;

	pthread_t ka_thread;
	bool ka_started;

	_Atomic uint64_t st_pages, st_zero, st_raw, st_wire, st_braw, st_blz4;
};

/* ---- errors ------------------------------------------------------------ */

static void send_error_frame(struct pvm_channel *ch, int code, const char *text)
{
	struct stream *s0 = &ch->s[0];
	uint8_t buf[TP_HDR_LEN + 8 + TP_ERROR_TEXT_MAX];
	size_t tlen = strnlen(text, TP_ERROR_TEXT_MAX);
	char why[64];

	/* Best effort, never blocking on a writer that holds the lock. */
	if (pthread_mutex_trylock(&s0->wlock) != 0)
		return;
	if (!s0->tx_closed) {
		tp_put_header(buf, TP_ERROR, (uint32_t)(8 + tlen));
		pvm_put_le32(buf + TP_HDR_LEN, (uint32_t)-code);
		pvm_put_le32(buf + TP_HDR_LEN + 4, 0);
		memcpy(buf + TP_HDR_LEN + 8, text, tlen);
		tp_conn_write(&s0->conn, buf, TP_HDR_LEN + 8 + tlen, 500, NULL,
			      why, sizeof(why));
	}
	pthread_mutex_unlock(&s0->wlock);
}

/*
 * Records the channel's first error, logs it, tells the peer and shuts the
 * sockets so every blocked call wakes. Later errors are consequences and
 * are only logged at debug level. Returns the sticky error.
 */
static int ch_fail(struct pvm_channel *ch, int code, bool tell_peer,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int ch_fail(struct pvm_channel *ch, int code, bool tell_peer,
		   const char *fmt, ...)
{
	char msg[320];
	va_list ap;
	bool first;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	pthread_mutex_lock(&ch->lock);
	first = ch->err == 0;
	if (first) {
		ch->err = code;
		snprintf(ch->why, sizeof(ch->why), "%s", msg);
	}
	code = ch->err;
	pthread_cond_broadcast(&ch->cond);
	pthread_mutex_unlock(&ch->lock);

	if (!first) {
		pvm_debug("channel %s: also: %s", ch->peer, msg);
		return code;
	}
	pvm_err("channel %s: %s", ch->peer, msg);
	if (tell_peer)
		send_error_frame(ch, code, msg);
	atomic_store(&ch->stop, true);
	for (unsigned i = 0; i <= ch->nstreams; i++)
		if (ch->s[i].conn.fd >= 0)
			shutdown(ch->s[i].conn.fd, SHUT_RDWR);
	return code;
}

static int ch_error(struct pvm_channel *ch)
{
	int e;

	pthread_mutex_lock(&ch->lock);
	e = ch->err;
	pthread_mutex_unlock(&ch->lock);
	return e;
}

int pvm_channel_check_peer(struct pvm_channel *ch)
{
	struct pollfd pf[PVM_TP_STREAMS_MAX + 1];
	unsigned idx[PVM_TP_STREAMS_MAX + 1], n = 0;
	int rc = ch_error(ch);

	if (rc)
		return rc;
	for (unsigned i = 0; i <= ch->nstreams && n < PVM_ARRAY_SIZE(pf); i++) {
		if (ch->s[i].conn.fd < 0)
			continue;
		idx[n] = i;
		pf[n++] = (struct pollfd){ .fd = ch->s[i].conn.fd, .events = POLLRDHUP };
	}
	if (poll(pf, n, 0) <= 0)
		return 0;
	for (unsigned i = 0; i < n; i++)
		if (pf[i].revents & (POLLRDHUP | POLLHUP | POLLERR))
			return ch_fail(ch, -ECONNRESET, false,
				       "stream %u: the peer closed the connection",
				       idx[i]);
	return 0;
}

int pvm_channel_error(const struct pvm_channel *ch, const char **why_out)
{
	if (why_out)
		*why_out = ch->err ? ch->why : "";
	return ch->err;
}

/* ---- framed I/O on one stream ------------------------------------------ */

/* Writes one frame whose header and body are in @buf (wlock held). */
static int write_frame_locked(struct stream *s, const void *buf, size_t len)
{
	struct pvm_channel *ch = s->ch;
	char why[256];
	int rc;

	if (s->tx_closed)
		return -EPIPE;
	rc = tp_conn_write(&s->conn, buf, len, ch->opts.timeout_ms, &ch->stop,
			   why, sizeof(why));
	if (rc == -ECANCELED)
		return ch_error(ch) ? ch_error(ch) : rc;
	if (rc)
		return ch_fail(ch, rc, false, "stream %u: send failed: %s",
			       s->idx, why);
	atomic_store(&s->last_write_ms, pvm_now_ms());
	atomic_fetch_add(&ch->st_wire, len);
	return 0;
}

static int write_frame(struct stream *s, const void *buf, size_t len)
{
	int rc;

	pthread_mutex_lock(&s->wlock);
	rc = write_frame_locked(s, buf, len);
	pthread_mutex_unlock(&s->wlock);
	return rc;
}

/* A frame of @type with an optional small fixed body. */
static int write_simple(struct stream *s, uint16_t type, const void *body,
			size_t blen)
{
	uint8_t buf[TP_HDR_LEN + 64];

	tp_put_header(buf, type, (uint32_t)blen);
	if (blen)
		memcpy(buf + TP_HDR_LEN, body, blen);
	return write_frame(s, buf, TP_HDR_LEN + blen);
}

/*
 * Reads one frame header and bounds it. Returns 0 or the sticky error; on a
 * malformed header the channel fails with an explanation.
 */
static int read_header(struct stream *s, uint16_t *type, uint32_t *len)
{
	struct pvm_channel *ch = s->ch;
	uint8_t hdr[TP_HDR_LEN];
	const char *bad;
	char why[256];
	int rc;

	rc = tp_conn_read(&s->conn, hdr, sizeof(hdr), ch->opts.timeout_ms,
			  &ch->stop, why, sizeof(why));
	if (rc == -ECANCELED)
		return ch_error(ch) ? ch_error(ch) : rc;
	if (rc)
		return ch_fail(ch, rc, false, "stream %u: receive failed: %s",
			       s->idx, why);
	if (tp_parse_header(hdr, type, len, &bad))
		return ch_fail(ch, -EBADMSG, true,
			       "stream %u: bad frame from peer: %s (type %u, length %u)",
			       s->idx, bad, pvm_get_le16(hdr), pvm_get_le32(hdr + 4));
	return 0;
}

static int read_body(struct stream *s, void *buf, size_t len)
{
	struct pvm_channel *ch = s->ch;
	char why[256];
	int rc;

	rc = tp_conn_read(&s->conn, buf, len, ch->opts.timeout_ms, &ch->stop,
			  why, sizeof(why));
	if (rc == -ECANCELED)
		return ch_error(ch) ? ch_error(ch) : rc;
	if (rc)
		return ch_fail(ch, rc, false,
			       "stream %u: receive failed mid-frame: %s",
			       s->idx, why);
	return 0;
}

#define PEER_ERROR "peer reported an error: "

/* An ERROR frame from the peer: record its reason as ours. */
static int peer_error(struct stream *s, uint32_t len)
{
	uint8_t body[8 + TP_ERROR_TEXT_MAX + 1];
	int rc = read_body(s, body, len);

	if (rc)
		return rc;
	body[len] = '\0';
	for (uint32_t i = 8; i < len; i++)
		if (body[i] < 0x20 || body[i] > 0x7e)
			body[i] = '?';
	/* A refusal of who we are keeps its code: the caller's advice
	 * differs (rights, not a broken link). */
	return ch_fail(s->ch,
		       len >= 4 && pvm_get_le32(body) == EACCES ? -EACCES : -EPROTO,
		       false, PEER_ERROR "%s",
		       len > 8 ? (char *)body + 8 : "(no reason given)");
}

/* ---- receive threads (accepting side, data streams) -------------------- */

static int rx_pages(struct stream *s, uint32_t len)
{
	struct pvm_channel *ch = s->ch;
	uint64_t pfns[PVM_TP_BATCH_PAGES];
	const uint8_t *pages[PVM_TP_BATCH_PAGES];
	size_t n = 0, zeros = 0;
	const char *bad;
	int rc;

	if (!ch->opts.on_pages)
		return ch_fail(ch, -EPROTO, true,
			       "stream %u: peer sent pages on a channel that takes none",
			       s->idx);
	rc = read_body(s, s->in, len);
	if (rc)
		return rc;
	if (tp_decode_pages(s->in, len, s->scratch, pfns, pages, &n, &bad))
		return ch_fail(ch, -EBADMSG, true,
			       "stream %u: bad PAGES frame: %s", s->idx, bad);
	rc = ch->opts.on_pages(ch->opts.ctx, pfns, pages, n);
	if (rc)
		return ch_fail(ch, rc < 0 ? rc : -EIO, true,
			       "stream %u: the receiver refused a batch: %s",
			       s->idx, strerror(rc < 0 ? -rc : EIO));
	for (size_t i = 0; i < n; i++)
		zeros += pages[i] == NULL;
	atomic_fetch_add(&ch->st_pages, n);
	atomic_fetch_add(&ch->st_zero, zeros);
	atomic_fetch_add(&ch->st_raw, (n - zeros) * PVM_PAGE_SIZE);
	atomic_fetch_add(&ch->st_wire, TP_HDR_LEN + len);
	return 0;
}

static int rx_mark(struct stream *s, uint32_t len)
{
	struct pvm_channel *ch = s->ch;
	uint8_t body[TP_MARK_LEN];
	uint64_t m;
	int rc;

	if (len != TP_MARK_LEN)
		return ch_fail(ch, -EBADMSG, true, "stream %u: MARK of length %u",
			       s->idx, len);
	rc = read_body(s, body, len);
	if (rc)
		return rc;
	m = pvm_get_le64(body);
	pthread_mutex_lock(&ch->lock);
	if (m != s->mark_seen + 1) {
		pthread_mutex_unlock(&ch->lock);
		return ch_fail(ch, -EPROTO, true,
			       "stream %u: MARK %llu out of order (expected %llu)",
			       s->idx, (unsigned long long)m,
			       (unsigned long long)s->mark_seen + 1);
	}
	s->mark_seen = m;
	pthread_cond_broadcast(&ch->cond);
	/* Deliver nothing newer until the message that carries this mark has
	 * been handed to the user: pages after a message come after it. */
	while (ch->mark_consumed < m && !ch->err && !atomic_load(&ch->stop))
		pthread_cond_wait(&ch->cond, &ch->lock);
	rc = ch->err;
	pthread_mutex_unlock(&ch->lock);
	return rc;
}

static void *rx_thread(void *arg)
{
	struct stream *s = arg;
	struct pvm_channel *ch = s->ch;

	for (;;) {
		uint16_t type;
		uint32_t len;
		int rc = read_header(s, &type, &len);

		if (rc)
			break;
		switch (type) {
		case TP_KEEPALIVE:
			rc = 0;
			break;
		case TP_PAGES:
			rc = rx_pages(s, len);
			break;
		case TP_MARK:
			rc = rx_mark(s, len);
			break;
		case TP_ERROR:
			rc = peer_error(s, len);
			break;
		case TP_CLOSE:
			pthread_mutex_lock(&ch->lock);
			s->rx_closed = true;
			pthread_cond_broadcast(&ch->cond);
			pthread_mutex_unlock(&ch->lock);
			return NULL;
		default:
			rc = ch_fail(ch, -EPROTO, true,
				     "stream %u: unexpected %s frame on a data stream",
				     s->idx, tp_frame_name(type));
		}
		if (rc)
			break;
	}
	return NULL;
}

/* ---- send workers (connecting side, data streams) ---------------------- */

static int tx_item(struct stream *s, struct tx_item *it)
{
	struct pvm_channel *ch = s->ch;
	uint8_t body[TP_MARK_LEN];
	size_t len;
	bool lz4;

	switch (it->kind) {
	case TX_PAGES:
		len = tp_encode_pages(&it->batch, ch->opts.compress, s->out,
				      &lz4);
		atomic_fetch_add(lz4 ? &ch->st_blz4 : &ch->st_braw, 1);
		return write_frame(s, s->out, len);
	case TX_MARK:
		pvm_put_le64(body, it->mark);
		return write_simple(s, TP_MARK, body, sizeof(body));
	case TX_CLOSE: {
		int rc;

		pthread_mutex_lock(&s->wlock);
		tp_put_header(body, TP_CLOSE, 0);
		rc = write_frame_locked(s, body, TP_HDR_LEN);
		s->tx_closed = true;
		pthread_mutex_unlock(&s->wlock);
		return rc;
	}
	}
	return -EINVAL;
}

static void *tx_thread(void *arg)
{
	struct stream *s = arg;
	struct pvm_channel *ch = s->ch;

	pthread_mutex_lock(&ch->lock);
	for (;;) {
		struct tx_item *it;
		enum tx_kind kind;
		int rc;

		while (s->count == 0 && !ch->err && !atomic_load(&ch->stop))
			pthread_cond_wait(&ch->cond, &ch->lock);
		if (ch->err || atomic_load(&ch->stop))
			break;
		it = &s->items[s->head];
		kind = it->kind;
		pthread_mutex_unlock(&ch->lock);

		rc = tx_item(s, it);

		pthread_mutex_lock(&ch->lock);
		s->head = (s->head + 1) % TX_DEPTH;
		s->count--;
		pthread_cond_broadcast(&ch->cond);
		if (rc || kind == TX_CLOSE)
			break;
	}
	pthread_mutex_unlock(&ch->lock);
	return NULL;
}

/* Reserves a free queue item on some data stream (ch->lock held); blocks
 * while every queue is full. */
static int reserve_item(struct pvm_channel *ch, struct stream **s_out,
			struct tx_item **it_out, struct stream *only)
{
	for (;;) {
		if (ch->err)
			return ch->err;
		if (atomic_load(&ch->stop))
			return -ECANCELED;
		for (unsigned k = 0; k < ch->nstreams; k++) {
			unsigned i = only ? only->idx : 1 + (ch->rr + k) % ch->nstreams;
			struct stream *s = &ch->s[i];

			if (s->count < TX_DEPTH) {
				*s_out = s;
				*it_out = &s->items[(s->head + s->count) % TX_DEPTH];
				if (!only)
					ch->rr = (i - 1 + 1) % ch->nstreams;
				return 0;
			}
			if (only)
				break;
		}
		pthread_cond_wait(&ch->cond, &ch->lock);
	}
}

/* Hands the reserved item to its worker (ch->lock held). */
static void publish(struct pvm_channel *ch, struct stream *s)
{
	s->count++;
	pthread_cond_broadcast(&ch->cond);
}

static void publish_current(struct pvm_channel *ch)
{
	if (ch->cur) {
		publish(ch, ch->cur_s);
		ch->cur = NULL;
		ch->cur_s = NULL;
	}
}

int pvm_channel_send_pages(struct pvm_channel *ch, const uint64_t *pfns,
			   const uint8_t *const *pages, size_t n)
{
	int rc = 0;

	if (!ch->connector || ch->finished)
		return -EINVAL;
	pthread_mutex_lock(&ch->lock);
	for (size_t i = 0; i < n; i++) {
		struct tp_batch *b;

		if (pfns[i] & ~TP_PFN_MASK) {
			rc = -EINVAL;
			break;
		}
		if (!ch->cur) {
			rc = reserve_item(ch, &ch->cur_s, &ch->cur, NULL);
			if (rc)
				break;
			ch->cur->kind = TX_PAGES;
			ch->cur->batch.count = 0;
			ch->cur->batch.nonzero = 0;
		}
		b = &ch->cur->batch;
		/* The copy happens under ch->lock, which workers take only
		 * between frames; zero pages are never copied at all. */
		if (pvm_is_zero(pages[i], PVM_PAGE_SIZE)) {
			b->pfns[b->count++] = pfns[i] | TP_PFN_ZERO;
			atomic_fetch_add(&ch->st_zero, 1);
		} else {
			memcpy(b->data + b->nonzero * PVM_PAGE_SIZE, pages[i],
			       PVM_PAGE_SIZE);
			b->nonzero++;
			b->pfns[b->count++] = pfns[i];
			atomic_fetch_add(&ch->st_raw, PVM_PAGE_SIZE);
		}
		atomic_fetch_add(&ch->st_pages, 1);
		ch->pages_since_mark = true;
		if (b->count == PVM_TP_BATCH_PAGES)
			publish_current(ch);
	}
	if (!rc)
		rc = ch->err;
	pthread_mutex_unlock(&ch->lock);
	return rc;
}

/* Queues @kind (MARK or CLOSE) behind everything on every data stream. */
static int queue_on_all(struct pvm_channel *ch, enum tx_kind kind,
			uint64_t mark)
{
	int rc = 0;

	pthread_mutex_lock(&ch->lock);
	publish_current(ch);
	for (unsigned i = 1; i <= ch->nstreams && !rc; i++) {
		struct stream *s;
		struct tx_item *it;

		rc = reserve_item(ch, &s, &it, &ch->s[i]);
		if (rc)
			break;
		it->kind = kind;
		it->mark = mark;
		publish(ch, s);
	}
	pthread_mutex_unlock(&ch->lock);
	return rc;
}

int pvm_channel_send_msg(struct pvm_channel *ch, const void *buf, size_t len)
{
	struct stream *s0 = &ch->s[0];
	uint8_t hdr[TP_HDR_LEN + TP_MSG_HDR_LEN];
	int rc;

	if (len > PVM_TP_MSG_MAX || ch->finished)
		return -EINVAL;
	if (ch->connector && ch->pages_since_mark) {
		rc = queue_on_all(ch, TX_MARK, ch->mark_tx + 1);
		if (rc)
			return rc;
		ch->mark_tx++;
		ch->pages_since_mark = false;
	}
	tp_put_header(hdr, TP_MSG, (uint32_t)(TP_MSG_HDR_LEN + len));
	pvm_put_le64(hdr + TP_HDR_LEN, ch->connector ? ch->mark_tx : 0);

	pthread_mutex_lock(&s0->wlock);
	rc = write_frame_locked(s0, hdr, sizeof(hdr));
	if (!rc && len)
		rc = write_frame_locked(s0, buf, len);
	pthread_mutex_unlock(&s0->wlock);
	return rc;
}

/* ---- control stream reads ---------------------------------------------- */

/* Waits (ch->lock held) until every data stream has passed mark @m. */
static int wait_marks(struct pvm_channel *ch, uint64_t m)
{
	for (;;) {
		bool all = true;

		if (ch->err)
			return ch->err;
		if (atomic_load(&ch->stop))
			return -ECANCELED;
		for (unsigned i = 1; i <= ch->nstreams; i++)
			if (ch->s[i].mark_seen < m)
				all = false;
		if (all)
			return 0;
		pthread_cond_wait(&ch->cond, &ch->lock);
	}
}

/* Peer said CLOSE on stream 0: wait for every data stream's CLOSE (all
 * pages delivered), then acknowledge. */
static int rx_close(struct pvm_channel *ch)
{
	struct stream *s0 = &ch->s[0];
	uint8_t frame[TP_HDR_LEN];
	int rc = 0;

	pthread_mutex_lock(&ch->lock);
	for (;;) {
		bool all = true;

		for (unsigned i = 1; i <= ch->nstreams; i++)
			all &= ch->s[i].rx_closed;
		if (all || ch->err || atomic_load(&ch->stop))
			break;
		pthread_cond_wait(&ch->cond, &ch->lock);
	}
	rc = ch->err ? ch->err : atomic_load(&ch->stop) ? -ECANCELED : 0;
	pthread_mutex_unlock(&ch->lock);
	if (rc)
		return rc;
	pthread_mutex_lock(&s0->wlock);
	tp_put_header(frame, TP_CLOSE_ACK, 0);
	rc = write_frame_locked(s0, frame, sizeof(frame));
	s0->tx_closed = true;
	pthread_mutex_unlock(&s0->wlock);
	if (rc)
		return rc;
	ch->peer_closed = true;
	return -ESHUTDOWN;
}

int pvm_channel_recv_msg(struct pvm_channel *ch, void **buf_out,
			 size_t *len_out)
{
	struct stream *s0 = &ch->s[0];

	*buf_out = NULL;
	*len_out = 0;
	if (ch->peer_closed)
		return -ESHUTDOWN;
	for (;;) {
		uint8_t mh[TP_MSG_HDR_LEN];
		uint16_t type;
		uint32_t len;
		uint64_t m;
		void *buf;
		int rc = read_header(s0, &type, &len);

		if (rc)
			return rc;
		switch (type) {
		case TP_KEEPALIVE:
			continue;
		case TP_ERROR:
			return peer_error(s0, len);
		case TP_CLOSE:
			if (ch->connector)
				break;
			return rx_close(ch);
		case TP_MSG:
			if (len < TP_MSG_HDR_LEN)
				return ch_fail(ch, -EBADMSG, true,
					       "stream 0: MSG shorter than its header");
			rc = read_body(s0, mh, sizeof(mh));
			if (rc)
				return rc;
			m = pvm_get_le64(mh);
			len -= TP_MSG_HDR_LEN;
			buf = malloc(len ? len : 1);
			if (!buf)
				return ch_fail(ch, -ENOMEM, true,
					       "no memory for a %u-byte message", len);
			rc = len ? read_body(s0, buf, len) : 0;
			if (rc) {
				free(buf);
				return rc;
			}
			if (!ch->connector) {
				pthread_mutex_lock(&ch->lock);
				if (m != ch->mark_consumed &&
				    m != ch->mark_consumed + 1) {
					pthread_mutex_unlock(&ch->lock);
					free(buf);
					return ch_fail(ch, -EPROTO, true,
						       "stream 0: MSG mark %llu out of order (last %llu)",
						       (unsigned long long)m,
						       (unsigned long long)ch->mark_consumed);
				}
				rc = wait_marks(ch, m);
				if (!rc) {
					ch->mark_consumed = m;
					pthread_cond_broadcast(&ch->cond);
				}
				pthread_mutex_unlock(&ch->lock);
				if (rc) {
					free(buf);
					return rc;
				}
			}
			*buf_out = buf;
			*len_out = len;
			return 0;
		default:
			break;
		}
		return ch_fail(ch, -EPROTO, true,
			       "stream 0: unexpected %s frame", tp_frame_name(type));
	}
}

int pvm_channel_finish(struct pvm_channel *ch)
{
	struct stream *s0 = &ch->s[0];
	uint8_t frame[TP_HDR_LEN];
	int rc;

	if (!ch->connector || ch->finished)
		return -EINVAL;
	ch->finished = true;
	rc = queue_on_all(ch, TX_CLOSE, 0);
	if (rc)
		return rc;
	pthread_mutex_lock(&s0->wlock);
	tp_put_header(frame, TP_CLOSE, 0);
	rc = write_frame_locked(s0, frame, sizeof(frame));
	s0->tx_closed = true;
	pthread_mutex_unlock(&s0->wlock);
	if (rc)
		return rc;
	for (;;) {
		uint16_t type;
		uint32_t len;

		rc = read_header(s0, &type, &len);
		if (rc)
			return rc;
		if (type == TP_CLOSE_ACK)
			break;
		if (type == TP_ERROR)
			return peer_error(s0, len);
		if (type == TP_MSG) {
			/* A message the peer sent before it saw our CLOSE:
			 * nobody will read it now. */
			uint8_t sink[4096];

			while (len) {
				uint32_t k = len < sizeof(sink) ? len : sizeof(sink);

				rc = read_body(s0, sink, k);
				if (rc)
					return rc;
				len -= k;
			}
			pvm_warn("channel %s: dropped a message received while closing",
				 ch->peer);
			continue;
		}
		if (type != TP_KEEPALIVE)
			return ch_fail(ch, -EPROTO, false,
				       "unexpected %s frame while closing",
				       tp_frame_name(type));
	}
	return ch_error(ch);
}

/* ---- keepalive --------------------------------------------------------- */

static void *ka_thread(void *arg)
{
	struct pvm_channel *ch = arg;
	unsigned interval = ch->opts.timeout_ms / 4;
	uint8_t frame[TP_HDR_LEN];

	if (interval < 20)
		interval = 20;
	tp_put_header(frame, TP_KEEPALIVE, 0);
	pthread_mutex_lock(&ch->lock);
	while (!ch->err && !atomic_load(&ch->stop)) {
		struct timespec ts;
		uint64_t now;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(interval % 1000) * 1000000L;
		ts.tv_sec += interval / 1000 + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&ch->cond, &ch->lock, &ts);
		if (ch->err || atomic_load(&ch->stop))
			break;
		pthread_mutex_unlock(&ch->lock);
		now = pvm_now_ms();
		/* The accepting side writes only on stream 0. */
		for (unsigned i = 0; i <= (ch->connector ? ch->nstreams : 0); i++) {
			struct stream *s = &ch->s[i];

			if (now - atomic_load(&s->last_write_ms) < interval)
				continue;
			/* A busy writer is proof of life already. */
			if (pthread_mutex_trylock(&s->wlock) != 0)
				continue;
			if (!s->tx_closed)
				write_frame_locked(s, frame, sizeof(frame));
			pthread_mutex_unlock(&s->wlock);
		}
		pthread_mutex_lock(&ch->lock);
	}
	pthread_mutex_unlock(&ch->lock);
	return NULL;
}

/* ---- set-up and tear-down ---------------------------------------------- */

void pvm_channel_opts_defaults(struct pvm_channel_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->streams = PVM_TP_STREAMS_DEFAULT;
	o->compress = true;
	o->timeout_ms = PVM_TP_TIMEOUT_MS_DEFAULT;
}

static struct pvm_channel *channel_new(const struct pvm_channel_opts *opts,
				       unsigned nstreams, bool connector)
{
	struct pvm_channel *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->opts = *opts;
	if (!ch->opts.timeout_ms)
		ch->opts.timeout_ms = PVM_TP_TIMEOUT_MS_DEFAULT;
	ch->nstreams = nstreams;
	ch->connector = connector;
	pthread_mutex_init(&ch->lock, NULL);
	pthread_cond_init(&ch->cond, NULL);
	snprintf(ch->peer, sizeof(ch->peer), "(connecting)");
	ch->s = calloc(nstreams + 1, sizeof(*ch->s));
	if (!ch->s) {
		free(ch);
		return NULL;
	}
	for (unsigned i = 0; i <= nstreams; i++) {
		struct stream *s = &ch->s[i];

		s->ch = ch;
		s->idx = i;
		tp_conn_init(&s->conn);
		pthread_mutex_init(&s->wlock, NULL);
		atomic_store(&s->last_write_ms, pvm_now_ms());
	}
	return ch;
}

/* Allocates per-stream buffers and starts the threads. */
static int channel_start(struct pvm_channel *ch)
{
	for (unsigned i = 1; i <= ch->nstreams; i++) {
		struct stream *s = &ch->s[i];

		if (ch->connector) {
			s->out = malloc(TP_HDR_LEN + tp_pages_body_max());
			if (!s->out)
				return -ENOMEM;
			for (unsigned k = 0; k < TX_DEPTH; k++) {
				s->items[k].batch.data = malloc(TP_BATCH_BYTES);
				if (!s->items[k].batch.data)
					return -ENOMEM;
			}
		} else {
			s->in = malloc(tp_pages_body_max());
			s->scratch = malloc(TP_BATCH_BYTES);
			if (!s->in || !s->scratch)
				return -ENOMEM;
		}
		if (pthread_create(&s->thread, NULL,
				   ch->connector ? tx_thread : rx_thread, s))
			return -EAGAIN;
		s->thread_started = true;
	}
	if (pthread_create(&ch->ka_thread, NULL, ka_thread, ch))
		return -EAGAIN;
	ch->ka_started = true;
	return 0;
}

void pvm_channel_shutdown(struct pvm_channel *ch)
{
	if (!ch)
		return;
	atomic_store(&ch->stop, true);
	pthread_mutex_lock(&ch->lock);
	pthread_cond_broadcast(&ch->cond);
	pthread_mutex_unlock(&ch->lock);
	for (unsigned i = 0; i <= ch->nstreams; i++)
		if (ch->s[i].conn.fd >= 0)
			shutdown(ch->s[i].conn.fd, SHUT_RDWR);
}

void pvm_channel_close(struct pvm_channel *ch)
{
	if (!ch)
		return;
	pvm_channel_shutdown(ch);
	if (ch->ka_started)
		pthread_join(ch->ka_thread, NULL);
	/* Every thread first: one that fails tells the peer on stream 0
	 * (send_error_frame), which must not be freed under it. */
	for (unsigned i = 0; i <= ch->nstreams; i++)
		if (ch->s[i].thread_started)
			pthread_join(ch->s[i].thread, NULL);
	for (unsigned i = 0; i <= ch->nstreams; i++) {
		struct stream *s = &ch->s[i];

		tp_conn_dispose(&s->conn);
		pthread_mutex_destroy(&s->conn.ssl_lock);
		pthread_mutex_destroy(&s->wlock);
		free(s->out);
		free(s->in);
		free(s->scratch);
		for (unsigned k = 0; k < TX_DEPTH; k++)
			free(s->items[k].batch.data);
	}
	free(ch->s);
	pthread_mutex_destroy(&ch->lock);
	pthread_cond_destroy(&ch->cond);
	free(ch);
}

/* ---- HELLO ------------------------------------------------------------- */


static void put_hello(uint8_t *p, const struct tp_hello *h)
{
	tp_put_header(p, TP_HELLO, TP_HELLO_LEN);
	p += TP_HDR_LEN;
	memset(p, 0, TP_HELLO_LEN);
	memcpy(p, TP_HELLO_MAGIC, sizeof(TP_HELLO_MAGIC));
	pvm_put_le16(p + 8, h->vmin);
	pvm_put_le16(p + 10, h->vmax);
	pvm_put_le16(p + 12, h->idx);
	pvm_put_le16(p + 14, h->count);
	pvm_put_le32(p + 16, h->flags);
	/* p+20: reserved u32 */
	memcpy(p + 24, h->id, TP_HELLO_ID_LEN);
}

int tp_parse_hello(const uint8_t *p, struct tp_hello *h, const char **why)
{
	if (memcmp(p, TP_HELLO_MAGIC, sizeof(TP_HELLO_MAGIC)) != 0) {
		*why = "HELLO magic is wrong (not a pvmig transport peer)";
		return -EPROTO;
	}
	h->vmin = pvm_get_le16(p + 8);
	h->vmax = pvm_get_le16(p + 10);
	h->idx = pvm_get_le16(p + 12);
	h->count = pvm_get_le16(p + 14);
	h->flags = pvm_get_le32(p + 16);
	memcpy(h->id, p + 24, TP_HELLO_ID_LEN);
	if (h->vmin > PVM_TP_VERSION || h->vmax < PVM_TP_VERSION ||
	    h->vmin > h->vmax) {
		*why = "no common protocol version";
		return -EPROTONOSUPPORT;
	}
	if (h->count == 0 || h->count > PVM_TP_STREAMS_MAX || h->idx > h->count) {
		*why = "HELLO stream index/count out of range";
		return -EPROTO;
	}
	return 0;
}

int pvm_transport_connect(const char *host, uint16_t port,
			  struct pvm_tls_ctx *tls,
			  const struct pvm_channel_opts *opts,
			  struct pvm_channel **out)
{
	unsigned n = opts->streams ? opts->streams : PVM_TP_STREAMS_DEFAULT;
	struct pvm_channel *ch;
	struct tp_hello h = { PVM_TP_VERSION, PVM_TP_VERSION, 0, 0, 0, { 0 } };
	int rc = 0;

	*out = NULL;
	if (n > PVM_TP_STREAMS_MAX) {
		pvm_err("transport: %u streams requested, at most %u", n,
			PVM_TP_STREAMS_MAX);
		return -EINVAL;
	}
	ch = channel_new(opts, n, true);
	if (!ch)
		return -ENOMEM;
	snprintf(ch->peer, sizeof(ch->peer), "%s:%u", host, port);
	if (RAND_bytes(h.id, TP_HELLO_ID_LEN) != 1) {
		rc = -EIO;
		goto out_close;
	}
	h.count = (uint16_t)n;
	h.flags = ch->opts.compress ? TP_HELLO_F_COMPRESS : 0;
	for (unsigned i = 0; i <= n; i++) {
		struct stream *s = &ch->s[i];
		uint8_t buf[TP_HDR_LEN + TP_HELLO_LEN];
		uint16_t type;
		uint32_t len;
		char why[320];
		const char *bad;

		if (opts->refusal && opts->refusal_len)
			opts->refusal[0] = '\0';
		rc = tp_conn_connect(&s->conn, tls, host, port,
				     ch->opts.peer_name,
				     ch->opts.timeout_ms < HANDSHAKE_MS_MAX ?
					     ch->opts.timeout_ms : HANDSHAKE_MS_MAX,
				     why, sizeof(why));
		if (rc) {
			pvm_err("transport: cannot open stream %u to %s:%u: %s",
				i, host, port, why);
			goto out_close;
		}
		h.idx = (uint16_t)i;
		put_hello(buf, &h);
		rc = tp_conn_write(&s->conn, buf, sizeof(buf), ch->opts.timeout_ms,
				   NULL, why, sizeof(why));
		if (!rc)
			rc = tp_conn_read(&s->conn, buf, TP_HDR_LEN,
					  ch->opts.timeout_ms, NULL, why,
					  sizeof(why));
		if (rc) {
			pvm_err("transport: %s:%u stream %u: %s (did the peer refuse our certificate?)",
				host, port, i, why);
			goto out_close;
		}
		if (tp_parse_header(buf, &type, &len, &bad) == 0 &&
		    type == TP_ERROR) {
			const char *pwhy = NULL;

			ch->nstreams = i; /* for the error path's shutdown */
			rc = peer_error(s, len);
			ch->nstreams = n;
			pvm_channel_error(ch, &pwhy);
			if (pwhy && !strncmp(pwhy, PEER_ERROR, strlen(PEER_ERROR)))
				pwhy += strlen(PEER_ERROR); /* the peer's words */
			if (opts->refusal && opts->refusal_len && pwhy)
				snprintf(opts->refusal, opts->refusal_len, "%s",
					 pwhy);
			goto out_close;
		}
		if (tp_parse_header(buf, &type, &len, &bad) ||
		    type != TP_HELLO_ACK || len != TP_HELLO_ACK_LEN ||
		    tp_conn_read(&s->conn, buf, len, ch->opts.timeout_ms, NULL,
				 why, sizeof(why))) {
			pvm_err("transport: %s:%u stream %u: bad HELLO_ACK",
				host, port, i);
			rc = -EPROTO;
			goto out_close;
		}
		if (pvm_get_le16(buf) != PVM_TP_VERSION) {
			pvm_err("transport: %s:%u chose protocol version %u, we speak %u",
				host, port, pvm_get_le16(buf), PVM_TP_VERSION);
			rc = -EPROTONOSUPPORT;
			goto out_close;
		}
		atomic_store(&s->last_write_ms, pvm_now_ms());
	}
	snprintf(ch->peer, sizeof(ch->peer), "%s (%s:%u)", ch->s[0].conn.peer.cn,
		 host, port);
	rc = channel_start(ch);
	if (rc)
		goto out_close;
	*out = ch;
	return 0;

out_close:
	pvm_channel_close(ch);
	return rc;
}

/* ---- adopting accepted connections (listener.c) ------------------------ */

int tp_channel_adopt(const struct pvm_channel_opts *opts, unsigned count,
		     struct tp_conn *conns, const char *cn,
		     struct pvm_channel **out)
{
	struct pvm_channel *ch = channel_new(opts, count, false);
	int rc;

	*out = NULL;
	if (!ch)
		return -ENOMEM;
	for (unsigned i = 0; i <= count; i++) {
		pthread_mutex_destroy(&ch->s[i].conn.ssl_lock);
		ch->s[i].conn = conns[i];
		atomic_store(&ch->s[i].last_write_ms, pvm_now_ms());
	}
	snprintf(ch->peer, sizeof(ch->peer), "%s (%s)", cn, conns[0].peer.addr);
	rc = channel_start(ch);
	if (rc) {
		pvm_channel_close(ch);
		return rc;
	}
	*out = ch;
	return 0;
}

/* ---- introspection ----------------------------------------------------- */

void pvm_channel_stats(const struct pvm_channel *ch,
		       struct pvm_channel_stats *out)
{
	struct pvm_channel *m = (struct pvm_channel *)ch;

	out->pages = atomic_load(&m->st_pages);
	out->zero_pages = atomic_load(&m->st_zero);
	out->raw_bytes = atomic_load(&m->st_raw);
	out->wire_bytes = atomic_load(&m->st_wire);
	out->batches_raw = atomic_load(&m->st_braw);
	out->batches_lz4 = atomic_load(&m->st_blz4);
}

unsigned pvm_channel_streams(const struct pvm_channel *ch)
{
	return ch->nstreams;
}

const char *pvm_channel_peer(const struct pvm_channel *ch)
{
	return ch->peer;
}

const struct pvm_peer *pvm_channel_peer_id(const struct pvm_channel *ch)
{
	return &ch->s[0].conn.peer;
}
