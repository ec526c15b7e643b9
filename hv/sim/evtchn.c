/*
 * Event channels of simulated domains, after Xen's xen/common/event_channel.c
 * (two states of interest: ECS_UNBOUND and ECS_INTERDOMAIN).
 *
 * Each domain has a table of SIM_EVTCHN_MAX ports; port 0 is never handed
 * out (Xen reserves it). Each open port counts events delivered to it in an
 * eventfd, made when someone first asks for it (until then in a counter, so
 * a thousand idle ports cost no fds): notify on one end of an interdomain channel adds 1 to
 * the other end's eventfd, which whoever serves that end (a backend in the
 * host; later the guest, which will receive it over its control socket)
 * polls. Closing one end leaves the other UNBOUND and reserved for the
 * closer's domid, as in Xen, so it can be bound again (that is also how
 * evtchn_state_set re-creates a restored domain's ports).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hv/sim/internal.h"

#define EVTCHN_STATE_VERSION 1u

int sim_evtchn_init(struct sim_domain *d)
{
	d->ports = calloc(SIM_EVTCHN_MAX, sizeof(*d->ports));
	if (!d->ports)
		return -ENOMEM;
	for (uint32_t p = 0; p < SIM_EVTCHN_MAX; p++)
		d->ports[p].efd = -1;
	return 0;
}

/* Domain 0 or a live guest. Lock held. */
static int evt_dom(struct sim_host *h, uint32_t domid, struct sim_domain **out)
{
	if (domid == 0) {
		*out = &h->dom0;
		return 0;
	}
	return sim_dom_get(h, domid, true, out);
}

static struct sim_port *open_port(struct sim_domain *d, uint32_t port)
{
	if (port == 0 || port >= SIM_EVTCHN_MAX || !d->ports ||
	    d->ports[port].state == PORT_FREE)
		return NULL;
	return &d->ports[port];
}

/* Takes port @want (0: the lowest free) of @d. Lock held. */
static int port_take(struct sim_domain *d, uint32_t want, uint32_t *port_out)
{
	uint32_t p = want;

	if (!want)
		for (p = 1; p < SIM_EVTCHN_MAX && d->ports[p].state != PORT_FREE;
		     p++)
			;
	if (p >= SIM_EVTCHN_MAX)
		return -ENOSPC;
	if (d->ports[p].state != PORT_FREE)
		return -EEXIST;
	d->ports[p].efd = -1;
	d->ports[p].pending = 0;
	*port_out = p;
	return 0;
}

static void port_free(struct sim_port *p)
{
	if (p->efd >= 0)
		close(p->efd);
	memset(p, 0, sizeof(*p));
	p->efd = -1;
}

int sim_evtchn_alloc_unbound(struct sim_host *h, uint32_t domid,
			     uint32_t remote_domid, uint32_t *port_out)
{
	struct sim_domain *d, *rd;
	uint32_t port;
	int rc;

	rc = evt_dom(h, domid, &d);
	if (rc == 0)
		rc = evt_dom(h, remote_domid, &rd);
	if (rc == 0)
		rc = port_take(d, 0, &port);
	if (rc == 0) {
		d->ports[port].state = PORT_UNBOUND;
		d->ports[port].remote_domid = (uint16_t)remote_domid;
		*port_out = port;
	}
	return rc;
}

int sim_evtchn_bind_interdomain(struct sim_host *h, uint32_t domid,
				uint32_t remote_domid, uint32_t remote_port,
				uint32_t *port_out)
{
	struct sim_domain *d, *rd;
	struct sim_port *rp;
	uint32_t port;
	int rc;

	rc = evt_dom(h, domid, &d);
	if (rc == 0)
		rc = evt_dom(h, remote_domid, &rd);
	if (rc < 0)
		return rc;
	rp = open_port(rd, remote_port);
	if (!rp || rp->state != PORT_UNBOUND || rp->remote_domid != domid) {
		pvm_err("sim: d%u cannot bind to d%u port %u: not unbound for it",
			domid, remote_domid, remote_port);
		return -EINVAL;
	}
	rc = port_take(d, 0, &port);
	if (rc < 0)
		return rc;
	d->ports[port].state = PORT_INTERDOMAIN;
	d->ports[port].remote_domid = (uint16_t)remote_domid;
	d->ports[port].remote_port = remote_port;
	rp->state = PORT_INTERDOMAIN;
	rp->remote_port = port;
	*port_out = port;
	return 0;
}

