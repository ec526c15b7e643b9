/*
 * TLS 1.3 with mutual certificate authentication (OpenSSL 3), on
 * non-blocking sockets, and the certificate helper behind `pvmig tls-init`.
 *
 *   pvm_tls_files_check() the CA is a CA, the key opens and matches the cert
 *   pvm_tls_ctx_new()     one SSL_CTX: TLS 1.3 only, peer cert required
 *   tp_conn_connect()     TCP connect + client handshake + name check
 *   tp_conn_accept()      server handshake + name check on an accepted fd
 *   tp_conn_read/write()  exact-length I/O; waits in poll() outside ssl_lock
 *   pvm_tls_init_dir()    CA and host certificates for users and tests
 */
#include "transport/internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <ctype.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- context ----------------------------------------------------------- */

void tp_ssl_error(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "no OpenSSL error recorded");
	ERR_clear_error();
}

/* Never prompts for a pass phrase (a daemon has no terminal). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return -1;
}

/* Opens @path for reading: a BIO, or NULL with why/-errno. */
static BIO *open_pem(const char *path, char *why, size_t len, int *rc_out)
{
	FILE *f = fopen(path, "r");
	BIO *b;

	if (!f) {
		*rc_out = -errno;
		snprintf(why, len, "cannot read it: %s", strerror(errno));
		return NULL;
	}
	b = BIO_new_fp(f, BIO_CLOSE);
	if (!b) {
		fclose(f);
		*rc_out = -ENOMEM;
		snprintf(why, len, "out of memory");
	}
	return b;
}

static void subject_of(X509 *x, char *buf, size_t len)
{
	X509_NAME_oneline(X509_get_subject_name(x), buf, (int)len);
}

/* Every certificate in @path is a CA (basicConstraints CA:TRUE). */
static int check_ca_file(const char *path, char *why, size_t len)
{
	char subj[256];
	unsigned n = 0;
	int rc = 0;
	BIO *b = open_pem(path, why, len, &rc);
	X509 *x;

	if (!b)
		return rc;
	while ((x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL))) {
		uint32_t fl = X509_get_extension_flags(x);

		n++;
		if (!(fl & EXFLAG_BCONS) || !(fl & EXFLAG_CA)) {
			subject_of(x, subj, sizeof(subj));
			snprintf(why, len,
				 "not a CA certificate: certificate %u (%s) has no basicConstraints CA:TRUE (a host certificate? tls-ca is the ca.pem of pvmig tls-init)",
				 n, subj);
			rc = -EINVAL;
			X509_free(x);
			break;
		}
		X509_free(x);
	}
	if (!rc && !n) {
		snprintf(why, len, "holds no PEM certificate");
		rc = -EINVAL;
	}
	BIO_free(b);
	ERR_clear_error(); /* the loop ends on "no start line" */
	return rc;
}

/* @path holds one or more PEM CRLs. */
static int check_crl_file(const char *path, char *why, size_t len)
{
	unsigned n = 0;
	int rc = 0;
	BIO *b = open_pem(path, why, len, &rc);
	X509_CRL *crl;

	if (!b)
		return rc;
	while ((crl = PEM_read_bio_X509_CRL(b, NULL, no_passphrase, NULL))) {
		n++;
		X509_CRL_free(crl);
	}
	BIO_free(b);
	ERR_clear_error();
	if (!n) {
		snprintf(why, len, "holds no PEM certificate revocation list (pvmig tls-revoke makes one)");
		return -EINVAL;
	}
	return 0;
}

/* Adds every CRL of @path to @store and turns on the leaf check. */
static int load_crls(X509_STORE *store, const char *path)
{
	int rc = 0;
	char why[64];
	BIO *b = open_pem(path, why, sizeof(why), &rc);
	X509_CRL *crl;
	unsigned n = 0;

	if (!b)
		return rc;
	while ((crl = PEM_read_bio_X509_CRL(b, NULL, no_passphrase, NULL))) {
		if (X509_STORE_add_crl(store, crl) == 1)
			n++;
		X509_CRL_free(crl);
	}
	BIO_free(b);
	ERR_clear_error();
	if (!n)
		return -EINVAL;
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	return 0;
}

int pvm_tls_files_check(const struct pvm_tls_files *files,
			enum pvm_tls_which *which_out, char *why, size_t len)
{
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	BIO *b;
	int rc;

