/* Batch norm + ReLU + 2x2 max pool (dn_batch_norm_relu_max_pool2d) against
   the unfused chain, bit for bit: the output, the running statistics and the
   gradients of x, weight and bias. Odd and even planes (a row and a column in
   no window), one window per plane, rows of more than one chunk, batch 1,
   one channel, training and eval, affine or not, with running statistics or
   without; values with ties and windows that ReLU zeroes whole; NaN, -0 and
   signed zero outputs with infinite, -0 and denormal gradients (denormals
   flushed or not); strided inputs; each subset of gradients; 1-3 threads;
   the node; an empty batch; every bad argument's message. The same op with
   channel dropout after the pool (dn_batch_norm_relu_max_pool2d_dropout2d)
   against the chain then dn_dropout_channels: values, gradients and the
   generator's offset, for each p and scaling, a batch shard, 1-3 threads,
   and its own errors. Every batch norm form on a convolution's output that
   carries its rows' sums (dn_conv2d_stats, dn_conv1d_stats) against the same
   without them; sums dropped by an in-place write. */
#include "testutil.h"
#include "testutil_norm.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dropnet/conv.h"
#include "graph.h"
#include "row_stats.h"

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) \
  release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

/* One configuration: input shape [N, C, H, W], affine or not, training or eval. */
typedef struct pool_case {
  int64_t shape[4];
  bool affine, training;
  double momentum, eps;
} pool_case;

static const pool_case CASES[] = {
  {{2, 3, 7, 9}, true, true, 0.1, 1e-5},     /* odd H and W: the last row and column in no window */
  {{2, 3, 7, 9}, false, false, 0.1, 1e-5},
  {{4, 3, 14, 14}, true, true, 0.1, 1e-5},
  {{4, 3, 14, 14}, true, false, 0.1, 1e-5},
  {{2, 1, 28, 28}, true, true, 0.3, 1e-3},
  {{2, 1, 28, 28}, false, false, 0.1, 1e-5},
  {{3, 3, 2, 2}, true, true, 0.1, 1e-5},     /* one window per plane */
  {{3, 3, 2, 2}, false, false, 0.1, 1e-5},
  {{1, 3, 6, 8}, true, true, 1.0, 1e-2},     /* batch 1 */
  {{1, 1, 2, 3}, false, true, 0.0, 1e-5},    /* one channel, one window, an odd column */
  {{1, 3, 5, 4}, true, false, 0.1, 1e-5},
  {{2, 2, 5, 40}, true, true, 0.1, 1e-5},    /* rows of 20 outputs: a whole chunk of 16 and a part */
  {{2, 3, 3, 35}, false, true, 0.1, 1e-5},   /* rows of 17 */
};
#define N_CASES (sizeof CASES / sizeof *CASES)

/* What x and the gradient hold: random values in [-2, 2]; integers (floor(3 v): ties in most windows, and
   whole windows <= 0, ties of ReLU's zeros); those integers with NaN, signed zeros and special gradients;
   sums whose bits show the order of their terms (VALUES_ORDER, make_inputs). */
typedef enum values { VALUES_RANDOM, VALUES_TIES, VALUES_SPECIAL, VALUES_ORDER, N_VALUES } values;

/* The fused op, or the chain it replaces: batch_norm_relu then max_pool2d, or batch_norm, relu, max_pool2d. */
typedef enum chain { FUSED, BN_RELU_POOL, BN_RELU_POOL_APART } chain;


typedef struct inputs {
  dn_tensor *x, *weight, *bias, *running_mean, *running_var, *g;   /* g: [N, C, H / 2, W / 2] */
} inputs;

static void out_shape(const pool_case *c, int64_t out[4]) {
  out[0] = c->shape[0], out[1] = c->shape[1], out[2] = c->shape[2] / 2, out[3] = c->shape[3] / 2;
}

static inputs make_inputs(const pool_case *c, uint64_t seed, values kind) {
  int64_t ch = c->shape[1], out[4];
  out_shape(c, out);
  inputs in = {dn_test_random(seed, 4, c->shape), NULL, NULL, NULL, NULL, dn_test_random(seed + 5, 4, out)};
  if (c->affine) {
    in.weight = dn_test_random(seed + 1, 1, &ch);
    in.bias = dn_test_random(seed + 2, 1, &ch);
  }
  in.running_mean = dn_test_random(seed + 3, 1, &ch);
  in.running_var = dn_test_random(seed + 4, 1, &ch);
  float *rv = dn_tensor_data(in.running_var);
  for (int64_t k = 0; k < ch; k++) rv[k] = fabsf(rv[k]) + 0.25f;
  if (kind == VALUES_RANDOM) return in;
  float *x = dn_tensor_data(in.x), *g = dn_tensor_data(in.g);
  int64_t n = dn_tensor_numel(in.x), s = c->shape[2] * c->shape[3];
  if (kind == VALUES_ORDER) {
    /*
    ** Sums of values in [-2, 2] in double are exact, or round far below
    ** float32's bits: a change in the order of the backward's sums (the
    ** rows' order, a position's lane) went unseen. Here each channel's first
    ** gradient of image 0 is 2^60 and of image 1 -2^60, both at position 0
    ** of their rows, so in lane 0: lane 0 loses the terms that come between
    ** the two (under 2^60's half ulp) and keeps the ones after. Every window
    ** routes its gradient (its top left, 3, is the largest and normalizes
    ** above 0), so these two are never masked.
    */
    for (int64_t k = 0; k < n; k++)
      if ((k % s) / c->shape[3] % 2 == 0 && (k % s) % c->shape[3] % 2 == 0) x[k] = 3.0f;
    if (in.weight) {
      float *w = dn_tensor_data(in.weight), *b = dn_tensor_data(in.bias);
      for (int64_t k = 0; k < ch; k++) w[k] = fabsf(w[k]) + 0.5f, b[k] = 0.0f;
    }
    for (int64_t k = 0; k < ch && c->shape[0] > 1; k++) {
      g[k * out[2] * out[3]] = 0x1p60f;
      g[(ch + k) * out[2] * out[3]] = -0x1p60f;
    }
    return in;
  }
  for (int64_t k = 0; k < n; k++) x[k] = floorf(3.0f * x[k]);
  if (kind == VALUES_TIES) return in;
  /* channel 0: eval normalizes at running mean 0, and the bias -0 with a negative weight makes x = 0 give -0
     outputs and x > 0 negative ones: windows of -0 and +0; channel 1: a NaN (training: the channel's
     statistics; eval: one window); gradients: -0, denormal, infinite */
  ((float *)dn_tensor_data(in.running_mean))[0] = 0.0f;
  if (in.weight) {
    float *w = dn_tensor_data(in.weight);
    w[0] = -fabsf(w[0]) - 0.5f;
    ((float *)dn_tensor_data(in.bias))[0] = -0.0f;
  }
  if (ch > 1) x[s + 1] = NAN;
  for (int64_t k = 0; k < dn_tensor_numel(in.g); k++) {
    if (k % 5 == 1) g[k] = -0.0f;
    if (k % 7 == 2) g[k] = 1e-40f;
  }
  g[0] = INFINITY;
  return in;
}

