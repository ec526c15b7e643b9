/*
 * The state a restore needs beyond memory, on Xen.
 *
 *   vcpu_context_get/set   xc_vcpu_getcontext / xc_vcpu_setcontext
 *                          (64-bit PV; the context is Xen's own struct)
 *   evtchn_state_get       xc_evtchn_status on ports 1.. until Xen says
 *                          the port is beyond the domain's table
 *   evtchn_state_set       xc_evtchn_alloc_unbound in ascending order:
 *                          Xen hands out the lowest free port, so
 *                          allocation order reproduces the numbers
 *   grant_state_get/set    the shared grant frames through
 *                          xenforeignmemory_map_resource(
 *                          XENMEM_resource_grant_table), as libxl seeds a
 *                          new domain's table; PV frames translated
 *                          mfn → pfn on the way out, pfn → mfn on the way in
 *
 * Formats (little-endian; event channels and grants share the layout of
 * the simulated host, docs/hv.md; details in docs/xen.md):
 *
 *   vCPU:   le32 magic "XVCP" (0x50435658), le32 version 1, le32 vcpu,
 *           le32 guest width (8), le32 size, le32 flags (bit 0: the
 *           context holds machine frames, i.e. is not canonical), then
 *           @size bytes of vcpu_guest_context_x86_64_t
 *   evtchn: le32 version 1, le32 count, per port (ascending) le32 port,
 *           le16 state (Xen's EVTCHNSTAT_*: 1 unbound, 2 interdomain,
 *           3 pirq, 4 virq, 5 ipi), le16 remote domid, le32 remote port
 *           (pirq/virq number for 3/4), le32 reserved
 *   grants: le32 version 1, le32 nr_frames, le64 table pfn (all ones: the
 *           frames are Xen's, not guest memory), le32 nr_entries,
 *           le32 reserved, then nr_entries × (le16 flags, le16 domid,
 *           le32 frame as a pfn; all ones: not translatable)
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "hv/xen/internal.h"

#define VCPU_MAGIC 0x50435658u /* "XVCP" */
#define VCPU_VERSION 1u
#define VCPU_HDR 24u
#define VCPU_F_MACHINE_FRAMES 1u

#define EVTCHN_VERSION 1u
#define EVTCHN_ENTRY 16u

#define GNT_VERSION 1u
#define GNT_HDR 24u
#define GNT_ENTRY 8u
#define GNT_TABLE_PFN_NONE UINT64_MAX
#define GNT_FRAME_NONE UINT32_MAX

/* ---- vCPU context ------------------------------------------------------- */

/* Checks shared by get and set: paused, PV, 64-bit, vcpu in range. */
static int vcpu_check(struct xen_host *x, uint32_t domid, uint32_t vcpu,
		      const char *what)
{
	xc_domaininfo_t info;
	unsigned int width = 0;
	int rc = xen_require_paused(x, domid, what, &info);

	if (rc)
		return rc;
	if (vcpu > info.max_vcpu_id) {
		pvm_err("xen: domain %u: %s: no vCPU %u (has %u)", domid, what,
			vcpu, info.max_vcpu_id + 1);
		return -EINVAL;
	}
	if (info.flags & XEN_DOMINF_hvm_guest) {
		pvm_err("xen: domain %u: %s: HVM/PVH contexts are not "
			"supported (PV only)",
			domid, what);
		return -EOPNOTSUPP;
	}
	errno = 0;
	if (xc_domain_get_guest_width(x->xch, domid, &width) < 0) {
		rc = xen_neg_errno();
		pvm_err("xen: domain %u: %s: guest width: %s", domid, what,
			strerror(-rc));
		return rc;
	}
	if (width != sizeof(uint64_t)) {
		pvm_err("xen: domain %u: %s: %u-bit PV guests are not "
			"supported",
			domid, what, width * 8);
		return -EOPNOTSUPP;
	}
	return 0;
}

int xen_vcpu_context_get(struct pvm_hv *hv, uint32_t domid, uint32_t vcpu,
			 struct pvm_buf *out)
{
	struct xen_host *x = xen_of(hv);
	vcpu_guest_context_any_t ctx;
	int rc = vcpu_check(x, domid, vcpu, "vcpu context get");

