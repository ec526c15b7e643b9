/*
 * What every pvmig subcommand shares: finding the local pvmigd, one
 * request/answer exchange, JSON and human output.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cli.h"

const char *cli_host;

void cli_control_path(char *buf, size_t len)
{
	const char *h = cli_host ? cli_host : getenv("PVMIG_HOST");
	struct stat st;

	if (!h || !*h)
		h = PVM_STATE_DIR_DEFAULT;
	if (stat(h, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(buf, len, "%s/%s", h, PVM_CTL_SOCKET_NAME);
	else
		snprintf(buf, len, "%s", h);
}

void cli_json_string(const char *v)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static bool is_number(const char *v)
{
	if (!*v || (v[0] == '0' && v[1]))
		return false;
	for (; *v; v++)
		if (*v < '0' || *v > '9')
			return false;
	return true;
}

void cli_json_fields(const struct pvm_kv *kv)
{
	for (size_t i = 0; i < kv->n; i++) {
		if (i)
			putchar(',');
		cli_json_string(kv->key[i]);
		putchar(':');
		if (is_number(kv->val[i]))
			fputs(kv->val[i], stdout);
		else
			cli_json_string(kv->val[i]);
	}
}

void cli_json_object(const struct pvm_kv *kv)
{
	putchar('{');
	cli_json_fields(kv);
	putchar('}');
}

void cli_json_doc(const struct pvm_kv *items, size_t n,
		  const struct pvm_kv *result)
{
	fputs("{\"items\":[", stdout);
	for (size_t i = 0; i < n; i++) {
		if (i)
			putchar(',');
		cli_json_object(&items[i]);
	}
	fputs("],\"result\":", stdout);
	cli_json_object(result);
	fputs("}\n", stdout);
}

int cli_exchange(const char *path, const char *what, const struct pvm_kv *req,
		 const struct cli_handlers *h, struct pvm_kv *result)
{
	enum pvm_ctl_kind kind;
	struct pvm_kv rec;
	size_t items = 0;
	int fd, rc;

	rc = pvm_ctl_connect(path, &fd);
	if (rc) {
		fprintf(stderr, "pvmig: cannot reach pvmigd at %s: %s\n"
				"       (is pvmigd running? choose its state dir with -H DIR)\n",
			path, strerror(-rc));
		return rc;
	}
	rc = pvm_ctl_send(fd, PVM_CTL_REQUEST, req);
	if (rc) {
		fprintf(stderr, "pvmig: %s: cannot send the request: %s\n", what,
			strerror(-rc));
		close(fd);
		return rc;
	}
	pvm_kv_init(&rec);
	for (;;) {
		rc = pvm_ctl_recv(fd, 0, &kind, &rec);
		if (rc) {
			fprintf(stderr, "pvmig: %s: pvmigd went away before answering: %s\n",
				what, strerror(-rc));
			break;
		}
		if (kind == PVM_CTL_ITEM) {
			if (h && h->item)
				h->item(h->ctx, &rec, items);
			items++;
			continue;
		}
		if (kind == PVM_CTL_PROGRESS) {
			if (h && h->progress)
				h->progress(h->ctx, &rec);
			continue;
		}
		if (kind != PVM_CTL_RESULT) {
			fprintf(stderr, "pvmig: %s: unexpected answer from pvmigd\n", what);
			rc = -EPROTO;
			break;
		}
		/* The record's strings move to the caller's kv. */
		pvm_kv_dispose(result);
		*result = rec;
		pvm_kv_init(&rec);
		break;
	}
	pvm_kv_dispose(&rec);
	close(fd);
	return rc;
}

bool cli_result_ok(const struct pvm_kv *result)
{
	const char *status = pvm_kv_get(result, "status");

	return status && !strcmp(status, "0");
}

struct call_ctx {
	bool json;
	const struct cli_printer *pr;
};

static void call_item(void *ctx, const struct pvm_kv *kv, size_t index)
{
	const struct call_ctx *c = ctx;

	if (c->json) {
		if (index)
			putchar(',');
		cli_json_object(kv);
	} else if (c->pr && c->pr->item) {
		c->pr->item(kv, index);
	}
}

static void call_progress(void *ctx, const struct pvm_kv *kv)
{
	const struct call_ctx *c = ctx;

	if (c->pr && c->pr->progress)
		c->pr->progress(kv);
}

