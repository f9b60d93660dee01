/*
** The autograd engine: grad mode, recording nodes, and backward.
*/
#include <stdlib.h>
#include <string.h>

#include "dropnet/elementwise.h"
#include "dropnet/reduce.h"
#include "graph.h"
#include "internal.h"

static _Thread_local bool grad_disabled;   /* zero-initialized: grad mode on */
static uint64_t next_seq = 1;              /* graphs are built from one thread at a time */
static uint64_t next_visit = 1;

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

dn_status dn_record(dn_tensor *out, const dn_node_type *type, int n_inputs, const dn_tensor *const *inputs,
                    dn_node **node) {
  *node = NULL;
  if (grad_disabled) return DN_OK;
  bool any = false;
  for (int i = 0; i < n_inputs; i++) any = any || (inputs[i] && inputs[i]->requires_grad);
  if (!any) return DN_OK;
  dn_node *n = dn_alloc(sizeof *n);
  if (!n) return dn_fail(DN_ENOMEM, "%s: out of memory recording the graph", type->name);
  memset(n, 0, sizeof *n);
  n->refcount = 1;
  n->type = type;
  n->seq = next_seq++;
  n->n_inputs = n_inputs;
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

static void free_saved(dn_node *n) {
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
    free_saved(n);
    dn_tensor_release(n->grad);
    dn_free(n);
  }
  if (stack != inline_stack) dn_free(stack);
}

/* --- helpers for backward functions -------------------------------------------- */

dn_status dn_sum_to_shape(dn_tensor **out, dn_tensor *grad, int ndim, const int64_t *shape) {
  *out = NULL;
  dn_tensor *g = dn_tensor_retain(grad);
  dn_status st = DN_OK;
  int lead = grad->ndim - ndim;
  /* sum away leading dims, then dims that were broadcast from size 1 */
  for (int d = 0; d < lead && !st; d++) {
    dn_tensor *s;
    st = dn_sum_dim(&s, g, 0, false);
    dn_tensor_release(g);
    g = s;
  }
  for (int d = 0; d < ndim && !st; d++) {
    if (shape[d] != 1 || g->shape[d] == 1) continue;
    dn_tensor *s;
    st = dn_sum_dim(&s, g, d, true);
    dn_tensor_release(g);
    g = s;
  }
  if (st) {
    dn_tensor_release(g);
    return st;
  }
  *out = g;
  return DN_OK;
}

dn_status dn_grad_for_input(dn_tensor **out, dn_node *node, int i, dn_tensor *grad) {
  return dn_sum_to_shape(out, grad, node->in_ndim[i], node->in_shape[i]);
}

/* --- backward -------------------------------------------------------------------- */

typedef struct node_list {
  dn_node **items;
  size_t count, cap;
} node_list;

static dn_status list_push(node_list *l, dn_node *n) {
  if (l->count == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    dn_node **items = dn_alloc(cap * sizeof *items);
    if (!items) return dn_fail(DN_ENOMEM, "backward: out of memory");
    if (l->count) memcpy(items, l->items, l->count * sizeof *items);
    dn_free(l->items);
    l->items = items;
    l->cap = cap;
  }
  l->items[l->count++] = n;
  return DN_OK;
}

