/*
 * The simulated host's network backend (after Linux xen-netback, copy
 * mode only) and the host switches it joins.
 *
 * A vif has two rings (xen/io/netif.h): tx (guest → host: each request
 * names a granted page holding one frame, copied out by grant copy and
 * handed to the switch) and rx (the guest posts granted empty pages; a
 * frame for the guest is copied into the next one, which marks it dirty).
 * Guest-controlled values are bounded as in vbd.c: ring indices
 * (RING_REQUEST_PROD_OVERFLOW on both rings), requests copied out first,
 * frame size and offset within the page; garbage breaks the device.
 *
 * A switch (struct sim_switch, by bridge name, created on first use) has
 * the vifs on it and an echo peer (PVM_SIMGUEST_ECHO_MAC) that sends each
 * frame addressed to it back to its sender, source and destination
 * swapped. Frames to a vif's MAC go to that vif, broadcast to all others,
 * unknown destinations vanish. Each port queues at most SIM_SW_QUEUE
 * frames for its guest (more: dropped, counted), waiting for rx buffers.
 * pvm_sim_switch_fault() drops, duplicates or reorders the next frames.
 * Everything switch-side is under h->sw_lock; delivery only queues and
 * kicks the receiving backend's thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hv/sim/xenring.h"

#include "hv/sim/internal.h"

#define ETH_HLEN 14u
#define FRAME_MAX PVM_PAGE_SIZE

static const uint8_t echo_mac[6] = PVM_SIMGUEST_ECHO_MAC;

/* ---- switches (sw_lock held) --------------------------------------- */

static struct sim_switch *sw_get(struct sim_host *h, const char *name)
{
	struct sim_switch *sw;

	for (sw = h->switches; sw; sw = sw->next)
		if (strcmp(sw->name, name) == 0)
			return sw;
	sw = calloc(1, sizeof(*sw));
	if (!sw)
		return NULL;
	snprintf(sw->name, sizeof(sw->name), "%s", name);
	sw->next = h->switches;
	h->switches = sw;
	return sw;
}

static void port_enqueue(struct sim_swport *p, const uint8_t *frame,
			 uint16_t len)
{
	unsigned int slot;
	uint8_t *copy;

	if (p->count == SIM_SW_QUEUE || !(copy = malloc(len))) {
		p->dropped++;
		return;
	}
	memcpy(copy, frame, len);
	slot = (p->head + p->count) % SIM_SW_QUEUE;
	p->q[slot] = copy;
	p->qlen[slot] = len;
	p->count++;
	eventfd_write(p->kick, 1);
}

/* Delivers @frame (from port @from, NULL for the echo peer). */
static void sw_deliver(struct sim_switch *sw, struct sim_swport *from,
		       const uint8_t *frame, uint16_t len)
{
	bool bcast = (frame[0] & 1) != 0;

	if (!memcmp(frame, echo_mac, 6)) {
		uint8_t reply[FRAME_MAX];

		if (!from)
			return;
		memcpy(reply, frame, len);
		memcpy(reply, frame + 6, 6);
		memcpy(reply + 6, echo_mac, 6);
		port_enqueue(from, reply, len);
		return;
	}
	for (struct sim_swport *p = sw->ports; p; p = p->next)
		if (p != from && (bcast || !memcmp(frame, p->mac, 6)))
			port_enqueue(p, frame, len);
}

/* A frame enters the switch from @from: the injected faults apply here. */
static void sw_send(struct sim_host *h, struct sim_swport *from,
		    const uint8_t *frame, uint16_t len)
{
	struct sim_switch *sw = from->sw;

	pthread_mutex_lock(&h->sw_lock);
	if (sw->fault_count) {
		sw->fault_count--;
		switch (sw->fault) {
		case PVM_SIM_SWITCH_DROP:
			goto out_unlock;
		case PVM_SIM_SWITCH_DUPLICATE:
			sw_deliver(sw, from, frame, len);
			break;
		case PVM_SIM_SWITCH_REORDER:
			if (!sw->held && (sw->held = malloc(len))) {
				memcpy(sw->held, frame, len);
				sw->held_len = len;
				sw->held_to = from;
				goto out_unlock;
			}
			break;
		}
	}
	sw_deliver(sw, from, frame, len);
	if (sw->held && !sw->fault_count) {
		/* the frame held back goes after this one */
		struct sim_swport *to = sw->held_to;

		for (struct sim_swport *p = sw->ports; p; p = p->next)
			if (p == to)
				sw_deliver(sw, to, sw->held, sw->held_len);
		free(sw->held);
		sw->held = NULL;
	}
out_unlock:
	pthread_mutex_unlock(&h->sw_lock);
}

int pvm_sim_switch_fault(struct pvm_hv *hv, const char *bridge,
			 enum pvm_sim_switch_fault kind, unsigned int count)
{
	struct sim_host *h = to_host(hv);
	struct sim_switch *sw;

