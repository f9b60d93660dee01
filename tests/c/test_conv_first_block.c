/* The first block of a small CNN in one op (dn_conv2d_batch_norm_relu_max_pool2d_dropout2d) against the
   chain it replaces, dn_conv2d then dn_batch_norm_relu_max_pool2d_dropout2d, up to rounding (the fused
   op's statistics come from the patches' moments and its sums run in another order): the output, the
   running statistics, the generator's offset and the gradients of the convolution's weight and bias and
   of batch norm's weight and bias. Gray and RGB images, 3x3, 5x5 and 2x3 kernels, padding or none, odd
   output sizes (a last row and column in no window), batch 1, either bias or none, training and eval,
   running statistics or none, p = 0 (no generator) and p > 0 with either scaling and a batch shard, each
   set of gradients; 1-3 threads (the same bits); the node and the weights' values it keeps; an empty
   batch; every bad argument refused with a message naming the op. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char OP[] = "conv2d_batch_norm_relu_max_pool2d_dropout2d";
static const int64_t ONE[2] = {1, 1};

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) \
  release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

/* One configuration: images [n, cin, h, w], conv_weight [c, cin, kh, kw], padding pad; which optional
   tensors are given; batch norm's mode and constants; the dropout's p, scaling and batch shard
   (samples [shard_first, shard_first + n) of shard_total; total 0: none). */
typedef struct block_case {
  int64_t n, cin, h, w, c, kh, kw, pad[2];
  bool conv_bias, affine, training, running;
  double momentum, eps, p;
  dn_dropout_scaling scaling;
  int64_t shard_first, shard_total;
} block_case;

#define INV DN_DROPOUT_INVERTED
#define TT DN_DROPOUT_TEST_TIME
static const block_case CASES[] = {
  /* n cin  h   w  c kh kw  pad    cbias  affine train  running mom  eps   p   scaling shard */
  {4, 1, 28, 28, 8, 3, 3, {1, 1}, true, true, true, true, 0.1, 1e-5, 0.0, INV, 0, 0},    /* MNIST's block */
  {4, 1, 28, 28, 8, 3, 3, {1, 1}, true, true, true, true, 0.1, 1e-5, 0.3, INV, 0, 0},
  {4, 1, 28, 28, 8, 3, 3, {1, 1}, true, true, false, true, 0.1, 1e-5, 0.3, INV, 0, 0},
  {3, 1, 9, 11, 6, 3, 3, {1, 1}, false, true, true, true, 0.1, 1e-5, 0.3, INV, 0, 0},   /* odd OH, OW */
  {3, 1, 9, 11, 6, 3, 3, {1, 1}, true, false, false, true, 0.1, 1e-5, 0.0, INV, 0, 0},
  {3, 1, 9, 11, 6, 3, 3, {1, 1}, true, false, true, false, 0.1, 1e-5, 0.3, TT, 0, 0},
  {2, 3, 10, 10, 5, 3, 3, {0, 0}, true, true, true, false, 0.3, 1e-3, 0.2, INV, 0, 0},  /* RGB, no padding */
  {2, 3, 10, 10, 5, 3, 3, {0, 0}, false, false, true, true, 0.1, 1e-5, 0.0, INV, 0, 0},
  {2, 3, 10, 10, 5, 3, 3, {0, 0}, true, true, false, true, 0.1, 1e-5, 0.3, INV, 0, 0},
  {2, 1, 12, 12, 4, 5, 5, {2, 2}, true, true, true, true, 0.1, 1e-5, 0.3, TT, 0, 0},    /* 5x5 */
  {2, 1, 12, 12, 4, 5, 5, {2, 2}, false, true, false, true, 0.1, 1e-5, 0.5, INV, 0, 0},
  {1, 2, 6, 7, 3, 2, 3, {1, 0}, true, true, true, true, 1.0, 1e-2, 0.3, INV, 0, 0},     /* 2x3, batch 1 */
  {1, 2, 6, 7, 3, 2, 3, {1, 0}, false, false, true, false, 0.1, 1e-5, 0.0, INV, 0, 0},
  {1, 2, 6, 7, 3, 2, 3, {1, 0}, true, true, false, true, 0.1, 1e-5, 0.3, INV, 0, 0},
  {1, 1, 28, 28, 8, 3, 3, {1, 1}, true, true, true, true, 0.1, 1e-5, 0.3, INV, 0, 0},   /* batch 1 */
  {2, 1, 5, 4, 1, 3, 3, {1, 1}, true, true, true, true, 0.0, 1e-5, 0.3, INV, 0, 0},     /* one channel */
  {3, 3, 7, 7, 16, 3, 3, {1, 1}, true, true, true, true, 0.1, 1e-5, 0.4, INV, 2, 9},    /* a batch shard */
};
#define N_CASES (sizeof CASES / sizeof *CASES)

