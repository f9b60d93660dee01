/*
** Tensor lifetime, creation, views and copies.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Sizes above this are refused: they overflow int64 byte counts. */
#define MAX_NUMEL ((int64_t)1 << 40)

const char *dn_dtype_name(dn_dtype dtype) {
  switch (dtype) {
    case DN_F32: return "float32";
    case DN_I32: return "int32";
    case DN_U8: return "uint8";
  }
  return "unknown";
}

size_t dn_dtype_size(dn_dtype dtype) {
  switch (dtype) {
    case DN_F32: return 4;
    case DN_I32: return 4;
    case DN_U8: return 1;
  }
  return 0;
}

bool dn_dtype_parse(const char *name, dn_dtype *dtype) {
  if (!strcmp(name, "float32") || !strcmp(name, "float")) *dtype = DN_F32;
  else if (!strcmp(name, "int32") || !strcmp(name, "int")) *dtype = DN_I32;
  else if (!strcmp(name, "uint8") || !strcmp(name, "byte")) *dtype = DN_U8;
  else return false;
  return true;
}

/* --- lifetime ------------------------------------------------------------- */

static void storage_release(dn_storage *s) {
  if (s && --s->refcount == 0) {
    dn_free(s->data);
    dn_free(s);
  }
}

dn_tensor *dn_tensor_retain(dn_tensor *t) {
  if (t) t->refcount++;
  return t;
}

/* Autograd hooks: set by autograd.c so tensor.c needs no graph knowledge. */
void (*dn_node_release_hook)(struct dn_node *node) = NULL;

void dn_tensor_release(dn_tensor *t) {
  if (!t || --t->refcount > 0) return;
  storage_release(t->storage);
  dn_tensor_release(t->grad);
  if (t->grad_fn && dn_node_release_hook) dn_node_release_hook(t->grad_fn);
  dn_free(t);
}

/* A tensor header sharing `storage` (retained), no shape yet. */
static dn_tensor *header_new(dn_dtype dtype, dn_storage *storage) {
  dn_tensor *t = dn_alloc(sizeof *t);
  if (!t) return NULL;
  memset(t, 0, sizeof *t);
  t->refcount = 1;
  t->dtype = dtype;
  t->storage = storage;
  storage->refcount++;
  return t;
}

static void set_contiguous_strides(dn_tensor *t) {
  int64_t stride = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    t->stride[d] = stride;
    stride *= t->shape[d];
  }
}

static dn_status check_shape(const char *op, int ndim, const int64_t *shape, int64_t *numel) {
  if (ndim < 0 || ndim > DN_MAX_DIMS)
    return dn_fail(DN_EINVAL, "%s: number of dims must be 0..%d (got %d)", op, DN_MAX_DIMS, ndim);
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0)
      return dn_fail(DN_EINVAL, "%s: size of dim %d must be >= 0 (got %lld)", op, d + 1, (long long)shape[d]);
    if (shape[d] > 0 && n > MAX_NUMEL / shape[d])
      return dn_fail(DN_EINVAL, "%s: tensor too large", op);
    n *= shape[d];
  }
  *numel = n;
  return DN_OK;
}

dn_status dn_tensor_new(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape) {
  *out = NULL;
  int64_t numel = 0;
  dn_status st = check_shape("tensor", ndim, shape, &numel);
  if (st) return st;
  if (dtype != DN_F32 && dtype != DN_I32 && dtype != DN_U8)
    return dn_fail(DN_ETYPE, "tensor: unknown dtype %d", (int)dtype);
  dn_storage *s = dn_alloc(sizeof *s);
  size_t nbytes = (size_t)numel * dn_dtype_size(dtype);
  void *data = s ? dn_alloc(nbytes) : NULL;
  if (!data) {
    dn_free(s);
    return dn_fail(DN_ENOMEM, "tensor: out of memory allocating %zu bytes", nbytes);
  }
  s->data = data;
  s->nbytes = nbytes;
  s->refcount = 0;
  s->version = 0;
  dn_tensor *t = header_new(dtype, s);
  if (!t) {
    dn_free(data);
    dn_free(s);
    return dn_fail(DN_ENOMEM, "tensor: out of memory");
  }
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
  set_contiguous_strides(t);
  *out = t;
  return DN_OK;
}

