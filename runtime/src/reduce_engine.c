/*
** The reduction engine under reduce.c's ops: how a sum, moments or an
** extremum are computed, forward and (lane means) backward.
**
** Determinism: the arithmetic of a result depends only on the shape and the
** layout of the input, never on the thread count. Elements are taken in
** blocks of BLOCK whose boundaries are fixed; a block gives a "partial" (a
** double sum, an int64 sum, moments, or an extremum and its position) and
** partials are combined left to right. Threads only decide who computes
** which block or which output element.
**
** Paths:
**   - spans: a sequence of elements (the whole tensor, or one lane along the
**     reduced dim). Dense float32/int32 blocks are read in place, other
**     layouts are gathered into a stack buffer. Positions (for argmax) are
**     logical row-major; all-element sums and moments walk storage order.
**   - columns: float32 where the kept dims end in one unit-stride run (dim 0
**     of a contiguous matrix, dim 1 of a transposed one). Rows are
**     accumulated into a double buffer as wide as the run, which vectorizes
**     and reads memory in order; each column adds its rows in order.
*/
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "reduce_engine.h"

/* Elements per block. Fixed: block boundaries must not depend on threads. */
#define BLOCK 4096
/* Columns per work item of the column path (per-task scratch). */
#define COLUMN_CHUNK 8192
/* Narrowest chunk worth its own thread. */
#define COLUMN_MIN_SPLIT 256

static const partial empty_partial = {0, 0.0, 0, false, 0.0, 0.0, 0.0, 0};

/* --- block kernels (contiguous, at most BLOCK elements) ---------------------- */

/* Eight independent double accumulators: vectorizes without reassociating,
   so the result is fixed by the code, not by the compiler's whim. */
static double sum_f32(const float *x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l];
  for (int l = 0; i < n; i++, l++) acc[l] += (double)x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static double squared_deviations_f32(const float *x, int64_t n, double mean) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) {
      double d = (double)x[i + l] - mean;
      acc[l] += d * d;
    }
  for (int l = 0; i < n; i++, l++) {
    double d = (double)x[i] - mean;
    acc[l] += d * d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Integer blocks are at most BLOCK int32 values: no int64 overflow inside. */
static int64_t sum_i32(const int32_t *x, int64_t n) {
  int64_t s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s;
}

static double squared_deviations_i32(const int32_t *x, int64_t n, double mean) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)x[i] - mean;
    s += d * d;
  }
  return s;
}

/* Whether candidate (v at i) beats (b at bi): a NaN beats numbers, then the
   larger (smaller) value, then the earlier position. */
static bool beats(float v, int64_t i, float b, int64_t bi, bool is_max) {
  if (isnan(b)) return isnan(v) && i < bi;
  if (isnan(v)) return true;
  if (v == b) return i < bi;
  return is_max ? v > b : v < b;
}

/* Eight interleaved lanes, each keeping its first extremum, over x[8..n);
   returns where it stopped. Branch free so it vectorizes; a NaN replaces
   anything but an earlier NaN. Called with a constant is_max. */
static inline int64_t scan_lanes_f32(float *best, int32_t *at, const float *x, int64_t n, bool is_max) {
  int64_t i = 8;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) {
      float v = x[i + l], b = best[l];
      bool take = (is_max ? v > b : v < b) | ((v != v) & (b == b));
      best[l] = take ? v : b;
      at[l] = take ? (int32_t)(i + l) : at[l];
    }
  return i;
}

/* First position of the max (or min) of x[0..n), 1 <= n <= BLOCK; the first
   NaN wins. */
static int64_t extremum_at_f32(const float *x, int64_t n, bool is_max) {
  float value = x[0];
  int64_t where = 0, i = 0;
  if (n >= 64) {
    float best[8];
    int32_t at[8];
    for (int l = 0; l < 8; l++) {
      best[l] = x[l];
      at[l] = l;
    }
    i = is_max ? scan_lanes_f32(best, at, x, n, true) : scan_lanes_f32(best, at, x, n, false);
    for (int l = 0; l < 8; l++)
      if (beats(best[l], at[l], value, where, is_max)) {
        value = best[l];
        where = at[l];
      }
  }
  for (; i < n; i++)
    if (beats(x[i], i, value, where, is_max)) {
      value = x[i];
      where = i;
    }
  return where;
}

