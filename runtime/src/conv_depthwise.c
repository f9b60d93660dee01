/*
** Depthwise convolutions (conv_geom.h's depthwise(): one input channel per
** group, few outputs per group). A group's sgemm would be [out/G, KH*KW] @
** [KH*KW, OH*OW], too thin to run near the GEMM's speed, so these are loops.
**
** Stride 1 (the usual case) works on padded planes: the input plane is
** copied into a zeroed [H + 2ph, W + 2pw] scratch plane, and output
** (oh, ow) becomes position i = oh * PW + ow of one long run computed over
** the padded width (the columns past OW are computed and dropped): tap
** (ki, kj) is then the same shifted run for every output, src[i + ki*dh*PW
** + kj*dw]. The kernel sums the taps of BLOCK consecutive positions in
** vector registers (no boundary tests, no short rows), one pass over the
** plane. dx is the same kernel on the gradient plane padded the other way
** (a correlation with the flipped kernel), dw a dot product of the gradient
** plane, spread to the padded width, with each shifted input run. Other
** strides keep the direct loops below, which add one tap at a time into
** each output row.
**
** Every plane (forward, dx) or output channel (dw) is one task's, its sums
** in a fixed order (taps in (ki, kj) order; dw over the batch in order), so
** the bits do not depend on the thread count. Scratch planes are allocated
** for all tasks before the parallel loop.
*/
#include <string.h>

#include "conv_geom.h"
#include "shape.h"

/* --- any stride: direct loops ----------------------------------------------------------- */

typedef struct depthwise_job {
  const conv_geom *g;
  const dn_tensor *x;   /* forward and dw: the input (any strides) */
  const float *w;       /* contiguous [O, 1, KH, KW] */
  const float *b;       /* forward: the bias or NULL */
  const float *grad;    /* backward: contiguous [N, O, OH, OW] */
  float *out;           /* y, dx (contiguous [N, C, H, W]) or dw */
} depthwise_job;

/* Output planes [p0, p1) of y, plane p = (n, o). */
static void depthwise_forward_planes(const void *ctx, int64_t p0, int64_t p1) {
  const depthwise_job *j = ctx;
  const conv_geom *g = j->g;
  int64_t mult = g->out_ch / g->groups;
  for (int64_t p = p0; p < p1; p++) {
    int64_t n = p / g->out_ch, o = p % g->out_ch;
    image x = image_of(j->x, n);
    const float *plane = x.data + (o / mult) * x.sc, *w = j->w + o * g->k_h * g->k_w;
    float *y = j->out + p * g->positions, bias = j->b ? j->b[o] : 0.0f;
    for (int64_t i = 0; i < g->positions; i++) y[i] = bias;
    for (int64_t ki = 0; ki < g->k_h; ki++)
      for (int64_t kj = 0; kj < g->k_w; kj++) {   /* taps outermost: one valid range per tap */
        int64_t lo, hi, step = g->stride[1] * x.sw;
        valid_columns(g, kj, &lo, &hi);
        float wv = w[ki * g->k_w + kj];
        for (int64_t oh = 0; oh < g->out_h; oh++) {
          int64_t ih = oh * g->stride[0] + ki * g->dil[0] - g->pad[0];
          if (ih < 0 || ih >= g->in_h) continue;
          const float *src = plane + ih * x.sh + (lo * g->stride[1] + kj * g->dil[1] - g->pad[1]) * x.sw;
          float *dst = y + oh * g->out_w + lo;
          if (step == 1) {
#pragma omp simd
            for (int64_t i = 0; i < hi - lo; i++) dst[i] += wv * src[i];
          } else {
            for (int64_t i = 0; i < hi - lo; i++) dst[i] += wv * src[i * step];
          }
        }
      }
  }
}

