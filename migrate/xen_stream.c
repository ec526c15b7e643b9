/*
 * Migration on Xen: libxenguest's stream instead of pages and STATE.
 *
 * The source runs xc_domain_save (live, its suspend and pvmig's policy)
 * into a pipe; a thread (the pump) cuts what comes out into chunks of
 * PVM_XCHUNK_PAGES page slots sent as page batches (lz4, zero pages
 * elided, several connections), each closed by MIG_XCHUNK {bytes}. The
 * destination writes each chunk, in order, into the pipe
 * libxl_domain_create_restore reads on its own thread (the domain created
 * paused from the config chunk, MIG_XCONFIG, sent first). MIG_XEND ends the
 * stream; READY, UNPAUSE, RUNNING and the rollback are as on the simulated
 * host (source.c, dest.c), the source copy being suspended instead of
 * paused (resumed with suspend-cancel on rollback).
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "hv/xen/xen.h"
#include "transport/transport.h"

/* ---- Xen: libxenguest's stream in chunks ------------------------------------ */

/* Sends chunk @k of a Xen stream: its pages, then @type {bytes}. */
int mig_xsend_chunk(struct pvm_channel *ch, int type, uint64_t k,
		    const uint8_t *buf, size_t len)
{
	struct pvm_kv kv;
	int rc = pvm_xchunk_send_pages(ch, k, buf, len);

	if (rc)
		return rc;
	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "bytes", "%zu", len);
	rc = mig_send_kv(ch, type, &kv);
	pvm_kv_dispose(&kv);
	return rc;
}

/* The chunk a MIG_XCONFIG/MIG_XCHUNK message closes; -EBADMSG with @why
 * saying what is wrong with it. */
static int xchunk_take(struct mig_dst *d, const struct pvm_kv *kv,
		       const uint8_t **at, size_t *len_out, char *why,
		       size_t why_len)
{
	unsigned long long k = (unsigned long long)d->xrx.taken;
	uint64_t bytes;

	if (pvm_kv_get_u64(kv, "bytes", &bytes)) {
		snprintf(why, why_len, "chunk %llu of the stream has no valid length ('bytes')",
			 k);
		return -EBADMSG;
	}
	if (bytes > PVM_XCHUNK_BYTES) {
		snprintf(why, why_len, "chunk %llu of the stream claims %llu bytes, a chunk holds at most %u",
			 k, (unsigned long long)bytes, PVM_XCHUNK_BYTES);
		return -EBADMSG;
	}
	if (pvm_xchunk_rx_take(&d->xrx, bytes, at, len_out)) {
		snprintf(why, why_len, "chunk %llu of the stream claims %llu bytes, which are not the pages that came for it",
			 k, (unsigned long long)bytes);
		return -EBADMSG;
	}
	return 0;
}

/* The destination's libxl restore, on its own thread: it reads the pipe
 * the channel's chunks are written into. */
struct xrestore {
	struct pvm_hv *hv;
	char *json;
	int fd;        /* read end, the thread's */
	int wfd;       /* write end, ours */
	uint32_t domid;
	int rc;
	pthread_t thread;
	bool started;
};

static void *xrestore_main(void *arg)
{
	struct xrestore *x = arg;

	x->rc = pvm_hv_xen_restore(x->hv, x->json, x->fd, true, &x->domid);
	close(x->fd); /* a writer still writing gets EPIPE */
	x->fd = -1;
	return NULL;
}

/* Ends our side of the pipe and waits for libxl: a restore that succeeded
 * made a paused domain here (XRESTORE -> LOADING). */
static void xrestore_join(struct mig_dst *d, struct xrestore *x)
{
	if (x->wfd >= 0)
		close(x->wfd); /* EOF: a waiting libxl fails and cleans up */
	x->wfd = -1;
	if (!x->started)
		return;
	pthread_join(x->thread, NULL);
	x->started = false;
	if (!x->rc) {
		d->domid = x->domid;
		mig_dst_go(d, MIG_DST_XRESTORE, MIG_DST_LOADING);
	}
}

/* XSTREAM, the config chunk in: start libxl's restore (XRESTORE). */
static int xdst_config(struct mig_dst *d, const struct pvm_kv *kv,
		       struct xrestore *x, char *why, size_t why_len)
{
	const uint8_t *at;
	size_t len;
	int fds[2], rc;

