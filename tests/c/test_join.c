/* cat and stack (join.c) against a naive reference (each output element
   read back from the input it comes from): dims (negative too), every dtype,
   contiguous and non-contiguous inputs mixed, PyTorch's skipped 1-D empty
   tensors and other empty inputs, many inputs (the node with more inputs
   than DN_NODE_INPUTS), bit-identical results for 1 and 2 threads, every
   bad argument's message; gradients by finite differences and exact slices,
   inputs that repeat, come from other nodes or do not require grad, and
   release of a wide graph (ASan). */
#include "testutil.h"

#include <stdio.h>
#include <string.h>
#include "graph.h"
#include "shape.h"

#define RELEASE(...)                                                         \
  do {                                                                       \
    dn_tensor *list_[] = {__VA_ARGS__};                                      \
    for (size_t i_ = 0; i_ < sizeof list_ / sizeof list_[0]; i_++) dn_tensor_release(list_[i_]); \
  } while (0)

/* Element at full index idx of t, any dtype. */
static double at_index(const dn_tensor *t, const int64_t *idx) {
  int64_t i = 0;
  for (int d = 0; d < t->ndim; d++) i = i * t->shape[d] + idx[d];
  return dn_test_at(t, i);
}

/* Checks out == cat(parts, dim) element by element (skipped: 1-D empty parts, when others are not). */
static void expect_cat(const dn_tensor *out, dn_tensor *const *parts, int n, int dim) {
  int64_t idx[DN_MAX_DIMS];
  for (int64_t e = 0; e < dn_tensor_numel(out); e++) {
    int64_t rest = e;
    for (int d = out->ndim - 1; d >= 0; d--) {
      idx[d] = rest % out->shape[d];
      rest /= out->shape[d];
    }
    int64_t pos = idx[dim];
    int k = 0;
    for (; k < n; k++) {
      if (parts[k]->ndim != out->ndim) continue;   /* skipped */
      if (pos < parts[k]->shape[dim]) break;
      pos -= parts[k]->shape[dim];
    }
    if (k == n) fail_msg("cat: element %lld has no source", (long long)e);
    int64_t src[DN_MAX_DIMS];
    memcpy(src, idx, sizeof src);
    src[dim] = pos;
    double want = at_index(parts[k], src), got = dn_test_at(out, e);
    if (got != want) fail_msg("cat: element %lld is %g, expected %g (tensor %d)", (long long)e, got, want, k + 1);
  }
}

/* out == stack(parts, dim). */
static void expect_stack(const dn_tensor *out, dn_tensor *const *parts, int n, int dim) {
  int64_t idx[DN_MAX_DIMS], src[DN_MAX_DIMS];
  assert_int_equal(out->shape[dim], n);
  for (int64_t e = 0; e < dn_tensor_numel(out); e++) {
    int64_t rest = e;
    for (int d = out->ndim - 1; d >= 0; d--) {
      idx[d] = rest % out->shape[d];
      rest /= out->shape[d];
    }
    for (int d = 0, s = 0; d < out->ndim; d++)
      if (d != dim) src[s++] = idx[d];
    double want = at_index(parts[idx[dim]], src), got = dn_test_at(out, e);
    if (got != want) fail_msg("stack: element %lld is %g, expected %g", (long long)e, got, want);
  }
}

static void expect_shape(const dn_tensor *t, int ndim, const int64_t *shape) {
  char got[128], want[128];
  if (t->ndim != ndim || memcmp(t->shape, shape, (size_t)ndim * sizeof *shape) != 0)
    fail_msg("shape %s, expected %s", dn_shape_str(t, got, sizeof got), dn_shape_text(want, sizeof want, ndim, shape));
}

