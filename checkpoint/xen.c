/*
 * pvm_ckpt_save() / pvm_ckpt_restore() on a Xen host, for x86 PV guests:
 * the file is exactly what `xl save` writes, and the memory, page tables
 * and vCPUs are handled by Xen's libxenguest, not by pvmig's page copy
 * (PV page tables hold machine frames; libxenguest canonicalises them):
 *
 *   xl save-file header    JSON flag, libxl's domain config (§2.3, §7.4)
 *   libxl header           LibxlFmt v2
 *   LIBXC_CONTEXT          then the libxc stream of xc_domain_save, written
 *                          by libxenguest into a pipe that a pump thread
 *                          empties into pvmig's file writer (lz4, sealing)
 *   libxl END
 *
 * Restore reads the xl header itself (sealed and lz4 files too), then
 * hands the libxl stream, through a pipe fed by a pump thread, to
 * libxl_domain_create_restore, which creates the domain from the JSON
 * config (devices, hotplug scripts, xenstore) and runs xc_domain_restore.
 * Re-implementing that (domain build, device creation, the PV restore)
 * would duplicate libxl and drift from it; what pvmig adds is the file
 * handling, the callbacks and the policy.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/internal.h"
#include "hv/xen/xen.h"

#define PUMP_BUF (256u * 1024u)

/* ---- the pipe between libxenguest/libxl and pvmig's file ------------------ */

/* Moves bytes between a pipe end and pvmig's writer or reader, on its own
 * thread, so that a library that wants a file descriptor can write to or
 * read from a sealed/lz4 file. */
struct pump {
	pthread_t thread;
	int fd;                        /* owned: our end of the pipe */
	const struct pvm_ckpt_write_cfg *wc; /* out: pipe -> file */
	/* in: file -> pipe (pvm_ckpt__in_read's shape) */
	int (*read)(void *ctx, void *buf, size_t len, size_t *got);
	void *read_ctx;
	uint64_t bytes;                /* moved (read by the owner after join,
					* or racily for progress) */
	int rc;                        /* first error */
	bool started;
	/* out: between poll() seeing data and its bytes being written to
	 * wc (under lock), so that pump_drain() can tell "all written" */
	pthread_mutex_t lock;
	bool busy;
};

static void pump_busy(struct pump *p, bool busy)
{
	pthread_mutex_lock(&p->lock);
	p->busy = busy;
	pthread_mutex_unlock(&p->lock);
}

static void *pump_out_main(void *arg)
{
	struct pump *p = arg;
	uint8_t *buf = malloc(PUMP_BUF);
	struct pollfd pf = { .fd = p->fd, .events = POLLIN };
	ssize_t n;

	if (!buf) {
		p->rc = -ENOMEM;
		return NULL;
	}
	for (;;) {
		/* Wait for bytes first and only then become busy: bytes leave
		 * the pipe only while busy (pump_drain relies on it). */
		if (poll(&pf, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			p->rc = -errno;
			break;
		}
		pump_busy(p, true);
		n = read(p->fd, buf, PUMP_BUF);
		if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
			pump_busy(p, false);
			continue;
		}
		if (n < 0) {
			p->rc = -errno;
			pump_busy(p, false);
			break;
		}
		if (n == 0) {
			pump_busy(p, false);
			break;
		}
		/* After a write error keep draining, so that the library's
		 * writes do not block; its own failure follows ours. */
		if (!p->rc)
			p->rc = p->wc->write(p->wc->write_ctx, buf, (size_t)n);
		__atomic_add_fetch(&p->bytes, (uint64_t)n, __ATOMIC_RELAXED);
		pump_busy(p, false);
	}
	free(buf);
	return NULL;
}

/*
 * Out pumps, while the library is not writing (it is in one of our
 * callbacks): waits until every byte it wrote is in wc. Then the caller
 * may write to wc itself or change it, until it returns to the library.
 * The pump's first error, or 0.
 */
static int pump_drain(struct pump *p)
{
	struct timespec ts = { 0, 200000L };
	int queued;
	bool idle;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		if (ioctl(p->fd, FIONREAD, &queued))
			queued = -1;
		idle = !p->busy;
		pthread_mutex_unlock(&p->lock);
		if (queued < 0)
			return -errno;
		if (!queued && idle)
			return p->rc;
		nanosleep(&ts, NULL);
	}
}

