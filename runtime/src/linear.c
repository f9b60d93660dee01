/*
** The fused linear layer: y = act(x @ w^T + b), the hot path of an MLP.
**
** Forward is one sgemm straight into the output (w^T is a transposed view,
** which sgemm takes as a transpose flag), then one pass over the output that
** adds the bias and applies the activation. Backward is one pass that turns
** the incoming gradient into the pre-activation gradient (act' from the saved
** output, so no pre-activation tensor is kept) and sums it over rows into the
** bias gradient, then two sgemms: dx = g_pre @ w and dw = g_pre^T @ x.
**
** dn_linear_relu_dropout (declared in dropout.h) adds dropout to the same
** pass over the sgemm's output (bias, ReLU, mask), and shares this
** backward: with a positive scale the output is > 0 exactly where the unit
** was kept and active, so the pre-activation gradient is g * scale there and
** 0 elsewhere, no mask needed.
**
** Internal views are plain aliases (dn_matrix_alias, dn_transposed_alias) and
** the sgemm is dn_matmul_into_plain: private steps that never enter the
** autograd graph, so grad mode is never touched here.
*/
#include <string.h>

#include "dropnet/dropout.h"
#include "dropnet/nn.h"
#include "dropout_mask.h"
#include "graph.h"
#include "internal.h"

/* Column ranges narrower than this are not worth a thread of their own. */
#define MIN_COLUMNS_PER_THREAD 64

enum { SAVED_X = 0, SAVED_W = 1, SAVED_Y = 2 };
enum { NODE_ACTIVATION = 0 };   /* node->ints: the dn_activation */
enum { NODE_GRAD_SCALE = 0 };   /* node->scalars: the dropout scale (1 without dropout) */

/* --- forward: bias + activation over the sgemm's output ------------------------ */

/* `v < 0` keeps NaN as it is, like PyTorch's relu. */
static DN_ALWAYS_INLINE void bias_act_row(float *row, const float *bias, int64_t cols, dn_activation act) {
  switch (act) {
    case DN_ACT_NONE:
#pragma omp simd
      for (int64_t j = 0; j < cols; j++) row[j] += bias[j];
      break;
    case DN_ACT_RELU:
      if (bias) {
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) {
          float v = row[j] + bias[j];
          row[j] = v < 0.0f ? 0.0f : v;
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) row[j] = row[j] < 0.0f ? 0.0f : row[j];
      }
      break;
    /* libm calls: no simd pragma (vectorized only with a SIMD libm) */
    case DN_ACT_TANH:
      for (int64_t j = 0; j < cols; j++) row[j] = tanhf(row[j] + (bias ? bias[j] : 0.0f));
      break;
    case DN_ACT_SIGMOID:
      for (int64_t j = 0; j < cols; j++) row[j] = dn_sigmoid_f32(row[j] + (bias ? bias[j] : 0.0f));
      break;
  }
}

/* Rows [r0, r1) of y = act(y + bias). */
typedef struct bias_act_job {
  float *y;
  int64_t cols;
  const float *bias;
  dn_activation act;
} bias_act_job;

static void bias_act_rows(const void *ctx, int64_t r0, int64_t r1) {
  const bias_act_job *j = ctx;
  for (int64_t r = r0; r < r1; r++) bias_act_row(j->y + r * j->cols, j->bias, j->cols, j->act);
}

/* y[rows, cols] (contiguous) = act(y + bias); bias [cols] contiguous or NULL. */
static void bias_act_forward(float *y, int64_t rows, int64_t cols, const float *bias, dn_activation act) {
  if (act == DN_ACT_NONE && !bias) return;
  bias_act_job job = {y, cols, bias, act};
  dn_parallel_rows(rows, cols, bias_act_rows, &job);
}

/*
** y = dropout(relu(y + bias)) in place, one parallel pass: each task takes
** whole spans of DN_DROPOUT_SPAN_ALIGN-aligned elements and, block by block
** while it is in L1, adds the bias and applies ReLU (the same expression as
** bias_act_row) and then dn_dropout's mask.
*/
typedef struct dropout_params {
  int64_t base;   /* decision of y's element 0 (a batch shard's first * out; 0 without) */
  uint64_t seed, offset;
  uint32_t threshold;
  float scale;
} dropout_params;

