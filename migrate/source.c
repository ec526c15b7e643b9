/*
 * The source of a migration: one job thread per `pvmig migrate`
 * (mig_source_main), started by h_migrate (opts.c).
 *
 * States (enum mig_src_state), each change through mig_src_go(), a
 * compare-and-set on the state it leaves:
 *
 *                  connect, HELLO, ACCEPT
 *   CONNECTING ------------------------------> PRECOPY
 *       |  cold: suspend, pause                   |  policy says stop:
 *       |                                         |  suspend, pause (Xen:
 *       v                                         v  libxenguest's callback)
 *     PAUSED <------------------------------------+
 *       |  drain and capture the PV backends      \
 *       v                                          \  Xen: XEND sent
 *    QUIESCED                                       \
 *       |  last dirty pages, STATE                   v
 *       +---------------------------------------> AWAIT_READY
 *                                                    |  READY in, UNPAUSE out
 *                                                    v
 *              DONE <--- RUNNING in, or QUERY --- UNPAUSE_SENT
 *                        says "running"              |  QUERY unanswered
 *                                                    v
 *                                                 IN_DOUBT
 *
 *   Every state before DONE and IN_DOUBT goes to ROLLED_BACK on a failure
 *   (src_rollback); UNPAUSE_SENT only once the destination has said that
 *   it does not run the guest.
 *
 * Invariants (src_check_invariants, debug builds):
 *   CONNECTING    the guest runs untouched: not paused, log-dirty off.
 *   PRECOPY       the guest runs; a live move on the simulated host has
 *                 log-dirty on; the throttle may be set.
 *   PAUSED        the guest is paused (Xen: suspended); its PV backends
 *                 still hold whatever was in flight.
 *   QUIESCED      paused; when mig_src_devs_quiesced(), its backends are
 *                 drained and @devstate holds their capture.
 *   AWAIT_READY   every page and the STATE (Xen: the whole stream) sent;
 *                 nothing else goes out but UNPAUSE or ABORT.
 *   UNPAUSE_SENT  the destination may be running the guest: the copy here
 *                 stays paused until the destination says otherwise.
 *   DONE          the copy here is destroyed.
 *   IN_DOUBT      the copy here stays paused for the operator (never two
 *                 running copies).
 *   ROLLED_BACK   the guest runs here again; log-dirty off, no throttle.
 *
 * Which message may arrive in which state is wire.c's table; anything else
 * is refused, naming the message and the state.
 * Protocol: docs/migration-protocol.md.
 */
#include "migrate/internal.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv/xen/xen.h"
#include "pvquiesce/pvquiesce.h"
#include "transport/transport.h"

#define QUERY_TRIES 10u

/* ---- the state machine ------------------------------------------------- */

static const char *const src_names[MIG_SRC_NSTATES] = {
	[MIG_SRC_CONNECTING] = "CONNECTING",
	[MIG_SRC_PRECOPY] = "PRECOPY",
	[MIG_SRC_PAUSED] = "PAUSED",
	[MIG_SRC_QUIESCED] = "QUIESCED",
	[MIG_SRC_AWAIT_READY] = "AWAIT_READY",
	[MIG_SRC_UNPAUSE_SENT] = "UNPAUSE_SENT",
	[MIG_SRC_DONE] = "DONE",
	[MIG_SRC_ROLLED_BACK] = "ROLLED_BACK",
	[MIG_SRC_IN_DOUBT] = "IN_DOUBT",
};

#define A(x) (1u << MIG_SRC_##x)
/* The diagram's arrows: src_next[from] has bit @to. */
static const uint32_t src_next[MIG_SRC_NSTATES] = {
	[MIG_SRC_CONNECTING] = A(PRECOPY) | A(PAUSED) | A(ROLLED_BACK),
	[MIG_SRC_PRECOPY] = A(PAUSED) | A(ROLLED_BACK),
	[MIG_SRC_PAUSED] = A(QUIESCED) | A(AWAIT_READY) | A(ROLLED_BACK),
	[MIG_SRC_QUIESCED] = A(AWAIT_READY) | A(ROLLED_BACK),
	[MIG_SRC_AWAIT_READY] = A(UNPAUSE_SENT) | A(ROLLED_BACK),
	[MIG_SRC_UNPAUSE_SENT] = A(DONE) | A(IN_DOUBT) | A(ROLLED_BACK),
};
#undef A

const char *mig_src_state_name(enum mig_src_state st)
{
	return (unsigned)st < MIG_SRC_NSTATES ? src_names[st] : "invalid";
}

bool mig_src_may_go(enum mig_src_state from, enum mig_src_state to)
{
	return (unsigned)from < MIG_SRC_NSTATES &&
	       (unsigned)to < MIG_SRC_NSTATES && (src_next[from] & (1u << to));
}

int mig_src_set(_Atomic int *st, enum mig_src_state from,
		enum mig_src_state to)
{
	int expected = (int)from;

	if (!mig_src_may_go(from, to)) {
		pvm_err("migration source: no transition %s -> %s",
			mig_src_state_name(from), mig_src_state_name(to));
		return -EPROTO;
	}
	if (!atomic_compare_exchange_strong(st, &expected, (int)to)) {
		pvm_err("migration source: %s -> %s from state %s",
			mig_src_state_name(from), mig_src_state_name(to),
			mig_src_state_name((enum mig_src_state)expected));
		return -EPROTO;
	}
	return 0;
}