static void *pump_in_main(void *arg)
{
	struct pump *p = arg;
	uint8_t *buf = malloc(PUMP_BUF);
	sigset_t pipe_set;
	size_t got, off;
	ssize_t n;

	/* A reader that stops early makes our write fail with EPIPE rather
	 * than kill the process (SIGPIPE goes to the writing thread). */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
	if (!buf) {
		p->rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		p->rc = p->read(p->read_ctx, buf, PUMP_BUF, &got);
		if (p->rc || !got)
			break;
		for (off = 0; off < got; off += (size_t)n) {
			n = write(p->fd, buf + off, got - off);
			if (n < 0 && errno == EINTR) {
				n = 0;
				continue;
			}
			if (n < 0) {
				/* EPIPE: libxl stopped reading (done or failed:
				 * its result says which). */
				p->rc = errno == EPIPE ? 0 : -errno;
				goto out;
			}
		}
		__atomic_add_fetch(&p->bytes, (uint64_t)got, __ATOMIC_RELAXED);
	}
out:
	free(buf);
	close(p->fd); /* EOF for the reader */
	p->fd = -1;
	return NULL;
}

/* Starts a pump from the pipe into @wc (out) or from @read into the pipe;
 * *@lib_fd is the library's end (the caller closes it). */
static int pump_start(struct pump *p, const struct pvm_ckpt_write_cfg *wc,
		      int (*read_fn)(void *, void *, size_t, size_t *),
		      void *read_ctx, int *lib_fd)
{
	bool out = wc != NULL;
	int fds[2], rc;

	p->wc = wc;
	p->read = read_fn;
	p->read_ctx = read_ctx;
	p->fd = -1;
	p->rc = 0;
	p->bytes = 0;
	p->started = false;
	p->busy = false;
	if (pipe2(fds, O_CLOEXEC))
		return -errno;
	p->fd = out ? fds[0] : fds[1];
	*lib_fd = out ? fds[1] : fds[0];
	rc = -pthread_create(&p->thread, NULL,
			     out ? pump_out_main : pump_in_main, p);
	if (rc) {
		close(fds[0]);
		close(fds[1]);
		p->fd = -1;
		*lib_fd = -1;
		return rc;
	}
	p->started = true;
	return 0;
}

/* Joins; closes our end if the thread did not. Returns the pump's rc. */
static int pump_join(struct pump *p)
{
	if (p->started)
		pthread_join(p->thread, NULL);
	p->started = false;
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	return p->rc;
}

/* The pump's lock, for its whole life (static initialisation). */
#define PUMP_INIT { .fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER }

/* ---- save --------------------------------------------------------------- */

struct xsave {
	const struct pvm_ckpt_save_cfg *cfg;
	struct pvm_ckpt_save_stats *st;
	struct pump *pump;
	uint32_t max_rounds;
	size_t prev_dirty;
	uint64_t t_suspend;
	bool suspended;
};

static void xsave_report(struct xsave *s, const char *phase, uint32_t round,
			 uint64_t done, uint64_t total)
{
	struct pvm_ckpt_progress p = {
		.phase = phase, .round = round, .done = done, .total = total,
		.bytes = __atomic_load_n(&s->pump->bytes, __ATOMIC_RELAXED),
	};

	if (s->cfg->progress)
		s->cfg->progress(s->cfg->progress_ctx, &p);
}

static int xsave_suspend(void *ctx)
{
	struct xsave *s = ctx;
	int rc;

	s->t_suspend = pvm_now_ns();
	xsave_report(s, "stop-and-copy", s->st->rounds, 0, 0);
	/* --suspend-timeout rules; without it Xen's default (a nested or
	 * loaded host needs far longer than a simulated guest's 1000 ms). */
	rc = pvm_hv_xen_suspend(s->cfg->hv, s->cfg->domid,
				s->cfg->suspend_timeout_ms ?
					s->cfg->suspend_timeout_ms :
					PVM_HV_XEN_SUSPEND_MS);
	s->suspended = rc == 0;
	return rc;
}

/* pvmig's convergence policy (pvm_ckpt__precopy_done, the one the simulated
 * host's live save uses) on libxenguest's round figures. */
static int xsave_precopy(void *ctx, uint32_t round, uint64_t written,
			 int64_t dirty)
{
	struct xsave *s = ctx;
	size_t d = dirty < 0 ? SIZE_MAX : (size_t)dirty;
	bool stop;

	s->st->rounds = round + 1;
	xsave_report(s, "precopy", round, written, written);
	if (dirty < 0)
		return PVM_HV_XEN_PRECOPY_CONTINUE; /* round 0 not sent yet */
	stop = pvm_ckpt__precopy_done(round, s->max_rounds, d, s->prev_dirty);
	s->prev_dirty = d;
	return stop ? PVM_HV_XEN_PRECOPY_STOP : PVM_HV_XEN_PRECOPY_CONTINUE;
}

/* libxl header + LIBXC_CONTEXT record header (§2.1, §2.2). */
static int write_libxl_head(const struct pvm_ckpt_write_cfg *wc)
{
	uint8_t h[PVM_CKPT_LIBXL_HEAD_SIZE];

	return wc->write(wc->write_ctx, h, pvm_ckpt_libxl_head(h));
}

