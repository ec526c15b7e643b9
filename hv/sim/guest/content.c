/*
 * Page content generators (content.h): the page classes of "mixed", the
 * profile they are drawn with, and "counter" and "random".
 *
 * Every generator is seeded from (page, generation) and draws from a small
 * fast generator (wyrand), so a page costs a few microseconds: a simulated
 * vCPU rewriting 25,600 pages/s spends about a tenth of a core on it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hv/sim/guest/content.h"

#define WORDS (PVM_CONTENT_PAGE / 8)

/*
 * The profile. Measured by `pvm-bench-content profile IMAGE` (tests/bench/
 * content/) over the populated 2 MiB extents of the RAM image named in
 * pvm_content_profile_source; each class's knob was then tuned by
 * `pvm-bench-content calibrate` until generated pages of that class
 * compress (lz4, one page at a time) like the measured ones.
 */
const char pvm_content_profile_source[] =
	"placeholder: not yet measured";

const struct pvm_page_class_profile pvm_content_profile[PVM_PC_COUNT] = {
	[PVM_PC_ZERO] = { "zero", 1794, 0, 0 },
	[PVM_PC_REPEAT] = { "repeat", 1492, 138.93, 1 },
	[PVM_PC_TEXT] = { "text", 267, 1.81, 9 },
	[PVM_PC_POINTER] = { "pointer", 2833, 4.03, 183 },
	[PVM_PC_BINARY] = { "binary", 2103, 1.61, 474 },
	[PVM_PC_RANDOM] = { "random", 1511, 1.00, 0 },
};