bool mig_src_devs_quiesced(const struct mig_src *m)
{
	int st = atomic_load(&m->state);

	return !m->xen && m->ndev && !m->o.no_quiesce &&
	       st >= MIG_SRC_QUIESCED && st <= MIG_SRC_UNPAUSE_SENT;
}

/* The guest is stopped here (paused, or suspended on Xen). */
static bool src_stopped(int st)
{
	return st >= MIG_SRC_PAUSED && st <= MIG_SRC_UNPAUSE_SENT;
}

/* Log-dirty is on: a live move on the simulated host, in flight. */
static bool src_logdirty(const struct mig_src *m, int st)
{
	return !m->xen && m->o.live && st >= MIG_SRC_PRECOPY &&
	       st <= MIG_SRC_UNPAUSE_SENT;
}

/* The diagram's invariants that the backend can show (debug builds; the
 * Xen path's are libxenguest's to keep). */
static void src_check_invariants(const struct mig_src *m)
{
#ifndef NDEBUG
	int st = atomic_load(&m->state);
	struct pvm_hv_dominfo d;

	if (m->xen || m->svc->hv->ops->domain_info(m->svc->hv, m->dom.domid, &d))
		return; /* destroyed (DONE) */
	if (src_stopped(st))
		assert(d.flags & PVM_HV_DOMINF_PAUSED);
	/* IN_DOUBT leaves log-dirty as it was: the operator decides */
	if (st != MIG_SRC_IN_DOUBT)
		assert(src_logdirty(m, st) == !!(d.flags & PVM_HV_DOMINF_LOGDIRTY));
#else
	(void)m;
#endif
}

int mig_src_go(struct mig_src *m, enum mig_src_state from,
	       enum mig_src_state to)
{
	int rc = mig_src_set(&m->state, from, to);

	if (!rc) {
		pvm_debug("migration %.8s: %s -> %s", m->id,
			  mig_src_state_name(from), mig_src_state_name(to));
		src_check_invariants(m);
	}
	return rc;
}

/* ---- helpers ------------------------------------------------------------ */

/* Cancel requested: `pvmig migrate --cancel`, or the CLI that asked for
 * the migration went away (Ctrl-C) or sent anything. */
bool mig_src_cancelled(struct mig_src *m)
{
	struct pollfd pf = { .fd = m->fd, .events = POLLIN };

	return atomic_load(&m->cancel) || poll(&pf, 1, 0) > 0;
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

void mig_src_round_desc(struct mig_src *m, const struct pvm_round_stats *r,
			uint64_t count, const char *what)
{
	size_t n = strlen(m->rounds_desc);

	snprintf(m->rounds_desc + n, sizeof(m->rounds_desc) - n,
		 "%s%u:%llu %s/%llu ms", r->round ? ", " : "", r->round,
		 (unsigned long long)count, what, (unsigned long long)r->ms);
	n = strlen(m->rounds_desc);
	if (r->throttle_pct)
		snprintf(m->rounds_desc + n, sizeof(m->rounds_desc) - n,
			 " throttled %u%%", r->throttle_pct);
	n = strlen(m->throttles);
	snprintf(m->throttles + n, sizeof(m->throttles) - n, "%s%u",
		 r->round ? "," : "", r->throttle_pct);
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

/* Lifts the throttle for the pause; a failure is only worth a warning. */
static void src_unthrottle(struct mig_src *m)
{
	if (m->throttle && mig_src_throttle(m, 0))
		pvm_warn("migration %.8s: the throttle stays on '%s'", m->id,
			 m->dom.name);
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
			    (double)m->o.bw_bytes_s);
	while (m->bw_t0 + due_ns > now) {
		uint64_t wait_us = (m->bw_t0 + due_ns - now) / 1000;

		usleep((useconds_t)(wait_us > 1000000 ? 1000000 : wait_us));
		if (!all)
			break;
		now = pvm_now_ns();
	}
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

/*
 * Waits for @want from the destination, which must be legal in the
 * current state: ABORT becomes -ECONNABORTED with its reason, a message
 * with no place here -EPROTO naming it and the state.
 */
static int src_expect(struct mig_src *m, int want, struct mig_msg_in *msg,
		      char *why, size_t why_len)
{
	enum mig_src_state st = (enum mig_src_state)atomic_load(&m->state);
	char w[256] = "";
	int type = mig_recv(m->ch, msg, w, sizeof(w));

	if (type == -EBADMSG) {
		snprintf(why, why_len, "the destination sent %s", w);
		return type;
	}
	if (type < 0) {
		snprintf(why, why_len, "lost the destination: %s", w);
		return type;
	}
	if (!mig_src_may_recv(type, st) || (type != want && type != MIG_ABORT)) {
		snprintf(why, why_len,
			 "the destination sent a %s message, which has no place in state %s (waiting for %s)",
			 mig_msg_name(type), mig_src_state_name(st),
			 mig_msg_name(want));
		return -EPROTO;
	}
	if (type == MIG_ABORT) {
		snprintf(why, why_len, "destination refused: %s",
			 pvm_kv_get(&msg->kv, "error") ?: "no reason");
		return -ECONNABORTED;
	}
	return 0;
}

/* ---- pages ---------------------------------------------------------------- */

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
		if (m->o.bw_bytes_s)
			mig_src_bw_limit(m, false);
		/* A long round (big guest, slow link) can be cancelled too;
		 * once paused we finish instead. */
		if (atomic_load(&m->state) == MIG_SRC_PRECOPY &&
		    mig_src_cancelled(m))
			return -ECANCELED;
	}
	*sent_out = sent;
	return 0;
}