int pvm_ckpt__xen_save(const struct pvm_ckpt_save_cfg *cfg,
		       const struct sr_key *key, struct pvm_ckpt_save_stats *st,
		       struct pvm_error *err)
{
	static const uint8_t libxl_end[PVM_CKPT_LIBXL_END_SIZE]; /* END */
	struct pvm_error *const e = err;
	struct pvm_ckpt_write_cfg wc = { 0 };
	struct sr_out o = { 0 };
	struct pump pump = PUMP_INIT;
	struct xsave s = { .cfg = cfg, .st = st, .pump = &pump,
			   .prev_dirty = SIZE_MAX };
	struct pvm_hv_xen_save_cb cb = {
		.suspend = xsave_suspend, .precopy = xsave_precopy, .ctx = &s,
	};
	uint64_t t0 = pvm_now_ns();
	char *json = NULL;
	int lib_fd = -1, rc, prc;
	bool live = cfg->flags & PVM_CKPT_SAVE_LIVE;

	if (!cfg->path || !*cfg->path ||
	    (cfg->flags & ~(PVM_CKPT_SAVE_LIVE | PVM_CKPT_SAVE_KEEP |
			    PVM_CKPT_SAVE_LZ4 | PVM_CKPT_SAVE_DIGEST)))
		return pvm_error_set(e, -EINVAL, "bad save arguments");
	if (cfg->flags & PVM_CKPT_SAVE_DIGEST)
		return pvm_error_set(
		    e, -EOPNOTSUPP,
		    "domain %u: a memory digest "
		    "is not available on Xen (libxenguest copies "
		    "the memory)",
		    cfg->domid);
	s.max_rounds = cfg->max_rounds ? cfg->max_rounds : SR_DEFAULT_ROUNDS;
	rc = pvm_hv_xen_config_json(cfg->hv, cfg->domid, &json);
	if (rc)
		return pvm_error_set(e, rc,
				     "domain %u: cannot read its libxl "
				     "configuration: %s",
				     cfg->domid, strerror(-rc));
	if (pvm_ckpt__out_create(&o, cfg->path, cfg->flags & PVM_CKPT_SAVE_LZ4,
				 key, &wc, e))
		goto out_rc;
	rc = pvm_ckpt__write_xl_header(&wc, PVM_CKPT_XL_MANDATORY_JSON, json,
				       strlen(json));
	if (!rc)
		rc = write_libxl_head(&wc);
	if (rc) {
		pvm_error_set(e, rc, "cannot write %s.tmp: %s", cfg->path,
			      strerror(-rc));
		goto out_abort;
	}
	rc = pump_start(&pump, &wc, NULL, NULL, &lib_fd);
	if (rc) {
		pvm_error_set(e, rc, "cannot start the save pipe: %s",
			      strerror(-rc));
		goto out_abort;
	}
	rc = pvm_hv_xen_save(cfg->hv, cfg->domid, lib_fd, live, &cb);
	close(lib_fd);
	prc = pump_join(&pump);
	if (s.suspended)
		st->pause_ns = pvm_now_ns() - s.t_suspend;
	if (rc) {
		pvm_error_set(e, rc,
			      "domain %u: libxenguest could not save it: %s "
			      "(its reason is in the log)",
			      cfg->domid, strerror(-rc));
		goto out_resume;
	}
	if (prc) {
		pvm_error_set(e, prc, "cannot write %s.tmp: %s", cfg->path,
			      strerror(-prc));
		goto out_resume;
	}
	rc = wc.write(wc.write_ctx, libxl_end, sizeof(libxl_end));
	if (rc) {
		pvm_error_set(e, rc, "cannot write %s.tmp: %s", cfg->path,
			      strerror(-rc));
		goto out_resume;
	}
	st->bytes = pump.bytes;
	if (pvm_ckpt__out_commit(&o, e))
		goto out_resume;
	/* The file is in place: now the guest may go (or carry on). */
	if (cfg->flags & PVM_CKPT_SAVE_KEEP) {
		rc = pvm_hv_xen_resume(cfg->hv, cfg->domid);
		if (rc)
			pvm_error_set(e, rc,
				      "domain %u: saved to %s, but it could "
				      "not be resumed: %s",
				      cfg->domid, cfg->path, strerror(-rc));
	} else {
		rc = cfg->hv->ops->domain_destroy(cfg->hv, cfg->domid);
		if (rc)
			pvm_error_set(e, rc,
				      "domain %u: saved to %s, but it could "
				      "not be destroyed: %s (it is suspended)",
				      cfg->domid, cfg->path, strerror(-rc));
	}
	if (cfg->flags & PVM_CKPT_SAVE_KEEP)
		st->pause_ns = pvm_now_ns() - s.t_suspend;
	st->total_ns = pvm_now_ns() - t0;
	free(json);
	return rc;

out_resume:
	/* Whatever failed, the guest runs on as it was. */
	if (s.suspended)
		pvm_hv_xen_resume(cfg->hv, cfg->domid);
out_abort:
	pvm_ckpt__out_abort(&o);
out_rc:
	free(json);
	return e->rc;
}

