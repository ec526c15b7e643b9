/* hv/xen/devices.c against the fake Xen host: libxl disk/nic add/remove. */
#include "xentest.h"

#include <errno.h>

static void test_disk(void **state)
{
	struct pvm_hv *hv = *state;
	struct pvm_hv_xen_disk disk = {
		.target = "/var/lib/pvmig/web.img",
		.vdev = "xvda",
		.readonly = false,
	};

	fx_add_dom(3, 64, 1, false);
	assert_int_equal(pvm_hv_xen_disk_attach(hv, 3, &disk), 0);
	assert_int_equal(fx.n_devices, 1);
	assert_true(fx.devices[0].disk);
	assert_string_equal(fx.devices[0].target, "/var/lib/pvmig/web.img");
	assert_string_equal(fx.devices[0].vdev, "xvda");
	assert_int_equal(fx.devices[0].readwrite, 1);
	disk.readonly = true;
	disk.vdev = "xvdb";
	assert_int_equal(pvm_hv_xen_disk_attach(hv, 3, &disk), 0);
	assert_int_equal(fx.devices[1].readwrite, 0);

	assert_int_equal(pvm_hv_xen_disk_detach(hv, 3, &disk), 0);
	assert_true(fx.devices[1].removed);
	assert_fails_once(pvm_hv_xen_disk_detach(hv, 3, &disk), -ENOENT);
	assert_fails_once(pvm_hv_xen_disk_attach(hv, 8, &disk), -ESRCH);
	fx_fail("libxl_device_disk_add", 1, EIO);
	assert_fails_once(pvm_hv_xen_disk_attach(hv, 3, &disk), -EIO);

	disk.vdev = "";
	assert_fails_once(pvm_hv_xen_disk_attach(hv, 3, &disk), -EINVAL);
	disk.vdev = "xvdc";
	disk.target = NULL;
	assert_fails_once(pvm_hv_xen_disk_attach(hv, 3, &disk), -EINVAL);
	assert_int_equal(fx_calls("libxl_device_disk_add"), 4);
}

static void test_nic(void **state)
{
	struct pvm_hv *hv = *state;
	struct pvm_hv_xen_nic nic = {
		.devid = 0,
		.mac = "00:16:3e:01:02:0a",
		.bridge = "xenbr1",
	};
	static const uint8_t mac[6] = { 0x00, 0x16, 0x3e, 0x01, 0x02, 0x0a };

	fx_add_dom(3, 64, 1, false);
	assert_int_equal(pvm_hv_xen_nic_attach(hv, 3, &nic), 0);
	assert_memory_equal(fx.devices[0].mac, mac, 6);
	assert_string_equal(fx.devices[0].target, "xenbr1");
	assert_int_equal(pvm_hv_xen_nic_detach(hv, 3, &nic), 0);
	assert_true(fx.devices[0].removed);

	nic.mac = "00:16:3e:01:02";
	assert_fails_once(pvm_hv_xen_nic_attach(hv, 3, &nic), -EINVAL);
	nic.mac = "00:16:3e:01:02:0a:ff";
	assert_fails_once(pvm_hv_xen_nic_attach(hv, 3, &nic), -EINVAL);
	nic.mac = NULL;
	nic.devid = -1;
	assert_fails_once(pvm_hv_xen_nic_detach(hv, 3, &nic), -EINVAL);
	fx_fail("libxl_device_nic_remove", 1, EINVAL);
	nic.devid = 0;
	assert_fails_once(pvm_hv_xen_nic_detach(hv, 3, &nic), -EINVAL);
}

static void not_xen_close(struct pvm_hv *hv)
{
	(void)hv;
}

/* Another backend's instance is refused, not cast. */
static void test_not_xen(void **state)
{
	static const struct pvm_hv_ops other = {
		.name = "sim",
		.close = not_xen_close,
	};
	struct pvm_hv fake = { .ops = &other };
	struct pvm_hv_xen_disk disk = { .target = "/x", .vdev = "xvda" };
	struct pvm_hv_xen_nic nic = { .devid = 0 };

	(void)state;
	assert_false(pvm_hv_is_xen(&fake));
	assert_false(pvm_hv_is_xen(NULL));
	assert_fails_once(pvm_hv_xen_disk_attach(&fake, 1, &disk), -EINVAL);
	assert_fails_once(pvm_hv_xen_nic_detach(&fake, 1, &nic), -EINVAL);
	assert_int_equal(fx.n_devices, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		XT_TEST(test_disk),
		XT_TEST(test_nic),
		XT_TEST(test_not_xen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
