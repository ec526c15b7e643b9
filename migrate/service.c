/*
 * The pvmigd service: the backend, the control socket and the command
 * handlers behind `pvmig`.
 *
 *   pvm_service_create()   lock STATE_DIR/pvmigd.lock, open the backend
 *                          (sim: start its xenstore server in a thread and
 *                          the simulated host), bind control.sock
 *   pvm_service_run()      poll loop: accept a control connection, read one
 *                          request (bounded wait), dispatch it through the
 *                          handler table, answer ITEM/PROGRESS records and
 *                          one RESULT
 *   pvm_service_stop()     writes to a self-pipe (async-signal-safe)
 *   pvm_service_destroy()  destroys the guests it started, stops xenstore
 *
 * Requests are handled one at a time in the thread that runs the loop. That
 * thread lives as long as the service, which the simulated host needs:
 * its guests die with the thread that created them.
 */
#include "migrate/internal.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "hv/hv.h"
#include "hv/sim/sim.h"
#include "hv/sim/xenstored/xenstored.h"
#include "pvquiesce/pvquiesce.h"
#include "transport/transport.h"

#define REQUEST_WAIT_MS 5000u

/* ---- handlers ------------------------------------------------------------ */

static int h_ping(struct req *r)
{
	struct pvm_kv kv;
	int rc;

	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "version", "%s", PVM_VERSION);
	pvm_kv_add(&kv, "backend", "%s", r->svc->hv->ops->name);
	pvm_kv_add(&kv, "state_dir", "%s", r->svc->cfg.state_dir);
	if (r->svc->listener) {
		/* The port actually bound (the config may say 0: any). */
		pvm_kv_add(&kv, "listen", "%s", r->svc->cfg.listen);
		pvm_kv_add(&kv, "port", "%u", pvm_listener_port(r->svc->listener));
	}
	rc = reply_result(r, 0, &kv, NULL);
	pvm_kv_dispose(&kv);
	return rc;
}

static int h_list(struct req *r)
{
	struct pvm_hv *hv = r->svc->hv;
	struct pvm_hv_dominfo *all = calloc(MIG_MAX_DOMAINS, sizeof(*all));
	size_t n = 0;
	int rc;

	if (!all)
		return reply_result(r, -ENOMEM, NULL, NULL);
	rc = hv->ops->domain_list(hv, all, MIG_MAX_DOMAINS, &n);
	if (rc && rc != -ENOSPC) {
		free(all);
		return reply_result(r, rc, NULL, "cannot list domains: %s",
				    strerror(-rc));
	}
	for (size_t i = 0; i < n && rc >= 0; i++) {
		struct pvm_kv kv;

		pvm_kv_init(&kv);
		add_dominfo(&kv, &all[i]);
		rc = pvm_ctl_send(r->fd, PVM_CTL_ITEM, &kv);
		pvm_kv_dispose(&kv);
	}
	free(all);
	return reply_result(r, 0, NULL, NULL);
}

