/* The reduction engine (reduce_engine.c) through the ops: lanes longer than
   a block (several partials combined, dense and strided), columns wider than
   a chunk (the vectorized column path), the precision of its accumulators
   (1e7 float32 values, a variance far from zero), the same bits for 1 and 2
   threads forward (fixed blocks, an ill-conditioned sum) and backward, and a
   large (parallel) gradient against a naive reference. The ops' own
   semantics are in test_reduce.c. */
#include "testutil.h"
#include "testutil_reduce.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "graph.h"

static void test_dims_long_lanes_and_wide_columns(void **state) {
  (void)state;
  /* lanes longer than a block (several partials combined), both dense and strided */
  dn_tensor *a = dn_test_random(11, 2, (int64_t[]){3, 9000}), *at;
  DN_OK_OR_FAIL(dn_t(&at, a));   /* [9000,3]: dim 0 lanes are dense, dim 1 lanes strided */
  for (int k = SUM; k <= MIN; k++) {
    check_dim(a, (kind)k, 1, false, 1, 0);
    check_dim(a, (kind)k, 0, true, 1, 1);
    check_dim(at, (kind)k, 0, false, 1, 1);
    check_dim(at, (kind)k, 1, false, 0, 0);
  }
  /* columns wider than a chunk, enough elements to run in parallel */
  dn_tensor *w = dn_test_random(12, 2, (int64_t[]){50, 1300});
  dn_tensor *w3 = dn_test_random(13, 3, (int64_t[]){4, 30, 700});
  for (int k = SUM; k <= MIN; k++) {
    check_dim(w, (kind)k, 0, false, 1, 0);
    check_dim(w3, (kind)k, 1, true, 1, 1);
    check_dim(w3, (kind)k, 0, false, 0, 0);
  }
  /* few long lanes split into blocks across threads */
  dn_tensor *l = dn_test_random(14, 2, (int64_t[]){1, 100000});
  for (int k = SUM; k <= MIN; k++) check_dim(l, (kind)k, 1, false, 1, 0);
  RELEASE(a, at, w, w3, l);
}

static void test_precision(void **state) {
  (void)state;
  /* 1e7 float 0.1s: a float accumulator would be far off */
  int64_t n = 10000000;
  dn_tensor *a, *r;
  DN_OK_OR_FAIL(dn_tensor_full(&a, DN_F32, 1, &n, 0.1));
  DN_OK_OR_FAIL(dn_sum_all(&r, a));
  assert_true(fabs(scalar(r) - 1e6) <= 1e-6 * 1e6);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_mean_all(&r, a));
  assert_true(fabs(scalar(r) - 0.1) <= 1e-7);
  dn_tensor_release(r);
  dn_tensor *row;
  DN_OK_OR_FAIL(dn_view(&row, a, 2, (int64_t[]){1, n}));
  DN_OK_OR_FAIL(dn_sum_dim(&r, row, 1, false));
  assert_true(fabs(dn_test_at(r, 0) - 1e6) <= 1e-6 * 1e6);
  RELEASE(r, row, a);

  /* variance of 1e4 + N(0,1): the naive sum-of-squares formula loses it all */
  int64_t m = 1 << 20;
  dn_tensor *x;
  DN_OK_OR_FAIL(dn_tensor_new(&x, DN_F32, 1, &m));
  float *d = dn_tensor_data(x);
  uint64_t s = 42;
  for (int64_t i = 0; i < m; i += 2) {   /* Box-Muller from a xorshift */
    double u[2];
    for (int k = 0; k < 2; k++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      u[k] = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
    }
    double rad = sqrt(-2 * log(u[0]));
    d[i] = (float)(1e4 + rad * cos(2 * 3.14159265358979323846 * u[1]));
    d[i + 1] = (float)(1e4 + rad * sin(2 * 3.14159265358979323846 * u[1]));
  }
  int64_t unused;
  double want = reference(x, 0, 1, m, VAR, 1, &unused);
  assert_true(fabs(want - 1) < 0.01);   /* the data is what we think */
  DN_OK_OR_FAIL(dn_var_all(&r, x, 1));
  assert_true(fabs(scalar(r) - want) <= 1e-5 * want);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_std_all(&r, x, 0));
  assert_true(fabs(scalar(r) - sqrt(want * (m - 1) / m)) <= 1e-5);
  dn_tensor_release(r);
  /* the same data as lanes and as columns */
  dn_tensor *rows, *cols;
  DN_OK_OR_FAIL(dn_view(&rows, x, 2, (int64_t[]){4, m / 4}));
  DN_OK_OR_FAIL(dn_view(&cols, x, 2, (int64_t[]){m / 4, 4}));
  check_dim(rows, VAR, 1, false, 1, 0);
  check_dim(cols, VAR, 0, false, 1, 0);
  check_dim(cols, STD, 0, false, 0, 0);
  RELEASE(rows, cols, x);
}

