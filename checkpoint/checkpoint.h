/*
 * checkpoint/ — saving and restoring a domain (checkpoint/save.c,
 * restore.c, epoch.c, xen.c; docs/save-restore.md) over the stream codec
 * of checkpoint/stream/stream.h, which this header includes.
 *
 * These connect a hypervisor backend (hv/hv.h, through its ops table only)
 * to the stream:
 *
 *   pvm_ckpt_save()        one domain into one file: cold (paused while
 *                          written), live (log-dirty rounds, paused for the
 *                          last), then destroyed or (KEEP) left running
 *   pvm_ckpt_restore()     a file, or the newest committed epoch of a
 *                          continuous-checkpoint directory, into a new domain
 *   pvm_ckpt_inspect()     what a file or directory holds, and whether it is
 *                          sound, without a hypervisor
 *   pvm_ckpt_continuous()  continuous checkpoints of a running domain into a
 *                          directory: a base image, one delta stream per
 *                          epoch, a manifest renamed into place per epoch
 *
 * Every pvmig save file starts with an xl save-file header whose option
 * data is the domain's configuration in xl.cfg syntax (name, memory,
 * vcpus, the image to run, the PV devices' config; docs/stream-format.md
 * §7): what a restore needs to re-create the domain before any record is
 * read. With a key file, the whole file is sealed with AES-256-GCM
 * (checkpoint/crypt.c, §9).
 *
 * All calls run on the caller's thread; pvm_ckpt_restore() creates the
 * domain there. Errors: 0 or a negative errno; the message naming what was
 * wrong is in the stats' err_msg (and logged once).
 */
#ifndef PVM_CHECKPOINT_H
#define PVM_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/stream/stream.h"

struct pvm_hv;
struct pvm_xenstored;

#define PVM_CKPT_DISKS_MAX 8u /* = PVM_HV_MAX_DISKS (checked in save.c) */
#define PVM_CKPT_NICS_MAX 8u  /* = PVM_HV_MAX_NICS */

/*
 * The PV devices a domain was created with (the toolstack's config, as
 * libxl keeps it): carried in the saved config so that a restore re-creates
 * them. Their state is saved too: quiesced at the pause (pvquiesce), one
 * PVMIG_DEVICE record each (docs/save-restore.md, "PV devices").
 */
struct pvm_ckpt_devices {
	uint32_t frontend_gen; /* enum pvm_hv_frontend_gen */
	uint32_t nr_disks;
	struct {
		char path[256];
		char vdev[16];
		bool readonly;
	} disks[PVM_CKPT_DISKS_MAX];
	uint32_t nr_nics;
	struct {
		uint8_t mac[6];
		char bridge[32]; /* "" : the backend's default */
	} nics[PVM_CKPT_NICS_MAX];
};

/* A progress report: what is being done, in pages. Borrowed for the call. */
struct pvm_ckpt_progress {
	const char *phase; /* "precopy", "stop-and-copy", "copy", "restore" */
	uint32_t round;    /* live save: 0 = the full pass */
	uint64_t done;     /* pages handled in this phase/round */
	uint64_t total;    /* pages this phase/round will handle */
	uint64_t bytes;    /* stream bytes so far */
};
typedef void (*pvm_ckpt_progress_fn)(void *ctx,
				     const struct pvm_ckpt_progress *p);

#define PVM_CKPT_SAVE_LIVE 0x1u /* copy while running, pause for the last */
#define PVM_CKPT_SAVE_KEEP 0x2u /* leave the domain running (xl save -c) */
#define PVM_CKPT_SAVE_LZ4 0x4u  /* write an lz4 frame file */
#define PVM_CKPT_SAVE_DIGEST 0x8u /* SHA-256 of all memory at the last
				   * pause (tests; lengthens the pause) */

#define PVM_CKPT_ERR_MAX 256u

struct pvm_ckpt_save_cfg {
	struct pvm_hv *hv;
	uint32_t domid;
	const char *path;      /* borrowed; replaced only once complete */
	uint32_t flags;        /* PVM_CKPT_SAVE_* */
	uint32_t max_rounds;   /* live: pre-copy rounds before the pause; 0: 8 */
	const char *image;     /* what the domain runs, if the caller knows
				* (the toolstack's config); NULL: ask the
				* backend. Borrowed. */
	const char *key_file;  /* encrypt (AES-256-GCM) with this key file:
				* 32 bytes or 64 hex digits; NULL: don't */
	const struct pvm_ckpt_devices *devices; /* NULL: none known */
	pvm_ckpt_progress_fn progress; /* may be NULL */
	void *progress_ctx;
	/* The host's xenstore server: a legacy guest's subtree is saved from
	 * it (PVMIG_XENSTORE). NULL: none (a legacy guest with devices then
	 * cannot be saved). */
	struct pvm_xenstored *xs;
	/* Bound on the guest's answer to the suspend request made before
	 * the pause (pvquiesce/pvquiesce.h pvm_pvq_suspend); 0: 1000 ms. */
	uint32_t suspend_timeout_ms;
	/* Bound on each PV backend's drain at the pause (pvm_pvq_quiesce):
	 * one still inside a request then (a stuck disk) fails the save and
	 * the guest runs on; 0: PVM_PVQ_DRAIN_TIMEOUT_MS (2000). */
	uint32_t drain_timeout_ms;
	/* How each PV device is to reconnect on restore, recorded with it:
	 * pvquiesce's enum pvm_pvq_mode (0 auto: from what the guest
	 * advertises). */
	uint32_t pv_mode;
};

