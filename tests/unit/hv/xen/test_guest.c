/*
 * hv/xen/guest.c against the fake Xen host: the libxl config as JSON, the
 * control/shutdown suspend, xc_domain_save driven by pvmig's callbacks,
 * resume, and libxl_domain_create_restore from a file descriptor; each
 * with its failure paths (logged once, nothing left behind).
 */
#include "xentest.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <xenguest.h>

static struct fx_dom *running_pv(uint32_t domid, const char *name)
{
	struct fx_dom *d = fx_add_dom(domid, 64, 1, false);

	d->pause_count = 0;
	d->honours_suspend = true;
	snprintf(d->name, sizeof(d->name), "%s", name);
	return d;
}

static void test_config_json(void **state)
{
	struct pvm_hv *hv = *state;
	char *json = NULL;

	running_pv(4, "web");
	assert_int_equal(pvm_hv_xen_config_json(hv, 4, &json), 0);
	assert_non_null(strstr(json, "\"name\":\"web\""));
	free(json);
	assert_fails_once(pvm_hv_xen_config_json(hv, 9, &json), -ESRCH);
	assert_null(json);
	fx_fail("libxl_retrieve_domain_configuration", 1, EIO);
	assert_fails_once(pvm_hv_xen_config_json(hv, 4, &json), -EIO);
	fx_fail("libxl_domain_config_to_json", 1, ENOMEM);
	assert_fails_once(pvm_hv_xen_config_json(hv, 4, &json), -ENOMEM);
	assert_null(json);
}

static void test_suspend(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *d = running_pv(4, "web");

	assert_int_equal(pvm_hv_xen_suspend(hv, 4, 1000), 0);
	assert_true(d->shutdown);
	assert_int_equal(d->shutdown_reason, SHUTDOWN_suspend);
	/* Already suspended: nothing written again. */
	assert_int_equal(pvm_hv_xen_suspend(hv, 4, 1000), 0);
	assert_int_equal(fx_calls("xs_write"), 1);

	/* A guest that never answers: timeout, and the request withdrawn. */
	d = running_pv(5, "deaf");
	d->honours_suspend = false;
	assert_fails_once(pvm_hv_xen_suspend(hv, 5, 30), -ETIMEDOUT);
	assert_false(d->shutdown);
	assert_string_equal(d->control_shutdown, "");
	assert_int_equal(fx_calls("xs_rm"), 1);

	/* Shut down for another reason; gone; xenstore refusing. */
	d->shutdown = true;
	d->shutdown_reason = SHUTDOWN_poweroff;
	assert_fails_once(pvm_hv_xen_suspend(hv, 5, 30), -ESHUTDOWN);
	assert_fails_once(pvm_hv_xen_suspend(hv, 8, 30), -ESRCH);
	running_pv(6, "x");
	fx_fail("xs_write", 1, EACCES);
	assert_fails_once(pvm_hv_xen_suspend(hv, 6, 30), -EACCES);
}

/* The caller's callbacks, recording what libxenguest gave them. */
struct cbs {
	struct pvm_hv *hv;
	uint32_t domid;
	unsigned int suspends, policies;
	int64_t last_dirty;
	char calls[256]; /* "round:written:dirty " per policy call */
	int stop_below, fail_suspend;
};

static int cb_suspend(void *ctx)
{
	struct cbs *c = ctx;

	c->suspends++;
	if (c->fail_suspend)
		return c->fail_suspend;
	return pvm_hv_xen_suspend(c->hv, c->domid, 1000);
}

static int cb_precopy(void *ctx, uint32_t round, uint64_t written,
		      int64_t dirty)
{
	struct cbs *c = ctx;

	c->policies++;
	c->last_dirty = dirty;
	snprintf(c->calls + strlen(c->calls), sizeof(c->calls) - strlen(c->calls),
		 "%u:%llu:%lld ", round, (unsigned long long)written,
		 (long long)dirty);
	if (c->stop_below < 0)
		return PVM_HV_XEN_PRECOPY_ABORT;
	return dirty >= 0 && dirty < c->stop_below ? PVM_HV_XEN_PRECOPY_STOP :
						     PVM_HV_XEN_PRECOPY_CONTINUE;
}

