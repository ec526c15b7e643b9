/*
 * pvm_ckpt_save() / pvm_ckpt_restore() on the Xen backend (checkpoint/xen.c)
 * against the fake Xen host: the file is what xl save writes (xl header
 * with the JSON flag and libxl's config, libxl header, LIBXC_CONTEXT, the
 * libxc stream libxenguest wrote, libxl END), plain, lz4 and sealed; the
 * restore hands exactly the libxl stream to libxl; failures leave the
 * guest running and no file behind.
 */
#include "xentest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxl.h>
#include <xenguest.h>

#include "checkpoint/checkpoint.h"

static struct fx_dom *running_pv(uint32_t domid, const char *name)
{
	struct fx_dom *d = fx_add_dom(domid, 64, 1, false);

	d->pause_count = 0;
	d->honours_suspend = true;
	snprintf(d->name, sizeof(d->name), "%s", name);
	return d;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	assert_non_null(b);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void test_save_file_is_xls(void **state)
{
	struct pvm_hv *hv = *state;
	char dir[] = "/tmp/pvm-xck-XXXXXX", path[64];
	struct pvm_ckpt_save_cfg cfg = { .hv = hv, .domid = 4,
					 .flags = PVM_CKPT_SAVE_KEEP };
	struct pvm_ckpt_save_stats st;
	struct pvm_ckpt_restore_cfg rcfg = { .hv = hv };
	struct pvm_ckpt_restore_stats rst;
	struct pvm_ckpt_xlhdr x;
	const uint8_t *cfgtext;
	uint32_t cfglen;
	struct fx_dom *d = running_pv(4, "web");
	size_t len, off;
	uint8_t *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/web.pvm", dir);
	cfg.path = path;
	assert_int_equal(pvm_ckpt_save(&cfg, &st), 0);
	assert_false(d->shutdown); /* -c: resumed */
	assert_int_equal(st.bytes, FX_SAVE_BYTES);

	f = slurp(path, &len);
	assert_int_equal(pvm_ckpt_xlhdr_decode(f, len, &x, NULL, 0), 0);
	assert_int_equal(x.mandatory, PVM_CKPT_XL_MANDATORY_JSON |
					      PVM_CKPT_XL_MANDATORY_STREAMV2);
	assert_int_equal(pvm_ckpt_xlhdr_config(f + 48, x.optlen, &cfgtext,
					       &cfglen, NULL, 0), 0);
	assert_memory_equal(cfgtext, "{\"c_info\":{\"name\":\"web\"}", 24);
	off = 48 + x.optlen;
	assert_int_equal(off % 8, 0);
	assert_memory_equal(f + off, "LibxlFmt\0\0\0\2\0\0\0\0\1\0\0\0\0\0\0\0",
			    24);
	assert_memory_equal(f + off + 24, "FXSAVE 4", 8);
	assert_int_equal(len, off + 24 + FX_SAVE_BYTES + 8);
	for (size_t i = len - 8; i < len; i++)
		assert_int_equal(f[i], 0);
	free(f);

	/* Restore: libxl gets the libxl stream, exactly. */
	rcfg.path = path;
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_int_not_equal(rst.domid, 4);
	assert_string_equal(rst.name, "web");
	assert_int_equal(fx.restored_len, 24 + FX_SAVE_BYTES + 8);
	assert_memory_equal(fx.restored, "LibxlFmt", 8);

	/* Cold save: the guest is gone once the file is in place. */
	assert_int_equal(unlink(path), 0);
	cfg.flags = 0;
	assert_int_equal(pvm_ckpt_save(&cfg, &st), 0);
	assert_null(fx_dom(4));
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);
	rmdir(dir);
}

