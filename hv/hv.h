/*
 * hv/ — the hypervisor backend interface. Migration, checkpoint and quiesce
 * code talk to a hypervisor only through one const ops table, struct
 * pvm_hv_ops, which each backend fills with designated initializers:
 *
 *   hv/sim/   the embedded simulated Xen host (guests are processes)
 *   hv/xen/   the local Xen host: libxenctrl, libxenforeignmemory,
 *             libxenstore, libxenlight, libxenguest
 *
 * This header is the only door into hv/: no layer above includes a
 * backend's header or asks which backend it has. Every difference between
 * backends is a slot (domains, memory and dirty logging, vCPU/event
 * channel/grant state, PV device backends, the frontend suspend request,
 * the domain's xenstore image, the toolstack stream) or a PVM_HV_CAP_* bit.
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
 *   destination:  domain_create(PAUSED) → [map_pages(WRITE) →
 *                 unmap_pages]* → vcpu_context_set, grant_state_set,
 *                 evtchn_state_set → unpause
 *
 * and around the pause, for the PV devices (pvquiesce/): frontend_feature,
 * suspend_request/_acked/suspended before it, dev_pause/dev_capture and
 * xs_export after it; dev_destroy/dev_attach and xs_import on the
 * destination (see the dev_* slots). A backend with PVM_HV_CAP_STREAM
 * (Xen) instead writes and reads whole domains itself (stream_* slots).
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
	char name[64];     /* NUL-terminated */
};

/* Bounds of the device arrays in struct pvm_hv_domain_spec. */
#define PVM_HV_MAX_DISKS 8u
#define PVM_HV_MAX_NICS 8u

/* A virtual disk (after libxl_device_disk, reduced). */
struct pvm_hv_disk {
	/* Backing file (raw image) in the host. */
	char path[256];
	/* Guest device name ("xvda", "xvdb", ...); the devid is derived
	 * from it as Xen does (xvda = 51712). */
	char vdev[16];
	bool readonly;
};

