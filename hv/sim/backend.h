/*
 * hv/sim/backend.h — the seam between the simulated host's PV backends and
 * whoever quiesces and reconnects them (pvquiesce, tests).
 *
 * A backend serves one PV device (vbd or vif) of one guest, in its own
 * host thread, on the guest's shared ring(s) (grant-mapped), an
 * interdomain event channel, and its xenstore directory
 * /local/domain/0/backend/<type>/<domid>/<devid>. The calls below, in the
 * order a migration uses them:
 *
 *   source:  pvm_sim_backend_pause()    stop taking requests; returns once
 *                                       every request taken has its response
 *                                       on the ring (drained)
 *            pvm_sim_backend_capture()  its private ring state
 *            pvm_sim_backend_destroy()  unmap the rings, close its port;
 *                                       xenstore is left as it is
 *   dest.:   pvm_sim_backend_attach()   re-create from captured state: map
 *                                       the same ring refs, bind to the
 *                                       frontend's port, continue at
 *                                       req_cons/rsp_prod_pvt (transparent
 *                                       reconnect; the frontend sees nothing)
 *
 * pvm_sim_backend_unpause() resumes a paused backend in place. A backend
 * of a frontend that re-handshakes (modern) needs no attach: a fresh one
 * (domain_create with the same devices) meets the frontend's new rings.
 *
 * For a legacy frontend the destination goes: domain_create(start_paused,
 * same devices) → memory, grant and event-channel state →
 * pvm_sim_backend_destroy() of the fresh backends → attach →
 * pvm_xs_import_domain() → unpause (tests/unit/hv/sim/test_pv.c,
 * migrate_generation(); pvquiesce). The fresh backends must be gone
 * before the import: one that saw the imported "Connected" would connect
 * to the old rings itself, as a fresh connect. An attached backend rides
 * out the import (a frontend node missing for a moment is ignored).
 *
 * All functions return 0 or a negative errno: -ESRCH no such backend (or
 * domain), -EBUSY wrong state for the call (capture of a running backend,
 * attach over a live one), -EINVAL malformed state, -EIO the backend is
 * broken (a hostile frontend). Any thread; they serialise per backend.
 */
#ifndef PVM_SIM_BACKEND_H
#define PVM_SIM_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "hv/hv.h"

enum pvm_sim_dev_type {
	PVM_SIM_DEV_VBD = 1, /* blkif, xen/io/blkif.h */
	PVM_SIM_DEV_VIF = 2, /* netif, xen/io/netif.h */
};

#define PVM_SIM_BACKEND_MAX_RINGS 2u

/* Negotiated features (pvm_sim_backend_state.features). */
#define PVM_SIM_FEAT_FLUSH (1u << 0)   /* vbd: feature-flush-cache */
#define PVM_SIM_FEAT_RX_COPY (1u << 1) /* vif: request-rx-copy */
#define PVM_SIM_FEAT_RX_NOTIFY (1u << 2) /* vif: feature-rx-notify */

struct pvm_sim_ring_state {
	uint32_t ref;          /* grant ref of the ring page */
	uint32_t req_cons;     /* next request the backend will take */
	uint32_t rsp_prod_pvt; /* next response slot it will fill */
};

/* A backend's private state; everything else is in xenstore and guest
 * memory. For vif, ring[0] is tx and ring[1] rx. */
struct pvm_sim_backend_state {
	uint32_t type; /* enum pvm_sim_dev_type */
	uint32_t domid;
	uint32_t devid;
	uint32_t xb_state; /* its xenbus state when captured (XenbusState*) */
	uint32_t fe_port;  /* the frontend's event-channel port */
	uint32_t nr_rings;
	struct pvm_sim_ring_state ring[PVM_SIM_BACKEND_MAX_RINGS];
	uint64_t features; /* PVM_SIM_FEAT_* */
	/* How the destination reconnects it, chosen at the quiesce (not by
	 * the backend): 0 not recorded, 1 cooperative, 2 transparent
	 * (pvquiesce/pvquiesce.h enum pvm_pvq_mode). */
	uint32_t mode;
};

/*
 * Waits at most @timeout_ms for the drain: -ETIMEDOUT when the backend is
 * stuck inside a request (a disk that does not answer; the fault knob is
 * the dom0 node <backend dir>/pvmig-stall = 1, vbd only): it is then left
 * running, and finishes that request when it can.
 */
int pvm_sim_backend_pause(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			  uint32_t devid, unsigned timeout_ms);
int pvm_sim_backend_unpause(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			    uint32_t devid);

/* Paused (or broken) backends only: -EBUSY otherwise. Caller-owned @out. */
int pvm_sim_backend_capture(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			    uint32_t devid, struct pvm_sim_backend_state *out);

/* Stops the backend's thread, unmaps its rings and closes its port (the
 * frontend's port becomes unbound, reserved for domain 0). */
int pvm_sim_backend_destroy(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			    uint32_t devid);

/*
 * Re-creates the backend of @st->domid/@st->devid from captured state (its
 * configuration, e.g. the disk image, is read back from its xenstore
 * directory). Only drained states (req_cons == rsp_prod_pvt on every
 * ring, as pause leaves them) captured Connected can be attached (else
 * -EINVAL); the domain must exist and have no backend for that device
 * (-EBUSY). The ring indices and refs are untrusted: checked as on any
 * connect.
 */
int pvm_sim_backend_attach(struct pvm_hv *hv,
			   const struct pvm_sim_backend_state *st);

/* How many responses this backend has pushed since it was created or
 * attached (for "first I/O completed" after a reconnect). */
int pvm_sim_backend_served(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			   uint32_t devid, uint64_t *served_out);

/* The backend's xenbus state (XenbusState*) into *@state_out. */
int pvm_sim_backend_xb_state(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			     uint32_t devid, uint32_t *state_out);

/*
 * The suspend handshake's host side (pvquiesce's suspend request):
 * xenstore as domain 0, through the host's own connection (@buf gets a
 * NUL-terminated value; -ENOENT, -EACCES, -ERANGE as xenstore answers),
 * and whether the guest made its suspend hypercall
 * (PVM_SIMGUEST_SUSPEND, Xen's SHUTDOWN_suspend) since it last ran.
 * -EOPNOTSUPP: the host has no xenstore server.
 */
int pvm_sim_xs_read(struct pvm_hv *hv, const char *path, char *buf,
		    size_t len);
int pvm_sim_xs_write(struct pvm_hv *hv, const char *path, const char *val);
int pvm_sim_domain_suspended(struct pvm_hv *hv, uint32_t domid,
			     bool *suspended_out);
/* Xen's xc_domain_resume(fast) for a suspended domain that is not paused
 * (an unpause does the same): its suspend returns "cancelled". No-op
 * otherwise. */
int pvm_sim_domain_suspend_cancel(struct pvm_hv *hv, uint32_t domid);

/*
 * Wire form of the state, for stream records (little-endian):
 * le32 version 1, le32 type, le32 domid, le32 devid, le32 xb_state,
 * le32 fe_port, le32 nr_rings, le32 mode (0..2; was 0), nr_rings x {le32 ref, le32
 * req_cons, le32 rsp_prod_pvt, le32 0}, le64 features.
 * Decode: -EBADMSG for anything malformed (@buf borrowed, untrusted).
 */
void pvm_sim_backend_state_encode(const struct pvm_sim_backend_state *st,
				  struct pvm_buf *out);
int pvm_sim_backend_state_decode(const void *buf, size_t len,
				 struct pvm_sim_backend_state *out);

#endif /* PVM_SIM_BACKEND_H */