/* Input planes [p0, p1) of dx, plane p = (n, c): every output channel of c's group scatters into it. */
static void depthwise_dx_planes(const void *ctx, int64_t p0, int64_t p1) {
  const depthwise_job *j = ctx;
  const conv_geom *g = j->g;
  int64_t mult = g->out_ch / g->groups, plane = g->in_h * g->in_w;
  for (int64_t p = p0; p < p1; p++) {
    int64_t n = p / g->in_ch, c = p % g->in_ch;
    float *dx = j->out + p * plane;
    memset(dx, 0, (size_t)plane * sizeof *dx);
    for (int64_t o = c * mult; o < (c + 1) * mult; o++) {
      const float *gp = j->grad + (n * g->out_ch + o) * g->positions, *w = j->w + o * g->k_h * g->k_w;
      for (int64_t ki = 0; ki < g->k_h; ki++)
        for (int64_t kj = 0; kj < g->k_w; kj++) {
          int64_t lo, hi;
          valid_columns(g, kj, &lo, &hi);
          float wv = w[ki * g->k_w + kj];
          for (int64_t oh = 0; oh < g->out_h; oh++) {
            int64_t ih = oh * g->stride[0] + ki * g->dil[0] - g->pad[0];
            if (ih < 0 || ih >= g->in_h) continue;
            float *row = dx + ih * g->in_w + lo * g->stride[1] + kj * g->dil[1] - g->pad[1];
            const float *src = gp + oh * g->out_w + lo;
            if (g->stride[1] == 1) {
#pragma omp simd
              for (int64_t i = 0; i < hi - lo; i++) row[i] += wv * src[i];
            } else {
              for (int64_t i = 0; i < hi - lo; i++) row[i * g->stride[1]] += wv * src[i];
            }
          }
        }
    }
  }
}

/* dw[o] for output channels [o0, o1): per kernel tap, a double sum over n and rows of float row sums. */
static void depthwise_dw_channels(const void *ctx, int64_t o0, int64_t o1) {
  const depthwise_job *j = ctx;
  const conv_geom *g = j->g;
  int64_t mult = g->out_ch / g->groups;
  for (int64_t o = o0; o < o1; o++) {
    for (int64_t ki = 0; ki < g->k_h; ki++)
      for (int64_t kj = 0; kj < g->k_w; kj++) {
        int64_t lo, hi;
        valid_columns(g, kj, &lo, &hi);
        double sum = 0.0;
        for (int64_t n = 0; n < g->batch; n++) {
          image x = image_of(j->x, n);
          const float *gp = j->grad + (n * g->out_ch + o) * g->positions;
          int64_t step = g->stride[1] * x.sw;
          for (int64_t oh = 0; oh < g->out_h; oh++) {
            int64_t ih = oh * g->stride[0] + ki * g->dil[0] - g->pad[0];
            if (ih < 0 || ih >= g->in_h) continue;
            const float *g_row = gp + oh * g->out_w;
            const float *src = x.data + (o / mult) * x.sc + ih * x.sh +
                               (lo * g->stride[1] + kj * g->dil[1] - g->pad[1]) * x.sw;
            float part = 0.0f;
            if (step == 1) {
#pragma omp simd reduction(+ : part)
              for (int64_t i = 0; i < hi - lo; i++) part += g_row[lo + i] * src[i];
            } else {
              for (int64_t i = 0; i < hi - lo; i++) part += g_row[lo + i] * src[i * step];
            }
            sum += part;
          }
        }
        j->out[(o * g->k_h + ki) * g->k_w + kj] = (float)sum;
      }
  }
}


/* --- stride 1: padded planes ---------------------------------------------------------------- */

/* Vectors as wide as the build's registers: without AVX-512, gcc keeps a 64-byte vector in memory (a store and
   a reload per add: on a Zen 4 the AVX2 build's forward of 8x1024x28x28 took 22 ms, the AVX-512 build's 2.6 ms).
   BLOCK positions per register block: four vectors. */
#if defined(__AVX512F__)
#define VF 16
#elif defined(__AVX__)
#define VF 8
#else
#define VF 4
#endif
#define BLOCK (4 * VF)
typedef float vecf __attribute__((vector_size(VF * sizeof(float))));

