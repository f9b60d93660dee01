/*
** Unary element-wise ops: neg, exp, log, sqrt, abs, relu, sigmoid, tanh,
** forward and backward. One row per op in unops[] (name, node, int32
** behaviour, what backward reads); the kernels are one case per op.
**
** dtypes: neg, abs and relu keep int32 (neg and abs fail on -INT32_MIN,
** which has no int32 negation); the others compute in float32. Segments run
** through the element-wise driver (elementwise.c).
*/
#include <math.h>
#include <stdio.h>

#include "dropnet/elementwise.h"
#include "elementwise_job.h"
#include "graph.h"
#include "internal.h"

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
  [DN_NEG] = {{.name = "neg", .backward = unary_backward}, true, "-", SAVES_NOTHING},
  [DN_EXP] = {{.name = "exp", .backward = unary_backward}, false, NULL, SAVES_OUTPUT},
  [DN_LOG] = {{.name = "log", .backward = unary_backward}, false, NULL, SAVES_INPUT},
  [DN_SQRT] = {{.name = "sqrt", .backward = unary_backward}, false, NULL, SAVES_OUTPUT},
  [DN_ABS] = {{.name = "abs", .backward = unary_backward}, true, "abs", SAVES_INPUT},
  [DN_RELU] = {{.name = "relu", .backward = unary_backward}, true, NULL, SAVES_OUTPUT},
  [DN_SIGMOID] = {{.name = "sigmoid", .backward = unary_backward}, false, NULL, SAVES_OUTPUT},
  [DN_TANH] = {{.name = "tanh", .backward = unary_backward}, false, NULL, SAVES_OUTPUT},
};
_Static_assert(sizeof unops / sizeof unops[0] == DN_UNOP_COUNT, "unops: one row per dn_unop");

static bool unop_valid(dn_unop op) { return (unsigned)op < (unsigned)DN_UNOP_COUNT; }

const char *dn_unop_name(dn_unop op) { return unop_valid(op) ? unops[op].node.name : "unknown"; }

/* The error for an int32 overflow noted while computing op. */
static dn_status unary_overflow_error(const char *name, dn_unop op, const dn_i32_overflow *o) {
  char what[96];
  snprintf(what, sizeof what, "%s(%lld)", unops[op].overflow_prefix, (long long)o->x);
  return dn_overflow_error(name, what);
}

/* node->ints of a unary node; its one saved slot holds the input or the output (unop_info's saves). */
enum { UNARY_OP };
enum { SAVED_OPERAND };

/* --- forward kernels ------------------------------------------------------------- */

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

