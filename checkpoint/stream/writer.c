/*
 * The stream writer. Records are assembled in one capped pvm_buf and handed
 * to the caller's sink; page contents go to the sink straight from the
 * caller's mapping, never copied. Every byte handed to the sink also feeds
 * the running SHA-256 that the CHECKSUM record carries at the end.
 *
 * States (one function, set_state(), moves between them):
 *
 *   W_NEW --write_begin()--> W_STATIC --first body record--> W_BODY
 *                                      (enter_body() writes
 *                                       STATIC_DATA_END)
 *   W_BODY --write_finish()--> W_DONE
 *
 *   W_NEW     nothing written
 *   W_STATIC  headers and META written; write_static() allowed
 *   W_BODY    STATIC_DATA_END written; memory/register/device records allowed
 *   W_DONE    both END records written; nothing more may be written
 *
 * A write in the wrong state is our caller's bug: -EPROTO, sticky.
 */
#include "checkpoint/stream/internal.h"

#include <stdlib.h>
#include <string.h>

enum wstate { W_NEW, W_STATIC, W_BODY, W_DONE };

struct pvm_ckpt_writer {
	struct pvm_ckpt_write_cfg cfg;
	enum wstate state;
	int err;               /* first error, sticky */
	uint64_t off;          /* bytes handed to the sink */
	uint64_t max_pfns;     /* from META; 0 before write_begin */
	struct pvm_ckpt_digest digest;
	struct pvm_buf rec;    /* the record being assembled, owned */
};

static void set_state(struct pvm_ckpt_writer *w, enum wstate from,
		      enum wstate to)
{
	if (w->state != from) {
		pvm_err("checkpoint: writer in state %d, expected %d",
			(int)w->state, (int)from);
		w->err = -EPROTO;
		return;
	}
	w->state = to;
}

static int fail(struct pvm_ckpt_writer *w, int rc, const char *what)
{
	if (!w->err) {
		pvm_err("checkpoint: write %s: %s", what, strerror(-rc));
		w->err = rc;
	}
	return w->err;
}

/* Hands @n bytes to the sink and the digest. */
static void emit(struct pvm_ckpt_writer *w, const void *p, size_t n)
{
	int rc;

	if (w->err || !n)
		return;
	rc = w->cfg.write(w->cfg.write_ctx, p, n);
	if (rc) {
		fail(w, rc < 0 ? rc : -EIO, "sink");
		return;
	}
	pvm_ckpt_digest_update(&w->digest, p, n);
	w->off += n;
}

static void put_empty_record(struct pvm_ckpt_writer *w, uint32_t type);

/* Closes the static section the first time a body record is written. */
static void enter_body(struct pvm_ckpt_writer *w)
{
	if (w->err || w->state != W_STATIC)
		return;
	put_empty_record(w, PVM_CKPT_XC_REC_STATIC_DATA_END);
	set_state(w, W_STATIC, W_BODY);
}

static bool body_ok(struct pvm_ckpt_writer *w, const char *what)
{
	enter_body(w);
	if (w->err)
		return false;
	if (w->state != W_BODY) {
		pvm_err("checkpoint: %s written outside the record section",
			what);
		w->err = -EPROTO;
		return false;
	}
	return true;
}

/* Opens a record in w->rec: header with a length patched by rec_end(). */
static void rec_begin(struct pvm_ckpt_writer *w, uint32_t type)
{
	pvm_buf_reset(&w->rec);
	pvm_buf_put_u32(&w->rec, type);
	pvm_buf_put_u32(&w->rec, 0);
}

/*
 * Closes the record: patches its length (@extra bytes the caller streams
 * after w->rec, already a multiple of 8), pads and emits w->rec.
 */