	if (!bridge || !*bridge || strlen(bridge) >= sizeof(sw->name) ||
	    (unsigned int)kind > PVM_SIM_SWITCH_REORDER)
		return -EINVAL;
	pthread_mutex_lock(&h->sw_lock);
	sw = sw_get(h, bridge);
	if (sw) {
		sw->fault = kind;
		sw->fault_count = count;
	}
	pthread_mutex_unlock(&h->sw_lock);
	return sw ? 0 : -ENOMEM;
}

static void port_free_queue(struct sim_swport *p)
{
	while (p->count) {
		free(p->q[p->head]);
		p->head = (p->head + 1) % SIM_SW_QUEUE;
		p->count--;
	}
}

void sim_switch_free_all(struct sim_host *h)
{
	while (h->switches) {
		struct sim_switch *sw = h->switches;

		h->switches = sw->next;
		free(sw->held);
		free(sw);
	}
}

/* ---- the backend --------------------------------------------------- */

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int b[6];
	char end;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3],
		   &b[4], &b[5], &end) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return 0;
}

int sim_vif_open(struct sim_dev *v)
{
	struct sim_host *h = v->h;
	char path[160], val[40];
	struct sim_swport *p;
	int rc;

	snprintf(path, sizeof(path), "%s/mac", v->be_path);
	rc = xsc_read(&v->xs, path, val, sizeof(val));
	if (rc >= 0)
		rc = parse_mac(val, v->mac);
	if (rc < 0) {
		pvm_err("sim: d%u vif %u: bad or missing mac", v->domid,
			v->devid);
		return rc;
	}
	snprintf(path, sizeof(path), "%s/bridge", v->be_path);
	rc = xsc_read(&v->xs, path, v->bridge, sizeof(v->bridge));
	if (rc <= 0)
		snprintf(v->bridge, sizeof(v->bridge), "xenbr0");
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	memcpy(p->mac, v->mac, 6);
	p->kick = v->kick;
	pthread_mutex_lock(&h->sw_lock);
	p->sw = sw_get(h, v->bridge);
	if (p->sw) {
		p->next = p->sw->ports;
		p->sw->ports = p;
	}
	pthread_mutex_unlock(&h->sw_lock);
	if (!p->sw) {
		free(p);
		return -ENOMEM;
	}
	v->swport = p;
	snprintf(path, sizeof(path), "%s/feature-rx-copy", v->be_path);
	xsc_write(&v->xs, path, "1");
	snprintf(path, sizeof(path), "%s/feature-rx-flip", v->be_path);
	xsc_write(&v->xs, path, "0");
	snprintf(path, sizeof(path), "%s/feature-sg", v->be_path);
	xsc_write(&v->xs, path, "0");
	return 0;
}

void sim_vif_close(struct sim_dev *v)
{
	struct sim_host *h = v->h;
	struct sim_swport *p = v->swport;

	if (!p)
		return;
	pthread_mutex_lock(&h->sw_lock);
	for (struct sim_swport **pp = &p->sw->ports; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	if (p->sw->held_to == p)
		p->sw->held_to = NULL;
	port_free_queue(p);
	pthread_mutex_unlock(&h->sw_lock);
	free(p);
	v->swport = NULL;
}

/* Grant copy failed: gone or fatal. Returns a negative errno. */
static int copy_failed(struct sim_dev *v, const char *what, uint32_t ref,
		       int rc)
{
	if (rc == -ESRCH) {
		v->gone = true;
		return rc;
	}
	sim_dev_fatal(v, "%s grant ref %u: %s", what, ref, strerror(-rc));
	return rc;
}

static int tx(struct sim_dev *v)
{
	struct sim_ring *r = &v->ring[0];
	netif_tx_sring_t *sring = r->page;
	netif_tx_back_ring_t br = {
		.rsp_prod_pvt = r->rsp_prod_pvt,
		.req_cons = r->req_cons,
		.nr_ents = __RING_SIZE(sring, PVM_PAGE_SIZE),
		.sring = sring,
	};
	uint8_t frame[FRAME_MAX];
	int more, notify, rc = 0;

	do {
		RING_IDX rp = __atomic_load_n(&sring->req_prod, __ATOMIC_ACQUIRE);

		if (RING_REQUEST_PROD_OVERFLOW(&br, rp)) {
			sim_dev_fatal(v, "bogus tx ring requests: req_prod %u, "
					 "req_cons %u", rp, br.req_cons);
			rc = -EPROTO;
			goto out;
		}
		while (br.req_cons != rp &&
		       !RING_REQUEST_CONS_OVERFLOW(&br, br.req_cons)) {
			struct netif_tx_request req;
			struct netif_tx_response *rsp;
			int16_t status = NETIF_RSP_OKAY;

			RING_COPY_REQUEST(&br, br.req_cons, &req);
			br.req_cons++;
			if (req.size < ETH_HLEN || req.size > PVM_PAGE_SIZE ||
			    req.offset > PVM_PAGE_SIZE - req.size) {
				sim_dev_fatal(v, "tx frame of %u bytes at "
						 "offset %u", req.size,
					      req.offset);
				rc = -EPROTO;
				goto out;
			}
			if (req.flags & (NETTXF_more_data | NETTXF_extra_info)) {
				status = NETIF_RSP_ERROR; /* no feature-sg */
			} else {
				rc = pvm_sim_grant_copy_from(&v->h->hv, 0,
							     v->domid, req.gref,
							     req.offset, frame,
							     req.size);
				if (rc < 0) {
					rc = copy_failed(v, "tx", req.gref, rc);
					goto out;
				}
				sw_send(v->h, v->swport, frame, req.size);
			}
			rsp = RING_GET_RESPONSE(&br, br.rsp_prod_pvt);
			rsp->id = req.id;
			rsp->status = status;
			br.rsp_prod_pvt++;
			__atomic_fetch_add(&v->served, 1, __ATOMIC_RELAXED);
		}
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&br, notify);
		if (notify)
			pvm_sim_evtchn_notify(&v->h->hv, 0, v->be_port);
		RING_FINAL_CHECK_FOR_REQUESTS(&br, more);
	} while (more);
out:
	/* responses and req_event went into the guest's page */
	sim_grant_mark_mapped(&v->h->hv, r->handle);
	r->req_cons = br.req_cons;
	r->rsp_prod_pvt = br.rsp_prod_pvt;
	return rc;
}

