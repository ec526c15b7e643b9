/*
 * transport/ — the channel every migration and remote checkpoint travels
 * over: TCP, TLS 1.3 only with mutual certificate authentication, explicit
 * little-endian framing, lz4-compressed page batches with zero-page elision,
 * several parallel connections per channel, bounded buffers (backpressure),
 * and keepalive/timeouts so a dead or stalled peer becomes an error, never a
 * hang. docs/transport.md is the wire specification.
 *
 * Entry points, in the order a user calls them:
 *
 *   pvm_tls_init_dir()               make a CA and host certificates (tls-init)
 *   pvm_tls_files_check()            is each file what it should be? (pvmigd
 *                                    at start and --check-config)
 *   pvm_tls_ctx_new()                load CA, certificate and key once
 *   pvm_transport_listen()           destination: bind a TCP listener
 *   pvm_transport_accept()           destination: one whole channel
 *   pvm_transport_connect()          source: one whole channel
 *   pvm_channel_send_pages()         source: queue a batch of pages
 *   pvm_channel_send_msg()           either side: an ordered control message
 *   pvm_channel_recv_msg()           either side: the next control message
 *   pvm_channel_check_peer()         sender: has the peer already hung up?
 *   pvm_channel_finish()             sender: flush, say CLOSE, wait for peer
 *   pvm_channel_close()              both: release everything
 *
 * Ordering (what the receiver may assume): a channel is a sequence of
 * control messages with page batches between them. Every page sent before
 * message M is delivered (on_pages returned) before M is returned by
 * pvm_channel_recv_msg(), and no page sent after M is delivered before that.
 * Between two messages, batches travel over N connections and are delivered
 * concurrently and in any order, so the sender must not send the same pfn
 * twice between two messages. A migration round is therefore "pages, then a
 * message": the newest copy of a page is the one delivered last.
 *
 * Threads: one thread may send and one may receive messages on a channel at
 * the same time; send_pages and send_msg must come from the same thread.
 * on_pages is called from the channel's receive threads, concurrently for
 * different connections.
 */
#ifndef PVM_TRANSPORT_H
#define PVM_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Wire version spoken in HELLO; see docs/transport.md. */
#define PVM_TP_VERSION 1
/* Largest control message body accepted from the wire. */
#define PVM_TP_MSG_MAX (4u << 20)
/* Pages in one batch frame (sender packs up to this many). */
#define PVM_TP_BATCH_PAGES 128u
/* Parallel data connections per channel. */
#define PVM_TP_STREAMS_MAX 16u
#define PVM_TP_STREAMS_DEFAULT 2u
#define PVM_TP_TIMEOUT_MS_DEFAULT 15000u

struct pvm_tls_ctx;
struct pvm_listener;
struct pvm_channel;

/* ---- certificates ------------------------------------------------------ */

/*
 * Creates DIR/ca.pem + DIR/ca.key (if absent) and, for each name in @hosts,
 * DIR/<name>.pem + DIR/<name>.key signed by that CA, valid for @days days
 * starting @not_before_days from now (negative: in the past; tests use it
 * to make expired certificates). Each host certificate carries its name as
 * CN and DNS subjectAltName, usable as client and server. Keys are EC
 * P-256, written mode 0600. 0 or a negative errno (logged).
 */
int pvm_tls_init_dir(const char *dir, const char *const *hosts, size_t nhosts,
		     int not_before_days, int days);

/* Paths of the PEM files one side of a channel uses. */
struct pvm_tls_files {
	const char *ca;   /* CA certificate(s) peers must chain to */
	const char *cert; /* this host's certificate */
	const char *key;  /* its private key */
	const char *crl;  /* NULL/"": none; else PEM CRL(s) of the CA, checked
			   * against every peer's certificate in the handshake */
};

/* Which of the three files pvm_tls_files_check() found wrong. */
enum pvm_tls_which {
	PVM_TLS_CA,
	PVM_TLS_CERT,
	PVM_TLS_KEY,
	PVM_TLS_CRL,
};

/*
 * Checks the three files before anything uses them, one at a time in the
 * order ca, cert, key: each can be read; @ca holds one or more PEM
 * certificates, every one a CA (basicConstraints CA:TRUE: a host
 * certificate given as the CA would make every peer's handshake fail with
 * a riddle); @cert starts with a PEM certificate; @key is a PEM private
 * key (not encrypted) whose public half is @cert's. Not checked: that
 * @cert chains to @ca or is valid today (peers' CAs may differ by design,
 * and the handshake says so by name).
 * Returns 0, or a negative errno (-ENOENT, -EACCES... when a file cannot
 * be opened, -EINVAL when its content is wrong) with *which_out naming the
 * file and @why (at most @len bytes, NUL-terminated) saying what is wrong
 * without the path. Logs nothing: the caller knows where the paths came
 * from (a config file's line).
 */
