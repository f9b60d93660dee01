/* safetensors: round trips, a hand-written reader and hand-written files, malformed headers, atomic saves. */
#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Little-endian bytes of a float, built from its bits (independent of the host's order). */
static void float_le(unsigned char *out, float v) {
  uint32_t bits;
  memcpy(&bits, &v, 4);
  for (int i = 0; i < 4; i++) out[i] = (unsigned char)(bits >> (8 * i));
}

static const dn_tensor *find_tensor(const dn_safetensors *st, const char *name) {
  for (int i = 0; i < st->count; i++)
    if (!strcmp(st->tensors[i].name, name)) return st->tensors[i].tensor;
  fail_msg("tensor '%s' not found", name);
  return NULL;
}

static const char *find_metadata(const dn_safetensors *st, const char *key) {
  for (int i = 0; i < st->metadata_count; i++)
    if (!strcmp(st->metadata[i].key, key)) return st->metadata[i].value;
  return NULL;
}

static void assert_same_tensor(const dn_tensor *got, const dn_tensor *want) {
  assert_int_equal(got->dtype, want->dtype);
  assert_true(dn_same_shape(got, want));
  assert_true(dn_tensor_is_contiguous(got));
  for (int64_t i = 0; i < dn_tensor_numel(want); i++) assert_true(dn_test_at(got, i) == dn_test_at(want, i));
}

/* --- round trips ------------------------------------------------------------------------------- */

static void test_roundtrip(void **state) {
  (void)state;
  dn_tensor *w = dn_test_random(1, 2, (int64_t[]){3, 5});
  dn_tensor *wt;
  DN_OK_OR_FAIL(dn_t(&wt, w));   /* a transposed view: written contiguous */
  dn_tensor *labels, *mask, *scalar, *empty, *empty_u8;
  DN_OK_OR_FAIL(dn_tensor_arange(&labels, DN_I32, -7, 7, 1));
  DN_OK_OR_FAIL(dn_tensor_arange(&mask, DN_U8, 250, 256, 1));
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, 3.25));
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 2, (int64_t[]){0, 4}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty_u8, DN_U8, 1, (int64_t[]){0}));
  dn_named_tensor tensors[] = {{"mask", mask},   {"w", w},         {"wt", wt},        {"labels", labels},
                               {"scalar", scalar}, {"empty", empty}, {"e8", empty_u8}, {"w\"e\\ird\n\xc3\xa9", w}};
  dn_metadata_entry meta[] = {{"epoch", "12"}, {"options", "{\"lr\": 0.1, \"p\": [0.2, 0.5]}"}, {"empty", ""},
                              {"unicode \xe6\x97\xa5\xe6\x9c\xac", "tab\there, newline\nthere, \x01 control"}};
  const char *p = dn_test_path("round.safetensors");
  DN_OK_OR_FAIL(dn_safetensors_save(p, tensors, 8, meta, 4));

  dn_safetensors *st;
  DN_OK_OR_FAIL(dn_safetensors_load(&st, p));
  assert_int_equal(st->count, 8);
  for (int i = 0; i < 8; i++) assert_same_tensor(find_tensor(st, tensors[i].name), tensors[i].tensor);
  assert_int_equal(find_tensor(st, "scalar")->ndim, 0);
  assert_int_equal(st->metadata_count, 4);
  for (int i = 0; i < 4; i++) assert_string_equal(find_metadata(st, meta[i].key), meta[i].value);
  dn_safetensors_free(st);
  dn_safetensors_free(NULL);

  /* no tensors and no metadata is a valid file too */
  DN_OK_OR_FAIL(dn_safetensors_save(p, NULL, 0, NULL, 0));
  DN_OK_OR_FAIL(dn_safetensors_load(&st, p));
  assert_int_equal(st->count, 0);
  assert_int_equal(st->metadata_count, 0);
  dn_safetensors_free(st);

  dn_tensor *objects[] = {w, wt, labels, mask, scalar, empty, empty_u8};
  for (int i = 0; i < 7; i++) dn_tensor_release(objects[i]);
}

static void test_large_view_roundtrip(void **state) {
  (void)state;
  /* a transposed 600 x 500 view: several staging chunks */
  dn_tensor *a = dn_test_random(7, 2, (int64_t[]){500, 600});
  dn_tensor *at;
  DN_OK_OR_FAIL(dn_t(&at, a));
  const char *p = dn_test_path("large.safetensors");
  DN_OK_OR_FAIL(dn_safetensors_save(p, (dn_named_tensor[]){{"at", at}}, 1, NULL, 0));
  dn_safetensors *st;
  DN_OK_OR_FAIL(dn_safetensors_load(&st, p));
  assert_same_tensor(find_tensor(st, "at"), at);
  dn_safetensors_free(st);
  dn_tensor_release(a);
  dn_tensor_release(at);
}

