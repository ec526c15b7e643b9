/*
 * libFuzzer target: one channel message as a peer sends it, through
 * mig_msg_decode() (migrate/wire.c), and a HELLO's fields through
 * mig_hello_decode() (migrate/dest.c), with oracles that abort:
 *   - a decoded message has a named type, a header of MIG_HDR_SIZE bytes
 *     whose length field is the rest of the input, and either a raw body
 *     pointing exactly there or a key=value record that re-encodes to the
 *     same bytes (flags and reserved aside, which are ignored on read);
 *   - a failure is -EBADMSG (or -ENOMEM) with a reason, and leaves nothing;
 *   - the state tables answer for every state without reading outside;
 *   - a decoded HELLO is within its bounds (id of 32, name 1..63 bytes,
 *     1..2^36 pages, 1..64 vCPUs, a domid in range or 0).
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

static void check_reencode(const uint8_t *data, size_t size,
			   const struct mig_msg_in *m)
{
	struct pvm_buf b;

	pvm_buf_init(&b, PVM_CTL_FRAME_MAX + 2 * MIG_HDR_SIZE);
	CHECK(mig_msg_encode_kv(m->type, &m->kv, &b) == 0);
	CHECK(b.len == size);
	CHECK(b.data[0] == data[0]);
	CHECK(!memcmp(b.data + 4, data + 4, size - 4));
	pvm_buf_dispose(&b);
}

static void check_hello(const struct mig_msg_in *m)
{
	struct mig_hello h;
	char why[256] = "";

	if (mig_hello_decode(&m->kv, &h, why, sizeof(why))) {
		CHECK(why[0]);
		return;
	}
	CHECK(strlen(h.id) == 32);
	CHECK(strlen(h.name) >= 1 && strlen(h.name) < sizeof(h.name));
	CHECK(h.nr_pages >= 1 && h.nr_pages <= (1ull << 36));
	CHECK(h.vcpus >= 1 && h.vcpus <= 64);
	CHECK(h.src_domid <= PVM_HV_DOMID_MAX);
	CHECK(!h.keep_domid || h.src_domid);
	CHECK(h.dc.nr_disks <= PVM_HV_MAX_DISKS);
	CHECK(h.dc.nr_nics <= PVM_HV_MAX_NICS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_msg_in m;
	char why[256] = "";
	int type;

	mig_msg_init(&m);
	type = mig_msg_decode(data, size, &m, why, sizeof(why));
	if (type < 0) {
		CHECK(type == -EBADMSG || type == -ENOMEM);
		CHECK(type == -ENOMEM || why[0]);
		CHECK(m.kv.n == 0 && !m.raw);
	} else {
		CHECK(type == data[0] && type == m.type);
		CHECK(strcmp(mig_msg_name(type), "unknown"));
		CHECK(size >= MIG_HDR_SIZE);
		CHECK(pvm_get_le32(data + 4) == size - MIG_HDR_SIZE);
		if (m.raw) {
			CHECK(m.raw == data + MIG_HDR_SIZE);
			CHECK(m.raw_len == size - MIG_HDR_SIZE);
			CHECK(m.kv.n == 0);
		} else {
			check_reencode(data, size, &m);
		}
		for (int st = 0; st < MIG_SRC_NSTATES; st++)
			(void)mig_src_may_recv(type, st);
		for (int st = 0; st < MIG_DST_NSTATES; st++)
			(void)mig_dst_may_recv(type, st);
		if (type == MIG_HELLO)
			check_hello(&m);
	}
	mig_msg_dispose(&m);
	CHECK(m.kv.n == 0);
	return 0;
}
