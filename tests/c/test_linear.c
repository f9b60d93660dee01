/* dn_linear: forward against a naive double loop, backward by finite differences. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

#define TOL 1e-5

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) \
  release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

static const dn_activation ACTS[] = {DN_ACT_NONE, DN_ACT_RELU, DN_ACT_TANH, DN_ACT_SIGMOID};

/* --- finite-difference gradient check ------------------------------------------------ */

/* Backward of sum(f(in) * fixed random weights) against central differences
   (eps 5e-3; tolerance 3e-3 relative + 1e-3 absolute). */
static void gradcheck(dn_test_fn f, const void *ctx, dn_tensor *const *in, int n_in) {
  dn_test_gradcheck("linear", f, ctx, n_in, in, 5e-3, 3e-3, 1e-3);
}

/* --- reference ------------------------------------------------------------------------- */

static double act_ref(double v, dn_activation act) {
  switch (act) {
    case DN_ACT_NONE: return v;
    case DN_ACT_RELU: return v > 0 ? v : 0;
    case DN_ACT_TANH: return tanh(v);
    case DN_ACT_SIGMOID: return 1 / (1 + exp(-v));
  }
  return v;
}

/* act(x @ w^T + b) with plain loops over logical elements (any strides). */
static dn_tensor *linear_ref(const dn_tensor *x, const dn_tensor *w, const dn_tensor *b, dn_activation act) {
  int64_t rows = x->ndim == 2 ? x->shape[0] : 1, in = w->shape[1], outs = w->shape[0];
  double *v = calloc((size_t)(rows * outs + 1), sizeof *v);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < outs; o++) {
      double s = b ? dn_test_at(b, o) : 0;
      for (int64_t i = 0; i < in; i++) s += dn_test_at(x, r * in + i) * dn_test_at(w, o * in + i);
      v[r * outs + o] = act_ref(s, act);
    }
  int64_t shape[2] = {rows, outs};
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&t, DN_F32, x->ndim, x->ndim == 2 ? shape : shape + 1, v));
  free(v);
  return t;
}

static void check_forward(dn_tensor *x, dn_tensor *w, dn_tensor *b, dn_activation act) {
  dn_tensor *got, *want = linear_ref(x, w, b, act);
  DN_OK_OR_FAIL(dn_linear(&got, x, w, b, act));
  assert_true(dn_tensor_is_contiguous(got));
  dn_test_assert_close(got, want, TOL);
  assert_null(got->grad_fn);   /* nothing requires grad */
  RELEASE(got, want);
}

static void test_forward_values(void **state) {
  (void)state;
  int64_t sizes[][3] = {{1, 1, 1}, {4, 3, 5}, {7, 16, 9}, {33, 70, 65}};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    int64_t rows = sizes[s][0], in = sizes[s][1], outs = sizes[s][2];
    dn_tensor *x = dn_test_random(1 + s, 2, (int64_t[]){rows, in});
    dn_tensor *w = dn_test_random(11 + s, 2, (int64_t[]){outs, in});
    dn_tensor *b = dn_test_random(21 + s, 1, &outs);
    for (size_t a = 0; a < 4; a++) {
      check_forward(x, w, b, ACTS[a]);
      check_forward(x, w, NULL, ACTS[a]);
    }
    RELEASE(x, w, b);
  }
  /* exact small case: x [1,2] = (1, 2), w [[1,0],[0,-1],[1,1]], b (0.5, 0.5, -4) */
  dn_tensor *x = dn_test_from(2, (int64_t[]){1, 2}, (float[]){1, 2});
  dn_tensor *w = dn_test_from(2, (int64_t[]){3, 2}, (float[]){1, 0, 0, -1, 1, 1});
  dn_tensor *b = dn_test_from(1, (int64_t[]){3}, (float[]){0.5f, 0.5f, -4});
  dn_tensor *y;
  DN_OK_OR_FAIL(dn_linear(&y, x, w, b, DN_ACT_RELU));
  assert_true(dn_test_at(y, 0) == 1.5 && dn_test_at(y, 1) == 0 && dn_test_at(y, 2) == 0);
  RELEASE(x, w, b, y);
}

