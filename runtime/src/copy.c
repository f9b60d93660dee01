/*
** copy_ and fill_: the strided copy every other op leans on (contiguous,
** clone, dtype conversion, broadcasting assignment).
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
#include <string.h>

#include "dropnet/autograd.h"
#include "internal.h"

/* Copies rows [r0, r1) of src into dst, both of the same shape. */
static void copy_rows(dn_tensor *dst, const dn_tensor *src, int64_t r0, int64_t r1) {
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
static void copy_flat(dn_tensor *dst, const dn_tensor *src, int64_t begin, int64_t end) {
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

/* The row-major position (0-based) of the first element of src that dtype
   cannot hold, or -1. Rows are scanned in parallel; the minimum wins, so the
   answer does not depend on the thread count. */
static int64_t first_unfit(dn_dtype dtype, const dn_tensor *src) {
  int64_t rows = dn_row_count(src), len = dn_row_length(src), stride = dn_row_stride(src);
  int64_t first = INT64_MAX;
  int threads = dn_threads_for(dn_tensor_numel(src));
#pragma omp parallel for num_threads(threads) if (threads > 1) reduction(min : first) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = dn_row_offset(src, r);
    if (r * len > first) continue;   /* an earlier row already failed */
    for (int64_t i = 0; i < len; i++) {
      if (!dn_truncation_fits(dtype, dn_load(src, off + i * stride))) {
        if (r * len + i < first) first = r * len + i;
        break;
      }
    }
  }
  return first == INT64_MAX ? -1 : first;
}

dn_status dn_copy_(dn_tensor *dst, const dn_tensor *src) {
  dn_status st = dn_check_inplace("copy_", dst);
  if (!st) st = dn_check_inplace_source("copy_", src);
  return st ? st : dn_copy_into(dst, src);
}

dn_status dn_copy_into(dn_tensor *dst, const dn_tensor *src) { return dn_copy_into_named("copy_", dst, src); }

dn_status dn_copy_into_named(const char *op, dn_tensor *dst, const dn_tensor *src) {
  /* the broadcast view is a private reader of src: no graph node for it */
  bool grad_mode = dn_set_grad_enabled(false);
  dn_tensor *view;
  dn_status st = dn_broadcast_to(&view, (dn_tensor *)src, dst->ndim, dst->shape);
  dn_set_grad_enabled(grad_mode);
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
  int threads = dn_threads_for(numel);
  if (dn_tensor_is_contiguous(dst) && dn_tensor_is_contiguous(view)) {
    /* the common cases (clone, contiguous, dtype conversion of a dataset):
       flat loops split over threads */
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      copy_flat(dst, view, numel * t / nt, numel * (t + 1) / nt);
    }
  } else if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      copy_rows(dst, view, rows * t / nt, rows * (t + 1) / nt);
    }
  } else {
    copy_rows(dst, view, 0, rows);
  }
  dn_tensor_release(view);
  dn_bump_version(dst);
  return DN_OK;
}

dn_status dn_fill_(dn_tensor *t, double value) {
  dn_status st = dn_check_inplace("fill_", t);
  if (st) return st;
  if (!dn_value_fits(t->dtype, value))
    return dn_fail(DN_EINVAL, "fill_: value %g is not representable as %s", value, dn_dtype_name(t->dtype));
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