	*which_out = PVM_TLS_CA;
	rc = check_ca_file(files->ca, why, len);
	if (rc)
		goto out;

	*which_out = PVM_TLS_CERT;
	b = open_pem(files->cert, why, len, &rc);
	if (!b)
		goto out;
	cert = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
	BIO_free(b);
	if (!cert) {
		snprintf(why, len, "holds no PEM certificate");
		rc = -EINVAL;
		goto out;
	}

	*which_out = PVM_TLS_KEY;
	b = open_pem(files->key, why, len, &rc);
	if (!b)
		goto out;
	key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
	BIO_free(b);
	if (!key) {
		snprintf(why, len, "holds no PEM private key (or an encrypted one: pvmigd has no pass phrase)");
		rc = -EINVAL;
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		snprintf(why, len, "does not match the certificate %s",
			 files->cert);
		rc = -EINVAL;
		goto out;
	}
	if (files->crl && files->crl[0]) {
		*which_out = PVM_TLS_CRL;
		rc = check_crl_file(files->crl, why, len);
		if (rc)
			goto out;
	}
	rc = 0;
out:
	EVP_PKEY_free(key);
	X509_free(cert);
	ERR_clear_error();
	return rc;
}

int pvm_tls_ctx_new(const struct pvm_tls_files *files,
		    struct pvm_tls_ctx **out)
{
	static const char *const names[] = {
		[PVM_TLS_CA] = "CA certificate",
		[PVM_TLS_CERT] = "host certificate",
		[PVM_TLS_KEY] = "private key",
		[PVM_TLS_CRL] = "revocation list",
	};
	const char *paths[] = { files->ca, files->cert, files->key, files->crl };
	enum pvm_tls_which which;
	struct pvm_tls_ctx *t;
	char err[512];
	const char *what;
	int rc;

