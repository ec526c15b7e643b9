/*
 * One domain's xenstore content as migration records, laid out as in
 * Xen's docs/designs/xenstore-migration.md (see docs/sim-host.md):
 *
 *   header   "xenstore" | version 1 (BE u32) | flags 0 (BE u32; LE records)
 *   record   type u32 | len u32 | body | zero padding to 8
 *     CONNECTION_DATA (2)  conn-id 1, shared ring, domid, tdomid, evtchn 0,
 *                          no pending data
 *     WATCH_DATA (3)       conn-id | wpath-len u16 | token-len u16 |
 *                          wpath\0 | token\0     (wpath as registered)
 *     NODE_DATA (5)        conn-id 0 | tx-id 0 | path-len u16 |
 *                          value-len u16 | access 0 | perm-count u16 |
 *                          perms (char, pad, domid u16) | path\0 | value
 *     END (0)
 *
 * Decoding goes through common/'s cursor; every length is bounded before
 * it is used, and nothing in the store changes unless the whole stream
 * decodes.
 */
#include "hv/sim/xenstored/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	REC_END = 0,
	REC_GLOBAL_DATA = 1,
	REC_CONNECTION_DATA = 2,
	REC_WATCH_DATA = 3,
	REC_TRANSACTION_DATA = 4,
	REC_NODE_DATA = 5,
};

#define REC_MAX_LEN (64u * 1024u)
#define REC_MAX_PERMS 256u
#define REC_MAX_WATCHES 4096u
#define CONN_ID 1u

static const uint8_t ident[8] = { 'x', 'e', 'n', 's', 't', 'o', 'r', 'e' };
static const char perm_chars[4] = { 'n', 'r', 'w', 'b' };

static void put_be32(struct pvm_buf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 8), (uint8_t)v };

	pvm_buf_put_bytes(b, x, 4);
}

static void rec_begin(struct pvm_buf *b, uint32_t type, uint32_t len)
{
	pvm_buf_put_u32(b, type);
	pvm_buf_put_u32(b, len);
}

static void put_watch(struct pvm_buf *b, uint16_t domid,
		      const struct xs_watch *w)
{
	char prefix[40];
	const char *p = w->path;
	size_t pl, tl;

	if (w->relative) {
		size_t l = (size_t)snprintf(prefix, sizeof(prefix),
					    "/local/domain/%u/", (unsigned)domid);

		if (strncmp(p, prefix, l) == 0)
			p += l;
	}
	pl = strlen(p) + 1;
	tl = strlen(w->token) + 1;
	rec_begin(b, REC_WATCH_DATA, (uint32_t)(8 + pl + tl));
	pvm_buf_put_u32(b, CONN_ID);
	pvm_buf_put_u16(b, (uint16_t)pl);
	pvm_buf_put_u16(b, (uint16_t)tl);
	pvm_buf_put_bytes(b, p, pl);
	pvm_buf_put_bytes(b, w->token, tl);
	pvm_buf_pad(b, 8);
}

/* Pre-order, parents first. @path: one scratch buffer for all levels, so
 * a deep tree costs no stack per level beyond the call itself. */
static int put_nodes(struct pvm_buf *b, const struct xs_node *n, char *path,
		     size_t pathlen)
{
	size_t pl;
	int rc = node_path(n, path, pathlen);

	if (rc)
		return rc;
	pl = strlen(path) + 1;
	if (n->vlen > 0xffff || n->nperms > 0xffff)
		return -E2BIG;
	rec_begin(b, REC_NODE_DATA, (uint32_t)(16 + 4 * n->nperms + pl + n->vlen));
	pvm_buf_put_u32(b, 0);
	pvm_buf_put_u32(b, 0);
	pvm_buf_put_u16(b, (uint16_t)pl);
	pvm_buf_put_u16(b, (uint16_t)n->vlen);
	pvm_buf_put_u16(b, 0);
	pvm_buf_put_u16(b, (uint16_t)n->nperms);
	for (uint32_t i = 0; i < n->nperms; i++) {
		pvm_buf_put_u8(b, (uint8_t)perm_chars[n->perms[i].access & 3]);
		pvm_buf_put_u8(b, 0);
		pvm_buf_put_u16(b, n->perms[i].domid);
	}
	pvm_buf_put_bytes(b, path, pl);
	pvm_buf_put_bytes(b, n->value, n->vlen);
	pvm_buf_pad(b, 8);
	for (uint32_t i = 0; !rc && i < n->nkids; i++)
		rc = put_nodes(b, n->kids[i], path, pathlen);
	return rc;
}

