/*
 * PV device state in save files: pvquiesce at the pause, PVMIG_DEVICE and
 * PVMIG_XENSTORE records in the stream, reconnect on restore
 * (docs/save-restore.md "PV devices", docs/stream-format.md PVMIG_DEVICE).
 *
 *   save     pvm_ckpt__devs_quiesce()   domain paused: backends drained and
 *                                captured (pvquiesce's blob), a legacy
 *                                guest's xenstore subtree exported
 *            pvm_ckpt__devs_resume()    a checkpoint (-c, epoch) or a failure:
 *                                the backends go on in place
 *            pvm_ckpt__devs_write()     one PVMIG_DEVICE per device (converted
 *                                from the sim backend state, lossless),
 *                                PVMIG_XENSTORE for a legacy guest
 *   restore  pvm_ckpt__devs_on_record() / _on_xenstore()  per stream; the
 * newest stream's set wins (pvm_ckpt__devs_stream_start)
 *            pvm_ckpt__devs_reconnect() domain paused, memory/vCPU/evtchn/grant
 *                                state loaded: pvm_pvq_reconnect, then
 *                                (legacy) the xenstore import
 *            pvm_ckpt__devs_wait()      after unpause: pvm_pvq_wait_connected,
 *                                naming a device that did not come back
 */
#include "checkpoint/internal.h"

#include <stdio.h>
#include <string.h>
#include <xen/io/xenbus.h>

#include "hv/sim/backend.h"
#include "hv/sim/xenstored/xenstored.h"

#define SR_DEV_STATE_MAX (64u * 1024u)
#define SR_XS_IMAGE_MAX (4u << 20)

/* The PV devices a config names, as pvquiesce addresses them (the same
 * rule as migrate/domconfig.c's mig_config_devices()). */
void pvm_ckpt__devs_init(struct sr_devs *s, const struct pvm_ckpt_devices *d)
{
	memset(s, 0, sizeof(*s));
	pvm_buf_init(&s->state, SR_DEV_STATE_MAX);
	pvm_buf_init(&s->xsimg, SR_XS_IMAGE_MAX);
	if (!d)
		return;
	s->legacy = d->frontend_gen == PVM_HV_FRONTEND_LEGACY;
	for (uint32_t i = 0; i < d->nr_disks && i < PVM_CKPT_DISKS_MAX &&
			     s->n < PVM_PVQ_MAX_DEVICES; i++) {
		int id = pvm_pvq_vdev_devid(d->disks[i].vdev);

		if (id < 0)
			continue;
		s->dev[s->n] = (struct pvm_pvq_device){ PVM_PVQ_VBD, (uint32_t)id };
		snprintf(s->name[s->n], sizeof(s->name[0]), "vbd %s (%d)",
			 d->disks[i].vdev, id);
		s->n++;
	}
	for (uint32_t i = 0; i < d->nr_nics && i < PVM_CKPT_NICS_MAX &&
			     s->n < PVM_PVQ_MAX_DEVICES; i++) {
		s->dev[s->n] = (struct pvm_pvq_device){ PVM_PVQ_VIF, i };
		snprintf(s->name[s->n], sizeof(s->name[0]), "vif %u", i);
		s->n++;
	}
}

void pvm_ckpt__devs_dispose(struct sr_devs *s)
{
	pvm_buf_dispose(&s->state);
	pvm_buf_dispose(&s->xsimg);
}

/* ---- save ---------------------------------------------------------------- */

int pvm_ckpt__devs_suspend(struct sr_devs *s, struct pvm_hv *hv, uint32_t domid,
			   uint32_t timeout_ms, char *desc, size_t desc_len,
			   struct pvm_error *e)
{
	enum pvm_pvq_mode chosen;
	int rc;

	if (!s->requested_set) {
		s->requested = s->mode;
		s->requested_set = true;
	}
	/* Chosen before the suspend: a suspended guest still advertises. */
	chosen = pvm_pvq_choose_mode(hv, domid, s->requested);
	rc = pvm_pvq_suspend(hv, domid, timeout_ms, &s->susp);
	if (rc)
		return pvm_error_set(e, rc,
				     "domain %u: cannot ask it to suspend: %s",
				     domid, strerror(-rc));
	/* One that did not suspend keeps its rings: transparent. */
	s->mode = pvm_pvq_mode_after_suspend(s->requested, chosen, &s->susp);
	if (s->susp.cooperative)
		snprintf(desc, desc_len, "cooperative");
	else
		snprintf(desc, desc_len, "non-cooperative: %s", s->susp.why);
	return 0;
}

