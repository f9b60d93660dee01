/*
** clamp (to bounds), where (by a condition) and masked_fill (a value where
** a mask holds): element-wise selections, forward and backward. Segments
** run through the element-wise driver (elementwise.c).
*/
#include <float.h>
#include <math.h>
#include <string.h>

#include "dropnet/elementwise.h"
#include "elementwise_job.h"
#include "graph.h"
#include "internal.h"

/* --- clamp ----------------------------------------------------------------------- */

/* An int32 clamp bound: none (NaN) or beyond the range saturates to `none_value`'s side. */
static int32_t int_bound(double bound, int32_t none_value) {
  if (isnan(bound)) return none_value;
  if (bound <= INT32_MIN) return INT32_MIN;
  if (bound >= INT32_MAX) return INT32_MAX;
  return (int32_t)bound;
}

/* Comparisons are false for NaN, so a NaN input passes through. */
static void clamp_segment(const dn_ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
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

/* Bounds an int32 tensor can be clamped to and stay int32: none, integral or infinite. */
static bool int_compatible_bound(double bound) { return isnan(bound) || isinf(bound) || bound == floor(bound); }

/* The gradient where lo <= x <= hi (NaN bound: none), else 0; in = {g, x}. */
static DN_ALWAYS_INLINE void clamp_grad_loop(float *out, int64_t so, const float *g, int64_t sg, const float *x,
                                             int64_t sx, float lo, float hi, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    float xi = x[i * sx];
    out[i * so] = xi >= lo && xi <= hi ? g[i * sg] : 0.0f;
  }
}

/* The gradient, x and the result all contiguous (the common case) get a unit-stride copy. */
static void clamp_grad_segment(const dn_ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                               int64_t n) {
  float lo = isnan(job->lo) ? -INFINITY : (float)job->lo, hi = isnan(job->hi) ? INFINITY : (float)job->hi;
  if (so == 1 && si[0] == 1 && si[1] == 1) clamp_grad_loop(out, 1, in[0], 1, in[1], 1, lo, hi, n);
  else clamp_grad_loop(out, so, in[0], si[0], in[1], si[1], lo, hi, n);
}

/* node->scalars and saved slot of a clamp node: the bounds (NaN for none) and x. */
enum { CLAMP_LO, CLAMP_HI };
enum { CLAMP_SAVED_X };

/* Passes the gradient where lo <= x <= hi. */
static dn_status clamp_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_tensor *x;
  dn_status st = dn_node_saved(node, CLAMP_SAVED_X, &x);
  if (st) return st;
  return dn_ew_run_grad(&grad_in[0], clamp_grad_segment, 0, grad, x, NULL, node->scalars[CLAMP_LO],
                        node->scalars[CLAMP_HI]);
}
static const dn_node_type clamp_node = {.name = "clamp", .backward = clamp_backward};

dn_status dn_clamp(dn_tensor **out, const dn_tensor *a, double lo, double hi) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = dn_ew_check_dtype("clamp", a);
  if (st) return st;
  if (!isnan(lo) && !isnan(hi) && lo > hi)
    return dn_fail(DN_EINVAL, "clamp: lower bound %g is greater than upper bound %g", lo, hi);
  dn_dtype dtype =
    a->dtype == DN_I32 && int_compatible_bound(lo) && int_compatible_bound(hi) ? DN_I32 : DN_F32;
  dn_tensor *ca = NULL, *result = NULL;
  st = dn_to_dtype(&ca, (dn_tensor *)a, dtype);
  if (!st) st = dn_tensor_new(&result, dtype, a->ndim, a->shape);
  if (!st)
    st = dn_ew_run(&(dn_ew_job){.segment = clamp_segment, .lo = lo, .hi = hi, .out = result, .in = {ca}, .nin = 1});
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

/* --- where ----------------------------------------------------------------------- */

