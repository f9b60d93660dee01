/*
** IDX files (the MNIST family's format): 0x00 0x00 <type> <ndims>, ndims
** big-endian uint32 dims, then the data big-endian, row-major. Plain or
** gzip-compressed (detected from the 1f 8b magic, read through zlib).
**
** The header is checked against the file before anything is allocated: a
** plain file's size must match exactly; a gzip file's claim must fit what
** its compressed size can hold, and the decompressed data must then have
** exactly the claimed size (short or long is an error).
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "atomic_file.h"
#include "dropnet/io.h"
#include "input_file.h"
#include "internal.h"
#include "shape.h"

/* A header claiming more data than this is refused outright, counting an
   element's bytes in the file or in memory, whichever is more: sbyte and short
   become int32, and what the reader accepts dn_idx_write must be able to write
   back readably. */
#define MAX_DATA_BYTES ((int64_t)16 << 30)
/* Deflate cannot compress better than about 1032:1, so a gzip file of n bytes
   never holds more than this many times n: a sound bound before allocating. */
#define MAX_GZIP_RATIO 1032
/* Read and conversion granularity (a multiple of every element size). */
#define CHUNK_BYTES ((size_t)1 << 18)
/* How much trailing data is counted for the message before giving up counting. */
#define TRAILING_COUNT_LIMIT ((int64_t)1 << 20)

typedef struct idx_type {
  unsigned char code;
  const char *name;
  size_t size;       /* bytes per element in the file */
  dn_dtype dtype;    /* what it becomes in memory */
} idx_type;

static const idx_type idx_types[] = {
  {0x08, "ubyte", 1, DN_U8},  {0x09, "sbyte", 1, DN_I32},   {0x0B, "short", 2, DN_I32},
  {0x0C, "int32", 4, DN_I32}, {0x0D, "float32", 4, DN_F32}, {0x0E, "float64", 8, DN_F32},
};

static const idx_type *find_type(unsigned char code) {
  for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
    if (idx_types[i].code == code) return &idx_types[i];
  return NULL;
}

/* --- input: a plain file or a gzip stream --------------------------------------- */

/* gzip is inflated here rather than through gzread: gzread returns a clean end
   of file when the input stops right after the deflate data, so a file whose
   trailer (CRC and length) was cut off would pass unchecked. inflate() reports
   Z_STREAM_END only after it has verified the trailer. */
#define GZ_INPUT_BYTES ((size_t)1 << 16)

typedef struct source {
  const char *path;
  FILE *file;
  bool gzip;
  z_stream z;            /* gzip only */
  unsigned char *input;  /* gzip only: GZ_INPUT_BYTES of compressed input */
  bool finished;         /* gzip: the last member ended and no input follows */
  bool cut_short;        /* gzip: the input ended inside a member */
  dn_status error;       /* status of the last failed read (DN_EIO or DN_EFORMAT) */
} source;

static dn_status source_open(source *s, const char *path, FILE *file, bool gzip) {
  memset(s, 0, sizeof *s);
  s->path = path;
  s->file = file;
  s->gzip = gzip;
  if (!gzip) return DN_OK;
  s->input = malloc(GZ_INPUT_BYTES);
  if (!s->input) return dn_fail(DN_ENOMEM, "idx: %s: out of memory", path);
  if (inflateInit2(&s->z, 15 + 16) != Z_OK) {   /* 15 + 16: a gzip wrapper */
    free(s->input);
    s->input = NULL;
    return dn_fail(DN_ENOMEM, "idx: %s: cannot start gzip decompression", path);
  }
  return DN_OK;
}

static void source_close(source *s) {
  if (s->input) {
    inflateEnd(&s->z);
    free(s->input);
  }
  fclose(s->file);
}

/* Refills the compressed input; false at the end of the file or on an error (s->error set). */
static bool refill(source *s) {
  size_t got = fread(s->input, 1, GZ_INPUT_BYTES, s->file);
  if (got == 0 && ferror(s->file)) s->error = dn_fail(DN_EIO, "idx: %s: read error: %s", s->path, strerror(errno));
  s->z.next_in = s->input;
  s->z.avail_in = (uInt)got;
  return got > 0;
}

