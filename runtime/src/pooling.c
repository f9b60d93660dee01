/*
** Pooling: max, average and adaptive average over windows of the last two
** dims (1-d: of the last dim, a 2-d pool of height 1), with their backward.
**
** A plane is one H x W image of the input (N * C of them; a [C, H, W]
** input is one batch). The input is made contiguous first, and every pass
** is one dn_parallel_rows over whole planes: a plane's outputs, and in
** backward its input gradient, are computed by one task in a fixed order, so
** the bits do not depend on the thread count.
**
** Windows are PyTorch 1.13's (ATen/native/cpu/MaxPoolKernel.cpp, AvgPoolKernel.cpp,
** AdaptiveAvgPoolKernel.cpp):
** the window of output o along a dim starts at o * stride - padding; max
** steps through it by dilation, skipping padding; average clips it to the
** padded input for count_include_pad's divisor, then to the input; adaptive
** rows are [floor(o * in / out), ceil((o + 1) * in / out)). Output size
** floor((in + 2p - d(k-1) - 1) / s) + 1, or rounded up with ceil_mode unless
** that last window would start past the input and its left padding.
**
** Max pool's backward scatters the output gradient through the argmax saved
** in the node (int32, h * W + w within the plane, PyTorch's return_indices)
** instead of recomputing it from a saved input: backward is then one pass
** over the outputs rather than a second scan of kh * kw inputs per output,
** the node keeps an output-sized int32 tensor rather than the whole input
** alive (a quarter of it for the usual 2x2 / 2 pool), and the indices are
** only written when a node is recorded, so inference pays nothing. Ties: the
** first maximum in row-major window order wins (strict >); a NaN replaces
** the running maximum, as PyTorch's `val > max || isnan(val)`, so the output
** is NaN and the gradient goes to the window's last NaN. One divergence: a
** window holding only padding (k = 2, p = 1, d = 3 on H = 2) gives -inf and
** index -1 (no gradient); PyTorch returns an index outside the plane.
*/
#include <stdio.h>
#include <string.h>

#include "dropnet/pooling.h"
#include "graph.h"
#include "internal.h"
#include "max_pool_2x2.h"
#include "shape.h"

/* Largest kernel, stride, padding or dilation (PyTorch's are int). */
#define MAX_PARAM INT32_MAX

typedef enum pool_kind { POOL_MAX, POOL_AVG, POOL_ADAPTIVE } pool_kind;

/* One pool's geometry; pairs are {height, width} (height 1 for 1-d). */
typedef struct pool_geom {
  pool_kind kind;
  int dims;   /* 1 or 2 */
  int64_t planes, in_h, in_w, out_h, out_w;
  int64_t kernel[2], stride[2], padding[2], dilation[2];
  bool count_include_pad;
} pool_geom;

enum { SAVED_INDICES = 0 };
/* node->ints: the geometry's parameters (sizes come from the shapes). */
enum { NODE_KIND, NODE_DIMS, NODE_KERNEL, NODE_STRIDE = NODE_KERNEL + 2, NODE_PADDING = NODE_STRIDE + 2,
       NODE_DILATION = NODE_PADDING + 2, NODE_INCLUDE_PAD = NODE_DILATION + 2, NODE_INTS };
_Static_assert(NODE_INTS <= DN_MAX_DIMS + 4, "pooling's parameters fit in node->ints");

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* --- windows ----------------------------------------------------------------------- */

/* Max pool along one dim: positions lo, lo + step, ... below hi, inside [0, in). */
static inline void max_window(const pool_geom *g, int d, int64_t o, int64_t in, int64_t *lo, int64_t *hi) {
  int64_t start = o * g->stride[d] - g->padding[d], step = g->dilation[d];
  *hi = min64(start + (g->kernel[d] - 1) * step + 1, in);
  if (start < 0) start += (-start + step - 1) / step * step;
  *lo = start;
}

/* Average pool along one dim: [lo, hi) inside the input, and the window's
   length clipped to the padded input (count_include_pad's divisor). */
