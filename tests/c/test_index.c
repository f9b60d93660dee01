/* index_select and one_hot against plain loops. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

static dn_tensor *int_tensor(int ndim, const int64_t *shape, const int32_t *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_I32, ndim, shape, values));
  return t;
}

/* Checks out == a.index_select(dim, index) element by element (row-major walk). */
static void check_index_select(const dn_tensor *a, int dim, const dn_tensor *index, int64_t base) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_index_select(&out, a, dim, index, base));
  int d = dim < 0 ? dim + a->ndim : dim;
  assert_int_equal(out->dtype, a->dtype);
  assert_int_equal(out->ndim, a->ndim);
  for (int i = 0; i < a->ndim; i++) assert_int_equal(out->shape[i], i == d ? index->shape[0] : a->shape[i]);
  assert_true(dn_tensor_is_contiguous(out));
  int64_t numel = dn_tensor_numel(out);
  for (int64_t i = 0; i < numel; i++) {
    /* coordinates of i in out, then the same position in a with coordinate d mapped */
    int64_t rest = i, src = 0, scale = 1;
    int64_t coords[DN_MAX_DIMS];
    for (int j = out->ndim - 1; j >= 0; j--) {
      coords[j] = rest % out->shape[j];
      rest /= out->shape[j];
    }
    coords[d] = (int64_t)dn_test_at(index, coords[d]) - base;
    for (int j = a->ndim - 1; j >= 0; j--) {
      src += coords[j] * scale;
      scale *= a->shape[j];
    }
    assert_true(dn_test_at(out, i) == dn_test_at(a, src));
  }
  dn_tensor_release(out);
}

static void test_rows_of_a_matrix(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(1, 2, (int64_t[]){5, 3});
  dn_tensor *idx0 = int_tensor(1, (int64_t[]){4}, (int32_t[]){4, 0, 4, 2});
  dn_tensor *idx1 = int_tensor(1, (int64_t[]){2}, (int32_t[]){5, 1});
  check_index_select(a, 0, idx0, 0);
  check_index_select(a, 0, idx1, 1);          /* 1-based from Lua: rows 4 and 0 */
  check_index_select(a, -2, idx0, 0);

  /* exact values for the 1-based case */
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_index_select(&out, a, 0, idx1, 1));
  for (int j = 0; j < 3; j++) {
    assert_true(dn_test_at(out, j) == dn_test_at(a, 4 * 3 + j));
    assert_true(dn_test_at(out, 3 + j) == dn_test_at(a, j));
  }
  RELEASE(a, idx0, idx1, out);
}

static void test_other_dims(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(2, 2, (int64_t[]){3, 5});
  dn_tensor *idx = int_tensor(1, (int64_t[]){6}, (int32_t[]){4, 4, 0, 1, 3, 2});
  check_index_select(a, 1, idx, 0);
  check_index_select(a, -1, idx, 0);
  dn_tensor *c = dn_test_random(3, 3, (int64_t[]){2, 5, 4});   /* middle dim: a block of 4 per pick */
  check_index_select(c, 1, idx, 0);
  dn_tensor *last = int_tensor(1, (int64_t[]){1}, (int32_t[]){3});
  check_index_select(c, 2, last, 0);
  dn_tensor *v = dn_test_random(4, 1, (int64_t[]){5});          /* 1-D */
  check_index_select(v, 0, idx, 0);
  RELEASE(a, idx, c, last, v);
}

