/*
 * hv/sim/ — the simulated Xen host, beyond the common ops table (hv/hv.h):
 * creating a host, and the hypervisor services the simulated PV backends
 * use (Xen's gntdev/gntshr and evtchn devices, and paging_mark_dirty).
 *
 * Each guest is its own process (pvmig-simguest), its memory a memfd the
 * host maps MAP_SHARED; pause/unpause SIGSTOP/SIGCONT the whole process;
 * log-dirty is the kernel's (userfaultfd WP_ASYNC + PAGEMAP_SCAN). The
 * domain config's `image` is the workload:
 *
 *   NULL, "idle"                  vCPU threads start and do nothing
 *   "echo"                        offers an event channel to domain 0 (port
 *                                 in the header page), answers each event
 *                                 with one notify back
 *   "dirty:FIRST:COUNT[:RATE]"    vCPUs keep writing pfns [FIRST,
 *                                 FIRST+COUNT) (FIRST >= 16), RATE pages/s
 *                                 per vCPU, 0 or absent: flat out
 *   "content:mixed|random|counter" what dirtied and populated pages hold
 *                                 (hv/sim/guest/content.h; default mixed)
 *   "boot:SIZE"                   SIZE bytes populated with the content at
 *                                 start (default 1/4 of memory, at most
 *                                 96 MiB; 0 with counter)
 *   "blk[:OPS]"                   on every vbd: write checksummed 4 KiB
 *                                 blocks, read them back, verify; OPS
 *                                 requests/s per disk (absent: 200, 0:
 *                                 flat out)
 *   "net[:PPS]"                   on every vif: numbered frames to the
 *                                 switch's echo peer, replies checked
 *                                 (PPS as OPS)
 *   "noack"                       (fault tests) a modern guest that
 *                                 advertises control/feature-suspend but
 *                                 never answers a suspend request
 *   "evil-ring", "evil-gref"      (fault tests) after a few requests the
 *                                 frontend writes garbage into its ring
 *                                 index / a grant entry it uses
 *
 * Items combine with ',' ("dirty:16:256:1000,blk,net"). Counters go to the
 * header page and to xenstore (pvm_sim_workload_read()).
 *
 * PV devices (cfg->disks, cfg->nics) need a xenstore server
 * (pvm_sim_config.xenstored): domain_create writes the domain's and the
 * devices' nodes as libxl does, starts one backend thread per device
 * (hv/sim/backend.h) and hands the guest its xenstore connection; the
 * guest's frontends (cfg->frontend_gen: modern or legacy) do the xenbus
 * handshake. A vif joins the host switch named by its bridge, which also
 * holds an echo peer (PVM_SIMGUEST_ECHO_MAC). docs/hv.md has the details.
 * With devices domain_create also fails -EINVAL for a bad device config
 * (vdev not xvda..xvdp, too many, fewer than PVM_SIMGUEST_DEV_PAGES + 16
 * pages, no xenstore server) and with the errno of opening a disk image;
 * nothing of the domain is left then. On a host with a xenstore server
 * every guest gets /local/domain/<id> (removed when it dies or is
 * destroyed) and, with at least PVM_SIMGUEST_DEV_PAGES + 16 pages, keeps
 * its last PVM_SIMGUEST_DEV_PAGES pages for its frontends (the dirty
 * workload stays below them).
 *
 * Guest memory layout, the handshake with the guest and the header page
 * the workload counts in: hv/sim/guest_abi.h. Design: docs/hv.md.
 *
 * Domain 0 is the host itself (the control/backend domain): it has event
 * channels but no memory or process, and is not listed.
 *
 * The host reaps guests that die: pvm_sim_host_fd() becomes readable, and
 * pvm_sim_host_reap() (also run by every domain operation on the domain it
 * touches, and by domain_list) releases the dead domain's ports and grant
 * pins; domain_info then reports it SHUTDOWN|DYING until destroyed. The
 * calling process must not set SIGCHLD to SIG_IGN (guests are its children).
 * A guest dies with the host (PR_SET_PDEATHSIG, which Linux ties to the
 * thread that forks): the host forks guests on a thread of its own that
 * lives until close, so domain_create may be called from ANY thread, even
 * one that exits right after.
 */
#ifndef PVM_SIM_SIM_H
#define PVM_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hv/hv.h"

struct pvm_xenstored;

