/*
** The element-wise driver, shared by the element-wise families: unary.c
** (neg, exp, log, sqrt, abs, relu, sigmoid, tanh), binary.c (arithmetic,
** comparisons, maximum, minimum; with broadcasting and dtype promotion) and
** clamp_where.c.
**
** Every op is one "job": a segment kernel that does `len` elements with fixed
** strides, and a driver (dn_ew_run) that feeds it. The driver takes a flat path
** when all operands are contiguous (or single elements), giving each thread one
** long unit-stride segment; otherwise it expands the operands to the output's
** shape, merges dims that walk as one, and goes row by row. Each element is
** computed on its own, so any split over threads gives the same bits.
**
** Kernels see operands already converted to the result dtype (float32 or
** int32): mixed dtypes are converted up front, which keeps the loops to one
** dtype each.
**
** Autograd: each differentiable op records a node after computing its
** output; the backward rules (derivatives as PyTorch defines them, including
** at kinks and ties) sit in the op's file and run through the same driver
** (dn_ew_run_grad), reading the incoming gradient and the saved operands in
** one pass.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dropnet/elementwise.h"
#include "elementwise_job.h"
#include "internal.h"

/* --- checks and broadcasting ------------------------------------------------ */

dn_status dn_ew_check_dtype(const char *opname, const dn_tensor *t) {
  if (t->dtype == DN_F32 || t->dtype == DN_I32) return DN_OK;
  return dn_fail(DN_ETYPE, "%s: %s tensors are not supported (convert to float32 or int32 first)", opname,
                 dn_dtype_name(t->dtype));
}

int dn_broadcast_dims(int nx, const int64_t *x, int ny, const int64_t *y, int *ndim, int64_t *shape,
                      int64_t *x_size, int64_t *y_size) {
  int n = nx > ny ? nx : ny;
  for (int d = 0; d < n; d++) {
    int64_t sx = d >= n - nx ? x[d - (n - nx)] : 1;
    int64_t sy = d >= n - ny ? y[d - (n - ny)] : 1;
    if (sx != sy && sx != 1 && sy != 1) {
      *x_size = sx;
      *y_size = sy;
      return d;
    }
    shape[d] = sx == 1 ? sy : sx;
  }
  *ndim = n;
  return -1;
}

dn_status dn_broadcast_shape(const char *opname, const dn_tensor *a, const dn_tensor *b, int *ndim,
                             int64_t *shape) {
  int64_t sa, sb;
  int bad = dn_broadcast_dims(a->ndim, a->shape, b->ndim, b->shape, ndim, shape, &sa, &sb);
  if (bad < 0) return DN_OK;
  char as[128], bs[128];
  return dn_fail(DN_ESHAPE, "%s: shapes %s and %s cannot be broadcast (dim %d: %lld vs %lld)", opname,
                 dn_shape_str(a, as, sizeof as), dn_shape_str(b, bs, sizeof bs), bad + 1, (long long)sa,
                 (long long)sb);
}

/* --- int32 overflows ---------------------------------------------------------- */

void dn_note_overflow(dn_i32_overflow *o, const int32_t *where, int32_t x, int32_t y) {
  while (__atomic_exchange_n(&o->lock, 1, __ATOMIC_ACQUIRE)) continue;
  if (!o->hit || where < o->where) {
    o->hit = 1;
    o->where = where;
    o->x = x;
    o->y = y;
  }
  __atomic_store_n(&o->lock, 0, __ATOMIC_RELEASE);
}

dn_status dn_overflow_error(const char *name, const char *what) {
  return dn_fail(DN_ERANGE, "%s: int32 overflow: %s is outside the int32 range (convert to float32 first)", name,
                 what);
}

/* --- the driver --------------------------------------------------------------------- */

static void *element_ptr(const dn_tensor *t, int64_t off) {
  return (char *)t->storage->data + off * (int64_t)dn_dtype_size(t->dtype);
}

/* Flat walks step 1 (0 over a single element); row walks step along the last dim. */
static int64_t walk_stride(const dn_ew_job *job, const dn_tensor *t) {
  if (job->flat) return dn_tensor_numel(t) == 1 ? 0 : 1;
  return dn_row_stride(t);
}

static int64_t walk_offset(const dn_ew_job *job, const dn_tensor *t, int64_t row, int64_t col, int64_t stride) {
  return (job->flat ? t->offset : dn_row_offset(t, row)) + col * stride;
}