	*out = NULL;
	rc = pvm_tls_files_check(files, &which, err, sizeof(err));
	if (rc) {
		pvm_err("tls: %s %s: %s", names[which], paths[which], err);
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ssl_ctx = SSL_CTX_new(TLS_method());
	if (!t->ssl_ctx) {
		what = "cannot create a TLS context";
		goto out_err;
	}
	SSL_CTX_set_min_proto_version(t->ssl_ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(t->ssl_ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(t->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* No session tickets: channels are long-lived, and tickets are
	 * post-handshake messages a peer might never read. */
	SSL_CTX_set_num_tickets(t->ssl_ctx, 0);
	SSL_CTX_set_verify(t->ssl_ctx,
			   SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   NULL);
	what = "cannot load the CA certificate";
	if (SSL_CTX_load_verify_locations(t->ssl_ctx, files->ca, NULL) != 1)
		goto out_err;
	what = "cannot load the host certificate";
	if (SSL_CTX_use_certificate_chain_file(t->ssl_ctx, files->cert) != 1)
		goto out_err;
	what = "cannot load the private key";
	if (SSL_CTX_use_PrivateKey_file(t->ssl_ctx, files->key,
					SSL_FILETYPE_PEM) != 1)
		goto out_err;
	what = "the private key does not match the certificate";
	if (SSL_CTX_check_private_key(t->ssl_ctx) != 1)
		goto out_err;
	what = "cannot load the revocation list";
	if (files->crl && files->crl[0] &&
	    load_crls(SSL_CTX_get_cert_store(t->ssl_ctx), files->crl))
		goto out_err;
	*out = t;
	return 0;

out_err:
	tp_ssl_error(err, sizeof(err));
	pvm_err("tls: %s (ca %s, cert %s, key %s): %s", what, files->ca,
		files->cert, files->key, err);
	pvm_tls_ctx_free(t);
	return -EINVAL;
}

void pvm_tls_ctx_allow_ip_without_san(struct pvm_tls_ctx *t, bool allow)
{
	t->ip_without_san = allow;
}

void pvm_tls_ctx_free(struct pvm_tls_ctx *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ssl_ctx);
	free(t);
}

/* ---- connections ------------------------------------------------------- */

void tp_conn_init(struct tp_conn *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	pthread_mutex_init(&c->ssl_lock, NULL);
}

void tp_conn_dispose(struct tp_conn *c)
{
	X509_free(c->peer.cert);
	c->peer.cert = NULL;
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	pthread_mutex_destroy(&c->ssl_lock);
	/* Leave it re-initialisable. */
	pthread_mutex_init(&c->ssl_lock, NULL);
}

static void set_socket_opts(int fd, unsigned timeout_ms)
{
	int one = 1, idle = 5, intvl = 2, cnt = 3;
	unsigned user_to = timeout_ms;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Kernel keepalive finds a vanished host even when both sides are
	 * idle; TCP_USER_TIMEOUT bounds how long sent data may stay
	 * unacknowledged (a cut cable) before the kernel gives up. */
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_to, sizeof(user_to));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void describe_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(buf, len, "%s:%u", host, port);
}

/* Waits for @events on @fd; 0, -ETIMEDOUT or -ECANCELED. */
static int wait_fd(int fd, short events, unsigned timeout_ms, atomic_bool *stop)
{
	/* Poll in slices so a shutdown request is seen promptly even if the
	 * socket shutdown() raced with our poll() setup. */
	uint64_t deadline = pvm_now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		uint64_t now = pvm_now_ms();
		int slice, r;

		if (stop && atomic_load(stop))
			return -ECANCELED;
		if (now >= deadline)
			return -ETIMEDOUT;
		slice = (int)(deadline - now < 200 ? deadline - now : 200);
		r = poll(&p, 1, slice);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/*
 * Maps the result of an SSL call that returned <= 0 to an action:
 * 1 = wait for read, 2 = wait for write, or a negative errno (with why).
 */
static int ssl_failure(SSL *ssl, int ret, int saved_errno, char *why,
		       size_t why_len)
{
	int e = SSL_get_error(ssl, ret);
	unsigned long code;
	char buf[256];

	switch (e) {
	case SSL_ERROR_WANT_READ:
		return 1;
	case SSL_ERROR_WANT_WRITE:
		return 2;
	case SSL_ERROR_ZERO_RETURN:
		snprintf(why, why_len, "peer closed the TLS session");
		return -ECONNRESET;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (saved_errno == 0 || saved_errno == EPIPE ||
		    saved_errno == ECONNRESET) {
			snprintf(why, why_len,
				 "connection closed by peer (%s)",
				 saved_errno ? strerror(saved_errno) :
					       "end of stream");
			return -ECONNRESET;
		}
		if (saved_errno == ETIMEDOUT) {
			snprintf(why, why_len,
				 "connection timed out (peer unreachable)");
			return -ETIMEDOUT;
		}
		snprintf(why, why_len, "socket error: %s", strerror(saved_errno));
		return -EIO;
	case SSL_ERROR_SSL:
		code = ERR_peek_last_error();
		tp_ssl_error(buf, sizeof(buf));
		if (ERR_GET_REASON(code) == SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC ||
		    ERR_GET_REASON(code) == SSL_R_DECRYPTION_FAILED) {
			snprintf(why, why_len,
				 "TLS record failed authentication (data corrupted or tampered with in transit): %s",
				 buf);
			return -EBADMSG;
		}
		if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			snprintf(why, why_len,
				 "connection closed by peer mid-record");
			return -ECONNRESET;
		}
		snprintf(why, why_len, "TLS error: %s", buf);
		return -EPROTO;
	default:
		snprintf(why, why_len, "TLS error %d", e);
		return -EIO;
	}
}

static bool is_ip_literal(const char *s);

/* Whether @x's subjectAltName lists at least one IP address. */
static bool cert_has_ip(X509 *x)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	bool found = false;

	for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !found; i++)
		found = sk_GENERAL_NAME_value(names, i)->type == GEN_IPADD;
	GENERAL_NAMES_free(names);
	return found;
}

