/*
 * `pvmig migrate` on the source's pvmigd: its options (mig_opts_parse, one
 * function for all of them), the checks on the domain, and the start of
 * the source job (h_migrate); `pvmig migrate --cancel` (h_migrate_cancel).
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "hv/xen/xen.h"
#include "transport/transport.h"

int mig_opts_parse(const struct pvm_kv *args, struct mig_opts *o, char *why,
		   size_t why_len)
{
	const char *target = pvm_kv_get(args, "target");
	const char *nc = pvm_kv_get(args, "no_converge");
	struct req_pv_opts pv;
	uint64_t v;
	int rc = -EINVAL;

	memset(o, 0, sizeof(*o));
	if (!target || mig_parse_target(target, o->host, sizeof(o->host), &o->port)) {
		snprintf(why, why_len, "bad destination '%s': say HOST or HOST:PORT",
			 target ? target : "");
		goto out;
	}
	o->live = !pvm_kv_get(args, "cold");
	o->compress = !pvm_kv_get(args, "no_compress");
	o->verify = pvm_kv_get(args, "verify") != NULL;
	o->no_quiesce = pvm_kv_get(args, "no_quiesce") != NULL;
	if (req_pv_opts_parse(args, &pv, why, why_len))
		goto out;
	o->pv_mode = pv.mode;
	o->suspend_timeout_ms = pv.suspend_timeout_ms;
	o->drain_timeout_ms = pv.drain_timeout_ms;
	if (pvm_kv_get_u64(args, "streams", &v) == 0) {
		if (v < 1 || v > PVM_TP_STREAMS_MAX) {
			snprintf(why, why_len, "--streams must be 1..%u",
				 PVM_TP_STREAMS_MAX);
			goto out;
		}
		o->streams = (unsigned)v;
	}
	o->policy.downtime_ms = 30;
	o->policy.max_rounds = 30;
	o->policy.max_time_ms = 0;
	o->policy.no_converge = PVM_NOCONV_THROTTLE;
	if (pvm_kv_get_u64(args, "downtime_ms", &v) == 0)
		o->policy.downtime_ms = v;
	if (pvm_kv_get_u64(args, "max_rounds", &v) == 0) {
		if (v < 1 || v > 1000) {
			snprintf(why, why_len, "--max-rounds must be 1..1000");
			goto out;
		}
		o->policy.max_rounds = (uint32_t)v;
	}
	if (pvm_kv_get_u64(args, "max_time_s", &v) == 0) {
		if (v == 0 || v > 1000000) {
			snprintf(why, why_len, "--max-time-s must be 1..1000000");
			goto out;
		}
		o->policy.max_time_ms = v * 1000;
	}
	if (pvm_kv_get_u64(args, "bandwidth_mib", &v) == 0) {
		if (v == 0 || v > 1000000) {
			snprintf(why, why_len, "--bandwidth is in MiB/s, 1..1000000");
			goto out;
		}
		o->bw_bytes_s = v << 20;
	}
	if (nc && !strcmp(nc, "continue")) {
		o->policy.no_converge = PVM_NOCONV_KEEP_GOING;
	} else if (nc && !strcmp(nc, "stop")) {
		o->policy.no_converge = PVM_NOCONV_STOP;
	} else if (nc && strcmp(nc, "throttle")) {
		snprintf(why, why_len, "--no-converge is 'throttle', 'stop' or 'continue'");
		goto out;
	}
	rc = 0;
out:
	return rc;
}

/* What the backend and the domain allow: 0, or an errno with @why. */
static int src_check(struct pvm_service *s, struct mig_src *m, char *why,
		     size_t why_len)
{
	/* x86 PV on Xen: libxenguest's stream (page tables canonicalised),
	 * not pvmig's page copy (docs/xen.md). */
	m->xen = pvm_hv_is_xen(s->hv);
	if (!m->o.suspend_timeout_ms)
		/* The guest's own suspend, through the toolstack on Xen: a
		 * nested or loaded host needs far longer than a sim guest. */
		m->o.suspend_timeout_ms = m->xen ? PVM_HV_XEN_SUSPEND_MS :
						   PVM_PVQ_SUSPEND_TIMEOUT_MS;
	if (m->xen && (m->o.verify || m->o.no_quiesce)) {
		snprintf(why, why_len, "'%s' stays here: --verify-memory and --no-quiesce are not available on the Xen backend (libxenguest moves the memory)",
			 m->dom.name);
		return -EOPNOTSUPP;
	}
	if (m->dom.flags & (PVM_HV_DOMINF_DYING | PVM_HV_DOMINF_SHUTDOWN)) {
		snprintf(why, why_len, "'%s' is not running", m->dom.name);
		return -EINVAL;
	}
	if (m->dom.flags & PVM_HV_DOMINF_LOGDIRTY) {
		snprintf(why, why_len, "'%s' is already being migrated or saved",
			 m->dom.name);
		return -EBUSY;
	}
	return 0;
}

