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
	fx_add_dom(7, 64, 1, true)->pause_count = 0;
	assert_fails_once(pvm_hv_xen_save(hv, 7, fd, false, &cb), -EOPNOTSUPP);
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
		XT_TEST(test_not_xen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
