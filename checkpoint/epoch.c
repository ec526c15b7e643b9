/*
 * Continuous checkpoints: a directory that always holds a restorable image
 * of a running domain (docs/stream-format.md §8, docs/save-restore.md).
 *
 *   DIR/MANIFEST               which run and which epoch are committed
 *   DIR/RUN-base.pvm[.lz4]     epoch 0: a whole image (a live save)
 *   DIR/RUN-000001.pvm[.lz4]   epoch 1: the pages dirtied since epoch 0,
 *   ...                        and the vCPU/evtchn/grant state at its pause
 *
 * pvm_ckpt_continuous()
 *   base         pvm_ckpt__save(LIVE|KEEP), log-dirty left on; MANIFEST epoch
 * 0; files of older runs removed each epoch   open RUN-N.pvm.tmp (headers only)
 * → pause → quiesce the PV backends (drained, captured) → logdirty_read_clear →
 *                copy the dirty pages into the stage buffer (past its
 *                size: straight into the file) → state → resume the
 *                backends → unpause → write the staged pages, the state
 *                and the device records (PVMIG_DEVICE, legacy:
 *                PVMIG_XENSTORE) → commit
 *                the file (fsync, rename) → commit MANIFEST (tmp, fsync,
 *                rename, fsync dir)
 *
 * The rename of MANIFEST is the commit point: before it, a restore uses
 * epoch N-1 (RUN-N.pvm may exist but is not listed); after it, epoch N.
 * Every file is a whole checksummed stream, so a torn one is caught too.
 */
#include "checkpoint/internal.h"
#include "hv/xen/xen.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST_MAX 4096u
#define STAGE_DEFAULT (64ull << 20)

/* ---- the manifest ---------------------------------------------------------- */

