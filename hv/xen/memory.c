/*
 * Guest memory on Xen: log-dirty, the PV p2m, foreign mappings.
 *
 *   logdirty_enable      xc_shadow_control(ENABLE_LOGDIRTY)
 *   logdirty_disable     xc_shadow_control(OFF)
 *   logdirty_read_clear  xc_logdirty_control(CLEAN) into a hypercall
 *                        buffer, copied into the caller's bitmap
 *   map_pages            pfn → gfn (PV: through the guest's p2m; HVM/PVH:
 *                        the same number), then xenforeignmemory_map
 *   unmap_pages          xenforeignmemory_unmap
 *
 * PV guests address memory by machine frame: a foreign mapping of a PV
 * domain takes mfns. The p2m the guest publishes (a 3-level tree rooted at
 * shared_info's arch.pfn_to_mfn_frame_list_list) gives them:
 *
 *   shared_info ──► frame_list_list (1 page: mfns of frame-list pages)
 *                      └─► frame lists (mfns of p2m pages, 512 each)
 *                             └─► p2m pages (512 mfns each) = p2m[pfn]
 *
 * The p2m pages are mapped once per domain (read-only, live) and kept in
 * struct xen_dom until the domain is destroyed through us, log-dirty is
 * turned off, or the instance closes; a domain with a new handle or
 * shared_info frame (a new domain with an old domid) reloads it.
 */
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "hv/xen/internal.h"

/* ---- log-dirty ---------------------------------------------------------- */

