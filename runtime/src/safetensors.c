/*
** safetensors: an 8-byte little-endian header length N, N bytes of JSON
**   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
**    "__metadata__": {"key": "value", ...}}
** then the data buffer (offsets relative to its start), little-endian.
**
** Saving lays the tensors out back to back, 4-byte dtypes before 1-byte ones
** (each group in the caller's order), so every tensor is aligned to its
** element size for zero-copy readers; the header is padded with spaces to a
** multiple of 8 bytes, like the reference writer. Loading checks everything
** the reference reader checks before it allocates a tensor: the header length
** against the file, strict JSON, known dtypes, sizes against shapes, ranges
** inside the buffer, no overlap and no hole.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "dropnet/io.h"
#include "input_file.h"
#include "internal.h"
#include "json.h"
#include "shape.h"

/* The reference reader's limit on the header size. */
#define MAX_HEADER_BYTES ((uint64_t)100000000)   /* larger is refused, like the reference reader */
#define CHUNK_BYTES ((size_t)1 << 18)
#define METADATA_KEY "__metadata__"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_IS_LITTLE_ENDIAN 0
#else
#define HOST_IS_LITTLE_ENDIAN 1
#endif

/* Reverses each size-byte element in place: little-endian <-> host on a big-endian host. */
static void swap_elements(unsigned char *bytes, size_t count, size_t size) {
  for (size_t i = 0; i < count; i++, bytes += size)
    for (size_t a = 0, b = size - 1; a < b; a++, b--) {
      unsigned char tmp = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = tmp;
    }
}

static const char *dtype_code(dn_dtype dtype) {
  switch (dtype) {
    case DN_F32: return "F32";
    case DN_I32: return "I32";
    case DN_U8: return "U8";
  }
  return NULL;
}

/* True when s is well-formed UTF-8 (JSON text must be). */
static bool valid_utf8(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned char c = *p;
    size_t len;
    unsigned code, min;
    if (c < 0x80) {
      p++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) len = 2, code = c & 0x1Fu, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, code = c & 0x0Fu, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, code = c & 0x07u, min = 0x10000;
    else return false;
    for (size_t i = 1; i < len; i++) {
      if ((p[i] & 0xC0) != 0x80) return false;
      code = (code << 6) | (p[i] & 0x3Fu);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    p += len;
  }
  return true;
}

/* --- saving ----------------------------------------------------------------------------- */

typedef struct text_buffer {
  char *data;
  size_t length, capacity;
  bool failed;   /* out of memory: later appends are ignored */
} text_buffer;

static void append(text_buffer *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->length + n + 1 > b->capacity) {
    size_t cap = b->capacity ? b->capacity : 256;
    while (cap < b->length + n + 1) cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) {
      b->failed = true;
      return;
    }
    b->data = grown;
    b->capacity = cap;
  }
  memcpy(b->data + b->length, s, n);
  b->length += n;
  b->data[b->length] = '\0';
}

static void append_text(text_buffer *b, const char *s) { append(b, s, strlen(s)); }

static void append_int(text_buffer *b, int64_t v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
  append(b, tmp, (size_t)n);
}

/* A JSON string literal: quotes, backslashes and control characters escaped. */
static void append_json_string(text_buffer *b, const char *s) {
  append(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    switch (*p) {
      case '"': append(b, "\\\"", 2); break;
      case '\\': append(b, "\\\\", 2); break;
      case '\n': append(b, "\\n", 2); break;
      case '\r': append(b, "\\r", 2); break;
      case '\t': append(b, "\\t", 2); break;
      default:
        if (*p < 0x20) {
          snprintf(esc, sizeof esc, "\\u%04x", *p);
          append(b, esc, 6);
        } else {
          append(b, (const char *)p, 1);
        }
    }
  }
  append(b, "\"", 1);
}

static int compare_names(const void *a, const void *b) {
  return strcmp(**(const char *const *const *)a, **(const char *const *const *)b);
}

/* Fails when a string occurs twice among count strings reached through
   pointers at `first` + i * stride bytes (sorting: O(n log n)). */