static void test_forward_layouts(void **state) {
  (void)state;
  int64_t rows = 6, in = 5, outs = 4;
  dn_tensor *x = dn_test_random(3, 2, (int64_t[]){rows, in});
  dn_tensor *w = dn_test_random(4, 2, (int64_t[]){outs, in});
  dn_tensor *b = dn_test_random(5, 1, &outs);
  dn_tensor *xn = dn_test_noncontiguous(x), *wn = dn_test_noncontiguous(w), *bn = dn_test_noncontiguous(b);
  assert_false(dn_tensor_is_contiguous(xn) || dn_tensor_is_contiguous(wn) || dn_tensor_is_contiguous(bn));
  for (size_t a = 0; a < 4; a++) {
    check_forward(xn, w, b, ACTS[a]);
    check_forward(x, wn, bn, ACTS[a]);
    check_forward(xn, wn, bn, ACTS[a]);
  }
  /* narrowed input (row stride > width) and a 1-D input, contiguous or strided */
  dn_tensor *wide = dn_test_random(6, 2, (int64_t[]){rows, in + 3}), *narrow;
  DN_OK_OR_FAIL(dn_narrow(&narrow, wide, 1, 2, in));
  check_forward(narrow, w, b, DN_ACT_TANH);
  dn_tensor *row, *col;
  DN_OK_OR_FAIL(dn_select(&row, x, 0, 2));
  DN_OK_OR_FAIL(dn_select(&col, xn, 0, 3));   /* strided 1-D */
  check_forward(row, w, b, DN_ACT_SIGMOID);
  check_forward(col, wn, NULL, DN_ACT_RELU);
  dn_tensor *y;
  DN_OK_OR_FAIL(dn_linear(&y, row, w, b, DN_ACT_NONE));
  assert_int_equal(y->ndim, 1);
  assert_int_equal(y->shape[0], outs);
  /* a broadcast (stride 0) input: every row the same */
  dn_tensor *bx;
  DN_OK_OR_FAIL(dn_broadcast_to(&bx, row, 2, (int64_t[]){3, in}));
  check_forward(bx, w, b, DN_ACT_RELU);
  RELEASE(x, w, b, xn, wn, bn, wide, narrow, row, col, y, bx);
}

static void test_empty(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 2, (int64_t[]){0, 3}), *w = dn_test_random(2, 2, (int64_t[]){4, 3});
  dn_tensor *b = dn_test_random(3, 1, (int64_t[]){4}), *y;
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  DN_OK_OR_FAIL(dn_linear(&y, x, w, b, DN_ACT_TANH));
  assert_int_equal(y->shape[0], 0);
  assert_int_equal(y->shape[1], 4);
  dn_tensor *g;
  DN_OK_OR_FAIL(dn_tensor_zeros(&g, DN_F32, 2, y->shape));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  for (int64_t i = 0; i < 12; i++) assert_true(dn_test_at(w->grad, i) == 0);
  for (int64_t i = 0; i < 4; i++) assert_true(dn_test_at(b->grad, i) == 0);
  RELEASE(x, w, b, y, g);
  /* in = 0: the output is the bias */
  x = dn_test_random(1, 2, (int64_t[]){2, 0});
  w = dn_test_random(2, 2, (int64_t[]){3, 0});
  b = dn_test_from(1, (int64_t[]){3}, (float[]){1, -2, 3});
  DN_OK_OR_FAIL(dn_linear(&y, x, w, b, DN_ACT_RELU));
  float want[] = {1, 0, 3, 1, 0, 3};
  for (int64_t i = 0; i < 6; i++) assert_true(dn_test_at(y, i) == want[i]);
  RELEASE(x, w, b, y);
}

/* --- gradients ----------------------------------------------------------------------------- */

typedef struct linear_ctx {
  dn_activation act;
} linear_ctx;

