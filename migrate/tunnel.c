/*
 * Tunnels: a byte stream carried both ways over a pvmig channel, for stock
 * xl (docs/xen.md, "pvmig tunnel"):
 *
 *   xl migrate -s '' DOMAIN 'pvmig tunnel HOST'
 *
 * xl runs the quoted command with its migration stream on the command's
 * stdin and reads the receiver's replies from its stdout. `pvmig tunnel`
 * (pvm_tunnel_run) connects to the pvmigd on HOST, which runs its
 * tunnel-command (pvmigd.conf, default "xl migrate-receive") with stdin and
 * stdout joined to the channel (tunnel_serve). Nothing of xl's stream is
 * interpreted: bytes in, the same bytes out.
 *
 * On the channel (after the transport's own TLS and framing), every message
 * is a peer message of wire.c (one header, the type in its own field):
 *
 *   TUNNEL    client -> pvmigd: open, key=value "version=1"
 *   TUN_OK    pvmigd -> client: the command runs, send
 *   ABORT     either way: refused or failed, key=value "error=..."
 *   TUN_CHUNK client -> pvmigd: key=value "bytes=N": chunk k of the
 *             client's stream, which travelled before it as a page batch
 *             (xchunk.c: lz4 and zero-page elision of the transport, slots
 *             alternating between two halves, the last page zero-padded)
 *   TUN_DATA  pvmigd -> client (which receives no pages): raw body, the
 *             bytes themselves (at most TUN_BACK_MAX)
 *   TUN_EOF   the sender's input ended (the reader closes its output)
 *   TUN_EXIT  pvmigd -> client: key=value "status=N", the command's exit
 *             status (128 + signal if it was killed)
 *
 * The client ends the channel (pvm_channel_finish) once it has the exit
 * status. Any channel failure ends the tunnel: the client closes both ends
 * of the pipe xl gave it and exits non-zero (xl then takes its own failure
 * path: before xl's "go" the domain stays on the source); pvmigd closes the
 * command's stdin and stdout, waits for it (bounded) and kills it if it
 * does not exit.
 */
#include "migrate/internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transport/transport.h"

extern char **environ;

#define TUN_VERSION 1u
#define TUN_CHUNK PVM_XCHUNK_BYTES      /* client -> pvmigd, in pages */
#define TUN_BACK_MAX (64u * 1024u)      /* pvmigd -> client, inline */
#define CHILD_EXIT_WAIT_MS 30000u

struct tunnel {
	struct pvm_channel *ch;
	int in_fd;          /* local bytes to send (read end) */
	int out_fd;         /* where received bytes go (write end); -1 closed */
	bool client;        /* the connecting side: sends pages */
	int wake[2];        /* tells the pump thread to stop */
	pthread_t pump;
	bool pump_started;
	int pump_rc;        /* 0, or why the pump stopped */
	char pump_why[200];
	/* client: chunks sent so far (xchunk.c: the k-th uses half k % 2) */
	uint64_t chunks_sent;
	/* pvmigd side: two chunks' worth of pages (xchunk.c) */
	struct pvm_xchunk_rx xrx;
	/* pvmigd side: the command */
	pid_t child;
	int exit_status;    /* -1 until reaped */
	/* counters */
	_Atomic uint64_t sent, received, msg_wire;
};

/* Sends one message of wire.c's framing (@b holds it), counted. */
static int send_buf(struct tunnel *t, const struct pvm_buf *b)
{
	atomic_fetch_add(&t->msg_wire, b->len);
	return pvm_channel_send_msg(t->ch, b->data, b->len);
}

/* Sends @type with an optional "status" field (TUN_EXIT). */
static int send_type(struct tunnel *t, int type, bool with_status,
		     uint32_t status)
{
	struct pvm_buf b;
	struct pvm_kv kv;
	int rc;

	pvm_kv_init(&kv);
	if (with_status)
		pvm_kv_add(&kv, "status", "%u", status);
	pvm_buf_init(&b, 256);
	rc = mig_msg_encode_kv(type, &kv, &b);
	if (!rc)
		rc = send_buf(t, &b);
	pvm_buf_dispose(&b);
	pvm_kv_dispose(&kv);
	return rc;
}

