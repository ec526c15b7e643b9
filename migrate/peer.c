/*
 * The peer side of pvmigd: its TLS context and the listener thread that
 * accepts migration channels and starts a destination job for each.
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport.h"

#define ACCEPT_WAIT_MS 1000u
/* Channels beyond max-migrations: a QUERY settling a hand-over and the
 * tunnels get through while migrations fill max-migrations. */
#define CHANNEL_RESERVE 4u

static bool cert_has(void *ctx, const char *name)
{
	return pvm_peer_has_name(ctx, name);
}

unsigned mig_peer_rights(struct pvm_service *s, const struct pvm_peer *p)
{
	return pvm_service_config_rights(&s->cfg, cert_has, (void *)p);
}

/* The transport's authorize hook: a certificate of the CA that allow-peers
 * grants nothing is refused before anything it sends is read. */
static int authorize(void *ctx, const struct pvm_peer *p, char *why,
		     size_t len)
{
	struct pvm_service *s = ctx;

	if (mig_peer_rights(s, p))
		return 0;
	snprintf(why, len, "peer '%s' is not in allow-peers on this host",
		 pvm_peer_cn(p));
	return -EACCES;
}

bool mig_peer_may(struct mig_dst *d, unsigned right, const char *what)
{
	const struct pvm_peer *p = pvm_channel_peer_id(d->ch);
	unsigned r = mig_peer_rights(d->svc, p);
	char why[300], have[64];

	if (r & right) {
		pvm_info("peer '%s' (%s): %s accepted (right %s)",
			 pvm_peer_cn(p), pvm_peer_addr(p), what,
			 pvm_right_name(right));
		return true;
	}
	pvm_rights_format(r, have, sizeof(have));
	pvm_warn("peer '%s' (%s): %s refused: it lacks the right %s (allow-peers grants it %s)",
		 pvm_peer_cn(p), pvm_peer_addr(p), what, pvm_right_name(right),
		 have);
	snprintf(why, sizeof(why),
		 "this host does not allow peer '%s' to %s (it lacks the right '%s' in allow-peers)",
		 pvm_peer_cn(p), what, pvm_right_name(right));
	mig_dst_refuse(d, why);
	return false;
}

static void *listen_main(void *arg)
{
	struct pvm_service *s = arg;

	while (!svc_stopping(s)) {
		struct pvm_channel_opts o;
		struct mig_dst *d = calloc(1, sizeof(*d));
		int rc;

		if (!d)
			break;
		d->svc = s;
		pvm_channel_opts_defaults(&o);
		o.timeout_ms = s->cfg.timeout_ms;
		o.on_pages = mig_dest_pages;
		o.ctx = d;
		o.authorize = authorize;
		o.authorize_ctx = s;
		rc = pvm_transport_accept(s->listener, s->tls, &o,
					  ACCEPT_WAIT_MS, &d->ch);
		if (rc) {
			free(d);
			continue;
		}
		/* Migrations are counted at their HELLO (dest.c); this bounds
		 * the channels, with room for QUERY and tunnels. */
		pthread_mutex_lock(&s->lock);
		if (s->peer_channels >= s->cfg.max_migrations + CHANNEL_RESERVE) {
			pthread_mutex_unlock(&s->lock);
			mig_send_abort(d->ch, "too many peer channels open on the destination");
			pvm_channel_close(d->ch);
			free(d);
			continue;
		}
		s->peer_channels++;
		pthread_mutex_unlock(&s->lock);
		if (svc_job_start(s, mig_dest_main, d)) {
			pthread_mutex_lock(&s->lock);
			s->peer_channels--;
			pthread_mutex_unlock(&s->lock);
			pvm_channel_close(d->ch);
			free(d);
		}
	}
	return NULL;
}

int mig_load_tls(struct pvm_service *s)
{
	struct pvm_tls_files f = { s->cfg.tls_ca, s->cfg.tls_cert,
				   s->cfg.tls_key, s->cfg.tls_crl };
	int rc;

	if (s->tls)
		return 0;
	if (!s->cfg.tls_ca[0] || !s->cfg.tls_cert[0] || !s->cfg.tls_key[0]) {
		pvm_err("migration needs tls-ca, tls-cert and tls-key in pvmigd.conf (make them with pvmig tls-init)");
		return -EINVAL;
	}
	rc = pvm_tls_ctx_new(&f, &s->tls);
	if (!rc)
		pvm_tls_ctx_allow_ip_without_san(s->tls, s->cfg.tls_ip_without_san);
	return rc;
}

int mig_listener_start(struct pvm_service *s)
{
	int rc;

	if (!s->cfg.listen[0])
		return 0;
	if (!s->cfg.allow_peers_set) {
		/* pvmigd checks this first, naming the file and line. */
		pvm_err("listen = %s needs allow-peers (the peers that may send guests here)",
			s->cfg.listen);
		return -EINVAL;
	}
	rc = mig_load_tls(s);
	if (rc)
		return rc;
	rc = pvm_transport_listen(s->cfg.listen, s->cfg.port, &s->listener);
	if (rc)
		return rc;
	pvm_listener_set_limits(s->listener, s->cfg.max_unauth,
				s->cfg.max_unauth_per_addr, s->cfg.handshake_ms);
	if (pthread_create(&s->listen_thread, NULL, listen_main, s)) {
		pvm_listener_close(s->listener);
		s->listener = NULL;
		return -EAGAIN;
	}
	s->listen_started = true;
	pvm_info("accepting migrations on %s:%u", s->cfg.listen,
		 pvm_listener_port(s->listener));
	return 0;
}

void mig_listener_stop(struct pvm_service *s)
{
	if (s->listen_started) {
		pthread_join(s->listen_thread, NULL);
		s->listen_started = false;
	}
	pvm_listener_close(s->listener);
	s->listener = NULL;
	pvm_tls_ctx_free(s->tls);
	s->tls = NULL;
}