int pvm_xs_export_domain(struct pvm_xenstored *srv, uint16_t domid,
			 struct pvm_buf *out)
{
	char scratch[XENSTORE_ABS_PATH_MAX + 64]; /* one for all levels */
	char path[40];
	struct xs_node *n;
	struct xs_dom *d;
	int rc;

	if (domid == 0 || domid >= XS_DOMID_FIRST_RESERVED)
		return -EINVAL;
	snprintf(path, sizeof(path), "/local/domain/%u", (unsigned)domid);
	pthread_mutex_lock(&srv->lock);
	n = tree_lookup(srv->root, path);
	if (!n) {
		rc = -ENOENT;
		goto out_unlock;
	}
	d = dom_get(srv, domid, false);
	pvm_buf_put_bytes(out, ident, sizeof(ident));
	put_be32(out, 1);
	put_be32(out, 0);

	rec_begin(out, REC_CONNECTION_DATA, 4 + 2 + 2 + 8 + 8);
	pvm_buf_put_u32(out, CONN_ID);
	pvm_buf_put_u16(out, 0); /* shared ring */
	pvm_buf_put_u16(out, 0); /* flags */
	pvm_buf_put_u16(out, domid);
	pvm_buf_put_u16(out, d ? d->target : XS_DOMID_INVALID);
	pvm_buf_put_u32(out, 0); /* evtchn: the simulated host has none */
	pvm_buf_put_u16(out, 0); /* in-data-len */
	pvm_buf_put_u16(out, 0); /* out-resp-len */
	pvm_buf_put_u32(out, 0); /* out-data-len */
	pvm_buf_pad(out, 8);

	for (struct xs_conn *c = srv->conns; c; c = c->next)
		if (c->domid == domid)
			for (struct xs_watch *w = c->watches; w; w = w->next)
				put_watch(out, domid, w);
	for (struct xs_watch *w = d ? d->saved_watches : NULL; w; w = w->next)
		put_watch(out, domid, w);
	rc = put_nodes(out, n, scratch, sizeof(scratch));
	rec_begin(out, REC_END, 0);
	if (!rc)
		rc = out->err;
out_unlock:
	pthread_mutex_unlock(&srv->lock);
	return rc;
}

/* ---- import ------------------------------------------------------------ */

struct import {
	uint16_t old_domid, new_domid;
	bool have_conn, have_old;
	struct xs_node *root; /* the new /local/domain/<new> */
	struct xs_watch *watches, **wtail; /* in stream order */
	uint32_t nwatches;
	char old_prefix[40], new_prefix[40];
	size_t old_pl;
};

static void set_old(struct import *im, uint16_t old)
{
	im->old_domid = old;
	im->have_old = true;
	im->old_pl = (size_t)snprintf(im->old_prefix, sizeof(im->old_prefix),
				      "/local/domain/%u", (unsigned)old);
}

/* Rewrites @in (under the old domain's path) into @out for the new one. */
static int remap(const struct import *im, const char *in, char *out, size_t len)
{
	if (strncmp(in, im->old_prefix, im->old_pl) != 0 ||
	    (in[im->old_pl] != '/' && in[im->old_pl] != '\0'))
		return -EBADMSG;
	if ((size_t)snprintf(out, len, "%s%s", im->new_prefix,
			     in + im->old_pl) >= len)
		return -EBADMSG;
	return 0;
}

