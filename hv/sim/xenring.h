/*
 * Xen's public I/O headers as the simulated host and its guest use them:
 * ring.h wants the OS's barriers (mb/rmb/wmb), which userspace lacks; here
 * they are C11 fences (x86: a full fence for mb, compiler barriers for the
 * others, as Linux's virt_rmb/virt_wmb on x86).
 */
#ifndef PVM_SIM_XENRING_H
#define PVM_SIM_XENRING_H

#include <stdint.h>

#ifndef mb
#define mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#endif

#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/protocols.h>
#include <xen/io/xenbus.h>

#endif /* PVM_SIM_XENRING_H */
