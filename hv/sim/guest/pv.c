/*
 * The guest's PV frontends (blkfront, netfront, after Linux's) and the
 * block/net workload, run by the main thread of pvmig-simguest.
 *
 * Frontend state lives in guest memory (the device area, the last
 * PVM_SIMGUEST_DEV_PAGES pages), like a kernel's: rings, buffers, shadow
 * copies of requests, ring indices, workload progress. So after a restore
 * (the new process finds the area initialised) the frontend knows where
 * it was, and the generation decides what it does:
 *
 *   modern  Linux blkfront_resume/netfront_resume: re-grants its rings
 *           (fresh pages, new refs), allocates a new port, re-runs the
 *           xenbus handshake from Initialising, then re-queues the block
 *           requests that had no response (blkif_recover); tx frames in
 *           flight are dropped (the network may lose them), rx buffers are
 *           posted again.
 *   legacy  no resume at all (early Windows PV drivers): keeps its ring
 *           pages, grant refs and port, asks only for the port's eventfd
 *           (the process is new; a kernel would keep its handler), never
 *           writes xenstore again and registers no watch (imported ones
 *           still reach it).
 *
 * Suspend (Linux drivers/xen/manage.c): a modern guest writes
 * control/feature-suspend = 1 and watches control/shutdown. When the
 * toolstack writes "suspend" there, it acknowledges by clearing the node
 * (as shutdown_handler does, before acting on it), stops its frontends
 * (no new requests, nothing consumed) and makes the suspend hypercall
 * (PVM_SIMGUEST_SUSPEND). It then idles until either the host cancels the
 * suspend (resumed in place: header suspend_cancel; the frontends go on
 * with their rings, as Linux's suspend_cancel path) or the process is
 * replaced by a restore (the resume above). A legacy guest advertises
 * nothing and never answers; "noack" makes a modern guest advertise the
 * feature but never answer (fault tests).
 *
 * Frontend xenbus state machine (fe_set() performs and checks each):
 *
 *   Initialising ──backend InitWait: rings granted, port allocated,
 *                  nodes written──► Initialised (vbd) | Connected (vif)
 *   Initialised ──backend Connected: sectors read──► Connected
 *   Connected (vif) ──backend Connected──► (live)
 *   Initialised|Connected ──backend Closing|Closed──► Closing ──► Closed
 *   Connected ──modern resume──► Initialising
 *
 * Workload per vbd: passes of "write every block, then read every block
 * back and verify" over min(sectors/8, VBD_MAXBLK) 4 KiB blocks; each block
 * carries its number, the pass and a checksum of the rest. Per vif:
 * numbered frames to the echo peer; replies are checked for gaps (lost),
 * repeats (dup) and late arrivals (ooo). Counters: header page and
 * xenstore data/workload/ every 100 ms.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "hv/sim/xenring.h"

#include "hv/sim/guest/guest.h"
#include "hv/sim/guest_abi.h"
#include "hv/sim/xsc.h"

#define FE_MAGIC 0x66726f6eu /* "fron" */
#define MAX_DEV 16u
#define VBD_SLOTS 8u
#define VBD_MAXBLK 64u
#define VIF_NTX 8u
#define VIF_NRX 16u
#define NR_REFS (PVM_SIMGUEST_GNTTAB_FRAMES * (PAGE / 8u))
#define FIRST_REF 8u /* Xen's GNTTAB_NR_RESERVED_ENTRIES */
#define BLK_MAGIC 0x626c6b2d636b7375ull
#define PKT_MAGIC 0x706b7431u
#define PKT_LEN 64u
#define PUBLISH_NS 100000000ull
#define NET_WINDOW 16u
#define NET_STALL_NS 1000000000ull
#define DEV_VBD 1u
#define DEV_VIF 2u

struct fe_global { /* first page of the device area */
	uint32_t magic;
	uint32_t nr_dev;
	uint32_t next_pfn;
	uint32_t next_ref;
	uint32_t dev_pfn[MAX_DEV];
	/* Set before the suspend hypercall, cleared on resume or cancel: in
	 * guest memory, so that a new process on a restored image knows
	 * whether this kernel suspended itself (then it runs its resume
	 * path) or was moved without knowing (then it goes on as it was). */
	uint32_t suspended;
};

struct fe_common { /* first member of each device's page */
	uint32_t type;
	uint32_t devid;
	uint32_t state; /* our xenbus state */
	uint32_t port;
	uint32_t live;   /* both ends connected */
	uint32_t broken; /* the backend closed on us */
	char be_path[96];
	char fe_path[64];
};

struct fe_vbd {
	struct fe_common c;
	uint32_t ring_pfn, ring_ref;
	uint32_t req_prod_pvt, rsp_cons;
	uint32_t slot_pfn[VBD_SLOTS], slot_ref[VBD_SLOTS];
	struct {
		uint32_t busy, op, block, seq;
	} shadow[VBD_SLOTS];
	uint64_t sectors;
	uint32_t nblocks, phase, next_block, pass, inflight, evil_done;
	uint32_t requeue; /* modern resume: shadows to send again */
	uint32_t flush;   /* the backend offers feature-flush-cache */
	uint32_t flushed; /* this pass's writes are flushed (or no flush) */
	uint32_t written[VBD_MAXBLK]; /* pass of the last acked write; 0 none */
};

