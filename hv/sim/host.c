/*
 * The simulated host instance: creation, its ops table, domain lookup and
 * the reaping of guests whose process died. See internal.h for the locking
 * rule and the domain state machine.
 */
#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hv/sim/internal.h"

void sim_dom_set_state(struct sim_domain *d, enum sim_dom_state from,
		       enum sim_dom_state to)
{
	assert(d->state == from);
	(void)from;
	d->state = to;
	assert(to != DOM_PAUSED || d->pause_count > 0);
	assert(to != DOM_RUNNING || d->pause_count == 0);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void sim_dom_release(struct sim_host *h, struct sim_domain *d)
{
	sim_evtchn_release(h, d);
	sim_grant_release(h, d);
	if (d->pidfd >= 0)
		epoll_ctl(h->epfd, EPOLL_CTL_DEL, d->pidfd, NULL);
	sim_svc_del(h, d);
	close_fd(&d->pidfd);
	close_fd(&d->ctl_fd);
	close_fd(&d->uffd);
	close_fd(&d->pagemap_fd);
	close_fd(&d->memfd);
	if (d->mem)
		munmap(d->mem, d->nr_pages * PVM_PAGE_SIZE);
	d->mem = NULL;
	d->logdirty = false;
	pvm_bitmap_dispose(&d->marks);
	free(d->scan_vec);
	d->scan_vec = NULL;
}

void sim_dom_free(struct sim_domain *d)
{
	free(d->vcpu_ctx);
	free(d);
}

/* The process is gone (reaped, @si its status): DEAD, release everything. */
static void dom_died(struct sim_host *h, struct sim_domain *d,
		     const siginfo_t *si, bool quiet)
{
	if (si->si_code == CLD_EXITED && si->si_status == 0)
		d->shutdown_reason = PVM_HV_SHUTDOWN_POWEROFF;
	else
		d->shutdown_reason = PVM_HV_SHUTDOWN_CRASH;
	if (!quiet)
		pvm_warn("sim: domain %u (pid %d) %s %d", d->domid, (int)d->pid,
		 si->si_code == CLD_EXITED ? "exited with status" :
					     "killed by signal",
		 si->si_status);
	d->pause_count = 0;
	sim_dom_set_state(d, d->state, DOM_DEAD);
	sim_dom_release(h, d);
	sim_dev_domain_dead(h, d); /* its xenstore nodes; backends notice */
}

bool sim_dom_check_dead(struct sim_host *h, struct sim_domain *d)
{
	siginfo_t si;

	if (d->state == DOM_DEAD)
		return true;
	if (d->is_control)
		return false;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)d->pidfd, &si, WEXITED | WNOHANG) < 0) {
		pvm_err("sim: domain %u: waitid: %s", d->domid,
			strerror(errno));
		return false;
	}
	if (si.si_pid == 0)
		return false;
	dom_died(h, d, &si, false);
	return true;
}

void sim_dom_kill(struct sim_host *h, struct sim_domain *d)
{
	siginfo_t si;

	if (d->state == DOM_DEAD || d->is_control)
		return;
	pidfd_send_signal(d->pidfd, SIGKILL, NULL, 0);
	for (;;) {
		memset(&si, 0, sizeof(si));
		if (waitid(P_PIDFD, (id_t)d->pidfd, &si, WEXITED) == 0)
			break;
		if (errno != EINTR) {
			pvm_err("sim: domain %u: waitid: %s", d->domid,
				strerror(errno));
			si.si_code = CLD_KILLED;
			si.si_status = SIGKILL;
			break;
		}
	}
	dom_died(h, d, &si, true);
}

int sim_dom_get(struct sim_host *h, uint32_t domid, bool alive,
		struct sim_domain **out)
{
	struct sim_domain *d;

	if (domid == 0) {
		if (alive)
			return -ESRCH;
		*out = &h->dom0;
		return 0;
	}
	for (d = h->domains; d; d = d->next)
		if (d->domid == domid)
			break;
	if (!d)
		return -ESRCH;
	if (alive && sim_dom_check_dead(h, d))
		return -ESRCH;
	*out = d;
	return 0;
}

