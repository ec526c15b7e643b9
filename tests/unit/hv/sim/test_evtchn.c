/* hv/sim/evtchn.c: ports, interdomain bindings, notify, state, death. */
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "simtest.h"

static void quiet(void *ctx, enum pvm_log_level lvl, const char *line)
{
	(void)ctx;
	(void)lvl;
	(void)line;
}

/* Events pending on @port of @domid (consumes them), without blocking. */
static uint64_t events(struct pvm_hv *hv, uint32_t domid, uint32_t port)
{
	eventfd_t v = 0;
	int fd;

	assert_int_equal(pvm_sim_evtchn_fd(hv, domid, port, &fd), 0);
	if (eventfd_read(fd, &v) < 0)
		return 0;
	return v;
}

static void assert_status(struct pvm_hv *hv, uint32_t domid, uint32_t port,
			  enum pvm_sim_evtchn_state st, uint32_t rdom,
			  uint32_t rport)
{
	struct pvm_sim_evtchn_status s;

	assert_int_equal(pvm_sim_evtchn_status(hv, domid, port, &s), 0);
	assert_int_equal(s.state, st);
	if (st != PVM_SIM_EVTCHN_CLOSED)
		assert_int_equal(s.remote_domid, rdom);
	if (st == PVM_SIM_EVTCHN_INTERDOMAIN)
		assert_int_equal(s.remote_port, rport);
}

static void test_bind_notify_close(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, NULL, false);
	uint32_t other = simtest_domain(hv, 64, 1, NULL, false);
	uint32_t gp, bp, gp2, x;
	struct pollfd pfd;

	(void)state;
	/* The guest offers a port to dom0; the backend binds to it. */
	assert_int_equal(pvm_sim_evtchn_alloc_unbound(hv, d, 0, &gp), 0);
	assert_true(gp > 0);
	assert_status(hv, d, gp, PVM_SIM_EVTCHN_UNBOUND, 0, 0);
	pvm_log_set_sink(quiet, NULL);
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(hv, other, d, gp, &x),
			 -EINVAL); /* reserved for dom0 */
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(hv, 0, d, 999, &x),
			 -EINVAL);
	pvm_log_set_sink(NULL, NULL);
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(hv, 0, d, gp, &bp), 0);
	assert_status(hv, d, gp, PVM_SIM_EVTCHN_INTERDOMAIN, 0, bp);
	assert_status(hv, 0, bp, PVM_SIM_EVTCHN_INTERDOMAIN, d, gp);
	pvm_log_set_sink(quiet, NULL);
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(hv, 0, d, gp, &x),
			 -EINVAL); /* already bound */
	pvm_log_set_sink(NULL, NULL);

	/* Notify wakes the other end, and only it. */
	assert_int_equal(pvm_sim_evtchn_fd(hv, 0, bp, &pfd.fd), 0);
	pfd.events = POLLIN;
	assert_int_equal(poll(&pfd, 1, 0), 0);
	assert_int_equal(pvm_sim_evtchn_notify(hv, d, gp), 0);
	assert_int_equal(pvm_sim_evtchn_notify(hv, d, gp), 0);
	assert_int_equal(poll(&pfd, 1, SIMTEST_WAIT_MS), 1);
	assert_int_equal(events(hv, 0, bp), 2);
	assert_int_equal(events(hv, d, gp), 0);
	assert_int_equal(pvm_sim_evtchn_notify(hv, 0, bp), 0);
	assert_int_equal(events(hv, d, gp), 1);
	assert_int_equal(events(hv, 0, bp), 0);

	/* A second channel gets another port. */
	assert_int_equal(pvm_sim_evtchn_alloc_unbound(hv, d, 0, &gp2), 0);
	assert_true(gp2 != gp);

	/* Closing the backend end leaves the guest's unbound, for dom0. */
	assert_int_equal(pvm_sim_evtchn_close(hv, 0, bp), 0);
	assert_status(hv, 0, bp, PVM_SIM_EVTCHN_CLOSED, 0, 0);
	assert_status(hv, d, gp, PVM_SIM_EVTCHN_UNBOUND, 0, 0);
	assert_int_equal(pvm_sim_evtchn_notify(hv, d, gp), 0); /* dropped */
	assert_int_equal(pvm_sim_evtchn_notify(hv, 0, bp), -EINVAL);
	assert_int_equal(pvm_sim_evtchn_close(hv, 0, bp), -EINVAL);
	assert_int_equal(pvm_sim_evtchn_fd(hv, 0, bp, &pfd.fd), -EINVAL);
	/* ... and the backend can bind again. */
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(hv, 0, d, gp, &bp), 0);
	assert_int_equal(pvm_sim_evtchn_notify(hv, 0, bp), 0);
	assert_int_equal(events(hv, d, gp), 1);

	/* Bad ports and domains. */
	assert_int_equal(pvm_sim_evtchn_notify(hv, d, 0), -EINVAL);
	assert_int_equal(pvm_sim_evtchn_notify(hv, d, UINT32_MAX), -EINVAL);
	assert_int_equal(pvm_sim_evtchn_alloc_unbound(hv, d, 99, &x), -ESRCH);
	assert_int_equal(pvm_sim_evtchn_alloc_unbound(hv, 99, 0, &x), -ESRCH);
	hv->ops->close(hv);
}