struct fe_vif {
	struct fe_common c;
	uint32_t tx_pfn, rx_pfn, tx_ref, rx_ref;
	uint32_t tx_prod_pvt, tx_rsp_cons, rx_prod_pvt, rx_rsp_cons;
	uint32_t txb_pfn[VIF_NTX], txb_ref[VIF_NTX], tx_busy[VIF_NTX];
	uint32_t rxb_pfn[VIF_NRX], rxb_ref[VIF_NRX];
	uint8_t mac[6];
	uint16_t pad;
	uint64_t next_seq, expect, seen; /* seen: bit i = expect-1-i arrived */
	uint64_t last_rx; /* monotonic ns of the last reply (or give-up) */
};

static_assert(sizeof(struct fe_vbd) <= PAGE, "vbd state page");
static_assert(sizeof(struct fe_vif) <= PAGE, "vif state page");

/* Process-local view of a device. */
struct dev {
	struct fe_common *c;
	int efd;
	uint64_t next_due;
};

static uint8_t *gmem;
static uint64_t gpages;
static struct fe_global *g;
static struct pvm_simguest_header *hdr;
static const struct pv_workload *wl;
static struct xsc xs;
static struct dev devs[MAX_DEV];
static unsigned int ndev;
static uint32_t my_domid;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *page_of(uint32_t pfn)
{
	return gmem + (uint64_t)pfn * PAGE;
}

static void count(enum pvm_simguest_counter c, int64_t delta)
{
	__atomic_add_fetch(&hdr->wl[c], (uint64_t)delta, __ATOMIC_RELAXED);
}

static uint32_t alloc_pfn(void)
{
	if (g->next_pfn >= gpages) {
		fprintf(stderr, "pvmig-simguest: device area full\n");
		_exit(1);
	}
	memset(page_of(g->next_pfn), 0, PAGE);
	return g->next_pfn++;
}

/* ---- grants (v1 entries in our own table) ------------------------ */

static grant_entry_v1_t *gent(uint32_t ref)
{
	return (grant_entry_v1_t *)page_of(PVM_SIMGUEST_GNTTAB_PFN) + ref;
}

/* The next free entry from next_ref on, wrapping (a modern resume
 * grants everything anew: refs it gave up are taken again, or a guest
 * with 16 devices would run out at its first resume). */
static uint32_t grant(uint32_t pfn)
{
	const uint32_t span = NR_REFS - FIRST_REF;
	uint32_t ref = NR_REFS;
	grant_entry_v1_t *e;

	for (uint32_t n = 0; n < span; n++) {
		uint32_t r = FIRST_REF + (g->next_ref - FIRST_REF + n) % span;

		if (!__atomic_load_n(&gent(r)->flags, __ATOMIC_ACQUIRE)) {
			ref = r;
			break;
		}
	}
	if (ref >= NR_REFS) {
		fprintf(stderr, "pvmig-simguest: out of grant refs\n");
		_exit(1);
	}
	g->next_ref = ref + 1;
	e = gent(ref);
	e->frame = pfn;
	e->domid = 0;
	/* flags last: the entry is valid once they say so */
	__atomic_store_n(&e->flags, (uint16_t)GTF_permit_access,
			 __ATOMIC_RELEASE);
	return ref;
}

static void ungrant(uint32_t ref)
{
	if (ref >= FIRST_REF && ref < NR_REFS)
		__atomic_store_n(&gent(ref)->flags, (uint16_t)0,
				 __ATOMIC_RELEASE);
}

/* ---- xenbus ------------------------------------------------------ */

static bool fe_allowed(const struct fe_common *c, uint32_t to)
{
	uint32_t from = c->state;

	switch (to) {
	case XenbusStateInitialised:
		return from == XenbusStateInitialising && c->type == DEV_VBD;
	case XenbusStateConnected:
		return (from == XenbusStateInitialised && c->type == DEV_VBD) ||
		       (from == XenbusStateInitialising && c->type == DEV_VIF);
	case XenbusStateClosing:
		return from == XenbusStateInitialised ||
		       from == XenbusStateConnected ||
		       from == XenbusStateInitialising;
	case XenbusStateClosed:
		return from == XenbusStateClosing;
	case XenbusStateInitialising:
		return from == XenbusStateConnected && !wl->legacy;
	default:
		return false;
	}
}

static void fe_set(struct fe_common *c, uint32_t to)
{
	char path[96];

	if (!fe_allowed(c, to)) {
		fprintf(stderr, "pvmig-simguest: %s: xenbus %u -> %u refused\n",
			c->fe_path, c->state, to);
		return;
	}
	c->state = to;
	snprintf(path, sizeof(path), "%s/state", c->fe_path);
	xsc_writef(&xs, path, "%u", to);
}

static int xs_u32(const char *dir, const char *node, uint32_t *out)
{
	char path[160];
	uint64_t v;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", dir, node);
	rc = xsc_read_u64(&xs, path, &v);
	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

static void node_write(const struct fe_common *c, const char *node,
		       const char *fmt, uint32_t v)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", c->fe_path, node);
	xsc_writef(&xs, path, fmt, v);
}

static void new_port(struct dev *d)
{
	uint32_t port = 0;
	int efd = -1;

	if (d->efd >= 0)
		close(d->efd);
	d->efd = -1;
	if (d->c->port)
		hypercall(PVM_SIMGUEST_EVTCHN_CLOSE, d->c->port, 0, NULL, NULL);
	if (hypercall(PVM_SIMGUEST_EVTCHN_ALLOC_UNBOUND, 0, 0, &port, &efd) < 0) {
		fprintf(stderr, "pvmig-simguest: no event channel\n");
		_exit(1);
	}
	d->c->port = port;
	d->efd = efd;
}

static void notify(struct dev *d)
{
	hypercall(PVM_SIMGUEST_EVTCHN_SEND, d->c->port, 0, NULL, NULL);
}

