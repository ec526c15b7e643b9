/*
 * hv/ — the hypervisor backend interface. Migration, checkpoint and quiesce
 * code talk to a hypervisor only through one const ops table, struct
 * pvm_hv_ops, which each backend fills with designated initializers:
 *
 *   hv/sim/   the embedded simulated Xen host (guests are processes)
 *   hv/xen/   libxenctrl & co. (later)
 *
 * A backend instance is a struct pvm_hv whose only public member is its ops
 * table; callers write hv->ops->pause(hv, domid). pvm_hv_open() picks a
 * backend by name at run time, so both can live in one binary.
 *
 * Slots are shaped after libxenctrl (the call each mirrors is named in its
 * comment). The order a save/migration uses them:
 *
 *   source:       domain_info → logdirty_enable → [logdirty_read_clear →
 *                 map_pages(READ) → unmap_pages]* → pause →
 *                 logdirty_read_clear → map/unmap → vcpu_context_get,
 *                 evtchn_state_get, grant_state_get → (destroy | unpause)
 *   destination:  domain_create(start_paused) → [map_pages(WRITE) →
 *                 unmap_pages]* → vcpu_context_set, grant_state_set,
 *                 evtchn_state_set → unpause
 *
 * Every slot is mandatory; a backend that cannot do something returns
 * -EOPNOTSUPP from a stub, never leaves a NULL. All int-returning slots
 * return 0 or a negative errno and log the failure once, naming the domain.
 * Unless a slot says otherwise it may be called from any thread; the backend
 * serialises internally. -ESRCH always means "no such domain".
 */
#ifndef PVM_HV_H
#define PVM_HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Xen's DOMID_FIRST_RESERVED: valid guest domids are 1..0x7fef. */
#define PVM_HV_DOMID_MAX 0x7fefu
/* Ask domain_create for any free domid. */
#define PVM_HV_DOMID_ANY 0xffffffffu

/* struct pvm_hv_dominfo.flags (after XEN_DOMINF_*). */
#define PVM_HV_DOMINF_PAUSED (1u << 0)   /* paused by the toolstack */
#define PVM_HV_DOMINF_SHUTDOWN (1u << 1) /* reason in shutdown_reason */
#define PVM_HV_DOMINF_DYING (1u << 2)    /* gone; only destroy is useful */
#define PVM_HV_DOMINF_LOGDIRTY (1u << 3) /* log-dirty mode is on */

/* shutdown_reason values are Xen's SHUTDOWN_* (xen/sched.h). */
#define PVM_HV_SHUTDOWN_POWEROFF 0u
#define PVM_HV_SHUTDOWN_CRASH 3u

/* After xc_domaininfo_t: what the toolstack needs to know about a domain. */
struct pvm_hv_dominfo {
	uint32_t domid;
	uint32_t flags;           /* PVM_HV_DOMINF_* */
	uint32_t shutdown_reason; /* valid with PVM_HV_DOMINF_SHUTDOWN */
	uint32_t nr_vcpus;
	uint64_t nr_pages; /* pfns 0 .. nr_pages-1 exist (PV: p2m size) */
	/* Pages it holds now (Xen: tot_pages + outstanding, xl list's Mem).
	 * An HVM/PVH domain's gfns reach its special pages below 4 GiB, so
	 * its nr_pages says about 4080 MiB for a 128 MiB guest. */
	uint64_t mem_pages;
	char name[64];     /* NUL-terminated */
};

/* Bounds of the device arrays in struct pvm_hv_domain_config. */
#define PVM_HV_MAX_DISKS 8u
#define PVM_HV_MAX_NICS 8u

/* A virtual disk (after libxl_device_disk, reduced). */
struct pvm_hv_disk {
	/* Backing file (raw image) in the host; borrowed for the call. */
	const char *path;
	/* Guest device name ("xvda", "xvdb", ...); the devid is derived
	 * from it as Xen does (xvda = 51712). Borrowed for the call. */
	const char *vdev;
	bool readonly;
};