/* A virtual NIC (after libxl_device_nic, reduced). */
struct pvm_hv_nic {
	uint8_t mac[6]; /* all zero: the backend picks one (00:16:3e:...) */
	/* Bridge (Xen) or host switch (sim) to join; "": "xenbr0". */
	char bridge[32];
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

/*
 * A domain as the toolstack describes it (after libxl_domain_config,
 * reduced): what domain_create builds and domain_config_get gives back,
 * what a save file's config and a migration's HELLO carry. A plain value
 * with no pointers: copy it, store it, compare it. Strings are
 * NUL-terminated within their arrays (domain_create: -EINVAL otherwise).
 */
struct pvm_hv_domain_spec {
	char name[64];     /* "": none */
	uint64_t nr_pages; /* guest memory in 4 KiB pages */
	uint32_t nr_vcpus; /* >= 1 */
	/*
	 * What to run, backend-specific: the kernel image for Xen, the
	 * workload for the simulated host (see hv/sim/sim.h). "": an idle
	 * guest.
	 */
	char image[256];
	uint32_t frontend_gen; /* enum pvm_hv_frontend_gen */
	/* PV devices; entries [0, nr_disks) / [0, nr_nics) are used. */
	uint32_t nr_disks; /* <= PVM_HV_MAX_DISKS */
	struct pvm_hv_disk disks[PVM_HV_MAX_DISKS];
	uint32_t nr_nics; /* <= PVM_HV_MAX_NICS */
	struct pvm_hv_nic nics[PVM_HV_MAX_NICS];
};

/* domain_create flags. */
#define PVM_HV_CREATE_PAUSED (1u << 0) /* restore: created paused */

/* ---- PV devices (dev_* slots) ---- */

enum pvm_hv_dev_type {
	PVM_HV_DEV_VBD = 1, /* blkif, xen/io/blkif.h */
	PVM_HV_DEV_VIF = 2, /* netif, xen/io/netif.h */
};

#define PVM_HV_DEV_MAX_RINGS 2u

/* Negotiated features (pvm_hv_dev_state.features). */
#define PVM_HV_DEV_F_FLUSH (1u << 0)     /* vbd: feature-flush-cache */
#define PVM_HV_DEV_F_RX_COPY (1u << 1)   /* vif: request-rx-copy */
#define PVM_HV_DEV_F_RX_NOTIFY (1u << 2) /* vif: feature-rx-notify */

struct pvm_hv_ring_state {
	uint32_t ref;          /* grant ref of the ring page */
	uint32_t req_cons;     /* next request the backend will take */
	uint32_t rsp_prod_pvt; /* next response slot it will fill */
};

/*
 * A PV backend's private ring state (dev_capture, dev_attach); everything
 * else about the device is in xenstore and guest memory. For a vif,
 * ring[0] is tx and ring[1] rx. A plain value: copy it freely.
 */
struct pvm_hv_dev_state {
	uint32_t type; /* enum pvm_hv_dev_type */
	uint32_t domid;
	uint32_t devid;
	uint32_t xb_state; /* its xenbus state when captured (XenbusState*) */
	uint32_t fe_port;  /* the frontend's event-channel port */
	uint32_t nr_rings;
	struct pvm_hv_ring_state ring[PVM_HV_DEV_MAX_RINGS];
	uint64_t features; /* PVM_HV_DEV_F_* */
	/* How the destination reconnects it, chosen by the caller at the
	 * quiesce, not by the backend: 0 not recorded, 1 cooperative, 2
	 * transparent (pvquiesce/pvquiesce.h enum pvm_pvq_mode). */
	uint32_t mode;
};

/*
 * Wire form of a device state, for stream records (little-endian):
 * le32 version 1, le32 type, le32 domid, le32 devid, le32 xb_state,
 * le32 fe_port, le32 nr_rings, le32 mode (0..2), nr_rings x {le32 ref,
 * le32 req_cons, le32 rsp_prod_pvt, le32 0}, le64 features.
 * Encode appends to caller-owned @out (its sticky error on overflow).
 * Decode: -EBADMSG for anything malformed (@buf borrowed, untrusted).
 */
void pvm_hv_dev_state_encode(const struct pvm_hv_dev_state *st,
			     struct pvm_buf *out);
int pvm_hv_dev_state_decode(const void *buf, size_t len,
			    struct pvm_hv_dev_state *out);

/* What a guest's own workload published about its I/O (workload_read;
 * node names under /local/domain/<domid>/data/workload/ in brackets). */
struct pvm_hv_workload {
	uint64_t blk_writes;      /* [blk-writes] blocks written, acknowledged */
	uint64_t blk_reads;       /* [blk-reads] blocks read back */
	uint64_t blk_verify_fail; /* [blk-verify-fail] read back != written */
	uint64_t blk_io_errors;   /* [blk-io-errors] error responses */
	uint64_t net_sent;        /* [net-sent] frames sent to the echo peer */
	uint64_t net_received;    /* [net-received] replies received */
	uint64_t net_lost;        /* [net-lost] gaps in reply numbers */
	uint64_t net_dup;         /* [net-dup] replies received twice */
	uint64_t net_ooo;         /* [net-ooo] replies after a later one */
	uint64_t fe_connects;     /* [fe-connects] frontend handshakes done */
	uint64_t blk_flushes;     /* [blk-flushes] cache flushes acknowledged
				   * (after each write pass, when the
				   * backend offers feature-flush-cache) */
};

/* ---- the toolstack stream (stream_* slots) ---- */

/* stream_save flags. */
#define PVM_HV_STREAM_LIVE (1u << 0)         /* pre-copy while running */
#define PVM_HV_STREAM_CHECKPOINTED (1u << 1) /* Remus: see stream_save */
/* stream_restore flags (CHECKPOINTED as above). */
#define PVM_HV_STREAM_PAUSED (1u << 2) /* leave the new domain paused */

/* Default bound on stream_suspend's wait (a nested TCG host is slow; a
 * native one answers in milliseconds). */
#define PVM_HV_STREAM_SUSPEND_MS 60000u
/* Pre-copy rounds when stream_save has no precopy callback. */
#define PVM_HV_STREAM_DEFAULT_ROUNDS 5u

/* What the precopy callback returns. */
enum {
	PVM_HV_STREAM_CONTINUE = 0,
	PVM_HV_STREAM_STOP = 1,  /* suspend, send the rest */
	PVM_HV_STREAM_ABORT = -1 /* give up; the guest runs on */
};

/* stream_save's callbacks; any may be NULL. Called on the caller's
 * thread, from inside stream_save. */
struct pvm_hv_stream_cb {
	/* Brings the guest to its suspended state: 0 or a negative errno.
	 * NULL: stream_suspend(PVM_HV_STREAM_SUSPEND_MS). */
	int (*suspend)(void *ctx);
	/* Live: once before round 0 (0, 0, -1), then once after each
	 * pre-copy round r, when its dirty pages are known (r + 1, pages
	 * sent so far, pages dirty now): PVM_HV_STREAM_*; STOP sends those
	 * dirty pages once more live, then suspends. NULL: stop after
	 * PVM_HV_STREAM_DEFAULT_ROUNDS rounds or under 50 dirty pages. */
	int (*precopy)(void *ctx, uint32_t round, uint64_t written,
		       int64_t dirty);
	/* Checkpointed saves only. After each checkpoint is in the stream:
	 * lets the guest carry on, 0 or a negative errno. NULL:
	 * stream_resume(). */
	int (*postcopy)(void *ctx);
	/* Checkpointed saves only, after postcopy: 1 for another checkpoint
	 * (the pages dirtied since this one), 0 to end the stream here, or a
	 * negative errno (the save fails). NULL: 0. */
	int (*checkpoint)(void *ctx);
	void *ctx;
};

/* struct pvm_hv_ops.caps */
/*
 * Domain images are the toolstack's own stream (stream_* slots: Xen's
 * libxenguest/libxl format, which owns page tables, vCPU and device
 * state); without it, a save or migration moves pages and state through
 * map_pages and the *_state_* slots, in pvmig's records.
 */
#define PVM_HV_CAP_STREAM (1u << 0)

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
	/* PVM_HV_CAP_*: which optional ways of working the backend has. */
	uint32_t caps;

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
	 * Creates and starts a domain described by @spec (borrowed for the
	 * call) as @domid (PVM_HV_DOMID_ANY: any free one; a restore asks
	 * for the saved one); its memory reads as zeros (Xen scrubs what it
	 * gives a domain). On success *@domid_out is its domid; with
	 * PVM_HV_CREATE_PAUSED in @flags it is paused once (domain_unpause
	 * lets it run). -EEXIST when @domid is taken, -EINVAL for a bad spec.
	 * Any thread, even one that exits right after.
	 */
	int (*domain_create)(struct pvm_hv *hv,
			     const struct pvm_hv_domain_spec *spec,
			     uint32_t domid, uint32_t flags,
			     uint32_t *domid_out);

