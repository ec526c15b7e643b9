/*
 * Wire tests for migrate/control.c: the key=value records between pvmig and
 * pvmigd. Annotated golden records (encode and compare, decode the goldens),
 * every truncation of them (decoder and socket), bad kinds, keys, values,
 * field counts and lengths, the u64 accessor, and pvm_ctl_send/recv over a
 * socketpair (back-to-back records, a byte-at-a-time writer, a closed peer,
 * timeouts). Timeouts are parameters here, never assertions.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate/migrate.h"

/* A generous timeout for reads that must not block (a hang fails the test
 * with -ETIMEDOUT instead of hanging CTest). */
#define NO_HANG_MS 10000u

/* ---- goldens ------------------------------------------------------------ */

/* REQUEST {cmd=list}: the smallest useful request. */
static const uint8_t golden_req[] = {
	0x0a, 0x00, 0x00, 0x00,       /* length 10 = kind + 4 + 5 */
	'Q',                          /* kind REQUEST */
	'c', 'm', 'd', 0x00,          /* key "cmd" */
	'l', 'i', 's', 't', 0x00,     /* value "list" */
};
/* Body offsets (after the length) where a field ends: a prefix cut there
 * is itself a well-formed record with fewer fields. */
static const size_t golden_req_bounds[] = { 1, 10 };

/* RESULT {status=0, error=""}: an empty value is legal. */
static const uint8_t golden_res[] = {
	0x11, 0x00, 0x00, 0x00,                  /* length 17 */
	'R',                                     /* kind RESULT */
	's', 't', 'a', 't', 'u', 's', 0x00,      /* key "status" */
	'0', 0x00,                               /* value "0" */
	'e', 'r', 'r', 'o', 'r', 0x00,           /* key "error" */
	0x00,                                    /* value "" */
};
static const size_t golden_res_bounds[] = { 1, 10, 17 };

/* PROGRESS {round=3, mib_per_s=12.5, phase=pre-copy}: every key character
 * class (digits, '_', '.', '-') and punctuation in values. */
static const uint8_t golden_prog[] = {
	0x2b, 0x00, 0x00, 0x00,                       /* length 43 */
	'P',                                          /* kind PROGRESS */
	'r', 'o', 'u', 'n', 'd', 0x00,                /* key "round" */
	'3', 0x00,                                    /* value "3" */
	'm', 'i', 'b', '_', 'p', 'e', 'r', '_', 's', 0x00, /* "mib_per_s" */
	'1', '2', '.', '5', 0x00,                     /* value "12.5" */
	'x', '.', 'p', 'h', 'a', 's', 'e', '-', '2', 0x00, /* "x.phase-2" */
	'p', 'r', 'e', '-', 'c', 'o', 'p', 'y', 0x00, /* value "pre-copy" */
};
static const size_t golden_prog_bounds[] = { 1, 9, 24 };

/* CANCEL {}: a kind and no fields. */
static const uint8_t golden_cancel[] = {
	0x01, 0x00, 0x00, 0x00, /* length 1 */
	'C',                    /* kind CANCEL */
};
static const size_t golden_cancel_bounds[] = { 1 };

struct golden {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	enum pvm_ctl_kind kind;
	const size_t *bounds; /* field ends within the body, ascending */
	size_t nbounds;
	const char *const *fields; /* key, value, key, value, ... */
	size_t nfields;
};

static const char *const req_fields[] = { "cmd", "list" };
static const char *const res_fields[] = { "status", "0", "error", "" };
static const char *const prog_fields[] = { "round", "3", "mib_per_s", "12.5",
					   "x.phase-2", "pre-copy" };

static const struct golden goldens[] = {
	{ "request", golden_req, sizeof(golden_req), PVM_CTL_REQUEST,
	  golden_req_bounds, PVM_ARRAY_SIZE(golden_req_bounds), req_fields, 1 },
	{ "result", golden_res, sizeof(golden_res), PVM_CTL_RESULT,
	  golden_res_bounds, PVM_ARRAY_SIZE(golden_res_bounds), res_fields, 2 },
	{ "progress", golden_prog, sizeof(golden_prog), PVM_CTL_PROGRESS,
	  golden_prog_bounds, PVM_ARRAY_SIZE(golden_prog_bounds), prog_fields,
	  3 },
	{ "cancel", golden_cancel, sizeof(golden_cancel), PVM_CTL_CANCEL,
	  golden_cancel_bounds, PVM_ARRAY_SIZE(golden_cancel_bounds), NULL, 0 },
};

static void golden_kv(const struct golden *g, struct pvm_kv *kv)
{
	pvm_kv_init(kv);
	for (size_t i = 0; i < g->nfields; i++)
		assert_int_equal(pvm_kv_add(kv, g->fields[2 * i], "%s",
					    g->fields[2 * i + 1]),
				 0);
}

