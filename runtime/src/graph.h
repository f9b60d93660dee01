/*
** The autograd graph as the kernels see it (not installed). Nodes and grad
** mode: graph.c; the engine (dn_backward): autograd.c.
**
** An op that supports autograd computes its output, then calls dn_record();
** when a node is returned it saves what its backward needs with
** dn_node_save() (a storage alias outside the graph plus the storage version,
** so in-place changes are caught) and any scalars in node->scalars/ints.
** The backward function receives d(loss)/d(output) and sets grad_in[i]
** (a new reference with input i's shape, or NULL for no gradient) for each
** input with node->needs_grad[i]; grad_in has n_inputs entries, all NULL on
** entry. Backward runs with grad mode off.
*/
#ifndef DROPNET_GRAPH_H
#define DROPNET_GRAPH_H

#include "dropnet/autograd.h"
#include "dropnet/tensor.h"

/* The inputs of the fixed-arity ops (linear: x, w, b). A node may have any
   number (cat and stack record one input per tensor joined); see below. */
#define DN_NODE_INPUTS 3
#define DN_NODE_SAVED 5

typedef struct dn_node dn_node;
typedef dn_status (*dn_backward_fn)(dn_node *node, dn_tensor *grad_out, dn_tensor **grad_in);

typedef struct dn_node_type {
  const char *name;
  dn_backward_fn backward;
  bool takes_deferred;   /* backward reads a deferred grad_out itself (deferred.h) */
} dn_node_type;

struct dn_node {
  int refcount;
  const dn_node_type *type;
  uint64_t seq;                                   /* creation order: inputs are older */
  /* n_inputs entries each, in the same allocation as the node (after it),
     so a node with 20 inputs costs one allocation as one with 1 does */
  int n_inputs;
  struct dn_node **next_fn;                       /* owned: the input's grad_fn, or NULL */
  dn_tensor **next_leaf;                          /* owned: the input if a leaf that requires grad */
  bool *needs_grad;
  dn_dtype *in_dtype;
  int *in_ndim;
  int64_t (*in_shape)[DN_MAX_DIMS];
  dn_tensor *saved[DN_NODE_SAVED];                /* owned aliases, outside the graph */
  uint32_t saved_version[DN_NODE_SAVED];
  double scalars[4];
  int64_t ints[DN_MAX_DIMS + 4];
  bool freed;                                     /* saved tensors released by backward */
  struct dn_hook_list *hooks;                     /* owned: hooks on the output's gradient, or NULL */
  /* used by dn_backward only */
  dn_tensor *grad;
  uint64_t visit;
};

/*
** Attaches a node of `type` to out when grad mode is on and an input requires
** grad; *node is then that node (owned by out), else NULL. Inputs may be NULL
** (not differentiable). On failure out is left without a node.
*/
dn_status dn_record(dn_tensor *out, const dn_node_type *type, int n_inputs, const dn_tensor *const *inputs,
                    dn_node **node);
/* Saves t (its data, not its graph) in slot; new reference kept by the node. */
dn_status dn_node_save(dn_node *node, int slot, const dn_tensor *t);
/* The tensor saved in slot (borrowed), or an error if it was modified in
   place since it was saved or the graph was freed. */
dn_status dn_node_saved(dn_node *node, int slot, dn_tensor **t);
/* Releases the node's saved tensors (after its backward without retain_graph). */
void dn_node_free_saved(dn_node *node);
void dn_node_release(dn_node *node);

/* grad summed down to shape (undoing broadcasting); new reference. A
   reduction, so it lives in reduce.c, for the backward functions. */
dn_status dn_sum_to_shape(dn_tensor **out, dn_tensor *grad, int ndim, const int64_t *shape);
/* The same, to input i's shape. */
dn_status dn_grad_for_input(dn_tensor **out, dn_node *node, int i, dn_tensor *grad);

#endif
