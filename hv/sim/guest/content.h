/*
 * Page content for benchmark guests: what a simulated guest (pvmig-simguest)
 * writes into the pages it dirties and populates at start, and what the
 * QEMU peer's dirtier (tests/bench/migrate/dirtier.c) writes, so that both
 * move the same bytes. One implementation, built into both programs; it
 * depends on libc only (the dirtier is linked static into a busybox guest).
 *
 * Contents (workload item "content:NAME", dirtier argument CONTENT):
 *   counter  every 64-bit word of page P at generation G is (P << 32 | G)
 *            (the dirtier's, and the simulated guest's populate step; the
 *            simulated guest's dirty loop keeps its one-counter-per-pass
 *            write for this content, as before)
 *   random   incompressible: 64-bit pseudo-random words
 *   mixed    each page is drawn from the page classes below with the
 *            fractions of a real guest's memory (the profile in content.c,
 *            measured by tests/bench/content/ from a RAM image; where it
 *            came from: docs/benchmarks.md)
 *
 * Every page is a pure function of (content, page number, generation): a
 * reader can regenerate what a page must hold. Whole pages are written.
 */
#ifndef PVM_SIMGUEST_CONTENT_H
#define PVM_SIMGUEST_CONTENT_H

#include <stddef.h>
#include <stdint.h>

#define PVM_CONTENT_PAGE 4096u

enum pvm_content {
	PVM_CONTENT_COUNTER,
	PVM_CONTENT_RANDOM,
	PVM_CONTENT_MIXED,
};

/* The page classes of "mixed", in the profile's order. */
enum pvm_page_class {
	PVM_PC_ZERO,    /* all zero */
	PVM_PC_REPEAT,  /* a few distinct 64-bit words, tiled (fills, poison) */
	PVM_PC_TEXT,    /* mostly printable: words, numbers, newlines */
	PVM_PC_POINTER, /* 64-bit words: kernel/user pointers, small ints, 0 */
	PVM_PC_BINARY,  /* everything else that compresses: code, packed data */
	PVM_PC_RANDOM,  /* does not compress (lz4 ratio < 1.05) */
	PVM_PC_COUNT
};

/* One class of the profile: its share of pages (per 10,000), the lz4 ratio
 * measured on such pages of the real image (each page compressed alone),
 * and the generator's knob tuned to that ratio (content.c). */
struct pvm_page_class_profile {
	const char *name;
	uint32_t share;     /* pages per 10,000; the classes sum to 10,000 */
	double lz4_ratio;   /* measured: page bytes / lz4 bytes, per page */
	uint32_t knob;      /* generator parameter, class-specific */
};

/* The shipped profile (PVM_PC_COUNT entries) and a one-line note of where
 * it was measured. */
extern const struct pvm_page_class_profile pvm_content_profile[PVM_PC_COUNT];
extern const char pvm_content_profile_source[];

/* "counter", "random", "mixed" -> 0 and *out; else -EINVAL. */
int pvm_content_parse(const char *name, enum pvm_content *out);
const char *pvm_content_name(enum pvm_content c);

/* The class page @pfn has at generation @gen (counter: REPEAT, random:
 * RANDOM). */
enum pvm_page_class pvm_content_class(enum pvm_content c, uint64_t pfn,
				      uint64_t gen);

/* Writes the whole page (PVM_CONTENT_PAGE bytes at @page, 8-byte aligned)
 * that content @c has for @pfn at generation @gen. */
void pvm_content_fill(enum pvm_content c, void *page, uint64_t pfn,
		      uint64_t gen);

/* Writes one page of class @cls from @seed with generator knob @knob (the
 * profile's, or another while calibrating). */
void pvm_content_fill_class(enum pvm_page_class cls, void *page, uint64_t seed,
			    uint32_t knob);

/*
 * Pacing of a dirtying thread, the same for both programs: @rate pages/s
 * (0: no pacing). pvm_pace_wait() returns when the next page is due,
 * sleeping 2 ms at a time while ahead; after a stall (a pause, a stop) it
 * catches up at most a tenth of a second's worth, not in a burst.
 */
struct pvm_pace {
	double start;
	uint64_t rate, done;
};
void pvm_pace_init(struct pvm_pace *p, uint64_t rate);
void pvm_pace_wait(struct pvm_pace *p);

/* "96M", "1G", "4096K", "123" (bytes) -> 0 and *bytes; else -EINVAL. */
int pvm_content_parse_size(const char *s, uint64_t *bytes);

#endif /* PVM_SIMGUEST_CONTENT_H */
