/*
 * PV backends of the simulated host: the toolstack's xenstore nodes for a
 * new domain's devices, one thread per backend, the backend's side of the
 * xenbus handshake, and the quiesce/reconnect seam (backend.h).
 *
 *   sim_dev_prepare()      domain_create, before the fork: nodes, the
 *                          guest's xenstore connection
 *   sim_dev_start_all()    domain_create, after: a backend per device
 *   dev_main()             the backend thread: watches its frontend's
 *                          state, serves the ring(s) (vbd.c, vif.c)
 *   sim_dev_domain_dead()  death/destroy: the nodes go, backends notice
 *   sim_dev_destroy_domain()  destroy: the backends go
 *
 * Backend xenbus state machine (after Linux xen-blkback/xenbus.c
 * frontend_changed(); one function, xb_set(), performs each transition and
 * checks the from-state against the table below):
 *
 *   Initialising ──dev_start(): features written──────────► InitWait
 *   InitWait ──frontend Initialised|Connected: rings mapped,
 *              port bound (dev_connect)───────────────────► Connected
 *   Connected ──frontend Closing──────────────────────────► Closing
 *   Connected|Closing ──frontend Closed: disconnect────────► Closed
 *   Closed ──frontend Initialising (re-handshake, modern)─► InitWait
 *   any but Closed ──sim_dev_fatal() (hostile frontend)───► Closing
 *                   (error node written) ──► Closed, broken
 *   (none) ──pvm_sim_backend_attach(): transparent─────────► Connected
 *
 *   InitWait:  features published, no ring mapped, no port bound.
 *   Connected: every ring mapped and the port bound (unless gone).
 *   Closed:    nothing mapped or bound.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "hv/sim/xenring.h"

#include "hv/sim/internal.h"
#include "hv/sim/xenstored/xenstored.h"

/* A xenstore server that does not answer in this long (its loop is not
 * running) fails the call instead of hanging the host. */
#define XS_TIMEOUT_MS 10000u

static const char *type_name(uint32_t type)
{
	return type == PVM_SIM_DEV_VBD ? "vbd" : "vif";
}

/* ---- the xenbus state machine ---------------------------------------- */

bool sim_xb_allowed(uint32_t from, uint32_t to)
{
	switch (to) {
	case XenbusStateInitWait:
		return from == XenbusStateInitialising ||
		       from == XenbusStateClosed;
	case XenbusStateConnected:
		return from == XenbusStateInitWait;
	case XenbusStateClosing:
		return from != XenbusStateClosed && from != XenbusStateClosing;
	case XenbusStateClosed:
		return from == XenbusStateConnected ||
		       from == XenbusStateClosing;
	default:
		return false;
	}
}

static int xb_set(struct sim_dev *v, uint32_t to)
{
	char path[128];
	int rc;

	if (!sim_xb_allowed(v->xb_state, to)) {
		pvm_err("sim: d%u %s %u: xenbus %u -> %u is not a transition",
			v->domid, type_name(v->type), v->devid, v->xb_state, to);
		return -EPROTO;
	}
	snprintf(path, sizeof(path), "%s/state", v->be_path);
	rc = xsc_writef(&v->xs, path, "%u", to);
	if (rc < 0 && !v->gone) {
		pvm_warn("sim: d%u %s %u: cannot write %s: %s", v->domid,
			 type_name(v->type), v->devid, path, strerror(-rc));
	}
	pvm_debug("sim: d%u %s %u: xenbus %u -> %u", v->domid,
		  type_name(v->type), v->devid, v->xb_state, to);
	/* atomic: pvm_sim_backend_xb_state() reads it from other threads */
	__atomic_store_n(&v->xb_state, to, __ATOMIC_RELEASE);
	return 0;
}

/* ---- rings and port ------------------------------------------------- */

static void dev_disconnect(struct sim_dev *v)
{
	struct pvm_hv *hv = &v->h->hv;

	for (uint32_t i = 0; i < PVM_SIM_BACKEND_MAX_RINGS; i++) {
		if (v->ring[i].handle)
			pvm_sim_grant_unmap(hv, v->ring[i].handle);
		v->ring[i].handle = 0;
		v->ring[i].page = NULL;
	}
	if (v->be_port)
		pvm_sim_evtchn_close(hv, 0, v->be_port);
	v->be_port = 0;
	v->efd = -1;
}

/* Maps ring refs already in v->ring[] and binds to v->fe_port. */
static int dev_map(struct sim_dev *v)
{
	struct pvm_hv *hv = &v->h->hv;
	int rc;

	for (uint32_t i = 0; i < v->nr_rings; i++) {
		rc = pvm_sim_grant_map(hv, 0, v->domid, v->ring[i].ref, 0,
				       &v->ring[i].page, &v->ring[i].handle);
		if (rc < 0)
			return rc;
	}
	rc = pvm_sim_evtchn_bind_interdomain(hv, 0, v->domid, v->fe_port,
					     &v->be_port);
	if (rc == 0)
		rc = pvm_sim_evtchn_fd(hv, 0, v->be_port, &v->efd);
	return rc;
}

static int read_u32(struct sim_dev *v, const char *dir, const char *node,
		    uint32_t *out)
{
	char path[160];
	uint64_t val;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", dir, node);
	rc = xsc_read_u64(&v->xs, path, &val);
	if (rc == 0 && val > UINT32_MAX)
		rc = -ERANGE;
	if (rc == 0)
		*out = (uint32_t)val;
	return rc;
}

