/*
 * pvm-bench-content — the page content of benchmark guests
 * (hv/sim/guest/content.h), measured and checked.
 *
 *   pvm-bench-content profile IMAGE
 *       classifies every page of a raw RAM image (4 KiB pages from
 *       physical address 0, e.g. QEMU's `pmemsave` or the pages of an
 *       `xl save` image) and prints each class's share and lz4 ratio, over
 *       the populated part: 2 MiB extents holding at least one non-zero
 *       page (the extents that are all zero are memory the guest never
 *       touched). Ends with the C rows of pvm_content_profile.
 *   pvm-bench-content calibrate
 *       for each class with a knob, the knob whose generated pages
 *       compress closest to the profile's measured ratio.
 *   pvm-bench-content ratio [PAGES]
 *       for counter, random and mixed: lz4 ratio per page and per
 *       128-page batch (the transport compresses batches), generation
 *       speed, and the class shares actually drawn.
 */
#include <fcntl.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hv/sim/guest/content.h"

#define PAGE PVM_CONTENT_PAGE
#define EXTENT_PAGES 512 /* 2 MiB */
#define BATCH_PAGES 128  /* PVM_TP_BATCH_PAGES */

static char cbuf[LZ4_COMPRESSBOUND(PAGE * BATCH_PAGES)];