/* ---- vbd --------------------------------------------------------- */

static uint64_t fnv(const uint8_t *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void block_fill(uint8_t *p, uint32_t block, uint32_t pass)
{
	uint64_t *w = (uint64_t *)p;

	for (size_t i = 3; i < PAGE / 8; i++)
		w[i] = ((uint64_t)block << 40) ^ ((uint64_t)pass << 20) ^ i ^
		       0x5a5a5a5a5a5a5a5aull;
	w[0] = BLK_MAGIC;
	w[1] = (uint64_t)block | ((uint64_t)pass << 32);
	w[2] = fnv(p + 24, PAGE - 24, 0xcbf29ce484222325ull ^ w[1]);
}

static bool block_ok(const uint8_t *p, uint32_t block, uint32_t pass)
{
	const uint64_t *w = (const uint64_t *)p;

	return w[0] == BLK_MAGIC &&
	       w[1] == ((uint64_t)block | ((uint64_t)pass << 32)) &&
	       w[2] == fnv(p + 24, PAGE - 24, 0xcbf29ce484222325ull ^ w[1]);
}

static blkif_front_ring_t vbd_ring(struct fe_vbd *b)
{
	blkif_sring_t *s = page_of(b->ring_pfn);
	blkif_front_ring_t fr = {
		.req_prod_pvt = b->req_prod_pvt,
		.rsp_cons = b->rsp_cons,
		.nr_ents = __RING_SIZE(s, PAGE),
		.sring = s,
	};
	return fr;
}

/* talk_to_blkback: ring and buffers granted, port, nodes. */
static void vbd_talk(struct dev *d)
{
	struct fe_vbd *b = (struct fe_vbd *)d->c;

	if (!b->ring_pfn) {
		b->ring_pfn = alloc_pfn();
		for (uint32_t i = 0; i < VBD_SLOTS; i++)
			b->slot_pfn[i] = alloc_pfn();
	} else {
		/* modern resume: new grants for the same pages */
		ungrant(b->ring_ref);
		for (uint32_t i = 0; i < VBD_SLOTS; i++)
			ungrant(b->slot_ref[i]);
	}
	SHARED_RING_INIT((blkif_sring_t *)page_of(b->ring_pfn));
	b->req_prod_pvt = b->rsp_cons = 0;
	b->ring_ref = grant(b->ring_pfn);
	for (uint32_t i = 0; i < VBD_SLOTS; i++)
		b->slot_ref[i] = grant(b->slot_pfn[i]);
	new_port(d);
	node_write(d->c, "ring-ref", "%u", b->ring_ref);
	node_write(d->c, "event-channel", "%u", b->c.port);
	{
		char path[128];

		snprintf(path, sizeof(path), "%s/protocol", b->c.fe_path);
		xsc_write(&xs, path, XEN_IO_PROTO_ABI_NATIVE);
	}
}

static void vbd_connected(struct dev *d)
{
	struct fe_vbd *b = (struct fe_vbd *)d->c;
	uint64_t sectors = 0;
	char path[160];

	/* feature negotiation: what this backend offers (may differ after a
	 * move to another host) */
	snprintf(path, sizeof(path), "%s/feature-flush-cache", b->c.be_path);
	b->flush = xsc_read_u64(&xs, path, &sectors) == 0 && sectors == 1;
	snprintf(path, sizeof(path), "%s/sectors", b->c.be_path);
	if (xsc_read_u64(&xs, path, &sectors) < 0 || sectors < 8) {
		fe_set(d->c, XenbusStateClosing);
		fe_set(d->c, XenbusStateClosed);
		return;
	}
	if (!b->sectors) { /* first connect: the workload's geometry */
		b->sectors = sectors;
		b->nblocks = (uint32_t)(sectors / 8 < VBD_MAXBLK ? sectors / 8 :
								 VBD_MAXBLK);
		b->pass = 1;
	}
	/* blkif_recover: what had no response goes again */
	b->requeue = 0;
	for (uint32_t i = 0; i < VBD_SLOTS; i++)
		if (b->shadow[i].busy)
			b->requeue |= 1u << i;
}

static void vbd_queue(blkif_front_ring_t *fr, struct fe_vbd *b, uint32_t slot)
{
	blkif_request_t *req = RING_GET_REQUEST(fr, fr->req_prod_pvt);

	memset(req, 0, sizeof(*req));
	req->operation = (uint8_t)b->shadow[slot].op;
	req->id = slot;
	if (req->operation == BLKIF_OP_FLUSH_DISKCACHE) {
		fr->req_prod_pvt++; /* no segments, no sector */
		return;
	}
	req->nr_segments = 1;
	req->handle = (blkif_vdev_t)b->c.devid;
	req->sector_number = (uint64_t)b->shadow[slot].block * 8;
	req->seg[0].gref = b->slot_ref[slot];
	req->seg[0].first_sect = 0;
	req->seg[0].last_sect = 7;
	fr->req_prod_pvt++;
}

static void vbd_complete(struct fe_vbd *b, const blkif_response_t *rsp)
{
	uint32_t slot = (uint32_t)rsp->id;
	uint32_t blk;

	if (rsp->id >= VBD_SLOTS || !b->shadow[slot].busy)
		return; /* not ours: a backend bug, ignore */
	blk = b->shadow[slot].block;
	if (b->shadow[slot].op == BLKIF_OP_FLUSH_DISKCACHE) {
		if (rsp->status == BLKIF_RSP_OKAY)
			count(PVM_SIMGUEST_C_BLK_FLUSHES, 1);
		else
			count(PVM_SIMGUEST_C_BLK_IO_ERRORS, 1);
	} else if (rsp->status != BLKIF_RSP_OKAY) {
		count(PVM_SIMGUEST_C_BLK_IO_ERRORS, 1);
		if (b->shadow[slot].op == BLKIF_OP_WRITE)
			b->written[blk] = 0;
	} else if (b->shadow[slot].op == BLKIF_OP_WRITE) {
		b->written[blk] = b->shadow[slot].seq;
		count(PVM_SIMGUEST_C_BLK_WRITES, 1);
	} else if (b->written[blk]) {
		count(PVM_SIMGUEST_C_BLK_READS, 1);
		if (!block_ok(page_of(b->slot_pfn[slot]), blk, b->written[blk]))
			count(PVM_SIMGUEST_C_BLK_VERIFY_FAIL, 1);
	}
	b->shadow[slot].busy = 0;
	b->inflight--;
}

static void evil(struct dev *d, blkif_front_ring_t *fr)
{
	struct fe_vbd *b = (struct fe_vbd *)d->c;

	if (b->evil_done || hdr->wl[PVM_SIMGUEST_C_BLK_WRITES] < 20)
		return;
	if (wl->evil_ring) {
		b->evil_done = 1;
		/* claims 5000 requests in a ring of 32 */
		__atomic_store_n(&fr->sring->req_prod, fr->rsp_cons + 5000,
				 __ATOMIC_RELEASE);
		notify(d);
	} else if (wl->evil_gref) {
		b->evil_done = 2; /* the workload goes on, on garbage grants */
		/* every buffer grant now names a frame beyond memory */
		for (uint32_t i = 0; i < VBD_SLOTS; i++)
			__atomic_store_n(&gent(b->slot_ref[i])->frame,
					 0xfffffff0u, __ATOMIC_RELEASE);
	}
}

static bool vbd_work(struct dev *d, uint64_t now)
{
	struct fe_vbd *b = (struct fe_vbd *)d->c;
	blkif_front_ring_t fr;
	bool can_more = false;
	int more, ntfy;

	/* a hostile frontend leaves its garbage in place */
	if (!b->c.live || b->c.broken || b->evil_done == 1)
		return false;
	fr = vbd_ring(b);
	do {
		RING_IDX rp = __atomic_load_n(&fr.sring->rsp_prod,
					      __ATOMIC_ACQUIRE);

		for (; fr.rsp_cons != rp; fr.rsp_cons++)
			vbd_complete(b, RING_GET_RESPONSE(&fr, fr.rsp_cons));
		RING_FINAL_CHECK_FOR_RESPONSES(&fr, more);
	} while (more);

	for (uint32_t i = 0; i < VBD_SLOTS; i++)
		if (b->requeue & (1u << i))
			vbd_queue(&fr, b, i);
	b->requeue = 0;

	while (wl->blk && b->inflight < VBD_SLOTS && b->evil_done != 1) {
		uint32_t slot = 0;
		bool write = b->phase == 0;

		if (wl->blk_rate && now < d->next_due)
			break;
		if (b->next_block >= b->nblocks) {
			if (b->inflight)
				break;
			if (b->phase == 0 && b->flush && !b->flushed) {
				/* the pass's writes reach the disk first */
				b->flushed = 1;
				b->shadow[0].busy = 1;
				b->shadow[0].op = BLKIF_OP_FLUSH_DISKCACHE;
				b->inflight++;
				vbd_queue(&fr, b, 0);
				continue;
			}
			b->flushed = 0;
			b->next_block = 0;
			b->phase = !b->phase;
			if (b->phase == 0)
				b->pass++;
			continue;
		}
		while (b->shadow[slot].busy)
			slot++;
		b->shadow[slot].busy = 1;
		b->shadow[slot].op = write ? BLKIF_OP_WRITE : BLKIF_OP_READ;
		b->shadow[slot].block = b->next_block++;
		b->shadow[slot].seq = b->pass;
		if (write)
			block_fill(page_of(b->slot_pfn[slot]),
				   b->shadow[slot].block, b->pass);
		else
			memset(page_of(b->slot_pfn[slot]), 0, PAGE);
		b->inflight++;
		vbd_queue(&fr, b, slot);
		if (wl->blk_rate)
			d->next_due = (d->next_due > now - 1000000000ull ?
					       d->next_due :
					       now) +
				      1000000000ull / wl->blk_rate;
	}
	if (wl->blk && b->evil_done != 1 && b->inflight < VBD_SLOTS)
		can_more = !wl->blk_rate || now >= d->next_due;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&fr, ntfy);
	if (ntfy)
		notify(d);
	b->req_prod_pvt = fr.req_prod_pvt;
	b->rsp_cons = fr.rsp_cons;
	evil(d, &fr);
	return can_more && b->next_block < b->nblocks;
}

