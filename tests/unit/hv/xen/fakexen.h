/*
 * A fake Xen host for the hv/xen unit tests: the entry points of
 * libxenctrl, libxenforeignmemory, libxenstore and libxenlight that
 * hv/xen calls are replaced at link time (-Wl,--wrap=NAME, the list is in
 * CMakeLists.txt) by __wrap_NAME functions in fakexen.c working on this
 * state. It behaves like Xen where hv/xen depends on it:
 *
 *   - machine memory is one memfd; each domain owns frames at machine
 *     frame numbers unlike its pfns (p2m[pfn] = mfn, descending), so a
 *     backend that forgets to translate reads the wrong page
 *   - PV foreign maps take mfns (only the domain's own, or its
 *     shared_info); HVM maps take gfns = pfns
 *   - a "booted" PV guest publishes its 3-level p2m tree in its own
 *     memory and shared_info (fx_boot), as Linux does
 *   - toolstack pauses nest; unpause at count 0 is EINVAL
 *   - log-dirty: enable twice is EINVAL, CLEAN while off is EINVAL
 *   - event channels: alloc_unbound gives the lowest free port; status of
 *     a port past the allocated buckets (64 ports each) is EINVAL
 *   - grant tables: frames are Xen's (not in the p2m), mapped through
 *     map_resource, which grows the table up to max frames
 *   - scheduler caps: a domain's cpupool runs credit2 (default), credit
 *     or rtds; the domctl of another scheduler is EINVAL, as in Xen;
 *     weight 0 on a set keeps the weight; credit2 refuses a cap above
 *     100 per vCPU
 *   - libxl create builds a paused PV domain with the xenstore and
 *     console ports (1, 2: unbound for dom0) and a seeded grant table
 *
 * Every wrapped call first consults the fault table: fx_fail("name", nth,
 * err) makes the nth next call of that name fail with err (libxl calls
 * return ERROR_FAIL, or ERROR_INVAL for err EINVAL).
 */
#ifndef PVM_TEST_FAKEXEN_H
#define PVM_TEST_FAKEXEN_H

#include <stdbool.h>
#include <stdint.h>

#include <xenctrl.h>

#define FX_MAX_DOMS 80
#define FX_PORTS 256
#define FX_GNT_MAX_FRAMES 8

struct fx_port {
	uint8_t state; /* EVTCHNSTAT_* */
	uint16_t rdom;
	uint32_t rport;
	uint32_t virq;
};

struct fx_dom {
	bool exists;
	uint32_t domid;
	bool hvm, dying, shutdown;
	uint32_t shutdown_reason;
	unsigned int pause_count;
	unsigned int width; /* bytes */
	unsigned int max_vcpus;
	uint64_t nr_pages;
	/* xc_domain_nr_gpfns when non-zero (an HVM domain's gfns reach its
	 * special pages at 0xfeff*: 0xff000), else nr_pages */
	uint64_t gpfns;
	xen_pfn_t *p2m; /* pfn → mfn */
	xen_pfn_t shinfo_mfn;
	xen_domain_handle_t handle;
	char name[64];
	char kernel[128];
	char xsdata[64]; /* libxl c_info.xsdata: "key=value" of the first */
	bool logdirty;
	uint64_t *dirty;
	vcpu_guest_context_x86_64_t *vcpu;
	struct fx_port ports[FX_PORTS];
	uint32_t valid_ports;
	int gnt_version;
	uint32_t gnt_frames, gnt_max;
	xen_pfn_t gnt_mfn[FX_GNT_MAX_FRAMES];
	/* whole-domain save (guest.c): the guest suspends when asked
	 * through control/shutdown; control/shutdown's value */
	bool honours_suspend;
	char control_shutdown[16];
	/* HVM: libxl's /libxl/<domid>/dm-version ("qemu_xen" for QEMU;
	 * libxl writes it for PVH too); pvh: /libxl/<domid>/type is "pvh"
	 * (else "hvm" or "pv"); physmap: QEMU published one VRAM physmap
	 * entry */
	char dm_version[32];
	bool pvh;
	bool physmap;
	/* The scheduler of its cpupool and its parameters. */
	enum { FX_CREDIT2, FX_CREDIT, FX_RTDS } sched;
	uint16_t weight, cap; /* cap: % of one pCPU, 0 = none */
};

struct fx_device {
	bool disk, removed;
	uint32_t domid;
	char target[128], vdev[32];
	int readwrite;
	uint8_t mac[6];
	int devid;
};

