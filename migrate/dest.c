/*
 * The destination of a migration: one job thread per accepted channel
 * (mig_dest_main), started by the listener (peer.c).
 *
 * States (enum mig_dst_state), each change through mig_dst_go(), a
 * compare-and-set on the state it leaves:
 *
 *         HELLO: create the domain paused, map it, ACCEPT
 *   OPEN ---------------------------------------------> LOADING
 *    |  (QUERY, TUNNEL: answered, no migration)          |  pages, ROUND/ACK
 *    |                                                   |  STATE applied,
 *    |  Xen: HELLO, ACCEPT                               v  READY sent
 *    +--> XSTREAM --XCONFIG: libxl restore starts         READY
 *                      |                                 |  UNPAUSE, unpaused
 *                      v      XEND: restored, paused     v
 *                   XRESTORE ----------------> LOADING  RUNNING
 *
 *   Every state but RUNNING goes to ABORTED on a failure, an ABORT from
 *   the source, or a lost channel; the copy here (LOADING, READY) is then
 *   destroyed and the outcome kept for a QUERY is "aborted".
 *
 * Invariants:
 *   OPEN       nothing exists here for this channel.
 *   XSTREAM    the outcome of the id is "receiving"; no domain yet.
 *   XRESTORE   libxl's restore thread reads the chunks; a domain it makes
 *              is libxl's to destroy if the stream breaks off.
 *   LOADING    a paused domain (d->domid) exists here and is ours to
 *              destroy; sim: mapped WRITE at d->mem for the receive threads.
 *   READY      the domain is complete and paused; the source is paused too.
 *   RUNNING    the outcome is "running" (claimed under the service lock,
 *              so a QUERY cannot also be told "aborted") and it runs here.
 *   ABORTED    no copy here; the outcome is "aborted".
 *
 * Which message may arrive in which state is wire.c's table; anything else
 * is refused with ABORT naming the message and the state.
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hv/xen/xen.h"
#include "pvquiesce/pvquiesce.h"
#include "transport/transport.h"

#define RECONNECT_WAIT_MS 10000u
#define FIRST_IO_WAIT_MS 100u /* then "first_io_ms" is left out */
#define LINGER_MS 5000u         /* after an ABORT, for the source to read it */

/* ---- the state machine ------------------------------------------------- */

static const char *const dst_names[MIG_DST_NSTATES] = {
	[MIG_DST_OPEN] = "OPEN",
	[MIG_DST_XSTREAM] = "XSTREAM",
	[MIG_DST_XRESTORE] = "XRESTORE",
	[MIG_DST_LOADING] = "LOADING",
	[MIG_DST_READY] = "READY",
	[MIG_DST_RUNNING] = "RUNNING",
	[MIG_DST_ABORTED] = "ABORTED",
};

#define A(x) (1u << MIG_DST_##x)
/* The diagram's arrows: dst_next[from] has bit @to. */
static const uint32_t dst_next[MIG_DST_NSTATES] = {
	[MIG_DST_OPEN] = A(XSTREAM) | A(LOADING) | A(ABORTED),
	[MIG_DST_XSTREAM] = A(XRESTORE) | A(ABORTED),
	[MIG_DST_XRESTORE] = A(LOADING) | A(ABORTED),
	[MIG_DST_LOADING] = A(READY) | A(ABORTED),
	[MIG_DST_READY] = A(RUNNING) | A(ABORTED),
};
#undef A

const char *mig_dst_state_name(enum mig_dst_state st)
{
	return (unsigned)st < MIG_DST_NSTATES ? dst_names[st] : "invalid";
}

bool mig_dst_may_go(enum mig_dst_state from, enum mig_dst_state to)
{
	return (unsigned)from < MIG_DST_NSTATES &&
	       (unsigned)to < MIG_DST_NSTATES && (dst_next[from] & (1u << to));
}

int mig_dst_set(_Atomic int *st, enum mig_dst_state from,
		enum mig_dst_state to)
{
	int expected = (int)from;

