/* Pooling: values against naive loops, gradients by finite differences, ties and NaN,
   the same bits for 1-4 threads, every bad argument's message. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) \
  release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

typedef enum kind { MAX2D, AVG2D, ADAPTIVE2D, MAX1D, AVG1D } kind;

/* One configuration: input [n, c, h, w] (n = 0: unbatched [c, h, w]; 1-d: h is 1 and
   the input [n, c, w]); pairs {height, width}; adaptive takes out = kernel. */
typedef struct pool_case {
  kind kind;
  int64_t n, c, h, w;
  int64_t kernel[2], stride[2], padding[2], dilation[2];
  bool ceil_mode, count_include_pad;
} pool_case;

static const pool_case CASES[] = {
  {MAX2D, 2, 3, 8, 8, {2, 2}, {2, 2}, {0, 0}, {1, 1}, false, false},
  {MAX2D, 2, 2, 9, 41, {2, 2}, {2, 2}, {0, 0}, {1, 1}, false, false},   /* 2x2 fast path, odd sizes */
  {MAX2D, 1, 2, 9, 41, {2, 2}, {2, 2}, {0, 0}, {1, 1}, true, false},    /* its ceil_mode: general path */
  {MAX2D, 1, 2, 7, 9, {3, 2}, {2, 1}, {1, 1}, {1, 1}, false, false},
  {MAX2D, 2, 1, 9, 7, {3, 3}, {2, 3}, {1, 0}, {2, 1}, true, false},
  {MAX2D, 1, 1, 5, 5, {2, 2}, {2, 2}, {1, 1}, {1, 1}, true, false},
  {MAX2D, 3, 2, 6, 11, {1, 4}, {1, 3}, {0, 2}, {1, 2}, true, false},
  {MAX2D, 0, 2, 7, 6, {3, 3}, {3, 3}, {0, 1}, {1, 1}, true, false},   /* unbatched */
  {MAX2D, 2, 2, 4, 4, {4, 4}, {1, 1}, {0, 0}, {1, 1}, false, false},
  {AVG2D, 2, 3, 8, 8, {2, 2}, {2, 2}, {0, 0}, {1, 1}, false, true},
  {AVG2D, 1, 2, 7, 9, {3, 2}, {2, 1}, {1, 1}, {1, 1}, false, true},
  {AVG2D, 1, 2, 7, 9, {3, 2}, {2, 1}, {1, 1}, {1, 1}, false, false},
  {AVG2D, 2, 1, 9, 7, {3, 3}, {2, 3}, {1, 0}, {1, 1}, true, true},
  {AVG2D, 2, 1, 9, 7, {3, 3}, {2, 3}, {1, 0}, {1, 1}, true, false},
  {AVG2D, 1, 1, 5, 5, {2, 2}, {2, 2}, {1, 1}, {1, 1}, true, true},
  {AVG2D, 0, 3, 6, 5, {5, 3}, {4, 2}, {2, 1}, {1, 1}, true, false},   /* unbatched */
  {ADAPTIVE2D, 2, 3, 8, 8, {4, 4}, {0, 0}, {0, 0}, {0, 0}, false, false},
  {ADAPTIVE2D, 1, 2, 7, 9, {3, 5}, {0, 0}, {0, 0}, {0, 0}, false, false},
  {ADAPTIVE2D, 1, 1, 5, 3, {7, 4}, {0, 0}, {0, 0}, {0, 0}, false, false},   /* more outputs than inputs */
  {ADAPTIVE2D, 0, 2, 6, 6, {1, 1}, {0, 0}, {0, 0}, {0, 0}, false, false},
  {MAX1D, 2, 3, 1, 11, {1, 3}, {1, 2}, {0, 1}, {1, 2}, true, false},
  {MAX1D, 0, 2, 1, 8, {1, 2}, {1, 2}, {0, 0}, {1, 1}, false, false},
  {AVG1D, 2, 3, 1, 11, {1, 3}, {1, 2}, {0, 1}, {1, 1}, true, false},
  {AVG1D, 0, 2, 1, 8, {1, 4}, {1, 3}, {0, 2}, {1, 1}, true, true},
};
#define N_CASES (sizeof CASES / sizeof *CASES)