static void assert_kv_is(const struct pvm_kv *kv, const struct golden *g,
			 size_t nfields)
{
	assert_int_equal(kv->n, nfields);
	for (size_t i = 0; i < nfields; i++) {
		assert_string_equal(kv->key[i], g->fields[2 * i]);
		assert_string_equal(kv->val[i], g->fields[2 * i + 1]);
	}
}

/* A key of @n characters, all 'k'. */
static void make_key(char *out, size_t n)
{
	memset(out, 'k', n);
	out[n] = '\0';
}

/* ---- pvm_kv ------------------------------------------------------------- */

static void test_kv_add_get_dispose(void **state)
{
	struct pvm_kv kv;

	pvm_kv_init(&kv);
	assert_int_equal(kv.n, 0);
	assert_null(pvm_kv_get(&kv, "cmd"));
	assert_int_equal(pvm_kv_add(&kv, "cmd", "list"), 0);
	assert_int_equal(pvm_kv_add(&kv, "domid", "%u", 17u), 0);
	assert_int_equal(pvm_kv_add(&kv, "cmd", "second"), 0);
	assert_int_equal(pvm_kv_add(&kv, "empty", "%s", ""), 0);
	assert_int_equal(kv.n, 4);
	assert_string_equal(pvm_kv_get(&kv, "domid"), "17");
	/* Duplicates are kept in order; get returns the first. */
	assert_string_equal(pvm_kv_get(&kv, "cmd"), "list");
	assert_string_equal(kv.val[2], "second");
	assert_string_equal(pvm_kv_get(&kv, "empty"), "");
	assert_null(pvm_kv_get(&kv, "cm"));
	assert_null(pvm_kv_get(&kv, "cmdx"));
	pvm_kv_dispose(&kv);
	assert_int_equal(kv.n, 0);
	assert_null(pvm_kv_get(&kv, "cmd"));
	pvm_kv_dispose(&kv); /* idempotent */
	/* Reusable after dispose. */
	assert_int_equal(pvm_kv_add(&kv, "a", "b"), 0);
	assert_string_equal(pvm_kv_get(&kv, "a"), "b");
	pvm_kv_dispose(&kv);
}

static void test_kv_add_keys(void **state)
{
	static const char *const good[] = {
		"a", "z", "0", "9", "_", "-", ".", "abcdefghijklmnopqrstuvwxyz",
		"0123456789", "a_b-c.d", "mib_per_s",
	};
	static const char *const bad[] = {
		"", "A", "Cmd", "a b", "a=b", "a\tb", "a/b", "a:b", "a\nb",
		"\xc3\xa9", "a\x7f", "a+b", "a,b", "a#b", " a", "a ",
	};
	char key[64];
	struct pvm_kv kv;

	pvm_kv_init(&kv);
	for (size_t i = 0; i < PVM_ARRAY_SIZE(good); i++)
		assert_int_equal(pvm_kv_add(&kv, good[i], "v"), 0);
	for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++) {
		assert_int_equal(pvm_kv_add(&kv, bad[i], "v"), -EINVAL);
		assert_int_equal(kv.n, PVM_ARRAY_SIZE(good));
	}
	make_key(key, PVM_KV_KEY_MAX);
	assert_int_equal(pvm_kv_add(&kv, key, "v"), 0);
	make_key(key, PVM_KV_KEY_MAX + 1);
	assert_int_equal(pvm_kv_add(&kv, key, "v"), -EINVAL);
	assert_int_equal(kv.n, PVM_ARRAY_SIZE(good) + 1);
	pvm_kv_dispose(&kv);
}

static void test_kv_add_values(void **state)
{
	static char big[PVM_KV_VALUE_MAX + 2];
	struct pvm_kv kv;

	pvm_kv_init(&kv);
	memset(big, 'v', PVM_KV_VALUE_MAX);
	big[PVM_KV_VALUE_MAX] = '\0';
	assert_int_equal(pvm_kv_add(&kv, "max", "%s", big), 0);
	assert_int_equal(strlen(pvm_kv_get(&kv, "max")), PVM_KV_VALUE_MAX);
	big[PVM_KV_VALUE_MAX] = 'v';
	big[PVM_KV_VALUE_MAX + 1] = '\0';
	assert_int_equal(pvm_kv_add(&kv, "over", "%s", big), -E2BIG);
	/* Over the limit only through formatting. */
	assert_int_equal(pvm_kv_add(&kv, "over", "%s%s", big + 2, "xx"),
			 -E2BIG);
	assert_int_equal(pvm_kv_add(&kv, "over", "%*d", 5000, 1), -E2BIG);
	/* A value with an embedded NUL cannot be encoded: refused. */
	assert_true(pvm_kv_add(&kv, "nul", "a%cb", 0) < 0);
	assert_int_equal(kv.n, 1);
	assert_null(pvm_kv_get(&kv, "over"));
	assert_null(pvm_kv_get(&kv, "nul"));
	pvm_kv_dispose(&kv);
}

