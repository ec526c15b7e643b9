/*
 * pvmigd's save, restore and checkpoint commands: the control-protocol
 * side of checkpoint/'s pvm_ckpt_save/restore/continuous.
 *
 *   h_save()        domain=, path=, [live=1] [keep=1] [lz4=1] [digest=1]
 *                   [pv_mode=] [suspend_timeout_ms=] [drain_timeout_ms=]
 *                   (also h_checkpoint; h_restore: pv_mode= only)
 *                   [key_file=] (all three: the key file's path; pvmigd
 *                   reads it, the key never crosses the socket)
 *                   a job thread: PROGRESS records, then the RESULT
 *   h_restore()     path=, [paused=1] [digest=1]
 *                   on the main thread (the simulated host's guests die
 *                   with the thread that created them): PROGRESS, RESULT
 *   h_checkpoint()  domain=, dir=, interval_ms=, [epochs=] [duration_s=]
 *                   [rebase_epochs=] [lz4=1] [digest=1]; a job thread: one PROGRESS per
 *                   committed epoch; ends after the epochs/duration, or
 *                   when the client sends CANCEL or goes away
 *
 * Paths are absolute (the CLI resolves them against its own directory).
 */
#include "migrate/internal.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "pvquiesce/pvquiesce.h"

/* A save or checkpoint running in a job thread; owns the client fd. */
struct sr_job {
	struct pvm_service *svc;
	int fd;
	struct pvm_hv_dominfo dom;
	char path[PVM_KV_VALUE_MAX + 1];
	char image[256];
	char key_file[PVM_KV_VALUE_MAX + 1]; /* "" : no encryption */
	struct pvm_ckpt_devices dev;  /* from the toolstack's config */
	bool have_dev;
	uint32_t flags;      /* PVM_CKPT_SAVE_* */
	uint32_t interval_ms, epochs, rebase_epochs;
	struct req_pv_opts pv; /* timeouts 0: pvquiesce's defaults */
	uint64_t duration_ms;
	uint64_t last_progress_ns;
};

/* The toolstack's config of @domid (image, PV devices), as the saved
 * config carries it; false when the service does not know the domain. */
static bool config_of(struct pvm_service *s, uint32_t domid, char *image,
		      size_t len, struct pvm_ckpt_devices *d)
{
	struct dom_config dc;

	memset(d, 0, sizeof(*d));
	image[0] = '\0';
	if (svc_config_get(s, domid, &dc))
		return false;
	snprintf(image, len, "%s", dc.image);
	d->frontend_gen = dc.frontend_gen;
	d->nr_disks = dc.nr_disks;
	for (uint32_t i = 0; i < dc.nr_disks && i < PVM_CKPT_DISKS_MAX; i++) {
		snprintf(d->disks[i].path, sizeof(d->disks[i].path), "%s",
			 dc.disks[i].path);
		snprintf(d->disks[i].vdev, sizeof(d->disks[i].vdev), "%s",
			 dc.disks[i].vdev);
		d->disks[i].readonly = dc.disks[i].readonly;
	}
	d->nr_nics = dc.nr_nics;
	for (uint32_t i = 0; i < dc.nr_nics && i < PVM_CKPT_NICS_MAX; i++) {
		memcpy(d->nics[i].mac, dc.nics[i].mac, 6);
		snprintf(d->nics[i].bridge, sizeof(d->nics[i].bridge), "%s",
			 dc.nics[i].bridge);
	}
	return true;
}

/* Records a restored domain's config, so a later save or migration of it
 * carries the same image and devices. */
