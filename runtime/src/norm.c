/*
** Normalization: batch normalization over the channels of [N, C, ...]
** inputs, with its backward.
**
** The input is made contiguous and read as [N, C, S] (S the product of the
** dims after C, 1 for [N, C]); a channel is the N runs of S elements at
** (n * C + c) * S. Every pass is one dn_parallel_rows over whole channels:
** a channel's statistics, its outputs, and in backward its three gradients
** are computed by one task in a fixed order, so the bits do not depend on
** the thread count. Sums are in double, and the variance is a second pass
** over (x - mean)^2, not E[x^2] - mean^2 (no cancellation for inputs far
** from 0).
**
** Training uses the batch's mean and biased variance; the running
** statistics are updated as PyTorch 1.13 does (batch_norm_cpu_update_stats:
** momentum * batch + (1 - momentum) * running in double, the unbiased
** variance, stored as float32). Eval normalizes with the running values.
** Either way the node keeps the mean and 1 / sqrt(var + eps) it used per
** channel (float32 [C]), so backward is one pass over x and the gradient:
** with xhat = (x - mean) * invstd and M = N * S values per channel,
**   dbias = sum g,  dweight = sum g * xhat,
**   dx = weight * invstd * (g - dbias / M - xhat * dweight / M)   (training)
**   dx = weight * invstd * g                                      (eval: constants).
*/
#include <string.h>

#include "dropnet/autograd.h"
#include "dropnet/norm.h"
#include "graph.h"
#include "internal.h"

enum { SAVED_X = 0, SAVED_WEIGHT = 1, SAVED_MEAN = 2, SAVED_INVSTD = 3 };
enum { NODE_TRAINING = 0 };   /* node->ints: whether the batch's statistics were used */

/* An input read as [n, c, s]. */
typedef struct bn_dims {
  int64_t n, c, s;
} bn_dims;

static bn_dims dims_of(int ndim, const int64_t *shape) {
  bn_dims d = {shape[0], shape[1], 1};
  for (int i = 2; i < ndim; i++) d.s *= shape[i];
  return d;
}

/* Element c of a 1-D float32 tensor of any stride. */
static inline float *at(const dn_tensor *t, int64_t c) { return DN_F32_AT(t, t->offset + c * t->stride[0]); }

/* --- forward ---------------------------------------------------------------------------- */

/* Channels [c0, c1) of a forward pass. */
typedef struct bn_forward_job {
  bn_dims d;
  const float *x, *weight, *bias;   /* weight, bias contiguous or NULL */
  float *y;
  dn_tensor *running_mean, *running_var;   /* or NULL (training only) */
  bool training;
  double momentum, eps;
  float *save_mean, *save_invstd;   /* [C] */
} bn_forward_job;

/* The batch's mean and biased variance of channel c, and the running update. */
static void batch_stats(const bn_forward_job *j, int64_t c, double *mean_out, double *var_out) {
  bn_dims d = j->d;
  double sum = 0, sq = 0;
  for (int64_t n = 0; n < d.n; n++) {
    const float *row = j->x + (n * d.c + c) * d.s;
    for (int64_t s = 0; s < d.s; s++) sum += row[s];
  }
  double m = (double)(d.n * d.s), mean = sum / m;
  for (int64_t n = 0; n < d.n; n++) {
    const float *row = j->x + (n * d.c + c) * d.s;
    for (int64_t s = 0; s < d.s; s++) {
      double v = row[s] - mean;
      sq += v * v;
    }
  }
  *mean_out = mean;
  *var_out = sq / m;
  if (j->running_mean) {
    float *rm = at(j->running_mean, c), *rv = at(j->running_var, c);
    *rm = (float)(j->momentum * mean + (1 - j->momentum) * *rm);
    *rv = (float)(j->momentum * (sq / (m - 1)) + (1 - j->momentum) * *rv);
  }
}

static void forward_channels(const void *ctx, int64_t c0, int64_t c1) {
  const bn_forward_job *j = ctx;
  bn_dims d = j->d;
  for (int64_t c = c0; c < c1; c++) {
    double mean, var;
    if (j->training) batch_stats(j, c, &mean, &var);
    else mean = *at(j->running_mean, c), var = *at(j->running_var, c);
    double invstd = 1 / sqrt(var + j->eps);
    double w = j->weight ? j->weight[c] : 1.0, b = j->bias ? j->bias[c] : 0.0;
    double scale = invstd * w;
    for (int64_t n = 0; n < d.n; n++) {
      const float *xr = j->x + (n * d.c + c) * d.s;
      float *yr = j->y + (n * d.c + c) * d.s;
      for (int64_t s = 0; s < d.s; s++) yr[s] = (float)((xr[s] - mean) * scale + b);
    }
    j->save_mean[c] = (float)mean;
    j->save_invstd[c] = (float)invstd;
  }
}

