/*
 * hv/sim/xenstored — the simulated host's xenstore server.
 *
 * Speaks Xen's xenstore wire protocol (xen/io/xs_wire.h; semantics of
 * docs/misc/xenstore.txt) on a unix socket DIR/xenstore.sock, so that the
 * stock xenstore-* tools and anything linked with libxenstore work against
 * it through XENSTORED_PATH. Connections on that socket act as dom0.
 * A simulated guest never claims its domid: the host introduces the domain
 * (pvm_xenstored_introduce(), or INTRODUCE over the wire) and then either
 * hands the guest an already-connected fd (pvm_xenstored_connect_domain())
 * or lets it connect to the per-domain socket DIR/xenstore-dom<ID>.sock,
 * which exists only while the domain is introduced.
 *
 * Entry points, in the order a host uses them:
 *   pvm_xenstored_opts_default()   quotas = Xen's defaults
 *   pvm_xenstored_create()         binds the socket, locks the state dir
 *   pvm_xenstored_run()            event loop, returns after _stop()
 *   pvm_xenstored_make_domain() / _add_device()   the toolstack's nodes
 *   pvm_xenstored_introduce() / _connect_domain() / _release()
 *   pvm_xenstored_remove_domain()
 *   pvm_xs_export_domain() / pvm_xs_import_domain()   migration records
 *   pvm_xenstored_stop()           async-signal-safe
 *   pvm_xenstored_destroy()        closes everything, removes the sockets
 *
 * Every function except _run() may be called from any thread while _run()
 * runs in another: they serialise on the server's lock.
 * All return 0 or a negative errno unless stated otherwise.
 */
#ifndef PVM_XENSTORED_H
#define PVM_XENSTORED_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct pvm_xenstored;

struct pvm_xenstored_opts {
	/* Directory holding xenstore.sock, xenstore.lock and the per-domain
	 * sockets. Borrowed for the duration of pvm_xenstored_create(). */
	const char *state_dir;
	/* Per unprivileged domain; 0 means unlimited. Defaults are Xen's. */
	uint32_t quota_nodes;        /* nodes owned (1000), ENOSPC */
	uint32_t quota_watches;      /* watches (128), E2BIG */
	uint32_t quota_transactions; /* open transactions (10), ENOSPC */
	uint32_t quota_outstanding;  /* unread replies before reading stops (20) */
	uint32_t quota_entry_size;   /* value bytes per node (2048), ENOSPC */
	uint32_t quota_perms;        /* ACL entries besides the owner (5), ENOSPC */
	uint32_t quota_trans_nodes;  /* nodes touched per transaction (1024) */
	/* Per connection (any domain): watch events queued but not yet
	 * taken by the client; past this the connection is dropped. */
	uint32_t max_queued_events;
};

void pvm_xenstored_opts_default(struct pvm_xenstored_opts *o);

/*
 * Creates the server: takes an exclusive lock on DIR/xenstore.lock
 * (-EBUSY when another server holds it), binds DIR/xenstore.sock and
 * creates the initial tree (/, /local, /local/domain, /tool, owned by dom0).
 * *out is owned by the caller and freed by pvm_xenstored_destroy().
 */
int pvm_xenstored_create(const struct pvm_xenstored_opts *o,
			 struct pvm_xenstored **out);

/* Runs the event loop in the calling thread until pvm_xenstored_stop(). */
int pvm_xenstored_run(struct pvm_xenstored *srv);

/* Asks _run() to return. Async-signal-safe; may be called before _run(). */
void pvm_xenstored_stop(struct pvm_xenstored *srv);

/* Closes connections, removes the sockets and lock file, frees @srv.
 * _run() must have returned. NULL is a no-op. */
void pvm_xenstored_destroy(struct pvm_xenstored *srv);

/* Borrowed; valid until destroy. */
const char *pvm_xenstored_socket_path(const struct pvm_xenstored *srv);

/*
 * Introduces domain @domid (1..0x7fef), as INTRODUCE does: fires
 * @introduceDomain and creates DIR/xenstore-dom<ID>.sock. Introducing an
 * introduced domain again is a no-op.
 */
int pvm_xenstored_introduce(struct pvm_xenstored *srv, uint16_t domid);

/* As RELEASE: drops the domain's connections, fires @releaseDomain, removes
 * its socket. The domain's nodes stay (the toolstack removes them). */
int pvm_xenstored_release(struct pvm_xenstored *srv, uint16_t domid);

/*
 * Returns in *fd_out one end of a connected socket pair whose other end
 * the server treats as a connection of @domid (which must be introduced,
 * or 0 for a privileged connection). The caller owns *fd_out, which has
 * FD_CLOEXEC set: dup2() it into the guest process's fd table. Watches
 * imported for the domain and not yet claimed attach to this connection.
 */
int pvm_xenstored_connect_domain(struct pvm_xenstored *srv, uint16_t domid,
				 int *fd_out);

/* Path of the per-domain socket, into @buf (NUL-terminated); -ERANGE if
 * @len is too small, -ENOENT if the domain is not introduced. */
int pvm_xenstored_domain_socket_path(struct pvm_xenstored *srv, uint16_t domid,
				     char *buf, size_t len);

/*
 * The toolstack's part (what libxl writes), so guests and backends see
 * Xen's layout; watches fire as for a dom0 toolstack's writes:
 *
 * _make_domain() (re)creates /local/domain/<domid>: host-owned and
 * readable by the guest (name, domid, memory/static-max and
 * memory/target in KiB, cpu, device, control), with the guest-owned
 * control/shutdown, control/feature-*, control/sysrq,
 * device/suspend/event-channel, data, drivers, feature, attr, error.
 *
 * _add_device() (re)creates a PV device in state 1 (Initialising):
 * frontend /local/domain/<fe>/device/<type>/<devid> (owned by fe, read
 * by be) with backend, backend-id, state; backend
 * /local/domain/<be>/backend/<type>/<fe>/<devid> (owned by be, read by fe)
 * with frontend, frontend-id, online, state. @type: [a-z0-9_-]{1,32}.
 *
 * _remove_domain() removes /local/domain/<domid> and every backend
 * directory serving it.
 */
int pvm_xenstored_make_domain(struct pvm_xenstored *srv, uint16_t domid,
			      const char *name, uint64_t mem_kib);
int pvm_xenstored_add_device(struct pvm_xenstored *srv, const char *type,
			     uint16_t fe_domid, uint16_t be_domid,
			     uint32_t devid);
int pvm_xenstored_remove_domain(struct pvm_xenstored *srv, uint16_t domid);

/*
 * Migration records (docs/sim-host.md; layout of Xen's
 * docs/designs/xenstore-migration.md): header, one CONNECTION_DATA for the
 * domain, a WATCH_DATA per watch its connections registered, a NODE_DATA
 * per node of /local/domain/<domid> (parents first), END.
 * Export appends to @out (caller-owned; its cap bounds the size).
 */
int pvm_xs_export_domain(struct pvm_xenstored *srv, uint16_t domid,
			 struct pvm_buf *out);

/*
 * Replaces /local/domain/<domid> with the records in [buf, buf+len)
 * (borrowed). The records may come from another domid: paths and ACL
 * entries naming the old domid are rewritten to @domid. Watches are
 * attached to the domain's connection if one exists, else kept until one
 * is made with pvm_xenstored_connect_domain() or the per-domain socket.
 * -EBADMSG for a malformed or truncated stream; nothing changes then.
 */
int pvm_xs_import_domain(struct pvm_xenstored *srv, uint16_t domid,
			 const void *buf, size_t len);

#endif /* PVM_XENSTORED_H */