static void test_lz4_and_sealed(void **state)
{
	struct pvm_hv *hv = *state;
	char dir[] = "/tmp/pvm-xck-XXXXXX", path[64], key[64];
	struct pvm_ckpt_save_cfg cfg = { .hv = hv, .domid = 4,
					 .flags = PVM_CKPT_SAVE_KEEP |
						  PVM_CKPT_SAVE_LZ4 |
						  PVM_CKPT_SAVE_LIVE };
	struct pvm_ckpt_restore_cfg rcfg = { .hv = hv };
	struct pvm_ckpt_restore_stats rst;
	struct pvm_ckpt_save_stats st;
	int fd;

	running_pv(4, "web");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/web.pvm.lz4", dir);
	snprintf(key, sizeof(key), "%s/key", dir);
	fd = open(key, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(fd, "0123456789abcdef0123456789abcdef", 32), 32);
	close(fd);
	cfg.path = path;
	cfg.key_file = key;
	fx.save_dirty[0] = 10; /* converges at once */
	assert_int_equal(pvm_ckpt_save(&cfg, &st), 0);
	assert_int_equal(fx.save_flags, XCFLAGS_LIVE);
	assert_true(st.rounds >= 1);
	rcfg.path = path;
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), -ENOKEY);
	rcfg.key_file = key;
	rcfg.paused = true;
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_int_equal(fx_dom(rst.domid)->pause_count, 1);
	assert_int_equal(fx.restored_len, 24 + FX_SAVE_BYTES + 8);
	assert_memory_equal(fx.restored + 24, "FXSAVE 4", 8);
	unlink(path);
	unlink(key);
	rmdir(dir);
}

static void test_failures(void **state)
{
	struct pvm_hv *hv = *state;
	char dir[] = "/tmp/pvm-xck-XXXXXX", path[64];
	struct pvm_ckpt_save_cfg cfg = { .hv = hv, .domid = 4 };
	struct pvm_ckpt_restore_cfg rcfg = { .hv = hv };
	struct pvm_ckpt_restore_stats rst;
	struct pvm_ckpt_save_stats st;
	struct fx_dom *d = running_pv(4, "web");
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/web.pvm", dir);
	cfg.path = path;
	/* libxenguest fails after the suspend: resumed, no file. */
	fx_fail("xc_domain_save", 1, EIO);
	assert_int_equal(pvm_ckpt_save(&cfg, &st), -EIO);
	assert_non_null(strstr(st.err_msg, "libxenguest"));
	assert_false(d->shutdown);
	assert_int_equal(access(path, F_OK), -1);
	/* The guest does not suspend: it runs on. */
	d->honours_suspend = false;
	fx_fail("xs_write", 1, EACCES);
	assert_int_not_equal(pvm_ckpt_save(&cfg, &st), 0);
	assert_non_null(fx_dom(4));
	assert_false(d->shutdown);
	/* ... and with --suspend-timeout 200 the wait is that bound, not
	 * Xen's default 60 s: about 20 polls of 10 ms, the request taken
	 * back (counted, not timed). */
	{
		unsigned int polls = fx_calls("xc_domain_getinfolist");

		cfg.suspend_timeout_ms = 200;
		assert_int_equal(pvm_ckpt_save(&cfg, &st), -ETIMEDOUT);
		polls = fx_calls("xc_domain_getinfolist") - polls;
		assert_true(polls >= 20 && polls < 100);
		assert_string_equal(d->control_shutdown, "");
		assert_false(d->shutdown);
		cfg.suspend_timeout_ms = 0;
	}
	d->honours_suspend = true;
	/* No libxl config; a digest (not available on Xen). */
	fx_fail("libxl_retrieve_domain_configuration", 1, EINVAL);
	assert_int_equal(pvm_ckpt_save(&cfg, &st), -EINVAL);
	cfg.flags = PVM_CKPT_SAVE_DIGEST;
	assert_int_equal(pvm_ckpt_save(&cfg, &st), -EOPNOTSUPP);
	assert_int_equal(access(path, F_OK), -1);

	/* An old xl file (xl.cfg text, no JSON flag): refused, naming xl. */
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	{
		uint8_t pre[PVM_CKPT_XL_PREFIX_SIZE];
		uint32_t optlen;
		static const char text[] = "name = \"web\"\n";
		uint8_t zero[8] = { 0 };

		pvm_ckpt_xlhdr_encode(pre, 0, sizeof(text) - 1, &optlen);
		assert_int_equal(write(fd, pre, sizeof(pre)), sizeof(pre));
		assert_int_equal(write(fd, text, sizeof(text) - 1),
				 sizeof(text) - 1);
		assert_int_equal(write(fd, zero, optlen - 4 - (sizeof(text) - 1)),
				 optlen - 4 - (sizeof(text) - 1));
	}
	close(fd);
	rcfg.path = path;
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), -ENOTSUP);
	assert_non_null(strstr(rst.err_msg, "use xl restore"));
	/* libxl refusing the stream: its error, no domain. */
	unlink(path);
	cfg.flags = PVM_CKPT_SAVE_KEEP;
	assert_int_equal(pvm_ckpt_save(&cfg, &st), 0);
	fx_fail("libxl_domain_create_restore", 1, EIO);
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), -EIO);
	assert_non_null(strstr(rst.err_msg, "libxl"));
	/* A restore libxl fails late: libxl destroyed its domain and hands
	 * back its domid, which may already name another domain: pvmig
	 * must not destroy it again. */
	running_pv(9, "other");
	fx.restore_fail_late = true;
	fx.restore_fail_domid = 9;
	assert_int_not_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_non_null(fx_dom(9));
	fx.restore_fail_late = false;
	fx.restore_fail_domid = 0;
	unlink(path);
	rmdir(dir);
}


