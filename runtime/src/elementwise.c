/*
** Element-wise ops: binary (with broadcasting and dtype promotion), unary,
** clamp and where.
**
** Every op is one "job": a segment kernel that does `len` elements with fixed
** strides, and a driver (run_job) that feeds it. The driver takes a flat path
** when all operands are contiguous (or single elements), giving each thread one
** long unit-stride segment; otherwise it expands the operands to the output's
** shape, merges dims that walk as one, and goes row by row. Each element is
** computed on its own, so any split over threads gives the same bits.
**
** Kernels see operands already converted to the result dtype (float32 or
** int32): mixed dtypes are converted up front, which keeps the loops to one
** dtype each.
**
** Autograd: each differentiable op records a node after computing its
** output; the backward rules (derivatives as PyTorch defines them, including
** at kinks and ties) run through the same driver, reading the incoming
** gradient and the saved operands in one pass.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dropnet/elementwise.h"
#include "graph.h"
#include "internal.h"

/* --- checks ------------------------------------------------------------------ */

/* Element-wise math is defined on float32 and int32 (uint8 is for masks). */
static dn_status check_dtype(const char *opname, const dn_tensor *t) {
  if (t->dtype == DN_F32 || t->dtype == DN_I32) return DN_OK;
  return dn_fail(DN_ETYPE, "%s: %s tensors are not supported (convert to float32 or int32 first)", opname,
                 dn_dtype_name(t->dtype));
}

/* A scalar that an int32 tensor can take without becoming float32. */
static bool is_int32_value(double s) { return s == floor(s) && s >= INT32_MIN && s <= INT32_MAX; }

/* Whether an int32 tensor holds a negative element (int pow then gives float32). */
static bool has_negative(const dn_tensor *t) {
  if (t->dtype != DN_I32 || dn_tensor_numel(t) == 0) return false;
  int64_t rows = dn_row_count(t), len = dn_row_length(t), stride = dn_row_stride(t);
  for (int64_t r = 0; r < rows; r++) {
    const int32_t *p = DN_I32_AT(t, dn_row_offset(t, r));
    for (int64_t i = 0; i < len; i++)
      if (p[i * stride] < 0) return true;
  }
  return false;
}

/* --- broadcasting ----------------------------------------------------------- */

/*
** Broadcasts shapes x and y (trailing dims aligned) into ndim/shape. Returns
** -1, or the 0-based result dim where the sizes clash (sizes in *x_size, *y_size).
*/
static int broadcast_dims(int nx, const int64_t *x, int ny, const int64_t *y, int *ndim, int64_t *shape,
                          int64_t *x_size, int64_t *y_size) {
  int n = nx > ny ? nx : ny;
  for (int d = 0; d < n; d++) {
    int64_t sx = d >= n - nx ? x[d - (n - nx)] : 1;
    int64_t sy = d >= n - ny ? y[d - (n - ny)] : 1;
    if (sx != sy && sx != 1 && sy != 1) {
      *x_size = sx;
      *y_size = sy;
      return d;
    }
    shape[d] = sx == 1 ? sy : sx;
  }
  *ndim = n;
  return -1;
}

dn_status dn_broadcast_shape(const char *opname, const dn_tensor *a, const dn_tensor *b, int *ndim,
                             int64_t *shape) {
  int64_t sa, sb;
  int bad = broadcast_dims(a->ndim, a->shape, b->ndim, b->shape, ndim, shape, &sa, &sb);
  if (bad < 0) return DN_OK;
  char as[128], bs[128];
  return dn_fail(DN_ESHAPE, "%s: shapes %s and %s cannot be broadcast (dim %d: %lld vs %lld)", opname,
                 dn_shape_str(a, as, sizeof as), dn_shape_str(b, bs, sizeof bs), bad + 1, (long long)sa,
                 (long long)sb);
}

/* --- float32 kernels ---------------------------------------------------------- */

static DN_ALWAYS_INLINE void f32_binary_loop(dn_binop op, float *out, int64_t so, const float *a, int64_t sa,
                                          const float *b, int64_t sb, int64_t n) {
  switch (op) {
    case DN_ADD:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] + b[i * sb];
      break;
    case DN_SUB:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] - b[i * sb];
      break;
    case DN_MUL:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] * b[i * sb];
      break;
    case DN_DIV:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] / b[i * sb];
      break;
    case DN_POW:
      for (int64_t i = 0; i < n; i++) out[i * so] = powf(a[i * sa], b[i * sb]);
      break;
    case DN_EQ:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = (float)(a[i * sa] == b[i * sb]);
      break;
    case DN_NE:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = (float)(a[i * sa] != b[i * sb]);
      break;
    case DN_LT:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = (float)(a[i * sa] < b[i * sb]);
      break;
    case DN_LE:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = (float)(a[i * sa] <= b[i * sb]);
      break;
    case DN_GT:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = (float)(a[i * sa] > b[i * sb]);
      break;
    case DN_GE:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = (float)(a[i * sa] >= b[i * sb]);
      break;
    case DN_MAXIMUM:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = dn_max_nan(a[i * sa], b[i * sb]);
      break;
    case DN_MINIMUM:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = dn_min_nan(a[i * sa], b[i * sb]);
      break;
    case DN_BINOP_COUNT: break;
  }
}

/* Picks a constant-stride copy of the loop for the common layouts. */
static void f32_binary(dn_binop op, float *out, int64_t so, const float *a, int64_t sa, const float *b,
                       int64_t sb, int64_t n) {
  if (so == 1 && sa == 1 && sb == 1) f32_binary_loop(op, out, 1, a, 1, b, 1, n);
  else if (so == 1 && sa == 1 && sb == 0) f32_binary_loop(op, out, 1, a, 1, b, 0, n);   /* t op s */
  else if (so == 1 && sa == 0 && sb == 1) f32_binary_loop(op, out, 1, a, 0, b, 1, n);   /* s op t */
  else f32_binary_loop(op, out, so, a, sa, b, sb, n);
}

/* `x < 0` keeps NaN (and -0) as they are, like PyTorch's relu. */
static inline float relu_f32(float x) { return x < 0.0f ? 0.0f : x; }

static DN_ALWAYS_INLINE void f32_unary_loop(dn_unop op, float *out, int64_t so, const float *a, int64_t sa,
                                         int64_t n) {
  switch (op) {
    case DN_NEG:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = -a[i * sa];
      break;
    case DN_ABS:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = fabsf(a[i * sa]);
      break;
    case DN_RELU:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = relu_f32(a[i * sa]);
      break;
    /* libm calls: vectorized only where the libm has SIMD variants, so no pragma */
    case DN_EXP:
      for (int64_t i = 0; i < n; i++) out[i * so] = expf(a[i * sa]);
      break;
    case DN_LOG:
      for (int64_t i = 0; i < n; i++) out[i * so] = logf(a[i * sa]);
      break;
    case DN_SQRT:
      for (int64_t i = 0; i < n; i++) out[i * so] = sqrtf(a[i * sa]);
      break;
    case DN_SIGMOID:
      for (int64_t i = 0; i < n; i++) out[i * so] = dn_sigmoid_f32(a[i * sa]);
      break;
    case DN_TANH:
      for (int64_t i = 0; i < n; i++) out[i * so] = tanhf(a[i * sa]);
      break;
    case DN_UNOP_COUNT: break;
  }
}

