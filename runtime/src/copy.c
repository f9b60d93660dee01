/*
** Copies and writes: copy_, fill_, set, clone, contiguous, to_dtype, the
** strided copy every other op leans on, and the gradient accumulation of the
** autograd engine. Above tensor.c and graph.c, below every op: it calls no
** op (its broadcast views are tensor.c's plain aliases).
**
** A conversion to an integer dtype truncates toward zero, as C and PyTorch
** do (2.7 -> 2, -2.7 -> -2); that is defined only when the truncated value
** fits, so before any element is written the source is checked, and NaN,
** infinities and values out of range are an error naming the first such
** element. Conversions that always fit (to float32, uint8 -> int32) and
** copies within one dtype skip the check.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dropnet/autograd.h"
#include "graph.h"
#include "internal.h"

typedef struct copy_job {
  dn_tensor *dst;
  const dn_tensor *src;
} copy_job;

/* Copies rows [r0, r1) of src into dst, both of the same shape. */
static void copy_rows(const void *ctx, int64_t r0, int64_t r1) {
  const copy_job *j = ctx;
  dn_tensor *dst = j->dst;
  const dn_tensor *src = j->src;
  int64_t len = dn_row_length(dst), ds = dn_row_stride(dst), ss = dn_row_stride(src);
  for (int64_t r = r0; r < r1; r++) {
    int64_t doff = dn_row_offset(dst, r), soff = dn_row_offset(src, r);
    if (dst->dtype == DN_F32 && src->dtype == DN_F32) {
      float *d = DN_F32_AT(dst, doff);
      const float *s = DN_F32_AT(src, soff);
      if (ds == 1 && ss == 1) memcpy(d, s, (size_t)len * sizeof *d);
      else for (int64_t i = 0; i < len; i++) d[i * ds] = s[i * ss];
    } else if (dst->dtype == DN_I32 && src->dtype == DN_I32) {
      int32_t *d = DN_I32_AT(dst, doff);
      const int32_t *s = DN_I32_AT(src, soff);
      if (ds == 1 && ss == 1) memcpy(d, s, (size_t)len * sizeof *d);
      else for (int64_t i = 0; i < len; i++) d[i * ds] = s[i * ss];
    } else {
      for (int64_t i = 0; i < len; i++) dn_store(dst, doff + i * ds, dn_load(src, soff + i * ss));
    }
  }
}

/* Elements [begin, end) of contiguous src into contiguous dst. */
static void copy_flat(const void *ctx, int64_t begin, int64_t end) {
  const copy_job *j = ctx;
  dn_tensor *dst = j->dst;
  const dn_tensor *src = j->src;
  if (end <= begin) return;
  int64_t n = end - begin;
  if (dst->dtype == src->dtype) {
    size_t elem = dn_dtype_size(dst->dtype);
    memcpy((char *)dn_tensor_data(dst) + (size_t)begin * elem, (const char *)dn_tensor_data(src) + (size_t)begin * elem,
           (size_t)n * elem);
    return;
  }
  float *df = dst->dtype == DN_F32 ? (float *)dn_tensor_data(dst) + begin : NULL;
  if (df && src->dtype == DN_U8) {
    const uint8_t *s = (const uint8_t *)dn_tensor_data(src) + begin;
    for (int64_t i = 0; i < n; i++) df[i] = (float)s[i];
  } else if (df && src->dtype == DN_I32) {
    const int32_t *s = (const int32_t *)dn_tensor_data(src) + begin;
    for (int64_t i = 0; i < n; i++) df[i] = (float)s[i];
  } else {
    int64_t doff = dst->offset + begin, soff = src->offset + begin;
    for (int64_t i = 0; i < n; i++) dn_store(dst, doff + i, dn_load(src, soff + i));
  }
}

/* Whether converting from `from` to `to` can meet a value that does not fit. */
static bool conversion_narrows(dn_dtype to, dn_dtype from) {
  if (to == from || to == DN_F32) return false;
  return !(to == DN_I32 && from == DN_U8);
}

