/*
 * libFuzzer target: one control-protocol record body (what pvm_ctl_recv()
 * hands to the decoder after the length prefix) through pvm_ctl_decode(),
 * then every accessor over what it decoded, with oracles that abort:
 *   - a decoded record holds at most PVM_KV_MAX_FIELDS fields, every key is
 *     1..PVM_KV_KEY_MAX of [a-z0-9_.-], every value at most
 *     PVM_KV_VALUE_MAX bytes;
 *   - re-encoding it gives back exactly the input (the format is
 *     canonical), and decoding that gives back the same fields;
 *   - pvm_kv_get() finds the first field of each key;
 *   - pvm_kv_get_u64() agrees with a reference decimal parser;
 *   - pvm_kv_add() of each decoded field into a fresh kv succeeds.
 * A failed decode must leave nothing behind after pvm_kv_dispose() (the
 * leak checker watches).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/migrate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: oracle failed: %s\n",       \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

static int ref_u64(const char *v, uint64_t *out)
{
	uint64_t x = 0;

	if (!*v)
		return -EINVAL;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return -EINVAL;
		if (x > (UINT64_MAX - (uint64_t)(*v - '0')) / 10)
			return -EINVAL;
		x = x * 10 + (uint64_t)(*v - '0');
	}
	*out = x;
	return 0;
}

static void check_fields(const struct pvm_kv *kv)
{
	CHECK(kv->n <= PVM_KV_MAX_FIELDS);
	for (size_t i = 0; i < kv->n; i++) {
		size_t kl = strlen(kv->key[i]);
		const char *first;

		CHECK(kl >= 1 && kl <= PVM_KV_KEY_MAX);
		CHECK(strspn(kv->key[i], "abcdefghijklmnopqrstuvwxyz"
					 "0123456789_.-") == kl);
		CHECK(strlen(kv->val[i]) <= PVM_KV_VALUE_MAX);
		first = pvm_kv_get(kv, kv->key[i]);
		CHECK(first);
		for (size_t j = 0; j < kv->n; j++)
			if (!strcmp(kv->key[j], kv->key[i])) {
				CHECK(first == kv->val[j]);
				break;
			}
	}
}

static void check_u64(const struct pvm_kv *kv)
{
	for (size_t i = 0; i < kv->n; i++) {
		uint64_t got = 0x5a5a5a5a5a5a5a5aull, want = 0;
		const char *v = pvm_kv_get(kv, kv->key[i]);
		int rc = pvm_kv_get_u64(kv, kv->key[i], &got);
		int wrc = ref_u64(v, &want);

		CHECK(rc == wrc);
		if (!rc)
			CHECK(got == want);
		else
			CHECK(got == 0x5a5a5a5a5a5a5a5aull);
	}
	{
		uint64_t x;

		/* Keys are never empty, so "" is always absent. */
		CHECK(pvm_kv_get_u64(kv, "", &x) == -ENOENT);
	}
}

static void check_reencode(const uint8_t *data, size_t size,
			   enum pvm_ctl_kind kind, const struct pvm_kv *kv)
{
	struct pvm_buf b;
	struct pvm_kv again, copy;
	enum pvm_ctl_kind kind2;

	pvm_buf_init(&b, PVM_CTL_FRAME_MAX + 4);
	CHECK(pvm_ctl_encode(kind, kv, &b) == 0);
	CHECK(b.len == size + 4);
	CHECK(pvm_get_le32(b.data) == size);
	CHECK(!memcmp(b.data + 4, data, size));

	pvm_kv_init(&again);
	CHECK(pvm_ctl_decode(b.data + 4, b.len - 4, &kind2, &again) == 0);
	CHECK(kind2 == kind);
	CHECK(again.n == kv->n);
	for (size_t i = 0; i < kv->n; i++) {
		CHECK(!strcmp(again.key[i], kv->key[i]));
		CHECK(!strcmp(again.val[i], kv->val[i]));
	}
	pvm_kv_dispose(&again);
	pvm_buf_dispose(&b);

	/* What the decoder accepted, pvm_kv_add accepts too. */
	pvm_kv_init(&copy);
	for (size_t i = 0; i < kv->n; i++)
		CHECK(pvm_kv_add(&copy, kv->key[i], "%s", kv->val[i]) == 0);
	CHECK(copy.n == kv->n);
	pvm_kv_dispose(&copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pvm_kv kv;
	enum pvm_ctl_kind kind;
	int rc;

	pvm_kv_init(&kv);
	rc = pvm_ctl_decode(data, size, &kind, &kv);
	if (rc == 0) {
		CHECK(size >= 1 && size <= PVM_CTL_FRAME_MAX);
		CHECK((uint8_t)kind == data[0]);
		check_fields(&kv);
		check_u64(&kv);
		check_reencode(data, size, kind, &kv);
	} else {
		CHECK(rc == -EBADMSG || rc == -ENOMEM);
	}
	pvm_kv_dispose(&kv);
	CHECK(kv.n == 0);
	return 0;
}
