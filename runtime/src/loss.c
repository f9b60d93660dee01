/*
** Losses with their backward: cross entropy (fused log-softmax + NLL), NLL,
** MSE and binary cross entropy on logits. Reductions as PyTorch's: "mean"
** divides by N for the class losses and by the element count for the
** pointwise ones; "none" keeps one loss per row / element.
**
** Sums are deterministic: each row (class losses) or each fixed-size block
** of elements (pointwise losses, a row when strided) gets a partial sum in
** double by one thread; the partials are added in order.
*/
#include <stdio.h>
#include <string.h>

#include "dropnet/autograd.h"
#include "dropnet/loss.h"
#include "graph.h"
#include "internal.h"

/* Elements per partial sum of a pointwise loss over contiguous operands. */
#define LOSS_BLOCK 8192

bool dn_reduction_parse(const char *name, dn_reduction *reduction) {
  if (!strcmp(name, "mean")) *reduction = DN_REDUCTION_MEAN;
  else if (!strcmp(name, "sum")) *reduction = DN_REDUCTION_SUM;
  else if (!strcmp(name, "none")) *reduction = DN_REDUCTION_NONE;
  else return false;
  return true;
}

static dn_status check_reduction(const char *op, dn_reduction reduction) {
  if ((unsigned)reduction <= (unsigned)DN_REDUCTION_NONE) return DN_OK;
  return dn_fail(DN_EINVAL, "%s: unknown reduction %d (use mean, sum or none)", op, (int)reduction);
}

/* A 0-dim float32 tensor holding the reduced sum (mean: divided by count; NaN when empty). */
static dn_status reduced_scalar(dn_tensor **out, double sum, int64_t count, dn_reduction reduction) {
  double value = reduction == DN_REDUCTION_MEAN ? sum / (double)count : sum;
  return dn_tensor_full(out, DN_F32, 0, NULL, value);
}

/* The incoming gradient of a reduced loss: one value for mean/sum (mean divided by count),
   or a pointer and stride into a per-row/per-element gradient for none. */
typedef struct loss_grad {
  const float *values;   /* NULL for mean/sum */
  int64_t stride;
  float scale;
} loss_grad;

static loss_grad loss_grad_of(const dn_tensor *grad, dn_reduction reduction, int64_t count) {
  loss_grad lg = {NULL, 0, 0.0f};
  const float *g = DN_F32_AT(grad, grad->offset);
  if (reduction == DN_REDUCTION_NONE) {
    lg.values = g;
    lg.stride = grad->ndim ? grad->stride[0] : 0;
  } else {
    lg.scale = reduction == DN_REDUCTION_MEAN ? (float)(g[0] / (double)count) : g[0];
  }
  return lg;
}

static inline float loss_grad_at(const loss_grad *lg, int64_t i) {
  return lg->values ? lg->values[i * lg->stride] : lg->scale;
}

/* --- class losses: [N, C] (or [C]) scores against int32 targets [N] (or 0-dim) ------------- */

typedef struct class_rows {
  int64_t rows, classes;
  const float *x;              /* element [0, 0] */
  int64_t row_stride, col_stride;
  const int32_t *target;
  int64_t target_stride;
  int64_t base;
} class_rows;

static class_rows class_rows_of(const dn_tensor *x, const dn_tensor *target, int64_t base) {
  class_rows cr;
  cr.rows = x->ndim == 2 ? x->shape[0] : 1;
  cr.classes = x->shape[x->ndim - 1];
  cr.x = DN_F32_AT(x, x->offset);
  cr.row_stride = x->ndim == 2 ? x->stride[0] : 0;
  cr.col_stride = x->stride[x->ndim - 1];
  cr.target = DN_I32_AT(target, target->offset);
  cr.target_stride = target->ndim ? target->stride[0] : 0;
  cr.base = base;
  return cr;
}

/* Class of row i, 0-based (checked by check_class_args). */
static inline int64_t class_of(const class_rows *cr, int64_t i) {
  return (int64_t)cr->target[i * cr->target_stride] - cr->base;
}