static inline void avg_window(const pool_geom *g, int d, int64_t o, int64_t in, int64_t *lo, int64_t *hi,
                              int64_t *padded) {
  int64_t start = o * g->stride[d] - g->padding[d];
  int64_t end = min64(start + g->kernel[d], in + g->padding[d]);
  *padded = end - start;
  *lo = max64(start, 0);
  *hi = min64(end, in);
}

/* Adaptive pool along one dim (out * in <= DN_MAX_NUMEL, checked). */
static inline void adaptive_window(int64_t o, int64_t in, int64_t out, int64_t *lo, int64_t *hi) {
  *lo = o * in / out;
  *hi = ((o + 1) * in + out - 1) / out;
}

/* An average window of output (oh, ow): its bounds and divisor. */
static inline double mean_window(const pool_geom *g, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1,
                                 int64_t *w0, int64_t *w1) {
  if (g->kind == POOL_ADAPTIVE) {
    adaptive_window(oh, g->in_h, g->out_h, h0, h1);
    adaptive_window(ow, g->in_w, g->out_w, w0, w1);
    return (double)((*h1 - *h0) * (*w1 - *w0));
  }
  int64_t ph, pw;
  avg_window(g, 0, oh, g->in_h, h0, h1, &ph);
  avg_window(g, 1, ow, g->in_w, w0, w1, &pw);
  if (g->count_include_pad) return (double)(ph * pw);
  return (double)(max64(*h1 - *h0, 0) * max64(*w1 - *w0, 0));
}

/* --- one plane, forward and backward ----------------------------------------------------- */

/* y [out_h, out_w] = max over x's windows; idx (or NULL) the argmax. */
static void max_plane(const pool_geom *g, float *y, int32_t *idx, const float *x) {
  for (int64_t oh = 0; oh < g->out_h; oh++) {
    int64_t h0, h1;
    max_window(g, 0, oh, g->in_h, &h0, &h1);
    for (int64_t ow = 0; ow < g->out_w; ow++) {
      int64_t w0, w1;
      max_window(g, 1, ow, g->in_w, &w0, &w1);
      float m = -INFINITY;
      int64_t at = h0 < h1 && w0 < w1 ? h0 * g->in_w + w0 : -1;
      for (int64_t h = h0; h < h1; h += g->dilation[0])
        for (int64_t w = w0; w < w1; w += g->dilation[1]) {
          float v = x[h * g->in_w + w];
          if (v > m || v != v) {
            m = v;
            at = h * g->in_w + w;
          }
        }
      y[oh * g->out_w + ow] = m;
      if (idx) idx[oh * g->out_w + ow] = (int32_t)at;
    }
  }
}

/* Whether max_plane_2x2 (max_pool_2x2.h: the same values and indices,
   vectorized) computes this pool: the usual 2x2 window at stride 2 with no
   padding or dilation, every window inside the plane. */
static bool is_max_2x2(const pool_geom *g) {
  return g->kind == POOL_MAX && g->dims == 2 && g->kernel[0] == 2 && g->kernel[1] == 2 && g->stride[0] == 2 &&
         g->stride[1] == 2 && g->padding[0] == 0 && g->padding[1] == 0 && g->dilation[0] == 1 &&
         g->dilation[1] == 1 && 2 * g->out_h <= g->in_h && 2 * g->out_w <= g->in_w;
}

/* gx [in_h, in_w] (zeroed) += gy through the saved argmax. */
static void max_plane_backward(const pool_geom *g, float *gx, const float *gy, const int32_t *idx) {
  for (int64_t o = 0; o < g->out_h * g->out_w; o++)
    if (idx[o] >= 0) gx[idx[o]] += gy[o];
}

/* y = the windows' means (average and adaptive); an empty window gives 0. */
static void mean_plane(const pool_geom *g, float *y, const float *x) {
  for (int64_t oh = 0; oh < g->out_h; oh++)
    for (int64_t ow = 0; ow < g->out_w; ow++) {
      int64_t h0, h1, w0, w1;
      double divisor = mean_window(g, oh, ow, &h0, &h1, &w0, &w1), sum = 0;
      if (h0 >= h1 || w0 >= w1) {
        y[oh * g->out_w + ow] = 0.0f;
        continue;
      }
      for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++) sum += x[h * g->in_w + w];
      y[oh * g->out_w + ow] = (float)(sum / divisor);
    }
}

