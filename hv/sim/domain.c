/*
 * Simulated domains: a guest is a pvmig-simguest process whose memory is a
 * memfd. Creation (the handshake is drawn in guest_abi.h), destruction,
 * pause/unpause, foreign mappings and vCPU contexts.
 *
 * Pause is SIGSTOP of the guest process, confirmed by waitid(WSTOPPED),
 * which the kernel reports only once every thread of the group has
 * stopped; unpause is SIGCONT. Chosen over a cooperative gate because it
 * needs nothing from the guest (a guest that spins, hangs or misbehaves is
 * stopped all the same, as Xen's vcpu_pause is not negotiated) and it stops
 * threads wherever they are. The host's dirty scan keeps working: a stopped
 * process's page tables can still be walked and re-protected through
 * /proc/PID/pagemap.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hv/sim/internal.h"

#define SIM_MAX_PAGES (UINT64_C(64) << 18) /* 64 GiB */
#define READY_TIMEOUT_MS 30000

static const uint32_t vcpu_ctx_magic = 0x76637075u; /* "vcpu" */

/* ---- create ------------------------------------------------------------ */

static int pick_domid(struct sim_host *h, uint32_t want, uint32_t *out)
{
	struct sim_domain *d;

	if (want != PVM_HV_DOMID_ANY) {
		if (want == 0 || want > PVM_HV_DOMID_MAX)
			return -EINVAL;
		for (d = h->domains; d; d = d->next)
			if (d->domid == want)
				return -EEXIST;
		*out = want;
		return 0;
	}
	for (uint32_t id = 1; id <= PVM_HV_DOMID_MAX; id++) {
		for (d = h->domains; d; d = d->next)
			if (d->domid == id)
				break;
		if (!d) {
			*out = id;
			return 0;
		}
	}
	return -ENOSPC;
}

static void insert_sorted(struct sim_host *h, struct sim_domain *d)
{
	struct sim_domain **pp = &h->domains;

	while (*pp && (*pp)->domid < d->domid)
		pp = &(*pp)->next;
	d->next = *pp;
	*pp = d;
}

/* In the child between fork and exec: async-signal-safe calls only. */
static void exec_guest(const char *prog, char *const argv[], int ctl, int mem,
		       int xs)
{
	sigset_t none;
	int c, m, x = -1;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	c = fcntl(ctl, F_DUPFD, 10);
	m = fcntl(mem, F_DUPFD, 10);
	if (xs >= 0 && (x = fcntl(xs, F_DUPFD, 10)) < 0)
		_exit(127);
	if (c < 0 || m < 0 || dup2(c, PVM_SIMGUEST_CTL_FD) < 0 ||
	    dup2(m, PVM_SIMGUEST_MEM_FD) < 0)
		_exit(127);
	if (x >= 0 ? dup2(x, PVM_SIMGUEST_XS_FD) < 0 :
		     (close(PVM_SIMGUEST_XS_FD), false))
		_exit(127);
	execv(prog, argv);
	_exit(127);
}

static const char *ready_step(uint64_t step)
{
	switch (step) {
	case 1: return "UFFDIO_API with UFFD_FEATURE_WP_ASYNC";
	case 2: return "UFFDIO_REGISTER (write-protect) of guest memory";
	case 3: return "userfaultfd()";
	case 4: return "mmap of the memory memfd";
	default: return "set-up";
	}
}

