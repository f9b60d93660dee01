/*
** The dropout family's ops: argument checks, the forward passes, their
** nodes and backward passes. The random kernels, the thresholds and scales,
** and the reproducibility contract every mask follows are dropout_mask.c's.
** Every variant regenerates its mask in backward from (seed, offset) saved
** in the node: no mask bytes are kept.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dropnet/dropout.h"
#include "dropnet/elementwise.h"
#include "dropnet/matmul.h"
#include "dropnet/nn.h"
#include "dropnet/reduce.h"
#include "dropout_mask.h"
#include "graph.h"
#include "internal.h"

/* SELU's -lambda * alpha (Klambauer et al. 2017), as in PyTorch's alpha_dropout. */
#define ALPHA_PRIME (-1.7580993408473766)

/* --- shared forward/backward plumbing --------------------------------------------- */

enum { NODE_SEED, NODE_OFFSET, NODE_THRESHOLD, NODE_LAYOUT, NODE_PERIOD, NODE_BASE };
enum { NODE_GRAD_SCALE };

/* What one masked op does: how decisions map to elements and the values. */
typedef struct mask_spec {
  const dn_node_type *node_type;
  dn_mask_layout layout;
  int64_t period;       /* ROWS: decisions per row; CHANNELS: elements per channel */
  int64_t base;         /* decision of the first element or channel (a batch shard's; 0 without) */
  int64_t decisions;    /* drawn by the whole batch (advance of the offset: ceil(decisions/8) blocks) */
  uint32_t threshold;
  bool affine;
  float scale, shift, fill;
  float grad_scale;     /* backward: grad_in = keep ? grad * grad_scale : 0 */
} mask_spec;

static dn_status mask_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  dn_tensor *g, *dx;
  dn_status st = dn_contiguous(&g, grad);
  if (st) return st;
  st = dn_tensor_new(&dx, DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (!st) {
    dn_dropout_mask_run(dn_tensor_data(dx), dn_tensor_data(g), dn_tensor_numel(dx), (dn_mask_layout)node->ints[NODE_LAYOUT],
             node->ints[NODE_PERIOD], node->ints[NODE_BASE], (uint64_t)node->ints[NODE_SEED], (uint64_t)node->ints[NODE_OFFSET],
             (uint32_t)node->ints[NODE_THRESHOLD], false, (float)node->scalars[NODE_GRAD_SCALE], 0.0f, 0.0f);
    grad_in[0] = dx;
  }
  dn_tensor_release(g);
  return st;
}

static const dn_node_type dropout_node = {.name = "dropout", .backward = mask_backward};
static const dn_node_type dropout_channels_node = {.name = "dropout_channels", .backward = mask_backward};
static const dn_node_type dropout_locked_node = {.name = "dropout_locked", .backward = mask_backward};
static const dn_node_type alpha_dropout_node = {.name = "alpha_dropout", .backward = mask_backward};

/*
** The forward of every masked op: x contiguous (a plain copy if not: the
** node hangs on x itself), one pass into a new tensor, then
** the node and the generator's advance.
*/
static dn_status masked_forward(dn_tensor **out, dn_tensor *x, dn_rng *rng, const mask_spec *spec) {
  *out = NULL;
  dn_tensor *src, *y;
  dn_status st = dn_plain_contiguous(&src, x);
  if (st) return st;
  st = dn_tensor_new(&y, DN_F32, x->ndim, x->shape);
  if (st) {
    dn_tensor_release(src);
    return st;
  }
  uint64_t seed = rng->seed, offset = rng->offset;
  dn_dropout_mask_run(dn_tensor_data(y), dn_tensor_data(src), dn_tensor_numel(y), spec->layout, spec->period,
                      spec->base, seed, offset, spec->threshold, spec->affine, spec->scale, spec->shift, spec->fill);
  dn_tensor_release(src);
  dn_node *node;
  st = dn_record(y, spec->node_type, 1, (const dn_tensor *[]){x}, &node);
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  if (node) {
    node->ints[NODE_SEED] = (int64_t)seed;
    node->ints[NODE_OFFSET] = (int64_t)offset;
    node->ints[NODE_THRESHOLD] = spec->threshold;
    node->ints[NODE_LAYOUT] = spec->layout;
    node->ints[NODE_PERIOD] = spec->period;
    node->ints[NODE_BASE] = spec->base;
    node->scalars[NODE_GRAD_SCALE] = spec->grad_scale;
  }
  rng->offset += dn_dropout_blocks(spec->decisions);
  *out = y;
  return DN_OK;
}

