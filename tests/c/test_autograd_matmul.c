/*
** Gradients of matmul (2-D, batched 3-D, broadcast batches, 3-D@2-D, 1-D
** cases, transposed/narrowed/expanded operands) and index_select (repeated
** indices, any dim): central finite differences, exact values, what is
** saved, accumulation, and determinism across thread counts.
*/
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"

/* --- finite-difference check ------------------------------------------------------- */

/* Makes every input a leaf that requires grad, then checks its grad against
   central differences (tolerance tol, relative and absolute). */
static void gradcheck(const char *what, dn_test_fn f, const void *ctx, int n_in, dn_tensor *const *in, double eps,
                      double tol) {
  for (int i = 0; i < n_in; i++) DN_OK_OR_FAIL(dn_requires_grad_(in[i], true));
  dn_test_gradcheck(what, f, ctx, n_in, in, eps, tol, tol);
}

/* --- matmul ----------------------------------------------------------------------------- */

/* Operand layouts for a leaf of a given logical shape. */
enum { PLAIN, TRANSPOSED, NARROWED };

/* A leaf with shape's values random and its last two dims stored per layout. */
static dn_tensor *leaf(uint64_t seed, int ndim, const int64_t *shape, int layout) {
  dn_tensor *t = dn_test_random(seed, ndim, shape);
  if (layout == PLAIN || ndim < 2) return t;
  dn_tensor *v;
  if (layout == TRANSPOSED) {
    v = dn_test_noncontiguous(t);   /* stored transposed: goes to sgemm with the flag */
  } else {
    int64_t wide[DN_MAX_DIMS];
    memcpy(wide, shape, (size_t)ndim * sizeof *wide);
    wide[ndim - 1] += 5;   /* leading dim larger than the width */
    dn_tensor *big = dn_test_random(seed + 1, ndim, wide);
    DN_OK_OR_FAIL(dn_narrow(&v, big, ndim - 1, 3, shape[ndim - 1]));
    DN_OK_OR_FAIL(dn_copy_(v, t));
    dn_tensor_release(big);
  }
  dn_tensor_release(t);
  return v;
}

static dn_status matmul_op(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  (void)ctx;
  return dn_matmul(out, in[0], in[1]);
}

typedef struct shapes {
  int nda, ndb;
  int64_t sa[3], sb[3];
} shapes;

static void check_matmul(const shapes *s, int layout_a, int layout_b) {
  dn_tensor *in[2] = {leaf(1, s->nda, s->sa, layout_a), leaf(2, s->ndb, s->sb, layout_b)};
  char what[200], sa[64], sb[64];
  snprintf(what, sizeof what, "matmul %s (layout %d) @ %s (layout %d)", dn_shape_str(in[0], sa, sizeof sa),
           layout_a, dn_shape_str(in[1], sb, sizeof sb), layout_b);
  gradcheck(what, matmul_op, NULL, 2, in, 1e-2, 2e-3);
  dn_tensor_release(in[0]);
  dn_tensor_release(in[1]);
}