/* Adds @m to the service's outgoing migrations, or says why not. */
static int src_register(struct pvm_service *s, struct mig_src *m, char *why,
			size_t why_len)
{
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	for (struct mig_src *o = s->sources; o && !rc; o = o->next) {
		if (o->dom.domid == m->dom.domid) {
			snprintf(why, why_len, "'%s' is already being migrated (to %s:%u)",
				 m->dom.name, o->o.host, o->o.port);
			rc = -EBUSY;
		}
	}
	if (!rc && s->outgoing >= s->cfg.max_migrations) {
		snprintf(why, why_len, "%u migrations are already running (max-migrations)",
			 s->cfg.max_migrations);
		rc = -EBUSY;
	}
	if (!rc) {
		s->outgoing++;
		m->next = s->sources;
		s->sources = m;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static void src_unregister(struct pvm_service *s, struct mig_src *m)
{
	pthread_mutex_lock(&s->lock);
	s->outgoing--;
	for (struct mig_src **pp = &s->sources; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	pthread_mutex_unlock(&s->lock);
}

int h_migrate(struct req *r)
{
	struct pvm_service *s = r->svc;
	struct mig_src *m = calloc(1, sizeof(*m));
	char why[512] = "";
	uint8_t idb[16];
	bool registered = false;
	int rc = -ENOMEM;

	if (!m)
		goto out;
	m->svc = s;
	atomic_init(&m->state, MIG_SRC_CONNECTING);
	pvm_kv_init(&m->stats);
	pvm_buf_init(&m->devstate, 64 * 1024);
	rc = svc_find_domain(s, pvm_kv_get(r->args, "domain"), &m->dom, why,
			     sizeof(why));
	if (!rc)
		rc = mig_opts_parse(r->args, &m->o, why, sizeof(why));
	if (rc)
		goto out;
	if (!m->o.streams)
		m->o.streams = s->cfg.streams;
	svc_config_get(s, m->dom.domid, &m->dc);
	m->ndev = mig_config_devices(&m->dc, m->devs);
	rc = src_check(s, m, why, sizeof(why));
	if (rc)
		goto out;
	if (RAND_bytes(idb, sizeof(idb)) != 1) {
		snprintf(why, sizeof(why), "no randomness for an id");
		rc = -EIO;
		goto out;
	}
	for (int i = 0; i < 16; i++)
		snprintf(m->id + 2 * i, 3, "%02x", idb[i]);
	rc = src_register(s, m, why, sizeof(why));
	if (rc)
		goto out;
	registered = true;
	m->fd = r->fd;
	rc = svc_job_start(s, mig_source_main, m);
	if (rc)
		snprintf(why, sizeof(why), "cannot start the migration");
	else
		rc = REQ_DETACHED; /* the job owns @m and the fd now */
out:
	if (rc == REQ_DETACHED)
		return rc;
	if (registered)
		src_unregister(s, m);
	if (m) {
		pvm_buf_dispose(&m->devstate);
		pvm_kv_dispose(&m->stats);
		free(m);
	}
	return reply_result(r, rc, NULL, "%s", why);
}

int h_migrate_cancel(struct req *r)
{
	struct pvm_service *s = r->svc;
	const char *want = pvm_kv_get(r->args, "domain");
	unsigned n = 0;

	if (!want)
		return reply_result(r, -EINVAL, NULL, "which domain's migration?");
	pthread_mutex_lock(&s->lock);
	for (struct mig_src *m = s->sources; m; m = m->next) {
		char id[16];

		snprintf(id, sizeof(id), "%u", m->dom.domid);
		if (!strcmp(m->dom.name, want) || !strcmp(id, want)) {
			atomic_store(&m->cancel, true);
			n++;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (!n)
		return reply_result(r, -ENOENT, NULL,
				    "no migration of '%s' is running on this host", want);
	pvm_info("migration of '%s': cancel requested", want);
	return reply_result(r, 0, NULL,
			    "cancel requested: the migration stops before its pause and the guest keeps running here");
}
