/*
 * The destination of a migration (job thread per accepted channel):
 *
 *   HELLO -> create the domain paused, map its memory -> ACCEPT ->
 *   pages (transport on_pages, written at their pfn) and ROUND messages ->
 *   STATE (vCPU, event channels, grants) -> READY -> UNPAUSE -> unpause ->
 *   RUNNING. Any failure or a lost channel before UNPAUSE destroys the
 *   destination copy; the outcome ("running"/"aborted") is kept by id.
 *
 * On Xen, HELLO is followed by libxenguest's stream (xen_stream.c).
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdatomic.h>
#include <unistd.h>

#include "hv/xen/xen.h"
#include "pvquiesce/pvquiesce.h"
#include "transport/transport.h"


#define RECONNECT_WAIT_MS 10000u
#define FIRST_IO_WAIT_MS 100u /* then "first_io_ms" is left out */

/* Transport receive threads: write each page at its pfn. */
int mig_dest_pages(void *ctx, const uint64_t *pfns,
		   const uint8_t *const *pages, size_t n)
{
	struct mig_dst *d = ctx;
	struct tunnel *t = atomic_load(&d->tun);

	if (t)
		return tunnel_pages(t, pfns, pages, n);
	if (d->xrx.stage)
		return pvm_xchunk_rx_pages(&d->xrx, pfns, pages, n);
	if (!d->mem)
		return -EPROTO;
	for (size_t i = 0; i < n; i++) {
		if (pfns[i] >= d->nr_pages)
			return -ERANGE;
		if (pages[i])
			memcpy(d->mem + pfns[i] * PVM_PAGE_SIZE, pages[i],
			       PVM_PAGE_SIZE);
		else
			memset(d->mem + pfns[i] * PVM_PAGE_SIZE, 0,
			       PVM_PAGE_SIZE);
	}
	atomic_fetch_add(&d->pages_in, n);
	return 0;
}

static int dest_create_on_main(void *arg)
{
	struct mig_dst *d = arg;
	struct pvm_hv *hv = d->svc->hv;
	struct pvm_hv_domain_config cfg = {
		/* Keep the domid where it is free here: a guest whose drivers
		 * never re-handshake keeps using paths and ACLs that name it
		 * (docs/designs/non-cooperative-migration.md). */
		.domid = d->src_domid && d->src_domid <= PVM_HV_DOMID_MAX ?
				 d->src_domid : PVM_HV_DOMID_ANY,
		.nr_pages = d->nr_pages,
		.nr_vcpus = (uint32_t)d->vcpus,
		.start_paused = true,
		.name = d->name,
	};
	int rc;

	dom_config_to_hv(&d->dc, &cfg);
	rc = hv->ops->domain_create(hv, &cfg, &d->domid);
	if (rc == -EEXIST && !d->keep_domid) {
		cfg.domid = PVM_HV_DOMID_ANY;
		rc = hv->ops->domain_create(hv, &cfg, &d->domid);
	}
	if (!rc) {
		d->dc.domid = d->domid;
		svc_config_put(d->svc, &d->dc);
	}
	return rc;
}

static bool name_taken(struct pvm_hv *hv, const char *name)
{
	struct pvm_hv_dominfo *all = calloc(1024, sizeof(*all));
	size_t n = 0;
	bool taken = false;

	if (!all)
		return true;
	hv->ops->domain_list(hv, all, 1024, &n);
	for (size_t i = 0; i < n; i++)
		taken |= !strcmp(all[i].name, name);
	free(all);
	return taken;
}