typedef struct unfit_job {
  dn_dtype dtype;
  const dn_tensor *src;
  int64_t rows;
  int64_t *first;   /* per task: the first unfit position in its rows, or INT64_MAX */
} unfit_job;

static void unfit_task(void *ctx, int task, int tasks) {
  const unfit_job *j = ctx;
  const dn_tensor *src = j->src;
  int64_t len = dn_row_length(src), stride = dn_row_stride(src);
  int64_t first = INT64_MAX;
  for (int64_t r = dn_split(j->rows, task, tasks); r < dn_split(j->rows, task + 1, tasks); r++) {
    int64_t off = dn_row_offset(src, r);
    if (r * len > first) continue;   /* an earlier row already failed */
    for (int64_t i = 0; i < len; i++) {
      if (!dn_truncation_fits(j->dtype, dn_load(src, off + i * stride))) {
        if (r * len + i < first) first = r * len + i;
        break;
      }
    }
  }
  j->first[task] = first;
}

/* The row-major position (0-based) of the first element of src that dtype
   cannot hold, or -1. Rows are scanned in parallel, each task keeping the
   first position in its rows; the minimum over the tasks wins, so the answer
   does not depend on the thread count. */
static int64_t first_unfit(dn_dtype dtype, const dn_tensor *src) {
  int64_t first[DN_MAX_THREADS];   /* tasks <= dn_get_num_threads() <= DN_MAX_THREADS */
  int tasks = dn_threads_for(dn_tensor_numel(src));
  unfit_job job = {dtype, src, dn_row_count(src), first};
  dn_parallel(tasks, unfit_task, &job);
  int64_t min = INT64_MAX;
  for (int t = 0; t < tasks; t++)
    if (first[t] < min) min = first[t];
  return min == INT64_MAX ? -1 : min;
}

/*
** Overlap of copy_'s destination and source. Views of one storage that
** share an element make the result depend on the order of the writes (and
** the contiguous path calls memcpy, undefined on overlapping ranges), so
** copy_ refuses them as PyTorch does; the exact self-copy (the same elements
** in the same order) is a no-op. Storages that differ, the common case, cost
** one comparison; within one storage, the offsets each view touches are
** compared exactly (a bitmap over the common span), so interleaved views
** such as the even and the odd elements of a row do not count as overlap.
*/

/* The smallest and largest storage offsets t touches (t has elements). */
static void offset_span(const dn_tensor *t, int64_t *lo, int64_t *hi) {
  *lo = *hi = t->offset;
  for (int d = 0; d < t->ndim; d++) {
    int64_t extent = (t->shape[d] - 1) * t->stride[d];
    if (extent < 0) *lo += extent;
    else *hi += extent;
  }
}

/* Marks in bits (one per offset in [lo, hi]) the offsets t touches, or, with
   test set, tells whether t touches one already marked. Dims of size 1 or
   stride 0 add no offsets and are skipped. */
static bool walk_offsets(const dn_tensor *t, uint64_t *bits, int64_t lo, int64_t hi, bool test) {
  int64_t size[DN_MAX_DIMS], stride[DN_MAX_DIMS], index[DN_MAX_DIMS];
  int n = 0;
  for (int d = 0; d < t->ndim; d++) {
    if (t->shape[d] > 1 && t->stride[d] != 0) {
      size[n] = t->shape[d];
      stride[n] = t->stride[d];
      index[n++] = 0;
    }
  }
  int64_t off = t->offset;
  for (;;) {
    if (off >= lo && off <= hi) {
      uint64_t bit = (uint64_t)(off - lo), word = bit >> 6, mask = (uint64_t)1 << (bit & 63);
      if (test && (bits[word] & mask)) return true;
      bits[word] |= mask;
    }
    int d = n - 1;
    while (d >= 0 && ++index[d] == size[d]) {
      off -= (size[d] - 1) * stride[d];
      index[d] = 0;
      d--;
    }
    if (d < 0) return false;
    off += stride[d];
  }
}

