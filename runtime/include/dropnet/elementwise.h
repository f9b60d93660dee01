/*
** Element-wise ops with NumPy/PyTorch broadcasting.
**
** dtype rules (PyTorch's): int32 op int32 stays int32, except div, pow with a
** negative exponent and the float-valued functions (exp, log, sqrt, sigmoid,
** tanh) which give float32; int32 mixed with float32 gives float32; a
** non-integral scalar makes an int32 tensor float32. Comparisons return 0/1 in
** the promoted dtype. Results never depend on the thread count.
**
** An int32 result outside the int32 range (add, sub, mul, pow, neg, abs) is a
** DN_ERANGE error naming the op and the operands, never a wrap-around (PyTorch
** wraps); an in-place op that fails leaves its tensor as it was.
*/
#ifndef DROPNET_ELEMENTWISE_H
#define DROPNET_ELEMENTWISE_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

typedef enum dn_binop {
  DN_ADD, DN_SUB, DN_MUL, DN_DIV, DN_POW,
  DN_EQ, DN_NE, DN_LT, DN_LE, DN_GT, DN_GE,
  DN_MAXIMUM, DN_MINIMUM,
  DN_BINOP_COUNT   /* not an op: the number of ops */
} dn_binop;

typedef enum dn_unop {
  DN_NEG, DN_EXP, DN_LOG, DN_SQRT, DN_ABS, DN_RELU, DN_SIGMOID, DN_TANH,
  DN_UNOP_COUNT   /* not an op: the number of ops */
} dn_unop;

DN_API const char *dn_binop_name(dn_binop op);   /* "add", "sub", ... */
DN_API const char *dn_unop_name(dn_unop op);     /* "neg", "exp", ... */

/* Broadcast shape of a and b into shape/ndim, or DN_ESHAPE naming `opname`. */
DN_API dn_status dn_broadcast_shape(const char *opname, const dn_tensor *a, const dn_tensor *b,
                                    int *ndim, int64_t *shape);

/* out = a op b, broadcast. */
DN_API dn_status dn_binary(dn_tensor **out, dn_binop op, const dn_tensor *a, const dn_tensor *b);
/* out = a op s, or s op a when scalar_first (for `1 - t`, `2 / t`). */
DN_API dn_status dn_binary_scalar(dn_tensor **out, dn_binop op, const dn_tensor *a, double s,
                                  bool scalar_first);
/* In place: a = a op b (b broadcast to a's shape; result dtype must be a's). */
DN_API dn_status dn_binary_(dn_tensor *a, dn_binop op, const dn_tensor *b);
DN_API dn_status dn_binary_scalar_(dn_tensor *a, dn_binop op, double s);

/* out = op(a). In place: a = op(a); an int32 a only for ops that keep int32
   (neg, abs, relu), since the others give float32. */
DN_API dn_status dn_unary(dn_tensor **out, dn_unop op, const dn_tensor *a);
DN_API dn_status dn_unary_(dn_tensor *a, dn_unop op);

/* Clamp to [lo, hi]; NaN for a bound means no bound on that side. */
DN_API dn_status dn_clamp(dn_tensor **out, const dn_tensor *a, double lo, double hi);
/* out = cond != 0 ? a : b, all three broadcast together. */
DN_API dn_status dn_where(dn_tensor **out, const dn_tensor *cond, const dn_tensor *a, const dn_tensor *b);
/* out = mask != 0 ? value : a (mask of any dtype, NaN counts as true), a and mask broadcast together as
   torch.masked_fill; value must fit a's dtype. Differentiable in a: no gradient where filled. */
DN_API dn_status dn_masked_fill(dn_tensor **out, const dn_tensor *a, const dn_tensor *mask, double value);
/* The same in place: mask broadcasts to a's shape; an error when a requires grad in grad mode. */
DN_API dn_status dn_masked_fill_(dn_tensor *a, const dn_tensor *mask, double value);

/* Convenience wrappers over dn_binary/dn_unary. */
DN_API dn_status dn_add(dn_tensor **out, const dn_tensor *a, const dn_tensor *b);
DN_API dn_status dn_sub(dn_tensor **out, const dn_tensor *a, const dn_tensor *b);
DN_API dn_status dn_mul(dn_tensor **out, const dn_tensor *a, const dn_tensor *b);
DN_API dn_status dn_div(dn_tensor **out, const dn_tensor *a, const dn_tensor *b);

DN_END_DECLS

#endif
