/* Run-time choice of a hypervisor backend (hv.h). */
#include <stdlib.h>
#include <string.h>

#include "hv/hv.h"
#include "hv/sim/sim.h"
#include "hv/xen/xen.h"

int pvm_hv_open(const char *name, struct pvm_hv **hv_out)
{
	if (!name || !*name)
		name = getenv("PVM_HV");
	if (!name || !*name)
		name = "sim";
	if (strcmp(name, "sim") == 0)
		return pvm_sim_host_create(NULL, hv_out);
	if (strcmp(name, "xen") == 0)
		return pvm_hv_xen_open(hv_out); /* -EOPNOTSUPP if not built */
	pvm_err("hv: unknown backend \"%s\" (sim, xen)", name);
	return -ENOENT;
}
