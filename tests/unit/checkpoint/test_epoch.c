/*
 * checkpoint/epoch.c: continuous checkpoints of a guest running the dirty
 * workload. The directory restores to exactly the memory of the newest
 * committed epoch; a failure in the middle of an epoch (injected map
 * failure) and the debris of a crash (an uncommitted epoch file, tmp
 * files) leave the previous epoch restorable; damage is refused.
 */
#include <openssl/sha.h>

#include "sr_test.h"

#define EPOCHS_MAX 16u

struct run {
	struct pvm_hv *hv;
	uint32_t domid;
	uint32_t fail_after;     /* arm a map failure after this epoch */
	uint32_t stop_after;     /* wait() says stop after this epoch */
	uint32_t last;           /* newest epoch reported */
	uint8_t digest[EPOCHS_MAX + 1][32];
};

static void on_epoch(void *ctx, const struct pvm_ckpt_epoch_stats *e)
{
	struct run *r = ctx;

	assert_true(e->epoch <= EPOCHS_MAX);
	assert_true(e->has_digest);
	memcpy(r->digest[e->epoch], e->mem_digest, 32);
	r->last = e->epoch;
	assert_true(e->bytes > 0);
	if (r->fail_after && e->epoch == r->fail_after)
		assert_int_equal(pvm_sim_fault_set(r->hv, PVM_SIM_FAULT_MAP, 1,
						   true, -EFAULT), 0);
}

static int on_wait(void *ctx, uint32_t ms)
{
	struct run *r = ctx;

	if (r->stop_after && r->last >= r->stop_after)
		return 1;
	simtest_sleep_ms(ms);
	return 0;
}

static const char *run_key; /* key file for run(), NULL: none */
static uint32_t run_rebase;  /* rebase_epochs for run() */

static int run(struct run *r, const char *dir, uint32_t epochs, bool lz4,
	       struct pvm_ckpt_cont_stats *st)
{
	struct pvm_ckpt_cont_cfg cc = {
		.hv = r->hv, .domid = r->domid, .dir = dir,
		.flags = PVM_CKPT_SAVE_DIGEST | (lz4 ? PVM_CKPT_SAVE_LZ4 : 0),
		.interval_ms = 20, .max_epochs = epochs,
		.stage_bytes = 64 * PVM_PAGE_SIZE, /* small: overflow path too */
		.wait = on_wait, .wait_ctx = r,
		.epoch_done = on_epoch, .epoch_ctx = r,
		.key_file = run_key,
		.rebase_epochs = run_rebase,
	};

	return pvm_ckpt_continuous(&cc, st);
}

#define ANY_ERROR 1 /* want_rc: any failure */

static uint32_t restore(struct pvm_hv *hv, const char *path, int want_rc,
			char *msg_out)
{
	struct pvm_ckpt_restore_cfg rc = { .hv = hv, .path = path,
					   .paused = true };
	struct pvm_ckpt_restore_stats st;
	int got = pvm_ckpt_restore(&rc, &st);

	if (want_rc == ANY_ERROR)
		assert_true(got < 0);
	else
		assert_int_equal(got, want_rc);
	if (msg_out)
		strcpy(msg_out, st.err_msg);
	return st.domid;
}

static void sha_mem(struct pvm_hv *hv, uint32_t domid, uint8_t out[32])
{
	SHA256(simtest_mem(hv, domid), (size_t)SR_PAGES * PVM_PAGE_SIZE, out);
}

static void chain_of(const char *dir, char out[33])
{
	char p[200];
	size_t len;
	uint8_t *m;

	snprintf(p, sizeof(p), "%s/MANIFEST", dir);
	m = sr_slurp(p, &len);
	m[len] = 0;
	assert_int_equal(sscanf((char *)m, "pvmig-checkpoint 1\nrun %32s", out),
			 1);
	free(m);
}

