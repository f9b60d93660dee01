/*
** Numeric CSV into a float32 [rows, cols] tensor. Fields are parsed with
** strtof (correctly rounded to float32, no double rounding) in the "C"
** locale (a host that called setlocale would otherwise read "1,5" style
** decimals), and the whole field must be the number: "1.5x", "" and "1 2"
** are errors naming the line and column. Only finite decimal numbers are
** data: strtof's other forms, hexadecimal ("0x1A") and "inf", "infinity",
** "nan", are refused, and so is a number beyond float32's range. Spaces and tabs around a
** field are ignored (unless one of them is the delimiter); CRLF line ends, a
** UTF-8 byte order mark, a missing final newline and blank lines at the end
** are accepted.
*/
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dropnet/io.h"
#include "input_file.h"

/* A field longer than this cannot be a sensible number. */
#define MAX_FIELD 256

typedef struct csv_reader {
  const char *path;
  char delimiter;
  long line;          /* 1-based line number being parsed */
  float *values;
  size_t count, capacity;
  int64_t cols;       /* fields per row, -1 until the first data row */
  long cols_line;     /* the line that set cols */
} csv_reader;

static bool is_blank(char c, char delimiter) { return (c == ' ' || c == '\t') && c != delimiter; }

/* The field as printable text for messages (truncated, odd bytes as '?'). */
static void printable(char *dst, size_t size, const char *src, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n && k + 4 < size; i++) dst[k++] = isprint((unsigned char)src[i]) ? src[i] : '?';
  if (k + 4 >= size && n > k) {
    memcpy(dst + k, "...", 3);
    k += 3;
  }
  dst[k] = '\0';
}

static dn_status push_value(csv_reader *r, float v) {
  if (r->count == r->capacity) {
    size_t cap = r->capacity ? r->capacity * 2 : 1024;
    if (cap > SIZE_MAX / sizeof(float)) return dn_fail(DN_ENOMEM, "csv: %s: too many values", r->path);
    float *grown = realloc(r->values, cap * sizeof(float));
    if (!grown) return dn_fail(DN_ENOMEM, "csv: %s: out of memory after %zu values", r->path, r->count);
    r->values = grown;
    r->capacity = cap;
  }
  r->values[r->count++] = v;
  return DN_OK;
}

/* One field text[0, n) of column col (1-based). */
static dn_status parse_field(csv_reader *r, const char *text, size_t n, int64_t col) {
  while (n > 0 && is_blank(*text, r->delimiter)) text++, n--;
  while (n > 0 && is_blank(text[n - 1], r->delimiter)) n--;
  if (n == 0)
    return dn_fail(DN_EFORMAT, "csv: %s: line %ld, column %lld: empty field", r->path, r->line, (long long)col);
  char shown[48];
  if (n >= MAX_FIELD) {
    printable(shown, sizeof shown, text, n);
    return dn_fail(DN_EFORMAT, "csv: %s: line %ld, column %lld: field too long to be a number: \"%s\"", r->path,
                   r->line, (long long)col, shown);
  }
  char buf[MAX_FIELD];
  memcpy(buf, text, n);
  buf[n] = '\0';
  char *end;
  errno = 0;
  float v = strtof(buf, &end);
  if (end != buf + n) {
    printable(shown, sizeof shown, text, n);
    return dn_fail(DN_EFORMAT, "csv: %s: line %ld, column %lld: not a number: \"%s\"", r->path, r->line,
                   (long long)col, shown);
  }
  if (isnan(v) || (isinf(v) && errno != ERANGE)) {   /* "nan", "inf", "infinity" spelled out */
    printable(shown, sizeof shown, text, n);
    return dn_fail(DN_EFORMAT,
                   "csv: %s: line %ld, column %lld: \"%s\" is not a finite number (a numeric CSV holds finite "
                   "decimal numbers)",
                   r->path, r->line, (long long)col, shown);
  }
  if (memchr(buf, 'x', n) || memchr(buf, 'X', n)) {   /* strtof's hexadecimal form, "0x1A" or "0x1p-3" */
    printable(shown, sizeof shown, text, n);
    return dn_fail(DN_EFORMAT,
                   "csv: %s: line %ld, column %lld: \"%s\" is a hexadecimal number (only decimal numbers are read)",
                   r->path, r->line, (long long)col, shown);
  }
  if (errno == ERANGE && isinf(v)) {   /* underflow to a denormal or zero is fine */
    printable(shown, sizeof shown, text, n);
    return dn_fail(DN_EFORMAT, "csv: %s: line %ld, column %lld: %s is out of float32 range", r->path, r->line,
                   (long long)col, shown);
  }
  return push_value(r, v);
}

