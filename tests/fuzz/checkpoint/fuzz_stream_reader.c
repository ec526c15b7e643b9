/*
 * libFuzzer target over pvm_ckpt_read(): every input is a stream, read
 * twice, as a restore (x86 HVM only, typed handlers that touch every byte
 * they are given) and as a verify (PV streams too, no handlers). The reader
 * must return 0 or a negative errno, never crash, leak or read out of
 * bounds, and never report success with an error message set.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/stream/stream.h"
#include "common/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct src {
	const uint8_t *p;
	size_t len, off;
};

static int src_read(void *ctx, void *buf, size_t len, size_t *got_out)
{
	struct src *s = ctx;
	size_t n = s->len - s->off;

	if (n > len)
		n = len;
	/* Odd sizes exercise short reads. */
	if (n > 4093)
		n = 4093;
	memcpy(buf, s->p + s->off, n);
	s->off += n;
	*got_out = n;
	return 0;
}

static volatile unsigned sink;

static void touch(const void *p, size_t n)
{
	const uint8_t *b = p;

	if (n)
		sink += b[0] + b[n - 1];
}

static int on_meta(void *c, const struct pvm_ckpt_meta *m)
{
	touch(m->name, strlen(m->name) + 1);
	return 0;
}

static int on_page(void *c, uint64_t pfn, unsigned type, const void *d)
{
	if (d)
		touch(d, 4096);
	return 0;
}

static int on_tsc(void *c, const struct pvm_ckpt_tsc_info *t)
{
	return 0;
}

static int on_params(void *c, const struct pvm_ckpt_hvm_param *p, size_t n)
{
	touch(p, n * sizeof(*p));
	return 0;
}

static int on_blob(void *c, const void *b, size_t n)
{
	touch(b, n);
	return 0;
}

static int on_device(void *c, const struct pvm_ckpt_device *d)
{
	touch(d->fe_path, strlen(d->fe_path) + 1);
	touch(d->be_path, strlen(d->be_path) + 1);
	for (unsigned i = 0; i < d->nr_rings; i++)
		touch(d->rings[i].ring_ref, (1u << d->rings[i].order) * 4);
	return 0;
}

static int on_evtchns(void *c, const struct pvm_ckpt_evtchn *v, size_t n)
{
	touch(v, n * sizeof(*v));
	return 0;
}

static int on_grants(void *c, const struct pvm_ckpt_grant_table *g)
{
	touch(g->entries, g->count * sizeof(*g->entries));
	return 0;
}

static int on_emu(void *c, uint32_t t, uint32_t id, uint32_t idx,
		  const void *d, size_t n)
{
	touch(d, n);
	return 0;
}

static int on_record(void *c, const struct pvm_ckpt_record *r)
{
	touch(r->body, r->length);
	return 0;
}

static const struct pvm_ckpt_read_ops ops = {
	.meta = on_meta,
	.page = on_page,
	.tsc_info = on_tsc,
	.hvm_params = on_params,
	.hvm_context = on_blob,
	.xenstore = on_blob,
	.device = on_device,
	.evtchns = on_evtchns,
	.grants = on_grants,
	.emulator = on_emu,
	.record = on_record,
};

static void quiet(void *ctx, enum pvm_log_level lvl, const char *line)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct src s = { data, size, 0 };
	struct pvm_ckpt_read_cfg cfg = {
		.read = src_read,
		.read_ctx = &s,
		.ops = &ops,
		.max_pfns = 1u << 16,
		.max_record = 1u << 20,
	};
	struct pvm_ckpt_info info;
	int rc;

	pvm_log_set_sink(quiet, NULL);
	rc = pvm_ckpt_read(&cfg, &info);
	if (rc > 0 || (rc == 0) != (info.error_msg[0] == 0))
		abort();
	s.off = 0;
	rc = pvm_ckpt_verify(src_read, &s, 0, &info);
	if (rc > 0 || (rc == 0) != (info.error_msg[0] == 0))
		abort();
	return 0;
}