static void test_kv_max_fields(void **state)
{
	struct pvm_kv kv;

	pvm_kv_init(&kv);
	for (unsigned i = 0; i < PVM_KV_MAX_FIELDS; i++)
		assert_int_equal(pvm_kv_add(&kv, "k", "%u", i), 0);
	assert_int_equal(pvm_kv_add(&kv, "k", "one-more"), -E2BIG);
	assert_int_equal(kv.n, PVM_KV_MAX_FIELDS);
	assert_string_equal(kv.val[PVM_KV_MAX_FIELDS - 1], "127");
	pvm_kv_dispose(&kv);
}

static void test_kv_get_u64(void **state)
{
	static const struct {
		const char *val; /* NULL: field absent */
		int rc;
		uint64_t out;
	} cases[] = {
		{ NULL, -ENOENT, 0 },
		{ "0", 0, 0 },
		{ "7", 0, 7 },
		{ "007", 0, 7 },
		{ "4294967296", 0, 4294967296ull },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "18446744073709551616", -EINVAL, 0 },      /* overflow */
		{ "99999999999999999999999", -EINVAL, 0 },   /* overflow */
		{ "", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "-0", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 },
		{ "1a", -EINVAL, 0 },
		{ "a1", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
		{ "1.5", -EINVAL, 0 },
		{ "1e3", -EINVAL, 0 },
		{ "\t1", -EINVAL, 0 },
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(cases); i++) {
		struct pvm_kv kv;
		uint64_t out = 0xdeadbeefull;

		pvm_kv_init(&kv);
		assert_int_equal(pvm_kv_add(&kv, "other", "5"), 0);
		if (cases[i].val)
			assert_int_equal(pvm_kv_add(&kv, "n", "%s", cases[i].val),
					 0);
		if (pvm_kv_get_u64(&kv, "n", &out) != cases[i].rc)
			fail_msg("case %zu '%s': want rc %d", i,
				 cases[i].val ? cases[i].val : "(absent)",
				 cases[i].rc);
		if (cases[i].rc == 0)
			assert_int_equal(out, cases[i].out);
		else
			assert_int_equal(out, 0xdeadbeefull); /* untouched */
		pvm_kv_dispose(&kv);
	}
}

/* ---- encode / decode ---------------------------------------------------- */

static void test_encode_goldens(void **state)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(goldens); i++) {
		const struct golden *g = &goldens[i];
		struct pvm_kv kv;
		struct pvm_buf b;

		golden_kv(g, &kv);
		pvm_buf_init(&b, PVM_CTL_FRAME_MAX + 4);
		assert_int_equal(pvm_ctl_encode(g->kind, &kv, &b), 0);
		assert_int_equal(b.len, g->len);
		assert_memory_equal(b.data, g->bytes, g->len);

		/* Appending to a buffer that already holds a record: the
		 * length of the second is patched in its own place. */
		assert_int_equal(pvm_ctl_encode(g->kind, &kv, &b), 0);
		assert_int_equal(b.len, 2 * g->len);
		assert_memory_equal(b.data + g->len, g->bytes, g->len);
		pvm_buf_dispose(&b);
		pvm_kv_dispose(&kv);
	}
}

static void test_decode_goldens(void **state)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(goldens); i++) {
		const struct golden *g = &goldens[i];
		enum pvm_ctl_kind kind = 0;
		struct pvm_kv kv;

		assert_int_equal(pvm_get_le32(g->bytes), g->len - 4);
		pvm_kv_init(&kv);
		assert_int_equal(pvm_ctl_decode(g->bytes + 4, g->len - 4, &kind,
						&kv),
				 0);
		assert_int_equal(kind, g->kind);
		assert_kv_is(&kv, g, g->nfields);
		pvm_kv_dispose(&kv);
	}
}

/*
 * Every truncation of a golden body. The body has no field count or end
 * marker (the length prefix delimits it), so a cut exactly at a field end
 * is a well-formed shorter record; every other cut must fail -EBADMSG.
 */
static void test_decode_every_truncation(void **state)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(goldens); i++) {
		const struct golden *g = &goldens[i];
		const uint8_t *body = g->bytes + 4;
		size_t blen = g->len - 4;

		for (size_t cut = 0; cut < blen; cut++) {
			enum pvm_ctl_kind kind;
			struct pvm_kv kv;
			size_t fields = SIZE_MAX;
			/* A heap copy of exactly @cut bytes: ASan catches
			 * any read past the cut. */
			uint8_t *copy = malloc(cut ? cut : 1);
			int rc;

			assert_non_null(copy);
			for (size_t j = 0; j < g->nbounds; j++)
				if (g->bounds[j] == cut)
					fields = j;
			memcpy(copy, body, cut);
			pvm_kv_init(&kv);
			rc = pvm_ctl_decode(copy, cut, &kind, &kv);
			if (fields == SIZE_MAX) {
				if (rc != -EBADMSG)
					fail_msg("%s cut at %zu: rc %d", g->name,
						 cut, rc);
			} else {
				assert_int_equal(rc, 0);
				assert_int_equal(kind, g->kind);
				assert_kv_is(&kv, g, fields);
			}
			pvm_kv_dispose(&kv);
			free(copy);
		}
	}
}

