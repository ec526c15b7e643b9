/*
 * One handler per xenstore message type (docs/misc/xenstore.txt), the
 * watches and the transactions of the simulated xenstored.
 *
 * ops_dispatch() bounds-checks the type, looks the transaction up (unknown
 * id: ENOENT), checks privilege (dom0-only requests: EACCES) and calls the
 * handler from wire[]. A handler returns 0 after it replied, or a negative
 * errno that ops_dispatch() sends as an ERROR reply ("EINVAL").
 *
 * Transactions: TRANSACTION_START copies the whole tree; reads and writes
 * in the transaction work on the copy and record, per path, the generation
 * the node had when first touched (0: absent). TRANSACTION_END "T" compares
 * those with the committed tree: any difference answers EAGAIN (xenstored's
 * conflict rule); otherwise the recorded changes are replayed on the
 * committed tree in order and their watches fire.
 */
#include "hv/sim/xenstored/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_BUF (XENSTORE_ABS_PATH_MAX + 64)

struct req {
	struct xs_conn *c;
	struct pvm_xenstored *srv;
	const struct xsd_sockmsg *hdr;
	const char *body;
	uint32_t len;
	struct xs_tx *tx;
	struct xs_node *root; /* tx copy or the committed tree */
};

/* ---- small helpers ----------------------------------------------------- */

static bool unprivileged(const struct req *r)
{
	return r->c->domid != 0;
}

static unsigned int perm_of(const struct req *r, const struct xs_node *n)
{
	return perm_for(r->c->domid, dom_target(r->srv, r->c->domid), n->perms,
			n->nperms);
}

static int reply(struct req *r, const void *p, size_t len)
{
	int rc = conn_send(r->c, r->hdr->type, r->hdr->req_id, r->hdr->tx_id, p,
			   len);

	return rc == -EPIPE || rc == -ENOBUFS ? 0 : rc;
}

static int reply_ok(struct req *r)
{
	return reply(r, "OK", 3);
}

static const char *err_name(int err)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(xsd_errors); i++)
		if (xsd_errors[i].errnum == err)
			return xsd_errors[i].errstring;
	return "EIO";
}

static void reply_err(struct xs_conn *c, const struct xsd_sockmsg *hdr, int err)
{
	const char *s = err_name(err);

	conn_send(c, XS_ERROR, hdr->req_id, hdr->tx_id, s, strlen(s) + 1);
}

/* Splits a payload into up to @n NUL-terminated strings; returns how many. */
static unsigned int get_strings(const struct req *r, const char **vec,
				unsigned int n)
{
	unsigned int i = 0;
	uint32_t off = 0;

	while (i < n && off < r->len) {
		const char *s = r->body + off;
		const char *e = memchr(s, '\0', r->len - off);

		if (!e)
			break;
		vec[i++] = s;
		off += (uint32_t)(e - s) + 1;
	}
	return i;
}

/* Exactly one string, NUL-terminated, nothing after it. */
static int onearg(const struct req *r, const char **out)
{
	if (r->len == 0 || r->body[r->len - 1] != '\0' ||
	    strlen(r->body) + 1 != r->len)
		return -EINVAL;
	*out = r->body;
	return 0;
}

static size_t implicit_prefix(const struct xs_conn *c, char *buf, size_t len)
{
	int n = snprintf(buf, len, "/local/domain/%u/", (unsigned)c->domid);

	return n > 0 ? (size_t)n : 0;
}

/* Relative paths are below /local/domain/<domid>, as in xenstored. */
static int canonicalize(const struct xs_conn *c, const char *in, char *out,
			bool allow_special, bool *relative)
{
	size_t l = strnlen(in, PATH_BUF);

	if (relative)
		*relative = false;
	if (in[0] == '@') {
		if (!allow_special || l > XENSTORE_REL_PATH_MAX)
			return -EINVAL;
		memcpy(out, in, l + 1);
		return 0;
	}
	if (in[0] == '/') {
		if (l >= PATH_BUF)
			return -EINVAL;
		memcpy(out, in, l + 1);
	} else {
		size_t p = implicit_prefix(c, out, PATH_BUF);

		if (l > XENSTORE_REL_PATH_MAX || p + l >= PATH_BUF)
			return -EINVAL;
		memcpy(out + p, in, l + 1);
		if (relative)
			*relative = true;
	}
	return path_valid(out) ? 0 : -EINVAL;
}

/* ENOENT, or EACCES when the deepest existing ancestor is unreadable. */
static int missing_err(const struct req *r, const char *path)
{
	struct xs_node *a = tree_deepest(r->root, path);

	return (perm_of(r, a) & XS_PERM_READ) ? -ENOENT : -EACCES;
}

/* ---- transactions: bookkeeping ------------------------------------------ */

void tx_free(struct xs_tx *t)
{
	if (!t)
		return;
	node_free(t->root);
	for (uint32_t i = 0; i < t->nacc; i++)
		free(t->acc[i].path);
	for (uint32_t i = 0; i < t->nch; i++)
		free(t->ch[i].path);
	free(t->acc);
	free(t->ch);
	free(t);
}

