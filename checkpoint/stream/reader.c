/*
 * The stream reader: pvm_ckpt_read() pulls bytes from the caller's source,
 * checks every header, length, count and order rule, and hands each valid
 * record to the caller's ops table. Records are dispatched through two
 * tables indexed by type (libxc types 0..0x12, pvmig types BASE+0..BASE+6),
 * each entry a name, a handler and flags; the type is bounds-checked first.
 *
 * The walk, in the order it runs:
 *
 *   detect()        first 8 bytes: "LibxlFmt", the libxc marker, or an xl
 *                   save-file header (skipped, bounded)
 *   read_libxl()    libxl header, then libxl records until libxl END;
 *                   LIBXC_CONTEXT hands over to
 *   read_libxc()    image header, domain header, libxc records until END
 *
 * Memory: one body buffer, grown only as bytes actually arrive (a record
 * that claims 16 MiB and carries 10 bytes costs 64 KiB), never past the
 * record bound; one scratch array for decoded entries, sized from a length
 * already checked. Nothing is allocated from a count that was not checked.
 *
 * The running SHA-256 starts at the libxl header (or the libxc image header
 * of a bare libxc stream) and covers every byte up to the CHECKSUM record's
 * header; the CHECKSUM record compares against it.
 */
#include "checkpoint/stream/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_CHUNK (64u << 10)

/* Record flags in the dispatch tables. */
#define R_HVM 0x001u     /* valid in an x86 HVM stream */
#define R_PV 0x002u      /* valid in an x86 PV stream */
#define R_STATIC 0x004u  /* only before STATIC_DATA_END */
#define R_DYNAMIC 0x008u /* only after STATIC_DATA_END (memory, registers) */
#define R_V3 0x010u      /* only in v3 streams */
#define R_ONCE 0x020u    /* at most once */
#define R_EMPTY 0x040u   /* body length 0 */
#define R_NOTSUP 0x080u  /* known, valid, but pvmig cannot restore it */

struct reader {
	const struct pvm_ckpt_read_cfg *cfg;
	const struct pvm_ckpt_read_ops *ops; /* never NULL */
	void *octx;
	struct pvm_ckpt_info *info;          /* never NULL */
	uint64_t max_pfns;
	uint32_t max_record;
	int err;                             /* first error, sticky */
	uint64_t where;                      /* offset of the current record */
	struct pvm_ckpt_digest digest;
	bool hashing;
	uint64_t hashed;                     /* bytes fed to the digest */
	uint8_t *buf;                        /* record body, owned */
	size_t cap;
	void *scratch;                       /* decoded entries, owned */
	size_t scratch_cap;
	/* libxc stream state */
	uint32_t version;
	uint32_t dom_type;
	bool seen_sde, seen_checksum;
	uint8_t csum_expected;               /* from META */
	uint32_t seen_once[PVM_CKPT_XC_REC_NR + PVM_CKPT_PVM_REC_NR];
};

struct rec_desc {
	int (*handle)(struct reader *r, const struct pvm_ckpt_record *rec);
	uint32_t flags;
};

