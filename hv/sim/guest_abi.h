/*
 * What the simulated host and its guest program (pvmig-simguest,
 * hv/sim/guest/) agree on: the start-up handshake over the control socket
 * and the fixed layout of guest memory. Both ends are built from this tree
 * and run on one machine, so messages are host-endian fixed-width structs
 * on a SOCK_SEQPACKET socket (one message per packet).
 *
 * Start-up (hv/sim/domain.c sim_domain_create()):
 *
 *   host                                    guest (child process)
 *   memfd, socketpair, fork+exec  ───────►  mmap memfd MAP_SHARED
 *                                           userfaultfd(WP_ASYNC), register
 *                                           its mapping for write-protect
 *                                 ◄───────  READY {status, addr} + uffd
 *   open /proc/PID/pagemap, probe                (SCM_RIGHTS)
 *   [start_paused: SIGSTOP]
 *   RUN                           ───────►  start nr_vcpus threads
 *   service thread serves CALLs   ◄──────►  hypercalls (below)
 *   ... socket EOF (host gone)    ───────►  exit
 *
 * The uffd is created in the guest because a userfaultfd watches the mm of
 * the process that created it; the guest hands it over so that the host
 * can write-protect everything (log-dirty enable) and un-protect
 * (disable) without the guest's help, while PAGEMAP_SCAN reads and
 * re-protects through /proc/PID/pagemap.
 *
 * Guest memory layout (pfns):
 *
 *   0                     header page: struct pvm_simguest_header
 *   1 .. 1+GNTTAB_FRAMES  grant table, grant_entry_v1_t[] (512 per frame)
 *   FIRST_FREE ..         free for the workload
 */
#ifndef PVM_SIM_GUEST_ABI_H
#define PVM_SIM_GUEST_ABI_H

#include <assert.h>
#include <stdint.h>

#define PVM_SIMGUEST_HEADER_PFN 0u
#define PVM_SIMGUEST_GNTTAB_PFN 1u
#define PVM_SIMGUEST_GNTTAB_FRAMES 1u
#define PVM_SIMGUEST_FIRST_FREE_PFN 16u
#define PVM_SIMGUEST_MIN_PAGES 32u
#define PVM_SIMGUEST_MAX_VCPUS 32u

#define PVM_SIMGUEST_MAGIC 0x70766d73u /* "pvms" */

/* Page 0. Written by the guest; the host only reads it. */
struct pvm_simguest_header {
	uint32_t magic;
	uint32_t nr_vcpus;
	/* Per vCPU: workload passes completed (each pass writes every page of
	 * that vCPU's share of the working set once). */
	uint64_t passes[PVM_SIMGUEST_MAX_VCPUS];
	/* "echo" workload: the port it offers to domain 0 (0 until then) and
	 * how many events it has echoed back. */
	uint32_t echo_port;
	/* Non-zero once the guest's PV main loop runs (see park_req). Was
	 * "reserved" (0). */
	uint32_t pv_running;
	uint64_t echo_count;
	/* PV workload counters (also published in xenstore under
	 * data/workload/, see hv/sim/sim.h struct pvm_sim_workload). */
	uint64_t wl[16]; /* indexed by enum pvm_simguest_counter */
	/*
	 * Pausing at an instruction boundary. A real vCPU resumes at the very
	 * instruction it was stopped at; a restored pvmig-simguest restarts
	 * its PV loop from the top, and that loop updates ring indices and
	 * their private copies in several steps. So before it stops the
	 * process the host sets park_req, and the PV loop, at its top (where
	 * its state is whole), sets parked and waits for park_req to clear
	 * (hv/sim/domain.c stop_process / unpause). The host clears park_req
	 * before it lets the process run, also on a restored copy.
	 */
	uint32_t park_req; /* host → guest */
	uint32_t parked;   /* guest → host */
	/*
	 * Cancelled suspend (Xen: xc_domain_resume(fast) makes
	 * SCHEDOP_shutdown(SHUTDOWN_suspend) return 1). The host sets it when
	 * it unpauses a domain that made PVM_SIMGUEST_SUSPEND and was not
	 * moved: the guest then goes on with its old rings and clears it. A
	 * restored copy ignores it (the new process is the resume).
	 */
	uint32_t suspend_cancel; /* host → guest */
	uint32_t reserved;
};