/* What the frontend wrote before Initialised/Connected (blkfront's
 * talk_to_blkback, netfront's talk_to_netback), then map and bind. */
static int dev_connect(struct sim_dev *v)
{
	static const char *const refs[2][2] = {
		{ "ring-ref", NULL },
		{ "tx-ring-ref", "rx-ring-ref" },
	};
	const char *const *names = refs[v->type == PVM_SIM_DEV_VIF];
	char path[160], proto[32];
	uint32_t val = 0;
	int rc;

	v->nr_rings = v->type == PVM_SIM_DEV_VIF ? 2 : 1;
	for (uint32_t i = 0; i < v->nr_rings; i++) {
		rc = read_u32(v, v->fe_path, names[i], &v->ring[i].ref);
		if (rc < 0) {
			sim_dev_fatal(v, "reading %s/%s: %s", v->fe_path,
				      names[i], strerror(-rc));
			return rc;
		}
	}
	rc = read_u32(v, v->fe_path, "event-channel", &v->fe_port);
	if (rc < 0) {
		sim_dev_fatal(v, "reading %s/event-channel: %s", v->fe_path,
			      strerror(-rc));
		return rc;
	}
	v->features = 0;
	if (v->type == PVM_SIM_DEV_VBD) {
		snprintf(path, sizeof(path), "%s/protocol", v->fe_path);
		rc = xsc_read(&v->xs, path, proto, sizeof(proto));
		if (rc >= 0 && strcmp(proto, XEN_IO_PROTO_ABI_NATIVE) != 0) {
			sim_dev_fatal(v, "unknown protocol %s", proto);
			return -EPROTO;
		}
		v->features |= PVM_SIM_FEAT_FLUSH;
	} else {
		if (read_u32(v, v->fe_path, "request-rx-copy", &val) < 0 ||
		    val != 1) {
			sim_dev_fatal(v, "frontend does not request rx-copy "
					 "(the only mode)");
			return -EPROTO;
		}
		v->features |= PVM_SIM_FEAT_RX_COPY;
		if (read_u32(v, v->fe_path, "feature-rx-notify", &val) == 0 &&
		    val == 1)
			v->features |= PVM_SIM_FEAT_RX_NOTIFY;
	}
	rc = dev_map(v);
	if (rc < 0) {
		sim_dev_fatal(v, "mapping ring refs / binding port %u: %s",
			      v->fe_port, strerror(-rc));
		return rc;
	}
	/* A fresh connect starts where the frontend's ring is (blkback's
	 * BACK_RING_ATTACH at rsp_prod); the index is checked before use. */
	for (uint32_t i = 0; i < v->nr_rings; i++) {
		/* every sring starts req_prod, req_event, rsp_prod */
		const volatile uint32_t *idx = v->ring[i].page;

		v->ring[i].req_cons = v->ring[i].rsp_prod_pvt = idx[2];
	}
	if (v->type == PVM_SIM_DEV_VBD) {
		snprintf(path, sizeof(path), "%s/sectors", v->be_path);
		xsc_writef(&v->xs, path, "%llu",
			   (unsigned long long)v->sectors);
		snprintf(path, sizeof(path), "%s/sector-size", v->be_path);
		xsc_write(&v->xs, path, "512");
		snprintf(path, sizeof(path), "%s/info", v->be_path);
		xsc_writef(&v->xs, path, "%u", v->readonly ? 4u : 0u);
	}
	return 0;
}

