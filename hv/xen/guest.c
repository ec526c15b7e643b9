/*
 * Whole-domain save and restore of x86 guests (PV, HVM, PVH) through Xen's
 * own toolstack libraries, where they already do what pvmig must not redo:
 *
 *   pvm_hv_xen_config_json()  libxl_retrieve_domain_configuration +
 *                             libxl_domain_config_to_json (what xl save
 *                             puts in its header)
 *   pvm_hv_xen_save()         xc_domain_save (libxenguest): the libxc
 *                             stream, page tables canonicalised (mfn ->
 *                             pfn), p2m, vCPUs, shared info; driven by
 *                             pvmig's suspend and precopy-policy callbacks
 *   pvm_hv_xen_resume()       libxl_domain_resume(suspend_cancel): the
 *                             guest continues after a checkpoint (xl save -c)
 *   pvm_hv_xen_restore()      libxl_domain_create_restore: creates the
 *                             domain from its JSON config (devices, hotplug,
 *                             xenstore) and runs xc_domain_restore on the
 *                             stream in its libxl-save-helper
 *
 * The suspend: Xen's control/shutdown protocol, which every PV Linux
 * honours (and every HVM/PVH Linux with its PV drivers, as libxl asks
 * them): write "suspend", the guest's xenbus driver acknowledges,
 * quiesces its frontends and calls SCHEDOP_shutdown(SHUTDOWN_suspend);
 * xc_domain_save requires the domain in that state when the callback
 * returns. Pre-copy rounds: the caller's policy, given libxenguest's
 * figures for each round.
 *
 * HVM and PVH domains take libxenguest's HVM stream (the same calls).
 * An HVM domain also has QEMU (dm.c): its dirty log follows libxenguest's
 * switch_qemu_logdirty callback; once the guest has suspended QEMU is
 * stopped and its device state saved; after the libxc stream (or, in a
 * checkpointed stream, after each checkpoint) that state goes out as
 * libxl's EMULATOR records, where `xl save` puts it, so that libxl's
 * restore starts QEMU on it. The caller's libxl END / CHECKPOINT_END
 * follows them.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hv/xen/internal.h"

#include <xenguest.h> /* after xenctrl.h (internal.h), which it needs */

/* Poll period while waiting for the guest to suspend. */
#define SUSPEND_POLL_MS 10u

int pvm_hv_xen_config_json(struct pvm_hv *hv, uint32_t domid,
			   char **json_out)
{
	struct xen_host *x;
	libxl_domain_config dc;
	char *json;
	int lrc, rc = 0;

	*json_out = NULL;
	if ((rc = xen_check_hv(hv, "config")))
		return rc;
	x = xen_of(hv);
	libxl_domain_config_init(&dc);
	lrc = libxl_retrieve_domain_configuration(x->ctx, domid, &dc, NULL);
	if (lrc) {
		rc = xen_libxl_errno(lrc);
		pvm_err("xen: domain %u: cannot read its libxl configuration "
			"(libxl_retrieve_domain_configuration: %d): was it "
			"created by libxl (xl create, pvmigd)?", domid, lrc);
		goto out;
	}
	json = libxl_domain_config_to_json(x->ctx, &dc);
	if (!json) {
		rc = -ENOMEM;
		pvm_err("xen: domain %u: cannot write its configuration as "
			"JSON", domid);
		goto out;
	}
	*json_out = json;
out:
	libxl_domain_config_dispose(&dc);
	return rc;
}

/* ---- save --------------------------------------------------------------- */

