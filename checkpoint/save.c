/*
 * Saving a domain: the hv ops on one side, the stream writer on the other.
 *
 *   pvm_ckpt_save()
 *     pvm_ckpt__config_of()          what the domain is (name, size, image)
 *     pvm_ckpt__out_open()           path.tmp, xl header + config, stream
 * headers [live] logdirty_enable, round 0 (every page), rounds of dirty pages
 *            until precopy_policy() says stop
 *     pvm_ckpt__devs_suspend()       the suspend request to the guest (it may
 *                             stop its frontends itself, or not answer)
 *     pause                   the one pause
 *     pvm_ckpt__devs_quiesce()       PV backends drained and captured (they
 * write responses into guest memory while draining, so before the last dirty
 * read / the copy); a legacy guest's xenstore subtree exported [live] last
 * dirty pages; [cold] every page pvm_ckpt__state_get/write()    vCPUs
 * (HVM_CONTEXT), event channels, grants pvm_ckpt__devs_write() PVMIG_DEVICE per
 * device, PVMIG_XENSTORE [keep] backends resumed, unpause
 *     pvm_ckpt__out_commit()         CHECKSUM, END, fsync, rename over path
 *     [!keep] destroy         only once the file is committed
 *
 * A failure anywhere before the commit resumes the backends and unpauses
 * the domain (if we paused it), turns log-dirty off and removes path.tmp: the
 * domain runs on and an old file at path is untouched.
 */
#include "checkpoint/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "hv/sim/sim.h"
#include "hv/xen/xen.h"

/* ---- the domain config header (docs/stream-format.md §7.1) ------------- */

static bool config_string_ok(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
			return false;
	return true;
}

static_assert(PVM_CKPT_DISKS_MAX == PVM_HV_MAX_DISKS, "disk bound");
static_assert(PVM_CKPT_NICS_MAX == PVM_HV_MAX_NICS, "nic bound");

