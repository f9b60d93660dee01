/*
** Normalization: batch normalization over the channels of [N, C, ...]
** inputs, and layer and group normalization over blocks of consecutive
** elements, with their backward.
**
** The input is made contiguous and read as [N, C, S] (S the product of the
** dims after C, 1 for [N, C]); a channel is the N runs of S elements at
** (n * C + c) * S. Batch norm's statistics are sums of each row, merged per
** channel in a fixed order (below); backward's sums, dweight and dbias are
** one dn_parallel_rows over whole channels (a channel by one task in a fixed
** order); the outputs, and dx when its rows are written (defer_dx: by the
** convolution before, image by image, or when materialized), come from a
** pass over the rows (n, c) in memory order, from per-channel
** parameters in double (a channel's rows are C * S apart: walking them
** channel by channel defeats the prefetcher). No value depends on how the
** work is split, so the bits do not depend on the thread count. Sums are in
** double (in lanes, below). Batch norm takes
** its statistics from shifted sums of each row (n, c), sum (x - k) and
** sum (x - k)^2 with k the row's first value (row_stats.h): in double, and
** shifted by a value of the data, this does not cancel for inputs far from 0
** as E[x^2] - mean^2 would. A channel's rows are then merged in the order of
** n: the mean from the rows' totals, the sum of squared deviations as each
** row's own plus its mean's spread about the channel's (channel_stats).
** The rows' sums are one pass over
** the input in memory order, or none when the input carries them: a
** convolution that a batch norm follows computes them while each image's
** outputs are in cache (dn_conv2d_stats), with the same bits. Layer and
** group norm rows are small and take a second pass over (x - mean)^2.
**
** Training uses the batch's mean and biased variance; the running
** statistics are updated as PyTorch 1.13 does (batch_norm_cpu_update_stats:
** momentum * batch + (1 - momentum) * running in double, the unbiased
** variance, stored as float32). Eval normalizes with the running values.
** Either way the node keeps the mean and 1 / sqrt(var + eps) it used per
** channel (float32 [C]), so backward is a pass of sums over x and the
** gradient, then the pass that writes dx:
** with xhat = (x - mean) * invstd and M = N * S values per channel,
**   dbias = sum g,  dweight = sum g * xhat,
**   dx = weight * invstd * (g - dbias / M - xhat * dweight / M)   (training)
**   dx = weight * invstd * g                                      (eval: constants).
** The sums and statistics are in double; the passes that write y and dx
** run in float32 (norm_run.h's dn_norm_forward_run, backward_run), with
** the mean as a pair of floats (hi + lo) so that x - mean keeps its low
** bits on data far from zero (test_far_from_zero). In double, the conversions each way halved the
** vectors: the small CNN's training step was 3.4% slower (10 alternated
** runs, 0.92-0.98).
**
** Batch norm + ReLU (dn_batch_norm_relu) is the same op with a flag: the
** forward's write pass applies ReLU to each float32 output as the runtime's
** relu does (v < 0 ? 0 : v), and its node also saves that output y; the
** backward's two passes read g through ReLU's backward (+0 where y <= 0,
** relu_grad in lanes.h) wherever they read g. The values are exactly those
** of the unfused pair, and no pass, pre-activation tensor or masked gradient
** is added. The mask comes from the saved y, not from recomputing the
** normalized value with the float32-saved statistics, which would not give
** the forward's bits.
**
** Batch norm + ReLU + 2x2 max pool (dn_batch_norm_relu_max_pool2d, the
** block of a small CNN) is a third form, for [N, C, H, W]: the statistics
** pass is batch norm's; the write pass normalizes a row (n, c) with ReLU
** into its task's scratch plane (H * W floats, in L1) and pools that plane
** into the output (max_pool_2x2.h, pooling.c's kernel), so the normalized
** tensor, four times the output, is never written to memory and read back.
** Backward rebuilds, per row in a task's scratch, the gradient that the
** unfused chain hands to batch norm + ReLU's backward (max pool's backward:
** zeros, then += the output gradient at each window's argmax) and runs
** batch norm's sums and dx expression on it unchanged, so the bits are
** those of the chain. The ReLU mask needs no saved output: at a window's
** argmax ReLU's output is the window's output, and every other position of
** the rebuilt gradient is +0, which the mask keeps +0; so the node saves a
** window whose output is <= 0 as having no argmax (no gradient) and keeps
** the argmax only, as the chain keeps, in a byte per window: its place in
** the window (window_codes), a quarter of the chain's int32 indices, which
** both backward passes read. Rows of an odd H or W that no window
** reads get no gradient from the pool, and still their share of the sums.
**
** With channel dropout after the pool (dn_batch_norm_relu_max_pool2d_dropout2d,
** the block of a small CNN with Dropout2d) the write pass draws nothing per
** element: the (n, c) rows' decisions are dn_dropout_channels' (one byte
** each, drawn before the pass), a dropped row is written as zeros with no
** argmax in any window without being normalized, and a kept row's pooled outputs are
** multiplied by the scale, as the dropout's own pass would. Backward needs
** no mask: the chain's dropout backward hands the pool g * scale on kept
** rows and zeros on dropped ones, and a dropped row's windows, none with an
** argmax, already make its rebuilt gradient +0; so the rebuilt gradient takes
** 0 + g * scale at a window's argmax (scale 1 without the dropout), and the
** bits are those of the chain with dn_dropout_channels after the pool.
*/
#include <stdio.h>
#include <string.h>

#include "deferred.h"
#include "dropnet/autograd.h"
#include "dropnet/norm.h"
#include "dropout_mask.h"
#include "graph.h"
#include "internal.h"
#include "lanes.h"
#include "norm_checks.h"
#include "norm_run.h"
#include "max_pool_2x2.h"
#include "row_stats.h"
#include "shape.h"
#include "unpool_2x2.h"

/* SAVED_Y: with ReLU; SAVED_INDICES, in the same slot: with the pool (uint8, each window's argmax as a
   position in the window, WINDOW_NONE where ReLU zeroed the window's output: window_codes) */
enum { SAVED_X = 0, SAVED_WEIGHT = 1, SAVED_MEAN = 2, SAVED_INVSTD = 3, SAVED_Y = 4, SAVED_INDICES = 4 };
enum { NODE_TRAINING = 0, NODE_RELU = 1, NODE_POOL = 2 };   /* node->ints: batch statistics used; ReLU; pool */
enum { NODE_GRAD_SCALE = 0 };   /* node->scalars with the pool: the dropout's scale of kept rows' gradients */
_Static_assert(SAVED_Y < DN_NODE_SAVED && SAVED_INDICES < DN_NODE_SAVED,
               "norm.c: a node holds x, weight, mean, invstd and y or the indices");
enum { WINDOW_NONE = DN_WINDOW_NONE };   /* a window's code: no gradient to route (unpool_2x2.h) */

/* An input read as [n, c, s]. */
typedef struct bn_dims {
  int64_t n, c, s;
} bn_dims;

/* What every normalization's backward reads: x, the weight (only for dx),
   and the per-channel (or per-row) mean and 1 / sqrt(var + eps) it used. */
