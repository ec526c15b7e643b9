/*
 * domain_populated on the simulated host: which pages of a guest's memfd
 * hold memory. A memfd (shmem) page comes into existence on its first
 * fault; before that the file has a hole there, which reads as zeros, and
 * lseek(SEEK_DATA / SEEK_HOLE) walks the file's page cache to find the
 * extents that exist. This is the sim's populate-on-demand knowledge: a
 * hole was never touched by anyone (guest, backends, host mappings), so
 * pre-copy need not read or send it — a new domain's memory is holes too.
 * A page can only go from hole to data while the guest runs, never back
 * (nothing punches holes), so a hole seen now that is written later is a
 * dirty page for log-dirty, never a lost one.
 */
#include <string.h>
#include <unistd.h>

#include "hv/sim/internal.h"

int sim_domain_populated(struct pvm_hv *hv, uint32_t domid,
			 struct pvm_bitmap *bm)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	off_t size, pos = 0;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc)
		goto out;
	if (bm->nbits != d->nr_pages) {
		pvm_err("sim: domain %u: populated bitmap of %zu bits for %llu pages",
			domid, bm->nbits, (unsigned long long)d->nr_pages);
		rc = -EINVAL;
		goto out;
	}
	pvm_bitmap_clear_all(bm);
	size = (off_t)(d->nr_pages * PVM_PAGE_SIZE);
	while (pos < size) {
		off_t data = lseek(d->memfd, pos, SEEK_DATA), hole;

		if (data < 0) {
			if (errno == ENXIO) /* no data past @pos */
				break;
			rc = -EIO;
			pvm_warn("sim: domain %u: SEEK_DATA: %s; every page counts as populated", domid, strerror(errno));
			goto out;
		}
		hole = lseek(d->memfd, data, SEEK_HOLE);
		if (hole < 0) {
			rc = -EIO;
			pvm_warn("sim: domain %u: SEEK_HOLE: %s; every page counts as populated", domid, strerror(errno));
			goto out;
		}
		if (hole > size)
			hole = size;
		for (off_t p = data / PVM_PAGE_SIZE; p < (hole + PVM_PAGE_SIZE - 1) / PVM_PAGE_SIZE; p++)
			pvm_bitmap_set(bm, (size_t)p);
		pos = hole;
	}
out:
	if (rc == -EIO) {
		/* Cannot tell: every page may hold data (the contract). */
		for (size_t i = 0; i < bm->nbits; i++)
			pvm_bitmap_set(bm, i);
		rc = 0;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}
