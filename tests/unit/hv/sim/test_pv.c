/*
 * hv/sim/dev.c, vbd.c, vif.c and the guest's frontends (guest/pv.c): PV
 * devices on a simulated host with its xenstore server, the workload's
 * counters (each made to move), the backend seam (pause, capture,
 * destroy, attach), hostile frontends, guest death, and domain_create
 * from a short-lived thread.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "simtest.h"

#include "hv/sim/backend.h"
#include "hv/sim/internal.h" /* sim_xb_allowed */
#include "hv/sim/xenring.h"
#include "hv/sim/xenstored/xenstored.h"
#include "hv/sim/xsc.h"
#include "pvquiesce/pvquiesce.h"

#define PV_PAGES 2048u /* 8 MiB */
#define DISK_BYTES (1u << 20)
#define XVDA 51712u
#define XB_CONNECTED 4u
#define XB_CLOSING 5u
#define XB_CLOSED 6u

struct pvhost {
	char dir[64];
	char disk[96];
	struct pvm_xenstored *srv;
	pthread_t thr;
	struct pvm_hv *hv;
	struct xsc xs; /* dom0 connection for the test's reads */
};

static void *xs_thread(void *arg)
{
	pvm_xenstored_run(arg);
	return NULL;
}

static void quiet(void *ctx, enum pvm_log_level lvl, const char *line)
{
	(void)ctx;
	(void)lvl;
	(void)line;
}

static struct pvhost *pv_host(void)
{
	struct pvhost *p = calloc(1, sizeof(*p));
	struct pvm_xenstored_opts o;
	struct pvm_sim_config sc = { 0 };
	int fd;

	assert_non_null(p);
	strcpy(p->dir, "/tmp/pvm-pv-test.XXXXXX");
	assert_non_null(mkdtemp(p->dir));
	pvm_xenstored_opts_default(&o);
	o.state_dir = p->dir;
	assert_int_equal(pvm_xenstored_create(&o, &p->srv), 0);
	assert_int_equal(pthread_create(&p->thr, NULL, xs_thread, p->srv), 0);
	sc.xenstored = p->srv;
	assert_int_equal(pvm_sim_host_create(&sc, &p->hv), 0);
	assert_int_equal(pvm_xenstored_connect_domain(p->srv, 0, &fd), 0);
	xsc_init(&p->xs, fd);
	snprintf(p->disk, sizeof(p->disk), "%s/disk.img", p->dir);
	fd = open(p->disk, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
	return p;
}

static void pv_host_end(struct pvhost *p)
{
	p->hv->ops->close(p->hv);
	xsc_close(&p->xs);
	pvm_xenstored_stop(p->srv);
	pthread_join(p->thr, NULL);
	pvm_xenstored_destroy(p->srv);
	unlink(p->disk);
	rmdir(p->dir);
	free(p);
}

static struct pvm_hv_domain_config pv_config(struct pvhost *p,
					     const char *image, bool disk,
					     bool nic, uint8_t mac_last)
{
	struct pvm_hv_domain_config cfg = {
		.domid = PVM_HV_DOMID_ANY,
		.nr_pages = PV_PAGES,
		.nr_vcpus = 1,
		.name = "pv",
		.image = image,
	};

	if (disk) {
		cfg.nr_disks = 1;
		cfg.disks[0].path = p->disk;
		cfg.disks[0].vdev = "xvda";
	}
	if (nic) {
		cfg.nr_nics = 1;
		cfg.nics[0] = (struct pvm_hv_nic){
			.mac = { 0x00, 0x16, 0x3e, 0x00, 0x00, mac_last },
			.bridge = "br-test",
		};
	}
	return cfg;
}

static uint32_t pv_domain(struct pvhost *p, const char *image, bool disk,
			  bool nic)
{
	struct pvm_hv_domain_config cfg = pv_config(p, image, disk, nic, 1);
	uint32_t domid = 0;
	char wl[256];

	/* The tests' deterministic content (hv/sim/guest/content.h). */
	snprintf(wl, sizeof(wl), "content:counter,%s", image);
	cfg.image = wl;
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &domid), 0);
	return domid;
}

static struct pvm_sim_workload counters(struct pvhost *p, uint32_t domid)
{
	struct pvm_sim_workload w;
	int rc = pvm_sim_workload_read(p->hv, domid, &w);

	if (rc == -ENOENT)
		memset(&w, 0, sizeof(w));
	else
		assert_int_equal(rc, 0);
	return w;
}

#define WAIT_FOR(p, domid, w, cond)                                         \
	do {                                                                \
		uint64_t dl_ = pvm_now_ms() + SIMTEST_WAIT_MS;              \
		for (;;) {                                                  \
			w = counters(p, domid);                             \
			if (cond)                                           \
				break;                                      \
			if (pvm_now_ms() > dl_)                             \
				fail_msg("timed out waiting for " #cond     \
					 " (blk w%llu r%llu f%llu e%llu, "  \
					 "net s%llu r%llu l%llu, fe %llu)", \
					 (unsigned long long)w.blk_writes,  \
					 (unsigned long long)w.blk_reads,   \
					 (unsigned long long)w.blk_verify_fail, \
					 (unsigned long long)w.blk_io_errors, \
					 (unsigned long long)w.net_sent,    \
					 (unsigned long long)w.net_received, \
					 (unsigned long long)w.net_lost,    \
					 (unsigned long long)w.fe_connects); \
			simtest_sleep_ms(10);                               \
		}                                                           \
	} while (0)

static uint32_t be_state(struct pvhost *p, uint32_t domid, uint32_t type,
			 uint32_t devid)
{
	uint32_t st = 0;

	assert_int_equal(pvm_sim_backend_xb_state(p->hv, domid, type, devid,
						  &st), 0);
	return st;
}

static void wait_be_state(struct pvhost *p, uint32_t domid, uint32_t type,
			  uint32_t devid, uint32_t want)
{
	uint64_t dl = pvm_now_ms() + SIMTEST_WAIT_MS;

	while (be_state(p, domid, type, devid) != want) {
		if (pvm_now_ms() > dl)
			fail_msg("backend state %u, want %u",
				 be_state(p, domid, type, devid), want);
		simtest_sleep_ms(5);
	}
}

/* ---- vbd ----------------------------------------------------------- */

static void test_vbd_workload(void **state)
{
	struct pvhost *p = pv_host();
	uint32_t d = pv_domain(p, "blk:0", true, false);
	struct pvm_sim_workload w;
	char path[128], val[64];

	(void)state;
	WAIT_FOR(p, d, w, w.blk_reads >= 200 && w.blk_flushes >= 2);
	assert_int_equal(w.blk_verify_fail, 0);
	assert_int_equal(w.blk_io_errors, 0);
	assert_true(w.blk_writes >= 64);
	assert_int_equal(w.fe_connects, 1);
	assert_int_equal(be_state(p, d, PVM_SIM_DEV_VBD, XVDA), XB_CONNECTED);
	/* the handshake left Xen's nodes */
	snprintf(path, sizeof(path), "/local/domain/%u/device/vbd/%u/ring-ref",
		 d, XVDA);
	assert_true(xsc_read(&p->xs, path, val, sizeof(val)) > 0);
	snprintf(path, sizeof(path), "/local/domain/%u/device/vbd/%u/state", d,
		 XVDA);
	assert_true(xsc_read(&p->xs, path, val, sizeof(val)) > 0);
	assert_string_equal(val, "4");
	snprintf(path, sizeof(path),
		 "/local/domain/0/backend/vbd/%u/%u/sectors", d, XVDA);
	assert_true(xsc_read(&p->xs, path, val, sizeof(val)) > 0);
	assert_string_equal(val, "2048");
	/* the image holds what the guest wrote: block 0's magic */
	{
		int fd = open(p->disk, O_RDONLY | O_CLOEXEC);
		uint64_t magic = 0;

		assert_int_equal(pread(fd, &magic, 8, 0), 8);
		assert_true(magic == 0x626c6b2d636b7375ull);
		close(fd);
	}
	pv_host_end(p);
}

