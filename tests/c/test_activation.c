/* Activations: values against double-precision loops and PyTorch, gradients by finite differences. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

#define TOL 2e-6

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) \
  release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

/* --- finite-difference gradient check ------------------------------------------------ */

/* Backward of sum(f(in) * fixed random weights) against central differences
   (eps 5e-3; tolerance 3e-3 relative + 1e-3 absolute). */
static void gradcheck(dn_test_fn f, const void *ctx, dn_tensor *const *in, int n_in) {
  dn_test_gradcheck("activation", f, ctx, n_in, in, 5e-3, 3e-3, 1e-3);
}

/* --- pointwise activations ------------------------------------------------------------ */

typedef enum kind { LEAKY, ELU, SELU, GELU, GELU_TANH } kind;
typedef struct act_case {
  kind kind;
  double param;
} act_case;

static const act_case CASES[] = {{LEAKY, 0.01}, {LEAKY, 0.2}, {LEAKY, -0.5}, {ELU, 1.0}, {ELU, 0.7},
                                 {SELU, 0},     {GELU, 0},    {GELU_TANH, 0}};
#define N_CASES (sizeof CASES / sizeof *CASES)

static double ref_value(const act_case *c, double x) {
  const double alpha = 1.6732632423543772848170429916717, scale = 1.0507009873554804934193349852946;
  switch (c->kind) {
    case LEAKY: return x > 0 ? x : c->param * x;
    case ELU: return x > 0 ? x : c->param * (exp(x) - 1);
    case SELU: return scale * (x > 0 ? x : alpha * (exp(x) - 1));
    case GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
  }
  return x;
}

static dn_status apply_act(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const act_case *c = ctx;
  switch (c->kind) {
    case LEAKY: return dn_leaky_relu(out, in[0], c->param);
    case ELU: return dn_elu(out, in[0], c->param);
    case SELU: return dn_selu(out, in[0]);
    case GELU: return dn_gelu(out, in[0], false);
    case GELU_TANH: return dn_gelu(out, in[0], true);
  }
  return DN_EINVAL;
}

static void check_act_values(const act_case *c, dn_tensor *x) {
  dn_tensor *y;
  DN_OK_OR_FAIL(apply_act(&y, (dn_tensor *[]){x}, c));
  assert_true(dn_same_shape(x, y));
  assert_true(dn_tensor_is_contiguous(y));
  for (int64_t i = 0; i < dn_tensor_numel(x); i++) {
    double want = ref_value(c, dn_test_at(x, i)), got = dn_test_at(y, i);
    if (!(fabs(got - want) <= TOL * (1 + fabs(want))))
      fail_msg("case %d/%g element %lld: %.9g vs %.9g", (int)c->kind, c->param, (long long)i, got, want);
  }
  dn_tensor_release(y);
}

static void test_pointwise_values(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 2, (int64_t[]){7, 9});
  dn_tensor *big = dn_test_random(2, 1, (int64_t[]){1000});
  DN_OK_OR_FAIL(dn_binary_scalar_(big, DN_MUL, 4.0));   /* [-8, 8]: the tails too */
  dn_tensor *xn = dn_test_noncontiguous(x), *scalar, *empty, *wide, *narrow;
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, -0.75));
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 2, (int64_t[]){0, 3}));
  wide = dn_test_random(3, 3, (int64_t[]){2, 3, 6});
  DN_OK_OR_FAIL(dn_narrow(&narrow, wide, 2, 1, 4));
  for (size_t c = 0; c < N_CASES; c++) {
    check_act_values(&CASES[c], x);
    check_act_values(&CASES[c], big);
    check_act_values(&CASES[c], xn);
    check_act_values(&CASES[c], scalar);
    check_act_values(&CASES[c], empty);
    check_act_values(&CASES[c], narrow);
  }
  RELEASE(x, big, xn, scalar, empty, wide, narrow);
}

