/*
 * Channel tests over real TLS on loopback: ordering across parallel
 * streams, both message directions, compression on/off, and every bad input
 * the transport issue lists (wrong CA, expired certificate, wrong name,
 * plaintext client, over-long and truncated frames, flipped bytes inside
 * TLS, a stalled peer, a peer that stops reading, a killed peer, cancel).
 * Timeouts are configuration here, never assertions.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "transport/internal.h"

static char dir[256];

/* ---- log capture ------------------------------------------------------- */

static pthread_mutex_t logbuf_lock = PTHREAD_MUTEX_INITIALIZER;
static char logbuf[1 << 16];
static size_t loglen;

static void sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
	size_t n = strlen(line);

	pthread_mutex_lock(&logbuf_lock);
	if (loglen + n + 2 < sizeof(logbuf)) {
		memcpy(logbuf + loglen, line, n);
		loglen += n;
		logbuf[loglen++] = '\n';
		logbuf[loglen] = '\0';
	}
	pthread_mutex_unlock(&logbuf_lock);
	if (getenv("PVM_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", line);
}

static bool log_has(const char *s)
{
	bool r;

	pthread_mutex_lock(&logbuf_lock);
	r = strstr(logbuf, s) != NULL;
	pthread_mutex_unlock(&logbuf_lock);
	return r;
}

static void log_reset(void)
{
	pthread_mutex_lock(&logbuf_lock);
	loglen = 0;
	logbuf[0] = '\0';
	pthread_mutex_unlock(&logbuf_lock);
}

/* ---- fixtures ---------------------------------------------------------- */

static struct pvm_tls_ctx *tls_for(const char *d, const char *host)
{
	char ca[512], cert[512], key[512];
	struct pvm_tls_files f = { ca, cert, key, NULL };
	struct pvm_tls_ctx *t = NULL;

	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/%s.pem", d, host);
	snprintf(key, sizeof(key), "%s/%s.key", d, host);
	assert_int_equal(pvm_tls_ctx_new(&f, &t), 0);
	return t;
}

static int group_setup(void **state)
{
	static const char *const hosts[] = { "src", "dst", "allowed" };
	static const char *const other[] = { "src", "dst" };
	static const char *const old[] = { "old" };
	char sub[300];

	pvm_log_set_sink(sink, NULL);
	pvm_log_set_level(PVM_LOG_DEBUG);
	snprintf(dir, sizeof(dir), "/tmp/pvmig-test-channel.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	if (pvm_tls_init_dir(dir, hosts, 3, 0, 30) ||
	    pvm_tls_init_dir(dir, old, 1, -10, 5))
		return -1;
	snprintf(sub, sizeof(sub), "%s/other", dir);
	return pvm_tls_init_dir(sub, other, 2, 0, 30) ? -1 : 0;
}

static int group_teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

struct acceptor {
	struct pvm_listener *l;
	struct pvm_tls_ctx *tls;
	struct pvm_channel_opts opts;
	unsigned timeout_ms;
	int rc;
	struct pvm_channel *ch;
	pthread_t thr;
};

static void *accept_thread(void *arg)
{
	struct acceptor *a = arg;

	a->rc = pvm_transport_accept(a->l, a->tls, &a->opts, a->timeout_ms,
				     &a->ch);
	return NULL;
}

/* An acceptor thread presenting the certificate @cert of the main CA. */
static void acceptor_start_as(struct acceptor *a, const char *cert,
			      pvm_tp_pages_fn fn, void *ctx, unsigned timeout_ms)
{
	memset(a, 0, sizeof(*a));
	assert_int_equal(pvm_transport_listen("127.0.0.1", 0, &a->l), 0);
	a->tls = tls_for(dir, cert);
	pvm_channel_opts_defaults(&a->opts);
	a->opts.on_pages = fn;
	a->opts.ctx = ctx;
	a->opts.timeout_ms = 2000;
	a->timeout_ms = timeout_ms;
	pthread_create(&a->thr, NULL, accept_thread, a);
}

static void acceptor_start(struct acceptor *a, pvm_tp_pages_fn fn, void *ctx,
			   unsigned timeout_ms)
{
	acceptor_start_as(a, "dst", fn, ctx, timeout_ms);
}

static void acceptor_join(struct acceptor *a)
{
	pthread_join(a->thr, NULL);
}

static void acceptor_dispose(struct acceptor *a)
{
	pvm_channel_close(a->ch);
	pvm_listener_close(a->l);
	pvm_tls_ctx_free(a->tls);
}

/* ---- the receiving "guest memory" -------------------------------------- */

#define NPAGES 1536u

struct mem {
	uint8_t *pages;
	_Atomic uint64_t delivered;
	atomic_bool block; /* on_pages waits while set */
};

static int mem_pages(void *ctx, const uint64_t *pfns,
		     const uint8_t *const *pages, size_t n)
{
	struct mem *m = ctx;

	while (atomic_load(&m->block))
		usleep(1000);
	for (size_t i = 0; i < n; i++) {
		if (pfns[i] >= NPAGES)
			return -ERANGE;
		if (pages[i])
			memcpy(m->pages + pfns[i] * PVM_PAGE_SIZE, pages[i],
			       PVM_PAGE_SIZE);
		else
			memset(m->pages + pfns[i] * PVM_PAGE_SIZE, 0,
			       PVM_PAGE_SIZE);
	}
	atomic_fetch_add(&m->delivered, n);
	return 0;
}

/* Content of page @pfn in round @r: zero, compressible or random. */
static void page_for(uint64_t pfn, unsigned r, uint8_t *p)
{
	unsigned kind = (unsigned)((pfn + r) % 3);
	uint64_t x = pfn * 2654435761u + r * 40503u + 1;

	if (kind == 0) {
		memset(p, 0, PVM_PAGE_SIZE);
		return;
	}
	for (size_t i = 0; i < PVM_PAGE_SIZE; i += 8) {
		uint64_t v;

		if (kind == 1) {
			v = pfn << 16 | r;
		} else {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			v = x;
		}
		memcpy(p + i, &v, 8);
	}
}

