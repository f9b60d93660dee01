/* Numeric CSV reading: layouts that must parse, and every malformed file with its line and column. */
#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
** getline with a fault to inject: once getline_calls_before_failure reaches
** 0, it fails the way glibc's does when it cannot grow the line buffer
** (-1, errno ENOMEM, no error flag on the stream). -1: never fails. This
** definition takes the place of libc's for the runtime linked into this test.
*/
static int getline_calls_before_failure = -1;

ssize_t getline(char **line, size_t *capacity, FILE *stream) {
  if (getline_calls_before_failure == 0) {
    errno = ENOMEM;
    return -1;
  }
  if (getline_calls_before_failure > 0) getline_calls_before_failure--;
  return getdelim(line, capacity, '\n', stream);
}

/* Writes text to name in the temporary directory; returns its path. */
static const char *write_csv(const char *name, const char *text) {
  const char *p = dn_test_path(name);
  dn_test_write_file(p, text, strlen(text));
  return p;
}

/* Reads text and checks it gives rows x cols with these values (float32-rounded). */
static void expect_values(const char *text, char delimiter, bool header, int64_t rows, int64_t cols,
                          const double *values) {
  const char *p = write_csv("ok.csv", text);
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_csv_read(&t, p, delimiter, header));
  assert_int_equal(t->dtype, DN_F32);
  assert_int_equal(t->ndim, 2);
  assert_int_equal(t->shape[0], rows);
  assert_int_equal(t->shape[1], cols);
  for (int64_t i = 0; i < rows * cols; i++) {
    double want = (double)(float)values[i];
    if (isnan(want)) assert_true(isnan(dn_test_at(t, i)));
    else if (dn_test_at(t, i) != want)
      fail_msg("element %lld: %.9g, expected %.9g", (long long)i, dn_test_at(t, i), want);
  }
  dn_tensor_release(t);
}

static void test_basic(void **state) {
  (void)state;
  const double v[] = {1, 2, 3, 4, 5, 6};
  expect_values("1,2,3\n4,5,6\n", ',', false, 2, 3, v);
  expect_values("1,2,3\n4,5,6", ',', false, 2, 3, v);                 /* no final newline */
  expect_values("1,2,3\r\n4,5,6\r\n", ',', false, 2, 3, v);           /* CRLF */
  expect_values("1,2,3\n4,5,6\n\n", ',', false, 2, 3, v);             /* blank last line */
  expect_values("1,2,3\n4,5,6\n  \n\r\n", ',', false, 2, 3, v);       /* several blank lines at the end */
  expect_values(" 1 ,\t2, 3\n4 ,5 ,6 \n", ',', false, 2, 3, v);       /* blanks around fields */
  expect_values("a,b,c\n1,2,3\n4,5,6\n", ',', true, 2, 3, v);         /* header skipped */
  expect_values("not;even;csv,\n1;2;3\n4;5;6\n", ';', true, 2, 3, v);
  expect_values("1\t2\t3\n4\t5\t6\n", '\t', false, 2, 3, v);          /* tab-separated */
  expect_values("1 2 3\n4 5 6\n", ' ', false, 2, 3, v);               /* space-separated */
  expect_values("\xEF\xBB\xBF" "1,2,3\n4,5,6\n", ',', false, 2, 3, v); /* UTF-8 byte order mark */
}

static void test_number_forms(void **state) {
  (void)state;
  const double v[] = {-1.5, 2.5e-3, 1e10, 0.1, -0.0, 3, 1e-40, 5., 3.4028234e38};
  expect_values("-1.5,2.5e-3,1E10,.1,-0,+3,1e-40,5.,3.4028234e38\n", ',', false, 1, 9, v);
  const double col[] = {1, 2, 3};
  expect_values("1\n2\n3\n", ',', false, 3, 1, col);
}

static void test_empty_files(void **state) {
  (void)state;
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_csv_read(&t, write_csv("empty.csv", ""), ',', false));
  assert_int_equal(t->shape[0], 0);
  assert_int_equal(t->shape[1], 0);
  dn_tensor_release(t);
  DN_OK_OR_FAIL(dn_csv_read(&t, write_csv("header_only.csv", "x,y,z\n"), ',', true));
  assert_int_equal(t->shape[0], 0);
  assert_int_equal(t->shape[1], 3);   /* the header still says how many columns */
  dn_tensor_release(t);
}

