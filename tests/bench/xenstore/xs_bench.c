/*
 * xs_bench — requests/s of a READ/WRITE mix from N concurrent libxenstore
 * clients against a xenstore server (XENSTORED_PATH). A benchmark, not a
 * test: it prints the figure and asserts nothing about it.
 *
 *   xs_bench [--clients N] [--seconds S] [--read-pct P]
 *
 * Each client owns /bench/c<i> with 16 keys, so clients never conflict;
 * every request waits for its reply (libxenstore is synchronous).
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xenstore.h>

#define KEYS 16

struct client {
	pthread_t thr;
	unsigned int id;
	unsigned int read_pct;
	unsigned long ops, errors;
};

static atomic_int go, stop;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	struct xs_handle *h = xs_open(0);
	unsigned int seed = c->id * 7919u + 1;
	char path[64], val[32];

	if (!h) {
		c->errors++;
		return NULL;
	}
	for (int k = 0; k < KEYS; k++) {
		snprintf(path, sizeof(path), "/bench/c%u/k%d", c->id, k);
		if (!xs_write(h, XBT_NULL, path, "0", 1))
			c->errors++;
	}
	while (!atomic_load(&go))
		;
	while (!atomic_load(&stop)) {
		unsigned int r = (unsigned int)rand_r(&seed);
		unsigned int len;

		snprintf(path, sizeof(path), "/bench/c%u/k%u", c->id, r % KEYS);
		if (r / KEYS % 100 < c->read_pct) {
			char *v = xs_read(h, XBT_NULL, path, &len);

			if (!v)
				c->errors++;
			free(v);
		} else {
			int n = snprintf(val, sizeof(val), "%lu", c->ops);

			if (!xs_write(h, XBT_NULL, path, val, (unsigned int)n))
				c->errors++;
		}
		c->ops++;
	}
	xs_close(h);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "clients", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "read-pct", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned int nclients = 8, read_pct = 80;
	double seconds = 3, t0, t1;
	unsigned long total = 0, errors = 0;
	struct client *cl;
	int o;

	while ((o = getopt_long(argc, argv, "c:s:r:", opts, NULL)) != -1) {
		switch (o) {
		case 'c': nclients = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 's': seconds = strtod(optarg, NULL); break;
		case 'r': read_pct = (unsigned int)strtoul(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: xs_bench [--clients N] [--seconds S] [--read-pct P]\n");
			return 2;
		}
	}
	if (nclients == 0 || nclients > 256 || read_pct > 100 || seconds <= 0) {
		fprintf(stderr, "xs_bench: bad arguments\n");
		return 2;
	}
	cl = calloc(nclients, sizeof(*cl));
	if (!cl)
		return 1;
	for (unsigned int i = 0; i < nclients; i++) {
		cl[i].id = i;
		cl[i].read_pct = read_pct;
		if (pthread_create(&cl[i].thr, NULL, client_main, &cl[i])) {
			fprintf(stderr, "xs_bench: pthread_create failed\n");
			return 1;
		}
	}
	t0 = now();
	atomic_store(&go, 1);
	while ((t1 = now()) - t0 < seconds) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	atomic_store(&stop, 1);
	for (unsigned int i = 0; i < nclients; i++) {
		pthread_join(cl[i].thr, NULL);
		total += cl[i].ops;
		errors += cl[i].errors;
	}
	t1 = now();
	printf("xenstore: %.0f requests/s (%u clients, %u%% READ / %u%% WRITE, "
	       "%lu requests in %.2f s, %lu errors)\n",
	       (double)total / (t1 - t0), nclients, read_pct, 100 - read_pct,
	       total, t1 - t0, errors);
	free(cl);
	return errors ? 1 : 0;
}
