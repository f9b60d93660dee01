/*
** Reductions: sum, mean, var/std, max/min (with indices) over all elements
** or over one dim, forward and backward. One row per reduction in
** reductions[] (name, node, the partial it accumulates, result dtype,
** whether it takes a correction).
**
** The arithmetic (blocks of fixed boundaries, spans, lanes, columns: why a
** result never depends on the thread count) is reduce_engine.c's; this
** file checks arguments, shapes the outputs and drives the engine.
**
** Autograd: sum, mean, var, std and the values of max/min record a node
** (see "backward" below); argmax/argmin and index outputs do not.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dropnet/reduce.h"
#include "graph.h"
#include "internal.h"
#include "reduce_engine.h"
#include "shape.h"

/* The result dtype: float32, the input's, or (sum) int32 for an integer input. */
typedef enum result_rule { RESULT_F32, RESULT_INPUT, RESULT_SUM } result_rule;

static dn_status reduce_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in);

/* One row per reduce_kind. */
typedef struct reduction_info {
  dn_node_type node;        /* name and backward */
  const char *index_name;   /* the op that returns the positions only (argmax), or NULL */
  reduce_op op;
  result_rule result;
  bool corrected;           /* takes a correction (var, std) */
} reduction_info;

static const reduction_info reductions[] = {
  [K_SUM] = {{.name = "sum", .backward = reduce_backward}, NULL, RED_SUM, RESULT_SUM, false},
  [K_MEAN] = {{.name = "mean", .backward = reduce_backward}, NULL, RED_SUM, RESULT_F32, false},
  [K_VAR] = {{.name = "var", .backward = reduce_backward}, NULL, RED_MOMENTS, RESULT_F32, true},
  [K_STD] = {{.name = "std", .backward = reduce_backward}, NULL, RED_MOMENTS, RESULT_F32, true},
  [K_MAX] = {{.name = "max", .backward = reduce_backward}, "argmax", RED_MAX, RESULT_INPUT, false},
  [K_MIN] = {{.name = "min", .backward = reduce_backward}, "argmin", RED_MIN, RESULT_INPUT, false},
};
_Static_assert(sizeof reductions / sizeof reductions[0] == K_COUNT, "reductions: one row per reduce_kind");

/* Records the node of a reduction on out (dim -1: all elements). */
static dn_status record_reduction(dn_tensor *out, const dn_tensor *a, reduce_kind kind, int dim, int correction,
                                  const dn_tensor *indices, int64_t base);

static reduce_op op_of(reduce_kind kind) { return reductions[kind].op; }

static dn_dtype result_dtype(reduce_kind kind, dn_dtype in) {
  switch (reductions[kind].result) {
    case RESULT_F32: return DN_F32;
    case RESULT_INPUT: return in;
    case RESULT_SUM: return in == DN_F32 ? DN_F32 : DN_I32;
  }
  return DN_F32;
}

/* --- checks --------------------------------------------------------------------- */

static const char *kind_name(reduce_kind kind, bool index_only) {
  const reduction_info *r = &reductions[kind];
  return index_only && r->index_name ? r->index_name : r->node.name;
}

static dn_status check_correction(const char *name, reduce_kind kind, int correction) {
  if (reductions[kind].corrected && correction < 0)
    return dn_fail(DN_EINVAL, "%s: correction must be >= 0 (got %d)", name, correction);
  return DN_OK;
}

/* --- all elements ----------------------------------------------------------------- */

