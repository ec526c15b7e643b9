/* pvm_hv_open() (hv/hv.c) reaches the Xen backend by name. */
#include "xentest.h"

#include <errno.h>
#include <stdlib.h>

static void test_open_by_name(void **state)
{
	struct pvm_hv *hv = NULL;

	(void)state;
	fx_reset();
	assert_int_equal(pvm_hv_open("xen", &hv), 0);
	assert_true(pvm_hv_is_xen(hv));
	assert_string_equal(hv->ops->name, "xen");
	hv->ops->close(hv);

	/* NULL: $PVM_HV. */
	setenv("PVM_HV", "xen", 1);
	assert_int_equal(pvm_hv_open(NULL, &hv), 0);
	assert_true(pvm_hv_is_xen(hv));
	hv->ops->close(hv);
	unsetenv("PVM_HV");

	/* Not on Xen: not -ENOENT, which would read "unknown backend". */
	fx_fail("xc_interface_open", 1, ENOENT);
	assert_int_equal(pvm_hv_open("xen", &hv), -EOPNOTSUPP);
	fx_fail("xs_open", 1, EACCES);
	assert_int_equal(pvm_hv_open("xen", &hv), -EACCES);
	assert_int_equal(fx.handles_open, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_by_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