static void config_put(struct pvm_service *s, uint32_t domid,
		       const char *image, const struct pvm_ckpt_devices *d)
{
	struct dom_config dc;

	memset(&dc, 0, sizeof(dc));
	dc.domid = domid;
	snprintf(dc.image, sizeof(dc.image), "%s", image);
	dc.frontend_gen = d->frontend_gen;
	dc.nr_disks = d->nr_disks;
	for (uint32_t i = 0; i < d->nr_disks && i < PVM_HV_MAX_DISKS; i++) {
		snprintf(dc.disks[i].path, sizeof(dc.disks[i].path), "%s",
			 d->disks[i].path);
		snprintf(dc.disks[i].vdev, sizeof(dc.disks[i].vdev), "%s",
			 d->disks[i].vdev);
		dc.disks[i].readonly = d->disks[i].readonly;
	}
	dc.nr_nics = d->nr_nics;
	for (uint32_t i = 0; i < d->nr_nics && i < PVM_HV_MAX_NICS; i++) {
		memcpy(dc.nics[i].mac, d->nics[i].mac, 6);
		snprintf(dc.nics[i].bridge, sizeof(dc.nics[i].bridge), "%s",
			 d->nics[i].bridge);
	}
	svc_config_put(s, &dc);
}

static void hexstr(char *out, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static bool is_set(const struct req *r, const char *key)
{
	const char *v = pvm_kv_get(r->args, key);

	return v && strcmp(v, "0");
}

static int get_path(struct req *r, const char *key, char *out, size_t len);

/* The optional key_file= (absolute); its contents never cross the socket. */
static int get_key_file(struct req *r, char *out, size_t len)
{
	out[0] = '\0';
	if (!pvm_kv_get(r->args, "key_file"))
		return 0;
	return get_path(r, "key_file", out, len);
}

static int get_path(struct req *r, const char *key, char *out, size_t len)
{
	const char *p = pvm_kv_get(r->args, key);

	if (!p || p[0] != '/' || strlen(p) >= len)
		return reply_result(r, -EINVAL, NULL,
				    "give an absolute %s (pvmig resolves "
				    "relative ones)", key), -EINVAL;
	snprintf(out, len, "%s", p);
	return 0;
}

/* Progress as PROGRESS records, at most about 10 a second. */
static void send_progress(int fd, uint64_t *last_ns,
			  const struct pvm_ckpt_progress *p)
{
	uint64_t now = pvm_now_ns();
	struct pvm_kv kv;

	if (*last_ns && now - *last_ns < 100000000u && p->done != p->total)
		return;
	*last_ns = now;
	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "phase", "%s", p->phase);
	pvm_kv_add(&kv, "round", "%u", p->round);
	pvm_kv_add(&kv, "done", "%llu", (unsigned long long)p->done);
	pvm_kv_add(&kv, "total", "%llu", (unsigned long long)p->total);
	pvm_kv_add(&kv, "bytes", "%llu", (unsigned long long)p->bytes);
	pvm_ctl_send(fd, PVM_CTL_PROGRESS, &kv);
	pvm_kv_dispose(&kv);
}

static void job_progress(void *ctx, const struct pvm_ckpt_progress *p)
{
	struct sr_job *j = ctx;

	send_progress(j->fd, &j->last_progress_ns, p);
}

/* The RESULT of a job, then the fd is closed and the job freed. */
static void job_finish(struct sr_job *j, int rc, const struct pvm_kv *kv,
		       const char *msg)
{
	struct req r = { .svc = j->svc, .fd = j->fd, .args = NULL };

	if (rc)
		reply_result(&r, rc, kv, "%s", msg);
	else
		reply_result(&r, 0, kv, NULL);
	close(j->fd);
	free(j);
}

/* ---- save ---------------------------------------------------------------- */