/* Output elements [begin, end) in row-major order: one segment per (piece of a) row. */
static void run_range(const void *ctx, int64_t begin, int64_t end) {
  const dn_ew_job *job = ctx;
  int64_t len = job->flat ? dn_tensor_numel(job->out) : dn_row_length(job->out);
  int64_t out_stride = walk_stride(job, job->out), in_stride[3];
  void *in[3];
  for (int k = 0; k < job->nin; k++) in_stride[k] = walk_stride(job, job->in[k]);
  int64_t row = begin / len, col = begin % len;
  while (begin < end) {
    int64_t count = len - col < end - begin ? len - col : end - begin;
    void *out = element_ptr(job->out, walk_offset(job, job->out, row, col, out_stride));
    for (int k = 0; k < job->nin; k++)
      in[k] = element_ptr(job->in[k], walk_offset(job, job->in[k], row, col, in_stride[k]));
    job->segment(job, out, out_stride, in, in_stride, count);
    begin += count;
    row++;
    col = 0;
  }
}

/* Contiguous output; every input contiguous with as many elements, or a single element. */
static bool is_flat(const dn_ew_job *job) {
  int64_t n = dn_tensor_numel(job->out);
  if (!dn_tensor_is_contiguous(job->out)) return false;
  for (int k = 0; k < job->nin; k++) {
    int64_t m = dn_tensor_numel(job->in[k]);
    if (m != 1 && !(m == n && dn_tensor_is_contiguous(job->in[k]))) return false;
  }
  return true;
}

/*
** Merges adjacent dims that every view walks as one (outer stride == inner
** stride * inner size) and drops size-1 dims, so rows get as long as they can:
** [N,C,H,W] + [C,1,1] walks rows of H*W. The views all have the same shape and
** are private headers, so they are edited in place.
*/
static void coalesce_dims(dn_tensor **views, int count) {
  const int ndim = views[0]->ndim;
  int64_t shape[DN_MAX_DIMS], stride[4][DN_MAX_DIMS];
  int kept = 0;
  for (int d = 0; d < ndim; d++) {
    int64_t size = views[0]->shape[d];
    if (size == 1) continue;
    bool merge = kept > 0;
    for (int k = 0; k < count && merge; k++) merge = stride[k][kept - 1] == views[k]->stride[d] * size;
    if (merge) {
      shape[kept - 1] *= size;
    } else {
      shape[kept] = size;
      kept++;
    }
    for (int k = 0; k < count; k++) stride[k][kept - 1] = views[k]->stride[d];
  }
  for (int k = 0; k < count; k++) {
    views[k]->ndim = kept;
    for (int d = 0; d < kept; d++) {
      views[k]->shape[d] = shape[d];
      views[k]->stride[d] = stride[k][d];
    }
  }
}

dn_status dn_ew_run(dn_ew_job *job) {
  int64_t n = dn_tensor_numel(job->out);
  if (n == 0) return DN_OK;
  job->flat = is_flat(job);
  if (job->flat) {
    dn_parallel_range(n, 1, run_range, job);
    return DN_OK;
  }
  /* views[0] is the output, then the inputs, all in the output's shape */
  dn_tensor *views[4] = {NULL, NULL, NULL, NULL};
  int count = job->nin + 1;
  dn_status st = DN_OK;
  for (int k = 0; k < count && !st; k++) {   /* private walking views */
    const dn_tensor *t = k == 0 ? job->out : job->in[k - 1];
    st = dn_expand_alias(&views[k], (dn_tensor *)t, job->out->ndim, job->out->shape);
  }
  if (!st) {
    coalesce_dims(views, count);
    dn_ew_job rows = *job;
    rows.out = views[0];
    for (int k = 0; k < job->nin; k++) rows.in[k] = views[k + 1];
    dn_parallel_range(n, 1, run_range, &rows);
  }
  for (int k = 0; k < count; k++) dn_tensor_release(views[k]);
  return st;
}


dn_status dn_ew_run_grad(dn_tensor **out, dn_segment_fn segment, unsigned rule, const dn_tensor *grad,
                         const dn_tensor *x, const dn_tensor *y, double lo, double hi) {
  dn_status st = dn_tensor_new(out, DN_F32, grad->ndim, grad->shape);
  if (st) return st;
  st = dn_ew_run(&(dn_ew_job){.segment = segment, .op = rule, .lo = lo, .hi = hi, .out = *out,
                              .in = {grad, x, y}, .nin = y ? 3 : 2});
  if (st) {
    dn_tensor_release(*out);
    *out = NULL;
  }
  return st;
}