void sim_dev_fatal(struct sim_dev *v, const char *fmt, ...)
{
	char msg[256], path[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pvm_err("sim: d%u %s %u: %s; device broken", v->domid,
		type_name(v->type), v->devid, msg);
	v->broken = true;
	snprintf(path, sizeof(path), "%s/error", v->be_path);
	xsc_write(&v->xs, path, msg);
	if (v->xb_state != XenbusStateClosed &&
	    v->xb_state != XenbusStateClosing)
		xb_set(v, XenbusStateClosing);
	dev_disconnect(v);
	if (v->xb_state == XenbusStateClosing)
		xb_set(v, XenbusStateClosed);
}

/* The frontend's state changed (or may have): Linux frontend_changed(). */
void sim_dev_read_stall(struct sim_dev *v)
{
	char path[160], val[8];

	snprintf(path, sizeof(path), "%s/pvmig-stall", v->be_path);
	v->stall = v->type == PVM_SIM_DEV_VBD &&
		   xsc_read(&v->xs, path, val, sizeof(val)) >= 0 &&
		   !strcmp(val, "1");
}

static void frontend_changed(struct sim_dev *v)
{
	char path[160], mine[16];
	uint32_t fe = 0;
	int rc;

	sim_dev_read_stall(v);
	snprintf(path, sizeof(path), "%s/state", v->be_path);
	if (xsc_read(&v->xs, path, mine, sizeof(mine)) == -ENOENT) {
		/* our own directory was removed: the domain is gone */
		v->gone = true;
		dev_disconnect(v);
		return;
	}
	/* A frontend node missing for a moment (the toolstack rewriting or
	 * importing the guest's subtree) is no reason to drop a connected
	 * ring: only our own directory going away is (above). */
	rc = read_u32(v, v->fe_path, "state", &fe);
	if (rc < 0)
		return;
	if (v->broken)
		return;
	switch (fe) {
	case XenbusStateInitialising:
		if (v->xb_state == XenbusStateClosed)
			xb_set(v, XenbusStateInitWait);
		break;
	case XenbusStateInitialised:
	case XenbusStateConnected:
		if (v->xb_state != XenbusStateInitWait)
			break;
		if (dev_connect(v) == 0)
			xb_set(v, XenbusStateConnected);
		break;
	case XenbusStateClosing:
		if (v->xb_state == XenbusStateConnected)
			xb_set(v, XenbusStateClosing);
		break;
	case XenbusStateClosed:
		if (v->xb_state == XenbusStateConnected ||
		    v->xb_state == XenbusStateClosing) {
			dev_disconnect(v);
			if (v->xb_state == XenbusStateConnected)
				xb_set(v, XenbusStateClosing);
			xb_set(v, XenbusStateClosed);
		}
		break;
	default:
		break;
	}
}

/* ---- the thread ---------------------------------------------------- */

static int process(struct sim_dev *v)
{
	if (v->xb_state != XenbusStateConnected || v->broken || v->gone ||
	    !v->be_port)
		return 0;
	return v->type == PVM_SIM_DEV_VBD ? sim_vbd_process(v) :
					    sim_vif_process(v);
}

static void *dev_main(void *arg)
{
	struct sim_dev *v = arg;
	bool xs_ready = true; /* look once at start */

	for (;;) {
		struct pollfd pfd[3];
		eventfd_t n;
		int np = 0;

		pthread_mutex_lock(&v->mu);
		if (v->want == DEV_PAUSE && !v->paused) {
			/* Quiesce pauses the guest before its backends: serve
			 * what it queued last, so that a frontend that makes new
			 * rings on resume (modern) has nothing in flight to drop. */
			pthread_mutex_unlock(&v->mu);
			process(v);
			pthread_mutex_lock(&v->mu);
		}
		while (v->want == DEV_PAUSE) {
			if (!v->paused) {
				v->paused = true;
				pthread_cond_broadcast(&v->cv);
			}
			pthread_cond_wait(&v->cv, &v->mu);
		}
		v->paused = false;
		if (v->want == DEV_STOP) {
			pthread_mutex_unlock(&v->mu);
			break;
		}
		pthread_mutex_unlock(&v->mu);

		if (xs_ready || v->xs.events) {
			if (xsc_take_events(&v->xs) != 0 || xs_ready)
				frontend_changed(v);
			if (v->xs.err && !v->gone) {
				pvm_warn("sim: d%u %s %u: xenstore connection "
					 "lost", v->domid, type_name(v->type),
					 v->devid);
				v->gone = true;
				dev_disconnect(v);
			}
		}
		process(v);

		pfd[np++] = (struct pollfd){ .fd = v->kick, .events = POLLIN };
		if (!v->xs.err)
			pfd[np++] = (struct pollfd){ .fd = v->xs.fd,
						     .events = POLLIN };
		if (v->be_port && v->efd >= 0)
			pfd[np++] = (struct pollfd){ .fd = v->efd,
						     .events = POLLIN };
		/* An event read while awaiting a reply is off the socket
		 * already: poll would sleep on it. */
		if (poll(pfd, (nfds_t)np, v->xs.events ? 0 : -1) < 0)
			continue;
		eventfd_read(v->kick, &n);
		xs_ready = !v->xs.err && (pfd[1].revents & (POLLIN | POLLHUP));
		if (np == 3 && (pfd[2].revents & POLLIN))
			eventfd_read(v->efd, &n);
	}
	return NULL;
}

static void dev_free(struct sim_dev *v)
{
	if (v->type == PVM_SIM_DEV_VBD)
		sim_vbd_close(v);
	else
		sim_vif_close(v);
	dev_disconnect(v);
	xsc_close(&v->xs);
	if (v->kick >= 0)
		close(v->kick);
	pthread_mutex_destroy(&v->mu);
	pthread_cond_destroy(&v->cv);
	free(v);
}

static void dev_stop(struct sim_dev *v)
{
	if (!v->thread_started)
		return;
	pthread_mutex_lock(&v->mu);
	v->want = DEV_STOP;
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->mu);
	eventfd_write(v->kick, 1);
	pthread_join(v->thread, NULL);
	v->thread_started = false;
}

/* A backend object for @domid/@type/@devid, its xenstore connection open
 * and its configuration read from its directory; no thread yet. */
