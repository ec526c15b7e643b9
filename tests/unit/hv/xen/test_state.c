/*
 * hv/xen/state.c against the fake Xen host: vCPU contexts, event-channel
 * state (read by xc_evtchn_status, re-created by allocation order) and
 * grant tables (through the grant-table resource mapping, PV frames
 * translated through the p2m).
 */
#include "xentest.h"

#include <errno.h>
#include <stdlib.h>

/* ---- helpers ---------------------------------------------------------- */

/* A destination domain made through the slot, paused, then "booted". */
static uint32_t make_dest(struct pvm_hv *hv, uint64_t nr, bool boot)
{
	struct pvm_hv_domain_config c;
	uint32_t domid = 0;

	memset(&c, 0, sizeof(c));
	c.domid = PVM_HV_DOMID_ANY;
	c.nr_pages = nr;
	c.nr_vcpus = 2;
	c.start_paused = true;
	c.image = "/boot/vmlinuz";
	assert_int_equal(hv->ops->domain_create(hv, &c, &domid), 0);
	if (boot)
		fx_boot(domid, false);
	return domid;
}

/* Every proper prefix of @blob is -EBADMSG for @fn; each logged once. */
#define assert_truncations_fail(fn, hv, domid, blob, len)                    \
	do {                                                                 \
		for (size_t cut_ = 0; cut_ < (len); cut_++)                  \
			assert_fails_once((fn)((hv), (domid), (blob), cut_), \
					  -EBADMSG);                         \
	} while (0)

/* ---- vCPU ------------------------------------------------------------- */

static void test_vcpu_roundtrip(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *src = fx_add_dom(3, 64, 2, false);
	struct fx_dom *dst = fx_add_dom(4, 64, 2, false);
	struct pvm_buf b;
	const size_t size = sizeof(vcpu_guest_context_x86_64_t);

	src->vcpu[1].user_regs.rip = 0xffffffff81000000ull;
	src->vcpu[1].ctrlreg[3] = 0x1234000;
	src->vcpu[1].kernel_sp = 0xffffc90000004000ull;
	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(hv->ops->vcpu_context_get(hv, 3, 1, &b), 0);
	assert_int_equal(b.len, 24 + size);
	assert_int_equal(pvm_get_le32(b.data), 0x50435658);  /* "XVCP" */
	assert_int_equal(pvm_get_le32(b.data + 4), 1);        /* version */
	assert_int_equal(pvm_get_le32(b.data + 8), 1);        /* vcpu */
	assert_int_equal(pvm_get_le32(b.data + 12), 8);       /* width */
	assert_int_equal(pvm_get_le32(b.data + 16), size);    /* size */
	assert_int_equal(pvm_get_le32(b.data + 20), 1);       /* mfns */

	assert_int_equal(hv->ops->vcpu_context_set(hv, 4, 1, b.data, b.len),
			 0);
	assert_memory_equal(&dst->vcpu[1], &src->vcpu[1], size);

	/* Another vCPU's context, extra bytes, a bad magic. */
	assert_fails_once(hv->ops->vcpu_context_set(hv, 4, 0, b.data, b.len),
			  -EBADMSG);
	pvm_buf_put_u8(&b, 0);
	assert_fails_once(hv->ops->vcpu_context_set(hv, 4, 1, b.data, b.len),
			  -EBADMSG);
	b.len--;
	b.data[0] ^= 1;
	assert_fails_once(hv->ops->vcpu_context_set(hv, 4, 1, b.data, b.len),
			  -EBADMSG);
	b.data[0] ^= 1;
	/* Truncations (the header's and a few of the body's). */
	for (size_t cut = 0; cut < 32; cut++)
		assert_fails_once(
			hv->ops->vcpu_context_set(hv, 4, 1, b.data, cut),
			-EBADMSG);
	assert_fails_once(
		hv->ops->vcpu_context_set(hv, 4, 1, b.data, b.len - 1),
		-EBADMSG);

	/* Xen refusing. */
	fx_fail("xc_vcpu_setcontext", 1, EINVAL);
	assert_fails_once(hv->ops->vcpu_context_set(hv, 4, 1, b.data, b.len),
			  -EINVAL);
	fx_fail("xc_vcpu_getcontext", 1, EFAULT);
	assert_fails_once(hv->ops->vcpu_context_get(hv, 3, 1, &b), -EFAULT);
	pvm_buf_dispose(&b);
}

