/*
 * Helpers shared by the checkpoint tests: an in-memory sink and source, a
 * byte builder for hand-made streams, a recording ops table, and a sample
 * stream written through the real writer.
 */
#ifndef PVM_TEST_CKPT_UTIL_H
#define PVM_TEST_CKPT_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "checkpoint/stream/stream.h"
#include "common/common.h"

#define UNUSED_FN __attribute__((unused))

/* ---- memory sink / source ---------------------------------------------- */

struct mem_sink {
	struct pvm_buf b;
	int fail_at; /* fail the Nth write (1-based), 0 never */
	int writes;
};

static UNUSED_FN int mem_write(void *ctx, const void *buf, size_t len)
{
	struct mem_sink *s = ctx;

	if (s->fail_at && ++s->writes == s->fail_at)
		return -ENOSPC;
	pvm_buf_put_bytes(&s->b, buf, len);
	return s->b.err;
}

struct mem_src {
	const uint8_t *p;
	size_t len, off;
	size_t step; /* at most this many bytes per call (0: no limit) */
};

static UNUSED_FN int mem_read(void *ctx, void *buf, size_t len,
			      size_t *got_out)
{
	struct mem_src *s = ctx;
	size_t n = s->len - s->off;

	if (n > len)
		n = len;
	if (s->step && n > s->step)
		n = s->step;
	memcpy(buf, s->p + s->off, n);
	s->off += n;
	*got_out = n;
	return 0;
}

/* ---- byte builder for hand-made streams --------------------------------- */

static UNUSED_FN void sb_be32(struct pvm_buf *b, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 8), (uint8_t)v };

	pvm_buf_put_bytes(b, p, 4);
}

static UNUSED_FN void sb_be64(struct pvm_buf *b, uint64_t v)
{
	sb_be32(b, (uint32_t)(v >> 32));
	sb_be32(b, (uint32_t)v);
}

static UNUSED_FN void sb_libxl_hdr(struct pvm_buf *b)
{
	sb_be64(b, PVM_CKPT_XL_IDENT);
	sb_be32(b, 2);
	sb_be32(b, 0);
	pvm_buf_put_u32(b, PVM_CKPT_XL_REC_LIBXC_CONTEXT);
	pvm_buf_put_u32(b, 0);
}

static UNUSED_FN void sb_libxc_hdr(struct pvm_buf *b, uint32_t version,
				   uint32_t dom_type)
{
	sb_be64(b, PVM_CKPT_XC_MARKER);
	sb_be32(b, PVM_CKPT_XC_ID);
	sb_be32(b, version);
	sb_be32(b, 0); /* options, reserved */
	sb_be32(b, 0);
	pvm_buf_put_u32(b, dom_type);
	pvm_buf_put_u16(b, 12);
	pvm_buf_put_u16(b, 0);
	pvm_buf_put_u32(b, 4);
	pvm_buf_put_u32(b, 17);
}

static UNUSED_FN void sb_rec(struct pvm_buf *b, uint32_t type,
			     const void *body, uint32_t len)
{
	pvm_buf_put_u32(b, type);
	pvm_buf_put_u32(b, len);
	pvm_buf_put_bytes(b, body, len);
	/* padding is relative to the record, not to the buffer */
	pvm_buf_put_zeros(b, ((len + 7u) & ~7u) - len);
}

/* PAGE_DATA with one NOTAB page of @fill at @pfn. */
static UNUSED_FN void sb_page(struct pvm_buf *b, uint64_t pfn, uint8_t fill)
{
	pvm_buf_put_u32(b, PVM_CKPT_XC_REC_PAGE_DATA);
	pvm_buf_put_u32(b, 8 + 8 + 4096);
	pvm_buf_put_u32(b, 1);
	pvm_buf_put_u32(b, 0);
	pvm_buf_put_u64(b, pfn);
	for (int i = 0; i < 4096; i++)
		pvm_buf_put_u8(b, fill);
}

/* ---- recording ops ------------------------------------------------------- */

