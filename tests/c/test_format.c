/* dn_tensor_format: exact text for every layout rule. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Asserts t formats exactly as `want`. */
static void expect_text(const dn_tensor *t, const char *want) {
  char *got = dn_tensor_format(t);
  assert_non_null(got);
  if (strcmp(got, want)) fail_msg("formatted as\n%s\n--- expected\n%s\n---", got, want);
  free(got);
}

static dn_tensor *int32_from(int ndim, const int64_t *shape, const int32_t *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_I32, ndim, shape, values));
  return t;
}

static void test_small_float(void **state) {
  (void)state;
  dn_tensor *t = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
  expect_text(t,
              "[[ 1.0000,  2.0000,  3.0000],\n"
              " [ 4.0000,  5.0000,  6.0000]]\n"
              "dropnet.Tensor of shape [2,3], float32");
  dn_tensor_release(t);

  /* negative values use the sign column; all right-aligned to the widest */
  t = dn_test_from(1, (int64_t[]){4}, (float[]){-1.5f, 2.25f, 10, 0.05f});
  expect_text(t,
              "[ -1.5000,   2.2500,  10.0000,   0.0500]\n"
              "dropnet.Tensor of shape [4], float32");
  dn_tensor_release(t);
}

static void test_integers(void **state) {
  (void)state;
  dn_tensor *t = int32_from(2, (int64_t[]){2, 2}, (int32_t[]){1, -2, 30, 4});
  expect_text(t,
              "[[  1,  -2],\n"
              " [ 30,   4]]\n"
              "dropnet.Tensor of shape [2,2], int32");
  dn_tensor_release(t);

  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_U8, 1, (int64_t[]){3}, (uint8_t[]){0, 255, 7}));
  expect_text(t, "[   0,  255,    7]\ndropnet.Tensor of shape [3], uint8");
  dn_tensor_release(t);

  t = int32_from(1, (int64_t[]){2}, (int32_t[]){INT32_MIN, INT32_MAX});
  expect_text(t, "[-2147483648,  2147483647]\ndropnet.Tensor of shape [2], int32");
  dn_tensor_release(t);
}

static void test_scalar_and_empty(void **state) {
  (void)state;
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_full(&t, DN_F32, 0, NULL, 3.5));
  expect_text(t, "tensor(3.5000)");
  dn_tensor_release(t);
  DN_OK_OR_FAIL(dn_tensor_full(&t, DN_F32, 0, NULL, -2));
  expect_text(t, "tensor(-2.0000)");
  dn_tensor_release(t);
  DN_OK_OR_FAIL(dn_tensor_full(&t, DN_I32, 0, NULL, 7));
  expect_text(t, "tensor(7, dtype=int32)");
  dn_tensor_release(t);
  DN_OK_OR_FAIL(dn_tensor_full(&t, DN_F32, 0, NULL, 1e-9));
  expect_text(t, "tensor(1.0000e-09)");
  dn_tensor_release(t);

  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_F32, 2, (int64_t[]){0, 3}));
  expect_text(t, "[]\ndropnet.Tensor of shape [0,3], float32");
  dn_tensor_release(t);
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_I32, 1, (int64_t[]){0}));
  expect_text(t, "[]\ndropnet.Tensor of shape [0], int32");
  dn_tensor_release(t);
}

static void test_views_print_logical_values(void **state) {
  (void)state;
  dn_tensor *a = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6}), *tr, *col, *nc;
  DN_OK_OR_FAIL(dn_t(&tr, a));
  expect_text(tr,
              "[[ 1.0000,  4.0000],\n"
              " [ 2.0000,  5.0000],\n"
              " [ 3.0000,  6.0000]]\n"
              "dropnet.Tensor of shape [3,2], float32");
  DN_OK_OR_FAIL(dn_select(&col, a, 1, 2));   /* offset 2, stride 3 */
  expect_text(col, "[ 3.0000,  6.0000]\ndropnet.Tensor of shape [2], float32");
  nc = dn_test_noncontiguous(a);
  assert_false(dn_tensor_is_contiguous(nc));
  expect_text(nc,
              "[[ 1.0000,  2.0000,  3.0000],\n"
              " [ 4.0000,  5.0000,  6.0000]]\n"
              "dropnet.Tensor of shape [2,3], float32");
  dn_tensor *list[] = {a, tr, col, nc};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);

  /* a broadcast view (stride 0) prints its repeated values */
  dn_tensor *row = int32_from(1, (int64_t[]){2}, (int32_t[]){5, 6}), *ex;
  DN_OK_OR_FAIL(dn_broadcast_to(&ex, row, 2, (int64_t[]){2, 2}));
  expect_text(ex, "[[ 5,  6],\n [ 5,  6]]\ndropnet.Tensor of shape [2,2], int32");
  dn_tensor_release(ex);
  dn_tensor_release(row);
}