static void test_vcpu_refusals(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *d = fx_add_dom(3, 64, 2, false);
	struct pvm_buf b;

	pvm_buf_init(&b, 1 << 20);
	assert_fails_once(hv->ops->vcpu_context_get(hv, 3, 2, &b), -EINVAL);
	assert_fails_once(hv->ops->vcpu_context_get(hv, 8, 0, &b), -ESRCH);
	d->pause_count = 0;
	assert_fails_once(hv->ops->vcpu_context_get(hv, 3, 0, &b), -EBUSY);
	d->pause_count = 1;
	d->width = 4;
	assert_fails_once(hv->ops->vcpu_context_get(hv, 3, 0, &b),
			  -EOPNOTSUPP);
	d->width = 8;
	d->hvm = true;
	assert_fails_once(hv->ops->vcpu_context_get(hv, 3, 0, &b),
			  -EOPNOTSUPP);
	d->hvm = false;
	fx_fail("xc_domain_get_guest_width", 1, EPERM);
	assert_fails_once(hv->ops->vcpu_context_get(hv, 3, 0, &b), -EPERM);
	assert_int_equal(b.len, 0);
	/* A full buffer: its sticky error. */
	pvm_buf_dispose(&b);
	pvm_buf_init(&b, 100);
	assert_int_equal(hv->ops->vcpu_context_get(hv, 3, 0, &b), -E2BIG);
	pvm_buf_dispose(&b);
}

/* ---- event channels ---------------------------------------------------- */

/* The table of test_evtchn_get, annotated. */
static const uint8_t evtchn_golden[] = {
	0x01, 0, 0, 0, /* version 1 */
	0x04, 0, 0, 0, /* 4 ports */
	/* port 1: unbound, for dom0 (a backend will bind it) */
	0x01, 0, 0, 0, 0x01, 0, 0x00, 0, 0x00, 0, 0, 0, 0, 0, 0, 0,
	/* port 2: interdomain with dom0 port 17 */
	0x02, 0, 0, 0, 0x02, 0, 0x00, 0, 0x11, 0, 0, 0, 0, 0, 0, 0,
	/* port 3 closed; port 4: virq 1 */
	0x04, 0, 0, 0, 0x04, 0, 0x00, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
	/* port 5: unbound, for dom7 */
	0x05, 0, 0, 0, 0x01, 0, 0x07, 0, 0x00, 0, 0, 0, 0, 0, 0, 0,
};

static void add_golden_ports(uint32_t domid)
{
	fx_port_alloc(domid, EVTCHNSTAT_unbound, 0, 0, 0);
	fx_port_alloc(domid, EVTCHNSTAT_interdomain, 0, 17, 0);
	fx_port_alloc(domid, EVTCHNSTAT_ipi, 0, 0, 0);
	fx_port_alloc(domid, EVTCHNSTAT_virq, 0, 0, 1);
	fx_port_alloc(domid, EVTCHNSTAT_unbound, 7, 0, 0);
	fx_dom(domid)->ports[3].state = EVTCHNSTAT_closed;
}

static void test_evtchn_get(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *d = fx_add_dom(3, 64, 1, false);
	struct pvm_buf b;

	add_golden_ports(3);
	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(hv->ops->evtchn_state_get(hv, 3, &b), 0);
	assert_int_equal(b.len, sizeof(evtchn_golden));
	assert_memory_equal(b.data, evtchn_golden, sizeof(evtchn_golden));

	/* Ports past the first bucket are found too. */
	for (int i = 0; i < 70; i++)
		fx_port_alloc(3, EVTCHNSTAT_unbound, 0, 0, 0);
	pvm_buf_reset(&b);
	assert_int_equal(hv->ops->evtchn_state_get(hv, 3, &b), 0);
	assert_int_equal(pvm_get_le32(b.data + 4), 4 + 70);

	/* A channel Xen will not describe (Xen-bound) is left out. */
	pvm_buf_reset(&b);
	fx_fail("xc_evtchn_status", 2, EACCES);
	assert_int_equal(hv->ops->evtchn_state_get(hv, 3, &b), 0);
	assert_int_equal(pvm_get_le32(b.data + 4), 4 + 70 - 1);
	pvm_buf_reset(&b);
	fx_fail("xc_evtchn_status", 2, EPERM);
	assert_fails_once(hv->ops->evtchn_state_get(hv, 3, &b), -EPERM);
	d->pause_count = 0;
	assert_fails_once(hv->ops->evtchn_state_get(hv, 3, &b), -EBUSY);
	pvm_buf_dispose(&b);
}

