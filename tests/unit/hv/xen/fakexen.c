/* The fake Xen host behind the hv/xen unit tests; see fakexen.h. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xenstore.h>
#include <xenguest.h>
#include <libxl.h>
#include <libxl_utils.h>

#include "fakexen.h"

/* The hosts; each thread works on one (fx_here), the one whose handle
 * its last wrapped call was given, or the one it chose (fx_use_host). */
static struct fx_host hosts[FX_HOSTS] = { [0 ... FX_HOSTS - 1] = { .memfd = -1 } };
static __thread unsigned int here;
/* The handles an instance opened on host h all point at tokens[h]. */
static int handle_token[FX_HOSTS];

struct fx_host *fx_here(void)
{
	return &hosts[here];
}

void fx_use_host(unsigned int h)
{
	if (h >= FX_HOSTS)
		abort();
	here = h;
}

unsigned int fx_host_index(void)
{
	return here;
}

/* A wrapped call works on the host its handle was opened on. */
static void on_handle(const void *h)
{
	const int *t = h;

	if (t >= handle_token && t < handle_token + FX_HOSTS)
		here = (unsigned int)(t - handle_token);
}
#define ON(h) on_handle(h)

#define PAGE 4096u
#define MEM_PAGES 16384u
#define P2M_PER 512u

/* ---- fault table and call counts ---------------------------------------- */

struct failpoint {
	char fn[64];
	unsigned int nth; /* 0: unused */
	int err;
};
static struct failpoint failpoints[16];

struct callcount {
	char fn[64];
	unsigned int n;
};
static struct callcount calls[96];

/* Foreign mappings made and not yet unmapped. */
struct fx_map {
	void *addr;
	size_t n;
};
static struct fx_map maps[256];

void fx_fail(const char *fn, unsigned int nth, int err)
{
	for (size_t i = 0; i < 16; i++) {
		if (failpoints[i].nth == 0) {
			snprintf(failpoints[i].fn, sizeof(failpoints[i].fn),
				 "%s", fn);
			failpoints[i].nth = nth;
			failpoints[i].err = err;
			return;
		}
	}
	abort();
}

unsigned int fx_calls(const char *fn)
{
	for (size_t i = 0; i < 96; i++)
		if (strcmp(calls[i].fn, fn) == 0)
			return calls[i].n;
	return 0;
}

/*
 * Guards the call counts, the fault table and the mapping table, so that
 * tests may call the backend from several threads (the rest of the fake's
 * state is only read by the calls such tests make).
 */
static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;

/* Counts the call; the error to fail it with, or 0. */
static int enter_locked(const char *fn)
{
	size_t i;

	for (i = 0; i < 96 && calls[i].fn[0]; i++)
		if (strcmp(calls[i].fn, fn) == 0)
			break;
	if (i < 96) {
		snprintf(calls[i].fn, sizeof(calls[i].fn), "%s", fn);
		calls[i].n++;
	}
	for (i = 0; i < 16; i++) {
		if (failpoints[i].nth && strcmp(failpoints[i].fn, fn) == 0 &&
		    --failpoints[i].nth == 0)
			return failpoints[i].err;
	}
	return 0;
}

static int enter(const char *fn)
{
	int e;

	pthread_mutex_lock(&fake_lock);
	e = enter_locked(fn);
	pthread_mutex_unlock(&fake_lock);
	return e;
}

#define FAILPOINT(ret)                                                       \
	do {                                                                 \
		int e_ = enter(__func__ + strlen("__wrap_"));                \
		if (e_) {                                                    \
			errno = e_;                                          \
			return ret;                                          \
		}                                                            \
	} while (0)

/* ---- the host ------------------------------------------------------------ */

static void dom_free(struct fx_dom *d)
{
	free(d->p2m);
	free(d->dirty);
	free(d->vcpu);
	memset(d, 0, sizeof(*d));
}

void fx_reset(void)
{
	fx_reset_sized(MEM_PAGES);
}

void fx_reset_sized(uint64_t mem_pages)
{
	for (size_t i = 0; i < FX_MAX_DOMS; i++)
		dom_free(&fx.doms[i]);
	if (fx.mem)
		munmap(fx.mem, (size_t)fx.mem_pages * PAGE);
	if (fx.memfd >= 0)
		close(fx.memfd);
	free(fx.restored);
	memset(&fx, 0, sizeof(fx));
	memset(failpoints, 0, sizeof(failpoints));
	memset(calls, 0, sizeof(calls));
	memset(maps, 0, sizeof(maps));
	fx.mem_pages = mem_pages;
	fx.memfd = memfd_create("fakexen", 0);
	if (fx.memfd < 0 ||
	    ftruncate(fx.memfd, (off_t)fx.mem_pages * PAGE) < 0)
		abort();
	fx.mem = mmap(NULL, (size_t)fx.mem_pages * PAGE,
		      PROT_READ | PROT_WRITE, MAP_SHARED, fx.memfd, 0);
	if (fx.mem == MAP_FAILED)
		abort();
	fx.next_mfn = 0x100;
	/* dom0: present, never listed by the backend. */
	fx_add_dom(0, 16, 1, false);
	fx.doms[0].pause_count = 0;
}

struct fx_dom *fx_dom(uint32_t domid)
{
	for (size_t i = 0; i < FX_MAX_DOMS; i++)
		if (fx.doms[i].exists && fx.doms[i].domid == domid)
			return &fx.doms[i];
	return NULL;
}

uint8_t *fx_mfn_page(xen_pfn_t mfn)
{
	if (mfn >= fx.mem_pages)
		abort();
	return fx.mem + mfn * PAGE;
}

uint8_t *fx_page(uint32_t domid, uint64_t pfn)
{
	struct fx_dom *d = fx_dom(domid);

	if (!d || pfn >= d->nr_pages)
		abort();
	return fx_mfn_page(d->p2m[pfn]);
}

static xen_pfn_t alloc_mfns(uint64_t n)
{
	xen_pfn_t first = fx.next_mfn;

	if (fx.next_mfn + n > fx.mem_pages)
		abort();
	fx.next_mfn += n;
	return first;
}

struct fx_dom *fx_add_dom(uint32_t domid, uint64_t nr_pages,
			  unsigned int vcpus, bool hvm)
{
	struct fx_dom *d = NULL;
	xen_pfn_t base;

	if (fx_dom(domid))
		return NULL;
	for (size_t i = 0; i < FX_MAX_DOMS; i++) {
		if (!fx.doms[i].exists) {
			d = &fx.doms[i];
			break;
		}
	}
	if (!d)
		return NULL;
	memset(d, 0, sizeof(*d));
	d->exists = true;
	d->domid = domid;
	d->hvm = hvm;
	d->pause_count = 1;
	d->width = 8;
	d->max_vcpus = vcpus;
	d->weight = 256;
	d->nr_pages = nr_pages;
	d->p2m = calloc(nr_pages, sizeof(xen_pfn_t));
	d->dirty = calloc((nr_pages + 63) / 64, sizeof(uint64_t));
	d->vcpu = calloc(vcpus, sizeof(*d->vcpu));
	if (!d->p2m || !d->dirty || !d->vcpu)
		abort();
	/* Descending machine frames: mfn never equals pfn. */
	base = alloc_mfns(nr_pages);
	for (uint64_t pfn = 0; pfn < nr_pages; pfn++)
		d->p2m[pfn] = base + nr_pages - 1 - pfn;
	d->shinfo_mfn = alloc_mfns(1);
	memset(fx_mfn_page(d->shinfo_mfn), 0, PAGE);
	for (size_t i = 0; i < 16; i++)
		d->handle[i] = (uint8_t)(domid * 16 + i + fx.next_mfn);
	d->valid_ports = 64;
	d->gnt_version = 1;
	d->gnt_frames = 1;
	d->gnt_max = 4;
	base = alloc_mfns(FX_GNT_MAX_FRAMES);
	for (size_t i = 0; i < FX_GNT_MAX_FRAMES; i++) {
		d->gnt_mfn[i] = base + i;
		memset(fx_mfn_page(base + i), 0, PAGE);
	}
	return d;
}