static dn_status apply_linear(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  return dn_linear(out, in[0], in[1], in[2], ((const linear_ctx *)ctx)->act);
}

/* x requires grad or not, bias or none, for one layout of x and w. */
static void gradcheck_all(dn_tensor *x, dn_tensor *w, dn_tensor *b) {
  for (size_t a = 0; a < 4; a++) {
    linear_ctx ctx = {ACTS[a]};
    for (int x_grad = 0; x_grad < 2; x_grad++) {
      DN_OK_OR_FAIL(dn_requires_grad_(x, x_grad));
      gradcheck(apply_linear, &ctx, (dn_tensor *[]){x, w, b}, 3);
      gradcheck(apply_linear, &ctx, (dn_tensor *[]){x, w, NULL}, 3);
    }
  }
}

static void test_gradients(void **state) {
  (void)state;
  int64_t rows = 5, in = 4, outs = 3;
  dn_tensor *x = dn_test_random(31, 2, (int64_t[]){rows, in});
  dn_tensor *w = dn_test_random(32, 2, (int64_t[]){outs, in});
  dn_tensor *b = dn_test_random(33, 1, &outs);
  /* non-contiguous leaves (made before anything requires grad): transposed storage */
  dn_tensor *xn = dn_test_noncontiguous(x), *wn = dn_test_noncontiguous(w);
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  gradcheck_all(x, w, b);
  DN_OK_OR_FAIL(dn_requires_grad_(wn, true));
  gradcheck_all(xn, wn, b);
  /* a 1-D input */
  dn_tensor *v = dn_test_random(34, 1, &in);
  gradcheck_all(v, w, b);
  /* only the weight requires grad (x and b do not) */
  DN_OK_OR_FAIL(dn_requires_grad_(b, false));
  DN_OK_OR_FAIL(dn_requires_grad_(x, false));
  linear_ctx ctx = {DN_ACT_TANH};
  gradcheck(apply_linear, &ctx, (dn_tensor *[]){x, w, b}, 3);
  RELEASE(x, w, b, xn, wn, v);
}

/*
** The engine hands a root gradient over as a contiguous copy, so the node's
** backward is called directly with gradients as other ops' backwards may
** pass them: broadcast (stride 0), transposed, narrowed. Results must equal
** those for the dense gradient.
*/
static void test_strided_incoming_grad(void **state) {
  (void)state;
  int64_t rows = 4, in = 3, outs = 5;
  dn_tensor *x = dn_test_random(41, 2, (int64_t[]){rows, in});
  dn_tensor *w = dn_test_random(42, 2, (int64_t[]){outs, in});
  dn_tensor *b = dn_test_random(43, 1, &outs);
  dn_tensor *gv = dn_test_random(44, 1, &outs), *g_bcast, *g_dense, *g_t, *g_wide, *g_narrow;
  DN_OK_OR_FAIL(dn_broadcast_to(&g_bcast, gv, 2, (int64_t[]){rows, outs}));
  DN_OK_OR_FAIL(dn_clone(&g_dense, g_bcast));
  g_t = dn_test_noncontiguous(g_dense);
  DN_OK_OR_FAIL(dn_tensor_zeros(&g_wide, DN_F32, 2, (int64_t[]){rows, outs + 2}));
  DN_OK_OR_FAIL(dn_narrow(&g_narrow, g_wide, 1, 1, outs));
  DN_OK_OR_FAIL(dn_copy_(g_narrow, g_dense));
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  dn_tensor *grads[4] = {g_dense, g_bcast, g_t, g_narrow};
  for (size_t a = 0; a < 4; a++) {
    dn_tensor *y, *want[3] = {NULL, NULL, NULL};
    DN_OK_OR_FAIL(dn_linear(&y, x, w, b, ACTS[a]));
    dn_test_node_backward(y, g_dense, want);
    for (int k = 1; k < 4; k++) {
      dn_tensor *got[3] = {NULL, NULL, NULL};
      dn_test_node_backward(y, grads[k], got);
      for (int p = 0; p < 3; p++) dn_test_assert_close(got[p], want[p], 1e-6);
      RELEASE(got[0], got[1], got[2]);
    }
    RELEASE(y, want[0], want[1], want[2]);
  }
  /* a 1-D input takes a strided 1-D gradient */
  dn_tensor *v, *y, *want[3] = {NULL, NULL, NULL}, *got[3] = {NULL, NULL, NULL}, *g_col;
  DN_OK_OR_FAIL(dn_select(&v, x, 0, 1));
  DN_OK_OR_FAIL(dn_select(&g_col, g_t, 0, 2));   /* stride rows */
  DN_OK_OR_FAIL(dn_linear(&y, v, w, b, DN_ACT_TANH));
  dn_tensor *g_col_dense;
  DN_OK_OR_FAIL(dn_clone(&g_col_dense, g_col));
  dn_test_node_backward(y, g_col_dense, want);
  dn_test_node_backward(y, g_col, got);
  for (int p = 0; p < 3; p++) dn_test_assert_close(got[p], want[p], 1e-6);
  RELEASE(v, y, g_col, g_col_dense, want[0], want[1], want[2], got[0], got[1], got[2]);
  RELEASE(x, w, b, gv, g_bcast, g_dense, g_t, g_wide, g_narrow);
}

