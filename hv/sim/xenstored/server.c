/*
 * Sockets, the event loop, connections and domains of the simulated
 * xenstored.
 *
 * One epoll loop (pvm_xenstored_run) serves every connection; it holds
 * srv->lock while it handles a batch of events and drops it only in
 * epoll_wait(), so the public functions called from other threads see a
 * consistent store.
 *
 * Input of a connection: a 16-byte header, checked (len <= XENSTORE_PAYLOAD_MAX,
 * else the connection is dropped as xenstored does), then the body; the
 * complete message goes to ops_dispatch(). Output: replies and watch events
 * queue in order and are written as the socket accepts them. A connection
 * with quota_outstanding unread replies is not read from until its client
 * catches up (Xen's outstanding-request quota); one with more than
 * max_queued_events unread watch events is dropped, with a log line.
 */
#include "hv/sim/xenstored/internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

void pvm_xenstored_opts_default(struct pvm_xenstored_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->quota_nodes = 1000;
	o->quota_watches = 128;
	o->quota_transactions = 10;
	o->quota_outstanding = 20;
	o->quota_entry_size = 2048;
	o->quota_perms = 5;
	o->quota_trans_nodes = 1024;
	o->max_queued_events = 1024;
}

static char *path_join(const char *dir, const char *name)
{
	size_t l = strlen(dir) + 1 + strlen(name) + 1;
	char *p = malloc(l);

	if (p)
		snprintf(p, l, "%s/%s", dir, name);
	return p;
}