static int dev_new(struct sim_host *h, uint32_t domid, uint32_t type,
		   uint32_t devid, struct sim_dev **out)
{
	struct sim_dev *v;
	int fd, rc;

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->h = h;
	v->type = type;
	v->domid = domid;
	v->devid = devid;
	v->efd = v->disk_fd = -1;
	v->xs.fd = -1;
	v->xb_state = XenbusStateInitialising;
	pthread_mutex_init(&v->mu, NULL);
	{
		/* pvm_sim_backend_pause waits on it with a monotonic bound */
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&v->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	snprintf(v->be_path, sizeof(v->be_path),
		 "/local/domain/0/backend/%s/%u/%u", type_name(type), domid,
		 devid);
	snprintf(v->fe_path, sizeof(v->fe_path), "/local/domain/%u/device/%s/%u",
		 domid, type_name(type), devid);
	v->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rc = v->kick < 0 ? -errno : 0;
	if (rc == 0)
		rc = pvm_xenstored_connect_domain(h->xs_srv, 0, &fd);
	if (rc < 0) {
		dev_free(v);
		return rc;
	}
	xsc_init(&v->xs, fd);
	xsc_set_timeout(&v->xs, XS_TIMEOUT_MS);
	rc = type == PVM_SIM_DEV_VBD ? sim_vbd_open(v) : sim_vif_open(v);
	if (rc < 0) {
		dev_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

static int dev_run(struct sim_dev *v)
{
	char path[160];
	int rc;

	snprintf(path, sizeof(path), "%s/state", v->be_path);
	rc = xsc_watch(&v->xs, path, "be");
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/state", v->fe_path);
		rc = xsc_watch(&v->xs, path, "fe");
	}
	if (rc == 0 && v->type == PVM_SIM_DEV_VBD) {
		snprintf(path, sizeof(path), "%s/pvmig-stall", v->be_path);
		rc = xsc_watch(&v->xs, path, "stall");
	}
	if (rc < 0)
		return rc;
	rc = pthread_create(&v->thread, NULL, dev_main, v);
	if (rc)
		return -rc;
	v->thread_started = true;
	return 0;
}

static void dev_link(struct sim_host *h, struct sim_dev *v)
{
	v->next = h->devs;
	h->devs = v;
}

/* dev_lock held. */
static struct sim_dev *dev_find(struct sim_host *h, uint32_t domid,
				uint32_t type, uint32_t devid)
{
	for (struct sim_dev *v = h->devs; v; v = v->next)
		if (v->domid == domid && v->type == type && v->devid == devid)
			return v;
	return NULL;
}

static void dev_unlink(struct sim_host *h, struct sim_dev *v)
{
	struct sim_dev **pp = &h->devs;

	while (*pp != v)
		pp = &(*pp)->next;
	*pp = v->next;
}

/* ---- domain creation ------------------------------------------------ */

int pvm_sim_vdev_devid(const char *vdev, uint32_t *devid_out)
{
	if (!vdev || strncmp(vdev, "xvd", 3) != 0 || vdev[3] < 'a' ||
	    vdev[3] > 'p' || vdev[4]) {
		pvm_err("sim: disk name \"%s\": use xvda..xvdp",
			vdev ? vdev : "(null)");
		return -EINVAL;
	}
	*devid_out = (202u << 8) | ((uint32_t)(vdev[3] - 'a') << 4);
	return 0;
}

static int check_devices(const struct pvm_hv_domain_config *cfg)
{
	uint32_t ids[PVM_HV_MAX_DISKS];

	if (cfg->nr_disks > PVM_HV_MAX_DISKS || cfg->nr_nics > PVM_HV_MAX_NICS) {
		pvm_err("sim: at most %u disks and %u nics", PVM_HV_MAX_DISKS,
			PVM_HV_MAX_NICS);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < cfg->nr_disks; i++) {
		const struct pvm_hv_disk *k = &cfg->disks[i];

		if (!k->path || !*k->path || strlen(k->path) > 1024 ||
		    pvm_sim_vdev_devid(k->vdev, &ids[i]) < 0) {
			pvm_err("sim: disk %u: needs a path and a vdev", i);
			return -EINVAL;
		}
		for (uint32_t j = 0; j < i; j++)
			if (ids[j] == ids[i]) {
				pvm_err("sim: disk %s given twice", k->vdev);
				return -EINVAL;
			}
	}
	for (uint32_t i = 0; i < cfg->nr_nics; i++) {
		const char *b = cfg->nics[i].bridge;

		if (b && (!*b || strlen(b) >= 32)) {
			pvm_err("sim: nic %u: bridge name of 1..31 chars", i);
			return -EINVAL;
		}
	}
	if (cfg->frontend_gen != PVM_HV_FRONTEND_MODERN &&
	    cfg->frontend_gen != PVM_HV_FRONTEND_LEGACY) {
		pvm_err("sim: unknown frontend generation %d",
			(int)cfg->frontend_gen);
		return -EINVAL;
	}
	return 0;
}

/* Host xs connection held (xs_lock). */
static int hwrite(struct sim_host *h, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int hwrite(struct sim_host *h, const char *path, const char *fmt, ...)
{
	char val[1100];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	return xsc_write(&h->xs, path, val);
}

static int prepare_nodes(struct sim_host *h, uint32_t domid,
			 const struct pvm_hv_domain_config *cfg)
{
	char be[128], fe[128], p[192];
	int rc = 0;

	for (uint32_t i = 0; rc == 0 && i < cfg->nr_disks; i++) {
		const struct pvm_hv_disk *k = &cfg->disks[i];
		uint32_t devid = 0;

		pvm_sim_vdev_devid(k->vdev, &devid);
		rc = pvm_xenstored_add_device(h->xs_srv, "vbd", (uint16_t)domid,
					      0, devid);
		if (rc < 0)
			break;
		snprintf(be, sizeof(be), "/local/domain/0/backend/vbd/%u/%u",
			 domid, devid);
		snprintf(fe, sizeof(fe), "/local/domain/%u/device/vbd/%u",
			 domid, devid);
		snprintf(p, sizeof(p), "%s/params", be);
		rc = hwrite(h, p, "%s", k->path);
		snprintf(p, sizeof(p), "%s/mode", be);
		rc = rc ?: hwrite(h, p, "%s", k->readonly ? "r" : "w");
		snprintf(p, sizeof(p), "%s/type", be);
		rc = rc ?: hwrite(h, p, "file");
		snprintf(p, sizeof(p), "%s/dev", be);
		rc = rc ?: hwrite(h, p, "%s", k->vdev);
		snprintf(p, sizeof(p), "%s/virtual-device", fe);
		rc = rc ?: hwrite(h, p, "%u", devid);
		snprintf(p, sizeof(p), "%s/device-type", fe);
		rc = rc ?: hwrite(h, p, "disk");
	}
	for (uint32_t i = 0; rc == 0 && i < cfg->nr_nics; i++) {
		const struct pvm_hv_nic *n = &cfg->nics[i];
		static const uint8_t zero[6];
		uint8_t m[6];
		char mac[24];

		memcpy(m, n->mac, 6);
		if (!memcmp(m, zero, 6)) {
			/* libxl picks 00:16:3e:xx:xx:xx; ours is stable */
			m[0] = 0x00;
			m[1] = 0x16;
			m[2] = 0x3e;
			m[3] = (uint8_t)(domid >> 8);
			m[4] = (uint8_t)domid;
			m[5] = (uint8_t)i;
		}

		snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x",
			 m[0], m[1], m[2], m[3], m[4], m[5]);
		rc = pvm_xenstored_add_device(h->xs_srv, "vif", (uint16_t)domid,
					      0, i);
		if (rc < 0)
			break;
		snprintf(be, sizeof(be), "/local/domain/0/backend/vif/%u/%u",
			 domid, i);
		snprintf(fe, sizeof(fe), "/local/domain/%u/device/vif/%u",
			 domid, i);
		snprintf(p, sizeof(p), "%s/mac", be);
		rc = hwrite(h, p, "%s", mac);
		snprintf(p, sizeof(p), "%s/bridge", be);
		rc = rc ?: hwrite(h, p, "%s", n->bridge ? n->bridge : "xenbr0");
		snprintf(p, sizeof(p), "%s/handle", be);
		rc = rc ?: hwrite(h, p, "%u", i);
		snprintf(p, sizeof(p), "%s/mac", fe);
		rc = rc ?: hwrite(h, p, "%s", mac);
		snprintf(p, sizeof(p), "%s/handle", fe);
		rc = rc ?: hwrite(h, p, "%u", i);
	}
	return rc;
}

int sim_dev_prepare(struct sim_host *h, struct sim_domain *d,
		    const struct pvm_hv_domain_config *cfg, int *xs_fd_out)
{
	int rc;

	*xs_fd_out = -1;
	rc = check_devices(cfg);
	if (rc < 0)
		return rc;
	if (!h->xs_srv) {
		if (cfg->nr_disks || cfg->nr_nics) {
			pvm_err("sim: domain %u: PV devices need a xenstore "
				"server (pvm_sim_config.xenstored)", d->domid);
			return -EINVAL;
		}
		return 0;
	}
	if ((cfg->nr_disks || cfg->nr_nics) &&
	    d->nr_pages < PVM_SIMGUEST_DEV_PAGES + PVM_SIMGUEST_FIRST_FREE_PFN) {
		pvm_err("sim: domain %u: PV devices need at least %u pages",
			d->domid,
			PVM_SIMGUEST_DEV_PAGES + PVM_SIMGUEST_FIRST_FREE_PFN);
		return -EINVAL;
	}
	rc = pvm_xenstored_make_domain(h->xs_srv, (uint16_t)d->domid, d->name,
				       d->nr_pages * (PVM_PAGE_SIZE / 1024));
	if (rc == 0)
		rc = pvm_xenstored_introduce(h->xs_srv, (uint16_t)d->domid);
	if (rc == 0) {
		pthread_mutex_lock(&h->xs_lock);
		rc = prepare_nodes(h, d->domid, cfg);
		pthread_mutex_unlock(&h->xs_lock);
	}
	if (rc == 0)
		rc = pvm_xenstored_connect_domain(h->xs_srv, (uint16_t)d->domid,
						  xs_fd_out);
	if (rc < 0) {
		pvm_err("sim: domain %u: xenstore set-up: %s", d->domid,
			strerror(-rc));
		sim_dev_domain_dead(h, d);
	}
	return rc;
}

int sim_dev_start_all(struct sim_host *h, uint32_t domid,
		      const struct pvm_hv_domain_config *cfg)
{
	int rc = 0;

	pthread_mutex_lock(&h->dev_lock);
	for (uint32_t i = 0; rc == 0 && i < cfg->nr_disks + cfg->nr_nics; i++) {
		bool disk = i < cfg->nr_disks;
		uint32_t devid = disk ? 0 : i - cfg->nr_disks;
		struct sim_dev *v;

		if (disk)
			pvm_sim_vdev_devid(cfg->disks[i].vdev, &devid);
		rc = dev_new(h, domid, disk ? PVM_SIM_DEV_VBD : PVM_SIM_DEV_VIF,
			     devid, &v);
		if (rc < 0)
			break;
		rc = xb_set(v, XenbusStateInitWait);
		if (rc == 0)
			rc = dev_run(v);
		if (rc < 0) {
			dev_free(v);
			break;
		}
		dev_link(h, v);
	}
	pthread_mutex_unlock(&h->dev_lock);
	return rc;
}

void sim_dev_domain_dead(struct sim_host *h, struct sim_domain *d)
{
	if (!h->xs_srv || d->is_control)
		return;
	pvm_xenstored_release(h->xs_srv, (uint16_t)d->domid);
	pvm_xenstored_remove_domain(h->xs_srv, (uint16_t)d->domid);
}

void sim_dev_destroy_domain(struct sim_host *h, uint32_t domid)
{
	pthread_mutex_lock(&h->dev_lock);
	for (struct sim_dev **pp = &h->devs; *pp;) {
		struct sim_dev *v = *pp;

		if (domid && v->domid != domid) {
			pp = &v->next;
			continue;
		}
		*pp = v->next;
		dev_stop(v);
		dev_free(v);
	}
	pthread_mutex_unlock(&h->dev_lock);
}

int sim_dev_host_init(struct sim_host *h, struct pvm_xenstored *srv)
{
	int fd, rc;

	pthread_mutex_init(&h->xs_lock, NULL);
	pthread_mutex_init(&h->dev_lock, NULL);
	pthread_mutex_init(&h->sw_lock, NULL);
	h->xs.fd = -1;
	h->xs.err = -EPIPE;
	h->xs_srv = srv;
	if (!srv)
		return 0;
	rc = pvm_xenstored_connect_domain(srv, 0, &fd);
	if (rc < 0) {
		pvm_err("sim: cannot connect to the xenstore server: %s",
			strerror(-rc));
		return rc;
	}
	xsc_init(&h->xs, fd);
	xsc_set_timeout(&h->xs, XS_TIMEOUT_MS);
	return 0;
}

void sim_dev_host_close(struct sim_host *h)
{
	sim_dev_destroy_domain(h, 0);
	sim_switch_free_all(h);
	xsc_close(&h->xs);
	pthread_mutex_destroy(&h->xs_lock);
	pthread_mutex_destroy(&h->dev_lock);
	pthread_mutex_destroy(&h->sw_lock);
}

/* ---- workload counters --------------------------------------------- */

int pvm_sim_workload_read(struct pvm_hv *hv, uint32_t domid,
			  struct pvm_sim_workload *out)
{
	static const struct {
		const char *name;
		size_t off;
	} nodes[] = {
		{ "blk-writes", offsetof(struct pvm_sim_workload, blk_writes) },
		{ "blk-reads", offsetof(struct pvm_sim_workload, blk_reads) },
		{ "blk-verify-fail",
		  offsetof(struct pvm_sim_workload, blk_verify_fail) },
		{ "blk-io-errors",
		  offsetof(struct pvm_sim_workload, blk_io_errors) },
		{ "net-sent", offsetof(struct pvm_sim_workload, net_sent) },
		{ "net-received",
		  offsetof(struct pvm_sim_workload, net_received) },
		{ "net-lost", offsetof(struct pvm_sim_workload, net_lost) },
		{ "net-dup", offsetof(struct pvm_sim_workload, net_dup) },
		{ "net-ooo", offsetof(struct pvm_sim_workload, net_ooo) },
		{ "fe-connects", offsetof(struct pvm_sim_workload, fe_connects) },
		{ "blk-flushes", offsetof(struct pvm_sim_workload, blk_flushes) },
	};
	struct sim_host *h = to_host(hv);
	char path[128];
	int found = 0, rc = 0;

	if (!h->xs_srv)
		return -EOPNOTSUPP;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&h->xs_lock);
	for (size_t i = 0; i < PVM_ARRAY_SIZE(nodes); i++) {
		uint64_t val;

		snprintf(path, sizeof(path), "/local/domain/%u/data/workload/%s",
			 domid, nodes[i].name);
		rc = xsc_read_u64(&h->xs, path, &val);
		if (rc == -ENOENT)
			continue;
		if (rc < 0)
			break;
		memcpy((uint8_t *)out + nodes[i].off, &val, sizeof(val));
		found++;
	}
	pthread_mutex_unlock(&h->xs_lock);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	return found ? 0 : -ENOENT;
}

/* ---- the seam (backend.h) ----------------------------------------- */

int pvm_sim_xs_read(struct pvm_hv *hv, const char *path, char *buf,
		    size_t len)
{
	struct sim_host *h = to_host(hv);
	int rc;

	if (!h->xs_srv)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&h->xs_lock);
	rc = xsc_read(&h->xs, path, buf, len);
	pthread_mutex_unlock(&h->xs_lock);
	return rc < 0 ? rc : 0;
}

