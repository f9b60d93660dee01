/*
** Convolution (NCHW, float32): y = conv(x, w) + b, PyTorch's cross-correlation
** with stride, zero padding, dilation and groups.
**
** Forward, for each chunk of B batch elements (chunk_size: as many as fit
** an 8 MiB col): im2col copies the receptive fields of the chunk into col
** [in * KH * KW, B * OH * OW] (zeros where the padding is; element i in
** columns [i * OH * OW, (i + 1) * OH * OW)), and for each group one sgemm
** writes [out/G rows, B * OH * OW] = w_g @ col_g (a group's rows of w and of
** col are contiguous blocks); one pass copies that into y [N, out, OH, OW]
** adding the bias. With B = 1 the sgemm writes y directly. Backward reads
** the same layouts, the chunk's gradient first copied to [out, B * OH * OW]:
**   dx = col2im(w_g^T @ g_g)              one sgemm per group, then a pass
**   dw_g += g_g @ col_g^T                 im2col again (col is not kept)
**   db[o] = sum over n, positions of g    in double
** col is never saved between forward and backward: recomputing it costs one
** copy of x's receptive fields, keeping it would hold KH * KW copies of x per
** layer until backward.
**
** The chunk loop is serial and each step is parallel inside (im2col and
** col2im by whole rows / channels, sgemm by its own tiles), so every output
** element is computed by one fixed sequence of operations: the bits do not
** depend on the thread count, and dw accumulates over chunks in batch order.
** Scratch (col, dcol) comes from dn_alloc before any parallel loop.
**
** Depthwise convolutions (one input channel per group: groups = in) skip
** im2col: a group's sgemm would be [out/G, KH*KW] @ [KH*KW, OH*OW], too thin
** to run near the GEMM's speed (measured, N 8, C 1024, 28x28, 3x3: 3.7
** GFLOP/s against 78 for a dense conv of the same FLOPs, 20x slower). A
** direct loop per output plane instead adds w[o, ki, kj] times a shifted row
** of x into each output row (unit stride: vectorized); backward scatters the
** same way into dx planes and sums dw per output channel over the batch.
** Planes and channels are whole tasks, so the bits do not depend on threads.
**
** dn_conv1d is the same kernel over a height of 1: x [N, C, L] is read as
** [N, C, 1, L] through its strides, w [O, C/G, K] as [O, C/G, 1, K].
*/
#include <stdio.h>
#include <string.h>

#include "blas.h"
#include "conv_geom.h"
#include "dropnet/conv.h"
#include "graph.h"
#include "internal.h"
#include "lanes.h"
#include "shape.h"

enum { SAVED_X = 0, SAVED_W = 1 };
/* node->ints: stride, padding and dilation as {rows, columns}, then groups */
enum { NODE_STRIDE = 0, NODE_PADDING = 2, NODE_DILATION = 4, NODE_GROUPS = 6 };

/* --- im2col and col2im ----------------------------------------------------------- */

/* A chunk of batch elements [n0, n0 + count) of x as col [rows, count * positions]:
   element i's receptive fields are columns [i * positions, (i + 1) * positions). */
typedef struct chunk {
  const dn_tensor *x;   /* forward and dw: the input (any strides) */
  int64_t n0, count;
  int64_t ld;           /* count * positions: col's row stride */
} chunk;

typedef struct im2col_job {
  const conv_geom *g;
  chunk ch;
  float *col;
} im2col_job;

/* Tasks [t0, t1) of col, task t = (element i, row r): row (c, ki, kj) holds
   x[c, oh*sh + ki*dh - ph, ow*sw + kj*dw - pw] over (oh, ow). */