static dn_status reduce_all(dn_tensor **out, const dn_tensor *a, reduce_kind kind, int correction, bool want_index,
                            int64_t base) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const char *name = kind_name(kind, want_index);
  reduce_op op = op_of(kind);
  int64_t numel = dn_tensor_numel(a);
  dn_status st = check_correction(name, kind, correction);
  if (st) return st;
  if ((op == RED_MAX || op == RED_MIN) && numel == 0)
    return dn_fail(DN_EINVAL, "%s: cannot reduce an empty tensor", name);
  if (want_index && (st = dn_check_index_base(name, base, numel))) return st;

  span s;
  dn_span_of_tensor(&s, a);
  if (op == RED_SUM || op == RED_MOMENTS) dn_span_to_memory_order(&s);
  partial p;
  if ((st = dn_reduce_span(&p, op, &s, dn_threads_for(numel), name))) return st;
  double value;
  if (!dn_reduce_finish(&value, &p, kind, a->dtype == DN_F32, correction)) return dn_reduce_overflow_error(name, a);

  dn_tensor *r;
  if ((st = dn_tensor_new(&r, want_index ? DN_I32 : result_dtype(kind, a->dtype), 0, NULL))) return st;
  dn_store(r, 0, want_index ? (double)(p.at + base) : value);
  if (!want_index && (st = record_reduction(r, a, kind, -1, correction, NULL, 0))) {
    dn_tensor_release(r);
    return st;
  }
  *out = r;
  return DN_OK;
}

dn_status dn_sum_all(dn_tensor **out, const dn_tensor *a) { return reduce_all(out, a, K_SUM, 0, false, 0); }
dn_status dn_mean_all(dn_tensor **out, const dn_tensor *a) { return reduce_all(out, a, K_MEAN, 0, false, 0); }
dn_status dn_max_all(dn_tensor **out, const dn_tensor *a) { return reduce_all(out, a, K_MAX, 0, false, 0); }
dn_status dn_min_all(dn_tensor **out, const dn_tensor *a) { return reduce_all(out, a, K_MIN, 0, false, 0); }
dn_status dn_var_all(dn_tensor **out, const dn_tensor *a, int correction) {
  return reduce_all(out, a, K_VAR, correction, false, 0);
}
dn_status dn_std_all(dn_tensor **out, const dn_tensor *a, int correction) {
  return reduce_all(out, a, K_STD, correction, false, 0);
}
dn_status dn_argmax_all(dn_tensor **out, const dn_tensor *a, int64_t base) {
  return reduce_all(out, a, K_MAX, 0, true, base);
}
dn_status dn_argmin_all(dn_tensor **out, const dn_tensor *a, int64_t base) {
  return reduce_all(out, a, K_MIN, 0, true, base);
}

/* --- one dim ------------------------------------------------------------------------ */

static dn_status reduce_dim(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, reduce_kind kind,
                            int dim, bool keepdim, int correction, int64_t base) {
  DN_FPMODE_SCOPE();
  if (values) *values = NULL;
  if (indices) *indices = NULL;
  const char *name = kind_name(kind, false);
  char sb[128];
  /* a 0-dim tensor accepts dim 0 and -1, as in PyTorch */
  int d = a->ndim == 0 && dim == -1 ? 0 : dim;
  if (!dn_wrap_dim(&d, a->ndim))
    return dn_fail(DN_EINVAL, "%s: dim %d out of range for a %d-D tensor of shape %s", name, dim, a->ndim,
                   dn_shape_str(a, sb, sizeof sb));
  if (!values && !indices)
    return dn_fail(DN_EINVAL, "%s: no output requested (values and indices are NULL)", name);
  dn_status st = check_correction(name, kind, correction);
  if (st) return st;

  lanes g;
  dn_lanes_of(&g, a, d);
  /* max/min values that will be differentiated need their positions even
     when the caller does not ask for them */
  bool extremum = kind == K_MAX || kind == K_MIN;
  bool want_at = indices || (extremum && values && a->requires_grad && dn_grad_enabled());
  int64_t at_base = indices ? base : 0;
  if (extremum) {
    if (g.length == 0)
      return dn_fail(DN_EINVAL, "%s: cannot reduce dim %d of size 0 (shape %s)", name, dim,
                     dn_shape_str(a, sb, sizeof sb));
    if (want_at && (st = dn_check_index_base(name, at_base, g.length))) return st;
  }

  /* keepdim leaves the reduced dim as 1; a 0-dim input stays 0-dim */
  int64_t shape[DN_MAX_DIMS];
  int ndim = 0;
  for (int k = 0; k < a->ndim; k++) {
    if (k != d) shape[ndim++] = a->shape[k];
    else if (keepdim) shape[ndim++] = 1;
  }
  outputs o = {kind, op_of(kind), correction, at_base, NULL, NULL};
  if (values && (st = dn_tensor_new(&o.values, result_dtype(kind, a->dtype), ndim, shape))) return st;
  if (want_at && (st = dn_tensor_new(&o.indices, DN_I32, ndim, shape))) {
    dn_tensor_release(o.values);
    return st;
  }

  if (g.count > 0) {
    if (g.columns) st = dn_reduce_columns(&g, &o, name);
    else st = dn_reduce_lanes(&g, &o, name);
  }
  if (!st && values) st = record_reduction(o.values, a, kind, d, correction, o.indices, at_base);
  if (st) {
    dn_tensor_release(o.values);
    dn_tensor_release(o.indices);
    return st;
  }
  if (values) *values = o.values;
  if (indices) *indices = o.indices;
  else dn_tensor_release(o.indices);
  return DN_OK;
}