	if (!mig_dst_may_go(from, to)) {
		pvm_err("migration destination: no transition %s -> %s",
			mig_dst_state_name(from), mig_dst_state_name(to));
		return -EPROTO;
	}
	if (!atomic_compare_exchange_strong(st, &expected, (int)to)) {
		pvm_err("migration destination: %s -> %s from state %s",
			mig_dst_state_name(from), mig_dst_state_name(to),
			mig_dst_state_name((enum mig_dst_state)expected));
		return -EPROTO;
	}
	return 0;
}

int mig_dst_go(struct mig_dst *d, enum mig_dst_state from,
	       enum mig_dst_state to)
{
	int rc = mig_dst_set(&d->state, from, to);

	if (!rc)
		pvm_debug("migration %.8s: destination %s -> %s", d->h.id,
			  mig_dst_state_name(from), mig_dst_state_name(to));
	return rc;
}

void mig_dst_refuse(struct mig_dst *d, const char *why)
{
	mig_send_abort(d->ch, why);
	d->refused = true;
}

/* A paused copy of the guest exists here, ours to destroy on failure. */
static bool dst_has_copy(int st)
{
	return st == MIG_DST_LOADING || st == MIG_DST_READY;
}

int mig_dst_recv(struct mig_dst *d, struct mig_msg_in *m, char *why,
		 size_t why_len)
{
	enum mig_dst_state st = (enum mig_dst_state)atomic_load(&d->state);
	char w[256] = "";
	int type = mig_recv(d->ch, m, w, sizeof(w));

	if (type == -EBADMSG) {
		snprintf(why, why_len, "%s", w);
		mig_dst_refuse(d, why);
		return type;
	}
	if (type < 0) {
		snprintf(why, why_len, "lost the source: %s", w);
		return -ENOTCONN;
	}
	if (!mig_dst_may_recv(type, st)) {
		snprintf(why, why_len, "a %s message has no place in state %s (type '%c')",
			 mig_msg_name(type), mig_dst_state_name(st), type);
		mig_dst_refuse(d, why);
		return -EPROTO;
	}
	return type;
}

/* ---- HELLO ---------------------------------------------------------------- */

int mig_hello_decode(const struct pvm_kv *kv, struct mig_hello *h, char *why,
		     size_t why_len)
{
	const char *id = pvm_kv_get(kv, "id");
	const char *name = pvm_kv_get(kv, "name");
	const char *mode = pvm_kv_get(kv, "pv_mode");
	const char *cwhy = NULL;
	uint64_t v = 0;

	memset(h, 0, sizeof(*h));
	if (!id || strlen(id) != 32 || !name || !*name ||
	    strlen(name) >= sizeof(h->name) ||
	    pvm_kv_get_u64(kv, "nr_pages", &h->nr_pages) ||
	    pvm_kv_get_u64(kv, "vcpus", &h->vcpus) ||
	    h->nr_pages == 0 || h->nr_pages > (1ull << 36) ||
	    h->vcpus == 0 || h->vcpus > 64) {
		snprintf(why, why_len, "HELLO is malformed");
		return -EBADMSG;
	}
	snprintf(h->id, sizeof(h->id), "%s", id);
	snprintf(h->name, sizeof(h->name), "%s", name);
	if (dom_config_from_kv(kv, &h->dc, &cwhy)) {
		snprintf(why, why_len, "HELLO: %s", cwhy);
		return -EBADMSG;
	}
	if (pvm_kv_get_u64(kv, "domid", &v) == 0 && v <= PVM_HV_DOMID_MAX)
		h->src_domid = (uint32_t)v;
	h->keep_domid = h->src_domid && mode && !strcmp(mode, "transparent");
	h->xen = pvm_kv_get(kv, "xen") != NULL;
	return 0;
}

/* ---- pages ---------------------------------------------------------------- */

