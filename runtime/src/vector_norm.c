/*
** Vector p-norms (torch.linalg.vector_norm) of all elements or over one
** dim, forward and backward:
**
**   p = 0    the count of non-zero elements (a NaN counts); no gradient
**   p = 1    sum |x|
**   p = 2    sqrt(sum x^2)
**   p = inf  max |x| (NaN if any element is NaN)
**   other p  (sum |x|^p)^(1/p), computed as m (sum (|x| / m)^p)^(1/p) with
**            m = max |x|, so no term overflows or underflows.
**
** Sums accumulate in double. x^2 of any float32 is at most 1.2e77 and a
** tensor has at most 2^40 elements, so p = 2 can neither overflow nor lose
** small values before the final rounding to float32: the norm of [1e30,
** 1e30] is 1.41e30 (PyTorch 1.13 sums in float32 and gives inf).
**
** Determinism: the input is read contiguous as [outer, size, inner], size
** the reduced dim ([1, numel, 1] for all elements). When inner is 1 a
** result's elements (its lane) are reduced in blocks of BLOCK with fixed
** boundaries, eight interleaved double accumulators per block, the blocks
** combined left to right; when inner > 1 each result (a column) adds its
** rows in order. Threads only decide who does which lane, block or column,
** so the bits never depend on the thread count.
**
** Gradients follow PyTorch 1.13 (norm_backward): p = 1 gives sign(x) g;
** p = 2 x g / norm, 0 where the norm is 0; inf shares g evenly among the
** elements whose |x| equals the norm (NaNs included), with their sign;
** other p sign(x) (|x| / norm)^(p-1) g, 0 where x or the norm is 0 (the
** same as PyTorch's x |x|^(p-2) g / norm^(p-1), without its overflow).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dropnet/reduce.h"
#include "graph.h"
#include "internal.h"

/* Elements per block of a lane. Fixed: block boundaries must not depend on threads. */
#define BLOCK 4096
/* Columns per work item of the column path, at least and at most. */
#define COLUMN_MIN_SPLIT 256
#define COLUMN_CHUNK 8192

/* The norms by how they are computed. */
typedef enum norm_class { P_ZERO, P_ONE, P_TWO, P_INF, P_OTHER } norm_class;

static norm_class class_of(double p) {
  if (p == 0) return P_ZERO;
  if (p == 1) return P_ONE;
  if (p == 2) return P_TWO;
  if (isinf(p)) return P_INF;
  return P_OTHER;
}

/* --- forward: passes over the input ---------------------------------------------- */

/* What a pass accumulates per result: a count of non-zeros, a sum of |x|, of
   x^2, of (|x| / scale)^p, or the max of |x|. */
typedef enum pass_kind { K_COUNT, K_ABS, K_SQUARE, K_POWER, K_MAX } pass_kind;

typedef struct norm_pass {
  pass_kind kind;
  double p;
  const float *x;         /* [outer, size, inner], contiguous */
  int64_t outer, size, inner;
  const double *scale;    /* K_POWER: per result, a positive finite max |x| (1 where there is none) */
  double *acc;            /* per result [outer * inner]: what the pass accumulated */
  double *parts;          /* few long lanes: one partial per block of the lane being reduced */
  int64_t lane;           /* that lane */
  int64_t width, chunks;  /* the column path's work items: chunks of width columns per outer */
} norm_pass;

/* One element's term in a pass. */
static DN_ALWAYS_INLINE double term(pass_kind kind, float v, double p, double scale) {
  switch (kind) {
    case K_COUNT: return v != 0.0f;   /* NaN != 0: counted, as torch.count_nonzero */
    case K_ABS: return fabs((double)v);
    case K_SQUARE: return (double)v * (double)v;
    case K_POWER: return pow(fabs((double)v) / scale, p);
    case K_MAX: return fabs((double)v);
  }
  return 0;
}

/* acc followed by v: a sum, or the max keeping the first NaN. */
static DN_ALWAYS_INLINE double combine(pass_kind kind, double acc, double v) {
  if (kind != K_MAX) return acc + v;
  return (v > acc || v != v) && acc == acc ? v : acc;
}

/* Eight interleaved accumulators: vectorizes without reassociating, so the
   result is fixed by the code. Called with a constant kind. */
static DN_ALWAYS_INLINE double block_terms(pass_kind kind, const float *x, int64_t n, double p, double scale) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) acc[l] = combine(kind, acc[l], term(kind, x[i + l], p, scale));
  for (int l = 0; i < n; i++, l++) acc[l] = combine(kind, acc[l], term(kind, x[i], p, scale));
  double a = combine(kind, combine(kind, acc[0], acc[1]), combine(kind, acc[2], acc[3]));
  double b = combine(kind, combine(kind, acc[4], acc[5]), combine(kind, acc[6], acc[7]));
  return combine(kind, a, b);
}

