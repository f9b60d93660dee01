/*
** Strict JSON for safetensors headers (see json.h). Recursive descent with a
** depth limit; every allocation is bounded by the input size, and a failed
** parse frees whatever it built before returning.
*/
#include "json.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
  const unsigned char *text;
  size_t length, pos;
  char *error;
  size_t error_size;
} parser;

const char *dn_json_kind_name(dn_json_kind kind) {
  switch (kind) {
    case DN_JSON_OBJECT: return "object";
    case DN_JSON_ARRAY: return "array";
    case DN_JSON_STRING: return "string";
    case DN_JSON_INTEGER: return "integer";
  }
  return "value";
}

/* Records "<what> at byte N" and returns -1. */
static int fail_at(parser *p, size_t at, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 3, 4)))
#endif
  ;
static int fail_at(parser *p, size_t at, const char *fmt, ...) {
  char what[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(p->error, p->error_size, "%s at byte %zu", what, at);
  return -1;
}

static void skip_whitespace(parser *p) {
  while (p->pos < p->length) {
    unsigned char c = p->text[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

/* The next byte as text for messages ("end of input" past the end). */
static const char *describe_next(parser *p, char *buf, size_t size) {
  if (p->pos >= p->length) return "end of input";
  unsigned char c = p->text[p->pos];
  if (c >= 0x20 && c < 0x7f) snprintf(buf, size, "'%c'", c);
  else snprintf(buf, size, "byte 0x%02x", c);
  return buf;
}

static int hex_digit(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Four hex digits at p->pos (after "\u"). */
static int read_hex4(parser *p, unsigned *code) {
  if (p->length - p->pos < 4) return fail_at(p, p->pos, "truncated \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hex_digit(p->text[p->pos + (size_t)i]);
    if (h < 0) return fail_at(p, p->pos + (size_t)i, "bad hex digit in \\u escape");
    v = v * 16 + (unsigned)h;
  }
  p->pos += 4;
  *code = v;
  return 0;
}

static size_t put_utf8(char *dst, unsigned code) {
  if (code < 0x80) {
    dst[0] = (char)code;
    return 1;
  }
  if (code < 0x800) {
    dst[0] = (char)(0xC0 | (code >> 6));
    dst[1] = (char)(0x80 | (code & 0x3F));
    return 2;
  }
  if (code < 0x10000) {
    dst[0] = (char)(0xE0 | (code >> 12));
    dst[1] = (char)(0x80 | ((code >> 6) & 0x3F));
    dst[2] = (char)(0x80 | (code & 0x3F));
    return 3;
  }
  dst[0] = (char)(0xF0 | (code >> 18));
  dst[1] = (char)(0x80 | ((code >> 12) & 0x3F));
  dst[2] = (char)(0x80 | ((code >> 6) & 0x3F));
  dst[3] = (char)(0x80 | (code & 0x3F));
  return 4;
}

/* Length of the well-formed UTF-8 sequence at s (n bytes available), 0 if
   malformed: overlong forms, surrogates and code points past U+10FFFF are refused. */
static size_t utf8_sequence_length(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned code, min;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) len = 2, code = c & 0x1Fu, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, code = c & 0x0Fu, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, code = c & 0x07u, min = 0x10000;
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    code = (code << 6) | (s[i] & 0x3Fu);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return len;
}

/* A string starting at the opening quote. The decoded text is never longer
   than its source, so one allocation of the source span suffices. */
static int parse_string(parser *p, char **out) {
  size_t start = p->pos;
  p->pos++;   /* the opening quote */
  size_t end = p->pos;
  while (end < p->length && p->text[end] != '"') end += (p->text[end] == '\\') ? 2 : 1;
  if (end >= p->length) return fail_at(p, start, "unterminated string");
  char *buf = malloc(end - p->pos + 1);
  if (!buf) return fail_at(p, start, "out of memory");
  size_t n = 0;
  while (p->pos < end) {
    unsigned char c = p->text[p->pos];
    if (c < 0x20) {
      free(buf);
      return fail_at(p, p->pos, "control character 0x%02x in a string (must be escaped)", c);
    }
    if (c >= 0x80) {
      size_t len = utf8_sequence_length(p->text + p->pos, end - p->pos);
      if (!len) {
        free(buf);
        return fail_at(p, p->pos, "invalid UTF-8 in a string");
      }
      memcpy(buf + n, p->text + p->pos, len);
      n += len;
      p->pos += len;
      continue;
    }
    if (c != '\\') {
      buf[n++] = (char)c;
      p->pos++;
      continue;
    }
    size_t escape_at = p->pos;
    char e = (char)p->text[p->pos + 1];
    p->pos += 2;
    switch (e) {
      case '"': buf[n++] = '"'; break;
      case '\\': buf[n++] = '\\'; break;
      case '/': buf[n++] = '/'; break;
      case 'b': buf[n++] = '\b'; break;
      case 'f': buf[n++] = '\f'; break;
      case 'n': buf[n++] = '\n'; break;
      case 'r': buf[n++] = '\r'; break;
      case 't': buf[n++] = '\t'; break;
      case 'u': {
        unsigned code;
        if (read_hex4(p, &code)) {
          free(buf);
          return -1;
        }
        if (code >= 0xDC00 && code <= 0xDFFF) {
          free(buf);
          return fail_at(p, escape_at, "lone low surrogate \\u%04X", code);
        }
        if (code >= 0xD800 && code <= 0xDBFF) {
          unsigned low;
          if (p->pos + 2 > end || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u') {
            free(buf);
            return fail_at(p, escape_at, "high surrogate \\u%04X without a low surrogate", code);
          }
          p->pos += 2;
          if (read_hex4(p, &low)) {
            free(buf);
            return -1;
          }
          if (low < 0xDC00 || low > 0xDFFF) {
            free(buf);
            return fail_at(p, escape_at, "high surrogate \\u%04X followed by \\u%04X", code, low);
          }
          code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        if (code == 0) {
          free(buf);
          return fail_at(p, escape_at, "\\u0000 in a string is not supported");
        }
        n += put_utf8(buf + n, code);
        break;
      }
      default:
        free(buf);
        return fail_at(p, escape_at, "bad escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
    }
  }
  p->pos = end + 1;
  buf[n] = '\0';
  *out = buf;
  return 0;
}

/* -?(0|[1-9][0-9]*) fitting int64; a fraction or exponent is refused. */
static int parse_integer(parser *p, int64_t *out) {
  size_t start = p->pos;
  bool negative = false;
  if (p->text[p->pos] == '-') {
    negative = true;
    p->pos++;
  }
  if (p->pos >= p->length || p->text[p->pos] < '0' || p->text[p->pos] > '9')
    return fail_at(p, start, "malformed number");
  if (p->text[p->pos] == '0' && p->pos + 1 < p->length && p->text[p->pos + 1] >= '0' && p->text[p->pos + 1] <= '9')
    return fail_at(p, start, "number with a leading zero");
  uint64_t magnitude = 0;
  const uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  while (p->pos < p->length && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') {
    unsigned digit = (unsigned)(p->text[p->pos] - '0');
    if (magnitude > (limit - digit) / 10) return fail_at(p, start, "integer out of the 64-bit range");
    magnitude = magnitude * 10 + digit;
    p->pos++;
  }
  if (p->pos < p->length && (p->text[p->pos] == '.' || p->text[p->pos] == 'e' || p->text[p->pos] == 'E'))
    return fail_at(p, start, "non-integer number (a safetensors header holds only integers)");
  *out = negative ? (int64_t)(0 - magnitude) : (int64_t)magnitude;
  return 0;
}

static int parse_value(parser *p, dn_json_value *out, int depth);

static int compare_member_keys(const void *a, const void *b) {
  const dn_json_member *const *x = a, *const *y = b;
  return strcmp((*x)->key, (*y)->key);
}

/* Sorting pointers finds a duplicate in O(n log n): a header may hold many keys. */
static int check_unique_keys(parser *p, const dn_json_value *object) {
  size_t n = object->as.object.count;
  if (n < 2) return 0;
  const dn_json_member **sorted = malloc(n * sizeof *sorted);
  if (!sorted) return fail_at(p, object->position, "out of memory");
  for (size_t i = 0; i < n; i++) sorted[i] = &object->as.object.members[i];
  qsort(sorted, n, sizeof *sorted, compare_member_keys);
  for (size_t i = 1; i < n; i++) {
    if (!strcmp(sorted[i - 1]->key, sorted[i]->key)) {
      size_t at = sorted[i]->value.position > sorted[i - 1]->value.position ? sorted[i]->value.position
                                                                            : sorted[i - 1]->value.position;
      char key[64];
      snprintf(key, sizeof key, "%s", sorted[i]->key);
      free(sorted);
      return fail_at(p, at, "duplicate key \"%s\"", key);
    }
  }
  free(sorted);
  return 0;
}

/* Grows *items (each item_size bytes) to hold at least need items. */
static int reserve(parser *p, void **items, size_t *capacity, size_t need, size_t item_size) {
  if (need <= *capacity) return 0;
  size_t cap = *capacity ? *capacity * 2 : 4;
  while (cap < need) cap *= 2;
  void *grown = realloc(*items, cap * item_size);
  if (!grown) return fail_at(p, p->pos, "out of memory");
  *items = grown;
  *capacity = cap;
  return 0;
}

static int parse_object(parser *p, dn_json_value *out, int depth) {
  out->kind = DN_JSON_OBJECT;
  out->as.object.members = NULL;
  out->as.object.count = 0;
  size_t capacity = 0;
  char next[16];
  p->pos++;   /* '{' */
  skip_whitespace(p);
  if (p->pos < p->length && p->text[p->pos] == '}') {
    p->pos++;
    return 0;
  }
  for (;;) {
    skip_whitespace(p);
    if (p->pos >= p->length || p->text[p->pos] != '"') {
      fail_at(p, p->pos, "expected a string key, found %s", describe_next(p, next, sizeof next));
      goto fail;
    }
    if (reserve(p, (void **)&out->as.object.members, &capacity, out->as.object.count + 1,
                sizeof(dn_json_member)))
      goto fail;
    dn_json_member *m = &out->as.object.members[out->as.object.count];
    if (parse_string(p, &m->key)) goto fail;
    skip_whitespace(p);
    if (p->pos >= p->length || p->text[p->pos] != ':') {
      free(m->key);
      fail_at(p, p->pos, "expected ':' after an object key, found %s", describe_next(p, next, sizeof next));
      goto fail;
    }
    p->pos++;
    if (parse_value(p, &m->value, depth + 1)) {
      free(m->key);
      goto fail;
    }
    out->as.object.count++;
    skip_whitespace(p);
    if (p->pos < p->length && p->text[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->length && p->text[p->pos] == '}') {
      p->pos++;
      break;
    }
    fail_at(p, p->pos, "expected ',' or '}' in an object, found %s", describe_next(p, next, sizeof next));
    goto fail;
  }
  if (check_unique_keys(p, out)) goto fail;
  return 0;
fail:
  dn_json_free(out);
  return -1;
}

static int parse_array(parser *p, dn_json_value *out, int depth) {
  out->kind = DN_JSON_ARRAY;
  out->as.array.items = NULL;
  out->as.array.count = 0;
  size_t capacity = 0;
  char next[16];
  p->pos++;   /* '[' */
  skip_whitespace(p);
  if (p->pos < p->length && p->text[p->pos] == ']') {
    p->pos++;
    return 0;
  }
  for (;;) {
    if (reserve(p, (void **)&out->as.array.items, &capacity, out->as.array.count + 1, sizeof(dn_json_value)))
      goto fail;
    if (parse_value(p, &out->as.array.items[out->as.array.count], depth + 1)) goto fail;
    out->as.array.count++;
    skip_whitespace(p);
    if (p->pos < p->length && p->text[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->length && p->text[p->pos] == ']') {
      p->pos++;
      return 0;
    }
    fail_at(p, p->pos, "expected ',' or ']' in an array, found %s", describe_next(p, next, sizeof next));
    goto fail;
  }
fail:
  dn_json_free(out);
  return -1;
}

/* On failure *out holds nothing to free. */
static int parse_value(parser *p, dn_json_value *out, int depth) {
  out->kind = DN_JSON_INTEGER;
  out->as.integer = 0;
  if (depth > DN_JSON_MAX_DEPTH) return fail_at(p, p->pos, "nesting deeper than %d", DN_JSON_MAX_DEPTH);
  skip_whitespace(p);
  out->position = p->pos;
  if (p->pos >= p->length) return fail_at(p, p->pos, "expected a value, found end of input");
  unsigned char c = p->text[p->pos];
  if (c == '{') return parse_object(p, out, depth);
  if (c == '[') return parse_array(p, out, depth);
  if (c == '"') {
    out->kind = DN_JSON_STRING;
    if (parse_string(p, &out->as.string)) {
      out->kind = DN_JSON_INTEGER;
      return -1;
    }
    return 0;
  }
  if (c == '-' || (c >= '0' && c <= '9')) return parse_integer(p, &out->as.integer);
  if (c == 't' || c == 'f' || c == 'n')
    return fail_at(p, p->pos, "true, false and null are not allowed in a safetensors header");
  char next[16];
  return fail_at(p, p->pos, "expected a value, found %s", describe_next(p, next, sizeof next));
}

int dn_json_parse(dn_json_value *out, const char *text, size_t length, char *error, size_t error_size) {
  parser p = {(const unsigned char *)text, length, 0, error, error_size};
  if (error_size) error[0] = '\0';
  if (parse_value(&p, out, 1)) return -1;
  skip_whitespace(&p);
  if (p.pos != p.length) {
    dn_json_free(out);
    out->kind = DN_JSON_INTEGER;
    char next[16];
    return fail_at(&p, p.pos, "unexpected %s after the JSON value", describe_next(&p, next, sizeof next));
  }
  return 0;
}

void dn_json_free(dn_json_value *value) {
  switch (value->kind) {
    case DN_JSON_OBJECT:
      for (size_t i = 0; i < value->as.object.count; i++) {
        free(value->as.object.members[i].key);
        dn_json_free(&value->as.object.members[i].value);
      }
      free(value->as.object.members);
      break;
    case DN_JSON_ARRAY:
      for (size_t i = 0; i < value->as.array.count; i++) dn_json_free(&value->as.array.items[i]);
      free(value->as.array.items);
      break;
    case DN_JSON_STRING: free(value->as.string); break;
    case DN_JSON_INTEGER: break;
  }
  value->kind = DN_JSON_INTEGER;
}