/* ---- restore ------------------------------------------------------------ */

/* The stats of a restore that built domain @domid. */
static void restored(const struct pvm_ckpt_restore_cfg *cfg,
		     struct pvm_ckpt_restore_stats *st, uint32_t domid,
		     uint64_t t0)
{
	struct pvm_hv_dominfo di;

	st->domid = domid;
	if (!cfg->hv->ops->domain_info(cfg->hv, domid, &di))
		snprintf(st->name, sizeof(st->name), "%s", di.name);
	st->total_ns = pvm_now_ns() - t0;
}

int pvm_ckpt__xen_restore(const struct pvm_ckpt_restore_cfg *cfg,
			  const char *path, const struct sr_key *key,
			  struct pvm_ckpt_restore_stats *st,
			  struct pvm_error *e)
{
	struct sr_in in;
	struct sr_config c;
	struct pump pump = PUMP_INIT;
	uint64_t t0 = pvm_now_ns();
	bool has;
	int lib_fd = -1, rc, prc;
	uint32_t domid = 0;

	if (pvm_ckpt__in_open(&in, path, key, &c, &has, e))
		return e->rc;
	if (has || !in.xl_config ||
	    !(in.xl_mandatory & PVM_CKPT_XL_MANDATORY_JSON)) {
		pvm_ckpt__in_close(&in);
		return pvm_error_set(
		    e, -ENOTSUP, "%s: %s", path,
		    has ? "saved by pvmig on the simulated host (or by "
			  "an older pvmig on Xen): a Xen host restores "
			  "files that carry libxl's JSON config, as "
			  "pvmig save and xl save write them on Xen"
			: "no libxl JSON domain config in its xl header "
			  "(an old xl.cfg-text save file: use xl restore)");
	}
	rc = pump_start(&pump, NULL, pvm_ckpt__in_read, &in, &lib_fd);
	if (rc) {
		pvm_ckpt__in_close(&in);
		return pvm_error_set(e, rc, "cannot start the restore pipe: %s",
				     strerror(-rc));
	}
	rc = pvm_hv_xen_restore(cfg->hv, in.xl_config, lib_fd, cfg->paused,
				&domid);
	close(lib_fd); /* the pump sees EPIPE if libxl stopped early */
	prc = pump_join(&pump);
	st->bytes = pump.bytes;
	if (rc) {
		pvm_error_set(e, rc, "%s: libxl could not restore it: %s%s%s",
			      path, strerror(-rc),
			      prc ? "; reading the file: " : "",
			      prc ? strerror(-prc) : "");
		goto out;
	}
	st->files = 1;
	restored(cfg, st, domid, t0);
	rc = 0;
out:
	pvm_ckpt__in_close(&in);
	return rc;
}

/* ---- continuous checkpoints --------------------------------------------- */

/*
 * pvm_ckpt_continuous() on Xen: one checkpointed (Remus) stream of
 * xc_domain_save per run, cut at its checkpoints into the directory's
 * epoch files, each an xl save-file header (libxl JSON config) and its
 * part of the stream:
 *
 *   RUN-base.pvm     libxl header, LIBXC_CONTEXT, the libxc stream of the
 *                    live first checkpoint (all memory), CHECKPOINT,
 *                    libxl CHECKPOINT_END
 *   RUN-000001.pvm   the pages dirtied since, the vCPUs, CHECKPOINT,
 *                    libxl CHECKPOINT_END
 *   ...
 *
 * Each file ends with a pvmig trailer that is not part of the stream and
 * is never handed to libxl: "PVMIGXEP", the length of the file's stream
 * part (le64) and its SHA-256, so that a file cut short or damaged is
 * refused rather than silently restored as an older epoch (libxc's
 * failover would do just that).
 *
 * At each checkpoint libxenguest has suspended the guest, written its
 * state and the CHECKPOINT record; postcopy resumes the guest; in the
 * checkpoint callback the pump is drained, CHECKPOINT_END is written, the
 * file committed (fsync, rename) and then MANIFEST (the commit point, as
 * on the simulated host). A restore feeds the committed files, in order,
 * to libxl as one checkpointed stream; at its end libxc fails over to the
 * last whole checkpoint: the newest committed epoch.
 */

/* libxl CHECKPOINT_END: type, length 0 (little-endian). */
static const uint8_t libxl_checkpoint_end[8] = {
	PVM_CKPT_XL_REC_CHECKPOINT_END, 0, 0, 0, 0, 0, 0, 0
};

#define XEP_MAGIC "PVMIGXEP"
#define XEP_TRAILER (8u + 8u + PVM_CKPT_DIGEST_LEN)