static void send_round(struct pvm_channel *ch, unsigned r, size_t npages)
{
	uint8_t *buf = malloc(64 * PVM_PAGE_SIZE);
	uint64_t pfns[64];
	const uint8_t *ptrs[64];

	for (size_t base = 0; base < npages; base += 64) {
		size_t n = npages - base < 64 ? npages - base : 64;

		for (size_t i = 0; i < n; i++) {
			pfns[i] = base + i;
			ptrs[i] = buf + i * PVM_PAGE_SIZE;
			page_for(base + i, r, buf + i * PVM_PAGE_SIZE);
		}
		assert_int_equal(pvm_channel_send_pages(ch, pfns, ptrs, n), 0);
	}
	free(buf);
}

static void check_round(struct mem *m, unsigned r)
{
	uint8_t want[PVM_PAGE_SIZE];

	for (uint64_t pfn = 0; pfn < NPAGES; pfn++) {
		page_for(pfn, r, want);
		if (memcmp(m->pages + pfn * PVM_PAGE_SIZE, want, PVM_PAGE_SIZE))
			fail_msg("page %llu does not hold round %u's copy",
				 (unsigned long long)pfn, r);
	}
}

struct sender_args {
	struct pvm_channel *ch;
	unsigned rounds;
	int rc;
};

/* The source: rounds of every page then a message; reads a reply after
 * each message; then finish. */
static void *sender_thread(void *arg)
{
	struct sender_args *s = arg;
	char msg[32];

	for (unsigned r = 1; r <= s->rounds; r++) {
		void *reply;
		size_t len;

		send_round(s->ch, r, NPAGES);
		snprintf(msg, sizeof(msg), "round %u", r);
		s->rc = pvm_channel_send_msg(s->ch, msg, strlen(msg) + 1);
		if (s->rc)
			return NULL;
		s->rc = pvm_channel_recv_msg(s->ch, &reply, &len);
		if (s->rc)
			return NULL;
		if (len != strlen(msg) + 5 || strncmp(reply, "ack ", 4) ||
		    strcmp((char *)reply + 4, msg))
			s->rc = -EPROTO;
		free(reply);
		if (s->rc)
			return NULL;
	}
	s->rc = pvm_channel_finish(s->ch);
	return NULL;
}

static void run_rounds(unsigned streams, bool compress, unsigned rounds,
		       struct pvm_channel_stats *tx_stats)
{
	struct acceptor a;
	struct mem m = { .pages = calloc(NPAGES, PVM_PAGE_SIZE) };
	struct pvm_channel_opts o;
	struct sender_args s = { .rounds = rounds };
	struct pvm_tls_ctx *tls = tls_for(dir, "src");
	pthread_t st;

	acceptor_start(&a, mem_pages, &m, 10000);
	pvm_channel_opts_defaults(&o);
	o.streams = streams;
	o.compress = compress;
	o.peer_name = "dst";
	assert_int_equal(pvm_transport_connect("127.0.0.1",
					       pvm_listener_port(a.l), tls, &o,
					       &s.ch), 0);
	acceptor_join(&a);
	assert_int_equal(a.rc, 0);
	assert_int_equal(pvm_channel_streams(a.ch), streams);
	assert_non_null(strstr(pvm_channel_peer(a.ch), "src"));
	pthread_create(&st, NULL, sender_thread, &s);

	for (unsigned r = 1; r <= rounds; r++) {
		char want[32], reply[40];
		void *msg;
		size_t len;

		assert_int_equal(pvm_channel_recv_msg(a.ch, &msg, &len), 0);
		snprintf(want, sizeof(want), "round %u", r);
		assert_string_equal(msg, want);
		/* Every page sent before the message, and none after it. */
		check_round(&m, r);
		snprintf(reply, sizeof(reply), "ack %s", want);
		free(msg);
		assert_int_equal(pvm_channel_send_msg(a.ch, reply,
						      strlen(reply) + 1), 0);
	}
	{
		void *msg;
		size_t len;

		assert_int_equal(pvm_channel_recv_msg(a.ch, &msg, &len),
				 -ESHUTDOWN);
		assert_null(msg);
	}
	pthread_join(st, NULL);
	assert_int_equal(s.rc, 0);
	assert_int_equal(atomic_load(&m.delivered), (uint64_t)NPAGES * rounds);
	pvm_channel_stats(s.ch, tx_stats);
	assert_int_equal(tx_stats->pages, (uint64_t)NPAGES * rounds);
	assert_int_equal(pvm_channel_error(s.ch, NULL), 0);
	assert_int_equal(pvm_channel_error(a.ch, NULL), 0);
	pvm_channel_close(s.ch);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
	free(m.pages);
}

static void test_rounds_ordered_across_streams(void **state)
{
	struct pvm_channel_stats st;

	run_rounds(4, true, 6, &st);
	/* A third of the pages are zero in every round: sent as flags only. */
	assert_int_equal(st.zero_pages, (uint64_t)NPAGES * 6 / 3);
	assert_true(st.batches_lz4 > 0);
	assert_true(st.wire_bytes < st.raw_bytes);
}

static void test_single_stream(void **state)
{
	struct pvm_channel_stats st;

	run_rounds(1, true, 2, &st);
}

static void test_compression_off(void **state)
{
	struct pvm_channel_stats st;

	run_rounds(2, false, 2, &st);
	assert_int_equal(st.batches_lz4, 0);
	assert_true(st.batches_raw > 0);
	/* Zero pages are still elided. */
	assert_true(st.wire_bytes < (uint64_t)NPAGES * 2 * PVM_PAGE_SIZE);
}

/* ---- authentication ---------------------------------------------------- */

/* A client with @cert_dir/@host tries to connect; expect failure on both
 * sides and @server_log in the server's log. */
static void expect_refused(const char *cert_dir, const char *host,
			   const char *server_log, const char *peer_name)
{
	struct acceptor a;
	struct pvm_tls_ctx *tls = tls_for(cert_dir, host);
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;
	int rc;

	log_reset();
	acceptor_start(&a, NULL, NULL, 1500);
	pvm_channel_opts_defaults(&o);
	o.streams = 1;
	o.timeout_ms = 1500;
	o.peer_name = peer_name;
	rc = pvm_transport_connect("127.0.0.1", pvm_listener_port(a.l), tls,
				   &o, &ch);
	acceptor_join(&a);
	assert_true(rc < 0);
	assert_null(ch);
	assert_int_equal(a.rc, -ETIMEDOUT); /* nothing reached the caller */
	assert_null(a.ch);
	if (server_log && !log_has(server_log))
		fail_msg("server log lacks '%s':\n%s", server_log, logbuf);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
}