struct rec_log {
	struct pvm_ckpt_meta meta;
	int metas, pages, data_pages, tscs, params, ctxs, xs, devices,
		evtchns, grants, emus, records;
	uint64_t page_sum;        /* sum of every data byte */
	uint64_t last_pfn;
	unsigned last_type;
	struct pvm_ckpt_tsc_info tsc;
	struct pvm_ckpt_hvm_param param0;
	size_t nparams;
	uint8_t ctx[64];
	size_t ctx_len;
	size_t xs_len;
	uint32_t dev_type, dev_nr_rings, ring0_ref1, ring0_req_cons;
	char fe_path[128];
	struct pvm_ckpt_evtchn ev0;
	size_t nev;
	uint32_t grant_count;
	struct pvm_ckpt_grant g0;
	int fail_page;            /* return -EIO from the Nth page callback */
};

static UNUSED_FN int log_meta(void *c, const struct pvm_ckpt_meta *m)
{
	struct rec_log *l = c;

	l->meta = *m;
	l->metas++;
	return 0;
}

static UNUSED_FN int log_page(void *c, uint64_t pfn, unsigned type, const void *data)
{
	struct rec_log *l = c;

	l->pages++;
	if (l->fail_page && l->pages == l->fail_page)
		return -EIO;
	l->last_pfn = pfn;
	l->last_type = type;
	if (data) {
		const uint8_t *p = data;

		l->data_pages++;
		for (int i = 0; i < 4096; i++)
			l->page_sum += p[i];
	}
	return 0;
}

static UNUSED_FN int log_tsc(void *c, const struct pvm_ckpt_tsc_info *t)
{
	struct rec_log *l = c;

	l->tsc = *t;
	l->tscs++;
	return 0;
}

static UNUSED_FN int log_params(void *c, const struct pvm_ckpt_hvm_param *p, size_t n)
{
	struct rec_log *l = c;

	l->params++;
	l->nparams = n;
	if (n)
		l->param0 = p[0];
	return 0;
}

static UNUSED_FN int log_ctx(void *c, const void *blob, size_t len)
{
	struct rec_log *l = c;

	l->ctxs++;
	l->ctx_len = len;
	memcpy(l->ctx, blob, len < sizeof(l->ctx) ? len : sizeof(l->ctx));
	return 0;
}

static UNUSED_FN int log_xs(void *c, const void *image, size_t len)
{
	struct rec_log *l = c;

	l->xs++;
	l->xs_len = len;
	return 0;
}

static UNUSED_FN int log_dev(void *c, const struct pvm_ckpt_device *d)
{
	struct rec_log *l = c;

	l->devices++;
	l->dev_type = d->dev_type;
	l->dev_nr_rings = d->nr_rings;
	l->ring0_ref1 = d->rings[0].ring_ref[1];
	l->ring0_req_cons = d->rings[0].req_cons;
	strncpy(l->fe_path, d->fe_path, sizeof(l->fe_path) - 1);
	return 0;
}

static UNUSED_FN int log_ev(void *c, const struct pvm_ckpt_evtchn *v, size_t n)
{
	struct rec_log *l = c;

	l->evtchns++;
	l->nev = n;
	if (n)
		l->ev0 = v[0];
	return 0;
}

static UNUSED_FN int log_grants(void *c, const struct pvm_ckpt_grant_table *g)
{
	struct rec_log *l = c;

	l->grants++;
	l->grant_count = g->count;
	if (g->count)
		l->g0 = g->entries[0];
	return 0;
}

static UNUSED_FN int log_emu(void *c, uint32_t t, uint32_t id, uint32_t idx,
		   const void *d, size_t n)
{
	struct rec_log *l = c;

	l->emus++;
	return 0;
}

static UNUSED_FN int log_record(void *c, const struct pvm_ckpt_record *r)
{
	struct rec_log *l = c;

	l->records++;
	return 0;
}

static UNUSED_FN const struct pvm_ckpt_read_ops log_ops = {
	.meta = log_meta,
	.page = log_page,
	.tsc_info = log_tsc,
	.hvm_params = log_params,
	.hvm_context = log_ctx,
	.xenstore = log_xs,
	.device = log_dev,
	.evtchns = log_ev,
	.grants = log_grants,
	.emulator = log_emu,
	.record = log_record,
};