/* ---- the steps, in the order they run -------------------------------------- */

static int src_connect(struct mig_src *m, char *why, size_t why_len)
{
	struct pvm_channel_opts o;
	char refusal[300] = "";
	int rc = mig_load_tls(m->svc);

	if (rc) {
		snprintf(why, why_len, "TLS is not configured (tls-ca, tls-cert, tls-key in pvmigd.conf)");
		return rc;
	}
	pvm_channel_opts_defaults(&o);
	o.timeout_ms = m->svc->cfg.timeout_ms;
	o.streams = m->o.streams;
	/* Its certificate must carry the name or address it is reached by,
	 * so a host with another certificate of the same CA cannot stand in
	 * (an address: if the certificate lists any; docs/pvmigd.8.md). */
	o.peer_name = m->o.host;
	o.compress = m->o.compress;
	o.refusal = refusal;
	o.refusal_len = sizeof(refusal);
	rc = pvm_transport_connect(m->o.host, m->o.port, m->svc->tls, &o, &m->ch);
	if (rc && refusal[0])
		snprintf(why, why_len, "pvmigd at %s:%u refused this host: %s",
			 m->o.host, m->o.port, refusal);
	else if (rc == -EACCES)
		snprintf(why, why_len, "pvmigd at %s:%u refused: its certificate is not from this host's CA, or does not name %s (the log says which; see pvmig tls-init)",
			 m->o.host, m->o.port, m->o.host);
	else if (rc)
		snprintf(why, why_len, "cannot reach pvmigd at %s:%u (%s); see the log for the TLS details",
			 m->o.host, m->o.port, strerror(-rc));
	return rc;
}

/* HELLO, and the destination's ACCEPT. */
static int src_hello(struct mig_src *m, char *why, size_t why_len)
{
	struct mig_msg_in msg;
	struct pvm_kv kv;
	int rc;

	pvm_kv_init(&kv);
	mig_msg_init(&msg);
	pvm_kv_add(&kv, "id", "%s", m->id);
	pvm_kv_add(&kv, "name", "%s", m->dom.name);
	pvm_kv_add(&kv, "nr_pages", "%llu", (unsigned long long)m->dom.nr_pages);
	pvm_kv_add(&kv, "vcpus", "%u", m->dom.nr_vcpus);
	pvm_kv_add(&kv, "domid", "%u", m->dom.domid);
	if (m->ndev && !m->o.no_quiesce) {
		/* Decided now, before any pause: a destination that cannot
		 * keep the domid a transparent reconnect needs refuses here. */
		m->pv_requested = m->o.pv_mode;
		m->o.pv_mode = pvm_pvq_choose_mode(m->svc->hv, m->dom.domid,
						   m->o.pv_mode);
		pvm_kv_add(&kv, "pv_mode", "%s", pvm_pvq_mode_name(m->o.pv_mode));
		mig_src_stat(m, "pv_mode", "%s", pvm_pvq_mode_name(m->o.pv_mode));
	}
	dom_config_to_kv(&m->dc, &kv);
	if (m->xen)
		pvm_kv_add(&kv, "xen", "1");
	m->t.connected = pvm_now_ns();
	rc = mig_send_kv(m->ch, MIG_HELLO, &kv);
	if (!rc)
		rc = src_expect(m, MIG_ACCEPT, &msg, why, why_len);
	m->t.accepted = pvm_now_ns();
	mig_msg_dispose(&msg);
	pvm_kv_dispose(&kv);
	return rc;
}

/* Before the pause: the guest's own suspend (pvquiesce), recorded. A
 * guest that advertises suspend but did not suspend does not know it is
 * moved: its frontends would keep their rings and never reconnect to the
 * fresh backends a cooperative move gives it (the destination, told
 * "cooperative" in HELLO, did not keep its domid for a transparent one).
 * So the move stops here, before the pause, and the guest runs on. */
static int suspend(struct mig_src *m, char *why, size_t why_len)
{
	struct pvm_pvq_suspend_result r;
	int rc;

	if (m->o.no_quiesce)
		return 0;
	rc = pvm_pvq_suspend(m->svc->hv, m->dom.domid, m->o.suspend_timeout_ms,
			     &r);
	if (rc)
		return rc;
	if (r.cooperative)
		mig_src_stat(m, "suspend", "cooperative");
	else
		mig_src_stat(m, "suspend", "non-cooperative: %s", r.why);
	mig_src_stat(m, "suspend_ms", "%.2f", r.ms);
	if (m->ndev && pvm_pvq_mode_after_suspend(m->pv_requested, m->o.pv_mode,
						  &r) != m->o.pv_mode) {
		snprintf(why, why_len,
			 "the guest advertises control/feature-suspend but did "
			 "not suspend (%s): its PV frontends would not "
			 "reconnect on the destination; try again, raise "
			 "--suspend-timeout, or move it with --pv-mode "
			 "transparent", r.why);
		return -ETIMEDOUT;
	}
	return 0;
}

