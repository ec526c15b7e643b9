/*
 * pvmig demo: two simulated hosts on this machine, one guest doing
 * verified disk and network I/O, migrated live A -> B and back, and the
 * report (each migration's statistics, the guest's I/O counters).
 *
 * Order: find pvmigd -> temp dir -> a fresh test CA and two host
 * certificates (pvm_tls_init_dir) -> two pvmigd children on loopback, each
 * with its own config and state dir, listening on a port of the kernel's
 * choosing (pvmig info tells which) -> create the guest on A -> migrate
 * A -> B, check its counters on B -> migrate B -> A, check them on A ->
 * report -> stop the children (by PID) and remove the temp dir. Ctrl-C or
 * SIGTERM at any point goes straight to that last step; the children also
 * get SIGTERM from the kernel if this process dies (PR_SET_PDEATHSIG).
 *
 * Everything pvmigd is asked goes through cli_exchange(), the statistics
 * are printed by the table pvmig migrate prints.
 */
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "transport/transport.h"

#define HOST_START_MS 10000u
#define SETTLE_MS 1500u /* I/O running on a host before its counters are read */

static volatile sig_atomic_t g_interrupted;

static void on_signal(int sig)
{
	g_interrupted = sig;
}

struct demo_host {
	char name;        /* 'a' or 'b' */
	char dir[128];    /* under demo.dir (80) */
	char ctl[160];
	char log[128];
	pid_t pid;        /* 0 = not started / reaped */
	unsigned port;
};

struct demo {
	bool json, tty, keep;
	const char *memory, *frontend;
	unsigned long dirty_rate, working_set;
	char pvmigd[PATH_MAX];
	char dir[80]; /* short: the control sockets live under it */
	struct demo_host host[2];
	/* Results, kept for the JSON report. */
	struct pvm_kv mig[2];      /* RESULT of each migration */
	struct pvm_kv counters[3]; /* status on A before, on B, on A after */
	const char *errors;        /* first I/O error counter found, or NULL */
};

/* Step lines: part of the human report; with --json only on a terminal. */
static void step(const struct demo *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void step(const struct demo *d, const char *fmt, ...)
{
	FILE *f = d->json ? stderr : stdout;
	va_list ap;

	if (d->json && !d->tty)
		return;
	va_start(ap, fmt);
	fputs("== ", f);
	vfprintf(f, fmt, ap);
	fputc('\n', f);
	va_end(ap);
	fflush(f);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	/* A signal cuts it short: the caller checks g_interrupted. */
	nanosleep(&ts, NULL);
}

/*
 * pvmigd next to this pvmig (a build tree), else where 'cmake --install'
 * and the package put it (pvmig in bin/, pvmigd in sbin/), else on PATH.
 */
static int find_pvmigd(char *out, size_t len)
{
	char self[PATH_MAX], *slash, *path, *save = NULL, *dir;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			if ((size_t)snprintf(out, len, "%s/pvmigd", self) < len &&
			    access(out, X_OK) == 0)
				return 0;
		}
	}
#ifdef PVM_INSTALL_SBINDIR
	if ((size_t)snprintf(out, len, "%s/pvmigd", PVM_INSTALL_SBINDIR) < len &&
	    access(out, X_OK) == 0)
		return 0;
#endif
	path = getenv("PATH");
	if (path && (path = strdup(path))) {
		for (dir = strtok_r(path, ":", &save); dir;
		     dir = strtok_r(NULL, ":", &save)) {
			if ((size_t)snprintf(out, len, "%s/pvmigd", *dir ? dir : ".") < len &&
			    access(out, X_OK) == 0) {
				free(path);
				return 0;
			}
		}
		free(path);
	}
	fprintf(stderr, "pvmig demo: cannot find pvmigd next to %s nor on PATH\n"
			"       build it (scripts/build.sh puts both in build/) or install it\n"
			"       (cmake --install build), or add the directory that has it to PATH\n",
		n > 0 ? self : "this pvmig");
	return -ENOENT;
}