/* --- any reader parses our files the same way ---------------------------------------------------- */

/* A deliberately naive reader: the 8-byte length, then the tensor's entry
   located by searching the JSON text, then its raw bytes. */
typedef struct naive_entry {
  char dtype[8];
  char shape[64];
  long long begin, end;
} naive_entry;

static naive_entry naive_find(const char *json, const char *name) {
  naive_entry e;
  char key[128];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *at = strstr(json, key);
  if (!at) fail_msg("naive reader: no entry %s", key);
  const char *close = strchr(at, '}');
  const char *dtype = strstr(at, "\"dtype\":\"");
  const char *shape = strstr(at, "\"shape\":[");
  const char *offsets = strstr(at, "\"data_offsets\":[");
  assert_true(dtype && dtype < close && shape && shape < close && offsets && offsets < close);
  dtype += strlen("\"dtype\":\"");
  size_t n = (size_t)(strchr(dtype, '"') - dtype);
  memcpy(e.dtype, dtype, n);
  e.dtype[n] = '\0';
  shape += strlen("\"shape\":");
  n = (size_t)(strchr(shape, ']') - shape) + 1;
  memcpy(e.shape, shape, n);
  e.shape[n] = '\0';
  char *end;
  e.begin = strtoll(offsets + strlen("\"data_offsets\":["), &end, 10);
  assert_true(*end == ',');
  e.end = strtoll(end + 1, &end, 10);
  assert_true(*end == ']');
  return e;
}