static void test_client_from_other_ca_refused(void **state)
{
	char other[300];

	snprintf(other, sizeof(other), "%s/other", dir);
	/* tls_for() trusts the main CA, so the client trusts the server but
	 * the server does not know the client's CA. */
	expect_refused(other, "src", "unable to get local issuer certificate",
		       NULL);
	assert_true(log_has("refused connection from 127.0.0.1"));
}

static void test_expired_certificate_refused(void **state)
{
	expect_refused(dir, "old", "certificate has expired", NULL);
}

static void test_wrong_peer_name_refused(void **state)
{
	struct acceptor a;
	struct pvm_tls_ctx *tls = tls_for(dir, "src");
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;

	log_reset();
	acceptor_start(&a, NULL, NULL, 1500);
	pvm_channel_opts_defaults(&o);
	o.streams = 1;
	o.peer_name = "backup-host";
	assert_true(pvm_transport_connect("127.0.0.1", pvm_listener_port(a.l),
					  tls, &o, &ch) < 0);
	assert_true(log_has("expected 'backup-host'"));
	acceptor_join(&a);
	assert_int_equal(a.rc, -ETIMEDOUT);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
}

static void test_server_from_other_ca_refused(void **state)
{
	struct acceptor a;
	struct pvm_tls_ctx *tls = tls_for(dir, "src");
	char other[300], cert[400], key[400], ca[400];
	struct pvm_tls_files f = { ca, cert, key, NULL };
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;

	log_reset();
	acceptor_start(&a, NULL, NULL, 1500);
	/* Swap the server's identity for one from the other CA (which
	 * trusts only its own CA). */
	pvm_tls_ctx_free(a.tls);
	snprintf(other, sizeof(other), "%s/other", dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", other);
	snprintf(cert, sizeof(cert), "%s/dst.pem", other);
	snprintf(key, sizeof(key), "%s/dst.key", other);
	acceptor_join(&a);
	assert_int_equal(pvm_tls_ctx_new(&f, &a.tls), 0);
	pthread_create(&a.thr, NULL, accept_thread, &a);
	pvm_channel_opts_defaults(&o);
	o.streams = 1;
	assert_true(pvm_transport_connect("127.0.0.1", pvm_listener_port(a.l),
					  tls, &o, &ch) < 0);
	assert_true(log_has("peer certificate rejected"));
	acceptor_join(&a);
	assert_int_equal(a.rc, -ETIMEDOUT);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
}

static int raw_connect(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void test_plaintext_client_refused(void **state)
{
	static const char req[] = "HELLO pvmig, plaintext here\r\n\r\n";
	struct acceptor a;
	char buf[4096];
	ssize_t n, total = 0;
	int fd;

	log_reset();
	acceptor_start(&a, NULL, NULL, 1500);
	fd = raw_connect(pvm_listener_port(a.l));
	assert_int_equal(write(fd, req, sizeof(req) - 1), sizeof(req) - 1);
	/* The server answers with at most a TLS alert, then closes. */
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += n;
	assert_true(total < 64);
	close(fd);
	acceptor_join(&a);
	assert_int_equal(a.rc, -ETIMEDOUT);
	assert_true(log_has("TLS handshake failed"));
	acceptor_dispose(&a);
}

/* ---- a hand-driven peer for hostile frames ----------------------------- */

struct raw_peer {
	unsigned n; /* data streams */
	struct tp_conn c[3];
};

static void raw_hello(uint8_t *buf, uint16_t vmin, uint16_t vmax,
		      uint16_t idx, uint16_t count, const uint8_t id[16])
{
	tp_put_header(buf, TP_HELLO, TP_HELLO_LEN);
	memset(buf + TP_HDR_LEN, 0, TP_HELLO_LEN);
	memcpy(buf + TP_HDR_LEN, "PVMIGTP", 8);
	pvm_put_le16(buf + TP_HDR_LEN + 8, vmin);
	pvm_put_le16(buf + TP_HDR_LEN + 10, vmax);
	pvm_put_le16(buf + TP_HDR_LEN + 12, idx);
	pvm_put_le16(buf + TP_HDR_LEN + 14, count);
	memcpy(buf + TP_HDR_LEN + 24, id, 16);
}

/* Opens a complete channel by hand: n data streams. */
static void raw_open(struct raw_peer *p, uint16_t port, unsigned n,
		     struct pvm_tls_ctx *tls)
{
	uint8_t id[16], buf[TP_HDR_LEN + TP_HELLO_LEN];
	char why[256];

	for (unsigned i = 0; i < 16; i++)
		id[i] = (uint8_t)(rand() & 0xff);
	p->n = n;
	for (unsigned i = 0; i <= n; i++) {
		tp_conn_init(&p->c[i]);
		assert_int_equal(tp_conn_connect(&p->c[i], tls, "127.0.0.1",
						 port, NULL, 2000, why,
						 sizeof(why)), 0);
		raw_hello(buf, 1, 1, (uint16_t)i, (uint16_t)n, id);
		assert_int_equal(tp_conn_write(&p->c[i], buf, sizeof(buf), 2000,
					       NULL, why, sizeof(why)), 0);
		assert_int_equal(tp_conn_read(&p->c[i], buf,
					      TP_HDR_LEN + TP_HELLO_ACK_LEN, 2000,
					      NULL, why, sizeof(why)), 0);
		assert_int_equal(pvm_get_le16(buf), TP_HELLO_ACK);
	}
}

static void raw_close(struct raw_peer *p)
{
	for (unsigned i = 0; i <= p->n; i++)
		tp_conn_dispose(&p->c[i]);
}

/* Reads frames on @c until an ERROR frame; returns its text. */
static void raw_expect_error(struct tp_conn *c, char *text, size_t tlen)
{
	char why[256];

	for (;;) {
		uint8_t h[TP_HDR_LEN], body[8 + TP_ERROR_TEXT_MAX + 1];
		uint32_t len;

		assert_int_equal(tp_conn_read(c, h, sizeof(h), 3000, NULL, why,
					      sizeof(why)), 0);
		len = pvm_get_le32(h + 4);
		assert_true(len <= sizeof(body) - 1);
		assert_int_equal(tp_conn_read(c, body, len, 3000, NULL, why,
					      sizeof(why)), 0);
		if (pvm_get_le16(h) == TP_ERROR) {
			body[len] = '\0';
			snprintf(text, tlen, "%s", (char *)body + 8);
			return;
		}
		assert_int_equal(pvm_get_le16(h), TP_KEEPALIVE);
	}
}

/* Sets up an acceptor and a raw peer with one data stream. */
static void raw_setup(struct acceptor *a, struct raw_peer *p, struct mem *m,
		      unsigned timeout_ms, struct pvm_tls_ctx **tls)
{
	log_reset();
	acceptor_start(a, mem_pages, m, 5000);
	a->opts.timeout_ms = timeout_ms;
	*tls = tls_for(dir, "src");
	raw_open(p, pvm_listener_port(a->l), 1, *tls);
	acceptor_join(a);
	assert_int_equal(a->rc, 0);
}

static void test_frame_length_over_bound(void **state)
{
	struct acceptor a;
	struct raw_peer p;
	struct mem m = { .pages = calloc(NPAGES, PVM_PAGE_SIZE) };
	struct pvm_tls_ctx *tls;
	uint8_t h[TP_HDR_LEN];
	char why[256], text[300];
	const char *cwhy;
	void *msg;
	size_t len;

	raw_setup(&a, &p, &m, 3000, &tls);
	tp_put_header(h, TP_PAGES, 0xfffffff0u);
	assert_int_equal(tp_conn_write(&p.c[1], h, sizeof(h), 2000, NULL, why,
				       sizeof(why)), 0);
	assert_int_equal(pvm_channel_recv_msg(a.ch, &msg, &len), -EBADMSG);
	assert_int_equal(pvm_channel_error(a.ch, &cwhy), -EBADMSG);
	assert_non_null(strstr(cwhy, "frame length exceeds the bound"));
	/* The peer is told why. */
	raw_expect_error(&p.c[0], text, sizeof(text));
	assert_non_null(strstr(text, "frame length exceeds the bound"));
	assert_int_equal(atomic_load(&m.delivered), 0);
	raw_close(&p);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
	free(m.pages);
}

static void test_truncated_frame(void **state)
{
	struct acceptor a;
	struct raw_peer p;
	struct mem m = { .pages = calloc(NPAGES, PVM_PAGE_SIZE) };
	struct pvm_tls_ctx *tls;
	uint8_t f[TP_HDR_LEN + 100];
	char why[256];
	const char *cwhy;
	void *msg;
	size_t len;

	raw_setup(&a, &p, &m, 3000, &tls);
	memset(f, 0, sizeof(f));
	tp_put_header(f, TP_PAGES, 5000);
	assert_int_equal(tp_conn_write(&p.c[1], f, sizeof(f), 2000, NULL, why,
				       sizeof(why)), 0);
	raw_close(&p); /* gone mid-frame */
	assert_true(pvm_channel_recv_msg(a.ch, &msg, &len) < 0);
	assert_true(pvm_channel_error(a.ch, &cwhy) < 0);
	assert_true(strstr(cwhy, "mid-frame") || strstr(cwhy, "closed"));
	assert_int_equal(atomic_load(&m.delivered), 0);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
	free(m.pages);
}

static void test_stalled_peer_times_out(void **state)
{
	struct acceptor a;
	struct raw_peer p;
	struct mem m = { .pages = calloc(NPAGES, PVM_PAGE_SIZE) };
	struct pvm_tls_ctx *tls;
	const char *cwhy;
	void *msg;
	size_t len;

	/* The raw peer sends nothing at all, not even keepalives. */
	raw_setup(&a, &p, &m, 400, &tls);
	assert_int_equal(pvm_channel_recv_msg(a.ch, &msg, &len), -ETIMEDOUT);
	pvm_channel_error(a.ch, &cwhy);
	assert_non_null(strstr(cwhy, "peer silent"));
	raw_close(&p);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
	free(m.pages);
}

static void test_version_mismatch_refused(void **state)
{
	struct acceptor a;
	struct tp_conn c;
	struct pvm_tls_ctx *tls = tls_for(dir, "src");
	uint8_t buf[TP_HDR_LEN + TP_HELLO_LEN], id[16] = { 1 };
	char why[256], text[300];

	log_reset();
	acceptor_start(&a, NULL, NULL, 1500);
	tp_conn_init(&c);
	assert_int_equal(tp_conn_connect(&c, tls, "127.0.0.1",
					 pvm_listener_port(a.l), NULL, 2000,
					 why, sizeof(why)), 0);
	raw_hello(buf, 7, 9, 0, 1, id);
	assert_int_equal(tp_conn_write(&c, buf, sizeof(buf), 2000, NULL, why,
				       sizeof(why)), 0);
	raw_expect_error(&c, text, sizeof(text));
	assert_string_equal(text, "no common protocol version");
	tp_conn_dispose(&c);
	acceptor_join(&a);
	assert_int_equal(a.rc, -ETIMEDOUT);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
}

/* ---- a byte-flipping proxy --------------------------------------------- */

struct proxy {
	int lfd;
	uint16_t port, target;
	unsigned conns;
	size_t flip_at; /* client->server byte offset on connection 1 */
	pthread_t thr;
	atomic_bool stop;
};

static void *proxy_thread(void *arg)
{
	struct proxy *px = arg;
	int cfd[4], sfd[4];
	size_t seen[4] = { 0 };
	unsigned have = 0;
	struct pollfd pf[9];

	/* Connections arrive one after another, each after the previous one's
	 * handshake: accept them from the same poll loop that pumps bytes. */
	while (!atomic_load(&px->stop)) {
		unsigned np = 0;

		for (unsigned i = 0; i < have; i++) {
			pf[np++] = (struct pollfd){ .fd = cfd[i], .events = POLLIN };
			pf[np++] = (struct pollfd){ .fd = sfd[i], .events = POLLIN };
		}
		pf[np++] = (struct pollfd){ .fd = have < px->conns ? px->lfd : -1,
					    .events = POLLIN };
		if (poll(pf, np, 100) <= 0)
			continue;
		if (pf[np - 1].revents & POLLIN) {
			cfd[have] = accept(px->lfd, NULL, NULL);
			sfd[have] = raw_connect(px->target);
			have++;
			continue;
		}
		for (unsigned i = 0; i < np - 1; i++) {
			char buf[65536];
			unsigned c = i / 2;
			bool up = (i % 2) == 0;
			ssize_t n;

			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(pf[i].fd, buf, sizeof(buf));
			if (n <= 0) {
				atomic_store(&px->stop, true);
				break;
			}
			if (up && c == 1 && seen[c] <= px->flip_at &&
			    px->flip_at < seen[c] + (size_t)n)
				buf[px->flip_at - seen[c]] ^= 0x01;
			if (up)
				seen[c] += (size_t)n;
			if (write(up ? sfd[c] : cfd[c], buf, (size_t)n) != n) {
				atomic_store(&px->stop, true);
				break;
			}
		}
	}
	for (unsigned i = 0; i < have; i++) {
		close(cfd[i]);
		close(sfd[i]);
	}
	return NULL;
}

static void test_flipped_byte_inside_tls(void **state)
{
	struct acceptor a;
	struct mem m = { .pages = calloc(NPAGES, PVM_PAGE_SIZE) };
	struct pvm_tls_ctx *tls = tls_for(dir, "src");
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;
	struct proxy px = { .conns = 2, .flip_at = 200000 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	const char *cwhy;
	void *msg;
	size_t len;
	int rc = 0;

	log_reset();
	acceptor_start(&a, mem_pages, &m, 5000);
	px.target = pvm_listener_port(a.l);
	px.lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(px.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(px.lfd, 4), 0);
	getsockname(px.lfd, (struct sockaddr *)&sa, &sl);
	px.port = ntohs(sa.sin_port);
	pthread_create(&px.thr, NULL, proxy_thread, &px);

	pvm_channel_opts_defaults(&o);
	o.streams = 1;
	o.compress = false;
	o.timeout_ms = 3000;
	assert_int_equal(pvm_transport_connect("127.0.0.1", px.port, tls, &o,
					       &ch), 0);
	acceptor_join(&a);
	assert_int_equal(a.rc, 0);
	/* ~6 MB of pages: the flip at 200 kB lands inside page data. */
	for (unsigned r = 1; r <= 4 && !rc; r++) {
		uint8_t *buf = malloc(PVM_PAGE_SIZE);
		for (uint64_t pfn = 0; pfn < NPAGES && !rc; pfn++) {
			const uint8_t *p = buf;

			page_for(pfn, r, buf);
			buf[0] |= 1; /* never a zero page */
			rc = pvm_channel_send_pages(ch, &pfn, &p, 1);
		}
		free(buf);
		if (!rc)
			rc = pvm_channel_send_msg(ch, "x", 1);
	}
	assert_int_equal(pvm_channel_recv_msg(a.ch, &msg, &len), -EBADMSG);
	pvm_channel_error(a.ch, &cwhy);
	assert_non_null(strstr(cwhy, "failed authentication"));
	/* The sender sees it too: either already, or when it finishes. */
	if (!rc)
		rc = pvm_channel_finish(ch);
	assert_true(rc < 0);
	/* Nothing after the flipped record was delivered. */
	assert_true(atomic_load(&m.delivered) < 4 * NPAGES);
	atomic_store(&px.stop, true);
	pthread_join(px.thr, NULL);
	close(px.lfd);
	pvm_channel_close(ch);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
	free(m.pages);
}

/* ---- peers that stop ----------------------------------------------------- */

static void test_peer_stops_reading(void **state)
{
	struct acceptor a;
	struct mem m = { .pages = calloc(NPAGES, PVM_PAGE_SIZE) };
	struct pvm_tls_ctx *tls = tls_for(dir, "src");
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;
	uint8_t *buf = malloc(PVM_PAGE_SIZE);
	const char *cwhy;
	int rc = 0;

	log_reset();
	atomic_store(&m.block, true); /* the receiver's consumer hangs */
	acceptor_start(&a, mem_pages, &m, 5000);
	pvm_channel_opts_defaults(&o);
	o.streams = 1;
	o.compress = false;
	o.timeout_ms = 500;
	assert_int_equal(pvm_transport_connect("127.0.0.1",
					       pvm_listener_port(a.l), tls, &o,
					       &ch), 0);
	acceptor_join(&a);
	assert_int_equal(a.rc, 0);
	/* Random pages until the socket buffers are full and the sender
	 * gives up; bounded at 1 GiB so the test always ends. */
	for (uint64_t i = 0; i < (1u << 18) && !rc; i++) {
		uint64_t pfn = i % NPAGES;
		const uint8_t *p = buf;

		page_for(pfn, (unsigned)(i / NPAGES) * 3 + 2 - (unsigned)(pfn % 3), buf);
		buf[0] |= 1;
		rc = pvm_channel_send_pages(ch, &pfn, &p, 1);
	}
	assert_int_equal(rc, -ETIMEDOUT);
	pvm_channel_error(ch, &cwhy);
	assert_non_null(strstr(cwhy, "peer stopped reading"));
	atomic_store(&m.block, false);
	/* The receiving end learns of it as well. */
	{
		void *msg;
		size_t len;

		assert_true(pvm_channel_recv_msg(a.ch, &msg, &len) < 0);
	}
	pvm_channel_close(ch);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
	free(m.pages);
	free(buf);
}

static void test_killed_sender(void **state)
{
	struct pvm_listener *l;
	struct pvm_tls_ctx *tls;
	struct mem m = { .pages = calloc(NPAGES, PVM_PAGE_SIZE) };
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;
	const char *cwhy;
	void *msg;
	size_t len;
	pid_t pid;
	int status;

	log_reset();
	assert_int_equal(pvm_transport_listen("127.0.0.1", 0, &l), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The source: sends pages until it is killed. */
		struct pvm_tls_ctx *t = tls_for(dir, "src");
		struct pvm_channel *c = NULL;
		uint8_t *buf = malloc(PVM_PAGE_SIZE);

		pvm_channel_opts_defaults(&o);
		if (pvm_transport_connect("127.0.0.1", pvm_listener_port(l), t,
					  &o, &c))
			_exit(3);
		for (unsigned r = 1;; r++) {
			for (uint64_t pfn = 0; pfn < NPAGES; pfn++) {
				const uint8_t *p = buf;

				page_for(pfn, r, buf);
				if (pvm_channel_send_pages(c, &pfn, &p, 1))
					_exit(4);
			}
			if (pvm_channel_send_msg(c, "r", 1))
				_exit(5);
		}
	}
	tls = tls_for(dir, "dst");
	pvm_channel_opts_defaults(&o);
	o.on_pages = mem_pages;
	o.ctx = &m;
	o.timeout_ms = 5000;
	assert_int_equal(pvm_transport_accept(l, tls, &o, 5000, &ch), 0);
	assert_int_equal(pvm_channel_recv_msg(ch, &msg, &len), 0);
	free(msg);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	for (;;) {
		int rc = pvm_channel_recv_msg(ch, &msg, &len);

		if (rc == 0) {
			free(msg);
			continue;
		}
		/* Not a clean close: the peer never said CLOSE. */
		assert_int_not_equal(rc, -ESHUTDOWN);
		break;
	}
	assert_true(pvm_channel_error(ch, &cwhy) < 0);
	assert_true(strstr(cwhy, "closed by peer") || strstr(cwhy, "reset"));
	pvm_channel_close(ch);
	pvm_listener_close(l);
	pvm_tls_ctx_free(tls);
	free(m.pages);
}

static void test_killed_receiver(void **state)
{
	struct pvm_listener *l;
	struct pvm_tls_ctx *tls;
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;
	uint8_t *buf = malloc(PVM_PAGE_SIZE);
	const char *cwhy;
	pid_t pid;
	int status, rc = 0;

	assert_int_equal(pvm_transport_listen("127.0.0.1", 0, &l), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct mem cm = { .pages = calloc(NPAGES, PVM_PAGE_SIZE) };
		struct pvm_tls_ctx *t = tls_for(dir, "dst");
		struct pvm_channel *c = NULL;
		void *msg;
		size_t len;

		pvm_channel_opts_defaults(&o);
		o.on_pages = mem_pages;
		o.ctx = &cm;
		if (pvm_transport_accept(l, t, &o, 5000, &c))
			_exit(3);
		while (pvm_channel_recv_msg(c, &msg, &len) == 0)
			free(msg);
		_exit(0);
	}
	tls = tls_for(dir, "src");
	pvm_channel_opts_defaults(&o);
	o.timeout_ms = 5000;
	assert_int_equal(pvm_transport_connect("127.0.0.1",
					       pvm_listener_port(l), tls, &o,
					       &ch), 0);
	for (unsigned r = 1; r < 1000 && !rc; r++) {
		for (uint64_t pfn = 0; pfn < NPAGES && !rc; pfn++) {
			const uint8_t *p = buf;

			page_for(pfn, r, buf);
			rc = pvm_channel_send_pages(ch, &pfn, &p, 1);
		}
		if (!rc)
			rc = pvm_channel_send_msg(ch, "r", 1);
		if (r == 2) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
		}
	}
	if (!rc)
		rc = pvm_channel_finish(ch);
	assert_true(rc < 0);
	assert_true(pvm_channel_error(ch, &cwhy) < 0);
	pvm_channel_close(ch);
	pvm_listener_close(l);
	pvm_tls_ctx_free(tls);
	free(buf);
}

struct canceller {
	struct pvm_channel *ch;
};

static void *cancel_thread(void *arg)
{
	struct canceller *c = arg;

	usleep(100000);
	pvm_channel_shutdown(c->ch);
	return NULL;
}

static void test_cancel_wakes_receiver(void **state)
{
	struct acceptor a;
	struct pvm_tls_ctx *tls = tls_for(dir, "src");
	struct pvm_channel_opts o;
	struct canceller c;
	pthread_t t;
	void *msg;
	size_t len;

	acceptor_start(&a, NULL, NULL, 5000);
	pvm_channel_opts_defaults(&o);
	o.streams = 1;
	assert_int_equal(pvm_transport_connect("127.0.0.1",
					       pvm_listener_port(a.l), tls, &o,
					       &c.ch), 0);
	acceptor_join(&a);
	pthread_create(&t, NULL, cancel_thread, &c);
	/* Nothing will arrive (keepalives only): only the cancel ends it. */
	assert_int_equal(pvm_channel_recv_msg(c.ch, &msg, &len), -ECANCELED);
	pthread_join(t, NULL);
	pvm_channel_close(c.ch);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
}

/*
 * A peer reached by address: a certificate listing addresses must list
 * that one; one listing none is held to the CA only (with a warning).
 */
static int connect_as(const char *cert, const char *peer_name, bool no_ip_ok)
{
	struct acceptor a;
	struct pvm_tls_ctx *tls = tls_for(dir, "src");
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;
	int rc;

	pvm_tls_ctx_allow_ip_without_san(tls, no_ip_ok);
	acceptor_start_as(&a, cert, NULL, NULL, 1500);
	pvm_channel_opts_defaults(&o);
	o.streams = 1;
	o.peer_name = peer_name;
	rc = pvm_transport_connect("127.0.0.1", pvm_listener_port(a.l), tls,
				   &o, &ch);
	acceptor_join(&a);
	pvm_channel_close(ch);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
	return rc;
}

static void test_ip_peer_name_checked(void **state)
{
	const char *hosts[] = { "ipdst,127.0.0.1,::1", "otherip,127.0.0.2" };

	assert_int_equal(pvm_tls_init_dir(dir, hosts, 2, 0, 30), 0);
	log_reset();
	assert_true(connect_as("otherip", "127.0.0.1", false) < 0);
	assert_true(log_has("does not carry the address 127.0.0.1"));
	assert_int_equal(connect_as("ipdst", "127.0.0.1", false), 0);
	/* A certificate with no address at all: any certificate of the CA
	 * could stand in for the host at that address. Refused... */
	log_reset();
	assert_int_equal(connect_as("dst", "127.0.0.1", false), -EACCES);
	assert_true(log_has("carries no IP address, so it cannot prove it is 127.0.0.1"));
	/* ...unless the operator said so (tls-allow-ip-without-san). */
	log_reset();
	assert_int_equal(connect_as("dst", "127.0.0.1", true), 0);
	assert_true(log_has("carries no IP address: 127.0.0.1 is checked against the CA only"));
}

/* ---- authorization and strangers --------------------------------------- */

/* The listener's authorize hook: only certificates naming "allowed". */
static int only_allowed(void *ctx, const struct pvm_peer *p, char *why,
			size_t len)
{
	int *calls = ctx;

	(*calls)++;
	if (pvm_peer_has_name(p, "allowed"))
		return 0;
	snprintf(why, len, "peer '%s' is not allowed here", pvm_peer_cn(p));
	return -EACCES;
}

static int connect_authz(const char *cert, char *refusal, size_t len)
{
	struct acceptor a;
	struct pvm_tls_ctx *tls = tls_for(dir, cert);
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;
	int calls = 0, rc;

	acceptor_start(&a, NULL, NULL, 1500);
	a.opts.authorize = only_allowed;
	a.opts.authorize_ctx = &calls;
	pvm_channel_opts_defaults(&o);
	o.streams = 2;
	o.refusal = refusal;
	o.refusal_len = len;
	rc = pvm_transport_connect("127.0.0.1", pvm_listener_port(a.l), tls,
				   &o, &ch);
	acceptor_join(&a);
	assert_true(calls >= 1);
	assert_int_equal(!!a.ch, rc == 0);
	pvm_channel_close(ch);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
	return rc;
}

/* A certificate of the CA that the hook refuses gets -EACCES with the
 * reason on its side; the server logs its name and address. */
static void test_authorize_hook(void **state)
{
	char refusal[300] = "x";

	log_reset();
	assert_int_equal(connect_authz("src", refusal, sizeof(refusal)), -EACCES);
	assert_non_null(strstr(refusal, "peer 'src' is not allowed here"));
	assert_true(log_has("refused connection from 127.0.0.1:"));
	assert_true(log_has("('src'): peer 'src' is not allowed here"));
	refusal[0] = 'x';
	assert_int_equal(connect_authz("allowed", refusal, sizeof(refusal)), 0);
	assert_string_equal(refusal, "");
}

/* @n TCP connections to @port that never speak; fds in @fds. */
static void open_idle(uint16_t port, int *fds, unsigned n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port) };

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (unsigned i = 0; i < n; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fds[i] >= 0);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
}

