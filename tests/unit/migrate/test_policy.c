/*
 * Table-driven tests for migrate/policy.c: the predicted downtime and the
 * verdict after each pre-copy round — converged on the target, nothing
 * dirty, the round and time limits, a stuck dirty set under the three
 * no-converge modes, auto-converge's throttle steps, zero throughput — and
 * whole runs of rounds fed through the policy the way the pre-copy loop
 * does, including a guest that dirties faster than the link carries until
 * it is throttled.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "migrate/internal.h"

/* One page a second: predict_ms(d) = 1000 d + the 2 ms fixed cost, exact
 * in floating point, so the boundaries below are exact too. */
#define PAGE_PER_S ((double)PVM_PAGE_SIZE)
#define MIB_PER_S (1048576.0)

static void test_predict(void **state)
{
	static const struct {
		uint64_t dirty;
		double bps;
		uint64_t want;
	} cases[] = {
		{ 0, PAGE_PER_S, 2 },              /* only the fixed cost */
		{ 1, PAGE_PER_S, 1002 },
		{ 30, PAGE_PER_S, 30002 },
		{ 256, MIB_PER_S, 1002 },          /* 1 MiB at 1 MiB/s */
		{ 256, 2 * MIB_PER_S, 502 },
		{ 1, 4096000.0, 3 },               /* 1 ms */
		{ 1, 8192000.0, 2 },               /* 0.5 ms rounds down */
		{ 1u << 28, PAGE_PER_S, (1ull << 28) * 1000 + 2 }, /* 1 TiB */
		{ 0, 0.0, UINT64_MAX / 2 },        /* no throughput: never */
		{ 1, 0.0, UINT64_MAX / 2 },
		{ 1000, -1.0, UINT64_MAX / 2 },
		{ 5, INFINITY, 2 },
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(cases); i++) {
		uint64_t got = pvm_policy_predict_ms(cases[i].dirty, cases[i].bps);

		if (got != cases[i].want)
			fail_msg("case %zu: predict(%llu, %g) = %llu, want %llu", i,
				 (unsigned long long)cases[i].dirty, cases[i].bps,
				 (unsigned long long)got,
				 (unsigned long long)cases[i].want);
	}
	/* More dirty pages never predict less; more throughput never more. */
	for (uint64_t d = 1; d < (1ull << 40); d *= 3) {
		assert_true(pvm_policy_predict_ms(d + 1, MIB_PER_S) >=
			    pvm_policy_predict_ms(d, MIB_PER_S));
		assert_true(pvm_policy_predict_ms(d, 2 * MIB_PER_S) <=
			    pvm_policy_predict_ms(d, MIB_PER_S));
	}
}

/*
 * Was a bug (fixed; migrate/policy.c:171, pvm_policy_predict_ms): the seconds × 1000 are
 * cast to uint64_t without saturating. When dirty × 4096 / bytes_per_s is
 * over ~1.8e16 s (e.g. dirty_pages = UINT64_MAX at 1 B/s, or 2^28 pages at
 * 1e-5 B/s) the conversion is undefined behaviour (UBSan's
 * float-cast-overflow under clang); with gcc -O2 on x86-64 it yields 0, so
 * the prediction is 2 ms and pvm_policy_decide() reports "predicted
 * downtime under the target" — a converged STOP for the slowest link.
 * Likewise a NaN throughput (0 pages / 0 s) is not caught by the
 * `bytes_per_s <= 0` test. Expected: saturate at UINT64_MAX / 2 (as for
 * zero throughput). Regression test.
 */
static void test_predict_saturates(void **state)
{
	struct pvm_policy p = { .downtime_ms = 30, .max_rounds = 30 };
	struct pvm_round_stats r = { .round = 1, .dirty_after = UINT64_MAX,
				     .bytes_per_s = 1.0 };
	const char *why = NULL;

	assert_true(pvm_policy_predict_ms(UINT64_MAX, 1.0) >= UINT64_MAX / 2);
	assert_true(pvm_policy_predict_ms(1u << 28, 1e-5) >= UINT64_MAX / 2);
	assert_true(pvm_policy_predict_ms(100, NAN) >= UINT64_MAX / 2);
	assert_int_equal(pvm_policy_decide(&p, &r, 0, &why),
			 PVM_POLICY_CONTINUE);
}

