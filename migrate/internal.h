/*
 * Shared between the files of migrate/ only: the service's state and the
 * helpers every command handler uses.
 */
#ifndef PVM_MIGRATE_INTERNAL_H
#define PVM_MIGRATE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>

#include "hv/hv.h"
#include "migrate/migrate.h"

struct pvm_xenstored;

struct pvm_service {
	struct pvm_service_config cfg;
	struct pvm_hv *hv;          /* the backend; owned */
	struct pvm_xenstored *xs;   /* sim only: its xenstore server; owned */
	pthread_t xs_thread;
	bool xs_started;
	int lock_fd;                /* flock on STATE_DIR/pvmigd.lock */
	int ctl_fd;                 /* listening control socket */
	int stop_pipe[2];           /* pvm_service_stop() writes here */
	char ctl_path[300];
};

/*
 * One control request being answered: the handler reads @args (borrowed
 * for the call), may send ITEM and PROGRESS records on @fd, and must send
 * exactly one RESULT (reply_result) before it returns.
 */
struct req {
	struct pvm_service *svc;
	int fd;
	const struct pvm_kv *args;
};

/* Sends the RESULT: @status 0, or a negative errno with a message naming
 * what was wrong and what to do. @extra fields (may be NULL) follow. */
int reply_result(struct req *r, int status, const struct pvm_kv *extra,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Finds the domain named by args "domain" (a name or a domid). On failure
 * the RESULT has been sent and a negative errno is returned. */
int find_domain(struct req *r, struct pvm_hv_dominfo *out);

/* Adds the fields `pvmig list/status` show for a domain. */
void add_dominfo(struct pvm_kv *kv, const struct pvm_hv_dominfo *d);

/* "256M", "1G", "65536K", or bytes (whole pages): 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *bytes_out);

#endif /* PVM_MIGRATE_INTERNAL_H */