/* Has the server closed @fd within @ms? */
static bool closed_within(int fd, unsigned ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b;

	return poll(&p, 1, (int)ms) == 1 && recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
}

/*
 * Idle TCP connections (no TLS at all) used to hold the one handshake the
 * listener ran at a time for up to 10 s each: three made a real migration
 * fail. Now they wait beside it: a real channel gets through at once.
 */
static void test_idle_connections_do_not_stall(void **state)
{
	struct acceptor a;
	struct pvm_tls_ctx *tls = tls_for(dir, "src");
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;
	int idle[3];
	uint64_t t0;

	acceptor_start(&a, NULL, NULL, 0);
	open_idle(pvm_listener_port(a.l), idle, 3);
	usleep(100 * 1000); /* accepted and in their handshakes */
	pvm_channel_opts_defaults(&o);
	o.streams = 2;
	t0 = pvm_now_ms();
	assert_int_equal(pvm_transport_connect("127.0.0.1", pvm_listener_port(a.l),
					       tls, &o, &ch), 0);
	acceptor_join(&a);
	assert_int_equal(a.rc, 0);
	assert_non_null(a.ch);
	/* The handshake deadline is 2 s (opts.timeout_ms): well under it. */
	assert_true(pvm_now_ms() - t0 < 1500);
	for (unsigned i = 0; i < 3; i++)
		close(idle[i]);
	pvm_channel_close(ch);
	pvm_tls_ctx_free(tls);
	acceptor_dispose(&a);
}