static void im2col_rows(const void *ctx, int64_t t0, int64_t t1) {
  const im2col_job *j = ctx;
  const conv_geom *g = j->g;
  int64_t kk = g->k_h * g->k_w, rows = g->in_ch * kk;
  for (int64_t t = t0; t < t1; t++) {
    int64_t i = t / rows, r = t % rows;
    int64_t c = r / kk, ki = r % kk / g->k_w, kj = r % g->k_w;
    image x = image_of(j->ch.x, j->ch.n0 + i);
    int64_t lo, hi;
    valid_columns(g, kj, &lo, &hi);
    float *dst = j->col + r * j->ch.ld + i * g->positions;
    for (int64_t oh = 0; oh < g->out_h; oh++, dst += g->out_w) {
      int64_t ih = oh * g->stride[0] + ki * g->dil[0] - g->pad[0];
      if (ih < 0 || ih >= g->in_h) {
        memset(dst, 0, (size_t)g->out_w * sizeof *dst);
        continue;
      }
      const float *src = x.data + c * x.sc + ih * x.sh;
      int64_t sw = x.sw, step = g->stride[1] * sw, iw0 = kj * g->dil[1] - g->pad[1];
      for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
      const float *sp = src + (lo * g->stride[1] + iw0) * sw;
      if (step == 1) {
        memcpy(dst + lo, sp, (size_t)(hi - lo) * sizeof *dst);
      } else {
        for (int64_t ow = lo; ow < hi; ow++, sp += step) dst[ow] = *sp;
      }
      for (int64_t ow = hi; ow < g->out_w; ow++) dst[ow] = 0.0f;
    }
  }
}

static void im2col(const conv_geom *g, chunk ch, float *col) {
  im2col_job job = {g, ch, col};
  dn_parallel_rows(ch.count * g->in_ch * g->k_h * g->k_w, g->positions, im2col_rows, &job);
}

typedef struct col2im_job {
  const conv_geom *g;
  const float *col;   /* [rows, ld]: element i at columns [i * positions, ...) */
  int64_t ld;
  float *dx;          /* the chunk's first element of dx, contiguous [count, C, H, W] */
} col2im_job;

/* Tasks [t0, t1) of dx, task t = (element i, channel c): the sum of col's
   entries that im2col read from each element, in the fixed order (ki, kj, oh, ow). */
static void col2im_channels(const void *ctx, int64_t t0, int64_t t1) {
  const col2im_job *j = ctx;
  const conv_geom *g = j->g;
  int64_t plane = g->in_h * g->in_w;
  for (int64_t t = t0; t < t1; t++) {
    int64_t i = t / g->in_ch, c = t % g->in_ch;
    float *dx = j->dx + t * plane;
    memset(dx, 0, (size_t)plane * sizeof *dx);
    for (int64_t ki = 0; ki < g->k_h; ki++)
      for (int64_t kj = 0; kj < g->k_w; kj++) {
        const float *src = j->col + ((c * g->k_h + ki) * g->k_w + kj) * j->ld + i * g->positions;
        int64_t lo, hi;
        valid_columns(g, kj, &lo, &hi);
        int64_t iw0 = kj * g->dil[1] - g->pad[1];
        for (int64_t oh = 0; oh < g->out_h; oh++, src += g->out_w) {
          int64_t ih = oh * g->stride[0] + ki * g->dil[0] - g->pad[0];
          if (ih < 0 || ih >= g->in_h) continue;
          float *row = dx + ih * g->in_w + lo * g->stride[1] + iw0;
          if (g->stride[1] == 1) {
#pragma omp simd
            for (int64_t k = 0; k < hi - lo; k++) row[k] += src[lo + k];
          } else {
            for (int64_t k = 0; k < hi - lo; k++) row[k * g->stride[1]] += src[lo + k];
          }
        }
      }
  }
}

static void col2im(const conv_geom *g, const float *col, int64_t count, float *dx) {
  col2im_job job = {g, col, count * g->positions, dx};
  dn_parallel_rows(count * g->in_ch, g->k_h * g->k_w * g->positions, col2im_channels, &job);
}

