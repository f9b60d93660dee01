/* matmul and matmul_into against a naive double-precision triple loop. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "graph.h"

#define TOL 1e-4

/* Element (batch, row, col) of a 1-D/2-D/3-D operand seen as [batch, rows, cols]
   as torch.matmul does: a 1-D a is one row, a 1-D b one column, batch 1 broadcasts. */
static double operand_at(const dn_tensor *t, bool is_b, int64_t batch, int64_t row, int64_t col) {
  if (t->ndim == 1) return dn_test_at(t, is_b ? row : col);
  int64_t rows = t->shape[t->ndim - 2], cols = t->shape[t->ndim - 1];
  if (t->ndim == 3 && t->shape[0] != 1) return dn_test_at(t, (batch * rows + row) * cols + col);
  return dn_test_at(t, row * cols + col);
}

/* torch.matmul semantics written out with plain loops. */
static dn_tensor *reference(const dn_tensor *a, const dn_tensor *b) {
  int64_t k = a->shape[a->ndim - 1];
  int64_t n = a->ndim == 1 ? 1 : a->shape[a->ndim - 2], m = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
  int64_t batch_a = a->ndim == 3 ? a->shape[0] : 1, batch_b = b->ndim == 3 ? b->shape[0] : 1;
  int64_t batches = batch_a == 1 ? batch_b : batch_a;
  int64_t shape[3];
  int ndim = 0;
  if (a->ndim == 3 || b->ndim == 3) shape[ndim++] = batches;
  if (a->ndim > 1) shape[ndim++] = n;
  if (b->ndim > 1) shape[ndim++] = m;
  int64_t total = batches * n * m;
  double *values = calloc((size_t)(total > 0 ? total : 1), sizeof *values);
  for (int64_t bi = 0; bi < batches; bi++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < m; j++) {
        double sum = 0;
        for (int64_t p = 0; p < k; p++) sum += operand_at(a, false, bi, i, p) * operand_at(b, true, bi, p, j);
        values[(bi * n + i) * m + j] = sum;
      }
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&t, DN_F32, ndim, shape, values));
  free(values);
  return t;
}

/* dn_matmul(a, b) matches the reference; releases nothing it was given. */
static void check_matmul(dn_tensor *a, dn_tensor *b) {
  dn_tensor *got, *want = reference(a, b);
  DN_OK_OR_FAIL(dn_matmul(&got, a, b));
  assert_true(dn_tensor_is_contiguous(got));
  dn_test_assert_close(got, want, TOL);
  dn_tensor_release(got);
  dn_tensor_release(want);
}

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

static void test_2d(void **state) {
  (void)state;
  int64_t sizes[][3] = {{1, 1, 1}, {2, 3, 4}, {5, 7, 3}, {64, 33, 17}, {1, 50, 9}, {9, 50, 1}, {128, 100, 65}};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    dn_tensor *a = dn_test_random(10 + s, 2, (int64_t[]){sizes[s][0], sizes[s][1]});
    dn_tensor *b = dn_test_random(20 + s, 2, (int64_t[]){sizes[s][1], sizes[s][2]});
    check_matmul(a, b);
    RELEASE(a, b);
  }
  /* exact small case: [[1,2],[3,4]] @ [[5,6],[7,8]] */
  dn_tensor *a = dn_test_from(2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4});
  dn_tensor *b = dn_test_from(2, (int64_t[]){2, 2}, (float[]){5, 6, 7, 8});
  dn_tensor *c;
  DN_OK_OR_FAIL(dn_matmul(&c, a, b));
  assert_true(dn_test_at(c, 0) == 19 && dn_test_at(c, 1) == 22 && dn_test_at(c, 2) == 43 && dn_test_at(c, 3) == 50);
  RELEASE(a, b, c);
}