/* Which parameters require grad: the convolution's weight and bias, batch norm's weight and bias. */
enum { G_CONV = 1, G_BN = 2, G_ALL = 3 };

/* What a run leaves: the output, the running statistics, the gradients of the four parameters. */
enum { O_Y, O_RM, O_RV, O_DCW, O_DCB, O_DW, O_DB, N_OUTS };
static const char *const OUT_NAMES[N_OUTS] = {"y", "running_mean", "running_var", "conv_weight's grad",
                                              "conv_bias's grad", "weight's grad", "bias's grad"};

typedef struct inputs {
  dn_tensor *x, *cw, *cb, *bw, *bb, *rm, *rv, *g;
} inputs;

static void out_shape(const block_case *c, int64_t out[4]) {
  out[0] = c->n, out[1] = c->c;
  out[2] = (c->h + 2 * c->pad[0] - c->kh + 1) / 2, out[3] = (c->w + 2 * c->pad[1] - c->kw + 1) / 2;
}

/* The same tensors for every call with the same case and seed (each run gets its own copies). */
static inputs make_inputs(const block_case *c, uint64_t seed) {
  int64_t xs[4] = {c->n, c->cin, c->h, c->w}, ws[4] = {c->c, c->cin, c->kh, c->kw}, ch = c->c, os[4];
  out_shape(c, os);
  inputs in = {dn_test_random(seed, 4, xs), dn_test_random(seed + 1, 4, ws), NULL, NULL, NULL, NULL, NULL,
               dn_test_random(seed + 7, 4, os)};
  /* pixels in [0, 1]: the patches' mean is far from 0, so the mean terms of the statistics and of dweight
     weigh (a missing one fails); an upstream gradient of mean 0.5 so batch norm's dx corrections weigh */
  float *x = dn_tensor_data(in.x), *g = dn_tensor_data(in.g);
  for (int64_t k = 0; k < dn_tensor_numel(in.x); k++) x[k] = (x[k] + 2.0f) / 4.0f;
  for (int64_t k = 0; k < dn_tensor_numel(in.g); k++) g[k] += 0.5f;
  if (c->conv_bias) in.cb = dn_test_random(seed + 2, 1, &ch);
  if (c->affine) {
    in.bw = dn_test_random(seed + 3, 1, &ch);
    in.bb = dn_test_random(seed + 4, 1, &ch);
  }
  if (c->running || !c->training) {
    in.rm = dn_test_random(seed + 5, 1, &ch);
    in.rv = dn_test_random(seed + 6, 1, &ch);
    float *rv = dn_tensor_data(in.rv);
    for (int64_t k = 0; k < ch; k++) rv[k] = fabsf(rv[k]) + 0.25f;
  }
  return in;
}

static void release_inputs(inputs *in) { RELEASE(in->x, in->cw, in->cb, in->bw, in->bb, in->rm, in->rv, in->g); }

static void copy_or_null(dn_tensor **out, dn_tensor *t) {
  *out = NULL;
  if (t) DN_OK_OR_FAIL(dn_contiguous(out, t));
}

/* One run of the fused op (fused) or of the chain on the case's inputs (seed), with the gradients asked for
   (backward of the inputs' g when anything requires grad), from a generator seeded 77 at offset 3;
   null_rng: the fused op gets no generator (p = 0 only). outs: contiguous copies (NULL: not given);
   *offset: the generator's offset after the call. */