static dn_status save_for_backward(dn_node *node, const dn_tensor *x, const dn_tensor *weight, const dn_tensor *mean,
                                   const dn_tensor *invstd) {
  dn_status st = dn_node_save(node, SAVED_X, x);
  if (!st && weight && node->needs_grad[0]) st = dn_node_save(node, SAVED_WEIGHT, weight);
  if (!st) st = dn_node_save(node, SAVED_MEAN, mean);
  if (!st) st = dn_node_save(node, SAVED_INVSTD, invstd);
  return st;
}

static bn_dims dims_of(int ndim, const int64_t *shape) {
  bn_dims d = {shape[0], shape[1], 1};
  for (int i = 2; i < ndim; i++) d.s *= shape[i];
  return d;
}

/* Element c of a 1-D float32 tensor of any stride. */
static inline float *at(const dn_tensor *t, int64_t c) { return DN_F32_AT(t, t->offset + c * t->stride[0]); }

/* --- forward ---------------------------------------------------------------------------- */

/* A forward pass: in training each row's sums (or the input's own), per
   channel the statistics (channels [c0, c1) per task), then the outputs row
   by row in memory order. */
typedef struct bn_forward_job {
  bn_dims d;
  const float *x, *weight, *bias;   /* weight, bias contiguous or NULL */
  float *y;
  dn_tensor *running_mean, *running_var;   /* or NULL (training only) */
  bool training, relu;
  double momentum, eps;
  float *save_mean, *save_invstd;   /* [C] */
  double *param;                    /* [C][3]: mean, scale, shift of each channel's outputs */
  const double *sums;               /* training: [N * C][ROW_STATS_SUMS], row_stats.h */
  double *own_sums;                 /* the same when this op computes them, or NULL */
} bn_forward_job;

/* Channel c's batch mean and sum of squared deviations from its rows' sums, in the order of n: the mean
   from the rows' totals, then each row's squared deviations about its own mean plus its share of the
   spread of the rows' means about the channel's (exact for symmetric data: a mean of 0 is 0). */
static void channel_stats(const bn_forward_job *j, int64_t c, double *mean_out, double *sq_out) {
  bn_dims d = j->d;
  double len = (double)d.s, total = 0, sq = 0;
  for (int64_t n = 0; n < d.n; n++) {
    const double *r = j->sums + (n * d.c + c) * ROW_STATS_SUMS;
    total += r[0] * len + r[1];
  }
  double mean = total / (len * (double)d.n);
  for (int64_t n = 0; n < d.n; n++) {
    const double *r = j->sums + (n * d.c + c) * ROW_STATS_SUMS;
    double row_sq = r[2] - r[1] * (r[1] / len), dev = r[0] + r[1] / len - mean;
    sq += (row_sq < 0 ? 0 : row_sq) + len * dev * dev;
  }
  *mean_out = mean;
  *sq_out = sq;
}

/* The statistics, the running update and the output parameters of channels [c0, c1). */
static void forward_channels(const void *ctx, int64_t c0, int64_t c1) {
  const bn_forward_job *j = ctx;
  double m = (double)(j->d.n * j->d.s);
  for (int64_t c = c0; c < c1; c++) {
    double mean, var, sq;
    if (j->training) {
      channel_stats(j, c, &mean, &sq);
      var = sq / m;
      if (j->running_mean) {
        float *rm = at(j->running_mean, c), *rv = at(j->running_var, c);
        *rm = (float)(j->momentum * mean + (1 - j->momentum) * *rm);
        *rv = (float)(j->momentum * (sq / (m - 1)) + (1 - j->momentum) * *rv);
      }
    } else {
      mean = *at(j->running_mean, c), var = *at(j->running_var, c);
    }
    double invstd = 1 / sqrt(var + j->eps);
    double w = j->weight ? j->weight[c] : 1.0, b = j->bias ? j->bias[c] : 0.0;
    j->param[3 * c] = mean;
    j->param[3 * c + 1] = invstd * w;
    j->param[3 * c + 2] = b;
    j->save_mean[c] = (float)mean;
    j->save_invstd[c] = (float)invstd;
  }
}

/* Rows [r0, r1) of the output, row r = (n, c): in memory order, so the
   hardware prefetcher streams them (a channel's rows are C * S apart). */
static void forward_rows(const void *ctx, int64_t r0, int64_t r1) {
  const bn_forward_job *j = ctx;
  int64_t s = j->d.s;
  for (int64_t r = r0; r < r1; r++) {
    const double *p = j->param + 3 * (r % j->d.c);
    if (j->relu) dn_norm_forward_run(j->y + r * s, j->x + r * s, s, p[0], p[1], p[2], true);
    else dn_norm_forward_run(j->y + r * s, j->x + r * s, s, p[0], p[1], p[2], false);
  }
}

/* Tasks for a pass over `units` rows or channels of `work` elements in all, as dn_parallel_rows cuts. */
static int tasks_for(int64_t units, int64_t work) {
  int t = dn_threads_for(work);
  return units < t ? (int)units : t;
}

/* The most tasks_for gives (no contention): the scratch's count of parts (internal.h, dn_threads_most_for). */
static int most_tasks_for(int64_t units, int64_t work) {
  int t = dn_threads_most_for(work);
  return units < t ? (int)units : t;
}

/* Zeroed scratch of `floats` floats for each of `tasks` tasks, each part 64-byte aligned (*stride floats
   apart), or DN_ENOMEM naming op. */
static dn_status task_scratch(float **out, int64_t *stride, const char *op, int tasks, int64_t floats) {
  int64_t part = (floats + 15) / 16 * 16, bytes;
  *out = NULL;
  if (!dn_size_mul(part, tasks, &bytes) || !dn_size_mul(bytes, (int64_t)sizeof **out, &bytes) ||
      !(*out = dn_alloc((size_t)bytes)))
    return dn_fail(DN_ENOMEM, "%s: out of memory for %d scratch planes of %lld floats", op, tasks, (long long)floats);
  memset(*out, 0, (size_t)bytes);
  *stride = part;
  return DN_OK;
}

/* The write pass of batch norm + ReLU + max pool: rows (n, c) of [N, C, H, W] in memory order, split by
   dn_split, each normalized into its task's scratch plane and pooled from there. */
typedef struct bn_pool_job {
  const bn_forward_job *bn;
  int64_t in_w, out_h, out_w;
  float *y;                  /* [N, C, out_h, out_w] */
  uint8_t *idx;              /* the same: window codes, or NULL: no node, no indices */
  float *scratch;            /* per task: a plane, zeros the chunked pool may read (max_2x2_slack), the plane's
                                argmax (int32, out floats) */
  int64_t plane_floats;      /* the plane and its slack */
  int64_t scratch_floats;    /* floats from one task's part to the next */
  int tasks;
  const uint8_t *keep;       /* channel dropout's decision of each row (n, c), or NULL: no dropout */
  float scale;               /* the dropout's scale of kept rows */
} bn_pool_job;

