/* The unary ops of unary.c (neg, exp, log, sqrt, abs, relu, sigmoid,
   tanh) against naive double-precision loops: every op on float32 and int32
   (in place too, int32 overflow of neg and abs), special values (saturation,
   denormals, NaN and inf; with NaN through the binary maximum/minimum and
   comparisons), and their gradients by finite differences and at the kinks
   (abs, relu, clamp at its bounds). */
#include "testutil.h"
#include "testutil_elementwise.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "graph.h"

/* --- unary ---------------------------------------------------------------------------- */

static void test_unary_all_ops(void **state) {
  (void)state;
  int64_t shape[3] = {3, 4, 5};
  dn_tensor *a = dn_test_random(90, 3, shape), *an = dn_test_noncontiguous(a);
  dn_tensor *pos = positive(91, 3, shape), *posn = dn_test_noncontiguous(pos), *s = scalar_f32(-0.75f), *narrow;
  DN_OK_OR_FAIL(dn_narrow(&narrow, a, 2, 1, 3));
  for (int op = 0; op < ALL_UNOPS; op++) {
    check_unary((dn_unop)op, a, DN_F32);   /* log/sqrt of negatives: NaN on both sides */
    check_unary((dn_unop)op, an, DN_F32);
    check_unary((dn_unop)op, pos, DN_F32);
    check_unary((dn_unop)op, posn, DN_F32);
    check_unary((dn_unop)op, s, DN_F32);
    check_unary((dn_unop)op, narrow, DN_F32);
  }
  /* in place, on a non-contiguous target */
  for (int op = 0; op < ALL_UNOPS; op++) {
    dn_tensor *copy = dn_test_noncontiguous(pos);
    uint32_t version = copy->storage->version;
    DN_OK_OR_FAIL(dn_unary_(copy, (dn_unop)op));
    assert_true(copy->storage->version != version);
    for (int64_t i = 0; i < 60; i++)
      expect_close(dn_test_at(copy, i), ref_unary((dn_unop)op, dn_test_at(pos, i)), DN_F32, "unary_", i);
    dn_tensor_release(copy);
  }
  dn_tensor_release(a);
  dn_tensor_release(an);
  dn_tensor_release(pos);
  dn_tensor_release(posn);
  dn_tensor_release(s);
  dn_tensor_release(narrow);
}

static void test_unary_int32(void **state) {
  (void)state;
  dn_tensor *a = random_ints(100, 2, (int64_t[]){3, 4}, 20), *an = dn_test_noncontiguous(a);
  for (int op = 0; op < ALL_UNOPS; op++) {
    dn_dtype want = (op == DN_NEG || op == DN_ABS || op == DN_RELU) ? DN_I32 : DN_F32;
    check_unary((dn_unop)op, a, want);
    check_unary((dn_unop)op, an, want);
  }
  dn_tensor *x = from_ints(1, (int64_t[]){3}, (int32_t[]){INT32_MIN, -5, 5}), *out;
  /* -INT32_MIN does not fit: an error, not a wrap-around */
  DN_EXPECT_ERROR(dn_unary(&out, DN_NEG, x), DN_ERANGE, "neg: int32 overflow: -(-2147483648) is outside");
  DN_EXPECT_ERROR(dn_unary(&out, DN_ABS, x), DN_ERANGE, "abs: int32 overflow: abs(-2147483648)");
  DN_EXPECT_ERROR(dn_unary_(x, DN_NEG), DN_ERANGE, "neg_: int32 overflow");
  DN_EXPECT_ERROR(dn_unary_(x, DN_ABS), DN_ERANGE, "abs_: int32 overflow");
  assert_true(dn_test_at(x, 0) == INT32_MIN && dn_test_at(x, 1) == -5);   /* unchanged */
  dn_tensor *fits = from_ints(1, (int64_t[]){3}, (int32_t[]){-INT32_MAX, -5, 5});
  DN_OK_OR_FAIL(dn_unary(&out, DN_ABS, fits));
  assert_true(dn_test_at(out, 0) == INT32_MAX && dn_test_at(out, 1) == 5 && dn_test_at(out, 2) == 5);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_unary_(fits, DN_NEG));
  assert_true(dn_test_at(fits, 0) == INT32_MAX && dn_test_at(fits, 1) == 5 && dn_test_at(fits, 2) == -5);
  dn_tensor_release(fits);
  DN_OK_OR_FAIL(dn_unary_(x, DN_RELU));
  assert_true(dn_test_at(x, 0) == 0 && dn_test_at(x, 1) == 0 && dn_test_at(x, 2) == 5);
  uint32_t version = x->storage->version;
  DN_EXPECT_ERROR(dn_unary_(x, DN_EXP), DN_ETYPE, "exp_: exp of int32 is float32 and cannot be stored in place");
  DN_EXPECT_ERROR(dn_unary_(x, DN_SQRT), DN_ETYPE, "sqrt_");
  assert_true(x->storage->version == version);
  dn_tensor_release(a);
  dn_tensor_release(an);
  dn_tensor_release(x);
}