static int64_t gzip_read(source *s, unsigned char *buf, size_t n) {
  size_t total = 0;
  while (total < n && !s->finished) {
    size_t want = n - total > (1u << 30) ? (1u << 30) : n - total;
    s->z.next_out = buf + total;
    s->z.avail_out = (uInt)want;
    while (s->z.avail_out > 0) {
      if (s->z.avail_in == 0 && !refill(s)) {
        if (s->error) return -1;
        s->cut_short = true;   /* the file ended inside a member */
        s->finished = true;
        break;
      }
      int ret = inflate(&s->z, Z_NO_FLUSH);
      if (ret == Z_STREAM_END) {
        /* a member ended, trailer verified; concatenated members continue the data */
        if (s->z.avail_in == 0 && !refill(s)) {
          if (s->error) return -1;
          s->finished = true;
          break;
        }
        inflateReset(&s->z);
      } else if (ret == Z_MEM_ERROR) {
        s->error = dn_fail(DN_ENOMEM, "idx: %s: out of memory decompressing", s->path);
        return -1;
      } else if (ret != Z_OK) {
        s->error = dn_fail(DN_EFORMAT, "idx: %s: corrupt gzip data: %s", s->path,
                           s->z.msg ? s->z.msg : "cannot inflate");
        return -1;
      }
    }
    total += want - s->z.avail_out;
  }
  return (int64_t)total;
}

/* Reads up to n bytes; fewer only at the end of the data. -1 on a read error
   (the message is recorded in s->error). */
static int64_t source_read(source *s, void *buf, size_t n) {
  if (s->gzip) return gzip_read(s, buf, n);
  size_t got = fread(buf, 1, n, s->file);
  if (got < n && ferror(s->file)) {
    s->error = dn_fail(DN_EIO, "idx: %s: read error: %s", s->path, strerror(errno));
    return -1;
  }
  return (int64_t)got;
}

/* --- reading ----------------------------------------------------------------------- */

