/* IDX reading and writing: hand-made files of every type, gzip, round trips, and every malformed file. */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* gzip written here with zlib directly, independently of the runtime's writer. */
static void write_gz(const char *path, const void *data, size_t n) {
  gzFile g = gzopen(path, "wb");
  assert_non_null(g);
  assert_int_equal(gzwrite(g, data, (unsigned)n), (int)n);
  assert_int_equal(gzclose(g), Z_OK);
}

/* An IDX header: 00 00 type ndims, then big-endian dims. Returns its length. */
static size_t make_header(unsigned char *out, unsigned char type, int ndims, const uint32_t *dims) {
  out[0] = 0;
  out[1] = 0;
  out[2] = type;
  out[3] = (unsigned char)ndims;
  for (int d = 0; d < ndims; d++) {
    out[4 + 4 * d] = (unsigned char)(dims[d] >> 24);
    out[5 + 4 * d] = (unsigned char)(dims[d] >> 16);
    out[6 + 4 * d] = (unsigned char)(dims[d] >> 8);
    out[7 + 4 * d] = (unsigned char)dims[d];
  }
  return 4 + 4 * (size_t)ndims;
}

/* --- hand-made files of every type --------------------------------------------------------- */

static void test_read_ubyte(void **state) {
  (void)state;
  unsigned char file[64];
  size_t h = make_header(file, 0x08, 2, (uint32_t[]){2, 3});
  for (int i = 0; i < 6; i++) file[h + (size_t)i] = (unsigned char)(i * 50);
  const char *p = dn_test_path("u8.idx");
  dn_test_write_file(p, file, h + 6);
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_idx_read(&t, p));
  assert_int_equal(t->dtype, DN_U8);
  assert_int_equal(t->ndim, 2);
  assert_int_equal(t->shape[0], 2);
  assert_int_equal(t->shape[1], 3);
  for (int i = 0; i < 6; i++) assert_true(dn_test_at(t, i) == i * 50);
  dn_tensor_release(t);
}

static void test_read_sbyte_and_short(void **state) {
  (void)state;
  unsigned char file[64];
  size_t h = make_header(file, 0x09, 1, (uint32_t[]){4});
  memcpy(file + h, (unsigned char[]){0x00, 0x7f, 0x80, 0xff}, 4);
  const char *p = dn_test_path("i8.idx");
  dn_test_write_file(p, file, h + 4);
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_idx_read(&t, p));
  assert_int_equal(t->dtype, DN_I32);
  assert_true(dn_test_at(t, 0) == 0 && dn_test_at(t, 1) == 127 && dn_test_at(t, 2) == -128 &&
              dn_test_at(t, 3) == -1);
  dn_tensor_release(t);

  h = make_header(file, 0x0B, 1, (uint32_t[]){3});
  memcpy(file + h, (unsigned char[]){0x01, 0x02, 0x80, 0x00, 0xff, 0xfe}, 6);
  p = dn_test_path("i16.idx");
  dn_test_write_file(p, file, h + 6);
  DN_OK_OR_FAIL(dn_idx_read(&t, p));
  assert_int_equal(t->dtype, DN_I32);
  assert_true(dn_test_at(t, 0) == 258 && dn_test_at(t, 1) == -32768 && dn_test_at(t, 2) == -2);
  dn_tensor_release(t);
}

static void test_read_int32_float32_float64(void **state) {
  (void)state;
  unsigned char file[128];
  size_t h = make_header(file, 0x0C, 1, (uint32_t[]){2});
  memcpy(file + h, (unsigned char[]){0x00, 0x01, 0x00, 0x02, 0xff, 0xff, 0xff, 0xfd}, 8);
  const char *p = dn_test_path("i32.idx");
  dn_test_write_file(p, file, h + 8);
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_idx_read(&t, p));
  assert_int_equal(t->dtype, DN_I32);
  assert_true(dn_test_at(t, 0) == 65538 && dn_test_at(t, 1) == -3);
  dn_tensor_release(t);

  /* 1.5f = 0x3FC00000, -2.25f = 0xC0100000 */
  h = make_header(file, 0x0D, 3, (uint32_t[]){1, 2, 1});
  memcpy(file + h, (unsigned char[]){0x3f, 0xc0, 0, 0, 0xc0, 0x10, 0, 0}, 8);
  p = dn_test_path("f32.idx");
  dn_test_write_file(p, file, h + 8);
  DN_OK_OR_FAIL(dn_idx_read(&t, p));
  assert_int_equal(t->dtype, DN_F32);
  assert_int_equal(t->ndim, 3);
  assert_true(dn_test_at(t, 0) == 1.5 && dn_test_at(t, 1) == -2.25);
  dn_tensor_release(t);

  /* 0.1 as a double = 0x3FB999999999999A becomes the float nearest 0.1 */
  h = make_header(file, 0x0E, 1, (uint32_t[]){1});
  memcpy(file + h, (unsigned char[]){0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a}, 8);
  p = dn_test_path("f64.idx");
  dn_test_write_file(p, file, h + 8);
  DN_OK_OR_FAIL(dn_idx_read(&t, p));
  assert_int_equal(t->dtype, DN_F32);
  assert_true(dn_test_at(t, 0) == (double)0.1f);
  dn_tensor_release(t);
}

