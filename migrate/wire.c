/*
 * Peer messages on a migration channel's control stream: framing, receive,
 * expect, abort, and the "HOST[:PORT]" target syntax.
 *
 * A message is one type byte (enum mig_msg), then either a key=value record
 * (control-protocol encoding without its length prefix) or, for STATE,
 * tagged sections (state.c).
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport.h"

/* ---- messages ------------------------------------------------------------ */

int mig_send_kv(struct pvm_channel *ch, char type, const struct pvm_kv *kv)
{
	struct pvm_buf b;
	int rc;

	pvm_buf_init(&b, PVM_CTL_FRAME_MAX + 8);
	/* The control encoding minus its length prefix; our type byte
	 * replaces its kind byte. */
	rc = pvm_ctl_encode(PVM_CTL_ITEM, kv, &b);
	if (!rc) {
		b.data[4] = (uint8_t)type;
		rc = pvm_channel_send_msg(ch, b.data + 4, b.len - 4);
	}
	pvm_buf_dispose(&b);
	return rc;
}

int mig_send_simple(struct pvm_channel *ch, char type)
{
	struct pvm_kv kv;
	int rc;

	pvm_kv_init(&kv);
	rc = mig_send_kv(ch, type, &kv);
	pvm_kv_dispose(&kv);
	return rc;
}

void mig_send_abort(struct pvm_channel *ch, const char *why)
{
	struct pvm_kv kv;

	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "error", "%s", why);
	mig_send_kv(ch, MIG_ABORT, &kv); /* best effort */
	pvm_kv_dispose(&kv);
}

/*
 * Receives the next message. For key=value types @kv is filled; for STATE
 * the raw body is returned in *raw_out (caller frees). Returns the type
 * (> 0) or a negative errno.
 */
int mig_recv_msg(struct pvm_channel *ch, struct pvm_kv *kv, void **raw_out,
		    size_t *raw_len)
{
	void *buf;
	size_t len;
	enum pvm_ctl_kind kind;
	int rc, type;

	pvm_kv_dispose(kv);
	if (raw_out)
		*raw_out = NULL;
	rc = pvm_channel_recv_msg(ch, &buf, &len);
	if (rc)
		return rc;
	if (len < 1) {
		free(buf);
		return -EBADMSG;
	}
	type = ((uint8_t *)buf)[0];
	if (type == MIG_STATE) {
		if (!raw_out) {
			free(buf);
			return -EPROTO;
		}
		memmove(buf, (uint8_t *)buf + 1, len - 1);
		*raw_out = buf;
		*raw_len = len - 1;
		return type;
	}
	((uint8_t *)buf)[0] = PVM_CTL_ITEM;
	rc = pvm_ctl_decode(buf, len, &kind, kv);
	free(buf);
	return rc ? rc : type;
}

/* Waits for @want; MIG_ABORT becomes -ECONNABORTED with its reason. */
int mig_expect(struct pvm_channel *ch, int want, struct pvm_kv *kv, char *why,
	       size_t why_len)
{
	int type = mig_recv_msg(ch, kv, NULL, NULL);

	if (type == want)
		return 0;
	if (type == MIG_ABORT) {
		snprintf(why, why_len, "destination refused: %s",
			 pvm_kv_get(kv, "error") ?: "no reason");
		return -ECONNABORTED;
	}
	if (type < 0) {
		const char *cwhy;

		pvm_channel_error(ch, &cwhy);
		snprintf(why, why_len, "lost the destination: %s",
			 cwhy && *cwhy ? cwhy : strerror(-type));
		return type;
	}
	snprintf(why, why_len, "destination sent '%c', expected '%c'", type, want);
	return -EPROTO;
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