	if (rc)
		return rc;
	memset(&ctx, 0, sizeof(ctx));
	errno = 0;
	if (xc_vcpu_getcontext(x->xch, domid, vcpu, &ctx) < 0) {
		rc = xen_neg_errno();
		pvm_err("xen: domain %u: xc_vcpu_getcontext(%u): %s", domid,
			vcpu, strerror(-rc));
		return rc;
	}
	pvm_buf_put_u32(out, VCPU_MAGIC);
	pvm_buf_put_u32(out, VCPU_VERSION);
	pvm_buf_put_u32(out, vcpu);
	pvm_buf_put_u32(out, sizeof(uint64_t));
	pvm_buf_put_u32(out, sizeof(ctx.x64));
	/*
	 * cr3 and the GDT frames are machine frame numbers: valid only on
	 * this host until canonicalised (libxenguest's job, not done here).
	 */
	pvm_buf_put_u32(out, VCPU_F_MACHINE_FRAMES);
	pvm_buf_put_bytes(out, &ctx.x64, sizeof(ctx.x64));
	return out->err;
}

int xen_vcpu_context_set(struct pvm_hv *hv, uint32_t domid, uint32_t vcpu,
			 const void *blob, size_t len)
{
	struct xen_host *x = xen_of(hv);
	vcpu_guest_context_any_t ctx;
	struct pvm_cursor c;
	uint32_t magic = 0, version = 0, id = 0, width = 0, size = 0;
	uint32_t flags = 0;
	int rc;

	pvm_cursor_init(&c, blob, len);
	pvm_cursor_u32(&c, &magic);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &id);
	pvm_cursor_u32(&c, &width);
	pvm_cursor_u32(&c, &size);
	pvm_cursor_u32(&c, &flags);
	if (c.err || magic != VCPU_MAGIC || version != VCPU_VERSION ||
	    width != sizeof(uint64_t) || size != sizeof(ctx.x64) ||
	    pvm_cursor_remaining(&c) != size || id != vcpu) {
		pvm_err("xen: domain %u: vCPU %u: malformed context (%zu "
			"bytes, magic %#x, version %u, vcpu %u, width %u, "
			"size %u)",
			domid, vcpu, len, magic, version, id, width, size);
		return -EBADMSG;
	}
	rc = vcpu_check(x, domid, vcpu, "vcpu context set");
	if (rc)
		return rc;
	memset(&ctx, 0, sizeof(ctx));
	pvm_cursor_copy(&c, &ctx.x64, size);
	errno = 0;
	if (xc_vcpu_setcontext(x->xch, domid, vcpu, &ctx) < 0) {
		rc = xen_neg_errno();
		pvm_err("xen: domain %u: xc_vcpu_setcontext(%u): %s", domid,
			vcpu, strerror(-rc));
		return rc;
	}
	return 0;
}

/* ---- event channels ----------------------------------------------------- */

struct port_rec {
	uint32_t port;
	uint16_t state;
	uint16_t remote_domid;
	uint32_t remote_port;
};

/*
 * Status of @port in @domid: 0 (filled), 1 when the port is past the
 * domain's table (Xen's -EINVAL: the walk ends), 2 when Xen will not say
 * (-EACCES: some Xen versions refuse EVTCHNOP_status on channels Xen
 * itself consumes), or a negative errno.
 */
static int port_status(struct xen_host *x, uint32_t domid, uint32_t port,
		       struct port_rec *out)
{
	xc_evtchn_status_t st;

	memset(&st, 0, sizeof(st));
	st.dom = (domid_t)domid;
	st.port = port;
	errno = 0;
	if (xc_evtchn_status(x->xch, &st) < 0) {
		if (errno == EINVAL)
			return 1;
		if (errno == EACCES)
			return 2;
		return xen_neg_errno();
	}
	memset(out, 0, sizeof(*out));
	out->port = port;
	out->state = (uint16_t)st.status;
	switch (st.status) {
	case EVTCHNSTAT_unbound:
		out->remote_domid = st.u.unbound.dom;
		break;
	case EVTCHNSTAT_interdomain:
		out->remote_domid = st.u.interdomain.dom;
		out->remote_port = st.u.interdomain.port;
		break;
	case EVTCHNSTAT_pirq:
		out->remote_port = st.u.pirq;
		break;
	case EVTCHNSTAT_virq:
		out->remote_port = st.u.virq;
		break;
	default: /* closed, ipi */
		break;
	}
	return 0;
}

/*
 * Every open port of @domid into *@out (malloc'd, caller frees; NULL when
 * none), ascending. Logs.
 */
