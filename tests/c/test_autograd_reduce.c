/*
** Gradients of the reductions (sum, mean, var, std, max, min; all elements
** and over one dim): central finite differences on random shapes, dims,
** keepdim and layouts; ties, NaN, zero std; accumulation; determinism.
*/
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"

/* --- finite-difference check ------------------------------------------------------- */

/* Makes every input a leaf that requires grad, then checks its grad against
   central differences (tolerance tol, relative and absolute). */
static void gradcheck(const char *what, dn_test_fn f, const void *ctx, int n_in, dn_tensor *const *in, double eps,
                      double tol) {
  for (int i = 0; i < n_in; i++) DN_OK_OR_FAIL(dn_requires_grad_(in[i], true));
  dn_test_gradcheck(what, f, ctx, n_in, in, eps, tol, tol);
}

/* --- cases ---------------------------------------------------------------------------- */

enum { OP_SUM, OP_MEAN, OP_VAR, OP_STD, OP_MAX, OP_MIN };
static const char *const op_names[] = {"sum", "mean", "var", "std", "max", "min"};

typedef struct reduce_case {
  int op;
  bool all;
  int dim;
  bool keepdim;
  int correction;
} reduce_case;

static dn_status reduce_op(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const reduce_case *c = ctx;
  const dn_tensor *x = in[0];
  if (c->all) {
    switch (c->op) {
      case OP_SUM: return dn_sum_all(out, x);
      case OP_MEAN: return dn_mean_all(out, x);
      case OP_VAR: return dn_var_all(out, x, c->correction);
      case OP_STD: return dn_std_all(out, x, c->correction);
      case OP_MAX: return dn_max_all(out, x);
      default: return dn_min_all(out, x);
    }
  }
  switch (c->op) {
    case OP_SUM: return dn_sum_dim(out, x, c->dim, c->keepdim);
    case OP_MEAN: return dn_mean_dim(out, x, c->dim, c->keepdim);
    case OP_VAR: return dn_var_dim(out, x, c->dim, c->keepdim, c->correction);
    case OP_STD: return dn_std_dim(out, x, c->dim, c->keepdim, c->correction);
    case OP_MAX: return dn_max_dim(out, NULL, x, c->dim, c->keepdim, 0);
    default: return dn_min_dim(out, NULL, x, c->dim, c->keepdim, 0);
  }
}

static uint64_t rng_state = 12345;
static int64_t rnd(int64_t lo, int64_t hi) {   /* uniform in [lo, hi] */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return lo + (int64_t)(rng_state % (uint64_t)(hi - lo + 1));
}

/* Distinct values 0.05 apart in a random order (no ties within a finite-difference step). */
static dn_tensor *distinct_values(int ndim, const int64_t *shape) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_F32, ndim, shape));
  int64_t n = dn_tensor_numel(t);
  float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < n; i++) d[i] = (float)(0.05 * (double)(i - n / 2));
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = rnd(0, i);
    float v = d[i];
    d[i] = d[j];
    d[j] = v;
  }
  return t;
}

/* The same values in another layout: 0 contiguous, 1 transposed storage, 2 narrowed from a bigger tensor. */
static dn_tensor *with_layout(dn_tensor *x, int layout) {
  if (layout == 0) return dn_tensor_retain(x);
  if (layout == 1) return dn_test_noncontiguous(x);
  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  int d = x->ndim - 1;
  shape[d] += 3;
  dn_tensor *big = dn_test_random(7, x->ndim, shape), *narrow;
  DN_OK_OR_FAIL(dn_narrow(&narrow, big, d, 2, x->shape[d]));
  DN_OK_OR_FAIL(dn_copy_(narrow, x));
  dn_tensor_release(big);
  return narrow;
}

/* Random shapes, dims (negative too), keepdim and layouts for op. */
static void check_op_randomly(int op, int trials, double eps) {
  for (int trial = 0; trial < trials; trial++) {
    int ndim = (int)rnd(1, 4);
    int64_t shape[DN_MAX_DIMS];
    for (int d = 0; d < ndim; d++) shape[d] = rnd(1, 4);
    reduce_case c = {op, trial % 4 == 0, (int)rnd(-ndim, ndim - 1), rnd(0, 1) == 1, (int)rnd(0, 1)};
    /* var/std need N - correction > 0 and a spread */
    int64_t n = c.all ? 1 : shape[c.dim < 0 ? c.dim + ndim : c.dim];
    if (c.all)
      for (int d = 0; d < ndim; d++) n *= shape[d];
    if ((op == OP_VAR || op == OP_STD) && n < 2) shape[c.dim < 0 ? c.dim + ndim : c.dim] = 3, n = 3;
    dn_tensor *base = op == OP_MAX || op == OP_MIN ? distinct_values(ndim, shape) : dn_test_random(trial, ndim, shape);
    dn_tensor *x = with_layout(base, trial % 3);
    char what[160];
    snprintf(what, sizeof what, "%s %s dim %d keepdim %d correction %d layout %d", op_names[op],
             c.all ? "all" : "over", c.dim, c.keepdim, c.correction, trial % 3);
    gradcheck(what, reduce_op, &c, 1, &x, eps, 2e-3);
    dn_tensor_release(x);
    dn_tensor_release(base);
  }
}

