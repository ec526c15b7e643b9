/*
 * checkpoint/internal.h — shared between the files of checkpoint/ only
 * (save and restore of a domain; the stream codec below them is
 * checkpoint/stream/, whose door is checkpoint/stream/stream.h).
 *
 *   save.c     the domain config header, pages and state out of a domain
 *              (sr_stream_*, sr_write_*), pvm_ckpt_save()
 *   restore.c  the config header back, pages and state into a domain,
 *              pvm_ckpt_restore(), pvm_ckpt_inspect()
 *   epoch.c    the manifest, pvm_ckpt_continuous()
 *   crypt.c    encryption at rest: key files, sealed files (AES-256-GCM)
 *   devices.c  PV device state: suspend, quiesce, records, reconnect
 *   xen.c      the same on a Xen host, through libxenguest's own stream
 */
#ifndef PVM_CHECKPOINT_INTERNAL_H
#define PVM_CHECKPOINT_INTERNAL_H

#include <stdarg.h>

#include "checkpoint/checkpoint.h"
#include "common/common.h"
#include "hv/hv.h"
#include "hv/sim/backend.h"
#include "pvquiesce/pvquiesce.h"

#define SR_BATCH PVM_CKPT_PAGE_BATCH_MAX
#define SR_CONFIG_MAX (64u * 1024u) /* xl option data we write or accept */
#define SR_STATE_MAX (4u << 20)     /* vCPU/evtchn/grant state blobs */
#define SR_IMAGE_MAX 256u

/* Kinds of stream file (config key pvmig_kind). */
#define SR_KIND_FULL "full"   /* a save: restorable on its own */
#define SR_KIND_BASE "base"   /* epoch 0 of a checkpoint dir: also */
#define SR_KIND_DELTA "delta" /* epoch N > 0: only after its predecessors */

/* The domain config carried in the xl header's option data. */
struct sr_config {
	char name[PVM_CKPT_NAME_MAX + 1];
	char image[SR_IMAGE_MAX];
	char kind[8];
	char chain[33];     /* base/delta: the checkpoint run, 32 hex digits */
	uint64_t nr_pages;
	uint32_t nr_vcpus;
	uint32_t domid;
	uint32_t epoch;
	struct pvm_ckpt_devices dev;
	bool dev_state;     /* pvmig_device_state = 1: PVMIG_DEVICE records
			     * for every device (PVMIG_XENSTORE if legacy) */
};

/* ---- save side (save.c) ------------------------------------------------ */

/* ---- encryption at rest (crypt.c, docs/stream-format.md §9) ---------- */

struct sr_key {
	uint8_t k[32];
	bool loaded;
};
/* Reads a key file (32 raw bytes, or 64 hex digits). */
int pvm_ckpt__key_load(const char *path, struct sr_key *key,
		       struct pvm_error *e);
void pvm_ckpt__key_wipe(struct sr_key *key);
bool pvm_ckpt__is_sealed(const uint8_t *p, size_t len);
bool pvm_ckpt__is_sealed_file(const char *path);

struct sr_sealed;
/* path.tmp until commit; @key is copied (and wiped when done). */
int pvm_ckpt__sealed_create(const char *path, const struct sr_key *key,
			    bool lz4, struct sr_sealed **out);
int pvm_ckpt__sealed_write(void *ctx, const void *buf, size_t len);
int pvm_ckpt__sealed_commit(struct sr_sealed *s); /* frees @s */
void pvm_ckpt__sealed_abort(struct sr_sealed *s);

struct sr_unseal;
/* -ENOKEY when the file is sealed and @key is NULL or not loaded. */
int pvm_ckpt__unseal_open(const char *path, const struct sr_key *key,
			  struct sr_unseal **out, struct pvm_error *e);
int pvm_ckpt__unseal_read(void *ctx, void *buf, size_t len, size_t *got_out);
bool pvm_ckpt__unseal_is_lz4(const struct sr_unseal *u);
/* What made a read fail (wrong key, damage, truncation), or NULL. */
const char *pvm_ckpt__unseal_error(const struct sr_unseal *u);
void pvm_ckpt__unseal_close(struct sr_unseal *u);

/* An output stream file with the config header written and META begun. */
struct sr_out {
	struct pvm_ckpt_file *file;     /* owned until commit/abort */
	struct sr_sealed *sealed;       /* instead of file, when encrypting */
	struct pvm_ckpt_writer *w;      /* owned */
};

/* Creates @path (tmp until commit), sealed with @key unless NULL, writes
 * the xl header with @c, opens a writer and writes the stream headers and
 * META. */