static void run(dn_tensor *outs[N_OUTS], uint64_t *offset, const block_case *c, uint64_t seed, bool fused,
                unsigned grads, bool null_rng) {
  inputs in = make_inputs(c, seed);
  if (grads & G_CONV) {
    DN_OK_OR_FAIL(dn_requires_grad_(in.cw, true));
    if (in.cb) DN_OK_OR_FAIL(dn_requires_grad_(in.cb, true));
  }
  if ((grads & G_BN) && in.bw) {
    DN_OK_OR_FAIL(dn_requires_grad_(in.bw, true));
    DN_OK_OR_FAIL(dn_requires_grad_(in.bb, true));
  }
  dn_rng rng;
  dn_rng_seed(&rng, 77);
  rng.offset = 3;
  if (c->shard_total) DN_OK_OR_FAIL(dn_rng_set_shard(&rng, c->shard_first, c->n, c->shard_total));
  dn_tensor *y;
  if (fused) {
    DN_OK_OR_FAIL(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, in.x, in.cw, in.cb, c->pad, in.bw, in.bb,
                                                                 in.rm, in.rv, c->training, c->momentum, c->eps,
                                                                 c->p, null_rng ? NULL : &rng, c->scaling));
  } else {
    dn_tensor *conv;
    DN_OK_OR_FAIL(dn_conv2d(&conv, in.x, in.cw, in.cb, ONE, c->pad, ONE, 1));
    DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d_dropout2d(&y, conv, in.bw, in.bb, in.rm, in.rv, c->training,
                                                          c->momentum, c->eps, c->p, &rng, c->scaling));
    dn_tensor_release(conv);
  }
  int64_t os[4];
  out_shape(c, os);
  assert_int_equal(y->ndim, 4);
  for (int d = 0; d < 4; d++) assert_int_equal(y->shape[d], os[d]);
  if ((grads & G_CONV) || ((grads & G_BN) && in.bw)) {
    assert_non_null(y->grad_fn);
    if (fused) assert_string_equal(dn_grad_fn_name(y), OP);
    DN_OK_OR_FAIL(dn_backward(y, in.g, false));
  } else {
    assert_null(y->grad_fn);   /* nothing requires grad: no node */
  }
  dn_tensor *got[N_OUTS] = {y, in.rm, in.rv, in.cw->grad, in.cb ? in.cb->grad : NULL, in.bw ? in.bw->grad : NULL,
                            in.bb ? in.bb->grad : NULL};
  for (int k = 0; k < N_OUTS; k++) copy_or_null(&outs[k], got[k]);
  *offset = rng.offset;
  dn_tensor_release(y);
  release_inputs(&in);
}

static void release_outs(dn_tensor *outs[N_OUTS]) {
  for (int k = 0; k < N_OUTS; k++) dn_tensor_release(outs[k]);
}

static double max_abs(const dn_tensor *t) {
  double m = 0;
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) m = fmax(m, fabs(dn_test_at(t, i)));
  return m;
}

/* Rounding only: max |got - want| <= RTOL (max |want| + base) per tensor. The chain's float32 sums are off
   by about 1e-6 of that; a wrong variance (biased for unbiased: 1/70 on case [1,2,6,7]), a missing dropout
   scale (x 1.4) or a missing mean term (pixels of mean 0.5) are off by far more. */
#define RTOL 1e-4
static void assert_close(dn_tensor *const got[N_OUTS], dn_tensor *const want[N_OUTS], const block_case *c,
                         const char *what) {
  for (int k = 0; k < N_OUTS; k++) {
    if (!got[k] || !want[k]) {
      if (got[k] || want[k]) fail_msg("%s: %s given by one run only", what, OUT_NAMES[k]);
      continue;
    }
    assert_int_equal(dn_tensor_numel(got[k]), dn_tensor_numel(want[k]));
    double base = 1e-3;
    /* in training the convolution's bias cancels in batch norm: its gradient is 0 but for rounding, which is
       at the scale of dweight's terms */
    if (k == O_DCB && c->training && want[O_DCW]) base = max_abs(want[O_DCW]);
    double diff = 0, ref = max_abs(want[k]);
    int64_t at = -1;
    for (int64_t i = 0; i < dn_tensor_numel(got[k]); i++) {
      double d = fabs(dn_test_at(got[k], i) - dn_test_at(want[k], i));
      if (!(d <= diff)) diff = d, at = i;   /* NaN counts as the largest */
      if (isnan(d)) break;
    }
    double tol = RTOL * (ref + base);
    if (!(diff <= tol))
      fail_msg("%s: %s differs from the chain's by %.3g at %lld (%.9g vs %.9g; tolerance %.3g)", what,
               OUT_NAMES[k], diff, (long long)at, dn_test_at(got[k], at), dn_test_at(want[k], at), tol);
  }
}

/* Every case with every set of gradients (none: forward only): the fused op equals the chain up to
   rounding, and draws as it does. */
