/*
 * The node tree of the simulated xenstored, and the rules every path and
 * ACL must follow (docs/misc/xenstore.txt). Nothing here knows about
 * connections: callers check permissions and account quotas.
 */
#include "hv/sim/xenstored/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct xs_node *node_new(const char *name, size_t namelen)
{
	struct xs_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->name = malloc(namelen + 1);
	if (!n->name) {
		free(n);
		return NULL;
	}
	memcpy(n->name, name, namelen);
	n->name[namelen] = '\0';
	return n;
}

void node_free(struct xs_node *n)
{
	if (!n)
		return;
	for (uint32_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->name);
	free(n->value);
	free(n->perms);
	free(n);
}

int node_set_value(struct xs_node *n, const void *v, size_t len)
{
	uint8_t *nv = NULL;

	if (len) {
		nv = malloc(len);
		if (!nv)
			return -ENOMEM;
		memcpy(nv, v, len);
	}
	free(n->value);
	n->value = nv;
	n->vlen = (uint32_t)len;
	return 0;
}

int node_set_perms(struct xs_node *n, const struct xs_perm *p, uint32_t np)
{
	struct xs_perm *q;

	if (np == 0)
		return -EINVAL;
	q = malloc(np * sizeof(*q));
	if (!q)
		return -ENOMEM;
	memcpy(q, p, np * sizeof(*q));
	free(n->perms);
	n->perms = q;
	n->nperms = np;
	return 0;
}

int node_add_child(struct xs_node *parent, struct xs_node *kid)
{
	if (parent->nkids == parent->capkids) {
		uint32_t cap = parent->capkids ? parent->capkids * 2 : 4;
		struct xs_node **k = realloc(parent->kids, cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		parent->kids = k;
		parent->capkids = cap;
	}
	parent->kids[parent->nkids++] = kid;
	kid->parent = parent;
	return 0;
}

void node_unlink(struct xs_node *n)
{
	struct xs_node *p = n->parent;

	if (!p)
		return;
	for (uint32_t i = 0; i < p->nkids; i++) {
		if (p->kids[i] == n) {
			memmove(&p->kids[i], &p->kids[i + 1],
				(p->nkids - i - 1) * sizeof(p->kids[0]));
			p->nkids--;
			break;
		}
	}
	n->parent = NULL;
}

struct xs_node *node_child(const struct xs_node *n, const char *name,
			   size_t len)
{
	for (uint32_t i = 0; i < n->nkids; i++) {
		const char *k = n->kids[i]->name;

		if (strncmp(k, name, len) == 0 && k[len] == '\0')
			return n->kids[i];
	}
	return NULL;
}

struct xs_node *node_clone(const struct xs_node *n)
{
	struct xs_node *c = node_new(n->name, strlen(n->name));

	if (!c)
		return NULL;
	c->gen = n->gen;
	if (node_set_value(c, n->value, n->vlen) ||
	    (n->nperms && node_set_perms(c, n->perms, n->nperms)))
		goto fail;
	for (uint32_t i = 0; i < n->nkids; i++) {
		struct xs_node *k = node_clone(n->kids[i]);

		if (!k)
			goto fail;
		if (node_add_child(c, k)) {
			node_free(k);
			goto fail;
		}
	}
	return c;
fail:
	node_free(c);
	return NULL;
}

/* Walks @path component by component; stops at the first missing one. */
static struct xs_node *walk(struct xs_node *root, const char *path,
			    bool *exact)
{
	struct xs_node *n = root;
	const char *p = path;

	*exact = false;
	if (*p != '/')
		return root;
	p++;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		struct xs_node *k = node_child(n, p, len);

		if (!k)
			return n;
		n = k;
		p += len;
		if (*p == '/')
			p++;
	}
	*exact = true;
	return n;
}

struct xs_node *tree_lookup(struct xs_node *root, const char *path)
{
	bool exact;
	struct xs_node *n = walk(root, path, &exact);

	return exact ? n : NULL;
}

struct xs_node *tree_deepest(struct xs_node *root, const char *path)
{
	bool exact;