int pvm_sim_xs_write(struct pvm_hv *hv, const char *path, const char *val)
{
	struct sim_host *h = to_host(hv);
	int rc;

	if (!h->xs_srv)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&h->xs_lock);
	rc = xsc_write(&h->xs, path, val);
	pthread_mutex_unlock(&h->xs_lock);
	return rc;
}

int pvm_sim_domain_suspend_cancel(struct pvm_hv *hv, uint32_t domid)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0 && d->suspended && d->pause_count == 0)
		sim_cancel_suspend_locked(d);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int pvm_sim_domain_suspended(struct pvm_hv *hv, uint32_t domid,
			     bool *suspended_out)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0)
		*suspended_out = d->suspended;
	pthread_mutex_unlock(&h->lock);
	return rc;
}

static int dev_lookup(struct sim_host *h, uint32_t domid, uint32_t type,
		      uint32_t devid, struct sim_dev **out)
{
	*out = dev_find(h, domid, type, devid);
	return *out ? 0 : -ESRCH;
}

int pvm_sim_backend_pause(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			  uint32_t devid, unsigned timeout_ms)
{
	struct sim_host *h = to_host(hv);
	struct sim_dev *v;
	int rc;

	pthread_mutex_lock(&h->dev_lock);
	rc = dev_lookup(h, domid, type, devid, &v);
	if (rc == 0) {
		/* The thread acknowledges between two batches: each request
		 * it took has its response pushed by then (drained). */
		struct timespec dl;

		clock_gettime(CLOCK_MONOTONIC, &dl);
		dl.tv_sec += timeout_ms / 1000;
		dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&v->mu);
		v->want = DEV_PAUSE;
		eventfd_write(v->kick, 1);
		while (!v->paused && rc == 0)
			rc = -pthread_cond_timedwait(&v->cv, &v->mu, &dl);
		if (rc) {
			/* Stuck inside a request (a disk that does not
			 * answer): not paused; let it go on when it can. */
			rc = -ETIMEDOUT;
			v->want = DEV_RUN;
			pthread_cond_broadcast(&v->cv);
		}
		pthread_mutex_unlock(&v->mu);
	}
	pthread_mutex_unlock(&h->dev_lock);
	return rc;
}