static void hex(char *out, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* The option data: xl.cfg lines, the last one a SHA-256 of the others. */
static int config_text(const struct sr_config *c, struct pvm_buf *b)
{
	struct pvm_ckpt_digest d;
	uint8_t dg[PVM_CKPT_DIGEST_LEN];
	char line[512], hx[2 * PVM_CKPT_DIGEST_LEN + 1];
	int rc, n;

	if (!config_string_ok(c->name) || !config_string_ok(c->image) ||
	    !config_string_ok(c->chain) ||
	    c->dev.nr_disks > PVM_CKPT_DISKS_MAX ||
	    c->dev.nr_nics > PVM_CKPT_NICS_MAX)
		return -EINVAL;
	for (uint32_t i = 0; i < c->dev.nr_disks; i++)
		if (!config_string_ok(c->dev.disks[i].path) ||
		    !config_string_ok(c->dev.disks[i].vdev) ||
		    strchr(c->dev.disks[i].vdev, ','))
			return -EINVAL;
	for (uint32_t i = 0; i < c->dev.nr_nics; i++)
		if (!config_string_ok(c->dev.nics[i].bridge) ||
		    strchr(c->dev.nics[i].bridge, ','))
			return -EINVAL;
#define LINE(...)                                                      \
	do {                                                           \
		n = snprintf(line, sizeof(line), __VA_ARGS__);         \
		if (n < 0 || (size_t)n >= sizeof(line))                \
			return -E2BIG;                                 \
		pvm_buf_put_bytes(b, line, (size_t)n);                 \
	} while (0)
	LINE("# pvmig domain config (xl.cfg syntax), version 1\n");
	LINE("name = \"%s\"\n", c->name);
	LINE("type = \"hvm\"\n");
	LINE("memory = %llu\n", (unsigned long long)(c->nr_pages >> 8));
	LINE("vcpus = %u\n", c->nr_vcpus);
	LINE("pvmig_nr_pages = %llu\n", (unsigned long long)c->nr_pages);
	LINE("pvmig_domid = %u\n", c->domid);
	LINE("pvmig_image = \"%s\"\n", c->image);
	LINE("pvmig_kind = \"%s\"\n", c->kind);
	LINE("pvmig_chain = \"%s\"\n", c->chain);
	LINE("pvmig_epoch = %u\n", c->epoch);
	LINE("pvmig_device_state = 1\n");
	LINE("pvmig_frontend = \"%s\"\n",
	     c->dev.frontend_gen == PVM_HV_FRONTEND_LEGACY ? "legacy" : "modern");
	/* xl's disk/vif spec syntax; the target comes last (it may hold
	 * commas), as in xl-disk-configuration. */
	for (uint32_t i = 0; i < c->dev.nr_disks; i++)
		LINE("pvmig_disk%u = \"vdev=%s,access=%s,target=%s\"\n", i,
		     c->dev.disks[i].vdev, c->dev.disks[i].readonly ? "ro" : "rw",
		     c->dev.disks[i].path);
	for (uint32_t i = 0; i < c->dev.nr_nics; i++) {
		const uint8_t *m = c->dev.nics[i].mac;

		LINE("pvmig_nic%u = \"mac=%02x:%02x:%02x:%02x:%02x:%02x%s%s\"\n",
		     i, m[0], m[1], m[2], m[3], m[4], m[5],
		     c->dev.nics[i].bridge[0] ? ",bridge=" : "",
		     c->dev.nics[i].bridge);
	}
	if (b->err)
		return b->err;
	pvm_ckpt_digest_init(&d);
	rc = pvm_ckpt_digest_start(&d);
	if (!rc) {
		pvm_ckpt_digest_update(&d, b->data, b->len);
		rc = pvm_ckpt_digest_peek(&d, dg);
	}
	pvm_ckpt_digest_dispose(&d);
	if (rc)
		return rc;
	hex(hx, dg, sizeof(dg));
	LINE("pvmig_config_sha256 = \"%s\"\n", hx);
#undef LINE
	pvm_buf_pad(b, 8);
	return b->err;
}

/* The text's length without the NUL padding config_text() adds. */
static size_t text_len(const struct pvm_buf *text)
{
	size_t n = text->len;

	while (n && text->data[n - 1] == '\0')
		n--;
	return n;
}

int pvm_ckpt__write_xl_header(const struct pvm_ckpt_write_cfg *wc,
			      uint32_t mandatory, const void *cfg,
			      size_t cfglen)
{
	static const uint8_t zeros[8];
	uint8_t pre[PVM_CKPT_XL_PREFIX_SIZE];
	uint32_t optlen;
	size_t n;
	int rc;

	if (cfglen > UINT32_MAX)
		return -E2BIG;
	n = pvm_ckpt_xlhdr_encode(pre, mandatory, (uint32_t)cfglen, &optlen);
	if (!n)
		return -E2BIG;
	rc = wc->write(wc->write_ctx, pre, n);
	if (!rc && cfglen)
		rc = wc->write(wc->write_ctx, cfg, cfglen);
	if (!rc && optlen - 4 - cfglen)
		rc = wc->write(wc->write_ctx, zeros, optlen - 4 - cfglen);
	return rc;
}

int pvm_ckpt__out_create(struct sr_out *o, const char *path, bool lz4,
			 const struct sr_key *key,
			 struct pvm_ckpt_write_cfg *wc, struct pvm_error *e)
{
	int rc;

	o->file = NULL;
	o->sealed = NULL;
	o->w = NULL;
	if (key) {
		rc = pvm_ckpt__sealed_create(path, key, lz4, &o->sealed);
		wc->write = pvm_ckpt__sealed_write;
		wc->write_ctx = o->sealed;
	} else {
		rc = pvm_ckpt_file_create(path, lz4 ? PVM_CKPT_FILE_LZ4 : 0,
					  &o->file);
		wc->write = pvm_ckpt_file_write;
		wc->write_ctx = o->file;
	}
	if (rc)
		return pvm_error_set(e, rc,
				     "cannot create %s.tmp: %s (is the "
				     "directory there and writable?)",
				     path, strerror(-rc));
	return 0;
}

int pvm_ckpt__out_open(struct sr_out *o, const char *path, bool lz4,
		       const struct sr_key *key, const struct sr_config *c,
		       struct pvm_error *e)
{
	struct pvm_ckpt_write_cfg wc = { .write = pvm_ckpt_file_write };
	struct pvm_ckpt_meta meta = { 0 };
	struct pvm_buf text;
	int rc;

	o->file = NULL;
	o->sealed = NULL;
	o->w = NULL;
	pvm_buf_init(&text, SR_CONFIG_MAX);
	rc = config_text(c, &text);
	if (rc) {
		pvm_error_set(e, rc,
			      "domain %u: cannot describe its config (name "
			      "or image has characters a config cannot hold)",
			      c->domid);
		goto out;
	}
	rc = pvm_ckpt__out_create(o, path, lz4, key, &wc, e);
	if (rc)
		goto out;
	/* The xl save-file header: xl's own reader and ours skip to the
	 * libxl stream after it; its option data is our config, behind the
	 * length word xl reads first. */
	rc = pvm_ckpt__write_xl_header(&wc, 0, text.data, text_len(&text));
	if (rc) {
		pvm_error_set(e, rc, "cannot write %s.tmp: %s", path,
			      strerror(-rc));
		goto out_abort;
	}
	rc = pvm_ckpt_writer_new(&wc, &o->w);
	if (rc) {
		pvm_error_set(e, rc, "cannot start a stream writer: %s",
			      strerror(-rc));
		goto out_abort;
	}
	meta.nr_pages = c->nr_pages;
	meta.nr_vcpus = c->nr_vcpus;
	meta.domid = c->domid;
	snprintf(meta.name, sizeof(meta.name), "%s", c->name);
	rc = pvm_ckpt_write_begin(o->w, &meta);
	if (rc) {
		pvm_error_set(e, rc,
			      "cannot write the stream headers to %s.tmp: %s",
			      path, strerror(-rc));
		goto out_abort;
	}
	pvm_buf_dispose(&text);
	return 0;

out_abort:
	pvm_ckpt__out_abort(o);
out:
	pvm_buf_dispose(&text);
	return rc;
}

int pvm_ckpt__out_commit(struct sr_out *o, struct pvm_error *e)
{
	int rc = o->w ? pvm_ckpt_write_finish(o->w) : 0;

	if (rc)
		return pvm_error_set(e, rc, "cannot finish the stream: %s",
				     strerror(-rc));
	pvm_ckpt_writer_free(o->w);
	o->w = NULL;
	if (o->sealed)
		rc = pvm_ckpt__sealed_commit(
		    o->sealed); /* frees it, also on failure */
	else
		rc = pvm_ckpt_file_commit(o->file);
	o->file = NULL;
	o->sealed = NULL;
	if (rc)
		return pvm_error_set(e, rc,
				     "cannot commit the file: %s (disk full?)",
				     strerror(-rc));
	return 0;
}

void pvm_ckpt__out_abort(struct sr_out *o)
{
	pvm_ckpt_writer_free(o->w);
	o->w = NULL;
	pvm_ckpt_file_abort(o->file);
	o->file = NULL;
	pvm_ckpt__sealed_abort(o->sealed);
	o->sealed = NULL;
}

/*
 * What the domain runs. The ops table has no slot for a domain's config
 * (docs/save-restore.md, "changes needed"): the simulated host's guest
 * carries its workload in its argv (PROG NR_PAGES NR_VCPUS WORKLOAD), read
 * here from /proc. Other backends: empty (the image is in memory).
 */
static void domain_image(struct pvm_hv *hv, uint32_t domid, char *out,
			 size_t len)
{
	char path[64], buf[1024];
	ssize_t n;
	pid_t pid;
	int fd, field = 0;

	out[0] = '\0';
	if (!pvm_sim_is_sim(hv) || pvm_sim_domain_pid(hv, domid, &pid))
		return;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (ssize_t i = 0; i < n; i++) {
		if (field == 3) {
			snprintf(out, len, "%s", buf + i);
			return;
		}
		if (buf[i] == '\0')
			field++;
	}
}

int pvm_ckpt__config_of(struct pvm_hv *hv, uint32_t domid, struct sr_config *c,
			struct pvm_error *e)
{
	struct pvm_hv_dominfo info;
	int rc;

	memset(c, 0, sizeof(*c));
	rc = hv->ops->domain_info(hv, domid, &info);
	if (rc)
		return pvm_error_set(e, rc, "no domain %u on this host", domid);
	if (info.flags & (PVM_HV_DOMINF_SHUTDOWN | PVM_HV_DOMINF_DYING))
		return pvm_error_set(e, -ESRCH,
				     "domain %u '%s' has shut down or "
				     "died: nothing to save",
				     domid, info.name);
	snprintf(c->name, sizeof(c->name), "%s", info.name);
	c->nr_pages = info.nr_pages;
	c->nr_vcpus = info.nr_vcpus;
	c->domid = domid;
	domain_image(hv, domid, c->image, sizeof(c->image));
	snprintf(c->kind, sizeof(c->kind), "%s", SR_KIND_FULL);
	return 0;
}

/* ---- pages -------------------------------------------------------------- */

int pvm_ckpt__write_pfns(struct pvm_hv *hv, uint32_t domid,
			 struct pvm_ckpt_writer *w, const uint64_t *pfns,
			 size_t n, bool zero_as_xalloc, uint8_t *bounce,
			 struct pvm_error *e)
{
	uint8_t types[SR_BATCH];
	const void *data[SR_BATCH];
	int errs[SR_BATCH];

	for (size_t off = 0; off < n; off += SR_BATCH) {
		size_t k = n - off < SR_BATCH ? n - off : SR_BATCH;
		void *map = NULL;
		int rc;

		rc = hv->ops->map_pages(hv, domid, PVM_HV_MAP_READ, pfns + off,
					k, errs, &map);
		if (rc)
			return pvm_error_set(e, rc,
					     "domain %u: cannot map %zu pages "
					     "from pfn %llu: %s",
					     domid, k,
					     (unsigned long long)pfns[off],
					     strerror(-rc));
		if (bounce) {
			/* The guest runs: the writer reads each page twice
			 * (digest, sink), so it must not change under it. */
			memcpy(bounce, map, k * PVM_PAGE_SIZE);
		}
		for (size_t i = 0; i < k; i++) {
			const uint8_t *p = (bounce ? bounce : (const uint8_t *)map) +
					   i * PVM_PAGE_SIZE;

			data[i] = p;
			types[i] = PVM_CKPT_PFN_NOTAB;
			if (errs[i])
				types[i] = PVM_CKPT_PFN_XTAB; /* gone */
			else if (zero_as_xalloc &&
				 pvm_is_zero(p, PVM_PAGE_SIZE))
				types[i] = PVM_CKPT_PFN_XALLOC;
		}
		rc = pvm_ckpt_write_pages(w, pfns + off, types, data, k);
		hv->ops->unmap_pages(hv, map, k);
		if (rc)
			return pvm_error_set(
			    e, rc, "domain %u: cannot write pages: %s", domid,
			    strerror(-rc));
	}
	return 0;
}

int pvm_ckpt_mem_digest(struct pvm_hv *hv, uint32_t domid, uint64_t nr_pages,
			uint8_t out[PVM_CKPT_DIGEST_LEN])
{
	uint64_t pfns[SR_BATCH];
	int errs[SR_BATCH];
	struct pvm_ckpt_digest d;
	int rc;

	pvm_ckpt_digest_init(&d);
	rc = pvm_ckpt_digest_start(&d);
	for (uint64_t off = 0; !rc && off < nr_pages; off += SR_BATCH) {
		size_t k = nr_pages - off < SR_BATCH ? nr_pages - off : SR_BATCH;
		void *map;

		for (size_t i = 0; i < k; i++)
			pfns[i] = off + i;
		rc = hv->ops->map_pages(hv, domid, PVM_HV_MAP_READ, pfns, k,
					errs, &map);
		if (rc)
			break;
		/* A page the backend could not map is no page of the
		 * domain's: its bytes in the mapping mean nothing (on the
		 * simulated host they are not even readable). */
		for (size_t i = 0; i < k && !rc; i++)
			rc = errs[i];
		if (!rc)
			pvm_ckpt_digest_update(&d, map, k * PVM_PAGE_SIZE);
		hv->ops->unmap_pages(hv, map, k);
	}
	if (!rc)
		rc = pvm_ckpt_digest_peek(&d, out);
	pvm_ckpt_digest_dispose(&d);
	return rc;
}

int pvm_ckpt__mem_digest(struct pvm_hv *hv, uint32_t domid, uint64_t nr_pages,
			 uint8_t out[32], struct pvm_error *e)
{
	int rc = pvm_ckpt_mem_digest(hv, domid, nr_pages, out);

	if (rc)
		return pvm_error_set(e, rc,
				     "domain %u: cannot digest memory: %s",
				     domid, strerror(-rc));
	return 0;
}

/* ---- state -------------------------------------------------------------- */

void pvm_ckpt__state_init(struct sr_state *s)
{
	pvm_buf_init(&s->vcpus, SR_STATE_MAX);
	pvm_buf_init(&s->evtchn, SR_STATE_MAX);
	pvm_buf_init(&s->grant, SR_STATE_MAX);
}

void pvm_ckpt__state_dispose(struct sr_state *s)
{
	pvm_buf_dispose(&s->vcpus);
	pvm_buf_dispose(&s->evtchn);
	pvm_buf_dispose(&s->grant);
}

/* HVM_CONTEXT as pvmig writes it: "pvmc", count, then per vCPU
 * {vcpu u32, len u32, context, pad to 8} (docs/stream-format.md §7.2). */
#define SR_VCPU_MAGIC 0x636d7670u /* "pvmc" little-endian */

int pvm_ckpt__state_get(struct pvm_hv *hv, uint32_t domid, uint32_t nr_vcpus,
			struct sr_state *s, struct pvm_error *e)
{
	struct pvm_buf one;
	int rc = 0;

	pvm_buf_reset(&s->vcpus);
	pvm_buf_reset(&s->evtchn);
	pvm_buf_reset(&s->grant);
	pvm_buf_init(&one, 64 * 1024);
	pvm_buf_put_u32(&s->vcpus, SR_VCPU_MAGIC);
	pvm_buf_put_u32(&s->vcpus, nr_vcpus);
	for (uint32_t v = 0; v < nr_vcpus && !rc; v++) {
		pvm_buf_reset(&one);
		rc = hv->ops->vcpu_context_get(hv, domid, v, &one);
		if (rc) {
			pvm_error_set(e, rc,
				      "domain %u: cannot read vCPU %u: %s",
				      domid, v, strerror(-rc));
			break;
		}
		pvm_buf_put_u32(&s->vcpus, v);
		pvm_buf_put_u32(&s->vcpus, (uint32_t)one.len);
		pvm_buf_put_bytes(&s->vcpus, one.data, one.len);
		pvm_buf_pad(&s->vcpus, 8);
	}
	pvm_buf_dispose(&one);
	if (rc)
		return rc;
	rc = hv->ops->evtchn_state_get(hv, domid, &s->evtchn);
	if (rc)
		return pvm_error_set(e, rc,
				     "domain %u: cannot read its event "
				     "channels: %s",
				     domid, strerror(-rc));
	rc = hv->ops->grant_state_get(hv, domid, &s->grant);
	if (rc)
		return pvm_error_set(e, rc,
				     "domain %u: cannot read its grant "
				     "table: %s",
				     domid, strerror(-rc));
	if (s->vcpus.err)
		return pvm_error_set(e, s->vcpus.err,
				     "domain %u: vCPU state too "
				     "large",
				     domid);
	return 0;
}

/* hv evtchn format (docs/hv.md) -> PVMIG_EVTCHN entries. */
static int write_evtchns(struct pvm_ckpt_writer *w, const struct pvm_buf *b,
			 struct pvm_error *e)
{
	struct pvm_cursor c;
	struct pvm_ckpt_evtchn *v = NULL;
	uint32_t version = 0, count = 0;
	int rc;

	pvm_cursor_init(&c, b->data, b->len);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &count);
	if (c.err || version != 1 || count > PVM_CKPT_EVTCHN_PORT_MAX ||
	    pvm_cursor_remaining(&c) != (size_t)count * 16)
		return pvm_error_set(e, -EBADMSG,
				     "backend gave malformed event-"
				     "channel state (%zu bytes)",
				     b->len);
	if (!count)
		return 0;
	v = calloc(count, sizeof(*v));
	if (!v)
		return pvm_error_set(e, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < count; i++) {
		uint32_t port = 0, rport = 0, res = 0;
		uint16_t st = 0, rdom = 0;

		pvm_cursor_u32(&c, &port);
		pvm_cursor_u16(&c, &st);
		pvm_cursor_u16(&c, &rdom);
		pvm_cursor_u32(&c, &rport);
		pvm_cursor_u32(&c, &res);
		v[i].port = port;
		/* hv state is Xen's EVTCHNSTAT_* (docs/hv.md): 1 unbound,
		 * 2 interdomain, 3 pirq, 4 virq, 5 ipi; the record has a
		 * code for each, and keeps the pirq/virq number. */
		switch (st) {
		case 2:
			v[i].kind = PVM_CKPT_EVTCHN_INTERDOMAIN;
			v[i].remote = rport;
			break;
		case 3:
			v[i].kind = PVM_CKPT_EVTCHN_PIRQ;
			v[i].remote = rport;
			break;
		case 4:
			v[i].kind = PVM_CKPT_EVTCHN_VIRQ;
			v[i].remote = rport;
			break;
		case 5:
			v[i].kind = PVM_CKPT_EVTCHN_IPI;
			v[i].remote = 0;
			break;
		default:
			v[i].kind = PVM_CKPT_EVTCHN_UNBOUND;
			v[i].remote = 0;
			break;
		}
		v[i].remote_domid = rdom;
	}
	rc = pvm_ckpt_write_evtchns(w, v, count);
	free(v);
	if (rc)
		return pvm_error_set(e, rc, "cannot write PVMIG_EVTCHN: %s",
				     strerror(-rc));
	return 0;
}

