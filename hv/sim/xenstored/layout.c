/*
 * The toolstack's part of xenstore, for the simulated host: the nodes a
 * domain and its PV devices get, with the owners and ACLs Xen's toolstack
 * (libxl) gives them, so that guests and backends see Xen's layout:
 *
 *   /local/domain/<id>                     n0 r<id>  (host-owned, guest reads)
 *     name, domid, memory/{static-max,target}, cpu, device, control
 *     control/shutdown, control/feature-*, control/sysrq,
 *     device/suspend/event-channel, data, drivers, feature, attr, error
 *                                          n<id>     (guest-owned)
 *     device/<type>/<n>                    n<fe> r<be>  frontend
 *   /local/domain/<be>/backend/<type>/<fe>/<n>  n<be> r<fe>  backend
 *
 * Every change goes through host_write()/host_rm(), so watches fire as if
 * a dom0 toolstack had made it.
 */
#include "hv/sim/xenstored/internal.h"

#include <stdio.h>
#include <string.h>

#define LPATH 256

static bool real_domid(uint16_t domid)
{
	return domid < XS_DOMID_FIRST_RESERVED;
}

static int put(struct pvm_xenstored *srv, const char *base, const char *rel,
	       const char *value, const struct xs_perm *p, uint32_t np)
{
	char path[LPATH];

	if ((size_t)snprintf(path, sizeof(path), "%s%s%s", base, *rel ? "/" : "",
			     rel) >= sizeof(path))
		return -ENAMETOOLONG;
	return host_write(srv, path, value, p, np);
}

static int make_domain(struct pvm_xenstored *srv, uint16_t domid,
		       const char *name, uint64_t mem_kib)
{
	static const char *const guest_rw[] = {
		"control/shutdown", "control/feature-poweroff",
		"control/feature-reboot", "control/feature-suspend",
		"control/sysrq", "device/suspend/event-channel", "data",
		"drivers", "feature", "attr", "error",
	};
	const struct xs_perm ro[2] = { { 0, XS_PERM_NONE }, { domid, XS_PERM_READ } };
	const struct xs_perm rw[1] = { { domid, XS_PERM_NONE } };
	char dom[40], num[24];
	int rc;

	snprintf(dom, sizeof(dom), "/local/domain/%u", (unsigned)domid);
	if ((rc = host_rm(srv, dom)) || (rc = put(srv, dom, "", "", ro, 2)) ||
	    (rc = put(srv, dom, "name", name, NULL, 0)))
		return rc;
	snprintf(num, sizeof(num), "%u", (unsigned)domid);
	if ((rc = put(srv, dom, "domid", num, NULL, 0)))
		return rc;
	snprintf(num, sizeof(num), "%llu", (unsigned long long)mem_kib);
	if ((rc = put(srv, dom, "cpu", "", NULL, 0)) ||
	    (rc = put(srv, dom, "memory/static-max", num, NULL, 0)) ||
	    (rc = put(srv, dom, "memory/target", num, NULL, 0)) ||
	    (rc = put(srv, dom, "device", "", NULL, 0)) ||
	    (rc = put(srv, dom, "control", "", NULL, 0)) ||
	    (rc = put(srv, dom, "control/platform-feature-multiprocessor-suspend",
		      "1", NULL, 0)) ||
	    (rc = put(srv, dom, "control/platform-feature-xs_reset_watches",
		      "1", NULL, 0)))
		return rc;
	for (size_t i = 0; i < PVM_ARRAY_SIZE(guest_rw); i++)
		if ((rc = put(srv, dom, guest_rw[i], "", rw, 1)))
			return rc;
	return 0;
}

int pvm_xenstored_make_domain(struct pvm_xenstored *srv, uint16_t domid,
			      const char *name, uint64_t mem_kib)
{
	int rc;

	if (domid == 0 || !real_domid(domid) || !name || !*name ||
	    strlen(name) > 256)
		return -EINVAL;
	pthread_mutex_lock(&srv->lock);
	rc = make_domain(srv, domid, name, mem_kib);
	pthread_mutex_unlock(&srv->lock);
	if (rc)
		pvm_err("xenstored: dom%u: cannot create its nodes: %s",
			(unsigned)domid, strerror(-rc));
	return rc;
}