#define FUSED_BLOCK (DN_DROPOUT_SPAN_ALIGN * 32)   /* 16 KB of floats */

/* Elements [begin, end) of y, begin a multiple of FUSED_BLOCK, block by block. */
typedef struct fused_dropout_job {
  float *y;
  int64_t cols;
  const float *bias;
  const dropout_params *d;
} fused_dropout_job;

static void bias_relu_dropout_range(const void *ctx, int64_t begin, int64_t end) {
  const fused_dropout_job *j = ctx;
  float *y = j->y;
  const float *bias = j->bias;
  const dropout_params *d = j->d;
  int64_t cols = j->cols;
  for (int64_t b0 = begin; b0 < end; b0 += FUSED_BLOCK) {
    int64_t b1 = b0 + FUSED_BLOCK < end ? b0 + FUSED_BLOCK : end;
    for (int64_t i = b0; i < b1;) {   /* row pieces: the bias restarts at each row */
      int64_t c = i % cols, len = cols - c < b1 - i ? cols - c : b1 - i;
      bias_act_row(y + i, bias ? bias + c : NULL, len, DN_ACT_RELU);
      i += len;
    }
    dn_dropout_mask_span(y, b0, b1, d->base, d->seed, d->offset, d->threshold, d->scale);
  }
}

static void bias_relu_dropout_forward(float *y, int64_t rows, int64_t cols, const float *bias,
                                      const dropout_params *d) {
  fused_dropout_job job = {y, cols, bias, d};
  dn_parallel_range(rows * cols, FUSED_BLOCK, bias_relu_dropout_range, &job);
}

/* --- backward: pre-activation gradient and bias gradient in one pass --------------- */

/* d act / d pre-activation, from the activation's output y. */
static DN_ALWAYS_INLINE float act_derivative(float y, dn_activation act) {
  switch (act) {
    case DN_ACT_NONE: return 1.0f;
    case DN_ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case DN_ACT_TANH: return 1.0f - y * y;
    case DN_ACT_SIGMOID: return y * (1.0f - y);
  }
  return 1.0f;
}

/*
** Columns [c0, c1) of every row: g_pre = g * act'(y) into g_pre (when
** write_g_pre) and bias_sum[j] += g_pre (when sum_bias). ReLU's is a select,
** g * scale where y > 0 and exactly 0 elsewhere (as PyTorch's; an infinite g
** gives no NaN), scale being dropout's (1 without). Written once with the
** gradient's column stride, the activation and the two modes as parameters;
** inlined at constants, the contiguous cases become simd loops.
*/
static DN_ALWAYS_INLINE void act_backward_columns(float *g_pre, double *bias_sum, const float *g, int64_t g_row_stride,
                                               int64_t g_col_stride, const float *y, int64_t rows, int64_t cols,
                                               int64_t c0, int64_t c1, dn_activation act, float scale,
                                               bool write_g_pre, bool sum_bias) {
  for (int64_t r = 0; r < rows; r++) {
    const float *g_row = g + r * g_row_stride;
    const float *y_row = y ? y + r * cols : NULL;   /* no arithmetic on NULL (UBSan) */
    float *out_row = g_pre ? g_pre + r * cols : NULL;
#pragma omp simd
    for (int64_t j = c0; j < c1; j++) {
      float v = g_row[j * g_col_stride];
      if (act == DN_ACT_RELU) v = dn_keep_or(y_row[j] > 0.0f, v * scale, 0.0f);
      else if (act != DN_ACT_NONE) v *= act_derivative(y_row[j], act);
      if (write_g_pre) out_row[j] = v;
      if (sum_bias) bias_sum[j] += v;
    }
  }
}