void fx_boot(uint32_t domid, bool linear_only)
{
	struct fx_dom *d = fx_dom(domid);
	uint64_t nr = d->nr_pages;
	uint64_t leaves = (nr + P2M_PER - 1) / P2M_PER;
	uint64_t fls = (leaves + P2M_PER - 1) / P2M_PER;
	uint64_t fll_pfn = nr - 1, fl_pfn0 = nr - 1 - fls;
	uint64_t leaf_pfn0 = fl_pfn0 - leaves;
	shared_info_t *si = (shared_info_t *)fx_mfn_page(d->shinfo_mfn);
	xen_pfn_t *fll = (xen_pfn_t *)fx_page(domid, fll_pfn);

	memset(fll, 0, PAGE);
	for (uint64_t l = 0; l < leaves; l++) {
		xen_pfn_t *leaf = (xen_pfn_t *)fx_page(domid, leaf_pfn0 + l);

		for (uint64_t k = 0; k < P2M_PER; k++) {
			uint64_t pfn = l * P2M_PER + k;

			leaf[k] = pfn < nr ? d->p2m[pfn] : INVALID_MFN;
		}
		xen_pfn_t *fl = (xen_pfn_t *)fx_page(domid,
						     fl_pfn0 + l / P2M_PER);
		fl[l % P2M_PER] = d->p2m[leaf_pfn0 + l];
	}
	for (uint64_t f = 0; f < fls; f++)
		fll[f] = d->p2m[fl_pfn0 + f];
	si->arch.max_pfn = nr;
	si->arch.pfn_to_mfn_frame_list_list =
		linear_only ? INVALID_MFN : d->p2m[fll_pfn];
}

void fx_guest_write(uint32_t domid, uint64_t pfn, unsigned int off,
		    uint8_t v)
{
	struct fx_dom *d = fx_dom(domid);

	fx_page(domid, pfn)[off] = v;
	if (d->logdirty)
		d->dirty[pfn / 64] |= UINT64_C(1) << (pfn % 64);
}

static uint32_t port_lowest_free(struct fx_dom *d)
{
	for (uint32_t p = 1; p < FX_PORTS; p++)
		if (d->ports[p].state == EVTCHNSTAT_closed)
			return p;
	return 0;
}

uint32_t fx_port_alloc(uint32_t domid, uint8_t state, uint16_t rdom,
		       uint32_t rport, uint32_t virq)
{
	struct fx_dom *d = fx_dom(domid);
	uint32_t p = port_lowest_free(d);

	if (!p)
		abort();
	d->ports[p] = (struct fx_port){ state, rdom, rport, virq };
	while (p >= d->valid_ports)
		d->valid_ports += 64;
	return p;
}

grant_entry_v1_t *fx_gnt_entry(uint32_t domid, uint32_t ref)
{
	struct fx_dom *d = fx_dom(domid);

	return (grant_entry_v1_t *)fx_mfn_page(d->gnt_mfn[0]) + ref;
}

/* ---- handles ------------------------------------------------------------- */

xc_interface *__wrap_xc_interface_open(xentoollog_logger *l,
				       xentoollog_logger *dl, unsigned f);
xc_interface *__wrap_xc_interface_open(xentoollog_logger *l,
				       xentoollog_logger *dl, unsigned f)
{
	FAILPOINT(NULL);
	fx.handles_open++;
	return (xc_interface *)&handle_token[here];
}

int __wrap_xc_interface_close(xc_interface *xch);
int __wrap_xc_interface_close(xc_interface *xch)
{
	ON(xch);
	fx.handles_open--;
	return 0;
}

xenforeignmemory_handle *__wrap_xenforeignmemory_open(xentoollog_logger *l,
						      unsigned int f);
xenforeignmemory_handle *__wrap_xenforeignmemory_open(xentoollog_logger *l,
						      unsigned int f)
{
	FAILPOINT(NULL);
	fx.handles_open++;
	return (xenforeignmemory_handle *)&handle_token[here];
}

int __wrap_xenforeignmemory_close(xenforeignmemory_handle *h);
int __wrap_xenforeignmemory_close(xenforeignmemory_handle *h)
{
	ON(h);
	fx.handles_open--;
	return 0;
}

struct xs_handle *__wrap_xs_open(unsigned long flags);
struct xs_handle *__wrap_xs_open(unsigned long flags)
{
	FAILPOINT(NULL);
	fx.handles_open++;
	return (struct xs_handle *)&handle_token[here];
}

void __wrap_xs_close(struct xs_handle *h);
void __wrap_xs_close(struct xs_handle *h)
{
	ON(h);
	fx.handles_open--;
}

int __wrap_libxl_ctx_alloc(libxl_ctx **pctx, int version, unsigned flags,
			   xentoollog_logger *lg);
int __wrap_libxl_ctx_alloc(libxl_ctx **pctx, int version, unsigned flags,
			   xentoollog_logger *lg)
{
	int e = enter("libxl_ctx_alloc");

	if (e)
		return ERROR_FAIL;
	fx.handles_open++;
	*pctx = (libxl_ctx *)&handle_token[here];
	return 0;
}

int __wrap_libxl_ctx_free(libxl_ctx *ctx);
int __wrap_libxl_ctx_free(libxl_ctx *ctx)
{
	ON(ctx);
	if (ctx)
		fx.handles_open--;
	return 0;
}

/* ---- xenstore ------------------------------------------------------------ */

void *__wrap_xs_read(struct xs_handle *h, xs_transaction_t t,
		     const char *path, unsigned int *len);
void *__wrap_xs_read(struct xs_handle *h, xs_transaction_t t,
		     const char *path, unsigned int *len)
{
	ON(h);
	unsigned int domid;
	char tail[16];
	struct fx_dom *d;

	FAILPOINT(NULL);
	/* libxl's type node (libxl__domain_type); dm-version is there for
	 * PVH too, as libxl writes it for every HVM-container domain. */
	if (sscanf(path, "/libxl/%u/typ%1s", &domid, tail) == 2 &&
	    !strcmp(tail, "e") && (d = fx_dom(domid))) {
		const char *v = d->pvh ? "pvh" : d->hvm ? "hvm" : "pv";

		*len = (unsigned int)strlen(v);
		return strdup(v);
	}
	if (sscanf(path, "/libxl/%u/dm-versio%1s", &domid, tail) == 2 &&
	    (d = fx_dom(domid)) && d->dm_version[0]) {
		*len = (unsigned int)strlen(d->dm_version);
		return strdup(d->dm_version);
	}
	if (sscanf(path, "/local/domain/0/device-model/%u/physmap/f0000000/%15s",
		   &domid, tail) == 2 && (d = fx_dom(domid)) && d->physmap) {
		const char *v = !strcmp(tail, "start_addr") ? "f0000000" :
				!strcmp(tail, "size") ? "800000" :
				!strcmp(tail, "name") ? "vga.vram" : NULL;

		if (v) {
			*len = (unsigned int)strlen(v);
			return strdup(v);
		}
	}
	if (sscanf(path, "/local/domain/%u/%15s", &domid, tail) != 2 ||
	    strcmp(tail, "name") != 0 || !(d = fx_dom(domid)) ||
	    !d->name[0]) {
		errno = ENOENT;
		return NULL;
	}
	*len = (unsigned int)strlen(d->name);
	return strdup(d->name);
}

char **__wrap_xs_directory(struct xs_handle *h, xs_transaction_t t,
			   const char *path, unsigned int *num);
char **__wrap_xs_directory(struct xs_handle *h, xs_transaction_t t,
			   const char *path, unsigned int *num)
{
	ON(h);
	unsigned int domid;
	char tail[16];
	struct fx_dom *d;
	char **v;

	FAILPOINT(NULL);
	*num = 0;
	if (sscanf(path, "/local/domain/0/device-model/%u/%15s", &domid,
		   tail) != 2 || strcmp(tail, "physmap") ||
	    !(d = fx_dom(domid)) || !d->physmap) {
		errno = ENOENT;
		return NULL;
	}
	/* as libxenstore: one allocation, the array then the strings */
	v = malloc(sizeof(char *) + 9);
	if (!v)
		abort();
	v[0] = (char *)(v + 1);
	memcpy(v[0], "f0000000", 9);
	*num = 1;
	return v;
}

/* ---- domains ------------------------------------------------------------- */

static void fill_info(const struct fx_dom *d, xc_domaininfo_t *out)
{
	memset(out, 0, sizeof(*out));
	out->domain = (domid_t)d->domid;
	if (d->pause_count)
		out->flags |= XEN_DOMINF_paused;
	if (d->hvm)
		out->flags |= XEN_DOMINF_hvm_guest;
	if (d->dying)
		out->flags |= XEN_DOMINF_dying;
	if (d->shutdown)
		out->flags |= XEN_DOMINF_shutdown |
			      (d->shutdown_reason << XEN_DOMINF_shutdownshift);
	out->tot_pages = d->nr_pages;
	out->max_vcpu_id = d->max_vcpus - 1;
	out->nr_online_vcpus = d->max_vcpus;
	out->shared_info_frame = d->shinfo_mfn;
	memcpy(out->handle, d->handle, sizeof(out->handle));
}

