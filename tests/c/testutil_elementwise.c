/* Helpers shared by the element-wise tests: see testutil_elementwise.h. */
#include "testutil.h"
#include "testutil_elementwise.h"

#include <math.h>

/* --- references and checks ----------------------------------------------------- */

double ref_binary(dn_binop op, double x, double y) {
  switch (op) {
    case DN_ADD: return x + y;
    case DN_SUB: return x - y;
    case DN_MUL: return x * y;
    case DN_DIV: return x / y;
    case DN_POW: return pow(x, y);
    case DN_EQ: return x == y;
    case DN_NE: return x != y;
    case DN_LT: return x < y;
    case DN_LE: return x <= y;
    case DN_GT: return x > y;
    case DN_GE: return x >= y;
    case DN_MAXIMUM: return isnan(x) || isnan(y) ? NAN : x > y ? x : y;
    case DN_MINIMUM: return isnan(x) || isnan(y) ? NAN : x < y ? x : y;
    case DN_BINOP_COUNT: break;
  }
  return NAN;
}

double ref_unary(dn_unop op, double x) {
  switch (op) {
    case DN_NEG: return -x;
    case DN_EXP: return exp(x);
    case DN_LOG: return log(x);
    case DN_SQRT: return sqrt(x);
    case DN_ABS: return fabs(x);
    case DN_RELU: return x < 0 ? 0 : x;
    case DN_SIGMOID: return 1 / (1 + exp(-x));
    case DN_TANH: return tanh(x);
    case DN_UNOP_COUNT: break;
  }
  return NAN;
}

/* Element of t at row-major position i of the broadcast shape (ndim, shape). */
double bcast_at(const dn_tensor *t, int ndim, const int64_t *shape, int64_t i) {
  int64_t off = t->offset;
  for (int d = ndim - 1; d >= 0; d--) {
    int64_t idx = i % shape[d];
    i /= shape[d];
    int td = d - (ndim - t->ndim);
    if (td >= 0 && t->shape[td] != 1) off += idx * t->stride[td];
  }
  switch (t->dtype) {
    case DN_F32: return ((const float *)t->storage->data)[off];
    case DN_I32: return ((const int32_t *)t->storage->data)[off];
    case DN_U8: return ((const uint8_t *)t->storage->data)[off];
  }
  return NAN;
}

/* float32 results within 1e-6 relative (absolute near 0); int32 exact; NaN matches NaN. */
void expect_close(double got, double want, dn_dtype dtype, const char *what, int64_t i) {
  if (isnan(want) && isnan(got)) return;
  if (got == want) return;
  if (dtype == DN_F32 && fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want))) return;
  fail_msg("%s: element %lld is %.9g, expected %.9g", what, (long long)i, got, want);
}

void expect_shape(const dn_tensor *t, int ndim, const int64_t *shape) {
  char got[128];
  assert_int_equal(t->ndim, ndim);
  for (int d = 0; d < ndim; d++)
    if (t->shape[d] != shape[d]) fail_msg("shape %s, dim %d should be %lld", dn_shape_str(t, got, sizeof got), d,
                                          (long long)shape[d]);
}

/* Runs dn_binary and checks every element against the reference. */
void check_binary(dn_binop op, const dn_tensor *a, const dn_tensor *b, dn_dtype want_dtype) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_binary(&out, op, a, b));
  int ndim;
  int64_t shape[DN_MAX_DIMS];
  DN_OK_OR_FAIL(dn_broadcast_shape("test", a, b, &ndim, shape));
  expect_shape(out, ndim, shape);
  assert_true(dn_tensor_is_contiguous(out));
  if (out->dtype != want_dtype)
    fail_msg("%s: dtype %s, expected %s", dn_binop_name(op), dn_dtype_name(out->dtype), dn_dtype_name(want_dtype));
  for (int64_t i = 0; i < dn_tensor_numel(out); i++)
    expect_close(dn_test_at(out, i), ref_binary(op, bcast_at(a, ndim, shape, i), bcast_at(b, ndim, shape, i)),
                 out->dtype, dn_binop_name(op), i);
  dn_tensor_release(out);
}

