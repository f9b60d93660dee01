/* Helpers shared by the reduction tests (test_reduce.c, test_reduce_engine.c):
   a naive reference of every reduction, checks of a whole result against it,
   input makers, and the gradient of one reduction case. Linked into those two
   programs only (tests/CMakeLists.txt). */
#include "testutil.h"
#include "testutil_reduce.h"

#include <math.h>

void release_all(dn_tensor **list, size_t n) {
  for (size_t i = 0; i < n; i++) dn_tensor_release(list[i]);
}

double scalar(const dn_tensor *t) {
  assert_int_equal(t->ndim, 0);
  return dn_test_at(t, 0);
}

dn_tensor *ints_from(int ndim, const int64_t *shape, const int32_t *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_I32, ndim, shape, values));
  return t;
}

/* Random int32 values in [-50, 50]. */
dn_tensor *random_ints(uint64_t seed, int ndim, const int64_t *shape) {
  dn_tensor *f = dn_test_random(seed, ndim, shape), *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_I32, ndim, shape));
  int32_t *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(f); i++) d[i] = (int32_t)lround(dn_test_at(f, i) * 25);
  dn_tensor_release(f);
  return t;
}

/* Reference of one reduction over `count` values read with dn_test_at at
   positions first + k * step. Returns the value; *at gets the max/min index. */
double reference(const dn_tensor *a, int64_t first, int64_t step, int64_t count, kind k, int correction,
                 int64_t *at) {
  long double sum = 0;
  for (int64_t i = 0; i < count; i++) sum += dn_test_at(a, first + i * step);
  switch (k) {
    case SUM: return (double)sum;
    case MEAN: return count ? (double)(sum / count) : NAN;
    case VAR:
    case STD: {
      if (count - correction <= 0) return NAN;
      long double mean = sum / count, m2 = 0;
      for (int64_t i = 0; i < count; i++) {
        long double d = dn_test_at(a, first + i * step) - mean;
        m2 += d * d;
      }
      double v = (double)(m2 / (count - correction));
      return k == STD ? sqrt(v) : v;
    }
    case MAX:
    case MIN: {
      double best = dn_test_at(a, first);
      *at = 0;
      for (int64_t i = 1; i < count && !isnan(best); i++) {
        double x = dn_test_at(a, first + i * step);
        if (isnan(x) || (k == MAX ? x > best : x < best)) {
          best = x;
          *at = i;
        }
      }
      return best;
    }
  }
  return 0;
}

bool close_enough(double got, double want, double tol) {
  if (isnan(want)) return isnan(got);
  return fabs(got - want) <= tol * (1 + fabs(want));
}

dn_dtype expected_dtype(kind k, dn_dtype in) {
  if (k == SUM) return in == DN_F32 ? DN_F32 : DN_I32;
  if (k == MAX || k == MIN) return in;
  return DN_F32;
}