/* Reads @p/@len with @ops into @log; returns pvm_ckpt_read()'s result. */
static UNUSED_FN int read_mem(const void *p, size_t len, uint64_t max_pfns,
			      uint32_t flags, struct rec_log *log,
			      struct pvm_ckpt_info *info)
{
	struct mem_src src = { .p = p, .len = len };
	struct pvm_ckpt_read_cfg cfg = {
		.read = mem_read,
		.read_ctx = &src,
		.ops = log ? &log_ops : NULL,
		.ops_ctx = log,
		.max_pfns = max_pfns,
		.flags = flags,
	};

	return pvm_ckpt_read(&cfg, info);
}

/* ---- sample content ------------------------------------------------------ */

/* A minimal xenstore migration image: header, one NODE_DATA, one
 * WATCH_DATA, END. Returns its length (fits 256 bytes). */
static UNUSED_FN size_t sample_xs_image(uint8_t out[256])
{
	struct pvm_buf b;
	size_t n;
	static const uint8_t node[] = {
		0, 0, 0, 0, 0, 0, 0, 0,            /* conn-id, tx-id */
		14, 0, 2, 0,                      /* path-len, value-len */
		0, 0, 1, 0,                       /* access, perm-count */
		'b', 0, 7, 0,                     /* perm: b, flags, domid 7 */
		'/', 'l', 'o', 'c', 'a', 'l', '/', 'd', 'o', 'm', 'a', 'i',
		'n', 0,
		'o', 'k',
	};
	static const uint8_t watch[] = {
		1, 0, 0, 0, 8, 0, 4, 0, '/', 'l', 'o', 'c', 'a', 'l', '/', 0,
		't', 'o', 'k', 0,
	};

	pvm_buf_init(&b, 256);
	sb_be64(&b, PVM_CKPT_XS_IDENT);
	sb_be32(&b, 1);
	sb_be32(&b, 0);
	sb_rec(&b, PVM_CKPT_XS_REC_NODE_DATA, node, sizeof(node));
	sb_rec(&b, PVM_CKPT_XS_REC_WATCH_DATA, watch, sizeof(watch));
	sb_rec(&b, PVM_CKPT_XS_REC_END, NULL, 0);
	n = b.len;
	memcpy(out, b.data, n);
	pvm_buf_dispose(&b);
	return n;
}

static UNUSED_FN void sample_device(struct pvm_ckpt_device *d,
				    struct pvm_ckpt_ring rings[2])
{
	memset(d, 0, sizeof(*d));
	memset(rings, 0, 2 * sizeof(rings[0]));
	d->dev_type = PVM_CKPT_DEV_VIF;
	d->devid = 0;
	d->backend_domid = 0;
	d->fe_state = 4;
	d->be_state = 4;
	d->features = PVM_CKPT_VIF_F_RX_COPY | PVM_CKPT_VIF_F_SG;
	d->fe_path = "/local/domain/7/device/vif/0";
	d->be_path = "/local/domain/0/backend/vif/7/0";
	d->nr_rings = 2;
	rings[0].kind = PVM_CKPT_RING_NET_TX;
	rings[0].order = 1;
	rings[0].evtchn = 5;
	rings[0].req_cons = 100;
	rings[0].rsp_prod_pvt = 99;
	rings[0].req_prod_seen = 100;
	rings[0].ring_ref[0] = 8;
	rings[0].ring_ref[1] = 9;
	rings[1].kind = PVM_CKPT_RING_NET_RX;
	rings[1].evtchn = 5;
	rings[1].ring_ref[0] = 10;
	d->rings = rings;
}

/* Fills page @i with a pattern derived from @i. */
static UNUSED_FN void sample_page(uint8_t *p, uint64_t i)
{
	for (int k = 0; k < 4096; k++)
		p[k] = (uint8_t)(i * 31 + (uint64_t)k * 7);
}