void *mig_dest_main(void *arg)
{
	struct mig_dst *d = arg;
	struct pvm_service *s = d->svc;
	struct pvm_hv *hv = s->hv;
	struct pvm_kv kv, reply;
	uint64_t *pfns = NULL;
	int *errs = NULL;
	char why[300] = "";
	bool running = false;
	uint64_t served0[PVM_PVQ_MAX_DEVICES] = { 0 }, t_unpause = 0;
	double first_io = 0;
	int type, rc;

	pvm_kv_init(&kv);
	pvm_kv_init(&reply);
	type = mig_recv_msg(d->ch, &kv, NULL, NULL);
	if (type == MIG_TUNNEL) {
		tunnel_serve(s, &d->ch, &kv, &d->tun);
		goto out;
	}
	if (type == MIG_QUERY) {
		const char *id = pvm_kv_get(&kv, "id");
		char state[16];

		mig_outcome_decide(s, id ? id : "", "aborted", state, sizeof(state));
		pvm_kv_add(&reply, "state", "%s", state);
		mig_send_kv(d->ch, MIG_OUTCOME, &reply);
		goto out;
	}
	if (type != MIG_HELLO) {
		snprintf(why, sizeof(why), "expected HELLO, got %s",
			 type < 0 ? strerror(-type) : "another message");
		goto out;
	}
	{
		const char *id = pvm_kv_get(&kv, "id");
		const char *name = pvm_kv_get(&kv, "name");
		const char *cwhy = NULL;

		if (!id || strlen(id) != 32 || !name || !*name ||
		    strlen(name) >= sizeof(d->name) ||
		    pvm_kv_get_u64(&kv, "nr_pages", &d->nr_pages) ||
		    pvm_kv_get_u64(&kv, "vcpus", &d->vcpus) ||
		    d->nr_pages == 0 || d->nr_pages > (1ull << 36) ||
		    d->vcpus == 0 || d->vcpus > 64) {
			snprintf(why, sizeof(why), "HELLO is malformed");
			mig_send_abort(d->ch, why);
			goto out;
		}
		snprintf(d->id, sizeof(d->id), "%s", id);
		snprintf(d->name, sizeof(d->name), "%s", name);
		if (dom_config_from_kv(&kv, &d->dc, &cwhy)) {
			snprintf(why, sizeof(why), "HELLO: %s", cwhy);
			mig_send_abort(d->ch, why);
			goto out;
		}
		{
			uint64_t v = 0;

			if (pvm_kv_get_u64(&kv, "domid", &v) == 0 && v <= PVM_HV_DOMID_MAX)
				d->src_domid = (uint32_t)v;
			d->keep_domid = d->src_domid && pvm_kv_get(&kv, "pv_mode") &&
					!strcmp(pvm_kv_get(&kv, "pv_mode"), "transparent");
		}
		d->ndev = mig_config_devices(&d->dc, d->devs);
		d->xen = pvm_kv_get(&kv, "xen") != NULL;
		if (d->xen)
			d->ndev = 0; /* the guest reconnects its own devices */
	}
	mig_outcome_set(s, d->id, "receiving");
	if (name_taken(hv, d->name)) {
		snprintf(why, sizeof(why),
			 "a domain named '%s' already exists on the destination",
			 d->name);
		mig_send_abort(d->ch, why);
		goto out;
	}
	if (d->xen != pvm_hv_is_xen(hv)) {
		snprintf(why, sizeof(why), "the source is %sa Xen host, this one %s",
			 d->xen ? "" : "not ", pvm_hv_is_xen(hv) ? "is" : "is not");
		mig_send_abort(d->ch, why);
		goto out;
	}
	if (d->xen) {
		rc = mig_dest_xen_receive(d, why, sizeof(why));
		if (rc == -ENOTCONN)
			goto out_lost_why;
		if (rc)
			goto out;
		goto handover;
	}
	rc = svc_on_main(s, dest_create_on_main, d);
	if (rc == -EEXIST && d->keep_domid) {
		/* Before anything is paused: the source's guest runs on. */
		snprintf(why, sizeof(why),
			 "its PV devices reconnect transparently, which needs its domid %u, and domid %u is taken on the destination",
			 d->src_domid, d->src_domid);
		mig_send_abort(d->ch, why);
		goto out;
	}
	if (rc) {
		snprintf(why, sizeof(why), "cannot create the domain: %s",
			 strerror(-rc));
		mig_send_abort(d->ch, why);
		goto out;
	}
	d->created = true;
	pfns = malloc(d->nr_pages * sizeof(*pfns));
	errs = calloc(d->nr_pages, sizeof(*errs));
	if (!pfns || !errs) {
		snprintf(why, sizeof(why), "out of memory");
		mig_send_abort(d->ch, why);
		goto out;
	}
	for (uint64_t i = 0; i < d->nr_pages; i++)
		pfns[i] = i;
	{
		void *mem;

		rc = hv->ops->map_pages(hv, d->domid, PVM_HV_MAP_WRITE, pfns,
					d->nr_pages, errs, &mem);
		if (rc) {
			snprintf(why, sizeof(why), "cannot map the new domain: %s",
				 strerror(-rc));
			mig_send_abort(d->ch, why);
			goto out;
		}
		d->mem = mem;
	}
	pvm_kv_dispose(&kv);
	pvm_kv_add(&kv, "domid", "%u", d->domid);
	rc = mig_send_kv(d->ch, MIG_ACCEPT, &kv);
	if (rc)
		goto out_lost;
	pvm_info("migration %.8s: receiving '%s' as domain %u (%llu pages)",
		 d->id, d->name, d->domid, (unsigned long long)d->nr_pages);

handover:
	for (;;) {
		void *raw = NULL;
		size_t raw_len = 0;

		type = mig_recv_msg(d->ch, &kv, &raw, &raw_len);
		if (type < 0)
			goto out_lost;
		if (type == MIG_ROUND) {
			/* The transport delivered every page of the round before
			 * this message: say so, so the source measures the
			 * round end to end and pauses with nothing in flight. */
			if (mig_send_kv(d->ch, MIG_ROUND_ACK, &kv))
				goto out_lost;
			continue;
		}
		if (type == MIG_ABORT) {
			snprintf(why, sizeof(why), "source aborted: %s",
				 pvm_kv_get(&kv, "error") ?: "no reason");
			goto out;
		}
		if (type == MIG_STATE) {
			rc = mig_state_apply(d, raw, raw_len, why, sizeof(why));
			free(raw);
			if (rc) {
				mig_send_abort(d->ch, why);
				goto out;
			}
			pvm_kv_dispose(&reply);
			if (d->verified)
				pvm_kv_add(&reply, "memory", "verified");
			if (mig_send_kv(d->ch, MIG_READY, &reply))
				goto out_lost;
			if (mig_fault_point("dst-die-after-ready"))
				_exit(9);
			continue;
		}
		if (type == MIG_UNPAUSE) {
			char st[16];

			mig_outcome_decide(s, d->id, "running", st, sizeof(st));
			if (strcmp(st, "running")) {
				/* The source asked (QUERY) first and was told
				 * "aborted": it has resumed its copy. */
				snprintf(why, sizeof(why), "UNPAUSE after the source was told '%s'", st);
				mig_send_abort(d->ch, why);
				goto out;
			}
			/* What each backend had served, for "first I/O
			 * completed" after the unpause. */
			pvm_pvq_served(hv, d->domid, d->devs, d->ndev, served0);
			t_unpause = pvm_now_ns();
			rc = hv->ops->domain_unpause(hv, d->domid);
			if (rc) {
				snprintf(why, sizeof(why), "cannot unpause: %s",
					 strerror(-rc));
				mig_outcome_set(s, d->id, "aborted");
				mig_send_abort(d->ch, why);
				goto out;
			}
			running = true;
			pvm_info("migration %.8s: domain %u '%s' runs here",
				 d->id, d->domid, d->name);
			{
				char dwhy[200] = "";

				/* Modern frontends re-handshake now; legacy
				 * ones were reconnected while paused. */
				pvm_kv_dispose(&reply);
				if (d->ndev) {
					uint64_t t0 = pvm_now_ns();

					rc = pvm_pvq_wait_connected(hv, d->domid, d->devs,
								    d->ndev,
								    RECONNECT_WAIT_MS,
								    dwhy, sizeof(dwhy));
					pvm_kv_add(&reply, "devices", "%s",
						   rc ? dwhy : "all reconnected");
					if (!rc)
						pvm_kv_add(&reply, "reconnect_ms", "%.2f",
							   (double)(pvm_now_ns() - t0) / 1e6);
					/* Bounded short: an idle guest does no I/O
					 * and has nothing to measure. */
					if (!rc && pvm_pvq_wait_first_io(hv, d->domid, d->devs,
									 d->ndev, served0, t_unpause,
									 FIRST_IO_WAIT_MS, &first_io) == 0)
						pvm_kv_add(&reply, "first_io_ms", "%.2f", first_io);
					if (rc)
						pvm_warn("migration %.8s: %s", d->id, dwhy);
				}
			}
			/* The guest ran from the unpause on: the source takes
			 * this off the pause it measured (downtime_ms). */
			pvm_kv_add(&reply, "running_for_ms", "%.2f",
				   (double)(pvm_now_ns() - t_unpause) / 1e6);
			mig_send_kv(d->ch, MIG_RUNNING, &reply);
			/* Wait for the clean close; an error now changes
			 * nothing: the guest is ours. */
			while (mig_recv_msg(d->ch, &kv, NULL, NULL) >= 0)
				;
			goto out;
		}
		snprintf(why, sizeof(why), "unexpected message '%c'", type);
		mig_send_abort(d->ch, why);
		goto out;
	}

out_lost:
	{
		const char *cwhy;

		pvm_channel_error(d->ch, &cwhy);
		snprintf(why, sizeof(why), "lost the source: %s",
			 cwhy && *cwhy ? cwhy : "channel closed");
	}
out_lost_why:
out:
	/* Join the receive threads first: they write into d->mem. */
	pvm_channel_close(d->ch);
	d->ch = NULL;
	pvm_xchunk_rx_dispose(&d->xrx);
	if (d->mem)
		hv->ops->unmap_pages(hv, d->mem, d->nr_pages);
	if (!running && d->created) {
		hv->ops->domain_destroy(hv, d->domid);
		svc_config_drop(s, d->domid);
		pvm_warn("migration %.8s: '%s' not received (%s); destination copy destroyed",
			 d->id, d->name, why);
	}
	if (!running && d->id[0])
		mig_outcome_set(s, d->id, "aborted");
	free(pfns);
	free(errs);
	pvm_kv_dispose(&kv);
	pvm_kv_dispose(&reply);
	pthread_mutex_lock(&s->lock);
	s->incoming--;
	pthread_mutex_unlock(&s->lock);
	free(d);
	return NULL;
}