static void rec_end(struct pvm_ckpt_writer *w, uint64_t extra)
{
	uint64_t len;

	if (w->rec.err) {
		fail(w, w->rec.err, "record");
		return;
	}
	len = w->rec.len - PVM_CKPT_REC_HDR_SIZE + extra;
	if (len > PVM_CKPT_REC_LENGTH_XEN_MAX) {
		fail(w, -E2BIG, "record over Xen's 128 MiB limit");
		return;
	}
	pvm_put_le32(w->rec.data + 4, (uint32_t)len);
	pvm_buf_pad(&w->rec, PVM_CKPT_REC_ALIGN);
	if (w->rec.err) {
		fail(w, w->rec.err, "record");
		return;
	}
	emit(w, w->rec.data, w->rec.len);
}

static void put_empty_record(struct pvm_ckpt_writer *w, uint32_t type)
{
	rec_begin(w, type);
	rec_end(w, 0);
}

int pvm_ckpt_writer_new(const struct pvm_ckpt_write_cfg *cfg,
			struct pvm_ckpt_writer **w_out)
{
	struct pvm_ckpt_writer *w;
	int rc;

	*w_out = NULL;
	if (!cfg || !cfg->write || (cfg->flags & ~PVM_CKPT_WRITE_XEN_ONLY))
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cfg = *cfg;
	if (!w->cfg.xen_major) {
		w->cfg.xen_major = 4;
		w->cfg.xen_minor = 17;
	}
	w->state = W_NEW;
	pvm_ckpt_digest_init(&w->digest);
	/* A record's body plus header and padding, never more. */
	pvm_buf_init(&w->rec, PVM_CKPT_REC_LENGTH_XEN_MAX + 16);
	rc = pvm_ckpt_digest_start(&w->digest);
	if (rc) {
		pvm_ckpt_writer_free(w);
		return rc;
	}
	*w_out = w;
	return 0;
}

void pvm_ckpt_writer_free(struct pvm_ckpt_writer *w)
{
	if (!w)
		return;
	pvm_ckpt_digest_dispose(&w->digest);
	pvm_buf_dispose(&w->rec);
	free(w);
}

int pvm_ckpt_writer_error(const struct pvm_ckpt_writer *w)
{
	return w->err;
}

uint64_t pvm_ckpt_writer_offset(const struct pvm_ckpt_writer *w)
{
	return w->off;
}

int pvm_ckpt_write_begin(struct pvm_ckpt_writer *w,
			 const struct pvm_ckpt_meta *meta)
{
	uint8_t hdr[16 + 8 + 24 + 16];
	size_t name_len;
	bool xen_only = w->cfg.flags & PVM_CKPT_WRITE_XEN_ONLY;

	if (w->err)
		return w->err;
	if (!meta || !meta->nr_pages || meta->nr_pages > PVM_CKPT_PFN_MASK + 1)
		return fail(w, -EINVAL, "begin: META nr_pages");
	name_len = strnlen(meta->name, sizeof(meta->name));
	if (name_len > PVM_CKPT_NAME_MAX)
		return fail(w, -EINVAL, "begin: META name too long");
	if (meta->fe_gen > PVM_CKPT_FE_GEN_LEGACY)
		return fail(w, -EINVAL, "begin: META frontend generation");
	set_state(w, W_NEW, W_STATIC);
	if (w->err)
		return w->err;
	w->max_pfns = meta->nr_pages;

	/* libxl header, big-endian */
	put_be64(hdr, PVM_CKPT_XL_IDENT);
	put_be32(hdr + 8, PVM_CKPT_XL_VERSION);
	put_be32(hdr + 12, 0); /* little-endian, not legacy */
	/* libxl LIBXC_CONTEXT record, empty */
	pvm_put_le32(hdr + 16, PVM_CKPT_XL_REC_LIBXC_CONTEXT);
	pvm_put_le32(hdr + 20, 0);
	/* libxc image header, big-endian */
	put_be64(hdr + 24, PVM_CKPT_XC_MARKER);
	put_be32(hdr + 32, PVM_CKPT_XC_ID);
	put_be32(hdr + 36, PVM_CKPT_XC_VERSION);
	put_be16(hdr + 40, 0); /* options: little-endian */
	put_be16(hdr + 42, 0);
	put_be32(hdr + 44, 0);
	/* libxc domain header */
	pvm_put_le32(hdr + 48, PVM_CKPT_DOM_X86_HVM);
	pvm_put_le16(hdr + 52, PVM_PAGE_SHIFT);
	pvm_put_le16(hdr + 54, 0);
	pvm_put_le32(hdr + 56, w->cfg.xen_major);
	pvm_put_le32(hdr + 60, w->cfg.xen_minor);
	emit(w, hdr, sizeof(hdr));

	if (!xen_only) {
		rec_begin(w, PVM_CKPT_REC_META);
		pvm_buf_put_u64(&w->rec, meta->nr_pages);
		pvm_buf_put_u32(&w->rec, meta->nr_vcpus);
		pvm_buf_put_u32(&w->rec, meta->domid);
		pvm_buf_put_u8(&w->rec, meta->fe_gen);
		pvm_buf_put_u8(&w->rec, PVM_CKPT_CSUM_SHA256);
		pvm_buf_put_u16(&w->rec, (uint16_t)(name_len + 1));
		pvm_buf_put_u32(&w->rec, 0);
		pvm_buf_put_u64(&w->rec, 0);
		pvm_buf_put_bytes(&w->rec, meta->name, name_len);
		pvm_buf_put_u8(&w->rec, 0);
		rec_end(w, 0);
	}
	return w->err;
}