/* An epoch file's stream part: its length and digest as written/read. */
struct xep_sum {
	struct pvm_ckpt_digest dg;
	uint64_t len;
};

static int xep_sum_start(struct xep_sum *x)
{
	pvm_ckpt_digest_init(&x->dg);
	x->len = 0;
	return pvm_ckpt_digest_start(&x->dg);
}

static void xep_sum_add(struct xep_sum *x, const void *p, size_t n)
{
	pvm_ckpt_digest_update(&x->dg, p, n);
	x->len += n;
}

static int xep_trailer(const struct xep_sum *x, uint8_t t[XEP_TRAILER])
{
	memcpy(t, XEP_MAGIC, 8);
	for (int i = 0; i < 8; i++)
		t[8 + i] = (uint8_t)(x->len >> (8 * i));
	return pvm_ckpt_digest_peek(&x->dg, t + 16);
}

struct xcont {
	struct xsave s;                 /* first: the callbacks' ctx */
	struct pvm_ckpt_save_cfg sc;    /* hv, domid, progress for xsave */
	struct pvm_ckpt_save_stats ss;  /* xsave's round count */
	const struct pvm_ckpt_cont_cfg *cfg;
	struct pvm_ckpt_cont_stats *st;
	struct pvm_error *e;
	const struct sr_key *key;
	const char *json;
	struct sr_manifest m;
	struct pump pump;
	struct sr_out o;                /* the epoch file being written */
	struct pvm_ckpt_write_cfg wc;   /* its raw writer */
	struct pvm_ckpt_write_cfg proxy; /* the pump's: into wc */
	struct xep_sum sum;             /* of the open file's stream part */
	bool open;
	char chain[33];
	uint32_t ep;                    /* epoch being written */
	uint32_t runs;                  /* started */
	uint64_t t0, next;              /* the epoch schedule */
	uint64_t pause_ns;
	bool rebase;                    /* the run ended for a new base */
};

/* The pump's sink: the current epoch file (it is never written while
 * none is open: the stream ends when no next file was opened). */
static int xcont_write(void *ctx, const void *buf, size_t len)
{
	struct xcont *k = ctx;

	if (!k->open)
		return -EPROTO;
	xep_sum_add(&k->sum, buf, len);
	return k->wc.write(k->wc.write_ctx, buf, len);
}

static void xcont_abort(struct xcont *k)
{
	if (!k->open)
		return;
	pvm_ckpt__out_abort(&k->o);
	pvm_ckpt_digest_dispose(&k->sum.dg);
	k->open = false;
}

/* Creates epoch @ep's file with its xl header (and, for a base, the libxl
 * header and LIBXC_CONTEXT). */
static int xcont_open(struct xcont *k, uint32_t ep)
{
	const struct pvm_ckpt_cont_cfg *cfg = k->cfg;
	char path[4096];
	int rc;

	if (pvm_ckpt__epoch_path(path, sizeof(path), cfg->dir, k->chain, ep,
				 k->m.lz4))
		return pvm_error_set(k->e, -ENAMETOOLONG, "%s: path too long",
				     cfg->dir);
	if (pvm_ckpt__out_create(&k->o, path, k->m.lz4, k->key, &k->wc, k->e))
		return k->e->rc;
	k->open = true;
	rc = xep_sum_start(&k->sum);
	if (!rc)
		rc = pvm_ckpt__write_xl_header(&k->wc,
					       PVM_CKPT_XL_MANDATORY_JSON,
					       k->json, strlen(k->json));
	if (!rc && ep == 0) {
		uint8_t h[PVM_CKPT_LIBXL_HEAD_SIZE];

		rc = xcont_write(k, h, pvm_ckpt_libxl_head(h));
	}
	if (rc) {
		xcont_abort(k);
		return pvm_error_set(k->e, rc, "cannot write %s.tmp: %s", path,
				     strerror(-rc));
	}
	k->ep = ep;
	return 0;
}

static int xcont_postcopy(void *ctx)
{
	struct xcont *k = ctx;
	int rc = pvm_hv_xen_resume(k->cfg->hv, k->cfg->domid);

	if (!rc) {
		k->s.suspended = false;
		k->pause_ns = pvm_now_ns() - k->s.t_suspend;
	}
	return rc;
}