static void test_transposed_operands(void **state) {
  (void)state;
  /* a [n,k] stored as [k,n]; b [k,m] stored as [m,k] (Linear's x @ W:t()) */
  dn_tensor *a = dn_test_random(1, 2, (int64_t[]){13, 9}), *a_store = dn_test_random(2, 2, (int64_t[]){9, 13});
  dn_tensor *b = dn_test_random(3, 2, (int64_t[]){9, 6}), *b_store = dn_test_random(4, 2, (int64_t[]){6, 9});
  dn_tensor *at, *bt;
  DN_OK_OR_FAIL(dn_t(&at, a_store));
  DN_OK_OR_FAIL(dn_t(&bt, b_store));
  check_matmul(a, bt);
  check_matmul(at, b);
  check_matmul(at, bt);
  /* the test helper's non-contiguous copies are transposed storage too */
  dn_tensor *an = dn_test_noncontiguous(a), *bn = dn_test_noncontiguous(b);
  check_matmul(an, bn);
  check_matmul(an, b);
  RELEASE(a, a_store, b, b_store, at, bt, an, bn);
}

static void test_narrowed_and_copied_operands(void **state) {
  (void)state;
  /* sub-matrices: leading dim (row stride 12) larger than the width */
  dn_tensor *big = dn_test_random(5, 2, (int64_t[]){10, 12}), *rows, *sub, *cols;
  DN_OK_OR_FAIL(dn_narrow(&rows, big, 0, 2, 6));
  DN_OK_OR_FAIL(dn_narrow(&sub, rows, 1, 3, 7));         /* [6,7] at (2,3), row stride 12 */
  DN_OK_OR_FAIL(dn_narrow(&cols, big, 1, 1, 6));         /* [10,6], row stride 12 */
  dn_tensor *b = dn_test_random(6, 2, (int64_t[]){7, 10});
  check_matmul(sub, b);
  check_matmul(b, cols);                                  /* [7,10] @ [10,6] */
  dn_tensor *sub_t;                                       /* transposed sub-matrix: [7,6], column stride 12 */
  DN_OK_OR_FAIL(dn_t(&sub_t, sub));
  check_matmul(sub_t, sub);

  /* both strides > 1: every second column of a [4,10] matrix */
  dn_tensor *wide = dn_test_random(7, 2, (int64_t[]){4, 10}), *pairs, *every_second;
  DN_OK_OR_FAIL(dn_view(&pairs, wide, 3, (int64_t[]){4, 5, 2}));
  DN_OK_OR_FAIL(dn_select(&every_second, pairs, 2, 0));   /* [4,5], strides (10,2) */
  dn_tensor *c = dn_test_random(8, 2, (int64_t[]){5, 3});
  check_matmul(every_second, c);
  dn_tensor *every_second_t;
  DN_OK_OR_FAIL(dn_t(&every_second_t, every_second));     /* [5,4], strides (2,10) */
  check_matmul(every_second, every_second_t);
  check_matmul(every_second_t, every_second);

  /* stride 0 from expand: a row repeated, a column repeated */
  dn_tensor *row = dn_test_random(9, 2, (int64_t[]){1, 5}), *rep_rows, *col = dn_test_random(10, 2, (int64_t[]){5, 1}),
            *rep_cols;
  DN_OK_OR_FAIL(dn_broadcast_to(&rep_rows, row, 2, (int64_t[]){4, 5}));
  DN_OK_OR_FAIL(dn_broadcast_to(&rep_cols, col, 2, (int64_t[]){5, 3}));
  check_matmul(rep_rows, rep_cols);
  check_matmul(rep_rows, c);
  RELEASE(big, rows, sub, cols, b, sub_t, wide, pairs, every_second, c, every_second_t, row, rep_rows, col, rep_cols);
}

