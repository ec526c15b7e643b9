/*
 * Logging: one process-wide sink behind a mutex, so lines from the
 * transport's worker threads never interleave.
 */
#include "common/common.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum pvm_log_level log_level = PVM_LOG_INFO;
static pvm_log_sink_fn log_sink;
static void *log_ctx;
static const char *log_prog = "pvmig";
static bool log_syslog;

static const char *const level_names[] = {
	[PVM_LOG_ERR] = "error",
	[PVM_LOG_WARN] = "warning",
	[PVM_LOG_INFO] = "info",
	[PVM_LOG_DEBUG] = "debug",
};

void pvm_log_set_level(enum pvm_log_level lvl)
{
	pthread_mutex_lock(&log_lock);
	log_level = lvl;
	pthread_mutex_unlock(&log_lock);
}

enum pvm_log_level pvm_log_get_level(void)
{
	return log_level;
}

void pvm_log_set_sink(pvm_log_sink_fn fn, void *ctx)
{
	pthread_mutex_lock(&log_lock);
	log_sink = fn;
	log_ctx = ctx;
	pthread_mutex_unlock(&log_lock);
}

void pvm_log_set_prog(const char *prog)
{
	log_prog = prog;
}

void pvm_log_use_syslog(const char *ident)
{
	openlog(ident, LOG_PID, LOG_DAEMON);
	log_syslog = true;
}

void pvm_vlog(enum pvm_log_level lvl, const char *fmt, va_list ap)
{
	char line[1024];

	if (lvl > log_level)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);

	pthread_mutex_lock(&log_lock);
	if (log_sink) {
		log_sink(log_ctx, lvl, line);
	} else if (log_syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO,
					    LOG_DEBUG };
		syslog(prio[lvl], "%s", line);
	} else {
		fprintf(stderr, "%s: %s: %s\n", log_prog, level_names[lvl],
			line);
	}
	pthread_mutex_unlock(&log_lock);
}

void pvm_log(enum pvm_log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pvm_vlog(lvl, fmt, ap);
	va_end(ap);
}