	/*
	 * The spec domain @domid was created with, into caller-owned @out
	 * (an empty image as the backend names what it runs: "idle" on the
	 * simulated host).
	 * -ESRCH; -EOPNOTSUPP when the backend keeps no spec of its own
	 * (Xen: libxl's config is the toolstack's, see stream_config).
	 */
	int (*domain_config_get)(struct pvm_hv *hv, uint32_t domid,
				 struct pvm_hv_domain_spec *out);

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

	/* ---- PV device backends (the host side of blkif/netif) ---- */

	/*
	 * A backend serves one PV device (@type enum pvm_hv_dev_type, @devid
	 * Xen's devid) of domain @domid, on the guest's shared ring(s), an
	 * interdomain event channel and its xenstore directory. The order a
	 * move uses them:
	 *
	 *   source:  dev_pause → dev_capture → (dev_destroy | dev_unpause)
	 *   dest.:   domain_create(paused, same devices) → memory, grant and
	 *            event-channel state → dev_destroy (the fresh backend)
	 *            → dev_attach → xs_import → unpause
	 *
	 * A frontend that re-handshakes (modern) needs no attach: the fresh
	 * backend meets its new rings. All return 0 or a negative errno:
	 * -ESRCH no such backend (or domain), -EBUSY wrong state for the call,
	 * -EINVAL malformed state, -EIO the backend is broken (a hostile
	 * frontend), -EOPNOTSUPP the backend's devices are not the host's to
	 * drive (Xen: libxl's, whose guests re-handshake). Any thread; they
	 * serialise per backend.
	 */