/* A virtual NIC (after libxl_device_nic, reduced). */
struct pvm_hv_nic {
	uint8_t mac[6]; /* all zero: the backend picks one (00:16:3e:...) */
	/* Bridge (Xen) or host switch (sim) to join; NULL: "xenbr0".
	 * Borrowed for the call. */
	const char *bridge;
};

/*
 * Which PV driver generation the guest's frontends are (backend-specific
 * meaning: the simulated host runs that frontend; the Xen backend only
 * records it, so quiesce knows whether the guest re-handshakes on resume).
 */
enum pvm_hv_frontend_gen {
	PVM_HV_FRONTEND_MODERN = 0, /* re-connects on resume, like Linux */
	PVM_HV_FRONTEND_LEGACY = 1, /* never re-handshakes after a restore */
};

/* What domain_create builds (after libxl_domain_config, reduced). */
struct pvm_hv_domain_config {
	uint32_t domid;    /* PVM_HV_DOMID_ANY, or the domid to take (restore) */
	uint64_t nr_pages; /* guest memory in 4 KiB pages */
	uint32_t nr_vcpus; /* >= 1 */
	bool start_paused; /* restore: created paused, nothing runs yet */
	const char *name;  /* borrowed for the call; may be NULL */
	/*
	 * What to run, backend-specific, borrowed for the call: the kernel
	 * image for Xen, the workload spec for the simulated host (see
	 * hv/sim/sim.h). NULL: an idle guest.
	 */
	const char *image;
	/* PV devices; entries [0, nr_disks) / [0, nr_nics) are used. */
	uint32_t nr_disks; /* <= PVM_HV_MAX_DISKS */
	struct pvm_hv_disk disks[PVM_HV_MAX_DISKS];
	uint32_t nr_nics; /* <= PVM_HV_MAX_NICS */
	struct pvm_hv_nic nics[PVM_HV_MAX_NICS];
	enum pvm_hv_frontend_gen frontend_gen;
};

/* map_pages protection. */
enum pvm_hv_prot {
	PVM_HV_MAP_READ = 1,  /* source: read guest pages */
	PVM_HV_MAP_WRITE = 3, /* destination: fill guest pages (read+write) */
};

struct pvm_hv_ops;

/*
 * A backend instance. Backends embed it as the first member of their own
 * (private) struct; callers only read ->ops.
 */
struct pvm_hv {
	const struct pvm_hv_ops *ops;
};

struct pvm_hv_ops {
	/* Short backend name ("sim", "xen"); static storage. */
	const char *name;

	/*
	 * Destroys the instance: domains the backend started (sim) are
	 * destroyed, everything is released, @hv is freed. Called once, last,
	 * with no other call in flight. Mappings from map_pages must already
	 * be unmapped.
	 */
	void (*close)(struct pvm_hv *hv);

	/* ---- domains (xc_domain_getinfolist, libxl create/destroy) ---- */

	/*
	 * Fills up to @max entries of caller-owned @out with domains in
	 * ascending domid order (the control domain 0 excluded); *@n_out is
	 * the number written. -ENOSPC when more than @max exist (the first
	 * @max are written).
	 */
	int (*domain_list)(struct pvm_hv *hv, struct pvm_hv_dominfo *out,
			   size_t max, size_t *n_out);

	/* One domain's info into caller-owned @out; -ESRCH if none. */
	int (*domain_info)(struct pvm_hv *hv, uint32_t domid,
			   struct pvm_hv_dominfo *out);

	/*
	 * Creates and starts a domain described by @cfg (borrowed for the
	 * call); its memory reads as zeros (Xen scrubs what it gives a
	 * domain). On success *@domid_out is its domid; with cfg->start_paused
	 * it is paused once (domain_unpause lets it run). -EEXIST when
	 * cfg->domid is taken, -EINVAL for a bad config.
	 */
	int (*domain_create)(struct pvm_hv *hv,
			     const struct pvm_hv_domain_config *cfg,
			     uint32_t *domid_out);

