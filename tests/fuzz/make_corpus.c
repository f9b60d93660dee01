/*
** Seed corpora for the harnesses: `make_corpus DIR` writes DIR/idx,
** DIR/csv and DIR/safetensors. Small valid files of each format (every
** dtype, 1-4 dims for IDX and 0-4 for safetensors, empty tensors, gzip and
** plain IDX, CSV with and without a header, odd whitespace, safetensors
** metadata) and near misses (one thing wrong). The bytes are built here by
** hand, not by the runtime's writers, and then every seed is read with the
** reader it is meant for: a valid seed must load and a near miss must be
** refused, else this program fails (a seed that tests nothing is a bug).
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "dropnet/dropnet.h"
#include "fuzz_util.h"

typedef enum expect { LOADS, REFUSED, EITHER } expect;

typedef struct buffer {
  unsigned char data[8192];
  size_t length;
} buffer;

static const char *root;
static int seeds, problems;

static void die(const char *what) {
  fprintf(stderr, "make_corpus: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void put(buffer *b, const void *data, size_t n) {
  if (n == 0) return;
  if (b->length + n > sizeof b->data) {
    fprintf(stderr, "make_corpus: seed too large\n");
    exit(1);
  }
  memcpy(b->data + b->length, data, n);
  b->length += n;
}

static void put_be32(buffer *b, uint32_t v) {
  unsigned char bytes[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                            (unsigned char)v};
  put(b, bytes, 4);
}

static const char *seed_path(const char *format, const char *name) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/%s/%s", root, format, name);
  return path;
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) die(path);
}

/* Whether the reader's verdict matches what the seed was made to be. */
static void judge(const char *format, const char *name, expect want, dn_status got) {
  seeds++;
  if (want == LOADS && got != DN_OK) {
    fprintf(stderr, "make_corpus: %s/%s should load but: %s\n", format, name, dn_last_error());
    problems++;
  } else if (want == REFUSED && got == DN_OK) {
    fprintf(stderr, "make_corpus: %s/%s should be refused but loads\n", format, name);
    problems++;
  }
}

/* --- IDX ------------------------------------------------------------------------------ */

/* 00 00 type ndims, big-endian dims. */
static void idx_header(buffer *b, unsigned char type, int ndims, const uint32_t *dims) {
  b->length = 0;
  put(b, (unsigned char[]){0, 0, type, (unsigned char)ndims}, 4);
  for (int d = 0; d < ndims; d++) put_be32(b, dims[d]);
}

/* The whole of in as one gzip member. */
static void gzip(buffer *out, const buffer *in) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) die("deflateInit2");
  z.next_in = (Bytef *)in->data;
  z.avail_in = (uInt)in->length;
  z.next_out = out->data;
  z.avail_out = (uInt)sizeof out->data;
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) die("deflate");
  out->length = sizeof out->data - z.avail_out;
  deflateEnd(&z);
}

static void idx_seed(const char *name, const buffer *b, expect want) {
  const char *path = seed_path("idx", name);
  write_file(path, b->data, b->length);
  dn_tensor *t;
  dn_status st = dn_idx_read(&t, path);
  dn_tensor_release(t);
  judge("idx", name, want, st);
}

/* The file plain as name, and gzip-compressed as name.gz. */
static void idx_both(const char *name, const buffer *b) {
  idx_seed(name, b, LOADS);
  buffer gz;
  gzip(&gz, b);
  char gz_name[256];
  snprintf(gz_name, sizeof gz_name, "%s.gz", name);
  idx_seed(gz_name, &gz, LOADS);
}

