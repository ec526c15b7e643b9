/*
 * Shared by the sources of the simulated host; nothing outside hv/sim/
 * includes it.
 *
 *   host.c     the instance, its ops table, domain lookup, death reaping
 *   domain.c   create/destroy/pause/unpause, foreign mappings, vCPU state
 *   dirty.c    log-dirty (userfaultfd WP_ASYNC + PAGEMAP_SCAN), mark_dirty
 *   grant.c    v1 grant tables: map/unmap/copy for backends, state
 *   evtchn.c   event channels: ports, interdomain bindings, state
 *   hypercall.c  the service thread serving guests' hypercalls
 *
 * Locking: one mutex per host (host->lock) guards every domain and every
 * list below; each public entry point takes it once, and so does the
 * service thread for each hypercall. Nothing blocks for
 * long under it (the longest holds are a dirty scan, a few ms for 1 GiB,
 * and waiting for a guest to stop or die after the signal).
 *
 * Domain state machine (one function, dom_set_state(), performs each
 * transition and checks the from-state):
 *
 *          create                 pause (count 0→1)
 *   (none) ─────► RUNNING ───────────────────────────► PAUSED
 *     │              ▲  ◄─────────────────────────────    │
 *     │ create       │     unpause (count 1→0)            │
 *     │ (start_paused)                                    │
 *     └──────────────────────────────────────────────────►│
 *   RUNNING, PAUSED ── process exit seen (sim_reap) ──► DEAD
 *   any ── destroy ──► (freed)
 *
 *   RUNNING: process alive, not stopped, pause_count == 0.
 *   PAUSED:  process alive and SIGSTOPped (every thread), pause_count > 0.
 *   DEAD:    process reaped; memory, uffd, ports and grant pins released;
 *            only info/list/destroy succeed (others: -ESRCH).
 */
#ifndef PVM_SIM_INTERNAL_H
#define PVM_SIM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/common.h"
#include "hv/hv.h"
#include "hv/sim/guest_abi.h"
#include "hv/sim/sim.h"
#include "hv/sim/uapi_compat.h"
#include "hv/sim/backend.h"
#include "hv/sim/xsc.h"

#define SIM_EVTCHN_MAX 1024u /* ports per domain (port 0 never used) */
#define SIM_VCPU_CTX_SIZE 128u
#define SIM_GNT_PER_FRAME (PVM_PAGE_SIZE / 8u)
#define SIM_SCAN_VEC_LEN 4096u /* page_regions per PAGEMAP_SCAN call */

enum sim_dom_state {
	DOM_RUNNING,
	DOM_PAUSED,
	DOM_DEAD,
};

enum sim_port_state {
	PORT_FREE = 0,
	PORT_UNBOUND = 1,
	PORT_INTERDOMAIN = 2,
};

struct sim_port {
	uint8_t state;         /* enum sim_port_state */
	uint16_t remote_domid; /* UNBOUND: who may bind; INTERDOMAIN: peer */
	uint32_t remote_port;  /* INTERDOMAIN only */
	int efd;               /* eventfd, made on first pvm_sim_evtchn_fd */
	uint64_t pending;      /* events delivered before the eventfd existed */
};

/* Xen's active grant entry: pins held by mappings/copies on this host. */
struct sim_active_grant {
	uint32_t pin_r; /* read-only pins */
	uint32_t pin_w; /* writable pins */
};

struct sim_domain {
	struct sim_domain *next; /* host->domains, ascending domid */
	uint32_t domid;
	uint64_t serial; /* unique per host: tells a reused domid apart */
	char name[64];
	enum sim_dom_state state;
	unsigned int pause_count;
	uint32_t shutdown_reason;
	uint64_t nr_pages;
	uint32_t nr_vcpus;
	bool is_control; /* domain 0, the host itself: no process, no memory */
	bool svc;        /* ctl_fd is in the service thread's epoll set */
	bool suspended;  /* made PVM_SIMGUEST_SUSPEND, not resumed since */

	pid_t pid;
	int pidfd;
	int ctl_fd;
	int memfd;
	int uffd;
	int pagemap_fd;
	uint8_t *mem;        /* host's MAP_SHARED mapping of all guest memory */
	uint64_t guest_addr; /* where the guest mapped it (for PAGEMAP_SCAN) */

	bool logdirty;
	struct pvm_bitmap marks; /* pages written by the host (mark_dirty) */
	struct pvm_page_region *scan_vec;

	uint8_t *vcpu_ctx; /* nr_vcpus * SIM_VCPU_CTX_SIZE */

	struct sim_port *ports; /* SIM_EVTCHN_MAX entries */