static void test_non_contiguous_and_dtypes(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(5, 2, (int64_t[]){6, 4}), *nc = dn_test_noncontiguous(a);
  assert_false(dn_tensor_is_contiguous(nc));
  dn_tensor *idx = int_tensor(1, (int64_t[]){3}, (int32_t[]){5, 0, 2});
  check_index_select(nc, 0, idx, 0);
  dn_tensor *idx_nc_cols = int_tensor(1, (int64_t[]){2}, (int32_t[]){3, 1});
  check_index_select(nc, 1, idx_nc_cols, 0);
  dn_tensor *narrowed, *sel3;
  DN_OK_OR_FAIL(dn_narrow(&narrowed, a, 1, 1, 2));               /* [6,2], row stride 4 */
  check_index_select(narrowed, 0, idx, 0);
  dn_tensor *idx_cols = int_tensor(1, (int64_t[]){3}, (int32_t[]){1, 0, 1});
  check_index_select(narrowed, 1, idx_cols, 0);
  dn_tensor *big = dn_test_random(6, 3, (int64_t[]){3, 6, 4});
  DN_OK_OR_FAIL(dn_transpose(&sel3, big, 0, 2));                 /* [4,6,3], no unit stride last */
  check_index_select(sel3, 1, idx, 0);

  /* int32 and uint8 sources; a strided index */
  dn_tensor *ints, *bytes, *idx_strided = dn_test_noncontiguous(idx), *ints_nc;
  DN_OK_OR_FAIL(dn_to_dtype(&ints, a, DN_I32));
  dn_tensor *magnitudes;   /* uint8 holds no negative values */
  DN_OK_OR_FAIL(dn_unary(&magnitudes, DN_ABS, ints));
  DN_OK_OR_FAIL(dn_to_dtype(&bytes, magnitudes, DN_U8));
  dn_tensor_release(magnitudes);
  assert_int_equal(idx_strided->stride[0], 2);
  check_index_select(ints, 0, idx, 0);
  check_index_select(ints, 1, idx_cols, 0);
  check_index_select(bytes, 0, idx_strided, 0);
  check_index_select(a, 0, idx_strided, 0);
  ints_nc = dn_test_noncontiguous(ints);
  check_index_select(ints_nc, 0, idx_strided, 0);
  dn_tensor *bytes_nc = dn_test_noncontiguous(bytes);
  check_index_select(bytes_nc, 1, idx_cols, 0);

  /* an empty index gives an empty dim; an empty source has rows of nothing */
  dn_tensor *none = int_tensor(1, (int64_t[]){0}, (int32_t[]){0}), *out, *empty_rows = dn_test_random(7, 2, (int64_t[]){3, 0});
  DN_OK_OR_FAIL(dn_index_select(&out, a, 0, none, 0));
  assert_int_equal(out->shape[0], 0);
  assert_int_equal(out->shape[1], 4);
  dn_tensor_release(out);
  check_index_select(empty_rows, 0, idx_cols, 0);
  RELEASE(a, nc, idx, idx_nc_cols, narrowed, idx_cols, big, sel3, ints, bytes, idx_strided, ints_nc, bytes_nc, none, empty_rows);
}

