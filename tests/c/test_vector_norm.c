/* Vector p-norms (vector_norm.c) against a naive double-precision
   reference: p = 0, 1, 2, 3, 0.5, 1.5, inf over all elements and each dim,
   keepdim, contiguous and non-contiguous inputs, hand-computed values,
   values whose powers leave the double range, NaN and inf, empty and 0-dim
   inputs, bit-identical results for 1 and 2 threads on every path (lanes,
   blocks of a long lane, columns), every bad argument's message; gradients
   by finite differences, and exactly at PyTorch's conventions (zero norm,
   zero elements, ties of the inf-norm, p = 0 without gradient). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "graph.h"

#define RELEASE(...)                                                         \
  do {                                                                       \
    dn_tensor *list_[] = {__VA_ARGS__};                                      \
    for (size_t i_ = 0; i_ < sizeof list_ / sizeof list_[0]; i_++) dn_tensor_release(list_[i_]); \
  } while (0)

static const double PS[] = {0, 1, 2, 3, 0.5, 1.5, INFINITY};
#define NPS (sizeof PS / sizeof PS[0])

/* The norm of n elements of t from row-major position first, step apart: the definition, in double. */
static double ref_norm(const dn_tensor *t, int64_t first, int64_t n, int64_t step, double p) {
  double acc = 0;
  for (int64_t k = 0; k < n; k++) {
    double v = fabs(dn_test_at(t, first + k * step));
    if (p == 0) acc += v != 0;
    else if (isinf(p)) acc = isnan(v) || isnan(acc) ? NAN : fmax(acc, v);
    else acc += pow(v, p);
  }
  return p == 0 || isinf(p) ? acc : pow(acc, 1 / p);
}

static void expect_norm(double got, double want, const char *what, double p, int64_t j) {
  if (isnan(want) && isnan(got)) return;
  if (!(fabs(got - want) <= 2e-6 * fabs(want) + 1e-30))
    fail_msg("%s p=%g element %lld: %.9g, expected %.9g", what, p, (long long)j, got, want);
}

/* dn_vector_norm_all and _dim over every dim (with and without keepdim) against the reference. */
static void check_norms(const dn_tensor *a, double p) {
  dn_tensor *r;
  DN_OK_OR_FAIL(dn_vector_norm_all(&r, a, p));
  assert_int_equal(r->ndim, 0);
  expect_norm(dn_test_at(r, 0), (float)ref_norm(a, 0, dn_tensor_numel(a), 1, p), "all", p, 0);
  dn_tensor_release(r);
  for (int dim = 0; dim < a->ndim; dim++) {
    int64_t outer = 1, inner = 1, size = a->shape[dim];
    for (int d = 0; d < dim; d++) outer *= a->shape[d];
    for (int d = dim + 1; d < a->ndim; d++) inner *= a->shape[d];
    for (int keep = 0; keep < 2; keep++) {
      DN_OK_OR_FAIL(dn_vector_norm_dim(&r, a, p, keep ? dim - a->ndim : dim, keep));
      assert_int_equal(r->ndim, keep ? a->ndim : a->ndim - 1);
      assert_int_equal(dn_tensor_numel(r), outer * inner);
      for (int64_t j = 0; j < outer * inner; j++) {
        int64_t first = j / inner * size * inner + j % inner;
        expect_norm(dn_test_at(r, j), (float)ref_norm(a, first, size, inner, p), "dim", p, j);
      }
      dn_tensor_release(r);
    }
  }
}

static void test_values(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(1, 3, (int64_t[]){4, 5, 6}), *an = dn_test_noncontiguous(a), *perm;
  DN_OK_OR_FAIL(dn_permute(&perm, a, (int[]){2, 0, 1}));
  dn_tensor *z;   /* zeros among the values, for p = 0 and the zero rows */
  DN_OK_OR_FAIL(dn_tensor_zeros(&z, DN_F32, 2, (int64_t[]){3, 4}));
  DN_OK_OR_FAIL(dn_tensor_set(z, (int64_t[]){0, 1}, -2));
  DN_OK_OR_FAIL(dn_tensor_set(z, (int64_t[]){2, 3}, 0.5));
  for (size_t k = 0; k < NPS; k++) {
    check_norms(a, PS[k]);
    check_norms(an, PS[k]);
    check_norms(perm, PS[k]);
    check_norms(z, PS[k]);
  }
  /* by hand: [3, -4] */
  dn_tensor *v = dn_test_from(1, (int64_t[]){2}, (float[]){3, -4}), *r;
  const double p_want[][2] = {{2, 5}, {1, 7}, {INFINITY, 4}, {0, 2}, {3, 4.4979414}, {0.5, 13.9282032}};
  for (int k = 0; k < 6; k++) {
    DN_OK_OR_FAIL(dn_vector_norm_all(&r, v, p_want[k][0]));
    expect_norm(dn_test_at(r, 0), p_want[k][1], "hand", p_want[k][0], 0);
    dn_tensor_release(r);
  }
  RELEASE(a, an, perm, z, v);
}

