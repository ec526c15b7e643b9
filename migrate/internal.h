/*
 * Shared between the files of migrate/ only: the service's state and the
 * helpers every command handler uses.
 */
#ifndef PVM_MIGRATE_INTERNAL_H
#define PVM_MIGRATE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>

#include "hv/hv.h"
#include "migrate/migrate.h"
#include "pvquiesce/pvquiesce.h"

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
struct source;
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

	struct source *sources;     /* outgoing migrations running */

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

/* ---- migration (migration.c) ---- */

struct pvm_pvq_device;
/* The PV devices a config names, as pvquiesce addresses them (@out holds
 * PVM_PVQ_MAX_DEVICES); returns how many. */
size_t mig_config_devices(const struct dom_config *dc,
			  struct pvm_pvq_device *out);

int h_migrate(struct req *r);
int h_migrate_cancel(struct req *r);
int h_migrations(struct req *r);

/* Shared with tunnel.c: a channel message is a type byte then a
 * key=value record (send_kv); send_abort() sends 'X' error=WHY. */
int send_kv(struct pvm_channel *ch, char type, const struct pvm_kv *kv);
void send_abort(struct pvm_channel *ch, const char *why);
/* "HOST[:PORT]" (PVM_PORT_DEFAULT without one); -EINVAL if malformed. */
int parse_target(const char *t, char *host, size_t hlen, uint16_t *port);

/* ---- xl stream tunnels (tunnel.c) ---- */

/* The first message of a tunnel channel (instead of a migration's HELLO). */
#define M_TUNNEL 'T'
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

#endif /* PVM_MIGRATE_INTERNAL_H */