/* One non-blank data line (no line end). */
static dn_status parse_line(csv_reader *r, const char *line, size_t length) {
  int64_t col = 0;
  size_t start = 0;
  for (size_t i = 0; i <= length; i++) {
    if (i < length && line[i] != r->delimiter) continue;
    dn_status st = parse_field(r, line + start, i - start, ++col);
    if (st) return st;
    start = i + 1;
  }
  if (r->cols < 0) {
    r->cols = col;
    r->cols_line = r->line;
  } else if (col != r->cols) {
    return dn_fail(DN_EFORMAT, "csv: %s: line %ld: %lld fields, expected %lld (as on line %ld)", r->path, r->line,
                   (long long)col, (long long)r->cols, r->cols_line);
  }
  return DN_OK;
}

static bool line_is_blank(const char *line, size_t length, char delimiter) {
  for (size_t i = 0; i < length; i++)
    if (!is_blank(line[i], delimiter)) return false;
  return true;
}

static dn_status read_lines(csv_reader *r, FILE *file, bool skip_header) {
  char *line = NULL;
  size_t line_capacity = 0;
  ssize_t got;
  long blank_line = 0;      /* first blank line seen since the last data line */
  int64_t header_cols = 0;
  dn_status st = DN_OK;
  for (;;) {
    errno = 0;   /* what getline leaves here explains a -1 (the loop body may set it) */
    got = getline(&line, &line_capacity, file);
    if (got < 0) break;
    r->line++;
    size_t n = (size_t)got;
    if (n && line[n - 1] == '\n') n--;
    if (n && line[n - 1] == '\r') n--;
    char *text = line;
    if (r->line == 1 && n >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) text += 3, n -= 3;   /* BOM */
    if (r->line == 1 && skip_header) {
      if (!line_is_blank(text, n, r->delimiter)) {
        header_cols = 1;
        for (size_t i = 0; i < n; i++) header_cols += text[i] == r->delimiter;
      }
      continue;
    }
    if (line_is_blank(text, n, r->delimiter)) {
      if (!blank_line) blank_line = r->line;
      continue;
    }
    if (blank_line) {
      st = dn_fail(DN_EFORMAT, "csv: %s: line %ld: blank line inside the data", r->path, blank_line);
      break;
    }
    st = parse_line(r, text, n);
    if (st) break;
  }
  /* getline's -1 is also how a failed allocation for a long line (errno
     ENOMEM, and glibc sets no error flag) and a read error end: only a clean
     end of file may end the data. */
  if (!st && (ferror(file) || !feof(file) || errno == ENOMEM)) {
    int err = errno ? errno : EIO;
    if (err == ENOMEM && !ferror(file))
      st = dn_fail(DN_ENOMEM, "csv: %s: out of memory reading line %ld", r->path, r->line + 1);
    else
      st = dn_fail(DN_EIO, "csv: %s: read error on line %ld: %s", r->path, r->line + 1, strerror(err));
  }
  free(line);
  if (!st && r->cols < 0) r->cols = header_cols;   /* no data rows: [0, header fields] */
  return st;
}

dn_status dn_csv_read(dn_tensor **out, const char *path, char delimiter, bool skip_header) {
  *out = NULL;
  if (!path) return dn_fail(DN_EINVAL, "csv: path is NULL");
  if (delimiter == '\0' || delimiter == '\n' || delimiter == '\r' || delimiter == '.' || delimiter == '+' ||
      delimiter == '-' || isalnum((unsigned char)delimiter))
    return dn_fail(DN_EINVAL, "csv: delimiter 0x%02x cannot separate numbers", (unsigned char)delimiter);
  int fd;
  int64_t size;
  dn_status st = dn_open_regular_file("csv", path, &fd, &size);   /* /dev/zero would read as no rows */
  if (st) return st;
  FILE *file = fdopen(fd, "rb");
  if (!file) {
    int err = errno;
    close(fd);
    return dn_fail(DN_EIO, "csv: %s: cannot open a stream: %s", path, strerror(err));
  }
  locale_t c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  if (!c_locale) {
    fclose(file);
    return dn_fail(DN_ENOMEM, "csv: cannot create the C locale");
  }
  locale_t previous = uselocale(c_locale);   /* this thread only */
  csv_reader r = {path, delimiter, 0, NULL, 0, 0, -1, 0};
  st = read_lines(&r, file, skip_header);
  uselocale(previous);
  freelocale(c_locale);
  fclose(file);
  if (!st) {
    int64_t shape[2] = {r.cols ? (int64_t)(r.count / (size_t)r.cols) : 0, r.cols};
    st = dn_tensor_from_data(out, DN_F32, 2, shape, r.values ? (const void *)r.values : (const void *)"");
  }
  free(r.values);
  return st;
}