static int h_create(struct req *r)
{
	struct pvm_hv *hv = r->svc->hv;
	const char *name = pvm_kv_get(r->args, "name");
	const char *mem = pvm_kv_get(r->args, "memory");
	struct pvm_hv_domain_config cfg = { .domid = PVM_HV_DOMID_ANY,
					    .nr_vcpus = 1 };
	struct pvm_hv_dominfo info;
	struct dom_config dc;
	uint64_t bytes = 256ull << 20, vcpus = 1;
	uint32_t domid;
	struct pvm_kv kv;
	int rc;

	if (!name || !*name || strlen(name) >= sizeof(info.name))
		return reply_result(r, -EINVAL, NULL,
				    "create needs --name NAME (1..63 characters)");
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
		      *p == '.'))
			return reply_result(r, -EINVAL, NULL,
					    "bad name '%s': use letters, digits, '-', '_', '.'",
					    name);
	if (name[0] >= '0' && name[0] <= '9')
		return reply_result(r, -EINVAL, NULL,
				    "a name may not start with a digit (domids do)");
	if (mem && parse_size(mem, &bytes))
		return reply_result(r, -EINVAL, NULL,
				    "bad --memory '%s': say e.g. 256M or 1G (whole pages)",
				    mem);
	rc = pvm_kv_get_u64(r->args, "vcpus", &vcpus);
	if (rc == -EINVAL || vcpus == 0 || vcpus > 64)
		return reply_result(r, -EINVAL, NULL, "bad --vcpus (1..64)");
	{
		/* Names are unique on a host, as with xl. */
		struct pvm_hv_dominfo *all = calloc(MIG_MAX_DOMAINS, sizeof(*all));
		size_t n = 0;

		if (!all)
			return reply_result(r, -ENOMEM, NULL, NULL);
		hv->ops->domain_list(hv, all, MIG_MAX_DOMAINS, &n);
		for (size_t i = 0; i < n; i++)
			if (!strcmp(all[i].name, name)) {
				uint32_t taken = all[i].domid;

				free(all);
				return reply_result(r, -EEXIST, NULL,
						    "a domain named '%s' exists (domid %u)",
						    name, taken);
			}
		free(all);
	}
	{
		struct pvm_kv dev;
		const char *why = NULL;

		/* The request says "workload"; the config calls it image. */
		pvm_kv_init(&dev);
		for (size_t i = 0; i < r->args->n; i++)
			pvm_kv_add(&dev, !strcmp(r->args->key[i], "workload") ?
					 "image" : r->args->key[i],
				   "%s", r->args->val[i]);
		rc = dom_config_from_kv(&dev, &dc, &why);
		pvm_kv_dispose(&dev);
		if (rc)
			return reply_result(r, rc, NULL, "bad device configuration: %s",
					    why);
	}
	/* The operator's own paths: links are followed once, here, and the
	 * backend opens the result with O_NOFOLLOW. */
	for (uint32_t i = 0; i < dc.nr_disks; i++) {
		char *real = realpath(dc.disks[i].path, NULL);

		if (real && strlen(real) < sizeof(dc.disks[i].path))
			snprintf(dc.disks[i].path, sizeof(dc.disks[i].path), "%s",
				 real);
		free(real);
	}
	dom_config_to_hv(&dc, &cfg);
	cfg.name = name;
	cfg.nr_pages = bytes / PVM_PAGE_SIZE;
	cfg.nr_vcpus = (uint32_t)vcpus;
	cfg.start_paused = pvm_kv_get(r->args, "paused") != NULL;
	rc = hv->ops->domain_create(hv, &cfg, &domid);
	if (rc)
		return reply_result(r, rc, NULL, "cannot create '%s': %s", name,
				    strerror(-rc));
	dc.domid = domid;
	svc_config_put(r->svc, &dc);
	pvm_info("created domain %u '%s' (%llu MiB, %u vCPUs)", domid, name,
		 (unsigned long long)(bytes >> 20), cfg.nr_vcpus);
	pvm_kv_init(&kv);
	if (hv->ops->domain_info(hv, domid, &info) == 0)
		add_dominfo(&kv, &info);
	else
		pvm_kv_add(&kv, "domid", "%u", domid);
	rc = reply_result(r, 0, &kv, NULL);
	pvm_kv_dispose(&kv);
	return rc;
}