/* A NUL-terminated string of exactly @n bytes (NUL included). */
static int get_str(struct pvm_cursor *c, size_t n, const char **out)
{
	const uint8_t *p;

	if (n == 0 || pvm_cursor_bytes(c, n, &p) || p[n - 1] != '\0' ||
	    strlen((const char *)p) != n - 1)
		return -EBADMSG;
	*out = (const char *)p;
	return 0;
}

static int rec_connection(struct import *im, struct pvm_cursor *c)
{
	uint32_t id, out_len;
	uint16_t type, flags, domid, tdomid, in_len, resp_len;
	uint32_t evtchn;

	pvm_cursor_u32(c, &id);
	pvm_cursor_u16(c, &type);
	pvm_cursor_u16(c, &flags);
	pvm_cursor_u16(c, &domid);
	pvm_cursor_u16(c, &tdomid);
	pvm_cursor_u32(c, &evtchn);
	pvm_cursor_u16(c, &in_len);
	pvm_cursor_u16(c, &resp_len);
	if (pvm_cursor_u32(c, &out_len) || im->have_conn || id != CONN_ID ||
	    type != 0 || domid == 0 || domid >= XS_DOMID_FIRST_RESERVED)
		return -EBADMSG;
	/* Pending data is not carried: the simulated host drains first. */
	if (pvm_cursor_skip(c, (size_t)in_len + out_len))
		return -EBADMSG;
	im->have_conn = true;
	set_old(im, domid);
	return 0;
}

static int rec_watch(struct import *im, struct pvm_cursor *c)
{
	uint32_t id;
	uint16_t pl, tl;
	const char *wpath, *token;
	char path[XENSTORE_ABS_PATH_MAX + 64];
	struct xs_watch *w;
	bool relative = false;

	pvm_cursor_u32(c, &id);
	pvm_cursor_u16(c, &pl);
	if (pvm_cursor_u16(c, &tl) || id != CONN_ID || !im->have_conn ||
	    pl > XENSTORE_ABS_PATH_MAX + 1 || tl > XS_TOKEN_MAX + 1 ||
	    im->nwatches >= REC_MAX_WATCHES ||
	    get_str(c, pl, &wpath) || get_str(c, tl, &token))
		return -EBADMSG;
	if (wpath[0] == '@') {
		if (pl > XENSTORE_REL_PATH_MAX + 1)
			return -EBADMSG;
		snprintf(path, sizeof(path), "%s", wpath);
	} else if (wpath[0] == '/') {
		/* Absolute watches elsewhere in the tree keep their path. */
		if (remap(im, wpath, path, sizeof(path)))
			snprintf(path, sizeof(path), "%s", wpath);
	} else {
		relative = true;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", im->new_prefix,
				     wpath) >= sizeof(path))
			return -EBADMSG;
	}
	if (path[0] == '/' && !path_valid(path))
		return -EBADMSG;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->path = strdup(path);
	w->token = strdup(token);
	w->relative = relative;
	if (!w->path || !w->token) {
		watch_free(w);
		return -ENOMEM;
	}
	*im->wtail = w;
	im->wtail = &w->next;
	im->nwatches++;
	return 0;
}

