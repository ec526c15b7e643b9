/*
 * Grant tables of simulated domains, with Xen's v1 semantics
 * (xen/common/grant_table.c, _set_status_v1 and friends).
 *
 * The table is guest memory: grant_entry_v1_t[] at pfn d->gnttab_pfn
 * (guest_abi.h), written by the guest, read and flagged by the host through
 * its mapping. The guest can write anything there at any time, so:
 *   - the {flags, domid} word is read and updated only with atomic
 *     compare-and-swap, as Xen does, giving up after 5 tries (-EAGAIN);
 *   - the frame is read once, after the pin, into a local, and checked
 *     against nr_pages before any use: a garbage frame is -EINVAL, never
 *     an access outside guest memory;
 *   - refs are bounded by the table size before the entry is touched.
 * A map is its own one-page MAP_SHARED mapping of the memfd at that frame,
 * so it survives the guest's death, and a read-only grant is mapped
 * PROT_READ (the kernel enforces it). Host writes to the table (the busy
 * bits) and through writable maps are marked dirty for log-dirty.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <xen/xen.h> /* needs <stdint.h> first */
#include <xen/grant_table.h>

#include "hv/sim/internal.h"

static_assert(sizeof(grant_entry_v1_t) == 8, "v1 grant entry");

#define GNT_STATE_VERSION 1u

static size_t nr_entries(const struct sim_domain *d)
{
	return (size_t)d->gnttab_frames * SIM_GNT_PER_FRAME;
}

/* The {flags, domid} word of entry @ref: flags in the low half (x86 is
 * little-endian, as the struct is laid out for the guest). */
static uint32_t *entry_word(struct sim_domain *d, uint32_t ref)
{
	return (uint32_t *)(d->mem + d->gnttab_pfn * PVM_PAGE_SIZE +
			    (size_t)ref * sizeof(grant_entry_v1_t));
}

static void mark_table(struct sim_domain *d, uint32_t ref)
{
	sim_mark_dirty_locked(d, d->gnttab_pfn + ref / SIM_GNT_PER_FRAME);
}

static void unpin(struct sim_domain *d, uint32_t ref, bool write)
{
	struct sim_active_grant *act = &d->active[ref];
	uint32_t clear = 0;

	if (write)
		act->pin_w--;
	else
		act->pin_r--;
	if (act->pin_w == 0)
		clear |= GTF_writing;
	if (act->pin_w == 0 && act->pin_r == 0)
		clear |= GTF_reading;
	__atomic_fetch_and(entry_word(d, ref), ~clear, __ATOMIC_ACQ_REL);
	mark_table(d, ref);
}

