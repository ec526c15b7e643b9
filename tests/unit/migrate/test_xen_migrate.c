/*
 * The Xen migration path of migrate/ (xen_stream.c: mig_source_xen_stream,
 * mig_dest_xen_receive, and the hand-over around them in source.c, dest.c), end to end in one
 * process: two pvmigd services on two fake Xen hosts (fakexen.c, hosts 0
 * and 1), the real control protocol, TLS 1.3, lz4 and xchunk framing over
 * loopback. The source's link to the destination goes through a TCP
 * proxy the test can cut. Covered:
 *
 *   - a live and a cold migration, there and back: the destination's
 *     libxl restore gets the byte-exact stream xc_domain_save wrote, the
 *     guest runs there and is gone here;
 *   - the hand-over held at READY (source suspended, destination restored
 *     and paused: none runs) and at RUNNING (the source copy still
 *     suspended until then, destroyed after);
 *   - the destination's libxl restore failing at once or at the end: the
 *     source resumes its guest, nothing is left on the destination;
 *   - xc_domain_save failing mid-stream: resumed here, the domain libxl
 *     built there destroyed;
 *   - the link cut mid-stream (before READY), after READY (before
 *     UNPAUSE) and after UNPAUSE: exactly one running copy each time;
 *   - `pvmig migrate` cancelled during pre-copy: the guest runs on here,
 *     nothing left there;
 *   - the guest not suspending within --suspend-timeout: it keeps running
 *     here (its suspend request taken back), nothing left there;
 *   - auto-converge: the scheduler cap set round by round, kept through
 *     the last live round, lifted for the suspend; --bandwidth;
 *   - hostile or truncated chunks from a hand-made source: refused with a
 *     message saying what was wrong, nothing left on the destination,
 *     which serves the next migration.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "hv/xen/xen.h"
#include "migrate/internal.h"
#include "transport/transport.h"
#include "fakexen.h"

#include <xenguest.h> /* after xenctrl.h (fakexen.h), which it needs */

#define SRC 0u
#define DST 1u
#define GUEST_DOMID 5u
#define WAIT_MS 20000u

static char dir[] = "/tmp/pvm-xmig-XXXXXX";
static struct pvm_service *svc[FX_HOSTS];
static pthread_t svc_thread[FX_HOSTS];

/* ---- a TCP proxy between the source and the destination's listener ----- */

#define PROXY_CONNS 32

static struct {
	int lfd;
	uint16_t port, to_port;
	pthread_t thread;
	pthread_mutex_t lock;
	bool stop, cut;
	int fds[PROXY_CONNS][2];
	pthread_t conn_thread[PROXY_CONNS];
	unsigned nconn;
} px = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *proxy_conn(void *arg)
{
	int *fd = arg; /* fd[0] the source's side, fd[1] the destination's */
	char buf[16384];

	for (;;) {
		struct pollfd pf[2] = { { fd[0], POLLIN, 0 }, { fd[1], POLLIN, 0 } };

		if (poll(pf, 2, 200) < 0)
			break;
		pthread_mutex_lock(&px.lock);
		if (px.stop || px.cut) {
			pthread_mutex_unlock(&px.lock);
			break;
		}
		pthread_mutex_unlock(&px.lock);
		for (int i = 0; i < 2; i++) {
			ssize_t n;

			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(fd[i], buf, sizeof(buf));
			if (n <= 0) {
				shutdown(fd[1 - i], SHUT_WR);
				goto out;
			}
			for (ssize_t off = 0; off < n;) {
				ssize_t w = send(fd[1 - i], buf + off,
						 (size_t)(n - off), MSG_NOSIGNAL);

				if (w <= 0)
					goto out;
				off += w;
			}
		}
	}
out:
	shutdown(fd[0], SHUT_RDWR);
	shutdown(fd[1], SHUT_RDWR);
	return NULL;
}

static void *proxy_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd pf = { px.lfd, POLLIN, 0 };
		struct sockaddr_in to = { .sin_family = AF_INET };
		int a, b;

		pthread_mutex_lock(&px.lock);
		if (px.stop) {
			pthread_mutex_unlock(&px.lock);
			return NULL;
		}
		pthread_mutex_unlock(&px.lock);
		if (poll(&pf, 1, 100) <= 0)
			continue;
		a = accept4(px.lfd, NULL, NULL, SOCK_CLOEXEC);
		if (a < 0)
			continue;
		pthread_mutex_lock(&px.lock);
		if (px.cut || px.nconn == PROXY_CONNS) {
			/* the link is down: nothing gets through */
			pthread_mutex_unlock(&px.lock);
			close(a);
			continue;
		}
		pthread_mutex_unlock(&px.lock);
		b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		to.sin_port = htons(px.to_port);
		to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (b < 0 || connect(b, (struct sockaddr *)&to, sizeof(to))) {
			close(a);
			if (b >= 0)
				close(b);
			continue;
		}
		pthread_mutex_lock(&px.lock);
		px.fds[px.nconn][0] = a;
		px.fds[px.nconn][1] = b;
		pthread_create(&px.conn_thread[px.nconn], NULL, proxy_conn,
			       px.fds[px.nconn]);
		px.nconn++;
		pthread_mutex_unlock(&px.lock);
	}
}

