/*
** Scans along one dim: cumsum, forward and backward.
**
** The input is read contiguous as [outer, size, inner] (size: the dim).
** Each result column (o, i) adds its elements in order, float32 in a
** double accumulator (rounded to float32 at each output, as PyTorch's CPU
** kernel does), int32 and uint8 in int64 giving int32 (PyTorch gives int64,
** dropnet has none: a sum outside int32 is an error). Work items are whole
** columns, so the bits never depend on the thread count; when inner > 1 an
** item walks the rows of up to SCAN_WIDTH adjacent columns, reading memory
** in order.
**
** Autograd: the gradient of a cumsum is the reversed cumsum of the
** incoming gradient (dx[s] = sum of g[t] over t >= s), the same kernel
** walking the rows backwards.
*/
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dropnet/reduce.h"
#include "graph.h"
#include "internal.h"

/* Columns per work item when inner > 1 (the accumulators sit on the stack). */
#define SCAN_WIDTH 512

typedef struct scan_job {
  const dn_tensor *x;     /* [outer, size, inner], contiguous */
  dn_tensor *y;           /* float32 or int32, contiguous, x's shape */
  int64_t size, inner, width, chunks;
  bool reverse;
  atomic_bool *overflow;  /* an int32 sum left the range */
} scan_job;

/* Row s of item (o, c0): its first element's position. */
static int64_t row_at(const scan_job *j, int64_t o, int64_t s, int64_t c0) {
  return (o * j->size + s) * j->inner + c0;
}

static void scan_f32(const scan_job *j, int64_t o, int64_t c0, int64_t n) {
  double acc[SCAN_WIDTH];
  const float *x = dn_tensor_data(j->x);
  float *y = dn_tensor_data(j->y);
  for (int64_t c = 0; c < n; c++) acc[c] = 0;
  for (int64_t k = 0; k < j->size; k++) {
    int64_t at = row_at(j, o, j->reverse ? j->size - 1 - k : k, c0);
    for (int64_t c = 0; c < n; c++) {
      acc[c] += (double)x[at + c];
      y[at + c] = (float)acc[c];
    }
  }
}

/* int32 or uint8 in, int32 out. A column that leaves the int32 range raises
   the flag and restarts from 0, so its int64 sum cannot overflow either. */
static void scan_int(const scan_job *j, int64_t o, int64_t c0, int64_t n) {
  int64_t acc[SCAN_WIDTH];
  const int32_t *xi = j->x->dtype == DN_I32 ? dn_tensor_data(j->x) : NULL;
  const uint8_t *xu = dn_tensor_data(j->x);
  int32_t *y = dn_tensor_data(j->y);
  bool overflow = false;
  for (int64_t c = 0; c < n; c++) acc[c] = 0;
  for (int64_t k = 0; k < j->size; k++) {
    int64_t at = row_at(j, o, j->reverse ? j->size - 1 - k : k, c0);
    for (int64_t c = 0; c < n; c++) {
      acc[c] += xi ? xi[at + c] : xu[at + c];
      if (acc[c] > INT32_MAX || acc[c] < INT32_MIN) {
        overflow = true;
        acc[c] = 0;
      }
      y[at + c] = (int32_t)acc[c];
    }
  }
  if (overflow) atomic_store(j->overflow, true);
}

/* Work items [i0, i1): item = o * chunks + chunk. */
static void scan_items(const void *ctx, int64_t i0, int64_t i1) {
  const scan_job *j = ctx;
  for (int64_t item = i0; item < i1; item++) {
    int64_t o = item / j->chunks, c0 = (item % j->chunks) * j->width;
    int64_t n = j->inner - c0 < j->width ? j->inner - c0 : j->width;
    if (j->y->dtype == DN_F32) scan_f32(j, o, c0, n);
    else scan_int(j, o, c0, n);
  }
}

/* y = the cumulative sums of x (both contiguous, one shape) along dim. */
static dn_status scan(const char *op, dn_tensor *y, const dn_tensor *x, int dim, bool reverse) {
  int64_t outer = 1, size = x->ndim ? x->shape[dim] : 1, inner = 1;
  for (int d = 0; d < dim; d++) outer *= x->shape[d];
  for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
  if (dn_tensor_numel(x) == 0) return DN_OK;
  atomic_bool overflow = false;
  int64_t width = inner < SCAN_WIDTH ? inner : SCAN_WIDTH;
  scan_job job = {x, y, size, inner, width, (inner + width - 1) / width, reverse, &overflow};
  dn_parallel_rows(outer * job.chunks, size * width, scan_items, &job);
  if (atomic_load(&overflow)) {
    char sb[128];
    return dn_fail(DN_ERANGE, "%s: a sum overflows int32 (input of shape %s); convert to float32 first", op,
                   dn_shape_str(x, sb, sizeof sb));
  }
  return DN_OK;
}

/* node->ints of a cumsum node. */
enum { SCAN_DIM };

static dn_status cumsum_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  dn_tensor *g, *dx;
  dn_status st = dn_plain_contiguous(&g, grad);
  if (st) return st;
  st = dn_tensor_new(&dx, DN_F32, g->ndim, g->shape);
  if (!st) st = scan("cumsum backward", dx, g, (int)node->ints[SCAN_DIM], true);
  dn_tensor_release(g);
  if (st) {
    dn_tensor_release(dx);
    return st;
  }
  grad_in[0] = dx;
  return DN_OK;
}
static const dn_node_type cumsum_node = {.name = "cumsum", .backward = cumsum_backward};

dn_status dn_cumsum(dn_tensor **out, const dn_tensor *a, int dim) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  char sb[128];
  int d = a->ndim == 0 && dim == -1 ? 0 : dim;   /* a 0-dim tensor accepts dim 0 and -1, as in PyTorch */
  if (!dn_wrap_dim(&d, a->ndim))
    return dn_fail(DN_EINVAL, "cumsum: dim %d out of range for a %d-D tensor of shape %s", dim, a->ndim,
                   dn_shape_str(a, sb, sizeof sb));
  dn_tensor *x = NULL, *result = NULL;
  dn_status st = dn_plain_contiguous(&x, a);
  if (!st) st = dn_tensor_new(&result, a->dtype == DN_F32 ? DN_F32 : DN_I32, a->ndim, a->shape);
  if (!st) st = scan("cumsum", result, x, d, false);
  dn_tensor_release(x);
  dn_node *node = NULL;
  if (!st) st = dn_record(result, &cumsum_node, 1, &a, &node);
  if (node) node->ints[SCAN_DIM] = d;
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  *out = result;
  return DN_OK;
}
