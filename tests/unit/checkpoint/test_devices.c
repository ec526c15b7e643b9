/*
 * Tests for checkpoint/devices.c without a host: captured backend states
 * (pvquiesce's blob) -> PVMIG_DEVICE records -> the reader -> backend
 * states again, lossless (also for a backend that is not connected);
 * records that do not fit the config or their type are refused naming the
 * device; a missing record is refused when the file says it has device
 * state, and tolerated (devices start afresh) in an older file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <xen/io/xenbus.h>

#include "ckpt_test_util.h"
#include "checkpoint/internal.h"

static void quiet_sink(void *ctx, enum pvm_log_level lvl, const char *line)
{
}

static const struct pvm_sim_backend_state vbd_st = {
	.type = PVM_SIM_DEV_VBD, .domid = 7, .devid = 51712,
	.xb_state = XenbusStateConnected, .fe_port = 5, .nr_rings = 1,
	.ring = { { .ref = 9, .req_cons = 1234, .rsp_prod_pvt = 1234 } },
	.features = PVM_SIM_FEAT_FLUSH,
};
static const struct pvm_sim_backend_state vif_st = {
	.type = PVM_SIM_DEV_VIF, .domid = 7, .devid = 0,
	.xb_state = XenbusStateConnected, .fe_port = 6, .nr_rings = 2,
	.ring = { { .ref = 10, .req_cons = 0xfffffff0u, .rsp_prod_pvt = 0xfffffff0u },
		  { .ref = 11, .req_cons = 77, .rsp_prod_pvt = 77 } },
	.features = PVM_SIM_FEAT_RX_COPY | PVM_SIM_FEAT_RX_NOTIFY,
};

static void config(struct pvm_ckpt_devices *d, bool legacy)
{
	memset(d, 0, sizeof(*d));
	d->frontend_gen = legacy ? PVM_HV_FRONTEND_LEGACY : PVM_HV_FRONTEND_MODERN;
	d->nr_disks = 1;
	strcpy(d->disks[0].vdev, "xvda");
	strcpy(d->disks[0].path, "/x.img");
	d->nr_nics = 1;
}

/* What pvm_pvq_quiesce() appends for @n states. */
static void blob(struct pvm_buf *b, const struct pvm_sim_backend_state *st,
		 size_t n)
{
	pvm_buf_put_u32(b, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		size_t at = b->len;

		pvm_buf_put_u32(b, 0);
		pvm_sim_backend_state_encode(&st[i], b);
		pvm_put_le32(b->data + at, (uint32_t)(b->len - at - 4));
	}
}

struct rd {
	struct sr_devs *devs;
	struct pvm_error *e;
};

static int on_dev(void *ctx, const struct pvm_ckpt_device *d)
{
	struct rd *r = ctx;

	return pvm_ckpt__devs_on_record(r->devs, d, r->e);
}

/* Writes @src's capture as a stream, reads it back into @dst. */
static int round_trip(const struct sr_devs *src, struct sr_devs *dst,
		      char *msg)
{
	struct pvm_ckpt_write_cfg wc = { .write = mem_write };
	struct pvm_ckpt_meta meta = { .nr_pages = 16, .nr_vcpus = 1, .domid = 7 };
	struct pvm_ckpt_read_ops ops = { .device = on_dev };
	struct mem_sink sink = { 0 };
	struct pvm_ckpt_writer *w = NULL;
	struct pvm_error e;
	struct rd r = { .devs = dst, .e = &e };
	struct mem_src in = { 0 };
	struct pvm_ckpt_read_cfg rc = {
		.read = mem_read, .read_ctx = &in, .ops = &ops, .ops_ctx = &r,
		.max_pfns = 16, .flags = PVM_CKPT_READ_REQUIRE_CHECKSUM,
	};
	int ret;

	pvm_error_init(&e);
	pvm_buf_init(&sink.b, 1 << 20);
	wc.write_ctx = &sink;
	strcpy(meta.name, "g");
	assert_int_equal(pvm_ckpt_writer_new(&wc, &w), 0);
	assert_int_equal(pvm_ckpt_write_begin(w, &meta), 0);
	assert_int_equal(pvm_ckpt__devs_write(src, w, 7, &e), 0);
	assert_int_equal(pvm_ckpt_write_finish(w), 0);
	pvm_ckpt_writer_free(w);
	in.p = sink.b.data;
	in.len = sink.b.len;
	pvm_ckpt__devs_stream_start(dst);
	ret = pvm_ckpt_read(&rc, NULL);
	pvm_buf_dispose(&sink.b);
	pvm_error_copy(&e, msg, PVM_CKPT_ERR_MAX);
	return ret;
}