static void proxy_start(uint16_t to_port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	px.stop = px.cut = false;
	px.nconn = 0;
	px.to_port = to_port;
	px.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(px.lfd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(px.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(px.lfd, 16), 0);
	assert_int_equal(getsockname(px.lfd, (struct sockaddr *)&sa, &len), 0);
	px.port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&px.thread, NULL, proxy_main, NULL), 0);
}

/* The link goes down: every connection through it is cut at once, new
 * ones are refused. */
static void proxy_cut(void *ctx)
{
	(void)ctx;
	pthread_mutex_lock(&px.lock);
	px.cut = true;
	for (unsigned i = 0; i < px.nconn; i++) {
		shutdown(px.fds[i][0], SHUT_RDWR);
		shutdown(px.fds[i][1], SHUT_RDWR);
	}
	pthread_mutex_unlock(&px.lock);
}

static void proxy_stop(void)
{
	pthread_mutex_lock(&px.lock);
	px.stop = true;
	pthread_mutex_unlock(&px.lock);
	pthread_join(px.thread, NULL);
	for (unsigned i = 0; i < px.nconn; i++) {
		pthread_join(px.conn_thread[i], NULL);
		close(px.fds[i][0]);
		close(px.fds[i][1]);
	}
	close(px.lfd);
}

/* ---- the two hosts --------------------------------------------------------- */

static void *svc_main(void *arg)
{
	pvm_service_run(arg);
	return NULL;
}

static uint16_t listen_port(unsigned h)
{
	return pvm_listener_port(svc[h]->listener);
}

static int setup(void **state)
{
	static const char *const names[FX_HOSTS] = { "hosta", "hostb" };

	(void)state;
	for (unsigned h = FX_HOSTS; h-- > 0;) {
		fx_use_host(h);
		fx_reset();
	}
	for (unsigned h = 0; h < FX_HOSTS; h++) {
		struct pvm_service_config c;

		pvm_service_config_defaults(&c);
		snprintf(c.backend, sizeof(c.backend), "xen");
		snprintf(c.state_dir, sizeof(c.state_dir), "%s/%s", dir, names[h]);
		snprintf(c.listen, sizeof(c.listen), "127.0.0.1");
		c.port = 0;
		snprintf(c.tls_ca, sizeof(c.tls_ca), "%s/ca.pem", dir);
		snprintf(c.tls_cert, sizeof(c.tls_cert), "%s/%s.pem", dir, names[h]);
		snprintf(c.tls_key, sizeof(c.tls_key), "%s/%s.key", dir, names[h]);
		c.timeout_ms = 5000;
		/* Both hosts' certificates, by name (allow-peers). */
		snprintf(c.allow[0].name, sizeof(c.allow[0].name), "%s",
			 names[1 - h]);
		c.allow[0].rights = PVM_RIGHTS_DEFAULT;
		c.nr_allow = 1;
		c.allow_peers_set = true;
		fx_use_host(h);
		if (pvm_service_create(&c, &svc[h]) ||
		    pthread_create(&svc_thread[h], NULL, svc_main, svc[h]))
			return -1;
	}
	fx_use_host(SRC);
	proxy_start(listen_port(DST));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (unsigned h = 0; h < FX_HOSTS; h++) {
		pvm_service_stop(svc[h]);
		pthread_join(svc_thread[h], NULL);
		pvm_service_destroy(svc[h]);
		svc[h] = NULL;
	}
	proxy_stop();
	unsetenv("PVMIG_FAULT");
	unsetenv("PVMIG_HOLD");
	for (unsigned h = 0; h < FX_HOSTS; h++) {
		fx_use_host(h);
		assert_int_equal(fx.handles_open, 0);
		assert_int_equal(fx.live_maps, 0);
		assert_int_equal(fx.live_hbufs, 0);
	}
	fx_use_host(SRC);
	return 0;
}

/* A running x86 PV guest "web" on the source host. */
static struct fx_dom *guest(void)
{
	struct fx_dom *d;

	fx_use_host(SRC);
	d = fx_add_dom(GUEST_DOMID, 64, 1, false);
	assert_non_null(d);
	d->pause_count = 0;
	d->honours_suspend = true;
	snprintf(d->name, sizeof(d->name), "web");
	return d;
}

/* Copies of @name on host @h: *running counts those neither paused,
 * suspended nor dying. The thread's host is the source's afterwards. */
static unsigned copies(unsigned h, const char *name, unsigned *running)
{
	unsigned n = 0, r = 0;

	fx_use_host(h);
	for (size_t i = 0; i < FX_MAX_DOMS; i++) {
		const struct fx_dom *d = &fx.doms[i];

		if (!d->exists || strcmp(d->name, name))
			continue;
		n++;
		r += !d->shutdown && !d->dying && d->pause_count == 0;
	}
	fx_use_host(SRC);
	if (running)
		*running = r;
	return n;
}