/* --- [N, O, positions] and [O, count * positions] ------------------------------------ */

/* Copies between an output-shaped tensor's elements [n0, n0 + count) and
   a chunk buffer [O, count * positions], adding the bias on the way in. */
typedef struct permute_job {
  const conv_geom *g;
  int64_t n0, count;
  float *y;            /* to y: [N, O, positions] */
  const float *grad;   /* to buf: [N, O, positions] */
  float *buf;          /* [O, count * positions] */
  const float *bias;   /* to y: added, or NULL */
} permute_job;

/* Rows [r0, r1), row r = (element i, channel o). */
static void permute_rows(const void *ctx, int64_t r0, int64_t r1) {
  const permute_job *j = ctx;
  int64_t l = j->g->positions, o_n = j->g->out_ch;
  for (int64_t r = r0; r < r1; r++) {
    int64_t i = r / o_n, o = r % o_n, at = ((j->n0 + i) * o_n + o) * l;
    float *b = j->buf + o * j->count * l + i * l;
    if (j->grad) {
      memcpy(b, j->grad + at, (size_t)l * sizeof *b);
      continue;
    }
    float *a = j->y + at;
    if (j->bias) {
      float v = j->bias[o];
#pragma omp simd
      for (int64_t p = 0; p < l; p++) a[p] = b[p] + v;
    } else {
      memcpy(a, b, (size_t)l * sizeof *a);
    }
  }
}

/* y's elements [n0, n0 + count) = buf (+ bias). */
static void buf_to_output(const conv_geom *g, int64_t n0, int64_t count, float *buf, float *y, const float *bias) {
  permute_job job = {g, n0, count, y, NULL, buf, bias};
  dn_parallel_rows(count * g->out_ch, g->positions, permute_rows, &job);
}

/* buf = grad's elements [n0, n0 + count). */
static void grad_to_buf(const conv_geom *g, int64_t n0, int64_t count, const float *grad, float *buf) {
  permute_job job = {g, n0, count, NULL, grad, buf, NULL};
  dn_parallel_rows(count * g->out_ch, g->positions, permute_rows, &job);
}

/*
** Batch elements per chunk. One sgemm per group over a chunk's columns
** (count * positions of them) instead of one per element: a layer like
** 32 -> 64 channels on 14x14 maps gives [64, 288] @ [288, 196] per
** element, too small to reach the GEMM's speed (~100 GFLOP/s here against
** ~250 for the chunk's [64, 288] @ [288, 7252]). The chunk's col stays
** within COL_BUDGET floats. A chunk costs two copies (its output out of the
** sgemm's layout, its gradient into it), one float per 2 * group_rows FLOPs:
** layers with fewer than MIN_CHUNK_ROWS rows per group (a first layer: 1 x
** 3 x 3) stay one element at a time, where those copies would cost more than
** the sgemm (measured, 1 -> 32 on 28x28: the copies were a third of its
** time). The size depends on the shapes only, so the bits do not depend on
** the thread count.
*/
#define COL_BUDGET ((int64_t)2 << 20)   /* floats: 8 MiB */
#define MIN_CHUNK_ROWS 32
static int64_t chunk_size(const conv_geom *g) {
  if (g->group_rows < MIN_CHUNK_ROWS) return 1;
  int64_t per = g->in_ch * g->k_h * g->k_w * g->positions;
  int64_t count = per > 0 ? COL_BUDGET / per : g->batch;
  if (count > g->batch) count = g->batch;
  return count < 1 ? 1 : count;
}

/* --- shared pieces ------------------------------------------------------------------ */

/* The sizes from x's and w's shapes (3-D for conv1d, 4-D for conv2d) and the
   options, stride/padding/dilation as {rows, columns}. */