static void assert_same(const struct pvm_sim_backend_state *a,
			const struct pvm_sim_backend_state *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->devid, b->devid);
	assert_int_equal(a->xb_state, b->xb_state);
	assert_int_equal(a->fe_port, b->fe_port);
	assert_int_equal(a->nr_rings, b->nr_rings);
	assert_int_equal(a->features, b->features);
	for (uint32_t i = 0; i < a->nr_rings; i++) {
		assert_int_equal(a->ring[i].ref, b->ring[i].ref);
		assert_int_equal(a->ring[i].req_cons, b->ring[i].req_cons);
		assert_int_equal(a->ring[i].rsp_prod_pvt, b->ring[i].rsp_prod_pvt);
	}
}

static void test_lossless(void **state)
{
	struct pvm_sim_backend_state st[2] = { vbd_st, vif_st };
	struct pvm_ckpt_devices d;
	struct sr_devs src, dst;
	char msg[PVM_CKPT_ERR_MAX] = "";

	for (int notconn = 0; notconn < 2; notconn++) {
		if (notconn) {
			/* a vif whose frontend had not connected: no rings */
			memset(&st[1].ring, 0, sizeof(st[1].ring));
			st[1].nr_rings = 0;
			st[1].fe_port = 0;
			st[1].xb_state = XenbusStateInitWait;
		}
		config(&d, false);
		pvm_ckpt__devs_init(&src, &d);
		pvm_ckpt__devs_init(&dst, &d);
		assert_int_equal(src.n, 2);
		assert_string_equal(src.name[0], "vbd xvda (51712)");
		assert_string_equal(src.name[1], "vif 0");
		blob(&src.state, st, 2);
		assert_int_equal(round_trip(&src, &dst, msg), 0);
		assert_true(dst.have[0] && dst.have[1]);
		assert_same(&st[0], &dst.st[0]);
		assert_same(&st[1], &dst.st[1]);
		/* the next stream brings its own set */
		pvm_ckpt__devs_stream_start(&dst);
		assert_false(dst.have[0] || dst.have[1]);
		pvm_ckpt__devs_dispose(&src);
		pvm_ckpt__devs_dispose(&dst);
	}
}

static void test_refused(void **state)
{
	struct pvm_sim_backend_state st[2] = { vbd_st, vif_st };
	struct pvm_ckpt_devices d, other;
	struct sr_devs src, dst;
	struct pvm_error e;
	char msg[PVM_CKPT_ERR_MAX] = "";

	/* a device the restoring config does not have */
	config(&d, true);
	config(&other, true);
	strcpy(other.disks[0].vdev, "xvdb");
	pvm_ckpt__devs_init(&src, &d);
	pvm_ckpt__devs_init(&dst, &other);
	blob(&src.state, st, 2);
	assert_int_not_equal(round_trip(&src, &dst, msg), 0);
	assert_non_null(strstr(msg, "PVMIG_DEVICE for device 1/51712, which the saved config does not have"));
	pvm_ckpt__devs_dispose(&dst);

	/* a connected vif with one ring: corrupt, named */
	msg[0] = '\0';
	st[1].nr_rings = 1;
	pvm_buf_reset(&src.state);
	blob(&src.state, st, 2);
	pvm_ckpt__devs_init(&dst, &d);
	assert_int_equal(round_trip(&src, &dst, msg), -EBADMSG);
	assert_non_null(strstr(msg, "vif 0: its PVMIG_DEVICE record is corrupt"));

	/* missing: refused when the file says it has device state... */
	pvm_ckpt__devs_stream_start(&dst);
	dst.have[1] = true;
	pvm_error_init(&e);
	assert_int_equal(
	    pvm_ckpt__devs_reconnect(&dst, NULL, 7, NULL, true, "f.pvm", &e),
	    -EBADMSG);
	assert_non_null(strstr(
	    e.msg, "f.pvm: no PVMIG_DEVICE record for vbd xvda (51712)"));
	/* ...tolerated in an older file: nothing is reconnected */
	pvm_error_init(&e);
	assert_int_equal(
	    pvm_ckpt__devs_reconnect(&dst, NULL, 7, NULL, false, "f.pvm", &e),
	    0);
	assert_false(dst.reconnected);
	pvm_ckpt__devs_dispose(&src);
	pvm_ckpt__devs_dispose(&dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lossless),
		cmocka_unit_test(test_refused),
	};

	pvm_log_set_sink(quiet_sink, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