/* dtypes, reduction, shapes ([N,C] with [N], or [C] with 0-dim) and every target's range. */
static dn_status check_class_args(const char *op, const dn_tensor *x, const dn_tensor *target, int64_t base,
                                  dn_reduction reduction) {
  char xs[128], ts[128];
  dn_status st = dn_check_float(op, "input", x);
  if (st) return st;
  if (target->dtype != DN_I32)
    return dn_fail(DN_ETYPE, "%s: target must be int32 class indices (got %s)", op, dn_dtype_name(target->dtype));
  st = check_reduction(op, reduction);
  if (st) return st;
  if (x->ndim != 1 && x->ndim != 2)
    return dn_fail(DN_ESHAPE, "%s: input must be [N, C] or [C] (got shape %s)", op, dn_shape_str(x, xs, sizeof xs));
  bool match = x->ndim == 2 ? target->ndim == 1 && target->shape[0] == x->shape[0] : target->ndim == 0;
  if (!match) {
    char want[64];
    if (x->ndim == 2) snprintf(want, sizeof want, "[%lld]", (long long)x->shape[0]);
    else snprintf(want, sizeof want, "[] (0-dim)");
    return dn_fail(DN_ESHAPE, "%s: input %s and target %s do not match (expected target %s)", op,
                   dn_shape_str(x, xs, sizeof xs), dn_shape_str(target, ts, sizeof ts), want);
  }
  class_rows cr = class_rows_of(x, target, base);
  for (int64_t i = 0; i < cr.rows; i++) {
    int64_t c = class_of(&cr, i);
    if (c < 0 || c >= cr.classes)
      return dn_fail(DN_ERANGE, "%s: target %lld at position %lld is out of range for %lld classes (valid: %lld..%lld)",
                     op, (long long)(c + base), (long long)(i + base), (long long)cr.classes, (long long)base,
                     (long long)(base + cr.classes - 1));
  }
  return DN_OK;
}

/* A new loss tensor: one value per row for none ([N], or 0-dim for a [C] input), else the reduction. */
static dn_status class_loss_result(dn_tensor **out, const double *losses, const dn_tensor *x, dn_reduction reduction) {
  int64_t rows = x->ndim == 2 ? x->shape[0] : 1;
  if (reduction == DN_REDUCTION_NONE) {
    dn_status st = dn_tensor_new(out, DN_F32, x->ndim - 1, x->shape);
    if (st) return st;
    float *o = dn_tensor_data(*out);
    for (int64_t i = 0; i < rows; i++) o[i] = (float)losses[i];
    return DN_OK;
  }
  double sum = 0;
  for (int64_t i = 0; i < rows; i++) sum += losses[i];
  return reduced_scalar(out, sum, rows, reduction);
}

static double *alloc_doubles(int64_t n) { return dn_alloc((size_t)(n > 0 ? n : 1) * sizeof(double)); }

typedef struct cross_entropy_job {
  double *losses;
  float *stats;   /* may be NULL */
  const class_rows *cr;
  double eps;
} cross_entropy_job;

/*
** Per row: m = max, log_sum = log(sum exp(x - m)) (so logsumexp = m + log_sum),
** loss = (1 - eps) (m - x[t]) + eps/C sum_j (m - x[j]) + log_sum, which is
** logsumexp - (1 - eps) x[t] - eps/C sum_j x[j] written with differences
** from the max only: exact for logits of any size. stats (may be NULL)
** keeps (m, log_sum) per row for the backward.
*/
static void cross_entropy_rows(const void *ctx, int64_t i0, int64_t i1) {
  const cross_entropy_job *job = ctx;
  const class_rows *cr = job->cr;
  double *losses = job->losses, eps = job->eps;
  float *stats = job->stats;
  int64_t classes = cr->classes, sc = cr->col_stride;
  for (int64_t i = i0; i < i1; i++) {
    const float *x = cr->x + i * cr->row_stride;
    float m = -INFINITY;
    for (int64_t j = 0; j < classes; j++) m = dn_max_nan(m, x[j * sc]);
    double sum = 0, spread = 0;
    for (int64_t j = 0; j < classes; j++) sum += expf(x[j * sc] - m);
    if (eps > 0)   /* skipped at 0: a -inf logit would make 0 * inf */
      for (int64_t j = 0; j < classes; j++) spread += (double)m - x[j * sc];
    double log_sum = log(sum);
    double target_gap = (double)m - x[class_of(cr, i) * sc];
    losses[i] = (1 - eps) * target_gap + (eps > 0 ? eps * spread / (double)classes : 0.0) + log_sum;
    if (stats) {
      stats[2 * i] = m;
      stats[2 * i + 1] = (float)log_sum;
    }
  }
}

