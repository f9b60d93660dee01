/*
** Views: tensors that share their base's storage with another geometry
** (view, reshape, transpose, permute, narrow, select, unsqueeze, squeeze,
** broadcast_to). None of them copies, except reshape when it must.
**
** Every view records a node, so gradients flow back through it to the base:
** the backward maps the view's gradient to the base's shape (reshape back,
** transpose back, scatter into zeros, sum away broadcast dims).
*/
#include <stdio.h>
#include <string.h>

#include "graph.h"
#include "internal.h"
#include "shape.h"

/* Makes the alias with this geometry and records `type` on it; *node gets the node (or NULL). */
static dn_status make_view(dn_tensor **out, const dn_node_type *type, dn_tensor *t, int ndim, const int64_t *shape,
                           const int64_t *stride, int64_t offset, dn_node **node) {
  *node = NULL;
  dn_status st = dn_tensor_alias(out, t, ndim, shape, stride, offset);
  if (st) return st;
  st = dn_record(*out, type, 1, (const dn_tensor *[]){t}, node);
  if (st) {
    dn_tensor_release(*out);
    *out = NULL;
  }
  return st;
}

/* view, reshape, unsqueeze, squeeze: the gradient is the view's gradient in the base's shape. */
static dn_status reshape_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  return dn_reshape(&grad_in[0], grad, node->in_ndim[0], node->in_shape[0]);
}
static const dn_node_type view_node = {.name = "view", .backward = reshape_backward};
static const dn_node_type reshape_node = {.name = "reshape", .backward = reshape_backward};
static const dn_node_type unsqueeze_node = {.name = "unsqueeze", .backward = reshape_backward};
static const dn_node_type squeeze_node = {.name = "squeeze", .backward = reshape_backward};

/* Resolves one -1 in shape against t's numel; checks the sizes and their product. */
static dn_status infer_shape(const char *op, const dn_tensor *t, int ndim, const int64_t *shape,
                             int64_t *resolved) {
  if (ndim < 0 || ndim > DN_MAX_DIMS)
    return dn_fail(DN_EINVAL, "%s: number of dims must be 0..%d (got %d)", op, DN_MAX_DIMS, ndim);
  int64_t numel = dn_tensor_numel(t), known = 1;
  int infer = -1;
  for (int d = 0; d < ndim; d++) {
    resolved[d] = shape[d];
    if (shape[d] == -1) {
      if (infer >= 0) return dn_fail(DN_EINVAL, "%s: only one size may be -1", op);
      infer = d;
      resolved[d] = 1;   /* checked below as a size of 1 */
    }
  }
  char sb[128], want[200];
  dn_shape_text(want, sizeof want, ndim, shape);
  dn_status st = dn_shape_check(op, ndim, resolved, &known);
  if (st) return st;
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      return dn_fail(DN_ESHAPE, "%s: cannot infer -1 in %s for %lld elements (shape %s)", op, want,
                     (long long)numel, dn_shape_str(t, sb, sizeof sb));
    resolved[infer] = numel / known;
    known = numel;
  }
  if (known != numel)
    return dn_fail(DN_ESHAPE, "%s: shape %s does not fit %lld elements of a tensor of shape %s", op, want,
                   (long long)numel, dn_shape_str(t, sb, sizeof sb));
  return DN_OK;
}

