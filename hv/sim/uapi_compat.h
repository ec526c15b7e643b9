/*
 * Kernel interfaces the simulated host needs that Debian 12's headers
 * (linux 6.1 uapi) predate: userfaultfd's asynchronous write-protect mode
 * (linux 6.7) and the PAGEMAP_SCAN ioctl on /proc/PID/pagemap (linux 6.7).
 *
 * Values are copied from include/uapi/linux/userfaultfd.h and
 * include/uapi/linux/fs.h of linux 6.7+. Names carry a PVM_ prefix so they
 * never collide with newer system headers. Nothing here proves the running
 * kernel has them: hv/sim/dirty.c probes at run time and reports
 * -EOPNOTSUPP with the reason when it does not.
 */
#ifndef PVM_SIM_UAPI_COMPAT_H
#define PVM_SIM_UAPI_COMPAT_H

#include <assert.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>

/* userfaultfd: faults on write-protected pages resolve themselves in the
 * kernel (no handler thread); the pte's uffd-wp bit just drops. */
#define PVM_UFFD_FEATURE_WP_UNPOPULATED (1u << 13)
#define PVM_UFFD_FEATURE_WP_ASYNC (1u << 15)

/* userfaultfd(2) flag: only user-mode faults (no privilege needed). */
#define PVM_UFFD_USER_MODE_ONLY 1

/* PAGEMAP_SCAN page categories. */
#define PVM_PAGE_IS_WPALLOWED (1u << 0)
#define PVM_PAGE_IS_WRITTEN (1u << 1)
#define PVM_PAGE_IS_FILE (1u << 2)
#define PVM_PAGE_IS_PRESENT (1u << 3)

/* PAGEMAP_SCAN flags. */
#define PVM_PM_SCAN_WP_MATCHING (1u << 0)   /* write-protect what matched */
#define PVM_PM_SCAN_CHECK_WPASYNC (1u << 1) /* -EPERM unless WP_ASYNC vma */

/* One reported range [start, end) whose pages share @categories. */
struct pvm_page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

struct pvm_pm_scan_arg {
	__u64 size; /* sizeof(struct pvm_pm_scan_arg) */
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end; /* out: where the walk stopped */
	__u64 vec;      /* struct pvm_page_region array */
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

static_assert(sizeof(struct pvm_pm_scan_arg) == 96, "pm_scan_arg ABI");
static_assert(sizeof(struct pvm_page_region) == 24, "page_region ABI");

#define PVM_PAGEMAP_SCAN _IOWR('f', 16, struct pvm_pm_scan_arg)

#endif /* PVM_SIM_UAPI_COMPAT_H */