/* Records the first touch of @path in the transaction, with @n's gen. */
static int tx_touch(struct req *r, const char *path, const struct xs_node *n)
{
	struct xs_tx *t = r->tx;

	if (!t)
		return 0;
	for (uint32_t i = 0; i < t->nacc; i++)
		if (strcmp(t->acc[i].path, path) == 0)
			return 0;
	if (unprivileged(r) && r->srv->o.quota_trans_nodes &&
	    t->nacc >= r->srv->o.quota_trans_nodes)
		return -ENOSPC;
	if (t->nacc == t->capacc) {
		uint32_t cap = t->capacc ? t->capacc * 2 : 16;
		struct xs_access *a = realloc(t->acc, cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		t->acc = a;
		t->capacc = cap;
	}
	t->acc[t->nacc].path = strdup(path);
	if (!t->acc[t->nacc].path)
		return -ENOMEM;
	t->acc[t->nacc].gen = n ? n->gen : 0;
	t->nacc++;
	return 0;
}

static int tx_touch_node(struct req *r, const struct xs_node *n)
{
	char p[PATH_BUF];
	int rc = node_path(n, p, sizeof(p));

	return rc ? rc : tx_touch(r, p, n);
}

/* Recursive, with one path buffer for all levels (trees may be deep). */
static int touch_subtree(struct req *r, const struct xs_node *n, char *p,
			 size_t plen)
{
	int rc = node_path(n, p, plen);

	if (!rc)
		rc = tx_touch(r, p, n);
	for (uint32_t i = 0; !rc && i < n->nkids; i++)
		rc = touch_subtree(r, n->kids[i], p, plen);
	return rc;
}

static int tx_touch_subtree(struct req *r, const struct xs_node *n)
{
	char p[PATH_BUF];

	return touch_subtree(r, n, p, sizeof(p));
}

static int tx_change(struct req *r, const char *path, enum xs_change_kind k)
{
	struct xs_tx *t = r->tx;

	if (t->nch == t->capch) {
		uint32_t cap = t->capch ? t->capch * 2 : 16;
		struct xs_change *c = realloc(t->ch, cap * sizeof(*c));

		if (!c)
			return -ENOMEM;
		t->ch = c;
		t->capch = cap;
	}
	t->ch[t->nch].path = strdup(path);
	if (!t->ch[t->nch].path)
		return -ENOMEM;
	t->ch[t->nch].kind = k;
	t->nch++;
	return 0;
}

/* ---- node accounting ---------------------------------------------------- */

static void acct_owner(struct pvm_xenstored *srv, uint16_t owner, int sign)
{
	struct xs_dom *d = owner ? dom_get(srv, owner, true) : NULL;

	if (!d)
		return;
	if (sign > 0)
		d->nodes++;
	else if (d->nodes)
		d->nodes--;
}

void acct_subtree(struct pvm_xenstored *srv, const struct xs_node *n, int sign)
{
	if (n->nperms)
		acct_owner(srv, n->perms[0].domid, sign);
	for (uint32_t i = 0; i < n->nkids; i++)
		acct_subtree(srv, n->kids[i], sign);
}

static bool committed(const struct req *r)
{
	return r->root == r->srv->root;
}

/* Nodes @domid owns now, counting what its open transaction created. */
static uint32_t owned(const struct req *r)
{
	struct xs_dom *d = dom_get(r->srv, r->c->domid, false);
	int64_t n = d ? d->nodes : 0;

	if (r->tx)
		n += r->tx->created;
	return n < 0 ? 0 : (uint32_t)n;
}

/* ---- node access ------------------------------------------------------- */

static int get_node(struct req *r, const char *path, unsigned int need,
		    struct xs_node **out)
{
	struct xs_node *n = tree_lookup(r->root, path);
	int rc = tx_touch(r, path, n);

	if (rc)
		return rc;
	if (!n)
		return missing_err(r, path);
	if ((perm_of(r, n) & need) != need)
		return -EACCES;
	*out = n;
	return 0;
}

/*
 * Creates @path and its missing parents. New nodes inherit their parent's
 * ACL; one created by an unprivileged domain is owned by it (Xen's rule).
 * Needs write access to the deepest existing ancestor.
 */
static int create_path(struct req *r, const char *path, struct xs_node **out)
{
	struct pvm_xenstored *srv = r->srv;
	struct xs_node *anc = tree_deepest(r->root, path), *n;
	char sub[PATH_BUF];
	const char *p;
	uint32_t k = 0;
	int rc;

	if (!(perm_of(r, anc) & XS_PERM_WRITE))
		return -EACCES;
	rc = node_path(anc, sub, sizeof(sub));
	if (rc)
		return rc;
	p = path + (anc->parent ? strlen(sub) : 0);
	for (const char *q = p; *q; q++)
		if (*q == '/')
			k++;
	if (unprivileged(r) && srv->o.quota_nodes &&
	    owned(r) + k > srv->o.quota_nodes)
		return -ENOSPC;
	if (r->tx) {
		/* anc's child list changes; each new path was absent. */
		rc = tx_touch(r, sub, anc);
		for (const char *q = p + 1; !rc; q++) {
			if (*q == '/' || *q == '\0') {
				size_t l = (size_t)(q - path);

				memcpy(sub, path, l);
				sub[l] = '\0';
				rc = tx_touch(r, sub, NULL);
			}
			if (*q == '\0')
				break;
		}
		if (rc)
			return rc;
	}
	n = anc;
	while (*p == '/') {
		const char *name = p + 1, *e = strchr(name, '/');
		size_t l = e ? (size_t)(e - name) : strlen(name);
		struct xs_node *kid = node_new(name, l);
		struct xs_perm *perms;

		if (!kid)
			return -ENOMEM;
		perms = malloc(n->nperms * sizeof(*perms));
		if (!perms) {
			node_free(kid);
			return -ENOMEM;
		}
		memcpy(perms, n->perms, n->nperms * sizeof(*perms));
		if (unprivileged(r))
			perms[0].domid = r->c->domid;
		rc = node_set_perms(kid, perms, n->nperms);
		free(perms);
		if (!rc)
			rc = node_add_child(n, kid);
		if (rc) {
			node_free(kid);
			return rc;
		}
		kid->gen = ++srv->gen;
		n->gen = ++srv->gen;
		if (committed(r))
			acct_subtree(srv, kid, +1);
		else if (unprivileged(r))
			r->tx->created++;
		n = kid;
		p = name + l;
	}
	*out = n;
	return 0;
}

/* ---- READ / WRITE / MKDIR / RM ----------------------------------------- */

static int do_read(struct req *r)
{
	char path[PATH_BUF];
	struct xs_node *n;
	const char *arg;
	int rc;

	if ((rc = onearg(r, &arg)) || (rc = canonicalize(r->c, arg, path, false, NULL)) ||
	    (rc = get_node(r, path, XS_PERM_READ, &n)))
		return rc;
	return reply(r, n->value, n->vlen);
}

static void changed(struct req *r, const char *path, struct xs_node *n)
{
	if (r->tx)
		tx_change(r, path, XS_CH_WRITE);
	else
		fire_watches(r->srv, path, false, n->perms, n->nperms);
}

static int do_write(struct req *r)
{
	const char *vec[1];
	char path[PATH_BUF];
	struct xs_node *n;
	const char *val;
	size_t vlen;
	int rc;

	if (get_strings(r, vec, 1) != 1)
		return -EINVAL;
	rc = canonicalize(r->c, vec[0], path, false, NULL);
	if (rc)
		return rc;
	val = vec[0] + strlen(vec[0]) + 1;
	vlen = r->len - (size_t)(val - r->body);
	if (unprivileged(r) && r->srv->o.quota_entry_size &&
	    vlen > r->srv->o.quota_entry_size)
		return -ENOSPC;
	n = tree_lookup(r->root, path);
	if ((rc = tx_touch(r, path, n)))
		return rc;
	if (n) {
		if (!(perm_of(r, n) & XS_PERM_WRITE))
			return -EACCES;
	} else if ((rc = create_path(r, path, &n))) {
		return rc;
	}
	if ((rc = node_set_value(n, val, vlen)))
		return rc;
	n->gen = ++r->srv->gen;
	changed(r, path, n);
	return reply_ok(r);
}

static int do_mkdir(struct req *r)
{
	char path[PATH_BUF];
	struct xs_node *n;
	const char *arg;
	int rc;

	if ((rc = onearg(r, &arg)) || (rc = canonicalize(r->c, arg, path, false, NULL)))
		return rc;
	n = tree_lookup(r->root, path);
	if ((rc = tx_touch(r, path, n)))
		return rc;
	if (n)
		return (perm_of(r, n) & XS_PERM_WRITE) ? reply_ok(r) : -EACCES;
	if ((rc = create_path(r, path, &n)))
		return rc;
	changed(r, path, n);
	return reply_ok(r);
}

static int do_rm(struct req *r)
{
	char path[PATH_BUF];
	struct xs_node *n, *parent;
	const char *arg;
	int rc;

	if ((rc = onearg(r, &arg)) || (rc = canonicalize(r->c, arg, path, false, NULL)))
		return rc;
	if (strcmp(path, "/") == 0)
		return -EINVAL;
	rc = get_node(r, path, XS_PERM_WRITE, &n);
	if (rc == -ENOENT) {
		/* Not an error if the parent exists. */
		char *slash = strrchr(path, '/');

		*slash = '\0';
		return tree_lookup(r->root, slash == path ? "/" : path)
			       ? reply_ok(r) : -ENOENT;
	}
	if (rc)
		return rc;
	parent = n->parent;
	if (r->tx) {
		if ((rc = tx_touch_node(r, parent)) ||
		    (rc = tx_touch_subtree(r, n)) ||
		    (rc = tx_change(r, path, XS_CH_RM)))
			return rc;
		if (unprivileged(r))
			r->tx->created -= (int32_t)node_count(n);
	} else {
		fire_watches(r->srv, path, true, n->perms, n->nperms);
		acct_subtree(r->srv, n, -1);
	}
	node_unlink(n);
	node_free(n);
	parent->gen = ++r->srv->gen;
	return reply_ok(r);
}

/* ---- DIRECTORY / DIRECTORY_PART / GET_PERMS / SET_PERMS ----------------- */

/* Children names, each NUL-terminated, into a malloc'd buffer (caller frees). */
static int children(const struct xs_node *n, char **out, size_t *len_out)
{
	size_t len = 0, off = 0;
	char *b;

	for (uint32_t i = 0; i < n->nkids; i++)
		len += strlen(n->kids[i]->name) + 1;
	b = malloc(len + 1);
	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < n->nkids; i++) {
		size_t l = strlen(n->kids[i]->name) + 1;

		memcpy(b + off, n->kids[i]->name, l);
		off += l;
	}
	*out = b;
	*len_out = len;
	return 0;
}

