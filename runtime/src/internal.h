/*
** Helpers shared by the kernels; not installed.
*/
#ifndef DROPNET_INTERNAL_H
#define DROPNET_INTERNAL_H

#include <math.h>
#include <string.h>

#include "pool.h"

#include "dropnet/alloc.h"
#include "dropnet/nn.h"
#include "dropnet/parallel.h"
#include "dropnet/rng.h"
#include "dropnet/tensor.h"

/* Below this many elements a loop runs on one thread: handing work to the
   pool costs more. Below the larger grain it does too while other processes
   keep our workers waiting (dn_pool_contended; measured there), and below
   the solo grain while a trial found one thread faster (solo_trial.c). */
#define DN_PARALLEL_GRAIN 4096
#define DN_CONTENDED_GRAIN 32768
#define DN_SOLO_GRAIN 262144

/*
** Runs the rest of the enclosing function in the runtime's floating-point
** mode on the calling thread (denormals flushed unless switched off) and puts
** the caller's mode back on every return: the first statement of each entry
** point that computes or converts numbers. See parallel.c.
*/
#if defined(__GNUC__)
static inline void dn_fpmode_cleanup(const unsigned *saved) { dn_fpmode_leave(*saved); }
#define DN_FPMODE_SCOPE() \
  const unsigned dn_fpmode_saved_ __attribute__((cleanup(dn_fpmode_cleanup), unused)) = dn_fpmode_enter()
#else
#define DN_FPMODE_SCOPE() ((void)0)   /* no cleanup attribute: the caller's mode throughout */
#endif

/* The calling thread's FTZ/DAZ bits (MXCSR; 0 where there is none), and
   setting them to bits (other MXCSR bits are kept). parallel.c. */
unsigned dn_fpmode_bits(void);
void dn_fpmode_set_bits(unsigned bits);

/*
** Kernels written once with strides or modes as parameters are inlined at
** constants (stride 1 or 0, one activation), so each copy becomes a
** unit-stride loop that `omp simd` vectorizes (plain -O2 does not).
*/
#if defined(__GNUC__)
#define DN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define DN_ALWAYS_INLINE inline
#endif

/* v where keep, else fill, by bit masks rather than a float select: gcc 12
   leaves such a select scalar when its result feeds a double sum (linear.c's
   bias gradient ran 10x slower), and on builds without AVX-512's masks when
   the condition is an integer comparison (dropout's mask bits on Zen 3). */
static DN_ALWAYS_INLINE float dn_keep_or(bool keep, float v, float fill) {
  uint32_t a, b, m = -(uint32_t)keep;
  memcpy(&a, &v, sizeof a);
  memcpy(&b, &fill, sizeof b);
  a = (a & m) | (b & ~m);
  memcpy(&v, &a, sizeof v);
  return v;
}

/* The logistic function, stable for any x: exp(-|x|) never overflows, so
   no inf/inf. */
