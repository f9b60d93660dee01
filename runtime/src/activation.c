/*
** Activations with their backward: leaky ReLU, ELU, SELU, GELU (pointwise)
** and softmax, log-softmax (over one dim).
**
** Pointwise ops write a new contiguous output from an input of any layout:
** contiguous operands run as one flat range split over threads, others row
** by row (last dim). Each element is computed on its own, so the split does
** not change the bits. Softmax works on "lanes": the 1-D slices along dim,
** found by aliasing dim to the last position (dn_row_offset then walks them
** for any strides, broadcast gradients included). Each lane is reduced by one
** thread in a fixed order.
*/
#include <string.h>

#include "dropnet/autograd.h"
#include "dropnet/nn.h"
#include "graph.h"
#include "internal.h"

/* SELU's constants (Klambauer et al. 2017), as PyTorch spells them. */
#define SELU_ALPHA 1.6732632423543772848170429916717
#define SELU_SCALE 1.0507009873554804934193349852946

/* --- pointwise activations ------------------------------------------------------ */

typedef enum pointwise_kind { LEAKY_RELU, ELU, GELU_ERF, GELU_TANH } pointwise_kind;

/* ELU covers SELU: scale * (x > 0 ? x : alpha * (exp(x) - 1)). */
typedef struct pointwise {
  pointwise_kind kind;
  float alpha;   /* leaky ReLU's slope, ELU's alpha */
  float scale;   /* ELU's output scale (1 for ELU, SELU's scale) */
} pointwise;

static const float SQRT1_2 = 0.70710678118654752440f;     /* 1/sqrt(2) */
static const float INV_SQRT_2PI = 0.39894228040143267794f; /* 1/sqrt(2 pi) */
static const float SQRT_2_PI = 0.79788456080286535588f;    /* sqrt(2/pi) */
static const float GELU_KAPPA = 0.044715f;

static DN_ALWAYS_INLINE float pointwise_value(const pointwise *p, float x) {
  switch (p->kind) {
    case LEAKY_RELU: return x > 0.0f ? x : x * p->alpha;
    case ELU: return x > 0.0f ? p->scale * x : p->scale * p->alpha * expm1f(x);
    case GELU_ERF: return 0.5f * x * (1.0f + erff(x * SQRT1_2));
    case GELU_TANH: return 0.5f * x * (1.0f + tanhf(SQRT_2_PI * (x + GELU_KAPPA * x * x * x)));
  }
  return x;
}