static void test_matmul_gradcheck(void **state) {
  (void)state;
  const shapes cases[] = {
      {2, 2, {3, 4}, {4, 5}},           /* plain */
      {2, 2, {1, 6}, {6, 1}},           /* row times column */
      {3, 3, {2, 3, 4}, {2, 4, 5}},     /* batched */
      {3, 3, {1, 3, 4}, {3, 4, 2}},     /* a's batch of 1 broadcasts: dA sums over the batch */
      {3, 3, {3, 3, 4}, {1, 4, 2}},     /* b's batch of 1 broadcasts: dB sums (one folded sgemm) */
      {3, 2, {3, 2, 4}, {4, 5}},        /* 3-D @ 2-D (Linear over [B, T, F]) */
      {2, 3, {2, 4}, {3, 4, 5}},        /* 2-D @ 3-D */
      {1, 1, {5}, {5}},                 /* dot */
      {1, 2, {4}, {4, 3}},              /* vector @ matrix */
      {2, 1, {3, 4}, {4}},              /* matrix @ vector */
      {1, 3, {4}, {2, 4, 3}},           /* vector @ batch */
      {3, 1, {2, 3, 4}, {4}},           /* batch @ vector */
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (int la = PLAIN; la <= NARROWED; la++)
      for (int lb = PLAIN; lb <= NARROWED; lb++) check_matmul(&cases[c], la, lb);
}

/* matmul(expand(a), b): the expanded operand has a stride-0 batch, and the expand node sums its grad. */
static dn_status expanded_matmul(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const int *which = ctx;
  dn_tensor *e, *a = in[0], *b = in[1];
  int64_t batch = 3;
  dn_tensor *src = *which == 0 ? a : b;
  int64_t shape[3] = {batch, src->shape[1], src->shape[2]};
  dn_status st = dn_broadcast_to(&e, src, 3, shape);
  if (st) return st;
  st = *which == 0 ? dn_matmul(out, e, b) : dn_matmul(out, a, e);
  dn_tensor_release(e);
  return st;
}

static void test_matmul_expanded_and_shared(void **state) {
  (void)state;
  for (int which = 0; which < 2; which++) {
    dn_tensor *in[2] = {dn_test_random(3, 3, (int64_t[]){which ? 3 : 1, 2, 4}),
                        dn_test_random(4, 3, (int64_t[]){which ? 1 : 3, 4, 5})};
    gradcheck(which ? "matmul(a, expand(b))" : "matmul(expand(a), b)", expanded_matmul, &which, 2, in, 1e-2, 2e-3);
    dn_tensor_release(in[0]);
    dn_tensor_release(in[1]);
  }

  /* one leaf used twice (x @ x): both gradients add up, G x^T + x^T G */
  dn_tensor *x = dn_test_random(5, 2, (int64_t[]){3, 3}), *out;
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_matmul(&out, x, x));
  dn_tensor *g = dn_test_random(6, 2, (int64_t[]){3, 3});
  DN_OK_OR_FAIL(dn_backward(out, g, false));
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) {
      double want = 0;
      for (int k = 0; k < 3; k++)
        want += dn_test_at(g, i * 3 + k) * dn_test_at(x, j * 3 + k) + dn_test_at(x, k * 3 + i) * dn_test_at(g, k * 3 + j);
      assert_true(fabs(dn_test_at(x->grad, i * 3 + j) - want) < 1e-5);
    }
  dn_tensor_release(g);
  dn_tensor_release(out);
  dn_tensor_release(x);
}

/* Against naive loops: dA = G B^T, dB = A^T G with the batch sum, on a folded case. */
static void test_matmul_against_reference(void **state) {
  (void)state;
  int64_t batch = 4, n = 5, k = 6, m = 7;
  dn_tensor *a = dn_test_random(7, 3, (int64_t[]){batch, n, k}), *b = dn_test_random(8, 2, (int64_t[]){k, m});
  dn_tensor *g = dn_test_random(9, 3, (int64_t[]){batch, n, m}), *out;
  DN_OK_OR_FAIL(dn_requires_grad_(a, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  DN_OK_OR_FAIL(dn_matmul(&out, a, b));
  assert_string_equal(dn_grad_fn_name(out), "matmul");
  DN_OK_OR_FAIL(dn_backward(out, g, false));
  for (int64_t bi = 0; bi < batch; bi++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < k; j++) {
        double want = 0;
        for (int64_t c = 0; c < m; c++) want += dn_test_at(g, (bi * n + i) * m + c) * dn_test_at(b, j * m + c);
        assert_true(fabs(dn_test_at(a->grad, (bi * n + i) * k + j) - want) < 1e-5);
      }
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = 0; j < m; j++) {
      double want = 0;
      for (int64_t bi = 0; bi < batch; bi++)
        for (int64_t r = 0; r < n; r++) want += dn_test_at(a, (bi * n + r) * k + i) * dn_test_at(g, (bi * n + r) * m + j);
      assert_true(fabs(dn_test_at(b->grad, i * m + j) - want) < 1e-5);
    }
  dn_tensor_release(out);
  dn_tensor_release(g);
  dn_tensor_release(b);
  dn_tensor_release(a);
}

/* Only inputs that require grad get one, and the node saves only what their gradient reads. */
static void test_matmul_saves_what_it_needs(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(1, 2, (int64_t[]){2, 3}), *b = dn_test_random(2, 2, (int64_t[]){3, 4}), *out;
  DN_OK_OR_FAIL(dn_requires_grad_(a, true));
  DN_OK_OR_FAIL(dn_matmul(&out, a, b));
  assert_null(out->grad_fn->saved[0]);       /* a is not needed: only dA = G B^T */
  assert_non_null(out->grad_fn->saved[1]);
  dn_tensor *g = dn_test_random(3, 2, (int64_t[]){2, 4});
  DN_OK_OR_FAIL(dn_backward(out, g, false));
  assert_non_null(a->grad);
  assert_null(b->grad);
  dn_tensor_release(out);

  /* in-place change of the saved operand is caught */
  DN_OK_OR_FAIL(dn_matmul(&out, a, b));
  DN_OK_OR_FAIL(dn_tensor_set(b, (int64_t[]){0, 0}, 3.0));
  DN_EXPECT_ERROR(dn_backward(out, g, false), DN_EINVAL, "modified in place");
  dn_tensor_release(out);

  /* grad mode off: nothing recorded */
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_matmul(&out, a, b));
  dn_set_grad_enabled(mode);
  assert_false(out->requires_grad);
  assert_null(out->grad_fn);
  dn_tensor_release(out);

  /* neither requires grad */
  DN_OK_OR_FAIL(dn_requires_grad_(a, false));
  DN_OK_OR_FAIL(dn_matmul(&out, a, b));
  assert_null(out->grad_fn);
  dn_tensor_release(out);
  dn_tensor_release(g);
  dn_tensor_release(b);
  dn_tensor_release(a);
}