static void test_ports_run_out(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, NULL, false);
	uint32_t port, n = 0;
	int rc;

	(void)state;
	while ((rc = pvm_sim_evtchn_alloc_unbound(hv, d, 0, &port)) == 0)
		n++;
	assert_int_equal(rc, -ENOSPC);
	assert_true(n > 100);
	assert_int_equal(pvm_sim_evtchn_close(hv, d, 5), 0);
	assert_int_equal(pvm_sim_evtchn_alloc_unbound(hv, d, 0, &port), 0);
	assert_int_equal(port, 5);
	hv->ops->close(hv);
}

static void test_state_roundtrip(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, NULL, false);
	uint32_t p1, p2, p3, b1, x, d2;
	struct pvm_buf b;

	(void)state;
	pvm_buf_init(&b, 1 << 20);
	assert_int_equal(pvm_sim_evtchn_alloc_unbound(hv, d, 0, &p1), 0);
	assert_int_equal(pvm_sim_evtchn_alloc_unbound(hv, d, 0, &p2), 0);
	assert_int_equal(pvm_sim_evtchn_alloc_unbound(hv, d, 0, &p3), 0);
	assert_int_equal(pvm_sim_evtchn_close(hv, d, p2), 0); /* a hole */
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(hv, 0, d, p3, &b1), 0);
	assert_int_equal(hv->ops->evtchn_state_get(hv, d, &b), -EBUSY);
	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_int_equal(hv->ops->evtchn_state_get(hv, d, &b), 0);

	d2 = simtest_domain(hv, 64, 1, NULL, true);
	pvm_log_set_sink(quiet, NULL);
	for (size_t l = 0; l < b.len; l++)
		assert_int_equal(hv->ops->evtchn_state_set(hv, d2, b.data, l),
				 -EBADMSG);
	/* A duplicated / unordered port and a bad state are refused. */
	{
		uint8_t bad[8 + 32];

		assert_true(b.len == sizeof(bad));
		memcpy(bad, b.data, b.len);
		pvm_put_le32(bad + 8 + 16, pvm_get_le32(bad + 8));
		assert_int_equal(hv->ops->evtchn_state_set(hv, d2, bad,
							   sizeof(bad)),
				 -EBADMSG);
		memcpy(bad, b.data, b.len);
		pvm_put_le16(bad + 8 + 4, 7);
		assert_int_equal(hv->ops->evtchn_state_set(hv, d2, bad,
							   sizeof(bad)),
				 -EBADMSG);
	}
	pvm_log_set_sink(NULL, NULL);
	assert_int_equal(hv->ops->evtchn_state_set(hv, d2, b.data, b.len), 0);
	assert_int_equal(hv->ops->evtchn_state_set(hv, d2, b.data, b.len),
			 -EBUSY);
	/* Same numbers; the interdomain one comes back unbound for dom0. */
	assert_status(hv, d2, p1, PVM_SIM_EVTCHN_UNBOUND, 0, 0);
	assert_status(hv, d2, p2, PVM_SIM_EVTCHN_CLOSED, 0, 0);
	assert_status(hv, d2, p3, PVM_SIM_EVTCHN_UNBOUND, 0, 0);
	/* The re-created backend binds to the guest's old port number. */
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(hv, 0, d2, p3, &x), 0);
	assert_int_equal(pvm_sim_evtchn_notify(hv, 0, x), 0);
	assert_int_equal(events(hv, d2, p3), 1);
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
	pvm_buf_dispose(&b);
	hv->ops->close(hv);
}