/* The bounds: a fourth idle connection from one address (per_addr 3) is
 * closed unread at once; the others when their deadline (400 ms) passes. */
static void test_stranger_bounds(void **state)
{
	struct pvm_listener *l;
	struct pvm_tls_ctx *tls = tls_for(dir, "dst");
	struct acceptor a;
	int idle[4];
	uint64_t t0;

	log_reset();
	memset(&a, 0, sizeof(a));
	assert_int_equal(pvm_transport_listen("127.0.0.1", 0, &l), 0);
	pvm_listener_set_limits(l, 16, 3, 400);
	a.l = l;
	a.tls = tls;
	pvm_channel_opts_defaults(&a.opts);
	a.timeout_ms = 2000;
	pthread_create(&a.thr, NULL, accept_thread, &a);
	open_idle(pvm_listener_port(l), idle, 3);
	usleep(100 * 1000);
	t0 = pvm_now_ms();
	open_idle(pvm_listener_port(l), idle + 3, 1);
	assert_true(closed_within(idle[3], 1000));
	assert_true(pvm_now_ms() - t0 < 300);
	assert_true(log_has("too many connections from this address in their handshake"));
	for (unsigned i = 0; i < 3; i++)
		assert_true(closed_within(idle[i], 1500));
	assert_true(log_has("TLS handshake timed out after 400 ms"));
	acceptor_join(&a);
	assert_int_equal(a.rc, -ETIMEDOUT);
	for (unsigned i = 0; i < 4; i++)
		close(idle[i]);
	acceptor_dispose(&a);
}

