/*
 * The Xen backend's entry points when pvmig is built without the Xen
 * libraries (hv/xen/CMakeLists.txt picks this file instead of the real
 * ones): every call says so and fails with -EOPNOTSUPP.
 */
#include "common/common.h"
#include "hv/xen/xen.h"

static int absent(void)
{
	pvm_err("hv: the Xen backend is not built in (libxenctrl was not "
		"found at configure time)");
	return -EOPNOTSUPP;
}

int pvm_hv_xen_open(struct pvm_hv **hv_out)
{
	(void)hv_out;
	return absent();
}

bool pvm_hv_is_xen(const struct pvm_hv *hv)
{
	(void)hv;
	return false;
}

int pvm_hv_xen_disk_attach(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_hv_xen_disk *disk)
{
	return absent();
}

int pvm_hv_xen_disk_detach(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_hv_xen_disk *disk)
{
	return absent();
}

int pvm_hv_xen_nic_attach(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_hv_xen_nic *nic)
{
	return absent();
}

int pvm_hv_xen_nic_detach(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_hv_xen_nic *nic)
{
	return absent();
}

int pvm_hv_xen_config_json(struct pvm_hv *hv, uint32_t domid,
			   char **json_out)
{
	*json_out = NULL;
	return absent();
}

int pvm_hv_xen_suspend(struct pvm_hv *hv, uint32_t domid,
		       uint32_t timeout_ms)
{
	return absent();
}

int pvm_hv_xen_save(struct pvm_hv *hv, uint32_t domid, int fd, bool live,
		    const struct pvm_hv_xen_save_cb *cb)
{
	return absent();
}

int pvm_hv_xen_save_checkpointed(struct pvm_hv *hv, uint32_t domid, int fd,
				 const struct pvm_hv_xen_save_cb *cb)
{
	return absent();
}

int pvm_hv_xen_resume(struct pvm_hv *hv, uint32_t domid)
{
	return absent();
}

int pvm_hv_xen_restore(struct pvm_hv *hv, const char *json, int fd,
		       bool paused, uint32_t *domid_out)
{
	*domid_out = 0;
	return absent();
}

int pvm_hv_xen_restore_checkpointed(struct pvm_hv *hv, const char *json,
				    int fd, bool paused, uint32_t *domid_out)
{
	*domid_out = 0;
	return absent();
}