static int h_status(struct req *r)
{
	struct pvm_hv_dominfo d;
	struct dom_config dc;
	struct pvm_kv kv;
	int rc;

	if (find_domain(r, &d))
		return 0;
	pvm_kv_init(&kv);
	add_dominfo(&kv, &d);
	if (svc_config_get(r->svc, d.domid, &dc) == 0) {
		if (dc.image[0])
			pvm_kv_add(&kv, "workload", "%s", dc.image);
		pvm_kv_add(&kv, "frontend", "%s",
			   dc.frontend_gen == PVM_HV_FRONTEND_LEGACY ? "legacy" : "modern");
		pvm_kv_add(&kv, "disks", "%u", dc.nr_disks);
		pvm_kv_add(&kv, "nics", "%u", dc.nr_nics);
	}
	if (pvm_sim_is_sim(r->svc->hv)) {
		struct pvm_sim_workload w;

		/* The guest's own I/O counters (data/workload in its xenstore
		 * area): what "nothing lost" is measured by. */
		if (pvm_sim_workload_read(r->svc->hv, d.domid, &w) == 0) {
			pvm_kv_add(&kv, "blk_writes", "%llu", (unsigned long long)w.blk_writes);
			pvm_kv_add(&kv, "blk_reads", "%llu", (unsigned long long)w.blk_reads);
			pvm_kv_add(&kv, "blk_verify_fail", "%llu", (unsigned long long)w.blk_verify_fail);
			pvm_kv_add(&kv, "blk_io_errors", "%llu", (unsigned long long)w.blk_io_errors);
			pvm_kv_add(&kv, "net_sent", "%llu", (unsigned long long)w.net_sent);
			pvm_kv_add(&kv, "net_received", "%llu", (unsigned long long)w.net_received);
			pvm_kv_add(&kv, "net_lost", "%llu", (unsigned long long)w.net_lost);
			pvm_kv_add(&kv, "net_dup", "%llu", (unsigned long long)w.net_dup);
			pvm_kv_add(&kv, "net_ooo", "%llu", (unsigned long long)w.net_ooo);
			pvm_kv_add(&kv, "fe_connects", "%llu", (unsigned long long)w.fe_connects);
		}
	}
	rc = reply_result(r, 0, &kv, NULL);
	pvm_kv_dispose(&kv);
	return rc;
}

/* destroy, pause, unpause: one domain, one ops slot. */
static int h_simple(struct req *r, int (*op)(struct pvm_hv *, uint32_t),
		    const char *verb)
{
	struct pvm_hv_dominfo d;
	int rc;

	if (find_domain(r, &d))
		return 0;
	rc = op(r->svc->hv, d.domid);
	if (rc)
		return reply_result(r, rc, NULL, "cannot %s '%s' (domid %u): %s",
				    verb, d.name, d.domid,
				    rc == -EINVAL && !strcmp(verb, "unpause") ?
					    "it is not paused" : strerror(-rc));
	pvm_info("%s domain %u '%s': done", verb, d.domid, d.name);
	return reply_result(r, 0, NULL, NULL);
}

static int h_destroy(struct req *r)
{
	struct pvm_hv_dominfo d;
	int rc;

	if (find_domain(r, &d))
		return 0;
	rc = r->svc->hv->ops->domain_destroy(r->svc->hv, d.domid);
	if (rc)
		return reply_result(r, rc, NULL, "cannot destroy '%s' (domid %u): %s",
				    d.name, d.domid, strerror(-rc));
	svc_config_drop(r->svc, d.domid);
	pvm_info("destroy domain %u '%s': done", d.domid, d.name);
	return reply_result(r, 0, NULL, NULL);
}

static int h_pause(struct req *r)
{
	return h_simple(r, r->svc->hv->ops->domain_pause, "pause");
}

static int h_unpause(struct req *r)
{
	struct pvm_pvq_device devs[PVM_PVQ_MAX_DEVICES];
	struct pvm_hv_dominfo d;
	struct dom_config dc;

	if (find_domain(r, &d))
		return 0;
	/* Left paused by a migration whose outcome was unknown: its PV
	 * backends were drained for the move; let them go on in place first
	 * (what a roll back does), or the guest runs with dead devices. */
	if (svc_config_get(r->svc, d.domid, &dc) == 0 && dc.devices_quiesced) {
		pvm_pvq_resume(r->svc->hv, d.domid, devs,
			       mig_config_devices(&dc, devs));
		svc_config_quiesced(r->svc, d.domid, false);
		pvm_info("domain %u '%s': PV devices resumed (left quiesced by an in-doubt migration)",
			 d.domid, d.name);
	}
	return h_simple(r, r->svc->hv->ops->domain_unpause, "unpause");
}