static void test_matches_chain(void **state) {
  (void)state;
  static const unsigned GRADS[] = {G_ALL, G_CONV, G_BN, 0};
  for (size_t i = 0; i < N_CASES; i++) {
    const block_case *c = &CASES[i];
    for (size_t gi = 0; gi < sizeof GRADS / sizeof *GRADS; gi++) {
      if (GRADS[gi] == G_BN && !c->affine) continue;   /* nothing to differentiate: the same as none */
      /* p = 0 with no generator at all once; with one (that must not move) otherwise */
      bool null_rng = c->p == 0 && GRADS[gi] == G_ALL;
      char what[160];
      snprintf(what, sizeof what, "case %zu [%lld,%lld,%lld,%lld] kernel %lldx%lld, grads %u", i, (long long)c->n,
               (long long)c->cin, (long long)c->h, (long long)c->w, (long long)c->kh, (long long)c->kw, GRADS[gi]);
      dn_tensor *fused[N_OUTS], *chain[N_OUTS];
      uint64_t fused_offset, chain_offset;
      run(fused, &fused_offset, c, 100 + 10 * i, true, GRADS[gi], null_rng);
      run(chain, &chain_offset, c, 100 + 10 * i, false, GRADS[gi], false);
      assert_close(fused, chain, c, what);
      if (fused_offset != chain_offset)
        fail_msg("%s: generator offset %llu, the chain's %llu", what, (unsigned long long)fused_offset,
                 (unsigned long long)chain_offset);
      assert_true(c->p > 0 ? chain_offset > 3 : chain_offset == 3);
      release_outs(fused);
      release_outs(chain);
    }
  }
}

/* 1, 2 and 3 threads: the same bits and the same generator offset. */
static void test_threads(void **state) {
  (void)state;
  int saved = dn_get_num_threads();
  static const block_case big[] = {
    {8, 1, 28, 28, 16, 3, 3, {1, 1}, true, true, true, true, 0.1, 1e-5, 0.3, INV, 0, 0},
    {6, 3, 13, 15, 6, 3, 3, {1, 1}, true, true, false, true, 0.1, 1e-5, 0.3, INV, 0, 0},
    {5, 1, 12, 13, 4, 5, 5, {2, 2}, false, false, true, false, 0.1, 1e-5, 0.0, INV, 0, 0},
  };
  for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
    dn_tensor *want[N_OUTS];
    uint64_t want_offset;
    DN_OK_OR_FAIL(dn_set_num_threads(1));
    run(want, &want_offset, &big[i], 500 + 10 * i, true, G_ALL, false);
    for (int threads = 2; threads <= 3; threads++) {
      DN_OK_OR_FAIL(dn_set_num_threads(threads));
      dn_tensor *got[N_OUTS];
      uint64_t got_offset;
      run(got, &got_offset, &big[i], 500 + 10 * i, true, G_ALL, false);
      for (int k = 0; k < N_OUTS; k++) {
        if (!got[k] || !want[k]) {
          if (got[k] || want[k]) fail_msg("big case %zu, %d threads: %s given by one run only", i, threads,
                                          OUT_NAMES[k]);
          continue;
        }
        assert_int_equal(dn_tensor_numel(got[k]), dn_tensor_numel(want[k]));
        if (memcmp(dn_tensor_data(got[k]), dn_tensor_data(want[k]), (size_t)dn_tensor_numel(got[k]) * 4))
          fail_msg("big case %zu, %d threads: %s differs from 1 thread's", i, threads, OUT_NAMES[k]);
      }
      assert_true(got_offset == want_offset);
      release_outs(got);
    }
    release_outs(want);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
}

/* The node's name; the weights' values it keeps: changing conv_weight and weight in place between forward
   and backward changes no gradient. */