/* Closes @port of @d; an interdomain peer goes back to UNBOUND. */
static void close_port(struct sim_host *h, struct sim_domain *d, uint32_t port)
{
	struct sim_port *p = &d->ports[port];

	if (p->state == PORT_INTERDOMAIN) {
		struct sim_domain *rd;
		struct sim_port *rp;

		/* The peer may be this very domain (loopback). */
		if (p->remote_domid == d->domid)
			rd = d;
		else if (evt_dom(h, p->remote_domid, &rd) < 0)
			rd = NULL;
		rp = rd ? open_port(rd, p->remote_port) : NULL;
		if (rp && rp->state == PORT_INTERDOMAIN &&
		    rp->remote_domid == d->domid && rp->remote_port == port) {
			rp->state = PORT_UNBOUND;
			rp->remote_port = 0;
		}
	}
	port_free(p);
}

int sim_evtchn_close(struct sim_host *h, uint32_t domid, uint32_t port)
{
	struct sim_domain *d;
	int rc;

	rc = evt_dom(h, domid, &d);
	if (rc == 0 && !open_port(d, port))
		rc = -EINVAL;
	if (rc == 0)
		close_port(h, d, port);
	return rc;
}

int sim_evtchn_notify(struct sim_host *h, uint32_t domid, uint32_t port)
{
	struct sim_domain *d, *rd;
	struct sim_port *p, *rp;
	int rc;

	rc = evt_dom(h, domid, &d);
	if (rc < 0)
		return rc;
	p = open_port(d, port);
	if (!p)
		return -EINVAL;
	if (p->state != PORT_INTERDOMAIN)
		return 0; /* unbound: dropped, as Xen does */
	if (evt_dom(h, p->remote_domid, &rd) == 0 &&
	    (rp = open_port(rd, p->remote_port)) != NULL) {
		if (rp->efd < 0)
			rp->pending++;
		else if (eventfd_write(rp->efd, 1) < 0)
			rc = -errno;
	}
	return rc;
}

int sim_evtchn_fd(struct sim_host *h, uint32_t domid, uint32_t port,
		  int *fd_out)
{
	struct sim_domain *d;
	struct sim_port *p = NULL;
	int rc;

	rc = evt_dom(h, domid, &d);
	if (rc == 0 && !(p = open_port(d, port)))
		rc = -EINVAL;
	if (rc == 0 && p->efd < 0) {
		/* Born with the events that arrived before anyone listened. */
		p->efd = eventfd((unsigned int)(p->pending > UINT32_MAX ?
						UINT32_MAX : p->pending),
				 EFD_CLOEXEC | EFD_NONBLOCK);
		if (p->efd < 0)
			rc = -errno;
		p->pending = 0;
	}
	if (rc == 0)
		*fd_out = p->efd;
	return rc;
}