/* d value / d x at x (PyTorch's formulas). */
static DN_ALWAYS_INLINE float pointwise_derivative(const pointwise *p, float x) {
  switch (p->kind) {
    case LEAKY_RELU: return x > 0.0f ? 1.0f : p->alpha;
    case ELU: return x > 0.0f ? p->scale : p->scale * p->alpha * expf(x);
    case GELU_ERF: return 0.5f * (1.0f + erff(x * SQRT1_2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
    case GELU_TANH: {
      float inner = SQRT_2_PI * (x + GELU_KAPPA * x * x * x), t = tanhf(inner);
      float inner_derivative = SQRT_2_PI * (1.0f + 3.0f * GELU_KAPPA * x * x);
      return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * inner_derivative;
    }
  }
  return 1.0f;
}

/* n elements: out[i] = f(x[i * sx]), or with g: out[i] = g[i * sg] * f'(x[i * sx]). */
static DN_ALWAYS_INLINE void pointwise_loop(const pointwise *p, float *out, const float *x, int64_t sx, const float *g,
                                         int64_t sg, int64_t n) {
  if (g) {
    for (int64_t i = 0; i < n; i++) out[i] = g[i * sg] * pointwise_derivative(p, x[i * sx]);
  } else if (p->kind == LEAKY_RELU) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = pointwise_value(p, x[i * sx]);
  } else {
    for (int64_t i = 0; i < n; i++) out[i] = pointwise_value(p, x[i * sx]);
  }
}

static void pointwise_segment(const pointwise *p, float *out, const float *x, int64_t sx, const float *g,
                              int64_t sg, int64_t n) {
  if (sx == 1 && (!g || sg == 1)) pointwise_loop(p, out, x, 1, g, 1, n);
  else pointwise_loop(p, out, x, sx, g, sg, n);
}

typedef struct pointwise_job {
  const pointwise *p;
  float *o;                  /* the output, contiguous */
  const dn_tensor *x, *g;    /* g may be NULL */
} pointwise_job;

/* Elements [begin, end) of contiguous operands. */
static void pointwise_flat(const void *ctx, int64_t begin, int64_t end) {
  const pointwise_job *j = ctx;
  const float *xd = dn_tensor_data(j->x), *gd = j->g ? dn_tensor_data(j->g) : NULL;
  pointwise_segment(j->p, j->o + begin, xd + begin, 1, gd ? gd + begin : NULL, 1, end - begin);
}

/* Rows [r0, r1) (the last dim) of operands of any strides. */
static void pointwise_rows(const void *ctx, int64_t r0, int64_t r1) {
  const pointwise_job *j = ctx;
  const dn_tensor *x = j->x, *g = j->g;
  int64_t len = dn_row_length(x), sx = dn_row_stride(x), sg = g ? dn_row_stride(g) : 0;
  for (int64_t r = r0; r < r1; r++)
    pointwise_segment(j->p, j->o + r * len, DN_F32_AT(x, dn_row_offset(x, r)), sx,
                      g ? DN_F32_AT(g, dn_row_offset(g, r)) : NULL, sg, len);
}

/*
** out (new, contiguous) = f(x), or g * f'(x) when g is given (g of x's shape,
** any strides).
*/
static void pointwise_run(const pointwise *p, dn_tensor *out, const dn_tensor *x, const dn_tensor *g) {
  int64_t n = dn_tensor_numel(out);
  if (n == 0) return;
  pointwise_job job = {p, dn_tensor_data(out), x, g};
  if (dn_tensor_is_contiguous(x) && (!g || dn_tensor_is_contiguous(g)))
    dn_parallel_range(n, 1, pointwise_flat, &job);
  else
    dn_parallel_rows(dn_row_count(out), dn_row_length(out), pointwise_rows, &job);
}

/* A pointwise node: ints, scalars (the pointwise's parameters) and saved slot. */
enum { POINTWISE_KIND };
enum { POINTWISE_ALPHA, POINTWISE_SCALE };
enum { POINTWISE_SAVED_X };

static dn_status pointwise_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  pointwise p = {(pointwise_kind)node->ints[POINTWISE_KIND], (float)node->scalars[POINTWISE_ALPHA],
                 (float)node->scalars[POINTWISE_SCALE]};
  dn_tensor *x;
  dn_status st = dn_node_saved(node, POINTWISE_SAVED_X, &x);
  if (st) return st;
  st = dn_tensor_new(&grad_in[0], DN_F32, x->ndim, x->shape);
  if (st) return st;
  pointwise_run(&p, grad_in[0], x, grad);
  return DN_OK;
}
static const dn_node_type leaky_relu_node = {.name = "leaky_relu", .backward = pointwise_backward};
static const dn_node_type elu_node = {.name = "elu", .backward = pointwise_backward};
static const dn_node_type selu_node = {.name = "selu", .backward = pointwise_backward};
static const dn_node_type gelu_node = {.name = "gelu", .backward = pointwise_backward};

static dn_status check_float(const char *op, const dn_tensor *x) {
  if (x->dtype == DN_F32) return DN_OK;
  return dn_fail(DN_ETYPE, "%s: expects a float32 tensor (got %s)", op, dn_dtype_name(x->dtype));
}

/* Forward of a pointwise activation; records `type`, which saves x. */
static dn_status pointwise_forward(dn_tensor **out, dn_tensor *x, const pointwise *p, const dn_node_type *type) {
  *out = NULL;
  dn_status st = check_float(type->name, x);
  if (st) return st;
  dn_tensor *y;
  st = dn_tensor_new(&y, DN_F32, x->ndim, x->shape);
  if (st) return st;
  pointwise_run(p, y, x, NULL);
  dn_node *node;
  st = dn_record(y, type, 1, (const dn_tensor *[]){x}, &node);
  if (!st && node) {
    node->ints[POINTWISE_KIND] = p->kind;
    node->scalars[POINTWISE_ALPHA] = p->alpha;
    node->scalars[POINTWISE_SCALE] = p->scale;
    st = dn_node_save(node, POINTWISE_SAVED_X, x);
  }
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  *out = y;
  return DN_OK;
}