static void test_evtchn_set(void **state)
{
	struct pvm_hv *hv = *state;
	uint32_t dst = make_dest(hv, 256, false);
	struct fx_dom *d = fx_dom(dst);
	unsigned int errors = xt_errors;

	/* The builder's xenstore/console ports are 1 and 2, for dom0. */
	assert_int_equal(d->ports[1].state, EVTCHNSTAT_unbound);
	assert_int_equal(d->ports[2].state, EVTCHNSTAT_unbound);
	assert_int_equal(hv->ops->evtchn_state_set(hv, dst, evtchn_golden,
						   sizeof(evtchn_golden)),
			 0);
	assert_int_equal(xt_errors, errors); /* a warning, not an error */
	/* Accepted as they were. */
	assert_int_equal(d->ports[1].rdom, 0);
	assert_int_equal(d->ports[2].state, EVTCHNSTAT_unbound);
	/* The gap and the virq port: placeholders for the guest itself. */
	assert_int_equal(d->ports[3].state, EVTCHNSTAT_unbound);
	assert_int_equal(d->ports[3].rdom, dst);
	assert_int_equal(d->ports[4].state, EVTCHNSTAT_unbound);
	assert_int_equal(d->ports[4].rdom, dst);
	/* Port 5 comes back unbound, reserved for its old peer. */
	assert_int_equal(d->ports[5].state, EVTCHNSTAT_unbound);
	assert_int_equal(d->ports[5].rdom, 7);
	assert_int_equal(d->ports[6].state, EVTCHNSTAT_closed);

	/* Again: every port now exists and port 3 is not a peer port. */
	assert_fails_once(hv->ops->evtchn_state_set(hv, dst, evtchn_golden,
						    sizeof(evtchn_golden)),
			  -EBUSY);
}

static void test_evtchn_set_conflicts(void **state)
{
	struct pvm_hv *hv = *state;
	uint32_t dst = make_dest(hv, 256, false);
	uint8_t blob[sizeof(evtchn_golden)];

	/* Port 1 exists for dom0; the saved one was for dom5. */
	memcpy(blob, evtchn_golden, sizeof(blob));
	blob[8 + 6] = 5;
	assert_fails_once(hv->ops->evtchn_state_set(hv, dst, blob,
						    sizeof(blob)),
			  -EBUSY);
	/* An existing port the saved table does not have. */
	static const uint8_t only_one[] = {
		1, 0, 0, 0, 1, 0, 0, 0,
		1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	};
	assert_fails_once(hv->ops->evtchn_state_set(hv, dst, only_one,
						    sizeof(only_one)),
			  -EBUSY);

	/* Xen out of ports. */
	fx_fail("xc_evtchn_alloc_unbound", 1, ENOSPC);
	assert_fails_once(hv->ops->evtchn_state_set(hv, dst, evtchn_golden,
						    sizeof(evtchn_golden)),
			  -ENOSPC);

	/* Not paused. */
	fx_dom(dst)->pause_count = 0;
	assert_fails_once(hv->ops->evtchn_state_set(hv, dst, evtchn_golden,
						    sizeof(evtchn_golden)),
			  -EBUSY);
}

/* Xen handing out another port than the next one is caught. */
static void test_evtchn_set_out_of_order(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *d = fx_add_dom(5, 64, 1, false);
	static const uint8_t two[] = {
		1, 0, 0, 0, 2, 0, 0, 0,
		1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	};

	/*
	 * Port 2 taken between our scan and our allocation (the guest
	 * is paused, but another toolstack is not): simulated by a port
	 * the scan cannot see, past the valid buckets.
	 */
	d->ports[2].state = EVTCHNSTAT_unbound;
	d->valid_ports = 2;
	assert_fails_once(hv->ops->evtchn_state_set(hv, 5, two, sizeof(two)),
			  -EIO);
}