static void test_epochs_restore_newest(void **state)
{
	struct run r = { .hv = simtest_host() };
	struct pvm_ckpt_cont_stats st;
	struct pvm_ckpt_image im;
	uint8_t sha[32];
	char dir[64], msg[PVM_CKPT_ERR_MAX];
	uint32_t nd;

	(void)state;
	sr_tmpdir(dir, sizeof(dir));
	r.domid = sr_guest(r.hv, "g1", "dirty:16:1024:2000");
	simtest_wait_passes(r.hv, r.domid, 0, 1);
	assert_int_equal(run(&r, dir, 4, false, &st), 0);
	assert_int_equal(st.epochs, 4);
	assert_int_equal(r.last, 4);
	assert_true(st.max_pause_ns > 0);
	assert_int_equal(pvm_ckpt_inspect(dir, &im), 0);
	assert_true(im.is_dir);
	assert_int_equal(im.epoch, 4);
	assert_int_equal(im.files, 5);
	assert_string_equal(im.name, "g1");

	/* The source still runs; restoring under its name is refused. */
	restore(r.hv, dir, -EEXIST, msg);
	assert_int_equal(r.hv->ops->domain_destroy(r.hv, r.domid), 0);
	nd = restore(r.hv, dir, 0, NULL);
	sha_mem(r.hv, nd, sha);
	assert_memory_equal(sha, r.digest[4], 32);
	assert_int_equal(r.hv->ops->domain_unpause(r.hv, nd), 0);
	simtest_wait_passes(r.hv, nd, simtest_passes(r.hv, nd), 1);
	r.hv->ops->close(r.hv);
	sr_rm_rf(dir);
}

