/* The element-wise driver shared by unary.c, binary.c and clamp_where.c
   (elementwise.c), tested through the ops against naive double-precision
   loops: op names, broadcast shapes and their errors, strided, expanded and
   merged-row walks, the op-code and dtype checks, dtype promotion and int32
   overflow messages, in-place rules (broadcast into the target, dtypes,
   overlapping operands, tensors requiring grad, the version counter), empty
   and 0-dim tensors, the same bits for 1 and 2 threads (forward and
   backward), grad mode, gradients through a composite and their
   accumulation, and memory over a training loop. The ops themselves are in
   test_unary.c, test_binary.c and test_clamp_where.c; the references and
   input makers they share are in testutil_elementwise.c. */
#include "testutil.h"
#include "testutil_elementwise.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "graph.h"

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

/* --- gradients ---------------------------------------------------------------------- */

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
    cmocka_unit_test(test_binary_broadcast_and_noncontiguous),
    cmocka_unit_test(test_binary_row_shapes),
    cmocka_unit_test(test_binary_bad_input),
    cmocka_unit_test(test_int32_semantics),
    cmocka_unit_test(test_inplace),
    cmocka_unit_test(test_inplace_overlap),
    cmocka_unit_test(test_empty_and_scalar_tensors),
    cmocka_unit_test(test_thread_count_determinism),
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