/* --- backward --------------------------------------------------------------------------- */

/* Channels [c0, c1) of a backward pass; outputs NULL when not wanted. */
typedef struct bn_backward_job {
  bn_dims d;
  bool training;
  const float *x, *g, *weight, *mean, *invstd;   /* weight may be NULL */
  float *dx, *dweight, *dbias;
} bn_backward_job;

static void backward_channels(const void *ctx, int64_t c0, int64_t c1) {
  const bn_backward_job *j = ctx;
  bn_dims d = j->d;
  for (int64_t c = c0; c < c1; c++) {
    double mean = j->mean[c], invstd = j->invstd[c], sum_g = 0, sum_g_xmu = 0;
    for (int64_t n = 0; n < d.n; n++) {
      const float *xr = j->x + (n * d.c + c) * d.s, *gr = j->g + (n * d.c + c) * d.s;
      for (int64_t s = 0; s < d.s; s++) {
        sum_g += gr[s];
        sum_g_xmu += gr[s] * (xr[s] - mean);
      }
    }
    if (j->dbias) j->dbias[c] = (float)sum_g;
    if (j->dweight) j->dweight[c] = (float)(sum_g_xmu * invstd);
    if (!j->dx) continue;
    double m = (double)(d.n * d.s), k = (j->weight ? j->weight[c] : 1.0) * invstd;
    double g_shift = j->training ? sum_g / m : 0, xmu_scale = j->training ? sum_g_xmu * invstd * invstd / m : 0;
    for (int64_t n = 0; n < d.n; n++) {
      const float *xr = j->x + (n * d.c + c) * d.s, *gr = j->g + (n * d.c + c) * d.s;
      float *dxr = j->dx + (n * d.c + c) * d.s;
      for (int64_t s = 0; s < d.s; s++) dxr[s] = (float)(k * (gr[s] - g_shift - (xr[s] - mean) * xmu_scale));
    }
  }
}

static dn_status batch_norm_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  bn_dims d = dims_of(node->in_ndim[0], node->in_shape[0]);
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
    bn_backward_job job = {d, node->ints[NODE_TRAINING] != 0, dn_tensor_data(xc), dn_tensor_data(gc),
                           wc ? dn_tensor_data(wc) : NULL, dn_tensor_data(mean), dn_tensor_data(invstd),
                           grad_in[0] ? dn_tensor_data(grad_in[0]) : NULL,
                           grad_in[1] ? dn_tensor_data(grad_in[1]) : NULL,
                           grad_in[2] ? dn_tensor_data(grad_in[2]) : NULL};
    dn_parallel_rows(d.c, 2 * d.n * d.s, backward_channels, &job);
  }
  dn_tensor_release(wc);
  dn_tensor_release(gc);
  dn_tensor_release(xc);
  return st;
}
static const dn_node_type batch_norm_node = {"batch_norm", batch_norm_backward};

/* --- checks ------------------------------------------------------------------------------- */

/* A per-channel tensor: float32 [C], or NULL. */
static dn_status check_channel_tensor(const char *what, const dn_tensor *t, const dn_tensor *x) {
  if (!t) return DN_OK;
  dn_status st = dn_check_float("batch_norm", what, t);
  if (st) return st;
  char ts[128], xs[128];
  if (t->ndim != 1 || t->shape[0] != x->shape[1])
    return dn_fail(DN_ESHAPE, "batch_norm: %s must be [%lld], one value per channel of input %s (got shape %s)",
                   what, (long long)x->shape[1], dn_shape_str(x, xs, sizeof xs), dn_shape_str(t, ts, sizeof ts));
  return DN_OK;
}

/* A running statistic updated in place: no graph, no expanded view. */
static dn_status check_running_writable(const char *what, const dn_tensor *t) {
  if (t->requires_grad)
    return dn_fail(DN_EINVAL, "batch_norm: %s must not require grad (it is updated in place)", what);
  return dn_check_writable("batch_norm", t);
}