static dn_status check_unique(const char *what, const void *first, int count, size_t stride) {
  if (count < 2) return DN_OK;
  const char *const **sorted = malloc((size_t)count * sizeof *sorted);
  if (!sorted) return dn_fail(DN_ENOMEM, "safetensors: out of memory");
  for (int i = 0; i < count; i++) sorted[i] = (const char *const *)((const char *)first + (size_t)i * stride);
  qsort(sorted, (size_t)count, sizeof *sorted, compare_names);
  dn_status st = DN_OK;
  for (int i = 1; i < count && !st; i++)
    if (!strcmp(*sorted[i - 1], *sorted[i]))
      st = dn_fail(DN_EINVAL, "safetensors: duplicate %s '%s'", what, *sorted[i]);
  free(sorted);
  return st;
}

static dn_status check_save_arguments(const char *path, const dn_named_tensor *tensors, int count,
                                      const dn_metadata_entry *metadata, int metadata_count) {
  if (!path) return dn_fail(DN_EINVAL, "safetensors: path is NULL");
  if (count < 0 || (count > 0 && !tensors))
    return dn_fail(DN_EINVAL, "safetensors: bad tensor list (count %d)", count);
  if (metadata_count < 0 || (metadata_count > 0 && !metadata))
    return dn_fail(DN_EINVAL, "safetensors: bad metadata list (count %d)", metadata_count);
  for (int i = 0; i < count; i++) {
    const char *name = tensors[i].name;
    if (!name || !*name) return dn_fail(DN_EINVAL, "safetensors: tensor %d has an empty name", i + 1);
    if (!strcmp(name, METADATA_KEY))
      return dn_fail(DN_EINVAL, "safetensors: \"%s\" is reserved and cannot name a tensor", METADATA_KEY);
    if (!valid_utf8(name)) return dn_fail(DN_EINVAL, "safetensors: tensor name %d is not valid UTF-8", i + 1);
    if (!tensors[i].tensor) return dn_fail(DN_EINVAL, "safetensors: tensor '%s' is NULL", name);
    if (!dtype_code(tensors[i].tensor->dtype))
      return dn_fail(DN_ETYPE, "safetensors: tensor '%s' has unknown dtype %d", name, (int)tensors[i].tensor->dtype);
  }
  for (int i = 0; i < metadata_count; i++) {
    if (!metadata[i].key || !metadata[i].value)
      return dn_fail(DN_EINVAL, "safetensors: metadata entry %d has a NULL key or value", i + 1);
    if (!valid_utf8(metadata[i].key) || !valid_utf8(metadata[i].value))
      return dn_fail(DN_EINVAL, "safetensors: metadata entry '%s' is not valid UTF-8", metadata[i].key);
  }
  dn_status st = count ? check_unique("tensor name", &tensors[0].name, count, sizeof tensors[0]) : DN_OK;
  if (!st && metadata_count) st = check_unique("metadata key", &metadata[0].key, metadata_count, sizeof metadata[0]);
  return st;
}

/* Writes t's elements, in row-major order, little-endian. */
static dn_status write_tensor_data(dn_atomic_file *f, const dn_tensor *t, unsigned char *chunk) {
  size_t elem = dn_dtype_size(t->dtype);
  int64_t numel = dn_tensor_numel(t);
  if (numel == 0) return DN_OK;
  if (dn_tensor_is_contiguous(t) && (HOST_IS_LITTLE_ENDIAN || elem == 1))
    return dn_atomic_write(f, dn_tensor_data(t), (size_t)numel * elem);
  const unsigned char *base = t->storage->data;
  int64_t rows = dn_row_count(t), length = dn_row_length(t), stride = dn_row_stride(t);
  size_t used = 0;
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = dn_row_offset(t, r);
    for (int64_t j = 0; j < length; j++, off += stride) {
      if (used == CHUNK_BYTES) {
        if (!HOST_IS_LITTLE_ENDIAN) swap_elements(chunk, used / elem, elem);
        dn_status st = dn_atomic_write(f, chunk, used);
        if (st) return st;
        used = 0;
      }
      memcpy(chunk + used, base + (size_t)off * elem, elem);
      used += elem;
    }
  }
  if (!HOST_IS_LITTLE_ENDIAN) swap_elements(chunk, used / elem, elem);
  return used ? dn_atomic_write(f, chunk, used) : DN_OK;
}