static void test_evtchn_set_malformed(void **state)
{
	struct pvm_hv *hv = *state;
	uint32_t dst = make_dest(hv, 256, false);
	uint8_t blob[sizeof(evtchn_golden)];
	struct {
		size_t off;
		uint8_t v;
	} bad[] = {
		{ 0, 2 },       /* version */
		{ 4, 5 },       /* count larger than the entries */
		{ 8, 0 },       /* port 0 */
		{ 24, 1 },      /* port 1 twice: not ascending */
		{ 12, 0 },      /* state closed */
		{ 12, 6 },      /* state unknown */
		{ 14 + 1, 0x80 }, /* remote domid 0x8000 > DOMID_MAX */
		{ 8 + 2, 0x02 },  /* port 0x20001 past the FIFO limit */
	};

	assert_truncations_fail(hv->ops->evtchn_state_set, hv, dst,
				evtchn_golden, sizeof(evtchn_golden));
	for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++) {
		memcpy(blob, evtchn_golden, sizeof(blob));
		blob[bad[i].off] = bad[i].v;
		assert_fails_once(hv->ops->evtchn_state_set(hv, dst, blob,
							    sizeof(blob)),
				  -EBADMSG);
	}
	/* Nothing was allocated by any of them. */
	assert_int_equal(fx_calls("xc_evtchn_alloc_unbound"), 0);
}

/* ---- grants ------------------------------------------------------------ */

#define GNT(ref) fx_gnt_entry(src, (ref))

/* Source grant table of a booted PV guest (see test_grant_get). */
static void add_grants(uint32_t src)
{
	struct fx_dom *d = fx_dom(src);

	GNT(0)->flags = GTF_permit_access | GTF_reading;
	GNT(0)->domid = 0;
	GNT(0)->frame = (uint32_t)d->p2m[100];
	GNT(1)->flags = GTF_permit_access | GTF_readonly;
	GNT(1)->domid = 0;
	GNT(1)->frame = (uint32_t)d->p2m[7];
	/* Refers to a frame that is not the guest's: saved void. */
	GNT(4)->flags = GTF_permit_access;
	GNT(4)->domid = 2;
	GNT(4)->frame = 5;
}

static const uint8_t grant_golden[] = {
	0x01, 0, 0, 0,                        /* version 1 */
	0x01, 0, 0, 0,                        /* 1 frame */
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* table: Xen's */
	0x05, 0, 0, 0,                        /* 5 entries (trailing 0s cut) */
	0, 0, 0, 0,                           /* reserved */
	0x09, 0x00, 0x00, 0x00, 100, 0, 0, 0, /* permit|reading, dom0, pfn 100 */
	0x05, 0x00, 0x00, 0x00, 7, 0, 0, 0,   /* permit|readonly, dom0, pfn 7 */
	0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0,
	0x01, 0x00, 0x02, 0x00, 0xff, 0xff, 0xff, 0xff, /* void frame */
};

static void test_grant_get(void **state)
{
	struct pvm_hv *hv = *state;
	uint32_t src = 3;
	struct pvm_buf b;

	fx_add_dom(src, 256, 1, false);
	fx_boot(src, false);
	add_grants(src);
	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(hv->ops->grant_state_get(hv, src, &b), 0);
	assert_int_equal(b.len, sizeof(grant_golden));
	assert_memory_equal(b.data, grant_golden, sizeof(grant_golden));

	/* No frames in use: an empty table. */
	fx_dom(src)->gnt_frames = 0;
	pvm_buf_reset(&b);
	assert_int_equal(hv->ops->grant_state_get(hv, src, &b), 0);
	assert_int_equal(b.len, 24);
	assert_int_equal(pvm_get_le32(b.data + 4), 0);
	fx_dom(src)->gnt_frames = 1;

	pvm_buf_reset(&b);
	fx_fail("xenforeignmemory_map_resource", 1, EPERM);
	assert_fails_once(hv->ops->grant_state_get(hv, src, &b), -EPERM);
	fx_fail("xc_gnttab_query_size", 1, EFAULT);
	assert_fails_once(hv->ops->grant_state_get(hv, src, &b), -EFAULT);
	fx_fail("xc_gnttab_get_version", 1, EFAULT);
	assert_fails_once(hv->ops->grant_state_get(hv, src, &b), -EFAULT);
	fx_dom(src)->gnt_version = 2;
	assert_fails_once(hv->ops->grant_state_get(hv, src, &b),
			  -EOPNOTSUPP);
	fx_dom(src)->gnt_version = 1;
	/* The guest's p2m is needed to name frames by pfn. */
	fx_add_dom(9, 256, 1, false);
	fx_boot(9, true);
	pvm_buf_reset(&b);
	assert_int_equal(hv->ops->grant_state_get(hv, 9, &b), 0); /* none */
	assert_int_equal(pvm_get_le32(b.data + 16), 0);
	fx_gnt_entry(9, 0)->flags = GTF_permit_access;
	pvm_buf_reset(&b);
	assert_fails_once(hv->ops->grant_state_get(hv, 9, &b), -EOPNOTSUPP);
	fx_dom(src)->pause_count = 0;
	assert_fails_once(hv->ops->grant_state_get(hv, src, &b), -EBUSY);
	assert_int_equal(b.len, 0);
	pvm_buf_dispose(&b);
}