static void test_independent_reader(void **state) {
  (void)state;
  dn_tensor *weight = dn_test_random(11, 2, (int64_t[]){3, 4});
  dn_tensor *bias = dn_test_random(12, 1, (int64_t[]){4});
  dn_tensor *labels, *mask;
  DN_OK_OR_FAIL(dn_tensor_from_data(&labels, DN_I32, 1, (int64_t[]){3}, (int32_t[]){1, -2, 70000}));
  DN_OK_OR_FAIL(dn_tensor_from_data(&mask, DN_U8, 1, (int64_t[]){3}, (uint8_t[]){1, 0, 255}));
  /* a 1-byte tensor first: the writer still aligns the 4-byte ones */
  dn_named_tensor tensors[] = {{"mask", mask}, {"weight", weight}, {"labels", labels}, {"bias", bias}};
  const char *p = dn_test_path("independent.safetensors");
  DN_OK_OR_FAIL(dn_safetensors_save(p, tensors, 4, (dn_metadata_entry[]){{"format", "pt"}}, 1));

  size_t size;
  unsigned char *file = dn_test_read_file(p, &size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | file[i];
  assert_true(8 + n <= size);
  assert_int_equal(n % 8, 0);                  /* padded like the reference writer */
  assert_int_equal(file[8], '{');
  char *json = malloc(n + 1);
  memcpy(json, file + 8, n);
  json[n] = '\0';
  assert_non_null(strstr(json, "\"__metadata__\":{\"format\":\"pt\"}"));
  const unsigned char *data = file + 8 + n;
  long long data_length = (long long)(size - 8 - n);

  naive_entry e = naive_find(json, "weight");
  assert_string_equal(e.dtype, "F32");
  assert_string_equal(e.shape, "[3,4]");
  assert_int_equal(e.end - e.begin, 48);
  assert_int_equal(e.begin % 4, 0);
  unsigned char expected[64];
  for (int i = 0; i < 12; i++) float_le(expected + 4 * i, (float)dn_test_at(weight, i));
  assert_memory_equal(data + e.begin, expected, 48);

  e = naive_find(json, "bias");
  assert_string_equal(e.shape, "[4]");
  for (int i = 0; i < 4; i++) float_le(expected + 4 * i, (float)dn_test_at(bias, i));
  assert_memory_equal(data + e.begin, expected, 16);

  e = naive_find(json, "labels");
  assert_string_equal(e.dtype, "I32");
  assert_int_equal(e.begin % 4, 0);
  const unsigned char labels_le[] = {1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x70, 0x11, 0x01, 0x00};
  assert_memory_equal(data + e.begin, labels_le, 12);

  e = naive_find(json, "mask");
  assert_string_equal(e.dtype, "U8");
  assert_memory_equal(data + e.begin, ((unsigned char[]){1, 0, 255}), 3);
  assert_int_equal(e.end, data_length);        /* the 1-byte tensor comes last */
  assert_int_equal(data_length, 48 + 16 + 12 + 3);
  free(json);
  free(file);
  dn_tensor_release(weight);
  dn_tensor_release(bias);
  dn_tensor_release(labels);
  dn_tensor_release(mask);
}

/* A file as another writer might make it: whitespace, any key order, escapes, metadata last. */
static void write_st(const char *path, const char *json, const unsigned char *data, size_t data_length) {
  size_t n = strlen(json);
  unsigned char *file = malloc(8 + n + data_length + 1);
  for (int i = 0; i < 8; i++) file[i] = (unsigned char)((uint64_t)n >> (8 * i));
  memcpy(file + 8, json, n);
  if (data_length) memcpy(file + 8 + n, data, data_length);
  dn_test_write_file(path, file, 8 + n + data_length);
  free(file);
}

static void test_reads_foreign_file(void **state) {
  (void)state;
  const char *json =
    "{\n  \"b\\u00e9ta\" : {\"shape\": [2], \"data_offsets\": [8, 16], \"dtype\": \"F32\"},\n"
    "  \"a\\\"q\" : {\"data_offsets\" : [0,8], \"dtype\":\"I32\", \"shape\":[1, 2]},\n"
    "  \"__metadata__\": {\"k\\ud83d\\ude00\": \"v\\/\\\\\"}\n}\n   ";
  unsigned char data[16] = {5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
  float_le(data + 8, 0.5f);
  float_le(data + 12, -3.0f);
  const char *p = dn_test_path("foreign.safetensors");
  write_st(p, json, data, 16);
  dn_safetensors *st;
  DN_OK_OR_FAIL(dn_safetensors_load(&st, p));
  assert_int_equal(st->count, 2);
  const dn_tensor *beta = find_tensor(st, "b\xc3\xa9ta");
  assert_int_equal(beta->dtype, DN_F32);
  assert_true(dn_test_at(beta, 0) == 0.5 && dn_test_at(beta, 1) == -3.0);
  const dn_tensor *a = find_tensor(st, "a\"q");
  assert_int_equal(a->dtype, DN_I32);
  assert_int_equal(a->ndim, 2);
  assert_true(dn_test_at(a, 0) == 5 && dn_test_at(a, 1) == -1);
  assert_int_equal(st->metadata_count, 1);
  assert_string_equal(st->metadata[0].key, "k\xf0\x9f\x98\x80");   /* a surrogate pair decoded */
  assert_string_equal(st->metadata[0].value, "v/\\");
  dn_safetensors_free(st);
}

/* --- malformed files ------------------------------------------------------------------------------ */

static void expect_bad_header(const char *json, size_t data_length, const char *needle) {
  static const unsigned char zeros[64];
  assert_true(data_length <= sizeof zeros);
  const char *p = dn_test_path("bad.safetensors");
  write_st(p, json, zeros, data_length);
  dn_safetensors *st = (dn_safetensors *)1;
  DN_EXPECT_ERROR(dn_safetensors_load(&st, p), DN_EFORMAT, needle);
  assert_null(st);
  assert_non_null(strstr(dn_last_error(), p));   /* every message names the file */
}

#define ENTRY(name, dtype, shape, offsets) \
  "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offsets "}"

static void test_bad_json(void **state) {
  (void)state;
  expect_bad_header("{" ENTRY("a", "F32", "[1]", "[0,4]") ",}", 4, "bad JSON header: expected a string key");
  expect_bad_header("{a:1}", 0, "bad JSON header: expected a string key, found 'a' at byte 1");
  expect_bad_header("{\"a\" 1}", 0, "expected ':' after an object key");
  expect_bad_header("{" ENTRY("a", "F32", "[1.0]", "[0,4]") "}", 4, "non-integer number");
  expect_bad_header("{" ENTRY("a", "F32", "[1e2]", "[0,4]") "}", 4, "non-integer number");
  expect_bad_header("{\"__metadata__\":{\"k\":true}}", 0, "true, false and null are not allowed");
  expect_bad_header("{\"__metadata__\":{\"k\":null}}", 0, "not allowed");
  expect_bad_header("{\"__metadata__\":{\"k\":\"v}}", 0, "unterminated string");
  expect_bad_header("{\"__metadata__\":{\"k\":\"\xff\"}}", 0, "invalid UTF-8");
  expect_bad_header("{\"__metadata__\":{\"k\":\"\xc0\xaf\"}}", 0, "invalid UTF-8");   /* overlong '/' */
  expect_bad_header("{\"__metadata__\":{\"k\":\"\\ud800\"}}", 0, "without a low surrogate");
  expect_bad_header("{\"__metadata__\":{\"k\":\"\\udc00\"}}", 0, "lone low surrogate");
  expect_bad_header("{\"__metadata__\":{\"k\":\"\\u12g4\"}}", 0, "bad hex digit");
  expect_bad_header("{\"__metadata__\":{\"k\":\"\\q\"}}", 0, "bad escape");
  expect_bad_header("{\"__metadata__\":{\"k\":\"\\u0000\"}}", 0, "\\u0000");
  expect_bad_header("{\"__metadata__\":{\"k\":\"a\tb\"}}", 0, "control character 0x09");
  expect_bad_header("{\"__metadata__\":{\"k\":01}}", 0, "leading zero");
  expect_bad_header("{\"__metadata__\":{\"k\":99999999999999999999}}", 0, "out of the 64-bit range");
  expect_bad_header("{} x", 0, "unexpected 'x' after the JSON value");
  expect_bad_header("", 0, "expected a value, found end of input");
  expect_bad_header("{\"a\":1", 0, "expected ',' or '}'");
  expect_bad_header("{" ENTRY("a", "F32", "[1", "[0,4]") "}", 4, "expected ',' or ']'");
  expect_bad_header("{" ENTRY("a", "F32", "[1]", "[0,4]") "," ENTRY("a", "F32", "[1]", "[4,8]") "}", 8,
                    "duplicate key \"a\"");
  char deep[256] = "{\"__metadata__\":";
  for (int i = 0; i < 40; i++) strcat(deep, "[");
  for (int i = 0; i < 40; i++) strcat(deep, "]");
  strcat(deep, "}");
  expect_bad_header(deep, 0, "nesting deeper than 32");
  expect_bad_header("[1]", 0, "the header is a JSON array, not an object");
}

static void test_bad_entries(void **state) {
  (void)state;
  expect_bad_header("{\"a\":5}", 0, "tensor 'a' is a JSON integer, not an object");
  expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"foo\":1}}", 4,
                    "tensor 'a': unexpected key \"foo\"");
  expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a': missing \"data_offsets\"");
  expect_bad_header("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing \"dtype\"");
  expect_bad_header("{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype must be a string");
  expect_bad_header("{" ENTRY("a", "Q7", "[1]", "[0,4]") "}", 4, "tensor 'a': unknown dtype \"Q7\"");
  expect_bad_header("{" ENTRY("a", "F16", "[2]", "[0,4]") "}", 4, "tensor 'a': unsupported dtype F16");
  expect_bad_header("{" ENTRY("a", "BF16", "[2]", "[0,4]") "}", 4, "unsupported dtype BF16");
  expect_bad_header("{" ENTRY("a", "F64", "[1]", "[0,8]") "}", 8, "unsupported dtype F64");
  expect_bad_header("{" ENTRY("a", "I64", "[1]", "[0,8]") "}", 8, "unsupported dtype I64");
  expect_bad_header("{" ENTRY("a", "F32", "[-1]", "[0,4]") "}", 4, "shape must hold non-negative integers");
  expect_bad_header("{" ENTRY("a", "F32", "[\"2\"]", "[0,4]") "}", 4, "shape must hold non-negative integers");
  expect_bad_header("{" ENTRY("a", "F32", "5", "[0,4]") "}", 4, "shape must be an array");
  /* issue 10 F7: zero bytes of data, but strides that would overflow int64 */
  expect_bad_header("{" ENTRY("a", "F32", "[0,4611686018427387904,4]", "[0,0]") "}", 0,
                    "tensor 'a': shape [0,4611686018427387904,4] is too large");
  expect_bad_header("{" ENTRY("a", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4,
                    "tensor 'a' has 9 dims (dropnet supports up to 8)");
  expect_bad_header("{" ENTRY("a", "F32", "[1]", "[0]") "}", 4, "data_offsets must be [begin, end]");
  expect_bad_header("{" ENTRY("a", "F32", "[1]", "[0,4,8]") "}", 4, "data_offsets must be [begin, end]");
  expect_bad_header("{" ENTRY("a", "F32", "[0]", "[4,0]") "}", 4, "bad data_offsets [4,0]");
  expect_bad_header("{" ENTRY("a", "F32", "[0]", "[-4,-4]") "}", 4, "bad data_offsets");
  expect_bad_header("{" ENTRY("a", "F32", "[2]", "[0,4]") "}", 4,
                    "tensor 'a': data_offsets [0,4] hold 4 bytes but shape [2] F32 needs 8");
  expect_bad_header("{" ENTRY("a", "F32", "[4294967296,4294967296,4294967296]", "[0,4]") "}", 4, "needs more than");
  expect_bad_header("{" ENTRY("a", "F32", "[2]", "[0,8]") "}", 4,
                    "tensor 'a': data_offsets [0,8] go past the end of the data (4 bytes)");
  expect_bad_header("{" ENTRY("a", "F32", "[2]", "[0,8]") "," ENTRY("b", "F32", "[2]", "[4,12]") "}", 12,
                    "tensors 'a' [0,8) and 'b' [4,12) overlap");
  expect_bad_header("{" ENTRY("b", "F32", "[2]", "[4,12]") "," ENTRY("a", "F32", "[2]", "[0,8]") "}", 12, "overlap");
  expect_bad_header("{" ENTRY("a", "F32", "[1]", "[0,4]") "," ENTRY("b", "F32", "[1]", "[0,4]") "}", 4, "overlap");
  expect_bad_header("{" ENTRY("a", "F32", "[1]", "[0,4]") "," ENTRY("b", "F32", "[1]", "[8,12]") "}", 12,
                    "bytes [4,8) of the data belong to no tensor (before 'b')");
  expect_bad_header("{" ENTRY("a", "F32", "[1]", "[4,8]") "}", 8, "bytes [0,4) of the data belong to no tensor");
  expect_bad_header("{" ENTRY("a", "F32", "[1]", "[0,4]") "}", 8,
                    "bytes [4,8) of the data belong to no tensor (after the last)");
  expect_bad_header("{}", 4, "bytes [0,4) of the data belong to no tensor");
  expect_bad_header("{\"__metadata__\":{\"k\":1}}", 0, "metadata 'k' is a JSON integer, not a string");
  expect_bad_header("{\"__metadata__\":[]}", 0, "__metadata__ is a JSON array, not an object");
  /* dn_safetensors_save refuses an empty name, so loading refuses it too (a file read must save again) */
  expect_bad_header("{" ENTRY("", "F32", "[1]", "[0,4]") "}", 4,
                    "a tensor has an empty name \"\" (tensor names must be non-empty)");
  expect_bad_header("{" ENTRY("a", "F32", "[1]", "[0,4]") "," ENTRY("", "U8", "[0]", "[4,4]") "}", 4,
                    "empty name");
}

static void test_bad_lengths(void **state) {
  (void)state;
  const char *p = dn_test_path("short.safetensors");
  dn_safetensors *st = (dn_safetensors *)1;
  dn_test_write_file(p, "\x02\0\0\0\0", 5);
  DN_EXPECT_ERROR(dn_safetensors_load(&st, p), DN_EFORMAT, "file too short (5 bytes)");
  assert_null(st);
  unsigned char file[24] = {0xe8, 0x03};   /* 1000 */
  dn_test_write_file(p, file, 20);
  DN_EXPECT_ERROR(dn_safetensors_load(&st, p), DN_EFORMAT,
                  "header length 1000 is past the end of the file (20 bytes)");
  memset(file, 0xff, 8);
  dn_test_write_file(p, file, 24);
  DN_EXPECT_ERROR(dn_safetensors_load(&st, p), DN_EFORMAT, "header length 18446744073709551615 is past the end");
  /* a sparse file big enough for a 100 MB header: refused by the size limit, not read */
  const uint64_t n = 100000001;
  for (int i = 0; i < 8; i++) file[i] = (unsigned char)(n >> (8 * i));
  dn_test_write_file(p, file, 8);
  assert_int_equal(truncate(p, (off_t)(8 + n + 8)), 0);
  DN_EXPECT_ERROR(dn_safetensors_load(&st, p), DN_EFORMAT, "header length 100000001 is over the 100000000-byte limit");
  DN_EXPECT_ERROR(dn_safetensors_load(&st, "/nonexistent/x.safetensors"), DN_EIO, "cannot open /nonexistent/x");
  DN_EXPECT_ERROR(dn_safetensors_load(&st, dn_test_tempdir()), DN_EIO, "not a regular file");
  DN_EXPECT_ERROR(dn_safetensors_load(&st, NULL), DN_EINVAL, "path");
  unlink(p);
}

/* --- saving: bad arguments and atomicity ---------------------------------------------------------------- */

static void test_save_errors(void **state) {
  (void)state;
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_zeros(&t, DN_F32, 1, (int64_t[]){2}));
  const char *p = dn_test_path("errors.safetensors");
  DN_EXPECT_ERROR(dn_safetensors_save(p, (dn_named_tensor[]){{"a", t}, {"b", t}, {"a", t}}, 3, NULL, 0), DN_EINVAL,
                  "duplicate tensor name 'a'");
  DN_EXPECT_ERROR(dn_safetensors_save(p, (dn_named_tensor[]){{"", t}}, 1, NULL, 0), DN_EINVAL, "empty name");
  DN_EXPECT_ERROR(dn_safetensors_save(p, (dn_named_tensor[]){{NULL, t}}, 1, NULL, 0), DN_EINVAL, "empty name");
  DN_EXPECT_ERROR(dn_safetensors_save(p, (dn_named_tensor[]){{"__metadata__", t}}, 1, NULL, 0), DN_EINVAL,
                  "reserved");
  DN_EXPECT_ERROR(dn_safetensors_save(p, (dn_named_tensor[]){{"a", NULL}}, 1, NULL, 0), DN_EINVAL,
                  "tensor 'a' is NULL");
  DN_EXPECT_ERROR(dn_safetensors_save(p, (dn_named_tensor[]){{"bad\xff", t}}, 1, NULL, 0), DN_EINVAL,
                  "not valid UTF-8");
  DN_EXPECT_ERROR(dn_safetensors_save(p, NULL, 0, (dn_metadata_entry[]){{"k", "1"}, {"k", "2"}}, 2), DN_EINVAL,
                  "duplicate metadata key 'k'");
  DN_EXPECT_ERROR(dn_safetensors_save(p, NULL, 0, (dn_metadata_entry[]){{"k", NULL}}, 1), DN_EINVAL, "NULL");
  DN_EXPECT_ERROR(dn_safetensors_save(p, NULL, 0, (dn_metadata_entry[]){{"k", "\xc3"}}, 1), DN_EINVAL, "UTF-8");
  DN_EXPECT_ERROR(dn_safetensors_save(p, NULL, -1, NULL, 0), DN_EINVAL, "count -1");
  DN_EXPECT_ERROR(dn_safetensors_save(NULL, NULL, 0, NULL, 0), DN_EINVAL, "path");
  DN_EXPECT_ERROR(dn_safetensors_save("/nonexistent_dn_dir/x.safetensors", (dn_named_tensor[]){{"a", t}}, 1, NULL, 0),
                  DN_EIO, "cannot create a temporary file beside /nonexistent_dn_dir/x.safetensors");
  DN_EXPECT_ERROR(dn_safetensors_save(dn_test_tempdir(), (dn_named_tensor[]){{"a", t}}, 1, NULL, 0), DN_EIO, "is a directory");
  assert_int_equal(access(p, F_OK), -1);   /* nothing was written */
  assert_int_equal(dn_test_count_temp_files(), 0);
  dn_tensor_release(t);
}

