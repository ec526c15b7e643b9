/*
 * Shared between the files of migrate/ only: the service's state and the
 * helpers every command handler uses.
 */
#ifndef PVM_MIGRATE_INTERNAL_H
#define PVM_MIGRATE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "hv/hv.h"
#include "migrate/migrate.h"
#include "pvquiesce/pvquiesce.h"

/* The most domains a listing asks the backend for. */
#define MIG_MAX_DOMAINS 1024u

struct pvm_xenstored;

/*
 * A domain's toolstack configuration (what libxl keeps in its domain
 * config): the image/workload and the PV devices. Plain values, so it can
 * be copied, stored per domain and sent in a migration's HELLO.
 */
struct dom_config {
	uint32_t domid; /* 0: slot unused */
	char image[256];
	uint32_t frontend_gen; /* enum pvm_hv_frontend_gen */
	uint32_t nr_disks;
	struct {
		char path[256];
		char vdev[16];
		bool readonly;
	} disks[PVM_HV_MAX_DISKS];
	uint32_t nr_nics;
	struct {
		uint8_t mac[6];
		char bridge[32];
	} nics[PVM_HV_MAX_NICS];
	/* Local state, not sent: an in-doubt migration left the PV devices
	 * quiesced; unpause resumes them first (h_unpause). */
	bool devices_quiesced;
};

/* Fills @cfg's image and device fields from @dc (pointers into @dc). */
void dom_config_to_hv(const struct dom_config *dc,
		      struct pvm_hv_domain_config *cfg);
/* Adds @dc as key=value fields (image, frontend, diskN, diskN_vdev,
 * diskN_ro, nicN_mac, nicN_bridge) / reads them back: 0 or -EINVAL with
 * *why_out naming the bad field. */
void dom_config_to_kv(const struct dom_config *dc, struct pvm_kv *kv);
int dom_config_from_kv(const struct pvm_kv *kv, struct dom_config *dc,
		       const char **why_out);

struct pvm_tls_ctx;
struct pvm_channel;
struct req;
struct mig_src;
struct pvm_listener;

/* A function the service's main thread runs for another thread. */
struct main_call {
	int (*fn)(void *arg);
	void *arg;
	int rc;
	bool done;
	struct main_call *next;
};

/* The outcome of an incoming migration, kept for the source's query. */
struct mig_outcome {
	char id[33];
	char state[16]; /* "receiving", "running", "aborted" */
};
#define MIG_OUTCOMES 64u

struct pvm_service {
	struct pvm_service_config cfg;
	struct pvm_hv *hv;          /* the backend; owned */
	struct pvm_xenstored *xs;   /* sim only: its xenstore server; owned */
	pthread_t xs_thread;
	bool xs_started;
	int lock_fd;                /* flock on STATE_DIR/pvmigd.lock */
	bool lock_held;             /* ours: unlinked at destroy */
	int ctl_fd;                 /* listening control socket */
	int stop_pipe[2];           /* pvm_service_stop() writes here */
	char ctl_path[300];

	pthread_mutex_t lock;       /* everything below */
	pthread_cond_t cond;
	bool stopping;
	int main_efd;               /* wakes the loop for main_calls */
	struct main_call *calls;    /* queued for the main thread */
	pthread_t main_thread;
	unsigned jobs;              /* job threads running */
	unsigned incoming, outgoing;/* migrations running */
	unsigned peer_channels;     /* accepted peer channels open */
	uint64_t incoming_bytes;    /* guest memory admitted, still arriving */
	struct mig_outcome outcomes[MIG_OUTCOMES];
	unsigned next_outcome;
	struct pvm_kv last_stats[8];/* recent migrations' statistics */
	unsigned next_stats;

	/* What each domain was created with that the backend cannot tell
	 * (the toolstack config, as libxl keeps it). */
	struct dom_config configs[64];

	struct mig_src *sources;     /* outgoing migrations running */

	struct pvm_tls_ctx *tls;    /* peer TLS, when configured */
	struct pvm_listener *listener;
	pthread_t listen_thread;
	bool listen_started;
};

/* A handler that handed its request's fd to a job thread returns this;
 * the job then sends the RESULT and closes the fd. */
#define REQ_DETACHED 1

