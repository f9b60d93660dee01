/* Gradients through the views (view, reshape, transpose, t, permute, narrow,
   select, unsqueeze, squeeze, broadcast_to) and chains of them, checked
   against central finite differences; plus names, grad mode and in-place
   writes through views. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"

/* A float32 leaf with values in [-2, 2], contiguous or not, requiring grad. */
static dn_tensor *leaf(uint64_t seed, int ndim, const int64_t *shape, bool noncontiguous) {
  dn_tensor *t = dn_test_random(seed, ndim, shape);
  if (noncontiguous) {
    dn_tensor *nc = dn_test_noncontiguous(t);
    dn_tensor_release(t);
    t = nc;
  }
  DN_OK_OR_FAIL(dn_requires_grad_(t, true));
  return t;
}

/* --- the finite-difference check -------------------------------------------------------- */

/* A view (or chain of ops) of x under test; ctx is the case's parameters. */
typedef dn_status (*forward_fn)(dn_tensor **out, dn_tensor *x, const void *ctx);

typedef struct view_case {
  forward_fn f;
  const void *ctx;
} view_case;

static dn_status apply_view(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const view_case *c = ctx;
  return c->f(out, in[0], c->ctx);
}

/*
** Views are linear, so the check is tight (eps 1e-2, tolerance 1e-3); it
** also catches elements routed to the wrong place.
*/
static void gradcheck(const char *label, forward_fn f, const void *ctx, dn_tensor *x) {
  view_case c = {f, ctx};
  dn_test_gradcheck(label, apply_view, &c, 1, &x, 1e-2, 1e-3, 1e-3);
}

/* Runs the check on a contiguous and a non-contiguous leaf of shape. */
static void check_both_layouts(const char *label, forward_fn f, const void *ctx, int ndim, const int64_t *shape) {
  for (int layout = 0; layout < 2; layout++) {
    dn_tensor *x = leaf(5 + (uint64_t)layout, ndim, shape, layout);
    char full[96];
    snprintf(full, sizeof full, "%s (%s)", label, layout ? "non-contiguous" : "contiguous");
    gradcheck(full, f, ctx, x);
    dn_tensor_release(x);
  }
}

/* --- single views ------------------------------------------------------------------------- */

typedef struct shape_case {
  int ndim;
  int64_t shape[4];
} shape_case;

static dn_status f_view(dn_tensor **out, dn_tensor *x, const void *ctx) {
  const shape_case *c = ctx;
  return dn_view(out, x, c->ndim, c->shape);
}

static dn_status f_reshape(dn_tensor **out, dn_tensor *x, const void *ctx) {
  const shape_case *c = ctx;
  return dn_reshape(out, x, c->ndim, c->shape);
}

static dn_status f_broadcast(dn_tensor **out, dn_tensor *x, const void *ctx) {
  const shape_case *c = ctx;
  return dn_broadcast_to(out, x, c->ndim, c->shape);
}

static dn_status f_transpose(dn_tensor **out, dn_tensor *x, const void *ctx) {
  const int *dims = ctx;
  return dn_transpose(out, x, dims[0], dims[1]);
}

static dn_status f_t(dn_tensor **out, dn_tensor *x, const void *ctx) {
  (void)ctx;
  return dn_t(out, x);
}

static dn_status f_permute(dn_tensor **out, dn_tensor *x, const void *ctx) { return dn_permute(out, x, ctx); }

typedef struct range_case {
  int dim;
  int64_t start, length;   /* select uses start as the index */
} range_case;

static dn_status f_narrow(dn_tensor **out, dn_tensor *x, const void *ctx) {
  const range_case *c = ctx;
  return dn_narrow(out, x, c->dim, c->start, c->length);
}

static dn_status f_select(dn_tensor **out, dn_tensor *x, const void *ctx) {
  const range_case *c = ctx;
  return dn_select(out, x, c->dim, c->start);
}

static dn_status f_unsqueeze(dn_tensor **out, dn_tensor *x, const void *ctx) {
  return dn_unsqueeze(out, x, *(const int *)ctx);
}

static dn_status f_squeeze(dn_tensor **out, dn_tensor *x, const void *ctx) {
  return dn_squeeze(out, x, *(const int *)ctx);
}