/* Receives READY and its uffd. */
static int await_ready(struct sim_domain *d)
{
	struct pvm_simguest_msg m;
	struct iovec iov = { &m, sizeof(m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf.buf,
		.msg_controllen = sizeof(cbuf.buf),
	};
	struct pollfd pfd = { .fd = d->ctl_fd, .events = POLLIN };
	struct cmsghdr *c;
	ssize_t n;
	int rc;

	do
		rc = poll(&pfd, 1, READY_TIMEOUT_MS);
	while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		pvm_err("sim: domain %u: guest did not start in %d ms",
			d->domid, READY_TIMEOUT_MS);
		return -ETIMEDOUT;
	}
	n = recvmsg(d->ctl_fd, &mh, MSG_CMSG_CLOEXEC);
	if (n != (ssize_t)sizeof(m) || m.type != PVM_SIMGUEST_READY) {
		pvm_err("sim: domain %u: guest program exited during start-up",
			d->domid);
		return -ECHILD;
	}
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&d->uffd, CMSG_DATA(c), sizeof(int));
	if (m.status < 0) {
		int err = -m.status;

		if ((m.detail == 1 && err == EINVAL) || m.detail == 3 ||
		    err == EOPNOTSUPP) {
			pvm_err("sim: domain %u: this kernel cannot track guest "
				"writes: %s failed: %s (needs linux >= 6.7 "
				"with userfaultfd)", d->domid,
				ready_step(m.detail), strerror(err));
			return -EOPNOTSUPP;
		}
		pvm_err("sim: domain %u: guest %s failed: %s", d->domid,
			ready_step(m.detail), strerror(err));
		return m.status;
	}
	if (d->uffd < 0) {
		pvm_err("sim: domain %u: guest sent no userfaultfd", d->domid);
		return -EPROTO;
	}
	d->guest_addr = m.addr;
	return 0;
}

#define PARK_WAIT_US 500000u

static struct pvm_simguest_header *header(struct sim_domain *d)
{
	return d->mem ? (void *)(d->mem + PVM_SIMGUEST_HEADER_PFN * PVM_PAGE_SIZE)
		      : NULL;
}

/*
 * Asks the guest's PV loop to park at its top before the process is
 * stopped (guest_abi.h park_req): emulates a pause at an instruction
 * boundary for a program that restarts its loop after a restore. Called
 * WITHOUT the host lock: the loop may be waiting for a hypercall that the
 * host's service thread answers under that lock. It waits through a
 * mapping of its own of the header page, so a domain destroyed meanwhile
 * cannot pull memory from under it. Bounded: a loop that does not answer
 * (stuck) is stopped where it is, as a real pause would.
 */
static void park_wait(int memfd, uint32_t domid)
{
	struct pvm_simguest_header *hdr;
	void *p = mmap(NULL, PVM_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		       memfd, PVM_SIMGUEST_HEADER_PFN * PVM_PAGE_SIZE);

	close(memfd);
	if (p == MAP_FAILED)
		return;
	hdr = p;
	for (unsigned us = 0; us < PARK_WAIT_US; us += 50) {
		if (__atomic_load_n(&hdr->parked, __ATOMIC_ACQUIRE))
			goto out;
		usleep(50);
	}
	pvm_warn("sim: domain %u: its PV loop did not park within %u ms; paused where it is",
		 domid, PARK_WAIT_US / 1000);
out:
	munmap(p, PVM_PAGE_SIZE);
}

/* Raises park_req (lock held); returns a dup of the memfd to wait on, or
 * -1 when the guest runs no PV loop. */
static int park_request(struct sim_domain *d)
{
	struct pvm_simguest_header *hdr = header(d);

	if (!hdr || !__atomic_load_n(&hdr->pv_running, __ATOMIC_ACQUIRE))
		return -1;
	__atomic_store_n(&hdr->park_req, 1, __ATOMIC_SEQ_CST);
	/* A host write to guest memory: log-dirty must see it. */
	sim_mark_dirty_locked(d, PVM_SIMGUEST_HEADER_PFN);
	return fcntl(d->memfd, F_DUPFD_CLOEXEC, 0);
}

static void unpark(struct sim_domain *d)
{
	struct pvm_simguest_header *hdr = header(d);

	if (hdr && __atomic_load_n(&hdr->park_req, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&hdr->park_req, 0, __ATOMIC_SEQ_CST);
		sim_mark_dirty_locked(d, PVM_SIMGUEST_HEADER_PFN);
	}
}

/* A suspended domain resumed in place: its suspend hypercall "returns 1"
 * (guest_abi.h suspend_cancel). Lock held. */
void sim_cancel_suspend_locked(struct sim_domain *d)
{
	struct pvm_simguest_header *hdr = header(d);

	d->suspended = false;
	if (!hdr)
		return;
	__atomic_store_n(&hdr->suspend_cancel, 1, __ATOMIC_SEQ_CST);
	sim_mark_dirty_locked(d, PVM_SIMGUEST_HEADER_PFN);
}