/* From @from (CONNECTING or PRECOPY): suspend, pause, lift the throttle,
 * drain and capture the PV backends: PAUSED, then QUIESCED. */
static int src_pause(struct mig_src *m, enum mig_src_state from, char *why,
		     size_t why_len)
{
	struct pvm_hv *hv = m->svc->hv;
	uint64_t t0;
	int rc;

	why[0] = '\0';
	rc = suspend(m, why, why_len);

	if (rc == 0)
		rc = hv->ops->domain_pause(hv, m->dom.domid);
	if (rc) {
		if (from == MIG_SRC_PRECOPY && !why[0])
			snprintf(why, why_len, "cannot pause: %s", strerror(-rc));
		return rc;
	}
	m->t.pause = pvm_now_ns();
	rc = mig_src_go(m, from, MIG_SRC_PAUSED);
	if (rc)
		return rc;
	/* Nothing to slow down in a paused guest; whatever happens next
	 * (hand-over or roll back), it runs at full speed. */
	src_unthrottle(m);
	t0 = pvm_now_ns();
	if (m->ndev && m->o.no_quiesce) {
		/* Kept to show what pvquiesce prevents: devices move with no
		 * drain and no state, as a plain memory copy would. */
		mig_src_stat(m, "devices_quiesced", "0 (--no-quiesce)");
	} else if (m->ndev) {
		pvm_buf_reset(&m->devstate);
		rc = pvm_pvq_quiesce(hv, m->dom.domid, m->devs, m->ndev,
				     m->o.pv_mode, m->o.drain_timeout_ms,
				     &m->devstate, why, why_len);
		if (rc)
			return rc;
		mig_src_stat(m, "quiesce_ms", "%.2f",
			     (double)(pvm_now_ns() - t0) / 1e6);
		mig_src_stat(m, "devices_quiesced", "%zu", m->ndev);
	}
	return mig_src_go(m, MIG_SRC_PAUSED, MIG_SRC_QUIESCED);
}

/* Simulated host, after ACCEPT: log-dirty on (PRECOPY), or a cold move's
 * pause; round 0's set: every page that may hold data. */
static int src_start(struct mig_src *m, char *why, size_t why_len)
{
	struct pvm_hv *hv = m->svc->hv;
	int rc = pvm_bitmap_init(&m->dirty, m->dom.nr_pages);

	if (rc)
		return rc;
	if (m->o.live) {
		rc = hv->ops->logdirty_enable(hv, m->dom.domid);
		if (rc) {
			snprintf(why, why_len, "cannot enable log-dirty: %s",
				 strerror(-rc));
			return rc;
		}
		rc = mig_src_go(m, MIG_SRC_CONNECTING, MIG_SRC_PRECOPY);
	} else {
		/* Drained before any page is read: the responses the
		 * backends write go out with the memory. */
		rc = src_pause(m, MIG_SRC_CONNECTING, why, why_len);
	}
	if (rc)
		return rc;
	/* Pages never populated read as zeros here and already are zeros in
	 * the new domain there; one populated later was written, so
	 * log-dirty (on since above) reports it in a later round. */
	rc = hv->ops->domain_populated(hv, m->dom.domid, &m->dirty);
	if (rc) {
		snprintf(why, why_len, "cannot read which pages are populated: %s",
			 strerror(-rc));
		return rc;
	}
	mig_src_stat(m, "unpopulated_pages", "%llu",
		     (unsigned long long)(m->dom.nr_pages -
					  pvm_bitmap_count(&m->dirty)));
	if (m->o.bw_bytes_s)
		mig_src_bw_limit(m, false); /* the limit's clock starts here */
	return 0;
}

/* Measures round @r (sent @sent pages from @t0, channel counters @cs0). */
static void src_round_measure(struct mig_src *m, struct pvm_round_stats *r,
			      uint64_t t0, uint64_t sent,
			      const struct pvm_channel_stats *cs0,
			      uint64_t *prev_dirty)
{
	struct pvm_channel_stats cs1;
	uint64_t dirty = pvm_bitmap_count(&m->dirty);
	double s;

	pvm_channel_stats(m->ch, &cs1);
	s = (double)(pvm_now_ns() - t0) / 1e9;
	r->pages_sent = sent;
	r->wire_bytes = cs1.wire_bytes - cs0->wire_bytes;
	r->ms = (pvm_now_ns() - t0) / 1000000;
	/* Pages of zeros cost a few bytes on the wire; what is left dirty
	 * has been written, so what predicts its cost is the rate of pages
	 * with data (all pages when none had any). */
	{
		uint64_t zero = cs1.zero_pages - cs0->zero_pages;
		uint64_t data = sent > zero ? sent - zero : sent;

		r->bytes_per_s = (double)data * PVM_PAGE_SIZE / s;
	}
	r->dirty_rate = (double)dirty / s;
	r->dirty_after = dirty;
	r->stuck_rounds = pvm_policy_shrank(*prev_dirty, dirty) ?
				  0 : r->stuck_rounds + 1;
	r->high_rounds = pvm_policy_round_high(r) ? r->high_rounds + 1 : 0;
	r->throttle_pct = m->throttle;
	*prev_dirty = dirty;
	m->total_pages += sent;
}

