/* byte_rows_to_float against index_select of the dataset converted by element-wise ops. */
#include "testutil.h"

#include <string.h>

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

/* uint8 [rows, cols] with bytes (r * 37 + c * 11 + seed) % 256: every byte value shows up. */
static dn_tensor *bytes_matrix(int64_t rows, int64_t cols, int seed) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_U8, 2, (int64_t[]){rows, cols}));
  uint8_t *p = dn_tensor_data(t);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) p[r * cols + c] = (uint8_t)((r * 37 + c * 11 + seed) % 256);
  return t;
}

/* table[b] = (b / 255 - mean) / std by the element-wise ops, and the same ops on all of src. */
static dn_tensor *table_and_converted(dn_tensor *src, dn_tensor **converted) {
  dn_tensor *values, *table, *all;
  DN_OK_OR_FAIL(dn_tensor_new(&values, DN_U8, 1, (int64_t[]){256}));
  for (int b = 0; b < 256; b++) ((uint8_t *)dn_tensor_data(values))[b] = (uint8_t)b;
  DN_OK_OR_FAIL(dn_to_dtype(&table, values, DN_F32));
  DN_OK_OR_FAIL(dn_to_dtype(&all, src, DN_F32));
  dn_tensor *ts[] = {table, all};
  for (int i = 0; i < 2; i++) {
    DN_OK_OR_FAIL(dn_binary_scalar_(ts[i], DN_DIV, 255));
    DN_OK_OR_FAIL(dn_binary_scalar_(ts[i], DN_SUB, 0.2860406));
    DN_OK_OR_FAIL(dn_binary_scalar_(ts[i], DN_DIV, 0.3530242));
  }
  dn_tensor_release(values);
  *converted = all;
  return table;
}

/* Bit for bit: the converted rows equal the rows of the converted tensor. */
static void assert_bits_equal(const dn_tensor *a, const dn_tensor *b) {
  assert_int_equal(a->dtype, DN_F32);
  assert_int_equal(b->dtype, DN_F32);
  assert_int_equal(dn_tensor_numel(a), dn_tensor_numel(b));
  assert_true(dn_tensor_is_contiguous(a) && dn_tensor_is_contiguous(b));
  assert_memory_equal(dn_tensor_data(a), dn_tensor_data(b), (size_t)dn_tensor_numel(a) * sizeof(float));
}

static void test_matches_index_select_of_converted(void **state) {
  (void)state;
  dn_tensor *src = bytes_matrix(300, 784, 3), *all, *table = table_and_converted(src, &all);
  int32_t picks[] = {299, 0, 17, 17, 150};
  dn_tensor *idx, *got, *want;
  DN_OK_OR_FAIL(dn_tensor_from_data(&idx, DN_I32, 1, (int64_t[]){5}, picks));
  for (int64_t base = 0; base <= 1; base++) {   /* 0 in C, 1 from Lua: the same picks shifted */
    dn_tensor *shifted;
    DN_OK_OR_FAIL(dn_binary_scalar(&shifted, DN_ADD, idx, (double)base, false));
    DN_OK_OR_FAIL(dn_byte_rows_to_float(&got, src, shifted, base, table));
    DN_OK_OR_FAIL(dn_index_select(&want, all, 0, shifted, base));
    assert_int_equal(got->ndim, 2);
    assert_int_equal(got->shape[0], 5);
    assert_int_equal(got->shape[1], 784);
    assert_false(got->requires_grad);
    assert_bits_equal(got, want);
    RELEASE(shifted, got, want);
  }
  /* no index: every row, in order */
  DN_OK_OR_FAIL(dn_byte_rows_to_float(&got, src, NULL, 0, table));
  assert_bits_equal(got, all);
  RELEASE(got, idx, src, all, table);
}

