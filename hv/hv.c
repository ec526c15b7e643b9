/* Run-time choice of a hypervisor backend, and the backend-neutral wire
 * form of a PV device's state (hv.h). */
#include <stdlib.h>
#include <string.h>

#include "hv/hv.h"
#include "hv/sim/sim.h"
#include "hv/xen/xen.h"

int pvm_hv_open(const char *kind, const struct pvm_hv_open_opts *opts,
		struct pvm_hv **hv_out)
{
	if (!kind || !*kind)
		kind = getenv("PVM_HV");
	if (!kind || !*kind)
		kind = "sim";
	if (strcmp(kind, "sim") == 0) {
		struct pvm_sim_config sc = { 0 };

		if (opts) {
			sc.guest_prog = opts->guest_prog;
			sc.xenstored_dir = opts->state_dir;
		}
		return pvm_sim_host_create(&sc, hv_out);
	}
	if (strcmp(kind, "xen") == 0)
		return pvm_hv_xen_open(hv_out); /* -EOPNOTSUPP if not built */
	pvm_err("hv: unknown backend \"%s\" (sim, xen)", kind);
	return -ENOENT;
}

#define DEV_STATE_VERSION 1u

void pvm_hv_dev_state_encode(const struct pvm_hv_dev_state *st,
			     struct pvm_buf *out)
{
	pvm_buf_put_u32(out, DEV_STATE_VERSION);
	pvm_buf_put_u32(out, st->type);
	pvm_buf_put_u32(out, st->domid);
	pvm_buf_put_u32(out, st->devid);
	pvm_buf_put_u32(out, st->xb_state);
	pvm_buf_put_u32(out, st->fe_port);
	pvm_buf_put_u32(out, st->nr_rings);
	pvm_buf_put_u32(out, st->mode);
	for (uint32_t i = 0; i < st->nr_rings && i < PVM_HV_DEV_MAX_RINGS; i++) {
		pvm_buf_put_u32(out, st->ring[i].ref);
		pvm_buf_put_u32(out, st->ring[i].req_cons);
		pvm_buf_put_u32(out, st->ring[i].rsp_prod_pvt);
		pvm_buf_put_u32(out, 0);
	}
	pvm_buf_put_u64(out, st->features);
}

int pvm_hv_dev_state_decode(const void *buf, size_t len,
			    struct pvm_hv_dev_state *out)
{
	struct pvm_cursor c;
	uint32_t version = 0, rsvd = 0;

	memset(out, 0, sizeof(*out));
	pvm_cursor_init(&c, buf, len);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &out->type);
	pvm_cursor_u32(&c, &out->domid);
	pvm_cursor_u32(&c, &out->devid);
	pvm_cursor_u32(&c, &out->xb_state);
	pvm_cursor_u32(&c, &out->fe_port);
	pvm_cursor_u32(&c, &out->nr_rings);
	pvm_cursor_u32(&c, &out->mode);
	if (c.err || version != DEV_STATE_VERSION || out->mode > 2 ||
	    out->nr_rings > PVM_HV_DEV_MAX_RINGS ||
	    (out->type != PVM_HV_DEV_VBD && out->type != PVM_HV_DEV_VIF))
		return -EBADMSG;
	for (uint32_t i = 0; i < out->nr_rings; i++) {
		pvm_cursor_u32(&c, &out->ring[i].ref);
		pvm_cursor_u32(&c, &out->ring[i].req_cons);
		pvm_cursor_u32(&c, &out->ring[i].rsp_prod_pvt);
		pvm_cursor_u32(&c, &rsvd);
	}
	pvm_cursor_u64(&c, &out->features);
	if (c.err || pvm_cursor_remaining(&c) != 0)
		return -EBADMSG;
	return 0;
}