/* Waits (bounded) until host @h's service has no migration running. */
static void wait_idle(unsigned h)
{
	for (unsigned ms = 0; ms < WAIT_MS; ms += 10) {
		unsigned busy;

		pthread_mutex_lock(&svc[h]->lock);
		busy = svc[h]->incoming + svc[h]->outgoing;
		pthread_mutex_unlock(&svc[h]->lock);
		if (!busy)
			return;
		usleep(10000);
	}
	fail_msg("host %u still has a migration running", h);
}

/* The control connection of the migration running (as pvmig's). */
static int mig_fd = -1;

/*
 * `pvmig migrate web 127.0.0.1:PORT [key=value...]` asked of host @from's
 * service; the RESULT in @res. Returns its status (0 or an errno).
 */
static int migrate(unsigned from, uint16_t port, struct pvm_kv *res, ...)
{
	struct pvm_kv req;
	enum pvm_ctl_kind kind;
	uint64_t status = 1;
	const char *k;
	va_list ap;
	int fd;

	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "migrate");
	pvm_kv_add(&req, "domain", "web");
	pvm_kv_add(&req, "target", "127.0.0.1:%u", port);
	va_start(ap, res);
	while ((k = va_arg(ap, const char *)))
		pvm_kv_add(&req, k, "%s", va_arg(ap, const char *));
	va_end(ap);
	assert_int_equal(pvm_ctl_connect(pvm_service_control_path(svc[from]),
					 &fd), 0);
	mig_fd = fd;
	assert_int_equal(pvm_ctl_send(fd, PVM_CTL_REQUEST, &req), 0);
	pvm_kv_dispose(&req);
	pvm_kv_init(res);
	do {
		assert_int_equal(pvm_ctl_recv(fd, 60000, &kind, res), 0);
	} while (kind != PVM_CTL_RESULT);
	mig_fd = -1;
	close(fd);
	assert_int_equal(pvm_kv_get_u64(res, "status", &status), 0);
	wait_idle(SRC);
	wait_idle(DST);
	return (int)status;
}

static void assert_error_has(const struct pvm_kv *res, const char *what)
{
	const char *e = pvm_kv_get(res, "error");

	if (!e || !strstr(e, what))
		fail_msg("error '%s' does not say '%s'", e ? e : "(none)", what);
}

/* The outcome: the guest runs on host @h only, once. */
static void assert_runs_only_on(unsigned h)
{
	unsigned r;

	assert_int_equal(copies(h, "web", &r), 1);
	assert_int_equal(r, 1);
	assert_int_equal(copies(1 - h, "web", NULL), 0);
}

/* ---- success ----------------------------------------------------------------- */

static void test_live_there_and_back(void **state)
{
	struct pvm_kv res;
	struct fx_dom *d = guest();
	uint32_t back;

	(void)state;
	fx.save_dirty[0] = 900;
	fx.save_dirty[1] = 400;
	fx.save_dirty[2] = 20;
	fx.save_dirty[3] = -1;
	assert_int_equal(migrate(SRC, px.port, &res, NULL), 0);
	assert_true(fx.save_flags & XCFLAGS_LIVE);
	assert_int_equal(fx.save_rounds, 3);
	/* the whole libxl stream: header, what xc_domain_save wrote, END */
	{
		char want[32];

		snprintf(want, sizeof(want), "%u", 24 + FX_SAVE_BYTES + 8);
		assert_string_equal(pvm_kv_get(&res, "stream_bytes"), want);
	}
	assert_string_equal(pvm_kv_get(&res, "rounds"), "3");
	pvm_kv_dispose(&res);
	assert_int_equal(fx_calls("libxl_domain_resume"), 0);
	(void)d; /* destroyed with the source copy */
	assert_runs_only_on(DST);
	fx_use_host(DST);
	assert_int_equal(fx.restored_len, 24 + FX_SAVE_BYTES + 8);
	assert_int_equal(fx.restores_failed, 0);
	assert_memory_equal(fx.restored + 24, "FXSAVE 5\n", 9);

	/* and back, cold, straight to host 0's listener */
	for (back = 1; !fx_dom(back) || strcmp(fx_dom(back)->name, "web"); back++)
		;
	fx_dom(back)->honours_suspend = true;
	fx_use_host(SRC);
	assert_int_equal(migrate(DST, listen_port(SRC), &res, "cold", "1",
				 NULL), 0);
	pvm_kv_dispose(&res);
	fx_use_host(DST);
	assert_false(fx.save_flags & XCFLAGS_LIVE);
	fx_use_host(SRC);
	assert_runs_only_on(SRC);
	/* the stream of the domain host 1 gave it */
	{
		char want[16];

		snprintf(want, sizeof(want), "FXSAVE %u\n", back);
		assert_memory_equal(fx.restored + 24, want, strlen(want));
	}
}

/* ---- the hand-over, step by step ----------------------------------------------- */

struct held {
	struct pvm_kv res;
	int rc;
};

static void *migrate_main(void *arg)
{
	struct held *h = arg;

	h->rc = migrate(SRC, px.port, &h->res, NULL);
	return NULL;
}

static void *migrate_back_main(void *arg)
{
	struct held *h = arg;

	h->rc = migrate(DST, listen_port(SRC), &h->res, NULL);
	return NULL;
}