static void test_view_and_reshape(void **state) {
  (void)state;
  const int64_t x_shape[2] = {2, 6};
  const shape_case views[] = {{2, {3, 4}}, {1, {-1}}, {3, {2, 3, 2}}, {4, {1, 12, 1, 1}}};
  for (size_t i = 0; i < sizeof views / sizeof *views; i++) {
    char label[32];
    snprintf(label, sizeof label, "reshape %zu", i);
    check_both_layouts(label, f_reshape, &views[i], 2, x_shape);
    /* view needs a viewable layout: only the contiguous leaf */
    dn_tensor *x = leaf(1, 2, x_shape, false);
    snprintf(label, sizeof label, "view %zu", i);
    gradcheck(label, f_view, &views[i], x);
    dn_tensor_release(x);
  }
  /* 0-dim <-> 1-element */
  const shape_case one = {1, {1}}, scalar = {0, {0}};
  dn_tensor *s = leaf(2, 0, NULL, false);
  gradcheck("view 0-dim as [1]", f_view, &one, s);
  dn_tensor *v = leaf(3, 1, (int64_t[]){1}, false);
  gradcheck("view [1] as 0-dim", f_view, &scalar, v);
  dn_tensor_release(s);
  dn_tensor_release(v);
}

static void test_reshape_that_copies(void **state) {
  (void)state;
  /* a transposed tensor cannot be viewed flat: reshape copies (clone) then views */
  dn_tensor *x = leaf(4, 2, (int64_t[]){3, 4}, false), *xt, *flat;
  DN_OK_OR_FAIL(dn_transpose(&xt, x, 0, 1));
  DN_OK_OR_FAIL(dn_reshape(&flat, xt, 1, (int64_t[]){12}));
  assert_string_equal(dn_grad_fn_name(flat), "reshape");
  assert_string_equal(flat->grad_fn->next_fn[0]->type->name, "clone");
  assert_string_equal(flat->grad_fn->next_fn[0]->next_fn[0]->type->name, "transpose");
  assert_true(flat->storage != x->storage);
  dn_tensor *w = dn_test_random(9, 1, (int64_t[]){12});
  DN_OK_OR_FAIL(dn_backward(flat, w, false));
  /* flat[k] = xt[k / 3][k % 3] = x[k % 3][k / 3] */
  for (int64_t k = 0; k < 12; k++)
    assert_float_equal(dn_test_at(x->grad, (k % 3) * 4 + k / 3), dn_test_at(w, k), 0);
  dn_tensor *list[] = {x, xt, flat, w};
  for (int i = 0; i < 4; i++) dn_tensor_release(list[i]);
  /* and through the finite-difference check, on a non-contiguous leaf */
  const shape_case c = {2, {4, 3}};
  dn_tensor *nc = leaf(6, 2, (int64_t[]){3, 4}, true);
  gradcheck("reshape copying", f_reshape, &c, nc);
  dn_tensor_release(nc);
}

static void test_transpose_t_permute(void **state) {
  (void)state;
  const int64_t s3[3] = {2, 3, 4}, s2[2] = {3, 5}, s1[1] = {4};
  const int pairs[][2] = {{0, 1}, {0, 2}, {1, 2}, {-1, 0}, {1, 1}};
  for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
    char label[32];
    snprintf(label, sizeof label, "transpose %d %d", pairs[i][0], pairs[i][1]);
    check_both_layouts(label, f_transpose, pairs[i], 3, s3);
  }
  check_both_layouts("t 2-D", f_t, NULL, 2, s2);
  check_both_layouts("t 1-D", f_t, NULL, 1, s1);
  dn_tensor *s = leaf(7, 0, NULL, false);
  gradcheck("t 0-D", f_t, NULL, s);
  dn_tensor_release(s);
  const int perms[][3] = {{2, 0, 1}, {1, 2, 0}, {0, 1, 2}, {-1, 0, -2}};
  for (size_t i = 0; i < sizeof perms / sizeof *perms; i++) {
    char label[32];
    snprintf(label, sizeof label, "permute %zu", i);
    check_both_layouts(label, f_permute, perms[i], 3, s3);
  }
}