static double unary_of(dn_unop op, float x) {
  dn_tensor *t = scalar_f32(x), *out;
  DN_OK_OR_FAIL(dn_unary(&out, op, t));
  double v = dn_test_at(out, 0);
  dn_tensor_release(out);
  dn_tensor_release(t);
  return v;
}

static void test_special_values(void **state) {
  (void)state;
  const float big[] = {1000, 100, 88.8f, 30, INFINITY};
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
    assert_true(unary_of(DN_SIGMOID, big[i]) == 1);
    double lo = unary_of(DN_SIGMOID, -big[i]);
    assert_true(lo >= 0 && lo < 1e-12 && !isnan(lo));
    assert_true(unary_of(DN_TANH, big[i]) == 1 && unary_of(DN_TANH, -big[i]) == -1);
  }
  /* small sigmoid values keep their relative precision */
  double s20 = unary_of(DN_SIGMOID, -20);
  assert_true(fabs(s20 - 1 / (1 + exp(20.0))) < 1e-6 * s20);
  /* sigmoid(-90) = 8.2e-40 is a denormal float: 0 while denormals are flushed (the default), else kept */
  if (dn_get_flush_denormal()) assert_true(unary_of(DN_SIGMOID, -90) == 0);
  bool flush = dn_get_flush_denormal();
  dn_set_flush_denormal(false);
  double s90 = unary_of(DN_SIGMOID, -90);
  dn_set_flush_denormal(flush);
  assert_true(s90 > 0 && fabs(s90 - 1 / (1 + exp(90.0))) < 1e-5 * s90 + 1e-45);
  assert_true(unary_of(DN_SIGMOID, 0) == 0.5);
  assert_true(isnan(unary_of(DN_SIGMOID, NAN)) && isnan(unary_of(DN_TANH, NAN)));
  assert_true(isnan(unary_of(DN_LOG, -1)) && unary_of(DN_LOG, 0) == -INFINITY && unary_of(DN_LOG, INFINITY) == INFINITY);
  assert_true(isnan(unary_of(DN_SQRT, -1)) && unary_of(DN_SQRT, 0) == 0);
  assert_true(unary_of(DN_EXP, 1000) == INFINITY && unary_of(DN_EXP, -1000) == 0);
  assert_true(isnan(unary_of(DN_RELU, NAN)) && unary_of(DN_RELU, -INFINITY) == 0);
  assert_true(isnan(unary_of(DN_EXP, NAN)) && isnan(unary_of(DN_NEG, NAN)) && isnan(unary_of(DN_ABS, NAN)));

  /* maximum/minimum propagate NaN from either side; comparisons with NaN are false (ne true) */
  dn_tensor *x = dn_test_from(1, (int64_t[]){3}, (float[]){NAN, 1, NAN});
  dn_tensor *y = dn_test_from(1, (int64_t[]){3}, (float[]){1, NAN, NAN});
  for (int op = 0; op < ALL_BINOPS; op++) check_binary((dn_binop)op, x, y, DN_F32);
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_binary(&out, DN_MAXIMUM, x, y));
  for (int64_t i = 0; i < 3; i++) assert_true(isnan(dn_test_at(out, i)));
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary(&out, DN_NE, x, y));
  for (int64_t i = 0; i < 3; i++) assert_true(dn_test_at(out, i) == 1);
  dn_tensor_release(out);
  dn_tensor_release(x);
  dn_tensor_release(y);
}