static void test_matmul_accumulates(void **state) {
  (void)state;
  dn_tensor *a = leaf(1, 3, (int64_t[]){2, 3, 4}, TRANSPOSED), *b = leaf(2, 2, (int64_t[]){4, 5}, PLAIN), *out;
  DN_OK_OR_FAIL(dn_requires_grad_(a, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  DN_OK_OR_FAIL(dn_matmul(&out, a, b));
  dn_tensor *g = dn_test_random(3, 3, (int64_t[]){2, 3, 5}), *ga, *gb;
  DN_OK_OR_FAIL(dn_backward(out, g, true));
  DN_OK_OR_FAIL(dn_clone(&ga, a->grad));
  DN_OK_OR_FAIL(dn_clone(&gb, b->grad));
  DN_OK_OR_FAIL(dn_backward(out, g, true));
  for (int64_t i = 0; i < dn_tensor_numel(a); i++) assert_true(dn_test_at(a->grad, i) == 2 * dn_test_at(ga, i));
  for (int64_t i = 0; i < dn_tensor_numel(b); i++) assert_true(dn_test_at(b->grad, i) == 2 * dn_test_at(gb, i));
  dn_tensor_release(ga);
  dn_tensor_release(gb);
  dn_tensor_release(g);
  dn_tensor_release(out);
  dn_tensor_release(b);
  dn_tensor_release(a);
}

/* Empty products give zero (or empty) gradients of the inputs' shapes. */
static void test_matmul_empty(void **state) {
  (void)state;
  const shapes cases[] = {{2, 2, {0, 3}, {3, 4}}, {2, 2, {2, 0}, {0, 3}}, {3, 3, {0, 2, 3}, {1, 3, 4}}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    dn_tensor *a, *b, *out, *g;
    DN_OK_OR_FAIL(dn_tensor_ones(&a, DN_F32, cases[c].nda, cases[c].sa));
    DN_OK_OR_FAIL(dn_tensor_ones(&b, DN_F32, cases[c].ndb, cases[c].sb));
    DN_OK_OR_FAIL(dn_requires_grad_(a, true));
    DN_OK_OR_FAIL(dn_requires_grad_(b, true));
    DN_OK_OR_FAIL(dn_matmul(&out, a, b));
    DN_OK_OR_FAIL(dn_tensor_ones(&g, DN_F32, out->ndim, out->shape));
    DN_OK_OR_FAIL(dn_backward(out, g, false));
    assert_true(dn_same_shape(a->grad, a) && dn_same_shape(b->grad, b));
    for (int64_t i = 0; i < dn_tensor_numel(a); i++) assert_true(dn_test_at(a->grad, i) == 0);
    for (int64_t i = 0; i < dn_tensor_numel(b); i++) assert_true(dn_test_at(b->grad, i) == 0);
    dn_tensor_release(g);
    dn_tensor_release(out);
    dn_tensor_release(b);
    dn_tensor_release(a);
  }
}

/* matmul_into writes behind the graph's back: an error with grad mode on, fine under no_grad. */
static void test_matmul_into_not_differentiable(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(1, 2, (int64_t[]){2, 3}), *b = dn_test_random(2, 2, (int64_t[]){3, 4}), *out;
  DN_OK_OR_FAIL(dn_tensor_zeros(&out, DN_F32, 2, (int64_t[]){2, 4}));
  DN_OK_OR_FAIL(dn_matmul_into(out, a, b, 1.0f, 0.0f));   /* nothing requires grad */
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  DN_EXPECT_ERROR(dn_matmul_into(out, a, b, 1.0f, 0.0f), DN_EINVAL, "matmul_into: not differentiable");
  DN_EXPECT_ERROR(dn_matmul_into(out, a, b, 1.0f, 0.0f), DN_EINVAL, "b requires grad");
  DN_OK_OR_FAIL(dn_requires_grad_(b, false));
  DN_OK_OR_FAIL(dn_requires_grad_(a, true));
  DN_EXPECT_ERROR(dn_matmul_into(out, a, b, 1.0f, 0.0f), DN_EINVAL, "a requires grad");
  DN_OK_OR_FAIL(dn_requires_grad_(a, false));
  DN_OK_OR_FAIL(dn_requires_grad_(out, true));
  DN_EXPECT_ERROR(dn_matmul_into(out, a, b, 1.0f, 1.0f), DN_EINVAL, "out requires grad");
  DN_OK_OR_FAIL(dn_requires_grad_(a, true));
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_matmul_into(out, a, b, 1.0f, 0.0f));
  dn_set_grad_enabled(mode);
  assert_null(out->grad_fn);
  dn_tensor_release(out);
  dn_tensor_release(b);
  dn_tensor_release(a);
}

/* Gradients of every leaf in `in` for f and output gradient seed; returned (new references) in grads. */
static void grads_of(dn_test_fn f, const void *ctx, int n_in, dn_tensor *const *in, uint64_t seed, dn_tensor **grads) {
  for (int i = 0; i < n_in; i++) {
    dn_tensor_release(in[i]->grad);
    in[i]->grad = NULL;
    DN_OK_OR_FAIL(dn_requires_grad_(in[i], true));
  }
  dn_tensor *out;
  DN_OK_OR_FAIL(f(&out, in, ctx));
  dn_tensor *g = dn_test_random(seed, out->ndim, out->shape);
  DN_OK_OR_FAIL(dn_backward(out, g, false));
  for (int i = 0; i < n_in; i++) {
    grads[i] = in[i]->grad;
    in[i]->grad = NULL;
  }
  dn_tensor_release(g);
  dn_tensor_release(out);
}

static void assert_same_bits(const char *what, const dn_tensor *x, const dn_tensor *y) {
  assert_true(dn_same_shape(x, y));
  if (memcmp(dn_tensor_data(x), dn_tensor_data(y), (size_t)dn_tensor_numel(x) * sizeof(float)))
    fail_msg("%s: gradients differ between 1 and 2 threads", what);
}

static void test_matmul_threads_bit_identical(void **state) {
  (void)state;
  int threads = dn_get_num_threads();
  const shapes cases[] = {
      {2, 2, {160, 300}, {300, 200}},
      {3, 2, {4, 64, 150}, {150, 96}},        /* dB folded over the batch */
      {3, 3, {1, 64, 150}, {4, 150, 96}},     /* dA summed over the batch */
      {3, 3, {4, 64, 150}, {4, 150, 96}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    for (int layout = PLAIN; layout <= TRANSPOSED; layout++) {
      dn_tensor *in[2] = {leaf(1, cases[c].nda, cases[c].sa, layout), leaf(2, cases[c].ndb, cases[c].sb, layout)};
      dn_tensor *grads[2][2];
      for (int t = 0; t < 2; t++) {
        DN_OK_OR_FAIL(dn_set_num_threads(t + 1));
        grads_of(matmul_op, NULL, 2, in, 3, grads[t]);
      }
      char what[64];
      snprintf(what, sizeof what, "matmul case %zu layout %d dA", c, layout);
      assert_same_bits(what, grads[0][0], grads[1][0]);
      snprintf(what, sizeof what, "matmul case %zu layout %d dB", c, layout);
      assert_same_bits(what, grads[0][1], grads[1][1]);
      for (int i = 0; i < 2; i++) {
        dn_tensor_release(grads[i][0]);
        dn_tensor_release(grads[i][1]);
        dn_tensor_release(in[i]);
      }
    }
  }
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
}

/* --- index_select ---------------------------------------------------------------------- */

typedef struct select_case {
  int dim;
  const dn_tensor *index;
  int64_t base;
} select_case;

static dn_status index_select_op(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const select_case *c = ctx;
  return dn_index_select(out, in[0], c->dim, c->index, c->base);
}

static dn_tensor *int_tensor(int64_t n, const int32_t *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_I32, 1, &n, values));
  return t;
}