/*
 * One pre-copy round: the dirty set, ROUND, its ACK, the next dirty set,
 * then the policy. 1: another round; 0: stop-and-copy; or an error.
 */
static int src_round(struct mig_src *m, uint64_t *prev_dirty, char *why,
		     size_t why_len)
{
	struct pvm_hv *hv = m->svc->hv;
	struct pvm_round_stats *r = &m->r;
	struct pvm_channel_stats cs0;
	struct mig_msg_in msg;
	struct pvm_kv kv;
	uint64_t t0 = pvm_now_ns(), sent = 0;
	const char *verdict_why;
	enum pvm_policy_verdict v;
	int rc;

	if (mig_src_cancelled(m)) {
		snprintf(why, why_len, "cancelled");
		return -ECANCELED;
	}
	mig_msg_init(&msg);
	pvm_kv_init(&kv);
	pvm_channel_stats(m->ch, &cs0);
	rc = send_dirty(m, &m->dirty, &sent);
	if (rc == -ECANCELED) {
		snprintf(why, why_len, "cancelled");
		return rc;
	}
	if (!rc) {
		pvm_kv_add(&kv, "round", "%u", r->round);
		rc = mig_send_kv(m->ch, MIG_ROUND, &kv);
	}
	pvm_kv_dispose(&kv);
	if (!rc)
		rc = src_expect(m, MIG_ROUND_ACK, &msg, why, why_len);
	mig_msg_dispose(&msg);
	if (!rc && m->o.bw_bytes_s)
		mig_src_bw_limit(m, true);
	if (!rc)
		rc = hv->ops->logdirty_read_clear(hv, m->dom.domid, &m->dirty);
	if (rc) {
		snprintf(why, why_len, "pre-copy round %u failed: %s",
			 r->round, strerror(-rc));
		return rc;
	}
	src_round_measure(m, r, t0, sent, &cs0, prev_dirty);
	v = pvm_policy_decide(&m->o.policy, r,
			      (pvm_now_ns() - m->t.start) / 1000000,
			      &verdict_why);
	mig_src_progress(m, r, pvm_policy_predict_ms(r->dirty_after,
						     r->bytes_per_s),
			 "precopy");
	mig_src_round_desc(m, r, sent, "pages");
	pvm_debug("migration %.8s: round %u sent %llu pages in %llu ms, %llu dirty, throttle %u%%: %s",
		  m->id, r->round, (unsigned long long)sent,
		  (unsigned long long)r->ms, (unsigned long long)r->dirty_after,
		  r->throttle_pct, verdict_why);
	if (v == PVM_POLICY_THROTTLE) {
		rc = mig_src_throttle(m, pvm_policy_throttle_next(m->throttle));
		if (rc == 0) {
			/* A new regime: both counts start again. */
			r->stuck_rounds = 0;
			r->high_rounds = 0;
			return 1;
		}
		pvm_warn("migration %.8s: cannot throttle '%s' (%s): stopping anyway",
			 m->id, m->dom.name, strerror(-rc));
		mig_src_stat(m, "stop_reason", "%s; the guest could not be throttled (%s)",
			     verdict_why, strerror(-rc));
		mig_src_stat(m, "converged", "no");
		return 0;
	}
	if (v == PVM_POLICY_CONTINUE)
		return 1;
	mig_src_stat(m, "stop_reason", "%s", verdict_why);
	mig_src_stat(m, "converged", "%s", v == PVM_POLICY_STOP ? "yes" : "no");
	return 0;
}

/* Pre-copy rounds until the policy says stop. */
static int src_precopy(struct mig_src *m, char *why, size_t why_len)
{
	uint64_t prev_dirty = UINT64_MAX;
	int rc;

	mig_hold_point("src-precopy");
	for (m->r.round = 0;; m->r.round++) {
		rc = src_round(m, &prev_dirty, why, why_len);
		if (rc <= 0)
			return rc;
	}
}

/* Stop-and-copy: pause (unless cold), the last dirty pages, STATE. */
static int src_stop_copy(struct mig_src *m, char *why, size_t why_len)
{
	struct pvm_hv *hv = m->svc->hv;
	uint64_t sent = 0;
	int rc = 0;

	m->t.precopy = pvm_now_ns();
	if (atomic_load(&m->state) == MIG_SRC_PRECOPY) {
		/* Pages dirtied since the last read, plus those the last
		 * read reported, are what is left to send. */
		struct pvm_bitmap more;

		rc = src_pause(m, MIG_SRC_PRECOPY, why, why_len);
		if (rc)
			return rc;
		rc = pvm_bitmap_init(&more, m->dom.nr_pages);
		if (!rc)
			rc = hv->ops->logdirty_read_clear(hv, m->dom.domid, &more);
		if (!rc)
			for (size_t i = 0; i < (m->dom.nr_pages + 63) / 64; i++)
				m->dirty.words[i] |= more.words[i];
		pvm_bitmap_dispose(&more);
		if (rc)
			return rc;
	}
	mig_hold_point("src-stop-copy");
	m->t.read = pvm_now_ns();
	rc = send_dirty(m, &m->dirty, &sent);
	m->total_pages += sent;
	mig_src_stat(m, "final_pages", "%llu", (unsigned long long)sent);
	m->t.sent = pvm_now_ns();
	if (!rc)
		rc = mig_state_send(m);
	m->t.state = pvm_now_ns();
	if (!rc)
		rc = mig_src_go(m, MIG_SRC_QUIESCED, MIG_SRC_AWAIT_READY);
	return rc;
}

