/*
** Gradient hooks: the hook objects, the lists that hold them, registration on
** a tensor, and running them with their replacements checked. The engine
** (autograd.c) calls the runners at the right moments; this file only needs
** tensors (tensor.c), so the release of a tensor or a node can free its list.
**
** Lifetimes: a hook is referenced by each list it sits in and by each handle.
** It is removed (never runs again, its userdata freed through free_fn) by
** dn_hook_remove or when every tensor it watches is freed; a removal during
** one of its own calls frees the userdata only when the call returns, so a
** hook may remove itself. Removed hooks leave their lists at the next
** registration on that list, or with the list.
*/
#include <string.h>

#include "deferred.h"
#include "graph.h"
#include "hook.h"
#include "internal.h"

/* Leaves with a hook list. The engine reads it once per backward; lists are made and freed by the
   thread that builds graphs (as dn_record's sequence numbers are). */
static long leaf_lists;

long dn_hook_leaf_lists(void) { return leaf_lists; }

/* --- hooks ------------------------------------------------------------------------ */

dn_hook *dn_hook_new(int n, dn_grad_hook_fn fn, void *userdata, dn_hook_free_fn free_fn) {
  dn_hook *h = dn_alloc(sizeof *h + (size_t)n * sizeof h->nodes[0]);   /* n <= 4096: no overflow */
  if (!h) return NULL;
  memset(h, 0, sizeof *h + (size_t)n * sizeof h->nodes[0]);
  h->refcount = 1;
  h->fn = fn;
  h->userdata = userdata;
  h->free_fn = free_fn;
  h->n = n;
  return h;
}

static void free_userdata(dn_hook *h) {
  dn_hook_free_fn free_fn = h->free_fn;
  void *userdata = h->userdata;
  h->free_fn = NULL;
  h->userdata = NULL;
  if (free_fn) free_fn(userdata);
}

void dn_hook_remove(dn_hook *h) {
  if (!h || !h->fn) return;
  h->fn = NULL;
  if (!h->running) free_userdata(h);
}

void dn_hook_abandon(dn_hook *h) {
  h->fn = NULL;
  h->free_fn = NULL;
  h->userdata = NULL;
}

void dn_hook_release(dn_hook *h) {
  if (!h || --h->refcount > 0) return;
  dn_hook_remove(h);   /* normally done: lists hold references until then */
  dn_free(h);
}

/* --- lists -------------------------------------------------------------------------- */

dn_status dn_hook_list_add(dn_hook_list **list, dn_hook *h, bool leaf) {
  dn_hook_list *l = *list;
  if (!l) {
    l = dn_alloc(sizeof *l);
    if (!l) return dn_fail(DN_ENOMEM, "register_hook: out of memory");
    memset(l, 0, sizeof *l);
    l->leaf = leaf;
    if (leaf) leaf_lists++;
    *list = l;
  }
  if (!l->running) {   /* drop the removed hooks */
    int kept = 0;
    for (int k = 0; k < l->count; k++) {
      if (l->items[k]->fn) l->items[kept++] = l->items[k];
      else dn_hook_release(l->items[k]);
    }
    l->count = kept;
  }
  if (l->count == l->cap) {
    int cap = l->cap ? 2 * l->cap : 4;
    dn_hook **items = dn_alloc((size_t)cap * sizeof *items);
    if (!items) return dn_fail(DN_ENOMEM, "register_hook: out of memory");
    if (l->count) memcpy(items, l->items, (size_t)l->count * sizeof *items);
    dn_free(l->items);
    l->items = items;
    l->cap = cap;
  }
  h->refcount++;
  l->items[l->count++] = h;
  return DN_OK;
}

void dn_hook_list_free(dn_hook_list *list, const dn_node *owner) {
  if (!list) return;
  for (int k = 0; k < list->count; k++) {
    dn_hook *h = list->items[k];
    if (owner) {
      for (int i = 0; i < h->n; i++) {
        if (h->nodes[i] != owner) continue;
        h->nodes[i] = NULL;
        h->live--;
      }
    } else {
      h->live--;
    }
    if (h->live <= 0) dn_hook_remove(h);
    dn_hook_release(h);
  }
  if (list->leaf) leaf_lists--;
  dn_tensor_release(list->staged);
  dn_free(list->items);
  dn_free(list);
}

bool dn_hook_list_live(const dn_hook_list *list) {
  for (int k = 0; k < list->count; k++)
    if (list->items[k]->fn) return true;
  return false;
}

int dn_hook_list_live_count(const dn_hook_list *list) {
  int live = 0;
  for (int k = 0; list && k < list->count; k++) live += list->items[k]->fn != NULL;
  return live;
}

/* --- running ----------------------------------------------------------------------------- */

