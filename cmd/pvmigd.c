/*
 * pvmigd — the pvmig host daemon. With --backend sim it runs the simulated
 * Xen host, which at this stage is its xenstore server
 * (hv/sim/xenstored/xenstored.h) on STATE_DIR/xenstore.sock.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "hv/sim/xenstored/xenstored.h"

static struct pvm_xenstored *g_srv;

static void on_signal(int sig)
{
	(void)sig;
	if (g_srv)
		pvm_xenstored_stop(g_srv);
}

static void usage(FILE *f)
{
	fputs("Usage: pvmigd --backend sim --state-dir DIR [--foreground] [--verbose]\n"
	      "\n"
	      "Runs the pvmig host daemon.\n"
	      "  --backend sim     the embedded simulated Xen host (the only backend yet)\n"
	      "  --state-dir DIR   where the host keeps its sockets; the xenstore server\n"
	      "                    listens on DIR/xenstore.sock (use it with\n"
	      "                    XENSTORED_PATH=DIR/xenstore.sock xenstore-ls)\n"
	      "  --foreground, -f  stay in the foreground and log to stderr\n"
	      "                    (otherwise detach and log to syslog)\n"
	      "  --verbose, -v     debug logging\n"
	      "  --help, -h        this text\n"
	      "SIGTERM or SIGINT stops the daemon and removes its sockets.\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pvm_xenstored_opts opts;
	const char *backend = "sim", *state_dir = NULL;
	bool foreground = false;
	struct sigaction sa;
	int opt, rc;

	pvm_log_set_prog("pvmigd");
	while ((opt = getopt_long(argc, argv, "b:s:fvh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'b': backend = optarg; break;
		case 's': state_dir = optarg; break;
		case 'f': foreground = true; break;
		case 'v': pvm_log_set_level(PVM_LOG_DEBUG); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "pvmigd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (strcmp(backend, "sim") != 0) {
		fprintf(stderr, "pvmigd: unknown backend '%s' (only 'sim' exists)\n",
			backend);
		return 2;
	}
	if (!state_dir) {
		fprintf(stderr, "pvmigd: --state-dir DIR is required\n");
		usage(stderr);
		return 2;
	}
	if (access(state_dir, W_OK | X_OK) != 0) {
		fprintf(stderr, "pvmigd: state dir %s: %s\n", state_dir,
			strerror(errno));
		return 1;
	}

	pvm_xenstored_opts_default(&opts);
	opts.state_dir = state_dir;
	rc = pvm_xenstored_create(&opts, &g_srv);
	if (rc) {
		if (rc == -EBUSY)
			fprintf(stderr, "pvmigd: another pvmigd already serves %s\n",
				state_dir);
		else
			fprintf(stderr, "pvmigd: cannot start the xenstore server in %s: %s\n",
				state_dir, strerror(-rc));
		return 1;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!foreground) {
		/* The lock and sockets are shared with the child, which keeps
		 * them after the parent exits. */
		if (daemon(1, 0) < 0) {
			fprintf(stderr, "pvmigd: daemon: %s\n", strerror(errno));
			pvm_xenstored_destroy(g_srv);
			return 1;
		}
		pvm_log_use_syslog("pvmigd");
	}
	pvm_info("serving %s (backend sim)", pvm_xenstored_socket_path(g_srv));
	rc = pvm_xenstored_run(g_srv);
	pvm_info("shutting down");
	pvm_xenstored_destroy(g_srv);
	g_srv = NULL;
	return rc ? 1 : 0;
}