static int check_peer(struct tp_conn *c, const char *peer_name,
		      bool ip_without_san, char *why, size_t why_len)
{
	X509 *peer = SSL_get1_peer_certificate(c->ssl);
	char *cn = c->peer.cn;
	size_t cn_len = sizeof(c->peer.cn);
	X509_NAME *subj;
	int rc = 0;

	if (!peer) {
		snprintf(why, why_len, "peer presented no certificate");
		return -EACCES;
	}
	subj = X509_get_subject_name(peer);
	cn[0] = '\0';
	if (X509_NAME_get_text_by_NID(subj, NID_commonName, cn, (int)cn_len) < 0)
		snprintf(cn, cn_len, "(no CN)");
	if (peer_name && *peer_name && is_ip_literal(peer_name)) {
		/* Named by an address: the certificate must list it. One
		 * that lists none (made before tls-init took NAME,IP) is
		 * refused unless the operator said the CA alone will do. */
		if (cert_has_ip(peer)) {
			if (X509_check_ip_asc(peer, peer_name, 0) != 1) {
				snprintf(why, why_len,
					 "peer certificate '%s' does not carry the address %s (make it with pvmig tls-init DIR %s,%s)",
					 cn, peer_name, cn, peer_name);
				rc = -EACCES;
			}
		} else if (!ip_without_san) {
			snprintf(why, why_len,
				 "peer certificate '%s' carries no IP address, so it cannot prove it is %s (make it with pvmig tls-init DIR %s,%s, name the host instead of its address, or set tls-allow-ip-without-san = yes)",
				 cn, peer_name, cn, peer_name);
			rc = -EACCES;
		} else {
			static atomic_bool warned;

			if (!atomic_exchange(&warned, true))
				pvm_warn("peer certificate '%s' carries no IP address: %s is checked against the CA only (make certificates with pvmig tls-init DIR NAME,IP to have addresses checked)",
					 cn, peer_name);
		}
	} else if (peer_name && *peer_name &&
		   X509_check_host(peer, peer_name, 0, 0, NULL) != 1) {
		snprintf(why, why_len,
			 "peer certificate is for '%s', expected '%s'", cn,
			 peer_name);
		rc = -EACCES;
	}
	X509_free(c->peer.cert);
	c->peer.cert = peer; /* ours now: pvm_peer_has_name() reads it */
	return rc;
}

bool pvm_peer_has_name(const struct pvm_peer *p, const char *name)
{
	if (!p->cert || !name || !*name)
		return false;
	if (!strcmp(p->cn, name))
		return true;
	/* DNS subjectAltNames only: the CN was compared above, exactly. */
	return X509_check_host(p->cert, name, 0,
			       X509_CHECK_FLAG_NO_WILDCARDS |
				       X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
			       NULL) == 1;
}

const char *pvm_peer_cn(const struct pvm_peer *p)
{
	return p->cn;
}

const char *pvm_peer_addr(const struct pvm_peer *p)
{
	return p->addr;
}

static int handshake_loop(struct tp_conn *c, bool server, const char *peer_name,
			  bool ip_without_san, unsigned timeout_ms, char *why,
			  size_t why_len);
static void sigpipe_block(sigset_t *old, bool *was_pending);
static void sigpipe_restore(const sigset_t *old, bool was_pending);

/* Runs SSL_connect/SSL_accept to completion within @timeout_ms. */
static int handshake(struct tp_conn *c, bool server, const char *peer_name,
		     bool ip_without_san, unsigned timeout_ms, char *why,
		     size_t why_len)
{
	sigset_t oldmask;
	bool pending = false;
	int rc;

	sigpipe_block(&oldmask, &pending);
	rc = handshake_loop(c, server, peer_name, ip_without_san, timeout_ms,
			    why, why_len);
	sigpipe_restore(&oldmask, pending);
	return rc;
}

static int handshake_loop(struct tp_conn *c, bool server, const char *peer_name,
			  bool ip_without_san, unsigned timeout_ms, char *why,
			  size_t why_len)
{
	uint64_t deadline = pvm_now_ms() + timeout_ms;
	int rc;

	for (;;) {
		int r, act;
		uint64_t now;

		ERR_clear_error();
		errno = 0;
		r = server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
		if (r == 1)
			break;
		act = ssl_failure(c->ssl, r, errno, why, why_len);
		if (act < 0) {
			long v = SSL_get_verify_result(c->ssl);

			if (v != X509_V_OK) {
				snprintf(why, why_len,
					 "peer certificate rejected: %s",
					 X509_verify_cert_error_string(v));
				return -EACCES;
			}
			if (act == -EPROTO) {
				char tmp[300];
				snprintf(tmp, sizeof(tmp), "%s", why);
				snprintf(why, why_len,
					 "TLS handshake failed (%s)%s", tmp,
					 server ? "; is the client speaking TLS 1.3 with a certificate?" : "");
			}
			return act == -EPROTO ? -EPROTO : act;
		}
		now = pvm_now_ms();
		if (now >= deadline) {
			snprintf(why, why_len, "TLS handshake timed out after %u ms",
				 timeout_ms);
			return -ETIMEDOUT;
		}
		rc = wait_fd(c->fd, act == 1 ? POLLIN : POLLOUT,
			     (unsigned)(deadline - now), NULL);
		if (rc == -ETIMEDOUT) {
			snprintf(why, why_len, "TLS handshake timed out after %u ms",
				 timeout_ms);
			return rc;
		}
		if (rc)
			return rc;
	}
	if (SSL_version(c->ssl) != TLS1_3_VERSION) {
		snprintf(why, why_len, "peer negotiated %s, only TLS 1.3 is allowed",
			 SSL_get_version(c->ssl));
		return -EPROTO;
	}
	return check_peer(c, peer_name, ip_without_san, why, why_len);
}