/* A block corrupted in the image behind the guest's back is noticed. */
static void test_vbd_corruption_counted(void **state)
{
	struct pvhost *p = pv_host();
	uint32_t d = pv_domain(p, "blk:0", true, false);
	struct pvm_sim_workload w;
	uint64_t dl;
	int fd;
	static uint8_t junk[64 * 4096];

	(void)state;
	memset(junk, 0xa5, sizeof(junk));
	WAIT_FOR(p, d, w, w.blk_reads >= 64);
	assert_int_equal(w.blk_verify_fail, 0);
	fd = open(p->disk, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	dl = pvm_now_ms() + SIMTEST_WAIT_MS;
	do {
		/* the guest rewrites each block once per pass: keep at it */
		assert_int_equal(pwrite(fd, junk, sizeof(junk), 0),
				 (ssize_t)sizeof(junk));
		simtest_sleep_ms(2);
		w = counters(p, d);
		if (pvm_now_ms() > dl)
			fail_msg("verification failures never counted");
	} while (w.blk_verify_fail == 0);
	close(fd);
	pv_host_end(p);
}

/* Writes to a read-only disk are refused (BLKIF_RSP_ERROR): counted as
 * I/O errors, and nothing reaches the image. */
static void test_vbd_readonly_io_errors(void **state)
{
	struct pvhost *p = pv_host();
	struct pvm_hv_domain_config cfg = pv_config(p, "content:counter,blk:0", true, false, 1);
	struct pvm_sim_workload w;
	uint8_t buf[4096], zero[4096] = { 0 };
	uint32_t d;
	int fd;

	(void)state;
	cfg.disks[0].readonly = true;
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), 0);
	WAIT_FOR(p, d, w, w.blk_io_errors >= 64);
	assert_int_equal(w.blk_writes, 0);
	assert_int_equal(w.blk_verify_fail, 0);
	fd = open(p->disk, O_RDONLY | O_CLOEXEC);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_memory_equal(buf, zero, sizeof(buf));
	close(fd);
	pv_host_end(p);
}

/* A small guest (no room for the device area) on a host with xenstore
 * still runs its dirty workload, and gets its nodes. */
static void test_small_guest_with_xenstore(void **state)
{
	struct pvhost *p = pv_host();
	struct pvm_hv_domain_config cfg = pv_config(p, "content:counter,dirty:16:32:1000",
						    false, false, 1);
	char path[64], val[32];
	uint32_t d;

	(void)state;
	cfg.nr_pages = 64;
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), 0);
	simtest_wait_passes(p->hv, d, simtest_passes(p->hv, d), 3);
	snprintf(path, sizeof(path), "/local/domain/%u/name", d);
	assert_true(xsc_read(&p->xs, path, val, sizeof(val)) > 0);
	assert_string_equal(val, "pv");
	pv_host_end(p);
}

/* ---- vif ----------------------------------------------------------- */

static void test_vif_echo(void **state)
{
	struct pvhost *p = pv_host();
	struct pvm_hv_domain_config cfg = pv_config(p, "content:counter,net:0", false, true, 0);
	struct pvm_sim_workload w;
	char path[96], mac[32];
	uint32_t d;

	(void)state;
	memset(cfg.nics[0].mac, 0, 6); /* the host picks one */
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), 0);
	snprintf(path, sizeof(path), "/local/domain/%u/device/vif/0/mac", d);
	assert_true(xsc_read(&p->xs, path, mac, sizeof(mac)) > 0);
	assert_string_equal(mac, "00:16:3e:00:01:00");
	WAIT_FOR(p, d, w, w.net_received >= 300);
	assert_int_equal(w.net_lost, 0);
	assert_int_equal(w.net_dup, 0);
	assert_int_equal(w.net_ooo, 0);
	assert_true(w.net_sent >= w.net_received);
	assert_int_equal(w.fe_connects, 1);
	assert_int_equal(be_state(p, d, PVM_SIM_DEV_VIF, 0), XB_CONNECTED);
	pv_host_end(p);
}

static void switch_fault_moves(enum pvm_sim_switch_fault kind)
{
	struct pvhost *p = pv_host();
	uint32_t d = pv_domain(p, "net:0", false, true);
	struct pvm_sim_workload w;

	WAIT_FOR(p, d, w, w.net_received >= 50);
	assert_int_equal(pvm_sim_switch_fault(p->hv, "br-test", kind, 3), 0);
	switch (kind) {
	case PVM_SIM_SWITCH_DROP:
		WAIT_FOR(p, d, w, w.net_lost >= 3);
		assert_int_equal(w.net_dup, 0);
		break;
	case PVM_SIM_SWITCH_DUPLICATE:
		WAIT_FOR(p, d, w, w.net_dup >= 3);
		assert_int_equal(w.net_lost, 0);
		break;
	case PVM_SIM_SWITCH_REORDER:
		WAIT_FOR(p, d, w, w.net_ooo >= 1);
		/* a reordered frame is late, not lost */
		WAIT_FOR(p, d, w, w.net_received >= 100);
		assert_int_equal(w.net_lost, 0);
		break;
	}
	pv_host_end(p);
}

static void test_vif_drop_counted(void **state)
{
	(void)state;
	switch_fault_moves(PVM_SIM_SWITCH_DROP);
}

static void test_vif_dup_counted(void **state)
{
	(void)state;
	switch_fault_moves(PVM_SIM_SWITCH_DUPLICATE);
}

static void test_vif_reorder_counted(void **state)
{
	(void)state;
	switch_fault_moves(PVM_SIM_SWITCH_REORDER);
}

/* ---- the seam ------------------------------------------------------ */

/* pause → capture → destroy → attach from state → continue, with the
 * guest running and then with it paused, for a vbd and a vif; the
 * frontends (legacy: they would never re-handshake) see nothing. */
