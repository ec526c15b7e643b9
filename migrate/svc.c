/*
 * What every command handler stands on: the RESULT reply, finding the
 * domain a request names, the PV options, the size syntax, and the table
 * of domains' toolstack configs the service keeps. Handlers (service.c,
 * save.c, opts.c) sit above these; nothing here calls a handler.
 */
#include "migrate/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pvquiesce/pvquiesce.h"

/* ---- replies ----------------------------------------------------------- */

int reply_result(struct req *r, int status, const struct pvm_kv *extra,
			const char *fmt, ...)
{
	struct pvm_kv kv;
	char msg[1024] = "";
	va_list ap;
	int rc;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	pvm_kv_init(&kv);
	pvm_kv_add(&kv, "status", "%d", status < 0 ? -status : status);
	if (status)
		pvm_kv_add(&kv, "error", "%s", msg[0] ? msg : strerror(-status));
	else if (msg[0])
		pvm_kv_add(&kv, "message", "%s", msg);
	for (size_t i = 0; extra && i < extra->n; i++)
		pvm_kv_add(&kv, extra->key[i], "%s", extra->val[i]);
	rc = pvm_ctl_send(r->fd, PVM_CTL_RESULT, &kv);
	pvm_kv_dispose(&kv);
	return rc;
}

/* ---- helpers ------------------------------------------------------------- */

int parse_size(const char *s, uint64_t *bytes_out)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mult = 1ull << 10; end++; break;
	case 'm': case 'M': mult = 1ull << 20; end++; break;
	case 'g': case 'G': mult = 1ull << 30; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if ((*end == 'i' || *end == 'b' || *end == 'B') && mult > 1)
		end += (*end == 'i' && (end[1] == 'B' || end[1] == 'b')) ? 2 : 1;
	if (*end || v == 0 || v > (1ull << 46) / mult)
		return -EINVAL;
	*bytes_out = v * mult;
	return *bytes_out % PVM_PAGE_SIZE ? -EINVAL : 0;
}

static const char *state_name(const struct pvm_hv_dominfo *d)
{
	if (d->flags & PVM_HV_DOMINF_DYING)
		return "dying";
	if (d->flags & PVM_HV_DOMINF_SHUTDOWN)
		return d->shutdown_reason == PVM_HV_SHUTDOWN_CRASH ? "crashed"
								    : "shutdown";
	if (d->flags & PVM_HV_DOMINF_PAUSED)
		return "paused";
	return "running";
}

/* The optional @key= (1..REQ_PV_TIMEOUT_MAX_MS), set by the option @opt;
 * 0 when absent. */