static void *save_main(void *arg)
{
	struct sr_job *j = arg;
	struct pvm_ckpt_save_cfg cfg = {
		.hv = j->svc->hv, .domid = j->dom.domid, .path = j->path,
		.flags = j->flags, .image = j->image,
		.key_file = j->key_file[0] ? j->key_file : NULL,
		.devices = j->have_dev ? &j->dev : NULL,
		.progress = job_progress, .progress_ctx = j,
		.xs = j->svc->xs,
		.suspend_timeout_ms = j->pv.suspend_timeout_ms,
		.drain_timeout_ms = j->pv.drain_timeout_ms,
		.pv_mode = j->pv.mode,
	};
	struct pvm_ckpt_save_stats st;
	struct pvm_kv kv;
	char dg[65];
	int rc;

	rc = pvm_ckpt_save(&cfg, &st);
	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "domain", "%s", j->dom.name);
	pvm_kv_add(&kv, "domid", "%u", j->dom.domid);
	pvm_kv_add(&kv, "path", "%s", j->path);
	if (!rc) {
		if (!(j->flags & PVM_CKPT_SAVE_KEEP))
			svc_config_drop(j->svc, j->dom.domid);
		pvm_kv_add(&kv, "mode", "%s",
			   j->flags & PVM_CKPT_SAVE_LIVE ? "live" : "cold");
		pvm_kv_add(&kv, "guest", "%s", j->flags & PVM_CKPT_SAVE_KEEP ?
						       "running" : "destroyed");
		pvm_kv_add(&kv, "format", "%s%s",
			   j->flags & PVM_CKPT_SAVE_LZ4 ? "lz4" : "raw",
			   j->key_file[0] ? ", encrypted (AES-256-GCM)" : "");
		pvm_kv_add(&kv, "pages", "%llu", (unsigned long long)st.pages);
		pvm_kv_add(&kv, "stream_bytes", "%llu",
			   (unsigned long long)st.bytes);
		pvm_kv_add(&kv, "rounds", "%u", st.rounds);
		pvm_kv_add(&kv, "suspend", "%s", st.suspend);
		pvm_kv_add(&kv, "suspend_ms", "%.2f", st.suspend_ms);
		pvm_kv_add(&kv, "devices_quiesced", "%u", st.devices);
		pvm_kv_add(&kv, "pause_ms", "%.3f", (double)st.pause_ns / 1e6);
		pvm_kv_add(&kv, "total_ms", "%.3f", (double)st.total_ns / 1e6);
		pvm_kv_add(&kv, "memory_gib_per_s", "%.3f",
			   st.total_ns ? (double)j->dom.nr_pages * PVM_PAGE_SIZE /
						 ((double)st.total_ns / 1e9) /
						 (1u << 30) : 0.0);
		if (st.has_digest) {
			hexstr(dg, st.mem_digest, 32);
			pvm_kv_add(&kv, "memory_sha256", "%s", dg);
		}
		pvm_info("saved domain %u '%s' to %s", j->dom.domid,
			 j->dom.name, j->path);
	}
	job_finish(j, rc, &kv, st.err_msg);
	pvm_kv_dispose(&kv);
	return NULL;
}

int h_save(struct req *r)
{
	struct sr_job *j = calloc(1, sizeof(*j));
	int rc;

	if (!j)
		return reply_result(r, -ENOMEM, NULL, NULL);
	if (find_domain(r, &j->dom) ||
	    get_path(r, "path", j->path, sizeof(j->path)) ||
	    get_key_file(r, j->key_file, sizeof(j->key_file)) ||
	    req_pv_opts(r, &j->pv)) {
		free(j);
		return 0;
	}
	j->svc = r->svc;
	j->fd = r->fd;
	j->flags = (is_set(r, "live") ? PVM_CKPT_SAVE_LIVE : 0) |
		   (is_set(r, "keep") ? PVM_CKPT_SAVE_KEEP : 0) |
		   (is_set(r, "lz4") ? PVM_CKPT_SAVE_LZ4 : 0) |
		   (is_set(r, "digest") ? PVM_CKPT_SAVE_DIGEST : 0);
	j->have_dev = config_of(r->svc, j->dom.domid, j->image,
				sizeof(j->image), &j->dev);
	rc = svc_job_start(r->svc, save_main, j);
	if (rc) {
		free(j);
		return reply_result(r, rc, NULL, "cannot start the save: %s",
				    strerror(-rc));
	}
	return REQ_DETACHED;
}

/* ---- restore ------------------------------------------------------------- */

struct restore_ctx {
	int fd;
	uint64_t last_ns;
};

static void restore_progress(void *ctx, const struct pvm_ckpt_progress *p)
{
	struct restore_ctx *x = ctx;

	send_progress(x->fd, &x->last_ns, p);
}