enum { C = PVM_POLICY_CONTINUE, S = PVM_POLICY_STOP, A = PVM_POLICY_STOP_ANYWAY };

struct decide_case {
	const char *name;
	/* policy */
	uint64_t downtime_ms;
	uint32_t max_rounds;
	uint64_t max_time_ms;
	enum pvm_noconv mode;
	/* round */
	uint32_t round;
	uint64_t dirty;
	double bps;
	uint32_t stuck;
	uint64_t elapsed_ms;
	/* verdict */
	int want;
	const char *why; /* a substring of the reason */
};

#define KEEP PVM_NOCONV_KEEP_GOING
#define STOP PVM_NOCONV_STOP

static const struct decide_case decide_cases[] = {
	/* name                      target rounds time mode  round dirty bps   stuck elapsed  want why */
	{ "converged, still falling",  30,   30,    0, STOP,  1,  100, MIB_PER_S * 100, 0, 500, C, "still falling" },
	{ "converged",                 30,   30,    0, STOP,  1,  600, MIB_PER_S * 100, 0, 500, S, "under the target" },
	{ "converged on the target",   1002, 30,    0, STOP,  1,  1, PAGE_PER_S, 0,     500,   C, "under the target and still falling" },
	{ "1 ms over the target",      1001, 30,    0, STOP,  1,  1, PAGE_PER_S, 0,     500,   C, "continues" },
	{ "target 0 never converges",  0,    30,    0, STOP,  1,  1, 1e12, 0,           500,   C, "continues" },
	{ "first round, busy guest",   30,   30,    0, STOP,  0,  5000, PAGE_PER_S, 0,  500,   C, "continues" },
	{ "nothing dirty",             30,   30,    0, STOP,  3,  0, MIB_PER_S, 0,      500,   S, "nothing left dirty" },
	{ "nothing dirty, no throughput", 30, 30,   0, STOP,  0,  0, 0.0, 0,            0,     S, "nothing left dirty" },
	{ "nothing dirty, target 0",   0,    30,    0, STOP,  0,  0, MIB_PER_S, 0,      0,     S, "nothing left dirty" },
	{ "nothing dirty, past limits", 30,  1,     10, STOP, 9,  0, MIB_PER_S, 9,      99,    S, "nothing left dirty" },
	{ "zero throughput",           30,   30,    0, STOP,  1,  1, 0.0, 0,            500,   C, "continues" },
	{ "zero throughput, huge target", UINT64_MAX / 2 - 1, 30, 0, STOP, 1, 1, 0.0, 0, 500,  C, "continues" },
	{ "zero throughput, last round", 30, 30,    0, STOP,  29, 1, 0.0, 0,            500,   A, "maximum number of rounds" },
	{ "round before the last",     30,   30,    0, STOP,  28, 5000, PAGE_PER_S, 0,  500,   C, "continues" },
	{ "last round",                30,   30,    0, STOP,  29, 5000, PAGE_PER_S, 0,  500,   A, "maximum number of rounds" },
	{ "past the last round",       30,   30,    0, STOP,  40, 5000, PAGE_PER_S, 0,  500,   A, "maximum number of rounds" },
	{ "one round only",            30,   1,     0, STOP,  0,  5000, PAGE_PER_S, 0,  500,   A, "maximum number of rounds" },
	{ "converged on the last round", 30, 30,    0, STOP,  29, 1, MIB_PER_S, 0,      500,   S, "under the target" },
	{ "time not yet up",           30,   30, 10000, STOP, 2,  5000, PAGE_PER_S, 0,  9999,  C, "continues" },
	{ "time up",                   30,   30, 10000, STOP, 2,  5000, PAGE_PER_S, 0,  10000, A, "time limit" },
	{ "time well past",            30,   30, 10000, STOP, 2,  5000, PAGE_PER_S, 0,  UINT64_MAX, A, "time limit" },
	{ "no time limit",             30,   30,    0, STOP,  2,  5000, PAGE_PER_S, 0,  UINT64_MAX, C, "continues" },
	{ "converged when time is up", 30,   30, 10000, STOP, 2,  1, MIB_PER_S, 0,      20000, S, "under the target" },
	{ "stuck 2, stop mode",        30,   30,    0, STOP,  5,  5000, PAGE_PER_S, 2,  500,   C, "continues" },
	{ "stuck 3, stop mode",        30,   30,    0, STOP,  5,  5000, PAGE_PER_S, 3,  500,   A, "stopped shrinking" },
	{ "stuck 10, stop mode",       30,   30,    0, STOP,  12, 5000, PAGE_PER_S, 10, 500,   A, "stopped shrinking" },
	{ "stuck 3, keep going",       30,   30,    0, KEEP,  5,  5000, PAGE_PER_S, 3,  500,   C, "stopped shrinking" },
	{ "stuck 20, keep going",      30,   30,    0, KEEP,  25, 5000, PAGE_PER_S, 20, 500,   C, "stopped shrinking" },
	{ "stuck, keep going, last round", 30, 30,  0, KEEP,  29, 5000, PAGE_PER_S, 20, 500,   A, "maximum number of rounds" },
	{ "stuck, keep going, time up", 30,  30, 10000, KEEP, 9,  5000, PAGE_PER_S, 5,  10000, A, "time limit" },
	{ "stuck but converged",       30,   30,    0, STOP,  5,  1, MIB_PER_S, 5,      500,   S, "under the target" },
	{ "stuck but nothing dirty",   30,   30,    0, KEEP,  5,  0, MIB_PER_S, 5,      500,   S, "nothing left dirty" },
};

