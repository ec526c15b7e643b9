/*
 * Shared by the sources of the Xen backend; nothing outside hv/xen/
 * includes it.
 *
 *   host.c     the instance, its ops table, domains (list, info, create,
 *              destroy, pause, unpause), errno helpers
 *   memory.c   log-dirty (xc_shadow_control / xc_logdirty_control), the PV
 *              p2m, foreign mappings (xenforeignmemory_map)
 *   state.c    vCPU contexts, event-channel and grant-table state
 *   devices.c  PV disk/nic attach and detach through libxl
 *   log.c      the xentoollog logger the libraries write to (into pvm_log)
 *   guest.c    whole-domain save/restore through libxenguest and libxl
 *   dm.c       an HVM domain's device model (QEMU, over QMP) around a save
 *
 * Locking: the library handles are used from any thread (libxenctrl and
 * libxenforeignmemory are thread-safe for these calls; libxl is given one
 * ctx, which it locks internally). host->lock guards only host->doms, the
 * per-domain state this instance keeps (log-dirty flag, cached p2m).
 */
#ifndef PVM_XEN_INTERNAL_H
#define PVM_XEN_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xenstore.h>
#include <xentoollog.h>
#include <libxl.h>
#include <libxl_utils.h>

#include "common/common.h"
#include "hv/hv.h"
#include "hv/xen/xen.h"

/* v1 grant entries per 4 KiB frame; p2m entries per frame (64-bit PV). */
#define XEN_GNT_PER_FRAME (PVM_PAGE_SIZE / sizeof(grant_entry_v1_t))
#define XEN_P2M_PER_FRAME (PVM_PAGE_SIZE / sizeof(xen_pfn_t))
/* The 3-level p2m tree reaches 512^3 pfns (512 GiB). */
#define XEN_P2M_TREE_MAX                                                     \
	((uint64_t)XEN_P2M_PER_FRAME * XEN_P2M_PER_FRAME * XEN_P2M_PER_FRAME)
/* Highest event-channel port we ever look at (FIFO ABI limit, 2^17). */
#define XEN_EVTCHN_PORT_MAX (1u << 17)
/* Grant frames we accept in a state blob (Xen's max_grant_frames cap). */
#define XEN_GNT_FRAMES_MAX 4096u

/*
 * A PV guest's pfn → mfn table, read from the tree the guest publishes in
 * shared_info (arch.pfn_to_mfn_frame_list_list), the way libxenguest's
 * x86 PV save maps it. @p2m is a live foreign mapping of the guest's own
 * p2m frames (read-only), so updates made by the guest are seen; it is
 * tied to the domain instance by @handle and @shinfo_mfn.
 */
struct xen_p2m {
	xen_pfn_t *p2m;      /* NULL: not loaded; else @frames pages */
	size_t frames;       /* pages mapped at @p2m */
	uint64_t size;       /* valid entries (arch.max_pfn) */
	uint64_t shinfo_mfn; /* shared_info frame of the domain it belongs to */
	xen_domain_handle_t handle;
};

/* What this instance remembers about one domain. */
struct xen_dom {
	uint32_t domid;
	bool logdirty; /* enabled by this instance */
	bool throttled; /* domain_throttle set a cap; saved_cap comes back */
	uint16_t saved_cap;
	struct xen_p2m p2m;
};

struct xen_host {
	struct pvm_hv base; /* first: hv pointers cast to xen_host */
	xentoollog_logger *log; /* xen_logger(): static, not owned */
	xc_interface *xch;
	xenforeignmemory_handle *fmem;
	struct xs_handle *xsh;
	libxl_ctx *ctx;

	pthread_mutex_t lock; /* guards doms, n_doms */
	struct xen_dom *doms;
	size_t n_doms, cap_doms;
};

static inline struct xen_host *xen_of(struct pvm_hv *hv)
{
	return (struct xen_host *)hv;
}

/* -errno after a failed library call (never 0: -EIO if errno is unset). */
static inline int xen_neg_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

/* host.c */
extern const struct pvm_hv_ops xen_ops;
/* libxl's ERROR_* as a negative errno. */
int xen_libxl_errno(int lrc);
/* 0 when @hv is the Xen backend; else logs "@what on a NAME instance"
 * and returns -EINVAL (an entry point of xen.h called on another). */
int xen_check_hv(struct pvm_hv *hv, const char *what);
/*
 * One domain's xc_domaininfo_t into @out: 0, -ESRCH (none), or the errno
 * of the hypercall. Logs nothing: callers log with their context.
 */
int xen_getinfo(struct xen_host *x, uint32_t domid, xc_domaininfo_t *out);
/* xen_getinfo and -EBUSY unless paused by the toolstack; logs. */
int xen_require_paused(struct xen_host *x, uint32_t domid, const char *what,
		       xc_domaininfo_t *info_out);