static int newest_first(const void *a, const void *b) {
  uint64_t x = (*(dn_node *const *)a)->seq, y = (*(dn_node *const *)b)->seq;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Every node reachable from root, newest first (inputs come after their users). */
static dn_status collect(dn_node *root, node_list *order) {
  node_list stack = {0};
  uint64_t visit = next_visit++;
  dn_status st = list_push(&stack, root);
  root->visit = visit;
  while (!st && stack.count) {
    dn_node *n = stack.items[--stack.count];
    st = list_push(order, n);
    for (int i = 0; i < n->n_inputs && !st; i++) {
      dn_node *m = n->next_fn[i];
      if (m && m->visit != visit) {
        m->visit = visit;
        st = list_push(&stack, m);
      }
    }
  }
  dn_free(stack.items);
  if (!st) qsort(order->items, order->count, sizeof *order->items, newest_first);
  return st;
}

/* Adds g into *slot (taking g over when the slot is empty and g is private). */
static dn_status accumulate(dn_tensor **slot, dn_tensor *g) {
  if (!*slot) {
    if (g->refcount == 1 && g->storage->refcount == 1 && dn_tensor_is_contiguous(g) && !g->grad_fn) {
      *slot = dn_tensor_retain(g);
      return DN_OK;
    }
    return dn_clone(slot, g);
  }
  return dn_binary_(*slot, DN_ADD, g);
}

static dn_status check_grad_shape(dn_node *n, int i, const dn_tensor *g) {
  bool same = g->ndim == n->in_ndim[i];
  for (int d = 0; same && d < g->ndim; d++) same = g->shape[d] == n->in_shape[i][d];
  if (same && g->dtype == DN_F32) return DN_OK;
  char gs[128];
  return dn_fail(DN_EINVAL, "backward: %s returned a gradient of shape %s for input %d (internal error)",
                 n->type->name, dn_shape_str(g, gs, sizeof gs), i + 1);
}

static dn_status run_node(dn_node *n, bool retain_graph) {
  if (n->freed)
    return dn_fail(DN_EINVAL,
                   "backward: the graph through %s was already freed by an earlier backward; "
                   "pass retain_graph = true to the first backward to run backward twice",
                   n->type->name);
  dn_tensor *grad_in[DN_NODE_INPUTS] = {NULL};
  dn_status st = n->type->backward(n, n->grad, grad_in);
  for (int i = 0; i < n->n_inputs && !st; i++) {
    if (!grad_in[i] || !n->needs_grad[i]) continue;
    st = check_grad_shape(n, i, grad_in[i]);
    if (st) break;
    if (n->next_fn[i]) st = accumulate(&n->next_fn[i]->grad, grad_in[i]);
    else if (n->next_leaf[i]) st = accumulate(&n->next_leaf[i]->grad, grad_in[i]);
  }
  for (int i = 0; i < DN_NODE_INPUTS; i++) dn_tensor_release(grad_in[i]);
  dn_tensor_release(n->grad);
  n->grad = NULL;
  if (!st && !retain_graph) {
    free_saved(n);
    n->freed = true;
  }
  return st;
}

static dn_status root_grad(dn_tensor **out, dn_tensor *root, const dn_tensor *grad) {
  char rs[128], gs[128];
  if (!grad) {
    if (dn_tensor_numel(root) != 1)
      return dn_fail(DN_ESHAPE,
                     "backward: a gradient can be implied only for a result with one element (shape %s); "
                     "pass the gradient",
                     dn_shape_str(root, rs, sizeof rs));
    return dn_tensor_ones(out, DN_F32, root->ndim, root->shape);
  }
  if (!dn_same_shape(root, grad) || grad->dtype != DN_F32)
    return dn_fail(DN_ESHAPE, "backward: gradient of shape %s (%s) does not match the result's shape %s",
                   dn_shape_str(grad, gs, sizeof gs), dn_dtype_name(grad->dtype), dn_shape_str(root, rs, sizeof rs));
  /* backward functions only read their incoming gradient: no copy needed */
  *out = dn_tensor_retain((dn_tensor *)grad);
  return DN_OK;
}

dn_status dn_backward(dn_tensor *root, const dn_tensor *grad, bool retain_graph) {
  DN_FPMODE_SCOPE();
  if (!root->requires_grad)
    return dn_fail(DN_EINVAL, "backward: the tensor does not require grad (no input of its graph requires grad)");
  dn_tensor *g0;
  dn_status st = root_grad(&g0, root, grad);
  if (st) return st;
  bool previous = dn_set_grad_enabled(false);
  if (!root->grad_fn) {   /* a leaf: its gradient is g0 */
    st = accumulate(&root->grad, g0);
    dn_tensor_release(g0);
    dn_set_grad_enabled(previous);
    return st;
  }
  node_list order = {0};
  st = collect(root->grad_fn, &order);
  if (!st) {
    dn_tensor_release(root->grad_fn->grad);
    root->grad_fn->grad = g0;
    g0 = NULL;
  }
  for (size_t k = 0; k < order.count && !st; k++) {
    dn_node *n = order.items[k];
    if (n->grad) st = run_node(n, retain_graph);
  }
  /* after a failure, drop the partial gradients still held by nodes */
  for (size_t k = 0; k < order.count; k++) {
    dn_tensor_release(order.items[k]->grad);
    order.items[k]->grad = NULL;
  }
  dn_free(order.items);
  dn_tensor_release(g0);
  dn_set_grad_enabled(previous);
  return st;
}
