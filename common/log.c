/*
 * Logging: one process-wide sink behind a mutex, so lines from the
 * transport's worker threads never interleave. On stderr, each line is
 * written with one fprintf (one write(2) for stderr, which is unbuffered
 * unless the line is longer than stdio's buffer), in one of the formats of
 * enum pvm_log_format.
 */
#include "common/common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum pvm_log_level log_level = PVM_LOG_INFO;
static pvm_log_sink_fn log_sink;
static void *log_ctx;
static const char *log_prog = "pvmig";
static bool log_syslog;
static enum pvm_log_format log_format = PVM_LOG_PLAIN;

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

void pvm_log_set_format(enum pvm_log_format fmt)
{
	pthread_mutex_lock(&log_lock);
	log_format = fmt;
	pthread_mutex_unlock(&log_lock);
}

enum pvm_log_format pvm_log_use_daemon_format(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	enum pvm_log_format fmt = PVM_LOG_STAMPED;
	unsigned long long dev, ino;
	struct stat st;
	char end;

	/* systemd sets it for the stream it connected; a shell redirect of
	 * the same process's stderr to a file must still get time stamps. */
	if (js && sscanf(js, "%llu:%llu%c", &dev, &ino, &end) == 2 &&
	    fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino)
		fmt = PVM_LOG_JOURNAL;
	pvm_log_set_format(fmt);
	return fmt;
}

/* "2026-12-08T01:02:03.456Z" */
static void utc_stamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void pvm_vlog(enum pvm_log_level lvl, const char *fmt, va_list ap)
{
	/* sd-daemon(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
	static const char journal_prio[] = { '3', '4', '6', '7' };
	char line[1024], stamp[40];

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
	} else if (log_format == PVM_LOG_JOURNAL) {
		fprintf(stderr, "<%c>%s: %s\n", journal_prio[lvl],
			level_names[lvl], line);
	} else if (log_format == PVM_LOG_STAMPED) {
		utc_stamp(stamp, sizeof(stamp));
		fprintf(stderr, "%s %s: %s: %s\n", stamp, log_prog,
			level_names[lvl], line);
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
