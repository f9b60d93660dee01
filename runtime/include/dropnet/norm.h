/*
** Normalization layers over float32 tensors. They record autograd nodes;
** *out is a new contiguous tensor (a new reference), NULL on failure.
*/
#ifndef DROPNET_NORM_H
#define DROPNET_NORM_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/*
** Batch normalization of x [N, C], [N, C, L] or [N, C, H, W]: each channel c
** is normalized over every other dim, y = (x - mean_c) / sqrt(var_c + eps)
** * weight_c + bias_c, as PyTorch 1.13's batch_norm.
**
** training: mean and (biased) variance of the batch; when running_mean and
** running_var are given they are updated in place (borrowed, float32 [C]):
** r = (1 - momentum) * r + momentum * batch value, with the unbiased batch
** variance for running_var. Needs more than one value per channel.
** Otherwise (eval): running_mean and running_var, both required, are used
** and left alone.
**
** weight and bias ([C], borrowed) may be NULL (1 and 0). Differentiable in
** x, weight and bias; the running statistics never require grad. Sums are
** in double, one channel per task: the same bits for any thread count. An
** input with N = 0 gives an empty output and updates nothing.
*/
DN_API dn_status dn_batch_norm(dn_tensor **out, dn_tensor *x, dn_tensor *weight, dn_tensor *bias,
                               dn_tensor *running_mean, dn_tensor *running_var, bool training, double momentum,
                               double eps);

DN_END_DECLS

#endif