static int req_timeout_ms(const struct pvm_kv *args, const char *key,
			  const char *opt, uint32_t *out, char *why,
			  size_t why_len)
{
	uint64_t v;

	*out = 0;
	if (!pvm_kv_get(args, key))
		return 0;
	if (pvm_kv_get_u64(args, key, &v) || v < 1 ||
	    v > REQ_PV_TIMEOUT_MAX_MS) {
		snprintf(why, why_len, "%s must be 1..%u (ms), not '%s'", opt,
			 REQ_PV_TIMEOUT_MAX_MS, pvm_kv_get(args, key));
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

int req_pv_opts_parse(const struct pvm_kv *args, struct req_pv_opts *o,
		      char *why, size_t why_len)
{
	const char *mode = pvm_kv_get(args, "pv_mode");

	o->mode = PVM_PVQ_MODE_AUTO;
	if (mode && pvm_pvq_mode_parse(mode, &o->mode)) {
		snprintf(why, why_len,
			 "--pv-mode is auto, cooperative or transparent, not '%s'",
			 mode);
		return -EINVAL;
	}
	if (req_timeout_ms(args, "suspend_timeout_ms", "--suspend-timeout",
			   &o->suspend_timeout_ms, why, why_len) ||
	    req_timeout_ms(args, "drain_timeout_ms", "--drain-timeout",
			   &o->drain_timeout_ms, why, why_len))
		return -EINVAL;
	return 0;
}

int req_pv_opts(struct req *r, struct req_pv_opts *o)
{
	char why[256];
	int rc = req_pv_opts_parse(r->args, o, why, sizeof(why));

	if (rc)
		reply_result(r, rc, NULL, "%s", why);
	return rc;
}

int svc_find_domain(struct pvm_service *s, const char *want,
		    struct pvm_hv_dominfo *out, char *why, size_t why_len)
{
	struct pvm_hv *hv = s->hv;
	struct pvm_hv_dominfo *all = NULL;
	size_t n = 0;
	int rc;

	if (!want || !*want) {
		snprintf(why, why_len, "which domain? give a name or a domid");
		return -EINVAL;
	}
	all = calloc(MIG_MAX_DOMAINS, sizeof(*all));
	if (!all) {
		snprintf(why, why_len, "%s", strerror(ENOMEM));
		return -ENOMEM;
	}
	rc = hv->ops->domain_list(hv, all, MIG_MAX_DOMAINS, &n);
	if (rc && rc != -ENOSPC) {
		snprintf(why, why_len, "cannot list domains: %s", strerror(-rc));
		goto out;
	}
	rc = -ESRCH;
	for (size_t i = 0; i < n && rc; i++) {
		char id[16];

		snprintf(id, sizeof(id), "%u", all[i].domid);
		if (!strcmp(all[i].name, want) || !strcmp(id, want)) {
			*out = all[i];
			rc = 0;
		}
	}
	if (rc)
		snprintf(why, why_len, "no domain '%s' on this host (see pvmig list)",
			 want);
out:
	free(all);
	return rc;
}

int find_domain(struct req *r, struct pvm_hv_dominfo *out)
{
	char why[512];
	int rc = svc_find_domain(r->svc, pvm_kv_get(r->args, "domain"), out,
				 why, sizeof(why));

	if (rc)
		reply_result(r, rc, NULL, "%s", why);
	return rc;
}

void add_dominfo(struct pvm_kv *kv, const struct pvm_hv_dominfo *d)
{
	pvm_kv_add(kv, "domid", "%u", d->domid);
	pvm_kv_add(kv, "name", "%s", d->name);
	pvm_kv_add(kv, "state", "%s", state_name(d));
	pvm_kv_add(kv, "memory_mib", "%llu",
		   (unsigned long long)(d->mem_pages * PVM_PAGE_SIZE >> 20));
	pvm_kv_add(kv, "vcpus", "%u", d->nr_vcpus);
	pvm_kv_add(kv, "logdirty", "%s",
		   d->flags & PVM_HV_DOMINF_LOGDIRTY ? "on" : "off");
}

static struct dom_config *config_slot(struct pvm_service *s, uint32_t domid,
				      bool create)
{
	struct dom_config *free_slot = NULL;

	for (size_t i = 0; i < PVM_ARRAY_SIZE(s->configs); i++) {
		if (s->configs[i].domid == domid)
			return &s->configs[i];
		if (!free_slot && !s->configs[i].domid)
			free_slot = &s->configs[i];
	}
	if (!create || !free_slot)
		return NULL;
	memset(free_slot, 0, sizeof(*free_slot));
	free_slot->domid = domid;
	return free_slot;
}

void svc_config_put(struct pvm_service *s, const struct dom_config *dc)
{
	struct dom_config *slot;

	pthread_mutex_lock(&s->lock);
	slot = config_slot(s, dc->domid, true);
	if (slot)
		*slot = *dc;
	else
		pvm_warn("more than %zu domains: the config of domain %u is not kept",
			 PVM_ARRAY_SIZE(s->configs), dc->domid);
	pthread_mutex_unlock(&s->lock);
}

int svc_config_get(struct pvm_service *s, uint32_t domid, struct dom_config *out)
{
	struct dom_config *slot;

	pthread_mutex_lock(&s->lock);
	slot = config_slot(s, domid, false);
	if (slot) {
		*out = *slot;
	} else {
		memset(out, 0, sizeof(*out));
		out->domid = domid;
	}
	pthread_mutex_unlock(&s->lock);
	return slot ? 0 : -ENOENT;
}

void svc_config_quiesced(struct pvm_service *s, uint32_t domid, bool quiesced)
{
	struct dom_config *slot;

	pthread_mutex_lock(&s->lock);
	slot = config_slot(s, domid, false);
	if (slot)
		slot->devices_quiesced = quiesced;
	pthread_mutex_unlock(&s->lock);
}

void svc_config_set(struct pvm_service *s, uint32_t domid, const char *image)
{
	struct dom_config *slot;

	pthread_mutex_lock(&s->lock);
	slot = config_slot(s, domid, true);
	if (slot)
		snprintf(slot->image, sizeof(slot->image), "%s", image ? image : "");
	pthread_mutex_unlock(&s->lock);
}

void svc_config_image(struct pvm_service *s, uint32_t domid, char *out,
		      size_t len)
{
	struct dom_config *slot;

	pthread_mutex_lock(&s->lock);
	slot = config_slot(s, domid, false);
	snprintf(out, len, "%s", slot ? slot->image : "");
	pthread_mutex_unlock(&s->lock);
}

void svc_config_drop(struct pvm_service *s, uint32_t domid)
{
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < PVM_ARRAY_SIZE(s->configs); i++)
		if (s->configs[i].domid == domid)
			memset(&s->configs[i], 0, sizeof(s->configs[i]));
	pthread_mutex_unlock(&s->lock);
}
