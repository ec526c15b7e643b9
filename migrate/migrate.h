/*
 * migrate/ — the coordinator and the service around it.
 *
 *   control protocol   pvm_kv, pvm_ctl_*: how `pvmig` talks to its local
 *                      `pvmigd` over a unix socket (docs/control.md)
 *   service            pvm_service_*: what `pvmigd` runs — the hypervisor
 *                      backend (and, for the simulated host, its xenstore
 *                      server), the control socket, the command handlers
 *   configuration      pvm_service_config_*: /etc/pvmig/pvmigd.conf
 *
 * Entry points in the order pvmigd uses them: config_defaults → config_load
 * → service_create → service_run (until service_stop) → service_destroy.
 * pvmig uses ctl_connect → ctl_send(request) → ctl_recv until a RESULT.
 */
#ifndef PVM_MIGRATE_H
#define PVM_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ---- key/value records ------------------------------------------------- */

#define PVM_KV_MAX_FIELDS 128u
#define PVM_KV_KEY_MAX 32u      /* [a-z0-9_.-], 1..32 chars */
#define PVM_KV_VALUE_MAX 4096u  /* bytes, no NUL */

/*
 * An ordered list of key=value strings. pvm_kv_init() leaves it empty;
 * pvm_kv_dispose() frees every string and is idempotent. Strings returned
 * by pvm_kv_get() are borrowed until the kv is disposed or reset.
 */
struct pvm_kv {
	size_t n;
	char *key[PVM_KV_MAX_FIELDS];
	char *val[PVM_KV_MAX_FIELDS];
};

void pvm_kv_init(struct pvm_kv *kv);
void pvm_kv_dispose(struct pvm_kv *kv);
/* Appends key=value (printf-style value). -E2BIG when full or too long,
 * -EINVAL for a bad key, -ENOMEM. */
