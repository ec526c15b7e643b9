/*
 * pvmig save / restore / verify / checkpoint (docs/save-restore.md).
 *
 * save, restore and checkpoint ask the local pvmigd (the file is written
 * and read by pvmigd, so paths are made absolute here); verify runs in
 * this process and needs no pvmigd.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "cmd/cli.h"
#include "cmd/commands.h"

static bool progress_drawn;

/* --key-file PATH: its absolute path goes to pvmigd, never the key. */
static int add_key_file(struct pvm_kv *req, const char *cmd, const char *arg)
{
	char path[PATH_MAX];

	if (!realpath(arg, path)) {
		fprintf(stderr, "pvmig %s: key file %s: %s\n", cmd, arg,
			strerror(errno));
		return -1;
	}
	return pvm_kv_add(req, "key_file", "%s", path) ? -1 : 0;
}

/* "/abs/dir/name" for a path that may not exist yet. */
static int absolute(const char *in, char *out, size_t len)
{
	char cwd[PATH_MAX];

	if (in[0] == '/')
		return snprintf(out, len, "%s", in) < (int)len ? 0 : -1;
	if (!getcwd(cwd, sizeof(cwd)))
		return -1;
	return snprintf(out, len, "%s/%s", cwd, in) < (int)len ? 0 : -1;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

static double mib(const char *v)
{
	return v ? strtod(v, NULL) / 1048576.0 : 0.0;
}

/* A line on stderr, redrawn in place, when stderr is a terminal. */
static void draw_progress(const struct pvm_kv *kv)
{
	uint64_t done = 0, total = 0;
	const char *phase = pvm_kv_get(kv, "phase");

	if (!isatty(STDERR_FILENO) || !phase)
		return;
	pvm_kv_get_u64(kv, "done", &done);
	pvm_kv_get_u64(kv, "total", &total);
	if (!strcmp(phase, "restore"))
		fprintf(stderr, "\r\033[Krestoring: %llu pages, %.1f MiB read",
			(unsigned long long)done, mib(pvm_kv_get(kv, "bytes")));
	else
		fprintf(stderr, "\r\033[K%s round %s: %5.1f%% of %llu pages, "
			"%.1f MiB written", phase, pvm_kv_get(kv, "round"),
			total ? 100.0 * (double)done / (double)total : 100.0,
			(unsigned long long)total,
			mib(pvm_kv_get(kv, "bytes")));
	progress_drawn = true;
}

static void end_progress(void)
{
	if (progress_drawn)
		fputs("\n", stderr);
	progress_drawn = false;
}

static void print_rows(const struct pvm_kv *kv, const char *const rows[][2])
{
	for (size_t i = 0; rows[i][0]; i++) {
		const char *v = pvm_kv_get(kv, rows[i][0]);

		if (v)
			printf("  %-18s %s\n", rows[i][1], v);
	}
}

static void print_saved(const struct pvm_kv *kv)
{
	static const char *const rows[][2] = {
		{ "mode", "mode" },       { "format", "format" },
		{ "guest", "guest" },     { "pages", "pages written" },
		{ "stream_bytes", "stream bytes" }, { "rounds", "rounds" },
		{ "pause_ms", "paused (ms)" },  { "total_ms", "total (ms)" },
		{ "memory_gib_per_s", "memory GiB/s" },
		{ "memory_sha256", "memory sha256" }, { NULL, NULL },
	};

	end_progress();
	printf("saved %s to %s\n", pvm_kv_get(kv, "domain"),
	       pvm_kv_get(kv, "path"));
	print_rows(kv, rows);
}

static void print_restored(const struct pvm_kv *kv)
{
	static const char *const rows[][2] = {
		{ "state", "state" },  { "epoch", "epoch" },
		{ "files", "files read" }, { "pv_devices", "PV devices" },
		{ "pages", "pages" },
		{ "stream_bytes", "stream bytes" }, { "total_ms", "total (ms)" },
		{ "memory_sha256", "memory sha256" }, { NULL, NULL },
	};

	end_progress();
	printf("restored %s (domid %s) from %s\n", pvm_kv_get(kv, "name"),
	       pvm_kv_get(kv, "domid"), pvm_kv_get(kv, "path"));
	print_rows(kv, rows);
}

static int call_and_finish(const char *what, struct pvm_kv *req, bool json,
			   const struct cli_printer *pr)
{
	int rc = cli_call(what, req, json, pr);

	end_progress();
	pvm_kv_dispose(req);
	return rc;
}

int cmd_save(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "live", no_argument, NULL, 'l' },
		{ "checkpoint", no_argument, NULL, 'c' },
		{ "lz4", no_argument, NULL, 'z' },
		{ "raw", no_argument, NULL, 'r' },
		{ "verify-memory", no_argument, NULL, 'V' },
		{ "key-file", required_argument, NULL, 'k' },
		CLI_PV_OPTIONS,
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct cli_printer pr = { .result = print_saved,
					       .progress = draw_progress };
	struct pvm_kv req;
	char path[PATH_MAX];
	bool json = false, lz4 = false, raw = false;
	int c;

	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "save");
	while ((c = getopt_long(argc, argv, "lczrVk:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (add_key_file(&req, "save", optarg)) {
				pvm_kv_dispose(&req);
				return 2;
			}
			break;
		case 'l': pvm_kv_add(&req, "live", "1"); break;
		case 'c': pvm_kv_add(&req, "keep", "1"); break;
		case 'z': lz4 = true; break;
		case 'r': raw = true; break;
		case 'V': pvm_kv_add(&req, "digest", "1"); break;
		case 'j': json = true; break;
		case 'h':
			printf("usage: pvmig save DOMAIN FILE [--live] [--checkpoint|-c]\n"
			       "                  [--lz4|--raw] [--verify-memory] [--key-file KEY]\n"
			       "                  " CLI_PV_USAGE "\n"
			       "                  [--json]\n\n"
			       "Saves DOMAIN to FILE and destroys it (as xl save does).\n"
			       "  --live, -l        copy memory while the guest runs (log-dirty\n"
			       "                    rounds); pause only for the last round\n"
			       "  --checkpoint, -c  leave the guest running (xl save -c)\n"
			       "  --lz4 / --raw     an lz4 frame file (readable by lz4 -d) or a\n"
			       "                    plain stream; default: lz4 if FILE ends in .lz4\n"
			       "  --verify-memory   report a SHA-256 of all memory at the pause\n"
			       "  --key-file KEY    encrypt with AES-256-GCM; KEY holds 32 bytes or\n"
			       "                    64 hex digits (head -c 32 /dev/urandom > KEY)\n"
			       CLI_PV_HELP
			       "An existing FILE is replaced only once the new one is complete.\n");
			pvm_kv_dispose(&req);
			return 0;
		default:
			if (cli_pv_option(&req, "save", c, optarg) == 0)
				break;
			pvm_kv_dispose(&req);
			return 2;
		}
	}
	if (optind + 2 != argc) {
		fprintf(stderr, "pvmig save: give DOMAIN and FILE (see pvmig save --help)\n");
		pvm_kv_dispose(&req);
		return 2;
	}
	if (lz4 && raw) {
		fprintf(stderr, "pvmig save: --lz4 or --raw, not both\n");
		pvm_kv_dispose(&req);
		return 2;
	}
	if (absolute(argv[optind + 1], path, sizeof(path)) ||
	    pvm_kv_add(&req, "domain", "%s", argv[optind]) ||
	    pvm_kv_add(&req, "path", "%s", path)) {
		fprintf(stderr, "pvmig save: DOMAIN or FILE is too long\n");
		pvm_kv_dispose(&req);
		return 2;
	}
	if (lz4 || (!raw && ends_with(path, ".lz4")))
		pvm_kv_add(&req, "lz4", "1");
	return call_and_finish("save", &req, json, &pr);
}

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "paused", no_argument, NULL, 'p' },
		{ "verify-memory", no_argument, NULL, 'V' },
		{ "key-file", required_argument, NULL, 'k' },
		CLI_OPT_PV_MODE_ROW,
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct cli_printer pr = { .result = print_restored,
					       .progress = draw_progress };
	struct pvm_kv req;
	char path[PATH_MAX];
	bool json = false;
	int c;

	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "restore");
	while ((c = getopt_long(argc, argv, "pVk:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (add_key_file(&req, "restore", optarg)) {
				pvm_kv_dispose(&req);
				return 2;
			}
			break;
		case 'p': pvm_kv_add(&req, "paused", "1"); break;
		case 'V': pvm_kv_add(&req, "digest", "1"); break;
		case 'j': json = true; break;
		case 'h':
			printf("usage: pvmig restore FILE|DIR [-p|--paused] [--verify-memory]\n"
			       "                     [--pv-mode MODE] [--json]\n\n"
			       "Re-creates the guest saved in FILE (plain or .lz4), or the newest\n"
			       "committed epoch of a checkpoint DIR, and unpauses it once every\n"
			       "checksum has been verified. Same name (fails if the host has a\n"
			       "domain of that name), the saved domid if it is free.\n"
			       "  -p, --paused      leave it paused\n"
			       "  --verify-memory   report a SHA-256 of all memory before unpausing\n"
			       "  --key-file KEY    the key of an encrypted file\n"
			       "  --pv-mode MODE    force how every PV device reconnects: cooperative\n"
			       "                    or transparent; auto (default): as recorded\n");
			pvm_kv_dispose(&req);
			return 0;
		default:
			if (cli_pv_option(&req, "restore", c, optarg) == 0)
				break;
			pvm_kv_dispose(&req);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "pvmig restore: give one FILE or DIR\n");
		pvm_kv_dispose(&req);
		return 2;
	}
	if (absolute(argv[optind], path, sizeof(path)) ||
	    pvm_kv_add(&req, "path", "%s", path)) {
		fprintf(stderr, "pvmig restore: path too long\n");
		pvm_kv_dispose(&req);
		return 2;
	}
	if (access(path, R_OK)) {
		fprintf(stderr, "pvmig restore: cannot read %s: %s\n", path,
			strerror(errno));
		pvm_kv_dispose(&req);
		return 1;
	}
	return call_and_finish("restore", &req, json, &pr);
}

