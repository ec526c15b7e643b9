/*
 * pvmig — the toolstack command (modelled on xl): argument parsing and
 * output only; the work is done by the libraries behind it.
 *
 * Subcommands are a table (name, handler, one-line help); each handler
 * parses its own options and returns the process exit status.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "hv/hv.h"
#include "cmd/commands.h"
#include "common/common.h"
#include "migrate/migrate.h"
#include "transport/transport.h"


struct subcmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
	const char *help;
};

static const struct subcmd *find_cmd(const char *name);

/* With --json, pvm_tls_init_dir()'s error line goes into the result. */
static void keep_error(void *ctx, enum pvm_log_level lvl, const char *line)
{
	if (lvl == PVM_LOG_ERR)
		snprintf(ctx, 512, "%s", line);
}

static int tls_init_json(const char *dir, const char *const *hosts,
			 size_t n, int days)
{
	struct pvm_kv items[64], res;
	char err[512] = "";
	int rc;

	pvm_log_set_sink(keep_error, err);
	rc = pvm_tls_init_dir(dir, hosts, n, 0, days);
	pvm_log_set_sink(NULL, NULL);
	pvm_kv_init(&res);
	pvm_kv_add(&res, "status", "%d", rc < 0 ? -rc : rc);
	if (rc) {
		pvm_kv_add(&res, "error", "%s", err[0] ? err : strerror(-rc));
		fprintf(stderr, "pvmig: %s\n", err[0] ? err : strerror(-rc));
	} else {
		pvm_kv_add(&res, "dir", "%s", dir);
		pvm_kv_add(&res, "ca", "%s/ca.pem", dir);
		pvm_kv_add(&res, "days", "%d", days);
	}
	n = rc || n > PVM_ARRAY_SIZE(items) ? 0 : n;
	for (size_t i = 0; i < n; i++) {
		size_t len = strcspn(hosts[i], ",");

		pvm_kv_init(&items[i]);
		pvm_kv_add(&items[i], "host", "%.*s", (int)len, hosts[i]);
		pvm_kv_add(&items[i], "cert", "%s/%.*s.pem", dir, (int)len, hosts[i]);
		pvm_kv_add(&items[i], "key", "%s/%.*s.key", dir, (int)len, hosts[i]);
		if (hosts[i][len])
			pvm_kv_add(&items[i], "ip", "%s", hosts[i] + len + 1);
	}
	cli_json_doc(items, n, &res);
	for (size_t i = 0; i < n; i++)
		pvm_kv_dispose(&items[i]);
	pvm_kv_dispose(&res);
	return rc ? 1 : 0;
}

