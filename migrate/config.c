/*
 * pvmigd's configuration file: "key = value" lines, '#' comments.
 * docs/pvmigd.conf.5.md lists every key.
 */
#include "migrate/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void pvm_service_config_defaults(struct pvm_service_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->backend, sizeof(c->backend), "sim");
	snprintf(c->state_dir, sizeof(c->state_dir), "%s", PVM_STATE_DIR_DEFAULT);
	c->port = PVM_PORT_DEFAULT;
	c->max_migrations = 4;
	c->streams = 2;
	c->timeout_ms = 15000;
	/* = PVM_TUNNEL_COMMAND_DEFAULT (spelled out for the docs check) */
	snprintf(c->tunnel_command, sizeof(c->tunnel_command), "xl migrate-receive");
	c->log_syslog = true; /* detached; --foreground logs to stderr */
	c->max_unauth = 64;
	c->max_unauth_per_addr = 8;
	c->handshake_ms = 5000;
}

static const struct {
	const char *name;
	unsigned bits;
} rights[] = {
	{ "migrate-in", PVM_RIGHT_MIGRATE_IN },
	{ "tunnel", PVM_RIGHT_TUNNEL },
	{ "query", PVM_RIGHT_QUERY },
	{ "all", PVM_RIGHTS_ALL },
};

const char *pvm_right_name(unsigned right)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(rights) - 1; i++)
		if (rights[i].bits == right)
			return rights[i].name;
	return "?";
}

void pvm_rights_format(unsigned r, char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < PVM_ARRAY_SIZE(rights) - 1 && o < len; i++)
		if (r & rights[i].bits)
			o += (size_t)snprintf(out + o, len - o, "%s%s",
					      o ? "+" : "", rights[i].name);
	if (!o)
		snprintf(out, len, "none");
}

unsigned pvm_service_config_rights(const struct pvm_service_config *c,
				   bool (*has_name)(void *ctx, const char *name),
				   void *ctx)
{
	unsigned r = 0;

	for (unsigned i = 0; i < c->nr_allow; i++)
		if (!strcmp(c->allow[i].name, "*") ||
		    has_name(ctx, c->allow[i].name))
			r |= c->allow[i].rights;
	return r;
}

/* A certificate name as allow-peers takes it: DNS-like characters. */
static bool peer_name_ok(const char *n, size_t len)
{
	if (len == 1 && n[0] == '*')
		return true;
	if (len == 0 || len >= PVM_PEER_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)n[i]) && !strchr("._-", n[i]))
			return false;
	return true;
}

/* "NAME[:right+right...][,...]", each entry appended. */
static int set_allow(struct pvm_service_config *c, const char *v)
{
	const char *p = v;

	if (!*v)
		return -EINVAL;
	while (*p) {
		size_t elen = strcspn(p, ","), nlen;
		const char *colon = memchr(p, ':', elen);
		struct pvm_peer_rule *r;

		if (c->nr_allow >= PVM_ALLOW_PEERS_MAX)
			return -E2BIG;
		while (elen && isspace((unsigned char)*p)) {
			p++;
			elen--;
		}
		nlen = colon ? (size_t)(colon - p) : elen;
		while (nlen && isspace((unsigned char)p[nlen - 1]))
			nlen--;
		if (!peer_name_ok(p, nlen))
			return -EINVAL;
		r = &c->allow[c->nr_allow];
		memcpy(r->name, p, nlen);
		r->name[nlen] = '\0';
		r->rights = colon ? 0 : PVM_RIGHTS_DEFAULT;
		if (colon) {
			const char *q = colon + 1, *end = p + elen;

			while (q < end) {
				size_t rlen = strcspn(q, "+,");
				bool found = false;

				if (q + rlen > end)
					rlen = (size_t)(end - q);
				while (rlen && isspace((unsigned char)*q)) {
					q++;
					rlen--;
				}
				while (rlen && isspace((unsigned char)q[rlen - 1]))
					rlen--;
				for (size_t i = 0; i < PVM_ARRAY_SIZE(rights); i++)
					if (strlen(rights[i].name) == rlen &&
					    !strncmp(rights[i].name, q, rlen)) {
						r->rights |= rights[i].bits;
						found = true;
					}
				if (!found)
					return -EINVAL;
				q += strcspn(q, "+,");
				if (q < end && ++q == end)
					return -EINVAL; /* a trailing '+' */
			}
			if (!r->rights)
				return -EINVAL;
		}
		c->nr_allow++;
		p += strcspn(p, ",");
		if (*p == ',') {
			p++;
			if (!*p)
				return -EINVAL; /* a trailing comma */
		}
	}
	c->allow_peers_set = true;
	return 0;
}

