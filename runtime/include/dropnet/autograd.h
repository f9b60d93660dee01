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

/* --- gradient hooks -------------------------------------------------------------- */

/*
** A hook sees gradients during dn_backward before they go on (PyTorch's
** register_hook): on a leaf, the sum of the gradients of all its uses, once,
** before it is added to .grad; on an op's result, the gradient flowing into
** it, before the op's backward. fn gets the n gradients it watches (borrowed;
** NULL where none arrived) and may set replacements[i] to a new reference
** (float32, the shape of grads[i]) that flows on instead; a status other than
** DN_OK stops the backward with that error (fn must not leave replacements set
** then). Hooks of one tensor run in registration order, each seeing the last
** one's replacement, with grad mode off, on the thread calling dn_backward.
** Setting none costs nothing: the engine only tests pointers that are NULL.
*/
typedef struct dn_hook dn_hook;
typedef dn_status (*dn_grad_hook_fn)(void *userdata, int n, dn_tensor *const *grads, dn_tensor **replacements);
/* Frees a hook's userdata: called once, when the hook is removed or every tensor it watches is freed. */
typedef void (*dn_hook_free_fn)(void *userdata);

/* Registers fn (n = 1) on t, which must require grad. On success the hook owns userdata (free_fn may be
   NULL) and *handle, when handle is not NULL, is a new reference; on failure nothing is kept. */
DN_API dn_status dn_register_hook(dn_hook **handle, dn_tensor *t, dn_grad_hook_fn fn, void *userdata,
                                  dn_hook_free_fn free_fn);
/*
** outs[i]: an alias of ins[i] (no copy) whose gradient flows back unchanged
** through a "backward_hook" node when ins[i] requires grad, with fn watching
** the n aliases together: it runs once per backward, when the first of them is
** reached, with all their gradients (complete by then: only ops made later use
** the aliases), and its replacements are what flows into ins. The place of a
** module's backward hooks (PyTorch's BackwardHookFunction). 1 <= n <= 4096.
** When no alias records a node (nothing requires grad, or grad mode is off)
** fn never runs and free_fn runs at once. Ownership of userdata and *handle as
** dn_register_hook; on failure every outs[i] is NULL.
*/
DN_API dn_status dn_hook_aliases(dn_tensor **outs, dn_hook **handle, int n, dn_tensor *const *ins,
                                 dn_grad_hook_fn fn, void *userdata, dn_hook_free_fn free_fn);
/* Unregisters h: it never runs again and its free_fn runs now. A no-op when h was already removed or
   its tensors are gone. */
DN_API void dn_hook_remove(dn_hook *h);
/* Drops a handle; the hook stays registered. NULL is a no-op. */
DN_API void dn_hook_release(dn_hook *h);

/*
** Runs fn(userdata, ok) once the backward that is running now has finished
** every node and leaf (PyTorch's queue_callback): the place for work that
** needs every gradient of the step, such as waiting for a data-parallel
** reduction started by leaf hooks. ok is false when the backward failed, so
** fn can drop its state; a status from fn becomes the backward's when it
** had none. Callbacks run in queue order, each once; fn may not queue more.
** Called outside a backward it fails with DN_EINVAL.
*/
typedef dn_status (*dn_backward_callback_fn)(void *userdata, bool ok);
/* Queues fn for the end of the running backward (see above). */
DN_API dn_status dn_queue_backward_callback(dn_backward_callback_fn fn, void *userdata);

DN_END_DECLS

#endif