static void test_node(void **state) {
  (void)state;
  const block_case *c = &CASES[1];
  dn_tensor *grads[2][4];
  for (int change = 0; change < 2; change++) {
    inputs in = make_inputs(c, 300);
    dn_tensor *params[4] = {in.cw, in.cb, in.bw, in.bb}, *y;
    for (int k = 0; k < 4; k++) DN_OK_OR_FAIL(dn_requires_grad_(params[k], true));
    dn_rng rng;
    dn_rng_seed(&rng, 5);
    DN_OK_OR_FAIL(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, in.x, in.cw, in.cb, c->pad, in.bw, in.bb,
                                                                 in.rm, in.rv, true, 0.1, 1e-5, 0.3, &rng,
                                                                 DN_DROPOUT_INVERTED));
    assert_string_equal(dn_grad_fn_name(y), OP);
    if (change) {   /* as an optimizer step would, outside the graph */
      dn_set_grad_enabled(false);
      DN_OK_OR_FAIL(dn_binary_scalar_(in.cw, DN_MUL, -3.0));
      DN_OK_OR_FAIL(dn_binary_scalar_(in.bw, DN_MUL, 2.0));
      dn_set_grad_enabled(true);
    }
    DN_OK_OR_FAIL(dn_backward(y, in.g, false));
    for (int k = 0; k < 4; k++) copy_or_null(&grads[change][k], params[k]->grad);
    dn_tensor_release(y);
    release_inputs(&in);
  }
  for (int k = 0; k < 4; k++) {
    assert_non_null(grads[0][k]);
    assert_non_null(grads[1][k]);
    assert_memory_equal(dn_tensor_data(grads[0][k]), dn_tensor_data(grads[1][k]),
                        (size_t)dn_tensor_numel(grads[0][k]) * 4);
    RELEASE(grads[0][k], grads[1][k]);
  }
}

/* An empty batch: [0, C, OH / 2, OW / 2], nothing learned or drawn, zero parameter gradients. */
static void test_empty_batch(void **state) {
  (void)state;
  dn_tensor *x, *ge, *cw = dn_test_random(1, 4, (int64_t[]){4, 1, 3, 3}), *cb = dn_test_random(2, 1, (int64_t[]){4});
  dn_tensor *bw = dn_test_random(3, 1, (int64_t[]){4}), *bb = dn_test_random(4, 1, (int64_t[]){4}), *rm, *rv, *y;
  DN_OK_OR_FAIL(dn_tensor_zeros(&x, DN_F32, 4, (int64_t[]){0, 1, 7, 6}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&ge, DN_F32, 4, (int64_t[]){0, 4, 3, 3}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, (int64_t[]){4}));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, (int64_t[]){4}, 1.0));
  dn_tensor *params[4] = {cw, cb, bw, bb};
  for (int k = 0; k < 4; k++) DN_OK_OR_FAIL(dn_requires_grad_(params[k], true));
  dn_rng rng;
  dn_rng_seed(&rng, 5);
  rng.offset = 3;
  DN_OK_OR_FAIL(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, cb, ONE, bw, bb, rm, rv, true, 0.1, 1e-5,
                                                               0.3, &rng, DN_DROPOUT_INVERTED));
  assert_int_equal(y->ndim, 4);
  const int64_t want[4] = {0, 4, 3, 3};   /* 7x6 with padding 1: 7x6 outputs, pooled 3x3 */
  for (int d = 0; d < 4; d++) assert_int_equal(y->shape[d], want[d]);
  for (int k = 0; k < 4; k++) {
    assert_float_equal(dn_test_at(rm, k), 0, 0);
    assert_float_equal(dn_test_at(rv, k), 1, 0);
  }
  assert_true(rng.offset == 3);
  if (y->grad_fn) DN_OK_OR_FAIL(dn_backward(y, ge, false));
  for (int k = 0; k < 4; k++)
    if (params[k]->grad)
      for (int64_t i = 0; i < dn_tensor_numel(params[k]->grad); i++)
        assert_float_equal(dn_test_at(params[k]->grad, i), 0, 0);
  RELEASE(x, ge, cw, cb, bw, bb, rm, rv, y);
}