struct pvm_sim_config {
	/* Path of pvmig-simguest; NULL: $PVM_SIMGUEST, else the file next
	 * to the running executable. Borrowed for the call. */
	const char *guest_prog;
	/*
	 * The xenstore server of this host (hv/sim/xenstored), borrowed: it
	 * must outlive the host, and its pvm_xenstored_run() loop must be
	 * running in some thread while domains are created or devices work.
	 * The host introduces its guests, writes their nodes, gives them a
	 * connection, and removes the nodes when they die or are destroyed.
	 * NULL: guests have no xenstore and no PV devices.
	 */
	struct pvm_xenstored *xenstored;
};

/*
 * Creates a simulated host. @cfg may be NULL (defaults). The caller owns
 * *@hv_out and ends it with ops->close. 0 or a negative errno.
 */
int pvm_sim_host_create(const struct pvm_sim_config *cfg,
			struct pvm_hv **hv_out);

/* True if @hv is a simulated host (the pvm_sim_* calls need one). */
bool pvm_sim_is_sim(const struct pvm_hv *hv);

/* An fd that polls readable when a guest process has exited; borrowed,
 * valid until close. Call pvm_sim_host_reap() then. */
int pvm_sim_host_fd(struct pvm_hv *hv);

/* Finds guests whose process exited and releases them (state DEAD).
 * Returns how many it found, or a negative errno. */
int pvm_sim_host_reap(struct pvm_hv *hv);

/* The guest's process id (for tests: signals, /proc). */
int pvm_sim_domain_pid(struct pvm_hv *hv, uint32_t domid, pid_t *pid_out);

/*
 * The host's own mapping of all guest memory (*@nr_pages_out pages), for
 * tests and benchmarks. Borrowed: valid until the domain dies or is
 * destroyed. Writes through it are NOT seen by log-dirty unless marked
 * with pvm_sim_mark_dirty().
 */
int pvm_sim_domain_memory(struct pvm_hv *hv, uint32_t domid, void **mem_out,
			  uint64_t *nr_pages_out);

/*
 * Xen's paging_mark_dirty: a backend that wrote guest page @pfn through a
 * host mapping reports it, after the write and before telling the guest,
 * so the next logdirty_read_clear includes it. A no-op while log-dirty is
 * off. -ESRCH, -EINVAL (pfn out of range).
 */
int pvm_sim_mark_dirty(struct pvm_hv *hv, uint32_t domid, uint64_t pfn);

/* ---- PV workload counters ---- */

/* What the guest's workload published under
 * /local/domain/<domid>/data/workload/ (node names in brackets). */
