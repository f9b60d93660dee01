/*
** Index ops: index_select (gathering the rows of a batch) and one_hot.
** Every index value is checked before anything is allocated or written, so
** a bad index leaves no half-filled result behind. Positions in messages
** count from `base`, like the index values themselves.
**
** Autograd: index_select records a node (its backward scatter-adds the
** gradient's rows back); one_hot takes int32 indices and records nothing.
*/
#include <string.h>

#include "dropnet/index.h"
#include "graph.h"
#include "internal.h"

/* DN_ERANGE naming the first value of index (int32, any shape) outside [base, base + size). */
static dn_status check_indices(const char *op, const dn_tensor *index, int64_t base, int64_t size,
                               const char *what) {
  int64_t rows = dn_row_count(index), len = dn_row_length(index), stride = dn_row_stride(index);
  /* size comes from the user (one_hot's num_classes may be 2^63 - 1): base + size can overflow, v - base cannot */
  int64_t end = size > INT64_MAX - base ? INT64_MAX : base + size;
  for (int64_t r = 0; r < rows; r++) {
    const int32_t *row = DN_I32_AT(index, dn_row_offset(index, r));
    for (int64_t i = 0; i < len; i++) {
      int64_t v = row[i * stride];
      if (v < base || v - base >= size)
        return dn_fail(DN_ERANGE, "%s: index %lld at position %lld is out of range [%lld, %lld) %s %lld", op,
                       (long long)v, (long long)(r * len + i + base), (long long)base, (long long)end, what,
                       (long long)size);
    }
  }
  return DN_OK;
}

/*
** Contiguous a, dim not the last: each output block of `inner` elements
** (outer position o, index j) is one memcpy. For dim 0 of [N, F] a block
** is a row.
*/
typedef struct gather_blocks_job {
  void *out;
  const char *src;
  const int32_t *idx;
  int64_t idx_stride, base, size, n;
  size_t block;   /* bytes */
} gather_blocks_job;

static void gather_block_rows(const void *ctx, int64_t r0, int64_t r1) {
  const gather_blocks_job *j = ctx;
  int64_t n = j->n;
  size_t block = j->block;
  for (int64_t r = r0; r < r1; r++) {
    int64_t o = r / n, row = j->idx[(r % n) * j->idx_stride] - j->base;
    memcpy((char *)j->out + (size_t)r * block, j->src + (size_t)(o * j->size + row) * block, block);
  }
}

static void gather_blocks(void *out, const dn_tensor *a, int dim, const dn_tensor *index, int64_t base) {
  int64_t outer = 1, inner = 1, n = index->shape[0];
  for (int d = 0; d < dim; d++) outer *= a->shape[d];
  for (int d = dim + 1; d < a->ndim; d++) inner *= a->shape[d];
  gather_blocks_job job = {out, dn_tensor_data(a), DN_I32_AT(index, index->offset), index->stride[0], base,
                           a->shape[dim], n, (size_t)inner * dn_dtype_size(a->dtype)};
  dn_parallel_rows(outer * n, inner, gather_block_rows, &job);
}

/*
** Any layout: walks the output row by row (rows over the last dim), maps the
** row's coordinates back into a (through the index at `dim`) and copies
** the row element by element, or gathers it when dim is the last dim.
*/
typedef struct gather_strided_job {
  void *out;
  const dn_tensor *a;
  int dim;
  const int32_t *idx;
  int64_t idx_stride, base;
  const int64_t *out_shape;
} gather_strided_job;

static void gather_strided_rows(const void *ctx, int64_t r0, int64_t r1) {
  const gather_strided_job *j = ctx;
  const dn_tensor *a = j->a;
  const int64_t *out_shape = j->out_shape;
  const int32_t *idx = j->idx;
  void *out = j->out;
  int dim = j->dim, last = a->ndim - 1;
  int64_t len = out_shape[last], idx_stride = j->idx_stride, base = j->base, step = a->stride[last];
  size_t esize = dn_dtype_size(a->dtype);
  for (int64_t r = r0; r < r1; r++) {
    int64_t off = a->offset, rest = r;
    for (int d = last - 1; d >= 0; d--) {
      int64_t coord = rest % out_shape[d];
      rest /= out_shape[d];
      if (d == dim) coord = idx[coord * idx_stride] - base;
      off += coord * a->stride[d];
    }
    for (int64_t i = 0; i < len; i++) {
      int64_t src = off + (dim == last ? idx[i * idx_stride] - base : i) * step;
      if (esize == 4) ((uint32_t *)out)[r * len + i] = ((const uint32_t *)a->storage->data)[src];
      else ((uint8_t *)out)[r * len + i] = ((const uint8_t *)a->storage->data)[src];
    }
  }
}