int pvm_tls_files_check(const struct pvm_tls_files *files,
			enum pvm_tls_which *which_out, char *why, size_t len);

/*
 * Loads the files into a TLS 1.3-only context that requires and verifies
 * a peer certificate on both ends. The context is shared by all channels
 * and freed by pvm_tls_ctx_free() after the last of them is closed.
 * Runs pvm_tls_files_check() first and logs what it finds, naming the file.
 */
int pvm_tls_ctx_new(const struct pvm_tls_files *files,
		    struct pvm_tls_ctx **out);
void pvm_tls_ctx_free(struct pvm_tls_ctx *ctx);
/*
 * A peer reached by an IP address must present a certificate whose
 * subjectAltName lists that address. By default a certificate that lists
 * no address at all is refused too (any certificate of the CA could
 * otherwise stand in for the host at that address); @allow accepts it on
 * the CA's word alone, with a warning. Set before the first channel.
 */
void pvm_tls_ctx_allow_ip_without_san(struct pvm_tls_ctx *ctx, bool allow);

/*
 * Adds the certificates DIR/<name>.pem of @names to DIR/crl.pem (made if
 * absent), signed by DIR/ca.key, valid for @days days. 0 or a negative
 * errno (logged).
 */
int pvm_tls_revoke(const char *dir, const char *const *names, size_t n,
		   int days);

/* ---- the authenticated peer ------------------------------------------ */

/*
 * Who is at the other end of a connection, once its certificate has been
 * verified: borrowed, valid for the callback it is passed to, or until
 * the channel it belongs to is closed.
 */
struct pvm_peer;
/* Does the certificate carry @name, as its CN or as a DNS subjectAltName
 * (exactly; no wildcards)? */
bool pvm_peer_has_name(const struct pvm_peer *p, const char *name);
const char *pvm_peer_cn(const struct pvm_peer *p);
/* "ADDRESS:PORT" it connected from. */
const char *pvm_peer_addr(const struct pvm_peer *p);

/*
 * The accepting side's authorization hook: called for each incoming
 * connection right after its certificate was verified, before anything it
 * sends is read. 0 admits it; a negative errno refuses it, and @why (at
 * most @len bytes) is logged and sent to the peer as the refusal.
 */
typedef int (*pvm_tp_authorize_fn)(void *ctx, const struct pvm_peer *p,
				   char *why, size_t len);

/* ---- channels ---------------------------------------------------------- */

/*
 * Called for each received batch, from a receive thread. pfns[i] is the
 * page frame number; pages[i] points at its 4096 bytes, or is NULL for an
 * all-zero page. The arrays and pages are borrowed until the call returns.
 * Returning non-zero aborts the channel with that (negative errno) code.
 */
typedef int (*pvm_tp_pages_fn)(void *ctx, const uint64_t *pfns,
			       const uint8_t *const *pages, size_t n);

struct pvm_channel_opts {
	unsigned streams;      /* data connections, 1..PVM_TP_STREAMS_MAX; 0 = default */
	bool compress;         /* lz4 page batches (default true via _defaults) */
	unsigned timeout_ms;   /* a peer silent/stalled this long is an error */
	const char *peer_name; /* expected peer certificate name, or NULL */
	pvm_tp_pages_fn on_pages; /* receiver only; NULL refuses page frames */
	void *ctx;                /* passed to on_pages */
	pvm_tp_authorize_fn authorize; /* accepting side; NULL admits all */
	void *authorize_ctx;
	/* Connecting side: when the peer refuses us, its reason is copied
	 * here (NUL-terminated; left empty otherwise). May be NULL. */
	char *refusal;
	size_t refusal_len;
};

void pvm_channel_opts_defaults(struct pvm_channel_opts *o);

/* Bind and listen on @host:@port (port 0 picks one; see _port()). */
int pvm_transport_listen(const char *host, uint16_t port,
			 struct pvm_listener **out);

/*
 * How much strangers may hold of a listener: connections that have not yet
 * finished TLS and the transport HELLO are handshaken concurrently, at most
 * @max_unauth at once and @per_addr from one address (more are closed at
 * once), each within @handshake_ms. Defaults: 64, 8, 5000. Set before
 * the first pvm_transport_accept().
 */