static void test_decode_bad_kinds(void **state)
{
	static const uint8_t ok[] = { 'Q', 'P', 'I', 'R', 'C' };

	for (unsigned k = 0; k < 256; k++) {
		uint8_t body[] = { (uint8_t)k, 'a', 0, 'b', 0 };
		enum pvm_ctl_kind kind;
		struct pvm_kv kv;
		bool good = memchr(ok, (int)k, sizeof(ok)) != NULL;
		int rc;

		pvm_kv_init(&kv);
		rc = pvm_ctl_decode(body, sizeof(body), &kind, &kv);
		if (good) {
			assert_int_equal(rc, 0);
			assert_int_equal(kind, (enum pvm_ctl_kind)k);
			assert_string_equal(pvm_kv_get(&kv, "a"), "b");
		} else if (rc != -EBADMSG) {
			fail_msg("kind 0x%02x: rc %d", k, rc);
		}
		pvm_kv_dispose(&kv);
	}
}

/* Decodes @len bytes of @body; returns the rc and disposes what was read. */
static int decode_rc(const void *body, size_t len)
{
	enum pvm_ctl_kind kind;
	struct pvm_kv kv;
	uint8_t *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, body, len);
	pvm_kv_init(&kv);
	rc = pvm_ctl_decode(copy, len, &kind, &kv);
	pvm_kv_dispose(&kv);
	free(copy);
	return rc;
}

static void test_decode_bad_keys(void **state)
{
	static const struct {
		const char *body;
		size_t len;
	} bad[] = {
#define B(s) { s, sizeof(s) - 1 }
		B("Q\0v\0"),            /* empty key */
		B("QCmd\0list\0"),      /* upper case */
		B("Qa b\0v\0"),         /* space */
		B("Qa=b\0v\0"),         /* '=' */
		B("Qa/b\0v\0"),         /* '/' */
		B("Q\xc3\xa9\0v\0"),    /* non-ASCII */
		B("Q\xff\0v\0"),
		B("Qa\nb\0v\0"),
		B("Qok\0v\0B\0v\0"),    /* a bad key after a good field */
#undef B
	};
	char body[128];
	size_t n;

	for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++)
		if (decode_rc(bad[i].body, bad[i].len) != -EBADMSG)
			fail_msg("bad key case %zu decoded", i);

	/* Key length: 32 is fine, 33 is not. */
	body[0] = 'Q';
	make_key(body + 1, PVM_KV_KEY_MAX);
	n = 1 + PVM_KV_KEY_MAX + 1;
	body[n++] = 'v';
	body[n++] = '\0';
	assert_int_equal(decode_rc(body, n), 0);
	make_key(body + 1, PVM_KV_KEY_MAX + 1);
	n = 1 + PVM_KV_KEY_MAX + 1 + 1;
	body[n++] = 'v';
	body[n++] = '\0';
	assert_int_equal(decode_rc(body, n), -EBADMSG);
}

static void test_decode_value_limit(void **state)
{
	size_t cap = 1 + 2 + PVM_KV_VALUE_MAX + 2;
	uint8_t *body = malloc(cap);
	size_t n;

	assert_non_null(body);
	memcpy(body, "Qk\0", 3);
	memset(body + 3, 'v', PVM_KV_VALUE_MAX + 1);
	/* Exactly PVM_KV_VALUE_MAX bytes. */
	body[3 + PVM_KV_VALUE_MAX] = '\0';
	n = 3 + PVM_KV_VALUE_MAX + 1;
	assert_int_equal(decode_rc(body, n), 0);
	/* One more. */
	body[3 + PVM_KV_VALUE_MAX] = 'v';
	body[3 + PVM_KV_VALUE_MAX + 1] = '\0';
	n = 3 + PVM_KV_VALUE_MAX + 2;
	assert_int_equal(n, cap);
	assert_int_equal(decode_rc(body, n), -EBADMSG);
	free(body);
}

static void test_decode_field_limit(void **state)
{
	/* Fields "k\0v\0" (4 bytes) after the kind. */
	size_t cap = 1 + 4 * (PVM_KV_MAX_FIELDS + 1);
	uint8_t *body = malloc(cap);
	enum pvm_ctl_kind kind;
	struct pvm_kv kv;

	assert_non_null(body);
	body[0] = 'I';
	for (size_t i = 0; i <= PVM_KV_MAX_FIELDS; i++)
		memcpy(body + 1 + 4 * i, "k\0v\0", 4);
	pvm_kv_init(&kv);
	assert_int_equal(pvm_ctl_decode(body, cap - 4, &kind, &kv), 0);
	assert_int_equal(kv.n, PVM_KV_MAX_FIELDS);
	pvm_kv_dispose(&kv);
	assert_int_equal(decode_rc(body, cap), -EBADMSG);
	free(body);
}

