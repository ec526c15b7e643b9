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

/*
 * Sends @req to pvmigd and prints the answer: JSON ({"items":[...],
 * "result":{...}}) with @json, else through @pr. Returns the exit status:
 * 0; 1 when pvmigd reported a failure (its message on stderr); 3 when
 * pvmigd could not be reached.
 */
int cli_call(const char *what, const struct pvm_kv *req, bool json,
	     const struct cli_printer *pr);

/* Parses --json and --help for simple commands: returns -1 to go on, or
 * the exit status (0 after --help, 2 for a bad option). */
int cli_parse_simple(int argc, char **argv, const char *usage_line,
		     const char *help, bool *json);

void cli_json_string(const char *v);
void cli_json_object(const struct pvm_kv *kv);

#endif /* PVM_CMD_CLI_H */