static void idx_seeds(void) {
  buffer b, gz;

  idx_header(&b, 0x08, 1, (uint32_t[]){5});
  put(&b, (unsigned char[]){0, 1, 127, 128, 255}, 5);
  idx_both("ubyte_5", &b);
  idx_header(&b, 0x08, 2, (uint32_t[]){2, 3});
  put(&b, "\x00\x10\x20\x30\x40\x50", 6);
  idx_both("ubyte_2x3", &b);
  idx_header(&b, 0x08, 3, (uint32_t[]){2, 2, 2});
  put(&b, "abcdefgh", 8);
  idx_seed("ubyte_2x2x2", &b, LOADS);
  idx_header(&b, 0x09, 1, (uint32_t[]){4});
  put(&b, (unsigned char[]){0x00, 0x7f, 0x80, 0xff}, 4);
  idx_seed("sbyte_4", &b, LOADS);
  idx_header(&b, 0x0B, 2, (uint32_t[]){1, 3});
  put(&b, (unsigned char[]){0x7f, 0xff, 0x80, 0x00, 0xff, 0xfe}, 6);
  idx_both("short_1x3", &b);
  idx_header(&b, 0x0C, 2, (uint32_t[]){2, 2});
  put_be32(&b, 0x7fffffff);
  put_be32(&b, 0x80000000);
  put_be32(&b, 0xffffffff);
  put_be32(&b, 42);
  idx_both("int32_2x2", &b);
  /* float32: 1.5, -0, nan, inf, the smallest denormal, the largest float */
  idx_header(&b, 0x0D, 2, (uint32_t[]){2, 3});
  uint32_t floats[] = {0x3fc00000, 0x80000000, 0x7fc00000, 0x7f800000, 0x00000001, 0x7f7fffff};
  for (int i = 0; i < 6; i++) put_be32(&b, floats[i]);
  idx_both("float32_2x3", &b);
  idx_header(&b, 0x0D, 4, (uint32_t[]){1, 2, 1, 2});
  for (int i = 0; i < 4; i++) put_be32(&b, 0x40000000u + (uint32_t)i);
  idx_seed("float32_1x2x1x2", &b, LOADS);
  /* float64: 0.1, 1e300 (past float32: becomes inf), a denormal double (becomes 0) */
  idx_header(&b, 0x0E, 1, (uint32_t[]){3});
  uint64_t doubles[] = {0x3fb999999999999aull, 0x7e37e43c8800759cull, 0x0000000000000001ull};
  for (int i = 0; i < 3; i++) {
    put_be32(&b, (uint32_t)(doubles[i] >> 32));
    put_be32(&b, (uint32_t)doubles[i]);
  }
  idx_both("float64_3", &b);
  /* empty tensors */
  idx_header(&b, 0x08, 1, (uint32_t[]){0});
  idx_both("ubyte_empty", &b);
  idx_header(&b, 0x0D, 3, (uint32_t[]){2, 0, 3});
  idx_both("float32_2x0x3", &b);
  idx_header(&b, 0x0C, 8, (uint32_t[]){1, 1, 1, 1, 1, 1, 1, 1});
  put_be32(&b, 7);
  idx_seed("int32_8dims", &b, LOADS);
  /* two gzip members one after the other: one stream of data */
  idx_header(&b, 0x08, 1, (uint32_t[]){4});
  buffer half, members;
  gzip(&members, &b);
  half.length = 0;
  put(&half, "wxyz", 4);
  gzip(&gz, &half);
  put(&members, gz.data, gz.length);
  idx_seed("ubyte_4_two_members.gz", &members, LOADS);

  /* near misses */
  idx_header(&b, 0x08, 2, (uint32_t[]){2, 3});
  put(&b, "abcde", 5);
  idx_seed("near_truncated_data", &b, REFUSED);
  put(&b, "fg", 2);
  idx_seed("near_trailing_data", &b, REFUSED);
  gzip(&gz, &b);
  idx_seed("near_trailing_data.gz", &gz, REFUSED);
  idx_header(&b, 0x08, 2, (uint32_t[]){2, 3});
  put(&b, "abcdef", 6);
  gzip(&gz, &b);
  gz.length -= 4;   /* the length field of the trailer */
  idx_seed("near_cut_trailer.gz", &gz, REFUSED);
  gzip(&gz, &b);
  gz.data[gz.length - 8] ^= 1;   /* the CRC */
  idx_seed("near_bad_crc.gz", &gz, REFUSED);
  gzip(&gz, &b);
  gz.length /= 2;
  idx_seed("near_cut_deflate.gz", &gz, REFUSED);
  b.data[1] = 1;
  idx_seed("near_bad_magic", &b, REFUSED);
  idx_header(&b, 0x0A, 1, (uint32_t[]){1});
  put(&b, "a", 1);
  idx_seed("near_unknown_type", &b, REFUSED);
  idx_header(&b, 0x08, 0, NULL);
  idx_seed("near_zero_dims", &b, REFUSED);
  idx_header(&b, 0x08, 9, (uint32_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1});
  put(&b, "a", 1);
  idx_seed("near_nine_dims", &b, REFUSED);
  idx_header(&b, 0x0D, 3, (uint32_t[]){2, 3, 4});
  b.length -= 2;
  idx_seed("near_truncated_header", &b, REFUSED);
  idx_header(&b, 0x0D, 2, (uint32_t[]){0xffffffffu, 0xffffffffu});
  put_be32(&b, 0);
  idx_seed("near_huge_dims", &b, REFUSED);
  gzip(&gz, &b);
  idx_seed("near_huge_dims.gz", &gz, REFUSED);
  idx_header(&b, 0x08, 1, (uint32_t[]){4});
  put(&b, "ab", 2);
  b.length = 2;
  idx_seed("near_two_bytes", &b, REFUSED);
}