static bool is_1d(const pool_case *c) { return c->kind == MAX1D || c->kind == AVG1D; }
static bool is_max(const pool_case *c) { return c->kind == MAX2D || c->kind == MAX1D; }

static int input_shape(const pool_case *c, int64_t *shape) {
  int nd = 0;
  if (c->n) shape[nd++] = c->n;
  shape[nd++] = c->c;
  if (!is_1d(c)) shape[nd++] = c->h;
  shape[nd++] = c->w;
  return nd;
}

static dn_status apply(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const pool_case *c = ctx;
  switch (c->kind) {
    case MAX2D: return dn_max_pool2d(out, in[0], c->kernel, c->stride, c->padding, c->dilation, c->ceil_mode);
    case AVG2D:
      return dn_avg_pool2d(out, in[0], c->kernel, c->stride, c->padding, c->ceil_mode, c->count_include_pad);
    case ADAPTIVE2D: return dn_adaptive_avg_pool2d(out, in[0], c->kernel[0], c->kernel[1]);
    case MAX1D:
      return dn_max_pool1d(out, in[0], c->kernel[1], c->stride[1], c->padding[1], c->dilation[1], c->ceil_mode);
    case AVG1D:
      return dn_avg_pool1d(out, in[0], c->kernel[1], c->stride[1], c->padding[1], c->ceil_mode,
                           c->count_include_pad);
  }
  return DN_EINVAL;
}

/* --- the naive reference ------------------------------------------------------------------ */

/* Output size along one dim, counting windows one by one: the full windows
   of the padded input, and with ceil_mode one more when its start is less
   than a stride past the last full window's and inside the input or the
   left padding (PyTorch's rule). */
static int64_t ref_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  int64_t span = d * (k - 1) + 1, padded = in + 2 * p, n = 0;
  while (n * s + span <= padded) n++;
  if (ceil_mode && n * s < padded - span + s && n * s - p < in) n++;
  return n;
}

/* One output of plane `plane` at (oh, ow) from every kernel position, in double. */
static double ref_value(const pool_case *c, const dn_tensor *x, int64_t plane, int64_t oh, int64_t ow, int64_t out_h,
                        int64_t out_w) {
  int64_t H = is_1d(c) ? 1 : c->h, W = c->w;
  if (c->kind == ADAPTIVE2D) {
    int64_t h0 = (int64_t)floor((double)oh * H / out_h), h1 = (int64_t)ceil((double)(oh + 1) * H / out_h);
    int64_t w0 = (int64_t)floor((double)ow * W / out_w), w1 = (int64_t)ceil((double)(ow + 1) * W / out_w);
    double sum = 0;
    for (int64_t h = h0; h < h1; h++)
      for (int64_t w = w0; w < w1; w++) sum += dn_test_at(x, plane * H * W + h * W + w);
    return sum / (double)((h1 - h0) * (w1 - w0));
  }
  double best = -INFINITY, sum = 0;
  int64_t inside = 0, padded = 0;
  for (int64_t i = 0; i < c->kernel[0]; i++)
    for (int64_t j = 0; j < c->kernel[1]; j++) {
      int64_t h = oh * c->stride[0] - c->padding[0] + i * c->dilation[0];
      int64_t w = ow * c->stride[1] - c->padding[1] + j * c->dilation[1];
      if (h < H + c->padding[0] && w < W + c->padding[1]) padded++;
      if (h < 0 || h >= H || w < 0 || w >= W) continue;
      double v = dn_test_at(x, plane * H * W + h * W + w);
      if (v > best) best = v;
      sum += v;
      inside++;
    }
  if (is_max(c)) return best;
  return sum / (double)(c->count_include_pad ? padded : inside);
}