static void test_sum_mean_gradcheck(void **state) {
  (void)state;
  check_op_randomly(OP_SUM, 24, 1e-2);
  check_op_randomly(OP_MEAN, 24, 1e-2);
}

static void test_var_std_gradcheck(void **state) {
  (void)state;
  check_op_randomly(OP_VAR, 24, 1e-2);
  check_op_randomly(OP_STD, 24, 1e-3);
  /* correction 2, and a wide column layout (dim 0 of a [5, 300] matrix) */
  dn_tensor *x = dn_test_random(3, 2, (int64_t[]){5, 300});
  reduce_case c = {OP_VAR, false, 0, true, 2};
  gradcheck("var dim 0 correction 2", reduce_op, &c, 1, &x, 1e-2, 2e-3);
  c.op = OP_STD;
  c.keepdim = false;
  gradcheck("std dim 0 correction 2", reduce_op, &c, 1, &x, 1e-3, 2e-3);
  dn_tensor_release(x);
}

static void test_max_min_gradcheck(void **state) {
  (void)state;
  check_op_randomly(OP_MAX, 24, 1e-3);
  check_op_randomly(OP_MIN, 24, 1e-3);
}

/* Gradient of op on x for the output gradient g (x becomes a leaf that requires grad). */
static dn_tensor *grad_of(const reduce_case *c, dn_tensor *x, const dn_tensor *g) {
  dn_tensor_release(x->grad);
  x->grad = NULL;
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  dn_tensor *out;
  DN_OK_OR_FAIL(reduce_op(&out, &x, c));
  DN_OK_OR_FAIL(dn_backward(out, g, false));
  dn_tensor_release(out);
  dn_tensor *grad = x->grad;
  x->grad = NULL;
  return grad;
}

static dn_tensor *scalar(float v) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_full(&t, DN_F32, 0, NULL, v));
  return t;
}

/* max()/min() of all elements share the gradient evenly among ties (as PyTorch). */
static void test_max_all_ties(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, 5, -2, 5, 0, 5});
  dn_tensor *g = scalar(3), *grad;
  reduce_case c = {OP_MAX, true, 0, false, 0};
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 6; i++) assert_true(dn_test_at(grad, i) == (dn_test_at(x, i) == 5 ? 1.0 : 0.0));
  dn_tensor_release(grad);
  c.op = OP_MIN;
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 6; i++) assert_true(dn_test_at(grad, i) == (i == 2 ? 3.0 : 0.0));
  dn_tensor_release(grad);
  dn_tensor_release(x);

  /* a NaN is the max: the NaNs share the gradient */
  x = dn_test_from(1, (int64_t[]){4}, (float[]){1, NAN, 2, NAN});
  c.op = OP_MAX;
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 4; i++) assert_true(dn_test_at(grad, i) == (i % 2 ? 1.5 : 0.0));
  dn_tensor_release(grad);
  dn_tensor_release(x);
  dn_tensor_release(g);
}