/* Runs a dim reduction and checks shape, dtype, values and indices. */
void check_dim(const dn_tensor *a, kind k, int dim, bool keepdim, int correction, int64_t base) {
  dn_tensor *v = NULL, *idx = NULL;
  switch (k) {
    case SUM: DN_OK_OR_FAIL(dn_sum_dim(&v, a, dim, keepdim)); break;
    case MEAN: DN_OK_OR_FAIL(dn_mean_dim(&v, a, dim, keepdim)); break;
    case VAR: DN_OK_OR_FAIL(dn_var_dim(&v, a, dim, keepdim, correction)); break;
    case STD: DN_OK_OR_FAIL(dn_std_dim(&v, a, dim, keepdim, correction)); break;
    case MAX: DN_OK_OR_FAIL(dn_max_dim(&v, &idx, a, dim, keepdim, base)); break;
    case MIN: DN_OK_OR_FAIL(dn_min_dim(&v, &idx, a, dim, keepdim, base)); break;
  }
  int d = dim < 0 ? dim + a->ndim : dim;
  int64_t outer = 1, inner = 1, n = a->ndim ? a->shape[d] : 1;
  for (int e = 0; e < d; e++) outer *= a->shape[e];
  for (int e = d + 1; e < a->ndim; e++) inner *= a->shape[e];

  /* shape: kept dims, the reduced one as 1 with keepdim */
  assert_int_equal(v->dtype, expected_dtype(k, a->dtype));
  assert_int_equal(v->ndim, a->ndim == 0 ? 0 : keepdim ? a->ndim : a->ndim - 1);
  for (int e = 0, o = 0; e < a->ndim; e++) {
    if (e == d && !keepdim) continue;
    assert_int_equal(v->shape[o], e == d ? 1 : a->shape[e]);
    o++;
  }
  if (idx) {
    assert_int_equal(idx->dtype, DN_I32);
    assert_true(dn_same_shape(idx, v));
  }
  double tol = a->dtype == DN_F32 || k != SUM ? 2e-6 : 0;
  for (int64_t q = 0; q < outer; q++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t at = -1, j = q * inner + i;
      double want = reference(a, q * n * inner + i, inner, n, k, correction, &at);
      double got = dn_test_at(v, j);
      if (!close_enough(got, want, tol))
        fail_msg("kind %d dim %d output %lld: got %.9g, want %.9g", (int)k, dim, (long long)j, got, want);
      if (idx && (int64_t)dn_test_at(idx, j) != at + base)
        fail_msg("kind %d dim %d output %lld: index %g, want %lld", (int)k, dim, (long long)j, dn_test_at(idx, j),
                 (long long)(at + base));
    }
  RELEASE(v, idx);
}

/* Every kind over every dim (positive and negative), with and without keepdim. */
void check_all_dims(const dn_tensor *a) {
  for (int k = SUM; k <= MIN; k++)
    for (int dim = a->ndim ? -a->ndim : -1; dim < (a->ndim ? a->ndim : 1); dim++)
      for (int keep = 0; keep < 2; keep++) {
        check_dim(a, (kind)k, dim, keep, 1, keep);   /* base 1 with keepdim, 0 without */
        if (k == VAR || k == STD) check_dim(a, (kind)k, dim, keep, 0, 0);
      }
}

/* An all-element reduction checked against the reference. */
void check_all(const dn_tensor *a, kind k, int correction) {
  dn_tensor *r = NULL;
  switch (k) {
    case SUM: DN_OK_OR_FAIL(dn_sum_all(&r, a)); break;
    case MEAN: DN_OK_OR_FAIL(dn_mean_all(&r, a)); break;
    case VAR: DN_OK_OR_FAIL(dn_var_all(&r, a, correction)); break;
    case STD: DN_OK_OR_FAIL(dn_std_all(&r, a, correction)); break;
    case MAX: DN_OK_OR_FAIL(dn_max_all(&r, a)); break;
    case MIN: DN_OK_OR_FAIL(dn_min_all(&r, a)); break;
  }
  assert_int_equal(r->ndim, 0);
  assert_int_equal(r->dtype, expected_dtype(k, a->dtype));
  int64_t at = -1;
  double want = reference(a, 0, 1, dn_tensor_numel(a), k, correction, &at);
  if (!close_enough(scalar(r), want, 2e-6)) fail_msg("kind %d: got %.9g, want %.9g", (int)k, scalar(r), want);
  dn_tensor_release(r);
  if (k == MAX || k == MIN) {
    for (int64_t base = 0; base < 2; base++) {
      DN_OK_OR_FAIL(k == MAX ? dn_argmax_all(&r, a, base) : dn_argmin_all(&r, a, base));
      assert_int_equal(r->dtype, DN_I32);
      assert_int_equal((int64_t)scalar(r), at + base);
      dn_tensor_release(r);
    }
  }
}

void check_every_all(const dn_tensor *a) {
  for (int k = SUM; k <= MIN; k++) check_all(a, (kind)k, 1);
  check_all(a, VAR, 0);
  check_all(a, STD, 0);
}

const char *const op_names[6] = {"sum", "mean", "var", "std", "max", "min"};

dn_status reduce_op(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
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

/* Gradient of op on x for the output gradient g (x becomes a leaf that requires grad). */
dn_tensor *grad_of(const reduce_case *c, dn_tensor *x, const dn_tensor *g) {
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