static inline vecf loadv(const float *p) {
  vecf v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void storev(float *p, vecf v) { memcpy(p, &v, sizeof v); }

static inline int64_t round_block(int64_t n) { return (n + BLOCK - 1) / BLOCK * BLOCK; }

/* The taps of one kernel over a padded plane of row width `width`. */
typedef struct kernel_taps {
  const float *w;     /* [kh, kw] */
  int64_t kh, kw;
  int64_t row_step;   /* dilation_h * width */
  int64_t col_step;   /* dilation_w */
  bool flip;          /* tap (ki, kj) reads the (kh-1-ki, kw-1-kj) shift (dx) */
} kernel_taps;

/* out[i] = (accumulate ? out[i] : init) + sum over taps of w[t] * src[i + shift(t)],
   for i in [0, len), len a multiple of BLOCK; taps in (ki, kj) order. */
static void taps_pass(float *out, int64_t len, const float *src, const kernel_taps *t, bool accumulate, float init) {
  for (int64_t i0 = 0; i0 < len; i0 += BLOCK) {
    vecf a0, a1, a2, a3;
    if (accumulate) {
      a0 = loadv(out + i0), a1 = loadv(out + i0 + VF), a2 = loadv(out + i0 + 2 * VF), a3 = loadv(out + i0 + 3 * VF);
    } else {
      a0 = a1 = a2 = a3 = (vecf){0} + init;
    }
    for (int64_t ki = 0; ki < t->kh; ki++)
      for (int64_t kj = 0; kj < t->kw; kj++) {
        int64_t si = t->flip ? t->kh - 1 - ki : ki, sj = t->flip ? t->kw - 1 - kj : kj;
        const float *s = src + i0 + si * t->row_step + sj * t->col_step;
        float wv = t->w[ki * t->kw + kj];
        a0 += wv * loadv(s), a1 += wv * loadv(s + VF), a2 += wv * loadv(s + 2 * VF), a3 += wv * loadv(s + 3 * VF);
      }
    storev(out + i0, a0), storev(out + i0 + VF, a1), storev(out + i0 + 2 * VF, a2), storev(out + i0 + 3 * VF, a3);
  }
}

/* dst [rows, width] (zeroed, then `slack` more zeros) = src plane [h, w]
   (strides sh, sw) placed at row `top`, column `left` (either may be
   negative: what falls outside is dropped). */
static void place_plane(float *dst, int64_t rows, int64_t width, int64_t slack, const float *src, int64_t h, int64_t w,
                        int64_t sh, int64_t sw, int64_t top, int64_t left) {
  memset(dst, 0, (size_t)(rows * width + slack) * sizeof *dst);
  int64_t c0 = left < 0 ? -left : 0, c1 = width - left < w ? width - left : w;
  for (int64_t r = 0; r < h; r++) {
    int64_t at = r + top;
    if (at < 0 || at >= rows || c0 >= c1) continue;
    float *d = dst + at * width + left;
    const float *s = src + r * sh;
    if (sw == 1) {
#pragma omp simd
      for (int64_t c = c0; c < c1; c++) d[c] = s[c];   /* short rows: a loop, not a memcpy call each */
    } else {
      for (int64_t c = c0; c < c1; c++) d[c] = s[c * sw];
    }
  }
}

/* out [h, w] = the first w columns of each row of full [h, width]. */
static void take_columns(float *out, const float *full, int64_t h, int64_t w, int64_t width) {
  for (int64_t r = 0; r < h; r++) {
    float *d = out + r * w;
    const float *s = full + r * width;
#pragma omp simd
    for (int64_t c = 0; c < w; c++) d[c] = s[c];
  }
}

/* sum of a[i] * b[i] over [0, n): 16 float lanes (the tail into lane i % 16; 16 / VF vectors of them, the same
   lanes on every build), combined pairwise, in double. One plane's dot: a few hundred terms. */
static double plane_dot(const float *a, const float *b, int64_t n) {
  vecf acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};   /* lanes [0, VF), [VF, 2 VF), ...: as many as 16 needs */
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 += loadv(a + i) * loadv(b + i);
    if (VF < 16) acc1 += loadv(a + i + VF) * loadv(b + i + VF);
    if (VF < 8) {
      acc2 += loadv(a + i + 2 * VF) * loadv(b + i + 2 * VF);
      acc3 += loadv(a + i + 3 * VF) * loadv(b + i + 3 * VF);
    }
  }
  float lane[16 + 3 * VF];   /* room for the unused vectors' stores */
  storev(lane, acc0), storev(lane + VF, acc1), storev(lane + 2 * VF, acc2), storev(lane + 3 * VF, acc3);
  for (; i < n; i++) lane[i % 16] += a[i] * b[i];
  for (int w = 8; w >= 1; w /= 2)
    for (int k = 0; k < w; k++) lane[k] += lane[k + w];
  return lane[0];
}

/* The padded sizes of the stride-1 passes. */
typedef struct padded {
  int64_t in_rows, in_width;   /* input planes padded: [H + 2ph, W + 2pw] */
  int64_t g_rows, g_width;     /* gradient planes padded for dx: [H + (KH-1)dh, W + (KW-1)dw] */
  int64_t slack;               /* zeros after a plane: the last taps read past it */
} padded;

static padded padded_of(const conv_geom *g) {
  padded p;
  p.in_rows = g->in_h + 2 * g->pad[0];
  p.in_width = g->in_w + 2 * g->pad[1];
  p.g_rows = g->in_h + (g->k_h - 1) * g->dil[0];
  p.g_width = g->in_w + (g->k_w - 1) * g->dil[1];
  p.slack = (g->k_w - 1) * g->dil[1] + BLOCK;
  return p;
}