/*
** The saved indices as each window's code, one byte: where its argmax is
** in the window (max_plane_2x2's codes: 0, 1 top row, 2, 3 bottom row),
** and WINDOW_NONE where y <= 0 (ReLU's backward zeroes the window's
** gradient: none to route). A quarter of the int32 plane indices the
** unfused pool keeps: both backward passes read them again, and the small
** CNN's batch norm passes wait on memory. One loop over the plane's
** outputs (a row's 7 or 14 would leave the vector loop to its remainder).
*/
static void window_codes(uint8_t *restrict code, const int32_t *restrict at, const float *restrict y, int64_t n) {
#pragma omp simd
  for (int64_t o = 0; o < n; o++) code[o] = (uint8_t)(y[o] <= 0.0f ? WINDOW_NONE : at[o]);
}

static void forward_pool_task(void *ctx, int task, int tasks) {
  const bn_pool_job *j = ctx;
  const bn_forward_job *f = j->bn;
  int64_t s = f->d.s, out = j->out_h * j->out_w, rows = f->d.n * f->d.c;
  float *plane = j->scratch + task * j->scratch_floats;
  const float *plane_end = plane + j->plane_floats;
  int32_t *at = (int32_t *)plane_end;
  for (int64_t r = dn_split(rows, task, tasks); r < dn_split(rows, task + 1, tasks); r++) {
    float *y = j->y + r * out;
    uint8_t *code = j->idx ? j->idx + r * out : NULL;
    if (j->keep && !j->keep[r]) {   /* dropped: zeros, and no gradient to route */
      memset(y, 0, (size_t)out * sizeof *y);
      if (code) memset(code, WINDOW_NONE, (size_t)out);
      continue;
    }
    const double *p = f->param + 3 * (r % f->d.c);
    dn_norm_forward_run(plane, f->x + r * s, s, p[0], p[1], p[2], true);
    max_plane_2x2(y, code ? at : NULL, plane, plane_end, j->in_w, j->out_h, j->out_w, true);
    if (code) window_codes(code, at, y, out);
    if (j->keep) {
      float scale = j->scale;
#pragma omp simd
      for (int64_t o = 0; o < out; o++) y[o] *= scale;
    }
  }
}

/* --- backward --------------------------------------------------------------------------- */

/* A backward pass: per channel the sums, dweight and dbias (channels
   [c0, c1) per task); dx's rows later (defer_dx). Outputs NULL when not
   wanted. With y (the output of batch norm + ReLU) g is read through ReLU's
   backward. */
typedef struct bn_backward_job {
  bn_dims d;
  bool training;
  const float *x, *g, *y, *weight, *mean, *invstd;   /* y, weight may be NULL */
  float *dweight, *dbias;
  double *param;   /* [C][3]: k, g_shift, xmu_scale of each channel's dx */
  /* with the pool: g is the pool's output gradient [N, C, out_h, out_w] */
  const uint8_t *idx;        /* the saved code of each window's argmax (window_codes) */
  int64_t in_w, out_h, out_w;
  float *scratch;            /* per task: a plane of the rebuilt gradient, zeroed before the pass */
  int64_t scratch_floats;
  float g_scale;             /* g's factor on the way into the plane: the dropout's scale, else 1 */
} bn_backward_job;

/* dx of n elements of a channel; with relu (a constant once inlined) g through ReLU's backward at y. */
static DN_ALWAYS_INLINE void backward_run(float *dx, const float *x, const float *g, const float *y, int64_t n,
                                          double mean, double k, double g_shift, double xmu_scale, bool relu) {
  float hi = (float)mean, lo = (float)(mean - hi), kf = (float)k, shift = (float)g_shift, xs = (float)xmu_scale;
#pragma omp simd
  for (int64_t s = 0; s < n; s++) {
    float gs = relu ? relu_grad(g[s], y[s]) : g[s];
    dx[s] = kf * (gs - shift - (x[s] - hi - lo) * xs);
  }
}

/* dbias, dweight and the parameters of dx of channel c, from its lanes of sum g and sum g * (x - mean). */
static void channel_result(const bn_backward_job *j, int64_t c, const double acc_g[LANES],
                           const double acc_gx[LANES]) {
  double invstd = j->invstd[c], sum_g = lanes_total(acc_g), sum_g_xmu = lanes_total(acc_gx);
  if (j->dbias) j->dbias[c] = (float)sum_g;
  if (j->dweight) j->dweight[c] = (float)(sum_g_xmu * invstd);
  double m = (double)(j->d.n * j->d.s);
  j->param[3 * c] = (j->weight ? j->weight[c] : 1.0) * invstd;
  j->param[3 * c + 1] = j->training ? sum_g / m : 0;
  j->param[3 * c + 2] = j->training ? sum_g_xmu * invstd * invstd / m : 0;
}

/* Channels [c0, c1); fused: whether j->y is given, a constant once inlined. */
static DN_ALWAYS_INLINE void backward_channel_range(const bn_backward_job *j, int64_t c0, int64_t c1, bool fused) {
  bn_dims d = j->d;
  for (int64_t c = c0; c < c1; c++) {
    double mean = j->mean[c], acc_g[LANES] = {0}, acc_gx[LANES] = {0};
    for (int64_t n = 0; n < d.n; n++) {
      int64_t at = (n * d.c + c) * d.s;
      lanes_g_gx(acc_g, acc_gx, j->g + at, fused ? j->y + at : NULL, j->x + at, d.s, mean);
    }
    channel_result(j, c, acc_g, acc_gx);
  }
}

static void backward_channels(const void *ctx, int64_t c0, int64_t c1) {
  const bn_backward_job *j = ctx;
  if (j->y) backward_channel_range(j, c0, c1, true);
  else backward_channel_range(j, c0, c1, false);
}

/* Rows [r0, r1) of dx into dst, row r = (n, c), in memory order. */
static void backward_rows(const bn_backward_job *j, int64_t r0, int64_t r1, float *dst) {
  int64_t s = j->d.s;
  for (int64_t r = r0; r < r1; r++) {
    int64_t c = r % j->d.c;
    const double *p = j->param + 3 * c;
    const float *x = j->x + r * s, *g = j->g + r * s;
    float *dx = dst + (r - r0) * s;
    if (j->y) backward_run(dx, x, g, j->y + r * s, s, j->mean[c], p[0], p[1], p[2], true);
    else backward_run(dx, x, g, NULL, s, j->mean[c], p[0], p[1], p[2], false);
  }
}

/* With the pool: row r's gradient as the chain hands it to batch norm + ReLU's backward, into plane. */
static void unpool_row(float *plane, const bn_backward_job *j, int64_t r) {
  dn_unpool_2x2 u = {j->g, j->idx, j->in_w, j->out_h, j->out_w, j->g_scale};
  dn_unpool_2x2_row(plane, &u, r);
}

