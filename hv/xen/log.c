/*
 * The xentoollog logger handed to libxenctrl, libxenforeignmemory and
 * libxl: their messages go to pvm_log, one level down (the backend logs
 * the failure itself, once, as an error; the library's line is the
 * detail behind it: "domain id recently used", a hotplug script's
 * complaint). Stateless, so one static instance serves every open.
 */
#include <stdio.h>
#include <string.h>

#include "hv/xen/internal.h"

enum pvm_log_level xen_log_level(xentoollog_level level)
{
	if (level >= XTL_ERROR)
		return PVM_LOG_WARN;
	if (level >= XTL_NOTICE)
		return PVM_LOG_INFO;
	return PVM_LOG_DEBUG;
}

__attribute__((format(printf, 5, 0))) static void
vmessage(xentoollog_logger *logger, xentoollog_level level, int errnoval,
	 const char *context, const char *format, va_list al)
{
	enum pvm_log_level lvl = xen_log_level(level);
	char msg[512];

	(void)logger;
	if (lvl > pvm_log_get_level())
		return;
	vsnprintf(msg, sizeof(msg), format, al);
	if (errnoval >= 0)
		pvm_log(lvl, "xen: %s%s%s: %s", context ? context : "",
			context ? ": " : "", msg, strerror(errnoval));
	else
		pvm_log(lvl, "xen: %s%s%s", context ? context : "",
			context ? ": " : "", msg);
}

static void destroy(xentoollog_logger *logger)
{
	(void)logger; /* static */
}

static xentoollog_logger logger = {
	.vmessage = vmessage,
	.progress = NULL,
	.destroy = destroy,
};

xentoollog_logger *xen_logger(void)
{
	return &logger;
}