/* Xen's _set_status_v1 + the frame check: pins @ref for @mapdomid. */
static int pin(struct sim_domain *d, uint32_t mapdomid, uint32_t ref,
	       bool write, uint64_t *frame_out)
{
	uint32_t *w, old, frame;

	if (ref >= nr_entries(d)) {
		pvm_err("sim: domain %u: grant ref %u out of range (%zu)",
			d->domid, ref, nr_entries(d));
		return -EINVAL;
	}
	w = entry_word(d, ref);
	old = __atomic_load_n(w, __ATOMIC_ACQUIRE);
	for (int tries = 0;; tries++) {
		uint16_t flags = (uint16_t)old, domid = (uint16_t)(old >> 16);
		uint32_t new;

		if ((flags & (GTF_type_mask | GTF_sub_page)) != GTF_permit_access ||
		    domid != mapdomid) {
			pvm_err("sim: domain %u: grant ref %u: bad flags %#x or "
				"domain %u; expected d%u", d->domid, ref, flags,
				domid, mapdomid);
			return -EPERM;
		}
		if (write && (flags & GTF_readonly)) {
			pvm_err("sim: domain %u: grant ref %u: write access to a "
				"read-only grant", d->domid, ref);
			return -EPERM;
		}
		new = old | GTF_reading | (write ? GTF_writing : 0);
		if (__atomic_compare_exchange_n(w, &old, new, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			break;
		if (tries == 4) {
			pvm_err("sim: domain %u: grant ref %u: entry unstable",
				d->domid, ref);
			return -EAGAIN;
		}
	}
	if (write)
		d->active[ref].pin_w++;
	else
		d->active[ref].pin_r++;
	mark_table(d, ref);
	frame = __atomic_load_n(w + 1, __ATOMIC_ACQUIRE);
	if (frame >= d->nr_pages) {
		pvm_err("sim: domain %u: grant ref %u: frame %u out of range",
			d->domid, ref, frame);
		unpin(d, ref, write);
		return -EINVAL;
	}
	*frame_out = frame;
	return 0;
}

int pvm_sim_grant_map(struct pvm_hv *hv, uint32_t mapdomid, uint32_t domid,
		      uint32_t ref, unsigned int flags, void **addr_out,
		      uint32_t *handle_out)
{
	struct sim_host *h = to_host(hv);
	bool write = !(flags & PVM_SIM_GNTMAP_READONLY);
	struct sim_domain *d;
	struct sim_gmap *g;
	uint64_t frame;
	void *addr;
	int rc;

	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	pthread_mutex_lock(&h->lock);
	rc = sim_fault(h, PVM_SIM_FAULT_GRANT_MAP);
	if (rc == 0)
		rc = sim_dom_get(h, domid, true, &d);
	if (rc < 0)
		goto out_unlock;
	rc = pin(d, mapdomid, ref, write, &frame);
	if (rc < 0)
		goto out_unlock;
	addr = mmap(NULL, PVM_PAGE_SIZE,
		    write ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
		    d->memfd, (off_t)(frame * PVM_PAGE_SIZE));
	if (addr == MAP_FAILED) {
		rc = -errno;
		unpin(d, ref, write);
		goto out_unlock;
	}
	g->handle = h->next_handle++;
	if (h->next_handle == 0)
		h->next_handle = 1;
	g->domid = domid;
	g->serial = d->serial;
	g->ref = ref;
	g->frame = frame;
	g->writable = write;
	g->addr = addr;
	g->next = h->gmaps;
	h->gmaps = g;
	*addr_out = addr;
	*handle_out = g->handle;
	g = NULL;
out_unlock:
	pthread_mutex_unlock(&h->lock);
	free(g);
	return rc;
}

int pvm_sim_grant_unmap(struct pvm_hv *hv, uint32_t handle)
{
	struct sim_host *h = to_host(hv);
	struct sim_gmap **pp, *g;
	struct sim_domain *d;

	pthread_mutex_lock(&h->lock);
	for (pp = &h->gmaps; *pp && (*pp)->handle != handle; pp = &(*pp)->next)
		;
	g = *pp;
	if (!g) {
		pthread_mutex_unlock(&h->lock);
		return -ENOENT;
	}
	*pp = g->next;
	munmap(g->addr, PVM_PAGE_SIZE);
	/* A dead or replaced domain has no table to update any more. */
	if (sim_dom_get(h, g->domid, true, &d) == 0 && d->serial == g->serial) {
		if (g->writable)
			sim_mark_dirty_locked(d, g->frame);
		unpin(d, g->ref, g->writable);
	}
	pthread_mutex_unlock(&h->lock);
	free(g);
	return 0;
}

void sim_grant_mark_mapped(struct pvm_hv *hv, uint32_t handle)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;

	pthread_mutex_lock(&h->lock);
	for (struct sim_gmap *g = h->gmaps; g; g = g->next) {
		if (g->handle != handle)
			continue;
		if (g->writable && sim_dom_get(h, g->domid, true, &d) == 0 &&
		    d->serial == g->serial)
			sim_mark_dirty_locked(d, g->frame);
		break;
	}
	pthread_mutex_unlock(&h->lock);
}

static int grant_copy(struct pvm_hv *hv, uint32_t mapdomid, uint32_t domid,
		      uint32_t ref, uint32_t offset, void *buf, uint32_t len,
		      bool to_guest)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	uint64_t frame;
	uint8_t *page;
	int rc;

	if (offset > PVM_PAGE_SIZE || len > PVM_PAGE_SIZE - offset)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0)
		rc = pin(d, mapdomid, ref, to_guest, &frame);
	if (rc == 0) {
		page = d->mem + frame * PVM_PAGE_SIZE;
		if (to_guest) {
			memcpy(page + offset, buf, len);
			sim_mark_dirty_locked(d, frame);
		} else {
			memcpy(buf, page + offset, len);
		}
		unpin(d, ref, to_guest);
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int pvm_sim_grant_copy_from(struct pvm_hv *hv, uint32_t mapdomid,
			    uint32_t domid, uint32_t ref, uint32_t offset,
			    void *buf, uint32_t len)
{
	return grant_copy(hv, mapdomid, domid, ref, offset, buf, len, false);
}

int pvm_sim_grant_copy_to(struct pvm_hv *hv, uint32_t mapdomid, uint32_t domid,
			  uint32_t ref, uint32_t offset, const void *buf,
			  uint32_t len)
{
	return grant_copy(hv, mapdomid, domid, ref, offset, (void *)buf, len,
			  true);
}

void sim_grant_release(struct sim_host *h, struct sim_domain *d)
{
	(void)h;
	/* Mappings in h->gmaps keep their pages; their unmap sees the
	 * domain dead and leaves the (gone) table alone. */
	free(d->active);
	d->active = NULL;
}

/* ---- state for save/restore -------------------------------------------
 * le32 version (1), le32 nr_frames, le64 table pfn, le32 nr_entries,
 * le32 reserved, then nr_entries x {le16 flags, le16 domid, le32 frame}. */

static int paused_domain(struct sim_host *h, uint32_t domid,
			 struct sim_domain **out)
{
	int rc = sim_dom_get(h, domid, true, out);

	if (rc == 0 && (*out)->state != DOM_PAUSED)
		rc = -EBUSY;
	return rc;
}

int sim_grant_state_get(struct pvm_hv *hv, uint32_t domid, struct pvm_buf *out)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = paused_domain(h, domid, &d);
	if (rc == 0) {
		pvm_buf_put_u32(out, GNT_STATE_VERSION);
		pvm_buf_put_u32(out, d->gnttab_frames);
		pvm_buf_put_u64(out, d->gnttab_pfn);
		pvm_buf_put_u32(out, (uint32_t)nr_entries(d));
		pvm_buf_put_u32(out, 0);
		for (uint32_t ref = 0; ref < nr_entries(d); ref++) {
			uint32_t *w = entry_word(d, ref);

			pvm_buf_put_u32(out, __atomic_load_n(w, __ATOMIC_ACQUIRE));
			pvm_buf_put_u32(out, __atomic_load_n(w + 1, __ATOMIC_ACQUIRE));
		}
		rc = out->err;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int sim_grant_state_set(struct pvm_hv *hv, uint32_t domid, const void *state,
			size_t len)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	struct pvm_cursor c;
	uint32_t version = 0, frames = 0, nent = 0, rsvd = 0;
	uint64_t pfn = 0;
	int rc;

	pvm_cursor_init(&c, state, len);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &frames);
	pvm_cursor_u64(&c, &pfn);
	pvm_cursor_u32(&c, &nent);
	pvm_cursor_u32(&c, &rsvd);
	if (c.err || version != GNT_STATE_VERSION ||
	    nent != (uint64_t)frames * SIM_GNT_PER_FRAME ||
	    pvm_cursor_remaining(&c) != (size_t)nent * 8) {
		pvm_err("sim: domain %u: malformed grant state (%zu bytes)",
			domid, len);
		return -EBADMSG;
	}
	pthread_mutex_lock(&h->lock);
	rc = paused_domain(h, domid, &d);
	if (rc < 0)
		goto out_unlock;
	if (frames != d->gnttab_frames || pfn != d->gnttab_pfn) {
		pvm_err("sim: domain %u: grant table of %u frames at pfn %llu "
			"does not fit this domain's", domid, frames,
			(unsigned long long)pfn);
		rc = -EINVAL;
		goto out_unlock;
	}
	for (uint32_t ref = 0; ref < nent; ref++) {
		if (d->active[ref].pin_r || d->active[ref].pin_w) {
			rc = -EBUSY;
			goto out_unlock;
		}
	}
	for (uint32_t ref = 0; ref < nent; ref++) {
		uint32_t word = 0, frame = 0;
		uint32_t *w = entry_word(d, ref);

		pvm_cursor_u32(&c, &word);
		pvm_cursor_u32(&c, &frame);
		word &= ~(uint32_t)(GTF_reading | GTF_writing);
		__atomic_store_n(w + 1, frame, __ATOMIC_RELAXED);
		__atomic_store_n(w, word, __ATOMIC_RELEASE);
	}
	for (uint32_t f = 0; f < frames; f++)
		sim_mark_dirty_locked(d, pfn + f);
out_unlock:
	pthread_mutex_unlock(&h->lock);
	return rc;
}