static void test_cat_values(void **state) {
  (void)state;
  /* [2,3,4] pieces joined along each dim, one of them transposed in memory */
  for (int dim = 0; dim < 3; dim++) {
    int64_t s1[3] = {2, 3, 4}, s2[3] = {2, 3, 4}, s3[3] = {2, 3, 4};
    s1[dim] = 1;
    s2[dim] = 3;
    s3[dim] = 2;
    dn_tensor *a = dn_test_random(1, 3, s1), *b0 = dn_test_random(2, 3, s2), *c = dn_test_random(3, 3, s3);
    dn_tensor *b = dn_test_noncontiguous(b0), *out;
    dn_tensor *parts[3] = {a, b, c};
    DN_OK_OR_FAIL(dn_cat(&out, (const dn_tensor *const *)parts, 3, dim));
    int64_t want[3] = {2, 3, 4};
    want[dim] = 6;
    expect_shape(out, 3, want);
    assert_true(dn_tensor_is_contiguous(out));
    expect_cat(out, parts, 3, dim);
    dn_tensor_release(out);
    /* the same dim counted from the end */
    DN_OK_OR_FAIL(dn_cat(&out, (const dn_tensor *const *)parts, 3, dim - 3));
    expect_cat(out, parts, 3, dim);
    assert_null(out->grad_fn);   /* no input requires grad */
    RELEASE(out, a, b0, b, c);
  }
  /* one tensor: a copy */
  dn_tensor *x = dn_test_random(4, 2, (int64_t[]){3, 2}), *y;
  DN_OK_OR_FAIL(dn_cat(&y, (const dn_tensor *[]){x}, 1, 1));
  assert_true(y->storage != x->storage);
  dn_test_assert_close(y, x, 0);
  RELEASE(x, y);
}

static void test_cat_dtypes_and_threads(void **state) {
  (void)state;
  /* int32 and uint8 join as bytes; no node */
  const dn_dtype types[] = {DN_I32, DN_U8};
  for (int t = 0; t < 2; t++) {
    dn_tensor *f1 = dn_test_random(5, 2, (int64_t[]){2, 3}), *f2 = dn_test_random(6, 2, (int64_t[]){2, 5});
    dn_tensor *a, *b, *bt, *out;
    DN_OK_OR_FAIL(dn_binary_scalar_(f1, DN_ADD, 2));   /* in [0, 4]: fits uint8 after truncation */
    DN_OK_OR_FAIL(dn_binary_scalar_(f2, DN_ADD, 2));
    DN_OK_OR_FAIL(dn_to_dtype(&a, f1, types[t]));
    DN_OK_OR_FAIL(dn_to_dtype(&b, f2, types[t]));
    bt = dn_test_noncontiguous(b);
    dn_tensor *parts[2] = {a, bt};
    DN_OK_OR_FAIL(dn_cat(&out, (const dn_tensor *const *)parts, 2, 1));
    assert_int_equal(out->dtype, types[t]);
    expect_cat(out, parts, 2, 1);
    RELEASE(f1, f2, a, b, bt, out);
  }
  /* large enough for the pool: the same bytes with 1 and 2 threads */
  int threads = dn_get_num_threads();
  dn_tensor *p1 = dn_test_random(7, 2, (int64_t[]){300, 70}), *p2 = dn_test_random(8, 2, (int64_t[]){300, 90});
  dn_tensor *p2t = dn_test_noncontiguous(p2), *one, *two;
  const dn_tensor *parts[3] = {p1, p2t, p1};
  DN_OK_OR_FAIL(dn_set_num_threads(1));
  DN_OK_OR_FAIL(dn_cat(&one, parts, 3, 1));
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  DN_OK_OR_FAIL(dn_cat(&two, parts, 3, 1));
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
  assert_memory_equal(dn_tensor_data(one), dn_tensor_data(two), (size_t)dn_tensor_numel(one) * sizeof(float));
  expect_cat(one, (dn_tensor *const *)parts, 3, 1);
  RELEASE(p1, p2, p2t, one, two);
}