	/*
	 * Stops the backend taking requests; returns once every request it
	 * took has its response on the ring (drained), waiting at most
	 * @timeout_ms: -ETIMEDOUT when it is stuck inside a request (a disk
	 * that does not answer); it is then left running.
	 */
	int (*dev_pause)(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			 uint32_t devid, unsigned timeout_ms);
	/* Resumes a paused backend in place. -EINVAL when not paused. */
	int (*dev_unpause)(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			   uint32_t devid);
	/* Its ring state into caller-owned @out (mode 0). Paused (or
	 * broken) backends only: -EBUSY otherwise. */
	int (*dev_capture)(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			   uint32_t devid, struct pvm_hv_dev_state *out);
	/* Stops the backend, unmaps its rings and closes its port (the
	 * frontend's port becomes unbound, reserved for the backend's
	 * domain); xenstore is left as it is. */
	int (*dev_destroy)(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			   uint32_t devid);
	/*
	 * Re-creates the backend of @st->domid/@st->devid (borrowed for the
	 * call, untrusted: ring refs and indices are checked as on any
	 * connect) on the same ring refs and frontend port, continuing at
	 * req_cons/rsp_prod_pvt: the frontend sees nothing (transparent
	 * reconnect). Only drained states captured Connected (else -EINVAL);
	 * the domain must exist and have no backend for the device (-EBUSY).
	 */
	int (*dev_attach)(struct pvm_hv *hv, const struct pvm_hv_dev_state *st);
	/* Responses the backend has pushed since it was created or attached
	 * (for "first I/O completed" after a reconnect), into *@served_out. */
	int (*dev_served)(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			  uint32_t devid, uint64_t *served_out);
	/* The xenbus states (XenbusState*) of the backend and of the
	 * frontend's node (0, Unknown, when the node cannot be read). */
	int (*dev_xb_state)(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			    uint32_t devid, uint32_t *be_out, uint32_t *fe_out);

	/* ---- the frontend suspend request (control/shutdown) ---- */

	/*
	 * The host side of Xen's cooperative suspend, in the order pvquiesce
	 * uses it: frontend_feature("suspend") → suspend_request →
	 * [suspend_acked → suspended]* → (suspend_withdraw on a timeout).
	 * suspend_cancel resumes a guest that suspended in place. All return
	 * 0 or a negative errno (-ESRCH no domain); -EOPNOTSUPP when the
	 * backend makes no such request itself (Xen: libxl's suspend, see
	 * stream_suspend).
	 */

	/* Whether the guest advertises control/feature-@name = 1 (@name
	 * borrowed) into *@on_out; false also when it wrote nothing or the
	 * host has no xenstore. */
	int (*frontend_feature)(struct pvm_hv *hv, uint32_t domid,
				const char *name, bool *on_out);
	/* Writes control/shutdown = "suspend". */
	int (*suspend_request)(struct pvm_hv *hv, uint32_t domid);
	/* Whether the guest took the request (cleared control/shutdown). */
	int (*suspend_acked)(struct pvm_hv *hv, uint32_t domid, bool *acked_out);
	/* Takes an unanswered request back (clears control/shutdown if it
	 * still says "suspend"); *@taken_out: the guest had taken it. */
	int (*suspend_withdraw)(struct pvm_hv *hv, uint32_t domid,
				bool *taken_out);
	/* Whether the guest made its suspend hypercall (SHUTDOWN_suspend)
	 * since it last ran. */
	int (*suspended)(struct pvm_hv *hv, uint32_t domid, bool *suspended_out);
	/* xc_domain_resume(fast) for a suspended domain that is not paused
	 * (an unpause does the same): its suspend returns "cancelled". No-op
	 * otherwise. */
	int (*suspend_cancel)(struct pvm_hv *hv, uint32_t domid);

	/* ---- the domain's xenstore image ---- */

	/*
	 * Appends /local/domain/<domid> and the watches the guest registered,
	 * as xenstore migration records (Xen's
	 * docs/designs/xenstore-migration.md), to caller-owned @out (its cap
	 * bounds the size). -EOPNOTSUPP: the host has no xenstore the
	 * backend can export.
	 */
	int (*xs_export)(struct pvm_hv *hv, uint32_t domid, struct pvm_buf *out);
	/*
	 * Replaces /local/domain/<domid> with the records in @buf (@len
	 * bytes, borrowed, untrusted: -EBADMSG and nothing changes); paths
	 * and ACLs naming the exporting domid are rewritten to @domid.
	 */
	int (*xs_import)(struct pvm_hv *hv, uint32_t domid, const void *buf,
			 size_t len);

	/*
	 * The guest's own I/O counters (struct pvm_hv_workload) into
	 * caller-owned @out; a counter not published yet reads 0. -ENOENT
	 * when the guest published nothing, -EOPNOTSUPP when the backend
	 * runs no such workload.
	 */
	int (*workload_read)(struct pvm_hv *hv, uint32_t domid,
			     struct pvm_hv_workload *out);