/* Reads what a save wrote into a pipe (a thread would be needed past the
 * pipe's capacity: use a temporary file instead). */
static size_t slurp(int fd, char *head, size_t n)
{
	off_t end = lseek(fd, 0, SEEK_END);

	assert_int_equal(pread(fd, head, n, 0), (ssize_t)n);
	return (size_t)end;
}

static void test_save(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *d = running_pv(4, "web");
	struct cbs c = { .hv = hv, .domid = 4, .stop_below = 100 };
	struct pvm_hv_xen_save_cb cb = {
		.suspend = cb_suspend, .precopy = cb_precopy, .ctx = &c,
	};
	char tmpl[] = "/tmp/pvm-xg-XXXXXX", head[9] = "";
	int fd = mkstemp(tmpl);

	assert_true(fd >= 0);
	unlink(tmpl);
	/* Cold: no policy, one suspend, the stream on the fd. */
	assert_int_equal(pvm_hv_xen_save(hv, 4, fd, false, &cb), 0);
	assert_int_equal(c.suspends, 1);
	assert_int_equal(c.policies, 0);
	assert_int_equal(fx.save_flags, 0);
	assert_int_equal(slurp(fd, head, 8), FX_SAVE_BYTES);
	assert_memory_equal(head, "FXSAVE 4", 8);
	assert_true(d->shutdown);
	/* Resume lets it carry on; resuming a running guest fails. */
	assert_int_equal(pvm_hv_xen_resume(hv, 4), 0);
	assert_false(d->shutdown);
	assert_fails_once(pvm_hv_xen_resume(hv, 4), -EIO);

	/* Live: the policy sees each round's dirty count and stops the
	 * pre-copy once it is small. */
	fx.save_dirty[0] = 900;
	fx.save_dirty[1] = 400;
	fx.save_dirty[2] = 50;
	fx.save_dirty[3] = -1;
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pvm_hv_xen_save(hv, 4, fd, true, &cb), 0);
	assert_int_equal(fx.save_flags, XCFLAGS_LIVE);
	assert_int_equal(fx.save_rounds, 3);
	assert_int_equal(c.policies, 4); /* before round 0, after each */
	assert_int_equal(c.last_dirty, 50);
	/* Once a round, when its dirty count is known: libxenguest's own
	 * call before round 0 (dirty = every page) and its calls between a
	 * send and the bitmap read (dirty -1) are not passed on. Round r's
	 * time is then the time between two calls (seen on real Xen: the
	 * rounds measured 0-70 ms, the bitmap read, instead of 6 s). */
	assert_string_equal(c.calls, "0:0:-1 1:1000:900 2:1900:400 3:2300:50 ");
	/* STOP still sent the last 50 pages live, then suspended. */
	assert_int_equal(fx.save_live_sent, 1000 + 900 + 400 + 50);
	assert_int_equal(c.suspends, 2);
	assert_int_equal(pvm_hv_xen_resume(hv, 4), 0);

	/* Policy aborts: failure, the guest never suspended. */
	c.stop_below = -1;
	assert_fails_once(pvm_hv_xen_save(hv, 4, fd, true, &cb), -EINTR);
	assert_false(d->shutdown);
	assert_int_equal(c.suspends, 2);
	/* Our suspend fails: its errno comes back. */
	c.stop_below = 100;
	c.fail_suspend = -ETIMEDOUT;
	assert_fails_once(pvm_hv_xen_save(hv, 4, fd, false, &cb), -ETIMEDOUT);
	c.fail_suspend = 0;
	/* Default callbacks (NULL): the backend's own suspend. */
	fx.save_rounds = 0;
	assert_int_equal(pvm_hv_xen_save(hv, 4, fd, true, NULL), 0);
	assert_true(d->shutdown);
	assert_int_equal(pvm_hv_xen_resume(hv, 4), 0);
	/* libxenguest failing; HVM; no such domain. */
	fx_fail("xc_domain_save", 1, EIO);
	assert_fails_once(pvm_hv_xen_save(hv, 4, fd, false, &cb), -EIO);
	/* An HVM domain whose device model pvmig does not drive: refused
	 * before anything is asked of it. */
	snprintf(fx_add_dom(7, 64, 1, true)->dm_version, 32,
		 "qemu_xen_traditional");
	fx_dom(7)->pause_count = 0;
	assert_fails_once(pvm_hv_xen_save(hv, 7, fd, false, &cb), -EOPNOTSUPP);
	assert_false(fx_dom(7)->shutdown);
	assert_fails_once(pvm_hv_xen_save(hv, 9, fd, false, &cb), -ESRCH);
	close(fd);
}