static int64_t extremum_at_i32(const int32_t *x, int64_t n, bool is_max) {
  int32_t best = x[0];
  int64_t at = 0;
  for (int64_t i = 1; i < n; i++)
    if (is_max ? x[i] > best : x[i] < best) {
      best = x[i];
      at = i;
    }
  return at;
}

/* Reduces one block: n >= 1 values (float32, or int32 for integer dtypes)
   that start at position `first` of their span. */
static void reduce_block(partial *p, reduce_op op, bool is_float, const void *data, int64_t n, int64_t first) {
  const float *xf = data;
  const int32_t *xi = data;
  *p = empty_partial;
  p->count = n;
  switch (op) {
    case RED_SUM:
      if (is_float) p->sum = sum_f32(xf, n);
      else p->isum = sum_i32(xi, n);
      break;
    case RED_MOMENTS:
      /* two passes over a block that sits in L1: accurate for 1e4 + noise */
      if (is_float) {
        p->mean = sum_f32(xf, n) / (double)n;
        p->m2 = squared_deviations_f32(xf, n, p->mean);
      } else {
        p->mean = (double)sum_i32(xi, n) / (double)n;
        p->m2 = squared_deviations_i32(xi, n, p->mean);
      }
      break;
    case RED_MAX:
    case RED_MIN: {
      int64_t at = is_float ? extremum_at_f32(xf, n, op == RED_MAX) : extremum_at_i32(xi, n, op == RED_MAX);
      p->best = is_float ? (double)xf[at] : (double)xi[at];
      p->at = first + at;
      break;
    }
  }
}

/* acc = acc followed by b. */
static void combine(partial *acc, const partial *b, reduce_op op) {
  if (acc->count == 0) {
    *acc = *b;
    return;
  }
  if (b->count == 0) return;
  switch (op) {
    case RED_SUM:
      acc->sum += b->sum;
      if (__builtin_add_overflow(acc->isum, b->isum, &acc->isum)) acc->overflow = true;
      acc->overflow = acc->overflow || b->overflow;
      break;
    case RED_MOMENTS: {
      /* Chan et al.'s pairwise update */
      double na = (double)acc->count, nb = (double)b->count, n = na + nb;
      double delta = b->mean - acc->mean;
      acc->mean += delta * (nb / n);
      acc->m2 += b->m2 + delta * delta * (na * nb / n);
      break;
    }
    case RED_MAX:
    case RED_MIN: {
      bool better = op == RED_MAX ? b->best > acc->best : b->best < acc->best;
      if (!isnan(acc->best) && (isnan(b->best) || better)) {
        acc->best = b->best;
        acc->at = b->at;
      }
      break;
    }
  }
  acc->count += b->count;
}

/* --- spans -------------------------------------------------------------------- */

void dn_span_of_tensor(span *s, const dn_tensor *t) {
  s->t = t;
  s->offset = t->offset;
  s->numel = dn_tensor_numel(t);
  if (t->ndim == 0) {
    s->ndim = 1;
    s->shape[0] = 1;
    s->stride[0] = 1;
  } else {
    s->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) {
      s->shape[d] = t->shape[d];
      s->stride[d] = t->stride[d];
    }
  }
  s->dense = dn_tensor_is_contiguous(t);
}

void dn_span_of_lane(span *s, const dn_tensor *t, int64_t offset, int64_t length, int64_t stride) {
  s->t = t;
  s->ndim = 1;
  s->shape[0] = length;
  s->stride[0] = stride;
  s->offset = offset;
  s->numel = length;
  s->dense = stride == 1 || length <= 1;
}

/*
** Sums and moments do not depend on the order of the elements (up to
** rounding, fixed by the layout): walk them in storage order instead, dims
** sorted by stride and merged where they chain, so a transposed tensor reads
** memory sequentially. Expanded dims (stride 0) go outermost.
*/
void dn_span_to_memory_order(span *s) {
  if (s->numel <= 1 || s->dense) return;
  int n = 0;
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  for (int d = 0; d < s->ndim; d++) {
    if (s->shape[d] == 1) continue;
    uint64_t key = s->stride[d] ? (uint64_t)s->stride[d] : UINT64_MAX;
    int k = n++;
    for (; k > 0 && (stride[k - 1] ? (uint64_t)stride[k - 1] : UINT64_MAX) < key; k--) {
      shape[k] = shape[k - 1];
      stride[k] = stride[k - 1];
    }
    shape[k] = s->shape[d];
    stride[k] = s->stride[d];
  }
  s->ndim = 0;
  for (int d = 0; d < n; d++) {
    int last = s->ndim - 1;
    if (last >= 0 && s->stride[last] == stride[d] * shape[d]) {
      s->shape[last] *= shape[d];
      s->stride[last] = stride[d];
    } else {
      s->shape[s->ndim] = shape[d];
      s->stride[s->ndim] = stride[d];
      s->ndim++;
    }
  }
  s->dense = s->ndim == 1 && s->stride[0] == 1;
}

