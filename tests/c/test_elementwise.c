/* Element-wise ops against naive double-precision loops: broadcasting, dtypes, in-place, NaN/inf, threads. */
#include "testutil.h"

#include <math.h>
#include <string.h>
#include <stdio.h>
#include "graph.h"

#define ALL_BINOPS 13
#define ALL_UNOPS 8

/* --- reference -------------------------------------------------------------- */

static double ref_binary(dn_binop op, double x, double y) {
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

static double ref_unary(dn_unop op, double x) {
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
static double bcast_at(const dn_tensor *t, int ndim, const int64_t *shape, int64_t i) {
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
static void expect_close(double got, double want, dn_dtype dtype, const char *what, int64_t i) {
  if (isnan(want) && isnan(got)) return;
  if (got == want) return;
  if (dtype == DN_F32 && fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want))) return;
  fail_msg("%s: element %lld is %.9g, expected %.9g", what, (long long)i, got, want);
}

static void expect_shape(const dn_tensor *t, int ndim, const int64_t *shape) {
  char got[128];
  assert_int_equal(t->ndim, ndim);
  for (int d = 0; d < ndim; d++)
    if (t->shape[d] != shape[d]) fail_msg("shape %s, dim %d should be %lld", dn_shape_str(t, got, sizeof got), d,
                                          (long long)shape[d]);
}

/* Runs dn_binary and checks every element against the reference. */
static void check_binary(dn_binop op, const dn_tensor *a, const dn_tensor *b, dn_dtype want_dtype) {
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

static void check_unary(dn_unop op, const dn_tensor *a, dn_dtype want_dtype) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_unary(&out, op, a));
  expect_shape(out, a->ndim, a->shape);
  assert_int_equal(out->dtype, want_dtype);
  for (int64_t i = 0; i < dn_tensor_numel(out); i++)
    expect_close(dn_test_at(out, i), ref_unary(op, dn_test_at(a, i)), out->dtype, dn_unop_name(op), i);
  dn_tensor_release(out);
}

static dn_tensor *from_ints(int ndim, const int64_t *shape, const int32_t *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_I32, ndim, shape, values));
  return t;
}

/* Random small integers in [-limit, limit]. */
static dn_tensor *random_ints(uint64_t seed, int ndim, const int64_t *shape, int limit) {
  dn_tensor *f = dn_test_random(seed, ndim, shape), *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_I32, ndim, shape));
  int32_t *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) d[i] = (int32_t)lround(dn_test_at(f, i) / 2 * limit);
  dn_tensor_release(f);
  return t;
}

/* A second operand that equals a at every third element, so eq/ne/le/ge see ties. */
static dn_tensor *with_ties(uint64_t seed, const dn_tensor *a) {
  dn_tensor *b = dn_test_random(seed, a->ndim, a->shape);
  float *d = dn_tensor_data(b);
  for (int64_t i = 0; i < dn_tensor_numel(b); i += 3) d[i] = (float)dn_test_at(a, i);
  return b;
}

/* |t| + 0.1, so pow/log/sqrt have real results. */
static dn_tensor *positive(uint64_t seed, int ndim, const int64_t *shape) {
  dn_tensor *t = dn_test_random(seed, ndim, shape);
  float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) d[i] = fabsf(d[i]) + 0.1f;
  return t;
}

static dn_tensor *scalar_f32(float v) {
  return dn_test_from(0, NULL, (float[]){v});
}

/* --- names and broadcast shapes ------------------------------------------------ */