static void test_grant_set(void **state)
{
	struct pvm_hv *hv = *state;
	uint32_t dst = make_dest(hv, 256, true);
	struct fx_dom *d = fx_dom(dst);
	grant_entry_v1_t *e = fx_gnt_entry(dst, 0);

	/* The builder seeded entries 0 and 1: they are replaced. */
	assert_int_equal(e[1].flags, GTF_permit_access);
	assert_int_equal(hv->ops->grant_state_set(hv, dst, grant_golden,
						  sizeof(grant_golden)),
			 0);
	/* GTF_reading cleared; frames are this domain's machine frames. */
	assert_int_equal(e[0].flags, GTF_permit_access);
	assert_int_equal(e[0].domid, 0);
	assert_int_equal(e[0].frame, d->p2m[100]);
	assert_int_equal(e[1].flags, GTF_permit_access | GTF_readonly);
	assert_int_equal(e[1].frame, d->p2m[7]);
	/* The void entry is written invalid; the rest of the frame zero. */
	assert_int_equal(e[4].flags, 0);
	for (size_t i = 5; i < 512; i++)
		assert_int_equal(e[i].flags | e[i].domid | e[i].frame, 0);
	assert_int_equal(d->gnt_frames, 1);

	/* Three frames saved: the table grows to three. */
	uint8_t blob[sizeof(grant_golden)];

	memcpy(blob, grant_golden, sizeof(blob));
	blob[4] = 3;
	assert_int_equal(
		hv->ops->grant_state_set(hv, dst, blob, sizeof(blob)), 0);
	assert_int_equal(d->gnt_frames, 3);
	/* More than the domain may have. */
	blob[4] = 5;
	assert_fails_once(
		hv->ops->grant_state_set(hv, dst, blob, sizeof(blob)),
		-ENOSPC);
}

static void test_grant_set_refusals(void **state)
{
	struct pvm_hv *hv = *state;
	uint32_t dst = make_dest(hv, 256, false);
	uint8_t blob[sizeof(grant_golden)];

	/* Not booted: no p2m to turn pfns into machine frames. */
	assert_fails_once(hv->ops->grant_state_set(hv, dst, grant_golden,
						   sizeof(grant_golden)),
			  -EOPNOTSUPP);
	fx_boot(dst, false);
	/* A pfn outside the guest. */
	memcpy(blob, grant_golden, sizeof(blob));
	blob[24 + 5] = 1; /* entry 0 frame 100 + 256 = 356 >= 256 */
	assert_fails_once(
		hv->ops->grant_state_set(hv, dst, blob, sizeof(blob)),
		-EBADMSG);
	fx_fail("xenforeignmemory_map_resource", 1, EINVAL);
	assert_fails_once(hv->ops->grant_state_set(hv, dst, grant_golden,
						   sizeof(grant_golden)),
			  -EINVAL);
	fx_fail("xenforeignmemory_unmap_resource", 1, EIO);
	assert_fails_once(hv->ops->grant_state_set(hv, dst, grant_golden,
						   sizeof(grant_golden)),
			  -EIO);
	fx_dom(dst)->gnt_version = 2;
	assert_fails_once(hv->ops->grant_state_set(hv, dst, grant_golden,
						   sizeof(grant_golden)),
			  -EOPNOTSUPP);
	fx_dom(dst)->gnt_version = 1;
	fx_dom(dst)->pause_count = 0;
	assert_fails_once(hv->ops->grant_state_set(hv, dst, grant_golden,
						   sizeof(grant_golden)),
			  -EBUSY);
}

