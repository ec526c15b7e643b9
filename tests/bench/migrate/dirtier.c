/* The QEMU guest's workload for tests/bench/migrate.sh: the same job as
 * pvmig's simulated `dirty:FIRST:COUNT:RATE` workload, as a static program
 * run as the guest's init payload.
 *
 *   dirtier COUNT RATE THREADS
 *
 * THREADS threads rewrite COUNT pages of a private mapping (thread t owns
 * pages t, t+THREADS, ...), each at RATE pages/s (0 = flat out; COUNT 0 =
 * no writes, heartbeat only). Every page carries (page, generation) in each
 * 64-bit word; before a page is rewritten three of its words are checked
 * against the generation last written, so memory that comes back wrong after
 * a migration is counted in `errors`. Once a second a heartbeat line goes to
 * stdout (the serial console):
 *   pvmig-bench hb SEQ writes=N errors=N
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static unsigned long count, rate, nthreads;
static uint64_t *mem;
static uint32_t *gen;
static volatile unsigned long writes[64], errors[64];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill(unsigned long p)
{
	uint64_t v = ((uint64_t)p << 32) | gen[p], *w = mem + p * WORDS;
	for (int i = 0; i < WORDS; i++)
		w[i] = v;
}

static void *worker(void *arg)
{
	unsigned long t = (unsigned long)arg, p = t, done = 0;
	double start = now();
	for (;;) {
		if (rate) {
			double due = (now() - start) * rate;
			if (due - done > rate / 10.0) /* no burst after a pause */
				done = (unsigned long)(due - rate / 10.0);
			if (done >= due) {
				struct timespec ts = { 0, 2000000 };
				nanosleep(&ts, NULL);
				continue;
			}
		}
		uint64_t want = ((uint64_t)p << 32) | gen[p], *w = mem + p * WORDS;
		if (w[0] != want || w[WORDS / 2] != want || w[WORDS - 1] != want)
			errors[t]++;
		gen[p]++;
		fill(p);
		writes[t]++;
		done++;
		p += nthreads;
		if (p >= count)
			p = t;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: dirtier COUNT RATE THREADS\n");
		return 2;
	}
	count = strtoul(argv[1], NULL, 0);
	rate = strtoul(argv[2], NULL, 0);
	nthreads = strtoul(argv[3], NULL, 0);
	if (nthreads < 1 || nthreads > 64 || (count && count < nthreads))
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (count) {
		mem = mmap(NULL, count * PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		gen = calloc(count, sizeof(*gen));
		if (mem == MAP_FAILED || !gen) {
			perror("dirtier: memory");
			return 1;
		}
		for (unsigned long p = 0; p < count; p++)
			fill(p);
		for (unsigned long t = 0; t < nthreads; t++) {
			pthread_t th;
			if (pthread_create(&th, NULL, worker, (void *)t)) {
				perror("dirtier: thread");
				return 1;
			}
		}
	}
	printf("pvmig-bench dirtier ready: %lu pages, %lu pages/s x %lu threads\n",
	       count, rate, nthreads);
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