	uint64_t gnttab_pfn;
	uint32_t gnttab_frames;
	struct sim_active_grant *active; /* gnttab_frames * SIM_GNT_PER_FRAME */

	/* throttle.c: domain_throttle's level and duty-cycle state */
	unsigned int throttle_pct;
	bool throttle_stopped; /* SIGSTOPped by the throttle, not a pause */
	unsigned int throttle_hold; /* pauses in progress: hands off */
};

/* ---- PV backends (dev.c, vbd.c, vif.c) ---------------------------------
 * One struct sim_dev per device, served by its own thread (dev_main).
 * Fields marked (thread) are touched by that thread only while it runs;
 * controllers (backend.h calls) touch them only while the thread is paused
 * or stopped. @want/@paused/@stopped are under @mu. */

enum sim_dev_ctl { DEV_RUN, DEV_PAUSE, DEV_STOP };

struct sim_ring {
	uint32_t ref;
	uint32_t handle; /* grant map handle; 0: not mapped */
	void *page;      /* the shared ring page (grant-mapped) */
	uint32_t req_cons, rsp_prod_pvt;
};

#define SIM_SW_QUEUE 64u /* frames queued per switch port */

struct sim_swport {
	struct sim_swport *next;
	struct sim_switch *sw;
	uint8_t mac[6];
	int kick; /* the owner's eventfd, borrowed */
	uint8_t *q[SIM_SW_QUEUE];
	uint16_t qlen[SIM_SW_QUEUE];
	unsigned int head, count;
	uint64_t dropped; /* queue full */
};

struct sim_switch {
	struct sim_switch *next;
	char name[32];
	struct sim_swport *ports;
	unsigned int fault_count; /* next frames the fault applies to */
	enum pvm_sim_switch_fault fault;
	uint8_t *held; /* REORDER: the frame held back */
	uint16_t held_len;
	struct sim_swport *held_to;
};

struct sim_dev {
	struct sim_dev *next; /* h->devs, under h->dev_lock */
	struct sim_host *h;
	uint32_t type; /* enum pvm_sim_dev_type */
	uint32_t domid, devid;
	char be_path[96], fe_path[96];
	pthread_t thread;
	bool thread_started;
	int kick; /* eventfd: controllers and the switch wake the thread */
	struct xsc xs; /* the backend's own dom0 connection (thread) */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum sim_dev_ctl want;
	bool paused; /* the thread acknowledged DEV_PAUSE */

	uint32_t xb_state; /* backend xenbus state (thread) */
	bool broken;       /* a hostile frontend: Closed with an error */
	bool gone;         /* the domain or its nodes are gone */
	uint32_t nr_rings;
	struct sim_ring ring[2];
	uint32_t fe_port, be_port; /* be_port 0: not bound */
	int efd;                   /* be_port's eventfd (borrowed) */
	uint64_t features;

	/* vbd */
	int disk_fd;
	uint64_t sectors;
	bool readonly;
	bool stall; /* fault knob: <be_path>/pvmig-stall = 1 (thread) */
	uint64_t served; /* responses pushed, ever (atomic: read by others) */
	/* vif */
	char bridge[32];
	uint8_t mac[6];
	struct sim_swport *swport;
};

/* vbd fault knob (dev.c): re-reads <be_path>/pvmig-stall into v->stall. */
void sim_dev_read_stall(struct sim_dev *v);

/* A map_pages mapping, until unmap_pages. */
struct sim_fmap {
	struct sim_fmap *next;
	uint8_t *addr;
	size_t n;
	uint32_t domid;
	uint64_t serial;
	bool writable;
	uint64_t *pfns; /* writable only: what to mark dirty at unmap */
};

/* A grant mapping, until pvm_sim_grant_unmap. */
struct sim_gmap {
	struct sim_gmap *next;
	uint32_t handle;
	uint32_t domid; /* granting domain */
	uint64_t serial;
	uint32_t ref;
	uint64_t frame;
	bool writable;
	void *addr;
};

struct sim_fault {
	unsigned int countdown; /* 0: disarmed; fires when it reaches 0 */
	bool sticky;
	int err;
};

struct spawn_job; /* domain.c */