/*
** backward_channel_range with the pool: the same lanes over the rebuilt
** rows, each channel's rows in the order of n, channels by dn_split. A block
** of channels is walked together, (n, c) for c in the block, so the rows
** are read in memory order (one channel at a time reads rows C * S apart:
** the short gradient and index rows then came in at the cache's latency).
*/
enum { CHANNEL_BLOCK = 8 };
static void backward_pool_channels(void *ctx, int task, int tasks) {
  const bn_backward_job *j = ctx;
  bn_dims d = j->d;
  float *plane = j->scratch + task * j->scratch_floats;
  int64_t c1 = dn_split(d.c, task + 1, tasks);
  for (int64_t cb = dn_split(d.c, task, tasks); cb < c1; cb += CHANNEL_BLOCK) {
    int64_t block = c1 - cb < CHANNEL_BLOCK ? c1 - cb : CHANNEL_BLOCK;
    double acc_g[CHANNEL_BLOCK][LANES] = {{0}}, acc_gx[CHANNEL_BLOCK][LANES] = {{0}};
    for (int64_t n = 0; n < d.n; n++)
      for (int64_t k = 0; k < block; k++) {
        int64_t r = n * d.c + cb + k;
        unpool_row(plane, j, r);
        lanes_g_gx(acc_g[k], acc_gx[k], plane, NULL, j->x + r * d.s, d.s, j->mean[cb + k]);
      }
    for (int64_t k = 0; k < block; k++) channel_result(j, cb + k, acc_g[k], acc_gx[k]);
  }
}

/* backward_rows with the pool: rows [r0, r1) of dx into dst, each rebuilt in plane (S floats, zeroed once). */
static void backward_pool_rows(const bn_backward_job *j, int64_t r0, int64_t r1, float *dst, float *plane) {
  int64_t s = j->d.s;
  for (int64_t r = r0; r < r1; r++) {
    int64_t c = r % j->d.c;
    const double *p = j->param + 3 * c;
    unpool_row(plane, j, r);
    backward_run(dst + (r - r0) * s, j->x + r * s, plane, NULL, s, j->mean[c], p[0], p[1], p[2], false);
  }
}

/*
** Training's dx is left deferred (deferred.h): a convolution before the
** batch norm writes each image's rows of it into its own scratch as it reads
** them, so dx (with the pool, four times the block's output) is never
** written to memory and read back; anywhere else it is materialized by the
** same rows. It holds what backward_rows or backward_pool_rows read.
*/
typedef struct deferred_dx {
  dn_deferred base;
  bn_backward_job job;   /* its x, g, y, idx, mean and param: those below (y, idx: NULL without) */
  dn_tensor *x, *g, *y, *idx, *mean;
  double *param;
} deferred_dx;

static void deferred_dx_fill(const dn_deferred *d, int64_t r0, int64_t r1, float *dst, float *scratch) {
  const bn_backward_job *j = &((const deferred_dx *)d)->job;
  if (j->idx) backward_pool_rows(j, r0, r1, dst, scratch);
  else backward_rows(j, r0, r1, dst);
}

static void deferred_dx_release(dn_deferred *d) {
  deferred_dx *p = (deferred_dx *)d;
  dn_tensor_release(p->x);
  dn_tensor_release(p->g);
  dn_tensor_release(p->y);
  dn_tensor_release(p->idx);
  dn_tensor_release(p->mean);
  dn_free(p->param);
  dn_free(p);
}

/* *dx: a gradient of shape whose values are j's rows (j's x, g, y, idx, mean: the tensors given, held, y and
   idx when j has them; *param: taken over). */
static dn_status defer_dx(dn_tensor **dx, int ndim, const int64_t *shape, const bn_backward_job *j, dn_tensor *x,
                          dn_tensor *g, dn_tensor *y, dn_tensor *idx, dn_tensor *mean, double **param,
                          const char *op) {
  deferred_dx *p = dn_alloc(sizeof *p);
  if (!p) return dn_fail(DN_ENOMEM, "%s: out of memory for its deferred input gradient", op);
  *p = (deferred_dx){.base = {.rows = j->d.n * j->d.c, .row_len = j->d.s, .scratch_floats = j->idx ? j->d.s : 0,
                              .fill = deferred_dx_fill, .release = deferred_dx_release},
                     .job = *j, .x = dn_tensor_retain(x), .g = dn_tensor_retain(g),
                     .y = j->y ? dn_tensor_retain(y) : NULL, .idx = j->idx ? dn_tensor_retain(idx) : NULL,
                     .mean = dn_tensor_retain(mean), .param = *param};
  /* only what the rows read stays pointed to */
  p->job.scratch = p->job.dweight = p->job.dbias = NULL;
  p->job.weight = p->job.invstd = NULL;
  *param = NULL;
  dn_status st = dn_tensor_new_deferred(dx, ndim, shape, &p->base);
  return st ? dn_fail_as(st, op) : DN_OK;
}

/* The backward sums with the pool (dx: defer_dx); DN_ENOMEM naming op. */
static dn_status backward_pooled(bn_backward_job *j, const char *op) {
  bn_dims d = j->d;
  dn_status st = task_scratch(&j->scratch, &j->scratch_floats, op, most_tasks_for(d.c, 2 * d.c * d.n * d.s), d.s);
  if (st) return st;
  dn_parallel(tasks_for(d.c, 2 * d.c * d.n * d.s), backward_pool_channels, j);
  dn_free(j->scratch);
  j->scratch = NULL;
  return DN_OK;
}

/* [C][3] doubles of per-channel parameters, or DN_ENOMEM naming op. */
static dn_status channel_params(double **out, const char *op, int64_t c) {
  if (!(*out = dn_alloc((size_t)(3 * c + 1) * sizeof **out)))
    return dn_fail(DN_ENOMEM, "%s: out of memory for %lld channels' parameters", op, (long long)c);
  return DN_OK;
}

static dn_status batch_norm_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  bn_dims d = dims_of(node->in_ndim[0], node->in_shape[0]);
  bool pool = node->ints[NODE_POOL] != 0;
  dn_tensor *x, *mean, *invstd, *weight = NULL, *y = NULL, *idx = NULL, *xc = NULL, *gc = NULL, *wc = NULL;
  dn_status st = dn_node_saved(node, SAVED_X, &x);
  if (!st) st = dn_node_saved(node, SAVED_MEAN, &mean);
  if (!st) st = dn_node_saved(node, SAVED_INVSTD, &invstd);
  if (!st && node->saved[SAVED_WEIGHT]) st = dn_node_saved(node, SAVED_WEIGHT, &weight);
  /* the forward's own tensors: contiguous */
  if (!st && pool) st = dn_node_saved(node, SAVED_INDICES, &idx);
  else if (!st && node->ints[NODE_RELU]) st = dn_node_saved(node, SAVED_Y, &y);
  if (!st) st = dn_plain_contiguous(&xc, x);
  if (!st) st = dn_plain_contiguous(&gc, grad);
  if (!st && weight) st = dn_plain_contiguous(&wc, weight);
  bool defer = d.n > 0 && node->needs_grad[0];   /* dx: defer_dx */
  for (int i = 0; i < 3 && !st; i++)
    if (node->needs_grad[i] && !(i == 0 && defer))
      st = dn_tensor_new(&grad_in[i], DN_F32, node->in_ndim[i], node->in_shape[i]);
  double *param = NULL;
  if (!st) st = channel_params(&param, node->type->name, d.c);
  if (!st) {
    bn_backward_job job = {d, node->ints[NODE_TRAINING] != 0, dn_tensor_data(xc), dn_tensor_data(gc),
                           y ? dn_tensor_data(y) : NULL, wc ? dn_tensor_data(wc) : NULL, dn_tensor_data(mean),
                           dn_tensor_data(invstd),
                           grad_in[1] ? dn_tensor_data(grad_in[1]) : NULL,
                           grad_in[2] ? dn_tensor_data(grad_in[2]) : NULL, param,
                           idx ? dn_tensor_data(idx) : NULL, pool ? node->in_shape[0][3] : 0,
                           pool ? grad->shape[2] : 0, pool ? grad->shape[3] : 0, NULL, 0,
                           pool ? (float)node->scalars[NODE_GRAD_SCALE] : 1.0f};
    if (pool) st = backward_pooled(&job, node->type->name);
    else dn_parallel_rows(d.c, 2 * d.n * d.s, backward_channels, &job);
    if (!st && defer)
      st = defer_dx(&grad_in[0], node->in_ndim[0], node->in_shape[0], &job, xc, gc, y, idx, mean, &param,
                    node->type->name);
  }
  dn_free(param);
  dn_tensor_release(wc);
  dn_tensor_release(gc);
  dn_tensor_release(xc);
  return st;
}
static const dn_node_type batch_norm_node = {.name = "batch_norm", .backward = batch_norm_backward};
static const dn_node_type batch_norm_relu_node = {.name = "batch_norm_relu", .backward = batch_norm_backward};
static const dn_node_type batch_norm_relu_max_pool2d_node = {.name = "batch_norm_relu_max_pool2d",
                                                              .backward = batch_norm_backward};