static void test_narrow_select(void **state) {
  (void)state;
  const int64_t s3[3] = {3, 4, 5};
  const range_case narrows[] = {{0, 1, 2}, {1, 0, 4}, {2, 2, 3}, {-1, 4, 1}, {1, 3, 0}};
  for (size_t i = 0; i < sizeof narrows / sizeof *narrows; i++) {
    char label[32];
    snprintf(label, sizeof label, "narrow %zu", i);
    if (narrows[i].length == 0) {   /* an empty window: zero gradient everywhere */
      dn_tensor *x = leaf(8, 3, s3, false), *v;
      DN_OK_OR_FAIL(dn_narrow(&v, x, narrows[i].dim, narrows[i].start, 0));
      dn_tensor *g;
      DN_OK_OR_FAIL(dn_tensor_zeros(&g, DN_F32, v->ndim, v->shape));
      DN_OK_OR_FAIL(dn_backward(v, g, false));
      for (int64_t j = 0; j < 60; j++) assert_true(dn_test_at(x->grad, j) == 0);
      dn_tensor_release(g);
      dn_tensor_release(v);
      dn_tensor_release(x);
      continue;
    }
    check_both_layouts(label, f_narrow, &narrows[i], 3, s3);
  }
  const range_case selects[] = {{0, 2, 0}, {1, 0, 0}, {2, 4, 0}, {-2, 3, 0}};
  for (size_t i = 0; i < sizeof selects / sizeof *selects; i++) {
    char label[32];
    snprintf(label, sizeof label, "select %zu", i);
    check_both_layouts(label, f_select, &selects[i], 3, s3);
  }
  /* select of a 1-D tensor gives a 0-dim one */
  const range_case one = {0, 2, 0};
  check_both_layouts("select 1-D", f_select, &one, 1, (int64_t[]){4});
}

static void test_unsqueeze_squeeze_broadcast(void **state) {
  (void)state;
  const int64_t s2[2] = {3, 4}, s3[3] = {3, 1, 4}, s1[2] = {3, 1};
  const int unsq[] = {0, 1, 2, -1, -3};
  for (size_t i = 0; i < sizeof unsq / sizeof *unsq; i++) {
    char label[32];
    snprintf(label, sizeof label, "unsqueeze %d", unsq[i]);
    check_both_layouts(label, f_unsqueeze, &unsq[i], 2, s2);
  }
  const int sq[] = {-1, 1, 0};
  for (size_t i = 0; i < sizeof sq / sizeof *sq; i++) {
    char label[32];
    snprintf(label, sizeof label, "squeeze %d", sq[i]);
    check_both_layouts(label, f_squeeze, &sq[i], 3, s3);
  }
  const shape_case from_col = {3, {2, 3, 4}}, same = {2, {3, 1}}, lead = {3, {5, 3, 1}};
  check_both_layouts("broadcast [3,1] to [2,3,4]", f_broadcast, &from_col, 2, s1);
  check_both_layouts("broadcast to the same shape", f_broadcast, &same, 2, s1);
  check_both_layouts("broadcast adding a dim", f_broadcast, &lead, 2, s1);
  const shape_case row = {2, {3, 4}};
  check_both_layouts("broadcast [4] to [3,4]", f_broadcast, &row, 1, (int64_t[]){4});
  dn_tensor *s = leaf(11, 0, NULL, false);
  gradcheck("broadcast 0-dim to [3,4]", f_broadcast, &row, s);
  dn_tensor_release(s);
}

/* --- chains ------------------------------------------------------------------------------------- */

/* narrow(transpose(x, 0, 1), 0, 1, 2) */
static dn_status f_narrow_of_transpose(dn_tensor **out, dn_tensor *x, const void *ctx) {
  (void)ctx;
  dn_tensor *t;
  dn_status st = dn_transpose(&t, x, 0, 1);
  if (st) return st;
  st = dn_narrow(out, t, 0, 1, 2);
  dn_tensor_release(t);
  return st;
}

/* select(view(x, [2,3,2]), 1, 2) */
static dn_status f_select_of_view(dn_tensor **out, dn_tensor *x, const void *ctx) {
  (void)ctx;
  dn_tensor *v;
  dn_status st = dn_reshape(&v, x, 3, (int64_t[]){2, 3, 2});
  if (st) return st;
  st = dn_select(out, v, 1, 2);
  dn_tensor_release(v);
  return st;
}

/* broadcast_to(unsqueeze(select(permute(x), 0, 1), 0), [2, ...]) * narrow(x...) : views feeding an op */
static dn_status f_long_chain(dn_tensor **out, dn_tensor *x, const void *ctx) {
  (void)ctx;
  dn_tensor *p = NULL, *s = NULL, *u = NULL, *b = NULL, *n = NULL, *sq = NULL;
  dn_status st = dn_permute(&p, x, (int[]){2, 0, 1});   /* [4,2,3] */
  if (!st) st = dn_select(&s, p, 0, 1);                  /* [2,3] */
  if (!st) st = dn_unsqueeze(&u, s, 0);                  /* [1,2,3] */
  if (!st) st = dn_broadcast_to(&b, u, 3, (int64_t[]){2, 2, 3});
  if (!st) st = dn_narrow(&n, x, 2, 1, 2);              /* [2,3,2] */
  if (!st) st = dn_reshape(&sq, n, 3, (int64_t[]){2, 2, 3});
  if (!st) st = dn_mul(out, b, sq);
  dn_tensor *list[] = {p, s, u, b, n, sq};
  for (int i = 0; i < 6; i++) dn_tensor_release(list[i]);
  return st;
}

