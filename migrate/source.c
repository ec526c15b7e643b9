/*
 * The source of a migration (job thread started by `pvmig migrate`):
 *
 *   CONNECT -> HELLO -> PRECOPY (round 0: every page; round n: pages
 *   dirtied during round n-1) -> [policy says stop] -> PAUSED (pause, last
 *   dirty pages, state) -> AWAIT_READY -> [READY] -> UNPAUSE sent ->
 *   AWAIT_RUNNING -> [RUNNING] -> DONE (destroy the paused source copy)
 *
 *   Any failure before UNPAUSE is sent: ROLLBACK (unpause the source copy,
 *   log-dirty off, tell the destination to abort). After UNPAUSE is sent
 *   and before RUNNING arrives the outcome is in doubt: the source copy
 *   stays paused and the source asks the destination (a new channel,
 *   QUERY) what happened: "running" -> destroy; "aborted"/unknown id ->
 *   resume; unreachable -> stay paused and say so (never two copies).
 *
 * Protocol: docs/migration-protocol.md.
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <poll.h>
#include <stdatomic.h>
#include <unistd.h>

#include "hv/xen/xen.h"
#include "pvquiesce/pvquiesce.h"
#include "transport/transport.h"

#define QUERY_TRIES 10u

/* Cancel requested: `pvmig migrate --cancel`, or the CLI that asked for
 * the migration went away (Ctrl-C) or sent anything. */
bool mig_src_cancelled(struct mig_src *m)
{
	struct pollfd pf = { .fd = m->fd, .events = POLLIN };

	return atomic_load(&m->cancel) || poll(&pf, 1, 0) > 0;
}