/* Copies elements [start, start + count) of s into buf: float32 stays
   float32, integer dtypes become int32. */
static void gather(void *buf, const span *s, int64_t start, int64_t count) {
  int64_t idx[DN_MAX_DIMS], off = s->offset, rest = start;
  int last = s->ndim - 1;
  for (int d = last; d >= 0; d--) {
    idx[d] = rest % s->shape[d];
    rest /= s->shape[d];
    off += idx[d] * s->stride[d];
  }
  int64_t done = 0, step = s->stride[last];
  while (done < count) {
    int64_t run = s->shape[last] - idx[last];
    if (run > count - done) run = count - done;
    switch (s->t->dtype) {
      case DN_F32: {
        const float *src = DN_F32_AT(s->t, off);
        float *dst = (float *)buf + done;
        for (int64_t i = 0; i < run; i++) dst[i] = src[i * step];
        break;
      }
      case DN_I32: {
        const int32_t *src = DN_I32_AT(s->t, off);
        int32_t *dst = (int32_t *)buf + done;
        for (int64_t i = 0; i < run; i++) dst[i] = src[i * step];
        break;
      }
      case DN_U8: {
        const uint8_t *src = (const uint8_t *)s->t->storage->data + off;
        int32_t *dst = (int32_t *)buf + done;
        for (int64_t i = 0; i < run; i++) dst[i] = src[i * step];
        break;
      }
    }
    done += run;
    off += run * step;
    idx[last] += run;
    for (int d = last; d > 0 && idx[d] == s->shape[d]; d--) {
      off += s->stride[d - 1] - s->shape[d] * s->stride[d];
      idx[d] = 0;
      idx[d - 1]++;
    }
  }
}

/* Reduces block b of s. */
static void reduce_span_block(partial *p, reduce_op op, const span *s, int64_t b) {
  union {
    float f[BLOCK];
    int32_t i[BLOCK];
  } buf;
  int64_t start = b * BLOCK, n = s->numel - start < BLOCK ? s->numel - start : BLOCK;
  bool is_float = s->t->dtype == DN_F32;
  const void *data;
  if (s->dense && s->t->dtype != DN_U8) {
    data = is_float ? (const void *)DN_F32_AT(s->t, s->offset + start)
                    : (const void *)DN_I32_AT(s->t, s->offset + start);
  } else {
    gather(&buf, s, start, n);
    data = &buf;
  }
  reduce_block(p, op, is_float, data, n, start);
}

void dn_reduce_span_serial(partial *acc, reduce_op op, const span *s) {
  *acc = empty_partial;
  int64_t blocks = (s->numel + BLOCK - 1) / BLOCK;
  for (int64_t b = 0; b < blocks; b++) {
    partial p;
    reduce_span_block(&p, op, s, b);
    combine(acc, &p, op);
  }
}

/* Blocks [b0, b1) of a span, each into its own partial. */
typedef struct span_blocks_job {
  partial *parts;
  reduce_op op;
  const span *s;
} span_blocks_job;

static void reduce_span_blocks(const void *ctx, int64_t b0, int64_t b1) {
  const span_blocks_job *j = ctx;
  for (int64_t b = b0; b < b1; b++) reduce_span_block(&j->parts[b], j->op, j->s, b);
}

/* Blocks in parallel, combined in order afterwards: the same arithmetic as
   reduce_span_serial. */
dn_status dn_reduce_span(partial *acc, reduce_op op, const span *s, int threads, const char *name) {
  int64_t blocks = (s->numel + BLOCK - 1) / BLOCK;
  if (threads <= 1 || blocks < 2) {
    dn_reduce_span_serial(acc, op, s);
    return DN_OK;
  }
  partial *parts = malloc((size_t)blocks * sizeof *parts);
  if (!parts) return dn_fail(DN_ENOMEM, "%s: out of memory", name);
  span_blocks_job job = {parts, op, s};
  dn_parallel_split(blocks, 1, threads, reduce_span_blocks, &job);
  *acc = empty_partial;
  for (int64_t b = 0; b < blocks; b++) combine(acc, &parts[b], op);
  free(parts);
  return DN_OK;
}