dn_status dn_safetensors_save(const char *path, const dn_named_tensor *tensors, int count,
                              const dn_metadata_entry *metadata, int metadata_count) {
  dn_status st = check_save_arguments(path, tensors, count, metadata, metadata_count);
  if (st) return st;

  /* Data order: 4-byte elements first, then 1-byte ones, each in the given order. */
  int *order = malloc((size_t)(count ? count : 1) * sizeof *order);
  if (!order) return dn_fail(DN_ENOMEM, "safetensors: out of memory");
  int n = 0;
  for (int i = 0; i < count; i++)
    if (dn_dtype_size(tensors[i].tensor->dtype) == 4) order[n++] = i;
  for (int i = 0; i < count; i++)
    if (dn_dtype_size(tensors[i].tensor->dtype) != 4) order[n++] = i;

  text_buffer header = {NULL, 0, 0, false};
  append_text(&header, "{");
  if (metadata_count > 0) {
    append_text(&header, "\"" METADATA_KEY "\":{");
    for (int i = 0; i < metadata_count; i++) {
      if (i) append_text(&header, ",");
      append_json_string(&header, metadata[i].key);
      append_text(&header, ":");
      append_json_string(&header, metadata[i].value);
    }
    append_text(&header, "}");
  }
  int64_t offset = 0;
  for (int k = 0; k < count; k++) {
    const dn_tensor *t = tensors[order[k]].tensor;
    int64_t nbytes = dn_tensor_numel(t) * (int64_t)dn_dtype_size(t->dtype);
    if (k || metadata_count > 0) append_text(&header, ",");
    append_json_string(&header, tensors[order[k]].name);
    append_text(&header, ":{\"dtype\":\"");
    append_text(&header, dtype_code(t->dtype));
    append_text(&header, "\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) {
      if (d) append_text(&header, ",");
      append_int(&header, t->shape[d]);
    }
    append_text(&header, "],\"data_offsets\":[");
    append_int(&header, offset);
    append_text(&header, ",");
    append_int(&header, offset + nbytes);
    append_text(&header, "]}");
    offset += nbytes;
  }
  append_text(&header, "}");
  while (header.length % 8) append_text(&header, " ");   /* so the data starts 8-byte aligned */
  if (header.failed) {
    free(header.data);
    free(order);
    return dn_fail(DN_ENOMEM, "safetensors: out of memory building the header");
  }

  unsigned char length_bytes[8];
  for (int i = 0; i < 8; i++) length_bytes[i] = (unsigned char)((uint64_t)header.length >> (8 * i));
  /* A staging buffer only for views (and byte swapping on a big-endian host). */
  bool need_chunk = !HOST_IS_LITTLE_ENDIAN;
  for (int i = 0; i < count; i++) need_chunk |= !dn_tensor_is_contiguous(tensors[i].tensor);
  unsigned char *chunk = need_chunk ? malloc(CHUNK_BYTES) : NULL;
  if (need_chunk && !chunk) {
    free(header.data);
    free(order);
    return dn_fail(DN_ENOMEM, "safetensors: out of memory");
  }

  dn_atomic_file f;
  st = dn_atomic_open(&f, "safetensors", path, false);
  if (!st) st = dn_atomic_write(&f, length_bytes, 8);
  if (!st) st = dn_atomic_write(&f, header.data, header.length);
  for (int k = 0; k < count && !st; k++) st = write_tensor_data(&f, tensors[order[k]].tensor, chunk);
  if (!st) st = dn_atomic_commit(&f);
  free(chunk);
  free(header.data);
  free(order);
  return st;
}

/* --- loading ------------------------------------------------------------------------------ */

/* One tensor entry of the header, checked. */
typedef struct entry {
  const char *name;     /* borrowed from the parsed JSON */
  dn_dtype dtype;
  int ndim;
  int64_t shape[DN_MAX_DIMS];
  int64_t begin, end;
} entry;

static const char *const unsupported_dtypes[] = {"F64",     "F16",     "BF16",    "I64",  "I16",      "I8",
                                                 "U16",     "U32",     "U64",     "BOOL", "F8_E4M3",  "F8_E5M2",
                                                 "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",   "C64",      NULL};

static dn_status parse_dtype(const char *path, const char *name, const char *code, dn_dtype *dtype) {
  if (!strcmp(code, "F32")) *dtype = DN_F32;
  else if (!strcmp(code, "I32")) *dtype = DN_I32;
  else if (!strcmp(code, "U8")) *dtype = DN_U8;
  else {
    for (int i = 0; unsupported_dtypes[i]; i++)
      if (!strcmp(code, unsupported_dtypes[i]))
        return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s': unsupported dtype %s (dropnet reads F32, I32, U8)",
                       path, name, code);
    return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s': unknown dtype \"%.40s\"", path, name, code);
  }
  return DN_OK;
}

