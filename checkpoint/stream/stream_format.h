/*
 * checkpoint/stream/stream_format.h — every on-wire constant and layout of the
 * pvmig stream, in one place. The authority is docs/stream-format.md, which
 * follows Xen's docs/specs/libxl-migration-stream.pandoc (libxl v2),
 * docs/specs/libxc-migration-stream.pandoc (libxc v3, v2 read) and
 * docs/designs/xenstore-migration.md.
 *
 * The structs below document layouts and pin their sizes; the code never
 * reads into or writes from them directly: it encodes through pvm_buf and
 * decodes through pvm_cursor, field by field, so host layout and alignment
 * never reach the wire. Integer fields are little-endian except the libxl
 * header, the libxc image header and the xenstore image header, which are
 * big-endian (the specs say so, whatever the endianness bit).
 *
 *   stream = [xl save-file header]                  (read only, skipped)
 *            libxl header                           16 B, big-endian
 *            libxl record LIBXC_CONTEXT             8 B, length 0
 *            libxc image header                     24 B, big-endian
 *            libxc domain header                    16 B
 *            libxc records ... libxc END
 *            libxl records (EMULATOR_*) ... libxl END
 *   record = { type u32, length u32, body[length], zero padding to 8 }
 */
#ifndef PVM_CKPT_STREAM_FORMAT_H
#define PVM_CKPT_STREAM_FORMAT_H

#include <assert.h>
#include <stdint.h>

/* ---- records, both levels --------------------------------------------- */

#define PVM_CKPT_REC_ALIGN 8u
#define PVM_CKPT_REC_HDR_SIZE 8u
/* Bit 31 of a record type: optional, a reader that does not know it skips it. */
#define PVM_CKPT_REC_OPTIONAL 0x80000000u
/* Xen's own limit on one record's body (xg_sr_stream_format.h). */
#define PVM_CKPT_REC_LENGTH_XEN_MAX (128u << 20)

struct pvm_ckpt_wire_rhdr {
	uint32_t type;
	uint32_t length;
};
static_assert(sizeof(struct pvm_ckpt_wire_rhdr) == 8, "record header");

/* ---- xl save-file header (checkpoint/stream/xlhdr.c) -------------------------- */

#define PVM_CKPT_XL_MAGIC "Xen saved domain, xl format\n \0 \r"
#define PVM_CKPT_XL_MAGIC_LEN 32u
/* magic[32], byteorder u32, mandatory_flags u32, optional_flags u32,
 * optional_data_len u32, all in the saving host's byte order. */
#define PVM_CKPT_XL_HDR_SIZE 48u
#define PVM_CKPT_XL_BYTEORDER 0x01020304u
#define PVM_CKPT_XL_MANDATORY_JSON (1u << 0)     /* config is libxl JSON */
#define PVM_CKPT_XL_MANDATORY_STREAMV2 (1u << 1) /* libxl stream v2 */
#define PVM_CKPT_XL_MANDATORY_KNOWN                                          \
	(PVM_CKPT_XL_MANDATORY_JSON | PVM_CKPT_XL_MANDATORY_STREAMV2)
/* The header and the option data's first word, the config length. */
#define PVM_CKPT_XL_PREFIX_SIZE (PVM_CKPT_XL_HDR_SIZE + 4u)
/* The reader refuses xl option data larger than this. */
#define PVM_CKPT_XL_OPTDATA_MAX (1u << 20)

/* ---- libxl level ------------------------------------------------------- */

#define PVM_CKPT_XL_IDENT 0x4c6962786c466d74ull /* "LibxlFmt" */
#define PVM_CKPT_XL_VERSION 2u
#define PVM_CKPT_XL_OPT_BIG_ENDIAN (1u << 0)
#define PVM_CKPT_XL_OPT_LEGACY (1u << 1)

/* big-endian */
struct pvm_ckpt_wire_libxl_hdr {
	uint64_t ident;
	uint32_t version;
	uint32_t options;
};
static_assert(sizeof(struct pvm_ckpt_wire_libxl_hdr) == 16, "libxl header");