struct sim_host {
	struct pvm_hv hv; /* first: container of &hv */
	/* domain.c: the thread that forks guests (PR_SET_PDEATHSIG is tied
	 * to the forking thread) and the one job it runs at a time */
	pthread_t spawn_thread;
	bool spawn_running, spawn_stop;
	pthread_mutex_t spawn_mu;
	pthread_cond_t spawn_cv;
	struct spawn_job *spawn_job;
	/* xenstore: the server (borrowed) and the host's dom0 connection */
	struct pvm_xenstored *xs_srv;
	struct xsc xs;
	pthread_mutex_t xs_lock; /* guards xs */
	/* PV backends; lock order: dev_lock, then lock, then sw_lock; the
	 * xenstore server's own lock may be taken under any of them (the
	 * server never calls back into the host) */
	pthread_mutex_t dev_lock;
	struct sim_dev *devs;
	pthread_mutex_t sw_lock; /* guards switches and their ports */
	struct sim_switch *switches;
	struct sim_fault faults[PVM_SIM_FAULT_NR];
	pthread_mutex_t lock;
	char *guest_prog;
	struct sim_domain *domains; /* guests, ascending domid */
	struct sim_domain dom0;     /* the control domain: backends' ports */
	uint64_t next_serial;
	int epfd; /* pidfds of live guests: readable when one exits */
	/* hypercall.c: the service thread and what it waits on */
	int svc_epfd;
	int svc_stopfd;
	pthread_t svc_thread;
	bool svc_running;
	struct sim_fmap *fmaps;
	struct sim_gmap *gmaps;
	uint32_t next_handle;
	/* throttle.c: the duty-cycle thread, started by the first throttle;
	 * throttle_cv (CLOCK_MONOTONIC) is waited on with @lock */
	pthread_t throttle_thread;
	bool throttle_running, throttle_stop;
	pthread_cond_t throttle_cv;
};

static inline struct sim_host *to_host(struct pvm_hv *hv)
{
	return (struct sim_host *)hv;
}

/* host.c */
extern const struct pvm_hv_ops pvm_sim_ops;
/* Counts a call at @point: 0, or the injected error (logged). Lock held. */
int sim_fault(struct sim_host *h, enum pvm_sim_fault point);
/* Looks up a domain (0 gives dom0). With @alive, DEAD domains and dom0 are
 * -ESRCH. Caller holds the lock. Reaps first if the process exited. */
int sim_dom_get(struct sim_host *h, uint32_t domid, bool alive,
		struct sim_domain **out);
void sim_dom_set_state(struct sim_domain *d, enum sim_dom_state from,
		       enum sim_dom_state to);
/* Checks @d's process without blocking; releases it if it exited.
 * Caller holds the lock. True when @d is (now) DEAD. */
bool sim_dom_check_dead(struct sim_host *h, struct sim_domain *d);
/* SIGKILLs @d's process, waits for it and releases it (DEAD). */
void sim_dom_kill(struct sim_host *h, struct sim_domain *d);
/* Releases everything of a dead domain (its process already reaped). */
void sim_dom_release(struct sim_host *h, struct sim_domain *d);
void sim_dom_free(struct sim_domain *d);

/* domain.c */
int sim_domain_create(struct pvm_hv *hv, const struct pvm_hv_domain_config *cfg,
		      uint32_t *domid_out);
int sim_domain_destroy(struct pvm_hv *hv, uint32_t domid);
int sim_domain_pause(struct pvm_hv *hv, uint32_t domid);
int sim_domain_unpause(struct pvm_hv *hv, uint32_t domid);
/* A suspended domain resumed in place (guest_abi.h suspend_cancel). */
void sim_cancel_suspend_locked(struct sim_domain *d);
int sim_map_pages(struct pvm_hv *hv, uint32_t domid, enum pvm_hv_prot prot,
		  const uint64_t *pfns, size_t n, int *errs, void **addr_out);
int sim_unmap_pages(struct pvm_hv *hv, void *addr, size_t n);
int sim_vcpu_context_get(struct pvm_hv *hv, uint32_t domid, uint32_t vcpu,
			 struct pvm_buf *out);
int sim_vcpu_context_set(struct pvm_hv *hv, uint32_t domid, uint32_t vcpu,
			 const void *ctx, size_t len);

/* throttle.c */
int sim_domain_throttle(struct pvm_hv *hv, uint32_t domid, unsigned percent);
/* Lock held. A pause is starting (@hold true: the throttle lets go of @d,
 * continuing it if it had stopped it) or is over (false); they nest. */
void sim_throttle_hold(struct sim_host *h, struct sim_domain *d, bool hold);
/* sim_close: stops the duty-cycle thread, continuing whom it stopped. */
void sim_throttle_stop(struct sim_host *h);

/* populated.c */
int sim_domain_populated(struct pvm_hv *hv, uint32_t domid,
			 struct pvm_bitmap *bm);

/* domain.c: the thread that forks guests */
int sim_spawn_start(struct sim_host *h);
void sim_spawn_stop(struct sim_host *h);