static dn_status parse_entry(const char *path, const dn_json_member *m, int64_t data_length, entry *e) {
  const char *name = m->key;
  e->name = name;
  if (!*name)   /* the writer refuses it too: a name is how a tensor is found again */
    return dn_fail(DN_EFORMAT, "safetensors: %s: a tensor has an empty name \"\" (tensor names must be non-empty)",
                   path);
  if (m->value.kind != DN_JSON_OBJECT)
    return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s' is a JSON %s, not an object", path, name,
                   dn_json_kind_name(m->value.kind));
  const dn_json_value *dtype = NULL, *shape = NULL, *offsets = NULL;
  for (size_t i = 0; i < m->value.as.object.count; i++) {
    const dn_json_member *field = &m->value.as.object.members[i];
    if (!strcmp(field->key, "dtype")) dtype = &field->value;
    else if (!strcmp(field->key, "shape")) shape = &field->value;
    else if (!strcmp(field->key, "data_offsets")) offsets = &field->value;
    else
      return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s': unexpected key \"%.40s\"", path, name, field->key);
  }
  if (!dtype || !shape || !offsets)
    return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s': missing \"%s\"", path, name,
                   !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
  if (dtype->kind != DN_JSON_STRING)
    return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s': dtype must be a string", path, name);
  dn_status st = parse_dtype(path, name, dtype->as.string, &e->dtype);
  if (st) return st;

  if (shape->kind != DN_JSON_ARRAY)
    return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s': shape must be an array", path, name);
  if (shape->as.array.count > DN_MAX_DIMS)
    return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s' has %zu dims (dropnet supports up to %d)", path, name,
                   shape->as.array.count, DN_MAX_DIMS);
  e->ndim = (int)shape->as.array.count;
  int64_t elem = (int64_t)dn_dtype_size(e->dtype), nbytes = elem;
  bool too_large = false;
  for (int d = 0; d < e->ndim; d++) {
    const dn_json_value *v = &shape->as.array.items[d];
    if (v->kind != DN_JSON_INTEGER || v->as.integer < 0)
      return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s': shape must hold non-negative integers", path, name);
    e->shape[d] = v->as.integer;
    if (e->shape[d] > 0 && nbytes > INT64_MAX / e->shape[d]) too_large = true;
    else nbytes *= e->shape[d];
  }
  char shape_buf[160], offsets_buf[64];
  dn_shape_text(shape_buf, sizeof shape_buf, e->ndim, e->shape);
  if (!too_large && dn_shape_check("safetensors", e->ndim, e->shape, NULL))
    return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s': shape %s is too large for a tensor (its sizes, "
                   "counting 0 as 1, multiply past 2^40)", path, name, shape_buf);

  if (offsets->kind != DN_JSON_ARRAY || offsets->as.array.count != 2 ||
      offsets->as.array.items[0].kind != DN_JSON_INTEGER || offsets->as.array.items[1].kind != DN_JSON_INTEGER)
    return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s': data_offsets must be [begin, end]", path, name);
  e->begin = offsets->as.array.items[0].as.integer;
  e->end = offsets->as.array.items[1].as.integer;
  int64_t pair[2] = {e->begin, e->end};
  dn_shape_text(offsets_buf, sizeof offsets_buf, 2, pair);
  if (e->begin < 0 || e->end < e->begin)
    return dn_fail(DN_EFORMAT, "safetensors: %s: tensor '%s': bad data_offsets %s", path, name, offsets_buf);
  if (too_large || e->end - e->begin != nbytes)
    return dn_fail(DN_EFORMAT,
                   "safetensors: %s: tensor '%s': data_offsets %s hold %lld bytes but shape %s %s needs %s%lld",
                   path, name, offsets_buf, (long long)(e->end - e->begin), shape_buf, dtype->as.string,
                   too_large ? "more than " : "", too_large ? (long long)INT64_MAX : (long long)nbytes);
  if (e->end > data_length)
    return dn_fail(DN_EFORMAT,
                   "safetensors: %s: tensor '%s': data_offsets %s go past the end of the data (%lld bytes)", path,
                   name, offsets_buf, (long long)data_length);
  return DN_OK;
}