struct save_ctx {
	struct xen_host *x;
	uint32_t domid;
	int fd; /* the stream (the EMULATOR records go there too) */
	bool live;
	const struct pvm_hv_xen_save_cb *cb;
	int suspend_rc;
	int cb_rc; /* postcopy's or checkpoint's failure */
	enum xen_dm dm;
	struct pvm_buf dm_state; /* QEMU's, saved at the last suspend */
	int dm_rc;
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Is @domid shut down for a suspend? 1 yes, 0 not yet, < 0 error. */
static int is_suspended(struct xen_host *x, uint32_t domid)
{
	xc_domaininfo_t info;
	int rc = xen_getinfo(x, domid, &info);

	if (rc)
		return rc;
	if (!(info.flags & XEN_DOMINF_shutdown))
		return 0;
	if (((info.flags >> XEN_DOMINF_shutdownshift) &
	     XEN_DOMINF_shutdownmask) != SHUTDOWN_suspend)
		return -ESHUTDOWN; /* powered off / crashed meanwhile */
	return 1;
}

int pvm_hv_xen_suspend(struct pvm_hv *hv, uint32_t domid,
		       uint32_t timeout_ms)
{
	struct xen_host *x;
	char path[64];
	uint32_t waited = 0;
	int rc;

	if ((rc = xen_check_hv(hv, "suspend")))
		return rc;
	x = xen_of(hv);
	rc = is_suspended(x, domid);
	if (rc)
		goto done; /* already suspended (1) or gone */
	snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown",
		 domid);
	if (!xs_write(x->xsh, XBT_NULL, path, "suspend", 7)) {
		rc = xen_neg_errno();
		pvm_err("xen: domain %u: cannot write %s: %s", domid, path,
			strerror(-rc));
		return rc;
	}
	for (;;) {
		rc = is_suspended(x, domid);
		if (rc)
			break;
		if (waited >= timeout_ms) {
			/* Take the request back so that a late guest does not
			 * suspend itself with nobody to resume it. */
			xs_rm(x->xsh, XBT_NULL, path);
			rc = is_suspended(x, domid);
			if (rc)
				break;
			pvm_err("xen: domain %u did not suspend within %u ms "
				"(no answer to control/shutdown: no PV suspend "
				"support, or it hangs in its suspend path); the "
				"request was taken back and it runs on", domid,
				timeout_ms);
			return -ETIMEDOUT;
		}
		sleep_ms(SUSPEND_POLL_MS);
		waited += SUSPEND_POLL_MS;
	}
done:
	if (rc < 0) {
		pvm_err("xen: domain %u: %s while waiting for it to suspend",
			domid, rc == -ESHUTDOWN ? "it shut down" :
			strerror(-rc));
		return rc;
	}
	return 0;
}

/* libxenguest's suspend callback: 1 on success, 0 on failure. */
static int save_suspend(void *data)
{
	struct save_ctx *s = data;

	if (s->cb && s->cb->suspend)
		s->suspend_rc = s->cb->suspend(s->cb->ctx);
	else
		s->suspend_rc = pvm_hv_xen_suspend(&s->x->base, s->domid,
						   PVM_HV_XEN_SUSPEND_MS);
	if (s->suspend_rc)
		return 0;
	/* The guest is quiet: now QEMU's devices (libxl's order). */
	if (s->dm == XEN_DM_QEMU) {
		s->dm_rc = xen_dm_save(s->x, s->domid, s->live, &s->dm_state);
		if (s->dm_rc)
			return 0;
	}
	return 1;
}

/* libxenguest's switch_qemu_logdirty (called for every HVM-type domain
 * when log-dirty goes on, and off at the end): 0 success. */
static int save_qemu_logdirty(uint32_t domid, unsigned enable, void *data)
{
	struct save_ctx *s = data;
	int rc;

	if (s->dm != XEN_DM_QEMU)
		return 0; /* PVH: no device model */
	rc = xen_dm_logdirty(s->x, domid, enable);
	if (rc && enable)
		s->dm_rc = rc;
	return rc ? -1 : 0;
}

/*
 * libxenguest (4.17, xg_sr_save.c send_memory_live) asks twice a round:
 * (iteration x, dirty D) before it sends round x's D pages (x = 0: every
 * page, D = p2m size; STOP here still sends those D pages live before the
 * suspend), and (x + 1, -1) right after the send, before it reads the
 * dirty bitmap. Our callback is asked once before round 0 (0, 0, -1) and
 * then once a round, when its dirty count is known, so the time between
 * two calls is one round's send (and a round's figures are not the
 * milliseconds of a bitmap read).
 */
static int save_policy(struct precopy_stats st, void *data)
{
	struct save_ctx *s = data;
	int v;

	if (!s->cb || !s->cb->precopy)
		return st.iteration >= PVM_HV_XEN_DEFAULT_ROUNDS ||
		       (st.dirty_count >= 0 && st.dirty_count < 50) ?
			       XGS_POLICY_STOP_AND_COPY :
			       XGS_POLICY_CONTINUE_PRECOPY;
	if (st.iteration && st.dirty_count < 0)
		return XGS_POLICY_CONTINUE_PRECOPY; /* sent; bitmap next */
	if (!st.iteration)
		v = s->cb->precopy(s->cb->ctx, 0, 0, -1);
	else
		v = s->cb->precopy(s->cb->ctx, st.iteration, st.total_written,
				   st.dirty_count);
	switch (v) {
	case PVM_HV_XEN_PRECOPY_STOP:
		return XGS_POLICY_STOP_AND_COPY;
	case PVM_HV_XEN_PRECOPY_ABORT:
		return XGS_POLICY_ABORT;
	default:
		return XGS_POLICY_CONTINUE_PRECOPY;
	}
}

