/*
 * pvmig-simguest — the program a simulated domain runs (one process per
 * domain). Started only by the simulated host (hv/sim/domain.c), with its
 * control socket on fd 3 and its memory memfd on fd 4; see
 * hv/sim/guest_abi.h for the handshake and the memory layout.
 *
 * Usage: pvmig-simguest NR_PAGES NR_VCPUS WORKLOAD [modern|legacy]
 *
 * WORKLOAD is a comma-separated list of "idle", "echo",
 * "dirty:FIRST:COUNT[:RATE]", "blk[:OPS]", "net[:PPS]", "noack", "evil-ring",
 * "evil-gref" (hv/sim/sim.h). With a xenstore connection on fd 5 the main
 * thread runs the PV frontends and the blk/net workload (pv.c).
 *
 * echo: the main thread offers an event channel to domain 0 (hypercall
 * EVTCHN_ALLOC_UNBOUND), publishes its port in the header page, and
 * answers every event it receives with one notify back, counting them in
 * the header. The vCPUs idle.
 *
 * dirty: each vCPU thread
 * writes, round and round, its share (every NR_VCPUS-th page) of pfns
 * [FIRST, FIRST+COUNT), RATE pages per second per vCPU (0 or absent: as
 * fast as it can). Every pass is counted in the header page. What it
 * writes is the content ("content:NAME", content.h; default mixed): with
 * random or mixed, whole pages (page P at pass G holds content(P, G)),
 * the set written once at start before the paced passes; with counter,
 * one 8-byte counter per page per pass at a moving offset (the tests'
 * deterministic content, and what this guest did before contents).
 *
 * boot:SIZE populates SIZE bytes (K/M/G suffixes) of the top of the free
 * area (below the device area) with the content at start, as a booted OS
 * holds its kernel, caches and heap. Default: a quarter of memory, at most
 * 96 MiB (what a 1 GiB Debian guest booted under QEMU holds, 93.5 MiB
 * non-zero: docs/benchmarks.md); 0 with content:counter. A guest started
 * for a restore or an incoming migration (its header page already carries
 * the magic) populates nothing: its memory is the one it was moved with.
 *
 * The guest exits when its control socket reaches EOF (host gone).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hv/sim/guest/content.h"
#include "hv/sim/guest/guest.h"
#include "hv/sim/guest_abi.h"
#include "hv/sim/uapi_compat.h"

struct workload {
	uint64_t first, count, rate;
	bool dirty;
	enum pvm_content content;
	uint64_t boot_bytes;
	bool boot_set;
	bool echo;
	struct pv_workload pv;
};

struct vcpu {
	pthread_t thread;
	unsigned int id;
};

/* The default populated amount's cap: a booted 1 GiB Debian guest's
 * non-zero memory (93.5 MiB, docs/benchmarks.md), rounded. */
#define BOOT_DEFAULT_MAX (96ull << 20)

static uint8_t *mem;
static uint64_t nr_pages;
static unsigned int nr_vcpus;
static struct workload wl;
/* Set before the vCPUs start: memory came with a restore or a migration
 * (the header page already held the magic), so nothing is populated. */
static bool restored;
/* The boot:SIZE region, pfns [boot_first, boot_first + boot_count). */
static uint64_t boot_first, boot_count;