static void test_decide_table(void **state)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(decide_cases); i++) {
		const struct decide_case *c = &decide_cases[i];
		struct pvm_policy p = {
			.downtime_ms = c->downtime_ms,
			.max_rounds = c->max_rounds,
			.max_time_ms = c->max_time_ms,
			.no_converge = c->mode,
		};
		struct pvm_round_stats r = {
			.round = c->round,
			.pages_sent = 1000,
			.wire_bytes = 1000 * 4096,
			.ms = 100,
			.bytes_per_s = c->bps,
			.dirty_after = c->dirty,
			.dirty_rate = 10.0,
			.stuck_rounds = c->stuck,
		};
		const char *why = NULL;
		int got = (int)pvm_policy_decide(&p, &r, c->elapsed_ms, &why);

		if (got != c->want)
			fail_msg("'%s': verdict %d, want %d (%s)", c->name, got,
				 c->want, why ? why : "no reason");
		assert_non_null(why);
		if (!strstr(why, c->why))
			fail_msg("'%s': reason '%s' lacks '%s'", c->name, why,
				 c->why);
	}
}

/*
 * Whole pre-copy runs: a sequence of dirty counts (one per round) fed
 * through the policy with stuck_rounds counted as the pre-copy loop counts
 * it (the dirty set did not shrink). The run stops at @stop_round with
 * @want.
 */
struct run_case {
	const char *name;
	uint32_t max_rounds;
	enum pvm_noconv mode;
	uint64_t dirty[40];
	size_t n;
	uint32_t stop_round;
	int want;
};

static const struct run_case run_cases[] = {
	{ "shrinks to the target", 30, STOP,
	  { 10000, 2000, 400, 80, 20 }, 5, 4, S },
	{ "shrinks to nothing", 30, STOP,
	  { 10000, 2000, 0 }, 3, 2, S },
	{ "stuck, stop", 30, STOP,
	  { 10000, 5000, 5000, 5100, 5200, 4000 }, 6, 4, A },
	{ "stuck then shrinking resets", 30, STOP,
	  { 10000, 5000, 5000, 5000, 4000, 4000, 4000, 4000, 3000 }, 9, 7, A },
	{ "a saturated set wobbling is stuck", 30, STOP,
	  { 10000, 1024, 1010, 1020, 1000, 990 }, 6, 4, A },
	{ "stuck, keep going to the max", 8, KEEP,
	  { 10000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000 }, 10, 7, A },
	{ "never shrinks, 3 rounds max", 3, STOP,
	  { 10000, 10000, 10000, 10000 }, 4, 2, A },
};