static int write_config(const struct demo *d, const struct demo_host *h,
			char *path, size_t len)
{
	FILE *f;

	snprintf(path, len, "%s/host%c.conf", d->dir, h->name);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f,
		"# pvmigd.conf of demo host %c (see pvmigd.conf(5))\n"
		"backend = sim\n"
		"state-dir = %s\n"
		"listen = 127.0.0.1\n"
		"port = 0\n"
		"timeout-ms = 5000\n"
		"log = stderr\n"
		"tls-ca = %s/tls/ca.pem\n"
		"tls-cert = %s/tls/host%c.pem\n"
		"tls-key = %s/tls/host%c.key\n"
		"# who may send guests here, and where their disks may be\n"
		"allow-peers = hosta,hostb\n"
		"storage-roots = %s\n",
		h->name, h->dir, d->dir, d->dir, h->name, d->dir, h->name, d->dir);
	return fclose(f) ? -errno : 0;
}

/* Prints the last lines of a host's log (start-up failures). */
static void show_log(const struct demo_host *h)
{
	char buf[4096];
	FILE *f = fopen(h->log, "r");
	size_t n;
	long sz;

	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	fseek(f, sz > (long)sizeof(buf) - 1 ? sz - (long)sizeof(buf) + 1 : 0, SEEK_SET);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	fprintf(stderr, "--- last lines of host %c's pvmigd log (%s):\n%s", h->name,
		h->log, buf);
}

/* One request to a host; the RESULT in @res. 0, or -EIO after saying why. */
static int ask(const struct demo *d, const struct demo_host *h,
	       const char *what, const struct pvm_kv *req,
	       const struct cli_handlers *hd, struct pvm_kv *res)
{
	int rc = cli_exchange(h->ctl, what, req, hd, res);

	(void)d;
	if (rc)
		return -EIO;
	if (!cli_result_ok(res)) {
		const char *err = pvm_kv_get(res, "error");

		fprintf(stderr, "pvmig demo: host %c: %s: %s\n", h->name, what,
			err ? err : "failed");
		return -EIO;
	}
	return 0;
}