static void test_index_select_gradcheck(void **state) {
  (void)state;
  dn_tensor *index = int_tensor(5, (int32_t[]){2, 0, 2, 2, 1});   /* repeats add up */
  for (int layout = PLAIN; layout <= NARROWED; layout++) {
    for (int dim = -3; dim < 3; dim++) {
      dn_tensor *x = leaf(10 + (uint64_t)dim, 3, (int64_t[]){3, 3, 4}, layout);
      select_case c = {dim, index, 0};
      char what[96];
      snprintf(what, sizeof what, "index_select dim %d layout %d", dim, layout);
      gradcheck(what, index_select_op, &c, 1, &x, 1e-2, 2e-3);
      dn_tensor_release(x);
    }
  }
  dn_tensor_release(index);
}

/* grad of index_select: each row of a gets the sum of the gradient rows that picked it. */
static void test_index_select_exact(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(1, 2, (int64_t[]){4, 3}), *out;
  dn_tensor *index = int_tensor(6, (int32_t[]){3, 1, 3, 3, 1, 2});   /* base 1: rows 2, 0, 2, 2, 0, 1 */
  DN_OK_OR_FAIL(dn_requires_grad_(a, true));
  DN_OK_OR_FAIL(dn_index_select(&out, a, 0, index, 1));
  assert_string_equal(dn_grad_fn_name(out), "index_select");
  dn_tensor *g = dn_test_random(2, 2, (int64_t[]){6, 3});
  DN_OK_OR_FAIL(dn_backward(out, g, false));
  const int rows[6] = {2, 0, 2, 2, 0, 1};
  for (int r = 0; r < 4; r++)
    for (int c = 0; c < 3; c++) {
      float want = 0;   /* in index order, as the kernel adds */
      for (int j = 0; j < 6; j++)
        if (rows[j] == r) want += (float)dn_test_at(g, j * 3 + c);
      assert_true(dn_test_at(a->grad, r * 3 + c) == want);
    }
  dn_tensor_release(g);
  dn_tensor_release(out);
  dn_tensor_release(index);

  /* an empty index: zero gradient */
  index = int_tensor(0, (int32_t[]){0});   /* from_data memcpy()s from the pointer even for 0 elements */
  DN_OK_OR_FAIL(dn_index_select(&out, a, 1, index, 0));
  DN_OK_OR_FAIL(dn_tensor_new(&g, DN_F32, out->ndim, out->shape));
  DN_OK_OR_FAIL(dn_backward(out, g, false));   /* accumulates zeros into a->grad */
  dn_tensor_release(g);
  dn_tensor_release(out);
  dn_tensor_release(index);

  /* one_hot takes int32 indices: never recorded */
  index = int_tensor(3, (int32_t[]){0, 2, 1});
  DN_OK_OR_FAIL(dn_one_hot(&out, index, 3, 0));
  assert_false(out->requires_grad);
  assert_null(out->grad_fn);
  dn_tensor_release(out);
  dn_tensor_release(index);
  dn_tensor_release(a);
}