static void test_extremes(void **state) {
  (void)state;
  dn_tensor *r;
  /* p = 2 in double: no overflow, no underflow (PyTorch 1.13 gives inf and 0 here) */
  dn_tensor *big = dn_test_from(1, (int64_t[]){2}, (float[]){1e30f, -1e30f});
  dn_tensor *tiny = dn_test_from(1, (int64_t[]){2}, (float[]){1e-30f, 1e-30f});
  dn_tensor *huge = dn_test_from(1, (int64_t[]){3}, (float[]){3e38f, 3e38f, 1});
  DN_OK_OR_FAIL(dn_vector_norm_all(&r, big, 2));
  expect_norm(dn_test_at(r, 0), 1e30 * sqrt(2.0), "big", 2, 0);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_vector_norm_all(&r, tiny, 2));
  expect_norm(dn_test_at(r, 0), 1e-30 * sqrt(2.0), "tiny", 2, 0);
  dn_tensor_release(r);
  /* other p: scaled by the max, so |x|^p may leave the double range */
  DN_OK_OR_FAIL(dn_vector_norm_all(&r, huge, 10));
  expect_norm(dn_test_at(r, 0), 3e38 * pow(2.0, 0.1), "huge", 10, 0);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_vector_norm_all(&r, tiny, 12));
  expect_norm(dn_test_at(r, 0), 1e-30 * pow(2.0, 1 / 12.0), "tiny", 12, 0);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_vector_norm_all(&r, huge, 2));   /* the result itself overflows float32 */
  assert_true(isinf(dn_test_at(r, 0)));
  dn_tensor_release(r);
  /* NaN propagates (and is counted by p = 0); inf gives inf */
  dn_tensor *odd = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, NAN, 2, INFINITY, -1, 0});
  for (size_t k = 0; k < NPS; k++) {
    double p = PS[k];
    DN_OK_OR_FAIL(dn_vector_norm_dim(&r, odd, p, 1, false));
    if (p == 0) {
      assert_true(dn_test_at(r, 0) == 3 && dn_test_at(r, 1) == 2);
    } else {
      assert_true(isnan(dn_test_at(r, 0)));
      assert_true(isinf(dn_test_at(r, 1)));
    }
    dn_tensor_release(r);
  }
  RELEASE(big, tiny, huge, odd);
}

static void test_empty_and_scalar(void **state) {
  (void)state;
  dn_tensor *e, *e03, *s, *r;
  DN_OK_OR_FAIL(dn_tensor_new(&e, DN_F32, 1, (int64_t[]){0}));
  DN_OK_OR_FAIL(dn_tensor_new(&e03, DN_F32, 2, (int64_t[]){0, 3}));
  DN_OK_OR_FAIL(dn_tensor_full(&s, DN_F32, 0, NULL, -2.5));
  for (size_t k = 0; k < NPS; k++) {
    double p = PS[k];
    /* no element: 0 (the inf-norm too, as torch.norm gives) */
    DN_OK_OR_FAIL(dn_vector_norm_all(&r, e, p));
    assert_true(r->ndim == 0 && dn_test_at(r, 0) == 0);
    dn_tensor_release(r);
    DN_OK_OR_FAIL(dn_vector_norm_dim(&r, e03, p, 0, false));
    assert_true(r->ndim == 1 && r->shape[0] == 3);
    for (int i = 0; i < 3; i++) assert_true(dn_test_at(r, i) == 0);
    dn_tensor_release(r);
    DN_OK_OR_FAIL(dn_vector_norm_dim(&r, e03, p, 1, true));
    assert_true(r->ndim == 2 && r->shape[0] == 0 && r->shape[1] == 1);
    dn_tensor_release(r);
    /* 0-dim: |x| (p = 0: 1), over dim 0 or -1 too */
    for (int dim = -2; dim < 1; dim++) {
      if (dim == -2) DN_OK_OR_FAIL(dn_vector_norm_all(&r, s, p));
      else DN_OK_OR_FAIL(dn_vector_norm_dim(&r, s, p, dim, true));
      assert_int_equal(r->ndim, 0);
      assert_true(dn_test_at(r, 0) == (p == 0 ? 1 : 2.5));
      dn_tensor_release(r);
    }
  }
  RELEASE(e, e03, s);
}