int xen_logdirty_enable(struct pvm_hv *hv, uint32_t domid)
{
	struct xen_host *x = xen_of(hv);
	xc_domaininfo_t xi;
	struct xen_dom *d;
	int rc = xen_getinfo(x, domid, &xi);

	if (rc) {
		pvm_err("xen: domain %u: log-dirty on: %s", domid,
			strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&x->lock);
	d = xen_dom_get(x, domid, true);
	if (!d) {
		rc = -ENOMEM;
		pvm_err("xen: domain %u: log-dirty on: out of memory", domid);
		goto out_unlock;
	}
	if (d->logdirty) {
		rc = -EBUSY;
		pvm_err("xen: domain %u: log-dirty is already on", domid);
		goto out_unlock;
	}
	errno = 0;
	if (xc_shadow_control(x->xch, domid,
			      XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL,
			      0) < 0) {
		rc = xen_neg_errno();
		/*
		 * paging_log_dirty_enable() answers -EINVAL when log-dirty
		 * is already on (someone else's save, or a previous run of
		 * ours that died) or the domain has passed-through PCI
		 * devices; ENOSYS/EOPNOTSUPP when the hypervisor cannot
		 * track (no shadow paging for PV).
		 */
		if (rc == -EINVAL) {
			pvm_err("xen: domain %u: log-dirty on: EINVAL (already "
				"on elsewhere, or PCI passthrough)",
				domid);
			rc = -EBUSY;
		} else if (rc == -ENOSYS || rc == -EOPNOTSUPP) {
			pvm_err("xen: domain %u: log-dirty on: the hypervisor "
				"cannot track writes (%s)",
				domid, strerror(-rc));
			rc = -EOPNOTSUPP;
		} else {
			pvm_err("xen: domain %u: log-dirty on: %s", domid,
				strerror(-rc));
		}
		goto out_unlock;
	}
	d->logdirty = true;
out_unlock:
	pthread_mutex_unlock(&x->lock);
	return rc;
}

int xen_logdirty_disable(struct pvm_hv *hv, uint32_t domid)
{
	struct xen_host *x = xen_of(hv);
	struct xen_dom *d;
	bool was_on;
	int rc = 0;

	pthread_mutex_lock(&x->lock);
	d = xen_dom_get(x, domid, false);
	was_on = d && d->logdirty;
	errno = 0;
	if (xc_shadow_control(x->xch, domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL,
			      0) < 0) {
		rc = xen_neg_errno();
		/* Idempotent: off while off is not an error. */
		if (rc == -EINVAL && !was_on)
			rc = 0;
		else if (rc != -ESRCH)
			pvm_err("xen: domain %u: log-dirty off: %s", domid,
				strerror(-rc));
	}
	if (d && (rc == 0 || rc == -ESRCH)) {
		d->logdirty = false;
		/* The copy is over: let the p2m go with it. */
		xen_p2m_dispose(x, &d->p2m);
	}
	pthread_mutex_unlock(&x->lock);
	return rc;
}

int xen_logdirty_read_clear(struct pvm_hv *hv, uint32_t domid,
			    struct pvm_bitmap *bm)
{
	struct xen_host *x = xen_of(hv);
	DECLARE_HYPERCALL_BUFFER(unsigned long, bitmap);
	xc_shadow_op_stats_t stats;
	uint64_t nr = 0;
	size_t words, npages;
	long long lrc;
	int rc;

	rc = xen_nr_pages(x, domid, &nr);
	if (rc)
		return rc;
	if (bm->nbits != nr || nr == 0) {
		pvm_err("xen: domain %u: dirty bitmap of %zu bits for %llu "
			"pages",
			domid, bm->nbits, (unsigned long long)nr);
		return -EINVAL;
	}
	words = (nr + 63) / 64;
	npages = (words * 8 + PVM_PAGE_SIZE - 1) / PVM_PAGE_SIZE;
	bitmap = xc_hypercall_buffer_alloc_pages(x->xch, bitmap, (int)npages);
	if (!bitmap) {
		pvm_err("xen: domain %u: no hypercall buffer for %zu pages",
			domid, npages);
		return -ENOMEM;
	}
	memset(bitmap, 0, npages * PVM_PAGE_SIZE);
	memset(&stats, 0, sizeof(stats));
	errno = 0;
	lrc = xc_logdirty_control(x->xch, domid, XEN_DOMCTL_SHADOW_OP_CLEAN,
				  HYPERCALL_BUFFER(bitmap), nr, 0, &stats);
	if (lrc < 0) {
		/* -EINVAL: log-dirty is off. */
		rc = xen_neg_errno();
		pvm_err("xen: domain %u: log-dirty read: %s", domid,
			strerror(-rc));
		goto out_free;
	}
	/* unsigned long words are little-endian 64-bit on x86-64. */
	static_assert(sizeof(unsigned long) == sizeof(uint64_t),
		      "x86-64 only");
	memcpy(bm->words, bitmap, words * sizeof(uint64_t));
	if (nr % 64)
		bm->words[words - 1] &= (UINT64_C(1) << (nr % 64)) - 1;
	rc = 0;
out_free:
	xc_hypercall_buffer_free_pages(x->xch, bitmap, (int)npages);
	return rc;
}

/* ---- PV p2m ------------------------------------------------------------- */

void xen_p2m_dispose(struct xen_host *x, struct xen_p2m *p)
{
	if (p->p2m)
		xenforeignmemory_unmap(x->fmem, p->p2m, p->frames);
	memset(p, 0, sizeof(*p));
}

/*
 * Maps @n frames of PV domain @domid read-only. 0 or a negative errno
 * (the first page's error when a page failed; the mapping is then gone).
 */
static int map_frames(struct xen_host *x, uint32_t domid,
		      const xen_pfn_t *mfns, size_t n, void **out)
{
	int *errs = calloc(n, sizeof(int));
	void *p;
	int rc = 0;

	if (!errs)
		return -ENOMEM;
	errno = 0;
	p = xenforeignmemory_map(x->fmem, domid, PROT_READ, n, mfns, errs);
	if (!p) {
		rc = xen_neg_errno();
		goto out_free;
	}
	for (size_t i = 0; i < n; i++) {
		if (errs[i]) {
			rc = errs[i] < 0 ? errs[i] : -EFAULT;
			xenforeignmemory_unmap(x->fmem, p, n);
			goto out_free;
		}
	}
	*out = p;
out_free:
	free(errs);
	return rc;
}

static bool p2m_current(const struct xen_p2m *p, const xc_domaininfo_t *info)
{
	return p->p2m && p->shinfo_mfn == info->shared_info_frame &&
	       memcmp(p->handle, info->handle, sizeof(p->handle)) == 0;
}

int xen_p2m_load(struct xen_host *x, struct xen_dom *dom,
		 const xc_domaininfo_t *info)
{
	uint32_t domid = info->domain;
	unsigned int width = 0;
	xen_pfn_t shinfo_mfn = info->shared_info_frame, fll_mfn;
	shared_info_t *shinfo = NULL;
	xen_pfn_t *fll = NULL, *fl = NULL, *p2m = NULL;
	uint64_t max_pfn;
	size_t p2m_frames = 0, fl_frames = 0;
	int rc;

	if (p2m_current(&dom->p2m, info))
		return 0;
	xen_p2m_dispose(x, &dom->p2m);

	errno = 0;
	if (xc_domain_get_guest_width(x->xch, domid, &width) < 0) {
		rc = xen_neg_errno();
		pvm_err("xen: domain %u: guest width: %s", domid,
			strerror(-rc));
		return rc;
	}
	if (width != sizeof(uint64_t)) {
		pvm_err("xen: domain %u: %u-bit PV guests are not supported",
			domid, width * 8);
		return -EOPNOTSUPP;
	}

	rc = map_frames(x, domid, &shinfo_mfn, 1, (void **)&shinfo);
	if (rc) {
		pvm_err("xen: domain %u: map shared_info (mfn %#lx): %s",
			domid, (unsigned long)shinfo_mfn, strerror(-rc));
		return rc;
	}
	max_pfn = __atomic_load_n(&shinfo->arch.max_pfn, __ATOMIC_RELAXED);
	fll_mfn = __atomic_load_n(&shinfo->arch.pfn_to_mfn_frame_list_list,
				  __ATOMIC_RELAXED);
	xenforeignmemory_unmap(x->fmem, shinfo, 1);

	if (fll_mfn == 0 || fll_mfn == INVALID_MFN) {
		/*
		 * 0: the guest kernel has not published its p2m yet (not
		 * booted, or a domain the builder just made); ~0: it only
		 * has a linear p2m (p2m_cr3/p2m_vaddr), which needs walking
		 * the guest's page tables — libxenguest's job.
		 */
		pvm_err("xen: domain %u: no 3-level p2m tree published (%s)",
			domid, fll_mfn ? "linear p2m only" : "not set up yet");
		return -EOPNOTSUPP;
	}
	if (max_pfn == 0 || max_pfn > XEN_P2M_TREE_MAX) {
		pvm_err("xen: domain %u: p2m size %llu out of range", domid,
			(unsigned long long)max_pfn);
		return -EOPNOTSUPP;
	}
	p2m_frames = (max_pfn + XEN_P2M_PER_FRAME - 1) / XEN_P2M_PER_FRAME;
	fl_frames = (p2m_frames + XEN_P2M_PER_FRAME - 1) / XEN_P2M_PER_FRAME;

	rc = map_frames(x, domid, &fll_mfn, 1, (void **)&fll);
	if (rc) {
		pvm_err("xen: domain %u: map p2m frame-list-list: %s", domid,
			strerror(-rc));
		return rc;
	}
	rc = map_frames(x, domid, fll, fl_frames, (void **)&fl);
	if (rc) {
		pvm_err("xen: domain %u: map %zu p2m frame lists: %s", domid,
			fl_frames, strerror(-rc));
		goto out_unmap_fll;
	}
	rc = map_frames(x, domid, fl, p2m_frames, (void **)&p2m);
	if (rc) {
		pvm_err("xen: domain %u: map %zu p2m frames: %s", domid,
			p2m_frames, strerror(-rc));
		goto out_unmap_fl;
	}
	dom->p2m.p2m = p2m;
	dom->p2m.frames = p2m_frames;
	dom->p2m.size = max_pfn;
	dom->p2m.shinfo_mfn = info->shared_info_frame;
	memcpy(dom->p2m.handle, info->handle, sizeof(dom->p2m.handle));
out_unmap_fl:
	xenforeignmemory_unmap(x->fmem, fl, fl_frames);
out_unmap_fll:
	xenforeignmemory_unmap(x->fmem, fll, 1);
	return rc;
}

/* ---- foreign mappings --------------------------------------------------- */

/*
 * A p2m entry naming a guest frame: not a hole (INVALID_MFN, or 0, which
 * is never a guest's), not one of Linux's marked entries (bit 63 foreign
 * frame, bit 62 identity-mapped I/O), which are not the guest's memory.
 */
bool xen_p2m_entry_ok(xen_pfn_t mfn)
{
	return mfn != 0 && mfn != INVALID_MFN && !(mfn >> 62);
}

/*
 * @gfns[i] for @pfns[i]; @bad[i] is 0 or the error the page will get
 * whatever Xen says (its gfn is then INVALID_MFN, which Xen refuses).
 */
static int translate(struct xen_host *x, const xc_domaininfo_t *info,
		     const uint64_t *pfns, size_t n, xen_pfn_t *gfns,
		     int *bad)
{
	uint32_t domid = info->domain;
	struct xen_dom *d;
	int rc;

	if (info->flags & XEN_DOMINF_hvm_guest) {
		/* Auto-translated: the toolstack maps by gfn = pfn. */
		uint64_t nr = 0;

		rc = xen_nr_pages(x, domid, &nr);
		if (rc)
			return rc;
		for (size_t i = 0; i < n; i++) {
			bad[i] = pfns[i] < nr ? 0 : -EINVAL;
			gfns[i] = bad[i] ? INVALID_MFN : (xen_pfn_t)pfns[i];
		}
		return 0;
	}

	pthread_mutex_lock(&x->lock);
	d = xen_dom_get(x, domid, true);
	if (!d) {
		rc = -ENOMEM;
		pvm_err("xen: domain %u: map: out of memory", domid);
		goto out_unlock;
	}
	rc = xen_p2m_load(x, d, info);
	if (rc)
		goto out_unlock;
	for (size_t i = 0; i < n; i++) {
		xen_pfn_t mfn = INVALID_MFN;

		bad[i] = -EINVAL;
		if (pfns[i] < d->p2m.size) {
			/* The guest may update its p2m as we read it. */
			mfn = __atomic_load_n(&d->p2m.p2m[pfns[i]],
					      __ATOMIC_RELAXED);
			bad[i] = xen_p2m_entry_ok(mfn) ? 0 : -ENOENT;
		}
		gfns[i] = bad[i] ? INVALID_MFN : mfn;
	}
out_unlock:
	pthread_mutex_unlock(&x->lock);
	return rc;
}

int xen_map_pages(struct pvm_hv *hv, uint32_t domid, enum pvm_hv_prot prot,
		  const uint64_t *pfns, size_t n, int *errs, void **addr_out)
{
	struct xen_host *x = xen_of(hv);
	xc_domaininfo_t info;
	xen_pfn_t *gfns = NULL;
	int *bad = NULL;
	int mprot, rc;
	void *addr;

	if (n == 0 || n > (SIZE_MAX / PVM_PAGE_SIZE)) {
		pvm_err("xen: domain %u: map of %zu pages", domid, n);
		return -EINVAL;
	}
	if (prot == PVM_HV_MAP_READ) {
		mprot = PROT_READ;
	} else if (prot == PVM_HV_MAP_WRITE) {
		mprot = PROT_READ | PROT_WRITE;
	} else {
		pvm_err("xen: domain %u: map with prot %d", domid, (int)prot);
		return -EINVAL;
	}
	rc = xen_getinfo(x, domid, &info);
	if (rc) {
		pvm_err("xen: domain %u: map: %s", domid,
			strerror(-rc));
		return rc;
	}
	gfns = malloc(n * sizeof(*gfns));
	bad = malloc(n * sizeof(*bad));
	if (!gfns || !bad) {
		rc = -ENOMEM;
		pvm_err("xen: domain %u: map of %zu pages: out of memory",
			domid, n);
		goto out_free;
	}
	rc = translate(x, &info, pfns, n, gfns, bad);
	if (rc)
		goto out_free;
	errno = 0;
	addr = xenforeignmemory_map(x->fmem, domid, mprot, n, gfns, errs);
	if (!addr) {
		rc = xen_neg_errno();
		pvm_err("xen: domain %u: xenforeignmemory_map of %zu pages: %s",
			domid, n, strerror(-rc));
		goto out_free;
	}
	for (size_t i = 0; i < n; i++)
		if (bad[i])
			errs[i] = bad[i];
	*addr_out = addr;
	rc = 0;
out_free:
	free(bad);
	free(gfns);
	return rc;
}

int xen_unmap_pages(struct pvm_hv *hv, void *addr, size_t n)
{
	struct xen_host *x = xen_of(hv);

	errno = 0;
	if (xenforeignmemory_unmap(x->fmem, addr, n) < 0) {
		int rc = xen_neg_errno();

		pvm_err("xen: unmap of %zu pages at %p: %s", n, addr,
			strerror(-rc));
		return rc;
	}
	return 0;
}
