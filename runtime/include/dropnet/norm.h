/*
** Normalization layers over float32 tensors: batch, layer and group
** normalization. They record autograd nodes; *out is a new contiguous
** tensor (a new reference), NULL on failure.
*/
#ifndef DROPNET_NORM_H
#define DROPNET_NORM_H

#include "dropnet/dropout.h"
#include "dropnet/rng.h"
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

/*
** relu(batch_norm(x)) in one op, with dn_batch_norm's arguments and
** behaviour (running statistics, eval, empty batch, errors named
** "batch_norm_relu"): the ReLU is applied in the pass that writes the
** normalized values, and in backward its mask (the saved output y <= 0) is
** applied to the gradient inside batch norm's passes. Values, the running
** statistics and the gradients of x, weight and bias are bit for bit those
** of dn_batch_norm followed by dn_unary(DN_RELU) (NaN and -0 outputs kept;
** a NaN output passes its gradient), for any thread count; the node keeps
** the output beside what dn_batch_norm keeps. nn.Sequential uses it for a
** BatchNorm1d or BatchNorm2d followed by a ReLU.
*/
DN_API dn_status dn_batch_norm_relu(dn_tensor **out, dn_tensor *x, dn_tensor *weight, dn_tensor *bias,
                                    dn_tensor *running_mean, dn_tensor *running_var, bool training,
                                    double momentum, double eps);

/*
** max_pool2d(relu(batch_norm(x)), kernel 2, stride 2) in one op, for x
** [N, C, H, W] with H >= 2 and W >= 2: *out is [N, C, H / 2, W / 2] (floor:
** an odd last row or column is normalized and counted in the statistics,
** and in no window). dn_batch_norm's arguments and behaviour otherwise
** (running statistics, eval, empty batch; errors named
** "batch_norm_relu_max_pool2d"). Each plane is normalized into a per-thread
** scratch buffer and pooled from there, so the normalized tensor is never
** written to memory; backward rebuilds each plane's pooled gradient the
** same way. Values, the running statistics and the gradients of x, weight
** and bias are bit for bit those of dn_batch_norm_relu followed by
** dn_max_pool2d (kernel 2x2, stride 2, no padding, floor), for any thread
** count; the node keeps the int32 argmax of each window (as max pool's)
** beside what dn_batch_norm keeps. nn.Sequential uses it for a BatchNorm2d,
** a ReLU and such a MaxPool2d.
*/
DN_API dn_status dn_batch_norm_relu_max_pool2d(dn_tensor **out, dn_tensor *x, dn_tensor *weight, dn_tensor *bias,
                                               dn_tensor *running_mean, dn_tensor *running_var, bool training,
                                               double momentum, double eps);

/*
** dn_dropout_channels(dn_batch_norm_relu_max_pool2d(x, ...), p, rng,
** scaling) in one op (Dropout2d after the block; grad_fn
** "batch_norm_relu_max_pool2d_dropout2d", errors named so): the dropout's
** decisions (one per (n, c) of the output, the generator's batch shard
** honoured), scale and generator advance, and p = 0 drawing nothing. The
** pass that pools a plane writes a dropped one as zeros without normalizing
** it and scales a kept one; backward needs no mask (a dropped plane's saved
** indices route no gradient). Values, the running statistics, the
** generator's offset and the gradients of x, weight and bias are bit for bit
** those of the two calls, for any thread count. nn.Sequential uses it for a
** BatchNorm2d, a ReLU, such a MaxPool2d and a Dropout2d that draws.
*/
DN_API dn_status dn_batch_norm_relu_max_pool2d_dropout2d(dn_tensor **out, dn_tensor *x, dn_tensor *weight,
                                                         dn_tensor *bias, dn_tensor *running_mean,
                                                         dn_tensor *running_var, bool training, double momentum,
                                                         double eps, double p, dn_rng *rng,
                                                         dn_dropout_scaling scaling);

/*
** The first block of a small CNN in one op:
** dn_batch_norm_relu_max_pool2d_dropout2d(dn_conv2d(x, conv_weight,
** conv_bias, stride 1, padding, dilation 1, groups 1), weight, bias, ...),
** for input images x [N, Cin, H, W] that do not require grad, conv_weight
** [C, Cin, KH, KW] with Cin * KH * KW <= 27 (a 3x3 or 5x5 kernel on gray
** images, 3x3 on RGB), conv_bias [C] or NULL, padding {rows, columns} >= 0,
** OH, OW >= 2 (the convolution's output size) and Cin (H + 2 padding[0])
** (W + 2 padding[1]) <= 2^24 (an image padded: a per-thread buffer). The arguments after
** padding are dn_batch_norm_relu_max_pool2d_dropout2d's (p = 0: no
** dropout, and rng may then be NULL); *out is [N, C, OH / 2, OW / 2];
** grad_fn "conv2d_batch_norm_relu_max_pool2d_dropout2d", errors named so.
**
** The convolution's output is never written to memory, neither here nor in
** backward: in training its batch statistics come from the moments of the
** input's patches (a channel's mean is w . s / M and its sum of squares
** w^T G w, with s the patches' sum and G their Gram matrix, in double); each
** image's outputs are computed, normalized, pooled and dropped in a task's
** scratch; backward needs the pooled gradient at each window's argmax only,
** as dweight of the convolution is the patches' sum weighted by batch
** norm's dx, whose terms in the mean and the normalized output reduce to s
** and G again. Values, running statistics, the generator's advance and
** gradients equal the two calls' up to rounding (not bit for bit: the
** statistics are of the exact convolution, and the sums run in another
** order), the same bits for any thread count. The node keeps x, a byte per
** window and the convolution's output at each window's argmax; the values
** of conv_weight and weight the forward used are kept in it, not the
** tensors (an in-place change afterwards is not seen by backward).
** nn.Sequential uses it for a Conv2d on an input without gradient followed
** by a BatchNorm2d, a ReLU, a 2x2 MaxPool2d and a Dropout2d (or none).
*/
DN_API dn_status dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(
    dn_tensor **out, dn_tensor *x, dn_tensor *conv_weight, dn_tensor *conv_bias, const int64_t padding[2],
    dn_tensor *weight, dn_tensor *bias, dn_tensor *running_mean, dn_tensor *running_var, bool training,
    double momentum, double eps, double p, dn_rng *rng, dn_dropout_scaling scaling);

/*
** Layer normalization: x [..., D1, ..., Dk] normalized over its last k =
** ndim dims, which must equal normalized_shape, y = (x - mean) / sqrt(var
** + eps) * weight + bias with the biased variance of each such block, as
** PyTorch 1.13's layer_norm. weight and bias (normalized_shape, borrowed)
** may be NULL. Differentiable in x, weight and bias; the same bits for any
** thread count.
*/
DN_API dn_status dn_layer_norm(dn_tensor **out, dn_tensor *x, int ndim, const int64_t *normalized_shape,
                               dn_tensor *weight, dn_tensor *bias, double eps);

/*
** Group normalization: x [N, C, ...] with its C channels in `groups`
** groups of C / groups consecutive channels, each (sample, group)
** normalized over its channels and every dim after C, then weight and bias
** ([C], borrowed, may be NULL) per channel, as PyTorch 1.13's group_norm.
*/
DN_API dn_status dn_group_norm(dn_tensor **out, dn_tensor *x, int64_t groups, dn_tensor *weight, dn_tensor *bias,
                               double eps);

DN_END_DECLS

#endif