/* tls-crl: a revoked certificate is refused in the handshake, another of
 * the same CA still gets in. */
static void test_revoked_certificate_refused(void **state)
{
	const char *hosts[] = { "revoked", "kept" };
	const char *names[] = { "revoked" };
	char ca[400], cert[400], key[400], crl[400];
	struct pvm_tls_files f = { ca, cert, key, crl };
	struct acceptor a;
	int rc;

	assert_int_equal(pvm_tls_init_dir(dir, hosts, 2, 0, 30), 0);
	assert_int_equal(pvm_tls_revoke(dir, names, 1, 30), 0);
	/* Revoking twice lists it once. */
	assert_int_equal(pvm_tls_revoke(dir, names, 1, 30), 0);
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/dst.pem", dir);
	snprintf(key, sizeof(key), "%s/dst.key", dir);
	snprintf(crl, sizeof(crl), "%s/crl.pem", dir);
	for (int i = 0; i < 2; i++) {
		struct pvm_tls_ctx *tls = tls_for(dir, i ? "kept" : "revoked");
		struct pvm_channel_opts o;
		struct pvm_channel *ch = NULL;

		log_reset();
		memset(&a, 0, sizeof(a));
		assert_int_equal(pvm_transport_listen("127.0.0.1", 0, &a.l), 0);
		assert_int_equal(pvm_tls_ctx_new(&f, &a.tls), 0);
		pvm_channel_opts_defaults(&a.opts);
		a.opts.timeout_ms = 2000;
		a.timeout_ms = 1500;
		pthread_create(&a.thr, NULL, accept_thread, &a);
		pvm_channel_opts_defaults(&o);
		o.streams = 1;
		o.timeout_ms = 1500;
		rc = pvm_transport_connect("127.0.0.1", pvm_listener_port(a.l),
					   tls, &o, &ch);
		acceptor_join(&a);
		if (i == 0) {
			assert_true(rc < 0);
			assert_null(a.ch);
			assert_true(log_has("certificate revoked"));
		} else {
			assert_int_equal(rc, 0);
			assert_non_null(a.ch);
		}
		pvm_channel_close(ch);
		pvm_tls_ctx_free(tls);
		acceptor_dispose(&a);
	}
}