static int do_directory(struct req *r)
{
	char path[PATH_BUF];
	struct xs_node *n;
	const char *arg;
	size_t len;
	char *b;
	int rc;

	if ((rc = onearg(r, &arg)) || (rc = canonicalize(r->c, arg, path, false, NULL)) ||
	    (rc = get_node(r, path, XS_PERM_READ, &n)) ||
	    (rc = children(n, &b, &len)))
		return rc;
	rc = len > XENSTORE_PAYLOAD_MAX ? -E2BIG : reply(r, b, len);
	free(b);
	return rc;
}

/*
 * Reply: "<gencnt>\0" then names from byte @offset, whole names only; the
 * chunk that reaches the end of the list carries one more "\0" (so an
 * offset at or past the end gets just "<gencnt>\0\0").
 */
static int do_directory_part(struct req *r)
{
	char path[PATH_BUF], out[XENSTORE_PAYLOAD_MAX];
	const char *vec[2];
	unsigned long offset;
	struct xs_node *n;
	size_t len, glen, take = 0;
	char *b;
	int rc;

	if (get_strings(r, vec, 2) != 2 || !parse_uint(vec[1], 0xffffffffUL, &offset))
		return -EINVAL;
	if ((rc = canonicalize(r->c, vec[0], path, false, NULL)) ||
	    (rc = get_node(r, path, XS_PERM_READ, &n)) ||
	    (rc = children(n, &b, &len)))
		return rc;
	/* Past the end: an empty list, as xenstored answers. */
	if (offset > len)
		offset = len;
	glen = (size_t)snprintf(out, sizeof(out), "%llu",
				(unsigned long long)n->gen) + 1;
	while (offset + take < len) {
		size_t l = strlen(b + offset + take) + 1;

		if (glen + take + l + 1 > sizeof(out))
			break;
		take += l;
	}
	memcpy(out + glen, b + offset, take);
	if (offset + take == len)
		out[glen + take++] = '\0';
	free(b);
	return reply(r, out, glen + take);
}

