/*
 * Internals shared by the files of hv/sim/xenstored:
 *   store.c    the node tree, path rules, permissions
 *   server.c   sockets, the event loop, connections, domains
 *   ops.c      one handler per message type, watches, transactions
 *   records.c  export/import of one domain as migration records
 *   layout.c   the toolstack's part: a domain's and a device's nodes
 *
 * Threading: everything here is touched only with srv->lock held.
 */
#ifndef PVM_XENSTORED_INTERNAL_H
#define PVM_XENSTORED_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <xen/io/xs_wire.h>

#include "common/common.h"
#include "hv/sim/xenstored/xenstored.h"

_Static_assert(sizeof(struct xsd_sockmsg) == 16, "xsd_sockmsg is 16 bytes");

#define XS_DOMID_FIRST_RESERVED 0x7ff0u
#define XS_DOMID_INVALID 0x7ff4u
#define XS_TOKEN_MAX XENSTORE_REL_PATH_MAX

/* ---- store.c: nodes ------------------------------------------------- */

enum { XS_PERM_NONE = 0, XS_PERM_READ = 1, XS_PERM_WRITE = 2, XS_PERM_OWNER = 4 };

struct xs_perm {
	uint16_t domid;
	uint8_t access; /* XS_PERM_READ|XS_PERM_WRITE */
};

/*
 * A node owns its name, value, ACL and children. perms[0] names the owner
 * and the access of every domain not listed after it (Xen's rule).
 * gen changes whenever value, ACL or the list of children changes; a
 * transaction compares gens to detect conflicts.
 */
struct xs_node {
	char *name; /* leaf name; "" for the root */
	struct xs_node *parent;
	struct xs_node **kids;
	uint32_t nkids, capkids;
	uint8_t *value;
	uint32_t vlen;
	struct xs_perm *perms;
	uint32_t nperms;
	uint64_t gen;
};

struct xs_node *node_new(const char *name, size_t namelen);
void node_free(struct xs_node *n); /* frees the subtree; NULL is a no-op */
int node_set_value(struct xs_node *n, const void *v, size_t len);
int node_set_perms(struct xs_node *n, const struct xs_perm *p, uint32_t np);
int node_add_child(struct xs_node *parent, struct xs_node *kid);
void node_unlink(struct xs_node *n);
struct xs_node *node_child(const struct xs_node *n, const char *name,
			   size_t len);
/* Deep copy (gens kept), parent NULL. NULL on ENOMEM. */
struct xs_node *node_clone(const struct xs_node *n);
/* Exact lookup of an absolute canonical path. */
struct xs_node *tree_lookup(struct xs_node *root, const char *path);
/* Deepest existing node on @path (root at least). */
struct xs_node *tree_deepest(struct xs_node *root, const char *path);
/* Writes the absolute path of @n into @buf; -ERANGE if too small. */
int node_path(const struct xs_node *n, char *buf, size_t len);
uint32_t node_count(const struct xs_node *n);

/* Access of @domid (with SET_TARGET target @target) to a node with @p. */
unsigned int perm_for(uint16_t domid, uint16_t target,
		      const struct xs_perm *p, uint32_t np);

/* Path rules (xenstore.txt): chars, slashes, lengths. */
bool path_valid(const char *path);
bool is_child(const char *child, const char *parent);
/* "w5" -> {5, WRITE}; false when malformed. */
bool perm_parse(const char *s, struct xs_perm *out);
/* Writes "b0"-style text; returns its length, NUL not counted. */
int perm_format(const struct xs_perm *p, char *buf, size_t len);
/* Strict decimal 0..max. */
bool parse_uint(const char *s, unsigned long max, unsigned long *out);

/* ---- server.c / ops.c: connections ------------------------------------ */

struct xs_msg {
	struct xs_msg *next;
	uint32_t len, off;
	bool is_event;
	uint8_t data[]; /* header + payload */
};

struct xs_watch {
	struct xs_watch *next;
	char *path;  /* canonical absolute path, or @special */
	char *token;
	bool relative; /* registered relative: events are relative too */
};

struct xs_access {
	char *path;
	uint64_t gen; /* 0 = absent when first touched */
};

enum xs_change_kind { XS_CH_WRITE, XS_CH_RM };

struct xs_change {
	char *path;
	enum xs_change_kind kind;
};

/* An open transaction: a private copy of the tree plus what it touched. */
struct xs_tx {
	struct xs_tx *next;
	uint32_t id;
	struct xs_node *root;
	struct xs_access *acc;
	uint32_t nacc, capacc;
	struct xs_change *ch;
	uint32_t nch, capch;
	int32_t created; /* net nodes created by this tx's domain */
};