/* ---- vif --------------------------------------------------------- */

static void vif_talk(struct dev *d)
{
	struct fe_vif *n = (struct fe_vif *)d->c;

	if (!n->tx_pfn) {
		n->tx_pfn = alloc_pfn();
		n->rx_pfn = alloc_pfn();
		for (uint32_t i = 0; i < VIF_NTX; i++)
			n->txb_pfn[i] = alloc_pfn();
		for (uint32_t i = 0; i < VIF_NRX; i++)
			n->rxb_pfn[i] = alloc_pfn();
	} else {
		ungrant(n->tx_ref);
		ungrant(n->rx_ref);
		for (uint32_t i = 0; i < VIF_NTX; i++)
			ungrant(n->txb_ref[i]);
		for (uint32_t i = 0; i < VIF_NRX; i++)
			ungrant(n->rxb_ref[i]);
		/* A resume drops the rings, and with them every frame in
		 * flight and every reply not yet read: lost now, and the
		 * stall clock starts again. (It ran on from before the
		 * suspend: after a pause over 1 s, the first frames sent on
		 * the new rings were given up before their replies came,
		 * which then counted as out of order.) */
		if (n->next_seq != n->expect) {
			uint64_t gone = n->next_seq - n->expect;

			count(PVM_SIMGUEST_C_NET_LOST, (int64_t)gone);
			n->seen = gone >= 64 ? 0 : n->seen << gone;
			n->expect = n->next_seq;
		}
		n->last_rx = now_ns();
	}
	SHARED_RING_INIT((netif_tx_sring_t *)page_of(n->tx_pfn));
	SHARED_RING_INIT((netif_rx_sring_t *)page_of(n->rx_pfn));
	n->tx_prod_pvt = n->tx_rsp_cons = n->rx_prod_pvt = n->rx_rsp_cons = 0;
	memset(n->tx_busy, 0, sizeof(n->tx_busy)); /* in flight: lost */
	n->tx_ref = grant(n->tx_pfn);
	n->rx_ref = grant(n->rx_pfn);
	for (uint32_t i = 0; i < VIF_NTX; i++)
		n->txb_ref[i] = grant(n->txb_pfn[i]);
	for (uint32_t i = 0; i < VIF_NRX; i++)
		n->rxb_ref[i] = grant(n->rxb_pfn[i]);
	new_port(d);
	/* every rx buffer posted */
	{
		netif_rx_sring_t *s = page_of(n->rx_pfn);
		netif_rx_front_ring_t fr = {
			.nr_ents = __RING_SIZE(s, PAGE),
			.sring = s,
		};

		for (uint32_t i = 0; i < VIF_NRX; i++) {
			netif_rx_request_t *r = RING_GET_REQUEST(&fr, fr.req_prod_pvt);

			r->id = (uint16_t)i;
			r->gref = n->rxb_ref[i];
			fr.req_prod_pvt++;
		}
		RING_PUSH_REQUESTS(&fr);
		n->rx_prod_pvt = fr.req_prod_pvt;
	}
	node_write(d->c, "tx-ring-ref", "%u", n->tx_ref);
	node_write(d->c, "rx-ring-ref", "%u", n->rx_ref);
	node_write(d->c, "event-channel", "%u", n->c.port);
	node_write(d->c, "request-rx-copy", "%u", 1);
	node_write(d->c, "feature-rx-notify", "%u", 1);
}

