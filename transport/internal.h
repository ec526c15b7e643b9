/*
 * Shared between the files of transport/ only. The wire layout drawn here is
 * the authority docs/transport.md describes.
 *
 * Every frame, on every connection, after the TLS handshake:
 *
 *   0      2      4              8
 *   +------+------+--------------+------------------------+
 *   | type | flags|   length     |  body (length bytes)   |
 *   +------+------+--------------+------------------------+
 *     u16    u16     u32 LE         bounded per type (tp_body_max)
 *
 * PAGES body:
 *   +-------+------+------+----------+------+-----------------+---------+
 *   | count | enc  | rsvd | data_len | rsvd | pfn words[count]| data    |
 *   +-------+------+------+----------+------+-----------------+---------+
 *     u32     u16    u16     u32       u32    u64 each          data_len
 *   pfn word: bits 0-51 pfn, bit 63 ZERO (page is all zero, no data),
 *   bits 52-62 reserved (must be zero). data holds the non-zero pages in
 *   order, raw (enc 0) or as one lz4 block (enc 1) that must inflate to
 *   exactly (count - zeros) * 4096 bytes.
 */
#ifndef PVM_TRANSPORT_INTERNAL_H
#define PVM_TRANSPORT_INTERNAL_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "transport/transport.h"

enum tp_frame_type {
	TP_HELLO = 1,
	TP_HELLO_ACK = 2,
	TP_ERROR = 3,
	TP_KEEPALIVE = 4,
	TP_MSG = 5,
	TP_PAGES = 6,
	TP_MARK = 7,
	TP_CLOSE = 8,
	TP_CLOSE_ACK = 9,
	TP_FRAME_TYPE_MAX = 9,
};

#define TP_HDR_LEN 8u
#define TP_HELLO_MAGIC "PVMIGTP"  /* 7 chars + NUL = 8 bytes on the wire */
#define TP_HELLO_LEN 40u
#define TP_HELLO_ACK_LEN 8u
#define TP_ERROR_TEXT_MAX 256u
#define TP_MSG_HDR_LEN 8u /* u64 mark */
#define TP_MARK_LEN 8u
#define TP_PAGES_META_LEN 16u
#define TP_PFN_MASK ((UINT64_C(1) << 52) - 1)
#define TP_PFN_ZERO (UINT64_C(1) << 63)
#define TP_PFN_RESERVED (~(TP_PFN_MASK | TP_PFN_ZERO))
#define TP_ENC_RAW 0u
#define TP_ENC_LZ4 1u
#define TP_HELLO_F_COMPRESS 1u

#define TP_BATCH_BYTES (PVM_TP_BATCH_PAGES * PVM_PAGE_SIZE)

/* Largest PAGES body: meta + pfn words + lz4 worst case of a full batch. */
size_t tp_pages_body_max(void);
/* Largest body a frame of @type may carry; 0 for an unknown type. */
size_t tp_body_max(uint16_t type);
const char *tp_frame_name(uint16_t type);

/* Encodes an 8-byte frame header at @p. */
void tp_put_header(uint8_t *p, uint16_t type, uint32_t len);
/* Decodes and bounds a header: 0, or -EBADMSG with *why_out set. */
int tp_parse_header(const uint8_t *p, uint16_t *type_out, uint32_t *len_out,
		    const char **why_out);

/*
 * A batch being packed by the sender: pfn words (ZERO flag set where the page
 * is zero) and the non-zero pages copied back to back in @data.
 */
struct tp_batch {
	uint64_t pfns[PVM_TP_BATCH_PAGES];
	size_t count;
	size_t nonzero;
	uint8_t *data; /* TP_BATCH_BYTES, owned by the batch's pool slot */
};

/*
 * Encodes @b as a whole PAGES frame (header included) into @out, which has
 * room for TP_HDR_LEN + tp_pages_body_max(). Compresses when @compress and
 * the result is smaller; otherwise raw. Returns the frame length; *lz4_out
 * says which encoding was chosen.
 */
size_t tp_encode_pages(const struct tp_batch *b, bool compress, uint8_t *out,
		       bool *lz4_out);