#define PVM_CKPT_XL_REC_END 0x00000000u
#define PVM_CKPT_XL_REC_LIBXC_CONTEXT 0x00000001u
#define PVM_CKPT_XL_REC_EMULATOR_XENSTORE_DATA 0x00000002u
#define PVM_CKPT_XL_REC_EMULATOR_CONTEXT 0x00000003u
#define PVM_CKPT_XL_REC_CHECKPOINT_END 0x00000004u
#define PVM_CKPT_XL_REC_CHECKPOINT_STATE 0x00000005u
#define PVM_CKPT_XL_REC_NR 6u

/* Body head of EMULATOR_XENSTORE_DATA and EMULATOR_CONTEXT. */
struct pvm_ckpt_wire_emulator_hdr {
	uint32_t id;
	uint32_t index;
};
static_assert(sizeof(struct pvm_ckpt_wire_emulator_hdr) == 8, "emu header");

#define PVM_CKPT_EMULATOR_UNKNOWN 0u
#define PVM_CKPT_EMULATOR_QEMU_TRAD 1u
#define PVM_CKPT_EMULATOR_QEMU_UPSTREAM 2u

/* ---- libxc level ------------------------------------------------------- */

#define PVM_CKPT_XC_MARKER 0xffffffffffffffffull
#define PVM_CKPT_XC_ID 0x58454e46u /* "XENF" */
#define PVM_CKPT_XC_VERSION 3u     /* what Xen 4.17 writes */
#define PVM_CKPT_XC_VERSION_MIN 2u /* what Xen 4.5 - 4.13 wrote */
#define PVM_CKPT_XC_OPT_BIG_ENDIAN (1u << 0)

/* big-endian */
struct pvm_ckpt_wire_xc_ihdr {
	uint64_t marker;
	uint32_t id;
	uint32_t version;
	uint16_t options;
	uint16_t _res1;
	uint32_t _res2;
};
static_assert(sizeof(struct pvm_ckpt_wire_xc_ihdr) == 24, "image header");

struct pvm_ckpt_wire_xc_dhdr {
	uint32_t type;
	uint16_t page_shift;
	uint16_t _res1;
	uint32_t xen_major;
	uint32_t xen_minor;
};
static_assert(sizeof(struct pvm_ckpt_wire_xc_dhdr) == 16, "domain header");

#define PVM_CKPT_DOM_X86_PV 1u
#define PVM_CKPT_DOM_X86_HVM 2u
#define PVM_CKPT_DOM_X86_PVH 3u
#define PVM_CKPT_DOM_ARM 4u

#define PVM_CKPT_XC_REC_END 0x00u
#define PVM_CKPT_XC_REC_PAGE_DATA 0x01u
#define PVM_CKPT_XC_REC_X86_PV_INFO 0x02u
#define PVM_CKPT_XC_REC_X86_PV_P2M_FRAMES 0x03u
#define PVM_CKPT_XC_REC_X86_PV_VCPU_BASIC 0x04u
#define PVM_CKPT_XC_REC_X86_PV_VCPU_EXTENDED 0x05u
#define PVM_CKPT_XC_REC_X86_PV_VCPU_XSAVE 0x06u
#define PVM_CKPT_XC_REC_SHARED_INFO 0x07u
#define PVM_CKPT_XC_REC_X86_TSC_INFO 0x08u
#define PVM_CKPT_XC_REC_HVM_CONTEXT 0x09u
#define PVM_CKPT_XC_REC_HVM_PARAMS 0x0au
#define PVM_CKPT_XC_REC_TOOLSTACK 0x0bu
#define PVM_CKPT_XC_REC_X86_PV_VCPU_MSRS 0x0cu
#define PVM_CKPT_XC_REC_VERIFY 0x0du
#define PVM_CKPT_XC_REC_CHECKPOINT 0x0eu
#define PVM_CKPT_XC_REC_CHECKPOINT_DIRTY_PFN_LIST 0x0fu
#define PVM_CKPT_XC_REC_STATIC_DATA_END 0x10u
#define PVM_CKPT_XC_REC_X86_CPUID_POLICY 0x11u
#define PVM_CKPT_XC_REC_X86_MSR_POLICY 0x12u
#define PVM_CKPT_XC_REC_NR 0x13u