/* in[0] is the condition (any dtype, nonzero is true; NaN counts as true). */
static void where_segment(const dn_ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
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
static const dn_node_type where_node = {.name = "where", .backward = where_backward};

dn_status dn_where(dn_tensor **out, const dn_tensor *cond, const dn_tensor *a, const dn_tensor *b) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = dn_ew_check_dtype("where", a);
  if (!st) st = dn_ew_check_dtype("where", b);
  if (st) return st;
  if (cond->dtype != DN_F32 && cond->dtype != DN_I32 && cond->dtype != DN_U8)
    return dn_fail(DN_ETYPE, "where: condition has an unknown dtype %d", (int)cond->dtype);
  int nd_ca, ndim;
  int64_t shape_ca[DN_MAX_DIMS], shape[DN_MAX_DIMS], size_x, size_y;
  int bad = dn_broadcast_dims(cond->ndim, cond->shape, a->ndim, a->shape, &nd_ca, shape_ca, &size_x, &size_y);
  if (bad < 0) bad = dn_broadcast_dims(nd_ca, shape_ca, b->ndim, b->shape, &ndim, shape, &size_x, &size_y);
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
    st = dn_ew_run(&(dn_ew_job){.segment = where_segment, .out = result, .in = {cond, ca, cb}, .nin = 3});
  dn_node *node = NULL;
  if (!st) st = dn_record(result, &where_node, 2, (const dn_tensor *[]){a, b}, &node);
  if (node) st = dn_node_save(node, WHERE_SAVED_COND, cond);
  dn_tensor_release(ca);
  dn_tensor_release(cb);
  if (st) dn_tensor_release(result);
  else *out = result;
  return st;
}


/* --- masked_fill ------------------------------------------------------------------ */

/* in = {x, mask}: job->lo where the mask (any dtype, nonzero is true; NaN counts as true) holds, else x. */
static void masked_fill_segment(const dn_ew_job *job, void *out, int64_t so, void *const *in, const int64_t *si,
                                int64_t n) {
  int64_t sx = si[0], sm = si[1];
  dn_dtype mask_dtype = job->in[1]->dtype;
  const float *mf = in[1];
  const int32_t *mi = in[1];
  const uint8_t *mu = in[1];
  if (job->out->dtype == DN_F32) {
    float *o = out, v = (float)job->lo;
    const float *x = in[0];
    switch (mask_dtype) {
      case DN_F32: for (int64_t i = 0; i < n; i++) o[i * so] = mf[i * sm] != 0 ? v : x[i * sx]; break;
      case DN_I32: for (int64_t i = 0; i < n; i++) o[i * so] = mi[i * sm] != 0 ? v : x[i * sx]; break;
      case DN_U8: for (int64_t i = 0; i < n; i++) o[i * so] = mu[i * sm] != 0 ? v : x[i * sx]; break;
    }
  } else {
    int32_t *o = out, v = (int32_t)job->lo;   /* checked to fit by the op */
    const int32_t *x = in[0];
    switch (mask_dtype) {
      case DN_F32: for (int64_t i = 0; i < n; i++) o[i * so] = mf[i * sm] != 0 ? v : x[i * sx]; break;
      case DN_I32: for (int64_t i = 0; i < n; i++) o[i * so] = mi[i * sm] != 0 ? v : x[i * sx]; break;
      case DN_U8: for (int64_t i = 0; i < n; i++) o[i * so] = mu[i * sm] != 0 ? v : x[i * sx]; break;
    }
  }
}

/* The checks both forms share: dtypes and the value. */
static dn_status check_masked_fill(const char *op, const dn_tensor *a, const dn_tensor *mask, double value) {
  dn_status st = dn_ew_check_dtype(op, a);
  if (st) return st;
  if (mask->dtype != DN_F32 && mask->dtype != DN_I32 && mask->dtype != DN_U8)
    return dn_fail(DN_ETYPE, "%s: mask has an unknown dtype %d", op, (int)mask->dtype);
  /* a finite double beyond float32's range has no float32 (converting it is undefined) */
  if (!dn_value_fits(a->dtype, value) || (a->dtype == DN_F32 && isfinite(value) && fabs(value) > FLT_MAX))
    return dn_fail(DN_EINVAL, "%s: value %g is not representable as %s", op, value, dn_dtype_name(a->dtype));
  return DN_OK;
}