/*
** PyTorch on x = (-2.5, -0.7, 0, 0.3, 1.9), y.backward(g = (1, -0.5, 2, 0.25, -1.5)):
** /usr/bin/python3 -c "import torch, torch.nn.functional as F; x=torch.tensor([-2.5,-0.7,0.0,0.3,1.9],requires_grad=True);
**   g=torch.tensor([1.0,-0.5,2.0,0.25,-1.5]); [(setattr(x,'grad',None), f(x).backward(g), print(f(x).tolist(), x.grad.tolist()))
**   for f in [lambda t:F.leaky_relu(t,0.2), lambda t:F.elu(t,0.7), F.selu, F.gelu, lambda t:F.gelu(t,approximate='tanh')]]"
** (the derivative at 0 is the negative side's, as in PyTorch)
*/
static void test_pytorch_reference(void **state) {
  (void)state;
  static const act_case cases[] = {{LEAKY, 0.2}, {ELU, 0.7}, {SELU, 0}, {GELU, 0}, {GELU_TANH, 0}};
  static const double want_y[5][5] = {
    {-0.5, -0.140000001, 0.0, 0.300000012, 1.899999976},
    {-0.642540455, -0.352390289, 0.0, 0.300000012, 1.899999976},
    {-1.613785744, -0.885053039, 0.0, 0.315210313, 1.99633193},
    {-0.015524179, -0.169374511, 0.0, 0.185373425, 1.8454386},
    {-0.015084296, -0.169429854, 0.0, 0.185370937, 1.845451236}};
  static const double want_dx[5][5] = {
    {0.200000003, -0.100000001, 0.400000006, 0.25, -1.5},
    {0.0574595, -0.173804849, 1.399999976, 0.25, -1.5},
    {0.144313574, -0.436523139, 3.516198635, 0.262675256, -1.576051474},
    {-0.037611067, -0.011692926, 1.0, 0.18308194, -1.643930197},
    {-0.037951652, -0.011821389, 1.0, 0.183073878, -1.645172834}};
  dn_tensor *x = dn_test_from(1, (int64_t[]){5}, (float[]){-2.5f, -0.7f, 0.0f, 0.3f, 1.9f});
  dn_tensor *g = dn_test_from(1, (int64_t[]){5}, (float[]){1.0f, -0.5f, 2.0f, 0.25f, -1.5f});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  for (int c = 0; c < 5; c++) {
    dn_tensor *y;
    DN_OK_OR_FAIL(apply_act(&y, (dn_tensor *[]){x}, &cases[c]));
    DN_OK_OR_FAIL(dn_backward(y, g, false));
    for (int i = 0; i < 5; i++) {
      assert_float_equal(dn_test_at(y, i), want_y[c][i], 1e-5 * (1 + fabs(want_y[c][i])));
      assert_float_equal(dn_test_at(x->grad, i), want_dx[c][i], 1e-5 * (1 + fabs(want_dx[c][i])));
    }
    dn_tensor_release(x->grad);
    x->grad = NULL;
    dn_tensor_release(y);
  }
  RELEASE(x, g);
}

static void test_pointwise_gradients(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(5, 2, (int64_t[]){3, 5});
  dn_tensor *xn = dn_test_noncontiguous(x), *scalar;
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, -0.4));
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(xn, true));
  DN_OK_OR_FAIL(dn_requires_grad_(scalar, true));
  for (size_t c = 0; c < N_CASES; c++) {
    gradcheck(apply_act, &CASES[c], (dn_tensor *[]){x}, 1);
    gradcheck(apply_act, &CASES[c], (dn_tensor *[]){xn}, 1);
    gradcheck(apply_act, &CASES[c], (dn_tensor *[]){scalar}, 1);
  }
  /* node names; incoming gradients broadcast (stride 0) or transposed, as other ops'
     backwards may pass them (called directly: the engine copies a root gradient) */
  static const char *const names[] = {"leaky_relu", "leaky_relu", "leaky_relu", "elu", "elu", "selu", "gelu", "gelu"};
  dn_tensor *gv = dn_test_random(6, 1, (int64_t[]){5}), *gb, *gd, *gt;
  DN_OK_OR_FAIL(dn_broadcast_to(&gb, gv, 2, (int64_t[]){3, 5}));
  DN_OK_OR_FAIL(dn_clone(&gd, gb));
  gt = dn_test_noncontiguous(gd);
  for (size_t c = 0; c < N_CASES; c++) {
    dn_tensor *y;
    DN_OK_OR_FAIL(apply_act(&y, (dn_tensor *[]){x}, &CASES[c]));
    assert_string_equal(dn_grad_fn_name(y), names[c]);
    dn_tensor *want = NULL, *got_b = NULL, *got_t = NULL;
    dn_test_node_backward(y, gd, &want);
    dn_test_node_backward(y, gb, &got_b);
    dn_test_node_backward(y, gt, &got_t);
    dn_test_assert_close(got_b, want, 0);
    dn_test_assert_close(got_t, want, 0);
    RELEASE(y, want, got_b, got_t);
  }
  dn_tensor_release(gt);
  RELEASE(x, xn, scalar, gv, gb, gd);
}

/* --- softmax ------------------------------------------------------------------------------ */