static void test_autograd_bookkeeping(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(51, 2, (int64_t[]){3, 4}), *w = dn_test_random(52, 2, (int64_t[]){2, 4});
  dn_tensor *b = dn_test_random(53, 1, (int64_t[]){2}), *y, *g;
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_tensor_ones(&g, DN_F32, 2, (int64_t[]){3, 2}));
  /* no node without grad mode */
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_linear(&y, x, w, b, DN_ACT_RELU));
  dn_set_grad_enabled(mode);
  assert_null(y->grad_fn);
  assert_false(y->requires_grad);
  dn_tensor_release(y);
  /* a node named "linear"; two backwards with retain_graph accumulate */
  DN_OK_OR_FAIL(dn_linear(&y, x, w, b, DN_ACT_SIGMOID));
  assert_string_equal(dn_grad_fn_name(y), "linear");
  DN_OK_OR_FAIL(dn_backward(y, g, true));
  dn_tensor *once;
  DN_OK_OR_FAIL(dn_clone(&once, w->grad));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  for (int64_t i = 0; i < 8; i++) assert_float_equal(dn_test_at(w->grad, i), 2 * dn_test_at(once, i), 1e-6);
  assert_null(x->grad);
  assert_null(b->grad);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "already freed");
  dn_tensor_release(y);
  /* modifying the saved output in place is caught */
  DN_OK_OR_FAIL(dn_linear(&y, x, w, b, DN_ACT_TANH));
  mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_fill_(y, 0.0));
  dn_set_grad_enabled(mode);
  DN_EXPECT_ERROR(dn_backward(y, g, false), DN_EINVAL, "modified in place");
  RELEASE(x, w, b, y, g, once);
}

static void test_errors(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 2, (int64_t[]){4, 3}), *w = dn_test_random(2, 2, (int64_t[]){5, 2});
  dn_tensor *w_ok = dn_test_random(3, 2, (int64_t[]){5, 3}), *b_bad = dn_test_random(4, 1, (int64_t[]){4});
  dn_tensor *x3 = dn_test_random(5, 3, (int64_t[]){2, 4, 3}), *w1 = dn_test_random(6, 1, (int64_t[]){3});
  dn_tensor *xi, *y = (dn_tensor *)&y;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 2, (int64_t[]){4, 3}));
  DN_EXPECT_ERROR(dn_linear(&y, x, w, NULL, DN_ACT_NONE), DN_ESHAPE,
                  "linear: input [4,3] and weight [5,2] do not match (3 != 2)");
  assert_null(y);
  DN_EXPECT_ERROR(dn_linear(&y, x, w_ok, b_bad, DN_ACT_NONE), DN_ESHAPE,
                  "linear: bias [4] does not match weight [5,3] (expected [5])");
  DN_EXPECT_ERROR(dn_linear(&y, x3, w_ok, NULL, DN_ACT_NONE), DN_ESHAPE, "input must be [batch, in] or [in]");
  DN_EXPECT_ERROR(dn_linear(&y, x, w1, NULL, DN_ACT_NONE), DN_ESHAPE, "weight must be [out, in] (got shape [3])");
  DN_EXPECT_ERROR(dn_linear(&y, xi, w_ok, NULL, DN_ACT_NONE), DN_ETYPE, "linear: expects float32 tensors (got input int32");
  DN_EXPECT_ERROR(dn_linear(&y, x, w_ok, NULL, (dn_activation)9), DN_EINVAL, "unknown activation 9");
  RELEASE(x, w, w_ok, b_bad, x3, w1, xi);
}