/* hv grant format -> PVMIG_GRANT (the in-use entries). */
static int write_grants(struct pvm_ckpt_writer *w, const struct pvm_buf *b,
			struct pvm_error *e)
{
	struct pvm_cursor c;
	struct pvm_ckpt_grant *g = NULL;
	struct pvm_ckpt_grant_table gt = { .version = 1 };
	uint32_t version = 0, frames = 0, nent = 0, res = 0, n = 0;
	uint64_t pfn = 0;
	int rc;

	pvm_cursor_init(&c, b->data, b->len);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &frames);
	pvm_cursor_u64(&c, &pfn);
	pvm_cursor_u32(&c, &nent);
	pvm_cursor_u32(&c, &res);
	if (c.err || version != 1 || !frames ||
	    frames > PVM_CKPT_GRANT_FRAMES_MAX ||
	    nent > frames * PVM_CKPT_GRANT_V1_PER_FRAME ||
	    pvm_cursor_remaining(&c) != (size_t)nent * 8)
		return pvm_error_set(e, -EBADMSG,
				     "backend gave a malformed grant "
				     "table (%zu bytes)",
				     b->len);
	g = calloc(nent ? nent : 1, sizeof(*g));
	if (!g)
		return pvm_error_set(e, -ENOMEM, "out of memory");
	for (uint32_t ref = 0; ref < nent; ref++) {
		uint32_t w0 = 0, frame = 0;

		pvm_cursor_u32(&c, &w0);
		pvm_cursor_u32(&c, &frame);
		if (!w0 && !frame)
			continue;
		g[n].ref = ref;
		g[n].flags = (uint16_t)w0;
		g[n].domid = (uint16_t)(w0 >> 16);
		g[n].frame = frame;
		n++;
	}
	gt.nr_frames = frames;
	gt.count = n;
	gt.entries = g;
	rc = pvm_ckpt_write_grants(w, &gt);
	free(g);
	if (rc)
		return pvm_error_set(e, rc, "cannot write PVMIG_GRANT: %s",
				     strerror(-rc));
	return 0;
}