/* Waits (bounded) for the echo guest to publish its port. */
static uint32_t echo_port(struct pvm_hv *hv, uint32_t d)
{
	const struct pvm_simguest_header *hdr = (const void *)simtest_mem(hv, d);
	uint64_t deadline = pvm_now_ms() + SIMTEST_WAIT_MS;
	uint32_t port;

	while ((port = __atomic_load_n(&hdr->echo_port, __ATOMIC_ACQUIRE)) == 0) {
		assert_true(pvm_now_ms() < deadline);
		simtest_sleep_ms(1);
	}
	return port;
}

/* A guest process on the other end: its hypercalls allocate the port and
 * notify back; pausing it stops the echo until unpause. */
static void test_guest_echo(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, "echo", false);
	const struct pvm_simguest_header *hdr = (const void *)simtest_mem(hv, d);
	uint32_t gp = echo_port(hv, d), bp;
	struct pollfd pfd = { .events = POLLIN };
	eventfd_t v;

	(void)state;
	assert_status(hv, d, gp, PVM_SIM_EVTCHN_UNBOUND, 0, 0);
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(hv, 0, d, gp, &bp), 0);
	assert_int_equal(pvm_sim_evtchn_fd(hv, 0, bp, &pfd.fd), 0);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(pvm_sim_evtchn_notify(hv, 0, bp), 0);
		assert_int_equal(poll(&pfd, 1, SIMTEST_WAIT_MS), 1);
		assert_int_equal(eventfd_read(pfd.fd, &v), 0);
		assert_int_equal(v, 1);
	}
	assert_int_equal(__atomic_load_n(&hdr->echo_count, __ATOMIC_ACQUIRE),
			 100);

	assert_int_equal(hv->ops->domain_pause(hv, d), 0);
	assert_int_equal(pvm_sim_evtchn_notify(hv, 0, bp), 0);
	assert_int_equal(poll(&pfd, 1, 100), 0); /* stopped: no answer */
	assert_int_equal(hv->ops->domain_unpause(hv, d), 0);
	assert_int_equal(poll(&pfd, 1, SIMTEST_WAIT_MS), 1);
	assert_int_equal(eventfd_read(pfd.fd, &v), 0);
	assert_int_equal(hdr->echo_count, 101);
	hv->ops->close(hv);
}

static void test_death_closes_ports(void **state)
{
	struct pvm_hv *hv = simtest_host();
	uint32_t d = simtest_domain(hv, 64, 1, NULL, false);
	struct pollfd pfd = { .fd = pvm_sim_host_fd(hv), .events = POLLIN };
	uint32_t gp, bp;
	pid_t pid;

	(void)state;
	assert_int_equal(pvm_sim_evtchn_alloc_unbound(hv, d, 0, &gp), 0);
	assert_int_equal(pvm_sim_evtchn_bind_interdomain(hv, 0, d, gp, &bp), 0);
	assert_int_equal(pvm_sim_domain_pid(hv, d, &pid), 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(poll(&pfd, 1, SIMTEST_WAIT_MS), 1);
	assert_int_equal(pvm_sim_host_reap(hv), 1);
	/* The backend's end is unbound (reserved for the dead domid). */
	assert_status(hv, 0, bp, PVM_SIM_EVTCHN_UNBOUND, d, 0);
	assert_int_equal(pvm_sim_evtchn_notify(hv, 0, bp), 0);
	assert_int_equal(pvm_sim_evtchn_notify(hv, d, gp), -ESRCH);
	assert_int_equal(pvm_sim_evtchn_close(hv, 0, bp), 0);
	hv->ops->close(hv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bind_notify_close),
		cmocka_unit_test(test_ports_run_out),
		cmocka_unit_test(test_state_roundtrip),
		cmocka_unit_test(test_guest_echo),
		cmocka_unit_test(test_death_closes_ports),
	};

	pvm_log_set_level(PVM_LOG_ERR);
	simtest_require_kernel();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