/* Waits (bounded) for PVMIG_HOLD's FILE.held. */
static void wait_held(const char *file)
{
	char held[400];

	snprintf(held, sizeof(held), "%s.held", file);
	for (unsigned ms = 0; ms < WAIT_MS && access(held, F_OK); ms += 10)
		usleep(10000);
	assert_int_equal(access(held, F_OK), 0);
}

/* Host @h's copy of "web": its state, or NULL. */
static struct fx_dom *copy_on(unsigned h)
{
	fx_use_host(h);
	for (size_t i = 0; i < FX_MAX_DOMS; i++)
		if (fx.doms[i].exists && !strcmp(fx.doms[i].name, "web"))
			return &fx.doms[i];
	return NULL;
}

static void test_handover_keeps_one_running(void **state)
{
	struct held h;
	struct fx_dom *src = guest(), *dst;
	char file[300], hold[320];
	pthread_t t;
	int fd;

	(void)state;
	/* READY in, UNPAUSE not sent: the source copy is suspended, the
	 * destination's restored and paused: none runs. */
	snprintf(file, sizeof(file), "%s/go-ready", dir);
	snprintf(hold, sizeof(hold), "src-after-ready:%s", file);
	setenv("PVMIG_HOLD", hold, 1);
	assert_int_equal(pthread_create(&t, NULL, migrate_main, &h), 0);
	wait_held(file);
	assert_true(src->exists && src->shutdown &&
		    src->shutdown_reason == SHUTDOWN_suspend);
	dst = copy_on(DST);
	assert_non_null(dst);
	assert_int_equal(dst->pause_count, 1);
	assert_int_equal(copies(SRC, "web", NULL) + copies(DST, "web", NULL), 2);
	fd = open(file, O_WRONLY | O_CREAT, 0600);
	close(fd);
	pthread_join(t, NULL);
	unsetenv("PVMIG_HOLD");
	assert_int_equal(h.rc, 0);
	pvm_kv_dispose(&h.res);
	assert_runs_only_on(DST);

	/* and back: RUNNING in, the source copy not yet destroyed: it is
	 * still suspended while the other runs */
	dst = copy_on(DST);
	dst->honours_suspend = true;
	fx_use_host(SRC);
	snprintf(file, sizeof(file), "%s/go-running", dir);
	snprintf(hold, sizeof(hold), "src-after-running:%s", file);
	setenv("PVMIG_HOLD", hold, 1);
	assert_int_equal(pthread_create(&t, NULL, migrate_back_main, &h), 0);
	wait_held(file);
	assert_true(dst->exists && dst->shutdown &&
		    dst->shutdown_reason == SHUTDOWN_suspend);
	src = copy_on(SRC);
	assert_non_null(src);
	assert_int_equal(src->pause_count, 0);
	assert_false(src->shutdown);
	fx_use_host(SRC);
	fd = open(file, O_WRONLY | O_CREAT, 0600);
	close(fd);
	pthread_join(t, NULL);
	unsetenv("PVMIG_HOLD");
	assert_int_equal(h.rc, 0);
	pvm_kv_dispose(&h.res);
	assert_runs_only_on(SRC);
}

/* ---- the destination's libxl restore fails ----------------------------------- */

static void test_restore_fails_at_once(void **state)
{
	struct pvm_kv res;
	struct fx_dom *d = guest();

	(void)state;
	fx_fail("libxl_domain_create_restore", 1, EIO);
	assert_int_not_equal(migrate(SRC, px.port, &res, NULL), 0);
	assert_error_has(&res, "libxl");
	assert_error_has(&res, "keeps running on this host");
	pvm_kv_dispose(&res);
	/* suspended for the save, resumed: runs here only */
	assert_int_equal(fx_calls("libxl_domain_resume"), 1);
	assert_false(d->shutdown);
	assert_runs_only_on(SRC);
}

static void test_restore_fails_at_the_end(void **state)
{
	struct pvm_kv res;
	struct fx_dom *d = guest();

	(void)state;
	fx_use_host(DST);
	fx.restore_fail_late = true;
	fx_use_host(SRC);
	assert_int_not_equal(migrate(SRC, px.port, &res, NULL), 0);
	assert_error_has(&res, "libxl could not restore it");
	pvm_kv_dispose(&res);
	assert_false(d->shutdown);
	assert_int_equal(fx_calls("libxl_domain_resume"), 1);
	assert_runs_only_on(SRC);
	fx_use_host(DST);
	assert_int_equal(fx.restores_failed, 1); /* built, then destroyed */
	fx_use_host(SRC);
}

/* ---- the source's xc_domain_save fails mid-stream --------------------------- */

static void test_save_fails_midstream(void **state)
{
	struct pvm_kv res;
	struct fx_dom *d = guest();

	(void)state;
	fx.save_fail_at = FX_SAVE_BYTES * 2 / 3; /* past the first chunk */
	assert_int_not_equal(migrate(SRC, px.port, &res, NULL), 0);
	assert_error_has(&res, "libxenguest could not send it");
	pvm_kv_dispose(&res);
	assert_false(d->shutdown);
	assert_int_equal(fx_calls("libxl_domain_resume"), 1);
	assert_runs_only_on(SRC);
	fx_use_host(DST);
	/* libxl had built the domain from the config chunk; it is gone */
	assert_int_equal(fx.restores_failed, 1);
	assert_true(fx.restored_len <= 24 + FX_SAVE_BYTES * 2 / 3);
	fx_use_host(SRC);
}