static void release_inputs(inputs *in) {
  RELEASE(in->x, in->weight, in->bias, in->running_mean, in->running_var, in->g);
}

/* What the chain's intermediate (ReLU's output) held, over every run: the pool's boundaries were met. */
static struct {
  int64_t windows, tied, all_zero, nan;
} seen;

/* Counts ties, windows of zeros and NaN among the 2x2 windows of a [N, C, H, W] ReLU output. */
static void count_windows(const dn_tensor *a) {
  const float *v = dn_tensor_data(a);
  int64_t planes = a->shape[0] * a->shape[1], h = a->shape[2], w = a->shape[3];
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oh = 0; oh < h / 2; oh++)
      for (int64_t ow = 0; ow < w / 2; ow++) {
        const float *r0 = v + p * h * w + 2 * oh * w + 2 * ow, *r1 = r0 + w;
        float e[4] = {r0[0], r0[1], r1[0], r1[1]}, m = e[0];
        bool nan = false;
        for (int k = 0; k < 4; k++) {
          nan = nan || isnan(e[k]);
          if (e[k] > m) m = e[k];
        }
        int at_max = 0, zeros = 0;
        for (int k = 0; k < 4; k++) at_max += e[k] == m, zeros += e[k] == 0.0f;
        seen.windows++;
        seen.nan += nan;
        seen.tied += !nan && m > 0 && at_max > 1;
        seen.all_zero += zeros == 4;
      }
}

/* The end of a run: backward of the case's gradient through y's node (named grad_fn, or any name for NULL),
   or none when nothing asked for a gradient; outs collected; y and the inputs released. */
static void finish_run(dn_tensor *outs[N_OUTS], dn_tensor *y, inputs *in, unsigned grads, const char *grad_fn) {
  if (y->grad_fn) {
    if (grad_fn) assert_string_equal(dn_grad_fn_name(y), grad_fn);
    DN_OK_OR_FAIL(dn_backward(y, in->g, false));
  } else {
    assert_true(grads == 0 || (!in->weight && !(grads & GRAD_X)));
  }
  norm_collect_outs(outs, y, in->running_mean, in->running_var, in->x, in->weight, in->bias);
  dn_tensor_release(y);
  release_inputs(in);
}

/* One run: the fused op or a chain on the case's inputs, with running statistics or without, the gradients
   asked for, x and the gradient strided or not; outs: contiguous copies (NULL: not given). */
static void run(dn_tensor *outs[N_OUTS], const pool_case *c, chain how, values kind, bool running, unsigned grads,
                bool strided) {
  inputs in = make_inputs(c, 700 + 10 * (uint64_t)(c - CASES) + (uint64_t)kind, kind);
  if (strided) {
    dn_tensor *xn = dn_test_noncontiguous(in.x), *gn = dn_test_noncontiguous(in.g);
    RELEASE(in.x, in.g);
    in.x = xn;
    in.g = gn;
  }
  if (grads & GRAD_X) DN_OK_OR_FAIL(dn_requires_grad_(in.x, true));
  if ((grads & GRAD_W) && in.weight) DN_OK_OR_FAIL(dn_requires_grad_(in.weight, true));
  if ((grads & GRAD_B) && in.bias) DN_OK_OR_FAIL(dn_requires_grad_(in.bias, true));
  dn_tensor *rm = running ? in.running_mean : NULL, *rv = running ? in.running_var : NULL, *y, *act;
  if (how == FUSED) {
    DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d(&y, in.x, in.weight, in.bias, rm, rv, c->training, c->momentum,
                                                c->eps));
  } else {
    if (how == BN_RELU_POOL) {
      DN_OK_OR_FAIL(dn_batch_norm_relu(&act, in.x, in.weight, in.bias, rm, rv, c->training, c->momentum, c->eps));
    } else {
      dn_tensor *pre;
      DN_OK_OR_FAIL(dn_batch_norm(&pre, in.x, in.weight, in.bias, rm, rv, c->training, c->momentum, c->eps));
      DN_OK_OR_FAIL(dn_unary(&act, DN_RELU, pre));
      dn_tensor_release(pre);
    }
    count_windows(act);
    DN_OK_OR_FAIL(dn_max_pool2d(&y, act, (const int64_t[]){2, 2}, NULL, NULL, NULL, false));
    dn_tensor_release(act);
  }
  finish_run(outs, y, &in, grads, how == FUSED ? "batch_norm_relu_max_pool2d" : "max_pool2d");
}

/* Every case, kind of values, with and without running statistics (training), each subset of gradients
   (none: no node, the pool writes no indices), contiguous and strided: the fused op's bits are
   batch_norm_relu then max_pool2d's, and with every gradient also batch_norm, relu, max_pool2d's. */