static int start_host(struct demo *d, struct demo_host *h)
{
	char conf[PATH_MAX];
	struct pvm_kv req, res;
	uint64_t port = 0;
	int fd, rc, st;

	snprintf(h->dir, sizeof(h->dir), "%s/host%c", d->dir, h->name);
	snprintf(h->ctl, sizeof(h->ctl), "%s/%s", h->dir, PVM_CTL_SOCKET_NAME);
	snprintf(h->log, sizeof(h->log), "%s/host%c.log", d->dir, h->name);
	rc = write_config(d, h, conf, sizeof(conf));
	if (rc) {
		fprintf(stderr, "pvmig demo: cannot write %s: %s\n", conf, strerror(-rc));
		return rc;
	}
	h->pid = fork();
	if (h->pid < 0) {
		h->pid = 0;
		fprintf(stderr, "pvmig demo: cannot start pvmigd: %s\n", strerror(errno));
		return -errno;
	}
	if (h->pid == 0) {
		/* Its own process group: a Ctrl-C reaches the demo, which
		 * stops the hosts in order; the kernel stops them if we die. */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		fd = open(h->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execl(d->pvmigd, "pvmigd", "--config", conf, "--foreground",
		      (char *)NULL);
		fprintf(stderr, "cannot run %s: %s\n", d->pvmigd, strerror(errno));
		_exit(127);
	}
	for (unsigned waited = 0;; waited += 50) {
		if (g_interrupted)
			return -EINTR;
		if (waitpid(h->pid, &st, WNOHANG) == h->pid) {
			h->pid = 0;
			fprintf(stderr, "pvmig demo: pvmigd of host %c exited at start-up\n",
				h->name);
			show_log(h);
			return -ECHILD;
		}
		if (pvm_ctl_connect(h->ctl, &fd) == 0) {
			close(fd);
			break;
		}
		if (waited >= HOST_START_MS) {
			fprintf(stderr, "pvmig demo: pvmigd of host %c did not open %s in %u s\n",
				h->name, h->ctl, HOST_START_MS / 1000);
			show_log(h);
			return -ETIMEDOUT;
		}
		sleep_ms(50);
	}
	pvm_kv_init(&req);
	pvm_kv_init(&res);
	pvm_kv_add(&req, "cmd", "ping");
	rc = ask(d, h, "info", &req, NULL, &res);
	if (!rc && (pvm_kv_get_u64(&res, "port", &port) || !port || port > 65535)) {
		fprintf(stderr, "pvmig demo: pvmigd of host %c does not say its port (is %s an older pvmigd?)\n",
			h->name, d->pvmigd);
		rc = -EPROTO;
	}
	h->port = (unsigned)port;
	pvm_kv_dispose(&req);
	pvm_kv_dispose(&res);
	return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* Stops the children this demo started (by PID), removes the temp dir. */
static void cleanup(struct demo *d)
{
	for (int i = 0; i < 2; i++)
		if (d->host[i].pid > 0)
			kill(d->host[i].pid, SIGTERM);
	for (int i = 0; i < 2; i++) {
		struct demo_host *h = &d->host[i];
		unsigned waited = 0;
		int st;

		while (h->pid > 0) {
			pid_t r = waitpid(h->pid, &st, WNOHANG);

			if (r == h->pid || (r < 0 && errno == ECHILD)) {
				h->pid = 0;
				break;
			}
			if (waited >= 10000u) {
				/* Its guests are its children: they go with it. */
				kill(h->pid, SIGKILL);
				waitpid(h->pid, &st, 0);
				h->pid = 0;
				break;
			}
			sleep_ms(20);
			waited += 20;
		}
	}
	if (!d->dir[0])
		return;
	if (d->keep)
		fprintf(stderr, "pvmig demo: kept %s (configs, certificates, pvmigd logs)\n",
			d->dir);
	else
		nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The guest's I/O counters on @h, into @out; their error counters checked. */
static const char *const error_counters[] = {
	"blk_verify_fail", "blk_io_errors", "net_dup", "net_ooo",
};

static int read_counters(struct demo *d, const struct demo_host *h,
			 struct pvm_kv *out)
{
	struct pvm_kv req;
	int rc;

	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "status");
	pvm_kv_add(&req, "domain", "demo");
	rc = ask(d, h, "status", &req, NULL, out);
	pvm_kv_dispose(&req);
	if (rc)
		return rc;
	if (!pvm_kv_get(out, "blk_reads")) {
		fprintf(stderr, "pvmig demo: host %c reports no I/O counters for the guest\n",
			h->name);
		return -EPROTO;
	}
	for (size_t i = 0; i < PVM_ARRAY_SIZE(error_counters); i++) {
		const char *v = pvm_kv_get(out, error_counters[i]);

		if (v && strcmp(v, "0") && !d->errors)
			d->errors = error_counters[i];
	}
	return 0;
}

static uint64_t counter(const struct pvm_kv *kv, const char *key)
{
	uint64_t v = 0;

	pvm_kv_get_u64(kv, key, &v);
	return v;
}

static void print_counters(const struct demo *d, const char *where,
			   const struct pvm_kv *kv)
{
	if (d->json)
		return;
	printf("guest I/O on %s: blk writes %s reads %s verify-fail %s io-errors %s;"
	       " net sent %s received %s lost %s dup %s out-of-order %s\n",
	       where, pvm_kv_get(kv, "blk_writes"), pvm_kv_get(kv, "blk_reads"),
	       pvm_kv_get(kv, "blk_verify_fail"), pvm_kv_get(kv, "blk_io_errors"),
	       pvm_kv_get(kv, "net_sent"), pvm_kv_get(kv, "net_received"),
	       pvm_kv_get(kv, "net_lost"), pvm_kv_get(kv, "net_dup"),
	       pvm_kv_get(kv, "net_ooo"));
}

static void mig_progress(void *ctx, const struct pvm_kv *kv)
{
	(void)ctx;
	migrate_draw_progress(kv);
}

static int create_guest(struct demo *d)
{
	char disk[PATH_MAX], wl[256], spec[128];
	struct pvm_kv req, res;
	int rc, fd;

	snprintf(disk, sizeof(disk), "%s/disk.img", d->dir);
	fd = open(disk, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, 64 << 20) < 0) {
		fprintf(stderr, "pvmig demo: cannot make the disk image %s: %s\n",
			disk, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	close(fd);
	snprintf(spec, sizeof(spec), "content:counter,dirty=%lu,ws=%lu,blk:500,net:500",
		 d->dirty_rate, d->working_set);
	if (cli_workload_spec(spec, wl, sizeof(wl)))
		return -EINVAL;
	pvm_kv_init(&req);
	pvm_kv_init(&res);
	pvm_kv_add(&req, "cmd", "create");
	pvm_kv_add(&req, "name", "demo");
	pvm_kv_add(&req, "memory", "%s", d->memory);
	pvm_kv_add(&req, "vcpus", "1");
	pvm_kv_add(&req, "frontend", "%s", d->frontend);
	pvm_kv_add(&req, "workload", "%s", wl);
	pvm_kv_add(&req, "disk0", "%s", disk);
	pvm_kv_add(&req, "nic0_mac", "00:16:3e:00:de:01");
	rc = ask(d, &d->host[0], "create", &req, NULL, &res);
	pvm_kv_dispose(&req);
	pvm_kv_dispose(&res);
	return rc;
}

/* Migrates the guest from host @from to host @to; the RESULT in d->mig[i]. */
static int migrate(struct demo *d, int i, struct demo_host *from,
		   struct demo_host *to)
{
	const struct cli_handlers hd = { .progress = mig_progress };
	struct pvm_kv req;
	int rc;

	step(d, "live migration %c -> %c (TLS 1.3, 127.0.0.1:%u)",
	     from->name - 'a' + 'A', to->name - 'a' + 'A', to->port);
	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "migrate");
	pvm_kv_add(&req, "domain", "demo");
	pvm_kv_add(&req, "target", "127.0.0.1:%u", to->port);
	rc = ask(d, from, "migrate", &req, d->json ? NULL : &hd, &d->mig[i]);
	pvm_kv_dispose(&req);
	if (!rc && !d->json)
		migrate_print_stats(&d->mig[i]);
	return rc;
}

/* I/O must have gone on on the new host, and without errors. */
static int check_progress(struct demo *d, const struct pvm_kv *before,
			  const struct pvm_kv *after, const char *where)
{
	if (counter(after, "blk_reads") <= counter(before, "blk_reads") ||
	    counter(after, "net_received") <= counter(before, "net_received")) {
		fprintf(stderr, "pvmig demo: the guest's disk or network I/O did not go on on %s "
				"(blk reads %llu -> %llu, net received %llu -> %llu)\n",
			where, (unsigned long long)counter(before, "blk_reads"),
			(unsigned long long)counter(after, "blk_reads"),
			(unsigned long long)counter(before, "net_received"),
			(unsigned long long)counter(after, "net_received"));
		if (!d->errors)
			d->errors = "stalled";
	}
	return 0;
}

static int run(struct demo *d)
{
	/* Both on loopback: the address a migration targets is checked. */
	const char *hosts[] = { "hosta,127.0.0.1", "hostb,127.0.0.1" };
	char tls[PATH_MAX];
	int rc;

	const char *tmp = getenv("TMPDIR");

	/* A unix socket path holds 107 bytes: a long TMPDIR is not used. */
	if (!tmp || !*tmp || (size_t)snprintf(d->dir, sizeof(d->dir),
					      "%s/pvmig-demo.XXXXXX", tmp) >= sizeof(d->dir))
		snprintf(d->dir, sizeof(d->dir), "/tmp/pvmig-demo.XXXXXX");
	if (!mkdtemp(d->dir)) {
		fprintf(stderr, "pvmig demo: cannot make a temporary directory %s: %s\n",
			d->dir, strerror(errno));
		d->dir[0] = '\0';
		return -EIO;
	}
	step(d, "a fresh test CA and two host certificates in %s/tls", d->dir);
	snprintf(tls, sizeof(tls), "%s/tls", d->dir);
	{
		/* Its "created ..." lines are the step line above. */
		enum pvm_log_level lvl = pvm_log_get_level();

		if (lvl == PVM_LOG_INFO)
			pvm_log_set_level(PVM_LOG_WARN);
		rc = pvm_tls_init_dir(tls, hosts, 2, 0, 1);
		pvm_log_set_level(lvl);
	}
	if (rc) {
		fprintf(stderr, "pvmig demo: cannot make the test certificates: %s\n",
			strerror(-rc));
		return rc;
	}
	for (int i = 0; i < 2 && !rc; i++) {
		rc = start_host(d, &d->host[i]);
		if (!rc)
			step(d, "host %c: pvmigd (pid %d, simulated Xen host), control %s, peers on 127.0.0.1:%u",
			     'A' + i, (int)d->host[i].pid, d->host[i].ctl, d->host[i].port);
	}
	if (rc)
		return rc;
	step(d, "guest 'demo' on host A: %s, %s PV frontends, a PV disk and a PV NIC;"
		" dirtying %lu MiB/s over %lu MiB, checksummed block writes read back,"
		" numbered packets to an echo peer",
	     d->memory, d->frontend, d->dirty_rate, d->working_set);
	rc = create_guest(d);
	if (rc)
		return rc;
	sleep_ms(SETTLE_MS);
	if (g_interrupted)
		return -EINTR;
	rc = read_counters(d, &d->host[0], &d->counters[0]);
	if (rc)
		return rc;
	print_counters(d, "A", &d->counters[0]);

	rc = migrate(d, 0, &d->host[0], &d->host[1]);
	if (rc)
		return rc;
	sleep_ms(SETTLE_MS);
	if (g_interrupted)
		return -EINTR;
	rc = read_counters(d, &d->host[1], &d->counters[1]);
	if (rc)
		return rc;
	print_counters(d, "B", &d->counters[1]);
	check_progress(d, &d->counters[0], &d->counters[1], "host B");

	rc = migrate(d, 1, &d->host[1], &d->host[0]);
	if (rc)
		return rc;
	sleep_ms(SETTLE_MS);
	if (g_interrupted)
		return -EINTR;
	rc = read_counters(d, &d->host[0], &d->counters[2]);
	if (rc)
		return rc;
	print_counters(d, "A", &d->counters[2]);
	check_progress(d, &d->counters[1], &d->counters[2], "host A after coming back");
	return 0;
}

/* The document of every --json: the migrations are the items. */
static void print_json(const struct demo *d, int rc)
{
	static const char *const where[] = { "A", "B", "A" };
	static const char *const dir[] = { "A->B", "B->A" };
	const char *err = NULL;
	bool first = true;

	fputs("{\"items\":[", stdout);
	for (int i = 0; i < 2; i++) {
		if (!d->mig[i].n)
			continue;
		if (!first)
			putchar(',');
		first = false;
		fputs("{\"direction\":", stdout);
		cli_json_string(dir[i]);
		putchar(',');
		cli_json_fields(&d->mig[i]);
		putchar('}');
		if (!cli_result_ok(&d->mig[i]))
			err = pvm_kv_get(&d->mig[i], "error");
	}
	printf("],\"result\":{\"status\":%d", rc < 0 ? -rc : d->errors ? EIO : 0);
	if (rc || d->errors) {
		fputs(",\"error\":", stdout);
		cli_json_string(d->errors ? "the guest's I/O is not error-free" :
				err ? err : strerror(-rc));
	}
	fputs(",\"memory\":", stdout);
	cli_json_string(d->memory);
	fputs(",\"frontend\":", stdout);
	cli_json_string(d->frontend);
	printf(",\"dirty_rate_mib_s\":%lu,\"working_set_mib\":%lu,\"io_error_free\":%s",
	       d->dirty_rate, d->working_set, d->errors ? "false" : "true");
	if (d->errors) {
		fputs(",\"io_error\":", stdout);
		cli_json_string(d->errors);
	}
	fputs(",\"counters\":[", stdout);
	first = true;
	for (int i = 0; i < 3; i++) {
		if (!d->counters[i].n)
			continue;
		if (!first)
			putchar(',');
		first = false;
		fputs("{\"host\":", stdout);
		cli_json_string(where[i]);
		putchar(',');
		cli_json_fields(&d->counters[i]);
		putchar('}');
	}
	fputs("]}}\n", stdout);
}

static void usage(FILE *f)
{
	fputs("usage: pvmig demo [--json] [--memory SIZE] [--dirty-rate R] [--working-set W]\n"
	      "                  [--frontend modern|legacy] [--keep]\n\n"
	      "Starts two simulated Xen hosts on this machine (two pvmigd on loopback,\n"
	      "with a fresh test CA), creates a guest with a PV disk and a PV NIC doing\n"
	      "verified I/O on host A, migrates it live A -> B, then B -> A, and prints\n"
	      "each migration's statistics and the guest's I/O counters. Needs no root\n"
	      "and no pvmigd running; stops what it started, also on Ctrl-C.\n"
	      "  --memory SIZE      guest memory, e.g. 64M, 1G (default 256M)\n"
	      "  --dirty-rate R     the guest dirties R MiB/s (default 20)\n"
	      "  --working-set W    over W MiB (default 32)\n"
	      "  --frontend GEN     modern (re-handshake on resume, like Linux; default)\n"
	      "                     or legacy (never re-handshake, like old Windows PV drivers)\n"
	      "  --keep             keep the temporary directory (configs, pvmigd logs)\n"
	      "  --json             the report as one JSON object on stdout\n"
	      "Exit status 0 when both migrations succeeded and the guest's I/O went on\n"
	      "without a verification error, duplicate or reordered packet; 1 if not.\n",
	      f);
}

static int parse_mib(const char *opt, const char *v, unsigned long *out)
{
	char *end;
	unsigned long n = strtoul(v, &end, 10);

	if (!*v || *end || n == 0 || n > 1u << 20) {
		fprintf(stderr, "pvmig demo: %s wants a whole number of MiB (1..1048576), not '%s'\n",
			opt, v);
		return -EINVAL;
	}
	*out = n;
	return 0;
}

int cmd_demo(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "memory", required_argument, NULL, 'm' },
		{ "dirty-rate", required_argument, NULL, 'r' },
		{ "working-set", required_argument, NULL, 'w' },
		{ "frontend", required_argument, NULL, 'f' },
		{ "keep", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct demo d = { .memory = "256M", .frontend = "modern",
			  .dirty_rate = 20, .working_set = 32 };
	struct sigaction sa, old_int, old_term;
	int c, rc;

	while ((c = getopt_long(argc, argv, "jm:r:w:f:kh", opts, NULL)) != -1) {
		switch (c) {
		case 'j': d.json = true; break;
		case 'm': d.memory = optarg; break;
		case 'k': d.keep = true; break;
		case 'r':
			if (parse_mib("--dirty-rate", optarg, &d.dirty_rate))
				return 2;
			break;
		case 'w':
			if (parse_mib("--working-set", optarg, &d.working_set))
				return 2;
			break;
		case 'f':
			if (strcmp(optarg, "modern") && strcmp(optarg, "legacy")) {
				fprintf(stderr, "pvmig demo: --frontend is modern or legacy, not '%s'\n",
					optarg);
				return 2;
			}
			d.frontend = optarg;
			break;
		case 'h': usage(stdout); return 0;
		default: return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "pvmig demo: unexpected argument '%s' (see pvmig demo --help)\n",
			argv[optind]);
		return 2;
	}
	if (find_pvmigd(d.pvmigd, sizeof(d.pvmigd)))
		return 1;
	d.tty = isatty(STDERR_FILENO);
	d.host[0].name = 'a';
	d.host[1].name = 'b';
	for (int i = 0; i < 2; i++)
		pvm_kv_init(&d.mig[i]);
	for (int i = 0; i < 3; i++)
		pvm_kv_init(&d.counters[i]);

	/* No SA_RESTART: a Ctrl-C ends the wait for pvmigd's answer too. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	rc = run(&d);
	if (g_interrupted) {
		fprintf(stderr, "\npvmig demo: interrupted; stopping the two hosts\n");
		rc = -EINTR;
	}
	cleanup(&d);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);

	if (d.json) {
		print_json(&d, rc);
	} else if (!rc) {
		step(&d, "report");
		for (int i = 0; i < 2; i++)
			printf("%s: total %s ms, downtime %s ms, %s pre-copy rounds, %s bytes on the wire, compression x%s\n",
			       i ? "B -> A" : "A -> B", pvm_kv_get(&d.mig[i], "total_ms"),
			       pvm_kv_get(&d.mig[i], "downtime_ms"),
			       pvm_kv_get(&d.mig[i], "rounds"),
			       pvm_kv_get(&d.mig[i], "wire_bytes"),
			       pvm_kv_get(&d.mig[i], "compression_ratio"));
		if (d.errors)
			printf("guest I/O: NOT error-free (%s)\n", d.errors);
		else
			printf("guest I/O: error-free on both hosts (no verification error, "
			       "no duplicate or reordered packet)\n");
	}
	for (int i = 0; i < 2; i++)
		pvm_kv_dispose(&d.mig[i]);
	for (int i = 0; i < 3; i++)
		pvm_kv_dispose(&d.counters[i]);
	if (g_interrupted)
		return 130;
	return rc || d.errors ? 1 : 0;
}