static int listen_unix(const char *path, int *fd_out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* We hold the state dir lock, so a socket file left here is stale. */
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
		rc = -errno;
		close(fd);
		unlink(path);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

static int epoll_add(struct pvm_xenstored *srv, int fd, uint32_t ev,
		     struct xs_handle *h)
{
	struct epoll_event e = { .events = ev, .data.ptr = h };

	return epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

/* ---- nodes at start ---------------------------------------------------- */

static int mknode(struct xs_node *parent, const char *name,
		  struct xs_node **out)
{
	static const struct xs_perm dom0_none = { 0, XS_PERM_NONE };
	struct xs_node *n = node_new(name, strlen(name));
	int rc;

	if (!n)
		return -ENOMEM;
	rc = node_set_perms(n, &dom0_none, 1);
	if (!rc && parent)
		rc = node_add_child(parent, n);
	if (rc) {
		node_free(n);
		return rc;
	}
	*out = n;
	return 0;
}

static int initial_tree(struct pvm_xenstored *srv)
{
	struct xs_node *root, *local, *dom, *tool;
	int rc;

	rc = mknode(NULL, "", &root);
	if (rc)
		return rc;
	srv->root = root;
	if ((rc = mknode(root, "local", &local)) ||
	    (rc = mknode(local, "domain", &dom)) ||
	    (rc = mknode(root, "tool", &tool)))
		return rc;
	root->gen = ++srv->gen;
	local->gen = ++srv->gen;
	dom->gen = ++srv->gen;
	tool->gen = ++srv->gen;
	return 0;
}

/* ---- create / destroy -------------------------------------------------- */

int pvm_xenstored_create(const struct pvm_xenstored_opts *o,
			 struct pvm_xenstored **out)
{
	struct pvm_xenstored *srv;
	int rc;

	if (!o || !o->state_dir || !*o->state_dir)
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	pthread_mutex_init(&srv->lock, NULL);
	srv->o = *o;
	srv->o.state_dir = NULL;
	srv->epfd = srv->wakefd = srv->lfd = srv->lockfd = -1;
	srv->wake_h.kind = XS_H_WAKE;
	srv->listen_h.kind = XS_H_LISTEN;
	srv->next_conn_id = 1;
	srv->dir = strdup(o->state_dir);
	srv->sock_path = path_join(o->state_dir, "xenstore.sock");
	srv->lock_path = path_join(o->state_dir, "xenstore.lock");
	if (!srv->dir || !srv->sock_path || !srv->lock_path) {
		rc = -ENOMEM;
		goto out_free;
	}
	srv->lockfd = open(srv->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (srv->lockfd < 0) {
		rc = -errno;
		pvm_err("xenstored: cannot open %s: %s", srv->lock_path,
			strerror(errno));
		goto out_free;
	}
	if (flock(srv->lockfd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		pvm_err("xenstored: state dir %s is in use by another server",
			srv->dir);
		close(srv->lockfd);
		srv->lockfd = -1;
		free(srv->lock_path);
		srv->lock_path = NULL; /* not ours to remove */
		goto out_free;
	}
	rc = initial_tree(srv);
	if (rc)
		goto out_free;
	srv->epfd = epoll_create1(EPOLL_CLOEXEC);
	srv->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->epfd < 0 || srv->wakefd < 0) {
		rc = -errno;
		goto out_free;
	}
	rc = listen_unix(srv->sock_path, &srv->lfd);
	if (rc) {
		pvm_err("xenstored: cannot listen on %s: %s", srv->sock_path,
			strerror(-rc));
		goto out_free;
	}
	if ((rc = epoll_add(srv, srv->wakefd, EPOLLIN, &srv->wake_h)) ||
	    (rc = epoll_add(srv, srv->lfd, EPOLLIN, &srv->listen_h)))
		goto out_free;
	pvm_info("xenstored: listening on %s", srv->sock_path);
	*out = srv;
	return 0;
out_free:
	pvm_xenstored_destroy(srv);
	return rc;
}

const char *pvm_xenstored_socket_path(const struct pvm_xenstored *srv)
{
	return srv->sock_path;
}

static void free_zombies(struct pvm_xenstored *srv)
{
	while (srv->zombies) {
		struct xs_conn *c = srv->zombies;

		srv->zombies = c->next;
		while (c->out_head) {
			struct xs_msg *m = c->out_head;

			c->out_head = m->next;
			free(m);
		}
		free(c->body);
		free(c);
	}
}

static void dom_free(struct xs_dom *d)
{
	if (d->lfd >= 0)
		close(d->lfd);
	if (d->sock_path) {
		unlink(d->sock_path);
		free(d->sock_path);
	}
	while (d->saved_watches) {
		struct xs_watch *w = d->saved_watches;

		d->saved_watches = w->next;
		watch_free(w);
	}
	free(d);
}

void pvm_xenstored_destroy(struct pvm_xenstored *srv)
{
	if (!srv)
		return;
	while (srv->conns)
		conn_close(srv->conns, NULL);
	free_zombies(srv);
	while (srv->doms) {
		struct xs_dom *d = srv->doms;

		srv->doms = d->next;
		dom_free(d);
	}
	if (srv->lfd >= 0) {
		close(srv->lfd);
		unlink(srv->sock_path);
	}
	if (srv->wakefd >= 0)
		close(srv->wakefd);
	if (srv->epfd >= 0)
		close(srv->epfd);
	if (srv->lockfd >= 0) {
		unlink(srv->lock_path);
		close(srv->lockfd);
	}
	node_free(srv->root);
	free(srv->dir);
	free(srv->sock_path);
	free(srv->lock_path);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}

void pvm_xenstored_stop(struct pvm_xenstored *srv)
{
	uint64_t one = 1;
	ssize_t r;

	srv->stopping = 1;
	r = write(srv->wakefd, &one, sizeof(one));
	(void)r;
}

/* ---- domains ----------------------------------------------------------- */

struct xs_dom *dom_get(struct pvm_xenstored *srv, uint16_t domid, bool create)
{
	struct xs_dom *d;

	for (d = srv->doms; d; d = d->next)
		if (d->domid == domid)
			return d;
	if (!create)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->h.kind = XS_H_DOM_LISTEN;
	d->h.obj = d;
	d->domid = domid;
	d->target = XS_DOMID_INVALID;
	d->lfd = -1;
	d->next = srv->doms;
	srv->doms = d;
	return d;
}

uint16_t dom_target(struct pvm_xenstored *srv, uint16_t domid)
{
	struct xs_dom *d = domid ? dom_get(srv, domid, false) : NULL;

	return d ? d->target : XS_DOMID_INVALID;
}

int srv_introduce(struct pvm_xenstored *srv, uint16_t domid)
{
	struct xs_dom *d;
	char name[40];
	int rc;

	if (domid == 0 || domid >= XS_DOMID_FIRST_RESERVED)
		return -EINVAL;
	d = dom_get(srv, domid, true);
	if (!d)
		return -ENOMEM;
	if (d->introduced)
		return 0;
	snprintf(name, sizeof(name), "xenstore-dom%u.sock", (unsigned)domid);
	d->sock_path = path_join(srv->dir, name);
	if (!d->sock_path)
		return -ENOMEM;
	rc = listen_unix(d->sock_path, &d->lfd);
	if (!rc)
		rc = epoll_add(srv, d->lfd, EPOLLIN, &d->h);
	if (rc) {
		pvm_err("xenstored: dom%u: cannot listen on %s: %s",
			(unsigned)domid, d->sock_path, strerror(-rc));
		if (d->lfd >= 0)
			close(d->lfd);
		d->lfd = -1;
		unlink(d->sock_path);
		free(d->sock_path);
		d->sock_path = NULL;
		return rc;
	}
	d->introduced = true;
	pvm_info("xenstored: dom%u introduced", (unsigned)domid);
	fire_special(srv, "@introduceDomain");
	return 0;
}

int srv_release(struct pvm_xenstored *srv, uint16_t domid)
{
	struct xs_dom *d = dom_get(srv, domid, false);
	struct xs_conn *c, *next;

	if (domid == 0 || domid >= XS_DOMID_FIRST_RESERVED)
		return -EINVAL;
	if (!d || !d->introduced)
		return -ENOENT;
	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (c->domid == domid)
			conn_close(c, NULL); /* logged below */
	}
	if (d->lfd >= 0) {
		close(d->lfd);
		d->lfd = -1;
	}
	if (d->sock_path) {
		unlink(d->sock_path);
		free(d->sock_path);
		d->sock_path = NULL;
	}
	d->introduced = false;
	d->target = XS_DOMID_INVALID;
	pvm_info("xenstored: dom%u released", (unsigned)domid);
	fire_special(srv, "@releaseDomain");
	return 0;
}

int pvm_xenstored_introduce(struct pvm_xenstored *srv, uint16_t domid)
{
	int rc;

	pthread_mutex_lock(&srv->lock);
	rc = srv_introduce(srv, domid);
	pthread_mutex_unlock(&srv->lock);
	return rc;
}

int pvm_xenstored_release(struct pvm_xenstored *srv, uint16_t domid)
{
	int rc;

	pthread_mutex_lock(&srv->lock);
	rc = srv_release(srv, domid);
	pthread_mutex_unlock(&srv->lock);
	return rc;
}

int pvm_xenstored_domain_socket_path(struct pvm_xenstored *srv, uint16_t domid,
				     char *buf, size_t len)
{
	struct xs_dom *d;
	int rc = 0;

	pthread_mutex_lock(&srv->lock);
	d = dom_get(srv, domid, false);
	if (!d || !d->introduced || !d->sock_path)
		rc = -ENOENT;
	else if (strlen(d->sock_path) >= len)
		rc = -ERANGE;
	else
		strcpy(buf, d->sock_path);
	pthread_mutex_unlock(&srv->lock);
	return rc;
}

int pvm_xenstored_connect_domain(struct pvm_xenstored *srv, uint16_t domid,
				 int *fd_out)
{
	struct xs_conn *c;
	struct xs_dom *d;
	int sv[2], rc;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pthread_mutex_lock(&srv->lock);
	d = domid ? dom_get(srv, domid, false) : NULL;
	if (domid && (!d || !d->introduced)) {
		rc = -ENOENT;
		goto out_close;
	}
	rc = conn_new(srv, sv[0], domid, &c);
	if (rc)
		goto out_close;
	pthread_mutex_unlock(&srv->lock);
	*fd_out = sv[1];
	return 0;
out_close:
	pthread_mutex_unlock(&srv->lock);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

/* ---- connections ------------------------------------------------------- */

static void conn_set_events(struct xs_conn *c)
{
	struct pvm_xenstored *srv = c->srv;
	uint32_t want = 0;
	struct epoll_event e;

	if (c->state != XS_CONN_OPEN)
		return;
	/* Not reading (no EPOLLIN, no EPOLLRDHUP) while over the quota, or a
	 * half-closed peer would wake us forever. */
	if (srv->o.quota_outstanding == 0 ||
	    c->out_replies < srv->o.quota_outstanding)
		want |= EPOLLIN | EPOLLRDHUP;
	if (c->out_head)
		want |= EPOLLOUT;
	if (want == c->ev_mask)
		return;
	e.events = want;
	e.data.ptr = &c->h;
	if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->ev_mask = want;
}

/*
 * Takes ownership of @fd. Imported watches waiting for @domid attach to
 * the new connection.
 */
int conn_new(struct pvm_xenstored *srv, int fd, uint16_t domid,
	     struct xs_conn **out)
{
	struct xs_conn *c = calloc(1, sizeof(*c));
	struct xs_dom *d;
	int fl, rc;

	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->body = malloc(XENSTORE_PAYLOAD_MAX + 1);
	if (!c->body) {
		free(c);
		close(fd);
		return -ENOMEM;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	c->h.kind = XS_H_CONN;
	c->h.obj = c;
	c->srv = srv;
	c->fd = fd;
	c->domid = domid;
	c->id = srv->next_conn_id++;
	c->next_txid = 1;
	c->ev_mask = EPOLLIN | EPOLLRDHUP;
	rc = epoll_add(srv, fd, c->ev_mask, &c->h);
	if (rc) {
		free(c->body);
		free(c);
		close(fd);
		return rc;
	}
	c->next = srv->conns;
	srv->conns = c;
	d = domid ? dom_get(srv, domid, false) : NULL;
	while (d && d->saved_watches) {
		struct xs_watch *w = d->saved_watches;

		d->saved_watches = w->next;
		w->next = NULL;
		watch_attach(c, w);
	}
	pvm_debug("xenstored: connection %u as dom%u", c->id, (unsigned)domid);
	*out = c;
	return 0;
}

/* @why: logged as a warning (a misbehaving client); NULL logs nothing. */
void conn_close(struct xs_conn *c, const char *why)
{
	struct pvm_xenstored *srv = c->srv;
	struct xs_dom *d = c->domid ? dom_get(srv, c->domid, false) : NULL;
	struct xs_conn **pp;

	if (c->state != XS_CONN_OPEN)
		return;
	c->state = XS_CONN_CLOSING;
	if (why)
		pvm_warn("xenstored: dropping connection %u (dom%u): %s", c->id,
			 (unsigned)c->domid, why);
	epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	while (c->watches) {
		struct xs_watch *w = c->watches;

		c->watches = w->next;
		watch_free(w);
	}
	while (c->txs) {
		struct xs_tx *t = c->txs;

		c->txs = t->next;
		tx_free(t);
	}
	if (d) {
		d->watches -= c->nwatches < d->watches ? c->nwatches : d->watches;
		d->txs -= c->ntx < d->txs ? c->ntx : d->txs;
	}
	c->nwatches = c->ntx = 0;
	for (pp = &srv->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	c->next = srv->zombies;
	srv->zombies = c;
}

/* Writes queued output until the socket would block. */
static void conn_flush(struct xs_conn *c)
{
	while (c->state == XS_CONN_OPEN && c->out_head) {
		struct xs_msg *m = c->out_head;
		ssize_t n = send(c->fd, m->data + m->off, m->len - m->off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			conn_close(c, NULL);
			return;
		}
		m->off += (uint32_t)n;
		if (m->off < m->len)
			break;
		c->out_head = m->next;
		if (!c->out_head)
			c->out_tail = NULL;
		if (m->is_event)
			c->out_events--;
		else
			c->out_replies--;
		free(m);
	}
	conn_set_events(c);
}

int conn_send(struct xs_conn *c, uint32_t type, uint32_t req_id,
	      uint32_t tx_id, const void *payload, size_t len)
{
	struct pvm_xenstored *srv = c->srv;
	struct xs_msg *m;
	bool is_event = type == XS_WATCH_EVENT;

	if (c->state != XS_CONN_OPEN)
		return -EPIPE;
	if (len > XENSTORE_PAYLOAD_MAX)
		return -E2BIG;
	if (is_event && srv->o.max_queued_events &&
	    c->out_events >= srv->o.max_queued_events) {
		char why[96];

		snprintf(why, sizeof(why),
			 "client does not read its watch events (%u queued)",
			 c->out_events);
		conn_close(c, why);
		return -ENOBUFS;
	}
	m = malloc(sizeof(*m) + sizeof(struct xsd_sockmsg) + len);
	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->off = 0;
	m->len = (uint32_t)(sizeof(struct xsd_sockmsg) + len);
	m->is_event = is_event;
	pvm_put_le32(m->data, type);
	pvm_put_le32(m->data + 4, req_id);
	pvm_put_le32(m->data + 8, tx_id);
	pvm_put_le32(m->data + 12, (uint32_t)len);
	if (len)
		memcpy(m->data + sizeof(struct xsd_sockmsg), payload, len);
	if (c->out_tail)
		c->out_tail->next = m;
	else
		c->out_head = m;
	c->out_tail = m;
	if (is_event)
		c->out_events++;
	else
		c->out_replies++;
	conn_flush(c);
	return 0;
}

/* Reads what is available; dispatches each complete message. */
static void conn_read(struct xs_conn *c)
{
	struct pvm_xenstored *srv = c->srv;
	int budget = 64; /* messages per wakeup, so no client starves others */

	while (c->state == XS_CONN_OPEN && budget > 0) {
		ssize_t n;

		if (srv->o.quota_outstanding &&
		    c->out_replies >= srv->o.quota_outstanding)
			break;
		if (!c->have_hdr) {
			n = recv(c->fd, c->hdrbuf + c->hdr_got,
				 sizeof(c->hdrbuf) - c->hdr_got, MSG_DONTWAIT);
		} else {
			n = recv(c->fd, c->body + c->body_got,
				 c->in.len - c->body_got, MSG_DONTWAIT);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_close(c, strerror(errno));
			break;
		}
		/* (Never a zero-length recv: an empty body dispatches at once.) */
		if (n == 0) {
			if (c->hdr_got || c->have_hdr)
				conn_close(c, "client went away in the middle of a message");
			else
				conn_close(c, NULL);
			break;
		}
		if (!c->have_hdr) {
			c->hdr_got += (uint32_t)n;
			if (c->hdr_got < sizeof(c->hdrbuf))
				continue;
			c->in.type = pvm_get_le32(c->hdrbuf);
			c->in.req_id = pvm_get_le32(c->hdrbuf + 4);
			c->in.tx_id = pvm_get_le32(c->hdrbuf + 8);
			c->in.len = pvm_get_le32(c->hdrbuf + 12);
			if (c->in.len > XENSTORE_PAYLOAD_MAX) {
				char why[80];

				snprintf(why, sizeof(why),
					 "payload length %u over XENSTORE_PAYLOAD_MAX",
					 c->in.len);
				conn_close(c, why);
				break;
			}
			c->have_hdr = true;
			c->body_got = 0;
		} else {
			c->body_got += (uint32_t)n;
		}
		if (c->have_hdr && c->body_got == c->in.len) {
			struct xsd_sockmsg hdr = c->in;

			c->body[c->in.len] = '\0';
			c->have_hdr = false;
			c->hdr_got = 0;
			budget--;
			ops_dispatch(c, &hdr, c->body);
		}
	}
	if (c->state == XS_CONN_OPEN)
		conn_set_events(c);
}

static void accept_on(struct pvm_xenstored *srv, int lfd, uint16_t domid)
{
	for (;;) {
		struct xs_conn *c;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				pvm_warn("xenstored: accept: %s", strerror(errno));
			return;
		}
		if (conn_new(srv, fd, domid, &c))
			pvm_warn("xenstored: cannot set up a connection");
	}
}

int pvm_xenstored_run(struct pvm_xenstored *srv)
{
	struct epoll_event evs[64];

	while (!srv->stopping) {
		int n = epoll_wait(srv->epfd, evs, (int)PVM_ARRAY_SIZE(evs), -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			pvm_err("xenstored: epoll_wait: %s", strerror(errno));
			return -errno;
		}
		pthread_mutex_lock(&srv->lock);
		for (int i = 0; i < n; i++) {
			struct xs_handle *h = evs[i].data.ptr;

			switch (h->kind) {
			case XS_H_WAKE: {
				uint64_t v;
				ssize_t r = read(srv->wakefd, &v, sizeof(v));

				(void)r;
				break;
			}
			case XS_H_LISTEN:
				accept_on(srv, srv->lfd, 0);
				break;
			case XS_H_DOM_LISTEN: {
				struct xs_dom *d = h->obj;

				if (d->introduced && d->lfd >= 0)
					accept_on(srv, d->lfd, d->domid);
				break;
			}
			case XS_H_CONN: {
				struct xs_conn *c = h->obj;

				if (c->state != XS_CONN_OPEN)
					break;
				if (evs[i].events & EPOLLOUT)
					conn_flush(c);
				if (c->state == XS_CONN_OPEN &&
				    (evs[i].events & (EPOLLIN | EPOLLRDHUP |
						      EPOLLHUP | EPOLLERR)))
					conn_read(c);
				break;
			}
			}
		}
		free_zombies(srv);
		pthread_mutex_unlock(&srv->lock);
	}
	return 0;
}