int pvm_ckpt__out_open(struct sr_out *o, const char *path, bool lz4,
		       const struct sr_key *key, const struct sr_config *c,
		       struct pvm_error *e);
/* Creates @path (tmp until commit), sealed with @key unless NULL, and no
 * writer: *@wc writes raw bytes into it (lz4 and sealing applied). */
int pvm_ckpt__out_create(struct sr_out *o, const char *path, bool lz4,
			 const struct sr_key *key,
			 struct pvm_ckpt_write_cfg *wc, struct pvm_error *e);
/* Pre-copy rounds when the caller gives no bound. */
#define SR_DEFAULT_ROUNDS 8u
/* The convergence policy of a live save: stop pre-copying now? */
bool pvm_ckpt__precopy_done(uint32_t round, uint32_t max_rounds, size_t dirty,
			    size_t prev_dirty);

/* ---- on a Xen host (xen.c): libxenguest's stream, xl's file ----------- */

/* pvm_ckpt_save() of an x86 PV domain on Xen: the file `xl save` writes
 * (xl header with the libxl JSON config, libxl stream with the libxc
 * stream of xc_domain_save), optionally lz4/sealed. */
int pvm_ckpt__xen_save(const struct pvm_ckpt_save_cfg *cfg,
		       const struct sr_key *key, struct pvm_ckpt_save_stats *st,
		       struct pvm_error *e);

/* pvm_ckpt_restore() of file @path on Xen: a file with libxl's JSON
 * config (pvmig save or xl save on Xen) through libxl. */
struct sr_in;
int pvm_ckpt__xen_restore(const struct pvm_ckpt_restore_cfg *cfg,
			  const char *path, const struct sr_key *key,
			  struct pvm_ckpt_restore_stats *st,
			  struct pvm_error *e);

/* pvm_ckpt_continuous() on Xen (libxenguest's checkpointed stream, cut
 * into the directory's epoch files; xen.c explains the layout). */
int pvm_ckpt__xen_continuous(const struct pvm_ckpt_cont_cfg *cfg,
			     const struct sr_key *key,
			     struct pvm_ckpt_cont_stats *st,
			     struct pvm_error *e);

/* pvm_ckpt_restore() of checkpoint directory @dir (manifest @m) on Xen:
 * its committed epoch files as one checkpointed stream, through libxl. */
struct sr_manifest;
int pvm_ckpt__xen_restore_dir(const struct pvm_ckpt_restore_cfg *cfg,
			      const char *dir, const struct sr_manifest *m,
			      const struct sr_key *key,
			      struct pvm_ckpt_restore_stats *st,
			      struct pvm_error *e);

/* pvm_ckpt_inspect() of such a directory: every committed epoch file read
 * through, its trailer (length, SHA-256) checked. */
int pvm_ckpt__xen_inspect_dir(const char *dir, const struct sr_manifest *m,
			      const struct sr_key *key,
			      struct pvm_ckpt_image *out, struct pvm_error *e);
/* Is @path an epoch file of a Xen checkpoint run (an xl header with libxl
 * JSON, no pvmig config)? */
bool pvm_ckpt__xen_is_epoch_file(const char *path, const struct sr_key *key);

/* Writes an xl save-file header whose option data holds @cfg (@cfglen
 * bytes, xl.cfg text or, with PVM_CKPT_XL_MANDATORY_JSON, libxl JSON). */
int pvm_ckpt__write_xl_header(const struct pvm_ckpt_write_cfg *wc,
			      uint32_t mandatory, const void *cfg,
			      size_t cfglen);
/* Finishes the stream and commits the file (fsync, rename, fsync dir). */
int pvm_ckpt__out_commit(struct sr_out *o, struct pvm_error *e);
/* Removes the tmp file; safe on an empty or committed sr_out. */
void pvm_ckpt__out_abort(struct sr_out *o);

/* The config of a live domain: name, size, vCPUs, image. */
int pvm_ckpt__config_of(struct pvm_hv *hv, uint32_t domid, struct sr_config *c,
			struct pvm_error *e);

/* Writes @n pages @pfns of the domain through map_pages(READ), in batches.
 * @zero_as_xalloc: all-zero pages go as XALLOC (no data), for a stream
 * whose reader starts from zeroed memory. @bounce (SR_BATCH pages, or
 * NULL when the domain is paused): pages are copied there first. */
int pvm_ckpt__write_pfns(struct pvm_hv *hv, uint32_t domid,
			 struct pvm_ckpt_writer *w, const uint64_t *pfns,
			 size_t n, bool zero_as_xalloc, uint8_t *bounce,
			 struct pvm_error *e);