/* ---- generator -------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* wyrand: one multiply per 64 bits. */
static inline uint64_t rnd(uint64_t *s)
{
	__uint128_t t;

	*s += 0xa0761d6478bd642full;
	t = (__uint128_t)*s * (*s ^ 0xe7037ed1a0b428dbull);
	return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

static uint64_t page_seed(uint64_t pfn, uint64_t gen)
{
	return splitmix64(pfn * 0x9e3779b97f4a7c15ull ^ splitmix64(gen));
}

/* ---- classes ------------------------------------------------------------ */

static void fill_random(uint64_t *w, uint64_t s)
{
	for (unsigned i = 0; i < WORDS; i++)
		w[i] = rnd(&s);
}

/* knob: distinct words (1..8), tiled. */
static void fill_repeat(uint64_t *w, uint64_t s, uint32_t knob)
{
	static const uint64_t common[] = {
		0xffffffffffffffffull, 0x6b6b6b6b6b6b6b6bull, /* slab poison */
		0x5a5a5a5a5a5a5a5aull, 0xccccccccccccccccull, /* int3 fill */
		0x0000000100000001ull, 0x9090909090909090ull,
	};
	uint64_t pat[8];
	unsigned n = knob < 1 ? 1 : knob > 8 ? 8 : knob;

	for (unsigned i = 0; i < n; i++) {
		uint64_t r = rnd(&s);

		pat[i] = r & 1 ? common[(r >> 8) % 6] : r >> 40;
	}
	for (unsigned i = 0; i < WORDS; i++)
		w[i] = pat[i % n];
}

/* A fixed vocabulary: common words of logs, source and prose, then
 * pseudo-words made from a fixed seed. */
static const char *const base_words[] = {
	"the", "of", "and", "to", "in", "is", "for", "on", "that", "with",
	"error", "return", "int", "static", "struct", "const", "void", "if",
	"else", "while", "char", "uint64_t", "NULL", "size", "len", "buf",
	"data", "file", "device", "kernel", "user", "name", "value", "type",
	"info", "debug", "warning", "failed", "started", "service", "config",
	"usr", "lib", "bin", "share", "etc", "var", "log", "http", "www",
	"0x0", "1", "2", "10", "100", "true", "false", "default", "from", "by",
};
#define NBASE (sizeof(base_words) / sizeof(base_words[0]))
#define VOCAB 1024
static char vocab[VOCAB][12];
static uint8_t vocab_len[VOCAB];

static void vocab_init(void)
{
	static int done; /* racy but idempotent: every thread writes the same */
	uint64_t s = 0x70766d6967ull;

	if (__atomic_load_n(&done, __ATOMIC_ACQUIRE))
		return;
	for (unsigned i = 0; i < VOCAB; i++) {
		if (i < NBASE) {
			vocab_len[i] = (uint8_t)strlen(base_words[i]);
			memcpy(vocab[i], base_words[i], vocab_len[i]);
			continue;
		}
		unsigned len = 2 + rnd(&s) % 9;

		for (unsigned j = 0; j < len; j++)
			vocab[i][j] = (char)('a' + rnd(&s) % 26);
		vocab_len[i] = (uint8_t)len;
	}
	__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
}

/* knob: words of the vocabulary in use (8..VOCAB); more is less
 * compressible. Words are drawn skewed toward the front (min of two). */
static void fill_text(uint8_t *p, uint64_t s, uint32_t knob)
{
	unsigned n = knob < 8 ? 8 : knob > VOCAB ? VOCAB : knob, o = 0, col = 0;

	vocab_init();
	while (o < PVM_CONTENT_PAGE) {
		uint64_t r = rnd(&s);
		unsigned a = (unsigned)(r % n), b = (unsigned)((r >> 20) % n);
		unsigned i = a < b ? a : b, l = vocab_len[i];

		if (o + l + 1 > PVM_CONTENT_PAGE) {
			memset(p + o, ' ', PVM_CONTENT_PAGE - o);
			break;
		}
		memcpy(p + o, vocab[i], l);
		o += l;
		col += l + 1;
		p[o++] = col > 72 ? '\n' : ' ';
		if (p[o - 1] == '\n')
			col = 0;
	}
}

/* knob: pointers per 1,000 words; the others are zero (7 in 8) and small
 * integers. Pointers are 8-byte aligned in a few kernel/user regions; half
 * of them repeat one of the page's 16 (list heads, parents, ops tables). */
static void fill_pointer(uint64_t *w, uint64_t s, uint32_t knob)
{
	static const uint64_t base[4] = {
		0xffff888000000000ull, 0xffff888100000000ull,
		0xffffffff81000000ull, 0x00007f0000000000ull,
	};
	uint64_t near[16];

	for (unsigned i = 0; i < 16; i++) {
		uint64_t r = rnd(&s);

		near[i] = base[(r >> 10) & 3] + ((r >> 16) & 0x3ffffff8ull);
	}
	for (unsigned i = 0; i < WORDS; i++) {
		uint64_t r = rnd(&s);
		unsigned k = (unsigned)(r % 1000);

		if (k < knob)
			w[i] = r & (1u << 12) ? near[(r >> 13) & 15]
					      : base[(r >> 10) & 3] +
							((r >> 16) & 0x3ffffff8ull);
		else if ((r >> 20) & 7)
			w[i] = 0;
		else
			w[i] = (r >> 24) & 0xff;
	}
}

/* knob: chance per 1,000 steps of copying 4..15 bytes from earlier in the
 * page instead of writing 1..8 fresh bytes (an LZ-shaped generator: the
 * knob sets the lz4 ratio). */
static void fill_binary(uint8_t *p, uint64_t s, uint32_t knob)
{
	unsigned o = 0;

	while (o < PVM_CONTENT_PAGE) {
		uint64_t r = rnd(&s);
		unsigned left = PVM_CONTENT_PAGE - o;

		if (o >= 16 && (unsigned)(r % 1000) < knob) {
			unsigned len = 4 + (unsigned)((r >> 10) % 12);
			unsigned back = 1 + (unsigned)((r >> 20) % (o < 2048 ? o : 2048));

			if (len > left)
				len = left;
			if (back >= len) {
				memcpy(p + o, p + o - back, len);
				o += len;
			} else {
				for (unsigned j = 0; j < len; j++, o++)
					p[o] = p[o - back]; /* overlaps */
			}
		} else {
			uint64_t v = rnd(&s);
			unsigned len = 1 + (unsigned)((r >> 10) % 8);

			if (len > left)
				len = left;
			memcpy(p + o, &v, len);
			o += len;
		}
	}
}

void pvm_content_fill_class(enum pvm_page_class cls, void *page, uint64_t seed,
			    uint32_t knob)
{
	switch (cls) {
	case PVM_PC_ZERO:
		memset(page, 0, PVM_CONTENT_PAGE);
		break;
	case PVM_PC_REPEAT:
		fill_repeat(page, seed, knob);
		break;
	case PVM_PC_TEXT:
		fill_text(page, seed, knob);
		break;
	case PVM_PC_POINTER:
		fill_pointer(page, seed, knob);
		break;
	case PVM_PC_BINARY:
		fill_binary(page, seed, knob);
		break;
	case PVM_PC_RANDOM:
	default:
		fill_random(page, seed);
		break;
	}
}

enum pvm_page_class pvm_content_class(enum pvm_content c, uint64_t pfn,
				      uint64_t gen)
{
	uint32_t r, acc = 0;

	if (c == PVM_CONTENT_COUNTER)
		return PVM_PC_REPEAT;
	if (c == PVM_CONTENT_RANDOM)
		return PVM_PC_RANDOM;
	r = (uint32_t)(splitmix64(page_seed(pfn, gen) ^ 0x636c617373ull) % 10000);
	for (int k = 0; k < PVM_PC_COUNT; k++) {
		acc += pvm_content_profile[k].share;
		if (r < acc)
			return (enum pvm_page_class)k;
	}
	return PVM_PC_RANDOM;
}

void pvm_content_fill(enum pvm_content c, void *page, uint64_t pfn,
		      uint64_t gen)
{
	uint64_t *w = page;

	switch (c) {
	case PVM_CONTENT_COUNTER: {
		uint64_t v = pfn << 32 | (gen & 0xffffffffu);

		for (unsigned i = 0; i < WORDS; i++)
			w[i] = v;
		break;
	}
	case PVM_CONTENT_RANDOM:
		fill_random(w, page_seed(pfn, gen));
		break;
	case PVM_CONTENT_MIXED:
	default: {
		enum pvm_page_class k = pvm_content_class(c, pfn, gen);

		pvm_content_fill_class(k, page, page_seed(pfn, gen),
				       pvm_content_profile[k].knob);
		break;
	}
	}
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void pvm_pace_init(struct pvm_pace *p, uint64_t rate)
{
	p->start = mono_now();
	p->rate = rate;
	p->done = 0;
}

void pvm_pace_wait(struct pvm_pace *p)
{
	if (!p->rate)
		return;
	for (;;) {
		double due = (mono_now() - p->start) * (double)p->rate;
		double slack = (double)p->rate / 10.0;

		if (due - (double)p->done > slack)
			p->done = (uint64_t)(due - slack);
		if ((double)p->done < due)
			break;
		struct timespec ts = { 0, 2000000 };

		nanosleep(&ts, NULL);
	}
	p->done++;
}

int pvm_content_parse(const char *name, enum pvm_content *out)
{
	static const char *const names[] = { "counter", "random", "mixed" };

	for (unsigned i = 0; i < 3; i++)
		if (strcmp(name, names[i]) == 0) {
			*out = (enum pvm_content)i;
			return 0;
		}
	return -EINVAL;
}

const char *pvm_content_name(enum pvm_content c)
{
	return c == PVM_CONTENT_COUNTER ? "counter"
	       : c == PVM_CONTENT_RANDOM ? "random"
					 : "mixed";
}

int pvm_content_parse_size(const char *s, uint64_t *bytes)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	default: break;
	}
	if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
		end += strlen(end);
	if (*end || v > (1ull << 40) >> shift)
		return -EINVAL;
	*bytes = v << shift;
	return 0;
}