/* max/min over a dim: the whole gradient goes to the first extremum (the index returned). */
static void test_max_dim_ties(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 4}, (float[]){3, 7, 7, 1, 2, 2, 9, 9});
  dn_tensor *xt = dn_test_noncontiguous(x);   /* made before x requires grad: a leaf */
  dn_tensor *g = dn_test_from(1, (int64_t[]){2}, (float[]){10, 20});
  reduce_case c = {OP_MAX, false, -1, false, 0};
  dn_tensor *grad = grad_of(&c, x, g);
  const double want_max[8] = {0, 10, 0, 0, 0, 0, 20, 0};
  for (int64_t i = 0; i < 8; i++) assert_true(dn_test_at(grad, i) == want_max[i]);
  dn_tensor_release(grad);
  c.op = OP_MIN;
  grad = grad_of(&c, x, g);
  const double want_min[8] = {0, 0, 0, 10, 20, 0, 0, 0};
  for (int64_t i = 0; i < 8; i++) assert_true(dn_test_at(grad, i) == want_min[i]);
  dn_tensor_release(grad);
  dn_tensor_release(g);

  /* dim 0 with keepdim, a transposed layout, and indices asked for with base 1 */
  dn_tensor *values, *indices;
  DN_OK_OR_FAIL(dn_requires_grad_(xt, true));
  DN_OK_OR_FAIL(dn_max_dim(&values, &indices, xt, 0, true, 1));
  assert_false(indices->requires_grad);
  assert_null(indices->grad_fn);
  assert_string_equal(dn_grad_fn_name(values), "max");
  g = dn_test_from(2, (int64_t[]){1, 4}, (float[]){1, 2, 3, 4});
  DN_OK_OR_FAIL(dn_backward(values, g, false));
  const double want_dim0[8] = {1, 2, 0, 0, 0, 0, 3, 4};
  for (int64_t i = 0; i < 8; i++) assert_true(dn_test_at(xt->grad, i) == want_dim0[i]);
  dn_tensor_release(values);
  dn_tensor_release(indices);
  dn_tensor_release(g);
  dn_tensor_release(xt);
  dn_tensor_release(x);
}

/* std backward is 0 where std is 0 (PyTorch masks it); N - correction <= 0 gives NaN. */
static void test_std_zero_and_no_dof(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 3}, (float[]){4, 4, 4, 1, 2, 3});
  dn_tensor *g = dn_test_from(1, (int64_t[]){2}, (float[]){1, 1});
  reduce_case c = {OP_STD, false, 1, false, 1};
  dn_tensor *grad = grad_of(&c, x, g);
  const double want[6] = {0, 0, 0, -0.5, 0, 0.5};   /* (x - 2) / (2 * 1) for the second row */
  for (int64_t i = 0; i < 6; i++) assert_true(fabs(dn_test_at(grad, i) - want[i]) < 1e-6);
  dn_tensor_release(grad);
  dn_tensor_release(g);

  c = (reduce_case){OP_VAR, false, 0, false, 2};   /* 2 rows, correction 2 */
  g = dn_test_from(1, (int64_t[]){3}, (float[]){1, 1, 1});
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 6; i++) assert_true(isnan(dn_test_at(grad, i)));
  dn_tensor_release(grad);
  dn_tensor_release(g);
  dn_tensor_release(x);
}

/* Values checked against hand-computed gradients, not only differences. */
static void test_exact_values(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, 2, 6, 0, 4, 8});
  dn_tensor *g = dn_test_from(1, (int64_t[]){3}, (float[]){1, 2, 4});
  reduce_case c = {OP_MEAN, false, 0, false, 0};
  dn_tensor *grad = grad_of(&c, x, g);
  const double mean_want[6] = {0.5, 1, 2, 0.5, 1, 2};
  for (int64_t i = 0; i < 6; i++) assert_true(dn_test_at(grad, i) == mean_want[i]);
  dn_tensor_release(grad);
  dn_tensor_release(g);

  /* var of all, correction 1: mean 3.5, N - 1 = 5, grad 2 (x - 3.5) / 5 */
  g = scalar(1);
  c = (reduce_case){OP_VAR, true, 0, false, 1};
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 6; i++) assert_true(fabs(dn_test_at(grad, i) - 2 * (dn_test_at(x, i) - 3.5) / 5) < 1e-6);
  dn_tensor_release(grad);
  c.op = OP_SUM;
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 6; i++) assert_true(dn_test_at(grad, i) == 1);
  dn_tensor_release(grad);
  dn_tensor_release(g);
  dn_tensor_release(x);
}

/* 0-dim inputs and empty tensors. */
static void test_scalar_and_empty(void **state) {
  (void)state;
  dn_tensor *x = scalar(2.5f), *g = scalar(3), *grad;
  for (int op = OP_SUM; op <= OP_MIN; op++) {
    if (op == OP_VAR || op == OP_STD) continue;
    reduce_case c = {op, false, -1, false, 0};
    grad = grad_of(&c, x, g);
    assert_int_equal(grad->ndim, 0);
    assert_true(dn_test_at(grad, 0) == 3);
    dn_tensor_release(grad);
  }
  dn_tensor_release(g);
  dn_tensor_release(x);

  /* reducing a dim of size 0: the output has elements, the input's grad is empty */
  dn_tensor *e;
  DN_OK_OR_FAIL(dn_tensor_zeros(&e, DN_F32, 2, (int64_t[]){3, 0}));
  g = dn_test_random(1, 1, (int64_t[]){3});
  reduce_case c = {OP_SUM, false, 1, false, 0};
  grad = grad_of(&c, e, g);
  assert_int_equal(grad->ndim, 2);
  assert_int_equal(grad->shape[0], 3);
  assert_int_equal(grad->shape[1], 0);
  dn_tensor_release(grad);
  dn_tensor_release(g);
  g = scalar(1);
  c = (reduce_case){OP_MEAN, true, 0, false, 0};
  grad = grad_of(&c, e, g);
  assert_int_equal(dn_tensor_numel(grad), 0);
  dn_tensor_release(grad);
  dn_tensor_release(g);
  dn_tensor_release(e);
}