static inline float dn_sigmoid_f32(float x) {
  float e = expf(-fabsf(x));
  return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* max and min that propagate NaN, as PyTorch's do (fmaxf would drop it). */
static inline float dn_max_nan(float x, float y) { return (x > y || x != x) ? x : y; }
static inline float dn_min_nan(float x, float y) { return (x < y || x != x) ? x : y; }

/* s, with the last error's message re-issued under op's name (its "tensor: "
   prefix, from a dn_tensor_new that refused the sizes, replaced): error.c. */
dn_status dn_fail_as(dn_status s, const char *op);

/* DN_ETYPE "<op>: <what> must be float32 (got <dtype>)" unless t is float32. */
static inline dn_status dn_check_float(const char *op, const char *what, const dn_tensor *t) {
  if (t->dtype == DN_F32) return DN_OK;
  return dn_fail(DN_ETYPE, "%s: %s must be float32 (got %s)", op, what, dn_dtype_name(t->dtype));
}

/* Threads a loop of n elements uses while no other process wants our CPUs:
   the most dn_threads_for gives. Per-task scratch is allocated for this many,
   so that what a call allocates depends on its shapes alone and not on
   whether the pool was contended just then (a training step then finds the
   previous step's blocks in the allocator's cache). */
static inline int dn_threads_most_for(int64_t n) {
  if (n < DN_PARALLEL_GRAIN) return 1;
  int t = dn_get_num_threads();
  int64_t by_size = n / DN_PARALLEL_GRAIN;
  return by_size < t ? (int)by_size : t;
}

/* Threads to use for a loop of n elements. */
static inline int dn_threads_for(int64_t n) {
  bool solo = dn_pool_solo();   /* for every loop: the trials count them */
  if (n < DN_CONTENDED_GRAIN && dn_pool_contended()) return 1;
  if (n < DN_SOLO_GRAIN && solo) return 1;
  return dn_threads_most_for(n);
}

/* Storage offset (in elements) of the element at row-major linear position i. */
static inline int64_t dn_offset_of(const dn_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    int64_t size = t->shape[d];
    off += (i % size) * t->stride[d];
    i /= size;
  }
  return off;
}

/*
** Row-wise walking of same-shape operands (broadcast operands are expand()ed
** views with stride 0): a "row" is the last dim. dn_row_offset gives the
** storage offset of the first element of row r; the inner loop then steps by
** t->stride[ndim-1].
*/
static inline int64_t dn_row_length(const dn_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }
/* Empty rows count as none: a [2^39, 0] tensor has nothing to walk. */
static inline int64_t dn_row_count(const dn_tensor *t) {
  if (dn_row_length(t) == 0) return 0;
  int64_t n = 1;
  for (int d = 0; d < t->ndim - 1; d++) n *= t->shape[d];
  return n;
}
static inline int64_t dn_row_stride(const dn_tensor *t) { return t->ndim ? t->stride[t->ndim - 1] : 1; }
static inline int64_t dn_row_offset(const dn_tensor *t, int64_t r) {
  int64_t off = t->offset;
  for (int d = t->ndim - 2; d >= 0; d--) {
    int64_t size = t->shape[d];
    off += (r % size) * t->stride[d];
    r /= size;
  }
  return off;
}

/* Typed element pointers at storage offset off. */
#define DN_F32_AT(t, off) (((float *)(t)->storage->data) + (off))
#define DN_I32_AT(t, off) (((int32_t *)(t)->storage->data) + (off))

/* Reads/writes one element of any dtype as a double. */
static inline double dn_load(const dn_tensor *t, int64_t off) {
  switch (t->dtype) {
    case DN_F32: return ((const float *)t->storage->data)[off];
    case DN_I32: return ((const int32_t *)t->storage->data)[off];
    case DN_U8: return ((const uint8_t *)t->storage->data)[off];
  }
  return 0;
}
static inline void dn_store(dn_tensor *t, int64_t off, double v) {
  switch (t->dtype) {
    case DN_F32: ((float *)t->storage->data)[off] = (float)v; break;
    case DN_I32: ((int32_t *)t->storage->data)[off] = (int32_t)v; break;
    case DN_U8: ((uint8_t *)t->storage->data)[off] = (uint8_t)v; break;
  }
}

/*
** Plain aliases (tensor.c): new headers over t's storage, no copy, no graph
** node. Kernels use them for private views of their operands; view.c's
** recording views are for users. New references.
*/
/* This geometry. */
dn_status dn_tensor_alias(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape, const int64_t *stride,
                          int64_t offset);
/* t broadcast to shape (broadcast dims get stride 0); fails naming "expand". */
dn_status dn_expand_alias(dn_tensor **out, dn_tensor *t, int ndim, const int64_t *shape);
/* A 1-D t [n] as a row [1, n] (vector_dim 0) or a column [n, 1] (vector_dim 1),
   with dn_unsqueeze's strides; any other t is retained as it is. */