int cli_call(const char *what, const struct pvm_kv *req, bool json,
		const struct cli_printer *pr)
{
	struct call_ctx c = { .json = json, .pr = pr };
	const struct cli_handlers h = { .item = call_item,
					.progress = call_progress, .ctx = &c };
	struct pvm_kv res;
	char path[512];
	bool ok;
	int rc;

	cli_control_path(path, sizeof(path));
	pvm_kv_init(&res);
	if (json)
		fputs("{\"items\":[", stdout);
	rc = cli_exchange(path, what, req, &h, &res);
	if (rc) {
		if (json)
			fputs("]}\n", stdout);
		pvm_kv_dispose(&res);
		return 3;
	}
	ok = cli_result_ok(&res);
	if (json) {
		fputs("],\"result\":", stdout);
		cli_json_object(&res);
		fputs("}\n", stdout);
	} else if (ok && pr && pr->result) {
		pr->result(&res);
	}
	if (!ok) {
		const char *err = pvm_kv_get(&res, "error");

		fprintf(stderr, "pvmig: %s: %s\n", what, err ? err : "failed");
	}
	pvm_kv_dispose(&res);
	return ok ? 0 : 1;
}

/*
 * --workload items, comma-separated, passed on as the simulated guest
 * program's spec; "dirty=R" (MiB/s, total) and "ws=W" (MiB working set) are
 * turned into its page form "dirty:16:PAGES:PAGES_PER_S_PER_VCPU" (the
 * vCPU count is applied by the service: we assume 1 here and the guest
 * splits the working set, not the rate, so the rate is per vCPU).
 */
int cli_workload_spec(const char *in, char *out, size_t len)
{
	char buf[256], *save = NULL, *tok;
	unsigned long rate = 0, ws = 0;
	bool has_dirty = false;
	size_t o = 0;

	if (strlen(in) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", in);
	out[0] = '\0';
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "dirty=", 6) || !strncmp(tok, "ws=", 3)) {
			char *end;
			unsigned long v = strtoul(strchr(tok, '=') + 1, &end, 10);

			if (*end || v == 0 || v > 1u << 20)
				return -EINVAL;
			if (tok[0] == 'd')
				rate = v;
			else
				ws = v;
			has_dirty = true;
			continue;
		}
		o += (size_t)snprintf(out + o, len - o, "%s%s", o ? "," : "", tok);
		if (o >= len)
			return -EINVAL;
	}
	if (has_dirty) {
		/* Default working set 64 MiB; rate in MiB/s -> pages/s. */
		unsigned long pages = (ws ? ws : 64) * 256;

		o += (size_t)snprintf(out + o, len - o, "%sdirty:16:%lu", o ? "," : "", pages);
		if (rate)
			o += (size_t)snprintf(out + o, len - o, ":%lu", rate * 256);
		if (o >= len)
			return -EINVAL;
	}
	return 0;
}

int cli_parse_simple(int argc, char **argv, const char *usage_line,
			const char *help, bool *json)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			*json = true;
			break;
		case 'h':
			printf("usage: pvmig %s\n\n%s\n", usage_line, help);
			return 0;
		default:
			return 2;
		}
	}
	return -1;
}


/* @arg as a bound in ms for @opt: 1..60000, else a message and -1. */
static int add_timeout_ms(struct pvm_kv *req, const char *cmd, const char *opt,
			  const char *key, const char *arg)
{
	char *end;
	unsigned long v = strtoul(arg, &end, 10);

	if (!*arg || *end || v < 1 || v > 60000) {
		fprintf(stderr, "pvmig %s: %s wants 1..60000 (ms), not '%s'\n",
			cmd, opt, arg);
		return -1;
	}
	return pvm_kv_add(req, key, "%lu", v) ? -1 : 0;
}

int cli_pv_option(struct pvm_kv *req, const char *cmd, int c, const char *arg)
{
	switch (c) {
	case CLI_OPT_SUSPEND_TIMEOUT:
		return add_timeout_ms(req, cmd, "--suspend-timeout",
				      "suspend_timeout_ms", arg);
	case CLI_OPT_DRAIN_TIMEOUT:
		return add_timeout_ms(req, cmd, "--drain-timeout",
				      "drain_timeout_ms", arg);
	case CLI_OPT_PV_MODE:
		if (strcmp(arg, "auto") && strcmp(arg, "cooperative") &&
		    strcmp(arg, "transparent")) {
			fprintf(stderr, "pvmig %s: --pv-mode is auto, cooperative or transparent, not '%s'\n",
				cmd, arg);
			return -1;
		}
		return pvm_kv_add(req, "pv_mode", "%s", arg) ? -1 : 0;
	default:
		return 1;
	}
}