dn_status dn_leaky_relu(dn_tensor **out, dn_tensor *x, double negative_slope) {
  DN_FPMODE_SCOPE();
  if (!isfinite(negative_slope)) {
    *out = NULL;
    return dn_fail(DN_EINVAL, "leaky_relu: negative_slope must be finite (got %g)", negative_slope);
  }
  pointwise p = {LEAKY_RELU, (float)negative_slope, 1.0f};
  return pointwise_forward(out, x, &p, &leaky_relu_node);
}

dn_status dn_elu(dn_tensor **out, dn_tensor *x, double alpha) {
  DN_FPMODE_SCOPE();
  if (!isfinite(alpha)) {
    *out = NULL;
    return dn_fail(DN_EINVAL, "elu: alpha must be finite (got %g)", alpha);
  }
  pointwise p = {ELU, (float)alpha, 1.0f};
  return pointwise_forward(out, x, &p, &elu_node);
}

dn_status dn_selu(dn_tensor **out, dn_tensor *x) {
  DN_FPMODE_SCOPE();
  pointwise p = {ELU, (float)SELU_ALPHA, (float)SELU_SCALE};
  return pointwise_forward(out, x, &p, &selu_node);
}

dn_status dn_gelu(dn_tensor **out, dn_tensor *x, bool tanh_approximation) {
  DN_FPMODE_SCOPE();
  pointwise p = {tanh_approximation ? GELU_TANH : GELU_ERF, 0.0f, 1.0f};
  return pointwise_forward(out, x, &p, &gelu_node);
}

/* --- softmax and log-softmax ------------------------------------------------------------- */

static DN_ALWAYS_INLINE float lane_max(const float *x, int64_t sx, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = dn_max_nan(m, x[i * sx]);
  return m;
}

/* One lane of n elements: softmax (or log-softmax) of x into y. */
static DN_ALWAYS_INLINE void softmax_lane(float *y, int64_t sy, const float *x, int64_t sx, int64_t n, bool log_space) {
  float m = lane_max(x, sx, n);
  double sum = 0;
  if (log_space) {
    for (int64_t i = 0; i < n; i++) sum += expf(x[i * sx] - m);
    /* (x - m) - log(sum): adding log(sum) to m first would round it away for large m */
    float log_sum = (float)log(sum);
    for (int64_t i = 0; i < n; i++) y[i * sy] = (x[i * sx] - m) - log_sum;
  } else {
    for (int64_t i = 0; i < n; i++) {
      float e = expf(x[i * sx] - m);
      y[i * sy] = e;
      sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) y[i * sy] *= inv;
  }
}

/* One lane of the backward, from the output y and its gradient g:
   softmax: y * (g - sum(g * y)); log-softmax: g - exp(y) * sum(g). */
static DN_ALWAYS_INLINE void softmax_backward_lane(float *dx, int64_t sd, const float *y, int64_t sy, const float *g,
                                                int64_t sg, int64_t n, bool log_space) {
  double sum = 0;
  if (log_space) {
    for (int64_t i = 0; i < n; i++) sum += g[i * sg];
    float s = (float)sum;
    for (int64_t i = 0; i < n; i++) dx[i * sd] = g[i * sg] - expf(y[i * sy]) * s;
  } else {
    for (int64_t i = 0; i < n; i++) sum += (double)g[i * sg] * y[i * sy];
    float s = (float)sum;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dx[i * sd] = y[i * sy] * (g[i * sg] - s);
  }
}

/* A private alias of t with dims dim and last swapped (a 0-dim t as [1]). */
static dn_status lanes_view(dn_tensor **out, const dn_tensor *t, int dim) {
  dn_tensor *src = (dn_tensor *)t;
  if (t->ndim == 0) return dn_tensor_alias(out, src, 1, (int64_t[]){1}, (int64_t[]){1}, t->offset);
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  memcpy(stride, t->stride, sizeof stride);
  int last = t->ndim - 1;
  shape[dim] = t->shape[last];
  stride[dim] = t->stride[last];
  shape[last] = t->shape[dim];
  stride[last] = t->stride[dim];
  return dn_tensor_alias(out, src, t->ndim, shape, stride, t->offset);
}

typedef struct softmax_job {
  const dn_tensor *vo, *va, *vg;   /* lanes views of out, a and g (NULL in the forward) */
  bool log_space;
} softmax_job;