static void check_values(const pool_case *c, dn_tensor *x) {
  dn_tensor *y;
  DN_OK_OR_FAIL(apply(&y, (dn_tensor *[]){x}, c));
  int64_t H = is_1d(c) ? 1 : c->h, out_h, out_w;
  if (c->kind == ADAPTIVE2D) {
    out_h = c->kernel[0], out_w = c->kernel[1];
  } else {
    out_h = ref_out_size(H, c->kernel[0], c->stride[0], c->padding[0], c->dilation[0], c->ceil_mode);
    out_w = ref_out_size(c->w, c->kernel[1], c->stride[1], c->padding[1], c->dilation[1], c->ceil_mode);
  }
  assert_int_equal(y->ndim, x->ndim);
  assert_int_equal(y->shape[y->ndim - 1], out_w);
  if (!is_1d(c)) assert_int_equal(y->shape[y->ndim - 2], out_h);
  assert_true(dn_tensor_is_contiguous(y));
  int64_t planes = (c->n ? c->n : 1) * c->c;
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oh = 0; oh < out_h; oh++)
      for (int64_t ow = 0; ow < out_w; ow++) {
        double want = ref_value(c, x, p, oh, ow, out_h, out_w);
        double got = dn_test_at(y, (p * out_h + oh) * out_w + ow);
        if (!(fabs(got - want) <= 1e-6 * (1 + fabs(want))))
          fail_msg("case %d plane %lld (%lld, %lld): %.9g vs %.9g", (int)(c - CASES), (long long)p, (long long)oh,
                   (long long)ow, got, want);
      }
  dn_tensor_release(y);
}

static void test_values(void **state) {
  (void)state;
  for (size_t i = 0; i < N_CASES; i++) {
    int64_t shape[4];
    int nd = input_shape(&CASES[i], shape);
    dn_tensor *x = dn_test_random(i + 1, nd, shape), *xn = dn_test_noncontiguous(x);
    check_values(&CASES[i], x);
    check_values(&CASES[i], xn);
    RELEASE(x, xn);
  }
}

/* A narrowed (strided, offset) input and an empty batch. */
static void test_views_and_empty(void **state) {
  (void)state;
  dn_tensor *wide = dn_test_random(3, 4, (int64_t[]){2, 3, 7, 12}), *x, *xc, *y1, *y2, *empty, *ye;
  DN_OK_OR_FAIL(dn_narrow(&x, wide, 3, 2, 9));
  DN_OK_OR_FAIL(dn_contiguous(&xc, x));
  const int64_t k[2] = {3, 2}, s[2] = {2, 2}, p[2] = {1, 1};
  DN_OK_OR_FAIL(dn_max_pool2d(&y1, x, k, s, p, NULL, true));
  DN_OK_OR_FAIL(dn_max_pool2d(&y2, xc, k, s, p, NULL, true));
  dn_test_assert_close(y1, y2, 0);
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 4, (int64_t[]){0, 3, 5, 5}));
  DN_OK_OR_FAIL(dn_avg_pool2d(&ye, empty, k, NULL, NULL, false, true));
  assert_int_equal(ye->shape[0], 0);
  assert_int_equal(ye->shape[2], 1);
  assert_int_equal(ye->shape[3], 2);
  RELEASE(wide, x, xc, y1, y2, empty, ye);
}

/* --- gradients ------------------------------------------------------------------------------ */

/* Distinct values 0.05 apart (no ties within 2 eps), shuffled by a stride coprime to n. */
static dn_tensor *distinct(int nd, const int64_t *shape) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_F32, nd, shape));
  int64_t n = dn_tensor_numel(t), step = 7;
  while (n % step == 0 || (step < n && n % step == 0)) step += 2;
  float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < n; i++) d[i] = (float)((i * step) % n) * 0.05f - (float)n * 0.025f;
  return t;
}