/* One block of a lane: n <= BLOCK elements from x. */
static double block_reduce(pass_kind kind, const float *x, int64_t n, double p, double scale) {
  switch (kind) {
    case K_COUNT: return block_terms(K_COUNT, x, n, p, scale);
    case K_ABS: return block_terms(K_ABS, x, n, p, scale);
    case K_SQUARE: return block_terms(K_SQUARE, x, n, p, scale);
    case K_POWER: return block_terms(K_POWER, x, n, p, scale);
    case K_MAX: return block_terms(K_MAX, x, n, p, scale);
  }
  return 0;
}

static int64_t blocks_of(int64_t n) { return (n + BLOCK - 1) / BLOCK; }

/* Block b of lane o. */
static double lane_block(const norm_pass *w, int64_t o, int64_t b) {
  int64_t start = b * BLOCK, n = w->size - start < BLOCK ? w->size - start : BLOCK;
  return block_reduce(w->kind, w->x + o * w->size + start, n, w->p, w->scale ? w->scale[o] : 1.0);
}

/* Whole lanes [o0, o1) (inner == 1), blocks in order. */
static void lanes_range(const void *ctx, int64_t o0, int64_t o1) {
  const norm_pass *w = ctx;
  for (int64_t o = o0; o < o1; o++) {
    double acc = 0;
    for (int64_t b = 0; b < blocks_of(w->size); b++) acc = combine(w->kind, acc, lane_block(w, o, b));
    w->acc[o] = acc;
  }
}

/* Blocks [b0, b1) of lane w->lane into w->parts. */
static void lane_blocks_range(const void *ctx, int64_t b0, int64_t b1) {
  const norm_pass *w = ctx;
  for (int64_t b = b0; b < b1; b++) w->parts[b] = lane_block(w, w->lane, b);
}

/* Columns [c0, c0 + n) of outer position o (inner > 1): each adds its rows in order. */
static void column_chunk(const norm_pass *w, int64_t o, int64_t c0, int64_t n) {
  double *acc = w->acc + o * w->inner + c0;
  const double *scale = w->scale ? w->scale + o * w->inner + c0 : NULL;
  for (int64_t c = 0; c < n; c++) acc[c] = 0;
  for (int64_t s = 0; s < w->size; s++) {
    const float *row = w->x + (o * w->size + s) * w->inner + c0;
    switch (w->kind) {
      case K_COUNT:
        for (int64_t c = 0; c < n; c++) acc[c] += row[c] != 0.0f;
        break;
      case K_ABS:
        for (int64_t c = 0; c < n; c++) acc[c] += fabs((double)row[c]);
        break;
      case K_SQUARE:
        for (int64_t c = 0; c < n; c++) acc[c] += (double)row[c] * (double)row[c];
        break;
      case K_POWER:
        for (int64_t c = 0; c < n; c++) acc[c] += pow(fabs((double)row[c]) / scale[c], w->p);
        break;
      case K_MAX:
        for (int64_t c = 0; c < n; c++) acc[c] = combine(K_MAX, acc[c], fabs((double)row[c]));
        break;
    }
  }
}

static void columns_range(const void *ctx, int64_t i0, int64_t i1) {
  const norm_pass *w = ctx;
  for (int64_t item = i0; item < i1; item++) {
    int64_t o = item / w->chunks, c0 = (item % w->chunks) * w->width;
    column_chunk(w, o, c0, w->inner - c0 < w->width ? w->inner - c0 : w->width);
  }
}

/* w->acc for every result: the arithmetic is fixed by the shape, the split by the thread count. */
static dn_status run_pass(norm_pass *w) {
  int threads = dn_threads_for(w->outer * w->size * w->inner);
  if (w->inner > 1) {
    int64_t width = (w->inner + threads - 1) / threads;
    if (width < COLUMN_MIN_SPLIT) width = COLUMN_MIN_SPLIT;
    if (width > COLUMN_CHUNK) width = COLUMN_CHUNK;
    w->width = width;
    w->chunks = (w->inner + width - 1) / width;
    dn_parallel_split(w->outer * w->chunks, 1, threads, columns_range, w);
    return DN_OK;
  }
  int64_t blocks = blocks_of(w->size);
  if (threads <= 1 || w->outer >= threads || blocks < 2) {
    dn_parallel_split(w->outer, 1, threads, lanes_range, w);   /* one decision per pass (solo_trial.c) */
    return DN_OK;
  }
  /* few long lanes: the blocks of each in parallel, combined in order */
  w->parts = malloc((size_t)blocks * sizeof *w->parts);
  if (!w->parts) return dn_fail(DN_ENOMEM, "norm: out of memory");
  for (w->lane = 0; w->lane < w->outer; w->lane++) {
    dn_parallel_split(blocks, 1, threads, lane_blocks_range, w);
    double acc = 0;
    for (int64_t b = 0; b < blocks; b++) acc = combine(w->kind, acc, w->parts[b]);
    w->acc[w->lane] = acc;
  }
  free(w->parts);
  w->parts = NULL;
  return DN_OK;
}

