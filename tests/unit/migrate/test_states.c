/*
 * The two migration state machines (source.c, dest.c) and wire.c's table
 * of which message each side may receive in which state, table-driven as
 * in WireGuard's selftest/counter.c: every (from, to) pair of each machine
 * against the diagrams in the files' headers, the compare-and-set refusing
 * a transition from a state the machine is not in, and every (message,
 * state) pair against the protocol (out of order: refused).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "migrate/internal.h"

#define S(x) (1u << MIG_SRC_##x)
#define D(x) (1u << MIG_DST_##x)

/* The source's arrows, as drawn in source.c. */
static const struct {
	enum mig_src_state from;
	uint32_t to;
} src_arrows[] = {
	{ MIG_SRC_CONNECTING, S(PRECOPY) | S(PAUSED) | S(ROLLED_BACK) },
	{ MIG_SRC_PRECOPY, S(PAUSED) | S(ROLLED_BACK) },
	{ MIG_SRC_PAUSED, S(QUIESCED) | S(AWAIT_READY) | S(ROLLED_BACK) },
	{ MIG_SRC_QUIESCED, S(AWAIT_READY) | S(ROLLED_BACK) },
	{ MIG_SRC_AWAIT_READY, S(UNPAUSE_SENT) | S(ROLLED_BACK) },
	{ MIG_SRC_UNPAUSE_SENT, S(DONE) | S(IN_DOUBT) | S(ROLLED_BACK) },
	{ MIG_SRC_DONE, 0 },
	{ MIG_SRC_ROLLED_BACK, 0 },
	{ MIG_SRC_IN_DOUBT, 0 },
};

/* The destination's, as drawn in dest.c. */
static const struct {
	enum mig_dst_state from;
	uint32_t to;
} dst_arrows[] = {
	{ MIG_DST_OPEN, D(XSTREAM) | D(LOADING) | D(ABORTED) },
	{ MIG_DST_XSTREAM, D(XRESTORE) | D(ABORTED) },
	{ MIG_DST_XRESTORE, D(LOADING) | D(ABORTED) },
	{ MIG_DST_LOADING, D(READY) | D(ABORTED) },
	{ MIG_DST_READY, D(RUNNING) | D(ABORTED) },
	{ MIG_DST_RUNNING, 0 },
	{ MIG_DST_ABORTED, 0 },
};

static void test_src_transitions(void **state)
{
	(void)state;
	assert_int_equal(PVM_ARRAY_SIZE(src_arrows), MIG_SRC_NSTATES);
	for (size_t i = 0; i < PVM_ARRAY_SIZE(src_arrows); i++) {
		for (int to = 0; to < MIG_SRC_NSTATES; to++) {
			bool want = src_arrows[i].to & (1u << to);
			_Atomic int st = src_arrows[i].from;
			int rc = mig_src_set(&st, src_arrows[i].from, to);

			if (mig_src_may_go(src_arrows[i].from, to) != want)
				fail_msg("source %s -> %s: the table says %d",
					 mig_src_state_name(src_arrows[i].from),
					 mig_src_state_name(to), !want);
			assert_int_equal(rc, want ? 0 : -EPROTO);
			assert_int_equal(atomic_load(&st),
					 want ? to : (int)src_arrows[i].from);
		}
	}
	/* out of range, both ways */
	assert_false(mig_src_may_go(MIG_SRC_NSTATES, MIG_SRC_DONE));
	assert_false(mig_src_may_go(MIG_SRC_CONNECTING, MIG_SRC_NSTATES));
	assert_string_equal(mig_src_state_name(MIG_SRC_NSTATES), "invalid");
}

static void test_dst_transitions(void **state)
{
	(void)state;
	assert_int_equal(PVM_ARRAY_SIZE(dst_arrows), MIG_DST_NSTATES);
	for (size_t i = 0; i < PVM_ARRAY_SIZE(dst_arrows); i++) {
		for (int to = 0; to < MIG_DST_NSTATES; to++) {
			bool want = dst_arrows[i].to & (1u << to);
			_Atomic int st = dst_arrows[i].from;
			int rc = mig_dst_set(&st, dst_arrows[i].from, to);

			if (mig_dst_may_go(dst_arrows[i].from, to) != want)
				fail_msg("destination %s -> %s: the table says %d",
					 mig_dst_state_name(dst_arrows[i].from),
					 mig_dst_state_name(to), !want);
			assert_int_equal(rc, want ? 0 : -EPROTO);
			assert_int_equal(atomic_load(&st),
					 want ? to : (int)dst_arrows[i].from);
		}
	}
	assert_false(mig_dst_may_go(MIG_DST_NSTATES, MIG_DST_OPEN));
}