static void test_read_gzip(void **state) {
  (void)state;
  enum { N = 3 * 100 * 100 };
  unsigned char *file = malloc(16 + N);
  size_t h = make_header(file, 0x08, 3, (uint32_t[]){3, 100, 100});
  for (int i = 0; i < N; i++) file[h + (size_t)i] = (unsigned char)(i * 7 % 251);
  const char *p = dn_test_path("images.idx.gz");
  write_gz(p, file, h + N);
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_idx_read(&t, p));
  assert_int_equal(t->dtype, DN_U8);
  assert_int_equal(t->shape[0], 3);
  assert_int_equal(t->shape[2], 100);
  assert_memory_equal(dn_tensor_data(t), file + h, N);
  dn_tensor_release(t);

  /* concatenated gzip members (as `cat a.gz b.gz` makes) are one stream of data */
  const char *m = dn_test_path("members.idx.gz");
  write_gz(m, file, h + 1000);
  size_t first_size;
  unsigned char *first = dn_test_read_file(m, &first_size);
  write_gz(m, file + h + 1000, N - 1000);
  size_t second_size;
  unsigned char *second = dn_test_read_file(m, &second_size);
  unsigned char *both = malloc(first_size + second_size);
  memcpy(both, first, first_size);
  memcpy(both + first_size, second, second_size);
  dn_test_write_file(m, both, first_size + second_size);
  DN_OK_OR_FAIL(dn_idx_read(&t, m));
  assert_memory_equal(dn_tensor_data(t), file + h, N);
  dn_tensor_release(t);
  free(first);
  free(second);
  free(both);

  /* detection is by content, not by name */
  const char *q = dn_test_path("gz_without_suffix.bin");
  write_gz(q, file, h + N);
  DN_OK_OR_FAIL(dn_idx_read(&t, q));
  assert_memory_equal(dn_tensor_data(t), file + h, N);
  dn_tensor_release(t);
  free(file);
}

/* --- writing -------------------------------------------------------------------------------- */

static void test_write_bytes_exact(void **state) {
  (void)state;
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_I32, 2, (int64_t[]){1, 2}, (int32_t[]){258, -1}));
  const char *p = dn_test_path("exact.idx");
  DN_OK_OR_FAIL(dn_idx_write(p, t));
  size_t n;
  unsigned char *bytes = dn_test_read_file(p, &n);
  const unsigned char expected[] = {0, 0, 0x0C, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 1, 2, 0xff, 0xff, 0xff, 0xff};
  assert_int_equal(n, sizeof expected);
  assert_memory_equal(bytes, expected, sizeof expected);
  free(bytes);
  dn_tensor_release(t);
}

static void roundtrip(dn_tensor *t, const char *name) {
  const char *p = dn_test_path(name);
  DN_OK_OR_FAIL(dn_idx_write(p, t));
  dn_tensor *back;
  DN_OK_OR_FAIL(dn_idx_read(&back, p));
  assert_int_equal(back->dtype, t->dtype);
  assert_true(dn_same_shape(back, t));
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) assert_true(dn_test_at(back, i) == dn_test_at(t, i));
  dn_tensor_release(back);
}