static void test_decode_missing_nuls(void **state)
{
	static const struct {
		const char *body;
		size_t len;
	} bad[] = {
#define B(s) { s, sizeof(s) - 1 }
		B("Qcmd"),              /* key without NUL */
		B("Qcmd\0"),            /* no value at all */
		B("Qcmd\0list"),        /* value without NUL */
		B("Qcmd\0list\0x"),     /* a trailing partial key */
		B("Qcmd\0list\0x\0"),   /* a trailing key without value */
		B("Qcmdlist"),
#undef B
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++)
		if (decode_rc(bad[i].body, bad[i].len) != -EBADMSG)
			fail_msg("missing-NUL case %zu decoded", i);
	assert_int_equal(decode_rc("", 0), -EBADMSG);
}

/* Fills @kv with fields totalling exactly @body_len encoded bytes (kind
 * included), using full-size values. */
static void fill_to(struct pvm_kv *kv, size_t body_len)
{
	static char val[PVM_KV_VALUE_MAX + 1];
	size_t left = body_len - 1;
	unsigned i = 0;

	pvm_kv_init(kv);
	while (left) {
		char key[8];
		/* key "kNN\0" is 4 bytes, the value v + 1 */
		size_t v;

		assert_true(left >= 5);
		v = left - 5;
		if (v > PVM_KV_VALUE_MAX)
			v = PVM_KV_VALUE_MAX;
		memset(val, 'a' + (int)(i % 26), v);
		val[v] = '\0';
		snprintf(key, sizeof(key), "k%02u", i);
		assert_int_equal(pvm_kv_add(kv, key, "%s", val), 0);
		left -= 4 + v + 1;
		i++;
	}
}

/* Lays out @kv the way the encoder should, without its length checks. */
static size_t raw_body(uint8_t *out, char kind, const struct pvm_kv *kv)
{
	size_t n = 0;

	out[n++] = (uint8_t)kind;
	for (size_t i = 0; i < kv->n; i++) {
		size_t kl = strlen(kv->key[i]) + 1, vl = strlen(kv->val[i]) + 1;

		memcpy(out + n, kv->key[i], kl);
		n += kl;
		memcpy(out + n, kv->val[i], vl);
		n += vl;
	}
	return n;
}

static void test_frame_max(void **state)
{
	struct pvm_kv kv, back;
	struct pvm_buf b;
	enum pvm_ctl_kind kind;

	/* A body of exactly PVM_CTL_FRAME_MAX encodes and decodes. */
	fill_to(&kv, PVM_CTL_FRAME_MAX);
	pvm_buf_init(&b, PVM_CTL_FRAME_MAX + 4);
	assert_int_equal(pvm_ctl_encode(PVM_CTL_ITEM, &kv, &b), 0);
	assert_int_equal(b.len, PVM_CTL_FRAME_MAX + 4);
	assert_int_equal(pvm_get_le32(b.data), PVM_CTL_FRAME_MAX);
	pvm_kv_init(&back);
	assert_int_equal(pvm_ctl_decode(b.data + 4, b.len - 4, &kind, &back), 0);
	assert_int_equal(kind, PVM_CTL_ITEM);
	assert_int_equal(back.n, kv.n);
	for (size_t i = 0; i < kv.n; i++) {
		assert_string_equal(back.key[i], kv.key[i]);
		assert_string_equal(back.val[i], kv.val[i]);
	}
	pvm_kv_dispose(&back);
	pvm_buf_dispose(&b);
	pvm_kv_dispose(&kv);

	/* One byte more: refused by encode (even with room in the buffer)
	 * and by decode. */
	fill_to(&kv, PVM_CTL_FRAME_MAX + 1);
	pvm_buf_init(&b, 2 * PVM_CTL_FRAME_MAX);
	assert_int_equal(pvm_ctl_encode(PVM_CTL_ITEM, &kv, &b), -E2BIG);
	pvm_buf_dispose(&b);
	pvm_buf_init(&b, PVM_CTL_FRAME_MAX + 4);
	assert_int_equal(pvm_ctl_encode(PVM_CTL_ITEM, &kv, &b), -E2BIG);
	pvm_buf_dispose(&b);
	pvm_kv_dispose(&kv);

	/* The same record laid out by hand is well-formed field by field,
	 * but one byte over the limit: decode refuses it on length alone. */
	{
		uint8_t *big = malloc(PVM_CTL_FRAME_MAX + 1);

		assert_non_null(big);
		fill_to(&kv, PVM_CTL_FRAME_MAX + 1);
		assert_int_equal(raw_body(big, 'I', &kv), PVM_CTL_FRAME_MAX + 1);
		assert_int_equal(decode_rc(big, PVM_CTL_FRAME_MAX + 1), -EBADMSG);
		/* Control: its first 15 fields alone are a valid record. */
		assert_int_equal(decode_rc(big, 1 + 15 * (4 + PVM_KV_VALUE_MAX + 1)),
				 0);
		pvm_kv_dispose(&kv);
		free(big);
	}
}