static void vif_rx_frame(struct fe_vif *n, const uint8_t *f, int16_t len,
			 uint64_t now)
{
	static const uint8_t echo[6] = PVM_SIMGUEST_ECHO_MAC;
	uint64_t seq;
	uint32_t magic;
	uint16_t dom, dev;

	if (len < (int16_t)PKT_LEN || memcmp(f, n->mac, 6) != 0 ||
	    memcmp(f + 6, echo, 6) != 0)
		return; /* not an echo reply for us */
	memcpy(&magic, f + 14, 4);
	memcpy(&dom, f + 18, 2);
	memcpy(&dev, f + 20, 2);
	memcpy(&seq, f + 24, 8);
	if (magic != PKT_MAGIC || dom != my_domid || dev != n->c.devid)
		return;
	n->last_rx = now;
	if (seq >= n->expect) {
		uint64_t shift = seq + 1 - n->expect;

		if (seq > n->expect)
			count(PVM_SIMGUEST_C_NET_LOST, (int64_t)(seq - n->expect));
		n->seen = shift >= 64 ? 0 : n->seen << shift;
		n->seen |= 1;
		n->expect = seq + 1;
		count(PVM_SIMGUEST_C_NET_RECEIVED, 1);
		return;
	}
	/* older than the newest seen */
	{
		uint64_t back = n->expect - 1 - seq;

		if (back < 64 && (n->seen & (1ull << back))) {
			count(PVM_SIMGUEST_C_NET_DUP, 1);
			return;
		}
		if (back < 64)
			n->seen |= 1ull << back;
		count(PVM_SIMGUEST_C_NET_OOO, 1);
		count(PVM_SIMGUEST_C_NET_LOST, -1); /* counted lost before */
		count(PVM_SIMGUEST_C_NET_RECEIVED, 1);
	}
}

