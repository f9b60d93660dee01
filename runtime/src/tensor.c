/*
** Tensors: lifetime, creation, queries and plain aliases (views outside the
** graph, for kernels). The bottom of the runtime's core: it calls no op, and
** graph.c only to release a tensor's node. Copies are copy.c's; recording
** views are view.c's.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "deferred.h"
#include "graph.h"
#include "hook.h"
#include "internal.h"
#include "shape.h"

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

void dn_tensor_release(dn_tensor *t) {
  if (!t || --t->refcount > 0) return;
  storage_release(t->storage);
  dn_tensor_release(t->grad);
  if (t->grad_fn) dn_node_release(t->grad_fn);
  if (t->hooks) dn_hook_list_free(t->hooks, NULL);
  dn_free(t->row_stats);
  dn_deferred_release(t->deferred);
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

/* A new contiguous tensor; its data allocated, or left NULL (!allocate: dn_tensor_new_deferred). */
static dn_status tensor_new(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape, bool allocate) {
  *out = NULL;
  int64_t numel = 0;
  dn_status st = dn_shape_check("tensor", ndim, shape, &numel);
  if (st) return st;
  if (dtype != DN_F32 && dtype != DN_I32 && dtype != DN_U8)
    return dn_fail(DN_ETYPE, "tensor: unknown dtype %d", (int)dtype);
  dn_storage *s = dn_alloc(sizeof *s);
  size_t nbytes = (size_t)numel * dn_dtype_size(dtype);
  void *data = s && allocate ? dn_alloc(nbytes) : NULL;
  if (!s || (allocate && !data)) {
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

dn_status dn_tensor_new(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape) {
  return tensor_new(out, dtype, ndim, shape, true);
}

dn_status dn_tensor_new_deferred(dn_tensor **out, int ndim, const int64_t *shape, dn_deferred *d) {
  dn_status st = tensor_new(out, DN_F32, ndim, shape, false);
  if (st) dn_deferred_release(d);
  else (*out)->deferred = d;
  return st;
}

/* Every element of a new contiguous t set to value (checked to fit). */
static dn_status fill_new(dn_tensor *t, double value) {
  if (!dn_value_fits(t->dtype, value))   /* worded as dn_fill_'s, which did this before */
    return dn_fail(DN_EINVAL, "fill_: value %g is not representable as %s", value, dn_dtype_name(t->dtype));
  int64_t n = dn_tensor_numel(t);
  if (t->dtype == DN_F32) {
    float *d = dn_tensor_data(t), v = (float)value;
    for (int64_t i = 0; i < n; i++) d[i] = v;
  } else {
    for (int64_t i = 0; i < n; i++) dn_store(t, i, value);
  }
  dn_bump_version(t);
  return DN_OK;
}

dn_status dn_tensor_full(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape, double value) {
  DN_FPMODE_SCOPE();
  dn_status st = dn_tensor_new(out, dtype, ndim, shape);
  if (st) return st;
  st = fill_new(*out, value);
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
  if ((*out)->storage->nbytes) memcpy((*out)->storage->data, data, (*out)->storage->nbytes);
  return DN_OK;
}

dn_status dn_tensor_from_doubles(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape,
                                 const double *values) {
  DN_FPMODE_SCOPE();
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
  DN_FPMODE_SCOPE();
  *out = NULL;
  if (!isfinite(start) || !isfinite(end) || !isfinite(step))
    return dn_fail(DN_EINVAL, "arange: start, end and step must be finite");
  if (step == 0) return dn_fail(DN_EINVAL, "arange: step must not be 0");
  if ((end - start) / step < 0)
    return dn_fail(DN_EINVAL, "arange: step %g goes away from end (start %g, end %g)", step, start, end);
  double count = ceil((end - start) / step);   /* may be inf: compare before converting */
  if (!(count <= (double)DN_MAX_NUMEL))
    return dn_fail(DN_EINVAL, "arange: %g elements from %g to %g by %g are too many (at most 2^40)", count, start,
                   end, step);
  int64_t n = (int64_t)count;
  /* The values run monotonically from the first to the last: an int dtype
     holds them all (truncated toward zero) when it holds both ends. */
  int64_t ends[2] = {0, n - 1};
  for (int k = 0; k < 2 && n > 0; k++) {
    double v = start + (double)ends[k] * step;
    if (!dn_truncation_fits(dtype, v))
      return dn_fail(DN_EINVAL, "arange: value %.10g at position %lld is not representable as %s", v,
                     (long long)ends[k] + 1, dn_dtype_name(dtype));
  }
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
  return dn_shape_text(buf, size, t->ndim, t->shape);
}

bool dn_same_shape(const dn_tensor *a, const dn_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

dn_status dn_index_offset(const char *op, const dn_tensor *t, const int64_t *index, int64_t *off) {
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
  dn_status st = dn_index_offset("get", t, index, &off);
  if (st) return st;
  *value = dn_load(t, off);
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

/* --- aliases ---------------------------------------------------------------- */

/* A view of t's storage with the given geometry. */
dn_status dn_tensor_alias(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape,
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

dn_status dn_expand_alias(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape) {
  *out = NULL;
  char sb[128];
  if (ndim < t->ndim || ndim > DN_MAX_DIMS)
    return dn_fail(DN_ESHAPE, "expand: cannot expand shape %s to %d dims", dn_shape_str(t, sb, sizeof sb), ndim);
  dn_status st = dn_shape_check("expand", ndim, shape, NULL);
  if (st) return st;
  int64_t stride[DN_MAX_DIMS];
  int lead = ndim - t->ndim;
  for (int d = 0; d < ndim; d++) {
    int64_t have = d >= lead ? t->shape[d - lead] : 1;
    int64_t want = shape[d];
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

dn_status dn_matrix_alias(dn_tensor **out, dn_tensor *t, int vector_dim) {
  if (t->ndim != 1) {
    *out = dn_tensor_retain(t);
    return DN_OK;
  }
  int64_t n = t->shape[0], s = t->stride[0];
  if (vector_dim == 0) return dn_tensor_alias(out, t, 2, (int64_t[]){1, n}, (int64_t[]){n * s, s}, t->offset);
  return dn_tensor_alias(out, t, 2, (int64_t[]){n, 1}, (int64_t[]){s, 1}, t->offset);
}

dn_status dn_transposed_alias(dn_tensor **out, dn_tensor *t) {
  int64_t shape[2] = {t->shape[1], t->shape[0]}, stride[2] = {t->stride[1], t->stride[0]};
  return dn_tensor_alias(out, t, 2, shape, stride, t->offset);
}
