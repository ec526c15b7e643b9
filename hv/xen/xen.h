/*
 * hv/xen/ — the real Xen 4.17 backend of the hv ops table (hv/hv.h), on
 * libxenctrl, libxenforeignmemory, libxenstore and libxenlight.
 *
 *   pvm_hv_xen_open()      the instance (pvm_hv_open("xen") calls it)
 *   pvm_hv_is_xen()        is this instance the Xen backend?
 *   pvm_hv_xen_disk_*()    PV block device attach/detach (libxl)
 *   pvm_hv_xen_nic_*()     PV network device attach/detach (libxl)
 *   pvm_hv_xen_save()      an x86 PV, HVM or PVH domain as a libxc
 *                          stream (xc_domain_save, pvmig's callbacks),
 *                          an HVM domain's QEMU state after it
 *   pvm_hv_xen_restore()   a libxl stream into a new domain
 *                          (libxl_domain_create_restore)
 *   pvm_hv_xen_config_json(), _suspend(), _resume(): around those
 *
 * What works on stock Xen and what does not is in docs/xen.md. When the
 * Xen libraries are not found at configure time, hv/xen/absent.c provides
 * the same symbols, each returning -EOPNOTSUPP.
 */
#ifndef PVM_HV_XEN_H
#define PVM_HV_XEN_H

#include <stdbool.h>
#include <stdint.h>

#include "hv/hv.h"

/*
 * Opens the control interfaces of the local Xen host (privcmd, xenstore,
 * libxl). The caller owns *@hv_out and ends it with ops->close. -EACCES
 * without privilege; -EOPNOTSUPP when this host is not running Xen (no
 * privcmd or xenstored: the failing library is logged) or pvmig was built
 * without the Xen libraries; another negative errno otherwise.
 */
int pvm_hv_xen_open(struct pvm_hv **hv_out);

/*
 * Where domain_create records the config's frontend generation, relative
 * to /local/domain/<domid>/: "legacy" or "modern".
 */
#define PVM_HV_XEN_XS_FRONTEND "pvmig/frontend"

/* True when @hv was made by pvm_hv_xen_open(). */
bool pvm_hv_is_xen(const struct pvm_hv *hv);

/* A PV disk (after libxl_device_disk, reduced). Strings borrowed. */
struct pvm_hv_xen_disk {
	const char *target;     /* image file or block device in the backend */
	const char *vdev;       /* guest name, "xvda" */
	bool readonly;          /* mode r instead of w */
	uint32_t backend_domid; /* 0: dom0 */
};

/* A PV network interface (after libxl_device_nic, reduced). */
struct pvm_hv_xen_nic {
	int devid;              /* -1: next free; detach needs the real one */
	const char *mac;        /* "00:16:3e:xx:xx:xx", NULL: libxl picks */
	const char *bridge;     /* NULL: libxl's default (xenbr0) */
	uint32_t backend_domid; /* 0: dom0 */
};

/*
 * Attach/detach through libxl (synchronous: return after the backend is
 * connected / removed). 0 or a negative errno (-ESRCH no domain, -EEXIST
 * device exists, -EINVAL bad description, -EIO otherwise); logged once.
 * @hv must be a Xen instance (-EINVAL otherwise).
 */
int pvm_hv_xen_disk_attach(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_hv_xen_disk *disk);
int pvm_hv_xen_disk_detach(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_hv_xen_disk *disk);
int pvm_hv_xen_nic_attach(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_hv_xen_nic *nic);
int pvm_hv_xen_nic_detach(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_hv_xen_nic *nic);

/* ---- whole-domain save/restore through libxenguest/libxl (guest.c) ---- */

/* Default bound on the wait for a guest to suspend (a nested TCG host is
 * slow; a native one answers in milliseconds). */
#define PVM_HV_XEN_SUSPEND_MS 60000u
/* Pre-copy rounds without a policy callback. */
#define PVM_HV_XEN_DEFAULT_ROUNDS 5u

/*
 * The domain's libxl configuration as JSON (libxl_domain_config), what
 * `xl save` writes into its header. *@json_out is malloc'd, the caller
 * frees it. -ESRCH, -EINVAL (not a libxl-made domain), -ENOMEM; logged.
 */
int pvm_hv_xen_config_json(struct pvm_hv *hv, uint32_t domid,
			   char **json_out);

/*
 * Asks guest @domid (PV, or HVM/PVH with PV drivers) to suspend (xenstore control/shutdown = "suspend")
 * and waits, up to @timeout_ms, until Xen reports it shut down for a
 * suspend. 0 (also when it already was), -ETIMEDOUT (the request is taken
 * back), -ESHUTDOWN (it shut down for another reason), -ESRCH; logged.
 */
int pvm_hv_xen_suspend(struct pvm_hv *hv, uint32_t domid,
		       uint32_t timeout_ms);