int pvm_ckpt_write_static(struct pvm_ckpt_writer *w, uint32_t type,
			  const void *body, size_t len)
{
	size_t unit = type == PVM_CKPT_XC_REC_X86_CPUID_POLICY
			      ? PVM_CKPT_CPUID_LEAF_SIZE
			      : PVM_CKPT_MSR_ENTRY_SIZE;

	if (w->err)
		return w->err;
	if (w->state != W_STATIC) {
		pvm_err("checkpoint: %s after the static section",
			pvm_ckpt_record_name(type));
		w->err = -EPROTO;
		return w->err;
	}
	if ((type != PVM_CKPT_XC_REC_X86_CPUID_POLICY &&
	     type != PVM_CKPT_XC_REC_X86_MSR_POLICY) ||
	    !len || len % unit || !body ||
	    len > PVM_CKPT_REC_LENGTH_XEN_MAX)
		return fail(w, -EINVAL, "static record");
	rec_begin(w, type);
	pvm_buf_put_bytes(&w->rec, body, len);
	rec_end(w, 0);
	return w->err;
}

static bool type_has_data(unsigned t)
{
	return t < PVM_CKPT_PFN_BROKEN;
}

static bool type_valid_hvm(unsigned t)
{
	return t == PVM_CKPT_PFN_NOTAB || t >= PVM_CKPT_PFN_BROKEN;
}

int pvm_ckpt_write_pages(struct pvm_ckpt_writer *w, const uint64_t *pfns,
			 const uint8_t *types, const void *const *data,
			 size_t n)
{
	uint64_t ndata = 0;
	size_t i;

	if (!body_ok(w, "PAGE_DATA"))
		return w->err;
	if (!n || n > PVM_CKPT_PAGE_BATCH_MAX || !pfns || !data)
		return fail(w, -EINVAL, "PAGE_DATA: batch size");
	for (i = 0; i < n; i++) {
		unsigned t = types ? types[i] : PVM_CKPT_PFN_NOTAB;

		if (pfns[i] >= w->max_pfns || !type_valid_hvm(t))
			return fail(w, -EINVAL, "PAGE_DATA: pfn or type");
		if (type_has_data(t)) {
			if (!data[i])
				return fail(w, -EINVAL, "PAGE_DATA: no data");
			ndata++;
		}
	}
	rec_begin(w, PVM_CKPT_XC_REC_PAGE_DATA);
	pvm_buf_put_u32(&w->rec, (uint32_t)n);
	pvm_buf_put_u32(&w->rec, 0);
	for (i = 0; i < n; i++) {
		uint64_t t = types ? types[i] : PVM_CKPT_PFN_NOTAB;

		pvm_buf_put_u64(&w->rec,
				pfns[i] | (t << PVM_CKPT_PFN_TYPE_SHIFT));
	}
	rec_end(w, ndata * PVM_PAGE_SIZE);
	for (i = 0; i < n && !w->err; i++)
		if (type_has_data(types ? types[i] : PVM_CKPT_PFN_NOTAB))
			emit(w, data[i], PVM_PAGE_SIZE);
	return w->err;
}

