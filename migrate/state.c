/*
 * The STATE message: the stop-and-copy state of a paused domain as tagged
 * sections, in this order:
 *
 *   +-----------+-------------+------------------+
 *   | tag (u32) | length (u32)| body (length)    |  ... until the end
 *   +-----------+-------------+------------------+
 *
 *   ST_VCPU       one per vCPU, in vCPU order (at most MIG_STATE_MAX_VCPUS)
 *   ST_EVTCHN     event channels          \
 *   ST_GRANT      grant table              | once each, all optional
 *   ST_XENSTORE   the domain's xenstore    | (the backend says what a
 *   ST_DEVICES    PV backends' capture     |  missing one means)
 *   ST_MEM_SHA256 32 bytes: the memory    /
 *
 * mig_state_send() builds and sends it on the source; on the destination
 * mig_state_parse() (untrusted bytes; a fuzz target) finds the sections
 * and mig_state_apply() loads them into the paused domain.
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/checkpoint.h"
#include "hv/sim/xenstored/xenstored.h"
#include "pvquiesce/pvquiesce.h"
#include "transport/transport.h"

enum state_tag {
	ST_VCPU = 1,   /* one per vCPU, in order */
	ST_EVTCHN = 2,
	ST_GRANT = 3,
	ST_MEM_SHA256 = 4, /* SHA-256 of all guest memory, while paused */
	ST_XENSTORE = 5,   /* the domain's xenstore subtree and watches */
	ST_DEVICES = 6,    /* PV backends' captured ring state (pvquiesce) */
};