/* Large enough for parallel loops: forward and every gradient bit-identical on 1 and 2 threads. */
static void test_threads_bit_identical(void **state) {
  (void)state;
  int64_t rows = 256, in = 96, outs = 320;
  dn_tensor *x = dn_test_random(61, 2, (int64_t[]){rows, in}), *w = dn_test_random(62, 2, (int64_t[]){outs, in});
  dn_tensor *b = dn_test_random(63, 1, &outs), *g = dn_test_random(64, 2, (int64_t[]){rows, outs});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  int saved_threads = dn_get_num_threads();
  for (size_t a = 0; a < 4; a++) {
    dn_tensor *results[2][4];
    for (int run = 0; run < 2; run++) {
      DN_OK_OR_FAIL(dn_set_num_threads(run + 1));
      dn_tensor *y;
      DN_OK_OR_FAIL(dn_linear(&y, x, w, b, ACTS[a]));
      DN_OK_OR_FAIL(dn_backward(y, g, false));
      results[run][0] = y;
      dn_tensor *params[3] = {x, w, b};
      for (int p = 0; p < 3; p++) {
        results[run][p + 1] = params[p]->grad;
        params[p]->grad = NULL;
      }
    }
    for (int k = 0; k < 4; k++) {
      size_t bytes = (size_t)dn_tensor_numel(results[0][k]) * sizeof(float);
      assert_memory_equal(dn_tensor_data(results[0][k]), dn_tensor_data(results[1][k]), bytes);
      RELEASE(results[0][k], results[1][k]);
    }
  }
  DN_OK_OR_FAIL(dn_set_num_threads(saved_threads));
  RELEASE(x, w, b, g);
}

/*
** Against PyTorch for fixed values (1e-5 relative). Produced by:
** /usr/bin/python3 -c "import torch; x=torch.tensor([[0.5,-1.0,2.0],[1.5,0.25,-0.75]],requires_grad=True);
**   w=torch.tensor([[0.1,0.2,-0.3],[-0.4,0.5,0.6]],requires_grad=True); b=torch.tensor([0.05,-0.1],requires_grad=True);
**   y=torch.tanh(x@w.t()+b); y.backward(torch.tensor([[1.0,-2.0],[0.5,3.0]]));
**   print(y.tolist(), x.grad.tolist(), w.grad.tolist(), b.grad.tolist())"
*/
static void test_pytorch_reference(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 3}, (float[]){0.5f, -1.0f, 2.0f, 1.5f, 0.25f, -0.75f});
  dn_tensor *w = dn_test_from(2, (int64_t[]){2, 3}, (float[]){0.1f, 0.2f, -0.3f, -0.4f, 0.5f, 0.6f});
  dn_tensor *b = dn_test_from(1, (int64_t[]){2}, (float[]){0.05f, -0.1f});
  dn_tensor *g = dn_test_from(2, (int64_t[]){2, 2}, (float[]){1.0f, -2.0f, 0.5f, 3.0f});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  dn_tensor *y;
  DN_OK_OR_FAIL(dn_linear(&y, x, w, b, DN_ACT_TANH));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  const double want_y[] = {-0.6043677926063538, 0.37994900345802307, 0.44223037362098694, -0.7718952894210815};
  const double want_dx[] = {0.7479849457740784,  -0.7286908030509949, -1.2171883583068848,
                             -0.4447915852069855, 0.6867097020149231,  0.6068549752235413};
  const double want_dw[] = {0.9206939935684204, -0.534185528755188,  0.9678170680999756,
                             0.9631607532501221, 2.0144107341766357, -4.3319549560546875};
  const double want_db[] = {1.036955714225769, -0.49874448776245117};
  for (int i = 0; i < 4; i++) assert_float_equal(dn_test_at(y, i), want_y[i], 1e-5 * (1 + fabs(want_y[i])));
  for (int i = 0; i < 6; i++) assert_float_equal(dn_test_at(x->grad, i), want_dx[i], 1e-5 * (1 + fabs(want_dx[i])));
  for (int i = 0; i < 6; i++) assert_float_equal(dn_test_at(w->grad, i), want_dw[i], 1e-5 * (1 + fabs(want_dw[i])));
  for (int i = 0; i < 2; i++) assert_float_equal(dn_test_at(b->grad, i), want_db[i], 1e-5 * (1 + fabs(want_db[i])));
  RELEASE(x, w, b, g, y);
}