static int do_get_perms(struct req *r)
{
	char path[PATH_BUF], out[XENSTORE_PAYLOAD_MAX];
	struct xs_node *n;
	const char *arg;
	size_t off = 0;
	int rc;

	if ((rc = onearg(r, &arg)) || (rc = canonicalize(r->c, arg, path, false, NULL)) ||
	    (rc = get_node(r, path, XS_PERM_READ, &n)))
		return rc;
	for (uint32_t i = 0; i < n->nperms; i++) {
		int l = perm_format(&n->perms[i], out + off, sizeof(out) - off);

		if (l < 0)
			return -E2BIG;
		off += (size_t)l + 1;
	}
	return reply(r, out, off);
}

static int do_set_perms(struct req *r)
{
	const char *vec[1 + XENSTORE_PAYLOAD_MAX / 2];
	struct xs_perm perms[XENSTORE_PAYLOAD_MAX / 2];
	char path[PATH_BUF];
	struct xs_node *n;
	unsigned int nv;
	int rc;

	if (r->len == 0 || r->body[r->len - 1] != '\0')
		return -EINVAL;
	nv = get_strings(r, vec, PVM_ARRAY_SIZE(vec));
	if (nv < 2)
		return -EINVAL;
	for (unsigned int i = 1; i < nv; i++)
		if (!perm_parse(vec[i], &perms[i - 1]))
			return -EINVAL;
	if (unprivileged(r) && r->srv->o.quota_perms &&
	    nv - 2 > r->srv->o.quota_perms)
		return -ENOSPC;
	if ((rc = canonicalize(r->c, vec[0], path, false, NULL)) ||
	    (rc = get_node(r, path, XS_PERM_WRITE | XS_PERM_OWNER, &n)))
		return rc;
	/* Unprivileged domains may not give their nodes away. */
	if (unprivileged(r) && perms[0].domid != n->perms[0].domid)
		return -EPERM;
	if (committed(r))
		acct_owner(r->srv, n->perms[0].domid, -1);
	rc = node_set_perms(n, perms, nv - 1);
	if (committed(r))
		acct_owner(r->srv, n->perms[0].domid, +1);
	if (rc)
		return rc;
	n->gen = ++r->srv->gen;
	changed(r, path, n);
	return reply_ok(r);
}