static void test_failed_epoch_keeps_previous(void **state)
{
	struct run r = { .hv = simtest_host(), .fail_after = 2 };
	struct pvm_ckpt_cont_stats st;
	struct pvm_hv_dominfo info;
	uint8_t sha[32], *f;
	char dir[64], chain[33], p[200], msg[PVM_CKPT_ERR_MAX];
	size_t before, len;
	uint32_t nd;

	(void)state;
	sr_tmpdir(dir, sizeof(dir));
	r.domid = sr_guest(r.hv, "g1", "dirty:16:1024:2000");
	assert_int_equal(run(&r, dir, 6, true, &st), -EFAULT);
	assert_int_equal(st.epochs, 2);
	assert_non_null(strstr(st.err_msg, "cannot map"));
	assert_int_equal(pvm_sim_fault_set(r.hv, PVM_SIM_FAULT_MAP, 0, false,
					   -EFAULT), 0);
	/* The guest runs on, log-dirty off. */
	assert_int_equal(r.hv->ops->domain_info(r.hv, r.domid, &info), 0);
	assert_int_equal(info.flags, 0);

	/* Debris of a crash during epoch 3: a finished but uncommitted
	 * epoch file, half-written tmp files. */
	chain_of(dir, chain);
	snprintf(p, sizeof(p), "%s/%s-000002.pvm.lz4", dir, chain);
	f = sr_slurp(p, &len);
	snprintf(p, sizeof(p), "%s/%s-000003.pvm.lz4", dir, chain);
	sr_spit(p, f, len);
	snprintf(p, sizeof(p), "%s/%s-000003.pvm.lz4.tmp", dir, chain);
	sr_spit(p, f, len / 2);
	snprintf(p, sizeof(p), "%s/MANIFEST.tmp", dir);
	sr_spit(p, "pvmig-checkpoint 1\nrun", 22);

	assert_int_equal(r.hv->ops->domain_destroy(r.hv, r.domid), 0);
	nd = restore(r.hv, dir, 0, NULL);
	sha_mem(r.hv, nd, sha);
	assert_memory_equal(sha, r.digest[2], 32);
	assert_int_equal(r.hv->ops->domain_destroy(r.hv, nd), 0);

	/* A delta alone is not an image. */
	snprintf(p, sizeof(p), "%s/%s-000001.pvm.lz4", dir, chain);
	restore(r.hv, p, -EINVAL, msg);
	assert_non_null(strstr(msg, "restore its directory"));

	/* A damaged committed epoch: refused, nothing left behind. Which
	 * error depends on where the bit lands in the lz4 frame (a block
	 * that fails to decode, the frame's checksum, or garbage records
	 * the stream reader refuses first). */
	/* Not every flipped bit of an lz4 frame changes what it inflates to
	 * (a match offset inside a run of zeros can point elsewhere in the
	 * run): such a file restores the very same memory, which is right.
	 * So walk from the middle until a flip damages the content, and
	 * require that every flip before it restored identical memory. */
	snprintf(p, sizeof(p), "%s/%s-000002.pvm.lz4", dir, chain);
	before = sr_count_domains(r.hv);
	{
		struct pvm_ckpt_restore_cfg rcfg = { .hv = r.hv, .path = dir,
						     .paused = true };
		struct pvm_ckpt_restore_stats rst;
		bool refused = false;
		size_t at = 0;

		for (size_t k = 0; k < 256 && !refused; k++) {
			f[len / 2 + k] ^= 0x01;
			sr_spit(p, f, len);
			if (pvm_ckpt_restore(&rcfg, &rst) < 0) {
				refused = true;
				at = len / 2 + k;
				strcpy(msg, rst.err_msg);
			} else {
				sha_mem(r.hv, rst.domid, sha);
				assert_memory_equal(sha, r.digest[2], 32);
				assert_int_equal(r.hv->ops->domain_destroy(r.hv,
									   rst.domid), 0);
			}
			f[len / 2 + k] ^= 0x01;
		}
		assert_true(refused);
		f[at] ^= 0x01; /* leave the damaging flip for inspect */
		sr_spit(p, f, len);
	}
	assert_non_null(strstr(msg, "000002"));
	assert_int_equal(sr_count_domains(r.hv), before);
	{
		struct pvm_ckpt_image im;

		assert_true(pvm_ckpt_inspect(dir, &im) < 0);
		assert_non_null(strstr(im.err_msg, "000002"));
	}
	/* A damaged manifest: refused. */
	snprintf(p, sizeof(p), "%s/MANIFEST", dir);
	free(f);
	f = sr_slurp(p, &len);
	f[len - 3] ^= 0x01;
	sr_spit(p, f, len);
	restore(r.hv, dir, -EBADMSG, msg);
	assert_non_null(strstr(msg, "MANIFEST"));
	free(f);
	r.hv->ops->close(r.hv);
	sr_rm_rf(dir);
}

/* A run told to stop ends cleanly; a new run in the same directory
 * replaces the old one only once its base is committed. */
static void test_stop_and_rerun(void **state)
{
	struct run r = { .hv = simtest_host(), .stop_after = 2 };
	struct pvm_ckpt_cont_stats st;
	struct pvm_ckpt_image im;
	char dir[64], c1[33], c2[33];
	uint8_t sha[32];
	uint32_t nd;

	(void)state;
	sr_tmpdir(dir, sizeof(dir));
	r.domid = sr_guest(r.hv, "g1", "dirty:16:512:2000");
	assert_int_equal(run(&r, dir, 0, false, &st), 0);
	assert_int_equal(st.epochs, 2);
	chain_of(dir, c1);
	r.last = 0;
	r.stop_after = 1;
	assert_int_equal(run(&r, dir, 0, false, &st), 0);
	assert_int_equal(st.epochs, 1);
	chain_of(dir, c2);
	assert_string_not_equal(c1, c2);
	assert_int_equal(pvm_ckpt_inspect(dir, &im), 0);
	assert_int_equal(im.files, 2); /* the old run's files are gone */
	assert_int_equal(r.hv->ops->domain_destroy(r.hv, r.domid), 0);
	nd = restore(r.hv, dir, 0, NULL);
	sha_mem(r.hv, nd, sha);
	assert_memory_equal(sha, r.digest[1], 32);
	r.hv->ops->close(r.hv);
	sr_rm_rf(dir);
}