/* Runs f with 1 and with 2 threads and requires the same bytes. */
static void expect_same_bits(dn_status (*f)(dn_tensor **, const dn_tensor *, int), const dn_tensor *a, int arg) {
  dn_tensor *r1, *r2;
  DN_OK_OR_FAIL(dn_set_num_threads(1));
  DN_OK_OR_FAIL(f(&r1, a, arg));
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  DN_OK_OR_FAIL(f(&r2, a, arg));
  assert_true(dn_same_shape(r1, r2));
  assert_memory_equal(dn_tensor_data(r1), dn_tensor_data(r2), (size_t)dn_tensor_numel(r1) * sizeof(float));
  RELEASE(r1, r2);
}

static dn_status sum_all_(dn_tensor **o, const dn_tensor *a, int arg) { (void)arg; return dn_sum_all(o, a); }
static dn_status mean_all_(dn_tensor **o, const dn_tensor *a, int arg) { (void)arg; return dn_mean_all(o, a); }
static dn_status var_all_(dn_tensor **o, const dn_tensor *a, int arg) { (void)arg; return dn_var_all(o, a, 1); }
static dn_status sum_dim_(dn_tensor **o, const dn_tensor *a, int dim) { return dn_sum_dim(o, a, dim, false); }
static dn_status mean_dim_(dn_tensor **o, const dn_tensor *a, int dim) { return dn_mean_dim(o, a, dim, true); }
static dn_status var_dim_(dn_tensor **o, const dn_tensor *a, int dim) { return dn_var_dim(o, a, dim, false, 1); }
static dn_status max_dim_(dn_tensor **o, const dn_tensor *a, int dim) {
  return dn_max_dim(NULL, o, a, dim, false, 0);
}

static void test_bit_identical_across_threads(void **state) {
  (void)state;
  int saved = dn_get_num_threads();
  dn_tensor *a = dn_test_random(21, 2, (int64_t[]){1100, 1000}), *at, *one;
  DN_OK_OR_FAIL(dn_t(&at, a));
  DN_OK_OR_FAIL(dn_view(&one, a, 2, (int64_t[]){1, 1100000}));
  dn_tensor *list[] = {a, at, one};
  for (size_t k = 0; k < 3; k++) {
    expect_same_bits(sum_all_, list[k], 0);
    expect_same_bits(mean_all_, list[k], 0);
    expect_same_bits(var_all_, list[k], 0);
    for (int dim = 0; dim < 2; dim++) {
      expect_same_bits(sum_dim_, list[k], dim);
      expect_same_bits(mean_dim_, list[k], dim);
      expect_same_bits(var_dim_, list[k], dim);
      expect_same_bits(max_dim_, list[k], dim);
    }
  }
  /* an ill-conditioned sum: its value depends on how partials are grouped,
     so any thread-dependent grouping shows */
  dn_tensor *ill = dn_test_random(22, 1, (int64_t[]){1100000}), *ill_row;
  float *d = dn_tensor_data(ill);
  d[0] = 1e30f;
  d[700000] = -1e30f;
  DN_OK_OR_FAIL(dn_view(&ill_row, ill, 2, (int64_t[]){1, 1100000}));
  expect_same_bits(sum_all_, ill, 0);
  expect_same_bits(mean_all_, ill, 0);
  expect_same_bits(var_all_, ill, 0);
  expect_same_bits(sum_dim_, ill_row, 1);
  expect_same_bits(var_dim_, ill_row, 1);
  RELEASE(ill, ill_row);

  /* and the parallel results are right */
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  check_dim(a, SUM, 0, false, 0, 0);
  check_dim(a, VAR, 1, false, 1, 0);
  check_dim(one, MEAN, 1, false, 0, 0);
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
  RELEASE(a, at, one);
}