static void test_names(void **state) {
  (void)state;
  const char *bin[ALL_BINOPS] = {"add", "sub", "mul", "div", "pow", "eq", "ne",
                                 "lt", "le", "gt", "ge", "maximum", "minimum"};
  const char *un[ALL_UNOPS] = {"neg", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh"};
  for (int op = 0; op < ALL_BINOPS; op++) assert_string_equal(dn_binop_name((dn_binop)op), bin[op]);
  for (int op = 0; op < ALL_UNOPS; op++) assert_string_equal(dn_unop_name((dn_unop)op), un[op]);
  assert_string_equal(dn_binop_name((dn_binop)99), "unknown");
  assert_string_equal(dn_unop_name((dn_unop)-1), "unknown");
}

static void expect_broadcast(int na, const int64_t *sa, int nb, const int64_t *sb, int nwant,
                             const int64_t *want) {
  dn_tensor *a, *b;
  DN_OK_OR_FAIL(dn_tensor_zeros(&a, DN_F32, na, sa));
  DN_OK_OR_FAIL(dn_tensor_zeros(&b, DN_F32, nb, sb));
  int ndim = -1;
  int64_t shape[DN_MAX_DIMS];
  DN_OK_OR_FAIL(dn_broadcast_shape("add", a, b, &ndim, shape));
  assert_int_equal(ndim, nwant);
  for (int d = 0; d < nwant; d++) assert_int_equal(shape[d], want[d]);
  DN_OK_OR_FAIL(dn_broadcast_shape("add", b, a, &ndim, shape));   /* symmetric */
  assert_int_equal(ndim, nwant);
  for (int d = 0; d < nwant; d++) assert_int_equal(shape[d], want[d]);
  dn_tensor_release(a);
  dn_tensor_release(b);
}

static void test_broadcast_shape(void **state) {
  (void)state;
  expect_broadcast(2, (int64_t[]){3, 1}, 2, (int64_t[]){1, 4}, 2, (int64_t[]){3, 4});
  expect_broadcast(2, (int64_t[]){2, 3}, 1, (int64_t[]){3}, 2, (int64_t[]){2, 3});
  expect_broadcast(0, NULL, 2, (int64_t[]){2, 3}, 2, (int64_t[]){2, 3});
  expect_broadcast(0, NULL, 0, NULL, 0, NULL);
  expect_broadcast(2, (int64_t[]){0, 3}, 2, (int64_t[]){1, 3}, 2, (int64_t[]){0, 3});
  expect_broadcast(1, (int64_t[]){0}, 1, (int64_t[]){1}, 1, (int64_t[]){0});
  expect_broadcast(3, (int64_t[]){4, 1, 3}, 2, (int64_t[]){2, 1}, 3, (int64_t[]){4, 2, 3});

  dn_tensor *a, *b, *c, *out = (dn_tensor *)1;
  int ndim;
  int64_t shape[DN_MAX_DIMS];
  DN_OK_OR_FAIL(dn_tensor_zeros(&a, DN_F32, 2, (int64_t[]){2, 3}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&b, DN_F32, 1, (int64_t[]){4}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&c, DN_F32, 2, (int64_t[]){0, 2}));
  DN_EXPECT_ERROR(dn_broadcast_shape("add", a, b, &ndim, shape), DN_ESHAPE,
                  "add: shapes [2,3] and [4] cannot be broadcast (dim 2: 3 vs 4)");
  DN_EXPECT_ERROR(dn_add(&out, a, b), DN_ESHAPE, "add: shapes [2,3] and [4] cannot be broadcast (dim 2: 3 vs 4)");
  assert_null(out);
  DN_EXPECT_ERROR(dn_binary(&out, DN_GE, b, a), DN_ESHAPE, "ge: shapes [4] and [2,3] cannot be broadcast (dim 2: 4 vs 3)");
  DN_EXPECT_ERROR(dn_mul(&out, a, c), DN_ESHAPE, "mul: shapes [2,3] and [0,2] cannot be broadcast (dim 1: 2 vs 0)");
  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(c);
}

/* --- binary ------------------------------------------------------------------------ */

static void test_binary_all_ops_contiguous(void **state) {
  (void)state;
  int64_t shape[2] = {5, 7};
  dn_tensor *a = dn_test_random(1, 2, shape), *b = with_ties(2, a);
  dn_tensor *base = positive(3, 2, shape);
  for (int op = 0; op < ALL_BINOPS; op++) {
    check_binary((dn_binop)op, a, b, DN_F32);
    check_binary((dn_binop)op, b, a, DN_F32);
  }
  check_binary(DN_POW, base, a, DN_F32);   /* real results everywhere */
  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(base);
}

static void test_binary_broadcast_and_noncontiguous(void **state) {
  (void)state;
  struct { int na; int64_t sa[3]; int nb; int64_t sb[3]; } cases[] = {
    {2, {3, 1}, 2, {1, 4}},  {2, {2, 3}, 1, {3}},        {0, {0}, 2, {2, 3}},  {2, {2, 3}, 0, {0}},
    {3, {4, 1, 3}, 2, {2, 1}}, {2, {0, 3}, 2, {1, 3}},  {2, {4, 5}, 2, {4, 5}}, {3, {2, 3, 4}, 3, {2, 3, 1}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    dn_tensor *a = dn_test_random(10 + c, cases[c].na, cases[c].sa);
    dn_tensor *b = dn_test_random(20 + c, cases[c].nb, cases[c].sb);
    dn_tensor *an = dn_test_noncontiguous(a), *bn = dn_test_noncontiguous(b);
    for (int op = 0; op < ALL_BINOPS; op++) {
      check_binary((dn_binop)op, a, b, DN_F32);
      check_binary((dn_binop)op, an, b, DN_F32);
      check_binary((dn_binop)op, a, bn, DN_F32);
      check_binary((dn_binop)op, bn, an, DN_F32);
    }
    dn_tensor_release(a);
    dn_tensor_release(b);
    dn_tensor_release(an);
    dn_tensor_release(bn);
  }

  /* narrowed and transposed views, an expanded (stride-0) operand */
  dn_tensor *big = dn_test_random(30, 2, (int64_t[]){6, 8}), *narrow, *tr, *row, *expanded;
  DN_OK_OR_FAIL(dn_narrow(&narrow, big, 1, 2, 5));                  /* [6,5], row stride 8 */
  DN_OK_OR_FAIL(dn_narrow(&row, big, 0, 1, 1));                     /* [1,8] */
  DN_OK_OR_FAIL(dn_broadcast_to(&expanded, row, 2, (int64_t[]){5, 8}));   /* [5,8], stride 0 */
  dn_tensor *sq = dn_test_random(31, 2, (int64_t[]){8, 5});
  DN_OK_OR_FAIL(dn_t(&tr, sq));                                     /* [5,8] transposed */
  for (int op = 0; op < ALL_BINOPS; op++) {
    check_binary((dn_binop)op, narrow, narrow, DN_F32);
    check_binary((dn_binop)op, tr, expanded, DN_F32);
    check_binary((dn_binop)op, expanded, tr, DN_F32);
  }
  dn_tensor_release(big);
  dn_tensor_release(narrow);
  dn_tensor_release(row);
  dn_tensor_release(expanded);
  dn_tensor_release(sq);
  dn_tensor_release(tr);
}

/* Shapes whose rows get merged ([N,C,H,W] + [C,1,1]) or are one element long. */
static void test_binary_row_shapes(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(40, 4, (int64_t[]){2, 3, 4, 5}), *bias = dn_test_random(41, 3, (int64_t[]){3, 1, 1});
  dn_tensor *xn = dn_test_noncontiguous(x);
  check_binary(DN_ADD, x, bias, DN_F32);
  check_binary(DN_SUB, bias, xn, DN_F32);
  dn_tensor *col = dn_test_random(42, 2, (int64_t[]){6, 1}), *coln = dn_test_noncontiguous(col);
  check_binary(DN_MUL, col, coln, DN_F32);
  check_binary(DN_MAXIMUM, coln, coln, DN_F32);
  dn_tensor *u = dn_test_random(43, 3, (int64_t[]){1, 4, 1}), *v = dn_test_random(44, 3, (int64_t[]){3, 1, 2});
  check_binary(DN_DIV, u, v, DN_F32);
  dn_tensor_release(x);
  dn_tensor_release(xn);
  dn_tensor_release(bias);
  dn_tensor_release(col);
  dn_tensor_release(coln);
  dn_tensor_release(u);
  dn_tensor_release(v);
}

static void test_binary_bad_input(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(50, 1, (int64_t[]){3}), *mask, *out = (dn_tensor *)1;
  DN_OK_OR_FAIL(dn_tensor_zeros(&mask, DN_U8, 1, (int64_t[]){3}));
  DN_EXPECT_ERROR(dn_binary(&out, (dn_binop)42, a, a), DN_EINVAL, "unknown op 42");
  assert_null(out);
  out = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_add(&out, a, mask), DN_ETYPE, "add: uint8 tensors are not supported");
  assert_null(out);
  DN_EXPECT_ERROR(dn_sub(&out, mask, a), DN_ETYPE, "sub: uint8");
  DN_EXPECT_ERROR(dn_binary_scalar(&out, DN_MUL, mask, 2, false), DN_ETYPE, "mul: uint8");
  DN_EXPECT_ERROR(dn_binary_scalar(&out, (dn_binop)-1, a, 2, false), DN_EINVAL, "unknown op");
  DN_EXPECT_ERROR(dn_binary_(a, (dn_binop)13, a), DN_EINVAL, "unknown op");
  DN_EXPECT_ERROR(dn_binary_scalar_(mask, DN_ADD, 1), DN_ETYPE, "add_: uint8");
  DN_EXPECT_ERROR(dn_unary(&out, (dn_unop)8, a), DN_EINVAL, "unknown op 8");
  DN_EXPECT_ERROR(dn_unary(&out, DN_EXP, mask), DN_ETYPE, "exp: uint8");
  DN_EXPECT_ERROR(dn_unary_(mask, DN_NEG), DN_ETYPE, "neg_: uint8");
  DN_EXPECT_ERROR(dn_unary_(a, (dn_unop)100), DN_EINVAL, "unknown op");
  dn_tensor_release(a);
  dn_tensor_release(mask);
}

/* --- dtypes --------------------------------------------------------------------------- */

static void test_int32_semantics(void **state) {
  (void)state;
  int64_t shape[2] = {4, 5};
  dn_tensor *a = random_ints(60, 2, shape, 9), *b = random_ints(61, 2, shape, 9);
  dn_tensor *an = dn_test_noncontiguous(a), *f = dn_test_random(62, 1, (int64_t[]){5});
  /* int op int stays int except div; comparisons give int 0/1; mixed gives float */
  for (int op = 0; op < ALL_BINOPS; op++) {
    if (op == DN_POW) continue;
    check_binary((dn_binop)op, a, b, op == DN_DIV ? DN_F32 : DN_I32);
    check_binary((dn_binop)op, an, b, op == DN_DIV ? DN_F32 : DN_I32);
    check_binary((dn_binop)op, a, f, DN_F32);
    check_binary((dn_binop)op, f, an, DN_F32);
  }

  dn_tensor *x = from_ints(1, (int64_t[]){6}, (int32_t[]){7, -7, 0, 0, INT32_MAX, INT32_MIN});
  dn_tensor *y = from_ints(1, (int64_t[]){6}, (int32_t[]){2, 2, 0, 3, 1, -1});
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_div(&out, x, y));   /* true division */
  assert_int_equal(out->dtype, DN_F32);
  assert_true(dn_test_at(out, 0) == 3.5 && dn_test_at(out, 1) == -3.5);
  assert_true(isnan(dn_test_at(out, 2)) && dn_test_at(out, 3) == 0);
  dn_tensor_release(out);
  /* int32 results that do not fit are an error naming the op (PyTorch wraps around) */
  out = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_add(&out, x, y), DN_ERANGE, "add: int32 overflow: 2147483647 + 1 is outside the int32 range");
  assert_null(out);
  DN_EXPECT_ERROR(dn_binary(&out, DN_MUL, x, y), DN_ERANGE, "mul: int32 overflow: -2147483648 * -1");
  DN_EXPECT_ERROR(dn_binary_scalar(&out, DN_SUB, x, 1, false), DN_ERANGE, "sub: int32 overflow: -2147483648 - 1");
  DN_EXPECT_ERROR(dn_binary_scalar(&out, DN_SUB, x, 2, true), DN_ERANGE, "sub: int32 overflow: 2 - -2147483648");
  DN_EXPECT_ERROR(dn_binary_scalar(&out, DN_ADD, x, -1, false), DN_ERANGE, "add: int32 overflow: -2147483648 + -1");
  DN_EXPECT_ERROR(dn_binary_scalar(&out, DN_MUL, x, 2, true), DN_ERANGE, "mul: int32 overflow: 2 * 2147483647");
  /* in place: the error leaves the tensor as it was */
  uint32_t version = x->storage->version;
  DN_EXPECT_ERROR(dn_binary_scalar_(x, DN_ADD, 1), DN_ERANGE, "add_: int32 overflow: 2147483647 + 1");
  DN_EXPECT_ERROR(dn_binary_(x, DN_MUL, y), DN_ERANGE, "mul_: int32 overflow");
  assert_true(dn_test_at(x, 0) == 7 && dn_test_at(x, 4) == INT32_MAX && dn_test_at(x, 5) == INT32_MIN);
  assert_int_equal(x->storage->version, version);
  /* the limits themselves are fine, in place too */
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_SUB, x, 0, false));
  assert_true(dn_test_at(out, 4) == INT32_MAX && dn_test_at(out, 5) == INT32_MIN);
  dn_tensor_release(out);
  out = from_ints(1, (int64_t[]){3}, (int32_t[]){7, INT32_MAX, -INT32_MAX});
  DN_OK_OR_FAIL(dn_binary_scalar_(out, DN_MUL, -1));
  assert_true(dn_test_at(out, 0) == -7 && dn_test_at(out, 1) == -INT32_MAX && dn_test_at(out, 2) == INT32_MAX);
  assert_true(out->storage->version > 0);
  dn_tensor_release(out);
  /* a large tensor (several threads) with one overflow near the end, broadcast operand */
  int64_t n = 200000;
  dn_tensor *big;
  DN_OK_OR_FAIL(dn_tensor_arange(&big, DN_I32, 0, (double)n, 1));
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_MUL, big, 10000, false));   /* up to 2e9: fits */
  assert_true(dn_test_at(out, n - 1) == (double)(n - 1) * 10000);
  dn_tensor_release(out);
  DN_EXPECT_ERROR(dn_binary_scalar(&out, DN_MUL, big, 20000, false), DN_ERANGE, "mul: int32 overflow");
  /* every element from 107375 on overflows: the message quotes that one, whatever the thread count */
  int before = dn_get_num_threads();
  for (int threads = 1; threads <= 4; threads++) {
    DN_OK_OR_FAIL(dn_set_num_threads(threads));
    DN_EXPECT_ERROR(dn_binary_scalar(&out, DN_MUL, big, 20000, false), DN_ERANGE, "mul: int32 overflow: 107375 * 20000");
  }
  DN_OK_OR_FAIL(dn_set_num_threads(before));
  dn_tensor_release(big);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_DIV, x, 0, false));
  assert_true(dn_test_at(out, 0) == INFINITY && dn_test_at(out, 1) == -INFINITY);
  dn_tensor_release(out);

  /* scalars: integral stays int, non-integral or out of int32 range makes float */
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_ADD, a, 2, false));
  assert_int_equal(out->dtype, DN_I32);
  for (int64_t i = 0; i < 20; i++) assert_true(dn_test_at(out, i) == dn_test_at(a, i) + 2);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_ADD, a, 0.5, false));
  assert_int_equal(out->dtype, DN_F32);
  for (int64_t i = 0; i < 20; i++) assert_true(dn_test_at(out, i) == dn_test_at(a, i) + 0.5);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_MUL, a, 3e9, false));
  assert_int_equal(out->dtype, DN_F32);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_LT, a, 0, false));
  assert_int_equal(out->dtype, DN_I32);
  for (int64_t i = 0; i < 20; i++) assert_true(dn_test_at(out, i) == (dn_test_at(a, i) < 0));
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_LT, a, 0.5, false));
  assert_int_equal(out->dtype, DN_F32);
  for (int64_t i = 0; i < 20; i++) assert_true(dn_test_at(out, i) == (dn_test_at(a, i) < 0.5));
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_DIV, a, 2, false));
  assert_int_equal(out->dtype, DN_F32);
  dn_tensor_release(out);

  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(an);
  dn_tensor_release(f);
  dn_tensor_release(x);
  dn_tensor_release(y);
}

static void test_int32_pow(void **state) {
  (void)state;
  dn_tensor *base = from_ints(1, (int64_t[]){7}, (int32_t[]){3, -2, 0, 7, 2, -1, 5});
  dn_tensor *exponent = from_ints(1, (int64_t[]){7}, (int32_t[]){4, 3, 0, 0, 30, 5, 2});
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_binary(&out, DN_POW, base, exponent));
  assert_int_equal(out->dtype, DN_I32);
  double want[7] = {81, -8, 1, 1, 1 << 30, -1, 25};
  for (int i = 0; i < 7; i++) assert_true(dn_test_at(out, i) == want[i]);
  dn_tensor_release(out);
  /* exactly at the limit fits; one past it is an error, not a wrap-around */
  dn_tensor *edge_base = from_ints(1, (int64_t[]){3}, (int32_t[]){-2, 46340, 1});
  dn_tensor *edge_exp = from_ints(1, (int64_t[]){3}, (int32_t[]){31, 2, INT32_MAX});
  DN_OK_OR_FAIL(dn_binary(&out, DN_POW, edge_base, edge_exp));
  assert_true(dn_test_at(out, 0) == INT32_MIN && dn_test_at(out, 1) == 46340.0 * 46340.0 && dn_test_at(out, 2) == 1);
  dn_tensor_release(out);
  dn_tensor *three = from_ints(1, (int64_t[]){3}, (int32_t[]){1, 3, 2});
  DN_EXPECT_ERROR(dn_binary(&out, DN_POW, three, edge_exp), DN_ERANGE, "pow: int32 overflow: 2 ^ 2147483647");
  DN_EXPECT_ERROR(dn_binary_scalar(&out, DN_POW, edge_base, 3, false), DN_ERANGE, "pow: int32 overflow: 46340 ^ 3");
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_POW, three, 31, true));   /* 31^1, 31^3, 31^2 */
  assert_true(dn_test_at(out, 1) == 29791);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_POW, three, 1290, true));   /* 1290^3 = 2146689000 fits */
  dn_tensor_release(out);
  DN_EXPECT_ERROR(dn_binary_scalar(&out, DN_POW, three, 1291, true), DN_ERANGE, "pow: int32 overflow: 1291 ^ 3");
  dn_tensor_release(three);
  dn_tensor_release(edge_base);
  dn_tensor_release(edge_exp);

  /* a negative exponent makes the result float32 */
  dn_tensor *negative = from_ints(1, (int64_t[]){7}, (int32_t[]){1, 2, -1, 0, 1, 1, -2});
  DN_OK_OR_FAIL(dn_binary(&out, DN_POW, base, negative));
  assert_int_equal(out->dtype, DN_F32);
  assert_true(dn_test_at(out, 6) == 0.04f && dn_test_at(out, 2) == INFINITY && dn_test_at(out, 1) == 4);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_POW, base, -1, false));
  assert_int_equal(out->dtype, DN_F32);
  assert_true(dn_test_at(out, 4) == 0.5);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_POW, base, 2, false));
  assert_int_equal(out->dtype, DN_I32);
  assert_true(dn_test_at(out, 1) == 4);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_POW, exponent, 2, true));   /* 2 ** t */
  assert_int_equal(out->dtype, DN_I32);
  assert_true(dn_test_at(out, 0) == 16 && dn_test_at(out, 2) == 1);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_POW, negative, 2, true));   /* 2 ** t, t has negatives */
  assert_int_equal(out->dtype, DN_F32);
  assert_true(dn_test_at(out, 6) == 0.25);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_POW, base, 0.5, false));
  assert_int_equal(out->dtype, DN_F32);
  dn_tensor_release(out);
  dn_tensor_release(base);
  dn_tensor_release(exponent);
  dn_tensor_release(negative);
}