/* hypercall.c */
int sim_svc_start(struct sim_host *h);
void sim_svc_stop(struct sim_host *h);
int sim_svc_add(struct sim_host *h, struct sim_domain *d);
void sim_svc_del(struct sim_host *h, struct sim_domain *d);

/* dirty.c */
int sim_logdirty_enable(struct pvm_hv *hv, uint32_t domid);
int sim_logdirty_disable(struct pvm_hv *hv, uint32_t domid);
int sim_logdirty_read_clear(struct pvm_hv *hv, uint32_t domid,
			    struct pvm_bitmap *bm);
/* Records a host write to @pfn when log-dirty is on. Lock held. */
void sim_mark_dirty_locked(struct sim_domain *d, uint64_t pfn);
/* Probes PAGEMAP_SCAN on a new domain: 0 or -EOPNOTSUPP (logged). */
int sim_dirty_probe(struct sim_domain *d);

/* grant.c */
int sim_grant_state_get(struct pvm_hv *hv, uint32_t domid, struct pvm_buf *out);
int sim_grant_state_set(struct pvm_hv *hv, uint32_t domid, const void *state,
			size_t len);
/* Drops a dead domain's pins; its mappings stay until unmapped. */
void sim_grant_release(struct sim_host *h, struct sim_domain *d);

/* grant.c: marks the page of a live grant mapping dirty (a backend wrote
 * it through the mapping, e.g. ring responses). */
void sim_grant_mark_mapped(struct pvm_hv *hv, uint32_t handle);

/* dev.c */
/* domain_create, lock held, before the fork: the toolstack's xenstore
 * nodes for @d and its devices; *@xs_fd_out the guest's connection. */
int sim_dev_prepare(struct sim_host *h, struct sim_domain *d,
		    const struct pvm_hv_domain_config *cfg, int *xs_fd_out);
/* domain_create, lock NOT held, after the domain exists: the backends. */
int sim_dev_start_all(struct sim_host *h, uint32_t domid,
		      const struct pvm_hv_domain_config *cfg);
/* The domain died or is destroyed, lock held: its xenstore nodes go
 * (backends notice through their watches and disconnect). */
void sim_dev_domain_dead(struct sim_host *h, struct sim_domain *d);
/* Destroys the backends of @domid (all with @domid 0). No lock held. */
void sim_dev_destroy_domain(struct sim_host *h, uint32_t domid);
int sim_dev_host_init(struct sim_host *h, struct pvm_xenstored *srv);
void sim_dev_host_close(struct sim_host *h);
/* The backend xenbus transition table (dev.c head): may a backend go
 * from @from to @to (XenbusState*)? */
bool sim_xb_allowed(uint32_t from, uint32_t to);
/* The backend hit something fatal (hostile frontend): log, error node,
 * Closing then Closed. Device thread. */
void sim_dev_fatal(struct sim_dev *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* vbd.c (device thread): connect reads config and maps; process serves
 * the ring: 0, or negative after sim_dev_fatal / the guest being gone. */
int sim_vbd_open(struct sim_dev *v);
int sim_vbd_process(struct sim_dev *v);
void sim_vbd_close(struct sim_dev *v);

/* vif.c */
int sim_vif_open(struct sim_dev *v);
int sim_vif_process(struct sim_dev *v);
void sim_vif_close(struct sim_dev *v);
void sim_switch_free_all(struct sim_host *h);

/* evtchn.c */
int sim_evtchn_state_get(struct pvm_hv *hv, uint32_t domid, struct pvm_buf *out);
int sim_evtchn_state_set(struct pvm_hv *hv, uint32_t domid, const void *state,
			 size_t len);
int sim_evtchn_init(struct sim_domain *d);
/* The EVTCHNOPs, lock held (the pvm_sim_evtchn_* wrappers take it). */
int sim_evtchn_alloc_unbound(struct sim_host *h, uint32_t domid,
			     uint32_t remote_domid, uint32_t *port_out);
int sim_evtchn_bind_interdomain(struct sim_host *h, uint32_t domid,
				uint32_t remote_domid, uint32_t remote_port,
				uint32_t *port_out);
int sim_evtchn_close(struct sim_host *h, uint32_t domid, uint32_t port);
int sim_evtchn_notify(struct sim_host *h, uint32_t domid, uint32_t port);
int sim_evtchn_fd(struct sim_host *h, uint32_t domid, uint32_t port,
		  int *fd_out);
/* Closes every port of @d (peers become unbound) and frees the table. */
void sim_evtchn_release(struct sim_host *h, struct sim_domain *d);

#endif /* PVM_SIM_INTERNAL_H */