/* ---- watches ----------------------------------------------------------- */

void watch_free(struct xs_watch *w)
{
	if (!w)
		return;
	free(w->path);
	free(w->token);
	free(w);
}

static void send_event(struct xs_conn *c, const struct xs_watch *w,
		       const char *epath)
{
	char buf[XENSTORE_PAYLOAD_MAX];
	char prefix[40];
	size_t pl, el, tl;

	if (w->relative) {
		pl = implicit_prefix(c, prefix, sizeof(prefix));
		if (strncmp(epath, prefix, pl) == 0)
			epath += pl;
	}
	el = strlen(epath) + 1;
	tl = strlen(w->token) + 1;
	if (el + tl > sizeof(buf)) {
		pvm_warn("xenstored: connection %u: watch event for %s too long, dropped",
			 c->id, epath);
		return;
	}
	memcpy(buf, epath, el);
	memcpy(buf + el, w->token, tl);
	conn_send(c, XS_WATCH_EVENT, 0, 0, buf, el + tl);
}

void watch_fire_initial(struct xs_conn *c, const struct xs_watch *w)
{
	send_event(c, w, w->path);
}

void fire_watches(struct pvm_xenstored *srv, const char *path, bool recurse,
		  const struct xs_perm *p, uint32_t np)
{
	struct xs_conn *c, *next;

	for (c = srv->conns; c; c = next) {
		next = c->next;
		/* send_event() may drop @c (and free its watches). */
		for (struct xs_watch *w = c->watches;
		     w && c->state == XS_CONN_OPEN; w = w->next) {
			const char *ep;

			if (w->path[0] == '@')
				continue;
			if (is_child(path, w->path))
				ep = path;
			else if (recurse && is_child(w->path, path))
				ep = w->path;
			else
				continue;
			if (c->domid != 0 &&
			    (!p || !(perm_for(c->domid, dom_target(srv, c->domid),
					      p, np) & XS_PERM_READ)))
				continue;
			send_event(c, w, ep);
			if (c->state != XS_CONN_OPEN)
				break;
		}
	}
}

/* @introduceDomain / @releaseDomain go to privileged watchers. */
void fire_special(struct pvm_xenstored *srv, const char *name)
{
	struct xs_conn *c, *next;

	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (c->domid != 0)
			continue;
		for (struct xs_watch *w = c->watches; w; w = w->next) {
			if (strcmp(w->path, name) != 0)
				continue;
			send_event(c, w, name);
			if (c->state != XS_CONN_OPEN)
				break; /* dropped: its watches are gone */
		}
	}
}

int watch_attach(struct xs_conn *c, struct xs_watch *w)
{
	struct xs_dom *d = c->domid ? dom_get(c->srv, c->domid, false) : NULL;
	struct xs_watch **pp = &c->watches;

	while (*pp)
		pp = &(*pp)->next;
	w->next = NULL;
	*pp = w;
	c->nwatches++;
	if (d)
		d->watches++;
	return 0;
}

static int do_watch(struct req *r)
{
	const char *vec[2];
	char path[PATH_BUF];
	struct xs_dom *d;
	struct xs_watch *w;
	bool relative;
	int rc;

	if (get_strings(r, vec, 2) != 2)
		return -EINVAL;
	if ((rc = canonicalize(r->c, vec[0], path, true, &relative)))
		return rc;
	if (strlen(vec[1]) > XS_TOKEN_MAX)
		return -E2BIG;
	for (w = r->c->watches; w; w = w->next)
		if (strcmp(w->path, path) == 0 && strcmp(w->token, vec[1]) == 0)
			return -EEXIST;
	d = unprivileged(r) ? dom_get(r->srv, r->c->domid, false) : NULL;
	if (d && r->srv->o.quota_watches && d->watches >= r->srv->o.quota_watches)
		return -E2BIG;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->path = strdup(path);
	w->token = strdup(vec[1]);
	w->relative = relative;
	if (!w->path || !w->token) {
		watch_free(w);
		return -ENOMEM;
	}
	watch_attach(r->c, w);
	rc = reply_ok(r);
	/* Fired once straight away, after the reply (as xenstored does). */
	if (r->c->state == XS_CONN_OPEN)
		watch_fire_initial(r->c, w);
	return rc;
}