/* ---- the link cut --------------------------------------------------------------- */

/* xc_domain_save's midway hook: once the destination's libxl is reading
 * the stream (bounded wait), the link goes down. */
static void cut_while_restoring(void *ctx)
{
	unsigned h = fx_host_index();

	(void)ctx;
	fx_use_host(DST);
	for (unsigned ms = 0; ms < WAIT_MS && !fx.restored_len; ms += 5)
		usleep(5000);
	fx_use_host(h);
	proxy_cut(NULL);
}

static void test_cut_midstream(void **state)
{
	struct pvm_kv res;
	struct fx_dom *d = guest();

	(void)state;
	fx.save_midway = cut_while_restoring;
	assert_int_not_equal(migrate(SRC, px.port, &res, NULL), 0);
	assert_error_has(&res, "lost the destination");
	pvm_kv_dispose(&res);
	assert_false(d->shutdown);
	assert_int_equal(fx_calls("libxl_domain_resume"), 1);
	assert_runs_only_on(SRC);
	fx_use_host(DST);
	assert_true(fx.restored_len > 0); /* it was under way there */
	assert_int_equal(fx.restores_failed, 1);
	fx_use_host(SRC);
}

static void test_cut_after_ready(void **state)
{
	struct pvm_kv res;
	struct fx_dom *d = guest();

	(void)state;
	/* READY came: the destination has restored it, paused; the link
	 * goes before UNPAUSE does. */
	setenv("PVMIG_FAULT", "src-cut-before-unpause", 1);
	assert_int_not_equal(migrate(SRC, px.port, &res, NULL), 0);
	pvm_kv_dispose(&res);
	assert_false(d->shutdown);
	assert_int_equal(fx_calls("libxl_domain_resume"), 1);
	assert_runs_only_on(SRC);
	fx_use_host(DST);
	assert_int_equal(fx.restores_failed, 0);  /* restored ... */
	assert_int_equal(fx_calls("libxl_domain_destroy"), 1); /* ... destroyed */
	fx_use_host(SRC);
}

static void test_cut_after_unpause(void **state)
{
	struct pvm_kv res;
	int rc;

	(void)state;
	guest();
	/* UNPAUSE went out, RUNNING cannot come back: the source asks (a new
	 * connection) and acts on the answer. */
	setenv("PVMIG_FAULT", "src-cut-after-unpause", 1);
	rc = migrate(SRC, px.port, &res, NULL);
	if (rc == 0) {
		assert_string_equal(pvm_kv_get(&res, "outcome"),
				    "confirmed by query after a lost hand-over");
		assert_runs_only_on(DST);
	} else {
		/* the query was answered before UNPAUSE was read there: it
		 * is refused, the source resumes */
		assert_error_has(&res, "the destination says 'aborted'");
		assert_runs_only_on(SRC);
	}
	pvm_kv_dispose(&res);
}

/* ---- cancelled during pre-copy ------------------------------------------------ */

/* Before the policy is asked about round 2: what pvmig migrate does on
 * Ctrl-C (any record from the CLI cancels). */
static void cancel_at_round_2(void *ctx, unsigned int iteration)
{
	struct pvm_kv kv;

	(void)ctx;
	if (iteration != 2)
		return;
	pvm_kv_init(&kv);
	assert_int_equal(pvm_ctl_send(mig_fd, PVM_CTL_CANCEL, &kv), 0);
}

static void test_cancel_during_precopy(void **state)
{
	struct pvm_kv res;
	struct fx_dom *d = guest();

	(void)state;
	for (unsigned i = 0; i < 8; i++)
		fx.save_dirty[i] = 5000; /* never converges by itself */
	fx.save_round = cancel_at_round_2;
	assert_int_equal(migrate(SRC, px.port, &res, NULL), ECANCELED);
	assert_error_has(&res, "cancelled");
	assert_error_has(&res, "keeps running on this host");
	pvm_kv_dispose(&res);
	assert_int_equal(fx.save_rounds, 2);
	/* never suspended: nothing to resume, it just runs on */
	assert_false(d->shutdown);
	assert_int_equal(fx_calls("libxl_domain_resume"), 0);
	assert_runs_only_on(SRC);
	fx_use_host(DST);
	assert_int_equal(fx.restores_failed, 1);
	fx_use_host(SRC);
}

/* ---- the suspend times out ----------------------------------------------------- */

static void test_suspend_timeout(void **state)
{
	struct pvm_kv res;
	struct fx_dom *d = guest();

	(void)state;
	d->honours_suspend = false; /* never acknowledges control/shutdown */
	assert_int_not_equal(migrate(SRC, px.port, &res, "suspend_timeout_ms",
				     "200", NULL), 0);
	assert_error_has(&res, "did not suspend within 200 ms");
	assert_error_has(&res, "keeps running on this host");
	pvm_kv_dispose(&res);
	assert_false(d->shutdown);
	assert_string_equal(d->control_shutdown, ""); /* request taken back */
	assert_int_equal(fx_calls("libxl_domain_resume"), 0);
	assert_runs_only_on(SRC);
	assert_int_equal(copies(DST, "web", NULL), 0);
}