static int ports_read(struct xen_host *x, uint32_t domid,
		      struct port_rec **out, size_t *n_out)
{
	struct port_rec *v = NULL, r;
	size_t n = 0, cap = 0, hidden = 0;
	int rc = 0;

	for (uint32_t port = 1; port < XEN_EVTCHN_PORT_MAX; port++) {
		rc = port_status(x, domid, port, &r);
		if (rc == 1) {
			rc = 0;
			break;
		}
		if (rc == 2) {
			/* Xen's own channel: Xen re-creates it, not us. */
			hidden++;
			continue;
		}
		if (rc) {
			pvm_err("xen: domain %u: evtchn status of port %u: %s",
				domid, port, strerror(-rc));
			goto out_free;
		}
		if (r.state == EVTCHNSTAT_closed)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			struct port_rec *nv = realloc(v, ncap * sizeof(*nv));

			if (!nv) {
				rc = -ENOMEM;
				pvm_err("xen: domain %u: evtchn table: out of "
					"memory",
					domid);
				goto out_free;
			}
			v = nv;
			cap = ncap;
		}
		v[n++] = r;
	}
	if (hidden)
		pvm_warn("xen: domain %u: %zu event channels Xen would not "
			 "describe (Xen-bound) are left out",
			 domid, hidden);
	*out = v;
	*n_out = n;
	return 0;
out_free:
	free(v);
	return rc;
}

int xen_evtchn_state_get(struct pvm_hv *hv, uint32_t domid,
			 struct pvm_buf *out)
{
	struct xen_host *x = xen_of(hv);
	struct port_rec *ports = NULL;
	size_t n = 0;
	int rc = xen_require_paused(x, domid, "evtchn state", NULL);

	if (rc)
		return rc;
	rc = ports_read(x, domid, &ports, &n);
	if (rc)
		return rc;
	pvm_buf_put_u32(out, EVTCHN_VERSION);
	pvm_buf_put_u32(out, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		pvm_buf_put_u32(out, ports[i].port);
		pvm_buf_put_u16(out, ports[i].state);
		pvm_buf_put_u16(out, ports[i].remote_domid);
		pvm_buf_put_u32(out, ports[i].remote_port);
		pvm_buf_put_u32(out, 0);
	}
	free(ports);
	return out->err;
}

/* Decodes an evtchn blob into *@out (malloc'd); -EBADMSG, logged. */
static int evtchn_decode(uint32_t domid, const void *blob, size_t len,
			 struct port_rec **out, size_t *n_out)
{
	struct pvm_cursor c;
	uint32_t version = 0, count = 0, reserved;
	struct port_rec *v = NULL;
	int rc = -EBADMSG;

	pvm_cursor_init(&c, blob, len);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &count);
	if (c.err || version != EVTCHN_VERSION || count >= XEN_EVTCHN_PORT_MAX ||
	    pvm_cursor_remaining(&c) != (size_t)count * EVTCHN_ENTRY) {
		pvm_err("xen: domain %u: evtchn state: bad header (version "
			"%u, %u ports, %zu bytes)",
			domid, version, count, len);
		return -EBADMSG;
	}
	if (count && !(v = calloc(count, sizeof(*v)))) {
		pvm_err("xen: domain %u: evtchn state: out of memory", domid);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < count; i++) {
		pvm_cursor_u32(&c, &v[i].port);
		pvm_cursor_u16(&c, &v[i].state);
		pvm_cursor_u16(&c, &v[i].remote_domid);
		pvm_cursor_u32(&c, &v[i].remote_port);
		pvm_cursor_u32(&c, &reserved);
		if (c.err || v[i].port == 0 ||
		    v[i].port >= XEN_EVTCHN_PORT_MAX ||
		    (i && v[i].port <= v[i - 1].port) ||
		    v[i].state < EVTCHNSTAT_unbound ||
		    v[i].state > EVTCHNSTAT_ipi ||
		    ((v[i].state == EVTCHNSTAT_unbound ||
		      v[i].state == EVTCHNSTAT_interdomain) &&
		     v[i].remote_domid > PVM_HV_DOMID_MAX)) {
			pvm_err("xen: domain %u: evtchn state: bad entry %u "
				"(port %u, state %u, remote %u)",
				domid, i, v[i].port, v[i].state,
				v[i].remote_domid);
			goto out_free;
		}
	}
	*out = v;
	*n_out = count;
	return 0;