static void reattach(struct pvhost *p, uint32_t d, uint32_t type,
		     uint32_t devid, bool pause_guest)
{
	struct pvm_sim_backend_state st, st2;
	struct pvm_buf buf;

	if (pause_guest)
		assert_int_equal(p->hv->ops->domain_pause(p->hv, d), 0);
	assert_int_equal(pvm_sim_backend_capture(p->hv, d, type, devid, &st),
			 -EBUSY);
	assert_int_equal(pvm_sim_backend_pause(p->hv, d, type, devid, 10000), 0);
	assert_int_equal(pvm_sim_backend_capture(p->hv, d, type, devid, &st), 0);
	assert_int_equal(st.xb_state, XB_CONNECTED);
	assert_int_equal(st.nr_rings, type == PVM_SIM_DEV_VIF ? 2 : 1);
	/* drained: every request taken has its response */
	for (uint32_t i = 0; i < st.nr_rings; i++)
		if (type == PVM_SIM_DEV_VBD || i == 0)
			assert_int_equal(st.ring[i].req_cons,
					 st.ring[i].rsp_prod_pvt);
	/* through the wire form, as a stream would carry it */
	pvm_buf_init(&buf, 4096);
	pvm_sim_backend_state_encode(&st, &buf);
	assert_int_equal(buf.err, 0);
	assert_int_equal(pvm_sim_backend_state_decode(buf.data, buf.len, &st2), 0);
	assert_memory_equal(&st, &st2, sizeof(st));
	for (size_t n = 0; n < buf.len; n++)
		assert_int_equal(pvm_sim_backend_state_decode(buf.data, n, &st2),
				 -EBADMSG);
	pvm_buf_dispose(&buf);

	assert_int_equal(pvm_sim_backend_destroy(p->hv, d, type, devid), 0);
	assert_int_equal(pvm_sim_backend_pause(p->hv, d, type, devid, 10000), -ESRCH);
	{
		struct pvm_sim_evtchn_status es;

		/* the frontend's port waits, unbound, for domain 0 */
		assert_int_equal(pvm_sim_evtchn_status(p->hv, d, st.fe_port,
						       &es), 0);
		assert_int_equal(es.state, PVM_SIM_EVTCHN_UNBOUND);
		assert_int_equal(es.remote_domid, 0);
	}
	assert_int_equal(pvm_sim_backend_attach(p->hv, &st2), 0);
	assert_int_equal(pvm_sim_backend_attach(p->hv, &st2), -EBUSY);
	if (pause_guest)
		assert_int_equal(p->hv->ops->domain_unpause(p->hv, d), 0);
}

static void test_backend_reattach(void **state)
{
	struct pvhost *p = pv_host();
	struct pvm_hv_domain_config cfg = pv_config(p, "content:counter,blk:0,net:0", true,
						    true, 1);
	struct pvm_sim_workload w, before;
	uint32_t d;

	(void)state;
	cfg.frontend_gen = PVM_HV_FRONTEND_LEGACY;
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), 0);
	WAIT_FOR(p, d, w, w.blk_reads >= 64 && w.net_received >= 50);
	for (int round = 0; round < 4; round++) {
		before = counters(p, d);

		reattach(p, d, PVM_SIM_DEV_VBD, XVDA, round & 1);
		reattach(p, d, PVM_SIM_DEV_VIF, 0, round & 1);
		WAIT_FOR(p, d, w,
			 w.blk_reads >= before.blk_reads + 64 &&
				 w.blk_writes >= before.blk_writes + 64 &&
				 w.net_received >= before.net_received + 50);
	}
	assert_int_equal(w.blk_verify_fail, 0);
	assert_int_equal(w.blk_io_errors, 0);
	assert_int_equal(w.fe_connects, 2); /* one vbd + one vif, once */
	assert_int_equal(w.net_dup, 0);
	assert_int_equal(w.net_ooo, 0);
	/* malformed states are refused, the live backend untouched */
	{
		struct pvm_sim_backend_state bad = { .type = 9 }, st;

		pvm_log_set_sink(quiet, NULL);
		assert_int_equal(pvm_sim_backend_attach(p->hv, &bad), -EINVAL);
		assert_int_equal(pvm_sim_backend_pause(p->hv, d, PVM_SIM_DEV_VBD,
						       XVDA, 10000), 0);
		assert_int_equal(pvm_sim_backend_capture(p->hv, d,
							 PVM_SIM_DEV_VBD, XVDA,
							 &st), 0);
		assert_int_equal(pvm_sim_backend_destroy(p->hv, d,
							 PVM_SIM_DEV_VBD, XVDA), 0);
		bad = st;
		bad.ring[0].req_cons += 40; /* not drained */
		assert_int_equal(pvm_sim_backend_attach(p->hv, &bad), -EINVAL);
		bad = st;
		bad.xb_state = 2; /* InitWait: nothing to attach to */
		assert_int_equal(pvm_sim_backend_attach(p->hv, &bad), -EINVAL);
		bad = st;
		bad.ring[0].ref = 100000; /* beyond the grant table */
		assert_int_equal(pvm_sim_backend_attach(p->hv, &bad), -EINVAL);
		bad = st;
		bad.fe_port = 1000; /* not the frontend's port */
		assert_int_equal(pvm_sim_backend_attach(p->hv, &bad), -EINVAL);
		pvm_log_set_sink(NULL, NULL);
		assert_int_equal(pvm_sim_backend_attach(p->hv, &st), 0);
		before = counters(p, d);
		WAIT_FOR(p, d, w, w.blk_reads >= before.blk_reads + 64);
		assert_int_equal(w.blk_verify_fail, 0);
	}
	pv_host_end(p);
}

/* ---- both generations across a live migration ------------------------
 * What pvquiesce will do, by hand: pre-copy under log-dirty while the
 * workload runs, quiesce the backends (pause = drain), pause, last copy,
 * vCPU/grant/event-channel state; then legacy: the destination's fresh
 * backends give way to ones attached from captured state and the
 * xenstore subtree is imported, so the frontend never re-handshakes;
 * modern: fresh backends and fresh nodes, the frontend re-handshakes and
 * re-queues. Block data read through the backends must arrive intact:
 * pages they wrote are caught by log-dirty only if they marked them. */

static void copy_pages(struct pvm_hv *src, uint32_t sd, struct pvm_hv *dst,
		       uint32_t dd, const uint64_t *pfns, size_t n)
{
	int *errs = calloc(n ? n : 1, sizeof(int));
	void *a, *b;

	assert_non_null(errs);
	if (n) {
		assert_int_equal(src->ops->map_pages(src, sd, PVM_HV_MAP_READ,
						     pfns, n, errs, &a), 0);
		assert_int_equal(dst->ops->map_pages(dst, dd, PVM_HV_MAP_WRITE,
						     pfns, n, errs, &b), 0);
		memcpy(b, a, n * PVM_PAGE_SIZE);
		assert_int_equal(src->ops->unmap_pages(src, a, n), 0);
		assert_int_equal(dst->ops->unmap_pages(dst, b, n), 0);
	}
	free(errs);
}

static void copy_dirty(struct pvm_hv *src, uint32_t sd, struct pvm_hv *dst,
		       uint32_t dd, struct pvm_bitmap *bm, uint64_t *pfns)
{
	size_t n = 0;

	assert_int_equal(src->ops->logdirty_read_clear(src, sd, bm), 0);
	for (size_t i = pvm_bitmap_next_set(bm, 0); i < bm->nbits;
	     i = pvm_bitmap_next_set(bm, i + 1))
		pfns[n++] = i;
	copy_pages(src, sd, dst, dd, pfns, n);
}

/* Moves a guest of @gen from host a to host b as migrate/ does. With
 * @transparent its backends are re-attached to its rings (a legacy guest,
 * or a modern one that was not asked to suspend: it does not know it
 * moved); without, a modern guest suspends first and re-handshakes. */
