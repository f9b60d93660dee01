/*
** Convolutions over NCHW float32 tensors (conv.c): im2col into scratch from
** the caching allocator and dropnet's sgemm. Differentiable (they record a
** "conv2d" / "conv1d" node); results are the same bits for any thread count.
*/
#ifndef DROPNET_CONV_H
#define DROPNET_CONV_H

#include "dropnet/export.h"
#include "dropnet/tensor.h"

DN_BEGIN_DECLS

/*
** *out = a new [N, out, OH, OW] tensor: the cross-correlation of x
** [N, in, H, W] with w [out, in/groups, KH, KW] (PyTorch's layout), plus b
** [out] (or NULL). stride and dilation are {rows, columns} >= 1, padding
** {rows, columns} >= 0 (zeros on both sides), groups >= 1 dividing in and
** out: OH = (H + 2 padding[0] - dilation[0] (KH - 1) - 1) / stride[0] + 1,
** and likewise OW. x may have any strides; borrows every argument.
*/
DN_API dn_status dn_conv2d(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, const int64_t stride[2],
                           const int64_t padding[2], const int64_t dilation[2], int64_t groups);

/* The same over x [N, in, L] and w [out, in/groups, K]: a new [N, out, OL] tensor
   (computed as dn_conv2d with a height of 1). */
DN_API dn_status dn_conv1d(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, int64_t stride, int64_t padding,
                           int64_t dilation, int64_t groups);

/* dn_conv2d then ReLU in one pass over each image's outputs while they are in
   cache (a "conv2d_relu" node): the bits of dn_conv2d followed by dn_relu, for
   values and gradients. The fused form of nn.Conv2d, nn.ReLU in a Sequential. */
DN_API dn_status dn_conv2d_relu(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, const int64_t stride[2],
                                const int64_t padding[2], const int64_t dilation[2], int64_t groups);

/* dn_conv1d then ReLU, as dn_conv2d_relu (a "conv1d_relu" node). */
DN_API dn_status dn_conv1d_relu(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, int64_t stride,
                                int64_t padding, int64_t dilation, int64_t groups);

/* dn_conv2d / dn_conv1d whose output also carries the sums of each of its
   rows (n, o) that a batch norm's statistics are made of, taken while each
   image's outputs are in cache (dn_tensor.row_stats): a batch norm of that
   tensor (dn_batch_norm and its fused forms, norm.h) then skips its own pass
   over the input for them, with the same bits. An in-place write to the
   output (its storage's version) or a view of it drops them. The same node,
   values and gradients as dn_conv2d / dn_conv1d. The form of nn.Conv2d /
   nn.Conv1d in a Sequential when a batch norm follows. */
DN_API dn_status dn_conv2d_stats(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, const int64_t stride[2],
                                 const int64_t padding[2], const int64_t dilation[2], int64_t groups);
DN_API dn_status dn_conv1d_stats(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, int64_t stride,
                                 int64_t padding, int64_t dilation, int64_t groups);

DN_END_DECLS

#endif
