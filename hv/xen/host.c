/*
 * The Xen backend instance and its domain slots.
 *
 *   pvm_hv_xen_open()  opens libxenctrl, libxenforeignmemory, libxenstore
 *                      and a libxl ctx, in that order (closed in reverse)
 *   domain_list/info   xc_domain_getinfolist + xc_domain_nr_gpfns, the name
 *                      from xenstore (/local/domain/<id>/name)
 *   domain_create      libxl_domain_create_new (PV, from a kernel image),
 *                      then libxl_domain_unpause unless start_paused
 *   domain_destroy     libxl_domain_destroy
 *   domain_pause/...   xc_domain_pause / xc_domain_unpause (Xen counts
 *                      toolstack pauses: controller_pause_count)
 *   domain_throttle    the scheduler's cap (credit2, Xen's default, or
 *                      credit): xc_sched_credit{2,}_domain_get/_set
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv/xen/internal.h"

int xen_libxl_errno(int lrc)
{
	switch (lrc) {
	case 0:
		return 0;
	case ERROR_NOMEM:
		return -ENOMEM;
	case ERROR_INVAL:
	case ERROR_VNUMA_CONFIG_INVALID:
		return -EINVAL;
	case ERROR_DOMAIN_NOTFOUND:
	case ERROR_DOMAIN_DESTROYED:
		return -ESRCH;
	case ERROR_DEVICE_EXISTS:
		return -EEXIST;
	case ERROR_NOTFOUND:
		return -ENOENT;
	case ERROR_NI:
	case ERROR_FEATURE_REMOVED:
		return -EOPNOTSUPP;
	case ERROR_TIMEDOUT:
	case ERROR_GUEST_TIMEDOUT:
		return -ETIMEDOUT;
	case ERROR_ABORTED:
		return -ECANCELED;
	default:
		return -EIO;
	}
}

int xen_getinfo(struct xen_host *x, uint32_t domid, xc_domaininfo_t *out)
{
	int n;

	if (domid > PVM_HV_DOMID_MAX)
		return -ESRCH;
	errno = 0;
	n = xc_domain_getinfolist(x->xch, domid, 1, out);
	if (n < 0)
		return xen_neg_errno();
	/* getinfolist returns the next domain at or after @domid. */
	if (n == 0 || out->domain != domid)
		return -ESRCH;
	return 0;
}

int xen_require_paused(struct xen_host *x, uint32_t domid, const char *what,
		       xc_domaininfo_t *info_out)
{
	xc_domaininfo_t info;
	int rc = xen_getinfo(x, domid, &info);

	if (rc) {
		pvm_err("xen: %s: domain %u: %s", what, domid, strerror(-rc));
		return rc;
	}
	if (!(info.flags & XEN_DOMINF_paused)) {
		pvm_err("xen: %s: domain %u is not paused", what, domid);
		return -EBUSY;
	}
	if (info_out)
		*info_out = info;
	return 0;
}

int xen_nr_pages(struct xen_host *x, uint32_t domid, uint64_t *n_out)
{
	xen_pfn_t n = 0;

	errno = 0;
	if (xc_domain_nr_gpfns(x->xch, domid, &n) < 0) {
		int rc = xen_neg_errno();

		pvm_err("xen: domain %u: xc_domain_nr_gpfns: %s", domid,
			strerror(-rc));
		return rc;
	}
	*n_out = n;
	return 0;
}

struct xen_dom *xen_dom_get(struct xen_host *x, uint32_t domid, bool create)
{
	for (size_t i = 0; i < x->n_doms; i++)
		if (x->doms[i].domid == domid)
			return &x->doms[i];
	if (!create)
		return NULL;
	if (x->n_doms == x->cap_doms) {
		size_t cap = x->cap_doms ? x->cap_doms * 2 : 8;
		struct xen_dom *d = realloc(x->doms, cap * sizeof(*d));

		if (!d)
			return NULL;
		x->doms = d;
		x->cap_doms = cap;
	}
	struct xen_dom *d = &x->doms[x->n_doms++];

	memset(d, 0, sizeof(*d));
	d->domid = domid;
	return d;
}