static void geom_init(conv_geom *g, int ndim, const int64_t *xs, const int64_t *ws, const int64_t *stride,
                      const int64_t *pad, const int64_t *dil, int64_t groups) {
  bool one_d = ndim == 3;
  g->batch = xs[0];
  g->in_ch = xs[1];
  g->out_ch = ws[0];
  g->groups = groups;
  g->in_h = one_d ? 1 : xs[2];
  g->in_w = xs[ndim - 1];
  g->k_h = one_d ? 1 : ws[2];
  g->k_w = ws[ndim - 1];
  for (int i = 0; i < 2; i++) {
    g->stride[i] = stride[i];
    g->pad[i] = pad[i];
    g->dil[i] = dil[i];
  }
  g->out_h = (g->in_h + 2 * pad[0] - dil[0] * (g->k_h - 1) - 1) / stride[0] + 1;
  g->out_w = (g->in_w + 2 * pad[1] - dil[1] * (g->k_w - 1) - 1) / stride[1] + 1;
  g->group_rows = ws[1] * g->k_h * g->k_w;
  g->positions = g->out_h * g->out_w;
}

/* Scratch of rows * cols floats, or DN_ENOMEM naming op. */
static dn_status scratch(float **out, const char *op, int64_t rows, int64_t cols) {
  int64_t n;
  if (!dn_size_mul(rows, cols, &n) || !(*out = dn_alloc((size_t)(n > 0 ? n : 1) * sizeof **out)))
    return dn_fail(DN_ENOMEM, "%s: out of memory for a [%lld, %lld] im2col buffer", op, (long long)rows,
                   (long long)cols);
  return DN_OK;
}

/* --- backward ----------------------------------------------------------------------- */

typedef struct bias_grad_job {
  const conv_geom *g;
  const float *grad;   /* contiguous [N, O, positions] */
  float *db;
} bias_grad_job;

/* db[o] for o in [o0, o1): a double sum (in lanes) over n, then positions. */
static void bias_grad_rows(const void *ctx, int64_t o0, int64_t o1) {
  const bias_grad_job *j = ctx;
  const conv_geom *g = j->g;
  for (int64_t o = o0; o < o1; o++) {
    double acc[LANES] = {0};
    for (int64_t n = 0; n < g->batch; n++) lanes_sum(acc, j->grad + (n * g->out_ch + o) * g->positions, g->positions);
    j->db[o] = (float)lanes_total(acc);
  }
}

/* The geometry a node was recorded with. */
static void node_geom(conv_geom *g, const dn_node *node) {
  geom_init(g, node->in_ndim[0], node->in_shape[0], node->in_shape[1], node->ints + NODE_STRIDE,
            node->ints + NODE_PADDING, node->ints + NODE_DILATION, node->ints[NODE_GROUPS]);
}