/* --- argument checks ---------------------------------------------------------------- */

static dn_status check_common(const char *op, const dn_tensor *x, double p, const dn_rng *rng) {
  dn_status st = dn_check_float(op, "input", x);
  if (!st) st = dn_dropout_check_p(op, p);
  if (!st && !rng) st = dn_fail(DN_EINVAL, "%s: generator is NULL", op);
  return st;
}

/* Elements per sample of x with batch dimension dim (all of x when x has
   no such dim; 0 for an empty batch, which draws nothing). */
static int64_t per_sample(const dn_tensor *x, int dim) {
  if (x->ndim <= dim) return dn_tensor_numel(x);
  return x->shape[dim] ? dn_tensor_numel(x) / x->shape[dim] : 0;
}

/*
** x's decision numbering under rng's batch shard (rng.h): batch dimension
** dim, per decisions per sample; *base is the first decision, *decisions
** the whole batch's. An x without dim is one sample, and an error under a
** shard.
*/
static dn_status numbering(const char *op, const dn_rng *rng, const dn_tensor *x, int dim, int64_t per,
                           int64_t *base, int64_t *decisions) {
  if (x->ndim <= dim) {
    char xs[128];
    *base = 0;
    *decisions = per;
    return dn_dropout_no_batch(op, rng, dn_shape_str(x, xs, sizeof xs));
  }
  return dn_dropout_shard(op, rng, x->shape[dim], per, base, decisions);
}

/* --- the family ------------------------------------------------------------------------ */

static dn_status scaled_dropout(const dn_node_type *type, dn_mask_layout layout, int64_t period, int64_t base,
                                int64_t decisions, dn_tensor **out, dn_tensor *x, double p, dn_rng *rng,
                                dn_dropout_scaling scaling) {
  uint32_t threshold = dn_dropout_threshold(p);
  float scale = dn_dropout_scale(threshold, scaling);
  mask_spec spec = {type, layout, period, base, decisions, threshold, false, scale, 0.0f, 0.0f, scale};
  return masked_forward(out, x, rng, &spec);
}

dn_status dn_dropout(dn_tensor **out, dn_tensor *x, double p, dn_rng *rng, dn_dropout_scaling scaling) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_common("dropout", x, p, rng);
  if (!st) st = dn_dropout_check_scaling("dropout", scaling);
  int64_t base, decisions;
  if (!st) st = numbering("dropout", rng, x, 0, per_sample(x, 0), &base, &decisions);
  if (st) return st;
  if (p == 0.0) {
    *out = dn_tensor_retain(x);
    return DN_OK;
  }
  int64_t n = dn_tensor_numel(x);
  return scaled_dropout(&dropout_node, DN_MASK_ROWS, n, base, decisions, out, x, p, rng, scaling);
}

dn_status dn_dropout_eval(dn_tensor **out, dn_tensor *x, double p, dn_dropout_scaling scaling) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = dn_check_float("dropout_eval", "input", x);
  if (!st) st = dn_dropout_check_p("dropout_eval", p);
  if (!st) st = dn_dropout_check_scaling("dropout_eval", scaling);
  if (st) return st;
  if (scaling == DN_DROPOUT_INVERTED || p == 0.0) {
    *out = dn_tensor_retain(x);
    return DN_OK;
  }
  return dn_binary_scalar(out, DN_MUL, x, 1.0 - dn_dropout_threshold(p) / 65536.0, false);
}