struct fx_host {
	int memfd;
	uint8_t *mem; /* host view of machine memory */
	uint64_t mem_pages;
	uint64_t next_mfn;
	struct fx_dom doms[FX_MAX_DOMS];
	struct fx_device devices[16];
	unsigned int n_devices;
	unsigned int live_maps; /* foreign/resource mappings not unmapped */
	unsigned int live_hbufs;
	unsigned int handles_open; /* xc, fmem, xs, libxl ctx */
	/* xc_domain_save: the dirty count given to the policy per round
	 * (-1 ends the script: the fake then stops pre-copy), how many
	 * rounds ran, the bytes of its stream (FX_SAVE_BYTES, starting
	 * "FXSAVE <domid>\n"), the flags of the last call, and the pages
	 * its live rounds sent (FX_SAVE_P2M in round 0) */
	int64_t save_dirty[8];
	unsigned int save_rounds;
	uint64_t save_live_sent; /* pages the live rounds sent */
	uint16_t save_last_cap;  /* its scheduler cap during the last one */
	uint32_t save_flags;
	/* xc_domain_save after the suspend: save_midway(save_midway_ctx)
	 * is called once half the stream is written; save_fail_at > 0
	 * makes it fail (EIO, as a lost page) after that many bytes. */
	void (*save_midway)(void *ctx);
	void *save_midway_ctx;
	size_t save_fail_at;
	/* live: called before the policy is asked about each round */
	void (*save_round)(void *ctx, unsigned int iteration);
	void *save_round_ctx;
	/* the stream type of the last call; XC_STREAM_REMUS: the base is
	 * FX_SAVE_BYTES, each later checkpoint FX_DELTA_BYTES ("FXDELTA n\n"
	 * first), each followed by the 8 bytes "FXCKPT\n\0" (its CHECKPOINT
	 * record); how many checkpoints were written */
	int save_type;
	unsigned int save_checkpoints;
	/* libxl_domain_create_restore: everything read from its fd. Like
	 * libxl it builds the domain first (paused) and destroys it again
	 * when the stream is not a whole libxl stream (header, the
	 * FX_SAVE_BYTES of a fake save, END) or restore_fail_late is set
	 * (xc_domain_restore failing at the end). A checkpointed stream
	 * (restore_checkpointed: its params' checkpointed_stream) is
	 * accepted once its first checkpoint is whole; restored_checkpoints
	 * says how many are ("failing over" to the last, as libxc does, on
	 * a partial tail). */
	int restore_checkpointed;
	unsigned int restored_checkpoints;
	uint8_t *restored;
	size_t restored_len;
	bool restore_fail_late;
	uint32_t restore_fail_domid; /* the domid a failed restore reports */
	unsigned int restores_failed;
	/* libxl records after the libxc part of the last restored stream:
	 * EMULATOR_CONTEXT bytes (the last one), EMULATOR_XENSTORE_DATA
	 * records seen */
	size_t restored_dm_len;
	unsigned int restored_dm_xs;
	/* xc_domain_save of an HVM-type domain: switch_qemu_logdirty calls
	 * (enable, then disable) */
	unsigned int save_qemu_logdirty_on, save_qemu_logdirty_off;
	/* The fake QEMU (fx_qemu_start): how it answers, what it saves, and
	 * the commands it was sent ("stop add-fd save(live=false) ...") */
	enum { FX_QMP_OK, FX_QMP_NO_GREETING, FX_QMP_GARBAGE, FX_QMP_SAVE_ERROR,
	       FX_QMP_SAVE_CLOSES, FX_QMP_LONG_LINE, FX_QMP_NO_FDSET,
	       FX_QMP_SAVE_HUGE } qmp_mode;
	size_t qemu_state_bytes;
	char qmp_log[512];
	bool qemu_logdirty;
};

/* More than a pipe holds, and than one migration chunk (1 MiB). */
#define FX_SAVE_BYTES (2560u * 1024u)
#define FX_DELTA_BYTES (100u * 1024u) /* more than a pipe holds too */
/* The libxc part xc_domain_save writes for @dom ("FXSAVE <dom>\n", then
 * a pattern of @dom): FX_SAVE_BYTES into @buf. The fake's restore
 * accepts exactly that inside a libxl stream. */
void fx_save_stream(uint32_t dom, uint8_t *buf);
#define FX_SAVE_P2M 1000 /* pages of a live save's round 0 */

/*
 * Several hosts (two pvmigd services in one test process): each handle
 * belongs to the host that was current when it was opened, and every
 * wrapped call works on its handle's host. fx is the current thread's
 * host; fx_use_host() chooses it (host 0 until then).
 */
#define FX_HOSTS 2
struct fx_host *fx_here(void);
#define fx (*fx_here())
void fx_use_host(unsigned int h);
unsigned int fx_host_index(void);

/* Fresh host with dom0 only; drops everything of the previous one. */
void fx_reset(void);
/* The same with @mem_pages of machine memory (a sparse memfd). */
void fx_reset_sized(uint64_t mem_pages);
/* A domain made directly (not through libxl), paused once; NULL if full. */
struct fx_dom *fx_add_dom(uint32_t domid, uint64_t nr_pages,
			  unsigned int vcpus, bool hvm);
struct fx_dom *fx_dom(uint32_t domid);
/*
 * PV: publish the p2m tree as a booted Linux does (tree pages in the top
 * pfns); @linear_only publishes ~0 instead (linear p2m only).
 */
void fx_boot(uint32_t domid, bool linear_only);
/* Host pointer to a guest page (through its p2m). */
uint8_t *fx_page(uint32_t domid, uint64_t pfn);
uint8_t *fx_mfn_page(xen_pfn_t mfn);
/* A guest write: changes the byte and marks the page dirty if logging. */
void fx_guest_write(uint32_t domid, uint64_t pfn, unsigned int off,
		    uint8_t v);
/* Guest-side port operations (what the guest or a backend would do). */
uint32_t fx_port_alloc(uint32_t domid, uint8_t state, uint16_t rdom,
		       uint32_t rport, uint32_t virq);
/* The grant table's host view (frame 0 start; frames are contiguous). */
grant_entry_v1_t *fx_gnt_entry(uint32_t domid, uint32_t ref);

/*
 * A fake QEMU for HVM domain @domid on the current host: a QMP server on
 * <dir>/qmp-libxl-<domid> (hv/xen's xen_qmp_dir is pointed at dir), run
 * by a thread until fx_qemu_stop(). It answers per fx.qmp_mode and, for
 * xen-save-devices-state, writes fx.qemu_state_bytes ("FXQEMU <domid>\n"
 * then a pattern) into the file descriptor add-fd passed it.
 */
void fx_qemu_start(uint32_t domid);
void fx_qemu_stop(void);

/* Fault injection: the @nth next call of @fn fails with @err. */
void fx_fail(const char *fn, unsigned int nth, int err);
/* Number of calls of @fn since fx_reset. */
unsigned int fx_calls(const char *fn);

#endif /* PVM_TEST_FAKEXEN_H */