void mig_hex32(const uint8_t d[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- destination ---------------------------------------------------------- */

int mig_state_parse(const uint8_t *p, size_t len, struct mig_state *st,
		    char *why, size_t why_len)
{
	struct pvm_cursor c;

	memset(st, 0, sizeof(*st));
	pvm_cursor_init(&c, p, len);
	while (pvm_cursor_remaining(&c)) {
		struct mig_state_sec *one = NULL;
		uint32_t tag, slen;
		const uint8_t *body;

		if (pvm_cursor_u32(&c, &tag) || pvm_cursor_u32(&c, &slen) ||
		    pvm_cursor_bytes(&c, slen, &body)) {
			snprintf(why, why_len, "STATE message is truncated");
			return -EBADMSG;
		}
		switch (tag) {
		case ST_VCPU:
			if (st->nr_vcpus == MIG_STATE_MAX_VCPUS) {
				snprintf(why, why_len, "STATE has more than %u vCPU sections",
					 MIG_STATE_MAX_VCPUS);
				return -EBADMSG;
			}
			one = &st->vcpu[st->nr_vcpus++];
			break;
		case ST_EVTCHN: one = &st->evtchn; break;
		case ST_GRANT: one = &st->grant; break;
		case ST_XENSTORE: one = &st->xenstore; break;
		case ST_DEVICES: one = &st->devices; break;
		case ST_MEM_SHA256:
			if (slen != 32) {
				snprintf(why, why_len, "memory digest of %u bytes", slen);
				return -EBADMSG;
			}
			one = &st->digest;
			break;
		default:
			snprintf(why, why_len, "STATE section %u unknown", tag);
			return -EBADMSG;
		}
		if (one->present) {
			snprintf(why, why_len, "STATE section %u twice", tag);
			return -EBADMSG;
		}
		*one = (struct mig_state_sec){ body, slen, true };
	}
	return 0;
}

/* The memory as received against the source's digest. */
static int state_verify(struct mig_dst *d, const uint8_t *want, char *why,
			size_t why_len)
{
	uint8_t got[32];
	char a[65], b[65];
	int rc;

	/* Our mapping is written by the receive threads, which are done:
	 * every page came before this message. */
	rc = pvm_ckpt_mem_digest(d->svc->hv, d->domid, d->h.nr_pages, got);
	if (rc) {
		snprintf(why, why_len, "cannot digest the received memory: %s",
			 strerror(-rc));
		return rc;
	}
	if (memcmp(got, want, 32)) {
		mig_hex32(want, a);
		mig_hex32(got, b);
		snprintf(why, why_len,
			 "memory differs from the source's (sha256 %.16s... here %.16s...)",
			 a, b);
		return -EIO;
	}
	d->verified = true;
	return 0;
}

/* vCPUs, event channels, grants: the frontends' ports and refs exist. */
static int state_load_cpu(struct mig_dst *d, const struct mig_state *st,
			  char *why, size_t why_len)
{
	struct pvm_hv *hv = d->svc->hv;
	int rc = 0;
	uint32_t tag = ST_VCPU;

	for (uint32_t v = 0; v < st->nr_vcpus && !rc; v++)
		rc = hv->ops->vcpu_context_set(hv, d->domid, v, st->vcpu[v].p,
					       st->vcpu[v].len);
	if (!rc && st->evtchn.present) {
		tag = ST_EVTCHN;
		rc = hv->ops->evtchn_state_set(hv, d->domid, st->evtchn.p,
					       st->evtchn.len);
	}
	if (!rc && st->grant.present) {
		tag = ST_GRANT;
		rc = hv->ops->grant_state_set(hv, d->domid, st->grant.p,
					      st->grant.len);
	}
	if (rc)
		snprintf(why, why_len, "cannot load state section %u: %s", tag,
			 strerror(-rc));
	return rc;
}

/*
 * Applies the sections to the paused destination domain, in an order that
 * matters:
 *   memory digest                  (memory exactly as received: loading
 *                                   the grant table clears busy bits in
 *                                   guest memory, attached backends write)
 *   vCPUs, event channels, grants  (the frontends' ports and refs exist)
 *   devices                        (legacy: captured backends re-attach;
 *                                   they may serve requests left on the
 *                                   rings at once, which writes memory)
 *   xenstore                       (legacy only: the frontend never writes
 *                                   its nodes again, so the old ones, and
 *                                   its watches, must come along; a modern
 *                                   frontend re-handshakes against the
 *                                   fresh nodes, as on Xen)
 */
int mig_state_apply(struct mig_dst *d, const uint8_t *p, size_t len,
		    char *why, size_t why_len)
{
	struct pvm_hv *hv = d->svc->hv;
	struct mig_state *st = malloc(sizeof(*st));
	bool transparent = false;
	uint64_t t0 = pvm_now_ns();
	int rc = -ENOMEM;

	if (!st) {
		snprintf(why, why_len, "out of memory");
		return rc;
	}
	rc = mig_state_parse(p, len, st, why, why_len);
	if (!rc && st->digest.present)
		rc = state_verify(d, st->digest.p, why, why_len);
	if (!rc)
		rc = state_load_cpu(d, st, why, why_len);
	if (!rc && st->devices.present)
		rc = pvm_pvq_reconnect(hv, d->domid,
				       (enum pvm_hv_frontend_gen)d->h.dc.frontend_gen,
				       PVM_PVQ_MODE_AUTO, st->devices.p,
				       st->devices.len, &transparent, why, why_len);
	/* Re-attached backends: the frontend never rewrites its nodes. */
	if (!rc && st->xenstore.present && transparent && d->svc->xs) {
		rc = pvm_xs_import_domain(d->svc->xs, (uint16_t)d->domid,
					  st->xenstore.p, st->xenstore.len);
		if (rc)
			snprintf(why, why_len, "cannot import the domain's xenstore nodes: %s",
				 strerror(-rc));
	}
	pvm_debug("migration %.8s: state loaded in %.2f ms", d->h.id,
		  (double)(pvm_now_ns() - t0) / 1e6);
	free(st);
	return rc;
}

/* ---- source ---------------------------------------------------------------- */

static int add_section(struct pvm_buf *b, uint32_t tag,
		       int (*get)(struct mig_src *, struct pvm_buf *, uint32_t),
		       struct mig_src *m, uint32_t arg)
{
	size_t at = b->len;
	int rc;

	pvm_buf_put_u32(b, tag);
	pvm_buf_put_u32(b, 0);
	if (b->err)
		return b->err;
	rc = get(m, b, arg);
	if (rc)
		return rc;
	pvm_put_le32(b->data + at + 4, (uint32_t)(b->len - at - 8));
	return b->err;
}

static int get_vcpu(struct mig_src *m, struct pvm_buf *b, uint32_t v)
{
	return m->svc->hv->ops->vcpu_context_get(m->svc->hv, m->dom.domid, v, b);
}

static int get_evtchn(struct mig_src *m, struct pvm_buf *b, uint32_t v)
{
	return m->svc->hv->ops->evtchn_state_get(m->svc->hv, m->dom.domid, b);
}

static int get_grant(struct mig_src *m, struct pvm_buf *b, uint32_t v)
{
	return m->svc->hv->ops->grant_state_get(m->svc->hv, m->dom.domid, b);
}

static int get_xenstore(struct mig_src *m, struct pvm_buf *b, uint32_t v)
{
	struct pvm_buf img;
	int rc;

	/* Its records are 8-aligned from the start of their own buffer. */
	pvm_buf_init(&img, PVM_TP_MSG_MAX / 2);
	rc = pvm_xs_export_domain(m->svc->xs, (uint16_t)m->dom.domid, &img);
	if (!rc)
		pvm_buf_put_bytes(b, img.data, img.len);
	pvm_buf_dispose(&img);
	return rc ? rc : b->err;
}

static int get_devices(struct mig_src *m, struct pvm_buf *b, uint32_t v)
{
	pvm_buf_put_bytes(b, m->devstate.data, m->devstate.len);
	return b->err;
}

static int get_digest(struct mig_src *m, struct pvm_buf *b, uint32_t v)
{
	uint8_t dg[32];
	char hex[65];
	int rc = pvm_ckpt_mem_digest(m->svc->hv, m->dom.domid, m->dom.nr_pages, dg);

	if (rc)
		return rc;
	pvm_buf_put_bytes(b, dg, 32);
	mig_hex32(dg, hex);
	mig_src_stat(m, "memory_sha256", "%s", hex);
	return b->err;
}

int mig_state_send(struct mig_src *m)
{
	struct pvm_buf b;
	size_t at;
	int rc = 0;

	pvm_buf_init(&b, PVM_TP_MSG_MAX);
	at = mig_msg_begin(MIG_STATE, &b);
	for (uint32_t v = 0; v < m->dom.nr_vcpus && !rc; v++)
		rc = add_section(&b, ST_VCPU, get_vcpu, m, v);
	if (!rc)
		rc = add_section(&b, ST_EVTCHN, get_evtchn, m, 0);
	if (!rc)
		rc = add_section(&b, ST_GRANT, get_grant, m, 0);
	if (!rc && m->svc->xs)
		rc = add_section(&b, ST_XENSTORE, get_xenstore, m, 0);
	if (!rc && mig_src_devs_quiesced(m))
		rc = add_section(&b, ST_DEVICES, get_devices, m, 0);
	if (!rc && m->o.verify)
		rc = add_section(&b, ST_MEM_SHA256, get_digest, m, 0);
	if (!rc)
		rc = mig_msg_end(&b, at);
	if (!rc)
		rc = pvm_channel_send_msg(m->ch, b.data, b.len);
	pvm_buf_dispose(&b);
	return rc;
}