static int cmd_tls_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "days", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *def_hosts[] = { "localhost" };
	const char *const *hosts = def_hosts;
	size_t nhosts = 1;
	bool json = false;
	int days = 825, c, rc;

	while ((c = getopt_long(argc, argv, "d:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'd':
			days = atoi(optarg);
			if (days <= 0) {
				fprintf(stderr, "pvmig tls-init: --days wants a positive number of days, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			printf("usage: pvmig tls-init DIR [HOST[,IP...]...] [--days N] [--json]\n\n"
			       "Creates DIR/ca.pem and DIR/ca.key (a new CA, unless DIR already has\n"
			       "one) and, for each HOST (default: localhost), DIR/HOST.pem and\n"
			       "DIR/HOST.key signed by that CA, valid N days (default 825), with\n"
			       "HOST as common name and DNS name, and each IP after it (IPv4 or\n"
			       "IPv6, comma-separated) as an IP address name: a migration to that\n"
			       "address then checks it. Copy ca.pem and one host's pair\n"
			       "to each host and name them in pvmigd.conf (tls-ca, tls-cert,\n"
			       "tls-key). Keys are EC P-256, mode 0600.\n"
			       "  --json    the files made: items (host, cert, key, ip), result\n"
			       "            (status, dir, ca, days)\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "pvmig tls-init: missing DIR (see pvmig tls-init --help)\n");
		return 2;
	}
	if (optind + 1 < argc) {
		hosts = (const char *const *)&argv[optind + 1];
		nhosts = (size_t)(argc - optind - 1);
	}
	if (json)
		return tls_init_json(argv[optind], hosts, nhosts, days);
	rc = pvm_tls_init_dir(argv[optind], hosts, nhosts, 0, days);
	return rc ? 1 : 0;
}

static int cmd_tls_revoke(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "days", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int days = 30, c;

	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			days = atoi(optarg);
			if (days <= 0) {
				fprintf(stderr, "pvmig tls-revoke: --days wants a positive number of days, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			printf("usage: pvmig tls-revoke DIR HOST... [--days N]\n\n"
			       "Adds the certificates DIR/HOST.pem to DIR/crl.pem (made if absent),\n"
			       "a revocation list signed by the CA in DIR (ca.pem, ca.key), valid N\n"
			       "days (default 30). Copy crl.pem to every host and name it in\n"
			       "pvmigd.conf (tls-crl): a peer presenting a revoked certificate is\n"
			       "refused in the TLS handshake. Run it again before N days pass.\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind + 1 >= argc) {
		fprintf(stderr, "pvmig tls-revoke: needs DIR and at least one HOST (see pvmig tls-revoke --help)\n");
		return 2;
	}
	return pvm_tls_revoke(argv[optind],
			      (const char *const *)&argv[optind + 1],
			      (size_t)(argc - optind - 1), days) ? 1 : 0;
}

static void print_dom_row(const struct pvm_kv *kv, size_t index)
{
	if (index == 0)
		printf("%-20s %6s %10s %5s %-9s\n", "Name", "ID", "Mem(MiB)",
		       "VCPUs", "State");
	printf("%-20s %6s %10s %5s %-9s\n", pvm_kv_get(kv, "name"),
	       pvm_kv_get(kv, "domid"), pvm_kv_get(kv, "memory_mib"),
	       pvm_kv_get(kv, "vcpus"), pvm_kv_get(kv, "state"));
}

static void print_kv(const struct pvm_kv *kv)
{
	for (size_t i = 0; i < kv->n; i++)
		if (strcmp(kv->key[i], "status"))
			printf("%-16s %s\n", kv->key[i], kv->val[i]);
}

static int cmd_list(int argc, char **argv)
{
	static const struct cli_printer pr = { .item = print_dom_row };
	struct pvm_kv req;
	bool json = false;
	int rc = cli_parse_simple(argc, argv, "list [--json]",
			      "Lists the domains of the local host.", &json);

	if (rc >= 0)
		return rc;
	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "list");
	rc = cli_call("list", &req, json, &pr);
	pvm_kv_dispose(&req);
	return rc;
}

static int cmd_info(int argc, char **argv)
{
	static const struct cli_printer pr = { .result = print_kv };
	struct pvm_kv req;
	bool json = false;
	int rc = cli_parse_simple(argc, argv, "info [--json]",
			      "Asks the local pvmigd who it is (version, backend, state dir).",
			      &json);

	if (rc >= 0)
		return rc;
	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "ping");
	rc = cli_call("info", &req, json, &pr);
	pvm_kv_dispose(&req);
	return rc;
}

/* status, destroy, pause, unpause: one DOMAIN argument. */
static int domain_cmd(int argc, char **argv, const char *cmd, const char *help,
		      const struct cli_printer *pr)
{
	char usage_line[64];
	struct pvm_kv req;
	bool json = false;
	int rc;

	snprintf(usage_line, sizeof(usage_line), "%s DOMAIN [--json]", cmd);
	rc = cli_parse_simple(argc, argv, usage_line, help, &json);
	if (rc >= 0)
		return rc;
	if (optind + 1 != argc) {
		fprintf(stderr, "pvmig %s: give exactly one DOMAIN (name or id)\n", cmd);
		return 2;
	}
	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "%s", cmd);
	if (pvm_kv_add(&req, "domain", "%s", argv[optind])) {
		fprintf(stderr, "pvmig %s: DOMAIN is too long\n", cmd);
		pvm_kv_dispose(&req);
		return 2;
	}
	rc = cli_call(cmd, &req, json, pr);
	pvm_kv_dispose(&req);
	return rc;
}

static int cmd_status(int argc, char **argv)
{
	static const struct cli_printer pr = { .result = print_kv };

	return domain_cmd(argc, argv, "status",
			  "Shows a domain's state, memory, vCPUs and log-dirty mode.",
			  &pr);
}

static int cmd_destroy(int argc, char **argv)
{
	return domain_cmd(argc, argv, "destroy",
			  "Destroys a domain at once (like xl destroy).", NULL);
}

static int cmd_pause(int argc, char **argv)
{
	return domain_cmd(argc, argv, "pause", "Pauses every vCPU of a domain.",
			  NULL);
}

static int cmd_unpause(int argc, char **argv)
{
	return domain_cmd(argc, argv, "unpause", "Lets a paused domain run again.",
			  NULL);
}

/* --disk PATH[,vdev=xvdX][,ro] -> diskN, diskN_vdev, diskN_ro */
static int add_disk(struct pvm_kv *req, unsigned i, const char *spec)
{
	char buf[512], *save = NULL, *tok;
	char key[32];
	int rc;

	if (i >= PVM_HV_MAX_DISKS || strlen(spec) >= sizeof(buf)) {
		fprintf(stderr, "pvmig create: at most %u disks, paths under 256 characters\n",
			PVM_HV_MAX_DISKS);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	tok = strtok_r(buf, ",", &save);
	if (!tok) {
		fprintf(stderr, "pvmig create: --disk needs a PATH\n");
		return -EINVAL;
	}
	snprintf(key, sizeof(key), "disk%u", i);
	rc = pvm_kv_add(req, key, "%s", tok);
	while (!rc && (tok = strtok_r(NULL, ",", &save))) {
		if (!strncmp(tok, "vdev=", 5)) {
			snprintf(key, sizeof(key), "disk%u_vdev", i);
			rc = pvm_kv_add(req, key, "%s", tok + 5);
		} else if (!strcmp(tok, "ro")) {
			snprintf(key, sizeof(key), "disk%u_ro", i);
			rc = pvm_kv_add(req, key, "1");
		} else {
			fprintf(stderr, "pvmig create: unknown --disk option '%s' (vdev=, ro)\n",
				tok);
			return -EINVAL;
		}
	}
	return rc;
}

/* --nic[=MAC][,bridge=NAME] -> nicN_mac, nicN_bridge */
static int add_nic(struct pvm_kv *req, unsigned i, const char *spec)
{
	char buf[256], *save = NULL, *tok;
	char key[32], mac[32] = "";
	int rc = 0;

	if (i >= PVM_HV_MAX_NICS) {
		fprintf(stderr, "pvmig create: at most %u NICs\n", PVM_HV_MAX_NICS);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", spec ? spec : "");
	for (tok = strtok_r(buf, ",", &save); tok && !rc;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "bridge=", 7)) {
			snprintf(key, sizeof(key), "nic%u_bridge", i);
			rc = pvm_kv_add(req, key, "%s", tok + 7);
		} else if (!mac[0]) {
			snprintf(mac, sizeof(mac), "%s", tok);
		} else {
			fprintf(stderr, "pvmig create: unknown --nic option '%s'\n", tok);
			return -EINVAL;
		}
	}
	if (!mac[0]) {
		/* Xen's OUI, the rest random, as xl does. */
		unsigned r = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL) ^ (i << 20);

		snprintf(mac, sizeof(mac), "00:16:3e:%02x:%02x:%02x",
			 (r >> 16) & 0x7f, (r >> 8) & 0xff, r & 0xff);
	}
	snprintf(key, sizeof(key), "nic%u_mac", i);
	return rc ? rc : pvm_kv_add(req, key, "%s", mac);
}