/* libxenguest's checkpoint callback: commit this epoch, wait, go on. */
static int xcont_checkpoint(void *ctx)
{
	struct xcont *k = ctx;
	struct pvm_ckpt_epoch_stats es = {
		.epoch = k->ep, .pages = PVM_CKPT_PAGES_UNKNOWN,
	};
	uint8_t trailer[XEP_TRAILER];
	int rc;

	rc = pump_drain(&k->pump);
	if (!rc)
		rc = xcont_write(k, libxl_checkpoint_end,
				 sizeof(libxl_checkpoint_end));
	if (!rc)
		rc = xep_trailer(&k->sum, trailer);
	if (!rc)
		rc = k->wc.write(k->wc.write_ctx, trailer, sizeof(trailer));
	if (rc) {
		xcont_abort(k);
		return pvm_error_set(k->e, rc, "%s: cannot write epoch %u: %s",
				     k->cfg->dir, k->ep, strerror(-rc));
	}
	es.bytes = k->sum.len; /* the stream part: what a restore reads back */
	pvm_ckpt_digest_dispose(&k->sum.dg);
	k->open = false;
	if (pvm_ckpt__out_commit(&k->o, k->e))
		return k->e->rc;
	snprintf(k->m.chain, sizeof(k->m.chain), "%s", k->chain);
	k->m.epoch = k->ep;
	if (pvm_ckpt__manifest_write(k->cfg->dir, &k->m, k->e))
		return k->e->rc;
	if (k->ep == 0)
		pvm_ckpt__remove_old_runs(k->cfg->dir, k->chain);
	es.pause_ns = k->pause_ns;
	es.commit_ns = pvm_now_ns() - k->s.t_suspend;
	/* the first run's base is not an epoch; a rebase's is */
	pvm_ckpt__cont_account(k->st, &es, k->ep || k->runs > 1);
	if (k->cfg->epoch_done)
		k->cfg->epoch_done(k->cfg->epoch_ctx, &es);

	if (k->cfg->max_epochs && k->st->epochs >= k->cfg->max_epochs)
		return 0;
	rc = pvm_ckpt__cont_next(k->cfg, k->t0, &k->next, k->e);
	if (rc <= 0)
		return rc;
	if (k->cfg->rebase_epochs && k->ep >= k->cfg->rebase_epochs) {
		k->rebase = true; /* end this stream; a new run follows */
		return 0;
	}
	rc = xcont_open(k, k->ep + 1);
	return rc ? rc : 1;
}

/* One run: a new chain, its base, its deltas until told to stop or to
 * rebase. */
static int xcont_run(struct xcont *k)
{
	struct pvm_hv_xen_save_cb cb = {
		.suspend = xsave_suspend, .precopy = xsave_precopy,
		.postcopy = xcont_postcopy, .checkpoint = xcont_checkpoint,
		.ctx = k,
	};
	int lib_fd = -1, rc, prc;

	k->rebase = false;
	k->runs++;
	k->s.prev_dirty = SIZE_MAX;
	k->ss.rounds = 0;
	pvm_ckpt__new_chain(k->chain);
	if (xcont_open(k, 0))
		return k->e->rc;
	rc = pump_start(&k->pump, &k->proxy, NULL, NULL, &lib_fd);
	if (rc) {
		xcont_abort(k);
		return pvm_error_set(k->e, rc, "cannot start the save pipe: %s",
				     strerror(-rc));
	}
	rc = pvm_hv_xen_save_checkpointed(k->cfg->hv, k->cfg->domid, lib_fd,
					  &cb);
	close(lib_fd);
	prc = pump_join(&k->pump);
	if (k->s.suspended && !pvm_hv_xen_resume(k->cfg->hv, k->cfg->domid))
		k->s.suspended = false; /* failed between suspend and resume */
	xcont_abort(k); /* an epoch that never completed */
	if (k->e->rc)
		return k->e->rc;
	if (rc)
		return pvm_error_set(
		    k->e, rc,
		    "domain %u: libxenguest's checkpoint "
		    "stream failed: %s (its reason is in the log)",
		    k->cfg->domid, strerror(-rc));
	if (prc)
		return pvm_error_set(k->e, prc, "%s: cannot write an epoch: %s",
				     k->cfg->dir, strerror(-prc));
	return 0;
}

int pvm_ckpt__xen_continuous(const struct pvm_ckpt_cont_cfg *cfg,
			     const struct sr_key *key,
			     struct pvm_ckpt_cont_stats *st,
			     struct pvm_error *e)
{
	struct xcont *k = calloc(1, sizeof(*k));
	struct pvm_hv_dominfo di;
	char *json = NULL;
	int rc;

