/*
 * Live migration between two pvmigd services (docs/migration-protocol.md).
 *
 * Source (job thread started by `pvmig migrate`):
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
 * Destination (job thread per accepted channel):
 *
 *   HELLO -> create the domain paused, map its memory -> ACCEPT ->
 *   pages (transport on_pages, written at their pfn) and ROUND messages ->
 *   STATE (vCPU, event channels, grants) -> READY -> UNPAUSE -> unpause ->
 *   RUNNING. Any failure or a lost channel before UNPAUSE destroys the
 *   destination copy; the outcome ("running"/"aborted") is kept by id.
 *
 * On Xen the guest travels as libxenguest's stream instead (x86 PV: page
 * tables canonicalised, see docs/xen.md): the source runs xc_domain_save
 * (live, its suspend and this file's policy) into a pipe, a thread cuts
 * what comes out into chunks of PVM_XCHUNK_PAGES page slots sent as page
 * batches (lz4, zero pages elided, several connections) each closed by
 * M_XCHUNK {bytes}; the destination writes each chunk, in order, into the
 * pipe libxl_domain_create_restore reads (domain created paused from the
 * config chunk, M_XCONFIG, sent first). M_XEND ends the stream; READY,
 * UNPAUSE, RUNNING and the rollback are as above, the source copy being
 * suspended instead of paused (resumed with suspend-cancel on rollback).
 *
 * Messages on the channel's control stream: one type byte, then either a
 * key=value record (control-protocol encoding without its length prefix)
 * or, for STATE, tagged sections.
 */
#include "migrate/internal.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcntl.h>
#include <signal.h>

#include "checkpoint/checkpoint.h"
#include "hv/sim/xenstored/xenstored.h"
#include "hv/xen/xen.h"
#include "pvquiesce/pvquiesce.h"
#include "transport/transport.h"

enum msg_type {
	M_HELLO = 'H',   /* src -> dst: id, name, nr_pages, vcpus, image */
	M_ACCEPT = 'A',  /* dst -> src: domid */
	M_ROUND = 'E',   /* src -> dst: end of a pre-copy round */
	M_ROUND_ACK = 'e', /* dst -> src: every page of that round is in */
	M_STATE = 'S',   /* src -> dst: tagged sections */
	M_READY = 'D',   /* dst -> src: restored, paused */
	M_UNPAUSE = 'U', /* src -> dst */
	M_RUNNING = 'G', /* dst -> src */
	M_ABORT = 'X',   /* either: error */
	M_QUERY = 'Q',   /* src -> dst on a new channel: id */
	M_OUTCOME = 'O', /* dst -> src: state */
	/* Xen (x86 PV): libxenguest's stream instead of pages and STATE */
	M_XCONFIG = 'c', /* src -> dst: chunk holding the libxl JSON config */
	M_XCHUNK = 'b',  /* src -> dst: chunk of the libxl stream: bytes */
	M_XEND = 'z',    /* src -> dst: the stream is complete */
};

enum state_tag {
	ST_VCPU = 1,   /* one per vCPU, in order */
	ST_EVTCHN = 2,
	ST_GRANT = 3,
	ST_MEM_SHA256 = 4, /* SHA-256 of all guest memory, while paused */
	ST_XENSTORE = 5,   /* the domain's xenstore subtree and watches */
	ST_DEVICES = 6,    /* PV backends' captured ring state (pvquiesce) */
};

#define RECONNECT_WAIT_MS 10000u
#define FIRST_IO_WAIT_MS 100u /* then "first_io_ms" is left out */

/*
 * Fault injection for tests: PVMIG_FAULT in pvmigd's environment names one
 * point where the hand-over breaks as a cut link or a dead host would:
 * src-cut-before-unpause, src-cut-after-unpause (the source's channel is
 * shut down there), dst-die-after-ready (the destination pvmigd exits at
 * once after READY, as a crashed host).
 */
static bool fault_point(const char *name)
{
	const char *f = getenv("PVMIG_FAULT");

	return f && !strcmp(f, name);
}

#define HOLD_MAX_MS 30000u

/*
 * PVMIG_HOLD=POINT:FILE in the source pvmigd's environment: at POINT the
 * migration creates FILE.held and waits until FILE exists (30 s at most),
 * so that a test can cut the link or kill a host at exactly that moment.
 * Points: src-precopy (connected, the destination domain made, before
 * round 0), src-stop-copy (paused and quiesced, before the last pages),
 * src-after-ready (READY in, before UNPAUSE), src-after-running (RUNNING
 * in, before the paused source copy is destroyed).
 */
static void hold_point(const char *name)
{
	const char *h = getenv("PVMIG_HOLD");
	size_t n = strlen(name);
	char held[512];
	int fd;

	if (!h || strncmp(h, name, n) || h[n] != ':' || !h[n + 1])
		return;
	snprintf(held, sizeof(held), "%s.held", h + n + 1);
	fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	pvm_warn("PVMIG_HOLD: held at %s until %s exists", name, h + n + 1);
	for (unsigned ms = 0; ms < HOLD_MAX_MS && access(h + n + 1, F_OK); ms += 10)
		usleep(10000);
}

#define MAP_BATCH 1024u
#define ACCEPT_WAIT_MS 1000u
#define QUERY_TRIES 10u

/*
 * SHA-256 over every page of a paused domain, in pfn order, through
 * map_pages(READ): what --verify-memory compares on both ends.
 */
static int memory_digest(struct pvm_hv *hv, uint32_t domid, uint64_t nr_pages,
			 uint8_t out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint64_t pfns[MAP_BATCH];
	int errs[MAP_BATCH];
	unsigned int len = 32;
	int rc = 0;

	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	for (uint64_t base = 0; base < nr_pages && !rc; base += MAP_BATCH) {
		size_t n = nr_pages - base < MAP_BATCH ? nr_pages - base : MAP_BATCH;
		void *addr;

		for (size_t i = 0; i < n; i++)
			pfns[i] = base + i;
		rc = hv->ops->map_pages(hv, domid, PVM_HV_MAP_READ, pfns, n, errs,
					&addr);
		if (rc)
			break;
		for (size_t i = 0; i < n && !rc; i++)
			rc = errs[i];
		if (!rc && EVP_DigestUpdate(md, addr, n * PVM_PAGE_SIZE) != 1)
			rc = -EIO;
		hv->ops->unmap_pages(hv, addr, n);
	}
	if (!rc && EVP_DigestFinal_ex(md, out, &len) != 1)
		rc = -EIO;
	EVP_MD_CTX_free(md);
	return rc;
}

static void hex32(const uint8_t d[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- messages ------------------------------------------------------------ */

int send_kv(struct pvm_channel *ch, char type, const struct pvm_kv *kv)
{
	struct pvm_buf b;
	int rc;

	pvm_buf_init(&b, PVM_CTL_FRAME_MAX + 8);
	/* The control encoding minus its length prefix; our type byte
	 * replaces its kind byte. */
	rc = pvm_ctl_encode(PVM_CTL_ITEM, kv, &b);
	if (!rc) {
		b.data[4] = (uint8_t)type;
		rc = pvm_channel_send_msg(ch, b.data + 4, b.len - 4);
	}
	pvm_buf_dispose(&b);
	return rc;
}

static int send_simple(struct pvm_channel *ch, char type)
{
	struct pvm_kv kv;
	int rc;

	pvm_kv_init(&kv);
	rc = send_kv(ch, type, &kv);
	pvm_kv_dispose(&kv);
	return rc;
}

void send_abort(struct pvm_channel *ch, const char *why)
{
	struct pvm_kv kv;

	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "error", "%s", why);
	send_kv(ch, M_ABORT, &kv); /* best effort */
	pvm_kv_dispose(&kv);
}

/*
 * Receives the next message. For key=value types @kv is filled; for STATE
 * the raw body is returned in *raw_out (caller frees). Returns the type
 * (> 0) or a negative errno.
 */
static int recv_msg(struct pvm_channel *ch, struct pvm_kv *kv, void **raw_out,
		    size_t *raw_len)
{
	void *buf;
	size_t len;
	enum pvm_ctl_kind kind;
	int rc, type;

	pvm_kv_dispose(kv);
	if (raw_out)
		*raw_out = NULL;
	rc = pvm_channel_recv_msg(ch, &buf, &len);
	if (rc)
		return rc;
	if (len < 1) {
		free(buf);
		return -EBADMSG;
	}
	type = ((uint8_t *)buf)[0];
	if (type == M_STATE) {
		if (!raw_out) {
			free(buf);
			return -EPROTO;
		}
		memmove(buf, (uint8_t *)buf + 1, len - 1);
		*raw_out = buf;
		*raw_len = len - 1;
		return type;
	}
	((uint8_t *)buf)[0] = PVM_CTL_ITEM;
	rc = pvm_ctl_decode(buf, len, &kind, kv);
	free(buf);
	return rc ? rc : type;
}

/* ---- outcomes (destination) ------------------------------------------------ */

static void outcome_set(struct pvm_service *s, const char *id, const char *state)
{
	struct mig_outcome *o = NULL;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < MIG_OUTCOMES; i++)
		if (!strcmp(s->outcomes[i].id, id))
			o = &s->outcomes[i];
	if (!o) {
		o = &s->outcomes[s->next_outcome];
		s->next_outcome = (s->next_outcome + 1) % MIG_OUTCOMES;
		snprintf(o->id, sizeof(o->id), "%s", id);
	}
	snprintf(o->state, sizeof(o->state), "%s", state);
	pthread_mutex_unlock(&s->lock);
}