int pvm_ckpt__state_write(struct pvm_ckpt_writer *w, const struct sr_state *s,
			  struct pvm_error *e)
{
	int rc = pvm_ckpt_write_hvm_context(w, s->vcpus.data, s->vcpus.len);

	if (rc)
		return pvm_error_set(e, rc, "cannot write HVM_CONTEXT: %s",
				     strerror(-rc));
	if (write_evtchns(w, &s->evtchn, e) || write_grants(w, &s->grant, e))
		return e->rc;
	return 0;
}

/* ---- pvm_ckpt_save ------------------------------------------------------ */

#define CONVERGED_PAGES 256u /* 1 MiB left: pause */

/*
 * The convergence decision, beside the loop rather than inside it (Xen's
 * simple_precopy_policy): stop pre-copying when little is left, when the
 * rounds are used up, or when a round did not shrink the dirty set.
 */
bool pvm_ckpt__precopy_done(uint32_t round, uint32_t max_rounds, size_t dirty,
			    size_t prev_dirty)
{
	return dirty <= CONVERGED_PAGES || round >= max_rounds ||
	       (round > 2 && dirty >= prev_dirty);
}

static void report(const struct pvm_ckpt_save_cfg *cfg, const char *phase,
		   uint32_t round, uint64_t done, uint64_t total,
		   struct pvm_ckpt_writer *w)
{
	struct pvm_ckpt_progress p = {
		.phase = phase, .round = round, .done = done, .total = total,
		.bytes = pvm_ckpt_writer_offset(w),
	};