static int rec_node(struct import *im, struct pvm_cursor *c)
{
	uint32_t conn_id, tx_id;
	uint16_t pl, vl, access, np;
	struct xs_perm perms[REC_MAX_PERMS];
	char path[XENSTORE_ABS_PATH_MAX + 64];
	const uint8_t *value;
	const char *rpath;
	struct xs_node *parent, *n;
	char *slash;
	int rc;

	pvm_cursor_u32(c, &conn_id);
	pvm_cursor_u32(c, &tx_id);
	pvm_cursor_u16(c, &pl);
	pvm_cursor_u16(c, &vl);
	pvm_cursor_u16(c, &access);
	if (pvm_cursor_u16(c, &np) || conn_id != 0 || np == 0 ||
	    np > REC_MAX_PERMS || pl > XENSTORE_ABS_PATH_MAX + 1 ||
	    vl > XENSTORE_PAYLOAD_MAX)
		return -EBADMSG;
	for (uint16_t i = 0; i < np; i++) {
		uint8_t ch, pad;
		uint16_t domid;
		const char *k;

		pvm_cursor_u8(c, &ch);
		pvm_cursor_u8(c, &pad);
		if (pvm_cursor_u16(c, &domid) || ch == 0 ||
		    !(k = memchr(perm_chars, ch, sizeof(perm_chars))))
			return -EBADMSG;
		perms[i].access = (uint8_t)(k - perm_chars);
		perms[i].domid = domid;
	}
	if (get_str(c, pl, &rpath) || pvm_cursor_bytes(c, vl, &value) ||
	    !path_valid(rpath))
		return -EBADMSG;
	if (!im->have_old) {
		unsigned int old;
		int off = 0;

		if (sscanf(rpath, "/local/domain/%5u%n", &old, &off) != 1 ||
		    rpath[off] != '\0' || old == 0 ||
		    old >= XS_DOMID_FIRST_RESERVED)
			return -EBADMSG;
		set_old(im, (uint16_t)old);
	}
	if (remap(im, rpath, path, sizeof(path)))
		return -EBADMSG;
	for (uint16_t i = 0; i < np; i++)
		if (perms[i].domid == im->old_domid)
			perms[i].domid = im->new_domid;
	if (!im->root) {
		/* Parents come first: the first node is the domain's root. */
		if (strcmp(path, im->new_prefix) != 0)
			return -EBADMSG;
		n = node_new(strrchr(path, '/') + 1, strlen(strrchr(path, '/') + 1));
		if (!n)
			return -ENOMEM;
		im->root = n;
	} else {
		/* Look the parent up relative to the domain's root. */
		slash = strrchr(path, '/');
		if (slash - path < (ptrdiff_t)strlen(im->new_prefix))
			return -EBADMSG;
		*slash = '\0';
		parent = strcmp(path, im->new_prefix) == 0 ? im->root :
			 tree_lookup(im->root, path + strlen(im->new_prefix));
		*slash = '/';
		if (!parent || node_child(parent, slash + 1, strlen(slash + 1)))
			return -EBADMSG;
		n = node_new(slash + 1, strlen(slash + 1));
		if (!n)
			return -ENOMEM;
		if ((rc = node_add_child(parent, n))) {
			node_free(n);
			return rc;
		}
	}
	if ((rc = node_set_value(n, value, vl)) ||
	    (rc = node_set_perms(n, perms, np)))
		return rc;
	return 0;
}

static void regen(struct pvm_xenstored *srv, struct xs_node *n)
{
	n->gen = ++srv->gen;
	for (uint32_t i = 0; i < n->nkids; i++)
		regen(srv, n->kids[i]);
}

static void fire_all(struct pvm_xenstored *srv, struct xs_node *n, char *path,
		     size_t pathlen)
{
	if (node_path(n, path, pathlen) == 0)
		fire_watches(srv, path, false, n->perms, n->nperms);
	for (uint32_t i = 0; i < n->nkids; i++)
		fire_all(srv, n->kids[i], path, pathlen);
}