/*
 * The destination's decision point, under the service lock so that a QUERY
 * and a late UNPAUSE cannot both win: @to_state is set only if the outcome
 * is still "receiving". QUERY fences with "aborted" (the source asked, so
 * it will not hand over on this channel any more); UNPAUSE claims "running".
 * Returns the state after the call in @out.
 */
static void outcome_decide(struct pvm_service *s, const char *id,
			   const char *to_state, char *out, size_t len)
{
	snprintf(out, len, "unknown");
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < MIG_OUTCOMES; i++) {
		struct mig_outcome *o = &s->outcomes[i];

		if (!o->id[0] || strcmp(o->id, id))
			continue;
		if (!strcmp(o->state, "receiving"))
			snprintf(o->state, sizeof(o->state), "%s", to_state);
		snprintf(out, len, "%s", o->state);
	}
	pthread_mutex_unlock(&s->lock);
}

static void stats_keep(struct pvm_service *s, const struct pvm_kv *kv)
{
	struct pvm_kv *slot;

	pthread_mutex_lock(&s->lock);
	slot = &s->last_stats[s->next_stats];
	s->next_stats = (s->next_stats + 1) % PVM_ARRAY_SIZE(s->last_stats);
	pvm_kv_dispose(slot);
	for (size_t i = 0; i < kv->n; i++)
		pvm_kv_add(slot, kv->key[i], "%s", kv->val[i]);
	pthread_mutex_unlock(&s->lock);
}

int h_migrations(struct req *r)
{
	struct pvm_service *s = r->svc;
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	for (unsigned k = 0; k < PVM_ARRAY_SIZE(s->last_stats) && !rc; k++) {
		unsigned i = (s->next_stats + k) % PVM_ARRAY_SIZE(s->last_stats);

		if (s->last_stats[i].n)
			rc = pvm_ctl_send(r->fd, PVM_CTL_ITEM, &s->last_stats[i]);
	}
	pthread_mutex_unlock(&s->lock);
	return reply_result(r, 0, NULL, NULL);
}

/* ---- destination ------------------------------------------------------------ */

struct dest {
	struct pvm_service *svc;
	struct pvm_channel *ch;
	uint32_t domid;
	bool created;
	uint8_t *mem;       /* whole guest, mapped WRITE */
	uint64_t nr_pages;
	_Atomic uint64_t pages_in;
	char id[33];
	char name[64];
	uint64_t vcpus;
	struct dom_config dc;
	bool verified;
	uint32_t src_domid;
	bool keep_domid; /* devices reconnect transparently (HELLO pv_mode) */
	struct pvm_pvq_device devs[PVM_PVQ_MAX_DEVICES];
	size_t ndev;
	/* Set while the channel is an xl stream tunnel (tunnel.c). */
	struct tunnel *_Atomic tun;
	bool xen;           /* libxenguest's stream (HELLO xen=1) */
	struct pvm_xchunk_rx xrx; /* xen: chunks (xrx.stage NULL: none) */
};

/* ---- Xen: libxenguest's stream in chunks ------------------------------------ */

/* Sends chunk @k of a Xen stream: its pages, then @type {bytes}. */
static int xsend_chunk(struct pvm_channel *ch, char type, uint64_t k,
		       const uint8_t *buf, size_t len)
{
	struct pvm_kv kv;
	int rc = pvm_xchunk_send_pages(ch, k, buf, len);

	if (rc)
		return rc;
	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "bytes", "%zu", len);
	rc = send_kv(ch, type, &kv);
	pvm_kv_dispose(&kv);
	return rc;
}

/* The chunk a M_XCONFIG/M_XCHUNK message closes; -EBADMSG with @why
 * saying what is wrong with it. */
static int xchunk_take(struct dest *d, const struct pvm_kv *kv,
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

/*
 * After recv_msg failed: true when the channel is fine and the message
 * itself was bad (malformed, or a STATE where a key=value record
 * belongs), with @why saying so; false for a failed channel.
 */
static bool msg_refused(struct pvm_channel *ch, int type, char *why,
			size_t why_len)
{
	const char *cwhy;

	if (pvm_channel_error(ch, &cwhy) || (type != -EPROTO && type != -EBADMSG))
		return false;
	snprintf(why, why_len, "%s", type == -EPROTO ?
		 "a STATE message has no place in libxenguest's stream" :
		 "a malformed message (not a key=value record) in the stream");
	return true;
}

/* The destination's libxl restore, on its own thread: it reads the pipe
 * the channel's chunks are written into. */
struct xrestore {
	struct pvm_hv *hv;
	char *json;
	int fd;
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

/*
 * Destination, xen: from HELLO to READY sent. 0 with the domain restored
 * and paused (d->created, d->domid); -ENOTCONN when the channel was lost
 * (@why says so); another negative errno after telling the source why.
 */
static int dest_xen_receive(struct dest *d, char *why, size_t why_len)
{
	struct xrestore x = { .hv = d->svc->hv, .fd = -1 };
	struct pvm_kv kv;
	const uint8_t *at;
	size_t len;
	int fds[2], wfd = -1, type, rc = 0;
	sigset_t pipe_set;

	/* A libxl that stops reading makes our write fail (EPIPE) instead
	 * of killing pvmigd. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
	pvm_kv_init(&kv);
	if (pvm_xchunk_rx_init(&d->xrx)) {
		snprintf(why, why_len, "out of memory");
		rc = -ENOMEM;
		goto out_abort;
	}
	pvm_kv_add(&kv, "domid", "0");
	if (send_kv(d->ch, M_ACCEPT, &kv))
		goto out_lost;
	type = recv_msg(d->ch, &kv, NULL, NULL);
	if (type < 0 && msg_refused(d->ch, type, why, why_len)) {
		rc = -EPROTO;
		goto out_abort;
	}
	if (type < 0)
		goto out_lost;
	if (type != M_XCONFIG) {
		snprintf(why, why_len, "expected the domain's config, got '%c'",
			 type);
		rc = -EPROTO;
		goto out_abort;
	}
	if (xchunk_take(d, &kv, &at, &len, why, why_len)) {
		rc = -EBADMSG;
		goto out_abort;
	}
	if (!len || memchr(at, '\0', len)) {
		snprintf(why, why_len, "the domain's config (chunk 0, %zu bytes) is %s",
			 len, len ? "not text (a NUL inside)" : "empty");
		rc = -EBADMSG;
		goto out_abort;
	}
	x.json = strndup((const char *)at, len);
	if (!x.json || pipe2(fds, O_CLOEXEC)) {
		snprintf(why, why_len, "out of memory or file descriptors");
		rc = -ENOMEM;
		goto out_abort;
	}
	x.fd = fds[0];
	wfd = fds[1];
	rc = -pthread_create(&x.thread, NULL, xrestore_main, &x);
	if (rc) {
		close(fds[0]);
		x.fd = -1;
		snprintf(why, why_len, "cannot start the restore: %s",
			 strerror(-rc));
		goto out_abort;
	}
	x.started = true;
	pvm_info("migration %.8s: receiving '%s' as libxenguest's stream",
		 d->id, d->name);
	for (;;) {
		type = recv_msg(d->ch, &kv, NULL, NULL);
		if (type < 0 && msg_refused(d->ch, type, why, why_len)) {
			rc = -EPROTO;
			goto out_abort;
		}
		if (type < 0)
			goto out_lost;
		if (type == M_ABORT) {
			snprintf(why, why_len, "source aborted: %s",
				 pvm_kv_get(&kv, "error") ?: "no reason");
			rc = -ECONNABORTED;
			goto out; /* no need to answer */
		}
		if (type == M_XEND)
			break;
		if (type != M_XCHUNK) {
			snprintf(why, why_len, "unexpected message '%c' in the stream",
				 type);
			rc = -EPROTO;
			goto out_abort;
		}
		if (xchunk_take(d, &kv, &at, &len, why, why_len)) {
			rc = -EBADMSG;
			goto out_abort;
		}
		rc = pvm_write_all(wfd, at, len);
		if (rc) {
			/* libxl stopped reading: its failure says why. */
			close(wfd);
			wfd = -1;
			pthread_join(x.thread, NULL);
			x.started = false;
			snprintf(why, why_len, "libxl stopped reading the stream: %s",
				 x.rc ? strerror(-x.rc) : strerror(-rc));
			goto out_abort;
		}
	}
	close(wfd);
	wfd = -1;
	pthread_join(x.thread, NULL);
	x.started = false;
	if (x.rc) {
		rc = x.rc;
		snprintf(why, why_len, "libxl could not restore it: %s (see pvmigd's log on the destination)",
			 strerror(-rc));
		goto out_abort;
	}
	d->domid = x.domid;
	d->created = true;
	pvm_kv_dispose(&kv);
	if (send_kv(d->ch, M_READY, &kv))
		goto out_lost;
	if (fault_point("dst-die-after-ready"))
		_exit(9);
	rc = 0;
	goto out;

out_lost:
	{
		const char *cwhy;

		pvm_channel_error(d->ch, &cwhy);
		snprintf(why, why_len, "lost the source: %s",
			 cwhy && *cwhy ? cwhy : "channel closed");
	}
	rc = -ENOTCONN;
	goto out;
out_abort:
	send_abort(d->ch, why);
	if (!rc)
		rc = -EIO;
out:
	if (wfd >= 0)
		close(wfd); /* EOF: a waiting libxl fails and cleans up */
	if (x.started)
		pthread_join(x.thread, NULL);
	if (x.started && !x.rc && rc) {
		/* restored after all, but not handed over */
		d->domid = x.domid;
		d->created = true;
	}
	free(x.json);
	pvm_kv_dispose(&kv);
	return rc;
}