static void test_three_dims(void **state) {
  (void)state;
  dn_tensor *t = int32_from(3, (int64_t[]){2, 2, 2}, (int32_t[]){1, 2, 3, 4, 5, 6, 7, 8});
  expect_text(t,
              "[[[ 1,  2],\n"
              "  [ 3,  4]],\n"
              "\n"
              " [[ 5,  6],\n"
              "  [ 7,  8]]]\n"
              "dropnet.Tensor of shape [2,2,2], int32");
  dn_tensor_release(t);
}

static void test_scientific(void **state) {
  (void)state;
  dn_tensor *t = dn_test_from(1, (int64_t[]){2}, (float[]){1e-5f, 1});   /* small value */
  expect_text(t, "[ 1.0000e-05,  1.0000e+00]\ndropnet.Tensor of shape [2], float32");
  dn_tensor_release(t);
  t = dn_test_from(1, (int64_t[]){2}, (float[]){0.5f, -2000});   /* ratio > 1e3 */
  expect_text(t, "[ 5.0000e-01, -2.0000e+03]\ndropnet.Tensor of shape [2], float32");
  dn_tensor_release(t);
  t = dn_test_from(1, (int64_t[]){2}, (float[]){1e9f, 2e9f});   /* large */
  expect_text(t, "[ 1.0000e+09,  2.0000e+09]\ndropnet.Tensor of shape [2], float32");
  dn_tensor_release(t);
  /* zeros do not count as small; ratio 1000 exactly stays fixed */
  t = dn_test_from(1, (int64_t[]){3}, (float[]){0, 1, 1000});
  expect_text(t, "[    0.0000,     1.0000,  1000.0000]\ndropnet.Tensor of shape [3], float32");
  dn_tensor_release(t);
  t = dn_test_from(1, (int64_t[]){2}, (float[]){0, 0});
  expect_text(t, "[ 0.0000,  0.0000]\ndropnet.Tensor of shape [2], float32");
  dn_tensor_release(t);
}

static void test_nan_inf(void **state) {
  (void)state;
  dn_tensor *t = dn_test_from(1, (int64_t[]){4}, (float[]){NAN, INFINITY, -INFINITY, 1});
  expect_text(t, "[    nan,     inf,    -inf,  1.0000]\ndropnet.Tensor of shape [4], float32");
  dn_tensor_release(t);
  /* a NaN with its sign bit set still prints as nan; non-finite values do
     not push the others into scientific notation */
  t = dn_test_from(1, (int64_t[]){3}, (float[]){-NAN, 2, INFINITY});
  expect_text(t, "[    nan,  2.0000,     inf]\ndropnet.Tensor of shape [3], float32");
  dn_tensor_release(t);
  t = dn_test_from(0, NULL, (float[]){-INFINITY});
  expect_text(t, "tensor(-inf)");
  dn_tensor_release(t);
}

static void test_long_rows_wrap(void **state) {
  (void)state;
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_arange(&t, DN_F32, 0, 20, 1));
  /* width 8, so (80 - 1) / (8 + 2) = 7 values per line */
  expect_text(t,
              "[  0.0000,   1.0000,   2.0000,   3.0000,   4.0000,   5.0000,   6.0000,\n"
              "   7.0000,   8.0000,   9.0000,  10.0000,  11.0000,  12.0000,  13.0000,\n"
              "  14.0000,  15.0000,  16.0000,  17.0000,  18.0000,  19.0000]\n"
              "dropnet.Tensor of shape [20], float32");
  dn_tensor_release(t);
}