/*
** Strides for viewing t as `shape` without a copy, or false. Walks groups
** of t's dims that are contiguous with each other (as torch's computeStride).
*/
static bool view_strides(const dn_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
  int64_t numel = dn_tensor_numel(t);
  if (numel == 0 || t->ndim == 0) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
      stride[d] = s;
      s *= shape[d] > 0 ? shape[d] : 1;
    }
    return true;
  }
  int view_d = ndim - 1;
  int64_t chunk_base_stride = t->stride[t->ndim - 1];
  int64_t tensor_numel = 1, view_numel = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    tensor_numel *= t->shape[d];
    if (d == 0 || (t->shape[d - 1] != 1 && t->stride[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        stride[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = t->stride[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

dn_status dn_view(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape) {
  *out = NULL;
  int64_t resolved[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  dn_status st = infer_shape("view", t, ndim, shape, resolved);
  if (st) return st;
  if (!view_strides(t, ndim, resolved, stride)) {
    char sb[128];
    return dn_fail(DN_ESHAPE,
                   "view: tensor of shape %s is not contiguous enough for this view; use reshape or contiguous",
                   dn_shape_str(t, sb, sizeof sb));
  }
  dn_node *node;
  return make_view(out, &view_node, t, ndim, resolved, stride, t->offset, &node);
}

dn_status dn_reshape(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape) {
  *out = NULL;
  int64_t resolved[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  dn_status st = infer_shape("reshape", t, ndim, shape, resolved);
  if (st) return st;
  dn_node *node;
  if (view_strides(t, ndim, resolved, stride))
    return make_view(out, &reshape_node, t, ndim, resolved, stride, t->offset, &node);
  /* a copy (recording clone), then a view of the copy (recording reshape) */
  dn_tensor *c;
  st = dn_clone(&c, t);
  if (st) return st;
  if (!view_strides(c, ndim, resolved, stride))   /* c is contiguous: cannot happen */
    st = dn_fail(DN_ESHAPE, "reshape: internal error: no strides for a contiguous copy");
  else
    st = make_view(out, &reshape_node, c, ndim, resolved, stride, c->offset, &node);
  dn_tensor_release(c);
  return st;
}

/* The ints of a transpose node: the two dims. */
enum { TRANSPOSE_DIM0, TRANSPOSE_DIM1 };

/* The gradient of a transpose is the gradient transposed back. */
static dn_status transpose_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (node->in_ndim[0] < 2) {   /* t of a 0-D or 1-D tensor is the tensor itself */
    grad_in[0] = dn_tensor_retain(grad);
    return DN_OK;
  }
  return dn_transpose(&grad_in[0], grad, (int)node->ints[TRANSPOSE_DIM0], (int)node->ints[TRANSPOSE_DIM1]);
}
static const dn_node_type transpose_node = {.name = "transpose", .backward = transpose_backward};
static const dn_node_type t_node = {.name = "t", .backward = transpose_backward};

static dn_status transpose_as(dn_tensor **out, const dn_node_type *type, dn_tensor *t, int dim0, int dim1) {
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  memcpy(stride, t->stride, sizeof stride);
  shape[dim0] = t->shape[dim1];
  shape[dim1] = t->shape[dim0];
  stride[dim0] = t->stride[dim1];
  stride[dim1] = t->stride[dim0];
  dn_node *node;
  dn_status st = make_view(out, type, t, t->ndim, shape, stride, t->offset, &node);
  if (node) {
    node->ints[TRANSPOSE_DIM0] = dim0;
    node->ints[TRANSPOSE_DIM1] = dim1;
  }
  return st;
}

dn_status dn_transpose(dn_tensor **out, dn_tensor *t, int dim0, int dim1) {
  *out = NULL;
  if (!dn_wrap_dim(&dim0, t->ndim) || !dn_wrap_dim(&dim1, t->ndim) || t->ndim == 0)
    return dn_fail(DN_EINVAL, "transpose: dims %d and %d out of range for a %d-D tensor", dim0, dim1, t->ndim);
  return transpose_as(out, &transpose_node, t, dim0, dim1);
}

dn_status dn_t(dn_tensor **out, dn_tensor *t) {
  *out = NULL;
  if (t->ndim > 2)
    return dn_fail(DN_EINVAL, "t: expects a tensor with at most 2 dims (got %d); use transpose", t->ndim);
  if (t->ndim < 2) {
    dn_node *node;
    return make_view(out, &t_node, t, t->ndim, t->shape, t->stride, t->offset, &node);
  }
  return transpose_as(out, &t_node, t, 0, 1);
}

/* The ints of a permute node from PERMUTE_DIMS on: the forward dims, wrapped (one per input dim). */
enum { PERMUTE_DIMS };

/* Undoes the permutation. */
static dn_status permute_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  int inverse[DN_MAX_DIMS];
  for (int d = 0; d < node->in_ndim[0]; d++) inverse[node->ints[PERMUTE_DIMS + d]] = d;
  return dn_permute(&grad_in[0], grad, inverse);
}
static const dn_node_type permute_node = {.name = "permute", .backward = permute_backward};

dn_status dn_permute(dn_tensor **out, dn_tensor *t, const int *dims) {
  *out = NULL;
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  int wrapped[DN_MAX_DIMS];
  bool seen[DN_MAX_DIMS] = {false};
  for (int d = 0; d < t->ndim; d++) {
    int s = dims[d];
    if (!dn_wrap_dim(&s, t->ndim) || seen[s])
      return dn_fail(DN_EINVAL, "permute: dims must be a permutation of 0..%d", t->ndim - 1);
    seen[s] = true;
    wrapped[d] = s;
    shape[d] = t->shape[s];
    stride[d] = t->stride[s];
  }
  dn_node *node;
  dn_status st = make_view(out, &permute_node, t, t->ndim, shape, stride, t->offset, &node);
  if (node)
    for (int d = 0; d < t->ndim; d++) node->ints[PERMUTE_DIMS + d] = wrapped[d];
  return st;
}

/* The ints of a narrow or select node: the dim, then the start (narrow) or the index (select). */
enum { WINDOW_DIM, WINDOW_START, WINDOW_INDEX = WINDOW_START };

/*
** narrow and select: the base's gradient is zero outside the window and the
** view's gradient inside it.
*/
static dn_status scatter_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in, bool is_select) {
  dn_tensor *full, *window;
  dn_status st = dn_tensor_zeros(&full, DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (st) return st;
  int dim = (int)node->ints[WINDOW_DIM];
  st = is_select ? dn_select(&window, full, dim, node->ints[WINDOW_INDEX])
                 : dn_narrow(&window, full, dim, node->ints[WINDOW_START], grad->shape[dim]);
  if (!st) st = dn_copy_into(window, grad);
  dn_tensor_release(window);
  if (st) {
    dn_tensor_release(full);
    return st;
  }
  grad_in[0] = full;
  return DN_OK;
}
static dn_status narrow_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  return scatter_backward(node, grad, grad_in, false);
}
static dn_status select_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  return scatter_backward(node, grad, grad_in, true);
}
static const dn_node_type narrow_node = {.name = "narrow", .backward = narrow_backward};
static const dn_node_type select_node = {.name = "select", .backward = select_backward};

dn_status dn_narrow(dn_tensor **out, dn_tensor *t, int dim, int64_t start, int64_t length) {
  *out = NULL;
  char sb[128];
  if (t->ndim == 0 || !dn_wrap_dim(&dim, t->ndim))
    return dn_fail(DN_EINVAL, "narrow: dim %d out of range for a %d-D tensor", dim, t->ndim);
  if (!dn_range_fits(start, length, t->shape[dim]))
    return dn_fail(DN_ERANGE, "narrow: start %lld and length %lld out of bounds for dim %d of shape %s",
                   (long long)start, (long long)length, dim, dn_shape_str(t, sb, sizeof sb));
  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  shape[dim] = length;
  dn_node *node;
  dn_status st = make_view(out, &narrow_node, t, t->ndim, shape, t->stride, t->offset + start * t->stride[dim], &node);
  if (node) {
    node->ints[WINDOW_DIM] = dim;
    node->ints[WINDOW_START] = start;
  }
  return st;
}

dn_status dn_select(dn_tensor **out, dn_tensor *t, int dim, int64_t index) {
  *out = NULL;
  char sb[128];
  if (t->ndim == 0 || !dn_wrap_dim(&dim, t->ndim))
    return dn_fail(DN_EINVAL, "select: dim %d out of range for a %d-D tensor", dim, t->ndim);
  if (index < 0 || index >= t->shape[dim])
    return dn_fail(DN_ERANGE, "select: index %lld out of range for dim %d of shape %s", (long long)index, dim,
                   dn_shape_str(t, sb, sizeof sb));
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  int n = 0;
  for (int d = 0; d < t->ndim; d++) {
    if (d == dim) continue;
    shape[n] = t->shape[d];
    stride[n] = t->stride[d];
    n++;
  }
  dn_node *node;
  dn_status st = make_view(out, &select_node, t, n, shape, stride, t->offset + index * t->stride[dim], &node);
  if (node) {
    node->ints[WINDOW_DIM] = dim;
    node->ints[WINDOW_INDEX] = index;
  }
  return st;
}

dn_status dn_unsqueeze(dn_tensor **out, dn_tensor *t, int dim) {
  *out = NULL;
  int d = dim < 0 ? dim + t->ndim + 1 : dim;
  if (d < 0 || d > t->ndim || t->ndim >= DN_MAX_DIMS)
    return dn_fail(DN_EINVAL, "unsqueeze: dim %d out of range for a %d-D tensor", dim, t->ndim);
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  int n = 0;
  for (int i = 0; i <= t->ndim; i++) {
    if (i == d) {
      shape[n] = 1;
      stride[n] = i < t->ndim ? t->stride[i] * t->shape[i] : 1;
      n++;
    }
    if (i < t->ndim) {
      shape[n] = t->shape[i];
      stride[n] = t->stride[i];
      n++;
    }
  }
  dn_node *node;
  return make_view(out, &unsqueeze_node, t, n, shape, stride, t->offset, &node);
}

dn_status dn_squeeze(dn_tensor **out, dn_tensor *t, int dim) {
  *out = NULL;
  if (dim >= 0 && dim >= t->ndim)
    return dn_fail(DN_EINVAL, "squeeze: dim %d out of range for a %d-D tensor", dim, t->ndim);
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  int n = 0;
  for (int d = 0; d < t->ndim; d++) {
    bool drop = t->shape[d] == 1 && (dim < 0 || d == dim);
    if (drop) continue;
    shape[n] = t->shape[d];
    stride[n] = t->stride[d];
    n++;
  }
  dn_node *node;
  return make_view(out, &squeeze_node, t, n, shape, stride, t->offset, &node);
}

/* Broadcasting repeats elements, so their gradients add up: sum back to the base's shape. */
static dn_status expand_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  return dn_grad_for_input(&grad_in[0], node, 0, grad);
}
static const dn_node_type expand_node = {.name = "expand", .backward = expand_backward};

dn_status dn_broadcast_to(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape) {
  dn_status st = dn_expand_alias(out, t, ndim, shape);
  if (st) return st;
  dn_node *node;
  st = dn_record(*out, &expand_node, 1, (const dn_tensor *[]){t}, &node);
  if (st) {
    dn_tensor_release(*out);
    *out = NULL;
  }
  return st;
}
