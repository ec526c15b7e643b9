/*
 * checkpoint/stream/ — the pvmig stream codec: Xen's libxc domain image
 * format (v3 written, v2 and v3 read) inside libxl's stream wrapper, with
 * pvmig's own state in optional libxc records; stream files (plain or lz4
 * frames) and the xl save-file header. docs/stream-format.md is the
 * authority; checkpoint/stream/stream_format.h holds the wire constants.
 * It depends on common/, lz4 and OpenSSL only: no hypervisor, no domain.
 * Save and restore of a domain sit above it in checkpoint/checkpoint.h.
 *
 * Entry points, in the order a save runs them:
 *
 *   pvm_ckpt_file_create()          open path.tmp (plain or .lz4 frame)
 *   pvm_ckpt_writer_new()           writer over any sink (file, network)
 *   pvm_ckpt_write_begin()          headers, META
 *   pvm_ckpt_write_static()         X86_CPUID/MSR_POLICY, if any
 *   pvm_ckpt_write_pages()          PAGE_DATA, as often as needed
 *   pvm_ckpt_write_tsc_info/hvm_params/hvm_context
 *   pvm_ckpt_write_xenstore/device/evtchns/grants
 *   pvm_ckpt_write_finish()         CHECKSUM, libxc END, libxl END
 *   pvm_ckpt_writer_free()
 *   pvm_ckpt_file_commit()          fsync, rename over path, fsync dir
 *
 * and a restore:
 *
 *   pvm_ckpt_file_open()            plain or .lz4, told apart by magic
 *   pvm_ckpt_read()                 pulls the stream, validates each record
 *                                   and hands it to the caller's ops table
 *   pvm_ckpt_file_close()
 *
 * pvm_ckpt_verify() / pvm_ckpt_verify_file() walk a stream with no side
 * effects and fill a struct pvm_ckpt_info for a CLI to print.
 *
 * A restore must not commit anything (unpause, hand over) until
 * pvm_ckpt_read() has returned 0: records are delivered as they arrive, and
 * the checksum that covers them is checked only at the end.
 *
 * Errors: 0 or a negative errno. -EBADMSG: malformed or corrupt stream;
 * -EPROTO: records out of order; -ENOTSUP: a valid record pvmig cannot
 * restore (unknown mandatory type, PV guest, checkpointed stream); -E2BIG:
 * a length or count over its bound; -EINVAL: bad arguments; -EIO etc. from
 * the source or sink. The writer's first error sticks.
 */
#ifndef PVM_CKPT_STREAM_H
#define PVM_CKPT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/stream/stream_format.h"

/* ---- values carried in pvmig records (docs/stream-format.md) ----------- */

enum pvm_ckpt_fe_gen {
	PVM_CKPT_FE_GEN_UNKNOWN = 0,
	PVM_CKPT_FE_GEN_MODERN = 1, /* re-handshakes on resume, like Linux */
	PVM_CKPT_FE_GEN_LEGACY = 2, /* never re-handshakes */
};

enum pvm_ckpt_csum_alg {
	PVM_CKPT_CSUM_NONE = 0,
	PVM_CKPT_CSUM_SHA256 = 1,
};

enum pvm_ckpt_dev_type {
	PVM_CKPT_DEV_VBD = 1,
	PVM_CKPT_DEV_VIF = 2,
	PVM_CKPT_DEV_CONSOLE = 3,
	/* 4..0xffff reserved */
};

enum pvm_ckpt_ring_kind {
	PVM_CKPT_RING_BLK = 0,
	PVM_CKPT_RING_NET_TX = 1,
	PVM_CKPT_RING_NET_RX = 2,
	PVM_CKPT_RING_CONSOLE = 3,
};

