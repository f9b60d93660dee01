/*
** Index ops: gathering rows for batches (converting byte rows to float), one-hot targets.
** Index tensors are int32 and start at `base` (0 in C, 1 from Lua).
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

DN_END_DECLS

#endif