static int rfail(struct reader *r, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Records the first error, with the stream offset, and logs it once. */
static int rfail(struct reader *r, int rc, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	if (r->err)
		return r->err;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(r->info->error_msg, sizeof(r->info->error_msg),
		 "offset %llu: %s", (unsigned long long)r->where, msg);
	pvm_err("checkpoint: stream %s", r->info->error_msg);
	r->err = rc;
	return rc;
}

/* ---- byte source -------------------------------------------------------- */

/* Reads exactly @n bytes; end of stream is -EBADMSG naming @what. */
static int pull(struct reader *r, void *buf, size_t n, const char *what)
{
	size_t done = 0, got;
	int rc;

	if (r->err)
		return r->err;
	while (done < n) {
		got = 0;
		rc = r->cfg->read(r->cfg->read_ctx, (uint8_t *)buf + done,
				  n - done, &got);
		if (rc)
			return rfail(r, rc < 0 ? rc : -EIO,
				     "reading %s: %s", what,
				     strerror(rc < 0 ? -rc : EIO));
		if (got > n - done)
			return rfail(r, -EIO, "source returned too much");
		if (!got)
			return rfail(r, -EBADMSG,
				     "truncated: stream ends inside %s, after %llu bytes",
				     what, (unsigned long long)r->info->bytes);
		done += got;
		r->info->bytes += got;
	}
	if (r->hashing) {
		pvm_ckpt_digest_update(&r->digest, buf, n);
		r->hashed += n;
	}
	return 0;
}

/* Reads and drops @n bytes (skipped records, xl option data). */
static int discard(struct reader *r, uint64_t n, const char *what)
{
	uint8_t tmp[4096];

	while (n && !r->err) {
		size_t k = n < sizeof(tmp) ? (size_t)n : sizeof(tmp);

		pull(r, tmp, k, what);
		n -= k;
	}
	return r->err;
}

/*
 * Reads a body of @len bytes plus padding into r->buf, growing it as data
 * arrives. @len was checked against the record bound by the caller.
 */
static int read_body(struct reader *r, uint32_t len, const char *what)
{
	size_t plen = rec_padded(len), done = 0;

	while (done < plen) {
		size_t chunk = plen - done < BODY_CHUNK ? plen - done
							 : BODY_CHUNK;

		if (done + chunk > r->cap) {
			size_t ncap = r->cap ? r->cap * 2 : BODY_CHUNK;
			uint8_t *nb;

			if (ncap < done + chunk)
				ncap = done + chunk;
			if (ncap > plen)
				ncap = plen;
			nb = realloc(r->buf, ncap);
			if (!nb)
				return rfail(r, -ENOMEM, "no memory for %s", what);
			r->buf = nb;
			r->cap = ncap;
		}
		if (pull(r, r->buf + done, chunk, what))
			return r->err;
		done += chunk;
	}
	if (plen > len && !all_zero(r->buf + len, plen - len))
		return rfail(r, -EBADMSG, "%s: padding is not zero", what);
	return 0;
}

static void *scratch(struct reader *r, size_t n)
{
	void *p;

	if (n <= r->scratch_cap)
		return r->scratch;
	p = realloc(r->scratch, n);
	if (!p) {
		rfail(r, -ENOMEM, "no memory for %zu decoded bytes", n);
		return NULL;
	}
	r->scratch = p;
	r->scratch_cap = n;
	return p;
}

static int call(struct reader *r, int rc, const char *name)
{
	if (rc)
		return rfail(r, rc < 0 ? rc : -EIO, "%s: handler failed: %s",
			     name, strerror(rc < 0 ? -rc : EIO));
	return 0;
}

static void count_type(struct reader *r, uint32_t type, uint32_t len)
{
	struct pvm_ckpt_info *in = r->info;
	uint32_t i;

	in->records++;
	for (i = 0; i < in->nr_types; i++)
		if (in->by_type[i].type == type)
			break;
	if (i == in->nr_types) {
		if (i == PVM_CKPT_INFO_TYPES) {
			in->other_records++;
			return;
		}
		in->by_type[i].type = type;
		in->nr_types++;
	}
	in->by_type[i].count++;
	in->by_type[i].bytes += len;
}

/* ---- libxc record handlers ---------------------------------------------- */

static int h_nop(struct reader *r, const struct pvm_ckpt_record *rec)
{
	return 0;
}

static int h_page_data(struct reader *r, const struct pvm_ckpt_record *rec)
{
	uint32_t count, i, ndata = 0;
	uint64_t want;
	const uint8_t *pfns, *data;

	if (rec->length < 8 + 8)
		return rfail(r, -EBADMSG, "PAGE_DATA: length %u too short",
			     rec->length);
	pfns = rec->body + 8;
	count = pvm_get_le32(rec->body);
	if (count == 0)
		return rfail(r, -EBADMSG, "PAGE_DATA: count 0");
	if (count > r->max_pfns)
		return rfail(r, -E2BIG,
			     "PAGE_DATA: count %u larger than the domain (%llu pages)",
			     count, (unsigned long long)r->max_pfns);
	if (count > (rec->length - 8) / 8)
		return rfail(r, -EBADMSG,
			     "PAGE_DATA: count %u does not fit length %u",
			     count, rec->length);
	for (i = 0; i < count; i++) {
		uint64_t v = pvm_get_le64(pfns + 8 * (size_t)i);
		unsigned t = (unsigned)(v >> PVM_CKPT_PFN_TYPE_SHIFT);
		uint64_t pfn = v & PVM_CKPT_PFN_MASK;

		if (v & PVM_CKPT_PFN_RES_MASK)
			return rfail(r, -EBADMSG,
				     "PAGE_DATA: reserved bits in pfn[%u]", i);
		if (t > PVM_CKPT_PFN_L4TAB && t < PVM_CKPT_PFN_L1TAB_PIN)
			return rfail(r, -EBADMSG,
				     "PAGE_DATA: reserved type %#x in pfn[%u]",
				     t, i);
		if (t != PVM_CKPT_PFN_NOTAB && t < PVM_CKPT_PFN_BROKEN &&
		    r->dom_type != PVM_CKPT_DOM_X86_PV)
			return rfail(r, -EBADMSG,
				     "PAGE_DATA: page-table type %#x in an HVM stream",
				     t);
		if (pfn >= r->max_pfns)
			return rfail(r, -E2BIG,
				     "PAGE_DATA: pfn %#llx beyond the domain (%llu pages)",
				     (unsigned long long)pfn,
				     (unsigned long long)r->max_pfns);
		if (t < PVM_CKPT_PFN_BROKEN)
			ndata++;
	}
	want = 8 + 8 * (uint64_t)count + (uint64_t)ndata * PVM_PAGE_SIZE;
	if (want != rec->length)
		return rfail(r, -EBADMSG,
			     "PAGE_DATA: length %u, expected %llu for %u pfns, %u pages",
			     rec->length, (unsigned long long)want, count, ndata);
	r->info->pfns += count;
	r->info->pages += ndata;
	data = pfns + 8 * (size_t)count;
	for (i = 0; i < count && r->ops->page; i++) {
		uint64_t v = pvm_get_le64(pfns + 8 * (size_t)i);
		unsigned t = (unsigned)(v >> PVM_CKPT_PFN_TYPE_SHIFT);
		bool has = t < PVM_CKPT_PFN_BROKEN;

		if (call(r, r->ops->page(r->octx, v & PVM_CKPT_PFN_MASK, t,
					 has ? data : NULL),
			 "PAGE_DATA"))
			return r->err;
		if (has)
			data += PVM_PAGE_SIZE;
	}
	return 0;
}

static int h_tsc_info(struct reader *r, const struct pvm_ckpt_record *rec)
{
	struct pvm_ckpt_tsc_info t;

	if (rec->length != 24)
		return rfail(r, -EBADMSG, "X86_TSC_INFO: length %u, not 24",
			     rec->length);
	t.mode = pvm_get_le32(rec->body);
	t.khz = pvm_get_le32(rec->body + 4);
	t.nsec = pvm_get_le64(rec->body + 8);
	t.incarnation = pvm_get_le32(rec->body + 16);
	if (r->ops->tsc_info)
		return call(r, r->ops->tsc_info(r->octx, &t), "X86_TSC_INFO");
	return 0;
}

static int h_hvm_params(struct reader *r, const struct pvm_ckpt_record *rec)
{
	struct pvm_ckpt_hvm_param *p;
	uint32_t count;

	if (rec->length < 8)
		return rfail(r, -EBADMSG, "HVM_PARAMS: length %u too short",
			     rec->length);
	count = pvm_get_le32(rec->body);
	if (count != (rec->length - 8) / 16 || (rec->length - 8) % 16)
		return rfail(r, -EBADMSG, "HVM_PARAMS: count %u, length %u",
			     count, rec->length);
	if (!r->ops->hvm_params || !count)
		return 0;
	p = scratch(r, (size_t)count * sizeof(*p));
	if (!p)
		return r->err;
	for (uint32_t i = 0; i < count; i++) {
		p[i].index = pvm_get_le64(rec->body + 8 + 16 * (size_t)i);
		p[i].value = pvm_get_le64(rec->body + 16 + 16 * (size_t)i);
	}
	return call(r, r->ops->hvm_params(r->octx, p, count), "HVM_PARAMS");
}

static int h_hvm_context(struct reader *r, const struct pvm_ckpt_record *rec)
{
	if (!rec->length)
		return rfail(r, -EBADMSG, "HVM_CONTEXT: empty");
	if (r->ops->hvm_context)
		return call(r, r->ops->hvm_context(r->octx, rec->body,
						   rec->length),
			    "HVM_CONTEXT");
	return 0;
}

static int h_pv_info(struct reader *r, const struct pvm_ckpt_record *rec)
{
	if (rec->length != 8)
		return rfail(r, -EBADMSG, "X86_PV_INFO: length %u, not 8",
			     rec->length);
	if ((rec->body[0] != 4 && rec->body[0] != 8) ||
	    (rec->body[1] != 3 && rec->body[1] != 4))
		return rfail(r, -EBADMSG, "X86_PV_INFO: width %u, levels %u",
			     rec->body[0], rec->body[1]);
	return 0;
}

static int h_pv_p2m(struct reader *r, const struct pvm_ckpt_record *rec)
{
	if (rec->length < 8 || rec->length % 8)
		return rfail(r, -EBADMSG, "X86_PV_P2M_FRAMES: length %u",
			     rec->length);
	return 0;
}

static int h_pv_vcpu(struct reader *r, const struct pvm_ckpt_record *rec)
{
	if (rec->length < PVM_CKPT_PV_VCPU_HDR_SIZE)
		return rfail(r, -EBADMSG, "%s: length %u too short",
			     pvm_ckpt_record_name(rec->type), rec->length);
	return 0;
}

static int h_shared_info(struct reader *r, const struct pvm_ckpt_record *rec)
{
	if (rec->length != PVM_PAGE_SIZE)
		return rfail(r, -EBADMSG, "SHARED_INFO: length %u, not 4096",
			     rec->length);
	return 0;
}

static int h_sde(struct reader *r, const struct pvm_ckpt_record *rec)
{
	r->seen_sde = true;
	return 0;
}

static int h_policy(struct reader *r, const struct pvm_ckpt_record *rec)
{
	uint32_t unit = rec->type == PVM_CKPT_XC_REC_X86_CPUID_POLICY
				? PVM_CKPT_CPUID_LEAF_SIZE
				: PVM_CKPT_MSR_ENTRY_SIZE;

	if (!rec->length || rec->length % unit)
		return rfail(r, -EBADMSG, "%s: length %u, not a multiple of %u",
			     pvm_ckpt_record_name(rec->type), rec->length,
			     unit);
	return 0;
}

/* ---- pvmig record handlers ---------------------------------------------- */

static int h_meta(struct reader *r, const struct pvm_ckpt_record *rec)
{
	struct pvm_ckpt_meta *m = &r->info->meta;
	uint16_t name_len;

	if (rec->length < 32)
		return rfail(r, -EBADMSG, "PVMIG_META: length %u too short",
			     rec->length);
	memset(m, 0, sizeof(*m));
	m->nr_pages = pvm_get_le64(rec->body);
	m->nr_vcpus = pvm_get_le32(rec->body + 8);
	m->domid = pvm_get_le32(rec->body + 12);
	m->fe_gen = rec->body[16];
	m->checksum_alg = rec->body[17];
	name_len = pvm_get_le16(rec->body + 18);
	if (!name_len || name_len > PVM_CKPT_NAME_MAX + 1 ||
	    32u + name_len > rec->length)
		return rfail(r, -EBADMSG, "PVMIG_META: name length %u",
			     name_len);
	if (strnlen((const char *)rec->body + 32, name_len) != name_len - 1u)
		return rfail(r, -EBADMSG,
			     "PVMIG_META: name not NUL-terminated at its length");
	memcpy(m->name, rec->body + 32, name_len);
	if (m->fe_gen > PVM_CKPT_FE_GEN_LEGACY ||
	    m->checksum_alg > PVM_CKPT_CSUM_SHA256)
		return rfail(r, -EBADMSG,
			     "PVMIG_META: frontend generation %u / checksum %u",
			     m->fe_gen, m->checksum_alg);
	if (!m->nr_pages || m->nr_pages > r->max_pfns)
		return rfail(r, -E2BIG,
			     "PVMIG_META: %llu pages, the domain has %llu",
			     (unsigned long long)m->nr_pages,
			     (unsigned long long)r->max_pfns);
	r->max_pfns = m->nr_pages;
	r->csum_expected = m->checksum_alg;
	r->info->has_meta = true;
	if (r->ops->meta)
		return call(r, r->ops->meta(r->octx, m), "PVMIG_META");
	return 0;
}

static int h_xenstore(struct reader *r, const struct pvm_ckpt_record *rec)
{
	struct pvm_stream_xs_counts counts;
	const char *why;

	if (rec->length < PVM_CKPT_XS_HDR_SIZE)
		return rfail(r, -EBADMSG, "PVMIG_XENSTORE: length %u too short",
			     rec->length);
	if (pvm_get_le32(rec->body) != PVM_CKPT_XS_FORMAT_IMAGE)
		return rfail(r, -EBADMSG, "PVMIG_XENSTORE: unknown format %u",
			     pvm_get_le32(rec->body));
	if (pvm_stream_xs_image_check(rec->body + PVM_CKPT_XS_HDR_SIZE,
				rec->length - PVM_CKPT_XS_HDR_SIZE, &counts,
				&why))
		return rfail(r, -EBADMSG, "PVMIG_XENSTORE: %s", why);
	r->info->xs_nodes += counts.nodes;
	r->info->xs_watches += counts.watches;
	if (r->ops->xenstore)
		return call(r, r->ops->xenstore(r->octx,
						rec->body + PVM_CKPT_XS_HDR_SIZE,
						rec->length - PVM_CKPT_XS_HDR_SIZE),
			    "PVMIG_XENSTORE");
	return 0;
}

/* A NUL-terminated absolute path of @len bytes (NUL included). */
static const char *get_path(struct pvm_cursor *c, uint16_t len)
{
	const uint8_t *p;

	if (len < 2 || len > PVM_CKPT_PATH_MAX || pvm_cursor_bytes(c, len, &p))
		return NULL;
	if (p[0] != '/' || strnlen((const char *)p, len) != len - 1u)
		return NULL;
	return (const char *)p;
}

static void cursor_align(struct pvm_cursor *c)
{
	const uint8_t *pad;
	size_t n = PVM_ALIGN_UP(c->off, PVM_CKPT_REC_ALIGN) - c->off;

	if (!pvm_cursor_bytes(c, n, &pad) && !all_zero(pad, n))
		c->err = -EBADMSG;
}

static int h_device(struct reader *r, const struct pvm_ckpt_record *rec)
{
	struct pvm_ckpt_ring rings[PVM_CKPT_RINGS_MAX];
	struct pvm_ckpt_device d;
	struct pvm_cursor c;
	uint32_t flags32;
	uint16_t fe_len = 0, be_len = 0, res16;

	memset(&d, 0, sizeof(d));
	memset(rings, 0, sizeof(rings));
	pvm_cursor_init(&c, rec->body, rec->length);
	pvm_cursor_u32(&c, &d.dev_type);
	pvm_cursor_u32(&c, &d.devid);
	pvm_cursor_u16(&c, &d.backend_domid);
	pvm_cursor_u8(&c, &d.fe_state);
	pvm_cursor_u8(&c, &d.be_state);
	pvm_cursor_u32(&c, &flags32);
	d.flags = flags32 & PVM_CKPT_DEV_F_MODE_MASK;
	pvm_cursor_u64(&c, &d.features);
	pvm_cursor_u16(&c, &fe_len);
	pvm_cursor_u16(&c, &be_len);
	pvm_cursor_u16(&c, &d.nr_rings);
	pvm_cursor_u16(&c, &res16);
	if (c.err)
		return rfail(r, -EBADMSG, "PVMIG_DEVICE: length %u too short",
			     rec->length);
	if (d.dev_type < PVM_CKPT_DEV_VBD || d.dev_type > 0xffff ||
	    d.fe_state > 8 || d.be_state > 8)
		return rfail(r, -EBADMSG,
			     "PVMIG_DEVICE: type %u, states %u/%u",
			     d.dev_type, d.fe_state, d.be_state);
	if (!d.nr_rings || d.nr_rings > PVM_CKPT_RINGS_MAX)
		return rfail(r, -EBADMSG, "PVMIG_DEVICE: %u rings (1..%u)",
			     d.nr_rings, PVM_CKPT_RINGS_MAX);
	d.fe_path = get_path(&c, fe_len);
	d.be_path = get_path(&c, be_len);
	if (!d.fe_path || !d.be_path)
		return rfail(r, -EBADMSG,
			     "PVMIG_DEVICE: bad xenstore path (lengths %u, %u)",
			     fe_len, be_len);
	cursor_align(&c);
	for (unsigned i = 0; i < d.nr_rings && !c.err; i++) {
		struct pvm_ckpt_ring *g = &rings[i];
		uint32_t res32;

		pvm_cursor_u16(&c, &g->queue);
		pvm_cursor_u8(&c, &g->kind);
		pvm_cursor_u8(&c, &g->order);
		pvm_cursor_u32(&c, &g->evtchn);
		pvm_cursor_u32(&c, &g->req_cons);
		pvm_cursor_u32(&c, &g->rsp_prod_pvt);
		pvm_cursor_u32(&c, &g->req_prod_seen);
		pvm_cursor_u32(&c, &res32);
		if (c.err)
			break;
		if (g->order > PVM_CKPT_RING_ORDER_MAX ||
		    g->kind > PVM_CKPT_RING_CONSOLE ||
		    g->evtchn >= PVM_CKPT_EVTCHN_PORT_MAX)
			return rfail(r, -EBADMSG,
				     "PVMIG_DEVICE: ring %u: order %u, kind %u, port %u",
				     i, g->order, g->kind, g->evtchn);
		for (unsigned j = 0; j < (1u << g->order); j++)
			pvm_cursor_u32(&c, &g->ring_ref[j]);
		cursor_align(&c);
	}
	if (c.err || pvm_cursor_remaining(&c))
		return rfail(r, -EBADMSG,
			     "PVMIG_DEVICE: rings do not match length %u",
			     rec->length);
	d.rings = rings;
	r->info->devices++;
	if (r->ops->device)
		return call(r, r->ops->device(r->octx, &d), "PVMIG_DEVICE");
	return 0;
}

static int h_evtchn(struct reader *r, const struct pvm_ckpt_record *rec)
{
	struct pvm_ckpt_evtchn *v;
	uint32_t count;

	if (rec->length < 8)
		return rfail(r, -EBADMSG, "PVMIG_EVTCHN: length %u too short",
			     rec->length);
	count = pvm_get_le32(rec->body);
	if (count > PVM_CKPT_EVTCHN_PORT_MAX ||
	    (uint64_t)count * 16 + 8 != rec->length)
		return rfail(r, -EBADMSG, "PVMIG_EVTCHN: count %u, length %u",
			     count, rec->length);
	v = scratch(r, (size_t)count * sizeof(*v) + 1);
	if (!v)
		return r->err;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = rec->body + 8 + 16 * (size_t)i;

		v[i].port = pvm_get_le32(e);
		v[i].kind = e[4];
		v[i].flags = e[5];
		v[i].remote_domid = pvm_get_le16(e + 6);
		v[i].remote = pvm_get_le32(e + 8);
		v[i].vcpu = pvm_get_le32(e + 12);
		if (v[i].port >= PVM_CKPT_EVTCHN_PORT_MAX ||
		    v[i].kind < PVM_CKPT_EVTCHN_UNBOUND ||
		    v[i].kind > PVM_CKPT_EVTCHN_PIRQ || (v[i].flags & ~3u))
			return rfail(r, -EBADMSG,
				     "PVMIG_EVTCHN: entry %u: port %u kind %u flags %#x",
				     i, v[i].port, v[i].kind, v[i].flags);
	}
	r->info->evtchns += count;
	if (r->ops->evtchns)
		return call(r, r->ops->evtchns(r->octx, v, count),
			    "PVMIG_EVTCHN");
	return 0;
}