static void gather_strided(void *out, const dn_tensor *a, int dim, const dn_tensor *index, int64_t base,
                           const int64_t *out_shape) {
  int last = a->ndim - 1;
  int64_t rows = 1;
  for (int d = 0; d < last; d++) rows *= out_shape[d];
  gather_strided_job job = {out, a, dim, DN_I32_AT(index, index->offset), index->stride[0], base, out_shape};
  dn_parallel_rows(rows, out_shape[last], gather_strided_rows, &job);
}

/*
** The gradient of a gather: da[o, index[j], i] += grad[o, j, i] over a
** seen as [outer, size, inner] (size: dim) and grad as [outer, n, inner].
** A repeated index adds up. Work is split over (o, column range) items and
** each element adds its rows in index order, so the sums are the same for
** any split and thread count.
*/
typedef struct scatter_add {
  float *da;            /* [outer, size, inner], contiguous */
  const float *grad;    /* [outer, n, inner], contiguous */
  const int32_t *index;
  int64_t index_stride, base;
  int64_t outer, size, inner, n;
} scatter_add;

/* Columns [c0, c0 + width) of outer position o: zero them, then add the rows. */
static void scatter_add_item(const scatter_add *w, int64_t o, int64_t c0, int64_t width) {
  float *da = w->da + o * w->size * w->inner + c0;
  const float *g = w->grad + o * w->n * w->inner + c0;
  for (int64_t s = 0; s < w->size; s++) memset(da + s * w->inner, 0, (size_t)width * sizeof *da);
  for (int64_t j = 0; j < w->n; j++) {
    float *dst = da + (w->index[j * w->index_stride] - w->base) * w->inner;
    const float *src = g + j * w->inner;
    for (int64_t i = 0; i < width; i++) dst[i] += src[i];
  }
}

/* Narrowest column range worth a work item of its own. */
#define SCATTER_MIN_WIDTH 64

typedef struct scatter_add_job {
  const scatter_add *w;
  int64_t width, chunks, items;
} scatter_add_job;

/* Items [t*items/tasks, (t+1)*items/tasks), each on its own columns. */
static void scatter_add_task(void *ctx, int task, int tasks) {
  const scatter_add_job *j = ctx;
  const scatter_add *w = j->w;
  int64_t width = j->width, chunks = j->chunks;
  for (int64_t item = dn_split(j->items, task, tasks); item < dn_split(j->items, task + 1, tasks); item++) {
    int64_t o = item / chunks, c0 = (item % chunks) * width;
    scatter_add_item(w, o, c0, w->inner - c0 < width ? w->inner - c0 : width);
  }
}

static void scatter_add_run(const scatter_add *w) {
  int64_t work = w->outer * (w->size + w->n) * w->inner;
  int threads = dn_threads_for(work);
  /* enough outer positions: whole ones per item; else split the columns */
  int64_t width = w->inner;
  if (w->outer < threads) {
    width = (w->inner + threads - 1) / threads;
    if (width < SCATTER_MIN_WIDTH) width = SCATTER_MIN_WIDTH;
    if (width > w->inner) width = w->inner;
  }
  int64_t chunks = (w->inner + width - 1) / width, items = w->outer * chunks;
  /* dn_parallel, not dn_parallel_rows: the width above was cut for this thread count */
  scatter_add_job job = {w, width, chunks, items};
  dn_parallel(items < threads ? (int)items : threads, scatter_add_task, &job);
}

/* An index_select node: ints and saved slot. */
enum { INDEX_DIM, INDEX_BASE };
enum { SAVED_INDEX };