static void f32_unary(dn_unop op, float *out, int64_t so, const float *a, int64_t sa, int64_t n) {
  if (so == 1 && sa == 1) f32_unary_loop(op, out, 1, a, 1, n);
  else f32_unary_loop(op, out, so, a, sa, n);
}

/* --- int32 kernels -------------------------------------------------------------- */

/*
** int32 results that do not fit are an error, not a silent wrap-around
** (PyTorch wraps): add, sub, mul, pow, neg and abs check with the compiler's
** overflow builtins, and the overflow at the lowest output address records
** its operands for the message: the same element for any thread count (the
** first one noted in time would depend on the threads). The float32 kernels
** are untouched.
*/
typedef struct i32_overflow {
  int hit, lock;        /* lock: a spin lock; overflows are an error path, rare */
  const int32_t *where; /* the output element of the noted overflow */
  int32_t x, y;         /* its operands (y unused for unary ops) */
} i32_overflow;

static void note_overflow(i32_overflow *o, const int32_t *where, int32_t x, int32_t y) {
  while (__atomic_exchange_n(&o->lock, 1, __ATOMIC_ACQUIRE)) continue;
  if (!o->hit || where < o->where) {
    o->hit = 1;
    o->where = where;
    o->x = x;
    o->y = y;
  }
  __atomic_store_n(&o->lock, 0, __ATOMIC_RELEASE);
}

/*
** Exact integer power by squaring; false when the result does not fit. A
** factor is squared only while higher exponent bits remain, so it overflows
** only when the result would. A negative exponent makes the result float32
** before it gets here; for completeness it truncates like C.
*/
static bool i32_pow(int32_t base, int32_t exponent, int32_t *out) {
  if (exponent < 0) {
    *out = base == 1 ? 1 : base == -1 ? ((exponent & 1) ? -1 : 1) : 0;
    return true;
  }
  int32_t result = 1, factor = base;
  bool fits = true;
  for (uint32_t e = (uint32_t)exponent; e; e >>= 1) {
    if (e & 1) fits &= !__builtin_mul_overflow(result, factor, &result);
    if (e > 1) fits &= !__builtin_mul_overflow(factor, factor, &factor);
  }
  *out = result;
  return fits;
}

/* One checked int32 loop: r = x OP y, noting overflows (note_overflow keeps the lowest address). */
#define I32_CHECKED_LOOP(builtin)                                                            \
  for (int64_t i = 0; i < n; i++) {                                                          \
    int32_t x = a[i * sa], y = b[i * sb], r;                                                 \
    if (__builtin_expect(builtin(x, y, &r), 0)) note_overflow(overflow, &out[i * so], x, y); \
    out[i * so] = r;                                                                         \
  }

/* int32 op int32 for the ops that stay int32 (div never does). */
static void i32_binary(dn_binop op, int32_t *out, int64_t so, const int32_t *a, int64_t sa, const int32_t *b,
                       int64_t sb, int64_t n, i32_overflow *overflow) {
  switch (op) {
    case DN_ADD: I32_CHECKED_LOOP(__builtin_add_overflow) break;
    case DN_SUB: I32_CHECKED_LOOP(__builtin_sub_overflow) break;
    case DN_MUL: I32_CHECKED_LOOP(__builtin_mul_overflow) break;
    case DN_POW:
      for (int64_t i = 0; i < n; i++) {
        int32_t x = a[i * sa], y = b[i * sb], r;
        if (!i32_pow(x, y, &r)) note_overflow(overflow, &out[i * so], x, y);
        out[i * so] = r;
      }
      break;
    case DN_EQ: for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] == b[i * sb]; break;
    case DN_NE: for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] != b[i * sb]; break;
    case DN_LT: for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] < b[i * sb]; break;
    case DN_LE: for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] <= b[i * sb]; break;
    case DN_GT: for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] > b[i * sb]; break;
    case DN_GE: for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] >= b[i * sb]; break;
    case DN_MAXIMUM:
      for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] > b[i * sb] ? a[i * sa] : b[i * sb];
      break;
    case DN_MINIMUM:
      for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] < b[i * sb] ? a[i * sa] : b[i * sb];
      break;
    case DN_DIV: break;   /* int32 / int32 is float32: converted before the kernel */
    case DN_BINOP_COUNT: break;
  }
}

/* The unary ops that keep int32 (the others convert to float32 first); -INT32_MIN does not fit. */
static void i32_unary(dn_unop op, int32_t *out, int64_t so, const int32_t *a, int64_t sa, int64_t n,
                      i32_overflow *overflow) {
  switch (op) {
    case DN_NEG:
    case DN_ABS:
      for (int64_t i = 0; i < n; i++) {
        int32_t x = a[i * sa];
        if (__builtin_expect(x == INT32_MIN, 0)) {
          note_overflow(overflow, &out[i * so], x, 0);
          out[i * so] = x;
        } else {
          out[i * so] = op == DN_NEG || x < 0 ? -x : x;
        }
      }
      break;
    case DN_RELU: for (int64_t i = 0; i < n; i++) out[i * so] = a[i * sa] < 0 ? 0 : a[i * sa]; break;
    default: break;   /* float-valued: converted before the kernel */
  }
}

/* The error for an overflow noted while computing an op (name: "add", "neg_", ...;
   what: the noted operation, "2147483647 + 1", "-(-2147483648)"). */
static dn_status overflow_error(const char *name, const char *what) {
  return dn_fail(DN_ERANGE, "%s: int32 overflow: %s is outside the int32 range (convert to float32 first)", name,
                 what);
}

/* --- the driver --------------------------------------------------------------------- */

typedef struct ew_job ew_job;

/* Does len elements: out[i * out_stride] from in[k][i * in_stride[k]]. */
typedef void (*segment_fn)(const ew_job *job, void *out, int64_t out_stride, void *const *in,
                           const int64_t *in_stride, int64_t len);

struct ew_job {
  segment_fn segment;
  int op;                  /* a dn_binop or dn_unop */
  double lo, hi;           /* clamp bounds, NaN for none */
  i32_overflow *overflow;  /* int32 add, sub, mul, pow, neg, abs: where an overflow is noted */
  dn_tensor *out;
  const dn_tensor *in[3];  /* in the result dtype, except where's condition */
  int nin;
  bool flat;               /* set by run_job */
};