typedef struct cross_entropy_grad_job {
  const class_rows *cr;
  const loss_grad *lg;
  const float *row_stats;
  float *dx;
  float smooth, hit;
} cross_entropy_grad_job;

static void cross_entropy_grad_rows(const void *ctx, int64_t i0, int64_t i1) {
  const cross_entropy_grad_job *job = ctx;
  const class_rows cr = *job->cr;
  const float *row_stats = job->row_stats;
  float *dx = job->dx, smooth = job->smooth, hit = job->hit;
  int64_t classes = cr.classes, sc = cr.col_stride;
  for (int64_t i = i0; i < i1; i++) {
    const float *xr = cr.x + i * cr.row_stride;
    float *d = dx + i * classes;
    float m = row_stats[2 * i], log_sum = row_stats[2 * i + 1], g = loss_grad_at(job->lg, i);
    for (int64_t j = 0; j < classes; j++) d[j] = g * (expf((xr[j * sc] - m) - log_sum) - smooth);
    d[class_of(&cr, i)] -= g * hit;
  }
}

/*
** A class loss node (cross_entropy, nll_loss): ints, scalars (cross_entropy's
** label smoothing) and saved slots (nll_loss keeps the target only).
*/
enum { CLASS_REDUCTION, CLASS_BASE };
enum { CLASS_LABEL_SMOOTHING };
enum { CLASS_SAVED_X, CLASS_SAVED_TARGET, CLASS_SAVED_STATS };

/* d loss / d x[i, j] = g_i (softmax_ij - (1 - eps) [j == t_i] - eps / C). */
static dn_status cross_entropy_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_tensor *x, *target, *stats;
  dn_status st = dn_node_saved(node, CLASS_SAVED_X, &x);
  if (!st) st = dn_node_saved(node, CLASS_SAVED_TARGET, &target);
  if (!st) st = dn_node_saved(node, CLASS_SAVED_STATS, &stats);
  if (st) return st;
  dn_reduction reduction = (dn_reduction)node->ints[CLASS_REDUCTION];
  class_rows cr = class_rows_of(x, target, node->ints[CLASS_BASE]);
  float eps = (float)node->scalars[CLASS_LABEL_SMOOTHING];
  float smooth = cr.classes ? eps / (float)cr.classes : 0.0f, hit = 1.0f - eps;
  loss_grad lg = loss_grad_of(grad, reduction, cr.rows);
  st = dn_tensor_new(&grad_in[0], DN_F32, x->ndim, x->shape);
  if (st) return st;
  cross_entropy_grad_job job = {&cr, &lg, dn_tensor_data(stats), dn_tensor_data(grad_in[0]), smooth, hit};
  dn_parallel_rows(cr.rows, cr.classes, cross_entropy_grad_rows, &job);
  return DN_OK;
}
static const dn_node_type cross_entropy_node = {.name = "cross_entropy", .backward = cross_entropy_backward};

dn_status dn_cross_entropy(dn_tensor **out, dn_tensor *logits, const dn_tensor *target, int64_t base,
                           double label_smoothing, dn_reduction reduction) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_class_args("cross_entropy", logits, target, base, reduction);
  if (st) return st;
  if (!(label_smoothing >= 0 && label_smoothing <= 1))
    return dn_fail(DN_EINVAL, "cross_entropy: label_smoothing must be in [0, 1] (got %g)", label_smoothing);
  class_rows cr = class_rows_of(logits, target, base);
  /* the row statistics are kept only when a node will be recorded */
  bool recording = dn_grad_enabled() && logits->requires_grad;
  dn_tensor *stats = NULL, *result = NULL;
  double *losses = alloc_doubles(cr.rows);
  if (!losses) return dn_fail(DN_ENOMEM, "cross_entropy: out of memory");
  if (recording) st = dn_tensor_new(&stats, DN_F32, 2, (int64_t[]){cr.rows, 2});
  if (!st) {
    cross_entropy_job job = {losses, stats ? dn_tensor_data(stats) : NULL, &cr, label_smoothing};
    dn_parallel_rows(cr.rows, cr.classes, cross_entropy_rows, &job);
    st = class_loss_result(&result, losses, logits, reduction);
  }
  dn_node *node = NULL;
  if (!st) st = dn_record(result, &cross_entropy_node, 1, (const dn_tensor *[]){logits}, &node);
  if (!st && node) {
    node->ints[CLASS_REDUCTION] = reduction;
    node->ints[CLASS_BASE] = base;
    node->scalars[CLASS_LABEL_SMOOTHING] = label_smoothing;
    st = dn_node_save(node, CLASS_SAVED_X, logits);
    if (!st) st = dn_node_save(node, CLASS_SAVED_TARGET, target);
    if (!st) st = dn_node_save(node, CLASS_SAVED_STATS, stats);
  }
  dn_free(losses);
  dn_tensor_release(stats);
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  *out = result;
  return DN_OK;
}

