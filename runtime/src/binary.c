/*
** Binary element-wise ops with broadcasting and dtype promotion:
** add, sub, mul, div, pow, the comparisons (eq, ne, lt, le, gt, ge: 0/1,
** not differentiable), maximum and minimum; forward and backward. One row
** per op in binops[] (name, node, int32 result, overflow symbol, what
** backward reads); the kernels are one case per op.
**
** Segments run through the element-wise driver (elementwise.c); int32
** add, sub, mul and pow fail on overflow instead of wrapping around.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dropnet/elementwise.h"
#include "elementwise_job.h"
#include "graph.h"
#include "internal.h"

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
  [DN_ADD] = {{.name = "add", .backward = binary_backward}, INT_STAYS, "+", {0, 0}},
  [DN_SUB] = {{.name = "sub", .backward = binary_backward}, INT_STAYS, "-", {0, 0}},
  [DN_MUL] = {{.name = "mul", .backward = binary_backward}, INT_STAYS, "*", {READS_B, READS_A}},
  [DN_DIV] = {{.name = "div", .backward = binary_backward}, INT_TO_FLOAT, NULL, {READS_B, READS_A | READS_B}},
  [DN_POW] = {{.name = "pow", .backward = binary_backward},
                  INT_STAYS_UNLESS_NEGATIVE_EXPONENT, "^", {READS_A | READS_B, READS_A | READS_B}},
  [DN_EQ] = {{.name = "eq", .backward = NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_NE] = {{.name = "ne", .backward = NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_LT] = {{.name = "lt", .backward = NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_LE] = {{.name = "le", .backward = NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_GT] = {{.name = "gt", .backward = NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_GE] = {{.name = "ge", .backward = NULL}, INT_STAYS, NULL, {0, 0}},
  [DN_MAXIMUM] = {{.name = "maximum", .backward = binary_backward},
                  INT_STAYS, NULL, {READS_A | READS_B, READS_A | READS_B}},
  [DN_MINIMUM] = {{.name = "minimum", .backward = binary_backward},
                  INT_STAYS, NULL, {READS_A | READS_B, READS_A | READS_B}},
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

/* --- forward kernels ------------------------------------------------------------- */

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
    if (__builtin_expect(builtin(x, y, &r), 0)) dn_note_overflow(overflow, &out[i * so], x, y); \
    out[i * so] = r;                                                                         \
  }