/* One item of the WORKLOAD argument (sim.h lists them). */
static int parse_item(const char *s, struct workload *w)
{
	char *end;

	if (strcmp(s, "idle") == 0)
		return 0;
	if (strcmp(s, "echo") == 0) {
		w->echo = true;
		return 0;
	}
	if (strncmp(s, "content:", 8) == 0)
		return pvm_content_parse(s + 8, &w->content);
	if (strncmp(s, "boot:", 5) == 0) {
		w->boot_set = true;
		return pvm_content_parse_size(s + 5, &w->boot_bytes);
	}
	if (strcmp(s, "noack") == 0) {
		w->pv.no_suspend_ack = true;
		return 0;
	}
	if (strcmp(s, "evil-ring") == 0 || strcmp(s, "evil-gref") == 0) {
		w->pv.blk = true;
		w->pv.evil_ring = s[5] == 'r';
		w->pv.evil_gref = s[5] == 'g';
		return 0;
	}
	if (strncmp(s, "blk", 3) == 0 || strncmp(s, "net", 3) == 0) {
		bool blk = s[0] == 'b';
		uint64_t rate = 200; /* default: 200 per second per device */

		if (s[3] == ':') {
			rate = strtoull(s + 4, &end, 0);
			if (*end || end == s + 4)
				return -EINVAL;
		} else if (s[3]) {
			return -EINVAL;
		}
		if (blk) {
			w->pv.blk = true;
			w->pv.blk_rate = rate;
		} else {
			w->pv.net = true;
			w->pv.net_rate = rate;
		}
		return 0;
	}
	if (strncmp(s, "dirty:", 6) != 0)
		return -EINVAL;
	s += 6;
	w->first = strtoull(s, &end, 0);
	if (*end != ':')
		return -EINVAL;
	w->count = strtoull(end + 1, &end, 0);
	if (*end == ':')
		w->rate = strtoull(end + 1, &end, 0);
	if (*end)
		return -EINVAL;
	if (w->first < PVM_SIMGUEST_FIRST_FREE_PFN || w->first >= nr_pages)
		return -EINVAL;
	if (w->count > nr_pages - w->first)
		w->count = nr_pages - w->first;
	w->dirty = true;
	return 0;
}

/* Comma-separated items; with @has_xs the device area is kept clear. */
static int parse_workload(const char *s, struct workload *w, bool has_xs)
{
	char buf[256], *save = NULL;

	memset(w, 0, sizeof(*w));
	w->content = PVM_CONTENT_MIXED;
	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	for (char *it = strtok_r(buf, ",", &save); it;
	     it = strtok_r(NULL, ",", &save))
		if (parse_item(it, w) < 0)
			return -EINVAL;
	if (!w->boot_set && w->content != PVM_CONTENT_COUNTER) {
		w->boot_bytes = nr_pages * PAGE / 4;
		if (w->boot_bytes > BOOT_DEFAULT_MAX)
			w->boot_bytes = BOOT_DEFAULT_MAX;
	}
	/* A guest big enough for the device area (pv_main runs) keeps the
	 * dirty workload out of it. */
	if (has_xs && w->dirty &&
	    nr_pages >= PVM_SIMGUEST_DEV_PAGES + PVM_SIMGUEST_FIRST_FREE_PFN) {
		uint64_t top = nr_pages - PVM_SIMGUEST_DEV_PAGES;

		if (w->first >= top)
			return -EINVAL;
		if (w->count > top - w->first)
			w->count = top - w->first;
	}
	return 0;
}

/* Whole-page dirtying (random, mixed): the set written once unpaced, then
 * paced passes, page P at pass G holding content(P, G). */
static void dirty_pages(const struct vcpu *v)
{
	struct pvm_simguest_header *hdr = (void *)mem;
	struct pvm_pace pace;

	if (!restored)
		for (uint64_t j = v->id; j < wl.count; j += nr_vcpus)
			pvm_content_fill(wl.content, mem + (wl.first + j) * PAGE,
					 wl.first + j, 0);
	pvm_pace_init(&pace, wl.rate);
	for (uint64_t pass = 1;; pass++) {
		for (uint64_t j = v->id; j < wl.count; j += nr_vcpus) {
			pvm_pace_wait(&pace);
			pvm_content_fill(wl.content, mem + (wl.first + j) * PAGE,
					 wl.first + j, pass);
		}
		__atomic_store_n(&hdr->passes[v->id], pass, __ATOMIC_RELAXED);
	}
}

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct pvm_simguest_header *hdr = (void *)mem;
	uint64_t pass = 0;
	struct timespec gap = { 0, 0 };

	/* boot: each vCPU populates its share of the region. */
	if (!restored)
		for (uint64_t j = v->id; j < boot_count; j += nr_vcpus)
			pvm_content_fill(wl.content, mem + (boot_first + j) * PAGE,
					 boot_first + j, 0);
	if (!wl.dirty || wl.count == 0)
		return NULL;
	if (wl.content != PVM_CONTENT_COUNTER) {
		dirty_pages(v);
		return NULL;
	}
	if (wl.rate) {
		uint64_t ns = 1000000000ull / wl.rate;
		gap.tv_sec = (time_t)(ns / 1000000000ull);
		gap.tv_nsec = (long)(ns % 1000000000ull);
	}
	for (;;) {
		pass++;
		for (uint64_t j = v->id; j < wl.count; j += nr_vcpus) {
			uint64_t pfn = wl.first + j;
			volatile uint64_t *w =
				(volatile uint64_t *)(mem + pfn * PAGE);

			w[(pass + pfn) % (PAGE / 8)] = pass;
			if (wl.rate)
				nanosleep(&gap, NULL);
		}
		__atomic_store_n(&hdr->passes[v->id], pass, __ATOMIC_RELAXED);
	}
	return NULL;
}