int pvm_ckpt__devs_quiesce(struct sr_devs *s, struct pvm_hv *hv, uint32_t domid,
			   struct pvm_xenstored *xs, uint32_t drain_timeout_ms,
			   struct pvm_error *e)
{
	char why[256] = "";
	int rc;

	pvm_buf_reset(&s->state);
	pvm_buf_reset(&s->xsimg);
	if (!s->n)
		return 0;
	if (s->mode == PVM_PVQ_MODE_AUTO) /* no suspend request made */
		s->mode = pvm_pvq_choose_mode(hv, domid, s->mode);
	if (s->mode == PVM_PVQ_MODE_TRANSPARENT && !xs)
		return pvm_error_set(
		    e, -EOPNOTSUPP,
		    "domain %u: a transparent "
		    "reconnect needs its xenstore nodes saved, and "
		    "this host has no xenstore server to read them "
		    "from",
		    domid);
	rc = pvm_pvq_quiesce(hv, domid, s->dev, s->n, s->mode, drain_timeout_ms,
			     &s->state, why, sizeof(why));
	if (rc)
		return pvm_error_set(e, rc, "cannot quiesce the PV devices: %s",
				     why[0] ? why : strerror(-rc));
	s->quiesced = true;
	if (s->mode == PVM_PVQ_MODE_TRANSPARENT) {
		/* Its records are 8-aligned from the start of their own
		 * buffer: s->xsimg holds nothing else. */
		rc = pvm_xs_export_domain(xs, (uint16_t)domid, &s->xsimg);
		if (rc)
			return pvm_error_set(e, rc,
					     "domain %u: cannot export its "
					     "xenstore nodes: %s",
					     domid, strerror(-rc));
	}
	return 0;
}

void pvm_ckpt__devs_resume(struct sr_devs *s, struct pvm_hv *hv, uint32_t domid)
{
	if (!s->quiesced)
		return;
	pvm_pvq_resume(hv, domid, s->dev, s->n);
	s->quiesced = false;
}

static uint64_t feat_to_ckpt(uint32_t type, uint64_t f)
{
	uint64_t o = 0;

	if (type == PVM_SIM_DEV_VBD) {
		if (f & PVM_SIM_FEAT_FLUSH)
			o |= PVM_CKPT_VBD_F_FLUSH;
	} else {
		if (f & PVM_SIM_FEAT_RX_COPY)
			o |= PVM_CKPT_VIF_F_RX_COPY;
		if (f & PVM_SIM_FEAT_RX_NOTIFY)
			o |= PVM_CKPT_VIF_F_RX_NOTIFY;
	}
	return o;
}

static const char *xs_type(uint32_t sim_type)
{
	return sim_type == PVM_SIM_DEV_VBD ? "vbd" : "vif";
}