static void test_decide_runs(void **state)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(run_cases); i++) {
		const struct run_case *c = &run_cases[i];
		struct pvm_policy p = { .downtime_ms = 30,
					.max_rounds = c->max_rounds,
					.max_time_ms = 0,
					.no_converge = c->mode };
		struct pvm_round_stats r;
		uint64_t prev = UINT64_MAX;
		bool stopped = false;

		memset(&r, 0, sizeof(r));
		/* 1 page/ms: 20 dirty pages predict 22 ms, 80 predict 82. */
		r.bytes_per_s = PAGE_PER_S * 1000;
		for (size_t k = 0; k < c->n; k++) {
			const char *why = NULL;
			int v;

			r.round = (uint32_t)k;
			r.dirty_after = c->dirty[k];
			r.stuck_rounds = pvm_policy_shrank(prev, c->dirty[k]) ?
						 0 : r.stuck_rounds + 1;
			prev = c->dirty[k];
			v = (int)pvm_policy_decide(&p, &r, 100 * k, &why);
			if (v == C)
				continue;
			if (k != c->stop_round || v != c->want)
				fail_msg("'%s': verdict %d at round %zu (%s), want %d at %u",
					 c->name, v, k, why, c->want, c->stop_round);
			stopped = true;
			break;
		}
		if (!stopped)
			fail_msg("'%s' never stopped", c->name);
	}
}

/*
 * Under the target, pre-copy goes on while a round at least halves the
 * dirty set (dirty_after <= pages_sent / 2) and the pages left cost more
 * than 1 ms on the link: the pause aims lower than the target when the
 * link allows. 1 page/ms, target 60 ms, 30 rounds.
 */
static void test_still_falling(void **state)
{
	static const struct {
		const char *name;
		uint32_t round;
		uint64_t sent, dirty, elapsed, max_time;
		int want;
		const char *why;
	} cases[] = {
		{ "a fifth left",            3, 100, 20, 500, 0, C, "still falling" },
		{ "exactly half left",       3, 100, 50, 500, 0, C, "still falling" },
		{ "more than half left",     3, 100, 51, 500, 0, S, "under the target" },
		{ "round 0 of a big guest",  0, 262144, 40, 500, 0, C, "still falling" },
		{ "1 ms of pages left",      3, 100, 1, 500, 0, S, "under the target" },
		{ "2 ms of pages left",      3, 100, 2, 500, 0, C, "still falling" },
		{ "on the last round",      29, 100, 20, 500, 0, S, "under the target" },
		{ "time is up",              3, 100, 20, 9000, 9000, S, "under the target" },
		{ "time not yet up",         3, 100, 20, 8999, 9000, C, "still falling" },
		{ "nothing sent",            3, 0, 20, 500, 0, S, "under the target" },
		{ "over the target",         3, 1000, 100, 500, 0, C, "continues" },
		{ "did not shrink",          3, 100, 20, 500, 0, S, "under the target" },
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(cases); i++) {
		struct pvm_policy p = { .downtime_ms = 60, .max_rounds = 30,
					.max_time_ms = cases[i].max_time,
					.no_converge = PVM_NOCONV_STOP };
		struct pvm_round_stats r = {
			.round = cases[i].round, .pages_sent = cases[i].sent,
			.dirty_after = cases[i].dirty,
			.bytes_per_s = PAGE_PER_S * 1000,
			.stuck_rounds = !strcmp(cases[i].name, "did not shrink"),
		};
		const char *why = NULL;
		int got = (int)pvm_policy_decide(&p, &r, cases[i].elapsed, &why);

		if (got != cases[i].want || !strstr(why, cases[i].why))
			fail_msg("'%s': verdict %d (%s), want %d (%s)", cases[i].name,
				 got, why, cases[i].want, cases[i].why);
	}
}