/* A refused call: not OK, *out NULL, the message names the op (its wording is the implementation's). */
static void expect_refused(dn_status st, const dn_tensor *y, const char *text) {
  if (st == DN_OK) fail_msg("%s succeeded; expected an error", text);
  if (!strstr(dn_last_error(), OP)) fail_msg("%s: message '%s' does not name %s", text, dn_last_error(), OP);
  if (y) fail_msg("%s: *out not NULL after an error", text);
}
#define EXPECT_REFUSED(call)              \
  do {                                    \
    y = (dn_tensor *)&y;                  \
    dn_status st_ = (call);               \
    expect_refused(st_, y, #call);        \
  } while (0)

/* Every bad argument, each alone on otherwise good ones; nothing updated or drawn. */
static void test_errors(void **state) {
  (void)state;
  const int64_t pad1[2] = {1, 1}, pad0[2] = {0, 0}, neg_rows[2] = {-1, 1}, neg_cols[2] = {1, -1};
  const int64_t pad_huge[2] = {2048, 2048}, pad_max[2] = {INT64_MAX / 2, 1};
  dn_tensor *x = dn_test_random(1, 4, (int64_t[]){2, 1, 6, 6}), *xg = dn_test_random(1, 4, (int64_t[]){2, 1, 6, 6});
  dn_tensor *x3 = dn_test_random(2, 3, (int64_t[]){2, 1, 6}), *x2c = dn_test_random(3, 4, (int64_t[]){2, 2, 6, 6});
  dn_tensor *x4c = dn_test_random(4, 4, (int64_t[]){2, 4, 6, 6});
  dn_tensor *thin = dn_test_random(6, 4, (int64_t[]){2, 1, 3, 8});
  dn_tensor *small = dn_test_random(5, 4, (int64_t[]){2, 1, 3, 3});
  dn_tensor *cw = dn_test_random(7, 4, (int64_t[]){4, 1, 3, 3}), *cw3 = dn_test_random(8, 3, (int64_t[]){4, 1, 3});
  dn_tensor *cw4c = dn_test_random(9, 4, (int64_t[]){4, 4, 3, 3}), *v3 = dn_test_random(10, 1, (int64_t[]){3});
  dn_tensor *v5 = dn_test_random(11, 1, (int64_t[]){5}), *xi, *rm, *rv, *y;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 4, (int64_t[]){2, 1, 6, 6}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&rm, DN_F32, 1, (int64_t[]){4}));
  DN_OK_OR_FAIL(dn_tensor_full(&rv, DN_F32, 1, (int64_t[]){4}, 1.0));
  DN_OK_OR_FAIL(dn_requires_grad_(xg, true));
  dn_rng rng;
  dn_rng_seed(&rng, 1);
  rng.offset = 3;
  dn_dropout_scaling inv = DN_DROPOUT_INVERTED;
  /* the images */
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, xg, cw, NULL, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x3, cw, NULL, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, xi, cw, NULL, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  /* the convolution: its weight's dims and channels, the patch size, the padding, the output size, the bias */
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw3, NULL, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x2c, cw, NULL, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x4c, cw4c, NULL, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));   /* 4 * 3 * 3 > 27 */
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, neg_rows, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, neg_cols, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, small, cw, NULL, pad0, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));   /* 1x1 outputs */
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, thin, cw, NULL, pad0, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));   /* 1x6 outputs */
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad_huge, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));   /* a frame past 2^24 */
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad_max, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));   /* no overflow */
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, v3, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  /* batch norm: weight, bias, running statistics of the wrong length; eval without them */
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad1, v5, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad1, NULL, v3, rm, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad1, NULL, NULL, v5, rv, true,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad1, NULL, NULL, NULL, NULL, false,
                                                                0.1, 1e-5, 0.3, &rng, inv));
  /* the dropout: p out of [0, 1] or NaN, p > 0 without a generator */
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 1.5, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, -0.1, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, NAN, &rng, inv));
  EXPECT_REFUSED(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad1, NULL, NULL, rm, rv, true,
                                                                0.1, 1e-5, 0.3, NULL, inv));
  /* the refused calls updated nothing and drew nothing */
  for (int k = 0; k < 4; k++) {
    assert_float_equal(dn_test_at(rm, k), 0, 0);
    assert_float_equal(dn_test_at(rv, k), 1, 0);
  }
  assert_true(rng.offset == 3);
  /* the same arguments, all good, pass (the refusals above were for their one bad argument) */
  DN_OK_OR_FAIL(dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&y, x, cw, NULL, pad1, NULL, NULL, rm, rv, true,
                                                               0.1, 1e-5, 0.3, &rng, inv));
  dn_tensor_release(y);
  RELEASE(x, xg, x3, x2c, x4c, small, thin, cw, cw3, cw4c, v3, v5, xi, rm, rv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_matches_chain, dn_test_reset_modes),
    cmocka_unit_test_setup(test_threads, dn_test_reset_modes),
    cmocka_unit_test_setup(test_node, dn_test_reset_modes),
    cmocka_unit_test_setup(test_empty_batch, dn_test_reset_modes),
    cmocka_unit_test_setup(test_errors, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