/* --- scalars ---------------------------------------------------------------------------- */

static void test_scalar_ops(void **state) {
  (void)state;
  int64_t shape[2] = {3, 4};
  dn_tensor *a = dn_test_random(70, 2, shape), *an = dn_test_noncontiguous(a), *pos = positive(71, 2, shape);
  const double scalars[] = {0.5, -1.25, 0, 2};
  for (int op = 0; op < ALL_BINOPS; op++) {
    for (size_t k = 0; k < sizeof scalars / sizeof scalars[0]; k++) {
      dn_tensor *s = scalar_f32((float)scalars[k]);
      for (int first = 0; first < 2; first++) {
        const dn_tensor *operands[2] = {a, an};
        for (int v = 0; v < 2; v++) {
          dn_tensor *out;
          DN_OK_OR_FAIL(dn_binary_scalar(&out, (dn_binop)op, operands[v], scalars[k], first));
          expect_shape(out, 2, shape);
          assert_int_equal(out->dtype, DN_F32);
          for (int64_t i = 0; i < 12; i++) {
            double x = dn_test_at(operands[v], i);
            double want = first ? ref_binary((dn_binop)op, scalars[k], x) : ref_binary((dn_binop)op, x, scalars[k]);
            expect_close(dn_test_at(out, i), want, DN_F32, dn_binop_name((dn_binop)op), i);
          }
          dn_tensor_release(out);
        }
        /* the same through a 0-dim tensor */
        if (first) check_binary((dn_binop)op, s, an, DN_F32);
        else check_binary((dn_binop)op, a, s, DN_F32);
      }
      dn_tensor_release(s);
    }
  }
  /* 1 - t and 2 / t */
  dn_tensor *t = dn_test_from(1, (int64_t[]){3}, (float[]){0.25f, 4, -2}), *out;
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_SUB, t, 1, true));
  assert_true(dn_test_at(out, 0) == 0.75 && dn_test_at(out, 1) == -3 && dn_test_at(out, 2) == 3);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_DIV, t, 2, true));
  assert_true(dn_test_at(out, 0) == 8 && dn_test_at(out, 1) == 0.5 && dn_test_at(out, 2) == -1);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_POW, t, 2, true));   /* 2 ** t */
  assert_true(dn_test_at(out, 1) == 16 && dn_test_at(out, 2) == 0.25);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_LT, t, 1, true));    /* 1 < t */
  assert_true(dn_test_at(out, 0) == 0 && dn_test_at(out, 1) == 1 && dn_test_at(out, 2) == 0);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_ADD, t, NAN, false));
  for (int64_t i = 0; i < 3; i++) assert_true(isnan(dn_test_at(out, i)));
  dn_tensor_release(out);
  check_binary(DN_POW, pos, a, DN_F32);
  dn_tensor_release(t);
  dn_tensor_release(a);
  dn_tensor_release(an);
  dn_tensor_release(pos);
}

/* --- in place --------------------------------------------------------------------------- */

static void test_inplace(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(80, 2, (int64_t[]){2, 3}), *b = dn_test_random(81, 1, (int64_t[]){3});
  dn_tensor *before;
  DN_OK_OR_FAIL(dn_clone(&before, a));
  uint32_t version = a->storage->version;
  DN_OK_OR_FAIL(dn_binary_(a, DN_ADD, b));   /* [2,3] += [3] */
  assert_true(a->storage->version != version);
  for (int64_t i = 0; i < 6; i++)
    expect_close(dn_test_at(a, i), (double)(float)(dn_test_at(before, i) + dn_test_at(b, i % 3)), DN_F32, "add_", i);
  version = a->storage->version;
  DN_OK_OR_FAIL(dn_binary_scalar_(a, DN_MUL, 0.5));
  assert_true(a->storage->version != version);
  for (int64_t i = 0; i < 6; i++)
    expect_close(dn_test_at(a, i), (double)(float)(dn_test_at(before, i) + dn_test_at(b, i % 3)) * 0.5, DN_F32,
                 "mul_", i);

  /* every op in place on a transposed (non-contiguous) target */
  dn_tensor *src = dn_test_random(82, 2, (int64_t[]){4, 3}), *other = dn_test_random(83, 2, (int64_t[]){3, 1});
  for (int op = 0; op < ALL_BINOPS; op++) {
    dn_tensor *copy, *tr;
    DN_OK_OR_FAIL(dn_clone(&copy, src));
    DN_OK_OR_FAIL(dn_t(&tr, copy));   /* [3,4] */
    DN_OK_OR_FAIL(dn_binary_(tr, (dn_binop)op, other));
    for (int64_t i = 0; i < 12; i++) {
      int64_t r = i / 4, c = i % 4;
      double want = ref_binary((dn_binop)op, dn_test_at(src, c * 3 + r), dn_test_at(other, r));
      expect_close(dn_test_at(tr, i), want, DN_F32, dn_binop_name((dn_binop)op), i);
    }
    dn_tensor_release(tr);
    dn_tensor_release(copy);
  }

  /* float32 target with an int32 operand is fine */
  dn_tensor *ints = from_ints(1, (int64_t[]){3}, (int32_t[]){1, 2, 3});
  DN_OK_OR_FAIL(dn_binary_(b, DN_SUB, ints));
  dn_tensor *orig_b = dn_test_random(81, 1, (int64_t[]){3});
  for (int64_t i = 0; i < 3; i++)
    expect_close(dn_test_at(b, i), dn_test_at(orig_b, i) - (double)(i + 1), DN_F32, "sub_", i);

  /* errors */
  dn_tensor *wide = dn_test_random(84, 2, (int64_t[]){2, 3}), *row = dn_test_random(85, 1, (int64_t[]){3});
  dn_tensor *four = dn_test_random(86, 1, (int64_t[]){4});
  version = row->storage->version;
  DN_EXPECT_ERROR(dn_binary_(row, DN_ADD, wide), DN_ESHAPE,
                  "add_: other of shape [2,3] cannot be broadcast to the in-place tensor's shape [3]");
  assert_true(row->storage->version == version);
  DN_EXPECT_ERROR(dn_binary_(row, DN_MUL, four), DN_ESHAPE, "mul_: shapes [3] and [4] cannot be broadcast (dim 1: 3 vs 4)");
  DN_EXPECT_ERROR(dn_binary_(ints, DN_ADD, row), DN_ETYPE,
                  "add_: the result of int32 add float32 is float32 and cannot be stored in place into int32");
  DN_EXPECT_ERROR(dn_binary_(ints, DN_DIV, ints), DN_ETYPE, "div_: the result of int32 div int32 is float32");
  DN_EXPECT_ERROR(dn_binary_scalar_(ints, DN_ADD, 0.5), DN_ETYPE, "add_: the result of int32 add float32");
  DN_EXPECT_ERROR(dn_binary_scalar_(ints, DN_POW, -1), DN_ETYPE, "pow_");
  dn_tensor *s0 = scalar_f32(1), *s1 = dn_test_random(87, 1, (int64_t[]){1});
  DN_EXPECT_ERROR(dn_binary_(s0, DN_ADD, s1), DN_ESHAPE, "add_: other of shape [1] cannot be broadcast");
  dn_tensor *expanded;
  DN_OK_OR_FAIL(dn_broadcast_to(&expanded, row, 2, (int64_t[]){2, 3}));
  DN_EXPECT_ERROR(dn_binary_scalar_(expanded, DN_ADD, 1), DN_EINVAL, "add_: cannot write into an expanded");
  DN_EXPECT_ERROR(dn_unary_(expanded, DN_RELU), DN_EINVAL, "relu_: cannot write into an expanded");

  /* int32 in place that stays int32 */
  DN_OK_OR_FAIL(dn_binary_scalar_(ints, DN_MUL, 3));
  DN_OK_OR_FAIL(dn_binary_scalar_(ints, DN_POW, 2));
  for (int64_t i = 0; i < 3; i++) assert_true(dn_test_at(ints, i) == 9 * (i + 1) * (i + 1));

  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(orig_b);
  dn_tensor_release(before);
  dn_tensor_release(src);
  dn_tensor_release(other);
  dn_tensor_release(ints);
  dn_tensor_release(wide);
  dn_tensor_release(row);
  dn_tensor_release(four);
  dn_tensor_release(s0);
  dn_tensor_release(s1);
  dn_tensor_release(expanded);
}

/* An operand overlapping the target is read as it was before the op. */
static void test_inplace_overlap(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(1, (int64_t[]){5}, (float[]){1, 2, 3, 4, 5}), *head, *tail;
  DN_OK_OR_FAIL(dn_narrow(&tail, x, 0, 1, 4));
  DN_OK_OR_FAIL(dn_narrow(&head, x, 0, 0, 4));
  DN_OK_OR_FAIL(dn_binary_(tail, DN_ADD, head));   /* x[1:] += x[:-1] */
  double want[5] = {1, 3, 5, 7, 9};
  for (int64_t i = 0; i < 5; i++) assert_true(dn_test_at(x, i) == want[i]);
  DN_OK_OR_FAIL(dn_binary_(x, DN_MUL, x));         /* x *= x */
  for (int64_t i = 0; i < 5; i++) assert_true(dn_test_at(x, i) == want[i] * want[i]);
  dn_tensor *m = dn_test_from(2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4}), *first;
  DN_OK_OR_FAIL(dn_narrow(&first, m, 0, 0, 1));    /* m -= m[0], broadcast from inside m */
  DN_OK_OR_FAIL(dn_binary_(m, DN_SUB, first));
  double want_m[4] = {0, 0, 2, 2};
  for (int64_t i = 0; i < 4; i++) assert_true(dn_test_at(m, i) == want_m[i]);
  dn_tensor_release(x);
  dn_tensor_release(head);
  dn_tensor_release(tail);
  dn_tensor_release(m);
  dn_tensor_release(first);
}

