/* dn_conv2d, dn_conv1d: forward against a direct convolution loop, backward by finite
   differences, the same bits for 1-4 threads, every bad argument's message. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv_geom.h"

#define TOL 1e-4

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) \
  release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

/* One 2-D case: sizes and options. */
typedef struct conv_case {
  int64_t n, in, out, h, w, kh, kw;
  int64_t stride[2], pad[2], dil[2], groups;
} conv_case;

static int64_t out_size(int64_t size, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (size + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

/* --- reference: the direct loop over (n, o, oh, ow, c, ki, kj), in double ------------------ */

static dn_tensor *conv2d_ref(const dn_tensor *x, const dn_tensor *w, const dn_tensor *b, const conv_case *c) {
  int64_t oh_n = out_size(c->h, c->kh, c->stride[0], c->pad[0], c->dil[0]);
  int64_t ow_n = out_size(c->w, c->kw, c->stride[1], c->pad[1], c->dil[1]);
  int64_t cg = c->in / c->groups, og = c->out / c->groups;
  double *v = calloc((size_t)(c->n * c->out * oh_n * ow_n + 1), sizeof *v);
  for (int64_t n = 0; n < c->n; n++)
    for (int64_t o = 0; o < c->out; o++)
      for (int64_t oh = 0; oh < oh_n; oh++)
        for (int64_t ow = 0; ow < ow_n; ow++) {
          double s = b ? dn_test_at(b, o) : 0;
          int64_t grp = o / og;
          for (int64_t ci = 0; ci < cg; ci++)
            for (int64_t ki = 0; ki < c->kh; ki++)
              for (int64_t kj = 0; kj < c->kw; kj++) {
                int64_t ih = oh * c->stride[0] - c->pad[0] + ki * c->dil[0];
                int64_t iw = ow * c->stride[1] - c->pad[1] + kj * c->dil[1];
                if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) continue;
                int64_t ch = grp * cg + ci;
                s += dn_test_at(x, ((n * c->in + ch) * c->h + ih) * c->w + iw) *
                     dn_test_at(w, ((o * cg + ci) * c->kh + ki) * c->kw + kj);
              }
          v[((n * c->out + o) * oh_n + oh) * ow_n + ow] = s;
        }
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&t, DN_F32, 4, (int64_t[]){c->n, c->out, oh_n, ow_n}, v));
  free(v);
  return t;
}

static void make_inputs(const conv_case *c, uint64_t seed, dn_tensor **x, dn_tensor **w, dn_tensor **b) {
  *x = dn_test_random(seed, 4, (int64_t[]){c->n, c->in, c->h, c->w});
  *w = dn_test_random(seed + 1, 4, (int64_t[]){c->out, c->in / c->groups, c->kh, c->kw});
  *b = dn_test_random(seed + 2, 1, (int64_t[]){c->out});
}

static void check_forward(dn_tensor *x, dn_tensor *w, dn_tensor *b, const conv_case *c) {
  dn_tensor *got, *want = conv2d_ref(x, w, b, c);
  DN_OK_OR_FAIL(dn_conv2d(&got, x, w, b, c->stride, c->pad, c->dil, c->groups));
  assert_int_equal(got->ndim, 4);
  for (int d = 0; d < 4; d++) assert_int_equal(got->shape[d], want->shape[d]);
  dn_test_assert_close(got, want, TOL);
  RELEASE(got, want);
}

/* {n, in, out, h, w, kh, kw, stride, pad, dil, groups} */
static const conv_case CASES[] = {
  {1, 1, 1, 1, 1, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1},     /* 1x1 everything */
  {2, 3, 4, 5, 5, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1},
  {2, 3, 4, 5, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},
  {3, 2, 5, 7, 6, 3, 2, {2, 3}, {1, 0}, {1, 1}, 1},     /* stride > 1, rectangular */
  {2, 3, 2, 9, 8, 3, 3, {1, 2}, {2, 1}, {2, 3}, 1},     /* dilation */
  {2, 4, 6, 6, 7, 3, 3, {1, 1}, {1, 1}, {1, 1}, 2},     /* groups */
  {2, 6, 6, 5, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 6},     /* depthwise */
  {1, 4, 8, 6, 5, 3, 3, {2, 1}, {1, 1}, {1, 2}, 4},     /* depthwise, multiplier 2 */
  {2, 4, 8, 7, 9, 3, 3, {1, 1}, {3, 2}, {2, 1}, 4},     /* depthwise stride 1: dilation, padding past the span */
  {1, 3, 3, 6, 5, 2, 4, {1, 1}, {0, 1}, {1, 1}, 3},     /* depthwise stride 1, even rectangular kernel */
  {3, 5, 5, 1, 70, 1, 5, {1, 1}, {0, 2}, {1, 3}, 5},    /* depthwise rows longer than a register block */
  {2, 2, 3, 3, 4, 2, 2, {1, 1}, {3, 4}, {1, 1}, 1},     /* padding larger than the kernel */
  {1, 3, 2, 13, 11, 5, 4, {3, 2}, {2, 1}, {1, 2}, 1},   /* odd sizes */
  {2, 3, 3, 4, 4, 4, 4, {1, 1}, {0, 0}, {1, 1}, 1},     /* kernel = input: 1x1 output */
  {2, 2, 2, 5, 5, 1, 1, {2, 2}, {0, 0}, {1, 1}, 1},     /* 1x1 kernel, stride 2 */
  {1, 5, 3, 4, 9, 1, 3, {1, 4}, {0, 2}, {1, 1}, 1},     /* stride wider than the kernel */
  /* stride 1, output as wide as the input: im2col and col2im by shifted planes */
  {2, 3, 4, 6, 7, 3, 3, {1, 1}, {2, 2}, {2, 2}, 1},     /* dilation 2, padding 2 */
  {2, 3, 4, 7, 6, 5, 3, {1, 1}, {1, 1}, {1, 1}, 1},     /* fewer output rows than input rows */
  {1, 2, 3, 4, 5, 3, 3, {1, 1}, {3, 1}, {1, 1}, 1},     /* output rows reading only padding */
  {2, 2, 3, 3, 2, 3, 5, {1, 1}, {1, 2}, {1, 1}, 1},     /* kernel wider than the input */
  {7, 3, 4, 6, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},     /* several images per task: col's padding zeroed once */
  /* few rows per group, many outputs: dw computed transposed (col @ g^T) */
  {3, 1, 32, 6, 7, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},    /* a first layer */
  {2, 2, 64, 5, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 2},    /* and groups */
  {1, 1, 32, 4, 5, 3, 3, {1, 1}, {0, 1}, {1, 1}, 1},    /* and one image (one part) */
};