static void *element_ptr(const dn_tensor *t, int64_t off) {
  return (char *)t->storage->data + off * (int64_t)dn_dtype_size(t->dtype);
}

/* Flat walks step 1 (0 over a single element); row walks step along the last dim. */
static int64_t walk_stride(const ew_job *job, const dn_tensor *t) {
  if (job->flat) return dn_tensor_numel(t) == 1 ? 0 : 1;
  return dn_row_stride(t);
}

static int64_t walk_offset(const ew_job *job, const dn_tensor *t, int64_t row, int64_t col, int64_t stride) {
  return (job->flat ? t->offset : dn_row_offset(t, row)) + col * stride;
}

/* Output elements [begin, end) in row-major order: one segment per (piece of a) row. */
static void run_range(const void *ctx, int64_t begin, int64_t end) {
  const ew_job *job = ctx;
  int64_t len = job->flat ? dn_tensor_numel(job->out) : dn_row_length(job->out);
  int64_t out_stride = walk_stride(job, job->out), in_stride[3];
  void *in[3];
  for (int k = 0; k < job->nin; k++) in_stride[k] = walk_stride(job, job->in[k]);
  int64_t row = begin / len, col = begin % len;
  while (begin < end) {
    int64_t count = len - col < end - begin ? len - col : end - begin;
    void *out = element_ptr(job->out, walk_offset(job, job->out, row, col, out_stride));
    for (int k = 0; k < job->nin; k++)
      in[k] = element_ptr(job->in[k], walk_offset(job, job->in[k], row, col, in_stride[k]));
    job->segment(job, out, out_stride, in, in_stride, count);
    begin += count;
    row++;
    col = 0;
  }
}

/* Contiguous output; every input contiguous with as many elements, or a single element. */
static bool is_flat(const ew_job *job) {
  int64_t n = dn_tensor_numel(job->out);
  if (!dn_tensor_is_contiguous(job->out)) return false;
  for (int k = 0; k < job->nin; k++) {
    int64_t m = dn_tensor_numel(job->in[k]);
    if (m != 1 && !(m == n && dn_tensor_is_contiguous(job->in[k]))) return false;
  }
  return true;
}

/*
** Merges adjacent dims that every view walks as one (outer stride == inner
** stride * inner size) and drops size-1 dims, so rows get as long as they can:
** [N,C,H,W] + [C,1,1] walks rows of H*W. The views all have the same shape and
** are private headers, so they are edited in place.
*/
static void coalesce_dims(dn_tensor **views, int count) {
  const int ndim = views[0]->ndim;
  int64_t shape[DN_MAX_DIMS], stride[4][DN_MAX_DIMS];
  int kept = 0;
  for (int d = 0; d < ndim; d++) {
    int64_t size = views[0]->shape[d];
    if (size == 1) continue;
    bool merge = kept > 0;
    for (int k = 0; k < count && merge; k++) merge = stride[k][kept - 1] == views[k]->stride[d] * size;
    if (merge) {
      shape[kept - 1] *= size;
    } else {
      shape[kept] = size;
      kept++;
    }
    for (int k = 0; k < count; k++) stride[k][kept - 1] = views[k]->stride[d];
  }
  for (int k = 0; k < count; k++) {
    views[k]->ndim = kept;
    for (int d = 0; d < kept; d++) {
      views[k]->shape[d] = shape[d];
      views[k]->stride[d] = stride[k][d];
    }
  }
}

/* Runs job over every element of job->out; inputs broadcast to its shape. */
static dn_status run_job(ew_job *job) {
  int64_t n = dn_tensor_numel(job->out);
  if (n == 0) return DN_OK;
  job->flat = is_flat(job);
  if (job->flat) {
    dn_parallel_range(n, 1, run_range, job);
    return DN_OK;
  }
  /* views[0] is the output, then the inputs, all in the output's shape */
  dn_tensor *views[4] = {NULL, NULL, NULL, NULL};
  int count = job->nin + 1;
  dn_status st = DN_OK;
  for (int k = 0; k < count && !st; k++) {   /* private walking views */
    const dn_tensor *t = k == 0 ? job->out : job->in[k - 1];
    st = dn_expand_alias(&views[k], (dn_tensor *)t, job->out->ndim, job->out->shape);
  }
  if (!st) {
    coalesce_dims(views, count);
    ew_job rows = *job;
    rows.out = views[0];
    for (int k = 0; k < job->nin; k++) rows.in[k] = views[k + 1];
    dn_parallel_range(n, 1, run_range, &rows);
  }
  for (int k = 0; k < count; k++) dn_tensor_release(views[k]);
  return st;
}

/* --- segments ----------------------------------------------------------------------- */

static void binary_segment(const ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                           int64_t n) {
  if (job->out->dtype == DN_F32) f32_binary((dn_binop)job->op, out, so, in[0], si[0], in[1], si[1], n);
  else i32_binary((dn_binop)job->op, out, so, in[0], si[0], in[1], si[1], n, job->overflow);
}

static void unary_segment(const ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                          int64_t n) {
  if (job->out->dtype == DN_F32) f32_unary((dn_unop)job->op, out, so, in[0], si[0], n);
  else i32_unary((dn_unop)job->op, out, so, in[0], si[0], n, job->overflow);
}

/* An int32 clamp bound: none (NaN) or beyond the range saturates to `none_value`'s side. */
static int32_t int_bound(double bound, int32_t none_value) {
  if (isnan(bound)) return none_value;
  if (bound <= INT32_MIN) return INT32_MIN;
  if (bound >= INT32_MAX) return INT32_MAX;
  return (int32_t)bound;
}

/* Comparisons are false for NaN, so a NaN input passes through. */
static void clamp_segment(const ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                          int64_t n) {
  int64_t sa = si[0];
  if (job->out->dtype == DN_F32) {
    float lo = isnan(job->lo) ? -INFINITY : (float)job->lo, hi = isnan(job->hi) ? INFINITY : (float)job->hi;
    float *o = out;
    const float *a = in[0];
    for (int64_t i = 0; i < n; i++) {
      float v = a[i * sa];
      o[i * so] = v < lo ? lo : v > hi ? hi : v;
    }
  } else {
    int32_t lo = int_bound(job->lo, INT32_MIN), hi = int_bound(job->hi, INT32_MAX);
    int32_t *o = out;
    const int32_t *a = in[0];
    for (int64_t i = 0; i < n; i++) {
      int32_t v = a[i * sa];
      o[i * so] = v < lo ? lo : v > hi ? hi : v;
    }
  }
}