struct pvm_sim_workload {
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

/*
 * Reads the counters from xenstore (as pvmig status would); a counter not
 * published yet reads 0. -ENOENT when the guest published nothing yet,
 * -EOPNOTSUPP without a xenstore server.
 */
int pvm_sim_workload_read(struct pvm_hv *hv, uint32_t domid,
			  struct pvm_sim_workload *out);

/* Xen's vdev → devid rule for "xvda".."xvdp" (202 << 8 | n << 4);
 * -EINVAL for other names. */
int pvm_sim_vdev_devid(const char *vdev, uint32_t *devid_out);

/* ---- host switch faults (what the wire does to frames) ---- */

enum pvm_sim_switch_fault {
	PVM_SIM_SWITCH_DROP,      /* the frame vanishes */
	PVM_SIM_SWITCH_DUPLICATE, /* delivered twice */
	PVM_SIM_SWITCH_REORDER,   /* held back, delivered after the next */
};

/* Applies @kind to the next @count frames entering switch @bridge (created
 * if it does not exist yet). */
int pvm_sim_switch_fault(struct pvm_hv *hv, const char *bridge,
			 enum pvm_sim_switch_fault kind, unsigned int count);

/* ---- fault injection (for tests of the layers above) ---- */

enum pvm_sim_fault {
	PVM_SIM_FAULT_CREATE,     /* domain_create */
	PVM_SIM_FAULT_PAUSE,      /* domain_pause */
	PVM_SIM_FAULT_READ_CLEAR, /* logdirty_read_clear */
	PVM_SIM_FAULT_MAP,        /* map_pages */
	PVM_SIM_FAULT_GRANT_MAP,  /* pvm_sim_grant_map */
	PVM_SIM_FAULT_NR,
};

/*
 * Makes the @nth next call at @point (1: the very next) fail with @err (a
 * negative errno) before it does anything, once, or with @sticky that call
 * and every later one. @nth 0 disarms the point. Calls at a point are
 * counted whatever their domain. -EINVAL for a bad point or err >= 0.
 */
int pvm_sim_fault_set(struct pvm_hv *hv, enum pvm_sim_fault point,
		      unsigned int nth, bool sticky, int err);

/* ---- grant tables (as GNTTABOP_map/unmap_grant_ref, GNTTABOP_copy) ---- */

#define PVM_SIM_GNTMAP_READONLY 1u

/*
 * Maps grant @ref of domain @domid into the caller (a backend running as
 * domain @mapdomid), with Xen's checks on the v1 entry in guest memory:
 * GTF_permit_access, entry domid == @mapdomid, and no GTF_readonly for a
 * writable map; on success GTF_reading (and GTF_writing) are set in the
 * entry until the last such pin goes. *@addr_out is one page, readable
 * (and writable unless READONLY), owned by the caller until
 * pvm_sim_grant_unmap(*@handle_out); it stays valid if the guest dies.
 * Errors: -EINVAL ref or frame out of range, -EPERM entry does not grant
 * this access to this domain, -EAGAIN entry changed under us 5 times,
 * -ESRCH no such (live) domain.
 */
int pvm_sim_grant_map(struct pvm_hv *hv, uint32_t mapdomid, uint32_t domid,
		      uint32_t ref, unsigned int flags, void **addr_out,
		      uint32_t *handle_out);

/* Unmaps; a writable mapping marks its page dirty. -ENOENT bad handle. */
int pvm_sim_grant_unmap(struct pvm_hv *hv, uint32_t handle);

/*
 * GNTTABOP_copy between grant @ref of @domid (at @offset, @len bytes, not
 * crossing the page) and caller-owned @buf; same checks as a map, for the
 * duration of the copy. copy_to marks the page dirty. -EINVAL for a range
 * outside the page.
 */
int pvm_sim_grant_copy_from(struct pvm_hv *hv, uint32_t mapdomid,
			    uint32_t domid, uint32_t ref, uint32_t offset,
			    void *buf, uint32_t len);
int pvm_sim_grant_copy_to(struct pvm_hv *hv, uint32_t mapdomid, uint32_t domid,
			  uint32_t ref, uint32_t offset, const void *buf,
			  uint32_t len);

/* ---- event channels (as EVTCHNOP_*) ---- */

enum pvm_sim_evtchn_state {
	PVM_SIM_EVTCHN_CLOSED = 0,
	PVM_SIM_EVTCHN_UNBOUND = 1,
	PVM_SIM_EVTCHN_INTERDOMAIN = 2,
};

struct pvm_sim_evtchn_status {
	enum pvm_sim_evtchn_state state;
	uint32_t remote_domid; /* UNBOUND: who may bind; INTERDOMAIN: peer */
	uint32_t remote_port;  /* INTERDOMAIN */
};

/* A new port of @domid that @remote_domid may bind to. -ENOSPC. */
int pvm_sim_evtchn_alloc_unbound(struct pvm_hv *hv, uint32_t domid,
				 uint32_t remote_domid, uint32_t *port_out);

/* A new port of @domid bound to @remote_port of @remote_domid, which must
 * be unbound and reserved for @domid (-EINVAL otherwise). */
int pvm_sim_evtchn_bind_interdomain(struct pvm_hv *hv, uint32_t domid,
				    uint32_t remote_domid, uint32_t remote_port,
				    uint32_t *port_out);

/* Closes a port; an interdomain peer becomes unbound (reserved for us). */
int pvm_sim_evtchn_close(struct pvm_hv *hv, uint32_t domid, uint32_t port);

/* Signals the other end of an interdomain port (its eventfd counts up);
 * on an unbound port the event is dropped (0), as Xen does. */
int pvm_sim_evtchn_notify(struct pvm_hv *hv, uint32_t domid, uint32_t port);

/* The eventfd that counts events arriving at @port: borrowed, valid until
 * the port is closed; read 8 bytes to consume. */
int pvm_sim_evtchn_fd(struct pvm_hv *hv, uint32_t domid, uint32_t port,
		      int *fd_out);

int pvm_sim_evtchn_status(struct pvm_hv *hv, uint32_t domid, uint32_t port,
			  struct pvm_sim_evtchn_status *out);

#endif /* PVM_SIM_SIM_H */