static void test_index_select_errors(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(8, 2, (int64_t[]){5, 3}), *out = (dn_tensor *)1;
  dn_tensor *high = int_tensor(1, (int64_t[]){3}, (int32_t[]){0, 5, 1});
  dn_tensor *low = int_tensor(1, (int64_t[]){2}, (int32_t[]){1, -1});
  DN_EXPECT_ERROR(dn_index_select(&out, a, 0, high, 0), DN_ERANGE,
                  "index_select: index 5 at position 1 is out of range [0, 4] for a dim of size 5");
  assert_null(out);
  DN_EXPECT_ERROR(dn_index_select(&out, a, 0, low, 0), DN_ERANGE, "index -1 at position 1 is out of range [0, 4]");
  DN_EXPECT_ERROR(dn_index_select(&out, a, 0, low, 1), DN_ERANGE, "index -1 at position 2 is out of range [1, 5] for a dim of size 5");
  DN_EXPECT_ERROR(dn_index_select(&out, a, 1, high, 0), DN_ERANGE, "index 5 at position 1 is out of range [0, 2]");
  DN_EXPECT_ERROR(dn_index_select(&out, a, 2, high, 0), DN_EINVAL, "index_select: dim 2 out of range for a 2-D tensor");
  DN_EXPECT_ERROR(dn_index_select(&out, a, -3, high, 0), DN_EINVAL, "dim -3 out of range");
  dn_tensor *float_index = dn_test_from(1, (int64_t[]){2}, (float[]){0, 1}), *matrix_index, *scalar;
  DN_EXPECT_ERROR(dn_index_select(&out, a, 0, float_index, 0), DN_ETYPE, "index_select: index must be int32 (got float32)");
  matrix_index = int_tensor(2, (int64_t[]){1, 2}, (int32_t[]){0, 1});
  DN_EXPECT_ERROR(dn_index_select(&out, a, 0, matrix_index, 0), DN_ESHAPE, "index must be 1-D (got shape [1,2])");
  DN_OK_OR_FAIL(dn_tensor_zeros(&scalar, DN_F32, 0, NULL));
  DN_EXPECT_ERROR(dn_index_select(&out, scalar, 0, high, 0), DN_EINVAL, "dim 0 out of range for a 0-D tensor");
  dn_tensor *empty = dn_test_random(9, 2, (int64_t[]){0, 3});
  DN_EXPECT_ERROR(dn_index_select(&out, empty, 0, low, 0), DN_ERANGE, "out of range (no valid index)");
  assert_null(out);
  RELEASE(a, high, low, float_index, matrix_index, scalar, empty);
}

/* A batch of rows from a big table: runs in parallel; the same for any thread count. */
static void test_large_gather_threads(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(10, 2, (int64_t[]){20000, 8}), *a_t, *idx, *one, *two;
  int32_t *values = malloc(12000 * sizeof *values);
  for (int i = 0; i < 12000; i++) values[i] = (int32_t)((i * 7919u) % 20000u);
  idx = int_tensor(1, (int64_t[]){12000}, values);
  free(values);
  DN_OK_OR_FAIL(dn_set_num_threads(1));
  DN_OK_OR_FAIL(dn_index_select(&one, a, 0, idx, 0));
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  DN_OK_OR_FAIL(dn_index_select(&two, a, 0, idx, 0));
  assert_memory_equal(dn_tensor_data(one), dn_tensor_data(two), 12000 * 8 * sizeof(float));
  check_index_select(a, 0, idx, 0);
  dn_tensor_release(one);
  dn_tensor_release(two);
  DN_OK_OR_FAIL(dn_t(&a_t, a));                                 /* [8,20000], strided path */
  DN_OK_OR_FAIL(dn_set_num_threads(1));
  DN_OK_OR_FAIL(dn_index_select(&one, a_t, 1, idx, 0));
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  DN_OK_OR_FAIL(dn_index_select(&two, a_t, 1, idx, 0));
  assert_memory_equal(dn_tensor_data(one), dn_tensor_data(two), 12000 * 8 * sizeof(float));
  check_index_select(a_t, 1, idx, 0);
  RELEASE(a, a_t, idx, one, two);
}

/* Checks out == one_hot(index) with plain loops. */
static void check_one_hot(const dn_tensor *index, int64_t classes, int64_t base) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_one_hot(&out, index, classes, base));
  assert_int_equal(out->dtype, DN_F32);
  assert_int_equal(out->ndim, index->ndim + 1);
  for (int d = 0; d < index->ndim; d++) assert_int_equal(out->shape[d], index->shape[d]);
  assert_int_equal(out->shape[index->ndim], classes);
  int64_t n = dn_tensor_numel(index);
  for (int64_t i = 0; i < n; i++)
    for (int64_t c = 0; c < classes; c++)
      assert_true(dn_test_at(out, i * classes + c) == (dn_test_at(index, i) - (double)base == (double)c ? 1.0 : 0.0));
  dn_tensor_release(out);
}

