/* Element-wise ops against naive double-precision loops: broadcasting, dtypes, in-place, NaN/inf, threads. */
#include "testutil.h"

#include <math.h>
#include <string.h>

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
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