/* State of a paused domain, read into caller-owned blobs. */
struct sr_state {
	struct pvm_buf vcpus;  /* HVM_CONTEXT body (docs/stream-format.md §7.2) */
	struct pvm_buf evtchn; /* hv evtchn_state_get format */
	struct pvm_buf grant;  /* hv grant_state_get format */
};
void pvm_ckpt__state_init(struct sr_state *s);
void pvm_ckpt__state_dispose(struct sr_state *s);
int pvm_ckpt__state_get(struct pvm_hv *hv, uint32_t domid, uint32_t nr_vcpus,
			struct sr_state *s, struct pvm_error *e);
/* HVM_CONTEXT, PVMIG_EVTCHN, PVMIG_GRANT from @s. */
int pvm_ckpt__state_write(struct pvm_ckpt_writer *w, const struct sr_state *s,
			  struct pvm_error *e);

/* SHA-256 over all memory, pfn order (through map_pages). */
int pvm_ckpt__mem_digest(struct pvm_hv *hv, uint32_t domid, uint64_t nr_pages,
			 uint8_t out[32], struct pvm_error *e);

/* pvm_ckpt__save() flags, for the base of a continuous checkpoint: */
#define SR_SAVE_KEEP_LOGDIRTY 0x1u /* leave log-dirty on after success */
#define SR_SAVE_LOGDIRTY_ON 0x2u   /* it is on already (a rebase) */

/* pvm_ckpt_save() with the domain described by @as (NULL: as it is). */
int pvm_ckpt__save(const struct pvm_ckpt_save_cfg *cfg,
		   const struct sr_config *as, unsigned sr_flags,
		   const struct sr_key *key, struct pvm_ckpt_save_stats *st_out,
		   struct pvm_error *e);

/* ---- PV device state (devices.c) ---------------------------------------- */

/* The devices of a config and their state, on either side. */
struct sr_devs {
	struct pvm_pvq_device dev[PVM_PVQ_MAX_DEVICES];
	char name[PVM_PVQ_MAX_DEVICES][40]; /* "vbd xvda (51712)", "vif 0" */
	size_t n;
	bool legacy;
	/* save: forced by the caller (AUTO: chosen at the suspend) and then
	 * the mode chosen; restore: forced by the caller or AUTO */
	enum pvm_pvq_mode mode;
	/* save: what the caller asked for (AUTO or forced), kept across the
	 * suspends of a checkpoint run (each epoch chooses anew) */
	enum pvm_pvq_mode requested;
	bool requested_set;
	uint32_t saved_domid; /* restore: the domid in the file (0: none) */
	/* save */
	struct pvm_buf state;  /* pvquiesce's blob */
	bool quiesced;         /* backends paused by us: resume or destroy */
	struct pvm_pvq_suspend_result susp; /* the suspend request's outcome */
	/* restore (and save: the legacy subtree) */
	struct pvm_buf xsimg;  /* xenstore migration image, legacy only */
	struct pvm_sim_backend_state st[PVM_PVQ_MAX_DEVICES];
	bool have[PVM_PVQ_MAX_DEVICES];
	bool have_xs, reconnected;
	uint32_t records;
};
void pvm_ckpt__devs_init(struct sr_devs *s, const struct pvm_ckpt_devices *d);
void pvm_ckpt__devs_dispose(struct sr_devs *s);
/* Before the pause: ask the guest to suspend (pvm_pvq_suspend; never
 * fails but for a vanished domain); its outcome in s->susp and, as a
 * sentence, in @desc (cooperative or not, and why). */
int pvm_ckpt__devs_suspend(struct sr_devs *s, struct pvm_hv *hv, uint32_t domid,
			   uint32_t timeout_ms, char *desc, size_t desc_len,
			   struct pvm_error *e);
/* Domain paused: drain, each backend within @drain_timeout_ms (0:
 * pvquiesce's default), and capture (and export a legacy guest's nodes). */
int pvm_ckpt__devs_quiesce(struct sr_devs *s, struct pvm_hv *hv, uint32_t domid,
			   struct pvm_xenstored *xs, uint32_t drain_timeout_ms,
			   struct pvm_error *e);
/* The backends go on in place, if quiesced (idempotent). */
void pvm_ckpt__devs_resume(struct sr_devs *s, struct pvm_hv *hv,
			   uint32_t domid);
/* PVMIG_DEVICE per device, PVMIG_XENSTORE (legacy), from the capture. */
int pvm_ckpt__devs_write(const struct sr_devs *s, struct pvm_ckpt_writer *w,
			 uint32_t domid, struct pvm_error *e);
