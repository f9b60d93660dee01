/*
** The autograd graph's objects: grad mode, the in-place checks, and the
** nodes (recording, saved tensors, release). A tensor owns its node and a
** node owns tensors, so this file and tensor.c call each other for
** lifetimes; everything else about autograd sits above (the engine in
** autograd.c, the backward functions beside their ops).
*/
#include <string.h>

#include "dropnet/autograd.h"
#include "graph.h"
#include "hook.h"
#include "internal.h"

static _Thread_local bool grad_disabled;   /* zero-initialized: grad mode on */
static uint64_t next_seq = 1;              /* graphs are built from one thread at a time */

bool dn_grad_enabled(void) { return !grad_disabled; }

bool dn_set_grad_enabled(bool enabled) {
  bool previous = !grad_disabled;
  grad_disabled = !enabled;
  return previous;
}

dn_status dn_check_inplace(const char *op, const dn_tensor *t) {
  if (t->requires_grad && !grad_disabled)
    return dn_fail(DN_EINVAL,
                   "%s: in-place operation on a tensor that requires grad (it would corrupt the graph); "
                   "use an out-of-place op, or no_grad",
                   op);
  return DN_OK;
}

dn_status dn_check_inplace_source(const char *op, const dn_tensor *src) {
  if (src->requires_grad && !grad_disabled)
    return dn_fail(DN_EINVAL,
                   "%s: the source requires grad but an in-place result records no graph (its gradient would be "
                   "lost); use an out-of-place op, or no_grad",
                   op);
  return DN_OK;
}

dn_status dn_requires_grad_(dn_tensor *t, bool requires_grad) {
  if (requires_grad && t->dtype != DN_F32)
    return dn_fail(DN_ETYPE, "requires_grad_: only float32 tensors can require grad (got %s)",
                   dn_dtype_name(t->dtype));
  if (!requires_grad && t->grad_fn)
    return dn_fail(DN_EINVAL, "requires_grad_: %s's result is not a leaf; use detach() to leave the graph",
                   dn_grad_fn_name(t));
  t->requires_grad = requires_grad;
  return DN_OK;
}

dn_status dn_detach(dn_tensor **out, dn_tensor *t) {
  return dn_tensor_alias(out, t, t->ndim, t->shape, t->stride, t->offset);
}

const char *dn_grad_fn_name(const dn_tensor *t) { return t->grad_fn ? t->grad_fn->type->name : NULL; }

/* --- nodes ------------------------------------------------------------------- */

/*
** A node and its per-input arrays are one allocation: the node, then the
** arrays for n inputs, widest elements first so each stays aligned (the
** node's size is a multiple of 8: it holds pointers and a uint64_t).
*/
static dn_node *node_new(int n_inputs) {
  size_t n = (size_t)n_inputs;
  size_t bytes = sizeof(dn_node) + n * (sizeof(int64_t[DN_MAX_DIMS]) + 2 * sizeof(void *) + sizeof(int) +
                                        sizeof(dn_dtype) + sizeof(bool));
  char *p = dn_alloc(bytes);
  if (!p) return NULL;
  memset(p, 0, bytes);
  dn_node *node = (dn_node *)p;
  p += sizeof(dn_node);
  node->in_shape = (int64_t(*)[DN_MAX_DIMS])p;
  p += n * sizeof(int64_t[DN_MAX_DIMS]);
  node->next_fn = (dn_node **)p;
  p += n * sizeof(dn_node *);
  node->next_leaf = (dn_tensor **)p;
  p += n * sizeof(dn_tensor *);
  node->in_ndim = (int *)p;
  p += n * sizeof(int);
  node->in_dtype = (dn_dtype *)p;
  p += n * sizeof(dn_dtype);
  node->needs_grad = (bool *)p;
  node->n_inputs = n_inputs;
  return node;
}

dn_status dn_record(dn_tensor *out, const dn_node_type *type, int n_inputs, const dn_tensor *const *inputs,
                    dn_node **node) {
  *node = NULL;
  if (grad_disabled) return DN_OK;
  bool any = false;
  for (int i = 0; i < n_inputs; i++) any = any || (inputs[i] && inputs[i]->requires_grad);
  if (!any) return DN_OK;
  dn_node *n = node_new(n_inputs);
  if (!n) return dn_fail(DN_ENOMEM, "%s: out of memory recording the graph", type->name);
  n->refcount = 1;
  n->type = type;
  n->seq = next_seq++;
  for (int i = 0; i < n_inputs; i++) {
    dn_tensor *in = (dn_tensor *)inputs[i];
    if (!in) continue;
    n->in_dtype[i] = in->dtype;
    n->in_ndim[i] = in->ndim;
    memcpy(n->in_shape[i], in->shape, sizeof in->shape);
    if (!in->requires_grad) continue;
    n->needs_grad[i] = true;
    if (in->grad_fn) {
      n->next_fn[i] = in->grad_fn;
      in->grad_fn->refcount++;
    } else {
      n->next_leaf[i] = dn_tensor_retain(in);
    }
  }
  out->grad_fn = n;
  out->requires_grad = true;
  *node = n;
  return DN_OK;
}

dn_status dn_node_save(dn_node *node, int slot, const dn_tensor *t) {
  dn_tensor *alias;
  dn_status st = dn_detach(&alias, (dn_tensor *)t);
  if (st) return st;
  dn_tensor_release(node->saved[slot]);
  node->saved[slot] = alias;
  node->saved_version[slot] = t->storage->version;
  return DN_OK;
}

dn_status dn_node_saved(dn_node *node, int slot, dn_tensor **t) {
  *t = node->saved[slot];
  if (!*t)
    return dn_fail(DN_EINVAL, "backward: %s has no saved tensor %d (graph freed?)", node->type->name, slot);
  if ((*t)->storage->version != node->saved_version[slot])
    return dn_fail(DN_EINVAL,
                   "backward: a tensor that %s saved for its backward was modified in place afterwards "
                   "(version %u, saved at %u)",
                   node->type->name, (*t)->storage->version, node->saved_version[slot]);
  return DN_OK;
}

void dn_node_free_saved(dn_node *n) {
  for (int s = 0; s < DN_NODE_SAVED; s++) {
    dn_tensor_release(n->saved[s]);
    n->saved[s] = NULL;
  }
}

/*
** Releases a node and, iteratively, the nodes only it kept alive: a long
** chain (an RNN over many steps) must not overflow the C stack.
*/
void dn_node_release(dn_node *node) {
  dn_node *inline_stack[64];
  dn_node **stack = inline_stack;
  size_t top = 0, cap = 64;
  stack[top++] = node;
  while (top > 0) {
    dn_node *n = stack[--top];
    if (!n || --n->refcount > 0) continue;
    for (int i = 0; i < n->n_inputs; i++) {
      dn_tensor_release(n->next_leaf[i]);
      if (!n->next_fn[i]) continue;
      if (top == cap) {
        dn_node **bigger = dn_alloc(2 * cap * sizeof *bigger);
        if (!bigger) {   /* out of memory: leak this subgraph rather than crash */
          continue;
        }
        memcpy(bigger, stack, top * sizeof *stack);
        if (stack != inline_stack) dn_free(stack);
        stack = bigger;
        cap *= 2;
      }
      stack[top++] = n->next_fn[i];
    }
    dn_node_free_saved(n);
    dn_tensor_release(n->grad);
    dn_hook_list_free(n->hooks, n);
    dn_free(n);
  }
  if (stack != inline_stack) dn_free(stack);
}