/* ---- continuous checkpoints (libxenguest's checkpointed stream) ------- */

static const uint8_t fx_ckpt[8] = "FXCKPT\n";           /* the fake's CHECKPOINT */
static const uint8_t cp_end[8] = { 4, 0, 0, 0, 0, 0, 0, 0 }; /* libxl's */

struct epochs {
	uint32_t seen[16];
	uint64_t bytes[16];
	unsigned int n;
	uint32_t fail_after; /* epoch after which the guest's suspend fails */
};

static void on_epoch(void *ctx, const struct pvm_ckpt_epoch_stats *e)
{
	struct epochs *ep = ctx;

	assert_true(e->pages == PVM_CKPT_PAGES_UNKNOWN); /* not counted */
	if (ep->n < 16) {
		ep->bytes[ep->n] = e->bytes;
		ep->seen[ep->n++] = e->epoch;
	}
	if (ep->fail_after && e->epoch == ep->fail_after)
		fx_fail("xs_write", 1, EACCES);
}

/* Entries of @dir other than . and .. */
static unsigned int dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* The path of the one file in @dir whose name ends with @suffix. */
static void find_file(const char *dir, const char *suffix, char *out,
		      size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t sl = strlen(suffix);
	int found = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		size_t nl = strlen(de->d_name);

		if (nl > sl && !strcmp(de->d_name + nl - sl, suffix)) {
			snprintf(out, len, "%s/%s", dir, de->d_name);
			found++;
		}
	}
	closedir(d);
	assert_int_equal(found, 1);
}

/* The stream part of an epoch file (after its xl header). */
static uint8_t *epoch_body(const char *path, size_t *len, uint8_t **file)
{
	struct pvm_ckpt_xlhdr x;
	size_t flen;
	uint8_t *f = slurp(path, &flen);

	assert_int_equal(pvm_ckpt_xlhdr_decode(f, flen, &x, NULL, 0), 0);
	assert_true(x.mandatory & PVM_CKPT_XL_MANDATORY_JSON);
	*len = flen - 48 - x.optlen;
	*file = f;
	return f + 48 + x.optlen;
}