/*
 * Decodes a PAGES body. Pages come out in @scratch (TP_BATCH_BYTES) or as
 * NULL for zero pages; pfns_out/pages_out hold PVM_TP_BATCH_PAGES entries.
 * 0, or -EBADMSG with *why_out naming the fault.
 */
int tp_decode_pages(const uint8_t *body, size_t len, uint8_t *scratch,
		    uint64_t *pfns_out, const uint8_t **pages_out,
		    size_t *n_out, const char **why_out);

/* ---- the transport HELLO (channel.c), shared with listener.c ---- */

#define TP_HELLO_ID_LEN 16u

/* A decoded HELLO: versions, this stream's index, the channel's data
 * stream count, flags, and the channel's random id. */
struct tp_hello {
	uint16_t vmin, vmax, idx, count;
	uint32_t flags;
	uint8_t id[TP_HELLO_ID_LEN];
};
/* Decodes a HELLO body (TP_HELLO_LEN bytes): 0, or a negative errno with
 * *why naming the fault. */
int tp_parse_hello(const uint8_t *p, struct tp_hello *h, const char **why);

/*
 * Makes a started channel of the accepted connections @conns[0..@count]
 * (control, then data streams), which it takes over (on -ENOMEM they are
 * still the caller's). @cn names the peer in logs.
 */
struct tp_conn;
int tp_channel_adopt(const struct pvm_channel_opts *opts, unsigned count,
		     struct tp_conn *conns, const char *cn,
		     struct pvm_channel **out);

/* ---- TLS connections (tls.c) ---- */

struct pvm_tls_ctx {
	SSL_CTX *ssl_ctx;
	bool ip_without_san; /* pvm_tls_ctx_allow_ip_without_san() */
};

/* A verified peer (transport.h): its certificate (a reference of ours)
 * and what the logs call it. */
struct pvm_peer {
	X509 *cert;
	char addr[64]; /* "ADDRESS:PORT" */
	char cn[128];
};

/*
 * One TLS connection on a non-blocking socket. ssl_lock serialises every
 * SSL_* call (OpenSSL forbids concurrent use of one SSL object); waiting for
 * the socket happens outside it, in poll(), so a reader and a writer on the
 * same connection never block each other.
 */
struct tp_conn {
	int fd;
	SSL *ssl;
	pthread_mutex_t ssl_lock;
	struct pvm_peer peer; /* cert set once the handshake verified it */
};

/* Opens a connection to @host:@port within @timeout_ms and runs the client
 * handshake. On failure *why_out explains (static or in @why, @why_len). */
int tp_conn_connect(struct tp_conn *c, struct pvm_tls_ctx *tls,
		    const char *host, uint16_t port, const char *peer_name,
		    unsigned timeout_ms, char *why, size_t why_len);
/* Runs the server handshake on an accepted socket (takes @fd). */
int tp_conn_accept(struct tp_conn *c, struct pvm_tls_ctx *tls, int fd,
		   const char *peer_name, unsigned timeout_ms, char *why,
		   size_t why_len);
void tp_conn_init(struct tp_conn *c);
void tp_conn_dispose(struct tp_conn *c);

/*
 * Reads/writes exactly @len bytes. @timeout_ms bounds every wait without
 * progress. @stop, when non-NULL and set, aborts with -ECANCELED. Errors:
 * -ETIMEDOUT, -ECONNRESET (peer closed or reset), -EBADMSG (TLS record
 * failed authentication), -EIO; *why explains.
 */
int tp_conn_read(struct tp_conn *c, void *buf, size_t len,
		 unsigned timeout_ms, atomic_bool *stop, char *why,
		 size_t why_len);
int tp_conn_write(struct tp_conn *c, const void *buf, size_t len,
		  unsigned timeout_ms, atomic_bool *stop, char *why,
		  size_t why_len);

/* Describes the newest OpenSSL error (for log lines). */
void tp_ssl_error(char *buf, size_t len);

#endif /* PVM_TRANSPORT_INTERNAL_H */