/* --- unary ---------------------------------------------------------------------------- */

static void test_unary_all_ops(void **state) {
  (void)state;
  int64_t shape[3] = {3, 4, 5};
  dn_tensor *a = dn_test_random(90, 3, shape), *an = dn_test_noncontiguous(a);
  dn_tensor *pos = positive(91, 3, shape), *posn = dn_test_noncontiguous(pos), *s = scalar_f32(-0.75f), *narrow;
  DN_OK_OR_FAIL(dn_narrow(&narrow, a, 2, 1, 3));
  for (int op = 0; op < ALL_UNOPS; op++) {
    check_unary((dn_unop)op, a, DN_F32);   /* log/sqrt of negatives: NaN on both sides */
    check_unary((dn_unop)op, an, DN_F32);
    check_unary((dn_unop)op, pos, DN_F32);
    check_unary((dn_unop)op, posn, DN_F32);
    check_unary((dn_unop)op, s, DN_F32);
    check_unary((dn_unop)op, narrow, DN_F32);
  }
  /* in place, on a non-contiguous target */
  for (int op = 0; op < ALL_UNOPS; op++) {
    dn_tensor *copy = dn_test_noncontiguous(pos);
    uint32_t version = copy->storage->version;
    DN_OK_OR_FAIL(dn_unary_(copy, (dn_unop)op));
    assert_true(copy->storage->version != version);
    for (int64_t i = 0; i < 60; i++)
      expect_close(dn_test_at(copy, i), ref_unary((dn_unop)op, dn_test_at(pos, i)), DN_F32, "unary_", i);
    dn_tensor_release(copy);
  }
  dn_tensor_release(a);
  dn_tensor_release(an);
  dn_tensor_release(pos);
  dn_tensor_release(posn);
  dn_tensor_release(s);
  dn_tensor_release(narrow);
}

static void test_unary_int32(void **state) {
  (void)state;
  dn_tensor *a = random_ints(100, 2, (int64_t[]){3, 4}, 20), *an = dn_test_noncontiguous(a);
  for (int op = 0; op < ALL_UNOPS; op++) {
    dn_dtype want = (op == DN_NEG || op == DN_ABS || op == DN_RELU) ? DN_I32 : DN_F32;
    check_unary((dn_unop)op, a, want);
    check_unary((dn_unop)op, an, want);
  }
  dn_tensor *x = from_ints(1, (int64_t[]){3}, (int32_t[]){INT32_MIN, -5, 5}), *out;
  /* -INT32_MIN does not fit: an error, not a wrap-around */
  DN_EXPECT_ERROR(dn_unary(&out, DN_NEG, x), DN_ERANGE, "neg: int32 overflow: -(-2147483648) is outside");
  DN_EXPECT_ERROR(dn_unary(&out, DN_ABS, x), DN_ERANGE, "abs: int32 overflow: abs(-2147483648)");
  DN_EXPECT_ERROR(dn_unary_(x, DN_NEG), DN_ERANGE, "neg_: int32 overflow");
  DN_EXPECT_ERROR(dn_unary_(x, DN_ABS), DN_ERANGE, "abs_: int32 overflow");
  assert_true(dn_test_at(x, 0) == INT32_MIN && dn_test_at(x, 1) == -5);   /* unchanged */
  dn_tensor *fits = from_ints(1, (int64_t[]){3}, (int32_t[]){-INT32_MAX, -5, 5});
  DN_OK_OR_FAIL(dn_unary(&out, DN_ABS, fits));
  assert_true(dn_test_at(out, 0) == INT32_MAX && dn_test_at(out, 1) == 5 && dn_test_at(out, 2) == 5);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_unary_(fits, DN_NEG));
  assert_true(dn_test_at(fits, 0) == INT32_MAX && dn_test_at(fits, 1) == 5 && dn_test_at(fits, 2) == -5);
  dn_tensor_release(fits);
  DN_OK_OR_FAIL(dn_unary_(x, DN_RELU));
  assert_true(dn_test_at(x, 0) == 0 && dn_test_at(x, 1) == 0 && dn_test_at(x, 2) == 5);
  uint32_t version = x->storage->version;
  DN_EXPECT_ERROR(dn_unary_(x, DN_EXP), DN_ETYPE, "exp_: exp of int32 is float32 and cannot be stored in place");
  DN_EXPECT_ERROR(dn_unary_(x, DN_SQRT), DN_ETYPE, "sqrt_");
  assert_true(x->storage->version == version);
  dn_tensor_release(a);
  dn_tensor_release(an);
  dn_tensor_release(x);
}

static double unary_of(dn_unop op, float x) {
  dn_tensor *t = scalar_f32(x), *out;
  DN_OK_OR_FAIL(dn_unary(&out, op, t));
  double v = dn_test_at(out, 0);
  dn_tensor_release(out);
  dn_tensor_release(t);
  return v;
}

static void test_special_values(void **state) {
  (void)state;
  const float big[] = {1000, 100, 88.8f, 30, INFINITY};
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
    assert_true(unary_of(DN_SIGMOID, big[i]) == 1);
    double lo = unary_of(DN_SIGMOID, -big[i]);
    assert_true(lo >= 0 && lo < 1e-12 && !isnan(lo));
    assert_true(unary_of(DN_TANH, big[i]) == 1 && unary_of(DN_TANH, -big[i]) == -1);
  }
  /* small sigmoid values keep their relative precision */
  double s20 = unary_of(DN_SIGMOID, -20);
  assert_true(fabs(s20 - 1 / (1 + exp(20.0))) < 1e-6 * s20);
  /* sigmoid(-90) = 8.2e-40 is a denormal float: 0 while denormals are flushed (the default), else kept */
  if (dn_get_flush_denormal()) assert_true(unary_of(DN_SIGMOID, -90) == 0);
  bool flush = dn_get_flush_denormal();
  dn_set_flush_denormal(false);
  double s90 = unary_of(DN_SIGMOID, -90);
  dn_set_flush_denormal(flush);
  assert_true(s90 > 0 && fabs(s90 - 1 / (1 + exp(90.0))) < 1e-5 * s90 + 1e-45);
  assert_true(unary_of(DN_SIGMOID, 0) == 0.5);
  assert_true(isnan(unary_of(DN_SIGMOID, NAN)) && isnan(unary_of(DN_TANH, NAN)));
  assert_true(isnan(unary_of(DN_LOG, -1)) && unary_of(DN_LOG, 0) == -INFINITY && unary_of(DN_LOG, INFINITY) == INFINITY);
  assert_true(isnan(unary_of(DN_SQRT, -1)) && unary_of(DN_SQRT, 0) == 0);
  assert_true(unary_of(DN_EXP, 1000) == INFINITY && unary_of(DN_EXP, -1000) == 0);
  assert_true(isnan(unary_of(DN_RELU, NAN)) && unary_of(DN_RELU, -INFINITY) == 0);
  assert_true(isnan(unary_of(DN_EXP, NAN)) && isnan(unary_of(DN_NEG, NAN)) && isnan(unary_of(DN_ABS, NAN)));

  /* maximum/minimum propagate NaN from either side; comparisons with NaN are false (ne true) */
  dn_tensor *x = dn_test_from(1, (int64_t[]){3}, (float[]){NAN, 1, NAN});
  dn_tensor *y = dn_test_from(1, (int64_t[]){3}, (float[]){1, NAN, NAN});
  for (int op = 0; op < ALL_BINOPS; op++) check_binary((dn_binop)op, x, y, DN_F32);
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_binary(&out, DN_MAXIMUM, x, y));
  for (int64_t i = 0; i < 3; i++) assert_true(isnan(dn_test_at(out, i)));
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary(&out, DN_NE, x, y));
  for (int64_t i = 0; i < 3; i++) assert_true(dn_test_at(out, i) == 1);
  dn_tensor_release(out);
  dn_tensor_release(x);
  dn_tensor_release(y);
}

/* --- clamp and where ----------------------------------------------------------------------- */

static double ref_clamp(double x, double lo, double hi) {
  if (!isnan(lo) && x < lo) return lo;
  if (!isnan(hi) && x > hi) return hi;
  return x;
}

static void check_clamp(const dn_tensor *a, double lo, double hi, dn_dtype want_dtype) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_clamp(&out, a, lo, hi));
  expect_shape(out, a->ndim, a->shape);
  assert_int_equal(out->dtype, want_dtype);
  for (int64_t i = 0; i < dn_tensor_numel(a); i++) {
    double want = ref_clamp(dn_test_at(a, i), lo, hi);
    if (want_dtype == DN_F32) want = (float)want;
    expect_close(dn_test_at(out, i), want, out->dtype, "clamp", i);
  }
  dn_tensor_release(out);
}

static void test_clamp(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(110, 2, (int64_t[]){4, 6}), *an = dn_test_noncontiguous(a);
  const double bounds[][2] = {{-0.5, 0.5}, {NAN, 0.25}, {-1, NAN}, {NAN, NAN}, {0.3, 0.3}, {-INFINITY, 1}};
  for (size_t k = 0; k < sizeof bounds / sizeof bounds[0]; k++) {
    check_clamp(a, bounds[k][0], bounds[k][1], DN_F32);
    check_clamp(an, bounds[k][0], bounds[k][1], DN_F32);
  }
  dn_tensor *special = dn_test_from(1, (int64_t[]){4}, (float[]){NAN, INFINITY, -INFINITY, 0.5f}), *out;
  DN_OK_OR_FAIL(dn_clamp(&out, special, -1, 1));
  assert_true(isnan(dn_test_at(out, 0)) && dn_test_at(out, 1) == 1 && dn_test_at(out, 2) == -1 &&
              dn_test_at(out, 3) == 0.5);
  dn_tensor_release(out);

  dn_tensor *ints = random_ints(111, 2, (int64_t[]){3, 5}, 10);
  check_clamp(ints, -3, 4, DN_I32);
  check_clamp(ints, NAN, 0, DN_I32);
  check_clamp(ints, -1e12, 1e12, DN_I32);   /* bounds beyond int32 saturate */
  check_clamp(ints, -INFINITY, 2, DN_I32);
  check_clamp(ints, -0.5, 2, DN_F32);       /* a non-integral bound makes float32 */

  out = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_clamp(&out, a, 1, -1), DN_EINVAL, "clamp: lower bound 1 is greater than upper bound -1");
  assert_null(out);
  dn_tensor *mask;
  DN_OK_OR_FAIL(dn_tensor_zeros(&mask, DN_U8, 1, (int64_t[]){2}));
  DN_EXPECT_ERROR(dn_clamp(&out, mask, 0, 1), DN_ETYPE, "clamp: uint8");
  dn_tensor_release(a);
  dn_tensor_release(an);
  dn_tensor_release(special);
  dn_tensor_release(ints);
  dn_tensor_release(mask);
}