static void migrate_generation(enum pvm_hv_frontend_gen gen, bool transparent)
{
	struct pvhost *a = pv_host(), *b = pv_host();
	struct pvm_hv_domain_config cfg = pv_config(a, "content:counter,blk:0,net:0", true,
						    true, 7);
	static const uint32_t types[2] = { PVM_SIM_DEV_VBD, PVM_SIM_DEV_VIF };
	static const uint32_t ids[2] = { XVDA, 0 };
	struct pvm_sim_backend_state st[2];
	struct pvm_sim_workload w, before;
	uint64_t *pfns = calloc(PV_PAGES, sizeof(*pfns));
	struct pvm_bitmap bm;
	struct pvm_buf buf;
	struct pvm_pvq_suspend_result r;
	uint32_t sd, dd;

	assert_non_null(pfns);
	assert_int_equal(pvm_bitmap_init(&bm, PV_PAGES), 0);
	pvm_buf_init(&buf, 1 << 20);
	cfg.frontend_gen = gen;
	assert_int_equal(a->hv->ops->domain_create(a->hv, &cfg, &sd), 0);
	WAIT_FOR(a, sd, w, w.blk_reads >= 64 && w.net_received >= 20);

	cfg.domid = sd;
	cfg.start_paused = true;
	assert_int_equal(b->hv->ops->domain_create(b->hv, &cfg, &dd), 0);

	/* pre-copy while the workload runs */
	assert_int_equal(a->hv->ops->logdirty_enable(a->hv, sd), 0);
	for (size_t i = 0; i < PV_PAGES; i++)
		pfns[i] = i;
	copy_pages(a->hv, sd, b->hv, dd, pfns, PV_PAGES);
	for (int round = 0; round < 3; round++)
		copy_dirty(a->hv, sd, b->hv, dd, &bm, pfns);

	/*
	 * Quiesce as pvquiesce does: the guest first, then the backends,
	 * which serve what it queued last. A copy in between takes all the
	 * guest wrote, so the last copy holds only what the backends wrote
	 * while draining (read data, responses): found by log-dirty only
	 * because they mark what they write.
	 */
	if (!transparent) {
		assert_int_equal(pvm_pvq_suspend(a->hv, sd, 5000, &r), 0);
		assert_true(r.cooperative);
	}
	assert_int_equal(a->hv->ops->domain_pause(a->hv, sd), 0);
	copy_dirty(a->hv, sd, b->hv, dd, &bm, pfns);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pvm_sim_backend_pause(a->hv, sd, types[i],
						       ids[i], 10000), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pvm_sim_backend_capture(a->hv, sd, types[i],
							 ids[i], &st[i]), 0);
	{
		/* exact, from the paused guest's header page (xenstore lags) */
		const struct pvm_simguest_header *hd =
			(const void *)simtest_mem(a->hv, sd);

		before.blk_reads = hd->wl[PVM_SIMGUEST_C_BLK_READS];
		before.net_received = hd->wl[PVM_SIMGUEST_C_NET_RECEIVED];
	}
	copy_dirty(a->hv, sd, b->hv, dd, &bm, pfns);
	pvm_buf_reset(&buf);
	assert_int_equal(a->hv->ops->vcpu_context_get(a->hv, sd, 0, &buf), 0);
	assert_int_equal(b->hv->ops->vcpu_context_set(b->hv, dd, 0, buf.data,
						      buf.len), 0);
	pvm_buf_reset(&buf);
	assert_int_equal(a->hv->ops->grant_state_get(a->hv, sd, &buf), 0);
	assert_int_equal(b->hv->ops->grant_state_set(b->hv, dd, buf.data,
						     buf.len), 0);
	pvm_buf_reset(&buf);
	assert_int_equal(a->hv->ops->evtchn_state_get(a->hv, sd, &buf), 0);
	assert_int_equal(b->hv->ops->evtchn_state_set(b->hv, dd, buf.data,
						      buf.len), 0);
	if (transparent) {
		pvm_buf_reset(&buf);
		assert_int_equal(pvm_xs_export_domain(a->srv, (uint16_t)sd,
						      &buf), 0);
		for (int i = 0; i < 2; i++)
			assert_int_equal(pvm_sim_backend_destroy(b->hv, dd,
								 types[i],
								 ids[i]), 0);
		/* attach, then import: the order migrate/ uses; the
		 * attached backends ride out the rewrite of the frontend's
		 * nodes */
		for (int i = 0; i < 2; i++)
			assert_int_equal(pvm_sim_backend_attach(b->hv, &st[i]), 0);
		assert_int_equal(pvm_xs_import_domain(b->srv, (uint16_t)dd,
						      buf.data, buf.len), 0);
	}
	assert_int_equal(a->hv->ops->domain_destroy(a->hv, sd), 0);
	assert_int_equal(b->hv->ops->domain_unpause(b->hv, dd), 0);

	/* two more full passes, every block read back intact */
	WAIT_FOR(b, dd, w,
		 w.blk_reads >= before.blk_reads + 128 &&
			 w.net_received >= before.net_received + 50);
	assert_int_equal(w.blk_verify_fail, 0);
	assert_int_equal(w.blk_io_errors, 0);
	assert_int_equal(w.net_dup, 0);
	/* moved without knowing: connected once, never again, nothing
	 * lost or late; a modern guest that suspended: re-handshook */
	if (transparent) {
		assert_int_equal(w.net_ooo, 0);
		assert_int_equal(w.net_lost, 0);
	}
	assert_int_equal(w.fe_connects, transparent ? 2 : 4);
	assert_int_equal(be_state(b, dd, PVM_SIM_DEV_VBD, XVDA), XB_CONNECTED);
	assert_int_equal(be_state(b, dd, PVM_SIM_DEV_VIF, 0), XB_CONNECTED);
	pvm_buf_dispose(&buf);
	pvm_bitmap_dispose(&bm);
	free(pfns);
	pv_host_end(b);
	pv_host_end(a);
}

static void test_migrate_legacy(void **state)
{
	(void)state;
	migrate_generation(PVM_HV_FRONTEND_LEGACY, true);
}

static void test_migrate_modern(void **state)
{
	(void)state;
	migrate_generation(PVM_HV_FRONTEND_MODERN, false);
}

/* A modern guest paused and moved without being asked to suspend: it
 * does not know it moved, so it must go on with its rings (as a Linux
 * guest would: no resume path runs). The simulated guest used to
 * re-handshake after any restore, which made pvmig's cooperative mode
 * look right for guests that never suspended. */
static void test_migrate_modern_unsuspended(void **state)
{
	(void)state;
	migrate_generation(PVM_HV_FRONTEND_MODERN, true);
}

/* ---- hostile frontends and death ------------------------------------ */

static void hostile(const char *image)
{
	struct pvhost *p = pv_host();
	uint32_t d = pv_domain(p, image, true, false);
	uint32_t good = pv_domain(p, "blk:0", false, true);
	struct pvm_sim_backend_state st;
	struct pvm_sim_workload w;
	char path[128], val[256];

	pvm_log_set_sink(quiet, NULL);
	wait_be_state(p, d, PVM_SIM_DEV_VBD, XVDA, XB_CLOSED);
	snprintf(path, sizeof(path), "/local/domain/0/backend/vbd/%u/%u/error",
		 d, XVDA);
	assert_true(xsc_read(&p->xs, path, val, sizeof(val)) > 0);
	printf("error node: %s\n", val);
	snprintf(path, sizeof(path), "/local/domain/0/backend/vbd/%u/%u/state",
		 d, XVDA);
	assert_true(xsc_read(&p->xs, path, val, sizeof(val)) > 0);
	assert_string_equal(val, "6");
	assert_int_equal(pvm_sim_backend_pause(p->hv, d, PVM_SIM_DEV_VBD, XVDA, 10000),
			 0);
	assert_int_equal(pvm_sim_backend_capture(p->hv, d, PVM_SIM_DEV_VBD,
						 XVDA, &st), -EIO);
	pvm_log_set_sink(NULL, NULL);
	/* the host and its other guests carry on */
	WAIT_FOR(p, good, w, w.fe_connects == 1);
	w = counters(p, d);
	assert_int_equal(w.blk_verify_fail, 0);
	pv_host_end(p);
}