/* SIGSTOP and wait until every thread has stopped. Lock held. */
static int stop_process(struct sim_host *h, struct sim_domain *d)
{
	siginfo_t si;

	if (pidfd_send_signal(d->pidfd, SIGSTOP, NULL, 0) < 0) {
		int rc = -errno;

		pvm_err("sim: domain %u: SIGSTOP: %s", d->domid, strerror(errno));
		return rc;
	}
	for (;;) {
		memset(&si, 0, sizeof(si));
		/* WNOWAIT: the stop stays reportable; we never consume it,
		 * so a later pause waits for its own stop. */
		if (waitid(P_PIDFD, (id_t)d->pidfd, &si,
			   WSTOPPED | WEXITED | WNOWAIT) == 0)
			break;
		if (errno != EINTR) {
			pvm_err("sim: domain %u: waitid: %s", d->domid,
				strerror(errno));
			return -errno;
		}
	}
	if (si.si_code != CLD_STOPPED) {
		sim_dom_check_dead(h, d);
		return -ESRCH;
	}
	return 0;
}

static int send_run(struct sim_domain *d)
{
	struct pvm_simguest_msg m = { .type = PVM_SIMGUEST_RUN };

	if (send(d->ctl_fd, &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m)) {
		pvm_err("sim: domain %u: cannot send RUN: %s", d->domid,
			strerror(errno));
		return -EPIPE;
	}
	return 0;
}

static int check_config(const struct pvm_hv_domain_config *cfg)
{
	if (cfg->nr_pages < PVM_SIMGUEST_MIN_PAGES ||
	    cfg->nr_pages > SIM_MAX_PAGES) {
		pvm_err("sim: domain of %llu pages: need %u..%llu",
			(unsigned long long)cfg->nr_pages, PVM_SIMGUEST_MIN_PAGES,
			(unsigned long long)SIM_MAX_PAGES);
		return -EINVAL;
	}
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > PVM_SIMGUEST_MAX_VCPUS) {
		pvm_err("sim: domain with %u vCPUs: need 1..%u", cfg->nr_vcpus,
			PVM_SIMGUEST_MAX_VCPUS);
		return -EINVAL;
	}
	return 0;
}

static int alloc_tables(struct sim_domain *d)
{
	size_t nent;
	int rc;

	d->vcpu_ctx = calloc(d->nr_vcpus, SIM_VCPU_CTX_SIZE);
	d->scan_vec = calloc(SIM_SCAN_VEC_LEN, sizeof(*d->scan_vec));
	d->gnttab_pfn = PVM_SIMGUEST_GNTTAB_PFN;
	d->gnttab_frames = PVM_SIMGUEST_GNTTAB_FRAMES;
	nent = (size_t)d->gnttab_frames * SIM_GNT_PER_FRAME;
	d->active = calloc(nent, sizeof(*d->active));
	if (!d->vcpu_ctx || !d->scan_vec || !d->active)
		return -ENOMEM;
	for (uint32_t i = 0; i < d->nr_vcpus; i++) {
		uint8_t *c = d->vcpu_ctx + (size_t)i * SIM_VCPU_CTX_SIZE;

		pvm_put_le32(c, vcpu_ctx_magic);
		pvm_put_le32(c + 4, 1);
		pvm_put_le32(c + 8, i);
	}
	rc = pvm_bitmap_init(&d->marks, d->nr_pages);
	if (rc < 0)
		return rc;
	return sim_evtchn_init(d);
}