/* in[0] is the condition (any dtype, nonzero is true; NaN counts as true). */
static void where_segment(const ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                          int64_t n) {
  int64_t sc = si[0], sx = si[1], sy = si[2];
  dn_dtype cond_dtype = job->in[0]->dtype;
  const float *cf = in[0];
  const int32_t *ci = in[0];
  const uint8_t *cu = in[0];
  if (job->out->dtype == DN_F32) {
    float *o = out;
    const float *x = in[1], *y = in[2];
    switch (cond_dtype) {
      case DN_F32: for (int64_t i = 0; i < n; i++) o[i * so] = cf[i * sc] != 0 ? x[i * sx] : y[i * sy]; break;
      case DN_I32: for (int64_t i = 0; i < n; i++) o[i * so] = ci[i * sc] != 0 ? x[i * sx] : y[i * sy]; break;
      case DN_U8: for (int64_t i = 0; i < n; i++) o[i * so] = cu[i * sc] != 0 ? x[i * sx] : y[i * sy]; break;
    }
  } else {
    int32_t *o = out;
    const int32_t *x = in[1], *y = in[2];
    switch (cond_dtype) {
      case DN_F32: for (int64_t i = 0; i < n; i++) o[i * so] = cf[i * sc] != 0 ? x[i * sx] : y[i * sy]; break;
      case DN_I32: for (int64_t i = 0; i < n; i++) o[i * so] = ci[i * sc] != 0 ? x[i * sx] : y[i * sy]; break;
      case DN_U8: for (int64_t i = 0; i < n; i++) o[i * so] = cu[i * sc] != 0 ? x[i * sx] : y[i * sy]; break;
    }
  }
}

/* --- backward kernels -------------------------------------------------------------------- */

/*
** d(out)/d(input) rules that need more than one plain op, each as one pass:
** out = rule(g, x, y) with g the incoming gradient. Float32 only (gradients
** are). At kinks and ties they give what PyTorch's derivatives give.
*/
typedef enum grad_rule {
  GRAD_DIV_DENOMINATOR,   /* d(x/y)/dy:  -g * x / (y * y) */
  GRAD_POW_BASE,          /* d(x^y)/dx:  g * y * x^(y-1), 0 where y == 0 */
  GRAD_POW_EXPONENT,      /* d(x^y)/dy:  g * x^y * log x, 0 where x == 0 and y >= 0 */
  GRAD_PICK_GREATER,      /* max(x, y) for x: g where x > y (or NaN), g/2 on a tie, 0 where x < y */
  GRAD_PICK_LESS,         /* min(x, y) for x: g where x < y (or NaN), g/2 on a tie, 0 where x > y */
  GRAD_ABS,               /* g * sign(x), 0 at 0 */
  GRAD_RELU,              /* x = output: 0 where x <= 0 */
  GRAD_SIGMOID,           /* x = output: g * x * (1 - x) */
  GRAD_TANH,              /* x = output: g * (1 - x * x) */
  GRAD_SQRT,              /* x = output: g / (2 * x) */
  GRAD_CLAMP              /* g where lo <= x <= hi (NaN bound: none), else 0 */
} grad_rule;

static DN_ALWAYS_INLINE void grad_loop(grad_rule rule, float *out, int64_t so, const float *g, int64_t sg,
                                    const float *x, int64_t sx, const float *y, int64_t sy, float lo, float hi,
                                    int64_t n) {
  switch (rule) {
    case GRAD_DIV_DENOMINATOR:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) {
        float yi = y[i * sy];
        out[i * so] = -g[i * sg] * x[i * sx] / (yi * yi);
      }
      break;
    case GRAD_POW_BASE:
      for (int64_t i = 0; i < n; i++) {
        float yi = y[i * sy];
        out[i * so] = yi == 0.0f ? 0.0f : g[i * sg] * (yi * powf(x[i * sx], yi - 1.0f));
      }
      break;
    case GRAD_POW_EXPONENT:
      for (int64_t i = 0; i < n; i++) {
        float xi = x[i * sx], yi = y[i * sy];
        out[i * so] = xi == 0.0f && yi >= 0.0f ? 0.0f : g[i * sg] * (powf(xi, yi) * logf(xi));
      }
      break;
    case GRAD_PICK_GREATER:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) {
        float xi = x[i * sx], yi = y[i * sy], gi = g[i * sg];
        out[i * so] = xi == yi ? 0.5f * gi : xi < yi ? 0.0f : gi;
      }
      break;
    case GRAD_PICK_LESS:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) {
        float xi = x[i * sx], yi = y[i * sy], gi = g[i * sg];
        out[i * so] = xi == yi ? 0.5f * gi : xi > yi ? 0.0f : gi;
      }
      break;
    case GRAD_ABS:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) {
        float xi = x[i * sx], gi = g[i * sg];
        out[i * so] = xi > 0.0f ? gi : xi < 0.0f ? -gi : 0.0f;
      }
      break;
    case GRAD_RELU:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = x[i * sx] <= 0.0f ? 0.0f : g[i * sg];
      break;
    case GRAD_SIGMOID:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) {
        float xi = x[i * sx];
        out[i * so] = g[i * sg] * ((1.0f - xi) * xi);
      }
      break;
    case GRAD_TANH:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) {
        float xi = x[i * sx];
        out[i * so] = g[i * sg] * (1.0f - xi * xi);
      }
      break;
    case GRAD_SQRT:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = g[i * sg] / (2.0f * x[i * sx]);
      break;
    case GRAD_CLAMP:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) {
        float xi = x[i * sx];
        out[i * so] = xi >= lo && xi <= hi ? g[i * sg] : 0.0f;
      }
      break;
  }
}

/* The gradient, the operands and the result all contiguous (the common case) get a unit-stride copy. */
static void grad_segment(const ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                         int64_t n) {
  grad_rule rule = (grad_rule)job->op;
  float lo = isnan(job->lo) ? -INFINITY : (float)job->lo, hi = isnan(job->hi) ? INFINITY : (float)job->hi;
  const float *y = job->nin > 2 ? in[2] : NULL;
  int64_t sy = job->nin > 2 ? si[2] : 0;
  if (so == 1 && si[0] == 1 && si[1] == 1 && (sy == 1 || !y))
    grad_loop(rule, out, 1, in[0], 1, in[1], 1, y, 1, lo, hi, n);
  else
    grad_loop(rule, out, so, in[0], si[0], in[1], si[1], y, sy, lo, hi, n);
}

/* out = rule(grad, x, y) in grad's shape (x and y broadcast to it; y may be NULL). */
static dn_status run_grad_rule(dn_tensor **out, grad_rule rule, const dn_tensor *grad, const dn_tensor *x,
                               const dn_tensor *y, double lo, double hi) {
  dn_status st = dn_tensor_new(out, DN_F32, grad->ndim, grad->shape);
  if (st) return st;
  st = run_job(&(ew_job){.segment = grad_segment, .op = rule, .lo = lo, .hi = hi, .out = *out,
                         .in = {grad, x, y}, .nin = y ? 3 : 2});
  if (st) {
    dn_tensor_release(*out);
    *out = NULL;
  }
  return st;
}