/* Runs @fn(@arg) on the service's main thread (the one in _run()) and
 * returns its result; runs it directly when called from that thread. The
 * simulated host's guests die with the thread that created them, so every
 * domain_create goes through here. -ECANCELED once the service stops. */
int svc_on_main(struct pvm_service *s, int (*fn)(void *), void *arg);

/* Starts a detached, counted job thread; _destroy() waits for all. */
int svc_job_start(struct pvm_service *s, void *(*fn)(void *), void *arg);
bool svc_stopping(struct pvm_service *s);

/* Remembers / looks up / forgets a domain's toolstack config. The image
 * is copied; svc_config_image() fills @out ("" when unknown). */
void svc_config_set(struct pvm_service *s, uint32_t domid, const char *image);
void svc_config_image(struct pvm_service *s, uint32_t domid, char *out,
		      size_t len);
void svc_config_drop(struct pvm_service *s, uint32_t domid);
/* The whole config: put replaces @dc->domid's entry; get returns -ENOENT
 * (and an empty config with @domid set) when unknown. */
void svc_config_put(struct pvm_service *s, const struct dom_config *dc);
int svc_config_get(struct pvm_service *s, uint32_t domid, struct dom_config *out);
void svc_config_quiesced(struct pvm_service *s, uint32_t domid, bool quiesced);

/* ---- migration: files and what they share --------------------------------
 *
 *   wire.c        peer messages: framing, receive, expect, abort, targets
 *   state.c       the STATE message: encode (source), apply (destination)
 *   source.c      the source's job: `pvmig migrate`, pre-copy, hand-over
 *   dest.c        the destination's job, one per accepted channel
 *   peer.c        TLS context and the listener thread
 *   xen_stream.c  on Xen: libxenguest's stream pump and restore thread
 *   outcome.c     outcome registry, statistics ring, test hooks
 */

struct pvm_pvq_device;
/* The PV devices a config names, as pvquiesce addresses them (@out holds
 * PVM_PVQ_MAX_DEVICES); returns how many. (domconfig.c) */
size_t mig_config_devices(const struct dom_config *dc,
			  struct pvm_pvq_device *out);

int h_migrate(struct req *r);
int h_migrate_cancel(struct req *r);
int h_migrations(struct req *r);

/* ---- wire.c: peer messages ---- */

/* Peer message types: the type field of each message's header. The values
 * are printable so that a message shows in a trace; both peers are the
 * same build (docs/migration-protocol.md). */
enum mig_msg {
	MIG_HELLO = 'H',   /* src -> dst: id, name, nr_pages, vcpus, config */
	MIG_ACCEPT = 'A',  /* dst -> src: domid */
	MIG_ROUND = 'E',   /* src -> dst: end of a pre-copy round */
	MIG_ROUND_ACK = 'e', /* dst -> src: every page of that round is in */
	MIG_STATE = 'S',   /* src -> dst: tagged sections (state.c) */
	MIG_READY = 'D',   /* dst -> src: restored, paused */
	MIG_UNPAUSE = 'U', /* src -> dst */
	MIG_RUNNING = 'G', /* dst -> src */
	MIG_ABORT = 'X',   /* either: error */
	MIG_QUERY = 'Q',   /* src -> dst on a new channel: id */
	MIG_OUTCOME = 'O', /* dst -> src: state */
	/* Xen (x86 PV): libxenguest's stream instead of pages and STATE */
	MIG_XCONFIG = 'c', /* src -> dst: chunk holding the libxl JSON config */
	MIG_XCHUNK = 'b',  /* src -> dst: chunk of the libxl stream: bytes */
	MIG_XEND = 'z',    /* src -> dst: the stream is complete */
	/* A tunnel channel (tunnel.c): open, then its own messages */
	MIG_TUNNEL = 'T',  /* client -> pvmigd: version */
	MIG_TUN_OK = 'K',  /* pvmigd -> client: the command runs */
	MIG_TUN_CHUNK = 'k',/* client -> pvmigd: a chunk of pages: bytes */
	MIG_TUN_DATA = 'd',/* pvmigd -> client: the bytes, raw */
	MIG_TUN_EOF = 'f', /* either: the sender's input ended */
	MIG_TUN_EXIT = 'x',/* pvmigd -> client: the command's exit status */
};

