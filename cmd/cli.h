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

/*
 * The PV device options. save, checkpoint and migrate take all three
 * (CLI_PV_OPTIONS in their getopt_long table, CLI_PV_USAGE and
 * CLI_PV_HELP in their --help); restore takes --pv-mode only.
 *   --suspend-timeout MS  suspend_timeout_ms (1..60000)
 *   --drain-timeout MS    drain_timeout_ms (1..60000)
 *   --pv-mode MODE        pv_mode (auto|cooperative|transparent)
 */
enum {
	CLI_OPT_SUSPEND_TIMEOUT = 0x100,
	CLI_OPT_DRAIN_TIMEOUT,
	CLI_OPT_PV_MODE,
};
#define CLI_OPT_PV_MODE_ROW { "pv-mode", required_argument, NULL, CLI_OPT_PV_MODE }
#define CLI_PV_OPTIONS                                                          \
	{ "suspend-timeout", required_argument, NULL, CLI_OPT_SUSPEND_TIMEOUT }, \
	{ "drain-timeout", required_argument, NULL, CLI_OPT_DRAIN_TIMEOUT },     \
	CLI_OPT_PV_MODE_ROW
#define CLI_PV_USAGE "[--suspend-timeout MS] [--drain-timeout MS] [--pv-mode MODE]"
#define CLI_PV_HELP                                                             \
	"  --suspend-timeout MS\n"                                               \
	"                    how long a guest that advertises suspend has to\n"   \
	"                    answer the suspend request before each pause\n"      \
	"                    (1..60000, default 1000)\n"                          \
	"  --drain-timeout MS\n"                                                 \
	"                    how long, the guest paused, each PV backend has to\n" \
	"                    finish the requests it holds (1..60000, default\n"   \
	"                    2000); one that does not (a stuck disk) fails the\n" \
	"                    command, naming it, and the guest runs on\n"         \
	"  --pv-mode auto|cooperative|transparent\n"                             \
	"                    how each PV device reconnects where the guest\n"     \
	"                    resumes: its frontend re-handshakes, or its backend\n" \
	"                    re-attaches to the old ring (same domid needed);\n"  \
	"                    auto (default): from what the guest advertises\n"
/* If getopt_long's @c is one of the PV options, checks @arg and adds it
 * to @req: 0, or -1 with a message on stderr naming @cmd. 1: @c is not a
 * PV option (the caller's own default case). */
int cli_pv_option(struct pvm_kv *req, const char *cmd, int c, const char *arg);

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