/* --- results ------------------------------------------------------------------- */

static double variance_of(double m2, int64_t count, int correction) {
  double dof = (double)count - (double)correction;
  return dof > 0 ? m2 / dof : NAN;
}

/* The value a finished partial stands for; false if an int32 sum overflowed. */
bool dn_reduce_finish(double *value, const partial *p, reduce_kind kind, bool is_float, int correction) {
  switch (kind) {
    case K_SUM:
      if (is_float) {
        *value = p->sum;
        return true;
      }
      *value = (double)p->isum;
      return !p->overflow && p->isum >= INT32_MIN && p->isum <= INT32_MAX;
    case K_MEAN:
      *value = p->count ? (is_float ? p->sum : (double)p->isum) / (double)p->count : NAN;
      return true;
    case K_VAR: *value = variance_of(p->m2, p->count, correction); return true;
    case K_STD: *value = sqrt(variance_of(p->m2, p->count, correction)); return true;
    case K_MAX:
    case K_MIN: *value = p->best; return true;
    case K_COUNT: break;
  }
  return true;
}

dn_status dn_reduce_overflow_error(const char *name, const dn_tensor *a) {
  char sb[128];
  return dn_fail(DN_ERANGE, "%s: result overflows int32 (input of shape %s); convert to float32 first", name,
                 dn_shape_str(a, sb, sizeof sb));
}

/* --- one dim ------------------------------------------------------------------------ */

void dn_lanes_of(lanes *g, const dn_tensor *a, int dim) {
  g->t = a;
  g->length = a->ndim ? a->shape[dim] : 1;
  g->stride = a->ndim ? a->stride[dim] : 1;
  g->kept_ndim = 0;
  g->count = 1;
  for (int d = 0; d < a->ndim; d++) {
    if (d == dim) continue;
    g->kept_shape[g->kept_ndim] = a->shape[d];
    g->kept_stride[g->kept_ndim] = a->stride[d];
    g->kept_ndim++;
    g->count *= a->shape[d];
  }
  g->inner = 1;
  g->outer_ndim = g->kept_ndim;
  while (g->outer_ndim > 0) {
    int d = g->outer_ndim - 1;
    if (g->kept_shape[d] != 1 && g->kept_stride[d] != g->inner) break;
    g->inner *= g->kept_shape[d];
    g->outer_ndim--;
  }
  g->columns = a->dtype == DN_F32 && g->inner > 1 && g->length > 0;
}

/* Storage offset of element j of the first `ndim` kept dims (row-major). */
static int64_t kept_offset(const lanes *g, int ndim, int64_t j) {
  int64_t off = g->t->offset;
  for (int d = ndim - 1; d >= 0; d--) {
    off += (j % g->kept_shape[d]) * g->kept_stride[d];
    j /= g->kept_shape[d];
  }
  return off;
}

/* Writes output j; false if an int32 sum overflowed. */
static bool store(const outputs *o, int64_t j, const partial *p, bool is_float) {
  double value;
  if (!dn_reduce_finish(&value, p, o->kind, is_float, o->correction)) return false;
  if (o->values) dn_store(o->values, j, value);
  if (o->indices) *DN_I32_AT(o->indices, j) = (int32_t)(p->at + o->base);
  return true;
}

/* Kept index of output j into idx; returns the storage offset of its lane. */
static int64_t lane_position(const lanes *g, int64_t j, int64_t *idx) {
  int64_t off = g->t->offset;
  for (int d = g->kept_ndim - 1; d >= 0; d--) {
    idx[d] = j % g->kept_shape[d];
    j /= g->kept_shape[d];
    off += idx[d] * g->kept_stride[d];
  }
  return off;
}

/* Moves idx to the next output; returns the offset of its lane. */
static int64_t lane_advance(const lanes *g, int64_t *idx, int64_t off) {
  int d = g->kept_ndim - 1;
  if (d < 0) return off;
  idx[d]++;
  off += g->kept_stride[d];
  for (; d > 0 && idx[d] == g->kept_shape[d]; d--) {
    off += g->kept_stride[d - 1] - g->kept_shape[d] * g->kept_stride[d];
    idx[d] = 0;
    idx[d - 1]++;
  }
  return off;
}