void xen_dom_forget(struct xen_host *x, uint32_t domid)
{
	for (size_t i = 0; i < x->n_doms; i++) {
		if (x->doms[i].domid != domid)
			continue;
		xen_p2m_dispose(x, &x->doms[i].p2m);
		x->doms[i] = x->doms[--x->n_doms];
		return;
	}
}

/* ---- dominfo ------------------------------------------------------------ */

/* The name libxl wrote; "" when there is none (or xenstore says no). */
static void read_name(struct xen_host *x, uint32_t domid, char *name,
		      size_t size)
{
	char path[64];
	unsigned int len = 0;
	char *v;

	name[0] = '\0';
	snprintf(path, sizeof(path), "/local/domain/%u/name", domid);
	v = xs_read(x->xsh, XBT_NULL, path, &len);
	if (!v)
		return;
	snprintf(name, size, "%.*s", (int)len, v);
	free(v);
}

static void fill_dominfo(struct xen_host *x, const xc_domaininfo_t *xi,
			 struct pvm_hv_dominfo *out)
{
	uint64_t n = 0;
	xen_pfn_t gpfns = 0;

	memset(out, 0, sizeof(*out));
	out->domid = xi->domain;
	if (xi->flags & XEN_DOMINF_paused)
		out->flags |= PVM_HV_DOMINF_PAUSED;
	if (xi->flags & XEN_DOMINF_dying)
		out->flags |= PVM_HV_DOMINF_DYING;
	if (xi->flags & XEN_DOMINF_shutdown) {
		out->flags |= PVM_HV_DOMINF_SHUTDOWN;
		out->shutdown_reason = (xi->flags >> XEN_DOMINF_shutdownshift) &
				       XEN_DOMINF_shutdownmask;
	}
	out->nr_vcpus = xi->max_vcpu_id + 1;
	/* A dying domain may have no p2m left; its size is then 0. */
	if (xc_domain_nr_gpfns(x->xch, xi->domain, &gpfns) == 0)
		n = gpfns;
	out->nr_pages = n;
	out->mem_pages = xi->tot_pages + xi->outstanding_pages;
	pthread_mutex_lock(&x->lock);
	struct xen_dom *d = xen_dom_get(x, xi->domain, false);

	if (d && d->logdirty)
		out->flags |= PVM_HV_DOMINF_LOGDIRTY;
	pthread_mutex_unlock(&x->lock);
	read_name(x, xi->domain, out->name, sizeof(out->name));
}

#define LIST_BATCH 64u

static int xen_domain_list(struct pvm_hv *hv, struct pvm_hv_dominfo *out,
			   size_t max, size_t *n_out)
{
	struct xen_host *x = xen_of(hv);
	xc_domaininfo_t batch[LIST_BATCH];
	uint32_t next = 1; /* dom0 is excluded */
	size_t n = 0;
	int rc = 0;

	*n_out = 0;
	for (;;) {
		int got;

		errno = 0;
		got = xc_domain_getinfolist(x->xch, next, LIST_BATCH, batch);
		if (got < 0) {
			rc = xen_neg_errno();
			pvm_err("xen: domain list: xc_domain_getinfolist: %s",
				strerror(-rc));
			return rc;
		}
		for (int i = 0; i < got; i++) {
			if (batch[i].domain == 0 ||
			    batch[i].domain > PVM_HV_DOMID_MAX)
				continue;
			if (n == max) {
				*n_out = n;
				return -ENOSPC;
			}
			fill_dominfo(x, &batch[i], &out[n++]);
		}
		if (got < (int)LIST_BATCH)
			break;
		next = batch[got - 1].domain + 1u;
		if (next > PVM_HV_DOMID_MAX)
			break;
	}
	*n_out = n;
	return 0;
}

static int xen_domain_info(struct pvm_hv *hv, uint32_t domid,
			   struct pvm_hv_dominfo *out)
{
	struct xen_host *x = xen_of(hv);
	xc_domaininfo_t xi;
	int rc = xen_getinfo(x, domid, &xi);

	if (rc) {
		if (rc != -ESRCH)
			pvm_err("xen: domain %u: info: %s", domid,
				strerror(-rc));
		return rc;
	}
	fill_dominfo(x, &xi, out);
	return 0;
}

