/*
 * pvm_ckpt_save() / pvm_ckpt_restore() on the Xen backend (checkpoint/xen.c)
 * against the fake Xen host: the file is what xl save writes (xl header
 * with the JSON flag and libxl's config, libxl header, LIBXC_CONTEXT, the
 * libxc stream libxenguest wrote, libxl END), plain, lz4 and sealed; the
 * restore hands exactly the libxl stream to libxl; failures leave the
 * guest running and no file behind.
 */
#include "xentest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		XT_TEST(test_save_file_is_xls),
		XT_TEST(test_lz4_and_sealed),
		XT_TEST(test_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