/* PAGE_DATA: count u32, reserved u32, pfn[count] u64, page data. */
struct pvm_ckpt_wire_page_data_hdr {
	uint32_t count;
	uint32_t _res1;
};
static_assert(sizeof(struct pvm_ckpt_wire_page_data_hdr) == 8, "page data");

#define PVM_CKPT_PFN_MASK 0x000fffffffffffffull
#define PVM_CKPT_PFN_RES_MASK 0x0ff0000000000000ull
#define PVM_CKPT_PFN_TYPE_SHIFT 60
/* XEN_DOMCTL_PFINFO_* >> 28 */
#define PVM_CKPT_PFN_NOTAB 0x0u
#define PVM_CKPT_PFN_L1TAB 0x1u
#define PVM_CKPT_PFN_L4TAB 0x4u
#define PVM_CKPT_PFN_L1TAB_PIN 0x9u
#define PVM_CKPT_PFN_L4TAB_PIN 0xcu
#define PVM_CKPT_PFN_BROKEN 0xdu
#define PVM_CKPT_PFN_XALLOC 0xeu
#define PVM_CKPT_PFN_XTAB 0xfu

/* X86_TSC_INFO */
struct pvm_ckpt_wire_tsc_info {
	uint32_t mode;
	uint32_t khz;
	uint64_t nsec;
	uint32_t incarnation;
	uint32_t _res1;
};
static_assert(sizeof(struct pvm_ckpt_wire_tsc_info) == 24, "tsc info");

/* HVM_PARAMS: count u32, reserved u32, then count entries. */
struct pvm_ckpt_wire_hvm_param {
	uint64_t index;
	uint64_t value;
};
static_assert(sizeof(struct pvm_ckpt_wire_hvm_param) == 16, "hvm param");

/* X86_PV_VCPU_*: vcpu_id u32, reserved u32, context. */
#define PVM_CKPT_PV_VCPU_HDR_SIZE 8u
/* X86_CPUID_POLICY entries: xen_cpuid_leaf_t, 6 x u32. */
#define PVM_CKPT_CPUID_LEAF_SIZE 24u
/* X86_MSR_POLICY entries: xen_msr_entry_t, u32 idx, u32 flags, u64 val. */
#define PVM_CKPT_MSR_ENTRY_SIZE 16u

/* ---- pvmig optional records (libxc level, bit 31 set) ------------------ */

/* 0x80706d00 + n: "pm" in the low half keeps clear of any upstream range. */
#define PVM_CKPT_PVM_REC_BASE 0x80706d00u
#define PVM_CKPT_REC_META 0x80706d01u
#define PVM_CKPT_REC_XENSTORE 0x80706d02u
#define PVM_CKPT_REC_DEVICE 0x80706d03u
#define PVM_CKPT_REC_EVTCHN 0x80706d04u
#define PVM_CKPT_REC_GRANT 0x80706d05u
#define PVM_CKPT_REC_CHECKSUM 0x80706d06u
#define PVM_CKPT_PVM_REC_NR 7u /* table size, index = type - BASE */

/* META */
struct pvm_ckpt_wire_meta {
	uint64_t nr_pages;    /* domain memory in pages; bounds PAGE_DATA */
	uint32_t nr_vcpus;
	uint32_t domid;       /* on the saving host */
	uint8_t fe_gen;       /* PVM_CKPT_FE_GEN_* */
	uint8_t checksum_alg; /* PVM_CKPT_CSUM_*: a CHECKSUM record must follow */
	uint16_t name_len;    /* including the NUL */
	uint32_t flags;       /* reserved, zero */
	uint64_t _res;
	/* char name[name_len], then padding */
};
static_assert(sizeof(struct pvm_ckpt_wire_meta) == 32, "meta");
#define PVM_CKPT_NAME_MAX 64u /* without the NUL */