static void test_garbage_ring_index(void **state)
{
	(void)state;
	hostile("evil-ring");
}

static void test_garbage_grant_entry(void **state)
{
	(void)state;
	hostile("evil-gref");
}

/* Random requests pushed into a live vbd ring behind the (paused)
 * frontend's back: every one is answered or the device breaks; nothing
 * outside the ring and the guest's granted pages is touched (ASan/UBSan
 * builds run this too). */
static void test_random_requests(void **state)
{
	struct pvhost *p = pv_host();
	uint32_t d = pv_domain(p, "blk:0", true, false);
	struct pvm_sim_workload w;
	const grant_entry_v1_t *gt;
	blkif_sring_t *sring;
	uint32_t fe_port = 0;
	uint64_t ref = 0, seed = 0x9e3779b97f4a7c15ull;
	uint8_t *mem;
	char path[128];
	int answered = 0;

	(void)state;
	WAIT_FOR(p, d, w, w.blk_reads >= 64);
	assert_int_equal(p->hv->ops->domain_pause(p->hv, d), 0);
	mem = simtest_mem(p->hv, d);
	snprintf(path, sizeof(path), "/local/domain/%u/device/vbd/%u/ring-ref",
		 d, XVDA);
	assert_int_equal(xsc_read_u64(&p->xs, path, &ref), 0);
	snprintf(path, sizeof(path),
		 "/local/domain/%u/device/vbd/%u/event-channel", d, XVDA);
	{
		uint64_t port = 0;

		assert_int_equal(xsc_read_u64(&p->xs, path, &port), 0);
		fe_port = (uint32_t)port;
	}
	gt = (const grant_entry_v1_t *)(mem + PVM_SIMGUEST_GNTTAB_PFN *
						      PVM_PAGE_SIZE);
	sring = (blkif_sring_t *)(mem + (size_t)gt[ref].frame * PVM_PAGE_SIZE);
	pvm_log_set_sink(quiet, NULL);
	for (int round = 0; round < 300; round++) {
		RING_IDX prod = sring->req_prod;
		uint64_t dl = pvm_now_ms() + SIMTEST_WAIT_MS;

		if (be_state(p, d, PVM_SIM_DEV_VBD, XVDA) != XB_CONNECTED)
			break;
		for (int i = 0; i < 4; i++, prod++) {
			blkif_request_t *r = &sring->ring[prod % 32].req;
			uint8_t *b = (uint8_t *)r;

			for (size_t k = 0; k < sizeof(*r); k++) {
				seed = seed * 6364136223846793005ull + 1442695040888963407ull;
				b[k] = (uint8_t)(seed >> 56);
			}
			/* half plausible: real ops, refs the guest granted */
			if (round & 1) {
				r->operation = (uint8_t)(r->operation & 1);
				r->nr_segments = (uint8_t)(1 + r->nr_segments % 11);
				r->sector_number %= 4096;
				for (int k = 0; k < 11; k++)
					r->seg[k].gref = 8 + r->seg[k].gref % 24;
			}
		}
		__atomic_store_n(&sring->req_prod, prod, __ATOMIC_RELEASE);
		assert_int_equal(pvm_sim_evtchn_notify(p->hv, d, fe_port), 0);
		while (__atomic_load_n(&sring->rsp_prod, __ATOMIC_ACQUIRE) != prod &&
		       be_state(p, d, PVM_SIM_DEV_VBD, XVDA) == XB_CONNECTED) {
			if (pvm_now_ms() > dl)
				fail_msg("requests neither answered nor refused");
			simtest_sleep_ms(1);
		}
		answered += sring->rsp_prod == prod;
	}
	pvm_log_set_sink(NULL, NULL);
	printf("%d rounds answered before the device %s\n", answered,
	       be_state(p, d, PVM_SIM_DEV_VBD, XVDA) == XB_CONNECTED ?
		       "stayed up" : "broke");
	assert_true(answered > 0);
	assert_int_equal(p->hv->ops->domain_unpause(p->hv, d), 0);
	pv_host_end(p);
}

/* The same for a vif's tx ring: frames of random size, offset, flags and
 * grant, to the switch (and its echo peer) or refused. */
static void test_random_tx(void **state)
{
	struct pvhost *p = pv_host();
	uint32_t d = pv_domain(p, "net:0", false, true);
	struct pvm_sim_workload w;
	const grant_entry_v1_t *gt;
	netif_tx_sring_t *sring;
	uint64_t ref = 0, port = 0, seed = 0x2545f4914f6cdd1dull;
	uint8_t *mem;
	char path[128];
	int answered = 0;

	(void)state;
	WAIT_FOR(p, d, w, w.net_received >= 20);
	assert_int_equal(p->hv->ops->domain_pause(p->hv, d), 0);
	mem = simtest_mem(p->hv, d);
	snprintf(path, sizeof(path), "/local/domain/%u/device/vif/0/tx-ring-ref",
		 d);
	assert_int_equal(xsc_read_u64(&p->xs, path, &ref), 0);
	snprintf(path, sizeof(path), "/local/domain/%u/device/vif/0/event-channel",
		 d);
	assert_int_equal(xsc_read_u64(&p->xs, path, &port), 0);
	gt = (const grant_entry_v1_t *)(mem + PVM_SIMGUEST_GNTTAB_PFN *
						      PVM_PAGE_SIZE);
	sring = (netif_tx_sring_t *)(mem + (size_t)gt[ref].frame * PVM_PAGE_SIZE);
	pvm_log_set_sink(quiet, NULL);
	for (int round = 0; round < 300; round++) {
		RING_IDX prod = sring->req_prod;
		uint64_t dl = pvm_now_ms() + SIMTEST_WAIT_MS;

		if (be_state(p, d, PVM_SIM_DEV_VIF, 0) != XB_CONNECTED)
			break;
		for (int i = 0; i < 4; i++, prod++) {
			netif_tx_request_t *r = &sring->ring[prod % 256].req;

			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			r->gref = (uint32_t)(seed >> 32);
			r->offset = (uint16_t)(seed >> 16);
			r->flags = (uint16_t)seed;
			r->id = (uint16_t)(seed >> 8);
			r->size = (uint16_t)(seed >> 40);
			if (round < 200) { /* plausible first, then garbage */
				r->gref = 8 + r->gref % 26; /* what it granted */
				r->size = (uint16_t)(14 + r->size % 2000);
				r->offset = (uint16_t)(r->offset % (4096 - r->size));
				r->flags &= NETTXF_more_data;
			}
		}
		__atomic_store_n(&sring->req_prod, prod, __ATOMIC_RELEASE);
		assert_int_equal(pvm_sim_evtchn_notify(p->hv, d, (uint32_t)port), 0);
		while (__atomic_load_n(&sring->rsp_prod, __ATOMIC_ACQUIRE) != prod &&
		       be_state(p, d, PVM_SIM_DEV_VIF, 0) == XB_CONNECTED) {
			if (pvm_now_ms() > dl)
				fail_msg("frames neither answered nor refused");
			simtest_sleep_ms(1);
		}
		answered += sring->rsp_prod == prod;
	}
	pvm_log_set_sink(NULL, NULL);
	printf("%d rounds answered before the device %s\n", answered,
	       be_state(p, d, PVM_SIM_DEV_VIF, 0) == XB_CONNECTED ?
		       "stayed up" : "broke");
	assert_int_equal(answered, 200);
	/* garbage sizes break it, with the reason where a toolstack looks;
	 * it passes through Closing (5) on the way: under ASan the check
	 * came in between */
	for (uint64_t dl = pvm_now_ms() + SIMTEST_WAIT_MS;
	     be_state(p, d, PVM_SIM_DEV_VIF, 0) == XB_CLOSING &&
	     pvm_now_ms() < dl;)
		simtest_sleep_ms(1);
	assert_int_equal(be_state(p, d, PVM_SIM_DEV_VIF, 0), XB_CLOSED);
	snprintf(path, sizeof(path), "/local/domain/0/backend/vif/%u/0/error", d);
	assert_true(xsc_read(&p->xs, path, (char[256]){ 0 }, 256) > 0);
	assert_int_equal(p->hv->ops->domain_unpause(p->hv, d), 0);
	pv_host_end(p);
}