static void test_roundtrip_every_dtype(void **state) {
  (void)state;
  dn_tensor *f = dn_test_random(3, 3, (int64_t[]){4, 5, 6});
  roundtrip(f, "f32.idx");
  roundtrip(f, "f32.idx.gz");
  dn_tensor *nc = dn_test_noncontiguous(f);
  assert_false(dn_tensor_is_contiguous(nc));
  roundtrip(nc, "noncontig.idx");
  roundtrip(nc, "noncontig.idx.gz");
  dn_tensor *i32, *u8;
  DN_OK_OR_FAIL(dn_tensor_arange(&i32, DN_I32, -500, 500, 3));
  roundtrip(i32, "i32.idx");
  roundtrip(i32, "i32.idx.gz");
  DN_OK_OR_FAIL(dn_tensor_arange(&u8, DN_U8, 0, 256, 1));
  roundtrip(u8, "u8.idx");
  roundtrip(u8, "u8.idx.gz");
  dn_tensor *empty;
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 2, (int64_t[]){0, 5}));
  roundtrip(empty, "empty.idx");
  roundtrip(empty, "empty.idx.gz");
  /* a large float32 tensor through gzip (several read chunks) */
  dn_tensor *big = dn_test_random(9, 2, (int64_t[]){300, 1000});
  roundtrip(big, "big.idx.gz");

  size_t n;
  unsigned char *bytes = dn_test_read_file(dn_test_path("f32.idx.gz"), &n);
  assert_true(n > 2 && bytes[0] == 0x1f && bytes[1] == 0x8b);   /* ".gz" means gzip */
  free(bytes);
  assert_int_equal(dn_test_count_temp_files(), 0);
  dn_tensor_release(f);
  dn_tensor_release(nc);
  dn_tensor_release(i32);
  dn_tensor_release(u8);
  dn_tensor_release(empty);
  dn_tensor_release(big);
}

/* What the reader accepts, the writer writes back readably (found by fuzz_idx_roundtrip). sbyte and
   short become int32 in memory and in the written file, so the 16 GiB limit must count four bytes per
   element: 2 x 33554496 x 64 int32 elements are 16 GiB + 32 KiB. Refusing a file is fine; accepting it
   commits to the round trip. The zero dim keeps the test small. */
static void test_accepted_files_write_back(void **state) {
  (void)state;
  const unsigned char types[] = {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E};
  for (size_t k = 0; k < sizeof types; k++) {
    unsigned char file[64];
    size_t h = make_header(file, types[k], 4, (uint32_t[]){2, 33554496, 64, 0});
    const char *p = dn_test_path("wide.idx"), *copy = dn_test_path("wide_copy.idx");
    dn_test_write_file(p, file, h);
    dn_tensor *t, *back;
    if (dn_idx_read(&t, p) != DN_OK) continue;
    DN_OK_OR_FAIL(dn_idx_write(copy, t));
    dn_status st = dn_idx_read(&back, copy);
    if (st) fail_msg("type 0x%02x: the reader refuses what it accepted, written back: %s", types[k],
                     dn_last_error());
    assert_int_equal(back->dtype, t->dtype);
    assert_true(dn_same_shape(back, t));
    dn_tensor_release(back);
    dn_tensor_release(t);
  }
}

static void test_write_errors(void **state) {
  (void)state;
  dn_tensor *scalar, *t;
  DN_OK_OR_FAIL(dn_tensor_new(&scalar, DN_F32, 0, NULL));
  DN_EXPECT_ERROR(dn_idx_write(dn_test_path("scalar.idx"), scalar), DN_ESHAPE, "0-dim");
  DN_OK_OR_FAIL(dn_tensor_zeros(&t, DN_F32, 1, (int64_t[]){3}));
  DN_EXPECT_ERROR(dn_idx_write("/nonexistent_dir_dn/x.idx", t), DN_EIO, "/nonexistent_dir_dn/x.idx");
  DN_EXPECT_ERROR(dn_idx_write(dn_test_tempdir(), t), DN_EIO, "is a directory");
  DN_EXPECT_ERROR(dn_idx_write(NULL, t), DN_EINVAL, "path");
  assert_int_equal(dn_test_count_temp_files(), 0);
  dn_tensor_release(scalar);
  dn_tensor_release(t);
}

/* --- malformed files -------------------------------------------------------------------------- */

static void expect_bad_file(const unsigned char *bytes, size_t n, const char *name, dn_status status,
                            const char *needle) {
  const char *p = dn_test_path(name);
  dn_test_write_file(p, bytes, n);
  dn_tensor *t = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_idx_read(&t, p), status, needle);
  assert_null(t);
  assert_non_null(strstr(dn_last_error(), p));   /* every message names the file */
}