/*
 * Every peer message is one channel message with this header:
 *
 *   0        1        2                 4                 8
 *   +--------+--------+-----------------+-----------------+--------------+
 *   |  type  | flags  | reserved (u16)  | body length u32 | body ...     |
 *   +--------+--------+-----------------+-----------------+--------------+
 *
 * Little-endian; flags and reserved are written as zero and ignored on
 * read; the body length is the channel message's length less the header,
 * at most PVM_TP_MSG_MAX - MIG_HDR_SIZE. The body is a key=value record
 * (mig_kv_put) unless the type's table entry says raw (STATE, tunnel data).
 */
#define MIG_HDR_SIZE 8u
#define MIG_BODY_MAX (PVM_TP_MSG_MAX - MIG_HDR_SIZE)

/* A decoded message. mig_msg_init() leaves it empty; mig_msg_dispose() is
 * idempotent. @raw points into the received buffer (@owned). */
struct mig_msg_in {
	int type;
	struct pvm_kv kv;     /* key=value types */
	const uint8_t *raw;   /* raw types: the body */
	size_t raw_len;
	void *owned;          /* the channel message, freed by dispose */
};
void mig_msg_init(struct mig_msg_in *m);
void mig_msg_dispose(struct mig_msg_in *m);

/* The name of a message type ("HELLO"), "unknown" for none. */
const char *mig_msg_name(int type);
/*
 * Decodes one channel message (@buf, @len, borrowed: m->raw points into
 * it) into @m (disposed first): its type, or -EBADMSG with @why naming
 * what is wrong (short header, unknown type, a length that disagrees, a
 * body that is not a key=value record), or -ENOMEM.
 */
int mig_msg_decode(const uint8_t *buf, size_t len, struct mig_msg_in *m,
		   char *why, size_t why_len);
/* Encoders: append a whole message to @out. _begin/_end frame a raw body
 * written in between: _begin returns where the header starts. */
int mig_msg_encode_kv(int type, const struct pvm_kv *kv, struct pvm_buf *out);
size_t mig_msg_begin(int type, struct pvm_buf *out);
int mig_msg_end(struct pvm_buf *out, size_t at);

/* key=value fields, shared with the control protocol (control.c) */
int mig_kv_put(const struct pvm_kv *kv, struct pvm_buf *out);
int mig_kv_parse(const void *buf, size_t len, struct pvm_kv *kv);

/* Senders: 0 or the channel's error. mig_send_abort() sends ABORT
 * error=WHY, best effort. */
int mig_send_kv(struct pvm_channel *ch, int type, const struct pvm_kv *kv);
int mig_send_simple(struct pvm_channel *ch, int type);
void mig_send_abort(struct pvm_channel *ch, const char *why);
/*
 * Receives and decodes the next message into @m: its type; -EBADMSG for a
 * malformed message on a channel that still works (@why says what was
 * wrong); another negative errno when the channel failed (@why says so).
 */
int mig_recv(struct pvm_channel *ch, struct mig_msg_in *m, char *why,
	     size_t why_len);
/* "HOST[:PORT]" (PVM_PORT_DEFAULT without one); -EINVAL if malformed. */
int mig_parse_target(const char *t, char *host, size_t hlen, uint16_t *port);

/* ---- the two state machines (diagrams: source.c and dest.c) ---- */

enum mig_src_state {
	MIG_SRC_CONNECTING,  /* HELLO sent or about to be; nothing changed */
	MIG_SRC_PRECOPY,     /* moving memory, the guest runs (log-dirty on) */
	MIG_SRC_PAUSED,      /* paused (sim) or suspended (Xen) */
	MIG_SRC_QUIESCED,    /* paused, its PV backends drained and captured */
	MIG_SRC_AWAIT_READY, /* last pages and STATE (or XEND) sent */
	MIG_SRC_UNPAUSE_SENT,/* past the point of no return */
	MIG_SRC_DONE,        /* runs there; the copy here destroyed */
	MIG_SRC_ROLLED_BACK, /* definite failure: runs here again */
	MIG_SRC_IN_DOUBT,    /* unknown: stays paused for the operator */
	MIG_SRC_NSTATES
};