/* gx (zeroed) += gy / divisor over each window. */
static void mean_plane_backward(const pool_geom *g, float *gx, const float *gy) {
  for (int64_t oh = 0; oh < g->out_h; oh++)
    for (int64_t ow = 0; ow < g->out_w; ow++) {
      int64_t h0, h1, w0, w1;
      double divisor = mean_window(g, oh, ow, &h0, &h1, &w0, &w1);
      if (h0 >= h1 || w0 >= w1) continue;
      float share = (float)(gy[oh * g->out_w + ow] / divisor);
      for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++) gx[h * g->in_w + w] += share;
    }
}

/* Planes [p0, p1) of a forward (x, y) or a backward (gy, gx) pass. */
typedef struct pool_job {
  const pool_geom *g;
  bool backward;
  const float *src;   /* x, or gy */
  float *dst;         /* y, or gx */
  int32_t *idx;       /* max's argmax: written by forward (may be NULL), read by backward */
} pool_job;

static void pool_planes(const void *ctx, int64_t p0, int64_t p1) {
  const pool_job *j = ctx;
  const pool_geom *g = j->g;
  int64_t in = g->in_h * g->in_w, out = g->out_h * g->out_w;
  bool fast = is_max_2x2(g);
  for (int64_t p = p0; p < p1; p++) {
    int32_t *idx = j->idx ? j->idx + p * out : NULL;
    /* gx is zeroed here, a plane at a time while it is in cache, not by one
       serial memset of the whole tensor before the pass */
    if (j->backward) memset(j->dst + p * in, 0, (size_t)in * sizeof(float));
    if (!j->backward && fast)
      max_plane_2x2(j->dst + p * out, idx, j->src + p * in, j->src + g->planes * in, g->in_w, g->out_h, g->out_w,
                    false);
    else if (!j->backward && g->kind == POOL_MAX) max_plane(g, j->dst + p * out, idx, j->src + p * in);
    else if (!j->backward) mean_plane(g, j->dst + p * out, j->src + p * in);
    else if (g->kind == POOL_MAX) max_plane_backward(g, j->dst + p * in, j->src + p * out, idx);
    else mean_plane_backward(g, j->dst + p * in, j->src + p * out);
  }
}

static void run_planes(const pool_geom *g, bool backward, const float *src, float *dst, int32_t *idx) {
  if (g->planes == 0) return;
  pool_job job = {g, backward, src, dst, idx};
  int64_t window = g->kind == POOL_MAX ? g->kernel[0] * g->kernel[1] : 1;
  dn_parallel_rows(g->planes, g->in_h * g->in_w + g->out_h * g->out_w * min64(window, 64), pool_planes, &job);
}

/* --- autograd ------------------------------------------------------------------------------ */

static void geom_to_node(const pool_geom *g, dn_node *node) {
  node->ints[NODE_KIND] = g->kind;
  node->ints[NODE_DIMS] = g->dims;
  for (int d = 0; d < 2; d++) {
    node->ints[NODE_KERNEL + d] = g->kernel[d];
    node->ints[NODE_STRIDE + d] = g->stride[d];
    node->ints[NODE_PADDING + d] = g->padding[d];
    node->ints[NODE_DILATION + d] = g->dilation[d];
  }
  node->ints[NODE_INCLUDE_PAD] = g->count_include_pad;
}

/* The geometry back from the node and the output gradient's shape. */
static pool_geom geom_from_node(const dn_node *node, const dn_tensor *grad) {
  pool_geom g = {.kind = (pool_kind)node->ints[NODE_KIND], .dims = (int)node->ints[NODE_DIMS],
                 .count_include_pad = node->ints[NODE_INCLUDE_PAD] != 0};
  for (int d = 0; d < 2; d++) {
    g.kernel[d] = node->ints[NODE_KERNEL + d];
    g.stride[d] = node->ints[NODE_STRIDE + d];
    g.padding[d] = node->ints[NODE_PADDING + d];
    g.dilation[d] = node->ints[NODE_DILATION + d];
  }
  int n = node->in_ndim[0];
  const int64_t *in = node->in_shape[0];
  g.in_w = in[n - 1];
  g.in_h = g.dims == 2 ? in[n - 2] : 1;
  g.out_w = grad->shape[n - 1];
  g.out_h = g.dims == 2 ? grad->shape[n - 2] : 1;
  g.planes = 1;
  for (int d = 0; d < n - g.dims; d++) g.planes *= in[d];
  return g;
}