static void test_bit_identical(void **state) {
  (void)state;
  static const unsigned GRADS[] = {GRAD_X | GRAD_W | GRAD_B, GRAD_X, GRAD_W | GRAD_B, GRAD_W, 0};
  memset(&seen, 0, sizeof seen);
  int compared = 0;
  for (size_t i = 0; i < N_CASES; i++) {
    const pool_case *c = &CASES[i];
    for (int kind = 0; kind < N_VALUES; kind++)
      for (int running = 0; running < 2; running++) {
        if (!running && !c->training) continue;   /* eval needs the running statistics */
        for (size_t gi = 0; gi < sizeof GRADS / sizeof *GRADS; gi++) {
          if (!c->affine && (GRADS[gi] & (GRAD_W | GRAD_B)) && GRADS[gi] != (GRAD_X | GRAD_W | GRAD_B)) continue;
          for (int strided = 0; strided < 2; strided++) {
            char what[160];
            snprintf(what, sizeof what, "case %zu [%lld,%lld,%lld,%lld], values %d, running %d, grads %u, strided %d",
                     i, (long long)c->shape[0], (long long)c->shape[1], (long long)c->shape[2],
                     (long long)c->shape[3], kind, running, GRADS[gi], strided);
            dn_tensor *fused[N_OUTS], *chain_outs[N_OUTS];
            run(fused, c, FUSED, (values)kind, running, GRADS[gi], strided);
            run(chain_outs, c, BN_RELU_POOL, (values)kind, running, GRADS[gi], strided);
            norm_assert_same_bits(fused, chain_outs, what, "the chain's");
            norm_release_outs(chain_outs);
            if (GRADS[gi] == (GRAD_X | GRAD_W | GRAD_B)) {
              run(chain_outs, c, BN_RELU_POOL_APART, (values)kind, running, GRADS[gi], strided);
              norm_assert_same_bits(fused, chain_outs, what, "the chain's");
              norm_release_outs(chain_outs);
            }
            norm_release_outs(fused);
            compared++;
          }
        }
      }
  }
  assert_true(compared > 300);
  /* the boundaries were there: ties at a positive maximum, windows ReLU zeroed whole, NaN windows */
  assert_true(seen.tied > seen.windows / 20);
  assert_true(seen.all_zero > seen.windows / 20);
  assert_true(seen.nan > 0);
}

/* Denormal gradients kept (flush off): 0 + g keeps them in the chain's max pool backward, and here too. */
static void test_denormals_kept(void **state) {
  (void)state;
  bool flush = dn_get_flush_denormal();
  dn_set_flush_denormal(false);
  for (size_t i = 0; i < N_CASES; i++) {
    dn_tensor *fused[N_OUTS], *chain_outs[N_OUTS];
    char what[64];
    snprintf(what, sizeof what, "case %zu, denormals kept", i);
    run(fused, &CASES[i], FUSED, VALUES_SPECIAL, true, GRAD_X | GRAD_W | GRAD_B, false);
    run(chain_outs, &CASES[i], BN_RELU_POOL, VALUES_SPECIAL, true, GRAD_X | GRAD_W | GRAD_B, false);
    norm_assert_same_bits(fused, chain_outs, what, "the chain's");
    norm_release_outs(fused);
    norm_release_outs(chain_outs);
  }
  dn_set_flush_denormal(flush);
}

/* 1, 2 and 3 threads, planes of 28x28 and 27x29: the fused op's bits, all the chain's at 1 thread. */
static void test_threads(void **state) {
  (void)state;
  int saved = dn_get_num_threads();
  static const pool_case big[] = {
    {{8, 16, 28, 28}, true, true, 0.1, 1e-5},
    {{8, 16, 27, 29}, true, true, 0.1, 1e-5},
    {{8, 16, 28, 28}, true, false, 0.1, 1e-5},
    {{6, 5, 14, 14}, false, true, 0.1, 1e-5},
  };
  for (size_t i = 0; i < sizeof big / sizeof *big; i++)
    for (int kind = VALUES_RANDOM; kind <= VALUES_SPECIAL; kind += VALUES_SPECIAL) {
      DN_OK_OR_FAIL(dn_set_num_threads(1));
      dn_tensor *want[N_OUTS];
      run(want, &big[i], BN_RELU_POOL, (values)kind, true, GRAD_X | GRAD_W | GRAD_B, false);
      for (int threads = 1; threads <= 3; threads++) {
        DN_OK_OR_FAIL(dn_set_num_threads(threads));
        dn_tensor *got[N_OUTS];
        char what[64];
        snprintf(what, sizeof what, "big case %zu, values %d, %d threads", i, kind, threads);
        run(got, &big[i], FUSED, (values)kind, true, GRAD_X | GRAD_W | GRAD_B, false);
        norm_assert_same_bits(got, want, what, "the chain's");
        norm_release_outs(got);
      }
      norm_release_outs(want);
    }
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
}

/* The node: its name, none without grad; a changed input refused in backward; a changed output not (the node
   keeps the indices, as the chain's max pool does, not the output). */