static void test_cat_empty(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(9, 2, (int64_t[]){2, 3}), *e1, *e03, *e20, *out;
  DN_OK_OR_FAIL(dn_tensor_new(&e1, DN_F32, 1, (int64_t[]){0}));
  DN_OK_OR_FAIL(dn_tensor_new(&e03, DN_F32, 2, (int64_t[]){0, 3}));
  DN_OK_OR_FAIL(dn_tensor_new(&e20, DN_F32, 2, (int64_t[]){2, 0}));
  /* 1-D empty tensors are skipped, whatever the others' dims (PyTorch 1.13) */
  dn_tensor *parts[4] = {e1, a, e1, a};
  DN_OK_OR_FAIL(dn_cat(&out, (const dn_tensor *const *)parts, 4, 0));
  expect_shape(out, 2, (int64_t[]){4, 3});
  expect_cat(out, parts, 4, 0);
  dn_tensor_release(out);
  /* dim refers to the first tensor not skipped: 1 is valid for [2,3] */
  DN_OK_OR_FAIL(dn_cat(&out, (const dn_tensor *const *)parts, 4, 1));
  expect_shape(out, 2, (int64_t[]){2, 6});
  dn_tensor_release(out);
  /* all skipped: shape [0] */
  DN_OK_OR_FAIL(dn_cat(&out, (const dn_tensor *[]){e1, e1}, 2, 0));
  expect_shape(out, 1, (int64_t[]){0});
  dn_tensor_release(out);
  /* empty tensors of the right dims join normally */
  DN_OK_OR_FAIL(dn_cat(&out, (const dn_tensor *[]){e03, a, e03}, 3, 0));
  expect_shape(out, 2, (int64_t[]){2, 3});
  dn_test_assert_close(out, a, 0);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_cat(&out, (const dn_tensor *[]){e20, a}, 2, 1));
  expect_shape(out, 2, (int64_t[]){2, 3});
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_cat(&out, (const dn_tensor *[]){e20, e20}, 2, 0));
  expect_shape(out, 2, (int64_t[]){4, 0});
  dn_tensor_release(out);
  /* [0,3] does not match [2,4] except along dim 0 */
  DN_EXPECT_ERROR(dn_cat(&out, (const dn_tensor *[]){e03, e20}, 2, 0), DN_ESHAPE,
                  "cat: tensor 2 has shape [2,0] but tensor 1 has [0,3]: sizes must match except along the joined dim 1");
  RELEASE(a, e1, e03, e20);
}

static void test_stack_values(void **state) {
  (void)state;
  int64_t shape[2] = {3, 4};
  dn_tensor *a = dn_test_random(10, 2, shape), *b0 = dn_test_random(11, 2, shape), *c = dn_test_random(12, 2, shape);
  dn_tensor *b = dn_test_noncontiguous(b0), *out;
  dn_tensor *parts[3] = {a, b, c};
  for (int dim = -3; dim < 3; dim++) {
    DN_OK_OR_FAIL(dn_stack(&out, (const dn_tensor *const *)parts, 3, dim));
    int d = dim < 0 ? dim + 3 : dim;
    int64_t want[3];
    for (int e = 0, s = 0; e < 3; e++) want[e] = e == d ? 3 : shape[s++];
    expect_shape(out, 3, want);
    expect_stack(out, parts, 3, d);
    dn_tensor_release(out);
  }
  /* 0-dim tensors stack into a vector; empty ones into an empty result */
  dn_tensor *s1, *s2, *e;
  DN_OK_OR_FAIL(dn_tensor_full(&s1, DN_I32, 0, NULL, 7));
  DN_OK_OR_FAIL(dn_tensor_full(&s2, DN_I32, 0, NULL, -3));
  DN_OK_OR_FAIL(dn_stack(&out, (const dn_tensor *[]){s1, s2, s1}, 3, 0));
  expect_shape(out, 1, (int64_t[]){3});
  assert_true(out->dtype == DN_I32 && dn_test_at(out, 0) == 7 && dn_test_at(out, 1) == -3 && dn_test_at(out, 2) == 7);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_tensor_new(&e, DN_F32, 1, (int64_t[]){0}));
  DN_OK_OR_FAIL(dn_stack(&out, (const dn_tensor *[]){e, e}, 2, 1));
  expect_shape(out, 2, (int64_t[]){0, 2});
  RELEASE(out, a, b0, b, c, s1, s2, e);
}