int __wrap_xc_domain_getinfolist(xc_interface *xch, uint32_t first,
				 unsigned int max, xc_domaininfo_t *info);
int __wrap_xc_domain_getinfolist(xc_interface *xch, uint32_t first,
				 unsigned int max, xc_domaininfo_t *info)
{
	ON(xch);
	unsigned int n = 0;

	FAILPOINT(-1);
	for (uint32_t id = first; id < 0x7ff0 && n < max; id++) {
		struct fx_dom *d = fx_dom(id);

		if (d)
			fill_info(d, &info[n++]);
	}
	return (int)n;
}

int __wrap_xc_domain_nr_gpfns(xc_interface *xch, uint32_t domid,
			      xen_pfn_t *gpfns);
int __wrap_xc_domain_nr_gpfns(xc_interface *xch, uint32_t domid,
			      xen_pfn_t *gpfns)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = fx_dom(domid))) {
		errno = ESRCH;
		return -1;
	}
	*gpfns = d->gpfns ? d->gpfns : d->nr_pages;
	return 0;
}

int __wrap_xc_domain_get_guest_width(xc_interface *xch, uint32_t domid,
				     unsigned int *w);
int __wrap_xc_domain_get_guest_width(xc_interface *xch, uint32_t domid,
				     unsigned int *w)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = fx_dom(domid))) {
		errno = ESRCH;
		return -1;
	}
	*w = d->width;
	return 0;
}

int __wrap_xc_domain_pause(xc_interface *xch, uint32_t domid);
int __wrap_xc_domain_pause(xc_interface *xch, uint32_t domid)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = fx_dom(domid))) {
		errno = ESRCH;
		return -1;
	}
	d->pause_count++;
	return 0;
}

/* The scheduler domctls: EINVAL when the domain's pool runs another. */
static struct fx_dom *sched_dom(uint32_t domid, int sched)
{
	struct fx_dom *d = fx_dom(domid);

	if (!d) {
		errno = ESRCH;
		return NULL;
	}
	if ((int)d->sched != sched) {
		errno = EINVAL;
		return NULL;
	}
	return d;
}

int __wrap_xc_sched_credit2_domain_get(xc_interface *xch, uint32_t domid,
				       struct xen_domctl_sched_credit2 *s);
int __wrap_xc_sched_credit2_domain_get(xc_interface *xch, uint32_t domid,
				       struct xen_domctl_sched_credit2 *s)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = sched_dom(domid, FX_CREDIT2)))
		return -1;
	s->weight = d->weight;
	s->cap = d->cap;
	return 0;
}

int __wrap_xc_sched_credit2_domain_set(xc_interface *xch, uint32_t domid,
				       struct xen_domctl_sched_credit2 *s);
int __wrap_xc_sched_credit2_domain_set(xc_interface *xch, uint32_t domid,
				       struct xen_domctl_sched_credit2 *s)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = sched_dom(domid, FX_CREDIT2)))
		return -1;
	if (s->cap > 100u * d->max_vcpus) {
		errno = EINVAL;
		return -1;
	}
	if (s->weight)
		d->weight = s->weight;
	d->cap = s->cap;
	return 0;
}

int __wrap_xc_sched_credit_domain_get(xc_interface *xch, uint32_t domid,
				      struct xen_domctl_sched_credit *s);
int __wrap_xc_sched_credit_domain_get(xc_interface *xch, uint32_t domid,
				      struct xen_domctl_sched_credit *s)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = sched_dom(domid, FX_CREDIT)))
		return -1;
	s->weight = d->weight;
	s->cap = d->cap;
	return 0;
}

int __wrap_xc_sched_credit_domain_set(xc_interface *xch, uint32_t domid,
				      struct xen_domctl_sched_credit *s);
int __wrap_xc_sched_credit_domain_set(xc_interface *xch, uint32_t domid,
				      struct xen_domctl_sched_credit *s)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = sched_dom(domid, FX_CREDIT)))
		return -1;
	if (s->weight)
		d->weight = s->weight;
	if (s->cap != (uint16_t)~0u)
		d->cap = s->cap;
	return 0;
}

int __wrap_xc_domain_unpause(xc_interface *xch, uint32_t domid);
int __wrap_xc_domain_unpause(xc_interface *xch, uint32_t domid)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = fx_dom(domid))) {
		errno = ESRCH;
		return -1;
	}
	if (d->pause_count == 0) {
		errno = EINVAL;
		return -1;
	}
	d->pause_count--;
	return 0;
}

/* ---- log-dirty ------------------------------------------------------------ */

int __wrap_xc_shadow_control(xc_interface *xch, uint32_t domid,
			     unsigned int sop, unsigned int *mb,
			     unsigned int mode);
int __wrap_xc_shadow_control(xc_interface *xch, uint32_t domid,
			     unsigned int sop, unsigned int *mb,
			     unsigned int mode)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = fx_dom(domid))) {
		errno = ESRCH;
		return -1;
	}
	switch (sop) {
	case XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY:
		if (d->logdirty) {
			errno = EINVAL;
			return -1;
		}
		d->logdirty = true;
		memset(d->dirty, 0, (d->nr_pages + 63) / 64 * 8);
		return 0;
	case XEN_DOMCTL_SHADOW_OP_OFF:
		d->logdirty = false;
		return 0;
	default:
		errno = EINVAL;
		return -1;
	}
}

long long __wrap_xc_logdirty_control(xc_interface *xch, uint32_t domid,
				     unsigned int sop,
				     xc_hypercall_buffer_t *bm,
				     unsigned long pages, unsigned int mode,
				     xc_shadow_op_stats_t *stats);
long long __wrap_xc_logdirty_control(xc_interface *xch, uint32_t domid,
				     unsigned int sop,
				     xc_hypercall_buffer_t *bm,
				     unsigned long pages, unsigned int mode,
				     xc_shadow_op_stats_t *stats)
{
	ON(xch);
	struct fx_dom *d;
	uint64_t *out = bm->hbuf;
	uint32_t count = 0;

	FAILPOINT(-1);
	if (!(d = fx_dom(domid))) {
		errno = ESRCH;
		return -1;
	}
	if (sop != XEN_DOMCTL_SHADOW_OP_CLEAN || !d->logdirty || !out) {
		errno = EINVAL;
		return -1;
	}
	for (uint64_t pfn = 0; pfn < pages && pfn < d->nr_pages; pfn++) {
		uint64_t bit = UINT64_C(1) << (pfn % 64);

		if (d->dirty[pfn / 64] & bit) {
			out[pfn / 64] |= bit;
			count++;
		} else {
			out[pfn / 64] &= ~bit;
		}
	}
	/*
	 * Xen copies whole longs of its own bitmap, which is rounded up:
	 * bits past @pages in the last word are not promised to be zero.
	 */
	if (pages % 64)
		out[pages / 64] |= ~UINT64_C(0) << (pages % 64);
	memset(d->dirty, 0, (d->nr_pages + 63) / 64 * 8);
	if (stats)
		stats->dirty_count = count;
	return 0;
}

void *__wrap_xc__hypercall_buffer_alloc_pages(xc_interface *xch,
					      xc_hypercall_buffer_t *b,
					      int nr);