/* XENSTORE: format u32, reserved u32, then a xenstore migration image. */
#define PVM_CKPT_XS_FORMAT_IMAGE 1u
#define PVM_CKPT_XS_HDR_SIZE 8u
#define PVM_CKPT_XS_IDENT 0x78656e73746f7265ull /* "xenstore", big-endian */
#define PVM_CKPT_XS_IMAGE_HDR_SIZE 16u
#define PVM_CKPT_XS_REC_END 0u
#define PVM_CKPT_XS_REC_WATCH_DATA 3u
#define PVM_CKPT_XS_REC_NODE_DATA 5u
#define PVM_CKPT_XS_REC_WATCH_DATA_EXTENDED 8u
#define PVM_CKPT_XS_REC_NR 9u

/* DEVICE */
struct pvm_ckpt_wire_device {
	uint32_t dev_type;     /* PVM_CKPT_DEV_* */
	uint32_t devid;
	uint16_t backend_domid;
	uint8_t fe_state;      /* XenbusState 0..8 */
	uint8_t be_state;
	uint32_t flags;        /* reserved, zero */
	uint64_t features;     /* PVM_CKPT_VBD_F_* / PVM_CKPT_VIF_F_* */
	uint16_t fe_path_len;  /* including the NUL */
	uint16_t be_path_len;  /* including the NUL */
	uint16_t nr_rings;
	uint16_t _res;
	/* fe_path, be_path, zero pad to 8, then nr_rings rings */
};
static_assert(sizeof(struct pvm_ckpt_wire_device) == 32, "device");

struct pvm_ckpt_wire_ring {
	uint16_t queue;
	uint8_t kind;          /* PVM_CKPT_RING_* */
	uint8_t order;         /* ring is 1 << order pages */
	uint32_t evtchn;
	uint32_t req_cons;     /* backend private */
	uint32_t rsp_prod_pvt; /* backend private */
	uint32_t req_prod_seen;/* backend's last sring->req_prod read */
	uint32_t _res;
	/* uint32_t ring_ref[1 << order], zero pad to 8 */
};
static_assert(sizeof(struct pvm_ckpt_wire_ring) == 24, "ring");

/* EVTCHN: count u32, reserved u32, then count bindings. */
struct pvm_ckpt_wire_evtchn {
	uint32_t port;
	uint8_t kind;          /* PVM_CKPT_EVTCHN_* */
	uint8_t flags;         /* PVM_CKPT_EVTCHN_F_* */
	uint16_t remote_domid;
	uint32_t remote;       /* remote port, virq or pirq number */
	uint32_t vcpu;
};
static_assert(sizeof(struct pvm_ckpt_wire_evtchn) == 16, "evtchn");

/* GRANT: version u32, nr_frames u32, count u32, reserved u32, entries. */
#define PVM_CKPT_GRANT_HDR_SIZE 16u
struct pvm_ckpt_wire_grant {
	uint32_t ref;
	uint16_t flags;        /* GTF_* of the v1 entry */
	uint16_t domid;
	uint64_t frame;
};
static_assert(sizeof(struct pvm_ckpt_wire_grant) == 16, "grant");
#define PVM_CKPT_GRANT_V1_PER_FRAME 512u /* 4096 / sizeof(grant_entry_v1) */

/* CHECKSUM */
struct pvm_ckpt_wire_checksum {
	uint32_t alg;          /* PVM_CKPT_CSUM_SHA256 */
	uint32_t digest_len;   /* 32 */
	uint64_t covered;      /* bytes hashed: stream offset 0 to this record */
	uint8_t digest[32];
};
static_assert(sizeof(struct pvm_ckpt_wire_checksum) == 48, "checksum");

#endif /* PVM_CKPT_STREAM_FORMAT_H */
