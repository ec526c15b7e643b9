/*
 * migrate/wire.c's framing and the decoders behind it (wire.c's
 * mig_msg_decode, state.c's mig_state_parse, dest.c's mig_hello_decode):
 * annotated golden bytes encoded and decoded, every truncation refused
 * cleanly, and hostile headers, bodies and sections refused by name.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "migrate/internal.h"

/* READY memory=verified */
static const uint8_t golden_ready[] = {
	'D',                     /* type: READY */
	0,                       /* flags */
	0, 0,                    /* reserved */
	16, 0, 0, 0,             /* body length, LE */
	'm', 'e', 'm', 'o', 'r', 'y', 0,
	'v', 'e', 'r', 'i', 'f', 'i', 'e', 'd', 0,
};

/* STATE: one vCPU section of 2 bytes, event channels of 0, a digest */
static const uint8_t golden_state[] = {
	1, 0, 0, 0,  2, 0, 0, 0,  0xaa, 0xbb,        /* ST_VCPU */
	2, 0, 0, 0,  0, 0, 0, 0,                     /* ST_EVTCHN, empty */
	4, 0, 0, 0,  32, 0, 0, 0,                    /* ST_MEM_SHA256 */
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
};

static void test_encode_golden(void **state)
{
	struct pvm_buf b;
	struct pvm_kv kv;

	(void)state;
	pvm_buf_init(&b, 1024);
	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "memory", "verified");
	assert_int_equal(mig_msg_encode_kv(MIG_READY, &kv, &b), 0);
	assert_int_equal(b.len, sizeof(golden_ready));
	assert_memory_equal(b.data, golden_ready, sizeof(golden_ready));
	/* an empty record: the header alone */
	pvm_buf_reset(&b);
	assert_int_equal(mig_msg_encode_kv(MIG_UNPAUSE, NULL, &b), 0);
	assert_int_equal(b.len, MIG_HDR_SIZE);
	assert_int_equal(b.data[0], 'U');
	assert_int_equal(pvm_get_le32(b.data + 4), 0);
	pvm_kv_dispose(&kv);
	pvm_buf_dispose(&b);
}

static void test_decode_golden_and_truncations(void **state)
{
	struct mig_msg_in m;
	char why[256];

	(void)state;
	mig_msg_init(&m);
	assert_int_equal(mig_msg_decode(golden_ready, sizeof(golden_ready), &m,
					why, sizeof(why)), MIG_READY);
	assert_string_equal(pvm_kv_get(&m.kv, "memory"), "verified");
	for (size_t n = 0; n < sizeof(golden_ready); n++) {
		why[0] = '\0';
		assert_int_equal(mig_msg_decode(golden_ready, n, &m, why,
						sizeof(why)), -EBADMSG);
		assert_true(strstr(why, "a malformed message") != NULL);
		assert_int_equal(m.kv.n, 0);
	}
	mig_msg_dispose(&m);
}

static void test_decode_hostile(void **state)
{
	struct mig_msg_in m;
	uint8_t buf[64];
	char why[256];

	(void)state;
	mig_msg_init(&m);
	/* unknown type */
	memcpy(buf, golden_ready, sizeof(golden_ready));
	buf[0] = 0x01;
	assert_int_equal(mig_msg_decode(buf, sizeof(golden_ready), &m, why,
					sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "unknown type 0x01"));
	/* a length longer than what came, and one shorter */
	memcpy(buf, golden_ready, sizeof(golden_ready));
	buf[4] = 17;
	assert_int_equal(mig_msg_decode(buf, sizeof(golden_ready), &m, why,
					sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "READY says 17 body bytes, 16 came"));
	buf[4] = 15;
	assert_int_equal(mig_msg_decode(buf, sizeof(golden_ready), &m, why,
					sizeof(why)), -EBADMSG);
	buf[4] = 0xff;
	buf[7] = 0xff;
	assert_int_equal(mig_msg_decode(buf, sizeof(golden_ready), &m, why,
					sizeof(why)), -EBADMSG);
	/* flags and reserved are ignored on read */
	memcpy(buf, golden_ready, sizeof(golden_ready));
	buf[1] = 0x80;
	buf[2] = buf[3] = 0x55;
	assert_int_equal(mig_msg_decode(buf, sizeof(golden_ready), &m, why,
					sizeof(why)), MIG_READY);
	/* a body that is no record: no NUL, a bad key */
	memcpy(buf, golden_ready, sizeof(golden_ready));
	buf[sizeof(golden_ready) - 1] = 'x';
	assert_int_equal(mig_msg_decode(buf, sizeof(golden_ready), &m, why,
					sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "READY is not a key=value record"));
	memcpy(buf, golden_ready, sizeof(golden_ready));
	buf[8] = 'M';
	assert_int_equal(mig_msg_decode(buf, sizeof(golden_ready), &m, why,
					sizeof(why)), -EBADMSG);
	/* STATE is raw: its body is not parsed as a record */
	memcpy(buf, golden_ready, sizeof(golden_ready));
	buf[0] = MIG_STATE;
	buf[sizeof(golden_ready) - 1] = 'x';
	assert_int_equal(mig_msg_decode(buf, sizeof(golden_ready), &m, why,
					sizeof(why)), MIG_STATE);
	assert_int_equal(m.raw_len, 16);
	assert_ptr_equal(m.raw, buf + MIG_HDR_SIZE);
	mig_msg_dispose(&m);
}

