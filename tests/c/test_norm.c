/* Batch, layer and group normalization: values (and batch norm's running
   statistics, train and eval) against naive loops, gradients by finite
   differences, the same bits for 1-4 threads, every bad argument's message.
   Batch norm + ReLU: the bits of batch norm then relu (values, running
   statistics, gradients), boundary values (zeros of both signs, NaN)
   included, for 1-3 threads. */
#include "testutil.h"
#include "testutil_norm.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) \
  release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

/* One configuration: input shape, affine or not, training or eval. */
typedef struct bn_case {
  int ndim;
  int64_t shape[4];
  bool affine, training;
  double momentum, eps;
} bn_case;

static const bn_case CASES[] = {
  {2, {5, 3}, true, true, 0.1, 1e-5},
  {2, {2, 4}, false, true, 0.3, 1e-3},
  {3, {3, 2, 5}, true, true, 0.1, 1e-5},
  {4, {2, 3, 4, 5}, true, true, 0.1, 1e-5},
  {4, {1, 2, 3, 3}, false, true, 1.0, 1e-2},
  {4, {3, 2, 1, 1}, true, true, 0.0, 1e-5},
  {2, {5, 3}, true, false, 0.1, 1e-5},
  {3, {1, 2, 5}, false, false, 0.1, 1e-5},
  {4, {2, 3, 4, 5}, true, false, 0.1, 1e-5},
  {4, {1, 1, 1, 1}, true, false, 0.1, 1e-5},   /* one value: fine in eval */
  {4, {3, 5, 7, 9}, true, true, 0.1, 1e-5},     /* runs of 63: whole lanes and a tail */
};
#define N_CASES (sizeof CASES / sizeof *CASES)

/* The case's parameters and running statistics (positive variances). */
typedef struct bn_inputs {
  dn_tensor *x, *weight, *bias, *running_mean, *running_var;
} bn_inputs;

static bn_inputs make_inputs(const bn_case *c, uint64_t seed) {
  bn_inputs in = {dn_test_random(seed, c->ndim, c->shape), NULL, NULL, NULL, NULL};
  int64_t ch = c->shape[1];
  if (c->affine) {
    in.weight = dn_test_random(seed + 1, 1, &ch);
    in.bias = dn_test_random(seed + 2, 1, &ch);
  }
  in.running_mean = dn_test_random(seed + 3, 1, &ch);
  in.running_var = dn_test_random(seed + 4, 1, &ch);
  float *v = dn_tensor_data(in.running_var);
  for (int64_t i = 0; i < ch; i++) v[i] = fabsf(v[i]) + 0.25f;
  return in;
}

static void release_inputs(bn_inputs *in) { RELEASE(in->x, in->weight, in->bias, in->running_mean, in->running_var); }

static dn_status apply(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const bn_case *c = ctx;
  return dn_batch_norm(out, in[0], in[1], in[2], in[3], in[4], c->training, c->momentum, c->eps);
}

/* --- the naive reference ------------------------------------------------------------------ */

/* Checks y and the updated running statistics against loops over
   (n, c, s) in double; rm0, rv0 are the running values before the call. */
static void check_against_reference(const bn_case *c, const bn_inputs *in, const dn_tensor *y, const double *rm0,
                                    const double *rv0) {
  int64_t n = c->shape[0], ch = c->shape[1], s = 1;
  for (int d = 2; d < c->ndim; d++) s *= c->shape[d];
  for (int64_t k = 0; k < ch; k++) {
    double mean = 0, var = 0, m = (double)(n * s);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < s; j++) mean += dn_test_at(in->x, (i * ch + k) * s + j);
    mean /= m;
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < s; j++) {
        double v = dn_test_at(in->x, (i * ch + k) * s + j) - mean;
        var += v * v;
      }
    double unbiased = var / (m - 1);
    var /= m;
    if (c->training) {
      double want_rm = (1 - c->momentum) * rm0[k] + c->momentum * mean;
      double want_rv = (1 - c->momentum) * rv0[k] + c->momentum * unbiased;
      assert_float_equal(dn_test_at(in->running_mean, k), want_rm, 1e-6 * (1 + fabs(want_rm)));
      assert_float_equal(dn_test_at(in->running_var, k), want_rv, 1e-6 * (1 + fabs(want_rv)));
    } else {
      mean = rm0[k], var = rv0[k];
      assert_float_equal(dn_test_at(in->running_mean, k), rm0[k], 0);
      assert_float_equal(dn_test_at(in->running_var, k), rv0[k], 0);
    }
    double w = in->weight ? dn_test_at(in->weight, k) : 1, b = in->bias ? dn_test_at(in->bias, k) : 0;
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < s; j++) {
        int64_t at = (i * ch + k) * s + j;
        double want = (dn_test_at(in->x, at) - mean) / sqrt(var + c->eps) * w + b, got = dn_test_at(y, at);
        if (!(fabs(got - want) <= 1e-5 * (1 + fabs(want))))
          fail_msg("case %d at %lld: %.9g vs %.9g", (int)(c - CASES), (long long)at, got, want);
      }
  }
}