static const dn_node_type batch_norm_relu_max_pool2d_dropout2d_node = {.name = "batch_norm_relu_max_pool2d_dropout2d",
                                                                       .backward = batch_norm_backward};

/* --- checks ------------------------------------------------------------------------------- */

dn_status dn_batch_norm_check_channels(const char *op, const char *what, const dn_tensor *t, int64_t c,
                                       const char *per) {
  if (!t) return DN_OK;
  dn_status st = dn_check_float(op, what, t);
  if (st) return st;
  char ts[128];
  if (t->ndim != 1 || t->shape[0] != c)
    return dn_fail(DN_ESHAPE, "%s: %s must be [%lld], one value per %s (got shape %s)", op, what, (long long)c, per,
                   dn_shape_str(t, ts, sizeof ts));
  return DN_OK;
}

/* A running statistic updated in place: no graph, no expanded view. */
static dn_status check_running_writable(const char *op, const char *what, const dn_tensor *t) {
  if (t->requires_grad)
    return dn_fail(DN_EINVAL, "%s: %s must not require grad (it is updated in place)", op, what);
  return dn_check_writable(op, t);
}

static dn_status check_args(const char *op, const dn_tensor *x, const dn_tensor *weight, const dn_tensor *bias,
                            const dn_tensor *running_mean, const dn_tensor *running_var, bool training,
                            double momentum, double eps) {
  char xs[128];
  dn_status st = dn_check_float(op, "input", x);
  if (st) return st;
  if (x->ndim < 2 || x->ndim > 4)
    return dn_fail(DN_ESHAPE, "%s: input must be [N, C], [N, C, L] or [N, C, H, W] (got shape %s)", op,
                   dn_shape_str(x, xs, sizeof xs));
  for (int i = 1; i < x->ndim; i++)
    if (x->shape[i] == 0)
      return dn_fail(DN_ESHAPE, "%s: input %s has an empty dim (only the batch N may be 0)", op,
                     dn_shape_str(x, xs, sizeof xs));
  char per[160];
  snprintf(per, sizeof per, "channel of input %s", dn_shape_str(x, xs, sizeof xs));
  st = dn_batch_norm_check_channels(op, "weight", weight, x->shape[1], per);
  if (!st) st = dn_batch_norm_check_channels(op, "bias", bias, x->shape[1], per);
  if (!st) st = dn_batch_norm_check_channels(op, "running_mean", running_mean, x->shape[1], per);
  if (!st) st = dn_batch_norm_check_channels(op, "running_var", running_var, x->shape[1], per);
  if (st) return st;
  st = dn_batch_norm_check_state(op, running_mean, running_var, training, momentum, eps);
  if (st) return st;
  bn_dims d = dims_of(x->ndim, x->shape);
  if (training && d.n * d.s == 1)
    return dn_fail(DN_ESHAPE, "%s: expected more than 1 value per channel when training (got input %s)", op,
                   dn_shape_str(x, xs, sizeof xs));
  return DN_OK;
}

dn_status dn_batch_norm_check_state(const char *op, const dn_tensor *running_mean, const dn_tensor *running_var,
                                    bool training, double momentum, double eps) {
  if (!running_mean != !running_var)
    return dn_fail(DN_EINVAL, "%s: running_mean and running_var go together (got only %s)", op,
                   running_mean ? "running_mean" : "running_var");
  if (!training && !running_mean)
    return dn_fail(DN_EINVAL, "%s: eval mode (training false) needs running_mean and running_var", op);
  if (!(eps >= 0) || isinf(eps)) return dn_fail(DN_EINVAL, "%s: eps must be finite and >= 0 (got %g)", op, eps);
  if (!(momentum >= 0 && momentum <= 1))
    return dn_fail(DN_EINVAL, "%s: momentum must be in [0, 1] (got %g)", op, momentum);
  dn_status st = DN_OK;
  if (training && running_mean) {
    st = check_running_writable(op, "running_mean", running_mean);
    if (!st) st = check_running_writable(op, "running_var", running_var);
  }
  return st;
}

/* The input of batch norm + ReLU + max pool: float32 [N, C, H, W] holding a 2x2 window (H, W >= 2), with
   planes that int32 indices address. Checked before check_args, whose message lists other layouts. */
static dn_status check_pool_input(const char *op, const dn_tensor *x) {
  char xs[128];
  dn_status st = dn_check_float(op, "input", x);
  if (st) return st;
  if (x->ndim != 4 || x->shape[2] < 2 || x->shape[3] < 2)
    return dn_fail(DN_ESHAPE, "%s: input must be [N, C, H, W] with H >= 2 and W >= 2 for the 2x2 pool (got shape %s)",
                   op, dn_shape_str(x, xs, sizeof xs));
  int64_t plane;
  if (!dn_size_mul(x->shape[2], x->shape[3], &plane) || plane > INT32_MAX)
    return dn_fail(DN_ESHAPE, "%s: input %s has planes of more than 2^31 - 1 elements (int32 indices)", op,
                   dn_shape_str(x, xs, sizeof xs));
  return DN_OK;
}

/* Channel dropout after the pool: the decision of each row (n, c), and the kept rows' scale. */
typedef struct bn_dropout {
  const uint8_t *keep;
  float scale;
} bn_dropout;

/* Whether type pools. */
static bool pools(const dn_node_type *type) {
  return type == &batch_norm_relu_max_pool2d_node || type == &batch_norm_relu_max_pool2d_dropout2d_node;
}

/* The checks of a batch norm entry point (type: which); the pool's input first, as its message is narrower. */
static dn_status check_batch_norm(const dn_node_type *type, const dn_tensor *x, const dn_tensor *weight,
                                  const dn_tensor *bias, const dn_tensor *running_mean,
                                  const dn_tensor *running_var, bool training, double momentum, double eps) {
  dn_status st = pools(type) ? check_pool_input(type->name, x) : DN_OK;
  if (!st) st = check_args(type->name, x, weight, bias, running_mean, running_var, training, momentum, eps);
  return st;
}