static void test_grant_set_malformed(void **state)
{
	struct pvm_hv *hv = *state;
	uint32_t dst = make_dest(hv, 256, true);
	uint8_t blob[sizeof(grant_golden)];
	struct {
		size_t off;
		uint8_t v;
	} bad[] = {
		{ 0, 2 },    /* version */
		{ 16, 6 },   /* 6 entries announced, 5 present */
		{ 4, 0 },    /* 0 frames but 5 entries */
		{ 5, 0x10 }, /* 4097 frames */
	};

	assert_truncations_fail(hv->ops->grant_state_set, hv, dst,
				grant_golden, sizeof(grant_golden));
	for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++) {
		memcpy(blob, grant_golden, sizeof(blob));
		blob[bad[i].off] = bad[i].v;
		if (bad[i].off == 5)
			blob[4] = 1;
		assert_fails_once(hv->ops->grant_state_set(hv, dst, blob,
							   sizeof(blob)),
				  -EBADMSG);
	}
	assert_int_equal(fx_calls("xenforeignmemory_map_resource"), 0);
}

/* HVM/PVH: frames are gfns already; no p2m involved. */
static void test_grant_hvm(void **state)
{
	struct pvm_hv *hv = *state;
	uint32_t src = 3;
	struct pvm_buf b;

	fx_add_dom(src, 256, 1, true);
	fx_add_dom(4, 256, 1, true);
	GNT(2)->flags = GTF_permit_access | GTF_writing;
	GNT(2)->domid = 0;
	GNT(2)->frame = 200;
	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(hv->ops->grant_state_get(hv, src, &b), 0);
	assert_int_equal(pvm_get_le32(b.data + 16), 3);
	assert_int_equal(pvm_get_le32(b.data + 24 + 2 * 8 + 4), 200);
	assert_int_equal(hv->ops->grant_state_set(hv, 4, b.data, b.len), 0);
	assert_int_equal(fx_gnt_entry(4, 2)->frame, 200);
	assert_int_equal(fx_gnt_entry(4, 2)->flags, GTF_permit_access);
	pvm_buf_dispose(&b);
}

/* ---- the whole restore path through the ops table ------------------------ */

/*
 * A PV guest moved to a new domain on the same (fake) host: pre-copy with
 * log-dirty, stop-and-copy, vCPU/grant/event-channel state; the new
 * domain must hold the same memory, its grants must name its own frames
 * for the same pfns, its ports must have the same numbers.
 */