/* The explanation of the channel's failure, or @dflt. */
static const char *channel_why(struct tunnel *t, const char *dflt)
{
	const char *why = NULL;

	pvm_channel_error(t->ch, &why);
	return why && *why ? why : dflt;
}

/* ---- sending: local input -> channel (the pump thread) ------------------ */

static bool readable_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

/* One chunk of @len bytes: the client's as pages then TUN_CHUNK, pvmigd's
 * inline in TUN_DATA. */
static int send_data(struct tunnel *t, uint8_t *buf, size_t len,
		     struct pvm_buf *msg)
{
	size_t at;
	int rc;

	pvm_buf_reset(msg);
	if (t->client) {
		struct pvm_kv kv;

		rc = pvm_xchunk_send_pages(t->ch, t->chunks_sent++, buf, len);
		if (rc)
			return rc;
		pvm_kv_init(&kv);
		pvm_kv_add(&kv, "bytes", "%zu", len);
		rc = mig_msg_encode_kv(MIG_TUN_CHUNK, &kv, msg);
		pvm_kv_dispose(&kv);
	} else {
		at = mig_msg_begin(MIG_TUN_DATA, msg);
		pvm_buf_put_bytes(msg, buf, len);
		rc = mig_msg_end(msg, at);
	}
	if (!rc)
		rc = send_buf(t, msg);
	if (!rc)
		atomic_fetch_add(&t->sent, len);
	return rc;
}

/* pvmigd side, after the command closed its stdout: its exit status, or
 * -ECANCELED when told to stop first. */
static int reap_child(struct tunnel *t)
{
	for (;;) {
		int st;
		pid_t p = waitpid(t->child, &st, WNOHANG);
		struct pollfd w = { .fd = t->wake[0], .events = POLLIN };

		if (p == t->child) {
			t->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) :
					 128 + WTERMSIG(st);
			return t->exit_status;
		}
		if (p < 0 && errno != EINTR)
			return -errno;
		if (poll(&w, 1, 100) > 0)
			return -ECANCELED;
	}
}

static void *pump_main(void *arg)
{
	struct tunnel *t = arg;
	size_t cap = t->client ? TUN_CHUNK : TUN_BACK_MAX;
	uint8_t *buf = malloc(cap);
	struct pvm_buf msg;
	int rc = 0;

	pvm_buf_init(&msg, MIG_HDR_SIZE + TUN_BACK_MAX + 256);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		struct pollfd p[2] = { { .fd = t->in_fd, .events = POLLIN },
				       { .fd = t->wake[0], .events = POLLIN } };
		size_t len = 0;
		bool eof = false;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (p[1].revents) {
			rc = -ECANCELED;
			break;
		}
		/* Forward at once what is there (xl's handshake is
		 * request/reply), but gather what is already waiting. */
		do {
			ssize_t n = read(t->in_fd, buf + len, cap - len);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0) {
				rc = -errno;
				snprintf(t->pump_why, sizeof(t->pump_why),
					 "reading the local stream: %s", strerror(errno));
				goto out;
			}
			if (n == 0) {
				eof = true;
				break;
			}
			len += (size_t)n;
		} while (len < cap && readable_now(t->in_fd));
		if (len) {
			rc = send_data(t, buf, len, &msg);
			if (rc)
				break;
		}
		if (eof) {
			rc = send_type(t, MIG_TUN_EOF, false, 0);
			if (rc || t->client)
				break;
			/* pvmigd: the command closed its stdout; its exit
			 * status ends the tunnel. */
			rc = reap_child(t);
			if (rc >= 0)
				rc = send_type(t, MIG_TUN_EXIT, true, (uint32_t)rc);
			break;
		}
	}