/* Checkpointed stream: the checkpoint is in the stream; the guest goes on
 * (libxenguest: > 0 success, <= 0 failure). */
static int save_postcopy(void *data)
{
	struct save_ctx *s = data;
	int rc;

	rc = s->cb && s->cb->postcopy ? s->cb->postcopy(s->cb->ctx) :
					pvm_hv_xen_resume(&s->x->base, s->domid);
	if (rc)
		s->cb_rc = rc;
	return rc == 0;
}

/* Checkpointed stream: another checkpoint (1), or the end of the stream
 * here (0: xc_domain_save returns success without an END record). */
static int save_checkpoint(void *data)
{
	struct save_ctx *s = data;
	int rc = 0;

	/* This checkpoint's QEMU state, before its CHECKPOINT_END. */
	if (s->dm == XEN_DM_QEMU)
		rc = xen_dm_write_records(s->x, s->domid, s->fd, &s->dm_state);
	if (rc) {
		pvm_err("xen: domain %u: cannot write its device model's "
			"state into the stream: %s", s->domid, strerror(-rc));
		s->cb_rc = rc;
		return -1;
	}
	rc = s->cb && s->cb->checkpoint ? s->cb->checkpoint(s->cb->ctx) : 0;

	if (rc < 0) {
		s->cb_rc = rc;
		return -1;
	}
	return rc > 0;
}

static int do_save(struct pvm_hv *hv, uint32_t domid, int fd, bool live,
		   bool checkpointed, const struct pvm_hv_xen_save_cb *cb)
{
	struct save_ctx s = { .domid = domid, .fd = fd, .live = live,
			      .cb = cb, .suspend_rc = 0 };
	struct save_callbacks callbacks = { 0 };
	xc_domaininfo_t info;
	int rc;

	if ((rc = xen_check_hv(hv, "save")))
		return rc;
	s.x = xen_of(hv);
	rc = xen_getinfo(s.x, domid, &info);
	if (rc) {
		pvm_err("xen: save: no domain %u: %s", domid, strerror(-rc));
		return rc;
	}
	if ((info.flags & XEN_DOMINF_hvm_guest) &&
	    (rc = xen_dm_kind(s.x, domid, &s.dm)))
		return rc;
	pvm_buf_init(&s.dm_state, XEN_DM_CONTEXT_MAX);
	callbacks.suspend = save_suspend;
	callbacks.precopy_policy = save_policy;
	/* libxenguest calls it for every HVM-type domain, unchecked. */
	callbacks.switch_qemu_logdirty = save_qemu_logdirty;
	if (checkpointed) {
		/* Remus's stream: after each checkpoint (CHECKPOINT record)
		 * postcopy resumes the guest and checkpoint says whether
		 * another follows; later checkpoints send the pages dirtied
		 * since the previous one. */
		callbacks.postcopy = save_postcopy;
		callbacks.checkpoint = save_checkpoint;
	}
	callbacks.data = &s;
	if (xc_domain_save(s.x->xch, fd, domid, live ? XCFLAGS_LIVE : 0,
			   &callbacks, checkpointed ? XC_STREAM_REMUS :
						      XC_STREAM_PLAIN, -1)) {
		rc = s.cb_rc ? s.cb_rc : s.suspend_rc ? s.suspend_rc :
			s.dm_rc ? s.dm_rc : xen_neg_errno();
		/* QEMU's failure is logged where it was found (dm.c). */
		if (rc != s.dm_rc || s.cb_rc || s.suspend_rc)
			pvm_err("xen: domain %u: xc_domain_save failed: %s "
				"(libxenguest's reason is logged above)", domid,
				strerror(-rc));
		goto out;
	}
	/* A plain stream: QEMU's state after the libxc part, as libxl. */
	if (!checkpointed && s.dm == XEN_DM_QEMU) {
		rc = xen_dm_write_records(s.x, domid, fd, &s.dm_state);
		if (rc)
			pvm_err("xen: domain %u: cannot write its device "
				"model's state into the stream: %s", domid,
				strerror(-rc));
	}
out:
	pvm_buf_dispose(&s.dm_state);
	return rc;
}