static void expect_bad(const char *text, char delimiter, bool header, const char *needle) {
  const char *p = write_csv("bad.csv", text);
  dn_tensor *t = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_csv_read(&t, p, delimiter, header), DN_EFORMAT, needle);
  assert_null(t);
  assert_non_null(strstr(dn_last_error(), p));   /* every message names the file */
}

/* A numeric locale with a decimal comma must not change how files are read. When
   none is installed, one is compiled into the temp dir (glibc reads LOCPATH). */
static void test_locale_independent(void **state) {
  (void)state;
  char *saved = strdup(setlocale(LC_NUMERIC, NULL));
  const char *set = setlocale(LC_NUMERIC, "de_DE.UTF-8");
  if (!set) {
    char command[512];
    snprintf(command, sizeof command, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dn_test_tempdir());
    if (system(command) == 0) {
      setenv("LOCPATH", dn_test_tempdir(), 1);
      set = setlocale(LC_NUMERIC, "de_DE.UTF-8");
    }
  }
  if (!set) {
    free(saved);
    skip();   /* no locale with a decimal comma available */
  }
  assert_string_equal(localeconv()->decimal_point, ",");
  char *end;
  assert_true(strtod("1,5", &end) == 1.5);   /* the locale is really active */
  const double v[] = {1.5, 2.25};
  expect_values("1.5;2.25\n", ';', false, 1, 2, v);
  expect_bad("1,5;2\n", ';', false, "line 1, column 1: not a number: \"1,5\"");
  setlocale(LC_NUMERIC, saved);
  free(saved);
}

static void test_malformed(void **state) {
  (void)state;
  expect_bad("1,2,3\n4,,6\n", ',', false, "line 2, column 2: empty field");
  expect_bad("1,2,3\n4,5,\n", ',', false, "line 2, column 3: empty field");
  expect_bad("1,2,3\n4,5,x\n", ',', false, "line 2, column 3: not a number: \"x\"");
  expect_bad("1,2,3\n4,5.5.5,6\n", ',', false, "line 2, column 2: not a number: \"5.5.5\"");
  expect_bad("1,2,3\n4,5 6,7\n", ',', false, "line 2, column 2: not a number: \"5 6\"");
  expect_bad("1,2,3\n4,\"5\",6\n", ',', false, "line 2, column 2: not a number: \"\"5\"\"");
  expect_bad("1,2,3\n4,5\n", ',', false, "line 2: 2 fields, expected 3 (as on line 1)");
  expect_bad("h\n1,2\n3,4,5\n", ',', true, "line 3: 3 fields, expected 2 (as on line 2)");
  expect_bad("1,2\n\n3,4\n", ',', false, "line 2: blank line inside the data");
  expect_bad("\n1,2\n", ',', false, "line 1: blank line inside the data");
  expect_bad("1,2\n3,1e39\n", ',', false, "line 2, column 2: 1e39 is out of float32 range");
  expect_bad("1,2\n3,-1e999\n", ',', false, "line 2, column 2: -1e999 is out of float32 range");
  expect_bad("a,b\n1,2\n", ',', false, "line 1, column 1: not a number: \"a\"");   /* header not skipped */
  /* strtof's non-decimal forms are not data */
  expect_bad("1,0x1A\n", ',', false, "line 1, column 2: \"0x1A\" is a hexadecimal number (only decimal numbers");
  expect_bad("1,2\n-0X1p-3,4\n", ',', false, "line 2, column 1: \"-0X1p-3\" is a hexadecimal number");
  expect_bad("1,2\n3,inf\n", ',', false, "line 2, column 2: \"inf\" is not a finite number");
  expect_bad("1,2\n-Infinity,4\n", ',', false, "line 2, column 1: \"-Infinity\" is not a finite number");
  expect_bad("nan,2\n", ',', false, "line 1, column 1: \"nan\" is not a finite number");
  expect_bad("1, NAN(0x1) \n", ',', false, "line 1, column 2: \"NAN(0x1)\" is not a finite number");
  expect_bad("1,0x1p999\n", ',', false, "line 1, column 2: \"0x1p999\" is a hexadecimal number");
  expect_bad("1\t2\n3 4\n", '\t', false, "line 2, column 1: not a number: \"3 4\"");
  expect_bad("1\t2\n3\n", '\t', false, "line 2: 1 fields, expected 2");
  char long_field[600];
  memset(long_field, '1', 599);
  long_field[599] = '\0';
  expect_bad(long_field, ',', false, "line 1, column 1: field too long to be a number");
  /* a NUL byte inside a field */
  const char *p = write_csv("nul.csv", "");
  FILE *f = fopen(p, "wb");
  fwrite("1,2\n3,4\0x\n", 1, 10, f);
  fclose(f);
  dn_tensor *t;
  DN_EXPECT_ERROR(dn_csv_read(&t, p, ',', false), DN_EFORMAT, "line 2, column 2: not a number");
}

