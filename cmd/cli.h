/*
 * cmd/ — shared by the pvmig subcommands (cmd/pvmig*.c): how to reach the
 * local pvmigd and how to print its answers.
 */
#ifndef PVM_CMD_CLI_H
#define PVM_CMD_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "migrate/migrate.h"

/* -H DIR|SOCKET from the command line, or NULL ($PVMIG_HOST, default). */
extern const char *cli_host;

/* The control socket path the options name. */
void cli_control_path(char *buf, size_t len);

/* What a command does with the records of its answer (human output);
 * either slot may be NULL. */
struct cli_printer {
	void (*item)(const struct pvm_kv *kv, size_t index);
	void (*result)(const struct pvm_kv *kv);
	/* PROGRESS records (also with --json: progress goes to stderr). */
	void (*progress)(const struct pvm_kv *kv);
};

/* What cli_exchange() does with the records before the RESULT; either
 * slot may be NULL. The kv is borrowed for the call. */
struct cli_handlers {
	void (*item)(void *ctx, const struct pvm_kv *kv, size_t index);
	void (*progress)(void *ctx, const struct pvm_kv *kv);
	void *ctx;
};

/*
 * One request/answer with the pvmigd whose control socket is @path: ITEM
 * and PROGRESS records go to @h, the RESULT record replaces @result
 * (initialised by the caller, who disposes it). Returns 0 when a RESULT
 * arrived (see cli_result_ok()), or a negative errno when pvmigd could not
 * be reached or went away (said on stderr, naming @what).
 */
int cli_exchange(const char *path, const char *what, const struct pvm_kv *req,
		 const struct cli_handlers *h, struct pvm_kv *result);
/* A RESULT's "status" is 0. */
bool cli_result_ok(const struct pvm_kv *result);

/*
 * Sends @req to the pvmigd the options name (cli_control_path()) and
 * prints the answer: JSON ({"items":[...], "result":{...}}) with @json,
 * else through @pr. Returns the exit status: 0; 1 when pvmigd reported a
 * failure (its message on stderr); 3 when pvmigd could not be reached.
 */
int cli_call(const char *what, const struct pvm_kv *req, bool json,
	     const struct cli_printer *pr);

/*
 * Turns a --workload SPEC (comma-separated; "dirty=R" MiB/s and "ws=W" MiB
 * become the guest program's page form) into what the service takes.
 * 0, or -EINVAL for a bad or too long spec.
 */
int cli_workload_spec(const char *in, char *out, size_t len);

/* Parses --json and --help for simple commands: returns -1 to go on, or
 * the exit status (0 after --help, 2 for a bad option). */
int cli_parse_simple(int argc, char **argv, const char *usage_line,
		     const char *help, bool *json);

/* --suspend-timeout MS (save, checkpoint, migrate): checks 1..60000 and
 * adds suspend_timeout_ms to @req; -1 with a message on stderr. */
int add_suspend_timeout(struct pvm_kv *req, const char *cmd, const char *arg);
/* --pv-mode auto|cooperative|transparent (save, restore, checkpoint,
 * migrate): adds pv_mode to @req; -1 with a message on stderr. */
int add_pv_mode(struct pvm_kv *req, const char *cmd, const char *arg);

/* JSON output (docs/pvmig.1.md, "JSON output"): a string; a kv's fields
 * ("key":value,... — decimal integers as numbers, the rest as strings),
 * bare or as an object; a whole {"items":[...],"result":{...}} document
 * with its newline, for commands that answer without pvmigd. */
void cli_json_string(const char *v);
void cli_json_fields(const struct pvm_kv *kv);
void cli_json_object(const struct pvm_kv *kv);
void cli_json_doc(const struct pvm_kv *items, size_t n,
		  const struct pvm_kv *result);

#endif /* PVM_CMD_CLI_H */