/* Restore: each stream brings a whole set; the last stream's wins. */
void pvm_ckpt__devs_stream_start(struct sr_devs *s);
int pvm_ckpt__devs_on_record(struct sr_devs *s, const struct pvm_ckpt_device *d,
			     struct pvm_error *e);
int pvm_ckpt__devs_on_xenstore(struct sr_devs *s, const void *img, size_t len,
			       struct pvm_error *e);
/* Domain paused, its state loaded: reconnect, then (legacy) the xenstore
 * import. @required: the file says it has device state (a missing record
 * is damage); else the devices start afresh with a warning. */
int pvm_ckpt__devs_reconnect(struct sr_devs *s, struct pvm_hv *hv,
			     uint32_t domid, struct pvm_xenstored *xs,
			     bool required, const char *path,
			     struct pvm_error *e);
/* After unpause: "all N reconnected" or the names of those that did not. */
void pvm_ckpt__devs_wait(struct sr_devs *s, struct pvm_hv *hv, uint32_t domid,
			 uint32_t timeout_ms, char *msg, size_t len);

/* ---- restore side (restore.c) ----------------------------------------- */

/* Reads the config header from an open file: 0 and *@c; -ENOENT when the
 * file has no pvmig config (the bytes read are kept for the stream reader,
 * see pvm_ckpt__in_read); -EBADMSG etc. with a message. */
struct sr_in {
	struct pvm_ckpt_file *file; /* owned; NULL when sealed */
	struct sr_unseal *unseal;   /* owned; an encrypted file */
	bool lz4, sealed;
	uint8_t pre[PVM_CKPT_XL_HDR_SIZE];
	size_t pre_len, pre_off;
	uint64_t size;              /* on disk */
	uint32_t xl_mandatory;      /* the xl header's flags (0: none) */
	char *xl_config;            /* owned, NUL-terminated: xl's own config
				     * (JSON with PVM_CKPT_XL_MANDATORY_JSON,
				     * else xl.cfg text); NULL for pvmig's */
	uint32_t xl_config_len;
};
int pvm_ckpt__in_open(struct sr_in *in, const char *path,
		      const struct sr_key *key, struct sr_config *c,
		      bool *has_config_out, struct pvm_error *e);
/* A pvm_ckpt_read_fn over the stream after the config header. */
int pvm_ckpt__in_read(void *ctx, void *buf, size_t len, size_t *got_out);
void pvm_ckpt__in_close(struct sr_in *in);

/* ---- checkpoint directories (epoch.c) ---------------------------------- */

#define SR_MANIFEST "MANIFEST"
#define SR_EPOCHS_MAX 1000000u

struct sr_manifest {
	char chain[33];
	bool lz4;
	uint32_t epoch;       /* newest committed */
	uint64_t nr_pages;
};

/* Reads DIR/MANIFEST. -ENOENT if absent, -EBADMSG if damaged. */
int pvm_ckpt__manifest_read(const char *dir, struct sr_manifest *m,
			    struct pvm_error *e);
/* Commits @m as DIR/MANIFEST (tmp, fsync, rename, fsync DIR). */
int pvm_ckpt__manifest_write(const char *dir, const struct sr_manifest *m,
			     struct pvm_error *e);
/* Removes the files of runs other than @chain (once its base is in). */
void pvm_ckpt__remove_old_runs(const char *dir, const char *chain);
/* A new run's name: 32 random hex digits. */
void pvm_ckpt__new_chain(char out[33]);
/* The schedule of a run started at @t0: *@next (when the previous epoch
 * was due) moves on by the interval, then cfg->wait (or a sleep) until
 * then. 1 go on, 0 stop (duration over, or told to), < 0 error (in @e). */
int pvm_ckpt__cont_next(const struct pvm_ckpt_cont_cfg *cfg, uint64_t t0,
			uint64_t *next, struct pvm_error *e);
/* Adds committed @es to the run's totals; @epoch false for the first base
 * (its bytes count, it is not an epoch). */
void pvm_ckpt__cont_account(struct pvm_ckpt_cont_stats *st,
			    const struct pvm_ckpt_epoch_stats *es, bool epoch);
/* "DIR/CHAIN-base.pvm[.lz4]" or "DIR/CHAIN-NNNNNN.pvm[.lz4]". */
int pvm_ckpt__epoch_path(char *buf, size_t len, const char *dir,
			 const char *chain, uint32_t epoch, bool lz4);

#endif /* PVM_CHECKPOINT_INTERNAL_H */