dn_status dn_dropout_channels(dn_tensor **out, dn_tensor *x, double p, dn_rng *rng, dn_dropout_scaling scaling) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const char *op = "dropout_channels";
  dn_status st = check_common(op, x, p, rng);
  if (!st) st = dn_dropout_check_scaling(op, scaling);
  if (!st && x->ndim < 2) {
    char xs[128];
    st = dn_fail(DN_ESHAPE, "%s: input must have at least 2 dims [N, C, *] (got shape %s)", op,
                 dn_shape_str(x, xs, sizeof xs));
  }
  int64_t base = 0, decisions = 0;
  if (!st) st = numbering(op, rng, x, 0, x->shape[1], &base, &decisions);
  if (st) return st;
  if (p == 0.0) {
    *out = dn_tensor_retain(x);
    return DN_OK;
  }
  int64_t channels = x->shape[0] * x->shape[1], channel_size = 1;
  for (int d = 2; d < x->ndim; d++) channel_size *= x->shape[d];
  /* one element per channel is plain dropout with the same decisions */
  dn_mask_layout layout = channel_size == 1 ? DN_MASK_ROWS : DN_MASK_CHANNELS;
  int64_t period = channel_size == 1 ? channels : channel_size;
  return scaled_dropout(&dropout_channels_node, layout, period, base, decisions, out, x, p, rng, scaling);
}

dn_status dn_dropout_locked(dn_tensor **out, dn_tensor *x, double p, dn_rng *rng, dn_dropout_scaling scaling) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const char *op = "dropout_locked";
  dn_status st = check_common(op, x, p, rng);
  if (!st) st = dn_dropout_check_scaling(op, scaling);
  if (!st && x->ndim != 3) {
    char xs[128];
    st = dn_fail(DN_ESHAPE, "%s: input must be 3-D [T, N, F] (got shape %s)", op, dn_shape_str(x, xs, sizeof xs));
  }
  /* the samples are dim 1; a step's decisions are reused at every t */
  int64_t base = 0, decisions = 0;
  if (!st) st = numbering(op, rng, x, 1, x->shape[2], &base, &decisions);
  if (st) return st;
  if (p == 0.0) {
    *out = dn_tensor_retain(x);
    return DN_OK;
  }
  int64_t per_step = x->shape[1] * x->shape[2];
  return scaled_dropout(&dropout_locked_node, DN_MASK_ROWS, per_step, base, decisions, out, x, p, rng, scaling);
}

/*
** PyTorch's formulas with the rounded p: y = a * (x * keep + alpha' * (1 - keep)) + b,
** a = 1 / sqrt((alpha'^2 p + 1)(1 - p)), b = -a alpha' p. p = 1 gives zeros
** (as PyTorch does; a would be infinite).
*/
dn_status dn_alpha_dropout(dn_tensor **out, dn_tensor *x, double p, dn_rng *rng) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_common("alpha_dropout", x, p, rng);
  int64_t base, decisions;
  if (!st) st = numbering("alpha_dropout", rng, x, 0, per_sample(x, 0), &base, &decisions);
  if (st) return st;
  if (p == 0.0) {
    *out = dn_tensor_retain(x);
    return DN_OK;
  }
  uint32_t threshold = dn_dropout_threshold(p);
  double rounded = threshold / 65536.0, a = 0.0, b = 0.0;
  if (threshold < DN_DROPOUT_FULL_THRESHOLD) {
    a = 1.0 / sqrt((ALPHA_PRIME * ALPHA_PRIME * rounded + 1.0) * (1.0 - rounded));
    b = -a * ALPHA_PRIME * rounded;
  }
  int64_t n = dn_tensor_numel(x);
  mask_spec spec = {&alpha_dropout_node, DN_MASK_ROWS, n, base, decisions, threshold, true, (float)a, (float)b,
                    (float)(a * ALPHA_PRIME + b), (float)a};
  return masked_forward(out, x, rng, &spec);
}