out_free:
	free(v);
	return rc;
}

/* The entry for @port in sorted @v, or NULL. */
static const struct port_rec *port_find(const struct port_rec *v, size_t n,
					uint32_t port)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid].port == port)
			return &v[mid];
		if (v[mid].port < port)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool is_peer_port(const struct port_rec *r)
{
	return r->state == EVTCHNSTAT_unbound ||
	       r->state == EVTCHNSTAT_interdomain;
}

int xen_evtchn_state_set(struct pvm_hv *hv, uint32_t domid,
			 const void *blob, size_t len)
{
	struct xen_host *x = xen_of(hv);
	struct port_rec *want = NULL, *have = NULL;
	size_t n_want = 0, n_have = 0, guest_bound = 0;
	uint32_t top;
	int rc;

	rc = evtchn_decode(domid, blob, len, &want, &n_want);
	if (rc)
		return rc;
	rc = xen_require_paused(x, domid, "evtchn restore", NULL);
	if (rc)
		goto out_free;
	/*
	 * The domain builder has already made the xenstore and console
	 * ports (unbound for their backends' domain). Those are accepted
	 * when the restored table has the same port for the same remote
	 * domain; any other existing port is a conflict.
	 */
	rc = ports_read(x, domid, &have, &n_have);
	if (rc)
		goto out_free;
	for (size_t i = 0; i < n_have; i++) {
		const struct port_rec *w = port_find(want, n_want,
						     have[i].port);

		if (!w || !is_peer_port(w) || !is_peer_port(&have[i]) ||
		    w->remote_domid != have[i].remote_domid) {
			pvm_err("xen: domain %u: evtchn restore: port %u "
				"already exists (state %u, remote %u) and is "
				"not the restored one",
				domid, have[i].port, have[i].state,
				have[i].remote_domid);
			rc = -EBUSY;
			goto out_free;
		}
	}
	top = n_want ? want[n_want - 1].port : 0;
	/*
	 * EVTCHNOP_alloc_unbound gives the lowest free port, so allocating
	 * 1..top in order reproduces every number. Ports the toolstack
	 * cannot re-create (pirq, virq, ipi: only the guest binds those)
	 * and gaps are held by placeholders, unbound for the domain itself,
	 * which stock Xen lets nobody but the guest close.
	 */
	for (uint32_t port = 1; port <= top; port++) {
		const struct port_rec *w = port_find(want, n_want, port);
		uint32_t remote = domid;
		int got;

		if (port_find(have, n_have, port))
			continue;
		if (w && is_peer_port(w))
			remote = w->remote_domid;
		else if (w)
			guest_bound++;
		errno = 0;
		got = xc_evtchn_alloc_unbound(x->xch, domid, remote);
		if (got < 0) {
			rc = xen_neg_errno();
			pvm_err("xen: domain %u: evtchn restore: alloc port "
				"%u: %s",
				domid, port, strerror(-rc));
			goto out_free;
		}
		if ((uint32_t)got != port) {
			pvm_err("xen: domain %u: evtchn restore: Xen gave "
				"port %d where %u was due",
				domid, got, port);
			rc = -EIO;
			goto out_free;
		}
	}
	if (guest_bound)
		pvm_warn("xen: domain %u: %zu pirq/virq/ipi ports held by "
			 "placeholders: the guest must bind them again",
			 domid, guest_bound);
	rc = 0;
out_free:
	free(have);
	free(want);
	return rc;
}

/* ---- grant table -------------------------------------------------------- */

struct gnt_rec {
	uint16_t flags;
	uint16_t domid;
	uint32_t frame;
};

/* mfn → pfn pairs of a PV guest, sorted by mfn. */
struct m2p_pair {
	xen_pfn_t mfn;
	uint64_t pfn;
};

static int m2p_cmp(const void *a, const void *b)
{
	const struct m2p_pair *pa = a, *pb = b;

	return pa->mfn < pb->mfn ? -1 : pa->mfn > pb->mfn;
}

static bool gnt_in_use(uint16_t flags)
{
	return (flags & GTF_type_mask) != GTF_invalid;
}