int pvm_kv_add(struct pvm_kv *kv, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
const char *pvm_kv_get(const struct pvm_kv *kv, const char *key);
/* Parses a decimal unsigned value: 0, -ENOENT (absent), -EINVAL. */
int pvm_kv_get_u64(const struct pvm_kv *kv, const char *key, uint64_t *out);

/* ---- control protocol ---------------------------------------------------- */

/* Record kinds (first payload byte). */
enum pvm_ctl_kind {
	PVM_CTL_REQUEST = 'Q',  /* client → service; field "cmd" first */
	PVM_CTL_PROGRESS = 'P', /* service → client, any number */
	PVM_CTL_ITEM = 'I',     /* service → client, one per listed thing */
	PVM_CTL_RESULT = 'R',   /* service → client, last; "status", "error" */
	PVM_CTL_CANCEL = 'C',   /* client → service, while a request runs */
};

#define PVM_CTL_FRAME_MAX (64u * 1024u)
#define PVM_CTL_SOCKET_NAME "control.sock"

/* Encodes a record (u32 LE length, kind byte, key NUL value NUL ...). */
int pvm_ctl_encode(enum pvm_ctl_kind kind, const struct pvm_kv *kv,
		   struct pvm_buf *out);
/* Decodes one record body (without the length prefix) into @kv, which
 * must be empty. -EBADMSG for anything malformed. */
int pvm_ctl_decode(const void *buf, size_t len, enum pvm_ctl_kind *kind_out,
		   struct pvm_kv *kv);

/* Connects to a control socket: 0 and *fd_out, or a negative errno. */
int pvm_ctl_connect(const char *path, int *fd_out);
int pvm_ctl_send(int fd, enum pvm_ctl_kind kind, const struct pvm_kv *kv);
/*
 * Reads one record into @kv (reset first). @timeout_ms 0 waits forever.
 * -ECONNRESET when the peer closed, -ETIMEDOUT, -EBADMSG.
 */
int pvm_ctl_recv(int fd, unsigned timeout_ms, enum pvm_ctl_kind *kind_out,
		 struct pvm_kv *kv);

/* ---- service configuration ----------------------------------------------- */

#define PVM_CONFIG_DEFAULT "/etc/pvmig/pvmigd.conf"
#define PVM_STATE_DIR_DEFAULT "/var/lib/pvmig"
#define PVM_PORT_DEFAULT 8002u

/* What a peer may ask of this pvmigd (allow-peers, docs/security.md). */
enum pvm_right {
	PVM_RIGHT_MIGRATE_IN = 1u << 0, /* send a guest here (HELLO) */
	PVM_RIGHT_TUNNEL = 1u << 1,     /* run tunnel-command (pvmig tunnel) */
	PVM_RIGHT_QUERY = 1u << 2,      /* ask what became of a migration */
};
#define PVM_RIGHTS_ALL (PVM_RIGHT_MIGRATE_IN | PVM_RIGHT_TUNNEL | PVM_RIGHT_QUERY)
/* A name without ":rights": what a migration source needs. tunnel-command
 * runs a command, so it is never implied. */
#define PVM_RIGHTS_DEFAULT (PVM_RIGHT_MIGRATE_IN | PVM_RIGHT_QUERY)
#define PVM_ALLOW_PEERS_MAX 32u
#define PVM_PEER_NAME_MAX 128u
#define PVM_STORAGE_ROOTS_MAX 8u

/* One allow-peers entry: a certificate name (CN or DNS subjectAltName),
 * or "*" for any certificate of tls-ca, and its rights. */
struct pvm_peer_rule {
	char name[PVM_PEER_NAME_MAX];
	unsigned rights; /* enum pvm_right bits, never 0 */
};

/* "migrate-in", "tunnel", "query" (one right); "?" for anything else. */
const char *pvm_right_name(unsigned right);

struct pvm_service_config {
	char backend[16];     /* "sim" or "xen" */
	char state_dir[256];  /* sockets, lock, sim host state */
	char listen[128];     /* peer listener address, "" = no listener */
	uint16_t port;        /* peer listener port */
	char tls_ca[256];     /* PEM paths for the peer listener and for */
	char tls_cert[256];   /* outgoing migrations */
	char tls_key[256];
	unsigned max_migrations; /* concurrent, each direction */
	unsigned streams;        /* default data streams per migration */
	unsigned timeout_ms;     /* a peer silent or stalled this long fails */
	bool log_syslog;
	char tunnel_command[512]; /* run for `pvmig tunnel`; "" refuses */

	/* Who may do what (allow-peers; each line adds entries). A listener
	 * needs allow_peers_set: pvmigd refuses to start without it. */
	bool allow_peers_set;
	unsigned nr_allow;
	struct pvm_peer_rule allow[PVM_ALLOW_PEERS_MAX];
	char tls_crl[256];        /* PEM CRL(s) of tls-ca, "" = none */
	bool tls_ip_without_san;  /* an address target whose certificate
				   * lists no IP is accepted (CA only) */
	/* Where an incoming guest's disks may be (storage-roots; each line
	 * adds). None: incoming guests with disks are refused. */
	unsigned nr_storage_roots;
	char storage_roots[PVM_STORAGE_ROOTS_MAX][256];
	uint64_t max_incoming_memory; /* bytes; 0 = what the host has left */
	/* The listener against strangers (connections not yet through TLS
	 * and the transport HELLO). */
	unsigned max_unauth;          /* in all */
	unsigned max_unauth_per_addr; /* from one address */
	unsigned handshake_ms;        /* TLS + HELLO deadline per connection */
};

/*
 * The rights @c grants a peer: the union of the entries whose name the
 * peer's certificate carries (@has_name(@ctx, NAME) is true) or that are
 * "*". 0: none (a stranger).
 */
unsigned pvm_service_config_rights(const struct pvm_service_config *c,
				   bool (*has_name)(void *ctx, const char *name),
				   void *ctx);
/* Writes @rights as "migrate-in+query" into @out ("none" for 0). */
void pvm_rights_format(unsigned rights, char *out, size_t len);

void pvm_service_config_defaults(struct pvm_service_config *c);
/*
 * Reads "key = value" lines (# comments, blank lines) over the defaults.
 * Unknown keys and bad values are errors naming the file and line.
 * -ENOENT if the file is missing (callers decide whether that matters).
 */
int pvm_service_config_load(struct pvm_service_config *c, const char *path);

/* ---- the service ----------------------------------------------------------- */

struct pvm_service;

/*
 * Opens the backend, takes the state dir (exclusively: -EBUSY if another
 * pvmigd serves it) and binds the control socket STATE_DIR/control.sock
 * (mode 0600). The caller owns *out and frees it with _destroy().
 */
int pvm_service_create(const struct pvm_service_config *c,
		       struct pvm_service **out);
/* Serves until pvm_service_stop(); 0 or a negative errno. */
int pvm_service_run(struct pvm_service *s);
/* Async-signal-safe: makes _run() return soon. */
void pvm_service_stop(struct pvm_service *s);
/* Destroys guests this service started, closes everything. Safe on NULL. */
void pvm_service_destroy(struct pvm_service *s);
const char *pvm_service_control_path(const struct pvm_service *s);

/* ---- pvmig tunnel: a byte stream to a peer's tunnel-command (tunnel.c) --- */

#define PVM_TUNNEL_COMMAND_DEFAULT "xl migrate-receive"

struct pvm_tunnel_opts {
	const char *target;  /* "HOST[:PORT]" */
	uint16_t port;       /* when the target names none (0: PVM_PORT_DEFAULT) */
	const char *tls_ca, *tls_cert, *tls_key;
	const char *tls_crl;  /* NULL or "": none */
	bool ip_without_san;  /* tls-allow-ip-without-san */
	unsigned streams;    /* 0: the transport's default */
	unsigned timeout_ms; /* 0: the transport's default */
};

struct pvm_tunnel_stats {
	uint64_t sent;      /* bytes read from in_fd and delivered */
	uint64_t received;  /* bytes written to out_fd */
	uint64_t wire_sent; /* what the sent bytes took on the channel (lz4) */
	double ms;
};

/*
 * Connects to the pvmigd at @o->target and has it run its tunnel-command
 * (pvmigd.conf) with the bytes read from @in_fd on its stdin; its stdout
 * is written to @out_fd (closed when the command closes it or on failure).
 * Returns the command's exit status (0..255) once it ended, or a negative
 * errno with the explanation in @why (refused, TLS, lost channel).
 */
int pvm_tunnel_run(const struct pvm_tunnel_opts *o, int in_fd, int out_fd,
		   struct pvm_tunnel_stats *st, char *why, size_t why_len);

#endif /* PVM_MIGRATE_H */