static void test_bad_arguments(void **state) {
  (void)state;
  dn_tensor *t = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_csv_read(&t, "/nonexistent/x.csv", ',', false), DN_EIO, "cannot open /nonexistent/x.csv");
  assert_null(t);
  const char *p = write_csv("ok.csv", "1\n");
  DN_EXPECT_ERROR(dn_csv_read(&t, p, '.', false), DN_EINVAL, "delimiter 0x2e cannot separate numbers");
  DN_EXPECT_ERROR(dn_csv_read(&t, p, '\n', false), DN_EINVAL, "delimiter");
  DN_EXPECT_ERROR(dn_csv_read(&t, p, 'e', false), DN_EINVAL, "delimiter");
  DN_EXPECT_ERROR(dn_csv_read(&t, p, '-', false), DN_EINVAL, "delimiter");
  DN_EXPECT_ERROR(dn_csv_read(&t, NULL, ',', false), DN_EINVAL, "path");
  DN_EXPECT_ERROR(dn_csv_read(&t, dn_test_tempdir(), ',', false), DN_EIO, dn_test_tempdir());
  /* not regular files: /dev/zero would read as an empty file, a FIFO could block */
  DN_EXPECT_ERROR(dn_csv_read(&t, "/dev/zero", ',', false), DN_EIO, "csv: /dev/zero is not a regular file");
  DN_EXPECT_ERROR(dn_csv_read(&t, dn_test_tempdir(), ',', false), DN_EIO, "is not a regular file");
  assert_null(t);
}

/* A line that cannot be read for lack of memory is an error, not the end of the data. */
static void test_out_of_memory_reading(void **state) {
  (void)state;
  const char *p = write_csv("four.csv", "1,2\n3,4\n5,6\n7,8\n");
  dn_tensor *t = (dn_tensor *)1;
  getline_calls_before_failure = 2;   /* lines 1 and 2 are read, line 3 fails */
  dn_status st = dn_csv_read(&t, p, ',', false);
  getline_calls_before_failure = -1;
  DN_EXPECT_ERROR(st, DN_ENOMEM, "out of memory reading line 3");
  assert_non_null(strstr(dn_last_error(), p));
  assert_null(t);
  getline_calls_before_failure = 0;   /* even the first line */
  st = dn_csv_read(&t, p, ',', false);
  getline_calls_before_failure = -1;
  DN_EXPECT_ERROR(st, DN_ENOMEM, "out of memory reading line 1");
  /* and without the fault the whole file reads */
  DN_OK_OR_FAIL(dn_csv_read(&t, p, ',', false));
  assert_int_equal(t->shape[0], 4);
  dn_tensor_release(t);
}

static void test_larger_file(void **state) {
  (void)state;
  /* 2000 x 7 values: many realloc steps; compared against the values written */
  char path[256];
  snprintf(path, sizeof path, "%s/large.csv", dn_test_tempdir());
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  for (int r = 0; r < 2000; r++)
    for (int c = 0; c < 7; c++) fprintf(f, "%d.%02d%s", r - 1000, c * 7, c == 6 ? "\n" : ",");
  fclose(f);
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_csv_read(&t, path, ',', false));
  assert_int_equal(t->shape[0], 2000);
  assert_int_equal(t->shape[1], 7);
  for (int r = 0; r < 2000; r += 37)
    for (int c = 0; c < 7; c++) {
      char text[32];
      snprintf(text, sizeof text, "%d.%02d", r - 1000, c * 7);
      assert_true(dn_test_at(t, r * 7 + c) == (double)strtof(text, NULL));
    }
  dn_tensor_release(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_basic),
    cmocka_unit_test(test_number_forms),
    cmocka_unit_test(test_empty_files),
    cmocka_unit_test(test_locale_independent),
    cmocka_unit_test(test_malformed),
    cmocka_unit_test(test_bad_arguments),
    cmocka_unit_test(test_out_of_memory_reading),
    cmocka_unit_test(test_larger_file),
  };
  return cmocka_run_group_tests(tests, dn_test_tempdir_setup, dn_test_tempdir_teardown);
}