static int conn_start_ssl(struct tp_conn *c, struct pvm_tls_ctx *tls,
			  const char *sni, char *why, size_t why_len)
{
	c->ssl = SSL_new(tls->ssl_ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
		snprintf(why, why_len, "cannot set up a TLS session");
		return -ENOMEM;
	}
	if (sni && *sni && !isdigit((unsigned char)sni[0]))
		SSL_set_tlsext_host_name(c->ssl, sni);
	return 0;
}

int tp_conn_connect(struct tp_conn *c, struct pvm_tls_ctx *tls,
		    const char *host, uint16_t port, const char *peer_name,
		    unsigned timeout_ms, char *why, size_t why_len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	char portstr[8];
	int rc, err;
	socklen_t elen = sizeof(err);

	snprintf(portstr, sizeof(portstr), "%u", port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc) {
		snprintf(why, why_len, "cannot resolve '%s': %s", host,
			 gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	c->fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		rc = -errno;
		snprintf(why, why_len, "socket: %s", strerror(errno));
		goto out;
	}
	set_socket_opts(c->fd, timeout_ms);
	describe_addr(res->ai_addr, c->peer.addr, sizeof(c->peer.addr));
	if (connect(c->fd, res->ai_addr, res->ai_addrlen) < 0 &&
	    errno != EINPROGRESS) {
		rc = -errno;
		snprintf(why, why_len, "connect to %s: %s", c->peer.addr,
			 strerror(errno));
		goto out;
	}
	rc = wait_fd(c->fd, POLLOUT, timeout_ms, NULL);
	if (rc) {
		snprintf(why, why_len, "connect to %s timed out", c->peer.addr);
		goto out;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err) {
		rc = -err;
		snprintf(why, why_len, "connect to %s: %s", c->peer.addr,
			 strerror(err));
		goto out;
	}
	rc = conn_start_ssl(c, tls, peer_name ? peer_name : host, why, why_len);
	if (rc)
		goto out;
	rc = handshake(c, false, peer_name, tls->ip_without_san, timeout_ms,
		       why, why_len);
out:
	freeaddrinfo(res);
	return rc;
}

int tp_conn_accept(struct tp_conn *c, struct pvm_tls_ctx *tls, int fd,
		   const char *peer_name, unsigned timeout_ms, char *why,
		   size_t why_len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int rc;

	c->fd = fd;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		describe_addr((struct sockaddr *)&ss, c->peer.addr,
			      sizeof(c->peer.addr));
	set_socket_opts(fd, timeout_ms);
	rc = conn_start_ssl(c, tls, NULL, why, why_len);
	if (rc)
		return rc;
	return handshake(c, true, peer_name, tls->ip_without_san, timeout_ms,
			 why, why_len);
}

static int conn_io_loop(struct tp_conn *c, bool writing, uint8_t *p,
			size_t len, unsigned timeout_ms, atomic_bool *stop,
			char *why, size_t why_len);

/*
 * OpenSSL writes with write(2): to a reset connection that raises SIGPIPE,
 * which would kill a process that never asked for it. Block SIGPIPE in this
 * thread around every SSL call that may write (handshakes, writes, and
 * reads, which can send alerts), and consume one we caused before
 * unblocking.
 */
static void sigpipe_block(sigset_t *old, bool *was_pending)
{
	sigset_t pipe, pending;

	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	sigpending(&pending);
	*was_pending = sigismember(&pending, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, old);
}

static void sigpipe_restore(const sigset_t *old, bool was_pending)
{
	if (!was_pending) {
		sigset_t pipe, pending;
		struct timespec zero = { 0, 0 };

		sigemptyset(&pipe);
		sigaddset(&pipe, SIGPIPE);
		sigpending(&pending);
		if (sigismember(&pending, SIGPIPE))
			sigtimedwait(&pipe, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

static int conn_io(struct tp_conn *c, bool writing, void *buf, size_t len,
		   unsigned timeout_ms, atomic_bool *stop, char *why,
		   size_t why_len)
{
	uint8_t *p = buf;
	sigset_t oldmask;
	bool pipe_pending = false;
	int rc = 0;

	/* Reads too: SSL_read may write (an alert, a TLS 1.3 key update). */
	sigpipe_block(&oldmask, &pipe_pending);
	rc = conn_io_loop(c, writing, p, len, timeout_ms, stop, why, why_len);
	sigpipe_restore(&oldmask, pipe_pending);
	return rc;
}

static int conn_io_loop(struct tp_conn *c, bool writing, uint8_t *p,
			size_t len, unsigned timeout_ms, atomic_bool *stop,
			char *why, size_t why_len)
{

	while (len) {
		int r, act, saved, rc;

		if (stop && atomic_load(stop))
			return -ECANCELED;
		pthread_mutex_lock(&c->ssl_lock);
		ERR_clear_error();
		errno = 0;
		r = writing ? SSL_write(c->ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len))
			    : SSL_read(c->ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len));
		saved = errno;
		act = r > 0 ? 0 : ssl_failure(c->ssl, r, saved, why, why_len);
		pthread_mutex_unlock(&c->ssl_lock);
		if (r > 0) {
			p += r;
			len -= (size_t)r;
			continue;
		}
		if (act < 0)
			return act;
		rc = wait_fd(c->fd, act == 1 ? POLLIN : POLLOUT, timeout_ms,
			     stop);
		if (rc == -ETIMEDOUT) {
			snprintf(why, why_len,
				 writing ? "peer stopped reading: no progress for %u ms"
					 : "peer silent: nothing received for %u ms",
				 timeout_ms);
			return rc;
		}
		if (rc)
			return rc;
	}
	return 0;
}

int tp_conn_read(struct tp_conn *c, void *buf, size_t len,
		 unsigned timeout_ms, atomic_bool *stop, char *why,
		 size_t why_len)
{
	return conn_io(c, false, buf, len, timeout_ms, stop, why, why_len);
}

int tp_conn_write(struct tp_conn *c, const void *buf, size_t len,
		  unsigned timeout_ms, atomic_bool *stop, char *why,
		  size_t why_len)
{
	return conn_io(c, true, (void *)buf, len, timeout_ms, stop, why,
		       why_len);
}

/* ---- certificates ------------------------------------------------------ */

static EVP_PKEY *load_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (!f)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

static X509 *load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	if (!f)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

static int write_pem(const char *path, EVP_PKEY *key, X509 *cert)
{
	char tmp[4096];
	FILE *f;
	int fd, ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		  key ? 0600 : 0644);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return -errno;
	}
	ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
		 : PEM_write_X509(f, cert);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		ok = 0;
	fclose(f);
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return -EIO;
	}
	return 0;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -EINVAL;
}