static void test_gradients(void **state) {
  (void)state;
  for (size_t i = 0; i < N_CASES; i++) {
    int64_t shape[4];
    int nd = input_shape(&CASES[i], shape);
    dn_tensor *x = distinct(nd, shape), *xn = dn_test_noncontiguous(x);
    DN_OK_OR_FAIL(dn_requires_grad_(x, true));
    DN_OK_OR_FAIL(dn_requires_grad_(xn, true));
    dn_test_gradcheck("pooling", apply, &CASES[i], 1, (dn_tensor *[]){x}, 5e-3, 3e-3, 1e-3);
    dn_test_gradcheck("pooling", apply, &CASES[i], 1, (dn_tensor *[]){xn}, 5e-3, 3e-3, 1e-3);
    RELEASE(x, xn);
  }
}

/* The 2x2 stride-2 path (vectorized) against a naive loop on values with many
   ties, NaNs and infinities: the same maxima and the same argmax (first
   maximum, last NaN) in the gradient. */
static void check_2x2(int64_t H, int64_t W, int64_t planes) {
  int64_t OH = H / 2, OW = W / 2;
  dn_tensor *x = dn_test_random(11, 4, (int64_t[]){1, planes, H, W});
  float *d = dn_tensor_data(x);
  for (int64_t i = 0; i < planes * H * W; i++) {
    d[i] = floorf(d[i] * 3);   /* a few levels: ties everywhere */
    if (i % 17 == 3) d[i] = NAN;
    if (i % 23 == 5) d[i] = -INFINITY;
  }
  dn_tensor *y, *g;
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_max_pool2d(&y, x, (int64_t[]){2, 2}, NULL, NULL, NULL, false));
  DN_OK_OR_FAIL(dn_tensor_full(&g, DN_F32, 4, (int64_t[]){1, planes, OH, OW}, 1.0f));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  dn_tensor *y_eval;   /* without a node: no indices written */
  bool was = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_max_pool2d(&y_eval, x, (int64_t[]){2, 2}, NULL, NULL, NULL, false));
  dn_set_grad_enabled(was);
  const float *gx = dn_tensor_data(x->grad);
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        float m = -INFINITY;
        int64_t at = (p * H + 2 * oh) * W + 2 * ow;
        for (int64_t i = 0; i < 2; i++)
          for (int64_t j = 0; j < 2; j++) {
            int64_t k = (p * H + 2 * oh + i) * W + 2 * ow + j;
            if (d[k] > m || d[k] != d[k]) m = d[k], at = k;
          }
        float got = dn_test_at(y, (p * OH + oh) * OW + ow), got_eval = dn_test_at(y_eval, (p * OH + oh) * OW + ow);
        assert_true(got == m || (got != got && m != m));
        assert_true(got_eval == m || (got_eval != got_eval && m != m));
        assert_float_equal(gx[at], 1, 0);
      }
  double total = 0;
  for (int64_t i = 0; i < planes * H * W; i++) total += gx[i];
  assert_float_equal(total, (double)(planes * OH * OW), 0);
  RELEASE(x, y, g, y_eval);
}

/* Rows of 35 outputs (chunks of 16, 16, 3), of 7 and 14 (a chunk spans
   rows), 1, odd sizes (inputs no window covers), one plane or several (the
   last rows of the input are not read past). */
static void test_2x2_ties_nan_wide(void **state) {
  (void)state;
  static const int64_t sizes[][3] = {{6, 70, 3}, {14, 14, 5}, {28, 28, 2}, {7, 29, 3}, {4, 2, 1}, {2, 33, 1}};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) check_2x2(sizes[i][0], sizes[i][1], sizes[i][2]);
}