static void test_forward_values(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
    dn_tensor *x, *w, *b;
    make_inputs(&CASES[i], 10 * i + 1, &x, &w, &b);
    check_forward(x, w, b, &CASES[i]);
    check_forward(x, w, NULL, &CASES[i]);
    RELEASE(x, w, b);
  }
}

/* Non-contiguous input, weight and bias; a narrowed input; a channel-last layout. */
static void check_layouts(const conv_case *c) {
  dn_tensor *x, *w, *b;
  make_inputs(c, 77, &x, &w, &b);
  dn_tensor *xn = dn_test_noncontiguous(x), *wn = dn_test_noncontiguous(w), *bn = dn_test_noncontiguous(b);
  assert_false(dn_tensor_is_contiguous(xn));
  check_forward(xn, w, b, c);
  check_forward(xn, wn, bn, c);
  /* x as a narrow of a wider tensor (row stride > width) */
  dn_tensor *wide = dn_test_random(78, 4, (int64_t[]){c->n, c->in, c->h, c->w + 3}), *narrow;
  DN_OK_OR_FAIL(dn_narrow(&narrow, wide, 3, 1, c->w));
  check_forward(narrow, w, b, c);
  /* NHWC storage permuted to NCHW */
  dn_tensor *nhwc = dn_test_random(79, 4, (int64_t[]){c->n, c->h, c->w, c->in}), *perm;
  DN_OK_OR_FAIL(dn_permute(&perm, nhwc, (int[]){0, 3, 1, 2}));
  check_forward(perm, w, b, c);
  RELEASE(x, w, b, xn, wn, bn, wide, narrow, nhwc, perm);
}

static void test_forward_layouts(void **state) {
  (void)state;
  for (int k = 2; k <= 3; k++) check_layouts(&CASES[k]);   /* padding "same" (shifted planes), strided */
}

/* conv1d against conv2d over a height of 1. */
static void test_conv1d(void **state) {
  (void)state;
  const int64_t opts[][4] = {{1, 0, 1, 1}, {2, 1, 1, 1}, {1, 3, 2, 1}, {3, 2, 1, 2}, {1, 1, 1, 4}};
  for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
    int64_t stride = opts[i][0], pad = opts[i][1], dil = opts[i][2], groups = opts[i][3];
    conv_case c = {2, 4, 8, 1, 11, 1, 3, {1, stride}, {0, pad}, {1, dil}, groups};
    dn_tensor *x4, *w4, *b, *x, *w, *y, *x_n;
    make_inputs(&c, 100 + i, &x4, &w4, &b);
    DN_OK_OR_FAIL(dn_reshape(&x, x4, 3, (int64_t[]){2, 4, 11}));
    DN_OK_OR_FAIL(dn_reshape(&w, w4, 3, (int64_t[]){8, 4 / groups, 3}));
    dn_tensor *want4 = conv2d_ref(x4, w4, b, &c), *want;
    DN_OK_OR_FAIL(dn_reshape(&want, want4, 3, (int64_t[]){2, 8, want4->shape[3]}));
    DN_OK_OR_FAIL(dn_conv1d(&y, x, w, b, stride, pad, dil, groups));
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[2], want4->shape[3]);
    dn_test_assert_close(y, want, TOL);
    dn_tensor_release(y);
    x_n = dn_test_noncontiguous(x);
    DN_OK_OR_FAIL(dn_conv1d(&y, x_n, w, b, stride, pad, dil, groups));
    dn_test_assert_close(y, want, TOL);
    RELEASE(x4, w4, b, x, w, y, x_n, want4, want);
  }
}

static void test_empty(void **state) {
  (void)state;
  const int64_t one[2] = {1, 1}, zero[2] = {0, 0};
  /* batch 0 */
  dn_tensor *x = dn_test_random(1, 4, (int64_t[]){0, 2, 4, 4}), *w = dn_test_random(2, 4, (int64_t[]){3, 2, 3, 3});
  dn_tensor *b = dn_test_random(3, 1, (int64_t[]){3}), *y, *g;
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  DN_OK_OR_FAIL(dn_conv2d(&y, x, w, b, one, zero, one, 1));
  assert_int_equal(y->shape[0], 0);
  assert_int_equal(y->shape[2], 2);
  DN_OK_OR_FAIL(dn_tensor_zeros(&g, DN_F32, 4, y->shape));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  for (int64_t i = 0; i < 54; i++) assert_true(dn_test_at(w->grad, i) == 0);
  for (int64_t i = 0; i < 3; i++) assert_true(dn_test_at(b->grad, i) == 0);
  RELEASE(x, w, b, y, g);
  /* no input channels: the output is the bias */
  x = dn_test_random(1, 4, (int64_t[]){2, 0, 3, 3});
  w = dn_test_random(2, 4, (int64_t[]){2, 0, 2, 2});
  b = dn_test_from(1, (int64_t[]){2}, (float[]){1.5f, -2});
  DN_OK_OR_FAIL(dn_conv2d(&y, x, w, b, one, zero, one, 1));
  for (int64_t i = 0; i < 16; i++) assert_true(dn_test_at(y, i) == (i / 4 % 2 ? -2 : 1.5));
  RELEASE(x, w, b, y);
}

/* --- gradients ------------------------------------------------------------------------ */

/* dx, dw and db of sum(conv(x, w, b) * g) in double, straight from the definition. */
static void grads_ref(const dn_tensor *x, const dn_tensor *w, const dn_tensor *g, const conv_case *c, double *dx,
                      double *dw, double *db) {
  int64_t oh_n = out_size(c->h, c->kh, c->stride[0], c->pad[0], c->dil[0]);
  int64_t ow_n = out_size(c->w, c->kw, c->stride[1], c->pad[1], c->dil[1]);
  int64_t cg = c->in / c->groups, og = c->out / c->groups;
  for (int64_t n = 0; n < c->n; n++)
    for (int64_t o = 0; o < c->out; o++)
      for (int64_t oh = 0; oh < oh_n; oh++)
        for (int64_t ow = 0; ow < ow_n; ow++) {
          double gv = dn_test_at(g, ((n * c->out + o) * oh_n + oh) * ow_n + ow);
          db[o] += gv;
          for (int64_t ci = 0; ci < cg; ci++)
            for (int64_t ki = 0; ki < c->kh; ki++)
              for (int64_t kj = 0; kj < c->kw; kj++) {
                int64_t ih = oh * c->stride[0] - c->pad[0] + ki * c->dil[0];
                int64_t iw = ow * c->stride[1] - c->pad[1] + kj * c->dil[1];
                if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) continue;
                int64_t xi = ((n * c->in + o / og * cg + ci) * c->h + ih) * c->w + iw;
                int64_t wi = ((o * cg + ci) * c->kh + ki) * c->kw + kj;
                dx[xi] += gv * dn_test_at(w, wi);
                dw[wi] += gv * dn_test_at(x, xi);
              }
        }
}