static void test_node(void **state) {
  (void)state;
  const int64_t shape[4] = {2, 3, 6, 6}, out[4] = {2, 3, 3, 3};
  dn_tensor *x = dn_test_random(7, 4, shape), *x1 = dn_test_random(7, 4, shape), *g = dn_test_random(8, 4, out);
  dn_tensor *y, *x2;
  DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d(&y, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  assert_null(y->grad_fn);
  assert_int_equal(y->ndim, 4);
  for (int d = 0; d < 4; d++) assert_int_equal(y->shape[d], out[d]);
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d(&y, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  assert_string_equal(dn_grad_fn_name(y), "batch_norm_relu_max_pool2d");
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  dn_tensor_release(y);
  /* the output changed in place: the same gradient */
  DN_OK_OR_FAIL(dn_requires_grad_(x1, true));
  DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d(&y, x1, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(y, -1.0));
  dn_set_grad_enabled(true);
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  assert_memory_equal(dn_tensor_data(x1->grad), dn_tensor_data(x->grad), (size_t)dn_tensor_numel(x->grad) * 4);
  dn_tensor_release(y);
  /* the input changed in place: refused */
  DN_OK_OR_FAIL(dn_clone(&x2, x));
  DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d(&y, x2, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(x2, 1.0));
  dn_set_grad_enabled(true);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "modified");
  RELEASE(y, x2, x, x1, g);
}

/* An empty batch: an empty output, nothing learned, zero parameter gradients. */
static void test_empty_batch(void **state) {
  (void)state;
  dn_tensor *x, *ge, *w = dn_test_random(3, 1, (int64_t[]){4}), *rm, *rv, *y;
  DN_OK_OR_FAIL(dn_tensor_zeros(&x, DN_F32, 4, (int64_t[]){0, 4, 5, 6}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&ge, DN_F32, 4, (int64_t[]){0, 4, 2, 3}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, (int64_t[]){4}));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, (int64_t[]){4}, 1.0));
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d(&y, x, w, NULL, rm, rv, true, 0.1, 1e-5));
  assert_int_equal(y->shape[0], 0);
  assert_int_equal(y->shape[2], 2);
  assert_int_equal(y->shape[3], 3);
  assert_float_equal(dn_test_at(rm, 0), 0, 0);
  assert_float_equal(dn_test_at(rv, 0), 1, 0);
  DN_OK_OR_FAIL(dn_backward(y, ge, false));
  assert_int_equal(x->grad->shape[0], 0);
  for (int k = 0; k < 4; k++) assert_float_equal(dn_test_at(w->grad, k), 0, 0);
  RELEASE(x, ge, w, rm, rv, y);
}

/* The input's layout for the 2x2 pool, then batch norm's checks, all named after the fused op. */
static void test_errors(void **state) {
  (void)state;
  const char *op = "batch_norm_relu_max_pool2d";
  dn_tensor *x = dn_test_random(1, 4, (int64_t[]){2, 3, 4, 4}), *y = (dn_tensor *)&y;
  dn_tensor *x3 = dn_test_random(2, 3, (int64_t[]){2, 3, 4}), *h1 = dn_test_random(3, 4, (int64_t[]){2, 3, 1, 4});
  dn_tensor *w1 = dn_test_random(4, 4, (int64_t[]){2, 3, 4, 1}), *x5 = dn_test_random(5, 5, (int64_t[]){2, 3, 2, 2, 2});
  dn_tensor *w4 = dn_test_random(6, 1, (int64_t[]){4}), *r2 = dn_test_random(7, 1, (int64_t[]){2}), *xi, *xe, *rm, *rv,
            *rg;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 4, (int64_t[]){2, 3, 4, 4}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&xe, DN_F32, 4, (int64_t[]){2, 0, 4, 4}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, (int64_t[]){3}, 1.0));
  DN_OK_OR_FAIL(dn_tensor_zeros(&rg, DN_F32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_requires_grad_(rg, true));
  char want[256];
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, x3, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm_relu_max_pool2d: input must be [N, C, H, W] with H >= 2 and W >= 2 for the 2x2 pool "
                  "(got shape [2,3,4])");
  assert_null(y);
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, h1, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm_relu_max_pool2d: input must be [N, C, H, W] with H >= 2 and W >= 2 for the 2x2 pool "
                  "(got shape [2,3,1,4])");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, w1, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "(got shape [2,3,4,1])");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, x5, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "(got shape [2,3,2,2,2])");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, xi, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ETYPE,
                  "batch_norm_relu_max_pool2d: input must be float32 (got int32)");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, xe, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm_relu_max_pool2d: input [2,0,4,4] has an empty dim (only the batch N may be 0)");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, x, w4, NULL, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm_relu_max_pool2d: weight must be [3], one value per channel of input [2,3,4,4] (got "
                  "shape [4])");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, x, NULL, w4, NULL, NULL, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm_relu_max_pool2d: bias must be [3]");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, x, NULL, NULL, r2, rv, true, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm_relu_max_pool2d: running_mean must be [3], one value per channel of input [2,3,4,4] "
                  "(got shape [2])");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, x, NULL, NULL, rm, r2, false, 0.1, 1e-5), DN_ESHAPE,
                  "batch_norm_relu_max_pool2d: running_var must be [3]");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5), DN_EINVAL,
                  "batch_norm_relu_max_pool2d: eval mode (training false) needs running_mean and running_var");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, x, NULL, NULL, rg, rv, true, 0.1, 1e-5), DN_EINVAL,
                  "batch_norm_relu_max_pool2d: running_mean must not require grad (it is updated in place)");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, x, NULL, NULL, rm, rv, true, 1.5, 1e-5), DN_EINVAL,
                  "batch_norm_relu_max_pool2d: momentum must be in [0, 1] (got 1.5)");
  snprintf(want, sizeof want, "%s: eps must be finite", op);
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d(&y, x, NULL, NULL, rm, rv, true, 0.1, NAN), DN_EINVAL, want);
  /* nothing was updated by the refused calls */
  for (int k = 0; k < 3; k++) {
    assert_float_equal(dn_test_at(rm, k), 0, 0);
    assert_float_equal(dn_test_at(rv, k), 1, 0);
  }
  RELEASE(x, x3, h1, w1, x5, w4, r2, xi, xe, rm, rv, rg);
}

/* --- with channel dropout after the pool ---------------------------------------------------------------- */

/* A dropout setting: p and scaling, and a batch shard [first, first + N) of total samples (total 0: none). */
typedef struct drop_case {
  double p;
  dn_dropout_scaling scaling;
  int64_t shard_first, shard_total;
} drop_case;