void *__wrap_xc__hypercall_buffer_alloc_pages(xc_interface *xch,
					      xc_hypercall_buffer_t *b,
					      int nr)
{
	ON(xch);
	void *p;

	FAILPOINT(NULL);
	p = mmap(NULL, (size_t)nr * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Garbage, as a recycled buffer would hold. */
	memset(p, 0xa5, (size_t)nr * PAGE);
	b->hbuf = p;
	fx.live_hbufs++;
	return p;
}

void __wrap_xc__hypercall_buffer_free_pages(xc_interface *xch,
					    xc_hypercall_buffer_t *b, int nr);
void __wrap_xc__hypercall_buffer_free_pages(xc_interface *xch,
					    xc_hypercall_buffer_t *b, int nr)
{
	ON(xch);
	if (!b->hbuf)
		return;
	munmap(b->hbuf, (size_t)nr * PAGE);
	b->hbuf = NULL;
	fx.live_hbufs--;
}

/* ---- foreign memory ------------------------------------------------------- */


static void map_track(void *addr, size_t n)
{
	pthread_mutex_lock(&fake_lock);
	for (size_t i = 0; i < 256; i++) {
		if (!maps[i].addr) {
			maps[i] = (struct fx_map){ addr, n };
			fx.live_maps++;
			pthread_mutex_unlock(&fake_lock);
			return;
		}
	}
	abort();
}

static int map_untrack(void *addr, size_t n)
{
	int rc = -1;

	pthread_mutex_lock(&fake_lock);
	for (size_t i = 0; i < 256; i++) {
		if (maps[i].addr == addr && maps[i].n == n) {
			maps[i].addr = NULL;
			fx.live_maps--;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&fake_lock);
	return rc;
}

/* The machine frame @dom's foreign map of @frame reaches, or ~0. */
static xen_pfn_t resolve(const struct fx_dom *d, xen_pfn_t frame)
{
	if (d->hvm)
		return frame < d->nr_pages ? d->p2m[frame] : INVALID_MFN;
	if (frame == d->shinfo_mfn)
		return frame;
	/* PV: the frame must be one of the domain's own (descending run). */
	if (frame >= d->p2m[d->nr_pages - 1] && frame <= d->p2m[0])
		return frame;
	return INVALID_MFN;
}

void *__wrap_xenforeignmemory_map(xenforeignmemory_handle *h, uint32_t dom,
				  int prot, size_t pages,
				  const xen_pfn_t arr[], int err[]);
void *__wrap_xenforeignmemory_map(xenforeignmemory_handle *h, uint32_t dom,
				  int prot, size_t pages,
				  const xen_pfn_t arr[], int err[])
{
	ON(h);
	struct fx_dom *d;
	uint8_t *base;

	FAILPOINT(NULL);
	if (!(d = fx_dom(dom))) {
		errno = ESRCH;
		return NULL;
	}
	base = mmap(NULL, pages * PAGE, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return NULL;
	for (size_t i = 0; i < pages; i++) {
		xen_pfn_t mfn = resolve(d, arr[i]);

		if (mfn == INVALID_MFN) {
			err[i] = -EINVAL;
			continue;
		}
		if (mmap(base + i * PAGE, PAGE, prot, MAP_SHARED | MAP_FIXED,
			 fx.memfd, (off_t)(mfn * PAGE)) == MAP_FAILED)
			abort();
		err[i] = 0;
	}
	map_track(base, pages);
	return base;
}

int __wrap_xenforeignmemory_unmap(xenforeignmemory_handle *h, void *addr,
				  size_t pages);
int __wrap_xenforeignmemory_unmap(xenforeignmemory_handle *h, void *addr,
				  size_t pages)
{
	ON(h);
	FAILPOINT(-1);
	if (map_untrack(addr, pages)) {
		errno = EINVAL;
		return -1;
	}
	munmap(addr, pages * PAGE);
	return 0;
}

struct fx_res {
	void *addr;
	size_t n;
};

xenforeignmemory_resource_handle *__wrap_xenforeignmemory_map_resource(
	xenforeignmemory_handle *h, domid_t domid, unsigned int type,
	unsigned int id, unsigned long frame, unsigned long nr, void **paddr,
	int prot, int flags);
xenforeignmemory_resource_handle *__wrap_xenforeignmemory_map_resource(
	xenforeignmemory_handle *h, domid_t domid, unsigned int type,
	unsigned int id, unsigned long frame, unsigned long nr, void **paddr,
	int prot, int flags)
{
	ON(h);
	struct fx_dom *d;
	struct fx_res *r;
	uint8_t *base;

	FAILPOINT(NULL);
	if (!(d = fx_dom(domid))) {
		errno = ESRCH;
		return NULL;
	}
	if (type != XENMEM_resource_grant_table ||
	    id != XENMEM_resource_grant_table_id_shared || nr == 0 ||
	    frame + nr > d->gnt_max) {
		errno = EINVAL;
		return NULL;
	}
	/* Xen grows the table to cover what is asked for. */
	if (frame + nr > d->gnt_frames)
		d->gnt_frames = (uint32_t)(frame + nr);
	base = mmap(NULL, nr * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
	if (base == MAP_FAILED)
		return NULL;
	for (unsigned long i = 0; i < nr; i++)
		if (mmap(base + i * PAGE, PAGE, prot, MAP_SHARED | MAP_FIXED,
			 fx.memfd,
			 (off_t)(d->gnt_mfn[frame + i] * PAGE)) == MAP_FAILED)
			abort();
	r = malloc(sizeof(*r));
	r->addr = base;
	r->n = nr;
	*paddr = base;
	fx.live_maps++;
	return (xenforeignmemory_resource_handle *)r;
}

int __wrap_xenforeignmemory_unmap_resource(
	xenforeignmemory_handle *h, xenforeignmemory_resource_handle *res);
int __wrap_xenforeignmemory_unmap_resource(
	xenforeignmemory_handle *h, xenforeignmemory_resource_handle *res)
{
	ON(h);
	struct fx_res *r = (struct fx_res *)res;

	if (!r)
		return 0;
	munmap(r->addr, r->n * PAGE);
	free(r);
	fx.live_maps--;
	if ((errno = enter("xenforeignmemory_unmap_resource")))
		return -1;
	return 0;
}

/* ---- vCPUs ---------------------------------------------------------------- */

int __wrap_xc_vcpu_getcontext(xc_interface *xch, uint32_t domid,
			      uint32_t vcpu, vcpu_guest_context_any_t *ctx);
int __wrap_xc_vcpu_getcontext(xc_interface *xch, uint32_t domid,
			      uint32_t vcpu, vcpu_guest_context_any_t *ctx)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = fx_dom(domid)) || vcpu >= d->max_vcpus) {
		errno = d ? EINVAL : ESRCH;
		return -1;
	}
	memcpy(&ctx->x64, &d->vcpu[vcpu], sizeof(ctx->x64));
	return 0;
}

int __wrap_xc_vcpu_setcontext(xc_interface *xch, uint32_t domid,
			      uint32_t vcpu, vcpu_guest_context_any_t *ctx);
int __wrap_xc_vcpu_setcontext(xc_interface *xch, uint32_t domid,
			      uint32_t vcpu, vcpu_guest_context_any_t *ctx)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = fx_dom(domid)) || vcpu >= d->max_vcpus) {
		errno = d ? EINVAL : ESRCH;
		return -1;
	}
	memcpy(&d->vcpu[vcpu], &ctx->x64, sizeof(ctx->x64));
	return 0;
}

/* ---- event channels --------------------------------------------------------- */

int __wrap_xc_evtchn_status(xc_interface *xch, xc_evtchn_status_t *st);
int __wrap_xc_evtchn_status(xc_interface *xch, xc_evtchn_status_t *st)
{
	ON(xch);
	struct fx_dom *d;
	struct fx_port *p;

	FAILPOINT(-1);
	if (!(d = fx_dom(st->dom))) {
		errno = ESRCH;
		return -1;
	}
	if (st->port >= d->valid_ports) {
		errno = EINVAL;
		return -1;
	}
	p = &d->ports[st->port];
	st->status = p->state;
	st->vcpu = 0;
	switch (p->state) {
	case EVTCHNSTAT_unbound:
		st->u.unbound.dom = p->rdom;
		break;
	case EVTCHNSTAT_interdomain:
		st->u.interdomain.dom = p->rdom;
		st->u.interdomain.port = p->rport;
		break;
	case EVTCHNSTAT_pirq:
		st->u.pirq = p->virq;
		break;
	case EVTCHNSTAT_virq:
		st->u.virq = p->virq;
		break;
	}
	return 0;
}

xc_evtchn_port_or_error_t __wrap_xc_evtchn_alloc_unbound(xc_interface *xch,
							 uint32_t dom,
							 uint32_t remote);
xc_evtchn_port_or_error_t __wrap_xc_evtchn_alloc_unbound(xc_interface *xch,
							 uint32_t dom,
							 uint32_t remote)
{
	ON(xch);
	struct fx_dom *d;
	uint32_t p;

	FAILPOINT(-1);
	if (!(d = fx_dom(dom))) {
		errno = ESRCH;
		return -1;
	}
	if (!(p = port_lowest_free(d))) {
		errno = ENOSPC;
		return -1;
	}
	return (int)fx_port_alloc(dom, EVTCHNSTAT_unbound, (uint16_t)remote,
				  0, 0);
}

/* ---- grant tables ------------------------------------------------------------ */

int __wrap_xc_gnttab_get_version(xc_interface *xch, uint32_t domid);
int __wrap_xc_gnttab_get_version(xc_interface *xch, uint32_t domid)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = fx_dom(domid))) {
		errno = ESRCH;
		return -1;
	}
	return d->gnt_version;
}

int __wrap_xc_gnttab_query_size(xc_interface *xch,
				struct gnttab_query_size *q);