static void assert_grad_close(const dn_tensor *got, const double *want, double tol) {
  for (int64_t i = 0; i < dn_tensor_numel(got); i++) assert_float_equal(dn_test_at(got, i), want[i], tol);
}

/* Values, and gradients against the definition where finite differences in
   float32 are too coarse: 288 rows per group (two k blocks of the sgemm, w packed once
   for all images), a first layer (dw transposed), groups; stride 1 with at least 16
   input channels per group (dw by shifted products, conv_dw_shifts.c) with dilation,
   padding past the kernel, even and wide kernels, groups, several images per part,
   and x strided. */
static void check_gradients_reference(const conv_case *c, uint64_t seed, bool strided);

static void test_gradients_reference(void **state) {
  (void)state;
  static const conv_case cases[] = {
    {3, 32, 9, 6, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},
    {4, 1, 32, 9, 7, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},
    {2, 64, 40, 5, 4, 3, 3, {1, 1}, {1, 1}, {1, 1}, 2},
    {3, 30, 10, 7, 6, 3, 3, {2, 1}, {1, 0}, {1, 2}, 1},
    {2, 16, 5, 6, 7, 3, 3, {1, 1}, {2, 2}, {2, 2}, 1},    /* dilation 2, padding 2 */
    {2, 16, 3, 3, 4, 2, 2, {1, 1}, {3, 4}, {1, 1}, 1},    /* padding larger than the kernel */
    {1, 48, 6, 4, 5, 2, 4, {1, 1}, {0, 1}, {1, 1}, 3},    /* groups of 16, even rectangular kernel */
    {2, 16, 4, 3, 2, 3, 5, {1, 1}, {1, 2}, {1, 1}, 1},    /* kernel wider than the input */
    {11, 20, 7, 5, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},   /* parts of one and two images */
    {2, 17, 3, 1, 9, 1, 3, {1, 1}, {0, 1}, {1, 3}, 1},    /* one row (as conv1d), dilated */
  };
  for (size_t i = 0; i < 2 * (sizeof cases / sizeof *cases); i++)   /* each case twice: x contiguous, then strided */
    check_gradients_reference(&cases[i % (sizeof cases / sizeof *cases)], 900 + 10 * i,
                              i >= sizeof cases / sizeof *cases);
}

/* Forward and every gradient of case c against the double references. */
static void check_gradients_reference(const conv_case *c, uint64_t seed, bool strided) {
  dn_tensor *x, *w, *b, *y, *g;
  make_inputs(c, seed, &x, &w, &b);
  if (strided) {
    dn_tensor *xs = dn_test_noncontiguous(x);
    dn_tensor_release(x);
    x = xs;
  }
  check_forward(x, w, b, c);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  DN_OK_OR_FAIL(dn_conv2d(&y, x, w, b, c->stride, c->pad, c->dil, c->groups));
  g = dn_test_random(seed + 5, 4, y->shape);
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  double *dx = calloc((size_t)dn_tensor_numel(x), sizeof *dx), *dw = calloc((size_t)dn_tensor_numel(w), sizeof *dw);
  double *db = calloc((size_t)c->out, sizeof *db);
  grads_ref(x, w, g, c, dx, dw, db);
  assert_grad_close(x->grad, dx, 1e-3);
  assert_grad_close(w->grad, dw, 1e-3);
  assert_grad_close(b->grad, db, 1e-3);
  free(dx);
  free(dw);
  free(db);
  RELEASE(x, w, b, y, g);
}

typedef struct grad_ctx {
  const conv_case *c;
  bool one_d;
} grad_ctx;

static dn_status apply_conv(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const grad_ctx *g = ctx;
  const conv_case *c = g->c;
  if (g->one_d) return dn_conv1d(out, in[0], in[1], in[2], c->stride[1], c->pad[1], c->dil[1], c->groups);
  return dn_conv2d(out, in[0], in[1], in[2], c->stride, c->pad, c->dil, c->groups);
}

