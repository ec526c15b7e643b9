/*
 * Quiesce and reconnect, on the simulated host's backend seam.
 *
 * State blob (little-endian): u32 count, then per device u32 length and
 * the backend's own encoding (hv/sim/backend.h,
 * pvm_sim_backend_state_encode).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xen/io/xenbus.h>

#include "hv/sim/backend.h"
#include "hv/sim/sim.h"
#include "pvquiesce/pvquiesce.h"

#define STATE_MAX 4096u

static const char *type_name(uint32_t t)
{
	return t == PVM_PVQ_VBD ? "vbd" : t == PVM_PVQ_VIF ? "vif" : "?";
}

/* ---- reconnect modes ---------------------------------------------------- */

const char *pvm_pvq_mode_name(enum pvm_pvq_mode m)
{
	return m == PVM_PVQ_MODE_COOPERATIVE ? "cooperative" :
	       m == PVM_PVQ_MODE_TRANSPARENT ? "transparent" : "auto";
}

int pvm_pvq_mode_parse(const char *s, enum pvm_pvq_mode *out)
{
	for (int m = PVM_PVQ_MODE_AUTO; m <= PVM_PVQ_MODE_TRANSPARENT; m++)
		if (s && !strcmp(s, pvm_pvq_mode_name((enum pvm_pvq_mode)m))) {
			*out = (enum pvm_pvq_mode)m;
			return 0;
		}
	return -EINVAL;
}

enum pvm_pvq_mode pvm_pvq_choose_mode(struct pvm_hv *hv, uint32_t domid,
				      enum pvm_pvq_mode forced)
{
	char path[64], val[8];

	if (forced != PVM_PVQ_MODE_AUTO)
		return forced;
	/* Xen: devices are libxl's, whose guests re-handshake (docs/xen.md);
	 * nothing here re-attaches a backend there. */
	if (!pvm_sim_is_sim(hv))
		return PVM_PVQ_MODE_COOPERATIVE;
	snprintf(path, sizeof(path), "/local/domain/%u/control/feature-suspend",
		 domid);
	if (pvm_sim_xs_read(hv, path, val, sizeof(val)) == 0 && !strcmp(val, "1"))
		return PVM_PVQ_MODE_COOPERATIVE;
	return PVM_PVQ_MODE_TRANSPARENT;
}

/* ---- suspend request (before the pause) ------------------------------ */

static bool guest_suspended(struct pvm_hv *hv, uint32_t domid)
{
	bool s = false;

	return pvm_sim_domain_suspended(hv, domid, &s) == 0 && s;
}

int pvm_pvq_suspend(struct pvm_hv *hv, uint32_t domid, unsigned timeout_ms,
		    struct pvm_pvq_suspend_result *out)
{
	struct pvm_hv_dominfo info;
	char ctl[64], val[32];
	uint64_t t0 = pvm_now_ns(), deadline;
	bool acked = false, s;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!pvm_sim_is_sim(hv)) {
		snprintf(out->why, sizeof(out->why),
			 "no suspend handshake on the %s backend yet",
			 hv->ops->name);
		return 0;
	}
	rc = pvm_sim_domain_suspended(hv, domid, &s);
	if (rc)
		return rc;
	if (s) {
		/* Suspended already (an earlier request, not resumed yet:
		 * a checkpoint epoch's, with the domain paused on top): its
		 * frontends are stopped and it runs its resume path where it
		 * is restored, as after any cooperative suspend. */
		out->cooperative = true;
		return 0;
	}
	rc = hv->ops->domain_info(hv, domid, &info);
	if (rc)
		return rc;
	if (info.flags & PVM_HV_DOMINF_PAUSED) {
		/* It cannot answer; waiting would only add the timeout. */
		snprintf(out->why, sizeof(out->why), "the domain is paused");
		return 0;
	}
	if (timeout_ms == 0) {
		snprintf(out->why, sizeof(out->why), "suspend request disabled");
		return 0;
	}
	snprintf(ctl, sizeof(ctl), "/local/domain/%u/control/feature-suspend",
		 domid);
	if (pvm_sim_xs_read(hv, ctl, val, sizeof(val)) || strcmp(val, "1")) {
		snprintf(out->why, sizeof(out->why),
			 "the guest does not advertise control/feature-suspend");
		return 0;
	}
	snprintf(ctl, sizeof(ctl), "/local/domain/%u/control/shutdown", domid);
	rc = pvm_sim_xs_write(hv, ctl, "suspend");
	if (rc) {
		snprintf(out->why, sizeof(out->why),
			 "cannot write control/shutdown: %s", strerror(-rc));
		return 0;
	}
	deadline = t0 + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		if (!acked && pvm_sim_xs_read(hv, ctl, val, sizeof(val)) == 0 &&
		    !val[0])
			acked = true;
		if (acked && guest_suspended(hv, domid)) {
			out->cooperative = true;
			break;
		}
		if (pvm_now_ns() >= deadline) {
			if (!acked) {
				/* Withdraw it, unless the guest took it just
				 * now (then it suspends: check once more). */
				if (pvm_sim_xs_read(hv, ctl, val, sizeof(val)) == 0 &&
				    !strcmp(val, "suspend"))
					pvm_sim_xs_write(hv, ctl, "");
				else
					usleep(2000);
			}
			if (guest_suspended(hv, domid)) {
				out->cooperative = true;
				break;
			}
			snprintf(out->why, sizeof(out->why), acked ?
				 "acknowledged but not suspended within %u ms" :
				 "no acknowledgement within %u ms (request withdrawn)",
				 timeout_ms);
			break;
		}
		usleep(100);
	}
	out->ms = (double)(pvm_now_ns() - t0) / 1e6;
	pvm_debug("domain %u: suspend %s in %.2f ms%s%s", domid,
		  out->cooperative ? "cooperative" : "non-cooperative", out->ms,
		  out->why[0] ? ": " : "", out->why);
	return 0;
}

