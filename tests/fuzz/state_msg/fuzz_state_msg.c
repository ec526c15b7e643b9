/*
 * libFuzzer target: a STATE message's body (what follows the peer message
 * header) through mig_state_parse() (migrate/state.c), with oracles that
 * abort:
 *   - on success every section found lies inside the input, in order, with
 *     its length, and the input is exactly those sections and their
 *     headers (nothing skipped, nothing read past the end);
 *   - at most MIG_STATE_MAX_VCPUS vCPU sections, each other one at most
 *     once, a digest of exactly 32 bytes;
 *   - a failure is -EBADMSG with a reason.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: oracle failed: %s\n",       \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

static size_t check_sec(const uint8_t *data, size_t size,
			const struct mig_state_sec *s)
{
	if (!s->present)
		return 0;
	CHECK(s->p >= data + 8 && s->p + s->len <= data + size);
	CHECK(pvm_get_le32(s->p - 4) == s->len);
	return 8 + (size_t)s->len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mig_state st;
	char why[256] = "";
	size_t covered = 0;
	int rc = mig_state_parse(data, size, &st, why, sizeof(why));

	if (rc) {
		CHECK(rc == -EBADMSG && why[0]);
		return 0;
	}
	CHECK(st.nr_vcpus <= MIG_STATE_MAX_VCPUS);
	for (uint32_t v = 0; v < st.nr_vcpus; v++) {
		covered += check_sec(data, size, &st.vcpu[v]);
		CHECK(pvm_get_le32(st.vcpu[v].p - 8) == 1);
		if (v)
			CHECK(st.vcpu[v].p > st.vcpu[v - 1].p);
	}
	covered += check_sec(data, size, &st.evtchn);
	covered += check_sec(data, size, &st.grant);
	covered += check_sec(data, size, &st.xenstore);
	covered += check_sec(data, size, &st.devices);
	covered += check_sec(data, size, &st.digest);
	CHECK(!st.digest.present || st.digest.len == 32);
	CHECK(covered == size);
	return 0;
}