struct pvm_ckpt_save_stats {
	uint64_t pages;        /* page entries written, all rounds */
	uint64_t bytes;        /* stream bytes (before lz4) */
	uint32_t rounds;       /* live: pre-copy rounds, the full pass included */
	uint64_t pause_ns;     /* the domain was paused this long */
	uint64_t total_ns;
	bool has_digest;
	uint8_t mem_digest[32]; /* SAVE_DIGEST: memory at the last pause */
	uint32_t devices;      /* PV devices quiesced and saved */
	/* How the guest was suspended: "cooperative" or "non-cooperative:
	 * <why>" (docs/pvquiesce.md), and the request's time to suspended
	 * (or to giving up). */
	char suspend[192];
	double suspend_ms;
	char err_msg[PVM_CKPT_ERR_MAX];
};

/* Saves domain @cfg->domid to @cfg->path (see the flags). On failure the
 * domain runs on as before (unpaused if we paused it, log-dirty off) and
 * nothing at @path has changed. @st_out may be NULL. */
int pvm_ckpt_save(const struct pvm_ckpt_save_cfg *cfg,
		  struct pvm_ckpt_save_stats *st_out);

struct pvm_ckpt_restore_cfg {
	struct pvm_hv *hv;
	const char *path;   /* a save file or a checkpoint directory; borrowed */
	bool paused;        /* leave the new domain paused */
	const char *key_file; /* for encrypted files; NULL: none */
	bool digest;        /* SHA-256 of all memory before unpausing */
	pvm_ckpt_progress_fn progress;
	void *progress_ctx;
	struct pvm_xenstored *xs; /* as in pvm_ckpt_save_cfg: a legacy
				   * guest's subtree is imported into it */
	uint32_t reconnect_ms;    /* bound on the wait for the devices to
				   * reconnect after unpause; 0: 5000 */
	uint32_t pv_mode;         /* enum pvm_pvq_mode: force every device's
				   * reconnect mode; 0: as recorded */
};

struct pvm_ckpt_restore_stats {
	uint32_t domid;
	char name[PVM_CKPT_NAME_MAX + 1];
	char image[256];  /* what the new domain runs */
	struct pvm_ckpt_devices devices; /* re-created with it */
	uint64_t pages;   /* page entries applied */
	uint64_t bytes;   /* stream bytes read */
	uint32_t epoch;   /* directory: the epoch restored */
	uint32_t files;   /* streams read */
	uint64_t total_ns;
	bool has_digest;
	uint8_t mem_digest[32];
	/* PV devices after the unpause: "" (none, or left paused), "all N
	 * reconnected", or which did not ("vbd xvda did not reconnect ...").
	 * Not an error: the domain runs. */
	char devices_msg[PVM_CKPT_ERR_MAX];
	char err_msg[PVM_CKPT_ERR_MAX];
};

/*
 * Re-creates the domain saved at @cfg->path: same name (-EEXIST if the
 * host has a domain of that name), the saved domid if free, else any
 * (a legacy frontend's guest: the saved domid or -EEXIST, since its
 * xenstore paths and ACLs name it). PV device state is reconnected
 * (pvquiesce) before the unpause.
 * The domain is created paused, filled, and unpaused only after every
 * stream read has returned 0 (checksums verified) and its state is
 * loaded. On failure the new domain is destroyed; nothing else on the
 * host is touched. @st_out may be NULL.
 */
int pvm_ckpt_restore(const struct pvm_ckpt_restore_cfg *cfg,
		     struct pvm_ckpt_restore_stats *st_out);

/* What pvm_ckpt_inspect() found. */
struct pvm_ckpt_image {
	bool is_dir;           /* a continuous-checkpoint directory */
	bool has_config;       /* a pvmig domain config was found */
	char kind[8];          /* "full", "base", "delta" */
	char name[PVM_CKPT_NAME_MAX + 1];
	char image[256];       /* what the domain runs */
	uint64_t nr_pages;
	uint32_t nr_vcpus;
	uint32_t domid;        /* on the saving host */
	uint32_t epoch;        /* delta: its epoch; dir: newest committed */
	bool lz4;              /* file (dir: base) is an lz4 frame */
	bool encrypted;        /* file (dir: base) is sealed (§9) */
	uint32_t files;        /* streams walked */
	uint64_t file_bytes;   /* their sizes on disk */
	uint64_t pages;        /* page entries with data, all streams */
	uint64_t records;      /* libxc records, all streams */
	uint32_t devices, evtchns, grants;
	struct pvm_ckpt_devices config_devices; /* from the config */
	struct pvm_ckpt_info info; /* of the (last) stream walked */
	char err_msg[PVM_CKPT_ERR_MAX]; /* "" when sound */
};