int pvm_ckpt_write_tsc_info(struct pvm_ckpt_writer *w,
			    const struct pvm_ckpt_tsc_info *tsc)
{
	if (!body_ok(w, "X86_TSC_INFO"))
		return w->err;
	rec_begin(w, PVM_CKPT_XC_REC_X86_TSC_INFO);
	pvm_buf_put_u32(&w->rec, tsc->mode);
	pvm_buf_put_u32(&w->rec, tsc->khz);
	pvm_buf_put_u64(&w->rec, tsc->nsec);
	pvm_buf_put_u32(&w->rec, tsc->incarnation);
	pvm_buf_put_u32(&w->rec, 0);
	rec_end(w, 0);
	return w->err;
}

int pvm_ckpt_write_hvm_params(struct pvm_ckpt_writer *w,
			      const struct pvm_ckpt_hvm_param *p, size_t n)
{
	if (!body_ok(w, "HVM_PARAMS"))
		return w->err;
	if (n > (PVM_CKPT_REC_LENGTH_XEN_MAX - 8) / 16 || (n && !p))
		return fail(w, -EINVAL, "HVM_PARAMS count");
	rec_begin(w, PVM_CKPT_XC_REC_HVM_PARAMS);
	pvm_buf_put_u32(&w->rec, (uint32_t)n);
	pvm_buf_put_u32(&w->rec, 0);
	for (size_t i = 0; i < n; i++) {
		pvm_buf_put_u64(&w->rec, p[i].index);
		pvm_buf_put_u64(&w->rec, p[i].value);
	}
	rec_end(w, 0);
	return w->err;
}

static int put_blob_record(struct pvm_ckpt_writer *w, uint32_t type,
			   const void *head, size_t head_len, const void *blob,
			   size_t len)
{
	if (!body_ok(w, pvm_ckpt_record_name(type)))
		return w->err;
	if ((len && !blob) || len > PVM_CKPT_REC_LENGTH_XEN_MAX - head_len)
		return fail(w, -EINVAL, pvm_ckpt_record_name(type));
	rec_begin(w, type);
	pvm_buf_put_bytes(&w->rec, head, head_len);
	pvm_buf_put_bytes(&w->rec, blob, len);
	rec_end(w, 0);
	return w->err;
}

int pvm_ckpt_write_hvm_context(struct pvm_ckpt_writer *w, const void *blob,
			       size_t len)
{
	if (!len)
		return fail(w, -EINVAL, "HVM_CONTEXT: empty");
	return put_blob_record(w, PVM_CKPT_XC_REC_HVM_CONTEXT, NULL, 0, blob,
			       len);
}

int pvm_ckpt_write_xenstore(struct pvm_ckpt_writer *w, const void *image,
			    size_t len)
{
	uint8_t head[PVM_CKPT_XS_HDR_SIZE];
	const char *why;

	if (w->err)
		return w->err;
	if (!image || pvm_stream_xs_image_check(image, len, NULL, &why)) {
		pvm_err("checkpoint: PVMIG_XENSTORE: %s",
			image ? why : "no image");
		return fail(w, -EINVAL, "PVMIG_XENSTORE");
	}
	pvm_put_le32(head, PVM_CKPT_XS_FORMAT_IMAGE);
	pvm_put_le32(head + 4, 0);
	return put_blob_record(w, PVM_CKPT_REC_XENSTORE, head, sizeof(head),
			       image, len);
}

static bool path_ok(const char *p)
{
	return p && p[0] == '/' && strnlen(p, PVM_CKPT_PATH_MAX) < PVM_CKPT_PATH_MAX;
}

