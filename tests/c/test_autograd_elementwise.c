/* Gradients of the element-wise ops (binary, scalar, unary, clamp, where),
   checked against central finite differences, plus the in-place rules, the
   version counter, grad mode and memory. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"

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

static void test_empty_and_scalar_tensors(void **state) {
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
    cmocka_unit_test_setup(test_empty_and_scalar_tensors, dn_test_reset_modes),
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