static int compare_ranges(const void *a, const void *b) {
  const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* The ranges, sorted, must tile [0, data_length) exactly: no overlap, no hole. */
static dn_status check_coverage(const char *path, entry *entries, int count, int64_t data_length) {
  const entry **sorted = malloc((size_t)(count ? count : 1) * sizeof *sorted);
  if (!sorted) return dn_fail(DN_ENOMEM, "safetensors: %s: out of memory", path);
  for (int i = 0; i < count; i++) sorted[i] = &entries[i];
  qsort(sorted, (size_t)count, sizeof *sorted, compare_ranges);
  int64_t covered = 0;
  const entry *previous = NULL;
  dn_status st = DN_OK;
  for (int i = 0; i < count && !st; i++) {
    const entry *e = sorted[i];
    if (e->begin < covered)
      st = dn_fail(DN_EFORMAT, "safetensors: %s: tensors '%s' [%lld,%lld) and '%s' [%lld,%lld) overlap", path,
                   previous->name, (long long)previous->begin, (long long)previous->end, e->name, (long long)e->begin,
                   (long long)e->end);
    else if (e->begin > covered)
      st = dn_fail(DN_EFORMAT, "safetensors: %s: bytes [%lld,%lld) of the data belong to no tensor (before '%s')",
                   path, (long long)covered, (long long)e->begin, e->name);
    covered = e->end;
    previous = e;
  }
  if (!st && covered != data_length)
    st = dn_fail(DN_EFORMAT, "safetensors: %s: bytes [%lld,%lld) of the data belong to no tensor (after the last)",
                 path, (long long)covered, (long long)data_length);
  free(sorted);
  return st;
}

/* Reads exactly n bytes at offset; a short read is an error. */
static dn_status read_at(int fd, const char *path, void *buf, size_t n, int64_t offset) {
  char *p = buf;
  while (n > 0) {
    ssize_t got = pread(fd, p, n, (off_t)offset);
    if (got < 0) {
      if (errno == EINTR) continue;
      return dn_fail(DN_EIO, "safetensors: %s: read error: %s", path, strerror(errno));
    }
    if (got == 0) return dn_fail(DN_EFORMAT, "safetensors: %s: file shrank while reading", path);
    p += got;
    n -= (size_t)got;
    offset += got;
  }
  return DN_OK;
}

void dn_safetensors_free(dn_safetensors *st) {
  if (!st) return;
  for (int i = 0; i < st->count; i++) {
    free((char *)st->tensors[i].name);
    dn_tensor_release(st->tensors[i].tensor);
  }
  for (int i = 0; i < st->metadata_count; i++) {
    free((char *)st->metadata[i].key);
    free((char *)st->metadata[i].value);
  }
  free(st->tensors);
  free(st->metadata);
  free(st);
}

/* The checked header into a result (tensors read from fd). */
static dn_status build_result(dn_safetensors *result, int fd, const char *path, const dn_json_value *root,
                              int64_t data_start, int64_t data_length) {
  size_t members = root->as.object.count;
  const dn_json_value *meta = NULL;
  for (size_t i = 0; i < members; i++)
    if (!strcmp(root->as.object.members[i].key, METADATA_KEY)) meta = &root->as.object.members[i].value;
  if (members > (size_t)INT32_MAX) return dn_fail(DN_EFORMAT, "safetensors: %s: too many tensors", path);
  int count = (int)(members - (meta ? 1 : 0));

  if (meta) {
    if (meta->kind != DN_JSON_OBJECT)
      return dn_fail(DN_EFORMAT, "safetensors: %s: __metadata__ is a JSON %s, not an object", path,
                     dn_json_kind_name(meta->kind));
    result->metadata = calloc(meta->as.object.count ? meta->as.object.count : 1, sizeof *result->metadata);
    if (!result->metadata) return dn_fail(DN_ENOMEM, "safetensors: %s: out of memory", path);
    for (size_t i = 0; i < meta->as.object.count; i++) {
      const dn_json_member *m = &meta->as.object.members[i];
      if (m->value.kind != DN_JSON_STRING)
        return dn_fail(DN_EFORMAT, "safetensors: %s: metadata '%s' is a JSON %s, not a string", path, m->key,
                       dn_json_kind_name(m->value.kind));
      dn_metadata_entry *out = &result->metadata[result->metadata_count];
      out->key = strdup(m->key);
      out->value = strdup(m->value.as.string);
      result->metadata_count++;
      if (!out->key || !out->value) return dn_fail(DN_ENOMEM, "safetensors: %s: out of memory", path);
    }
  }

  entry *entries = malloc((size_t)(count ? count : 1) * sizeof *entries);
  result->tensors = calloc((size_t)(count ? count : 1), sizeof *result->tensors);
  if (!entries || !result->tensors) {
    free(entries);
    return dn_fail(DN_ENOMEM, "safetensors: %s: out of memory", path);
  }
  dn_status st = DN_OK;
  int k = 0;
  for (size_t i = 0; i < members && !st; i++) {
    const dn_json_member *m = &root->as.object.members[i];
    if (&m->value == meta) continue;
    st = parse_entry(path, m, data_length, &entries[k++]);
  }
  if (!st) st = check_coverage(path, entries, count, data_length);
  /* Everything is checked against the file: now allocate and read. */
  for (int i = 0; i < count && !st; i++) {
    const entry *e = &entries[i];
    dn_named_tensor *out = &result->tensors[i];
    result->count++;
    out->name = strdup(e->name);
    if (!out->name) {
      st = dn_fail(DN_ENOMEM, "safetensors: %s: out of memory", path);
      break;
    }
    st = dn_tensor_new(&out->tensor, e->dtype, e->ndim, e->shape);
    if (st) break;
    size_t nbytes = (size_t)(e->end - e->begin);
    st = read_at(fd, path, dn_tensor_data(out->tensor), nbytes, data_start + e->begin);
    if (!st && !HOST_IS_LITTLE_ENDIAN)
      swap_elements(dn_tensor_data(out->tensor), nbytes / dn_dtype_size(e->dtype), dn_dtype_size(e->dtype));
  }
  free(entries);
  return st;
}

dn_status dn_safetensors_load(dn_safetensors **out, const char *path) {
  *out = NULL;
  if (!path) return dn_fail(DN_EINVAL, "safetensors: path is NULL");
  int fd;
  int64_t file_size;
  dn_status st = dn_open_regular_file("safetensors", path, &fd, &file_size);
  if (st) return st;
  char *header = NULL;
  dn_json_value root = {.kind = DN_JSON_INTEGER};
  dn_safetensors *result = NULL;
  if (file_size < 8) {
    st = dn_fail(DN_EFORMAT, "safetensors: %s: file too short (%lld bytes) to hold the 8-byte header length", path,
                 (long long)file_size);
    goto done;
  }
  unsigned char length_bytes[8];
  st = read_at(fd, path, length_bytes, 8, 0);
  if (st) goto done;
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; i--) header_length = header_length << 8 | length_bytes[i];
  if (header_length > (uint64_t)(file_size - 8)) {
    st = dn_fail(DN_EFORMAT, "safetensors: %s: header length %llu is past the end of the file (%lld bytes)", path,
                 (unsigned long long)header_length, (long long)file_size);
    goto done;
  }
  if (header_length > MAX_HEADER_BYTES) {
    st = dn_fail(DN_EFORMAT, "safetensors: %s: header length %llu is over the %llu-byte limit", path,
                 (unsigned long long)header_length, (unsigned long long)MAX_HEADER_BYTES);
    goto done;
  }
  header = malloc(header_length ? header_length : 1);
  if (!header) {
    st = dn_fail(DN_ENOMEM, "safetensors: %s: out of memory for a %llu-byte header", path,
                 (unsigned long long)header_length);
    goto done;
  }
  st = read_at(fd, path, header, header_length, 8);
  if (st) goto done;
  char json_error[200];
  if (dn_json_parse(&root, header, header_length, json_error, sizeof json_error)) {
    st = dn_fail(DN_EFORMAT, "safetensors: %s: bad JSON header: %s", path, json_error);
    goto done;
  }
  if (root.kind != DN_JSON_OBJECT) {
    st = dn_fail(DN_EFORMAT, "safetensors: %s: the header is a JSON %s, not an object", path,
                 dn_json_kind_name(root.kind));
    goto done;
  }
  result = calloc(1, sizeof *result);
  if (!result) {
    st = dn_fail(DN_ENOMEM, "safetensors: %s: out of memory", path);
    goto done;
  }
  int64_t data_start = 8 + (int64_t)header_length;
  st = build_result(result, fd, path, &root, data_start, file_size - data_start);
done:
  close(fd);
  dn_json_free(&root);
  free(header);
  if (st) {
    dn_safetensors_free(result);
    return st;
  }
  *out = result;
  return DN_OK;
}
