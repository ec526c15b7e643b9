/*
 * pvquiesce/ — quiesce and reconnect a guest's PV devices around a pause,
 * so that no request is lost, duplicated or half-done inside a backend when
 * the guest moves, for both frontend generations.
 *
 * In the order a migration uses it:
 *
 *   source       pvm_pvq_quiesce()     after the domain is paused: each
 *                                      backend stops taking requests and
 *                                      drains (every request it took has
 *                                      its response on the ring and its
 *                                      data on disk); its private ring
 *                                      state is captured into one blob
 *                pvm_pvq_resume()      roll back: backends go on in place
 *   destination  pvm_pvq_reconnect()   domain still paused, memory, grants
 *                                      and event channels restored:
 *                                        legacy  the fresh backends are
 *                                                replaced by the captured
 *                                                ones (transparent: same
 *                                                ring refs, same port, at
 *                                                req_cons/rsp_prod_pvt)
 *                                        modern  fresh backends wait in
 *                                                InitWait; the frontend
 *                                                re-handshakes on resume
 *                pvm_pvq_wait_connected()  after unpause: every backend
 *                                      Connected again, within a bound
 *
 * Requests still unconsumed on a ring stay there: they are part of the
 * ring's state and are served on the destination. No request is failed
 * back to the guest to make a drain finish.
 *
 * Today the backend actions exist for the simulated host only
 * (hv/sim/backend.h); on the Xen backend these return -EOPNOTSUPP (see
 * docs/xen.md). All functions return 0 or a negative errno and fill @why
 * with a sentence naming the device.
 */
#ifndef PVM_PVQUIESCE_H
#define PVM_PVQUIESCE_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "hv/hv.h"

enum pvm_pvq_type {
	PVM_PVQ_VBD = 1,
	PVM_PVQ_VIF = 2,
};

struct pvm_pvq_device {
	uint32_t type; /* enum pvm_pvq_type */
	uint32_t devid;
};

#define PVM_PVQ_MAX_DEVICES 8u

/* Xen's devid of a disk named xvdX (xvda = 51712), or -EINVAL. */
int pvm_pvq_vdev_devid(const char *vdev);

int pvm_pvq_quiesce(struct pvm_hv *hv, uint32_t domid,
		    const struct pvm_pvq_device *devs, size_t n,
		    struct pvm_buf *out, char *why, size_t why_len);
void pvm_pvq_resume(struct pvm_hv *hv, uint32_t domid,
		    const struct pvm_pvq_device *devs, size_t n);
/* @state: what quiesce appended (untrusted: decoded and bounded). */
int pvm_pvq_reconnect(struct pvm_hv *hv, uint32_t domid,
		      enum pvm_hv_frontend_gen gen, const void *state,
		      size_t len, char *why, size_t why_len);
int pvm_pvq_wait_connected(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_pvq_device *devs, size_t n,
			   unsigned timeout_ms, char *why, size_t why_len);

#endif /* PVM_PVQUIESCE_H */