int pvm_ckpt__devs_write(const struct sr_devs *s, struct pvm_ckpt_writer *w,
			 uint32_t domid, struct pvm_error *e)
{
	struct pvm_cursor c;
	uint32_t count = 0;
	int rc;

	if (!s->n)
		return 0;
	pvm_cursor_init(&c, s->state.data, s->state.len);
	if (pvm_cursor_u32(&c, &count) || count != s->n)
		return pvm_error_set(e, -EBADMSG,
				     "domain %u: pvquiesce captured %u "
				     "devices, %zu expected",
				     domid, count, s->n);
	for (uint32_t i = 0; i < count; i++) {
		struct pvm_sim_backend_state st;
		struct pvm_ckpt_ring rings[PVM_SIM_BACKEND_MAX_RINGS];
		struct pvm_ckpt_device d;
		char fe[96], be[96];
		const uint8_t *body;
		uint32_t blen;

		if (pvm_cursor_u32(&c, &blen) || pvm_cursor_bytes(&c, blen, &body) ||
		    pvm_sim_backend_state_decode(body, blen, &st) ||
		    st.xb_state > 8)
			return pvm_error_set(e, -EBADMSG,
					     "domain %u: %s: captured "
					     "state is malformed",
					     domid, s->name[i]);
		memset(&d, 0, sizeof(d));
		memset(rings, 0, sizeof(rings));
		d.dev_type = st.type == PVM_SIM_DEV_VBD ? PVM_CKPT_DEV_VBD
							: PVM_CKPT_DEV_VIF;
		d.devid = st.devid;
		d.backend_domid = 0;
		d.fe_state = XenbusStateUnknown; /* not captured */
		d.be_state = (uint8_t)st.xb_state;
		d.flags = st.mode;
		d.features = feat_to_ckpt(st.type, st.features);
		snprintf(fe, sizeof(fe), "/local/domain/%u/device/%s/%u", domid,
			 xs_type(st.type), st.devid);
		snprintf(be, sizeof(be), "/local/domain/0/backend/%s/%u/%u",
			 xs_type(st.type), domid, st.devid);
		d.fe_path = fe;
		d.be_path = be;
		/* A backend not connected has no ring: one all-zero ring
		 * stands in (the record needs one); restore ignores it. */
		d.nr_rings = (uint16_t)(st.nr_rings ? st.nr_rings : 1);
		for (uint32_t r = 0; r < st.nr_rings; r++) {
			rings[r].kind = st.type == PVM_SIM_DEV_VBD ?
						PVM_CKPT_RING_BLK :
					r == 0 ? PVM_CKPT_RING_NET_TX :
						 PVM_CKPT_RING_NET_RX;
			rings[r].evtchn = st.fe_port;
			rings[r].req_cons = st.ring[r].req_cons;
			rings[r].rsp_prod_pvt = st.ring[r].rsp_prod_pvt;
			rings[r].req_prod_seen = st.ring[r].req_cons;
			rings[r].ring_ref[0] = st.ring[r].ref;
		}
		if (!st.nr_rings)
			rings[0].kind = st.type == PVM_SIM_DEV_VBD ?
						PVM_CKPT_RING_BLK :
						PVM_CKPT_RING_NET_TX;
		d.rings = rings;
		rc = pvm_ckpt_write_device(w, &d);
		if (rc)
			return pvm_error_set(
			    e, rc, "cannot write PVMIG_DEVICE of %s: %s",
			    s->name[i], strerror(-rc));
	}
	if (s->xsimg.len) {
		rc = pvm_ckpt_write_xenstore(w, s->xsimg.data, s->xsimg.len);
		if (rc)
			return pvm_error_set(e, rc,
					     "cannot write PVMIG_XENSTORE: %s",
					     strerror(-rc));
	}
	return 0;
}

/* ---- restore --------------------------------------------------------------- */

void pvm_ckpt__devs_stream_start(struct sr_devs *s)
{
	memset(s->have, 0, sizeof(s->have));
	s->have_xs = false;
	s->records = 0;
	pvm_buf_reset(&s->xsimg);
}

/* PVMIG_DEVICE (validated by the reader) -> the sim backend state, with
 * the checks a record from a file needs. */
static int from_record(const struct pvm_ckpt_device *d,
		       const struct pvm_pvq_device *want,
		       struct pvm_sim_backend_state *st, const char **why)
{
	bool vbd = want->type == PVM_PVQ_VBD;
	uint32_t nr = vbd ? 1 : 2;
	uint64_t known = vbd ? PVM_CKPT_VBD_F_FLUSH
			     : PVM_CKPT_VIF_F_RX_COPY | PVM_CKPT_VIF_F_RX_NOTIFY;