/* softmax / log_softmax of x over dim with double loops over logical indices. */
static dn_tensor *softmax_ref(const dn_tensor *x, int dim, bool log_space) {
  int64_t n = dn_tensor_numel(x), inner = 1, size = x->ndim ? x->shape[dim] : 1;
  for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
  double *v = calloc((size_t)n + 1, sizeof *v);
  for (int64_t i = 0; i < n; i++) {
    int64_t first = i - ((i / inner) % size) * inner;   /* element 0 along dim of i's lane */
    double m = -INFINITY, sum = 0;
    for (int64_t k = 0; k < size; k++) m = fmax(m, dn_test_at(x, first + k * inner));
    for (int64_t k = 0; k < size; k++) sum += exp(dn_test_at(x, first + k * inner) - m);
    double xi = dn_test_at(x, i);
    v[i] = log_space ? xi - m - log(sum) : exp(xi - m) / sum;
  }
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&t, DN_F32, x->ndim, x->shape, v));
  free(v);
  return t;
}

static void check_softmax(dn_tensor *x, int dim, bool log_space) {
  int wrapped = dim < 0 ? dim + (x->ndim ? x->ndim : 1) : dim;
  dn_tensor *y, *want = softmax_ref(x, wrapped, log_space);
  DN_OK_OR_FAIL(log_space ? dn_log_softmax(&y, x, dim) : dn_softmax(&y, x, dim));
  assert_true(dn_tensor_is_contiguous(y));
  dn_test_assert_close(y, want, 1e-5);
  RELEASE(y, want);
}

static void test_softmax_values(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(7, 3, (int64_t[]){3, 4, 5});
  dn_tensor *xn = dn_test_noncontiguous(x), *perm, *scalar, *empty;
  DN_OK_OR_FAIL(dn_permute(&perm, x, (int[]){2, 0, 1}));
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, 3.0));
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 2, (int64_t[]){0, 4}));
  for (int log_space = 0; log_space < 2; log_space++) {
    for (int dim = -3; dim < 3; dim++) {
      check_softmax(x, dim, log_space);
      check_softmax(xn, dim, log_space);
      check_softmax(perm, dim, log_space);
    }
    check_softmax(scalar, 0, log_space);
    check_softmax(scalar, -1, log_space);
    check_softmax(empty, 0, log_space);
    check_softmax(empty, 1, log_space);
  }
  /* stable for huge logits: no inf/NaN, exact values */
  dn_tensor *huge = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1e4f, -1e4f, 1e4f - 1, -1e4f, -1e4f - 2, 0});
  dn_tensor *p, *lp;
  DN_OK_OR_FAIL(dn_softmax(&p, huge, 1));
  DN_OK_OR_FAIL(dn_log_softmax(&lp, huge, 1));
  double e = exp(-1.0);
  assert_float_equal(dn_test_at(p, 0), 1 / (1 + e), 1e-6);
  assert_float_equal(dn_test_at(p, 1), 0, 1e-30);
  assert_float_equal(dn_test_at(lp, 0), -log1p(e), 1e-6);
  assert_float_equal(dn_test_at(lp, 2), -1 - log1p(e), 1e-6);
  assert_float_equal(dn_test_at(lp, 1), -2e4 - log1p(e), 1e-2);
  assert_float_equal(dn_test_at(lp, 5), -log1p(exp(-1e4) + exp(-1e4 - 2)), 1e-6);
  /* NaN in a lane gives NaN for that lane only */
  dn_tensor *nan = dn_test_from(2, (int64_t[]){2, 2}, (float[]){NAN, 1, 2, 3}), *pn;
  DN_OK_OR_FAIL(dn_softmax(&pn, nan, 1));
  assert_true(isnan(dn_test_at(pn, 0)) && isnan(dn_test_at(pn, 1)));
  assert_false(isnan(dn_test_at(pn, 2)) || isnan(dn_test_at(pn, 3)));
  RELEASE(x, xn, perm, scalar, empty, huge, p, lp, nan, pn);
}

