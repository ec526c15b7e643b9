/*
 * Table-driven tests for migrate/policy.c: the predicted downtime and the
 * verdict after each pre-copy round — converged on the target, nothing
 * dirty, the round and time limits, a stuck dirty set under both
 * no-converge modes, zero throughput — and whole runs of rounds fed
 * through the policy the way the pre-copy loop does.
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
	{ "converged",                 30,   30,    0, STOP,  1,  100, MIB_PER_S * 100, 0, 500, S, "under the target" },
	{ "converged on the target",   1002, 30,    0, STOP,  1,  1, PAGE_PER_S, 0,     500,   S, "under the target" },
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
			r.stuck_rounds = c->dirty[k] >= prev ? r.stuck_rounds + 1 : 0;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_predict),
		cmocka_unit_test(test_predict_saturates),
		cmocka_unit_test(test_decide_table),
		cmocka_unit_test(test_decide_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
