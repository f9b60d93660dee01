/*
** Gradient hooks as the engine sees them (not installed). A hook watches n
** tensors; it sits in the list of each: a leaf's list is t->hooks, an op
** result's is its node's (node->hooks), since the node is what backward
** reaches. hook.c keeps the objects and runs them; the engine (autograd.c)
** decides when.
*/
#ifndef DROPNET_HOOK_H
#define DROPNET_HOOK_H

#include "dropnet/autograd.h"

struct dn_node;

struct dn_hook {
  int refcount;               /* one per list holding it, one per handle */
  dn_grad_hook_fn fn;         /* NULL once removed */
  void *userdata;
  dn_hook_free_fn free_fn;    /* NULL once it ran */
  int running;                /* calls under way: a removal then frees userdata after them */
  uint64_t ran;               /* the backward that ran it: a group runs once per backward */
  int n;                      /* tensors watched */
  int live;                   /* of them, not freed yet: at 0 the hook is removed */
  struct dn_node *nodes[];    /* per tensor, its node (NULL for a leaf's hook, or once freed) */
};

typedef struct dn_hook_list {
  dn_hook **items;            /* owned references in registration order; removed ones pruned lazily */
  int count, cap;
  int running;                /* > 0 while its hooks run: nothing is pruned then */
  bool leaf;
  /* a leaf's gradient during a backward: the sum over its uses, which its hooks see once */
  bool staging;
  size_t last;                /* position in the backward's order of the last node that feeds the leaf */
  dn_tensor *staged;          /* owned */
} dn_hook_list;

/* Frees list (from the release of its owner: a node, or a leaf when owner is NULL); hooks whose
   tensors are then all gone are removed. */
void dn_hook_list_free(dn_hook_list *list, const struct dn_node *owner);
/* Whether the list holds a hook that was not removed. */
bool dn_hook_list_live(const dn_hook_list *list);
/* How many of its hooks were not removed (0 for NULL). */
int dn_hook_list_live_count(const dn_hook_list *list);
/* Number of leaves that have a hook list: the engine stages leaf gradients only when it is not 0. */
long dn_hook_leaf_lists(void);
/* Runs the hooks of a node's list that have not run in backward `backward`, each with the current
   gradients of the tensors it watches (those reached so far), and puts their replacements in place. */
dn_status dn_hook_list_run_node(dn_hook_list *list, uint64_t backward);
/* Runs the hooks of a leaf's list on *grad (owned), replacing it by what they return. */
dn_status dn_hook_list_run_leaf(dn_hook_list *list, dn_tensor **grad);
/* A new hook watching n tensors (nodes all NULL, live 0), one reference held by the caller; NULL when
   out of memory. */
dn_hook *dn_hook_new(int n, dn_grad_hook_fn fn, void *userdata, dn_hook_free_fn free_fn);
/* Appends h (retained) to *list, made when NULL. */
dn_status dn_hook_list_add(dn_hook_list **list, dn_hook *h, bool leaf);
/* Undoes a registration that failed half way: h never runs and its free_fn never runs. */
void dn_hook_abandon(dn_hook *h);

#endif