int pvm_ckpt__epoch_path(char *buf, size_t len, const char *dir,
			 const char *chain, uint32_t epoch, bool lz4)
{
	int n;

	if (epoch == 0)
		n = snprintf(buf, len, "%s/%s-base.pvm%s", dir, chain,
			     lz4 ? ".lz4" : "");
	else
		n = snprintf(buf, len, "%s/%s-%06u.pvm%s", dir, chain, epoch,
			     lz4 ? ".lz4" : "");
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int sha_hex(const char *p, size_t n, char out[65])
{
	struct pvm_ckpt_digest d;
	uint8_t dg[PVM_CKPT_DIGEST_LEN];
	int rc;

	pvm_ckpt_digest_init(&d);
	rc = pvm_ckpt_digest_start(&d);
	if (!rc) {
		pvm_ckpt_digest_update(&d, p, n);
		rc = pvm_ckpt_digest_peek(&d, dg);
	}
	pvm_ckpt_digest_dispose(&d);
	for (size_t i = 0; !rc && i < sizeof(dg); i++)
		sprintf(out + 2 * i, "%02x", dg[i]);
	return rc;
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

int pvm_ckpt__manifest_write(const char *dir, const struct sr_manifest *m,
			     struct pvm_error *e)
{
	char text[MANIFEST_MAX], sum[65], path[4096], tmp[4200];
	int n, fd, rc = 0;
	ssize_t w;

	n = snprintf(text, sizeof(text),
		     "pvmig-checkpoint 1\nrun %s\nformat %s\nnr_pages %llu\n"
		     "epoch %u\n", m->chain, m->lz4 ? "lz4" : "raw",
		     (unsigned long long)m->nr_pages, m->epoch);
	if (sha_hex(text, (size_t)n, sum))
		return pvm_error_set(e, -EIO, "cannot compute a digest");
	n += snprintf(text + n, sizeof(text) - (size_t)n, "sha256 %s\n", sum);
	snprintf(path, sizeof(path), "%s/%s", dir, SR_MANIFEST);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return pvm_error_set(e, -errno, "cannot create %s: %s", tmp,
				     strerror(errno));
	w = write(fd, text, (size_t)n);
	if (w != n)
		rc = w < 0 ? -errno : -ENOSPC;
	if (!rc && fsync(fd))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (!rc)
		rc = fsync_path(dir);
	if (rc) {
		unlink(tmp);
		return pvm_error_set(e, rc, "cannot commit %s: %s", path,
				     strerror(-rc));
	}
	return 0;
}

int pvm_ckpt__manifest_read(const char *dir, struct sr_manifest *m,
			    struct pvm_error *e)
{
	char text[MANIFEST_MAX + 1], path[4096], sum[65], fmt[8], want[65];
	unsigned long long pages;
	unsigned epoch;
	char *tail;
	ssize_t n;
	int fd, k = 0;

	memset(m, 0, sizeof(*m));
	snprintf(path, sizeof(path), "%s/%s", dir, SR_MANIFEST);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pvm_error_set(
		    e, -errno, "%s: %s%s", path, strerror(errno),
		    errno == ENOENT ? " (not a pvmig checkpoint "
				      "directory, or no epoch "
				      "committed yet)"
				    : "");
	n = read(fd, text, MANIFEST_MAX);
	close(fd);
	if (n < 0)
		return pvm_error_set(e, -errno, "%s: %s", path,
				     strerror(errno));
	text[n] = '\0';
	tail = strstr(text, "sha256 ");
	if (!tail || sscanf(tail, "sha256 %64[0-9a-f]\n%n", want, &k) != 1 ||
	    tail + k != text + n ||
	    sha_hex(text, (size_t)(tail - text), sum) || strcmp(sum, want))
		return pvm_error_set(e, -EBADMSG, "%s is damaged (checksum)",
				     path);
	if (sscanf(text, "pvmig-checkpoint 1\nrun %32[0-9a-f]\nformat %7s\n"
			 "nr_pages %llu\nepoch %u\n", m->chain, fmt, &pages,
		   &epoch) != 4 || strlen(m->chain) != 32 ||
	    (strcmp(fmt, "raw") && strcmp(fmt, "lz4")) || !pages ||
	    pages > (1ull << 28) || epoch > SR_EPOCHS_MAX)
		return pvm_error_set(e, -EBADMSG,
				     "%s: not a manifest this pvmig "
				     "understands",
				     path);
	m->lz4 = !strcmp(fmt, "lz4");
	m->nr_pages = pages;
	m->epoch = epoch;
	return 0;
}

/* Removes stream files of other runs (and our stray .tmp files) once the
 * new run's base is committed: they are no longer reachable. */
void pvm_ckpt__remove_old_runs(const char *dir, const char *chain)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[4096];

	if (!d)
		return;
	while ((de = readdir(d))) {
		const char *n = de->d_name;

		if (strlen(n) < 33 || n[32] != '-' || !strstr(n, ".pvm"))
			continue;
		if (!strncmp(n, chain, 32) && !strstr(n, ".tmp"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, n);
		unlink(path);
	}
	closedir(d);
}

/* ---- one epoch ---------------------------------------------------------- */

struct cont {
	const struct pvm_ckpt_cont_cfg *cfg;
	struct pvm_hv *hv;
	struct sr_config c;
	struct sr_manifest m;
	struct pvm_bitmap bm;
	uint8_t *stage;       /* stage_pages pages, owned */
	uint64_t *stage_pfns; /* owned */
	size_t stage_pages;
	struct sr_state state;
	struct sr_devs devs;
	struct pvm_error *e;
	struct sr_key key;    /* wiped at the end of the run */
};

static int cont_wait(const struct pvm_ckpt_cont_cfg *cfg, uint32_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	if (cfg->wait)
		return cfg->wait(cfg->wait_ctx, ms);
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	return 0;
}

int pvm_ckpt__cont_next(const struct pvm_ckpt_cont_cfg *cfg, uint64_t t0,
			uint64_t *next, struct pvm_error *e)
{
	uint64_t now = pvm_now_ns();
	int rc;

	*next += (uint64_t)cfg->interval_ms * 1000000u;
	if (cfg->duration_ms && *next - t0 > cfg->duration_ms * 1000000u)
		return 0;
	if (*next <= now)
		*next = now; /* an epoch overran: do not catch up */
	/* Called every epoch, with 0 after an overrun, so a stop request is
	 * seen even when epochs take the whole interval. */
	rc = cont_wait(cfg, (uint32_t)((*next - now) / 1000000u));
	if (rc < 0)
		return pvm_error_set(e, rc, "waiting for the next epoch: %s",
				     strerror(-rc));
	return !rc;
}

void pvm_ckpt__cont_account(struct pvm_ckpt_cont_stats *st,
			    const struct pvm_ckpt_epoch_stats *es, bool epoch)
{
	st->bytes += es->bytes;
	if (!epoch)
		return;
	st->epochs++;
	st->total_pause_ns += es->pause_ns;
	if (es->pause_ns > st->max_pause_ns)
		st->max_pause_ns = es->pause_ns;
}

/* Copies the dirty pages while paused: into the stage, or (past it)
 * straight into the stream. *@staged_out pages are in the stage. */
static int copy_dirty(struct cont *k, struct pvm_ckpt_writer *w,
		      size_t *staged_out, uint64_t *pages_out)
{
	uint64_t pfns[SR_BATCH];
	int errs[SR_BATCH];
	size_t staged = 0, n = 0;
	uint64_t nr = k->c.nr_pages, pfn = pvm_bitmap_next_set(&k->bm, 0);

	*pages_out = 0;
	while (pfn < nr || n) {
		void *map;
		int rc;

		if (pfn < nr && n < SR_BATCH) {
			pfns[n++] = pfn;
			pfn = pvm_bitmap_next_set(&k->bm, pfn + 1);
			continue;
		}
		if (staged + n > k->stage_pages) {
			/* The stage is full: this batch goes to the file
			 * now, lengthening the pause. */
			if (pvm_ckpt__write_pfns(k->hv, k->cfg->domid, w, pfns,
						 n, false, NULL, k->e))
				return k->e->rc;
		} else {
			rc = k->hv->ops->map_pages(k->hv, k->cfg->domid,
						   PVM_HV_MAP_READ, pfns, n,
						   errs, &map);
			if (rc)
				return pvm_error_set(k->e, rc,
						     "domain %u: cannot "
						     "map dirty pages: %s",
						     k->cfg->domid,
						     strerror(-rc));
			for (size_t i = 0; i < n; i++)
				if (errs[i])
					rc = errs[i];
			if (!rc) {
				memcpy(k->stage + staged * PVM_PAGE_SIZE, map,
				       n * PVM_PAGE_SIZE);
				memcpy(k->stage_pfns + staged, pfns,
				       n * sizeof(*pfns));
				staged += n;
			}
			k->hv->ops->unmap_pages(k->hv, map, n);
			if (rc)
				return pvm_error_set(
				    k->e, rc,
				    "domain %u: a dirty "
				    "page cannot be mapped: %s",
				    k->cfg->domid, strerror(-rc));
		}
		*pages_out += n;
		n = 0;
	}
	*staged_out = staged;
	return 0;
}

static int write_staged(struct cont *k, struct pvm_ckpt_writer *w,
			size_t staged)
{
	const void *data[SR_BATCH];

	for (size_t off = 0; off < staged; off += SR_BATCH) {
		size_t n = staged - off < SR_BATCH ? staged - off : SR_BATCH;
		int rc;

		for (size_t i = 0; i < n; i++)
			data[i] = k->stage + (off + i) * PVM_PAGE_SIZE;
		rc = pvm_ckpt_write_pages(w, k->stage_pfns + off, NULL, data, n);
		if (rc)
			return pvm_error_set(k->e, rc, "cannot write pages: %s",
					     strerror(-rc));
	}
	return 0;
}

static int epoch(struct cont *k, uint32_t ep, struct pvm_ckpt_epoch_stats *es)
{
	const struct pvm_ckpt_cont_cfg *cfg = k->cfg;
	struct pvm_hv *hv = k->hv;
	struct sr_out o = { 0 };
	char path[4096];
	size_t staged = 0;
	bool paused = false;
	uint64_t tp;
	int rc;

	memset(es, 0, sizeof(*es));
	es->epoch = ep;
	k->c.epoch = ep;
	snprintf(k->c.kind, sizeof(k->c.kind), "%s", SR_KIND_DELTA);
	if (pvm_ckpt__epoch_path(path, sizeof(path), cfg->dir, k->c.chain, ep,
				 k->m.lz4))
		return pvm_error_set(k->e, -ENAMETOOLONG, "%s: path too long",
				     cfg->dir);
	if (pvm_ckpt__out_open(&o, path, k->m.lz4,
			       k->key.loaded ? &k->key : NULL, &k->c, k->e))
		return k->e->rc;

	if (pvm_ckpt__devs_suspend(&k->devs, hv, cfg->domid,
				   cfg->suspend_timeout_ms
				       ? cfg->suspend_timeout_ms
				       : PVM_PVQ_SUSPEND_TIMEOUT_MS,
				   es->suspend, sizeof(es->suspend), k->e))
		goto out_abort;
	rc = hv->ops->domain_pause(hv, cfg->domid);
	if (rc) {
		pvm_error_set(k->e, rc, "epoch %u: cannot pause domain %u: %s",
			      ep, cfg->domid, strerror(-rc));
		goto out_abort;
	}
	paused = true;
	tp = pvm_now_ns();
	/* Drained first: the backends' last writes are in this epoch's
	 * dirty set. */
	if (pvm_ckpt__devs_quiesce(&k->devs, hv, cfg->domid, cfg->xs,
				   cfg->drain_timeout_ms, k->e))
		goto out_abort;
	rc = hv->ops->logdirty_read_clear(hv, cfg->domid, &k->bm);
	if (rc) {
		pvm_error_set(k->e, rc,
			      "epoch %u: cannot read the dirty log of "
			      "domain %u: %s",
			      ep, cfg->domid, strerror(-rc));
		goto out_abort;
	}
	if (copy_dirty(k, o.w, &staged, &es->pages))
		goto out_abort;
	if (cfg->flags & PVM_CKPT_SAVE_DIGEST) {
		if (pvm_ckpt__mem_digest(hv, cfg->domid, k->c.nr_pages,
					 es->mem_digest, k->e))
			goto out_abort;
		es->has_digest = true;
	}
	if (pvm_ckpt__state_get(hv, cfg->domid, k->c.nr_vcpus, &k->state, k->e))
		goto out_abort;
	pvm_ckpt__devs_resume(&k->devs, hv, cfg->domid);
	rc = hv->ops->domain_unpause(hv, cfg->domid);
	paused = false;
	es->pause_ns = pvm_now_ns() - tp;
	if (rc) {
		pvm_error_set(k->e, rc,
			      "epoch %u: cannot unpause domain %u: %s", ep,
			      cfg->domid, strerror(-rc));
		goto out_abort;
	}
	if (write_staged(k, o.w, staged) ||
	    pvm_ckpt__state_write(o.w, &k->state, k->e) ||
	    pvm_ckpt__devs_write(&k->devs, o.w, cfg->domid, k->e))
		goto out_abort;
	es->bytes = pvm_ckpt_writer_offset(o.w) + 16;
	if (pvm_ckpt__out_commit(&o, k->e))
		goto out_abort;
	k->m.epoch = ep;
	if (pvm_ckpt__manifest_write(cfg->dir, &k->m, k->e)) {
		k->m.epoch = ep - 1;
		return k->e->rc;
	}
	es->commit_ns = pvm_now_ns() - tp;
	return 0;

out_abort:
	if (paused) {
		pvm_ckpt__devs_resume(&k->devs, hv, cfg->domid);
		hv->ops->domain_unpause(hv, cfg->domid);
	} else {
		pvm_pvq_suspend_cancel(hv, cfg->domid);
	}
	pvm_ckpt__out_abort(&o);
	return k->e->rc ? k->e->rc : -EIO;
}

/* ---- the run ---------------------------------------------------------------- */


/*
 * Writes a new run's base (a live save that leaves log-dirty on) and
 * commits it; only then are the files of older runs removed. The pause of
 * its stop-and-copy is reported as epoch 0's.
 */
static int base(struct cont *k, bool logdirty_on,
		struct pvm_ckpt_epoch_stats *es)
{
	const struct pvm_ckpt_cont_cfg *cfg = k->cfg;
	struct pvm_ckpt_save_cfg sc = { 0 };
	struct pvm_ckpt_save_stats bs;
	char path[4096];
	int rc;

	pvm_ckpt__new_chain(k->c.chain);
	snprintf(k->c.kind, sizeof(k->c.kind), "%s", SR_KIND_BASE);
	k->c.epoch = 0;
	pvm_ckpt__epoch_path(path, sizeof(path), cfg->dir, k->c.chain, 0,
			     k->m.lz4);
	sc.hv = k->hv;
	sc.domid = cfg->domid;
	sc.path = path;
	sc.flags = PVM_CKPT_SAVE_LIVE | PVM_CKPT_SAVE_KEEP |
		   (cfg->flags & (PVM_CKPT_SAVE_LZ4 | PVM_CKPT_SAVE_DIGEST));
	sc.progress = cfg->progress;
	sc.progress_ctx = cfg->progress_ctx;
	sc.xs = cfg->xs;
	sc.suspend_timeout_ms = cfg->suspend_timeout_ms;
	sc.drain_timeout_ms = cfg->drain_timeout_ms;
	sc.pv_mode = cfg->pv_mode;
	rc = pvm_ckpt__save(&sc, &k->c,
			    SR_SAVE_KEEP_LOGDIRTY |
				(logdirty_on ? SR_SAVE_LOGDIRTY_ON : 0),
			    k->key.loaded ? &k->key : NULL, &bs, k->e);
	if (rc)
		return rc;
	snprintf(k->m.chain, sizeof(k->m.chain), "%s", k->c.chain);
	k->m.epoch = 0;
	if (pvm_ckpt__manifest_write(cfg->dir, &k->m, k->e))
		return k->e->rc;
	pvm_ckpt__remove_old_runs(cfg->dir, k->c.chain);
	memset(es, 0, sizeof(*es));
	es->pause_ns = bs.pause_ns;
	es->commit_ns = bs.total_ns;
	es->pages = bs.pages;
	es->bytes = bs.bytes;
	es->has_digest = bs.has_digest;
	memcpy(es->mem_digest, bs.mem_digest, sizeof(es->mem_digest));
	return 0;
}

void pvm_ckpt__new_chain(char out[33])
{
	uint8_t r[16];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		uint64_t t = pvm_now_ns() ^ ((uint64_t)getpid() << 32);

		memcpy(r, &t, 8);
		memcpy(r + 8, &t, 8);
	}
	for (size_t i = 0; i < sizeof(r); i++)
		sprintf(out + 2 * i, "%02x", r[i]);
}

int pvm_ckpt_continuous(const struct pvm_ckpt_cont_cfg *cfg,
			struct pvm_ckpt_cont_stats *st_out)
{
	struct pvm_ckpt_cont_stats local;
	struct pvm_ckpt_cont_stats *st = st_out ? st_out : &local;
	struct pvm_error e;
	struct pvm_ckpt_epoch_stats es;
	struct cont k = { .cfg = cfg, .e = &e };
	bool logdirty = false;
	uint64_t t0 = pvm_now_ns(), next;
	int rc;

	memset(st, 0, sizeof(*st));
	pvm_error_init(&e);
	pvm_ckpt__state_init(&k.state);
	pvm_ckpt__devs_init(&k.devs, NULL);
	if (!cfg || !cfg->hv || !cfg->dir || !*cfg->dir || !cfg->interval_ms ||
	    (cfg->flags & ~(PVM_CKPT_SAVE_LZ4 | PVM_CKPT_SAVE_DIGEST))) {
		rc =
		    pvm_error_set(&e, -EINVAL,
				  "bad checkpoint arguments (an "
				  "interval of at least 1 ms and a directory)");
		goto out;
	}
	k.hv = cfg->hv;
	if (cfg->key_file && pvm_ckpt__key_load(cfg->key_file, &k.key, &e))
		goto out_rc;
	if (mkdir(cfg->dir, 0700) && errno != EEXIST) {
		rc = pvm_error_set(&e, -errno, "cannot create %s: %s", cfg->dir,
				   strerror(errno));
		goto out;
	}
	if (pvm_hv_is_xen(k.hv)) {
		/* x86 PV on Xen: libxenguest's checkpointed stream. */
		rc = pvm_ckpt__xen_continuous(cfg, k.key.loaded ? &k.key : NULL,
					      st, &e);
		goto out;
	}
	if (pvm_ckpt__config_of(k.hv, cfg->domid, &k.c, &e))
		goto out_rc;
	if (cfg->image && *cfg->image &&
	    snprintf(k.c.image, sizeof(k.c.image), "%s", cfg->image) >=
		    (int)sizeof(k.c.image)) {
		rc = pvm_error_set(&e, -E2BIG,
				   "the domain's image name is too long");
		goto out;
	}
	if (cfg->devices)
		k.c.dev = *cfg->devices;
	pvm_ckpt__devs_dispose(&k.devs);
	pvm_ckpt__devs_init(&k.devs, &k.c.dev);
	k.devs.mode = (enum pvm_pvq_mode)cfg->pv_mode;
	k.m.lz4 = cfg->flags & PVM_CKPT_SAVE_LZ4;
	k.m.nr_pages = k.c.nr_pages;
	k.stage_pages = (cfg->stage_bytes ? cfg->stage_bytes : STAGE_DEFAULT) /
			PVM_PAGE_SIZE;
	if (k.stage_pages > k.c.nr_pages)
		k.stage_pages = k.c.nr_pages;
	k.stage = malloc(k.stage_pages * PVM_PAGE_SIZE);
	k.stage_pfns = malloc(k.stage_pages * sizeof(*k.stage_pfns));
	if (!k.stage || !k.stage_pfns ||
	    pvm_bitmap_init(&k.bm, k.c.nr_pages)) {
		rc = pvm_error_set(&e, -ENOMEM,
				   "out of memory for a %zu-page stage",
				   k.stage_pages);
		goto out;
	}

	/* Epoch 0: a live save that leaves log-dirty on. */
	if (base(&k, false, &es))
		goto out_rc;
	logdirty = true;
	pvm_ckpt__cont_account(st, &es, false);
	if (cfg->epoch_done)
		cfg->epoch_done(cfg->epoch_ctx, &es);

	next = pvm_now_ns();
	for (uint32_t n = 1, ep = 1; !cfg->max_epochs || n <= cfg->max_epochs;
	     n++, ep++) {
		rc = pvm_ckpt__cont_next(cfg, t0, &next, &e);
		if (rc < 0)
			goto out;
		if (rc == 0)
			break; /* the duration is over, or told to stop */
		if (cfg->rebase_epochs && ep > cfg->rebase_epochs) {
			/* A new run: a fresh base replaces the chain. */
			if (base(&k, true, &es))
				goto out_rc;
			ep = 0;
		} else if (epoch(&k, ep, &es)) {
			goto out_rc;
		}
		pvm_ckpt__cont_account(st, &es, true);
		if (cfg->epoch_done)
			cfg->epoch_done(cfg->epoch_ctx, &es);
	}
	rc = 0;
	goto out;

out_rc:
	rc = e.rc ? e.rc : -EIO;
out:
	if (logdirty)
		k.hv->ops->logdirty_disable(k.hv, cfg->domid);
	pvm_ckpt__key_wipe(&k.key);
	pvm_ckpt__state_dispose(&k.state);
	pvm_ckpt__devs_dispose(&k.devs);
	pvm_bitmap_dispose(&k.bm);
	free(k.stage);
	free(k.stage_pfns);
	pvm_error_copy(&e, st->err_msg, sizeof(st->err_msg));
	return rc;
}