static void test_values(void **state) {
  (void)state;
  for (size_t i = 0; i < N_CASES; i++) {
    const bn_case *c = &CASES[i];
    for (int strided = 0; strided < 2; strided++) {
      bn_inputs in = make_inputs(c, 10 * i + 1);
      if (strided) {
        dn_tensor *xn = dn_test_noncontiguous(in.x);
        dn_tensor_release(in.x);
        in.x = xn;
      }
      double rm0[8], rv0[8];
      for (int64_t k = 0; k < c->shape[1]; k++) {
        rm0[k] = dn_test_at(in.running_mean, k);
        rv0[k] = dn_test_at(in.running_var, k);
      }
      dn_tensor *y;
      DN_OK_OR_FAIL(apply(&y, (dn_tensor *[]){in.x, in.weight, in.bias, in.running_mean, in.running_var}, c));
      assert_true(dn_tensor_is_contiguous(y));
      assert_int_equal(y->ndim, c->ndim);
      check_against_reference(c, &in, y, rm0, rv0);
      dn_tensor_release(y);
      release_inputs(&in);
    }
  }
}

/* Inputs far from 0 with a small spread (1e6 + noise in [-1, 1], the first
   value of a channel 100 away from the rest): the one-pass shifted sums
   must not cancel. */
static void test_far_from_zero(void **state) {
  (void)state;
  const bn_case *c = &CASES[N_CASES - 1];
  bn_inputs in = make_inputs(c, 77);
  float *x = dn_tensor_data(in.x);
  for (int64_t i = 0; i < dn_tensor_numel(in.x); i++) x[i] = 1e6f + x[i];
  int64_t s = c->shape[2] * c->shape[3];
  for (int64_t k = 0; k < c->shape[1]; k++) x[k * s] += 100.0f;
  double rm0[8], rv0[8];
  for (int64_t k = 0; k < c->shape[1]; k++) {
    rm0[k] = dn_test_at(in.running_mean, k);
    rv0[k] = dn_test_at(in.running_var, k);
  }
  dn_tensor *y;
  DN_OK_OR_FAIL(apply(&y, (dn_tensor *[]){in.x, in.weight, in.bias, in.running_mean, in.running_var}, c));
  check_against_reference(c, &in, y, rm0, rv0);
  dn_tensor_release(y);
  release_inputs(&in);
}

/* Training without running statistics; an empty batch; a strided weight. */
static void test_no_running_and_empty(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(3, 2, (int64_t[]){6, 4}), *y1, *y2, *rm, *rv, *empty, *ye;
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, (int64_t[]){4}));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, (int64_t[]){4}, 1.0));
  DN_OK_OR_FAIL(dn_batch_norm(&y1, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  DN_OK_OR_FAIL(dn_batch_norm(&y2, x, NULL, NULL, rm, rv, true, 0.1, 1e-5));
  dn_test_assert_close(y1, y2, 0);
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 4, (int64_t[]){0, 4, 2, 2}));
  DN_OK_OR_FAIL(dn_requires_grad_(empty, true));
  float rm_before = *(float *)dn_tensor_data(rm);
  DN_OK_OR_FAIL(dn_batch_norm(&ye, empty, NULL, NULL, rm, rv, true, 0.1, 1e-5));
  assert_int_equal(ye->shape[0], 0);
  assert_int_equal(ye->shape[1], 4);
  assert_float_equal(*(float *)dn_tensor_data(rm), rm_before, 0);
  dn_tensor *ge;
  DN_OK_OR_FAIL(dn_tensor_zeros(&ge, DN_F32, 4, (int64_t[]){0, 4, 2, 2}));
  DN_OK_OR_FAIL(dn_backward(ye, ge, false));
  assert_non_null(empty->grad);
  assert_int_equal(empty->grad->shape[0], 0);
  RELEASE(x, y1, y2, rm, rv, empty, ye, ge);
  /* a weight that is a strided view */
  dn_tensor *wide = dn_test_random(5, 2, (int64_t[]){4, 2}), *w, *wc;
  x = dn_test_random(6, 2, (int64_t[]){3, 4});
  DN_OK_OR_FAIL(dn_select(&w, wide, 1, 0));
  DN_OK_OR_FAIL(dn_contiguous(&wc, w));
  DN_OK_OR_FAIL(dn_batch_norm(&y1, x, w, NULL, NULL, NULL, true, 0.1, 1e-5));
  DN_OK_OR_FAIL(dn_batch_norm(&y2, x, wc, NULL, NULL, NULL, true, 0.1, 1e-5));
  dn_test_assert_close(y1, y2, 0);
  RELEASE(wide, w, wc, x, y1, y2);
}

/* --- gradients ------------------------------------------------------------------------------ */

static void test_gradients(void **state) {
  (void)state;
  for (size_t i = 0; i < N_CASES; i++) {
    const bn_case *c = &CASES[i];
    bn_inputs in = make_inputs(c, 10 * i + 5);
    DN_OK_OR_FAIL(dn_requires_grad_(in.x, true));
    if (c->affine) {
      DN_OK_OR_FAIL(dn_requires_grad_(in.weight, true));
      DN_OK_OR_FAIL(dn_requires_grad_(in.bias, true));
    }
    dn_tensor *args[5] = {in.x, in.weight, in.bias, in.running_mean, in.running_var};
    dn_test_gradcheck("batch_norm", apply, c, 5, args, 1e-3, 1e-2, 2e-3);
    /* only x, and only the weight */
    if (c->affine) {
      DN_OK_OR_FAIL(dn_requires_grad_(in.weight, false));
      DN_OK_OR_FAIL(dn_requires_grad_(in.bias, false));
      dn_test_gradcheck("batch_norm x", apply, c, 5, args, 1e-3, 1e-2, 2e-3);
      DN_OK_OR_FAIL(dn_requires_grad_(in.x, false));
      DN_OK_OR_FAIL(dn_requires_grad_(in.weight, true));
      dn_test_gradcheck("batch_norm weight", apply, c, 5, args, 1e-3, 1e-2, 2e-3);
    }
    release_inputs(&in);
  }
}