void pvm_pvq_suspend_cancel(struct pvm_hv *hv, uint32_t domid)
{
	if (pvm_sim_is_sim(hv))
		pvm_sim_domain_suspend_cancel(hv, domid);
}

enum pvm_pvq_mode pvm_pvq_mode_after_suspend(enum pvm_pvq_mode requested,
					     enum pvm_pvq_mode chosen,
					     const struct pvm_pvq_suspend_result *r)
{
	if (requested == PVM_PVQ_MODE_AUTO &&
	    chosen == PVM_PVQ_MODE_COOPERATIVE && !r->cooperative)
		return PVM_PVQ_MODE_TRANSPARENT;
	return chosen;
}

/* ---- quiesce (after the pause) ---------------------------------------- */

int pvm_pvq_vdev_devid(const char *vdev)
{
	if (!vdev || strncmp(vdev, "xvd", 3) || strlen(vdev) != 4 ||
	    vdev[3] < 'a' || vdev[3] > 'p')
		return -EINVAL;
	return (202 << 8) | ((vdev[3] - 'a') << 4);
}

static int sim_type(uint32_t t)
{
	return t == PVM_PVQ_VBD ? PVM_SIM_DEV_VBD : PVM_SIM_DEV_VIF;
}

void pvm_pvq_resume(struct pvm_hv *hv, uint32_t domid,
		    const struct pvm_pvq_device *devs, size_t n)
{
	if (!pvm_sim_is_sim(hv))
		return;
	for (size_t i = 0; i < n; i++) {
		int rc = pvm_sim_backend_unpause(hv, domid, (uint32_t)sim_type(devs[i].type),
						 devs[i].devid);

		if (rc && rc != -EINVAL && rc != -EBUSY)
			pvm_warn("domain %u %s %u: cannot resume its backend: %s",
				 domid, type_name(devs[i].type), devs[i].devid,
				 strerror(-rc));
	}
}

/* "vbd xvdb (51728)", "vif 0": how a device is named in messages. */
static void dev_name(const struct pvm_pvq_device *d, char *buf, size_t len)
{
	if (d->type == PVM_PVQ_VBD && (d->devid >> 8) == 202 &&
	    (d->devid & 15) == 0)
		snprintf(buf, len, "vbd xvd%c (%u)",
			 (char)('a' + ((d->devid >> 4) & 15)), d->devid);
	else
		snprintf(buf, len, "%s %u", type_name(d->type), d->devid);
}

int pvm_pvq_quiesce(struct pvm_hv *hv, uint32_t domid,
		    const struct pvm_pvq_device *devs, size_t n,
		    enum pvm_pvq_mode mode, unsigned drain_timeout_ms,
		    struct pvm_buf *out, char *why, size_t why_len)
{
	size_t paused = 0;
	int rc = 0;