/* --- in-place helpers ----------------------------------------------------------------- */

static bool same_layout(const dn_tensor *x, const dn_tensor *y) {
  if (x->offset != y->offset || x->ndim != y->ndim) return false;
  for (int d = 0; d < x->ndim; d++)
    if (x->shape[d] != y->shape[d] || x->stride[d] != y->stride[d]) return false;
  return true;
}

/*
** b as the other operand of an in-place op on a: in a's dtype, and copied if
** it shares a's memory in another layout, since a partial overlap would make
** the result depend on the order of the writes.
*/
static dn_status inplace_operand(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) {
  dn_tensor *converted;
  dn_status st = dn_to_dtype(&converted, (dn_tensor *)b, a->dtype);
  if (st) return st;
  if (converted->storage != a->storage || same_layout(converted, a)) {
    *out = converted;
    return DN_OK;
  }
  st = dn_plain_clone(out, converted);
  dn_tensor_release(converted);
  return st;
}

/* A 0-dim tensor holding s: int32 next to an int32 tensor when s is an int32 value. */
static dn_status scalar_tensor(dn_tensor **out, const dn_tensor *like, double s) {
  dn_dtype dtype = like->dtype == DN_I32 && is_int32_value(s) ? DN_I32 : DN_F32;
  dn_status st = dn_tensor_new(out, dtype, 0, NULL);
  if (st) return st;
  dn_store(*out, 0, s);
  return DN_OK;
}

/* --- binary ------------------------------------------------------------------------- */

static dn_status binary_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in);

/* The result dtype of an op on two int32 operands. */
typedef enum int_result {
  INT_STAYS,                           /* int32 */
  INT_TO_FLOAT,                        /* float32 (div) */
  INT_STAYS_UNLESS_NEGATIVE_EXPONENT   /* float32 if b holds a negative element (pow) */
} int_result;

/* Bits: the operands a gradient reads. */
enum { READS_A = 1, READS_B = 2 };

/* One row per dn_binop. */
typedef struct binop_info {
  dn_node_type node;            /* name; backward NULL: not differentiable (comparisons: 0/1) */
  int_result int_result;
  const char *overflow_symbol;  /* int32 results can leave the range: "x + y" in the message; NULL: never */
  unsigned char reads[2];       /* the operands the gradient for a (reads[0]) and for b (reads[1]) read */
} binop_info;