/* A legal arrow taken from a state the machine is not in: the compare-
 * and-set refuses it and leaves the state alone (two threads racing for
 * one transition: only one wins). */
static void test_compare_and_set(void **state)
{
	_Atomic int s = MIG_SRC_PRECOPY;
	_Atomic int d = MIG_DST_READY;

	(void)state;
	assert_int_equal(mig_src_set(&s, MIG_SRC_CONNECTING, MIG_SRC_PAUSED),
			 -EPROTO);
	assert_int_equal(atomic_load(&s), MIG_SRC_PRECOPY);
	assert_int_equal(mig_src_set(&s, MIG_SRC_PRECOPY, MIG_SRC_PAUSED), 0);
	assert_int_equal(mig_src_set(&s, MIG_SRC_PRECOPY, MIG_SRC_PAUSED),
			 -EPROTO);
	assert_int_equal(atomic_load(&s), MIG_SRC_PAUSED);
	assert_int_equal(mig_dst_set(&d, MIG_DST_LOADING, MIG_DST_READY), -EPROTO);
	assert_int_equal(mig_dst_set(&d, MIG_DST_READY, MIG_DST_RUNNING), 0);
	assert_int_equal(mig_dst_set(&d, MIG_DST_READY, MIG_DST_ABORTED), -EPROTO);
	assert_int_equal(atomic_load(&d), MIG_DST_RUNNING);
}

/* Which side may receive which message in which state. */
static const struct {
	int type;
	uint32_t src, dst;
} legal[] = {
	{ MIG_HELLO, 0, D(OPEN) },
	{ MIG_QUERY, 0, D(OPEN) },
	{ MIG_TUNNEL, 0, D(OPEN) },
	{ MIG_ACCEPT, S(CONNECTING), 0 },
	{ MIG_ROUND, 0, D(LOADING) },
	{ MIG_ROUND_ACK, S(PRECOPY), 0 },
	{ MIG_STATE, 0, D(LOADING) },
	{ MIG_READY, S(AWAIT_READY), 0 },
	{ MIG_UNPAUSE, 0, D(READY) },
	{ MIG_RUNNING, S(UNPAUSE_SENT), 0 },
	{ MIG_OUTCOME, S(UNPAUSE_SENT), 0 },
	{ MIG_XCONFIG, 0, D(XSTREAM) },
	{ MIG_XCHUNK, 0, D(XRESTORE) },
	{ MIG_XEND, 0, D(XRESTORE) },
	{ MIG_ABORT,
	  S(CONNECTING) | S(PRECOPY) | S(PAUSED) | S(QUIESCED) |
		  S(AWAIT_READY) | S(UNPAUSE_SENT),
	  D(XSTREAM) | D(XRESTORE) | D(LOADING) | D(READY) },
	/* a tunnel's own messages belong to no migration state */
	{ MIG_TUN_OK, 0, 0 }, { MIG_TUN_CHUNK, 0, 0 }, { MIG_TUN_DATA, 0, 0 },
	{ MIG_TUN_EOF, 0, 0 }, { MIG_TUN_EXIT, 0, 0 },
	/* unknown types */
	{ 0, 0, 0 }, { 'Z', 0, 0 }, { 255, 0, 0 }, { -1, 0, 0 }, { 256, 0, 0 },
};

static void test_messages_by_state(void **state)
{
	(void)state;
	for (size_t i = 0; i < PVM_ARRAY_SIZE(legal); i++) {
		for (int st = 0; st < MIG_SRC_NSTATES; st++)
			if (mig_src_may_recv(legal[i].type, st) !=
			    !!(legal[i].src & (1u << st)))
				fail_msg("source in %s receiving %s: wrong",
					 mig_src_state_name(st),
					 mig_msg_name(legal[i].type));
		for (int st = 0; st < MIG_DST_NSTATES; st++)
			if (mig_dst_may_recv(legal[i].type, st) !=
			    !!(legal[i].dst & (1u << st)))
				fail_msg("destination in %s receiving %s: wrong",
					 mig_dst_state_name(st),
					 mig_msg_name(legal[i].type));
	}
	/* the names the refusals use */
	assert_string_equal(mig_msg_name(MIG_UNPAUSE), "UNPAUSE");
	assert_string_equal(mig_msg_name('Z'), "unknown");
	assert_string_equal(mig_dst_state_name(MIG_DST_LOADING), "LOADING");
	assert_string_equal(mig_src_state_name(MIG_SRC_AWAIT_READY), "AWAIT_READY");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_src_transitions),
		cmocka_unit_test(test_dst_transitions),
		cmocka_unit_test(test_compare_and_set),
		cmocka_unit_test(test_messages_by_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