/* --- gaussian dropout ------------------------------------------------------------------- */

enum { GAUSS_SEED, GAUSS_OFFSET, GAUSS_BASE };
enum { GAUSS_SIGMA };

static dn_status gaussian_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  dn_tensor *g, *dx;
  dn_status st = dn_contiguous(&g, grad);
  if (st) return st;
  st = dn_tensor_new(&dx, DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (!st) {
    dn_gaussian_noise_run(dn_tensor_data(dx), dn_tensor_data(g), dn_tensor_numel(dx), node->ints[GAUSS_BASE],
                          (uint64_t)node->ints[GAUSS_SEED], (uint64_t)node->ints[GAUSS_OFFSET],
                          node->scalars[GAUSS_SIGMA]);
    grad_in[0] = dx;
  }
  dn_tensor_release(g);
  return st;
}
static const dn_node_type gaussian_dropout_node = {.name = "gaussian_dropout", .backward = gaussian_backward};

dn_status dn_gaussian_dropout(dn_tensor **out, dn_tensor *x, double p, dn_rng *rng) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const char *op = "gaussian_dropout";
  dn_status st = check_common(op, x, p, rng);
  if (!st && p == 1.0)
    st = dn_fail(DN_EINVAL, "%s: p must be < 1 (the noise variance p/(1-p) is infinite at p = 1)", op);
  int64_t base, normals;
  if (!st) st = numbering(op, rng, x, 0, per_sample(x, 0), &base, &normals);
  if (st) return st;
  if (p == 0.0) {
    *out = dn_tensor_retain(x);
    return DN_OK;
  }
  dn_tensor *src, *y;
  st = dn_plain_contiguous(&src, x);
  if (st) return st;
  st = dn_tensor_new(&y, DN_F32, x->ndim, x->shape);
  if (st) {
    dn_tensor_release(src);
    return st;
  }
  uint64_t seed = rng->seed, offset = rng->offset;
  double sigma = sqrt(p / (1.0 - p));
  int64_t n = dn_tensor_numel(y);
  dn_gaussian_noise_run(dn_tensor_data(y), dn_tensor_data(src), n, base, seed, offset, sigma);
  dn_tensor_release(src);
  dn_node *node;
  st = dn_record(y, &gaussian_dropout_node, 1, (const dn_tensor *[]){x}, &node);
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  if (node) {
    node->ints[GAUSS_SEED] = (int64_t)seed;
    node->ints[GAUSS_OFFSET] = (int64_t)offset;
    node->ints[GAUSS_BASE] = base;
    node->scalars[GAUSS_SIGMA] = sigma;
  }
  rng->offset += dn_gaussian_blocks(normals);
  *out = y;
  return DN_OK;
}

/* --- dropconnect ------------------------------------------------------------------------- */

enum { CONNECT_SAVED_X = 0, CONNECT_SAVED_W = 1, CONNECT_FIRST_MASK_SLOT = 2 };

/* w * mask * scale into a new contiguous [out, in] tensor (mask regenerated). */
static dn_status masked_weight(dn_tensor **out, dn_tensor *w, uint64_t seed, uint64_t offset, uint32_t threshold,
                               float scale) {
  dn_tensor *src;
  dn_status st = dn_plain_contiguous(&src, w);
  if (st) return st;
  st = dn_tensor_new(out, DN_F32, 2, w->shape);
  if (!st) {
    int64_t n = dn_tensor_numel(w);
    /* the weight mask is the layer's, not per sample: a batch shard does not apply */
    dn_dropout_mask_run(dn_tensor_data(*out), dn_tensor_data(src), n, DN_MASK_ROWS, n, 0, seed, offset, threshold,
                        false, scale, 0.0f, 0.0f);
  }
  dn_tensor_release(src);
  return st;
}