	if (xchunk_take(d, kv, &at, &len, why, why_len))
		return -EBADMSG;
	if (!len || memchr(at, '\0', len)) {
		snprintf(why, why_len, "the domain's config (chunk 0, %zu bytes) is %s",
			 len, len ? "not text (a NUL inside)" : "empty");
		return -EBADMSG;
	}
	x->json = strndup((const char *)at, len);
	if (!x->json || pipe2(fds, O_CLOEXEC)) {
		snprintf(why, why_len, "out of memory or file descriptors");
		return -ENOMEM;
	}
	x->fd = fds[0];
	x->wfd = fds[1];
	rc = mig_dst_go(d, MIG_DST_XSTREAM, MIG_DST_XRESTORE);
	if (!rc)
		rc = -pthread_create(&x->thread, NULL, xrestore_main, x);
	if (rc) {
		close(fds[0]);
		x->fd = -1;
		snprintf(why, why_len, "cannot start the restore: %s",
			 strerror(-rc));
		return rc;
	}
	x->started = true;
	pvm_info("migration %.8s: receiving '%s' as libxenguest's stream",
		 d->h.id, d->h.name);
	return 0;
}

/* XRESTORE: the chunks, each written into libxl's pipe, until XEND. */
static int xdst_chunks(struct mig_dst *d, struct xrestore *x, char *why,
		       size_t why_len)
{
	struct mig_msg_in msg;
	const uint8_t *at;
	size_t len;
	int type, rc = 0;

	mig_msg_init(&msg);
	while (!rc) {
		type = mig_dst_recv(d, &msg, why, why_len);
		if (type < 0)
			rc = type;
		else if (type == MIG_ABORT) {
			snprintf(why, why_len, "source aborted: %s",
				 pvm_kv_get(&msg.kv, "error") ?: "no reason");
			rc = -ECONNABORTED;
		} else if (type == MIG_XEND)
			break;
		else if (xchunk_take(d, &msg.kv, &at, &len, why, why_len)) {
			mig_dst_refuse(d, why);
			rc = -EBADMSG;
		} else if ((rc = pvm_write_all(x->wfd, at, len))) {
			/* libxl stopped reading: its failure says why. */
			xrestore_join(d, x);
			snprintf(why, why_len, "libxl stopped reading the stream: %s",
				 x->rc ? strerror(-x->rc) : strerror(-rc));
			mig_dst_refuse(d, why);
		}
	}
	mig_msg_dispose(&msg);
	return rc;
}

int mig_dest_xen_receive(struct mig_dst *d, char *why, size_t why_len)
{
	struct xrestore x = { .hv = d->svc->hv, .fd = -1, .wfd = -1 };
	struct mig_msg_in msg;
	struct pvm_kv kv;
	sigset_t pipe_set;
	int type, rc;

	/* A libxl that stops reading makes our write fail (EPIPE) instead
	 * of killing pvmigd. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
	mig_msg_init(&msg);
	pvm_kv_init(&kv);
	rc = mig_dst_go(d, MIG_DST_OPEN, MIG_DST_XSTREAM);
	if (rc)
		goto out;
	if (pvm_xchunk_rx_init(&d->xrx)) {
		snprintf(why, why_len, "out of memory");
		rc = -ENOMEM;
		goto out_abort;
	}
	pvm_kv_add(&kv, "domid", "0");
	rc = mig_send_kv(d->ch, MIG_ACCEPT, &kv);
	if (rc) {
		snprintf(why, why_len, "lost the source: %s", strerror(-rc));
		rc = -ENOTCONN;
		goto out;
	}
	type = mig_dst_recv(d, &msg, why, why_len);
	rc = type < 0 ? type : type == MIG_ABORT ? -ECONNABORTED : 0;
	if (type == MIG_ABORT)
		snprintf(why, why_len, "source aborted: %s",
			 pvm_kv_get(&msg.kv, "error") ?: "no reason");
	if (rc)
		goto out; /* answered, or no need to */
	rc = xdst_config(d, &msg.kv, &x, why, why_len);
	if (rc)
		goto out_abort;
	rc = xdst_chunks(d, &x, why, why_len);
	if (rc)
		goto out;
	xrestore_join(d, &x);
	if (x.rc) {
		rc = x.rc;
		snprintf(why, why_len, "libxl could not restore it: %s (see pvmigd's log on the destination)",
			 strerror(-rc));
		goto out_abort;
	}
	rc = mig_dst_go(d, MIG_DST_LOADING, MIG_DST_READY);
	if (!rc && mig_send_kv(d->ch, MIG_READY, NULL)) {
		snprintf(why, why_len, "lost the source: channel closed");
		rc = -ENOTCONN;
	}
	if (!rc && mig_fault_point("dst-die-after-ready"))
		_exit(9);
	goto out;
out_abort:
	mig_dst_refuse(d, why);
out:
	/* restored after all, but not handed over: LOADING, destroyed */
	xrestore_join(d, &x);
	free(x.json);
	mig_msg_dispose(&msg);
	pvm_kv_dispose(&kv);
	return rc;
}

/* ---- source on Xen: libxenguest's stream --------------------------------- */

/* Cuts what libxenguest writes into the pipe into chunks on the channel;
 * the only sender on the channel while xc_domain_save runs. After a send
 * error it keeps draining the pipe so that libxenguest is never stuck. */
