/*
 * pvmigd — the pvmig host daemon: argument parsing, the configuration
 * file and its checks (--check-config, and the same checks at start),
 * detaching, and telling systemd when it is ready; the service itself is
 * migrate/ (pvm_service_*).
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"
#include "migrate/migrate.h"
#include "transport/transport.h"

static struct pvm_service *g_svc;

/*
 * systemd's readiness notification (sd_notify(3), "Type=notify"): one
 * datagram of "KEY=VALUE\n..." to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or '@' for the abstract namespace). This is the
 * whole of the protocol pvmigd uses, so it is written here instead of
 * linking libsystemd: no library and no run-time dependency for a daemon
 * that also runs without systemd (tests, pvmig demo, other inits), and the
 * protocol is documented as stable for exactly this (sd_notify(3), NOTES).
 * pvmigd takes the variable out of its environment at start, so that the
 * guests and commands it starts never inherit it.
 */
static char notify_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static void notify_take_socket(void)
{
	const char *p = getenv("NOTIFY_SOCKET");

	if (p && (p[0] == '/' || p[0] == '@') && strlen(p) < sizeof(notify_path))
		snprintf(notify_path, sizeof(notify_path), "%s", p);
	else if (p)
		fprintf(stderr, "pvmigd: NOTIFY_SOCKET '%s' is not a unix socket path: not notifying\n",
			p);
	unsetenv("NOTIFY_SOCKET");
}

/* Sends @state (e.g. "READY=1"); a no-op without $NOTIFY_SOCKET. */
static void notify(const char *state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(notify_path);
	int fd;

	if (!len)
		return;
	memcpy(sa.sun_path, notify_path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		pvm_warn("cannot notify systemd on %s: %s", notify_path,
			 strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void on_signal(int sig)
{
	(void)sig;
	if (g_svc)
		pvm_service_stop(g_svc);
}

static void usage(FILE *f)
{
	fputs("Usage: pvmigd [--config FILE] [--backend sim|xen] [--state-dir DIR]\n"
	      "              [--foreground] [--log stderr|syslog] [--verbose]\n"
	      "       pvmigd --check-config [--config FILE] [--backend sim|xen]\n"
	      "              [--state-dir DIR]\n"
	      "       pvmigd --version\n"
	      "\n"
	      "The pvmig host daemon: runs the hypervisor backend and answers the\n"
	      "local pvmig command on DIR/control.sock.\n"
	      "\n"
	      "  --config FILE     configuration (default " PVM_CONFIG_DEFAULT ";\n"
	      "                    a missing default file is not an error); options\n"
	      "                    given here override it. See pvmigd.conf(5).\n"
	      "  --backend sim     the embedded simulated Xen host (default)\n"
	      "  --backend xen     the real Xen backend\n"
	      "  --state-dir DIR   sockets and state (default " PVM_STATE_DIR_DEFAULT ");\n"
	      "                    with the simulated host, its xenstore server is\n"
	      "                    DIR/xenstore.sock (XENSTORED_PATH=DIR/xenstore.sock\n"
	      "                    xenstore-ls works against it)\n"
	      "  --foreground, -f  stay in the foreground and log to stderr\n"
	      "                    (otherwise detach and log as pvmigd.conf's 'log'\n"
	      "                    says: syslog by default)\n"
	      "  --log stderr|syslog\n"
	      "                    log there, whatever the two above say\n"
	      "  --verbose, -v     debug logging\n"
	      "  --check-config    read and check the configuration (the file, and\n"
	      "                    the TLS files it names: tls-ca a CA, tls-key\n"
	      "                    matching tls-cert), say what is wrong with\n"
	      "                    FILE:LINE, exit with the status a start would\n"
	      "                    have; start nothing\n"
	      "  --version         print the version\n"
	      "  --help, -h        this text\n"
	      "\n"
	      "SIGTERM or SIGINT stops the daemon, destroys the guests of a simulated\n"
	      "host, and removes its sockets. Use it with: pvmig -H DIR list\n",
	      f);
}

/*
 * The simulated host runs $PVM_SIMGUEST, else pvmig-simguest next to
 * pvmigd (a build tree). Installed, it lives in LIBEXECDIR/pvmig/ instead
 * (a helper, not a command): point the backend there when the build-tree
 * place has none. Called before any thread exists (setenv).
 */
static void find_simguest(void)
{
#ifdef PVM_INSTALL_LIBEXECDIR
	char exe[PATH_MAX], *slash;
	ssize_t n;

	if (getenv("PVM_SIMGUEST"))
		return;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 32);
	if (n > 0) {
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash) {
			strcpy(slash + 1, "pvmig-simguest");
			if (access(exe, X_OK) == 0)
				return;
		}
	}
	if (access(PVM_INSTALL_LIBEXECDIR "/pvmig-simguest", X_OK) == 0)
		setenv("PVM_SIMGUEST", PVM_INSTALL_LIBEXECDIR "/pvmig-simguest", 1);
#endif
}

/*
 * The line of @path that sets @key last (the one that wins), or 0: for
 * messages about a value, which the parser has no line for any more.
 */
static unsigned key_line(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	unsigned n = 0, found = 0;
	size_t klen = strlen(key);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		const char *p = line;

		n++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, key, klen))
			continue;
		p += klen;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '=')
			found = n;
	}
	fclose(f);
	return found;
}

