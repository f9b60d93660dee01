/*
** Optimizer updates (SGD, Adam/AdamW, RMSprop), the max-norm constraint and
** gradient clipping by total norm.
**
** An update is one pass over a parameter: each element reads its gradient and
** state once and writes the parameter and state once, so how the elements are
** split over threads never changes a bit. The arithmetic is float32 in the
** order of torch 1.13's _single_tensor_* functions; scalars (lr, betas, bias
** corrections) are computed in double and rounded once.
**
** State that decays geometrically (SGD's momentum, Adam's moments, RMSprop's
** averages) is flushed to 0 once below FLT_MIN, whatever the denormal switch
** (parallel.c): the buffers of weights whose gradient stays exactly 0 would
** otherwise decay into denormals and stay there (0.9 * 2^-149 rounds back to
** 2^-149), and every later step would pay ~100 cycles per element on Intel
** cores. Measured on the small MLP with the flush off: 52k samples/s without
** this, ~200k with it, as with the flush on; with the flush on it changes
** nothing (FTZ gives the same signed 0) and costs nothing measurable (the
** loops are bound by memory). A parameter sees the difference only when it
** or its gradient is itself tiny: with lr <= 1, below ~2e-31 for SGD (2^-126
** is then under half an ulp) and ~2e-22 for Adam with eps = 1e-8.
**
** Parameters are written in place outside autograd: no node is recorded and
** dn_check_inplace is not consulted (updating a leaf that requires grad is the
** point of an optimizer). Every written tensor gets its storage version bumped,
** so a graph that saved the old values reports the change instead of using it.
**
** Norms accumulate squares in double over blocks of BLOCK elements whose
** boundaries are fixed; block sums are added in order, so the result does not
** depend on the thread count.
*/
#include <float.h>
#include <math.h>
#include <string.h>

#include "dropnet/optim.h"
#include "internal.h"

/* x, or 0 of x's sign when x is below FLT_MIN in magnitude (what FTZ does to a
   result): the decaying state never becomes denormal. NaN stays NaN. A bit
   mask, not a select: with two selects in a loop (RMSprop's centered form)
   gcc no longer vectorized it on AVX2 builds. */
static DN_ALWAYS_INLINE float flush_tiny(float x) {
  uint32_t bits, tiny = -(uint32_t)(fabsf(x) < FLT_MIN);
  memcpy(&bits, &x, sizeof bits);
  bits &= ~tiny | 0x80000000u;   /* tiny: the sign alone */
  memcpy(&x, &bits, sizeof x);
  return x;
}

/* Elements per block of a norm. Fixed: block boundaries must not depend on threads. */
#define BLOCK 4096

/* --- checks ------------------------------------------------------------------ */

static bool finite_nonneg(double v) { return v >= 0 && v <= DBL_MAX; }   /* NaN fails */

static dn_status check_hyper(const char *op, const char *name, double v) {
  if (finite_nonneg(v)) return DN_OK;
  return dn_fail(DN_EINVAL, "%s: %s must be a finite number >= 0 (got %g)", op, name, v);
}

/* Norm limits may be +inf (no limit, as PyTorch allows); NaN and negatives fail. */
static dn_status check_limit(const char *op, double max_norm) {
  if (max_norm >= 0) return DN_OK;
  return dn_fail(DN_EINVAL, "%s: max_norm must be a number >= 0 (got %g)", op, max_norm);
}