static dn_status check_replacement(int n, int i, const dn_tensor *grad, const dn_tensor *rep) {
  char gs[128], rs[128];
  if (!grad)
    return dn_fail(DN_EINVAL, "backward: a hook returned a gradient for tensor %d of %d, which received none",
                   i + 1, n);
  if (dn_same_shape(grad, rep) && rep->dtype == DN_F32) return DN_OK;
  return dn_fail(DN_ESHAPE, "backward: a hook returned a gradient of shape %s (%s) for a tensor of shape %s",
                 dn_shape_str(rep, rs, sizeof rs), dn_dtype_name(rep->dtype), dn_shape_str(grad, gs, sizeof gs));
}

/* Calls h on grads; reps[i] gets each checked replacement (new references), all NULL on failure. */
static dn_status call_hook(dn_hook *h, dn_tensor *const *grads, dn_tensor **reps) {
  int n = h->n;
  memset(reps, 0, (size_t)n * sizeof *reps);
  h->refcount++;   /* the hook may drop the handle and remove itself */
  h->running++;
  dn_status st = h->fn(h->userdata, n, grads, reps);
  h->running--;
  for (int i = 0; i < n && !st; i++)
    if (reps[i]) st = check_replacement(n, i, grads[i], reps[i]);
  if (st) {
    for (int i = 0; i < n; i++) {
      dn_tensor_release(reps[i]);
      reps[i] = NULL;
    }
  }
  if (!h->fn && !h->running) free_userdata(h);   /* removed during the call */
  dn_hook_release(h);
  return st;
}

/* Runs group hook h on its nodes' gradients (unless none has one yet) and puts the replacements in the
   nodes. Member nodes freed during the call (a garbage collector running in the hook) are skipped. */
static dn_status run_on_nodes(dn_hook *h, uint64_t backward) {
  int n = h->n;
  dn_tensor *inline_buf[8];
  dn_tensor **grads = inline_buf;
  if (2 * n > 8) {
    grads = dn_alloc(2 * (size_t)n * sizeof *grads);
    if (!grads) return dn_fail(DN_ENOMEM, "backward: out of memory running a hook");
  }
  dn_tensor **reps = grads + n;
  bool any = false;
  dn_status st = DN_OK;
  for (int i = 0; i < n && !st; i++) {
    grads[i] = h->nodes[i] ? h->nodes[i]->grad : NULL;
    any = any || grads[i];
    if (grads[i]) st = dn_deferred_materialize(grads[i]);   /* hooks see values (deferred.h) */
  }
  if (!st && any) {
    h->ran = backward;
    st = call_hook(h, grads, reps);
    for (int i = 0; i < n && !st; i++) {
      if (!reps[i]) continue;
      if (h->nodes[i]) {
        dn_tensor_release(h->nodes[i]->grad);
        h->nodes[i]->grad = reps[i];
      } else {
        dn_tensor_release(reps[i]);
      }
    }
  }
  if (grads != inline_buf) dn_free(grads);
  return st;
}

/* The list's hooks run by position up to the count at the start: a hook registered by a hook waits
   for the next backward, and removals only clear fn (no pruning while running). */
dn_status dn_hook_list_run_node(dn_hook_list *list, uint64_t backward) {
  dn_status st = DN_OK;
  int count = list->count;
  list->running++;
  for (int k = 0; k < count && !st; k++) {
    dn_hook *h = list->items[k];
    if (h->fn && h->ran != backward) st = run_on_nodes(h, backward);
  }
  list->running--;
  return st;
}

dn_status dn_hook_list_run_leaf(dn_hook_list *list, dn_tensor **grad) {
  dn_status st = DN_OK;
  int count = list->count;
  list->running++;
  for (int k = 0; k < count && !st; k++) {
    dn_hook *h = list->items[k];
    if (!h->fn) continue;
    dn_tensor *rep;
    st = call_hook(h, grad, &rep);
    if (!st && rep) {
      dn_tensor_release(*grad);
      *grad = rep;
    }
  }
  list->running--;
  return st;
}

/* --- registration on a tensor ---------------------------------------------------------- */

dn_status dn_register_hook(dn_hook **handle, dn_tensor *t, dn_grad_hook_fn fn, void *userdata,
                           dn_hook_free_fn free_fn) {
  if (handle) *handle = NULL;
  if (!t || !fn) return dn_fail(DN_EINVAL, "register_hook: %s is NULL", t ? "the hook function" : "the tensor");
  if (!t->requires_grad)
    return dn_fail(DN_EINVAL, "register_hook: cannot register a hook on a tensor that does not require grad");
  dn_hook *h = dn_hook_new(1, fn, userdata, free_fn);
  if (!h) return dn_fail(DN_ENOMEM, "register_hook: out of memory");
  h->nodes[0] = t->grad_fn;
  h->live = 1;
  dn_status st = t->grad_fn ? dn_hook_list_add(&t->grad_fn->hooks, h, false) : dn_hook_list_add(&t->hooks, h, true);
  if (st) {
    dn_hook_abandon(h);
    dn_hook_release(h);
    return st;
  }
  if (handle) *handle = h;
  else dn_hook_release(h);
  return DN_OK;
}
