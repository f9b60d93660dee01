/*
** Reductions over all elements or over one dim (keepdim as in PyTorch).
** Float sums accumulate in double, in fixed-size blocks combined in a fixed
** order, so results do not depend on the thread count.
** Index outputs are int32 and start at `base` (0 in C, 1 from Lua).
*/
#ifndef DROPNET_REDUCE_H
#define DROPNET_REDUCE_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* All elements -> 0-dim tensor. sum/mean of int32 give int32/float32. */
DN_API dn_status dn_sum_all(dn_tensor **out, const dn_tensor *a);
DN_API dn_status dn_mean_all(dn_tensor **out, const dn_tensor *a);
DN_API dn_status dn_max_all(dn_tensor **out, const dn_tensor *a);
DN_API dn_status dn_min_all(dn_tensor **out, const dn_tensor *a);
/* correction: 1 = unbiased (default in Lua), 0 = population. */
DN_API dn_status dn_var_all(dn_tensor **out, const dn_tensor *a, int correction);
DN_API dn_status dn_std_all(dn_tensor **out, const dn_tensor *a, int correction);

/* Over one dim. dim may be negative (counts from the end). */
DN_API dn_status dn_sum_dim(dn_tensor **out, const dn_tensor *a, int dim, bool keepdim);
DN_API dn_status dn_mean_dim(dn_tensor **out, const dn_tensor *a, int dim, bool keepdim);
DN_API dn_status dn_var_dim(dn_tensor **out, const dn_tensor *a, int dim, bool keepdim, int correction);
DN_API dn_status dn_std_dim(dn_tensor **out, const dn_tensor *a, int dim, bool keepdim, int correction);
/* values and/or indices (either may be NULL); first occurrence wins ties;
   NaN propagates (a NaN is the max and the min). The gradient of values
   goes to the returned index only; that of max_all/min_all is shared
   evenly by all elements equal to the result (as PyTorch does). */
DN_API dn_status dn_max_dim(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int dim,
                            bool keepdim, int64_t base);
DN_API dn_status dn_min_dim(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int dim,
                            bool keepdim, int64_t base);
/* Index of the max/min over all elements (flattened), as a 0-dim int32. */
DN_API dn_status dn_argmax_all(dn_tensor **out, const dn_tensor *a, int64_t base);
DN_API dn_status dn_argmin_all(dn_tensor **out, const dn_tensor *a, int64_t base);

/* The vector p-norm of float32 elements (torch.linalg.vector_norm): (sum |x|^p)^(1/p) for p > 0, max |x|
   for p = INFINITY, the count of non-zeros for p = 0 (which records a node that gives no gradient).
   Sums in double: p = 2 cannot overflow. The gradient at a zero norm is 0; inf shares it among ties. */
DN_API dn_status dn_vector_norm_all(dn_tensor **out, const dn_tensor *a, double p);
DN_API dn_status dn_vector_norm_dim(dn_tensor **out, const dn_tensor *a, double p, int dim, bool keepdim);

/* Cumulative sums along dim, a's shape: float32 accumulates in double, int32 and uint8 give int32
   (DN_ERANGE when a sum leaves int32). Differentiable (float32). */
DN_API dn_status dn_cumsum(dn_tensor **out, const dn_tensor *a, int dim);

DN_END_DECLS

#endif
