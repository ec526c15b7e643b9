/*
 * A domain's toolstack configuration as the service keeps it, and its
 * key=value form (pvmig create's request, a migration's HELLO).
 */
#include "migrate/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pvquiesce/pvquiesce.h"

void dom_config_to_hv(const struct dom_config *dc,
		      struct pvm_hv_domain_config *cfg)
{
	cfg->image = dc->image[0] ? dc->image : NULL;
	cfg->frontend_gen = (enum pvm_hv_frontend_gen)dc->frontend_gen;
	cfg->nr_disks = dc->nr_disks;
	for (uint32_t i = 0; i < dc->nr_disks; i++) {
		cfg->disks[i].path = dc->disks[i].path;
		cfg->disks[i].vdev = dc->disks[i].vdev;
		cfg->disks[i].readonly = dc->disks[i].readonly;
	}
	cfg->nr_nics = dc->nr_nics;
	for (uint32_t i = 0; i < dc->nr_nics; i++) {
		memcpy(cfg->nics[i].mac, dc->nics[i].mac, 6);
		cfg->nics[i].bridge = dc->nics[i].bridge[0] ? dc->nics[i].bridge
							    : NULL;
	}
}

void dom_config_to_kv(const struct dom_config *dc, struct pvm_kv *kv)
{
	if (dc->image[0])
		pvm_kv_add(kv, "image", "%s", dc->image);
	pvm_kv_add(kv, "frontend", "%s",
		   dc->frontend_gen == PVM_HV_FRONTEND_LEGACY ? "legacy" : "modern");
	for (uint32_t i = 0; i < dc->nr_disks; i++) {
		char k[32];

		snprintf(k, sizeof(k), "disk%u", i);
		pvm_kv_add(kv, k, "%s", dc->disks[i].path);
		snprintf(k, sizeof(k), "disk%u_vdev", i);
		pvm_kv_add(kv, k, "%s", dc->disks[i].vdev);
		if (dc->disks[i].readonly) {
			snprintf(k, sizeof(k), "disk%u_ro", i);
			pvm_kv_add(kv, k, "1");
		}
	}
	for (uint32_t i = 0; i < dc->nr_nics; i++) {
		const uint8_t *m = dc->nics[i].mac;
		char k[32];

		snprintf(k, sizeof(k), "nic%u_mac", i);
		pvm_kv_add(kv, k, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1],
			   m[2], m[3], m[4], m[5]);
		if (dc->nics[i].bridge[0]) {
			snprintf(k, sizeof(k), "nic%u_bridge", i);
			pvm_kv_add(kv, k, "%s", dc->nics[i].bridge);
		}
	}
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;

	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4],
		   &v[5], &end) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 0xff)
			return -EINVAL;
		mac[i] = (uint8_t)v[i];
	}
	/* Unicast: the multicast bit of the first octet must be clear. */
	return (mac[0] & 1) ? -EINVAL : 0;
}

int dom_config_from_kv(const struct pvm_kv *kv, struct dom_config *dc,
		       const char **why_out)
{
	const char *v;
	char k[32];

	memset(dc, 0, sizeof(*dc));
	v = pvm_kv_get(kv, "image");
	if (v) {
		if (strlen(v) >= sizeof(dc->image)) {
			*why_out = "workload spec too long";
			return -EINVAL;
		}
		snprintf(dc->image, sizeof(dc->image), "%s", v);
	}
	v = pvm_kv_get(kv, "frontend");
	if (!v || !strcmp(v, "modern")) {
		dc->frontend_gen = PVM_HV_FRONTEND_MODERN;
	} else if (!strcmp(v, "legacy")) {
		dc->frontend_gen = PVM_HV_FRONTEND_LEGACY;
	} else {
		*why_out = "frontend is 'modern' or 'legacy'";
		return -EINVAL;
	}
	for (uint32_t i = 0;; i++) {
		snprintf(k, sizeof(k), "disk%u", i);
		v = pvm_kv_get(kv, k);
		if (!v)
			break;
		if (i >= PVM_HV_MAX_DISKS) {
			*why_out = "too many disks (at most 4)";
			return -EINVAL;
		}
		if (!*v || strlen(v) >= sizeof(dc->disks[i].path)) {
			*why_out = "disk path empty or too long";
			return -EINVAL;
		}
		snprintf(dc->disks[i].path, sizeof(dc->disks[i].path), "%s", v);
		snprintf(k, sizeof(k), "disk%u_vdev", i);
		v = pvm_kv_get(kv, k);
		if (!v) {
			snprintf(dc->disks[i].vdev, sizeof(dc->disks[i].vdev),
				 "xvd%c", 'a' + (char)i);
		} else if (strncmp(v, "xvd", 3) || strlen(v) != 4 ||
			   v[3] < 'a' || v[3] > 'z') {
			*why_out = "disk vdev is xvda..xvdz";
			return -EINVAL;
		} else {
			snprintf(dc->disks[i].vdev, sizeof(dc->disks[i].vdev), "%s", v);
		}
		snprintf(k, sizeof(k), "disk%u_ro", i);
		dc->disks[i].readonly = pvm_kv_get(kv, k) != NULL;
		dc->nr_disks = i + 1;
	}
	for (uint32_t i = 0;; i++) {
		snprintf(k, sizeof(k), "nic%u_mac", i);
		v = pvm_kv_get(kv, k);
		if (!v)
			break;
		if (i >= PVM_HV_MAX_NICS) {
			*why_out = "too many NICs (at most 4)";
			return -EINVAL;
		}
		if (parse_mac(v, dc->nics[i].mac)) {
			*why_out = "bad NIC MAC (say 00:16:3e:xx:xx:xx)";
			return -EINVAL;
		}
		snprintf(k, sizeof(k), "nic%u_bridge", i);
		v = pvm_kv_get(kv, k);
		if (v) {
			if (strlen(v) >= sizeof(dc->nics[i].bridge)) {
				*why_out = "bridge name too long";
				return -EINVAL;
			}
			snprintf(dc->nics[i].bridge, sizeof(dc->nics[i].bridge),
				 "%s", v);
		}
		dc->nr_nics = i + 1;
	}
	return 0;
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