/* ---- auto-converge and --bandwidth ----------------------------------------------- */

static uint16_t cap_suspended = UINT16_MAX;

/* xc_domain_save's midway hook (after the suspend): the guest's cap. */
static void read_cap(void *ctx)
{
	unsigned h = fx_host_index();

	(void)ctx;
	fx_use_host(SRC);
	cap_suspended = fx_dom(GUEST_DOMID)->cap;
	fx_use_host(h);
}

/*
 * A guest dirtying 900 pages a round, then nothing: two high rounds
 * throttle it to 20% (credit2 cap 80 of its one vCPU), each further one
 * 10% more; the cap stays while libxenguest sends the last dirty set live
 * after the STOP and is lifted for the suspend. On real Xen (nested) the
 * rounds measured 0-73 ms, libxenguest's call between a send and the
 * bitmap read taken for a round, and throttle_max_pct said 0.
 */
static void test_throttle(void **state)
{
	struct pvm_kv res;

	(void)state;
	guest();
	for (unsigned i = 0; i < 5; i++)
		fx.save_dirty[i] = 900;
	fx.save_dirty[5] = 0; /* nothing left dirty: STOP */
	fx.save_dirty[6] = -1;
	fx.save_midway = read_cap;
	cap_suspended = UINT16_MAX;
	assert_int_equal(migrate(SRC, px.port, &res, "no_converge", "throttle",
				 NULL), 0);
	assert_string_equal(pvm_kv_get(&res, "converged"), "yes");
	assert_string_equal(pvm_kv_get(&res, "throttle_max_pct"), "50");
	assert_string_equal(pvm_kv_get(&res, "throttle_per_round"),
			    "0,0,20,30,40,50");
	assert_string_equal(pvm_kv_get(&res, "rounds"), "6");
	pvm_kv_dispose(&res);
	assert_int_equal(fx.save_last_cap, 50); /* throttled to the end */
	assert_int_equal(cap_suspended, 0);      /* lifted for the suspend */
	assert_int_equal(fx_calls("xc_sched_credit2_domain_set"), 5);
	assert_runs_only_on(DST);
}

/* --bandwidth holds on Xen's stream too: 2.5 MiB, uncompressed, at
 * 1 MiB/s cannot be on the wire in under 2 s (on loopback it takes a
 * fraction of that without the limit). */
static void test_bandwidth(void **state)
{
	struct pvm_kv res;
	uint64_t wire = 0;
	double ms;

	(void)state;
	guest();
	fx.save_dirty[0] = -1;
	assert_int_equal(migrate(SRC, px.port, &res, "bandwidth_mib", "1",
				 "no_compress", "1", NULL), 0);
	assert_int_equal(pvm_kv_get_u64(&res, "wire_bytes", &wire), 0);
	ms = strtod(pvm_kv_get(&res, "total_ms"), NULL);
	assert_true(wire >= FX_SAVE_BYTES);
	if (ms < 1000.0 * (double)(wire - (1u << 20)) / (1u << 20))
		fail_msg("%llu bytes went out in %.0f ms at --bandwidth 1",
			 (unsigned long long)wire, ms);
	pvm_kv_dispose(&res);
	assert_runs_only_on(DST);
}

/* ---- hostile chunks ---------------------------------------------------------------- */

/* A hand-made source: its channel to the destination's listener. */
static struct pvm_channel *raw_connect(void)
{
	char ca[300], cert[300], key[300];
	struct pvm_tls_files f = { ca, cert, key, NULL };
	struct pvm_tls_ctx *tls = NULL;
	struct pvm_channel_opts o;
	struct pvm_channel *ch = NULL;

	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/hosta.pem", dir);
	snprintf(key, sizeof(key), "%s/hosta.key", dir);
	assert_int_equal(pvm_tls_ctx_new(&f, &tls), 0);
	pvm_channel_opts_defaults(&o);
	o.timeout_ms = 5000;
	o.compress = true;
	assert_int_equal(pvm_transport_connect("127.0.0.1", listen_port(DST),
					       tls, &o, &ch), 0);
	pvm_tls_ctx_free(tls); /* the channel keeps what it needs */
	return ch;
}

/* A message as wire.c frames it: header with the type, key=value record. */
static int raw_send(struct pvm_channel *ch, char type, const struct pvm_kv *kv)
{
	struct pvm_buf b;
	int rc;

	pvm_buf_init(&b, 256);
	rc = mig_msg_encode_kv(type, kv, &b);
	if (!rc)
		rc = pvm_channel_send_msg(ch, b.data, b.len);
	pvm_buf_dispose(&b);
	return rc;
}

static int raw_recv(struct pvm_channel *ch, struct pvm_kv *kv)
{
	struct mig_msg_in m;
	char why[256];
	void *buf;
	size_t len;
	int type, rc;

	pvm_kv_dispose(kv);
	rc = pvm_channel_recv_msg(ch, &buf, &len);
	if (rc)
		return rc;
	mig_msg_init(&m);
	type = mig_msg_decode(buf, len, &m, why, sizeof(why));
	if (type < 0)
		fail_msg("the destination sent %s", why);
	for (size_t i = 0; i < m.kv.n; i++)
		pvm_kv_add(kv, m.kv.key[i], "%s", m.kv.val[i]);
	mig_msg_dispose(&m);
	free(buf);
	return type;
}