/* Xen: libxenguest's stream, PRECOPY to AWAIT_READY. */
static int src_xen(struct mig_src *m, char *why, size_t why_len)
{
	int rc = mig_src_go(m, MIG_SRC_CONNECTING, MIG_SRC_PRECOPY);

	if (!rc)
		rc = mig_source_xen_stream(m, why, why_len);
	/* pages_sent, compression and throughput count the 4 KiB slots of
	 * libxenguest's stream */
	m->total_pages = (atomic_load(&m->xbytes) + PVM_PAGE_SIZE - 1) /
			 PVM_PAGE_SIZE;
	m->t.precopy = m->t.read = m->t.sent = m->t.state = pvm_now_ns();
	if (!rc)
		rc = mig_src_go(m, MIG_SRC_PAUSED, MIG_SRC_AWAIT_READY);
	return rc;
}

/* After UNPAUSE went out and RUNNING did not come back: ask. */
static int query_outcome(struct mig_src *m, char *state, size_t len)
{
	for (unsigned t = 0; t < QUERY_TRIES; t++) {
		struct pvm_channel_opts o;
		struct pvm_channel *ch = NULL;
		struct mig_msg_in msg;
		struct pvm_kv kv;
		char w[256];
		int type;

		pvm_channel_opts_defaults(&o);
		o.streams = 1;
		o.timeout_ms = 5000;
		/* The same host as the migration's, by its certificate. */
		o.peer_name = m->o.host;
		if (t)
			sleep(1);
		if (pvm_transport_connect(m->o.host, m->o.port, m->svc->tls, &o,
					  &ch))
			continue;
		pvm_kv_init(&kv);
		mig_msg_init(&msg);
		pvm_kv_add(&kv, "id", "%s", m->id);
		mig_send_kv(ch, MIG_QUERY, &kv);
		pvm_kv_dispose(&kv);
		type = mig_recv(ch, &msg, w, sizeof(w));
		if (type == MIG_OUTCOME &&
		    mig_src_may_recv(type, (enum mig_src_state)atomic_load(&m->state)) &&
		    pvm_kv_get(&msg.kv, "state")) {
			snprintf(state, len, "%s", pvm_kv_get(&msg.kv, "state"));
			mig_msg_dispose(&msg);
			pvm_channel_close(ch);
			return 0;
		}
		mig_msg_dispose(&msg);
		pvm_channel_close(ch);
	}
	return -EHOSTUNREACH;
}

/*
 * UNPAUSE sent and RUNNING lost: the QUERY decides. 0 when it runs there;
 * -EHOSTUNREACH (IN_DOUBT) when nobody could say; @rc to roll back when
 * the destination says it does not run it.
 */
static int src_in_doubt(struct mig_src *m, int rc, char *why, size_t why_len)
{
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
		return rc; /* roll back: it is not running there */
	}
	if (q != 0) {
		snprintf(why, why_len,
			 "outcome unknown: the destination could not be asked. The guest stays PAUSED here (domid %u); check the destination, then 'pvmig destroy' or 'pvmig unpause' it here",
			 m->dom.domid);
		/* Remember its devices are drained, so that the operator's
		 * 'pvmig unpause' resumes them. */
		svc_config_quiesced(m->svc, m->dom.domid,
				    mig_src_devs_quiesced(m));
		mig_src_go(m, MIG_SRC_UNPAUSE_SENT, MIG_SRC_IN_DOUBT);
		mig_src_stat(m, "outcome", "unknown");
		return -EHOSTUNREACH;
	}
	pvm_warn("migration %.8s: the destination runs it", m->id);
	mig_src_stat(m, "outcome", "confirmed by query after a lost hand-over");
	return 0;
}

/* AWAIT_READY: READY, the point of no return, UNPAUSE, RUNNING. @msg gets
 * RUNNING's fields. */