static void print_created(const struct pvm_kv *kv)
{
	printf("created %s (domid %s)\n", pvm_kv_get(kv, "name"),
	       pvm_kv_get(kv, "domid"));
}

static int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "memory", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "workload", required_argument, NULL, 'w' },
		{ "paused", no_argument, NULL, 'p' },
		{ "disk", required_argument, NULL, 'd' },
		{ "vbd", required_argument, NULL, 'd' }, /* issue spelling */
		{ "nic", optional_argument, NULL, 'N' },
		{ "vif", optional_argument, NULL, 'N' },
		{ "frontend", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct cli_printer pr = { .result = print_created };
	struct pvm_kv req;
	unsigned ndisks = 0, nnics = 0;
	bool json = false;
	int c, rc = 0;

	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "create");
	while ((c = getopt_long(argc, argv, "n:m:c:w:pd:N::f:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			rc = add_disk(&req, ndisks++, optarg);
			break;
		case 'N':
			rc = add_nic(&req, nnics++, optarg);
			break;
		case 'f': rc = pvm_kv_add(&req, "frontend", "%s", optarg); break;
		case 'n': rc = pvm_kv_add(&req, "name", "%s", optarg); break;
		case 'm': rc = pvm_kv_add(&req, "memory", "%s", optarg); break;
		case 'c': rc = pvm_kv_add(&req, "vcpus", "%s", optarg); break;
		case 'w': {
			char wl[256];

			if (cli_workload_spec(optarg, wl, sizeof(wl))) {
				fprintf(stderr, "pvmig create: bad --workload '%s' (see pvmig create --help)\n",
					optarg);
				pvm_kv_dispose(&req);
				return 2;
			}
			rc = pvm_kv_add(&req, "workload", "%s", wl);
			break;
		}
		case 'p': rc = pvm_kv_add(&req, "paused", "1"); break;
		case 'j': json = true; break;
		case 'h':
			printf("usage: pvmig create --name NAME [--memory SIZE] [--vcpus N]\n"
			       "                    [--workload SPEC] [--disk PATH[,vdev=xvdX][,ro]]...\n"
			       "                    [--nic[=MAC][,bridge=NAME]]... [--frontend modern|legacy]\n"
			       "                    [--paused] [--json]\n\n"
			       "Creates and starts a guest on the local host.\n"
			       "  --memory SIZE    e.g. 256M (default), 1G\n"
			       "  --vcpus N        default 1\n"
			       "  --workload SPEC  simulated host: what the guest does, comma-separated:\n"
			       "                   dirty=R,ws=W  dirty R MiB/s (per vCPU) over W MiB\n"
			       "                   dirty:FIRST:COUNT[:RATE]  the same in pages\n"
			       "                   blk[:N]  checksummed block writes read back, N/s\n"
			       "                   net[:N]  numbered packets to an echo peer, N/s\n"
			       "                   content:C  what pages hold: mixed (default; like a\n"
			       "                            real guest's), random, counter (tests)\n"
			       "                   boot:SIZE  populated with the content at start\n"
			       "                            (default: 1/4 of memory, at most 96M; 0 for counter)\n"
			       "                   echo, idle (default); see docs/hv.md\n"
			       "  --disk PATH      (or --vbd) a PV disk backed by the raw image PATH (up to 8;\n"
			       "                   vdev xvda, xvdb, ... in order unless given)\n"
			       "  --nic[=MAC]      (or --vif) a PV NIC (up to 8; MAC default 00:16:3e:random)\n"
			       "  --frontend GEN   the guest's PV drivers: modern (re-connect on resume,\n"
			       "                   like Linux; default) or legacy (never re-handshake)\n"
			       "  --paused         create it paused (pvmig unpause starts it)\n");
			pvm_kv_dispose(&req);
			return 0;
		default:
			pvm_kv_dispose(&req);
			return 2;
		}
		if (rc) {
			fprintf(stderr, "pvmig create: option value too long\n");
			pvm_kv_dispose(&req);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "pvmig create: unexpected argument '%s'\n", argv[optind]);
		pvm_kv_dispose(&req);
		return 2;
	}
	if (!pvm_kv_get(&req, "name")) {
		fprintf(stderr, "pvmig create: --name NAME is required\n");
		pvm_kv_dispose(&req);
		return 2;
	}
	rc = cli_call("create", &req, json, &pr);
	pvm_kv_dispose(&req);
	return rc;
}