static int h_grant(struct reader *r, const struct pvm_ckpt_record *rec)
{
	struct pvm_ckpt_grant_table gt;
	struct pvm_ckpt_grant *e;
	uint64_t slots;

	if (rec->length < PVM_CKPT_GRANT_HDR_SIZE)
		return rfail(r, -EBADMSG, "PVMIG_GRANT: length %u too short",
			     rec->length);
	gt.version = pvm_get_le32(rec->body);
	gt.nr_frames = pvm_get_le32(rec->body + 4);
	gt.count = pvm_get_le32(rec->body + 8);
	if (gt.version != 1 || !gt.nr_frames ||
	    gt.nr_frames > PVM_CKPT_GRANT_FRAMES_MAX)
		return rfail(r, -EBADMSG, "PVMIG_GRANT: version %u, %u frames",
			     gt.version, gt.nr_frames);
	slots = (uint64_t)gt.nr_frames * PVM_CKPT_GRANT_V1_PER_FRAME;
	if (gt.count > slots ||
	    (uint64_t)gt.count * 16 + PVM_CKPT_GRANT_HDR_SIZE != rec->length)
		return rfail(r, -EBADMSG, "PVMIG_GRANT: count %u, length %u",
			     gt.count, rec->length);
	e = scratch(r, (size_t)gt.count * sizeof(*e) + 1);
	if (!e)
		return r->err;
	for (uint32_t i = 0; i < gt.count; i++) {
		const uint8_t *p = rec->body + 16 + 16 * (size_t)i;

		e[i].ref = pvm_get_le32(p);
		e[i].flags = pvm_get_le16(p + 4);
		e[i].domid = pvm_get_le16(p + 6);
		e[i].frame = pvm_get_le64(p + 8);
		if (e[i].ref >= slots)
			return rfail(r, -EBADMSG,
				     "PVMIG_GRANT: entry %u: ref %u beyond %llu",
				     i, e[i].ref, (unsigned long long)slots);
	}
	gt.entries = e;
	r->info->grants += gt.count;
	if (r->ops->grants)
		return call(r, r->ops->grants(r->octx, &gt), "PVMIG_GRANT");
	return 0;
}