static int src_handover(struct mig_src *m, struct mig_msg_in *msg, char *why,
			size_t why_len)
{
	const char *cwhy;
	int rc = src_expect(m, MIG_READY, msg, why, why_len);

	m->t.ready = pvm_now_ns();
	/* Where the pause went, step by step (the downtime's parts). */
	mig_src_stat(m, "pause_detail", "quiesce+dirty read %.1f ms, last pages %.1f ms, state %.1f ms, destination load %.1f ms",
		     (double)(m->t.read - m->t.pause) / 1e6,
		     (double)(m->t.sent - m->t.read) / 1e6,
		     (double)(m->t.state - m->t.sent) / 1e6,
		     (double)(m->t.ready - m->t.state) / 1e6);
	if (!rc && m->o.verify)
		mig_src_stat(m, "memory", "%s",
			     pvm_kv_get(&msg->kv, "memory") ?
				     "identical on both hosts" :
				     "not verified by the destination");
	if (rc)
		return rc;
	mig_hold_point("src-after-ready");
	/* A channel that already failed, or whose peer has already closed
	 * it, cannot carry UNPAUSE: the destination will never run its copy,
	 * so resume ours now rather than stay paused on a QUERY that may not
	 * get through (a destination pvmigd that died after READY). */
	rc = pvm_channel_check_peer(m->ch);
	if (rc) {
		pvm_channel_error(m->ch, &cwhy);
		snprintf(why, why_len, "lost the destination before UNPAUSE was sent: %s",
			 *cwhy ? cwhy : strerror(-rc));
		return rc;
	}
	if (mig_fault_point("src-cut-before-unpause"))
		pvm_channel_shutdown(m->ch);
	rc = mig_src_go(m, MIG_SRC_AWAIT_READY, MIG_SRC_UNPAUSE_SENT);
	if (!rc)
		rc = mig_send_simple(m->ch, MIG_UNPAUSE);
	if (!rc && mig_fault_point("src-cut-after-unpause"))
		pvm_channel_shutdown(m->ch);
	if (!rc)
		rc = src_expect(m, MIG_RUNNING, msg, why, why_len);
	if (rc)
		/* UNPAUSE may or may not have reached the destination (even
		 * a failed send may have left part of it on the wire): ask. */
		return src_in_doubt(m, rc, why, why_len);
	if (pvm_kv_get(&msg->kv, "devices"))
		mig_src_stat(m, "devices", "%s", pvm_kv_get(&msg->kv, "devices"));
	if (pvm_kv_get(&msg->kv, "reconnect_ms"))
		mig_src_stat(m, "reconnect_ms", "%s",
			     pvm_kv_get(&msg->kv, "reconnect_ms"));
	if (pvm_kv_get(&msg->kv, "first_io_ms"))
		mig_src_stat(m, "first_io_ms", "%s",
			     pvm_kv_get(&msg->kv, "first_io_ms"));
	return 0;
}

/* The downtime: the pause less what the guest already ran there. */
static void src_downtime_stats(struct mig_src *m, const struct pvm_kv *kv)
{
	double pause_ms = (double)(pvm_now_ns() - m->t.pause) / 1e6;
	const char *rc_ms = pvm_kv_get(kv, "reconnect_ms");
	const char *io_ms = pvm_kv_get(kv, "first_io_ms");
	const char *ran_ms = pvm_kv_get(kv, "running_for_ms");
	double ran = ran_ms ? strtod(ran_ms, NULL) : 0.0, down;

	/* The destination answers RUNNING once its PV devices are connected
	 * again and (bounded) a first request is served; it says how long
	 * after its unpause that was. The guest itself ran from the unpause:
	 * that part is not downtime. A figure out of range (hostile or a
	 * clock step) is ignored rather than trusted. */
	if (!(ran >= 0.0 && ran < pause_ms))
		ran = 0.0;
	down = pause_ms - ran;
	mig_src_stat(m, "downtime_ms", "%.2f", down);
	/* PV I/O was down until the first request completed, or, for a
	 * guest doing none, until its devices reconnected. */
	if (io_ms)
		mig_src_stat(m, "io_downtime_ms", "%.2f", down + strtod(io_ms, NULL));
	else if (rc_ms)
		mig_src_stat(m, "io_downtime_ms", "%.2f", down + strtod(rc_ms, NULL));
}

/* Running there: ends the source copy (DONE) and adds the statistics. */
static void src_done(struct mig_src *m, const struct pvm_kv *kv)
{
	struct pvm_hv *hv = m->svc->hv;
	struct pvm_channel_stats cs;
	uint64_t t_running, t_destroyed;
	double total_s;

	mig_hold_point("src-after-running");
	src_downtime_stats(m, kv);
	t_running = pvm_now_ns();
	hv->ops->domain_destroy(hv, m->dom.domid);
	svc_config_drop(m->svc, m->dom.domid);
	t_destroyed = pvm_now_ns();
	mig_src_go(m, MIG_SRC_UNPAUSE_SENT, MIG_SRC_DONE);
	pvm_channel_finish(m->ch);
	pvm_channel_stats(m->ch, &cs);
	mig_src_stat(m, "total_ms", "%.1f", (double)(pvm_now_ns() - m->t.start) / 1e6);
	/* Where the total went: connecting (TCP + TLS handshakes), the
	 * destination creating and mapping the domain, log-dirty on and
	 * pre-copy, then the pause and hand-over. */
	mig_src_stat(m, "phase_detail", "connect %.1f ms, destination create %.1f ms, pre-copy %.1f ms, stop-and-copy + hand-over %.1f ms, source copy destroyed %.1f ms, channel closed %.1f ms",
		     (double)(m->t.connected - m->t.start) / 1e6,
		     (double)(m->t.accepted - m->t.connected) / 1e6,
		     (double)(m->t.precopy - m->t.accepted) / 1e6,
		     (double)(t_running - m->t.precopy) / 1e6,
		     (double)(t_destroyed - t_running) / 1e6,
		     (double)(pvm_now_ns() - t_destroyed) / 1e6);
	mig_src_stat(m, "rounds", "%u", m->o.live ? m->r.round + 1 : 0);
	mig_src_stat(m, "round_detail", "%s", m->rounds_desc);
	if (m->o.live)
		mig_src_stat(m, "throttle_per_round", "%s", m->throttles);
	mig_src_stat(m, "throttle_max_pct", "%u", m->throttle_max);
	mig_src_stat(m, "pages_sent", "%llu", (unsigned long long)m->total_pages);
	mig_src_stat(m, "zero_pages", "%llu", (unsigned long long)cs.zero_pages);
	mig_src_stat(m, "wire_bytes", "%llu", (unsigned long long)cs.wire_bytes);
	mig_src_stat(m, "compression_ratio", "%.2f",
		     cs.wire_bytes ? (double)m->total_pages * PVM_PAGE_SIZE /
					     (double)cs.wire_bytes : 0.0);
	total_s = (double)(pvm_now_ns() - m->t.start) / 1e9;
	mig_src_stat(m, "throughput_mib_s", "%.1f",
		     (double)m->total_pages * PVM_PAGE_SIZE / 1048576.0 / total_s);
	mig_src_stat(m, "dirty_rate_pages_s", "%.0f", m->r.dirty_rate);
	mig_src_stat(m, "streams", "%u", pvm_channel_streams(m->ch));
}

