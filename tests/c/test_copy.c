/* copy_, fill_ and dtype conversions (copy.c), and the int dtypes of arange: values an int dtype cannot hold. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A tensor of dtype from doubles (dn_tensor_from_doubles checks they fit). */
static dn_tensor *from_doubles(dn_dtype dtype, int64_t n, const double *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&t, dtype, 1, (int64_t[]){n}, values));
  return t;
}

/* Conversions to an int dtype truncate toward zero where that is defined (the truncated value fits). */
static void test_conversion_truncates_in_range(void **state) {
  (void)state;
  dn_tensor *f = from_doubles(DN_F32, 8, (double[]){2.7, -2.7, -0.5, 0.99, 2147483520.0, -2147483648.0, 255.9, 0});
  dn_tensor *i;
  DN_OK_OR_FAIL(dn_to_dtype(&i, f, DN_I32));
  double want[8] = {2, -2, 0, 0, 2147483520.0, -2147483648.0, 255, 0};
  for (int k = 0; k < 8; k++) assert_true(dn_test_at(i, k) == want[k]);
  dn_tensor_release(i);
  dn_tensor *small = from_doubles(DN_F32, 4, (double[]){-0.9, 0, 255.9, 7.5});
  dn_tensor *u;
  DN_OK_OR_FAIL(dn_to_dtype(&u, small, DN_U8));
  assert_true(dn_test_at(u, 0) == 0 && dn_test_at(u, 2) == 255 && dn_test_at(u, 3) == 7);
  dn_tensor *back;   /* uint8 -> int32 always fits */
  DN_OK_OR_FAIL(dn_to_dtype(&back, u, DN_I32));
  assert_true(dn_test_at(back, 2) == 255);
  dn_tensor_release(back);
  dn_tensor_release(u);
  dn_tensor_release(small);
  dn_tensor_release(f);
}

static void test_conversion_refuses_what_does_not_fit(void **state) {
  (void)state;
  dn_tensor *out = (dn_tensor *)1;
  dn_tensor *big = from_doubles(DN_F32, 2, (double[]){1, 3e9});
  DN_EXPECT_ERROR(dn_to_dtype(&out, big, DN_I32), DN_EINVAL,
                  "to_dtype: value 3000000000 at position 2 is not representable as int32");
  assert_null(out);
  dn_tensor *edge = from_doubles(DN_F32, 1, (double[]){2147483648.0});   /* 2^31: one past INT32_MAX */
  DN_EXPECT_ERROR(dn_to_dtype(&out, edge, DN_I32), DN_EINVAL, "value 2147483648 at position 1");
  dn_tensor *low = from_doubles(DN_F32, 1, (double[]){-2147483904.0});   /* the float below INT32_MIN */
  DN_EXPECT_ERROR(dn_to_dtype(&out, low, DN_I32), DN_EINVAL, "value -2147483904 at position 1");
  dn_tensor *nonfinite = from_doubles(DN_F32, 3, (double[]){0, NAN, INFINITY});
  DN_EXPECT_ERROR(dn_to_dtype(&out, nonfinite, DN_I32), DN_EINVAL, "value nan at position 2 is not representable");
  DN_EXPECT_ERROR(dn_to_dtype(&out, nonfinite, DN_U8), DN_EINVAL, "value nan at position 2 is not representable as uint8");
  dn_tensor *inf = from_doubles(DN_F32, 1, (double[]){-INFINITY});
  DN_EXPECT_ERROR(dn_to_dtype(&out, inf, DN_I32), DN_EINVAL, "value -inf at position 1");
  dn_tensor *bytes = from_doubles(DN_F32, 3, (double[]){255, 300, -1});
  DN_EXPECT_ERROR(dn_to_dtype(&out, bytes, DN_U8), DN_EINVAL, "value 300 at position 2 is not representable as uint8");
  dn_tensor *ints = from_doubles(DN_I32, 3, (double[]){1, -1, 256});
  DN_EXPECT_ERROR(dn_to_dtype(&out, ints, DN_U8), DN_EINVAL, "value -1 at position 2 is not representable as uint8");
  assert_null(out);
  dn_tensor *list[] = {big, edge, low, nonfinite, inf, bytes, ints};
  for (size_t k = 0; k < sizeof list / sizeof *list; k++) dn_tensor_release(list[k]);
}