static const drop_case DROPS[] = {
  {0.5, DN_DROPOUT_INVERTED, 0, 0},
  {0.3, DN_DROPOUT_TEST_TIME, 0, 0},
  {0.2, DN_DROPOUT_INVERTED, 3, 11},   /* samples [3, 3 + N) of 11 */
  {1.0, DN_DROPOUT_INVERTED, 0, 0},    /* everything dropped */
  {0.0, DN_DROPOUT_INVERTED, 0, 0},    /* nothing drawn */
};
#define N_DROPS (sizeof DROPS / sizeof *DROPS)

/* How many rows (n, c) the runs of the fused op kept and dropped: both were met. */
static struct {
  int64_t kept, dropped;
} rows_seen;

/* One run with the dropout: fused, or batch_norm_relu then max_pool2d then dropout_channels, from a generator
   seeded 99 (and sharded as d says); *offset: its offset after the call. */
static void run_dropout(dn_tensor *outs[N_OUTS], uint64_t *offset, const pool_case *c, const drop_case *d,
                        bool fused, values kind, unsigned grads) {
  inputs in = make_inputs(c, 900 + 10 * (uint64_t)(c - CASES) + (uint64_t)kind, kind);
  if (grads & GRAD_X) DN_OK_OR_FAIL(dn_requires_grad_(in.x, true));
  if ((grads & GRAD_W) && in.weight) DN_OK_OR_FAIL(dn_requires_grad_(in.weight, true));
  if ((grads & GRAD_B) && in.bias) DN_OK_OR_FAIL(dn_requires_grad_(in.bias, true));
  dn_rng rng;
  dn_rng_seed(&rng, 99);
  rng.offset = 5;
  if (d->shard_total) DN_OK_OR_FAIL(dn_rng_set_shard(&rng, d->shard_first, c->shape[0], d->shard_total));
  dn_tensor *y;
  if (fused) {
    DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d_dropout2d(&y, in.x, in.weight, in.bias, in.running_mean,
                                                          in.running_var, c->training, c->momentum, c->eps, d->p,
                                                          &rng, d->scaling));
    const float *v = dn_tensor_data(y);
    int64_t plane = dn_tensor_numel(y) / (c->shape[0] * c->shape[1]);
    for (int64_t r = 0; r < c->shape[0] * c->shape[1]; r++) {
      bool zeros = true;
      for (int64_t k = 0; k < plane; k++) zeros = zeros && v[r * plane + k] == 0.0f && !signbit(v[r * plane + k]);
      if (zeros) rows_seen.dropped++;
      else rows_seen.kept++;
    }
  } else {
    dn_tensor *act, *pooled;
    DN_OK_OR_FAIL(dn_batch_norm_relu(&act, in.x, in.weight, in.bias, in.running_mean, in.running_var, c->training,
                                     c->momentum, c->eps));
    DN_OK_OR_FAIL(dn_max_pool2d(&pooled, act, (const int64_t[]){2, 2}, NULL, NULL, NULL, false));
    DN_OK_OR_FAIL(dn_dropout_channels(&y, pooled, d->p, &rng, d->scaling));
    RELEASE(act, pooled);
  }
  finish_run(outs, y, &in, grads, fused ? "batch_norm_relu_max_pool2d_dropout2d" : NULL);
  *offset = rng.offset;
}

/* Every case, kind of values and dropout setting, with every gradient, x's only and none: the fused op's bits
   and generator advance are the chain's. */
static void test_dropout_bit_identical(void **state) {
  (void)state;
  static const unsigned GRADS[] = {GRAD_X | GRAD_W | GRAD_B, GRAD_X, 0};
  memset(&rows_seen, 0, sizeof rows_seen);
  for (size_t i = 0; i < N_CASES; i++)
    for (int kind = 0; kind < N_VALUES; kind++)
      for (size_t di = 0; di < N_DROPS; di++)
        for (size_t gi = 0; gi < sizeof GRADS / sizeof *GRADS; gi++) {
          const drop_case *d = &DROPS[di];
          char what[160];
          snprintf(what, sizeof what, "case %zu, values %d, p %g, scaling %d, shard %lld of %lld, grads %u", i, kind,
                   d->p, (int)d->scaling, (long long)d->shard_first, (long long)d->shard_total, GRADS[gi]);
          dn_tensor *fused[N_OUTS], *chain_outs[N_OUTS];
          uint64_t fused_offset, chain_offset;
          run_dropout(fused, &fused_offset, &CASES[i], d, true, (values)kind, GRADS[gi]);
          run_dropout(chain_outs, &chain_offset, &CASES[i], d, false, (values)kind, GRADS[gi]);
          norm_assert_same_bits(fused, chain_outs, what, "the chain's");
          if (fused_offset != chain_offset) fail_msg("%s: generator offset %llu, the chain's %llu", what,
                                                     (unsigned long long)fused_offset,
                                                     (unsigned long long)chain_offset);
          assert_true(d->p > 0 ? fused_offset > 5 : fused_offset == 5);
          norm_release_outs(fused);
          norm_release_outs(chain_outs);
        }
  assert_true(rows_seen.kept > 100 && rows_seen.dropped > 100);
}

/* 1, 2 and 3 threads on 28x28 and 27x29 planes: the chain's bits at 1 thread. */
static void test_dropout_threads(void **state) {
  (void)state;
  int saved = dn_get_num_threads();
  static const pool_case big[] = {
    {{8, 16, 28, 28}, true, true, 0.1, 1e-5},
    {{8, 16, 27, 29}, true, false, 0.1, 1e-5},
  };
  for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
    DN_OK_OR_FAIL(dn_set_num_threads(1));
    dn_tensor *want[N_OUTS];
    uint64_t want_offset, got_offset;
    run_dropout(want, &want_offset, &big[i], &DROPS[0], false, VALUES_RANDOM, GRAD_X | GRAD_W | GRAD_B);
    for (int threads = 1; threads <= 3; threads++) {
      DN_OK_OR_FAIL(dn_set_num_threads(threads));
      dn_tensor *got[N_OUTS];
      char what[64];
      snprintf(what, sizeof what, "big case %zu, %d threads", i, threads);
      run_dropout(got, &got_offset, &big[i], &DROPS[0], true, VALUES_RANDOM, GRAD_X | GRAD_W | GRAD_B);
      norm_assert_same_bits(got, want, what, "the chain's");
      assert_true(got_offset == want_offset);
      norm_release_outs(got);
    }
    norm_release_outs(want);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
}