static void test_errors(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(13, 2, (int64_t[]){2, 3}), *b = dn_test_random(14, 2, (int64_t[]){3, 3});
  dn_tensor *v = dn_test_random(15, 1, (int64_t[]){3}), *s, *i, *out = (dn_tensor *)1, *big;
  DN_OK_OR_FAIL(dn_tensor_zeros(&s, DN_F32, 0, NULL));
  DN_OK_OR_FAIL(dn_tensor_zeros(&i, DN_I32, 2, (int64_t[]){2, 3}));
  DN_EXPECT_ERROR(dn_cat(&out, (const dn_tensor *[]){a}, 0, 0), DN_EINVAL,
                  "cat: expected a non-empty list of tensors (got 0)");
  assert_null(out);
  DN_EXPECT_ERROR(dn_cat(&out, (const dn_tensor *[]){a, NULL}, 2, 0), DN_EINVAL, "cat: tensor 2 of 2 is NULL");
  DN_EXPECT_ERROR(dn_cat(&out, (const dn_tensor *[]){a, i}, 2, 0), DN_ETYPE,
                  "cat: tensor 2 is int32 but tensor 1 is float32");
  DN_EXPECT_ERROR(dn_cat(&out, (const dn_tensor *[]){a, b}, 2, 1), DN_ESHAPE,
                  "cat: tensor 2 has shape [3,3] but tensor 1 has [2,3]: sizes must match except along the joined dim 2");
  DN_EXPECT_ERROR(dn_cat(&out, (const dn_tensor *[]){a, v}, 2, 0), DN_ESHAPE,
                  "cat: tensor 2 has 1 dims (shape [3]) but tensor 1 has 2 (shape [2,3])");
  DN_EXPECT_ERROR(dn_cat(&out, (const dn_tensor *[]){s, s}, 2, 0), DN_EINVAL,
                  "cat: tensor 1 is 0-dim and cannot be concatenated");
  DN_EXPECT_ERROR(dn_cat(&out, (const dn_tensor *[]){a, a}, 2, 2), DN_EINVAL, "cat: dim 2 out of range for 2-D tensors");
  DN_EXPECT_ERROR(dn_cat(&out, (const dn_tensor *[]){a, a}, 2, -3), DN_EINVAL, "cat: dim -3 out of range");
  DN_EXPECT_ERROR(dn_stack(&out, (const dn_tensor *[]){a}, -1, 0), DN_EINVAL, "stack: expected a non-empty list");
  DN_EXPECT_ERROR(dn_stack(&out, (const dn_tensor *[]){a, b}, 2, 0), DN_ESHAPE,
                  "stack: tensor 2 has shape [3,3] but tensor 1 has [2,3] (all must have one shape)");
  DN_EXPECT_ERROR(dn_stack(&out, (const dn_tensor *[]){a, i}, 2, 0), DN_ETYPE, "stack: tensor 2 is int32");
  DN_EXPECT_ERROR(dn_stack(&out, (const dn_tensor *[]){a, a}, 2, 3), DN_EINVAL,
                  "stack: dim 3 out of range for a result of 3 dims");
  DN_EXPECT_ERROR(dn_stack(&out, (const dn_tensor *[]){a, a}, 2, -4), DN_EINVAL, "stack: dim -4 out of range");
  dn_tensor *eight;
  DN_OK_OR_FAIL(dn_tensor_zeros(&eight, DN_F32, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 2}));
  DN_EXPECT_ERROR(dn_stack(&out, (const dn_tensor *[]){eight}, 1, 0), DN_EINVAL,
                  "stack: tensors of 8 dims would give 9 (at most 8)");
  /* sizes past the runtime's limit: an expanded 2^39-element view joined with itself */
  DN_OK_OR_FAIL(dn_broadcast_to(&big, v, 2, (int64_t[]){(int64_t)1 << 38, 3}));
  DN_EXPECT_ERROR(dn_cat(&out, (const dn_tensor *[]){big, big, big, big}, 4, 0), DN_EINVAL,
                  "cat: shape [1099511627776,3] is too large");
  DN_EXPECT_ERROR(dn_stack(&out, (const dn_tensor *[]){big, big, big, big}, 4, 0), DN_EINVAL,
                  "stack: shape [4,274877906944,3] is too large");
  assert_null(out);
  RELEASE(a, b, v, s, i, eight, big);
}

/* --- gradients ------------------------------------------------------------------ */