/* The saved slot of a masked_fill node: the mask. */
enum { MASKED_SAVED_MASK };

/* The gradient passes where the mask does not hold, summed to a's shape. */
static dn_status masked_fill_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  dn_tensor *mask, *full;
  dn_status st = dn_node_saved(node, MASKED_SAVED_MASK, &mask);
  if (!st) st = dn_ew_run_grad(&full, masked_fill_segment, 0, grad, mask, NULL, 0.0, NAN);
  if (st) return st;
  st = dn_grad_for_input(&grad_in[0], node, 0, full);
  dn_tensor_release(full);
  return st;
}
static const dn_node_type masked_fill_node = {.name = "masked_fill", .backward = masked_fill_backward};

dn_status dn_masked_fill(dn_tensor **out, const dn_tensor *a, const dn_tensor *mask, double value) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_masked_fill("masked_fill", a, mask, value);
  if (st) return st;
  int ndim;
  int64_t shape[DN_MAX_DIMS], size_a, size_m;
  if (dn_broadcast_dims(a->ndim, a->shape, mask->ndim, mask->shape, &ndim, shape, &size_a, &size_m) >= 0) {
    char as[128], ms[128];
    return dn_fail(DN_ESHAPE, "masked_fill: the tensor's shape %s and the mask's %s cannot be broadcast together",
                   dn_shape_str(a, as, sizeof as), dn_shape_str(mask, ms, sizeof ms));
  }
  dn_tensor *result;
  st = dn_tensor_new(&result, a->dtype, ndim, shape);
  if (st) return st;
  st = dn_ew_run(&(dn_ew_job){.segment = masked_fill_segment, .lo = value, .out = result, .in = {a, mask}, .nin = 2});
  dn_node *node = NULL;
  if (!st) st = dn_record(result, &masked_fill_node, 1, &a, &node);
  if (node) st = dn_node_save(node, MASKED_SAVED_MASK, mask);
  if (st) dn_tensor_release(result);
  else *out = result;
  return st;
}

dn_status dn_masked_fill_(dn_tensor *a, const dn_tensor *mask, double value) {
  DN_FPMODE_SCOPE();
  dn_status st = dn_check_inplace("masked_fill_", a);
  if (!st) st = check_masked_fill("masked_fill_", a, mask, value);
  if (st) return st;
  int ndim;
  int64_t shape[DN_MAX_DIMS], size_a, size_m;
  int bad = dn_broadcast_dims(a->ndim, a->shape, mask->ndim, mask->shape, &ndim, shape, &size_a, &size_m);
  if (bad >= 0 || ndim != a->ndim || memcmp(shape, a->shape, (size_t)ndim * sizeof *shape) != 0) {
    char as[128], ms[128];
    return dn_fail(DN_ESHAPE, "masked_fill_: the mask's shape %s cannot be broadcast to the tensor's shape %s",
                   dn_shape_str(mask, ms, sizeof ms), dn_shape_str(a, as, sizeof as));
  }
  if ((st = dn_check_writable("masked_fill_", a))) return st;
  /* a mask in a's own memory is read from a copy: the writes must not change what is read later */
  dn_tensor *m = dn_tensor_retain((dn_tensor *)mask);
  if (mask->storage == a->storage) {
    dn_tensor_release(m);
    if ((st = dn_plain_clone(&m, mask))) return st;
  }
  st = dn_ew_run(&(dn_ew_job){.segment = masked_fill_segment, .lo = value, .out = a, .in = {a, m}, .nin = 2});
  dn_tensor_release(m);
  if (!st) dn_bump_version(a);
  return st;
}
