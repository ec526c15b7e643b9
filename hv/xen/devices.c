/*
 * PV devices through libxl: libxl_device_{disk,nic}_{add,remove}, run
 * synchronously (ao_how NULL: return once the backend is connected, or
 * gone). libxl writes the xenstore front/back directories and runs the
 * hotplug scripts; pvquiesce drives the xenbus handshake afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv/xen/internal.h"

static int disk_build(const struct pvm_hv_xen_disk *in, libxl_device_disk *d)
{
	if (!in->target || !*in->target || !in->vdev || !*in->vdev ||
	    in->backend_domid > PVM_HV_DOMID_MAX)
		return -EINVAL;
	d->backend_domid = in->backend_domid;
	d->format = LIBXL_DISK_FORMAT_RAW;
	d->readwrite = !in->readonly;
	if (!(d->pdev_path = strdup(in->target)) ||
	    !(d->vdev = strdup(in->vdev)))
		return -ENOMEM;
	return 0;
}

static int disk_op(struct pvm_hv *hv, uint32_t domid,
		   const struct pvm_hv_xen_disk *in, bool add)
{
	const char *what = add ? "disk attach" : "disk detach";
	libxl_device_disk d;
	int rc, lrc;

	rc = xen_check_hv(hv, what);
	if (rc)
		return rc;
	libxl_device_disk_init(&d);
	rc = disk_build(in, &d);
	if (rc) {
		pvm_err("xen: domain %u: %s: bad disk description (%s)", domid,
			what, strerror(-rc));
		goto out_dispose;
	}
	lrc = add ? libxl_device_disk_add(xen_of(hv)->ctx, domid, &d, NULL)
		  : libxl_device_disk_remove(xen_of(hv)->ctx, domid, &d,
					     NULL);
	if (lrc) {
		rc = xen_libxl_errno(lrc);
		pvm_err("xen: domain %u: %s %s (%s): libxl error %d", domid,
			what, in->vdev, in->target, lrc);
	}
out_dispose:
	libxl_device_disk_dispose(&d);
	return rc;
}

int pvm_hv_xen_disk_attach(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_hv_xen_disk *disk)
{
	return disk_op(hv, domid, disk, true);
}

int pvm_hv_xen_disk_detach(struct pvm_hv *hv, uint32_t domid,
			   const struct pvm_hv_xen_disk *disk)
{
	return disk_op(hv, domid, disk, false);
}

static int parse_mac(const char *s, libxl_mac *mac)
{
	unsigned int b[6];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3],
		   &b[4], &b[5], &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		(*mac)[i] = (uint8_t)b[i];
	return 0;
}

static int nic_build(const struct pvm_hv_xen_nic *in, libxl_device_nic *n)
{
	if (in->backend_domid > PVM_HV_DOMID_MAX || in->devid < -1)
		return -EINVAL;
	n->backend_domid = in->backend_domid;
	n->devid = in->devid;
	if (in->mac && parse_mac(in->mac, &n->mac))
		return -EINVAL;
	if (in->bridge) {
		free(n->bridge);
		if (!(n->bridge = strdup(in->bridge)))
			return -ENOMEM;
	}
	return 0;
}

static int nic_op(struct pvm_hv *hv, uint32_t domid,
		  const struct pvm_hv_xen_nic *in, bool add)
{
	const char *what = add ? "nic attach" : "nic detach";
	libxl_device_nic n;
	int rc, lrc;

	rc = xen_check_hv(hv, what);
	if (rc)
		return rc;
	libxl_device_nic_init(&n);
	rc = nic_build(in, &n);
	if (rc) {
		pvm_err("xen: domain %u: %s: bad nic description (%s)", domid,
			what, strerror(-rc));
		goto out_dispose;
	}
	if (!add && in->devid < 0) {
		pvm_err("xen: domain %u: %s needs the devid", domid, what);
		rc = -EINVAL;
		goto out_dispose;
	}
	lrc = add ? libxl_device_nic_add(xen_of(hv)->ctx, domid, &n, NULL)
		  : libxl_device_nic_remove(xen_of(hv)->ctx, domid, &n, NULL);
	if (lrc) {
		rc = xen_libxl_errno(lrc);
		pvm_err("xen: domain %u: %s (devid %d): libxl error %d", domid,
			what, in->devid, lrc);
	}
out_dispose:
	libxl_device_nic_dispose(&n);
	return rc;
}

int pvm_hv_xen_nic_attach(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_hv_xen_nic *nic)
{
	return nic_op(hv, domid, nic, true);
}

int pvm_hv_xen_nic_detach(struct pvm_hv *hv, uint32_t domid,
			  const struct pvm_hv_xen_nic *nic)
{
	return nic_op(hv, domid, nic, false);
}