/* Walks a save file or checkpoint directory with no side effects: 0 when
 * sound, else the first error (and err_msg). @out is filled as far as the
 * walk got. */
int pvm_ckpt_inspect(const char *path, struct pvm_ckpt_image *out);
/* The same for encrypted files: @key_file NULL is pvm_ckpt_inspect(); an
 * encrypted file without a key is reported (encrypted = true) and fails
 * with -ENOKEY. */
int pvm_ckpt_inspect_keyed(const char *path, const char *key_file,
			   struct pvm_ckpt_image *out);

/*
 * SHA-256 over all @nr_pages pages of domain @domid (paused, or the digest
 * means little), in pfn order, through map_pages(READ): what
 * --verify-memory compares, after a save or a migration, on both ends.
 * A page the backend could not map (its errs[] entry) fails the digest
 * with that error. 0 or a negative errno.
 */
int pvm_ckpt_mem_digest(struct pvm_hv *hv, uint32_t domid, uint64_t nr_pages,
			uint8_t out[PVM_CKPT_DIGEST_LEN]);

#define PVM_CKPT_PAGES_UNKNOWN UINT64_MAX

/* One committed epoch of pvm_ckpt_continuous(). */
struct pvm_ckpt_epoch_stats {
	uint32_t epoch;       /* 0: the base image */
	uint64_t pause_ns;    /* the domain was paused this long */
	uint64_t pages;       /* pages in this epoch's stream, or
			       * PVM_CKPT_PAGES_UNKNOWN (Xen: libxenguest
			       * does not count a checkpoint's) */
	uint64_t bytes;       /* stream bytes */
	uint64_t commit_ns;   /* from the pause to the manifest's rename */
	char suspend[192];    /* as pvm_ckpt_save_stats.suspend */
	bool has_digest;
	uint8_t mem_digest[32]; /* DIGEST: memory at this epoch's pause */
};

struct pvm_ckpt_cont_cfg {
	struct pvm_hv *hv;
	uint32_t domid;
	const char *dir;        /* created if missing; borrowed */
	uint32_t flags;         /* PVM_CKPT_SAVE_LZ4 | PVM_CKPT_SAVE_DIGEST */
	uint32_t interval_ms;   /* between epoch starts, >= 1 */
	uint32_t max_epochs;    /* after the base; 0: until told to stop */
	uint32_t rebase_epochs; /* after this many deltas, start a new run
				 * with a fresh base (bounds the chain); 0:
				 * never */
	uint64_t duration_ms;   /* 0: no limit */
	uint64_t stage_bytes;   /* pause-time copy buffer; 0: 64 MiB */
	const char *image;      /* as in pvm_ckpt_save_cfg */
	const char *key_file;   /* as in pvm_ckpt_save_cfg */
	const struct pvm_ckpt_devices *devices; /* as in pvm_ckpt_save_cfg */
	struct pvm_xenstored *xs;               /* as in pvm_ckpt_save_cfg */
	uint32_t suspend_timeout_ms;            /* as in pvm_ckpt_save_cfg */
	uint32_t drain_timeout_ms;              /* as in pvm_ckpt_save_cfg */
	uint32_t pv_mode;                       /* as in pvm_ckpt_save_cfg */
	/* Waits @ms before the next epoch: 0 to go on, 1 to stop (cancel),
	 * or a negative errno. NULL: sleep. */
	int (*wait)(void *ctx, uint32_t ms);
	void *wait_ctx;
	/* After each committed epoch (may be NULL). */
	void (*epoch_done)(void *ctx, const struct pvm_ckpt_epoch_stats *e);
	void *epoch_ctx;
	pvm_ckpt_progress_fn progress; /* base image progress; may be NULL */
	void *progress_ctx;
};

struct pvm_ckpt_cont_stats {
	uint32_t epochs;        /* committed after the base */
	uint64_t max_pause_ns, total_pause_ns;
	uint64_t bytes;         /* all streams */
	char err_msg[PVM_CKPT_ERR_MAX];
};

/*
 * Keeps @cfg->dir an up-to-date restorable image of the running domain:
 * writes the base (live), then every interval pauses the domain, copies
 * the pages dirtied since the previous epoch into a buffer, unpauses it,
 * writes them as a delta stream and commits the epoch by renaming a new
 * manifest into place. A failure or crash at any point leaves the last
 * committed epoch restorable; a failed epoch ends the run (its error is
 * returned; the domain keeps running). Returns 0 after max_epochs,
 * duration_ms or a stop from wait(). The domain keeps running.
 */
int pvm_ckpt_continuous(const struct pvm_ckpt_cont_cfg *cfg,
			struct pvm_ckpt_cont_stats *st_out);

#endif /* PVM_CHECKPOINT_H */