/* pfns 0..*@n_out-1 (xc_domain_nr_gpfns); logs. */
int xen_nr_pages(struct xen_host *x, uint32_t domid, uint64_t *n_out);
/*
 * The instance's record of @domid, made if @create (NULL: none or no
 * memory). Call with host->lock held.
 */
struct xen_dom *xen_dom_get(struct xen_host *x, uint32_t domid, bool create);
/* Forget @domid (drops its p2m mapping). host->lock held. */
void xen_dom_forget(struct xen_host *x, uint32_t domid);

/* log.c */
/* The libraries' logger: their lines into pvm_log (static; never freed). */
xentoollog_logger *xen_logger(void);
/* A library message level as a pvm_log level (one down from error). */
enum pvm_log_level xen_log_level(xentoollog_level level);

/* memory.c */
int xen_logdirty_enable(struct pvm_hv *hv, uint32_t domid);
int xen_logdirty_disable(struct pvm_hv *hv, uint32_t domid);
int xen_logdirty_read_clear(struct pvm_hv *hv, uint32_t domid,
			    struct pvm_bitmap *bm);
int xen_map_pages(struct pvm_hv *hv, uint32_t domid, enum pvm_hv_prot prot,
		  const uint64_t *pfns, size_t n, int *errs, void **addr_out);
int xen_unmap_pages(struct pvm_hv *hv, void *addr, size_t n);
/* Unmaps a loaded p2m; idempotent. */
void xen_p2m_dispose(struct xen_host *x, struct xen_p2m *p);
/*
 * Makes sure dom->p2m holds the current p2m of PV domain @info (loads or
 * reloads it). host->lock held. -EOPNOTSUPP when the guest publishes no
 * 3-level tree or is 32-bit; logs.
 */
int xen_p2m_load(struct xen_host *x, struct xen_dom *dom,
		 const xc_domaininfo_t *info);

/* True when a PV p2m entry names a frame of the guest's own memory. */
bool xen_p2m_entry_ok(xen_pfn_t mfn);

/* state.c */
int xen_vcpu_context_get(struct pvm_hv *hv, uint32_t domid, uint32_t vcpu,
			 struct pvm_buf *out);
int xen_vcpu_context_set(struct pvm_hv *hv, uint32_t domid, uint32_t vcpu,
			 const void *ctx, size_t len);
int xen_evtchn_state_get(struct pvm_hv *hv, uint32_t domid,
			 struct pvm_buf *out);
int xen_evtchn_state_set(struct pvm_hv *hv, uint32_t domid,
			 const void *state, size_t len);
int xen_grant_state_get(struct pvm_hv *hv, uint32_t domid,
			struct pvm_buf *out);
int xen_grant_state_set(struct pvm_hv *hv, uint32_t domid,
			const void *state, size_t len);

/* dm.c */
/* The device model serving a domain (libxl's /libxl/<domid>/dm-version). */
enum xen_dm {
	XEN_DM_NONE, /* PV, PVH */
	XEN_DM_QEMU  /* HVM with QEMU upstream ("qemu_xen") */
};
/* Device-model state we accept from QEMU (a small HVM guest's is a few
 * hundred KiB; guest RAM is not in it). */
#define XEN_DM_CONTEXT_MAX (32u * 1024u * 1024u)
/* libxl's QMP socket directory, "/var/run/xen" (the unit tests' fake
 * QEMU listens elsewhere). */
extern const char *xen_qmp_dir;
/* *@kind_out for @domid: 0, or -EOPNOTSUPP (a device model we do not
 * drive: logged), or the xenstore errno. */
int xen_dm_kind(struct xen_host *x, uint32_t domid, enum xen_dm *kind_out);
/* QMP xen-set-global-dirty-log; 0 or a negative errno, logged. */
int xen_dm_logdirty(struct xen_host *x, uint32_t domid, bool enable);
/*
 * Stops QEMU (QMP stop) and has it save its device state
 * (xen-save-devices-state, @live as libxl passes it for a migration) into
 * *@out (replaced; at most XEN_DM_CONTEXT_MAX bytes). QEMU stays stopped:
 * libxl_domain_resume or _destroy follows. 0 or a negative errno, logged.
 */
int xen_dm_save(struct xen_host *x, uint32_t domid, bool live,
		struct pvm_buf *out);
/* Writes libxl's EMULATOR_XENSTORE_DATA (if QEMU has physmap keys) and
 * EMULATOR_CONTEXT (@context) records to @fd. 0 or a negative errno. */
int xen_dm_write_records(struct xen_host *x, uint32_t domid, int fd,
			 const struct pvm_buf *context);

#endif /* PVM_XEN_INTERNAL_H */
