/*
** Views: tensors that share their base's storage with another geometry
** (view, reshape, transpose, permute, narrow, select, unsqueeze, squeeze,
** broadcast_to). None of them copies, except reshape when it must.
*/
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Resolves one -1 in shape against numel; checks the product. */
static dn_status infer_shape(const char *op, const dn_tensor *t, int ndim, const int64_t *shape,
                             int64_t *resolved) {
  if (ndim < 0 || ndim > DN_MAX_DIMS)
    return dn_fail(DN_EINVAL, "%s: number of dims must be 0..%d (got %d)", op, DN_MAX_DIMS, ndim);
  int64_t numel = dn_tensor_numel(t), known = 1;
  int infer = -1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == -1) {
      if (infer >= 0) return dn_fail(DN_EINVAL, "%s: only one size may be -1", op);
      infer = d;
    } else if (shape[d] < 0) {
      return dn_fail(DN_EINVAL, "%s: size of dim %d must be >= 0 or -1 (got %lld)", op, d + 1,
                     (long long)shape[d]);
    } else {
      known *= shape[d];
    }
    resolved[d] = shape[d];
  }
  char sb[128];
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      return dn_fail(DN_ESHAPE, "%s: cannot infer -1 for %lld elements (shape %s)", op, (long long)numel,
                     dn_shape_str(t, sb, sizeof sb));
    resolved[infer] = numel / known;
    known *= resolved[infer];
  }
  if (known != numel) {
    char want[128] = "[";
    size_t used = 1;
    for (int d = 0; d < ndim && used < sizeof want; d++)
      used += (size_t)snprintf(want + used, sizeof want - used, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (used < sizeof want) snprintf(want + used, sizeof want - used, "]");
    return dn_fail(DN_ESHAPE, "%s: shape %s does not fit %lld elements of a tensor of shape %s", op, want,
                   (long long)numel, dn_shape_str(t, sb, sizeof sb));
  }
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
  return dn_tensor_alias(out, t, ndim, resolved, stride, t->offset);
}

dn_status dn_reshape(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape) {
  *out = NULL;
  int64_t resolved[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  dn_status st = infer_shape("reshape", t, ndim, shape, resolved);
  if (st) return st;
  if (view_strides(t, ndim, resolved, stride)) return dn_tensor_alias(out, t, ndim, resolved, stride, t->offset);
  dn_tensor *c;
  st = dn_clone(&c, t);
  if (st) return st;
  st = dn_view(out, c, ndim, resolved);
  dn_tensor_release(c);
  return st;
}

dn_status dn_transpose(dn_tensor **out, dn_tensor *t, int dim0, int dim1) {
  *out = NULL;
  if (!dn_wrap_dim(&dim0, t->ndim) || !dn_wrap_dim(&dim1, t->ndim) || t->ndim == 0)
    return dn_fail(DN_EINVAL, "transpose: dims %d and %d out of range for a %d-D tensor", dim0, dim1, t->ndim);
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  memcpy(stride, t->stride, sizeof stride);
  shape[dim0] = t->shape[dim1];
  shape[dim1] = t->shape[dim0];
  stride[dim0] = t->stride[dim1];
  stride[dim1] = t->stride[dim0];
  return dn_tensor_alias(out, t, t->ndim, shape, stride, t->offset);
}

dn_status dn_t(dn_tensor **out, dn_tensor *t) {
  if (t->ndim > 2) {
    *out = NULL;
    return dn_fail(DN_EINVAL, "t: expects a tensor with at most 2 dims (got %d); use transpose", t->ndim);
  }
  if (t->ndim < 2) return dn_tensor_alias(out, t, t->ndim, t->shape, t->stride, t->offset);
  return dn_transpose(out, t, 0, 1);
}

dn_status dn_permute(dn_tensor **out, dn_tensor *t, const int *dims) {
  *out = NULL;
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  bool seen[DN_MAX_DIMS] = {false};
  for (int d = 0; d < t->ndim; d++) {
    int s = dims[d];
    if (!dn_wrap_dim(&s, t->ndim) || seen[s])
      return dn_fail(DN_EINVAL, "permute: dims must be a permutation of 0..%d", t->ndim - 1);
    seen[s] = true;
    shape[d] = t->shape[s];
    stride[d] = t->stride[s];
  }
  return dn_tensor_alias(out, t, t->ndim, shape, stride, t->offset);
}

dn_status dn_narrow(dn_tensor **out, dn_tensor *t, int dim, int64_t start, int64_t length) {
  *out = NULL;
  char sb[128];
  if (t->ndim == 0 || !dn_wrap_dim(&dim, t->ndim))
    return dn_fail(DN_EINVAL, "narrow: dim %d out of range for a %d-D tensor", dim, t->ndim);
  if (start < 0 || length < 0 || start + length > t->shape[dim])
    return dn_fail(DN_ERANGE, "narrow: range [%lld, %lld) out of bounds for dim %d of shape %s", (long long)start,
                   (long long)(start + length), dim, dn_shape_str(t, sb, sizeof sb));
  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  shape[dim] = length;
  return dn_tensor_alias(out, t, t->ndim, shape, t->stride, t->offset + start * t->stride[dim]);
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
  return dn_tensor_alias(out, t, n, shape, stride, t->offset + index * t->stride[dim]);
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
  return dn_tensor_alias(out, t, n, shape, stride, t->offset);
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
  return dn_tensor_alias(out, t, n, shape, stride, t->offset);
}

dn_status dn_broadcast_to(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape) {
  *out = NULL;
  char sb[128];
  if (ndim < t->ndim || ndim > DN_MAX_DIMS)
    return dn_fail(DN_ESHAPE, "expand: cannot expand shape %s to %d dims", dn_shape_str(t, sb, sizeof sb), ndim);
  int64_t stride[DN_MAX_DIMS];
  int lead = ndim - t->ndim;
  for (int d = 0; d < ndim; d++) {
    int64_t have = d >= lead ? t->shape[d - lead] : 1;
    int64_t want = shape[d];
    if (want < 0)
      return dn_fail(DN_EINVAL, "expand: size of dim %d must be >= 0 (got %lld)", d + 1, (long long)want);
    if (have == want) {
      stride[d] = d >= lead ? t->stride[d - lead] : 0;
    } else if (have == 1) {
      stride[d] = 0;
    } else {
      return dn_fail(DN_ESHAPE, "expand: size %lld of dim %d of shape %s cannot become %lld", (long long)have,
                     d - lead + 1, dn_shape_str(t, sb, sizeof sb), (long long)want);
    }
  }
  return dn_tensor_alias(out, t, ndim, shape, stride, t->offset);
}