dn_status dn_tensor_full(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape, double value) {
  dn_status st = dn_tensor_new(out, dtype, ndim, shape);
  if (st) return st;
  st = dn_fill_(*out, value);
  if (st) {
    dn_tensor_release(*out);
    *out = NULL;
  }
  return st;
}

dn_status dn_tensor_zeros(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape) {
  return dn_tensor_full(out, dtype, ndim, shape, 0.0);
}

dn_status dn_tensor_ones(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape) {
  return dn_tensor_full(out, dtype, ndim, shape, 1.0);
}

dn_status dn_tensor_from_data(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape,
                              const void *data) {
  dn_status st = dn_tensor_new(out, dtype, ndim, shape);
  if (st) return st;
  memcpy((*out)->storage->data, data, (*out)->storage->nbytes);
  return DN_OK;
}

dn_status dn_tensor_from_doubles(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape,
                                 const double *values) {
  dn_status st = dn_tensor_new(out, dtype, ndim, shape);
  if (st) return st;
  dn_tensor *t = *out;
  int64_t n = dn_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    double v = values[i];
    if (!dn_value_fits(dtype, v)) {
      dn_tensor_release(t);
      *out = NULL;
      return dn_fail(DN_EINVAL, "tensor: value %g at position %lld is not representable as %s", v,
                     (long long)i + 1, dn_dtype_name(dtype));
    }
    dn_store(t, i, v);
  }
  return DN_OK;
}

dn_status dn_tensor_arange(dn_tensor **out, dn_dtype dtype, double start, double end, double step) {
  *out = NULL;
  if (!isfinite(start) || !isfinite(end) || !isfinite(step))
    return dn_fail(DN_EINVAL, "arange: start, end and step must be finite");
  if (step == 0) return dn_fail(DN_EINVAL, "arange: step must not be 0");
  if ((end - start) / step < 0)
    return dn_fail(DN_EINVAL, "arange: step %g goes away from end (start %g, end %g)", step, start, end);
  int64_t n = (int64_t)ceil((end - start) / step);
  dn_status st = dn_tensor_new(out, dtype, 1, &n);
  if (st) return st;
  for (int64_t i = 0; i < n; i++) dn_store(*out, i, start + (double)i * step);
  return DN_OK;
}

dn_status dn_tensor_eye(dn_tensor **out, dn_dtype dtype, int64_t n, int64_t m) {
  int64_t shape[2] = {n, m};
  dn_status st = dn_tensor_zeros(out, dtype, 2, shape);
  if (st) return st;
  int64_t k = n < m ? n : m;
  for (int64_t i = 0; i < k; i++) dn_store(*out, i * m + i, 1.0);
  return DN_OK;
}

/* --- queries -------------------------------------------------------------- */

int64_t dn_tensor_numel(const dn_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
  return n;
}

bool dn_tensor_is_contiguous(const dn_tensor *t) {
  int64_t expected = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] != 1 && t->stride[d] != expected) return false;
    expected *= t->shape[d];
  }
  return true;
}

void *dn_tensor_data(const dn_tensor *t) {
  return (char *)t->storage->data + (size_t)t->offset * dn_dtype_size(t->dtype);
}