dn_status dn_matrix_alias(dn_tensor **out, dn_tensor *t, int vector_dim);
/* The [cols, rows] transpose of a 2-D t. */
dn_status dn_transposed_alias(dn_tensor **out, dn_tensor *t);

/* Storage offset of the element at index (ndim entries), or DN_ERANGE naming op. */
dn_status dn_index_offset(const char *op, const dn_tensor *t, const int64_t *index, int64_t *off);

/* Normalizes a possibly negative dim against ndim; false if out of range. */
static inline bool dn_wrap_dim(int *dim, int ndim) {
  int d = *dim < 0 ? *dim + (ndim > 0 ? ndim : 1) : *dim;
  if (d < 0 || d >= (ndim > 0 ? ndim : 1)) return false;
  *dim = d;
  return true;
}

/* True when v can be stored in dtype without loss (whole and in range for ints). */
static inline bool dn_value_fits(dn_dtype dtype, double v) {
  switch (dtype) {
    case DN_F32: return true;
    case DN_I32: return v >= INT32_MIN && v <= INT32_MAX && v == floor(v);   /* NaN fails */
    case DN_U8: return v >= 0 && v <= 255 && v == floor(v);
  }
  return false;
}

/* True when v converts to dtype without undefined behaviour: a conversion to an
   int dtype truncates toward zero (2.7 -> 2, -2.7 -> -2), defined when the
   truncated value fits; NaN and infinities never fit. */
static inline bool dn_truncation_fits(dn_dtype dtype, double v) {
  switch (dtype) {
    case DN_F32: return true;
    case DN_I32: return v > -2147483649.0 && v < 2147483648.0;
    case DN_U8: return v > -1.0 && v < 256.0;
  }
  return false;
}

/* DN_EINVAL naming op when t is an expanded view (a dim of size > 1 with
   stride 0): writing it would write one memory cell many times. */
dn_status dn_check_writable(const char *op, const dn_tensor *t);

/* dn_copy_ without its autograd checks, for a kernel filling a tensor it
   has just made (clone, dtype conversion, backward passes). Records nothing;
   src is broadcast to dst's shape.
   A conversion that narrows (float32 -> int32, to uint8) first checks every
   value fits, failing with "<op>: value V at position P is not representable
   as <dtype>"; dn_copy_into names the op "copy_". */
dn_status dn_copy_into(dn_tensor *dst, const dn_tensor *src);
dn_status dn_copy_into_named(const char *op, dn_tensor *dst, const dn_tensor *src);

/* A new contiguous copy of t, and t itself (retained) when contiguous or
   else such a copy: dn_clone and dn_contiguous without a graph node, for
   kernels that need their operands dense. copy.c. */
dn_status dn_plain_clone(dn_tensor **out, const dn_tensor *t);
dn_status dn_plain_contiguous(dn_tensor **out, const dn_tensor *t);

/* dst += src for float32 dst and src of one shape, the autograd engine's
   gradient accumulation: no argument checks (copy.c). */
dn_status dn_accumulate_into(dn_tensor *dst, const dn_tensor *src);

/* dn_matmul_into for operands its caller has checked (2-D float32, matching
   shapes, out contiguous): no argument or autograd checks, no graph. It still
   refuses sizes BLAS cannot take. matmul.c. */
dn_status dn_matmul_into_plain(dn_tensor *out, dn_tensor *a, dn_tensor *b, float alpha, float beta);

/* dn_linear without a graph node (its checks included), for a layer built
   on it that records its own node. linear.c. */
dn_status dn_linear_plain(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, dn_activation act);

/* a[c with c[dim] = index[c] - base] += src[c] for float32 a and src, index int32 of a's ndim whose
   values the caller has checked; no graph. The backward of gather, sort and their kin (index.c). */
void dn_scatter_add_into(dn_tensor *a, int dim, const dn_tensor *index, const dn_tensor *src, int64_t base);

/* Marks an in-place write (autograd checks versions). */
static inline void dn_bump_version(dn_tensor *t) { t->storage->version++; }

#endif
