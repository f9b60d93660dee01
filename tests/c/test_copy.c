/* copy_, fill_, zero_ and dtype conversions (copy.c): values an int dtype cannot hold (and arange's int dtypes),
   copies between views of one storage, writes into expanded views. */
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

/* --- copy_ within one storage ------------------------------------------------------------------------- */

/* [0, 1, ..., n-1] as float32. */
static dn_tensor *range(int64_t n) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_arange(&t, DN_F32, 0, (double)n, 1));
  return t;
}

static void assert_values(const dn_tensor *t, int64_t n, const double *want) {
  for (int64_t i = 0; i < n; i++)
    if (dn_test_at(t, i) != want[i]) fail_msg("element %lld: %g, expected %g", (long long)i, dn_test_at(t, i), want[i]);
}

static void test_copy_refuses_partial_overlap(void **state) {
  (void)state;
  dn_tensor *a = range(10), *head, *tail;
  DN_OK_OR_FAIL(dn_narrow(&head, a, 0, 0, 8));
  DN_OK_OR_FAIL(dn_narrow(&tail, a, 0, 2, 8));
  /* shifted windows of one row: memcpy on overlapping ranges before */
  DN_EXPECT_ERROR(dn_copy_(head, tail), DN_EINVAL,
                  "copy_: the source [8] and the destination [8] are views of the same memory that partially overlap");
  DN_EXPECT_ERROR(dn_copy_(tail, head), DN_EINVAL, "partially overlap");
  assert_values(a, 10, (double[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9});   /* nothing written */
  /* the same elements in another order (a transpose), and one element of the destination broadcast over it */
  dn_tensor *square, *m, *mt, *one;
  DN_OK_OR_FAIL(dn_narrow(&square, a, 0, 0, 4));
  DN_OK_OR_FAIL(dn_view(&m, square, 2, (int64_t[]){2, 2}));
  DN_OK_OR_FAIL(dn_t(&mt, m));
  DN_EXPECT_ERROR(dn_copy_(m, mt), DN_EINVAL, "partially overlap");
  DN_OK_OR_FAIL(dn_select(&one, a, 0, 3));
  DN_EXPECT_ERROR(dn_copy_(head, one), DN_EINVAL, "partially overlap");
  assert_values(a, 10, (double[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  dn_tensor *list[] = {a, head, tail, square, m, mt, one};
  for (size_t k = 0; k < sizeof list / sizeof *list; k++) dn_tensor_release(list[k]);
}

static void test_copy_within_one_storage_that_does_not_overlap(void **state) {
  (void)state;
  dn_tensor *a = range(10), *first, *second, *pairs, *even, *odd, *same, *again, *row;
  /* disjoint halves */
  DN_OK_OR_FAIL(dn_narrow(&first, a, 0, 0, 5));
  DN_OK_OR_FAIL(dn_narrow(&second, a, 0, 5, 5));
  DN_OK_OR_FAIL(dn_copy_(first, second));
  assert_values(a, 10, (double[]){5, 6, 7, 8, 9, 5, 6, 7, 8, 9});
  /* interleaved: the even and the odd elements share a span but no element */
  DN_OK_OR_FAIL(dn_view(&pairs, a, 2, (int64_t[]){5, 2}));
  DN_OK_OR_FAIL(dn_select(&even, pairs, 1, 0));
  DN_OK_OR_FAIL(dn_select(&odd, pairs, 1, 1));
  DN_OK_OR_FAIL(dn_copy_(even, odd));
  assert_values(a, 10, (double[]){6, 6, 8, 8, 5, 5, 7, 7, 9, 9});
  /* the exact self-copy, through the tensor itself, another view object, or a broadcast: a no-op */
  uint32_t version = a->storage->version;
  DN_OK_OR_FAIL(dn_copy_(a, a));
  DN_OK_OR_FAIL(dn_narrow(&same, a, 0, 2, 4));
  DN_OK_OR_FAIL(dn_narrow(&again, a, 0, 2, 4));
  DN_OK_OR_FAIL(dn_copy_(same, again));
  DN_OK_OR_FAIL(dn_view(&row, a, 2, (int64_t[]){1, 10}));
  DN_OK_OR_FAIL(dn_copy_(row, a));
  assert_values(a, 10, (double[]){6, 6, 8, 8, 5, 5, 7, 7, 9, 9});
  assert_true(a->storage->version > version);   /* still counts as an in-place write */
  /* empty views of one storage */
  dn_tensor *none1, *none2;
  DN_OK_OR_FAIL(dn_narrow(&none1, a, 0, 3, 0));
  DN_OK_OR_FAIL(dn_narrow(&none2, a, 0, 1, 0));
  DN_OK_OR_FAIL(dn_copy_(none1, none2));
  /* a large copy between disjoint halves of one storage takes the threaded path */
  dn_tensor *big = range(200000), *lo, *hi;
  DN_OK_OR_FAIL(dn_narrow(&lo, big, 0, 0, 100000));
  DN_OK_OR_FAIL(dn_narrow(&hi, big, 0, 100000, 100000));
  DN_OK_OR_FAIL(dn_copy_(lo, hi));
  assert_true(dn_test_at(big, 0) == 100000 && dn_test_at(big, 99999) == 199999);
  dn_tensor *list[] = {a, first, second, pairs, even, odd, same, again, row, none1, none2, big, lo, hi};
  for (size_t k = 0; k < sizeof list / sizeof *list; k++) dn_tensor_release(list[k]);
}

static void test_copy_into_expanded(void **state) {
  (void)state;
  dn_tensor *base, *expanded, *src = dn_test_random(9, 2, (int64_t[]){3, 4});
  DN_OK_OR_FAIL(dn_tensor_zeros(&base, DN_F32, 2, (int64_t[]){1, 4}));
  DN_OK_OR_FAIL(dn_broadcast_to(&expanded, base, 2, (int64_t[]){3, 4}));
  /* three source rows into one memory row: which one wins would depend on the threads */
  DN_EXPECT_ERROR(dn_copy_(expanded, src), DN_EINVAL,
                  "copy_: cannot write into an expanded tensor of shape [3,4] (several elements share memory)");
  /* the hostile driver: fill_ walked every element of a 2^40-element expanded view */
  {
    dn_tensor *one, *wide;
    DN_OK_OR_FAIL(dn_tensor_ones(&one, DN_F32, 2, (int64_t[]){1, 1}));
    DN_OK_OR_FAIL(dn_broadcast_to(&wide, one, 2, (int64_t[]){(int64_t)1 << 20, (int64_t)1 << 20}));
    DN_EXPECT_ERROR(dn_fill_(wide, 2), DN_EINVAL, "fill_: cannot write into an expanded tensor");
    dn_tensor_release(wide);
    dn_tensor_release(one);
  }
  for (int k = 0; k < 4; k++) assert_true(dn_test_at(base, k) == 0);
  dn_tensor_release(base);
  dn_tensor_release(expanded);
  dn_tensor_release(src);
}

/* zero_: every dtype and layout, -0.0 written as +0.0, the in-place rules, the version bump. */
static void test_zero(void **state) {
  (void)state;
  const dn_dtype types[] = {DN_F32, DN_I32, DN_U8};
  for (int t = 0; t < 3; t++) {
    dn_tensor *a, *tr;
    DN_OK_OR_FAIL(dn_tensor_full(&a, types[t], 2, (int64_t[]){3, 5}, 7));
    uint32_t version = a->storage->version;
    DN_OK_OR_FAIL(dn_zero_(a));
    assert_true(a->storage->version != version);
    for (int k = 0; k < 15; k++) assert_true(dn_test_at(a, k) == 0);
    DN_OK_OR_FAIL(dn_fill_(a, 3));
    DN_OK_OR_FAIL(dn_t(&tr, a));   /* a strided view: only its elements change */
    dn_tensor *col;
    DN_OK_OR_FAIL(dn_select(&col, tr, 0, 1));   /* a[:, 1] */
    DN_OK_OR_FAIL(dn_zero_(col));
    for (int k = 0; k < 15; k++) assert_true(dn_test_at(a, k) == (k % 5 == 1 ? 0 : 3));
    dn_tensor *list[] = {a, tr, col};
    for (size_t k = 0; k < 3; k++) dn_tensor_release(list[k]);
  }
  dn_tensor *f;
  DN_OK_OR_FAIL(dn_tensor_full(&f, DN_F32, 1, (int64_t[]){2}, -1));
  DN_OK_OR_FAIL(dn_zero_(f));
  assert_false(signbit(((float *)dn_tensor_data(f))[0]));
  DN_OK_OR_FAIL(dn_fill_(f, -0.0));   /* fill_ keeps the sign it is given */
  assert_true(signbit(((float *)dn_tensor_data(f))[1]));
  /* the rules of every in-place op */
  DN_OK_OR_FAIL(dn_requires_grad_(f, true));
  DN_EXPECT_ERROR(dn_zero_(f), DN_EINVAL, "zero_: in-place operation on a tensor that requires grad");
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_zero_(f));
  dn_set_grad_enabled(mode);
  dn_tensor *row, *ex, *empty;
  DN_OK_OR_FAIL(dn_tensor_zeros(&row, DN_F32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_broadcast_to(&ex, row, 2, (int64_t[]){4, 3}));
  DN_EXPECT_ERROR(dn_zero_(ex), DN_EINVAL, "zero_: cannot write into an expanded tensor");
  DN_OK_OR_FAIL(dn_tensor_new(&empty, DN_F32, 2, (int64_t[]){0, 3}));
  DN_OK_OR_FAIL(dn_zero_(empty));
  dn_tensor *list[] = {f, row, ex, empty};
  for (size_t k = 0; k < 4; k++) dn_tensor_release(list[k]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_conversion_truncates_in_range, dn_test_reset_modes),
    cmocka_unit_test_setup(test_conversion_refuses_what_does_not_fit, dn_test_reset_modes),
    cmocka_unit_test_setup(test_copy_into_int, dn_test_reset_modes),
    cmocka_unit_test_setup(test_large_conversion, dn_test_reset_modes),
    cmocka_unit_test_setup(test_arange_int_range, dn_test_reset_modes),
    cmocka_unit_test_setup(test_copy_refuses_partial_overlap, dn_test_reset_modes),
    cmocka_unit_test_setup(test_copy_within_one_storage_that_does_not_overlap, dn_test_reset_modes),
    cmocka_unit_test_setup(test_copy_into_expanded, dn_test_reset_modes),
    cmocka_unit_test_setup(test_zero, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
