/*
 * Restoring a domain, and inspecting save files and checkpoint directories.
 *
 *   pvm_ckpt_restore()
 *     pvm_ckpt__in_open()          the xl header and its config (which domain)
 *     check the name        unique on the host, as with xl
 *     domain_create         paused; the saved domid if free
 *     pvm_ckpt_read()       pages go into the domain as they arrive
 *                           (batched through map_pages WRITE); the last
 *                           vCPU/event-channel/grant state is kept aside
 *     [dir] each committed delta stream, in epoch order, the same way
 *     load state            only now: every stream's checksum matched
 *     PV devices            the newest stream's PVMIG_DEVICE records:
 *                           pvm_pvq_reconnect (legacy: the captured
 *                           backends re-attached), then the legacy
 *                           guest's xenstore subtree imported
 *     unpause               unless asked to stay paused; then wait
 *                           (bounded) for every device to be Connected
 *
 * Any failure destroys the new domain; nothing else on the host changes.
 *
 *   pvm_ckpt_inspect()     the same walk with no hypervisor (verify)
 */
#include "checkpoint/internal.h"
#include "hv/xen/xen.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the config header -------------------------------------------------- */

static int unhex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		out[i] = (uint8_t)v;
	}
	return s[2 * n] == '\0' ? 0 : -EINVAL;
}

/* "vdev=xvda,access=rw,target=/path" (target last: it may hold commas). */
static int parse_disk(const char *v, struct pvm_ckpt_devices *d)
{
	char vdev[16], access[4];
	const char *t = strstr(v, ",target=");
	int n = 0;

	if (d->nr_disks >= PVM_CKPT_DISKS_MAX || !t ||
	    sscanf(v, "vdev=%15[^,],access=%3[^,]%n", vdev, access, &n) != 2 ||
	    v + n != t || (strcmp(access, "rw") && strcmp(access, "ro")) ||
	    !t[8] || strlen(t + 8) >= sizeof(d->disks[0].path))
		return -EINVAL;
	memcpy(d->disks[d->nr_disks].vdev, vdev, sizeof(vdev));
	strcpy(d->disks[d->nr_disks].path, t + 8);
	d->disks[d->nr_disks].readonly = !strcmp(access, "ro");
	d->nr_disks++;
	return 0;
}

/* "mac=00:16:3e:01:02:03[,bridge=NAME]". */
static int parse_nic(const char *v, struct pvm_ckpt_devices *d)
{
	unsigned m[6];
	char bridge[32] = "";
	int n = 0;

	if (d->nr_nics >= PVM_CKPT_NICS_MAX ||
	    sscanf(v, "mac=%2x:%2x:%2x:%2x:%2x:%2x%n", &m[0], &m[1], &m[2],
		   &m[3], &m[4], &m[5], &n) != 6)
		return -EINVAL;
	if (v[n] && (strncmp(v + n, ",bridge=", 8) || !v[n + 8] ||
		     strlen(v + n + 8) >= sizeof(bridge)))
		return -EINVAL;
	if (v[n])
		strcpy(bridge, v + n + 8);
	for (int i = 0; i < 6; i++)
		d->nics[d->nr_nics].mac[i] = (uint8_t)m[i];
	memcpy(d->nics[d->nr_nics].bridge, bridge, sizeof(bridge));
	d->nr_nics++;
	return 0;
}

static int set_str(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (n >= size)
		return -E2BIG;
	memcpy(dst, src, n + 1);
	return 0;
}

/* Parses the config text (@len bytes, NUL padding allowed at the end). */
/* The checksum line @line (at @off in @text) against the text before it. */
static int check_config_sum(const char *text, size_t off, char *line,
			    const char *path, struct pvm_error *e)
{
	uint8_t want[PVM_CKPT_DIGEST_LEN], got[PVM_CKPT_DIGEST_LEN];
	char *q = strchr(line + 23, '"');
	struct pvm_ckpt_digest d;
	int rc;

	pvm_ckpt_digest_init(&d);
	rc = pvm_ckpt_digest_start(&d);
	if (!rc) {
		pvm_ckpt_digest_update(&d, text, off);
		rc = pvm_ckpt_digest_peek(&d, got);
	}
	pvm_ckpt_digest_dispose(&d);
	if (rc)
		return pvm_error_set(e, rc, "cannot compute a digest");
	if (!q || q[1] ||
	    (*q = '\0', unhex(line + 23, want, sizeof(want))))
		return pvm_error_set(e, -EBADMSG,
				     "%s: config checksum line is damaged",
				     path);
	if (memcmp(want, got, sizeof(got)))
		return pvm_error_set(e, -EBADMSG,
				     "%s: the domain config in the xl header "
				     "is damaged (checksum mismatch)",
				     path);
	return 0;
}

/* A quoted value: 0, or -EINVAL when it is not valid for @key. */
static int set_quoted(struct sr_config *c, const char *key, const char *val)
{
	if (!strcmp(key, "name"))
		return set_str(c->name, sizeof(c->name), val);
	if (!strcmp(key, "pvmig_image"))
		return set_str(c->image, sizeof(c->image), val);
	if (!strcmp(key, "pvmig_kind"))
		return set_str(c->kind, sizeof(c->kind), val);
	if (!strcmp(key, "pvmig_chain"))
		return set_str(c->chain, sizeof(c->chain), val);
	if (!strcmp(key, "pvmig_frontend")) {
		if (!strcmp(val, "legacy"))
			c->dev.frontend_gen = PVM_HV_FRONTEND_LEGACY;
		return !strcmp(val, "legacy") || !strcmp(val, "modern")
			   ? 0
			   : -EINVAL;
	}
	if (!strncmp(key, "pvmig_disk", 10) &&
	    (unsigned)atoi(key + 10) == c->dev.nr_disks)
		return parse_disk(val, &c->dev);
	if (!strncmp(key, "pvmig_nic", 9) &&
	    (unsigned)atoi(key + 9) == c->dev.nr_nics)
		return parse_nic(val, &c->dev);
	if (!strncmp(key, "pvmig_disk", 10) || !strncmp(key, "pvmig_nic", 9))
		return -EINVAL; /* out of order or too many */
	return 0;
}