dn_status dn_sum_dim(dn_tensor **out, const dn_tensor *a, int dim, bool keepdim) {
  return reduce_dim(out, NULL, a, K_SUM, dim, keepdim, 0, 0);
}
dn_status dn_mean_dim(dn_tensor **out, const dn_tensor *a, int dim, bool keepdim) {
  return reduce_dim(out, NULL, a, K_MEAN, dim, keepdim, 0, 0);
}
dn_status dn_var_dim(dn_tensor **out, const dn_tensor *a, int dim, bool keepdim, int correction) {
  return reduce_dim(out, NULL, a, K_VAR, dim, keepdim, correction, 0);
}
dn_status dn_std_dim(dn_tensor **out, const dn_tensor *a, int dim, bool keepdim, int correction) {
  return reduce_dim(out, NULL, a, K_STD, dim, keepdim, correction, 0);
}
dn_status dn_max_dim(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int dim, bool keepdim,
                     int64_t base) {
  return reduce_dim(values, indices, a, K_MAX, dim, keepdim, 0, base);
}
dn_status dn_min_dim(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int dim, bool keepdim,
                     int64_t base) {
  return reduce_dim(values, indices, a, K_MIN, dim, keepdim, 0, base);
}

/* --- backward ----------------------------------------------------------------------- */

/*
** The input of a reduction is seen as [outer, size, inner], size being the
** reduced dim ([1, numel, 1] for all elements); the output's gradient, and
** whatever backward keeps per output, as [outer, inner]. The input's
** gradient is written contiguous in one pass where every element is
** computed on its own, so any split over threads gives the same bits.
**
** The rules follow PyTorch: sum spreads the gradient, mean divides it by
** the count; var gives 2 (x - mean) / (N - correction), std the same over
** 2 std (0 where std is 0), NaN when N - correction <= 0 (the result is NaN
** too); max/min over a dim send the gradient to the recorded position
** only; max/min of all elements share it evenly among the elements equal
** to the result (all NaNs when the result is NaN). var, std and max/min of
** all read the input again: a non-contiguous one is copied first.
*/
typedef enum grad_rule {
  G_SPREAD,      /* sum, mean: grad / divisor everywhere */
  G_DEVIATION,   /* var, std: (x - mean) * coef */
  G_SELECTED,    /* max/min over a dim: grad at the recorded position, 0 elsewhere */
  G_TIED         /* max/min of all: share at the elements equal to the extremum */
} grad_rule;

typedef struct grad_pass {
  grad_rule rule;
  int64_t outer, size, inner;
  const float *grad;          /* [outer, inner] */
  float divisor;              /* G_SPREAD */
  const float *x;             /* G_DEVIATION, G_TIED: the input, contiguous */
  const double *mean, *coef;  /* G_DEVIATION: [outer, inner] */
  const int32_t *at;          /* G_SELECTED: [outer, inner], counting from base */
  int64_t base;
  float extremum, share;      /* G_TIED */
  float *dx;                  /* [outer, size, inner] */
} grad_pass;