char *dn_shape_str(const dn_tensor *t, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  used += (size_t)snprintf(buf + used, size - used, "[");
  for (int d = 0; d < t->ndim && used < size; d++)
    used += (size_t)snprintf(buf + used, size - used, d ? ",%lld" : "%lld", (long long)t->shape[d]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

bool dn_same_shape(const dn_tensor *a, const dn_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

static dn_status index_offset(const char *op, const dn_tensor *t, const int64_t *index, int64_t *off) {
  int64_t o = t->offset;
  for (int d = 0; d < t->ndim; d++) {
    if (index[d] < 0 || index[d] >= t->shape[d]) {
      char sb[128];
      return dn_fail(DN_ERANGE, "%s: index %lld out of range for dim %d of size %lld (shape %s)", op,
                     (long long)index[d], d, (long long)t->shape[d], dn_shape_str(t, sb, sizeof sb));
    }
    o += index[d] * t->stride[d];
  }
  *off = o;
  return DN_OK;
}

dn_status dn_tensor_get(const dn_tensor *t, const int64_t *index, double *value) {
  int64_t off;
  dn_status st = index_offset("get", t, index, &off);
  if (st) return st;
  *value = dn_load(t, off);
  return DN_OK;
}

dn_status dn_tensor_set(dn_tensor *t, const int64_t *index, double value) {
  int64_t off;
  dn_status st = index_offset("set", t, index, &off);
  if (st) return st;
  if (!dn_value_fits(t->dtype, value))
    return dn_fail(DN_EINVAL, "set: value %g is not representable as %s", value, dn_dtype_name(t->dtype));
  dn_store(t, off, value);
  dn_bump_version(t);
  return DN_OK;
}

dn_status dn_tensor_item(const dn_tensor *t, double *value) {
  if (dn_tensor_numel(t) != 1) {
    char sb[128];
    return dn_fail(DN_ESHAPE, "item: tensor must have exactly one element (shape %s)",
                   dn_shape_str(t, sb, sizeof sb));
  }
  *value = dn_load(t, t->offset);
  return DN_OK;
}

/* --- views ----------------------------------------------------------------- */

/* A view of t's storage with the given geometry. */
static dn_status make_view(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape,
                           const int64_t *stride, int64_t offset) {
  dn_tensor *v = header_new(t->dtype, t->storage);
  if (!v) {
    *out = NULL;
    return dn_fail(DN_ENOMEM, "view: out of memory");
  }
  v->ndim = ndim;
  for (int d = 0; d < ndim; d++) {
    v->shape[d] = shape[d];
    v->stride[d] = stride[d];
  }
  v->offset = offset;
  *out = v;
  return DN_OK;
}

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
  return make_view(out, t, ndim, resolved, stride, t->offset);
}

dn_status dn_reshape(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape) {
  *out = NULL;
  int64_t resolved[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  dn_status st = infer_shape("reshape", t, ndim, shape, resolved);
  if (st) return st;
  if (view_strides(t, ndim, resolved, stride)) return make_view(out, t, ndim, resolved, stride, t->offset);
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
  return make_view(out, t, t->ndim, shape, stride, t->offset);
}

dn_status dn_t(dn_tensor **out, dn_tensor *t) {
  if (t->ndim > 2) {
    *out = NULL;
    return dn_fail(DN_EINVAL, "t: expects a tensor with at most 2 dims (got %d); use transpose", t->ndim);
  }
  if (t->ndim < 2) return make_view(out, t, t->ndim, t->shape, t->stride, t->offset);
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
  return make_view(out, t, t->ndim, shape, stride, t->offset);
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
  return make_view(out, t, t->ndim, shape, t->stride, t->offset + start * t->stride[dim]);
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
  return make_view(out, t, n, shape, stride, t->offset + index * t->stride[dim]);
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
  return make_view(out, t, n, shape, stride, t->offset);
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
  return make_view(out, t, n, shape, stride, t->offset);
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
  return make_view(out, t, ndim, shape, stride, t->offset);
}

/* --- copies ----------------------------------------------------------------- */

dn_status dn_contiguous(dn_tensor **out, dn_tensor *t) {
  if (dn_tensor_is_contiguous(t)) {
    *out = dn_tensor_retain(t);
    return DN_OK;
  }
  return dn_clone(out, t);
}

dn_status dn_clone(dn_tensor **out, const dn_tensor *t) {
  dn_status st = dn_tensor_new(out, t->dtype, t->ndim, t->shape);
  if (st) return st;
  st = dn_copy_(*out, t);
  if (st) {
    dn_tensor_release(*out);
    *out = NULL;
  }
  return st;
}

dn_status dn_to_dtype(dn_tensor **out, dn_tensor *t, dn_dtype dtype) {
  if (t->dtype == dtype) {
    *out = dn_tensor_retain(t);
    return DN_OK;
  }
  dn_status st = dn_tensor_new(out, dtype, t->ndim, t->shape);
  if (st) return st;
  st = dn_copy_(*out, t);
  if (st) {
    dn_tensor_release(*out);
    *out = NULL;
  }
  return st;
}