/* Negotiated feature bits; the rest of the 64 are reserved (zero). */
#define PVM_CKPT_VBD_F_PERSISTENT (1ull << 0)
#define PVM_CKPT_VBD_F_FLUSH (1ull << 1)
#define PVM_CKPT_VBD_F_BARRIER (1ull << 2)
#define PVM_CKPT_VBD_F_DISCARD (1ull << 3)
#define PVM_CKPT_VBD_F_INDIRECT (1ull << 4)
#define PVM_CKPT_VBD_F_PROTO_32 (1ull << 5)  /* blkif protocol x86_32-abi */
#define PVM_CKPT_VIF_F_RX_COPY (1ull << 0)
#define PVM_CKPT_VIF_F_SG (1ull << 1)
#define PVM_CKPT_VIF_F_GSO_TCPV4 (1ull << 2)
#define PVM_CKPT_VIF_F_GSO_TCPV6 (1ull << 3)
#define PVM_CKPT_VIF_F_NO_CSUM_OFFLOAD (1ull << 4)
#define PVM_CKPT_VIF_F_SPLIT_EVTCHN (1ull << 5)
#define PVM_CKPT_VIF_F_RX_NOTIFY (1ull << 6)

enum pvm_ckpt_evtchn_kind {
	PVM_CKPT_EVTCHN_UNBOUND = 1,
	PVM_CKPT_EVTCHN_INTERDOMAIN = 2,
	PVM_CKPT_EVTCHN_VIRQ = 3,
	PVM_CKPT_EVTCHN_IPI = 4,
	PVM_CKPT_EVTCHN_PIRQ = 5,
};
#define PVM_CKPT_EVTCHN_F_MASKED 0x01u
#define PVM_CKPT_EVTCHN_F_PENDING 0x02u

/* Bounds every reader applies (and every writer respects). */
#define PVM_CKPT_RINGS_MAX 16u       /* rings (queues x kinds) per device */
#define PVM_CKPT_RING_ORDER_MAX 4u   /* up to 16 pages per ring */
#define PVM_CKPT_PATH_MAX 3072u      /* XENSTORE_ABS_PATH_MAX */
#define PVM_CKPT_EVTCHN_PORT_MAX (1u << 17) /* FIFO ABI limit */
#define PVM_CKPT_GRANT_FRAMES_MAX 1024u
#define PVM_CKPT_PAGE_BATCH_MAX 1024u /* pages in one PAGE_DATA (Xen's) */
#define PVM_CKPT_RECORD_DEFAULT_MAX (16u << 20)

/* ---- decoded record contents (all pointers borrowed) ------------------- */

struct pvm_ckpt_meta {
	uint64_t nr_pages;
	uint32_t nr_vcpus;
	uint32_t domid;
	uint8_t fe_gen;       /* enum pvm_ckpt_fe_gen */
	uint8_t checksum_alg; /* set by the writer; read back by the reader */
	char name[PVM_CKPT_NAME_MAX + 1];
};

struct pvm_ckpt_tsc_info {
	uint32_t mode;
	uint32_t khz;
	uint64_t nsec;
	uint32_t incarnation;
};

struct pvm_ckpt_hvm_param {
	uint64_t index;
	uint64_t value;
};

struct pvm_ckpt_ring {
	uint16_t queue;
	uint8_t kind;  /* enum pvm_ckpt_ring_kind */
	uint8_t order; /* <= PVM_CKPT_RING_ORDER_MAX */
	uint32_t evtchn;
	uint32_t req_cons;
	uint32_t rsp_prod_pvt;
	uint32_t req_prod_seen;
	uint32_t ring_ref[1u << PVM_CKPT_RING_ORDER_MAX]; /* 1 << order used */
};

struct pvm_ckpt_device {
	uint32_t dev_type; /* enum pvm_ckpt_dev_type */
	uint32_t devid;
	uint16_t backend_domid;
	uint8_t fe_state; /* XenbusState */
	uint8_t be_state;
	uint32_t flags;    /* PVM_CKPT_DEV_F_* (other bits ignored) */
	uint64_t features;
	const char *fe_path; /* NUL-terminated, < PVM_CKPT_PATH_MAX */
	const char *be_path;
	uint16_t nr_rings;   /* 1..PVM_CKPT_RINGS_MAX */
	const struct pvm_ckpt_ring *rings;
};

/* PVMIG_DEVICE flags bits 0-1: how the device reconnects on restore
 * (pvquiesce enum pvm_pvq_mode): 0 not recorded, 1 cooperative (the
 * frontend re-handshakes), 2 transparent (the backend re-attaches to the
 * old ring); 3 reserved. */