/*
** dx and dw batch element by batch element (dw accumulating in batch order),
** then db. Scratch: dcol for dx, col for dw.
*/
static dn_status conv_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  const char *op = node->type->name;
  conv_geom g;
  node_geom(&g, node);
  int64_t og = g.out_ch / g.groups, kg = g.group_rows, l = g.positions, rows = g.in_ch * g.k_h * g.k_w;
  bool want_dx = node->needs_grad[0], want_dw = node->needs_grad[1], want_db = node->needs_grad[2];
  dn_tensor *gc = NULL, *x = NULL, *w = NULL, *dx = NULL, *dw = NULL, *db = NULL, *wc = NULL;
  float *col = NULL, *dcol = NULL, *gbuf = NULL;
  dn_status st = dn_plain_contiguous(&gc, grad);
  if (!st && want_dx) st = dn_node_saved(node, SAVED_W, &w);
  if (!st && want_dx) st = dn_plain_contiguous(&wc, w);
  if (!st && want_dw) st = dn_node_saved(node, SAVED_X, &x);
  if (!st && want_dx) st = dn_tensor_new(&dx, DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (!st && want_dw) st = dn_tensor_zeros(&dw, DN_F32, node->in_ndim[1], node->in_shape[1]);
  if (!st && want_db) st = dn_tensor_new(&db, DN_F32, node->in_ndim[2], node->in_shape[2]);
  int64_t nb = chunk_size(&g);
  if (!st && want_dx && !depthwise(&g)) st = scratch(&dcol, op, rows, nb * l);
  if (!st && want_dw && !depthwise(&g)) st = scratch(&col, op, rows, nb * l);
  if (!st && (want_dx || want_dw) && !depthwise(&g) && nb > 1) st = scratch(&gbuf, op, g.out_ch, nb * l);
  if (!st && (want_dx || want_dw) && depthwise(&g) && g.out_ch > 0) {
    if (want_dx) st = dn_depthwise_dx(op, &g, dn_tensor_data(wc), dn_tensor_data(gc), dn_tensor_data(dx));
    if (!st && want_dw) st = dn_depthwise_dw(op, &g, x, dn_tensor_data(gc), dn_tensor_data(dw));
  } else if (!st && (want_dx || want_dw)) {
    const float *gd = dn_tensor_data(gc);
    const float *wd = want_dx ? dn_tensor_data(wc) : NULL;
    float *dxd = want_dx ? dn_tensor_data(dx) : NULL, *dwd = want_dw ? dn_tensor_data(dw) : NULL;
    bool products = og > 0 && kg > 0;   /* else dx is 0 and dw is empty */
    int64_t image_size = g.in_ch * g.in_h * g.in_w;
    if (dxd && !products) memset(dxd, 0, (size_t)(g.batch * image_size) * sizeof *dxd);
    for (int64_t n0 = 0; products && n0 < g.batch; n0 += nb) {
      int64_t count = g.batch - n0 < nb ? g.batch - n0 : nb, ld = count * l;
      const float *gk = gd + n0 * g.out_ch * l;   /* one element: [O, positions] already */
      if (nb > 1) {
        grad_to_buf(&g, n0, count, gd, gbuf);
        gk = gbuf;
      }
      if (dxd) {
        for (int64_t k = 0; k < g.groups; k++)
          dn_blas_sgemm(true, false, kg, ld, og, 1.0f, wd + k * og * kg, kg, gk + k * og * ld, ld, 0.0f,
                        dcol + k * kg * ld, ld);
        col2im(&g, dcol, count, dxd + n0 * image_size);
      }
      if (dwd) {
        im2col(&g, (chunk){x, n0, count, ld}, col);
        for (int64_t k = 0; k < g.groups; k++)
          dn_blas_sgemm(false, true, og, kg, ld, 1.0f, gk + k * og * ld, ld, col + k * kg * ld, ld,
                        n0 ? 1.0f : 0.0f, dwd + k * og * kg, kg);
      }
    }
  }
  if (!st && want_db) {
    bias_grad_job job = {&g, dn_tensor_data(gc), dn_tensor_data(db)};
    dn_parallel_rows(g.out_ch, g.batch * l, bias_grad_rows, &job);
  }
  dn_free(col);
  dn_free(dcol);
  dn_free(gbuf);
  dn_tensor_release(wc);
  dn_tensor_release(gc);
  if (st) {
    dn_tensor_release(dx);
    dn_tensor_release(dw);
    dn_tensor_release(db);
    return st;
  }
  grad_in[0] = dx;
  grad_in[1] = dw;
  grad_in[2] = db;
  return DN_OK;
}
static const dn_node_type conv2d_node = {"conv2d", conv_backward};
static const dn_node_type conv1d_node = {"conv1d", conv_backward};

/* --- forward ------------------------------------------------------------------------ */

/* "[a,b]" for messages (1-D convolutions print their one value as "a"). */
static const char *pair_str(char *buf, size_t size, const int64_t *v, bool one_d) {
  if (one_d) snprintf(buf, size, "%lld", (long long)v[1]);
  else snprintf(buf, size, "[%lld,%lld]", (long long)v[0], (long long)v[1]);
  return buf;
}