static void test_gradients(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
    dn_tensor *x, *w, *b;
    make_inputs(&CASES[i], 200 + 10 * i, &x, &w, &b);
    grad_ctx ctx = {&CASES[i], false};
    DN_OK_OR_FAIL(dn_requires_grad_(x, true));
    DN_OK_OR_FAIL(dn_requires_grad_(w, true));
    DN_OK_OR_FAIL(dn_requires_grad_(b, true));
    dn_test_gradcheck("conv2d", apply_conv, &ctx, 3, (dn_tensor *[]){x, w, b}, 5e-3, 3e-3, 2e-3);
    dn_test_gradcheck("conv2d", apply_conv, &ctx, 3, (dn_tensor *[]){x, w, NULL}, 5e-3, 3e-3, 2e-3);
    /* only some inputs require grad */
    DN_OK_OR_FAIL(dn_requires_grad_(x, false));
    dn_test_gradcheck("conv2d", apply_conv, &ctx, 3, (dn_tensor *[]){x, w, b}, 5e-3, 3e-3, 2e-3);
    DN_OK_OR_FAIL(dn_requires_grad_(x, true));
    DN_OK_OR_FAIL(dn_requires_grad_(w, false));
    DN_OK_OR_FAIL(dn_requires_grad_(b, false));
    dn_test_gradcheck("conv2d", apply_conv, &ctx, 3, (dn_tensor *[]){x, w, b}, 5e-3, 3e-3, 2e-3);
    RELEASE(x, w, b);
  }
  /* a non-contiguous input leaf (dense and depthwise), and conv1d */
  for (int k = 0; k < 2; k++) {
    conv_case cn = CASES[k ? 8 : 4];
    dn_tensor *xc, *wk, *bk;
    make_inputs(&cn, 310 + k, &xc, &wk, &bk);
    dn_tensor *xnc = dn_test_noncontiguous(xc);
    DN_OK_OR_FAIL(dn_requires_grad_(xnc, true));
    DN_OK_OR_FAIL(dn_requires_grad_(wk, true));
    grad_ctx cx = {&cn, false};
    dn_test_gradcheck("conv2d", apply_conv, &cx, 3, (dn_tensor *[]){xnc, wk, bk}, 5e-3, 3e-3, 2e-3);
    RELEASE(xc, wk, bk, xnc);
  }
  conv_case c = CASES[4];
  dn_tensor *x, *w, *b;
  make_inputs(&c, 300, &x, &w, &b);
  dn_tensor *xn = dn_test_noncontiguous(x);
  DN_OK_OR_FAIL(dn_requires_grad_(xn, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  grad_ctx ctx = {&c, false};
  dn_test_gradcheck("conv2d", apply_conv, &ctx, 3, (dn_tensor *[]){xn, w, b}, 5e-3, 3e-3, 2e-3);
  RELEASE(x, w, b, xn);
  conv_case c1 = {2, 4, 6, 1, 9, 1, 3, {1, 2}, {0, 2}, {1, 2}, 2};
  dn_tensor *x1 = dn_test_random(301, 3, (int64_t[]){2, 4, 9}), *w1 = dn_test_random(302, 3, (int64_t[]){6, 2, 3});
  dn_tensor *b1 = dn_test_random(303, 1, (int64_t[]){6});
  DN_OK_OR_FAIL(dn_requires_grad_(x1, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w1, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b1, true));
  grad_ctx ctx1 = {&c1, true};
  dn_test_gradcheck("conv1d", apply_conv, &ctx1, 3, (dn_tensor *[]){x1, w1, b1}, 5e-3, 3e-3, 2e-3);
  RELEASE(x1, w1, b1);
}

static void test_autograd_bookkeeping(void **state) {
  (void)state;
  const conv_case *c = &CASES[2];
  dn_tensor *x, *w, *b, *y, *y1;
  make_inputs(c, 400, &x, &w, &b);
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_conv2d(&y, x, w, b, c->stride, c->pad, c->dil, c->groups));
  assert_string_equal(dn_grad_fn_name(y), "conv2d");
  dn_tensor *x1 = dn_test_random(401, 3, (int64_t[]){1, 2, 5}), *w1 = dn_test_random(402, 3, (int64_t[]){2, 2, 2});
  DN_OK_OR_FAIL(dn_requires_grad_(w1, true));
  DN_OK_OR_FAIL(dn_conv1d(&y1, x1, w1, NULL, 1, 0, 1, 1));
  assert_string_equal(dn_grad_fn_name(y1), "conv1d");
  /* the saved input modified in place is caught */
  dn_tensor *g;
  DN_OK_OR_FAIL(dn_tensor_ones(&g, DN_F32, 4, y->shape));
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(x, 0.0));
  dn_set_grad_enabled(mode);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "modified in place");
  RELEASE(x, w, b, y, x1, w1, y1, g);
}

/* --- threads ---------------------------------------------------------------------------- */

/* Forward and all three gradients on 1..4 threads: the same bits. */
static void check_threads(const conv_case *c, uint64_t seed) {
  dn_tensor *x, *w, *b;
  make_inputs(c, seed, &x, &w, &b);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  int saved_threads = dn_get_num_threads();
  dn_tensor *results[4][4];
  dn_tensor *g = NULL;
  for (int run = 0; run < 4; run++) {
    DN_OK_OR_FAIL(dn_set_num_threads(run + 1));
    dn_tensor *y;
    DN_OK_OR_FAIL(dn_conv2d(&y, x, w, b, c->stride, c->pad, c->dil, c->groups));
    if (!g) g = dn_test_random(seed + 9, 4, y->shape);
    DN_OK_OR_FAIL(dn_backward(y, g, false));
    results[run][0] = y;
    dn_tensor *params[3] = {x, w, b};
    for (int p = 0; p < 3; p++) {
      results[run][p + 1] = params[p]->grad;
      params[p]->grad = NULL;
    }
  }
  for (int k = 0; k < 4; k++) {
    size_t bytes = (size_t)dn_tensor_numel(results[0][k]) * sizeof(float);
    for (int run = 1; run < 4; run++) {
      assert_memory_equal(dn_tensor_data(results[0][k]), dn_tensor_data(results[run][k]), bytes);
      dn_tensor_release(results[run][k]);
    }
    dn_tensor_release(results[0][k]);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(saved_threads));
  RELEASE(x, w, b, g);
}

static void test_threads_bit_identical(void **state) {
  (void)state;
  /* images split across tasks forward, parts of the batch backward (dw, db summed per part) */
  conv_case dense = {4, 16, 32, 24, 20, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1};
  conv_case strided = {3, 12, 24, 23, 19, 5, 3, {2, 1}, {2, 0}, {1, 2}, 3};
  conv_case depthwise = {2, 32, 32, 28, 28, 3, 3, {1, 1}, {1, 1}, {1, 1}, 32};
  conv_case batch1 = {1, 32, 64, 32, 32, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1};
  check_threads(&dense, 500);
  check_threads(&strided, 510);
  check_threads(&depthwise, 520);
  check_threads(&batch1, 530);
}

/* --- conv + ReLU ------------------------------------------------------------------------- */

/* y and the gradients of x, w, b for y's gradient g, through dn_conv2d_relu or dn_conv2d then ReLU (dn_unary). */
static void conv_relu_run(bool fused, dn_tensor *x, dn_tensor *w, dn_tensor *b, const conv_case *c, dn_tensor *g,
                          dn_tensor *out[4]) {
  dn_tensor *y, *z;
  if (fused) {
    DN_OK_OR_FAIL(dn_conv2d_relu(&y, x, w, b, c->stride, c->pad, c->dil, c->groups));
  } else {
    DN_OK_OR_FAIL(dn_conv2d(&z, x, w, b, c->stride, c->pad, c->dil, c->groups));
    DN_OK_OR_FAIL(dn_unary(&y, DN_RELU, z));
    dn_tensor_release(z);
  }
  if (fused) assert_string_equal(dn_grad_fn_name(y), "conv2d_relu");
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  out[0] = y;
  dn_tensor *params[3] = {x, w, b};
  for (int p = 0; p < 3; p++) {
    out[p + 1] = params[p] ? params[p]->grad : NULL;
    if (params[p]) params[p]->grad = NULL;
  }
}

/* dn_conv2d_relu gives dn_conv2d then dn_relu's bits: output and every
   gradient, every case (dense, strided, groups, depthwise, shifted planes,
   transposed dw), with and without bias, on 1 and 3 threads; a gradient
   with zeros and -0 where the output is positive and a bias pushing outputs
   to exactly 0 exercise ReLU's edges. */
