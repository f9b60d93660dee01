/*
** Tensors: a view (shape, strides, offset) over refcounted storage.
**
** Ownership: every function that hands out a dn_tensor* through an `out`
** argument returns a new reference; the caller releases it with
** dn_tensor_release(). Arguments are borrowed. dn_tensor_release(NULL) is a
** no-op. Dims and indices are 0-based in C (the Lua bindings shift them).
** On failure *out is set to NULL and the status says why (dn_last_error()).
*/
#ifndef DROPNET_TENSOR_H
#define DROPNET_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dropnet/error.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

#define DN_MAX_DIMS 8

typedef enum dn_dtype { DN_F32 = 0, DN_I32 = 1, DN_U8 = 2 } dn_dtype;

typedef struct dn_storage {
  void *data;        /* 64-byte aligned, from the caching allocator */
  size_t nbytes;
  int refcount;
  uint32_t version;  /* bumped by in-place writes (autograd checks it) */
} dn_storage;

struct dn_node;      /* autograd graph node (autograd.h) */
struct dn_hook_list; /* gradient hooks (dn_register_hook, autograd.h) */
struct dn_row_stats; /* a batch norm's statistics of this tensor's rows, left by the op that wrote it */
struct dn_deferred;  /* a gradient's values, not yet written (inside dn_backward only) */

typedef struct dn_tensor {
  int refcount;
  dn_dtype dtype;
  int ndim;                       /* 0 for a scalar tensor */
  int64_t shape[DN_MAX_DIMS];
  int64_t stride[DN_MAX_DIMS];    /* in elements, may be 0 (expanded) */
  int64_t offset;                 /* in elements, into storage */
  dn_storage *storage;
  /* autograd: set by the ops that record a graph */
  bool requires_grad;
  struct dn_tensor *grad;         /* owned; NULL until backward reaches it */
  struct dn_node *grad_fn;        /* owned reference; NULL for leaves */
  struct dn_hook_list *hooks;     /* owned; a leaf's gradient hooks, NULL when none was ever set */
  /* owned, or NULL: the per-(n, c) sums a batch norm of this tensor needs, computed by the op that wrote it
     while the values were in cache (dn_conv2d_stats); valid while the storage's version is unchanged */
  struct dn_row_stats *row_stats;
  /* owned, or NULL: inside dn_backward, what writes this gradient's values when they are first needed */
  struct dn_deferred *deferred;
} dn_tensor;

DN_API const char *dn_dtype_name(dn_dtype dtype);   /* "float32", "int32", "uint8" */
/* Bytes per element: 4 for float32 and int32, 1 for uint8. */
DN_API size_t dn_dtype_size(dn_dtype dtype);
/* Parses "float32"/"float"/"int32"/"int"/"uint8"; false if unknown. */
DN_API bool dn_dtype_parse(const char *name, dn_dtype *dtype);

/* --- lifetime ----------------------------------------------------------- */
DN_API dn_tensor *dn_tensor_retain(dn_tensor *t);   /* returns t */
DN_API void dn_tensor_release(dn_tensor *t);

/* --- creation (contiguous, row-major) ------------------------------------ */
/* Uninitialized. shape may be NULL when ndim == 0. Sizes must be >= 0 and multiply, counting
   0 as 1, to at most 2^40 (the limit of every shape the runtime accepts). */
DN_API dn_status dn_tensor_new(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape);
/* Checks a shape as every function that accepts one does: 0..DN_MAX_DIMS dims, sizes >= 0,
   their product (0 counted as 1) at most 2^40. *numel (if not NULL) gets the element count.
   The message names op: "reshape: shape [9,6148914691236517206] is too large (...)". */
DN_API dn_status dn_shape_check(const char *op, int ndim, const int64_t *shape, int64_t *numel);
DN_API dn_status dn_tensor_full(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape, double value);
DN_API dn_status dn_tensor_zeros(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape);
DN_API dn_status dn_tensor_ones(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape);
/* Copies numel elements of `dtype` from data. */
DN_API dn_status dn_tensor_from_data(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape,
                                     const void *data);
/* Converts doubles into a new tensor of dtype (int32 requires integral values). */
DN_API dn_status dn_tensor_from_doubles(dn_tensor **out, dn_dtype dtype, int ndim, const int64_t *shape,
                                        const double *values);
/* [start, end) by step, like torch.arange. With an int dtype the values are truncated
   toward zero and must fit (else DN_EINVAL naming the value and its position). */