/*
 * CHECKSUM is handled in read_libxc(), which holds the digest of the bytes
 * before this record's header; this only checks the shape.
 */
static int h_checksum(struct reader *r, const struct pvm_ckpt_record *rec)
{
	if (rec->length != sizeof(struct pvm_ckpt_wire_checksum) ||
	    pvm_get_le32(rec->body) != PVM_CKPT_CSUM_SHA256 ||
	    pvm_get_le32(rec->body + 4) != PVM_CKPT_DIGEST_LEN)
		return rfail(r, -EBADMSG,
			     "PVMIG_CHECKSUM: length %u, algorithm %u",
			     rec->length,
			     rec->length >= 4 ? pvm_get_le32(rec->body) : 0);
	return 0;
}

/* ---- dispatch tables ---------------------------------------------------- */

#define BOTH (R_HVM | R_PV)

static const struct rec_desc xc_table[PVM_CKPT_XC_REC_NR] = {
	[PVM_CKPT_XC_REC_END] = { h_nop, BOTH | R_EMPTY },
	[PVM_CKPT_XC_REC_PAGE_DATA] = { h_page_data, BOTH | R_DYNAMIC },
	[PVM_CKPT_XC_REC_X86_PV_INFO] = { h_pv_info, R_PV | R_STATIC | R_ONCE },
	[PVM_CKPT_XC_REC_X86_PV_P2M_FRAMES] = { h_pv_p2m, R_PV | R_DYNAMIC },
	[PVM_CKPT_XC_REC_X86_PV_VCPU_BASIC] = { h_pv_vcpu, R_PV | R_DYNAMIC },
	[PVM_CKPT_XC_REC_X86_PV_VCPU_EXTENDED] = { h_pv_vcpu, R_PV | R_DYNAMIC },
	[PVM_CKPT_XC_REC_X86_PV_VCPU_XSAVE] = { h_pv_vcpu, R_PV | R_DYNAMIC },
	[PVM_CKPT_XC_REC_SHARED_INFO] = { h_shared_info, R_PV | R_DYNAMIC },
	[PVM_CKPT_XC_REC_X86_TSC_INFO] = { h_tsc_info, BOTH | R_DYNAMIC },
	[PVM_CKPT_XC_REC_HVM_CONTEXT] = { h_hvm_context, R_HVM | R_DYNAMIC },
	[PVM_CKPT_XC_REC_HVM_PARAMS] = { h_hvm_params, R_HVM | R_DYNAMIC },
	[PVM_CKPT_XC_REC_TOOLSTACK] = { h_nop, BOTH | R_NOTSUP },
	[PVM_CKPT_XC_REC_X86_PV_VCPU_MSRS] = { h_pv_vcpu, R_PV | R_DYNAMIC },
	[PVM_CKPT_XC_REC_VERIFY] = { h_nop, BOTH | R_NOTSUP },
	[PVM_CKPT_XC_REC_CHECKPOINT] = { h_nop, BOTH | R_NOTSUP },
	[PVM_CKPT_XC_REC_CHECKPOINT_DIRTY_PFN_LIST] = { h_nop, BOTH | R_NOTSUP },
	[PVM_CKPT_XC_REC_STATIC_DATA_END] = { h_sde, BOTH | R_V3 | R_ONCE |
							     R_EMPTY },
	[PVM_CKPT_XC_REC_X86_CPUID_POLICY] = { h_policy, BOTH | R_V3 | R_STATIC },
	[PVM_CKPT_XC_REC_X86_MSR_POLICY] = { h_policy, BOTH | R_V3 | R_STATIC },
};