/* copy_ into an int tensor: all or nothing, the position counted in the destination's shape. */
static void test_copy_into_int(void **state) {
  (void)state;
  dn_tensor *dst;
  DN_OK_OR_FAIL(dn_tensor_full(&dst, DN_I32, 2, (int64_t[]){2, 3}, 7));
  dn_tensor *row = from_doubles(DN_F32, 3, (double[]){1, 2, 1e10});   /* broadcast over 2 rows */
  DN_EXPECT_ERROR(dn_copy_(dst, row), DN_EINVAL, "copy_: value 1e+10 at position 3 is not representable as int32");
  for (int k = 0; k < 6; k++) assert_true(dn_test_at(dst, k) == 7);   /* nothing written */
  dn_tensor *ok = from_doubles(DN_F32, 3, (double[]){1.9, -2.9, 3});
  DN_OK_OR_FAIL(dn_copy_(dst, ok));
  assert_true(dn_test_at(dst, 3) == 1 && dn_test_at(dst, 4) == -2 && dn_test_at(dst, 5) == 3);
  DN_EXPECT_ERROR(dn_fill_(dst, 3e9), DN_EINVAL, "fill_: value 3e+09 is not representable as int32");
  DN_EXPECT_ERROR(dn_fill_(dst, NAN), DN_EINVAL, "not representable as int32");
  dn_tensor *mask;
  DN_OK_OR_FAIL(dn_tensor_zeros(&mask, DN_U8, 1, (int64_t[]){3}));
  DN_EXPECT_ERROR(dn_fill_(mask, 256), DN_EINVAL, "fill_: value 256 is not representable as uint8");
  dn_tensor *list[] = {dst, row, ok, mask};
  for (size_t k = 0; k < sizeof list / sizeof *list; k++) dn_tensor_release(list[k]);
}

/* A large conversion is checked on several threads; the first bad position is still the one reported. */
static void test_large_conversion(void **state) {
  (void)state;
  int64_t n = 300000;
  dn_tensor *f;
  DN_OK_OR_FAIL(dn_tensor_arange(&f, DN_F32, 0, (double)n, 1));
  float *d = dn_tensor_data(f);
  dn_tensor *i;
  DN_OK_OR_FAIL(dn_to_dtype(&i, f, DN_I32));
  assert_true(dn_test_at(i, n - 1) == (double)(n - 1));
  dn_tensor_release(i);
  d[n - 5] = 1e20f;
  d[n - 100] = -3e9f;
  d[n - 2] = NAN;
  for (int threads = 1; threads <= 2; threads++) {
    DN_OK_OR_FAIL(dn_set_num_threads(threads));
    DN_EXPECT_ERROR(dn_to_dtype(&i, f, DN_I32), DN_EINVAL, "value -3000000000 at position 299901 is not representable");
  }
  dn_tensor_release(f);
}

static void test_arange_int_range(void **state) {
  (void)state;
  dn_tensor *t = (dn_tensor *)1;
  DN_OK_OR_FAIL(dn_tensor_arange(&t, DN_I32, 2147483640.0, 2147483648.0, 1));   /* up to INT32_MAX */
  assert_int_equal(t->shape[0], 8);
  assert_true(dn_test_at(t, 7) == 2147483647.0);
  dn_tensor_release(t);
  DN_EXPECT_ERROR(dn_tensor_arange(&t, DN_I32, 2147483640.0, 2147483650.0, 1), DN_EINVAL,
                  "arange: value 2147483649 at position 10 is not representable as int32");
  assert_null(t);
  DN_EXPECT_ERROR(dn_tensor_arange(&t, DN_I32, -3e9, 0, 1e9), DN_EINVAL, "value -3000000000 at position 1");
  DN_EXPECT_ERROR(dn_tensor_arange(&t, DN_U8, 250, 260, 1), DN_EINVAL,
                  "arange: value 259 at position 10 is not representable as uint8");
  DN_EXPECT_ERROR(dn_tensor_arange(&t, DN_U8, 3, -2, -1), DN_EINVAL, "value -1 at position 5");
  DN_OK_OR_FAIL(dn_tensor_arange(&t, DN_I32, 0.5, 3, 1));   /* 0.5, 1.5, 2.5 truncated toward zero */
  assert_true(dn_test_at(t, 0) == 0 && dn_test_at(t, 2) == 2);
  dn_tensor_release(t);
  /* an element count beyond int64 would be an undefined conversion: refused before it */
  DN_EXPECT_ERROR(dn_tensor_arange(&t, DN_F32, 0, 1e300, 1e-300), DN_EINVAL, "are too many");
  DN_EXPECT_ERROR(dn_tensor_arange(&t, DN_F32, -1e308, 1e308, 1), DN_EINVAL, "are too many");
  DN_EXPECT_ERROR(dn_tensor_arange(&t, DN_F32, 0, 1e19, 1), DN_EINVAL, "are too many");
  DN_OK_OR_FAIL(dn_tensor_arange(&t, DN_I32, 0, 0, 1));   /* empty: nothing to check */
  assert_int_equal(t->shape[0], 0);
  dn_tensor_release(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_conversion_truncates_in_range, dn_test_reset_modes),
    cmocka_unit_test_setup(test_conversion_refuses_what_does_not_fit, dn_test_reset_modes),
    cmocka_unit_test_setup(test_copy_into_int, dn_test_reset_modes),
    cmocka_unit_test_setup(test_large_conversion, dn_test_reset_modes),
    cmocka_unit_test_setup(test_arange_int_range, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