static int cmd_help(int argc, char **argv);

static const struct subcmd cmds[] = {
	{ "list", cmd_list, "[--json]", "list the host's domains" },
	{ "create", cmd_create, "--name N [--memory M] ...",
	  "create a guest (simulated host)" },
	{ "status", cmd_status, "DOMAIN [--json]", "show one domain" },
	{ "pause", cmd_pause, "DOMAIN", "pause a domain" },
	{ "unpause", cmd_unpause, "DOMAIN", "unpause a domain" },
	{ "destroy", cmd_destroy, "DOMAIN", "destroy a domain" },
	{ "migrate", cmd_migrate, "DOMAIN HOST[:PORT] [...]",
	  "live-migrate a guest to another host's pvmigd" },
	{ "migrations", cmd_migrations, "[--json]",
	  "statistics of recent migrations" },
	{ "save", cmd_save, "DOMAIN FILE [--live] [-c]", "save a guest to a file" },
	{ "restore", cmd_restore, "FILE|DIR [-p]", "re-create a saved guest" },
	{ "verify", cmd_verify, "FILE|DIR [--json]", "check a save file (no pvmigd)" },
	{ "checkpoint", cmd_checkpoint, "DOMAIN DIR --interval-ms N",
	  "continuous checkpoints of a running guest" },
	{ "tunnel", cmd_tunnel, "HOST[:PORT] [--stats]",
	  "carry xl migrate's stream to HOST's pvmigd (TLS, lz4)" },
	{ "info", cmd_info, "[--json]", "which pvmigd answers, and how" },
	{ "tls-init", cmd_tls_init, "DIR [HOST[,IP...]...] [...]",
	  "make a CA and host certificates for pvmigd's TLS" },
	{ "tls-revoke", cmd_tls_revoke, "DIR HOST... [--days N]",
	  "revoke host certificates: DIR/crl.pem for tls-crl" },
	{ "demo", cmd_demo, "[--json] [--memory SIZE] ...",
	  "two simulated hosts here, a guest migrated A->B->A" },
	{ "help", cmd_help, "[COMMAND] [--json]", "show help for pvmig or a command" },
};

