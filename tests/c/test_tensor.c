/* Tensor creation, views, copies and their errors. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_new_shapes_and_strides(void **state) {
  (void)state;
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_zeros(&t, DN_F32, 3, (int64_t[]){2, 3, 4}));
  assert_int_equal(dn_tensor_numel(t), 24);
  assert_int_equal(t->stride[0], 12);
  assert_int_equal(t->stride[1], 4);
  assert_int_equal(t->stride[2], 1);
  assert_true(dn_tensor_is_contiguous(t));
  assert_true(((uintptr_t)t->storage->data % 64) == 0);
  for (int64_t i = 0; i < 24; i++) assert_true(dn_test_at(t, i) == 0.0);
  dn_tensor_release(t);

  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_F32, 0, NULL));   /* a scalar */
  assert_int_equal(dn_tensor_numel(t), 1);
  dn_tensor_release(t);

  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_I32, 2, (int64_t[]){0, 5}));   /* empty */
  assert_int_equal(dn_tensor_numel(t), 0);
  dn_tensor_release(t);
  dn_tensor_release(NULL);
}

static void test_bad_creation(void **state) {
  (void)state;
  dn_tensor *t = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_tensor_new(&t, DN_F32, 2, (int64_t[]){2, -3}), DN_EINVAL, "size of dim 2 must be >= 0");
  assert_null(t);
  DN_EXPECT_ERROR(dn_tensor_new(&t, DN_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}), DN_EINVAL, "dims");
  DN_EXPECT_ERROR(dn_tensor_new(&t, DN_F32, 2, (int64_t[]){(int64_t)1 << 40, 1 << 20}), DN_EINVAL, "too large");
  DN_EXPECT_ERROR(dn_tensor_arange(&t, DN_F32, 0, 10, 0), DN_EINVAL, "step must not be 0");
  DN_EXPECT_ERROR(dn_tensor_arange(&t, DN_F32, 0, 10, -1), DN_EINVAL, "goes away");
  DN_EXPECT_ERROR(dn_tensor_from_doubles(&t, DN_I32, 1, (int64_t[]){2}, (double[]){1, 2.5}), DN_EINVAL,
                  "not representable as int32");
}

static void test_arange_eye_full(void **state) {
  (void)state;
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_arange(&t, DN_F32, 0, 1, 0.25));
  assert_int_equal(t->shape[0], 4);
  assert_true(dn_test_at(t, 3) == 0.75);
  dn_tensor_release(t);
  DN_OK_OR_FAIL(dn_tensor_eye(&t, DN_I32, 3, 4));
  for (int64_t i = 0; i < 12; i++) assert_true(dn_test_at(t, i) == ((i / 4 == i % 4) ? 1 : 0));
  dn_tensor_release(t);
  DN_OK_OR_FAIL(dn_tensor_full(&t, DN_F32, 2, (int64_t[]){2, 3}, 7));
  for (int64_t i = 0; i < 6; i++) assert_true(dn_test_at(t, i) == 7);
  dn_tensor_release(t);
}