static void tied_run(float *dx, const float *x, int64_t n, float extremum, float share) {
  if (isnan(extremum)) {
    for (int64_t t = 0; t < n; t++) dx[t] = isnan(x[t]) ? share : 0.0f;
  } else {
    for (int64_t t = 0; t < n; t++) dx[t] = x[t] == extremum ? share : 0.0f;
  }
}

/* n elements of lane o from position s0 when inner == 1 (dx, x point at s0). */
static void lane_run(const grad_pass *w, int64_t o, int64_t s0, int64_t n, float *dx, const float *x) {
  switch (w->rule) {
    case G_SPREAD: {
      float v = w->grad[o] / w->divisor;
      for (int64_t t = 0; t < n; t++) dx[t] = v;
      break;
    }
    case G_DEVIATION: {
      double m = w->mean[o], c = w->coef[o];
      for (int64_t t = 0; t < n; t++) dx[t] = (float)(((double)x[t] - m) * c);
      break;
    }
    case G_SELECTED: {
      int64_t p = w->at[o] - w->base - s0;
      memset(dx, 0, (size_t)n * sizeof *dx);
      if (p >= 0 && p < n) dx[p] = w->grad[o];
      break;
    }
    case G_TIED: tied_run(dx, x, n, w->extremum, w->share); break;
  }
}

/* n elements of row (o, s) from column i0 when inner > 1 (dx, x point at i0). */
static void row_run(const grad_pass *w, int64_t o, int64_t s, int64_t i0, int64_t n, float *dx, const float *x) {
  int64_t j = o * w->inner + i0;
  const float *g = w->grad + j;
  switch (w->rule) {
    case G_SPREAD:
      if (w->divisor == 1.0f) {
        memcpy(dx, g, (size_t)n * sizeof *dx);
      } else {
        float divisor = w->divisor;
        for (int64_t t = 0; t < n; t++) dx[t] = g[t] / divisor;
      }
      break;
    case G_DEVIATION: {
      const double *mean = w->mean + j, *coef = w->coef + j;
      for (int64_t t = 0; t < n; t++) dx[t] = (float)(((double)x[t] - mean[t]) * coef[t]);
      break;
    }
    case G_SELECTED: {
      const int32_t *at = w->at + j;
      int32_t here = (int32_t)(s + w->base);
      for (int64_t t = 0; t < n; t++) dx[t] = at[t] == here ? g[t] : 0.0f;
      break;
    }
    case G_TIED: tied_run(dx, x, n, w->extremum, w->share); break;
  }
}

/* Elements [e0, e1) of dx, row-major, in runs that share a lane or a row. */
static void grad_range(const void *ctx, int64_t e0, int64_t e1) {
  const grad_pass *w = ctx;
  if (w->inner == 1) {
    int64_t o = e0 / w->size, s = e0 % w->size;
    for (int64_t e = e0; e < e1; s = 0, o++) {
      int64_t n = w->size - s < e1 - e ? w->size - s : e1 - e;
      lane_run(w, o, s, n, w->dx + e, w->x ? w->x + e : NULL);
      e += n;
    }
  } else {
    int64_t row = e0 / w->inner, i = e0 % w->inner;
    for (int64_t e = e0; e < e1; i = 0, row++) {
      int64_t n = w->inner - i < e1 - e ? w->inner - i : e1 - e;
      row_run(w, row / w->size, row % w->size, i, n, w->dx + e, w->x ? w->x + e : NULL);
      e += n;
    }
  }
}

static void grad_pass_run(const grad_pass *w) {
  dn_parallel_range(w->outer * w->size * w->inner, 1, grad_range, w);
}

/* coef = d(result)/d(x - mean) * grad per output; std is NULL for var. */
static void deviation_coefs(double *coef, const float *grad, const float *std, int64_t count, int64_t size,
                            int64_t correction) {
  double dof = (double)size - (double)correction;
  for (int64_t j = 0; j < count; j++) {
    if (!(dof > 0)) coef[j] = NAN;
    else if (!std) coef[j] = 2.0 * (double)grad[j] / dof;
    else coef[j] = std[j] == 0.0f ? 0.0 : (double)grad[j] / (dof * (double)std[j]);
  }
}