/* Picks a constant-argument copy of the loop for contiguous gradients. */
static void act_backward_range(float *g_pre, double *bias_sum, const float *g, int64_t g_row_stride,
                               int64_t g_col_stride, const float *y, int64_t rows, int64_t cols, int64_t c0,
                               int64_t c1, dn_activation act, float scale) {
  bool write = g_pre != NULL, sum = bias_sum != NULL;
  if (g_col_stride != 1) {
    act_backward_columns(g_pre, bias_sum, g, g_row_stride, g_col_stride, y, rows, cols, c0, c1, act, scale, write,
                         sum);
    return;
  }
#define COLUMNS(a, w, s) \
  act_backward_columns(g_pre, bias_sum, g, g_row_stride, 1, y, rows, cols, c0, c1, a, scale, w, s)
  switch (act) {
    case DN_ACT_NONE: COLUMNS(DN_ACT_NONE, false, true); break;   /* g_pre is g itself: bias only */
    case DN_ACT_RELU: sum ? COLUMNS(DN_ACT_RELU, true, true) : COLUMNS(DN_ACT_RELU, true, false); break;
    case DN_ACT_TANH: sum ? COLUMNS(DN_ACT_TANH, true, true) : COLUMNS(DN_ACT_TANH, true, false); break;
    case DN_ACT_SIGMOID: sum ? COLUMNS(DN_ACT_SIGMOID, true, true) : COLUMNS(DN_ACT_SIGMOID, true, false); break;
  }
#undef COLUMNS
}

/* Columns of part `task` of act_backward's pass. */
typedef struct act_backward_job {
  float *g_pre;
  double *bias_sum;
  const float *g;
  int64_t row_stride, col_stride;
  const float *y;
  int64_t rows, cols;
  dn_activation act;
  float scale;
} act_backward_job;

static void act_backward_part(void *ctx, int task, int tasks) {
  const act_backward_job *j = ctx;
  act_backward_range(j->g_pre, j->bias_sum, j->g, j->row_stride, j->col_stride, j->y, j->rows, j->cols,
                     dn_split(j->cols, task, tasks), dn_split(j->cols, task + 1, tasks), j->act, j->scale);
}

/*
** One pass over g [rows, cols] (any strides): g_pre (contiguous; NULL for no
** activation, where it is g itself) and the column sums into bias_sum
** (zeroed here; or NULL). Tasks split the columns, so every column is
** summed over the rows in row order by one task: the sums do not depend on
** the thread count.
*/
static void act_backward(float *g_pre, double *bias_sum, const dn_tensor *g, const float *y, int64_t rows,
                         int64_t cols, dn_activation act, float scale) {
  if (bias_sum) memset(bias_sum, 0, (size_t)cols * sizeof *bias_sum);
  if (rows == 0 || cols == 0) return;
  act_backward_job job = {g_pre, bias_sum, DN_F32_AT(g, g->offset), g->stride[0], g->stride[1], y, rows, cols,
                          act, scale};
  int threads = dn_threads_for(rows * cols);
  int64_t by_columns = cols / MIN_COLUMNS_PER_THREAD;
  if (threads > by_columns) threads = by_columns > 1 ? (int)by_columns : 1;
  dn_parallel(threads, act_backward_part, &job);
}

/* --- autograd ---------------------------------------------------------------------- */

/* A new (uninitialized) float32 tensor of input i's shape. */
static dn_status new_input_grad(dn_tensor **out, dn_node *node, int i) {
  return dn_tensor_new(out, DN_F32, node->in_ndim[i], node->in_shape[i]);
}

/* dx = g_pre @ w into a new tensor of x's shape. */
static dn_status input_grad(dn_tensor **dx, dn_node *node, dn_tensor *g_pre) {
  dn_tensor *w, *dx2 = NULL;
  dn_status st = dn_node_saved(node, SAVED_W, &w);
  if (!st) st = new_input_grad(dx, node, 0);
  if (!st) st = dn_matrix_alias(&dx2, *dx, 0);
  if (!st) st = dn_matmul_into_plain(dx2, g_pre, w, 1.0f, 0.0f);
  dn_tensor_release(dx2);
  return st;
}

/* dw = g_pre^T @ x into a new [out, in] tensor. */
static dn_status weight_grad(dn_tensor **dw, dn_node *node, dn_tensor *g_pre) {
  dn_tensor *x, *x2 = NULL, *g_t = NULL;
  dn_status st = dn_node_saved(node, SAVED_X, &x);
  if (!st) st = new_input_grad(dw, node, 1);
  if (!st) st = dn_matrix_alias(&x2, x, 0);
  if (!st) st = dn_transposed_alias(&g_t, g_pre);
  if (!st) st = dn_matmul_into_plain(*dw, g_t, x2, 1.0f, 0.0f);
  dn_tensor_release(g_t);
  dn_tensor_release(x2);
  return st;
}