static void test_batched(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(11, 3, (int64_t[]){3, 4, 5}), *b = dn_test_random(12, 3, (int64_t[]){3, 5, 2});
  dn_tensor *a1 = dn_test_random(13, 3, (int64_t[]){1, 4, 5}), *b1 = dn_test_random(14, 3, (int64_t[]){1, 5, 2});
  dn_tensor *a2 = dn_test_random(15, 2, (int64_t[]){4, 5}), *b2 = dn_test_random(16, 2, (int64_t[]){5, 2});
  check_matmul(a, b);
  check_matmul(a1, b);      /* batch 1 broadcasts */
  check_matmul(a, b1);
  check_matmul(a1, b1);     /* stays [1,4,2] */
  check_matmul(a, b2);      /* [b,n,k] @ [k,m]: one sgemm over b*n rows */
  check_matmul(a2, b);      /* [n,k] @ [b,k,m] */

  dn_tensor *out;
  DN_OK_OR_FAIL(dn_matmul(&out, a1, b1));
  assert_int_equal(out->ndim, 3);
  assert_int_equal(out->shape[0], 1);
  dn_tensor_release(out);

  /* transposed matrices inside a batch, and a batch whose matrices are not
     evenly spaced rows (permuted, narrowed): no folding into one sgemm */
  dn_tensor *store = dn_test_random(17, 3, (int64_t[]){3, 5, 4}), *at, *bt_store = dn_test_random(18, 2, (int64_t[]){2, 5}),
            *bt;
  DN_OK_OR_FAIL(dn_transpose(&at, store, 1, 2));          /* [3,4,5] */
  DN_OK_OR_FAIL(dn_t(&bt, bt_store));                     /* [5,2] */
  check_matmul(at, b);
  check_matmul(at, bt);
  check_matmul(a, bt);                                    /* folded, transposed b */
  dn_tensor *perm_store = dn_test_random(19, 3, (int64_t[]){4, 3, 5}), *perm;
  DN_OK_OR_FAIL(dn_permute(&perm, perm_store, (int[]){1, 0, 2}));   /* [3,4,5], strides (5,15,1) */
  check_matmul(perm, b2);
  check_matmul(perm, b);
  dn_tensor *tall = dn_test_random(20, 3, (int64_t[]){3, 6, 5}), *narrowed;
  DN_OK_OR_FAIL(dn_narrow(&narrowed, tall, 1, 1, 4));     /* [3,4,5], batch stride 30 */
  check_matmul(narrowed, b2);
  check_matmul(narrowed, b);

  /* an expanded batch (stride 0), also with a layout that needs a copy */
  dn_tensor *expanded, *expanded_t;
  DN_OK_OR_FAIL(dn_broadcast_to(&expanded, a1, 3, (int64_t[]){3, 4, 5}));
  check_matmul(expanded, b);
  check_matmul(expanded, b2);
  DN_OK_OR_FAIL(dn_transpose(&expanded_t, expanded, 1, 2));   /* [3,5,4], batch stride 0, transposed */
  check_matmul(expanded_t, a2);
  dn_tensor *row = dn_test_random(21, 3, (int64_t[]){1, 1, 5}), *rep;
  DN_OK_OR_FAIL(dn_broadcast_to(&rep, row, 3, (int64_t[]){3, 4, 5}));   /* rows repeated: copied */
  check_matmul(rep, b);

  /* the batch dims must agree unless one is 1 */
  dn_tensor *b4 = dn_test_random(22, 3, (int64_t[]){4, 5, 2});
  out = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_matmul(&out, a, b4), DN_ESHAPE, "matmul: shapes [3,4,5] and [4,5,2] do not match (batch 3 != 4)");
  assert_null(out);
  RELEASE(a, b, a1, b1, a2, b2, store, at, bt_store, bt, perm_store, perm, tall, narrowed, expanded, expanded_t, row,
          rep, b4);
}