static void test_views_share_storage(void **state) {
  (void)state;
  dn_tensor *a, *v, *tr, *n, *s;
  DN_OK_OR_FAIL(dn_tensor_arange(&a, DN_F32, 0, 6, 1));
  DN_OK_OR_FAIL(dn_view(&v, a, 2, (int64_t[]){2, -1}));
  assert_int_equal(v->shape[1], 3);
  assert_ptr_equal(v->storage, a->storage);
  DN_OK_OR_FAIL(dn_t(&tr, v));                         /* [3,2], strides (1,3) */
  assert_false(dn_tensor_is_contiguous(tr));
  assert_true(dn_test_at(tr, 1) == 3);                 /* tr[0][1] = v[1][0] */
  DN_OK_OR_FAIL(dn_narrow(&n, tr, 0, 1, 2));           /* rows 1..2 */
  assert_true(dn_test_at(n, 0) == 1);
  DN_OK_OR_FAIL(dn_select(&s, n, 1, 1));               /* column 1: 4, 5 */
  assert_int_equal(s->ndim, 1);
  assert_true(dn_test_at(s, 0) == 4 && dn_test_at(s, 1) == 5);

  double x;
  DN_OK_OR_FAIL(dn_tensor_set(s, (int64_t[]){0}, 40));   /* writes through to a */
  DN_OK_OR_FAIL(dn_tensor_get(a, (int64_t[]){4}, &x));
  assert_true(x == 40);

  /* a transposed tensor cannot be viewed flat, but can be reshaped (a copy) */
  dn_tensor *flat = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_view(&flat, tr, 1, (int64_t[]){6}), DN_ESHAPE, "not contiguous enough");
  assert_null(flat);
  DN_OK_OR_FAIL(dn_reshape(&flat, tr, 1, (int64_t[]){6}));
  assert_ptr_not_equal(flat->storage, a->storage);
  double expect[6] = {0, 3, 1, 40, 2, 5};
  for (int i = 0; i < 6; i++) assert_true(dn_test_at(flat, i) == expect[i]);

  dn_tensor *c;
  DN_OK_OR_FAIL(dn_contiguous(&c, tr));
  assert_true(dn_tensor_is_contiguous(c));
  for (int i = 0; i < 6; i++) assert_true(dn_test_at(c, i) == expect[i]);
  dn_tensor *same;
  DN_OK_OR_FAIL(dn_contiguous(&same, c));
  assert_ptr_equal(same, c);   /* no copy when already contiguous */

  dn_tensor *list[] = {a, v, tr, n, s, flat, c, same};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_view_errors(void **state) {
  (void)state;
  dn_tensor *a, *o;
  DN_OK_OR_FAIL(dn_tensor_zeros(&a, DN_F32, 2, (int64_t[]){2, 3}));
  DN_EXPECT_ERROR(dn_view(&o, a, 2, (int64_t[]){4, 2}), DN_ESHAPE, "shape [4,2] does not fit 6 elements");
  DN_EXPECT_ERROR(dn_view(&o, a, 2, (int64_t[]){-1, -1}), DN_EINVAL, "only one size may be -1");
  DN_EXPECT_ERROR(dn_view(&o, a, 2, (int64_t[]){-1, 4}), DN_ESHAPE, "cannot infer");
  DN_EXPECT_ERROR(dn_narrow(&o, a, 1, 2, 2), DN_ERANGE, "out of bounds");
  DN_EXPECT_ERROR(dn_narrow(&o, a, 2, 0, 1), DN_EINVAL, "dim 2 out of range");
  DN_EXPECT_ERROR(dn_select(&o, a, 0, 2), DN_ERANGE, "index 2 out of range");
  DN_EXPECT_ERROR(dn_transpose(&o, a, 0, 5), DN_EINVAL, "out of range");
  DN_EXPECT_ERROR(dn_broadcast_to(&o, a, 2, (int64_t[]){4, 3}), DN_ESHAPE, "cannot become 4");
  double x;
  DN_EXPECT_ERROR(dn_tensor_get(a, (int64_t[]){0, 3}, &x), DN_ERANGE, "index 3 out of range for dim 1");
  DN_EXPECT_ERROR(dn_tensor_item(a, &x), DN_ESHAPE, "exactly one element");
  dn_tensor_release(a);
}