void pvm_listener_set_limits(struct pvm_listener *l, unsigned max_unauth,
			     unsigned per_addr, unsigned handshake_ms);
uint16_t pvm_listener_port(const struct pvm_listener *l);
int pvm_listener_fd(const struct pvm_listener *l);
void pvm_listener_close(struct pvm_listener *l);

/*
 * Accepts connections until one complete channel (all its streams) has
 * arrived and authenticated, or @timeout_ms passes (-ETIMEDOUT; 0 waits
 * forever). Connections that fail TLS or the HELLO are logged with the
 * reason and dropped; nothing they sent reaches the caller. Streams count
 * and compression are the connecting side's choice; @opts gives timeout,
 * peer name and the page callback.
 */
int pvm_transport_accept(struct pvm_listener *l, struct pvm_tls_ctx *tls,
			 const struct pvm_channel_opts *opts,
			 unsigned timeout_ms, struct pvm_channel **out);

/* Connects all streams of a channel to @host:@port and authenticates. */
int pvm_transport_connect(const char *host, uint16_t port,
			  struct pvm_tls_ctx *tls,
			  const struct pvm_channel_opts *opts,
			  struct pvm_channel **out);

/*
 * Queues @n pages (any n; split into batches internally). pages[i] may be
 * reused by the caller as soon as this returns (non-zero pages are copied
 * into a bounded pool; when the pool is full this blocks until the
 * connections drain: backpressure). 0 or the channel's sticky error.
 */
int pvm_channel_send_pages(struct pvm_channel *ch, const uint64_t *pfns,
			   const uint8_t *const *pages, size_t n);

/* Sends a control message of @len <= PVM_TP_MSG_MAX bytes, ordered after
 * every page queued before it (see the ordering rule above). */
int pvm_channel_send_msg(struct pvm_channel *ch, const void *buf, size_t len);

/*
 * Waits for the next control message. On success *buf_out is a malloc()ed
 * copy the caller frees, *len_out its length. -ESHUTDOWN when the peer
 * closed the channel cleanly (pvm_channel_finish(): every page and message
 * delivered) and nothing more will come; any other negative errno is a
 * failure (-ECONNRESET: the connection ended without that close, e.g. a
 * killed peer; see pvm_channel_error() for the explanation).
 */
int pvm_channel_recv_msg(struct pvm_channel *ch, void **buf_out,
			 size_t *len_out);

/* Flushes every queued page, sends CLOSE on all streams and waits until
 * the peer has acknowledged it. 0 only if the peer got everything. */
int pvm_channel_finish(struct pvm_channel *ch);

/* Makes every blocked call on @ch return -ECANCELED soon. Thread-safe. */
void pvm_channel_shutdown(struct pvm_channel *ch);

/* Frees the channel; safe on NULL; joins its threads. */
void pvm_channel_close(struct pvm_channel *ch);

/* The first error the channel met (0 if none) and its explanation. */
int pvm_channel_error(const struct pvm_channel *ch, const char **why_out);

/*
 * Without waiting: has the peer already closed or reset one of the
 * channel's connections (a killed peer's kernel does so at once)? Then
 * the channel fails with that reason (see pvm_channel_error()), which is
 * returned; else 0, or the channel's earlier error. For a sender about to
 * send a message whose loss must be known beforehand (migrate: UNPAUSE).
 */
int pvm_channel_check_peer(struct pvm_channel *ch);

/* Counters since the channel was set up. */
struct pvm_channel_stats {
	uint64_t pages;      /* pages sent or received */
	uint64_t zero_pages; /* of which sent as "zero" with no data */
	uint64_t raw_bytes;  /* page bytes before compression (non-zero pages) */
	uint64_t wire_bytes; /* frame bytes handed to TLS */
	uint64_t batches_raw;  /* batches sent uncompressed (did not shrink) */
	uint64_t batches_lz4;  /* batches sent lz4-compressed */
};
void pvm_channel_stats(const struct pvm_channel *ch,
		       struct pvm_channel_stats *out);
unsigned pvm_channel_streams(const struct pvm_channel *ch);
/* "CN (ADDRESS:PORT)" of the peer (borrowed, valid until close). */
const char *pvm_channel_peer(const struct pvm_channel *ch);
/* The peer's verified identity (borrowed, valid until close). */
const struct pvm_peer *pvm_channel_peer_id(const struct pvm_channel *ch);

#endif /* PVM_TRANSPORT_H */
