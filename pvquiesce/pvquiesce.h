/*
 * pvquiesce/ — quiesce and reconnect a guest's PV devices around a pause,
 * so that no request is lost, duplicated or half-done inside a backend when
 * the guest moves, for both frontend generations.
 *
 * In the order a migration uses it:
 *
 *   source       pvm_pvq_suspend()     before the pause: ask the guest to
 *                                      suspend the Xen way (control/shutdown
 *                                      = "suspend", acknowledged by the
 *                                      guest clearing it, then its suspend
 *                                      hypercall), within a bound; a guest
 *                                      that does not answer is handled by
 *                                      the non-cooperative path (quiesce
 *                                      from the backend side alone)
 *                pvm_pvq_quiesce()     after the domain is paused: each
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

#include <stdbool.h>
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

#define PVM_PVQ_MAX_DEVICES 16u

/*
 * How a device reconnects on the destination (recorded per device in its
 * state): cooperative, the frontend re-runs the xenbus handshake with a
 * fresh backend (Linux blkfront/netfront on resume); transparent, the
 * backend re-attaches to the old ring, grant refs and port and the
 * frontend sees nothing (needs the same domid and the guest's xenstore
 * subtree). AUTO: cooperative for a guest that advertises
 * control/feature-suspend (a frontend that handles suspend/resume),
 * transparent for one that does not.
 */
enum pvm_pvq_mode {
	PVM_PVQ_MODE_AUTO = 0,
	PVM_PVQ_MODE_COOPERATIVE = 1,
	PVM_PVQ_MODE_TRANSPARENT = 2,
};

/* "auto", "cooperative", "transparent" <-> the enum; parse: -EINVAL. */
const char *pvm_pvq_mode_name(enum pvm_pvq_mode m);
int pvm_pvq_mode_parse(const char *s, enum pvm_pvq_mode *out);

/*
 * Before the pause: the mode @domid's devices will be quiesced for: @forced
 * unless AUTO, else from what the guest advertises (above). Never AUTO.
 */
enum pvm_pvq_mode pvm_pvq_choose_mode(struct pvm_hv *hv, uint32_t domid,
				      enum pvm_pvq_mode forced);

/* Bound on the wait for a suspend acknowledgement (and then for the
 * suspend hypercall), unless the caller gives one. */
#define PVM_PVQ_SUSPEND_TIMEOUT_MS 1000u

struct pvm_pvq_suspend_result {
	bool cooperative; /* acknowledged and suspended: frontends stopped */
	double ms;        /* request -> suspended (or given up) */
	char why[160];    /* non-cooperative: the reason, for statistics */
};

/*
 * Before the pause: asks domain @domid to suspend (docs/pvquiesce.md,
 * "Suspend request"). A guest that advertises control/feature-suspend = 1
 * gets control/shutdown = "suspend" and @timeout_ms (0: no request at all)
 * to clear it (its acknowledgement) and to make its suspend hypercall; one
 * that does not advertise it is not asked. A request left unanswered is
 * withdrawn (the node cleared), as libxl does. Never an error: a guest
 * that does not co-operate is simply quiesced from the backend side, the
 * path taken is in @out. Returns 0, or -ESRCH when the domain is gone.
 * A suspended guest that is resumed in place (unpaused without moving)
 * sees its suspend cancelled and goes on with its old rings.
 */
int pvm_pvq_suspend(struct pvm_hv *hv, uint32_t domid, unsigned timeout_ms,
		    struct pvm_pvq_suspend_result *out);
/* A failure between the suspend and the pause: the guest, if suspended
 * and still running, goes on with its old rings. No-op otherwise. */
void pvm_pvq_suspend_cancel(struct pvm_hv *hv, uint32_t domid);

/*
 * After the suspend request: the mode the devices must really be quiesced
 * for. A guest that advertises suspend (AUTO chose COOPERATIVE at
 * @chosen) but did not suspend (@r) does not know it is being moved: its
 * frontends keep their rings and will never re-handshake, so only a
 * transparent reconnect keeps its devices (TRANSPARENT). A mode the caller
 * forced (@requested not AUTO) stands.
 */
enum pvm_pvq_mode pvm_pvq_mode_after_suspend(enum pvm_pvq_mode requested,
					     enum pvm_pvq_mode chosen,
					     const struct pvm_pvq_suspend_result *r);

/* Xen's devid of a disk named xvdX (xvda = 51712), or -EINVAL. */
int pvm_pvq_vdev_devid(const char *vdev);

/* Bound on each backend's drain unless the caller gives one. */
#define PVM_PVQ_DRAIN_TIMEOUT_MS 2000u

/*
 * Domain paused: drains and captures every backend of @devs, each within
 * @drain_timeout_ms (0: PVM_PVQ_DRAIN_TIMEOUT_MS). A backend that does
 * not drain in time (a stuck disk) fails the quiesce with -ETIMEDOUT and
 * @why naming the device; every backend is then running again (the caller
 * unpauses the domain: the guest goes on with its devices connected).
 */
int pvm_pvq_quiesce(struct pvm_hv *hv, uint32_t domid,
		    const struct pvm_pvq_device *devs, size_t n,
		    enum pvm_pvq_mode mode, unsigned drain_timeout_ms,
		    struct pvm_buf *out, char *why, size_t why_len);
void pvm_pvq_resume(struct pvm_hv *hv, uint32_t domid,
		    const struct pvm_pvq_device *devs, size_t n);
/*
 * @state: what quiesce appended (untrusted: decoded and bounded). Each
 * device reconnects in the mode recorded with it; @force (unless AUTO)
 * overrides that, and a state with no mode recorded (older streams)
 * follows @gen (legacy: transparent). *@transparent_out (may be NULL):
 * whether any device was re-attached transparently (the caller then
 * imports the guest's xenstore subtree).
 */
int pvm_pvq_reconnect(struct pvm_hv *hv, uint32_t domid,
		      enum pvm_hv_frontend_gen gen, enum pvm_pvq_mode force,
		      const void *state, size_t len, bool *transparent_out,
		      char *why, size_t why_len);
/* The mode a state blob records (the first device's; AUTO: none or not
 * recorded), to decide before restoring whether the domid must be kept. */
enum pvm_pvq_mode pvm_pvq_state_mode(const void *state, size_t len);
int pvm_pvq_wait_connected(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_pvq_device *devs, size_t n,
			   unsigned timeout_ms, char *why, size_t why_len);

/*
 * After pvm_pvq_wait_connected: waits at most @timeout_ms until every
 * backend of @devs has completed a request since @since_ns (a
 * pvm_now_ns() taken at the unpause; each backend's count is read when it
 * is first seen), and puts the time from @since_ns in *@ms_out. -ETIMEDOUT
 * when some device did no I/O in time (an idle guest): not an error of
 * the move, only nothing to measure.
 */
int pvm_pvq_wait_first_io(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_pvq_device *devs, size_t n,
			  const uint64_t *served_before, uint64_t since_ns,
			  unsigned timeout_ms, double *ms_out);
/* Each backend's response count now (0 for one not there), into
 * @served_out[n]: taken at the unpause for pvm_pvq_wait_first_io. */
void pvm_pvq_served(struct pvm_hv *hv, uint32_t domid,
		    const struct pvm_pvq_device *devs, size_t n,
		    uint64_t *served_out);

#endif /* PVM_PVQUIESCE_H */