static void check_where(const dn_tensor *cond, const dn_tensor *a, const dn_tensor *b, int ndim,
                        const int64_t *shape, dn_dtype want_dtype) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_where(&out, cond, a, b));
  expect_shape(out, ndim, shape);
  assert_int_equal(out->dtype, want_dtype);
  for (int64_t i = 0; i < dn_tensor_numel(out); i++) {
    double c = bcast_at(cond, ndim, shape, i);
    double want = c != 0 ? bcast_at(a, ndim, shape, i) : bcast_at(b, ndim, shape, i);   /* NaN is nonzero */
    expect_close(dn_test_at(out, i), want, out->dtype, "where", i);
  }
  dn_tensor_release(out);
}

static void test_where(void **state) {
  (void)state;
  int64_t shape[2] = {3, 4};
  dn_tensor *condf = dn_test_from(2, shape, (float[]){1, 0, -0.0f, NAN, 2, 0, 0, 1, -1, 0, INFINITY, 0});
  dn_tensor *condi = random_ints(120, 2, shape, 1), *condu;
  DN_OK_OR_FAIL(dn_tensor_new(&condu, DN_U8, 2, shape));
  uint8_t *u = dn_tensor_data(condu);
  for (int i = 0; i < 12; i++) u[i] = (uint8_t)(i % 3 == 0 ? 0 : i * 20);
  dn_tensor *a = dn_test_random(121, 2, shape), *b = dn_test_random(122, 2, shape);
  dn_tensor *an = dn_test_noncontiguous(a), *condn = dn_test_noncontiguous(condf);
  const dn_tensor *conds[] = {condf, condi, condu, condn};
  for (int k = 0; k < 4; k++) {
    check_where(conds[k], a, b, 2, shape, DN_F32);
    check_where(conds[k], an, b, 2, shape, DN_F32);
  }

  /* three-way broadcast and dtype promotion */
  dn_tensor *c21 = dn_test_from(2, (int64_t[]){2, 1}, (float[]){1, 0});
  dn_tensor *a13 = dn_test_random(123, 2, (int64_t[]){1, 3}), *s = scalar_f32(7);
  dn_tensor *i13 = from_ints(2, (int64_t[]){1, 3}, (int32_t[]){4, 5, 6}), *i0 = from_ints(0, NULL, (int32_t[]){-1});
  check_where(c21, a13, s, 2, (int64_t[]){2, 3}, DN_F32);
  check_where(c21, i13, i0, 2, (int64_t[]){2, 3}, DN_I32);
  check_where(c21, i13, s, 2, (int64_t[]){2, 3}, DN_F32);
  check_where(s, i0, i13, 2, (int64_t[]){1, 3}, DN_I32);
  dn_tensor *empty;
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 2, (int64_t[]){0, 3}));
  check_where(empty, a13, s, 2, (int64_t[]){0, 3}, DN_F32);

  dn_tensor *out = (dn_tensor *)1, *b4 = dn_test_random(124, 1, (int64_t[]){4});
  DN_EXPECT_ERROR(dn_where(&out, c21, a13, b4), DN_ESHAPE,
                  "where: shapes [2,1] (condition), [1,3] and [4] cannot be broadcast together (dim 2: 3 vs 4)");
  assert_null(out);
  DN_EXPECT_ERROR(dn_where(&out, b4, a13, s), DN_ESHAPE, "where: shapes [4] (condition), [1,3] and []");
  DN_EXPECT_ERROR(dn_where(&out, c21, condu, s), DN_ETYPE, "where: uint8 tensors are not supported");
  DN_EXPECT_ERROR(dn_where(&out, c21, s, condu), DN_ETYPE, "where: uint8");

  dn_tensor_release(condf);
  dn_tensor_release(condi);
  dn_tensor_release(condu);
  dn_tensor_release(condn);
  dn_tensor_release(a);
  dn_tensor_release(an);
  dn_tensor_release(b);
  dn_tensor_release(c21);
  dn_tensor_release(a13);
  dn_tensor_release(s);
  dn_tensor_release(i13);
  dn_tensor_release(i0);
  dn_tensor_release(empty);
  dn_tensor_release(b4);
}

/* --- empty and 0-dim ------------------------------------------------------------------------- */

static void test_empty_and_scalar_tensors(void **state) {
  (void)state;
  dn_tensor *e, *row = dn_test_random(130, 2, (int64_t[]){1, 3}), *out;
  DN_OK_OR_FAIL(dn_tensor_zeros(&e, DN_F32, 2, (int64_t[]){0, 3}));
  DN_OK_OR_FAIL(dn_add(&out, e, row));
  expect_shape(out, 2, (int64_t[]){0, 3});
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_scalar(&out, DN_POW, e, 2, true));
  expect_shape(out, 2, (int64_t[]){0, 3});
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_unary(&out, DN_SIGMOID, e));
  expect_shape(out, 2, (int64_t[]){0, 3});
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_clamp(&out, e, 0, 1));
  expect_shape(out, 2, (int64_t[]){0, 3});
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_(e, DN_MUL, row));
  DN_OK_OR_FAIL(dn_unary_(e, DN_TANH));

  dn_tensor *x = scalar_f32(3), *y = scalar_f32(-2);
  DN_OK_OR_FAIL(dn_binary(&out, DN_POW, x, y));
  expect_shape(out, 0, NULL);
  assert_true(fabs(dn_test_at(out, 0) - 1.0 / 9) < 1e-7);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_sub(&out, x, row));   /* 0-dim - [1,3] */
  expect_shape(out, 2, (int64_t[]){1, 3});
  for (int64_t i = 0; i < 3; i++) expect_close(dn_test_at(out, i), 3 - dn_test_at(row, i), DN_F32, "sub", i);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_binary_(x, DN_ADD, y));
  assert_true(dn_test_at(x, 0) == 1);
  DN_OK_OR_FAIL(dn_unary_(x, DN_NEG));
  assert_true(dn_test_at(x, 0) == -1);
  dn_tensor_release(e);
  dn_tensor_release(row);
  dn_tensor_release(x);
  dn_tensor_release(y);
}

/* --- threads ---------------------------------------------------------------------------------- */

/* Runs the op family with 1 and 2 threads; results must match bit for bit (and the reference). */
typedef dn_status (*op_fn)(dn_tensor **out, const dn_tensor *a, const dn_tensor *b);

static dn_status op_add(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) { return dn_add(out, a, b); }
static dn_status op_pow(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) {
  return dn_binary(out, DN_POW, a, b);
}
static dn_status op_rsub_scalar(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) {
  (void)b;
  return dn_binary_scalar(out, DN_SUB, a, 1, true);
}
static dn_status op_sigmoid(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) {
  (void)b;
  return dn_unary(out, DN_SIGMOID, a);
}
static dn_status op_clamp(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) {
  (void)b;
  return dn_clamp(out, a, -0.5, NAN);
}
static dn_status op_where(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) { return dn_where(out, a, a, b); }
static dn_status op_inplace_mul(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) {
  dn_status st = dn_clone(out, a);
  if (!st) st = dn_binary_(*out, DN_MUL, b);
  return st;
}

static void expect_same_bits(const dn_tensor *x, const dn_tensor *y) {
  assert_true(dn_same_shape(x, y) && x->dtype == y->dtype);
  assert_true(dn_tensor_is_contiguous(x) && dn_tensor_is_contiguous(y));
  assert_memory_equal(dn_tensor_data(x), dn_tensor_data(y), (size_t)dn_tensor_numel(x) * dn_dtype_size(x->dtype));
}

static void test_thread_count_determinism(void **state) {
  (void)state;
  /* 120701 elements: goes parallel, and the halves split a row in the middle */
  int64_t shape[2] = {301, 401};
  dn_tensor *a = dn_test_random(140, 2, shape), *b = dn_test_random(141, 2, shape);
  dn_tensor *an = dn_test_noncontiguous(a), *bias = dn_test_random(142, 1, (int64_t[]){401});
  dn_tensor *col = dn_test_random(143, 2, (int64_t[]){301, 1}), *pos = positive(144, 2, shape);
  dn_tensor *one = dn_test_random(145, 1, (int64_t[]){150000}), *one_strided;
  DN_OK_OR_FAIL(dn_narrow(&one_strided, one, 0, 7, 120000));
  dn_tensor *one_n = dn_test_noncontiguous(one_strided);   /* 1-D stride 2: one long row */
  struct { op_fn fn; const dn_tensor *a, *b; } cases[] = {
    {op_add, a, b},       {op_add, a, bias},   {op_add, an, b},    {op_add, col, bias}, {op_add, b, an},
    {op_pow, pos, a},     {op_rsub_scalar, a, NULL}, {op_rsub_scalar, an, NULL}, {op_sigmoid, a, NULL},
    {op_sigmoid, an, NULL}, {op_clamp, an, NULL}, {op_where, an, b},  {op_inplace_mul, an, bias},
    {op_inplace_mul, a, col}, {op_add, one_n, one_strided}, {op_sigmoid, one_n, NULL},
  };
  int saved = dn_get_num_threads();
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    dn_tensor *one_thread, *two_threads;
    DN_OK_OR_FAIL(dn_set_num_threads(1));
    DN_OK_OR_FAIL(cases[k].fn(&one_thread, cases[k].a, cases[k].b));
    DN_OK_OR_FAIL(dn_set_num_threads(2));
    DN_OK_OR_FAIL(cases[k].fn(&two_threads, cases[k].a, cases[k].b));
    expect_same_bits(one_thread, two_threads);
    dn_tensor_release(one_thread);
    dn_tensor_release(two_threads);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  check_binary(DN_ADD, a, bias, DN_F32);   /* the parallel paths are also right */
  check_binary(DN_DIV, a, b, DN_F32);
  check_binary(DN_SUB, an, col, DN_F32);
  check_binary(DN_MUL, one_n, one_strided, DN_F32);
  check_unary(DN_TANH, an, DN_F32);
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(an);
  dn_tensor_release(bias);
  dn_tensor_release(col);
  dn_tensor_release(pos);
  dn_tensor_release(one);
  dn_tensor_release(one_strided);
  dn_tensor_release(one_n);
}

/* Gradients of the element-wise ops (binary, scalar, unary, clamp, where),
   checked against central finite differences, plus the in-place rules, the
   version counter, grad mode and memory. */

/* --- inputs ------------------------------------------------------------------------ */

/* Value ranges that keep finite differences away from kinks, poles and ties. */
typedef enum value_kind {
  ANY,              /* [-2, 2] */
  AWAY_FROM_ZERO,   /* |x| in [0.2, 2] */
  POSITIVE,         /* [0.3, 1.9] */
  LATTICE_A,        /* -1.5 + 0.6k: never within 0.3 of LATTICE_B (max/min ties, clamp bounds) */
  LATTICE_B         /* -1.2 + 0.6k */
} value_kind;

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
static dn_tensor *input(uint64_t seed, int ndim, const int64_t *shape, value_kind kind, bool noncontiguous,
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

static dn_tensor *int_input(int ndim, const int64_t *shape, const double *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&t, DN_I32, ndim, shape, values));
  return t;
}