/* A number; keys pvmig does not know are ignored. */
static void set_number(struct sr_config *c, const char *key,
		       unsigned long long num, bool *have_pages)
{
	if (!strcmp(key, "vcpus")) {
		c->nr_vcpus = num > 64 ? 0 : (uint32_t)num;
	} else if (!strcmp(key, "pvmig_nr_pages")) {
		c->nr_pages = num;
		*have_pages = true;
	} else if (!strcmp(key, "pvmig_domid")) {
		c->domid = num > PVM_HV_DOMID_MAX ? 0 : (uint32_t)num;
	} else if (!strcmp(key, "pvmig_device_state")) {
		c->dev_state = num == 1;
	} else if (!strcmp(key, "pvmig_epoch")) {
		c->epoch = num > SR_EPOCHS_MAX ? UINT32_MAX : (uint32_t)num;
	}
}

static int parse_config(const char *text, size_t len, struct sr_config *c,
			const char *path, struct pvm_error *e)
{
	bool have_sum = false, have_pages = false;
	size_t off = 0;
	int rc;

	memset(c, 0, sizeof(*c));
	while (len && text[len - 1] == '\0')
		len--;
	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t ll = nl ? (size_t)(nl - (text + off)) : len - off;
		char line[512], key[64], val[400], *eq, *end;
		const char *v;
		unsigned long long num;

		if (ll >= sizeof(line))
			return pvm_error_set(e, -EBADMSG,
					     "%s: config line at offset "
					     "%zu is too long",
					     path, off);
		memcpy(line, text + off, ll);
		line[ll] = '\0';
		if (!strncmp(line, "pvmig_config_sha256 = \"", 23)) {
			if (check_config_sum(text, off, line, path, e))
				return e->rc;
			have_sum = true;
			off += ll + (nl ? 1 : 0);
			if (off < len)
				return pvm_error_set(e, -EBADMSG,
						     "%s: config text "
						     "after its checksum",
						     path);
			break;
		}
		off += ll + (nl ? 1 : 0);
		if (!ll || line[0] == '#')
			continue;
		eq = strstr(line, " = ");
		if (!eq || eq == line || (size_t)(eq - line) >= sizeof(key))
			return pvm_error_set(e, -EBADMSG,
					     "%s: bad config line '%s'", path,
					     line);
		memcpy(key, line, (size_t)(eq - line));
		key[eq - line] = '\0';
		v = eq + 3;
		if (v[0] == '"') {
			size_t vl = strlen(v);

			if (vl < 2 || v[vl - 1] != '"' ||
			    memchr(v + 1, '"', vl - 2) || vl - 2 >= sizeof(val))
				return pvm_error_set(e, -EBADMSG,
						     "%s: bad config "
						     "line '%s'",
						     path, line);
			memcpy(val, v + 1, vl - 2);
			val[vl - 2] = '\0';
			rc = set_quoted(c, key, val);
			if (rc)
				return pvm_error_set(e, -EBADMSG,
						     "%s: bad config "
						     "value of '%s'",
						     path, key);
			continue;
		}
		errno = 0;
		num = strtoull(v, &end, 10);
		if (v[0] >= '0' && v[0] <= '9' && !*end && !errno) {
			set_number(c, key, num, &have_pages);
			continue;
		}
		return pvm_error_set(e, -EBADMSG, "%s: bad config line '%s'",
				     path, line);
	}
	if (!have_sum)
		return pvm_error_set(e, -EBADMSG,
				     "%s: the domain config has no "
				     "checksum line (damaged or not written by "
				     "pvmig)",
				     path);
	if (!c->name[0] || !have_pages || !c->nr_pages ||
	    c->nr_pages > (1ull << 28) || !c->nr_vcpus ||
	    (strcmp(c->kind, SR_KIND_FULL) && strcmp(c->kind, SR_KIND_BASE) &&
	     strcmp(c->kind, SR_KIND_DELTA)))
		return pvm_error_set(
		    e, -EBADMSG,
		    "%s: the domain config lacks a "
		    "name, a size (1 page .. 1 TiB), vCPUs or a "
		    "known kind",
		    path);
	return 0;
}

/* Bytes of the (unsealed, decompressed) file, after pre[]. */
static int raw_read(struct sr_in *in, void *buf, size_t len, size_t *got_out)
{
	if (in->unseal)
		return pvm_ckpt__unseal_read(in->unseal, buf, len, got_out);
	return pvm_ckpt_file_read(in->file, buf, len, got_out);
}

/* Fills pre[] from the start of the file. */
static int read_pre(struct sr_in *in, const char *path, struct pvm_error *e)
{
	size_t got = 0, n;
	int rc;

	while (got < sizeof(in->pre)) {
		rc = raw_read(in, in->pre + got, sizeof(in->pre) - got, &n);
		if (rc && pvm_ckpt__unseal_error(in->unseal))
			return pvm_error_set(
			    e, rc, "%s: %s", path,
			    pvm_ckpt__unseal_error(in->unseal));
		if (rc)
			return pvm_error_set(
			    e, rc, "%s: cannot read: %s%s", path, strerror(-rc),
			    rc == -EBADMSG ? " (damaged lz4 frame)" : "");
		if (!n)
			break;
		got += n;
	}
	in->pre_len = got;
	in->pre_off = 0;
	return 0;
}