/* The dropout's checks and the batch norm's, named after the fused op; nothing drawn or updated. */
static void test_dropout_errors(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 4, (int64_t[]){2, 3, 4, 4}), *x3 = dn_test_random(2, 3, (int64_t[]){2, 3, 4});
  dn_tensor *y = (dn_tensor *)&y, *rm, *rv;
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, (int64_t[]){3}, 1.0));
  dn_rng rng;
  dn_rng_seed(&rng, 1);
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d_dropout2d(&y, x3, NULL, NULL, rm, rv, true, 0.1, 1e-5, 0.5, &rng,
                                                          DN_DROPOUT_INVERTED),
                  DN_ESHAPE, "batch_norm_relu_max_pool2d_dropout2d: input must be [N, C, H, W] with H >= 2 and W >= 2 "
                  "for the 2x2 pool (got shape [2,3,4])");
  assert_null(y);
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d_dropout2d(&y, x, NULL, NULL, rm, rv, true, 0.1, 1e-5, 1.5, &rng,
                                                          DN_DROPOUT_INVERTED),
                  DN_EINVAL, "batch_norm_relu_max_pool2d_dropout2d: p must be in [0, 1] (got 1.5)");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d_dropout2d(&y, x, NULL, NULL, rm, rv, true, 0.1, 1e-5, NAN, &rng,
                                                          DN_DROPOUT_INVERTED),
                  DN_EINVAL, "batch_norm_relu_max_pool2d_dropout2d: p must be in [0, 1] (got nan)");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d_dropout2d(&y, x, NULL, NULL, rm, rv, true, 0.1, 1e-5, 0.5, NULL,
                                                          DN_DROPOUT_INVERTED),
                  DN_EINVAL, "batch_norm_relu_max_pool2d_dropout2d: generator is NULL");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d_dropout2d(&y, x, NULL, NULL, rm, rv, true, 0.1, 1e-5, 0.5, &rng,
                                                          (dn_dropout_scaling)7),
                  DN_EINVAL, "batch_norm_relu_max_pool2d_dropout2d: unknown scaling 7");
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d_dropout2d(&y, x, NULL, NULL, rm, rv, true, 2.0, 1e-5, 0.5, &rng,
                                                          DN_DROPOUT_INVERTED),
                  DN_EINVAL, "batch_norm_relu_max_pool2d_dropout2d: momentum must be in [0, 1] (got 2)");
  /* a shard of another batch size */
  DN_OK_OR_FAIL(dn_rng_set_shard(&rng, 0, 3, 6));
  DN_EXPECT_ERROR(dn_batch_norm_relu_max_pool2d_dropout2d(&y, x, NULL, NULL, rm, rv, true, 0.1, 1e-5, 0.5, &rng,
                                                          DN_DROPOUT_INVERTED),
                  DN_ESHAPE, "batch_norm_relu_max_pool2d_dropout2d");
  assert_true(rng.offset == 0);
  for (int k = 0; k < 3; k++) {
    assert_float_equal(dn_test_at(rm, k), 0, 0);
    assert_float_equal(dn_test_at(rv, k), 1, 0);
  }
  RELEASE(x, x3, rm, rv);
}

/* --- statistics left by a convolution ------------------------------------------------------------------ */

/* A convolution before a batch norm: 2-D dense or depthwise (the sums from a pass after the direct loops),
   or 1-D; the batch norm form (0 plain, 1 + ReLU, 2 + ReLU + pool, 3 + dropout too; 2-D only). */
typedef struct stats_case {
  int ndim;
  int64_t n, in, out, h, w, groups;
  int form;
} stats_case;

/* *z = batch norm form `form` of y in training (0 plain, 1 + ReLU, 2 + ReLU + pool, 3 + dropout too, p 0.3
   from a fixed seed). */
static void batch_norm_form(dn_tensor **z, int form, dn_tensor *y, dn_tensor *w, dn_tensor *b, dn_tensor *rm,
                            dn_tensor *rv) {
  dn_rng rng;
  dn_rng_seed(&rng, 5);
  switch (form) {
    case 0: DN_OK_OR_FAIL(dn_batch_norm(z, y, w, b, rm, rv, true, 0.1, 1e-5)); break;
    case 1: DN_OK_OR_FAIL(dn_batch_norm_relu(z, y, w, b, rm, rv, true, 0.1, 1e-5)); break;
    case 2: DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d(z, y, w, b, rm, rv, true, 0.1, 1e-5)); break;
    default:
      DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d_dropout2d(z, y, w, b, rm, rv, true, 0.1, 1e-5, 0.3, &rng,
                                                            DN_DROPOUT_INVERTED));
  }
}

/* y = the convolution (with its rows' sums when stats), scaled by 2 in place first when write; then the
   batch norm form in training with running statistics, backward of a fixed gradient to x and the weights. */