/* Runs on the spawn thread (below). */
static int create_here(struct sim_host *h, const struct pvm_hv_domain_config *cfg,
		       uint32_t *domid_out)
{
	struct sim_domain *d;
	char a_pages[32], a_vcpus[16], path[64];
	char *argv[6];
	int sv[2] = { -1, -1 };
	int xs_fd = -1;
	bool nodes = false;
	size_t len;
	int rc;

	rc = check_config(cfg);
	if (rc < 0)
		return rc;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->pidfd = d->ctl_fd = d->memfd = d->uffd = d->pagemap_fd = -1;
	d->pid = -1;
	d->nr_pages = cfg->nr_pages;
	d->nr_vcpus = cfg->nr_vcpus;
	len = d->nr_pages * PVM_PAGE_SIZE;

	pthread_mutex_lock(&h->lock);
	rc = sim_fault(h, PVM_SIM_FAULT_CREATE);
	if (rc < 0)
		goto out_free;
	rc = pick_domid(h, cfg->domid, &d->domid);
	if (rc < 0) {
		pvm_err("sim: cannot create domain %u: %s", cfg->domid,
			strerror(-rc));
		goto out_free;
	}
	d->serial = h->next_serial++;
	snprintf(d->name, sizeof(d->name), "%s",
		 cfg->name ? cfg->name : "");
	rc = alloc_tables(d);
	if (rc < 0)
		goto out_release;
	rc = sim_dev_prepare(h, d, cfg, &xs_fd);
	if (rc < 0)
		goto out_release;
	nodes = h->xs_srv != NULL;

	d->memfd = memfd_create("pvm-guest", MFD_CLOEXEC);
	if (d->memfd < 0 || ftruncate(d->memfd, (off_t)len) < 0) {
		rc = -errno;
		pvm_err("sim: domain %u: guest memory: %s", d->domid,
			strerror(errno));
		goto out_release;
	}
	d->mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, d->memfd, 0);
	if (d->mem == MAP_FAILED) {
		d->mem = NULL;
		rc = -errno;
		pvm_err("sim: domain %u: map guest memory: %s", d->domid,
			strerror(errno));
		goto out_release;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		rc = -errno;
		goto out_release;
	}
	snprintf(a_pages, sizeof(a_pages), "%llu",
		 (unsigned long long)d->nr_pages);
	snprintf(a_vcpus, sizeof(a_vcpus), "%u", d->nr_vcpus);
	argv[0] = h->guest_prog;
	argv[1] = a_pages;
	argv[2] = a_vcpus;
	argv[3] = (char *)(cfg->image ? cfg->image : "idle");
	argv[4] = (char *)(cfg->frontend_gen == PVM_HV_FRONTEND_LEGACY ?
				   "legacy" : "modern");
	argv[5] = NULL;

	d->pid = fork();
	if (d->pid < 0) {
		rc = -errno;
		goto out_release;
	}
	if (d->pid == 0)
		exec_guest(h->guest_prog, argv, sv[1], d->memfd, xs_fd);
	close(sv[1]);
	sv[1] = -1;
	if (xs_fd >= 0)
		close(xs_fd); /* the guest's copy is its connection */
	xs_fd = -1;
	d->ctl_fd = sv[0];
	sv[0] = -1;
	d->pidfd = pidfd_open(d->pid, 0);
	if (d->pidfd < 0) {
		rc = -errno;
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		goto out_release;
	}
	d->state = DOM_RUNNING;

	rc = await_ready(d);
	if (rc < 0)
		goto out_kill;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)d->pid);
	d->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (d->pagemap_fd < 0) {
		rc = -errno;
		pvm_err("sim: domain %u: %s: %s", d->domid, path,
			strerror(errno));
		goto out_kill;
	}
	rc = sim_dirty_probe(d);
	if (rc < 0)
		goto out_kill;
	{
		struct epoll_event ev = { .events = EPOLLIN,
					  .data.u32 = d->domid };

		if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, d->pidfd, &ev) < 0) {
			rc = -errno;
			goto out_kill;
		}
	}
	if (cfg->start_paused) {
		rc = stop_process(h, d);
		if (rc < 0)
			goto out_kill;
		d->pause_count = 1;
		sim_dom_set_state(d, DOM_RUNNING, DOM_PAUSED);
	}
	/* A paused guest finds RUN waiting when it is continued. */
	rc = send_run(d);
	if (rc == 0)
		rc = sim_svc_add(h, d);
	if (rc < 0)
		goto out_kill;
	insert_sorted(h, d);
	*domid_out = d->domid;
	pvm_debug("sim: domain %u created: pid %d, %llu pages, %u vCPUs",
		  d->domid, (int)d->pid, (unsigned long long)d->nr_pages,
		  d->nr_vcpus);
	pthread_mutex_unlock(&h->lock);
	rc = sim_dev_start_all(h, *domid_out, cfg);
	if (rc < 0) {
		pvm_err("sim: domain %u: cannot start its backends: %s",
			*domid_out, strerror(-rc));
		sim_domain_destroy(&h->hv, *domid_out);
	}
	return rc;