/* Tied elements of part `task` of x into the task's own slot of counts. */
typedef struct tie_count_job {
  const float *x;
  int64_t n;
  float extremum;
  int64_t *counts;
} tie_count_job;

static void count_tied_part(void *ctx, int task, int tasks) {
  const tie_count_job *j = ctx;
  int64_t count = 0, end = dn_split(j->n, task + 1, tasks);
  bool nan = isnan(j->extremum);
  for (int64_t i = dn_split(j->n, task, tasks); i < end; i++)
    count += nan ? isnan(j->x[i]) != 0 : j->x[i] == j->extremum;
  j->counts[task] = count;
}

/* Elements of x (contiguous, n of them) equal to the extremum (NaNs if it is NaN). */
static int64_t count_tied(const float *x, int64_t n, float extremum) {
  int64_t counts[DN_MAX_THREADS];
  tie_count_job job = {x, n, extremum, counts};
  int tasks = dn_threads_for(n);
  dn_parallel(tasks, count_tied_part, &job);
  int64_t count = 0;
  for (int t = 0; t < tasks; t++) count += counts[t];
  return count;
}

/*
** Node layout: ints[REDUCE_DIM] the dim (-1: all), [REDUCE_KIND], [REDUCE_BASE]
** the index base, [REDUCE_CORRECTION]; saved[SAVED_INPUT] the input (var,
** std, max/min of all), or saved[SAVED_POSITIONS] the positions (max/min
** over a dim: the same slot), saved[SAVED_RESULT] the result (std);
** scalars[REDUCE_EXTREMUM] the extremum (max/min of all).
*/
enum { REDUCE_DIM, REDUCE_KIND, REDUCE_BASE, REDUCE_CORRECTION };
enum { SAVED_INPUT = 0, SAVED_POSITIONS = 0, SAVED_RESULT = 1 };
enum { REDUCE_EXTREMUM };

/* [outer, size, inner] of the reduction's input. */
static void reduced_geometry(const dn_node *node, grad_pass *w) {
  int64_t dim = node->ints[REDUCE_DIM];
  w->outer = w->size = w->inner = 1;
  for (int d = 0; d < node->in_ndim[0]; d++) {
    int64_t extent = node->in_shape[0][d];
    if (dim < 0 || d == dim) w->size *= extent;
    else if (d < dim) w->outer *= extent;
    else w->inner *= extent;
  }
}