DN_API dn_status dn_tensor_arange(dn_tensor **out, dn_dtype dtype, double start, double end, double step);
/* [n, m] identity. */
DN_API dn_status dn_tensor_eye(dn_tensor **out, dn_dtype dtype, int64_t n, int64_t m);

/* --- queries -------------------------------------------------------------- */
DN_API int64_t dn_tensor_numel(const dn_tensor *t);
DN_API bool dn_tensor_is_contiguous(const dn_tensor *t);
/* Pointer to element [0,...,0] (storage data + offset). Borrowed. */
DN_API void *dn_tensor_data(const dn_tensor *t);
/* Shape as "[2,3]" into buf (always NUL-terminated); returns buf. */
DN_API char *dn_shape_str(const dn_tensor *t, char *buf, size_t size);
DN_API bool dn_same_shape(const dn_tensor *a, const dn_tensor *b);

/* Element access by a full index (t->ndim entries, 0-based, range-checked). */
DN_API dn_status dn_tensor_get(const dn_tensor *t, const int64_t *index, double *value);
DN_API dn_status dn_tensor_set(dn_tensor *t, const int64_t *index, double value);
/* The single value of a tensor with numel 1. */
DN_API dn_status dn_tensor_item(const dn_tensor *t, double *value);

/* --- views (no copy; share storage) --------------------------------------- */
/* shape may hold one -1, inferred. Fails if t's strides do not allow a view. */
DN_API dn_status dn_view(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape);
/* A view when possible, else a contiguous copy. */
DN_API dn_status dn_reshape(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape);
DN_API dn_status dn_transpose(dn_tensor **out, dn_tensor *t, int dim0, int dim1);
/* 2-D transpose (0-D and 1-D are returned as is, like torch.t). */
DN_API dn_status dn_t(dn_tensor **out, dn_tensor *t);
DN_API dn_status dn_permute(dn_tensor **out, dn_tensor *t, const int *dims);
DN_API dn_status dn_narrow(dn_tensor **out, dn_tensor *t, int dim, int64_t start, int64_t length);
/* Removes dimension dim by fixing it at index. */
DN_API dn_status dn_select(dn_tensor **out, dn_tensor *t, int dim, int64_t index);
DN_API dn_status dn_unsqueeze(dn_tensor **out, dn_tensor *t, int dim);
/* dim < 0: all size-1 dims. */
DN_API dn_status dn_squeeze(dn_tensor **out, dn_tensor *t, int dim);
/* Broadcast view to shape (stride 0 on expanded dims), as torch.expand.
   (Not "dn_expand": glibc's resolver exports that name.) */
DN_API dn_status dn_broadcast_to(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape);

/* --- copies ---------------------------------------------------------------- */
/* t itself (new reference) when already contiguous, else a contiguous copy. */
DN_API dn_status dn_contiguous(dn_tensor **out, dn_tensor *t);
DN_API dn_status dn_clone(dn_tensor **out, const dn_tensor *t);
/* Writes src (broadcast to dst's shape, converted to dst's dtype as dn_to_dtype does) into dst;
   nothing is written when a value does not fit. A src that shares memory with dst without being
   exactly dst (same elements, same order: a no-op) is DN_EINVAL, as is an expanded dst. */
DN_API dn_status dn_copy_(dn_tensor *dst, const dn_tensor *src);
DN_API dn_status dn_fill_(dn_tensor *t, double value);
/* fill_ with 0 (any dtype), as torch.Tensor.zero_: an error when t requires grad in grad mode. */
DN_API dn_status dn_zero_(dn_tensor *t);
/* Converted copy (or t itself if already of dtype). float->int truncates toward zero (2.7 -> 2,
   -2.7 -> -2); NaN, infinities and values whose truncation does not fit the dtype (3e9 to int32,
   300 or -1 to uint8) are DN_EINVAL "to_dtype: value V at position P is not representable as T". */
DN_API dn_status dn_to_dtype(dn_tensor **out, dn_tensor *t, dn_dtype dtype);

/* --- printing --------------------------------------------------------------- */
/* Human-readable text like PyTorch/Torch7 (values, then shape, dtype and autograd state; a 0-dim tensor on
   one line, "tensor(3.5000)"); large tensors are summarized with "...". Returns a malloc'd string the
   caller frees with free(); NULL on allocation failure. */
DN_API char *dn_tensor_format(const dn_tensor *t);

DN_END_DECLS

#endif