/* A grant table this side can read or write: v1 (or never set up). */
static int gnt_check_version(struct xen_host *x, uint32_t domid,
			     const char *what)
{
	int v;

	errno = 0;
	v = xc_gnttab_get_version(x->xch, domid);
	if (v < 0) {
		int rc = xen_neg_errno();

		pvm_err("xen: domain %u: %s: grant table version: %s", domid,
			what, strerror(-rc));
		return rc;
	}
	if (v > 1) {
		pvm_err("xen: domain %u: %s: grant table v%d is not supported "
			"(v1 only)",
			domid, what, v);
		return -EOPNOTSUPP;
	}
	return 0;
}

static int gnt_query(struct xen_host *x, uint32_t domid, const char *what,
		     struct gnttab_query_size *q)
{
	memset(q, 0, sizeof(*q));
	q->dom = (domid_t)domid;
	errno = 0;
	if (xc_gnttab_query_size(x->xch, q) < 0) {
		int rc = xen_neg_errno();

		pvm_err("xen: domain %u: %s: grant table size: %s", domid,
			what, strerror(-rc));
		return rc;
	}
	if (q->status != GNTST_okay) {
		pvm_err("xen: domain %u: %s: grant table size: status %d",
			domid, what, q->status);
		return q->status == GNTST_bad_domain ? -ESRCH : -EIO;
	}
	return 0;
}

/*
 * PV: rewrites in-use entries' frames from mfns to pfns through the p2m.
 * A frame that is not the guest's becomes GNT_FRAME_NONE (warned).
 */
static int gnt_frames_to_pfns(struct xen_host *x,
			      const xc_domaininfo_t *info, struct gnt_rec *e,
			      size_t n)
{
	uint32_t domid = info->domain;
	struct m2p_pair *pairs = NULL;
	size_t np = 0, lost = 0;
	struct xen_dom *d;
	int rc;

	pthread_mutex_lock(&x->lock);
	d = xen_dom_get(x, domid, true);
	if (!d) {
		rc = -ENOMEM;
		pvm_err("xen: domain %u: grant state: out of memory", domid);
		goto out_unlock;
	}
	rc = xen_p2m_load(x, d, info);
	if (rc)
		goto out_unlock;
	pairs = malloc(d->p2m.size * sizeof(*pairs));
	if (!pairs) {
		rc = -ENOMEM;
		pvm_err("xen: domain %u: grant state: out of memory", domid);
		goto out_unlock;
	}
	for (uint64_t pfn = 0; pfn < d->p2m.size; pfn++) {
		xen_pfn_t mfn = d->p2m.p2m[pfn];

		if (xen_p2m_entry_ok(mfn))
			pairs[np++] = (struct m2p_pair){ mfn, pfn };
	}
	qsort(pairs, np, sizeof(*pairs), m2p_cmp);
	for (size_t i = 0; i < n; i++) {
		struct m2p_pair key = { e[i].frame, 0 };
		const struct m2p_pair *hit;

		if (!gnt_in_use(e[i].flags))
			continue;
		hit = bsearch(&key, pairs, np, sizeof(*pairs), m2p_cmp);
		if (hit && hit->pfn < GNT_FRAME_NONE) {
			e[i].frame = (uint32_t)hit->pfn;
		} else {
			e[i].frame = GNT_FRAME_NONE;
			lost++;
		}
	}
	if (lost)
		pvm_warn("xen: domain %u: %zu grant entries name frames "
			 "outside the guest's p2m; they are saved void",
			 domid, lost);
	rc = 0;
out_unlock:
	pthread_mutex_unlock(&x->lock);
	free(pairs);
	return rc;
}

int xen_grant_state_get(struct pvm_hv *hv, uint32_t domid,
			struct pvm_buf *out)
{
	struct xen_host *x = xen_of(hv);
	xenforeignmemory_resource_handle *res;
	struct gnttab_query_size q;
	xc_domaininfo_t info;
	grant_entry_v1_t *table = NULL;
	struct gnt_rec *e = NULL;
	size_t n = 0, used = 0;
	int rc;