/* ---- create / destroy --------------------------------------------------- */

/* The config's disks and NICs as libxl devices in @dc (dispose frees). */
static int build_devices(const struct pvm_hv_domain_config *cfg,
			 libxl_domain_config *dc)
{
	if (cfg->nr_disks) {
		dc->disks = calloc(cfg->nr_disks, sizeof(*dc->disks));
		if (!dc->disks)
			return -ENOMEM;
		dc->num_disks = (int)cfg->nr_disks;
		for (uint32_t i = 0; i < cfg->nr_disks; i++)
			libxl_device_disk_init(&dc->disks[i]);
	}
	for (uint32_t i = 0; i < cfg->nr_disks; i++) {
		const struct pvm_hv_disk *in = &cfg->disks[i];
		libxl_device_disk *d = &dc->disks[i];

		d->backend_domid = 0;
		d->format = LIBXL_DISK_FORMAT_RAW;
		d->readwrite = !in->readonly;
		if (!(d->pdev_path = strdup(in->path)) ||
		    !(d->vdev = strdup(in->vdev)))
			return -ENOMEM;
	}
	if (cfg->nr_nics) {
		dc->nics = calloc(cfg->nr_nics, sizeof(*dc->nics));
		if (!dc->nics)
			return -ENOMEM;
		dc->num_nics = (int)cfg->nr_nics;
		for (uint32_t i = 0; i < cfg->nr_nics; i++)
			libxl_device_nic_init(&dc->nics[i]);
	}
	for (uint32_t i = 0; i < cfg->nr_nics; i++) {
		const struct pvm_hv_nic *in = &cfg->nics[i];
		libxl_device_nic *n = &dc->nics[i];

		n->devid = (libxl_devid)i;
		/* All zeros: libxl makes up a 00:16:3e address. */
		memcpy(n->mac, in->mac, sizeof(n->mac));
		if (in->bridge) {
			free(n->bridge);
			if (!(n->bridge = strdup(in->bridge)))
				return -ENOMEM;
		}
	}
	/*
	 * The frontend generation, for quiesce to read back: libxl writes
	 * c_info.xsdata under /local/domain/<domid>/ in its create
	 * transaction (dom0-owned, guest-readable).
	 */
	dc->c_info.xsdata = calloc(3, sizeof(char *));
	if (!dc->c_info.xsdata)
		return -ENOMEM;
	if (!(dc->c_info.xsdata[0] = strdup(PVM_HV_XEN_XS_FRONTEND)) ||
	    !(dc->c_info.xsdata[1] = strdup(
		      cfg->frontend_gen == PVM_HV_FRONTEND_LEGACY ? "legacy"
								  : "modern")))
		return -ENOMEM;
	return 0;
}

static int build_config(const struct pvm_hv_domain_config *cfg,
			libxl_domain_config *dc)
{
	libxl_domain_build_info *b = &dc->b_info;
	size_t bytes = (cfg->nr_vcpus + 7u) / 8u;

	dc->c_info.type = LIBXL_DOMAIN_TYPE_PV;
	if (cfg->domid != PVM_HV_DOMID_ANY)
		dc->c_info.domid = cfg->domid;
	if (cfg->name && !(dc->c_info.name = strdup(cfg->name)))
		return -ENOMEM;
	libxl_domain_build_info_init_type(b, LIBXL_DOMAIN_TYPE_PV);
	b->max_vcpus = (int)cfg->nr_vcpus;
	/*
	 * All vCPUs online. Filled by hand rather than with
	 * libxl_cpu_bitmap_alloc(): the result is the same and it needs no
	 * ctx. libxl_domain_config_dispose() frees it.
	 */
	b->avail_vcpus.map = calloc(bytes, 1);
	if (!b->avail_vcpus.map)
		return -ENOMEM;
	b->avail_vcpus.size = (uint32_t)bytes;
	for (uint32_t i = 0; i < cfg->nr_vcpus; i++)
		libxl_bitmap_set(&b->avail_vcpus, (int)i);
	b->max_memkb = cfg->nr_pages * (PVM_PAGE_SIZE / 1024u);
	b->target_memkb = b->max_memkb;
	if (!(b->kernel = strdup(cfg->image)))
		return -ENOMEM;
	return build_devices(cfg, dc);
}