static void test_throttle_steps(void **state)
{
	static const unsigned steps[][2] = {
		{ 0, 20 }, { 20, 30 }, { 30, 40 }, { 80, 90 }, { 88, 98 },
		{ 89, 99 }, { 90, 99 }, { 95, 99 }, { 99, 99 }, { 1000, 99 },
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(steps); i++)
		if (pvm_policy_throttle_next(steps[i][0]) != steps[i][1])
			fail_msg("next(%u) = %u, want %u", steps[i][0],
				 pvm_policy_throttle_next(steps[i][0]), steps[i][1]);
	/* From 0, every step rises until the maximum, which it never passes. */
	for (unsigned t = 0, n = 0; n < 20; n++) {
		unsigned next = pvm_policy_throttle_next(t);

		assert_true(next > t || next == PVM_THROTTLE_MAX);
		assert_true(next <= PVM_THROTTLE_MAX);
		t = next;
	}
}

/* Progress is a set at least an eighth smaller: a saturated working set
 * that wobbles by a few pages is stuck (it used to count as progress, so
 * "stop" went on to the round limit). */
static void test_shrank(void **state)
{
	assert_true(pvm_policy_shrank(UINT64_MAX, 0));
	assert_true(pvm_policy_shrank(UINT64_MAX, UINT64_MAX / 2));
	assert_true(pvm_policy_shrank(8000, 6999));
	assert_false(pvm_policy_shrank(8000, 7000));
	assert_false(pvm_policy_shrank(1024, 1010));
	assert_false(pvm_policy_shrank(1024, 1024));
	assert_false(pvm_policy_shrank(1024, 2000));
	assert_true(pvm_policy_shrank(8, 6));
	assert_false(pvm_policy_shrank(7, 7)); /* 7/8 rounds to 0 */
	assert_true(pvm_policy_shrank(7, 6));
	assert_false(pvm_policy_shrank(0, 0));
}

static void test_round_high(void **state)
{
	static const struct {
		uint64_t sent, dirty;
		bool high;
	} cases[] = {
		{ 1000, 500, false }, /* exactly half: not high */
		{ 1000, 501, true },
		{ 1001, 500, false }, /* 1000 < 1001 */
		{ 1001, 501, true },  /* 1002 > 1001 */
		{ 0, 0, false },
		{ 0, 1, true },       /* nothing sent, something dirty */
		{ 1, 0, false },
		{ UINT64_MAX, UINT64_MAX, true }, /* no overflow */
		{ UINT64_MAX, UINT64_MAX / 2, false },
		{ 262144, 65536, false }, /* a full copy, a 256 MiB set */
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(cases); i++) {
		struct pvm_round_stats r = { .pages_sent = cases[i].sent,
					     .dirty_after = cases[i].dirty };

		if (pvm_policy_round_high(&r) != cases[i].high)
			fail_msg("case %zu: sent %llu dirty %llu: high %d", i,
				 (unsigned long long)cases[i].sent,
				 (unsigned long long)cases[i].dirty,
				 !cases[i].high);
	}
}

enum { T = PVM_POLICY_THROTTLE };

struct throttle_case {
	const char *name;
	uint32_t round, stuck, high, throttle;
	uint64_t dirty, elapsed_ms, max_time_ms;
	int want;
	const char *why;
};

/* Throttle mode; 1 page/ms, target 30 ms (28 dirty pages converge),
 * 30 rounds at most. */