static const struct subcmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(cmds); i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pvmig [-H DIR|SOCKET] [-v] COMMAND [ARGS...]\n\n"
		   "Save, restore, checkpoint and live-migrate Xen guests with PV drivers.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < PVM_ARRAY_SIZE(cmds); i++)
		fprintf(f, "  %-10s %-28s %s\n", cmds[i].name, cmds[i].usage,
			cmds[i].help);
	fprintf(f, "\nOptions:\n"
		   "  -H DIR|SOCKET   the local pvmigd: its state dir or control socket\n"
		   "                  (default $PVMIG_HOST, else " PVM_STATE_DIR_DEFAULT ")\n"
		   "  -v, --verbose   more log output (repeat for debug)\n"
		   "  -h, --help      this help\n  --version       print the version\n\n"
		   "'pvmig COMMAND --help' explains a command. See pvmig(1).\n");
}

/* help --json: the command table as items. */
static void help_json(const struct subcmd *only)
{
	struct pvm_kv items[PVM_ARRAY_SIZE(cmds)], res;
	size_t n = 0;

	for (size_t i = 0; i < PVM_ARRAY_SIZE(cmds); i++) {
		if (only && only != &cmds[i])
			continue;
		pvm_kv_init(&items[n]);
		pvm_kv_add(&items[n], "name", "%s", cmds[i].name);
		pvm_kv_add(&items[n], "usage", "pvmig %s %s", cmds[i].name, cmds[i].usage);
		pvm_kv_add(&items[n], "help", "%s", cmds[i].help);
		n++;
	}
	pvm_kv_init(&res);
	pvm_kv_add(&res, "status", "0");
	pvm_kv_add(&res, "version", PVM_VERSION);
	cli_json_doc(items, n, &res);
	for (size_t i = 0; i < n; i++)
		pvm_kv_dispose(&items[i]);
	pvm_kv_dispose(&res);
}

static int cmd_help(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct subcmd *c = NULL;
	bool json = false;
	int o;

	while ((o = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (o) {
		case 'j':
			json = true;
			break;
		case 'h':
			printf("usage: pvmig help [COMMAND] [--json]\n\n"
			       "Without COMMAND, the same as pvmig --help; with one, the same as\n"
			       "pvmig COMMAND --help.\n"
			       "  --json    the commands (name, usage, help) as items\n");
			return 0;
		default:
			return 2;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "pvmig help: one COMMAND at most (see pvmig help --help)\n");
		return 2;
	}
	if (optind < argc) {
		c = find_cmd(argv[optind]);
		if (!c) {
			fprintf(stderr, "pvmig: unknown command '%s' (see pvmig --help)\n",
				argv[optind]);
			return 2;
		}
	}
	if (json) {
		help_json(c);
		return 0;
	}
	if (!c) {
		usage(stdout);
		return 0;
	}
	char *args[] = { (char *)c->name, "--help", NULL };
	optind = 1;
	return c->run(2, args);
}

int main(int argc, char **argv)
{
	const struct subcmd *c;
	int i = 1, verbose = 0;

	pvm_log_set_prog("pvmig");
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
			verbose++;
		else if ((!strcmp(argv[i], "-H") || !strcmp(argv[i], "--host")) &&
			 i + 1 < argc)
			cli_host = argv[++i];
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("pvmig " PVM_VERSION "\n");
			return 0;
		} else {
			fprintf(stderr, "pvmig: unknown option '%s' (see pvmig --help)\n",
				argv[i]);
			return 2;
		}
	}
	if (verbose)
		pvm_log_set_level(verbose > 1 ? PVM_LOG_DEBUG : PVM_LOG_INFO);
	if (i >= argc) {
		/* "pvmig -v" or "pvmig -H DIR" alone: say what is missing. */
		if (i > 1)
			fprintf(stderr, "pvmig: no COMMAND after the options (see pvmig --help)\n\n");
		usage(stderr);
		return 2;
	}
	c = find_cmd(argv[i]);
	if (!c) {
		fprintf(stderr, "pvmig: unknown command '%s' (see pvmig --help)\n",
			argv[i]);
		return 2;
	}
	optind = 1;
	return c->run(argc - i, argv + i);
}
