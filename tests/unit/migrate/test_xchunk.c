/*
 * migrate/xchunk.c over a real loopback channel (TLS, lz4, 3 data
 * streams): a byte stream cut into chunks of page slots arrives intact and
 * in order while the receiver consumes each chunk slowly (as libxl reads
 * its pipe) — the pages of the next chunk arrive meanwhile and must not
 * touch the one being consumed (the bug seen on the nested Xen hosts with
 * a single staging area). Also: a message whose length does not match the
 * pages delivered, and slots past the two halves, are refused.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate/internal.h"
#include "transport/transport.h"

#define NCHUNKS 24u

static char dir[] = "/tmp/pvm-xchunk-XXXXXX";

static struct pvm_tls_ctx *tls_for(const char *host)
{
	char ca[300], cert[300], key[300];
	struct pvm_tls_files f = { ca, cert, key, NULL };
	struct pvm_tls_ctx *t = NULL;

	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/%s.pem", dir, host);
	snprintf(key, sizeof(key), "%s/%s.key", dir, host);
	assert_int_equal(pvm_tls_ctx_new(&f, &t), 0);
	return t;
}

/* Chunk k: its length (full, partial, one byte, a page) and bytes
 * (random-ish, with whole zero pages in some). */
static size_t chunk_len(unsigned k)
{
	static const size_t lens[] = { PVM_XCHUNK_BYTES, 1, 4096, 70000,
				       PVM_XCHUNK_BYTES - 1, 300000 };

	return lens[k % (sizeof(lens) / sizeof(lens[0]))];
}

static void chunk_fill(unsigned k, uint8_t *b, size_t len)
{
	uint64_t x = k * 2654435761u + 7;

	for (size_t i = 0; i < len; i++) {
		if ((i / PVM_PAGE_SIZE + k) % 5 == 0) {
			b[i] = 0;
			continue;
		}
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		b[i] = (uint8_t)(x >> 56);
	}
}

struct rx {
	struct pvm_xchunk_rx x;
};

static int on_pages(void *ctx, const uint64_t *pfns,
		    const uint8_t *const *pages, size_t n)
{
	return pvm_xchunk_rx_pages(&((struct rx *)ctx)->x, pfns, pages, n);
}

struct acceptor {
	struct pvm_listener *l;
	struct pvm_tls_ctx *tls;
	struct pvm_channel_opts o;
	struct pvm_channel *ch;
	int rc;
};

static void *accept_main(void *arg)
{
	struct acceptor *a = arg;

	a->rc = pvm_transport_accept(a->l, a->tls, &a->o, 10000, &a->ch);
	return NULL;
}

struct sender {
	struct pvm_channel *ch;
	int rc;
};

static void *send_main(void *arg)
{
	struct sender *s = arg;
	uint8_t *b = malloc(PVM_XCHUNK_BYTES);

	for (unsigned k = 0; k < NCHUNKS && !s->rc; k++) {
		size_t len = chunk_len(k);
		char msg[32];

		chunk_fill(k, b, len);
		s->rc = pvm_xchunk_send_pages(s->ch, k, b, len);
		snprintf(msg, sizeof(msg), "%zu", len);
		if (!s->rc)
			s->rc = pvm_channel_send_msg(s->ch, msg, strlen(msg) + 1);
	}
	free(b);
	if (!s->rc)
		s->rc = pvm_channel_finish(s->ch);
	return NULL;
}