int pvm_ckpt_write_device(struct pvm_ckpt_writer *w,
			  const struct pvm_ckpt_device *d)
{
	size_t fe_len, be_len;

	if (!body_ok(w, "PVMIG_DEVICE"))
		return w->err;
	if (!d || !path_ok(d->fe_path) || !path_ok(d->be_path) ||
	    !d->nr_rings || d->nr_rings > PVM_CKPT_RINGS_MAX || !d->rings ||
	    d->fe_state > 8 || d->be_state > 8)
		return fail(w, -EINVAL, "PVMIG_DEVICE: bad device");
	for (unsigned i = 0; i < d->nr_rings; i++)
		if (d->rings[i].order > PVM_CKPT_RING_ORDER_MAX ||
		    d->rings[i].kind > PVM_CKPT_RING_CONSOLE)
			return fail(w, -EINVAL, "PVMIG_DEVICE: bad ring");
	fe_len = strlen(d->fe_path) + 1;
	be_len = strlen(d->be_path) + 1;

	rec_begin(w, PVM_CKPT_REC_DEVICE);
	pvm_buf_put_u32(&w->rec, d->dev_type);
	pvm_buf_put_u32(&w->rec, d->devid);
	pvm_buf_put_u16(&w->rec, d->backend_domid);
	pvm_buf_put_u8(&w->rec, d->fe_state);
	pvm_buf_put_u8(&w->rec, d->be_state);
	pvm_buf_put_u32(&w->rec, d->flags & PVM_CKPT_DEV_F_MODE_MASK);
	pvm_buf_put_u64(&w->rec, d->features);
	pvm_buf_put_u16(&w->rec, (uint16_t)fe_len);
	pvm_buf_put_u16(&w->rec, (uint16_t)be_len);
	pvm_buf_put_u16(&w->rec, d->nr_rings);
	pvm_buf_put_u16(&w->rec, 0);
	pvm_buf_put_bytes(&w->rec, d->fe_path, fe_len);
	pvm_buf_put_bytes(&w->rec, d->be_path, be_len);
	pvm_buf_pad(&w->rec, PVM_CKPT_REC_ALIGN);
	for (unsigned i = 0; i < d->nr_rings; i++) {
		const struct pvm_ckpt_ring *r = &d->rings[i];

		pvm_buf_put_u16(&w->rec, r->queue);
		pvm_buf_put_u8(&w->rec, r->kind);
		pvm_buf_put_u8(&w->rec, r->order);
		pvm_buf_put_u32(&w->rec, r->evtchn);
		pvm_buf_put_u32(&w->rec, r->req_cons);
		pvm_buf_put_u32(&w->rec, r->rsp_prod_pvt);
		pvm_buf_put_u32(&w->rec, r->req_prod_seen);
		pvm_buf_put_u32(&w->rec, 0);
		for (unsigned j = 0; j < (1u << r->order); j++)
			pvm_buf_put_u32(&w->rec, r->ring_ref[j]);
		pvm_buf_pad(&w->rec, PVM_CKPT_REC_ALIGN);
	}
	rec_end(w, 0);
	return w->err;
}

int pvm_ckpt_write_evtchns(struct pvm_ckpt_writer *w,
			   const struct pvm_ckpt_evtchn *v, size_t n)
{
	if (!body_ok(w, "PVMIG_EVTCHN"))
		return w->err;
	if (n > PVM_CKPT_EVTCHN_PORT_MAX || (n && !v))
		return fail(w, -EINVAL, "PVMIG_EVTCHN: count");
	for (size_t i = 0; i < n; i++)
		if (v[i].port >= PVM_CKPT_EVTCHN_PORT_MAX ||
		    v[i].kind < PVM_CKPT_EVTCHN_UNBOUND ||
		    v[i].kind > PVM_CKPT_EVTCHN_PIRQ || (v[i].flags & ~3u))
			return fail(w, -EINVAL, "PVMIG_EVTCHN: binding");
	rec_begin(w, PVM_CKPT_REC_EVTCHN);
	pvm_buf_put_u32(&w->rec, (uint32_t)n);
	pvm_buf_put_u32(&w->rec, 0);
	for (size_t i = 0; i < n; i++) {
		pvm_buf_put_u32(&w->rec, v[i].port);
		pvm_buf_put_u8(&w->rec, v[i].kind);
		pvm_buf_put_u8(&w->rec, v[i].flags);
		pvm_buf_put_u16(&w->rec, v[i].remote_domid);
		pvm_buf_put_u32(&w->rec, v[i].remote);
		pvm_buf_put_u32(&w->rec, v[i].vcpu);
	}
	rec_end(w, 0);
	return w->err;
}