/* The node's name; no node without grad; an in-place change of x after the forward is caught. */
static void test_nodes(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(7, 2, (int64_t[]){4, 3}), *y;
  DN_OK_OR_FAIL(dn_batch_norm(&y, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  assert_null(y->grad_fn);
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_batch_norm(&y, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  assert_string_equal(dn_grad_fn_name(y), "batch_norm");
  dn_tensor_release(y);
  /* x changed in place after the forward: backward refuses */
  dn_tensor *x2, *g = dn_test_random(8, 2, (int64_t[]){4, 3});
  DN_OK_OR_FAIL(dn_clone(&x2, x));
  DN_OK_OR_FAIL(dn_batch_norm(&y, x2, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(x2, 1.0));
  dn_set_grad_enabled(true);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "modified");
  RELEASE(y, x2, x, g);
}

/* --- threads --------------------------------------------------------------------------------- */

static void test_threads_bit_identical(void **state) {
  (void)state;
  int saved = dn_get_num_threads();
  for (int training = 0; training < 2; training++) {
    bn_case c = {4, {8, 16, 19, 23}, true, training, 0.1, 1e-5};
    dn_tensor *first[6] = {NULL};
    for (int threads = 1; threads <= 4; threads++) {
      DN_OK_OR_FAIL(dn_set_num_threads(threads));
      bn_inputs in = make_inputs(&c, 77);
      DN_OK_OR_FAIL(dn_requires_grad_(in.x, true));
      DN_OK_OR_FAIL(dn_requires_grad_(in.weight, true));
      DN_OK_OR_FAIL(dn_requires_grad_(in.bias, true));
      dn_tensor *y, *g = dn_test_random(78, 4, c.shape);
      DN_OK_OR_FAIL(apply(&y, (dn_tensor *[]){in.x, in.weight, in.bias, in.running_mean, in.running_var}, &c));
      DN_OK_OR_FAIL(dn_backward(y, g, false));
      dn_tensor *now[6] = {y, in.running_mean, in.running_var, in.x->grad, in.weight->grad, in.bias->grad};
      for (int k = 0; k < 6; k++) {
        if (!first[k]) DN_OK_OR_FAIL(dn_clone(&first[k], now[k]));
        else
          assert_memory_equal(dn_tensor_data(now[k]), dn_tensor_data(first[k]),
                              (size_t)dn_tensor_numel(now[k]) * sizeof(float));
      }
      RELEASE(y, g);
      release_inputs(&in);
    }
    for (int k = 0; k < 6; k++) dn_tensor_release(first[k]);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
}

/* --- errors ------------------------------------------------------------------------------------ */

static void test_errors(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 4, (int64_t[]){2, 3, 2, 2}), *y = (dn_tensor *)&y, *xi, *x1, *x5, *xe, *one;
  dn_tensor *w3 = dn_test_random(2, 1, (int64_t[]){3}), *w4 = dn_test_random(3, 1, (int64_t[]){4});
  dn_tensor *w33 = dn_test_random(4, 2, (int64_t[]){3, 3}), *rm, *rv, *ri, *rg, *rx;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 2, (int64_t[]){2, 3}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&ri, DN_I32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&x1, DN_F32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&x5, DN_F32, 5, (int64_t[]){2, 3, 1, 1, 1}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&xe, DN_F32, 3, (int64_t[]){2, 3, 0}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&one, DN_F32, 4, (int64_t[]){1, 3, 1, 1}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, (int64_t[]){3}, 1.0));
  DN_OK_OR_FAIL(dn_tensor_zeros(&rg, DN_F32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_requires_grad_(rg, true));
  dn_tensor *scalar;
  DN_OK_OR_FAIL(dn_tensor_zeros(&scalar, DN_F32, 1, (int64_t[]){1}));
  DN_OK_OR_FAIL(dn_broadcast_to(&rx, scalar, 1, (int64_t[]){3}));

  DN_EXPECT_ERROR(dn_batch_norm(&y, xi, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ETYPE,
                  "batch_norm: input must be float32 (got int32)");
  assert_null(y);
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, NULL, NULL, ri, rv, true, 0.1, 1e-5), DN_ETYPE,
                  "batch_norm: running_mean must be float32 (got int32)");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x1, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm: input must be [N, C], [N, C, L] or [N, C, H, W] (got shape [3])");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x5, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "(got shape [2,3,1,1,1])");
  DN_EXPECT_ERROR(dn_batch_norm(&y, xe, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm: input [2,3,0] has an empty dim (only the batch N may be 0)");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, w4, w3, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm: weight must be [3], one value per channel of input [2,3,2,2] (got shape [4])");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, w3, w33, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm: bias must be [3], one value per channel of input [2,3,2,2] (got shape [3,3])");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, NULL, NULL, w4, rv, false, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm: running_mean must be [3], one value per channel of input [2,3,2,2] (got shape [4])");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, NULL, NULL, rm, w4, false, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm: running_var must be [3]");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, NULL, NULL, rm, NULL, true, 0.1, 1e-5), DN_EINVAL,
                  "batch_norm: running_mean and running_var go together (got only running_mean)");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5), DN_EINVAL,
                  "batch_norm: eval mode (training false) needs running_mean and running_var");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, NULL, NULL, rm, rv, true, 0.1, -1), DN_EINVAL,
                  "batch_norm: eps must be finite and >= 0 (got -1)");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, NULL, NULL, rm, rv, true, 0.1, NAN), DN_EINVAL, "eps must be finite");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, NULL, NULL, rm, rv, true, 1.5, 1e-5), DN_EINVAL,
                  "batch_norm: momentum must be in [0, 1] (got 1.5)");
  DN_EXPECT_ERROR(dn_batch_norm(&y, one, NULL, NULL, rm, rv, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm: expected more than 1 value per channel when training (got input [1,3,1,1])");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, NULL, NULL, rg, rv, true, 0.1, 1e-5), DN_EINVAL,
                  "batch_norm: running_mean must not require grad (it is updated in place)");
  DN_EXPECT_ERROR(dn_batch_norm(&y, x, NULL, NULL, rm, rx, true, 0.1, 1e-5), DN_EINVAL, "batch_norm:");
  /* eval reads a broadcast running statistic without complaint */
  DN_OK_OR_FAIL(dn_batch_norm(&y, x, NULL, NULL, rm, rx, false, 0.1, 1e-5));
  RELEASE(y, x, xi, x1, x5, xe, one, w3, w4, w33, rm, rv, ri, rg, rx, scalar);
}