static void test_accumulates_with_retain_graph(void **state) {
  (void)state;
  for (int op = OP_SUM; op <= OP_MIN; op++) {
    dn_tensor *x = distinct_values(3, (int64_t[]){3, 4, 5}), *out;
    DN_OK_OR_FAIL(dn_requires_grad_(x, true));
    reduce_case c = {op, false, 1, false, 1};
    DN_OK_OR_FAIL(reduce_op(&out, &x, &c));
    dn_tensor *g = dn_test_random(5, out->ndim, out->shape), *once;
    DN_OK_OR_FAIL(dn_backward(out, g, true));
    DN_OK_OR_FAIL(dn_clone(&once, x->grad));
    DN_OK_OR_FAIL(dn_backward(out, g, true));
    for (int64_t i = 0; i < dn_tensor_numel(x); i++) assert_true(dn_test_at(x->grad, i) == 2 * dn_test_at(once, i));
    dn_tensor_release(once);
    dn_tensor_release(g);
    dn_tensor_release(out);
    dn_tensor_release(x);
  }
}

static void test_what_records(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 2, (int64_t[]){3, 4}), *out, *values, *indices;
  DN_OK_OR_FAIL(dn_sum_dim(&out, x, 0, false));   /* x does not require grad */
  assert_false(out->requires_grad);
  assert_null(out->grad_fn);
  dn_tensor_release(out);

  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_var_all(&out, x, 1));
  assert_false(out->requires_grad);
  assert_null(out->grad_fn);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_max_dim(&values, NULL, x, 1, false, 0));
  assert_null(values->grad_fn);
  dn_tensor_release(values);
  dn_set_grad_enabled(mode);

  /* index outputs are int32 and not differentiable */
  DN_OK_OR_FAIL(dn_argmax_all(&out, x, 0));
  assert_false(out->requires_grad);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_min_dim(NULL, &indices, x, 0, false, 0));
  assert_false(indices->requires_grad);
  dn_tensor_release(indices);

  const char *names[] = {"sum", "mean", "var", "std", "max", "min"};
  for (int op = OP_SUM; op <= OP_MIN; op++) {
    reduce_case c = {op, op % 2 == 0, -1, true, 1};
    DN_OK_OR_FAIL(reduce_op(&out, &x, &c));
    assert_string_equal(dn_grad_fn_name(out), names[op]);
    dn_tensor_release(out);
  }

  /* var saves its input: an in-place change before backward is an error */
  DN_OK_OR_FAIL(dn_var_dim(&out, x, 1, false, 1));
  mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_tensor_set(x, (int64_t[]){0, 0}, 1.0));
  dn_set_grad_enabled(mode);
  dn_tensor *g = dn_test_random(2, 1, (int64_t[]){3});
  DN_EXPECT_ERROR(dn_backward(out, g, false), DN_EINVAL, "modified in place");
  dn_tensor_release(g);
  dn_tensor_release(out);
  /* sum saves nothing: the same change does not matter */
  DN_OK_OR_FAIL(dn_sum_all(&out, x));
  mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_tensor_set(x, (int64_t[]){0, 1}, 1.0));
  dn_set_grad_enabled(mode);
  DN_OK_OR_FAIL(dn_backward(out, NULL, false));
  dn_tensor_release(out);
  dn_tensor_release(x);
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
      TEST(test_sum_mean_gradcheck),   TEST(test_var_std_gradcheck),
      TEST(test_max_min_gradcheck),    TEST(test_max_all_ties),
      TEST(test_max_dim_ties),         TEST(test_std_zero_and_no_dof),
      TEST(test_exact_values),         TEST(test_scalar_and_empty),
      TEST(test_accumulates_with_retain_graph), TEST(test_what_records),
      TEST(test_threads_bit_identical), TEST(test_large_against_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
