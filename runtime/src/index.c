/*
** Index ops: index_select (gathering the rows of a batch), one_hot, and
** PyTorch's gather and scatter_add along a dim.
** Every index value is checked before anything is allocated or written, so
** a bad index leaves no half-filled result behind. Positions in messages
** count from `base`, like the index values themselves.
**
** Autograd: index_select and gather record a node (their backward
** scatter-adds the gradient back), scatter_add one whose backward gathers
** src's gradient; one_hot takes int32 indices and records nothing.
*/
#include <stdio.h>
#include <string.h>

#include "dropnet/index.h"
#include "graph.h"
#include "internal.h"

/* DN_ERANGE naming the first value of index (int32, any shape) outside [base, base + size - 1]. The range
   is written closed, in the caller's base: a Lua user reads "[1, 3]" as the valid 1-based indices. */
static dn_status check_indices(const char *op, const dn_tensor *index, int64_t base, int64_t size,
                               const char *what) {
  int64_t rows = dn_row_count(index), len = dn_row_length(index), stride = dn_row_stride(index);
  /* size comes from the user (one_hot's num_classes may be 2^63 - 1): base + size - 1 can overflow, v - base
     cannot; size >= 1 wherever last is printed */
  int64_t last = size - 1 > INT64_MAX - base ? INT64_MAX : base + (size - 1);
  for (int64_t r = 0; r < rows; r++) {
    const int32_t *row = DN_I32_AT(index, dn_row_offset(index, r));
    for (int64_t i = 0; i < len; i++) {
      int64_t v = row[i * stride];
      if (v < base || v - base >= size) {
        if (size == 0)
          return dn_fail(DN_ERANGE, "%s: index %lld at position %lld is out of range (no valid index) %s 0", op,
                         (long long)v, (long long)(r * len + i + base), what);
        return dn_fail(DN_ERANGE, "%s: index %lld at position %lld is out of range [%lld, %lld] %s %lld", op,
                       (long long)v, (long long)(r * len + i + base), (long long)base, (long long)last, what,
                       (long long)size);
      }
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
static const dn_node_type index_select_node = {.name = "index_select", .backward = index_select_backward};

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

/* --- gather and scatter_add ------------------------------------------------------ */

/*
** PyTorch's gather and scatter_add over `dim`. index has the input's ndim
** and may be smaller than it in every dim but `dim`; the element of index at
** coordinates c pairs with
**   gather:       out[c] = a[c with c[dim] = index[c] - base]
**   scatter_add:  a[c with c[dim] = index[c] - base] += src[c]
** Three tensors take part: index, the "box" (out for gather, src for
** scatter_add) walked at index's coordinates, and a, addressed through the
** index values.
**
** The pairs are walked as items: o, the coordinates before dim, and a range
** of columns, the coordinates after dim flattened. An item visits j = 0, 1,
** ... along dim in order and, for each j, its columns. Two pairs address the
** same element of a only with the same o and the same column, so no two
** items touch one element, and each element adds its terms in order of j,
** the row-major order of index: the same sums for any split into items, so
** for any thread count.
*/
typedef enum pair_op { PAIR_GATHER, PAIR_ADD_F32, PAIR_ADD_I32 } pair_op;
enum { P_INDEX, P_BOX, P_A };

typedef struct pair_walk {
  pair_op op;
  size_t esize;                        /* PAIR_GATHER: bytes per element */
  int dim, ndim;                       /* a 0-dim input walks as [1] */
  int64_t shape[DN_MAX_DIMS];          /* index's */
  int64_t stride[3][DN_MAX_DIMS];      /* of index, box and a (a's dim stride steps the index values) */
  int64_t offset[3];
  char *data[3];
  int64_t base;
  int inner_ndim;                      /* dims after dim, merged where all three allow it */
  int64_t inner_shape[DN_MAX_DIMS], inner_stride[3][DN_MAX_DIMS];
  int64_t outer, inner;                /* coordinates before dim, columns after it */
  int64_t width, chunks;               /* columns per item, items per o */
  /* PAIR_ADD_I32 runs on one thread and notes its first overflow here */
  bool overflow;
  int64_t overflow_x, overflow_y;
} pair_walk;

/* One pair: index element at ii, box element at bi, a's element at ai (before the index value). */
static DN_ALWAYS_INLINE void pair_apply(pair_walk *w, int64_t ii, int64_t bi, int64_t ai) {
  int64_t at = ai + ((int64_t)((const int32_t *)w->data[P_INDEX])[ii] - w->base) * w->stride[P_A][w->dim];
  switch (w->op) {
    case PAIR_GATHER:
      if (w->esize == 4) ((uint32_t *)w->data[P_BOX])[bi] = ((const uint32_t *)w->data[P_A])[at];
      else ((uint8_t *)w->data[P_BOX])[bi] = ((const uint8_t *)w->data[P_A])[at];
      break;
    case PAIR_ADD_F32: ((float *)w->data[P_A])[at] += ((const float *)w->data[P_BOX])[bi]; break;
    case PAIR_ADD_I32: {
      int32_t *dst = (int32_t *)w->data[P_A] + at, add = ((const int32_t *)w->data[P_BOX])[bi], sum;
      if (__builtin_add_overflow(*dst, add, &sum) && !w->overflow) {
        w->overflow = true;
        w->overflow_x = *dst;
        w->overflow_y = add;
      }
      *dst = sum;
      break;
    }
  }
}

/* Outer position o, columns [c0, c1). */
static void pair_item(pair_walk *w, int64_t o, int64_t c0, int64_t c1) {
  int64_t start[3];
  for (int k = 0; k < 3; k++) start[k] = w->offset[k];
  for (int d = w->dim - 1; d >= 0; d--) {
    int64_t c = o % w->shape[d];
    o /= w->shape[d];
    for (int k = 0; k < 3; k++) start[k] += c * w->stride[k][d];
  }
  int n = w->inner_ndim;
  for (int64_t j = 0; j < w->shape[w->dim]; j++) {
    int64_t off[3] = {start[P_INDEX] + j * w->stride[P_INDEX][w->dim], start[P_BOX] + j * w->stride[P_BOX][w->dim],
                      start[P_A]};
    if (n <= 1) {   /* one run of columns: the usual case once dims are merged */
      int64_t s[3] = {n ? w->inner_stride[0][0] : 0, n ? w->inner_stride[1][0] : 0, n ? w->inner_stride[2][0] : 0};
      for (int64_t c = c0; c < c1; c++) pair_apply(w, off[0] + c * s[0], off[1] + c * s[1], off[2] + c * s[2]);
      continue;
    }
    /* an odometer over the inner dims, started at column c0 */
    int64_t coord[DN_MAX_DIMS], rest = c0;
    for (int d = n - 1; d >= 0; d--) {
      coord[d] = rest % w->inner_shape[d];
      rest /= w->inner_shape[d];
      for (int k = 0; k < 3; k++) off[k] += coord[d] * w->inner_stride[k][d];
    }
    for (int64_t c = c0; c < c1; c++) {
      pair_apply(w, off[0], off[1], off[2]);
      for (int d = n - 1; d >= 0; d--) {
        for (int k = 0; k < 3; k++) off[k] += w->inner_stride[k][d];
        if (++coord[d] < w->inner_shape[d]) break;
        for (int k = 0; k < 3; k++) off[k] -= coord[d] * w->inner_stride[k][d];
        coord[d] = 0;
      }
    }
  }
}

static void pair_task(void *ctx, int task, int tasks) {
  pair_walk *w = ctx;
  int64_t items = w->outer * w->chunks;
  for (int64_t item = dn_split(items, task, tasks); item < dn_split(items, task + 1, tasks); item++) {
    int64_t o = item / w->chunks, c0 = (item % w->chunks) * w->width;
    pair_item(w, o, c0, w->inner - c0 < w->width ? w->inner : c0 + w->width);
  }
}

/* Narrowest column range worth an item of its own when there are few outer positions. */
#define PAIR_MIN_WIDTH 64

/*
** Walks every pair of index (int32, checked) with box (index's shape) and a
** (indexed along dim). Tensors of any layout; a 0-dim index walks as [1].
*/
static void pair_run(pair_op op, const dn_tensor *index, const dn_tensor *box, const dn_tensor *a, int dim,
                     int64_t base, pair_walk *w) {
  memset(w, 0, sizeof *w);
  w->op = op;
  w->esize = dn_dtype_size(a->dtype);
  w->base = base;
  w->dim = dim;
  w->ndim = index->ndim ? index->ndim : 1;
  const dn_tensor *t[3] = {index, box, a};
  for (int k = 0; k < 3; k++) {
    w->offset[k] = t[k]->offset;
    w->data[k] = t[k]->storage->data;
  }
  for (int d = 0; d < w->ndim; d++) {
    w->shape[d] = index->ndim ? index->shape[d] : 1;
    for (int k = 0; k < 3; k++) w->stride[k][d] = index->ndim ? t[k]->stride[d] : 0;
  }
  int64_t numel = 1;
  for (int d = 0; d < w->ndim; d++) numel *= w->shape[d];
  if (numel == 0) return;
  /* inner dims: size-1 dims dropped, neighbours merged where every tensor steps through both as one */
  w->outer = w->inner = 1;
  for (int d = 0; d < dim; d++) w->outer *= w->shape[d];
  for (int d = dim + 1; d < w->ndim; d++) {
    w->inner *= w->shape[d];
    if (w->shape[d] == 1) continue;
    int m = w->inner_ndim;
    bool merge = m > 0;
    for (int k = 0; k < 3 && merge; k++) merge = w->inner_stride[k][m - 1] == w->stride[k][d] * w->shape[d];
    if (merge) {
      w->inner_shape[m - 1] *= w->shape[d];
      for (int k = 0; k < 3; k++) w->inner_stride[k][m - 1] = w->stride[k][d];
    } else {
      w->inner_shape[m] = w->shape[d];
      for (int k = 0; k < 3; k++) w->inner_stride[k][m] = w->stride[k][d];
      w->inner_ndim++;
    }
  }
  /* int32 sums run on one thread: the overflow they report is then the first in row-major order */
  int threads = op == PAIR_ADD_I32 ? 1 : dn_threads_for(numel);
  w->width = w->inner;
  if (w->outer < threads) {
    w->width = (w->inner + threads - 1) / threads;
    if (w->width < PAIR_MIN_WIDTH) w->width = PAIR_MIN_WIDTH;
    if (w->width > w->inner) w->width = w->inner;
  }
  w->chunks = (w->inner + w->width - 1) / w->width;
  int64_t items = w->outer * w->chunks;
  dn_parallel(items < threads ? (int)items : threads, pair_task, w);
}

void dn_scatter_add_into(dn_tensor *a, int dim, const dn_tensor *index, const dn_tensor *src, int64_t base) {
  pair_walk w;
  pair_run(PAIR_ADD_F32, index, src, a, dim, base, &w);
}

static const char *plural(int n) { return n == 1 ? "" : "s"; }

/*
** The checks gather and scatter_add share: index int32 with a's ndim,
** within a (and src) outside dim, every value in range. *dim is wrapped.
*/
static dn_status check_pairs(const char *op, const dn_tensor *a, int *dim, const dn_tensor *index,
                             const dn_tensor *src, int64_t base) {
  char as[128], is[128], ss[128];
  if (index->dtype != DN_I32)
    return dn_fail(DN_ETYPE, "%s: index must be int32 (got %s)", op, dn_dtype_name(index->dtype));
  if (index->ndim != a->ndim)
    return dn_fail(DN_ESHAPE, "%s: index has %d dim%s, input has %d", op, index->ndim, plural(index->ndim),
                   a->ndim);
  int d = *dim;
  if (!dn_wrap_dim(&d, a->ndim))
    return dn_fail(DN_EINVAL, "%s: dim %d out of range for a %d-D tensor", op, *dim, a->ndim);
  if (src) {
    if (a->dtype != DN_F32 && a->dtype != DN_I32)
      return dn_fail(DN_ETYPE, "%s: input must be float32 or int32 (got %s)", op, dn_dtype_name(a->dtype));
    if (src->dtype != a->dtype)
      return dn_fail(DN_ETYPE, "%s: src is %s, input is %s (they must match)", op, dn_dtype_name(src->dtype),
                     dn_dtype_name(a->dtype));
    if (src->ndim != a->ndim)
      return dn_fail(DN_ESHAPE, "%s: src has %d dim%s, input has %d", op, src->ndim, plural(src->ndim), a->ndim);
  }
  for (int k = 0; k < a->ndim; k++) {
    if (k != d && index->shape[k] > a->shape[k])
      return dn_fail(DN_ESHAPE,
                     "%s: index of shape %s does not fit the input of shape %s (it may be larger only along the "
                     "dim it indexes)",
                     op, dn_shape_str(index, is, sizeof is), dn_shape_str(a, as, sizeof as));
    if (src && index->shape[k] > src->shape[k])
      return dn_fail(DN_ESHAPE, "%s: index of shape %s is larger than src of shape %s", op,
                     dn_shape_str(index, is, sizeof is), dn_shape_str(src, ss, sizeof ss));
  }
  dn_status st = check_indices(op, index, base, a->ndim ? a->shape[d] : 1, "for a dim of size");
  if (st) return st;
  *dim = d;
  return DN_OK;
}

/* A gather or scatter_add node: ints and saved slot. */
enum { PAIRS_DIM, PAIRS_BASE };
enum { SAVED_PAIRS_INDEX };

static dn_status gather_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  dn_tensor *index, *da;
  dn_status st = dn_node_saved(node, SAVED_PAIRS_INDEX, &index);
  if (!st) st = dn_tensor_zeros(&da, DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (st) return st;
  dn_scatter_add_into(da, (int)node->ints[PAIRS_DIM], index, grad, node->ints[PAIRS_BASE]);
  grad_in[0] = da;
  return DN_OK;
}
static const dn_node_type gather_node = {.name = "gather", .backward = gather_backward};

dn_status dn_gather(dn_tensor **out, const dn_tensor *a, int dim, const dn_tensor *index, int64_t base) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_pairs("gather", a, &dim, index, NULL, base);
  if (st) return st;
  dn_tensor *result;
  if ((st = dn_tensor_new(&result, a->dtype, index->ndim, index->shape))) return dn_fail_as(st, "gather");
  pair_walk w;
  pair_run(PAIR_GATHER, index, result, a, dim, base, &w);
  dn_node *node;
  st = dn_record(result, &gather_node, 1, &a, &node);
  if (!st && node) {
    node->ints[PAIRS_DIM] = dim;
    node->ints[PAIRS_BASE] = base;
    st = dn_node_save(node, SAVED_PAIRS_INDEX, index);
  }
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  *out = result;
  return DN_OK;
}

/*
** scatter_add's backward: the input's gradient is grad itself; src's is
** grad gathered at index, in the part of src that index covers (0 in the
** rest, which never reached the result).
*/
static dn_status scatter_add_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (node->needs_grad[0]) grad_in[0] = dn_tensor_retain(grad);
  if (!node->needs_grad[1]) return DN_OK;
  dn_tensor *index, *dsrc, *box;
  dn_status st = dn_node_saved(node, SAVED_PAIRS_INDEX, &index);
  if (!st) st = dn_tensor_zeros(&dsrc, DN_F32, node->in_ndim[1], node->in_shape[1]);
  if (st) return st;
  if ((st = dn_tensor_alias(&box, dsrc, index->ndim, index->shape, dsrc->stride, dsrc->offset))) {
    dn_tensor_release(dsrc);
    return st;
  }
  pair_walk w;
  pair_run(PAIR_GATHER, index, box, grad, (int)node->ints[PAIRS_DIM], node->ints[PAIRS_BASE], &w);
  dn_tensor_release(box);
  grad_in[1] = dsrc;
  return DN_OK;
}
static const dn_node_type scatter_add_node = {.name = "scatter_add", .backward = scatter_add_backward};

/* src's terms added into dst (a's dtype, checked) along dim; nothing changed on an int32 overflow. */
static dn_status scatter_into(const char *op, dn_tensor *dst, int dim, const dn_tensor *index,
                              const dn_tensor *src, int64_t base) {
  pair_walk w;
  if (dst->dtype == DN_F32) {
    pair_run(PAIR_ADD_F32, index, src, dst, dim, base, &w);
    return DN_OK;
  }
  /* int32: summed into a copy first, so an overflow leaves dst as it was */
  dn_tensor *sums;
  dn_status st = dn_plain_clone(&sums, dst);
  if (st) return st;
  pair_run(PAIR_ADD_I32, index, src, sums, dim, base, &w);
  if (w.overflow) {
    char what[96];
    snprintf(what, sizeof what, "%lld + %lld", (long long)w.overflow_x, (long long)w.overflow_y);
    st = dn_fail(DN_ERANGE, "%s: int32 overflow: %s is outside the int32 range (convert to float32 first)", op,
                 what);
  } else {
    st = dn_copy_into_named(op, dst, sums);
  }
  dn_tensor_release(sums);
  return st;
}

dn_status dn_scatter_add(dn_tensor **out, const dn_tensor *a, int dim, const dn_tensor *index, const dn_tensor *src,
                         int64_t base) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_pairs("scatter_add", a, &dim, index, src, base);
  if (st) return st;
  dn_tensor *result;
  if ((st = dn_plain_clone(&result, a))) return st;
  if ((st = scatter_into("scatter_add", result, dim, index, src, base))) {
    dn_tensor_release(result);
    return st;
  }
  dn_node *node;
  st = dn_record(result, &scatter_add_node, 2, (const dn_tensor *[]){a, src}, &node);
  if (!st && node) {
    node->ints[PAIRS_DIM] = dim;
    node->ints[PAIRS_BASE] = base;
    st = dn_node_save(node, SAVED_PAIRS_INDEX, index);
  }
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  *out = result;
  return DN_OK;
}

dn_status dn_scatter_add_(dn_tensor *a, int dim, const dn_tensor *index, const dn_tensor *src, int64_t base) {
  DN_FPMODE_SCOPE();
  const char *op = "scatter_add_";
  dn_status st = dn_check_inplace(op, a);
  if (!st) st = dn_check_inplace_source(op, src);
  if (!st) st = check_pairs(op, a, &dim, index, src, base);
  if (!st) st = dn_check_writable(op, a);
  if (st) return st;
  /* src or index in a's memory would change while being read: read copies */
  dn_tensor *src_copy = NULL, *index_copy = NULL;
  if (src->storage == a->storage && (st = dn_plain_clone(&src_copy, src))) return st;
  if (index->storage == a->storage && (st = dn_plain_clone(&index_copy, index))) {
    dn_tensor_release(src_copy);
    return st;
  }
  st = scatter_into(op, a, dim, index_copy ? index_copy : index, src_copy ? src_copy : src, base);
  if (!st) dn_bump_version(a);
  dn_tensor_release(src_copy);
  dn_tensor_release(index_copy);
  return st;
}