/* "FILE:LINE" where @key is set, or "FILE" (or "the built-in defaults"). */
static void where(const char *path, const char *key, char *out, size_t len)
{
	unsigned line = path ? key_line(path, key) : 0;

	if (!path)
		snprintf(out, len, "the built-in defaults");
	else if (line)
		snprintf(out, len, "%s:%u", path, line);
	else
		snprintf(out, len, "%s", path);
}

/*
 * What the configuration needs beyond its syntax, checked at start and by
 * --check-config: TLS all or nothing, a listener only with TLS, and the
 * three files usable (pvm_tls_files_check). @path: the file read, NULL if
 * none. Logs each problem with FILE:LINE; returns 0 or 1 (the exit status
 * of a start that fails).
 */
static int check_semantics(const struct pvm_service_config *cfg,
			   const char *path)
{
	static const char *const keys[] = {
		[PVM_TLS_CA] = "tls-ca",
		[PVM_TLS_CERT] = "tls-cert",
		[PVM_TLS_KEY] = "tls-key",
		[PVM_TLS_CRL] = "tls-crl",
	};
	const char *vals[] = { cfg->tls_ca, cfg->tls_cert, cfg->tls_key,
			       cfg->tls_crl };
	struct pvm_tls_files files = { cfg->tls_ca, cfg->tls_cert, cfg->tls_key,
				       cfg->tls_crl };
	enum pvm_tls_which which;
	char at[1100], why[512], missing[64] = "";
	unsigned set = 0;

	for (size_t i = 0; i < 3; i++) {
		if (vals[i][0])
			set++;
		else
			snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing),
				 "%s%s", missing[0] ? ", " : "", keys[i]);
	}
	if (set == 0 && cfg->listen[0]) {
		where(path, "listen", at, sizeof(at));
		pvm_err("%s: listen = %s needs tls-ca, tls-cert and tls-key (make them with pvmig tls-init)",
			at, cfg->listen);
		return 1;
	}
	if (cfg->listen[0] && !cfg->allow_peers_set) {
		/* Authentication is not authorization: every certificate of
		 * the CA would otherwise be root here (docs/security.md). */
		where(path, "listen", at, sizeof(at));
		pvm_err("%s: listen = %s needs allow-peers: name the peers that may send guests here (allow-peers = hosta,hostb), or say allow-peers = * to trust every certificate of tls-ca",
			at, cfg->listen);
		return 1;
	}
	for (unsigned i = 0; i < cfg->nr_storage_roots; i++) {
		struct stat st;

		if (stat(cfg->storage_roots[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
			where(path, "storage-roots", at, sizeof(at));
			pvm_err("%s: storage-roots: %s is not a directory", at,
				cfg->storage_roots[i]);
			return 1;
		}
	}
	if (cfg->tls_crl[0] && set < 3) {
		where(path, "tls-crl", at, sizeof(at));
		pvm_err("%s: tls-crl needs tls-ca, tls-cert and tls-key", at);
		return 1;
	}
	if (set == 0)
		return 0;
	if (set < 3) {
		where(path, vals[0][0] ? "tls-ca" : vals[1][0] ? "tls-cert" : "tls-key",
		      at, sizeof(at));
		pvm_err("%s: %s missing: tls-ca, tls-cert and tls-key go together",
			at, missing);
		return 1;
	}
	if (pvm_tls_files_check(&files, &which, why, sizeof(why))) {
		where(path, keys[which], at, sizeof(at));
		pvm_err("%s: %s %s: %s", at, keys[which], vals[which], why);
		return 1;
	}
	return 0;
}

/*
 * --check-config only: can the state dir be what the service makes it?
 * @path: the config file, NULL when --state-dir named it.
 */
static int check_state_dir(const char *dir, const char *path)
{
	char at[1100] = "--state-dir", parent[256], *slash;
	struct stat st;

	if (path)
		where(path, "state-dir", at, sizeof(at));
	if (stat(dir, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		pvm_err("%s: state-dir %s is not a directory", at, dir);
		return 1;
	}
	/* pvmigd creates one level, as mkdir(1) would without -p. */
	snprintf(parent, sizeof(parent), "%s", dir);
	slash = strrchr(parent, '/');
	if (slash && slash != parent)
		*slash = '\0';
	else if (slash)
		slash[1] = '\0';
	if (stat(parent, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	pvm_err("%s: state-dir %s does not exist, nor its parent %s (pvmigd makes one level)",
		at, dir, parent);
	return 1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "backend", required_argument, NULL, 'b' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "log", required_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pvm_service_config cfg;
	const char *config = NULL, *backend = NULL, *state_dir = NULL;
	const char *log_to = NULL;
	bool foreground = false, use_syslog, check_only = false;
	const char *config_read = NULL;
	struct sigaction sa;
	int opt, rc;

	pvm_log_set_prog("pvmigd");
	notify_take_socket();
	find_simguest();
	while ((opt = getopt_long(argc, argv, "c:b:s:fl:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			if (strcmp(optarg, "stderr") && strcmp(optarg, "syslog")) {
				fprintf(stderr, "pvmigd: --log is stderr or syslog, not '%s'\n",
					optarg);
				return 2;
			}
			log_to = optarg;
			break;
		case 'c': config = optarg; break;
		case 'b': backend = optarg; break;
		case 's': state_dir = optarg; break;
		case 'f': foreground = true; break;
		case 'v': pvm_log_set_level(PVM_LOG_DEBUG); break;
		case 'C': check_only = true; break;
		case 'V': printf("pvmigd %s\n", PVM_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "pvmigd: unexpected argument '%s' (see pvmigd --help)\n",
			argv[optind]);
		return 2;
	}
	/* A daemon's log: time-stamped, or the journal's format when stderr
	 * is the journal (it stamps lines itself). --check-config answers a
	 * person: plain. */
	if (!check_only)
		pvm_log_use_daemon_format();

	pvm_service_config_defaults(&cfg);
	rc = pvm_service_config_load(&cfg, config ? config : PVM_CONFIG_DEFAULT);
	if (!rc)
		config_read = config ? config : PVM_CONFIG_DEFAULT;
	if (rc == -ENOENT && !config)
		rc = 0;
	if (rc) {
		if (rc == -ENOENT || rc == -EACCES)
			fprintf(stderr, "pvmigd: cannot read %s: %s\n",
				config ? config : PVM_CONFIG_DEFAULT,
				strerror(-rc));
		return 2;
	}
	if (backend) {
		if (strcmp(backend, "sim") && strcmp(backend, "xen")) {
			fprintf(stderr, "pvmigd: unknown backend '%s' (sim or xen)\n",
				backend);
			return 2;
		}
		snprintf(cfg.backend, sizeof(cfg.backend), "%s", backend);
	}
	if (state_dir) {
		if (strlen(state_dir) >= sizeof(cfg.state_dir)) {
			fprintf(stderr, "pvmigd: --state-dir is too long\n");
			return 2;
		}
		snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%s", state_dir);
	}

	/* The daemon changes to / when it detaches: make every path in the
	 * configuration absolute now, against the directory it was started in. */
	{
		char *paths[] = { cfg.state_dir, cfg.tls_ca, cfg.tls_cert,
				  cfg.tls_key, cfg.tls_crl };
		size_t caps[] = { sizeof(cfg.state_dir), sizeof(cfg.tls_ca),
				  sizeof(cfg.tls_cert), sizeof(cfg.tls_key),
				  sizeof(cfg.tls_crl) };
		char cwd[256], abs[1024];

		if (getcwd(cwd, sizeof(cwd))) {
			for (size_t i = 0; i < PVM_ARRAY_SIZE(paths); i++) {
				if (!paths[i][0] || paths[i][0] == '/')
					continue;
				snprintf(abs, sizeof(abs), "%s/%s", cwd, paths[i]);
				if (strlen(abs) >= caps[i]) {
					fprintf(stderr, "pvmigd: path too long: %s\n", abs);
					return 2;
				}
				memcpy(paths[i], abs, strlen(abs) + 1);
			}
		}
	}

	rc = check_semantics(&cfg, config_read);
	if (check_only) {
		rc = rc ? rc : check_state_dir(cfg.state_dir,
						 state_dir ? NULL : config_read);
		if (rc)
			return rc;
		char lis[1024] = "no listener", peers[700] = "";
		size_t o = 0;

		for (unsigned i = 0; i < cfg.nr_allow && o < sizeof(peers); i++) {
			char r[64];

			pvm_rights_format(cfg.allow[i].rights, r, sizeof(r));
			o += (size_t)snprintf(peers + o, sizeof(peers) - o, "%s%s:%s",
					      i ? "," : "", cfg.allow[i].name, r);
		}
		if (cfg.listen[0])
			snprintf(lis, sizeof(lis),
				 "listening on %s port %u, allow-peers %s",
				 cfg.listen, cfg.port, peers);
		printf("%s: ok (backend %s, state-dir %s, %s, %s)\n",
		       config_read ? config_read :
				     "no " PVM_CONFIG_DEFAULT ", built-in defaults",
		       cfg.backend, cfg.state_dir, lis,
		       cfg.tls_ca[0] ? "TLS files checked" :
				       "no TLS: migrations refused");
		return 0;
	}
	if (rc)
		return rc;

	/* --log beats everything; in the foreground a terminal (or whoever
	 * started us) reads stderr; detached, the configuration decides. */
	use_syslog = log_to ? !strcmp(log_to, "syslog") :
			      !foreground && cfg.log_syslog;

	/*
	 * Detach before the service starts its threads (a fork keeps only the
	 * calling thread). The parent waits for the child's verdict on a pipe,
	 * so start-up errors still reach the terminal and the exit status.
	 */
	if (!foreground) {
		int ready[2];
		char verdict = 1;
		pid_t pid;

		if (pipe(ready) < 0 || (pid = fork()) < 0) {
			fprintf(stderr, "pvmigd: cannot detach: %s\n", strerror(errno));
			return 1;
		}
		if (pid > 0) {
			close(ready[1]);
			if (read(ready[0], &verdict, 1) != 1)
				verdict = 1;
			return verdict ? 1 : 0;
		}
		close(ready[0]);
		setsid();
		rc = pvm_service_create(&cfg, &g_svc);
		verdict = rc ? 1 : 0;
		if (write(ready[1], &verdict, 1) != 1 || rc)
			return 1;
		close(ready[1]);
		/* With "log = stderr", stderr stays what it was (under
		 * systemd: the journal). */
		if (chdir("/") < 0 || !freopen("/dev/null", "r", stdin) ||
		    !freopen("/dev/null", "w", stdout) ||
		    (use_syslog && !freopen("/dev/null", "w", stderr)))
			return 1;
		if (use_syslog)
			pvm_log_use_syslog("pvmigd");
	} else {
		rc = pvm_service_create(&cfg, &g_svc);
		if (rc)
			return 1; /* the service logged why */
		if (use_syslog)
			pvm_log_use_syslog("pvmigd");
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	pvm_info("serving %s (backend %s)", pvm_service_control_path(g_svc),
		 cfg.backend);
	/* Ready: control.sock is bound and, with listen, the listener too. */
	{
		char msg[512];

		snprintf(msg, sizeof(msg),
			 "READY=1\nSTATUS=serving %s (backend %s)\nMAINPID=%ld",
			 pvm_service_control_path(g_svc), cfg.backend,
			 (long)getpid());
		notify(msg);
	}
	rc = pvm_service_run(g_svc);
	notify("STOPPING=1\nSTATUS=stopping: waiting for running jobs, then destroying simulated guests");
	pvm_info("shutting down");
	pvm_service_destroy(g_svc);
	g_svc = NULL;
	return rc ? 1 : 0;
}