/* Every path gives the same bits with 1 and 2 threads. */
static void test_threads(void **state) {
  (void)state;
  int threads = dn_get_num_threads();
  dn_tensor *a = dn_test_random(2, 2, (int64_t[]){300, 500}), *at;
  DN_OK_OR_FAIL(dn_t(&at, a));
  const double ps[] = {2, 1, 3, INFINITY, 0};
  for (int k = 0; k < 5; k++) {
    for (int form = 0; form < 5; form++) {
      dn_tensor *r[2];
      for (int t = 0; t < 2; t++) {
        DN_OK_OR_FAIL(dn_set_num_threads(t + 1));
        switch (form) {
          case 0: DN_OK_OR_FAIL(dn_vector_norm_all(&r[t], a, ps[k])); break;        /* blocks of one long lane */
          case 1: DN_OK_OR_FAIL(dn_vector_norm_dim(&r[t], a, ps[k], 1, false)); break;   /* lanes */
          case 2: DN_OK_OR_FAIL(dn_vector_norm_dim(&r[t], a, ps[k], 0, false)); break;   /* columns */
          case 3: DN_OK_OR_FAIL(dn_vector_norm_all(&r[t], at, ps[k])); break;       /* a copy first */
          case 4: DN_OK_OR_FAIL(dn_vector_norm_dim(&r[t], at, ps[k], 0, false)); break;
        }
      }
      DN_OK_OR_FAIL(dn_set_num_threads(threads));
      assert_memory_equal(dn_tensor_data(r[0]), dn_tensor_data(r[1]), (size_t)dn_tensor_numel(r[0]) * sizeof(float));
      RELEASE(r[0], r[1]);
    }
  }
  RELEASE(a, at);
}

static void test_errors(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(3, 2, (int64_t[]){2, 3}), *i, *r = (dn_tensor *)1;
  DN_OK_OR_FAIL(dn_tensor_zeros(&i, DN_I32, 1, (int64_t[]){3}));
  DN_EXPECT_ERROR(dn_vector_norm_all(&r, i, 2), DN_ETYPE, "norm: input must be float32 (got int32)");
  assert_null(r);
  DN_EXPECT_ERROR(dn_vector_norm_dim(&r, i, 2, 0, false), DN_ETYPE, "norm: input must be float32");
  DN_EXPECT_ERROR(dn_vector_norm_all(&r, a, -1), DN_EINVAL, "norm: p must be >= 0");
  DN_EXPECT_ERROR(dn_vector_norm_all(&r, a, -INFINITY), DN_EINVAL, "(got -inf)");
  DN_EXPECT_ERROR(dn_vector_norm_all(&r, a, NAN), DN_EINVAL, "norm: p must be >= 0");
  DN_EXPECT_ERROR(dn_vector_norm_dim(&r, a, 2, 2, false), DN_EINVAL,
                  "norm: dim 2 out of range for a 2-D tensor of shape [2,3]");
  DN_EXPECT_ERROR(dn_vector_norm_dim(&r, a, 2, -3, true), DN_EINVAL, "norm: dim -3 out of range");
  assert_null(r);
  RELEASE(a, i);
}

/* --- gradients ------------------------------------------------------------------ */

typedef struct norm_case {
  double p;
  int dim;   /* -100: all elements */
  bool keepdim;
} norm_case;

static dn_status f_norm(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const norm_case *c = ctx;
  if (c->dim == -100) return dn_vector_norm_all(out, in[0], c->p);
  return dn_vector_norm_dim(out, in[0], c->p, c->dim, c->keepdim);
}

/* Magnitudes 0.4, 0.65, 0.9, ... each once (7 is prime to the sizes used), random signs: no kink, zero
   or tie within a finite-difference step. */
static dn_tensor *distinct_leaf(uint64_t seed, int ndim, const int64_t *shape, bool noncontiguous) {
  dn_tensor *t = dn_test_random(seed, ndim, shape);
  float *d = dn_tensor_data(t);
  int64_t n = dn_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) d[i] = (d[i] < 0 ? -1.0f : 1.0f) * (0.4f + 0.25f * (float)((i * 7) % n));
  dn_tensor *r = noncontiguous ? dn_test_noncontiguous(t) : dn_tensor_retain(t);
  dn_tensor_release(t);
  DN_OK_OR_FAIL(dn_requires_grad_(r, true));
  return r;
}