static void test_atomic_save(void **state) {
  (void)state;
  const char *p = dn_test_path("checkpoint.safetensors");
  dn_tensor *a, *b;
  DN_OK_OR_FAIL(dn_tensor_full(&a, DN_F32, 1, (int64_t[]){4}, 1.0));
  DN_OK_OR_FAIL(dn_tensor_full(&b, DN_F32, 1, (int64_t[]){3}, 2.0));
  DN_OK_OR_FAIL(dn_safetensors_save(p, (dn_named_tensor[]){{"a", a}}, 1, (dn_metadata_entry[]){{"epoch", "1"}}, 1));
  assert_int_equal(chmod(p, 0640), 0);
  size_t old_size;
  unsigned char *old = dn_test_read_file(p, &old_size);

  /* a save rejected before writing leaves the old file as it was */
  DN_EXPECT_ERROR(dn_safetensors_save(p, (dn_named_tensor[]){{"a", b}, {"a", b}}, 2, NULL, 0), DN_EINVAL, "duplicate");
  size_t size;
  unsigned char *now = dn_test_read_file(p, &size);
  assert_int_equal(size, old_size);
  assert_memory_equal(now, old, size);
  free(now);
  assert_int_equal(dn_test_count_temp_files(), 0);

  /* a save that fails in the middle of writing (file size limit: EFBIG) also leaves it intact */
  dn_tensor *big = dn_test_random(5, 2, (int64_t[]){512, 512});   /* 1 MiB */
  struct rlimit saved, limited;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
  limited = saved;
  limited.rlim_cur = 64 * 1024;
  void (*previous)(int) = signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &limited), 0);
  dn_status st = dn_safetensors_save(p, (dn_named_tensor[]){{"big", big}}, 1, NULL, 0);
  char message[512];
  snprintf(message, sizeof message, "%s", dn_last_error());
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
  signal(SIGXFSZ, previous);
  assert_int_equal(st, DN_EIO);
  assert_non_null(strstr(message, "File too large"));
  assert_non_null(strstr(message, p));
  now = dn_test_read_file(p, &size);
  assert_int_equal(size, old_size);
  assert_memory_equal(now, old, size);
  free(now);
  assert_int_equal(dn_test_count_temp_files(), 0);

  /* a successful save replaces the file and keeps its mode */
  DN_OK_OR_FAIL(dn_safetensors_save(p, (dn_named_tensor[]){{"b", b}}, 1, (dn_metadata_entry[]){{"epoch", "2"}}, 1));
  dn_safetensors *loaded;
  DN_OK_OR_FAIL(dn_safetensors_load(&loaded, p));
  assert_int_equal(loaded->count, 1);
  assert_string_equal(loaded->tensors[0].name, "b");
  assert_same_tensor(loaded->tensors[0].tensor, b);
  assert_string_equal(find_metadata(loaded, "epoch"), "2");
  dn_safetensors_free(loaded);
  struct stat info;
  assert_int_equal(stat(p, &info), 0);
  assert_int_equal(info.st_mode & 0777, 0640);
  assert_int_equal(dn_test_count_temp_files(), 0);

  /* a new file gets the usual mode from the umask, not mkstemp's 0600 */
  mode_t mask = umask(022);
  const char *q = dn_test_path("fresh.safetensors");
  DN_OK_OR_FAIL(dn_safetensors_save(q, (dn_named_tensor[]){{"b", b}}, 1, NULL, 0));
  umask(mask);
  assert_int_equal(stat(q, &info), 0);
  assert_int_equal(info.st_mode & 0777, 0644);

  free(old);
  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(big);
}