static const struct throttle_case throttle_cases[] = {
	/* name                          round stuck high thr dirty elapsed time want why */
	{ "one high round: wait",          3, 0, 1, 0,  5000, 500, 0, C, "continues" },
	{ "two high rounds: throttle",     3, 0, 2, 0,  5000, 500, 0, T, "throttling" },
	{ "stuck, not high: throttle",     4, 3, 0, 0,  5000, 500, 0, T, "throttling" },
	{ "throttled, one high round",     5, 0, 1, 20, 5000, 500, 0, T, "throttling" },
	{ "throttled, shrinking fast",     5, 0, 0, 20, 5000, 500, 0, C, "continues" },
	{ "throttled, stuck 2",            5, 2, 0, 50, 5000, 500, 0, C, "continues" },
	{ "throttled, stuck 3",            5, 3, 0, 50, 5000, 500, 0, T, "throttling" },
	{ "at the maximum, high",          9, 0, 4, 99, 5000, 500, 0, C, "maximum" },
	{ "at the maximum, stuck 2",       9, 2, 4, 99, 5000, 500, 0, C, "maximum" },
	{ "at the maximum, stuck 3",       9, 3, 4, 99, 5000, 500, 0, A, "throttled to the maximum" },
	{ "converged while throttled",     9, 3, 4, 60, 28,   500, 0, S, "under the target" },
	{ "nothing dirty at the maximum",  9, 3, 4, 99, 0,    500, 0, S, "nothing left dirty" },
	{ "time up while throttling",      9, 0, 4, 40, 5000, 9000, 9000, A, "time limit" },
	{ "last round while throttling",  29, 0, 4, 40, 5000, 500, 0, A, "maximum number of rounds" },
	{ "first round, huge dirty set",   0, 0, 1, 0,  5000, 500, 0, C, "continues" },
};

static void test_decide_throttle(void **state)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(throttle_cases); i++) {
		const struct throttle_case *c = &throttle_cases[i];
		struct pvm_policy p = { .downtime_ms = 30, .max_rounds = 30,
					.max_time_ms = c->max_time_ms,
					.no_converge = PVM_NOCONV_THROTTLE };
		struct pvm_round_stats r = {
			.round = c->round, .pages_sent = 5000,
			.bytes_per_s = PAGE_PER_S * 1000,
			.dirty_after = c->dirty, .stuck_rounds = c->stuck,
			.high_rounds = c->high, .throttle_pct = c->throttle,
		};
		const char *why = NULL;
		int got = (int)pvm_policy_decide(&p, &r, c->elapsed_ms, &why);

		if (got != c->want)
			fail_msg("'%s': verdict %d, want %d (%s)", c->name, got,
				 c->want, why ? why : "no reason");
		assert_non_null(why);
		if (!strstr(why, c->why))
			fail_msg("'%s': reason '%s' lacks '%s'", c->name, why, c->why);
	}
	/* The other modes never throttle, whatever the counts. */
	for (int mode = PVM_NOCONV_STOP; mode <= PVM_NOCONV_KEEP_GOING; mode++) {
		struct pvm_policy p = { .downtime_ms = 30, .max_rounds = 30,
					.no_converge = (enum pvm_noconv)mode };

		for (uint32_t k = 0; k < 10; k++) {
			struct pvm_round_stats r = {
				.round = 3, .pages_sent = 5000, .dirty_after = 5000,
				.bytes_per_s = PAGE_PER_S * 1000, .stuck_rounds = k,
				.high_rounds = k, .throttle_pct = 0,
			};
			const char *why;

			assert_int_not_equal(pvm_policy_decide(&p, &r, 0, &why), T);
		}
	}
}

/*
 * A guest dirtying faster than the link carries, fed round by round: the
 * link moves 1 page/ms; the guest dirties @rate pages per round of a
 * @set-page working set at full speed, scaled by (100 - throttle)% when
 * throttled (the duty cycle takes that share of its CPU). The loop below
 * does what the pre-copy loop does with the verdicts.
 */
struct model_out {
	int verdict;
	uint32_t rounds;
	unsigned throttle;
	unsigned steps;
};