/* -EINVAL (logged) unless every device of @cfg is usable. */
static int check_devices(const struct pvm_hv_domain_config *cfg)
{
	if (cfg->nr_disks > PVM_HV_MAX_DISKS || cfg->nr_nics > PVM_HV_MAX_NICS) {
		pvm_err("xen: create: %u disks, %u nics (at most %u, %u)",
			cfg->nr_disks, cfg->nr_nics, PVM_HV_MAX_DISKS,
			PVM_HV_MAX_NICS);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < cfg->nr_disks; i++) {
		if (!cfg->disks[i].path || !*cfg->disks[i].path ||
		    !cfg->disks[i].vdev || !*cfg->disks[i].vdev) {
			pvm_err("xen: create: disk %u needs a path and a vdev",
				i);
			return -EINVAL;
		}
	}
	if (cfg->frontend_gen != PVM_HV_FRONTEND_MODERN &&
	    cfg->frontend_gen != PVM_HV_FRONTEND_LEGACY) {
		pvm_err("xen: create: frontend generation %d",
			(int)cfg->frontend_gen);
		return -EINVAL;
	}
	return 0;
}

static int xen_domain_create(struct pvm_hv *hv,
			     const struct pvm_hv_domain_config *cfg,
			     uint32_t *domid_out)
{
	struct xen_host *x = xen_of(hv);
	libxl_domain_config dc;
	uint32_t domid = (uint32_t)INVALID_DOMID;
	xc_domaininfo_t xi;
	int rc, lrc;

	if (cfg->nr_vcpus < 1 || cfg->nr_pages < 1 ||
	    cfg->nr_pages > (UINT64_MAX >> 20) ||
	    cfg->nr_vcpus > 4096 ||
	    (cfg->domid != PVM_HV_DOMID_ANY &&
	     (cfg->domid < 1 || cfg->domid > PVM_HV_DOMID_MAX))) {
		pvm_err("xen: create: bad config (vcpus %u, pages %llu, "
			"domid %u)",
			cfg->nr_vcpus, (unsigned long long)cfg->nr_pages,
			cfg->domid);
		return -EINVAL;
	}
	if (!cfg->image || !*cfg->image) {
		pvm_err("xen: create: a PV domain needs a kernel image");
		return -EINVAL;
	}
	rc = check_devices(cfg);
	if (rc)
		return rc;
	if (cfg->domid != PVM_HV_DOMID_ANY) {
		rc = xen_getinfo(x, cfg->domid, &xi);
		if (rc == 0) {
			pvm_err("xen: create: domid %u is taken", cfg->domid);
			return -EEXIST;
		}
		if (rc != -ESRCH) {
			pvm_err("xen: create: domid %u: %s", cfg->domid,
				strerror(-rc));
			return rc;
		}
	}

	libxl_domain_config_init(&dc);
	rc = build_config(cfg, &dc);
	if (rc) {
		pvm_err("xen: create: %s", strerror(-rc));
		goto out_dispose;
	}
	/* Synchronous (ao_how NULL); the new domain is left paused. */
	lrc = libxl_domain_create_new(x->ctx, &dc, &domid, NULL, NULL);
	if (lrc) {
		rc = xen_libxl_errno(lrc);
		/* A fixed domid taken meanwhile comes back as a failure. */
		pvm_err("xen: create \"%s\": libxl_domain_create_new: %d",
			cfg->name ? cfg->name : "", lrc);
		/* ERROR_ABORTED may leave a half-made domain behind. */
		if (domid != (uint32_t)INVALID_DOMID && domid != 0)
			goto out_destroy;
		goto out_dispose;
	}
	if (!cfg->start_paused) {
		lrc = libxl_domain_unpause(x->ctx, domid, NULL);
		if (lrc) {
			rc = xen_libxl_errno(lrc);
			pvm_err("xen: domain %u: libxl_domain_unpause: %d",
				domid, lrc);
			goto out_destroy;
		}
	}
	*domid_out = domid;
	libxl_domain_config_dispose(&dc);
	return 0;

out_destroy:
	lrc = libxl_domain_destroy(x->ctx, domid, NULL);
	if (lrc)
		pvm_warn("xen: domain %u: destroy after failed create: %d",
			 domid, lrc);
out_dispose:
	libxl_domain_config_dispose(&dc);
	return rc;
}