static void test_guest_death_cleans_up(void **state)
{
	struct pvhost *p = pv_host();
	uint32_t d = pv_domain(p, "blk:0,net:0", true, true);
	struct pvm_sim_backend_state st;
	struct pvm_sim_evtchn_status es;
	struct pvm_sim_workload w;
	char path[64], val[64];
	uint32_t be_port = 0;
	pid_t pid;

	(void)state;
	WAIT_FOR(p, d, w, w.blk_reads >= 10 && w.net_received >= 10);
	/* the backend's dom0 port, found through the guest's */
	assert_int_equal(pvm_sim_backend_pause(p->hv, d, PVM_SIM_DEV_VBD, XVDA, 10000),
			 0);
	assert_int_equal(pvm_sim_backend_capture(p->hv, d, PVM_SIM_DEV_VBD,
						 XVDA, &st), 0);
	assert_int_equal(pvm_sim_evtchn_status(p->hv, d, st.fe_port, &es), 0);
	be_port = es.remote_port;
	assert_int_equal(pvm_sim_backend_unpause(p->hv, d, PVM_SIM_DEV_VBD,
						 XVDA), 0);
	assert_int_equal(pvm_sim_domain_pid(p->hv, d, &pid), 0);
	pvm_log_set_sink(quiet, NULL);
	assert_int_equal(kill(pid, SIGKILL), 0);
	{
		uint64_t dl = pvm_now_ms() + SIMTEST_WAIT_MS;
		struct pvm_hv_dominfo info;

		do {
			pvm_sim_host_reap(p->hv);
			assert_int_equal(p->hv->ops->domain_info(p->hv, d, &info), 0);
			if (pvm_now_ms() > dl)
				fail_msg("death not seen");
		} while (!(info.flags & PVM_HV_DOMINF_DYING));
	}
	/* xenstore: the domain's nodes and its backends' are gone */
	snprintf(path, sizeof(path), "/local/domain/%u", d);
	assert_int_equal(xsc_read(&p->xs, path, val, sizeof(val)), -ENOENT);
	snprintf(path, sizeof(path), "/local/domain/0/backend/vbd/%u", d);
	assert_int_equal(xsc_read(&p->xs, path, val, sizeof(val)), -ENOENT);
	/* the backends notice and close their ports */
	{
		uint64_t dl = pvm_now_ms() + SIMTEST_WAIT_MS;

		for (;;) {
			assert_int_equal(pvm_sim_evtchn_status(p->hv, 0, be_port,
							       &es), 0);
			if (es.state == PVM_SIM_EVTCHN_CLOSED)
				break;
			if (pvm_now_ms() > dl)
				fail_msg("backend port %u still open", be_port);
			simtest_sleep_ms(5);
		}
	}
	assert_int_equal(p->hv->ops->domain_destroy(p->hv, d), 0);
	assert_int_equal(pvm_sim_backend_pause(p->hv, d, PVM_SIM_DEV_VBD, XVDA, 10000),
			 -ESRCH);
	pvm_log_set_sink(NULL, NULL);
	pv_host_end(p);
}

/* ---- the backend's xenbus state machine, table-driven ---------------- */

static void test_xenbus_transitions(void **state)
{
	/* every (from, to) over Unknown..Reconfigured: the diagram in dev.c */
	static const struct {
		uint32_t from, to;
	} allowed[] = {
		{ XenbusStateInitialising, XenbusStateInitWait },
		{ XenbusStateClosed, XenbusStateInitWait },
		{ XenbusStateInitWait, XenbusStateConnected },
		{ XenbusStateInitialising, XenbusStateClosing },
		{ XenbusStateInitWait, XenbusStateClosing },
		{ XenbusStateInitialised, XenbusStateClosing },
		{ XenbusStateConnected, XenbusStateClosing },
		{ XenbusStateUnknown, XenbusStateClosing },
		{ XenbusStateReconfiguring, XenbusStateClosing },
		{ XenbusStateReconfigured, XenbusStateClosing },
		{ XenbusStateConnected, XenbusStateClosed },
		{ XenbusStateClosing, XenbusStateClosed },
	};

	(void)state;
	for (uint32_t from = 0; from <= XenbusStateReconfigured; from++) {
		for (uint32_t to = 0; to <= XenbusStateReconfigured; to++) {
			bool want = false;

			for (size_t i = 0; i < PVM_ARRAY_SIZE(allowed); i++)
				want |= allowed[i].from == from &&
					allowed[i].to == to;
			if (sim_xb_allowed(from, to) != want)
				fail_msg("backend %u -> %u: %s, expected %s",
					 from, to,
					 want ? "refused" : "allowed",
					 want ? "allowed" : "refused");
		}
	}
}

/* ---- configuration and threads --------------------------------------- */

static void test_bad_device_configs(void **state)
{
	struct pvhost *p = pv_host();
	struct pvm_hv_domain_config cfg;
	struct pvm_hv *bare = simtest_host();
	uint32_t d;

	(void)state;
	pvm_log_set_sink(quiet, NULL);
	cfg = pv_config(p, NULL, true, false, 1);
	cfg.disks[0].vdev = "sda";
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), -EINVAL);
	cfg = pv_config(p, NULL, true, false, 1);
	cfg.nr_disks = PVM_HV_MAX_DISKS + 1;
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), -EINVAL);
	cfg = pv_config(p, NULL, true, false, 1);
	cfg.disks[0].path = "/nonexistent/disk.img";
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), -ENOENT);
	cfg = pv_config(p, NULL, true, false, 1);
	cfg.nr_pages = 64; /* no room for the device area */
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), -EINVAL);
	/* devices without a xenstore server */
	cfg = pv_config(p, NULL, true, false, 1);
	assert_int_equal(bare->ops->domain_create(bare, &cfg, &d), -EINVAL);
	pvm_log_set_sink(NULL, NULL);
	{
		/* nothing was left behind by the failures */
		struct pvm_hv_dominfo info[4];
		size_t n = 9;

		assert_int_equal(p->hv->ops->domain_list(p->hv, info, 4, &n), 0);
		assert_int_equal(n, 0);
	}
	bare->ops->close(bare);
	pv_host_end(p);
}

