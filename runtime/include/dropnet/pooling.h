/*
** Pooling over the last two dims of [N, C, H, W] (or unbatched [C, H, W])
** float32 tensors, and the 1-d forms over the last dim of [N, C, L] (or
** [C, L]). Windows, output sizes, ties and NaN as PyTorch 1.13. All record
** autograd nodes; *out is a new contiguous tensor (a new reference), NULL on
** failure. A batch of 0 gives an empty output; other dims must be > 0.
*/
#ifndef DROPNET_POOLING_H
#define DROPNET_POOLING_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/*
** Max over each kernel[0] x kernel[1] window, dilated by dilation, every
** stride, the input padded with -inf by padding on each side. Pairs are
** {height, width}; stride NULL means kernel, padding NULL {0, 0}, dilation
** NULL {1, 1}. ceil_mode rounds the output size up (a last window that
** starts inside the input or its left padding). The first maximum of a
** window wins; a NaN in a window is its maximum.
*/
DN_API dn_status dn_max_pool2d(dn_tensor **out, dn_tensor *x, const int64_t kernel[2], const int64_t stride[2],
                               const int64_t padding[2], const int64_t dilation[2], bool ceil_mode);
/*
** Mean over each window (zero padding). The divisor is the window's size
** clipped to the padded input with count_include_pad, else the number of
** input elements in it. stride NULL means kernel, padding NULL {0, 0}.
*/
DN_API dn_status dn_avg_pool2d(dn_tensor **out, dn_tensor *x, const int64_t kernel[2], const int64_t stride[2],
                               const int64_t padding[2], bool ceil_mode, bool count_include_pad);
/* Mean over out_h x out_w windows that cover the input: rows
   [floor(i * H / out_h), ceil((i + 1) * H / out_h)), columns likewise. */
DN_API dn_status dn_adaptive_avg_pool2d(dn_tensor **out, dn_tensor *x, int64_t out_h, int64_t out_w);

/* The 1-d forms: x [N, C, L] or [C, L]; the 2-d pool with a window of height 1. */
DN_API dn_status dn_max_pool1d(dn_tensor **out, dn_tensor *x, int64_t kernel, int64_t stride, int64_t padding,
                               int64_t dilation, bool ceil_mode);
DN_API dn_status dn_avg_pool1d(dn_tensor **out, dn_tensor *x, int64_t kernel, int64_t stride, int64_t padding,
                               bool ceil_mode, bool count_include_pad);

DN_END_DECLS

#endif
