/*
** The autograd engine: dn_backward. It walks the nodes newest first, calls
** each node's backward function with grad mode off, and adds the gradients
** into the inputs' nodes and leaves. It calls only the layers below it:
** tensor.c, hook.c, graph.c and copy.c (the gradient's first copy and the
** check-free accumulation); no op, so no per-edge argument checks.
**
** Hooks (hook.c) run where PyTorch's do: a node's hooks when its gradient
** is complete, just before its backward; a leaf's once all its uses have
** added theirs, before .grad. For that a leaf with hooks collects its
** gradient apart (staged) until the last node that feeds it has run. Without
** hooks the only cost is testing NULL pointers.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dropnet/autograd.h"
#include "deferred.h"
#include "graph.h"
#include "hook.h"
#include "internal.h"

static uint64_t next_visit = 1;   /* graphs are walked from one thread at a time */
static uint64_t next_backward = 1;

/* --- end-of-backward callbacks ----------------------------------------------------- */

#define CALLBACKS_MAX 16

typedef struct callback_queue {
  struct { dn_backward_callback_fn fn; void *userdata; } items[CALLBACKS_MAX];
  int count;
  bool closed;   /* the callbacks are running: none may be added */
} callback_queue;

static callback_queue *queue;   /* the running backward's (a hook's own backward has its own) */

dn_status dn_queue_backward_callback(dn_backward_callback_fn fn, void *userdata) {
  if (!fn) return dn_fail(DN_EINVAL, "queue_backward_callback: fn is NULL");
  if (!queue || queue->closed) return dn_fail(DN_EINVAL, "queue_backward_callback: no backward is running");
  if (queue->count == CALLBACKS_MAX)
    return dn_fail(DN_EINVAL, "queue_backward_callback: more than %d callbacks in one backward", CALLBACKS_MAX);
  queue->items[queue->count].fn = fn;
  queue->items[queue->count].userdata = userdata;
  queue->count++;
  return DN_OK;
}

/* Runs the queue's callbacks (all of them, even after a failure, so each can drop its state). The first
   error wins, message too: a callback that cleans up after a failure may set messages of its own. */