	if (cfg->progress)
		cfg->progress(cfg->progress_ctx, &p);
}

/* Writes the pfns set in @bm (all of them when NULL), reporting progress
 * every 16 MiB. */
static int write_set(const struct pvm_ckpt_save_cfg *cfg, struct sr_out *o,
		     const struct pvm_bitmap *bm, uint64_t nr_pages,
		     const char *phase, uint32_t round, bool zero_as_xalloc,
		     uint8_t *bounce, uint64_t *pages, struct pvm_error *e)
{
	uint64_t pfns[SR_BATCH * 4];
	uint64_t total = bm ? pvm_bitmap_count(bm) : nr_pages, done = 0;
	size_t n = 0, next = 0;

	for (uint64_t pfn = bm ? pvm_bitmap_next_set(bm, 0) : 0; pfn < nr_pages;
	     pfn = bm ? pvm_bitmap_next_set(bm, pfn + 1) : pfn + 1) {
		pfns[n++] = pfn;
		if (n < PVM_ARRAY_SIZE(pfns) && pfn + 1 < nr_pages)
			continue;
		if (pvm_ckpt__write_pfns(cfg->hv, cfg->domid, o->w, pfns, n,
					 zero_as_xalloc, bounce, e))
			return e->rc;
		done += n;
		*pages += n;
		n = 0;
		if (done >= next || done == total) {
			report(cfg, phase, round, done, total, o->w);
			next = done + 4096;
		}
	}
	if (n) {
		if (pvm_ckpt__write_pfns(cfg->hv, cfg->domid, o->w, pfns, n,
					 zero_as_xalloc, bounce, e))
			return e->rc;
		*pages += n;
		report(cfg, phase, round, total, total, o->w);
	}
	return 0;
}