	if (!k)
		return pvm_error_set(e, -ENOMEM, "out of memory");
	if (cfg->flags & PVM_CKPT_SAVE_DIGEST) {
		rc = pvm_error_set(
		    e, -EOPNOTSUPP,
		    "domain %u: a memory digest is "
		    "not available on Xen (libxenguest copies the "
		    "memory)",
		    cfg->domid);
		goto out;
	}
	rc = cfg->hv->ops->domain_info(cfg->hv, cfg->domid, &di);
	if (rc) {
		pvm_error_set(e, rc, "no domain %u: %s", cfg->domid,
			      strerror(-rc));
		goto out;
	}
	rc = pvm_hv_xen_config_json(cfg->hv, cfg->domid, &json);
	if (rc) {
		pvm_error_set(e, rc,
			      "domain %u: cannot read its libxl "
			      "configuration: %s",
			      cfg->domid, strerror(-rc));
		goto out;
	}
	k->pump = (struct pump)PUMP_INIT;
	k->cfg = cfg;
	k->st = st;
	k->e = e;
	k->key = key;
	k->json = json;
	k->sc.hv = cfg->hv;
	k->sc.domid = cfg->domid;
	k->sc.progress = cfg->progress;
	k->sc.progress_ctx = cfg->progress_ctx;
	k->sc.suspend_timeout_ms = cfg->suspend_timeout_ms;
	k->s.cfg = &k->sc;
	k->s.st = &k->ss;
	k->s.pump = &k->pump;
	k->s.max_rounds = SR_DEFAULT_ROUNDS;
	k->proxy.write = xcont_write;
	k->proxy.write_ctx = k;
	k->m.lz4 = cfg->flags & PVM_CKPT_SAVE_LZ4;
	k->m.nr_pages = di.nr_pages ? di.nr_pages : 1;
	k->t0 = k->next = pvm_now_ns();
	do
		rc = xcont_run(k);
	while (!rc && k->rebase);
out:
	free(json);
	free(k);
	return rc;
}

/* ---- restoring a checkpoint directory ----------------------------------- */

/* The committed epoch files of a run, read back to back as one stream
 * (each after its xl header). */
struct xchain {
	const char *dir;
	const struct sr_manifest *m;
	const struct sr_key *key;
	struct pvm_error *e;
	struct sr_in in;
	bool open;
	struct xep_sum sum; /* of the open file's stream part */
	uint8_t tail[XEP_TRAILER]; /* held back: the trailer at the end */
	size_t tail_len;
	uint32_t next;  /* epoch to open next */
	uint32_t done;  /* files read to their end */
	char *json;     /* the base's config, owned */
};

static int xchain_open(struct xchain *c, uint32_t ep)
{
	char path[4096];
	struct sr_config cfg;
	bool has;

	if (pvm_ckpt__epoch_path(path, sizeof(path), c->dir, c->m->chain, ep,
				 c->m->lz4))
		return pvm_error_set(c->e, -ENAMETOOLONG, "%s: path too long",
				     c->dir);
	if (pvm_ckpt__in_open(&c->in, path, c->key, &cfg, &has, c->e))
		return c->e->rc;
	if (has || !c->in.xl_config ||
	    !(c->in.xl_mandatory & PVM_CKPT_XL_MANDATORY_JSON)) {
		pvm_ckpt__in_close(&c->in);
		return pvm_error_set(c->e, -EBADMSG,
				     "%s: not an epoch of a Xen "
				     "checkpoint run (no libxl JSON config)",
				     path);
	}
	if (ep == 0) {
		c->json = strdup(c->in.xl_config);
		if (!c->json) {
			pvm_ckpt__in_close(&c->in);
			return pvm_error_set(c->e, -ENOMEM, "out of memory");
		}
	}
	if (xep_sum_start(&c->sum)) {
		pvm_ckpt__in_close(&c->in);
		return pvm_error_set(c->e, -ENOMEM, "out of memory");
	}
	c->tail_len = 0;
	c->open = true;
	return 0;
}

static void xchain_close(struct xchain *c)
{
	if (!c->open)
		return;
	pvm_ckpt__in_close(&c->in);
	pvm_ckpt_digest_dispose(&c->sum.dg);
	c->open = false;
}

/* At the end of a file: is what was held back its trailer, and does it
 * match what was read? */
static int xchain_check(struct xchain *c)
{
	uint8_t want[XEP_TRAILER];
	int rc = xep_trailer(&c->sum, want);

	if (rc)
		return pvm_error_set(c->e, rc, "cannot compute a digest");
	if (c->tail_len != XEP_TRAILER || memcmp(c->tail, want, XEP_TRAILER))
		return pvm_error_set(
		    c->e, -EBADMSG,
		    "%s: epoch %u is damaged or cut "
		    "short (its length or SHA-256 does not match "
		    "its trailer)",
		    c->dir, c->next - 1);
	return 0;
}

/* Reads the stream part of the committed files, one after the other,
 * holding back the last XEP_TRAILER bytes of each. */