static dn_status pool_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  pool_geom g = geom_from_node(node, grad);
  dn_tensor *gy = NULL, *idx = NULL;
  dn_status st = DN_OK;
  if (g.kind == POOL_MAX) st = dn_node_saved(node, SAVED_INDICES, &idx);
  if (!st) st = dn_plain_contiguous(&gy, grad);
  if (!st) st = dn_tensor_new(&grad_in[0], DN_F32, node->in_ndim[0], node->in_shape[0]);   /* zeroed by plane */
  if (!st)
    run_planes(&g, true, dn_tensor_data(gy), dn_tensor_data(grad_in[0]), idx ? dn_tensor_data(idx) : NULL);
  dn_tensor_release(gy);
  return st;
}
static const dn_node_type max_pool2d_node = {.name = "max_pool2d", .backward = pool_backward};
static const dn_node_type max_pool1d_node = {.name = "max_pool1d", .backward = pool_backward};
static const dn_node_type avg_pool2d_node = {.name = "avg_pool2d", .backward = pool_backward};
static const dn_node_type avg_pool1d_node = {.name = "avg_pool1d", .backward = pool_backward};
static const dn_node_type adaptive_avg_pool2d_node = {.name = "adaptive_avg_pool2d", .backward = pool_backward};

/* --- checks ----------------------------------------------------------------------------------- */

/* A pair for messages: "3x2" (2-d) or "2" (1-d, the width). */
static const char *pair_str(const pool_geom *g, const int64_t v[2], char *buf, size_t size) {
  if (g->dims == 1) snprintf(buf, size, "%lld", (long long)v[1]);
  else snprintf(buf, size, "%lldx%lld", (long long)v[0], (long long)v[1]);
  return buf;
}

/* x's dtype and layout; fills planes, in_h, in_w. */
static dn_status check_input(const char *op, pool_geom *g, const dn_tensor *x) {
  char xs[128];
  if (x->dtype != DN_F32)
    return dn_fail(DN_ETYPE, "%s: expects a float32 tensor (got %s)", op, dn_dtype_name(x->dtype));
  const char *layout = g->dims == 2 ? "[N, C, H, W] or [C, H, W]" : "[N, C, L] or [C, L]";
  if (x->ndim != g->dims + 1 && x->ndim != g->dims + 2)
    return dn_fail(DN_ESHAPE, "%s: input must be %s (got shape %s)", op, layout, dn_shape_str(x, xs, sizeof xs));
  for (int d = x->ndim == g->dims + 2 ? 1 : 0; d < x->ndim; d++)
    if (x->shape[d] == 0)
      return dn_fail(DN_ESHAPE, "%s: input %s has an empty dim (only the batch N may be 0)", op,
                     dn_shape_str(x, xs, sizeof xs));
  g->in_w = x->shape[x->ndim - 1];
  g->in_h = g->dims == 2 ? x->shape[x->ndim - 2] : 1;
  g->planes = dn_tensor_numel(x) / (g->in_h * g->in_w);
  return DN_OK;
}

static dn_status check_param(const char *op, const pool_geom *g, const char *what, const int64_t v[2], int64_t min) {
  char b[64];
  for (int d = 0; d < 2; d++)
    if (v[d] < min || v[d] > MAX_PARAM)
      return dn_fail(DN_EINVAL, "%s: %s must be in [%lld, %d] (got %s)", op, what, (long long)min, MAX_PARAM,
                     pair_str(g, v, b, sizeof b));
  return DN_OK;
}

