/*
 * domain_throttle on the simulated host: auto-converge's vCPU cap.
 *
 * A guest is a process, so its vCPUs are capped the way a scheduler cap
 * works, by taking CPU time away in slices: one thread per host runs a
 * duty cycle of THROTTLE_PERIOD_NS, in which each throttled domain runs
 * (100 - percent)% of the period and is stopped (SIGSTOP) for the rest,
 * then continued (SIGCONT) at the start of the next period. A cgroup v2
 * cpu.max would do the same in the kernel, but needs a cgroup v2 cpu
 * controller we may write to: the machine this was written on mounts the
 * v1 hierarchy (its v2 mount has no cpu controller), so that path could
 * not be tested here, and a mechanism per host kind would need tests on
 * each; signals work wherever the sim does.
 *
 * Living with pause/unpause (domain.c), all under the host lock:
 *   - the thread only touches domains that are RUNNING, with pause_count 0
 *     and no pause in progress (throttle_hold);
 *   - a pause first takes the domain back from the throttle
 *     (sim_throttle_hold: SIGCONT if the throttle stopped it, so its PV
 *     loop can park), then stops it its own way; throttle_stopped is
 *     false from then on, so unpause's SIGCONT is the only one due;
 *   - the duty cycle picks the domain up again at the next period after
 *     the unpause.
 * A stop by the throttle is never waited for (waitid): it is a slice of
 * CPU time, not a pause; nobody relies on the guest being stopped.
 */
#include <signal.h>
#include <string.h>
#include <sys/pidfd.h>
#include <time.h>

#include "hv/sim/internal.h"

/* The duty-cycle period: short enough that a throttled guest still answers
 * its I/O within a few ms, long enough that signals are a small cost. */
#define THROTTLE_PERIOD_NS 20000000ull

static bool throttled(const struct sim_domain *d)
{
	return d->throttle_pct && d->state == DOM_RUNNING &&
	       d->pause_count == 0 && !d->throttle_hold && d->pidfd >= 0;
}

static void signal_domain(struct sim_domain *d, int sig)
{
	if (pidfd_send_signal(d->pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
		pvm_warn("sim: domain %u: throttle %s: %s", d->domid,
			 sig == SIGSTOP ? "SIGSTOP" : "SIGCONT", strerror(errno));
}

/* Lock held: continues @d if the throttle stopped it. */
static void release(struct sim_domain *d)
{
	if (d->throttle_stopped) {
		d->throttle_stopped = false;
		signal_domain(d, SIGCONT);
	}
}

static struct timespec abs_time(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull) };

	return ts;
}

static void *throttle_main(void *arg)
{
	struct sim_host *h = arg;

	pthread_mutex_lock(&h->lock);
	while (!h->throttle_stop) {
		uint64_t t0 = pvm_now_ns(), end = t0 + THROTTLE_PERIOD_NS;
		bool any = false;

		/* Start of a period: everyone throttled runs. */
		for (struct sim_domain *d = h->domains; d; d = d->next) {
			if (!throttled(d))
				continue;
			any = true;
			release(d);
		}
		if (!any) {
			bool paused_only = false;
			struct timespec ts = abs_time(end);

			for (struct sim_domain *d = h->domains; d; d = d->next)
				paused_only |= d->throttle_pct != 0;
			/* Throttled domains all paused: look again next
			 * period (an unpause does not call us). None at all:
			 * sleep until a level is set or we stop. */
			if (paused_only)
				pthread_cond_timedwait(&h->throttle_cv, &h->lock, &ts);
			else
				pthread_cond_wait(&h->throttle_cv, &h->lock);
			continue;
		}
		for (;;) {
			uint64_t now = pvm_now_ns(), next = end;
			struct timespec ts;

			for (struct sim_domain *d = h->domains; d; d = d->next) {
				uint64_t due;

				if (!throttled(d) || d->throttle_stopped)
					continue;
				due = t0 + THROTTLE_PERIOD_NS * (100u - d->throttle_pct) / 100u;
				if (now >= due) {
					d->throttle_stopped = true;
					signal_domain(d, SIGSTOP);
				} else if (due < next) {
					next = due;
				}
			}
			if (now >= end || h->throttle_stop)
				break;
			ts = abs_time(next);
			pthread_cond_timedwait(&h->throttle_cv, &h->lock, &ts);
		}
	}
	/* Leave nobody stopped behind. */
	for (struct sim_domain *d = h->domains; d; d = d->next)
		if (d->pidfd >= 0)
			release(d);
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int sim_domain_throttle(struct pvm_hv *hv, uint32_t domid, unsigned percent)
{
	struct sim_host *h = to_host(hv);
	struct sim_domain *d;
	int rc;

	if (percent > 99)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	rc = sim_dom_get(h, domid, true, &d);
	if (rc)
		goto out;
	if (percent && !h->throttle_running) {
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&h->throttle_cv, &ca);
		pthread_condattr_destroy(&ca);
		h->throttle_stop = false;
		if (pthread_create(&h->throttle_thread, NULL, throttle_main, h)) {
			pthread_cond_destroy(&h->throttle_cv);
			pvm_err("sim: domain %u: cannot start the throttle thread",
				domid);
			rc = -EAGAIN;
			goto out;
		}
		h->throttle_running = true;
	}
	d->throttle_pct = percent;
	if (!percent)
		release(d);
	if (h->throttle_running)
		pthread_cond_signal(&h->throttle_cv);
	pvm_debug("sim: domain %u: throttled to %u%%", domid, percent);
out:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

void sim_throttle_hold(struct sim_host *h, struct sim_domain *d, bool hold)
{
	if (hold) {
		d->throttle_hold++;
		release(d);
	} else if (d->throttle_hold) {
		d->throttle_hold--;
	}
}

void sim_throttle_stop(struct sim_host *h)
{
	pthread_mutex_lock(&h->lock);
	if (!h->throttle_running) {
		pthread_mutex_unlock(&h->lock);
		return;
	}
	h->throttle_stop = true;
	pthread_cond_signal(&h->throttle_cv);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->throttle_thread, NULL);
	pthread_cond_destroy(&h->throttle_cv);
	h->throttle_running = false;
}