out_kill:
	sim_dom_kill(h, d); /* releases (and removes the nodes) too */
	goto out_free;
out_release:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (xs_fd >= 0)
		close(xs_fd);
	if (nodes)
		sim_dev_domain_dead(h, d);
	sim_dom_release(h, d);
out_free:
	sim_dom_free(d);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/* ---- the spawn thread ----------------------------------------------------
 * Linux delivers a guest's PR_SET_PDEATHSIG when the *thread* that forked
 * it exits, so guests are forked by this thread, which lives as long as
 * the host: domain_create may then be called from any thread. One job at
 * a time; the caller waits for it (the config stays borrowed meanwhile). */

struct spawn_job {
	const struct pvm_hv_domain_config *cfg;
	uint32_t domid;
	int rc;
	bool taken, done;
};

static void *spawn_main(void *arg)
{
	struct sim_host *h = arg;

	pthread_mutex_lock(&h->spawn_mu);
	for (;;) {
		struct spawn_job *job;

		while (!h->spawn_stop && !(h->spawn_job && !h->spawn_job->taken))
			pthread_cond_wait(&h->spawn_cv, &h->spawn_mu);
		if (h->spawn_stop)
			break;
		job = h->spawn_job;
		job->taken = true;
		pthread_mutex_unlock(&h->spawn_mu);
		job->rc = create_here(h, job->cfg, &job->domid);
		pthread_mutex_lock(&h->spawn_mu);
		job->done = true;
		h->spawn_job = NULL;
		pthread_cond_broadcast(&h->spawn_cv);
	}
	pthread_mutex_unlock(&h->spawn_mu);
	return NULL;
}

int sim_spawn_start(struct sim_host *h)
{
	int rc;

	pthread_mutex_init(&h->spawn_mu, NULL);
	pthread_cond_init(&h->spawn_cv, NULL);
	rc = pthread_create(&h->spawn_thread, NULL, spawn_main, h);
	if (rc)
		return -rc;
	h->spawn_running = true;
	return 0;
}

void sim_spawn_stop(struct sim_host *h)
{
	if (!h->spawn_running)
		return;
	pthread_mutex_lock(&h->spawn_mu);
	h->spawn_stop = true;
	pthread_cond_broadcast(&h->spawn_cv);
	pthread_mutex_unlock(&h->spawn_mu);
	pthread_join(h->spawn_thread, NULL);
	h->spawn_running = false;
	pthread_mutex_destroy(&h->spawn_mu);
	pthread_cond_destroy(&h->spawn_cv);
}

int sim_domain_create(struct pvm_hv *hv, const struct pvm_hv_domain_config *cfg,
		      uint32_t *domid_out)
{
	struct sim_host *h = to_host(hv);
	struct spawn_job job = { .cfg = cfg };

	pthread_mutex_lock(&h->spawn_mu);
	while (h->spawn_job)
		pthread_cond_wait(&h->spawn_cv, &h->spawn_mu);
	h->spawn_job = &job;
	pthread_cond_broadcast(&h->spawn_cv);
	while (!job.done)
		pthread_cond_wait(&h->spawn_cv, &h->spawn_mu);
	pthread_mutex_unlock(&h->spawn_mu);
	if (job.rc == 0)
		*domid_out = job.domid;
	return job.rc;
}

int sim_domain_destroy(struct pvm_hv *hv, uint32_t domid)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d, **pp;
	int rc;

	if (domid == 0)
		return -EPERM;
	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, false, &d);
	if (rc == 0) {
		sim_dom_kill(h, d);
		for (pp = &h->domains; *pp != d; pp = &(*pp)->next)
			;
		*pp = d->next;
		sim_dom_free(d);
	}
	pthread_mutex_unlock(&h->lock);
	/* Its backends go too (they take the host lock to unmap). */
	if (rc == 0)
		sim_dev_destroy_domain(h, domid);
	return rc;
}