static bool vif_work(struct dev *d, uint64_t now)
{
	struct fe_vif *n = (struct fe_vif *)d->c;
	netif_tx_sring_t *ts = page_of(n->tx_pfn);
	netif_rx_sring_t *rs = page_of(n->rx_pfn);
	netif_tx_front_ring_t tf = {
		.req_prod_pvt = n->tx_prod_pvt, .rsp_cons = n->tx_rsp_cons,
		.nr_ents = __RING_SIZE(ts, PAGE), .sring = ts,
	};
	netif_rx_front_ring_t rf = {
		.req_prod_pvt = n->rx_prod_pvt, .rsp_cons = n->rx_rsp_cons,
		.nr_ents = __RING_SIZE(rs, PAGE), .sring = rs,
	};
	bool free_slot = false;
	int more, ntfy;

	if (!n->c.live || n->c.broken)
		return false;
	do {
		RING_IDX rp = __atomic_load_n(&ts->rsp_prod, __ATOMIC_ACQUIRE);

		for (; tf.rsp_cons != rp; tf.rsp_cons++) {
			netif_tx_response_t *r = RING_GET_RESPONSE(&tf, tf.rsp_cons);

			if (r->id < VIF_NTX)
				n->tx_busy[r->id] = 0;
		}
		RING_FINAL_CHECK_FOR_RESPONSES(&tf, more);
	} while (more);
	do {
		RING_IDX rp = __atomic_load_n(&rs->rsp_prod, __ATOMIC_ACQUIRE);

		for (; rf.rsp_cons != rp; rf.rsp_cons++) {
			netif_rx_response_t r = *RING_GET_RESPONSE(&rf, rf.rsp_cons);
			netif_rx_request_t *q;

			if (r.id >= VIF_NRX)
				continue;
			if (r.status > 0 && r.offset == 0 && r.status <= (int16_t)PAGE)
				vif_rx_frame(n, page_of(n->rxb_pfn[r.id]), r.status,
					     now);
			q = RING_GET_REQUEST(&rf, rf.req_prod_pvt);
			q->id = r.id;
			q->gref = n->rxb_ref[r.id];
			rf.req_prod_pvt++;
		}
		RING_FINAL_CHECK_FOR_RESPONSES(&rf, more);
	} while (more);
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&rf, ntfy);

	while (wl->net) {
		uint32_t slot = 0;
		uint8_t *f;
		netif_tx_request_t *q;
		static const uint8_t echo[6] = PVM_SIMGUEST_ECHO_MAC;
		uint32_t magic = PKT_MAGIC;
		uint16_t dom = (uint16_t)my_domid, dev = (uint16_t)n->c.devid;

		if (n->next_seq == n->expect)
			n->last_rx = now; /* the stall clock starts now */
		while (slot < VIF_NTX && n->tx_busy[slot])
			slot++;
		if (slot == VIF_NTX || (wl->net_rate && now < d->next_due))
			break;
		/* flow control: at most NET_WINDOW frames unanswered */
		if (n->next_seq - n->expect >= NET_WINDOW) {
			if (now - n->last_rx < NET_STALL_NS)
				break;
			/* replies overdue: those frames are lost */
			count(PVM_SIMGUEST_C_NET_LOST,
			      (int64_t)(n->next_seq - n->expect));
			n->seen = n->next_seq - n->expect >= 64 ?
					  0 :
					  n->seen << (n->next_seq - n->expect);
			n->expect = n->next_seq;
			n->last_rx = now;
		}
		f = page_of(n->txb_pfn[slot]);
		memset(f, 0, PKT_LEN);
		memcpy(f, echo, 6);
		memcpy(f + 6, n->mac, 6);
		f[12] = (uint8_t)(PVM_SIMGUEST_ETHERTYPE >> 8);
		f[13] = (uint8_t)PVM_SIMGUEST_ETHERTYPE;
		memcpy(f + 14, &magic, 4);
		memcpy(f + 18, &dom, 2);
		memcpy(f + 20, &dev, 2);
		memcpy(f + 24, &n->next_seq, 8);
		n->next_seq++;
		n->tx_busy[slot] = 1;
		q = RING_GET_REQUEST(&tf, tf.req_prod_pvt);
		q->gref = n->txb_ref[slot];
		q->offset = 0;
		q->flags = 0;
		q->id = (uint16_t)slot;
		q->size = PKT_LEN;
		tf.req_prod_pvt++;
		count(PVM_SIMGUEST_C_NET_SENT, 1);
		if (wl->net_rate)
			d->next_due = (d->next_due > now - 1000000000ull ?
					       d->next_due :
					       now) +
				      1000000000ull / wl->net_rate;
	}
	{
		int ntx;

		RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&tf, ntx);
		ntfy |= ntx;
	}
	if (ntfy)
		notify(d);
	for (uint32_t i = 0; i < VIF_NTX; i++)
		free_slot |= !n->tx_busy[i];
	n->tx_prod_pvt = tf.req_prod_pvt;
	n->tx_rsp_cons = tf.rsp_cons;
	n->rx_prod_pvt = rf.req_prod_pvt;
	n->rx_rsp_cons = rf.rsp_cons;
	return wl->net && free_slot && n->next_seq - n->expect < NET_WINDOW &&
	       (!wl->net_rate || now >= d->next_due);
}

/* ---- the handshake, driven by xenstore events --------------------- */

static void fe_changed(struct dev *d)
{
	struct fe_common *c = d->c;
	uint32_t be = XenbusStateUnknown;

	if (c->broken)
		return;
	if (xs_u32(c->be_path, "state", &be) < 0)
		be = XenbusStateClosed; /* backend gone */
	if (be == XenbusStateClosing || be == XenbusStateClosed) {
		if (c->state == XenbusStateInitialised ||
		    c->state == XenbusStateConnected) {
			c->live = 0;
			c->broken = 1;
			fe_set(c, XenbusStateClosing);
			fe_set(c, XenbusStateClosed);
		}
		return;
	}
	switch (c->state) {
	case XenbusStateInitialising:
		if (be != XenbusStateInitWait)
			break;
		if (c->type == DEV_VBD) {
			vbd_talk(d);
			fe_set(c, XenbusStateInitialised);
		} else {
			uint32_t copy = 0;

			/* netfront: rx-copy is the only receive path */
			if (xs_u32(c->be_path, "feature-rx-copy", &copy) < 0 ||
			    copy != 1) {
				fprintf(stderr, "pvmig-simguest: %s: backend "
						"offers no rx-copy\n", c->fe_path);
				c->broken = 1;
				fe_set(c, XenbusStateClosing);
				fe_set(c, XenbusStateClosed);
				break;
			}
			vif_talk(d);
			fe_set(c, XenbusStateConnected);
		}
		break;
	case XenbusStateInitialised:
		if (be != XenbusStateConnected)
			break;
		vbd_connected(d);
		if (c->broken)
			break;
		fe_set(c, XenbusStateConnected);
		c->live = 1;
		count(PVM_SIMGUEST_C_FE_CONNECTS, 1);
		break;
	case XenbusStateConnected:
		if (be == XenbusStateConnected && !c->live) {
			c->live = 1;
			count(PVM_SIMGUEST_C_FE_CONNECTS, 1);
		}
		break;
	default:
		break;
	}
}