int pvm_sim_host_reap(struct pvm_hv *hv)
{
	struct sim_host *h = to_host(hv);
	struct epoll_event ev[16];
	int n = 0;

	pthread_mutex_lock(&h->lock);
	/* Drain the readiness; the walk below is what finds the dead. */
	while (epoll_wait(h->epfd, ev, 16, 0) == 16)
		;
	for (struct sim_domain *d = h->domains; d; d = d->next)
		if (d->state != DOM_DEAD && sim_dom_check_dead(h, d))
			n++;
	pthread_mutex_unlock(&h->lock);
	return n;
}

int pvm_sim_host_fd(struct pvm_hv *hv)
{
	return to_host(hv)->epfd;
}

int sim_fault(struct sim_host *h, enum pvm_sim_fault point)
{
	struct sim_fault *f = &h->faults[point];

	if (f->countdown == 0 || --f->countdown > 0)
		return 0;
	if (f->sticky)
		f->countdown = 1;
	pvm_err("sim: injected failure at point %d: %s", (int)point,
		strerror(-f->err));
	return f->err;
}

int pvm_sim_fault_set(struct pvm_hv *hv, enum pvm_sim_fault point,
		      unsigned int nth, bool sticky, int err)
{
	struct sim_host *h = to_host(hv);

	if ((unsigned int)point >= PVM_SIM_FAULT_NR || err >= 0)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	h->faults[point] = (struct sim_fault){
		.countdown = nth, .sticky = sticky, .err = err,
	};
	pthread_mutex_unlock(&h->lock);
	return 0;
}

bool pvm_sim_is_sim(const struct pvm_hv *hv)
{
	return hv && hv->ops == &pvm_sim_ops;
}

static void fill_info(const struct sim_domain *d, struct pvm_hv_dominfo *out)
{
	memset(out, 0, sizeof(*out));
	out->domid = d->domid;
	out->nr_vcpus = d->nr_vcpus;
	out->nr_pages = d->nr_pages;
	out->mem_pages = d->nr_pages;
	snprintf(out->name, sizeof(out->name), "%s", d->name);
	if (d->pause_count)
		out->flags |= PVM_HV_DOMINF_PAUSED;
	if (d->logdirty)
		out->flags |= PVM_HV_DOMINF_LOGDIRTY;
	if (d->state == DOM_DEAD) {
		out->flags |= PVM_HV_DOMINF_SHUTDOWN | PVM_HV_DOMINF_DYING;
		out->shutdown_reason = d->shutdown_reason;
	}
}

static int sim_domain_list(struct pvm_hv *hv, struct pvm_hv_dominfo *out,
			   size_t max, size_t *n_out)
{
	struct sim_host *h = to_host(hv);
	size_t n = 0;
	int rc = 0;

	pthread_mutex_lock(&h->lock);
	for (struct sim_domain *d = h->domains; d; d = d->next) {
		sim_dom_check_dead(h, d);
		if (n == max) {
			rc = -ENOSPC;
			break;
		}
		fill_info(d, &out[n++]);
	}
	pthread_mutex_unlock(&h->lock);
	*n_out = n;
	return rc;
}