static void test_stream(void **state)
{
	struct acceptor a = { 0 };
	struct sender s = { 0 };
	struct rx r;
	struct pvm_channel_opts o;
	struct pvm_tls_ctx *tls = tls_for("src");
	pthread_t at, st;
	uint8_t *want = malloc(PVM_XCHUNK_BYTES);

	(void)state;
	assert_int_equal(pvm_xchunk_rx_init(&r.x), 0);
	assert_int_equal(pvm_transport_listen("127.0.0.1", 0, &a.l), 0);
	a.tls = tls_for("dst");
	pvm_channel_opts_defaults(&a.o);
	a.o.on_pages = on_pages;
	a.o.ctx = &r;
	a.o.timeout_ms = 5000;
	pthread_create(&at, NULL, accept_main, &a);
	pvm_channel_opts_defaults(&o);
	o.streams = 3;
	o.compress = true;
	o.peer_name = "dst";
	assert_int_equal(pvm_transport_connect("127.0.0.1",
					       pvm_listener_port(a.l), tls, &o,
					       &s.ch), 0);
	pthread_join(at, NULL);
	assert_int_equal(a.rc, 0);
	pthread_create(&st, NULL, send_main, &s);
	for (unsigned k = 0; k < NCHUNKS; k++) {
		const uint8_t *at_ = NULL;
		size_t len = 0;
		void *msg;
		size_t mlen;

		assert_int_equal(pvm_channel_recv_msg(a.ch, &msg, &mlen), 0);
		assert_int_equal(pvm_xchunk_rx_take(&r.x, strtoull(msg, NULL, 10),
						    &at_, &len), 0);
		free(msg);
		assert_int_equal(len, chunk_len(k));
		chunk_fill(k, want, len);
		assert_memory_equal(at_, want, len);
		/* A slow consumer: the next chunk's pages arrive now. */
		usleep(20000);
		assert_memory_equal(at_, want, len);
	}
	{
		void *msg;
		size_t mlen;

		/* the sender's finish: a clean end of the channel */
		assert_int_equal(pvm_channel_recv_msg(a.ch, &msg, &mlen),
				 -ESHUTDOWN);
	}
	pthread_join(st, NULL);
	assert_int_equal(s.rc, 0);
	pvm_channel_close(s.ch);
	pvm_channel_close(a.ch);
	pvm_listener_close(a.l);
	pvm_tls_ctx_free(a.tls);
	pvm_tls_ctx_free(tls);
	pvm_xchunk_rx_dispose(&r.x);
	free(want);
}

static void test_refusals(void **state)
{
	struct pvm_xchunk_rx x;
	uint64_t pfns[2] = { 0, 1 };
	static uint8_t page[PVM_PAGE_SIZE];
	const uint8_t *pages[2] = { page, NULL };
	const uint8_t *at;
	size_t len;

	(void)state;
	assert_int_equal(pvm_xchunk_rx_init(&x), 0);
	assert_int_equal(pvm_xchunk_rx_pages(&x, pfns, pages, 2), 0);
	/* two pages arrived: 1 byte or 3 pages' worth is not this chunk */
	assert_int_equal(pvm_xchunk_rx_take(&x, 1, &at, &len), -EBADMSG);
	assert_int_equal(pvm_xchunk_rx_pages(&x, pfns, pages, 2), 0);
	assert_int_equal(pvm_xchunk_rx_take(&x, 3 * PVM_PAGE_SIZE, &at, &len),
			 -EBADMSG);
	assert_int_equal(pvm_xchunk_rx_pages(&x, pfns, pages, 2), 0);
	assert_int_equal(pvm_xchunk_rx_take(&x, PVM_PAGE_SIZE + 1, &at, &len), 0);
	assert_int_equal(x.taken, 1);
	/* chunk 1 lives in the other half; lengths past a chunk refused */
	assert_int_equal(pvm_xchunk_rx_take(&x, PVM_XCHUNK_BYTES + 1, &at, &len),
			 -EBADMSG);
	pfns[0] = 2 * PVM_XCHUNK_PAGES;
	assert_int_equal(pvm_xchunk_rx_pages(&x, pfns, pages, 1), -ERANGE);
	pvm_xchunk_rx_dispose(&x);
	assert_int_equal(pvm_xchunk_base(0), 0);
	assert_int_equal(pvm_xchunk_base(1), PVM_XCHUNK_PAGES);
	assert_int_equal(pvm_xchunk_base(2), 0);
}

static int setup(void **state)
{
	static const char *const hosts[] = { "src", "dst" };

	(void)state;
	if (!mkdtemp(dir))
		return -1;
	return pvm_tls_init_dir(dir, hosts, 2, 0, 30) ? -1 : 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
