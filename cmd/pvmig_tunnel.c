/*
 * pvmig tunnel HOST[:PORT]: a transport for stock xl. Joins this process's
 * stdin and stdout to the tunnel-command (default "xl migrate-receive") that
 * the pvmigd on HOST runs, over pvmig's TLS 1.3 + lz4 channel:
 *
 *   xl migrate -s '' DOMAIN 'pvmig tunnel HOST'
 *
 * stdout belongs to the stream: every message goes to stderr.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/commands.h"

static void tunnel_usage(FILE *f)
{
	fprintf(f,
		"usage: pvmig tunnel [--config FILE] [--stats] HOST[:PORT]\n\n"
		"Carries a byte stream both ways between this command's stdin/stdout and\n"
		"the tunnel-command that the pvmigd on HOST runs (its pvmigd.conf; default\n"
		"\"" PVM_TUNNEL_COMMAND_DEFAULT "\"), over TLS 1.3 with lz4 compression. For xl:\n\n"
		"  xl migrate -s '' DOMAIN 'pvmig tunnel HOST'\n\n"
		"  --config FILE   where tls-ca, tls-cert, tls-key, port, streams and\n"
		"                  timeout-ms are read (default " PVM_CONFIG_DEFAULT ")\n"
		"  --stats         print bytes, bytes on the wire and time to stderr\n\n"
		"Exit status: the remote command's (0 when it succeeded); 1 when the\n"
		"tunnel could not be opened or broke (refused, TLS, lost link).\n");
}

int cmd_tunnel(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "stats", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf = PVM_CONFIG_DEFAULT;
	struct pvm_service_config cfg;
	struct pvm_tunnel_opts o;
	struct pvm_tunnel_stats st;
	char why[512];
	bool stats = false;
	int c, rc;

	while ((c = getopt_long(argc, argv, "c:sh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': conf = optarg; break;
		case 's': stats = true; break;
		case 'h': tunnel_usage(stdout); return 0;
		default: tunnel_usage(stderr); return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "pvmig tunnel: expected one HOST[:PORT] (see pvmig tunnel --help)\n");
		return 2;
	}
	pvm_service_config_defaults(&cfg);
	rc = pvm_service_config_load(&cfg, conf);
	if (rc) {
		fprintf(stderr, "pvmig tunnel: cannot read %s (%s): it names the TLS files\n",
			conf, strerror(-rc));
		return 1;
	}
	/* xl reads our stdout: a write after it has gone is an error, not a
	 * signal. */
	signal(SIGPIPE, SIG_IGN);
	o = (struct pvm_tunnel_opts){
		.target = argv[optind],
		.port = cfg.port,
		.tls_ca = cfg.tls_ca,
		.tls_cert = cfg.tls_cert,
		.tls_key = cfg.tls_key,
		.tls_crl = cfg.tls_crl,
		.ip_without_san = cfg.tls_ip_without_san,
		.streams = cfg.streams,
		.timeout_ms = cfg.timeout_ms,
	};
	rc = pvm_tunnel_run(&o, STDIN_FILENO, STDOUT_FILENO, &st, why, sizeof(why));
	if (stats)
		fprintf(stderr,
			"pvmig tunnel: sent %llu bytes as %llu on the wire (%.2fx), received %llu bytes, %.0f ms\n",
			(unsigned long long)st.sent, (unsigned long long)st.wire_sent,
			st.wire_sent ? (double)st.sent / (double)st.wire_sent : 0.0,
			(unsigned long long)st.received, st.ms);
	if (rc < 0) {
		fprintf(stderr, "pvmig tunnel: %s\n", why);
		return 1;
	}
	if (rc > 0)
		fprintf(stderr, "pvmig tunnel: the tunnel-command on %s exited with status %d\n",
			argv[optind], rc);
	return rc;
}
