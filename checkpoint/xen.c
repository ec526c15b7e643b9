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
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/sr.h"
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
	struct sr_in *in;              /* in: file -> pipe */
	uint64_t bytes;                /* moved (read by the owner after join,
					* or racily for progress) */
	int rc;                        /* first error */
	bool started;
};

static void *pump_out_main(void *arg)
{
	struct pump *p = arg;
	uint8_t *buf = malloc(PUMP_BUF);
	ssize_t n;

	if (!buf) {
		p->rc = -ENOMEM;
		return NULL;
	}
	for (;;) {
		n = read(p->fd, buf, PUMP_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			p->rc = -errno;
			break;
		}
		if (n == 0)
			break;
		/* After a write error keep draining, so that the library's
		 * writes do not block; its own failure follows ours. */
		if (!p->rc)
			p->rc = p->wc->write(p->wc->write_ctx, buf, (size_t)n);
		__atomic_add_fetch(&p->bytes, (uint64_t)n, __ATOMIC_RELAXED);
	}
	free(buf);
	return NULL;
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
		p->rc = sr_in_read(p->in, buf, PUMP_BUF, &got);
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

/* Starts a pump from the pipe into @wc (out) or from @in into the pipe;
 * *@lib_fd is the library's end (the caller closes it). */
static int pump_start(struct pump *p, const struct pvm_ckpt_write_cfg *wc,
		      struct sr_in *in, int *lib_fd)
{
	bool out = wc != NULL;
	int fds[2], rc;

	p->wc = wc;
	p->in = in;
	p->fd = -1;
	p->rc = 0;
	p->bytes = 0;
	p->started = false;
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
	rc = pvm_hv_xen_suspend(s->cfg->hv, s->cfg->domid,
				PVM_HV_XEN_SUSPEND_MS);
	s->suspended = rc == 0;
	return rc;
}

/* pvmig's convergence policy (sr_precopy_done, the one the simulated
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
	stop = sr_precopy_done(round, s->max_rounds, d, s->prev_dirty);
	s->prev_dirty = d;
	return stop ? PVM_HV_XEN_PRECOPY_STOP : PVM_HV_XEN_PRECOPY_CONTINUE;
}

/* libxl header + LIBXC_CONTEXT record header (§2.1, §2.2). */
static int write_libxl_head(const struct pvm_ckpt_write_cfg *wc)
{
	uint8_t h[PVM_CKPT_LIBXL_HEAD_SIZE];

	return wc->write(wc->write_ctx, h, pvm_ckpt_libxl_head(h));
}

int sr_xen_save(const struct pvm_ckpt_save_cfg *cfg, const struct sr_key *key,
		struct pvm_ckpt_save_stats *st)
{
	static const uint8_t libxl_end[PVM_CKPT_LIBXL_END_SIZE]; /* END */
	struct sr_err e = { .msg = st->err_msg };
	struct pvm_ckpt_write_cfg wc = { 0 };
	struct sr_out o = { 0 };
	struct pump pump = { .fd = -1 };
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
		return sr_fail(&e, -EINVAL, "bad save arguments");
	if (cfg->flags & PVM_CKPT_SAVE_DIGEST)
		return sr_fail(&e, -EOPNOTSUPP, "domain %u: a memory digest "
			       "is not available on Xen (libxenguest copies "
			       "the memory)", cfg->domid);
	s.max_rounds = cfg->max_rounds ? cfg->max_rounds : SR_DEFAULT_ROUNDS;
	rc = pvm_hv_xen_config_json(cfg->hv, cfg->domid, &json);
	if (rc)
		return sr_fail(&e, rc, "domain %u: cannot read its libxl "
			       "configuration: %s", cfg->domid, strerror(-rc));
	if (sr_out_create(&o, cfg->path, cfg->flags & PVM_CKPT_SAVE_LZ4, key,
			  &wc, &e))
		goto out_rc;
	rc = sr_write_xl_header(&wc, PVM_CKPT_XL_MANDATORY_JSON, json,
				strlen(json));
	if (!rc)
		rc = write_libxl_head(&wc);
	if (rc) {
		sr_fail(&e, rc, "cannot write %s.tmp: %s", cfg->path,
			strerror(-rc));
		goto out_abort;
	}
	rc = pump_start(&pump, &wc, NULL, &lib_fd);
	if (rc) {
		sr_fail(&e, rc, "cannot start the save pipe: %s", strerror(-rc));
		goto out_abort;
	}
	rc = pvm_hv_xen_save(cfg->hv, cfg->domid, lib_fd, live, &cb);
	close(lib_fd);
	prc = pump_join(&pump);
	if (s.suspended)
		st->pause_ns = pvm_now_ns() - s.t_suspend;
	if (rc) {
		sr_fail(&e, rc, "domain %u: libxenguest could not save it: %s "
			"(its reason is in the log)", cfg->domid, strerror(-rc));
		goto out_resume;
	}
	if (prc) {
		sr_fail(&e, prc, "cannot write %s.tmp: %s", cfg->path,
			strerror(-prc));
		goto out_resume;
	}
	rc = wc.write(wc.write_ctx, libxl_end, sizeof(libxl_end));
	if (rc) {
		sr_fail(&e, rc, "cannot write %s.tmp: %s", cfg->path,
			strerror(-rc));
		goto out_resume;
	}
	st->bytes = pump.bytes;
	if (sr_out_commit(&o, &e))
		goto out_resume;
	/* The file is in place: now the guest may go (or carry on). */
	if (cfg->flags & PVM_CKPT_SAVE_KEEP) {
		rc = pvm_hv_xen_resume(cfg->hv, cfg->domid);
		if (rc)
			sr_fail(&e, rc, "domain %u: saved to %s, but it could "
				"not be resumed: %s", cfg->domid, cfg->path,
				strerror(-rc));
	} else {
		rc = cfg->hv->ops->domain_destroy(cfg->hv, cfg->domid);
		if (rc)
			sr_fail(&e, rc, "domain %u: saved to %s, but it could "
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
	sr_out_abort(&o);
out_rc:
	free(json);
	return e.rc;
}

/* ---- restore ------------------------------------------------------------ */

int sr_xen_restore(const struct pvm_ckpt_restore_cfg *cfg, const char *path,
		   const struct sr_key *key,
		   struct pvm_ckpt_restore_stats *st, struct sr_err *e)
{
	struct sr_in in;
	struct sr_config c;
	struct pump pump = { .fd = -1 };
	uint64_t t0 = pvm_now_ns();
	bool has;
	int lib_fd = -1, rc, prc;
	uint32_t domid = 0;

	if (sr_in_open(&in, path, key, &c, &has, e))
		return e->rc;
	if (has || !in.xl_config ||
	    !(in.xl_mandatory & PVM_CKPT_XL_MANDATORY_JSON)) {
		sr_in_close(&in);
		return sr_fail(e, -ENOTSUP, "%s: %s", path, has ?
			       "saved by pvmig on the simulated host (or by "
			       "an older pvmig on Xen): a Xen host restores "
			       "files that carry libxl's JSON config, as "
			       "pvmig save and xl save write them on Xen" :
			       "no libxl JSON domain config in its xl header "
			       "(an old xl.cfg-text save file: use xl restore)");
	}
	rc = pump_start(&pump, NULL, &in, &lib_fd);
	if (rc) {
		sr_in_close(&in);
		return sr_fail(e, rc, "cannot start the restore pipe: %s",
			       strerror(-rc));
	}
	rc = pvm_hv_xen_restore(cfg->hv, in.xl_config, lib_fd, cfg->paused,
				&domid);
	close(lib_fd); /* the pump sees EPIPE if libxl stopped early */
	prc = pump_join(&pump);
	st->bytes = pump.bytes;
	if (rc) {
		sr_fail(e, rc, "%s: libxl could not restore it: %s%s%s", path,
			strerror(-rc), prc ? "; reading the file: " : "",
			prc ? strerror(-prc) : "");
		goto out;
	}
	st->domid = domid;
	st->files = 1;
	{
		struct pvm_hv_dominfo di;

		if (!cfg->hv->ops->domain_info(cfg->hv, domid, &di))
			snprintf(st->name, sizeof(st->name), "%s", di.name);
	}
	st->total_ns = pvm_now_ns() - t0;
	rc = 0;
out:
	sr_in_close(&in);
	return rc;
}