struct xpump {
	struct mig_src *m;
	int fd;
	int rc;
	pthread_t thread;
};

static void *xpump_main(void *arg)
{
	struct xpump *p = arg;
	uint8_t *buf = malloc(PVM_XCHUNK_BYTES), drain[512];
	size_t fill = 0;
	bool eof = false;
	ssize_t n;

	if (!buf)
		p->rc = -ENOMEM;
	if (p->m->o.bw_bytes_s)
		mig_src_bw_limit(p->m, false); /* --bandwidth: its clock starts here */
	while (!eof) {
		n = read(p->fd, buf ? buf + fill : drain,
			 buf ? PVM_XCHUNK_BYTES - fill : sizeof(drain));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			eof = true;
		else if (buf)
			fill += (size_t)n;
		if (n > 0) /* the round rates: not only whole chunks */
			atomic_fetch_add(&p->m->xread, (uint64_t)n);
		if (buf && fill && (fill == PVM_XCHUNK_BYTES || eof)) {
			if (!p->rc)
				p->rc = mig_xsend_chunk(p->m->ch, MIG_XCHUNK,
						    p->m->xchunks++, buf, fill);
			if (!p->rc)
				atomic_fetch_add(&p->m->xbytes, fill);
			/* --bandwidth: libxenguest waits on the pipe meanwhile */
			if (!p->rc && p->m->o.bw_bytes_s)
				mig_src_bw_limit(p->m, true);
			fill = 0;
		}
	}
	free(buf);
	return NULL;
}

/* libxenguest's suspend callback: the guest's own PV suspend. */
static int xsrc_suspend(void *ctx)
{
	struct mig_src *m = ctx;
	int rc;

	/* Full speed for the suspend (a throttled guest answers it slowly)
	 * and whatever follows; not before: after a STOP, libxenguest still
	 * sends the last dirty set live, which a throttled guest keeps small. */
	if (m->throttle && mig_src_throttle(m, 0))
		pvm_warn("migration %.8s: the throttle stays on '%s'", m->id,
			 m->dom.name);
	m->t.pause = pvm_now_ns();
	rc = pvm_hv_xen_suspend(m->svc->hv, m->dom.domid, m->o.suspend_timeout_ms);
	if (rc == 0)
		rc = mig_src_go(m, MIG_SRC_PRECOPY, MIG_SRC_PAUSED);
	m->x_suspend_rc = rc;
	return rc;
}

/* libxenguest's precopy_policy: pvmig's convergence policy on its round
 * figures and our measured throughput. */
static int xsrc_precopy(void *ctx, uint32_t round, uint64_t written,
			int64_t dirty)
{
	struct mig_src *m = ctx;
	struct pvm_round_stats *r = &m->r;
	uint64_t now = pvm_now_ns(), bytes = atomic_load(&m->xread);
	double s = (double)(now - m->x_t_round) / 1e9;
	enum pvm_policy_verdict v;
	const char *verdict_why;

	if (mig_src_cancelled(m)) {
		m->x_abort_rc = -ECANCELED;
		return PVM_HV_XEN_PRECOPY_ABORT;
	}
	if (dirty < 0) { /* before round 0 */
		m->x_t_round = now;
		m->x_bytes_round = bytes;
		return PVM_HV_XEN_PRECOPY_CONTINUE;
	}
	r->round = round ? round - 1 : 0;
	r->pages_sent = written - m->x_written; /* libxenguest counts all */
	m->x_written = written;
	r->wire_bytes = bytes - m->x_bytes_round;
	r->ms = (now - m->x_t_round) / 1000000;
	r->bytes_per_s = s > 0 ? (double)(bytes - m->x_bytes_round) / s : 0;
	r->dirty_after = (uint64_t)dirty;
	r->dirty_rate = s > 0 ? (double)dirty / s : 0;
	r->stuck_rounds = pvm_policy_shrank(m->x_prev_dirty, (uint64_t)dirty) ?
				  0 : r->stuck_rounds + 1;
	r->high_rounds = pvm_policy_round_high(r) ? r->high_rounds + 1 : 0;
	r->throttle_pct = m->throttle;
	m->x_prev_dirty = (uint64_t)dirty;
	v = pvm_policy_decide(&m->o.policy, r, (now - m->t.start) / 1000000,
			      &verdict_why);
	mig_src_progress(m, r, pvm_policy_predict_ms(r->dirty_after, r->bytes_per_s),
		 "precopy");
	mig_src_round_desc(m, r, (uint64_t)dirty, "dirty");
	pvm_debug("migration %.8s: round %u sent %llu pages (%llu stream bytes) in %llu ms, %llu dirty, throttle %u%%: %s",
		  m->id, r->round, (unsigned long long)r->pages_sent,
		  (unsigned long long)r->wire_bytes, (unsigned long long)r->ms,
		  (unsigned long long)dirty, r->throttle_pct, verdict_why);
	m->x_t_round = now;
	m->x_bytes_round = bytes;
	if (v == PVM_POLICY_CONTINUE)
		return PVM_HV_XEN_PRECOPY_CONTINUE;
	if (v == PVM_POLICY_THROTTLE) {
		int rc = mig_src_throttle(m, pvm_policy_throttle_next(m->throttle));

		if (rc == 0) {
			/* A new regime: both counts start again. */
			r->stuck_rounds = 0;
			r->high_rounds = 0;
			return PVM_HV_XEN_PRECOPY_CONTINUE;
		}
		mig_src_stat(m, "stop_reason", "%s; the guest could not be throttled (%s)",
			 verdict_why, strerror(-rc));
		v = PVM_POLICY_STOP_ANYWAY;
	} else {
		mig_src_stat(m, "stop_reason", "%s", verdict_why);
	}
	mig_src_stat(m, "converged", "%s", v == PVM_POLICY_STOP ? "yes" : "no");
	/* The throttle stays until the suspend (xsrc_suspend). */
	return PVM_HV_XEN_PRECOPY_STOP;
}