/* A float32 contiguous tensor; with `like`, also of like's shape. */
static dn_status check_operand(const char *op, const char *name, const dn_tensor *t, const dn_tensor *like) {
  if (!t) return dn_fail(DN_EINVAL, "%s: %s is NULL", op, name);
  char ts[128], ls[128];
  if (t->dtype != DN_F32)
    return dn_fail(DN_ETYPE, "%s: %s must be float32 (got %s)", op, name, dn_dtype_name(t->dtype));
  if (!dn_tensor_is_contiguous(t))
    return dn_fail(DN_EINVAL, "%s: %s of shape %s must be contiguous", op, name, dn_shape_str(t, ts, sizeof ts));
  if (like && !dn_same_shape(t, like))
    return dn_fail(DN_ESHAPE, "%s: %s of shape %s does not match param of shape %s", op, name,
                   dn_shape_str(t, ts, sizeof ts), dn_shape_str(like, ls, sizeof ls));
  return DN_OK;
}

/* --- running an element-wise update over threads -------------------------------- */

/* Ranges start at multiples of 16 elements (64 bytes), so vector loops
   start aligned; the split only decides who does which elements. */
#define RANGE_ALIGN 16

/* --- SGD -------------------------------------------------------------------------- */

typedef struct sgd_job {
  float *param;
  const float *grad;
  float *buf;
  float lr, weight_decay, momentum, one_minus_dampening, sign;
  bool nesterov;
} sgd_job;

typedef enum sgd_mode { SGD_PLAIN, SGD_FIRST, SGD_MOMENTUM } sgd_mode;

/*
** d = sign*g + wd*p; with momentum: buf = d (first step) or
** buf = momentum*buf + (1-dampening)*d; the step is buf, or d + momentum*buf
** (Nesterov); p -= lr*step. Inlined once per mode so loops that do not
** touch the buffer never read it (it may be NULL), and once per decay and
** Nesterov: a loop-invariant test left in the loop is a branch that kept
** gcc from vectorizing it on AVX2 builds (AVX-512's masked stores hid it):
** SGD ran scalar on Zen 3, 20% of the reference MLP's step.
*/
static DN_ALWAYS_INLINE void sgd_kernel(const sgd_job *job, int64_t lo, int64_t hi, sgd_mode mode, bool decay,
                                        bool nesterov) {
  float *restrict p = job->param;
  const float *restrict g = job->grad;
  float *restrict b = job->buf;
  const float lr = job->lr, wd = job->weight_decay, mu = job->momentum, keep = job->one_minus_dampening,
              sign = job->sign;
#pragma omp simd
  for (int64_t i = lo; i < hi; i++) {
    float d = sign * g[i];
    if (decay) d = d + wd * p[i];
    float step = d;
    if (mode != SGD_PLAIN) {
      float buf = flush_tiny(mode == SGD_FIRST ? d : b[i] * mu + keep * d);
      b[i] = buf;
      step = nesterov ? d + mu * buf : buf;
    }
    p[i] = p[i] - lr * step;
  }
}

static DN_ALWAYS_INLINE void sgd_range(const sgd_job *job, int64_t lo, int64_t hi, sgd_mode mode) {
  bool decay = job->weight_decay != 0, nesterov = mode != SGD_PLAIN && job->nesterov;
  if (decay && nesterov) sgd_kernel(job, lo, hi, mode, true, true);
  else if (decay) sgd_kernel(job, lo, hi, mode, true, false);
  else if (nesterov) sgd_kernel(job, lo, hi, mode, false, true);
  else sgd_kernel(job, lo, hi, mode, false, false);
}

static void sgd_plain(const void *job, int64_t lo, int64_t hi) { sgd_range(job, lo, hi, SGD_PLAIN); }
static void sgd_first(const void *job, int64_t lo, int64_t hi) { sgd_range(job, lo, hi, SGD_FIRST); }
static void sgd_momentum(const void *job, int64_t lo, int64_t hi) { sgd_range(job, lo, hi, SGD_MOMENTUM); }