/* --- dn_linear_relu_dropout: the same bits as dn_linear(relu) then dn_dropout ------------------ */

/* y, x.grad, w.grad, b.grad (taken over) and the generator after one forward and backward. */
typedef struct {
  dn_tensor *t[4];
  dn_rng rng;
} step_result;

static void run_step(step_result *r, bool fused, dn_tensor *x, dn_tensor *w, dn_tensor *b, dn_tensor *g, double p,
                     dn_dropout_scaling scaling, uint64_t seed) {
  dn_rng_seed(&r->rng, seed);
  r->rng.offset = 5;   /* not at 0: the offset must be read, not assumed */
  dn_tensor *y;
  if (fused) {
    DN_OK_OR_FAIL(dn_linear_relu_dropout(&y, x, w, b, p, &r->rng, scaling));
  } else {
    dn_tensor *h;
    DN_OK_OR_FAIL(dn_linear(&h, x, w, b, DN_ACT_RELU));
    DN_OK_OR_FAIL(dn_dropout(&y, h, p, &r->rng, scaling));
    dn_tensor_release(h);
  }
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  r->t[0] = y;
  dn_tensor *params[3] = {x, w, b};
  for (int k = 0; k < 3; k++) {
    r->t[k + 1] = params[k] ? params[k]->grad : NULL;
    if (params[k]) params[k]->grad = NULL;
  }
}

/* Compares both paths for one shape, with and without a bias. */
static void check_relu_dropout_shape(int64_t rows, int64_t in, int64_t outs, uint64_t seed) {
  dn_tensor *x = dn_test_random(seed, 2, (int64_t[]){rows, in});
  dn_tensor *w = dn_test_random(seed + 1, 2, (int64_t[]){outs, in});
  dn_tensor *b = dn_test_random(seed + 2, 1, &outs), *g = dn_test_random(seed + 3, 2, (int64_t[]){rows, outs});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  const double ps[] = {0.0, 1e-6, 0.1, 0.5, 0.9, 1.0};
  for (int with_bias = 0; with_bias < 2; with_bias++)
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
      for (int scaling = 0; scaling < 2; scaling++) {
        step_result two, one;
        dn_tensor *bias = with_bias ? b : NULL;
        run_step(&two, false, x, w, bias, g, ps[i], (dn_dropout_scaling)scaling, 9);
        run_step(&one, true, x, w, bias, g, ps[i], (dn_dropout_scaling)scaling, 9);
        assert_int_equal(one.rng.offset, two.rng.offset);
        for (int k = 0; k < (with_bias ? 4 : 3); k++) {
          size_t bytes = (size_t)dn_tensor_numel(two.t[k]) * sizeof(float);
          assert_memory_equal(dn_tensor_data(one.t[k]), dn_tensor_data(two.t[k]), bytes);
          RELEASE(one.t[k], two.t[k]);
        }
      }
  RELEASE(x, w, b, g);
}