static void test_conv_relu_bits(void **state) {
  (void)state;
  int saved_threads = dn_get_num_threads();
  for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++)
    for (int threads = 1; threads <= 3; threads += 2)
      for (int with_bias = 0; with_bias < 2; with_bias++) {
        const conv_case *c = &CASES[i];
        DN_OK_OR_FAIL(dn_set_num_threads(threads));
        dn_tensor *x, *w, *b;
        make_inputs(c, 40 * i + 7, &x, &w, &b);
        DN_OK_OR_FAIL(dn_requires_grad_(x, true));
        DN_OK_OR_FAIL(dn_requires_grad_(w, true));
        DN_OK_OR_FAIL(dn_requires_grad_(b, true));
        dn_tensor *bias = with_bias ? b : NULL;
        dn_tensor *probe;
        DN_OK_OR_FAIL(dn_conv2d(&probe, x, w, NULL, c->stride, c->pad, c->dil, c->groups));
        dn_tensor *g = dn_test_random(40 * i + 9, 4, probe->shape);
        float *gd = dn_tensor_data(g);
        for (int64_t e = 0; e < dn_tensor_numel(g); e += 5) gd[e] = e % 10 ? -0.0f : 0.0f;
        dn_tensor_release(probe);
        dn_tensor *a[4], *r[4];
        conv_relu_run(true, x, w, bias, c, g, a);
        conv_relu_run(false, x, w, bias, c, g, r);
        for (int k = 0; k < 4; k++) {
          if (!r[k]) {
            assert_null(a[k]);
            continue;
          }
          size_t bytes = (size_t)dn_tensor_numel(r[k]) * sizeof(float);
          assert_int_equal(dn_tensor_numel(a[k]), dn_tensor_numel(r[k]));
          if (memcmp(dn_tensor_data(a[k]), dn_tensor_data(r[k]), bytes))
            fail_msg("case %zu, %d threads, bias %d: result %d differs from conv then relu", i, threads, with_bias,
                     k);
          RELEASE(a[k], r[k]);
        }
        RELEASE(x, w, b, g);
      }
  DN_OK_OR_FAIL(dn_set_num_threads(saved_threads));
}

/* dn_conv1d_relu: dn_conv1d then dn_relu's bits. */
static void test_conv1d_relu_bits(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(900, 3, (int64_t[]){3, 4, 17}), *w = dn_test_random(901, 3, (int64_t[]){6, 2, 3});
  dn_tensor *b = dn_test_random(902, 1, (int64_t[]){6});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  dn_tensor *y[2], *grads[2][3];
  dn_tensor *g = dn_test_random(903, 3, (int64_t[]){3, 6, 17});
  for (int fused = 0; fused < 2; fused++) {
    if (fused) {
      DN_OK_OR_FAIL(dn_conv1d_relu(&y[1], x, w, b, 1, 1, 1, 2));
      assert_string_equal(dn_grad_fn_name(y[1]), "conv1d_relu");
    } else {
      dn_tensor *z;
      DN_OK_OR_FAIL(dn_conv1d(&z, x, w, b, 1, 1, 1, 2));
      DN_OK_OR_FAIL(dn_unary(&y[0], DN_RELU, z));
      dn_tensor_release(z);
    }
    DN_OK_OR_FAIL(dn_backward(y[fused], g, false));
    dn_tensor *params[3] = {x, w, b};
    for (int p = 0; p < 3; p++) {
      grads[fused][p] = params[p]->grad;
      params[p]->grad = NULL;
    }
  }
  assert_memory_equal(dn_tensor_data(y[0]), dn_tensor_data(y[1]), (size_t)dn_tensor_numel(y[0]) * sizeof(float));
  for (int p = 0; p < 3; p++)
    assert_memory_equal(dn_tensor_data(grads[0][p]), dn_tensor_data(grads[1][p]),
                        (size_t)dn_tensor_numel(grads[0][p]) * sizeof(float));
  RELEASE(y[0], y[1], grads[0][0], grads[0][1], grads[0][2], grads[1][0], grads[1][1], grads[1][2], x, w, b, g);
}

/* An image convolved in slabs of output rows (its im2col larger than one
   slab: 72 rows in 6 slabs of 12), a batch of 11 in backward's 8 parts (some
   of 2 images), against the reference, and its gradients against those of
   each element convolved alone. */
static void test_slabs_and_parts(void **state) {
  (void)state;
  conv_case c = {11, 16, 4, 72, 72, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1};
  dn_tensor *x, *w, *b, *y, *g;
  make_inputs(&c, 700, &x, &w, &b);
  check_forward(x, w, b, &c);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  DN_OK_OR_FAIL(dn_conv2d(&y, x, w, b, c.stride, c.pad, c.dil, c.groups));
  g = dn_test_random(709, 4, y->shape);
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  int64_t wn = dn_tensor_numel(w), image_size = c.in * c.h * c.w;
  double *dw = calloc((size_t)wn, sizeof *dw), db[4] = {0};
  for (int64_t n = 0; n < c.n; n++) {
    dn_tensor *xv, *xn, *gv, *gn, *wn1, *bn1, *yn;
    DN_OK_OR_FAIL(dn_narrow(&xv, x, 0, n, 1));
    DN_OK_OR_FAIL(dn_detach(&xn, xv));
    DN_OK_OR_FAIL(dn_requires_grad_(xn, true));
    DN_OK_OR_FAIL(dn_narrow(&gv, g, 0, n, 1));
    DN_OK_OR_FAIL(dn_contiguous(&gn, gv));
    DN_OK_OR_FAIL(dn_detach(&wn1, w));
    DN_OK_OR_FAIL(dn_requires_grad_(wn1, true));
    DN_OK_OR_FAIL(dn_detach(&bn1, b));
    DN_OK_OR_FAIL(dn_requires_grad_(bn1, true));
    DN_OK_OR_FAIL(dn_conv2d(&yn, xn, wn1, bn1, c.stride, c.pad, c.dil, c.groups));
    DN_OK_OR_FAIL(dn_backward(yn, gn, false));
    for (int64_t i = 0; i < image_size; i++)
      assert_float_equal(dn_test_at(x->grad, n * image_size + i), dn_test_at(xn->grad, i), 1e-4);
    for (int64_t i = 0; i < wn; i++) dw[i] += dn_test_at(wn1->grad, i);
    for (int64_t i = 0; i < c.out; i++) db[i] += dn_test_at(bn1->grad, i);
    RELEASE(xv, xn, gv, gn, wn1, bn1, yn);
  }
  for (int64_t i = 0; i < wn; i++) assert_float_equal(dn_test_at(w->grad, i), dw[i], 1e-3 * (1 + fabs(dw[i])));
  for (int64_t i = 0; i < c.out; i++) assert_float_equal(dn_test_at(b->grad, i), db[i], 1e-3 * (1 + fabs(db[i])));
  free(dw);
  RELEASE(x, w, b, y, g);
}

/* --- shifted products -------------------------------------------------------------------- */