/* One dim's output size (PyTorch's pooling_output_shape); the kernel fits. */
static int64_t output_size(const pool_geom *g, int d, int64_t in, bool ceil_mode) {
  int64_t span = g->dilation[d] * (g->kernel[d] - 1) + 1, s = g->stride[d], p = g->padding[d];
  int64_t out = (in + 2 * p - span + (ceil_mode ? s - 1 : 0)) / s + 1;
  if (ceil_mode && (out - 1) * s >= in + p) out--;
  return out;
}

/* The parameters of a max or average pool, then the output size. */
static dn_status check_window(const char *op, pool_geom *g, const dn_tensor *x, bool ceil_mode) {
  dn_status st = check_param(op, g, "kernel size", g->kernel, 1);
  if (!st) st = check_param(op, g, "stride", g->stride, 1);
  if (!st) st = check_param(op, g, "padding", g->padding, 0);
  if (!st) st = check_param(op, g, "dilation", g->dilation, 1);
  if (st) return st;
  char ks[192], ps[64], ds[64], es[64], is[64], xs[128];
  if (g->padding[0] > g->kernel[0] / 2 || g->padding[1] > g->kernel[1] / 2)
    return dn_fail(DN_EINVAL, "%s: padding %s must be at most half the kernel size %s", op,
                   pair_str(g, g->padding, ps, sizeof ps), pair_str(g, g->kernel, ks, sizeof ks));
  int64_t span[2], padded[2], in[2] = {g->in_h, g->in_w};
  for (int d = 0; d < 2; d++) {
    span[d] = g->dilation[d] * (g->kernel[d] - 1) + 1;
    padded[d] = in[d] + 2 * g->padding[d];
  }
  if (span[0] > padded[0] || span[1] > padded[1]) {
    pair_str(g, g->kernel, ks, sizeof ks);
    if (g->dilation[0] != 1 || g->dilation[1] != 1)
      snprintf(ks + strlen(ks), sizeof ks - strlen(ks), " (dilation %s: spans %s)",
               pair_str(g, g->dilation, ds, sizeof ds), pair_str(g, span, es, sizeof es));
    return dn_fail(DN_ESHAPE, "%s: kernel size %s is larger than the padded input %s (input %s, padding %s)", op, ks,
                   pair_str(g, padded, is, sizeof is), dn_shape_str(x, xs, sizeof xs),
                   pair_str(g, g->padding, ps, sizeof ps));
  }
  g->out_h = output_size(g, 0, g->in_h, ceil_mode);
  g->out_w = output_size(g, 1, g->in_w, ceil_mode);
  /* the kernel fits, so every size is >= 1; kept for any future rounding rule */
  if (g->out_h < 1 || g->out_w < 1)
    return dn_fail(DN_ESHAPE, "%s: output size %lldx%lld is less than 1 (input %s)", op, (long long)g->out_h,
                   (long long)g->out_w, dn_shape_str(x, xs, sizeof xs));
  if (g->kind == POOL_MAX && g->in_h * g->in_w > INT32_MAX)
    return dn_fail(DN_ESHAPE, "%s: input %s has planes of more than 2^31 - 1 elements (int32 indices)", op,
                   dn_shape_str(x, xs, sizeof xs));
  return DN_OK;
}

/* --- forward ------------------------------------------------------------------------------ */

/* Pools x (checked, geometry complete) into a new tensor and records `type`. */
static dn_status pool_forward(dn_tensor **out, dn_tensor *x, const pool_geom *g, const dn_node_type *type) {
  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = g->out_w;
  if (g->dims == 2) shape[x->ndim - 2] = g->out_h;
  dn_tensor *xc = NULL, *y = NULL, *idx = NULL;
  dn_node *node = NULL;
  dn_status st = dn_plain_contiguous(&xc, x);
  if (!st) st = dn_tensor_new(&y, DN_F32, x->ndim, shape);
  if (!st) st = dn_record(y, type, 1, (const dn_tensor *[]){x}, &node);
  if (!st && node && g->kind == POOL_MAX) st = dn_tensor_new(&idx, DN_I32, x->ndim, shape);
  if (!st) {
    run_planes(g, false, dn_tensor_data(xc), dn_tensor_data(y), idx ? dn_tensor_data(idx) : NULL);
    if (node) geom_to_node(g, node);
    if (idx) st = dn_node_save(node, SAVED_INDICES, idx);
  }
  dn_tensor_release(idx);
  dn_tensor_release(xc);
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  *out = y;
  return DN_OK;
}