/* The first maximum takes a tie's gradient; a NaN is the maximum and its last one the gradient. */
static void test_ties_and_nan(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(4, (int64_t[]){1, 1, 2, 4}, (float[]){1, 3, NAN, 2, 3, 2, 5, NAN});
  dn_tensor *g = dn_test_from(4, (int64_t[]){1, 1, 1, 2}, (float[]){10, 20}), *y;
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_max_pool2d(&y, x, (int64_t[]){2, 2}, NULL, NULL, NULL, false));
  assert_float_equal(dn_test_at(y, 0), 3, 0);
  assert_true(isnan(dn_test_at(y, 1)));
  assert_string_equal(dn_grad_fn_name(y), "max_pool2d");
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  static const double want[8] = {0, 10, 0, 0, 0, 0, 0, 20};
  for (int i = 0; i < 8; i++) assert_float_equal(dn_test_at(x->grad, i), want[i], 0);
  RELEASE(x, g, y);
  /* a window of -inf only: its first element takes the gradient (PyTorch's index) */
  x = dn_test_from(3, (int64_t[]){1, 1, 4}, (float[]){-INFINITY, -INFINITY, 1, 2});
  g = dn_test_from(3, (int64_t[]){1, 1, 2}, (float[]){1, 1});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_max_pool1d(&y, x, 2, 2, 0, 1, false));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  assert_true(isinf(dn_test_at(y, 0)));
  static const double want1[4] = {1, 0, 0, 1};
  for (int i = 0; i < 4; i++) assert_float_equal(dn_test_at(x->grad, i), want1[i], 0);
  RELEASE(x, g, y);
  /* a window of padding only (H = 2, k = 2, p = 1, d = 3): -inf and no gradient */
  x = dn_test_from(4, (int64_t[]){1, 1, 2, 2}, (float[]){0, 1, 2, 3});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_max_pool2d(&y, x, (int64_t[]){2, 2}, (int64_t[]){1, 1}, (int64_t[]){1, 1}, (int64_t[]){3, 3},
                              false));
  assert_int_equal(dn_tensor_numel(y), 1);
  assert_true(isinf(dn_test_at(y, 0)) && dn_test_at(y, 0) < 0);
  g = dn_test_from(4, (int64_t[]){1, 1, 1, 1}, (float[]){1});
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  for (int i = 0; i < 4; i++) assert_float_equal(dn_test_at(x->grad, i), 0, 0);
  RELEASE(x, g, y);
}

/* No node (and no saved indices) without grad; the node names. */
static void test_nodes(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(4, 4, (int64_t[]){1, 2, 4, 4}), *y;
  DN_OK_OR_FAIL(dn_max_pool2d(&y, x, (int64_t[]){2, 2}, NULL, NULL, NULL, false));
  assert_null(y->grad_fn);
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  static const char *names[] = {"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"};
  for (int i = 0; i < 3; i++) {
    dn_status st = i == 0   ? dn_max_pool2d(&y, x, (int64_t[]){2, 2}, NULL, NULL, NULL, false)
                   : i == 1 ? dn_avg_pool2d(&y, x, (int64_t[]){2, 2}, NULL, NULL, false, true)
                            : dn_adaptive_avg_pool2d(&y, x, 3, 3);
    DN_OK_OR_FAIL(st);
    assert_string_equal(dn_grad_fn_name(y), names[i]);
    dn_tensor_release(y);
  }
  dn_tensor *x1 = dn_test_random(5, 3, (int64_t[]){2, 2, 6});
  DN_OK_OR_FAIL(dn_requires_grad_(x1, true));
  DN_OK_OR_FAIL(dn_max_pool1d(&y, x1, 2, 2, 0, 1, false));
  assert_string_equal(dn_grad_fn_name(y), "max_pool1d");
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_avg_pool1d(&y, x1, 2, 2, 0, false, true));
  assert_string_equal(dn_grad_fn_name(y), "avg_pool1d");
  RELEASE(y, x, x1);
}

/* --- threads --------------------------------------------------------------------------------- */