static void test_expand_squeeze_permute(void **state) {
  (void)state;
  dn_tensor *a, *e, *u, *sq, *p;
  DN_OK_OR_FAIL(dn_tensor_arange(&a, DN_F32, 0, 3, 1));
  DN_OK_OR_FAIL(dn_unsqueeze(&u, a, 0));        /* [1,3] */
  DN_OK_OR_FAIL(dn_broadcast_to(&e, u, 2, (int64_t[]){4, 3}));
  assert_int_equal(e->stride[0], 0);
  assert_true(dn_test_at(e, 10) == 1);
  DN_OK_OR_FAIL(dn_squeeze(&sq, u, -1));
  assert_int_equal(sq->ndim, 1);
  dn_tensor *b = dn_test_random(1, 3, (int64_t[]){2, 3, 4});
  DN_OK_OR_FAIL(dn_permute(&p, b, (int[]){2, 0, 1}));
  assert_int_equal(p->shape[0], 4);
  assert_true(dn_test_at(p, 1 * 6 + 1 * 3 + 2) == dn_test_at(b, 1 * 12 + 2 * 4 + 1));
  dn_tensor *list[] = {a, e, u, sq, p, b};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_copy_broadcast_and_convert(void **state) {
  (void)state;
  dn_tensor *dst, *row, *ints;
  DN_OK_OR_FAIL(dn_tensor_zeros(&dst, DN_F32, 2, (int64_t[]){3, 2}));
  row = dn_test_from(1, (int64_t[]){2}, (float[]){1.5f, -2.75f});
  DN_OK_OR_FAIL(dn_copy_(dst, row));
  for (int i = 0; i < 6; i++) assert_true(dn_test_at(dst, i) == (i % 2 ? -2.75 : 1.5));
  DN_OK_OR_FAIL(dn_to_dtype(&ints, dst, DN_I32));
  assert_int_equal(ints->dtype, DN_I32);
  for (int i = 0; i < 6; i++) assert_true(dn_test_at(ints, i) == (i % 2 ? -2 : 1));   /* toward zero */
  dn_tensor *bad = dn_test_from(1, (int64_t[]){3}, (float[]){1, 2, 3});
  DN_EXPECT_ERROR(dn_copy_(dst, bad), DN_ESHAPE, "cannot be broadcast");
  DN_EXPECT_ERROR(dn_fill_(ints, 0.5), DN_EINVAL, "not representable as int32");
  dn_tensor *list[] = {dst, row, ints, bad};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_large_copy_is_exact_with_threads(void **state) {
  (void)state;
  /* a big transposed copy runs in parallel; it must equal the serial one */
  dn_tensor *a = dn_test_random(3, 2, (int64_t[]){700, 300}), *t, *c1, *c2;
  DN_OK_OR_FAIL(dn_t(&t, a));
  DN_OK_OR_FAIL(dn_set_num_threads(1));
  DN_OK_OR_FAIL(dn_clone(&c1, t));
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  DN_OK_OR_FAIL(dn_clone(&c2, t));
  assert_memory_equal(dn_tensor_data(c1), dn_tensor_data(c2), 700 * 300 * sizeof(float));
  for (int64_t i = 0; i < 700 * 300; i += 997) assert_true(dn_test_at(c1, i) == dn_test_at(t, i));
  dn_tensor *list[] = {a, t, c1, c2};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* Issue 10: sizes whose sum or product overflows int64 must be refused, never wrap. */
static void test_shape_arithmetic_overflow(void **state) {
  (void)state;
  const int64_t big = INT64_MAX, huge = (int64_t)1 << 62;
  dn_tensor *a, *o = (dn_tensor *)1;
  DN_OK_OR_FAIL(dn_tensor_arange(&a, DN_F32, 0, 4, 1));
  /* F1: start + length wrapped past the size check */
  DN_EXPECT_ERROR(dn_narrow(&o, a, 0, 1, big), DN_ERANGE, "start 1 and length 9223372036854775807 out of bounds");
  assert_null(o);
  DN_EXPECT_ERROR(dn_narrow(&o, a, 0, big, 1), DN_ERANGE, "out of bounds");
  DN_EXPECT_ERROR(dn_narrow(&o, a, 0, 5, 0), DN_ERANGE, "out of bounds");
  DN_OK_OR_FAIL(dn_narrow(&o, a, 0, 4, 0));   /* an empty window at the end is fine */
  assert_int_equal(dn_tensor_numel(o), 0);
  dn_tensor_release(o);
  /* F2: a product of sizes that wraps to numel */
  DN_EXPECT_ERROR(dn_reshape(&o, a, 2, (int64_t[]){2, (int64_t)9223372036854775807 / 4 + 2}), DN_EINVAL,
                  "too large");
  DN_EXPECT_ERROR(dn_view(&o, a, 3, (int64_t[]){-1, huge, 4}), DN_EINVAL, "too large");
  DN_EXPECT_ERROR(dn_reshape(&o, a, 2, (int64_t[]){0, huge}), DN_EINVAL, "too large");
  /* F3: an expanded shape whose product wraps */
  dn_tensor *row;
  DN_OK_OR_FAIL(dn_view(&row, a, 2, (int64_t[]){1, 4}));
  DN_EXPECT_ERROR(dn_broadcast_to(&o, row, 2, (int64_t[]){huge + 1, 4}), DN_EINVAL, "too large");
  DN_EXPECT_ERROR(dn_broadcast_to(&o, row, 2, (int64_t[]){-1, 4}), DN_EINVAL, "must be >= 0");
  DN_OK_OR_FAIL(dn_broadcast_to(&o, row, 2, (int64_t[]){(int64_t)1 << 36, 4}));   /* 2^38 elements, no memory */
  assert_int_equal(dn_tensor_numel(o), (int64_t)1 << 38);
  dn_tensor_release(o);
  /* F7: zero-element shapes whose other sizes multiply past int64 (their strides would wrap) */
  DN_EXPECT_ERROR(dn_tensor_new(&o, DN_F32, 3, (int64_t[]){0, huge, 4}), DN_EINVAL, "too large");
  DN_EXPECT_ERROR(dn_tensor_zeros(&o, DN_F32, 2, (int64_t[]){huge, 0}), DN_EINVAL, "too large");
  dn_tensor_release(row);
  dn_tensor_release(a);
}

/* F8: a zero-element tensor with a huge leading size costs nothing to create, copy or print. */
static void test_empty_tensor_with_huge_leading_size(void **state) {
  (void)state;
  dn_tensor *e, *c, *s;
  DN_OK_OR_FAIL(dn_tensor_zeros(&e, DN_F32, 2, (int64_t[]){(int64_t)1 << 39, 0}));
  assert_int_equal(dn_tensor_numel(e), 0);
  DN_OK_OR_FAIL(dn_clone(&c, e));
  DN_OK_OR_FAIL(dn_fill_(c, 1));
  DN_OK_OR_FAIL(dn_sum_all(&s, c));
  assert_true(dn_test_at(s, 0) == 0);
  char *text = dn_tensor_format(e);
  assert_non_null(strstr(text, "[549755813888,0]"));
  free(text);
  dn_tensor *list[] = {e, c, s};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_format(void **state) {
  (void)state;
  dn_tensor *a = dn_test_from(2, (int64_t[]){2, 2}, (float[]){1, 2.5f, -3, 4});
  char *s = dn_tensor_format(a);
  assert_non_null(s);
  assert_non_null(strstr(s, "2.5"));
  assert_non_null(strstr(s, "[2,2]"));
  assert_non_null(strstr(s, "float32"));
  free(s);
  dn_tensor_release(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_new_shapes_and_strides), cmocka_unit_test(test_bad_creation),
    cmocka_unit_test(test_arange_eye_full),        cmocka_unit_test(test_views_share_storage),
    cmocka_unit_test(test_view_errors),            cmocka_unit_test(test_expand_squeeze_permute),
    cmocka_unit_test(test_copy_broadcast_and_convert), cmocka_unit_test(test_large_copy_is_exact_with_threads),
    cmocka_unit_test(test_format),                 cmocka_unit_test(test_shape_arithmetic_overflow),
    cmocka_unit_test(test_empty_tensor_with_huge_leading_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