/* Stride-1 convolutions with one group take y and dx from products over a
   zero-padded frame (conv_shifted.c) on our kernels (AVX-512 and AVX2)
   where they have enough channels. Forced wherever they fit (however few channels), the
   same checks as above: forward and gradients against the references
   (padding 0 to the kernel's span, dilation, rectangular and wide kernels,
   one row, strided inputs, big images, 1x1), the same bits for 1-4 threads
   and conv + ReLU as the two ops. The AVX2 run (c/test_conv_avx2) checks
   that kernel's tiles; under OpenBLAS nothing fits and these run im2col
   again. */
static void test_shifted_products(void **state) {
  dn_conv_shifted_force = DN_SHIFTED_ALWAYS;
  dn_conv_winograd_force = DN_SHIFTED_NEVER;   /* else it takes the 3x3 layers it fits */
  test_forward_values(state);
  test_forward_layouts(state);
  test_conv1d(state);
  test_gradients_reference(state);
  test_gradients(state);
  test_threads_bit_identical(state);
  test_conv_relu_bits(state);
  test_conv1d_relu_bits(state);
  test_slabs_and_parts(state);
  dn_conv_shifted_force = DN_SHIFTED_AUTO;
  dn_conv_winograd_force = DN_SHIFTED_AUTO;
}

/* Case c's y and its gradients of x, w and b (inputs from seed) in out, the caller's to release. */
static void forward_backward(const conv_case *c, uint64_t seed, dn_tensor *out[4]) {
  dn_tensor *x, *w, *b, *y;
  make_inputs(c, seed, &x, &w, &b);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  DN_OK_OR_FAIL(dn_conv2d(&y, x, w, b, c->stride, c->pad, c->dil, c->groups));
  dn_tensor *g = dn_test_random(seed + 1, 4, y->shape);
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  out[0] = y;
  out[1] = x->grad;
  out[2] = w->grad;
  out[3] = b->grad;
  x->grad = w->grad = b->grad = NULL;
  RELEASE(x, w, b, g);
}

/* A small CNN's 32 -> 64 layer (enough channels to take the shifted
   products by default where they exist) against im2col's, forward and
   every gradient: the same values within the rounding of a different order
   of sums. */
static void test_shifted_against_im2col(void **state) {
  (void)state;
  conv_case c = {3, 32, 64, 14, 14, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1};
  dn_tensor *out[2][4];
  dn_conv_winograd_force = DN_SHIFTED_NEVER;
  for (int path = 0; path < 2; path++) {
    dn_conv_shifted_force = path ? DN_SHIFTED_NEVER : DN_SHIFTED_AUTO;
    forward_backward(&c, 950, out[path]);
  }
  dn_conv_shifted_force = DN_SHIFTED_AUTO;
  dn_conv_winograd_force = DN_SHIFTED_AUTO;
  for (int k = 0; k < 4; k++) {
    dn_test_assert_close(out[0][k], out[1][k], 1e-4);
    RELEASE(out[0][k], out[1][k]);
  }
}

/* --- Winograd's products ----------------------------------------------------------------- */

/* 3x3 stride-1 convolutions with one group and no dilation take y and dx
   from Winograd's F(2x2, 3x3) (conv_winograd.c) on our kernels (by default
   with enough channels). Forced wherever they fit, however small,
   and the shifted products off: the checks above (forward and gradients
   against the references, layouts, the same bits for 1-4 threads, conv +
   ReLU as the two ops, parts of the batch) and odd shapes: padding 0 and 2
   (dx's frame padded by 2 and 0), rectangular padding, odd output sizes
   (tiles cut at the edges), one row of tiles, enough images and columns to
   wrap V's ring several times within a task. */
static void test_winograd_products(void **state) {
  dn_conv_winograd_force = DN_SHIFTED_ALWAYS;
  dn_conv_shifted_force = DN_SHIFTED_NEVER;
  test_forward_values(state);
  test_forward_layouts(state);
  test_gradients_reference(state);
  test_gradients(state);
  test_threads_bit_identical(state);
  test_conv_relu_bits(state);
  test_slabs_and_parts(state);
  static const conv_case cases[] = {
    {3, 5, 6, 7, 9, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1},
    {2, 4, 3, 6, 5, 3, 3, {1, 1}, {2, 2}, {1, 1}, 1},
    {3, 6, 5, 8, 7, 3, 3, {1, 1}, {0, 2}, {1, 1}, 1},
    {2, 3, 9, 5, 11, 3, 3, {1, 1}, {2, 0}, {1, 1}, 1},
    {2, 7, 4, 3, 12, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},    /* one and a half rows of tiles */
    {1, 2, 2, 3, 3, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1},     /* one output */
    {37, 17, 9, 9, 10, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},  /* V's ring wrapped within each task */
    {2, 5, 4, 6, 21, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},    /* runs of 8 tiles and more, an odd width */
    {2, 3, 4, 5, 34, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},    /* runs of 17 tiles */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    check_gradients_reference(&cases[i], 1300 + 10 * i, false);
    check_gradients_reference(&cases[i], 1305 + 10 * i, true);
  }
  dn_conv_winograd_force = DN_SHIFTED_AUTO;
  dn_conv_shifted_force = DN_SHIFTED_AUTO;
}

/* The small CNN's 32 -> 64 layer, and odd shapes, by Winograd's products
   against the direct paths: the same values within 1e-4 (the rounding of
   other sums), forward and every gradient; and not the same bits where our
   kernels run (y, dx and dw), which shows that Winograd's path was the one
   taken. The 32 -> 64 layer takes it for dw by default too: its dw has the
   forced path's bits. */
static void test_winograd_against_direct(void **state) {
  (void)state;
  static const conv_case cases[] = {
    {3, 32, 64, 14, 14, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1},
    {5, 17, 9, 13, 11, 3, 3, {1, 1}, {0, 1}, {1, 1}, 1},
    {4, 16, 20, 9, 15, 3, 3, {1, 1}, {2, 2}, {1, 1}, 1},
  };
  bool ours = strncmp(dn_matmul_backend(), "dropnet", 7) == 0;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const conv_case *c = &cases[i];
    dn_tensor *out[2][4];
    for (int path = 0; path < 2; path++) {
      dn_conv_winograd_force = path ? DN_SHIFTED_NEVER : DN_SHIFTED_ALWAYS;
      forward_backward(c, 1400 + 10 * i, out[path]);
    }
    dn_conv_winograd_force = DN_SHIFTED_AUTO;
    for (int k = 0; k < 4; k++) dn_test_assert_close(out[0][k], out[1][k], 1e-4);
    for (int k = 0; ours && k < 3; k++)   /* y, dx and dw */
      assert_memory_not_equal(dn_tensor_data(out[0][k]), dn_tensor_data(out[1][k]),
                              (size_t)dn_tensor_numel(out[0][k]) * sizeof(float));
    if (ours && i == 0) {
      dn_tensor *by_default[4];
      forward_backward(c, 1400 + 10 * i, by_default);
      assert_memory_equal(dn_tensor_data(by_default[2]), dn_tensor_data(out[0][2]),
                          (size_t)dn_tensor_numel(out[0][2]) * sizeof(float));
      for (int k = 0; k < 4; k++) RELEASE(by_default[k]);
    }
    for (int k = 0; k < 4; k++) RELEASE(out[0][k], out[1][k]);
  }
}