static void test_bad_headers(void **state) {
  (void)state;
  unsigned char file[128] = {0};
  expect_bad_file(file, 0, "empty.idx", DN_EFORMAT, "truncated header");
  expect_bad_file((unsigned char[]){0, 0, 8}, 3, "short.idx", DN_EFORMAT, "truncated header");
  expect_bad_file((unsigned char[]){1, 0, 8, 1, 0, 0, 0, 1, 7}, 9, "magic.idx", DN_EFORMAT,
                  "not an IDX file: magic bytes 01 00 08 01");
  expect_bad_file((unsigned char[]){'P', 'K', 3, 4, 0, 0, 0, 0}, 8, "zip.idx", DN_EFORMAT, "not an IDX file");
  expect_bad_file((unsigned char[]){0, 0, 0x0A, 1, 0, 0, 0, 1, 7}, 9, "type.idx", DN_EFORMAT,
                  "unknown data type 0x0a");
  expect_bad_file((unsigned char[]){0, 0, 8, 0}, 4, "dims0.idx", DN_EFORMAT, "0 dims in the header (must be 1..8)");
  size_t h = make_header(file, 0x08, 9, (uint32_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1});
  expect_bad_file(file, h + 1, "dims9.idx", DN_EFORMAT, "9 dims in the header");
  expect_bad_file((unsigned char[]){0, 0, 8, 3, 0, 0, 0, 1, 0, 0}, 10, "dims_cut.idx", DN_EFORMAT,
                  "truncated header: 3 dims announced");
  h = make_header(file, 0x0D, 4, (uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu, 2});
  expect_bad_file(file, h, "overflow.idx", DN_EFORMAT, "header says 4294967295x4294967295x4294967295x2 float32");
  expect_bad_file(file, h, "overflow2.idx", DN_EFORMAT, "GiB limit");
  /* 65536 x 65536 x 4 float64 = 128 GiB: over the 16 GiB cap although no product overflows */
  h = make_header(file, 0x0E, 3, (uint32_t[]){65536, 65536, 4});
  expect_bad_file(file, h, "huge.idx", DN_EFORMAT, "limit");
  /* issue 10 F7: no data at all, but no tensor can have this shape (its strides would overflow) */
  h = make_header(file, 0x08, 4, (uint32_t[]){0, 0xffffffffu, 0xffffffffu, 0xffffffffu});
  expect_bad_file(file, h, "empty_huge.idx", DN_EFORMAT, "0x4294967295x4294967295x4294967295 ubyte, a shape too large");
}

static void test_truncated_and_trailing(void **state) {
  (void)state;
  unsigned char *file = calloc(1, 16 + 2000);
  size_t h = make_header(file, 0x08, 3, (uint32_t[]){60000, 28, 28});
  expect_bad_file(file, h + 1000, "cut.idx", DN_EFORMAT,
                  "truncated: header says 60000x28x28 ubyte (47040000 bytes) but the data has 1000 bytes");
  h = make_header(file, 0x08, 2, (uint32_t[]){10, 5});
  expect_bad_file(file, h + 60, "long.idx", DN_EFORMAT,
                  "trailing data: header says 10x5 ubyte (50 bytes) but the data has 60 bytes");
  h = make_header(file, 0x0C, 1, (uint32_t[]){3});
  expect_bad_file(file, h + 11, "cut_i32.idx", DN_EFORMAT, "header says 3 int32 (12 bytes) but the data has 11 bytes");
  free(file);
}

static void expect_bad_gz(const unsigned char *bytes, size_t n, const char *name, const char *needle) {
  const char *p = dn_test_path(name);
  write_gz(p, bytes, n);
  dn_tensor *t = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_idx_read(&t, p), DN_EFORMAT, needle);
  assert_null(t);
  assert_non_null(strstr(dn_last_error(), p));
}