int pvm_ckpt_save(const struct pvm_ckpt_save_cfg *cfg,
		  struct pvm_ckpt_save_stats *st_out)
{
	struct pvm_ckpt_save_stats local;
	struct pvm_ckpt_save_stats *st = st_out ? st_out : &local;
	struct pvm_error e;
	struct sr_key key = { 0 };
	int rc;

	memset(st, 0, sizeof(*st));
	pvm_error_init(&e);
	if (cfg && cfg->key_file && pvm_ckpt__key_load(cfg->key_file, &key, &e))
		rc = e.rc;
	else if (cfg && cfg->hv && pvm_hv_is_xen(cfg->hv))
		rc = pvm_ckpt__xen_save(cfg, key.loaded ? &key : NULL, st, &e);
	else
		rc = pvm_ckpt__save(cfg, NULL, 0, key.loaded ? &key : NULL, st,
				    &e);
	pvm_ckpt__key_wipe(&key);
	pvm_error_copy(&e, st->err_msg, sizeof(st->err_msg));
	return rc;
}

/* The failure @e holds, or -EIO if none was named. */
static int held(const struct pvm_error *e)
{
	return e->rc ? e->rc : -EIO;
}

/*
 * Live: every page once (round 0; the new domain starts zeroed), then the
 * pages dirtied meanwhile, round by round, until the policy says stop.
 * @bm is left holding the dirty set the last round did not send.
 */
static int precopy(const struct pvm_ckpt_save_cfg *cfg, struct sr_out *o,
		   struct pvm_bitmap *bm, uint64_t nr_pages, uint8_t *bounce,
		   struct pvm_ckpt_save_stats *st, struct pvm_error *e)
{
	struct pvm_hv *hv = cfg->hv;
	uint32_t max_rounds =
	    cfg->max_rounds ? cfg->max_rounds : SR_DEFAULT_ROUNDS;
	size_t prev = SIZE_MAX;
	int rc;

	if (write_set(cfg, o, NULL, nr_pages, "precopy", 0, true, bounce,
		      &st->pages, e))
		return held(e);
	st->rounds = 1;
	for (uint32_t round = 1;; round++) {
		size_t dirty;

		rc = hv->ops->logdirty_read_clear(hv, cfg->domid, bm);
		if (rc)
			return pvm_error_set(e, rc,
					     "domain %u: cannot read the "
					     "dirty log: %s",
					     cfg->domid, strerror(-rc));
		dirty = pvm_bitmap_count(bm);
		if (pvm_ckpt__precopy_done(round, max_rounds, dirty, prev))
			return 0; /* bm's pages go after the pause */
		if (write_set(cfg, o, bm, nr_pages, "precopy", round, false,
			      bounce, &st->pages, e))
			return held(e);
		st->rounds++;
		prev = dirty;
	}
}