	/*
	 * Kills the domain and releases everything it holds (memory, grant
	 * pins, event channels; remote ends of its channels become unbound).
	 * Mappings made by map_pages stay valid until unmapped. Works on a
	 * dying domain; -ESRCH if none.
	 */
	int (*domain_destroy)(struct pvm_hv *hv, uint32_t domid);

	/*
	 * xc_domain_pause / xc_domain_unpause. Pauses nest: each pause needs
	 * one unpause. When domain_pause returns, no vCPU of the domain runs
	 * or will run until the matching unpause (memory is stable except for
	 * writes made by backends). Unpause of a domain that is not paused:
	 * -EINVAL.
	 */
	int (*domain_pause)(struct pvm_hv *hv, uint32_t domid);
	int (*domain_unpause)(struct pvm_hv *hv, uint32_t domid);

	/* ---- log-dirty (xc_shadow_control LOGDIRTY / CLEAN / OFF) ---- */

	/*
	 * Starts tracking writes to guest memory: from the return on, every
	 * page written by the guest or marked by a backend is reported by the
	 * next logdirty_read_clear. The log starts empty. -EBUSY if already on;
	 * -EOPNOTSUPP if the host cannot track writes (reason logged).
	 */
	int (*logdirty_enable)(struct pvm_hv *hv, uint32_t domid);

	/* Stops tracking; idempotent. */
	int (*logdirty_disable)(struct pvm_hv *hv, uint32_t domid);

	/*
	 * Read-and-clear: overwrites caller-owned @bm (bm->nbits must equal
	 * the domain's nr_pages, else -EINVAL) with the pages written since
	 * enable or the previous read, and restarts the log. Atomic with
	 * respect to guest writes: a page written while this runs is reported
	 * by this call or the next, never lost. Works while the domain runs
	 * or is paused. -EINVAL if log-dirty is off.
	 */
	int (*logdirty_read_clear)(struct pvm_hv *hv, uint32_t domid,
				   struct pvm_bitmap *bm);

	/* ---- foreign memory (xenforeignmemory_map / _unmap) ---- */

	/*
	 * Maps @n guest pages, @pfns[i] at *@addr_out + i * PVM_PAGE_SIZE,
	 * with @prot. @pfns and @errs are caller-owned, borrowed for the call.
	 * @errs[i] is 0 or a negative errno for that page (-EINVAL: pfn
	 * beyond nr_pages); a failed page's slot is left inaccessible.
	 * Returns 0 when the mapping was made (check @errs), or a negative
	 * errno and no mapping. The mapping belongs to the caller until
	 * unmap_pages, which must be called exactly once with the same @n; it
	 * stays valid (pointing at the old memory) even if the domain dies.
	 * Pages written through a WRITE mapping are marked dirty when it is
	 * unmapped (log-dirty sees them, as Xen's does for grant maps).
	 */
	int (*map_pages)(struct pvm_hv *hv, uint32_t domid,
			 enum pvm_hv_prot prot, const uint64_t *pfns,
			 size_t n, int *errs, void **addr_out);
	int (*unmap_pages)(struct pvm_hv *hv, void *addr, size_t n);

	/* ---- vCPU state (xc_vcpu_getcontext / setcontext) ---- */

	/*
	 * Appends vCPU @vcpu's context, opaque backend-defined bytes, to
	 * caller-owned @out (its sticky error is returned if it fills).
	 * The domain must be paused (-EBUSY otherwise); -EINVAL for a vCPU
	 * beyond nr_vcpus.
	 */
	int (*vcpu_context_get)(struct pvm_hv *hv, uint32_t domid,
				uint32_t vcpu, struct pvm_buf *out);

