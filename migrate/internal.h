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

/* ---- wire.c ---- */

/* Peer message types: the type byte of each message on a channel's
 * control stream. */
enum mig_msg {
	MIG_HELLO = 'H',   /* src -> dst: id, name, nr_pages, vcpus, image */
	MIG_ACCEPT = 'A',  /* dst -> src: domid */
	MIG_ROUND = 'E',   /* src -> dst: end of a pre-copy round */
	MIG_ROUND_ACK = 'e', /* dst -> src: every page of that round is in */
	MIG_STATE = 'S',   /* src -> dst: tagged sections */
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
	/* The first message of a tunnel channel (instead of a HELLO). */
	MIG_TUNNEL = 'T',
};

/* A channel message is a type byte then a key=value record; send_abort()
 * sends ABORT error=WHY (best effort). */
int mig_send_kv(struct pvm_channel *ch, char type, const struct pvm_kv *kv);
int mig_send_simple(struct pvm_channel *ch, char type);
void mig_send_abort(struct pvm_channel *ch, const char *why);
/*
 * Receives the next message. For key=value types @kv is filled; for STATE
 * the raw body is returned in *raw_out (caller frees; -EPROTO when
 * @raw_out is NULL). Returns the type (> 0) or a negative errno.
 */
int mig_recv_msg(struct pvm_channel *ch, struct pvm_kv *kv, void **raw_out,
		 size_t *raw_len);
/* Waits for @want; ABORT becomes -ECONNABORTED with its reason in @why. */
int mig_expect(struct pvm_channel *ch, int want, struct pvm_kv *kv, char *why,
	       size_t why_len);
/* "HOST[:PORT]" (PVM_PORT_DEFAULT without one); -EINVAL if malformed. */
int mig_parse_target(const char *t, char *host, size_t hlen, uint16_t *port);

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

/* The destination of one incoming migration (dest.c). */
struct mig_dst {
	struct pvm_service *svc;
	struct pvm_channel *ch;
	uint32_t domid;
	bool created;
	uint8_t *mem;       /* whole guest, mapped WRITE */
	uint64_t nr_pages;
	_Atomic uint64_t pages_in;
	char id[33];
	char name[64];
	uint64_t vcpus;
	struct dom_config dc;
	bool verified;
	uint32_t src_domid;
	bool keep_domid; /* devices reconnect transparently (HELLO pv_mode) */
	struct pvm_pvq_device devs[PVM_PVQ_MAX_DEVICES];
	size_t ndev;
	/* Set while the channel is an xl stream tunnel (tunnel.c). */
	struct tunnel *_Atomic tun;
	bool xen;           /* libxenguest's stream (HELLO xen=1) */
	struct pvm_xchunk_rx xrx; /* xen: chunks (xrx.stage NULL: none) */
};

/* One outgoing migration (source.c). */
struct mig_src {
	struct mig_src *next;  /* svc->sources, under svc->lock */
	atomic_bool cancel;    /* pvmig migrate --cancel */
	struct pvm_service *svc;
	int fd;                /* the CLI's control connection */
	struct pvm_hv_dominfo dom;
	char host[128];
	uint16_t port;
	char id[33];
	bool live;
	bool compress;
	bool verify;
	bool no_quiesce; /* --no-quiesce: the seed problem, for tests */
	uint32_t suspend_timeout_ms; /* --suspend-timeout; 0: no request */
	uint32_t drain_timeout_ms;   /* --drain-timeout; 0: pvquiesce's */
	enum pvm_pvq_mode pv_mode; /* --pv-mode, then chosen before HELLO */
	uint64_t bw_bytes_s;   /* --bandwidth, on the wire; 0: unlimited */
	uint64_t bw_t0, bw_base; /* when and at which wire count it started */
	unsigned streams;
	struct pvm_policy policy;
	struct dom_config dc;

	struct pvm_channel *ch;
	struct pvm_bitmap dirty;
	bool logdirty;
	bool paused;
	struct pvm_pvq_device devs[PVM_PVQ_MAX_DEVICES];
	size_t ndev;
	bool quiesced;
	struct pvm_buf devstate; /* captured at the pause */
	unsigned throttle;       /* auto-converge level set on the guest (%) */
	unsigned throttle_max;   /* the highest level it had (%) */
	uint64_t t_start, t_pause;
	struct pvm_kv stats;

	/* xen: libxenguest's stream (mig_source_xen_stream) */
	bool xen;
	bool xen_suspended;     /* suspended for the save: resume on rollback */
	int x_suspend_rc;       /* the suspend callback's failure */
	bool x_cancelled;       /* the precopy callback aborted: cancel */
	_Atomic uint64_t xbytes; /* stream bytes sent so far */
	_Atomic uint64_t xread;  /* ... read from libxenguest so far */
	uint64_t xchunks;        /* chunks sent (xchunk_base) */
	uint64_t x_t_round, x_bytes_round, x_prev_dirty;
	uint64_t x_written;      /* libxenguest's pages sent, last round */
	struct pvm_round_stats xr;
	char x_rounds_desc[1024];
	char x_throttles[1024]; /* throttle_per_round */
};

/* source.c, for xen_stream.c and state.c */
bool mig_src_cancelled(struct mig_src *m);
void mig_src_progress(struct mig_src *m, const struct pvm_round_stats *r,
		      uint64_t predicted_ms, const char *phase);
int mig_src_throttle(struct mig_src *m, unsigned pct);
void mig_src_bw_limit(struct mig_src *m, bool all);
void mig_src_stat(struct mig_src *m, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- state.c ---- */

/* SHA-256 over every page of a paused domain, in pfn order. */
int mig_memory_digest(struct pvm_hv *hv, uint32_t domid, uint64_t nr_pages,
		      uint8_t out[32]);
void mig_hex32(const uint8_t d[32], char out[65]);
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
int mig_xsend_chunk(struct pvm_channel *ch, char type, uint64_t k,
		    const uint8_t *buf, size_t len);
/* Source, xen: after ACCEPT, up to XEND sent (the guest suspended). */
int mig_source_xen_stream(struct mig_src *m, char *why, size_t why_len);
/*
 * Destination, xen: from HELLO to READY sent. 0 with the domain restored
 * and paused (d->created, d->domid); -ENOTCONN when the channel was lost
 * (@why says so); another negative errno after telling the source why.
 */
int mig_dest_xen_receive(struct mig_dst *d, char *why, size_t why_len);

#endif /* PVM_MIGRATE_INTERNAL_H */