typedef struct flat_job {
  const char *op;       /* for messages: conv2d or conv1d */
  const conv_geom *g;
  padded pd;
  const dn_tensor *x;
  const float *w, *b, *grad;
  float *out;
  float *scratch;       /* per task: scratch_floats */
  int64_t scratch_floats;
  int64_t units;        /* planes or channels */
} flat_job;

/* Output planes (n, o) of task t's share: padded input, taps, columns out. */
static void flat_forward_task(void *ctx, int task, int tasks) {
  const flat_job *j = ctx;
  const conv_geom *g = j->g;
  padded pd = j->pd;
  int64_t mult = g->out_ch / g->groups, len = round_block(g->out_h * pd.in_width);
  float *xp = j->scratch + task * j->scratch_floats, *full = xp + pd.in_rows * pd.in_width + pd.slack;
  int64_t built = -1;   /* the (n, c) plane in xp */
  for (int64_t p = dn_split(j->units, task, tasks); p < dn_split(j->units, task + 1, tasks); p++) {
    int64_t n = p / g->out_ch, o = p % g->out_ch, nc = n * g->in_ch + o / mult;
    if (nc != built) {
      image x = image_of(j->x, n);
      place_plane(xp, pd.in_rows, pd.in_width, pd.slack, x.data + (o / mult) * x.sc, g->in_h, g->in_w, x.sh, x.sw,
                  g->pad[0], g->pad[1]);
      built = nc;
    }
    kernel_taps t = {j->w + o * g->k_h * g->k_w, g->k_h, g->k_w, g->dil[0] * pd.in_width, g->dil[1], false};
    taps_pass(full, len, xp, &t, false, j->b ? j->b[o] : 0.0f);
    take_columns(j->out + p * g->positions, full, g->out_h, g->out_w, pd.in_width);
  }
}

/* Input planes (n, c) of dx: every output channel of c's group, in order. */
static void flat_dx_task(void *ctx, int task, int tasks) {
  const flat_job *j = ctx;
  const conv_geom *g = j->g;
  padded pd = j->pd;
  int64_t mult = g->out_ch / g->groups, len = round_block(g->in_h * pd.g_width);
  float *gp = j->scratch + task * j->scratch_floats, *full = gp + pd.g_rows * pd.g_width + pd.slack;
  /* gradient row r, column c sits at (r + top, c + left) of the padded plane */
  int64_t top = (g->k_h - 1) * g->dil[0] - g->pad[0], left = (g->k_w - 1) * g->dil[1] - g->pad[1];
  for (int64_t p = dn_split(j->units, task, tasks); p < dn_split(j->units, task + 1, tasks); p++) {
    int64_t n = p / g->in_ch, c = p % g->in_ch;
    for (int64_t o = c * mult; o < (c + 1) * mult; o++) {
      place_plane(gp, pd.g_rows, pd.g_width, pd.slack, j->grad + (n * g->out_ch + o) * g->positions, g->out_h,
                  g->out_w, g->out_w, 1, top, left);
      kernel_taps t = {j->w + o * g->k_h * g->k_w, g->k_h, g->k_w, g->dil[0] * pd.g_width, g->dil[1], true};
      taps_pass(full, len, gp, &t, o > c * mult, 0.0f);
    }
    take_columns(j->out + p * g->in_h * g->in_w, full, g->in_h, g->in_w, pd.g_width);
  }
}

/* dw of output channels o of task t's share: over the batch in order, per
   tap a dot of the gradient plane (spread to the padded width, zeros past
   OW) with the tap's shifted run of the padded input plane, in float lanes
   per plane and summed over the batch in double. */
static void flat_dw_task(void *ctx, int task, int tasks) {
  const flat_job *j = ctx;
  const conv_geom *g = j->g;
  padded pd = j->pd;
  int64_t mult = g->out_ch / g->groups, kk = g->k_h * g->k_w, len = g->out_h * pd.in_width;
  /* the task's scratch: kk doubles (its 64-byte aligned start), then the two planes */
  double *acc = (double *)(j->scratch + task * j->scratch_floats);
  float *xp = (float *)acc + (2 * kk + 15) / 16 * 16, *gfull = xp + pd.in_rows * pd.in_width + pd.slack;
  for (int64_t o = dn_split(j->units, task, tasks); o < dn_split(j->units, task + 1, tasks); o++) {
    memset(acc, 0, (size_t)kk * sizeof *acc);
    for (int64_t n = 0; n < g->batch; n++) {
      image x = image_of(j->x, n);
      place_plane(xp, pd.in_rows, pd.in_width, pd.slack, x.data + (o / mult) * x.sc, g->in_h, g->in_w, x.sh, x.sw,
                  g->pad[0], g->pad[1]);
      place_plane(gfull, g->out_h, pd.in_width, 0, j->grad + (n * g->out_ch + o) * g->positions, g->out_h, g->out_w,
                  g->out_w, 1, 0, 0);
      for (int64_t ki = 0; ki < g->k_h; ki++)
        for (int64_t kj = 0; kj < g->k_w; kj++)
          acc[ki * g->k_w + kj] += plane_dot(gfull, xp + ki * g->dil[0] * pd.in_width + kj * g->dil[1], len);
    }
    for (int64_t t = 0; t < kk; t++) j->out[o * kk + t] = (float)acc[t];
  }
}