/* A libxl stream as pvmig writes it around a libxc stream. */
static int stream_fd(uint32_t src_domid)
{
	static const uint8_t hdr[24] = { 'L', 'i', 'b', 'x', 'l', 'F', 'm', 't',
					 0, 0, 0, 2, 0, 0, 0, 0, 1 };
	char tmpl[] = "/tmp/pvm-xg-XXXXXX";
	int fd = mkstemp(tmpl);
	uint8_t end[8] = { 0 }, *body = malloc(FX_SAVE_BYTES);

	assert_true(fd >= 0);
	assert_non_null(body);
	unlink(tmpl);
	fx_save_stream(src_domid, body);
	assert_int_equal(write(fd, hdr, sizeof(hdr)), sizeof(hdr));
	assert_int_equal(write(fd, body, FX_SAVE_BYTES), FX_SAVE_BYTES);
	free(body);
	assert_int_equal(write(fd, end, sizeof(end)), sizeof(end));
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static void test_restore(void **state)
{
	struct pvm_hv *hv = *state;
	const char *json = "{\"c_info\":{\"name\":\"web\"},\"b_info\":"
			   "{\"max_memkb\":256}}";
	uint32_t domid = 99;
	int fd;

	fd = stream_fd(4);
	assert_int_equal(pvm_hv_xen_restore(hv, json, fd, false, &domid), 0);
	close(fd);
	assert_int_not_equal(domid, 0);
	assert_string_equal(fx_dom(domid)->name, "web");
	assert_int_equal(fx_dom(domid)->nr_pages, 64);
	assert_int_equal(fx_dom(domid)->pause_count, 0);
	assert_int_equal(fx.restored_len, 24 + FX_SAVE_BYTES + 8);

	fd = stream_fd(4);
	assert_int_equal(pvm_hv_xen_restore(hv, json, fd, true, &domid), 0);
	close(fd);
	assert_int_equal(fx_dom(domid)->pause_count, 1);

	/* A config libxl does not take; libxl failing (nothing left). */
	fd = stream_fd(4);
	assert_fails_once(pvm_hv_xen_restore(hv, "{}", fd, false, &domid),
			  -EBADMSG);
	assert_int_equal(domid, 0);
	fx_fail("libxl_domain_create_restore", 1, EIO);
	assert_fails_once(pvm_hv_xen_restore(hv, json, fd, false, &domid),
			  -EIO);
	close(fd);
	/* A stream that is not one. */
	{
		int p[2];

		assert_int_equal(pipe(p), 0);
		assert_int_equal(write(p[1], "garbage", 7), 7);
		close(p[1]);
		assert_fails_once(pvm_hv_xen_restore(hv, json, p[0], false,
						     &domid), -EIO);
		close(p[0]);
	}
	/* Unpause failing: the new domain is destroyed. */
	fd = stream_fd(4);
	fx_fail("libxl_domain_unpause", 1, EIO);
	assert_fails_once(pvm_hv_xen_restore(hv, json, fd, false, &domid),
			  -EIO);
	close(fd);
	assert_int_equal(domid, 0);
	assert_int_equal(fx_calls("libxl_domain_destroy"), 1);
}

/* ---- HVM (QEMU) and PVH ---------------------------------------------------- */

static struct fx_dom *running_hvm(uint32_t domid, const char *name, bool qemu)
{
	struct fx_dom *d = fx_add_dom(domid, 64, 1, true);

	d->pause_count = 0;
	d->honours_suspend = true;
	snprintf(d->name, sizeof(d->name), "%s", name);
	if (qemu) {
		snprintf(d->dm_version, sizeof(d->dm_version), "qemu_xen");
		d->physmap = true;
		fx_qemu_start(domid);
	}
	return d;
}

static int tmp_fd(void)
{
	char tmpl[] = "/tmp/pvm-xg-XXXXXX";
	int fd = mkstemp(tmpl);

	assert_true(fd >= 0);
	unlink(tmpl);
	return fd;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* The whole content of @fd (malloc'd), its length in *@len. */
static uint8_t *slurp_all(int fd, size_t *len)
{
	off_t end = lseek(fd, 0, SEEK_END);
	uint8_t *b = malloc((size_t)end + 1);

	assert_non_null(b);
	assert_int_equal(pread(fd, b, (size_t)end, 0), end);
	*len = (size_t)end;
	return b;
}

/* A libxl stream around @body (@len bytes: the libxc part and any
 * records after it), ended by END; a readable fd. */
static int wrap_stream(const uint8_t *body, size_t len)
{
	static const uint8_t hdr[24] = { 'L', 'i', 'b', 'x', 'l', 'F', 'm', 't',
					 0, 0, 0, 2, 0, 0, 0, 0, 1 };
	static const uint8_t end[8];
	int fd = tmp_fd();

	assert_int_equal(write(fd, hdr, sizeof(hdr)), sizeof(hdr));
	assert_int_equal(write(fd, body, len), (ssize_t)len);
	assert_int_equal(write(fd, end, sizeof(end)), sizeof(end));
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static unsigned int n_domains(void)
{
	unsigned int n = 0;

	for (size_t i = 0; i < FX_MAX_DOMS; i++)
		n += fx.doms[i].exists;
	return n;
}

/*
 * An HVM domain with QEMU: QEMU's dirty log on for the save and off after
 * it, QEMU stopped and its state saved once the guest suspended, then
 * after the libxc stream the physmap keys (EMULATOR_XENSTORE_DATA) and
 * the state (EMULATOR_CONTEXT), as libxl writes them; libxl's restore
 * takes the stream back.
 */
static void test_save_hvm(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *d = running_hvm(7, "win", true);
	struct cbs c = { .hv = hv, .domid = 7, .stop_below = 100 };
	struct pvm_hv_xen_save_cb cb = {
		.suspend = cb_suspend, .precopy = cb_precopy, .ctx = &c,
	};
	const char *json = "{\"c_info\":{\"name\":\"win\"},\"b_info\":"
			   "{\"max_memkb\":256}}";
	int fd = tmp_fd(), rfd;
	uint32_t domid = 0;
	size_t len, off, xs_len, ctx_len;
	uint8_t *b;

	assert_int_equal(pvm_hv_xen_save(hv, 7, fd, false, &cb), 0);
	assert_string_equal(fx.qmp_log, "logdirty-on stop add-fd save remove-fd "
					"logdirty-off ");
	assert_int_equal(fx.save_qemu_logdirty_on, 1);
	assert_int_equal(fx.save_qemu_logdirty_off, 1);
	assert_true(d->shutdown);
	b = slurp_all(fd, &len);
	off = FX_SAVE_BYTES;
	/* EMULATOR_XENSTORE_DATA: QEMU upstream, index 0, the pairs */
	assert_true(len > off + 16);
	assert_int_equal(le32(b + off), 2);
	xs_len = le32(b + off + 4);
	assert_int_equal(le32(b + off + 8), 2);
	assert_int_equal(le32(b + off + 12), 0);
	assert_memory_equal(b + off + 16, "physmap/f0000000/start_addr\0f0000000\0phys",
			    41);
	off += 8 + ((xs_len + 7) & ~(size_t)7);
	/* EMULATOR_CONTEXT: QEMU's bytes, padded to 8 */
	assert_int_equal(le32(b + off), 3);
	ctx_len = le32(b + off + 4);
	assert_int_equal(ctx_len, 8 + fx.qemu_state_bytes);
	assert_int_equal(le32(b + off + 8), 2);
	assert_memory_equal(b + off + 16, "FXQEMU 7\n", 9);
	off += 8 + ((ctx_len + 7) & ~(size_t)7);
	assert_int_equal(len, off);
	/* libxl restores it (EMULATOR records checked and taken) */
	rfd = wrap_stream(b, len);
	assert_int_equal(pvm_hv_xen_restore(hv, json, rfd, false, &domid), 0);
	close(rfd);
	assert_int_equal(fx.restored_dm_len, fx.qemu_state_bytes);
	assert_int_equal(fx.restored_dm_xs, 1);
	free(b);
	assert_int_equal(pvm_hv_xen_resume(hv, 7), 0);
	assert_false(d->shutdown);

	/* Live, as a migration: QEMU lets go of its images (live). */
	fx.qmp_log[0] = '\0';
	fx.save_dirty[0] = 10;
	fx.save_dirty[1] = -1;
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pvm_hv_xen_save(hv, 7, fd, true, &cb), 0);
	assert_string_equal(fx.qmp_log, "logdirty-on stop add-fd save(live) "
					"remove-fd logdirty-off ");
	assert_int_equal(pvm_hv_xen_resume(hv, 7), 0);
	close(fd);
	fx_qemu_stop();
}

/* PVH: the HVM stream, no device model (no QMP, no EMULATOR records),
 * although libxl's dm-version says "qemu_xen" for it as for HVM (on the
 * nested hosts the save asked the absent QEMU for log-dirty and failed). */
static void test_save_pvh(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *d = running_hvm(8, "pvh", false);
	int fd = tmp_fd();
	char head[9] = "";

	d->pvh = true;
	snprintf(d->dm_version, sizeof(d->dm_version), "qemu_xen");

	assert_int_equal(pvm_hv_xen_save(hv, 8, fd, false, NULL), 0);
	assert_int_equal(slurp(fd, head, 8), FX_SAVE_BYTES);
	assert_memory_equal(head, "FXSAVE 8", 8);
	assert_int_equal(fx.save_qemu_logdirty_on, 1); /* a no-op for it */
	assert_true(d->shutdown);
	assert_string_equal(fx.qmp_log, "");
	assert_int_equal(pvm_hv_xen_resume(hv, 8), 0);
	close(fd);
}

/*
 * QEMU failing or answering nonsense at each point: a clear error (logged
 * once), nothing written after the libxc part, and the guest either never
 * suspended or suspended for the caller to resume (as after any failed
 * save); the fake's read of a huge line or state stays bounded.
 */
static void test_save_hvm_dm_fails(void **state)
{
	static const struct {
		int mode, rc;
		bool suspended;
	} cases[] = {
		{ FX_QMP_SAVE_ERROR, -EIO, true },
		{ FX_QMP_SAVE_CLOSES, -EPIPE, true },
		{ FX_QMP_LONG_LINE, -EBADMSG, true },
		{ FX_QMP_NO_FDSET, -EBADMSG, true },
		{ FX_QMP_SAVE_HUGE, -EBADMSG, true },
		{ FX_QMP_GARBAGE, -EBADMSG, true },
		{ FX_QMP_NO_GREETING, -EBADMSG, false },
	};
	struct pvm_hv *hv = *state;
	struct fx_dom *d = running_hvm(7, "win", true);
	int fd = tmp_fd();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fx.qmp_mode = cases[i].mode;
		assert_int_equal(ftruncate(fd, 0), 0);
		assert_fails_once(pvm_hv_xen_save(hv, 7, fd, false, NULL),
				  cases[i].rc);
		assert_int_equal(d->shutdown, cases[i].suspended);
		assert_true(lseek(fd, 0, SEEK_END) <= (off_t)FX_SAVE_BYTES);
		if (d->shutdown)
			assert_int_equal(pvm_hv_xen_resume(hv, 7), 0);
	}
	/* No QEMU at all: its dirty log cannot go on; nothing suspended. */
	fx_qemu_stop();
	fx.qmp_mode = FX_QMP_OK;
	assert_fails_once(pvm_hv_xen_save(hv, 7, fd, false, NULL), -ENOENT);
	assert_false(d->shutdown);
	/* A guest that does not answer control/shutdown: it runs on. */
	d->honours_suspend = false;
	fx_qemu_start(7);
	assert_int_equal(pvm_hv_xen_suspend(hv, 7, 30), -ETIMEDOUT);
	assert_false(d->shutdown);
	assert_string_equal(d->control_shutdown, "");
	fx_qemu_stop();
	close(fd);
}

/* libxl's restore of hostile EMULATOR records (from a file or the wire):
 * refused, and no domain is left behind. */
static void test_restore_hvm_hostile(void **state)
{
	struct pvm_hv *hv = *state;
	const char *json = "{\"c_info\":{\"name\":\"win\"},\"b_info\":"
			   "{\"max_memkb\":256}}";
	uint8_t *b = calloc(1, FX_SAVE_BYTES + 64);
	uint32_t domid = 5;
	unsigned int before;
	int fd;

	assert_non_null(b);
	fx_save_stream(7, b);
	before = n_domains();
	for (int k = 0; k < 5; k++) {
		uint8_t *r = b + FX_SAVE_BYTES;
		size_t len = FX_SAVE_BYTES + 32;

		memset(r, 0, 64);
		r[0] = 3;                    /* EMULATOR_CONTEXT */
		r[4] = 24;                   /* hdr + 16 bytes */
		r[8] = 2;                    /* QEMU upstream */
		switch (k) {
		case 0: r[4] = 200; break;   /* longer than the stream */
		case 1: r[8] = 1; break;     /* qemu-traditional */
		case 2: r[4] = 4; break;     /* shorter than its header */
		case 3: r[0] = 2;            /* xenstore data, no NUL */
			memset(r + 16, 'k', 16); break;
		case 4: r[7] = 0x80; break;  /* 2 GiB */
		}
		fd = wrap_stream(b, len);
		assert_fails_once(pvm_hv_xen_restore(hv, json, fd, false,
						     &domid), -EIO);
		close(fd);
		assert_int_equal(domid, 0);
		assert_int_equal(n_domains(), before);
	}
	free(b);
}

/* A restored HVM domain's QEMU waits stopped: unpause goes through
 * libxl, which restarts it; the same nesting as xc_domain_unpause. */
static void test_unpause_hvm(void **state)
{
	struct pvm_hv *hv = *state;
	struct fx_dom *d = running_hvm(7, "win", false);

	snprintf(d->dm_version, sizeof(d->dm_version), "qemu_xen");
	assert_int_equal(hv->ops->domain_pause(hv, 7), 0);
	assert_int_equal(hv->ops->domain_pause(hv, 7), 0);
	assert_int_equal(hv->ops->domain_unpause(hv, 7), 0);
	assert_int_equal(d->pause_count, 1);
	assert_int_equal(hv->ops->domain_unpause(hv, 7), 0);
	assert_int_equal(d->pause_count, 0);
	assert_int_equal(fx_calls("libxl_domain_unpause"), 2);
	assert_fails_once(hv->ops->domain_unpause(hv, 7), -EINVAL);
	fx_fail("libxl_domain_unpause", 1, EIO);
	assert_int_equal(hv->ops->domain_pause(hv, 7), 0);
	assert_fails_once(hv->ops->domain_unpause(hv, 7), -EIO);
}

static void test_not_xen(void **state)
{
	struct pvm_hv fake = { 0 };
	static const struct pvm_hv_ops ops = { .name = "sim" };
	uint32_t domid;
	char *json;

	(void)state;
	fake.ops = &ops;
	assert_fails_once(pvm_hv_xen_save(&fake, 1, 0, false, NULL), -EINVAL);
	assert_fails_once(pvm_hv_xen_restore(&fake, "{}", 0, false, &domid),
			  -EINVAL);
	assert_fails_once(pvm_hv_xen_config_json(&fake, 1, &json), -EINVAL);
	assert_fails_once(pvm_hv_xen_resume(&fake, 1), -EINVAL);
	assert_fails_once(pvm_hv_xen_suspend(&fake, 1, 1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		XT_TEST(test_config_json), XT_TEST(test_suspend),
		XT_TEST(test_save),        XT_TEST(test_restore),
		XT_TEST(test_save_hvm),    XT_TEST(test_save_pvh),
		XT_TEST(test_save_hvm_dm_fails),
		XT_TEST(test_restore_hvm_hostile),
		XT_TEST(test_unpause_hvm), XT_TEST(test_not_xen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