int pvm_sim_backend_unpause(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			    uint32_t devid)
{
	struct sim_host *h = to_host(hv);
	struct sim_dev *v;
	int rc;

	pthread_mutex_lock(&h->dev_lock);
	rc = dev_lookup(h, domid, type, devid, &v);
	if (rc == 0) {
		pthread_mutex_lock(&v->mu);
		if (v->want != DEV_PAUSE)
			rc = -EINVAL;
		v->want = DEV_RUN;
		pthread_cond_broadcast(&v->cv);
		pthread_mutex_unlock(&v->mu);
	}
	pthread_mutex_unlock(&h->dev_lock);
	return rc;
}

int pvm_sim_backend_capture(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			    uint32_t devid, struct pvm_sim_backend_state *out)
{
	struct sim_host *h = to_host(hv);
	struct sim_dev *v;
	int rc;

	pthread_mutex_lock(&h->dev_lock);
	rc = dev_lookup(h, domid, type, devid, &v);
	if (rc == 0) {
		pthread_mutex_lock(&v->mu);
		if (!v->paused)
			rc = -EBUSY;
		pthread_mutex_unlock(&v->mu);
	}
	if (rc == 0) {
		memset(out, 0, sizeof(*out));
		out->type = type;
		out->domid = domid;
		out->devid = devid;
		out->xb_state = v->xb_state;
		out->fe_port = v->fe_port;
		out->nr_rings = v->nr_rings;
		for (uint32_t i = 0; i < v->nr_rings; i++) {
			out->ring[i].ref = v->ring[i].ref;
			out->ring[i].req_cons = v->ring[i].req_cons;
			out->ring[i].rsp_prod_pvt = v->ring[i].rsp_prod_pvt;
		}
		out->features = v->features;
		if (v->broken)
			rc = -EIO;
	}
	pthread_mutex_unlock(&h->dev_lock);
	return rc;
}