/* --- batch norm + ReLU ------------------------------------------------------------------------ */

/* Boundary values in the inputs: channel 0 of x symmetric about an exact
   mean 0, with +0 and -0 elements (and, affine, a negative weight and a -0
   bias: outputs +0 and -0); running_mean 0 there too (eval: the same zeros).
   Channel 1: a NaN element (training: the whole channel's statistics NaN;
   eval: one NaN output). Last channel in eval (C >= 3): a negative running
   variance (1 / sqrt of a negative: NaN for the channel). The gradient: an
   infinity at the two zeros of channel 0 (masked: 0, not NaN). */
static void set_boundaries(bn_inputs *in, const bn_case *c, dn_tensor *g) {
  int64_t n = c->shape[0], ch = c->shape[1], s = 1;
  for (int d = 2; d < c->ndim; d++) s *= c->shape[d];
  float *x = dn_tensor_data(in->x), *gd = dn_tensor_data(g);
  int64_t m = n * s;
  for (int64_t k = 0; k < m; k++) {
    int64_t at = ((k / s) * ch) * s + k % s, pair = k / 2;
    float v = (float)(pair % 3) * 0.25f * (k % 2 ? -1.0f : 1.0f);   /* pairs +v, -v: +0, -0 at pair % 3 == 0 */
    x[at] = (k == m - 1 && m % 2) ? 0.0f : v;
  }
  gd[0] = INFINITY;
  if (m > 1) gd[1] = -INFINITY;
  ((float *)dn_tensor_data(in->running_mean))[0] = 0.0f;
  if (in->weight) {
    float *w = dn_tensor_data(in->weight);
    w[0] = -fabsf(w[0]) - 0.5f;
    ((float *)dn_tensor_data(in->bias))[0] = -0.0f;
  }
  if (ch > 1) x[s] = NAN;
  if (ch > 2 && !c->training) ((float *)dn_tensor_data(in->running_var))[ch - 1] = -1.0f;
}

/* One run of the case: dn_batch_norm_relu (fused) or dn_batch_norm then dn_unary(DN_RELU), with running
   statistics or without (training only), the grads asked for, back-propagating a fixed gradient. */
static void run_relu_case(dn_tensor *outs[N_OUTS], const bn_case *c, bool fused, bool running, unsigned grads,
                          bool boundaries, bool strided) {
  bn_inputs in = make_inputs(c, 500 + (uint64_t)(c - CASES));
  dn_tensor *g = dn_test_random(600, c->ndim, c->shape);
  if (boundaries) set_boundaries(&in, c, g);
  if (strided) {
    dn_tensor *xn = dn_test_noncontiguous(in.x), *gn = dn_test_noncontiguous(g);
    RELEASE(in.x, g);
    in.x = xn;
    g = gn;
  }
  if (grads & GRAD_X) DN_OK_OR_FAIL(dn_requires_grad_(in.x, true));
  if ((grads & GRAD_W) && in.weight) DN_OK_OR_FAIL(dn_requires_grad_(in.weight, true));
  if ((grads & GRAD_B) && in.bias) DN_OK_OR_FAIL(dn_requires_grad_(in.bias, true));
  dn_tensor *rm = running ? in.running_mean : NULL, *rv = running ? in.running_var : NULL, *y;
  if (fused) {
    DN_OK_OR_FAIL(dn_batch_norm_relu(&y, in.x, in.weight, in.bias, rm, rv, c->training, c->momentum, c->eps));
  } else {
    dn_tensor *pre;
    DN_OK_OR_FAIL(dn_batch_norm(&pre, in.x, in.weight, in.bias, rm, rv, c->training, c->momentum, c->eps));
    DN_OK_OR_FAIL(dn_unary(&y, DN_RELU, pre));
    dn_tensor_release(pre);
  }
  if (y->grad_fn) {
    assert_string_equal(dn_grad_fn_name(y), fused ? "batch_norm_relu" : "relu");
    DN_OK_OR_FAIL(dn_backward(y, g, false));
  } else {
    assert_true(grads == 0 || (!in.weight && !(grads & GRAD_X)));
  }
  norm_collect_outs(outs, y, in.running_mean, in.running_var, in.x, in.weight, in.bias);
  dn_tensor_release(y);
  dn_tensor_release(g);
  release_inputs(&in);
}

/* Bits of the output, the running statistics and every gradient: fused = batch norm then relu, for every
   case (2-D, 3-D, 4-D, training and eval, affine or not), with and without running statistics, each subset of
   gradients, the boundary inputs, strided x and gradient. */
