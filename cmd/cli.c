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

void cli_json_object(const struct pvm_kv *kv)
{
	putchar('{');
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
	putchar('}');
}

int cli_call(const char *what, const struct pvm_kv *req, bool json,
		const struct cli_printer *pr)
{
	char path[512];
	struct pvm_kv rec;
	enum pvm_ctl_kind kind;
	size_t items = 0;
	int fd, rc;

	cli_control_path(path, sizeof(path));
	rc = pvm_ctl_connect(path, &fd);
	if (rc) {
		fprintf(stderr, "pvmig: cannot reach pvmigd at %s: %s\n"
				"       (is pvmigd running? choose its state dir with -H DIR)\n",
			path, strerror(-rc));
		return 3;
	}
	rc = pvm_ctl_send(fd, PVM_CTL_REQUEST, req);
	if (rc) {
		fprintf(stderr, "pvmig: %s: cannot send the request: %s\n", what,
			strerror(-rc));
		close(fd);
		return 3;
	}
	pvm_kv_init(&rec);
	if (json)
		fputs("{\"items\":[", stdout);
	for (;;) {
		rc = pvm_ctl_recv(fd, 0, &kind, &rec);
		if (rc) {
			fprintf(stderr, "pvmig: %s: pvmigd went away before answering: %s\n",
				what, strerror(-rc));
			rc = 3;
			break;
		}
		if (kind == PVM_CTL_ITEM) {
			if (json) {
				if (items)
					putchar(',');
				cli_json_object(&rec);
			} else if (pr && pr->item) {
				pr->item(&rec, items);
			}
			items++;
			continue;
		}
		if (kind == PVM_CTL_PROGRESS) {
			if (pr && pr->progress)
				pr->progress(&rec);
			continue;
		}
		if (kind != PVM_CTL_RESULT) {
			fprintf(stderr, "pvmig: %s: unexpected answer from pvmigd\n", what);
			rc = 3;
			break;
		}
		{
			const char *status = pvm_kv_get(&rec, "status");
			bool ok = status && !strcmp(status, "0");

			if (json) {
				fputs("],\"result\":", stdout);
				cli_json_object(&rec);
				fputs("}\n", stdout);
			} else if (ok && pr && pr->result) {
				pr->result(&rec);
			}
			if (!ok) {
				const char *err = pvm_kv_get(&rec, "error");

				fprintf(stderr, "pvmig: %s: %s\n", what,
					err ? err : "failed");
			}
			rc = ok ? 0 : 1;
		}
		break;
	}
	if (rc == 3 && json)
		fputs("]}\n", stdout);
	pvm_kv_dispose(&rec);
	close(fd);
	return rc;
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