/* The command table: every control command pvmigd answers. Handlers of
 * other files are declared in migrate/internal.h. */
static const struct handler {
	const char *cmd;
	int (*fn)(struct req *r);
} handlers[] = {
	{ "ping", h_ping },	  { "list", h_list },
	{ "create", h_create },	  { "status", h_status },
	{ "destroy", h_destroy }, { "pause", h_pause },
	{ "unpause", h_unpause }, { "migrate", h_migrate },
	{ "migrations", h_migrations }, { "migrate_cancel", h_migrate_cancel },
	{ "save", h_save }, { "restore", h_restore }, { "checkpoint", h_checkpoint },
};

/* ---- the loop ------------------------------------------------------------ */

/* Answers one request; false when a job thread took over @fd. */
static bool serve_one(struct pvm_service *s, int fd)
{
	bool detached = false;
	struct pvm_kv args;
	enum pvm_ctl_kind kind;
	struct req r = { .svc = s, .fd = fd, .args = &args };
	const char *cmd;
	int rc;

	pvm_kv_init(&args);
	rc = pvm_ctl_recv(fd, REQUEST_WAIT_MS, &kind, &args);
	if (rc) {
		pvm_warn("control: dropped a client: %s",
			 rc == -EBADMSG ? "malformed request" : strerror(-rc));
		goto out;
	}
	cmd = pvm_kv_get(&args, "cmd");
	if (kind != PVM_CTL_REQUEST || !cmd) {
		reply_result(&r, -EPROTO, NULL, "expected a request with a cmd");
		goto out;
	}
	for (size_t i = 0; i < PVM_ARRAY_SIZE(handlers); i++) {
		if (!strcmp(handlers[i].cmd, cmd)) {
			if (handlers[i].fn(&r) == REQ_DETACHED)
				detached = true;
			goto out;
		}
	}
	reply_result(&r, -EOPNOTSUPP, NULL,
		     "this pvmigd does not know the command '%s'", cmd);
out:
	pvm_kv_dispose(&args);
	return !detached;
}