static void test_encode_buffer_cap(void **state)
{
	const struct golden *g = &goldens[0];
	struct pvm_kv kv;
	struct pvm_buf b;

	golden_kv(g, &kv);
	pvm_buf_init(&b, g->len - 1);
	assert_int_equal(pvm_ctl_encode(g->kind, &kv, &b), -E2BIG);
	pvm_buf_dispose(&b);
	pvm_buf_init(&b, g->len);
	assert_int_equal(pvm_ctl_encode(g->kind, &kv, &b), 0);
	assert_memory_equal(b.data, g->bytes, g->len);
	pvm_buf_dispose(&b);
	pvm_kv_dispose(&kv);
}

/* ---- send / recv over a socketpair --------------------------------------- */

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
}

static void write_raw(int fd, const void *p, size_t len)
{
	const uint8_t *q = p;

	while (len) {
		ssize_t n = write(fd, q, len);

		assert_true(n > 0);
		q += n;
		len -= (size_t)n;
	}
}

static void read_raw(int fd, void *p, size_t len)
{
	uint8_t *q = p;

	while (len) {
		ssize_t n = read(fd, q, len);

		assert_true(n > 0);
		q += n;
		len -= (size_t)n;
	}
}

static void test_send_matches_goldens(void **state)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(goldens); i++) {
		const struct golden *g = &goldens[i];
		uint8_t got[128];
		struct pvm_kv kv;
		struct pollfd pf;
		int sv[2];

		pair(sv);
		golden_kv(g, &kv);
		assert_int_equal(pvm_ctl_send(sv[0], g->kind, &kv), 0);
		assert_true(g->len <= sizeof(got));
		read_raw(sv[1], got, g->len);
		assert_memory_equal(got, g->bytes, g->len);
		/* Nothing more was written. */
		pf.fd = sv[1];
		pf.events = POLLIN;
		assert_int_equal(poll(&pf, 1, 0), 0);
		pvm_kv_dispose(&kv);
		close(sv[0]);
		close(sv[1]);
	}
}

static void test_recv_goldens_back_to_back(void **state)
{
	struct pvm_kv kv;
	int sv[2];

	pair(sv);
	/* All goldens in one write: recv must split them by length. */
	{
		uint8_t all[256];
		size_t n = 0;

		for (size_t i = 0; i < PVM_ARRAY_SIZE(goldens); i++) {
			memcpy(all + n, goldens[i].bytes, goldens[i].len);
			n += goldens[i].len;
		}
		write_raw(sv[0], all, n);
	}
	pvm_kv_init(&kv);
	assert_int_equal(pvm_kv_add(&kv, "stale", "x"), 0); /* recv resets */
	for (size_t i = 0; i < PVM_ARRAY_SIZE(goldens); i++) {
		enum pvm_ctl_kind kind = 0;

		assert_int_equal(pvm_ctl_recv(sv[1], NO_HANG_MS, &kind, &kv), 0);
		assert_int_equal(kind, goldens[i].kind);
		assert_kv_is(&kv, &goldens[i], goldens[i].nfields);
	}
	close(sv[0]);
	{
		enum pvm_ctl_kind kind;

		/* Clean close between records. */
		assert_int_equal(pvm_ctl_recv(sv[1], NO_HANG_MS, &kind, &kv),
				 -ECONNRESET);
		assert_int_equal(kv.n, 0);
	}
	close(sv[1]);
	pvm_kv_dispose(&kv);
}

struct dribble {
	int fd;
	const uint8_t *p;
	size_t len;
};

/* Writes one byte per write(2), so the reader sees every split point. */
static void *dribble_thread(void *arg)
{
	struct dribble *d = arg;

	for (size_t i = 0; i < d->len; i++) {
		if (write(d->fd, d->p + i, 1) != 1)
			break;
		sched_yield();
	}
	return NULL;
}

static void test_recv_byte_at_a_time(void **state)
{
	const struct golden *g = &goldens[2];
	struct dribble d;
	pthread_t t;
	struct pvm_kv kv;
	enum pvm_ctl_kind kind;
	int sv[2];

	pair(sv);
	d.fd = sv[0];
	d.p = g->bytes;
	d.len = g->len;
	assert_int_equal(pthread_create(&t, NULL, dribble_thread, &d), 0);
	pvm_kv_init(&kv);
	assert_int_equal(pvm_ctl_recv(sv[1], 0, &kind, &kv), 0);
	assert_int_equal(kind, g->kind);
	assert_kv_is(&kv, g, g->nfields);
	pthread_join(t, NULL);
	pvm_kv_dispose(&kv);
	close(sv[0]);
	close(sv[1]);
}