/* Paused: the pages still to go. Live: those dirtied since the last read,
 * plus the set @bm the policy left for now; cold: every page. */
static int copy_paused(const struct pvm_ckpt_save_cfg *cfg, struct sr_out *o,
		       struct pvm_bitmap *bm, uint64_t nr_pages, bool live,
		       struct pvm_ckpt_save_stats *st, struct pvm_error *e)
{
	struct pvm_hv *hv = cfg->hv;
	struct pvm_bitmap last = { 0 };
	int rc;

	if (!live) {
		if (write_set(cfg, o, NULL, nr_pages, "copy", 0, true, NULL,
			      &st->pages, e))
			return held(e);
		return 0;
	}
	if (pvm_bitmap_init(&last, nr_pages))
		return pvm_error_set(e, -ENOMEM, "out of memory");
	rc = hv->ops->logdirty_read_clear(hv, cfg->domid, &last);
	for (size_t i = 0; !rc && i < (nr_pages + 63) / 64; i++)
		bm->words[i] |= last.words[i];
	pvm_bitmap_dispose(&last);
	if (rc)
		return pvm_error_set(e, rc,
				     "domain %u: cannot read the dirty log: %s",
				     cfg->domid, strerror(-rc));
	if (write_set(cfg, o, bm, nr_pages, "stop-and-copy", st->rounds,
		      false, NULL, &st->pages, e))
		return held(e);
	return 0;
}

/* Paused, devices quiesced, memory written: the memory digest if asked,
 * vCPUs, event channels, grants, the devices' records. */
static int write_state(const struct pvm_ckpt_save_cfg *cfg, struct sr_out *o,
		       const struct sr_config *c, struct sr_state *state,
		       const struct sr_devs *devs,
		       struct pvm_ckpt_save_stats *st, struct pvm_error *e)
{
	struct pvm_hv *hv = cfg->hv;

	if (cfg->flags & PVM_CKPT_SAVE_DIGEST) {
		if (pvm_ckpt__mem_digest(hv, cfg->domid, c->nr_pages,
					 st->mem_digest, e))
			return held(e);
		st->has_digest = true;
	}
	if (pvm_ckpt__state_get(hv, cfg->domid, c->nr_vcpus, state, e) ||
	    pvm_ckpt__state_write(o->w, state, e) ||
	    pvm_ckpt__devs_write(devs, o->w, cfg->domid, e))
		return held(e);
	return 0;
}

/* What is saved: @as, or the domain as it is, with what the caller knows
 * better (the image it runs, its devices). */
static int save_config(const struct pvm_ckpt_save_cfg *cfg,
		       const struct sr_config *as, struct sr_config *c,
		       struct pvm_error *e)
{
	if (as)
		*c = *as;
	else if (pvm_ckpt__config_of(cfg->hv, cfg->domid, c, e))
		return held(e);
	if (cfg->image && *cfg->image &&
	    snprintf(c->image, sizeof(c->image), "%s", cfg->image) >=
		(int)sizeof(c->image))
		return pvm_error_set(e, -E2BIG,
				     "the domain's image name is too long");
	if (cfg->devices)
		c->dev = *cfg->devices;
	return 0;
}

/* Log-dirty mode on, unless SR_SAVE_LOGDIRTY_ON says it is already. */
static int logdirty_on(const struct pvm_ckpt_save_cfg *cfg, unsigned sr_flags,
		       struct pvm_error *e)
{
	int rc;

	if (sr_flags & SR_SAVE_LOGDIRTY_ON)
		return 0;
	rc = cfg->hv->ops->logdirty_enable(cfg->hv, cfg->domid);
	if (rc)
		return pvm_error_set(e, rc,
				     "domain %u: cannot turn on log-dirty "
				     "mode: %s%s",
				     cfg->domid, strerror(-rc),
				     rc == -EBUSY ? " (another save or "
						    "migration is running)"
						  : "");
	return 0;
}

int pvm_ckpt__save(const struct pvm_ckpt_save_cfg *cfg,
		   const struct sr_config *as, unsigned sr_flags,
		   const struct sr_key *key, struct pvm_ckpt_save_stats *st_out,
		   struct pvm_error *e)
{
	struct pvm_ckpt_save_stats local;
	struct pvm_ckpt_save_stats *st = st_out ? st_out : &local;
	struct sr_out o = { 0 };
	struct sr_config c;
	struct sr_state state;
	struct sr_devs devs;
	struct pvm_bitmap bm = { 0 };
	struct pvm_hv *hv = NULL;
	uint8_t *bounce = NULL; /* live: a private copy of each batch, owned */
	bool live, logdirty = false, paused = false, committed = false;
	uint64_t t0 = pvm_now_ns(), tp = 0;
	int rc;