static const struct rec_desc pvm_table[PVM_CKPT_PVM_REC_NR] = {
	[PVM_CKPT_REC_META - PVM_CKPT_PVM_REC_BASE] = { h_meta, BOTH | R_STATIC |
								 R_ONCE },
	[PVM_CKPT_REC_XENSTORE - PVM_CKPT_PVM_REC_BASE] = { h_xenstore,
							    BOTH | R_DYNAMIC },
	[PVM_CKPT_REC_DEVICE - PVM_CKPT_PVM_REC_BASE] = { h_device,
							  BOTH | R_DYNAMIC },
	[PVM_CKPT_REC_EVTCHN - PVM_CKPT_PVM_REC_BASE] = { h_evtchn,
							  BOTH | R_DYNAMIC },
	[PVM_CKPT_REC_GRANT - PVM_CKPT_PVM_REC_BASE] = { h_grant,
							 BOTH | R_DYNAMIC },
	[PVM_CKPT_REC_CHECKSUM - PVM_CKPT_PVM_REC_BASE] = { h_checksum,
							    BOTH | R_ONCE },
};

/* The table entry for @type and its index in seen_once, or NULL. */
static const struct rec_desc *lookup(uint32_t type, size_t *slot_out)
{
	const struct rec_desc *d = NULL;

	if (type < PVM_CKPT_XC_REC_NR) {
		d = &xc_table[type];
		*slot_out = type;
	} else if (type - PVM_CKPT_PVM_REC_BASE < PVM_CKPT_PVM_REC_NR) {
		d = &pvm_table[type - PVM_CKPT_PVM_REC_BASE];
		*slot_out = PVM_CKPT_XC_REC_NR + (type - PVM_CKPT_PVM_REC_BASE);
	}
	return d && d->handle ? d : NULL;
}