int __wrap_xc_gnttab_query_size(xc_interface *xch,
				struct gnttab_query_size *q)
{
	ON(xch);
	struct fx_dom *d;

	FAILPOINT(-1);
	if (!(d = fx_dom(q->dom))) {
		q->status = GNTST_bad_domain;
		return 0;
	}
	q->nr_frames = d->gnt_frames;
	q->max_nr_frames = d->gnt_max;
	q->status = GNTST_okay;
	return 0;
}

/* ---- libxl ------------------------------------------------------------------- */

static int libxl_fail(const char *fn)
{
	int e = enter(fn);

	if (!e)
		return 0;
	return e == EINVAL ? ERROR_INVAL : ERROR_FAIL;
}

static int device(uint32_t domid, bool disk, bool add,
		  const libxl_device_disk *dk, const libxl_device_nic *nic);

int __wrap_libxl_domain_create_new(libxl_ctx *ctx, libxl_domain_config *dc,
				   uint32_t *domid,
				   const libxl_asyncop_how *ao,
				   const libxl_asyncprogress_how *aop);
int __wrap_libxl_domain_create_new(libxl_ctx *ctx, libxl_domain_config *dc,
				   uint32_t *domid,
				   const libxl_asyncop_how *ao,
				   const libxl_asyncprogress_how *aop)
{
	ON(ctx);
	uint32_t id = dc->c_info.domid;
	int rc = libxl_fail("libxl_domain_create_new");
	unsigned int avail = 0;
	struct fx_dom *d;

	*domid = (uint32_t)INVALID_DOMID;
	if (rc)
		return rc;
	if (dc->c_info.type != LIBXL_DOMAIN_TYPE_PV ||
	    dc->b_info.type != LIBXL_DOMAIN_TYPE_PV || !dc->b_info.kernel ||
	    dc->b_info.max_vcpus < 1)
		return ERROR_INVAL;
	for (int i = 0; i < dc->b_info.max_vcpus; i++)
		avail += libxl_bitmap_test(&dc->b_info.avail_vcpus, i);
	if (avail != (unsigned int)dc->b_info.max_vcpus)
		return ERROR_INVAL;
	if (id >= 1 && id < 0x7ff0) {
		if (fx_dom(id))
			return ERROR_FAIL; /* XEN_DOMCTL_createdomain: EEXIST */
	} else {
		for (id = 1; fx_dom(id); id++)
			;
	}
	d = fx_add_dom(id, dc->b_info.max_memkb / 4,
		       (unsigned int)dc->b_info.max_vcpus, false);
	if (!d)
		return ERROR_NOMEM;
	snprintf(d->name, sizeof(d->name), "%s",
		 dc->c_info.name ? dc->c_info.name : "");
	snprintf(d->kernel, sizeof(d->kernel), "%s", dc->b_info.kernel);
	if (dc->c_info.xsdata && dc->c_info.xsdata[0])
		snprintf(d->xsdata, sizeof(d->xsdata), "%s=%s",
			 dc->c_info.xsdata[0],
			 dc->c_info.xsdata[1] ? dc->c_info.xsdata[1] : "");
	for (int i = 0; i < dc->num_disks; i++)
		if (device(id, true, true, &dc->disks[i], NULL))
			return ERROR_FAIL;
	for (int i = 0; i < dc->num_nics; i++)
		if (device(id, false, true, NULL, &dc->nics[i]))
			return ERROR_FAIL;
	/* The builder: xenstore and console ports, seeded grant entries. */
	fx_port_alloc(id, EVTCHNSTAT_unbound, 0, 0, 0);
	fx_port_alloc(id, EVTCHNSTAT_unbound, 0, 0, 0);
	for (uint32_t ref = 0; ref < 2; ref++) {
		grant_entry_v1_t *e = fx_gnt_entry(id, ref);

		e->domid = 0;
		e->frame = (uint32_t)d->p2m[d->nr_pages - 2 - ref];
		e->flags = GTF_permit_access;
	}
	*domid = id;
	return 0;
}

int __wrap_libxl_domain_unpause(libxl_ctx *ctx, uint32_t domid,
				const libxl_asyncop_how *ao);
int __wrap_libxl_domain_unpause(libxl_ctx *ctx, uint32_t domid,
				const libxl_asyncop_how *ao)
{
	ON(ctx);
	struct fx_dom *d;
	int rc = libxl_fail("libxl_domain_unpause");

	if (rc)
		return rc;
	if (!(d = fx_dom(domid)))
		return ERROR_DOMAIN_NOTFOUND;
	if (!d->pause_count)
		return ERROR_FAIL;
	d->pause_count--;
	return 0;
}

int __wrap_libxl_domain_destroy(libxl_ctx *ctx, uint32_t domid,
				const libxl_asyncop_how *ao);
int __wrap_libxl_domain_destroy(libxl_ctx *ctx, uint32_t domid,
				const libxl_asyncop_how *ao)
{
	ON(ctx);
	struct fx_dom *d;
	int rc = libxl_fail("libxl_domain_destroy");

	if (rc)
		return rc;
	if (!(d = fx_dom(domid)))
		return ERROR_DOMAIN_NOTFOUND;
	dom_free(d);
	return 0;
}

static int device(uint32_t domid, bool disk, bool add,
		  const libxl_device_disk *dk, const libxl_device_nic *nic)
{
	struct fx_device *v;

	if (!fx_dom(domid))
		return ERROR_DOMAIN_NOTFOUND;
	if (!add) {
		for (unsigned int i = 0; i < fx.n_devices; i++) {
			v = &fx.devices[i];
			if (v->removed || v->domid != domid || v->disk != disk)
				continue;
			if (disk ? strcmp(v->vdev, dk->vdev) == 0
				 : v->devid == nic->devid) {
				v->removed = true;
				return 0;
			}
		}
		return ERROR_NOTFOUND;
	}
	if (fx.n_devices == 16)
		return ERROR_FAIL;
	v = &fx.devices[fx.n_devices++];
	memset(v, 0, sizeof(*v));
	v->disk = disk;
	v->domid = domid;
	if (disk) {
		snprintf(v->target, sizeof(v->target), "%s", dk->pdev_path);
		snprintf(v->vdev, sizeof(v->vdev), "%s", dk->vdev);
		v->readwrite = dk->readwrite;
	} else {
		memcpy(v->mac, nic->mac, 6);
		v->devid = nic->devid;
		snprintf(v->target, sizeof(v->target), "%s",
			 nic->bridge ? nic->bridge : "");
	}
	return 0;
}

int __wrap_libxl_device_disk_add(libxl_ctx *ctx, uint32_t domid,
				 libxl_device_disk *disk,
				 const libxl_asyncop_how *ao);
int __wrap_libxl_device_disk_add(libxl_ctx *ctx, uint32_t domid,
				 libxl_device_disk *disk,
				 const libxl_asyncop_how *ao)
{
	ON(ctx);
	int rc = libxl_fail("libxl_device_disk_add");

	return rc ? rc : device(domid, true, true, disk, NULL);
}

int __wrap_libxl_device_disk_remove(libxl_ctx *ctx, uint32_t domid,
				    libxl_device_disk *disk,
				    const libxl_asyncop_how *ao);
int __wrap_libxl_device_disk_remove(libxl_ctx *ctx, uint32_t domid,
				    libxl_device_disk *disk,
				    const libxl_asyncop_how *ao)
{
	ON(ctx);
	int rc = libxl_fail("libxl_device_disk_remove");

	return rc ? rc : device(domid, true, false, disk, NULL);
}

int __wrap_libxl_device_nic_add(libxl_ctx *ctx, uint32_t domid,
				libxl_device_nic *nic,
				const libxl_asyncop_how *ao);
int __wrap_libxl_device_nic_add(libxl_ctx *ctx, uint32_t domid,
				libxl_device_nic *nic,
				const libxl_asyncop_how *ao)
{
	ON(ctx);
	int rc = libxl_fail("libxl_device_nic_add");

	return rc ? rc : device(domid, false, true, NULL, nic);
}

int __wrap_libxl_device_nic_remove(libxl_ctx *ctx, uint32_t domid,
				   libxl_device_nic *nic,
				   const libxl_asyncop_how *ao);
int __wrap_libxl_device_nic_remove(libxl_ctx *ctx, uint32_t domid,
				   libxl_device_nic *nic,
				   const libxl_asyncop_how *ao)
{
	ON(ctx);
	int rc = libxl_fail("libxl_device_nic_remove");

	return rc ? rc : device(domid, false, false, NULL, nic);
}