static void test_state_parse(void **state)
{
	struct mig_state *st = malloc(sizeof(*st));
	uint8_t buf[sizeof(golden_state) + 16];
	char why[256];

	(void)state;
	assert_int_equal(mig_state_parse(golden_state, sizeof(golden_state), st,
					 why, sizeof(why)), 0);
	assert_int_equal(st->nr_vcpus, 1);
	assert_int_equal(st->vcpu[0].len, 2);
	assert_int_equal(st->vcpu[0].p[1], 0xbb);
	assert_true(st->evtchn.present);
	assert_int_equal(st->evtchn.len, 0);
	assert_false(st->grant.present);
	assert_true(st->digest.present);
	assert_int_equal(st->digest.p[31], 32);
	/* every truncation that cuts a section */
	for (size_t n = 0; n < sizeof(golden_state); n++) {
		int rc = mig_state_parse(golden_state, n, st, why, sizeof(why));

		/* the cuts between sections are whole messages */
		if (n == 0 || n == 10 || n == 18)
			assert_int_equal(rc, 0);
		else
			assert_int_equal(rc, -EBADMSG);
	}
	/* a section twice, an unknown one, a digest of 31 bytes */
	memcpy(buf, golden_state, sizeof(golden_state));
	memcpy(buf + sizeof(golden_state), golden_state + 10, 8);
	assert_int_equal(mig_state_parse(buf, sizeof(golden_state) + 8, st, why,
					 sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "section 2 twice"));
	memcpy(buf, golden_state, sizeof(golden_state));
	buf[10] = 99;
	assert_int_equal(mig_state_parse(buf, sizeof(golden_state), st, why,
					 sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "section 99 unknown"));
	memcpy(buf, golden_state, sizeof(golden_state));
	buf[22] = 31;
	assert_int_equal(mig_state_parse(buf, sizeof(golden_state) - 1, st, why,
					 sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "digest of 31 bytes"));
	free(st);
}

static void test_state_vcpus_bounded(void **state)
{
	struct mig_state *st = malloc(sizeof(*st));
	size_t n = (MIG_STATE_MAX_VCPUS + 1) * 8;
	uint8_t *buf = calloc(1, n);
	char why[256];

	(void)state;
	for (size_t i = 0; i < MIG_STATE_MAX_VCPUS + 1; i++)
		buf[i * 8] = 1; /* ST_VCPU, empty */
	assert_int_equal(mig_state_parse(buf, n - 8, st, why, sizeof(why)), 0);
	assert_int_equal(st->nr_vcpus, MIG_STATE_MAX_VCPUS);
	assert_int_equal(mig_state_parse(buf, n, st, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "more than 64 vCPU sections"));
	free(buf);
	free(st);
}

static void hello_kv(struct pvm_kv *kv, const char *skip, const char *key,
		     const char *val)
{
	static const char *const fields[][2] = {
		{ "id", "0123456789abcdef0123456789abcdef" },
		{ "name", "web" }, { "nr_pages", "64" }, { "vcpus", "2" },
		{ "domid", "7" }, { "pv_mode", "transparent" },
	};

	pvm_kv_dispose(kv);
	for (size_t i = 0; i < PVM_ARRAY_SIZE(fields); i++)
		if (!skip || strcmp(fields[i][0], skip))
			pvm_kv_add(kv, fields[i][0], "%s", fields[i][1]);
	if (key)
		pvm_kv_add(kv, key, "%s", val);
}

static void test_hello_decode(void **state)
{
	static const char *const bad[][2] = {
		{ "nr_pages", "0" }, { "nr_pages", "68719476737" },
		{ "nr_pages", "-1" }, { "vcpus", "0" }, { "vcpus", "65" },
		{ "id", "0123" }, { "name", "" },
		{ "name", "0123456789012345678901234567890123456789012345678901234567890123" },
	};
	struct mig_hello h;
	struct pvm_kv kv;
	char why[256];

	(void)state;
	pvm_kv_init(&kv);
	hello_kv(&kv, NULL, NULL, NULL);
	assert_int_equal(mig_hello_decode(&kv, &h, why, sizeof(why)), 0);
	assert_string_equal(h.name, "web");
	assert_int_equal(h.nr_pages, 64);
	assert_int_equal(h.src_domid, 7);
	assert_true(h.keep_domid);
	assert_false(h.xen);
	for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++) {
		hello_kv(&kv, bad[i][0], bad[i][0], bad[i][1]);
		assert_int_equal(mig_hello_decode(&kv, &h, why, sizeof(why)),
				 -EBADMSG);
		assert_string_equal(why, "HELLO is malformed");
	}
	hello_kv(&kv, "vcpus", NULL, NULL);
	assert_int_equal(mig_hello_decode(&kv, &h, why, sizeof(why)), -EBADMSG);
	/* a domid out of range is left out, not trusted */
	hello_kv(&kv, "domid", "domid", "99999999");
	assert_int_equal(mig_hello_decode(&kv, &h, why, sizeof(why)), 0);
	assert_int_equal(h.src_domid, 0);
	assert_false(h.keep_domid);
	pvm_kv_dispose(&kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_golden),
		cmocka_unit_test(test_decode_golden_and_truncations),
		cmocka_unit_test(test_decode_hostile),
		cmocka_unit_test(test_state_parse),
		cmocka_unit_test(test_state_vcpus_bounded),
		cmocka_unit_test(test_hello_decode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