/* "DIR[,DIR...]", absolute paths, each appended. */
static int set_roots(struct pvm_service_config *c, const char *v)
{
	const char *p = v;

	if (!*v)
		return -EINVAL;
	while (*p) {
		size_t len = strcspn(p, ",");
		char *dst;

		while (len && isspace((unsigned char)*p)) {
			p++;
			len--;
		}
		while (len && isspace((unsigned char)p[len - 1]))
			len--;
		if (c->nr_storage_roots >= PVM_STORAGE_ROOTS_MAX)
			return -E2BIG;
		if (!len || p[0] != '/' ||
		    len >= sizeof(c->storage_roots[0]))
			return -EINVAL;
		dst = c->storage_roots[c->nr_storage_roots++];
		memcpy(dst, p, len);
		dst[len] = '\0';
		p += strcspn(p, ",");
		if (*p == ',' && !*++p)
			return -EINVAL;
	}
	return 0;
}

/* "N" bytes or "N" with K, M, G or T (powers of 1024). */
static int set_size(uint64_t *dst, const char *v)
{
	static const char units[] = "KMGT";
	unsigned long long x;
	const char *u;
	char *end;

	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) {
		u = strchr(units, toupper((unsigned char)*end));
		if (!u || !*u || (end[1] && strcmp(end + 1, "iB") &&
				  strcmp(end + 1, "B")))
			return -EINVAL;
		for (long i = 0; i <= u - units; i++) {
			if (x > UINT64_MAX / 1024)
				return -EINVAL;
			x *= 1024;
		}
	}
	*dst = x;
	return 0;
}

static int set_bool(bool *dst, const char *v)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
		*dst = true;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
		*dst = false;
	else
		return -EINVAL;
	return 0;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int set_str(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return -ENAMETOOLONG;
	snprintf(dst, cap, "%s", v);
	return 0;
}