struct big_send {
	int fd;
	struct pvm_kv *kv;
	int rc;
};

static void *big_send_thread(void *arg)
{
	struct big_send *b = arg;

	b->rc = pvm_ctl_send(b->fd, PVM_CTL_PROGRESS, b->kv);
	return NULL;
}

/* The largest record passes through a socket whose buffer is smaller. */
static void test_send_recv_frame_max(void **state)
{
	struct pvm_kv kv, back;
	struct big_send b;
	enum pvm_ctl_kind kind;
	pthread_t t;
	int sv[2];

	pair(sv);
	fill_to(&kv, PVM_CTL_FRAME_MAX);
	b.fd = sv[0];
	b.kv = &kv;
	b.rc = 1;
	assert_int_equal(pthread_create(&t, NULL, big_send_thread, &b), 0);
	pvm_kv_init(&back);
	assert_int_equal(pvm_ctl_recv(sv[1], NO_HANG_MS, &kind, &back), 0);
	pthread_join(t, NULL);
	assert_int_equal(b.rc, 0);
	assert_int_equal(kind, PVM_CTL_PROGRESS);
	assert_int_equal(back.n, kv.n);
	for (size_t i = 0; i < kv.n; i++)
		assert_string_equal(back.val[i], kv.val[i]);
	pvm_kv_dispose(&back);
	pvm_kv_dispose(&kv);

	/* One more byte: send refuses and writes nothing. */
	fill_to(&kv, PVM_CTL_FRAME_MAX + 1);
	assert_int_equal(pvm_ctl_send(sv[0], PVM_CTL_PROGRESS, &kv), -E2BIG);
	pvm_kv_dispose(&kv);
	close(sv[0]);
	assert_int_equal(pvm_ctl_recv(sv[1], NO_HANG_MS, &kind, &back),
			 -ECONNRESET);
	close(sv[1]);
}

/* Every truncation of every framed golden, then the writer closes: the
 * reader gets -ECONNRESET (mid-record or, at 0 bytes, between records),
 * never a record and never a hang. */
static void test_recv_every_truncation(void **state)
{
	for (size_t i = 0; i < PVM_ARRAY_SIZE(goldens); i++) {
		const struct golden *g = &goldens[i];

		for (size_t cut = 0; cut < g->len; cut++) {
			struct pvm_kv kv;
			enum pvm_ctl_kind kind;
			int sv[2], rc;

			pair(sv);
			write_raw(sv[0], g->bytes, cut);
			close(sv[0]);
			pvm_kv_init(&kv);
			assert_int_equal(pvm_kv_add(&kv, "stale", "x"), 0);
			rc = pvm_ctl_recv(sv[1], NO_HANG_MS, &kind, &kv);
			if (rc != -ECONNRESET)
				fail_msg("%s cut at %zu: rc %d", g->name, cut, rc);
			assert_int_equal(kv.n, 0);
			close(sv[1]);
		}
	}
}

/* A length prefix of 0 or over PVM_CTL_FRAME_MAX fails at once: the writer
 * stays open and sends no body, so a reader that went on to wait for the
 * body (or to allocate it) would time out instead of failing -EBADMSG. */
static void test_recv_bad_lengths(void **state)
{
	static const uint32_t lens[] = {
		0, PVM_CTL_FRAME_MAX + 1, 0x00100000u, 0x7fffffffu, 0xffffffffu,
	};

	for (size_t i = 0; i < PVM_ARRAY_SIZE(lens); i++) {
		uint8_t hdr[4];
		struct pvm_kv kv;
		enum pvm_ctl_kind kind;
		int sv[2], rc;

		pair(sv);
		pvm_put_le32(hdr, lens[i]);
		write_raw(sv[0], hdr, sizeof(hdr));
		pvm_kv_init(&kv);
		rc = pvm_ctl_recv(sv[1], 2000, &kind, &kv);
		if (rc != -EBADMSG)
			fail_msg("length 0x%x: rc %d", lens[i], rc);
		assert_int_equal(kv.n, 0);
		close(sv[0]);
		close(sv[1]);
	}
}

/* A well-framed body that does not decode: -EBADMSG, @kv left empty (no
 * partially decoded fields leak out). */