/*
** Every argument of a convolution: dtypes, ranks (ndim 3 for conv1d, 4 for
** conv2d), options, channels and groups, bias, the kernel against the padded
** input, sizes sgemm can take. Options are {rows, columns}; a 1-D op's rows
** are all 1 and 0 and its messages show only the columns.
*/
static dn_status check_args(const char *op, int ndim, const dn_tensor *x, const dn_tensor *w, const dn_tensor *b,
                            const int64_t *stride, const int64_t *pad, const int64_t *dil, int64_t groups) {
  char xs[128], ws[128], bs[128], p1[48], p2[48], p3[48];
  bool one_d = ndim == 3;
  const char *layout = one_d ? "[N, C, L]" : "[N, C, H, W]";
  const char *wlayout = one_d ? "[out, in/groups, k]" : "[out, in/groups, kh, kw]";
  if (x->dtype != DN_F32 || w->dtype != DN_F32 || (b && b->dtype != DN_F32))
    return dn_fail(DN_ETYPE, "%s: expects float32 tensors (got input %s, weight %s%s%s)", op, dn_dtype_name(x->dtype),
                   dn_dtype_name(w->dtype), b ? ", bias " : "", b ? dn_dtype_name(b->dtype) : "");
  if (x->ndim != ndim)
    return dn_fail(DN_ESHAPE, "%s: input must be %d-D %s (got shape %s)", op, ndim, layout,
                   dn_shape_str(x, xs, sizeof xs));
  if (w->ndim != ndim)
    return dn_fail(DN_ESHAPE, "%s: weight must be %d-D %s (got shape %s)", op, ndim, wlayout,
                   dn_shape_str(w, ws, sizeof ws));
  if (stride[0] < 1 || stride[1] < 1)
    return dn_fail(DN_EINVAL, "%s: stride must be >= 1 (got %s)", op, pair_str(p1, sizeof p1, stride, one_d));
  if (dil[0] < 1 || dil[1] < 1)
    return dn_fail(DN_EINVAL, "%s: dilation must be >= 1 (got %s)", op, pair_str(p1, sizeof p1, dil, one_d));
  if (pad[0] < 0 || pad[1] < 0)
    return dn_fail(DN_EINVAL, "%s: padding must be >= 0 (got %s)", op, pair_str(p1, sizeof p1, pad, one_d));
  /* 2^40 (shape.h) bounds every size: the arithmetic below cannot overflow */
  if (stride[0] > DN_MAX_NUMEL || stride[1] > DN_MAX_NUMEL || dil[0] > DN_MAX_NUMEL || dil[1] > DN_MAX_NUMEL ||
      pad[0] > DN_MAX_NUMEL || pad[1] > DN_MAX_NUMEL)
    return dn_fail(DN_EINVAL, "%s: stride %s, padding %s or dilation %s is too large", op,
                   pair_str(p1, sizeof p1, stride, one_d), pair_str(p2, sizeof p2, pad, one_d),
                   pair_str(p3, sizeof p3, dil, one_d));
  if (groups < 1) return dn_fail(DN_EINVAL, "%s: groups must be >= 1 (got %lld)", op, (long long)groups);
  dn_shape_str(x, xs, sizeof xs);
  dn_shape_str(w, ws, sizeof ws);
  int64_t in = x->shape[1], out = w->shape[0];
  if (in % groups)
    return dn_fail(DN_ESHAPE, "%s: groups %lld does not divide the input's %lld channels (input %s)", op,
                   (long long)groups, (long long)in, xs);
  if (out % groups)
    return dn_fail(DN_ESHAPE, "%s: groups %lld does not divide the weight's %lld output channels (weight %s)", op,
                   (long long)groups, (long long)out, ws);
  if (w->shape[1] != in / groups)
    return dn_fail(DN_ESHAPE, "%s: input %s has %lld channels but weight %s expects %lld per group x %lld groups", op,
                   xs, (long long)in, ws, (long long)w->shape[1], (long long)groups);
  if (b && (b->ndim != 1 || b->shape[0] != out))
    return dn_fail(DN_ESHAPE, "%s: bias %s does not match weight %s (expected [%lld])", op,
                   dn_shape_str(b, bs, sizeof bs), ws, (long long)out);
  for (int i = one_d ? 1 : 0; i < 2; i++) {
    int64_t size = x->shape[ndim - 2 + i], k = w->shape[ndim - 2 + i];
    if (k < 1) return dn_fail(DN_ESHAPE, "%s: weight %s has an empty kernel", op, ws);
    int64_t extent, padded = size + 2 * pad[i];   /* <= 3 * 2^40 */
    if (!dn_size_mul(dil[i], k - 1, &extent) || extent + 1 > padded) {
      const char *dim = one_d ? "" : i ? " in width" : " in height";
      return dn_fail(DN_ESHAPE, "%s: kernel %s (%lld with dilation %lld) is larger than the padded input%s %lld "
                     "(input %s, padding %s)", op, ws, (long long)k, (long long)dil[i], dim, (long long)padded, xs,
                     pair_str(p1, sizeof p1, pad, one_d));
    }
  }
  conv_geom g;
  geom_init(&g, ndim, x->shape, w->shape, stride, pad, dil, groups);
  int64_t rows, out_numel;
  if (!dn_size_mul(g.in_ch * g.k_h, g.k_w, &rows) || !dn_size_mul(rows, g.positions, &rows) ||
      !dn_size_mul(g.batch * g.out_ch, g.positions, &out_numel) ||
      !dn_blas_fits(g.group_rows, g.positions, g.out_ch, g.group_rows, g.positions, g.positions))
    return dn_fail(DN_EINVAL, "%s: input %s and weight %s are too large to convolve", op, xs, ws);
  return DN_OK;
}