enum mig_dst_state {
	MIG_DST_OPEN,        /* channel accepted, nothing received */
	MIG_DST_XSTREAM,     /* Xen: ACCEPT sent, waiting for the config */
	MIG_DST_XRESTORE,    /* Xen: libxl restores from the chunks */
	MIG_DST_LOADING,     /* the domain exists here, paused, not ready */
	MIG_DST_READY,       /* READY sent: waiting for UNPAUSE */
	MIG_DST_RUNNING,     /* unpaused: the guest is ours */
	MIG_DST_ABORTED,     /* failed: the copy here destroyed */
	MIG_DST_NSTATES
};

const char *mig_src_state_name(enum mig_src_state st);
const char *mig_dst_state_name(enum mig_dst_state st);
/* May the source (destination) in @st receive a message of @type? */
bool mig_src_may_recv(int type, enum mig_src_state st);
bool mig_dst_may_recv(int type, enum mig_dst_state st);
/* May a side go from @from to @to at all (the diagrams' arrows)? */
bool mig_src_may_go(enum mig_src_state from, enum mig_src_state to);
bool mig_dst_may_go(enum mig_dst_state from, enum mig_dst_state to);
/*
 * The one way a side changes state: compare-and-set on @from. 0, or
 * -EPROTO (logged: a bug here) when *@st is not @from or no arrow goes
 * from @from to @to; *@st is then unchanged.
 */
int mig_src_set(_Atomic int *st, enum mig_src_state from,
		enum mig_src_state to);
int mig_dst_set(_Atomic int *st, enum mig_dst_state from,
		enum mig_dst_state to);

/* ---- outcome.c ---- */

/* The outcome of @id becomes @state ("receiving", "running", "aborted"). */
void mig_outcome_set(struct pvm_service *s, const char *id, const char *state);
/*
 * The destination's decision point, under the service lock so that a QUERY
 * and a late UNPAUSE cannot both win: @to_state is set only if the outcome
 * is still "receiving". Returns the state after the call in @out.
 */
void mig_outcome_decide(struct pvm_service *s, const char *id,
			const char *to_state, char *out, size_t len);
/* Keeps a copy of a finished migration's statistics (`pvmig migrations`). */
void mig_stats_keep(struct pvm_service *s, const struct pvm_kv *kv);
/* Test hooks: PVMIG_FAULT names @name; PVMIG_HOLD=@name:FILE holds. */
bool mig_fault_point(const char *name);
void mig_hold_point(const char *name);

/* ---- peer.c ---- */

/* Loads the peer TLS context once (pvmigd.conf's tls-*): 0 or -errno. */
int mig_load_tls(struct pvm_service *s);
struct pvm_peer;
struct mig_dst;
/* What allow-peers grants the certificate @p (enum pvm_right bits). */
unsigned mig_peer_rights(struct pvm_service *s, const struct pvm_peer *p);
/* Does the peer of @d's channel hold @right for @what ("migrate-in
 * 'web1'")? Logs the decision with the peer's name and address; when
 * refused, also ABORTs with the reason (mig_dst_refuse). */
bool mig_peer_may(struct mig_dst *d, unsigned right, const char *what);

/* ---- storage.c ---- */

/*
 * The destination decides what it opens: every disk of @dc must resolve
 * (realpath: every symlink followed) to a regular file or block device
 * inside one of storage-roots. On success each path in @dc is replaced by
 * its resolved form, which the backend opens with O_NOFOLLOW. 0, or
 * -EACCES / -ENOENT with @why naming the path and the key; nothing is
 * created or opened for writing.
 */
int mig_storage_check(struct pvm_service *s, struct dom_config *dc,
		      char *why, size_t why_len);
/* Resolves storage-roots at start: -EINVAL (logged) if one is not a
 * directory. */
int mig_storage_roots_resolve(struct pvm_service *s);

/* ---- xl stream tunnels (tunnel.c) ---- */

struct tunnel;
/* Serves the tunnel whose open message @hello arrived on *@chp: runs the
 * configured tunnel-command and joins it to the channel until either ends.
 * Closes the channel (*@chp = NULL). *@slot is where the listener's page
 * callback finds the tunnel (tunnel_pages) while it runs. */