dn_status dn_sgd_step(dn_tensor *param, const dn_tensor *grad, dn_tensor *momentum_buf,
                      const dn_sgd_options *options, bool first_step) {
  DN_FPMODE_SCOPE();
  const char *op = "sgd";
  dn_status st;
  if (!options) return dn_fail(DN_EINVAL, "sgd: options is NULL");
  if ((st = check_operand(op, "param", param, NULL)) || (st = check_operand(op, "grad", grad, param)) ||
      (st = check_hyper(op, "lr", options->lr)) || (st = check_hyper(op, "momentum", options->momentum)) ||
      (st = check_hyper(op, "weight_decay", options->weight_decay)))
    return st;
  if (!isfinite(options->dampening))
    return dn_fail(DN_EINVAL, "sgd: dampening must be a finite number (got %g)", options->dampening);
  if (options->nesterov && (options->momentum <= 0 || options->dampening != 0))
    return dn_fail(DN_EINVAL, "sgd: Nesterov momentum requires a momentum > 0 and zero dampening "
                              "(got momentum %g, dampening %g)",
                   options->momentum, options->dampening);
  bool has_momentum = options->momentum != 0;
  if (has_momentum) {
    if (!momentum_buf) return dn_fail(DN_EINVAL, "sgd: momentum %g needs a momentum buffer", options->momentum);
    if ((st = check_operand(op, "momentum buffer", momentum_buf, param))) return st;
  }
  sgd_job job = {
    .param = dn_tensor_data(param), .grad = dn_tensor_data(grad),
    .buf = has_momentum ? dn_tensor_data(momentum_buf) : NULL,
    .lr = (float)options->lr, .weight_decay = (float)options->weight_decay, .momentum = (float)options->momentum,
    .one_minus_dampening = (float)(1 - options->dampening), .sign = options->maximize ? -1.0f : 1.0f,
    .nesterov = options->nesterov};
  dn_range_fn *fn = !has_momentum ? sgd_plain : first_step ? sgd_first : sgd_momentum;
  dn_parallel_range(dn_tensor_numel(param), RANGE_ALIGN, fn, &job);
  dn_bump_version(param);
  if (has_momentum) dn_bump_version(momentum_buf);
  return DN_OK;
}

/* --- Adam / AdamW ----------------------------------------------------------------------- */

typedef struct adam_job {
  float *param;
  const float *grad;
  float *exp_avg, *exp_avg_sq;
  float sign, coupled_decay, decoupled_factor, beta1, one_minus_beta1, beta2, one_minus_beta2;
  float bias_correction2_sqrt, eps, step_size;
} adam_job;

/*
** g = sign*grad (+ wd*p for Adam); p *= 1 - lr*wd for AdamW;
** m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g;
** p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps).
*/
static DN_ALWAYS_INLINE void adam_kernel(const adam_job *job, int64_t lo, int64_t hi, bool coupled) {
  float *restrict p = job->param;
  const float *restrict g = job->grad;
  float *restrict m = job->exp_avg;
  float *restrict v = job->exp_avg_sq;
  const float sign = job->sign, wd = job->coupled_decay, shrink = job->decoupled_factor, b1 = job->beta1,
              c1 = job->one_minus_beta1, b2 = job->beta2, c2 = job->one_minus_beta2,
              bc2 = job->bias_correction2_sqrt, eps = job->eps, step_size = job->step_size;
#pragma omp simd
  for (int64_t i = lo; i < hi; i++) {
    float gi = sign * g[i];
    if (coupled) gi = gi + wd * p[i];
    float mi = flush_tiny(m[i] * b1 + c1 * gi);
    float vi = flush_tiny(v[i] * b2 + c2 * gi * gi);
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bc2 + eps;
    p[i] = p[i] * shrink - step_size * (mi / denom);
  }
}

static void adam_coupled(const void *job, int64_t lo, int64_t hi) { adam_kernel(job, lo, hi, true); }
static void adam_plain(const void *job, int64_t lo, int64_t hi) { adam_kernel(job, lo, hi, false); }