struct creator {
	struct pvm_hv *hv;
	uint32_t domid;
	int rc;
};

static void *create_and_exit(void *arg)
{
	struct creator *c = arg;
	struct pvm_hv_domain_config cfg = {
		.domid = PVM_HV_DOMID_ANY,
		.nr_pages = 64,
		.nr_vcpus = 1,
		.image = "content:counter,dirty:16:32:1000",
	};

	c->rc = c->hv->ops->domain_create(c->hv, &cfg, &c->domid);
	return NULL;
}

/* A guest outlives the thread that created it (PR_SET_PDEATHSIG is tied
 * to the forking thread, which is the host's own). */
static void test_create_from_any_thread(void **state)
{
	struct pvm_hv *hv = simtest_host();
	struct creator c = { .hv = hv };
	struct pvm_hv_dominfo info;
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, create_and_exit, &c), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(c.rc, 0);
	{
		uint64_t from = simtest_passes(hv, c.domid);

		simtest_wait_passes(hv, c.domid, from, 5);
	}
	pvm_sim_host_reap(hv);
	assert_int_equal(hv->ops->domain_info(hv, c.domid, &info), 0);
	assert_false(info.flags & PVM_HV_DOMINF_DYING);
	hv->ops->close(hv);
}


/* ---- pvquiesce on the simulated host -------------------------------- */

/* The suspend handshake: a modern guest acknowledges and suspends, and an
 * unpause in place cancels it (I/O goes on); a modern guest that never
 * answers ("noack") has the request withdrawn; a legacy one is not asked. */
static void test_suspend_request(void **state)
{
	struct pvhost *p = pv_host();
	struct pvm_hv_domain_config cfg = pv_config(p, "content:counter,blk:0", true, false, 1);
	struct pvm_pvq_suspend_result r;
	struct pvm_sim_workload w, before;
	char path[64], val[32];
	bool susp = true;
	uint32_t d;

	(void)state;
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), 0);
	WAIT_FOR(p, d, w, w.blk_reads >= 64);
	assert_int_equal(pvm_pvq_choose_mode(p->hv, d, PVM_PVQ_MODE_AUTO),
			 PVM_PVQ_MODE_COOPERATIVE);
	assert_int_equal(pvm_pvq_suspend(p->hv, d, 1000, &r), 0);
	assert_true(r.cooperative);
	snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown", d);
	assert_true(xsc_read(&p->xs, path, val, sizeof(val)) >= 0);
	assert_string_equal(val, ""); /* its acknowledgement */
	assert_int_equal(pvm_sim_domain_suspended(p->hv, d, &susp), 0);
	assert_true(susp);
	/* suspended: its frontends stopped, nothing more is read */
	before = counters(p, d);
	usleep(300000);
	w = counters(p, d);
	assert_true(w.blk_reads <= before.blk_reads + 8);
	/* resumed in place: cancelled, I/O goes on with the old rings */
	assert_int_equal(p->hv->ops->domain_pause(p->hv, d), 0);
	assert_int_equal(p->hv->ops->domain_unpause(p->hv, d), 0);
	assert_int_equal(pvm_sim_domain_suspended(p->hv, d, &susp), 0);
	assert_false(susp);
	WAIT_FOR(p, d, w, w.blk_reads >= before.blk_reads + 128);
	assert_int_equal(w.blk_verify_fail, 0);
	assert_int_equal(w.blk_io_errors, 0);
	assert_int_equal(w.fe_connects, 1); /* no re-handshake */
	assert_int_equal(p->hv->ops->domain_destroy(p->hv, d), 0);

	cfg = pv_config(p, "content:counter,blk:0,noack", true, false, 1);
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), 0);
	WAIT_FOR(p, d, w, w.blk_reads >= 64);
	assert_int_equal(pvm_pvq_suspend(p->hv, d, 100, &r), 0);
	assert_false(r.cooperative);
	assert_string_equal(r.why, "no acknowledgement within 100 ms (request withdrawn)");
	snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown", d);
	assert_true(xsc_read(&p->xs, path, val, sizeof(val)) >= 0);
	assert_string_equal(val, "");
	assert_int_equal(p->hv->ops->domain_destroy(p->hv, d), 0);

	cfg = pv_config(p, "content:counter,blk:0", true, false, 1);
	cfg.frontend_gen = PVM_HV_FRONTEND_LEGACY;
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), 0);
	WAIT_FOR(p, d, w, w.blk_reads >= 64);
	assert_int_equal(pvm_pvq_choose_mode(p->hv, d, PVM_PVQ_MODE_AUTO),
			 PVM_PVQ_MODE_TRANSPARENT);
	assert_int_equal(pvm_pvq_suspend(p->hv, d, 1000, &r), 0);
	assert_false(r.cooperative);
	assert_string_equal(r.why, "the guest does not advertise control/feature-suspend");
	assert_int_equal(p->hv->ops->domain_destroy(p->hv, d), 0);
	pv_host_end(p);
}

/* xsc transactions and compare-and-swap, the way both ends take a
 * control/shutdown request: a swap against the wrong value is refused, a
 * transaction that raced another writer is refused as a whole (EAGAIN)
 * and nothing of it applied, and of two CAS of the same request exactly
 * one wins. */
static void test_xsc_cas(void **state)
{
	struct pvhost *p = pv_host();
	struct xsc other;
	char v[32];
	int fd;

	(void)state;
	assert_int_equal(pvm_xenstored_connect_domain(p->srv, 0, &fd), 0);
	xsc_init(&other, fd);
	assert_int_equal(xsc_write(&p->xs, "/cas", "suspend"), 0);
	assert_int_equal(xsc_cas(&p->xs, "/cas", "poweroff", ""), -ECANCELED);
	assert_int_equal(xsc_cas(&p->xs, "/nothing", "suspend", ""), -ECANCELED);
	/* a transaction whose node another connection changed: EAGAIN */
	assert_int_equal(xsc_tx_start(&p->xs), 0);
	assert_int_equal(xsc_tx_start(&p->xs), -EBUSY);
	assert_true(xsc_read(&p->xs, "/cas", v, sizeof(v)) >= 0);
	assert_int_equal(xsc_write(&p->xs, "/cas", "mine"), 0);
	assert_int_equal(xsc_write(&other, "/cas", ""), 0); /* the other end */
	assert_int_equal(xsc_tx_end(&p->xs, true), -EAGAIN);
	assert_true(xsc_read(&p->xs, "/cas", v, sizeof(v)) >= 0);
	assert_string_equal(v, ""); /* nothing of the transaction applied */
	/* two CAS of one request: the first takes it, the second finds it
	 * taken */
	assert_int_equal(xsc_write(&p->xs, "/cas", "suspend"), 0);
	assert_int_equal(xsc_cas(&other, "/cas", "suspend", ""), 0);
	assert_int_equal(xsc_cas(&p->xs, "/cas", "suspend", ""), -ECANCELED);
	assert_int_equal(xsc_tx_end(&p->xs, true), -EINVAL); /* none open */
	xsc_close(&other);
	pv_host_end(p);
}