static void raw_send_bytes(struct pvm_channel *ch, char type, uint64_t k,
			   const void *p, size_t len, const char *bytes)
{
	struct pvm_kv kv;

	assert_int_equal(pvm_xchunk_send_pages(ch, k, p, len), 0);
	pvm_kv_init(&kv);
	if (bytes)
		pvm_kv_add(&kv, "bytes", "%s", bytes);
	else
		pvm_kv_add(&kv, "bytes", "%zu", len);
	assert_int_equal(raw_send(ch, type, &kv), 0);
	pvm_kv_dispose(&kv);
}

/* HELLO (xen=1) and the destination's ACCEPT. */
static struct pvm_channel *raw_hello(void)
{
	static unsigned serial;
	struct pvm_channel *ch = raw_connect();
	struct dom_config dc = { 0 };
	struct pvm_kv kv;

	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "id", "%032x", ++serial);
	pvm_kv_add(&kv, "name", "web");
	pvm_kv_add(&kv, "nr_pages", "64");
	pvm_kv_add(&kv, "vcpus", "1");
	dom_config_to_kv(&dc, &kv);
	pvm_kv_add(&kv, "xen", "1");
	assert_int_equal(raw_send(ch, 'H', &kv), 0);
	assert_int_equal(raw_recv(ch, &kv), 'A');
	pvm_kv_dispose(&kv);
	return ch;
}

static const char config_json[] =
	"{\"c_info\":{\"name\":\"web\"},\"b_info\":{\"max_memkb\":256}}";

/* Cuts a channel whose answer has not come within WAIT_MS (a destination
 * that waits for more instead of refusing), so that the test fails
 * instead of hanging. */
struct watchdog {
	struct pvm_channel *ch;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool answered;
	pthread_t thread;
};

static void *watchdog_main(void *arg)
{
	struct watchdog *w = arg;
	struct timespec until;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&w->lock);
	while (!w->answered && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&w->cond, &w->lock, &until);
	if (!w->answered)
		pvm_channel_shutdown(w->ch);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* The destination's answer: ABORT, whose error says @what. */
static void expect_abort(struct pvm_channel *ch, const char *what)
{
	struct watchdog w = { .ch = ch, .lock = PTHREAD_MUTEX_INITIALIZER,
			      .cond = PTHREAD_COND_INITIALIZER };
	struct pvm_kv kv;
	const char *e;
	int type;

	pvm_kv_init(&kv);
	assert_int_equal(pthread_create(&w.thread, NULL, watchdog_main, &w), 0);
	type = raw_recv(ch, &kv);
	pthread_mutex_lock(&w.lock);
	w.answered = true;
	pthread_cond_signal(&w.cond);
	pthread_mutex_unlock(&w.lock);
	pthread_join(w.thread, NULL);
	assert_int_equal(type, 'X');
	e = pvm_kv_get(&kv, "error");
	if (!e || !strstr(e, what))
		fail_msg("ABORT '%s' does not say '%s'", e ? e : "(none)", what);
	pvm_kv_dispose(&kv);
	pvm_channel_close(ch);
	wait_idle(DST);
	assert_int_equal(copies(DST, "web", NULL), 0);
}