/* d loss / d x[i, j] = -g_i at j = t_i, else 0. */
static dn_status nll_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_tensor *target;
  dn_status st = dn_node_saved(node, CLASS_SAVED_TARGET, &target);
  if (st) return st;
  st = dn_tensor_zeros(&grad_in[0], DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (st) return st;
  dn_tensor *dx = grad_in[0];
  class_rows cr = class_rows_of(dx, target, node->ints[CLASS_BASE]);
  loss_grad lg = loss_grad_of(grad, (dn_reduction)node->ints[CLASS_REDUCTION], cr.rows);
  float *d = dn_tensor_data(dx);
  for (int64_t i = 0; i < cr.rows; i++) d[i * cr.classes + class_of(&cr, i)] = -loss_grad_at(&lg, i);
  return DN_OK;
}
static const dn_node_type nll_node = {.name = "nll_loss", .backward = nll_backward};

dn_status dn_nll_loss(dn_tensor **out, dn_tensor *log_probs, const dn_tensor *target, int64_t base,
                      dn_reduction reduction) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_class_args("nll_loss", log_probs, target, base, reduction);
  if (st) return st;
  class_rows cr = class_rows_of(log_probs, target, base);
  double *losses = alloc_doubles(cr.rows);
  if (!losses) return dn_fail(DN_ENOMEM, "nll_loss: out of memory");
  for (int64_t i = 0; i < cr.rows; i++) losses[i] = -cr.x[i * cr.row_stride + class_of(&cr, i) * cr.col_stride];
  dn_tensor *result;
  st = class_loss_result(&result, losses, log_probs, reduction);
  dn_free(losses);
  if (st) return st;
  dn_node *node;
  st = dn_record(result, &nll_node, 1, (const dn_tensor *[]){log_probs}, &node);
  if (!st && node) {
    node->ints[CLASS_REDUCTION] = reduction;
    node->ints[CLASS_BASE] = base;
    st = dn_node_save(node, CLASS_SAVED_TARGET, target);
  }
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  *out = result;
  return DN_OK;
}

/* --- pointwise losses: input and target of one shape ------------------------------------ */

typedef enum pointwise_loss { MSE, BCE_WITH_LOGITS } pointwise_loss;

static inline float pointwise_value(pointwise_loss kind, float x, float t) {
  if (kind == MSE) {
    float d = x - t;
    return d * d;
  }
  /* max(x, 0) - x t + log(1 + exp(-|x|)) */
  return (x > 0.0f ? x : 0.0f) - x * t + log1pf(expf(-fabsf(x)));
}

/*
** The work is cut into units whose bounds depend on the shape only: blocks
** of LOSS_BLOCK elements when every operand is contiguous, else rows (the
** last dim, walked with each operand's own strides).
*/
typedef struct units {
  bool flat;
  int64_t count, len, numel;
} units;

static units units_of(const dn_tensor *const *ts, int count) {
  units u = {true, 0, 0, dn_tensor_numel(ts[0])};
  for (int k = 0; k < count; k++) u.flat = u.flat && (!ts[k] || dn_tensor_is_contiguous(ts[k]));
  if (u.numel == 0) return u;
  u.len = u.flat ? LOSS_BLOCK : dn_row_length(ts[0]);
  u.count = (u.numel + u.len - 1) / u.len;
  return u;
}