static void release_all(dn_tensor **list, int n) {
  for (int i = 0; i < n; i++) dn_tensor_release(list[i]);
}

/* --- the finite-difference check -------------------------------------------------------- */

/* Every input element perturbed by 1e-3; tolerance 1e-2, relative and absolute. */
static void gradcheck(const char *label, dn_test_fn f, const void *ctx, int n, dn_tensor *const *in) {
  dn_test_gradcheck(label, f, ctx, n, in, 1e-3, 1e-2, 1e-2);
}

/* --- forwards under test ------------------------------------------------------------------- */

static dn_status f_binary(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  return dn_binary(out, *(const dn_binop *)ctx, in[0], in[1]);
}

typedef struct scalar_case {
  dn_binop op;
  double s;
  bool scalar_first;
} scalar_case;

static dn_status f_scalar(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const scalar_case *c = ctx;
  return dn_binary_scalar(out, c->op, in[0], c->s, c->scalar_first);
}

static dn_status f_unary(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  return dn_unary(out, *(const dn_unop *)ctx, in[0]);
}

static dn_status f_clamp(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const double *bounds = ctx;
  return dn_clamp(out, in[0], bounds[0], bounds[1]);
}

static dn_status f_where(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  (void)ctx;
  return dn_where(out, in[0], in[1], in[2]);
}

/* relu(x * w + b) */
static dn_status f_layer(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  (void)ctx;
  dn_tensor *xw = NULL, *z = NULL;
  dn_status st = dn_mul(&xw, in[0], in[1]);
  if (!st) st = dn_add(&z, xw, in[2]);
  if (!st) st = dn_unary(out, DN_RELU, z);
  dn_tensor_release(xw);
  dn_tensor_release(z);
  return st;
}

/* --- binary ------------------------------------------------------------------------------------ */

typedef struct shape_pair {
  int na, nb;
  int64_t a[3], b[3];
} shape_pair;

static const shape_pair pairs[] = {
  {2, 2, {3, 1}, {1, 4}},   /* both broadcast */
  {2, 1, {2, 3}, {3}},      /* b gains a leading dim */
  {2, 2, {2, 3}, {2, 3}},   /* same shape */
  {1, 0, {4}, {0}},         /* b is 0-dim */
  {3, 2, {2, 1, 3}, {4, 1}},
};

static void operand_kinds(dn_binop op, value_kind *ka, value_kind *kb) {
  switch (op) {
    case DN_DIV: *ka = ANY; *kb = AWAY_FROM_ZERO; break;
    case DN_POW: *ka = POSITIVE; *kb = ANY; break;
    case DN_MAXIMUM: case DN_MINIMUM: *ka = LATTICE_A; *kb = LATTICE_B; break;
    default: *ka = ANY; *kb = ANY; break;
  }
}

static void test_binary_gradients(void **state) {
  (void)state;
  const dn_binop ops[] = {DN_ADD, DN_SUB, DN_MUL, DN_DIV, DN_POW, DN_MAXIMUM, DN_MINIMUM};
  for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
    for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
      for (int layout = 0; layout < 2; layout++) {
        value_kind ka, kb;
        operand_kinds(ops[o], &ka, &kb);
        dn_tensor *in[2] = {input(10 + p, pairs[p].na, pairs[p].a, ka, layout, true),
                            input(20 + p, pairs[p].nb, pairs[p].b, kb, layout, true)};
        char label[96];
        snprintf(label, sizeof label, "%s, pair %zu, %s", dn_binop_name(ops[o]), p,
                 layout ? "non-contiguous" : "contiguous");
        gradcheck(label, f_binary, &ops[o], 2, in);
        /* one input requiring grad: the other gets none (and its operand need not be saved) */
        DN_OK_OR_FAIL(dn_requires_grad_(in[0], false));
        gradcheck(label, f_binary, &ops[o], 2, in);
        DN_OK_OR_FAIL(dn_requires_grad_(in[0], true));
        DN_OK_OR_FAIL(dn_requires_grad_(in[1], false));
        gradcheck(label, f_binary, &ops[o], 2, in);
        release_all(in, 2);
      }
    }
  }
}

static void test_binary_same_tensor_twice(void **state) {
  (void)state;
  int64_t shape[2] = {2, 3};
  dn_tensor *x = input(3, 2, shape, POSITIVE, true, true);
  dn_tensor *in[2] = {x, x};
  const dn_binop ops[] = {DN_MUL, DN_DIV, DN_POW, DN_SUB, DN_ADD};
  for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) gradcheck(dn_binop_name(ops[o]), f_binary, &ops[o], 2, in);
  dn_tensor_release(x);
}

static void test_mixed_int32_operand(void **state) {
  (void)state;
  int64_t shape[2] = {2, 3}, row = 3;
  dn_tensor *x = input(4, 2, shape, POSITIVE, false, true);
  dn_tensor *n = int_input(1, &row, (double[]){2, -1, 3});
  const dn_binop ops[] = {DN_ADD, DN_SUB, DN_MUL, DN_DIV, DN_POW, DN_MAXIMUM};
  for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
    dn_tensor *in[2] = {x, n};
    gradcheck(dn_binop_name(ops[o]), f_binary, &ops[o], 2, in);
  }
  dn_tensor *in[2] = {n, x};
  const dn_binop rdiv = DN_DIV;
  gradcheck("int / float", f_binary, &rdiv, 2, in);
  dn_tensor_release(x);
  dn_tensor_release(n);
}

static void test_comparisons_record_nothing(void **state) {
  (void)state;
  int64_t shape[1] = {3};
  dn_tensor *a = input(5, 1, shape, ANY, false, true), *b = input(6, 1, shape, ANY, false, true);
  for (dn_binop op = DN_EQ; op <= DN_GE; op++) {
    dn_tensor *c;
    DN_OK_OR_FAIL(dn_binary(&c, op, a, b));
    assert_false(c->requires_grad);
    assert_null(c->grad_fn);
    dn_tensor_release(c);
    DN_OK_OR_FAIL(dn_binary_scalar(&c, op, a, 0.5, false));
    assert_false(c->requires_grad);
    dn_tensor_release(c);
  }
  dn_tensor_release(a);
  dn_tensor_release(b);
}

/* Exact values at the points where PyTorch defines the derivative by convention. */
static void expect_grad(const dn_tensor *t, const float *want, int n) {
  assert_non_null(t->grad);
  for (int i = 0; i < n; i++) {
    double got = dn_test_at(t->grad, i);
    if (!(got == want[i] || (isnan(got) && isnan(want[i]))))
      fail_msg("gradient element %d: %.9g, expected %.9g", i, got, (double)want[i]);
  }
}

static dn_tensor *leaf_of(int n, const float *values) {
  int64_t shape = n;
  dn_tensor *t = dn_test_from(1, &shape, values);
  DN_OK_OR_FAIL(dn_requires_grad_(t, true));
  return t;
}

static void backward_ones(dn_tensor *y) {
  dn_tensor *ones;
  DN_OK_OR_FAIL(dn_tensor_ones(&ones, DN_F32, y->ndim, y->shape));
  DN_OK_OR_FAIL(dn_backward(y, ones, false));
  dn_tensor_release(ones);
}

static void test_maximum_minimum_ties_split(void **state) {
  (void)state;
  dn_tensor *a = leaf_of(3, (float[]){1, 2, 3}), *b = leaf_of(3, (float[]){1, 0, 5}), *y;
  DN_OK_OR_FAIL(dn_binary(&y, DN_MAXIMUM, a, b));
  assert_string_equal(dn_grad_fn_name(y), "maximum");
  backward_ones(y);
  expect_grad(a, (float[]){0.5f, 1, 0}, 3);
  expect_grad(b, (float[]){0.5f, 0, 1}, 3);
  dn_tensor_release(y);
  dn_tensor_release(a->grad);
  dn_tensor_release(b->grad);
  a->grad = b->grad = NULL;
  DN_OK_OR_FAIL(dn_binary(&y, DN_MINIMUM, a, b));
  backward_ones(y);
  expect_grad(a, (float[]){0.5f, 0, 1}, 3);
  expect_grad(b, (float[]){0.5f, 1, 0}, 3);
  dn_tensor_release(y);
  /* a tie against a broadcast scalar: each of the three gets half */
  dn_tensor *s = leaf_of(1, (float[]){2}), *a2 = leaf_of(3, (float[]){2, 2, 2});
  DN_OK_OR_FAIL(dn_binary(&y, DN_MAXIMUM, a2, s));
  backward_ones(y);
  expect_grad(a2, (float[]){0.5f, 0.5f, 0.5f}, 3);
  expect_grad(s, (float[]){1.5f}, 1);
  dn_tensor *list[] = {a, b, y, s, a2};
  release_all(list, 5);
}

static void test_pow_conventions_at_zero(void **state) {
  (void)state;
  /* d(a^b)/db is 0 where a == 0 and b >= 0; d(a^b)/da is 0 where b == 0 */
  dn_tensor *a = leaf_of(4, (float[]){0, 0, 2, 0}), *b = leaf_of(4, (float[]){2, 0, 0, 0.5f}), *y;
  DN_OK_OR_FAIL(dn_binary(&y, DN_POW, a, b));
  backward_ones(y);
  expect_grad(a, (float[]){0, 0, 0, INFINITY}, 4);   /* 0.5 * 0^-0.5 */
  expect_grad(b, (float[]){0, 0, logf(2.0f), 0}, 4);
  dn_tensor_release(y);
  /* scalar base 0: 0^x has gradient 0 for x >= 0 */
  dn_tensor *x = leaf_of(3, (float[]){1, 2, 0});
  DN_OK_OR_FAIL(dn_binary_scalar(&y, DN_POW, x, 0.0, true));
  backward_ones(y);
  expect_grad(x, (float[]){0, 0, 0}, 3);
  dn_tensor_release(y);
  /* scalar exponent 0: gradient 0 even at 0 */
  dn_tensor *z = leaf_of(2, (float[]){0, 3});
  DN_OK_OR_FAIL(dn_binary_scalar(&y, DN_POW, z, 0.0, false));
  backward_ones(y);
  expect_grad(z, (float[]){0, 0}, 2);
  dn_tensor *list[] = {a, b, y, x, z};
  release_all(list, 5);
}

/* --- scalar variants ------------------------------------------------------------------------------ */

