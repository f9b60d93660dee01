/*
** Joining tensors: cat and stack, forward and backward.
**
** The result is allocated once and each input copied into its place, so
** joining n tensors costs their total size whatever n is. Seen as [outer,
** total * inner] (total: the joined dim), the result's rows are made of one
** block per input; the blocks of all contiguous inputs are memcpy'd in one
** parallel pass, any other input goes through the strided copy into a plain
** alias of its slice. stack is cat of the inputs viewed with a new dim of
** size 1.
**
** Autograd: one node with an input per tensor (a node may have any number,
** graph.h). Its backward hands each input its slice of the incoming
** gradient as a view; the engine copies a view it keeps.
*/
#include <stdlib.h>
#include <string.h>

#include "dropnet/join.h"
#include "graph.h"
#include "internal.h"
#include "shape.h"

/* node->ints of a cat or stack node: the joined dim of the result, and whether it is a new one. */
enum { JOIN_DIM, JOIN_STACK };

/* 1-D with no element: cat skips it, PyTorch 1.13's legacy rule. */
static bool skipped_by_cat(const dn_tensor *t) { return t->ndim == 1 && t->shape[0] == 0; }

/* --- backward ------------------------------------------------------------------- */

/*
** Input i gets the slice of grad it filled: for cat [start, start + its size)
** of the dim, for stack the index start of the new dim (dropped). An input
** with no element gets an empty gradient and fills nothing: its size along
** the dim is 0 unless the whole result is empty.
*/
static dn_status join_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  int dim = (int)node->ints[JOIN_DIM];
  bool stack = node->ints[JOIN_STACK] != 0;
  int64_t start = 0;
  for (int i = 0; i < node->n_inputs; i++) {
    int ndim = node->in_ndim[i];
    const int64_t *shape = node->in_shape[i];
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= shape[d];
    dn_status st = DN_OK;
    if (numel == 0) {
      if (node->needs_grad[i]) st = dn_tensor_new(&grad_in[i], DN_F32, ndim, shape);
      if (st) return st;
      continue;
    }
    if (node->needs_grad[i]) {
      int64_t stride[DN_MAX_DIMS];
      for (int d = 0, g = 0; d < ndim; d++, g++) {
        if (stack && g == dim) g++;
        stride[d] = grad->stride[g];
      }
      st = dn_tensor_alias(&grad_in[i], grad, ndim, shape, stride, grad->offset + start * grad->stride[dim]);
      if (st) return st;
    }
    start += stack ? 1 : shape[dim];
  }
  return DN_OK;
}
static const dn_node_type cat_node = {.name = "cat", .backward = join_backward};
static const dn_node_type stack_node = {.name = "stack", .backward = join_backward};

/* --- forward -------------------------------------------------------------------- */

/* The blocks of the contiguous inputs: block (o, k) is bytes[k] bytes from
   src[k] + o * bytes[k] to at[k] into row o of the result. */
typedef struct block_job {
  char *out;
  size_t row_bytes;
  int count;
  const char **src;
  size_t *bytes, *at;
} block_job;

static void copy_blocks(const void *ctx, int64_t b0, int64_t b1) {
  const block_job *j = ctx;
  for (int64_t b = b0; b < b1; b++) {
    int64_t o = b / j->count;
    int k = (int)(b % j->count);
    memcpy(j->out + (size_t)o * j->row_bytes + j->at[k], j->src[k] + (size_t)o * j->bytes[k], j->bytes[k]);
  }
}

