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
		rc = pvm_transport_accept(s->listener, s->tls, &o,
					  ACCEPT_WAIT_MS, &d->ch);
		if (rc) {
			free(d);
			continue;
		}
		pthread_mutex_lock(&s->lock);
		if (s->incoming >= s->cfg.max_migrations) {
			pthread_mutex_unlock(&s->lock);
			mig_send_abort(d->ch, "too many migrations running on the destination");
			pvm_channel_close(d->ch);
			free(d);
			continue;
		}
		s->incoming++;
		pthread_mutex_unlock(&s->lock);
		if (svc_job_start(s, mig_dest_main, d)) {
			pthread_mutex_lock(&s->lock);
			s->incoming--;
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
				   s->cfg.tls_key };

	if (s->tls)
		return 0;
	if (!s->cfg.tls_ca[0] || !s->cfg.tls_cert[0] || !s->cfg.tls_key[0]) {
		pvm_err("migration needs tls-ca, tls-cert and tls-key in pvmigd.conf (make them with pvmig tls-init)");
		return -EINVAL;
	}
	return pvm_tls_ctx_new(&f, &s->tls);
}

int mig_listener_start(struct pvm_service *s)
{
	int rc;

	if (!s->cfg.listen[0])
		return 0;
	rc = mig_load_tls(s);
	if (rc)
		return rc;
	rc = pvm_transport_listen(s->cfg.listen, s->cfg.port, &s->listener);
	if (rc)
		return rc;
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