static void test_move_domain(void **state)
{
	struct pvm_hv *hv = *state;
	const uint64_t nr = 512;
	const uint64_t data = nr - 16; /* tree pages above are the guest's own */
	struct pvm_bitmap bm;
	struct pvm_buf v, ev, gs;
	uint32_t src = 3, dst;
	struct fx_dom *s = fx_add_dom(src, nr, 2, false);
	uint64_t todo[512];
	int errs[64];

	s->pause_count = 0;
	fx_boot(src, false);
	for (uint64_t pfn = 0; pfn < data; pfn++)
		fx_page(src, pfn)[9] = (uint8_t)(pfn * 7);
	fx_port_alloc(src, EVTCHNSTAT_unbound, 0, 0, 0);
	fx_port_alloc(src, EVTCHNSTAT_interdomain, 0, 4, 0);
	fx_port_alloc(src, EVTCHNSTAT_interdomain, 0, 5, 0);
	GNT(8)->flags = GTF_permit_access;
	GNT(8)->frame = (uint32_t)s->p2m[33];
	s->vcpu[0].user_regs.rip = 0xabc;

	dst = make_dest(hv, nr, true);
	assert_int_equal(pvm_bitmap_init(&bm, nr), 0);
	assert_int_equal(hv->ops->logdirty_enable(hv, src), 0);
	/* Round 0: everything. Then the guest writes; round 1: those. */
	for (int round = 0; round < 3; round++) {
		size_t n = 0;

		if (round == 1) {
			fx_guest_write(src, 5, 9, 0xf5);
			fx_guest_write(src, 300, 9, 0xf6);
		}
		if (round == 2)
			assert_int_equal(hv->ops->domain_pause(hv, src), 0);
		if (round > 0)
			assert_int_equal(
				hv->ops->logdirty_read_clear(hv, src, &bm), 0);
		for (uint64_t pfn = 0; pfn < data; pfn++)
			if (round == 0 || pvm_bitmap_test(&bm, pfn))
				todo[n++] = pfn;
		for (size_t i = 0; i < n; i += 64) {
			size_t k = n - i < 64 ? n - i : 64;
			void *sp, *dp;

			assert_int_equal(hv->ops->map_pages(hv, src,
							    PVM_HV_MAP_READ,
							    todo + i, k, errs,
							    &sp),
					 0);
			assert_int_equal(hv->ops->map_pages(hv, dst,
							    PVM_HV_MAP_WRITE,
							    todo + i, k, errs,
							    &dp),
					 0);
			memcpy(dp, sp, k * PVM_PAGE_SIZE);
			assert_int_equal(hv->ops->unmap_pages(hv, sp, k), 0);
			assert_int_equal(hv->ops->unmap_pages(hv, dp, k), 0);
		}
		if (round == 1) /* two pages dirtied, both reported */
			assert_int_equal(pvm_bitmap_count(&bm), 2);
		if (round == 2) /* paused: nothing new */
			assert_int_equal(pvm_bitmap_count(&bm), 0);
	}
	pvm_buf_init(&v, 1 << 20);
	pvm_buf_init(&ev, 1 << 20);
	pvm_buf_init(&gs, 1 << 20);
	assert_int_equal(hv->ops->vcpu_context_get(hv, src, 0, &v), 0);
	assert_int_equal(hv->ops->evtchn_state_get(hv, src, &ev), 0);
	assert_int_equal(hv->ops->grant_state_get(hv, src, &gs), 0);
	assert_int_equal(hv->ops->logdirty_disable(hv, src), 0);
	assert_int_equal(hv->ops->vcpu_context_set(hv, dst, 0, v.data, v.len),
			 0);
	assert_int_equal(hv->ops->grant_state_set(hv, dst, gs.data, gs.len),
			 0);
	assert_int_equal(
		hv->ops->evtchn_state_set(hv, dst, ev.data, ev.len), 0);
	assert_int_equal(hv->ops->domain_unpause(hv, dst), 0);
	assert_int_equal(hv->ops->domain_destroy(hv, src), 0);

	for (uint64_t pfn = 0; pfn < data; pfn++) {
		uint8_t want = pfn == 5 ? 0xf5 : pfn == 300 ? 0xf6
							    : (uint8_t)(pfn * 7);
		assert_int_equal(fx_page(dst, pfn)[9], want);
	}
	assert_int_equal(fx_dom(dst)->vcpu[0].user_regs.rip, 0xabc);
	assert_int_equal(fx_gnt_entry(dst, 8)->frame, fx_dom(dst)->p2m[33]);
	assert_int_equal(fx_dom(dst)->ports[3].state, EVTCHNSTAT_unbound);
	assert_int_equal(fx_dom(dst)->ports[3].rdom, 0);
	assert_int_equal(fx_dom(dst)->pause_count, 0);
	pvm_bitmap_dispose(&bm);
	pvm_buf_dispose(&v);
	pvm_buf_dispose(&ev);
	pvm_buf_dispose(&gs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		XT_TEST(test_vcpu_roundtrip),
		XT_TEST(test_vcpu_refusals),
		XT_TEST(test_evtchn_get),
		XT_TEST(test_evtchn_set),
		XT_TEST(test_evtchn_set_conflicts),
		XT_TEST(test_evtchn_set_out_of_order),
		XT_TEST(test_evtchn_set_malformed),
		XT_TEST(test_grant_get),
		XT_TEST(test_grant_set),
		XT_TEST(test_grant_set_refusals),
		XT_TEST(test_grant_set_malformed),
		XT_TEST(test_grant_hvm),
		XT_TEST(test_move_domain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