int pvm_ckpt__in_open(struct sr_in *in, const char *path,
		      const struct sr_key *key, struct sr_config *c,
		      bool *has_config_out, struct pvm_error *e)
{
	struct stat st;
	struct pvm_ckpt_xlhdr x;
	char *text = NULL, msg[160];
	const uint8_t *cfg;
	uint32_t optlen, cfglen;
	size_t got = 0, n;
	int rc;

	memset(in, 0, sizeof(*in));
	*has_config_out = false;
	if (stat(path, &st) == 0)
		in->size = (uint64_t)st.st_size;
	rc = pvm_ckpt_file_open(path, &in->file);
	if (rc)
		return pvm_error_set(e, rc, "cannot open %s: %s", path,
				     strerror(-rc));
	in->lz4 = pvm_ckpt_file_is_lz4(in->file);
	rc = read_pre(in, path, e);
	if (rc)
		goto out_close;
	if (pvm_ckpt__is_sealed(in->pre, in->pre_len)) {
		/* Encrypted: start again through the unsealing reader. */
		pvm_ckpt_file_close(in->file);
		in->file = NULL;
		in->sealed = true;
		rc = pvm_ckpt__unseal_open(path, key, &in->unseal, e);
		if (rc)
			goto out_close;
		in->lz4 = pvm_ckpt__unseal_is_lz4(in->unseal);
		rc = read_pre(in, path, e);
		if (rc)
			goto out_close;
	}
	if (pvm_ckpt_xlhdr_decode(in->pre, in->pre_len, &x, NULL, 0))
		return 0; /* no (usable) xl header: the stream reader judges it */
	optlen = x.optlen;
	text = malloc((size_t)optlen + 1);
	if (!text) {
		rc = pvm_error_set(e, -ENOMEM, "out of memory");
		goto out_close;
	}
	for (got = 0; got < optlen; got += n) {
		rc = raw_read(in, text + got, optlen - got, &n);
		if (!rc && !n)
			rc = -EBADMSG;
		if (rc) {
			pvm_error_set(e, rc,
				      "%s: truncated in the xl header's "
				      "config data",
				      path);
			goto out_close;
		}
	}
	rc = pvm_ckpt_xlhdr_config((const uint8_t *)text, optlen, &cfg, &cfglen,
				   msg, sizeof(msg));
	if (rc) {
		pvm_error_set(e, rc, "%s: %s", path, msg);
		goto out_close;
	}
	/* The xl header is consumed; the stream starts at the libxl header. */
	in->pre_len = in->pre_off = 0;
	in->xl_mandatory = x.mandatory;
	if (cfglen < 8 || memcmp(cfg, "# pvmig ", 8) ||
	    (x.mandatory & PVM_CKPT_XL_MANDATORY_JSON)) {
		/* xl's own config (an `xl save` file, or a pvmig save on Xen,
		 * which writes what xl writes): kept for a restore through
		 * libxl; there is no pvmig config. */
		memmove(text, cfg, cfglen);
		text[cfglen] = '\0'; /* cfglen <= optlen */
		in->xl_config = text;
		in->xl_config_len = cfglen;
		return 0;
	}
	rc = parse_config((const char *)cfg, cfglen, c, path, e);
	if (rc)
		goto out_close;
	*has_config_out = true;
	free(text);
	return 0;

out_close:
	free(text);
	pvm_ckpt__in_close(in);
	return rc;
}

int pvm_ckpt__in_read(void *ctx, void *buf, size_t len, size_t *got_out)
{
	struct sr_in *in = ctx;

	if (in->pre_off < in->pre_len) {
		size_t k = in->pre_len - in->pre_off;

		if (k > len)
			k = len;
		memcpy(buf, in->pre + in->pre_off, k);
		in->pre_off += k;
		*got_out = k;
		return 0;
	}
	return raw_read(in, buf, len, got_out);
}

void pvm_ckpt__in_close(struct sr_in *in)
{
	free(in->xl_config);
	in->xl_config = NULL;
	pvm_ckpt_file_close(in->file);
	in->file = NULL;
	pvm_ckpt__unseal_close(in->unseal);
	in->unseal = NULL;
}

/* After the stream's END: the file must end too. */
static int check_eof(struct sr_in *in, const char *path, struct pvm_error *e)
{
	uint8_t extra;
	size_t got = 0;
	int rc = pvm_ckpt__in_read(in, &extra, 1, &got);

	if (rc)
		return pvm_error_set(e, rc, "%s: after the stream: %s", path,
				     pvm_ckpt__unseal_error(in->unseal)
					 ? pvm_ckpt__unseal_error(in->unseal)
					 : strerror(-rc));
	if (got)
		return pvm_error_set(e, -EBADMSG,
				     "%s: bytes after the final END "
				     "record (damaged or appended to)",
				     path);
	return 0;
}

/* The stream-level error of a read of @in (NULL: not a file), as a
 * message: a handler's error if one failed first, else what made the
 * unsealing fail, else the reader's. */
static int read_fail(struct pvm_error *e, const struct sr_in *in,
		     const char *path, const struct pvm_ckpt_info *info,
		     int rc)
{
	if (e->rc)
		return e->rc; /* a handler of ours failed first */
	if (in && in->unseal && pvm_ckpt__unseal_error(in->unseal))
		return pvm_error_set(e, rc, "%s: %s", path,
				     pvm_ckpt__unseal_error(in->unseal));
	return pvm_error_set(e, rc, "%s: %s", path,
			     info->error_msg[0] ? info->error_msg
						: strerror(-rc));
}

/* ---- the restore reader's handlers --------------------------------------- */

struct rctx {
	struct pvm_hv *hv;
	uint32_t domid;
	uint64_t nr_pages;
	struct pvm_error *e;
	/* a batch of pages waiting for one map_pages(WRITE) */
	uint64_t pfns[SR_BATCH];
	uint8_t *stage; /* SR_BATCH pages, owned */
	size_t n;
	uint64_t pages;
	/* the newest state seen, applied after the last stream */
	struct pvm_buf vcpus;
	struct pvm_ckpt_evtchn *evtchns; /* owned */
	size_t nr_evtchns;
	bool have_evtchns;
	struct pvm_ckpt_grant *grants;   /* owned */
	struct pvm_ckpt_grant_table gt;
	bool have_grants;
	/* progress */
	const struct pvm_ckpt_restore_cfg *cfg;
	uint64_t bytes_before, total_bytes, next_report;
	struct sr_in *in;
	/* PV device state of the newest stream */
	struct sr_devs devs;
};

