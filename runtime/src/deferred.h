/*
** Deferred gradients. A backward may leave its gradient as a float32 tensor
** of `rows` rows of `row_len` values that are written on demand by fill
** rather than by the backward itself: batch norm's does, in all its forms
** (norm.c), and a convolution's backward, which a CNN puts before it, fills
** one image's rows into its task's scratch just before it reads them
** (conv.c). The dx of the batch norm is then never written to memory and
** read back (at 32 channels of 28x28 and batch 128: 12.8 MB each way).
**
** Only the engine hands such a tensor on (autograd.c), and only into the
** gradient slot of a node whose type takes one (dn_node_type.takes_deferred);
** anywhere else (another node's backward, a leaf's .grad, a sum of two
** gradients; hooks: hook.c) it is materialized first, which writes the
** values that fill gives, so the bits never depend on whether the gradient
** was deferred.
*/
#ifndef DN_DEFERRED_H
#define DN_DEFERRED_H

#include <stdint.h>

#include "dropnet/tensor.h"

typedef struct dn_deferred dn_deferred;
struct dn_deferred {
  int64_t rows, row_len;
  /* floats of scratch a caller of fill passes, zeroed before its first call and then left to fill */
  int64_t scratch_floats;
  /* rows [r0, r1) into dst ((r1 - r0) * row_len floats); any split of the rows gives the same values */
  void (*fill)(const dn_deferred *d, int64_t r0, int64_t r1, float *dst, float *scratch);
  void (*release)(dn_deferred *d);
};

/* A float32 contiguous tensor of shape whose values d writes, its data not yet allocated; d is taken over
   (released on failure). */
dn_status dn_tensor_new_deferred(dn_tensor **out, int ndim, const int64_t *shape, dn_deferred *d);

/* Allocates t's data and writes its values from t->deferred (all threads), then drops it; DN_OK at once when
   t is not deferred. */
dn_status dn_deferred_materialize(dn_tensor *t);

/* Frees d and what it holds (a tensor released with its values never written). */
void dn_deferred_release(dn_deferred *d);

#endif