	memset(st, 0, sizeof(*st));
	if (d->backend_domid != 0) {
		*why = "its backend is not in domain 0";
		return -EBADMSG;
	}
	if (d->features & ~known) {
		*why = "feature bits this host's backends do not have";
		return -EBADMSG;
	}
	if ((d->flags & PVM_CKPT_DEV_F_MODE_MASK) > PVM_PVQ_MODE_TRANSPARENT) {
		*why = "a reconnect mode that does not exist";
		return -EBADMSG;
	}
	st->type = vbd ? PVM_SIM_DEV_VBD : PVM_SIM_DEV_VIF;
	st->devid = d->devid;
	st->mode = d->flags & PVM_CKPT_DEV_F_MODE_MASK;
	st->xb_state = d->be_state;
	if (vbd)
		st->features = d->features & PVM_CKPT_VBD_F_FLUSH ?
				       PVM_SIM_FEAT_FLUSH : 0;
	else
		st->features = (d->features & PVM_CKPT_VIF_F_RX_COPY ?
					PVM_SIM_FEAT_RX_COPY : 0) |
			       (d->features & PVM_CKPT_VIF_F_RX_NOTIFY ?
					PVM_SIM_FEAT_RX_NOTIFY : 0);
	if (d->be_state != XenbusStateConnected)
		return 0; /* no ring: the stand-in is ignored */
	if (d->nr_rings != nr) {
		*why = vbd ? "a connected vbd with other than 1 ring"
			   : "a connected vif with other than 2 rings";
		return -EBADMSG;
	}
	st->nr_rings = nr;
	st->fe_port = d->rings[0].evtchn;
	for (uint32_t r = 0; r < nr; r++) {
		const struct pvm_ckpt_ring *g = &d->rings[r];
		uint8_t kind = vbd ? PVM_CKPT_RING_BLK :
			       r == 0 ? PVM_CKPT_RING_NET_TX : PVM_CKPT_RING_NET_RX;

		if (g->kind != kind || g->order != 0 || g->queue != 0 ||
		    g->evtchn != st->fe_port) {
			*why = "a ring of another kind, size, queue or port";
			return -EBADMSG;
		}
		st->ring[r].ref = g->ring_ref[0];
		st->ring[r].req_cons = g->req_cons;
		st->ring[r].rsp_prod_pvt = g->rsp_prod_pvt;
	}
	return 0;
}

int pvm_ckpt__devs_on_record(struct sr_devs *s, const struct pvm_ckpt_device *d,
			     struct pvm_error *e)
{
	uint32_t type = d->dev_type == PVM_CKPT_DEV_VBD ? PVM_PVQ_VBD :
			d->dev_type == PVM_CKPT_DEV_VIF ? PVM_PVQ_VIF : 0;
	const char *why = "";
	size_t i;
	int rc;

	s->records++;
	for (i = 0; i < s->n; i++)
		if (s->dev[i].type == type && s->dev[i].devid == d->devid)
			break;
	if (i == s->n)
		return pvm_error_set(e, -EBADMSG,
				     "PVMIG_DEVICE for device %u/%u, "
				     "which the saved config does not have",
				     d->dev_type, d->devid);
	if (s->have[i])
		return pvm_error_set(e, -EBADMSG,
				     "two PVMIG_DEVICE records for %s "
				     "in one stream",
				     s->name[i]);
	rc = from_record(d, &s->dev[i], &s->st[i], &why);
	if (rc)
		return pvm_error_set(e, rc,
				     "%s: its PVMIG_DEVICE record is corrupt "
				     "(%s)",
				     s->name[i], why);
	s->have[i] = true;
	return 0;
}

int pvm_ckpt__devs_on_xenstore(struct sr_devs *s, const void *img, size_t len,
			       struct pvm_error *e)
{
	pvm_buf_reset(&s->xsimg);
	pvm_buf_put_bytes(&s->xsimg, img, len);
	if (s->xsimg.err)
		return pvm_error_set(e, -E2BIG, "PVMIG_XENSTORE too large");
	s->have_xs = true;
	return 0;
}

int pvm_ckpt__devs_reconnect(struct sr_devs *s, struct pvm_hv *hv,
			     uint32_t domid, struct pvm_xenstored *xs,
			     bool required, const char *path,
			     struct pvm_error *e)
{
	struct pvm_buf blob;
	char why[256] = "";
	uint32_t saved_domid = s->saved_domid;
	bool transparent = false;
	int rc;

