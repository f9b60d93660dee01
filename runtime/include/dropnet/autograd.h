/*
** Reverse-mode automatic differentiation.
**
** When grad mode is on (the default) and an input of a differentiable op
** requires grad, the op records a node on its output (t->grad_fn). Calling
** dn_backward on a result walks those nodes from the newest to the oldest and
** accumulates gradients into the .grad of every leaf that requires grad.
** The graph is owned by the tensors that refer to it: it is freed when the
** last of them is released. Gradients are float32; int32 results of
** comparisons, argmax and the like are not differentiable and record nothing.
*/
#ifndef DROPNET_AUTOGRAD_H
#define DROPNET_AUTOGRAD_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* Grad mode of the calling thread; set returns the previous mode. */
DN_API bool dn_grad_enabled(void);
DN_API bool dn_set_grad_enabled(bool enabled);

/* Marks a leaf tensor (float32, no grad_fn) as requiring grad, or not. */
DN_API dn_status dn_requires_grad_(dn_tensor *t, bool requires_grad);
/* A tensor sharing t's storage, outside any graph (requires_grad false). */
DN_API dn_status dn_detach(dn_tensor **out, dn_tensor *t);
/* Name of the op that made t ("add", "matmul", ...), or NULL for a leaf. */
DN_API const char *dn_grad_fn_name(const dn_tensor *t);

/*
** Accumulates d(root)/d(leaf) into leaf->grad for every leaf reached.
** grad is d(loss)/d(root) (same shape as root), or NULL for a root with one
** element (then 1). Without retain_graph the nodes' saved tensors are freed
** and a second backward through them is an error.
*/
DN_API dn_status dn_backward(dn_tensor *root, const dn_tensor *grad, bool retain_graph);

/* Fails (naming op) when t requires grad and grad mode is on: in-place
   writes would silently corrupt the graph. Used by every in-place op. */
DN_API dn_status dn_check_inplace(const char *op, const dn_tensor *t);

/* Fails (naming op) when src, read by an in-place op, requires grad and grad
   mode is on: in-place ops record nothing, so the gradient towards src would
   be lost without a word. Used by every in-place op that reads a tensor. */
DN_API dn_status dn_check_inplace_source(const char *op, const dn_tensor *src);

DN_END_DECLS

#endif