/* Whether dst and src (one storage, both with elements) share an element. */
static dn_status shares_elements(const dn_tensor *dst, const dn_tensor *src, bool *shared) {
  int64_t dlo, dhi, slo, shi;
  offset_span(dst, &dlo, &dhi);
  offset_span(src, &slo, &shi);
  int64_t lo = dlo > slo ? dlo : slo, hi = dhi < shi ? dhi : shi;
  *shared = false;
  if (lo > hi) return DN_OK;   /* disjoint spans */
  size_t words = (size_t)((uint64_t)(hi - lo) / 64 + 1);
  uint64_t *bits = calloc(words, sizeof *bits);
  if (!bits) return dn_fail(DN_ENOMEM, "copy_: out of memory comparing the source with the destination");
  walk_offsets(dst, bits, lo, hi, false);
  *shared = walk_offsets(src, bits, lo, hi, true);
  free(bits);
  return DN_OK;
}

/* Whether view (src broadcast to dst's shape) reads exactly the elements dst writes, in order. */
static bool same_elements(const dn_tensor *dst, const dn_tensor *view) {
  if (view->offset != dst->offset) return false;
  for (int d = 0; d < dst->ndim; d++)
    if (dst->shape[d] > 1 && view->stride[d] != dst->stride[d]) return false;
  return true;
}

dn_status dn_check_writable(const char *op, const dn_tensor *t) {
  if (dn_tensor_numel(t) == 0) return DN_OK;   /* nothing is written (and a size of 0 makes strides 0) */
  for (int d = 0; d < t->ndim; d++) {
    if (t->shape[d] > 1 && t->stride[d] == 0) {
      char sb[128];
      return dn_fail(DN_EINVAL,
                     "%s: cannot write into an expanded tensor of shape %s (several elements share memory); "
                     "clone it first",
                     op, dn_shape_str(t, sb, sizeof sb));
    }
  }
  return DN_OK;
}

dn_status dn_copy_(dn_tensor *dst, const dn_tensor *src) {
  DN_FPMODE_SCOPE();
  dn_status st = dn_check_inplace("copy_", dst);
  if (!st) st = dn_check_inplace_source("copy_", src);
  if (!st) st = dn_check_writable("copy_", dst);
  if (st) return st;
  if (src->storage != dst->storage || dn_tensor_numel(dst) == 0 || dn_tensor_numel(src) == 0)
    return dn_copy_into(dst, src);
  /* one storage: a no-op when src is dst, an error when they share elements otherwise */
  dn_tensor *view;
  st = dn_expand_alias(&view, (dn_tensor *)src, dst->ndim, dst->shape);
  if (st) return dn_copy_into(dst, src);   /* it names the shapes that do not broadcast */
  bool same = same_elements(dst, view);
  dn_tensor_release(view);
  if (same) {
    dn_bump_version(dst);   /* still an in-place write, as far as autograd is concerned */
    return DN_OK;
  }
  bool shared;
  st = shares_elements(dst, src, &shared);
  if (st) return st;
  if (shared) {
    char ds[128], ss[128];
    return dn_fail(DN_EINVAL,
                   "copy_: the source %s and the destination %s are views of the same memory that partially "
                   "overlap (some elements of both are one memory location); clone the source first",
                   dn_shape_str(src, ss, sizeof ss), dn_shape_str(dst, ds, sizeof ds));
  }
  return dn_copy_into(dst, src);
}

dn_status dn_copy_into(dn_tensor *dst, const dn_tensor *src) { return dn_copy_into_named("copy_", dst, src); }