static void run_stats(dn_tensor *outs[N_OUTS], const stats_case *c, bool stats, bool write) {
  int64_t xs[4] = {c->n, c->in, c->h, c->w}, ws[4] = {c->out, c->in / c->groups, 3, 3}, ch = c->out;
  if (c->ndim == 3) xs[2] = c->w, ws[2] = 3;
  dn_tensor *x = dn_test_random(31, c->ndim, xs), *w = dn_test_random(32, c->ndim, ws), *y, *z;
  dn_tensor *bw = dn_test_random(33, 1, &ch), *bb = dn_test_random(34, 1, &ch), *rm, *rv;
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, &ch));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, &ch, 1.0));
  if (!write) {   /* an in-place write on a graph's tensor is refused: forward only then */
    DN_OK_OR_FAIL(dn_requires_grad_(x, true));
    DN_OK_OR_FAIL(dn_requires_grad_(w, true));
    DN_OK_OR_FAIL(dn_requires_grad_(bw, true));
  }
  const int64_t one[2] = {1, 1};
  if (c->ndim == 4)
    DN_OK_OR_FAIL((stats ? dn_conv2d_stats : dn_conv2d)(&y, x, w, NULL, one, one, one, c->groups));
  else
    DN_OK_OR_FAIL((stats ? dn_conv1d_stats : dn_conv1d)(&y, x, w, NULL, 1, 1, 1, c->groups));
  assert_true((y->row_stats != NULL) == stats);
  if (write) DN_OK_OR_FAIL(dn_binary_scalar_(y, DN_MUL, 2.0));
  batch_norm_form(&z, c->form, y, bw, bb, rm, rv);
  if (z->grad_fn) {
    dn_tensor *g = dn_test_random(35, z->ndim, z->shape);
    DN_OK_OR_FAIL(dn_backward(z, g, false));
    dn_tensor_release(g);
  }
  norm_collect_outs(outs, z, rm, rv, x, w, bw);
  RELEASE(x, w, y, z, bw, bb, rm, rv);
}

/* With the convolution's sums or without, the same bits; an in-place write drops the sums (the doubled
   values' statistics, not the stale ones). */
static void test_conv_stats(void **state) {
  (void)state;
  static const stats_case cases[] = {
    {4, 3, 4, 6, 7, 9, 1, 0}, {4, 3, 4, 6, 7, 9, 1, 1}, {4, 3, 4, 6, 7, 9, 1, 2}, {4, 3, 4, 6, 7, 9, 1, 3},
    {4, 5, 32, 16, 8, 8, 1, 3},   /* several images per task, even rows: the epilogue's pairs of rows */
    {4, 2, 3, 5, 6, 6, 1, 1},     /* an odd number of output channels: a row alone */
    {4, 3, 6, 6, 5, 6, 6, 2},     /* depthwise: the pass after the direct loops */
    {3, 3, 4, 6, 1, 11, 2, 0}, {3, 3, 4, 6, 1, 11, 2, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    for (int write = 0; write < 2; write++) {
      char what[64];
      snprintf(what, sizeof what, "stats case %zu, written %d", i, write);
      dn_tensor *with[N_OUTS], *without[N_OUTS];
      run_stats(with, &cases[i], true, write);
      run_stats(without, &cases[i], false, write);
      norm_assert_same_bits(with, without, what, "without the convolution's sums");
      norm_release_outs(with);
      norm_release_outs(without);
    }
}

/* Two rows' sums at once (dn_row_sums_pair, and dn_row_sums_range that takes rows by pairs) against
   dn_row_sums of each row, bit for bit: lengths around the lanes' width (the tails) and the CNN's rows. */
static void test_row_sums_pair(void **state) {
  (void)state;
  static const int64_t lens[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 196, 787};
  enum { ROWS = 5 };
  float x[ROWS * 787];
  uint32_t r = 12345;
  for (size_t i = 0; i < sizeof x / sizeof *x; i++) {
    r = r * 1664525u + 1013904223u;
    x[i] = (float)((int32_t)(r >> 8) % 2000001 - 1000000) * (i % 13 == 0 ? 1e-2f : 1e-6f);
  }
  for (size_t c = 0; c < sizeof lens / sizeof *lens; c++) {
    int64_t len = lens[c];
    double one[ROWS][ROW_STATS_SUMS], pair[2][ROW_STATS_SUMS], range[ROWS][ROW_STATS_SUMS];
    for (int row = 0; row < ROWS; row++) dn_row_sums(x + row * len, len, one[row]);
    dn_row_sums_pair(x + len, x + 3 * len, len, pair[0], pair[1]);   /* rows 1 and 3: any two rows */
    assert_memory_equal(pair[0], one[1], sizeof pair[0]);
    assert_memory_equal(pair[1], one[3], sizeof pair[1]);
    dn_row_sums_job job = {x, len, &range[0][0]};
    dn_row_sums_range(&job, 0, ROWS);   /* two pairs and a row alone */
    assert_memory_equal(range, one, sizeof range);
    dn_row_sums_range(&job, 1, 3);      /* a pair from an odd row */
    assert_memory_equal(range[1], one[1], 2 * sizeof range[1]);
  }
}

/* --- the block's dx, deferred to the convolution before it ------------------------------------------- */

/* What else sees the convolution's output y: nothing, a hook that copies the gradient it sees (on y; or a
   group hook on two aliases of y, the first into the batch norm and the second the second use below: the
   hook runs at the second's node, with the first's gradient still waiting in its node), or a second use (y
   itself, or after the pool a 2x2 max pool of y, added to the batch norm's output), whose gradient is summed
   with the batch norm's dx. */
typedef enum { ALONE, HOOKED, GROUP_HOOKED, TWO_USES } y_use;

static dn_status copy_hook(void *userdata, int n, dn_tensor *const *grads, dn_tensor **replacements) {
  (void)n;
  (void)replacements;
  return dn_clone((dn_tensor **)userdata, grads[0]);   /* the values as the hook sees them, copied now */
}

/* The convolution (+ ReLU when relu, with bias, c's groups) then c's batch norm form in training, backward
   of a fixed gradient. The batch norm's dx reaches the convolution as the batch norm leaves it
   (deferred: written image by image by the convolution's backward), or through y * 1 when times_one (an op
   that reads it whole: the reference). outs: the batch norm's output, the running statistics, the convolution's
   dx, dw and db; *hook_saw: the gradient a hook on y saw (HOOKED). */
static void run_deferred(dn_tensor *outs[N_OUTS], dn_tensor **hook_saw, const stats_case *c, bool relu, bool times_one,
                         y_use use) {
  int64_t xs[4] = {c->n, c->in, c->h, c->w}, ws[4] = {c->out, c->in / c->groups, 3, 3}, ch = c->out;
  dn_tensor *x = dn_test_random(41, 4, xs), *w = dn_test_random(42, 4, ws), *b = dn_test_random(43, 1, &ch);
  dn_tensor *rm, *rv, *y, *in, *z, *pooled = NULL, *sum = NULL;
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, &ch));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, &ch, 1.0));
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  const int64_t one[2] = {1, 1}, two[2] = {2, 2};
  DN_OK_OR_FAIL((relu ? dn_conv2d_relu : dn_conv2d_stats)(&y, x, w, b, one, one, one, c->groups));
  if (use == HOOKED) DN_OK_OR_FAIL(dn_register_hook(NULL, y, copy_hook, hook_saw, NULL));
  dn_tensor *from = dn_tensor_retain(y), *aliases[2] = {NULL, NULL};
  if (use == GROUP_HOOKED) {
    DN_OK_OR_FAIL(dn_hook_aliases(aliases, NULL, 2, (dn_tensor *[]){y, y}, copy_hook, hook_saw, NULL));
    dn_tensor_release(from);
    from = dn_tensor_retain(aliases[0]);
  }
  if (times_one) DN_OK_OR_FAIL(dn_binary_scalar(&in, DN_MUL, from, 1.0, false));
  else in = dn_tensor_retain(from);
  batch_norm_form(&z, c->form, in, NULL, NULL, rm, rv);
  dn_tensor *root = z;
  if (use == TWO_USES || use == GROUP_HOOKED) {
    dn_tensor *second = use == GROUP_HOOKED ? aliases[1] : y;
    if (c->form >= 2) DN_OK_OR_FAIL(dn_max_pool2d(&pooled, second, two, two, NULL, NULL, false));
    DN_OK_OR_FAIL(dn_binary(&sum, DN_ADD, z, pooled ? pooled : second));
    root = sum;
  }
  dn_tensor *g = dn_test_random(44, root->ndim, root->shape);
  DN_OK_OR_FAIL(dn_backward(root, g, false));
  assert_true(!y->grad_fn || !y->grad_fn->grad);   /* nothing deferred is left behind */
  norm_collect_outs(outs, z, rm, rv, x, w, b);
  RELEASE(x, w, b, rm, rv, y, in, z, pooled, sum, g, from, aliases[0], aliases[1]);
}