size_t mig_config_devices(const struct dom_config *dc,
			  struct pvm_pvq_device *out)
{
	size_t n = 0;

	for (uint32_t i = 0; i < dc->nr_disks && n < PVM_PVQ_MAX_DEVICES; i++) {
		int id = pvm_pvq_vdev_devid(dc->disks[i].vdev);

		if (id >= 0)
			out[n++] = (struct pvm_pvq_device){ PVM_PVQ_VBD, (uint32_t)id };
	}
	for (uint32_t i = 0; i < dc->nr_nics && n < PVM_PVQ_MAX_DEVICES; i++)
		out[n++] = (struct pvm_pvq_device){ PVM_PVQ_VIF, i };
	return n;
}

/* Transport receive threads: write each page at its pfn. */
static int dest_pages(void *ctx, const uint64_t *pfns,
		      const uint8_t *const *pages, size_t n)
{
	struct dest *d = ctx;
	struct tunnel *t = atomic_load(&d->tun);

	if (t)
		return tunnel_pages(t, pfns, pages, n);
	if (d->xrx.stage)
		return pvm_xchunk_rx_pages(&d->xrx, pfns, pages, n);
	if (!d->mem)
		return -EPROTO;
	for (size_t i = 0; i < n; i++) {
		if (pfns[i] >= d->nr_pages)
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

static int dest_create_on_main(void *arg)
{
	struct dest *d = arg;
	struct pvm_hv *hv = d->svc->hv;
	struct pvm_hv_domain_config cfg = {
		/* Keep the domid where it is free here: a guest whose drivers
		 * never re-handshake keeps using paths and ACLs that name it
		 * (docs/designs/non-cooperative-migration.md). */
		.domid = d->src_domid && d->src_domid <= PVM_HV_DOMID_MAX ?
				 d->src_domid : PVM_HV_DOMID_ANY,
		.nr_pages = d->nr_pages,
		.nr_vcpus = (uint32_t)d->vcpus,
		.start_paused = true,
		.name = d->name,
	};
	int rc;

	dom_config_to_hv(&d->dc, &cfg);
	rc = hv->ops->domain_create(hv, &cfg, &d->domid);
	if (rc == -EEXIST && !d->keep_domid) {
		cfg.domid = PVM_HV_DOMID_ANY;
		rc = hv->ops->domain_create(hv, &cfg, &d->domid);
	}
	if (!rc) {
		d->dc.domid = d->domid;
		svc_config_put(d->svc, &d->dc);
	}
	return rc;
}

static bool name_taken(struct pvm_hv *hv, const char *name)
{
	struct pvm_hv_dominfo *all = calloc(1024, sizeof(*all));
	size_t n = 0;
	bool taken = false;

	if (!all)
		return true;
	hv->ops->domain_list(hv, all, 1024, &n);
	for (size_t i = 0; i < n; i++)
		taken |= !strcmp(all[i].name, name);
	free(all);
	return taken;
}

/*
 * Applies the STATE sections to the paused destination domain. Sections
 * are collected first and applied in an order that matters:
 *   memory digest                  (memory exactly as received: loading
 *                                   the grant table clears busy bits in
 *                                   guest memory, attached backends write)
 *   vCPUs, event channels, grants  (the frontends' ports and refs exist)
 *   devices                        (legacy: captured backends re-attach;
 *                                   they may serve requests left on the
 *                                   rings at once, which writes memory)
 *   xenstore                       (legacy only: the frontend never writes
 *                                   its nodes again, so the old ones, and
 *                                   its watches, must come along; a modern
 *                                   frontend re-handshakes against the
 *                                   fresh nodes, as on Xen)
 */
static int dest_apply_state(struct dest *d, const uint8_t *p, size_t len,
			    char *why, size_t why_len)
{
	struct pvm_hv *hv = d->svc->hv;
	struct pvm_cursor c;
	uint32_t vcpu = 0;
	const uint8_t *want_digest = NULL, *devstate = NULL, *xsimg = NULL;
	uint32_t devstate_len = 0, xsimg_len = 0;
	bool transparent = false;
	int rc;

	/* Pass 1: find the digest and check the memory as received. */
	pvm_cursor_init(&c, p, len);
	while (pvm_cursor_remaining(&c)) {
		uint32_t tag, slen;
		const uint8_t *body;

		if (pvm_cursor_u32(&c, &tag) || pvm_cursor_u32(&c, &slen) ||
		    pvm_cursor_bytes(&c, slen, &body)) {
			snprintf(why, why_len, "STATE message is truncated");
			return -EBADMSG;
		}
		if (tag == ST_MEM_SHA256) {
			if (slen != 32) {
				snprintf(why, why_len, "memory digest of %u bytes", slen);
				return -EBADMSG;
			}
			want_digest = body;
		}
	}
	if (want_digest) {
		uint8_t got[32];
		char a[65], b[65];

		/* Our mapping is written by the receive threads, which are
		 * done: every page came before this message. */
		rc = memory_digest(hv, d->domid, d->nr_pages, got);
		if (rc) {
			snprintf(why, why_len, "cannot digest the received memory: %s",
				 strerror(-rc));
			return rc;
		}
		if (memcmp(got, want_digest, 32)) {
			hex32(want_digest, a);
			hex32(got, b);
			snprintf(why, why_len,
				 "memory differs from the source's (sha256 %.16s... here %.16s...)",
				 a, b);
			return -EIO;
		}
		d->verified = true;
	}

	/* Pass 2: load the state. */
	pvm_cursor_init(&c, p, len);
	while (pvm_cursor_remaining(&c)) {
		uint32_t tag, slen;
		const uint8_t *body;

		if (pvm_cursor_u32(&c, &tag) || pvm_cursor_u32(&c, &slen) ||
		    pvm_cursor_bytes(&c, slen, &body))
			return -EBADMSG;
		uint64_t t0 = pvm_now_ns();

		switch (tag) {
		case ST_VCPU:
			rc = hv->ops->vcpu_context_set(hv, d->domid, vcpu++,
						       body, slen);
			break;
		case ST_EVTCHN:
			rc = hv->ops->evtchn_state_set(hv, d->domid, body, slen);
			break;
		case ST_GRANT:
			rc = hv->ops->grant_state_set(hv, d->domid, body, slen);
			break;
		case ST_XENSTORE:
			xsimg = body;
			xsimg_len = slen;
			rc = 0;
			break;
		case ST_DEVICES:
			devstate = body;
			devstate_len = slen;
			rc = 0;
			break;
		case ST_MEM_SHA256:
			rc = 0;
			break;
		default:
			snprintf(why, why_len, "STATE section %u unknown", tag);
			return -EBADMSG;
		}
		pvm_debug("migration %.8s: state section %u loaded in %.2f ms", d->id,
			  tag, (double)(pvm_now_ns() - t0) / 1e6);
		if (rc) {
			snprintf(why, why_len, "cannot load state section %u: %s",
				 tag, strerror(-rc));
			return rc;
		}
	}
	if (devstate) {
		rc = pvm_pvq_reconnect(hv, d->domid,
				       (enum pvm_hv_frontend_gen)d->dc.frontend_gen,
				       PVM_PVQ_MODE_AUTO, devstate, devstate_len,
				       &transparent, why, why_len);
		if (rc)
			return rc;
	}
	/* Re-attached backends: the frontend never rewrites its nodes. */
	if (xsimg && transparent && d->svc->xs) {
		rc = pvm_xs_import_domain(d->svc->xs, (uint16_t)d->domid, xsimg,
					  xsimg_len);
		if (rc) {
			snprintf(why, why_len, "cannot import the domain's xenstore nodes: %s",
				 strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static void *dest_main(void *arg)
{
	struct dest *d = arg;
	struct pvm_service *s = d->svc;
	struct pvm_hv *hv = s->hv;
	struct pvm_kv kv, reply;
	uint64_t *pfns = NULL;
	int *errs = NULL;
	char why[300] = "";
	bool running = false;
	uint64_t served0[PVM_PVQ_MAX_DEVICES] = { 0 }, t_unpause = 0;
	double first_io = 0;
	int type, rc;

	pvm_kv_init(&kv);
	pvm_kv_init(&reply);
	type = recv_msg(d->ch, &kv, NULL, NULL);
	if (type == M_TUNNEL) {
		tunnel_serve(s, &d->ch, &kv, &d->tun);
		goto out;
	}
	if (type == M_QUERY) {
		const char *id = pvm_kv_get(&kv, "id");
		char state[16];

		outcome_decide(s, id ? id : "", "aborted", state, sizeof(state));
		pvm_kv_add(&reply, "state", "%s", state);
		send_kv(d->ch, M_OUTCOME, &reply);
		goto out;
	}
	if (type != M_HELLO) {
		snprintf(why, sizeof(why), "expected HELLO, got %s",
			 type < 0 ? strerror(-type) : "another message");
		goto out;
	}
	{
		const char *id = pvm_kv_get(&kv, "id");
		const char *name = pvm_kv_get(&kv, "name");
		const char *cwhy = NULL;

		if (!id || strlen(id) != 32 || !name || !*name ||
		    strlen(name) >= sizeof(d->name) ||
		    pvm_kv_get_u64(&kv, "nr_pages", &d->nr_pages) ||
		    pvm_kv_get_u64(&kv, "vcpus", &d->vcpus) ||
		    d->nr_pages == 0 || d->nr_pages > (1ull << 36) ||
		    d->vcpus == 0 || d->vcpus > 64) {
			snprintf(why, sizeof(why), "HELLO is malformed");
			send_abort(d->ch, why);
			goto out;
		}
		snprintf(d->id, sizeof(d->id), "%s", id);
		snprintf(d->name, sizeof(d->name), "%s", name);
		if (dom_config_from_kv(&kv, &d->dc, &cwhy)) {
			snprintf(why, sizeof(why), "HELLO: %s", cwhy);
			send_abort(d->ch, why);
			goto out;
		}
		{
			uint64_t v = 0;

			if (pvm_kv_get_u64(&kv, "domid", &v) == 0 && v <= PVM_HV_DOMID_MAX)
				d->src_domid = (uint32_t)v;
			d->keep_domid = d->src_domid && pvm_kv_get(&kv, "pv_mode") &&
					!strcmp(pvm_kv_get(&kv, "pv_mode"), "transparent");
		}
		d->ndev = mig_config_devices(&d->dc, d->devs);
		d->xen = pvm_kv_get(&kv, "xen") != NULL;
		if (d->xen)
			d->ndev = 0; /* the guest reconnects its own devices */
	}
	outcome_set(s, d->id, "receiving");
	if (name_taken(hv, d->name)) {
		snprintf(why, sizeof(why),
			 "a domain named '%s' already exists on the destination",
			 d->name);
		send_abort(d->ch, why);
		goto out;
	}
	if (d->xen != pvm_hv_is_xen(hv)) {
		snprintf(why, sizeof(why), "the source is %sa Xen host, this one %s",
			 d->xen ? "" : "not ", pvm_hv_is_xen(hv) ? "is" : "is not");
		send_abort(d->ch, why);
		goto out;
	}
	if (d->xen) {
		rc = dest_xen_receive(d, why, sizeof(why));
		if (rc == -ENOTCONN)
			goto out_lost_why;
		if (rc)
			goto out;
		goto handover;
	}
	rc = svc_on_main(s, dest_create_on_main, d);
	if (rc == -EEXIST && d->keep_domid) {
		/* Before anything is paused: the source's guest runs on. */
		snprintf(why, sizeof(why),
			 "its PV devices reconnect transparently, which needs its domid %u, and domid %u is taken on the destination",
			 d->src_domid, d->src_domid);
		send_abort(d->ch, why);
		goto out;
	}
	if (rc) {
		snprintf(why, sizeof(why), "cannot create the domain: %s",
			 strerror(-rc));
		send_abort(d->ch, why);
		goto out;
	}
	d->created = true;
	pfns = malloc(d->nr_pages * sizeof(*pfns));
	errs = calloc(d->nr_pages, sizeof(*errs));
	if (!pfns || !errs) {
		snprintf(why, sizeof(why), "out of memory");
		send_abort(d->ch, why);
		goto out;
	}
	for (uint64_t i = 0; i < d->nr_pages; i++)
		pfns[i] = i;
	{
		void *mem;

		rc = hv->ops->map_pages(hv, d->domid, PVM_HV_MAP_WRITE, pfns,
					d->nr_pages, errs, &mem);
		if (rc) {
			snprintf(why, sizeof(why), "cannot map the new domain: %s",
				 strerror(-rc));
			send_abort(d->ch, why);
			goto out;
		}
		d->mem = mem;
	}
	pvm_kv_dispose(&kv);
	pvm_kv_add(&kv, "domid", "%u", d->domid);
	rc = send_kv(d->ch, M_ACCEPT, &kv);
	if (rc)
		goto out_lost;
	pvm_info("migration %.8s: receiving '%s' as domain %u (%llu pages)",
		 d->id, d->name, d->domid, (unsigned long long)d->nr_pages);

handover:
	for (;;) {
		void *raw = NULL;
		size_t raw_len = 0;

		type = recv_msg(d->ch, &kv, &raw, &raw_len);
		if (type < 0)
			goto out_lost;
		if (type == M_ROUND) {
			/* The transport delivered every page of the round before
			 * this message: say so, so the source measures the
			 * round end to end and pauses with nothing in flight. */
			if (send_kv(d->ch, M_ROUND_ACK, &kv))
				goto out_lost;
			continue;
		}
		if (type == M_ABORT) {
			snprintf(why, sizeof(why), "source aborted: %s",
				 pvm_kv_get(&kv, "error") ?: "no reason");
			goto out;
		}
		if (type == M_STATE) {
			rc = dest_apply_state(d, raw, raw_len, why, sizeof(why));
			free(raw);
			if (rc) {
				send_abort(d->ch, why);
				goto out;
			}
			pvm_kv_dispose(&reply);
			if (d->verified)
				pvm_kv_add(&reply, "memory", "verified");
			if (send_kv(d->ch, M_READY, &reply))
				goto out_lost;
			if (fault_point("dst-die-after-ready"))
				_exit(9);
			continue;
		}
		if (type == M_UNPAUSE) {
			char st[16];

			outcome_decide(s, d->id, "running", st, sizeof(st));
			if (strcmp(st, "running")) {
				/* The source asked (QUERY) first and was told
				 * "aborted": it has resumed its copy. */
				snprintf(why, sizeof(why), "UNPAUSE after the source was told '%s'", st);
				send_abort(d->ch, why);
				goto out;
			}
			/* What each backend had served, for "first I/O
			 * completed" after the unpause. */
			pvm_pvq_served(hv, d->domid, d->devs, d->ndev, served0);
			t_unpause = pvm_now_ns();
			rc = hv->ops->domain_unpause(hv, d->domid);
			if (rc) {
				snprintf(why, sizeof(why), "cannot unpause: %s",
					 strerror(-rc));
				outcome_set(s, d->id, "aborted");
				send_abort(d->ch, why);
				goto out;
			}
			running = true;
			pvm_info("migration %.8s: domain %u '%s' runs here",
				 d->id, d->domid, d->name);
			{
				char dwhy[200] = "";

				/* Modern frontends re-handshake now; legacy
				 * ones were reconnected while paused. */
				pvm_kv_dispose(&reply);
				if (d->ndev) {
					uint64_t t0 = pvm_now_ns();

					rc = pvm_pvq_wait_connected(hv, d->domid, d->devs,
								    d->ndev,
								    RECONNECT_WAIT_MS,
								    dwhy, sizeof(dwhy));
					pvm_kv_add(&reply, "devices", "%s",
						   rc ? dwhy : "all reconnected");
					if (!rc)
						pvm_kv_add(&reply, "reconnect_ms", "%.2f",
							   (double)(pvm_now_ns() - t0) / 1e6);
					/* Bounded short: an idle guest does no I/O
					 * and has nothing to measure. */
					if (!rc && pvm_pvq_wait_first_io(hv, d->domid, d->devs,
									 d->ndev, served0, t_unpause,
									 FIRST_IO_WAIT_MS, &first_io) == 0)
						pvm_kv_add(&reply, "first_io_ms", "%.2f", first_io);
					if (rc)
						pvm_warn("migration %.8s: %s", d->id, dwhy);
				}
			}
			/* The guest ran from the unpause on: the source takes
			 * this off the pause it measured (downtime_ms). */
			pvm_kv_add(&reply, "running_for_ms", "%.2f",
				   (double)(pvm_now_ns() - t_unpause) / 1e6);
			send_kv(d->ch, M_RUNNING, &reply);
			/* Wait for the clean close; an error now changes
			 * nothing: the guest is ours. */
			while (recv_msg(d->ch, &kv, NULL, NULL) >= 0)
				;
			goto out;
		}
		snprintf(why, sizeof(why), "unexpected message '%c'", type);
		send_abort(d->ch, why);
		goto out;
	}

out_lost:
	{
		const char *cwhy;

		pvm_channel_error(d->ch, &cwhy);
		snprintf(why, sizeof(why), "lost the source: %s",
			 cwhy && *cwhy ? cwhy : "channel closed");
	}
out_lost_why:
out:
	/* Join the receive threads first: they write into d->mem. */
	pvm_channel_close(d->ch);
	d->ch = NULL;
	pvm_xchunk_rx_dispose(&d->xrx);
	if (d->mem)
		hv->ops->unmap_pages(hv, d->mem, d->nr_pages);
	if (!running && d->created) {
		hv->ops->domain_destroy(hv, d->domid);
		svc_config_drop(s, d->domid);
		pvm_warn("migration %.8s: '%s' not received (%s); destination copy destroyed",
			 d->id, d->name, why);
	}
	if (!running && d->id[0])
		outcome_set(s, d->id, "aborted");
	free(pfns);
	free(errs);
	pvm_kv_dispose(&kv);
	pvm_kv_dispose(&reply);
	pthread_mutex_lock(&s->lock);
	s->incoming--;
	pthread_mutex_unlock(&s->lock);
	free(d);
	return NULL;
}

static void *listen_main(void *arg)
{
	struct pvm_service *s = arg;

	while (!svc_stopping(s)) {
		struct pvm_channel_opts o;
		struct dest *d = calloc(1, sizeof(*d));
		int rc;

		if (!d)
			break;
		d->svc = s;
		pvm_channel_opts_defaults(&o);
		o.timeout_ms = s->cfg.timeout_ms;
		o.on_pages = dest_pages;
		o.ctx = d;
		rc = pvm_transport_accept(s->listener, s->tls, &o,
					  ACCEPT_WAIT_MS, &d->ch);
		if (rc) {
			free(d);
			continue;
		}
		pthread_mutex_lock(&s->lock);
		if (s->incoming >= s->cfg.max_migrations) {
			pthread_mutex_unlock(&s->lock);
			send_abort(d->ch, "too many migrations running on the destination");
			pvm_channel_close(d->ch);
			free(d);
			continue;
		}
		s->incoming++;
		pthread_mutex_unlock(&s->lock);
		if (svc_job_start(s, dest_main, d)) {
			pthread_mutex_lock(&s->lock);
			s->incoming--;
			pthread_mutex_unlock(&s->lock);
			pvm_channel_close(d->ch);
			free(d);
		}
	}
	return NULL;
}

static int load_tls(struct pvm_service *s)
{
	struct pvm_tls_files f = { s->cfg.tls_ca, s->cfg.tls_cert,
				   s->cfg.tls_key };

	if (s->tls)
		return 0;
	if (!s->cfg.tls_ca[0] || !s->cfg.tls_cert[0] || !s->cfg.tls_key[0]) {
		pvm_err("migration needs tls-ca, tls-cert and tls-key in pvmigd.conf (make them with pvmig tls-init)");
		return -EINVAL;
	}
	return pvm_tls_ctx_new(&f, &s->tls);
}

int mig_listener_start(struct pvm_service *s)
{
	int rc;

	if (!s->cfg.listen[0])
		return 0;
	rc = load_tls(s);
	if (rc)
		return rc;
	rc = pvm_transport_listen(s->cfg.listen, s->cfg.port, &s->listener);
	if (rc)
		return rc;
	if (pthread_create(&s->listen_thread, NULL, listen_main, s)) {
		pvm_listener_close(s->listener);
		s->listener = NULL;
		return -EAGAIN;
	}
	s->listen_started = true;
	pvm_info("accepting migrations on %s:%u", s->cfg.listen,
		 pvm_listener_port(s->listener));
	return 0;
}

void mig_listener_stop(struct pvm_service *s)
{
	if (s->listen_started) {
		pthread_join(s->listen_thread, NULL);
		s->listen_started = false;
	}
	pvm_listener_close(s->listener);
	s->listener = NULL;
	pvm_tls_ctx_free(s->tls);
	s->tls = NULL;
}

/* ---- source ------------------------------------------------------------------ */

struct source {
	struct source *next;   /* svc->sources, under svc->lock */
	atomic_bool cancel;    /* pvmig migrate --cancel */
	struct pvm_service *svc;
	int fd;                /* the CLI's control connection */
	struct pvm_hv_dominfo dom;
	char host[128];
	uint16_t port;
	char id[33];
	bool live;
	bool compress;
	bool verify;
	bool no_quiesce; /* --no-quiesce: the seed problem, for tests */
	uint32_t suspend_timeout_ms; /* --suspend-timeout; 0: no request */
	uint32_t drain_timeout_ms;   /* --drain-timeout; 0: pvquiesce's */
	enum pvm_pvq_mode pv_mode; /* --pv-mode, then chosen before HELLO */
	uint64_t bw_bytes_s;   /* --bandwidth, on the wire; 0: unlimited */
	uint64_t bw_t0, bw_base; /* when and at which wire count it started */
	unsigned streams;
	struct pvm_policy policy;
	struct dom_config dc;

	struct pvm_channel *ch;
	struct pvm_bitmap dirty;
	bool logdirty;
	bool paused;
	struct pvm_pvq_device devs[PVM_PVQ_MAX_DEVICES];
	size_t ndev;
	bool quiesced;
	struct pvm_buf devstate; /* captured at the pause */
	unsigned throttle;       /* auto-converge level set on the guest (%) */
	unsigned throttle_max;   /* the highest level it had (%) */
	uint64_t t_start, t_pause;
	struct pvm_kv stats;

	/* xen: libxenguest's stream (source_xen_stream) */
	bool xen;
	bool xen_suspended;     /* suspended for the save: resume on rollback */
	int x_suspend_rc;       /* the suspend callback's failure */
	bool x_cancelled;       /* the precopy callback aborted: cancel */
	_Atomic uint64_t xbytes; /* stream bytes sent so far */
	_Atomic uint64_t xread;  /* ... read from libxenguest so far */
	uint64_t xchunks;        /* chunks sent (xchunk_base) */
	uint64_t x_t_round, x_bytes_round, x_prev_dirty;
	uint64_t x_written;      /* libxenguest's pages sent, last round */
	struct pvm_round_stats xr;
	char x_rounds_desc[1024];
	char x_throttles[1024]; /* throttle_per_round */
};

/* Cancel requested: `pvmig migrate --cancel`, or the CLI that asked for
 * the migration went away (Ctrl-C) or sent anything. */
static bool cli_cancelled(struct source *m)
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
	for (struct source *m = s->sources; m; m = m->next) {
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

static void progress(struct source *m, const struct pvm_round_stats *r,
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
static int throttle_set(struct source *m, unsigned pct)
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
static void bw_limit(struct source *m, bool all)
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
static int send_dirty(struct source *m, const struct pvm_bitmap *bm,
		      uint64_t *sent_out)
{
	struct pvm_hv *hv = m->svc->hv;
	uint64_t pfns[MAP_BATCH];
	const uint8_t *ptrs[MAP_BATCH];
	int errs[MAP_BATCH];
	size_t pfn = pvm_bitmap_next_set(bm, 0);
	uint64_t sent = 0;

	while (pfn < bm->nbits) {
		size_t n = 0;
		void *addr;
		int rc;

		while (pfn < bm->nbits && n < MAP_BATCH) {
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
			bw_limit(m, false);
		/* A long round (big guest, slow link) can be cancelled too;
		 * once paused we finish instead. */
		if (!m->paused && cli_cancelled(m))
			return -ECANCELED;
	}
	*sent_out = sent;
	return 0;
}

static int add_section(struct pvm_buf *b, uint32_t tag,
		       int (*get)(struct source *, struct pvm_buf *, uint32_t),
		       struct source *m, uint32_t arg)
{
	size_t at = b->len;
	int rc;

	pvm_buf_put_u32(b, tag);
	pvm_buf_put_u32(b, 0);
	if (b->err)
		return b->err;
	rc = get(m, b, arg);
	if (rc)
		return rc;
	pvm_put_le32(b->data + at + 4, (uint32_t)(b->len - at - 8));
	return b->err;
}

static int get_vcpu(struct source *m, struct pvm_buf *b, uint32_t v)
{
	return m->svc->hv->ops->vcpu_context_get(m->svc->hv, m->dom.domid, v, b);
}

static int get_evtchn(struct source *m, struct pvm_buf *b, uint32_t v)
{
	return m->svc->hv->ops->evtchn_state_get(m->svc->hv, m->dom.domid, b);
}

static int get_grant(struct source *m, struct pvm_buf *b, uint32_t v)
{
	return m->svc->hv->ops->grant_state_get(m->svc->hv, m->dom.domid, b);
}

static int get_xenstore(struct source *m, struct pvm_buf *b, uint32_t v)
{
	struct pvm_buf img;
	int rc;

	/* Its records are 8-aligned from the start of their own buffer. */
	pvm_buf_init(&img, PVM_TP_MSG_MAX / 2);
	rc = pvm_xs_export_domain(m->svc->xs, (uint16_t)m->dom.domid, &img);
	if (!rc)
		pvm_buf_put_bytes(b, img.data, img.len);
	pvm_buf_dispose(&img);
	return rc ? rc : b->err;
}

static int get_devices(struct source *m, struct pvm_buf *b, uint32_t v)
{
	pvm_buf_put_bytes(b, m->devstate.data, m->devstate.len);
	return b->err;
}

static void add_stat(struct source *m, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int send_state(struct source *m)
{
	struct pvm_buf b;
	int rc = 0;

	pvm_buf_init(&b, PVM_TP_MSG_MAX);
	pvm_buf_put_u8(&b, M_STATE);
	for (uint32_t v = 0; v < m->dom.nr_vcpus && !rc; v++)
		rc = add_section(&b, ST_VCPU, get_vcpu, m, v);
	if (!rc)
		rc = add_section(&b, ST_EVTCHN, get_evtchn, m, 0);
	if (!rc)
		rc = add_section(&b, ST_GRANT, get_grant, m, 0);
	if (!rc && m->svc->xs)
		rc = add_section(&b, ST_XENSTORE, get_xenstore, m, 0);
	if (!rc && m->quiesced)
		rc = add_section(&b, ST_DEVICES, get_devices, m, 0);
	if (!rc && m->verify) {
		uint8_t dg[32];
		char hex[65];

		rc = memory_digest(m->svc->hv, m->dom.domid, m->dom.nr_pages, dg);
		if (!rc) {
			pvm_buf_put_u32(&b, ST_MEM_SHA256);
			pvm_buf_put_u32(&b, 32);
			pvm_buf_put_bytes(&b, dg, 32);
			rc = b.err;
			hex32(dg, hex);
			add_stat(m, "memory_sha256", "%s", hex);
		}
	}
	if (!rc)
		rc = pvm_channel_send_msg(m->ch, b.data, b.len);
	pvm_buf_dispose(&b);
	return rc;
}

/* Waits for @want; M_ABORT becomes -ECONNABORTED with its reason. */
static int expect(struct source *m, int want, struct pvm_kv *kv, char *why,
		  size_t why_len)
{
	int type = recv_msg(m->ch, kv, NULL, NULL);

	if (type == want)
		return 0;
	if (type == M_ABORT) {
		snprintf(why, why_len, "destination refused: %s",
			 pvm_kv_get(kv, "error") ?: "no reason");
		return -ECONNABORTED;
	}
	if (type < 0) {
		const char *cwhy;

		pvm_channel_error(m->ch, &cwhy);
		snprintf(why, why_len, "lost the destination: %s",
			 cwhy && *cwhy ? cwhy : strerror(-type));
		return type;
	}
	snprintf(why, why_len, "destination sent '%c', expected '%c'", type, want);
	return -EPROTO;
}

/* After UNPAUSE went out and RUNNING did not come back: ask. */
static int query_outcome(struct source *m, char *state, size_t len)
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
		send_kv(ch, M_QUERY, &kv);
		type = recv_msg(ch, &kv, NULL, NULL);
		if (type == M_OUTCOME && pvm_kv_get(&kv, "state")) {
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

static void add_stat(struct source *m, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void add_stat(struct source *m, const char *key, const char *fmt, ...)
{
	char v[PVM_KV_VALUE_MAX + 1]; /* round_detail is long */
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	pvm_kv_add(&m->stats, key, "%s", v);
}

/* Before the pause: the guest's own suspend (pvquiesce), recorded. */
static int suspend(struct source *m)
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
		add_stat(m, "suspend", "cooperative");
	else
		add_stat(m, "suspend", "non-cooperative: %s", r.why);
	add_stat(m, "suspend_ms", "%.2f", r.ms);
	return 0;
}

/* With the domain paused: drain and capture its PV backends. */
static int quiesce(struct source *m, char *why, size_t why_len)
{
	uint64_t t0 = pvm_now_ns();
	int rc;

	if (!m->ndev)
		return 0;
	if (m->no_quiesce) {
		/* Kept to show what pvquiesce prevents: devices move with no
		 * drain and no state, as a plain memory copy would. */
		add_stat(m, "devices_quiesced", "0 (--no-quiesce)");
		return 0;
	}
	pvm_buf_reset(&m->devstate);
	rc = pvm_pvq_quiesce(m->svc->hv, m->dom.domid, m->devs, m->ndev,
			     m->pv_mode, m->drain_timeout_ms,
			     &m->devstate, why, why_len);
	if (rc)
		return rc;
	m->quiesced = true;
	add_stat(m, "quiesce_ms", "%.2f", (double)(pvm_now_ns() - t0) / 1e6);
	add_stat(m, "devices_quiesced", "%zu", m->ndev);
	return 0;
}

/* ---- source on Xen: libxenguest's stream --------------------------------- */

/* Cuts what libxenguest writes into the pipe into chunks on the channel;
 * the only sender on the channel while xc_domain_save runs. After a send
 * error it keeps draining the pipe so that libxenguest is never stuck. */
struct xpump {
	struct source *m;
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
	if (p->m->bw_bytes_s)
		bw_limit(p->m, false); /* --bandwidth: its clock starts here */
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
				p->rc = xsend_chunk(p->m->ch, M_XCHUNK,
						    p->m->xchunks++, buf, fill);
			if (!p->rc)
				atomic_fetch_add(&p->m->xbytes, fill);
			/* --bandwidth: libxenguest waits on the pipe meanwhile */
			if (!p->rc && p->m->bw_bytes_s)
				bw_limit(p->m, true);
			fill = 0;
		}
	}
	free(buf);
	return NULL;
}

/* libxenguest's suspend callback: the guest's own PV suspend. */
static int xsrc_suspend(void *ctx)
{
	struct source *m = ctx;
	int rc;

	/* Full speed for the suspend (a throttled guest answers it slowly)
	 * and whatever follows; not before: after a STOP, libxenguest still
	 * sends the last dirty set live, which a throttled guest keeps small. */
	if (m->throttle && throttle_set(m, 0))
		pvm_warn("migration %.8s: the throttle stays on '%s'", m->id,
			 m->dom.name);
	m->t_pause = pvm_now_ns();
	rc = pvm_hv_xen_suspend(m->svc->hv, m->dom.domid, m->suspend_timeout_ms);
	m->xen_suspended = rc == 0;
	m->x_suspend_rc = rc;
	return rc;
}

/* libxenguest's precopy_policy: pvmig's convergence policy on its round
 * figures and our measured throughput. */
static int xsrc_precopy(void *ctx, uint32_t round, uint64_t written,
			int64_t dirty)
{
	struct source *m = ctx;
	struct pvm_round_stats *r = &m->xr;
	uint64_t now = pvm_now_ns(), bytes = atomic_load(&m->xread);
	double s = (double)(now - m->x_t_round) / 1e9;
	enum pvm_policy_verdict v;
	const char *verdict_why;

	if (cli_cancelled(m)) {
		m->x_cancelled = true;
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
	v = pvm_policy_decide(&m->policy, r, (now - m->t_start) / 1000000,
			      &verdict_why);
	progress(m, r, pvm_policy_predict_ms(r->dirty_after, r->bytes_per_s),
		 "precopy");
	snprintf(m->x_rounds_desc + strlen(m->x_rounds_desc),
		 sizeof(m->x_rounds_desc) - strlen(m->x_rounds_desc),
		 "%s%u:%llu dirty/%llu ms", r->round ? ", " : "", r->round,
		 (unsigned long long)dirty, (unsigned long long)r->ms);
	if (r->throttle_pct)
		snprintf(m->x_rounds_desc + strlen(m->x_rounds_desc),
			 sizeof(m->x_rounds_desc) - strlen(m->x_rounds_desc),
			 " throttled %u%%", r->throttle_pct);
	snprintf(m->x_throttles + strlen(m->x_throttles),
		 sizeof(m->x_throttles) - strlen(m->x_throttles), "%s%u",
		 r->round ? "," : "", r->throttle_pct);
	pvm_debug("migration %.8s: round %u sent %llu pages (%llu stream bytes) in %llu ms, %llu dirty, throttle %u%%: %s",
		  m->id, r->round, (unsigned long long)r->pages_sent,
		  (unsigned long long)r->wire_bytes, (unsigned long long)r->ms,
		  (unsigned long long)dirty, r->throttle_pct, verdict_why);
	m->x_t_round = now;
	m->x_bytes_round = bytes;
	if (v == PVM_POLICY_CONTINUE)
		return PVM_HV_XEN_PRECOPY_CONTINUE;
	if (v == PVM_POLICY_THROTTLE) {
		int rc = throttle_set(m, pvm_policy_throttle_next(m->throttle));

		if (rc == 0) {
			/* A new regime: both counts start again. */
			r->stuck_rounds = 0;
			r->high_rounds = 0;
			return PVM_HV_XEN_PRECOPY_CONTINUE;
		}
		add_stat(m, "stop_reason", "%s; the guest could not be throttled (%s)",
			 verdict_why, strerror(-rc));
		v = PVM_POLICY_STOP_ANYWAY;
	} else {
		add_stat(m, "stop_reason", "%s", verdict_why);
	}
	add_stat(m, "converged", "%s", v == PVM_POLICY_STOP ? "yes" : "no");
	/* The throttle stays until the suspend (xsrc_suspend). */
	return PVM_HV_XEN_PRECOPY_STOP;
}

/* Source, xen: after ACCEPT, up to M_XEND sent (the guest suspended). */
static int source_xen_stream(struct source *m, char *why, size_t why_len)
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
	rc = xsend_chunk(m->ch, M_XCONFIG, m->xchunks++, (const uint8_t *)json,
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
		rc = pvm_hv_xen_save(hv, m->dom.domid, fds[1], m->live, &cb);
		if (rc && m->x_cancelled) {
			rc = -ECANCELED;
			snprintf(why, why_len, "cancelled");
		} else if (rc && m->x_suspend_rc == -ETIMEDOUT)
			snprintf(why, why_len, "it did not suspend within %u ms (no answer to control/shutdown: no PV suspend support, or it hangs in its suspend path; the request was taken back)",
				 m->suspend_timeout_ms);
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
		rc = send_simple(m->ch, M_XEND);
	add_stat(m, "stream_bytes", "%llu",
		 (unsigned long long)atomic_load(&m->xbytes));
	return rc;
}

static int source_run(struct source *m, char *why, size_t why_len)
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
	rc = load_tls(m->svc);
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
		add_stat(m, "pv_mode", "%s", pvm_pvq_mode_name(m->pv_mode));
	}
	dom_config_to_kv(&m->dc, &kv);
	if (m->xen)
		pvm_kv_add(&kv, "xen", "1");
	t_connected = pvm_now_ns();
	rc = send_kv(m->ch, M_HELLO, &kv);
	if (!rc)
		rc = expect(m, M_ACCEPT, &kv, why, why_len);
	if (rc)
		goto out;
	t_accepted = pvm_now_ns();
	if (m->xen) {
		rc = source_xen_stream(m, why, why_len);
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
	add_stat(m, "unpopulated_pages", "%llu",
		 (unsigned long long)(m->dom.nr_pages -
				      pvm_bitmap_count(&m->dirty)));
	if (m->bw_bytes_s)
		bw_limit(m, false); /* the limit's clock starts here */

	/* Pre-copy. A cold migration makes round 0 its only round. */
	hold_point("src-precopy");
	for (r.round = 0; m->live; r.round++) {
		uint64_t t0 = pvm_now_ns(), sent = 0, dirty;
		const char *verdict_why;
		enum pvm_policy_verdict v;

		if (cli_cancelled(m)) {
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
			rc = send_kv(m->ch, M_ROUND, &kv);
		}
		if (!rc)
			rc = expect(m, M_ROUND_ACK, &kv, why, why_len);
		if (!rc && m->bw_bytes_s)
			bw_limit(m, true);
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
		progress(m, &r, pvm_policy_predict_ms(dirty, r.bytes_per_s),
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

			rc = throttle_set(m, next);
			if (rc == 0) {
				/* A new regime: both counts start again. */
				r.stuck_rounds = 0;
				r.high_rounds = 0;
				continue;
			}
			pvm_warn("migration %.8s: cannot throttle '%s' (%s): stopping anyway",
				 m->id, m->dom.name, strerror(-rc));
			add_stat(m, "stop_reason", "%s; the guest could not be throttled (%s)",
				 verdict_why, strerror(-rc));
			add_stat(m, "converged", "no");
			rc = 0;
			break;
		}
		if (v != PVM_POLICY_CONTINUE) {
			add_stat(m, "stop_reason", "%s", verdict_why);
			add_stat(m, "converged", "%s",
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
		if (m->throttle && throttle_set(m, 0))
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
	hold_point("src-stop-copy");
	t_read = pvm_now_ns();
	{
		uint64_t sent = 0;

		rc = send_dirty(m, &m->dirty, &sent);
		total_pages += sent;
		add_stat(m, "final_pages", "%llu", (unsigned long long)sent);
	}
	t_sent = pvm_now_ns();
	if (!rc)
		rc = send_state(m);
	t_state = pvm_now_ns();
handover:
	if (!rc)
		rc = expect(m, M_READY, &kv, why, why_len);
	t_ready = pvm_now_ns();
	/* Where the pause went, step by step (the downtime's parts). */
	add_stat(m, "pause_detail", "quiesce+dirty read %.1f ms, last pages %.1f ms, state %.1f ms, destination load %.1f ms",
		 (double)(t_read - m->t_pause) / 1e6, (double)(t_sent - t_read) / 1e6,
		 (double)(t_state - t_sent) / 1e6, (double)(t_ready - t_state) / 1e6);
	if (!rc && m->verify)
		add_stat(m, "memory", "%s",
			 pvm_kv_get(&kv, "memory") ? "identical on both hosts" :
						     "not verified by the destination");
	if (rc) {
		if (!why[0])
			snprintf(why, why_len, "stop-and-copy failed: %s",
				 strerror(-rc));
		goto out;
	}
	/* The point of no return: from here the destination may run it. */
	hold_point("src-after-ready");
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
	if (fault_point("src-cut-before-unpause"))
		pvm_channel_shutdown(m->ch);
	rc = send_simple(m->ch, M_UNPAUSE);
	if (!rc && fault_point("src-cut-after-unpause"))
		pvm_channel_shutdown(m->ch);
	if (!rc)
		rc = expect(m, M_RUNNING, &kv, why, why_len);
	if (!rc && pvm_kv_get(&kv, "devices"))
		add_stat(m, "devices", "%s", pvm_kv_get(&kv, "devices"));
	if (!rc && pvm_kv_get(&kv, "reconnect_ms"))
		add_stat(m, "reconnect_ms", "%s", pvm_kv_get(&kv, "reconnect_ms"));
	if (!rc && pvm_kv_get(&kv, "first_io_ms"))
		add_stat(m, "first_io_ms", "%s", pvm_kv_get(&kv, "first_io_ms"));
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
			add_stat(m, "outcome", "unknown");
			rc = -EHOSTUNREACH;
			goto out;
		}
		pvm_warn("migration %.8s: the destination runs it", m->id);
		add_stat(m, "outcome", "confirmed by query after a lost hand-over");
	}
	/* Running there: end the source copy. */
	hold_point("src-after-running");
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
		add_stat(m, "downtime_ms", "%.2f", down);
		/* PV I/O was down until the first request completed, or,
		 * for a guest doing none, until its devices reconnected. */
		if (io_ms)
			add_stat(m, "io_downtime_ms", "%.2f",
				 down + strtod(io_ms, NULL));
		else if (rc_ms)
			add_stat(m, "io_downtime_ms", "%.2f",
				 down + strtod(rc_ms, NULL));
		add_stat(m, "total_ms", "%.1f",
			 (double)(pvm_now_ns() - m->t_start) / 1e6);
		/* Where the total went: connecting (TCP + TLS handshakes),
		 * the destination creating and mapping the domain, log-dirty
		 * on and pre-copy, then the pause and hand-over. */
		add_stat(m, "phase_detail", "connect %.1f ms, destination create %.1f ms, pre-copy %.1f ms, stop-and-copy + hand-over %.1f ms, source copy destroyed %.1f ms, channel closed %.1f ms",
			 (double)(t_connected - m->t_start) / 1e6,
			 (double)(t_accepted - t_connected) / 1e6,
			 (double)(t_precopy - t_accepted) / 1e6,
			 (double)(t_running - t_precopy) / 1e6,
			 (double)(t_destroyed - t_running) / 1e6,
			 (double)(pvm_now_ns() - t_destroyed) / 1e6);
		add_stat(m, "rounds", "%u", m->live ? r.round + 1 : 0);
		add_stat(m, "round_detail", "%s", rounds_desc);
		if (m->live)
			add_stat(m, "throttle_per_round", "%s", throttles);
		add_stat(m, "throttle_max_pct", "%u", m->throttle_max);
		add_stat(m, "pages_sent", "%llu", (unsigned long long)total_pages);
		add_stat(m, "zero_pages", "%llu", (unsigned long long)cs1.zero_pages);
		add_stat(m, "wire_bytes", "%llu", (unsigned long long)cs1.wire_bytes);
		add_stat(m, "compression_ratio", "%.2f",
			 cs1.wire_bytes ? (double)total_pages * PVM_PAGE_SIZE /
						  (double)cs1.wire_bytes : 0.0);
		add_stat(m, "throughput_mib_s", "%.1f",
			 (double)total_pages * PVM_PAGE_SIZE / 1048576.0 /
				 ((double)(pvm_now_ns() - m->t_start) / 1e9));
		add_stat(m, "dirty_rate_pages_s", "%.0f", r.dirty_rate);
		add_stat(m, "streams", "%u", pvm_channel_streams(m->ch));
	}
	rc = 0;
out:
	pvm_kv_dispose(&kv);
	return rc;
}

static void *source_main(void *arg)
{
	struct source *m = arg;
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
			send_abort(m->ch, why[0] ? why : strerror(-rc));
		if (m->logdirty)
			hv->ops->logdirty_disable(hv, m->dom.domid);
		if (m->throttle && throttle_set(m, 0))
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
	stats_keep(s, &m->stats);
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
	for (struct source **pp = &s->sources; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	s->outgoing--;
	pthread_mutex_unlock(&s->lock);
	free(m);
	return NULL;
}

int parse_target(const char *t, char *host, size_t hlen, uint16_t *port)
{
	const char *colon = strrchr(t, ':');
	size_t n = colon ? (size_t)(colon - t) : strlen(t);

	*port = PVM_PORT_DEFAULT;
	if (n == 0 || n >= hlen)
		return -EINVAL;
	memcpy(host, t, n);
	host[n] = '\0';
	if (colon) {
		char *end;
		unsigned long p = strtoul(colon + 1, &end, 10);

		if (*end || p == 0 || p > 65535)
			return -EINVAL;
		*port = (uint16_t)p;
	}
	return 0;
}

int h_migrate(struct req *r)
{
	struct pvm_service *s = r->svc;
	const char *target = pvm_kv_get(r->args, "target");
	struct req_pv_opts pv;
	struct source *m;
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
	if (!target || parse_target(target, m->host, sizeof(m->host), &m->port)) {
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
	for (struct source *o = s->sources; o; o = o->next) {
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
		for (struct source **pp = &s->sources; *pp; pp = &(*pp)->next)
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