static dn_status run_callbacks(callback_queue *q, dn_status st) {
  char message[512] = "";
  q->closed = true;
  if (st) snprintf(message, sizeof message, "%s", dn_last_error());
  for (int k = 0; k < q->count; k++) {
    dn_status cst = q->items[k].fn(q->items[k].userdata, st == DN_OK);
    if (!st && cst) {
      st = cst;
      snprintf(message, sizeof message, "%s", dn_last_error());
    }
  }
  if (st) dn_fail(st, "%s", message);
  return st;
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

/*
** Adds g into *slot: takes g over when the slot is empty and g is private,
** copies it when it is not; else adds it in place. g has the slot's shape and
** is float32 (check_grad_shape; a leaf's .grad is set to its own shape), so
** the add is copy.c's check-free one.
*/
static dn_status accumulate(dn_tensor **slot, dn_tensor *g) {
  if (!*slot) {
    if (g->refcount == 1 && g->storage->refcount == 1 && dn_tensor_is_contiguous(g) && !g->grad_fn) {
      *slot = dn_tensor_retain(g);   /* deferred or not (deferred.h) */
      return DN_OK;
    }
    dn_status st = dn_deferred_materialize(g);
    return st ? st : dn_plain_clone(slot, g);
  }
  /* a sum of two gradients: both written */
  dn_status st = dn_deferred_materialize(*slot);
  if (!st) st = dn_deferred_materialize(g);
  return st ? st : dn_accumulate_into(*slot, g);
}

static dn_status check_grad_shape(dn_node *n, int i, const dn_tensor *g) {
  bool same = g->ndim == n->in_ndim[i];
  for (int d = 0; same && d < g->ndim; d++) same = g->shape[d] == n->in_shape[i][d];
  if (same && g->dtype == DN_F32) return DN_OK;
  char gs[128];
  return dn_fail(DN_EINVAL, "backward: %s returned a gradient of shape %s for input %d (internal error)",
                 n->type->name, dn_shape_str(g, gs, sizeof gs), i + 1);
}

/* Where a gradient for leaf goes: its .grad, or its staging slot while its hooks wait for every use. */
static dn_tensor **leaf_slot(dn_tensor *leaf) {
  return leaf->hooks && leaf->hooks->staging ? &leaf->hooks->staged : &leaf->grad;
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
  /* a deferred gradient (deferred.h) goes only to a node that takes one */
  dn_status st = n->type->takes_deferred ? DN_OK : dn_deferred_materialize(n->grad);
  if (!st) st = n->type->backward(n, n->grad, grad_in);
  for (int i = 0; i < n->n_inputs && !st; i++) {
    if (!grad_in[i] || !n->needs_grad[i]) continue;
    st = check_grad_shape(n, i, grad_in[i]);
    if (st) break;
    if (n->next_fn[i]) st = accumulate(&n->next_fn[i]->grad, grad_in[i]);
    else if (n->next_leaf[i] && !(st = dn_deferred_materialize(grad_in[i])))
      st = accumulate(leaf_slot(n->next_leaf[i]), grad_in[i]);
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

/* --- hooks ------------------------------------------------------------------------ */

/* Marks the leaves with live hooks that the nodes in order feed as staging, each with the position of
   the last node that feeds it. */
static void stage_leaves(const node_list *order) {
  for (size_t k = 0; k < order->count; k++) {
    dn_node *n = order->items[k];
    for (int i = 0; i < n->n_inputs; i++) {
      dn_tensor *leaf = n->next_leaf[i];
      if (!leaf || !leaf->hooks || !dn_hook_list_live(leaf->hooks)) continue;
      dn_hook_list *l = leaf->hooks;
      if (!l->staging) {   /* a previous backward that failed may have left a gradient */
        dn_tensor_release(l->staged);
        l->staged = NULL;
      }
      l->staging = true;
      l->last = k;
    }
  }
}

/* A leaf's summed gradient through its hooks, then into .grad. */
static dn_status flush_leaf(dn_tensor *leaf) {
  dn_hook_list *l = leaf->hooks;
  dn_tensor *g = l->staged;
  l->staged = NULL;
  l->staging = false;
  if (!g) return DN_OK;
  dn_tensor_retain(leaf);   /* a hook may drop everything else that holds it */
  dn_status st = dn_hook_list_run_leaf(l, &g);
  if (!st) st = accumulate(&leaf->grad, g);
  dn_tensor_release(g);
  dn_tensor_release(leaf);
  return st;
}

/* After node k of the order ran (or had no gradient): the leaves whose last feeder it was. */
static dn_status flush_leaves_after(dn_node *n, size_t k) {
  dn_status st = DN_OK;
  for (int i = 0; i < n->n_inputs && !st; i++) {
    dn_tensor *leaf = n->next_leaf[i];
    if (leaf && leaf->hooks && leaf->hooks->staging && leaf->hooks->last == k) st = flush_leaf(leaf);
  }
  return st;
}

/* After a failure: the staged gradients are dropped, as the nodes' are. */
static void unstage_leaves(const node_list *order) {
  for (size_t k = 0; k < order->count; k++) {
    dn_node *n = order->items[k];
    for (int i = 0; i < n->n_inputs; i++) {
      dn_tensor *leaf = n->next_leaf[i];
      if (!leaf || !leaf->hooks) continue;
      dn_tensor_release(leaf->hooks->staged);
      leaf->hooks->staged = NULL;
      leaf->hooks->staging = false;
    }
  }
}

/* A node's hooks, with the node held: a hook may drop the last tensor that refers to it. */
static dn_status run_node_hooks(dn_node *n, uint64_t backward) {
  n->refcount++;
  dn_status st = dn_hook_list_run_node(n->hooks, backward);
  dn_node_release(n);
  return st;
}

/* --- dn_backward ------------------------------------------------------------------------ */

/* A leaf root: its gradient is g0 (owned), through its hooks. */
static dn_status backward_leaf(dn_tensor *root, dn_tensor *g0) {
  dn_status st = DN_OK;
  if (root->hooks && dn_hook_list_live(root->hooks)) {
    dn_tensor_retain(root);
    st = dn_hook_list_run_leaf(root->hooks, &g0);
    dn_tensor_release(root);
  }
  if (!st) st = accumulate(&root->grad, g0);
  dn_tensor_release(g0);
  return st;
}

dn_status dn_backward(dn_tensor *root, const dn_tensor *grad, bool retain_graph) {
  DN_FPMODE_SCOPE();
  if (!root->requires_grad)
    return dn_fail(DN_EINVAL, "backward: the tensor does not require grad (no input of its graph requires grad)");
  dn_tensor *g0;
  dn_status st = root_grad(&g0, root, grad);
  if (st) return st;
  bool previous = dn_set_grad_enabled(false);
  callback_queue callbacks = {.count = 0}, *outer = queue;
  queue = &callbacks;
  if (!root->grad_fn) {
    st = run_callbacks(&callbacks, backward_leaf(root, g0));
    queue = outer;
    dn_set_grad_enabled(previous);
    return st;
  }
  uint64_t backward = next_backward++;
  node_list order = {0};
  st = collect(root->grad_fn, &order);
  if (!st) {
    dn_tensor_release(root->grad_fn->grad);
    root->grad_fn->grad = g0;
    g0 = NULL;
  }
  bool staging = !st && dn_hook_leaf_lists() > 0;
  if (staging) stage_leaves(&order);
  for (size_t k = 0; k < order.count && !st; k++) {
    dn_node *n = order.items[k];
    if (n->hooks) st = run_node_hooks(n, backward);   /* (they see deferred gradients written: hook.c) */
    if (!st && n->grad) st = run_node(n, retain_graph);
    if (!st && staging) st = flush_leaves_after(n, k);
  }
  /* after a failure, drop the partial gradients still held by nodes */
  for (size_t k = 0; k < order.count; k++) {
    dn_tensor_release(order.items[k]->grad);
    order.items[k]->grad = NULL;
  }
  if (staging) unstage_leaves(&order);
  dn_free(order.items);
  dn_tensor_release(g0);
  st = run_callbacks(&callbacks, st);
  queue = outer;
  dn_set_grad_enabled(previous);
  return st;
}

/* --- hook aliases -------------------------------------------------------------------------- */

/* The gradient passes through unchanged: the node is only a place for hooks. */
static dn_status hook_alias_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  (void)node;
  grad_in[0] = dn_tensor_retain(grad);
  return DN_OK;
}
static const dn_node_type hook_alias_node = {.name = "backward_hook", .backward = hook_alias_backward};

#define DN_HOOK_ALIASES_MAX 4096

/*
** The nodes are recorded one after another, so when backward reaches the
** newest of them every later node has run: the others' gradients are complete
** too, and the group hook can see and replace them all at once.
*/
dn_status dn_hook_aliases(dn_tensor **outs, dn_hook **handle, int n, dn_tensor *const *ins, dn_grad_hook_fn fn,
                          void *userdata, dn_hook_free_fn free_fn) {
  if (handle) *handle = NULL;
  if (n < 1 || n > DN_HOOK_ALIASES_MAX)
    return dn_fail(DN_EINVAL, "hook_aliases: expected 1 to %d tensors (got %d)", DN_HOOK_ALIASES_MAX, n);
  for (int i = 0; i < n; i++) outs[i] = NULL;
  if (!fn) return dn_fail(DN_EINVAL, "hook_aliases: the hook function is NULL");
  for (int i = 0; i < n; i++)
    if (!ins[i]) return dn_fail(DN_EINVAL, "hook_aliases: tensor %d is NULL", i + 1);
  dn_hook *h = dn_hook_new(n, fn, userdata, free_fn);
  if (!h) return dn_fail(DN_ENOMEM, "hook_aliases: out of memory");
  dn_status st = DN_OK;
  for (int i = 0; i < n && !st; i++) {
    dn_tensor *in = ins[i];
    st = dn_tensor_alias(&outs[i], in, in->ndim, in->shape, in->stride, in->offset);
    dn_node *node = NULL;
    if (!st) st = dn_record(outs[i], &hook_alias_node, 1, (const dn_tensor *[]){in}, &node);
    if (!st && node) {
      h->nodes[i] = node;
      h->live++;
      st = dn_hook_list_add(&node->hooks, h, false);
    }
  }
  if (st) {
    dn_hook_abandon(h);   /* the caller keeps userdata */
    for (int i = 0; i < n; i++) {
      dn_tensor_release(outs[i]);
      outs[i] = NULL;
    }
    dn_hook_release(h);
    return st == DN_ENOMEM ? dn_fail(DN_ENOMEM, "hook_aliases: out of memory") : st;
  }
  if (h->live == 0) dn_hook_remove(h);   /* nothing to watch */
  if (handle) *handle = h;
  else dn_hook_release(h);
  return DN_OK;
}