static void test_scalar_gradients(void **state) {
  (void)state;
  const dn_binop ops[] = {DN_ADD, DN_SUB, DN_MUL, DN_DIV, DN_POW, DN_MAXIMUM, DN_MINIMUM};
  const double scalars[] = {1.25, -0.5, 0.15};   /* never on the lattice (ties) */
  int64_t shape[2] = {3, 4};
  for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
    for (int first = 0; first < 2; first++) {
      for (size_t k = 0; k < sizeof scalars / sizeof *scalars; k++) {
        scalar_case c = {ops[o], scalars[k], first};
        value_kind kind = ANY;
        if (ops[o] == DN_DIV && first) kind = AWAY_FROM_ZERO;        /* s / x */
        if (ops[o] == DN_POW && !first) kind = POSITIVE;             /* x ^ s */
        if (ops[o] == DN_POW && first) c.s = fabs(c.s) + 0.5;        /* s ^ x, s > 0 */
        if (ops[o] == DN_MAXIMUM || ops[o] == DN_MINIMUM) kind = LATTICE_A;
        for (int layout = 0; layout < 2; layout++) {
          dn_tensor *x = input(30 + k, 2, shape, kind, layout, true);
          char label[96];
          snprintf(label, sizeof label, "%s scalar %g %s, %s", dn_binop_name(ops[o]), c.s,
                   first ? "first" : "second", layout ? "non-contiguous" : "contiguous");
          gradcheck(label, f_scalar, &c, 1, &x);
          dn_tensor_release(x);
        }
      }
    }
  }
}

/* --- unary, clamp, where ------------------------------------------------------------------------------ */

static void test_unary_gradients(void **state) {
  (void)state;
  const struct {
    dn_unop op;
    value_kind kind;
    const char *saved_name;
  } cases[] = {
    {DN_NEG, ANY, "neg"},        {DN_EXP, ANY, "exp"},   {DN_LOG, POSITIVE, "log"},
    {DN_SQRT, POSITIVE, "sqrt"}, {DN_ABS, AWAY_FROM_ZERO, "abs"}, {DN_RELU, AWAY_FROM_ZERO, "relu"},
    {DN_SIGMOID, ANY, "sigmoid"}, {DN_TANH, ANY, "tanh"},
  };
  const int ndims[] = {2, 1, 0, 3};
  const int64_t shapes[][3] = {{3, 4}, {5}, {0}, {2, 1, 3}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    for (size_t s = 0; s < 4; s++) {
      for (int layout = 0; layout < 2; layout++) {
        dn_tensor *x = input(40 + s, ndims[s], shapes[s], cases[c].kind, layout, true);
        char label[64];
        snprintf(label, sizeof label, "%s, shape %zu, layout %d", dn_unop_name(cases[c].op), s, layout);
        gradcheck(label, f_unary, &cases[c].op, 1, &x);
        dn_tensor *y;
        DN_OK_OR_FAIL(dn_unary(&y, cases[c].op, x));
        assert_string_equal(dn_grad_fn_name(y), cases[c].saved_name);
        dn_tensor_release(y);
        dn_tensor_release(x);
      }
    }
  }
}

static void test_unary_conventions_at_kinks(void **state) {
  (void)state;
  dn_tensor *x = leaf_of(3, (float[]){-1, 0, 2}), *y;
  DN_OK_OR_FAIL(dn_unary(&y, DN_ABS, x));
  backward_ones(y);
  expect_grad(x, (float[]){-1, 0, 1}, 3);
  dn_tensor_release(y);
  dn_tensor_release(x->grad);
  x->grad = NULL;
  DN_OK_OR_FAIL(dn_unary(&y, DN_RELU, x));
  backward_ones(y);
  expect_grad(x, (float[]){0, 0, 1}, 3);
  dn_tensor_release(y);
  dn_tensor_release(x->grad);
  x->grad = NULL;
  /* clamp: the gradient passes at the bounds themselves (lo <= x <= hi) */
  dn_tensor *c = leaf_of(5, (float[]){-2, -1, 0, 1, 2});
  DN_OK_OR_FAIL(dn_clamp(&y, c, -1, 1));
  assert_string_equal(dn_grad_fn_name(y), "clamp");
  backward_ones(y);
  expect_grad(c, (float[]){0, 1, 1, 1, 0}, 5);
  dn_tensor_release(y);
  dn_tensor_release(x);
  dn_tensor_release(c);
}

static void test_clamp_gradients(void **state) {
  (void)state;
  const double bounds[][2] = {{-0.5, 0.7}, {NAN, 0.2}, {-0.1, NAN}, {NAN, NAN}};
  int64_t shape[2] = {3, 4};
  for (size_t b = 0; b < 4; b++) {
    for (int layout = 0; layout < 2; layout++) {
      dn_tensor *x = input(50, 2, shape, LATTICE_A, layout, true);   /* >= 0.05 from every bound */
      float *d = x->storage->data;
      for (int64_t i = 0; i < (int64_t)(x->storage->nbytes / 4); i++) d[i] += 0.05f;
      char label[64];
      snprintf(label, sizeof label, "clamp bounds %zu layout %d", b, layout);
      gradcheck(label, f_clamp, bounds[b], 1, &x);
      dn_tensor_release(x);
    }
  }
}

static void test_where_gradients(void **state) {
  (void)state;
  int64_t cs[2] = {3, 1}, as[2] = {1, 4}, bs[1] = {4}, full[2] = {3, 4};
  const dn_dtype cond_types[] = {DN_U8, DN_I32, DN_F32};
  for (int t = 0; t < 3; t++) {
    for (int layout = 0; layout < 2; layout++) {
      dn_tensor *c01, *cond;
      DN_OK_OR_FAIL(dn_tensor_from_doubles(&c01, DN_F32, 2, cs, (double[]){1, 0, 1}));
      DN_OK_OR_FAIL(dn_to_dtype(&cond, c01, cond_types[t]));
      dn_tensor *in[3] = {cond, input(61, 2, as, ANY, layout, true), input(62, 1, bs, ANY, layout, true)};
      gradcheck("where", f_where, NULL, 3, in);
      /* a full-shape condition, a broadcast only in b */
      dn_tensor *signs = input(63, 2, full, ANY, layout, false), *cond2;
      DN_OK_OR_FAIL(dn_binary_scalar(&cond2, DN_GT, signs, 0, false));
      dn_tensor *a2 = input(64, 2, full, ANY, layout, true);
      dn_tensor *in2[3] = {cond2, a2, in[2]};
      gradcheck("where full", f_where, NULL, 3, in2);
      dn_tensor *list[] = {c01, cond, in[1], in[2], signs, cond2, a2};
      release_all(list, 7);
    }
  }
  /* a condition requiring grad gets none (it is not differentiable) */
  dn_tensor *cond = input(65, 1, bs, ANY, false, true), *a = input(66, 1, bs, ANY, false, true);
  dn_tensor *b = input(67, 1, bs, ANY, false, false), *y;
  DN_OK_OR_FAIL(dn_where(&y, cond, a, b));
  assert_string_equal(dn_grad_fn_name(y), "where");
  backward_ones(y);
  assert_null(cond->grad);
  assert_non_null(a->grad);
  assert_null(b->grad);
  dn_tensor *list[] = {cond, a, b, y};
  release_all(list, 4);
}

static void test_layer_composite(void **state) {
  (void)state;
  int64_t xs[2] = {4, 3}, ws[1] = {3};
  for (int layout = 0; layout < 2; layout++) {
    dn_tensor *in[3] = {input(70, 2, xs, AWAY_FROM_ZERO, layout, false), input(71, 1, ws, ANY, layout, true),
                        input(72, 1, ws, ANY, layout, true)};
    /* keep x*w+b away from relu's kink: b shifts every column */
    float *b = in[2]->storage->data;
    for (int64_t i = 0; i < (int64_t)(in[2]->storage->nbytes / 4); i++) b[i] = 0.013f * (float)i;
    gradcheck("relu(x*w+b)", f_layer, NULL, 3, in);
    DN_OK_OR_FAIL(dn_requires_grad_(in[0], true));
    gradcheck("relu(x*w+b), x too", f_layer, NULL, 3, in);
    release_all(in, 3);
  }
}

/* --- edge shapes, accumulation, thread counts ---------------------------------------------------------- */

static void test_empty_and_scalar_gradients(void **state) {
  (void)state;
  int64_t empty[2] = {0, 3};
  dn_tensor *x = input(80, 2, empty, ANY, false, true), *y, *z;
  DN_OK_OR_FAIL(dn_binary_scalar(&y, DN_MUL, x, 2.0, false));
  DN_OK_OR_FAIL(dn_unary(&z, DN_TANH, y));
  dn_tensor *g;
  DN_OK_OR_FAIL(dn_tensor_zeros(&g, DN_F32, 2, empty));
  DN_OK_OR_FAIL(dn_backward(z, g, false));
  assert_non_null(x->grad);
  assert_true(dn_same_shape(x->grad, x));
  dn_tensor *list[] = {x, y, z, g};
  release_all(list, 4);

  dn_tensor *s = input(81, 0, NULL, ANY, false, true);
  DN_OK_OR_FAIL(dn_unary(&y, DN_EXP, s));
  DN_OK_OR_FAIL(dn_backward(y, NULL, false));
  assert_int_equal(s->grad->ndim, 0);
  assert_float_equal(dn_test_at(s->grad, 0), expf(*(float *)dn_tensor_data(s)), 1e-6);
  dn_tensor_release(y);
  dn_tensor_release(s);
}

static void test_gradients_accumulate(void **state) {
  (void)state;
  int64_t shape[2] = {2, 3}, row = 3;
  dn_tensor *x = input(90, 2, shape, ANY, false, true), *b = input(91, 1, &row, ANY, false, true), *y;
  DN_OK_OR_FAIL(dn_mul(&y, x, b));
  dn_tensor *g;
  DN_OK_OR_FAIL(dn_tensor_ones(&g, DN_F32, 2, shape));
  DN_OK_OR_FAIL(dn_backward(y, g, true));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  for (int64_t i = 0; i < 6; i++) assert_float_equal(dn_test_at(x->grad, i), 2 * dn_test_at(b, i % 3), 1e-6);
  for (int64_t j = 0; j < 3; j++)
    assert_float_equal(dn_test_at(b->grad, j), 2 * (dn_test_at(x, j) + dn_test_at(x, 3 + j)), 1e-5);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "already freed");
  dn_tensor *list[] = {x, b, y, g};
  release_all(list, 4);
}

/* The graph sees the leaves themselves: broadcasting makes no expand nodes of its own. */
static void test_internal_broadcast_records_no_view(void **state) {
  (void)state;
  int64_t xs[2] = {3, 4}, bs[1] = {4};
  dn_tensor *x = input(95, 2, xs, ANY, true, true), *b = input(96, 1, bs, ANY, false, true), *y;
  DN_OK_OR_FAIL(dn_add(&y, x, b));
  assert_ptr_equal(y->grad_fn->next_leaf[0], x);
  assert_ptr_equal(y->grad_fn->next_leaf[1], b);
  assert_null(y->grad_fn->next_fn[0]);
  assert_null(y->grad_fn->next_fn[1]);
  dn_tensor *list[] = {x, b, y};
  release_all(list, 3);
}

