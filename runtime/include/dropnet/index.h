/*
** Index ops: gathering rows for batches (converting byte rows to float), one-hot targets, and
** PyTorch's gather / scatter_add along a dim. Index tensors are int32 and start at `base` (0 in C,
** 1 from Lua).
*/
#ifndef DROPNET_INDEX_H
#define DROPNET_INDEX_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* out has a's shape with dim replaced by numel(index); index is 1-D int32. */
DN_API dn_status dn_index_select(dn_tensor **out, const dn_tensor *a, int dim, const dn_tensor *index,
                                 int64_t base);
/* index [...] int32 in [base, base+num_classes) -> float32 [..., num_classes]. */
DN_API dn_status dn_one_hot(dn_tensor **out, const dn_tensor *index, int64_t num_classes, int64_t base);
/* Rows of a uint8 tensor, each byte b replaced by table[b], in one pass: float32 of src's shape with dim 0 of
   length numel(index) (index NULL: every row of src, in order). table: float32 [256]. Records no autograd
   node. Keeps a byte dataset at 1/4 of the memory while its batches equal those of the converted dataset. */
DN_API dn_status dn_byte_rows_to_float(dn_tensor **out, const dn_tensor *src, const dn_tensor *index,
                                       int64_t base, const dn_tensor *table);

/*
** gather and scatter_add (PyTorch's semantics): index is int32 with a's ndim, no larger than a in any
** dim but `dim` (nor, for scatter_add, than src in any dim); each value within [base, base + a's size
** along dim). Sums are added in index's row-major order, whatever the thread count.
*/
/* out[c] = a[c with c[dim] = index[c] - base]: index's shape, a's dtype; differentiable in a. */
DN_API dn_status dn_gather(dn_tensor **out, const dn_tensor *a, int dim, const dn_tensor *index, int64_t base);
/* A copy of a (float32 or int32) with out[c with c[dim] = index[c] - base] += src[c] for c in index's
   shape; src has a's dtype and ndim. Differentiable in a and src. */
DN_API dn_status dn_scatter_add(dn_tensor **out, const dn_tensor *a, int dim, const dn_tensor *index,
                                const dn_tensor *src, int64_t base);
/* The same into a itself (no autograd: a and src must not require grad in grad mode); an int32
   overflow leaves a unchanged. */
DN_API dn_status dn_scatter_add_(dn_tensor *a, int dim, const dn_tensor *index, const dn_tensor *src,
                                 int64_t base);

DN_END_DECLS

#endif