/* ---- start-up and the loop --------------------------------------- */

static void add_devices(const char *type, uint32_t t)
{
	char list[1024], path[128];
	int n;

	snprintf(path, sizeof(path), "device/%s", type);
	n = xsc_directory(&xs, path, list, sizeof(list));
	for (int off = 0; n > 0 && off < n; off += (int)strlen(list + off) + 1) {
		struct fe_common *c;
		uint32_t pfn;
		char mac[24];
		unsigned int m[6];

		if (g->nr_dev >= MAX_DEV)
			break;
		pfn = alloc_pfn();
		c = page_of(pfn);
		c->type = t;
		c->devid = (uint32_t)strtoul(list + off, NULL, 10);
		c->state = XenbusStateInitialising;
		snprintf(c->fe_path, sizeof(c->fe_path), "device/%s/%u", type,
			 c->devid);
		snprintf(path, sizeof(path), "%s/backend", c->fe_path);
		if (xsc_read(&xs, path, c->be_path, sizeof(c->be_path)) < 0)
			continue;
		if (t == DEV_VIF) {
			snprintf(path, sizeof(path), "%s/mac", c->fe_path);
			if (xsc_read(&xs, path, mac, sizeof(mac)) < 0 ||
			    sscanf(mac, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2],
				   &m[3], &m[4], &m[5]) != 6)
				continue;
			for (int i = 0; i < 6; i++)
				((struct fe_vif *)c)->mac[i] = (uint8_t)m[i];
		}
		g->dev_pfn[g->nr_dev++] = pfn;
	}
}

static void watch_all(void)
{
	for (unsigned int i = 0; i < ndev; i++) {
		char path[128];

		snprintf(path, sizeof(path), "%s/state", devs[i].c->be_path);
		xsc_watch(&xs, path, "be");
	}
}

static void publish(void)
{
	static const char *const names[PVM_SIMGUEST_C_NR] = {
		"blk-writes", "blk-reads", "blk-verify-fail", "blk-io-errors",
		"net-sent", "net-received", "net-lost", "net-dup", "net-ooo",
		"fe-connects", "blk-flushes",
	};
	static uint64_t last[PVM_SIMGUEST_C_NR];
	static bool once;
	char path[64];

	for (unsigned int i = 0; i < PVM_SIMGUEST_C_NR; i++) {
		uint64_t v = __atomic_load_n(&hdr->wl[i], __ATOMIC_RELAXED);

		if (once && v == last[i])
			continue;
		snprintf(path, sizeof(path), "data/workload/%s", names[i]);
		if (xsc_writef(&xs, path, "%llu", (unsigned long long)v) == 0)
			last[i] = v;
	}
	once = true;
}

/* ---- suspend (file head) ------------------------------------------ */

static void advertise_suspend(void)
{
	if (wl->legacy)
		return;
	xsc_write(&xs, "control/feature-suspend", "1");
	xsc_watch(&xs, "control/shutdown", "ctl");
}

/* On a xenstore event: a suspend request? */
static void check_shutdown(void)
{
	char req[32];

	if (wl->legacy || wl->no_suspend_ack || g->suspended)
		return;
	if (xsc_read(&xs, "control/shutdown", req, sizeof(req)) < 0 ||
	    strcmp(req, "suspend") != 0)
		return;
	/* The acknowledgement: the toolstack waits for the node to clear.
	 * Taken in a transaction (compare and swap), as Linux's
	 * shutdown_handler does: a toolstack that withdraws the request the
	 * same way at the same time wins or loses as a whole. */
	if (xsc_cas(&xs, "control/shutdown", "suspend", "") < 0)
		return;
	/* Before the hypercall: once it is made, the host may pause us and
	 * copy this page at any instant. */
	__atomic_store_n(&g->suspended, 1, __ATOMIC_SEQ_CST);
	if (hypercall(PVM_SIMGUEST_SUSPEND, 0, 0, NULL, NULL) < 0)
		__atomic_store_n(&g->suspended, 0, __ATOMIC_SEQ_CST);
}

/* Suspended: resumed in place when the host sets suspend_cancel. */
static bool still_suspended(void)
{
	if (!g->suspended)
		return false;
	if (!__atomic_load_n(&hdr->suspend_cancel, __ATOMIC_ACQUIRE))
		return true;
	__atomic_store_n(&hdr->suspend_cancel, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&g->suspended, 0, __ATOMIC_SEQ_CST);
	return false;
}

/* After a restore: what each generation does (file head). A kernel that
 * did not suspend itself (legacy, or a modern one paused and moved
 * without its help) does not know it moved: it goes on with its rings. */