/* ---- whole-domain save/restore (hv/xen/guest.c) ---------------------------- */

bool __wrap_xs_write(struct xs_handle *h, xs_transaction_t t,
		     const char *path, const void *data, unsigned int len);
bool __wrap_xs_write(struct xs_handle *h, xs_transaction_t t,
		     const char *path, const void *data, unsigned int len)
{
	ON(h);
	unsigned int domid;
	char tail[32];
	struct fx_dom *d;

	FAILPOINT(false);
	if (sscanf(path, "/local/domain/%u/%31s", &domid, tail) != 2 ||
	    !(d = fx_dom(domid))) {
		errno = ENOENT;
		return false;
	}
	if (strcmp(tail, "control/shutdown") == 0) {
		snprintf(d->control_shutdown, sizeof(d->control_shutdown),
			 "%.*s", (int)len, (const char *)data);
		/* A PV guest acknowledges and suspends itself. */
		if (d->honours_suspend &&
		    strcmp(d->control_shutdown, "suspend") == 0) {
			d->control_shutdown[0] = '\0';
			d->shutdown = true;
			d->shutdown_reason = SHUTDOWN_suspend;
		}
	}
	return true;
}

bool __wrap_xs_rm(struct xs_handle *h, xs_transaction_t t, const char *path);
bool __wrap_xs_rm(struct xs_handle *h, xs_transaction_t t, const char *path)
{
	ON(h);
	unsigned int domid;
	struct fx_dom *d;

	FAILPOINT(false);
	if (sscanf(path, "/local/domain/%u/control/shutdown", &domid) == 1 &&
	    (d = fx_dom(domid)))
		d->control_shutdown[0] = '\0';
	return true;
}

void fx_save_stream(uint32_t dom, uint8_t *buf)
{
	int n;

	for (size_t i = 0; i < FX_SAVE_BYTES; i++)
		buf[i] = (uint8_t)(i * 7 + dom);
	n = snprintf((char *)buf, 32, "FXSAVE %u\n", dom);
	buf[n] = 'x'; /* no NUL inside */
}