/* two overlapping windows of x added: the overlap gets both gradients */
static dn_status f_overlapping_windows(dn_tensor **out, dn_tensor *x, const void *ctx) {
  (void)ctx;
  dn_tensor *a = NULL, *b = NULL;
  dn_status st = dn_narrow(&a, x, 0, 0, 3);
  if (!st) st = dn_narrow(&b, x, 0, 1, 3);
  if (!st) st = dn_add(out, a, b);
  dn_tensor_release(a);
  dn_tensor_release(b);
  return st;
}

/* t(squeeze(x)) with a size-1 dim, then a row of it */
static dn_status f_select_of_t_of_squeeze(dn_tensor **out, dn_tensor *x, const void *ctx) {
  (void)ctx;
  dn_tensor *q = NULL, *t = NULL;
  dn_status st = dn_squeeze(&q, x, -1);
  if (!st) st = dn_t(&t, q);
  if (!st) st = dn_select(out, t, 0, 2);
  dn_tensor_release(q);
  dn_tensor_release(t);
  return st;
}

static void test_chains(void **state) {
  (void)state;
  check_both_layouts("narrow(transpose(x))", f_narrow_of_transpose, NULL, 2, (int64_t[]){3, 4});
  check_both_layouts("select(view(x))", f_select_of_view, NULL, 2, (int64_t[]){3, 4});
  check_both_layouts("long chain", f_long_chain, NULL, 3, (int64_t[]){2, 3, 4});
  check_both_layouts("overlapping windows", f_overlapping_windows, NULL, 2, (int64_t[]){4, 3});
  check_both_layouts("select(t(squeeze(x)))", f_select_of_t_of_squeeze, NULL, 3, (int64_t[]){2, 1, 4});
}

/* --- names, grad mode, in-place through views ------------------------------------------------------- */

static void test_node_names(void **state) {
  (void)state;
  dn_tensor *x = leaf(20, 2, (int64_t[]){2, 3}, false), *v;
  struct {
    dn_status st;
    const char *name;
  } made[10];
  dn_tensor *views[10];
  made[0].st = dn_view(&views[0], x, 1, (int64_t[]){6}), made[0].name = "view";
  made[1].st = dn_reshape(&views[1], x, 1, (int64_t[]){6}), made[1].name = "reshape";
  made[2].st = dn_transpose(&views[2], x, 0, 1), made[2].name = "transpose";
  made[3].st = dn_t(&views[3], x), made[3].name = "t";
  made[4].st = dn_permute(&views[4], x, (int[]){1, 0}), made[4].name = "permute";
  made[5].st = dn_narrow(&views[5], x, 1, 0, 2), made[5].name = "narrow";
  made[6].st = dn_select(&views[6], x, 0, 1), made[6].name = "select";
  made[7].st = dn_unsqueeze(&views[7], x, 0), made[7].name = "unsqueeze";
  made[8].st = dn_squeeze(&views[8], x, -1), made[8].name = "squeeze";
  made[9].st = dn_broadcast_to(&views[9], x, 3, (int64_t[]){4, 2, 3}), made[9].name = "expand";
  for (int i = 0; i < 10; i++) {
    DN_OK_OR_FAIL(made[i].st);
    assert_string_equal(dn_grad_fn_name(views[i]), made[i].name);
    assert_true(views[i]->requires_grad);
    assert_true(views[i]->storage == x->storage);   /* still views */
    dn_tensor_release(views[i]);
  }
  /* views of a tensor not requiring grad record nothing */
  dn_tensor *c = dn_test_random(21, 2, (int64_t[]){2, 3});
  DN_OK_OR_FAIL(dn_transpose(&v, c, 0, 1));
  assert_null(v->grad_fn);
  assert_false(v->requires_grad);
  dn_tensor_release(v);
  dn_tensor_release(c);
  dn_tensor_release(x);
}

static void test_no_grad_views_record_nothing(void **state) {
  (void)state;
  dn_tensor *x = leaf(22, 2, (int64_t[]){2, 3}, false), *v[6];
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_view(&v[0], x, 1, (int64_t[]){6}));
  DN_OK_OR_FAIL(dn_transpose(&v[1], x, 0, 1));
  DN_OK_OR_FAIL(dn_narrow(&v[2], x, 1, 1, 2));
  DN_OK_OR_FAIL(dn_select(&v[3], x, 1, 1));
  DN_OK_OR_FAIL(dn_broadcast_to(&v[4], x, 3, (int64_t[]){2, 2, 3}));
  DN_OK_OR_FAIL(dn_reshape(&v[5], v[1], 1, (int64_t[]){6}));   /* the copying path */
  dn_set_grad_enabled(mode);
  for (int i = 0; i < 6; i++) {
    assert_null(v[i]->grad_fn);
    assert_false(v[i]->requires_grad);
    dn_tensor_release(v[i]);
  }
  dn_tensor_release(x);
}

