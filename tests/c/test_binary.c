/* The binary ops of binary.c (add, sub, mul, div, pow, comparisons,
   maximum, minimum) against naive double-precision loops: every op on
   float32, pow on int32 (exact, overflow, negative exponents), the scalar
   forms (tensor op s, s op tensor); their gradients by finite differences
   (broadcast operands, one side requiring grad, the same tensor twice, an
   int32 operand, the scalar forms), comparisons recording nothing, and the
   conventions at ties (maximum, minimum) and at zero (pow). Broadcasting,
   dtype promotion and in-place rules are the driver's: test_elementwise.c. */
#include "testutil.h"
#include "testutil_elementwise.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "graph.h"

/* A second operand that equals a at every third element, so eq/ne/le/ge see ties. */
static dn_tensor *with_ties(uint64_t seed, const dn_tensor *a) {
  dn_tensor *b = dn_test_random(seed, a->ndim, a->shape);
  float *d = dn_tensor_data(b);
  for (int64_t i = 0; i < dn_tensor_numel(b); i += 3) d[i] = (float)dn_test_at(a, i);
  return b;
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

/* --- gradients ---------------------------------------------------------------------- */

static dn_tensor *int_input(int ndim, const int64_t *shape, const double *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&t, DN_I32, ndim, shape, values));
  return t;
}

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

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_binary_all_ops_contiguous),
    cmocka_unit_test(test_int32_pow),
    cmocka_unit_test(test_scalar_ops),
    cmocka_unit_test_setup(test_binary_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_binary_same_tensor_twice, dn_test_reset_modes),
    cmocka_unit_test_setup(test_mixed_int32_operand, dn_test_reset_modes),
    cmocka_unit_test_setup(test_comparisons_record_nothing, dn_test_reset_modes),
    cmocka_unit_test_setup(test_maximum_minimum_ties_split, dn_test_reset_modes),
    cmocka_unit_test_setup(test_pow_conventions_at_zero, dn_test_reset_modes),
    cmocka_unit_test_setup(test_scalar_gradients, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