dn_status dn_adam_step(dn_tensor *param, const dn_tensor *grad, dn_tensor *exp_avg, dn_tensor *exp_avg_sq,
                       int64_t step, const dn_adam_options *options) {
  DN_FPMODE_SCOPE();
  if (!options) return dn_fail(DN_EINVAL, "adam: options is NULL");
  const char *op = options->decoupled_weight_decay ? "adamw" : "adam";
  dn_status st;
  if ((st = check_operand(op, "param", param, NULL)) || (st = check_operand(op, "grad", grad, param)) ||
      (st = check_operand(op, "exp_avg", exp_avg, param)) ||
      (st = check_operand(op, "exp_avg_sq", exp_avg_sq, param)) || (st = check_hyper(op, "lr", options->lr)) ||
      (st = check_hyper(op, "eps", options->eps)) || (st = check_hyper(op, "weight_decay", options->weight_decay)))
    return st;
  if (!(options->beta1 >= 0 && options->beta1 < 1))
    return dn_fail(DN_EINVAL, "%s: beta1 must be in [0, 1) (got %g)", op, options->beta1);
  if (!(options->beta2 >= 0 && options->beta2 < 1))
    return dn_fail(DN_EINVAL, "%s: beta2 must be in [0, 1) (got %g)", op, options->beta2);
  if (step < 1) return dn_fail(DN_EINVAL, "%s: step counts from 1 (got %lld)", op, (long long)step);
  double bias_correction1 = 1 - pow(options->beta1, (double)step);
  double bias_correction2 = 1 - pow(options->beta2, (double)step);
  bool decoupled = options->decoupled_weight_decay;
  adam_job job = {
    .param = dn_tensor_data(param), .grad = dn_tensor_data(grad), .exp_avg = dn_tensor_data(exp_avg),
    .exp_avg_sq = dn_tensor_data(exp_avg_sq), .sign = options->maximize ? -1.0f : 1.0f,
    .coupled_decay = decoupled ? 0.0f : (float)options->weight_decay,
    .decoupled_factor = decoupled ? (float)(1 - options->lr * options->weight_decay) : 1.0f,
    .beta1 = (float)options->beta1, .one_minus_beta1 = (float)(1 - options->beta1), .beta2 = (float)options->beta2,
    .one_minus_beta2 = (float)(1 - options->beta2), .bias_correction2_sqrt = (float)sqrt(bias_correction2),
    .eps = (float)options->eps, .step_size = (float)(options->lr / bias_correction1)};
  bool coupled = !decoupled && options->weight_decay != 0;
  dn_parallel_range(dn_tensor_numel(param), RANGE_ALIGN, coupled ? adam_coupled : adam_plain, &job);
  dn_bump_version(param);
  dn_bump_version(exp_avg);
  dn_bump_version(exp_avg_sq);
  return DN_OK;
}

/* --- RMSprop ---------------------------------------------------------------------------- */

typedef struct rmsprop_job {
  float *param;
  const float *grad;
  float *square_avg, *buf, *grad_avg;
  float sign, lr, alpha, one_minus_alpha, eps, weight_decay, momentum;
} rmsprop_job;

/*
** g = sign*grad + wd*p; s = alpha*s + (1-alpha)*g*g; centered: a = alpha*a +
** (1-alpha)*g and avg = sqrt(s - a*a) + eps, else sqrt(s) + eps; with
** momentum buf = momentum*buf + g/avg and p -= lr*buf, else p -= lr*g/avg.
** Inlined per mode: loops that do not use buf or grad_avg never read them;
** and per decay, so that the loop has no branch (sgd_kernel).
*/
static DN_ALWAYS_INLINE void rmsprop_kernel(const rmsprop_job *job, int64_t lo, int64_t hi, bool centered,
                                         bool with_momentum, bool decay) {
  float *restrict p = job->param;
  const float *restrict g = job->grad;
  float *restrict s = job->square_avg;
  float *restrict b = job->buf;
  float *restrict a = job->grad_avg;
  const float sign = job->sign, lr = job->lr, alpha = job->alpha, c = job->one_minus_alpha, eps = job->eps,
              wd = job->weight_decay, mu = job->momentum;
#pragma omp simd
  for (int64_t i = lo; i < hi; i++) {
    float gi = sign * g[i];
    if (decay) gi = gi + wd * p[i];
    float si = flush_tiny(s[i] * alpha + c * gi * gi);
    s[i] = si;
    float avg;
    if (centered) {
      float ai = flush_tiny(a[i] * alpha + c * gi);
      a[i] = ai;
      avg = sqrtf(si - ai * ai) + eps;
    } else {
      avg = sqrtf(si) + eps;
    }
    if (with_momentum) {
      float bi = flush_tiny(b[i] * mu + gi / avg);
      b[i] = bi;
      p[i] = p[i] - lr * bi;
    } else {
      p[i] = p[i] - lr * (gi / avg);
    }
  }
}