	memset(st, 0, sizeof(*st));
	pvm_ckpt__state_init(&state);
	pvm_ckpt__devs_init(&devs, NULL);
	if (!cfg || !cfg->hv || !cfg->path || !*cfg->path ||
	    (cfg->flags & ~(PVM_CKPT_SAVE_LIVE | PVM_CKPT_SAVE_KEEP |
			    PVM_CKPT_SAVE_LZ4 | PVM_CKPT_SAVE_DIGEST))) {
		rc = pvm_error_set(e, -EINVAL, "bad save arguments");
		goto out;
	}
	hv = cfg->hv;
	live = cfg->flags & PVM_CKPT_SAVE_LIVE;
	if (save_config(cfg, as, &c, e))
		goto out_rc;
	pvm_ckpt__devs_dispose(&devs);
	pvm_ckpt__devs_init(&devs, &c.dev);
	devs.mode = (enum pvm_pvq_mode)cfg->pv_mode;
	if (pvm_bitmap_init(&bm, c.nr_pages)) {
		rc = pvm_error_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	if (pvm_ckpt__out_open(&o, cfg->path, cfg->flags & PVM_CKPT_SAVE_LZ4,
			       key, &c, e))
		goto out_rc;

	if (live) {
		if (logdirty_on(cfg, sr_flags, e))
			goto out_abort;
		logdirty = true;
		bounce = malloc((size_t)SR_BATCH * PVM_PAGE_SIZE);
		if (!bounce) {
			pvm_error_set(e, -ENOMEM, "out of memory");
			goto out_abort;
		}
		if (precopy(cfg, &o, &bm, c.nr_pages, bounce, st, e))
			goto out_abort;
	}

	/* The guest's own suspend first (it stops its frontends), then
	 * the pause; a guest that does not answer is quiesced anyway. */
	if (pvm_ckpt__devs_suspend(&devs, hv, cfg->domid,
				   cfg->suspend_timeout_ms
				       ? cfg->suspend_timeout_ms
				       : PVM_PVQ_SUSPEND_TIMEOUT_MS,
				   st->suspend, sizeof(st->suspend), e))
		goto out_abort;
	st->suspend_ms = devs.susp.ms;
	rc = hv->ops->domain_pause(hv, cfg->domid);
	if (rc) {
		pvm_error_set(e, rc, "domain %u: cannot pause it: %s",
			      cfg->domid, strerror(-rc));
		goto out_abort;
	}
	paused = true;
	tp = pvm_now_ns();
	/* Drained before the last dirty read: the responses the backends
	 * write go into this image. */
	if (pvm_ckpt__devs_quiesce(&devs, hv, cfg->domid, cfg->xs,
				   cfg->drain_timeout_ms, e))
		goto out_abort;
	st->devices = (uint32_t)devs.n;
	if (copy_paused(cfg, &o, &bm, c.nr_pages, live, st, e) ||
	    write_state(cfg, &o, &c, &state, &devs, st, e))
		goto out_abort;
	if (cfg->flags & PVM_CKPT_SAVE_KEEP) {
		/* Everything is in the writer's hands: the guest may run
		 * while the file is finished and synced. */
		pvm_ckpt__devs_resume(&devs, hv, cfg->domid);
		rc = hv->ops->domain_unpause(hv, cfg->domid);
		paused = false;
		st->pause_ns = pvm_now_ns() - tp;
		if (rc) {
			pvm_error_set(e, rc, "domain %u: cannot unpause it: %s",
				      cfg->domid, strerror(-rc));
			goto out_abort;
		}
	}
	st->bytes = pvm_ckpt_writer_offset(o.w);
	if (pvm_ckpt__out_commit(&o, e))
		goto out_abort;
	committed = true;
	st->bytes += 16; /* the END records written by commit */
	if (!(cfg->flags & PVM_CKPT_SAVE_KEEP)) {
		rc = hv->ops->domain_destroy(hv, cfg->domid);
		st->pause_ns = pvm_now_ns() - tp;
		paused = false;
		if (rc) {
			/* The file is complete; the guest is still paused.
			 * Say so rather than resume a guest that is also
			 * on disk. */
			pvm_error_set(e, rc,
				      "saved to %s, but cannot destroy "
				      "domain %u: %s (it is left paused)",
				      cfg->path, cfg->domid, strerror(-rc));
			goto out_rc;
		}
	}
	rc = 0;
	goto out;

out_abort:
	pvm_ckpt__out_abort(&o);
out_rc:
	rc = held(e);
out:
	if (logdirty && !(committed && !(cfg->flags & PVM_CKPT_SAVE_KEEP)) &&
	    !((sr_flags & SR_SAVE_KEEP_LOGDIRTY) && rc == 0))
		hv->ops->logdirty_disable(hv, cfg->domid);
	if (paused && !committed) {
		pvm_ckpt__devs_resume(&devs, hv, cfg->domid);
		hv->ops->domain_unpause(hv, cfg->domid);
		if (tp)
			st->pause_ns = pvm_now_ns() - tp;
	}
	if (rc && hv && !committed)
		pvm_pvq_suspend_cancel(hv, cfg->domid); /* failed before the pause */
	pvm_ckpt__state_dispose(&state);
	pvm_ckpt__devs_dispose(&devs);
	pvm_bitmap_dispose(&bm);
	free(bounce);
	st->total_ns = pvm_now_ns() - t0;
	return rc;
}
