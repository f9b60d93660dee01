/*
** Sorting and order statistics (sort, topk, median, quantile) and histograms (histc).
** Lanes are ordered as PyTorch orders them: NaN above +inf, -0 equal to +0, ties in index order
** (stable). Index outputs are int32 and start at `base` (0 in C, 1 from Lua). Results do not
** depend on the thread count.
*/
#ifndef DROPNET_SORT_H
#define DROPNET_SORT_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* values and/or indices (either may be NULL) of a sorted along dim, ascending or descending; stable.
   Any dtype; differentiable in values (the gradient goes back through the indices). */
DN_API dn_status dn_sort(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int dim, bool descending,
                         int64_t base);
/* The k largest (largest) or smallest elements along dim, 0 <= k <= size, in sorted order or (sorted
   false) in index order; among equal values the lower index first. Differentiable in values. */
DN_API dn_status dn_topk(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int64_t k, int dim,
                         bool largest, bool sorted, int64_t base);
/* The lower median (sorted position (n - 1) / 2) of all elements as a 0-dim tensor, NaN if any element is
   NaN or a is empty float32. Its gradient is shared evenly by the elements equal to it. */
DN_API dn_status dn_median_all(dn_tensor **out, const dn_tensor *a);
/* The lower median along dim (keepdim as in PyTorch), values and/or indices: of a lane holding NaN, its
   first NaN. Differentiable in values. */
DN_API dn_status dn_median_dim(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int dim,
                               bool keepdim, int64_t base);
/* torch.quantile with linear interpolation, float32: q is a 0-dim or 1-D float32 tensor of levels in
   [0, 1]; a 1-D q puts its dim first in the result. A lane holding NaN gives NaN. Differentiable in a. */
DN_API dn_status dn_quantile_all(dn_tensor **out, const dn_tensor *a, const dn_tensor *q, bool keepdim);
DN_API dn_status dn_quantile_dim(dn_tensor **out, const dn_tensor *a, const dn_tensor *q, int dim, bool keepdim);
/* torch.histc: float32 counts [bins] of a's elements in [min, max] (min == max: the data's range, widened by 1
   on each side if that is one value); bin b holds lo + b (hi - lo) / bins <= x < lo + (b + 1) (hi - lo) / bins
   as float32 computes it, the last bin includes max; NaN and values outside are not counted. edges (may be
   NULL): float32 [bins + 1], the bins' bounds. Not differentiable. */
DN_API dn_status dn_histc(dn_tensor **counts, dn_tensor **edges, const dn_tensor *a, int64_t bins, double min,
                          double max);

DN_END_DECLS

#endif