static bool is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/*
 * Makes a certificate for @cn with @key, signed by (@ca, @ca_key) or self.
 * @ips: NULL, or a comma-separated list of IP addresses (checked by the
 * caller) that go into subjectAltName beside the DNS name.
 */
static X509 *make_cert(const char *cn, const char *ips, EVP_PKEY *key,
		       X509 *ca, EVP_PKEY *ca_key, bool is_ca,
		       int not_before_days, int days)
{
	X509 *x = X509_new();
	X509_NAME *name;
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	char san[1024];
	bool ok = false;

	if (!x)
		return NULL;
	X509_set_version(x, 2);
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		goto out;
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto out;
	X509_gmtime_adj(X509_getm_notBefore(x), (long)not_before_days * 86400);
	X509_gmtime_adj(X509_getm_notAfter(x),
			((long)not_before_days + days) * 86400);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
				   (const unsigned char *)"pvmig", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : name);
	if (is_ca) {
		if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") ||
		    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
		    add_ext(x, x, NID_subject_key_identifier, "hash"))
			goto out;
	} else {
		size_t o = (size_t)snprintf(san, sizeof(san), "DNS:%s", cn);

		for (const char *ip = ips; ip && *ip && o < sizeof(san);) {
			size_t n = strcspn(ip, ",");

			o += (size_t)snprintf(san + o, sizeof(san) - o, ",IP:%.*s",
					      (int)n, ip);
			ip += n + (ip[n] == ',');
		}
		if (o >= sizeof(san))
			goto out;
		if (add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") ||
		    add_ext(x, ca, NID_key_usage,
			    "critical,digitalSignature,keyEncipherment") ||
		    add_ext(x, ca, NID_ext_key_usage, "serverAuth,clientAuth") ||
		    add_ext(x, ca, NID_subject_alt_name, san) ||
		    add_ext(x, ca, NID_authority_key_identifier, "keyid"))
			goto out;
	}
	if (!X509_sign(x, ca_key ? ca_key : key, EVP_sha256()))
		goto out;
	ok = true;