/* The forward of dn_batch_norm, dn_batch_norm_relu, dn_batch_norm_relu_max_pool2d and the last with a
   dropout (drop: its decisions; NULL: none drawn): type says which. The arguments are checked. */
static dn_status batch_norm(dn_tensor **out, dn_tensor *x, dn_tensor *weight, dn_tensor *bias,
                            dn_tensor *running_mean, dn_tensor *running_var, bool training, double momentum,
                            double eps, const dn_node_type *type, const bn_dropout *drop) {
  *out = NULL;
  bool pool = pools(type), relu = pool || type == &batch_norm_relu_node;
  dn_status st;
  bn_dims d = dims_of(x->ndim, x->shape);
  if (d.n == 0) running_mean = running_var = NULL;   /* nothing to learn from */
  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
  if (pool) shape[2] /= 2, shape[3] /= 2;   /* floor: an odd last row or column is in no window */
  dn_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *idx = NULL, *mean = NULL, *invstd = NULL;
  dn_node *node = NULL;
  st = dn_plain_contiguous(&xc, x);
  if (!st && weight) st = dn_plain_contiguous(&wc, weight);
  if (!st && bias) st = dn_plain_contiguous(&bc, bias);
  if (!st) st = dn_tensor_new(&y, DN_F32, x->ndim, shape);
  if (!st) st = dn_tensor_new(&mean, DN_F32, 1, &d.c);
  if (!st) st = dn_tensor_new(&invstd, DN_F32, 1, &d.c);
  double *param = NULL;
  if (!st) st = channel_params(&param, type->name, d.c);
  /* the node before the passes: the pool writes indices only for one; everything is allocated before the
     running statistics change */
  if (!st) st = dn_record(y, type, 3, (const dn_tensor *[]){x, weight, bias}, &node);
  if (!st && node && pool) st = dn_tensor_new(&idx, DN_U8, 4, shape);
  bn_pool_job pj = {.tasks = 0};
  if (!st && pool && d.n > 0) {
    pj = (bn_pool_job){.in_w = x->shape[3], .out_h = shape[2], .out_w = shape[3],
                       .tasks = tasks_for(d.n * d.c, 2 * d.n * d.c * d.s), .keep = drop ? drop->keep : NULL,
                       .scale = drop ? drop->scale : 1.0f};
    st = task_scratch(&pj.scratch, &pj.scratch_floats, type->name, most_tasks_for(d.n * d.c, 2 * d.n * d.c * d.s),
                      d.s + max_2x2_slack(shape[3]) + shape[2] * shape[3]);
    pj.plane_floats = d.s + max_2x2_slack(shape[3]);
  }
  if (!st) {
    bn_forward_job job = {d, dn_tensor_data(xc), wc ? dn_tensor_data(wc) : NULL, bc ? dn_tensor_data(bc) : NULL,
                          dn_tensor_data(y), running_mean, running_var, training, relu, momentum, eps,
                          dn_tensor_data(mean), dn_tensor_data(invstd), param, NULL, NULL};
    /* the rows' sums: the input's own, or one pass here */
    if (training && d.n > 0 && !(job.sums = dn_row_stats_of(x, d.n * d.c, d.s))) {
      if ((job.own_sums = dn_alloc((size_t)(d.n * d.c * ROW_STATS_SUMS) * sizeof(double)))) {
        dn_row_sums_job rj = {job.x, d.s, job.own_sums};
        dn_parallel_rows(d.n * d.c, d.s, dn_row_sums_range, &rj);
        job.sums = job.own_sums;
      } else {
        st = dn_fail(DN_ENOMEM, "%s: out of memory for the sums of %lld rows", type->name, (long long)(d.n * d.c));
      }
    }
    if (!st && d.n > 0) {
      dn_parallel_rows(d.c, training ? d.n : 1, forward_channels, &job);
      if (pool) {
        pj.bn = &job;
        pj.y = dn_tensor_data(y);
        pj.idx = idx ? dn_tensor_data(idx) : NULL;
        dn_parallel(pj.tasks, forward_pool_task, &pj);
      } else {
        dn_parallel_rows(d.n * d.c, 2 * d.s, forward_rows, &job);
      }
    } else if (!st) {   /* an empty batch: a node whose backward gives zeros */
      memset(job.save_mean, 0, (size_t)d.c * sizeof(float));
      memset(job.save_invstd, 0, (size_t)d.c * sizeof(float));
    }
    if (!st && training && running_mean) {
      dn_bump_version(running_mean);
      dn_bump_version(running_var);
    }
    dn_free(job.own_sums);
  }
  dn_free(pj.scratch);
  dn_free(param);
  if (!st && node) {
    node->ints[NODE_TRAINING] = training;
    node->ints[NODE_RELU] = relu;
    node->ints[NODE_POOL] = pool;
    node->scalars[NODE_GRAD_SCALE] = drop ? drop->scale : 1.0;
    st = save_for_backward(node, x, weight, mean, invstd);
    if (!st && pool) st = dn_node_save(node, SAVED_INDICES, idx);   /* the pool's routes and ReLU's mask */
    else if (!st && relu) st = dn_node_save(node, SAVED_Y, y);     /* ReLU's mask in backward */
  }
  dn_tensor_release(idx);
  dn_tensor_release(invstd);
  dn_tensor_release(mean);
  dn_tensor_release(bc);
  dn_tensor_release(wc);
  dn_tensor_release(xc);
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  *out = y;
  return DN_OK;
}

/* A checked entry point without dropout. */
static dn_status batch_norm_checked(dn_tensor **out, dn_tensor *x, dn_tensor *weight, dn_tensor *bias,
                                    dn_tensor *running_mean, dn_tensor *running_var, bool training, double momentum,
                                    double eps, const dn_node_type *type) {
  *out = NULL;
  dn_status st = check_batch_norm(type, x, weight, bias, running_mean, running_var, training, momentum, eps);
  if (st) return st;
  return batch_norm(out, x, weight, bias, running_mean, running_var, training, momentum, eps, type, NULL);
}

dn_status dn_batch_norm(dn_tensor **out, dn_tensor *x, dn_tensor *weight, dn_tensor *bias, dn_tensor *running_mean,
                        dn_tensor *running_var, bool training, double momentum, double eps) {
  DN_FPMODE_SCOPE();
  return batch_norm_checked(out, x, weight, bias, running_mean, running_var, training, momentum, eps,
                            &batch_norm_node);
}

dn_status dn_batch_norm_relu(dn_tensor **out, dn_tensor *x, dn_tensor *weight, dn_tensor *bias,
                             dn_tensor *running_mean, dn_tensor *running_var, bool training, double momentum,
                             double eps) {
  DN_FPMODE_SCOPE();
  return batch_norm_checked(out, x, weight, bias, running_mean, running_var, training, momentum, eps,
                            &batch_norm_relu_node);
}

dn_status dn_batch_norm_relu_max_pool2d(dn_tensor **out, dn_tensor *x, dn_tensor *weight, dn_tensor *bias,
                                        dn_tensor *running_mean, dn_tensor *running_var, bool training,
                                        double momentum, double eps) {
  DN_FPMODE_SCOPE();
  return batch_norm_checked(out, x, weight, bias, running_mean, running_var, training, momentum, eps,
                            &batch_norm_relu_max_pool2d_node);
}