int pvm_sim_evtchn_alloc_unbound(struct pvm_hv *hv, uint32_t domid,
				 uint32_t remote_domid, uint32_t *port_out)
{
	struct sim_host *h = to_host(hv);
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_evtchn_alloc_unbound(h, domid, remote_domid, port_out);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int pvm_sim_evtchn_bind_interdomain(struct pvm_hv *hv, uint32_t domid,
				    uint32_t remote_domid, uint32_t remote_port,
				    uint32_t *port_out)
{
	struct sim_host *h = to_host(hv);
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_evtchn_bind_interdomain(h, domid, remote_domid, remote_port,
					 port_out);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int pvm_sim_evtchn_close(struct pvm_hv *hv, uint32_t domid, uint32_t port)
{
	struct sim_host *h = to_host(hv);
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_evtchn_close(h, domid, port);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int pvm_sim_evtchn_notify(struct pvm_hv *hv, uint32_t domid, uint32_t port)
{
	struct sim_host *h = to_host(hv);
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_evtchn_notify(h, domid, port);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int pvm_sim_evtchn_fd(struct pvm_hv *hv, uint32_t domid, uint32_t port,
		      int *fd_out)
{
	struct sim_host *h = to_host(hv);
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_evtchn_fd(h, domid, port, fd_out);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int pvm_sim_evtchn_status(struct pvm_hv *hv, uint32_t domid, uint32_t port,
			  struct pvm_sim_evtchn_status *out)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	if (port == 0 || port >= SIM_EVTCHN_MAX)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	rc = evt_dom(h, domid, &d);
	if (rc == 0) {
		const struct sim_port *p = &d->ports[port];

		out->state = (enum pvm_sim_evtchn_state)p->state;
		out->remote_domid = p->remote_domid;
		out->remote_port = p->remote_port;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

void sim_evtchn_release(struct sim_host *h, struct sim_domain *d)
{
	if (!d->ports)
		return;
	for (uint32_t p = 1; p < SIM_EVTCHN_MAX; p++)
		if (d->ports[p].state != PORT_FREE)
			close_port(h, d, p);
	free(d->ports);
	d->ports = NULL;
}

/* ---- state for save/restore -------------------------------------------
 * le32 version (1), le32 count, then count x {le32 port, le16 state
 * (1 unbound, 2 interdomain), le16 remote domid, le32 remote port,
 * le32 reserved}, ports ascending. */

int sim_evtchn_state_get(struct pvm_hv *hv, uint32_t domid, struct pvm_buf *out)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	uint32_t count = 0;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0 && d->state != DOM_PAUSED)
		rc = -EBUSY;
	if (rc < 0)
		goto out_unlock;
	for (uint32_t p = 1; p < SIM_EVTCHN_MAX; p++)
		count += d->ports[p].state != PORT_FREE;
	pvm_buf_put_u32(out, EVTCHN_STATE_VERSION);
	pvm_buf_put_u32(out, count);
	for (uint32_t p = 1; p < SIM_EVTCHN_MAX; p++) {
		const struct sim_port *sp = &d->ports[p];

		if (sp->state == PORT_FREE)
			continue;
		pvm_buf_put_u32(out, p);
		pvm_buf_put_u16(out, sp->state);
		pvm_buf_put_u16(out, sp->remote_domid);
		pvm_buf_put_u32(out, sp->remote_port);
		pvm_buf_put_u32(out, 0);
	}
	rc = out->err;
out_unlock:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

struct port_rec {
	uint32_t port;
	uint16_t state, remote_domid;
	uint32_t remote_port;
};

int sim_evtchn_state_set(struct pvm_hv *hv, uint32_t domid, const void *state,
			 size_t len)
{
	struct sim_host *h = to_host(hv);
	struct port_rec *recs = NULL;
	struct sim_domain *d;
	struct pvm_cursor c;
	uint32_t version = 0, count = 0, prev = 0, rsvd;
	int rc = -EBADMSG;

	pvm_cursor_init(&c, state, len);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &count);
	if (c.err || version != EVTCHN_STATE_VERSION || count >= SIM_EVTCHN_MAX ||
	    pvm_cursor_remaining(&c) != (size_t)count * 16)
		goto out_bad;
	recs = calloc(count ? count : 1, sizeof(*recs));
	if (!recs)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		struct port_rec *r = &recs[i];

		pvm_cursor_u32(&c, &r->port);
		pvm_cursor_u16(&c, &r->state);
		pvm_cursor_u16(&c, &r->remote_domid);
		pvm_cursor_u32(&c, &r->remote_port);
		pvm_cursor_u32(&c, &rsvd);
		/* Ascending ports also rules out duplicates. */
		if (r->port <= prev || r->port >= SIM_EVTCHN_MAX ||
		    (r->state != PORT_UNBOUND && r->state != PORT_INTERDOMAIN) ||
		    r->remote_domid > PVM_HV_DOMID_MAX)
			goto out_bad;
		prev = r->port;
	}
	if (c.err)
		goto out_bad;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0 && d->state != DOM_PAUSED)
		rc = -EBUSY;
	for (uint32_t p = 1; rc == 0 && p < SIM_EVTCHN_MAX; p++)
		if (d->ports[p].state != PORT_FREE)
			rc = -EBUSY;
	for (uint32_t i = 0; rc == 0 && i < count; i++) {
		uint32_t port;

		rc = port_take(d, recs[i].port, &port);
		if (rc == 0) {
			d->ports[port].state = PORT_UNBOUND;
			d->ports[port].remote_domid = recs[i].remote_domid;
		}
	}
	if (rc < 0 && rc != -EBUSY && rc != -ESRCH)
		for (uint32_t p = 1; p < SIM_EVTCHN_MAX; p++)
			if (d->ports[p].state != PORT_FREE)
				port_free(&d->ports[p]);
	pthread_mutex_unlock(&h->lock);
	free(recs);
	return rc;

out_bad:
	pvm_err("sim: domain %u: malformed event-channel state (%zu bytes)",
		domid, len);
	free(recs);
	return -EBADMSG;
}