static struct model_out run_model(enum pvm_noconv mode, uint64_t set,
				  uint64_t rate, uint32_t max_rounds,
				  uint64_t max_time_ms)
{
	struct pvm_policy p = { .downtime_ms = 30, .max_rounds = max_rounds,
				.max_time_ms = max_time_ms, .no_converge = mode };
	struct pvm_round_stats r;
	struct model_out out = { 0 };
	uint64_t to_send = 10000, prev = UINT64_MAX, elapsed = 0;
	unsigned throttle = 0;

	memset(&r, 0, sizeof(r));
	r.bytes_per_s = PAGE_PER_S * 1000;
	for (r.round = 0;; r.round++) {
		uint64_t dirty = rate * (100 - throttle) / 100;
		const char *why;
		int v;

		if (dirty > set)
			dirty = set;
		r.pages_sent = to_send;
		r.dirty_after = dirty;
		elapsed += to_send; /* 1 page/ms */
		r.stuck_rounds = pvm_policy_shrank(prev, dirty) ? 0 : r.stuck_rounds + 1;
		r.high_rounds = pvm_policy_round_high(&r) ? r.high_rounds + 1 : 0;
		r.throttle_pct = throttle;
		prev = dirty;
		v = (int)pvm_policy_decide(&p, &r, elapsed, &why);
		if (v == T) {
			unsigned next = pvm_policy_throttle_next(throttle);

			if (next <= throttle)
				fail_msg("throttle did not rise from %u", throttle);
			throttle = next;
			out.steps++;
			r.stuck_rounds = r.high_rounds = 0;
		} else if (v != C) {
			out.verdict = v;
			break;
		}
		to_send = dirty;
		if (r.round > 1000)
			fail_msg("mode %d never stopped", mode);
	}
	out.rounds = r.round + 1;
	out.throttle = throttle;
	return out;
}

static void test_not_converging_runs(void **state)
{
	struct model_out o;

	/* Throttle: step by step to 99%, where 2000 pages/round become 20:
	 * converged, well before the round limit. */
	o = run_model(PVM_NOCONV_THROTTLE, 4000, 2000, 30, 0);
	assert_int_equal(o.verdict, S);
	assert_int_equal(o.throttle, 99);
	assert_int_equal(o.steps, 9); /* 20, 30, ..., 90, 99 */
	assert_true(o.rounds < 30);
	/* A milder guest needs less. */
	o = run_model(PVM_NOCONV_THROTTLE, 4000, 100, 30, 0);
	assert_int_equal(o.verdict, S);
	assert_true(o.throttle > 0 && o.throttle < 99);
	/* One that not even 99% tames: stops anyway, throttled to the max. */
	o = run_model(PVM_NOCONV_THROTTLE, 1000000, 1000000, 100, 0);
	assert_int_equal(o.verdict, A);
	assert_int_equal(o.throttle, 99);
	assert_true(o.rounds < 100);

	/* Stop: three rounds without progress, stop-and-copy, unthrottled. */
	o = run_model(PVM_NOCONV_STOP, 4000, 2000, 30, 0);
	assert_int_equal(o.verdict, A);
	assert_int_equal(o.throttle, 0);
	assert_int_equal(o.rounds, 4);

	/* Keep going ("continue"): to the time limit, or the round limit. */
	o = run_model(PVM_NOCONV_KEEP_GOING, 4000, 2000, 1000, 40000);
	assert_int_equal(o.verdict, A);
	assert_int_equal(o.throttle, 0);
	assert_int_equal(o.rounds, 16); /* 10000 + 15 × 2000 ms >= 40 s */
	o = run_model(PVM_NOCONV_KEEP_GOING, 4000, 2000, 30, 0);
	assert_int_equal(o.verdict, A);
	assert_int_equal(o.rounds, 30);
	/* A guest that converges on its own is never throttled. */
	o = run_model(PVM_NOCONV_THROTTLE, 4000, 10, 30, 0);
	assert_int_equal(o.verdict, S);
	assert_int_equal(o.steps, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_predict),
		cmocka_unit_test(test_predict_saturates),
		cmocka_unit_test(test_decide_table),
		cmocka_unit_test(test_decide_runs),
		cmocka_unit_test(test_still_falling),
		cmocka_unit_test(test_throttle_steps),
		cmocka_unit_test(test_shrank),
		cmocka_unit_test(test_round_high),
		cmocka_unit_test(test_decide_throttle),
		cmocka_unit_test(test_not_converging_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