/* ---- verify (in this process) ------------------------------------------ */

static const char *csum_name(enum pvm_ckpt_csum_state s)
{
	return s == PVM_CKPT_CSUM_OK ? "ok" :
	       s == PVM_CKPT_CSUM_BAD ? "bad" : "absent";
}

static void verify_json(const char *path, const struct pvm_ckpt_image *im,
			int rc)
{
	const struct pvm_ckpt_info *i = &im->info;

	/* The document every --json prints: the record types are the items,
	 * the image the result (its status that of the check). */
	printf("{\"items\":[");
	for (uint32_t t = 0; t < i->nr_types; t++)
		printf("%s{\"type\":\"%s\",\"count\":%llu,\"bytes\":%llu}",
		       t ? "," : "", pvm_ckpt_record_name(i->by_type[t].type),
		       (unsigned long long)i->by_type[t].count,
		       (unsigned long long)i->by_type[t].bytes);
	printf("],\"result\":{\"status\":%d,\"path\":", rc < 0 ? -rc : rc);
	cli_json_string(path);
	printf(",\"sound\":%s,\"kind\":", rc ? "false" : "true");
	cli_json_string(im->kind[0] ? im->kind : "unknown");
	printf(",\"name\":");
	cli_json_string(im->name);
	printf(",\"image\":");
	cli_json_string(im->image);
	printf(",\"nr_pages\":%llu,\"vcpus\":%u,\"domid\":%u,\"epoch\":%u,"
	       "\"lz4\":%s,\"encrypted\":%s,\"files\":%u,\"file_bytes\":%llu,\"pages\":%llu,"
	       "\"records\":%llu,\"config_disks\":%u,\"config_nics\":%u,"
	       "\"devices\":%u,\"evtchns\":%u,\"grants\":%u,"
	       "\"checksum\":\"%s\"",
	       (unsigned long long)im->nr_pages, im->nr_vcpus, im->domid,
	       im->epoch, im->lz4 ? "true" : "false",
	       im->encrypted ? "true" : "false", im->files,
	       (unsigned long long)im->file_bytes, (unsigned long long)im->pages,
	       (unsigned long long)im->records, im->config_devices.nr_disks,
	       im->config_devices.nr_nics, im->devices, im->evtchns,
	       im->grants, csum_name(i->checksum));
	if (rc) {
		printf(",\"error\":");
		cli_json_string(im->err_msg[0] ? im->err_msg : strerror(-rc));
	}
	printf("}}\n");
}