static void test_recv_bad_body(void **state)
{
	static const uint8_t bad[][12] = {
		{ 0x05, 0, 0, 0, 'X', 'a', 0, 'b', 0 },      /* bad kind */
		{ 0x07, 0, 0, 0, 'Q', 'a', 0, 'b', 0, 'B', 0 }, /* bad 2nd key */
		{ 0x06, 0, 0, 0, 'Q', 'a', 0, 'b', 0, 'c' }, /* partial field */
	};
	static const size_t len[] = { 9, 11, 10 };

	for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++) {
		struct pvm_kv kv;
		enum pvm_ctl_kind kind;
		int sv[2];

		assert_int_equal(pvm_get_le32(bad[i]), len[i] - 4);
		pair(sv);
		write_raw(sv[0], bad[i], len[i]);
		pvm_kv_init(&kv);
		assert_int_equal(pvm_ctl_recv(sv[1], NO_HANG_MS, &kind, &kv),
				 -EBADMSG);
		assert_int_equal(kv.n, 0);
		close(sv[0]);
		close(sv[1]);
	}
}

static void test_recv_timeout(void **state)
{
	const struct golden *g = &goldens[0];
	struct pvm_kv kv;
	enum pvm_ctl_kind kind;
	int sv[2];

	pvm_kv_init(&kv);
	/* Nothing at all; half a length; a length and part of the body. */
	for (size_t cut = 0; cut < g->len; cut += 2) {
		pair(sv);
		write_raw(sv[0], g->bytes, cut);
		assert_int_equal(pvm_ctl_recv(sv[1], 20, &kind, &kv), -ETIMEDOUT);
		assert_int_equal(kv.n, 0);
		/* A timeout before any byte of a record leaves the stream in
		 * sync: the next record is read intact. */
		if (cut == 0) {
			write_raw(sv[0], g->bytes, g->len);
			assert_int_equal(pvm_ctl_recv(sv[1], NO_HANG_MS, &kind,
						      &kv),
					 0);
			assert_kv_is(&kv, g, g->nfields);
			pvm_kv_dispose(&kv);
		}
		close(sv[0]);
		close(sv[1]);
	}
}

static void test_send_to_closed_peer(void **state)
{
	struct pvm_kv kv;
	int sv[2];

	pair(sv);
	close(sv[1]);
	golden_kv(&goldens[0], &kv);
	/* MSG_NOSIGNAL: an error, not SIGPIPE. */
	assert_int_equal(pvm_ctl_send(sv[0], PVM_CTL_REQUEST, &kv), -EPIPE);
	pvm_kv_dispose(&kv);
	close(sv[0]);
}

static void test_connect(void **state)
{
	char dir[] = "/tmp/pvm-test-ctl-XXXXXX";
	char path[sizeof(struct sockaddr_un) + 64];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pvm_kv kv;
	enum pvm_ctl_kind kind;
	int lfd, fd = -1, afd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, PVM_CTL_SOCKET_NAME);
	assert_int_equal(pvm_ctl_connect(path, &fd), -ENOENT);
	assert_int_equal(fd, -1);

	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, path);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(pvm_ctl_connect(path, &fd), 0);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	golden_kv(&goldens[0], &kv);
	assert_int_equal(pvm_ctl_send(fd, PVM_CTL_REQUEST, &kv), 0);
	assert_int_equal(pvm_ctl_recv(afd, NO_HANG_MS, &kind, &kv), 0);
	assert_int_equal(kind, PVM_CTL_REQUEST);
	assert_kv_is(&kv, &goldens[0], 1);
	pvm_kv_dispose(&kv);
	close(afd);
	close(fd);
	close(lfd);
	unlink(path);
	rmdir(dir);

	/* A path that does not fit sun_path. */
	memset(path, 'p', sizeof(sa.sun_path));
	path[0] = '/';
	path[sizeof(sa.sun_path)] = '\0';
	fd = -1;
	assert_int_equal(pvm_ctl_connect(path, &fd), -ENAMETOOLONG);
	assert_int_equal(fd, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kv_add_get_dispose),
		cmocka_unit_test(test_kv_add_keys),
		cmocka_unit_test(test_kv_add_values),
		cmocka_unit_test(test_kv_max_fields),
		cmocka_unit_test(test_kv_get_u64),
		cmocka_unit_test(test_encode_goldens),
		cmocka_unit_test(test_decode_goldens),
		cmocka_unit_test(test_decode_every_truncation),
		cmocka_unit_test(test_decode_bad_kinds),
		cmocka_unit_test(test_decode_bad_keys),
		cmocka_unit_test(test_decode_value_limit),
		cmocka_unit_test(test_decode_field_limit),
		cmocka_unit_test(test_decode_missing_nuls),
		cmocka_unit_test(test_frame_max),
		cmocka_unit_test(test_encode_buffer_cap),
		cmocka_unit_test(test_send_matches_goldens),
		cmocka_unit_test(test_recv_goldens_back_to_back),
		cmocka_unit_test(test_recv_byte_at_a_time),
		cmocka_unit_test(test_send_recv_frame_max),
		cmocka_unit_test(test_recv_every_truncation),
		cmocka_unit_test(test_recv_bad_lengths),
		cmocka_unit_test(test_recv_bad_body),
		cmocka_unit_test(test_recv_timeout),
		cmocka_unit_test(test_send_to_closed_peer),
		cmocka_unit_test(test_connect),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