/* A peer that closed its end is seen without waiting, before a send. */
static void test_check_peer_sees_closed_peer(void **state)
{
	struct pvm_listener *l;
	struct pvm_tls_ctx *tls;
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;
	const char *cwhy;
	int go[2], status, rc = 0;
	pid_t pid;

	assert_int_equal(pipe(go), 0);
	assert_int_equal(pvm_transport_listen("127.0.0.1", 0, &l), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct pvm_tls_ctx *t = tls_for(dir, "dst");
		struct pvm_channel *c = NULL;
		char b;

		pvm_channel_opts_defaults(&o);
		if (pvm_transport_accept(l, t, &o, 5000, &c))
			_exit(3);
		/* Dies, as a killed pvmigd would, when told. */
		_exit(read(go[0], &b, 1) == 1 ? 0 : 4);
	}
	tls = tls_for(dir, "src");
	pvm_channel_opts_defaults(&o);
	o.timeout_ms = 5000;
	assert_int_equal(pvm_transport_connect("127.0.0.1",
					       pvm_listener_port(l), tls, &o,
					       &ch), 0);
	assert_int_equal(pvm_channel_check_peer(ch), 0);
	assert_int_equal(write(go[1], "x", 1), 1);
	waitpid(pid, &status, 0);
	/* Its kernel closed the connections as it died; they reach us over
	 * loopback at once, but give the stack a moment. */
	for (unsigned i = 0; i < 200 && !rc; i++) {
		rc = pvm_channel_check_peer(ch);
		if (!rc)
			usleep(5000);
	}
	assert_int_equal(rc, -ECONNRESET);
	assert_int_equal(pvm_channel_error(ch, &cwhy), -ECONNRESET);
	assert_non_null(strstr(cwhy, "closed"));
	pvm_channel_close(ch);
	pvm_listener_close(l);
	pvm_tls_ctx_free(tls);
	close(go[0]);
	close(go[1]);
}