/*
** The norms of x ([outer, size, inner], contiguous) into values [outer *
** inner]. Other p: the max of each result first, then the scaled sum.
*/
static dn_status norms(float *values, const float *x, int64_t outer, int64_t size, int64_t inner, double p) {
  int64_t count = outer * inner;
  norm_class cls = class_of(p);
  static const pass_kind first_pass[] = {
    [P_ZERO] = K_COUNT, [P_ONE] = K_ABS, [P_TWO] = K_SQUARE, [P_INF] = K_MAX, [P_OTHER] = K_MAX};
  /* acc, and for other p the scales and the sums after it */
  double *acc = malloc((size_t)(cls == P_OTHER ? 3 : 1) * (size_t)count * sizeof *acc);
  if (!acc) return dn_fail(DN_ENOMEM, "norm: out of memory");
  norm_pass w = {.kind = first_pass[cls], .p = p, .x = x, .outer = outer, .size = size, .inner = inner, .acc = acc};
  dn_status st = run_pass(&w);
  double *scale = acc + count, *sums = acc + 2 * count;
  if (!st && cls == P_OTHER) {
    /* acc holds each max: the scale where it is positive and finite */
    for (int64_t j = 0; j < count; j++) scale[j] = acc[j] > 0 && isfinite(acc[j]) ? acc[j] : 1.0;
    norm_pass sum = w;
    sum.kind = K_POWER;
    sum.scale = scale;
    sum.acc = sums;
    st = run_pass(&sum);
  }
  for (int64_t j = 0; j < count && !st; j++) {
    double v = acc[j];
    switch (cls) {
      case P_ZERO: case P_ONE: case P_INF: break;
      case P_TWO: v = sqrt(v); break;
      case P_OTHER:
        /* 0, inf and NaN maxima are the norm itself */
        if (v > 0 && isfinite(v)) v *= pow(sums[j], 1.0 / p);
        break;
    }
    values[j] = (float)v;
  }
  free(acc);
  return st;
}

/* --- backward ------------------------------------------------------------------- */

/* node->ints, scalars and saved slots of a norm node. */
enum { NORM_DIM };        /* the reduced dim, -1 for all elements */
enum { NORM_P };
enum { SAVED_INPUT, SAVED_RESULT };

typedef struct norm_grad {
  norm_class cls;
  double p;
  const float *x;         /* [outer, size, inner] */
  const float *norm;      /* [outer * inner] */
  const float *grad;      /* [outer * inner] */
  int64_t *ties;          /* P_INF: per result, the elements that share its gradient */
  int64_t size, inner;
  float *dx;              /* [outer, size, inner] */
} norm_grad;

static double sign_of(double x) { return x > 0 ? 1.0 : x < 0 ? -1.0 : x; }   /* keeps 0 and NaN */

/* Elements [e0, e1) of dx, each on its own. */
static void grad_range(const void *ctx, int64_t e0, int64_t e1) {
  const norm_grad *w = ctx;
  int64_t lane = w->size * w->inner;
  for (int64_t e = e0; e < e1; e++) {
    int64_t j = e / lane * w->inner + e % w->inner;
    double x = w->x[e], norm = w->norm[j], g = w->grad[j], d = 0;
    switch (w->cls) {
      case P_ZERO: break;
      case P_ONE: d = sign_of(x) * g; break;
      case P_TWO: d = norm == 0 ? 0.0 : x / norm * g; break;
      case P_INF:
        if (fabs(x) == norm || isnan(x)) d = sign_of(x) * (g / (double)w->ties[j]);
        break;
      case P_OTHER:
        if (x != 0 && norm != 0) d = sign_of(x) * pow(fabs(x) / norm, w->p - 1) * g;
        break;
    }
    w->dx[e] = (float)d;
  }
}

/* Tie counts of outer positions [o0, o1): the elements of each result with |x| == norm or NaN. */
static void ties_range(const void *ctx, int64_t o0, int64_t o1) {
  const norm_grad *w = ctx;
  for (int64_t o = o0; o < o1; o++) {
    int64_t *t = w->ties + o * w->inner;
    const float *norm = w->norm + o * w->inner;
    for (int64_t i = 0; i < w->inner; i++) t[i] = 0;
    for (int64_t s = 0; s < w->size; s++) {
      const float *row = w->x + (o * w->size + s) * w->inner;
      for (int64_t i = 0; i < w->inner; i++) t[i] += fabsf(row[i]) == norm[i] || isnan(row[i]);
    }
  }
}