/* Lanes [r0, r1): the forward, or with vg the backward. */
static void softmax_lanes(const void *ctx, int64_t r0, int64_t r1) {
  const softmax_job *j = ctx;
  const dn_tensor *vo = j->vo, *va = j->va, *vg = j->vg;
  bool log_space = j->log_space;
  int64_t n = dn_row_length(vo), so = dn_row_stride(vo), sa = dn_row_stride(va), sg = vg ? dn_row_stride(vg) : 0;
  bool unit = so == 1 && sa == 1 && (!vg || sg == 1);
  for (int64_t r = r0; r < r1; r++) {
    float *o = DN_F32_AT(vo, dn_row_offset(vo, r));
    const float *x = DN_F32_AT(va, dn_row_offset(va, r));
    if (!vg) {
      if (unit) softmax_lane(o, 1, x, 1, n, log_space);
      else softmax_lane(o, so, x, sa, n, log_space);
    } else {
      const float *gr = DN_F32_AT(vg, dn_row_offset(vg, r));
      if (unit) softmax_backward_lane(o, 1, x, 1, gr, 1, n, log_space);
      else softmax_backward_lane(o, so, x, sa, gr, sg, n, log_space);
    }
  }
}

/*
** Runs the forward (g NULL: out = softmax(a)) or the backward (out = dx from
** a = y and g) over every lane along dim. out is new and contiguous.
*/
static dn_status softmax_run(dn_tensor *out, const dn_tensor *a, const dn_tensor *g, int dim, bool log_space) {
  if (dn_tensor_numel(out) == 0) return DN_OK;
  dn_tensor *views[3] = {NULL, NULL, NULL};
  dn_status st = lanes_view(&views[0], out, dim);
  if (!st) st = lanes_view(&views[1], a, dim);
  if (!st && g) st = lanes_view(&views[2], g, dim);
  if (st) goto done;
  softmax_job job = {views[0], views[1], views[2], log_space};
  dn_parallel_rows(dn_row_count(views[0]), dn_row_length(views[0]), softmax_lanes, &job);
done:
  for (int k = 0; k < 3; k++) dn_tensor_release(views[k]);
  return st;
}

/* A softmax node: ints and saved slot (both backwards need only the output). */
enum { SOFTMAX_DIM, SOFTMAX_LOG_SPACE };
enum { SOFTMAX_SAVED_Y };

static dn_status softmax_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_tensor *y;
  dn_status st = dn_node_saved(node, SOFTMAX_SAVED_Y, &y);
  if (st) return st;
  st = dn_tensor_new(&grad_in[0], DN_F32, y->ndim, y->shape);
  if (st) return st;
  return softmax_run(grad_in[0], y, grad, (int)node->ints[SOFTMAX_DIM], node->ints[SOFTMAX_LOG_SPACE] != 0);
}
static const dn_node_type softmax_node = {.name = "softmax", .backward = softmax_backward};
static const dn_node_type log_softmax_node = {.name = "log_softmax", .backward = softmax_backward};

static dn_status softmax_forward(dn_tensor **out, dn_tensor *x, int dim, bool log_space) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const char *op = log_space ? "log_softmax" : "softmax";
  dn_status st = check_float(op, x);
  if (st) return st;
  int wrapped = dim;
  if (!dn_wrap_dim(&wrapped, x->ndim))
    return dn_fail(DN_EINVAL, "%s: dim %d out of range for a %d-D tensor", op, dim, x->ndim);
  dn_tensor *y;
  st = dn_tensor_new(&y, DN_F32, x->ndim, x->shape);
  if (st) return st;
  st = softmax_run(y, x, NULL, wrapped, log_space);
  dn_node *node = NULL;
  if (!st) st = dn_record(y, log_space ? &log_softmax_node : &softmax_node, 1, (const dn_tensor *[]){x}, &node);
  if (!st && node) {
    node->ints[SOFTMAX_DIM] = wrapped;
    node->ints[SOFTMAX_LOG_SPACE] = log_space;
    st = dn_node_save(node, SOFTMAX_SAVED_Y, y);
  }
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  *out = y;
  return DN_OK;
}

dn_status dn_softmax(dn_tensor **out, dn_tensor *x, int dim) { return softmax_forward(out, x, dim, false); }

dn_status dn_log_softmax(dn_tensor **out, dn_tensor *x, int dim) { return softmax_forward(out, x, dim, true); }