/* The unary ops that keep int32 (the others convert to float32 first); -INT32_MIN does not fit. */
static void i32_unary(dn_unop op, int32_t *out, int64_t so, const int32_t *a, int64_t sa, int64_t n,
                      dn_i32_overflow *overflow) {
  switch (op) {
    case DN_NEG:
    case DN_ABS:
      for (int64_t i = 0; i < n; i++) {
        int32_t x = a[i * sa];
        if (__builtin_expect(x == INT32_MIN, 0)) {
          dn_note_overflow(overflow, &out[i * so], x, 0);
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

static void unary_segment(const dn_ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                          int64_t n) {
  if (job->out->dtype == DN_F32) f32_unary((dn_unop)job->op, out, so, in[0], si[0], n);
  else i32_unary((dn_unop)job->op, out, so, in[0], si[0], n, job->overflow);
}

/* --- backward kernels ------------------------------------------------------------ */

/*
** d(out)/d(input) of the ops whose backward reads a saved operand, each as
** one pass: out = rule(g, x) with g the incoming gradient and x the saved
** input or output (unop_info's saves). Float32 only (gradients are). At kinks
** they give what PyTorch's derivatives give.
*/
typedef enum grad_rule {
  GRAD_EXP,      /* x = output: g * x */
  GRAD_LOG,      /* g / x */
  GRAD_ABS,      /* g * sign(x), 0 at 0 */
  GRAD_RELU,     /* x = output: 0 where x <= 0 */
  GRAD_SIGMOID,  /* x = output: g * x * (1 - x) */
  GRAD_TANH,     /* x = output: g * (1 - x * x) */
  GRAD_SQRT      /* x = output: g / (2 * x) */
} grad_rule;

static DN_ALWAYS_INLINE void grad_loop(grad_rule rule, float *out, int64_t so, const float *g, int64_t sg,
                                       const float *x, int64_t sx, int64_t n) {
  switch (rule) {
    case GRAD_EXP:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = g[i * sg] * x[i * sx];
      break;
    case GRAD_LOG:
#pragma omp simd
      for (int64_t i = 0; i < n; i++) out[i * so] = g[i * sg] / x[i * sx];
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
  }
}

/* The gradient, the operand and the result all contiguous (the common case) get a unit-stride copy. */
static void grad_segment(const dn_ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                         int64_t n) {
  grad_rule rule = (grad_rule)job->op;
  if (so == 1 && si[0] == 1 && si[1] == 1) grad_loop(rule, out, 1, in[0], 1, in[1], 1, n);
  else grad_loop(rule, out, so, in[0], si[0], in[1], si[1], n);
}

/* out = rule(grad, x) in grad's shape. */
static dn_status run_grad_rule(dn_tensor **out, grad_rule rule, const dn_tensor *grad, const dn_tensor *x) {
  return dn_ew_run_grad(out, grad_segment, rule, grad, x, NULL, NAN, NAN);
}

/* --- the ops --------------------------------------------------------------------- */

static dn_status unary_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_unop op = (dn_unop)node->ints[UNARY_OP];
  if (unops[op].saves == SAVES_NOTHING) return dn_unary(&grad_in[0], DN_NEG, grad);   /* neg */
  dn_tensor *saved;
  dn_status st = dn_node_saved(node, SAVED_OPERAND, &saved);
  if (st) return st;
  switch (op) {
    case DN_EXP: return run_grad_rule(&grad_in[0], GRAD_EXP, grad, saved);   /* e^x */
    case DN_LOG: return run_grad_rule(&grad_in[0], GRAD_LOG, grad, saved);   /* 1/x */
    case DN_SQRT: return run_grad_rule(&grad_in[0], GRAD_SQRT, grad, saved);
    case DN_ABS: return run_grad_rule(&grad_in[0], GRAD_ABS, grad, saved);
    case DN_RELU: return run_grad_rule(&grad_in[0], GRAD_RELU, grad, saved);
    case DN_SIGMOID: return run_grad_rule(&grad_in[0], GRAD_SIGMOID, grad, saved);
    case DN_TANH: return run_grad_rule(&grad_in[0], GRAD_TANH, grad, saved);
    case DN_NEG:
    case DN_UNOP_COUNT: break;
  }
  return DN_OK;
}

dn_status dn_unary(dn_tensor **out, dn_unop op, const dn_tensor *a) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  if (!unop_valid(op)) return dn_fail(DN_EINVAL, "unary: unknown op %d", (int)op);
  dn_status st = dn_ew_check_dtype(dn_unop_name(op), a);
  if (st) return st;
  dn_dtype dtype = a->dtype == DN_I32 && unops[op].keeps_int ? DN_I32 : DN_F32;
  dn_tensor *ca = NULL, *result = NULL;
  st = dn_to_dtype(&ca, (dn_tensor *)a, dtype);
  if (!st) st = dn_tensor_new(&result, dtype, a->ndim, a->shape);
  dn_i32_overflow overflow = {0};
  if (!st)
    st = dn_ew_run(&(dn_ew_job){.segment = unary_segment, .op = op, .out = result, .in = {ca}, .nin = 1,
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
  if (!st) st = dn_ew_check_dtype(name, a);
  if (st) return st;
  if (a->dtype == DN_I32 && !unops[op].keeps_int)
    return dn_fail(DN_ETYPE, "%s: %s of int32 is float32 and cannot be stored in place into int32", name,
                   dn_unop_name(op));
  st = dn_check_writable(name, a);
  if (st) return st;
  dn_i32_overflow overflow = {0};
  if (a->dtype == DN_I32 && unops[op].overflow_prefix) {
    /* computed aside and copied in (which bumps the version): an overflow leaves a as it was */
    dn_tensor *result;
    st = dn_tensor_new(&result, DN_I32, a->ndim, a->shape);
    if (!st)
      st = dn_ew_run(&(dn_ew_job){.segment = unary_segment, .op = op, .out = result, .in = {a}, .nin = 1,
                             .overflow = &overflow});
    if (!st && overflow.hit) st = unary_overflow_error(name, op, &overflow);
    if (!st) st = dn_copy_into(a, result);
    dn_tensor_release(result);
    return st;
  }
  st = dn_ew_run(&(dn_ew_job){.segment = unary_segment, .op = op, .out = a, .in = {a}, .nin = 1, .overflow = &overflow});
  if (!st) dn_bump_version(a);
  return st;
}