int pvm_ckpt_write_grants(struct pvm_ckpt_writer *w,
			  const struct pvm_ckpt_grant_table *gt)
{
	uint64_t slots;

	if (!body_ok(w, "PVMIG_GRANT"))
		return w->err;
	if (!gt || gt->version != 1 || !gt->nr_frames ||
	    gt->nr_frames > PVM_CKPT_GRANT_FRAMES_MAX ||
	    (gt->count && !gt->entries))
		return fail(w, -EINVAL, "PVMIG_GRANT: table");
	slots = (uint64_t)gt->nr_frames * PVM_CKPT_GRANT_V1_PER_FRAME;
	if (gt->count > slots)
		return fail(w, -EINVAL, "PVMIG_GRANT: count");
	for (uint32_t i = 0; i < gt->count; i++)
		if (gt->entries[i].ref >= slots)
			return fail(w, -EINVAL, "PVMIG_GRANT: ref");
	rec_begin(w, PVM_CKPT_REC_GRANT);
	pvm_buf_put_u32(&w->rec, gt->version);
	pvm_buf_put_u32(&w->rec, gt->nr_frames);
	pvm_buf_put_u32(&w->rec, gt->count);
	pvm_buf_put_u32(&w->rec, 0);
	for (uint32_t i = 0; i < gt->count; i++) {
		pvm_buf_put_u32(&w->rec, gt->entries[i].ref);
		pvm_buf_put_u16(&w->rec, gt->entries[i].flags);
		pvm_buf_put_u16(&w->rec, gt->entries[i].domid);
		pvm_buf_put_u64(&w->rec, gt->entries[i].frame);
	}
	rec_end(w, 0);
	return w->err;
}

int pvm_ckpt_write_raw(struct pvm_ckpt_writer *w, uint32_t type,
		       const void *body, size_t len)
{
	if (w->err)
		return w->err;
	if (type == PVM_CKPT_XC_REC_END || type == PVM_CKPT_REC_CHECKSUM)
		return fail(w, -EINVAL, "raw: END or CHECKSUM");
	return put_blob_record(w, type, NULL, 0, body, len);
}

int pvm_ckpt_write_finish(struct pvm_ckpt_writer *w)
{
	uint8_t digest[PVM_CKPT_DIGEST_LEN];
	int rc;

	if (!body_ok(w, "END"))
		return w->err;
	if (!(w->cfg.flags & PVM_CKPT_WRITE_XEN_ONLY)) {
		/* The digest covers every byte before this record. */
		uint64_t covered = w->off;

		rc = pvm_ckpt_digest_peek(&w->digest, digest);
		if (rc)
			return fail(w, rc, "CHECKSUM digest");
		rec_begin(w, PVM_CKPT_REC_CHECKSUM);
		pvm_buf_put_u32(&w->rec, PVM_CKPT_CSUM_SHA256);
		pvm_buf_put_u32(&w->rec, PVM_CKPT_DIGEST_LEN);
		pvm_buf_put_u64(&w->rec, covered);
		pvm_buf_put_bytes(&w->rec, digest, sizeof(digest));
		rec_end(w, 0);
	}
	put_empty_record(w, PVM_CKPT_XC_REC_END);
	put_empty_record(w, PVM_CKPT_XL_REC_END);
	set_state(w, W_BODY, W_DONE);
	return w->err;
}
