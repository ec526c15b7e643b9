/* The QEMU guest's workload for tests/bench/migrate.sh: the same job as
 * pvmig's simulated `content:C,boot:SIZE,dirty:16:COUNT:RATE` workload, as
 * a static program run as the guest's init payload. It is built from this
 * file and hv/sim/guest/content.c, the simulated guest's own generator, so
 * both guests write the same bytes.
 *
 *   dirtier COUNT RATE THREADS [CONTENT [BOOT_PAGES]]
 *
 * At start it writes COUNT working-set pages and BOOT_PAGES more (default
 * 0) with CONTENT (counter, random or mixed; default counter), generation
 * 0. Then THREADS threads rewrite the COUNT pages of the working set (thread
 * t owns pages t, t+THREADS, ...), each at RATE pages/s (0 = flat out;
 * COUNT 0 = no writes, heartbeat only), paced by the same code as the
 * simulated vCPUs. Page i of the working set holds what the simulated
 * guest's pfn 16+i holds at the same pass: content(16+i, generation).
 * Whole pages are written. Each page's checksum is kept when it is
 * written and checked before it is rewritten, so memory that comes back
 * wrong after a migration is counted in `errors`. Once a second a
 * heartbeat line goes to stdout (the serial console):
 *   pvmig-bench hb SEQ writes=N errors=N
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hv/sim/guest/content.h"

#define PAGE PVM_CONTENT_PAGE
#define WORDS (PAGE / 8)
#define FIRST_PFN 16 /* the simulated guest's dirty:16:... */

static unsigned long count, rate, nthreads, boot;
static enum pvm_content content = PVM_CONTENT_COUNTER;
static uint8_t *mem;
static uint32_t *gen;
static uint64_t *sum;
static volatile unsigned long writes[64], errors[64];

static uint64_t checksum(const uint64_t *w)
{
	uint64_t a = 0, b = 0, c = 0, d = 0;

	for (unsigned i = 0; i < WORDS; i += 4) {
		a = (a ^ w[i]) * 0x9e3779b97f4a7c15ull;
		b = (b ^ w[i + 1]) * 0xbf58476d1ce4e5b9ull;
		c = (c ^ w[i + 2]) * 0x94d049bb133111ebull;
		d = (d ^ w[i + 3]) * 0xff51afd7ed558ccdull;
	}
	return a ^ (b << 1) ^ (c << 2) ^ (d << 3);
}

static void fill(unsigned long p)
{
	uint64_t *w = (uint64_t *)(mem + p * PAGE);

	pvm_content_fill(content, w, FIRST_PFN + p, gen[p]);
	sum[p] = checksum(w);
}

static void *worker(void *arg)
{
	unsigned long t = (unsigned long)arg, p = t;
	struct pvm_pace pace;

	pvm_pace_init(&pace, rate);
	for (;;) {
		pvm_pace_wait(&pace);
		if (checksum((const uint64_t *)(mem + p * PAGE)) != sum[p])
			errors[t]++;
		gen[p]++;
		fill(p);
		writes[t]++;
		p += nthreads;
		if (p >= count)
			p = t;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned long total;

	if (argc < 4 || argc > 6 ||
	    (argc >= 5 && pvm_content_parse(argv[4], &content) < 0)) {
		fprintf(stderr, "usage: dirtier COUNT RATE THREADS [counter|random|mixed [BOOT_PAGES]]\n");
		return 2;
	}
	count = strtoul(argv[1], NULL, 0);
	rate = strtoul(argv[2], NULL, 0);
	nthreads = strtoul(argv[3], NULL, 0);
	boot = argc == 6 ? strtoul(argv[5], NULL, 0) : 0;
	if (nthreads < 1 || nthreads > 64 || (count && count < nthreads))
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	total = count + boot;
	if (total) {
		mem = mmap(NULL, total * PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		gen = calloc(total, sizeof(*gen));
		sum = calloc(total, sizeof(*sum));
		if (mem == MAP_FAILED || !gen || !sum) {
			perror("dirtier: memory");
			return 1;
		}
		for (unsigned long p = 0; p < total; p++)
			fill(p);
	}
	for (unsigned long t = 0; count && t < nthreads; t++) {
		pthread_t th;

		if (pthread_create(&th, NULL, worker, (void *)t)) {
			perror("dirtier: thread");
			return 1;
		}
	}
	printf("pvmig-bench dirtier ready: %lu pages + %lu boot pages of %s, "
	       "%lu pages/s x %lu threads\n",
	       count, boot, pvm_content_name(content), rate, nthreads);
	for (unsigned long seq = 0;; seq++) {
		unsigned long w = 0, e = 0;

		for (unsigned long t = 0; t < nthreads; t++) {
			w += writes[t];
			e += errors[t];
		}
		printf("pvmig-bench hb %lu writes=%lu errors=%lu\n", seq, w, e);
		sleep(1);
	}
}