static void test_hostile_chunks(void **state)
{
	static uint8_t page[2 * 4096];
	struct pvm_channel *ch;

	(void)state;
	memset(page, 0xa5, sizeof(page));
	/* config chunk: a NUL inside, and no bytes at all */
	ch = raw_hello();
	raw_send_bytes(ch, 'c', 0, "{\0}", 3, NULL);
	expect_abort(ch, "config (chunk 0, 3 bytes) is not text");
	ch = raw_hello();
	raw_send_bytes(ch, 'c', 0, "", 0, NULL);
	expect_abort(ch, "config (chunk 0, 0 bytes) is empty");
	/* a chunk claiming more than a chunk holds */
	ch = raw_hello();
	raw_send_bytes(ch, 'c', 0, config_json, strlen(config_json), NULL);
	raw_send_bytes(ch, 'b', 1, page, 4096, "99999999999999");
	expect_abort(ch, "chunk 1 of the stream claims 99999999999999 bytes, a chunk holds at most");
	/* a length that does not match the pages that came */
	ch = raw_hello();
	raw_send_bytes(ch, 'c', 0, config_json, strlen(config_json), NULL);
	raw_send_bytes(ch, 'b', 1, page, sizeof(page), "1");
	expect_abort(ch, "chunk 1 of the stream claims 1 bytes, which are not the pages");
	/* no length */
	ch = raw_hello();
	raw_send_bytes(ch, 'c', 0, config_json, strlen(config_json), NULL);
	raw_send_bytes(ch, 'b', 1, page, 4096, "many");
	expect_abort(ch, "chunk 1 of the stream has no valid length");
	/* a STATE message (not a key=value record), and garbage */
	ch = raw_hello();
	raw_send_bytes(ch, 'c', 0, config_json, strlen(config_json), NULL);
	{
		static const uint8_t st[] = { MIG_STATE, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3 };

		assert_int_equal(pvm_channel_send_msg(ch, st, sizeof(st)), 0);
	}
	expect_abort(ch, "a STATE message has no place");
	ch = raw_hello();
	raw_send_bytes(ch, 'c', 0, config_json, strlen(config_json), NULL);
	assert_int_equal(pvm_channel_send_msg(ch, "bytes", 5), 0);
	expect_abort(ch, "a malformed message");
	ch = raw_hello();
	assert_int_equal(pvm_channel_send_msg(ch, "c\377", 2), 0);
	expect_abort(ch, "a malformed message");
	/* a header whose length disagrees, a body that is no record */
	ch = raw_hello();
	{
		static const uint8_t longer[] = { 'c', 0, 0, 0, 9, 0, 0, 0, 'a', 0 };

		assert_int_equal(pvm_channel_send_msg(ch, longer, sizeof(longer)), 0);
	}
	expect_abort(ch, "XCONFIG says 9 body bytes, 2 came");
	ch = raw_hello();
	{
		static const uint8_t norec[] = { 'c', 0, 0, 0, 1, 0, 0, 0, 0xff };

		assert_int_equal(pvm_channel_send_msg(ch, norec, sizeof(norec)), 0);
	}
	expect_abort(ch, "XCONFIG is not a key=value record");
	/* out of order: UNPAUSE before READY, a second HELLO */
	ch = raw_hello();
	{
		struct pvm_kv kv;

		pvm_kv_init(&kv);
		assert_int_equal(raw_send(ch, 'U', &kv), 0);
	}
	expect_abort(ch, "a UNPAUSE message has no place in state XSTREAM");
	ch = raw_hello();
	raw_send_bytes(ch, 'c', 0, config_json, strlen(config_json), NULL);
	{
		struct pvm_kv kv;

		pvm_kv_init(&kv);
		pvm_kv_add(&kv, "id", "%032x", 7);
		assert_int_equal(raw_send(ch, 'H', &kv), 0);
		pvm_kv_dispose(&kv);
	}
	expect_abort(ch, "a HELLO message has no place in state XRESTORE");
	/* a message that has no place in the stream */
	ch = raw_hello();
	raw_send_bytes(ch, 'c', 0, config_json, strlen(config_json), NULL);
	raw_send_bytes(ch, 'E', 1, page, 4096, NULL);
	expect_abort(ch, "'E'");
	/* truncated: END after part of a stream: libxl refuses it */
	ch = raw_hello();
	raw_send_bytes(ch, 'c', 0, config_json, strlen(config_json), NULL);
	raw_send_bytes(ch, 'b', 1, page, sizeof(page), NULL);
	{
		struct pvm_kv kv;

		pvm_kv_init(&kv);
		assert_int_equal(raw_send(ch, 'z', &kv), 0);
	}
	expect_abort(ch, "libxl could not restore it");
	/* a page slot past the staging area: the channel is refused */
	ch = raw_hello();
	{
		uint64_t pfn = 2 * PVM_XCHUNK_PAGES;
		const uint8_t *pp = page;
		struct pvm_kv kv;

		pvm_channel_send_pages(ch, &pfn, &pp, 1);
		pvm_kv_init(&kv);
		pvm_kv_add(&kv, "bytes", "4096"); /* sends the batch */
		raw_send(ch, 'c', &kv);
		assert_true(raw_recv(ch, &kv) < 0);
		pvm_kv_dispose(&kv);
	}
	pvm_channel_close(ch);
	wait_idle(DST);
	assert_int_equal(copies(DST, "web", NULL), 0);
	fx_use_host(DST);
	/* libxl built a domain for each stream that had a config, and
	 * destroyed it when the stream broke off */
	assert_int_equal(fx_calls("libxl_domain_create_restore"), 8);
	assert_int_equal(fx.restores_failed, 8);
	fx_use_host(SRC);

	/* and the destination still takes a real migration */
	guest();
	{
		struct pvm_kv res;

		assert_int_equal(migrate(SRC, px.port, &res, NULL), 0);
		pvm_kv_dispose(&res);
	}
	assert_runs_only_on(DST);
}

static int group_setup(void **state)
{
	static const char *const hosts[] = { "hosta,127.0.0.1", "hostb,127.0.0.1" };

	(void)state;
	if (!mkdtemp(dir))
		return -1;
	return pvm_tls_init_dir(dir, hosts, 2, 0, 30) ? -1 : 0;
}

static int group_teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_live_there_and_back),
		T(test_handover_keeps_one_running),
		T(test_restore_fails_at_once),
		T(test_restore_fails_at_the_end),
		T(test_save_fails_midstream),
		T(test_cut_midstream),
		T(test_cut_after_ready),
		T(test_cut_after_unpause),
		T(test_cancel_during_precopy),
		T(test_suspend_timeout),
		T(test_throttle),
		T(test_bandwidth),
		T(test_hostile_chunks),
#undef T
	};

	setvbuf(stdout, NULL, _IONBF, 0); /* cmocka's lines with the log's */
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