enum pvm_simguest_counter {
	PVM_SIMGUEST_C_BLK_WRITES,
	PVM_SIMGUEST_C_BLK_READS,
	PVM_SIMGUEST_C_BLK_VERIFY_FAIL,
	PVM_SIMGUEST_C_BLK_IO_ERRORS,
	PVM_SIMGUEST_C_NET_SENT,
	PVM_SIMGUEST_C_NET_RECEIVED,
	PVM_SIMGUEST_C_NET_LOST,
	PVM_SIMGUEST_C_NET_DUP,
	PVM_SIMGUEST_C_NET_OOO,
	PVM_SIMGUEST_C_FE_CONNECTS,
	PVM_SIMGUEST_C_BLK_FLUSHES,
	PVM_SIMGUEST_C_NR,
};

enum pvm_simguest_msg_type {
	PVM_SIMGUEST_READY = 1, /* guest → host, carries the uffd */
	PVM_SIMGUEST_RUN = 2,   /* host → guest: start the vCPUs */
	PVM_SIMGUEST_CALL = 3,  /* guest → host: a hypercall (op, args) */
	PVM_SIMGUEST_REPLY = 4, /* host → guest: its status, results, fd */
};

/*
 * Hypercalls, served by the host's service thread (hv/sim/hypercall.c).
 * One call is outstanding at a time, made by one guest thread; REPLY.status
 * is 0 or a negative errno. Ops returning a port attach that port's
 * eventfd (SCM_RIGHTS): it counts events arriving at the port.
 */
enum pvm_simguest_op {
	/* arg[0] remote domid → arg[0] port + eventfd */
	PVM_SIMGUEST_EVTCHN_ALLOC_UNBOUND = 1,
	/* arg[0] remote domid, arg[1] remote port → arg[0] port + eventfd */
	PVM_SIMGUEST_EVTCHN_BIND_INTERDOMAIN = 2,
	PVM_SIMGUEST_EVTCHN_SEND = 3,  /* arg[0] port */
	PVM_SIMGUEST_EVTCHN_CLOSE = 4, /* arg[0] port */
	PVM_SIMGUEST_EVTCHN_FD = 5,    /* arg[0] port → eventfd (after restore) */
	/*
	 * SCHEDOP_shutdown(SHUTDOWN_suspend): the guest acknowledged a
	 * suspend request (control/shutdown) and has stopped its frontends;
	 * the host records it (pvm_sim_domain_suspended()). Returns at once;
	 * the guest then idles until it is paused, and either finds
	 * suspend_cancel set (resumed in place) or is restored elsewhere.
	 */
	PVM_SIMGUEST_SUSPEND = 6,
};

struct pvm_simguest_msg {
	uint32_t type;   /* enum pvm_simguest_msg_type */
	int32_t status;  /* READY, REPLY: 0 or a negative errno */
	uint64_t addr;   /* READY: guest address of its memory mapping */
	uint64_t detail; /* READY on failure: which step (1 api, 2 register,
			  * 3 userfaultfd, 4 mmap) */
	uint32_t op;     /* CALL, REPLY: enum pvm_simguest_op */
	uint32_t arg[3]; /* CALL: arguments; REPLY: results */
};
static_assert(sizeof(struct pvm_simguest_msg) == 40, "simguest msg");

/*
 * Fds the guest inherits, and its argv:
 *   PROG NR_PAGES NR_VCPUS WORKLOAD [modern|legacy]
 * XS_FD, when open, is the guest's xenstore connection (as its own domid).
 */
#define PVM_SIMGUEST_CTL_FD 3
#define PVM_SIMGUEST_MEM_FD 4
#define PVM_SIMGUEST_XS_FD 5

/*
 * A guest with PV devices keeps its frontends' rings, buffers and state in
 * the last PVM_SIMGUEST_DEV_PAGES pages of its memory (so they migrate
 * with it); the dirty workload stays below them.
 */
#define PVM_SIMGUEST_DEV_PAGES 512u
/* The echo peer on every host switch (a locally administered MAC). */
#define PVM_SIMGUEST_ECHO_MAC { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 }
/* Ethertype of workload frames (IEEE local experimental). */
#define PVM_SIMGUEST_ETHERTYPE 0x88b5u

#endif /* PVM_SIM_GUEST_ABI_H */
