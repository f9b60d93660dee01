/*
** Joining tensors: cat (along an existing dim) and stack (along a new one),
** as torch.cat and torch.stack. Any number of inputs of one dtype (float32,
** int32 or uint8); float32 results record one autograd node whose backward
** gives each input its slice of the gradient. Messages number the tensors
** from 1 ("tensor 2 of 3").
*/
#ifndef DROPNET_JOIN_H
#define DROPNET_JOIN_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* tensors[0..n) joined along dim (negative counts from the end), n >= 1: shapes equal except along dim.
   As PyTorch 1.13, 1-D tensors with no element (shape [0]) are skipped whatever the others' shapes; dim
   refers to the first tensor not skipped. */
DN_API dn_status dn_cat(dn_tensor **out, const dn_tensor *const *tensors, int n, int dim);
/* tensors[0..n) of one shape, n >= 1, stacked along a new dim (0..ndim, negative counts from the end). */
DN_API dn_status dn_stack(dn_tensor **out, const dn_tensor *const *tensors, int n, int dim);

DN_END_DECLS

#endif