enum {
	PVM_HV_XEN_PRECOPY_CONTINUE = 0,
	PVM_HV_XEN_PRECOPY_STOP = 1,  /* suspend, send the rest */
	PVM_HV_XEN_PRECOPY_ABORT = -1 /* give up; the guest runs on */
};

/* pvm_hv_xen_save()'s callbacks; any may be NULL. Called on the
 * caller's thread, from inside xc_domain_save. */
struct pvm_hv_xen_save_cb {
	/* Brings the guest to its suspended state: 0 or a negative errno.
	 * NULL: pvm_hv_xen_suspend(PVM_HV_XEN_SUSPEND_MS). */
	int (*suspend)(void *ctx);
	/* Live: once before round 0 (0, 0, -1), then once after each
	 * pre-copy round r, when its dirty pages are known (r + 1, pages
	 * sent so far, pages dirty now): PVM_HV_XEN_PRECOPY_*; STOP sends
	 * those dirty pages once more live, then suspends. NULL: stop after
	 * PVM_HV_XEN_DEFAULT_ROUNDS rounds or under 50 dirty pages. */
	int (*precopy)(void *ctx, uint32_t round, uint64_t written,
		       int64_t dirty);
	/* Checkpointed saves only. After each checkpoint is in the stream
	 * (libxc CHECKPOINT record written): lets the guest carry on, 0 or a
	 * negative errno. NULL: pvm_hv_xen_resume(). */
	int (*postcopy)(void *ctx);
	/* Checkpointed saves only, after postcopy: 1 for another checkpoint
	 * (the pages dirtied since this one), 0 to end the stream here, or a
	 * negative errno (the save fails). NULL: 0. */
	int (*checkpoint)(void *ctx);
	void *ctx;
};

/*
 * Writes x86 domain @domid (PV, HVM or PVH) to @fd as a libxc stream
 * (Xen's format: image header ... END), with xc_domain_save: live
 * (log-dirty pre-copy rounds, then suspend) or not (suspend first). Page
 * tables, the p2m and the vCPU contexts are canonicalised by libxenguest,
 * so the stream restores on any Xen host. For an HVM domain with QEMU
 * (libxl's "qemu_xen") QEMU is stopped after the guest suspended and its
 * device state follows the libxc stream on @fd as libxl's
 * EMULATOR_XENSTORE_DATA / EMULATOR_CONTEXT records (the caller writes
 * libxl's END after them). On success the guest is left suspended (and
 * QEMU stopped): the caller resumes it (pvm_hv_xen_resume, which restarts
 * QEMU too) or destroys it. On failure after the suspend the guest is
 * suspended too (resume it). -EOPNOTSUPP for a device model other than
 * QEMU upstream; -ETIMEDOUT when the guest did not answer its suspend
 * request (it runs on); the libxenguest or QMP failure otherwise; logged.
 */
int pvm_hv_xen_save(struct pvm_hv *hv, uint32_t domid, int fd, bool live,
		    const struct pvm_hv_xen_save_cb *cb);

/*
 * pvm_hv_xen_save() as a checkpointed stream (libxenguest's Remus stream):
 * a live first checkpoint, then, while cb->checkpoint returns 1, a suspend,
 * the pages dirtied since the previous checkpoint and the vCPU state, each
 * ended by a libxc CHECKPOINT record, after which cb->postcopy resumes the
 * guest and cb->checkpoint runs (it may write the libxl CHECKPOINT_END
 * record to @fd; an HVM domain's EMULATOR records are on @fd before it).
 * There is no END record: the stream stops after the checkpoint for which
 * cb->checkpoint returned 0, with the guest running.
 */
int pvm_hv_xen_save_checkpointed(struct pvm_hv *hv, uint32_t domid, int fd,
				 const struct pvm_hv_xen_save_cb *cb);

/* Lets a guest suspended for a save carry on (libxl_domain_resume with
 * suspend_cancel, as xl save -c does). 0 or a negative errno; logged. */
int pvm_hv_xen_resume(struct pvm_hv *hv, uint32_t domid);

/*
 * Creates a domain from @json (a libxl_domain_config, as from
 * pvm_hv_xen_config_json or an `xl save` header; a fresh domid is taken)
 * and restores it from the libxl stream (v2) read from @fd, through
 * libxl_domain_create_restore; unpaused unless @paused. *@domid_out on
 * success. On failure no new domain is left. -EBADMSG (config), the
 * libxl failure as an errno otherwise; logged.
 */
int pvm_hv_xen_restore(struct pvm_hv *hv, const char *json, int fd,
		       bool paused, uint32_t *domid_out);

/* pvm_hv_xen_restore() of a checkpointed stream (as written with
 * pvm_hv_xen_save_checkpointed, a libxl CHECKPOINT_END after each
 * checkpoint): the domain is built from the last checkpoint whose
 * CHECKPOINT_END was read before the stream ended (libxc's Remus
 * failover). */
int pvm_hv_xen_restore_checkpointed(struct pvm_hv *hv, const char *json,
				    int fd, bool paused, uint32_t *domid_out);

#endif /* PVM_HV_XEN_H */
