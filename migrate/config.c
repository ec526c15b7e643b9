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