/* ---- libxc part --------------------------------------------------------- */

/* Order and shape rules that hold for every record of a type. */
static int check_rules(struct reader *r, const struct rec_desc *d,
		       size_t slot, const struct pvm_ckpt_record *rec)
{
	const char *name = pvm_ckpt_record_name(rec->type);
	uint32_t want = r->dom_type == PVM_CKPT_DOM_X86_PV ? R_PV : R_HVM;

	if (d->flags & R_NOTSUP)
		return rfail(r, -ENOTSUP,
			     "%s record: valid, but pvmig cannot restore it",
			     name);
	if (!(d->flags & want))
		return rfail(r, -EBADMSG, "%s record in an x86 %s stream",
			     name, want == R_PV ? "PV" : "HVM");
	if ((d->flags & R_EMPTY) && rec->length)
		return rfail(r, -EBADMSG, "%s record with length %u, not 0",
			     name, rec->length);
	if ((d->flags & R_V3) && r->version < 3)
		return rfail(r, -EBADMSG, "%s record in a v%u stream", name,
			     r->version);
	if ((d->flags & R_ONCE) && r->seen_once[slot]++)
		return rfail(r, -EPROTO, "second %s record", name);
	if (r->seen_checksum && rec->type != PVM_CKPT_XC_REC_END)
		return rfail(r, -EPROTO, "%s record after PVMIG_CHECKSUM",
			     name);
	if (d->flags & R_DYNAMIC && !r->seen_sde) {
		/* v2 has no STATIC_DATA_END: the first memory or register
		 * record stands for it (libxc spec, "v3 compat with v2"). */
		if (r->version >= 3)
			return rfail(r, -EPROTO,
				     "%s record before STATIC_DATA_END", name);
		r->seen_sde = true;
	}
	if ((d->flags & R_STATIC) && r->seen_sde)
		return rfail(r, -EPROTO, "%s record after STATIC_DATA_END",
			     name);
	return 0;
}

static int check_checksum(struct reader *r, const uint8_t *digest,
			  uint64_t covered)
{
	const uint8_t *body = r->buf;

	if (pvm_get_le64(body + 8) != covered ||
	    memcmp(body + 16, digest, PVM_CKPT_DIGEST_LEN) != 0) {
		r->info->checksum = PVM_CKPT_CSUM_BAD;
		return rfail(r, -EBADMSG,
			     "PVMIG_CHECKSUM mismatch: the stream is corrupt "
			     "(%llu bytes covered, record says %llu)",
			     (unsigned long long)covered,
			     (unsigned long long)pvm_get_le64(body + 8));
	}
	r->info->checksum = PVM_CKPT_CSUM_OK;
	r->seen_checksum = true;
	return 0;
}

static int read_libxc_headers(struct reader *r, const uint8_t first8[8])
{
	uint8_t ih[24], dh[16];
	uint32_t version;
	uint16_t options, page_shift;

	memcpy(ih, first8, 8);
	if (pull(r, ih + 8, sizeof(ih) - 8, "libxc image header"))
		return r->err;
	if (get_be64(ih) != PVM_CKPT_XC_MARKER)
		return rfail(r, -EBADMSG,
			     "libxc image header: marker is not all ones "
			     "(a legacy pre-4.5 image or not a Xen stream)");
	if (get_be32(ih + 8) != PVM_CKPT_XC_ID)
		return rfail(r, -EBADMSG,
			     "libxc image header: id %#x is not \"XENF\"",
			     get_be32(ih + 8));
	version = get_be32(ih + 12);
	options = get_be16(ih + 16);
	if (version < PVM_CKPT_XC_VERSION_MIN || version > PVM_CKPT_XC_VERSION)
		return rfail(r, -ENOTSUP,
			     "libxc image version %u (this reader: 2 and 3)",
			     version);
	if (options & PVM_CKPT_XC_OPT_BIG_ENDIAN)
		return rfail(r, -ENOTSUP, "big-endian libxc stream");
	if (options & ~PVM_CKPT_XC_OPT_BIG_ENDIAN)
		return rfail(r, -EBADMSG,
			     "libxc image header: reserved option bits %#x",
			     options);
	r->version = version;
	r->info->libxc_version = version;

	if (pull(r, dh, sizeof(dh), "libxc domain header"))
		return r->err;
	r->dom_type = pvm_get_le32(dh);
	page_shift = pvm_get_le16(dh + 4);
	r->info->domain_type = r->dom_type;
	r->info->xen_major = pvm_get_le32(dh + 8);
	r->info->xen_minor = pvm_get_le32(dh + 12);
	if (r->dom_type != PVM_CKPT_DOM_X86_HVM &&
	    !(r->dom_type == PVM_CKPT_DOM_X86_PV &&
	      (r->cfg->flags & PVM_CKPT_READ_ALLOW_PV)))
		return rfail(r, -ENOTSUP,
			     "domain header: guest type %u (pvmig restores x86 HVM, 2)",
			     r->dom_type);
	if (page_shift != PVM_PAGE_SHIFT)
		return rfail(r, -EBADMSG, "domain header: page shift %u, not 12",
			     page_shift);
	return 0;
}