static const binop_info binops[] = {
  [DN_ADD] = {{"add", binary_backward}, INT_STAYS, "+", {0, 0}},
  [DN_SUB] = {{"sub", binary_backward}, INT_STAYS, "-", {0, 0}},
  [DN_MUL] = {{"mul", binary_backward}, INT_STAYS, "*", {READS_B, READS_A}},
  [DN_DIV] = {{"div", binary_backward}, INT_TO_FLOAT, NULL, {READS_B, READS_A | READS_B}},
  [DN_POW] = {{"pow", binary_backward}, INT_STAYS_UNLESS_NEGATIVE_EXPONENT, "^", {READS_A | READS_B, READS_A | READS_B}},
  [DN_EQ] = {{"eq", NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_NE] = {{"ne", NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_LT] = {{"lt", NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_LE] = {{"le", NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_GT] = {{"gt", NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_GE] = {{"ge", NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_MAXIMUM] = {{"maximum", binary_backward}, INT_STAYS, NULL, {READS_A | READS_B, READS_A | READS_B}},
  [DN_MINIMUM] = {{"minimum", binary_backward}, INT_STAYS, NULL, {READS_A | READS_B, READS_A | READS_B}},
};
_Static_assert(sizeof binops / sizeof binops[0] == DN_BINOP_COUNT, "binops: one row per dn_binop");

static bool binop_valid(dn_binop op) { return (unsigned)op < (unsigned)DN_BINOP_COUNT; }
static bool binop_differentiable(dn_binop op) { return binops[op].node.backward != NULL; }
static bool binop_can_overflow(dn_binop op) { return binops[op].overflow_symbol != NULL; }

const char *dn_binop_name(dn_binop op) { return binop_valid(op) ? binops[op].node.name : "unknown"; }

static dn_dtype binary_result_dtype(dn_binop op, const dn_tensor *a, const dn_tensor *b) {
  if (a->dtype == DN_F32 || b->dtype == DN_F32) return DN_F32;
  switch (binops[op].int_result) {
    case INT_STAYS: return DN_I32;
    case INT_TO_FLOAT: return DN_F32;
    case INT_STAYS_UNLESS_NEGATIVE_EXPONENT: return has_negative(b) ? DN_F32 : DN_I32;
  }
  return DN_I32;
}

/* node->ints of a binary node; its saved slots are the operands (SAVED_A, SAVED_B). */
enum { BINARY_OP };
enum { SAVED_A, SAVED_B };

/*
** Backward of a op b: ints[BINARY_OP] is the op; slots SAVED_A and SAVED_B
** hold a and b (in the result dtype) when a rule reads them (binop_info's
** reads). Each input's gradient is computed in the output's shape, then
** summed down to the input's own.
*/
static dn_status binary_input_grad(dn_tensor **out, dn_binop op, int i, dn_tensor *grad, dn_tensor *a,
                                   dn_tensor *b) {
  switch (op) {
    case DN_ADD: *out = dn_tensor_retain(grad); return DN_OK;
    case DN_SUB: return i == 0 ? (*out = dn_tensor_retain(grad), DN_OK) : dn_unary(out, DN_NEG, grad);
    case DN_MUL: return dn_binary(out, DN_MUL, grad, i == 0 ? b : a);
    case DN_DIV:
      return i == 0 ? dn_binary(out, DN_DIV, grad, b) : run_grad_rule(out, GRAD_DIV_DENOMINATOR, grad, a, b, NAN, NAN);
    case DN_POW: return run_grad_rule(out, i == 0 ? GRAD_POW_BASE : GRAD_POW_EXPONENT, grad, a, b, NAN, NAN);
    case DN_MAXIMUM: return run_grad_rule(out, GRAD_PICK_GREATER, grad, i == 0 ? a : b, i == 0 ? b : a, NAN, NAN);
    case DN_MINIMUM: return run_grad_rule(out, GRAD_PICK_LESS, grad, i == 0 ? a : b, i == 0 ? b : a, NAN, NAN);
    default: break;   /* comparisons record no node */
  }
  *out = NULL;
  return dn_fail(DN_EINVAL, "backward: %s is not differentiable (internal error)", dn_binop_name(op));
}

/* Whether the backward of op reads operand k (SAVED_A or SAVED_B), given which inputs need a gradient. */
static bool binary_reads(dn_binop op, int k, const bool *needs_grad) {
  unsigned bit = k == SAVED_A ? READS_A : READS_B;
  return (needs_grad[0] && (binops[op].reads[0] & bit)) || (needs_grad[1] && (binops[op].reads[1] & bit));
}

static dn_status binary_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_binop op = (dn_binop)node->ints[BINARY_OP];
  dn_tensor *operands[2] = {NULL, NULL};
  dn_status st = DN_OK;
  for (int k = 0; k < 2 && !st; k++)
    if (binary_reads(op, k, node->needs_grad)) st = dn_node_saved(node, k, &operands[k]);
  for (int i = 0; i < 2 && !st; i++) {
    if (!node->needs_grad[i]) continue;
    dn_tensor *full;
    st = binary_input_grad(&full, op, i, grad, operands[SAVED_A], operands[SAVED_B]);
    if (st) break;
    st = dn_grad_for_input(&grad_in[i], node, i, full);
    dn_tensor_release(full);
  }
  return st;
}

/* Records op's node on result (ca, cb: the operands in the result dtype). */
static dn_status binary_record(dn_tensor *result, dn_binop op, const dn_tensor *a, const dn_tensor *b,
                               const dn_tensor *ca, const dn_tensor *cb) {
  if (!binop_differentiable(op)) return DN_OK;
  dn_node *node;
  dn_status st = dn_record(result, &binops[op].node, 2, (const dn_tensor *[]){a, b}, &node);
  if (st || !node) return st;
  node->ints[BINARY_OP] = op;
  const dn_tensor *operands[2] = {ca, cb};
  for (int k = 0; k < 2 && !st; k++)
    if (binary_reads(op, k, node->needs_grad)) st = dn_node_save(node, k, operands[k]);
  return st;
}

/* The error for an int32 overflow noted while computing op. */
static dn_status binary_overflow_error(const char *name, dn_binop op, const i32_overflow *o) {
  char what[96];
  snprintf(what, sizeof what, "%lld %s %lld", (long long)o->x, binops[op].overflow_symbol, (long long)o->y);
  return overflow_error(name, what);
}

dn_status dn_binary(dn_tensor **out, dn_binop op, const dn_tensor *a, const dn_tensor *b) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  if (!binop_valid(op)) return dn_fail(DN_EINVAL, "binary: unknown op %d", (int)op);
  const char *name = dn_binop_name(op);
  dn_status st = check_dtype(name, a);
  if (!st) st = check_dtype(name, b);
  int ndim;
  int64_t shape[DN_MAX_DIMS];
  if (!st) st = dn_broadcast_shape(name, a, b, &ndim, shape);
  if (st) return st;

  dn_dtype dtype = binary_result_dtype(op, a, b);
  dn_tensor *ca = NULL, *cb = NULL, *result = NULL;
  st = dn_to_dtype(&ca, (dn_tensor *)a, dtype);
  if (!st) st = dn_to_dtype(&cb, (dn_tensor *)b, dtype);
  if (!st) st = dn_tensor_new(&result, dtype, ndim, shape);
  i32_overflow overflow = {0};
  if (!st)
    st = run_job(&(ew_job){.segment = binary_segment, .op = op, .out = result, .in = {ca, cb}, .nin = 2,
                           .overflow = &overflow});
  if (!st && overflow.hit) st = binary_overflow_error(name, op, &overflow);
  if (!st) st = binary_record(result, op, a, b, ca, cb);
  dn_tensor_release(ca);
  dn_tensor_release(cb);
  if (st) dn_tensor_release(result);
  else *out = result;
  return st;
}

dn_status dn_binary_scalar(dn_tensor **out, dn_binop op, const dn_tensor *a, double s, bool scalar_first) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  if (!binop_valid(op)) return dn_fail(DN_EINVAL, "binary: unknown op %d", (int)op);
  dn_status st = check_dtype(dn_binop_name(op), a);
  if (st) return st;
  dn_tensor *scalar;
  st = scalar_tensor(&scalar, a, s);
  if (st) return st;
  st = scalar_first ? dn_binary(out, op, scalar, a) : dn_binary(out, op, a, scalar);
  dn_tensor_release(scalar);
  return st;
}

dn_status dn_binary_(dn_tensor *a, dn_binop op, const dn_tensor *b) {
  DN_FPMODE_SCOPE();
  if (!binop_valid(op)) return dn_fail(DN_EINVAL, "binary_: unknown op %d", (int)op);
  char name[32];
  snprintf(name, sizeof name, "%s_", dn_binop_name(op));
  dn_status st = dn_check_inplace(name, a);
  if (!st) st = dn_check_inplace_source(name, b);
  if (!st) st = check_dtype(name, a);
  if (!st) st = check_dtype(name, b);
  int ndim;
  int64_t shape[DN_MAX_DIMS];
  if (!st) st = dn_broadcast_shape(name, a, b, &ndim, shape);
  if (st) return st;
  char as[128], bs[128];
  if (ndim != a->ndim || memcmp(shape, a->shape, (size_t)ndim * sizeof *shape) != 0)
    return dn_fail(DN_ESHAPE, "%s: other of shape %s cannot be broadcast to the in-place tensor's shape %s", name,
                   dn_shape_str(b, bs, sizeof bs), dn_shape_str(a, as, sizeof as));
  dn_dtype dtype = binary_result_dtype(op, a, b);
  if (dtype != a->dtype)
    return dn_fail(DN_ETYPE, "%s: the result of %s %s %s is %s and cannot be stored in place into %s", name,
                   dn_dtype_name(a->dtype), dn_binop_name(op), dn_dtype_name(b->dtype), dn_dtype_name(dtype),
                   dn_dtype_name(a->dtype));
  st = dn_check_writable(name, a);
  if (st) return st;

  dn_tensor *other;
  st = inplace_operand(&other, a, b);
  if (st) return st;
  i32_overflow overflow = {0};
  if (a->dtype == DN_I32 && binop_can_overflow(op)) {
    /* computed aside and copied in (which bumps the version): an overflow leaves a as it was */
    dn_tensor *result;
    st = dn_tensor_new(&result, DN_I32, a->ndim, a->shape);
    if (!st)
      st = run_job(&(ew_job){.segment = binary_segment, .op = op, .out = result, .in = {a, other}, .nin = 2,
                             .overflow = &overflow});
    if (!st && overflow.hit) st = binary_overflow_error(name, op, &overflow);
    if (!st) st = dn_copy_into(a, result);
    dn_tensor_release(result);
  } else {
    st = run_job(&(ew_job){.segment = binary_segment, .op = op, .out = a, .in = {a, other}, .nin = 2,
                           .overflow = &overflow});
    if (!st) dn_bump_version(a);
  }
  dn_tensor_release(other);
  return st;
}

dn_status dn_binary_scalar_(dn_tensor *a, dn_binop op, double s) {
  DN_FPMODE_SCOPE();
  if (!binop_valid(op)) return dn_fail(DN_EINVAL, "binary_: unknown op %d", (int)op);
  char name[32];
  snprintf(name, sizeof name, "%s_", dn_binop_name(op));
  dn_status st = dn_check_inplace(name, a);
  if (!st) st = check_dtype(name, a);
  if (st) return st;
  dn_tensor *scalar;
  st = scalar_tensor(&scalar, a, s);
  if (st) return st;
  st = dn_binary_(a, op, scalar);
  dn_tensor_release(scalar);
  return st;
}

dn_status dn_add(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) { return dn_binary(out, DN_ADD, a, b); }
dn_status dn_sub(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) { return dn_binary(out, DN_SUB, a, b); }
dn_status dn_mul(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) { return dn_binary(out, DN_MUL, a, b); }
dn_status dn_div(dn_tensor **out, const dn_tensor *a, const dn_tensor *b) { return dn_binary(out, DN_DIV, a, b); }

/* --- unary ---------------------------------------------------------------------------- */

static dn_status unary_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in);

/* What the backward of a unary op reads: its derivative may be cheaper from its output. */
typedef enum unop_saves { SAVES_NOTHING, SAVES_INPUT, SAVES_OUTPUT } unop_saves;

/* One row per dn_unop. */
typedef struct unop_info {
  dn_node_type node;            /* name and backward */
  bool keeps_int;               /* int32 in, int32 out; the others compute in float32 */
  const char *overflow_prefix;  /* int32 results can leave the range: "-(x)", "abs(x)" in the message; NULL: never */
  unop_saves saves;
} unop_info;

static const unop_info unops[] = {
  [DN_NEG] = {{"neg", unary_backward}, true, "-", SAVES_NOTHING},
  [DN_EXP] = {{"exp", unary_backward}, false, NULL, SAVES_OUTPUT},
  [DN_LOG] = {{"log", unary_backward}, false, NULL, SAVES_INPUT},
  [DN_SQRT] = {{"sqrt", unary_backward}, false, NULL, SAVES_OUTPUT},
  [DN_ABS] = {{"abs", unary_backward}, true, "abs", SAVES_INPUT},
  [DN_RELU] = {{"relu", unary_backward}, true, NULL, SAVES_OUTPUT},
  [DN_SIGMOID] = {{"sigmoid", unary_backward}, false, NULL, SAVES_OUTPUT},
  [DN_TANH] = {{"tanh", unary_backward}, false, NULL, SAVES_OUTPUT},
};
_Static_assert(sizeof unops / sizeof unops[0] == DN_UNOP_COUNT, "unops: one row per dn_unop");

static bool unop_valid(dn_unop op) { return (unsigned)op < (unsigned)DN_UNOP_COUNT; }

const char *dn_unop_name(dn_unop op) { return unop_valid(op) ? unops[op].node.name : "unknown"; }

/* The error for an int32 overflow noted while computing op. */
static dn_status unary_overflow_error(const char *name, dn_unop op, const i32_overflow *o) {
  char what[96];
  snprintf(what, sizeof what, "%s(%lld)", unops[op].overflow_prefix, (long long)o->x);
  return overflow_error(name, what);
}

/* node->ints of a unary node; its one saved slot holds the input or the output (unop_info's saves). */
enum { UNARY_OP };
enum { SAVED_OPERAND };

static dn_status unary_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_unop op = (dn_unop)node->ints[UNARY_OP];
  if (unops[op].saves == SAVES_NOTHING) return dn_unary(&grad_in[0], DN_NEG, grad);   /* neg */
  dn_tensor *saved;
  dn_status st = dn_node_saved(node, SAVED_OPERAND, &saved);
  if (st) return st;
  switch (op) {
    case DN_EXP: return dn_binary(&grad_in[0], DN_MUL, grad, saved);        /* e^x */
    case DN_LOG: return dn_binary(&grad_in[0], DN_DIV, grad, saved);        /* 1/x */
    case DN_SQRT: return run_grad_rule(&grad_in[0], GRAD_SQRT, grad, saved, NULL, NAN, NAN);
    case DN_ABS: return run_grad_rule(&grad_in[0], GRAD_ABS, grad, saved, NULL, NAN, NAN);
    case DN_RELU: return run_grad_rule(&grad_in[0], GRAD_RELU, grad, saved, NULL, NAN, NAN);
    case DN_SIGMOID: return run_grad_rule(&grad_in[0], GRAD_SIGMOID, grad, saved, NULL, NAN, NAN);
    case DN_TANH: return run_grad_rule(&grad_in[0], GRAD_TANH, grad, saved, NULL, NAN, NAN);
    case DN_NEG:
    case DN_UNOP_COUNT: break;
  }
  return DN_OK;
}

dn_status dn_unary(dn_tensor **out, dn_unop op, const dn_tensor *a) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  if (!unop_valid(op)) return dn_fail(DN_EINVAL, "unary: unknown op %d", (int)op);
  dn_status st = check_dtype(dn_unop_name(op), a);
  if (st) return st;
  dn_dtype dtype = a->dtype == DN_I32 && unops[op].keeps_int ? DN_I32 : DN_F32;
  dn_tensor *ca = NULL, *result = NULL;
  st = dn_to_dtype(&ca, (dn_tensor *)a, dtype);
  if (!st) st = dn_tensor_new(&result, dtype, a->ndim, a->shape);
  i32_overflow overflow = {0};
  if (!st)
    st = run_job(&(ew_job){.segment = unary_segment, .op = op, .out = result, .in = {ca}, .nin = 1,
                           .overflow = &overflow});
  if (!st && overflow.hit) st = unary_overflow_error(dn_unop_name(op), op, &overflow);
  dn_node *node = NULL;
  if (!st) st = dn_record(result, &unops[op].node, 1, &a, &node);
  if (node) {
    node->ints[UNARY_OP] = op;
    if (unops[op].saves != SAVES_NOTHING)
      st = dn_node_save(node, SAVED_OPERAND, unops[op].saves == SAVES_OUTPUT ? result : ca);
  }
  dn_tensor_release(ca);
  if (st) dn_tensor_release(result);
  else *out = result;
  return st;
}