static void test_index_select_threads_bit_identical(void **state) {
  (void)state;
  int threads = dn_get_num_threads();
  int32_t values[6000];
  for (int i = 0; i < 6000; i++) values[i] = (int32_t)((i * 7919) % 1500);   /* each row picked 4 times */
  dn_tensor *index = int_tensor(6000, values);
  const int64_t shapes_[3][2] = {{1500, 40}, {40, 1500}, {3, 1500}};
  const int dims[3] = {0, 1, -1};
  for (int c = 0; c < 3; c++) {
    for (int layout = PLAIN; layout <= TRANSPOSED; layout++) {
      dn_tensor *x = leaf(5, 2, shapes_[c], layout), *grads[2];
      select_case sc = {dims[c], index, 0};
      for (int t = 0; t < 2; t++) {
        DN_OK_OR_FAIL(dn_set_num_threads(t + 1));
        grads_of(index_select_op, &sc, 1, &x, 4, &grads[t]);
      }
      assert_same_bits("index_select", grads[0], grads[1]);
      dn_tensor_release(grads[0]);
      dn_tensor_release(grads[1]);
      dn_tensor_release(x);
    }
  }
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
  dn_tensor_release(index);
}

#define TEST(f) cmocka_unit_test_setup(f, dn_test_reset_modes)

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_matmul_gradcheck),
      TEST(test_matmul_expanded_and_shared),
      TEST(test_matmul_against_reference),
      TEST(test_matmul_saves_what_it_needs),
      TEST(test_matmul_accumulates),
      TEST(test_matmul_empty),
      TEST(test_matmul_into_not_differentiable),
      TEST(test_matmul_threads_bit_identical),
      TEST(test_index_select_gradcheck),
      TEST(test_index_select_exact),
      TEST(test_index_select_threads_bit_identical),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