/* The convolution's gradients have the same bits whether the batch norm's dx reaches it deferred or
   written, alone, summed with another use's gradient, or seen by a hook (which sees the same values). */
static void test_deferred_dx(void **state) {
  (void)state;
  static const stats_case cases[] = {
    {4, 3, 4, 6, 8, 8, 1, 3},
    {4, 5, 32, 16, 8, 8, 1, 2},   /* 32 input channels: dw by shifts; several images per part */
    {4, 2, 3, 5, 7, 9, 1, 3},     /* odd H and W: a row and a column in no window */
    {4, 3, 6, 6, 6, 6, 6, 2},     /* depthwise: the gradient written whole first */
    {4, 1, 1, 4, 6, 6, 1, 3},     /* batch 1, one input channel */
    {4, 3, 4, 6, 7, 9, 1, 0},     /* the batch norm alone */
    {4, 3, 32, 6, 5, 6, 1, 1},    /* + ReLU, dw by shifts */
    {4, 3, 6, 6, 6, 6, 6, 1},     /* + ReLU after a depthwise convolution */
  };
  for (int threads = 1; threads <= 2; threads++) {
    DN_OK_OR_FAIL(dn_set_num_threads(threads));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
      for (int relu = 0; relu < 2; relu++)
        for (y_use use = ALONE; use <= TWO_USES; use++) {
          char what[96];
          snprintf(what, sizeof what, "deferred case %zu, relu %d, use %d, %d threads", i, relu, (int)use, threads);
          dn_tensor *got[N_OUTS], *want[N_OUTS], *saw = NULL, *saw_want = NULL;
          run_deferred(got, &saw, &cases[i], relu, false, use);
          run_deferred(want, &saw_want, &cases[i], relu, true, use);
          norm_assert_same_bits(got, want, what, "through y * 1");
          if (use == HOOKED || use == GROUP_HOOKED) {
            assert_non_null(saw);
            assert_non_null(saw_want);
            assert_int_equal(dn_tensor_numel(saw), dn_tensor_numel(saw_want));
            assert_memory_equal(dn_tensor_data(saw), dn_tensor_data(saw_want),
                                (size_t)dn_tensor_numel(saw) * sizeof(float));
          }
          RELEASE(saw, saw_want);
          norm_release_outs(got);
          norm_release_outs(want);
        }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_bit_identical, dn_test_reset_modes),
    cmocka_unit_test_setup(test_denormals_kept, dn_test_reset_modes),
    cmocka_unit_test_setup(test_threads, dn_test_reset_modes),
    cmocka_unit_test_setup(test_node, dn_test_reset_modes),
    cmocka_unit_test_setup(test_empty_batch, dn_test_reset_modes),
    cmocka_unit_test_setup(test_errors, dn_test_reset_modes),
    cmocka_unit_test_setup(test_dropout_bit_identical, dn_test_reset_modes),
    cmocka_unit_test_setup(test_dropout_threads, dn_test_reset_modes),
    cmocka_unit_test_setup(test_dropout_errors, dn_test_reset_modes),
    cmocka_unit_test_setup(test_conv_stats, dn_test_reset_modes),
    cmocka_unit_test_setup(test_row_sums_pair, dn_test_reset_modes),
    cmocka_unit_test_setup(test_deferred_dx, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