int pvm_sim_backend_served(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			   uint32_t devid, uint64_t *served_out)
{
	struct sim_host *h = to_host(hv);
	struct sim_dev *v;
	int rc;

	pthread_mutex_lock(&h->dev_lock);
	rc = dev_lookup(h, domid, type, devid, &v);
	if (rc == 0)
		*served_out = __atomic_load_n(&v->served, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&h->dev_lock);
	return rc;
}

int pvm_sim_backend_xb_state(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			     uint32_t devid, uint32_t *state_out)
{
	struct sim_host *h = to_host(hv);
	struct sim_dev *v;
	int rc;

	pthread_mutex_lock(&h->dev_lock);
	rc = dev_lookup(h, domid, type, devid, &v);
	if (rc == 0) {
		/* written by the thread (xb_set) */
		*state_out = __atomic_load_n(&v->xb_state, __ATOMIC_ACQUIRE);
	}
	pthread_mutex_unlock(&h->dev_lock);
	return rc;
}

int pvm_sim_backend_destroy(struct pvm_hv *hv, uint32_t domid, uint32_t type,
			    uint32_t devid)
{
	struct sim_host *h = to_host(hv);
	struct sim_dev *v;
	int rc;

	pthread_mutex_lock(&h->dev_lock);
	rc = dev_lookup(h, domid, type, devid, &v);
	if (rc == 0) {
		dev_unlink(h, v);
		dev_stop(v);
		dev_free(v);
	}
	pthread_mutex_unlock(&h->dev_lock);
	return rc;
}