	/* ---- the toolstack stream (PVM_HV_CAP_STREAM) ---- */

	/*
	 * Where the toolstack's own libraries write a domain (Xen: the libxc
	 * stream inside libxl's, as `xl save` writes). Backends without
	 * PVM_HV_CAP_STREAM return -EOPNOTSUPP from each. All log once.
	 */

	/*
	 * The domain's toolstack config (Xen: libxl_domain_config as JSON),
	 * what `xl save` writes into its header. *@config_out is malloc'd,
	 * the caller frees it. -ESRCH, -EINVAL (not a toolstack-made domain).
	 */
	int (*stream_config)(struct pvm_hv *hv, uint32_t domid,
			     char **config_out);
	/*
	 * Writes domain @domid to @fd (caller-owned, stays open): with
	 * PVM_HV_STREAM_LIVE pre-copy rounds then suspend, else suspend
	 * first; with PVM_HV_STREAM_CHECKPOINTED a live first checkpoint,
	 * then, while cb->checkpoint returns 1, suspend + dirty pages + vCPU
	 * state each ended by a CHECKPOINT record, cb->postcopy resuming the
	 * guest (no END record). @cb borrowed, may be NULL. On return the
	 * guest is suspended (non-checkpointed, success or failure after the
	 * suspend): the caller resumes or destroys it.
	 */
	int (*stream_save)(struct pvm_hv *hv, uint32_t domid, int fd,
			   unsigned flags, const struct pvm_hv_stream_cb *cb);
	/*
	 * Creates a domain from @config (borrowed; as stream_config gives; a
	 * fresh domid is taken) and restores it from the stream read from
	 * @fd; unpaused unless PVM_HV_STREAM_PAUSED; CHECKPOINTED: built
	 * from the last complete checkpoint. *@domid_out on success; on
	 * failure no new domain is left. -EBADMSG (config).
	 */
	int (*stream_restore)(struct pvm_hv *hv, const char *config, int fd,
			      unsigned flags, uint32_t *domid_out);
	/*
	 * Asks the guest to suspend and waits up to @timeout_ms until it has:
	 * 0 (also when it already was), -ETIMEDOUT (the request is taken
	 * back), -ESHUTDOWN (it shut down for another reason).
	 */
	int (*stream_suspend)(struct pvm_hv *hv, uint32_t domid,
			      uint32_t timeout_ms);
	/* Lets a guest suspended by stream_suspend carry on (Xen:
	 * libxl_domain_resume with suspend_cancel, as xl save -c does). */
	int (*stream_resume)(struct pvm_hv *hv, uint32_t domid);

	/* ---- the host ---- */

	/*
	 * Memory the host could still give new guests, in bytes, into
	 * *@bytes_out, for admission before a guest is created: the simulated
	 * host's guests are processes here (the kernel's MemAvailable).
	 * -EOPNOTSUPP where the backend leaves the check to the toolstack
	 * (Xen: libxl fails a create that does not fit).
	 */
	int (*host_mem_available)(struct pvm_hv *hv, uint64_t *bytes_out);
};

/* What pvm_hv_open() builds a backend with; all borrowed for the call. */
struct pvm_hv_open_opts {
	/*
	 * sim: the directory of the host's xenstore server (xenstore.sock,
	 * its lock, the per-domain sockets), which the host starts and runs
	 * in a thread of its own until close; NULL: a host without xenstore
	 * (its guests have no PV devices). xen: ignored.
	 */
	const char *state_dir;
	/* sim: path of pvmig-simguest; NULL: $PVM_SIMGUEST, else the file
	 * next to the running executable. xen: ignored. */
	const char *guest_prog;
};

/*
 * Opens a backend by @kind: "sim" (a simulated host) or "xen" (the local
 * Xen host). NULL or "" means $PVM_HV, else "sim". @opts may be NULL
 * (defaults). -ENOENT for an unknown name, -EOPNOTSUPP for a backend not
 * built in or a host not running it, -EBUSY when another simulated host
 * serves @opts->state_dir. The caller owns *@hv_out and ends it with
 * (*hv_out)->ops->close(*hv_out).
 */
int pvm_hv_open(const char *kind, const struct pvm_hv_open_opts *opts,
		struct pvm_hv **hv_out);

#endif /* PVM_HV_H */
