/*
 * The STATE message: the stop-and-copy state of a paused domain as tagged
 * sections {u32 tag, u32 length, body}: vCPUs, event channels, grants, the
 * xenstore image, the PV backends' captured state, and the memory digest.
 * mig_state_send() builds and sends it on the source; mig_state_apply()
 * loads it into the paused destination domain.
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

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

/*
 * SHA-256 over every page of a paused domain, in pfn order, through
 * map_pages(READ): what --verify-memory compares on both ends.
 */
int mig_memory_digest(struct pvm_hv *hv, uint32_t domid, uint64_t nr_pages,
			 uint8_t out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint64_t pfns[MIG_MAP_BATCH];
	int errs[MIG_MAP_BATCH];
	unsigned int len = 32;
	int rc = 0;

	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	for (uint64_t base = 0; base < nr_pages && !rc; base += MIG_MAP_BATCH) {
		size_t n = nr_pages - base < MIG_MAP_BATCH ? nr_pages - base : MIG_MAP_BATCH;
		void *addr;

		for (size_t i = 0; i < n; i++)
			pfns[i] = base + i;
		rc = hv->ops->map_pages(hv, domid, PVM_HV_MAP_READ, pfns, n, errs,
					&addr);
		if (rc)
			break;
		for (size_t i = 0; i < n && !rc; i++)
			rc = errs[i];
		if (!rc && EVP_DigestUpdate(md, addr, n * PVM_PAGE_SIZE) != 1)
			rc = -EIO;
		hv->ops->unmap_pages(hv, addr, n);
	}
	if (!rc && EVP_DigestFinal_ex(md, out, &len) != 1)
		rc = -EIO;
	EVP_MD_CTX_free(md);
	return rc;
}

void mig_hex32(const uint8_t d[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/*
 * Applies the STATE sections to the paused destination domain. Sections
 * are collected first and applied in an order that matters:
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
	struct pvm_cursor c;
	uint32_t vcpu = 0;
	const uint8_t *want_digest = NULL, *devstate = NULL, *xsimg = NULL;
	uint32_t devstate_len = 0, xsimg_len = 0;
	bool transparent = false;
	int rc;

	/* Pass 1: find the digest and check the memory as received. */
	pvm_cursor_init(&c, p, len);
	while (pvm_cursor_remaining(&c)) {
		uint32_t tag, slen;
		const uint8_t *body;

		if (pvm_cursor_u32(&c, &tag) || pvm_cursor_u32(&c, &slen) ||
		    pvm_cursor_bytes(&c, slen, &body)) {
			snprintf(why, why_len, "STATE message is truncated");
			return -EBADMSG;
		}
		if (tag == ST_MEM_SHA256) {
			if (slen != 32) {
				snprintf(why, why_len, "memory digest of %u bytes", slen);
				return -EBADMSG;
			}
			want_digest = body;
		}
	}
	if (want_digest) {
		uint8_t got[32];
		char a[65], b[65];

		/* Our mapping is written by the receive threads, which are
		 * done: every page came before this message. */
		rc = mig_memory_digest(hv, d->domid, d->nr_pages, got);
		if (rc) {
			snprintf(why, why_len, "cannot digest the received memory: %s",
				 strerror(-rc));
			return rc;
		}
		if (memcmp(got, want_digest, 32)) {
			mig_hex32(want_digest, a);
			mig_hex32(got, b);
			snprintf(why, why_len,
				 "memory differs from the source's (sha256 %.16s... here %.16s...)",
				 a, b);
			return -EIO;
		}
		d->verified = true;
	}

	/* Pass 2: load the state. */
	pvm_cursor_init(&c, p, len);
	while (pvm_cursor_remaining(&c)) {
		uint32_t tag, slen;
		const uint8_t *body;

		if (pvm_cursor_u32(&c, &tag) || pvm_cursor_u32(&c, &slen) ||
		    pvm_cursor_bytes(&c, slen, &body))
			return -EBADMSG;
		uint64_t t0 = pvm_now_ns();

		switch (tag) {
		case ST_VCPU:
			rc = hv->ops->vcpu_context_set(hv, d->domid, vcpu++,
						       body, slen);
			break;
		case ST_EVTCHN:
			rc = hv->ops->evtchn_state_set(hv, d->domid, body, slen);
			break;
		case ST_GRANT:
			rc = hv->ops->grant_state_set(hv, d->domid, body, slen);
			break;
		case ST_XENSTORE:
			xsimg = body;
			xsimg_len = slen;
			rc = 0;
			break;
		case ST_DEVICES:
			devstate = body;
			devstate_len = slen;
			rc = 0;
			break;
		case ST_MEM_SHA256:
			rc = 0;
			break;
		default:
			snprintf(why, why_len, "STATE section %u unknown", tag);
			return -EBADMSG;
		}
		pvm_debug("migration %.8s: state section %u loaded in %.2f ms", d->id,
			  tag, (double)(pvm_now_ns() - t0) / 1e6);
		if (rc) {
			snprintf(why, why_len, "cannot load state section %u: %s",
				 tag, strerror(-rc));
			return rc;
		}
	}
	if (devstate) {
		rc = pvm_pvq_reconnect(hv, d->domid,
				       (enum pvm_hv_frontend_gen)d->dc.frontend_gen,
				       PVM_PVQ_MODE_AUTO, devstate, devstate_len,
				       &transparent, why, why_len);
		if (rc)
			return rc;
	}
	/* Re-attached backends: the frontend never rewrites its nodes. */
	if (xsimg && transparent && d->svc->xs) {
		rc = pvm_xs_import_domain(d->svc->xs, (uint16_t)d->domid, xsimg,
					  xsimg_len);
		if (rc) {
			snprintf(why, why_len, "cannot import the domain's xenstore nodes: %s",
				 strerror(-rc));
			return rc;
		}
	}
	return 0;
}

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


int mig_state_send(struct mig_src *m)
{
	struct pvm_buf b;
	int rc = 0;

	pvm_buf_init(&b, PVM_TP_MSG_MAX);
	pvm_buf_put_u8(&b, MIG_STATE);
	for (uint32_t v = 0; v < m->dom.nr_vcpus && !rc; v++)
		rc = add_section(&b, ST_VCPU, get_vcpu, m, v);
	if (!rc)
		rc = add_section(&b, ST_EVTCHN, get_evtchn, m, 0);
	if (!rc)
		rc = add_section(&b, ST_GRANT, get_grant, m, 0);
	if (!rc && m->svc->xs)
		rc = add_section(&b, ST_XENSTORE, get_xenstore, m, 0);
	if (!rc && m->quiesced)
		rc = add_section(&b, ST_DEVICES, get_devices, m, 0);
	if (!rc && m->verify) {
		uint8_t dg[32];
		char hex[65];

		rc = mig_memory_digest(m->svc->hv, m->dom.domid, m->dom.nr_pages, dg);
		if (!rc) {
			pvm_buf_put_u32(&b, ST_MEM_SHA256);
			pvm_buf_put_u32(&b, 32);
			pvm_buf_put_bytes(&b, dg, 32);
			rc = b.err;
			mig_hex32(dg, hex);
			mig_src_stat(m, "memory_sha256", "%s", hex);
		}
	}
	if (!rc)
		rc = pvm_channel_send_msg(m->ch, b.data, b.len);
	pvm_buf_dispose(&b);
	return rc;
}