/* Transport receive threads: write each page at its pfn. */
int mig_dest_pages(void *ctx, const uint64_t *pfns,
		   const uint8_t *const *pages, size_t n)
{
	struct mig_dst *d = ctx;
	struct tunnel *t = atomic_load(&d->tun);

	if (t)
		return tunnel_pages(t, pfns, pages, n);
	if (d->xrx.stage)
		return pvm_xchunk_rx_pages(&d->xrx, pfns, pages, n);
	if (!d->mem)
		return -EPROTO;
	for (size_t i = 0; i < n; i++) {
		if (pfns[i] >= d->h.nr_pages)
			return -ERANGE;
		if (pages[i])
			memcpy(d->mem + pfns[i] * PVM_PAGE_SIZE, pages[i],
			       PVM_PAGE_SIZE);
		else
			memset(d->mem + pfns[i] * PVM_PAGE_SIZE, 0,
			       PVM_PAGE_SIZE);
	}
	atomic_fetch_add(&d->pages_in, n);
	return 0;
}

/* ---- the steps, in the order they run -------------------------------------- */

static int dest_create_on_main(void *arg)
{
	struct mig_dst *d = arg;
	struct pvm_hv *hv = d->svc->hv;
	struct pvm_hv_domain_config cfg = {
		/* Keep the domid where it is free here: a guest whose drivers
		 * never re-handshake keeps using paths and ACLs that name it
		 * (docs/designs/non-cooperative-migration.md). */
		.domid = d->h.src_domid && d->h.src_domid <= PVM_HV_DOMID_MAX ?
				 d->h.src_domid : PVM_HV_DOMID_ANY,
		.nr_pages = d->h.nr_pages,
		.nr_vcpus = (uint32_t)d->h.vcpus,
		.start_paused = true,
		.name = d->h.name,
	};
	int rc;

	dom_config_to_hv(&d->h.dc, &cfg);
	rc = hv->ops->domain_create(hv, &cfg, &d->domid);
	if (rc == -EEXIST && !d->h.keep_domid) {
		cfg.domid = PVM_HV_DOMID_ANY;
		rc = hv->ops->domain_create(hv, &cfg, &d->domid);
	}
	if (!rc) {
		d->h.dc.domid = d->domid;
		svc_config_put(d->svc, &d->h.dc);
	}
	return rc;
}

static bool name_taken(struct pvm_hv *hv, const char *name)
{
	struct pvm_hv_dominfo *all = calloc(MIG_MAX_DOMAINS, sizeof(*all));
	size_t n = 0;
	bool taken = false;

	if (!all)
		return true;
	hv->ops->domain_list(hv, all, MIG_MAX_DOMAINS, &n);
	for (size_t i = 0; i < n; i++)
		taken |= !strcmp(all[i].name, name);
	free(all);
	return taken;
}

/* Maps the whole new domain WRITE for the receive threads (d->mem). */
static int dst_map(struct mig_dst *d, char *why, size_t why_len)
{
	struct pvm_hv *hv = d->svc->hv;
	uint64_t *pfns = malloc(d->h.nr_pages * sizeof(*pfns));
	int *errs = calloc(d->h.nr_pages, sizeof(*errs));
	void *mem;
	int rc = -ENOMEM;

	if (!pfns || !errs) {
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	for (uint64_t i = 0; i < d->h.nr_pages; i++)
		pfns[i] = i;
	rc = hv->ops->map_pages(hv, d->domid, PVM_HV_MAP_WRITE, pfns,
				d->h.nr_pages, errs, &mem);
	if (rc) {
		snprintf(why, why_len, "cannot map the new domain: %s",
			 strerror(-rc));
		goto out;
	}
	d->mem = mem;
out:
	free(pfns);
	free(errs);
	return rc;
}

/*
 * Simulated host, OPEN: create the domain paused and map it (LOADING),
 * then ACCEPT. -ENOTCONN when the channel was lost; another errno after
 * refusing with ABORT (@why says what).
 */
static int dst_create(struct mig_dst *d, char *why, size_t why_len)
{
	struct pvm_kv kv;
	int rc = svc_on_main(d->svc, dest_create_on_main, d);

	if (rc == -EEXIST && d->h.keep_domid) {
		/* Before anything is paused: the source's guest runs on. */
		snprintf(why, why_len,
			 "its PV devices reconnect transparently, which needs its domid %u, and domid %u is taken on the destination",
			 d->h.src_domid, d->h.src_domid);
		goto out_abort;
	}
	if (rc) {
		snprintf(why, why_len, "cannot create the domain: %s",
			 strerror(-rc));
		goto out_abort;
	}
	rc = mig_dst_go(d, MIG_DST_OPEN, MIG_DST_LOADING);
	if (!rc)
		rc = dst_map(d, why, why_len);
	if (rc)
		goto out_abort;
	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "domid", "%u", d->domid);
	rc = mig_send_kv(d->ch, MIG_ACCEPT, &kv);
	pvm_kv_dispose(&kv);
	if (rc) {
		snprintf(why, why_len, "lost the source: %s", strerror(-rc));
		return -ENOTCONN;
	}
	pvm_info("migration %.8s: receiving '%s' as domain %u (%llu pages)",
		 d->h.id, d->h.name, d->domid, (unsigned long long)d->h.nr_pages);
	return 0;
out_abort:
	mig_dst_refuse(d, why);
	return rc;
}