out:
	if (rc && rc != -ECANCELED && !t->pump_why[0])
		snprintf(t->pump_why, sizeof(t->pump_why), "sending: %s",
			 channel_why(t, strerror(-rc)));
	t->pump_rc = rc;
	free(buf);
	pvm_buf_dispose(&msg);
	return NULL;
}

static int pump_start(struct tunnel *t)
{
	if (pthread_create(&t->pump, NULL, pump_main, t))
		return -EAGAIN;
	t->pump_started = true;
	return 0;
}

static void pump_stop(struct tunnel *t)
{
	if (!t->pump_started)
		return;
	if (write(t->wake[1], "x", 1) < 0) {
		/* the pipe is ours and empty: cannot fail */
	}
	pthread_join(t->pump, NULL);
	t->pump_started = false;
}

/* ---- receiving: channel -> local output ---------------------------------- */

/* pvmigd side: the transport's page callback (from its receive threads). */
int tunnel_pages(struct tunnel *t, const uint64_t *pfns,
		 const uint8_t *const *pages, size_t n)
{
	return pvm_xchunk_rx_pages(&t->xrx, pfns, pages, n);
}

static void close_out(struct tunnel *t)
{
	if (t->out_fd >= 0)
		close(t->out_fd);
	t->out_fd = -1;
}

/* Writes to the local output; once its reader has gone (EPIPE) the rest is
 * dropped: the far end learns of it from the exit status or xl's own
 * protocol. */