static int decode(struct import *im, const void *buf, size_t len)
{
	struct pvm_cursor c;
	const uint8_t *hdr;
	bool end = false;
	int rc = 0;

	pvm_cursor_init(&c, buf, len);
	if (pvm_cursor_bytes(&c, 16, &hdr) || memcmp(hdr, ident, 8) != 0 ||
	    hdr[8] || hdr[9] || hdr[10] || hdr[11] != 1 ||
	    hdr[12] || hdr[13] || hdr[14] || hdr[15])
		return -EBADMSG;
	while (!end) {
		uint32_t type, rlen;
		const uint8_t *body;
		struct pvm_cursor rc_c;

		pvm_cursor_u32(&c, &type);
		if (pvm_cursor_u32(&c, &rlen) || rlen > REC_MAX_LEN ||
		    pvm_cursor_bytes(&c, rlen, &body))
			return -EBADMSG;
		/* The padding after the last record may be absent. */
		if (type != REC_END &&
		    pvm_cursor_skip(&c, PVM_ALIGN_UP((size_t)rlen, 8) - rlen))
			return -EBADMSG;
		pvm_cursor_init(&rc_c, body, rlen);
		switch (type) {
		case REC_END:
			end = true;
			break;
		case REC_CONNECTION_DATA:
			rc = rec_connection(im, &rc_c);
			break;
		case REC_WATCH_DATA:
			rc = rec_watch(im, &rc_c);
			break;
		case REC_NODE_DATA:
			rc = rec_node(im, &rc_c);
			break;
		case REC_GLOBAL_DATA:
		case REC_TRANSACTION_DATA:
			/* Live-update only; a migration stream has none. */
		default:
			rc = -EBADMSG;
			break;
		}
		if (rc)
			return rc;
		if (pvm_cursor_remaining(&rc_c) != 0)
			return -EBADMSG;
	}
	return im->root ? 0 : -EBADMSG;
}

int pvm_xs_import_domain(struct pvm_xenstored *srv, uint16_t domid,
			 const void *buf, size_t len)
{
	char scratch[XENSTORE_ABS_PATH_MAX + 64]; /* one for all levels */
	struct import im = { .new_domid = domid };
	struct xs_node *parent, *old;
	struct xs_conn *owner = NULL;
	struct xs_watch **pp;
	int rc;

	im.wtail = &im.watches;
	if (domid == 0 || domid >= XS_DOMID_FIRST_RESERVED || !buf)
		return -EINVAL;
	snprintf(im.new_prefix, sizeof(im.new_prefix), "/local/domain/%u",
		 (unsigned)domid);
	rc = decode(&im, buf, len);
	if (rc) {
		pvm_err("xenstored: dom%u: malformed xenstore records",
			(unsigned)domid);
		goto out_free;
	}
	pthread_mutex_lock(&srv->lock);
	parent = tree_lookup(srv->root, "/local/domain");
	if (!parent) {
		pthread_mutex_unlock(&srv->lock);
		rc = -ENOENT;
		goto out_free;
	}
	old = tree_lookup(srv->root, im.new_prefix);
	if (old) {
		fire_watches(srv, im.new_prefix, true, old->perms, old->nperms);
		acct_subtree(srv, old, -1);
		node_unlink(old);
		node_free(old);
	}
	rc = node_add_child(parent, im.root);
	if (rc) {
		pthread_mutex_unlock(&srv->lock);
		goto out_free;
	}
	parent->gen = ++srv->gen;
	regen(srv, im.root);
	acct_subtree(srv, im.root, +1);
	fire_all(srv, im.root, scratch, sizeof(scratch));
	im.root = NULL;
	for (struct xs_conn *c = srv->conns; c && !owner; c = c->next)
		if (c->domid == domid)
			owner = c;
	while (im.watches) {
		struct xs_watch *w = im.watches;
		struct xs_dom *d;

		im.watches = w->next;
		if (owner) {
			watch_attach(owner, w);
			continue;
		}
		d = dom_get(srv, domid, true);
		if (!d) {
			watch_free(w);
			continue;
		}
		w->next = NULL;
		for (pp = &d->saved_watches; *pp; pp = &(*pp)->next)
			;
		*pp = w;
	}
	pthread_mutex_unlock(&srv->lock);
	pvm_info("xenstored: dom%u: imported xenstore records", (unsigned)domid);
out_free:
	node_free(im.root);
	while (im.watches) {
		struct xs_watch *w = im.watches;

		im.watches = w->next;
		watch_free(w);
	}
	return rc;
}
