/*
 * Log-dirty for simulated domains, from the kernel.
 *
 * The guest registered its memory mapping with a userfaultfd in
 * UFFD_FEATURE_WP_ASYNC mode and handed us the fd (guest_abi.h). Then:
 *
 *   enable      UFFDIO_WRITEPROTECT(WP) over all guest memory, through
 *               that fd: every pte (and every empty slot, as a pte marker)
 *               of the guest's mapping gets the uffd-wp bit.
 *   guest write the first write to a protected page faults; WP_ASYNC
 *               resolves it in the kernel by dropping the bit (~1 µs), no
 *               handler thread, the guest never notices.
 *   read-clear  PAGEMAP_SCAN on /proc/PID/pagemap with PM_SCAN_WP_MATCHING:
 *               in one page-table walk under the pte locks, report pages
 *               without the bit (PAGE_IS_WRITTEN) and set it again.
 *   disable     UFFDIO_WRITEPROTECT(0): no more faults.
 *
 * Why read-and-clear loses nothing: each pte is tested and re-protected
 * under its page-table lock, and the guest's fault takes the same lock to
 * drop the bit. A write before the walk reaches the pte is reported now;
 * a write after it faults again and is reported next time. A write racing
 * through a stale writable TLB entry lands before the walk's TLB flush
 * returns, so it is in memory before the caller copies the page.
 *
 * What the scan cannot see: writes through another mapping of the memfd
 * (the host's own, map_pages WRITE, grant maps). Those are recorded in
 * d->marks by sim_mark_dirty_locked() and merged here.
 */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hv/sim/internal.h"

static int write_protect(struct sim_domain *d, bool on)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = d->guest_addr,
			   .len = d->nr_pages * PVM_PAGE_SIZE },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	if (ioctl(d->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		int rc = -errno;

		pvm_err("sim: domain %u: UFFDIO_WRITEPROTECT(%s): %s", d->domid,
			on ? "on" : "off", strerror(errno));
		return rc;
	}
	return 0;
}

int sim_dirty_probe(struct sim_domain *d)
{
	struct pvm_page_region r;
	struct pvm_pm_scan_arg a = {
		.size = sizeof(a),
		.flags = PVM_PM_SCAN_CHECK_WPASYNC,
		.start = d->guest_addr,
		.end = d->guest_addr + PVM_PAGE_SIZE,
		.vec = (uintptr_t)&r,
		.vec_len = 1,
		.category_mask = PVM_PAGE_IS_WRITTEN,
		.return_mask = PVM_PAGE_IS_WRITTEN,
	};

	if (ioctl(d->pagemap_fd, PVM_PAGEMAP_SCAN, &a) >= 0)
		return 0;
	if (errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP) {
		pvm_err("sim: domain %u: this kernel has no PAGEMAP_SCAN ioctl "
			"on /proc/PID/pagemap (needs linux >= 6.7): %s",
			d->domid, strerror(errno));
		return -EOPNOTSUPP;
	}
	pvm_err("sim: domain %u: PAGEMAP_SCAN probe: %s", d->domid,
		strerror(errno));
	return errno == EPERM ? -EOPNOTSUPP : -errno;
}

void sim_mark_dirty_locked(struct sim_domain *d, uint64_t pfn)
{
	if (d->logdirty && pfn < d->nr_pages)
		pvm_bitmap_set(&d->marks, pfn);
}

int pvm_sim_mark_dirty(struct pvm_hv *hv, uint32_t domid, uint64_t pfn)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0 && pfn >= d->nr_pages)
		rc = -EINVAL;
	if (rc == 0)
		sim_mark_dirty_locked(d, pfn);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int sim_logdirty_enable(struct pvm_hv *hv, uint32_t domid)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0 && d->logdirty)
		rc = -EBUSY;
	if (rc == 0)
		rc = write_protect(d, true);
	if (rc == 0) {
		pvm_bitmap_clear_all(&d->marks);
		d->logdirty = true;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int sim_logdirty_disable(struct pvm_hv *hv, uint32_t domid)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0 && d->logdirty) {
		d->logdirty = false;
		rc = write_protect(d, false);
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

static void set_range(struct pvm_bitmap *bm, uint64_t first, uint64_t end)
{
	for (; first < end && first % 64; first++)
		pvm_bitmap_set(bm, first);
	for (; first + 64 <= end; first += 64)
		bm->words[first / 64] = ~UINT64_C(0);
	for (; first < end; first++)
		pvm_bitmap_set(bm, first);
}

/* One read-and-clear walk over all guest memory into @bm. */
static int scan(struct sim_domain *d, struct pvm_bitmap *bm)
{
	uint64_t base = d->guest_addr;
	uint64_t end = base + d->nr_pages * PVM_PAGE_SIZE;
	struct pvm_pm_scan_arg a = {
		.size = sizeof(a),
		.flags = PVM_PM_SCAN_WP_MATCHING | PVM_PM_SCAN_CHECK_WPASYNC,
		.start = base,
		.end = end,
		.category_mask = PVM_PAGE_IS_WRITTEN,
		.return_mask = PVM_PAGE_IS_WRITTEN,
	};

	for (;;) {
		long n;

		a.vec = (uintptr_t)d->scan_vec;
		a.vec_len = SIM_SCAN_VEC_LEN;
		a.walk_end = 0;
		n = ioctl(d->pagemap_fd, PVM_PAGEMAP_SCAN, &a);
		if (n < 0) {
			int rc = -errno;

			pvm_err("sim: domain %u: PAGEMAP_SCAN: %s", d->domid,
				strerror(errno));
			return rc;
		}
		for (long i = 0; i < n; i++) {
			const struct pvm_page_region *r = &d->scan_vec[i];
			uint64_t s, e;

			/* The kernel's answer is bounded before use. */
			if (r->start < base || r->end > end || r->start > r->end)
				return -EIO;
			s = (r->start - base) / PVM_PAGE_SIZE;
			e = (r->end - base + PVM_PAGE_SIZE - 1) / PVM_PAGE_SIZE;
			set_range(bm, s, e);
		}
		/* A full vector stops the walk early: go on from there. */
		if (a.walk_end >= end || a.walk_end <= a.start)
			return 0;
		a.start = a.walk_end;
	}
}

int sim_logdirty_read_clear(struct pvm_hv *hv, uint32_t domid,
			    struct pvm_bitmap *bm)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_fault(h, PVM_SIM_FAULT_READ_CLEAR);
	if (rc == 0)
		rc = sim_dom_get(h, domid, true, &d);
	if (rc < 0)
		goto out_unlock;
	rc = -EINVAL;
	if (!d->logdirty) {
		pvm_err("sim: domain %u: log-dirty read while off", domid);
		goto out_unlock;
	}
	if (bm->nbits != d->nr_pages) {
		pvm_err("sim: domain %u: dirty bitmap of %zu bits for %llu pages",
			domid, bm->nbits, (unsigned long long)d->nr_pages);
		goto out_unlock;
	}
	pvm_bitmap_clear_all(bm);
	rc = scan(d, bm);
	if (rc < 0)
		goto out_unlock;
	for (size_t w = 0; w < (bm->nbits + 63) / 64; w++) {
		bm->words[w] |= d->marks.words[w];
		d->marks.words[w] = 0;
	}
out_unlock:
	pthread_mutex_unlock(&h->lock);
	return rc;
}