static int write_out(struct tunnel *t, const uint8_t *p, size_t len)
{
	while (len && t->out_fd >= 0) {
		ssize_t n = write(t->out_fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EPIPE) {
			pvm_debug("tunnel: the local reader is gone; dropping its input");
			close_out(t);
			break;
		}
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* TUN_CHUNK (pvmigd: its pages are staged) or TUN_DATA (client: inline),
 * written to the local output. */
static int recv_data(struct tunnel *t, const struct mig_msg_in *m, char *why,
		     size_t why_len)
{
	const uint8_t *at = m->raw;
	size_t len = m->raw_len;
	uint64_t bytes;
	int rc;

	if (m->type == MIG_TUN_CHUNK &&
	    (pvm_kv_get_u64(&m->kv, "bytes", &bytes) ||
	     pvm_xchunk_rx_take(&t->xrx, bytes, &at, &len))) {
		snprintf(why, why_len, "a chunk whose length is not that of the pages that came for it");
		return -EBADMSG;
	}
	rc = write_out(t, at, len);
	if (rc)
		snprintf(why, why_len, "writing the local stream: %s", strerror(-rc));
	else
		atomic_fetch_add(&t->received, len);
	return rc;
}

/* The "error" of an ABORT. */
static void abort_reason(const struct mig_msg_in *m, char *why, size_t why_len)
{
	const char *e = pvm_kv_get(&m->kv, "error");

	snprintf(why, why_len, "%s", e ? e : "no reason given");
}

/* Is @type one that this side of a tunnel may receive? */
static bool tun_may_recv(const struct tunnel *t, int type)
{
	switch (type) {
	case MIG_TUN_EOF:
	case MIG_ABORT:
		return true;
	case MIG_TUN_CHUNK:
		return !t->client;
	case MIG_TUN_DATA:
	case MIG_TUN_EXIT:
		return t->client;
	default:
		return false;
	}
}

/*
 * Receives until the tunnel ends. Client: returns the command's exit
 * status (>= 0) when it arrives. pvmigd: returns 0 when the client closed
 * the channel cleanly. Otherwise a negative errno with @why.
 */
static int recv_loop(struct tunnel *t, char *why, size_t why_len)
{
	struct mig_msg_in m;
	uint64_t status;
	char w[256];
	int rc = 0;

	mig_msg_init(&m);
	while (!rc) {
		int type = mig_recv(t->ch, &m, w, sizeof(w));

		if (type == -ESHUTDOWN && !t->client)
			break;
		if (type < 0) {
			snprintf(why, why_len, "%s", w);
			rc = type;
		} else if (!tun_may_recv(t, type)) {
			snprintf(why, why_len, "a %s message has no place in a tunnel's %s side",
				 mig_msg_name(type), t->client ? "client" : "pvmigd");
			rc = -EPROTO;
		} else if (type == MIG_TUN_EOF) {
			close_out(t);
		} else if (type == MIG_TUN_EXIT) {
			if (pvm_kv_get_u64(&m.kv, "status", &status)) {
				snprintf(why, why_len, "an exit status without a status");
				rc = -EBADMSG;
			} else {
				rc = (int)(status & 0xff);
				break;
			}
		} else if (type == MIG_ABORT) {
			abort_reason(&m, why, why_len);
			rc = -ECONNABORTED;
		} else {
			rc = recv_data(t, &m, why, why_len);
		}
	}
	mig_msg_dispose(&m);
	return rc;
}

static int tunnel_init(struct tunnel *t, struct pvm_channel *ch, bool client)
{
	memset(t, 0, sizeof(*t));
	t->ch = ch;
	t->client = client;
	t->in_fd = t->out_fd = -1;
	t->child = -1;
	t->exit_status = -1;
	if (pipe2(t->wake, O_CLOEXEC))
		return -errno;
	return 0;
}

static void tunnel_dispose(struct tunnel *t)
{
	pump_stop(t);
	close(t->wake[0]);
	close(t->wake[1]);
	pvm_xchunk_rx_dispose(&t->xrx);
}

/* ---- pvmigd side ------------------------------------------------------------ */

static int spawn_command(struct tunnel *t, const char *cmd)
{
	int to[2] = { -1, -1 }, from[2] = { -1, -1 }, rc;
	posix_spawn_file_actions_t fa;
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };

	if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC)) {
		rc = -errno;
		goto fail;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, to[0], 0);
	posix_spawn_file_actions_adddup2(&fa, from[1], 1);
	rc = -posix_spawn(&t->child, "/bin/sh", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc)
		goto fail;
	close(to[0]);
	close(from[1]);
	t->out_fd = to[1];
	t->in_fd = from[0];
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (to[i] >= 0)
			close(to[i]);
		if (from[i] >= 0)
			close(from[i]);
	}
	t->child = -1;
	return rc;
}