/* --- errors ------------------------------------------------------------------------------ */

static void test_errors(void **state) {
  (void)state;
  const int64_t one[2] = {1, 1}, zero[2] = {0, 0};
  dn_tensor *x = dn_test_random(1, 4, (int64_t[]){2, 3, 5, 5}), *w = dn_test_random(2, 4, (int64_t[]){4, 3, 3, 3});
  dn_tensor *w2 = dn_test_random(3, 4, (int64_t[]){4, 2, 3, 3}), *b_bad = dn_test_random(4, 1, (int64_t[]){5});
  dn_tensor *x3 = dn_test_random(5, 3, (int64_t[]){2, 3, 5}), *w_big = dn_test_random(6, 4, (int64_t[]){4, 3, 6, 3});
  dn_tensor *x6 = dn_test_random(7, 4, (int64_t[]){2, 6, 5, 5}), *w6 = dn_test_random(8, 4, (int64_t[]){5, 2, 3, 3});
  dn_tensor *xi, *y = (dn_tensor *)&y;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 4, (int64_t[]){2, 3, 5, 5}));
  DN_EXPECT_ERROR(dn_conv2d(&y, x, w2, NULL, one, zero, one, 1), DN_ESHAPE,
                  "conv2d: input [2,3,5,5] has 3 channels but weight [4,2,3,3] expects 2 per group x 1 groups");
  assert_null(y);
  /* the fused forms check the same way, under their own names */
  y = (dn_tensor *)&y;
  DN_EXPECT_ERROR(dn_conv2d_relu(&y, x, w2, NULL, one, zero, one, 1), DN_ESHAPE,
                  "conv2d_relu: input [2,3,5,5] has 3 channels but weight [4,2,3,3] expects 2 per group x 1 groups");
  assert_null(y);
  DN_EXPECT_ERROR(dn_conv2d_relu(&y, x3, w, NULL, one, zero, one, 1), DN_ESHAPE,
                  "conv2d_relu: input must be 4-D [N, C, H, W] (got shape [2,3,5])");
  DN_EXPECT_ERROR(dn_conv1d_relu(&y, x, w, NULL, 1, 0, 1, 1), DN_ESHAPE,
                  "conv1d_relu: input must be 3-D [N, C, L] (got shape [2,3,5,5])");
  DN_EXPECT_ERROR(dn_conv1d_relu(&y, x3, x3, NULL, 0, 0, 1, 1), DN_EINVAL, "conv1d_relu: stride must be >= 1");
  /* the forms that leave a batch norm its sums: the plain convolution's node, name and checks */
  DN_EXPECT_ERROR(dn_conv2d_stats(&y, x, w2, NULL, one, zero, one, 1), DN_ESHAPE,
                  "conv2d: input [2,3,5,5] has 3 channels but weight [4,2,3,3] expects 2 per group x 1 groups");
  assert_null(y);
  DN_EXPECT_ERROR(dn_conv2d_stats(&y, x3, w, NULL, one, zero, one, 1), DN_ESHAPE,
                  "conv2d: input must be 4-D [N, C, H, W] (got shape [2,3,5])");
  DN_EXPECT_ERROR(dn_conv1d_stats(&y, x, w, NULL, 1, 0, 1, 1), DN_ESHAPE,
                  "conv1d: input must be 3-D [N, C, L] (got shape [2,3,5,5])");
  DN_EXPECT_ERROR(dn_conv1d_stats(&y, x3, x3, NULL, 0, 0, 1, 1), DN_EINVAL, "conv1d: stride must be >= 1");
  DN_EXPECT_ERROR(dn_conv2d(&y, x, w_big, NULL, one, zero, one, 1), DN_ESHAPE,
                  "conv2d: kernel [4,3,6,3] (6 with dilation 1) is larger than the padded input in height 5 "
                  "(input [2,3,5,5], padding [0,0])");
  DN_EXPECT_ERROR(dn_conv2d(&y, x, w, NULL, one, zero, (int64_t[]){1, 3}, 1), DN_ESHAPE,
                  "(3 with dilation 3) is larger than the padded input in width 5");
  DN_OK_OR_FAIL(dn_conv2d(&y, x, w_big, NULL, one, (int64_t[]){1, 0}, one, 1));   /* padding makes it fit */
  dn_tensor_release(y);
  DN_EXPECT_ERROR(dn_conv2d(&y, x, w, NULL, (int64_t[]){0, 1}, zero, one, 1), DN_EINVAL,
                  "conv2d: stride must be >= 1 (got [0,1])");
  DN_EXPECT_ERROR(dn_conv2d(&y, x, w, NULL, (int64_t[]){1, -2}, zero, one, 1), DN_EINVAL,
                  "conv2d: stride must be >= 1 (got [1,-2])");
  DN_EXPECT_ERROR(dn_conv2d(&y, x, w, NULL, one, zero, (int64_t[]){0, 1}, 1), DN_EINVAL,
                  "conv2d: dilation must be >= 1 (got [0,1])");
  DN_EXPECT_ERROR(dn_conv2d(&y, x, w, NULL, one, (int64_t[]){-1, 0}, one, 1), DN_EINVAL,
                  "conv2d: padding must be >= 0 (got [-1,0])");
  DN_EXPECT_ERROR(dn_conv2d(&y, x, w, NULL, one, zero, (int64_t[]){INT64_MAX, 1}, 1), DN_EINVAL, "too large");
  DN_EXPECT_ERROR(dn_conv2d(&y, x, w, NULL, one, zero, one, 0), DN_EINVAL, "conv2d: groups must be >= 1 (got 0)");
  DN_EXPECT_ERROR(dn_conv2d(&y, x6, w6, NULL, one, zero, one, 4), DN_ESHAPE,
                  "conv2d: groups 4 does not divide the input's 6 channels (input [2,6,5,5])");
  DN_EXPECT_ERROR(dn_conv2d(&y, x6, w6, NULL, one, zero, one, 3), DN_ESHAPE,
                  "conv2d: groups 3 does not divide the weight's 5 output channels (weight [5,2,3,3])");
  DN_EXPECT_ERROR(dn_conv2d(&y, x3, w, NULL, one, zero, one, 1), DN_ESHAPE,
                  "conv2d: input must be 4-D [N, C, H, W] (got shape [2,3,5])");
  DN_EXPECT_ERROR(dn_conv2d(&y, x, x3, NULL, one, zero, one, 1), DN_ESHAPE,
                  "conv2d: weight must be 4-D [out, in/groups, kh, kw] (got shape [2,3,5])");
  DN_EXPECT_ERROR(dn_conv2d(&y, xi, w, NULL, one, zero, one, 1), DN_ETYPE,
                  "conv2d: expects float32 tensors (got input int32, weight float32)");
  DN_EXPECT_ERROR(dn_conv2d(&y, x, w, b_bad, one, zero, one, 1), DN_ESHAPE,
                  "conv2d: bias [5] does not match weight [4,3,3,3] (expected [4])");
  /* conv1d names itself and shows 1-D options */
  DN_EXPECT_ERROR(dn_conv1d(&y, x, w, NULL, 1, 0, 1, 1), DN_ESHAPE,
                  "conv1d: input must be 3-D [N, C, L] (got shape [2,3,5,5])");
  dn_tensor *w1 = dn_test_random(9, 3, (int64_t[]){4, 3, 7});
  DN_EXPECT_ERROR(dn_conv1d(&y, x3, w1, NULL, 1, 0, 1, 1), DN_ESHAPE,
                  "conv1d: kernel [4,3,7] (7 with dilation 1) is larger than the padded input 5 (input [2,3,5], "
                  "padding 0)");
  DN_EXPECT_ERROR(dn_conv1d(&y, x3, w1, NULL, 0, 1, 1, 1), DN_EINVAL, "conv1d: stride must be >= 1 (got 0)");
  DN_EXPECT_ERROR(dn_conv1d(&y, x3, w1, NULL, 1, 1, -1, 1), DN_EINVAL, "conv1d: dilation must be >= 1 (got -1)");
  RELEASE(x, w, w2, b_bad, x3, w_big, x6, w6, xi, w1);
}