dn_status dn_batch_norm_relu_max_pool2d_dropout2d(dn_tensor **out, dn_tensor *x, dn_tensor *weight,
                                                  dn_tensor *bias, dn_tensor *running_mean, dn_tensor *running_var,
                                                  bool training, double momentum, double eps, double p, dn_rng *rng,
                                                  dn_dropout_scaling scaling) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const dn_node_type *type = &batch_norm_relu_max_pool2d_dropout2d_node;
  dn_status st = check_batch_norm(type, x, weight, bias, running_mean, running_var, training, momentum, eps);
  if (!st) st = dn_dropout_check_params(type->name, p, rng, scaling);
  /* one decision per (n, c) of the pool's output */
  dn_channel_keep drop = {0};
  if (!st) st = dn_dropout_channel_keep(type->name, rng, x->shape[0], x->shape[1], p, scaling, &drop);
  if (st) return st;
  bn_dropout bd = {drop.keep, drop.scale};
  st = batch_norm(out, x, weight, bias, running_mean, running_var, training, momentum, eps, type,
                  drop.keep ? &bd : NULL);
  dn_free(drop.keep);
  if (!st) rng->offset += drop.advance;
  return st;
}

/* --- layer and group normalization -----------------------------------------------------
**
** Both normalize rows of consecutive elements of the contiguous input: a
** layer norm's rows are its normalized blocks (R rows of L elements), a
** group norm's the (sample, group) blocks of (C / G) * S elements. The
** affine parameter of element i of row r is
**   p = ((r % groups) * L + i) / span
** (layer norm: groups 1, span 1, so p = i; group norm: span S, so p is the
** channel). Forward and dx run over whole rows per task; dweight and dbias
** over whole parameters per task, each summing its rows in order, so the
** bits do not depend on the thread count.
*/

typedef struct row_geom {
  int64_t rows, len;       /* R rows of L elements */
  int64_t groups, span;    /* parameter p of element i of row r: ((r % groups) * len + i) / span */
} row_geom;

static inline int64_t param_of(const row_geom *g, int64_t r, int64_t i) {
  return ((r % g->groups) * g->len + i) / g->span;
}

typedef struct row_job {
  row_geom g;
  double eps;
  const float *x, *g_out, *weight, *bias;   /* weight, bias contiguous or NULL */
  float *y, *mean, *invstd;                 /* forward: y and the per-row statistics */
  float *dx, *dweight, *dbias;              /* backward */
} row_job;

static void row_forward(const void *ctx, int64_t r0, int64_t r1) {
  const row_job *j = ctx;
  int64_t len = j->g.len;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + r * len;
    float *y = j->y + r * len;
    double acc[LANES] = {0};
    lanes_sum(acc, x, len);
    double mean = lanes_total(acc) / (double)len;
    memset(acc, 0, sizeof acc);
    lanes_sq_dev(acc, x, len, mean);
    double invstd = 1 / sqrt(lanes_total(acc) / (double)len + j->eps);
    for (int64_t i = 0; i < len; i++) {
      int64_t p = param_of(&j->g, r, i);
      double v = (x[i] - mean) * invstd;
      if (j->weight) v *= j->weight[p];
      if (j->bias) v += j->bias[p];
      y[i] = (float)v;
    }
    j->mean[r] = (float)mean;
    j->invstd[r] = (float)invstd;
  }
}

/* dx of rows [r0, r1): invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * weight. */
static void row_backward_input(const void *ctx, int64_t r0, int64_t r1) {
  const row_job *j = ctx;
  int64_t len = j->g.len;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + r * len, *g = j->g_out + r * len;
    double mean = j->mean[r], invstd = j->invstd[r], sum_d = 0, sum_dx = 0;
    for (int64_t i = 0; i < len; i++) {
      double d = j->weight ? (double)g[i] * j->weight[param_of(&j->g, r, i)] : g[i];
      sum_d += d;
      sum_dx += d * (x[i] - mean) * invstd;
    }
    double mean_d = sum_d / (double)len, mean_dx = sum_dx / (double)len;
    for (int64_t i = 0; i < len; i++) {
      double d = j->weight ? (double)g[i] * j->weight[param_of(&j->g, r, i)] : g[i];
      double xhat = (x[i] - mean) * invstd;
      j->dx[r * len + i] = (float)(invstd * (d - mean_d - xhat * mean_dx));
    }
  }
}

/* dweight and dbias of parameters [p0, p1): each over its rows in order. */
static void row_backward_params(const void *ctx, int64_t p0, int64_t p1) {
  const row_job *j = ctx;
  const row_geom *g = &j->g;
  int64_t per_group = g->len / g->span;   /* parameters per group */
  for (int64_t p = p0; p < p1; p++) {
    int64_t group = p / per_group, i0 = (p % per_group) * g->span;
    double sum_g = 0, sum_gx = 0;
    for (int64_t r = group; r < g->rows; r += g->groups) {
      const float *x = j->x + r * g->len, *go = j->g_out + r * g->len;
      double mean = j->mean[r], invstd = j->invstd[r];
      for (int64_t i = i0; i < i0 + g->span; i++) {
        sum_g += go[i];
        sum_gx += go[i] * (x[i] - mean) * invstd;
      }
    }
    if (j->dweight) j->dweight[p] = (float)sum_gx;
    if (j->dbias) j->dbias[p] = (float)sum_g;
  }
}

enum { NODE_LEN = 0, NODE_GROUPS = 1, NODE_SPAN = 2 };   /* node->ints of a row norm (its row_geom but rows) */

static dn_status row_norm_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_tensor *x, *mean, *invstd, *weight = NULL, *xc = NULL, *gc = NULL, *wc = NULL;
  dn_status st = dn_node_saved(node, SAVED_X, &x);
  if (!st) st = dn_node_saved(node, SAVED_MEAN, &mean);
  if (!st) st = dn_node_saved(node, SAVED_INVSTD, &invstd);
  if (!st && node->saved[SAVED_WEIGHT]) st = dn_node_saved(node, SAVED_WEIGHT, &weight);
  if (!st) st = dn_plain_contiguous(&xc, x);
  if (!st) st = dn_plain_contiguous(&gc, grad);
  if (!st && weight) st = dn_plain_contiguous(&wc, weight);
  for (int i = 0; i < 3 && !st; i++)
    if (node->needs_grad[i]) st = dn_tensor_new(&grad_in[i], DN_F32, node->in_ndim[i], node->in_shape[i]);
  if (!st) {
    int64_t rows = mean->shape[0];
    row_geom g = {rows, node->ints[NODE_LEN], node->ints[NODE_GROUPS], node->ints[NODE_SPAN]};
    row_job job = {g, 0, dn_tensor_data(xc), dn_tensor_data(gc), wc ? dn_tensor_data(wc) : NULL, NULL, NULL,
                   dn_tensor_data(mean), dn_tensor_data(invstd), grad_in[0] ? dn_tensor_data(grad_in[0]) : NULL,
                   grad_in[1] ? dn_tensor_data(grad_in[1]) : NULL, grad_in[2] ? dn_tensor_data(grad_in[2]) : NULL};
    if (job.dx && rows) dn_parallel_rows(rows, 2 * g.len, row_backward_input, &job);
    int64_t params = g.groups * g.len / g.span;
    if (job.dweight || job.dbias) {
      if (rows) {
        dn_parallel_rows(params, rows / g.groups * g.span, row_backward_params, &job);
      } else {
        if (job.dweight) memset(job.dweight, 0, (size_t)params * sizeof(float));
        if (job.dbias) memset(job.dbias, 0, (size_t)params * sizeof(float));
      }
    }
  }
  dn_tensor_release(wc);
  dn_tensor_release(gc);
  dn_tensor_release(xc);
  return st;
}
static const dn_node_type layer_norm_node = {.name = "layer_norm", .backward = row_norm_backward};
static const dn_node_type group_norm_node = {.name = "group_norm", .backward = row_norm_backward};