static DN_ALWAYS_INLINE void rmsprop_range(const rmsprop_job *job, int64_t lo, int64_t hi, bool centered,
                                          bool with_momentum) {
  if (job->weight_decay != 0) rmsprop_kernel(job, lo, hi, centered, with_momentum, true);
  else rmsprop_kernel(job, lo, hi, centered, with_momentum, false);
}

static void rmsprop_plain(const void *job, int64_t lo, int64_t hi) { rmsprop_range(job, lo, hi, false, false); }
static void rmsprop_centered(const void *job, int64_t lo, int64_t hi) { rmsprop_range(job, lo, hi, true, false); }
static void rmsprop_momentum(const void *job, int64_t lo, int64_t hi) { rmsprop_range(job, lo, hi, false, true); }
static void rmsprop_centered_momentum(const void *job, int64_t lo, int64_t hi) {
  rmsprop_range(job, lo, hi, true, true);
}

dn_status dn_rmsprop_step(dn_tensor *param, const dn_tensor *grad, dn_tensor *square_avg, dn_tensor *momentum_buf,
                          dn_tensor *grad_avg, const dn_rmsprop_options *options) {
  DN_FPMODE_SCOPE();
  const char *op = "rmsprop";
  dn_status st;
  if (!options) return dn_fail(DN_EINVAL, "rmsprop: options is NULL");
  if ((st = check_operand(op, "param", param, NULL)) || (st = check_operand(op, "grad", grad, param)) ||
      (st = check_operand(op, "square_avg", square_avg, param)) || (st = check_hyper(op, "lr", options->lr)) ||
      (st = check_hyper(op, "alpha", options->alpha)) || (st = check_hyper(op, "eps", options->eps)) ||
      (st = check_hyper(op, "weight_decay", options->weight_decay)) ||
      (st = check_hyper(op, "momentum", options->momentum)))
    return st;
  bool with_momentum = options->momentum > 0, centered = options->centered;
  if (with_momentum) {
    if (!momentum_buf) return dn_fail(DN_EINVAL, "rmsprop: momentum %g needs a momentum buffer", options->momentum);
    if ((st = check_operand(op, "momentum buffer", momentum_buf, param))) return st;
  }
  if (centered) {
    if (!grad_avg) return dn_fail(DN_EINVAL, "rmsprop: centered needs a grad_avg buffer");
    if ((st = check_operand(op, "grad_avg", grad_avg, param))) return st;
  }
  rmsprop_job job = {
    .param = dn_tensor_data(param), .grad = dn_tensor_data(grad), .square_avg = dn_tensor_data(square_avg),
    .buf = with_momentum ? dn_tensor_data(momentum_buf) : NULL, .grad_avg = centered ? dn_tensor_data(grad_avg) : NULL,
    .sign = options->maximize ? -1.0f : 1.0f, .lr = (float)options->lr, .alpha = (float)options->alpha,
    .one_minus_alpha = (float)(1 - options->alpha), .eps = (float)options->eps,
    .weight_decay = (float)options->weight_decay, .momentum = (float)options->momentum};
  dn_range_fn *fn = centered ? (with_momentum ? rmsprop_centered_momentum : rmsprop_centered)
                         : (with_momentum ? rmsprop_momentum : rmsprop_plain);
  dn_parallel_range(dn_tensor_numel(param), RANGE_ALIGN, fn, &job);
  dn_bump_version(param);
  dn_bump_version(square_avg);
  if (with_momentum) dn_bump_version(momentum_buf);
  if (centered) dn_bump_version(grad_avg);
  return DN_OK;
}