/* ---- pause ------------------------------------------------------------- */

int sim_domain_pause(struct pvm_hv *hv, uint32_t domid)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	int park_fd = -1;
	uint64_t held = 0; /* serial of the domain we took from the throttle */

	pthread_mutex_lock(&h->lock);
	rc = sim_fault(h, PVM_SIM_FAULT_PAUSE);
	if (rc == 0)
		rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0 && d->pause_count == 0) {
		/* Out of the throttle's duty cycle first, so it can park. */
		sim_throttle_hold(h, d, true);
		held = d->serial;
		park_fd = park_request(d);
	}
	if (park_fd >= 0) {
		pthread_mutex_unlock(&h->lock);
		park_wait(park_fd, domid);
		pthread_mutex_lock(&h->lock);
		rc = sim_dom_get(h, domid, true, &d);
	}
	if (rc == 0 && d->pause_count == 0) {
		rc = stop_process(h, d);
		if (rc == 0) {
			d->pause_count = 1;
			sim_dom_set_state(d, DOM_RUNNING, DOM_PAUSED);
		} else if (rc != -ESRCH) {
			unpark(d); /* not paused after all: let it go on */
		}
	} else if (rc == 0) {
		d->pause_count++;
	}
	/* Back to the throttle (a paused domain it leaves alone anyway);
	 * the serial tells our domain from a new one with its domid. */
	if (held) {
		struct sim_domain *e;

		if (sim_dom_get(h, domid, false, &e) == 0 && e->serial == held)
			sim_throttle_hold(h, e, false);
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int sim_domain_unpause(struct pvm_hv *hv, uint32_t domid)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0 && d->pause_count == 0)
		rc = -EINVAL;
	if (rc == 0 && --d->pause_count == 0) {
		sim_dom_set_state(d, DOM_PAUSED, DOM_RUNNING);
		if (d->suspended)
			sim_cancel_suspend_locked(d);
		/* Also clears a request copied in with a restored image. */
		unpark(d);
		if (pidfd_send_signal(d->pidfd, SIGCONT, NULL, 0) < 0) {
			rc = -errno;
			pvm_err("sim: domain %u: SIGCONT: %s", domid,
				strerror(errno));
		}
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/* ---- foreign mappings -------------------------------------------------- */

int sim_map_pages(struct pvm_hv *hv, uint32_t domid, enum pvm_hv_prot prot,
		  const uint64_t *pfns, size_t n, int *errs, void **addr_out)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	struct sim_fmap *f = NULL;
	int mprot = prot == PVM_HV_MAP_WRITE ? PROT_READ | PROT_WRITE : PROT_READ;
	uint8_t *base = MAP_FAILED;
	int rc;

	if (n == 0 || n > SIZE_MAX / PVM_PAGE_SIZE ||
	    (prot != PVM_HV_MAP_READ && prot != PVM_HV_MAP_WRITE))
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	rc = sim_fault(h, PVM_SIM_FAULT_MAP);
	if (rc == 0)
		rc = sim_dom_get(h, domid, true, &d);
	if (rc < 0)
		goto out_unlock;
	rc = -ENOMEM;
	f = calloc(1, sizeof(*f));
	if (!f)
		goto out_unlock;
	if (prot == PVM_HV_MAP_WRITE) {
		f->pfns = malloc(n * sizeof(*pfns));
		if (!f->pfns)
			goto out_free;
		memcpy(f->pfns, pfns, n * sizeof(*pfns));
	}
	/* Reserve the range, then put each run of consecutive pfns in it. */
	base = mmap(NULL, n * PVM_PAGE_SIZE, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		goto out_free;
	}
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		if (pfns[i] >= d->nr_pages) {
			errs[i++] = -EINVAL;
			continue;
		}
		while (j < n && pfns[j] == pfns[j - 1] + 1 && pfns[j] < d->nr_pages)
			j++;
		if (mmap(base + i * PVM_PAGE_SIZE, (j - i) * PVM_PAGE_SIZE, mprot,
			 MAP_SHARED | MAP_FIXED, d->memfd,
			 (off_t)(pfns[i] * PVM_PAGE_SIZE)) == MAP_FAILED) {
			rc = -errno;
			pvm_err("sim: domain %u: map pfn %llu: %s", domid,
				(unsigned long long)pfns[i], strerror(errno));
			goto out_free;
		}
		for (; i < j; i++)
			errs[i] = 0;
	}
	f->addr = base;
	f->n = n;
	f->domid = domid;
	f->serial = d->serial;
	f->writable = prot == PVM_HV_MAP_WRITE;
	f->next = h->fmaps;
	h->fmaps = f;
	*addr_out = base;
	pthread_mutex_unlock(&h->lock);
	return 0;