static uint32_t le32_at(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/*
 * libxl's EMULATOR_XENSTORE_DATA / EMULATOR_CONTEXT records at *@off, as
 * libxl's stream reader checks them (QEMU upstream, index 0, within the
 * stream, key/value strings NUL-terminated, padded to 8); *@off moves
 * past them. false: a malformed one (libxl fails the restore).
 */
static bool emulator_records(const uint8_t *p, size_t len, size_t *off)
{
	while (len - *off >= 8) {
		uint32_t type = le32_at(p + *off), rlen = le32_at(p + *off + 4);
		size_t padded = ((size_t)rlen + 7) & ~(size_t)7;
		const uint8_t *b = p + *off + 8;

		if (type != 2 && type != 3)
			return true;
		if (rlen < 8 || padded > len - *off - 8 ||
		    rlen > 8 + 32u * 1024u * 1024u || le32_at(b) != 2 ||
		    le32_at(b + 4) != 0)
			return false;
		if (type == 2) {
			/* pairs of strings, the last NUL-terminated */
			if (rlen == 8 || b[rlen - 1] != 0)
				return false;
			fx.restored_dm_xs++;
		} else {
			fx.restored_dm_len = rlen - 8;
		}
		*off += 8 + padded;
	}
	return true;
}

/* Is @p (@len bytes) the whole libxl stream around fx_save_stream()? */
static bool whole_stream(const uint8_t *p, size_t len)
{
	static const uint8_t ident[8] = "LibxlFmt";
	static const uint8_t end[8];
	size_t off = 24 + FX_SAVE_BYTES;
	unsigned int dom;
	uint8_t *want;
	bool ok;

	/* libxl header (big-endian ident) + LIBXC_CONTEXT, the libxc part,
	 * an HVM domain's EMULATOR records, libxl END. */
	if (len < off + 8 || memcmp(p, ident, 8) || p[16] != 1 ||
	    !emulator_records(p, len, &off) || len != off + 8 ||
	    memcmp(p + len - 8, end, 8) ||
	    sscanf((const char *)p + 24, "FXSAVE %u\n", &dom) != 1)
		return false;
	want = malloc(FX_SAVE_BYTES);
	if (!want)
		abort();
	fx_save_stream(dom, want);
	ok = memcmp(p + 24, want, FX_SAVE_BYTES) == 0;
	free(want);
	return ok;
}

/*
 * A checkpointed stream as pvmig writes it (libxl header + LIBXC_CONTEXT,
 * the base, then deltas, each followed by the fake's CHECKPOINT and a
 * libxl CHECKPOINT_END; no END). As libxc's Remus failover: usable if at
 * least the first checkpoint is whole; *@n is how many are, a partial
 * tail is dropped.
 */
static bool whole_checkpoints(const uint8_t *p, size_t len, unsigned int *n)
{
	static const uint8_t ident[8] = "LibxlFmt";
	static const uint8_t ck[8] = "FXCKPT\n";
	static const uint8_t cp_end[8] = { 4 };
	size_t off = 24 + FX_SAVE_BYTES;
	unsigned int dom, k;

	*n = 0;
	if (len < off + 16 || memcmp(p, ident, 8) || p[16] != 1 ||
	    sscanf((const char *)p + 24, "FXSAVE %u\n", &dom) != 1 ||
	    memcmp(p + off, ck, 8))
		return false;
	off += 8;
	if (!emulator_records(p, len, &off) || len < off + 8 ||
	    memcmp(p + off, cp_end, 8))
		return false;
	off += 8;
	*n = 1;
	for (;;) {
		size_t o = off + FX_DELTA_BYTES + 8;

		if (len < o + 8 ||
		    sscanf((const char *)p + off, "FXDELTA %u\n", &k) != 1 ||
		    k != *n || memcmp(p + off + FX_DELTA_BYTES, ck, 8) ||
		    !emulator_records(p, len, &o) || len < o + 8 ||
		    memcmp(p + o, cp_end, 8))
			return true;
		off = o + 8;
		(*n)++;
	}
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int save_body(int io_fd, uint32_t dom, uint32_t flags,
		     struct save_callbacks *cb, xc_stream_type_t type)
{
	struct fx_dom *d;
	uint8_t *buf;

	fx.save_flags = flags;
	fx.save_type = type;
	if (!(d = fx_dom(dom)) || !cb || !cb->suspend ||
	    (type != XC_STREAM_PLAIN &&
	     (type != XC_STREAM_REMUS || !cb->postcopy || !cb->checkpoint))) {
		errno = EINVAL;
		return -1;
	}
	buf = malloc(FX_SAVE_BYTES);
	if (!buf)
		abort();
	fx_save_stream(dom, buf);
	if (flags & XCFLAGS_LIVE) {
		/* As Xen 4.17's xg_sr_save.c send_memory_live: the policy is
		 * asked before each round with the pages that round sends
		 * (round 0: all of them), and again right after the send with
		 * dirty_count -1; STOP on the first call still sends them. */
		struct precopy_stats st = { 0, 0, FX_SAVE_P2M };
		int64_t dirty = FX_SAVE_P2M;
		unsigned int x = 0;

		fx.save_live_sent = 0;
		for (;;) {
			int v;

			if (fx.save_round)
				fx.save_round(fx.save_round_ctx, st.iteration);
			v = cb->precopy_policy ? cb->precopy_policy(st, cb->data) :
			    XGS_POLICY_STOP_AND_COPY;

			x++;
			if (v == XGS_POLICY_ABORT) {
				free(buf);
				errno = EINTR;
				return -1;
			}
			fx.save_live_sent += (uint64_t)dirty;
			fx.save_last_cap = d->cap;
			if (v != XGS_POLICY_CONTINUE_PRECOPY)
				break;
			st.iteration = x;
			st.total_written += (uint64_t)st.dirty_count;
			st.dirty_count = -1;
			v = cb->precopy_policy(st, cb->data);
			if (v == XGS_POLICY_ABORT) {
				free(buf);
				errno = EINTR;
				return -1;
			}
			if (v != XGS_POLICY_CONTINUE_PRECOPY)
				break;
			/* the fake's figures end: as if the policy stopped */
			if (fx.save_rounds >= 8 ||
			    fx.save_dirty[fx.save_rounds] < 0)
				break;
			dirty = st.dirty_count = fx.save_dirty[fx.save_rounds++];
		}
	}
	for (unsigned int ck = 0;; ck++) {
		static const uint8_t checkpoint[8] = { 'F', 'X', 'C', 'K',
						       'P', 'T', '\n', 0 };
		int v;

		if (!cb->suspend(cb->data) || !d->shutdown ||
		    d->shutdown_reason != SHUTDOWN_suspend) {
			/* libxenguest: "Domain has not been suspended" */
			free(buf);
			errno = EINVAL;
			return -1;
		}
		if (ck) {
			/* A later checkpoint of a checkpointed stream. */
			snprintf((char *)buf, 32, "FXDELTA %u\n", ck);
			if (write_all(io_fd, buf, FX_DELTA_BYTES)) {
				free(buf);
				return -1;
			}
		} else {
			size_t half = FX_SAVE_BYTES / 2, end = FX_SAVE_BYTES;

			if (fx.save_fail_at && fx.save_fail_at < end)
				end = fx.save_fail_at;
			if (write_all(io_fd, buf, end < half ? end : half)) {
				free(buf);
				return -1;
			}
			if (end >= half && fx.save_midway)
				fx.save_midway(fx.save_midway_ctx);
			if (end > half &&
			    write_all(io_fd, buf + half, end - half)) {
				free(buf);
				return -1;
			}
			if (end < FX_SAVE_BYTES) {
				free(buf);
				errno = EIO; /* e.g. a page it could not map */
				return -1;
			}
		}
		if (type == XC_STREAM_PLAIN)
			break;
		/* As xg_sr_save.c for Remus: CHECKPOINT, postcopy,
		 * checkpoint; its 0 ends the stream with no END record. */
		if (write_all(io_fd, checkpoint, sizeof(checkpoint)) ||
		    cb->postcopy(cb->data) <= 0) {
			free(buf);
			return -1;
		}
		fx.save_checkpoints = ck + 1;
		v = cb->checkpoint(cb->data);
		if (v <= 0) {
			free(buf);
			return v < 0 ? -1 : 0;
		}
	}
	free(buf);
	return 0;
}

/* As libxenguest: an HVM-type domain's setup turns QEMU's log-dirty on
 * through the callback (called unchecked: NULL would crash it), the
 * cleanup off again. */
int __wrap_xc_domain_save(xc_interface *xch, int io_fd, uint32_t dom,
			  uint32_t flags, struct save_callbacks *cb,
			  xc_stream_type_t type, int recv_fd);
int __wrap_xc_domain_save(xc_interface *xch, int io_fd, uint32_t dom,
			  uint32_t flags, struct save_callbacks *cb,
			  xc_stream_type_t type, int recv_fd)
{
	ON(xch);
	struct fx_dom *d;
	int rc;

	FAILPOINT(-1);
	d = fx_dom(dom);
	if (d && d->hvm) {
		if (!cb || !cb->switch_qemu_logdirty)
			abort(); /* libxenguest calls it unchecked */
		if (cb->switch_qemu_logdirty(dom, 1, cb->data)) {
			errno = EIO; /* "Couldn't enable qemu log-dirty mode" */
			return -1;
		}
		fx.save_qemu_logdirty_on++;
	}
	rc = save_body(io_fd, dom, flags, cb, type);
	if (d && d->hvm) {
		int e = errno;

		cb->switch_qemu_logdirty(dom, 0, cb->data);
		fx.save_qemu_logdirty_off++;
		errno = e;
	}
	return rc;
}

int __wrap_libxl_domain_resume(libxl_ctx *ctx, uint32_t domid,
			       int suspend_cancel, const libxl_asyncop_how *ao);
int __wrap_libxl_domain_resume(libxl_ctx *ctx, uint32_t domid,
			       int suspend_cancel, const libxl_asyncop_how *ao)
{
	ON(ctx);
	struct fx_dom *d;
	int rc = libxl_fail("libxl_domain_resume");

	if (rc)
		return rc;
	if (!(d = fx_dom(domid)))
		return ERROR_DOMAIN_NOTFOUND;
	if (!d->shutdown || d->shutdown_reason != SHUTDOWN_suspend ||
	    suspend_cancel != 1)
		return ERROR_FAIL;
	d->shutdown = false;
	return 0;
}

int __wrap_libxl_retrieve_domain_configuration(libxl_ctx *ctx, uint32_t domid,
					       libxl_domain_config *dc,
					       const libxl_asyncop_how *ao);
int __wrap_libxl_retrieve_domain_configuration(libxl_ctx *ctx, uint32_t domid,
					       libxl_domain_config *dc,
					       const libxl_asyncop_how *ao)
{
	ON(ctx);
	struct fx_dom *d;
	int rc = libxl_fail("libxl_retrieve_domain_configuration");

	if (rc)
		return rc;
	if (!(d = fx_dom(domid)))
		return ERROR_DOMAIN_NOTFOUND;
	dc->c_info.name = strdup(d->name);
	dc->b_info.max_memkb = d->nr_pages * 4;
	return 0;
}

/* The JSON helpers need a real libxl ctx: the fake writes and reads a
 * small subset, {"c_info":{"name":"N"},"b_info":{"max_memkb":M}}. */
char *__wrap_libxl_domain_config_to_json(libxl_ctx *ctx,
					 libxl_domain_config *dc);
char *__wrap_libxl_domain_config_to_json(libxl_ctx *ctx,
					 libxl_domain_config *dc)
{
	ON(ctx);
	char *s;

	if (enter("libxl_domain_config_to_json"))
		return NULL;
	if (asprintf(&s, "{\"c_info\":{\"name\":\"%s\"},\"b_info\":"
		     "{\"max_memkb\":%llu}}", dc->c_info.name ?
		     dc->c_info.name : "",
		     (unsigned long long)dc->b_info.max_memkb) < 0)
		return NULL;
	return s;
}

int __wrap_libxl_domain_config_from_json(libxl_ctx *ctx,
					 libxl_domain_config *dc,
					 const char *s);
int __wrap_libxl_domain_config_from_json(libxl_ctx *ctx,
					 libxl_domain_config *dc,
					 const char *s)
{
	ON(ctx);
	char name[64];
	unsigned long long kb;
	int rc = libxl_fail("libxl_domain_config_from_json");

	if (rc)
		return rc;
	if (sscanf(s, "{\"c_info\":{\"name\":\"%63[^\"]\"},\"b_info\":"
		   "{\"max_memkb\":%llu}}", name, &kb) != 2)
		return ERROR_INVAL;
	dc->c_info.name = strdup(name);
	dc->b_info.max_memkb = kb;
	return 0;
}

int __wrap_libxl_domain_create_restore(libxl_ctx *ctx, libxl_domain_config *dc,
				       uint32_t *domid, int fd, int send_back_fd,
				       const libxl_domain_restore_params *p,
				       const libxl_asyncop_how *ao,
				       const libxl_asyncprogress_how *aop);
int __wrap_libxl_domain_create_restore(libxl_ctx *ctx, libxl_domain_config *dc,
				       uint32_t *domid, int fd, int send_back_fd,
				       const libxl_domain_restore_params *p,
				       const libxl_asyncop_how *ao,
				       const libxl_asyncprogress_how *aop)
{
	ON(ctx);
	int rc = libxl_fail("libxl_domain_create_restore");
	size_t cap = 1u << 20;
	struct fx_dom *d;
	uint32_t id;
	ssize_t n;

	*domid = (uint32_t)INVALID_DOMID;
	if (rc)
		return rc;
	fx.restore_checkpointed = p->checkpointed_stream;
	if (p->stream_version != 2 || send_back_fd != -1 ||
	    dc->c_info.domid != (uint32_t)INVALID_DOMID)
		return ERROR_INVAL;
	/* Built before the stream is read, as libxl does; destroyed again
	 * when the restore fails. */
	for (id = 1; fx_dom(id); id++)
		;
	d = fx_add_dom(id, dc->b_info.max_memkb / 4, 1, false);
	if (!d)
		return ERROR_NOMEM;
	snprintf(d->name, sizeof(d->name), "%s",
		 dc->c_info.name ? dc->c_info.name : "");
	free(fx.restored);
	fx.restored = malloc(cap);
	fx.restored_len = 0;
	fx.restored_dm_len = 0;
	fx.restored_dm_xs = 0;
	if (!fx.restored)
		abort();
	for (;;) {
		if (fx.restored_len == cap) {
			cap *= 2;
			fx.restored = realloc(fx.restored, cap);
			if (!fx.restored)
				abort();
		}
		n = read(fd, fx.restored + fx.restored_len,
			 cap - fx.restored_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break; /* whole_stream() says no */
		if (n == 0)
			break;
		fx.restored_len += (size_t)n;
	}
	if ((p->checkpointed_stream == LIBXL_CHECKPOINTED_STREAM_REMUS ?
		     !whole_checkpoints(fx.restored, fx.restored_len,
					&fx.restored_checkpoints) :
		     !whole_stream(fx.restored, fx.restored_len)) ||
	    fx.restore_fail_late) {
		dom_free(d);
		fx.restores_failed++;
		/* libxl hands back the domid it had, destroyed; by then it
		 * may name another domain (restore_fail_domid) */
		*domid = fx.restore_fail_domid ? fx.restore_fail_domid : id;
		return ERROR_BADFAIL;
	}
	*domid = id;
	return 0;
}

/* ---- QEMU's QMP socket ------------------------------------------------------ */

/* hv/xen/dm.c's socket directory (an internal of the backend). */
extern const char *xen_qmp_dir;

static struct {
	pthread_t thread;
	bool running;
	int lfd;
	unsigned int host;
	uint32_t domid;
	char dir[64];
	char path[128];
} qemu = { .lfd = -1 };

/*
 * send() with MSG_NOSIGNAL, not write(): in the hostile modes the client
 * (dm.c) hangs up mid-conversation, and a write() to its closed socket
 * raised SIGPIPE and killed the whole test binary (2 of 5 runs).
 */
static void qmp_send(int fd, const char *s)
{
	size_t len = strlen(s);

	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* the client went: its side reports it */
		s += n;
		len -= (size_t)n;
	}
}

static void qmp_log(const char *what)
{
	size_t n = strlen(fx.qmp_log);

	snprintf(fx.qmp_log + n, sizeof(fx.qmp_log) - n, "%s ", what);
}

/* One client, until it closes: 0, or -1 when the fake closed on it. */
static int qemu_serve(int c)
{
	char line[4096];
	size_t len = 0;
	int state_fd = -1;

	if (fx.qmp_mode == FX_QMP_NO_GREETING)
		qmp_send(c, "{\"hello\": 1}\r\n");
	else
		qmp_send(c, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7, "
			    "\"minor\": 2, \"micro\": 0}}, \"capabilities\": "
			    "[\"oob\"]}}\r\n");
	for (;;) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct iovec iov = { line + len, sizeof(line) - 1 - len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = u.buf,
				     .msg_controllen = sizeof(u.buf) };
		struct cmsghdr *cm;
		ssize_t n = recvmsg(c, &mh, 0);
		char *nl;

		if (n <= 0)
			break;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == SOL_SOCKET &&
			    cm->cmsg_type == SCM_RIGHTS) {
				if (state_fd >= 0)
					close(state_fd);
				memcpy(&state_fd, CMSG_DATA(cm), sizeof(int));
			}
		len += (size_t)n;
		line[len] = '\0';
		while ((nl = strchr(line, '\n'))) {
			*nl = '\0';
			if (strstr(line, "\"qmp_capabilities\"")) {
				qmp_send(c, "{\"return\": {}}\r\n");
			} else if (strstr(line, "\"stop\"")) {
				qmp_log("stop");
				if (fx.qmp_mode == FX_QMP_GARBAGE) {
					qmp_send(c, "hello there\r\n");
				} else {
					qmp_send(c, "{\"timestamp\": {\"seconds\": 1, "
						    "\"microseconds\": 2}, \"event\": \"STOP\"}\r\n");
					qmp_send(c, "{\"return\": {}}\r\n");
				}
			} else if (strstr(line, "\"add-fd\"")) {
				qmp_log(state_fd >= 0 ? "add-fd" : "add-fd(no-fd)");
				qmp_send(c, fx.qmp_mode == FX_QMP_NO_FDSET ?
					 "{\"return\": {\"fd\": 30}}\r\n" :
					 "{\"return\": {\"fd\": 30, \"fdset-id\": 1}}\r\n");
			} else if (strstr(line, "\"xen-save-devices-state\"")) {
				bool live = strstr(line, "\"live\":true");

				qmp_log(live ? "save(live)" : "save");
				if (fx.qmp_mode == FX_QMP_SAVE_CLOSES)
					goto out_closed;
				if (fx.qmp_mode == FX_QMP_LONG_LINE) {
					char big[8192];

					memset(big, 'x', sizeof(big));
					for (int i = 0; i < 10; i++)
						if (send(c, big, sizeof(big),
							 MSG_NOSIGNAL) < 0)
							break;
					goto out_closed;
				}
				/* QEMU 7.2 opens /dev/fdset/N O_WRONLY and
				 * hands out a set's fd only if its access
				 * mode matches (monitor_fdset_dup_fd_add). */
				if (fx.qmp_mode != FX_QMP_SAVE_ERROR &&
				    (state_fd < 0 ||
				     (fcntl(state_fd, F_GETFL) & O_ACCMODE) !=
					     O_WRONLY)) {
					qmp_log("save-EACCES");
					qmp_send(c, "{\"error\": {\"class\": "
						    "\"GenericError\", \"desc\": "
						    "\"Unable to open /dev/fdset/1: "
						    "Permission denied\"}}\r\n");
				} else if (fx.qmp_mode == FX_QMP_SAVE_ERROR) {
					qmp_send(c, "{\"id\": 1, \"error\": {\"class\": "
						    "\"GenericError\", \"desc\": "
						    "\"saving Xen device state failed\"}}\r\n");
				} else {
					size_t want = fx.qmp_mode == FX_QMP_SAVE_HUGE ?
						      33u * 1024u * 1024u :
						      fx.qemu_state_bytes;
					uint8_t *b = calloc(1, want + 1);

					if (!b)
						abort();
					for (size_t i = 0; i < want; i++)
						b[i] = (uint8_t)(i * 13 + 5);
					snprintf((char *)b, 32, "FXQEMU %u\n", qemu.domid);
					if (state_fd >= 0 &&
					    write_all(state_fd, b, want))
						abort();
					free(b);
					qmp_send(c, "{\"return\": {}}\r\n");
				}
			} else if (strstr(line, "\"remove-fd\"")) {
				qmp_log("remove-fd");
				if (state_fd >= 0)
					close(state_fd);
				state_fd = -1;
				qmp_send(c, "{\"return\": {}}\r\n");
			} else if (strstr(line, "\"xen-set-global-dirty-log\"")) {
				fx.qemu_logdirty = strstr(line, "\"enable\":true");
				qmp_log(fx.qemu_logdirty ? "logdirty-on" :
					"logdirty-off");
				qmp_send(c, "{\"return\": {}}\r\n");
			} else {
				qmp_send(c, "{\"error\": {\"class\": \"CommandNotFound\", "
					    "\"desc\": \"unknown\"}}\r\n");
			}
			len -= (size_t)(nl + 1 - line);
			memmove(line, nl + 1, len + 1);
		}
		if (len >= sizeof(line) - 1)
			break;
	}
	if (state_fd >= 0)
		close(state_fd);
	return 0;
out_closed:
	if (state_fd >= 0)
		close(state_fd);
	return -1;
}