static void grads_of_big_graph(int threads, dn_tensor **gx, dn_tensor **gy) {
  int prev = dn_get_num_threads();
  dn_set_num_threads(threads);
  int64_t shape[2] = {300, 200};
  dn_tensor *x = input(100, 2, shape, ANY, false, true), *y = input(101, 2, shape, ANY, true, true);
  dn_tensor *m, *p, *r, *c;
  DN_OK_OR_FAIL(dn_binary(&m, DN_MAXIMUM, x, y));
  DN_OK_OR_FAIL(dn_binary(&p, DN_DIV, m, y));
  DN_OK_OR_FAIL(dn_unary(&r, DN_SIGMOID, p));
  DN_OK_OR_FAIL(dn_clamp(&c, r, 0.3, 0.8));
  dn_tensor *w = dn_test_random(7, 2, shape);
  DN_OK_OR_FAIL(dn_backward(c, w, false));
  *gx = dn_tensor_retain(x->grad);
  *gy = dn_tensor_retain(y->grad);
  dn_tensor *list[] = {x, y, m, p, r, c, w};
  release_all(list, 7);
  dn_set_num_threads(prev);
}

static void test_backward_bit_identical_across_threads(void **state) {
  (void)state;
  dn_tensor *x1, *y1, *x2, *y2;
  grads_of_big_graph(1, &x1, &y1);
  grads_of_big_graph(2, &x2, &y2);
  assert_memory_equal(dn_tensor_data(x1), dn_tensor_data(x2), 60000 * sizeof(float));
  assert_memory_equal(dn_tensor_data(y1), dn_tensor_data(y2), 60000 * sizeof(float));
  dn_tensor *list[] = {x1, y1, x2, y2};
  release_all(list, 4);
}

/* --- in-place rules, version counter, grad mode ------------------------------------------------------- */

static void test_inplace_on_tensor_requiring_grad_fails(void **state) {
  (void)state;
  int64_t shape[1] = {3};
  dn_tensor *x = input(110, 1, shape, POSITIVE, false, true), *o = input(111, 1, shape, ANY, false, false);
  DN_EXPECT_ERROR(dn_binary_(x, DN_ADD, o), DN_EINVAL, "add_: in-place operation on a tensor that requires grad");
  DN_EXPECT_ERROR(dn_binary_scalar_(x, DN_MUL, 2), DN_EINVAL, "mul_: in-place operation");
  DN_EXPECT_ERROR(dn_unary_(x, DN_RELU), DN_EINVAL, "relu_: in-place operation");
  DN_EXPECT_ERROR(dn_copy_(x, o), DN_EINVAL, "copy_: in-place operation");
  DN_EXPECT_ERROR(dn_fill_(x, 1), DN_EINVAL, "fill_: in-place operation");
  DN_EXPECT_ERROR(dn_tensor_set(x, (int64_t[]){0}, 1), DN_EINVAL, "set: in-place operation");
  /* a result in the graph is no different */
  dn_tensor *y;
  DN_OK_OR_FAIL(dn_unary(&y, DN_EXP, x));
  DN_EXPECT_ERROR(dn_unary_(y, DN_NEG), DN_EINVAL, "neg_: in-place operation");
  /* nothing was written */
  for (int i = 0; i < 3; i++) assert_true(dn_test_at(x, i) > 0);
  /* under no_grad it is allowed (an optimizer step) */
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_binary_scalar_(x, DN_MUL, 2));
  DN_OK_OR_FAIL(dn_fill_(x, 1));
  DN_OK_OR_FAIL(dn_tensor_set(x, (int64_t[]){0}, 3));
  dn_set_grad_enabled(mode);
  assert_float_equal(dn_test_at(x, 0), 3, 0);
  /* reading a source that requires grad into a plain tensor would drop its
     gradient without a word (in-place ops record nothing): refused, and
     allowed under no_grad */
  float o0 = (float)dn_test_at(o, 0);
  DN_EXPECT_ERROR(dn_binary_(o, DN_ADD, x), DN_EINVAL, "add_: the source requires grad");
  assert_float_equal(dn_test_at(o, 0), o0, 0);
  mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_binary_(o, DN_ADD, x));
  dn_set_grad_enabled(mode);
  assert_float_equal(dn_test_at(o, 0), o0 + 3.0f, 0);
  assert_null(o->grad_fn);
  assert_false(o->requires_grad);
  /* clone of a tensor requiring grad copies without tripping the check */
  dn_tensor *c;
  DN_OK_OR_FAIL(dn_clone(&c, x));
  assert_string_equal(dn_grad_fn_name(c), "clone");
  dn_tensor *list[] = {x, o, y, c};
  release_all(list, 4);
}

static void test_version_counter_catches_modified_saved_tensor(void **state) {
  (void)state;
  int64_t shape[1] = {3};
  dn_tensor *x = input(120, 1, shape, ANY, false, true), *w = input(121, 1, shape, ANY, false, false), *y;
  /* mul saves w (for x's gradient); change w in place */
  DN_OK_OR_FAIL(dn_mul(&y, x, w));
  DN_OK_OR_FAIL(dn_binary_scalar_(w, DN_MUL, 2));
  dn_tensor *g;
  DN_OK_OR_FAIL(dn_tensor_ones(&g, DN_F32, 1, shape));
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "mul saved for its backward was modified in place");
  dn_tensor_release(y);

  /* saves x (for w's gradient, w now requiring grad); change x under no_grad */
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_mul(&y, x, w));
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_binary_scalar_(x, DN_ADD, 1));
  dn_set_grad_enabled(mode);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "modified in place afterwards");
  dn_tensor_release(y);

  /* an op saving its output (exp) catches a change of the output */
  DN_OK_OR_FAIL(dn_unary(&y, DN_EXP, x));
  mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(y, 0));
  dn_set_grad_enabled(mode);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "exp saved for its backward was modified");
  dn_tensor_release(y);

  /* add saves nothing: changing its inputs afterwards is harmless */
  DN_OK_OR_FAIL(dn_add(&y, x, w));
  mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(x, 5));
  dn_set_grad_enabled(mode);
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  dn_tensor *list[] = {x, w, y, g};
  release_all(list, 4);
}

static void test_no_grad_records_nothing(void **state) {
  (void)state;
  int64_t shape[2] = {2, 3};
  dn_tensor *x = input(130, 2, shape, POSITIVE, false, true), *b = input(131, 1, (int64_t[]){3}, ANY, false, true);
  bool mode = dn_set_grad_enabled(false);
  dn_tensor *r[6];
  DN_OK_OR_FAIL(dn_binary(&r[0], DN_MUL, x, b));
  DN_OK_OR_FAIL(dn_binary_scalar(&r[1], DN_SUB, x, 1, true));
  DN_OK_OR_FAIL(dn_unary(&r[2], DN_LOG, x));
  DN_OK_OR_FAIL(dn_clamp(&r[3], x, 0, 1));
  DN_OK_OR_FAIL(dn_where(&r[4], x, x, b));
  DN_OK_OR_FAIL(dn_binary(&r[5], DN_POW, x, b));
  dn_set_grad_enabled(mode);
  for (int i = 0; i < 6; i++) {
    assert_null(r[i]->grad_fn);
    assert_false(r[i]->requires_grad);
  }
  release_all(r, 6);
  /* nor when no input requires grad */
  dn_tensor *c = input(132, 2, shape, ANY, false, false), *y;
  DN_OK_OR_FAIL(dn_unary(&y, DN_TANH, c));
  assert_null(y->grad_fn);
  dn_tensor_release(y);
  dn_tensor *list[] = {x, b, c};
  release_all(list, 3);
}

/* --- memory ------------------------------------------------------------------------------------------ */

static size_t live_bytes(void) {
  dn_alloc_stats stats;
  dn_alloc_get_stats(&stats);
  return stats.live_bytes;
}

static void training_step(dn_tensor *x, dn_tensor *w, dn_tensor *b) {
  dn_tensor *xw, *z, *r, *loss;
  DN_OK_OR_FAIL(dn_mul(&xw, x, w));
  DN_OK_OR_FAIL(dn_add(&z, xw, b));
  DN_OK_OR_FAIL(dn_unary(&r, DN_RELU, z));
  DN_OK_OR_FAIL(dn_sum_all(&loss, r));
  dn_tensor_release(xw);   /* the graph keeps what it needs */
  dn_tensor_release(z);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_backward(loss, NULL, false));
  dn_tensor_release(loss);
  dn_tensor_release(w->grad);   /* zero_grad */
  dn_tensor_release(b->grad);
  w->grad = b->grad = NULL;
}

static void test_training_loop_does_not_leak(void **state) {
  (void)state;
  int64_t xs[2] = {16, 8}, ws[1] = {8};
  dn_tensor *x = input(140, 2, xs, ANY, false, false), *w = input(141, 1, ws, ANY, false, true);
  dn_tensor *b = input(142, 1, ws, ANY, false, true);
  size_t before = live_bytes();
  training_step(x, w, b);
  assert_int_equal(live_bytes(), before);
  for (int step = 0; step < 1000; step++) training_step(x, w, b);
  assert_int_equal(live_bytes(), before);
  dn_tensor *list[] = {x, w, b};
  release_all(list, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_names),
    cmocka_unit_test(test_broadcast_shape),
    cmocka_unit_test(test_binary_all_ops_contiguous),
    cmocka_unit_test(test_binary_broadcast_and_noncontiguous),
    cmocka_unit_test(test_binary_row_shapes),
    cmocka_unit_test(test_binary_bad_input),
    cmocka_unit_test(test_int32_semantics),
    cmocka_unit_test(test_int32_pow),
    cmocka_unit_test(test_scalar_ops),
    cmocka_unit_test(test_inplace),
    cmocka_unit_test(test_inplace_overlap),
    cmocka_unit_test(test_unary_all_ops),
    cmocka_unit_test(test_unary_int32),
    cmocka_unit_test(test_special_values),
    cmocka_unit_test(test_clamp),
    cmocka_unit_test(test_where),
    cmocka_unit_test(test_empty_and_scalar_tensors),
    cmocka_unit_test(test_thread_count_determinism),
    cmocka_unit_test_setup(test_binary_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_binary_same_tensor_twice, dn_test_reset_modes),
    cmocka_unit_test_setup(test_mixed_int32_operand, dn_test_reset_modes),
    cmocka_unit_test_setup(test_comparisons_record_nothing, dn_test_reset_modes),
    cmocka_unit_test_setup(test_maximum_minimum_ties_split, dn_test_reset_modes),
    cmocka_unit_test_setup(test_pow_conventions_at_zero, dn_test_reset_modes),
    cmocka_unit_test_setup(test_scalar_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_unary_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_unary_conventions_at_kinks, dn_test_reset_modes),
    cmocka_unit_test_setup(test_clamp_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_where_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_layer_composite, dn_test_reset_modes),
    cmocka_unit_test_setup(test_empty_and_scalar_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_gradients_accumulate, dn_test_reset_modes),
    cmocka_unit_test_setup(test_internal_broadcast_records_no_view, dn_test_reset_modes),
    cmocka_unit_test_setup(test_backward_bit_identical_across_threads, dn_test_reset_modes),
    cmocka_unit_test_setup(test_inplace_on_tensor_requiring_grad_fails, dn_test_reset_modes),
    cmocka_unit_test_setup(test_version_counter_catches_modified_saved_tensor, dn_test_reset_modes),
    cmocka_unit_test_setup(test_no_grad_records_nothing, dn_test_reset_modes),
    cmocka_unit_test_setup(test_training_loop_does_not_leak, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