static void test_gradients(void **state) {
  (void)state;
  const double ps[] = {1, 2, 3, 0.5, 1.5, 4, INFINITY};
  for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
    for (int nc = 0; nc < 2; nc++) {
      dn_tensor *x = distinct_leaf(10 + k, 3, (int64_t[]){2, 3, 4}, nc);
      char label[64];
      for (int dim = -100; dim < 3; dim = dim == -100 ? -1 : dim + 1) {
        norm_case c = {ps[k], dim, dim == 1};
        snprintf(label, sizeof label, "norm p=%g dim=%d nc=%d", ps[k], dim, nc);
        dn_test_gradcheck(label, f_norm, &c, 1, &x, 1e-2, 2e-3, 2e-4);
      }
      dn_tensor_release(x);
    }
  }
}

static void backward_with(dn_tensor *y, const float *g) {
  dn_tensor *gt = dn_test_from(y->ndim, y->shape, g);
  DN_OK_OR_FAIL(dn_backward(y, gt, false));
  dn_tensor_release(gt);
}

static void expect_gradient(const dn_tensor *x, const float *want, int n) {
  assert_non_null(x->grad);
  for (int i = 0; i < n; i++)
    if (!(fabs(dn_test_at(x->grad, i) - want[i]) <= 1e-6 * (1 + fabs(want[i]))))
      fail_msg("gradient element %d: %.9g, expected %.9g", i, dn_test_at(x->grad, i), want[i]);
}

/* PyTorch 1.13's values at its conventions (printed by the script in tests/spec/tensor_ops_spec.lua). */
static void test_gradient_conventions(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, -3, 3, 0, 0, 0}), *y;
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  /* inf: ties share evenly, with their sign; the zero row's gradient is 0 */
  DN_OK_OR_FAIL(dn_vector_norm_all(&y, x, INFINITY));
  backward_with(y, (float[]){1});
  expect_gradient(x, (float[]){0, -0.5f, 0.5f, 0, 0, 0}, 6);
  RELEASE(y, x->grad);
  x->grad = NULL;
  DN_OK_OR_FAIL(dn_vector_norm_dim(&y, x, INFINITY, 1, false));
  backward_with(y, (float[]){1, 1});
  expect_gradient(x, (float[]){0, -0.5f, 0.5f, 0, 0, 0}, 6);
  RELEASE(y, x->grad);
  x->grad = NULL;
  /* p = 2, 1, 3, 0.5: 0 at a zero norm and at zero elements */
  const struct {
    double p;
    float want[6];
  } rows[] = {{2, {0.22941573f, -0.688247204f, 0.688247204f, 0, 0, 0}},
              {1, {1, -1, 1, 0, 0, 0}},
              {3, {0.0691445842f, -0.62230128f, 0.62230128f, 0, 0, 0}},
              {0.5, {4.46410179f, -2.57735038f, 2.57735038f, 0, 0, 0}},
              {1.5, {0.444422603f, -0.769762516f, 0.769762516f, 0, 0, 0}}};
  for (int k = 0; k < 5; k++) {
    DN_OK_OR_FAIL(dn_vector_norm_dim(&y, x, rows[k].p, 1, false));
    backward_with(y, (float[]){1, 1});
    expect_gradient(x, rows[k].want, 6);
    RELEASE(y, x->grad);
    x->grad = NULL;
  }
  /* p = 0: the result requires grad (as in PyTorch) but no gradient reaches x */
  DN_OK_OR_FAIL(dn_vector_norm_all(&y, x, 0));
  assert_true(y->requires_grad);
  assert_string_equal(dn_grad_fn_name(y), "norm");
  assert_true(dn_test_at(y, 0) == 3);
  DN_OK_OR_FAIL(dn_backward(y, NULL, false));
  assert_null(x->grad);
  dn_tensor_release(y);
  /* the saved input modified in place: backward refuses */
  dn_tensor *w = dn_test_random(5, 1, (int64_t[]){4}), *wc, *n2;
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_mul(&wc, w, w));
  DN_OK_OR_FAIL(dn_vector_norm_all(&n2, wc, 3));
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(wc, 1));
  dn_set_grad_enabled(mode);
  DN_EXPECT_ERROR(dn_backward(n2, NULL, false), DN_EINVAL, "modified in place");
  RELEASE(x, w, wc, n2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_values),
    cmocka_unit_test(test_extremes),
    cmocka_unit_test(test_empty_and_scalar),
    cmocka_unit_test_setup(test_threads, dn_test_reset_modes),
    cmocka_unit_test(test_errors),
    cmocka_unit_test_setup(test_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_gradient_conventions, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
