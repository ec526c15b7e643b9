/*
 * pvm-bench-transport: the two ends of the transport benchmark.
 *
 *   gen  FILE MIB            write the synthetic memory image: per page, by a
 *                            hash of its number, 1/2 zero, 1/4 text-like,
 *                            1/4 random
 *   recv PORT CERTDIR OUT    accept one channel, write every page at its pfn
 *                            into OUT (pre-sized, zero pages skipped), print
 *                            a JSON line of figures when the sender closes
 *   send HOST PORT CERTDIR IMG [--streams N] [--no-compress] [--pace-ms N]
 *                            read IMG 1 MiB at a time (as a migration maps
 *                            guest pages) and send it all, then finish;
 *                            --pace-ms sleeps after each MiB (tests use it
 *                            to kill a peer mid-transfer for sure)
 *
 * Each side reports wall time, CPU seconds (getrusage) and the peak of its
 * anonymous memory (sampled), which is the transport's own footprint: the
 * image is read and written through files, never mapped.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "transport/transport.h"

#define CHUNK_PAGES 256u

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static void make_page(uint64_t pfn, uint8_t *p)
{
	static const char *const words[] = {
		"the ", "guest ", "page ", "memory ", "xen ", "ring ", "grant ",
		"event ", "channel ", "block ", "net ", "frontend ", "backend ",
		"state ", "connected ", "suspend ", "resume ", "dirty ", "log ",
		"round ", "\n", "0x7f3a ", "struct ", "int ", "return ", "{ ",
		"} ", "if ", "for ", "while ", "static ", "void ",
	};
	uint64_t h = mix(pfn), r = h;
	unsigned cls = (unsigned)(h & 3);

	if (cls <= 1) {
		memset(p, 0, PVM_PAGE_SIZE);
	} else if (cls == 2) {
		size_t off = 0;
		while (off < PVM_PAGE_SIZE) {
			const char *w;
			size_t n;

			r = mix(r + 1);
			w = words[r % PVM_ARRAY_SIZE(words)];
			n = strlen(w);
			if (n > PVM_PAGE_SIZE - off)
				n = PVM_PAGE_SIZE - off;
			memcpy(p + off, w, n);
			off += n;
		}
	} else {
		for (size_t i = 0; i < PVM_PAGE_SIZE; i += 8) {
			r = mix(r + i + 1);
			memcpy(p + i, &r, 8);
		}
	}
}

static int do_gen(const char *path, unsigned mib)
{
	uint64_t pages = (uint64_t)mib << (20 - PVM_PAGE_SHIFT);
	uint8_t *buf = malloc(CHUNK_PAGES * PVM_PAGE_SIZE);
	FILE *f = fopen(path, "w");

	if (!f || !buf) {
		perror(path);
		return 1;
	}
	for (uint64_t pfn = 0; pfn < pages; pfn += CHUNK_PAGES) {
		for (unsigned i = 0; i < CHUNK_PAGES; i++)
			make_page(pfn + i, buf + (size_t)i * PVM_PAGE_SIZE);
		if (fwrite(buf, PVM_PAGE_SIZE, CHUNK_PAGES, f) != CHUNK_PAGES) {
			perror("write");
			return 1;
		}
	}
	free(buf);
	return fclose(f) ? 1 : 0;
}

/* ---- memory sampling --------------------------------------------------- */

static volatile bool sampling = true;
static long peak_anon_kb;

static long rss_anon_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld kB", &v) == 1)
			break;
	fclose(f);
	return v;
}