int pvm_hv_xen_save(struct pvm_hv *hv, uint32_t domid, int fd, bool live,
		    const struct pvm_hv_xen_save_cb *cb)
{
	return do_save(hv, domid, fd, live, false, cb);
}

int pvm_hv_xen_save_checkpointed(struct pvm_hv *hv, uint32_t domid, int fd,
				 const struct pvm_hv_xen_save_cb *cb)
{
	return do_save(hv, domid, fd, true, true, cb);
}

int pvm_hv_xen_resume(struct pvm_hv *hv, uint32_t domid)
{
	int lrc, rc;

	if ((rc = xen_check_hv(hv, "resume")))
		return rc;
	/* suspend_cancel = 1: the guest's suspend hypercall returns 1 and
	 * it carries on with its devices as they are (xl save -c). */
	lrc = libxl_domain_resume(xen_of(hv)->ctx, domid, 1, NULL);
	if (lrc) {
		rc = xen_libxl_errno(lrc);
		pvm_err("xen: domain %u: libxl_domain_resume: %d: the guest "
			"stays suspended (xl destroy it or restore the save)",
			domid, lrc);
		return rc;
	}
	return 0;
}

/* ---- restore ------------------------------------------------------------ */

static int do_restore(struct pvm_hv *hv, const char *json, int fd,
		      bool paused, bool checkpointed, uint32_t *domid_out)
{
	struct xen_host *x;
	libxl_domain_config dc;
	libxl_domain_restore_params params;
	uint32_t domid = (uint32_t)INVALID_DOMID;
	int lrc, rc;

	*domid_out = 0;
	if ((rc = xen_check_hv(hv, "restore")))
		return rc;
	x = xen_of(hv);
	libxl_domain_config_init(&dc);
	libxl_domain_restore_params_init(&params);
	lrc = libxl_domain_config_from_json(x->ctx, &dc, json);
	if (lrc) {
		rc = -EBADMSG;
		pvm_err("xen: restore: the save file's domain config is not "
			"libxl JSON libxl accepts (%d)", lrc);
		goto out;
	}
	/* A domid from the saving host is not asked for again: libxl would
	 * refuse a recently used one, and xl restore does not either. */
	dc.c_info.domid = (uint32_t)INVALID_DOMID;
	/* A checkpointed (Remus) stream that ends without END: libxc fails
	 * over to the last checkpoint whose CHECKPOINT_END was read, which
	 * is how a checkpoint directory is restored. */
	params.checkpointed_stream = checkpointed ?
		LIBXL_CHECKPOINTED_STREAM_REMUS : LIBXL_CHECKPOINTED_STREAM_NONE;
	params.stream_version = 2;
	lrc = libxl_domain_create_restore(x->ctx, &dc, &domid, fd, -1, &params,
					  NULL, NULL);
	if (lrc) {
		rc = xen_libxl_errno(lrc);
		pvm_err("xen: restore of '%s' failed: libxl_domain_create_restore: "
			"%d (libxl's reason is logged above)",
			dc.c_info.name ? dc.c_info.name : "?", lrc);
		/* libxl destroyed what it had built (domcreate_complete):
		 * destroying that domid again could hit a new domain. */
		goto out;
	}
	if (!paused) {
		lrc = libxl_domain_unpause(x->ctx, domid, NULL);
		if (lrc) {
			rc = xen_libxl_errno(lrc);
			pvm_err("xen: restored domain %u: libxl_domain_unpause: "
				"%d; destroying it", domid, lrc);
			libxl_domain_destroy(x->ctx, domid, NULL);
			goto out;
		}
	}
	*domid_out = domid;
out:
	libxl_domain_restore_params_dispose(&params);
	libxl_domain_config_dispose(&dc);
	return rc;
}

int pvm_hv_xen_restore(struct pvm_hv *hv, const char *json, int fd,
		       bool paused, uint32_t *domid_out)
{
	return do_restore(hv, json, fd, paused, false, domid_out);
}

int pvm_hv_xen_restore_checkpointed(struct pvm_hv *hv, const char *json,
				    int fd, bool paused, uint32_t *domid_out)
{
	return do_restore(hv, json, fd, paused, true, domid_out);
}