static int flush(struct rctx *x)
{
	int errs[SR_BATCH];
	void *map;
	int rc;

	if (!x->n)
		return 0;
	rc = x->hv->ops->map_pages(x->hv, x->domid, PVM_HV_MAP_WRITE, x->pfns,
				   x->n, errs, &map);
	if (rc)
		return pvm_error_set(x->e, rc,
				     "domain %u: cannot map pages to fill "
				     "them: %s",
				     x->domid, strerror(-rc));
	for (size_t i = 0; i < x->n; i++) {
		if (errs[i]) {
			rc = pvm_error_set(x->e, errs[i],
					   "domain %u: cannot map "
					   "pfn %llu: %s",
					   x->domid,
					   (unsigned long long)x->pfns[i],
					   strerror(-errs[i]));
			break;
		}
		memcpy((uint8_t *)map + i * PVM_PAGE_SIZE,
		       x->stage + i * PVM_PAGE_SIZE, PVM_PAGE_SIZE);
	}
	x->hv->ops->unmap_pages(x->hv, map, x->n);
	x->pages += x->n;
	x->n = 0;
	return rc;
}

static void progress(struct rctx *x)
{
	struct pvm_ckpt_progress p = { .phase = "restore" };
	uint64_t off = x->bytes_before;

	if (!x->cfg->progress)
		return;
	/* pvm_ckpt_file_read counts nothing for us: estimate by pages. */
	off += x->pages * (PVM_PAGE_SIZE + 8);
	if (off < x->next_report)
		return;
	x->next_report = off + (16u << 20);
	p.done = x->pages;
	p.total = x->nr_pages;
	p.bytes = off;
	x->cfg->progress(x->cfg->progress_ctx, &p);
}

static int on_page(void *ctx, uint64_t pfn, unsigned type, const void *data)
{
	struct rctx *x = ctx;

	if (!data)
		return 0; /* XALLOC/XTAB/BROKEN: fresh memory is zero */
	x->pfns[x->n] = pfn;
	memcpy(x->stage + x->n * PVM_PAGE_SIZE, data, PVM_PAGE_SIZE);
	if (++x->n == SR_BATCH) {
		int rc = flush(x);

		progress(x);
		return rc;
	}
	return 0;
}

static int on_meta(void *ctx, const struct pvm_ckpt_meta *m)
{
	struct rctx *x = ctx;

	if (m->nr_pages != x->nr_pages)
		return pvm_error_set(x->e, -EBADMSG,
				     "META says %llu pages, the "
				     "config %llu: the file is inconsistent",
				     (unsigned long long)m->nr_pages,
				     (unsigned long long)x->nr_pages);
	return 0;
}

static int on_hvm_context(void *ctx, const void *blob, size_t len)
{
	struct rctx *x = ctx;

	pvm_buf_reset(&x->vcpus);
	pvm_buf_put_bytes(&x->vcpus, blob, len);
	return x->vcpus.err
		   ? pvm_error_set(x->e, -E2BIG, "HVM_CONTEXT too large")
		   : 0;
}

static int on_evtchns(void *ctx, const struct pvm_ckpt_evtchn *v, size_t n)
{
	struct rctx *x = ctx;
	struct pvm_ckpt_evtchn *copy = malloc((n ? n : 1) * sizeof(*v));

	if (!copy)
		return pvm_error_set(x->e, -ENOMEM, "out of memory");
	memcpy(copy, v, n * sizeof(*v));
	free(x->evtchns);
	x->evtchns = copy;
	x->nr_evtchns = n;
	x->have_evtchns = true;
	return 0;
}

static int on_grants(void *ctx, const struct pvm_ckpt_grant_table *g)
{
	struct rctx *x = ctx;
	struct pvm_ckpt_grant *copy =
		malloc((g->count ? g->count : 1) * sizeof(*copy));

	if (!copy)
		return pvm_error_set(x->e, -ENOMEM, "out of memory");
	memcpy(copy, g->entries, g->count * sizeof(*copy));
	free(x->grants);
	x->grants = copy;
	x->gt = *g;
	x->gt.entries = copy;
	x->have_grants = true;
	return 0;
}

static int on_device(void *ctx, const struct pvm_ckpt_device *d)
{
	struct rctx *x = ctx;

	return pvm_ckpt__devs_on_record(&x->devs, d, x->e);
}

static int on_xenstore(void *ctx, const void *image, size_t len)
{
	struct rctx *x = ctx;

	return pvm_ckpt__devs_on_xenstore(&x->devs, image, len, x->e);
}

static const struct pvm_ckpt_read_ops restore_ops = {
	.meta = on_meta,
	.page = on_page,
	.hvm_context = on_hvm_context,
	.evtchns = on_evtchns,
	.grants = on_grants,
	.device = on_device,
	.xenstore = on_xenstore,
};

/* ---- loading the state --------------------------------------------------- */

#define SR_VCPU_MAGIC 0x636d7670u

static int load_vcpus(struct rctx *x, uint32_t nr_vcpus)
{
	struct pvm_cursor c;
	uint32_t magic = 0, count = 0;

	pvm_cursor_init(&c, x->vcpus.data, x->vcpus.len);
	pvm_cursor_u32(&c, &magic);
	pvm_cursor_u32(&c, &count);
	if (c.err || magic != SR_VCPU_MAGIC || count != nr_vcpus)
		return pvm_error_set(x->e, -EBADMSG,
				     "HVM_CONTEXT: not pvmig's vCPU "
				     "state for %u vCPUs",
				     nr_vcpus);
	for (uint32_t i = 0; i < count; i++) {
		uint32_t v = 0, len = 0;
		const uint8_t *p = NULL;
		int rc;

		pvm_cursor_u32(&c, &v);
		pvm_cursor_u32(&c, &len);
		pvm_cursor_bytes(&c, len, &p);
		pvm_cursor_skip(&c, (8 - len % 8) % 8);
		if (c.err || v >= nr_vcpus)
			return pvm_error_set(x->e, -EBADMSG,
					     "HVM_CONTEXT: vCPU "
					     "entry %u is malformed",
					     i);
		rc = x->hv->ops->vcpu_context_set(x->hv, x->domid, v, p, len);
		if (rc)
			return pvm_error_set(x->e, rc,
					     "domain %u: cannot load vCPU "
					     "%u: %s",
					     x->domid, v, strerror(-rc));
	}
	return 0;
}