/* Takes the next queued frame for the guest, or returns false. */
static bool next_frame(struct sim_dev *v, uint8_t *frame, uint16_t *len)
{
	struct sim_swport *p = v->swport;
	bool got = false;

	pthread_mutex_lock(&v->h->sw_lock);
	if (p->count) {
		memcpy(frame, p->q[p->head], p->qlen[p->head]);
		*len = p->qlen[p->head];
		free(p->q[p->head]);
		p->head = (p->head + 1) % SIM_SW_QUEUE;
		p->count--;
		got = true;
	}
	pthread_mutex_unlock(&v->h->sw_lock);
	return got;
}

static bool frame_waiting(struct sim_dev *v)
{
	bool any;

	pthread_mutex_lock(&v->h->sw_lock);
	any = v->swport->count != 0;
	pthread_mutex_unlock(&v->h->sw_lock);
	return any;
}

static int rx(struct sim_dev *v)
{
	struct sim_ring *r = &v->ring[1];
	netif_rx_sring_t *sring = r->page;
	netif_rx_back_ring_t br = {
		.rsp_prod_pvt = r->rsp_prod_pvt,
		.req_cons = r->req_cons,
		.nr_ents = __RING_SIZE(sring, PVM_PAGE_SIZE),
		.sring = sring,
	};
	uint8_t frame[FRAME_MAX];
	int notify, rc = 0, pushed = 0;

	while (frame_waiting(v)) {
		RING_IDX rp = __atomic_load_n(&sring->req_prod, __ATOMIC_ACQUIRE);
		struct netif_rx_request req;
		struct netif_rx_response *rsp;
		uint16_t len = 0;

		if (RING_REQUEST_PROD_OVERFLOW(&br, rp)) {
			sim_dev_fatal(v, "bogus rx ring requests: req_prod %u, "
					 "req_cons %u", rp, br.req_cons);
			rc = -EPROTO;
			goto out;
		}
		if (br.req_cons == rp) {
			/* no buffer posted: ask to be told (rx ring's
			 * req_event), then look once more */
			sring->req_event = br.req_cons + 1;
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (__atomic_load_n(&sring->req_prod, __ATOMIC_ACQUIRE) ==
			    br.req_cons)
				break;
			continue;
		}
		if (!next_frame(v, frame, &len))
			break;
		RING_COPY_REQUEST(&br, br.req_cons, &req);
		br.req_cons++;
		rc = pvm_sim_grant_copy_to(&v->h->hv, 0, v->domid, req.gref, 0,
					   frame, len);
		if (rc < 0) {
			rc = copy_failed(v, "rx", req.gref, rc);
			goto out;
		}
		rsp = RING_GET_RESPONSE(&br, br.rsp_prod_pvt);
		rsp->id = req.id;
		rsp->offset = 0;
		rsp->flags = NETRXF_data_validated;
		rsp->status = (int16_t)len;
		br.rsp_prod_pvt++;
		__atomic_fetch_add(&v->served, 1, __ATOMIC_RELAXED);
		pushed++;
	}
	if (pushed) {
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&br, notify);
		if (notify)
			pvm_sim_evtchn_notify(&v->h->hv, 0, v->be_port);
	}
out:
	/* responses and req_event went into the guest's page */
	sim_grant_mark_mapped(&v->h->hv, r->handle);
	r->req_cons = br.req_cons;
	r->rsp_prod_pvt = br.rsp_prod_pvt;
	return rc;
}

int sim_vif_process(struct sim_dev *v)
{
	int rc = tx(v);

	if (rc == 0 && !v->broken && !v->gone)
		rc = rx(v);
	return rc;
}