/* Unit k of operand t: first element and the step between elements. */
static inline const float *unit_data(const units *u, const dn_tensor *t, int64_t k, int64_t *stride) {
  if (u->flat) {
    *stride = 1;
    return (const float *)dn_tensor_data(t) + k * u->len;
  }
  *stride = dn_row_stride(t);
  return DN_F32_AT(t, dn_row_offset(t, k));
}

static inline int64_t unit_length(const units *u, int64_t k) {
  int64_t left = u->numel - k * u->len;
  return left < u->len ? left : u->len;
}

typedef struct pointwise_forward_job {
  pointwise_loss kind;
  float *out;         /* losses per element, or NULL */
  double *partial;    /* else the sum per unit */
  const dn_tensor *x, *t;
  units u;
} pointwise_forward_job;

/* Losses per element into out (contiguous), or their sum per unit into partial. */
static void pointwise_forward_units(const void *ctx, int64_t k0, int64_t k1) {
  const pointwise_forward_job *job = ctx;
  const units u = job->u;
  pointwise_loss kind = job->kind;
  float *out = job->out;
  for (int64_t k = k0; k < k1; k++) {
    int64_t sx, st, n = unit_length(&u, k);
    const float *xp = unit_data(&u, job->x, k, &sx), *tp = unit_data(&u, job->t, k, &st);
    if (out) {
      float *o = out + k * u.len;
      for (int64_t i = 0; i < n; i++) o[i] = pointwise_value(kind, xp[i * sx], tp[i * st]);
    } else {
      double sum = 0;
      for (int64_t i = 0; i < n; i++) sum += pointwise_value(kind, xp[i * sx], tp[i * st]);
      job->partial[k] = sum;
    }
  }
}

/* The units (for a partial last block counted whole) decide the thread count. */
static void pointwise_forward_run(pointwise_loss kind, float *out, double *partial, const dn_tensor *x,
                                  const dn_tensor *t) {
  pointwise_forward_job job = {kind, out, partial, x, t, units_of((const dn_tensor *[]){x, t}, 2)};
  dn_parallel_rows(job.u.count, job.u.len, pointwise_forward_units, &job);
}

static dn_status check_pointwise_args(const char *op, const dn_tensor *x, const dn_tensor *t, dn_reduction reduction) {
  if (x->dtype != DN_F32 || t->dtype != DN_F32)
    return dn_fail(DN_ETYPE, "%s: expects float32 tensors (got input %s, target %s)", op, dn_dtype_name(x->dtype),
                   dn_dtype_name(t->dtype));
  if (!dn_same_shape(x, t)) {
    char xs[128], ts[128];
    return dn_fail(DN_ESHAPE, "%s: input %s and target %s must have the same shape", op,
                   dn_shape_str(x, xs, sizeof xs), dn_shape_str(t, ts, sizeof ts));
  }
  return check_reduction(op, reduction);
}

typedef struct pointwise_grad_job {
  pointwise_loss kind;
  units u;
  loss_grad lg;
  const dn_tensor *x, *t, *g;   /* g: the incoming gradient per element, or NULL */
  float *dx, *dt;               /* either may be NULL */
} pointwise_grad_job;

static void pointwise_grad_units(const void *ctx, int64_t k0, int64_t k1) {
  const pointwise_grad_job *job = ctx;
  const units u = job->u;
  pointwise_loss kind = job->kind;
  const dn_tensor *g = job->g;
  float *dx = job->dx, *dt = job->dt;
  for (int64_t k = k0; k < k1; k++) {
    int64_t sx, stt, sg = 0, n = unit_length(&u, k), begin = k * u.len;
    const float *xp = unit_data(&u, job->x, k, &sx), *tp = unit_data(&u, job->t, k, &stt);
    const float *gp = g ? unit_data(&u, g, k, &sg) : NULL;
    for (int64_t i = 0; i < n; i++) {
      float xv = xp[i * sx], tv = tp[i * stt], gv = gp ? gp[i * sg] : job->lg.scale;
      float d_input = kind == MSE ? 2.0f * (xv - tv) * gv : (dn_sigmoid_f32(xv) - tv) * gv;
      float d_target = kind == MSE ? -d_input : -xv * gv;
      if (dx) dx[begin + i] = d_input;
      if (dt) dt[begin + i] = d_target;
    }
  }
}