static int source_run(struct mig_src *m, char *why, size_t why_len)
{
	struct mig_msg_in msg;
	int rc;

	mig_msg_init(&msg);
	rc = src_connect(m, why, why_len);
	if (!rc)
		rc = src_hello(m, why, why_len);
	if (!rc && m->xen) {
		rc = src_xen(m, why, why_len);
	} else if (!rc) {
		rc = src_start(m, why, why_len);
		if (!rc && m->o.live)
			rc = src_precopy(m, why, why_len);
		if (!rc)
			rc = src_stop_copy(m, why, why_len);
	}
	if (!rc)
		rc = src_handover(m, &msg, why, why_len);
	else if (atomic_load(&m->state) >= MIG_SRC_PAUSED && !why[0])
		snprintf(why, why_len, "stop-and-copy failed: %s", strerror(-rc));
	if (!rc)
		src_done(m, &msg.kv);
	mig_msg_dispose(&msg);
	return rc;
}

/* Roll back: the guest keeps running here (in doubt: stays paused). */
static void src_rollback(struct mig_src *m, int rc, const char *why)
{
	struct pvm_hv *hv = m->svc->hv;
	int st = atomic_load(&m->state);

	if (m->ch)
		mig_send_abort(m->ch, why[0] ? why : strerror(-rc));
	if (src_logdirty(m, st))
		hv->ops->logdirty_disable(hv, m->dom.domid);
	src_unthrottle(m);
	if (src_stopped(st)) {
		if (mig_src_devs_quiesced(m))
			pvm_pvq_resume(hv, m->dom.domid, m->devs, m->ndev);
		if (m->xen)
			pvm_hv_xen_resume(hv, m->dom.domid);
		else
			hv->ops->domain_unpause(hv, m->dom.domid);
	} else if (!m->xen) {
		/* a suspend request may be out (CONNECTING, PRECOPY), or the
		 * guest stays paused (IN_DOUBT): take the request back */
		pvm_pvq_suspend_cancel(hv, m->dom.domid);
	}
	if (st != MIG_SRC_IN_DOUBT)
		mig_src_go(m, (enum mig_src_state)st, MIG_SRC_ROLLED_BACK);
}

void *mig_source_main(void *arg)
{
	struct mig_src *m = arg;
	struct pvm_service *s = m->svc;
	struct req r = { .svc = s, .fd = m->fd, .args = NULL };
	char why[512] = "";
	int rc;

	m->t.start = pvm_now_ns();
	pvm_info("migration %.8s: '%s' (domain %u) to %s:%u, %s", m->id,
		 m->dom.name, m->dom.domid, m->o.host, m->o.port,
		 m->o.live ? "live" : "cold");
	rc = source_run(m, why, sizeof(why));
	if (rc) {
		src_rollback(m, rc, why);
		pvm_err("migration %.8s of '%s' failed: %s%s", m->id, m->dom.name,
			why[0] ? why : strerror(-rc),
			rc == -EHOSTUNREACH ? "" : "; the guest keeps running here");
	} else {
		pvm_info("migration %.8s: '%s' now runs on %s:%u", m->id,
			 m->dom.name, m->o.host, m->o.port);
	}
	pvm_kv_add(&m->stats, "id", "%s", m->id);
	pvm_kv_add(&m->stats, "domain", "%s", m->dom.name);
	pvm_kv_add(&m->stats, "destination", "%s:%u", m->o.host, m->o.port);
	pvm_kv_add(&m->stats, "result", "%s", rc ? "failed" : "done");
	mig_stats_keep(s, &m->stats);
	if (rc)
		reply_result(&r, rc, &m->stats, "%s%s", why[0] ? why : strerror(-rc),
			     rc == -EHOSTUNREACH ? "" :
			     "; the guest keeps running on this host");
	else
		reply_result(&r, 0, &m->stats, NULL);
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