dn_status dn_unary_(dn_tensor *a, dn_unop op) {
  DN_FPMODE_SCOPE();
  if (!unop_valid(op)) return dn_fail(DN_EINVAL, "unary_: unknown op %d", (int)op);
  char name[32];
  snprintf(name, sizeof name, "%s_", dn_unop_name(op));
  dn_status st = dn_check_inplace(name, a);
  if (!st) st = check_dtype(name, a);
  if (st) return st;
  if (a->dtype == DN_I32 && !unops[op].keeps_int)
    return dn_fail(DN_ETYPE, "%s: %s of int32 is float32 and cannot be stored in place into int32", name,
                   dn_unop_name(op));
  st = dn_check_writable(name, a);
  if (st) return st;
  i32_overflow overflow = {0};
  if (a->dtype == DN_I32 && unops[op].overflow_prefix) {
    /* computed aside and copied in (which bumps the version): an overflow leaves a as it was */
    dn_tensor *result;
    st = dn_tensor_new(&result, DN_I32, a->ndim, a->shape);
    if (!st)
      st = run_job(&(ew_job){.segment = unary_segment, .op = op, .out = result, .in = {a}, .nin = 1,
                             .overflow = &overflow});
    if (!st && overflow.hit) st = unary_overflow_error(name, op, &overflow);
    if (!st) st = dn_copy_into(a, result);
    dn_tensor_release(result);
    return st;
  }
  st = run_job(&(ew_job){.segment = unary_segment, .op = op, .out = a, .in = {a}, .nin = 1, .overflow = &overflow});
  if (!st) dn_bump_version(a);
  return st;
}

