/*
** The autograd engine: dn_backward. It walks the nodes newest first, calls
** each node's backward function with grad mode off, and adds the gradients
** into the inputs' nodes and leaves. It calls only the layers below it:
** tensor.c, graph.c and copy.c (the gradient's first copy and the check-free
** accumulation); no op, so no per-edge argument checks.
*/
#include <stdlib.h>
#include <string.h>

#include "dropnet/autograd.h"
#include "graph.h"
#include "internal.h"

static uint64_t next_visit = 1;   /* graphs are walked from one thread at a time */

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

/*
** Adds g into *slot: takes g over when the slot is empty and g is private,
** copies it when it is not; else adds it in place. g has the slot's shape and
** is float32 (check_grad_shape; a leaf's .grad is set to its own shape), so
** the add is copy.c's check-free one.
*/
static dn_status accumulate(dn_tensor **slot, dn_tensor *g) {
  if (!*slot) {
    if (g->refcount == 1 && g->storage->refcount == 1 && dn_tensor_is_contiguous(g) && !g->grad_fn) {
      *slot = dn_tensor_retain(g);
      return DN_OK;
    }
    return dn_plain_clone(slot, g);
  }
  return dn_accumulate_into(*slot, g);
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
  /* the fixed-arity ops' gradients on the stack; cat's and stack's many in one allocation */
  dn_tensor *few[DN_NODE_INPUTS] = {NULL}, **grad_in = few;
  int slots = n->n_inputs > DN_NODE_INPUTS ? n->n_inputs : DN_NODE_INPUTS;
  if (slots > DN_NODE_INPUTS) {
    grad_in = dn_alloc((size_t)slots * sizeof *grad_in);
    if (!grad_in) return dn_fail(DN_ENOMEM, "backward: out of memory for the gradients of %s", n->type->name);
    memset(grad_in, 0, (size_t)slots * sizeof *grad_in);
  }
  dn_status st = n->type->backward(n, n->grad, grad_in);
  for (int i = 0; i < n->n_inputs && !st; i++) {
    if (!grad_in[i] || !n->needs_grad[i]) continue;
    st = check_grad_shape(n, i, grad_in[i]);
    if (st) break;
    if (n->next_fn[i]) st = accumulate(&n->next_fn[i]->grad, grad_in[i]);
    else if (n->next_leaf[i]) st = accumulate(&n->next_leaf[i]->grad, grad_in[i]);
  }
  for (int i = 0; i < slots; i++) dn_tensor_release(grad_in[i]);
  if (grad_in != few) dn_free(grad_in);
  dn_tensor_release(n->grad);
  n->grad = NULL;
  if (!st && !retain_graph) {
    dn_node_free_saved(n);
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
