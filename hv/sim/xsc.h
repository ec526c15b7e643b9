/*
 * A minimal synchronous xenstore client speaking the wire protocol
 * (xen/io/xs_wire.h) over an already-connected socket, for the simulated
 * host's own parts: the PV backends and toolstack writes in the host (on
 * a dom0 connection from pvm_xenstored_connect_domain()) and the frontends
 * in the guest program (on the connection the host handed it). libxenstore
 * cannot adopt a connected fd, hence this; pvmig's layers above hv/ use
 * libxenstore.
 *
 * One request is outstanding at a time. Watch events that arrive while a
 * reply is awaited are counted in x->events (the watcher re-reads what it
 * watches; the event's path is not needed by its users). Not thread-safe:
 * one user thread per struct xsc. Only libc: linked into the guest too.
 *
 * All calls return 0 (or a length) or a negative errno; an ERROR reply is
 * mapped back to its errno (ENOENT, EACCES, ...); a broken connection is
 * -EPIPE and sticks.
 */
#ifndef PVM_SIM_XSC_H
#define PVM_SIM_XSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xsc {
	int fd;        /* owned; closed by xsc_close */
	uint32_t req_id;
	uint64_t events; /* watch events seen and not yet taken */
	int err;        /* sticky -EPIPE / -EPROTO */
	uint32_t tx;    /* the open transaction (0: none): every request is in it */
};

void xsc_init(struct xsc *x, int fd);
/* Bounds each wait for a reply to @ms (a server that stopped answering
 * then breaks the connection: -EPIPE) instead of waiting forever. */
int xsc_set_timeout(struct xsc *x, unsigned int ms);
void xsc_close(struct xsc *x);

/* Reads @path into @buf (NUL-terminated, at most @len-1 bytes): length, or
 * -ENOENT, -ERANGE (value longer than the buffer), ... */
int xsc_read(struct xsc *x, const char *path, char *buf, size_t len);
/* Reads an unsigned number; -EINVAL if the value is not one. */
int xsc_read_u64(struct xsc *x, const char *path, uint64_t *out);
int xsc_write(struct xsc *x, const char *path, const char *val);
int xsc_writef(struct xsc *x, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int xsc_rm(struct xsc *x, const char *path);
/* Children of @path, NUL-separated, into @buf: the byte length used. */
int xsc_directory(struct xsc *x, const char *path, char *buf, size_t len);
int xsc_watch(struct xsc *x, const char *path, const char *token);
int xsc_unwatch(struct xsc *x, const char *path, const char *token);

/* A transaction: xsc_tx_start() opens one (-EBUSY if one is open); every
 * request until xsc_tx_end() is in it; xsc_tx_end(commit) closes it:
 * -EAGAIN when committing found a node it touched changed by someone
 * else meanwhile (nothing of it was applied: start again). */
int xsc_tx_start(struct xsc *x);
int xsc_tx_end(struct xsc *x, bool commit);
/* Compare and swap: writes @val at @path if it holds @expect, in a
 * transaction retried on -EAGAIN (at most 16 times): 0 when written,
 * -ECANCELED when @path held something else (or nothing), or an error.
 * Both ends of Xen's control/shutdown handshake take the request this way
 * (Linux's shutdown_handler does), so that exactly one of them does. */
int xsc_cas(struct xsc *x, const char *path, const char *expect,
	    const char *val);

/* Consumes what the server sent unasked (watch events) without blocking;
 * returns x->events and resets it to 0. */
int64_t xsc_take_events(struct xsc *x);

#endif /* PVM_SIM_XSC_H */