static int do_unwatch(struct req *r)
{
	const char *vec[2];
	char path[PATH_BUF];
	struct xs_watch **pp;
	int rc;

	if (get_strings(r, vec, 2) != 2)
		return -EINVAL;
	if ((rc = canonicalize(r->c, vec[0], path, true, NULL)))
		return rc;
	for (pp = &r->c->watches; *pp; pp = &(*pp)->next) {
		struct xs_watch *w = *pp;

		if (strcmp(w->path, path) == 0 && strcmp(w->token, vec[1]) == 0) {
			struct xs_dom *d = r->c->domid ?
				dom_get(r->srv, r->c->domid, false) : NULL;

			*pp = w->next;
			watch_free(w);
			r->c->nwatches--;
			if (d && d->watches)
				d->watches--;
			return reply_ok(r);
		}
	}
	return -ENOENT;
}

static void drop_txs(struct xs_conn *c)
{
	struct xs_dom *d = c->domid ? dom_get(c->srv, c->domid, false) : NULL;

	while (c->txs) {
		struct xs_tx *t = c->txs;

		c->txs = t->next;
		tx_free(t);
		c->ntx--;
		if (d && d->txs)
			d->txs--;
	}
}

static int do_reset_watches(struct req *r)
{
	struct xs_dom *d = r->c->domid ? dom_get(r->srv, r->c->domid, false) : NULL;

	while (r->c->watches) {
		struct xs_watch *w = r->c->watches;

		r->c->watches = w->next;
		watch_free(w);
		if (d && d->watches)
			d->watches--;
	}
	r->c->nwatches = 0;
	drop_txs(r->c);
	return reply_ok(r);
}

/* ---- transactions ------------------------------------------------------ */

static int do_transaction_start(struct req *r)
{
	struct xs_dom *d = unprivileged(r) ? dom_get(r->srv, r->c->domid, false) : NULL;
	struct xs_tx *t;
	char out[16];

	if (r->tx)
		return -EBUSY;
	if (d && r->srv->o.quota_transactions &&
	    d->txs >= r->srv->o.quota_transactions)
		return -ENOSPC;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->root = node_clone(r->srv->root);
	if (!t->root) {
		free(t);
		return -ENOMEM;
	}
	/* Ids are never 0 and never one still open on this connection. */
	for (;;) {
		struct xs_tx *o;

		t->id = r->c->next_txid++;
		if (t->id == 0)
			continue;
		for (o = r->c->txs; o && o->id != t->id; o = o->next)
			;
		if (!o)
			break;
	}
	t->next = r->c->txs;
	r->c->txs = t;
	r->c->ntx++;
	if (d)
		d->txs++;
	snprintf(out, sizeof(out), "%u", t->id);
	return reply(r, out, strlen(out) + 1);
}

/* Creates the committed counterpart of @path, copying missing parents
 * (value and ACL) from the transaction's tree. */
static struct xs_node *commit_path(struct pvm_xenstored *srv,
				   struct xs_node *txroot, const char *path)
{
	struct xs_node *n = srv->root;
	char sub[PATH_BUF];
	const char *p = path;

	while (*p == '/' && p[1]) {
		const char *name = p + 1, *e = strchr(name, '/');
		size_t l = e ? (size_t)(e - name) : strlen(name);
		struct xs_node *kid = node_child(n, name, l);

		if (!kid) {
			struct xs_node *src;

			memcpy(sub, path, (size_t)(name + l - path));
			sub[name + l - path] = '\0';
			src = tree_lookup(txroot, sub);
			kid = node_new(name, l);
			if (!kid || !src ||
			    node_set_value(kid, src->value, src->vlen) ||
			    node_set_perms(kid, src->perms, src->nperms) ||
			    node_add_child(n, kid)) {
				node_free(kid);
				return NULL;
			}
			kid->gen = ++srv->gen;
			n->gen = ++srv->gen;
			acct_subtree(srv, kid, +1);
		}
		n = kid;
		p = name + l;
	}
	return n;
}

static int tx_commit(struct pvm_xenstored *srv, struct xs_tx *t)
{
	for (uint32_t i = 0; i < t->nacc; i++) {
		struct xs_node *g = tree_lookup(srv->root, t->acc[i].path);

		if ((g ? g->gen : 0) != t->acc[i].gen)
			return -EAGAIN;
	}
	for (uint32_t i = 0; i < t->nch; i++) {
		const char *path = t->ch[i].path;
		struct xs_node *g;

		if (t->ch[i].kind == XS_CH_RM) {
			g = tree_lookup(srv->root, path);
			if (!g || !g->parent)
				continue;
			fire_watches(srv, path, true, g->perms, g->nperms);
			acct_subtree(srv, g, -1);
			g->parent->gen = ++srv->gen;
			node_unlink(g);
			node_free(g);
		} else {
			struct xs_node *tn = tree_lookup(t->root, path);

			if (!tn)
				continue; /* removed later in the transaction */
			g = commit_path(srv, t->root, path);
			if (!g)
				return -ENOMEM;
			acct_owner(srv, g->perms[0].domid, -1);
			if (node_set_value(g, tn->value, tn->vlen) ||
			    node_set_perms(g, tn->perms, tn->nperms))
				return -ENOMEM;
			acct_owner(srv, g->perms[0].domid, +1);
			g->gen = ++srv->gen;
			fire_watches(srv, path, false, g->perms, g->nperms);
		}
	}
	return 0;
}