static void test_layouts(void **state) {
  (void)state;
  /* [N,1,28,28]-style source, a narrowed row range, a non-contiguous source, a strided index and table */
  dn_tensor *flat = bytes_matrix(40, 784, 5), *all, *table = table_and_converted(flat, &all);
  dn_tensor *images, *images_all, *idx, *got, *want;
  DN_OK_OR_FAIL(dn_view(&images, flat, 4, (int64_t[]){40, 1, 28, 28}));
  DN_OK_OR_FAIL(dn_view(&images_all, all, 4, (int64_t[]){40, 1, 28, 28}));
  DN_OK_OR_FAIL(dn_tensor_from_data(&idx, DN_I32, 1, (int64_t[]){3}, (int32_t[]){39, 2, 7}));
  DN_OK_OR_FAIL(dn_byte_rows_to_float(&got, images, idx, 0, table));
  assert_int_equal(got->ndim, 4);
  assert_int_equal(got->shape[0], 3);
  DN_OK_OR_FAIL(dn_index_select(&want, images_all, 0, idx, 0));
  assert_bits_equal(got, want);
  RELEASE(got, want);

  dn_tensor *rows, *rows_all, *got_all;
  DN_OK_OR_FAIL(dn_narrow(&rows, flat, 0, 10, 4));
  DN_OK_OR_FAIL(dn_narrow(&rows_all, all, 0, 10, 4));
  DN_OK_OR_FAIL(dn_byte_rows_to_float(&got, rows, NULL, 0, table));
  DN_OK_OR_FAIL(dn_contiguous(&got_all, rows_all));
  assert_bits_equal(got, got_all);
  RELEASE(got, got_all, rows, rows_all);

  dn_tensor *nc = dn_test_noncontiguous(flat), *nc_idx = dn_test_noncontiguous(idx), *nc_table = dn_test_noncontiguous(table);
  assert_false(dn_tensor_is_contiguous(nc));
  DN_OK_OR_FAIL(dn_byte_rows_to_float(&got, nc, nc_idx, 0, nc_table));
  DN_OK_OR_FAIL(dn_index_select(&want, all, 0, idx, 0));
  assert_bits_equal(got, want);
  RELEASE(got, want, nc, nc_idx, nc_table);

  /* a column range: rows not dense */
  dn_tensor *cols, *cols_all, *cols_want;
  DN_OK_OR_FAIL(dn_narrow(&cols, flat, 1, 3, 5));
  DN_OK_OR_FAIL(dn_narrow(&cols_all, all, 1, 3, 5));
  DN_OK_OR_FAIL(dn_byte_rows_to_float(&got, cols, idx, 0, table));
  DN_OK_OR_FAIL(dn_index_select(&want, cols_all, 0, idx, 0));
  DN_OK_OR_FAIL(dn_contiguous(&cols_want, want));
  assert_bits_equal(got, cols_want);
  RELEASE(got, want, cols_want, cols, cols_all, images, images_all, idx, flat, all, table);
}

static void test_empty(void **state) {
  (void)state;
  dn_tensor *src = bytes_matrix(4, 3, 0), *all, *table = table_and_converted(src, &all), *none, *got, *empty;
  DN_OK_OR_FAIL(dn_tensor_new(&none, DN_I32, 1, (int64_t[]){0}));
  DN_OK_OR_FAIL(dn_byte_rows_to_float(&got, src, none, 0, table));
  assert_int_equal(got->shape[0], 0);
  assert_int_equal(got->shape[1], 3);
  dn_tensor_release(got);
  DN_OK_OR_FAIL(dn_tensor_new(&empty, DN_U8, 2, (int64_t[]){4, 0}));
  DN_OK_OR_FAIL(dn_byte_rows_to_float(&got, empty, NULL, 0, table));
  assert_int_equal(dn_tensor_numel(got), 0);
  RELEASE(got, empty, none, src, all, table);
}