static void verify_human(const char *path, const struct pvm_ckpt_image *im,
			 int rc)
{
	const struct pvm_ckpt_info *i = &im->info;

	printf("%s: %s\n", path, rc ? "NOT SOUND" : "sound");
	if (rc)
		printf("  error         %s\n", im->err_msg);
	if (rc && !im->has_config && !i->records && !im->encrypted)
		return; /* nothing recognisable: the error says it all */
	if (im->has_config) {
		printf("  holds         %s '%s' (saved as domid %u), %llu MiB, "
		       "%u vCPU%s, runs '%s'\n",
		       im->is_dir ? "checkpoints of" : !strcmp(im->kind, "delta") ?
			       "one epoch delta of" : "an image of",
		       im->name, im->domid,
		       (unsigned long long)(im->nr_pages >> 8), im->nr_vcpus,
		       im->nr_vcpus == 1 ? "" : "s",
		       im->image[0] ? im->image : "?");
	}
	if (im->has_config) {
		const struct pvm_ckpt_devices *d = &im->config_devices;

		printf("  pv devices    %s frontends", d->frontend_gen ? "legacy" : "modern");
		for (uint32_t k = 0; k < d->nr_disks; k++)
			printf(", disk %s (%s) %s", d->disks[k].vdev,
			       d->disks[k].readonly ? "ro" : "rw", d->disks[k].path);
		for (uint32_t k = 0; k < d->nr_nics; k++)
			printf(", nic %02x:%02x:%02x:%02x:%02x:%02x%s%s",
			       d->nics[k].mac[0], d->nics[k].mac[1], d->nics[k].mac[2],
			       d->nics[k].mac[3], d->nics[k].mac[4], d->nics[k].mac[5],
			       d->nics[k].bridge[0] ? " on " : "", d->nics[k].bridge);
		printf("%s (config only: re-created on restore)\n",
		       d->nr_disks + d->nr_nics ? "" : ", none");
	}
	if (im->is_dir)
		printf("  epochs        newest committed: %u (%u stream files)\n",
		       im->epoch, im->files);
	else if (!strcmp(im->kind, "delta"))
		printf("  epoch         %u (restore its directory, not this file)\n",
		       im->epoch);
	printf("  format        %s%s, %llu bytes on disk\n",
	       im->lz4 ? "lz4 frame" : "plain stream",
	       im->encrypted ? ", encrypted (AES-256-GCM)" : "",
	       (unsigned long long)im->file_bytes);
	printf("  stream        libxc v%u%s, %llu records, %llu pages with data\n",
	       i->libxc_version, i->libxl ? " in a libxl wrapper" : "",
	       (unsigned long long)im->records, (unsigned long long)im->pages);
	printf("  devices       %u PV device records, %u event channels, %u "
	       "grants\n", im->devices, im->evtchns, im->grants);
	printf("  checksum      %s\n", csum_name(i->checksum));
	printf("  records       ");
	for (uint32_t t = 0; t < i->nr_types; t++)
		printf("%s%s x%llu", t ? ", " : "",
		       pvm_ckpt_record_name(i->by_type[t].type),
		       (unsigned long long)i->by_type[t].count);
	printf("%s\n", im->is_dir && im->files > 1 ? " (newest epoch)" : "");
}