static void *qemu_main(void *arg)
{
	(void)arg;
	fx_use_host(qemu.host);
	for (;;) {
		int c = accept(qemu.lfd, NULL, NULL);

		if (c < 0)
			break; /* fx_qemu_stop shut the socket down */
		qemu_serve(c);
		close(c);
	}
	return NULL;
}

void fx_qemu_start(uint32_t domid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (qemu.running)
		abort();
	snprintf(qemu.dir, sizeof(qemu.dir), "/tmp/fxqmp-XXXXXX");
	if (!mkdtemp(qemu.dir))
		abort();
	snprintf(qemu.path, sizeof(qemu.path), "%s/qmp-libxl-%u", qemu.dir,
		 domid);
	if (strlen(qemu.path) >= sizeof(sa.sun_path))
		abort();
	memcpy(sa.sun_path, qemu.path, strlen(qemu.path) + 1);
	qemu.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (qemu.lfd < 0 || bind(qemu.lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(qemu.lfd, 4))
		abort();
	qemu.host = fx_host_index();
	qemu.domid = domid;
	if (!fx.qemu_state_bytes)
		fx.qemu_state_bytes = 70000; /* more than a pipe holds */
	xen_qmp_dir = qemu.dir;
	if (pthread_create(&qemu.thread, NULL, qemu_main, NULL))
		abort();
	qemu.running = true;
}

void fx_qemu_stop(void)
{
	if (!qemu.running)
		return;
	shutdown(qemu.lfd, SHUT_RDWR);
	pthread_join(qemu.thread, NULL);
	close(qemu.lfd);
	qemu.lfd = -1;
	unlink(qemu.path);
	rmdir(qemu.dir);
	xen_qmp_dir = "/var/run/xen";
	qemu.running = false;
}