static dn_status reduce_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  reduce_kind kind = (reduce_kind)node->ints[REDUCE_KIND];
  const char *name = kind_name(kind, false);
  grad_pass w;
  memset(&w, 0, sizeof w);
  reduced_geometry(node, &w);
  dn_tensor *dx, *g = NULL, *held = NULL, *saved, *result;
  double *scratch = NULL;
  dn_status st = dn_tensor_new(&dx, DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (st) return st;
  if (dn_tensor_numel(dx) == 0) {
    grad_in[0] = dx;
    return DN_OK;
  }
  if ((st = dn_contiguous(&g, grad))) goto done;
  w.grad = dn_tensor_data(g);
  w.dx = dn_tensor_data(dx);
  switch (kind) {
    case K_SUM:
    case K_MEAN:
      w.rule = G_SPREAD;
      w.divisor = kind == K_MEAN ? (float)w.size : 1.0f;
      break;
    case K_VAR:
    case K_STD: {
      if ((st = dn_node_saved(node, SAVED_INPUT, &saved)) || (st = dn_contiguous(&held, saved))) goto done;
      const float *std = NULL;
      if (kind == K_STD) {
        if ((st = dn_node_saved(node, SAVED_RESULT, &result))) goto done;
        std = dn_tensor_data(result);   /* made contiguous by the forward */
      }
      int64_t count = w.outer * w.inner;
      scratch = malloc(2 * (size_t)count * sizeof *scratch);
      if (!scratch) {
        st = dn_fail(DN_ENOMEM, "%s backward: out of memory", name);
        goto done;
      }
      w.rule = G_DEVIATION;
      w.x = dn_tensor_data(held);
      w.mean = scratch;
      w.coef = scratch + count;
      if ((st = dn_lane_means(scratch, held, w.outer, w.size, w.inner, name))) goto done;
      deviation_coefs(scratch + count, w.grad, std, count, w.size, node->ints[REDUCE_CORRECTION]);
      break;
    }
    case K_MAX:
    case K_MIN: {
      bool all = node->ints[REDUCE_DIM] < 0;
      if ((st = dn_node_saved(node, all ? SAVED_INPUT : SAVED_POSITIONS, &saved)) ||
          (st = dn_contiguous(&held, saved)))
        goto done;
      if (all) {
        w.rule = G_TIED;
        w.x = dn_tensor_data(held);
        w.extremum = (float)node->scalars[REDUCE_EXTREMUM];
        w.share = w.grad[0] / (float)count_tied(w.x, w.size, w.extremum);
      } else {
        w.rule = G_SELECTED;
        w.at = dn_tensor_data(held);
        w.base = node->ints[REDUCE_BASE];
      }
      break;
    }
    case K_COUNT: break;
  }
  grad_pass_run(&w);
done:
  free(scratch);
  dn_tensor_release(held);
  dn_tensor_release(g);
  if (st) dn_tensor_release(dx);
  else grad_in[0] = dx;
  return st;
}

static dn_status record_reduction(dn_tensor *out, const dn_tensor *a, reduce_kind kind, int dim, int correction,
                                  const dn_tensor *indices, int64_t base) {
  dn_node *node;
  dn_status st = dn_record(out, &reductions[kind].node, 1, &a, &node);
  if (st || !node) return st;
  node->ints[REDUCE_DIM] = dim;
  node->ints[REDUCE_KIND] = kind;
  node->ints[REDUCE_BASE] = base;
  node->ints[REDUCE_CORRECTION] = correction;
  switch (kind) {
    case K_SUM:
    case K_MEAN: return DN_OK;
    case K_VAR: return dn_node_save(node, SAVED_INPUT, a);
    case K_STD: return (st = dn_node_save(node, SAVED_INPUT, a)) ? st : dn_node_save(node, SAVED_RESULT, out);
    case K_MAX:
    case K_MIN:
      if (dim >= 0) return dn_node_save(node, SAVED_POSITIONS, indices);
      node->scalars[REDUCE_EXTREMUM] = dn_load(out, out->offset);
      return dn_node_save(node, SAVED_INPUT, a);
    case K_COUNT: break;
  }
  return DN_OK;
}

/* --- summing a gradient down to an input's shape (graph.h) ------------------------- */

dn_status dn_sum_to_shape(dn_tensor **out, dn_tensor *grad, int ndim, const int64_t *shape) {
  *out = NULL;
  dn_tensor *g = dn_tensor_retain(grad);
  dn_status st = DN_OK;
  int lead = grad->ndim - ndim;
  /* sum away leading dims, then dims that were broadcast from size 1 */
  for (int d = 0; d < lead && !st; d++) {
    dn_tensor *s;
    st = dn_sum_dim(&s, g, 0, false);
    dn_tensor_release(g);
    g = s;
  }
  for (int d = 0; d < ndim && !st; d++) {
    if (shape[d] != 1 || g->shape[d] == 1) continue;
    dn_tensor *s;
    st = dn_sum_dim(&s, g, d, true);
    dn_tensor_release(g);
    g = s;
  }
  if (st) {
    dn_tensor_release(g);
    return st;
  }
  *out = g;
  return DN_OK;
}

dn_status dn_grad_for_input(dn_tensor **out, dn_node *node, int i, dn_tensor *grad) {
  return dn_sum_to_shape(out, grad, node->in_ndim[i], node->in_shape[i]);
}