static void test_relu_fused_bit_identical(void **state) {
  (void)state;
  static const unsigned GRADS[] = {GRAD_X | GRAD_W | GRAD_B, GRAD_X, GRAD_W, GRAD_B, GRAD_W | GRAD_B, 0};
  int compared = 0;
  for (size_t i = 0; i < N_CASES; i++) {
    const bn_case *c = &CASES[i];
    for (int running = 0; running < 2; running++) {
      if (!running && !c->training) continue;   /* eval needs the running statistics */
      for (size_t gi = 0; gi < sizeof GRADS / sizeof *GRADS; gi++) {
        if (!c->affine && (GRADS[gi] & (GRAD_W | GRAD_B)) && GRADS[gi] != (GRAD_X | GRAD_W | GRAD_B)) continue;
        for (int boundaries = 0; boundaries < 2; boundaries++)
          for (int strided = 0; strided < 2; strided++) {
            char what[128];
            snprintf(what, sizeof what, "case %zu, running %d, grads %u, boundaries %d, strided %d", i, running,
                     GRADS[gi], boundaries, strided);
            dn_tensor *plain[N_OUTS], *fused[N_OUTS];
            run_relu_case(plain, c, false, running, GRADS[gi], boundaries, strided);
            run_relu_case(fused, c, true, running, GRADS[gi], boundaries, strided);
            norm_assert_same_bits(plain, fused, what, "the unfused pair's");
            if (boundaries && GRADS[gi] == (GRAD_X | GRAD_W | GRAD_B)) {
              /* the boundaries are there: NaN outputs, a -0 output (affine), zero outputs with masked
                 infinite gradients */
              const float *y = dn_tensor_data(fused[OUT_Y]);
              bool nan = false, neg_zero = false;
              for (int64_t k = 0; k < dn_tensor_numel(fused[OUT_Y]); k++) {
                nan = nan || isnan(y[k]);
                neg_zero = neg_zero || (y[k] == 0.0f && signbit(y[k]));
              }
              if (c->shape[1] > 1) assert_true(nan);
              if (c->affine) assert_true(neg_zero);
              if (c->affine) assert_false(isnan(dn_test_at(fused[OUT_DB], 0)));   /* its infinities masked */
            }
            norm_release_outs(plain);
            norm_release_outs(fused);
            compared++;
          }
      }
    }
  }
  assert_true(compared > 100);
}

/* The fused op's output against the reference loops (values only: relu of them), and an empty batch. */
static void test_relu_values_and_empty(void **state) {
  (void)state;
  const bn_case *c = &CASES[3];
  bn_inputs in = make_inputs(c, 41), ref = make_inputs(c, 41);
  dn_tensor *y, *y0;
  DN_OK_OR_FAIL(dn_batch_norm_relu(&y, in.x, in.weight, in.bias, in.running_mean, in.running_var, true, 0.1, 1e-5));
  DN_OK_OR_FAIL(dn_batch_norm(&y0, ref.x, ref.weight, ref.bias, ref.running_mean, ref.running_var, true, 0.1, 1e-5));
  int64_t positive = 0;
  for (int64_t k = 0; k < dn_tensor_numel(y); k++) {
    double want = dn_test_at(y0, k) < 0 ? 0 : dn_test_at(y0, k);
    assert_float_equal(dn_test_at(y, k), want, 0);
    positive += want > 0;
  }
  assert_true(positive > 0 && positive < dn_tensor_numel(y));
  RELEASE(y, y0);
  release_inputs(&in);
  release_inputs(&ref);
  /* an empty batch: an empty output, nothing learned, zero parameter gradients */
  dn_tensor *empty, *ge, *w = dn_test_random(3, 1, (int64_t[]){4}), *rm, *rv, *ye;
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 4, (int64_t[]){0, 4, 2, 2}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&ge, DN_F32, 4, (int64_t[]){0, 4, 2, 2}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, (int64_t[]){4}));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, (int64_t[]){4}, 1.0));
  DN_OK_OR_FAIL(dn_requires_grad_(empty, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_batch_norm_relu(&ye, empty, w, NULL, rm, rv, true, 0.1, 1e-5));
  assert_int_equal(ye->shape[0], 0);
  assert_float_equal(dn_test_at(rm, 0), 0, 0);
  DN_OK_OR_FAIL(dn_backward(ye, ge, false));
  assert_int_equal(empty->grad->shape[0], 0);
  for (int k = 0; k < 4; k++) assert_float_equal(dn_test_at(w->grad, k), 0, 0);
  RELEASE(empty, ge, w, rm, rv, ye);
}