#define PVM_CKPT_DEV_F_MODE_MASK 3u

struct pvm_ckpt_evtchn {
	uint32_t port;
	uint8_t kind;  /* enum pvm_ckpt_evtchn_kind */
	uint8_t flags; /* PVM_CKPT_EVTCHN_F_* */
	uint16_t remote_domid;
	uint32_t remote; /* remote port, virq or pirq */
	uint32_t vcpu;
};

struct pvm_ckpt_grant {
	uint32_t ref;
	uint16_t flags;
	uint16_t domid;
	uint64_t frame;
};

struct pvm_ckpt_grant_table {
	uint32_t version; /* 1 */
	uint32_t nr_frames;
	uint32_t count;
	const struct pvm_ckpt_grant *entries;
};

/* A libxc record as read: body borrowed for the duration of the call. */
struct pvm_ckpt_record {
	uint32_t type;
	uint32_t length;
	const uint8_t *body;
};

/* ---- writer ------------------------------------------------------------ */

/* Writes all @len bytes or fails: 0 or a negative errno. */
typedef int (*pvm_ckpt_write_fn)(void *ctx, const void *buf, size_t len);

/* Only Xen's records: no META, no CHECKSUM (for Xen's verifier, which
 * rejects every record type it does not know, optional or not). */
#define PVM_CKPT_WRITE_XEN_ONLY 0x1u

struct pvm_ckpt_write_cfg {
	pvm_ckpt_write_fn write;
	void *write_ctx;
	uint32_t flags;     /* PVM_CKPT_WRITE_* */
	uint32_t xen_major; /* domain header; 0: 4.17 */
	uint32_t xen_minor;
};

struct pvm_ckpt_writer;

/* Allocates a writer; @cfg is copied. Free with pvm_ckpt_writer_free(). */
int pvm_ckpt_writer_new(const struct pvm_ckpt_write_cfg *cfg,
			struct pvm_ckpt_writer **w_out);
/* NULL is fine. Does not write anything. */
void pvm_ckpt_writer_free(struct pvm_ckpt_writer *w);
/* The first error, sticky; 0 if none. */
int pvm_ckpt_writer_error(const struct pvm_ckpt_writer *w);
/* Bytes handed to the sink so far. */
uint64_t pvm_ckpt_writer_offset(const struct pvm_ckpt_writer *w);

/*
 * Every write function below returns the writer's sticky error: once one
 * fails, the rest do nothing and return that error. Arguments are borrowed
 * for the call only.
 */

/* libxl header, LIBXC_CONTEXT, libxc image + domain header (x86 HVM),
 * META (unless XEN_ONLY). @meta->nr_pages bounds pfns. STATIC_DATA_END
 * follows by itself before the first record of any other kind. */
int pvm_ckpt_write_begin(struct pvm_ckpt_writer *w,
			 const struct pvm_ckpt_meta *meta);
/* A static record, between write_begin() and the first other record:
 * X86_CPUID_POLICY (xen_cpuid_leaf_t[], 24 bytes each) or X86_MSR_POLICY
 * (xen_msr_entry_t[], 16 bytes each), in Xen's layout. */
int pvm_ckpt_write_static(struct pvm_ckpt_writer *w, uint32_t type,
			  const void *body, size_t len);
/* One PAGE_DATA record of @n (1..PVM_CKPT_PAGE_BATCH_MAX) pages. @types[i]
 * is a PVM_CKPT_PFN_* type (NULL: all NOTAB); @data[i] points to 4096 bytes,
 * or is ignored for BROKEN/XALLOC/XTAB. Pages are streamed, not copied. */
int pvm_ckpt_write_pages(struct pvm_ckpt_writer *w, const uint64_t *pfns,
			 const uint8_t *types, const void *const *data,
			 size_t n);
int pvm_ckpt_write_tsc_info(struct pvm_ckpt_writer *w,
			    const struct pvm_ckpt_tsc_info *tsc);
int pvm_ckpt_write_hvm_params(struct pvm_ckpt_writer *w,
			      const struct pvm_ckpt_hvm_param *p, size_t n);