static void test_continuous(void **state)
{
	struct pvm_hv *hv = *state;
	char dir[] = "/tmp/pvm-xck-XXXXXX", ck[64], path[128], key[64];
	struct epochs ep = { 0 };
	struct pvm_ckpt_cont_cfg cfg = {
		.hv = hv, .domid = 4, .interval_ms = 1, .max_epochs = 3,
		.epoch_done = on_epoch, .epoch_ctx = &ep,
	};
	struct pvm_ckpt_cont_stats st;
	struct pvm_ckpt_restore_cfg rcfg = { .hv = hv };
	struct pvm_ckpt_restore_stats rst;
	struct fx_dom *d = running_pv(4, "web");
	uint8_t *f, *b;
	size_t len;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(ck, sizeof(ck), "%s/ck", dir);
	cfg.dir = ck;
	assert_int_equal(pvm_ckpt_continuous(&cfg, &st), 0);
	assert_int_equal(fx.save_type, XC_STREAM_REMUS);
	assert_int_equal(fx.save_checkpoints, 4);
	assert_int_equal(st.epochs, 3);
	assert_int_equal(ep.n, 4);
	for (unsigned int i = 0; i < 4; i++) {
		assert_int_equal(ep.seen[i], i);
		/* its stream part, as a restore reads it back */
		assert_int_equal(ep.bytes[i], i ? FX_DELTA_BYTES + 16 :
						  24 + FX_SAVE_BYTES + 16);
	}
	assert_int_equal(st.bytes, 24 + FX_SAVE_BYTES + 16 +
					   3 * (FX_DELTA_BYTES + 16));
	assert_false(d->shutdown); /* resumed after every checkpoint */
	assert_int_equal(dir_entries(ck), 5); /* MANIFEST, base, 3 deltas */

	/* The base: libxl header, the first checkpoint, CHECKPOINT_END. */
	find_file(ck, "-base.pvm", path, sizeof(path));
	b = epoch_body(path, &len, &f);
	assert_int_equal(len, 24 + FX_SAVE_BYTES + 16 + 48); /* + trailer */
	assert_memory_equal(b, "LibxlFmt", 8);
	assert_memory_equal(b + 24, "FXSAVE 4", 8);
	assert_memory_equal(b + 24 + FX_SAVE_BYTES, fx_ckpt, 8);
	assert_memory_equal(b + 24 + FX_SAVE_BYTES + 8, cp_end, 8);
	free(f);
	/* A delta: its part of the stream only. */
	find_file(ck, "-000002.pvm", path, sizeof(path));
	b = epoch_body(path, &len, &f);
	assert_int_equal(len, FX_DELTA_BYTES + 16 + 48);
	assert_memory_equal(b, "FXDELTA 2", 9);
	assert_memory_equal(b + FX_DELTA_BYTES + 8, cp_end, 8);
	assert_memory_equal(b + FX_DELTA_BYTES + 16, "PVMIGXEP", 8);
	free(f);

	/* Restore: libxl gets every committed epoch as one checkpointed
	 * stream, back to back. */
	rcfg.path = ck;
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_int_equal(fx.restore_checkpointed,
			 LIBXL_CHECKPOINTED_STREAM_REMUS);
	assert_int_equal(fx.restored_checkpoints, 4);
	assert_int_equal(fx.restored_len,
			 24 + FX_SAVE_BYTES + 16 + 3 * (FX_DELTA_BYTES + 16));
	assert_memory_equal(fx.restored + 24 + FX_SAVE_BYTES + 16 +
				    2 * (FX_DELTA_BYTES + 16),
			    "FXDELTA 3", 9);
	assert_int_equal(rst.epoch, 3);
	assert_int_equal(rst.files, 4);
	assert_string_equal(rst.name, "web");
	/* pvmig verify DIR: every file read through, trailers checked. */
	{
		struct pvm_ckpt_image im;

		assert_int_equal(pvm_ckpt_inspect(ck, &im), 0);
		assert_true(im.is_dir);
		assert_int_equal(im.epoch, 3);
		assert_int_equal(im.files, 4);
		assert_int_equal(im.info.bytes, fx.restored_len);
	}

	/* lz4 and sealed: the same stream comes back. A second run in the
	 * same directory replaces the first. */
	snprintf(key, sizeof(key), "%s/key", dir);
	fd = open(key, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(fd, "0123456789abcdef0123456789abcdef", 32), 32);
	close(fd);
	cfg.flags = PVM_CKPT_SAVE_LZ4;
	cfg.key_file = key;
	cfg.max_epochs = 1;
	assert_int_equal(pvm_ckpt_continuous(&cfg, &st), 0);
	assert_int_equal(dir_entries(ck), 3);
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), -ENOKEY);
	rcfg.key_file = key;
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_int_equal(fx.restored_len,
			 24 + FX_SAVE_BYTES + 16 + FX_DELTA_BYTES + 16);
	assert_int_equal(rst.epoch, 1);

	/* A digest is not available on Xen. */
	cfg.flags = PVM_CKPT_SAVE_DIGEST;
	assert_int_equal(pvm_ckpt_continuous(&cfg, &st), -EOPNOTSUPP);
	assert_non_null(strstr(st.err_msg, "digest"));
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	assert_int_equal(system(path), 0);
}

/* An HVM domain with QEMU (the fake's, on its QMP socket). */
static struct fx_dom *running_hvm(uint32_t domid, const char *name)
{
	struct fx_dom *d = fx_add_dom(domid, 64, 1, true);