static int add_device(struct pvm_xenstored *srv, const char *type,
		      uint16_t fe, uint16_t be, uint32_t devid)
{
	const struct xs_perm fe_perms[2] = { { fe, XS_PERM_NONE }, { be, XS_PERM_READ } };
	const struct xs_perm be_perms[2] = { { be, XS_PERM_NONE }, { fe, XS_PERM_READ } };
	char fe_path[LPATH], be_path[LPATH], num[16];
	int rc;

	snprintf(fe_path, sizeof(fe_path), "/local/domain/%u/device/%s/%u",
		 (unsigned)fe, type, devid);
	snprintf(be_path, sizeof(be_path), "/local/domain/%u/backend/%s/%u/%u",
		 (unsigned)be, type, (unsigned)fe, devid);
	/* Backend first: a frontend that sees its node finds the backend. */
	if ((rc = host_rm(srv, be_path)) || (rc = host_rm(srv, fe_path)) ||
	    (rc = put(srv, be_path, "", "", be_perms, 2)) ||
	    (rc = put(srv, be_path, "frontend", fe_path, NULL, 0)))
		return rc;
	snprintf(num, sizeof(num), "%u", (unsigned)fe);
	if ((rc = put(srv, be_path, "frontend-id", num, NULL, 0)) ||
	    (rc = put(srv, be_path, "online", "1", NULL, 0)) ||
	    (rc = put(srv, be_path, "state", "1", NULL, 0)) ||
	    (rc = put(srv, fe_path, "", "", fe_perms, 2)) ||
	    (rc = put(srv, fe_path, "backend", be_path, NULL, 0)))
		return rc;
	snprintf(num, sizeof(num), "%u", (unsigned)be);
	if ((rc = put(srv, fe_path, "backend-id", num, NULL, 0)) ||
	    (rc = put(srv, fe_path, "state", "1", NULL, 0)))
		return rc;
	return 0;
}

static bool valid_type(const char *type)
{
	size_t l = type ? strlen(type) : 0;

	if (l == 0 || l > 32)
		return false;
	for (size_t i = 0; i < l; i++)
		if (!((type[i] >= 'a' && type[i] <= 'z') ||
		      (type[i] >= '0' && type[i] <= '9') || type[i] == '_' ||
		      type[i] == '-'))
			return false;
	return true;
}

int pvm_xenstored_add_device(struct pvm_xenstored *srv, const char *type,
			     uint16_t fe_domid, uint16_t be_domid,
			     uint32_t devid)
{
	int rc;

	if (!valid_type(type) || fe_domid == 0 || !real_domid(fe_domid) ||
	    !real_domid(be_domid))
		return -EINVAL;
	pthread_mutex_lock(&srv->lock);
	rc = add_device(srv, type, fe_domid, be_domid, devid);
	pthread_mutex_unlock(&srv->lock);
	return rc;
}

/* Removes /local/domain/<id> and every backend/<type>/<id> that serves it. */
static int remove_domain(struct pvm_xenstored *srv, uint16_t domid)
{
	struct xs_node *doms = tree_lookup(srv->root, "/local/domain");
	char path[LPATH];
	int rc;

	snprintf(path, sizeof(path), "/local/domain/%u", (unsigned)domid);
	if ((rc = host_rm(srv, path)) || !doms)
		return rc;
	for (uint32_t i = 0; i < doms->nkids; i++) {
		struct xs_node *be = node_child(doms->kids[i], "backend", 7);

		for (uint32_t j = 0; be && j < be->nkids; j++) {
			if ((size_t)snprintf(path, sizeof(path),
					     "/local/domain/%s/backend/%s/%u",
					     doms->kids[i]->name,
					     be->kids[j]->name,
					     (unsigned)domid) >= sizeof(path))
				continue;
			if ((rc = host_rm(srv, path)))
				return rc;
		}
	}
	return 0;
}

int pvm_xenstored_remove_domain(struct pvm_xenstored *srv, uint16_t domid)
{
	int rc;

	if (domid == 0 || !real_domid(domid))
		return -EINVAL;
	pthread_mutex_lock(&srv->lock);
	rc = remove_domain(srv, domid);
	pthread_mutex_unlock(&srv->lock);
	return rc;
}