static void test_inplace_through_views(void **state) {
  (void)state;
  dn_tensor *x = leaf(23, 2, (int64_t[]){2, 3}, false), *row, *win;
  DN_OK_OR_FAIL(dn_select(&row, x, 0, 1));
  DN_OK_OR_FAIL(dn_narrow(&win, x, 1, 0, 2));
  DN_EXPECT_ERROR(dn_fill_(row, 0), DN_EINVAL, "fill_: in-place operation on a tensor that requires grad");
  DN_EXPECT_ERROR(dn_tensor_set(win, (int64_t[]){0, 0}, 1), DN_EINVAL, "set: in-place operation");
  DN_EXPECT_ERROR(dn_binary_scalar_(win, DN_ADD, 1), DN_EINVAL, "add_: in-place operation");
  /* copying a tensor in the graph into a plain one would lose its gradient:
     refused in grad mode, a plain read under no_grad */
  dn_tensor *dst;
  DN_OK_OR_FAIL(dn_tensor_zeros(&dst, DN_F32, 2, (int64_t[]){4, 3}));
  DN_EXPECT_ERROR(dn_copy_(dst, row), DN_EINVAL, "copy_: the source requires grad");
  bool no_grad = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_copy_(dst, row));   /* broadcast [3] -> [4,3] */
  dn_set_grad_enabled(no_grad);
  assert_null(dst->grad_fn);
  assert_false(dst->requires_grad);
  for (int64_t i = 0; i < 12; i++) assert_float_equal(dn_test_at(dst, i), dn_test_at(x, 3 + i % 3), 0);
  /* a view saved by an op is caught by the version counter when its base changes */
  dn_tensor *y, *g;
  DN_OK_OR_FAIL(dn_unary(&y, DN_EXP, row));
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(x, 0));
  dn_set_grad_enabled(mode);
  DN_OK_OR_FAIL(dn_tensor_ones(&g, DN_F32, 1, (int64_t[]){3}));
  DN_OK_OR_FAIL(dn_backward(y, g, false));   /* exp saved its output, not x: fine */
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_mul(&y, row, row));
  mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(x, 1));
  dn_set_grad_enabled(mode);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "modified in place");
  dn_tensor *list[] = {x, row, win, dst, y, g};
  for (int i = 0; i < 6; i++) dn_tensor_release(list[i]);
}

static size_t live_bytes(void) {
  dn_alloc_stats stats;
  dn_alloc_get_stats(&stats);
  return stats.live_bytes;
}

/* Chains of views over many steps, with backward, leave no node or header behind. */
static void test_view_graphs_are_freed(void **state) {
  (void)state;
  dn_tensor *x = leaf(24, 3, (int64_t[]){2, 3, 4}, true);
  size_t before = live_bytes();
  for (int step = 0; step < 1000; step++) {
    dn_tensor *y, *g;
    DN_OK_OR_FAIL(f_long_chain(&y, x, NULL));
    DN_OK_OR_FAIL(dn_tensor_ones(&g, DN_F32, y->ndim, y->shape));
    DN_OK_OR_FAIL(dn_backward(y, g, false));
    dn_tensor_release(y);
    dn_tensor_release(g);
    dn_tensor_release(x->grad);
    x->grad = NULL;
  }
  assert_int_equal(live_bytes(), before);
  dn_tensor_release(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_view_and_reshape, dn_test_reset_modes),
    cmocka_unit_test_setup(test_reshape_that_copies, dn_test_reset_modes),
    cmocka_unit_test_setup(test_transpose_t_permute, dn_test_reset_modes),
    cmocka_unit_test_setup(test_narrow_select, dn_test_reset_modes),
    cmocka_unit_test_setup(test_unsqueeze_squeeze_broadcast, dn_test_reset_modes),
    cmocka_unit_test_setup(test_chains, dn_test_reset_modes),
    cmocka_unit_test_setup(test_node_names, dn_test_reset_modes),
    cmocka_unit_test_setup(test_no_grad_views_record_nothing, dn_test_reset_modes),
    cmocka_unit_test_setup(test_inplace_through_views, dn_test_reset_modes),
    cmocka_unit_test_setup(test_view_graphs_are_freed, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