/* --- stale temporaries: what a crashed save leaves, removed by the next save of the same file ------------------ */

/* Creates tempdir/name as a small regular file last modified `age` seconds ago. */
static const char *make_aged_file(const char *name, int age) {
  const char *p = dn_test_path(name);
  dn_test_write_file(p, "partial", 7);
  struct timespec times[2];
  clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= age;
  times[1] = times[0];
  assert_int_equal(utimensat(AT_FDCWD, p, times, AT_SYMLINK_NOFOLLOW), 0);
  return p;
}

static bool exists(const char *name) {
  struct stat info;
  return lstat(dn_test_path(name), &info) == 0;
}

static void test_stale_temporaries(void **state) {
  (void)state;
  char p[256];   /* dn_test_path's buffers rotate */
  snprintf(p, sizeof p, "%s", dn_test_path("run.safetensors"));
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_full(&t, DN_F32, 1, (int64_t[]){3}, 1.0));
  /* what crashed saves of run.safetensors leave: removed */
  make_aged_file(".run.safetensors.tmp-Ab12Cd", 3600);
  make_aged_file(".run.safetensors.tmp-zzZZ09", 120);
  /* a temporary written just now may belong to a writer in progress: kept */
  make_aged_file(".run.safetensors.tmp-Fresh1", 0);
  /* an old temporary whose writer still holds its lock (a stalled writer): kept while locked */
  int lock_fd = open(make_aged_file(".run.safetensors.tmp-Locked", 3600), O_RDONLY);
  assert_true(lock_fd >= 0);
  assert_int_equal(flock(lock_fd, LOCK_EX), 0);
  /* not our pattern, not this target, not a regular file, not ours: kept */
  const char *others[] = {".run.safetensors.tmp-Ab12C", ".run.safetensors.tmp-Ab12Cde", ".run.safetensors.tmp-Ab_2Cd",
                          "run.safetensors.tmp-Ab12Cd", ".other.safetensors.tmp-Ab12Cd", ".run.safetensors.tmp-",
                          ".run.safetensors.tmp-Ab12Cd.bak", ".un.safetensors.tmp-Ab12Cd"};
  for (size_t i = 0; i < sizeof others / sizeof *others; i++) make_aged_file(others[i], 3600);
  char target[256];
  snprintf(target, sizeof target, "%s", make_aged_file("elsewhere", 3600));
  assert_int_equal(symlink(target, dn_test_path(".run.safetensors.tmp-Symlnk")), 0);
  assert_int_equal(mkdir(dn_test_path(".run.safetensors.tmp-Direct"), 0700), 0);
  bool chowned = geteuid() == 0 && chown(make_aged_file(".run.safetensors.tmp-NotOur", 3600), 65534, 65534) == 0;

  /* a failed save removes nothing */
  DN_EXPECT_ERROR(dn_safetensors_save(p, (dn_named_tensor[]){{"", t}}, 1, NULL, 0), DN_EINVAL, "empty name");
  assert_true(exists(".run.safetensors.tmp-Ab12Cd"));

  DN_OK_OR_FAIL(dn_safetensors_save(p, (dn_named_tensor[]){{"w", t}}, 1, NULL, 0));
  assert_false(exists(".run.safetensors.tmp-Ab12Cd"));
  assert_false(exists(".run.safetensors.tmp-zzZZ09"));
  assert_true(exists(".run.safetensors.tmp-Fresh1"));
  assert_true(exists(".run.safetensors.tmp-Locked"));
  for (size_t i = 0; i < sizeof others / sizeof *others; i++)
    if (!exists(others[i])) fail_msg("%s was removed", others[i]);
  assert_true(exists(".run.safetensors.tmp-Symlnk"));
  assert_true(exists("elsewhere"));
  assert_true(exists(".run.safetensors.tmp-Direct"));
  if (chowned) assert_true(exists(".run.safetensors.tmp-NotOur"));

  /* once its writer is gone (the lock dropped, as when a process dies), the next save removes it */
  close(lock_fd);
  DN_OK_OR_FAIL(dn_safetensors_save(p, (dn_named_tensor[]){{"w", t}}, 1, NULL, 0));
  assert_false(exists(".run.safetensors.tmp-Locked"));
  assert_true(exists(".run.safetensors.tmp-Fresh1"));

  /* the IDX writer shares the clean-up */
  make_aged_file(".labels.idx.tmp-Q1w2E3", 3600);
  DN_OK_OR_FAIL(dn_idx_write(dn_test_path("labels.idx"), t));
  assert_false(exists(".labels.idx.tmp-Q1w2E3"));

  /* leave the directory as the other tests expect it */
  const char *leftovers[] = {".run.safetensors.tmp-Fresh1", ".run.safetensors.tmp-Symlnk", "elsewhere",
                             ".run.safetensors.tmp-NotOur"};
  for (size_t i = 0; i < sizeof leftovers / sizeof *leftovers; i++) unlink(dn_test_path(leftovers[i]));
  for (size_t i = 0; i < sizeof others / sizeof *others; i++) unlink(dn_test_path(others[i]));
  rmdir(dn_test_path(".run.safetensors.tmp-Direct"));
  assert_int_equal(dn_test_count_temp_files(), 0);
  dn_tensor_release(t);
}