/* Values, the three gradients and the generator's advance are bit-identical
   to the two-op path, for every p (0: no draw; 1: all dropped; below 2^-17:
   threshold 0, all kept), both scalings, with and without a bias, 1 and 2
   threads; the second shape is large enough for two threads, with rows that
   straddle the fused pass's blocks. */
static void test_relu_dropout_matches_two_ops(void **state) {
  (void)state;
  int saved_threads = dn_get_num_threads();
  for (int threads = 1; threads <= 2; threads++) {
    DN_OK_OR_FAIL(dn_set_num_threads(threads));
    check_relu_dropout_shape(64, 48, 200, 71);
    check_relu_dropout_shape(100, 20, 700, 75);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(saved_threads));
  int64_t rows = 64, in = 48, outs = 200;
  dn_tensor *x = dn_test_random(71, 2, (int64_t[]){rows, in}), *w = dn_test_random(72, 2, (int64_t[]){outs, in});
  dn_tensor *b = dn_test_random(73, 1, &outs), *g = dn_test_random(74, 2, (int64_t[]){rows, outs});
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  /* a dropped unit passes no gradient, a kept active one g * scale */
  dn_rng rng;
  dn_rng_seed(&rng, 3);
  dn_tensor *y;
  DN_OK_OR_FAIL(dn_linear_relu_dropout(&y, x, w, b, 0.5, &rng, DN_DROPOUT_INVERTED));
  assert_string_equal(dn_grad_fn_name(y), "linear_relu_dropout");
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  int zeros = 0;
  for (int64_t i = 0; i < rows * outs; i++) zeros += dn_test_at(y, i) == 0.0;
  assert_true(zeros > rows * outs / 2 && zeros < rows * outs * 9 / 10);   /* about 1/2 dropped + 1/4 inactive */
  RELEASE(x, w, b, g, y);
}

static void test_relu_dropout_errors(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(81, 2, (int64_t[]){2, 3}), *w = dn_test_random(82, 2, (int64_t[]){4, 3}), *y;
  dn_tensor *w_bad = dn_test_random(83, 2, (int64_t[]){4, 5});
  dn_rng rng;
  dn_rng_seed(&rng, 1);
  DN_EXPECT_ERROR(dn_linear_relu_dropout(&y, x, w, NULL, 1.5, &rng, DN_DROPOUT_INVERTED), DN_EINVAL,
                  "linear_relu_dropout: p must be in [0, 1] (got 1.5)");
  DN_EXPECT_ERROR(dn_linear_relu_dropout(&y, x, w, NULL, NAN, &rng, DN_DROPOUT_INVERTED), DN_EINVAL, "(got nan)");
  DN_EXPECT_ERROR(dn_linear_relu_dropout(&y, x, w, NULL, 0.5, NULL, DN_DROPOUT_INVERTED), DN_EINVAL,
                  "linear_relu_dropout: generator is NULL");
  DN_EXPECT_ERROR(dn_linear_relu_dropout(&y, x, w, NULL, 0.5, &rng, (dn_dropout_scaling)7), DN_EINVAL,
                  "linear_relu_dropout: unknown scaling 7");
  DN_EXPECT_ERROR(dn_linear_relu_dropout(&y, x, w_bad, NULL, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE,
                  "linear: input [2,3] and weight [4,5] do not match");
  assert_int_equal(rng.offset, 0);   /* a failed call draws nothing */
  RELEASE(x, w, w_bad);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_relu_dropout_matches_two_ops), cmocka_unit_test(test_relu_dropout_errors),
    cmocka_unit_test(test_forward_values),       cmocka_unit_test(test_forward_layouts),
    cmocka_unit_test(test_empty),                cmocka_unit_test(test_gradients),
    cmocka_unit_test(test_strided_incoming_grad), cmocka_unit_test(test_autograd_bookkeeping),
    cmocka_unit_test(test_errors),               cmocka_unit_test(test_threads_bit_identical),
    cmocka_unit_test(test_pytorch_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
