/*
 * Tests for checkpoint/stream/xlhdr.c: the xl save-file header as xl's
 * tools/xl/xl.h lays it out (option data = le32 config length + config),
 * hostile headers (every truncation, every field wrong, every length past
 * its bound), pvmig's older layout, and encode -> decode round trips.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "checkpoint/stream/stream.h"
#include "common/common.h"

static void good_hdr(uint8_t h[PVM_CKPT_XL_HDR_SIZE], uint32_t mandatory,
		     uint32_t optlen)
{
	memcpy(h, PVM_CKPT_XL_MAGIC, PVM_CKPT_XL_MAGIC_LEN);
	pvm_put_le32(h + 32, PVM_CKPT_XL_BYTEORDER);
	pvm_put_le32(h + 36, mandatory);
	pvm_put_le32(h + 40, 0);
	pvm_put_le32(h + 44, optlen);
}

static void expect_decode(const uint8_t *h, size_t len, int want,
			  const char *in_msg)
{
	struct pvm_ckpt_xlhdr x;
	char err[160] = "";

	assert_int_equal(pvm_ckpt_xlhdr_decode(h, len, &x, err, sizeof(err)),
			 want);
	if (in_msg && !strstr(err, in_msg))
		fail_msg("message '%s' lacks '%s'", err, in_msg);
}

static void test_decode_good(void **state)
{
	uint8_t h[PVM_CKPT_XL_HDR_SIZE];
	struct pvm_ckpt_xlhdr x;

	(void)state;
	/* What xl save writes: JSON config, stream v2. */
	good_hdr(h, PVM_CKPT_XL_MANDATORY_JSON | PVM_CKPT_XL_MANDATORY_STREAMV2,
		 4321);
	pvm_put_le32(h + 40, 0x80); /* optional flags: ignored, as xl does */
	assert_int_equal(pvm_ckpt_xlhdr_decode(h, sizeof(h), &x, NULL, 0), 0);
	assert_int_equal(x.mandatory, 3);
	assert_int_equal(x.optional, 0x80);
	assert_int_equal(x.optlen, 4321);
	good_hdr(h, PVM_CKPT_XL_MANDATORY_STREAMV2, PVM_CKPT_XL_OPTDATA_MAX);
	assert_int_equal(pvm_ckpt_xlhdr_decode(h, sizeof(h), &x, NULL, 0), 0);
	assert_true(pvm_ckpt_xlhdr_is(h, sizeof(h)));
}

static void test_decode_hostile(void **state)
{
	uint8_t h[PVM_CKPT_XL_HDR_SIZE];

	(void)state;
	good_hdr(h, PVM_CKPT_XL_MANDATORY_STREAMV2, 8);
	for (size_t n = 0; n < sizeof(h); n++)
		expect_decode(h, n, -EBADMSG, n ? "truncated" : NULL);
	for (size_t i = 0; i < PVM_CKPT_XL_MAGIC_LEN; i++) {
		good_hdr(h, PVM_CKPT_XL_MANDATORY_STREAMV2, 8);
		h[i] ^= 0x01;
		expect_decode(h, sizeof(h), -EBADMSG, "bad magic");
		assert_false(pvm_ckpt_xlhdr_is(h, sizeof(h)));
	}
	good_hdr(h, PVM_CKPT_XL_MANDATORY_STREAMV2, 8);
	pvm_put_le32(h + 32, 0x04030201);
	expect_decode(h, sizeof(h), -ENOTSUP, "big-endian");
	good_hdr(h, 0, 8);
	expect_decode(h, sizeof(h), -ENOTSUP, "legacy");
	good_hdr(h, PVM_CKPT_XL_MANDATORY_JSON, 8);
	expect_decode(h, sizeof(h), -ENOTSUP, "legacy");
	for (unsigned bit = 2; bit < 32; bit++) {
		good_hdr(h, PVM_CKPT_XL_MANDATORY_STREAMV2 | (1u << bit), 8);
		expect_decode(h, sizeof(h), -ENOTSUP, "unknown mandatory");
	}
	good_hdr(h, PVM_CKPT_XL_MANDATORY_STREAMV2, PVM_CKPT_XL_OPTDATA_MAX + 1);
	expect_decode(h, sizeof(h), -E2BIG, "option data");
	good_hdr(h, PVM_CKPT_XL_MANDATORY_STREAMV2, UINT32_MAX);
	expect_decode(h, sizeof(h), -E2BIG, "option data");
}