static dn_status dropconnect_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  uint64_t seed = (uint64_t)node->ints[NODE_SEED], offset = (uint64_t)node->ints[NODE_OFFSET];
  uint32_t threshold = (uint32_t)node->ints[NODE_THRESHOLD];
  float scale = (float)node->scalars[NODE_GRAD_SCALE];
  dn_status st = DN_OK;
  if (node->needs_grad[0]) {   /* dx = g @ (w * mask * scale) */
    dn_tensor *w, *wm = NULL;
    st = dn_node_saved(node, CONNECT_SAVED_W, &w);
    if (!st) st = masked_weight(&wm, w, seed, offset, threshold, scale);
    if (!st) st = dn_matmul(&grad_in[0], grad, wm);
    dn_tensor_release(wm);
  }
  if (!st && node->needs_grad[1]) {   /* dw = (g^T @ x) * mask * scale, masked in place */
    dn_tensor *x, *g_t = NULL, *x2 = NULL, *dw = NULL;
    st = dn_node_saved(node, CONNECT_SAVED_X, &x);
    /* a single sample [in] -> [out]: the outer product g[out, 1] @ x[1, in] */
    if (!st) st = grad->ndim == 2 ? dn_t(&g_t, grad) : dn_unsqueeze(&g_t, grad, 1);
    if (!st && x->ndim == 2) x2 = dn_tensor_retain(x);
    else if (!st) st = dn_unsqueeze(&x2, x, 0);
    if (!st) st = dn_matmul(&dw, g_t, x2);
    if (!st) {
      int64_t n = dn_tensor_numel(dw);
      float *data = dn_tensor_data(dw);
      dn_dropout_mask_run(data, data, n, DN_MASK_ROWS, n, 0, seed, offset, threshold, false, scale, 0.0f, 0.0f);
      grad_in[1] = dw;
    } else {
      dn_tensor_release(dw);
    }
    dn_tensor_release(x2);
    dn_tensor_release(g_t);
  }
  if (!st && node->needs_grad[2]) {   /* db = sum of g over the batch */
    if (grad->ndim == 2) st = dn_sum_dim(&grad_in[2], grad, 0, false);
    else grad_in[2] = dn_tensor_retain(grad);
  }
  return st;
}
static const dn_node_type dropconnect_node = {.name = "dropconnect_linear", .backward = dropconnect_backward};

static dn_status check_dropconnect(const dn_tensor *x, const dn_tensor *w, const dn_tensor *b, double p,
                                   const dn_rng *rng) {
  const char *op = "dropconnect_linear";
  char xs[128], ws[128], bs[128];
  dn_status st = check_common(op, x, p, rng);
  if (!st) st = dn_check_float(op, "weight", w);
  if (!st && b) st = dn_check_float(op, "bias", b);
  if (st) return st;
  if (x->ndim != 1 && x->ndim != 2)
    return dn_fail(DN_ESHAPE, "%s: input must be [batch, in] or [in] (got shape %s)", op,
                   dn_shape_str(x, xs, sizeof xs));
  if (w->ndim != 2)
    return dn_fail(DN_ESHAPE, "%s: weight must be [out, in] (got shape %s)", op, dn_shape_str(w, ws, sizeof ws));
  int64_t in = x->shape[x->ndim - 1];
  if (in != w->shape[1])
    return dn_fail(DN_ESHAPE, "%s: input %s and weight %s do not match (%lld != %lld)", op,
                   dn_shape_str(x, xs, sizeof xs), dn_shape_str(w, ws, sizeof ws), (long long)in,
                   (long long)w->shape[1]);
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
    return dn_fail(DN_ESHAPE, "%s: bias %s does not match weight %s (expected [%lld])", op,
                   dn_shape_str(b, bs, sizeof bs), dn_shape_str(w, ws, sizeof ws), (long long)w->shape[0]);
  return DN_OK;
}