out:
	BN_free(bn);
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

static bool valid_host_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

int pvm_tls_init_dir(const char *dir, const char *const *hosts, size_t nhosts,
		     int not_before_days, int days)
{
	char ca_pem[4096], ca_keyf[4096], pem[4096], keyf[4096];
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509 *ca = NULL, *cert = NULL;
	int rc = 0;

	if (days <= 0) {
		pvm_err("tls-init: validity must be at least one day");
		return -EINVAL;
	}
	for (size_t i = 0; i < nhosts; i++) {
		char name[80], ip[64];
		size_t n = strcspn(hosts[i], ",");
		const char *p;

		snprintf(name, sizeof(name), "%.*s", (int)(n < 79 ? n : 79), hosts[i]);
		if (n >= sizeof(name) || !valid_host_name(name) || strcmp(name, "ca") == 0) {
			pvm_err("tls-init: '%.*s' is not a usable host name (letters, digits, '.', '-', '_'; not 'ca')",
				(int)n, hosts[i]);
			return -EINVAL;
		}
		for (p = hosts[i] + n; *p == ',';) {
			size_t m = strcspn(p + 1, ",");

			snprintf(ip, sizeof(ip), "%.*s", (int)(m < 63 ? m : 63), p + 1);
			if (m >= sizeof(ip) || !is_ip_literal(ip)) {
				pvm_err("tls-init: '%.*s' (after %s) is not an IPv4 or IPv6 address",
					(int)m, p + 1, name);
				return -EINVAL;
			}
			p += 1 + m;
		}
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		pvm_err("tls-init: cannot create %s: %s", dir, strerror(errno));
		return rc;
	}
	snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
	snprintf(ca_keyf, sizeof(ca_keyf), "%s/ca.key", dir);

	ca = load_cert(ca_pem);
	ca_key = load_key(ca_keyf);
	if (!ca || !ca_key) {
		if (ca || ca_key || access(ca_pem, F_OK) == 0 ||
		    access(ca_keyf, F_OK) == 0) {
			pvm_err("tls-init: %s holds an unreadable or half CA (ca.pem/ca.key); remove both to make a new one",
				dir);
			rc = -EINVAL;
			goto out;
		}
		ca_key = EVP_EC_gen("P-256");
		ca = ca_key ? make_cert("pvmig CA", NULL, ca_key, NULL, NULL,
					true, 0, 3650) : NULL;
		if (!ca || (rc = write_pem(ca_keyf, ca_key, NULL)) ||
		    (rc = write_pem(ca_pem, NULL, ca))) {
			pvm_err("tls-init: cannot create the CA in %s", dir);
			rc = rc ? rc : -EIO;
			goto out;
		}
		pvm_info("tls-init: created CA %s", ca_pem);
	}
	for (size_t i = 0; i < nhosts; i++) {
		/* "NAME[,IP...]": checked above. */
		size_t n = strcspn(hosts[i], ",");
		char name[80];

		snprintf(name, sizeof(name), "%.*s", (int)n, hosts[i]);
		snprintf(pem, sizeof(pem), "%s/%s.pem", dir, name);
		snprintf(keyf, sizeof(keyf), "%s/%s.key", dir, name);
		key = EVP_EC_gen("P-256");
		cert = key ? make_cert(name, hosts[i][n] ? hosts[i] + n + 1 : NULL,
				       key, ca, ca_key, false, not_before_days,
				       days) : NULL;
		if (!cert || (rc = write_pem(keyf, key, NULL)) ||
		    (rc = write_pem(pem, NULL, cert))) {
			pvm_err("tls-init: cannot create the certificate for %s",
				name);
			rc = rc ? rc : -EIO;
			goto out;
		}
		pvm_info("tls-init: created %s (key %s)", pem, keyf);
		X509_free(cert);
		EVP_PKEY_free(key);
		cert = NULL;
		key = NULL;
	}
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return rc;
}