/* The fused op's node: its name, no node without grad, and a changed output or input refused in backward. */
static void test_relu_nodes(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(7, 2, (int64_t[]){4, 3}), *g = dn_test_random(8, 2, (int64_t[]){4, 3}), *y, *x2;
  DN_OK_OR_FAIL(dn_batch_norm_relu(&y, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  assert_null(y->grad_fn);
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_batch_norm_relu(&y, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  assert_string_equal(dn_grad_fn_name(y), "batch_norm_relu");
  /* the output (its ReLU mask) changed in place: refused */
  dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(y, 1.0));
  dn_set_grad_enabled(true);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL,
                  "that batch_norm_relu saved for its backward was modified in place");
  dn_tensor_release(y);
  /* the input changed in place: refused */
  DN_OK_OR_FAIL(dn_clone(&x2, x));
  DN_OK_OR_FAIL(dn_batch_norm_relu(&y, x2, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(x2, 1.0));
  dn_set_grad_enabled(true);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "modified");
  RELEASE(y, x2, x, g);
}

/* 1, 2 and 3 threads: the fused op's bits, all the unfused pair's at 1 thread. */
static void test_relu_threads(void **state) {
  (void)state;
  int saved = dn_get_num_threads();
  for (int training = 0; training < 2; training++) {
    bn_case c = {4, {8, 16, 19, 23}, true, training, 0.1, 1e-5};
    /* run_relu_case seeds by the case's index in CASES: a case outside it gets its own inputs here */
    dn_tensor *first[N_OUTS] = {NULL};
    for (int threads = 1; threads <= 3; threads++) {
      DN_OK_OR_FAIL(dn_set_num_threads(threads));
      for (int fused = 0; fused < 2; fused++) {
        if (fused == 0 && threads > 1) continue;
        bn_inputs in = make_inputs(&c, 91);
        dn_tensor *g = dn_test_random(92, 4, c.shape), *y;
        ((float *)dn_tensor_data(in.x))[5] = NAN;
        DN_OK_OR_FAIL(dn_requires_grad_(in.x, true));
        DN_OK_OR_FAIL(dn_requires_grad_(in.weight, true));
        DN_OK_OR_FAIL(dn_requires_grad_(in.bias, true));
        if (fused) {
          DN_OK_OR_FAIL(dn_batch_norm_relu(&y, in.x, in.weight, in.bias, in.running_mean, in.running_var, c.training,
                                           c.momentum, c.eps));
        } else {
          dn_tensor *pre;
          DN_OK_OR_FAIL(dn_batch_norm(&pre, in.x, in.weight, in.bias, in.running_mean, in.running_var, c.training,
                                      c.momentum, c.eps));
          DN_OK_OR_FAIL(dn_unary(&y, DN_RELU, pre));
          dn_tensor_release(pre);
        }
        DN_OK_OR_FAIL(dn_backward(y, g, false));
        dn_tensor *now[N_OUTS] = {y, in.running_mean, in.running_var, in.x->grad, in.weight->grad, in.bias->grad};
        for (int k = 0; k < N_OUTS; k++) {
          if (!first[k]) {
            DN_OK_OR_FAIL(dn_clone(&first[k], now[k]));
          } else if (memcmp(dn_tensor_data(now[k]), dn_tensor_data(first[k]),
                            (size_t)dn_tensor_numel(now[k]) * sizeof(float)) != 0) {
            fail_msg("training %d, %d threads, fused %d: output %d differs", training, threads, fused, k);
          }
        }
        RELEASE(y, g);
        release_inputs(&in);
      }
    }
    for (int k = 0; k < N_OUTS; k++) dn_tensor_release(first[k]);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
}

/* The checks are batch norm's, named after the fused op. */
static void test_relu_errors(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 4, (int64_t[]){2, 3, 2, 2}), *y = (dn_tensor *)&y, *xi, *one, *w4, *rm, *rv, *rg;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 2, (int64_t[]){2, 3}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&one, DN_F32, 2, (int64_t[]){1, 3}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, (int64_t[]){3}, 1.0));
  DN_OK_OR_FAIL(dn_tensor_zeros(&rg, DN_F32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_requires_grad_(rg, true));
  w4 = dn_test_random(3, 1, (int64_t[]){4});
  DN_EXPECT_ERROR(dn_batch_norm_relu(&y, xi, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ETYPE,
                  "batch_norm_relu: input must be float32 (got int32)");
  assert_null(y);
  DN_EXPECT_ERROR(dn_batch_norm_relu(&y, x, w4, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm_relu: weight must be [3], one value per channel of input [2,3,2,2] (got shape [4])");
  DN_EXPECT_ERROR(dn_batch_norm_relu(&y, x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5), DN_EINVAL,
                  "batch_norm_relu: eval mode (training false) needs running_mean and running_var");
  DN_EXPECT_ERROR(dn_batch_norm_relu(&y, one, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm_relu: expected more than 1 value per channel when training (got input [1,3])");
  DN_EXPECT_ERROR(dn_batch_norm_relu(&y, x, NULL, NULL, rg, rv, true, 0.1, 1e-5), DN_EINVAL,
                  "batch_norm_relu: running_mean must not require grad (it is updated in place)");
  DN_EXPECT_ERROR(dn_batch_norm_relu(&y, x, NULL, NULL, rm, rv, true, -0.5, 1e-5), DN_EINVAL,
                  "batch_norm_relu: momentum must be in [0, 1] (got -0.5)");
  DN_EXPECT_ERROR(dn_batch_norm_relu(&y, x, NULL, NULL, rm, rv, true, 0.1, INFINITY), DN_EINVAL,
                  "batch_norm_relu: eps must be finite");
  RELEASE(x, xi, one, w4, rm, rv, rg);
}

/* --- layer and group normalization ----------------------------------------------------------- */

/* A layer norm (groups 0: normalized over the last `norm_ndim` dims) or a group norm. */
typedef struct row_case {
  int ndim;
  int64_t shape[4];
  int norm_ndim;
  int64_t groups;
  bool affine;
  double eps;
} row_case;

static const row_case ROW_CASES[] = {
  {2, {4, 6}, 1, 0, true, 1e-5},
  {3, {2, 3, 5}, 2, 0, true, 1e-5},
  {4, {2, 2, 3, 4}, 3, 0, false, 1e-3},
  {1, {7}, 1, 0, true, 1e-5},
  {2, {0, 5}, 1, 0, true, 1e-5},           /* no rows */
  {4, {2, 6, 2, 3}, 0, 3, true, 1e-5},
  {3, {3, 4, 5}, 0, 1, true, 1e-5},
  {2, {5, 6}, 0, 6, false, 1e-5},          /* instance norm of [N, C]: one value per row (xhat 0) */
  {4, {1, 4, 3, 3}, 0, 2, true, 1e-2},
};
#define N_ROW_CASES (sizeof ROW_CASES / sizeof *ROW_CASES)

static void affine_shape(const row_case *c, int *nd, int64_t *shape) {
  if (c->groups) {
    *nd = 1;
    shape[0] = c->shape[1];
  } else {
    *nd = c->norm_ndim;
    memcpy(shape, c->shape + c->ndim - c->norm_ndim, (size_t)c->norm_ndim * sizeof *shape);
  }
}

static dn_status apply_row(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const row_case *c = ctx;
  if (c->groups) return dn_group_norm(out, in[0], c->groups, in[1], in[2], c->eps);
  return dn_layer_norm(out, in[0], c->norm_ndim, c->shape + c->ndim - c->norm_ndim, in[1], in[2], c->eps);
}

/* The naive reference: blocks of `len` consecutive elements; the affine index per element. */
static void check_row_values(const row_case *c, dn_tensor *x, dn_tensor *w, dn_tensor *b) {
  dn_tensor *y;
  DN_OK_OR_FAIL(apply_row(&y, (dn_tensor *[]){x, w, b}, c));
  int64_t numel = dn_tensor_numel(x), len = 1, s = 1;
  for (int d = 2; d < c->ndim; d++) s *= c->shape[d];
  if (c->groups) len = c->shape[1] / c->groups * s;
  else
    for (int d = c->ndim - c->norm_ndim; d < c->ndim; d++) len *= c->shape[d];
  for (int64_t r = 0; r * len < numel; r++) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < len; i++) mean += dn_test_at(x, r * len + i);
    mean /= (double)len;
    for (int64_t i = 0; i < len; i++) var += pow(dn_test_at(x, r * len + i) - mean, 2);
    var /= (double)len;
    for (int64_t i = 0; i < len; i++) {
      int64_t at = r * len + i, p = c->groups ? (at / s) % c->shape[1] : i;
      double want = (dn_test_at(x, at) - mean) / sqrt(var + c->eps);
      if (w) want = want * dn_test_at(w, p) + dn_test_at(b, p);
      double got = dn_test_at(y, at);
      if (!(fabs(got - want) <= 1e-5 * (1 + fabs(want))))
        fail_msg("row case %d at %lld: %.9g vs %.9g", (int)(c - ROW_CASES), (long long)at, got, want);
    }
  }
  if (x->requires_grad) assert_string_equal(dn_grad_fn_name(y), c->groups ? "group_norm" : "layer_norm");
  else assert_null(y->grad_fn);
  dn_tensor_release(y);
}

static void test_row_norms(void **state) {
  (void)state;
  for (size_t i = 0; i < N_ROW_CASES; i++) {
    const row_case *c = &ROW_CASES[i];
    int64_t ashape[4];
    int affine_nd;
    affine_shape(c, &affine_nd, ashape);
    dn_tensor *x = dn_test_random(100 + i, c->ndim, c->shape), *xn = dn_test_noncontiguous(x);
    dn_tensor *w = c->affine ? dn_test_random(200 + i, affine_nd, ashape) : NULL;
    dn_tensor *b = c->affine ? dn_test_random(300 + i, affine_nd, ashape) : NULL;
    check_row_values(c, x, w, b);
    check_row_values(c, xn, w, b);
    DN_OK_OR_FAIL(dn_requires_grad_(x, true));
    if (w) {
      DN_OK_OR_FAIL(dn_requires_grad_(w, true));
      DN_OK_OR_FAIL(dn_requires_grad_(b, true));
    }
    check_row_values(c, x, w, b);
    if (dn_tensor_numel(x) > 0) {
      dn_test_gradcheck("row norm", apply_row, c, 3, (dn_tensor *[]){x, w, b}, 1e-3, 1e-2, 2e-3);
    } else {   /* no rows: zero parameter gradients */
      dn_tensor *y, *g;
      DN_OK_OR_FAIL(apply_row(&y, (dn_tensor *[]){x, w, b}, c));
      DN_OK_OR_FAIL(dn_tensor_zeros(&g, DN_F32, c->ndim, c->shape));
      DN_OK_OR_FAIL(dn_backward(y, g, false));
      for (int64_t k = 0; k < dn_tensor_numel(w); k++) assert_float_equal(dn_test_at(w->grad, k), 0, 0);
      RELEASE(y, g);
    }
    RELEASE(x, xn, w, b);
  }
}

static void test_row_norm_threads(void **state) {
  (void)state;
  int saved = dn_get_num_threads();
  const row_case cases[] = {{3, {64, 33, 40}, 1, 0, true, 1e-5}, {4, {6, 32, 17, 19}, 0, 8, true, 1e-5}};
  for (size_t k = 0; k < 2; k++) {
    const row_case *c = &cases[k];
    int64_t ashape[4];
    int affine_nd;
    affine_shape(c, &affine_nd, ashape);
    dn_tensor *first[4] = {NULL};
    for (int threads = 1; threads <= 4; threads++) {
      DN_OK_OR_FAIL(dn_set_num_threads(threads));
      dn_tensor *x = dn_test_random(5, c->ndim, c->shape), *w = dn_test_random(6, affine_nd, ashape);
      dn_tensor *b = dn_test_random(7, affine_nd, ashape), *g = dn_test_random(8, c->ndim, c->shape), *y;
      DN_OK_OR_FAIL(dn_requires_grad_(x, true));
      DN_OK_OR_FAIL(dn_requires_grad_(w, true));
      DN_OK_OR_FAIL(dn_requires_grad_(b, true));
      DN_OK_OR_FAIL(apply_row(&y, (dn_tensor *[]){x, w, b}, c));
      DN_OK_OR_FAIL(dn_backward(y, g, false));
      dn_tensor *now[4] = {y, x->grad, w->grad, b->grad};
      for (int i = 0; i < 4; i++) {
        if (!first[i]) DN_OK_OR_FAIL(dn_clone(&first[i], now[i]));
        else
          assert_memory_equal(dn_tensor_data(now[i]), dn_tensor_data(first[i]),
                              (size_t)dn_tensor_numel(now[i]) * sizeof(float));
      }
      RELEASE(x, w, b, g, y);
    }
    for (int i = 0; i < 4; i++) dn_tensor_release(first[i]);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
}

static void test_row_norm_errors(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 3, (int64_t[]){2, 4, 3}), *y = (dn_tensor *)&y, *xi, *w3, *w4, *x1, *xe;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 2, (int64_t[]){2, 3}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&x1, DN_F32, 1, (int64_t[]){4}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&xe, DN_F32, 3, (int64_t[]){2, 4, 0}));
  w3 = dn_test_random(2, 1, (int64_t[]){3});
  w4 = dn_test_random(3, 1, (int64_t[]){4});
  DN_EXPECT_ERROR(dn_layer_norm(&y, xi, 1, (int64_t[]){3}, NULL, NULL, 1e-5), DN_ETYPE,
                  "layer_norm: input must be float32 (got int32)");
  assert_null(y);
  DN_EXPECT_ERROR(dn_layer_norm(&y, x, 4, (int64_t[]){1, 2, 4, 3}, NULL, NULL, 1e-5), DN_ESHAPE,
                  "layer_norm: normalized_shape must have 1 to 3 dims, the input's (got 4 for input [2,4,3])");
  DN_EXPECT_ERROR(dn_layer_norm(&y, x, 2, (int64_t[]){3, 4}, NULL, NULL, 1e-5), DN_ESHAPE,
                  "layer_norm: normalized_shape [3,4] must be the last dims of input [2,4,3], none of them 0");
  DN_EXPECT_ERROR(dn_layer_norm(&y, x, 1, (int64_t[]){3}, w4, NULL, 1e-5), DN_ESHAPE,
                  "layer_norm: weight must be [3] (got shape [4])");
  DN_EXPECT_ERROR(dn_layer_norm(&y, x, 1, (int64_t[]){3}, w3, w4, 1e-5), DN_ESHAPE,
                  "layer_norm: bias must be [3] (got shape [4])");
  DN_EXPECT_ERROR(dn_layer_norm(&y, x, 1, (int64_t[]){3}, NULL, NULL, -1), DN_EINVAL,
                  "layer_norm: eps must be finite and >= 0 (got -1)");
  DN_EXPECT_ERROR(dn_group_norm(&y, xi, 1, NULL, NULL, 1e-5), DN_ETYPE, "group_norm: input must be float32");
  DN_EXPECT_ERROR(dn_group_norm(&y, x1, 1, NULL, NULL, 1e-5), DN_ESHAPE,
                  "group_norm: input must be [N, C, ...] (got shape [4])");
  DN_EXPECT_ERROR(dn_group_norm(&y, xe, 1, NULL, NULL, 1e-5), DN_ESHAPE,
                  "group_norm: input [2,4,0] has an empty dim (only the batch N may be 0)");
  DN_EXPECT_ERROR(dn_group_norm(&y, x, 3, NULL, NULL, 1e-5), DN_EINVAL,
                  "group_norm: groups must be >= 1 and divide the 4 channels of input [2,4,3] (got 3)");
  DN_EXPECT_ERROR(dn_group_norm(&y, x, 0, NULL, NULL, 1e-5), DN_EINVAL, "(got 0)");
  DN_EXPECT_ERROR(dn_group_norm(&y, x, 2, w3, NULL, 1e-5), DN_ESHAPE,
                  "group_norm: weight must be [4], one value per channel (got shape [3])");
  DN_EXPECT_ERROR(dn_group_norm(&y, x, 2, NULL, NULL, INFINITY), DN_EINVAL, "group_norm: eps must be finite");
  RELEASE(x, xi, w3, w4, x1, xe);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_values, dn_test_reset_modes),
    cmocka_unit_test_setup(test_far_from_zero, dn_test_reset_modes),
    cmocka_unit_test_setup(test_no_running_and_empty, dn_test_reset_modes),
    cmocka_unit_test_setup(test_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_nodes, dn_test_reset_modes),
    cmocka_unit_test_setup(test_threads_bit_identical, dn_test_reset_modes),
    cmocka_unit_test_setup(test_errors, dn_test_reset_modes),
    cmocka_unit_test_setup(test_relu_fused_bit_identical, dn_test_reset_modes),
    cmocka_unit_test_setup(test_relu_values_and_empty, dn_test_reset_modes),
    cmocka_unit_test_setup(test_relu_nodes, dn_test_reset_modes),
    cmocka_unit_test_setup(test_relu_threads, dn_test_reset_modes),
    cmocka_unit_test_setup(test_relu_errors, dn_test_reset_modes),
    cmocka_unit_test_setup(test_row_norms, dn_test_reset_modes),
    cmocka_unit_test_setup(test_row_norm_threads, dn_test_reset_modes),
    cmocka_unit_test_setup(test_row_norm_errors, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