	d->pause_count = 0;
	d->honours_suspend = true;
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->dm_version, sizeof(d->dm_version), "qemu_xen");
	fx.qemu_state_bytes = 5000;
	fx_qemu_start(domid);
	return d;
}

/* EMULATOR_CONTEXT as libxl writes it: QEMU upstream, index 0, the
 * fake's 5000 bytes, padded to 8 (5008 -> 5008). */
#define EMU_REC (8u + 8u + 5000u)

/*
 * An HVM domain through pvm_ckpt_save / _restore / _inspect and the
 * continuous checkpoints: QEMU's state follows the libxc stream (before
 * END; in each epoch before its CHECKPOINT_END), libxl takes it back.
 */
static void test_hvm(void **state)
{
	struct pvm_hv *hv = *state;
	char dir[] = "/tmp/pvm-xck-XXXXXX", path[128], ck[64];
	struct pvm_ckpt_save_cfg cfg = { .hv = hv, .domid = 7,
					 .flags = PVM_CKPT_SAVE_KEEP };
	struct pvm_ckpt_save_stats st;
	struct pvm_ckpt_restore_cfg rcfg = { .hv = hv };
	struct pvm_ckpt_restore_stats rst;
	struct epochs ep = { 0 };
	struct pvm_ckpt_cont_cfg ccfg = {
		.hv = hv, .domid = 7, .interval_ms = 1, .max_epochs = 2,
		.epoch_done = on_epoch, .epoch_ctx = &ep,
	};
	struct pvm_ckpt_cont_stats cst;
	struct pvm_ckpt_image im;
	struct fx_dom *d = running_hvm(7, "win");
	uint8_t *f, *b;
	size_t len;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/win.pvm", dir);
	cfg.path = path;
	assert_int_equal(pvm_ckpt_save(&cfg, &st), 0);
	assert_false(d->shutdown); /* -c: resumed */
	assert_int_equal(st.bytes, FX_SAVE_BYTES + EMU_REC);
	assert_string_equal(fx.qmp_log, "logdirty-on stop add-fd save remove-fd "
					"logdirty-off ");
	rcfg.path = path;
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_int_equal(fx.restored_len, 24 + FX_SAVE_BYTES + EMU_REC + 8);
	assert_int_equal(fx.restored_dm_len, 5000);
	unlink(path);

	snprintf(ck, sizeof(ck), "%s/ck", dir);
	ccfg.dir = ck;
	assert_int_equal(pvm_ckpt_continuous(&ccfg, &cst), 0);
	assert_int_equal(cst.epochs, 2);
	assert_false(d->shutdown);
	find_file(ck, "-000001.pvm", path, sizeof(path));
	b = epoch_body(path, &len, &f);
	assert_int_equal(len, FX_DELTA_BYTES + 8 + EMU_REC + 8 + 48);
	assert_memory_equal(b + FX_DELTA_BYTES, fx_ckpt, 8);
	assert_int_equal(b[FX_DELTA_BYTES + 8], 3); /* EMULATOR_CONTEXT */
	assert_memory_equal(b + FX_DELTA_BYTES + 8 + 16, "FXQEMU 7\n", 9);
	assert_memory_equal(b + FX_DELTA_BYTES + 8 + EMU_REC, cp_end, 8);
	free(f);
	rcfg.path = ck;
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_int_equal(fx.restored_checkpoints, 3);
	assert_int_equal(rst.epoch, 2);
	assert_int_equal(fx.restored_dm_len, 5000);
	assert_int_equal(pvm_ckpt_inspect(ck, &im), 0);
	assert_int_equal(im.epoch, 2);
	fx_qemu_stop();
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	assert_int_equal(system(path), 0);
}