/* Runs fn over `units` with per-task scratch of `floats` floats, or DN_ENOMEM. */
static dn_status run_flat(flat_job *j, dn_task_fn *fn, int64_t units, int64_t floats, int64_t work) {
  int tasks = dn_threads_for(work), parts = dn_threads_most_for(work);   /* parts: internal.h */
  if (tasks > units) tasks = (int)units;
  if (parts > units) parts = (int)units;
  if (tasks < 1) return DN_OK;
  floats = (floats + 15) / 16 * 16;   /* each task's scratch 64-byte aligned */
  int64_t total;
  if (!dn_size_mul(floats, parts, &total) || !(j->scratch = dn_alloc((size_t)total * sizeof(float))))
    return dn_fail(DN_ENOMEM, "%s: out of memory for %d depthwise scratch planes of %lld floats", j->op, parts,
                   (long long)floats);
  j->scratch_floats = floats;
  j->units = units;
  dn_parallel(tasks, fn, j);
  dn_free(j->scratch);
  return DN_OK;
}

static bool unit_stride(const conv_geom *g) { return g->stride[0] == 1 && g->stride[1] == 1; }

/* --- the passes ---------------------------------------------------------------------------- */

dn_status dn_depthwise_forward(const char *op, const conv_geom *g, const dn_tensor *x, const float *w, const float *b,
                               float *y) {
  int64_t taps = g->k_h * g->k_w;
  if (!unit_stride(g)) {
    depthwise_job job = {g, x, w, b, NULL, y};
    dn_parallel_rows(g->batch * g->out_ch, g->positions * taps, depthwise_forward_planes, &job);
    return DN_OK;
  }
  flat_job j = {.op = op, .g = g, .pd = padded_of(g), .x = x, .w = w, .b = b, .out = y};
  int64_t floats = j.pd.in_rows * j.pd.in_width + j.pd.slack + round_block(g->out_h * j.pd.in_width);
  return run_flat(&j, flat_forward_task, g->batch * g->out_ch, floats, g->batch * g->out_ch * g->positions * taps);
}

dn_status dn_depthwise_dx(const char *op, const conv_geom *g, const float *w, const float *grad, float *dx) {
  int64_t taps = g->k_h * g->k_w, mult = g->out_ch / g->groups;
  if (!unit_stride(g)) {
    depthwise_job job = {g, NULL, w, NULL, grad, dx};
    dn_parallel_rows(g->batch * g->in_ch, g->positions * taps * mult, depthwise_dx_planes, &job);
    return DN_OK;
  }
  flat_job j = {.op = op, .g = g, .pd = padded_of(g), .w = w, .grad = grad, .out = dx};
  int64_t floats = j.pd.g_rows * j.pd.g_width + j.pd.slack + round_block(g->in_h * j.pd.g_width);
  return run_flat(&j, flat_dx_task, g->batch * g->in_ch, floats, g->batch * g->out_ch * g->positions * taps);
}

dn_status dn_depthwise_dw(const char *op, const conv_geom *g, const dn_tensor *x, const float *grad, float *dw) {
  int64_t taps = g->k_h * g->k_w;
  if (!unit_stride(g)) {
    depthwise_job job = {g, x, NULL, NULL, grad, dw};
    dn_parallel_rows(g->out_ch, g->positions * taps * g->batch, depthwise_dw_channels, &job);
    return DN_OK;
  }
  flat_job j = {.op = op, .g = g, .pd = padded_of(g), .x = x, .grad = grad, .out = dw};
  /* taps doubles, input plane + slack, gradient plane at the padded width */
  int64_t floats = (2 * taps + 15) / 16 * 16 + j.pd.in_rows * j.pd.in_width + j.pd.slack +
                   round_block(g->out_h * j.pd.in_width);
  return run_flat(&j, flat_dw_task, g->out_ch, floats, g->batch * g->out_ch * g->positions * taps);
}
