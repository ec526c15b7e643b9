/*
 * The simulated hypervisor's service thread: serves the hypercalls guests
 * make over their control sockets (guest_abi.h, PVM_SIMGUEST_CALL), as Xen
 * serves them independently of the toolstack.
 *
 *   sim_svc_start()   at host creation: epoll set + thread
 *   sim_svc_add()     a new domain's control socket joins the set
 *   sim_svc_del()     at release, before the socket is closed
 *   sim_svc_stop()    at host close: wake the thread, join it
 *
 * The epoll data of a domain is its serial, never a pointer: an event may
 * be waiting for the lock while the domain is released (or its domid and
 * fd numbers reused), and the lookup by serial then finds nothing. All
 * work happens under the host lock; replies are sent without blocking
 * (one call is outstanding per guest, so the socket never fills).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hv/sim/internal.h"

#define SVC_STOP 0 /* epoll data of the stop eventfd; serials start at 1 */

static struct sim_domain *by_serial(struct sim_host *h, uint64_t serial)
{
	for (struct sim_domain *d = h->domains; d; d = d->next)
		if (d->serial == serial && d->state != DOM_DEAD)
			return d;
	return NULL;
}

static void reply(struct sim_domain *d, const struct pvm_simguest_msg *m,
		  int fd)
{
	struct iovec iov = { (void *)m, sizeof(*m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = sizeof(cbuf.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(d->ctl_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		pvm_warn("sim: domain %u: hypercall reply lost: %s", d->domid,
			 strerror(errno));
}

/* Performs one call of @d; fills @r and *@fd (an fd to attach, or -1). */
static void dispatch(struct sim_host *h, struct sim_domain *d,
		     const struct pvm_simguest_msg *m,
		     struct pvm_simguest_msg *r, int *fd)
{
	uint32_t port = 0;
	int rc;

	switch (m->op) {
	case PVM_SIMGUEST_EVTCHN_ALLOC_UNBOUND:
		rc = sim_evtchn_alloc_unbound(h, d->domid, m->arg[0], &port);
		break;
	case PVM_SIMGUEST_EVTCHN_BIND_INTERDOMAIN:
		rc = sim_evtchn_bind_interdomain(h, d->domid, m->arg[0],
						 m->arg[1], &port);
		break;
	case PVM_SIMGUEST_EVTCHN_SEND:
		rc = sim_evtchn_notify(h, d->domid, m->arg[0]);
		break;
	case PVM_SIMGUEST_EVTCHN_CLOSE:
		rc = sim_evtchn_close(h, d->domid, m->arg[0]);
		break;
	case PVM_SIMGUEST_EVTCHN_FD:
		rc = 0;
		port = m->arg[0];
		break;
	case PVM_SIMGUEST_SUSPEND:
		d->suspended = true;
		rc = 0;
		break;
	default:
		rc = -ENOSYS;
		break;
	}
	if (rc == 0 && port)
		rc = sim_evtchn_fd(h, d->domid, port, fd);
	r->status = rc;
	r->arg[0] = rc == 0 ? port : 0;
}

static void serve(struct sim_host *h, uint64_t serial, uint32_t events)
{
	struct pvm_simguest_msg m, r;
	struct sim_domain *d;
	ssize_t n;
	int fd = -1;

	pthread_mutex_lock(&h->lock);
	d = by_serial(h, serial);
	if (!d)
		goto out_unlock;
	n = recv(d->ctl_fd, &m, sizeof(m), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR) &&
	    !(events & (EPOLLHUP | EPOLLERR)))
		goto out_unlock;
	if (n <= 0) {
		/* The guest is gone (reaping notices); stop watching. */
		sim_svc_del(h, d);
		goto out_unlock;
	}
	memset(&r, 0, sizeof(r));
	r.type = PVM_SIMGUEST_REPLY;
	r.op = n == (ssize_t)sizeof(m) ? m.op : 0;
	if (n != (ssize_t)sizeof(m) || m.type != PVM_SIMGUEST_CALL) {
		pvm_warn("sim: domain %u: bad control message (%zd bytes)",
			 d->domid, n);
		r.status = -EPROTO;
	} else {
		dispatch(h, d, &m, &r, &fd);
	}
	reply(d, &r, fd);
out_unlock:
	pthread_mutex_unlock(&h->lock);
}

static void *svc_main(void *arg)
{
	struct sim_host *h = arg;
	struct epoll_event ev[16];

	for (;;) {
		int n = epoll_wait(h->svc_epfd, ev, 16, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pvm_err("sim: service thread: epoll_wait: %s",
				strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == SVC_STOP)
				return NULL;
			serve(h, ev[i].data.u64, ev[i].events);
		}
	}
}

int sim_svc_start(struct sim_host *h)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = SVC_STOP };
	int rc;

	h->svc_epfd = epoll_create1(EPOLL_CLOEXEC);
	h->svc_stopfd = eventfd(0, EFD_CLOEXEC);
	if (h->svc_epfd < 0 || h->svc_stopfd < 0 ||
	    epoll_ctl(h->svc_epfd, EPOLL_CTL_ADD, h->svc_stopfd, &ev) < 0)
		return -errno;
	rc = pthread_create(&h->svc_thread, NULL, svc_main, h);
	if (rc)
		return -rc;
	h->svc_running = true;
	return 0;
}

void sim_svc_stop(struct sim_host *h)
{
	if (h->svc_running) {
		eventfd_write(h->svc_stopfd, 1);
		pthread_join(h->svc_thread, NULL);
		h->svc_running = false;
	}
	if (h->svc_stopfd >= 0)
		close(h->svc_stopfd);
	if (h->svc_epfd >= 0)
		close(h->svc_epfd);
	h->svc_stopfd = h->svc_epfd = -1;
}

int sim_svc_add(struct sim_host *h, struct sim_domain *d)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = d->serial };

	if (epoll_ctl(h->svc_epfd, EPOLL_CTL_ADD, d->ctl_fd, &ev) < 0)
		return -errno;
	d->svc = true;
	return 0;
}

void sim_svc_del(struct sim_host *h, struct sim_domain *d)
{
	if (d->svc)
		epoll_ctl(h->svc_epfd, EPOLL_CTL_DEL, d->ctl_fd, NULL);
	d->svc = false;
}