typedef struct bias_job {
  float *y;
  const float *b;
  int64_t out_ch, positions;
} bias_job;

/* Rows [r0, r1) of y viewed as [N * O, positions] += b[row % O]. */
static void add_bias_rows(const void *ctx, int64_t r0, int64_t r1) {
  const bias_job *j = ctx;
  for (int64_t r = r0; r < r1; r++) {
    float *row = j->y + r * j->positions, v = j->b[r % j->out_ch];
#pragma omp simd
    for (int64_t p = 0; p < j->positions; p++) row[p] += v;
  }
}

/* y (new, contiguous [N, O, positions]) = conv(x, w) + b for checked arguments. */
static dn_status compute(const char *op, dn_tensor *y, const conv_geom *g, dn_tensor *x, dn_tensor *w, dn_tensor *b) {
  int64_t og = g->out_ch / g->groups, kg = g->group_rows, l = g->positions;
  float *yd = dn_tensor_data(y);
  dn_tensor *wc = NULL, *bc = NULL;
  float *col = NULL, *ybuf = NULL;
  dn_status st = DN_OK;
  if (g->batch > 0 && og > 0 && kg > 0 && depthwise(g)) {
    st = dn_plain_contiguous(&wc, w);
    if (!st) st = b ? dn_plain_contiguous(&bc, b) : DN_OK;
    if (!st) {
      st = dn_depthwise_forward(op, g, x, dn_tensor_data(wc), bc ? dn_tensor_data(bc) : NULL, yd);
    }
    dn_tensor_release(bc);
    dn_tensor_release(wc);
    return st;   /* the bias is in */
  }
  bool bias_done = false;
  if (g->batch > 0 && og > 0 && kg > 0) {
    int64_t nb = chunk_size(g), rows = g->in_ch * g->k_h * g->k_w;
    st = dn_plain_contiguous(&wc, w);
    if (!st && b) st = dn_plain_contiguous(&bc, b);
    if (!st) st = scratch(&col, op, rows, nb * l);
    if (!st && nb > 1) st = scratch(&ybuf, op, g->out_ch, nb * l);
    const float *wd = st ? NULL : dn_tensor_data(wc), *bd = bc ? dn_tensor_data(bc) : NULL;
    for (int64_t n0 = 0; !st && n0 < g->batch; n0 += nb) {
      int64_t count = g->batch - n0 < nb ? g->batch - n0 : nb, ld = count * l;
      im2col(g, (chunk){x, n0, count, ld}, col);
      float *dst = nb > 1 ? ybuf : yd + n0 * g->out_ch * l;   /* one element: y's own layout */
      for (int64_t k = 0; k < g->groups; k++)
        dn_blas_sgemm(false, false, og, ld, kg, 1.0f, wd + k * og * kg, kg, col + k * kg * ld, ld, 0.0f,
                      dst + k * og * ld, ld);
      if (nb > 1) buf_to_output(g, n0, count, ybuf, yd, bd);
    }
    bias_done = nb > 1;
  } else {
    memset(yd, 0, (size_t)dn_tensor_numel(y) * sizeof *yd);   /* no input channels: only the bias */
  }
  if (!st && b && !bias_done) st = bc ? DN_OK : dn_plain_contiguous(&bc, b);
  if (!st && b && !bias_done) {
    bias_job job = {yd, dn_tensor_data(bc), g->out_ch, l};
    dn_parallel_rows(g->batch * g->out_ch, l, add_bias_rows, &job);
  }
  dn_free(ybuf);
  dn_free(col);
  dn_tensor_release(bc);
  dn_tensor_release(wc);
  return st;
}

