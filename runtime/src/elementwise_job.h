/*
** The element-wise driver and what the element-wise files share (not
** installed). unary.c, binary.c and clamp_where.c each write segment
** kernels for their ops, forward and backward; elementwise.c feeds them
** (dn_ew_run), broadcasts shapes, checks dtypes and notes int32 overflows.
*/
#ifndef DROPNET_ELEMENTWISE_JOB_H
#define DROPNET_ELEMENTWISE_JOB_H

#include "dropnet/tensor.h"

/* Element-wise math is defined on float32 and int32 (uint8 is for masks):
   DN_ETYPE naming opname otherwise. */
dn_status dn_ew_check_dtype(const char *opname, const dn_tensor *t);

/*
** Broadcasts shapes x and y (trailing dims aligned) into ndim/shape. Returns
** -1, or the 0-based result dim where the sizes clash (sizes in *x_size, *y_size).
*/
int dn_broadcast_dims(int nx, const int64_t *x, int ny, const int64_t *y, int *ndim, int64_t *shape,
                      int64_t *x_size, int64_t *y_size);

/*
** int32 results that do not fit are an error, not a silent wrap-around
** (PyTorch wraps): add, sub, mul, pow, neg and abs check with the compiler's
** overflow builtins, and the overflow at the lowest output address records
** its operands for the message: the same element for any thread count (the
** first one noted in time would depend on the threads). The float32 kernels
** are untouched.
*/
typedef struct dn_i32_overflow {
  int hit, lock;        /* lock: a spin lock; overflows are an error path, rare */
  const int32_t *where; /* the output element of the noted overflow */
  int32_t x, y;         /* its operands (y unused for unary ops) */
} dn_i32_overflow;

/* Notes an overflow at output element `where` (operands x, y) unless one
   at a lower address is noted already. */
void dn_note_overflow(dn_i32_overflow *o, const int32_t *where, int32_t x, int32_t y);

/* The error for an overflow noted while computing an op (name: "add", "neg_", ...;
   what: the noted operation, "2147483647 + 1", "-(-2147483648)"). */
dn_status dn_overflow_error(const char *name, const char *what);

typedef struct dn_ew_job dn_ew_job;

/* Does len elements: out[i * out_stride] from in[k][i * in_stride[k]]. */
typedef void (*dn_segment_fn)(const dn_ew_job *job, void *out, int64_t out_stride, void *const *in,
                           const int64_t *in_stride, int64_t len);

struct dn_ew_job {
  dn_segment_fn segment;
  unsigned op;             /* a dn_binop, a dn_unop or a file's gradient rule (enums: unsigned) */
  double lo, hi;           /* clamp bounds, NaN for none */
  dn_i32_overflow *overflow;  /* int32 add, sub, mul, pow, neg, abs: where an overflow is noted */
  dn_tensor *out;
  const dn_tensor *in[3];  /* in the result dtype, except where's condition */
  int nin;
  bool flat;               /* set by run_job */
};

/*
** Runs job over every element of job->out; inputs broadcast to its shape.
** The flat path (every operand contiguous or a single element) gives each
** thread one long unit-stride segment; otherwise the operands are expanded
** to the output's shape, dims that walk as one are merged, and segments are
** rows.
*/
dn_status dn_ew_run(dn_ew_job *job);

/* out = a new float32 tensor in grad's shape, filled by segment with
   in = {grad, x, y} (x and y broadcast to it; y may be NULL). For the
   backward rules of each file. */
dn_status dn_ew_run_grad(dn_tensor **out, dn_segment_fn segment, unsigned rule, const dn_tensor *grad,
                         const dn_tensor *x, const dn_tensor *y, double lo, double hi);

#endif