static size_t lz4_len(const void *p, size_t n)
{
	int r = LZ4_compress_default(p, cbuf, (int)n, (int)sizeof(cbuf));

	return r > 0 ? (size_t)r : n;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int is_zero(const uint64_t *w)
{
	for (unsigned i = 0; i < PAGE / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

static int is_pointer(uint64_t v)
{
	/* x86-64 kernel half (direct map, vmalloc, text) or a user address
	 * above 0x550000000000 (heap, mmap, stack). */
	return (v >> 47) == 0x1ffff ||
	       ((v >> 47) == 0 && v >= 0x550000000000ull);
}

/* The class of a real page (the rules docs/benchmarks.md states). */
static enum pvm_page_class classify(const uint8_t *p, size_t *clen)
{
	const uint64_t *w = (const void *)p;
	uint64_t distinct[9];
	unsigned nd = 0, ptr = 0, nonzero = 0, printable = 0;

	*clen = 0;
	if (is_zero(w))
		return PVM_PC_ZERO;
	for (unsigned i = 0; i < PAGE / 8 && nd <= 8; i++) {
		unsigned j;

		for (j = 0; j < nd && distinct[j] != w[i]; j++)
			;
		if (j == nd)
			distinct[nd++] = w[i];
	}
	*clen = lz4_len(p, PAGE);
	if (nd <= 8)
		return PVM_PC_REPEAT;
	for (unsigned i = 0; i < PAGE; i++) {
		if (!p[i])
			continue;
		nonzero++;
		printable += (p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\n' ||
			     p[i] == '\t' || p[i] == '\r';
	}
	if (nonzero >= PAGE / 2 && printable * 10 >= nonzero * 9)
		return PVM_PC_TEXT;
	for (unsigned i = 0; i < PAGE / 8; i++)
		ptr += is_pointer(w[i]);
	if (ptr >= PAGE / 8 / 8) /* one word in 8 */
		return PVM_PC_POINTER;
	if (*clen * 105 >= (size_t)PAGE * 100)
		return PVM_PC_RANDOM;
	return PVM_PC_BINARY;
}

static int profile(const char *path)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	const uint8_t *img;
	size_t pages, cnt[PVM_PC_COUNT] = { 0 }, clen[PVM_PC_COUNT] = { 0 };
	size_t populated = 0, zero_all = 0, bz = 0, bc = 0;
	uint8_t *batch = malloc(PAGE * BATCH_PAGES);
	unsigned nb = 0;

	if (fd < 0 || fstat(fd, &st) < 0 || !batch) {
		perror(path);
		return 1;
	}
	pages = (size_t)st.st_size / PAGE;
	img = mmap(NULL, pages * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
	if (img == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (size_t e = 0; e < pages; e += EXTENT_PAGES) {
		size_t end = e + EXTENT_PAGES < pages ? e + EXTENT_PAGES : pages;
		int any = 0;

		for (size_t p = e; p < end && !any; p++)
			any = !is_zero((const void *)(img + p * PAGE));
		for (size_t p = e; p < end; p++)
			zero_all += is_zero((const void *)(img + p * PAGE));
		if (!any)
			continue;
		for (size_t p = e; p < end; p++) {
			size_t cl;
			enum pvm_page_class k = classify(img + p * PAGE, &cl);

			cnt[k]++;
			clen[k] += cl;
			populated++;
			if (k == PVM_PC_ZERO)
				continue;
			/* batches of non-zero pages, as the transport sends */
			memcpy(batch + nb * PAGE, img + p * PAGE, PAGE);
			if (++nb == BATCH_PAGES) {
				bz += (size_t)nb * PAGE;
				bc += lz4_len(batch, (size_t)nb * PAGE);
				nb = 0;
			}
		}
	}
	printf("image %s: %zu pages (%.1f MiB), zero %zu (%.1f%%); populated "
	       "2 MiB extents: %zu pages (%.1f MiB)\n",
	       path, pages, pages * PAGE / 1048576.0, zero_all,
	       100.0 * zero_all / pages, populated, populated * PAGE / 1048576.0);
	printf("%-8s %7s %7s %10s\n", "class", "pages", "share", "lz4 ratio");
	size_t nzb = 0, nzc = 0;
	for (int k = 0; k < PVM_PC_COUNT; k++) {
		printf("%-8s %7zu %6.2f%% %10.2f\n", pvm_content_profile[k].name,
		       cnt[k], 100.0 * cnt[k] / populated,
		       clen[k] ? (double)cnt[k] * PAGE / clen[k] : 0.0);
		if (k != PVM_PC_ZERO) {
			nzb += cnt[k] * PAGE;
			nzc += clen[k];
		}
	}
	printf("non-zero pages: lz4 ratio %.2f per page, %.2f per %u-page batch\n",
	       (double)nzb / nzc, bc ? (double)bz / bc : 0.0, BATCH_PAGES);
	printf("\nprofile rows (share per 10,000, measured ratio; knobs from calibrate):\n");
	for (int k = 0; k < PVM_PC_COUNT; k++)
		printf("\t[%d] = { \"%s\", %.0f, %.2f, knob },\n", k,
		       pvm_content_profile[k].name,
		       10000.0 * cnt[k] / populated,
		       clen[k] ? (double)cnt[k] * PAGE / clen[k] : 0.0);
	return 0;
}

/* lz4 ratio of @n generated pages of class @k with @knob, one at a time. */
static double class_ratio(enum pvm_page_class k, uint32_t knob, unsigned n)
{
	static uint64_t page[PAGE / 8];
	size_t c = 0;

	for (unsigned i = 0; i < n; i++) {
		pvm_content_fill_class(k, page, 0x1234567ull * (i + 1), knob);
		c += lz4_len(page, PAGE);
	}
	return (double)n * PAGE / c;
}

static int calibrate(void)
{
	static const struct {
		enum pvm_page_class k;
		uint32_t lo, hi; /* knob range; ratio falls as knob rises */
		int rising;      /* 1: ratio rises with the knob */
	} cl[] = {
		{ PVM_PC_REPEAT, 1, 8, 0 },
		{ PVM_PC_TEXT, 8, 1024, 0 },
		{ PVM_PC_POINTER, 0, 1000, 0 },
		{ PVM_PC_BINARY, 0, 1000, 1 },
	};

	printf("%-8s %8s %6s %10s\n", "class", "measured", "knob", "generated");
	for (unsigned c = 0; c < sizeof(cl) / sizeof(cl[0]); c++) {
		double want = pvm_content_profile[cl[c].k].lz4_ratio;
		uint32_t lo = cl[c].lo, hi = cl[c].hi, best = lo;
		double bestd = 1e9;

		while (lo <= hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			double r = class_ratio(cl[c].k, mid, 2000);
			double d = r > want ? r - want : want - r;

			if (d < bestd) {
				bestd = d;
				best = mid;
			}
			if ((r > want) != (cl[c].rising != 0)) {
				lo = mid + 1;
			} else {
				if (mid == 0)
					break;
				hi = mid - 1;
			}
		}
		printf("%-8s %8.2f %6u %10.2f\n", pvm_content_profile[cl[c].k].name,
		       want, best, class_ratio(cl[c].k, best, 2000));
	}
	return 0;
}

static int ratio(unsigned n)
{
	uint8_t *buf = aligned_alloc(64, (size_t)PAGE * BATCH_PAGES);

	if (!buf)
		return 1;
	printf("%-8s %12s %12s %12s %9s\n", "content", "ratio/page",
	       "ratio/batch", "nonzero/batch", "gen GB/s");
	for (int c = PVM_CONTENT_COUNTER; c <= PVM_CONTENT_MIXED; c++) {
		size_t raw = 0, cpage = 0, cbatch = 0, nzraw = 0, cls[PVM_PC_COUNT] = { 0 };
		double t = 0;
		unsigned nb = 0;

		for (unsigned i = 0; i < n; i++) {
			double t0 = now();

			pvm_content_fill((enum pvm_content)c, buf + nb * PAGE, 100 + i, 7);
			t += now() - t0;
			cls[pvm_content_class((enum pvm_content)c, 100 + i, 7)]++;
			raw += PAGE;
			cpage += lz4_len(buf + nb * PAGE, PAGE);
			if (is_zero((const void *)(buf + nb * PAGE)))
				continue; /* the transport elides zero pages */
			if (++nb == BATCH_PAGES || i + 1 == n) {
				nzraw += (size_t)nb * PAGE;
				cbatch += lz4_len(buf, (size_t)nb * PAGE);
				nb = 0;
			}
		}
		printf("%-8s %12.2f %12.2f %12.2f %9.2f   classes:",
		       pvm_content_name((enum pvm_content)c), (double)raw / cpage,
		       (double)raw / (cbatch ? cbatch : 1),
		       (double)nzraw / (cbatch ? cbatch : 1), raw / t / 1e9);
		for (int k = 0; k < PVM_PC_COUNT; k++)
			printf(" %s %.1f%%", pvm_content_profile[k].name,
			       100.0 * cls[k] / n);
		printf("\n");
	}
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "profile") == 0)
		return profile(argv[2]);
	if (argc == 2 && strcmp(argv[1], "calibrate") == 0)
		return calibrate();
	if ((argc == 2 || argc == 3) && strcmp(argv[1], "ratio") == 0)
		return ratio(argc == 3 ? (unsigned)strtoul(argv[2], NULL, 0) : 65536);
	fprintf(stderr, "usage: pvm-bench-content profile IMAGE | calibrate | ratio [PAGES]\n");
	fprintf(stderr, "profile source: %s\n", pvm_content_profile_source);
	return 2;
}