	if (n == 0) {
		pvm_buf_put_u32(out, 0);
		return out->err;
	}
	if (!pvm_sim_is_sim(hv)) {
		snprintf(why, why_len,
			 "PV device quiesce is not available on the %s backend",
			 hv->ops->name);
		return -EOPNOTSUPP;
	}
	if (n > PVM_PVQ_MAX_DEVICES) {
		snprintf(why, why_len, "%zu PV devices, at most %u", n,
			 PVM_PVQ_MAX_DEVICES);
		return -E2BIG;
	}
	/* First stop every backend (each returns drained), then capture:
	 * no backend runs while another is captured. */
	for (; paused < n; paused++) {
		const struct pvm_pvq_device *d = &devs[paused];

		char name[40];

		rc = pvm_sim_backend_pause(hv, domid, (uint32_t)sim_type(d->type),
					   d->devid, drain_timeout_ms ?
					   drain_timeout_ms : PVM_PVQ_DRAIN_TIMEOUT_MS);
		if (rc) {
			dev_name(d, name, sizeof(name));
			if (rc == -ETIMEDOUT)
				snprintf(why, why_len, "%s of domain %u did not drain within %u ms: its backend is stuck in a request (a disk that does not answer?); the guest goes on with its devices connected",
					 name, domid, drain_timeout_ms ?
					 drain_timeout_ms : PVM_PVQ_DRAIN_TIMEOUT_MS);
			else
				snprintf(why, why_len, "%s of domain %u will not quiesce: %s",
					 name, domid,
					 rc == -EIO ? "its backend is broken (bad ring from the guest)" :
						      strerror(-rc));
			goto out_resume;
		}
	}
	pvm_buf_put_u32(out, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		struct pvm_sim_backend_state st;
		size_t at;

		rc = pvm_sim_backend_capture(hv, domid,
					     (uint32_t)sim_type(devs[i].type),
					     devs[i].devid, &st);
		if (rc) {
			snprintf(why, why_len, "%s %u of domain %u: cannot capture its ring state: %s",
				 type_name(devs[i].type), devs[i].devid, domid,
				 strerror(-rc));
			goto out_resume;
		}
		at = out->len;
		st.mode = (uint32_t)mode;
		pvm_buf_put_u32(out, 0);
		pvm_sim_backend_state_encode(&st, out);
		if (out->err) {
			rc = out->err;
			goto out_resume;
		}
		pvm_put_le32(out->data + at, (uint32_t)(out->len - at - 4));
		pvm_debug("domain %u %s %u quiesced: state %u, %u rings", domid,
			  type_name(devs[i].type), devs[i].devid, st.xb_state,
			  st.nr_rings);
	}
	return 0;

out_resume:
	pvm_pvq_resume(hv, domid, devs, paused);
	return rc;
}

enum pvm_pvq_mode pvm_pvq_state_mode(const void *state, size_t len)
{
	struct pvm_sim_backend_state st;
	struct pvm_cursor c;
	const uint8_t *body;
	uint32_t count, blen;

	pvm_cursor_init(&c, state, len);
	if (pvm_cursor_u32(&c, &count) || !count ||
	    pvm_cursor_u32(&c, &blen) || blen > STATE_MAX ||
	    pvm_cursor_bytes(&c, blen, &body) ||
	    pvm_sim_backend_state_decode(body, blen, &st))
		return PVM_PVQ_MODE_AUTO;
	return (enum pvm_pvq_mode)st.mode;
}

int pvm_pvq_reconnect(struct pvm_hv *hv, uint32_t domid,
		      enum pvm_hv_frontend_gen gen, enum pvm_pvq_mode force,
		      const void *state, size_t len, bool *transparent_out,
		      char *why, size_t why_len)
{
	struct pvm_cursor c;
	uint32_t count;

	if (transparent_out)
		*transparent_out = false;
	pvm_cursor_init(&c, state, len);
	if (pvm_cursor_u32(&c, &count) || count > PVM_PVQ_MAX_DEVICES) {
		snprintf(why, why_len, "device state: bad device count");
		return -EBADMSG;
	}
	if (count && !pvm_sim_is_sim(hv)) {
		snprintf(why, why_len, "PV device reconnect is not available on the %s backend",
			 hv->ops->name);
		return -EOPNOTSUPP;
	}
	for (uint32_t i = 0; i < count; i++) {
		struct pvm_sim_backend_state st;
		enum pvm_pvq_mode mode;
		const uint8_t *body;
		uint32_t blen;
		int rc;

		if (pvm_cursor_u32(&c, &blen) || blen > STATE_MAX ||
		    pvm_cursor_bytes(&c, blen, &body)) {
			snprintf(why, why_len, "device state %u is truncated", i);
			return -EBADMSG;
		}
		rc = pvm_sim_backend_state_decode(body, blen, &st);
		if (rc) {
			snprintf(why, why_len, "device state %u is malformed", i);
			return rc;
		}
		mode = force != PVM_PVQ_MODE_AUTO ? force :
		       st.mode ? (enum pvm_pvq_mode)st.mode :
		       gen == PVM_HV_FRONTEND_LEGACY ? PVM_PVQ_MODE_TRANSPARENT :
						       PVM_PVQ_MODE_COOPERATIVE;
		if (mode == PVM_PVQ_MODE_COOPERATIVE)
			continue; /* the frontend re-handshakes with the fresh backend */
		/* Transparent: the frontend never re-handshakes, so the
		 * backend must pick up its old ring exactly where it stopped. */
		st.domid = domid;
		rc = pvm_sim_backend_destroy(hv, domid, st.type, st.devid);
		if (rc && rc != -ESRCH) {
			snprintf(why, why_len, "device %u/%u: cannot replace the fresh backend: %s",
				 st.type, st.devid, strerror(-rc));
			return rc;
		}
		rc = pvm_sim_backend_attach(hv, &st);
		if (rc) {
			snprintf(why, why_len, "device %u/%u: cannot re-attach its backend to the old ring: %s",
				 st.type, st.devid, strerror(-rc));
			return rc;
		}
		if (transparent_out)
			*transparent_out = true;
	}
	if (pvm_cursor_remaining(&c)) {
		snprintf(why, why_len, "device state has trailing bytes");
		return -EBADMSG;
	}
	return 0;
}