void tunnel_serve(struct pvm_service *s, struct pvm_channel **chp,
		  const struct pvm_kv *hello, struct tunnel *_Atomic *slot);
int tunnel_pages(struct tunnel *t, const uint64_t *pfns,
		 const uint8_t *const *pages, size_t n);

/* ---- save, restore, continuous checkpoints (save.c) ---- */

int h_save(struct req *r);
int h_restore(struct req *r);
int h_checkpoint(struct req *r);
/* Starts the TLS peer listener if the config names one. */
int mig_listener_start(struct pvm_service *s);
void mig_listener_stop(struct pvm_service *s);

/*
 * One control request being answered: the handler reads @args (borrowed
 * for the call), may send ITEM and PROGRESS records on @fd, and must send
 * exactly one RESULT (reply_result) before it returns.
 */
struct req {
	struct pvm_service *svc;
	int fd;
	const struct pvm_kv *args;
};

/* Sends the RESULT: @status 0, or a negative errno with a message naming
 * what was wrong and what to do. @extra fields (may be NULL) follow. */
int reply_result(struct req *r, int status, const struct pvm_kv *extra,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Finds the domain named by args "domain" (a name or a domid). On failure
 * the RESULT has been sent and a negative errno is returned. */
int find_domain(struct req *r, struct pvm_hv_dominfo *out);
/* The same without a request: 0, or a negative errno with @why. */
int svc_find_domain(struct pvm_service *s, const char *want,
		    struct pvm_hv_dominfo *out, char *why, size_t why_len);

/*
 * The PV options of save, checkpoint and migrate (restore takes pv_mode
 * only): args pv_mode=, suspend_timeout_ms=, drain_timeout_ms=.
 */
#define REQ_PV_TIMEOUT_MAX_MS 60000u
struct req_pv_opts {
	enum pvm_pvq_mode mode;      /* --pv-mode; AUTO when absent */
	uint32_t suspend_timeout_ms; /* --suspend-timeout; 0 when absent */
	uint32_t drain_timeout_ms;   /* --drain-timeout; 0 when absent */
};
/* Fills @o from r->args, each timeout 1..REQ_PV_TIMEOUT_MAX_MS: 0; on a
 * bad value the RESULT (naming the option) has been sent and -EINVAL is
 * returned. */
int req_pv_opts(struct req *r, struct req_pv_opts *o);
/* The same from @args: 0, or -EINVAL with @why naming the option. */
int req_pv_opts_parse(const struct pvm_kv *args, struct req_pv_opts *o,
		      char *why, size_t why_len);

/* Adds the fields `pvmig list/status` show for a domain. */
void add_dominfo(struct pvm_kv *kv, const struct pvm_hv_dominfo *d);

/* "256M", "1G", "65536K", or bytes (whole pages): 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *bytes_out);


/* ---- convergence policy (policy.c) ---- */

enum pvm_policy_verdict {
	PVM_POLICY_CONTINUE,    /* another pre-copy round */
	PVM_POLICY_STOP,        /* converged: stop-and-copy */
	PVM_POLICY_STOP_ANYWAY, /* not converged, but a limit says stop */
	PVM_POLICY_THROTTLE,    /* another round, the guest's vCPUs slowed to
				 * pvm_policy_throttle_next(r->throttle_pct) */
};

/* What to do when the guest dirties memory faster than the link carries
 * (`--no-converge`). */
enum pvm_noconv {
	PVM_NOCONV_STOP,       /* stop-and-copy once stuck */
	PVM_NOCONV_KEEP_GOING, /* keep going until max rounds / time */
	PVM_NOCONV_THROTTLE,   /* auto-converge: throttle the vCPUs step by
				* step; stop anyway when even the maximum
				* does not help (default) */
};

/* Auto-converge steps (percent of CPU time taken from the vCPUs). */
#define PVM_THROTTLE_INITIAL 20u
#define PVM_THROTTLE_STEP 10u
#define PVM_THROTTLE_MAX 99u

struct pvm_policy {
	uint64_t downtime_ms; /* target */
	uint32_t max_rounds;  /* pre-copy rounds, >= 1 */
	uint64_t max_time_ms; /* 0: none */
	enum pvm_noconv no_converge;
};

/* What one pre-copy round measured. */
struct pvm_round_stats {
	uint32_t round;        /* 0 = the full copy */
	uint64_t pages_sent;
	uint64_t wire_bytes;
	uint64_t ms;
	double bytes_per_s;    /* of guest memory moved (pages × 4096 / s) */
	uint64_t dirty_after;  /* dirtied while this round was sent */
	double dirty_rate;     /* pages/s */
	uint32_t stuck_rounds; /* consecutive rounds the dirty set did not shrink
				* (pvm_policy_shrank) */
	uint32_t high_rounds;  /* consecutive rounds that dirtied more than
				* half of what they sent (dirty_after * 2 >
				* pages_sent): the set does not at least halve */
	uint32_t throttle_pct; /* the throttle during this round (0: none) */
};

uint64_t pvm_policy_predict_ms(uint64_t dirty_pages, double bytes_per_s);
/* The throttle level after @current: PVM_THROTTLE_INITIAL from 0, then
 * PVM_THROTTLE_STEP more each time, at most PVM_THROTTLE_MAX. */
unsigned pvm_policy_throttle_next(unsigned current);
/* Did the dirty set shrink from @prev to @now? By at least an eighth: a
 * set the guest keeps saturated wobbles by a few pages from round to
 * round, which is no progress (stuck_rounds counts rounds without it). */
bool pvm_policy_shrank(uint64_t prev, uint64_t now);
/* Is this a round that did not at least halve the dirty set? */
bool pvm_policy_round_high(const struct pvm_round_stats *r);
enum pvm_policy_verdict pvm_policy_decide(const struct pvm_policy *p,
					  const struct pvm_round_stats *r,
					  uint64_t elapsed_ms,
					  const char **why_out);

/* ---- a byte stream in page-slot chunks over a channel (xchunk.c) ------- */

#define PVM_XCHUNK_PAGES 256u
#define PVM_XCHUNK_BYTES (PVM_XCHUNK_PAGES * PVM_PAGE_SIZE)

struct pvm_channel;

/* The first page slot of chunk @k (alternating halves). */
uint64_t pvm_xchunk_base(uint64_t k);
/* Sender: queues chunk @k (@len <= PVM_XCHUNK_BYTES bytes of @buf) as a
 * page batch; the caller then sends the message that closes it, with @len.
 * 0 or the channel's error. */
int pvm_xchunk_send_pages(struct pvm_channel *ch, uint64_t k,
			  const uint8_t *buf, size_t len);

/* Receiver: the staging area for two chunks. */
struct pvm_xchunk_rx {
	uint8_t *stage;                 /* 2 * PVM_XCHUNK_BYTES, owned */
	uint64_t taken;                 /* chunks taken so far */
	_Atomic uint64_t half_pages[2]; /* pages delivered into each half */
};
int pvm_xchunk_rx_init(struct pvm_xchunk_rx *rx); /* 0 or -ENOMEM */
void pvm_xchunk_rx_dispose(struct pvm_xchunk_rx *rx);
/* The channel's on_pages (receive threads): -ERANGE for a slot past the
 * two halves. */
int pvm_xchunk_rx_pages(struct pvm_xchunk_rx *rx, const uint64_t *pfns,
			const uint8_t *const *pages, size_t n);
/* On the message closing the next chunk (@bytes long): where it is (valid
 * until the message after the next one is received) and its length.
 * -EBADMSG unless exactly its pages arrived and @bytes fits. */
int pvm_xchunk_rx_take(struct pvm_xchunk_rx *rx, uint64_t bytes,
		       const uint8_t **at, size_t *len_out);

/* ---- the two sides ---- */

#define MIG_MAP_BATCH 1024u

/* What a HELLO says (mig_hello_decode). */
struct mig_hello {
	char id[33];           /* 32 hex digits */
	char name[64];
	uint64_t nr_pages;     /* 1..2^36 */
	uint64_t vcpus;        /* 1..64 */
	struct dom_config dc;
	uint32_t src_domid;    /* 0: not said */
	bool keep_domid;       /* devices reconnect transparently */
	bool xen;              /* libxenguest's stream follows */
};
/* Decodes HELLO's fields (untrusted): 0, or -EBADMSG with @why. */
int mig_hello_decode(const struct pvm_kv *kv, struct mig_hello *h, char *why,
		     size_t why_len);

/* The destination of one incoming migration (dest.c). */
struct mig_dst {
	struct pvm_service *svc;
	struct pvm_channel *ch;
	_Atomic int state;  /* enum mig_dst_state: mig_dst_go() only */
	struct mig_hello h;
	uint32_t domid;     /* here: valid in LOADING, READY, RUNNING */
	uint8_t *mem;       /* whole guest, mapped WRITE */
	_Atomic uint64_t pages_in;
	bool verified;      /* STATE's memory digest matched */
	struct pvm_pvq_device devs[PVM_PVQ_MAX_DEVICES];
	size_t ndev;
	/* Set while the channel is an xl stream tunnel (tunnel.c). */
	struct tunnel *_Atomic tun;
	struct pvm_xchunk_rx xrx; /* xen: chunks (xrx.stage NULL: none) */
	bool refused;       /* ABORT sent: linger until the source reads it */
	bool counted;       /* admitted: in s->incoming and incoming_bytes */
	uint64_t admitted_bytes;
};

/* dest.c, for xen_stream.c */
/* Refuses the migration: ABORT error=@why to the source. */
void mig_dst_refuse(struct mig_dst *d, const char *why);
int mig_dst_go(struct mig_dst *d, enum mig_dst_state from,
	       enum mig_dst_state to);
/*
 * Receives the next message, which must be legal in the current state:
 * its type; -ENOTCONN for a lost channel; -EBADMSG or -EPROTO for a
 * malformed message or one with no place here, after refusing it with
 * ABORT. ABORT itself is returned as a type. @why says what happened.
 */
int mig_dst_recv(struct mig_dst *d, struct mig_msg_in *m, char *why,
		 size_t why_len);

/* What `pvmig migrate` asked for (mig_opts_parse, opts.c). */
struct mig_opts {
	char host[128];
	uint16_t port;
	bool live;
	bool compress;
	bool verify;
	bool no_quiesce; /* --no-quiesce: the seed problem, for tests */
	enum pvm_pvq_mode pv_mode;   /* --pv-mode; AUTO when absent */
	uint32_t suspend_timeout_ms; /* --suspend-timeout; 0: not given */
	uint32_t drain_timeout_ms;   /* --drain-timeout; 0: pvquiesce's */
	unsigned streams;            /* --streams; 0: the service's */
	uint64_t bw_bytes_s;         /* --bandwidth, on the wire; 0: unlimited */
	struct pvm_policy policy;
};
/* Parses a migrate request's arguments ("target", "cold", ...): 0, or
 * -EINVAL with @why naming the option and what it takes. */
int mig_opts_parse(const struct pvm_kv *args, struct mig_opts *o, char *why,
		   size_t why_len);

/* When each step of an outgoing migration ended (pvm_now_ns). */
struct mig_src_times {
	uint64_t start, connected, accepted, precopy, pause;
	uint64_t read, sent, state, ready;
};

/* One outgoing migration (source.c). */
struct mig_src {
	struct mig_src *next;  /* svc->sources, under svc->lock */
	atomic_bool cancel;    /* pvmig migrate --cancel */
	_Atomic int state;     /* enum mig_src_state: mig_src_set() only */
	struct pvm_service *svc;
	int fd;                /* the CLI's control connection */
	struct pvm_hv_dominfo dom;
	char id[33];
	struct mig_opts o;
	bool xen;              /* libxenguest's stream (xen_stream.c) */
	struct dom_config dc;
	struct pvm_pvq_device devs[PVM_PVQ_MAX_DEVICES];
	size_t ndev;
	enum pvm_pvq_mode pv_requested; /* --pv-mode as given (AUTO or forced) */

	struct pvm_channel *ch;
	struct pvm_bitmap dirty;
	struct pvm_buf devstate; /* captured at the pause */
	unsigned throttle;       /* auto-converge level set on the guest (%) */
	unsigned throttle_max;   /* the highest level it had (%) */
	uint64_t bw_t0, bw_base; /* --bandwidth: when and at which wire count */
	struct mig_src_times t;
	struct pvm_round_stats r; /* the last pre-copy round */
	uint64_t total_pages;     /* pages (or 4 KiB stream slots) sent */
	char rounds_desc[2048];   /* round_detail */
	char throttles[1024];     /* throttle_per_round */
	struct pvm_kv stats;

	/* xen: libxenguest's stream (mig_source_xen_stream) */
	int x_suspend_rc;       /* the suspend callback's failure */
	int x_abort_rc;         /* why the precopy callback aborted, or 0 */
	_Atomic uint64_t xbytes; /* stream bytes sent so far */
	_Atomic uint64_t xread;  /* ... read from libxenguest so far */
	uint64_t xchunks;        /* chunks sent (xchunk_base) */
	uint64_t x_t_round, x_bytes_round, x_prev_dirty;
	uint64_t x_written;      /* libxenguest's pages sent, last round */
};

/* source.c, for xen_stream.c and state.c */
int mig_src_go(struct mig_src *m, enum mig_src_state from,
	       enum mig_src_state to);
bool mig_src_devs_quiesced(const struct mig_src *m);
bool mig_src_cancelled(struct mig_src *m);
void mig_src_progress(struct mig_src *m, const struct pvm_round_stats *r,
		      uint64_t predicted_ms, const char *phase);
int mig_src_throttle(struct mig_src *m, unsigned pct);
void mig_src_bw_limit(struct mig_src *m, bool all);
void mig_src_stat(struct mig_src *m, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Appends round @r (@what: "pages" or "dirty") to round_detail and
 * throttle_per_round. */
void mig_src_round_desc(struct mig_src *m, const struct pvm_round_stats *r,
			uint64_t count, const char *what);
/* The job (owns @arg, a struct mig_src; replies on its fd and closes it). */
void *mig_source_main(void *arg);

/* ---- state.c ---- */

void mig_hex32(const uint8_t d[32], char out[65]);
/* The sections of a STATE message, pointing into it. */
#define MIG_STATE_MAX_VCPUS 64u
struct mig_state_sec {
	const uint8_t *p;
	uint32_t len;
	bool present;
};
struct mig_state {
	struct mig_state_sec vcpu[MIG_STATE_MAX_VCPUS];
	uint32_t nr_vcpus;
	struct mig_state_sec evtchn, grant, xenstore, devices, digest;
};
/* Finds the sections of STATE's body (@p, @len; untrusted): 0, or
 * -EBADMSG with @why (truncated, unknown or repeated section, a digest
 * that is not 32 bytes, too many vCPUs). */
int mig_state_parse(const uint8_t *p, size_t len, struct mig_state *st,
		    char *why, size_t why_len);
/* Source: builds the STATE message of the paused domain and sends it. */
int mig_state_send(struct mig_src *m);
/* Destination: applies STATE (@p, @len) to the paused domain; @why says
 * what failed. */
int mig_state_apply(struct mig_dst *d, const uint8_t *p, size_t len,
		    char *why, size_t why_len);

/* dest.c, for peer.c: the channel's on_pages (receive threads: each page
 * written at its pfn), and the job thread (owns @arg, a struct mig_dst). */
int mig_dest_pages(void *ctx, const uint64_t *pfns,
		   const uint8_t *const *pages, size_t n);
void *mig_dest_main(void *arg);

/* ---- xen_stream.c ---- */

/* Sends chunk @k of a Xen stream: its pages, then @type {bytes}. */
int mig_xsend_chunk(struct pvm_channel *ch, int type, uint64_t k,
		    const uint8_t *buf, size_t len);
/* Source, xen: after ACCEPT, up to XEND sent (the guest suspended). */
int mig_source_xen_stream(struct mig_src *m, char *why, size_t why_len);
/*
 * Destination, xen: from HELLO (OPEN) to READY sent (READY). 0 with the
 * domain restored and paused (d->domid); -ENOTCONN when the channel was
 * lost (@why says so); another negative errno after telling the source
 * why. A domain libxl restored but not handed over is left in LOADING,
 * for the caller to destroy.
 */
int mig_dest_xen_receive(struct mig_dst *d, char *why, size_t why_len);

#endif /* PVM_MIGRATE_INTERNAL_H */