/* A stuck disk (pvmig-stall): the quiesce gives up after its bound naming
 * the disk, every backend runs again, and once the disk answers the
 * guest's I/O goes on with nothing failed. */
static void test_stuck_backend(void **state)
{
	struct pvhost *p = pv_host();
	struct pvm_hv_domain_config cfg = pv_config(p, "content:counter,blk:0,net:0", true,
						    true, 1);
	const struct pvm_pvq_device devs[] = { { PVM_PVQ_VBD, XVDA },
					       { PVM_PVQ_VIF, 0 } };
	struct pvm_sim_workload w, before;
	struct pvm_buf out;
	char path[96], why[256] = "";
	uint64_t t0;
	uint32_t d;

	(void)state;
	cfg.frontend_gen = PVM_HV_FRONTEND_LEGACY;
	assert_int_equal(p->hv->ops->domain_create(p->hv, &cfg, &d), 0);
	WAIT_FOR(p, d, w, w.blk_reads >= 64 && w.net_received >= 50);
	snprintf(path, sizeof(path), "/local/domain/0/backend/vbd/%u/%u/pvmig-stall",
		 d, XVDA);
	assert_int_equal(xsc_write(&p->xs, path, "1"), 0);
	/* Stuck once the guest's disk I/O stops (it was a fixed 100 ms,
	 * which a loaded ASan run overran: the quiesce then drained). */
	for (int i = 0; i < 50; i++) {
		before = counters(p, d);
		usleep(300000);
		w = counters(p, d);
		if (w.blk_reads == before.blk_reads &&
		    w.blk_writes == before.blk_writes)
			break;
	}
	assert_int_equal(w.blk_reads, before.blk_reads);
	pvm_buf_init(&out, 1u << 16);
	assert_int_equal(p->hv->ops->domain_pause(p->hv, d), 0);
	t0 = pvm_now_ms();
	assert_int_equal(pvm_pvq_quiesce(p->hv, d, devs, 2, PVM_PVQ_MODE_AUTO,
					 300, &out, why, sizeof(why)),
			 -ETIMEDOUT);
	assert_true(pvm_now_ms() - t0 < 3000); /* bounded */
	assert_non_null(strstr(why, "vbd xvda (51712) of domain"));
	assert_non_null(strstr(why, "did not drain within 300 ms"));
	assert_int_equal(p->hv->ops->domain_unpause(p->hv, d), 0);
	assert_int_equal(xsc_rm(&p->xs, path), 0);
	before = counters(p, d);
	WAIT_FOR(p, d, w,
		 w.blk_reads >= before.blk_reads + 64 &&
			 w.net_received >= before.net_received + 50);
	assert_int_equal(w.blk_verify_fail, 0);
	assert_int_equal(w.blk_io_errors, 0);
	assert_int_equal(w.net_dup, 0);
	assert_int_equal(w.net_ooo, 0);
	pvm_buf_dispose(&out);
	assert_int_equal(p->hv->ops->domain_destroy(p->hv, d), 0);
	pv_host_end(p);
}

/* Device state blobs are untrusted: every truncation, a mode that does not
 * exist and too many devices are refused before anything is touched. */
static void test_state_blob_bounds(void **state)
{
	struct pvhost *p = pv_host();
	struct pvm_sim_backend_state st = {
		.type = PVM_SIM_DEV_VBD, .domid = 1, .devid = XVDA,
		.xb_state = XB_CONNECTED, .fe_port = 5, .nr_rings = 1,
		.ring = { { 8, 3, 3 } }, .mode = PVM_PVQ_MODE_TRANSPARENT,
	};
	enum pvm_pvq_mode m;
	struct pvm_buf b;
	char why[256];
	size_t at;

	(void)state;
	assert_int_equal(pvm_pvq_mode_parse("transparent", &m), 0);
	assert_int_equal(m, PVM_PVQ_MODE_TRANSPARENT);
	assert_int_equal(pvm_pvq_mode_parse("cooperative", &m), 0);
	assert_int_equal(pvm_pvq_mode_parse("auto", &m), 0);
	assert_int_equal(pvm_pvq_mode_parse("Transparent", &m), -EINVAL);
	pvm_buf_init(&b, 4096);
	pvm_buf_put_u32(&b, 1);
	at = b.len;
	pvm_buf_put_u32(&b, 0);
	pvm_sim_backend_state_encode(&st, &b);
	pvm_put_le32(b.data + at, (uint32_t)(b.len - at - 4));
	assert_int_equal(pvm_pvq_state_mode(b.data, b.len),
			 PVM_PVQ_MODE_TRANSPARENT);
	for (size_t len = 0; len < b.len; len++)
		assert_int_equal(pvm_pvq_reconnect(p->hv, 1, PVM_HV_FRONTEND_LEGACY,
						   PVM_PVQ_MODE_AUTO, b.data, len,
						   NULL, why, sizeof(why)),
				 -EBADMSG);
	/* mode 3 (reserved) */
	b.data[at + 4 + 28] = 3;
	assert_int_equal(pvm_pvq_reconnect(p->hv, 1, PVM_HV_FRONTEND_LEGACY,
					   PVM_PVQ_MODE_AUTO, b.data, b.len,
					   NULL, why, sizeof(why)),
			 -EBADMSG);
	/* more devices than a guest can have */
	pvm_put_le32(b.data, PVM_PVQ_MAX_DEVICES + 1);
	assert_int_equal(pvm_pvq_reconnect(p->hv, 1, PVM_HV_FRONTEND_LEGACY,
					   PVM_PVQ_MODE_AUTO, b.data, b.len,
					   NULL, why, sizeof(why)),
			 -EBADMSG);
	pvm_buf_dispose(&b);
	pv_host_end(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vbd_workload),
		cmocka_unit_test(test_vbd_corruption_counted),
		cmocka_unit_test(test_vbd_readonly_io_errors),
		cmocka_unit_test(test_small_guest_with_xenstore),
		cmocka_unit_test(test_vif_echo),
		cmocka_unit_test(test_vif_drop_counted),
		cmocka_unit_test(test_vif_dup_counted),
		cmocka_unit_test(test_vif_reorder_counted),
		cmocka_unit_test(test_backend_reattach),
		cmocka_unit_test(test_migrate_legacy),
		cmocka_unit_test(test_migrate_modern),
		cmocka_unit_test(test_garbage_ring_index),
		cmocka_unit_test(test_garbage_grant_entry),
		cmocka_unit_test(test_random_requests),
		cmocka_unit_test(test_random_tx),
		cmocka_unit_test(test_guest_death_cleans_up),
		cmocka_unit_test(test_xenbus_transitions),
		cmocka_unit_test(test_bad_device_configs),
		cmocka_unit_test(test_create_from_any_thread),
		cmocka_unit_test(test_suspend_request),
		cmocka_unit_test(test_migrate_modern_unsuspended),
		cmocka_unit_test(test_xsc_cas),
		cmocka_unit_test(test_stuck_backend),
		cmocka_unit_test(test_state_blob_bounds),
	};

	signal(SIGPIPE, SIG_IGN);
	simtest_require_kernel();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
