/*
 * Peer messages on a migration channel's control stream: one framing (the
 * header drawn in internal.h, type in its own field), one table of message
 * types (name, body kind, the states of each side in which it may arrive),
 * encode, decode, send, receive, and the "HOST[:PORT]" target syntax.
 *
 * The decoder takes untrusted bytes: it is a pure function of them
 * (mig_msg_decode) and has a fuzz target (tests/fuzz/migrate/).
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport.h"

static_assert(MIG_HDR_SIZE == 8, "the peer message header is 8 bytes");

#define S(x) (1u << MIG_SRC_##x)
#define D(x) (1u << MIG_DST_##x)
/* The source, once it has sent HELLO, until it knows how it ended. */
#define S_LIVE (S(CONNECTING) | S(PRECOPY) | S(PAUSED) | S(QUIESCED) | \
		S(AWAIT_READY) | S(UNPAUSE_SENT))
/* The destination while a migration is open. */
#define D_LIVE (D(XSTREAM) | D(XRESTORE) | D(LOADING) | D(READY))

/*
 * Dispatch by type, xenstored's wire_funcs[] style: the type is bounds-
 * checked (a byte) and a type without a name is unknown. @src and @dst are
 * the states in which the source or the destination may receive it; tunnel
 * messages belong to no migration state (tunnel.c checks them).
 */
static const struct {
	const char *name;
	bool raw;      /* body is not a key=value record */
	uint32_t src;  /* enum mig_src_state bits */
	uint32_t dst;  /* enum mig_dst_state bits */
} msgs[256] = {
	[MIG_HELLO] = { "HELLO", false, 0, D(OPEN) },
	[MIG_ACCEPT] = { "ACCEPT", false, S(CONNECTING), 0 },
	[MIG_ROUND] = { "ROUND", false, 0, D(LOADING) },
	[MIG_ROUND_ACK] = { "ROUND_ACK", false, S(PRECOPY), 0 },
	[MIG_STATE] = { "STATE", true, 0, D(LOADING) },
	[MIG_READY] = { "READY", false, S(AWAIT_READY), 0 },
	[MIG_UNPAUSE] = { "UNPAUSE", false, 0, D(READY) },
	[MIG_RUNNING] = { "RUNNING", false, S(UNPAUSE_SENT), 0 },
	[MIG_ABORT] = { "ABORT", false, S_LIVE, D_LIVE },
	[MIG_QUERY] = { "QUERY", false, 0, D(OPEN) },
	/* on the QUERY's own channel, while the migration's is in doubt */
	[MIG_OUTCOME] = { "OUTCOME", false, S(UNPAUSE_SENT), 0 },
	[MIG_XCONFIG] = { "XCONFIG", false, 0, D(XSTREAM) },
	[MIG_XCHUNK] = { "XCHUNK", false, 0, D(XRESTORE) },
	[MIG_XEND] = { "XEND", false, 0, D(XRESTORE) },
	[MIG_TUNNEL] = { "TUNNEL", false, 0, D(OPEN) },
	[MIG_TUN_OK] = { "TUN_OK", false, 0, 0 },
	[MIG_TUN_CHUNK] = { "TUN_CHUNK", false, 0, 0 },
	[MIG_TUN_DATA] = { "TUN_DATA", true, 0, 0 },
	[MIG_TUN_EOF] = { "TUN_EOF", false, 0, 0 },
	[MIG_TUN_EXIT] = { "TUN_EXIT", false, 0, 0 },
};

const char *mig_msg_name(int type)
{
	if (type < 0 || type > 255 || !msgs[type].name)
		return "unknown";
	return msgs[type].name;
}

bool mig_src_may_recv(int type, enum mig_src_state st)
{
	return type >= 0 && type <= 255 && (unsigned)st < MIG_SRC_NSTATES &&
	       (msgs[type].src & (1u << st));
}

bool mig_dst_may_recv(int type, enum mig_dst_state st)
{
	return type >= 0 && type <= 255 && (unsigned)st < MIG_DST_NSTATES &&
	       (msgs[type].dst & (1u << st));
}

void mig_msg_init(struct mig_msg_in *m)
{
	memset(m, 0, sizeof(*m));
	pvm_kv_init(&m->kv);
}

void mig_msg_dispose(struct mig_msg_in *m)
{
	pvm_kv_dispose(&m->kv);
	free(m->owned);
	m->owned = NULL;
	m->raw = NULL;
	m->raw_len = 0;
	m->type = 0;
}