/* --- CSV ------------------------------------------------------------------------------ */

/* fuzz_csv's input: one options byte (delimiter, skip_header), then the file. */
static void csv_seed(const char *name, char delimiter, bool skip_header, const char *text, expect want) {
  int options = -1;
  for (int byte = 0; byte < 16 && options < 0; byte++)
    if (fuzz_csv_delimiter((uint8_t)byte) == delimiter && fuzz_csv_skip_header((uint8_t)byte) == skip_header)
      options = byte;
  if (options < 0) {
    fprintf(stderr, "make_corpus: csv/%s: delimiter 0x%02x is not in fuzz_csv's table\n", name, delimiter);
    exit(1);
  }
  buffer b = {.length = 0};
  put(&b, (unsigned char[]){(unsigned char)options}, 1);
  put(&b, text, strlen(text));
  write_file(seed_path("csv", name), b.data, b.length);
  const char *check = seed_path("csv", ".check");
  write_file(check, text, strlen(text));
  dn_tensor *t;
  dn_status st = dn_csv_read(&t, check, delimiter, skip_header);
  dn_tensor_release(t);
  remove(check);
  judge("csv", name, want, st);
}

static void csv_seeds(void) {
  csv_seed("plain", ',', false, "1,2,3\n4,5,6\n", LOADS);
  csv_seed("header", ',', true, "x,y,label\n0.5,-1.25,3\n1e-3,2E+2,-0\n", LOADS);
  csv_seed("header_only", ',', true, "a,b,c\n", LOADS);
  csv_seed("empty", ',', false, "", LOADS);
  csv_seed("one_value_no_newline", ';', false, "42", LOADS);
  csv_seed("crlf_bom", ',', true, "\xEF\xBB\xBF" "a,b\r\n1,2\r\n3,4\r\n", LOADS);
  csv_seed("blank_lines_at_end", ',', false, "1,2\n3,4\n\n  \n", LOADS);
  csv_seed("tabs", '\t', false, " 1.5 \t-2e-3\t+3\n4\t5 \t6\n", LOADS);
  csv_seed("spaces_around", ';', false, "  1 ;\t2\t; 3  \n4;5;6\n", LOADS);
  csv_seed("space_delimited", ' ', false, "1 2 3\n4 5 6\n", LOADS);
  csv_seed("pipe_colon", '|', true, "a|b\n.5|5.\n", LOADS);
  csv_seed("colon", ':', false, "1:2\n", LOADS);
  csv_seed("hash", '#', false, "1#2#3\n", LOADS);
  csv_seed("unit_separator", '\x1f', false, "1\x1f" "2\n", LOADS);
  csv_seed("float_limits", ',', false, "3.4028235e38,-3.4028235e38,1e-45,1.17549435e-38\n", LOADS);
  csv_seed("nan_inf", ',', false, "nan,inf,-inf,NAN,Infinity\n", EITHER);
  csv_seed("hex", ',', false, "0x1A,0x1p-3\n", EITHER);
  csv_seed("wide", ',', false, "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29\n",
           LOADS);

  csv_seed("near_quoted", ',', false, "\"1\",\"2\"\n", REFUSED);
  csv_seed("near_ragged", ',', false, "1,2,3\n4,5\n", REFUSED);
  csv_seed("near_empty_field", ',', false, "1,,3\n", REFUSED);
  csv_seed("near_trailing_delimiter", ',', false, "1,2,\n", REFUSED);
  csv_seed("near_blank_inside", ',', false, "1,2\n\n3,4\n", REFUSED);
  csv_seed("near_suffix", ',', false, "1.5x,2\n", REFUSED);
  csv_seed("near_two_numbers", ',', false, "1 2,3\n", REFUSED);
  csv_seed("near_out_of_range", ',', false, "1e39\n", REFUSED);
  csv_seed("near_header_not_skipped", ',', false, "a,b\n1,2\n", REFUSED);
  csv_seed("near_long_field", ',', false,
           "1.00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
           "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
           "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\n",
           REFUSED);
}