	/*
	 * Loads a context produced by vcpu_context_get of the same backend
	 * kind; @ctx (@len bytes) is borrowed for the call and untrusted
	 * (-EBADMSG if malformed). Domain must be paused.
	 */
	int (*vcpu_context_set)(struct pvm_hv *hv, uint32_t domid,
				uint32_t vcpu, const void *ctx, size_t len);

	/* ---- event channels and grants a restore needs ---- */

	/*
	 * Appends the domain's event-channel table (port numbers, states,
	 * remote domids and ports) to caller-owned @out, in the format of
	 * docs/hv.md. Domain must be paused (-EBUSY).
	 */
	int (*evtchn_state_get)(struct pvm_hv *hv, uint32_t domid,
				struct pvm_buf *out);

	/*
	 * Re-creates those ports with the same numbers in a new, paused
	 * domain that has no ports yet (-EBUSY otherwise). Interdomain ports
	 * come back unbound, reserved for their old remote domid, so that the
	 * re-created backend binds to the same guest port (Xen's
	 * EVTCHNOP_bind_interdomain). @state is borrowed, untrusted: -EBADMSG.
	 */
	int (*evtchn_state_set)(struct pvm_hv *hv, uint32_t domid,
				const void *state, size_t len);

	/*
	 * Appends the grant table (location and v1 entries) to @out.
	 * Domain must be paused (-EBUSY).
	 */
	int (*grant_state_get)(struct pvm_hv *hv, uint32_t domid,
			       struct pvm_buf *out);

	/*
	 * Restores the grant table into a paused domain, after its memory
	 * has been written. GTF_reading/GTF_writing are cleared: no backend
	 * on this host has the grants mapped yet. @state is borrowed,
	 * untrusted: -EBADMSG.
	 */
	int (*grant_state_set)(struct pvm_hv *hv, uint32_t domid,
			       const void *state, size_t len);

	/* ---- auto-converge (xc_sched_credit{,2}_domain_set: cap) ---- */

	/*
	 * Holds the domain's vCPUs to at most (100 - @percent)% of the CPU
	 * time they would otherwise get, until the next call: @percent 0
	 * lifts the throttle (the domain's own setting, if any, comes back),
	 * 1..99 throttles, anything above is -EINVAL. A later call replaces
	 * the level. Pause and unpause work as usual while throttled, and a
	 * paused domain stays paused whatever the level. Pre-copy calls it
	 * when the guest dirties memory faster than the link carries, and
	 * calls it with 0 after the migration, whatever its outcome.
	 * -EOPNOTSUPP when the host cannot cap this domain (reason logged).
	 */
	int (*domain_throttle)(struct pvm_hv *hv, uint32_t domid,
			       unsigned percent);

	/* ---- populate-on-demand knowledge ---- */

	/*
	 * Overwrites caller-owned @bm (bm->nbits must equal the domain's
	 * nr_pages, else -EINVAL) with the pages that may hold data. A clear
	 * bit is a page never populated since the domain was created: it
	 * reads as zeros, as every page of a domain fresh from domain_create
	 * does, so a copy need not send it. A page populated after the call
	 * was written, so log-dirty (if on) reports it. A backend that cannot
	 * tell sets every bit and returns 0. Works running or paused.
	 */
	int (*domain_populated)(struct pvm_hv *hv, uint32_t domid,
				struct pvm_bitmap *bm);
};

/*
 * Opens a backend by name: "sim" (a simulated host with default settings,
 * see pvm_sim_host_create() for options) or "xen". NULL or "" means
 * $PVM_HV, else "sim". -ENOENT for an unknown name, -EOPNOTSUPP for a
 * backend not built in. The caller owns *@hv_out and ends it with
 * (*hv_out)->ops->close(*hv_out).
 */
int pvm_hv_open(const char *name, struct pvm_hv **hv_out);

#endif /* PVM_HV_H */