static int read_libxc(struct reader *r, const uint8_t first8[8])
{
	struct pvm_ckpt_record rec;
	const struct rec_desc *d;
	uint8_t hdr[8], digest[PVM_CKPT_DIGEST_LEN];
	uint64_t covered;
	size_t slot = 0;
	const char *name;

	r->where = r->info->bytes - 8;
	if (read_libxc_headers(r, first8))
		return r->err;
	for (;;) {
		/* The header is hashed only once we know it is not the
		 * CHECKSUM record's, whose digest stops just before it. */
		r->hashing = false;
		r->where = r->info->bytes;
		pull(r, hdr, sizeof(hdr), "libxc record header");
		r->hashing = true;
		if (r->err)
			return r->err;
		rec.type = pvm_get_le32(hdr);
		rec.length = pvm_get_le32(hdr + 4);
		covered = r->hashed;
		if (rec.type == PVM_CKPT_REC_CHECKSUM &&
		    pvm_ckpt_digest_peek(&r->digest, digest))
			return rfail(r, -EIO, "cannot compute the digest");
		pvm_ckpt_digest_update(&r->digest, hdr, sizeof(hdr));
		r->hashed += sizeof(hdr);

		name = pvm_ckpt_record_name(rec.type);
		if (rec.length > r->max_record)
			return rfail(r, -E2BIG,
				     "%s record (%#x): length %u over the limit %u",
				     name, rec.type, rec.length, r->max_record);
		d = lookup(rec.type, &slot);
		if (!d && !(rec.type & PVM_CKPT_REC_OPTIONAL))
			return rfail(r, -ENOTSUP,
				     "unknown mandatory libxc record type %#x "
				     "(length %u): cannot restore this stream",
				     rec.type, rec.length);
		if (read_body(r, rec.length, name))
			return r->err;
		count_type(r, rec.type, rec.length);
		if (!d) {
			if (r->seen_checksum)
				return rfail(r, -EPROTO,
					     "optional record %#x after PVMIG_CHECKSUM",
					     rec.type);
			pvm_info("checkpoint: skipping optional record %#x",
				 rec.type);
			r->info->optional_skipped++;
			continue;
		}
		rec.body = r->buf;
		if (check_rules(r, d, slot, &rec) || d->handle(r, &rec))
			return r->err;
		if (rec.type == PVM_CKPT_REC_CHECKSUM &&
		    check_checksum(r, digest, covered))
			return r->err;
		if (r->ops->record &&
		    call(r, r->ops->record(r->octx, &rec), name))
			return r->err;
		if (rec.type == PVM_CKPT_XC_REC_END)
			break;
	}
	if (!r->seen_sde)
		return rfail(r, -EBADMSG, "END before STATIC_DATA_END");
	if (!r->seen_checksum &&
	    (r->csum_expected ||
	     (r->cfg->flags & PVM_CKPT_READ_REQUIRE_CHECKSUM)))
		return rfail(r, -EBADMSG,
			     "PVMIG_CHECKSUM record missing before END");
	return 0;
}

/* ---- libxl part --------------------------------------------------------- */

static int check_emulator(struct reader *r, uint32_t type, uint32_t len)
{
	const uint8_t *p = r->buf + 8;
	size_t n = len - 8, strings = 0;

	if (type != PVM_CKPT_XL_REC_EMULATOR_XENSTORE_DATA || !n)
		return 0;
	/* (key, value) pairs of NUL-terminated strings. */
	if (p[n - 1] != 0)
		return rfail(r, -EBADMSG,
			     "EMULATOR_XENSTORE_DATA: not NUL-terminated");
	for (size_t i = 0; i < n; i++)
		strings += p[i] == 0;
	if (strings % 2)
		return rfail(r, -EBADMSG,
			     "EMULATOR_XENSTORE_DATA: odd number of strings");
	return 0;
}

static int read_libxl(struct reader *r)
{
	uint8_t hdr[8];
	uint32_t options, type, len;
	bool seen_libxc = false;

	if (pull(r, hdr, sizeof(hdr), "libxl header"))
		return r->err;
	if (get_be32(hdr) != PVM_CKPT_XL_VERSION)
		return rfail(r, -ENOTSUP, "libxl header: version %u, not 2",
			     get_be32(hdr));
	options = get_be32(hdr + 4);
	if (options & PVM_CKPT_XL_OPT_BIG_ENDIAN)
		return rfail(r, -ENOTSUP, "big-endian libxl stream");
	if (options & ~(PVM_CKPT_XL_OPT_BIG_ENDIAN | PVM_CKPT_XL_OPT_LEGACY))
		return rfail(r, -EBADMSG,
			     "libxl header: reserved option bits %#x", options);
	for (;;) {
		r->where = r->info->bytes;
		if (pull(r, hdr, sizeof(hdr), "libxl record header"))
			return r->err;
		type = pvm_get_le32(hdr);
		len = pvm_get_le32(hdr + 4);
		if (len > r->max_record)
			return rfail(r, -E2BIG,
				     "libxl %s record: length %u over the limit %u",
				     pvm_ckpt_libxl_record_name(type), len,
				     r->max_record);
		switch (type) {
		case PVM_CKPT_XL_REC_END:
		case PVM_CKPT_XL_REC_LIBXC_CONTEXT:
			if (len)
				return rfail(r, -EBADMSG,
					     "libxl %s record with length %u",
					     pvm_ckpt_libxl_record_name(type),
					     len);
			if (type == PVM_CKPT_XL_REC_END) {
				if (!seen_libxc)
					return rfail(r, -EBADMSG,
						     "libxl END without a LIBXC_CONTEXT");
				return 0;
			}
			if (seen_libxc)
				return rfail(r, -EPROTO,
					     "second LIBXC_CONTEXT record");
			seen_libxc = true;
			if (pull(r, hdr, sizeof(hdr), "libxc image header") ||
			    read_libxc(r, hdr))
				return r->err;
			break;
		case PVM_CKPT_XL_REC_EMULATOR_XENSTORE_DATA:
		case PVM_CKPT_XL_REC_EMULATOR_CONTEXT:
			if (len < 8)
				return rfail(r, -EBADMSG,
					     "libxl %s record: length %u too short",
					     pvm_ckpt_libxl_record_name(type),
					     len);
			if (read_body(r, len, "libxl emulator record") ||
			    check_emulator(r, type, len))
				return r->err;
			r->info->emulator_records++;
			if (r->ops->emulator &&
			    call(r, r->ops->emulator(r->octx, type,
						     pvm_get_le32(r->buf),
						     pvm_get_le32(r->buf + 4),
						     r->buf + 8, len - 8),
				 "libxl emulator record"))
				return r->err;
			break;
		case PVM_CKPT_XL_REC_CHECKPOINT_END:
		case PVM_CKPT_XL_REC_CHECKPOINT_STATE:
			return rfail(r, -ENOTSUP,
				     "libxl %s: checkpointed (Remus/COLO) streams "
				     "are not supported",
				     pvm_ckpt_libxl_record_name(type));
		default:
			if (!(type & PVM_CKPT_REC_OPTIONAL))
				return rfail(r, -ENOTSUP,
					     "unknown mandatory libxl record type %#x",
					     type);
			if (discard(r, rec_padded(len), "libxl optional record"))
				return r->err;
			r->info->optional_skipped++;
			break;
		}
	}
}

