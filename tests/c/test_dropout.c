/* The dropout family's ops (dropout.c): shapes and views, gradients (the
   forward's mask, exact values, finite differences, grad mode and
   accumulation), p = 0, p = 1 and eval, channel, locked, alpha and gaussian
   dropout, DropConnect, the memory held between forward and backward, and
   every bad input. The random kernels (decisions, thresholds, statistics,
   reproducibility, thread counts) are tested in test_dropout_mask.c; the
   naive reference of the contract both use is in testutil_dropout.c. */
#include "testutil.h"
#include "testutil_dropout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dropnet/dropout.h"
#include "graph.h"

static void test_dropout_shapes_and_views(void **state) {
  (void)state;
  /* a non-contiguous input gives the values of its contiguous copy (row-major decisions) */
  dn_tensor *x = nonzero_random(3, 3, (int64_t[]){4, 5, 6}), *xn = dn_test_noncontiguous(x), *y, *yn;
  assert_false(dn_tensor_is_contiguous(xn));
  const dn_rng start = make_rng(9, 0);
  dn_rng a = start, b = start;
  DN_OK_OR_FAIL(dn_dropout(&y, x, 0.4, &a, DN_DROPOUT_INVERTED));
  DN_OK_OR_FAIL(dn_dropout(&yn, xn, 0.4, &b, DN_DROPOUT_INVERTED));
  assert_true(bits_equal(y, yn));
  assert_true(dn_tensor_is_contiguous(yn));
  assert_int_equal(yn->ndim, 3);
  dn_tensor_release(yn);

  /* a transposed view: decisions follow the view's row-major order */
  dn_tensor *xt, *yt;
  DN_OK_OR_FAIL(dn_transpose(&xt, x, 0, 2));
  dn_rng c = start;
  DN_OK_OR_FAIL(dn_dropout(&yt, xt, 0.4, &c, DN_DROPOUT_INVERTED));
  for (int64_t i = 0; i < dn_tensor_numel(xt); i++) {
    double want = ref_keep(&start, i, 0.4) * dn_test_at(xt, i) * (double)ref_scale(0.4, DN_DROPOUT_INVERTED);
    assert_true((float)want == (float)dn_test_at(yt, i));
  }
  dn_tensor_release(yt);
  dn_tensor_release(xt);

  /* empty: nothing drawn; 0-dim: one decision, one block */
  dn_tensor *e = filled(2, (int64_t[]){0, 3}, 1.0), *ye;
  dn_rng r = make_rng(1, 10);
  DN_OK_OR_FAIL(dn_dropout(&ye, e, 0.5, &r, DN_DROPOUT_INVERTED));
  assert_int_equal(dn_tensor_numel(ye), 0);
  assert_int_equal(ye->ndim, 2);
  assert_true(r.offset == 10);
  dn_tensor *z = filled(0, NULL, 3.0), *yz;
  dn_rng before = r;
  DN_OK_OR_FAIL(dn_dropout(&yz, z, 0.5, &r, DN_DROPOUT_INVERTED));
  assert_int_equal(yz->ndim, 0);
  assert_true(r.offset == 11);
  assert_true(dn_test_at(yz, 0) == (ref_keep(&before, 0, 0.5) ? 6.0 : 0.0));
  dn_tensor *list[] = {x, xn, y, e, ye, z, yz};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* --- gradients: same mask, exact values ---------------------------------------------------- */

static void test_backward_uses_forward_mask(void **state) {
  (void)state;
  int64_t n = 50000;
  for (int scaling = 0; scaling < 2; scaling++) {
    dn_tensor *x = leaf(filled(1, &n, 1.0)), *ones = filled(1, &n, 1.0), *y;
    dn_rng rng = make_rng(31, 3);
    DN_OK_OR_FAIL(dn_dropout(&y, x, 0.3, &rng, (dn_dropout_scaling)scaling));
    assert_string_equal(dn_grad_fn_name(y), "dropout");
    DN_OK_OR_FAIL(dn_backward(y, ones, false));
    for (int64_t i = 0; i < n; i++) assert_true((dn_test_at(y, i) != 0) == (dn_test_at(x->grad, i) != 0));
    dn_tensor_release(y);
    dn_tensor_release(x);
    dn_tensor_release(ones);
  }
  /* the gradient is mask * g * scale, bit for bit, for a fixed seed */
  dn_tensor *x = leaf(dn_test_random(8, 2, (int64_t[]){300, 301})), *g = dn_test_random(9, 2, (int64_t[]){300, 301});
  dn_rng rng = make_rng(4242, 17), before = rng;
  dn_tensor *y;
  DN_OK_OR_FAIL(dn_dropout(&y, x, 0.35, &rng, DN_DROPOUT_INVERTED));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  float scale = ref_scale(0.35, DN_DROPOUT_INVERTED);
  const float *gd = dn_tensor_data(g), *dx = dn_tensor_data(x->grad);
  for (int64_t i = 0; i < dn_tensor_numel(g); i++) {
    float want = ref_keep(&before, i, 0.35) ? gd[i] * scale : 0.0f;
    if (memcmp(&dx[i], &want, sizeof want)) fail_msg("[%lld]: %.9g, expected %.9g", (long long)i, dx[i], want);
  }
  /* the saved counters, not the generator, drive backward: the generator moved on */
  assert_true(rng.offset == before.offset + blocks(300 * 301, 8));
  dn_tensor_release(y);
  dn_tensor_release(x);
  dn_tensor_release(g);
}

static void test_grad_mode_and_accumulation(void **state) {
  (void)state;
  int64_t n = 1000;
  dn_tensor *x = leaf(dn_test_random(1, 1, &n)), *g = dn_test_random(2, 1, &n), *y;
  dn_rng rng = make_rng(5, 0);
  /* no node under no_grad */
  bool previous = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_dropout(&y, x, 0.5, &rng, DN_DROPOUT_INVERTED));
  dn_set_grad_enabled(previous);
  assert_null(y->grad_fn);
  assert_false(y->requires_grad);
  dn_tensor_release(y);
  /* an input without requires_grad: no node, no grad */
  dn_tensor *plain = dn_test_random(3, 1, &n);
  DN_OK_OR_FAIL(dn_dropout(&y, plain, 0.5, &rng, DN_DROPOUT_INVERTED));
  assert_null(y->grad_fn);
  dn_tensor_release(y);
  assert_null(plain->grad);
  dn_tensor_release(plain);
  /* two backwards through a retained graph accumulate */
  DN_OK_OR_FAIL(dn_dropout(&y, x, 0.5, &rng, DN_DROPOUT_INVERTED));
  DN_OK_OR_FAIL(dn_backward(y, g, true));
  dn_tensor *first;
  DN_OK_OR_FAIL(dn_clone(&first, x->grad));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  for (int64_t i = 0; i < n; i++) assert_true(dn_test_at(x->grad, i) == 2 * dn_test_at(first, i));
  dn_tensor_release(first);
  dn_tensor_release(y);
  /* a non-contiguous gradient (expanded) is fine */
  dn_tensor *one = filled(0, NULL, 1.0), *expanded;
  DN_OK_OR_FAIL(dn_broadcast_to(&expanded, one, 1, &n));
  dn_tensor *x2 = leaf(dn_test_random(4, 1, &n));
  DN_OK_OR_FAIL(dn_dropout(&y, x2, 0.5, &rng, DN_DROPOUT_INVERTED));
  DN_OK_OR_FAIL(dn_backward(y, expanded, false));
  for (int64_t i = 0; i < n; i++) assert_true((dn_test_at(x2->grad, i) == 2.0) == (dn_test_at(y, i) != 0));
  dn_tensor *list[] = {x, g, y, one, expanded, x2};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* --- p = 0, p = 1, eval ----------------------------------------------------------------------- */

static void test_p0_returns_input(void **state) {
  (void)state;
  for (int v = 0; v < VARIANTS; v++) {
    dn_tensor *x = leaf(dn_test_random(v, 3, (int64_t[]){2, 3, 4})), *y;
    dn_rng rng = make_rng(1, 7);
    DN_OK_OR_FAIL(run_variant(v, &y, x, 0.0, &rng));
    assert_ptr_equal(y, x);
    assert_int_equal(x->refcount, 2);
    assert_true(rng.offset == 7);   /* no draw */
    dn_tensor_release(y);
    dn_tensor_release(x);
  }
}

static void test_p1_zeros(void **state) {
  (void)state;
  int64_t shape[3] = {3, 4, 50};
  double ps[] = {1.0, 1.0 - 1e-6 /* rounds to 1 */};
  for (int v = 0; v < VARIANTS - 1; v++)   /* gaussian refuses p = 1 (bad inputs) */
    for (int q = 0; q < 2; q++) {
      dn_tensor *x = leaf(dn_test_random(v, 3, shape)), *y, *g = dn_test_random(99, 3, shape);
      float *xd = dn_tensor_data(x);
      xd[0] = INFINITY;   /* a select, not a multiply: dropped inf is 0, not NaN */
      xd[1] = NAN;
      dn_rng rng = make_rng(1, 0);
      DN_OK_OR_FAIL(run_variant(v, &y, x, ps[q], &rng));
      DN_OK_OR_FAIL(dn_backward(y, g, false));
      for (int64_t i = 0; i < dn_tensor_numel(y); i++) {
        assert_true(dn_test_at(y, i) == 0.0);
        assert_true(dn_test_at(x->grad, i) == 0.0);
      }
      dn_tensor_release(y);
      dn_tensor_release(x);
      dn_tensor_release(g);
    }
  /* dropconnect with p = 1: only the bias is left; weight and input grads are 0 */
  dn_tensor *x = leaf(dn_test_random(1, 2, (int64_t[]){3, 4})), *w = leaf(dn_test_random(2, 2, (int64_t[]){5, 4}));
  dn_tensor *b = leaf(dn_test_random(3, 1, (int64_t[]){5})), *y, *g = filled(2, (int64_t[]){3, 5}, 1.0);
  dn_rng rng = make_rng(1, 0);
  DN_OK_OR_FAIL(dn_dropconnect_linear(&y, x, w, b, 1.0, &rng));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  for (int64_t i = 0; i < 15; i++) assert_true(dn_test_at(y, i) == dn_test_at(b, i % 5));
  for (int64_t i = 0; i < 20; i++) assert_true(dn_test_at(w->grad, i) == 0 && isfinite(dn_test_at(w->grad, i)));
  for (int64_t i = 0; i < 12; i++) assert_true(dn_test_at(x->grad, i) == 0);
  for (int64_t i = 0; i < 5; i++) assert_true(dn_test_at(b->grad, i) == 3);
  dn_tensor *list[] = {x, w, b, y, g};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_eval(void **state) {
  (void)state;
  dn_tensor *x = leaf(dn_test_random(4, 2, (int64_t[]){7, 9})), *y;
  DN_OK_OR_FAIL(dn_dropout_eval(&y, x, 0.5, DN_DROPOUT_INVERTED));
  assert_ptr_equal(y, x);
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_dropout_eval(&y, x, 0.0, DN_DROPOUT_TEST_TIME));
  assert_ptr_equal(y, x);
  dn_tensor_release(y);
  /* test-time scaling multiplies by 1 - p (the rounded p) and is differentiable */
  double p = 0.3, keep = 1.0 - ref_threshold(p) / 65536.0;
  DN_OK_OR_FAIL(dn_dropout_eval(&y, x, p, DN_DROPOUT_TEST_TIME));
  for (int64_t i = 0; i < 63; i++) assert_true(fabs(dn_test_at(y, i) - dn_test_at(x, i) * keep) <= 1e-6);
  dn_tensor *g = filled(2, (int64_t[]){7, 9}, 1.0);
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  for (int64_t i = 0; i < 63; i++) assert_true(fabs(dn_test_at(x->grad, i) - keep) <= 1e-6);
  dn_tensor_release(y);
  /* the training-mode expectation under TEST_TIME equals the eval transform */
  int64_t n = BIG;
  dn_tensor *ones = filled(1, &n, 1.0), *t;
  dn_rng rng = make_rng(12, 0);
  DN_OK_OR_FAIL(dn_dropout(&t, ones, p, &rng, DN_DROPOUT_TEST_TIME));
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += dn_test_at(t, i);
  assert_true(fabs(sum - n * keep) <= SIGMAS * sqrt(n * keep * (1 - keep)));
  dn_tensor *list[] = {x, g, ones, t};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* --- channel and locked dropout ------------------------------------------------------------- */

static void test_channels(void **state) {
  (void)state;
  int64_t shape[4] = {4, 6, 3, 5}, nc = 24, size = 15;
  dn_tensor *x = leaf(nonzero_random(6, 4, shape)), *y, *g = dn_test_random(7, 4, shape);
  dn_rng rng = make_rng(606, 11), before = rng;
  DN_OK_OR_FAIL(dn_dropout_channels(&y, x, 0.5, &rng, DN_DROPOUT_INVERTED));
  assert_true(rng.offset == before.offset + blocks(nc, 8));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  int kept_channels = 0;
  for (int64_t k = 0; k < nc; k++) {
    bool keep = ref_keep(&before, k, 0.5);
    kept_channels += keep;
    for (int64_t e = 0; e < size; e++) {
      int64_t i = k * size + e;
      assert_true(dn_test_at(y, i) == (keep ? 2 * dn_test_at(x, i) : 0.0));
      assert_true(dn_test_at(x->grad, i) == (keep ? 2 * dn_test_at(g, i) : 0.0));
    }
  }
  assert_true(kept_channels > 0 && kept_channels < nc);   /* P(fail) = 2^-23 */
  dn_tensor_release(y);

  /* [N, C] (one element per channel) is element dropout with the same decisions */
  dn_tensor *x2 = nonzero_random(8, 2, (int64_t[]){33, 10}), *y2, *z2;
  dn_rng a = make_rng(3, 0), b = a;
  DN_OK_OR_FAIL(dn_dropout_channels(&y2, x2, 0.25, &a, DN_DROPOUT_INVERTED));
  DN_OK_OR_FAIL(dn_dropout(&z2, x2, 0.25, &b, DN_DROPOUT_INVERTED));
  assert_true(bits_equal(y2, z2));
  assert_true(a.offset == b.offset);

  /* a non-contiguous input and a 3-D [N, C, L] one */
  dn_tensor *x3 = nonzero_random(9, 3, (int64_t[]){5, 7, 9}), *x3n = dn_test_noncontiguous(x3), *y3, *y3n;
  dn_rng c = make_rng(4, 0), d = c;
  DN_OK_OR_FAIL(dn_dropout_channels(&y3, x3, 0.6, &c, DN_DROPOUT_TEST_TIME));
  DN_OK_OR_FAIL(dn_dropout_channels(&y3n, x3n, 0.6, &d, DN_DROPOUT_TEST_TIME));
  assert_true(bits_equal(y3, y3n));
  for (int64_t k = 0; k < 35; k++)
    for (int64_t e = 0; e < 9; e++)
      assert_true(dn_test_at(y3, k * 9 + e) == (ref_keep(&(dn_rng){.seed = 4}, k, 0.6) ? dn_test_at(x3, k * 9 + e) : 0));

  /* channel fraction over many channels */
  int64_t big[3] = {1000, 200, 2};
  dn_tensor *ones = filled(3, big, 1.0), *yb;
  DN_OK_OR_FAIL(dn_dropout_channels(&yb, ones, 0.3, &c, DN_DROPOUT_INVERTED));
  int64_t kept = 0, n = 200000;
  for (int64_t k = 0; k < n; k++) {
    double v0 = dn_test_at(yb, 2 * k), v1 = dn_test_at(yb, 2 * k + 1);
    assert_true(v0 == v1);
    kept += v0 != 0;
  }
  double keep = 1 - ref_threshold(0.3) / 65536.0;
  assert_true(fabs(kept - n * keep) <= SIGMAS * sqrt(n * keep * (1 - keep)));
  dn_tensor *list[] = {x, g, x2, y2, z2, x3, x3n, y3, y3n, ones, yb};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_locked(void **state) {
  (void)state;
  int64_t shape[3] = {5, 3, 70}, per_step = 210;
  dn_tensor *x = leaf(nonzero_random(10, 3, shape)), *y, *g = dn_test_random(11, 3, shape);
  dn_rng rng = make_rng(707, 2), before = rng;
  DN_OK_OR_FAIL(dn_dropout_locked(&y, x, 0.4, &rng, DN_DROPOUT_INVERTED));
  assert_true(rng.offset == before.offset + blocks(per_step, 8));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  float scale = ref_scale(0.4, DN_DROPOUT_INVERTED);
  for (int64_t t = 0; t < 5; t++)
    for (int64_t j = 0; j < per_step; j++) {
      int64_t i = t * per_step + j;
      bool keep = ref_keep(&before, j, 0.4);   /* the same decision at every step */
      assert_true((float)dn_test_at(y, i) == (keep ? (float)dn_test_at(x, i) * scale : 0.0f));
      assert_true((float)dn_test_at(x->grad, i) == (keep ? (float)dn_test_at(g, i) * scale : 0.0f));
    }
  /* a non-contiguous input */
  dn_tensor *xn = dn_test_noncontiguous(x), *yn, *x2, *y2;
  DN_OK_OR_FAIL(dn_detach(&x2, x));
  dn_rng a = before, b = before;
  DN_OK_OR_FAIL(dn_dropout_locked(&yn, xn, 0.4, &a, DN_DROPOUT_INVERTED));
  DN_OK_OR_FAIL(dn_dropout_locked(&y2, x2, 0.4, &b, DN_DROPOUT_INVERTED));
  assert_true(bits_equal(yn, y2));
  dn_tensor *list[] = {x, y, g, xn, yn, x2, y2};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* --- alpha and gaussian dropout -------------------------------------------------------------- */

static void test_alpha_dropout(void **state) {
  (void)state;
  const double alpha = -1.7580993408473766;
  int64_t n = BIG;
  dn_rng data = make_rng(8080, 0);
  dn_tensor *x;
  DN_OK_OR_FAIL(dn_tensor_randn(&x, &data, 1, &n));
  double ps[] = {0.1, 0.5};
  dn_rng rng = make_rng(99, 0);
  for (int q = 0; q < 2; q++) {
    dn_rng before = rng;
    dn_tensor *y;
    DN_OK_OR_FAIL(dn_alpha_dropout(&y, x, ps[q], &rng));
    assert_true(rng.offset == before.offset + blocks(n, 8));
    double p = ref_threshold(ps[q]) / 65536.0;
    double a = 1 / sqrt((alpha * alpha * p + 1) * (1 - p)), b = -a * alpha * p;
    double sum = 0, sum_sq = 0;
    for (int64_t i = 0; i < n; i++) {
      double v = dn_test_at(y, i);
      double want = ref_keep(&before, i, ps[q]) ? a * dn_test_at(x, i) + b : a * alpha + b;
      if (fabs(v - want) > 1e-5 * (1 + fabs(want))) fail_msg("p=%g [%lld]: %.9g vs %.9g", ps[q], (long long)i, v, want);
      sum += v;
      sum_sq += v * v;
    }
    double mean = sum / n, var = sum_sq / n - mean * mean;
    /* sd of the mean 1/sqrt(n); of the variance sqrt((m4 - 1)/n) with m4 < 10 here */
    assert_true(fabs(mean) <= SIGMAS / sqrt((double)n));
    assert_true(fabs(var - 1) <= SIGMAS * sqrt(10.0 / n));
    dn_tensor_release(y);
  }
  /* backward: grad * a * keep */
  dn_tensor *xs = leaf(dn_test_random(1, 1, (int64_t[]){300})), *g = dn_test_random(2, 1, (int64_t[]){300}), *y;
  dn_rng r = make_rng(5, 0), before = r;
  DN_OK_OR_FAIL(dn_alpha_dropout(&y, xs, 0.2, &r));
  assert_string_equal(dn_grad_fn_name(y), "alpha_dropout");
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  double p = ref_threshold(0.2) / 65536.0;
  float a = (float)(1 / sqrt((alpha * alpha * p + 1) * (1 - p)));
  for (int64_t i = 0; i < 300; i++)
    assert_true((float)dn_test_at(xs->grad, i) == (ref_keep(&before, i, 0.2) ? (float)dn_test_at(g, i) * a : 0.0f));
  dn_tensor *list[] = {x, xs, g, y};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_gaussian_dropout(void **state) {
  (void)state;
  int64_t n = BIG;
  dn_tensor *ones = filled(1, &n, 1.0);
  double ps[] = {0.2, 0.5};
  dn_rng rng = make_rng(31337, 0);
  for (int q = 0; q < 2; q++) {
    dn_rng before = rng;
    dn_tensor *y;
    DN_OK_OR_FAIL(dn_gaussian_dropout(&y, ones, ps[q], &rng));
    assert_true(rng.offset == before.offset + blocks(n, 4));
    double sigma = sqrt(ps[q] / (1 - ps[q])), variance = sigma * sigma, sum = 0, sum_sq = 0;
    for (int64_t i = 0; i < n; i++) {
      float v = (float)dn_test_at(y, i), want = (float)(1.0 + sigma * (double)ref_normal(&before, i));
      if (v != want) fail_msg("p=%g [%lld]: %.9g vs %.9g", ps[q], (long long)i, v, want);
      sum += v;
      sum_sq += (double)v * v;
    }
    double mean = sum / n, var = sum_sq / n - mean * mean;
    assert_true(fabs(mean - 1) <= SIGMAS * sqrt(variance / n));
    /* the sample variance of a normal has sd variance * sqrt(2/n) */
    assert_true(fabs(var - variance) <= SIGMAS * variance * sqrt(2.0 / n));
    dn_tensor_release(y);
  }
  /* backward regenerates the noise: grad_in = g * noise, bit for bit */
  int64_t m = 1001;
  dn_tensor *x = leaf(dn_test_random(3, 1, &m)), *g = dn_test_random(4, 1, &m), *y;
  dn_rng r = make_rng(8, 1), before = r;
  DN_OK_OR_FAIL(dn_gaussian_dropout(&y, x, 0.3, &r));
  assert_string_equal(dn_grad_fn_name(y), "gaussian_dropout");
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  double sigma = sqrt(0.3 / 0.7);
  for (int64_t i = 0; i < m; i++) {
    float noise = (float)(1.0 + sigma * (double)ref_normal(&before, i));
    assert_true((float)dn_test_at(y, i) == (float)dn_test_at(x, i) * noise);
    assert_true((float)dn_test_at(x->grad, i) == (float)dn_test_at(g, i) * noise);
  }
  dn_tensor *list[] = {ones, x, g, y};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* --- dropconnect --------------------------------------------------------------------------------- */

static void test_dropconnect(void **state) {
  (void)state;
  int64_t batch = 3, in = 21, out = 4;
  dn_tensor *x = leaf(nonzero_random(1, 2, (int64_t[]){batch, in}));
  dn_tensor *w = leaf(nonzero_random(2, 2, (int64_t[]){out, in}));
  dn_tensor *b = leaf(dn_test_random(3, 1, &out));
  dn_tensor *g = nonzero_random(4, 2, (int64_t[]){batch, out}), *y;
  dn_rng rng = make_rng(55, 9), before = rng;
  DN_OK_OR_FAIL(dn_dropconnect_linear(&y, x, w, b, 0.5, &rng));
  assert_string_equal(dn_grad_fn_name(y), "dropconnect_linear");
  assert_true(rng.offset == before.offset + blocks(out * in, 8));
  /* y = x @ (w * mask * 2)^T + b */
  for (int64_t r = 0; r < batch; r++)
    for (int64_t o = 0; o < out; o++) {
      double want = dn_test_at(b, o);
      for (int64_t k = 0; k < in; k++)
        if (ref_keep(&before, o * in + k, 0.5)) want += 2 * dn_test_at(x, r * in + k) * dn_test_at(w, o * in + k);
      assert_true(fabs(dn_test_at(y, r * out + o) - want) <= 1e-5 * (1 + fabs(want)));
    }
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  /* gradients reach only kept weights; values (g^T x) * mask * 2 */
  int dropped = 0;
  for (int64_t o = 0; o < out; o++)
    for (int64_t k = 0; k < in; k++) {
      bool keep = ref_keep(&before, o * in + k, 0.5);
      double dw = dn_test_at(w->grad, o * in + k), want = 0;
      for (int64_t r = 0; r < batch; r++) want += dn_test_at(g, r * out + o) * dn_test_at(x, r * in + k);
      if (!keep) {
        assert_true(dw == 0.0);
        dropped++;
      } else {
        assert_true(fabs(dw - 2 * want) <= 1e-5 * (1 + fabs(want)));
      }
    }
  assert_true(dropped > 0 && dropped < out * in);
  for (int64_t o = 0; o < out; o++) {
    double want = 0;
    for (int64_t r = 0; r < batch; r++) want += dn_test_at(g, r * out + o);
    assert_true(fabs(dn_test_at(b->grad, o) - want) <= 1e-5 * (1 + fabs(want)));
  }
  for (int64_t r = 0; r < batch; r++)
    for (int64_t k = 0; k < in; k++) {
      double want = 0;
      for (int64_t o = 0; o < out; o++)
        if (ref_keep(&before, o * in + k, 0.5)) want += 2 * dn_test_at(g, r * out + o) * dn_test_at(w, o * in + k);
      assert_true(fabs(dn_test_at(x->grad, r * in + k) - want) <= 1e-5 * (1 + fabs(want)));
    }
  dn_tensor_release(y);

  /* one sample [in], no bias, a transposed (non-contiguous) weight */
  dn_tensor *x1 = leaf(nonzero_random(5, 1, &in)), *wt_store = leaf(nonzero_random(6, 2, (int64_t[]){in, out})), *wt;
  DN_OK_OR_FAIL(dn_t(&wt, wt_store));
  assert_false(dn_tensor_is_contiguous(wt));
  dn_tensor *g1 = nonzero_random(7, 1, &out), *y1;
  dn_rng r1 = make_rng(56, 0), b1 = r1;
  DN_OK_OR_FAIL(dn_dropconnect_linear(&y1, x1, wt, NULL, 0.3, &r1));
  assert_int_equal(y1->ndim, 1);
  DN_OK_OR_FAIL(dn_backward(y1, g1, false));
  float scale = ref_scale(0.3, DN_DROPOUT_INVERTED);
  for (int64_t o = 0; o < out; o++)
    for (int64_t k = 0; k < in; k++) {
      bool keep = ref_keep(&b1, o * in + k, 0.3);   /* element (o, k) of the logical [out, in] weight */
      double dw = dn_test_at(wt_store->grad, k * out + o);
      double want = keep ? dn_test_at(g1, o) * dn_test_at(x1, k) * scale : 0;
      assert_true(fabs(dw - want) <= 1e-5 * (1 + fabs(want)));
    }
  /* p = 0 is the plain linear layer, no draw */
  dn_tensor *y0, *ref;
  dn_rng r0 = make_rng(1, 4);
  DN_OK_OR_FAIL(dn_dropconnect_linear(&y0, x, w, b, 0.0, &r0));
  DN_OK_OR_FAIL(dn_linear(&ref, x, w, b, DN_ACT_NONE));
  assert_true(bits_equal(y0, ref));
  assert_true(r0.offset == 4);
  dn_tensor *list[] = {x, w, b, g, x1, wt_store, wt, g1, y1, y0, ref};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* --- finite differences -------------------------------------------------------------------------- */

typedef dn_status (*op_fn)(dn_tensor **out, dn_tensor **in, dn_rng *rng);

static dn_status fd_dropout(dn_tensor **out, dn_tensor **in, dn_rng *rng) {
  return dn_dropout(out, in[0], 0.4, rng, DN_DROPOUT_INVERTED);
}
static dn_status fd_dropout_test_time(dn_tensor **out, dn_tensor **in, dn_rng *rng) {
  return dn_dropout(out, in[0], 0.4, rng, DN_DROPOUT_TEST_TIME);
}
static dn_status fd_channels(dn_tensor **out, dn_tensor **in, dn_rng *rng) {
  return dn_dropout_channels(out, in[0], 0.5, rng, DN_DROPOUT_INVERTED);
}
static dn_status fd_locked(dn_tensor **out, dn_tensor **in, dn_rng *rng) {
  return dn_dropout_locked(out, in[0], 0.3, rng, DN_DROPOUT_INVERTED);
}
static dn_status fd_alpha(dn_tensor **out, dn_tensor **in, dn_rng *rng) { return dn_alpha_dropout(out, in[0], 0.2, rng); }
static dn_status fd_gaussian(dn_tensor **out, dn_tensor **in, dn_rng *rng) {
  return dn_gaussian_dropout(out, in[0], 0.3, rng);
}
static dn_status fd_dropconnect(dn_tensor **out, dn_tensor **in, dn_rng *rng) {
  return dn_dropconnect_linear(out, in[0], in[1], in[2], 0.5, rng);
}

/* sum(out * weights) in double */
static double weighted_sum(const dn_tensor *out, const dn_tensor *weights) {
  double s = 0;
  for (int64_t i = 0; i < dn_tensor_numel(out); i++) s += dn_test_at(out, i) * dn_test_at(weights, i);
  return s;
}

/*
** d sum(f(inputs) * weights) / d inputs by dn_backward against central
** differences, every evaluation from the same generator state (a fixed mask).
*/
static void gradcheck(const char *name, op_fn f, dn_tensor **in, int n_in, const dn_rng *state) {
  for (int k = 0; k < n_in; k++) DN_OK_OR_FAIL(dn_requires_grad_(in[k], true));
  dn_rng rng = *state;
  dn_tensor *out;
  DN_OK_OR_FAIL(f(&out, in, &rng));
  dn_tensor *weights = dn_test_random(1234, out->ndim, out->shape);
  DN_OK_OR_FAIL(dn_backward(out, weights, false));
  dn_tensor_release(out);
  const double eps = 1e-2;
  bool previous = dn_set_grad_enabled(false);
  for (int k = 0; k < n_in; k++) {
    float *data = dn_tensor_data(in[k]);
    for (int64_t i = 0; i < dn_tensor_numel(in[k]); i++) {
      float saved = data[i];
      double f_plus, f_minus;
      data[i] = (float)(saved + eps);
      rng = *state;
      DN_OK_OR_FAIL(f(&out, in, &rng));
      f_plus = weighted_sum(out, weights);
      dn_tensor_release(out);
      data[i] = (float)(saved - eps);
      rng = *state;
      DN_OK_OR_FAIL(f(&out, in, &rng));
      f_minus = weighted_sum(out, weights);
      dn_tensor_release(out);
      data[i] = saved;
      double numeric = (f_plus - f_minus) / (2 * eps), analytic = dn_test_at(in[k]->grad, i);
      if (fabs(numeric - analytic) > 1e-2 * (1 + fabs(numeric)))
        fail_msg("%s: input %d element %lld: analytic %.6g, numeric %.6g", name, k, (long long)i, analytic, numeric);
    }
  }
  dn_set_grad_enabled(previous);
  dn_tensor_release(weights);
}

static void test_gradcheck(void **state) {
  (void)state;
  dn_rng rng = make_rng(2718, 3);
  struct {
    const char *name;
    op_fn f;
    int ndim;
    int64_t shape[3];
  } cases[] = {
    {"dropout", fd_dropout, 2, {6, 7}},     {"dropout test_time", fd_dropout_test_time, 1, {30}},
    {"channels", fd_channels, 3, {3, 4, 5}}, {"locked", fd_locked, 3, {4, 3, 5}},
    {"alpha", fd_alpha, 2, {5, 6}},          {"gaussian", fd_gaussian, 2, {5, 7}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    dn_tensor *x = dn_test_random(c, cases[c].ndim, cases[c].shape);
    gradcheck(cases[c].name, cases[c].f, &x, 1, &rng);
    dn_tensor_release(x);
  }
  dn_tensor *in[3] = {dn_test_random(1, 2, (int64_t[]){3, 6}), dn_test_random(2, 2, (int64_t[]){4, 6}),
                      dn_test_random(3, 1, (int64_t[]){4})};
  gradcheck("dropconnect", fd_dropconnect, in, 3, &rng);
  for (int k = 0; k < 3; k++) dn_tensor_release(in[k]);
}

/* --- memory held between forward and backward ----------------------------------------------- */

static void test_saved_mask_bytes(void **state) {
  (void)state;
  int64_t shape[3] = {4, 8, 32};
  for (int v = 0; v < VARIANTS; v++) {
    dn_tensor *x = leaf(dn_test_random(v, 3, shape)), *y;
    dn_rng rng = make_rng(1, 0);
    DN_OK_OR_FAIL(run_variant(v, &y, x, 0.5, &rng));
    assert_non_null(y->grad_fn);
    /* count what the node holds: no saved tensor at all, so no mask bytes */
    size_t held = 0;
    for (int s = 0; s < DN_NODE_SAVED; s++)
      if (y->grad_fn->saved[s]) held += (size_t)dn_tensor_numel(y->grad_fn->saved[s]) * 4;
    assert_int_equal(held, 0);
    assert_int_equal(dn_dropout_saved_mask_bytes(y), 0);
    assert_true(dn_dropout_saved_mask_bytes(y) * 8 <= (size_t)dn_tensor_numel(x));   /* <= 1 bit per element */
    dn_tensor_release(y);
    dn_tensor_release(x);
  }
  /* dropconnect keeps references to its input and weight (which the layer holds anyway), no mask */
  dn_tensor *x = leaf(dn_test_random(1, 2, (int64_t[]){2, 8})), *w = leaf(dn_test_random(2, 2, (int64_t[]){3, 8})), *y;
  dn_rng rng = make_rng(1, 0);
  DN_OK_OR_FAIL(dn_dropconnect_linear(&y, x, w, NULL, 0.5, &rng));
  assert_ptr_equal(y->grad_fn->saved[0]->storage, x->storage);
  assert_ptr_equal(y->grad_fn->saved[1]->storage, w->storage);
  assert_int_equal(dn_dropout_saved_mask_bytes(y), 0);
  dn_tensor_release(y);
  /* only what backward uses is kept: dw needs x, dx needs w */
  dn_tensor *frozen = dn_test_random(3, 2, (int64_t[]){2, 8});
  DN_OK_OR_FAIL(dn_dropconnect_linear(&y, frozen, w, NULL, 0.5, &rng));
  assert_non_null(y->grad_fn->saved[0]);
  assert_null(y->grad_fn->saved[1]);
  dn_tensor_release(y);
  dn_tensor_release(frozen);
  /* not a dropout result, or no graph at all */
  dn_tensor *c;
  DN_OK_OR_FAIL(dn_clone(&c, x));
  assert_int_equal(dn_dropout_saved_mask_bytes(c), 0);
  assert_int_equal(dn_dropout_saved_mask_bytes(w), 0);
  assert_int_equal(dn_dropout_saved_mask_bytes(NULL), 0);
  dn_tensor_release(c);
  dn_tensor_release(x);
  dn_tensor_release(w);
}

/* --- bad inputs ----------------------------------------------------------------------------------- */

static void test_bad_inputs(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 3, (int64_t[]){2, 3, 4}), *y = NULL;
  dn_tensor *xi;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 3, (int64_t[]){2, 3, 4}));
  dn_rng rng = make_rng(1, 0);
  const char *names[VARIANTS] = {"dropout", "dropout", "dropout_channels", "dropout_locked", "alpha_dropout",
                                 "gaussian_dropout"};
  double bad_p[] = {-0.1, 1.5, NAN, INFINITY};
  for (int v = 0; v < VARIANTS; v++) {
    for (int q = 0; q < 4; q++) {
      y = x;
      DN_EXPECT_ERROR(run_variant(v, &y, x, bad_p[q], &rng), DN_EINVAL, names[v]);
      assert_null(y);   /* *out is NULL after a failure */
      DN_EXPECT_ERROR(run_variant(v, &y, x, bad_p[q], &rng), DN_EINVAL, "p must be in [0, 1]");
    }
    DN_EXPECT_ERROR(run_variant(v, &y, x, 1.5, &rng), DN_EINVAL, "got 1.5");
    DN_EXPECT_ERROR(run_variant(v, &y, x, NAN, &rng), DN_EINVAL, "nan");
    DN_EXPECT_ERROR(run_variant(v, &y, xi, 0.5, &rng), DN_ETYPE, "must be float32 (got int32)");
    DN_EXPECT_ERROR(run_variant(v, &y, xi, 0.0, &rng), DN_ETYPE, names[v]);   /* even when nothing is drawn */
    DN_EXPECT_ERROR(run_variant(v, &y, x, 0.5, NULL), DN_EINVAL, "generator is NULL");
  }
  assert_true(rng.offset == 0);   /* failures draw nothing */
  DN_EXPECT_ERROR(dn_gaussian_dropout(&y, x, 1.0, &rng), DN_EINVAL, "gaussian_dropout: p must be < 1");
  DN_EXPECT_ERROR(dn_dropout(&y, x, 0.5, &rng, (dn_dropout_scaling)7), DN_EINVAL, "dropout: unknown scaling 7");
  DN_EXPECT_ERROR(dn_dropout_channels(&y, x, 0.5, &rng, (dn_dropout_scaling)-1), DN_EINVAL, "unknown scaling");
  DN_EXPECT_ERROR(dn_dropout_locked(&y, x, 0.5, &rng, (dn_dropout_scaling)2), DN_EINVAL, "unknown scaling");

  /* eval */
  DN_EXPECT_ERROR(dn_dropout_eval(&y, x, 2.0, DN_DROPOUT_TEST_TIME), DN_EINVAL, "dropout_eval: p must be in [0, 1]");
  DN_EXPECT_ERROR(dn_dropout_eval(&y, xi, 0.5, DN_DROPOUT_INVERTED), DN_ETYPE, "dropout_eval: input must be float32");
  DN_EXPECT_ERROR(dn_dropout_eval(&y, x, 0.5, (dn_dropout_scaling)9), DN_EINVAL, "unknown scaling");

  /* dims */
  dn_tensor *v1 = dn_test_random(2, 1, (int64_t[]){5}), *s0 = filled(0, NULL, 1.0), *m2 = dn_test_random(3, 2, (int64_t[]){2, 3});
  dn_tensor *m4 = dn_test_random(4, 4, (int64_t[]){2, 3, 4, 5});
  DN_EXPECT_ERROR(dn_dropout_channels(&y, v1, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE,
                  "dropout_channels: input must have at least 2 dims [N, C, *] (got shape [5])");
  DN_EXPECT_ERROR(dn_dropout_channels(&y, s0, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE, "(got shape [])");
  DN_EXPECT_ERROR(dn_dropout_locked(&y, m2, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE,
                  "dropout_locked: input must be 3-D [T, N, F] (got shape [2,3])");
  DN_EXPECT_ERROR(dn_dropout_locked(&y, m4, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE, "[2,3,4,5]");
  DN_EXPECT_ERROR(dn_dropout_locked(&y, m4, 0.0, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE, "3-D");

  /* dropconnect */
  dn_tensor *dx = dn_test_random(5, 2, (int64_t[]){4, 6}), *dw = dn_test_random(6, 2, (int64_t[]){3, 6});
  dn_tensor *db = dn_test_random(7, 1, (int64_t[]){3}), *dw_bad = dn_test_random(8, 2, (int64_t[]){3, 5});
  dn_tensor *db_bad = dn_test_random(9, 1, (int64_t[]){4}), *dbi, *dwi;
  DN_OK_OR_FAIL(dn_tensor_zeros(&dbi, DN_I32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&dwi, DN_I32, 2, (int64_t[]){3, 6}));
  const char *op = "dropconnect_linear";
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, dx, dw_bad, db, 0.5, &rng), DN_ESHAPE,
                  "dropconnect_linear: input [4,6] and weight [3,5] do not match (6 != 5)");
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, dx, dw, db_bad, 0.5, &rng), DN_ESHAPE,
                  "dropconnect_linear: bias [4] does not match weight [3,6] (expected [3])");
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, x, dw, db, 0.5, &rng), DN_ESHAPE, "input must be [batch, in] or [in]");
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, dx, v1, NULL, 0.5, &rng), DN_ESHAPE, "weight must be [out, in]");
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, dx, dw, dbi, 0.5, &rng), DN_ETYPE, "bias must be float32 (got int32)");
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, dx, dwi, db, 0.5, &rng), DN_ETYPE, "weight must be float32");
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, xi, dw, db, 0.5, &rng), DN_ETYPE, "input must be float32");
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, dx, dw, db, -1, &rng), DN_EINVAL, op);
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, dx, dw, db, NAN, &rng), DN_EINVAL, "p must be in [0, 1]");
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, dx, dw, db, 0.5, NULL), DN_EINVAL, "generator is NULL");
  DN_EXPECT_ERROR(dn_dropconnect_linear(&y, dx, dw_bad, db, 0.0, &rng), DN_ESHAPE, op);   /* checked at p = 0 too */
  assert_null(y);

  /* mask */
  DN_EXPECT_ERROR(dn_dropout_mask(&y, NULL, 1, (int64_t[]){4}, 0.5), DN_EINVAL, "dropout_mask: generator is NULL");
  DN_EXPECT_ERROR(dn_dropout_mask(&y, &rng, 1, (int64_t[]){4}, 1.01), DN_EINVAL, "dropout_mask: p must be in");
  DN_EXPECT_ERROR(dn_dropout_mask(&y, &rng, 1, (int64_t[]){-4}, 0.5), DN_EINVAL, "dropout_mask: size of dim 1");
  DN_EXPECT_ERROR(dn_dropout_mask(&y, &rng, 2, NULL, 0.5), DN_EINVAL, "dropout_mask: shape is NULL");
  DN_EXPECT_ERROR(dn_dropout_mask(&y, &rng, DN_MAX_DIMS + 1, (int64_t[DN_MAX_DIMS + 1]){0}, 0.5), DN_EINVAL,
                  "dropout_mask: number of dims");
  assert_null(y);
  assert_true(rng.offset == 0);

  /* dropconnect's saved weight (kept for dx) must not change before backward */
  dn_tensor *lw = leaf(dn_test_random(10, 2, (int64_t[]){3, 6})), *lx = leaf(dn_test_random(11, 2, (int64_t[]){4, 6}));
  dn_tensor *ly;
  DN_OK_OR_FAIL(dn_dropconnect_linear(&ly, lx, lw, NULL, 0.5, &rng));
  bool previous = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_binary_scalar_(lw, DN_MUL, 2.0));
  dn_set_grad_enabled(previous);
  dn_tensor *lg = filled(2, (int64_t[]){4, 3}, 1.0);
  DN_EXPECT_ERROR(dn_backward(ly, lg, false), DN_EINVAL, "modified in place");

  dn_tensor *list[] = {x, xi, v1, s0, m2, m4, dx, dw, db, dw_bad, db_bad, dbi, dwi, lw, lx, ly, lg};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_dropout_shapes_and_views),
    cmocka_unit_test(test_backward_uses_forward_mask),
    cmocka_unit_test(test_grad_mode_and_accumulation),
    cmocka_unit_test(test_p0_returns_input),
    cmocka_unit_test(test_p1_zeros),
    cmocka_unit_test(test_eval),
    cmocka_unit_test(test_channels),
    cmocka_unit_test(test_locked),
    cmocka_unit_test(test_alpha_dropout),
    cmocka_unit_test(test_gaussian_dropout),
    cmocka_unit_test(test_dropconnect),
    cmocka_unit_test(test_gradcheck),
    cmocka_unit_test(test_saved_mask_bytes),
    cmocka_unit_test(test_bad_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