static int send_ready(int status, uint64_t addr, uint64_t detail, int uffd)
{
	struct pvm_simguest_msg m = {
		.type = PVM_SIMGUEST_READY,
		.status = status,
		.addr = addr,
		.detail = detail,
	};
	struct iovec iov = { &m, sizeof(m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (uffd >= 0) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = sizeof(cbuf.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	}
	return sendmsg(PVM_SIMGUEST_CTL_FD, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* Creates the userfaultfd in this mm and registers @len bytes at @addr for
 * asynchronous write-protect. Returns the fd or a negative errno and sets
 * *step (guest_abi.h READY.detail). */
static int setup_uffd(void *addr, uint64_t len, uint64_t *step)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = PVM_UFFD_FEATURE_WP_ASYNC |
			    PVM_UFFD_FEATURE_WP_UNPOPULATED,
	};
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	int fd, rc;

	*step = 3;
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd,
				  O_CLOEXEC | O_NONBLOCK | PVM_UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	*step = 1;
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		goto fail;
	if (!(api.features & PVM_UFFD_FEATURE_WP_ASYNC)) {
		errno = EOPNOTSUPP;
		goto fail;
	}
	*step = 2;
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
		goto fail;
	return fd;
fail:
	rc = -errno;
	close(fd);
	return rc;
}

/*
 * One hypercall (guest_abi.h): 0 or the host's negative errno; *@res0 the
 * first result; *@fd_out the attached fd or -1. Main thread only.
 */
int hypercall(uint32_t op, uint32_t a0, uint32_t a1, uint32_t *res0,
	      int *fd_out)
{
	struct pvm_simguest_msg m = {
		.type = PVM_SIMGUEST_CALL,
		.op = op,
		.arg = { a0, a1, 0 },
	};
	struct iovec iov = { &m, sizeof(m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf.buf,
		.msg_controllen = sizeof(cbuf.buf),
	};
	struct cmsghdr *c;
	ssize_t n;

	if (fd_out)
		*fd_out = -1;
	if (send(PVM_SIMGUEST_CTL_FD, &m, sizeof(m), MSG_NOSIGNAL) < 0)
		_exit(0); /* host gone */
	do
		n = recvmsg(PVM_SIMGUEST_CTL_FD, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(m) || m.type != PVM_SIMGUEST_REPLY)
		_exit(0);
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		int fd;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
		if (fd_out && *fd_out < 0)
			*fd_out = fd;
		else
			close(fd);
	}
	if (res0)
		*res0 = m.arg[0];
	return m.status;
}

/* The echo workload (main thread). Returns when the host is gone. */
static void echo_main(void)
{
	struct pvm_simguest_header *hdr = (void *)mem;
	uint32_t port = 0;
	int efd = -1;

	if (hypercall(PVM_SIMGUEST_EVTCHN_ALLOC_UNBOUND, 0, 0, &port, &efd) < 0 ||
	    efd < 0)
		_exit(1);
	__atomic_store_n(&hdr->echo_port, port, __ATOMIC_RELEASE);
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = efd, .events = POLLIN },
			{ .fd = PVM_SIMGUEST_CTL_FD, .events = POLLIN },
		};
		eventfd_t n;

		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[1].revents)
			return; /* no calls outstanding: only EOF comes here */
		if (!(pfd[0].revents & POLLIN) || eventfd_read(efd, &n) < 0)
			continue;
		__atomic_add_fetch(&hdr->echo_count, n, __ATOMIC_RELEASE);
		if (hypercall(PVM_SIMGUEST_EVTCHN_SEND, port, 0, NULL, NULL) < 0)
			_exit(1);
	}
}