int pvm_ckpt_write_hvm_context(struct pvm_ckpt_writer *w, const void *blob,
			       size_t len);
/* @image: a xenstore migration image (xenstore-migration.md) as produced by
 * the xenstore server; its framing is checked before it is written. */
int pvm_ckpt_write_xenstore(struct pvm_ckpt_writer *w, const void *image,
			    size_t len);
int pvm_ckpt_write_device(struct pvm_ckpt_writer *w,
			  const struct pvm_ckpt_device *dev);
int pvm_ckpt_write_evtchns(struct pvm_ckpt_writer *w,
			   const struct pvm_ckpt_evtchn *v, size_t n);
int pvm_ckpt_write_grants(struct pvm_ckpt_writer *w,
			  const struct pvm_ckpt_grant_table *gt);
/* Any libxc record, written as given after the headers (tests, and record
 * types added later). Not for END or CHECKSUM. */
int pvm_ckpt_write_raw(struct pvm_ckpt_writer *w, uint32_t type,
		       const void *body, size_t len);
/* CHECKSUM (unless XEN_ONLY), libxc END, libxl END. */
int pvm_ckpt_write_finish(struct pvm_ckpt_writer *w);

/* ---- reader ------------------------------------------------------------ */

/* Reads up to @len bytes into @buf; *got_out < len only at end of stream.
 * 0 or a negative errno. */
typedef int (*pvm_ckpt_read_fn)(void *ctx, void *buf, size_t len,
				size_t *got_out);

/*
 * What the reader hands over, after it has validated the record (lengths,
 * counts, reserved bits, order). A NULL slot means "validated and dropped":
 * this is a consumer's table, not a backend's, and verify needs none.
 * A handler returns 0, or a negative errno that stops the read and is
 * returned from pvm_ckpt_read(). Pointers are borrowed for the call.
 */
struct pvm_ckpt_read_ops {
	int (*meta)(void *ctx, const struct pvm_ckpt_meta *m);
	/* @data is 4096 bytes, NULL for BROKEN/XALLOC/XTAB. */
	int (*page)(void *ctx, uint64_t pfn, unsigned type, const void *data);
	int (*tsc_info)(void *ctx, const struct pvm_ckpt_tsc_info *t);
	int (*hvm_params)(void *ctx, const struct pvm_ckpt_hvm_param *p,
			  size_t n);
	int (*hvm_context)(void *ctx, const void *blob, size_t len);
	int (*xenstore)(void *ctx, const void *image, size_t len);
	int (*device)(void *ctx, const struct pvm_ckpt_device *d);
	int (*evtchns)(void *ctx, const struct pvm_ckpt_evtchn *v, size_t n);
	int (*grants)(void *ctx, const struct pvm_ckpt_grant_table *g);
	/* libxl EMULATOR_XENSTORE_DATA / EMULATOR_CONTEXT. */
	int (*emulator)(void *ctx, uint32_t xl_type, uint32_t emu_id,
			uint32_t index, const void *data, size_t len);
	/* Every libxc record pvmig knows (skipped optional ones are not
	 * delivered), after its typed slot. */
	int (*record)(void *ctx, const struct pvm_ckpt_record *rec);
};

/* Fail unless the stream carries a valid CHECKSUM (pvmig's own files). */
#define PVM_CKPT_READ_REQUIRE_CHECKSUM 0x1u
/* Walk x86 PV streams too (verify): their records are checked, not used. */
#define PVM_CKPT_READ_ALLOW_PV 0x2u

struct pvm_ckpt_read_cfg {
	pvm_ckpt_read_fn read;
	void *read_ctx;
	const struct pvm_ckpt_read_ops *ops; /* NULL: validate only */
	void *ops_ctx;
	uint64_t max_pfns;   /* domain size in pages, > 0: every pfn is below;
			      * a META record stating more fails, less tightens */
	uint32_t max_record; /* body bound; 0: PVM_CKPT_RECORD_DEFAULT_MAX */
	uint32_t flags;      /* PVM_CKPT_READ_* */
};

enum pvm_ckpt_csum_state {
	PVM_CKPT_CSUM_ABSENT = 0,
	PVM_CKPT_CSUM_OK = 1,
	PVM_CKPT_CSUM_BAD = 2,
};

