/*
** Optimizer updates: one fused loop over each parameter tensor, in place.
** They run outside autograd (no graph is recorded); param, grad and the
** state buffers are contiguous float32 tensors of the same shape.
** Semantics follow PyTorch's torch.optim exactly, except that state which
** decays (momentum, Adam's moments, RMSprop's averages) becomes 0 once below
** FLT_MIN, with or without dn_set_flush_denormal, as under PyTorch's
** torch.set_flush_denormal(True): denormal state would slow every later step.
*/
#ifndef DROPNET_OPTIM_H
#define DROPNET_OPTIM_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

typedef struct dn_sgd_options {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
} dn_sgd_options;

/* momentum_buf may be NULL when momentum == 0; first_step: the buffer is
   initialized to the gradient (PyTorch's rule) instead of updated. */
DN_API dn_status dn_sgd_step(dn_tensor *param, const dn_tensor *grad, dn_tensor *momentum_buf,
                             const dn_sgd_options *options, bool first_step);

typedef struct dn_adam_options {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled_weight_decay;   /* AdamW (Loshchilov & Hutter) */
  bool maximize;
} dn_adam_options;

/* step counts from 1 (bias correction). */
DN_API dn_status dn_adam_step(dn_tensor *param, const dn_tensor *grad, dn_tensor *exp_avg, dn_tensor *exp_avg_sq,
                              int64_t step, const dn_adam_options *options);

typedef struct dn_rmsprop_options {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;
} dn_rmsprop_options;

/* momentum_buf needed when momentum > 0, grad_avg when centered (else NULL). */
DN_API dn_status dn_rmsprop_step(dn_tensor *param, const dn_tensor *grad, dn_tensor *square_avg,
                                 dn_tensor *momentum_buf, dn_tensor *grad_avg, const dn_rmsprop_options *options);

/* Max-norm constraint (Srivastava et al. 2014): rescales each row of
   weight [out, in] (a unit's incoming weights) whose L2 norm exceeds max_norm. */
DN_API dn_status dn_max_norm_(dn_tensor *weight, double max_norm);

/* L2 norm of all tensors together (accumulated in double). */
DN_API dn_status dn_total_norm(double *norm, dn_tensor *const *tensors, int count);
/* Scales the tensors so their total L2 norm is at most max_norm (PyTorch's
   clip_grad_norm_); total_norm receives the norm before clipping. */
DN_API dn_status dn_clip_grad_norm_(dn_tensor *const *grads, int count, double max_norm, double *total_norm);

DN_END_DECLS

#endif