/* Source, xen: after ACCEPT, up to MIG_XEND sent (the guest suspended). */
int mig_source_xen_stream(struct mig_src *m, char *why, size_t why_len)
{
	static const uint8_t end[PVM_CKPT_LIBXL_END_SIZE];
	struct pvm_hv *hv = m->svc->hv;
	struct xpump p = { .m = m, .fd = -1 };
	struct pvm_hv_xen_save_cb cb = {
		.suspend = xsrc_suspend, .precopy = xsrc_precopy, .ctx = m,
	};
	uint8_t head[PVM_CKPT_LIBXL_HEAD_SIZE];
	char *json = NULL;
	int fds[2], rc;

	m->x_prev_dirty = UINT64_MAX;
	rc = pvm_hv_xen_config_json(hv, m->dom.domid, &json);
	if (rc) {
		snprintf(why, why_len, "cannot read its libxl config: %s",
			 strerror(-rc));
		return rc;
	}
	if (strlen(json) > PVM_XCHUNK_BYTES) {
		free(json);
		snprintf(why, why_len, "its libxl config is larger than %u bytes",
			 PVM_XCHUNK_BYTES);
		return -E2BIG;
	}
	rc = mig_xsend_chunk(m->ch, MIG_XCONFIG, m->xchunks++, (const uint8_t *)json,
			 strlen(json));
	free(json);
	if (rc) {
		snprintf(why, why_len, "lost the destination: %s", strerror(-rc));
		return rc;
	}
	if (pipe2(fds, O_CLOEXEC)) {
		rc = -errno;
		snprintf(why, why_len, "cannot make a pipe: %s", strerror(-rc));
		return rc;
	}
	p.fd = fds[0];
	rc = -pthread_create(&p.thread, NULL, xpump_main, &p);
	if (rc) {
		close(fds[0]);
		close(fds[1]);
		snprintf(why, why_len, "cannot start a thread: %s", strerror(-rc));
		return rc;
	}
	rc = pvm_write_all(fds[1], head, pvm_ckpt_libxl_head(head));
	if (!rc) {
		rc = pvm_hv_xen_save(hv, m->dom.domid, fds[1], m->o.live, &cb);
		if (rc && m->x_abort_rc == -ECANCELED) {
			rc = -ECANCELED;
			snprintf(why, why_len, "cancelled");
		} else if (rc && m->x_suspend_rc == -ETIMEDOUT)
			snprintf(why, why_len, "it did not suspend within %u ms (no answer to control/shutdown: no PV suspend support, or it hangs in its suspend path; the request was taken back)",
				 m->o.suspend_timeout_ms);
		else if (rc && m->x_suspend_rc)
			snprintf(why, why_len, "it could not be suspended: %s (pvmigd's log says why)",
				 strerror(-m->x_suspend_rc));
		else if (rc)
			snprintf(why, why_len, "libxenguest could not send it: %s (pvmigd's log says why)",
				 strerror(-rc));
	}
	if (!rc)
		rc = pvm_write_all(fds[1], end, sizeof(end));
	close(fds[1]);
	pthread_join(p.thread, NULL);
	close(fds[0]);
	if (!rc && p.rc) {
		const char *cwhy;

		rc = p.rc;
		pvm_channel_error(m->ch, &cwhy);
		snprintf(why, why_len, "lost the destination: %s",
			 cwhy && *cwhy ? cwhy : strerror(-rc));
	}
	if (!rc)
		rc = mig_send_simple(m->ch, MIG_XEND);
	mig_src_stat(m, "stream_bytes", "%llu",
		 (unsigned long long)atomic_load(&m->xbytes));
	return rc;
}
