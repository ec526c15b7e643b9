/*
 * What outlives one migration: the destination's outcome registry (what
 * the source's QUERY is told), the ring of recent migrations' statistics
 * (`pvmig migrations`), and the test hooks (PVMIG_FAULT, PVMIG_HOLD).
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

/*
 * Fault injection for tests: PVMIG_FAULT in pvmigd's environment names one
 * point where the hand-over breaks as a cut link or a dead host would:
 * src-cut-before-unpause, src-cut-after-unpause (the source's channel is
 * shut down there), dst-die-after-ready (the destination pvmigd exits at
 * once after READY, as a crashed host).
 */
bool mig_fault_point(const char *name)
{
	const char *f = getenv("PVMIG_FAULT");

	return f && !strcmp(f, name);
}

#define HOLD_MAX_MS 30000u

/*
 * PVMIG_HOLD=POINT:FILE in the source pvmigd's environment: at POINT the
 * migration creates FILE.held and waits until FILE exists (30 s at most),
 * so that a test can cut the link or kill a host at exactly that moment.
 * Points: src-precopy (connected, the destination domain made, before
 * round 0), src-stop-copy (paused and quiesced, before the last pages),
 * src-after-ready (READY in, before UNPAUSE), src-after-running (RUNNING
 * in, before the paused source copy is destroyed).
 */
void mig_hold_point(const char *name)
{
	const char *h = getenv("PVMIG_HOLD");
	size_t n = strlen(name);
	char held[512];
	int fd;

	if (!h || strncmp(h, name, n) || h[n] != ':' || !h[n + 1])
		return;
	snprintf(held, sizeof(held), "%s.held", h + n + 1);
	fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	pvm_warn("PVMIG_HOLD: held at %s until %s exists", name, h + n + 1);
	for (unsigned ms = 0; ms < HOLD_MAX_MS && access(h + n + 1, F_OK); ms += 10)
		usleep(10000);
}

/* ---- outcomes (destination) ------------------------------------------------ */

void mig_outcome_set(struct pvm_service *s, const char *id, const char *state)
{
	struct mig_outcome *o = NULL;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < MIG_OUTCOMES; i++)
		if (!strcmp(s->outcomes[i].id, id))
			o = &s->outcomes[i];
	if (!o) {
		o = &s->outcomes[s->next_outcome];
		s->next_outcome = (s->next_outcome + 1) % MIG_OUTCOMES;
		snprintf(o->id, sizeof(o->id), "%s", id);
	}
	snprintf(o->state, sizeof(o->state), "%s", state);
	pthread_mutex_unlock(&s->lock);
}

/*
 * The destination's decision point, under the service lock so that a QUERY
 * and a late UNPAUSE cannot both win: @to_state is set only if the outcome
 * is still "receiving". QUERY fences with "aborted" (the source asked, so
 * it will not hand over on this channel any more); UNPAUSE claims "running".
 * Returns the state after the call in @out.
 */
void mig_outcome_decide(struct pvm_service *s, const char *id,
			   const char *to_state, char *out, size_t len)
{
	snprintf(out, len, "unknown");
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < MIG_OUTCOMES; i++) {
		struct mig_outcome *o = &s->outcomes[i];

		if (!o->id[0] || strcmp(o->id, id))
			continue;
		if (!strcmp(o->state, "receiving"))
			snprintf(o->state, sizeof(o->state), "%s", to_state);
		snprintf(out, len, "%s", o->state);
	}
	pthread_mutex_unlock(&s->lock);
}

void mig_stats_keep(struct pvm_service *s, const struct pvm_kv *kv)
{
	struct pvm_kv *slot;

	pthread_mutex_lock(&s->lock);
	slot = &s->last_stats[s->next_stats];
	s->next_stats = (s->next_stats + 1) % PVM_ARRAY_SIZE(s->last_stats);
	pvm_kv_dispose(slot);
	for (size_t i = 0; i < kv->n; i++)
		pvm_kv_add(slot, kv->key[i], "%s", kv->val[i]);
	pthread_mutex_unlock(&s->lock);
}

int h_migrations(struct req *r)
{
	struct pvm_service *s = r->svc;
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	for (unsigned k = 0; k < PVM_ARRAY_SIZE(s->last_stats) && !rc; k++) {
		unsigned i = (s->next_stats + k) % PVM_ARRAY_SIZE(s->last_stats);

		if (s->last_stats[i].n)
			rc = pvm_ctl_send(r->fd, PVM_CTL_ITEM, &s->last_stats[i]);
	}
	pthread_mutex_unlock(&s->lock);
	return reply_result(r, 0, NULL, NULL);
}