int h_restore(struct req *r)
{
	struct restore_ctx x = { .fd = r->fd };
	struct pvm_ckpt_restore_cfg cfg = {
		.hv = r->svc->hv,
		.paused = is_set(r, "paused"),
		.digest = is_set(r, "digest"),
		.progress = restore_progress,
		.progress_ctx = &x,
		.xs = r->svc->xs,
	};
	struct pvm_ckpt_restore_stats st;
	struct pvm_hv_dominfo info;
	struct req_pv_opts pv;
	char path[PVM_KV_VALUE_MAX + 1], key_file[PVM_KV_VALUE_MAX + 1], dg[65];
	struct pvm_kv kv;
	int rc;

	if (get_path(r, "path", path, sizeof(path)) ||
	    get_key_file(r, key_file, sizeof(key_file)) ||
	    req_pv_opts(r, &pv))
		return 0;
	cfg.pv_mode = pv.mode;
	cfg.path = path;
	cfg.key_file = key_file[0] ? key_file : NULL;
	rc = pvm_ckpt_restore(&cfg, &st);
	if (rc)
		return reply_result(r, rc, NULL, "%s", st.err_msg);
	config_put(r->svc, st.domid, st.image, &st.devices);
	pvm_kv_init(&kv);
	if (r->svc->hv->ops->domain_info(r->svc->hv, st.domid, &info) == 0)
		add_dominfo(&kv, &info);
	else
		pvm_kv_add(&kv, "domid", "%u", st.domid);
	pvm_kv_add(&kv, "path", "%s", path);
	pvm_kv_add(&kv, "files", "%u", st.files);
	pvm_kv_add(&kv, "pv_devices", "%u disk(s), %u nic(s) re-created%s%s",
		   st.devices.nr_disks, st.devices.nr_nics,
		   st.devices_msg[0] ? "; " : "", st.devices_msg);
	if (st.devices_msg[0])
		pvm_kv_add(&kv, "devices", "%s", st.devices_msg);
	if (st.files > 1 || st.epoch)
		pvm_kv_add(&kv, "epoch", "%u", st.epoch);
	pvm_kv_add(&kv, "pages", "%llu", (unsigned long long)st.pages);
	pvm_kv_add(&kv, "stream_bytes", "%llu", (unsigned long long)st.bytes);
	pvm_kv_add(&kv, "total_ms", "%.3f", (double)st.total_ns / 1e6);
	if (st.has_digest) {
		hexstr(dg, st.mem_digest, 32);
		pvm_kv_add(&kv, "memory_sha256", "%s", dg);
	}
	rc = reply_result(r, 0, &kv, NULL);
	pvm_kv_dispose(&kv);
	return rc;
}

/* ---- continuous checkpoints ------------------------------------------------ */

/* Sleeps @ms unless the client sends anything (CANCEL) or goes away. */
static int cp_wait(void *ctx, uint32_t ms)
{
	struct sr_job *j = ctx;
	struct pollfd pf = { .fd = j->fd, .events = POLLIN };
	int n;

	if (svc_stopping(j->svc))
		return 1;
	do
		n = poll(&pf, 1, (int)(ms > 1000 ? 1000 : ms));
	while (n < 0 && errno == EINTR);
	if (n > 0)
		return 1;
	if (ms > 1000)
		return cp_wait(ctx, ms - 1000);
	return 0;
}

static void cp_epoch(void *ctx, const struct pvm_ckpt_epoch_stats *e)
{
	struct sr_job *j = ctx;
	struct pvm_kv kv;
	char dg[65];

	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "phase", "epoch");
	pvm_kv_add(&kv, "epoch", "%u", e->epoch);
	pvm_kv_add(&kv, "pause_ms", "%.3f", (double)e->pause_ns / 1e6);
	if (e->pages != PVM_CKPT_PAGES_UNKNOWN)
		pvm_kv_add(&kv, "pages", "%llu",
			   (unsigned long long)e->pages);
	pvm_kv_add(&kv, "bytes", "%llu", (unsigned long long)e->bytes);
	pvm_kv_add(&kv, "commit_ms", "%.3f", (double)e->commit_ns / 1e6);
	if (e->suspend[0])
		pvm_kv_add(&kv, "suspend", "%s", e->suspend);
	if (e->has_digest) {
		hexstr(dg, e->mem_digest, 32);
		pvm_kv_add(&kv, "memory_sha256", "%s", dg);
	}
	pvm_ctl_send(j->fd, PVM_CTL_PROGRESS, &kv);
	pvm_kv_dispose(&kv);
}