static int xchain_read(void *ctx, void *buf, size_t len, size_t *got)
{
	struct xchain *c = ctx;
	uint8_t *out = buf;
	size_t n, emit;
	int rc;

	*got = 0;
	if (len <= XEP_TRAILER)
		return -EINVAL;
	for (;;) {
		if (!c->open) {
			if (c->next > c->m->epoch)
				return 0; /* past the newest committed: EOF */
			if (xchain_open(c, c->next++))
				return c->e->rc;
		}
		/* The held-back bytes first, then new ones behind them. */
		memcpy(out, c->tail, c->tail_len);
		rc = pvm_ckpt__in_read(&c->in, out + c->tail_len,
				       len - c->tail_len, &n);
		if (rc)
			return pvm_error_set(c->e, rc,
					     "%s: epoch %u is damaged or "
					     "cut short: %s",
					     c->dir, c->next - 1,
					     strerror(-rc));
		n += c->tail_len;
		if (n == c->tail_len) { /* the file's end */
			rc = xchain_check(c);
			xchain_close(c);
			if (rc)
				return rc;
			c->done++;
			continue;
		}
		emit = n > XEP_TRAILER ? n - XEP_TRAILER : 0;
		c->tail_len = n - emit;
		memcpy(c->tail, out + emit, c->tail_len);
		xep_sum_add(&c->sum, out, emit);
		if (emit) {
			*got = emit;
			return 0;
		}
	}
}

int pvm_ckpt__xen_restore_dir(const struct pvm_ckpt_restore_cfg *cfg,
			      const char *dir, const struct sr_manifest *m,
			      const struct sr_key *key,
			      struct pvm_ckpt_restore_stats *st,
			      struct pvm_error *e)
{
	struct xchain c = { .dir = dir, .m = m, .key = key, .e = e };
	struct pump pump = PUMP_INIT;
	uint64_t t0 = pvm_now_ns();
	uint32_t domid = 0;
	int lib_fd = -1, rc, prc;

	/* The base first, here: its config creates the domain. */
	if (xchain_open(&c, 0))
		return e->rc;
	c.next = 1;
	rc = pump_start(&pump, NULL, xchain_read, &c, &lib_fd);
	if (rc) {
		pvm_error_set(e, rc, "cannot start the restore pipe: %s",
			      strerror(-rc));
		goto out;
	}
	rc = pvm_hv_xen_restore_checkpointed(cfg->hv, c.json, lib_fd,
					     cfg->paused, &domid);
	close(lib_fd);
	prc = pump_join(&pump);
	st->bytes = pump.bytes;
	if (rc) {
		pvm_error_set(e, rc, "%s: libxl could not restore epoch %u: %s",
			      dir, m->epoch, strerror(-rc));
		goto out;
	}
	if (prc || c.done != m->epoch + 1) {
		/* libxc failed over to an older checkpoint than the manifest
		 * names: not what was asked for. */
		cfg->hv->ops->domain_destroy(cfg->hv, domid);
		pvm_error_set(
		    e, prc ? prc : -EBADMSG,
		    "%s: epoch %u could not be "
		    "read whole (%u of %u files): the domain libxl built "
		    "from an older epoch was destroyed",
		    dir, m->epoch, c.done, m->epoch + 1);
		goto out;
	}
	st->files = c.done;
	st->epoch = m->epoch;
	restored(cfg, st, domid, t0);
	rc = 0;
out:
	xchain_close(&c);
	free(c.json);
	return e->rc ? e->rc : rc;
}

int pvm_ckpt__xen_inspect_dir(const char *dir, const struct sr_manifest *m,
			      const struct sr_key *key,
			      struct pvm_ckpt_image *out, struct pvm_error *e)
{
	struct xchain c = { .dir = dir, .m = m, .key = key, .e = e };
	uint8_t *buf = malloc(PUMP_BUF);
	size_t got;
	int rc;

	if (!buf)
		return pvm_error_set(e, -ENOMEM, "out of memory");
	out->is_dir = true;
	snprintf(out->kind, sizeof(out->kind), "%s", "dir");
	rc = xchain_open(&c, 0);
	if (!rc) {
		c.next = 1;
		out->lz4 = c.in.lz4;
		out->encrypted = c.in.sealed;
	}
	/* Every committed file read to its end, its trailer checked. */
	while (!rc && !(rc = xchain_read(&c, buf, PUMP_BUF, &got)) && got)
		out->info.bytes += got;
	out->files = c.done;
	if (!rc) {
		struct stat sb;
		char p[4096];

		for (uint32_t ep = 0; ep <= m->epoch; ep++)
			if (!pvm_ckpt__epoch_path(p, sizeof(p), dir, m->chain,
						  ep, m->lz4) &&
			    !stat(p, &sb))
				out->file_bytes += (uint64_t)sb.st_size;
		out->epoch = m->epoch;
	}
	xchain_close(&c);
	free(c.json);
	free(buf);
	return e->rc ? e->rc : rc;
}

bool pvm_ckpt__xen_is_epoch_file(const char *path, const struct sr_key *key)
{
	struct pvm_error e;
	struct sr_config c;
	struct sr_in in;
	bool has, xen;

	pvm_error_init(&e);
	if (pvm_ckpt__in_open(&in, path, key, &c, &has, &e))
		return false;
	xen = !has && in.xl_config &&
	      (in.xl_mandatory & PVM_CKPT_XL_MANDATORY_JSON);
	pvm_ckpt__in_close(&in);
	return xen;
}