/* db as float32 [out] from the double column sums. */
static dn_status bias_grad(dn_tensor **db, dn_node *node, const double *bias_sum) {
  dn_status st = new_input_grad(db, node, 2);
  if (st) return st;
  float *d = dn_tensor_data(*db);
  for (int64_t j = 0; j < node->in_shape[2][0]; j++) d[j] = (float)bias_sum[j];
  return DN_OK;
}

static dn_status linear_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_activation act = (dn_activation)node->ints[NODE_ACTIVATION];
  int64_t rows = node->in_ndim[0] == 2 ? node->in_shape[0][0] : 1, cols = node->in_shape[1][0];
  dn_tensor *g = NULL, *g_pre = NULL;
  double *bias_sum = NULL;
  dn_status st = dn_matrix_alias(&g, grad, 0);
  if (st) return st;
  if (node->needs_grad[2]) {
    bias_sum = dn_alloc((size_t)(cols > 0 ? cols : 1) * sizeof *bias_sum);
    if (!bias_sum) st = dn_fail(DN_ENOMEM, "backward: linear: out of memory");
  }
  if (!st && act == DN_ACT_NONE) {
    /* the pre-activation gradient is g itself: only the bias needs a pass */
    g_pre = dn_tensor_retain(g);
    if (bias_sum) act_backward(NULL, bias_sum, g, NULL, rows, cols, act, 1.0f);
  } else if (!st) {
    dn_tensor *y;
    st = dn_node_saved(node, SAVED_Y, &y);
    if (!st) st = dn_tensor_new(&g_pre, DN_F32, 2, (int64_t[]){rows, cols});
    if (!st)
      act_backward(dn_tensor_data(g_pre), bias_sum, g, dn_tensor_data(y), rows, cols, act,
                   (float)node->scalars[NODE_GRAD_SCALE]);
  }
  if (!st && node->needs_grad[0]) st = input_grad(&grad_in[0], node, g_pre);
  if (!st && node->needs_grad[1]) st = weight_grad(&grad_in[1], node, g_pre);
  if (!st && node->needs_grad[2]) st = bias_grad(&grad_in[2], node, bias_sum);
  dn_free(bias_sum);
  dn_tensor_release(g_pre);
  dn_tensor_release(g);
  return st;
}
static const dn_node_type linear_node = {.name = "linear", .backward = linear_backward};
static const dn_node_type linear_relu_dropout_node = {.name = "linear_relu_dropout", .backward = linear_backward};

/* --- forward -------------------------------------------------------------------------- */

static dn_status check_args(const dn_tensor *x, const dn_tensor *w, const dn_tensor *b, dn_activation act) {
  char xs[128], ws[128], bs[128];
  if (x->dtype != DN_F32 || w->dtype != DN_F32 || (b && b->dtype != DN_F32))
    return dn_fail(DN_ETYPE, "linear: expects float32 tensors (got input %s, weight %s%s%s)",
                   dn_dtype_name(x->dtype), dn_dtype_name(w->dtype), b ? ", bias " : "",
                   b ? dn_dtype_name(b->dtype) : "");
  if ((unsigned)act > (unsigned)DN_ACT_SIGMOID)
    return dn_fail(DN_EINVAL, "linear: unknown activation %d (use none, relu, tanh or sigmoid)", (int)act);
  if (x->ndim != 1 && x->ndim != 2)
    return dn_fail(DN_ESHAPE, "linear: input must be [batch, in] or [in] (got shape %s)",
                   dn_shape_str(x, xs, sizeof xs));
  if (w->ndim != 2)
    return dn_fail(DN_ESHAPE, "linear: weight must be [out, in] (got shape %s)", dn_shape_str(w, ws, sizeof ws));
  int64_t in = x->shape[x->ndim - 1];
  if (in != w->shape[1])
    return dn_fail(DN_ESHAPE, "linear: input %s and weight %s do not match (%lld != %lld)",
                   dn_shape_str(x, xs, sizeof xs), dn_shape_str(w, ws, sizeof ws), (long long)in,
                   (long long)w->shape[1]);
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
    return dn_fail(DN_ESHAPE, "linear: bias %s does not match weight %s (expected [%lld])",
                   dn_shape_str(b, bs, sizeof bs), dn_shape_str(w, ws, sizeof ws), (long long)w->shape[0]);
  return DN_OK;
}

/* y = x @ w^T (+ b, act) into the new contiguous tensor y; with drop, act is
   ReLU and dropout follows in the same pass. */