/* Writes @crl to @path via a temporary file, mode 0644. */
static int write_crl(const char *path, X509_CRL *crl)
{
	char tmp[4200];
	FILE *f;
	int fd, ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0644);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		return -errno;
	}
	ok = PEM_write_X509_CRL(f, crl);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		ok = 0;
	fclose(f);
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return -EIO;
	}
	return 0;
}

/* Is @serial already listed in @crl? */
static bool crl_lists(X509_CRL *crl, const ASN1_INTEGER *serial)
{
	STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);

	for (int i = 0; rev && i < sk_X509_REVOKED_num(rev); i++)
		if (!ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(
					      sk_X509_REVOKED_value(rev, i)),
				      serial))
			return true;
	return false;
}

int pvm_tls_revoke(const char *dir, const char *const *names, size_t n,
		   int days)
{
	char ca_pem[4096], ca_keyf[4096], crl_path[4096], pem[4096];
	X509 *ca = NULL, *cert = NULL;
	EVP_PKEY *ca_key = NULL;
	X509_CRL *crl = NULL;
	ASN1_TIME *now = NULL, *next = NULL;
	FILE *f;
	int rc = -EINVAL;

	snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
	snprintf(ca_keyf, sizeof(ca_keyf), "%s/ca.key", dir);
	snprintf(crl_path, sizeof(crl_path), "%s/crl.pem", dir);
	ca = load_cert(ca_pem);
	ca_key = load_key(ca_keyf);
	if (!ca || !ca_key) {
		pvm_err("tls-revoke: %s has no usable ca.pem and ca.key (the CA that signed the certificates)",
			dir);
		goto out;
	}
	f = fopen(crl_path, "r");
	if (f) {
		crl = PEM_read_X509_CRL(f, NULL, no_passphrase, NULL);
		fclose(f);
		if (!crl) {
			pvm_err("tls-revoke: %s is not a PEM CRL; move it away to start a new one",
				crl_path);
			goto out;
		}
	} else {
		crl = X509_CRL_new();
		if (!crl || !X509_CRL_set_version(crl, 1) ||
		    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)))
			goto out_ssl;
	}
	now = X509_gmtime_adj(NULL, 0);
	next = X509_gmtime_adj(NULL, (long)days * 86400);
	if (!now || !next)
		goto out_ssl;
	for (size_t i = 0; i < n; i++) {
		X509_REVOKED *r;

		snprintf(pem, sizeof(pem), "%s/%s.pem", dir, names[i]);
		cert = load_cert(pem);
		if (!cert) {
			pvm_err("tls-revoke: cannot read the certificate %s", pem);
			goto out;
		}
		if (X509_check_issued(ca, cert) != X509_V_OK) {
			pvm_err("tls-revoke: %s was not issued by %s", pem, ca_pem);
			goto out;
		}
		if (!crl_lists(crl, X509_get0_serialNumber(cert))) {
			r = X509_REVOKED_new();
			if (!r ||
			    !X509_REVOKED_set_serialNumber(r, (ASN1_INTEGER *)X509_get0_serialNumber(cert)) ||
			    !X509_REVOKED_set_revocationDate(r, now) ||
			    !X509_CRL_add0_revoked(crl, r)) {
				X509_REVOKED_free(r);
				goto out_ssl;
			}
		}
		pvm_info("tls-revoke: %s (%s) revoked", names[i], pem);
		X509_free(cert);
		cert = NULL;
	}
	if (!X509_CRL_set1_lastUpdate(crl, now) ||
	    !X509_CRL_set1_nextUpdate(crl, next) || !X509_CRL_sort(crl) ||
	    !X509_CRL_sign(crl, ca_key, EVP_sha256()))
		goto out_ssl;
	rc = write_crl(crl_path, crl);
	if (rc)
		pvm_err("tls-revoke: cannot write %s: %s", crl_path, strerror(-rc));
	else
		pvm_info("tls-revoke: wrote %s (tls-crl in pvmigd.conf)", crl_path);
	goto out;
out_ssl:
	{
		char e[256];

		tp_ssl_error(e, sizeof(e));
		pvm_err("tls-revoke: %s", e);
	}
	rc = -EIO;
out:
	ASN1_TIME_free(now);
	ASN1_TIME_free(next);
	X509_CRL_free(crl);
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return rc;
}