/* Closes the command's pipes and waits for it (bounded), then kills it. */
static void end_command(struct tunnel *t)
{
	int st;

	close_out(t);
	if (t->in_fd >= 0)
		close(t->in_fd);
	t->in_fd = -1;
	if (t->child < 0 || t->exit_status >= 0)
		return;
	for (unsigned ms = 0; ms < CHILD_EXIT_WAIT_MS; ms += 100) {
		if (waitpid(t->child, &st, WNOHANG) == t->child)
			goto reaped;
		usleep(100 * 1000);
	}
	pvm_warn("tunnel: the command (pid %d) did not exit; killing it",
		 (int)t->child);
	kill(t->child, SIGKILL);
	waitpid(t->child, &st, 0);
reaped:
	t->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void tunnel_serve(struct pvm_service *s, struct pvm_channel **chp,
		  const struct pvm_kv *hello, struct tunnel *_Atomic *slot)
{
	struct pvm_channel *ch = *chp;
	const char *peer = pvm_channel_peer(ch);
	struct tunnel *t = calloc(1, sizeof(*t));
	char why[300] = "";
	uint64_t ver = 0;
	int rc;

	if (!t || tunnel_init(t, ch, false)) {
		mig_send_abort(ch, "out of memory");
		free(t);
		return;
	}
	if (pvm_kv_get_u64(hello, "version", &ver) || ver != TUN_VERSION) {
		mig_send_abort(ch, "unsupported tunnel version (this pvmigd speaks 1)");
		goto out;
	}
	if (!s->cfg.tunnel_command[0]) {
		mig_send_abort(ch, "this pvmigd runs no tunnels (tunnel-command is empty in its pvmigd.conf)");
		pvm_warn("tunnel from %s refused: tunnel-command is empty", peer);
		goto out;
	}
	if (pvm_xchunk_rx_init(&t->xrx)) {
		mig_send_abort(ch, "out of memory");
		goto out;
	}
	rc = spawn_command(t, s->cfg.tunnel_command);
	if (rc) {
		snprintf(why, sizeof(why), "cannot start the tunnel-command: %s",
			 strerror(-rc));
		mig_send_abort(ch, why);
		pvm_warn("tunnel from %s: %s", peer, why);
		goto out;
	}
	pvm_info("tunnel from %s: running '%s' (pid %d)", peer,
		 s->cfg.tunnel_command, (int)t->child);
	/* Pages may follow 'K' at once: the hook must be in place. */
	atomic_store(slot, t);
	rc = send_type(t, MIG_TUN_OK, false, 0);
	if (!rc)
		rc = pump_start(t);
	if (!rc)
		rc = recv_loop(t, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "%s", channel_why(t, strerror(-rc)));
	pump_stop(t);
	if (rc || t->exit_status < 0)
		pvm_warn("tunnel from %s: ended before the command did: %s%s%s", peer,
			 why[0] ? why : "", why[0] && t->pump_why[0] ? "; " : "",
			 t->pump_why);
	end_command(t);
	pvm_info("tunnel from %s: %llu bytes in, %llu out, command status %d", peer,
		 (unsigned long long)atomic_load(&t->received),
		 (unsigned long long)atomic_load(&t->sent), t->exit_status);
out:
	/* Close the channel (joining its receive threads) before the chunk
	 * they write into is freed. */
	pvm_channel_close(ch);
	*chp = NULL;
	atomic_store(slot, NULL);
	end_command(t);
	tunnel_dispose(t);
	free(t);
}

/* ---- client side (pvmig tunnel) ---------------------------------------------- */

/* Client: TUNNEL, and pvmigd's TUN_OK (or its refusal, said in @why). */
static int tunnel_open(struct tunnel *t, const char *host, uint16_t port,
		       char *why, size_t why_len)
{
	struct mig_msg_in m;
	struct pvm_kv kv;
	char r[256] = "";
	int rc;

	pvm_kv_init(&kv);
	mig_msg_init(&m);
	pvm_kv_add(&kv, "version", "%u", TUN_VERSION);
	rc = mig_send_kv(t->ch, MIG_TUNNEL, &kv);
	if (!rc)
		rc = mig_recv(t->ch, &m, r, sizeof(r));
	else
		snprintf(r, sizeof(r), "%s", channel_why(t, strerror(-rc)));
	if (rc < 0) {
		snprintf(why, why_len, "pvmigd on %s:%u did not answer: %s", host,
			 port, r);
	} else if (rc == MIG_ABORT) {
		abort_reason(&m, r, sizeof(r));
		snprintf(why, why_len, "pvmigd on %s:%u refused the tunnel: %s",
			 host, port, r);
		rc = -ECONNREFUSED;
	} else if (rc != MIG_TUN_OK) {
		snprintf(why, why_len, "pvmigd on %s:%u answered something else than OK (an older pvmigd?)",
			 host, port);
		rc = -EPROTO;
	} else {
		rc = 0;
	}
	mig_msg_dispose(&m);
	pvm_kv_dispose(&kv);
	return rc;
}

int pvm_tunnel_run(const struct pvm_tunnel_opts *o, int in_fd, int out_fd,
		   struct pvm_tunnel_stats *st, char *why, size_t why_len)
{
	struct pvm_tls_files files = { o->tls_ca, o->tls_cert, o->tls_key,
				       o->tls_crl };
	struct pvm_tls_ctx *tls = NULL;
	struct pvm_channel_opts co;
	struct pvm_channel *ch = NULL;
	struct tunnel t;
	char host[256];
	uint16_t port;
	char r[256] = "";
	uint64_t t0 = pvm_now_ns();
	int rc;

	memset(&t, 0, sizeof(t));
	if (st) /* counted from zero, even when no channel is opened */
		memset(st, 0, sizeof(*st));
	t.wake[0] = t.wake[1] = -1;
	t.in_fd = t.out_fd = -1;
	why[0] = '\0';
	if (mig_parse_target(o->target, host, sizeof(host), &port)) {
		snprintf(why, why_len, "'%s' is not HOST or HOST:PORT", o->target);
		return -EINVAL;
	}
	if (!strchr(o->target, ':') && o->port)
		port = o->port;
	if (!o->tls_ca[0] || !o->tls_cert[0] || !o->tls_key[0]) {
		snprintf(why, why_len, "tls-ca, tls-cert and tls-key are needed (pvmigd.conf, or --config)");
		return -EINVAL;
	}
	rc = pvm_tls_ctx_new(&files, &tls);
	if (rc) {
		snprintf(why, why_len, "cannot load the TLS files (%s, %s, %s): %s",
			 o->tls_ca, o->tls_cert, o->tls_key, strerror(-rc));
		return rc;
	}
	pvm_tls_ctx_allow_ip_without_san(tls, o->ip_without_san);
	pvm_channel_opts_defaults(&co);
	co.refusal = r;
	co.refusal_len = sizeof(r);
	if (o->streams)
		co.streams = o->streams;
	if (o->timeout_ms)
		co.timeout_ms = o->timeout_ms;
	/* As for migrations: a host name must be in the peer's certificate,
	 * an address too if the certificate lists any (transport/tls.c). */
	co.peer_name = host;
	rc = pvm_transport_connect(host, port, tls, &co, &ch);
	if (rc && r[0]) {
		snprintf(why, why_len, "pvmigd on %s:%u refused: %s", host,
			 port, r);
		goto out_tls;
	}
	if (rc) {
		snprintf(why, why_len, "cannot open a channel to pvmigd on %s:%u: %s (the reason is logged above)",
			 host, port, strerror(-rc));
		goto out_tls;
	}
	r[0] = '\0';
	rc = tunnel_init(&t, ch, true);
	if (rc)
		goto out;
	t.in_fd = in_fd;
	t.out_fd = out_fd;
	rc = tunnel_open(&t, host, port, why, why_len);
	if (rc)
		goto out;
	rc = pump_start(&t);
	if (!rc) {
		rc = recv_loop(&t, r, sizeof(r));
		if (rc < 0)
			snprintf(why, why_len, "the tunnel to %s:%u broke: %s%s%s",
				 host, port, r, t.pump_why[0] ? "; " : "", t.pump_why);
	}
	pump_stop(&t);
	if (rc >= 0) {
		/* The command is done: end the channel cleanly. */
		int frc = pvm_channel_finish(ch);

		if (frc)
			pvm_debug("tunnel: closing: %s", channel_why(&t, strerror(-frc)));
	}
out:
	close_out(&t);
	if (st) {
		struct pvm_channel_stats cs = { 0 };

		if (ch)
			pvm_channel_stats(ch, &cs);
		st->sent = atomic_load(&t.sent);
		st->received = atomic_load(&t.received);
		st->wire_sent = cs.wire_bytes + atomic_load(&t.msg_wire);
		st->ms = (double)(pvm_now_ns() - t0) / 1e6;
	}
	if (t.wake[0] >= 0)
		tunnel_dispose(&t);
	pvm_channel_close(ch);
out_tls:
	pvm_tls_ctx_free(tls);
	return rc;
}