/*
** PyTorch, x = [[1,-2,0.5],[3,0.25,-1]], y.backward(g = [[0.5,-1,2],[1.5,0.3,-0.7]]):
** /usr/bin/python3 -c "import torch, torch.nn.functional as F; x=torch.tensor([[1.0,-2.0,0.5],[3.0,0.25,-1.0]],
**   requires_grad=True); g=torch.tensor([[0.5,-1.0,2.0],[1.5,0.3,-0.7]]); y=F.softmax(x,0); y.backward(g);
**   print(y.flatten().tolist(), x.grad.flatten().tolist())"   (and F.softmax(x,1), F.log_softmax(x,0), F.log_softmax(x,-1))
*/
static void test_softmax_pytorch_reference(void **state) {
  (void)state;
  static const double want_y[4][6] = {
    {0.119202919, 0.095349461, 0.817574441, 0.880797029, 0.904650509, 0.182425514},
    {0.603748918, 0.030058887, 0.366192222, 0.924006402, 0.059069753, 0.016923768},
    {-2.126928091, -2.350206614, -0.201413333, -0.126928046, -0.100206584, -1.701413393},
    {-0.504596889, -3.504596949, -1.004596949, -0.079036258, -2.829036236, -4.079036236}};
  static const double want_dx[4][6] = {
    {-0.104993574, -0.112135321, 0.402695417, 0.104993626, 0.112135328, -0.402695388},
    {-0.304410189, -0.06024402, 0.364654213, 0.099900015, -0.064497314, -0.035402559},
    {0.261594176, -0.933255374, 0.93715328, -0.261594057, 0.933255374, -0.937153101},
    {-0.405623376, -1.045088291, 1.450711727, 0.483593047, 0.23502329, -0.718616128}};
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, -2, 0.5f, 3, 0.25f, -1});
  dn_tensor *g = dn_test_from(2, (int64_t[]){2, 3}, (float[]){0.5f, -1, 2, 1.5f, 0.3f, -0.7f});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  for (int c = 0; c < 4; c++) {
    dn_tensor *y;
    int dim = c == 3 ? -1 : c % 2;
    DN_OK_OR_FAIL(c < 2 ? dn_softmax(&y, x, dim) : dn_log_softmax(&y, x, dim));
    assert_string_equal(dn_grad_fn_name(y), c < 2 ? "softmax" : "log_softmax");
    DN_OK_OR_FAIL(dn_backward(y, g, false));
    for (int i = 0; i < 6; i++) {
      assert_float_equal(dn_test_at(y, i), want_y[c][i], 1e-5 * (1 + fabs(want_y[c][i])));
      assert_float_equal(dn_test_at(x->grad, i), want_dx[c][i], 1e-5 * (1 + fabs(want_dx[c][i])));
    }
    dn_tensor_release(x->grad);
    x->grad = NULL;
    dn_tensor_release(y);
  }
  RELEASE(x, g);
}

typedef struct softmax_ctx {
  int dim;
  bool log_space;
} softmax_ctx;

static dn_status apply_softmax(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const softmax_ctx *c = ctx;
  return c->log_space ? dn_log_softmax(out, in[0], c->dim) : dn_softmax(out, in[0], c->dim);
}

static void test_softmax_gradients(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(8, 3, (int64_t[]){2, 3, 4});
  dn_tensor *xn = dn_test_noncontiguous(x), *v = dn_test_random(9, 1, (int64_t[]){6});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(xn, true));
  DN_OK_OR_FAIL(dn_requires_grad_(v, true));
  for (int log_space = 0; log_space < 2; log_space++) {
    for (int dim = -1; dim < 3; dim++) {
      softmax_ctx c = {dim, log_space};
      gradcheck(apply_softmax, &c, (dn_tensor *[]){x}, 1);
      gradcheck(apply_softmax, &c, (dn_tensor *[]){xn}, 1);
    }
    softmax_ctx c = {0, log_space};
    gradcheck(apply_softmax, &c, (dn_tensor *[]){v}, 1);
  }
  /* incoming gradients broadcast (stride 0) or transposed give the same as their dense copy */
  dn_tensor *gv = dn_test_random(10, 1, (int64_t[]){4}), *gb, *gd, *gt;
  DN_OK_OR_FAIL(dn_broadcast_to(&gb, gv, 3, (int64_t[]){2, 3, 4}));
  DN_OK_OR_FAIL(dn_clone(&gd, gb));
  gt = dn_test_noncontiguous(gd);
  for (int log_space = 0; log_space < 2; log_space++)
    for (int dim = 0; dim < 3; dim++) {
      dn_tensor *y;
      DN_OK_OR_FAIL(log_space ? dn_log_softmax(&y, xn, dim) : dn_softmax(&y, xn, dim));
      dn_tensor *want = NULL, *got_b = NULL, *got_t = NULL;
      dn_test_node_backward(y, gd, &want);
      dn_test_node_backward(y, gb, &got_b);
      dn_test_node_backward(y, gt, &got_t);
      dn_test_assert_close(got_b, want, 1e-6);
      dn_test_assert_close(got_t, want, 1e-6);
      RELEASE(y, want, got_b, got_t);
    }
  dn_tensor_release(gt);
  /* no node in no-grad mode; in-place change of the saved output is caught */
  dn_tensor *y;
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_log_softmax(&y, x, 1));
  assert_null(y->grad_fn);
  dn_set_grad_enabled(mode);
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_softmax(&y, x, 1));
  mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(y, 1.0));
  dn_set_grad_enabled(mode);
  DN_EXPECT_ERROR(dn_backward(y, gd, false), DN_EINVAL, "modified in place");
  RELEASE(x, xn, v, gv, gb, gd, y);
}