static void test_continuous_failures(void **state)
{
	struct pvm_hv *hv = *state;
	char dir[] = "/tmp/pvm-xcf-XXXXXX", ck[64], path[128], cmd[160];
	struct epochs ep = { .fail_after = 2 };
	struct pvm_ckpt_cont_cfg cfg = {
		.hv = hv, .domid = 4, .interval_ms = 1, .max_epochs = 5,
		.epoch_done = on_epoch, .epoch_ctx = &ep,
	};
	struct pvm_ckpt_cont_stats st;
	struct pvm_ckpt_restore_cfg rcfg = { .hv = hv };
	struct pvm_ckpt_restore_stats rst;
	struct fx_dom *d = running_pv(4, "web");
	unsigned int doms = 0;

	assert_non_null(mkdtemp(dir));
	snprintf(ck, sizeof(ck), "%s/ck", dir);
	cfg.dir = ck;
	/* The guest cannot be suspended for epoch 3: the run fails, the
	 * guest runs on, epoch 2 stays committed, no partial file. */
	assert_int_not_equal(pvm_ckpt_continuous(&cfg, &st), 0);
	assert_int_equal(st.epochs, 2);
	assert_false(d->shutdown);
	assert_int_equal(d->pause_count, 0);
	assert_int_equal(dir_entries(ck), 4); /* MANIFEST, base, 2 deltas */
	rcfg.path = ck;
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_int_equal(rst.epoch, 2);
	assert_int_equal(fx.restored_len,
			 24 + FX_SAVE_BYTES + 16 + 2 * (FX_DELTA_BYTES + 16));
	assert_int_equal(hv->ops->domain_destroy(hv, rst.domid), 0);

	/* A committed delta damaged, then cut short: refused (libxc alone
	 * would fail over to epoch 1), and the domain libxl built from the
	 * older epoch is not left behind. */
	find_file(ck, "-000002.pvm", path, sizeof(path));
	{
		int fd = open(path, O_RDWR);
		struct stat sb;

		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &sb), 0);
		assert_int_equal(pwrite(fd, "?", 1, sb.st_size - 100), 1);
		close(fd);
	}
	for (uint32_t id = 0; id < 64; id++)
		doms += fx_dom(id) != NULL;
	assert_int_not_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_non_null(strstr(rst.err_msg, "epoch 2"));
	/* libxl had accepted it, damaged page data and all (nothing in
	 * libxc's stream checks it): only the trailer caught it */
	assert_int_equal(fx.restored_checkpoints, 3);
	assert_int_equal(fx.restores_failed, 0);
	for (uint32_t id = 0; id < 64; id++)
		doms -= fx_dom(id) != NULL;
	assert_int_equal(doms, 0);
	{
		struct pvm_ckpt_image im;

		assert_int_equal(pvm_ckpt_inspect(ck, &im), -EBADMSG);
		assert_non_null(strstr(im.err_msg, "epoch 2"));
		assert_int_equal(im.files, 2);
	}
	assert_int_equal(truncate(path, 1000), 0);
	for (uint32_t id = 0; id < 64; id++)
		doms += fx_dom(id) != NULL;
	assert_int_not_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_non_null(strstr(rst.err_msg, "epoch 2"));
	for (uint32_t id = 0; id < 64; id++)
		doms -= fx_dom(id) != NULL;
	assert_int_equal(doms, 0);

	/* Rebase every 2 epochs: a new run replaces the old one's files; a
	 * rebase counts as an epoch, as on the simulated host. */
	ep.fail_after = 0;
	cfg.rebase_epochs = 2;
	cfg.max_epochs = 5;
	assert_int_equal(pvm_ckpt_continuous(&cfg, &st), 0);
	assert_int_equal(st.epochs, 5);
	assert_int_equal(dir_entries(ck), 4); /* MANIFEST, base, 2 deltas */
	assert_int_equal(pvm_ckpt_restore(&rcfg, &rst), 0);
	assert_int_equal(rst.epoch, 2);
	assert_int_equal(rst.files, 3);

	/* libxenguest fails at once: nothing committed, nothing left. */
	assert_int_equal(system((snprintf(cmd, sizeof(cmd), "rm -rf %s", ck),
				 cmd)), 0);
	fx_fail("xc_domain_save", 1, EIO);
	assert_int_equal(pvm_ckpt_continuous(&cfg, &st), -EIO);
	assert_int_equal(dir_entries(ck), 0);
	assert_false(d->shutdown);
	assert_int_equal(system((snprintf(cmd, sizeof(cmd), "rm -rf %s", dir),
				 cmd)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		XT_TEST(test_save_file_is_xls),
		XT_TEST(test_lz4_and_sealed),
		XT_TEST(test_failures),
		XT_TEST(test_continuous),
		XT_TEST(test_continuous_failures),
		XT_TEST(test_hvm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