#define PVM_CKPT_INFO_TYPES 32u

/* What a read saw; filled as far as the read got, also on failure. */
struct pvm_ckpt_info {
	bool xl_header;      /* an xl save-file header was skipped */
	bool libxl;          /* libxl wrapper present (else bare libxc) */
	uint32_t libxc_version;
	uint32_t domain_type;
	uint32_t xen_major, xen_minor;
	uint64_t bytes;      /* consumed from the source */
	uint64_t records;    /* libxc records, END included */
	struct {
		uint32_t type;
		uint64_t count;
		uint64_t bytes; /* bodies */
	} by_type[PVM_CKPT_INFO_TYPES]; /* in order of first appearance */
	uint32_t nr_types;
	uint64_t other_records; /* past PVM_CKPT_INFO_TYPES distinct types */
	uint64_t pages;         /* pfn entries with data */
	uint64_t pfns;          /* all pfn entries */
	uint64_t optional_skipped;
	uint32_t devices, evtchns, grants, xs_nodes, xs_watches;
	uint32_t emulator_records;
	bool has_meta;
	struct pvm_ckpt_meta meta;
	enum pvm_ckpt_csum_state checksum;
	int error;           /* what pvm_ckpt_read() returned */
	char error_msg[256]; /* the first error, "" if none */
};

/* Reads one whole stream (through libxl END, or libxc END for a bare libxc
 * stream). @info_out may be NULL. 0 only if every record was valid and the
 * checksum, if any, matched. */
int pvm_ckpt_read(const struct pvm_ckpt_read_cfg *cfg,
		  struct pvm_ckpt_info *info_out);

/* Name of a libxc or pvmig record type ("PAGE_DATA"), "unknown" if none. */
const char *pvm_ckpt_record_name(uint32_t type);
/* Name of a libxl record type. */
const char *pvm_ckpt_libxl_record_name(uint32_t type);

/* Walks a stream without acting on it: pvm_ckpt_read() with no ops and
 * PVM_CKPT_READ_ALLOW_PV. @max_pfns 0: 2^28 (1 TiB). A META record always
 * tightens the bound to the size it states. */
int pvm_ckpt_verify(pvm_ckpt_read_fn read, void *read_ctx, uint64_t max_pfns,
		    struct pvm_ckpt_info *info_out);

/* ---- files ------------------------------------------------------------- */

/* A stream file: plain, or an lz4 frame file (readable by `lz4 -d`). */
struct pvm_ckpt_file;

#define PVM_CKPT_FILE_LZ4 0x1u

/* Creates "@path.tmp" (mode 0600) for writing; @flags PVM_CKPT_FILE_LZ4
 * writes an lz4 frame. Nothing appears at @path until commit. */
int pvm_ckpt_file_create(const char *path, uint32_t flags,
			 struct pvm_ckpt_file **f_out);
/* A pvm_ckpt_write_fn; @ctx is the file. */
int pvm_ckpt_file_write(void *ctx, const void *buf, size_t len);
/* Ends the lz4 frame, fsyncs, renames over @path, fsyncs the directory,
 * frees @f (also on failure, where path.tmp is removed). */
int pvm_ckpt_file_commit(struct pvm_ckpt_file *f);
/* Removes path.tmp and frees @f; NULL is fine. */
void pvm_ckpt_file_abort(struct pvm_ckpt_file *f);

/* Opens @path for reading; an lz4 frame is recognised by its magic. */
int pvm_ckpt_file_open(const char *path, struct pvm_ckpt_file **f_out);
/* A pvm_ckpt_read_fn; @ctx is the file. */
int pvm_ckpt_file_read(void *ctx, void *buf, size_t len, size_t *got_out);
/* True when the file being read is an lz4 frame. */
bool pvm_ckpt_file_is_lz4(const struct pvm_ckpt_file *f);
/* Frees a file opened for reading; NULL is fine. */
void pvm_ckpt_file_close(struct pvm_ckpt_file *f);

/* pvm_ckpt_verify() over a file, plain or .lz4. */
int pvm_ckpt_verify_file(const char *path, uint64_t max_pfns,
			 struct pvm_ckpt_info *info_out);