out_free:
	if (base != MAP_FAILED)
		munmap(base, n * PVM_PAGE_SIZE);
	if (f)
		free(f->pfns);
	free(f);
out_unlock:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int sim_unmap_pages(struct pvm_hv *hv, void *addr, size_t n)
{
	struct sim_host *h = to_host(hv);
	struct sim_fmap **pp, *f;
	struct sim_domain *d;

	pthread_mutex_lock(&h->lock);
	for (pp = &h->fmaps; *pp && (*pp)->addr != addr; pp = &(*pp)->next)
		;
	f = *pp;
	if (!f || f->n != n) {
		pthread_mutex_unlock(&h->lock);
		pvm_err("sim: unmap of %zu pages at %p: not a mapping", n, addr);
		return -EINVAL;
	}
	*pp = f->next;
	munmap(f->addr, f->n * PVM_PAGE_SIZE);
	/* The writes are in the memfd now: report them (after the write). */
	if (f->writable && sim_dom_get(h, f->domid, true, &d) == 0 &&
	    d->serial == f->serial)
		for (size_t i = 0; i < f->n; i++)
			sim_mark_dirty_locked(d, f->pfns[i]);
	pthread_mutex_unlock(&h->lock);
	free(f->pfns);
	free(f);
	return 0;
}

/* ---- vCPU context ------------------------------------------------------
 * The simulated vCPU's context is SIM_VCPU_CTX_SIZE bytes kept by the host:
 * le32 magic "vcpu", le32 version 1, le32 vcpu id, le32 0, then opaque
 * register bytes. The guest's real state lives in its memory. */

static int vcpu_ctx_check(struct sim_host *h, uint32_t domid, uint32_t vcpu,
			  struct sim_domain **out)
{
	struct sim_domain *d;
	int rc = sim_dom_get(h, domid, true, &d);

	if (rc < 0)
		return rc;
	if (vcpu >= d->nr_vcpus)
		return -EINVAL;
	if (d->state != DOM_PAUSED)
		return -EBUSY;
	*out = d;
	return 0;
}

int sim_vcpu_context_get(struct pvm_hv *hv, uint32_t domid, uint32_t vcpu,
			 struct pvm_buf *out)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = vcpu_ctx_check(h, domid, vcpu, &d);
	if (rc == 0) {
		pvm_buf_put_bytes(out, d->vcpu_ctx + (size_t)vcpu * SIM_VCPU_CTX_SIZE,
				  SIM_VCPU_CTX_SIZE);
		rc = out->err;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int sim_vcpu_context_set(struct pvm_hv *hv, uint32_t domid, uint32_t vcpu,
			 const void *ctx, size_t len)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	struct pvm_cursor c;
	uint32_t magic = 0, version = 0, id = 0;
	int rc;

	pvm_cursor_init(&c, ctx, len);
	pvm_cursor_u32(&c, &magic);
	pvm_cursor_u32(&c, &version);
	pvm_cursor_u32(&c, &id);
	if (c.err || len != SIM_VCPU_CTX_SIZE || magic != vcpu_ctx_magic ||
	    version != 1 || id != vcpu) {
		pvm_err("sim: domain %u vCPU %u: malformed context (%zu bytes)",
			domid, vcpu, len);
		return -EBADMSG;
	}
	pthread_mutex_lock(&h->lock);
	rc = vcpu_ctx_check(h, domid, vcpu, &d);
	if (rc == 0)
		memcpy(d->vcpu_ctx + (size_t)vcpu * SIM_VCPU_CTX_SIZE, ctx, len);
	pthread_mutex_unlock(&h->lock);
	return rc;
}