/* int32 op int32 for the ops that stay int32 (div never does). */
static void i32_binary(dn_binop op, int32_t *out, int64_t so, const int32_t *a, int64_t sa, const int32_t *b,
                       int64_t sb, int64_t n, dn_i32_overflow *overflow) {
  switch (op) {
    case DN_ADD: I32_CHECKED_LOOP(__builtin_add_overflow) break;
    case DN_SUB: I32_CHECKED_LOOP(__builtin_sub_overflow) break;
    case DN_MUL: I32_CHECKED_LOOP(__builtin_mul_overflow) break;
    case DN_POW:
      for (int64_t i = 0; i < n; i++) {
        int32_t x = a[i * sa], y = b[i * sb], r;
        if (!i32_pow(x, y, &r)) dn_note_overflow(overflow, &out[i * so], x, y);
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

static void binary_segment(const dn_ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                           int64_t n) {
  if (job->out->dtype == DN_F32) f32_binary((dn_binop)job->op, out, so, in[0], si[0], in[1], si[1], n);
  else i32_binary((dn_binop)job->op, out, so, in[0], si[0], in[1], si[1], n, job->overflow);
}


/* --- backward kernels ------------------------------------------------------------ */

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
  GRAD_PICK_LESS          /* min(x, y) for x: g where x < y (or NaN), g/2 on a tie, 0 where x > y */
} grad_rule;

static DN_ALWAYS_INLINE void grad_loop(grad_rule rule, float *out, int64_t so, const float *g, int64_t sg,
                                       const float *x, int64_t sx, const float *y, int64_t sy, int64_t n) {
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
  }
}

/* The gradient, the operands and the result all contiguous (the common case) get a unit-stride copy. */
static void grad_segment(const dn_ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                         int64_t n) {
  grad_rule rule = (grad_rule)job->op;
  if (so == 1 && si[0] == 1 && si[1] == 1 && si[2] == 1)
    grad_loop(rule, out, 1, in[0], 1, in[1], 1, in[2], 1, n);
  else
    grad_loop(rule, out, so, in[0], si[0], in[1], si[1], in[2], si[2], n);
}

/* out = rule(grad, x, y) in grad's shape (x and y broadcast to it). */
static dn_status run_grad_rule(dn_tensor **out, grad_rule rule, const dn_tensor *grad, const dn_tensor *x,
                               const dn_tensor *y) {
  return dn_ew_run_grad(out, grad_segment, rule, grad, x, y, NAN, NAN);
}

/* --- in-place and scalar operands -------------------------------------------------- */

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

/* --- the ops --------------------------------------------------------------------- */

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
    case DN_SUB:
      if (i == 1) return dn_unary(out, DN_NEG, grad);
      *out = dn_tensor_retain(grad);
      return DN_OK;
    case DN_MUL: return dn_binary(out, DN_MUL, grad, i == 0 ? b : a);
    case DN_DIV:
      return i == 0 ? dn_binary(out, DN_DIV, grad, b) : run_grad_rule(out, GRAD_DIV_DENOMINATOR, grad, a, b);
    case DN_POW: return run_grad_rule(out, i == 0 ? GRAD_POW_BASE : GRAD_POW_EXPONENT, grad, a, b);
    case DN_MAXIMUM: return run_grad_rule(out, GRAD_PICK_GREATER, grad, i == 0 ? a : b, i == 0 ? b : a);
    case DN_MINIMUM: return run_grad_rule(out, GRAD_PICK_LESS, grad, i == 0 ? a : b, i == 0 ? b : a);
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
static dn_status binary_overflow_error(const char *name, dn_binop op, const dn_i32_overflow *o) {
  char what[96];
  snprintf(what, sizeof what, "%lld %s %lld", (long long)o->x, binops[op].overflow_symbol, (long long)o->y);
  return dn_overflow_error(name, what);
}

dn_status dn_binary(dn_tensor **out, dn_binop op, const dn_tensor *a, const dn_tensor *b) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  if (!binop_valid(op)) return dn_fail(DN_EINVAL, "binary: unknown op %d", (int)op);
  const char *name = dn_binop_name(op);
  dn_status st = dn_ew_check_dtype(name, a);
  if (!st) st = dn_ew_check_dtype(name, b);
  int ndim;
  int64_t shape[DN_MAX_DIMS];
  if (!st) st = dn_broadcast_shape(name, a, b, &ndim, shape);
  if (st) return st;

  dn_dtype dtype = binary_result_dtype(op, a, b);
  dn_tensor *ca = NULL, *cb = NULL, *result = NULL;
  st = dn_to_dtype(&ca, (dn_tensor *)a, dtype);
  if (!st) st = dn_to_dtype(&cb, (dn_tensor *)b, dtype);
  if (!st) st = dn_tensor_new(&result, dtype, ndim, shape);
  dn_i32_overflow overflow = {0};
  if (!st)
    st = dn_ew_run(&(dn_ew_job){.segment = binary_segment, .op = op, .out = result, .in = {ca, cb}, .nin = 2,
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
  dn_status st = dn_ew_check_dtype(dn_binop_name(op), a);
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
  if (!st) st = dn_ew_check_dtype(name, a);
  if (!st) st = dn_ew_check_dtype(name, b);
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
  dn_i32_overflow overflow = {0};
  if (a->dtype == DN_I32 && binop_can_overflow(op)) {
    /* computed aside and copied in (which bumps the version): an overflow leaves a as it was */
    dn_tensor *result;
    st = dn_tensor_new(&result, DN_I32, a->ndim, a->shape);
    if (!st)
      st = dn_ew_run(&(dn_ew_job){.segment = binary_segment, .op = op, .out = result, .in = {a, other}, .nin = 2,
                             .overflow = &overflow});
    if (!st && overflow.hit) st = binary_overflow_error(name, op, &overflow);
    if (!st) st = dn_copy_into(a, result);
    dn_tensor_release(result);
  } else {
    st = dn_ew_run(&(dn_ew_job){.segment = binary_segment, .op = op, .out = a, .in = {a, other}, .nin = 2,
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
  if (!st) st = dn_ew_check_dtype(name, a);
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

