/*
 * hv/xen/ — the real Xen 4.17 backend of the hv ops table (hv/hv.h), on
 * libxenctrl, libxenforeignmemory, libxenstore and libxenlight.
 *
 *   pvm_hv_xen_open()      the instance (pvm_hv_open("xen") calls it)
 *   pvm_hv_is_xen()        is this instance the Xen backend?
 *   pvm_hv_xen_disk_*()    PV block device attach/detach (libxl)
 *   pvm_hv_xen_nic_*()     PV network device attach/detach (libxl)
 *
 * What works on stock Xen and what does not is in docs/xen.md. When the
 * Xen libraries are not found at configure time, hv/xen/absent.c provides
 * the same symbols, each returning -EOPNOTSUPP.
 */
#ifndef PVM_HV_XEN_H
#define PVM_HV_XEN_H

#include <stdbool.h>
#include <stdint.h>

#include "hv/hv.h"

/*
 * Opens the control interfaces of the local Xen host (privcmd, xenstore,
 * libxl). The caller owns *@hv_out and ends it with ops->close. -EACCES
 * without privilege; -EOPNOTSUPP when this host is not running Xen (no
 * privcmd or xenstored: the failing library is logged) or pvmig was built
 * without the Xen libraries; another negative errno otherwise.
 */
int pvm_hv_xen_open(struct pvm_hv **hv_out);

/*
 * Where domain_create records the config's frontend generation, relative
 * to /local/domain/<domid>/: "legacy" or "modern".
 */
#define PVM_HV_XEN_XS_FRONTEND "pvmig/frontend"

/* True when @hv was made by pvm_hv_xen_open(). */
bool pvm_hv_is_xen(const struct pvm_hv *hv);

/* A PV disk (after libxl_device_disk, reduced). Strings borrowed. */
struct pvm_hv_xen_disk {
	const char *target;     /* image file or block device in the backend */
	const char *vdev;       /* guest name, "xvda" */
	bool readonly;          /* mode r instead of w */
	uint32_t backend_domid; /* 0: dom0 */
};

/* A PV network interface (after libxl_device_nic, reduced). */
struct pvm_hv_xen_nic {
	int devid;              /* -1: next free; detach needs the real one */
	const char *mac;        /* "00:16:3e:xx:xx:xx", NULL: libxl picks */
	const char *bridge;     /* NULL: libxl's default (xenbr0) */
	uint32_t backend_domid; /* 0: dom0 */
};

/*
 * Attach/detach through libxl (synchronous: return after the backend is
 * connected / removed). 0 or a negative errno (-ESRCH no domain, -EEXIST
 * device exists, -EINVAL bad description, -EIO otherwise); logged once.
 * @hv must be a Xen instance (-EINVAL otherwise).
 */
int pvm_hv_xen_disk_attach(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_hv_xen_disk *disk);
int pvm_hv_xen_disk_detach(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_hv_xen_disk *disk);
int pvm_hv_xen_nic_attach(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_hv_xen_nic *nic);
int pvm_hv_xen_nic_detach(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_hv_xen_nic *nic);

#endif /* PVM_HV_XEN_H */