/* Runs the functions other threads queued for the main thread. */
static void run_main_calls(struct pvm_service *s)
{
	uint64_t v;
	ssize_t n = read(s->main_efd, &v, sizeof(v));

	(void)n;
	pthread_mutex_lock(&s->lock);
	while (s->calls) {
		struct main_call *c = s->calls;

		s->calls = c->next;
		pthread_mutex_unlock(&s->lock);
		c->rc = c->fn(c->arg);
		pthread_mutex_lock(&s->lock);
		c->done = true;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
}

int svc_on_main(struct pvm_service *s, int (*fn)(void *), void *arg)
{
	struct main_call c = { .fn = fn, .arg = arg };
	uint64_t one = 1;
	ssize_t n;

	if (pthread_equal(pthread_self(), s->main_thread))
		return fn(arg);
	pthread_mutex_lock(&s->lock);
	if (s->stopping) {
		pthread_mutex_unlock(&s->lock);
		return -ECANCELED;
	}
	c.next = s->calls;
	s->calls = &c;
	pthread_mutex_unlock(&s->lock);
	n = write(s->main_efd, &one, sizeof(one));
	(void)n;
	pthread_mutex_lock(&s->lock);
	while (!c.done)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return c.rc;
}

struct job_start {
	struct pvm_service *s;
	void *(*fn)(void *);
	void *arg;
};

static void *job_main(void *p)
{
	struct job_start js = *(struct job_start *)p;

	free(p);
	js.fn(js.arg);
	pthread_mutex_lock(&js.s->lock);
	js.s->jobs--;
	pthread_cond_broadcast(&js.s->cond);
	pthread_mutex_unlock(&js.s->lock);
	return NULL;
}

int svc_job_start(struct pvm_service *s, void *(*fn)(void *), void *arg)
{
	struct job_start *js = malloc(sizeof(*js));
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (!js)
		return -ENOMEM;
	*js = (struct job_start){ s, fn, arg };
	pthread_mutex_lock(&s->lock);
	s->jobs++;
	pthread_mutex_unlock(&s->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, job_main, js);
	pthread_attr_destroy(&attr);
	if (rc) {
		free(js);
		pthread_mutex_lock(&s->lock);
		s->jobs--;
		pthread_mutex_unlock(&s->lock);
		return -rc;
	}
	return 0;
}

bool svc_stopping(struct pvm_service *s)
{
	bool v;

	pthread_mutex_lock(&s->lock);
	v = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return v;
}

int pvm_service_run(struct pvm_service *s)
{
	s->main_thread = pthread_self();
	for (;;) {
		struct pollfd pf[3] = {
			{ .fd = s->ctl_fd, .events = POLLIN },
			{ .fd = s->stop_pipe[0], .events = POLLIN },
			{ .fd = s->main_efd, .events = POLLIN },
		};
		int fd;

		if (poll(pf, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pf[2].revents)
			run_main_calls(s);
		if (pf[1].revents)
			break;
		if (!(pf[0].revents & POLLIN))
			continue;
		fd = accept4(s->ctl_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (serve_one(s, fd))
			close(fd);
	}
	/* Jobs may still need the main thread (domain_create) while they
	 * wind down: keep serving their calls until the last one is gone. */
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_mutex_unlock(&s->lock);
	mig_listener_stop(s);
	for (;;) {
		struct pollfd pf = { .fd = s->main_efd, .events = POLLIN };
		unsigned jobs;

		pthread_mutex_lock(&s->lock);
		jobs = s->jobs;
		pthread_mutex_unlock(&s->lock);
		if (!jobs)
			break;
		if (poll(&pf, 1, 100) > 0)
			run_main_calls(s);
	}
	run_main_calls(s);
	return 0;
}

void pvm_service_stop(struct pvm_service *s)
{
	char c = 1;
	ssize_t n = write(s->stop_pipe[1], &c, 1);

	(void)n;
}

const char *pvm_service_control_path(const struct pvm_service *s)
{
	return s->ctl_path;
}

/* ---- set-up and tear-down -------------------------------------------------- */

static void *xs_main(void *arg)
{
	pvm_xenstored_run(arg);
	return NULL;
}

static int bind_control(struct pvm_service *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int rc;

	if (snprintf(s->ctl_path, sizeof(s->ctl_path), "%s/%s",
		     s->cfg.state_dir, PVM_CTL_SOCKET_NAME) >=
		    (int)sizeof(sa.sun_path)) {
		pvm_err("control socket path under %s is too long",
			s->cfg.state_dir);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, s->ctl_path);
	unlink(s->ctl_path); /* stale: we hold the state dir's lock */
	s->ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->ctl_fd < 0)
		return -errno;
	old = umask(0077);
	rc = bind(s->ctl_fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc == 0)
		chmod(s->ctl_path, 0600); /* as documented: the owner only */
	if (rc < 0 || listen(s->ctl_fd, 16) < 0) {
		rc = -errno;
		pvm_err("cannot bind the control socket %s: %s", s->ctl_path,
			strerror(errno));
		return rc;
	}
	return 0;
}

/*
 * Takes STATE_DIR/pvmigd.lock (flock, exclusive). pvm_service_destroy()
 * unlinks it while still holding it, so a pvmigd that opened the old file
 * just before could lock an inode no longer in the directory while a third
 * one locks the new file: after locking, check that the path still names
 * the inode we hold, else start again.
 */
static int lock_state_dir(struct pvm_service *s, char *path, size_t len)
{
	snprintf(path, len, "%s/pvmigd.lock", s->cfg.state_dir);
	for (unsigned tries = 0; tries < 10; tries++) {
		struct stat held, named;
		int rc;

		s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
			rc = s->lock_fd < 0 ? -errno : -EBUSY;
			if (rc == -EBUSY)
				pvm_err("another pvmigd already serves %s", s->cfg.state_dir);
			else
				pvm_err("cannot lock %s: %s", path, strerror(-rc));
			return rc;
		}
		if (fstat(s->lock_fd, &held) == 0 && stat(path, &named) == 0 &&
		    held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
			s->lock_held = true;
			return 0;
		}
		close(s->lock_fd); /* unlinked under us by a pvmigd that quit */
		s->lock_fd = -1;
	}
	pvm_err("cannot lock %s: it keeps being replaced", path);
	return -EBUSY;
}

int pvm_service_create(const struct pvm_service_config *c,
		       struct pvm_service **out)
{
	struct pvm_service *s;
	char path[400];
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *c;
	s->lock_fd = s->ctl_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->main_thread = pthread_self();
	s->main_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->stop_pipe[0] = s->stop_pipe[1] = -1;
	if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = -errno;
		goto out_free;
	}
	if (mkdir(c->state_dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		pvm_err("cannot create the state dir %s: %s", c->state_dir,
			strerror(errno));
		goto out_free;
	}
	rc = lock_state_dir(s, path, sizeof(path));
	if (rc)
		goto out_free;
	if (!strcmp(c->backend, "sim")) {
		struct pvm_xenstored_opts xo;
		struct pvm_sim_config sc = { 0 };

		sc.xenstored = NULL; /* set below, once the server exists */

		pvm_xenstored_opts_default(&xo);
		xo.state_dir = c->state_dir;
		rc = pvm_xenstored_create(&xo, &s->xs);
		if (rc) {
			pvm_err("cannot start the simulated host's xenstore in %s: %s",
				c->state_dir, strerror(-rc));
			goto out_free;
		}
		if (pthread_create(&s->xs_thread, NULL, xs_main, s->xs)) {
			rc = -EAGAIN;
			goto out_free;
		}
		s->xs_started = true;
		sc.xenstored = s->xs;
		rc = pvm_sim_host_create(&sc, &s->hv);
	} else {
		rc = pvm_hv_open(c->backend, &s->hv);
	}
	if (rc) {
		pvm_err("cannot open the %s backend: %s", c->backend,
			rc == -EOPNOTSUPP ? "not available (this pvmigd was built without it, or this host does not run it)" :
					    strerror(-rc));
		goto out_free;
	}
	rc = bind_control(s);
	if (rc)
		goto out_free;
	rc = mig_storage_roots_resolve(s);
	if (rc)
		goto out_free;
	rc = mig_listener_start(s);
	if (rc)
		goto out_free;
	*out = s;
	return 0;

out_free:
	pvm_service_destroy(s);
	return rc;
}

void pvm_service_destroy(struct pvm_service *s)
{
	if (!s)
		return;
	/* A service that never ran still has to stop its listener and wait
	 * for jobs (none can need the main thread then). */
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_mutex_unlock(&s->lock);
	mig_listener_stop(s);
	pthread_mutex_lock(&s->lock);
	while (s->jobs)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < PVM_ARRAY_SIZE(s->last_stats); i++)
		pvm_kv_dispose(&s->last_stats[i]);
	if (s->main_efd >= 0)
		close(s->main_efd);
	if (s->hv)
		s->hv->ops->close(s->hv); /* destroys the guests it started */
	if (s->xs_started) {
		pvm_xenstored_stop(s->xs);
		pthread_join(s->xs_thread, NULL);
	}
	pvm_xenstored_destroy(s->xs);
	if (s->ctl_fd >= 0) {
		close(s->ctl_fd);
		unlink(s->ctl_path);
	}
	if (s->lock_held) {
		/* Unlinked while still locked: see lock_state_dir(). */
		char path[400];

		snprintf(path, sizeof(path), "%s/pvmigd.lock", s->cfg.state_dir);
		unlink(path);
	}
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	if (s->stop_pipe[0] >= 0)
		close(s->stop_pipe[0]);
	if (s->stop_pipe[1] >= 0)
		close(s->stop_pipe[1]);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}