/* Checks, the output, the kernel, the node (ndim 3: conv1d, 4: conv2d). */
static dn_status forward(dn_tensor **out, const dn_node_type *type, int ndim, dn_tensor *x, dn_tensor *w,
                         dn_tensor *b, const int64_t *stride, const int64_t *pad, const int64_t *dil, int64_t groups) {
  *out = NULL;
  dn_status st = check_args(type->name, ndim, x, w, b, stride, pad, dil, groups);
  if (st) return st;
  conv_geom g;
  geom_init(&g, ndim, x->shape, w->shape, stride, pad, dil, groups);
  int64_t shape[4] = {g.batch, g.out_ch, ndim == 4 ? g.out_h : g.out_w, g.out_w};
  dn_tensor *y;
  st = dn_tensor_new(&y, DN_F32, ndim, shape);
  if (st) return st;
  st = compute(type->name, y, &g, x, w, b);
  dn_node *node = NULL;
  if (!st) st = dn_record(y, type, 3, (const dn_tensor *[]){x, w, b}, &node);
  if (!st && node) {
    for (int i = 0; i < 2; i++) {
      node->ints[NODE_STRIDE + i] = stride[i];
      node->ints[NODE_PADDING + i] = pad[i];
      node->ints[NODE_DILATION + i] = dil[i];
    }
    node->ints[NODE_GROUPS] = groups;
    if (node->needs_grad[1]) st = dn_node_save(node, SAVED_X, x);
    if (!st && node->needs_grad[0]) st = dn_node_save(node, SAVED_W, w);
  }
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  *out = y;
  return DN_OK;
}

dn_status dn_conv2d(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, const int64_t stride[2],
                    const int64_t padding[2], const int64_t dilation[2], int64_t groups) {
  DN_FPMODE_SCOPE();
  return forward(out, &conv2d_node, 4, x, w, b, stride, padding, dilation, groups);
}

dn_status dn_conv1d(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, int64_t stride, int64_t padding,
                    int64_t dilation, int64_t groups) {
  DN_FPMODE_SCOPE();
  return forward(out, &conv1d_node, 3, x, w, b, (int64_t[]){1, stride}, (int64_t[]){0, padding},
                 (int64_t[]){1, dilation}, groups);
}