/* 1 and 2 threads give the same bits (inputs large enough to go parallel). */
static void test_threads_bit_identical(void **state) {
  (void)state;
  int threads = dn_get_num_threads();
  dn_tensor *base = dn_test_random(11, 2, (int64_t[]){300, 257});
  dn_tensor *layouts[2] = {dn_tensor_retain(base), dn_test_noncontiguous(base)};
  const reduce_case cases[] = {
      {OP_SUM, true, 0, false, 0},  {OP_SUM, false, 0, false, 0},  {OP_SUM, false, 1, true, 0},
      {OP_MEAN, true, 0, false, 0}, {OP_MEAN, false, -2, true, 0}, {OP_MEAN, false, -1, false, 0},
      {OP_VAR, true, 0, false, 1},  {OP_VAR, false, 0, false, 1},  {OP_VAR, false, 1, true, 0},
      {OP_STD, true, 0, false, 1},  {OP_STD, false, 0, true, 1},   {OP_STD, false, 1, false, 1},
      {OP_MAX, true, 0, false, 0},  {OP_MAX, false, 0, false, 0},  {OP_MIN, false, 1, true, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    for (int l = 0; l < 2; l++) {
      dn_tensor *x = layouts[l], *out, *grads[2];
      DN_OK_OR_FAIL(reduce_op(&out, &x, &cases[k]));
      dn_tensor *g = dn_test_random(k + 1, out->ndim, out->shape);
      dn_tensor_release(out);
      for (int t = 0; t < 2; t++) {
        DN_OK_OR_FAIL(dn_set_num_threads(t + 1));
        grads[t] = grad_of(&cases[k], x, g);
      }
      if (memcmp(dn_tensor_data(grads[0]), dn_tensor_data(grads[1]), (size_t)dn_tensor_numel(x) * sizeof(float)))
        fail_msg("%s case %zu layout %d: gradients differ between 1 and 2 threads", op_names[cases[k].op], k, l);
      dn_tensor_release(grads[0]);
      dn_tensor_release(grads[1]);
      dn_tensor_release(g);
    }
  }
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
  dn_tensor_release(layouts[0]);
  dn_tensor_release(layouts[1]);
  dn_tensor_release(base);
}

/* A big reduction checked against a naive reference of its gradient. */
static void test_large_against_reference(void **state) {
  (void)state;
  int64_t rows = 300, cols = 257;
  dn_tensor *x = dn_test_random(4, 2, (int64_t[]){rows, cols}), *g = dn_test_random(6, 1, (int64_t[]){cols});
  reduce_case c = {OP_VAR, false, 0, false, 1};
  dn_tensor *grad = grad_of(&c, x, g);
  const float *xd = dn_tensor_data(x), *gd = dn_tensor_data(g), *dd = dn_tensor_data(grad);
  for (int64_t j = 0; j < cols; j++) {
    double mean = 0;
    for (int64_t i = 0; i < rows; i++) mean += xd[i * cols + j];
    mean /= (double)rows;
    for (int64_t i = 0; i < rows; i++) {
      double want = 2.0 * gd[j] * (xd[i * cols + j] - mean) / (double)(rows - 1);
      if (fabs(dd[i * cols + j] - want) > 1e-6 * (1 + fabs(want)))
        fail_msg("var grad [%lld,%lld]: %.9g vs %.9g", (long long)i, (long long)j, dd[i * cols + j], want);
    }
  }
  dn_tensor_release(grad);
  c = (reduce_case){OP_MEAN, false, 0, false, 0};
  grad = grad_of(&c, x, g);
  dd = dn_tensor_data(grad);
  for (int64_t i = 0; i < rows * cols; i++) assert_true(dd[i] == gd[i % cols] / (float)rows);
  dn_tensor_release(grad);
  dn_tensor_release(g);
  dn_tensor_release(x);
}

#define TEST(f) cmocka_unit_test_setup(f, dn_test_reset_modes)

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_dims_long_lanes_and_wide_columns),
    cmocka_unit_test(test_precision),
    cmocka_unit_test(test_bit_identical_across_threads),
    TEST(test_threads_bit_identical),
    TEST(test_large_against_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