/*
** Against PyTorch 1.13 (float64) for one small case. Produced by:
** /usr/bin/python3 -c "import torch; t=lambda n: torch.arange(n,dtype=torch.float64);
**   x=(t(32)/7-2).reshape(1,2,4,4).requires_grad_(); w=(t(36)%5/4-0.5).reshape(2,2,3,3).requires_grad_();
**   b=torch.tensor([0.25,-0.5],dtype=torch.float64,requires_grad=True);
**   y=torch.nn.functional.conv2d(x,w,b,stride=(2,1),padding=1,dilation=(1,2)); y.backward(torch.ones_like(y));
**   print(y.flatten().tolist(), x.grad.flatten().tolist()[:6], w.grad.flatten().tolist()[:6], b.grad.tolist())"
*/
static void test_pytorch_reference(void **state) {
  (void)state;
  double xv[32], wv[36];
  for (int i = 0; i < 32; i++) xv[i] = i / 7.0 - 2;
  for (int i = 0; i < 36; i++) wv[i] = (i % 5) / 4.0 - 0.5;
  dn_tensor *x, *w, *b = dn_test_from(1, (int64_t[]){2}, (float[]){0.25f, -0.5f}), *y, *g;
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&x, DN_F32, 4, (int64_t[]){1, 2, 4, 4}, xv));
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&w, DN_F32, 4, (int64_t[]){2, 2, 3, 3}, wv));
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  DN_OK_OR_FAIL(dn_conv2d(&y, x, w, b, (int64_t[]){2, 1}, (int64_t[]){1, 1}, (int64_t[]){1, 2}, 1));
  DN_OK_OR_FAIL(dn_tensor_ones(&g, DN_F32, 4, y->shape));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  assert_int_equal(y->shape[2], 2);
  assert_int_equal(y->shape[3], 2);
  const double want_y[] = {0.0714285714285714, -1.3214285714285716, 0.4285714285714288, -0.4642857142857142,
                            -0.24999999999999994, 0.3571428571428571, -0.357142857142857, -0.5714285714285715};
  const double want_dx[] = {0.0, 0.5, 0.5, -0.25, 0.0, -0.25};
  const double want_dw[] = {-1.4285714285714286, -2.4285714285714284, -1.0, -2.857142857142857, -4.857142857142857, -2.0};
  const double want_db[] = {4.0, 4.0};
  for (int i = 0; i < 8; i++) assert_float_equal(dn_test_at(y, i), want_y[i], 1e-5 * (1 + fabs(want_y[i])));
  for (int i = 0; i < 6; i++) assert_float_equal(dn_test_at(x->grad, i), want_dx[i], 1e-5 * (1 + fabs(want_dx[i])));
  for (int i = 0; i < 6; i++) assert_float_equal(dn_test_at(w->grad, i), want_dw[i], 1e-5 * (1 + fabs(want_dw[i])));
  for (int i = 0; i < 2; i++) assert_float_equal(dn_test_at(b->grad, i), want_db[i], 1e-5 * (1 + fabs(want_db[i])));
  RELEASE(x, w, b, y, g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_forward_values, dn_test_reset_modes),
    cmocka_unit_test_setup(test_forward_layouts, dn_test_reset_modes),
    cmocka_unit_test_setup(test_conv1d, dn_test_reset_modes),
    cmocka_unit_test_setup(test_empty, dn_test_reset_modes),
    cmocka_unit_test_setup(test_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_autograd_bookkeeping, dn_test_reset_modes),
    cmocka_unit_test_setup(test_threads_bit_identical, dn_test_reset_modes),
    cmocka_unit_test_setup(test_gradients_reference, dn_test_reset_modes),
    cmocka_unit_test_setup(test_slabs_and_parts, dn_test_reset_modes),
    cmocka_unit_test_setup(test_conv_relu_bits, dn_test_reset_modes),
    cmocka_unit_test_setup(test_conv1d_relu_bits, dn_test_reset_modes),
    cmocka_unit_test_setup(test_shifted_products, dn_test_reset_modes),
    cmocka_unit_test_setup(test_shifted_against_im2col, dn_test_reset_modes),
    cmocka_unit_test_setup(test_winograd_products, dn_test_reset_modes),
    cmocka_unit_test_setup(test_winograd_against_direct, dn_test_reset_modes),
    cmocka_unit_test_setup(test_errors, dn_test_reset_modes),
    cmocka_unit_test_setup(test_pytorch_reference, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
