/*
** The reduction engine (reduce_engine.c) as reduce.c sees it: blocks of
** fixed boundaries reduced to partials, spans, lanes and columns. Not
** installed.
*/
#ifndef DROPNET_REDUCE_ENGINE_H
#define DROPNET_REDUCE_ENGINE_H

#include "dropnet/tensor.h"

/* What a block of elements reduces to (see partial). */
typedef enum reduce_op { RED_SUM, RED_MOMENTS, RED_MAX, RED_MIN } reduce_op;
/* The reductions; K_COUNT is their number. */
typedef enum reduce_kind { K_SUM, K_MEAN, K_VAR, K_STD, K_MAX, K_MIN, K_COUNT } reduce_kind;

/* The result of reducing some consecutive elements of a span. */
typedef struct partial {
  int64_t count;
  double sum;       /* RED_SUM, float32 input */
  int64_t isum;     /* RED_SUM, integer input */
  bool overflow;    /* isum left the int64 range */
  double mean, m2;  /* RED_MOMENTS: mean and sum of squared deviations */
  double best;      /* RED_MAX/RED_MIN: the extremum (a NaN wins) */
  int64_t at;       /* its first position in the span */
} partial;

/* Elements of a tensor in row-major order of their own geometry. */
typedef struct span {
  const dn_tensor *t;   /* storage and dtype */
  int ndim;             /* >= 1 */
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  int64_t offset, numel;
  bool dense;           /* consecutive in storage, in order */
} span;

/* s: all of t in row-major order, or one lane (length elements, stride apart from offset). */
void dn_span_of_tensor(span *s, const dn_tensor *t);
void dn_span_of_lane(span *s, const dn_tensor *t, int64_t offset, int64_t length, int64_t stride);
/* s in storage order (sums and moments do not depend on the order). */
void dn_span_to_memory_order(span *s);
/* Reduces s on the calling thread, or its blocks on `threads` threads and
   combined in order: the same arithmetic either way. */
void dn_reduce_span_serial(partial *acc, reduce_op op, const span *s);
dn_status dn_reduce_span(partial *acc, reduce_op op, const span *s, int threads, const char *name);

/* The value a finished partial stands for; false if an int32 sum overflowed. */
bool dn_reduce_finish(double *value, const partial *p, reduce_kind kind, bool is_float, int correction);
/* DN_ERANGE: the int32 sum of a overflowed, naming name. */
dn_status dn_reduce_overflow_error(const char *name, const dn_tensor *a);

/*
** A dim reduction seen as lanes: output element j (row-major over the kept
** dims) reduces `length` elements starting at kept_offset(j), `stride` apart.
** When the trailing kept dims form one unit-stride run of `inner` elements
** (dims after the reduced one of a contiguous tensor, or dim 0 of a
** transposed matrix), the outputs are columns: `outer` groups of `inner`
** adjacent floats, one row of them every `stride` elements.
*/
typedef struct lanes {
  const dn_tensor *t;
  int64_t count, length, stride;
  int kept_ndim;
  int64_t kept_shape[DN_MAX_DIMS], kept_stride[DN_MAX_DIMS];
  int outer_ndim;              /* kept dims before the unit-stride run */
  int64_t inner;               /* elements in that run */
  bool columns;                /* float32 and a run of more than one */
} lanes;

/* The lanes of a along dim. */
void dn_lanes_of(lanes *g, const dn_tensor *a, int dim);

/* Where the results go. */
typedef struct outputs {
  reduce_kind kind;
  reduce_op op;         /* reductions[kind].op */
  int correction;
  int64_t base;
  dn_tensor *values;    /* may be NULL (max/min) */
  dn_tensor *indices;   /* int32, may be NULL */
} outputs;

/* Every output of g into o: lane by lane, or (g->columns) by columns. */
dn_status dn_reduce_lanes(const lanes *g, const outputs *o, const char *name);
dn_status dn_reduce_columns(const lanes *g, const outputs *o, const char *name);

/* Means (in double) of the lanes of x, contiguous float32 [outer, size, inner],
   size >= 1. The arithmetic of a mean does not depend on the thread count. */
dn_status dn_lane_means(double *mean, const dn_tensor *x, int64_t outer, int64_t size, int64_t inner,
                        const char *name);

#endif