/* --- norms --------------------------------------------------------------------------- */

/* Sum of squares of x[0..n) in double; eight independent accumulators
   vectorize without reordering anything that depends on threads. */
static double sum_squares(const float *x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
#pragma omp simd
    for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
  for (int l = 0; i < n; i++, l++) acc[l] += (double)x[i] * (double)x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Sum of squares of a contiguous x, block by block, blocks added in order. */
static double blocked_sum_squares(const float *x, int64_t n) {
  double total = 0;
  for (int64_t start = 0; start < n; start += BLOCK)
    total += sum_squares(x + start, n - start < BLOCK ? n - start : BLOCK);
  return total;
}

typedef struct scale_job {
  float *x;
  float factor;
} scale_job;

static void scale_range(const void *job, int64_t lo, int64_t hi) {
  const scale_job *j = job;
  float *restrict x = j->x;
  const float f = j->factor;
#pragma omp simd
  for (int64_t i = lo; i < hi; i++) x[i] = x[i] * f;
}

typedef struct row_norm_job {
  float *w;
  int64_t len;
  double max_norm;
} row_norm_job;

/* As in torch.renorm, a row over the limit is scaled by max_norm / (norm + 1e-7). */
static void max_norm_rows(const void *ctx, int64_t r0, int64_t r1) {
  const row_norm_job *j = ctx;
  for (int64_t r = r0; r < r1; r++) {
    float *row = j->w + r * j->len;
    double norm = sqrt(blocked_sum_squares(row, j->len));
    if (norm > j->max_norm) {
      scale_job job = {row, (float)(j->max_norm / (norm + 1e-7))};
      scale_range(&job, 0, j->len);
    }
  }
}

dn_status dn_max_norm_(dn_tensor *weight, double max_norm) {
  DN_FPMODE_SCOPE();
  dn_status st = check_operand("max_norm_", "weight", weight, NULL);
  if (st) return st;
  char ws[128];
  if (weight->ndim < 2)
    return dn_fail(DN_ESHAPE,
                   "max_norm_: weight must have at least 2 dims, one unit per row along the first dim (got shape %s)",
                   dn_shape_str(weight, ws, sizeof ws));
  if ((st = check_limit("max_norm_", max_norm))) return st;
  int64_t rows = weight->shape[0], numel = dn_tensor_numel(weight);
  if (numel == 0) return DN_OK;
  int64_t len = numel / rows;
  /* Each row is one unit: its norm and rescaling involve no other row. */
  row_norm_job job = {dn_tensor_data(weight), len, max_norm};
  dn_parallel_rows(rows, len, max_norm_rows, &job);
  dn_bump_version(weight);
  return DN_OK;
}

/* Validates a list of tensors for total_norm / clip_grad_norm_. */
static dn_status check_list(const char *op, dn_tensor *const *tensors, int count) {
  if (count < 0) return dn_fail(DN_EINVAL, "%s: count must be >= 0 (got %d)", op, count);
  if (count > 0 && !tensors) return dn_fail(DN_EINVAL, "%s: tensors is NULL", op);
  for (int k = 0; k < count; k++) {
    const dn_tensor *t = tensors[k];
    char ts[128];
    if (!t) return dn_fail(DN_EINVAL, "%s: tensor %d of %d is NULL", op, k + 1, count);
    if (t->dtype != DN_F32)
      return dn_fail(DN_ETYPE, "%s: tensor %d of %d (shape %s) is %s, float32 expected", op, k + 1, count,
                     dn_shape_str(t, ts, sizeof ts), dn_dtype_name(t->dtype));
    if (!dn_tensor_is_contiguous(t))
      return dn_fail(DN_EINVAL, "%s: tensor %d of %d (shape %s) must be contiguous", op, k + 1, count,
                     dn_shape_str(t, ts, sizeof ts));
  }
  return DN_OK;
}

static int64_t block_count(const dn_tensor *t) { return (dn_tensor_numel(t) + BLOCK - 1) / BLOCK; }

/* Block sums of squares of a list of tensors, blocks numbered across the list. */
typedef struct norm_job {
  dn_tensor *const *tensors;
  int count;
  double *partial;
} norm_job;

static void norm_blocks(const void *ctx, int64_t b0, int64_t b1) {
  const norm_job *j = ctx;
  int64_t base = 0;
  for (int k = 0; k < j->count && base < b1; k++) {
    const float *x = dn_tensor_data(j->tensors[k]);
    int64_t n = dn_tensor_numel(j->tensors[k]), nb = block_count(j->tensors[k]);
    for (int64_t b = b0 > base ? b0 - base : 0; b < nb && base + b < b1; b++) {
      int64_t start = b * BLOCK;
      j->partial[base + b] = sum_squares(x + start, n - start < BLOCK ? n - start : BLOCK);
    }
    base += nb;
  }
}

/* The L2 norm of all tensors (checked) together. */
static dn_status total_norm(const char *op, double *norm, dn_tensor *const *tensors, int count) {
  int64_t blocks = 0;
  for (int k = 0; k < count; k++) blocks += block_count(tensors[k]);
  *norm = 0;
  if (blocks == 0) return DN_OK;
  double *partial = dn_alloc((size_t)blocks * sizeof *partial);
  if (!partial) return dn_fail(DN_ENOMEM, "%s: out of memory for %lld block sums", op, (long long)blocks);
  norm_job job = {tensors, count, partial};
  dn_parallel_rows(blocks, BLOCK, norm_blocks, &job);
  double sum = 0;
  for (int64_t b = 0; b < blocks; b++) sum += partial[b];
  dn_free(partial);
  *norm = sqrt(sum);
  return DN_OK;
}

dn_status dn_total_norm(double *norm, dn_tensor *const *tensors, int count) {
  DN_FPMODE_SCOPE();
  if (!norm) return dn_fail(DN_EINVAL, "total_norm: norm is NULL");
  *norm = 0;
  dn_status st = check_list("total_norm", tensors, count);
  if (st) return st;
  return total_norm("total_norm", norm, tensors, count);
}

/* coef = max_norm / (norm + 1e-6), applied only when below 1 (a NaN or
   infinite norm leaves the tensors as they are; the caller sees the norm). */
dn_status dn_clip_grad_norm_(dn_tensor *const *grads, int count, double max_norm, double *total_norm_out) {
  DN_FPMODE_SCOPE();
  const char *op = "clip_grad_norm_";
  if (total_norm_out) *total_norm_out = 0;
  dn_status st = check_list(op, grads, count);
  if (st || (st = check_limit(op, max_norm))) return st;
  double norm;
  if ((st = total_norm(op, &norm, grads, count))) return st;
  if (total_norm_out) *total_norm_out = norm;
  double coef = max_norm / (norm + 1e-6);
  if (!isfinite(norm) || !(coef < 1)) return DN_OK;
  for (int k = 0; k < count; k++) {
    scale_job job = {dn_tensor_data(grads[k]), (float)coef};
    dn_parallel_range(dn_tensor_numel(grads[k]), RANGE_ALIGN, scale_range, &job);
    dn_bump_version(grads[k]);
  }
  return DN_OK;
}