static void test_tls_init_rejects_bad_names(void **state)
{
	const char *bad[] = { "../etc" };
	const char *ca[] = { "ca" };

	assert_int_equal(pvm_tls_init_dir(dir, bad, 1, 0, 1), -EINVAL);
	assert_int_equal(pvm_tls_init_dir(dir, ca, 1, 0, 1), -EINVAL);
	assert_int_equal(pvm_tls_init_dir(dir, NULL, 0, 0, 0), -EINVAL);
	/* NAME,IP: every IP must be an IPv4 or IPv6 address. */
	{
		const char *ips[][1] = { { "h,300.1.2.3" }, { "h," }, { "h,1.2.3.4,x" },
					 { "../etc,1.2.3.4" } };

		for (size_t i = 0; i < 4; i++)
			assert_int_equal(pvm_tls_init_dir(dir, ips[i], 1, 0, 1), -EINVAL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rounds_ordered_across_streams),
		cmocka_unit_test(test_single_stream),
		cmocka_unit_test(test_compression_off),
		cmocka_unit_test(test_client_from_other_ca_refused),
		cmocka_unit_test(test_expired_certificate_refused),
		cmocka_unit_test(test_wrong_peer_name_refused),
		cmocka_unit_test(test_server_from_other_ca_refused),
		cmocka_unit_test(test_plaintext_client_refused),
		cmocka_unit_test(test_frame_length_over_bound),
		cmocka_unit_test(test_truncated_frame),
		cmocka_unit_test(test_stalled_peer_times_out),
		cmocka_unit_test(test_version_mismatch_refused),
		cmocka_unit_test(test_flipped_byte_inside_tls),
		cmocka_unit_test(test_peer_stops_reading),
		cmocka_unit_test(test_killed_sender),
		cmocka_unit_test(test_killed_receiver),
		cmocka_unit_test(test_cancel_wakes_receiver),
		cmocka_unit_test(test_tls_init_rejects_bad_names),
		cmocka_unit_test(test_ip_peer_name_checked),
		cmocka_unit_test(test_check_peer_sees_closed_peer),
		cmocka_unit_test(test_authorize_hook),
		cmocka_unit_test(test_idle_connections_do_not_stall),
		cmocka_unit_test(test_stranger_bounds),
		cmocka_unit_test(test_revoked_certificate_refused),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