/*
** Copies parts[0..n) (each of result's shape but for dim; NULL: skipped)
** into result, one after the other along dim.
*/
static dn_status fill(const char *op, dn_tensor *result, dn_tensor *const *parts, int n, int dim) {
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < dim; d++) outer *= result->shape[d];
  for (int d = dim + 1; d < result->ndim; d++) inner *= result->shape[d];
  if (dn_tensor_numel(result) == 0) return DN_OK;
  size_t esize = dn_dtype_size(result->dtype);
  block_job job = {dn_tensor_data(result), (size_t)(result->shape[dim] * inner) * esize, 0, NULL, NULL, NULL};
  void *arrays = malloc((size_t)n * (sizeof *job.src + sizeof *job.bytes + sizeof *job.at));
  if (!arrays) return dn_fail(DN_ENOMEM, "%s: out of memory", op);
  job.src = arrays;
  job.bytes = (size_t *)(job.src + n);
  job.at = job.bytes + n;
  dn_status st = DN_OK;
  int64_t start = 0;
  for (int k = 0; k < n && !st; k++) {
    dn_tensor *part = parts[k];
    if (!part || dn_tensor_numel(part) == 0) continue;
    int64_t extent = part->shape[dim];
    if (dn_tensor_is_contiguous(part)) {
      job.src[job.count] = dn_tensor_data(part);
      job.bytes[job.count] = (size_t)(extent * inner) * esize;
      job.at[job.count] = (size_t)(start * inner) * esize;
      job.count++;
    } else {
      dn_tensor *slice;
      st = dn_tensor_alias(&slice, result, result->ndim, part->shape, result->stride,
                           result->offset + start * result->stride[dim]);
      if (!st) st = dn_copy_into_named(op, slice, part);
      dn_tensor_release(slice);
    }
    start += extent;
  }
  if (!st && job.count > 0) {
    int64_t blocks = outer * job.count;
    dn_parallel_rows(blocks, dn_tensor_numel(result) / blocks, copy_blocks, &job);
  }
  free(arrays);
  return st;
}

/* The common checks: at least one tensor, none NULL, one dtype. */
static dn_status check_list(const char *op, const dn_tensor *const *tensors, int n) {
  if (n < 1) return dn_fail(DN_EINVAL, "%s: expected a non-empty list of tensors (got %d)", op, n);
  for (int k = 0; k < n; k++)
    if (!tensors[k]) return dn_fail(DN_EINVAL, "%s: tensor %d of %d is NULL", op, k + 1, n);
  for (int k = 1; k < n; k++)
    if (tensors[k]->dtype != tensors[0]->dtype)
      return dn_fail(DN_ETYPE, "%s: tensor %d is %s but tensor 1 is %s (all must have one dtype; convert with to)",
                     op, k + 1, dn_dtype_name(tensors[k]->dtype), dn_dtype_name(tensors[0]->dtype));
  return DN_OK;
}

/* Records the node (inputs: the tensors as given) and hands result over. */
static dn_status finish(dn_tensor **out, dn_tensor *result, const dn_node_type *type,
                        const dn_tensor *const *tensors, int n, int dim, bool stack) {
  dn_node *node;
  dn_status st = dn_record(result, type, n, tensors, &node);
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  if (node) {
    node->ints[JOIN_DIM] = dim;
    node->ints[JOIN_STACK] = stack;
  }
  *out = result;
  return DN_OK;
}