static int load_grants(struct rctx *x)
{
	struct pvm_buf cur, set;
	struct pvm_cursor c;
	uint32_t version = 0, frames = 0, nent = 0, res = 0;
	uint64_t pfn = 0;
	uint32_t *table = NULL;
	int rc;

	pvm_buf_init(&cur, SR_STATE_MAX);
	pvm_buf_init(&set, SR_STATE_MAX);
	/* The new domain's table layout, to put the saved entries in. */
	rc = x->hv->ops->grant_state_get(x->hv, x->domid, &cur);
	if (rc) {
		pvm_error_set(x->e, rc,
			      "domain %u: cannot read its grant table: %s",
			      x->domid, strerror(-rc));
		goto out;
	}
	pvm_cursor_init(&c, cur.data, cur.len);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &frames);
	pvm_cursor_u64(&c, &pfn);
	pvm_cursor_u32(&c, &nent);
	pvm_cursor_u32(&c, &res);
	if (c.err || frames != x->gt.nr_frames ||
	    nent > frames * PVM_CKPT_GRANT_V1_PER_FRAME) {
		rc = pvm_error_set(x->e, -ENOTSUP,
				   "the saved grant table has %u "
				   "frames, this host's domain %u",
				   x->gt.nr_frames, frames);
		goto out;
	}
	table = calloc(nent ? nent : 1, 8);
	if (!table) {
		rc = pvm_error_set(x->e, -ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < x->gt.count; i++) {
		const struct pvm_ckpt_grant *g = &x->grants[i];

		if (g->ref >= nent || g->frame > UINT32_MAX) {
			rc = pvm_error_set(x->e, -EBADMSG,
					   "PVMIG_GRANT: entry %u "
					   "does not fit the table",
					   g->ref);
			goto out;
		}
		table[2 * g->ref] = g->flags | ((uint32_t)g->domid << 16);
		table[2 * g->ref + 1] = (uint32_t)g->frame;
	}
	pvm_buf_put_u32(&set, version);
	pvm_buf_put_u32(&set, frames);
	pvm_buf_put_u64(&set, pfn);
	pvm_buf_put_u32(&set, nent);
	pvm_buf_put_u32(&set, 0);
	for (uint32_t i = 0; i < 2 * nent; i++)
		pvm_buf_put_u32(&set, table[i]);
	rc = set.err ? set.err
		     : x->hv->ops->grant_state_set(x->hv, x->domid, set.data,
						   set.len);
	if (rc)
		pvm_error_set(x->e, rc,
			      "domain %u: cannot load its grant table: %s",
			      x->domid, strerror(-rc));
out:
	free(table);
	pvm_buf_dispose(&cur);
	pvm_buf_dispose(&set);
	return rc;
}

static int load_evtchns(struct rctx *x)
{
	struct pvm_buf b;
	int rc;

	pvm_buf_init(&b, SR_STATE_MAX);
	pvm_buf_put_u32(&b, 1);
	pvm_buf_put_u32(&b, (uint32_t)x->nr_evtchns);
	for (size_t i = 0; i < x->nr_evtchns; i++) {
		const struct pvm_ckpt_evtchn *v = &x->evtchns[i];
		/* Record kinds back to the hv state (Xen's EVTCHNSTAT_*,
		 * docs/hv.md); the backend refuses what it cannot re-create. */
		static const uint16_t hv_state[] = {
			[PVM_CKPT_EVTCHN_UNBOUND] = 1,
			[PVM_CKPT_EVTCHN_INTERDOMAIN] = 2,
			[PVM_CKPT_EVTCHN_PIRQ] = 3,
			[PVM_CKPT_EVTCHN_VIRQ] = 4,
			[PVM_CKPT_EVTCHN_IPI] = 5,
		};

		if (v->kind >= PVM_ARRAY_SIZE(hv_state) || !hv_state[v->kind]) {
			pvm_buf_dispose(&b);
			return pvm_error_set(x->e, -ENOTSUP,
					     "event channel %u: "
					     "kind %u cannot be restored here",
					     v->port, v->kind);
		}
		pvm_buf_put_u32(&b, v->port);
		pvm_buf_put_u16(&b, hv_state[v->kind]);
		pvm_buf_put_u16(&b, v->remote_domid);
		pvm_buf_put_u32(&b, v->remote);
		pvm_buf_put_u32(&b, 0);
	}
	rc = b.err ? b.err
		   : x->hv->ops->evtchn_state_set(x->hv, x->domid, b.data,
						  b.len);
	pvm_buf_dispose(&b);
	if (rc)
		return pvm_error_set(x->e, rc,
				     "domain %u: cannot re-create its "
				     "event channels: %s",
				     x->domid, strerror(-rc));
	return 0;
}

/* ---- the walk over one stream file ---------------------------------------- */

/* Opens @path and checks its config against what the walk expects:
 * @want_kind NULL for "full or base"; @chain/@epoch for a delta. */
static int open_checked(struct sr_in *in, const char *path,
			const struct sr_key *key, struct sr_config *c,
			const char *want_kind, const struct sr_config *first,
			struct pvm_error *e)
{
	bool has;

	if (pvm_ckpt__in_open(in, path, key, c, &has, e))
		return e->rc;
	if (!has) {
		bool xen = in->xl_mandatory & PVM_CKPT_XL_MANDATORY_JSON;

		pvm_ckpt__in_close(in);
		return pvm_error_set(
		    e, -ENOTSUP,
		    "%s: no pvmig domain config (an "
		    "xl header with it comes first in every file "
		    "pvmig saves): cannot tell what domain to "
		    "create%s",
		    path,
		    xen ? "; it is a save of a "
			  "Xen domain (libxl config): restore it on a Xen "
			  "host (pvmig restore or xl restore)"
			: "");
	}
	if (!want_kind && !strcmp(c->kind, SR_KIND_DELTA)) {
		pvm_ckpt__in_close(in);
		return pvm_error_set(
		    e, -EINVAL,
		    "%s is epoch %u of a continuous "
		    "checkpoint, not a whole image: restore its "
		    "directory",
		    path, c->epoch);
	}
	if (want_kind && (strcmp(c->kind, want_kind) ||
			  (first && (strcmp(c->chain, first->chain) ||
				     c->nr_pages != first->nr_pages)))) {
		pvm_ckpt__in_close(in);
		return pvm_error_set(e, -EBADMSG,
				     "%s: not the %s of checkpoint run "
				     "%s (kind %s, run %s)",
				     path, want_kind,
				     first ? first->chain : "?", c->kind,
				     c->chain);
	}
	return 0;
}