static void test_threads_bit_identical(void **state) {
  (void)state;
  int saved = dn_get_num_threads();
  dn_tensor *x = dn_test_random(9, 4, (int64_t[]){4, 9, 33, 31});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  const pool_case cases[] = {
    {MAX2D, 4, 9, 33, 31, {3, 3}, {2, 2}, {1, 1}, {1, 1}, true, false},
    {AVG2D, 4, 9, 33, 31, {3, 3}, {2, 2}, {1, 1}, {1, 1}, true, false},
    {ADAPTIVE2D, 4, 9, 33, 31, {5, 7}, {0, 0}, {0, 0}, {0, 0}, false, false},
  };
  for (size_t c = 0; c < 3; c++) {
    dn_tensor *first_y = NULL, *first_g = NULL;
    for (int threads = 1; threads <= 4; threads++) {
      DN_OK_OR_FAIL(dn_set_num_threads(threads));
      dn_tensor *y, *g;
      DN_OK_OR_FAIL(apply(&y, (dn_tensor *[]){x}, &cases[c]));
      g = dn_test_random(11, y->ndim, y->shape);
      DN_OK_OR_FAIL(dn_backward(y, g, false));
      if (!first_y) {
        first_y = dn_tensor_retain(y);
        DN_OK_OR_FAIL(dn_clone(&first_g, x->grad));
      } else {
        size_t ny = (size_t)dn_tensor_numel(y) * sizeof(float), nx = (size_t)dn_tensor_numel(x) * sizeof(float);
        assert_memory_equal(dn_tensor_data(y), dn_tensor_data(first_y), ny);
        assert_memory_equal(dn_tensor_data(x->grad), dn_tensor_data(first_g), nx);
      }
      dn_tensor_release(x->grad);
      x->grad = NULL;
      RELEASE(y, g);
    }
    RELEASE(first_y, first_g);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
  dn_tensor_release(x);
}

/* --- errors ------------------------------------------------------------------------------------ */

static void test_errors(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 4, (int64_t[]){2, 3, 5, 4}), *y = (dn_tensor *)&y, *xi, *x2, *xe, *x1;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 4, (int64_t[]){2, 3, 5, 4}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&x2, DN_F32, 2, (int64_t[]){5, 4}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&xe, DN_F32, 4, (int64_t[]){2, 3, 0, 4}));
  x1 = dn_test_random(2, 3, (int64_t[]){2, 3, 5});
  const int64_t k2[2] = {2, 2};
  DN_EXPECT_ERROR(dn_max_pool2d(&y, xi, k2, NULL, NULL, NULL, false), DN_ETYPE,
                  "max_pool2d: expects a float32 tensor (got int32)");
  assert_null(y);
  DN_EXPECT_ERROR(dn_avg_pool2d(&y, xi, k2, NULL, NULL, false, true), DN_ETYPE,
                  "avg_pool2d: expects a float32 tensor (got int32)");
  DN_EXPECT_ERROR(dn_adaptive_avg_pool2d(&y, xi, 2, 2), DN_ETYPE, "adaptive_avg_pool2d: expects a float32 tensor");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, x2, k2, NULL, NULL, NULL, false), DN_ESHAPE,
                  "max_pool2d: input must be [N, C, H, W] or [C, H, W] (got shape [5,4])");
  DN_EXPECT_ERROR(dn_max_pool1d(&y, x, 2, 2, 0, 1, false), DN_ESHAPE,
                  "max_pool1d: input must be [N, C, L] or [C, L] (got shape [2,3,5,4])");
  DN_EXPECT_ERROR(dn_adaptive_avg_pool2d(&y, x2, 2, 2), DN_ESHAPE, "adaptive_avg_pool2d: input must be");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, xe, k2, NULL, NULL, NULL, false), DN_ESHAPE,
                  "max_pool2d: input [2,3,0,4] has an empty dim (only the batch N may be 0)");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, x, (int64_t[]){0, 2}, NULL, NULL, NULL, false), DN_EINVAL,
                  "max_pool2d: kernel size must be in [1, 2147483647] (got 0x2)");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, x, (int64_t[]){2, -1}, NULL, NULL, NULL, false), DN_EINVAL,
                  "max_pool2d: kernel size must be in [1, 2147483647] (got 2x-1)");
  DN_EXPECT_ERROR(dn_avg_pool2d(&y, x, k2, (int64_t[]){0, 1}, NULL, false, true), DN_EINVAL,
                  "avg_pool2d: stride must be in [1, 2147483647] (got 0x1)");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, x, k2, (int64_t[]){1, -2}, NULL, NULL, false), DN_EINVAL,
                  "max_pool2d: stride must be in [1, 2147483647] (got 1x-2)");
  DN_EXPECT_ERROR(dn_max_pool1d(&y, x1, 2, 0, 0, 1, false), DN_EINVAL,
                  "max_pool1d: stride must be in [1, 2147483647] (got 0)");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, x, k2, NULL, NULL, (int64_t[]){1, 0}, false), DN_EINVAL,
                  "max_pool2d: dilation must be in [1, 2147483647] (got 1x0)");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, x, k2, NULL, (int64_t[]){-1, 0}, NULL, false), DN_EINVAL,
                  "max_pool2d: padding must be in [0, 2147483647] (got -1x0)");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, x, (int64_t[]){(int64_t)1 << 40, 2}, NULL, NULL, NULL, false), DN_EINVAL,
                  "max_pool2d: kernel size must be in [1, 2147483647] (got 1099511627776x2)");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, x, (int64_t[]){3, 3}, NULL, (int64_t[]){1, 2}, NULL, false), DN_EINVAL,
                  "max_pool2d: padding 1x2 must be at most half the kernel size 3x3");
  DN_EXPECT_ERROR(dn_avg_pool1d(&y, x1, 3, 1, 2, false, true), DN_EINVAL,
                  "avg_pool1d: padding 2 must be at most half the kernel size 3");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, x, (int64_t[]){6, 2}, NULL, NULL, NULL, false), DN_ESHAPE,
                  "max_pool2d: kernel size 6x2 is larger than the padded input 5x4 (input [2,3,5,4], padding 0x0)");
  DN_EXPECT_ERROR(dn_max_pool2d(&y, x, (int64_t[]){3, 3}, NULL, (int64_t[]){0, 1}, (int64_t[]){3, 1}, false),
                  DN_ESHAPE,
                  "max_pool2d: kernel size 3x3 (dilation 3x1: spans 7x3) is larger than the padded input 5x6 "
                  "(input [2,3,5,4], padding 0x1)");
  DN_EXPECT_ERROR(dn_avg_pool1d(&y, x1, 8, 8, 1, false, true), DN_ESHAPE,
                  "avg_pool1d: kernel size 8 is larger than the padded input 7 (input [2,3,5], padding 1)");
  DN_EXPECT_ERROR(dn_adaptive_avg_pool2d(&y, x, 0, 2), DN_EINVAL,
                  "adaptive_avg_pool2d: output size must be >= 1 (got 0x2 for input [2,3,5,4])");
  DN_EXPECT_ERROR(dn_adaptive_avg_pool2d(&y, x, 2, -3), DN_EINVAL, "output size must be >= 1 (got 2x-3");
  DN_EXPECT_ERROR(dn_adaptive_avg_pool2d(&y, x, (int64_t)1 << 40, 2), DN_EINVAL,
                  "adaptive_avg_pool2d: output size 1099511627776x2 is too large for input [2,3,5,4]");
  RELEASE(x, xi, x2, xe, x1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_values, dn_test_reset_modes),
    cmocka_unit_test_setup(test_views_and_empty, dn_test_reset_modes),
    cmocka_unit_test_setup(test_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_ties_and_nan, dn_test_reset_modes),
    cmocka_unit_test_setup(test_2x2_ties_nan_wide, dn_test_reset_modes),
    cmocka_unit_test_setup(test_nodes, dn_test_reset_modes),
    cmocka_unit_test_setup(test_threads_bit_identical, dn_test_reset_modes),
    cmocka_unit_test_setup(test_errors, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