static void test_vectors(void **state) {
  (void)state;
  dn_tensor *u = dn_test_random(31, 1, (int64_t[]){7}), *v = dn_test_random(32, 1, (int64_t[]){7});
  dn_tensor *m = dn_test_random(33, 2, (int64_t[]){4, 7}), *mt = dn_test_random(34, 2, (int64_t[]){7, 3});
  dn_tensor *batch = dn_test_random(35, 3, (int64_t[]){2, 4, 7}), *batch_b = dn_test_random(36, 3, (int64_t[]){2, 7, 3});
  dn_tensor *dot;
  DN_OK_OR_FAIL(dn_matmul(&dot, u, v));
  assert_int_equal(dot->ndim, 0);
  check_matmul(u, v);
  check_matmul(m, v);        /* [n,k] @ [k] -> [n] */
  check_matmul(u, mt);       /* [k] @ [k,m] -> [m] */
  check_matmul(batch, v);    /* [b,n,k] @ [k] -> [b,n] */
  check_matmul(u, batch_b);  /* [k] @ [b,k,m] -> [b,m] */

  /* strided vectors (every second element) and an expanded one (stride 0) */
  dn_tensor *us = dn_test_noncontiguous(u), *vs = dn_test_noncontiguous(v), *one, *ones;
  assert_int_equal(us->stride[0], 2);
  check_matmul(us, vs);
  check_matmul(m, vs);
  check_matmul(us, mt);
  one = dn_test_from(1, (int64_t[]){1}, (float[]){0.5f});
  DN_OK_OR_FAIL(dn_broadcast_to(&ones, one, 1, (int64_t[]){7}));
  check_matmul(ones, v);
  check_matmul(m, ones);
  check_matmul(ones, mt);
  RELEASE(u, v, m, mt, batch, batch_b, dot, us, vs, one, ones);
}

static void expect_shape(const dn_tensor *t, int ndim, const int64_t *shape) {
  assert_int_equal(t->ndim, ndim);
  for (int d = 0; d < ndim; d++) assert_int_equal(t->shape[d], shape[d]);
}

