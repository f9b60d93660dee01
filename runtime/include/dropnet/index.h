/*
** Index ops: gathering rows for batches, one-hot targets.
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

DN_END_DECLS

#endif