dn_status dn_dropconnect_linear(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, double p, dn_rng *rng) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_dropconnect(x, w, b, p, rng);
  if (st) return st;
  if (p == 0.0) return dn_linear(out, x, w, b, DN_ACT_NONE);
  uint32_t threshold = dn_dropout_threshold(p);
  float scale = dn_dropout_scale(threshold, DN_DROPOUT_INVERTED);
  uint64_t seed = rng->seed, offset = rng->offset;
  /* the masked weight and the linear layer are internal steps, not graph ops */
  dn_tensor *wm, *y = NULL;
  st = masked_weight(&wm, w, seed, offset, threshold, scale);
  if (!st) st = dn_linear_plain(&y, x, wm, b, DN_ACT_NONE);
  dn_tensor_release(wm);
  if (st) return st;
  dn_node *node;
  st = dn_record(y, &dropconnect_node, 3, (const dn_tensor *[]){x, w, b}, &node);
  if (!st && node) {
    node->ints[NODE_SEED] = (int64_t)seed;
    node->ints[NODE_OFFSET] = (int64_t)offset;
    node->ints[NODE_THRESHOLD] = threshold;
    node->scalars[NODE_GRAD_SCALE] = scale;
    /* references to the layer's own input and weight (not copies), each only if used */
    if (node->needs_grad[1]) st = dn_node_save(node, CONNECT_SAVED_X, x);
    if (!st && node->needs_grad[0]) st = dn_node_save(node, CONNECT_SAVED_W, w);
  }
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  rng->offset += dn_dropout_blocks(dn_tensor_numel(w));
  *out = y;
  return DN_OK;
}

/* --- inspection ---------------------------------------------------------------------------- */

dn_status dn_dropout_mask(dn_tensor **mask, const dn_rng *rng, int ndim, const int64_t *shape, double p) {
  DN_FPMODE_SCOPE();
  *mask = NULL;
  if (!rng) return dn_fail(DN_EINVAL, "dropout_mask: generator is NULL");
  dn_status st = dn_dropout_check_p("dropout_mask", p);
  if (st) return st;
  if (ndim > 0 && !shape) return dn_fail(DN_EINVAL, "dropout_mask: shape is NULL for %d dims", ndim);
  st = dn_tensor_new(mask, DN_U8, ndim, shape);
  if (st) return dn_fail_as(st, "dropout_mask");
  /* dim 0 is the batch, as for dn_dropout */
  int64_t base, decisions;
  st = numbering("dropout_mask", rng, *mask, 0, per_sample(*mask, 0), &base, &decisions);
  if (st) {
    dn_tensor_release(*mask);
    *mask = NULL;
    return st;
  }
  /* p = 0 keeps everything, like dn_dropout (which draws nothing then) */
  dn_dropout_keep_run(dn_tensor_data(*mask), dn_tensor_numel(*mask), base, rng->seed, rng->offset,
                      p == 0.0 ? 0 : dn_dropout_threshold(p));
  return DN_OK;
}

/*
** Bytes of mask a family node holds between forward and backward: its saved
** tensors from the type's first mask slot on (earlier slots are references
** to the op's own inputs, which the layer holds anyway). Every variant here
** regenerates its mask, so this is 0 for all of them; the count is taken
** from the node, not assumed.
*/
size_t dn_dropout_saved_mask_bytes(const dn_tensor *out) {
  static const struct {
    const dn_node_type *type;
    int first_mask_slot;
  } family[] = {
    {&dropout_node, 0}, {&dropout_channels_node, 0}, {&dropout_locked_node, 0}, {&alpha_dropout_node, 0},
    {&gaussian_dropout_node, 0}, {&dropconnect_node, CONNECT_FIRST_MASK_SLOT},
  };
  if (!out || !out->grad_fn) return 0;
  const dn_node *node = out->grad_fn;
  for (size_t f = 0; f < sizeof family / sizeof *family; f++) {
    if (node->type != family[f].type) continue;
    size_t bytes = 0;
    for (int s = family[f].first_mask_slot; s < DN_NODE_SAVED; s++)
      if (node->saved[s]) bytes += (size_t)dn_tensor_numel(node->saved[s]) * dn_dtype_size(node->saved[s]->dtype);
    return bytes;
  }
  return 0;
}