int main(int argc, char **argv)
{
	struct pvm_simguest_msg m;
	struct vcpu *vcpus;
	uint64_t step = 0;
	bool has_xs;
	int uffd, rc;
	ssize_t n;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "pvmig-simguest: started by the simulated host only\n");
		return 2;
	}
	has_xs = fcntl(PVM_SIMGUEST_XS_FD, F_GETFD) >= 0;
	nr_pages = strtoull(argv[1], NULL, 0);
	nr_vcpus = (unsigned int)strtoul(argv[2], NULL, 0);
	if (nr_pages < PVM_SIMGUEST_MIN_PAGES || nr_vcpus < 1 ||
	    nr_vcpus > PVM_SIMGUEST_MAX_VCPUS ||
	    parse_workload(argv[3], &wl, has_xs) < 0 ||
	    (argc == 5 && strcmp(argv[4], "modern") != 0 &&
	     strcmp(argv[4], "legacy") != 0)) {
		fprintf(stderr, "pvmig-simguest: bad arguments\n");
		return 2;
	}

	mem = mmap(NULL, nr_pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
		   PVM_SIMGUEST_MEM_FD, 0);
	if (mem == MAP_FAILED) {
		send_ready(-errno, 0, 4, -1);
		return 1;
	}
	close(PVM_SIMGUEST_MEM_FD);
	uffd = setup_uffd(mem, nr_pages * PAGE, &step);
	if (uffd < 0) {
		send_ready(uffd, (uintptr_t)mem, step, -1);
		return 1;
	}
	rc = send_ready(0, (uintptr_t)mem, 0, uffd);
	close(uffd); /* the host's copy keeps the registration alive */
	if (rc < 0)
		return 1;

	n = recv(PVM_SIMGUEST_CTL_FD, &m, sizeof(m), 0);
	if (n != (ssize_t)sizeof(m) || m.type != PVM_SIMGUEST_RUN)
		return 0; /* host gone before RUN */

	wl.pv.legacy = argc == 5 && strcmp(argv[4], "legacy") == 0;
	{
		struct pvm_simguest_header *hdr = (void *)mem;
		uint64_t top = nr_pages;

		if (has_xs && nr_pages >= PVM_SIMGUEST_DEV_PAGES +
						   PVM_SIMGUEST_FIRST_FREE_PFN)
			top = nr_pages - PVM_SIMGUEST_DEV_PAGES;
		boot_count = wl.boot_bytes / PAGE;
		if (boot_count > top - PVM_SIMGUEST_FIRST_FREE_PFN)
			boot_count = top - PVM_SIMGUEST_FIRST_FREE_PFN;
		boot_first = top - boot_count;
		restored = hdr->magic == PVM_SIMGUEST_MAGIC;
		hdr->magic = PVM_SIMGUEST_MAGIC;
		hdr->nr_vcpus = nr_vcpus;
	}
	vcpus = calloc(nr_vcpus, sizeof(*vcpus));
	if (!vcpus)
		return 1;
	for (unsigned int i = 0; i < nr_vcpus; i++) {
		vcpus[i].id = i;
		if (pthread_create(&vcpus[i].thread, NULL, vcpu_main, &vcpus[i]))
			return 1;
	}

	if (wl.echo)
		echo_main();
	else if (has_xs && nr_pages >= PVM_SIMGUEST_DEV_PAGES +
					       PVM_SIMGUEST_FIRST_FREE_PFN)
		pv_main(mem, nr_pages, &wl.pv); /* returns never */
	/* The control socket stays open for the domain's life; EOF = host gone. */
	for (;;) {
		n = recv(PVM_SIMGUEST_CTL_FD, &m, sizeof(m), 0);
		if (n == 0 || (n < 0 && errno != EINTR))
			_exit(0);
	}
}