static void test_summarized(void **state) {
  (void)state;
  /* 2000 elements > 1000: 3 rows and 3 columns at each end */
  dn_tensor *flat, *t;
  DN_OK_OR_FAIL(dn_tensor_arange(&flat, DN_I32, 0, 2000, 1));
  DN_OK_OR_FAIL(dn_view(&t, flat, 2, (int64_t[]){40, 50}));
  expect_text(t,
              "[[    0,     1,     2, ...,    47,    48,    49],\n"
              " [   50,    51,    52, ...,    97,    98,    99],\n"
              " [  100,   101,   102, ...,   147,   148,   149],\n"
              " ...,\n"
              " [ 1850,  1851,  1852, ...,  1897,  1898,  1899],\n"
              " [ 1900,  1901,  1902, ...,  1947,  1948,  1949],\n"
              " [ 1950,  1951,  1952, ...,  1997,  1998,  1999]]\n"
              "dropnet.Tensor of shape [40,50], int32");
  dn_tensor_release(t);

  /* exactly 1000 elements are printed in full */
  dn_tensor *thousand;
  DN_OK_OR_FAIL(dn_narrow(&thousand, flat, 0, 0, 1000));
  char *s = dn_tensor_format(thousand);
  assert_non_null(s);
  assert_null(strstr(s, "..."));
  assert_non_null(strstr(s, " 999]"));
  free(s);
  dn_tensor_release(thousand);
  dn_tensor_release(flat);

  /* a big float vector: first and last values around "..." */
  DN_OK_OR_FAIL(dn_tensor_arange(&t, DN_F32, 1000, 6000, 1));
  s = dn_tensor_format(t);
  assert_non_null(s);
  assert_non_null(strstr(s, "[ 1000.0000,  1001.0000,  1002.0000, ...,  5997.0000,  5998.0000,\n  5999.0000]"));
  assert_non_null(strstr(s, "dropnet.Tensor of shape [5000], float32"));
  free(s);
  dn_tensor_release(t);

  /* 3-D: a cut outer dim shows "..." as a slice between blank lines; short dims stay whole */
  DN_OK_OR_FAIL(dn_tensor_zeros(&t, DN_I32, 3, (int64_t[]){200, 2, 3}));
  s = dn_tensor_format(t);
  assert_non_null(s);
  assert_non_null(strstr(s, "[[[ 0,  0,  0],\n  [ 0,  0,  0]],\n\n [[ 0,  0,  0],"));
  assert_non_null(strstr(s, "]],\n\n ...,\n\n [["));
  int rows = 0;
  for (const char *p = s; (p = strstr(p, "[ 0,  0,  0]")); p++) rows++;
  assert_int_equal(rows, 12);   /* 6 shown slices of 2 rows */
  free(s);
  dn_tensor_release(t);
}

static void test_summary_picks_style_from_shown_values(void **state) {
  (void)state;
  /* a tiny value hidden by the summary does not switch to scientific */
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_full(&t, DN_F32, 1, (int64_t[]){2000}, 1));
  DN_OK_OR_FAIL(dn_tensor_set(t, (int64_t[]){1000}, 1e-7));
  char *s = dn_tensor_format(t);
  assert_non_null(s);
  assert_string_equal(s, "[ 1.0000,  1.0000,  1.0000, ...,  1.0000,  1.0000,  1.0000]\n"
                         "dropnet.Tensor of shape [2000], float32");
  free(s);
  dn_tensor_release(t);
  assert_null(dn_tensor_format(NULL));
}

/* The autograd state closes the text as PyTorch shows it: requires_grad on a leaf, grad_fn on a result. */
static void test_autograd_state(void **state) {
  (void)state;
  dn_tensor *leaf = dn_test_from(1, (int64_t[]){2}, (float[]){1, 2}), *product, *scalar, *total;
  expect_text(leaf, "[ 1.0000,  2.0000]\ndropnet.Tensor of shape [2], float32");
  DN_OK_OR_FAIL(dn_requires_grad_(leaf, true));
  expect_text(leaf, "[ 1.0000,  2.0000]\ndropnet.Tensor of shape [2], float32, requires_grad=true");
  DN_OK_OR_FAIL(dn_mul(&product, leaf, leaf));
  char want[160];
  snprintf(want, sizeof want, "[ 1.0000,  4.0000]\ndropnet.Tensor of shape [2], float32, grad_fn=<%s>",
           dn_grad_fn_name(product));
  assert_non_null(dn_grad_fn_name(product));
  expect_text(product, want);
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, 3.5));
  DN_OK_OR_FAIL(dn_requires_grad_(scalar, true));
  expect_text(scalar, "tensor(3.5000, requires_grad=true)");
  DN_OK_OR_FAIL(dn_mul(&total, scalar, scalar));
  snprintf(want, sizeof want, "tensor(12.2500, grad_fn=<%s>)", dn_grad_fn_name(total));
  expect_text(total, want);
  dn_tensor_release(total);
  dn_tensor_release(scalar);
  dn_tensor_release(product);
  dn_tensor_release(leaf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_small_float),
    cmocka_unit_test(test_integers),
    cmocka_unit_test(test_scalar_and_empty),
    cmocka_unit_test(test_views_print_logical_values),
    cmocka_unit_test(test_three_dims),
    cmocka_unit_test(test_scientific),
    cmocka_unit_test(test_nan_inf),
    cmocka_unit_test(test_long_rows_wrap),
    cmocka_unit_test(test_summarized),
    cmocka_unit_test(test_summary_picks_style_from_shown_values),
    cmocka_unit_test(test_autograd_state),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
