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

#include "common/common.h"
#include "transport/transport.h"

struct subcmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
	const char *help;
};

static const struct subcmd *find_cmd(const char *name);

static int cmd_tls_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "days", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *def_hosts[] = { "localhost" };
	int days = 825, c, rc;

	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			days = atoi(optarg);
			if (days <= 0) {
				fprintf(stderr, "pvmig tls-init: --days wants a positive number of days, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			printf("usage: pvmig tls-init DIR [HOST...] [--days N]\n\n"
			       "Creates DIR/ca.pem and DIR/ca.key (a new CA, unless DIR already has\n"
			       "one) and, for each HOST (default: localhost), DIR/HOST.pem and\n"
			       "DIR/HOST.key signed by that CA, valid N days (default 825), with\n"
			       "HOST as common name and DNS name. Copy ca.pem and one host's pair\n"
			       "to each host and name them in pvmigd.conf (tls-ca, tls-cert,\n"
			       "tls-key). Keys are EC P-256, mode 0600.\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "pvmig tls-init: missing DIR (see pvmig tls-init --help)\n");
		return 2;
	}
	if (optind + 1 < argc)
		rc = pvm_tls_init_dir(argv[optind],
				      (const char *const *)&argv[optind + 1],
				      (size_t)(argc - optind - 1), 0, days);
	else
		rc = pvm_tls_init_dir(argv[optind], def_hosts, 1, 0, days);
	return rc ? 1 : 0;
}

static int cmd_help(int argc, char **argv);

static const struct subcmd cmds[] = {
	{ "tls-init", cmd_tls_init, "DIR [HOST...] [--days N]",
	  "make a CA and host certificates for pvmigd's TLS" },
	{ "help", cmd_help, "[COMMAND]", "show help for pvmig or a command" },
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
	fprintf(f, "usage: pvmig [-v] COMMAND [ARGS...]\n\n"
		   "Save, restore, checkpoint and live-migrate Xen guests with PV drivers.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < PVM_ARRAY_SIZE(cmds); i++)
		fprintf(f, "  %-10s %-28s %s\n", cmds[i].name, cmds[i].usage,
			cmds[i].help);
	fprintf(f, "\nOptions:\n  -v, --verbose   more log output (repeat for debug)\n"
		   "  -h, --help      this help\n  --version       print the version\n\n"
		   "'pvmig COMMAND --help' explains a command. See pvmig(1).\n");
}

static int cmd_help(int argc, char **argv)
{
	const struct subcmd *c;

	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	c = find_cmd(argv[1]);
	if (!c) {
		fprintf(stderr, "pvmig: unknown command '%s'\n", argv[1]);
		return 2;
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
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("pvmig 0.1.0\n");
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