static int xen_domain_destroy(struct pvm_hv *hv, uint32_t domid)
{
	struct xen_host *x = xen_of(hv);
	xc_domaininfo_t xi;
	int rc = xen_getinfo(x, domid, &xi);
	int lrc;

	if (rc) {
		pvm_err("xen: destroy %u: %s", domid, strerror(-rc));
		return rc;
	}
	/* Our p2m mapping keeps no reference the destroy would wait on. */
	pthread_mutex_lock(&x->lock);
	xen_dom_forget(x, domid);
	pthread_mutex_unlock(&x->lock);
	lrc = libxl_domain_destroy(x->ctx, domid, NULL);
	if (lrc) {
		rc = xen_libxl_errno(lrc);
		pvm_err("xen: destroy %u: libxl_domain_destroy: %d", domid,
			lrc);
		return rc;
	}
	return 0;
}

/* ---- pause / unpause ---------------------------------------------------- */

static int xen_domain_pause(struct pvm_hv *hv, uint32_t domid)
{
	struct xen_host *x = xen_of(hv);

	errno = 0;
	if (xc_domain_pause(x->xch, domid) < 0) {
		int rc = xen_neg_errno();

		pvm_err("xen: pause %u: %s", domid, strerror(-rc));
		return rc;
	}
	return 0;
}

/*
 * An HVM domain's QEMU may be stopped (a restored or migrated-in domain,
 * as libxl leaves it paused): libxl_domain_unpause restarts it ("cont")
 * and then unpauses the vCPUs once, as xc_domain_unpause does; the same
 * nesting. 1 when it did, 0 when the domain has no device model.
 */
static int unpause_with_dm(struct xen_host *x, uint32_t domid)
{
	xc_domaininfo_t info;
	enum xen_dm dm = XEN_DM_NONE;
	int lrc, rc;

	if (xen_getinfo(x, domid, &info) || !(info.flags & XEN_DOMINF_hvm_guest))
		return 0;
	if (xen_dm_kind(x, domid, &dm) || dm != XEN_DM_QEMU)
		return 0;
	if (!(info.flags & XEN_DOMINF_paused)) {
		pvm_err("xen: unpause %u: %s", domid, strerror(EINVAL));
		return -EINVAL; /* not paused: Xen's answer */
	}
	lrc = libxl_domain_unpause(x->ctx, domid, NULL);
	if (lrc) {
		rc = xen_libxl_errno(lrc);
		pvm_err("xen: unpause %u (and its device model): "
			"libxl_domain_unpause: %d", domid, lrc);
		return rc;
	}
	return 1;
}

static int xen_domain_unpause(struct pvm_hv *hv, uint32_t domid)
{
	struct xen_host *x = xen_of(hv);
	int rc = unpause_with_dm(x, domid);

	if (rc)
		return rc < 0 ? rc : 0;
	errno = 0;
	if (xc_domain_unpause(x->xch, domid) < 0) {
		/* -EINVAL: not paused by the toolstack (count 0). */
		rc = xen_neg_errno();
		pvm_err("xen: unpause %u: %s", domid, strerror(-rc));
		return rc;
	}
	return 0;
}

/* ---- throttle (auto-converge) ------------------------------------------- */

/*
 * The cap of both credit schedulers is in percent of one pCPU for the
 * whole domain, 0 meaning none. A domain is scheduled by its cpupool's
 * scheduler: the domctl answers EINVAL for the other one, so credit2
 * (Xen 4.17's default) is tried first, then credit. Weight 0 on a set
 * leaves the weight as it is.
 */