/* MemAvailable of /proc/meminfo in bytes, or 0 when unknown. */
static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long long kib = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return (uint64_t)kib * 1024;
}

/*
 * Admission, before anything is created or allocated for the guest: one
 * more migration under max-migrations, its memory under
 * max-incoming-memory, and (simulated host, whose guests are processes
 * here) under what the host has left once the guests already arriving are
 * counted. On success the guest's bytes are claimed (s->incoming_bytes)
 * until mig_dest_main ends. 0, or a negative errno with @why.
 */
static int dst_admit(struct mig_dst *d, char *why, size_t why_len)
{
	struct pvm_service *s = d->svc;
	const struct pvm_service_config *c = &s->cfg;
	uint64_t bytes = d->h.nr_pages * PVM_PAGE_SIZE, avail = 0;
	int rc = 0;

	if (!pvm_hv_is_xen(s->hv))
		avail = mem_available();
	pthread_mutex_lock(&s->lock);
	if (s->incoming >= c->max_migrations) {
		snprintf(why, why_len,
			 "too many migrations running on the destination (max-migrations = %u)",
			 c->max_migrations);
		rc = -EBUSY;
	} else if (c->max_incoming_memory && bytes > c->max_incoming_memory) {
		snprintf(why, why_len,
			 "'%s' has %llu MiB of memory, more than this host accepts (max-incoming-memory = %llu MiB)",
			 d->h.name, (unsigned long long)(bytes >> 20),
			 (unsigned long long)(c->max_incoming_memory >> 20));
		rc = -ENOMEM;
	} else if (avail && bytes + s->incoming_bytes > avail) {
		snprintf(why, why_len,
			 "'%s' has %llu MiB of memory and this host has %llu MiB left (%llu MiB already promised to guests arriving)",
			 d->h.name, (unsigned long long)(bytes >> 20),
			 (unsigned long long)(avail >> 20),
			 (unsigned long long)(s->incoming_bytes >> 20));
		rc = -ENOMEM;
	} else {
		s->incoming++;
		s->incoming_bytes += bytes;
		d->admitted_bytes = bytes;
		d->counted = true;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* OPEN, HELLO in: decode it, check it fits here, and take it in (Xen:
 * libxenguest's stream, up to READY sent; sim: create, ACCEPT). */
static int dst_hello(struct mig_dst *d, const struct pvm_kv *kv, char *why,
		     size_t why_len)
{
	struct pvm_hv *hv = d->svc->hv;
	int rc = mig_hello_decode(kv, &d->h, why, why_len);

	if (rc) {
		mig_dst_refuse(d, why);
		return rc;
	}
	d->ndev = d->h.xen ? 0 : /* the guest reconnects its own devices */
			     mig_config_devices(&d->h.dc, d->devs);
	mig_outcome_set(d->svc, d->h.id, "receiving");
	rc = dst_admit(d, why, why_len);
	if (!rc)
		rc = mig_storage_check(d->svc, &d->h.dc, why, why_len);
	if (rc)
		pvm_warn("migration %.8s from '%s' (%s): refused: %s", d->h.id,
			 pvm_peer_cn(pvm_channel_peer_id(d->ch)),
			 pvm_peer_addr(pvm_channel_peer_id(d->ch)), why);
	else if (name_taken(hv, d->h.name)) {
		snprintf(why, why_len,
			 "a domain named '%s' already exists on the destination",
			 d->h.name);
		rc = -EEXIST;
	} else if (d->h.xen != pvm_hv_is_xen(hv)) {
		snprintf(why, why_len, "the source is %sa Xen host, this one %s",
			 d->h.xen ? "" : "not ", pvm_hv_is_xen(hv) ? "is" : "is not");
		rc = -EPROTO;
	}
	if (rc) {
		mig_dst_refuse(d, why);
		return rc;
	}
	return d->h.xen ? mig_dest_xen_receive(d, why, why_len) :
			  dst_create(d, why, why_len);
}

/* LOADING, STATE in: apply it, then READY. */
static int dst_state(struct mig_dst *d, const struct mig_msg_in *msg,
		     char *why, size_t why_len)
{
	struct pvm_kv reply;
	int rc = mig_state_apply(d, msg->raw, msg->raw_len, why, why_len);

	if (rc) {
		mig_dst_refuse(d, why);
		return rc;
	}
	rc = mig_dst_go(d, MIG_DST_LOADING, MIG_DST_READY);
	if (rc)
		return rc;
	pvm_kv_init(&reply);
	if (d->verified)
		pvm_kv_add(&reply, "memory", "verified");
	rc = mig_send_kv(d->ch, MIG_READY, &reply);
	pvm_kv_dispose(&reply);
	if (rc) {
		snprintf(why, why_len, "lost the source: %s", strerror(-rc));
		return -ENOTCONN;
	}
	if (mig_fault_point("dst-die-after-ready"))
		_exit(9);
	return 0;
}

/* RUNNING's fields: how the devices came back, and since when it ran. */
static void dst_running_reply(struct mig_dst *d, const uint64_t *served0,
			      uint64_t t_unpause, struct pvm_kv *reply)
{
	struct pvm_hv *hv = d->svc->hv;
	char dwhy[200] = "";
	double first_io = 0;

	/* Modern frontends re-handshake now; legacy ones were reconnected
	 * while paused. */
	if (d->ndev) {
		uint64_t t0 = pvm_now_ns();
		int rc = pvm_pvq_wait_connected(hv, d->domid, d->devs, d->ndev,
						RECONNECT_WAIT_MS, dwhy,
						sizeof(dwhy));

		pvm_kv_add(reply, "devices", "%s", rc ? dwhy : "all reconnected");
		if (!rc)
			pvm_kv_add(reply, "reconnect_ms", "%.2f",
				   (double)(pvm_now_ns() - t0) / 1e6);
		/* Bounded short: an idle guest does no I/O and has nothing
		 * to measure. */
		if (!rc && pvm_pvq_wait_first_io(hv, d->domid, d->devs, d->ndev,
						 served0, t_unpause,
						 FIRST_IO_WAIT_MS, &first_io) == 0)
			pvm_kv_add(reply, "first_io_ms", "%.2f", first_io);
		if (rc)
			pvm_warn("migration %.8s: %s", d->h.id, dwhy);
	}
	/* The guest ran from the unpause on: the source takes this off the
	 * pause it measured (downtime_ms). */
	pvm_kv_add(reply, "running_for_ms", "%.2f",
		   (double)(pvm_now_ns() - t_unpause) / 1e6);
}

/* READY, UNPAUSE in: claim the outcome, unpause (RUNNING), answer. */
static int dst_unpause(struct mig_dst *d, char *why, size_t why_len)
{
	struct pvm_hv *hv = d->svc->hv;
	uint64_t served0[PVM_PVQ_MAX_DEVICES] = { 0 }, t_unpause;
	struct mig_msg_in msg;
	struct pvm_kv reply;
	char st[16], w[64];
	int rc;

	mig_outcome_decide(d->svc, d->h.id, "running", st, sizeof(st));
	if (strcmp(st, "running")) {
		/* The source asked (QUERY) first and was told "aborted": it
		 * has resumed its copy. */
		snprintf(why, why_len, "UNPAUSE after the source was told '%s'", st);
		mig_dst_refuse(d, why);
		return -ESTALE;
	}
	/* What each backend had served, for "first I/O completed" after the
	 * unpause. */
	pvm_pvq_served(hv, d->domid, d->devs, d->ndev, served0);
	t_unpause = pvm_now_ns();
	rc = hv->ops->domain_unpause(hv, d->domid);
	if (rc) {
		snprintf(why, why_len, "cannot unpause: %s", strerror(-rc));
		mig_outcome_set(d->svc, d->h.id, "aborted");
		mig_dst_refuse(d, why);
		return rc;
	}
	mig_dst_go(d, MIG_DST_READY, MIG_DST_RUNNING);
	pvm_info("migration %.8s: domain %u '%s' runs here", d->h.id, d->domid,
		 d->h.name);
	pvm_kv_init(&reply);
	dst_running_reply(d, served0, t_unpause, &reply);
	mig_send_kv(d->ch, MIG_RUNNING, &reply);
	pvm_kv_dispose(&reply);
	/* Wait for the clean close; an error now changes nothing: the guest
	 * is ours. */
	mig_msg_init(&msg);
	while (mig_recv(d->ch, &msg, w, sizeof(w)) >= 0)
		;
	mig_msg_dispose(&msg);
	return 0;
}

/* LOADING or READY: the messages up to the hand-over, each checked
 * against the state; 0 once the guest runs here. */
static int dst_handover(struct mig_dst *d, char *why, size_t why_len)
{
	struct mig_msg_in msg;
	int type, rc = 0;

	mig_msg_init(&msg);
	while (!rc) {
		type = mig_dst_recv(d, &msg, why, why_len);
		if (type < 0) {
			rc = type;
		} else if (type == MIG_ROUND) {
			/* The transport delivered every page of the round
			 * before this message: say so, so the source measures
			 * the round end to end and pauses with nothing in
			 * flight. */
			rc = mig_send_simple(d->ch, MIG_ROUND_ACK);
			if (rc) {
				snprintf(why, why_len, "lost the source: %s",
					 strerror(-rc));
				rc = -ENOTCONN;
			}
		} else if (type == MIG_ABORT) {
			snprintf(why, why_len, "source aborted: %s",
				 pvm_kv_get(&msg.kv, "error") ?: "no reason");
			rc = -ECONNABORTED;
		} else if (type == MIG_STATE) {
			rc = dst_state(d, &msg, why, why_len);
		} else if (type == MIG_UNPAUSE) {
			rc = dst_unpause(d, why, why_len);
			break;
		}
	}
	mig_msg_dispose(&msg);
	return rc;
}

/* OPEN, QUERY in: what became of the migration it names. */
static void dst_query(struct mig_dst *d, const struct pvm_kv *kv)
{
	const char *id = pvm_kv_get(kv, "id");
	struct pvm_kv reply;
	char state[16];

	mig_outcome_decide(d->svc, id ? id : "", "aborted", state, sizeof(state));
	pvm_kv_init(&reply);
	pvm_kv_add(&reply, "state", "%s", state);
	mig_send_kv(d->ch, MIG_OUTCOME, &reply);
	pvm_kv_dispose(&reply);
}

/* Cuts the channel after LINGER_MS unless the source closed it first. */
struct linger {
	struct pvm_channel *ch;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

static void *linger_main(void *arg)
{
	struct linger *l = arg;
	struct timespec until;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += LINGER_MS / 1000;
	pthread_mutex_lock(&l->lock);
	while (!l->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&l->cond, &l->lock, &until);
	if (!l->done)
		pvm_channel_shutdown(l->ch);
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/*
 * After refusing: a source busy sending (pages, or libxenguest's stream,
 * which it reads nothing during) learns of the ABORT only once it reads;
 * closing at once would fail its sends first ("Broken pipe") and lose the
 * reason. So read and drop what still comes until the source closes the
 * channel, for LINGER_MS at most.
 */
static void dst_linger(struct mig_dst *d)
{
	struct linger l = { .ch = d->ch, .lock = PTHREAD_MUTEX_INITIALIZER,
			    .cond = PTHREAD_COND_INITIALIZER };
	struct mig_msg_in msg;
	pthread_t t;
	char w[64];

	if (pthread_create(&t, NULL, linger_main, &l))
		return;
	mig_msg_init(&msg);
	for (;;) {
		int rc = mig_recv(d->ch, &msg, w, sizeof(w));

		if (rc < 0 && (rc != -EBADMSG || pvm_channel_error(d->ch, NULL)))
			break;
	}
	mig_msg_dispose(&msg);
	pthread_mutex_lock(&l.lock);
	l.done = true;
	pthread_cond_signal(&l.cond);
	pthread_mutex_unlock(&l.lock);
	pthread_join(t, NULL);
}

/* Whatever happened: the copy here goes unless it runs, the outcome is
 * kept, and the channel is closed. */
static void dst_end(struct mig_dst *d, const char *why)
{
	struct pvm_hv *hv = d->svc->hv;
	int st = atomic_load(&d->state);

	if (d->refused)
		dst_linger(d);
	/* Join the receive threads first: they write into d->mem. */
	pvm_channel_close(d->ch);
	d->ch = NULL;
	pvm_xchunk_rx_dispose(&d->xrx);
	if (d->mem)
		hv->ops->unmap_pages(hv, d->mem, d->h.nr_pages);
	if (dst_has_copy(st)) {
		hv->ops->domain_destroy(hv, d->domid);
		svc_config_drop(d->svc, d->domid);
		pvm_warn("migration %.8s: '%s' not received (%s); destination copy destroyed",
			 d->h.id, d->h.name, why);
	}
	if (st != MIG_DST_RUNNING && d->h.id[0]) {
		mig_outcome_set(d->svc, d->h.id, "aborted");
		mig_dst_go(d, (enum mig_dst_state)st, MIG_DST_ABORTED);
	}
}

void *mig_dest_main(void *arg)
{
	struct mig_dst *d = arg;
	struct pvm_service *s = d->svc;
	struct mig_msg_in msg;
	char why[300] = "";
	int type, rc = 0;

	mig_msg_init(&msg);
	type = mig_dst_recv(d, &msg, why, sizeof(why));
	if (type == MIG_TUNNEL) {
		if (mig_peer_may(d, PVM_RIGHT_TUNNEL, "open a tunnel"))
			tunnel_serve(s, &d->ch, &msg.kv, &d->tun);
	} else if (type == MIG_QUERY) {
		if (mig_peer_may(d, PVM_RIGHT_QUERY, "query a migration"))
			dst_query(d, &msg.kv);
	} else if (type == MIG_HELLO) {
		if (mig_peer_may(d, PVM_RIGHT_MIGRATE_IN, "send a guest")) {
			rc = dst_hello(d, &msg.kv, why, sizeof(why));
			if (!rc)
				rc = dst_handover(d, why, sizeof(why));
		}
	}
	(void)rc;
	mig_msg_dispose(&msg);
	dst_end(d, why);
	pthread_mutex_lock(&s->lock);
	s->peer_channels--;
	if (d->counted) {
		s->incoming--;
		s->incoming_bytes -= d->admitted_bytes;
	}
	pthread_mutex_unlock(&s->lock);
	free(d);
	return NULL;
}