/* ---- the xl save-file header (checkpoint/stream/xlhdr.c) ------------------------ */

/* The fixed part of an xl save-file header, decoded. */
struct pvm_ckpt_xlhdr {
	uint32_t mandatory; /* PVM_CKPT_XL_MANDATORY_* (STREAMV2 always) */
	uint32_t optional;  /* xl defines none; ignored, as xl does */
	uint32_t optlen;    /* option data after the 48 bytes, <= _OPTDATA_MAX */
};

/* True when @p starts with the xl save-file magic (32 bytes). */
bool pvm_ckpt_xlhdr_is(const uint8_t *p, size_t len);

/*
 * Checks the first PVM_CKPT_XL_HDR_SIZE bytes of @h (@len available):
 * magic (-EBADMSG), little-endian byte order, a v2 stream and no unknown
 * mandatory flag (-ENOTSUP), option data at most PVM_CKPT_XL_OPTDATA_MAX
 * (-E2BIG). 0 fills @out. On failure @err (may be NULL) says what was
 * wrong.
 */
int pvm_ckpt_xlhdr_decode(const uint8_t *h, size_t len,
			  struct pvm_ckpt_xlhdr *out, char *err, size_t errlen);

/*
 * The domain config inside @optlen bytes of option data @opt: xl's layout
 * (le32 length, then the config; the rest is ignored), or pvmig's older
 * one (the text straight away, starting "# pvmig ", NUL padding dropped).
 * *@cfg_out points into @opt (NULL with length 0 when there is none).
 * -EBADMSG when the length word is missing or runs past the option data.
 */
int pvm_ckpt_xlhdr_config(const uint8_t *opt, uint32_t optlen,
			  const uint8_t **cfg_out, uint32_t *cfglen_out,
			  char *err, size_t errlen);

/*
 * Writes the header and the config length word (PVM_CKPT_XL_PREFIX_SIZE
 * bytes) for a config of @cfglen bytes; STREAMV2 is always set, add
 * PVM_CKPT_XL_MANDATORY_JSON for a libxl JSON config. The file continues
 * with the config, then *@optlen_out - 4 - @cfglen zero bytes, then the
 * libxl stream. Returns the bytes written, 0 when the config is too large.
 */
size_t pvm_ckpt_xlhdr_encode(uint8_t out[PVM_CKPT_XL_PREFIX_SIZE],
			     uint32_t mandatory, uint32_t cfglen,
			     uint32_t *optlen_out);

/*
 * What a libxl stream starts with before a libxc stream: the libxl header
 * (version 2, options 0) and a LIBXC_CONTEXT record header (§2.1, §2.2);
 * after the libxc stream comes PVM_CKPT_LIBXL_END_SIZE zero bytes (END).
 */
#define PVM_CKPT_LIBXL_HEAD_SIZE 24u
#define PVM_CKPT_LIBXL_END_SIZE 8u
size_t pvm_ckpt_libxl_head(uint8_t out[PVM_CKPT_LIBXL_HEAD_SIZE]);

/* ---- SHA-256 over bytes (checkpoint/stream/digest.c) --------------------- */

#define PVM_CKPT_DIGEST_LEN 32u

/* A running SHA-256 (the CHECKSUM record's, and any other the layers above
 * need). _init leaves it inert (dispose is then a no-op); _start
 * allocates; _dispose is idempotent. */
struct pvm_ckpt_digest {
	void *md; /* EVP_MD_CTX *, owned */
};

void pvm_ckpt_digest_init(struct pvm_ckpt_digest *d);
/* 0, -ENOMEM or -EIO. */
int pvm_ckpt_digest_start(struct pvm_ckpt_digest *d);
void pvm_ckpt_digest_update(struct pvm_ckpt_digest *d, const void *p,
			    size_t n);
/* The digest of what was fed so far; the running digest goes on. */
int pvm_ckpt_digest_peek(const struct pvm_ckpt_digest *d,
			 uint8_t out[PVM_CKPT_DIGEST_LEN]);
void pvm_ckpt_digest_dispose(struct pvm_ckpt_digest *d);

#endif /* PVM_CKPT_STREAM_H */