typedef struct join_case {
  int n, dim;
  bool stack;
} join_case;

static dn_status f_join(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const join_case *c = ctx;
  const dn_tensor *const *list = (const dn_tensor *const *)in;
  return c->stack ? dn_stack(out, list, c->n, c->dim) : dn_cat(out, list, c->n, c->dim);
}

static void test_gradients(void **state) {
  (void)state;
  /* five inputs (more than DN_NODE_INPUTS), some non-contiguous, one constant */
  for (int dim = -2; dim < 2; dim++) {
    dn_tensor *in[5];
    for (int k = 0; k < 5; k++) {
      int64_t shape[2] = {3, 2};
      shape[dim < 0 ? dim + 2 : dim] = k + 1;
      dn_tensor *r = dn_test_random(20 + (uint64_t)k, 2, shape);
      in[k] = k % 2 ? dn_test_noncontiguous(r) : dn_tensor_retain(r);
      dn_tensor_release(r);
      if (k != 3) DN_OK_OR_FAIL(dn_requires_grad_(in[k], true));
    }
    join_case c = {5, dim, false};
    dn_test_gradcheck("cat", f_join, &c, 5, in, 1e-2, 1e-3, 1e-4);
    for (int k = 0; k < 5; k++) dn_tensor_release(in[k]);
  }
  for (int dim = -3; dim < 3; dim++) {
    dn_tensor *in[4];
    for (int k = 0; k < 4; k++) {
      dn_tensor *r = dn_test_random(30 + (uint64_t)k, 2, (int64_t[]){2, 3});
      in[k] = k == 2 ? dn_test_noncontiguous(r) : dn_tensor_retain(r);
      dn_tensor_release(r);
      DN_OK_OR_FAIL(dn_requires_grad_(in[k], true));
    }
    join_case c = {4, dim, true};
    dn_test_gradcheck("stack", f_join, &c, 4, in, 1e-2, 1e-3, 1e-4);
    for (int k = 0; k < 4; k++) dn_tensor_release(in[k]);
  }
  /* 0-dim inputs of stack */
  dn_tensor *s[3];
  for (int k = 0; k < 3; k++) {
    DN_OK_OR_FAIL(dn_tensor_full(&s[k], DN_F32, 0, NULL, 0.5 * k - 0.3));
    DN_OK_OR_FAIL(dn_requires_grad_(s[k], true));
  }
  join_case c0 = {3, 0, true};
  dn_test_gradcheck("stack of 0-dim", f_join, &c0, 3, s, 1e-2, 1e-3, 1e-4);
  RELEASE(s[0], s[1], s[2]);
}

/* Exact slices: the same leaf three times, inputs from other nodes, a skipped empty input. */
static void test_gradient_slices(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4}), *e, *sq, *y;
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_tensor_new(&e, DN_F32, 1, (int64_t[]){0}));
  DN_OK_OR_FAIL(dn_requires_grad_(e, true));
  DN_OK_OR_FAIL(dn_mul(&sq, x, x));   /* a non-leaf input: its node gets its slice */
  DN_OK_OR_FAIL(dn_cat(&y, (const dn_tensor *[]){x, e, sq, x}, 4, 0));
  assert_string_equal(dn_grad_fn_name(y), "cat");
  assert_int_equal(y->grad_fn->n_inputs, 4);
  dn_tensor *g;
  DN_OK_OR_FAIL(dn_tensor_arange(&g, DN_F32, 0, 12, 1));
  dn_tensor *g2;
  DN_OK_OR_FAIL(dn_view(&g2, g, 2, (int64_t[]){6, 2}));
  DN_OK_OR_FAIL(dn_backward(y, g2, false));
  /* x: rows 0-1 (g 0..3) + rows 4-5 (g 8..11) + 2x * rows 2-3 (g 4..7) */
  const float want[4] = {0 + 8 + 2 * 1 * 4, 1 + 9 + 2 * 2 * 5, 2 + 10 + 2 * 3 * 6, 3 + 11 + 2 * 4 * 7};
  for (int i = 0; i < 4; i++) assert_true(dn_test_at(x->grad, i) == want[i]);
  assert_non_null(e->grad);
  assert_int_equal(dn_tensor_numel(e->grad), 0);
  assert_int_equal(e->grad->ndim, 1);
  RELEASE(y, sq, g, g2);
  /* stack of a transposed non-leaf: each gets its slice of a non-contiguous gradient */
  dn_tensor *xt, *st, *gt, *gs;
  DN_OK_OR_FAIL(dn_t(&xt, x));
  DN_OK_OR_FAIL(dn_stack(&st, (const dn_tensor *[]){xt, x}, 2, 2));   /* [2,2,2] */
  dn_tensor_release(x->grad);
  x->grad = NULL;
  DN_OK_OR_FAIL(dn_tensor_arange(&gs, DN_F32, 0, 8, 1));
  DN_OK_OR_FAIL(dn_view(&gt, gs, 3, (int64_t[]){2, 2, 2}));
  DN_OK_OR_FAIL(dn_backward(st, gt, false));
  /* d/dxt = g[:, :, 0] = [[0,2],[4,6]] -> d/dx += its transpose [[0,4],[2,6]]; d/dx += g[:, :, 1] = [[1,3],[5,7]] */
  const float want2[4] = {1, 7, 7, 13};
  for (int i = 0; i < 4; i++) assert_true(dn_test_at(x->grad, i) == want2[i]);
  RELEASE(xt, st, gs, gt, x, e);
}