static uint32_t load_be32(const unsigned char *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static uint64_t load_be64(const unsigned char *b) { return (uint64_t)load_be32(b) << 32 | load_be32(b + 4); }

/* Converts count big-endian file elements at src into dst (the tensor's dtype). */
static void convert_from_file(void *dst, const unsigned char *src, size_t count, const idx_type *type) {
  switch (type->code) {
    case 0x08: memcpy(dst, src, count); break;
    case 0x09:
      for (size_t i = 0; i < count; i++) ((int32_t *)dst)[i] = (int8_t)src[i];
      break;
    case 0x0B:
      for (size_t i = 0; i < count; i++)
        ((int32_t *)dst)[i] = (int16_t)(uint16_t)((unsigned)src[2 * i] << 8 | src[2 * i + 1]);
      break;
    case 0x0C:
      for (size_t i = 0; i < count; i++) ((int32_t *)dst)[i] = (int32_t)load_be32(src + 4 * i);
      break;
    case 0x0D:
      for (size_t i = 0; i < count; i++) {
        uint32_t bits = load_be32(src + 4 * i);
        memcpy((float *)dst + i, &bits, 4);
      }
      break;
    case 0x0E:
      for (size_t i = 0; i < count; i++) {
        uint64_t bits = load_be64(src + 8 * i);
        double v;
        memcpy(&v, &bits, 8);
        ((float *)dst)[i] = (float)v;
      }
      break;
  }
}

/* "60000x28x28" */
static void dims_text(char *buf, size_t size, int ndims, const int64_t *dims) {
  size_t used = 0;
  buf[0] = '\0';
  for (int d = 0; d < ndims && used < size; d++)
    used += (size_t)snprintf(buf + used, size - used, d ? "x%lld" : "%lld", (long long)dims[d]);
}

/* Reads the rest of the stream to count it (up to a limit); -1 on a read error. */
static int64_t count_trailing(source *s, unsigned char *buf, bool *capped) {
  int64_t total = 0;
  *capped = false;
  for (;;) {
    int64_t got = source_read(s, buf, CHUNK_BYTES);
    if (got < 0) return -1;
    total += got;
    if (got == 0) return total;
    if (total >= TRAILING_COUNT_LIMIT) {
      *capped = true;
      return total;
    }
  }
}

/* Header and data, after the file is open. */
static dn_status read_idx(dn_tensor **out, source *s, int64_t file_size, bool gzip) {
  const char *path = s->path;
  unsigned char header[4 + 4 * DN_MAX_DIMS];
  int64_t got = source_read(s, header, 4);
  if (got < 0) return s->error;
  if (got < 4)
    return dn_fail(DN_EFORMAT, "idx: %s: truncated header: %lld bytes, an IDX file starts with 4 magic bytes",
                   path, (long long)got);
  if (header[0] != 0 || header[1] != 0)
    return dn_fail(DN_EFORMAT,
                   "idx: %s: not an IDX file: magic bytes %02x %02x %02x %02x (expected 00 00 <type> <ndims>)",
                   path, header[0], header[1], header[2], header[3]);
  const idx_type *type = find_type(header[2]);
  if (!type)
    return dn_fail(DN_EFORMAT,
                   "idx: %s: unknown data type 0x%02x (known: 08 ubyte, 09 sbyte, 0B short, 0C int32, "
                   "0D float32, 0E float64)",
                   path, header[2]);
  int ndims = header[3];
  if (ndims < 1 || ndims > DN_MAX_DIMS)
    return dn_fail(DN_EFORMAT, "idx: %s: %d dims in the header (must be 1..%d)", path, ndims, DN_MAX_DIMS);
  got = source_read(s, header + 4, 4 * (size_t)ndims);
  if (got < 0) return s->error;
  if (got < 4 * ndims)
    return dn_fail(DN_EFORMAT, "idx: %s: truncated header: %d dims announced but only %lld bytes of them", path,
                   ndims, (long long)got);

  int64_t dims[DN_MAX_DIMS], numel = 1;
  size_t memory_size = dn_dtype_size(type->dtype);
  int64_t element_bytes = (int64_t)(type->size > memory_size ? type->size : memory_size);
  bool too_large = false;
  for (int d = 0; d < ndims; d++) {
    dims[d] = load_be32(header + 4 + 4 * d);
    if (dims[d] > 0 && numel > MAX_DATA_BYTES / element_bytes / dims[d]) too_large = true;
    else numel *= dims[d];
  }
  char shape[160];
  dims_text(shape, sizeof shape, ndims, dims);
  if (too_large)
    return dn_fail(DN_EFORMAT, "idx: %s: header says %s %s, more than the %lld GiB limit", path, shape, type->name,
                   (long long)(MAX_DATA_BYTES >> 30));
  if (dn_shape_check("idx", ndims, dims, NULL))   /* e.g. 0 x 2^32-1 x 2^32-1: no data, but no tensor either */
    return dn_fail(DN_EFORMAT, "idx: %s: header says %s %s, a shape too large for a tensor (its sizes, counting 0 "
                   "as 1, multiply past 2^40)", path, shape, type->name);
  int64_t data_bytes = numel * (int64_t)type->size;
  int64_t header_bytes = 4 + 4 * (int64_t)ndims;

  if (!gzip) {
    int64_t have = file_size - header_bytes;
    if (have != data_bytes)
      return dn_fail(DN_EFORMAT, "idx: %s: %s: header says %s %s (%lld bytes) but the data has %lld bytes", path,
                     have < data_bytes ? "truncated" : "trailing data", shape, type->name, (long long)data_bytes,
                     (long long)have);
  } else if (data_bytes / MAX_GZIP_RATIO > file_size) {
    return dn_fail(DN_EFORMAT,
                   "idx: %s: truncated: header says %s %s (%lld bytes), more than a %lld-byte gzip file can hold",
                   path, shape, type->name, (long long)data_bytes, (long long)file_size);
  }

  unsigned char *chunk = malloc(CHUNK_BYTES);
  if (!chunk) return dn_fail(DN_ENOMEM, "idx: %s: out of memory", path);
  dn_tensor *t;
  dn_status st = dn_tensor_new(&t, type->dtype, ndims, dims);
  if (st) {
    free(chunk);
    return dn_fail(st, "idx: %s: out of memory for %s %s", path, shape, dn_dtype_name(type->dtype));
  }
  char *dst = dn_tensor_data(t);
  size_t out_size = dn_dtype_size(type->dtype);
  int64_t done = 0;
  while (done < data_bytes) {
    size_t want = data_bytes - done < (int64_t)CHUNK_BYTES ? (size_t)(data_bytes - done) : CHUNK_BYTES;
    got = source_read(s, chunk, want);
    if (got < 0) {
      st = s->error;
      goto fail;
    }
    if ((size_t)got < want) {
      st = dn_fail(DN_EFORMAT, "idx: %s: truncated: header says %s %s (%lld bytes) but the data has %lld bytes",
                   path, shape, type->name, (long long)data_bytes, (long long)(done + got));
      goto fail;
    }
    size_t count = want / type->size;
    convert_from_file(dst, chunk, count, type);
    dst += count * out_size;
    done += got;
  }
  bool capped;
  int64_t extra = count_trailing(s, chunk, &capped);
  if (extra < 0) {
    st = s->error;
    goto fail;
  }
  if (extra > 0) {
    st = dn_fail(DN_EFORMAT, "idx: %s: trailing data: header says %s %s (%lld bytes) but the data has %s%lld bytes",
                 path, shape, type->name, (long long)data_bytes, capped ? "more than " : "",
                 (long long)(data_bytes + extra));
    goto fail;
  }
  if (s->cut_short) {   /* all the data came out, but the checksum that vouches for it is missing */
    st = dn_fail(DN_EFORMAT, "idx: %s: truncated: the gzip stream ends before its trailer (checksum)", path);
    goto fail;
  }
  free(chunk);
  *out = t;
  return DN_OK;
fail:
  free(chunk);
  dn_tensor_release(t);
  return st;
}

dn_status dn_idx_read(dn_tensor **out, const char *path) {
  *out = NULL;
  if (!path) return dn_fail(DN_EINVAL, "idx: path is NULL");
  int fd;
  int64_t file_size;
  dn_status st = dn_open_regular_file("idx", path, &fd, &file_size);   /* the size checks need a regular file */
  if (st) return st;
  unsigned char magic[2] = {0, 0};
  ssize_t peeked = pread(fd, magic, 2, 0);
  if (peeked < 0) {
    int err = errno;
    close(fd);
    return dn_fail(DN_EIO, "idx: %s: read error: %s", path, strerror(err));
  }
  bool gzip = peeked == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  FILE *file = fdopen(fd, "rb");
  if (!file) {
    int err = errno;
    close(fd);
    return dn_fail(DN_EIO, "idx: %s: cannot open a stream: %s", path, strerror(err));
  }
  source s;
  st = source_open(&s, path, file, gzip);
  if (st) {
    fclose(file);
    return st;
  }
  st = read_idx(out, &s, file_size, gzip);
  source_close(&s);
  return st;
}

/* --- writing ------------------------------------------------------------------------ */

static void store_be32(unsigned char *b, uint32_t v) {
  b[0] = (unsigned char)(v >> 24);
  b[1] = (unsigned char)(v >> 16);
  b[2] = (unsigned char)(v >> 8);
  b[3] = (unsigned char)v;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

dn_status dn_idx_write(const char *path, const dn_tensor *t) {
  if (!path) return dn_fail(DN_EINVAL, "idx: path is NULL");
  if (!t) return dn_fail(DN_EINVAL, "idx: tensor is NULL");
  unsigned char code;
  switch (t->dtype) {
    case DN_U8: code = 0x08; break;
    case DN_I32: code = 0x0C; break;
    case DN_F32: code = 0x0D; break;
    default: return dn_fail(DN_ETYPE, "idx: cannot write dtype %d", (int)t->dtype);
  }
  if (t->ndim < 1)
    return dn_fail(DN_ESHAPE, "idx: cannot write a 0-dim tensor to %s (IDX needs at least 1 dim)", path);
  unsigned char header[4 + 4 * DN_MAX_DIMS] = {0, 0, code, (unsigned char)t->ndim};
  for (int d = 0; d < t->ndim; d++) {
    if (t->shape[d] > (int64_t)UINT32_MAX) {
      char sb[128];
      return dn_fail(DN_ESHAPE, "idx: dim %d of shape %s does not fit IDX's 32-bit sizes", d + 1,
                     dn_shape_str(t, sb, sizeof sb));
    }
    store_be32(header + 4 + 4 * d, (uint32_t)t->shape[d]);
  }
  unsigned char *chunk = malloc(CHUNK_BYTES);
  if (!chunk) return dn_fail(DN_ENOMEM, "idx: out of memory");
  dn_atomic_file f;
  dn_status st = dn_atomic_open(&f, "idx", path, ends_with(path, ".gz"));
  if (!st) st = dn_atomic_write(&f, header, 4 + 4 * (size_t)t->ndim);

  /* Rows of any layout (views included), converted to big-endian bytes chunk by chunk. */
  size_t elem = dn_dtype_size(t->dtype), used = 0;
  int64_t rows = dn_tensor_numel(t) ? dn_row_count(t) : 0, length = dn_row_length(t), stride = dn_row_stride(t);
  for (int64_t r = 0; r < rows && !st; r++) {
    int64_t off = dn_row_offset(t, r);
    for (int64_t j = 0; j < length; j++, off += stride) {
      if (used == CHUNK_BYTES) {
        st = dn_atomic_write(&f, chunk, used);
        used = 0;
        if (st) break;
      }
      switch (t->dtype) {
        case DN_U8: chunk[used] = ((const uint8_t *)t->storage->data)[off]; break;
        case DN_I32: store_be32(chunk + used, (uint32_t)((const int32_t *)t->storage->data)[off]); break;
        case DN_F32: {
          uint32_t bits;
          memcpy(&bits, (const float *)t->storage->data + off, 4);
          store_be32(chunk + used, bits);
          break;
        }
      }
      used += elem;
    }
  }
  if (!st && used) st = dn_atomic_write(&f, chunk, used);
  if (!st) st = dn_atomic_commit(&f);
  free(chunk);
  return st;
}