static void *sampler(void *arg)
{
	(void)arg;
	while (sampling) {
		long v = rss_anon_kb();
		if (v > peak_anon_kb)
			peak_anon_kb = v;
		usleep(10000);
	}
	return NULL;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int load_tls(const char *dir, const char *host, struct pvm_tls_ctx **t)
{
	char ca[512], cert[512], key[512];
	struct pvm_tls_files f = { ca, cert, key, NULL };

	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/%s.pem", dir, host);
	snprintf(key, sizeof(key), "%s/%s.key", dir, host);
	return pvm_tls_ctx_new(&f, t);
}

/* ---- receiver ---------------------------------------------------------- */

struct rx {
	int fd;
	_Atomic uint64_t pages;
};

static int rx_pages(void *ctx, const uint64_t *pfns,
		    const uint8_t *const *pages, size_t n)
{
	struct rx *rx = ctx;
	size_t i = 0;

	/* Coalesce runs of consecutive non-zero pages into one pwrite: the
	 * receiver's buffers hold them back to back. */
	while (i < n) {
		size_t j = i + 1;

		if (!pages[i]) {
			i++;
			continue;
		}
		while (j < n && pages[j] && pfns[j] == pfns[j - 1] + 1 &&
		       pages[j] == pages[j - 1] + PVM_PAGE_SIZE)
			j++;
		if (pwrite(rx->fd, pages[i], (j - i) * PVM_PAGE_SIZE,
			   (off_t)(pfns[i] << PVM_PAGE_SHIFT)) !=
		    (ssize_t)((j - i) * PVM_PAGE_SIZE))
			return -EIO;
		i = j;
	}
	atomic_fetch_add(&rx->pages, n);
	return 0;
}

static int do_recv(int port, const char *certs, const char *out)
{
	struct pvm_tls_ctx *tls = NULL;
	struct pvm_listener *l = NULL;
	struct pvm_channel *ch = NULL;
	struct pvm_channel_opts o;
	struct rx rx = { .fd = -1 };
	struct pvm_channel_stats st;
	pthread_t smp;
	uint64_t t0 = 0, t1;
	void *msg;
	size_t len;
	int rc;

	pthread_create(&smp, NULL, sampler, NULL);
	rx.fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (rx.fd < 0 || load_tls(certs, "dst", &tls) ||
	    pvm_transport_listen("127.0.0.1", (uint16_t)port, &l))
		return 1;
	printf("listening %u\n", pvm_listener_port(l));
	fflush(stdout);
	pvm_channel_opts_defaults(&o);
	o.on_pages = rx_pages;
	o.ctx = &rx;
	o.peer_name = "src";
	rc = pvm_transport_accept(l, tls, &o, 60000, &ch);
	if (rc)
		return 1;
	t0 = pvm_now_ns();
	/* First message: the image size, so OUT can be sized. */
	rc = pvm_channel_recv_msg(ch, &msg, &len);
	if (rc || len != 8)
		return 1;
	if (ftruncate(rx.fd, (off_t)pvm_get_le64(msg)))
		return 1;
	free(msg);
	rc = pvm_channel_recv_msg(ch, &msg, &len);
	t1 = pvm_now_ns();
	if (rc != -ESHUTDOWN) {
		const char *why;
		pvm_channel_error(ch, &why);
		fprintf(stderr, "recv: channel ended with %d: %s\n", rc, why);
		return 1;
	}
	pvm_channel_stats(ch, &st);
	sampling = false;
	pthread_join(smp, NULL);
	printf("{\"side\":\"recv\",\"wall_s\":%.4f,\"cpu_s\":%.3f,\"pages\":%llu,"
	       "\"zero_pages\":%llu,\"wire_bytes\":%llu,\"peak_anon_kib\":%ld}\n",
	       (double)(t1 - t0) / 1e9, cpu_seconds(),
	       (unsigned long long)st.pages, (unsigned long long)st.zero_pages,
	       (unsigned long long)st.wire_bytes, peak_anon_kb);
	pvm_channel_close(ch);
	pvm_listener_close(l);
	pvm_tls_ctx_free(tls);
	close(rx.fd);
	return 0;
}

/* ---- sender ------------------------------------------------------------ */

static int do_send(const char *host, int port, const char *certs,
		   const char *img, unsigned streams, bool compress,
		   unsigned pace_ms)
{
	struct pvm_tls_ctx *tls = NULL;
	struct pvm_channel *ch = NULL;
	struct pvm_channel_opts o;
	struct pvm_channel_stats st;
	uint64_t pfns[CHUNK_PAGES];
	const uint8_t *ptrs[CHUNK_PAGES];
	uint8_t *buf = malloc(CHUNK_PAGES * PVM_PAGE_SIZE);
	uint8_t sz[8];
	struct stat sb;
	pthread_t smp;
	uint64_t t0, t1, pages;
	int fd = open(img, O_RDONLY), rc;

	pthread_create(&smp, NULL, sampler, NULL);
	if (fd < 0 || fstat(fd, &sb) || !buf || load_tls(certs, "src", &tls))
		return 1;
	pages = (uint64_t)sb.st_size / PVM_PAGE_SIZE;
	pvm_channel_opts_defaults(&o);
	o.streams = streams;
	o.compress = compress;
	o.peer_name = "dst";
	t0 = pvm_now_ns();
	rc = pvm_transport_connect(host, (uint16_t)port, tls, &o, &ch);
	if (rc)
		return 1;
	pvm_put_le64(sz, (uint64_t)sb.st_size);
	rc = pvm_channel_send_msg(ch, sz, sizeof(sz));
	for (uint64_t pfn = 0; !rc && pfn < pages; pfn += CHUNK_PAGES) {
		size_t n = pages - pfn < CHUNK_PAGES ? pages - pfn : CHUNK_PAGES;
		ssize_t got = pread(fd, buf, n * PVM_PAGE_SIZE,
				    (off_t)(pfn * PVM_PAGE_SIZE));

		if (got != (ssize_t)(n * PVM_PAGE_SIZE))
			return 1;
		for (size_t i = 0; i < n; i++) {
			pfns[i] = pfn + i;
			ptrs[i] = buf + i * PVM_PAGE_SIZE;
		}
		rc = pvm_channel_send_pages(ch, pfns, ptrs, n);
		if (pace_ms)
			usleep(pace_ms * 1000u);
	}
	if (!rc)
		rc = pvm_channel_finish(ch);
	t1 = pvm_now_ns();
	if (rc) {
		const char *why;
		pvm_channel_error(ch, &why);
		fprintf(stderr, "send: failed %d: %s\n", rc, why);
		return 1;
	}
	pvm_channel_stats(ch, &st);
	sampling = false;
	pthread_join(smp, NULL);
	printf("{\"side\":\"send\",\"wall_s\":%.4f,\"cpu_s\":%.3f,\"streams\":%u,"
	       "\"pages\":%llu,\"zero_pages\":%llu,\"raw_bytes\":%llu,"
	       "\"wire_bytes\":%llu,\"batches_lz4\":%llu,\"batches_raw\":%llu,"
	       "\"peak_anon_kib\":%ld}\n",
	       (double)(t1 - t0) / 1e9, cpu_seconds(), streams,
	       (unsigned long long)st.pages, (unsigned long long)st.zero_pages,
	       (unsigned long long)st.raw_bytes,
	       (unsigned long long)st.wire_bytes,
	       (unsigned long long)st.batches_lz4,
	       (unsigned long long)st.batches_raw, peak_anon_kb);
	pvm_channel_close(ch);
	pvm_tls_ctx_free(tls);
	free(buf);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "gen"))
		return do_gen(argv[2], (unsigned)atoi(argv[3]));
	if (argc == 5 && !strcmp(argv[1], "recv"))
		return do_recv(atoi(argv[2]), argv[3], argv[4]);
	if (argc >= 6 && !strcmp(argv[1], "send")) {
		unsigned streams = PVM_TP_STREAMS_DEFAULT;
		bool compress = true;
		unsigned pace_ms = 0;

		for (int i = 6; i < argc; i++) {
			if (!strcmp(argv[i], "--streams") && i + 1 < argc)
				streams = (unsigned)atoi(argv[++i]);
			else if (!strcmp(argv[i], "--no-compress"))
				compress = false;
			else if (!strcmp(argv[i], "--pace-ms") && i + 1 < argc)
				pace_ms = (unsigned)atoi(argv[++i]);
		}
		return do_send(argv[2], atoi(argv[3]), argv[4], argv[5],
			       streams, compress, pace_ms);
	}
	fprintf(stderr,
		"usage: %s gen FILE MIB | recv PORT CERTDIR OUT | send HOST PORT CERTDIR IMG [--streams N] [--no-compress] [--pace-ms N]\n",
		argv[0]);
	return 2;
}