static void test_gzip_malformed(void **state) {
  (void)state;
  enum { N = 100000 };
  unsigned char *file = calloc(1, 16 + N + 100);
  for (int i = 0; i < N + 100; i++) file[16 + i] = (unsigned char)(i * 31 % 253);
  size_t h = make_header(file, 0x08, 2, (uint32_t[]){1000, 100});
  memmove(file + h, file + 16, N + 100);
  expect_bad_gz(file, h + N - 1, "cut.idx.gz",
                "truncated: header says 1000x100 ubyte (100000 bytes) but the data has 99999 bytes");
  expect_bad_gz(file, h + N + 7, "long.idx.gz",
                "trailing data: header says 1000x100 ubyte (100000 bytes) but the data has 100007 bytes");
  expect_bad_gz((unsigned char[]){0, 0, 8, 1}, 4, "noheader.idx.gz", "truncated header");
  expect_bad_gz((unsigned char[]){9, 9, 9, 9}, 4, "magic.idx.gz", "not an IDX file");

  /* a header claiming far more than the compressed file could ever hold: refused before allocating */
  unsigned char claim[16];
  size_t hc = make_header(claim, 0x0D, 2, (uint32_t[]){60000, 10000});
  expect_bad_gz(claim, hc, "claim.idx.gz", "more than a");

  /* the compressed stream itself cut short, and one with corrupted bytes */
  const char *good = dn_test_path("good.idx.gz");
  write_gz(good, file, h + N);
  size_t n;
  unsigned char *gz = dn_test_read_file(good, &n);
  const char *p = dn_test_path("gzcut.idx.gz");
  dn_test_write_file(p, gz, n / 2);
  dn_tensor *t = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_idx_read(&t, p), DN_EFORMAT, "truncated");
  assert_null(t);
  /* all the data present but the trailer (CRC, length) cut off: gzread would call that a clean end */
  dn_test_write_file(p, gz, n - 8);
  DN_EXPECT_ERROR(dn_idx_read(&t, p), DN_EFORMAT, "truncated: the gzip stream ends before its trailer");
  dn_test_write_file(p, gz, n - 3);
  DN_EXPECT_ERROR(dn_idx_read(&t, p), DN_EFORMAT, "ends before its trailer");
  /* bytes after the gzip stream that are not another gzip member */
  unsigned char *junk = malloc(n + 4);
  memcpy(junk, gz, n);
  memcpy(junk + n, "junk", 4);
  dn_test_write_file(p, junk, n + 4);
  DN_EXPECT_ERROR(dn_idx_read(&t, p), DN_EFORMAT, "corrupt gzip data");
  free(junk);
  /* a wrong CRC in the trailer */
  gz[n - 8] ^= 1;
  dn_test_write_file(p, gz, n);
  DN_EXPECT_ERROR(dn_idx_read(&t, p), DN_EFORMAT, "corrupt gzip data: incorrect data check");
  gz[n - 8] ^= 1;
  for (size_t i = n / 3; i < n / 3 + 64; i++) gz[i] ^= 0x5a;
  p = dn_test_path("gzbad.idx.gz");
  dn_test_write_file(p, gz, n);
  dn_status st = dn_idx_read(&t, p);
  assert_int_equal(st, DN_EFORMAT);
  assert_null(t);
  assert_non_null(strstr(dn_last_error(), p));
  free(gz);
  free(file);
}

static void test_missing_and_special_files(void **state) {
  (void)state;
  dn_tensor *t = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_idx_read(&t, "/nonexistent/file.idx"), DN_EIO, "cannot open /nonexistent/file.idx");
  assert_null(t);
  DN_EXPECT_ERROR(dn_idx_read(&t, dn_test_tempdir()), DN_EIO, "not a regular file");
  DN_EXPECT_ERROR(dn_idx_read(&t, NULL), DN_EINVAL, "path");
}

static void test_overwrite_is_atomic(void **state) {
  (void)state;
  const char *p = dn_test_path("replace.idx");
  dn_tensor *a, *b, *back;
  DN_OK_OR_FAIL(dn_tensor_arange(&a, DN_I32, 0, 10, 1));
  DN_OK_OR_FAIL(dn_tensor_arange(&b, DN_U8, 0, 5, 1));
  DN_OK_OR_FAIL(dn_idx_write(p, a));
  chmod(p, 0640);
  DN_OK_OR_FAIL(dn_idx_write(p, b));
  DN_OK_OR_FAIL(dn_idx_read(&back, p));
  assert_int_equal(back->dtype, DN_U8);
  assert_int_equal(back->shape[0], 5);
  struct stat info;
  assert_int_equal(stat(p, &info), 0);
  assert_int_equal(info.st_mode & 0777, 0640);   /* a replaced file keeps its mode */
  assert_int_equal(dn_test_count_temp_files(), 0);
  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(back);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_read_ubyte),
    cmocka_unit_test(test_read_sbyte_and_short),
    cmocka_unit_test(test_read_int32_float32_float64),
    cmocka_unit_test(test_read_gzip),
    cmocka_unit_test(test_write_bytes_exact),
    cmocka_unit_test(test_roundtrip_every_dtype),
    cmocka_unit_test(test_accepted_files_write_back),
    cmocka_unit_test(test_write_errors),
    cmocka_unit_test(test_bad_headers),
    cmocka_unit_test(test_truncated_and_trailing),
    cmocka_unit_test(test_gzip_malformed),
    cmocka_unit_test(test_missing_and_special_files),
    cmocka_unit_test(test_overwrite_is_atomic),
  };
  return cmocka_run_group_tests(tests, dn_test_tempdir_setup, dn_test_tempdir_teardown);
}