/* Rebasing bounds the chain: after 2 deltas a new run with a fresh base;
 * the old run's files go once the new base is committed. */
static void test_rebase(void **state)
{
	struct run r = { .hv = simtest_host() };
	struct pvm_ckpt_cont_stats st;
	struct pvm_ckpt_image im;
	char dir[64];
	uint8_t sha[32];
	uint32_t nd;

	(void)state;
	sr_tmpdir(dir, sizeof(dir));
	r.domid = sr_guest(r.hv, "g1", "dirty:16:1024:2000");
	run_rebase = 2;
	/* delta 1, delta 2, rebase, delta 1, delta 2, rebase, delta 1 */
	assert_int_equal(run(&r, dir, 7, false, &st), 0);
	run_rebase = 0;
	assert_int_equal(st.epochs, 7);
	assert_int_equal(r.last, 1);
	assert_int_equal(pvm_ckpt_inspect(dir, &im), 0);
	assert_int_equal(im.epoch, 1);
	assert_int_equal(im.files, 2);
	{
		char cmd[200];

		snprintf(cmd, sizeof(cmd), "test $(ls %s | grep -c pvm) -eq 2", dir);
		assert_int_equal(system(cmd), 0);
	}
	assert_int_equal(r.hv->ops->domain_destroy(r.hv, r.domid), 0);
	nd = restore(r.hv, dir, 0, NULL);
	sha_mem(r.hv, nd, sha);
	assert_memory_equal(sha, r.digest[1], 32);
	r.hv->ops->close(r.hv);
	sr_rm_rf(dir);
}

/* Encrypted epochs: restorable with the key only. */
static void test_encrypted_epochs(void **state)
{
	struct run r = { .hv = simtest_host() };
	struct pvm_ckpt_restore_cfg rc = { .hv = r.hv, .paused = true };
	struct pvm_ckpt_restore_stats rst;
	struct pvm_ckpt_cont_stats st;
	struct pvm_ckpt_image im;
	char dir[64], key[128];
	uint8_t sha[32];

	(void)state;
	sr_tmpdir(dir, sizeof(dir));
	snprintf(key, sizeof(key), "%s.key", dir);
	sr_spit(key, "fedcba9876543210fedcba9876543210", 32);
	r.domid = sr_guest(r.hv, "g1", "dirty:16:1024:2000");
	run_key = key;
	assert_int_equal(run(&r, dir, 3, true, &st), 0);
	run_key = NULL;
	assert_int_equal(pvm_ckpt_inspect(dir, &im), -ENOKEY);
	assert_int_equal(pvm_ckpt_inspect_keyed(dir, key, &im), 0);
	assert_int_equal(im.epoch, 3);
	assert_true(im.encrypted);
	assert_int_equal(r.hv->ops->domain_destroy(r.hv, r.domid), 0);
	rc.path = dir;
	assert_int_equal(pvm_ckpt_restore(&rc, &rst), -ENOKEY);
	rc.key_file = key;
	assert_int_equal(pvm_ckpt_restore(&rc, &rst), 0);
	sha_mem(r.hv, rst.domid, sha);
	assert_memory_equal(sha, r.digest[3], 32);
	r.hv->ops->close(r.hv);
	unlink(key);
	sr_rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_epochs_restore_newest),
		cmocka_unit_test(test_failed_epoch_keeps_previous),
		cmocka_unit_test(test_stop_and_rerun),
		cmocka_unit_test(test_encrypted_epochs),
		cmocka_unit_test(test_rebase),
	};

	pvm_log_set_level(PVM_LOG_ERR + (getenv("SR_TEST_VERBOSE") ? 3 : 0));
	simtest_require_kernel();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