static int read_one(struct rctx *x, struct sr_in *in, const char *path,
		    uint64_t max_pfns, struct pvm_ckpt_info *info)
{
	struct pvm_ckpt_read_cfg rc_cfg = {
	    .read = pvm_ckpt__in_read,
	    .read_ctx = in,
	    .ops = x ? &restore_ops : NULL,
	    .ops_ctx = x,
	    .max_pfns = max_pfns,
	    .max_record = PVM_CKPT_REC_LENGTH_XEN_MAX,
	    .flags = PVM_CKPT_READ_REQUIRE_CHECKSUM,
	};
	struct pvm_error *e = x->e;
	int rc;

	x->in = in;
	pvm_ckpt__devs_stream_start(&x->devs);
	rc = pvm_ckpt_read(&rc_cfg, info);
	if (rc)
		rc = read_fail(e, in, path, info, rc);
	else
		rc = check_eof(in, path, e);
	if (rc)
		return rc;
	x->bytes_before += info->bytes;
	return 0;
}

static bool name_taken(struct pvm_hv *hv, const char *name, uint32_t *domid)
{
	struct pvm_hv_dominfo *all = calloc(1024, sizeof(*all));
	size_t n = 0;
	bool taken = false;

	if (!all)
		return false;
	hv->ops->domain_list(hv, all, 1024, &n);
	for (size_t i = 0; i < n && !taken; i++)
		if (!strcmp(all[i].name, name)) {
			taken = true;
			*domid = all[i].domid;
		}
	free(all);
	return taken;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The failure @e holds, or -EIO if none was named. */
static int held(const struct pvm_error *e)
{
	return e->rc ? e->rc : -EIO;
}

/* The restored domain's name must be free on this host; a domain whose
 * devices reconnect transparently (@legacy) needs its saved domid too. */
static int check_target(struct pvm_hv *hv,
			const struct pvm_ckpt_restore_cfg *cfg,
			const struct sr_config *c, bool legacy,
			struct pvm_error *e)
{
	struct pvm_hv_dominfo other;
	uint32_t taken;

	if (name_taken(hv, c->name, &taken))
		return pvm_error_set(e, -EEXIST,
				     "a domain named '%s' exists on this host "
				     "(domid %u): destroy or rename it first",
				     c->name, taken);
	/* A legacy frontend never rewrites its xenstore nodes: their paths
	 * and ACLs name the saved domid, so it must be that. */
	if (legacy && hv->ops->domain_info(hv, c->domid, &other) == 0)
		return pvm_error_set(
		    e, -EEXIST,
		    "'%s' has %s, which need their saved domid %u back, and "
		    "domain '%s' has it on this host: destroy it first or "
		    "restore on another host",
		    c->name,
		    cfg->pv_mode == PVM_PVQ_MODE_TRANSPARENT
			? "PV devices forced to reconnect transparently"
			: "legacy PV frontends",
		    c->domid, other.name);
	return 0;
}

/* Creates the domain @c describes, paused, with its devices: the saved
 * domid if it is free (only that one when @legacy), else any. */
static int create_domain(struct pvm_hv *hv, const struct sr_config *c,
			 bool legacy, uint32_t *domid_out, struct pvm_error *e)
{
	struct pvm_hv_domain_config dc = { 0 };
	int rc;

	dc.domid = c->domid ? c->domid : PVM_HV_DOMID_ANY;
	dc.nr_pages = c->nr_pages;
	dc.nr_vcpus = c->nr_vcpus;
	dc.start_paused = true;
	dc.name = c->name;
	dc.image = c->image[0] ? c->image : NULL;
	dc.frontend_gen = (enum pvm_hv_frontend_gen)c->dev.frontend_gen;
	dc.nr_disks = c->dev.nr_disks;
	for (uint32_t i = 0; i < c->dev.nr_disks; i++) {
		dc.disks[i].path = c->dev.disks[i].path;
		dc.disks[i].vdev = c->dev.disks[i].vdev;
		dc.disks[i].readonly = c->dev.disks[i].readonly;
	}
	dc.nr_nics = c->dev.nr_nics;
	for (uint32_t i = 0; i < c->dev.nr_nics; i++) {
		memcpy(dc.nics[i].mac, c->dev.nics[i].mac, 6);
		dc.nics[i].bridge =
		    c->dev.nics[i].bridge[0] ? c->dev.nics[i].bridge : NULL;
	}
	rc = hv->ops->domain_create(hv, &dc, domid_out);
	if (rc == -EEXIST && !legacy) {
		dc.domid = PVM_HV_DOMID_ANY; /* the old domid is taken */
		rc = hv->ops->domain_create(hv, &dc, domid_out);
	}
	if (rc)
		return pvm_error_set(e, rc,
				     "cannot create domain '%s' (%llu MiB, %u "
				     "vCPUs): %s",
				     c->name,
				     (unsigned long long)(c->nr_pages >> 8),
				     c->nr_vcpus, strerror(-rc));
	return 0;
}

/* Reads the file open in @in (@path, config @first), then, for a
 * directory (@m), every committed epoch after it in order. @in is closed
 * on return; @path names the last file read. */
static int read_streams(struct rctx *x, struct sr_in *in, char *path,
			size_t path_len, const struct sr_manifest *m,
			const struct sr_config *first, const struct sr_key *kp,
			struct pvm_ckpt_restore_stats *st)
{
	struct pvm_error *e = x->e;
	struct pvm_ckpt_info info;
	struct sr_config c;

	if (read_one(x, in, path, first->nr_pages, &info))
		goto out_close;
	pvm_ckpt__in_close(in);
	st->files = 1;
	for (uint32_t ep = 1; m && ep <= m->epoch; ep++) {
		pvm_ckpt__epoch_path(path, path_len, x->cfg->path, m->chain, ep,
				     m->lz4);
		if (open_checked(in, path, kp, &c, SR_KIND_DELTA, first, e))
			return held(e);
		if (c.epoch != ep) {
			pvm_error_set(e, -EBADMSG,
				      "%s: holds epoch %u, expected %u", path,
				      c.epoch, ep);
			goto out_close;
		}
		if (read_one(x, in, path, c.nr_pages, &info))
			goto out_close;
		pvm_ckpt__in_close(in);
		st->files++;
	}
	return 0;

out_close:
	pvm_ckpt__in_close(in);
	return held(e);
}

/* Every stream's checksum matched: now the state may go in. Memory,
 * vCPUs, event channels and grants first, so that the devices' rings and
 * ports are where the backends will find them; then the devices; then
 * the unpause, unless the caller wants the domain paused. */
static int load_and_start(struct rctx *x, const struct sr_config *first,
			  const char *path, struct pvm_ckpt_restore_stats *st)
{
	const struct pvm_ckpt_restore_cfg *cfg = x->cfg;
	struct pvm_hv *hv = x->hv;
	struct pvm_error *e = x->e;
	int rc;

	if (flush(x))
		return held(e);
	if (!x->vcpus.len)
		return pvm_error_set(e, -EBADMSG,
				     "%s: no HVM_CONTEXT (vCPU state)", path);
	if (load_vcpus(x, first->nr_vcpus) ||
	    (x->have_grants && load_grants(x)) ||
	    (x->have_evtchns && x->nr_evtchns && load_evtchns(x)))
		return held(e);
	if (cfg->digest) {
		if (pvm_ckpt__mem_digest(hv, x->domid, first->nr_pages,
					 st->mem_digest, e))
			return held(e);
		st->has_digest = true;
	}
	if (pvm_ckpt__devs_reconnect(&x->devs, hv, x->domid, cfg->xs,
				     first->dev_state, path, e))
		return held(e);
	if (cfg->paused) {
		if (x->devs.n)
			snprintf(st->devices_msg, sizeof(st->devices_msg),
				 "%zu %s; they connect when it is unpaused",
				 x->devs.n,
				 x->devs.reconnected ? "restored"
						     : "re-created afresh");
		return 0;
	}
	rc = hv->ops->domain_unpause(hv, x->domid);
	if (rc)
		return pvm_error_set(e, rc, "domain %u: cannot unpause it: %s",
				     x->domid, strerror(-rc));
	pvm_ckpt__devs_wait(&x->devs, hv, x->domid,
			    cfg->reconnect_ms ? cfg->reconnect_ms : 5000,
			    st->devices_msg, sizeof(st->devices_msg));
	return 0;
}

int pvm_ckpt_restore(const struct pvm_ckpt_restore_cfg *cfg,
		     struct pvm_ckpt_restore_stats *st_out)
{
	struct pvm_ckpt_restore_stats local;
	struct pvm_ckpt_restore_stats *st = st_out ? st_out : &local;
	struct pvm_error e;
	struct rctx x = { 0 };
	struct sr_manifest m = { 0 };
	struct sr_config c;
	struct sr_in in = { 0 };
	struct sr_key key = { 0 };
	const struct sr_key *kp = &key; /* loaded only with a key file */
	struct pvm_hv *hv;
	char path[4096];
	bool created = false, dir, legacy = false;
	uint64_t t0 = pvm_now_ns();
	int rc;

	memset(st, 0, sizeof(*st));
	pvm_error_init(&e);
	pvm_buf_init(&x.vcpus, SR_STATE_MAX);
	pvm_ckpt__devs_init(&x.devs, NULL);
	if (!cfg || !cfg->hv || !cfg->path) {
		rc = pvm_error_set(&e, -EINVAL, "bad restore arguments");
		goto out;
	}
	hv = cfg->hv;
	x.hv = hv;
	x.e = &e;
	x.cfg = cfg;
	dir = is_dir(cfg->path);
	if (dir) {
		if (pvm_ckpt__manifest_read(cfg->path, &m, &e))
			goto out_rc;
		pvm_ckpt__epoch_path(path, sizeof(path), cfg->path, m.chain, 0,
				     m.lz4);
	} else {
		snprintf(path, sizeof(path), "%s", cfg->path);
	}
	if (cfg->key_file && pvm_ckpt__key_load(cfg->key_file, &key, &e))
		goto out_rc;
	if (pvm_hv_is_xen(hv)) {
		/* PV guests on Xen: libxenguest's stream, through libxl. */
		if (dir)
			pvm_ckpt__xen_restore_dir(cfg, cfg->path, &m, kp, st,
						  &e);
		else
			pvm_ckpt__xen_restore(cfg, path, kp, st, &e);
		rc = e.rc;
		goto out;
	}
	if (open_checked(&in, path, kp, &c, dir ? SR_KIND_BASE : NULL, NULL,
			 &e))
		goto out_rc;
	if (dir && (strcmp(c.chain, m.chain) || c.nr_pages != m.nr_pages)) {
		pvm_error_set(&e, -EBADMSG,
			      "%s: does not belong to the manifest's "
			      "checkpoint run %s",
			      path, m.chain);
		goto out_close;
	}
	/* Transparent reconnects need the saved domid: legacy frontends
	 * (as recorded unless forced otherwise) or a forced transparent. */
	legacy = ((c.dev.frontend_gen == PVM_HV_FRONTEND_LEGACY &&
		   cfg->pv_mode != PVM_PVQ_MODE_COOPERATIVE) ||
		  cfg->pv_mode == PVM_PVQ_MODE_TRANSPARENT) && c.domid;
	if (check_target(hv, cfg, &c, legacy, &e))
		goto out_close;
	pvm_ckpt__devs_dispose(&x.devs);
	pvm_ckpt__devs_init(&x.devs, &c.dev);
	x.devs.mode = (enum pvm_pvq_mode)cfg->pv_mode;
	x.devs.saved_domid = c.domid;
	x.stage = malloc((size_t)SR_BATCH * PVM_PAGE_SIZE);
	if (!x.stage) {
		rc = pvm_error_set(&e, -ENOMEM, "out of memory");
		goto out_close;
	}
	if (create_domain(hv, &c, legacy, &x.domid, &e))
		goto out_close;
	created = true;
	x.nr_pages = c.nr_pages;
	if (read_streams(&x, &in, path, sizeof(path), dir ? &m : NULL, &c, kp,
			 st) ||
	    load_and_start(&x, &c, path, st))
		goto out_rc;
	st->domid = x.domid;
	snprintf(st->name, sizeof(st->name), "%s", c.name);
	snprintf(st->image, sizeof(st->image), "%s", c.image);
	st->devices = c.dev;
	st->pages = x.pages;
	st->bytes = x.bytes_before;
	st->epoch = dir ? m.epoch : 0;
	pvm_info("restored domain %u '%s' from %s%s", x.domid, c.name,
		 cfg->path, cfg->paused ? " (paused)" : "");
	rc = 0;
	created = false;
	goto out;

out_close:
	pvm_ckpt__in_close(&in);
out_rc:
	rc = held(&e);
out:
	if (created)
		hv->ops->domain_destroy(hv, x.domid);
	free(x.stage);
	free(x.evtchns);
	free(x.grants);
	pvm_buf_dispose(&x.vcpus);
	pvm_ckpt__devs_dispose(&x.devs);
	pvm_ckpt__key_wipe(&key);
	st->total_ns = pvm_now_ns() - t0;
	pvm_error_copy(&e, st->err_msg, sizeof(st->err_msg));
	return rc;
}

/* ---- inspect --------------------------------------------------------------- */

static void add_info(struct pvm_ckpt_image *out, const struct pvm_ckpt_info *i)
{
	out->files++;
	out->pages += i->pages;
	out->records += i->records;
	out->devices += i->devices;
	out->evtchns += i->evtchns;
	out->grants += i->grants;
	out->info = *i;
}

static int inspect_file(const char *path, const struct sr_key *key,
			struct pvm_ckpt_image *out, const char *want_kind,
			const struct sr_config *first, uint32_t want_epoch,
			struct pvm_error *e)
{
	struct sr_in in;
	struct sr_config c;
	struct pvm_ckpt_info info;
	bool has = false;
	int rc;

	if (out->files == 0 && pvm_ckpt__is_sealed_file(path))
		out->encrypted = true;
	if (pvm_ckpt__in_open(&in, path, key, &c, &has, e))
		return e->rc;
	out->file_bytes += in.size;
	if (out->files == 0) {
		out->lz4 = in.lz4;
		out->encrypted = in.sealed;
	}
	if (has && out->files == 0) {
		out->has_config = true;
		snprintf(out->kind, sizeof(out->kind), "%s", c.kind);
		snprintf(out->name, sizeof(out->name), "%s", c.name);
		snprintf(out->image, sizeof(out->image), "%s", c.image);
		out->nr_pages = c.nr_pages;
		out->nr_vcpus = c.nr_vcpus;
		out->domid = c.domid;
		out->epoch = c.epoch;
		out->config_devices = c.dev;
	}
	if (want_kind && (!has || strcmp(c.kind, want_kind) ||
			  (first && (strcmp(c.chain, first->chain) ||
				     c.epoch != want_epoch)))) {
		pvm_ckpt__in_close(&in);
		return pvm_error_set(e, -EBADMSG,
				     "%s: not epoch %u of checkpoint "
				     "run %s",
				     path, want_epoch,
				     first ? first->chain : "?");
	}
	rc = pvm_ckpt_verify(pvm_ckpt__in_read, &in, has ? c.nr_pages : 0,
			     &info);
	if (rc) {
		add_info(out, &info); /* as far as the walk got */
		out->files--;
		read_fail(e, &in, path, &info, rc);
	} else if (!check_eof(&in, path, e)) {
		if (has && info.has_meta && info.meta.nr_pages != c.nr_pages)
			pvm_error_set(e, -EBADMSG,
				      "%s: META and config disagree on "
				      "the size",
				      path);
		else if (info.checksum != PVM_CKPT_CSUM_OK && has)
			pvm_error_set(e, -EBADMSG,
				      "%s: no PVMIG_CHECKSUM record", path);
		add_info(out, &info);
	}
	pvm_ckpt__in_close(&in);
	return e->rc;
}

int pvm_ckpt_inspect(const char *path, struct pvm_ckpt_image *out)
{
	return pvm_ckpt_inspect_keyed(path, NULL, out);
}

static int inspect(const char *path, const struct sr_key *key,
		   struct pvm_ckpt_image *out, struct pvm_error *e)
{
	struct sr_manifest m;
	struct sr_config first = { 0 };
	char p[4096];

	if (!is_dir(path))
		return inspect_file(path, key, out, NULL, NULL, 0, e);
	out->is_dir = true;
	if (pvm_ckpt__manifest_read(path, &m, e))
		return e->rc;
	pvm_ckpt__epoch_path(p, sizeof(p), path, m.chain, 0, m.lz4);
	if (pvm_ckpt__xen_is_epoch_file(p, key))
		return pvm_ckpt__xen_inspect_dir(path, &m, key, out, e);
	snprintf(first.chain, sizeof(first.chain), "%s", m.chain);
	if (inspect_file(p, key, out, SR_KIND_BASE, &first, 0, e))
		return e->rc;
	for (uint32_t ep = 1; ep <= m.epoch; ep++) {
		pvm_ckpt__epoch_path(p, sizeof(p), path, m.chain, ep, m.lz4);
		if (inspect_file(p, key, out, SR_KIND_DELTA, &first, ep, e))
			return e->rc;
	}
	out->epoch = m.epoch;
	snprintf(out->kind, sizeof(out->kind), "%s", "dir");
	return 0;
}

int pvm_ckpt_inspect_keyed(const char *path, const char *key_file,
			   struct pvm_ckpt_image *out)
{
	struct pvm_error e;
	struct sr_key key = { 0 };
	int rc;

	memset(out, 0, sizeof(*out));
	pvm_error_init(&e);
	if (!path)
		rc = pvm_error_set(&e, -EINVAL, "no path");
	else if (key_file && pvm_ckpt__key_load(key_file, &key, &e))
		rc = e.rc;
	else
		rc = inspect(path, &key, out, &e);
	pvm_ckpt__key_wipe(&key);
	pvm_error_copy(&e, out->err_msg, sizeof(out->err_msg));
	return rc;
}