static dn_status norm_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  double p = node->scalars[NORM_P];
  norm_class cls = class_of(p);
  if (!node->needs_grad[0] || cls == P_ZERO) return DN_OK;   /* p = 0: no gradient, as in PyTorch */
  int64_t dim = node->ints[NORM_DIM], outer = 1, size = 1, inner = 1;
  for (int d = 0; d < node->in_ndim[0]; d++) {
    int64_t extent = node->in_shape[0][d];
    if (dim < 0 || d == dim) size *= extent;
    else if (d < dim) outer *= extent;
    else inner *= extent;
  }
  dn_tensor *saved_x, *saved_norm, *x = NULL, *g = NULL, *dx = NULL;
  int64_t *ties = NULL;
  dn_status st = dn_node_saved(node, SAVED_INPUT, &saved_x);
  if (!st) st = dn_node_saved(node, SAVED_RESULT, &saved_norm);   /* contiguous: made by the forward */
  if (!st) st = dn_tensor_new(&dx, DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (st || outer * size * inner == 0) goto done;
  if ((st = dn_plain_contiguous(&x, saved_x)) || (st = dn_plain_contiguous(&g, grad))) goto done;
  norm_grad w = {cls, p, dn_tensor_data(x), dn_tensor_data(saved_norm), dn_tensor_data(g), NULL, size, inner,
                 dn_tensor_data(dx)};
  if (cls == P_INF) {
    ties = malloc((size_t)(outer * inner) * sizeof *ties);
    if (!ties) {
      st = dn_fail(DN_ENOMEM, "norm backward: out of memory");
      goto done;
    }
    w.ties = ties;
    dn_parallel_rows(outer, size * inner, ties_range, &w);
  }
  dn_parallel_range(outer * size * inner, 1, grad_range, &w);
done:
  free(ties);
  dn_tensor_release(x);
  dn_tensor_release(g);
  if (st) dn_tensor_release(dx);
  else grad_in[0] = dx;
  return st;
}
static const dn_node_type norm_node = {.name = "norm", .backward = norm_backward};

/* --- the ops ---------------------------------------------------------------------- */

/* dim < 0 after wrapping: all elements. */
static dn_status vector_norm(dn_tensor **out, const dn_tensor *a, double p, bool all, int dim, bool keepdim) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  char sb[128];
  dn_status st = dn_check_float("norm", "input", a);
  if (st) return st;
  if (!(p >= 0))
    return dn_fail(DN_EINVAL, "norm: p must be >= 0 (0, 1, 2, ..., or inf for the max) (got %g)", p);
  int d = -1;
  if (!all) {
    d = a->ndim == 0 && dim == -1 ? 0 : dim;   /* a 0-dim tensor accepts dim 0 and -1, as in PyTorch */
    if (!dn_wrap_dim(&d, a->ndim))
      return dn_fail(DN_EINVAL, "norm: dim %d out of range for a %d-D tensor of shape %s", dim, a->ndim,
                     dn_shape_str(a, sb, sizeof sb));
  }
  /* the result: dim removed (kept as 1 with keepdim; a 0-dim input stays 0-dim) */
  int64_t shape[DN_MAX_DIMS], outer = 1, size = 1, inner = 1;
  int ndim = 0;
  for (int k = 0; k < a->ndim; k++) {
    if (all || k == d) size *= a->shape[k];
    else if (k < d) outer *= a->shape[k];
    else inner *= a->shape[k];
    if (!all && k != d) shape[ndim++] = a->shape[k];
    else if (!all && keepdim) shape[ndim++] = 1;
  }
  dn_tensor *x = NULL, *result = NULL;
  st = dn_tensor_new(&result, DN_F32, ndim, shape);
  if (!st && outer * inner > 0) {
    st = dn_plain_contiguous(&x, a);
    if (!st) st = norms(dn_tensor_data(result), dn_tensor_data(x), outer, size, inner, p);
  }
  dn_tensor_release(x);
  dn_node *node = NULL;
  if (!st) st = dn_record(result, &norm_node, 1, &a, &node);
  if (!st && node) {
    node->ints[NORM_DIM] = d;
    node->scalars[NORM_P] = p;
    if (class_of(p) != P_ZERO) {
      st = dn_node_save(node, SAVED_INPUT, a);
      if (!st) st = dn_node_save(node, SAVED_RESULT, result);
    }
  }
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  *out = result;
  return DN_OK;
}

dn_status dn_vector_norm_all(dn_tensor **out, const dn_tensor *a, double p) {
  return vector_norm(out, a, p, true, 0, false);
}

dn_status dn_vector_norm_dim(dn_tensor **out, const dn_tensor *a, double p, int dim, bool keepdim) {
  return vector_norm(out, a, p, false, dim, keepdim);
}