/*
 * Connection states: OPEN -> CLOSING (conn_close(): fd closed, watches and
 * transactions gone, moved to srv->zombies) -> freed by the loop after the
 * current batch of events, so no event of that batch sees freed memory.
 */
enum xs_conn_state { XS_CONN_OPEN, XS_CONN_CLOSING };

enum xs_handle_kind { XS_H_WAKE, XS_H_LISTEN, XS_H_DOM_LISTEN, XS_H_CONN };

struct xs_handle {
	enum xs_handle_kind kind;
	void *obj;
};

struct xs_conn {
	struct xs_handle h;
	struct pvm_xenstored *srv;
	struct xs_conn *next;
	enum xs_conn_state state;
	int fd;
	uint32_t id;
	uint16_t domid; /* 0: privileged */
	/* input: header then body */
	uint8_t hdrbuf[sizeof(struct xsd_sockmsg)];
	uint32_t hdr_got;
	struct xsd_sockmsg in;
	uint8_t *body; /* XENSTORE_PAYLOAD_MAX + 1 */
	uint32_t body_got;
	bool have_hdr;
	/* output queue: replies and events in order */
	struct xs_msg *out_head, *out_tail;
	uint32_t out_replies, out_events;
	uint32_t ev_mask;
	struct xs_watch *watches;
	uint32_t nwatches;
	struct xs_tx *txs;
	uint32_t ntx;
	uint32_t next_txid;
};

struct xs_dom {
	struct xs_handle h;
	struct xs_dom *next;
	uint16_t domid;
	bool introduced;
	uint16_t target; /* XS_DOMID_INVALID if none */
	uint32_t nodes;  /* nodes it owns in the committed tree */
	uint32_t watches, txs;
	int lfd;
	char *sock_path;
	struct xs_watch *saved_watches; /* imported, not yet on a connection */
};

struct pvm_xenstored {
	pthread_mutex_t lock;
	struct pvm_xenstored_opts o;
	int epfd, wakefd, lfd, lockfd;
	struct xs_handle wake_h, listen_h;
	char *dir, *sock_path, *lock_path;
	struct xs_node *root;
	uint64_t gen;
	struct xs_conn *conns, *zombies;
	struct xs_dom *doms;
	uint32_t next_conn_id;
	volatile int stopping;
};

struct xs_dom *dom_get(struct pvm_xenstored *srv, uint16_t domid, bool create);
uint16_t dom_target(struct pvm_xenstored *srv, uint16_t domid);
int conn_new(struct pvm_xenstored *srv, int fd, uint16_t domid,
	     struct xs_conn **out);
void conn_close(struct xs_conn *c, const char *why);
/* Queues a message (copies @payload); flushes what the socket takes. */
int conn_send(struct xs_conn *c, uint32_t type, uint32_t req_id,
	      uint32_t tx_id, const void *payload, size_t len);
int srv_introduce(struct pvm_xenstored *srv, uint16_t domid);
int srv_release(struct pvm_xenstored *srv, uint16_t domid);

/* ops.c */
void ops_dispatch(struct xs_conn *c, const struct xsd_sockmsg *hdr,
		  const uint8_t *body);
void watch_free(struct xs_watch *w);
void tx_free(struct xs_tx *t);
/* Fires watches for a change of @path; @recurse for removals.
 * @p/@np: the node's ACL (NULL: only privileged watchers see it). */
void fire_watches(struct pvm_xenstored *srv, const char *path, bool recurse,
		  const struct xs_perm *p, uint32_t np);
void fire_special(struct pvm_xenstored *srv, const char *name);
/* Node accounting on the committed tree. */
void acct_subtree(struct pvm_xenstored *srv, const struct xs_node *n, int sign);
/* Adds a watch to @c (no quota check); used by import. */
int watch_attach(struct xs_conn *c, struct xs_watch *w);
/* First event of a new watch. */
void watch_fire_initial(struct xs_conn *c, const struct xs_watch *w);
/*
 * The host's own changes, as dom0 on the committed tree, firing watches:
 * host_write() creates @path if missing (parents inherit as for dom0),
 * sets its value if @v is non-NULL and its ACL if @p is non-NULL;
 * host_rm() removes a subtree (a missing node is fine).
 */
int host_write(struct pvm_xenstored *srv, const char *path, const char *v,
	       const struct xs_perm *p, uint32_t np);
int host_rm(struct pvm_xenstored *srv, const char *path);

#endif /* PVM_XENSTORED_INTERNAL_H */
