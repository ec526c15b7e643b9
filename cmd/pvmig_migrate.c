/*
 * pvmig migrate DOMAIN HOST[:PORT]: asks the local pvmigd to move a guest
 * to the pvmigd on HOST; draws progress on a terminal, prints the
 * statistics table (or JSON).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/commands.h"

static bool progress_drawn;

void migrate_draw_progress(const struct pvm_kv *kv)
{
	uint64_t sent = 0, total = 1, dirty = 0, pred = 0, thr = 0;
	const char *rate = pvm_kv_get(kv, "mib_per_s");
	const char *round = pvm_kv_get(kv, "round");

	if (!isatty(STDERR_FILENO))
		return;
	pvm_kv_get_u64(kv, "pages_sent", &sent);
	pvm_kv_get_u64(kv, "nr_pages", &total);
	pvm_kv_get_u64(kv, "dirty_pages", &dirty);
	pvm_kv_get_u64(kv, "predicted_downtime_ms", &pred);
	pvm_kv_get_u64(kv, "throttle_pct", &thr);
	fprintf(stderr,
		"\r\033[Kround %s: sent %5.1f%% of memory at %s MiB/s, %llu pages dirty, predicted downtime %llu ms",
		round ? round : "?", total ? 100.0 * (double)sent / (double)total : 0.0,
		rate ? rate : "?", (unsigned long long)dirty,
		(unsigned long long)pred);
	if (thr)
		fprintf(stderr, ", vCPUs throttled %llu%%", (unsigned long long)thr);
	progress_drawn = true;
}

void migrate_print_stats(const struct pvm_kv *kv)
{
	static const struct {
		const char *key, *label, *unit;
	} rows[] = {
		{ "result", "result", "" },
		{ "destination", "destination", "" },
		{ "total_ms", "total time", "ms" },
		{ "downtime_ms", "downtime", "ms" },
		{ "phase_detail", "total: of which", "" },
		{ "pause_detail", "downtime: of which", "" },
		{ "io_downtime_ms", "PV I/O downtime", "ms (until PV I/O served again)" },
		{ "rounds", "pre-copy rounds", "" },
		{ "round_detail", "per round", "" },
		{ "throttle_max_pct", "vCPU throttle (max)", "%" },
		{ "final_pages", "stop-and-copy pages", "" },
		{ "pages_sent", "pages sent", "" },
		{ "zero_pages", "zero pages (no data)", "" },
		{ "unpopulated_pages", "never populated (skipped)", "" },
		{ "wire_bytes", "bytes on the wire", "" },
		{ "compression_ratio", "compression ratio", "" },
		{ "throughput_mib_s", "throughput", "MiB/s" },
		{ "dirty_rate_pages_s", "last dirty rate", "pages/s" },
		{ "converged", "converged", "" },
		{ "stop_reason", "stopped because", "" },
		{ "streams", "streams", "" },
		{ "devices_quiesced", "PV devices quiesced", "" },
		{ "quiesce_ms", "quiesce (drain) time", "ms" },
		{ "devices", "PV devices", "" },
		{ "reconnect_ms", "devices reconnected in", "ms (after unpause)" },
		{ "memory", "memory", "" },
		{ "memory_sha256", "memory sha256", "" },
	};

	if (progress_drawn)
		fputs("\n", stderr);
	printf("migrated %s\n", pvm_kv_get(kv, "domain") ?: "");
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const char *v = pvm_kv_get(kv, rows[i].key);

		if (v)
			printf("  %-22s %s%s%s\n", rows[i].label, v,
			       rows[i].unit[0] ? " " : "", rows[i].unit);
	}
}

int cmd_migrate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "live", no_argument, NULL, 'l' },
		{ "cold", no_argument, NULL, 'c' },
		{ "downtime-ms", required_argument, NULL, 'd' },
		{ "max-rounds", required_argument, NULL, 'r' },
		{ "max-time-s", required_argument, NULL, 't' },
		{ "streams", required_argument, NULL, 's' },
		{ "no-compress", no_argument, NULL, 'n' },
		{ "verify-memory", no_argument, NULL, 'V' },
		{ "no-converge", required_argument, NULL, 'C' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ "cancel", no_argument, NULL, 'X' },
		{ "no-quiesce", no_argument, NULL, 'Q' },
		CLI_PV_OPTIONS,
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct cli_printer pr = { .result = migrate_print_stats,
					       .progress = migrate_draw_progress };
	struct pvm_kv req;
	bool json = false, cancel = false;
	int c, rc = 0;

	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "migrate");
	while ((c = getopt_long(argc, argv, "lcd:r:t:s:nVC:b:XQjh", opts, NULL)) != -1) {
		const char *num_key = NULL;

		switch (c) {
		case 'l': break;
		case 'c': rc = pvm_kv_add(&req, "cold", "1"); break;
		case 'd': num_key = "downtime_ms"; break;
		case 'r': num_key = "max_rounds"; break;
		case 't': num_key = "max_time_s"; break;
		case 's': num_key = "streams"; break;
		case 'b': num_key = "bandwidth_mib"; break;
		case 'n': rc = pvm_kv_add(&req, "no_compress", "1"); break;
		case 'V': rc = pvm_kv_add(&req, "verify", "1"); break;
		case 'C':
			if (strcmp(optarg, "throttle") && strcmp(optarg, "stop") &&
			    strcmp(optarg, "continue")) {
				fprintf(stderr, "pvmig migrate: --no-converge is 'throttle', 'stop' or 'continue'\n");
				pvm_kv_dispose(&req);
				return 2;
			}
			rc = pvm_kv_add(&req, "no_converge", "%s", optarg);
			break;
		case 'j': json = true; break;
		case 'X': cancel = true; break;
		case 'Q': rc = pvm_kv_add(&req, "no_quiesce", "1"); break;
		case 'h':
			printf("usage: pvmig migrate DOMAIN HOST[:PORT] [--live|--cold]\n"
			       "                    [--downtime-ms N] [--max-rounds N] [--max-time-s N]\n"
			       "                    [--streams N] [--bandwidth MiB/s] [--no-compress]\n"
			       "                    [--verify-memory] [--no-quiesce]\n"
			       "                    " CLI_PV_USAGE "\n"
			       "                    [--no-converge throttle|stop|continue] [--json]\n\n"
			       "Moves DOMAIN to the pvmigd on HOST (port 8002 by default) over TLS 1.3.\n"
			       "  --live            copy memory while the guest runs (default)\n"
			       "  --cold            pause first, copy once\n"
			       "  --downtime-ms N   target pause (default 30): pre-copy stops when the\n"
			       "                    predicted pause is below it\n"
			       "  --max-rounds N    pre-copy rounds at most (default 30)\n"
			       "  --max-time-s N    pre-copy time at most (default none)\n"
			       "  --streams N       parallel TLS connections (default from pvmigd.conf)\n"
			       "  --bandwidth N     at most N MiB/s on the wire (after compression)\n"
			       "  --no-compress     no lz4 (zero pages are still elided)\n"
			       "  --no-quiesce      do not drain and reconnect PV devices (for tests: a\n"
			       "                    legacy guest loses its disk and network)\n"
			       CLI_PV_HELP
			       "  --verify-memory   while paused, SHA-256 all guest memory on both\n"
			       "                    hosts; a mismatch aborts (the guest stays here)\n"
			       "  --no-converge throttle|stop|continue\n"
			       "                    when the guest dirties memory faster than the link\n"
			       "                    carries: slow its vCPUs down step by step, 20%% to\n"
			       "                    99%% (throttle, default; lifted after the migration),\n"
			       "                    copy the rest paused once 3 rounds made no progress\n"
			       "                    (stop), or keep going until --max-rounds /\n"
			       "                    --max-time-s (continue)\n"
			       "Ctrl-C before the pause cancels: the guest keeps running here.\n"
			       "       pvmig migrate --cancel DOMAIN\n"
			       "cancels DOMAIN's running migration from another terminal (the same).\n");
			pvm_kv_dispose(&req);
			return 0;
		default:
			if (cli_pv_option(&req, "migrate", c, optarg) == 0)
				break;
			pvm_kv_dispose(&req);
			return 2;
		}
		if (num_key) {
			char *end;

			strtoul(optarg, &end, 10);
			if (!*optarg || *end) {
				fprintf(stderr, "pvmig migrate: --%s wants a number, not '%s'\n",
					c == 'd' ? "downtime-ms" : c == 'r' ? "max-rounds" :
					c == 't' ? "max-time-s" : c == 'b' ? "bandwidth" : "streams",
					optarg);
				pvm_kv_dispose(&req);
				return 2;
			}
			rc = pvm_kv_add(&req, num_key, "%s", optarg);
		}
		if (rc) {
			pvm_kv_dispose(&req);
			return 2;
		}
	}
	if (cancel) {
		if (argc - optind != 1) {
			fprintf(stderr, "usage: pvmig migrate --cancel DOMAIN\n");
			pvm_kv_dispose(&req);
			return 2;
		}
		pvm_kv_dispose(&req);
		pvm_kv_add(&req, "cmd", "migrate_cancel");
		pvm_kv_add(&req, "domain", "%s", argv[optind]);
		rc = cli_call("migrate --cancel", &req, json, NULL);
		if (rc == 0 && !json)
			printf("cancel requested for %s\n", argv[optind]);
		pvm_kv_dispose(&req);
		return rc;
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: pvmig migrate DOMAIN HOST[:PORT] (see pvmig migrate --help)\n");
		pvm_kv_dispose(&req);
		return 2;
	}
	if (pvm_kv_add(&req, "domain", "%s", argv[optind]) ||
	    pvm_kv_add(&req, "target", "%s", argv[optind + 1])) {
		pvm_kv_dispose(&req);
		return 2;
	}
	rc = cli_call("migrate", &req, json, &pr);
	if (rc && progress_drawn)
		fputs("\n", stderr);
	pvm_kv_dispose(&req);
	return rc;
}

static void print_mig_row(const struct pvm_kv *kv, size_t index)
{
	if (index == 0)
		printf("%-10s %-16s %-22s %-7s %10s %10s %6s\n", "ID", "Domain",
		       "Destination", "Result", "Total(ms)", "Down(ms)", "Rounds");
	printf("%-10.8s %-16s %-22s %-7s %10s %10s %6s\n",
	       pvm_kv_get(kv, "id") ?: "", pvm_kv_get(kv, "domain") ?: "",
	       pvm_kv_get(kv, "destination") ?: "", pvm_kv_get(kv, "result") ?: "",
	       pvm_kv_get(kv, "total_ms") ?: "-", pvm_kv_get(kv, "downtime_ms") ?: "-",
	       pvm_kv_get(kv, "rounds") ?: "-");
}

int cmd_migrations(int argc, char **argv)
{
	static const struct cli_printer pr = { .item = print_mig_row };
	struct pvm_kv req;
	bool json = false;
	int rc = cli_parse_simple(argc, argv, "migrations [--json]",
				  "Lists the statistics of this host's recent outgoing migrations.",
				  &json);

	if (rc >= 0)
		return rc;
	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "migrations");
	rc = cli_call("migrations", &req, json, &pr);
	pvm_kv_dispose(&req);
	return rc;
}