static dn_status check_args(const dn_tensor *x, const dn_tensor *weight, const dn_tensor *bias,
                            const dn_tensor *running_mean, const dn_tensor *running_var, bool training,
                            double momentum, double eps) {
  char xs[128];
  dn_status st = dn_check_float("batch_norm", "input", x);
  if (st) return st;
  if (x->ndim < 2 || x->ndim > 4)
    return dn_fail(DN_ESHAPE, "batch_norm: input must be [N, C], [N, C, L] or [N, C, H, W] (got shape %s)",
                   dn_shape_str(x, xs, sizeof xs));
  for (int i = 1; i < x->ndim; i++)
    if (x->shape[i] == 0)
      return dn_fail(DN_ESHAPE, "batch_norm: input %s has an empty dim (only the batch N may be 0)",
                     dn_shape_str(x, xs, sizeof xs));
  st = check_channel_tensor("weight", weight, x);
  if (!st) st = check_channel_tensor("bias", bias, x);
  if (!st) st = check_channel_tensor("running_mean", running_mean, x);
  if (!st) st = check_channel_tensor("running_var", running_var, x);
  if (st) return st;
  if (!running_mean != !running_var)
    return dn_fail(DN_EINVAL, "batch_norm: running_mean and running_var go together (got only %s)",
                   running_mean ? "running_mean" : "running_var");
  if (!training && !running_mean)
    return dn_fail(DN_EINVAL, "batch_norm: eval mode (training false) needs running_mean and running_var");
  if (!(eps >= 0) || isinf(eps)) return dn_fail(DN_EINVAL, "batch_norm: eps must be finite and >= 0 (got %g)", eps);
  if (!(momentum >= 0 && momentum <= 1))
    return dn_fail(DN_EINVAL, "batch_norm: momentum must be in [0, 1] (got %g)", momentum);
  bn_dims d = dims_of(x->ndim, x->shape);
  if (training && d.n * d.s == 1)
    return dn_fail(DN_ESHAPE, "batch_norm: expected more than 1 value per channel when training (got input %s)",
                   dn_shape_str(x, xs, sizeof xs));
  if (training && running_mean) {
    st = check_running_writable("running_mean", running_mean);
    if (!st) st = check_running_writable("running_var", running_var);
  }
  return st;
}

dn_status dn_batch_norm(dn_tensor **out, dn_tensor *x, dn_tensor *weight, dn_tensor *bias, dn_tensor *running_mean,
                        dn_tensor *running_var, bool training, double momentum, double eps) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_args(x, weight, bias, running_mean, running_var, training, momentum, eps);
  if (st) return st;
  bn_dims d = dims_of(x->ndim, x->shape);
  if (d.n == 0) running_mean = running_var = NULL;   /* nothing to learn from */
  dn_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *mean = NULL, *invstd = NULL;
  dn_node *node = NULL;
  st = dn_plain_contiguous(&xc, x);
  if (!st && weight) st = dn_plain_contiguous(&wc, weight);
  if (!st && bias) st = dn_plain_contiguous(&bc, bias);
  if (!st) st = dn_tensor_new(&y, DN_F32, x->ndim, x->shape);
  if (!st) st = dn_tensor_new(&mean, DN_F32, 1, &d.c);
  if (!st) st = dn_tensor_new(&invstd, DN_F32, 1, &d.c);
  if (!st) {
    bn_forward_job job = {d, dn_tensor_data(xc), wc ? dn_tensor_data(wc) : NULL, bc ? dn_tensor_data(bc) : NULL,
                          dn_tensor_data(y), running_mean, running_var, training, momentum, eps,
                          dn_tensor_data(mean), dn_tensor_data(invstd)};
    if (d.n > 0) {
      dn_parallel_rows(d.c, 2 * d.n * d.s, forward_channels, &job);
    } else {   /* an empty batch: a node whose backward gives zeros */
      memset(job.save_mean, 0, (size_t)d.c * sizeof(float));
      memset(job.save_invstd, 0, (size_t)d.c * sizeof(float));
    }
    if (training && running_mean) {
      dn_bump_version(running_mean);
      dn_bump_version(running_var);
    }
    st = dn_record(y, &batch_norm_node, 3, (const dn_tensor *[]){x, weight, bias}, &node);
  }
  if (!st && node) {
    node->ints[NODE_TRAINING] = training;
    st = dn_node_save(node, SAVED_X, x);
    if (!st && weight && node->needs_grad[0]) st = dn_node_save(node, SAVED_WEIGHT, weight);
    if (!st) st = dn_node_save(node, SAVED_MEAN, mean);
    if (!st) st = dn_node_save(node, SAVED_INVSTD, invstd);
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