void check_unary(dn_unop op, const dn_tensor *a, dn_dtype want_dtype) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_unary(&out, op, a));
  expect_shape(out, a->ndim, a->shape);
  assert_int_equal(out->dtype, want_dtype);
  for (int64_t i = 0; i < dn_tensor_numel(out); i++)
    expect_close(dn_test_at(out, i), ref_unary(op, dn_test_at(a, i)), out->dtype, dn_unop_name(op), i);
  dn_tensor_release(out);
}

/* --- forward inputs ------------------------------------------------------------- */

dn_tensor *from_ints(int ndim, const int64_t *shape, const int32_t *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_I32, ndim, shape, values));
  return t;
}

/* Random small integers in [-limit, limit]. */
dn_tensor *random_ints(uint64_t seed, int ndim, const int64_t *shape, int limit) {
  dn_tensor *f = dn_test_random(seed, ndim, shape), *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_I32, ndim, shape));
  int32_t *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) d[i] = (int32_t)lround(dn_test_at(f, i) / 2 * limit);
  dn_tensor_release(f);
  return t;
}

/* |t| + 0.1, so pow/log/sqrt have real results. */
dn_tensor *positive(uint64_t seed, int ndim, const int64_t *shape) {
  dn_tensor *t = dn_test_random(seed, ndim, shape);
  float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) d[i] = fabsf(d[i]) + 0.1f;
  return t;
}

dn_tensor *scalar_f32(float v) {
  return dn_test_from(0, NULL, (float[]){v});
}

/* --- gradient inputs and checks --------------------------------------------------- */

static float shape_value(value_kind kind, float v, int64_t i) {
  switch (kind) {
    case ANY: return v;
    case AWAY_FROM_ZERO: return v < 0 ? -0.2f + 0.9f * v : 0.2f + 0.9f * v;
    case POSITIVE: return 0.3f + 0.4f * fabsf(v) * 2.0f;
    case LATTICE_A: return -1.5f + 0.6f * (float)((i * 7 + 3) % 6);
    case LATTICE_B: return -1.2f + 0.6f * (float)((i * 5 + 1) % 6);
  }
  return v;
}

/* A float32 leaf of the given kind, contiguous or not, requiring grad or not. */
dn_tensor *input(uint64_t seed, int ndim, const int64_t *shape, value_kind kind, bool noncontiguous,
                 bool requires_grad) {
  dn_tensor *t = dn_test_random(seed, ndim, shape);
  float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) d[i] = shape_value(kind, d[i], i);
  if (noncontiguous) {
    dn_tensor *nc = dn_test_noncontiguous(t);
    dn_tensor_release(t);
    t = nc;
  }
  if (requires_grad) DN_OK_OR_FAIL(dn_requires_grad_(t, true));
  return t;
}

void release_all(dn_tensor **list, int n) {
  for (int i = 0; i < n; i++) dn_tensor_release(list[i]);
}

/* Every input element perturbed by 1e-3; tolerance 1e-2, relative and absolute. */
void gradcheck(const char *label, dn_test_fn f, const void *ctx, int n, dn_tensor *const *in) {
  dn_test_gradcheck(label, f, ctx, n, in, 1e-3, 1e-2, 1e-2);
}

/* Exact values at the points where PyTorch defines the derivative by convention. */
void expect_grad(const dn_tensor *t, const float *want, int n) {
  assert_non_null(t->grad);
  for (int i = 0; i < n; i++) {
    double got = dn_test_at(t->grad, i);
    if (!(got == want[i] || (isnan(got) && isnan(want[i]))))
      fail_msg("gradient element %d: %.9g, expected %.9g", i, got, (double)want[i]);
  }
}

dn_tensor *leaf_of(int n, const float *values) {
  int64_t shape = n;
  dn_tensor *t = dn_test_from(1, &shape, values);
  DN_OK_OR_FAIL(dn_requires_grad_(t, true));
  return t;
}

void backward_ones(dn_tensor *y) {
  dn_tensor *ones;
  DN_OK_OR_FAIL(dn_tensor_ones(&ones, DN_F32, y->ndim, y->shape));
  DN_OK_OR_FAIL(dn_backward(y, ones, false));
  dn_tensor_release(ones);
}