/* --- clamp and where ---------------------------------------------------------------------- */

/* Bounds an int32 tensor can be clamped to and stay int32: none, integral or infinite. */
static bool int_compatible_bound(double bound) { return isnan(bound) || isinf(bound) || bound == floor(bound); }

/* node->scalars and saved slot of a clamp node: the bounds (NaN for none) and x. */
enum { CLAMP_LO, CLAMP_HI };
enum { CLAMP_SAVED_X };

/* Passes the gradient where lo <= x <= hi. */
static dn_status clamp_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_tensor *x;
  dn_status st = dn_node_saved(node, CLAMP_SAVED_X, &x);
  if (st) return st;
  return run_grad_rule(&grad_in[0], GRAD_CLAMP, grad, x, NULL, node->scalars[CLAMP_LO], node->scalars[CLAMP_HI]);
}
static const dn_node_type clamp_node = {"clamp", clamp_backward};

dn_status dn_clamp(dn_tensor **out, const dn_tensor *a, double lo, double hi) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_dtype("clamp", a);
  if (st) return st;
  if (!isnan(lo) && !isnan(hi) && lo > hi)
    return dn_fail(DN_EINVAL, "clamp: lower bound %g is greater than upper bound %g", lo, hi);
  dn_dtype dtype =
    a->dtype == DN_I32 && int_compatible_bound(lo) && int_compatible_bound(hi) ? DN_I32 : DN_F32;
  dn_tensor *ca = NULL, *result = NULL;
  st = dn_to_dtype(&ca, (dn_tensor *)a, dtype);
  if (!st) st = dn_tensor_new(&result, dtype, a->ndim, a->shape);
  if (!st)
    st = run_job(&(ew_job){.segment = clamp_segment, .lo = lo, .hi = hi, .out = result, .in = {ca}, .nin = 1});
  dn_node *node = NULL;
  if (!st) st = dn_record(result, &clamp_node, 1, &a, &node);
  if (node) {
    node->scalars[CLAMP_LO] = lo;
    node->scalars[CLAMP_HI] = hi;
    st = dn_node_save(node, CLAMP_SAVED_X, ca);
  }
  dn_tensor_release(ca);
  if (st) dn_tensor_release(result);
  else *out = result;
  return st;
}

/* The saved slot of a where node: the condition. */
enum { WHERE_SAVED_COND };

/*
** The gradient goes to a where the condition holds and to b elsewhere, each
** summed to its own shape; the condition gets none.
*/
static dn_status where_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_tensor *cond, *zero = NULL;
  dn_status st = dn_node_saved(node, WHERE_SAVED_COND, &cond);
  if (!st) st = dn_tensor_zeros(&zero, DN_F32, 0, NULL);
  for (int i = 0; i < 2 && !st; i++) {
    if (!node->needs_grad[i]) continue;
    dn_tensor *full;
    st = i == 0 ? dn_where(&full, cond, grad, zero) : dn_where(&full, cond, zero, grad);
    if (st) break;
    st = dn_grad_for_input(&grad_in[i], node, i, full);
    dn_tensor_release(full);
  }
  dn_tensor_release(zero);
  return st;
}
static const dn_node_type where_node = {"where", where_backward};

dn_status dn_where(dn_tensor **out, const dn_tensor *cond, const dn_tensor *a, const dn_tensor *b) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_dtype("where", a);
  if (!st) st = check_dtype("where", b);
  if (st) return st;
  if (cond->dtype != DN_F32 && cond->dtype != DN_I32 && cond->dtype != DN_U8)
    return dn_fail(DN_ETYPE, "where: condition has an unknown dtype %d", (int)cond->dtype);
  int nd_ca, ndim;
  int64_t shape_ca[DN_MAX_DIMS], shape[DN_MAX_DIMS], size_x, size_y;
  int bad = broadcast_dims(cond->ndim, cond->shape, a->ndim, a->shape, &nd_ca, shape_ca, &size_x, &size_y);
  if (bad < 0) bad = broadcast_dims(nd_ca, shape_ca, b->ndim, b->shape, &ndim, shape, &size_x, &size_y);
  if (bad >= 0) {
    char cs[128], as[128], bs[128];
    return dn_fail(DN_ESHAPE,
                   "where: shapes %s (condition), %s and %s cannot be broadcast together (dim %d: %lld vs %lld)",
                   dn_shape_str(cond, cs, sizeof cs), dn_shape_str(a, as, sizeof as), dn_shape_str(b, bs, sizeof bs),
                   bad + 1, (long long)size_x, (long long)size_y);
  }
  dn_dtype dtype = a->dtype == DN_F32 || b->dtype == DN_F32 ? DN_F32 : DN_I32;
  dn_tensor *ca = NULL, *cb = NULL, *result = NULL;
  st = dn_to_dtype(&ca, (dn_tensor *)a, dtype);
  if (!st) st = dn_to_dtype(&cb, (dn_tensor *)b, dtype);
  if (!st) st = dn_tensor_new(&result, dtype, ndim, shape);
  if (!st)
    st = run_job(&(ew_job){.segment = where_segment, .out = result, .in = {cond, ca, cb}, .nin = 3});
  dn_node *node = NULL;
  if (!st) st = dn_record(result, &where_node, 2, (const dn_tensor *[]){a, b}, &node);
  if (node) st = dn_node_save(node, WHERE_SAVED_COND, cond);
  dn_tensor_release(ca);
  dn_tensor_release(cb);
  if (st) dn_tensor_release(result);
  else *out = result;
  return st;
}