static void test_errors(void **state) {
  (void)state;
  dn_tensor *xi, *x = dn_test_random(1, 2, (int64_t[]){2, 3}), *y = (dn_tensor *)&y;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 2, (int64_t[]){2, 3}));
  DN_EXPECT_ERROR(dn_leaky_relu(&y, xi, 0.1), DN_ETYPE, "leaky_relu: expects a float32 tensor (got int32)");
  assert_null(y);
  DN_EXPECT_ERROR(dn_elu(&y, xi, 1), DN_ETYPE, "elu: expects a float32 tensor");
  DN_EXPECT_ERROR(dn_selu(&y, xi), DN_ETYPE, "selu: expects a float32 tensor");
  DN_EXPECT_ERROR(dn_gelu(&y, xi, false), DN_ETYPE, "gelu: expects a float32 tensor");
  DN_EXPECT_ERROR(dn_softmax(&y, xi, 0), DN_ETYPE, "softmax: expects a float32 tensor");
  DN_EXPECT_ERROR(dn_log_softmax(&y, xi, 0), DN_ETYPE, "log_softmax: expects a float32 tensor");
  DN_EXPECT_ERROR(dn_leaky_relu(&y, x, NAN), DN_EINVAL, "leaky_relu: negative_slope must be finite (got nan)");
  DN_EXPECT_ERROR(dn_elu(&y, x, INFINITY), DN_EINVAL, "elu: alpha must be finite");
  DN_EXPECT_ERROR(dn_softmax(&y, x, 2), DN_EINVAL, "softmax: dim 2 out of range for a 2-D tensor");
  DN_EXPECT_ERROR(dn_log_softmax(&y, x, -3), DN_EINVAL, "log_softmax: dim -3 out of range for a 2-D tensor");
  RELEASE(x, xi);
}

/* f(in) and d/d in (for incoming g) on 1 and 2 threads: the bits must be identical. */
static void check_threads(dn_test_fn f, const void *ctx, dn_tensor *in, dn_tensor *g) {
  int saved = dn_get_num_threads();
  dn_tensor *results[2][2];
  for (int run = 0; run < 2; run++) {
    DN_OK_OR_FAIL(dn_set_num_threads(run + 1));
    dn_tensor *y;
    DN_OK_OR_FAIL(f(&y, (dn_tensor *[]){in}, ctx));
    DN_OK_OR_FAIL(dn_backward(y, g, false));
    results[run][0] = y;
    results[run][1] = in->grad;
    in->grad = NULL;
  }
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
  for (int k = 0; k < 2; k++) {
    size_t bytes = (size_t)dn_tensor_numel(in) * sizeof(float);
    assert_memory_equal(dn_tensor_data(results[0][k]), dn_tensor_data(results[1][k]), bytes);
    RELEASE(results[0][k], results[1][k]);
  }
}

/* Inputs large enough for parallel loops (> 32768 elements), contiguous and not. */
static void test_threads_bit_identical(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(11, 2, (int64_t[]){300, 160}), *g = dn_test_random(12, 2, (int64_t[]){300, 160});
  dn_tensor *xn = dn_test_noncontiguous(x);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(xn, true));
  const softmax_ctx softmaxes[] = {{0, false}, {1, false}, {0, true}, {-1, true}};
  for (int layout = 0; layout < 2; layout++) {
    dn_tensor *in = layout ? xn : x;
    for (size_t c = 0; c < N_CASES; c++) check_threads(apply_act, &CASES[c], in, g);
    for (size_t c = 0; c < 4; c++) check_threads(apply_softmax, &softmaxes[c], in, g);
  }
  RELEASE(x, g, xn);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_pointwise_values),   cmocka_unit_test(test_pytorch_reference),
    cmocka_unit_test(test_pointwise_gradients), cmocka_unit_test(test_softmax_values),
    cmocka_unit_test(test_softmax_pytorch_reference), cmocka_unit_test(test_softmax_gradients),
    cmocka_unit_test(test_errors),             cmocka_unit_test(test_threads_bit_identical),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