int pvm_sim_backend_attach(struct pvm_hv *hv,
			   const struct pvm_sim_backend_state *st)
{
	struct sim_host *h = to_host(hv);
	struct sim_dev *v = NULL;
	uint32_t want_rings;
	int rc;

	if (st->type != PVM_SIM_DEV_VBD && st->type != PVM_SIM_DEV_VIF)
		return -EINVAL;
	want_rings = st->type == PVM_SIM_DEV_VIF ? 2 : 1;
	for (uint32_t i = 0; i < st->nr_rings && i < PVM_SIM_BACKEND_MAX_RINGS;
	     i++)
		if (st->ring[i].req_cons != st->ring[i].rsp_prod_pvt) {
			/* Not drained: requests taken and never answered
			 * (and a gap the ring macros would spin on). */
			pvm_err("sim: d%u %s %u: ring %u not drained (%u/%u)",
				st->domid, type_name(st->type), st->devid, i,
				st->ring[i].req_cons, st->ring[i].rsp_prod_pvt);
			return -EINVAL;
		}
	if (st->nr_rings != want_rings || st->xb_state != XenbusStateConnected ||
	    st->domid == 0 || st->domid > PVM_HV_DOMID_MAX) {
		pvm_err("sim: d%u %s %u: cannot attach a backend state with "
			"%u rings in xenbus state %u", st->domid,
			type_name(st->type), st->devid, st->nr_rings,
			st->xb_state);
		return -EINVAL;
	}
	if (!h->xs_srv)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&h->dev_lock);
	if (dev_find(h, st->domid, st->type, st->devid)) {
		rc = -EBUSY;
		goto out_unlock;
	}
	rc = dev_new(h, st->domid, st->type, st->devid, &v);
	if (rc < 0)
		goto out_unlock;
	v->nr_rings = st->nr_rings;
	v->fe_port = st->fe_port;
	v->features = st->features;
	for (uint32_t i = 0; i < v->nr_rings; i++) {
		v->ring[i].ref = st->ring[i].ref;
		v->ring[i].req_cons = st->ring[i].req_cons;
		v->ring[i].rsp_prod_pvt = st->ring[i].rsp_prod_pvt;
	}
	rc = dev_map(v);
	if (rc < 0) {
		pvm_err("sim: d%u %s %u: re-attach: ring refs / port %u: %s",
			v->domid, type_name(v->type), v->devid, v->fe_port,
			strerror(-rc));
		goto out_free;
	}
	/* Straight to Connected (the node already says so). */
	v->xb_state = XenbusStateInitWait;
	rc = xb_set(v, XenbusStateConnected);
	if (rc == 0)
		rc = dev_run(v); /* from here the thread owns the ring fields */
	if (rc < 0)
		goto out_free;
	dev_link(h, v);
	pvm_info("sim: d%u %s %u: backend re-attached (ring at %u/%u)",
		 st->domid, type_name(st->type), st->devid, st->ring[0].req_cons,
		 st->ring[0].rsp_prod_pvt);
	v = NULL;
out_free:
	if (v)
		dev_free(v);
out_unlock:
	pthread_mutex_unlock(&h->dev_lock);
	return rc;
}

#define BE_STATE_VERSION 1u

void pvm_sim_backend_state_encode(const struct pvm_sim_backend_state *st,
				  struct pvm_buf *out)
{
	pvm_buf_put_u32(out, BE_STATE_VERSION);
	pvm_buf_put_u32(out, st->type);
	pvm_buf_put_u32(out, st->domid);
	pvm_buf_put_u32(out, st->devid);
	pvm_buf_put_u32(out, st->xb_state);
	pvm_buf_put_u32(out, st->fe_port);
	pvm_buf_put_u32(out, st->nr_rings);
	pvm_buf_put_u32(out, st->mode);
	for (uint32_t i = 0; i < st->nr_rings && i < PVM_SIM_BACKEND_MAX_RINGS;
	     i++) {
		pvm_buf_put_u32(out, st->ring[i].ref);
		pvm_buf_put_u32(out, st->ring[i].req_cons);
		pvm_buf_put_u32(out, st->ring[i].rsp_prod_pvt);
		pvm_buf_put_u32(out, 0);
	}
	pvm_buf_put_u64(out, st->features);
}

int pvm_sim_backend_state_decode(const void *buf, size_t len,
				 struct pvm_sim_backend_state *out)
{
	struct pvm_cursor c;
	uint32_t version = 0, rsvd = 0;

	memset(out, 0, sizeof(*out));
	pvm_cursor_init(&c, buf, len);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &out->type);
	pvm_cursor_u32(&c, &out->domid);
	pvm_cursor_u32(&c, &out->devid);
	pvm_cursor_u32(&c, &out->xb_state);
	pvm_cursor_u32(&c, &out->fe_port);
	pvm_cursor_u32(&c, &out->nr_rings);
	pvm_cursor_u32(&c, &out->mode);
	if (c.err || version != BE_STATE_VERSION || out->mode > 2 ||
	    out->nr_rings > PVM_SIM_BACKEND_MAX_RINGS ||
	    (out->type != PVM_SIM_DEV_VBD && out->type != PVM_SIM_DEV_VIF))
		return -EBADMSG;
	for (uint32_t i = 0; i < out->nr_rings; i++) {
		pvm_cursor_u32(&c, &out->ring[i].ref);
		pvm_cursor_u32(&c, &out->ring[i].req_cons);
		pvm_cursor_u32(&c, &out->ring[i].rsp_prod_pvt);
		pvm_cursor_u32(&c, &rsvd);
	}
	pvm_cursor_u64(&c, &out->features);
	if (c.err || pvm_cursor_remaining(&c) != 0)
		return -EBADMSG;
	return 0;
}