/*
 * Writes a full sample stream for a domain of @nr_pages pages, with @npages
 * data pages (pfn i, pattern sample_page(i)), through @write/@ctx.
 */
static UNUSED_FN int write_sample(pvm_ckpt_write_fn write, void *ctx,
				  uint32_t flags, uint64_t nr_pages,
				  uint64_t npages)
{
	struct pvm_ckpt_write_cfg cfg = { .write = write, .write_ctx = ctx,
					  .flags = flags };
	struct pvm_ckpt_meta meta = { .nr_pages = nr_pages, .nr_vcpus = 2,
				      .domid = 7,
				      .fe_gen = PVM_CKPT_FE_GEN_LEGACY };
	struct pvm_ckpt_tsc_info tsc = { 1, 2000000, 123456789, 3 };
	struct pvm_ckpt_hvm_param params[2] = { { 1, 0xfeff0 }, { 2, 3 } };
	struct pvm_ckpt_evtchn ev[2] = {
		{ .port = 3, .kind = PVM_CKPT_EVTCHN_INTERDOMAIN,
		  .remote_domid = 0, .remote = 9 },
		{ .port = 5, .kind = PVM_CKPT_EVTCHN_INTERDOMAIN, .remote = 11,
		  .flags = PVM_CKPT_EVTCHN_F_PENDING },
	};
	struct pvm_ckpt_grant ge[2] = { { 8, 1, 0, 0x1000 }, { 9, 1, 0, 0x1001 } };
	struct pvm_ckpt_grant_table gt = { 1, 4, 2, ge };
	struct pvm_ckpt_device dev;
	struct pvm_ckpt_ring rings[2];
	static const char ctxblob[] = "hvm-context-blob";
	uint8_t xs[256];
	size_t xs_len = sample_xs_image(xs);
	struct pvm_ckpt_writer *w;
	uint8_t *pages;
	uint64_t pfns[PVM_CKPT_PAGE_BATCH_MAX];
	const void *data[PVM_CKPT_PAGE_BATCH_MAX];
	int rc;

	strcpy(meta.name, "sample-guest");
	rc = pvm_ckpt_writer_new(&cfg, &w);
	if (rc)
		return rc;
	pages = malloc(64 * 4096);
	if (!pages) {
		pvm_ckpt_writer_free(w);
		return -ENOMEM;
	}
	pvm_ckpt_write_begin(w, &meta);
	{
		/* one CPUID leaf and one MSR, in Xen's layouts */
		uint8_t leaf[24] = { 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x11 };
		uint8_t msr[16] = { 0xce, 0, 0, 0, 0, 0, 0, 0, 1 };

		pvm_ckpt_write_static(w, PVM_CKPT_XC_REC_X86_CPUID_POLICY, leaf,
				      sizeof(leaf));
		pvm_ckpt_write_static(w, PVM_CKPT_XC_REC_X86_MSR_POLICY, msr,
				      sizeof(msr));
	}
	for (uint64_t done = 0; done < npages;) {
		size_t n = npages - done > 64 ? 64 : (size_t)(npages - done);

		for (size_t i = 0; i < n; i++) {
			pfns[i] = done + i;
			sample_page(pages + i * 4096, done + i);
			data[i] = pages + i * 4096;
		}
		pvm_ckpt_write_pages(w, pfns, NULL, data, n);
		done += n;
	}
	pvm_ckpt_write_tsc_info(w, &tsc);
	pvm_ckpt_write_hvm_params(w, params, 2);
	pvm_ckpt_write_hvm_context(w, ctxblob, sizeof(ctxblob));
	if (!(flags & PVM_CKPT_WRITE_XEN_ONLY)) {
		sample_device(&dev, rings);
		pvm_ckpt_write_xenstore(w, xs, xs_len);
		pvm_ckpt_write_device(w, &dev);
		pvm_ckpt_write_evtchns(w, ev, 2);
		pvm_ckpt_write_grants(w, &gt);
	}
	rc = pvm_ckpt_write_finish(w);
	free(pages);
	pvm_ckpt_writer_free(w);
	return rc;
}

#endif /* PVM_TEST_CKPT_UTIL_H */
