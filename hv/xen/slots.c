/*
 * The Xen backend's slots of the ops table (hv.h) that are not its own
 * files' functions: the toolstack stream (guest.c's libxenguest/libxl
 * save and restore, under the slots' signatures) and the slots that mean
 * nothing here, which return -EOPNOTSUPP:
 *
 *   domain_config_get  libxl keeps the config (stream_config)
 *   dev_*        PV backends are libxl's (blkback/netback in dom0); their
 *                guests re-handshake on resume (docs/xen.md)
 *   suspend_*    libxl asks the guest itself (stream_suspend)
 *   xs_*         libxl/libxenguest carry what a guest needs of xenstore
 *   workload_read  no simulated workload runs here
 */
#include <string.h>

#include "hv/xen/internal.h"

int xen_domain_config_get(struct pvm_hv *hv, uint32_t domid,
			  struct pvm_hv_domain_spec *out)
{
	(void)hv, (void)domid;
	memset(out, 0, sizeof(*out));
	return -EOPNOTSUPP;
}

int xen_dev_pause(struct pvm_hv *hv, uint32_t domid, uint32_t type,
		  uint32_t devid, unsigned timeout_ms)
{
	(void)hv, (void)domid, (void)type, (void)devid, (void)timeout_ms;
	return -EOPNOTSUPP;
}

int xen_dev_op(struct pvm_hv *hv, uint32_t domid, uint32_t type, uint32_t devid)
{
	(void)hv, (void)domid, (void)type, (void)devid;
	return -EOPNOTSUPP;
}

int xen_dev_capture(struct pvm_hv *hv, uint32_t domid, uint32_t type,
		    uint32_t devid, struct pvm_hv_dev_state *out)
{
	(void)hv, (void)domid, (void)type, (void)devid, (void)out;
	return -EOPNOTSUPP;
}

int xen_dev_attach(struct pvm_hv *hv, const struct pvm_hv_dev_state *st)
{
	(void)hv, (void)st;
	return -EOPNOTSUPP;
}

int xen_dev_served(struct pvm_hv *hv, uint32_t domid, uint32_t type,
		   uint32_t devid, uint64_t *served_out)
{
	(void)hv, (void)domid, (void)type, (void)devid;
	*served_out = 0;
	return -EOPNOTSUPP;
}

int xen_dev_xb_state(struct pvm_hv *hv, uint32_t domid, uint32_t type,
		     uint32_t devid, uint32_t *be_out, uint32_t *fe_out)
{
	(void)hv, (void)domid, (void)type, (void)devid;
	*be_out = *fe_out = 0;
	return -EOPNOTSUPP;
}

int xen_frontend_feature(struct pvm_hv *hv, uint32_t domid, const char *name,
			 bool *on_out)
{
	(void)hv, (void)domid, (void)name;
	*on_out = false;
	return -EOPNOTSUPP;
}

int xen_suspend_op(struct pvm_hv *hv, uint32_t domid)
{
	(void)hv, (void)domid;
	return -EOPNOTSUPP;
}

int xen_suspend_flag(struct pvm_hv *hv, uint32_t domid, bool *out)
{
	(void)hv, (void)domid;
	*out = false;
	return -EOPNOTSUPP;
}

int xen_xs_export(struct pvm_hv *hv, uint32_t domid, struct pvm_buf *out)
{
	(void)hv, (void)domid, (void)out;
	return -EOPNOTSUPP;
}

int xen_xs_import(struct pvm_hv *hv, uint32_t domid, const void *buf,
		  size_t len)
{
	(void)hv, (void)domid, (void)buf, (void)len;
	return -EOPNOTSUPP;
}

int xen_workload_read(struct pvm_hv *hv, uint32_t domid,
		      struct pvm_hv_workload *out)
{
	(void)hv, (void)domid, (void)out;
	return -EOPNOTSUPP;
}

int xen_host_mem_available(struct pvm_hv *hv, uint64_t *bytes_out)
{
	(void)hv;
	*bytes_out = 0;
	return -EOPNOTSUPP;
}

int xen_stream_save(struct pvm_hv *hv, uint32_t domid, int fd, unsigned flags,
		    const struct pvm_hv_stream_cb *cb)
{
	if (flags & PVM_HV_STREAM_CHECKPOINTED)
		return pvm_hv_xen_save_checkpointed(hv, domid, fd, cb);
	return pvm_hv_xen_save(hv, domid, fd, flags & PVM_HV_STREAM_LIVE, cb);
}

int xen_stream_restore(struct pvm_hv *hv, const char *config, int fd,
		       unsigned flags, uint32_t *domid_out)
{
	bool paused = flags & PVM_HV_STREAM_PAUSED;

	if (flags & PVM_HV_STREAM_CHECKPOINTED)
		return pvm_hv_xen_restore_checkpointed(hv, config, fd, paused,
						       domid_out);
	return pvm_hv_xen_restore(hv, config, fd, paused, domid_out);
}