	return walk(root, path, &exact);
}

/* Two walks up the tree, no per-level buffer: trees may be ~1500 deep. */
int node_path(const struct xs_node *n, char *buf, size_t len)
{
	const struct xs_node *m;
	size_t total = 0, off;

	for (m = n; m->parent; m = m->parent)
		total += 1 + strlen(m->name);
	if (total == 0) {
		if (len < 2)
			return -ERANGE;
		strcpy(buf, "/");
		return 0;
	}
	if (total + 1 > len)
		return -ERANGE;
	off = total;
	buf[off] = '\0';
	for (m = n; m->parent; m = m->parent) {
		size_t l = strlen(m->name);

		off -= l;
		memcpy(buf + off, m->name, l);
		buf[--off] = '/';
	}
	return 0;
}

uint32_t node_count(const struct xs_node *n)
{
	uint32_t c = 1;

	for (uint32_t i = 0; i < n->nkids; i++)
		c += node_count(n->kids[i]);
	return c;
}

/*
 * Xen's rule: the owner (perms[0].domid) and dom0 have full access; a
 * domain listed after perms[0] gets its entry; everyone else perms[0]'s
 * access. A domain with a SET_TARGET target acts for it as well.
 */
unsigned int perm_for(uint16_t domid, uint16_t target,
		      const struct xs_perm *p, uint32_t np)
{
	const unsigned int all = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER;

	if (domid == 0 || np == 0)
		return domid == 0 ? all : XS_PERM_NONE;
	if (p[0].domid == domid ||
	    (target != XS_DOMID_INVALID && p[0].domid == target))
		return all;
	for (uint32_t i = 1; i < np; i++)
		if (p[i].domid == domid)
			return p[i].access;
	if (target != XS_DOMID_INVALID)
		for (uint32_t i = 1; i < np; i++)
			if (p[i].domid == target)
				return p[i].access;
	return p[0].access;
}

static bool valid_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '/' ||
	       ch == '_' || ch == '@';
}

/*
 * Absolute, allowed characters only, no "//", no trailing "/" except the
 * root, at most XENSTORE_ABS_PATH_MAX bytes, and below /local/domain/<id>/
 * at most XENSTORE_REL_PATH_MAX bytes after that prefix.
 */
bool path_valid(const char *path)
{
	size_t len = strnlen(path, XENSTORE_ABS_PATH_MAX + 1);
	unsigned int id;
	int off = 0;

	if (path[0] != '/' || len > XENSTORE_ABS_PATH_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!valid_char(path[i]))
			return false;
	if (strstr(path, "//"))
		return false;
	if (len > 1 && path[len - 1] == '/')
		return false;
	if (sscanf(path, "/local/domain/%5u/%n", &id, &off) == 1 && off > 0 &&
	    len - (size_t)off > XENSTORE_REL_PATH_MAX)
		return false;
	return true;
}

bool is_child(const char *child, const char *parent)
{
	size_t pl = strlen(parent);

	if (pl == 1 && parent[0] == '/')
		return child[0] == '/';
	return strncmp(child, parent, pl) == 0 &&
	       (child[pl] == '/' || child[pl] == '\0');
}

bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (!*s || strlen(s) > 10)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

bool perm_parse(const char *s, struct xs_perm *out)
{
	unsigned long id;

	switch (s[0]) {
	case 'n': out->access = XS_PERM_NONE; break;
	case 'r': out->access = XS_PERM_READ; break;
	case 'w': out->access = XS_PERM_WRITE; break;
	case 'b': out->access = XS_PERM_READ | XS_PERM_WRITE; break;
	default: return false;
	}
	if (!parse_uint(s + 1, 0xffff, &id))
		return false;
	out->domid = (uint16_t)id;
	return true;
}

int perm_format(const struct xs_perm *p, char *buf, size_t len)
{
	static const char letters[4] = { 'n', 'r', 'w', 'b' };
	int n = snprintf(buf, len, "%c%u", letters[p->access & 3],
			 (unsigned int)p->domid);

	return (n < 0 || (size_t)n >= len) ? -ERANGE : n;
}