static int cap_get(struct xen_host *x, uint32_t domid, uint16_t *cap)
{
	struct xen_domctl_sched_credit2 c2 = { 0 };
	struct xen_domctl_sched_credit c1 = { 0 };

	errno = 0;
	if (xc_sched_credit2_domain_get(x->xch, domid, &c2) == 0) {
		*cap = c2.cap;
		return 0;
	}
	if (errno != EINVAL)
		return xen_neg_errno();
	errno = 0;
	if (xc_sched_credit_domain_get(x->xch, domid, &c1) == 0) {
		*cap = c1.cap;
		return 0;
	}
	/* Neither: another scheduler (rtds, arinc653, null) has no cap. */
	return errno == EINVAL ? -EOPNOTSUPP : xen_neg_errno();
}

static int cap_set(struct xen_host *x, uint32_t domid, uint16_t cap)
{
	struct xen_domctl_sched_credit2 c2 = { .weight = 0, .cap = cap };
	struct xen_domctl_sched_credit c1 = { .weight = 0, .cap = cap };

	errno = 0;
	if (xc_sched_credit2_domain_set(x->xch, domid, &c2) == 0)
		return 0;
	if (errno != EINVAL)
		return xen_neg_errno();
	errno = 0;
	if (xc_sched_credit_domain_set(x->xch, domid, &c1) == 0)
		return 0;
	return errno == EINVAL ? -EOPNOTSUPP : xen_neg_errno();
}

static int xen_domain_throttle(struct pvm_hv *hv, uint32_t domid,
			       unsigned percent)
{
	struct xen_host *x = xen_of(hv);
	struct xen_dom *d;
	xc_domaininfo_t xi;
	uint16_t cap = 0, base;
	unsigned want;
	int rc;

	if (percent > 99)
		return -EINVAL;
	pthread_mutex_lock(&x->lock);
	d = xen_dom_get(x, domid, false);
	if (!percent) {
		/* Lift: the cap the domain had before we set ours. */
		rc = d && d->throttled ? cap_set(x, domid, d->saved_cap) : 0;
		if (!rc && d)
			d->throttled = false;
		goto out;
	}
	rc = xen_getinfo(x, domid, &xi);
	if (rc)
		goto out;
	if (!d || !d->throttled) {
		rc = cap_get(x, domid, &cap);
		if (rc)
			goto out;
	}
	d = xen_dom_get(x, domid, true);
	if (!d) {
		rc = -ENOMEM;
		goto out;
	}
	if (!d->throttled)
		d->saved_cap = cap;
	/* Of what it may use now: its own cap, else all of its vCPUs. */
	base = d->saved_cap ? d->saved_cap :
			      (uint16_t)(100u * (xi.max_vcpu_id + 1u));
	want = (unsigned)base * (100u - percent) / 100u;
	rc = cap_set(x, domid, (uint16_t)(want ? want : 1u));
	if (!rc)
		d->throttled = true;
out:
	pthread_mutex_unlock(&x->lock);
	if (rc && rc != -ESRCH)
		pvm_err("xen: domain %u: cannot %s its scheduler cap: %s", domid,
			percent ? "set" : "restore", strerror(-rc));
	return rc;
}

/* ---- populated pages ------------------------------------------------------ */

/*
 * Every pfn of a PV guest is backed by a frame the guest may have written
 * (Xen gives a PV domain all of its memory at build time; there is no
 * populate-on-demand for PV), so this backend cannot tell and says "all",
 * as the contract allows.
 */
static int xen_domain_populated(struct pvm_hv *hv, uint32_t domid,
				struct pvm_bitmap *bm)
{
	struct xen_host *x = xen_of(hv);
	xc_domaininfo_t xi;
	xen_pfn_t gpfns = 0;
	int rc = xen_getinfo(x, domid, &xi);

	if (rc)
		return rc;
	errno = 0;
	if (xc_domain_nr_gpfns(x->xch, domid, &gpfns) < 0) {
		rc = xen_neg_errno();
		pvm_err("xen: domain %u: nr_gpfns: %s", domid, strerror(-rc));
		return rc;
	}
	if (bm->nbits != gpfns) {
		pvm_err("xen: domain %u: populated bitmap of %zu bits for %llu pages",
			domid, bm->nbits, (unsigned long long)gpfns);
		return -EINVAL;
	}
	for (size_t i = 0; i < bm->nbits; i++)
		pvm_bitmap_set(bm, i);
	return 0;
}

