/*
 * Shared by the guest program's files: main.c (start-up, vCPUs, echo,
 * hypercalls) and pv.c (PV frontends and the block/net workload).
 */
#ifndef PVM_SIMGUEST_GUEST_H
#define PVM_SIMGUEST_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#define PAGE 4096u

/* What pv.c runs, parsed by main.c from the WORKLOAD argument. */
struct pv_workload {
	bool blk, net;
	uint64_t blk_rate, net_rate; /* per second per device; 0: flat out */
	bool evil_ring, evil_gref;
	bool no_suspend_ack; /* "noack": advertise suspend, never answer */
	bool legacy;
};

/* main.c: one hypercall (guest_abi.h); main thread only. */
int hypercall(uint32_t op, uint32_t a0, uint32_t a1, uint32_t *res0,
	      int *fd_out);

/*
 * pv.c: runs the frontends of every device in xenstore and the workload
 * until the host goes away (control socket EOF). @mem is all of guest
 * memory (@nr_pages); the device area is its last PVM_SIMGUEST_DEV_PAGES
 * pages. Main thread.
 */
void pv_main(uint8_t *mem, uint64_t nr_pages, const struct pv_workload *w);

#endif /* PVM_SIMGUEST_GUEST_H */