/* --- gradients ---------------------------------------------------------------------- */

static dn_status f_unary(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  return dn_unary(out, *(const dn_unop *)ctx, in[0]);
}

static void test_unary_gradients(void **state) {
  (void)state;
  const struct {
    dn_unop op;
    value_kind kind;
    const char *saved_name;
  } cases[] = {
    {DN_NEG, ANY, "neg"},        {DN_EXP, ANY, "exp"},   {DN_LOG, POSITIVE, "log"},
    {DN_SQRT, POSITIVE, "sqrt"}, {DN_ABS, AWAY_FROM_ZERO, "abs"}, {DN_RELU, AWAY_FROM_ZERO, "relu"},
    {DN_SIGMOID, ANY, "sigmoid"}, {DN_TANH, ANY, "tanh"},
  };
  const int ndims[] = {2, 1, 0, 3};
  const int64_t shapes[][3] = {{3, 4}, {5}, {0}, {2, 1, 3}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    for (size_t s = 0; s < 4; s++) {
      for (int layout = 0; layout < 2; layout++) {
        dn_tensor *x = input(40 + s, ndims[s], shapes[s], cases[c].kind, layout, true);
        char label[64];
        snprintf(label, sizeof label, "%s, shape %zu, layout %d", dn_unop_name(cases[c].op), s, layout);
        gradcheck(label, f_unary, &cases[c].op, 1, &x);
        dn_tensor *y;
        DN_OK_OR_FAIL(dn_unary(&y, cases[c].op, x));
        assert_string_equal(dn_grad_fn_name(y), cases[c].saved_name);
        dn_tensor_release(y);
        dn_tensor_release(x);
      }
    }
  }
}

static void test_unary_conventions_at_kinks(void **state) {
  (void)state;
  dn_tensor *x = leaf_of(3, (float[]){-1, 0, 2}), *y;
  DN_OK_OR_FAIL(dn_unary(&y, DN_ABS, x));
  backward_ones(y);
  expect_grad(x, (float[]){-1, 0, 1}, 3);
  dn_tensor_release(y);
  dn_tensor_release(x->grad);
  x->grad = NULL;
  DN_OK_OR_FAIL(dn_unary(&y, DN_RELU, x));
  backward_ones(y);
  expect_grad(x, (float[]){0, 0, 1}, 3);
  dn_tensor_release(y);
  dn_tensor_release(x->grad);
  x->grad = NULL;
  /* clamp: the gradient passes at the bounds themselves (lo <= x <= hi) */
  dn_tensor *c = leaf_of(5, (float[]){-2, -1, 0, 1, 2});
  DN_OK_OR_FAIL(dn_clamp(&y, c, -1, 1));
  assert_string_equal(dn_grad_fn_name(y), "clamp");
  backward_ones(y);
  expect_grad(c, (float[]){0, 1, 1, 1, 0}, 5);
  dn_tensor_release(y);
  dn_tensor_release(x);
  dn_tensor_release(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_unary_all_ops),
    cmocka_unit_test(test_unary_int32),
    cmocka_unit_test(test_special_values),
    cmocka_unit_test_setup(test_unary_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_unary_conventions_at_kinks, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