static void test_threads_agree(void **state) {
  (void)state;
  /* big enough to run in parallel: the same bytes with one thread and with four */
  dn_tensor *src = bytes_matrix(2000, 784, 9), *all, *table = table_and_converted(src, &all), *idx, *one, *four;
  int32_t picks[1000];
  for (int i = 0; i < 1000; i++) picks[i] = (int32_t)((i * 7919) % 2000);
  DN_OK_OR_FAIL(dn_tensor_from_data(&idx, DN_I32, 1, (int64_t[]){1000}, picks));
  int saved = dn_get_num_threads();
  DN_OK_OR_FAIL(dn_set_num_threads(1));
  DN_OK_OR_FAIL(dn_byte_rows_to_float(&one, src, idx, 0, table));
  DN_OK_OR_FAIL(dn_set_num_threads(4));
  DN_OK_OR_FAIL(dn_byte_rows_to_float(&four, src, idx, 0, table));
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
  assert_bits_equal(one, four);
  RELEASE(one, four, idx, src, all, table);
}

static void test_errors(void **state) {
  (void)state;
  dn_tensor *src = bytes_matrix(5, 3, 0), *all, *table = table_and_converted(src, &all), *out = (dn_tensor *)1;
  dn_tensor *idx, *bad_idx, *matrix_idx, *float_idx, *short_table, *int_table, *scalar;
  DN_OK_OR_FAIL(dn_tensor_from_data(&idx, DN_I32, 1, (int64_t[]){2}, (int32_t[]){1, 4}));
  DN_OK_OR_FAIL(dn_tensor_from_data(&bad_idx, DN_I32, 1, (int64_t[]){3}, (int32_t[]){1, 5, 0}));
  DN_OK_OR_FAIL(dn_tensor_from_data(&matrix_idx, DN_I32, 2, (int64_t[]){1, 2}, (int32_t[]){1, 2}));
  DN_OK_OR_FAIL(dn_to_dtype(&float_idx, idx, DN_F32));
  DN_OK_OR_FAIL(dn_narrow(&short_table, table, 0, 0, 255));
  DN_OK_OR_FAIL(dn_to_dtype(&int_table, table, DN_I32));
  DN_OK_OR_FAIL(dn_tensor_new(&scalar, DN_U8, 0, NULL));

  DN_EXPECT_ERROR(dn_byte_rows_to_float(&out, all, idx, 0, table), DN_ETYPE, "byte_rows_to_float: src must be uint8 (got float32)");
  assert_null(out);
  DN_EXPECT_ERROR(dn_byte_rows_to_float(&out, scalar, NULL, 0, table), DN_ESHAPE, "at least one dim");
  DN_EXPECT_ERROR(dn_byte_rows_to_float(&out, src, bad_idx, 0, table), DN_ERANGE,
                  "byte_rows_to_float: index 5 at position 1 is out of range [0, 4]");
  DN_EXPECT_ERROR(dn_byte_rows_to_float(&out, src, bad_idx, 1, table), DN_ERANGE, "index 0 at position 3");
  DN_EXPECT_ERROR(dn_byte_rows_to_float(&out, src, matrix_idx, 0, table), DN_ESHAPE, "index must be 1-D");
  DN_EXPECT_ERROR(dn_byte_rows_to_float(&out, src, float_idx, 0, table), DN_ETYPE, "index must be int32");
  DN_EXPECT_ERROR(dn_byte_rows_to_float(&out, src, idx, 0, short_table), DN_ESHAPE, "table must have shape [256]");
  DN_EXPECT_ERROR(dn_byte_rows_to_float(&out, src, idx, 0, int_table), DN_ETYPE, "table must be float32");
  assert_null(out);
  RELEASE(src, all, table, idx, bad_idx, matrix_idx, float_idx, short_table, int_table, scalar);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_matches_index_select_of_converted), cmocka_unit_test(test_layouts),
    cmocka_unit_test(test_empty), cmocka_unit_test(test_threads_agree), cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