static void drop_log(void *ctx, enum pvm_log_level lvl, const char *line)
{
}

int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key-file", required_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pvm_ckpt_image *im;
	const char *key_file = NULL;
	bool json = false;
	int c, rc;

	while ((c = getopt_long(argc, argv, "k:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key_file = optarg; break;
		case 'j': json = true; break;
		case 'h':
			printf("usage: pvmig verify FILE|DIR [--key-file KEY] [--json]\n\n"
			       "Checks a save file or checkpoint directory without restoring it\n"
			       "(no pvmigd needed) and prints what it holds. Exit status 0: sound;\n"
			       "1: damaged, not a pvmig image, or encrypted and no (or the wrong)\n"
			       "key given (the error says which).\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "pvmig verify: give one FILE or DIR\n");
		return 2;
	}
	im = calloc(1, sizeof(*im));
	if (!im)
		return 1;
	pvm_log_set_sink(drop_log, NULL); /* the error is in the report */
	rc = pvm_ckpt_inspect_keyed(argv[optind], key_file, im);
	if (json)
		verify_json(argv[optind], im, rc);
	else
		verify_human(argv[optind], im, rc);
	free(im);
	return rc ? 1 : 0;
}

/* ---- checkpoint ------------------------------------------------------------ */

static bool cp_json;

static void print_epoch(const struct pvm_kv *kv)
{
	const char *phase = pvm_kv_get(kv, "phase");

	if (!phase || strcmp(phase, "epoch")) {
		draw_progress(kv); /* the base image */
		return;
	}
	end_progress();
	if (cp_json) {
		/* stdout carries the one JSON document; epochs are JSON
		 * lines on stderr, as progress is for every command. */
		fputc('{', stderr);
		for (size_t i = 0; i < kv->n; i++) {
			const char *v = kv->val[i];
			bool num = strspn(v, "0123456789.") == strlen(v) && *v;

			fprintf(stderr, "%s\"%s\":%s%s%s", i ? "," : "",
				kv->key[i], num ? "" : "\"", v, num ? "" : "\"");
		}
		fputs("}\n", stderr);
		return;
	}
	/* pages: not on Xen (libxenguest does not count them) */
	printf("epoch %s: paused %s ms, %s%s%.2f MiB, committed after %s ms\n",
	       pvm_kv_get(kv, "epoch"), pvm_kv_get(kv, "pause_ms"),
	       pvm_kv_get(kv, "pages") ? pvm_kv_get(kv, "pages") : "",
	       pvm_kv_get(kv, "pages") ? " pages, " : "",
	       mib(pvm_kv_get(kv, "bytes")), pvm_kv_get(kv, "commit_ms"));
	fflush(stdout);
}

static void print_cp_done(const struct pvm_kv *kv)
{
	printf("%s epochs committed to %s: pause max %s ms, mean %s ms, %.1f MiB\n",
	       pvm_kv_get(kv, "epochs"), pvm_kv_get(kv, "dir"),
	       pvm_kv_get(kv, "max_pause_ms"), pvm_kv_get(kv, "mean_pause_ms"),
	       mib(pvm_kv_get(kv, "bytes")));
}

int cmd_checkpoint(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "epochs", required_argument, NULL, 'e' },
		{ "duration-s", required_argument, NULL, 'd' },
		{ "rebase-every", required_argument, NULL, 'b' },
		{ "lz4", no_argument, NULL, 'z' },
		{ "verify-memory", no_argument, NULL, 'V' },
		{ "key-file", required_argument, NULL, 'k' },
		CLI_PV_OPTIONS,
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct cli_printer pr = { .result = print_cp_done,
					       .progress = print_epoch };
	struct pvm_kv req;
	char path[PATH_MAX];
	bool json = false, interval = false;
	int c;

	pvm_kv_init(&req);
	pvm_kv_add(&req, "cmd", "checkpoint");
	while ((c = getopt_long(argc, argv, "i:e:d:b:zVk:jh", opts, NULL)) != -1) {
		const char *key = NULL;
		char *end;

		switch (c) {
		case 'k':
			if (add_key_file(&req, "checkpoint", optarg)) {
				pvm_kv_dispose(&req);
				return 2;
			}
			break;
		case 'i': key = "interval_ms"; interval = true; break;
		case 'e': key = "epochs"; break;
		case 'd': key = "duration_s"; break;
		case 'b': key = "rebase_epochs"; break;
		case 'z': pvm_kv_add(&req, "lz4", "1"); break;
		case 'V': pvm_kv_add(&req, "digest", "1"); break;
		case 'j': json = true; break;
		case 'h':
			printf("usage: pvmig checkpoint DOMAIN DIR --interval-ms N\n"
			       "                        [--epochs N | --duration-s N] [--rebase-every N]\n"
			       "                        [--lz4] [--verify-memory] [--key-file KEY]\n"
			       "                        " CLI_PV_USAGE "\n"
			       "                        [--json]\n\n"
			       "Keeps DIR an up-to-date restorable image of the running DOMAIN:\n"
			       "a base image (a live save), then every N ms an epoch that pauses\n"
			       "the guest briefly, copies the pages dirtied since the last one and\n"
			       "commits atomically (a crash leaves the previous epoch restorable).\n"
			       "Prints each epoch's pause and size. Runs until --epochs or\n"
			       "--duration-s, or until interrupted. 'pvmig restore DIR' restores\n"
			       "the newest committed epoch. --rebase-every N: after N deltas, a\n"
			       "fresh base (a live save) replaces the chain, bounding the files a\n"
			       "restore reads; it is reported as an epoch 0.\n"
			       "  --verify-memory   each epoch also reports a SHA-256 of all guest\n"
			       "                    memory taken while paused\n"
			       CLI_PV_HELP);
			pvm_kv_dispose(&req);
			return 0;
		default:
			if (cli_pv_option(&req, "checkpoint", c, optarg) == 0)
				break;
			pvm_kv_dispose(&req);
			return 2;
		}
		if (key) {
			strtoull(optarg, &end, 10);
			if (!*optarg || *end) {
				fprintf(stderr, "pvmig checkpoint: a number, not '%s'\n",
					optarg);
				pvm_kv_dispose(&req);
				return 2;
			}
			pvm_kv_add(&req, key, "%s", optarg);
		}
	}
	if (optind + 2 != argc || !interval) {
		fprintf(stderr, "pvmig checkpoint: give DOMAIN, DIR and --interval-ms N\n");
		pvm_kv_dispose(&req);
		return 2;
	}
	if (pvm_kv_get(&req, "epochs") && pvm_kv_get(&req, "duration_s")) {
		fprintf(stderr, "pvmig checkpoint: --epochs or --duration-s, not both\n");
		pvm_kv_dispose(&req);
		return 2;
	}
	if (absolute(argv[optind + 1], path, sizeof(path)) ||
	    pvm_kv_add(&req, "domain", "%s", argv[optind]) ||
	    pvm_kv_add(&req, "dir", "%s", path)) {
		fprintf(stderr, "pvmig checkpoint: DOMAIN or DIR is too long\n");
		pvm_kv_dispose(&req);
		return 2;
	}
	cp_json = json;
	return call_and_finish("checkpoint", &req, json, &pr);
}