/* Skips an xl save-file header; leaves the next 8 bytes in @next8. */
static int skip_xl_header(struct reader *r, const uint8_t first8[8],
			  uint8_t next8[8])
{
	uint8_t h[PVM_CKPT_XL_HDR_SIZE];
	struct pvm_ckpt_xlhdr x;
	char msg[160];
	int rc;

	memcpy(h, first8, 8);
	if (pull(r, h + 8, sizeof(h) - 8, "xl save-file header"))
		return r->err;
	rc = pvm_ckpt_xlhdr_decode(h, sizeof(h), &x, msg, sizeof(msg));
	if (rc)
		return rfail(r, rc, "%s", msg);
	if (discard(r, x.optlen, "xl option data"))
		return r->err;
	r->info->xl_header = true;
	return pull(r, next8, 8, "libxl header");
}

static int detect_and_read(struct reader *r)
{
	uint8_t first8[8];
	int rc;

	if (pull(r, first8, sizeof(first8), "stream header"))
		return r->err;
	if (memcmp(first8, PVM_CKPT_XL_MAGIC, 8) == 0) {
		uint8_t next8[8];

		if (skip_xl_header(r, first8, next8))
			return r->err;
		memcpy(first8, next8, 8);
	}
	/* The digest covers the stream from here. */
	rc = pvm_ckpt_digest_start(&r->digest);
	if (rc)
		return rfail(r, rc, "cannot start the digest");
	r->hashing = true;
	pvm_ckpt_digest_update(&r->digest, first8, sizeof(first8));
	r->hashed = sizeof(first8);
	if (get_be64(first8) == PVM_CKPT_XL_IDENT) {
		r->info->libxl = true;
		return read_libxl(r);
	}
	if (get_be64(first8) == PVM_CKPT_XC_MARKER)
		return read_libxc(r, first8);
	return rfail(r, -EBADMSG,
		     "not a Xen/pvmig stream: starts %02x %02x %02x %02x "
		     "%02x %02x %02x %02x, not \"LibxlFmt\" nor the libxc "
		     "marker (or a legacy pre-4.5 image)",
		     first8[0], first8[1], first8[2], first8[3], first8[4],
		     first8[5], first8[6], first8[7]);
}

int pvm_ckpt_read(const struct pvm_ckpt_read_cfg *cfg,
		  struct pvm_ckpt_info *info_out)
{
	static const struct pvm_ckpt_read_ops no_ops;
	struct pvm_ckpt_info local;
	struct reader r;
	int rc;

	memset(&r, 0, sizeof(r));
	r.info = info_out ? info_out : &local;
	memset(r.info, 0, sizeof(*r.info));
	if (!cfg || !cfg->read || !cfg->max_pfns ||
	    cfg->max_pfns > PVM_CKPT_PFN_MASK + 1 ||
	    cfg->max_record > PVM_CKPT_REC_LENGTH_XEN_MAX ||
	    (cfg->flags & ~(PVM_CKPT_READ_REQUIRE_CHECKSUM |
			    PVM_CKPT_READ_ALLOW_PV))) {
		r.info->error = -EINVAL;
		snprintf(r.info->error_msg, sizeof(r.info->error_msg),
			 "bad reader configuration");
		return -EINVAL;
	}
	r.cfg = cfg;
	r.ops = cfg->ops ? cfg->ops : &no_ops;
	r.octx = cfg->ops_ctx;
	r.max_pfns = cfg->max_pfns;
	r.max_record = cfg->max_record ? cfg->max_record
				       : PVM_CKPT_RECORD_DEFAULT_MAX;
	pvm_ckpt_digest_init(&r.digest);

	rc = detect_and_read(&r);

	pvm_ckpt_digest_dispose(&r.digest);
	free(r.buf);
	free(r.scratch);
	r.info->error = rc;
	return rc;
}

int pvm_ckpt_verify(pvm_ckpt_read_fn read, void *read_ctx, uint64_t max_pfns,
		    struct pvm_ckpt_info *info_out)
{
	struct pvm_ckpt_read_cfg cfg = {
		.read = read,
		.read_ctx = read_ctx,
		.max_pfns = max_pfns ? max_pfns : (1ull << 28),
		.max_record = PVM_CKPT_REC_LENGTH_XEN_MAX,
		.flags = PVM_CKPT_READ_ALLOW_PV,
	};

	return pvm_ckpt_read(&cfg, info_out);
}