dn_status dn_cat(dn_tensor **out, const dn_tensor *const *tensors, int n, int dim) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_list("cat", tensors, n);
  if (st) return st;
  int first = -1;   /* the first tensor not skipped: shapes and dim refer to it */
  for (int k = 0; k < n && first < 0; k++)
    if (!skipped_by_cat(tensors[k])) first = k;
  dn_tensor *result;
  if (first < 0) {   /* all skipped: PyTorch gives their shape, [0] */
    if ((st = dn_tensor_new(&result, tensors[0]->dtype, 1, (int64_t[]){0}))) return st;
    return finish(out, result, &cat_node, tensors, n, 0, false);
  }
  const dn_tensor *ref = tensors[first];
  char rs[128], ts[128];
  for (int k = 0; k < n; k++)
    if (tensors[k]->ndim == 0)
      return dn_fail(DN_EINVAL, "cat: tensor %d is 0-dim and cannot be concatenated (unsqueeze it, or use stack)",
                     k + 1);
  int d = dim;
  if (!dn_wrap_dim(&d, ref->ndim))
    return dn_fail(DN_EINVAL, "cat: dim %d out of range for %d-D tensors", dim, ref->ndim);
  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, ref->shape, sizeof shape);
  shape[d] = 0;
  for (int k = first; k < n; k++) {
    const dn_tensor *t = tensors[k];
    if (skipped_by_cat(t)) continue;
    if (t->ndim != ref->ndim)
      return dn_fail(DN_ESHAPE, "cat: tensor %d has %d dims (shape %s) but tensor %d has %d (shape %s)", k + 1,
                     t->ndim, dn_shape_str(t, ts, sizeof ts), first + 1, ref->ndim, dn_shape_str(ref, rs, sizeof rs));
    for (int e = 0; e < t->ndim; e++)
      if (e != d && t->shape[e] != ref->shape[e])
        return dn_fail(DN_ESHAPE,
                       "cat: tensor %d has shape %s but tensor %d has %s: sizes must match except along the "
                       "joined dim %d",
                       k + 1, dn_shape_str(t, ts, sizeof ts), first + 1, dn_shape_str(ref, rs, sizeof rs), d + 1);
    if (!dn_size_add(shape[d], t->shape[d], &shape[d]))
      return dn_fail(DN_ESHAPE, "cat: the joined dim would have more than %lld elements", (long long)DN_MAX_NUMEL);
  }
  if ((st = dn_tensor_new(&result, ref->dtype, ref->ndim, shape))) return dn_fail_as(st, "cat");
  /* fill takes the parts as it copies them: skipped ones are NULL */
  dn_tensor **parts = malloc((size_t)n * sizeof *parts);
  if (!parts) {
    dn_tensor_release(result);
    return dn_fail(DN_ENOMEM, "cat: out of memory");
  }
  for (int k = 0; k < n; k++) parts[k] = skipped_by_cat(tensors[k]) ? NULL : (dn_tensor *)tensors[k];
  st = fill("cat", result, parts, n, d);
  free(parts);
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  return finish(out, result, &cat_node, tensors, n, d, false);
}

dn_status dn_stack(dn_tensor **out, const dn_tensor *const *tensors, int n, int dim) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_list("stack", tensors, n);
  if (st) return st;
  const dn_tensor *ref = tensors[0];
  char rs[128], ts[128];
  for (int k = 1; k < n; k++)
    if (!dn_same_shape(tensors[k], ref))
      return dn_fail(DN_ESHAPE, "stack: tensor %d has shape %s but tensor 1 has %s (all must have one shape)", k + 1,
                     dn_shape_str(tensors[k], ts, sizeof ts), dn_shape_str(ref, rs, sizeof rs));
  if (ref->ndim >= DN_MAX_DIMS)
    return dn_fail(DN_EINVAL, "stack: tensors of %d dims would give %d (at most %d)", ref->ndim, ref->ndim + 1,
                   DN_MAX_DIMS);
  int d = dim;
  if (!dn_wrap_dim(&d, ref->ndim + 1))
    return dn_fail(DN_EINVAL, "stack: dim %d out of range for a result of %d dims", dim, ref->ndim + 1);
  int64_t shape[DN_MAX_DIMS], part_shape[DN_MAX_DIMS], part_stride[DN_MAX_DIMS];
  for (int e = 0, s = 0; e <= ref->ndim; e++) {
    shape[e] = e == d ? n : ref->shape[s];
    part_shape[e] = e == d ? 1 : ref->shape[s];
    if (e != d) s++;
  }
  dn_tensor *result;
  if ((st = dn_tensor_new(&result, ref->dtype, ref->ndim + 1, shape))) return dn_fail_as(st, "stack");
  /* each input as a plain alias with the new dim of size 1 */
  dn_tensor **parts = calloc((size_t)n, sizeof *parts);
  if (!parts) st = dn_fail(DN_ENOMEM, "stack: out of memory");
  for (int k = 0; k < n && !st; k++) {
    const dn_tensor *t = tensors[k];
    for (int e = 0, s = 0; e <= t->ndim; e++) part_stride[e] = e == d ? 1 : t->stride[s++];
    st = dn_tensor_alias(&parts[k], (dn_tensor *)t, t->ndim + 1, part_shape, part_stride, t->offset);
  }
  if (!st) st = fill("stack", result, parts, n, d);
  for (int k = 0; parts && k < n; k++) dn_tensor_release(parts[k]);
  free(parts);
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  return finish(out, result, &stack_node, tensors, n, d, true);
}