static dn_status compute(dn_tensor *y, dn_tensor *x, dn_tensor *w, dn_tensor *b, dn_activation act,
                         const dropout_params *drop) {
  dn_tensor *x2 = NULL, *w_t = NULL, *y2 = NULL, *bias = NULL;
  dn_status st = dn_matrix_alias(&x2, x, 0);
  if (!st) st = dn_transposed_alias(&w_t, w);
  if (!st) st = dn_matrix_alias(&y2, y, 0);
  if (!st) st = dn_matmul_into_plain(y2, x2, w_t, 1.0f, 0.0f);
  if (!st && b) st = dn_plain_contiguous(&bias, b);   /* a copy only for a strided bias */
  const float *bias_data = bias ? dn_tensor_data(bias) : NULL;
  if (!st && drop) bias_relu_dropout_forward(dn_tensor_data(y), y2->shape[0], y2->shape[1], bias_data, drop);
  else if (!st) bias_act_forward(dn_tensor_data(y), y2->shape[0], y2->shape[1], bias_data, act);
  dn_tensor_release(bias);
  dn_tensor_release(y2);
  dn_tensor_release(w_t);
  dn_tensor_release(x2);
  return st;
}

/*
** The forward of every entry point: checks, the output, the sgemm and its
** pass (with drop: ReLU and dropout), then y's node (grad scale: dropout's,
** 1 without) and what its backward reads; no node without a type.
*/
static dn_status forward(dn_tensor **out, const dn_node_type *type, dn_tensor *x, dn_tensor *w, dn_tensor *b,
                         dn_activation act, const dropout_params *drop) {
  *out = NULL;
  dn_status st = check_args(x, w, b, act);
  if (st) return st;
  int64_t shape[2] = {x->shape[0], w->shape[0]};
  dn_tensor *y;
  st = dn_tensor_new(&y, DN_F32, x->ndim, x->ndim == 2 ? shape : shape + 1);
  if (st) return st;
  st = compute(y, x, w, b, act, drop);
  dn_node *node = NULL;
  if (!st && type) st = dn_record(y, type, 3, (const dn_tensor *[]){x, w, b}, &node);
  if (!st && node) {
    node->ints[NODE_ACTIVATION] = act;
    node->scalars[NODE_GRAD_SCALE] = drop ? drop->scale : 1.0f;
    if (node->needs_grad[1]) st = dn_node_save(node, SAVED_X, x);
    if (!st && node->needs_grad[0]) st = dn_node_save(node, SAVED_W, w);
    if (!st && act != DN_ACT_NONE) st = dn_node_save(node, SAVED_Y, y);
  }
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  *out = y;
  return DN_OK;
}

dn_status dn_linear(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, dn_activation act) {
  DN_FPMODE_SCOPE();
  return forward(out, &linear_node, x, w, b, act, NULL);
}

dn_status dn_linear_plain(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, dn_activation act) {
  return forward(out, NULL, x, w, b, act, NULL);
}

dn_status dn_linear_relu_dropout(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, double p,
                                 dn_rng *rng, dn_dropout_scaling scaling) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const char *op = "linear_relu_dropout";
  dn_status st = dn_dropout_check_params(op, p, rng, scaling);
  if (!st) st = check_args(x, w, b, DN_ACT_RELU);
  if (st) return st;
  /* the output's rows are the samples: out = w's rows decisions each (rng.h's batch shards) */
  int64_t base = 0, decisions = w->shape[0];
  if (x->ndim == 1) {
    char xs[128];
    st = dn_dropout_no_batch(op, rng, dn_shape_str(x, xs, sizeof xs));
  } else {
    st = dn_dropout_shard(op, rng, x->shape[0], w->shape[0], &base, &decisions);
  }
  if (st) return st;
  if (p == 0.0) return dn_linear(out, x, w, b, DN_ACT_RELU);   /* dropout with p = 0 draws nothing */
  uint32_t threshold = dn_dropout_threshold(p);
  dropout_params drop = {base, rng->seed, rng->offset, threshold, dn_dropout_scale(threshold, scaling)};
  st = forward(out, &linear_relu_dropout_node, x, w, b, DN_ACT_RELU, &drop);
  if (!st) rng->offset += dn_dropout_blocks(decisions);
  return st;
}