dn_status dn_copy_into_named(const char *op, dn_tensor *dst, const dn_tensor *src) {
  dn_tensor *view;   /* a private reader of src */
  dn_status st = dn_expand_alias(&view, (dn_tensor *)src, dst->ndim, dst->shape);
  if (st) {
    char a[128], b[128];
    return dn_fail(DN_ESHAPE, "%s: source of shape %s cannot be broadcast to destination shape %s", op,
                   dn_shape_str(src, a, sizeof a), dn_shape_str(dst, b, sizeof b));
  }
  int64_t rows = dn_row_count(dst), numel = dn_tensor_numel(dst);
  if (conversion_narrows(dst->dtype, src->dtype) && numel > 0) {
    int64_t bad = first_unfit(dst->dtype, view);
    if (bad >= 0) {
      double v = dn_load(view, dn_offset_of(view, bad));
      dn_tensor_release(view);
      return dn_fail(DN_EINVAL, "%s: value %.10g at position %lld is not representable as %s", op,
                     isnan(v) ? NAN : v, (long long)bad + 1, dn_dtype_name(dst->dtype));   /* "nan", not "-nan" */
    }
  }
  copy_job job = {dst, view};
  /* the common cases (clone, contiguous, dtype conversion of a dataset):
     flat loops split over threads */
  if (dn_tensor_is_contiguous(dst) && dn_tensor_is_contiguous(view))
    dn_parallel_range(numel, 1, copy_flat, &job);
  else
    dn_parallel_rows(rows, dn_row_length(dst), copy_rows, &job);
  dn_tensor_release(view);
  dn_bump_version(dst);
  return DN_OK;
}

/* fill_ and zero_, named op in messages. */
static dn_status fill_named(const char *op, dn_tensor *t, double value) {
  DN_FPMODE_SCOPE();
  dn_status st = dn_check_inplace(op, t);
  if (!st) st = dn_check_writable(op, t);   /* a 2^40-element expanded view would take hours */
  if (st) return st;
  if (!dn_value_fits(t->dtype, value))
    return dn_fail(DN_EINVAL, "%s: value %g is not representable as %s", op, value, dn_dtype_name(t->dtype));
  if (value == 0 && !signbit(value) && dn_tensor_is_contiguous(t)) {   /* all-zero bits: 0 in every dtype */
    memset(dn_tensor_data(t), 0, (size_t)dn_tensor_numel(t) * dn_dtype_size(t->dtype));
    dn_bump_version(t);
    return DN_OK;
  }
  int64_t rows = dn_row_count(t), len = dn_row_length(t), stride = dn_row_stride(t);
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = dn_row_offset(t, r);
    if (t->dtype == DN_F32) {
      float *d = DN_F32_AT(t, off), v = (float)value;
      for (int64_t i = 0; i < len; i++) d[i * stride] = v;
    } else {
      for (int64_t i = 0; i < len; i++) dn_store(t, off + i * stride, value);
    }
  }
  dn_bump_version(t);
  return DN_OK;
}

dn_status dn_fill_(dn_tensor *t, double value) { return fill_named("fill_", t, value); }
dn_status dn_zero_(dn_tensor *t) { return fill_named("zero_", t, 0.0); }

dn_status dn_tensor_set(dn_tensor *t, const int64_t *index, double value) {
  DN_FPMODE_SCOPE();
  dn_status st = dn_check_inplace("set", t);
  if (st) return st;
  int64_t off;
  st = dn_index_offset("set", t, index, &off);
  if (st) return st;
  if (!dn_value_fits(t->dtype, value))
    return dn_fail(DN_EINVAL, "set: value %g is not representable as %s", value, dn_dtype_name(t->dtype));
  dn_store(t, off, value);
  dn_bump_version(t);
  return DN_OK;
}

/* --- clone, contiguous, to_dtype ------------------------------------------------ */

dn_status dn_contiguous(dn_tensor **out, dn_tensor *t) {
  if (dn_tensor_is_contiguous(t)) {
    *out = dn_tensor_retain(t);
    return DN_OK;
  }
  return dn_clone(out, t);
}

/* The gradient of a copy is the gradient itself. */
static dn_status clone_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  (void)node;
  grad_in[0] = dn_tensor_retain(grad);
  return DN_OK;
}
static const dn_node_type clone_node = {.name = "clone", .backward = clone_backward};

dn_status dn_clone(dn_tensor **out, const dn_tensor *t) {
  DN_FPMODE_SCOPE();
  dn_status st = dn_tensor_new(out, t->dtype, t->ndim, t->shape);
  if (st) return st;
  st = dn_copy_into(*out, t);   /* the clone node below records the copy */
  dn_node *node;
  if (!st) st = dn_record(*out, &clone_node, 1, &t, &node);
  if (st) {
    dn_tensor_release(*out);
    *out = NULL;
  }
  return st;
}

