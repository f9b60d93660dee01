/* The autograd engine itself: recording, ordering, accumulation, freed
   graphs, version checks, grad mode and memory. Uses clone (identity) and
   a test-local "square" op that saves its input. */
#include "testutil.h"

#include <string.h>

#include "graph.h"

/* y = x * x elementwise, with a saved input: a minimal differentiable op. */
static dn_status square_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_tensor *x, *two_x;
  dn_status st = dn_node_saved(node, 0, &x);
  if (st) return st;
  st = dn_binary_scalar(&two_x, DN_MUL, x, 2.0, false);
  if (st) return st;
  st = dn_mul(&grad_in[0], grad, two_x);
  dn_tensor_release(two_x);
  return st;
}
static const dn_node_type square_node = {.name = "square", .backward = square_backward};

static dn_tensor *square(dn_tensor *x) {
  dn_tensor *y;
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_mul(&y, x, x));
  dn_set_grad_enabled(mode);
  dn_node *node;
  DN_OK_OR_FAIL(dn_record(y, &square_node, 1, (const dn_tensor *[]){x}, &node));
  if (node) DN_OK_OR_FAIL(dn_node_save(node, 0, x));
  return y;
}

static dn_tensor *leaf(float a, float b, float c) {
  dn_tensor *x = dn_test_from(1, (int64_t[]){3}, (float[]){a, b, c});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  return x;
}

static void test_chain_and_accumulation(void **state) {
  (void)state;
  dn_tensor *x = leaf(1, 2, 3);
  dn_tensor *c = NULL, *y;
  DN_OK_OR_FAIL(dn_clone(&c, x));
  assert_string_equal(dn_grad_fn_name(c), "clone");
  y = square(c);                           /* y = x^2 */
  dn_tensor *g = dn_test_from(1, (int64_t[]){3}, (float[]){1, 1, 1});
  DN_OK_OR_FAIL(dn_backward(y, g, true));
  assert_non_null(x->grad);
  for (int i = 0; i < 3; i++) assert_true(dn_test_at(x->grad, i) == 2.0 * (i + 1));
  DN_OK_OR_FAIL(dn_backward(y, g, false));  /* accumulates: 4x */
  for (int i = 0; i < 3; i++) assert_true(dn_test_at(x->grad, i) == 4.0 * (i + 1));
  /* the graph is freed now */
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "already freed");
  dn_tensor *list[] = {x, c, y, g};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_diamond_sums_both_paths(void **state) {
  (void)state;
  /* z = square(x) + clone(x) through one node using x twice: dz/dx = 2x + 1 */
  dn_tensor *x = leaf(1, -2, 0.5f);
  dn_tensor *a = square(x), *b;
  DN_OK_OR_FAIL(dn_clone(&b, x));
  /* join a and b with a test node that passes the gradient to both */
  dn_tensor *z = square(a);   /* z = x^4: dz/dx = 4x^3 */
  dn_tensor *g = dn_test_from(1, (int64_t[]){3}, (float[]){1, 1, 1});
  DN_OK_OR_FAIL(dn_backward(z, g, false));
  DN_OK_OR_FAIL(dn_backward(b, g, false));
  float expect[3] = {4 + 1, -32 + 1, 0.5f + 1};
  for (int i = 0; i < 3; i++) assert_float_equal(dn_test_at(x->grad, i), expect[i], 1e-5);
  dn_tensor *list[] = {x, a, b, z, g};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_inplace_change_of_saved_tensor_is_caught(void **state) {
  (void)state;
  dn_tensor *x = leaf(1, 2, 3), *c;
  DN_OK_OR_FAIL(dn_clone(&c, x));
  dn_tensor *y = square(c);
  DN_EXPECT_ERROR(dn_fill_(x, 0), DN_EINVAL, "in-place operation on a tensor that requires grad");
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(c, 5));            /* c was saved by square */
  dn_set_grad_enabled(mode);
  dn_tensor *g = dn_test_from(1, (int64_t[]){3}, (float[]){1, 1, 1});
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "modified in place");
  dn_tensor *list[] = {x, c, y, g};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_grad_mode_and_requires_grad_rules(void **state) {
  (void)state;
  dn_tensor *x = leaf(1, 2, 3), *c;
  bool mode = dn_set_grad_enabled(false);
  assert_true(mode);
  DN_OK_OR_FAIL(dn_clone(&c, x));
  assert_null(c->grad_fn);
  assert_false(c->requires_grad);
  dn_set_grad_enabled(true);
  DN_EXPECT_ERROR(dn_backward(c, NULL, false), DN_EINVAL, "does not require grad");
  dn_tensor *ints;
  DN_OK_OR_FAIL(dn_tensor_zeros(&ints, DN_I32, 1, (int64_t[]){2}));
  DN_EXPECT_ERROR(dn_requires_grad_(ints, true), DN_ETYPE, "only float32");
  dn_tensor *y = square(x);
  DN_EXPECT_ERROR(dn_backward(y, NULL, false), DN_ESHAPE, "only for a result with one element");
  dn_tensor *bad = dn_test_from(1, (int64_t[]){2}, (float[]){1, 1});
  DN_EXPECT_ERROR(dn_backward(y, bad, false), DN_ESHAPE, "does not match");
  DN_EXPECT_ERROR(dn_requires_grad_(y, false), DN_EINVAL, "not a leaf");
  dn_tensor *d;
  DN_OK_OR_FAIL(dn_detach(&d, y));
  assert_false(d->requires_grad);
  assert_ptr_equal(d->storage, y->storage);
  dn_tensor *list[] = {x, c, ints, y, bad, d};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_leaf_backward(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(0, NULL, (float[]){3});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_backward(x, NULL, false));
  assert_true(dn_test_at(x->grad, 0) == 1);
  dn_tensor_release(x);
}

static void test_deep_chain_is_freed_without_recursion(void **state) {
  (void)state;
  dn_alloc_stats before, after;
  dn_tensor *x = leaf(1, 2, 3);
  dn_alloc_get_stats(&before);
  dn_tensor *t = dn_tensor_retain(x);
  for (int i = 0; i < 200000; i++) {   /* deep enough to overflow a recursive release */
    dn_tensor *next;
    DN_OK_OR_FAIL(dn_clone(&next, t));
    dn_tensor_release(t);
    t = next;
  }
  dn_tensor *g = dn_test_from(1, (int64_t[]){3}, (float[]){1, 1, 1});
  DN_OK_OR_FAIL(dn_backward(t, g, false));
  for (int i = 0; i < 3; i++) assert_true(dn_test_at(x->grad, i) == 1);
  dn_tensor_release(t);
  dn_tensor_release(g);
  dn_tensor *grad = x->grad;
  x->grad = NULL;
  dn_tensor_release(grad);
  dn_alloc_get_stats(&after);
  assert_int_equal(after.live_bytes, before.live_bytes);   /* every node and tensor gone */
  dn_tensor_release(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_chain_and_accumulation),
    cmocka_unit_test(test_diamond_sums_both_paths),
    cmocka_unit_test(test_inplace_change_of_saved_tensor_is_caught),
    cmocka_unit_test(test_grad_mode_and_requires_grad_rules),
    cmocka_unit_test(test_leaf_backward),
    cmocka_unit_test(test_deep_chain_is_freed_without_recursion),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