static int set_uint(unsigned *dst, const char *v, unsigned lo, unsigned hi)
{
	char *end;
	unsigned long x;

	/* Digits only: strtoul would take a sign and wrap "-1". */
	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	x = strtoul(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return -EINVAL;
	*dst = (unsigned)x;
	return 0;
}

/* Applies one key; returns 0, -ENOENT (unknown key) or -EINVAL. */
static int apply(struct pvm_service_config *c, const char *k, const char *v)
{
	unsigned u;
	int rc;

	if (!strcmp(k, "backend")) {
		if (strcmp(v, "sim") && strcmp(v, "xen"))
			return -EINVAL;
		return set_str(c->backend, sizeof(c->backend), v);
	}
	if (!strcmp(k, "state-dir"))
		return set_str(c->state_dir, sizeof(c->state_dir), v);
	if (!strcmp(k, "listen"))
		return set_str(c->listen, sizeof(c->listen), v);
	if (!strcmp(k, "port")) {
		rc = set_uint(&u, v, 0, 65535); /* 0: any free port */
		if (!rc)
			c->port = (uint16_t)u;
		return rc;
	}
	if (!strcmp(k, "tls-ca"))
		return set_str(c->tls_ca, sizeof(c->tls_ca), v);
	if (!strcmp(k, "tls-cert"))
		return set_str(c->tls_cert, sizeof(c->tls_cert), v);
	if (!strcmp(k, "tls-key"))
		return set_str(c->tls_key, sizeof(c->tls_key), v);
	if (!strcmp(k, "max-migrations"))
		return set_uint(&c->max_migrations, v, 1, 64);
	if (!strcmp(k, "streams"))
		return set_uint(&c->streams, v, 1, 16);
	if (!strcmp(k, "timeout-ms"))
		return set_uint(&c->timeout_ms, v, 100, 600000);
	if (!strcmp(k, "tunnel-command"))
		return set_str(c->tunnel_command, sizeof(c->tunnel_command), v);
	if (!strcmp(k, "allow-peers")) {
		unsigned n0 = c->nr_allow;

		rc = set_allow(c, v);
		if (rc) { /* nothing of a bad line stays */
			memset(&c->allow[n0], 0,
			       (PVM_ALLOW_PEERS_MAX - n0) * sizeof(c->allow[0]));
			c->nr_allow = n0;
			return -EINVAL;
		}
		return 0;
	}
	if (!strcmp(k, "tls-crl"))
		return set_str(c->tls_crl, sizeof(c->tls_crl), v);
	if (!strcmp(k, "tls-allow-ip-without-san"))
		return set_bool(&c->tls_ip_without_san, v);
	if (!strcmp(k, "storage-roots")) {
		unsigned n0 = c->nr_storage_roots;

		rc = set_roots(c, v);
		if (rc) {
			memset(c->storage_roots[n0], 0,
			       (PVM_STORAGE_ROOTS_MAX - n0) * sizeof(c->storage_roots[0]));
			c->nr_storage_roots = n0;
			return -EINVAL;
		}
		return 0;
	}
	if (!strcmp(k, "max-incoming-memory"))
		return set_size(&c->max_incoming_memory, v);
	if (!strcmp(k, "max-unauthenticated"))
		return set_uint(&c->max_unauth, v, 1, 1024);
	if (!strcmp(k, "max-unauthenticated-per-address"))
		return set_uint(&c->max_unauth_per_addr, v, 1, 1024);
	if (!strcmp(k, "handshake-timeout-ms"))
		return set_uint(&c->handshake_ms, v, 100, 60000);
	if (!strcmp(k, "log")) {
		if (!strcmp(v, "syslog"))
			c->log_syslog = true;
		else if (!strcmp(v, "stderr"))
			c->log_syslog = false;
		else
			return -EINVAL;
		return 0;
	}
	return -ENOENT;
}

int pvm_service_config_load(struct pvm_service_config *c, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	unsigned lineno = 0;
	struct stat st;
	int rc = 0;

	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
		pvm_err("%s is not a regular file", path);
		fclose(f);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	while (fgets(line, sizeof(line), f)) {
		char *s, *eq, *k, *v;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			pvm_err("%s:%u: line too long", path, lineno);
			rc = -EINVAL;
			break;
		}
		s = strchr(line, '#');
		if (s)
			*s = '\0';
		s = trim(line);
		if (!*s)
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			pvm_err("%s:%u: expected 'key = value', got '%s'", path,
				lineno, s);
			rc = -EINVAL;
			break;
		}
		*eq = '\0';
		k = trim(s);
		v = trim(eq + 1);
		rc = apply(c, k, v);
		if (rc == -ENOENT) {
			pvm_err("%s:%u: unknown key '%s' (see pvmigd.conf(5))",
				path, lineno, k);
			rc = -EINVAL;
			break;
		}
		if (rc) {
			pvm_err("%s:%u: bad value '%s' for '%s'", path, lineno,
				v, k);
			rc = -EINVAL;
			break;
		}
	}
	if (!rc && ferror(f)) {
		rc = -EIO;
		pvm_err("%s: read error after line %u", path, lineno);
	}
	fclose(f);
	return rc;
}