static int sim_domain_info(struct pvm_hv *hv, uint32_t domid,
			   struct pvm_hv_dominfo *out)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = domid ? sim_dom_get(h, domid, false, &d) : -ESRCH;
	if (rc == 0) {
		sim_dom_check_dead(h, d);
		fill_info(d, out);
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int pvm_sim_domain_pid(struct pvm_hv *hv, uint32_t domid, pid_t *pid_out)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0)
		*pid_out = d->pid;
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int pvm_sim_domain_memory(struct pvm_hv *hv, uint32_t domid, void **mem_out,
			  uint64_t *nr_pages_out)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc == 0) {
		*mem_out = d->mem;
		*nr_pages_out = d->nr_pages;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

static void sim_close(struct pvm_hv *hv)
{
	struct sim_host *h = to_host(hv);

	sim_svc_stop(h); /* no hypercall runs from here on */
	sim_throttle_stop(h);
	while (h->domains)
		sim_domain_destroy(hv, h->domains->domid);
	sim_dev_host_close(h); /* backends of no domain (attached) */
	sim_spawn_stop(h);
	while (h->gmaps)
		pvm_sim_grant_unmap(hv, h->gmaps->handle);
	if (h->fmaps)
		pvm_warn("sim: host closed with foreign mappings still mapped");
	while (h->fmaps) {
		struct sim_fmap *f = h->fmaps;

		h->fmaps = f->next;
		free(f->pfns);
		free(f);
	}
	sim_evtchn_release(h, &h->dom0);
	close_fd(&h->epfd);
	pthread_mutex_destroy(&h->lock);
	free(h->guest_prog);
	free(h);
}

/* Default guest program: $PVM_SIMGUEST, else next to /proc/self/exe. */
static char *default_guest_prog(void)
{
	const char *env = getenv("PVM_SIMGUEST");
	char exe[PATH_MAX];
	char *slash, *path;
	ssize_t n;

	if (env && *env)
		return strdup(env);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	if (asprintf(&path, "%s/pvmig-simguest", exe) < 0)
		return NULL;
	return path;
}

int pvm_sim_host_create(const struct pvm_sim_config *cfg,
			struct pvm_hv **hv_out)
{
	struct sim_host *h;
	int rc;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->hv.ops = &pvm_sim_ops;
	h->epfd = h->svc_epfd = h->svc_stopfd = -1;
	pthread_mutex_init(&h->lock, NULL);
	h->next_serial = 1;
	h->next_handle = 1;
	h->dom0.is_control = true;
	h->dom0.pidfd = h->dom0.ctl_fd = h->dom0.memfd = -1;
	h->dom0.uffd = h->dom0.pagemap_fd = -1;
	snprintf(h->dom0.name, sizeof(h->dom0.name), "Domain-0");
	rc = sim_dev_host_init(h, cfg ? cfg->xenstored : NULL);
	if (rc == 0)
		rc = sim_spawn_start(h);
	if (rc < 0) {
		sim_close(&h->hv);
		return rc;
	}

	h->guest_prog = cfg && cfg->guest_prog ? strdup(cfg->guest_prog) :
						 default_guest_prog();
	rc = -ENOMEM;
	if (!h->guest_prog)
		goto out_free;
	if (access(h->guest_prog, X_OK) < 0) {
		rc = -errno;
		pvm_err("sim: guest program %s: %s", h->guest_prog,
			strerror(errno));
		goto out_free;
	}
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (h->epfd < 0) {
		rc = -errno;
		goto out_free;
	}
	rc = sim_evtchn_init(&h->dom0);
	if (rc < 0)
		goto out_free;
	rc = sim_svc_start(h);
	if (rc < 0) {
		pvm_err("sim: cannot start the service thread: %s",
			strerror(-rc));
		goto out_free;
	}
	*hv_out = &h->hv;
	return 0;

out_free:
	sim_close(&h->hv);
	return rc;
}

const struct pvm_hv_ops pvm_sim_ops = {
	.name = "sim",
	.close = sim_close,
	.domain_list = sim_domain_list,
	.domain_info = sim_domain_info,
	.domain_create = sim_domain_create,
	.domain_destroy = sim_domain_destroy,
	.domain_pause = sim_domain_pause,
	.domain_unpause = sim_domain_unpause,
	.logdirty_enable = sim_logdirty_enable,
	.logdirty_disable = sim_logdirty_disable,
	.logdirty_read_clear = sim_logdirty_read_clear,
	.map_pages = sim_map_pages,
	.unmap_pages = sim_unmap_pages,
	.vcpu_context_get = sim_vcpu_context_get,
	.vcpu_context_set = sim_vcpu_context_set,
	.evtchn_state_get = sim_evtchn_state_get,
	.evtchn_state_set = sim_evtchn_state_set,
	.grant_state_get = sim_grant_state_get,
	.grant_state_set = sim_grant_state_set,
	.domain_throttle = sim_domain_throttle,
	.domain_populated = sim_domain_populated,
};