dn_status dn_to_dtype(dn_tensor **out, dn_tensor *t, dn_dtype dtype) {
  DN_FPMODE_SCOPE();
  if (t->dtype == dtype) {
    *out = dn_tensor_retain(t);
    return DN_OK;
  }
  dn_status st = dn_tensor_new(out, dtype, t->ndim, t->shape);
  if (st) return st;
  st = dn_copy_into_named("to_dtype", *out, t);   /* refuses values the dtype cannot hold */
  if (st) {
    dn_tensor_release(*out);
    *out = NULL;
  }
  return st;
}

dn_status dn_plain_clone(dn_tensor **out, const dn_tensor *t) {
  dn_status st = dn_tensor_new(out, t->dtype, t->ndim, t->shape);
  if (st) return st;
  st = dn_copy_into(*out, t);
  if (st) {
    dn_tensor_release(*out);
    *out = NULL;
  }
  return st;
}

dn_status dn_plain_contiguous(dn_tensor **out, const dn_tensor *t) {
  if (dn_tensor_is_contiguous(t)) {
    *out = dn_tensor_retain((dn_tensor *)t);
    return DN_OK;
  }
  return dn_plain_clone(out, t);
}

/* --- gradient accumulation ------------------------------------------------------ */

typedef struct accumulate_job {
  dn_tensor *dst;
  const dn_tensor *src;
} accumulate_job;

/* dst[i] += src[i] over elements [begin, end) of contiguous tensors. */
static void accumulate_flat(const void *ctx, int64_t begin, int64_t end) {
  const accumulate_job *j = ctx;
  float *d = (float *)dn_tensor_data(j->dst) + begin;
  const float *s = (const float *)dn_tensor_data(j->src) + begin;
  int64_t n = end - begin;
#pragma omp simd
  for (int64_t i = 0; i < n; i++) d[i] = d[i] + s[i];
}

/* The same over rows [r0, r1) of any layout. */
static void accumulate_rows(const void *ctx, int64_t r0, int64_t r1) {
  const accumulate_job *j = ctx;
  int64_t len = dn_row_length(j->dst), ds = dn_row_stride(j->dst), ss = dn_row_stride(j->src);
  for (int64_t r = r0; r < r1; r++) {
    float *d = DN_F32_AT(j->dst, dn_row_offset(j->dst, r));
    const float *s = DN_F32_AT(j->src, dn_row_offset(j->src, r));
    for (int64_t i = 0; i < len; i++) d[i * ds] = d[i * ds] + s[i * ss];
  }
}

static bool same_layout(const dn_tensor *x, const dn_tensor *y) {
  if (x->offset != y->offset || x->ndim != y->ndim) return false;
  for (int d = 0; d < x->ndim; d++)
    if (x->shape[d] != y->shape[d] || x->stride[d] != y->stride[d]) return false;
  return true;
}

/*
** The engine's dst += src: float32 of one shape, which the engine has made
** sure of, so nothing is checked on the common path (a contiguous .grad and
** a gradient in other memory). A .grad set by the user may be strided or
** expanded: an expanded one is refused as add_ refuses it, and a src sharing
** its memory in another layout is copied first. Each element is one float
** add, as add_ computes it: the same bits for any split over threads.
*/
dn_status dn_accumulate_into(dn_tensor *dst, const dn_tensor *src) {
  dn_tensor *copy = NULL;
  if (!dn_tensor_is_contiguous(dst)) {
    dn_status st = dn_check_writable("add_", dst);
    if (st) return st;
  }
  if (src->storage == dst->storage && !same_layout(src, dst)) {
    dn_status st = dn_plain_clone(&copy, src);
    if (st) return st;
    src = copy;
  }
  accumulate_job job = {dst, src};
  int64_t n = dn_tensor_numel(dst);
  if (n > 0 && dn_tensor_is_contiguous(dst) && dn_tensor_is_contiguous(src))
    dn_parallel_range(n, 1, accumulate_flat, &job);
  else if (n > 0)
    dn_parallel_rows(dn_row_count(dst), dn_row_length(dst), accumulate_rows, &job);
  dn_tensor_release(copy);
  dn_bump_version(dst);
  return DN_OK;
}