	if (!s->n)
		return 0;
	for (size_t i = 0; i < s->n; i++) {
		if (s->have[i])
			continue;
		if (required)
			return pvm_error_set(
			    e, -EBADMSG,
			    "%s: no PVMIG_DEVICE record "
			    "for %s (its state at the save): the "
			    "file is damaged",
			    path, s->name[i]);
		/* Written before pvmig saved device state: the devices
		 * start afresh (a legacy frontend will not reconnect). */
		pvm_warn("restore: %s holds no state of %s (an older save): "
			 "it starts afresh", path, s->name[i]);
		return 0;
	}
	for (size_t i = 0; i < s->n; i++) {
		enum pvm_pvq_mode m = s->mode ? s->mode :
				      s->st[i].mode ? (enum pvm_pvq_mode)s->st[i].mode :
				      s->legacy ? PVM_PVQ_MODE_TRANSPARENT :
						  PVM_PVQ_MODE_COOPERATIVE;

		if (m == PVM_PVQ_MODE_TRANSPARENT)
			transparent = true;
	}
	if (transparent && (!s->have_xs || !xs))
		return pvm_error_set(
		    e, s->have_xs ? -EOPNOTSUPP : -EBADMSG, "%s",
		    s->have_xs ? "this host has no xenstore server to give the "
				 "guest its nodes back (transparent reconnect)"
			       : "the guest's xenstore nodes (PVMIG_XENSTORE), "
				 "which a transparent reconnect needs, are "
				 "missing from the file");
	if (transparent && saved_domid && saved_domid != domid)
		return pvm_error_set(
		    e, -EEXIST,
		    "its PV devices reconnect "
		    "transparently, which needs the saved domid %u, "
		    "and the domain got %u (restore with --pv-mode "
		    "cooperative if its frontends re-handshake)",
		    saved_domid, domid);
	pvm_buf_init(&blob, SR_DEV_STATE_MAX);
	pvm_buf_put_u32(&blob, (uint32_t)s->n);
	for (size_t i = 0; i < s->n; i++) {
		size_t at = blob.len;

		s->st[i].domid = domid;
		pvm_buf_put_u32(&blob, 0);
		pvm_sim_backend_state_encode(&s->st[i], &blob);
		if (!blob.err)
			pvm_put_le32(blob.data + at, (uint32_t)(blob.len - at - 4));
	}
	rc = blob.err;
	if (!rc)
		rc = pvm_pvq_reconnect(hv, domid,
				       s->legacy ? PVM_HV_FRONTEND_LEGACY
						 : PVM_HV_FRONTEND_MODERN,
				       s->mode, blob.data, blob.len,
				       &transparent, why, sizeof(why));
	pvm_buf_dispose(&blob);
	if (rc)
		return pvm_error_set(e, rc,
				     "domain %u: cannot reconnect its PV "
				     "devices: %s",
				     domid, why[0] ? why : strerror(-rc));
	s->reconnected = true;
	if (transparent) {
		rc = pvm_xs_import_domain(xs, (uint16_t)domid, s->xsimg.data,
					  s->xsimg.len);
		if (rc)
			return pvm_error_set(e, rc,
					     "domain %u: cannot import its "
					     "xenstore nodes: %s",
					     domid, strerror(-rc));
	}
	return 0;
}

void pvm_ckpt__devs_wait(struct sr_devs *s, struct pvm_hv *hv, uint32_t domid,
			 uint32_t timeout_ms, char *msg, size_t len)
{
	char why[256];
	size_t off = 0;

	msg[0] = '\0';
	if (!s->n)
		return;
	if (!s->reconnected) {
		snprintf(msg, len, "%zu not restored (no device state in the "
			 "file): they start afresh", s->n);
		return;
	}
	if (pvm_pvq_wait_connected(hv, domid, s->dev, s->n, timeout_ms, why,
				   sizeof(why)) == 0) {
		snprintf(msg, len, "all %zu reconnected", s->n);
		return;
	}
	for (size_t i = 0; i < s->n; i++) {
		if (pvm_pvq_wait_connected(hv, domid, &s->dev[i], 1, 0, why,
					   sizeof(why)) == 0)
			continue;
		off += (size_t)snprintf(msg + off, off < len ? len - off : 0,
					"%s%s", off ? ", " : "", s->name[i]);
		if (off >= len)
			break;
	}
	if (!off) { /* all there by now */
		snprintf(msg, len, "all %zu reconnected", s->n);
		return;
	}
	if (off < len)
		snprintf(msg + off, len - off, " did not reconnect within %u ms",
			 timeout_ms);
	pvm_warn("domain %u: %s", domid, msg);
}