/* The forward of both, every argument checked by the caller. */
static dn_status row_norm(dn_tensor **out, dn_tensor *x, dn_tensor *weight, dn_tensor *bias, double eps,
                          const row_geom *g, const dn_node_type *type) {
  dn_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *mean = NULL, *invstd = NULL;
  dn_node *node = NULL;
  dn_status st = dn_plain_contiguous(&xc, x);
  if (!st && weight) st = dn_plain_contiguous(&wc, weight);
  if (!st && bias) st = dn_plain_contiguous(&bc, bias);
  if (!st) st = dn_tensor_new(&y, DN_F32, x->ndim, x->shape);
  if (!st) st = dn_tensor_new(&mean, DN_F32, 1, &g->rows);
  if (!st) st = dn_tensor_new(&invstd, DN_F32, 1, &g->rows);
  if (!st) {
    row_job job = {*g, eps, dn_tensor_data(xc), NULL, wc ? dn_tensor_data(wc) : NULL, bc ? dn_tensor_data(bc) : NULL,
                   dn_tensor_data(y), dn_tensor_data(mean), dn_tensor_data(invstd), NULL, NULL, NULL};
    if (g->rows) dn_parallel_rows(g->rows, 2 * g->len, row_forward, &job);
    st = dn_record(y, type, 3, (const dn_tensor *[]){x, weight, bias}, &node);
  }
  if (!st && node) {
    node->ints[NODE_LEN] = g->len;
    node->ints[NODE_GROUPS] = g->groups;
    node->ints[NODE_SPAN] = g->span;
    st = save_for_backward(node, x, weight, mean, invstd);
  }
  dn_tensor_release(invstd);
  dn_tensor_release(mean);
  dn_tensor_release(bc);
  dn_tensor_release(wc);
  dn_tensor_release(xc);
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  *out = y;
  return DN_OK;
}

/* A row norm's affine tensor: float32 of the given shape, or NULL. */
static dn_status check_affine(const char *op, const char *what, const dn_tensor *t, int ndim, const int64_t *shape,
                              const char *expected) {
  if (!t) return DN_OK;
  dn_status st = dn_check_float(op, what, t);
  if (st) return st;
  bool same = t->ndim == ndim;
  for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
  char ts[128];
  if (!same)
    return dn_fail(DN_ESHAPE, "%s: %s must be %s (got shape %s)", op, what, expected, dn_shape_str(t, ts, sizeof ts));
  return DN_OK;
}

static dn_status check_eps(const char *op, double eps) {
  if (!(eps >= 0) || isinf(eps)) return dn_fail(DN_EINVAL, "%s: eps must be finite and >= 0 (got %g)", op, eps);
  return DN_OK;
}

/* "[3,4]" for a shape given as numbers. */
static const char *shape_list(int ndim, const int64_t *shape, char *buf, size_t size) {
  size_t n = (size_t)snprintf(buf, size, "[");
  for (int d = 0; d < ndim && n < size; d++)
    n += (size_t)snprintf(buf + n, size - n, d ? ",%lld" : "%lld", (long long)shape[d]);
  if (n < size) snprintf(buf + n, size - n, "]");
  return buf;
}

dn_status dn_layer_norm(dn_tensor **out, dn_tensor *x, int ndim, const int64_t *normalized_shape, dn_tensor *weight,
                        dn_tensor *bias, double eps) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const char *op = "layer_norm";
  char xs[128], ns[128];
  dn_status st = dn_check_float(op, "input", x);
  if (st) return st;
  if (ndim < 1 || ndim > x->ndim)
    return dn_fail(DN_ESHAPE, "%s: normalized_shape must have 1 to %d dims, the input's (got %d for input %s)", op,
                   x->ndim, ndim, dn_shape_str(x, xs, sizeof xs));
  int64_t len = 1;
  for (int d = 0; d < ndim; d++) {
    if (normalized_shape[d] != x->shape[x->ndim - ndim + d] || normalized_shape[d] == 0)
      return dn_fail(DN_ESHAPE, "%s: normalized_shape %s must be the last dims of input %s, none of them 0", op,
                     shape_list(ndim, normalized_shape, ns, sizeof ns), dn_shape_str(x, xs, sizeof xs));
    len *= normalized_shape[d];
  }
  shape_list(ndim, normalized_shape, ns, sizeof ns);
  st = check_affine(op, "weight", weight, ndim, normalized_shape, ns);
  if (!st) st = check_affine(op, "bias", bias, ndim, normalized_shape, ns);
  if (!st) st = check_eps(op, eps);
  if (st) return st;
  row_geom g = {dn_tensor_numel(x) / len, len, 1, 1};
  return row_norm(out, x, weight, bias, eps, &g, &layer_norm_node);
}

dn_status dn_group_norm(dn_tensor **out, dn_tensor *x, int64_t groups, dn_tensor *weight, dn_tensor *bias,
                        double eps) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const char *op = "group_norm";
  char xs[128], cs[64];
  dn_status st = dn_check_float(op, "input", x);
  if (st) return st;
  if (x->ndim < 2)
    return dn_fail(DN_ESHAPE, "%s: input must be [N, C, ...] (got shape %s)", op, dn_shape_str(x, xs, sizeof xs));
  for (int d = 1; d < x->ndim; d++)
    if (x->shape[d] == 0)
      return dn_fail(DN_ESHAPE, "%s: input %s has an empty dim (only the batch N may be 0)", op,
                     dn_shape_str(x, xs, sizeof xs));
  int64_t channels = x->shape[1];
  if (groups < 1 || channels % groups != 0)
    return dn_fail(DN_EINVAL, "%s: groups must be >= 1 and divide the %lld channels of input %s (got %lld)", op,
                   (long long)channels, dn_shape_str(x, xs, sizeof xs), (long long)groups);
  snprintf(cs, sizeof cs, "[%lld], one value per channel", (long long)channels);
  st = check_affine(op, "weight", weight, 1, &channels, cs);
  if (!st) st = check_affine(op, "bias", bias, 1, &channels, cs);
  if (!st) st = check_eps(op, eps);
  if (st) return st;
  bn_dims d = dims_of(x->ndim, x->shape);
  row_geom g = {d.n * groups, channels / groups * d.s, groups, d.s};
  return row_norm(out, x, weight, bias, eps, &g, &group_norm_node);
}