/* A graph of many wide nodes dropped before and after backward: ASan sees every release. */
static void test_wide_graph_lifetime(void **state) {
  (void)state;
  dn_tensor *leaves[40];
  for (int k = 0; k < 40; k++) {
    leaves[k] = dn_test_random(50 + (uint64_t)k, 1, (int64_t[]){3});
    DN_OK_OR_FAIL(dn_requires_grad_(leaves[k], true));
  }
  dn_tensor *acc = NULL;
  for (int round = 0; round < 3; round++) {
    dn_tensor *joined;
    DN_OK_OR_FAIL(dn_stack(&joined, (const dn_tensor *const *)leaves, 40, 0));   /* [40,3] */
    if (acc) {
      dn_tensor *both;
      DN_OK_OR_FAIL(dn_cat(&both, (const dn_tensor *[]){acc, joined, acc}, 3, 0));
      dn_tensor_release(acc);
      dn_tensor_release(joined);
      dn_tensor *half;
      DN_OK_OR_FAIL(dn_narrow(&half, both, 0, 0, 40));
      dn_tensor_release(both);
      acc = half;
    } else {
      acc = joined;
    }
  }
  dn_tensor *loss;
  DN_OK_OR_FAIL(dn_sum_all(&loss, acc));
  DN_OK_OR_FAIL(dn_backward(loss, NULL, true));
  DN_OK_OR_FAIL(dn_backward(loss, NULL, false));   /* retain_graph: twice */
  for (int k = 0; k < 40; k++) {
    assert_non_null(leaves[k]->grad);
    for (int i = 0; i < 3; i++) assert_true(dn_test_at(leaves[k]->grad, i) == 2.0);   /* the first stack, twice */
  }
  DN_EXPECT_ERROR(dn_backward(loss, NULL, false), DN_EINVAL, "already freed");
  RELEASE(loss, acc);
  for (int k = 0; k < 40; k++) dn_tensor_release(leaves[k]);
  /* a graph dropped without any backward */
  dn_tensor *a = dn_test_random(99, 1, (int64_t[]){2}), *y;
  DN_OK_OR_FAIL(dn_requires_grad_(a, true));
  dn_tensor *many[9] = {a, a, a, a, a, a, a, a, a};
  DN_OK_OR_FAIL(dn_cat(&y, (const dn_tensor *const *)many, 9, 0));
  RELEASE(y, a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_cat_values),
    cmocka_unit_test_setup(test_cat_dtypes_and_threads, dn_test_reset_modes),
    cmocka_unit_test(test_cat_empty),
    cmocka_unit_test(test_stack_values),
    cmocka_unit_test(test_errors),
    cmocka_unit_test_setup(test_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_gradient_slices, dn_test_reset_modes),
    cmocka_unit_test_setup(test_wide_graph_lifetime, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