/* Outputs [j0, j1), in order, on the calling thread; false if an int32 sum
   overflowed. */
static bool reduce_lane_range(const lanes *g, const outputs *o, int64_t j0, int64_t j1) {
  reduce_op op = o->op;
  bool is_float = g->t->dtype == DN_F32, ok = true;
  /* a short dense lane is one block read in place: skip the span machinery */
  bool in_place = (g->stride == 1 || g->length == 1) && g->t->dtype != DN_U8 && g->length > 0 &&
                  g->length <= BLOCK;
  int64_t idx[DN_MAX_DIMS], off = lane_position(g, j0, idx);
  for (int64_t j = j0; j < j1; j++) {
    partial p;
    if (in_place) {
      const void *data = is_float ? (const void *)DN_F32_AT(g->t, off) : (const void *)DN_I32_AT(g->t, off);
      reduce_block(&p, op, is_float, data, g->length, 0);
    } else {
      span s;
      dn_span_of_lane(&s, g->t, off, g->length, g->stride);
      dn_reduce_span_serial(&p, op, &s);
    }
    ok = store(o, j, &p, is_float) && ok;
    off = lane_advance(g, idx, off);
  }
  return ok;
}

/* Outputs [j0, j1) computed whole; an int32 sum overflow raises the flag. */
typedef struct lane_range_job {
  const lanes *g;
  const outputs *o;
  atomic_bool *overflow;
} lane_range_job;

static void reduce_lane_ranges(const void *ctx, int64_t j0, int64_t j1) {
  const lane_range_job *j = ctx;
  if (!reduce_lane_range(j->g, j->o, j0, j1)) atomic_store(j->overflow, true);
}

dn_status dn_reduce_lanes(const lanes *g, const outputs *o, const char *name) {
  int threads = dn_threads_for(g->count * g->length);
  bool overflow = false;
  if (threads > 1 && g->count >= threads) {
    /* many outputs: each task does a range of them whole (the threads
       decided once: solo_trial.c counts one decision per loop) */
    atomic_bool lane_overflow = false;
    lane_range_job job = {g, o, &lane_overflow};
    dn_parallel_split(g->count, 1, threads, reduce_lane_ranges, &job);
    overflow = atomic_load(&lane_overflow);
  } else if (threads > 1) {
    /* few long lanes: parallel over the blocks of each */
    int64_t idx[DN_MAX_DIMS], off = lane_position(g, 0, idx);
    for (int64_t j = 0; j < g->count; j++) {
      span s;
      partial p;
      dn_span_of_lane(&s, g->t, off, g->length, g->stride);
      dn_status st = dn_reduce_span(&p, o->op, &s, threads, name);
      if (st) return st;
      if (!store(o, j, &p, g->t->dtype == DN_F32)) overflow = true;
      off = lane_advance(g, idx, off);
    }
  } else {
    overflow = !reduce_lane_range(g, o, 0, g->count);
  }
  return overflow ? dn_reduce_overflow_error(name, g->t) : DN_OK;
}

/* Column path kernels: rows of `width` floats, `row_stride` apart. */
/* Four rows per sweep halve the traffic to acc; each column still adds its
   rows one after the other, in order. */
static void column_sums(double *acc, const float *first, int64_t rows, int64_t row_stride, int64_t width) {
  for (int64_t i = 0; i < width; i++) acc[i] = 0;
  int64_t k = 0;
  for (; k + 4 <= rows; k += 4) {
    const float *r0 = first + k * row_stride, *r1 = r0 + row_stride, *r2 = r1 + row_stride, *r3 = r2 + row_stride;
#pragma omp simd
    for (int64_t i = 0; i < width; i++)
      acc[i] = (((acc[i] + (double)r0[i]) + (double)r1[i]) + (double)r2[i]) + (double)r3[i];
  }
  for (; k < rows; k++) {
    const float *row = first + k * row_stride;
#pragma omp simd
    for (int64_t i = 0; i < width; i++) acc[i] += (double)row[i];
  }
}