static void test_one_hot(void **state) {
  (void)state;
  dn_tensor *labels = int_tensor(2, (int64_t[]){2, 3}, (int32_t[]){0, 2, 1, 3, 3, 0});
  check_one_hot(labels, 4, 0);
  check_one_hot(labels, 10, 0);
  dn_tensor *lua_labels = int_tensor(1, (int64_t[]){4}, (int32_t[]){1, 4, 2, 4});
  check_one_hot(lua_labels, 4, 1);
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_one_hot(&out, lua_labels, 4, 1));
  float want[16] = {1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1};
  for (int i = 0; i < 16; i++) assert_true(dn_test_at(out, i) == want[i]);
  dn_tensor_release(out);

  dn_tensor *scalar, *empty = int_tensor(1, (int64_t[]){0}, (int32_t[]){0}), *nc = dn_test_noncontiguous(labels);
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_I32, 0, NULL, 2));
  check_one_hot(scalar, 3, 0);                                   /* 0-dim -> [3] */
  check_one_hot(empty, 5, 0);                                    /* [0] -> [0,5] */
  assert_false(dn_tensor_is_contiguous(nc));
  check_one_hot(nc, 4, 0);
  check_one_hot(lua_labels, 4, 1);

  /* large enough to go parallel */
  dn_tensor *many;
  int32_t *values = malloc(5000 * sizeof *values);
  for (int i = 0; i < 5000; i++) values[i] = (int32_t)(i % 10);
  many = int_tensor(1, (int64_t[]){5000}, values);
  free(values);
  check_one_hot(many, 10, 0);
  RELEASE(labels, lua_labels, scalar, empty, nc, many);
}

static void test_one_hot_errors(void **state) {
  (void)state;
  dn_tensor *labels = int_tensor(2, (int64_t[]){2, 2}, (int32_t[]){0, 1, 4, 2}), *out = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_one_hot(&out, labels, 4, 0), DN_ERANGE,
                  "one_hot: index 4 at position 2 is out of range [0, 3] for num_classes 4");
  assert_null(out);
  DN_EXPECT_ERROR(dn_one_hot(&out, labels, 5, 1), DN_ERANGE, "index 0 at position 1 is out of range [1, 5]");
  DN_EXPECT_ERROR(dn_one_hot(&out, labels, 0, 0), DN_EINVAL, "one_hot: num_classes must be >= 1 (got 0)");
  DN_EXPECT_ERROR(dn_one_hot(&out, labels, -3, 0), DN_EINVAL, "(got -3)");
  /* issue 10 (the hostile driver): base + num_classes overflowed int64 in the range check */
  DN_EXPECT_ERROR(dn_one_hot(&out, labels, INT64_MAX, 1), DN_ERANGE,
                  "index 0 at position 1 is out of range [1, 9223372036854775807]");
  dn_tensor *ones = int_tensor(1, (int64_t[]){2}, (int32_t[]){1, 2});
  DN_EXPECT_ERROR(dn_one_hot(&out, ones, INT64_MAX, 1), DN_EINVAL, "too large");
  RELEASE(ones);
  dn_tensor *floats = dn_test_from(1, (int64_t[]){2}, (float[]){0, 1}), *deep;
  DN_EXPECT_ERROR(dn_one_hot(&out, floats, 2, 0), DN_ETYPE, "one_hot: index must be int32 (got float32)");
  DN_OK_OR_FAIL(dn_tensor_zeros(&deep, DN_I32, DN_MAX_DIMS, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1}));
  DN_EXPECT_ERROR(dn_one_hot(&out, deep, 2, 0), DN_EINVAL, "one_hot: index has 8 dims");
  assert_null(out);
  RELEASE(labels, floats, deep);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_rows_of_a_matrix),          cmocka_unit_test(test_other_dims),
    cmocka_unit_test(test_non_contiguous_and_dtypes), cmocka_unit_test(test_index_select_errors),
    cmocka_unit_test(test_large_gather_threads),      cmocka_unit_test(test_one_hot),
    cmocka_unit_test(test_one_hot_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