static dn_status index_select_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  int dim = (int)node->ints[INDEX_DIM], ndim = node->in_ndim[0];
  const int64_t *shape = node->in_shape[0];
  dn_tensor *index, *g, *da;
  dn_status st = dn_node_saved(node, SAVED_INDEX, &index);
  if (st) return st;
  if ((st = dn_tensor_new(&da, DN_F32, ndim, shape))) return st;
  if ((st = dn_contiguous(&g, grad))) {
    dn_tensor_release(da);
    return st;
  }
  scatter_add w = {.da = dn_tensor_data(da),
                   .grad = dn_tensor_data(g),
                   .index = DN_I32_AT(index, index->offset),
                   .index_stride = index->stride[0],
                   .base = node->ints[INDEX_BASE],
                   .outer = 1,
                   .size = shape[dim],
                   .inner = 1,
                   .n = index->shape[0]};
  for (int d = 0; d < dim; d++) w.outer *= shape[d];
  for (int d = dim + 1; d < ndim; d++) w.inner *= shape[d];
  if (w.outer * w.size * w.inner > 0) scatter_add_run(&w);
  dn_tensor_release(g);
  grad_in[0] = da;
  return DN_OK;
}
static const dn_node_type index_select_node = {"index_select", index_select_backward};

dn_status dn_index_select(dn_tensor **out, const dn_tensor *a, int dim, const dn_tensor *index, int64_t base) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  char sb[128];
  if (index->dtype != DN_I32)
    return dn_fail(DN_ETYPE, "index_select: index must be int32 (got %s)", dn_dtype_name(index->dtype));
  if (index->ndim != 1)
    return dn_fail(DN_ESHAPE, "index_select: index must be 1-D (got shape %s)", dn_shape_str(index, sb, sizeof sb));
  int d = dim;
  if (a->ndim == 0 || !dn_wrap_dim(&d, a->ndim))
    return dn_fail(DN_EINVAL, "index_select: dim %d out of range for a %d-D tensor", dim, a->ndim);
  dn_status st = check_indices("index_select", index, base, a->shape[d], "for a dim of size");
  if (st) return st;

  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, a->shape, sizeof shape);
  shape[d] = index->shape[0];
  dn_tensor *result;
  st = dn_tensor_new(&result, a->dtype, a->ndim, shape);
  if (st) return st;
  if (dn_tensor_numel(result) > 0) {
    if (dn_tensor_is_contiguous(a) && d < a->ndim - 1)
      gather_blocks(dn_tensor_data(result), a, d, index, base);
    else
      gather_strided(dn_tensor_data(result), a, d, index, base, shape);
  }
  dn_node *node;
  st = dn_record(result, &index_select_node, 1, &a, &node);
  if (!st && node) {
    node->ints[INDEX_DIM] = d;
    node->ints[INDEX_BASE] = base;
    st = dn_node_save(node, SAVED_INDEX, index);
  }
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  *out = result;
  return DN_OK;
}

typedef struct one_hot_job {
  float *dst;
  const dn_tensor *index;
  bool contiguous;
  int64_t num_classes, base;
} one_hot_job;

static void one_hot_rows(const void *ctx, int64_t i0, int64_t i1) {
  const one_hot_job *j = ctx;
  const dn_tensor *index = j->index;
  const int32_t *idx = index->storage->data;
  int64_t num_classes = j->num_classes, base = j->base;
  for (int64_t i = i0; i < i1; i++) {
    float *row = j->dst + i * num_classes;
    int64_t v = idx[j->contiguous ? index->offset + i : dn_offset_of(index, i)];
    memset(row, 0, (size_t)num_classes * sizeof *row);
    row[v - base] = 1.0f;
  }
}

dn_status dn_one_hot(dn_tensor **out, const dn_tensor *index, int64_t num_classes, int64_t base) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  if (index->dtype != DN_I32)
    return dn_fail(DN_ETYPE, "one_hot: index must be int32 (got %s)", dn_dtype_name(index->dtype));
  if (num_classes < 1)
    return dn_fail(DN_EINVAL, "one_hot: num_classes must be >= 1 (got %lld)", (long long)num_classes);
  if (index->ndim >= DN_MAX_DIMS)
    return dn_fail(DN_EINVAL, "one_hot: index has %d dims; the result would have more than %d", index->ndim,
                   DN_MAX_DIMS);
  dn_status st = check_indices("one_hot", index, base, num_classes, "for num_classes");
  if (st) return st;

  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, index->shape, sizeof shape);
  shape[index->ndim] = num_classes;
  dn_tensor *result;
  st = dn_tensor_new(&result, DN_F32, index->ndim + 1, shape);
  if (st) return st;
  one_hot_job job = {dn_tensor_data(result), index, dn_tensor_is_contiguous(index), num_classes, base};
  dn_parallel_rows(dn_tensor_numel(index), num_classes, one_hot_rows, &job);
  *out = result;
  return DN_OK;
}
