/*
 * hv/sim/xenstored/store.c: path rules, ACL rules and the node tree,
 * table-driven, without sockets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "hv/sim/xenstored/internal.h"

static void test_path_valid(void **state)
{
	static char longp[XENSTORE_ABS_PATH_MAX + 2];
	static const struct {
		const char *path;
		bool ok;
	} cases[] = {
		{ "/", true },
		{ "/local/domain/0/name", true },
		{ "/a-b_c@d/0", true },
		{ "", false },
		{ "local", false },      /* not absolute */
		{ "//", false },
		{ "/a//b", false },
		{ "/a/", false },       /* trailing slash */
		{ "/a b", false },
		{ "/a.b", false },
		{ "/a\tb", false },
		{ "/ä", false },
	};

	(void)state;
	for (size_t i = 0; i < PVM_ARRAY_SIZE(cases); i++) {
		if (path_valid(cases[i].path) != cases[i].ok)
			fail_msg("path_valid(\"%s\") != %d", cases[i].path,
				 cases[i].ok);
	}
	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[XENSTORE_ABS_PATH_MAX] = '\0';
	assert_true(path_valid(longp));
	longp[XENSTORE_ABS_PATH_MAX] = 'x';
	assert_false(path_valid(longp));
	/* Below a domain's directory: at most XENSTORE_REL_PATH_MAX more. */
	memcpy(longp, "/local/domain/12/", 17);
	longp[17 + XENSTORE_REL_PATH_MAX] = '\0';
	assert_true(path_valid(longp));
	longp[17 + XENSTORE_REL_PATH_MAX] = 'x';
	longp[17 + XENSTORE_REL_PATH_MAX + 1] = '\0';
	assert_false(path_valid(longp));
}

static void test_is_child(void **state)
{
	(void)state;
	assert_true(is_child("/a/b", "/a"));
	assert_true(is_child("/a", "/a"));
	assert_true(is_child("/anything", "/"));
	assert_false(is_child("/ab", "/a"));
	assert_false(is_child("/a", "/a/b"));
	assert_false(is_child("@introduceDomain", "/"));
}

static void test_perm_for(void **state)
{
	const struct xs_perm p[] = {
		{ 5, XS_PERM_READ },                  /* owner 5, others read */
		{ 7, XS_PERM_READ | XS_PERM_WRITE },
		{ 8, XS_PERM_NONE },
	};
	const unsigned int all = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER;
	static const struct {
		uint16_t domid, target;
		unsigned int want;
	} cases[] = {
		{ 0, XS_DOMID_INVALID, XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER },
		{ 5, XS_DOMID_INVALID, XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER },
		{ 7, XS_DOMID_INVALID, XS_PERM_READ | XS_PERM_WRITE },
		{ 8, XS_DOMID_INVALID, XS_PERM_NONE },
		{ 9, XS_DOMID_INVALID, XS_PERM_READ },
		{ 9, 5, XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER }, /* target */
		{ 9, 7, XS_PERM_READ | XS_PERM_WRITE },
		{ 8, 7, XS_PERM_NONE },  /* its own entry first */
	};

	(void)state;
	for (size_t i = 0; i < PVM_ARRAY_SIZE(cases); i++)
		assert_int_equal(perm_for(cases[i].domid, cases[i].target, p, 3),
				 cases[i].want);
	assert_int_equal(perm_for(0, XS_DOMID_INVALID, p, 0), all);
	assert_int_equal(perm_for(5, XS_DOMID_INVALID, p, 0), XS_PERM_NONE);
}

static void test_perm_text(void **state)
{
	static const char *const bad[] = { "", "b", "x1", "b-1", "b65536",
					   "b1 ", "B1", "b0x10" };
	struct xs_perm p;
	char buf[16];

	(void)state;
	assert_true(perm_parse("b65535", &p));
	assert_int_equal(p.domid, 65535);
	assert_int_equal(p.access, XS_PERM_READ | XS_PERM_WRITE);
	assert_true(perm_parse("n0", &p));
	assert_int_equal(p.access, XS_PERM_NONE);
	assert_true(perm_parse("w12", &p));
	assert_int_equal(perm_format(&p, buf, sizeof(buf)), 3);
	assert_string_equal(buf, "w12");
	assert_int_equal(perm_format(&p, buf, 3), -ERANGE);
	for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++)
		if (perm_parse(bad[i], &p))
			fail_msg("perm_parse accepted \"%s\"", bad[i]);
}

static void test_parse_uint(void **state)
{
	unsigned long v;

	(void)state;
	assert_true(parse_uint("0", 10, &v));
	assert_int_equal(v, 0);
	assert_true(parse_uint("4294967295", 0xffffffffUL, &v));
	assert_false(parse_uint("4294967296", 0xffffffffUL, &v));
	assert_false(parse_uint("99999999999", ~0UL, &v));
	assert_false(parse_uint("", 10, &v));
	assert_false(parse_uint("-1", 10, &v));
	assert_false(parse_uint("1a", 10, &v));
}

static struct xs_node *add(struct xs_node *parent, const char *name)
{
	const struct xs_perm p = { 0, XS_PERM_NONE };
	struct xs_node *n = node_new(name, strlen(name));

	assert_non_null(n);
	assert_int_equal(node_set_perms(n, &p, 1), 0);
	assert_int_equal(node_add_child(parent, n), 0);
	return n;
}

static void test_tree(void **state)
{
	struct xs_node *root = node_new("", 0), *a, *b, *c, *copy;
	char path[64];

	(void)state;
	assert_non_null(root);
	a = add(root, "a");
	b = add(a, "b");
	c = add(a, "c");
	assert_int_equal(node_set_value(b, "v\0w", 3), 0);
	assert_ptr_equal(tree_lookup(root, "/a/b"), b);
	assert_ptr_equal(tree_lookup(root, "/"), root);
	assert_null(tree_lookup(root, "/a/x"));
	assert_ptr_equal(tree_deepest(root, "/a/x/y"), a);
	assert_int_equal(node_path(c, path, sizeof(path)), 0);
	assert_string_equal(path, "/a/c");
	assert_int_equal(node_path(c, path, 4), -ERANGE);
	assert_int_equal(node_count(root), 4);
	copy = node_clone(root);
	assert_non_null(copy);
	assert_int_equal(node_count(copy), 4);
	assert_memory_equal(tree_lookup(copy, "/a/b")->value, "v\0w", 3);
	node_unlink(b);
	node_free(b);
	assert_null(tree_lookup(root, "/a/b"));
	assert_non_null(tree_lookup(copy, "/a/b")); /* deep copy */
	assert_int_equal(a->nkids, 1);
	assert_int_equal(node_set_perms(a, NULL, 0), -EINVAL);
	node_free(copy);
	node_free(root);
	node_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_valid),
		cmocka_unit_test(test_is_child),
		cmocka_unit_test(test_perm_for),
		cmocka_unit_test(test_perm_text),
		cmocka_unit_test(test_parse_uint),
		cmocka_unit_test(test_tree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