static void column_squared_deviations(double *acc, const double *mean, const float *first, int64_t rows,
                                      int64_t row_stride, int64_t width) {
  for (int64_t i = 0; i < width; i++) acc[i] = 0;
  int64_t k = 0;
  for (; k + 4 <= rows; k += 4) {
    const float *r0 = first + k * row_stride, *r1 = r0 + row_stride, *r2 = r1 + row_stride, *r3 = r2 + row_stride;
#pragma omp simd
    for (int64_t i = 0; i < width; i++) {
      double m = mean[i], d0 = (double)r0[i] - m, d1 = (double)r1[i] - m, d2 = (double)r2[i] - m,
             d3 = (double)r3[i] - m;
      acc[i] = (((acc[i] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3;
    }
  }
  for (; k < rows; k++) {
    const float *row = first + k * row_stride;
#pragma omp simd
    for (int64_t i = 0; i < width; i++) {
      double d = (double)row[i] - mean[i];
      acc[i] += d * d;
    }
  }
}

/* Branch-free so it vectorizes; strict comparison keeps the first
   occurrence, and a NaN replaces anything but an earlier NaN. */
static void column_extrema(float *best, int32_t *at, const float *first, int64_t rows, int64_t row_stride,
                           int64_t width, bool is_max) {
  for (int64_t i = 0; i < width; i++) {
    best[i] = first[i];
    at[i] = 0;
  }
  for (int64_t k = 1; k < rows; k++) {
    const float *row = first + k * row_stride;
    int32_t pos = (int32_t)k;
    if (is_max) {
#pragma omp simd
      for (int64_t i = 0; i < width; i++) {
        float x = row[i], b = best[i];
        bool take = (x > b) | ((x != x) & (b == b));
        best[i] = take ? x : b;
        at[i] = take ? pos : at[i];
      }
    } else {
#pragma omp simd
      for (int64_t i = 0; i < width; i++) {
        float x = row[i], b = best[i];
        bool take = (x < b) | ((x != x) & (b == b));
        best[i] = take ? x : b;
        at[i] = take ? pos : at[i];
      }
    }
  }
}

/* Per-task scratch of the column path, COLUMN_CHUNK wide. */
typedef struct column_scratch {
  double acc[COLUMN_CHUNK], mean[COLUMN_CHUNK];
  float best[COLUMN_CHUNK];
  int32_t at[COLUMN_CHUNK];
} column_scratch;

/* Output columns c0 .. c0 + width - 1 of outer group q. */
static void reduce_column_chunk(column_scratch *w, const lanes *g, const outputs *o, int64_t q, int64_t c0,
                                int64_t width) {
  const float *first = DN_F32_AT(g->t, kept_offset(g, g->outer_ndim, q) + c0);
  int64_t n = g->length, j0 = q * g->inner + c0;
  float *values = o->values ? DN_F32_AT(o->values, j0) : NULL;
  int32_t *indices = o->indices ? DN_I32_AT(o->indices, j0) : NULL;
  switch (o->kind) {
    case K_SUM:
    case K_MEAN:
      column_sums(w->acc, first, n, g->stride, width);
      for (int64_t i = 0; i < width; i++)
        values[i] = (float)(o->kind == K_SUM ? w->acc[i] : w->acc[i] / (double)n);
      break;
    case K_VAR:
    case K_STD:
      /* two passes: the mean, then squared deviations from it */
      column_sums(w->acc, first, n, g->stride, width);
      for (int64_t i = 0; i < width; i++) w->mean[i] = w->acc[i] / (double)n;
      column_squared_deviations(w->acc, w->mean, first, n, g->stride, width);
      for (int64_t i = 0; i < width; i++) {
        double v = variance_of(w->acc[i], n, o->correction);
        values[i] = (float)(o->kind == K_STD ? sqrt(v) : v);
      }
      break;
    case K_MAX:
    case K_MIN:
      column_extrema(w->best, w->at, first, n, g->stride, width, o->kind == K_MAX);
      for (int64_t i = 0; i < width; i++) {
        if (values) values[i] = w->best[i];
        if (indices) indices[i] = (int32_t)(w->at[i] + o->base);
      }
      break;
    case K_COUNT: break;
  }
}

/* Work items [i0, i1): chunks of `width` columns, `chunks` per outer group;
   the scratch is the task's own. */
typedef struct column_chunk_job {
  const lanes *g;
  const outputs *o;
  int64_t width, chunks;
  atomic_bool *failed;
} column_chunk_job;

static void reduce_column_items(const void *ctx, int64_t i0, int64_t i1) {
  const column_chunk_job *j = ctx;
  const lanes *g = j->g;
  int64_t width = j->width, chunks = j->chunks;
  column_scratch *w = malloc(sizeof *w);
  if (!w) {
    atomic_store(j->failed, true);
    return;
  }
  for (int64_t item = i0; item < i1; item++) {
    int64_t q = item / chunks, c0 = (item % chunks) * width;
    reduce_column_chunk(w, g, j->o, q, c0, g->inner - c0 < width ? g->inner - c0 : width);
  }
  free(w);
}

/* Each output column is accumulated by one task over all rows in order, so
   the chunk width may follow the thread count without changing results. */
dn_status dn_reduce_columns(const lanes *g, const outputs *o, const char *name) {
  int threads = dn_threads_for(g->count * g->length);
  int64_t outer = g->count / g->inner;
  /* narrower chunks would make threads read the same cache lines */
  int64_t width = (g->inner + threads - 1) / threads;
  if (width < COLUMN_MIN_SPLIT) width = COLUMN_MIN_SPLIT;
  if (width > COLUMN_CHUNK) width = COLUMN_CHUNK;
  int64_t chunks = (g->inner + width - 1) / width, items = outer * chunks;
  atomic_bool failed = false;
  column_chunk_job job = {g, o, width, chunks, &failed};
  dn_parallel_split(items, 1, threads, reduce_column_items, &job);
  return atomic_load(&failed) ? dn_fail(DN_ENOMEM, "%s: out of memory", name) : DN_OK;
}

/* --- lane means (var and std backward) ---------------------------------------------- */

/* Means of whole lanes [o0, o1) when inner == 1. */
typedef struct lane_mean_job {
  double *mean;
  const dn_tensor *x;
  int64_t size;
} lane_mean_job;

static void lane_means_range(const void *ctx, int64_t o0, int64_t o1) {
  const lane_mean_job *j = ctx;
  int64_t size = j->size;
  for (int64_t o = o0; o < o1; o++) {
    span s;
    partial p;
    dn_span_of_lane(&s, j->x, j->x->offset + o * size, size, 1);
    dn_reduce_span_serial(&p, RED_SUM, &s);
    j->mean[o] = p.sum / (double)size;
  }
}

/* Means of work items [i0, i1) of the columns case: `width` columns of one
   outer group each, `chunks` per group. */
typedef struct column_mean_job {
  double *mean;
  const float *data;
  int64_t size, inner, width, chunks;
} column_mean_job;

static void column_means_range(const void *ctx, int64_t i0, int64_t i1) {
  const column_mean_job *j = ctx;
  int64_t size = j->size, inner = j->inner, width = j->width, chunks = j->chunks;
  for (int64_t item = i0; item < i1; item++) {
    int64_t q = item / chunks, c0 = (item % chunks) * width, n = inner - c0 < width ? inner - c0 : width;
    double *m = j->mean + q * inner + c0;
    column_sums(m, j->data + q * size * inner + c0, size, inner, n);
    for (int64_t i = 0; i < n; i++) m[i] /= (double)size;
  }
}

/* Means (in double) of the lanes of x, contiguous float32 [outer, size, inner],
   size >= 1. The arithmetic of a mean does not depend on the thread count. */
dn_status dn_lane_means(double *mean, const dn_tensor *x, int64_t outer, int64_t size, int64_t inner,
                            const char *name) {
  int threads = dn_threads_for(outer * size * inner);
  if (inner == 1 && outer >= threads) {
    /* the threads decided once (solo_trial.c counts one decision per loop) */
    lane_mean_job job = {mean, x, size};
    dn_parallel_split(outer, 1, threads, lane_means_range, &job);
  } else if (inner == 1) {
    /* few long lanes: blocks of each in parallel */
    for (int64_t o = 0; o < outer; o++) {
      span s;
      partial p;
      dn_span_of_lane(&s, x, x->offset + o * size, size, 1);
      dn_status st = dn_reduce_span(&p, RED_SUM, &s, threads, name);
      if (st) return st;
      mean[o] = p.sum / (double)size;
    }
  } else {
    /* columns: each sums its rows in order, whatever the chunk width */
    const float *data = dn_tensor_data(x);
    int64_t width = (inner + threads - 1) / threads;
    if (width < COLUMN_MIN_SPLIT) width = COLUMN_MIN_SPLIT;
    if (width > COLUMN_CHUNK) width = COLUMN_CHUNK;
    int64_t chunks = (inner + width - 1) / width, items = outer * chunks;
    column_mean_job job = {mean, data, size, inner, width, chunks};
    dn_parallel_split(items, 1, threads, column_means_range, &job);
  }
  return DN_OK;
}

