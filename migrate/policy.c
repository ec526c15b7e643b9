/*
 * The convergence policy: after each pre-copy round, stop now or go on?
 * A pure function of the round statistics, beside the pre-copy loop, not
 * inside it (as Xen's precopy_policy callback), so it is table-testable.
 *
 * Predicted downtime = pages still dirty × 4096 / measured throughput
 * + a fixed cost for pausing, the state record and the hand-over. Under
 * the target it still goes on while each round at least halves the dirty
 * set (still_falling), so a fast link gets a pause well below the target.
 *
 * A guest that dirties memory faster than the link carries never gets
 * there; what then is the user's choice (--no-converge, enum pvm_noconv).
 * Auto-converge (throttle) follows the idea of QEMU's: a round whose
 * dirtied pages are more than half of what it sent is "high"; two high
 * rounds in a row throttle the vCPUs (20%), each further high round (or a
 * dirty set stuck for STUCK_ROUNDS) takes 10% more, up to 99%; stuck at
 * 99% for STUCK_ROUNDS, it stops anyway. Every mode ends at --max-rounds
 * and --max-time-s.
 */
#include "migrate/internal.h"

/* Pause + state + hand-over on this design, measured on the sim: ~2 ms. */
#define FIXED_COST_MS 2u
/* Below this much link time for the dirty pages, another round gains
 * too little to be worth its round trip. */
#define MIN_GAIN_MS 1u
/* Rounds without a shrinking dirty set before we call it stuck. */
#define STUCK_ROUNDS 3u

uint64_t pvm_policy_predict_ms(uint64_t dirty_pages, double bytes_per_s)
{
	double ms;

	/* "!(x > 0)" also catches NaN. Anything past ~30 years is "never":
	 * converting a larger double to an integer is undefined. */
	if (!(bytes_per_s > 0))
		return UINT64_MAX / 2;
	ms = (double)dirty_pages * PVM_PAGE_SIZE / bytes_per_s * 1000.0;
	if (!(ms < 1e12))
		return UINT64_MAX / 2;
	return (uint64_t)ms + FIXED_COST_MS;
}

unsigned pvm_policy_throttle_next(unsigned current)
{
	if (current == 0)
		return PVM_THROTTLE_INITIAL;
	if (current >= PVM_THROTTLE_MAX - PVM_THROTTLE_STEP)
		return PVM_THROTTLE_MAX;
	return current + PVM_THROTTLE_STEP;
}

bool pvm_policy_shrank(uint64_t prev, uint64_t now)
{
	return now < prev - prev / 8;
}

bool pvm_policy_round_high(const struct pvm_round_stats *r)
{
	/* dirty × 2 > sent, without overflow: for integers it is the same
	 * as dirty > sent / 2 (rounded down). */
	return r->dirty_after > r->pages_sent / 2;
}

/*
 * Under the target already: is another round worth it? A round that sent
 * S pages while the guest dirtied D leaves D to send, which takes about
 * D/S of its time, in which the guest dirties about D × D/S: the set
 * shrinks by q = D/S a round. While q <= 1/2 and what is left costs more
 * than MIN_GAIN_MS on the link, one more round at least halves the pause
 * for a fraction of a round's time, so the pause aims lower than the
 * target when the link allows (the target is a ceiling, not an aim).
 * Never on the last round, past the time limit, or when the set did not
 * shrink from the previous round (stuck: the estimate is wrong).
 */
static bool still_falling(const struct pvm_policy *p,
			  const struct pvm_round_stats *r, uint64_t predicted,
			  uint64_t elapsed_ms)
{
	if (predicted <= FIXED_COST_MS + MIN_GAIN_MS)
		return false;
	if (r->round + 1 >= p->max_rounds)
		return false;
	if (p->max_time_ms && elapsed_ms >= p->max_time_ms)
		return false;
	/* D <= S/2 (without overflow), and it did shrink this round. */
	return r->pages_sent && r->dirty_after <= r->pages_sent / 2 &&
	       r->stuck_rounds == 0;
}

/* Not converging, in throttle mode: slow the guest more, or give up. */
static enum pvm_policy_verdict throttle_verdict(const struct pvm_round_stats *r,
						const char **why_out)
{
	bool stuck = r->stuck_rounds >= STUCK_ROUNDS;
	bool high = r->high_rounds >= (r->throttle_pct ? 1u : 2u);

	if (r->throttle_pct >= PVM_THROTTLE_MAX) {
		if (stuck) {
			*why_out = "throttled to the maximum and the dirty set still does not shrink";
			return PVM_POLICY_STOP_ANYWAY;
		}
		*why_out = "pre-copy continues (throttled to the maximum)";
		return PVM_POLICY_CONTINUE;
	}
	if (high || stuck) {
		*why_out = "guest dirties faster than the link carries: throttling its vCPUs";
		return PVM_POLICY_THROTTLE;
	}
	*why_out = "pre-copy continues";
	return PVM_POLICY_CONTINUE;
}

enum pvm_policy_verdict pvm_policy_decide(const struct pvm_policy *p,
					  const struct pvm_round_stats *r,
					  uint64_t elapsed_ms,
					  const char **why_out)
{
	uint64_t predicted = pvm_policy_predict_ms(r->dirty_after,
						   r->bytes_per_s);

	if (r->dirty_after == 0) {
		*why_out = "nothing left dirty";
		return PVM_POLICY_STOP;
	}
	if (predicted <= p->downtime_ms) {
		if (still_falling(p, r, predicted, elapsed_ms)) {
			*why_out = "predicted downtime under the target and still falling: one more round";
			return PVM_POLICY_CONTINUE;
		}
		*why_out = "predicted downtime under the target";
		return PVM_POLICY_STOP;
	}
	if (r->round + 1 >= p->max_rounds) {
		*why_out = "maximum number of rounds reached";
		return PVM_POLICY_STOP_ANYWAY;
	}
	if (p->max_time_ms && elapsed_ms >= p->max_time_ms) {
		*why_out = "time limit for pre-copy reached";
		return PVM_POLICY_STOP_ANYWAY;
	}
	if (p->no_converge == PVM_NOCONV_THROTTLE)
		return throttle_verdict(r, why_out);
	if (r->stuck_rounds >= STUCK_ROUNDS) {
		*why_out = "dirty set stopped shrinking (guest dirties faster than the link carries)";
		return p->no_converge == PVM_NOCONV_KEEP_GOING ?
			       PVM_POLICY_CONTINUE :
			       PVM_POLICY_STOP_ANYWAY;
	}
	*why_out = "pre-copy continues";
	return PVM_POLICY_CONTINUE;
}