	rc = xen_require_paused(x, domid, "grant state", &info);
	if (rc)
		return rc;
	rc = gnt_check_version(x, domid, "grant state");
	if (rc)
		return rc;
	rc = gnt_query(x, domid, "grant state", &q);
	if (rc)
		return rc;
	if (q.nr_frames > XEN_GNT_FRAMES_MAX) {
		pvm_err("xen: domain %u: grant state: %u frames", domid,
			q.nr_frames);
		return -E2BIG;
	}
	n = (size_t)q.nr_frames * XEN_GNT_PER_FRAME;
	if (n) {
		e = calloc(n, sizeof(*e));
		if (!e) {
			pvm_err("xen: domain %u: grant state: out of memory",
				domid);
			return -ENOMEM;
		}
		errno = 0;
		res = xenforeignmemory_map_resource(
			x->fmem, (domid_t)domid, XENMEM_resource_grant_table,
			XENMEM_resource_grant_table_id_shared, 0, q.nr_frames,
			(void **)&table, PROT_READ, 0);
		if (!res) {
			rc = xen_neg_errno();
			pvm_err("xen: domain %u: grant state: map %u grant "
				"frames: %s",
				domid, q.nr_frames, strerror(-rc));
			goto out_free;
		}
		for (size_t i = 0; i < n; i++) {
			e[i].flags = __atomic_load_n(&table[i].flags,
						     __ATOMIC_ACQUIRE);
			e[i].domid = table[i].domid;
			e[i].frame = table[i].frame;
			if (e[i].flags || e[i].domid || e[i].frame)
				used = i + 1;
		}
		xenforeignmemory_unmap_resource(x->fmem, res);
		if (used && !(info.flags & XEN_DOMINF_hvm_guest)) {
			rc = gnt_frames_to_pfns(x, &info, e, used);
			if (rc)
				goto out_free;
		}
	}
	pvm_buf_put_u32(out, GNT_VERSION);
	pvm_buf_put_u32(out, q.nr_frames);
	pvm_buf_put_u64(out, GNT_TABLE_PFN_NONE);
	pvm_buf_put_u32(out, (uint32_t)used);
	pvm_buf_put_u32(out, 0);
	for (size_t i = 0; i < used; i++) {
		pvm_buf_put_u16(out, e[i].flags);
		pvm_buf_put_u16(out, e[i].domid);
		pvm_buf_put_u32(out, e[i].frame);
	}
	rc = out->err;
out_free:
	free(e);
	return rc;
}

/* Decodes a grant blob; entries malloc'd into *@e_out. -EBADMSG, logged. */
static int gnt_decode(uint32_t domid, const void *blob, size_t len,
		      uint32_t *nr_frames_out, struct gnt_rec **e_out,
		      size_t *n_out)
{
	struct pvm_cursor c;
	uint32_t version = 0, nr_frames = 0, nr_entries = 0, reserved = 0;
	uint64_t table_pfn = 0;
	struct gnt_rec *e = NULL;

	pvm_cursor_init(&c, blob, len);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &nr_frames);
	pvm_cursor_u64(&c, &table_pfn);
	pvm_cursor_u32(&c, &nr_entries);
	pvm_cursor_u32(&c, &reserved);
	if (c.err || version != GNT_VERSION || nr_frames > XEN_GNT_FRAMES_MAX ||
	    nr_entries > (uint64_t)nr_frames * XEN_GNT_PER_FRAME ||
	    pvm_cursor_remaining(&c) != (size_t)nr_entries * GNT_ENTRY) {
		pvm_err("xen: domain %u: grant state: bad header (version %u, "
			"%u frames, %u entries, %zu bytes)",
			domid, version, nr_frames, nr_entries, len);
		return -EBADMSG;
	}
	if (nr_entries && !(e = calloc(nr_entries, sizeof(*e)))) {
		pvm_err("xen: domain %u: grant state: out of memory", domid);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < nr_entries; i++) {
		pvm_cursor_u16(&c, &e[i].flags);
		pvm_cursor_u16(&c, &e[i].domid);
		pvm_cursor_u32(&c, &e[i].frame);
	}
	*nr_frames_out = nr_frames;
	*e_out = e;
	*n_out = nr_entries;
	return 0;
}

/*
 * Turns restored frames (pfns) into what this domain's table must hold:
 * gfns for HVM/PVH (the same), mfns for PV through the new domain's p2m.
 * An in-use entry naming a pfn outside the guest is -EBADMSG; one saved
 * void (GNT_FRAME_NONE) is written invalid.
 */
static int gnt_frames_from_pfns(struct xen_host *x,
				const xc_domaininfo_t *info,
				struct gnt_rec *e, size_t n)
{
	uint32_t domid = info->domain;
	bool pv = !(info->flags & XEN_DOMINF_hvm_guest);
	struct xen_dom *d = NULL;
	uint64_t nr = 0;
	int rc = 0;