/* ---- the instance ------------------------------------------------------- */

static void xen_close(struct pvm_hv *hv)
{
	struct xen_host *x = xen_of(hv);

	if (!x)
		return;
	for (size_t i = 0; i < x->n_doms; i++)
		xen_p2m_dispose(x, &x->doms[i].p2m);
	free(x->doms);
	if (x->ctx)
		libxl_ctx_free(x->ctx);
	if (x->xsh)
		xs_close(x->xsh);
	if (x->fmem)
		xenforeignmemory_close(x->fmem);
	if (x->xch)
		xc_interface_close(x->xch);
	pthread_mutex_destroy(&x->lock);
	free(x);
}

const struct pvm_hv_ops xen_ops = {
	.name = "xen",
	.close = xen_close,
	.domain_list = xen_domain_list,
	.domain_info = xen_domain_info,
	.domain_create = xen_domain_create,
	.domain_destroy = xen_domain_destroy,
	.domain_pause = xen_domain_pause,
	.domain_unpause = xen_domain_unpause,
	.logdirty_enable = xen_logdirty_enable,
	.logdirty_disable = xen_logdirty_disable,
	.logdirty_read_clear = xen_logdirty_read_clear,
	.map_pages = xen_map_pages,
	.unmap_pages = xen_unmap_pages,
	.vcpu_context_get = xen_vcpu_context_get,
	.vcpu_context_set = xen_vcpu_context_set,
	.evtchn_state_get = xen_evtchn_state_get,
	.evtchn_state_set = xen_evtchn_state_set,
	.grant_state_get = xen_grant_state_get,
	.grant_state_set = xen_grant_state_set,
	.domain_throttle = xen_domain_throttle,
	.domain_populated = xen_domain_populated,
};

bool pvm_hv_is_xen(const struct pvm_hv *hv)
{
	return hv && hv->ops == &xen_ops;
}

int xen_check_hv(struct pvm_hv *hv, const char *what)
{
	if (!pvm_hv_is_xen(hv)) {
		pvm_err("xen: %s on a %s instance", what,
			hv ? hv->ops->name : "NULL");
		return -EINVAL;
	}
	return 0;
}

int pvm_hv_xen_open(struct pvm_hv **hv_out)
{
	struct xen_host *x;
	const char *what;
	int rc;

	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->base.ops = &xen_ops;
	pthread_mutex_init(&x->lock, NULL);
	/* The libraries' own messages, into pvm_log (log.c). */
	x->log = xen_logger();

	errno = 0;
	what = "xc_interface_open";
	if (!(x->xch = xc_interface_open(x->log, x->log, 0)))
		goto out_fail;
	what = "xenforeignmemory_open";
	if (!(x->fmem = xenforeignmemory_open(x->log, 0)))
		goto out_fail;
	what = "xs_open";
	if (!(x->xsh = xs_open(0)))
		goto out_fail;
	what = "libxl_ctx_alloc";
	rc = libxl_ctx_alloc(&x->ctx, LIBXL_VERSION, 0, x->log);
	if (rc) {
		x->ctx = NULL;
		rc = xen_libxl_errno(rc);
		pvm_err("xen: open: %s: %d", what, rc);
		goto out_close;
	}
	*hv_out = &x->base;
	return 0;

out_fail:
	rc = xen_neg_errno();
	/*
	 * No privcmd node or xenstored socket: this host is not running
	 * Xen. Said as -EOPNOTSUPP, as pvm_hv_open() uses -ENOENT for an
	 * unknown backend name.
	 */
	if (rc == -ENOENT || rc == -ENODEV || rc == -ENXIO) {
		pvm_err("xen: open: %s: %s: this host is not running Xen (or "
			"this is not its dom0)",
			what, strerror(-rc));
		rc = -EOPNOTSUPP;
	} else {
		pvm_err("xen: open: %s: %s", what, strerror(-rc));
	}
out_close:
	xen_close(&x->base);
	return rc;
}