static void test_empty_dims(void **state) {
  (void)state;
  struct { int nda; int64_t sa[3]; int ndb; int64_t sb[3]; int ndo; int64_t so[3]; } cases[] = {
    {2, {0, 3}, 2, {3, 4}, 2, {0, 4}},       {2, {2, 0}, 2, {0, 3}, 2, {2, 3}},
    {2, {2, 3}, 2, {3, 0}, 2, {2, 0}},       {3, {0, 2, 3}, 3, {0, 3, 4}, 3, {0, 2, 4}},
    {3, {2, 2, 0}, 3, {2, 0, 4}, 3, {2, 2, 4}}, {3, {2, 2, 0}, 2, {0, 4}, 3, {2, 2, 4}},
    {1, {0}, 1, {0}, 0, {0}},                {2, {3, 0}, 1, {0}, 1, {3}},
    {3, {1, 2, 3}, 3, {0, 3, 4}, 3, {0, 2, 4}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    dn_tensor *a = dn_test_random(40 + i, cases[i].nda, cases[i].sa), *b = dn_test_random(50 + i, cases[i].ndb, cases[i].sb);
    dn_tensor *c;
    DN_OK_OR_FAIL(dn_matmul(&c, a, b));
    expect_shape(c, cases[i].ndo, cases[i].so);
    for (int64_t e = 0; e < dn_tensor_numel(c); e++) assert_true(dn_test_at(c, e) == 0.0);   /* k = 0: zeros */
    RELEASE(a, b, c);
  }
}

static void test_matmul_into(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(61, 2, (int64_t[]){6, 5}), *b_store = dn_test_random(62, 2, (int64_t[]){4, 5}), *b;
  DN_OK_OR_FAIL(dn_t(&b, b_store));                       /* [5,4], transposed */
  dn_tensor *out = dn_test_random(63, 2, (int64_t[]){6, 4}), *before, *product = reference(a, b);
  DN_OK_OR_FAIL(dn_clone(&before, out));
  uint32_t version = out->storage->version;
  DN_OK_OR_FAIL(dn_matmul_into(out, a, b, 2.0f, 0.5f));
  assert_true(out->storage->version != version);
  for (int64_t i = 0; i < 24; i++) {
    double want = 2.0 * dn_test_at(product, i) + 0.5 * dn_test_at(before, i);
    assert_true(fabs(dn_test_at(out, i) - want) <= TOL * (1 + fabs(want)));
  }

  /* beta 0 ignores what out held, NaN included (as sgemm) */
  DN_OK_OR_FAIL(dn_fill_(out, NAN));
  DN_OK_OR_FAIL(dn_matmul_into(out, a, b, 1.0f, 0.0f));
  dn_test_assert_close(out, product, TOL);

  /* k = 0: out = beta * out */
  dn_tensor *a0 = dn_test_random(64, 2, (int64_t[]){6, 0}), *b0 = dn_test_random(65, 2, (int64_t[]){0, 4});
  DN_OK_OR_FAIL(dn_copy_(out, before));
  DN_OK_OR_FAIL(dn_matmul_into(out, a0, b0, 3.0f, 2.0f));
  for (int64_t i = 0; i < 24; i++) assert_true(dn_test_at(out, i) == (double)(2.0f * (float)dn_test_at(before, i)));
  DN_OK_OR_FAIL(dn_fill_(out, NAN));
  DN_OK_OR_FAIL(dn_matmul_into(out, a0, b0, 1.0f, 0.0f));
  for (int64_t i = 0; i < 24; i++) assert_true(dn_test_at(out, i) == 0.0);
  dn_tensor *empty_out = dn_test_random(66, 2, (int64_t[]){0, 4}), *an = dn_test_random(67, 2, (int64_t[]){0, 5});
  DN_OK_OR_FAIL(dn_matmul_into(empty_out, an, b, 1.0f, 0.0f));

  /* out may be an operand: the product still uses the old values */
  dn_tensor *sq = dn_test_random(68, 2, (int64_t[]){5, 5}), *sq_t, *sq_want;
  DN_OK_OR_FAIL(dn_t(&sq_t, sq));
  sq_want = reference(sq, sq_t);
  DN_OK_OR_FAIL(dn_matmul_into(sq, sq, sq_t, 1.0f, 0.0f));
  dn_test_assert_close(sq, sq_want, TOL);

  /* errors */
  dn_tensor *wrong = dn_test_random(69, 2, (int64_t[]){4, 6}), *out_t, *ints, *vec = dn_test_random(70, 1, (int64_t[]){5});
  DN_EXPECT_ERROR(dn_matmul_into(wrong, a, b, 1, 0), DN_ESHAPE,
                  "matmul_into: out has shape [4,6], expected [6,4] for shapes [6,5] and [5,4]");
  DN_OK_OR_FAIL(dn_t(&out_t, wrong));
  DN_EXPECT_ERROR(dn_matmul_into(out_t, a, b, 1, 0), DN_EINVAL, "out (shape [6,4]) must be contiguous");
  DN_OK_OR_FAIL(dn_to_dtype(&ints, out, DN_I32));
  DN_EXPECT_ERROR(dn_matmul_into(ints, a, b, 1, 0), DN_ETYPE, "out must be float32 (got int32)");
  DN_EXPECT_ERROR(dn_matmul_into(out, a, vec, 1, 0), DN_ESHAPE, "expects 2-D tensors (got shapes [6,5] and [5])");
  DN_EXPECT_ERROR(dn_matmul_into(out, b, a, 1, 0), DN_ESHAPE, "matmul_into: shapes [5,4] and [6,5] do not match (4 != 6)");
  DN_EXPECT_ERROR(dn_matmul_into(out, ints, b, 1, 0), DN_ETYPE, "expects float32 tensors (got int32 and float32)");
  RELEASE(a, b_store, b, out, before, product, a0, b0, empty_out, an, sq, sq_t, sq_want, wrong, out_t, ints, vec);
}

static void test_errors(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(71, 2, (int64_t[]){2, 3}), *b = dn_test_random(72, 2, (int64_t[]){4, 5});
  dn_tensor *out = (dn_tensor *)1, *ints, *four = dn_test_random(73, 4, (int64_t[]){1, 2, 3, 4}), *scalar, *v4;
  DN_EXPECT_ERROR(dn_matmul(&out, a, b), DN_ESHAPE, "matmul: shapes [2,3] and [4,5] do not match (3 != 4)");
  assert_string_equal(dn_last_error(), "matmul: shapes [2,3] and [4,5] do not match (3 != 4)");
  assert_null(out);
  DN_OK_OR_FAIL(dn_to_dtype(&ints, a, DN_I32));
  DN_EXPECT_ERROR(dn_matmul(&out, ints, b), DN_ETYPE, "matmul: expects float32 tensors (got int32 and float32)");
  DN_EXPECT_ERROR(dn_matmul(&out, b, ints), DN_ETYPE, "(got float32 and int32)");
  DN_EXPECT_ERROR(dn_matmul(&out, four, b), DN_ESHAPE,
                  "matmul: expects 1-D, 2-D or 3-D tensors (got shapes [1,2,3,4] and [4,5])");
  DN_OK_OR_FAIL(dn_tensor_zeros(&scalar, DN_F32, 0, NULL));
  DN_EXPECT_ERROR(dn_matmul(&out, scalar, a), DN_ESHAPE, "(got shapes [] and [2,3])");
  DN_EXPECT_ERROR(dn_matmul(&out, a, scalar), DN_ESHAPE, "(got shapes [2,3] and [])");
  v4 = dn_test_random(74, 1, (int64_t[]){4});
  DN_EXPECT_ERROR(dn_matmul(&out, a, v4), DN_ESHAPE, "matmul: shapes [2,3] and [4] do not match (3 != 4)");
  DN_EXPECT_ERROR(dn_matmul(&out, v4, a), DN_ESHAPE, "matmul: shapes [4] and [2,3] do not match (4 != 2)");
  assert_null(out);
  RELEASE(a, b, ints, four, scalar, v4);
}

/* sgemm tiles depend on the shape only, so thread counts agree bit for bit:
   one tile, many tiles, a transposed operand, a folded batch, odd sizes. */
static void test_threads_bit_identical(void **state) {
  (void)state;
  int64_t shapes[][4] = {{1, 20, 30, 10}, {1, 300, 200, 150}, {1, 128, 784, 1024}, {4, 64, 100, 80}, {1, 517, 61, 389}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    int64_t batch = shapes[s][0], n = shapes[s][1], k = shapes[s][2], m = shapes[s][3];
    dn_tensor *a = batch > 1 ? dn_test_random(81 + s, 3, (int64_t[]){batch, n, k}) : dn_test_random(81 + s, 2, (int64_t[]){n, k});
    dn_tensor *b_store = dn_test_random(91 + s, 2, (int64_t[]){m, k}), *b, *one, *two;
    DN_OK_OR_FAIL(dn_t(&b, b_store));
    DN_OK_OR_FAIL(dn_set_num_threads(1));
    DN_OK_OR_FAIL(dn_matmul(&one, a, b));
    DN_OK_OR_FAIL(dn_set_num_threads(2));
    DN_OK_OR_FAIL(dn_matmul(&two, a, b));
    assert_memory_equal(dn_tensor_data(one), dn_tensor_data(two), (size_t)(batch * n * m) * sizeof(float));
    if (s < 2) {
      dn_tensor *want = reference(a, b);
      dn_test_assert_close(two, want, TOL);
      dn_tensor_release(want);
    }
    RELEASE(a, b_store, b, one, two);
  }
  /* the tiles run sgemm on the task's thread; the team size stays ours */
  assert_int_equal(dn_get_num_threads(), 2);
}

/*
** Gradients of matmul (2-D, batched 3-D, broadcast batches, 3-D@2-D, 1-D
** cases, transposed/narrowed/expanded operands) and index_select (repeated
** indices, any dim): central finite differences, exact values, what is
** saved, accumulation, and determinism across thread counts.
*/

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

static void grad_check_matmul(const shapes *s, int layout_a, int layout_b) {
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
      for (int lb = PLAIN; lb <= NARROWED; lb++) grad_check_matmul(&cases[c], la, lb);
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
    cmocka_unit_test(test_2d),          cmocka_unit_test(test_transposed_operands),
    cmocka_unit_test(test_narrowed_and_copied_operands), cmocka_unit_test(test_batched),
    cmocka_unit_test(test_vectors),     cmocka_unit_test(test_empty_dims),
    cmocka_unit_test(test_matmul_into), cmocka_unit_test(test_errors),
    cmocka_unit_test(test_threads_bit_identical),
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