/* --- safetensors ----------------------------------------------------------------------- */

/* 8-byte little-endian header length, the header padded with spaces to pad
   bytes (0: none), then the data. */
static void st_file(buffer *b, const char *json, size_t pad, const void *data, size_t data_length) {
  size_t n = strlen(json);
  size_t header_length = pad && n % pad ? n + pad - n % pad : n;
  b->length = 0;
  for (int i = 0; i < 8; i++) put(b, (unsigned char[]){(unsigned char)((uint64_t)header_length >> (8 * i))}, 1);
  put(b, json, n);
  for (size_t i = n; i < header_length; i++) put(b, " ", 1);
  put(b, data, data_length);
}

static void st_seed(const char *name, const char *json, size_t pad, const void *data, size_t data_length,
                    expect want) {
  buffer b;
  st_file(&b, json, pad, data, data_length);
  const char *path = seed_path("safetensors", name);
  write_file(path, b.data, b.length);
  dn_safetensors *st;
  dn_status status = dn_safetensors_load(&st, path);
  dn_safetensors_free(st);
  judge("safetensors", name, want, status);
}

static void st_seeds(void) {
  unsigned char data[256];
  for (int i = 0; i < 256; i++) data[i] = (unsigned char)(i * 37);
  /* 1.0f, -2.5f little-endian */
  const unsigned char two_floats[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0};

  st_seed("f32_2", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, two_floats, 8, LOADS);
  st_seed("f32_2x3", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 0, data, 24, LOADS);
  st_seed("i32_4", "{\"labels\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, data, 16, LOADS);
  st_seed("u8_3", "{\"mask\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}", 8, data, 3, LOADS);
  st_seed("scalar", "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 8, two_floats, 4, LOADS);
  st_seed("u8_1x2x1x2", "{\"m\":{\"dtype\":\"U8\",\"shape\":[1,2,1,2],\"data_offsets\":[0,4]}}", 8, data, 4,
          LOADS);
  st_seed("f32_2x1x2", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,1,2],\"data_offsets\":[0,16]}}", 8, data, 16,
          LOADS);
  st_seed("empty_tensor", "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]}}", 8, NULL, 0, LOADS);
  st_seed("empty_file", "{}", 8, NULL, 0, LOADS);
  st_seed("metadata_only", "{\"__metadata__\":{\"format\":\"pt\",\"epoch\":\"3\"}}", 8, NULL, 0, LOADS);
  st_seed("several_with_metadata",
          "{\"__metadata__\":{\"lr\":\"0.1\",\"note\":\"tab\\there \\u00e9 \\ud83d\\ude00\"},"
          "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
          "\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
          "\"labels\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[24,28]},"
          "\"mask\":{\"dtype\":\"U8\",\"shape\":[2,2],\"data_offsets\":[28,32]},"
          "\"empty\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[32,32]}}",
          8, data, 32, LOADS);
  st_seed("out_of_order_offsets",
          "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
          8, data, 6, LOADS);
  st_seed("whitespace_and_escapes",
          " {\n \"na\\\"me\\\\\" : { \"shape\" : [ 1 ] , \"data_offsets\" : [ 0 , 1 ] , \"dtype\" : \"U8\" } }\t",
          0, data, 1, LOADS);
  st_seed("unicode_name", "{\"\xc3\xa9t\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 8,
          data, 1, LOADS);

  st_seed("near_f16", "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, data, 4, REFUSED);
  st_seed("near_unknown_dtype", "{\"h\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, data, 4,
          REFUSED);
  st_seed("near_size_mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, data, 8,
          REFUSED);
  st_seed("near_past_end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, data, 7, REFUSED);
  st_seed("near_hole",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
          "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
          8, data, 5, REFUSED);
  st_seed("near_overlap",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
          "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}",
          8, data, 3, REFUSED);
  st_seed("near_trailing_bytes", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 8, data, 3,
          REFUSED);
  st_seed("near_duplicate_key",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
          "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
          8, data, 2, REFUSED);
  st_seed("near_metadata_number", "{\"__metadata__\":{\"epoch\":3}}", 8, NULL, 0, REFUSED);
  st_seed("near_trailing_comma", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},}", 8, data, 1,
          REFUSED);
  st_seed("near_float_shape", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 8, data, 1,
          REFUSED);
  st_seed("near_negative_offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 8, data, 1,
          REFUSED);
  st_seed("near_2p63",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,1]}}", 8, data, 1, REFUSED);
  st_seed("near_shape_overflow",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 8, data, 4,
          REFUSED);
  st_seed("near_nine_dims",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 8, data, 1, REFUSED);
  st_seed("near_extra_key",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 8, data, 1, REFUSED);
  st_seed("near_true", "{\"__metadata__\":{\"a\":true}}", 8, NULL, 0, REFUSED);
  st_seed("near_lone_surrogate", "{\"__metadata__\":{\"a\":\"\\udc00\"}}", 8, NULL, 0, REFUSED);
  st_seed("near_bad_utf8", "{\"__metadata__\":{\"a\":\"\xc0\xaf\"}}", 8, NULL, 0, REFUSED);
  st_seed("near_array_root", "[]", 8, NULL, 0, REFUSED);

  /* the header length itself wrong */
  buffer b;
  st_file(&b, "{}", 8, NULL, 0);
  b.data[0] = 0xff;
  write_file(seed_path("safetensors", "near_header_past_end"), b.data, b.length);
  b.data[0] = 8;
  b.data[7] = 0x80;
  write_file(seed_path("safetensors", "near_header_2p63"), b.data, b.length);
  write_file(seed_path("safetensors", "near_seven_bytes"), b.data, 7);
  dn_safetensors *st;
  const char *names[] = {"near_header_past_end", "near_header_2p63", "near_seven_bytes"};
  for (int i = 0; i < 3; i++) {
    dn_status status = dn_safetensors_load(&st, seed_path("safetensors", names[i]));
    dn_safetensors_free(st);
    judge("safetensors", names[i], REFUSED, status);
  }
}

static void make_directory(const char *format) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", root, format);
  if (mkdir(path, 0777) != 0 && errno != EEXIST) die(path);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_corpus DIR  (writes DIR/idx, DIR/csv, DIR/safetensors)\n");
    return 2;
  }
  root = argv[1];
  if (mkdir(root, 0777) != 0 && errno != EEXIST) die(root);
  make_directory("idx");
  make_directory("csv");
  make_directory("safetensors");
  idx_seeds();
  csv_seeds();
  st_seeds();
  dn_alloc_empty_cache();
  if (problems) {
    fprintf(stderr, "make_corpus: %d of %d seeds are not what they were made to be\n", problems, seeds);
    return 1;
  }
  printf("make_corpus: %d seeds in %s/{idx,csv,safetensors}\n", seeds, root);
  return 0;
}