static void test_config(void **state)
{
	uint8_t opt[64];
	const uint8_t *cfg;
	uint32_t len;
	char err[160];

	(void)state;
	/* xl's layout, with a tail xl skips. */
	memset(opt, 0xee, sizeof(opt));
	pvm_put_le32(opt, 11);
	memcpy(opt + 4, "name = \"x\"\n", 11);
	assert_int_equal(pvm_ckpt_xlhdr_config(opt, 24, &cfg, &len, NULL, 0), 0);
	assert_ptr_equal(cfg, opt + 4);
	assert_int_equal(len, 11);
	/* Exactly filling; empty config; no option data at all. */
	assert_int_equal(pvm_ckpt_xlhdr_config(opt, 15, &cfg, &len, NULL, 0), 0);
	assert_int_equal(len, 11);
	pvm_put_le32(opt, 0);
	assert_int_equal(pvm_ckpt_xlhdr_config(opt, 4, &cfg, &len, NULL, 0), 0);
	assert_int_equal(len, 0);
	assert_int_equal(pvm_ckpt_xlhdr_config(opt, 0, &cfg, &len, NULL, 0), 0);
	assert_null(cfg);
	assert_int_equal(len, 0);
	/* The length word itself cut, then every length past the data. */
	for (uint32_t n = 1; n < 4; n++)
		assert_int_equal(pvm_ckpt_xlhdr_config(opt, n, &cfg, &len, err,
						       sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "config length"));
	for (uint32_t optlen = 4; optlen <= 24; optlen++) {
		uint32_t bad[] = { optlen - 3, optlen, 0x7fffffffu, UINT32_MAX };

		for (size_t i = 0; i < PVM_ARRAY_SIZE(bad); i++) {
			pvm_put_le32(opt, bad[i]);
			assert_int_equal(pvm_ckpt_xlhdr_config(opt, optlen, &cfg,
							       &len, err,
							       sizeof(err)),
					 -EBADMSG);
			assert_null(cfg);
			assert_non_null(strstr(err, "truncated"));
		}
	}
	/* pvmig's older layout: text straight away, NUL padding dropped. */
	memset(opt, 0, sizeof(opt));
	memcpy(opt, "# pvmig x\nname = \"y\"\n", 21);
	assert_int_equal(pvm_ckpt_xlhdr_config(opt, 24, &cfg, &len, NULL, 0), 0);
	assert_ptr_equal(cfg, opt);
	assert_int_equal(len, 21);
}

static void test_encode_round_trip(void **state)
{
	uint8_t pre[PVM_CKPT_XL_PREFIX_SIZE], file[128];
	struct pvm_ckpt_xlhdr x;
	const uint8_t *cfg;
	uint32_t optlen, len;

	(void)state;
	for (uint32_t n = 0; n <= 20; n++) {
		assert_int_equal(pvm_ckpt_xlhdr_encode(pre, 0, n, &optlen),
				 PVM_CKPT_XL_PREFIX_SIZE);
		assert_int_equal(optlen % 8, 0);
		assert_true(optlen >= 4 + n && optlen < 4 + n + 8);
		assert_int_equal(pvm_ckpt_xlhdr_decode(pre, sizeof(pre), &x,
						       NULL, 0), 0);
		assert_int_equal(x.mandatory, PVM_CKPT_XL_MANDATORY_STREAMV2);
		assert_int_equal(x.optlen, optlen);
		memset(file, 0, sizeof(file));
		memcpy(file, pre + 48, 4);
		memset(file + 4, 'a', n);
		assert_int_equal(pvm_ckpt_xlhdr_config(file, optlen, &cfg, &len,
						       NULL, 0), 0);
		assert_ptr_equal(cfg, file + 4);
		assert_int_equal(len, n);
	}
	assert_int_equal(pvm_ckpt_xlhdr_encode(pre, PVM_CKPT_XL_MANDATORY_JSON,
					       100, &optlen),
			 PVM_CKPT_XL_PREFIX_SIZE);
	assert_int_equal(pvm_ckpt_xlhdr_decode(pre, sizeof(pre), &x, NULL, 0), 0);
	assert_int_equal(x.mandatory, 3);
	/* Too large for any reader: refused, nothing claimed written. */
	assert_int_equal(pvm_ckpt_xlhdr_encode(pre, 0, PVM_CKPT_XL_OPTDATA_MAX,
					       &optlen), 0);
	assert_int_equal(pvm_ckpt_xlhdr_encode(pre, 0, UINT32_MAX, &optlen), 0);
	assert_int_equal(pvm_ckpt_xlhdr_encode(pre, 0,
					       PVM_CKPT_XL_OPTDATA_MAX - 4,
					       &optlen),
			 PVM_CKPT_XL_PREFIX_SIZE);
	assert_int_equal(optlen, PVM_CKPT_XL_OPTDATA_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_good),
		cmocka_unit_test(test_decode_hostile),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_encode_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