static dn_status windowed_pool(dn_tensor **out, dn_tensor *x, pool_geom *g, bool ceil_mode, const dn_node_type *type) {
  dn_status st = check_input(type->name, g, x);
  if (!st) st = check_window(type->name, g, x, ceil_mode);
  return st ? st : pool_forward(out, x, g, type);
}

dn_status dn_max_pool2d(dn_tensor **out, dn_tensor *x, const int64_t kernel[2], const int64_t stride[2],
                        const int64_t padding[2], const int64_t dilation[2], bool ceil_mode) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  pool_geom g = {.kind = POOL_MAX, .dims = 2, .kernel = {kernel[0], kernel[1]}};
  const int64_t *s = stride ? stride : kernel;
  g.stride[0] = s[0], g.stride[1] = s[1];
  if (padding) g.padding[0] = padding[0], g.padding[1] = padding[1];
  g.dilation[0] = dilation ? dilation[0] : 1, g.dilation[1] = dilation ? dilation[1] : 1;
  return windowed_pool(out, x, &g, ceil_mode, &max_pool2d_node);
}

dn_status dn_max_pool1d(dn_tensor **out, dn_tensor *x, int64_t kernel, int64_t stride, int64_t padding,
                        int64_t dilation, bool ceil_mode) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  pool_geom g = {.kind = POOL_MAX, .dims = 1, .kernel = {1, kernel}, .stride = {1, stride}, .padding = {0, padding},
                 .dilation = {1, dilation}};
  return windowed_pool(out, x, &g, ceil_mode, &max_pool1d_node);
}

dn_status dn_avg_pool2d(dn_tensor **out, dn_tensor *x, const int64_t kernel[2], const int64_t stride[2],
                        const int64_t padding[2], bool ceil_mode, bool count_include_pad) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  pool_geom g = {.kind = POOL_AVG, .dims = 2, .kernel = {kernel[0], kernel[1]}, .dilation = {1, 1},
                 .count_include_pad = count_include_pad};
  const int64_t *s = stride ? stride : kernel;
  g.stride[0] = s[0], g.stride[1] = s[1];
  if (padding) g.padding[0] = padding[0], g.padding[1] = padding[1];
  return windowed_pool(out, x, &g, ceil_mode, &avg_pool2d_node);
}

dn_status dn_avg_pool1d(dn_tensor **out, dn_tensor *x, int64_t kernel, int64_t stride, int64_t padding,
                        bool ceil_mode, bool count_include_pad) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  pool_geom g = {.kind = POOL_AVG, .dims = 1, .kernel = {1, kernel}, .stride = {1, stride}, .padding = {0, padding},
                 .dilation = {1, 1}, .count_include_pad = count_include_pad};
  return windowed_pool(out, x, &g, ceil_mode, &avg_pool1d_node);
}

dn_status dn_adaptive_avg_pool2d(dn_tensor **out, dn_tensor *x, int64_t out_h, int64_t out_w) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const char *op = adaptive_avg_pool2d_node.name;
  pool_geom g = {.kind = POOL_ADAPTIVE, .dims = 2, .out_h = out_h, .out_w = out_w};
  dn_status st = check_input(op, &g, x);
  if (st) return st;
  char xs[128];
  int64_t product;
  if (out_h < 1 || out_w < 1)
    return dn_fail(DN_EINVAL, "%s: output size must be >= 1 (got %lldx%lld for input %s)", op, (long long)out_h,
                   (long long)out_w, dn_shape_str(x, xs, sizeof xs));
  if (!dn_size_mul(out_h, g.in_h, &product) || !dn_size_mul(out_w, g.in_w, &product))
    return dn_fail(DN_EINVAL, "%s: output size %lldx%lld is too large for input %s", op, (long long)out_h,
                   (long long)out_w, dn_shape_str(x, xs, sizeof xs));
  return pool_forward(out, x, &g, &adaptive_avg_pool2d_node);
}