	if (!pv) {
		rc = xen_nr_pages(x, domid, &nr);
		if (rc)
			return rc;
	} else {
		pthread_mutex_lock(&x->lock);
		d = xen_dom_get(x, domid, true);
		rc = d ? xen_p2m_load(x, d, info) : -ENOMEM;
		if (rc) {
			if (rc == -ENOMEM)
				pvm_err("xen: domain %u: grant restore: out "
					"of memory",
					domid);
			goto out_unlock;
		}
		nr = d->p2m.size;
	}
	for (size_t i = 0; i < n; i++) {
		if (!gnt_in_use(e[i].flags))
			continue;
		if (e[i].frame == GNT_FRAME_NONE) {
			e[i].flags = 0;
			continue;
		}
		if (e[i].frame >= nr ||
		    (pv && !xen_p2m_entry_ok(d->p2m.p2m[e[i].frame]))) {
			pvm_err("xen: domain %u: grant restore: entry %zu "
				"names pfn %u outside the guest",
				domid, i, e[i].frame);
			rc = -EBADMSG;
			goto out_unlock;
		}
		if (pv) {
			xen_pfn_t mfn = d->p2m.p2m[e[i].frame];

			if (mfn > UINT32_MAX) {
				pvm_err("xen: domain %u: grant restore: mfn "
					"%#lx does not fit a v1 entry",
					domid, (unsigned long)mfn);
				rc = -ERANGE;
				goto out_unlock;
			}
			e[i].frame = (uint32_t)mfn;
		}
	}
out_unlock:
	if (pv)
		pthread_mutex_unlock(&x->lock);
	return rc;
}

int xen_grant_state_set(struct pvm_hv *hv, uint32_t domid, const void *blob,
			size_t len)
{
	struct xen_host *x = xen_of(hv);
	xenforeignmemory_resource_handle *res;
	struct gnttab_query_size q;
	xc_domaininfo_t info;
	grant_entry_v1_t *table = NULL;
	struct gnt_rec *e = NULL;
	uint32_t nr_frames = 0;
	size_t n = 0, slots;
	int rc;

	rc = gnt_decode(domid, blob, len, &nr_frames, &e, &n);
	if (rc)
		return rc;
	rc = xen_require_paused(x, domid, "grant restore", &info);
	if (rc)
		goto out_free;
	rc = gnt_check_version(x, domid, "grant restore");
	if (rc)
		goto out_free;
	if (nr_frames == 0)
		goto out_free; /* nothing granted on the source */
	rc = gnt_query(x, domid, "grant restore", &q);
	if (rc)
		goto out_free;
	if (nr_frames > q.max_nr_frames) {
		pvm_err("xen: domain %u: grant restore: %u frames saved, the "
			"domain may have %u (raise max_grant_frames)",
			domid, nr_frames, q.max_nr_frames);
		rc = -ENOSPC;
		goto out_free;
	}
	rc = gnt_frames_from_pfns(x, &info, e, n);
	if (rc)
		goto out_free;
	/* Mapping frames past the current size makes Xen grow the table. */
	errno = 0;
	res = xenforeignmemory_map_resource(
		x->fmem, (domid_t)domid, XENMEM_resource_grant_table,
		XENMEM_resource_grant_table_id_shared, 0, nr_frames,
		(void **)&table, PROT_READ | PROT_WRITE, 0);
	if (!res) {
		rc = xen_neg_errno();
		pvm_err("xen: domain %u: grant restore: map %u grant frames: "
			"%s",
			domid, nr_frames, strerror(-rc));
		goto out_free;
	}
	slots = (size_t)nr_frames * XEN_GNT_PER_FRAME;
	for (size_t i = 0; i < slots; i++) {
		uint16_t flags = 0;

		if (i < n) {
			table[i].domid = e[i].domid;
			table[i].frame = e[i].frame;
			/* No backend here has it mapped or copying yet. */
			flags = e[i].flags &
				(uint16_t) ~(GTF_reading | GTF_writing);
		} else {
			table[i].domid = 0;
			table[i].frame = 0;
		}
		/* flags last: an entry is whole once it is valid. */
		__atomic_store_n(&table[i].flags, flags, __ATOMIC_RELEASE);
	}
	errno = 0;
	if (xenforeignmemory_unmap_resource(x->fmem, res) < 0) {
		rc = xen_neg_errno();
		pvm_err("xen: domain %u: grant restore: unmap: %s", domid,
			strerror(-rc));
		goto out_free;
	}
	rc = 0;
out_free:
	free(e);
	return rc;
}