static void *checkpoint_main(void *arg)
{
	struct sr_job *j = arg;
	struct pvm_ckpt_cont_cfg cfg = {
		.hv = j->svc->hv, .domid = j->dom.domid, .dir = j->path,
		.flags = j->flags, .interval_ms = j->interval_ms,
		.max_epochs = j->epochs, .duration_ms = j->duration_ms,
		.rebase_epochs = j->rebase_epochs,
		.image = j->image,
		.key_file = j->key_file[0] ? j->key_file : NULL,
		.devices = j->have_dev ? &j->dev : NULL,
		.xs = j->svc->xs,
		.suspend_timeout_ms = j->pv.suspend_timeout_ms,
		.drain_timeout_ms = j->pv.drain_timeout_ms,
		.pv_mode = j->pv.mode,
		.wait = cp_wait, .wait_ctx = j,
		.epoch_done = cp_epoch, .epoch_ctx = j,
		.progress = job_progress, .progress_ctx = j,
	};
	struct pvm_ckpt_cont_stats st;
	struct pvm_kv kv;
	int rc;

	rc = pvm_ckpt_continuous(&cfg, &st);
	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "domain", "%s", j->dom.name);
	pvm_kv_add(&kv, "dir", "%s", j->path);
	pvm_kv_add(&kv, "epochs", "%u", st.epochs);
	pvm_kv_add(&kv, "max_pause_ms", "%.3f", (double)st.max_pause_ns / 1e6);
	pvm_kv_add(&kv, "mean_pause_ms", "%.3f",
		   st.epochs ? (double)st.total_pause_ns / st.epochs / 1e6 : 0.0);
	pvm_kv_add(&kv, "bytes", "%llu", (unsigned long long)st.bytes);
	if (rc)
		pvm_kv_add(&kv, "restorable", "%s",
			   "the last committed epoch (see pvmig verify DIR)");
	job_finish(j, rc, &kv, st.err_msg);
	pvm_kv_dispose(&kv);
	return NULL;
}

int h_checkpoint(struct req *r)
{
	struct sr_job *j = calloc(1, sizeof(*j));
	uint64_t v;
	int rc;

	if (!j)
		return reply_result(r, -ENOMEM, NULL, NULL);
	if (find_domain(r, &j->dom) ||
	    get_path(r, "dir", j->path, sizeof(j->path)) ||
	    get_key_file(r, j->key_file, sizeof(j->key_file)) ||
	    req_pv_opts(r, &j->pv)) {
		free(j);
		return 0;
	}
	if (pvm_kv_get_u64(r->args, "interval_ms", &v) || v < 1 ||
	    v > 3600000) {
		free(j);
		return reply_result(r, -EINVAL, NULL,
				    "--interval-ms N is required (1..3600000)");
	}
	j->interval_ms = (uint32_t)v;
	if (pvm_kv_get_u64(r->args, "epochs", &v) == 0) {
		if (v < 1 || v > 1000000) {
			free(j);
			return reply_result(r, -EINVAL, NULL,
					    "--epochs must be 1..1000000");
		}
		j->epochs = (uint32_t)v;
	}
	if (pvm_kv_get_u64(r->args, "duration_s", &v) == 0)
		j->duration_ms = v * 1000;
	if (pvm_kv_get_u64(r->args, "rebase_epochs", &v) == 0) {
		if (v < 1 || v > 1000000) {
			free(j);
			return reply_result(r, -EINVAL, NULL,
					    "--rebase-every must be 1..1000000");
		}
		j->rebase_epochs = (uint32_t)v;
	}
	j->svc = r->svc;
	j->fd = r->fd;
	j->flags = (is_set(r, "lz4") ? PVM_CKPT_SAVE_LZ4 : 0) |
		   (is_set(r, "digest") ? PVM_CKPT_SAVE_DIGEST : 0);
	j->have_dev = config_of(r->svc, j->dom.domid, j->image,
				sizeof(j->image), &j->dev);
	rc = svc_job_start(r->svc, checkpoint_main, j);
	if (rc) {
		free(j);
		return reply_result(r, rc, NULL,
				    "cannot start the checkpoints: %s",
				    strerror(-rc));
	}
	return REQ_DETACHED;
}