/*
** Backward of both pointwise losses: d input and d target (either may be
** NULL) per element, from the incoming gradient (per element for none).
** MSE: 2 (x - t) g and its negative; BCE: (sigmoid(x) - t) g and -x g.
*/
/* A pointwise loss node: ints and saved slots. */
enum { POINTWISE_REDUCTION, POINTWISE_KIND };
enum { POINTWISE_SAVED_X, POINTWISE_SAVED_TARGET };

static dn_status pointwise_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_tensor *x, *t;
  dn_status st = dn_node_saved(node, POINTWISE_SAVED_X, &x);
  if (!st) st = dn_node_saved(node, POINTWISE_SAVED_TARGET, &t);
  if (st) return st;
  pointwise_loss kind = (pointwise_loss)node->ints[POINTWISE_KIND];
  dn_reduction reduction = (dn_reduction)node->ints[POINTWISE_REDUCTION];
  for (int i = 0; i < 2 && !st; i++)
    if (node->needs_grad[i]) st = dn_tensor_new(&grad_in[i], DN_F32, x->ndim, x->shape);
  if (st) return st;
  float *dx = grad_in[0] ? dn_tensor_data(grad_in[0]) : NULL, *dt = grad_in[1] ? dn_tensor_data(grad_in[1]) : NULL;
  const dn_tensor *g = reduction == DN_REDUCTION_NONE ? grad : NULL;
  units u = units_of((const dn_tensor *[]){x, t, g}, 3);
  pointwise_grad_job job = {kind, u, loss_grad_of(grad, reduction, u.numel), x, t, g, dx, dt};
  dn_parallel_rows(u.count, u.len, pointwise_grad_units, &job);
  return DN_OK;
}
static const dn_node_type mse_node = {.name = "mse_loss", .backward = pointwise_backward};
static const dn_node_type bce_node = {.name = "bce_with_logits", .backward = pointwise_backward};

static dn_status pointwise_loss_forward(dn_tensor **out, const dn_tensor *x, const dn_tensor *t,
                                        dn_reduction reduction, pointwise_loss kind, const dn_node_type *type) {
  *out = NULL;
  dn_status st = check_pointwise_args(type->name, x, t, reduction);
  if (st) return st;
  dn_tensor *result = NULL;
  if (reduction == DN_REDUCTION_NONE) {
    st = dn_tensor_new(&result, DN_F32, x->ndim, x->shape);
    if (st) return st;
    pointwise_forward_run(kind, dn_tensor_data(result), NULL, x, t);
  } else {
    units u = units_of((const dn_tensor *[]){x, t}, 2);
    double *partial = alloc_doubles(u.count);
    if (!partial) return dn_fail(DN_ENOMEM, "%s: out of memory", type->name);
    pointwise_forward_run(kind, NULL, partial, x, t);
    double sum = 0;
    for (int64_t k = 0; k < u.count; k++) sum += partial[k];
    dn_free(partial);
    st = reduced_scalar(&result, sum, u.numel, reduction);
    if (st) return st;
  }
  dn_node *node;
  st = dn_record(result, type, 2, (const dn_tensor *[]){x, t}, &node);
  if (!st && node) {
    node->ints[POINTWISE_REDUCTION] = reduction;
    node->ints[POINTWISE_KIND] = kind;
    st = dn_node_save(node, POINTWISE_SAVED_X, x);
    if (!st) st = dn_node_save(node, POINTWISE_SAVED_TARGET, t);
  }
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  *out = result;
  return DN_OK;
}

dn_status dn_mse_loss(dn_tensor **out, dn_tensor *input, dn_tensor *target, dn_reduction reduction) {
  DN_FPMODE_SCOPE();
  return pointwise_loss_forward(out, input, target, reduction, MSE, &mse_node);
}

/* The target may require grad too (d loss / d t = -x), as in PyTorch. */
dn_status dn_bce_with_logits(dn_tensor **out, dn_tensor *logits, const dn_tensor *target, dn_reduction reduction) {
  DN_FPMODE_SCOPE();
  return pointwise_loss_forward(out, logits, target, reduction, BCE_WITH_LOGITS, &bce_node);
}