/* dn_make_directory: mkdir -p, an existing directory accepted, a file refused naming the path. */
static void test_make_directory(void **state) {
  (void)state;
  char deep[512];
  snprintf(deep, sizeof deep, "%s", dn_test_path("mk/a/b"));
  assert_int_equal(dn_make_directory(deep), DN_OK);
  assert_int_equal(dn_make_directory(deep), DN_OK);
  char file[600];
  snprintf(file, sizeof file, "%s/f", deep);
  assert_int_equal(dn_write_file(file, "x", 1), DN_OK);
  assert_int_equal(dn_make_directory(file), DN_EIO);
  assert_non_null(strstr(dn_last_error(), "exists and is not a directory"));
  char below[700];
  snprintf(below, sizeof below, "%s/g", file);
  assert_int_equal(dn_make_directory(below), DN_EIO);
  assert_non_null(strstr(dn_last_error(), "cannot create"));
  assert_non_null(strstr(dn_last_error(), below));
  assert_int_equal(dn_make_directory(""), DN_EINVAL);
  assert_int_equal(dn_make_directory(NULL), DN_EINVAL);
  remove(file);
  remove(deep);
  remove(dn_test_path("mk/a"));
  remove(dn_test_path("mk"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_roundtrip),
    cmocka_unit_test(test_large_view_roundtrip),
    cmocka_unit_test(test_independent_reader),
    cmocka_unit_test(test_reads_foreign_file),
    cmocka_unit_test(test_bad_json),
    cmocka_unit_test(test_bad_entries),
    cmocka_unit_test(test_bad_lengths),
    cmocka_unit_test(test_save_errors),
    cmocka_unit_test(test_atomic_save),
    cmocka_unit_test(test_stale_temporaries),
    cmocka_unit_test(test_make_directory),
  };
  return cmocka_run_group_tests(tests, dn_test_tempdir_setup, dn_test_tempdir_teardown);
}