/* Both ends Connected: the backend's state and the frontend's node (a
 * backend re-attached under a frontend that started over is not enough;
 * the frontend would wait for InitWait for ever). */
static bool dev_connected(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_pvq_device *d, uint32_t *be_out,
			  uint32_t *fe_out)
{
	char path[96], val[16];

	*be_out = *fe_out = 0;
	if (pvm_sim_backend_xb_state(hv, domid, (uint32_t)sim_type(d->type),
				     d->devid, be_out) ||
	    *be_out != XenbusStateConnected)
		return false;
	snprintf(path, sizeof(path), "/local/domain/%u/device/%s/%u/state",
		 domid, type_name(d->type), d->devid);
	if (pvm_sim_xs_read(hv, path, val, sizeof(val)))
		return false;
	*fe_out = (uint32_t)strtoul(val, NULL, 10);
	return *fe_out == XenbusStateConnected;
}

int pvm_pvq_wait_connected(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_pvq_device *devs, size_t n,
			   unsigned timeout_ms, char *why, size_t why_len)
{
	uint64_t deadline = pvm_now_ms() + timeout_ms;

	if (!n || !pvm_sim_is_sim(hv))
		return 0;
	for (;;) {
		size_t connected = 0;
		uint32_t be, fe;

		for (size_t i = 0; i < n; i++)
			connected += dev_connected(hv, domid, &devs[i], &be, &fe);
		if (connected == n)
			return 0;
		if (pvm_now_ms() >= deadline) {
			/* Name every device left behind: a guest must not be
			 * left silently with a dead disk. */
			size_t o = (size_t)snprintf(why, why_len,
						    "%zu of %zu PV devices of domain %u reconnected within %u ms; not:",
						    connected, n, domid, timeout_ms);

			for (size_t i = 0; i < n && o < why_len; i++) {
				char name[40];

				if (dev_connected(hv, domid, &devs[i], &be, &fe))
					continue;
				dev_name(&devs[i], name, sizeof(name));
				o += (size_t)snprintf(why + o, why_len - o,
						      " %s (backend state %u, frontend %u)",
						      name, be, fe);
			}
			return -ETIMEDOUT;
		}
		usleep(200); /* cheap: two reads per device */
	}
}

void pvm_pvq_served(struct pvm_hv *hv, uint32_t domid,
		    const struct pvm_pvq_device *devs, size_t n,
		    uint64_t *served_out)
{
	for (size_t i = 0; i < n; i++) {
		served_out[i] = 0;
		if (pvm_sim_is_sim(hv))
			pvm_sim_backend_served(hv, domid,
					       (uint32_t)sim_type(devs[i].type),
					       devs[i].devid, &served_out[i]);
	}
}

int pvm_pvq_wait_first_io(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_pvq_device *devs, size_t n,
			  const uint64_t *served_before, uint64_t since_ns,
			  unsigned timeout_ms, double *ms_out)
{
	uint64_t deadline = pvm_now_ns() + (uint64_t)timeout_ms * 1000000u;

	if (!n || !pvm_sim_is_sim(hv))
		return -EOPNOTSUPP;
	for (;;) {
		size_t done = 0;

		for (size_t i = 0; i < n; i++) {
			uint64_t s = 0;

			/* A backend replaced since (a cooperative reconnect
			 * makes a fresh one) counts from 0. */
			if (pvm_sim_backend_served(hv, domid,
						   (uint32_t)sim_type(devs[i].type),
						   devs[i].devid, &s) == 0 &&
			    (s > served_before[i] || (s && s < served_before[i])))
				done++;
		}
		if (done == n) {
			*ms_out = (double)(pvm_now_ns() - since_ns) / 1e6;
			return 0;
		}
		if (pvm_now_ns() >= deadline)
			return -ETIMEDOUT;
		usleep(100);
	}
}