static int do_transaction_end(struct req *r)
{
	struct xs_dom *d = r->c->domid ? dom_get(r->srv, r->c->domid, false) : NULL;
	struct xs_tx **pp;
	const char *arg;
	int rc;

	if (!r->tx)
		return -ENOENT;
	if ((rc = onearg(r, &arg)))
		return rc;
	if (strcmp(arg, "T") != 0 && strcmp(arg, "F") != 0)
		return -EINVAL;
	for (pp = &r->c->txs; *pp != r->tx; pp = &(*pp)->next)
		;
	*pp = r->tx->next;
	r->c->ntx--;
	if (d && d->txs)
		d->txs--;
	rc = arg[0] == 'T' ? tx_commit(r->srv, r->tx) : 0;
	tx_free(r->tx);
	r->tx = NULL;
	return rc ? rc : reply_ok(r);
}

/* ---- domains ----------------------------------------------------------- */

static int arg_domid(const char *s, uint16_t *out)
{
	unsigned long v;

	if (!parse_uint(s, 0xffff, &v))
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

static int do_introduce(struct req *r)
{
	const char *vec[3];
	unsigned long v;
	uint16_t domid;
	int rc;

	if (get_strings(r, vec, 3) != 3 || arg_domid(vec[0], &domid) ||
	    !parse_uint(vec[1][0] == '-' ? vec[1] + 1 : vec[1], 0xffffffffUL, &v) ||
	    !parse_uint(vec[2], 0xffffffffUL, &v))
		return -EINVAL;
	rc = srv_introduce(r->srv, domid);
	return rc ? rc : reply_ok(r);
}

static int do_release(struct req *r)
{
	const char *arg;
	uint16_t domid;
	int rc;

	if ((rc = onearg(r, &arg)) || (rc = arg_domid(arg, &domid)))
		return rc;
	rc = srv_release(r->srv, domid);
	return rc ? rc : reply_ok(r);
}

static int do_resume(struct req *r)
{
	const char *arg;
	uint16_t domid;
	struct xs_dom *d;
	int rc;

	if ((rc = onearg(r, &arg)) || (rc = arg_domid(arg, &domid)))
		return rc;
	d = dom_get(r->srv, domid, false);
	return d && d->introduced ? reply_ok(r) : -ENOENT;
}

static int do_set_target(struct req *r)
{
	const char *vec[2];
	uint16_t domid, target;
	struct xs_dom *d;

	if (get_strings(r, vec, 2) != 2 || arg_domid(vec[0], &domid) ||
	    arg_domid(vec[1], &target))
		return -EINVAL;
	d = dom_get(r->srv, domid, false);
	if (!d || !d->introduced)
		return -ENOENT;
	d->target = target;
	return reply_ok(r);
}

static int do_get_domain_path(struct req *r)
{
	char out[40];
	const char *arg;
	uint16_t domid;
	int rc;

	if ((rc = onearg(r, &arg)) || (rc = arg_domid(arg, &domid)))
		return rc;
	snprintf(out, sizeof(out), "/local/domain/%u", (unsigned)domid);
	return reply(r, out, strlen(out) + 1);
}

static int do_is_domain_introduced(struct req *r)
{
	const char *arg;
	uint16_t domid;
	struct xs_dom *d;
	int rc;

	if ((rc = onearg(r, &arg)) || (rc = arg_domid(arg, &domid)))
		return rc;
	d = dom_get(r->srv, domid, false);
	return reply(r, domid == 0 || (d && d->introduced) ? "T" : "F", 2);
}

static int do_control(struct req *r)
{
	static const char help[] = "check\nhelp\nprint|<string>\n";
	const char *vec[2];
	unsigned int n = get_strings(r, vec, 2);

	if (n < 1)
		return -EINVAL;
	if (strcmp(vec[0], "help") == 0)
		return reply(r, help, sizeof(help));
	if (strcmp(vec[0], "check") == 0)
		return reply_ok(r);
	if (strcmp(vec[0], "print") == 0 && n == 2) {
		pvm_info("xenstored: %s", vec[1]);
		return reply_ok(r);
	}
	return -EINVAL;
}

/* ---- the host's own writes (layout.c) ----------------------------------- */

/* A request context acting as the host (dom0) on the committed tree. */
static void host_req(struct pvm_xenstored *srv, struct xs_conn *host,
		     struct req *r)
{
	memset(host, 0, sizeof(*host));
	host->srv = srv;
	host->domid = 0;
	host->state = XS_CONN_CLOSING; /* never sent to */
	memset(r, 0, sizeof(*r));
	r->c = host;
	r->srv = srv;
	r->root = srv->root;
}

int host_write(struct pvm_xenstored *srv, const char *path, const char *v,
	       const struct xs_perm *p, uint32_t np)
{
	struct xs_conn host;
	struct xs_node *n;
	struct req r;
	int rc;

	if (!path_valid(path))
		return -EINVAL;
	host_req(srv, &host, &r);
	n = tree_lookup(srv->root, path);
	if (!n && (rc = create_path(&r, path, &n)))
		return rc;
	if (v && (rc = node_set_value(n, v, strlen(v))))
		return rc;
	if (p) {
		acct_owner(srv, n->perms[0].domid, -1);
		rc = node_set_perms(n, p, np);
		acct_owner(srv, n->perms[0].domid, +1);
		if (rc)
			return rc;
	}
	n->gen = ++srv->gen;
	fire_watches(srv, path, false, n->perms, n->nperms);
	return 0;
}

int host_rm(struct pvm_xenstored *srv, const char *path)
{
	struct xs_node *n;

	if (!path_valid(path) || strcmp(path, "/") == 0)
		return -EINVAL;
	n = tree_lookup(srv->root, path);
	if (!n)
		return 0;
	fire_watches(srv, path, true, n->perms, n->nperms);
	acct_subtree(srv, n, -1);
	n->parent->gen = ++srv->gen;
	node_unlink(n);
	node_free(n);
	return 0;
}

/* ---- dispatch ---------------------------------------------------------- */

enum { F_PRIV = 1, F_NOTX = 2 };

static const struct {
	const char *name;
	int (*fn)(struct req *r);
	unsigned int flags;
} wire[XS_TYPE_COUNT] = {
	[XS_CONTROL] = { "CONTROL", do_control, F_PRIV },
	[XS_DIRECTORY] = { "DIRECTORY", do_directory, 0 },
	[XS_READ] = { "READ", do_read, 0 },
	[XS_GET_PERMS] = { "GET_PERMS", do_get_perms, 0 },
	[XS_WATCH] = { "WATCH", do_watch, F_NOTX },
	[XS_UNWATCH] = { "UNWATCH", do_unwatch, F_NOTX },
	[XS_TRANSACTION_START] = { "TRANSACTION_START", do_transaction_start, 0 },
	[XS_TRANSACTION_END] = { "TRANSACTION_END", do_transaction_end, 0 },
	[XS_INTRODUCE] = { "INTRODUCE", do_introduce, F_PRIV },
	[XS_RELEASE] = { "RELEASE", do_release, F_PRIV },
	[XS_GET_DOMAIN_PATH] = { "GET_DOMAIN_PATH", do_get_domain_path, 0 },
	[XS_WRITE] = { "WRITE", do_write, 0 },
	[XS_MKDIR] = { "MKDIR", do_mkdir, 0 },
	[XS_RM] = { "RM", do_rm, 0 },
	[XS_SET_PERMS] = { "SET_PERMS", do_set_perms, 0 },
	[XS_WATCH_EVENT] = { "WATCH_EVENT", NULL, 0 },
	[XS_ERROR] = { "ERROR", NULL, 0 },
	[XS_IS_DOMAIN_INTRODUCED] = { "IS_DOMAIN_INTRODUCED", do_is_domain_introduced, 0 },
	[XS_RESUME] = { "RESUME", do_resume, F_PRIV },
	[XS_SET_TARGET] = { "SET_TARGET", do_set_target, F_PRIV },
	[XS_RESET_WATCHES] = { "RESET_WATCHES", do_reset_watches, F_NOTX },
	[XS_DIRECTORY_PART] = { "DIRECTORY_PART", do_directory_part, 0 },
};

void ops_dispatch(struct xs_conn *c, const struct xsd_sockmsg *hdr,
		  const uint8_t *body)
{
	struct req r = {
		.c = c,
		.srv = c->srv,
		.hdr = hdr,
		.body = (const char *)body,
		.len = hdr->len,
		.root = c->srv->root,
	};
	int rc;

	if (hdr->type >= XS_TYPE_COUNT || !wire[hdr->type].fn) {
		pvm_debug("xenstored: connection %u: unknown message type %u",
			  c->id, hdr->type);
		reply_err(c, hdr, ENOSYS);
		return;
	}
	if ((wire[hdr->type].flags & F_PRIV) && c->domid != 0) {
		reply_err(c, hdr, EACCES);
		return;
	}
	if (hdr->tx_id && !(wire[hdr->type].flags & F_NOTX)) {
		for (r.tx = c->txs; r.tx && r.tx->id != hdr->tx_id; r.tx = r.tx->next)
			;
		if (!r.tx) {
			reply_err(c, hdr, ENOENT);
			return;
		}
		r.root = r.tx->root;
	}
	rc = wire[hdr->type].fn(&r);
	if (rc < 0)
		reply_err(c, hdr, -rc);
}