int mig_msg_decode(const uint8_t *buf, size_t len, struct mig_msg_in *m,
		   char *why, size_t why_len)
{
	struct pvm_cursor c;
	uint8_t type, flags;
	uint16_t reserved;
	uint32_t body_len;
	const uint8_t *body;
	int rc;

	pvm_kv_dispose(&m->kv);
	m->type = 0;
	m->raw = NULL;
	m->raw_len = 0;
	pvm_cursor_init(&c, buf, len);
	if (pvm_cursor_u8(&c, &type) || pvm_cursor_u8(&c, &flags) ||
	    pvm_cursor_u16(&c, &reserved) || pvm_cursor_u32(&c, &body_len)) {
		snprintf(why, why_len, "a malformed message: %zu bytes, shorter than its header",
			 len);
		return -EBADMSG;
	}
	if (!msgs[type].name) {
		snprintf(why, why_len, "a malformed message: unknown type 0x%02x",
			 type);
		return -EBADMSG;
	}
	if (body_len != pvm_cursor_remaining(&c) || body_len > MIG_BODY_MAX ||
	    pvm_cursor_bytes(&c, body_len, &body)) {
		snprintf(why, why_len, "a malformed message: %s says %u body bytes, %zu came",
			 msgs[type].name, body_len, len - MIG_HDR_SIZE);
		return -EBADMSG;
	}
	if (msgs[type].raw) {
		m->raw = body;
		m->raw_len = body_len;
	} else {
		rc = body_len > PVM_CTL_FRAME_MAX ? -EBADMSG :
			mig_kv_parse(body, body_len, &m->kv);
		if (rc) {
			pvm_kv_dispose(&m->kv);
			if (rc == -ENOMEM)
				return rc;
			snprintf(why, why_len, "a malformed message: %s is not a key=value record",
				 msgs[type].name);
			return -EBADMSG;
		}
	}
	m->type = type;
	return type;
}

size_t mig_msg_begin(int type, struct pvm_buf *out)
{
	size_t at = out->len;

	pvm_buf_put_u8(out, (uint8_t)type);
	pvm_buf_put_u8(out, 0);  /* flags */
	pvm_buf_put_u16(out, 0); /* reserved */
	pvm_buf_put_u32(out, 0); /* body length: mig_msg_end() */
	return at;
}

int mig_msg_end(struct pvm_buf *out, size_t at)
{
	size_t body = out->len - at - MIG_HDR_SIZE;

	if (out->err)
		return out->err;
	if (body > MIG_BODY_MAX)
		return -E2BIG;
	pvm_put_le32(out->data + at + 4, (uint32_t)body);
	return 0;
}

int mig_msg_encode_kv(int type, const struct pvm_kv *kv, struct pvm_buf *out)
{
	size_t at = mig_msg_begin(type, out);
	int rc = kv ? mig_kv_put(kv, out) : out->err;

	if (rc)
		return rc;
	if (out->len - at - MIG_HDR_SIZE > PVM_CTL_FRAME_MAX)
		return -E2BIG;
	return mig_msg_end(out, at);
}

int mig_send_kv(struct pvm_channel *ch, int type, const struct pvm_kv *kv)
{
	struct pvm_buf b;
	int rc;

	pvm_buf_init(&b, PVM_CTL_FRAME_MAX + MIG_HDR_SIZE);
	rc = mig_msg_encode_kv(type, kv, &b);
	if (!rc)
		rc = pvm_channel_send_msg(ch, b.data, b.len);
	pvm_buf_dispose(&b);
	return rc;
}

int mig_send_simple(struct pvm_channel *ch, int type)
{
	return mig_send_kv(ch, type, NULL);
}

void mig_send_abort(struct pvm_channel *ch, const char *why)
{
	struct pvm_kv kv;

	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "error", "%s", why);
	mig_send_kv(ch, MIG_ABORT, &kv); /* best effort */
	pvm_kv_dispose(&kv);
}

int mig_recv(struct pvm_channel *ch, struct mig_msg_in *m, char *why,
	     size_t why_len)
{
	const char *cwhy = NULL;
	void *buf;
	size_t len;
	int rc;

	mig_msg_dispose(m);
	rc = pvm_channel_recv_msg(ch, &buf, &len);
	if (rc) {
		pvm_channel_error(ch, &cwhy);
		snprintf(why, why_len, "%s", cwhy && *cwhy ? cwhy :
					   rc == -ENOTCONN ? "channel closed" :
							     strerror(-rc));
		return rc;
	}
	rc = mig_msg_decode(buf, len, m, why, why_len);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	m->owned = buf;
	return rc;
}

int mig_parse_target(const char *t, char *host, size_t hlen, uint16_t *port)
{
	const char *colon = strrchr(t, ':');
	size_t n = colon ? (size_t)(colon - t) : strlen(t);

	*port = PVM_PORT_DEFAULT;
	if (n == 0 || n >= hlen)
		return -EINVAL;
	memcpy(host, t, n);
	host[n] = '\0';
	if (colon) {
		char *end;
		unsigned long p = strtoul(colon + 1, &end, 10);

		if (*end || p == 0 || p > 65535)
			return -EINVAL;
		*port = (uint16_t)p;
	}
	return 0;
}