int h_migrate_cancel(struct req *r)
{
	struct pvm_service *s = r->svc;
	const char *want = pvm_kv_get(r->args, "domain");
	unsigned n = 0;

	if (!want)
		return reply_result(r, -EINVAL, NULL, "which domain's migration?");
	pthread_mutex_lock(&s->lock);
	for (struct mig_src *m = s->sources; m; m = m->next) {
		char id[16];

		snprintf(id, sizeof(id), "%u", m->dom.domid);
		if (!strcmp(m->dom.name, want) || !strcmp(id, want)) {
			atomic_store(&m->cancel, true);
			n++;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (!n)
		return reply_result(r, -ENOENT, NULL,
				    "no migration of '%s' is running on this host", want);
	pvm_info("migration of '%s': cancel requested", want);
	return reply_result(r, 0, NULL,
			    "cancel requested: the migration stops before its pause and the guest keeps running here");
}

void mig_src_progress(struct mig_src *m, const struct pvm_round_stats *r,
		     uint64_t predicted_ms, const char *phase)
{
	struct pvm_kv kv;

	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "phase", "%s", phase);
	pvm_kv_add(&kv, "round", "%u", r->round);
	pvm_kv_add(&kv, "pages_sent", "%llu", (unsigned long long)r->pages_sent);
	pvm_kv_add(&kv, "nr_pages", "%llu", (unsigned long long)m->dom.nr_pages);
	pvm_kv_add(&kv, "mib_per_s", "%.1f", r->bytes_per_s / 1048576.0);
	pvm_kv_add(&kv, "dirty_pages", "%llu", (unsigned long long)r->dirty_after);
	pvm_kv_add(&kv, "predicted_downtime_ms", "%llu",
		   (unsigned long long)predicted_ms);
	pvm_kv_add(&kv, "throttle_pct", "%u", r->throttle_pct);
	pvm_ctl_send(m->fd, PVM_CTL_PROGRESS, &kv);
	pvm_kv_dispose(&kv);
}

/* Auto-converge: sets the guest's throttle to @pct (0 lifts it). */
int mig_src_throttle(struct mig_src *m, unsigned pct)
{
	struct pvm_hv *hv = m->svc->hv;
	int rc;

	if (pct == m->throttle)
		return 0;
	rc = hv->ops->domain_throttle(hv, m->dom.domid, pct);
	if (rc == 0 || (pct == 0 && rc == -ESRCH))
		m->throttle = pct;
	if (rc == 0 && pct > m->throttle_max)
		m->throttle_max = pct;
	if (rc == 0)
		pvm_info("migration %.8s: '%s' throttled to %u%%", m->id,
			 m->dom.name, pct);
	return rc;
}

/*
 * --bandwidth: sleeps until the bytes handed to the wire since the start
 * fit the limit. The transport counts wire bytes when its stream threads
 * have compressed and written them, after send_pages() queued them, so a
 * check between batches lags; @all waits until everything counted so far
 * fits (the end of each round, once the destination has acknowledged it),
 * so a round's time includes what it cost on the limited link and no debt
 * is carried into the stop-and-copy, where it would be paid as downtime.
 */
void mig_src_bw_limit(struct mig_src *m, bool all)
{
	struct pvm_channel_stats cs;
	uint64_t now = pvm_now_ns(), due_ns;

	pvm_channel_stats(m->ch, &cs);
	if (!m->bw_t0) {
		m->bw_t0 = now;
		m->bw_base = cs.wire_bytes;
		return;
	}
	due_ns = (uint64_t)((double)(cs.wire_bytes - m->bw_base) * 1e9 /
			    (double)m->bw_bytes_s);
	while (m->bw_t0 + due_ns > now) {
		uint64_t wait_us = (m->bw_t0 + due_ns - now) / 1000;

		usleep((useconds_t)(wait_us > 1000000 ? 1000000 : wait_us));
		if (!all)
			break;
		now = pvm_now_ns();
	}
}

/* Sends every page set in @bm, in batches mapped READ. */
static int send_dirty(struct mig_src *m, const struct pvm_bitmap *bm,
		      uint64_t *sent_out)
{
	struct pvm_hv *hv = m->svc->hv;
	uint64_t pfns[MIG_MAP_BATCH];
	const uint8_t *ptrs[MIG_MAP_BATCH];
	int errs[MIG_MAP_BATCH];
	size_t pfn = pvm_bitmap_next_set(bm, 0);
	uint64_t sent = 0;

	while (pfn < bm->nbits) {
		size_t n = 0;
		void *addr;
		int rc;

		while (pfn < bm->nbits && n < MIG_MAP_BATCH) {
			pfns[n++] = pfn;
			pfn = pvm_bitmap_next_set(bm, pfn + 1);
		}
		rc = hv->ops->map_pages(hv, m->dom.domid, PVM_HV_MAP_READ,
					pfns, n, errs, &addr);
		if (rc)
			return rc;
		for (size_t i = 0; i < n; i++) {
			if (errs[i]) {
				hv->ops->unmap_pages(hv, addr, n);
				return errs[i];
			}
			ptrs[i] = (uint8_t *)addr + i * PVM_PAGE_SIZE;
		}
		rc = pvm_channel_send_pages(m->ch, pfns, ptrs, n);
		hv->ops->unmap_pages(hv, addr, n);
		if (rc)
			return rc;
		sent += n;
		if (m->bw_bytes_s)
			mig_src_bw_limit(m, false);
		/* A long round (big guest, slow link) can be cancelled too;
		 * once paused we finish instead. */
		if (!m->paused && mig_src_cancelled(m))
			return -ECANCELED;
	}
	*sent_out = sent;
	return 0;
}

/* After UNPAUSE went out and RUNNING did not come back: ask. */
static int query_outcome(struct mig_src *m, char *state, size_t len)
{
	for (unsigned t = 0; t < QUERY_TRIES; t++) {
		struct pvm_channel_opts o;
		struct pvm_channel *ch = NULL;
		struct pvm_kv kv;
		int type;

		pvm_channel_opts_defaults(&o);
		o.timeout_ms = m->svc->cfg.timeout_ms;
		o.streams = 1;
		o.timeout_ms = 5000;
		if (t)
			sleep(1);
		if (pvm_transport_connect(m->host, m->port, m->svc->tls, &o, &ch))
			continue;
		pvm_kv_init(&kv);
		pvm_kv_add(&kv, "id", "%s", m->id);
		mig_send_kv(ch, MIG_QUERY, &kv);
		type = mig_recv_msg(ch, &kv, NULL, NULL);
		if (type == MIG_OUTCOME && pvm_kv_get(&kv, "state")) {
			snprintf(state, len, "%s", pvm_kv_get(&kv, "state"));
			pvm_kv_dispose(&kv);
			pvm_channel_close(ch);
			return 0;
		}
		pvm_kv_dispose(&kv);
		pvm_channel_close(ch);
	}
	return -EHOSTUNREACH;
}

void mig_src_stat(struct mig_src *m, const char *key, const char *fmt, ...)
{
	char v[PVM_KV_VALUE_MAX + 1]; /* round_detail is long */
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	pvm_kv_add(&m->stats, key, "%s", v);
}

/* Before the pause: the guest's own suspend (pvquiesce), recorded. */
static int suspend(struct mig_src *m)
{
	struct pvm_pvq_suspend_result r;
	int rc;

	if (m->no_quiesce)
		return 0;
	rc = pvm_pvq_suspend(m->svc->hv, m->dom.domid, m->suspend_timeout_ms,
			     &r);
	if (rc)
		return rc;
	if (r.cooperative)
		mig_src_stat(m, "suspend", "cooperative");
	else
		mig_src_stat(m, "suspend", "non-cooperative: %s", r.why);
	mig_src_stat(m, "suspend_ms", "%.2f", r.ms);
	return 0;
}

/* With the domain paused: drain and capture its PV backends. */
static int quiesce(struct mig_src *m, char *why, size_t why_len)
{
	uint64_t t0 = pvm_now_ns();
	int rc;

	if (!m->ndev)
		return 0;
	if (m->no_quiesce) {
		/* Kept to show what pvquiesce prevents: devices move with no
		 * drain and no state, as a plain memory copy would. */
		mig_src_stat(m, "devices_quiesced", "0 (--no-quiesce)");
		return 0;
	}
	pvm_buf_reset(&m->devstate);
	rc = pvm_pvq_quiesce(m->svc->hv, m->dom.domid, m->devs, m->ndev,
			     m->pv_mode, m->drain_timeout_ms,
			     &m->devstate, why, why_len);
	if (rc)
		return rc;
	m->quiesced = true;
	mig_src_stat(m, "quiesce_ms", "%.2f", (double)(pvm_now_ns() - t0) / 1e6);
	mig_src_stat(m, "devices_quiesced", "%zu", m->ndev);
	return 0;
}

static int source_run(struct mig_src *m, char *why, size_t why_len)
{
	struct pvm_hv *hv = m->svc->hv;
	struct pvm_channel_opts o;
	struct pvm_channel_stats cs0, cs1;
	struct pvm_round_stats r = { 0 };
	struct pvm_kv kv;
	uint64_t prev_dirty = UINT64_MAX, total_pages = 0;
	char rounds_desc[2048] = "", throttles[1024] = "";
	uint64_t t_connected = 0, t_accepted = 0, t_precopy = 0;
	uint64_t t_read = 0, t_sent = 0, t_state = 0, t_ready = 0;
	int rc;

	pvm_kv_init(&kv);
	rc = mig_load_tls(m->svc);
	if (rc) {
		snprintf(why, why_len, "TLS is not configured (tls-ca, tls-cert, tls-key in pvmigd.conf)");
		return rc;
	}
	pvm_channel_opts_defaults(&o);
	o.timeout_ms = m->svc->cfg.timeout_ms;
	o.streams = m->streams;
	/* Its certificate must carry the name or address it is reached by,
	 * so a host with another certificate of the same CA cannot stand in
	 * (an address: if the certificate lists any; docs/pvmigd.8.md). */
	o.peer_name = m->host;
	o.compress = m->compress;
	rc = pvm_transport_connect(m->host, m->port, m->svc->tls, &o, &m->ch);
	if (rc == -EACCES) {
		snprintf(why, why_len, "pvmigd at %s:%u refused: its certificate is not from this host's CA, or does not name %s (the log says which; see pvmig tls-init)",
			 m->host, m->port, m->host);
		return rc;
	}
	if (rc) {
		snprintf(why, why_len, "cannot reach pvmigd at %s:%u (%s); see the log for the TLS details",
			 m->host, m->port, strerror(-rc));
		return rc;
	}
	pvm_kv_add(&kv, "id", "%s", m->id);
	pvm_kv_add(&kv, "name", "%s", m->dom.name);
	pvm_kv_add(&kv, "nr_pages", "%llu", (unsigned long long)m->dom.nr_pages);
	pvm_kv_add(&kv, "vcpus", "%u", m->dom.nr_vcpus);
	pvm_kv_add(&kv, "domid", "%u", m->dom.domid);
	if (m->ndev && !m->no_quiesce) {
		/* Decided now, before any pause: a destination that cannot
		 * keep the domid a transparent reconnect needs refuses here. */
		m->pv_mode = pvm_pvq_choose_mode(m->svc->hv, m->dom.domid,
						 m->pv_mode);
		pvm_kv_add(&kv, "pv_mode", "%s", pvm_pvq_mode_name(m->pv_mode));
		mig_src_stat(m, "pv_mode", "%s", pvm_pvq_mode_name(m->pv_mode));
	}
	dom_config_to_kv(&m->dc, &kv);
	if (m->xen)
		pvm_kv_add(&kv, "xen", "1");
	t_connected = pvm_now_ns();
	rc = mig_send_kv(m->ch, MIG_HELLO, &kv);
	if (!rc)
		rc = mig_expect(m->ch, MIG_ACCEPT, &kv, why, why_len);
	if (rc)
		goto out;
	t_accepted = pvm_now_ns();
	if (m->xen) {
		rc = mig_source_xen_stream(m, why, why_len);
		/* pages_sent, compression and throughput count the 4 KiB
		 * slots of libxenguest's stream */
		total_pages = (atomic_load(&m->xbytes) + PVM_PAGE_SIZE - 1) /
			      PVM_PAGE_SIZE;
		r.round = m->xr.round;
		snprintf(rounds_desc, sizeof(rounds_desc), "%s", m->x_rounds_desc);
		snprintf(throttles, sizeof(throttles), "%s", m->x_throttles);
		t_precopy = t_read = t_sent = t_state = pvm_now_ns();
		goto handover;
	}

	rc = pvm_bitmap_init(&m->dirty, m->dom.nr_pages);
	if (rc)
		goto out;
	if (m->live) {
		rc = hv->ops->logdirty_enable(hv, m->dom.domid);
		if (rc) {
			snprintf(why, why_len, "cannot enable log-dirty: %s",
				 strerror(-rc));
			goto out;
		}
		m->logdirty = true;
	} else {
		rc = suspend(m);
		if (rc == 0)
			rc = hv->ops->domain_pause(hv, m->dom.domid);
		if (rc)
			goto out;
		m->paused = true;
		m->t_pause = pvm_now_ns();
		/* Drained before any page is read: the responses the
		 * backends write go out with the memory. */
		rc = quiesce(m, why, why_len);
		if (rc)
			goto out;
	}
	/* Round 0: every page that may hold data. Pages never populated
	 * read as zeros here and already are zeros in the new domain there;
	 * one populated later was written, so log-dirty (on since above)
	 * reports it in a later round. */
	rc = hv->ops->domain_populated(hv, m->dom.domid, &m->dirty);
	if (rc) {
		snprintf(why, why_len, "cannot read which pages are populated: %s",
			 strerror(-rc));
		goto out;
	}
	mig_src_stat(m, "unpopulated_pages", "%llu",
		 (unsigned long long)(m->dom.nr_pages -
				      pvm_bitmap_count(&m->dirty)));
	if (m->bw_bytes_s)
		mig_src_bw_limit(m, false); /* the limit's clock starts here */

	/* Pre-copy. A cold migration makes round 0 its only round. */
	mig_hold_point("src-precopy");
	for (r.round = 0; m->live; r.round++) {
		uint64_t t0 = pvm_now_ns(), sent = 0, dirty;
		const char *verdict_why;
		enum pvm_policy_verdict v;

		if (mig_src_cancelled(m)) {
			snprintf(why, why_len, "cancelled");
			rc = -ECANCELED;
			goto out;
		}
		pvm_channel_stats(m->ch, &cs0);
		rc = send_dirty(m, &m->dirty, &sent);
		if (rc == -ECANCELED) {
			snprintf(why, why_len, "cancelled");
			goto out;
		}
		if (!rc) {
			pvm_kv_dispose(&kv);
			pvm_kv_add(&kv, "round", "%u", r.round);
			rc = mig_send_kv(m->ch, MIG_ROUND, &kv);
		}
		if (!rc)
			rc = mig_expect(m->ch, MIG_ROUND_ACK, &kv, why, why_len);
		if (!rc && m->bw_bytes_s)
			mig_src_bw_limit(m, true);
		if (!rc)
			rc = hv->ops->logdirty_read_clear(hv, m->dom.domid,
							  &m->dirty);
		if (rc) {
			snprintf(why, why_len, "pre-copy round %u failed: %s",
				 r.round, strerror(-rc));
			goto out;
		}
		pvm_channel_stats(m->ch, &cs1);
		dirty = pvm_bitmap_count(&m->dirty);
		r.pages_sent = sent;
		r.wire_bytes = cs1.wire_bytes - cs0.wire_bytes;
		r.ms = (pvm_now_ns() - t0) / 1000000;
		/* Pages of zeros cost a few bytes on the wire; what is left
		 * dirty has been written, so what predicts its cost is the
		 * rate of pages with data (all pages when none had any). */
		{
			uint64_t zero = cs1.zero_pages - cs0.zero_pages;
			uint64_t data = sent > zero ? sent - zero : sent;

			r.bytes_per_s = (double)data * PVM_PAGE_SIZE /
					((double)(pvm_now_ns() - t0) / 1e9);
		}
		r.dirty_rate = (double)dirty / ((double)(pvm_now_ns() - t0) / 1e9);
		r.dirty_after = dirty;
		r.stuck_rounds = pvm_policy_shrank(prev_dirty, dirty) ? 0 :
								       r.stuck_rounds + 1;
		r.high_rounds = pvm_policy_round_high(&r) ? r.high_rounds + 1 : 0;
		r.throttle_pct = m->throttle;
		prev_dirty = dirty;
		total_pages += sent;
		v = pvm_policy_decide(&m->policy, &r,
				      (pvm_now_ns() - m->t_start) / 1000000,
				      &verdict_why);
		mig_src_progress(m, &r, pvm_policy_predict_ms(dirty, r.bytes_per_s),
			 "precopy");
		snprintf(rounds_desc + strlen(rounds_desc),
			 sizeof(rounds_desc) - strlen(rounds_desc),
			 "%s%u:%llu pages/%llu ms", r.round ? ", " : "", r.round,
			 (unsigned long long)sent, (unsigned long long)r.ms);
		if (r.throttle_pct)
			snprintf(rounds_desc + strlen(rounds_desc),
				 sizeof(rounds_desc) - strlen(rounds_desc),
				 " throttled %u%%", r.throttle_pct);
		snprintf(throttles + strlen(throttles),
			 sizeof(throttles) - strlen(throttles), "%s%u",
			 r.round ? "," : "", r.throttle_pct);
		pvm_debug("migration %.8s: round %u sent %llu pages in %llu ms, %llu dirty, throttle %u%%: %s",
			  m->id, r.round, (unsigned long long)sent,
			  (unsigned long long)r.ms, (unsigned long long)dirty,
			  r.throttle_pct, verdict_why);
		if (v == PVM_POLICY_THROTTLE) {
			unsigned next = pvm_policy_throttle_next(m->throttle);

			rc = mig_src_throttle(m, next);
			if (rc == 0) {
				/* A new regime: both counts start again. */
				r.stuck_rounds = 0;
				r.high_rounds = 0;
				continue;
			}
			pvm_warn("migration %.8s: cannot throttle '%s' (%s): stopping anyway",
				 m->id, m->dom.name, strerror(-rc));
			mig_src_stat(m, "stop_reason", "%s; the guest could not be throttled (%s)",
				 verdict_why, strerror(-rc));
			mig_src_stat(m, "converged", "no");
			rc = 0;
			break;
		}
		if (v != PVM_POLICY_CONTINUE) {
			mig_src_stat(m, "stop_reason", "%s", verdict_why);
			mig_src_stat(m, "converged", "%s",
				 v == PVM_POLICY_STOP ? "yes" : "no");
			break;
		}
	}

	t_precopy = pvm_now_ns();
	/* Stop-and-copy. */
	if (!m->paused) {
		rc = suspend(m);
		if (rc == 0)
			rc = hv->ops->domain_pause(hv, m->dom.domid);
		if (rc) {
			snprintf(why, why_len, "cannot pause: %s", strerror(-rc));
			goto out;
		}
		m->paused = true;
		m->t_pause = pvm_now_ns();
		/* Nothing to slow down in a paused guest; whatever happens
		 * next (hand-over or roll back), it runs at full speed. */
		if (m->throttle && mig_src_throttle(m, 0))
			pvm_warn("migration %.8s: the throttle stays on '%s'",
				 m->id, m->dom.name);
		rc = quiesce(m, why, why_len);
		if (rc)
			goto out;
		{
			/* Pages dirtied since the last read, plus those the
			 * last read reported, are what is left to send. */
			struct pvm_bitmap more;

			rc = pvm_bitmap_init(&more, m->dom.nr_pages);
			if (!rc)
				rc = hv->ops->logdirty_read_clear(hv, m->dom.domid,
								  &more);
			if (!rc)
				for (size_t i = 0; i < (m->dom.nr_pages + 63) / 64; i++)
					m->dirty.words[i] |= more.words[i];
			pvm_bitmap_dispose(&more);
			if (rc)
				goto out;
		}
	}
	mig_hold_point("src-stop-copy");
	t_read = pvm_now_ns();
	{
		uint64_t sent = 0;

		rc = send_dirty(m, &m->dirty, &sent);
		total_pages += sent;
		mig_src_stat(m, "final_pages", "%llu", (unsigned long long)sent);
	}
	t_sent = pvm_now_ns();
	if (!rc)
		rc = mig_state_send(m);
	t_state = pvm_now_ns();
handover:
	if (!rc)
		rc = mig_expect(m->ch, MIG_READY, &kv, why, why_len);
	t_ready = pvm_now_ns();
	/* Where the pause went, step by step (the downtime's parts). */
	mig_src_stat(m, "pause_detail", "quiesce+dirty read %.1f ms, last pages %.1f ms, state %.1f ms, destination load %.1f ms",
		 (double)(t_read - m->t_pause) / 1e6, (double)(t_sent - t_read) / 1e6,
		 (double)(t_state - t_sent) / 1e6, (double)(t_ready - t_state) / 1e6);
	if (!rc && m->verify)
		mig_src_stat(m, "memory", "%s",
			 pvm_kv_get(&kv, "memory") ? "identical on both hosts" :
						     "not verified by the destination");
	if (rc) {
		if (!why[0])
			snprintf(why, why_len, "stop-and-copy failed: %s",
				 strerror(-rc));
		goto out;
	}
	/* The point of no return: from here the destination may run it. */
	mig_hold_point("src-after-ready");
	{
		/* A channel that already failed, or whose peer has already
		 * closed it, cannot carry UNPAUSE: the destination will never
		 * run its copy, so resume ours now rather than stay paused on
		 * a QUERY that may not get through (a destination pvmigd that
		 * died after READY). */
		const char *cwhy;

		rc = pvm_channel_check_peer(m->ch);
		if (rc) {
			pvm_channel_error(m->ch, &cwhy);
			snprintf(why, why_len, "lost the destination before UNPAUSE was sent: %s",
				 *cwhy ? cwhy : strerror(-rc));
			goto out;
		}
	}
	if (mig_fault_point("src-cut-before-unpause"))
		pvm_channel_shutdown(m->ch);
	rc = mig_send_simple(m->ch, MIG_UNPAUSE);
	if (!rc && mig_fault_point("src-cut-after-unpause"))
		pvm_channel_shutdown(m->ch);
	if (!rc)
		rc = mig_expect(m->ch, MIG_RUNNING, &kv, why, why_len);
	if (!rc && pvm_kv_get(&kv, "devices"))
		mig_src_stat(m, "devices", "%s", pvm_kv_get(&kv, "devices"));
	if (!rc && pvm_kv_get(&kv, "reconnect_ms"))
		mig_src_stat(m, "reconnect_ms", "%s", pvm_kv_get(&kv, "reconnect_ms"));
	if (!rc && pvm_kv_get(&kv, "first_io_ms"))
		mig_src_stat(m, "first_io_ms", "%s", pvm_kv_get(&kv, "first_io_ms"));
	if (rc) {
		/* UNPAUSE may or may not have reached the destination (even a
		 * failed send may have left part of it on the wire): ask. */
		char state[16];
		int q;

		if (!why[0])
			snprintf(why, why_len, "lost the destination during the hand-over");
		pvm_warn("migration %.8s: outcome in doubt (%s); asking the destination",
			 m->id, why);
		q = query_outcome(m, state, sizeof(state));
		if (q == 0 && strcmp(state, "running") != 0) {
			snprintf(why + strlen(why), why_len - strlen(why),
				 "; the destination says '%s'", state);
			goto out; /* roll back: it is not running there */
		}
		if (q != 0) {
			snprintf(why, why_len,
				 "outcome unknown: the destination could not be asked. The guest stays PAUSED here (domid %u); check the destination, then 'pvmig destroy' or 'pvmig unpause' it here",
				 m->dom.domid);
			m->paused = false; /* keep it paused: no roll back */
			m->xen_suspended = false;
			m->logdirty = false;
			/* ... and remember its devices are drained, so that
			 * the operator's 'pvmig unpause' resumes them. */
			svc_config_quiesced(m->svc, m->dom.domid, m->quiesced);
			m->quiesced = false;
			mig_src_stat(m, "outcome", "unknown");
			rc = -EHOSTUNREACH;
			goto out;
		}
		pvm_warn("migration %.8s: the destination runs it", m->id);
		mig_src_stat(m, "outcome", "confirmed by query after a lost hand-over");
	}
	/* Running there: end the source copy. */
	mig_hold_point("src-after-running");
	{
		uint64_t down_ns = pvm_now_ns() - m->t_pause;
		double pause_ms = (double)down_ns / 1e6;
		const char *rc_ms = pvm_kv_get(&kv, "reconnect_ms");
		const char *io_ms = pvm_kv_get(&kv, "first_io_ms");
		const char *ran_ms = pvm_kv_get(&kv, "running_for_ms");
		double ran = ran_ms ? strtod(ran_ms, NULL) : 0.0;
		double down;
		uint64_t t_running = pvm_now_ns(), t_destroyed;

		hv->ops->domain_destroy(hv, m->dom.domid);
		svc_config_drop(m->svc, m->dom.domid);
		t_destroyed = pvm_now_ns();
		m->paused = false;
		m->xen_suspended = false;
		m->logdirty = false;
		pvm_channel_finish(m->ch);
		pvm_channel_stats(m->ch, &cs1);
		/* The destination answers RUNNING once its PV devices are
		 * connected again and (bounded) a first request is served;
		 * it says how long after its unpause that was. The guest
		 * itself ran from the unpause: that part is not downtime.
		 * A figure out of range (hostile or a clock step) is
		 * ignored rather than trusted. */
		if (!(ran >= 0.0 && ran < pause_ms))
			ran = 0.0;
		down = pause_ms - ran;
		mig_src_stat(m, "downtime_ms", "%.2f", down);
		/* PV I/O was down until the first request completed, or,
		 * for a guest doing none, until its devices reconnected. */
		if (io_ms)
			mig_src_stat(m, "io_downtime_ms", "%.2f",
				 down + strtod(io_ms, NULL));
		else if (rc_ms)
			mig_src_stat(m, "io_downtime_ms", "%.2f",
				 down + strtod(rc_ms, NULL));
		mig_src_stat(m, "total_ms", "%.1f",
			 (double)(pvm_now_ns() - m->t_start) / 1e6);
		/* Where the total went: connecting (TCP + TLS handshakes),
		 * the destination creating and mapping the domain, log-dirty
		 * on and pre-copy, then the pause and hand-over. */
		mig_src_stat(m, "phase_detail", "connect %.1f ms, destination create %.1f ms, pre-copy %.1f ms, stop-and-copy + hand-over %.1f ms, source copy destroyed %.1f ms, channel closed %.1f ms",
			 (double)(t_connected - m->t_start) / 1e6,
			 (double)(t_accepted - t_connected) / 1e6,
			 (double)(t_precopy - t_accepted) / 1e6,
			 (double)(t_running - t_precopy) / 1e6,
			 (double)(t_destroyed - t_running) / 1e6,
			 (double)(pvm_now_ns() - t_destroyed) / 1e6);
		mig_src_stat(m, "rounds", "%u", m->live ? r.round + 1 : 0);
		mig_src_stat(m, "round_detail", "%s", rounds_desc);
		if (m->live)
			mig_src_stat(m, "throttle_per_round", "%s", throttles);
		mig_src_stat(m, "throttle_max_pct", "%u", m->throttle_max);
		mig_src_stat(m, "pages_sent", "%llu", (unsigned long long)total_pages);
		mig_src_stat(m, "zero_pages", "%llu", (unsigned long long)cs1.zero_pages);
		mig_src_stat(m, "wire_bytes", "%llu", (unsigned long long)cs1.wire_bytes);
		mig_src_stat(m, "compression_ratio", "%.2f",
			 cs1.wire_bytes ? (double)total_pages * PVM_PAGE_SIZE /
						  (double)cs1.wire_bytes : 0.0);
		mig_src_stat(m, "throughput_mib_s", "%.1f",
			 (double)total_pages * PVM_PAGE_SIZE / 1048576.0 /
				 ((double)(pvm_now_ns() - m->t_start) / 1e9));
		mig_src_stat(m, "dirty_rate_pages_s", "%.0f", r.dirty_rate);
		mig_src_stat(m, "streams", "%u", pvm_channel_streams(m->ch));
	}
	rc = 0;
out:
	pvm_kv_dispose(&kv);
	return rc;
}

static void *source_main(void *arg)
{
	struct mig_src *m = arg;
	struct pvm_service *s = m->svc;
	struct pvm_hv *hv = s->hv;
	char why[512] = "";
	int rc;

	m->t_start = pvm_now_ns();
	pvm_info("migration %.8s: '%s' (domain %u) to %s:%u, %s", m->id,
		 m->dom.name, m->dom.domid, m->host, m->port,
		 m->live ? "live" : "cold");
	rc = source_run(m, why, sizeof(why));
	if (rc) {
		/* Roll back: the guest keeps running here. */
		if (m->ch)
			mig_send_abort(m->ch, why[0] ? why : strerror(-rc));
		if (m->logdirty)
			hv->ops->logdirty_disable(hv, m->dom.domid);
		if (m->throttle && mig_src_throttle(m, 0))
			pvm_warn("migration %.8s: the throttle stays on '%s'",
				 m->id, m->dom.name);
		if (m->quiesced && m->paused)
			pvm_pvq_resume(hv, m->dom.domid, m->devs, m->ndev);
		if (m->xen) {
			if (m->xen_suspended)
				pvm_hv_xen_resume(hv, m->dom.domid);
		} else if (m->paused) {
			hv->ops->domain_unpause(hv, m->dom.domid);
		} else {
			pvm_pvq_suspend_cancel(hv, m->dom.domid);
		}
		pvm_err("migration %.8s of '%s' failed: %s%s", m->id, m->dom.name,
			why[0] ? why : strerror(-rc),
			rc == -EHOSTUNREACH ? "" : "; the guest keeps running here");
	} else {
		pvm_info("migration %.8s: '%s' now runs on %s:%u", m->id,
			 m->dom.name, m->host, m->port);
	}
	pvm_kv_add(&m->stats, "id", "%s", m->id);
	pvm_kv_add(&m->stats, "domain", "%s", m->dom.name);
	pvm_kv_add(&m->stats, "destination", "%s:%u", m->host, m->port);
	pvm_kv_add(&m->stats, "result", "%s", rc ? "failed" : "done");
	mig_stats_keep(s, &m->stats);
	{
		struct req r = { .svc = s, .fd = m->fd, .args = NULL };

		if (rc)
			reply_result(&r, rc, &m->stats, "%s%s",
				     why[0] ? why : strerror(-rc),
				     rc == -EHOSTUNREACH ? "" :
				     "; the guest keeps running on this host");
		else
			reply_result(&r, 0, &m->stats, NULL);
	}
	close(m->fd);
	pvm_channel_close(m->ch);
	pvm_bitmap_dispose(&m->dirty);
	pvm_buf_dispose(&m->devstate);
	pvm_kv_dispose(&m->stats);
	pthread_mutex_lock(&s->lock);
	for (struct mig_src **pp = &s->sources; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	s->outgoing--;
	pthread_mutex_unlock(&s->lock);
	free(m);
	return NULL;
}

int h_migrate(struct req *r)
{
	struct pvm_service *s = r->svc;
	const char *target = pvm_kv_get(r->args, "target");
	struct req_pv_opts pv;
	struct mig_src *m;
	uint64_t v;
	uint8_t idb[16];
	int rc;

	m = calloc(1, sizeof(*m));
	if (!m)
		return reply_result(r, -ENOMEM, NULL, NULL);
	m->svc = s;
	pvm_kv_init(&m->stats);
	if (find_domain(r, &m->dom)) {
		free(m);
		return 0;
	}
	if (!target || mig_parse_target(target, m->host, sizeof(m->host), &m->port)) {
		free(m);
		return reply_result(r, -EINVAL, NULL,
				    "bad destination '%s': say HOST or HOST:PORT",
				    target ? target : "");
	}
	m->live = !pvm_kv_get(r->args, "cold");
	m->compress = !pvm_kv_get(r->args, "no_compress");
	m->verify = pvm_kv_get(r->args, "verify") != NULL;
	m->no_quiesce = pvm_kv_get(r->args, "no_quiesce") != NULL;
	if (req_pv_opts(r, &pv)) {
		free(m);
		return 0;
	}
	m->pv_mode = pv.mode;
	m->suspend_timeout_ms = pv.suspend_timeout_ms ? pv.suspend_timeout_ms :
							PVM_PVQ_SUSPEND_TIMEOUT_MS;
	m->drain_timeout_ms = pv.drain_timeout_ms;
	m->streams = s->cfg.streams;
	if (pvm_kv_get_u64(r->args, "streams", &v) == 0) {
		if (v < 1 || v > PVM_TP_STREAMS_MAX) {
			free(m);
			return reply_result(r, -EINVAL, NULL, "--streams must be 1..%u",
					    PVM_TP_STREAMS_MAX);
		}
		m->streams = (unsigned)v;
	}
	m->policy.downtime_ms = 30;
	m->policy.max_rounds = 30;
	m->policy.max_time_ms = 0;
	m->policy.no_converge = PVM_NOCONV_THROTTLE;
	if (pvm_kv_get_u64(r->args, "downtime_ms", &v) == 0)
		m->policy.downtime_ms = v;
	if (pvm_kv_get_u64(r->args, "max_rounds", &v) == 0) {
		if (v < 1 || v > 1000) {
			free(m);
			return reply_result(r, -EINVAL, NULL, "--max-rounds must be 1..1000");
		}
		m->policy.max_rounds = (uint32_t)v;
	}
	if (pvm_kv_get_u64(r->args, "max_time_s", &v) == 0) {
		if (v == 0 || v > 1000000) {
			free(m);
			return reply_result(r, -EINVAL, NULL, "--max-time-s must be 1..1000000");
		}
		m->policy.max_time_ms = v * 1000;
	}
	if (pvm_kv_get_u64(r->args, "bandwidth_mib", &v) == 0) {
		if (v == 0 || v > 1000000) {
			free(m);
			return reply_result(r, -EINVAL, NULL,
					    "--bandwidth is in MiB/s, 1..1000000");
		}
		m->bw_bytes_s = v << 20;
	}
	if (pvm_kv_get(r->args, "no_converge")) {
		const char *nc = pvm_kv_get(r->args, "no_converge");

		if (!strcmp(nc, "continue")) {
			m->policy.no_converge = PVM_NOCONV_KEEP_GOING;
		} else if (!strcmp(nc, "stop")) {
			m->policy.no_converge = PVM_NOCONV_STOP;
		} else if (strcmp(nc, "throttle")) {
			free(m);
			return reply_result(r, -EINVAL, NULL,
					    "--no-converge is 'throttle', 'stop' or 'continue'");
		}
	}
	svc_config_get(s, m->dom.domid, &m->dc);
	m->ndev = mig_config_devices(&m->dc, m->devs);
	pvm_buf_init(&m->devstate, 64 * 1024);
	if (pvm_hv_is_xen(s->hv)) {
		/* x86 PV on Xen: libxenguest's stream (page tables
		 * canonicalised), not pvmig's page copy (docs/xen.md). */
		m->xen = true;
		/* The guest's own suspend, through the toolstack: a nested
		 * or loaded host needs far longer than a sim guest, so the
		 * default is Xen's; --suspend-timeout still rules. */
		if (!pvm_kv_get(r->args, "suspend_timeout_ms"))
			m->suspend_timeout_ms = PVM_HV_XEN_SUSPEND_MS;
		if (m->verify || m->no_quiesce) {
			rc = reply_result(r, -EOPNOTSUPP, NULL,
					  "'%s' stays here: --verify-memory and --no-quiesce are not available on the Xen backend (libxenguest moves the memory)",
					  m->dom.name);
			free(m);
			return rc;
		}
	}
	if (m->dom.flags & (PVM_HV_DOMINF_DYING | PVM_HV_DOMINF_SHUTDOWN)) {
		rc = reply_result(r, -EINVAL, NULL, "'%s' is not running",
				  m->dom.name);
		free(m);
		return rc;
	}
	if (m->dom.flags & PVM_HV_DOMINF_LOGDIRTY) {
		rc = reply_result(r, -EBUSY, NULL,
				  "'%s' is already being migrated or saved",
				  m->dom.name);
		free(m);
		return rc;
	}
	if (RAND_bytes(idb, sizeof(idb)) != 1) {
		free(m);
		return reply_result(r, -EIO, NULL, "no randomness for an id");
	}
	for (int i = 0; i < 16; i++)
		snprintf(m->id + 2 * i, 3, "%02x", idb[i]);
	pthread_mutex_lock(&s->lock);
	for (struct mig_src *o = s->sources; o; o = o->next) {
		if (o->dom.domid == m->dom.domid) {
			pthread_mutex_unlock(&s->lock);
			rc = reply_result(r, -EBUSY, NULL,
					  "'%s' is already being migrated (to %s:%u)",
					  m->dom.name, o->host, o->port);
			free(m);
			return rc;
		}
	}
	if (s->outgoing >= s->cfg.max_migrations) {
		pthread_mutex_unlock(&s->lock);
		free(m);
		return reply_result(r, -EBUSY, NULL,
				    "%u migrations are already running (max-migrations)",
				    s->cfg.max_migrations);
	}
	s->outgoing++;
	m->next = s->sources;
	s->sources = m;
	pthread_mutex_unlock(&s->lock);
	m->fd = r->fd;
	rc = svc_job_start(s, source_main, m);
	if (rc) {
		pthread_mutex_lock(&s->lock);
		s->outgoing--;
		for (struct mig_src **pp = &s->sources; *pp; pp = &(*pp)->next)
			if (*pp == m) {
				*pp = m->next;
				break;
			}
		pthread_mutex_unlock(&s->lock);
		free(m);
		return reply_result(r, rc, NULL, "cannot start the migration");
	}
	return REQ_DETACHED;
}