static void resume(bool self_suspended)
{
	char path[128];

	for (unsigned int i = 0; i < ndev; i++) {
		struct dev *d = &devs[i];

		if (d->c->broken || !d->c->port)
			continue;
		if (wl->legacy || !self_suspended) {
			if (hypercall(PVM_SIMGUEST_EVTCHN_FD, d->c->port, 0, NULL,
				      &d->efd) < 0)
				d->efd = -1;
			continue;
		}
		d->c->live = 0;
		/* The backend may live elsewhere now: the destination gives
		 * the guest a new domid when the old one is taken, and the
		 * backend's directory is named after it. Read it again, as
		 * xenbus does on resume (talk_to_otherend). */
		snprintf(path, sizeof(path), "%s/backend", d->c->fe_path);
		if (xsc_read(&xs, path, d->c->be_path, sizeof(d->c->be_path)) < 0)
			d->c->be_path[0] = '\0';
		/* the old port, if the toolstack restored it, is nobody's now */
		hypercall(PVM_SIMGUEST_EVTCHN_CLOSE, d->c->port, 0, NULL, NULL);
		d->c->port = 0;
		if (d->c->state == XenbusStateConnected ||
		    d->c->state == XenbusStateInitialised) {
			d->c->state = XenbusStateConnected;
			fe_set(d->c, XenbusStateInitialising);
		}
	}
}

void pv_main(uint8_t *mem, uint64_t nr_pages, const struct pv_workload *w)
{
	uint64_t next_publish = 0;
	uint32_t base = (uint32_t)(nr_pages - PVM_SIMGUEST_DEV_PAGES);
	bool resumed, self_suspended, cancelled;
	char buf[16];

	gmem = mem;
	gpages = nr_pages;
	wl = w;
	hdr = (void *)mem;
	/* A restored image carries the source's parked flag, and perhaps a
	 * cancel of a suspend the old process had not taken yet (the image
	 * was copied at a later pause): that suspend was cancelled, so the
	 * kernel goes on with its rings (Linux's suspend_cancel path). */
	cancelled = __atomic_load_n(&hdr->suspend_cancel, __ATOMIC_ACQUIRE);
	__atomic_store_n(&hdr->parked, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&hdr->suspend_cancel, 0, __ATOMIC_SEQ_CST);
	g = page_of(base);
	xsc_init(&xs, PVM_SIMGUEST_XS_FD);
	if (xsc_read(&xs, "domid", buf, sizeof(buf)) < 0)
		_exit(1);
	my_domid = (uint32_t)strtoul(buf, NULL, 10);

	resumed = g->magic == FE_MAGIC;
	if (!resumed) {
		memset(g, 0, PAGE);
		g->next_pfn = base + 1;
		g->next_ref = FIRST_REF;
		add_devices("vbd", DEV_VBD);
		add_devices("vif", DEV_VIF);
		g->magic = FE_MAGIC;
	}
	for (uint32_t i = 0; i < g->nr_dev && i < MAX_DEV; i++) {
		devs[ndev].c = page_of(g->dev_pfn[i]);
		devs[ndev].efd = -1;
		ndev++;
	}
	self_suspended = resumed && g->suspended && !cancelled;
	__atomic_store_n(&g->suspended, 0, __ATOMIC_SEQ_CST);
	if (resumed)
		resume(self_suspended);
	/* A kernel moved without knowing registers nothing anew (its
	 * watches, if the host carried them, still reach it). */
	if (!resumed || self_suspended) {
		watch_all();
		advertise_suspend();
	}

	for (;;) {
		struct pollfd pfd[2 + MAX_DEV];
		uint64_t now = now_ns();
		bool busy = false;
		int np = 0, timeout;

		/* The top of the loop: our state is whole here, so this is
		 * where a pause may land (guest_abi.h park_req). */
		__atomic_store_n(&hdr->pv_running, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&hdr->park_req, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&hdr->parked, 1, __ATOMIC_SEQ_CST);
			while (__atomic_load_n(&hdr->park_req, __ATOMIC_ACQUIRE))
				usleep(50);
			__atomic_store_n(&hdr->parked, 0, __ATOMIC_SEQ_CST);
			continue;
		}
		if (still_suspended()) {
			/* Frontends stopped: nothing queued, nothing consumed
			 * until the host resumes or replaces us. */
			poll(NULL, 0, 1);
			continue;
		}
		if (xsc_take_events(&xs) != 0 || next_publish == 0) {
			check_shutdown();
			for (unsigned int i = 0; i < ndev; i++)
				fe_changed(&devs[i]);
		}
		if (g->suspended)
			continue;
		for (unsigned int i = 0; i < ndev; i++) {
			struct dev *d = &devs[i];

			busy |= d->c->type == DEV_VBD ? vbd_work(d, now) :
							vif_work(d, now);
		}
		if (now >= next_publish) {
			publish();
			next_publish = now + PUBLISH_NS;
		}
		pfd[np++] = (struct pollfd){ .fd = PVM_SIMGUEST_CTL_FD,
					     .events = POLLIN };
		pfd[np++] = (struct pollfd){ .fd = xs.fd, .events = POLLIN };
		for (unsigned int i = 0; i < ndev; i++)
			if (devs[i].efd >= 0)
				pfd[np++] = (struct pollfd){ .fd = devs[i].efd,
							     .events = POLLIN };
		/* paced workloads: next due soon; a watch event that came in
		 * while we awaited a reply is already read off the socket,
		 * so poll would not see it: go round at once */
		timeout = busy || xs.events ? 0 : 5;
		if (poll(pfd, (nfds_t)np, timeout) < 0)
			continue;
		if (pfd[0].revents)
			_exit(0); /* host gone (no call outstanding) */
		if (pfd[1].revents & (POLLHUP | POLLERR))
			_exit(0);
		for (int i = 2; i < np; i++) {
			eventfd_t v;

			if (pfd[i].revents & POLLIN)
				eventfd_read(pfd[i].fd, &v);
		}
	}
}
