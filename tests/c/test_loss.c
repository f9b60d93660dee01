/* Losses: values against double-precision loops and PyTorch, gradients by finite differences. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) \
  release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

static const dn_reduction REDUCTIONS[] = {DN_REDUCTION_MEAN, DN_REDUCTION_SUM, DN_REDUCTION_NONE};

/* --- finite-difference gradient check ------------------------------------------------ */

/* Backward of sum(f(in) * fixed random weights) against central differences
   (eps 5e-3; tolerance 3e-3 relative + 1e-3 absolute). */
static void gradcheck(dn_test_fn f, const void *ctx, dn_tensor *const *in, int n_in) {
  dn_test_gradcheck("loss", f, ctx, n_in, in, 5e-3, 3e-3, 1e-3);
}

static dn_tensor *int_tensor(int ndim, const int64_t *shape, const int32_t *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_I32, ndim, shape, values));
  return t;
}

/* A strided copy of a 1-D int32 tensor: every second element of a doubled buffer. */
static dn_tensor *strided_ints(const dn_tensor *t) {
  dn_tensor *big, *col;
  DN_OK_OR_FAIL(dn_tensor_zeros(&big, DN_I32, 2, (int64_t[]){t->shape[0], 2}));
  DN_OK_OR_FAIL(dn_select(&col, big, 1, 1));
  DN_OK_OR_FAIL(dn_copy_(col, t));
  dn_tensor_release(big);
  return col;
}

/* --- references ----------------------------------------------------------------------------- */

/* Per-row cross entropy with label smoothing (or NLL when nll), reduced; double loops. */
static dn_tensor *class_loss_ref(const dn_tensor *x, const dn_tensor *target, int64_t base, double eps,
                                 dn_reduction reduction, bool nll) {
  int64_t rows = x->ndim == 2 ? x->shape[0] : 1, classes = x->shape[x->ndim - 1];
  double *losses = calloc((size_t)rows + 1, sizeof *losses), total = 0;
  for (int64_t i = 0; i < rows; i++) {
    int64_t t = (int64_t)dn_test_at(target, i) - base;
    if (nll) {
      losses[i] = -dn_test_at(x, i * classes + t);
    } else {
      double m = -INFINITY, sum = 0, loss = 0;
      for (int64_t j = 0; j < classes; j++) m = fmax(m, dn_test_at(x, i * classes + j));
      for (int64_t j = 0; j < classes; j++) sum += exp(dn_test_at(x, i * classes + j) - m);
      double lse = m + log(sum);
      for (int64_t j = 0; j < classes; j++) {
        double q = (j == t ? 1 - eps : 0) + eps / (double)classes;
        loss -= q * (dn_test_at(x, i * classes + j) - lse);
      }
      losses[i] = loss;
    }
    total += losses[i];
  }
  dn_tensor *out;
  if (reduction == DN_REDUCTION_NONE) {
    DN_OK_OR_FAIL(dn_tensor_from_doubles(&out, DN_F32, x->ndim - 1, x->shape, losses));
  } else {
    double v = reduction == DN_REDUCTION_MEAN ? total / (double)rows : total;
    DN_OK_OR_FAIL(dn_tensor_from_doubles(&out, DN_F32, 0, NULL, &v));
  }
  free(losses);
  return out;
}

static double pointwise_ref(bool bce, double x, double t) {
  if (!bce) return (x - t) * (x - t);
  return -(t * log(1 / (1 + exp(-x))) + (1 - t) * log(1 - 1 / (1 + exp(-x))));
}

static dn_tensor *pointwise_loss_ref(const dn_tensor *x, const dn_tensor *t, dn_reduction reduction, bool bce) {
  int64_t n = dn_tensor_numel(x);
  double *v = calloc((size_t)n + 1, sizeof *v), total = 0;
  for (int64_t i = 0; i < n; i++) total += v[i] = pointwise_ref(bce, dn_test_at(x, i), dn_test_at(t, i));
  dn_tensor *out;
  if (reduction == DN_REDUCTION_NONE) {
    DN_OK_OR_FAIL(dn_tensor_from_doubles(&out, DN_F32, x->ndim, x->shape, v));
  } else {
    double r = reduction == DN_REDUCTION_MEAN ? total / (double)n : total;
    DN_OK_OR_FAIL(dn_tensor_from_doubles(&out, DN_F32, 0, NULL, &r));
  }
  free(v);
  return out;
}

/* --- cross entropy and NLL ------------------------------------------------------------------ */

static void check_class_loss(dn_tensor *x, const dn_tensor *target, int64_t base, double eps, dn_reduction r,
                             bool nll) {
  dn_tensor *got, *want = class_loss_ref(x, target, base, eps, r, nll);
  DN_OK_OR_FAIL(nll ? dn_nll_loss(&got, x, target, base, r) : dn_cross_entropy(&got, x, target, base, eps, r));
  dn_test_assert_close(got, want, 1e-5);
  RELEASE(got, want);
}

static void test_class_loss_values(void **state) {
  (void)state;
  int64_t rows = 7, classes = 5;
  dn_tensor *x = dn_test_random(1, 2, (int64_t[]){rows, classes}), *xn = dn_test_noncontiguous(x);
  dn_tensor *t0 = int_tensor(1, &rows, (int32_t[]){0, 4, 2, 2, 1, 3, 0});
  dn_tensor *t1 = int_tensor(1, &rows, (int32_t[]){1, 5, 3, 3, 2, 4, 1});
  dn_tensor *tn = strided_ints(t0), *v = dn_test_random(2, 1, &classes), *scalar_t;
  DN_OK_OR_FAIL(dn_tensor_full(&scalar_t, DN_I32, 0, NULL, 3));
  for (size_t r = 0; r < 3; r++)
    for (int nll = 0; nll < 2; nll++) {
      const double smoothing[] = {0, 0.1, 0.45, 1};   /* 1: the uniform target alone, as PyTorch allows */
      for (int s = 0; s < (nll ? 1 : 4); s++) {
        check_class_loss(x, t0, 0, smoothing[s], REDUCTIONS[r], nll);
        check_class_loss(x, t1, 1, smoothing[s], REDUCTIONS[r], nll);
        check_class_loss(xn, tn, 0, smoothing[s], REDUCTIONS[r], nll);
        check_class_loss(v, scalar_t, 0, smoothing[s], REDUCTIONS[r], nll);
      }
    }
  /* shapes of the results: 0-dim for mean/sum, [N] (or 0-dim for a [C] input) for none */
  dn_tensor *l;
  DN_OK_OR_FAIL(dn_cross_entropy(&l, x, t0, 0, 0, DN_REDUCTION_NONE));
  assert_int_equal(l->ndim, 1);
  assert_int_equal(l->shape[0], rows);
  dn_tensor_release(l);
  DN_OK_OR_FAIL(dn_cross_entropy(&l, v, scalar_t, 0, 0, DN_REDUCTION_NONE));
  assert_int_equal(l->ndim, 0);
  dn_tensor_release(l);
  /* an empty batch: mean is NaN (0/0, as PyTorch), sum 0, none [0] */
  dn_tensor *e = dn_test_random(3, 2, (int64_t[]){0, classes}), *te;
  DN_OK_OR_FAIL(dn_tensor_zeros(&te, DN_I32, 1, (int64_t[]){0}));
  DN_OK_OR_FAIL(dn_cross_entropy(&l, e, te, 0, 0.1, DN_REDUCTION_MEAN));
  assert_true(isnan(dn_test_at(l, 0)));
  dn_tensor_release(l);
  DN_OK_OR_FAIL(dn_nll_loss(&l, e, te, 0, DN_REDUCTION_SUM));
  assert_true(dn_test_at(l, 0) == 0);
  dn_tensor_release(l);
  DN_OK_OR_FAIL(dn_cross_entropy(&l, e, te, 0, 0, DN_REDUCTION_NONE));
  assert_int_equal(l->shape[0], 0);
  dn_tensor_release(l);
  RELEASE(x, xn, t0, t1, tn, v, scalar_t, e, te);
}

/* Logits of +-1e4 (exp overflows float32 without the max shift): finite, exact losses and gradients. */
static void test_cross_entropy_stable(void **state) {
  (void)state;
  /* /usr/bin/python3 -c "import torch, torch.nn.functional as F; x=torch.tensor([[1e4,-1e4,0.0],[-1e4,1e4,1e4-1]],
       requires_grad=True); l=F.cross_entropy(x,torch.tensor([1,2]),label_smoothing=LS,reduction='none');
       l.sum().backward(); print(l.tolist(), x.grad.flatten().tolist())"   for LS = 0.0 and 0.2 */
  static const double want_loss[2][2] = {{20000.0, 1.313262}, {18000.0, 1334.513184}};
  static const double want_grad[2][6] = {
    {1.0, -1.0, 0.0, 0.0, 0.731058598, -0.731058598},
    {0.933333337, -0.866666675, -0.06666667, -0.06666667, 0.664391935, -0.597725272}};
  const double smoothing[2] = {0.0, 0.2};
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1e4f, -1e4f, 0.0f, -1e4f, 1e4f, 1e4f - 1});
  dn_tensor *t = int_tensor(1, (int64_t[]){2}, (int32_t[]){1, 2}), *ones;
  DN_OK_OR_FAIL(dn_tensor_ones(&ones, DN_F32, 1, (int64_t[]){2}));
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  for (int s = 0; s < 2; s++) {
    dn_tensor *l;
    DN_OK_OR_FAIL(dn_cross_entropy(&l, x, t, 0, smoothing[s], DN_REDUCTION_NONE));
    for (int i = 0; i < 2; i++) {
      assert_true(isfinite(dn_test_at(l, i)));
      assert_float_equal(dn_test_at(l, i), want_loss[s][i], 1e-6 * want_loss[s][i]);
    }
    DN_OK_OR_FAIL(dn_backward(l, ones, false));
    for (int i = 0; i < 6; i++) assert_float_equal(dn_test_at(x->grad, i), want_grad[s][i], 1e-6);
    dn_tensor_release(x->grad);
    x->grad = NULL;
    dn_tensor_release(l);
  }
  /* the mean over rows stays finite too, and a row with the target at the max costs 0 */
  dn_tensor *l, *t0 = int_tensor(1, (int64_t[]){2}, (int32_t[]){0, 1});
  DN_OK_OR_FAIL(dn_cross_entropy(&l, x, t0, 0, 0, DN_REDUCTION_MEAN));
  assert_float_equal(dn_test_at(l, 0), 0.5 * log1p(exp(-1.0)), 1e-6);
  RELEASE(x, t, ones, l, t0);
}

/*
** PyTorch, x [3,4] and targets (2, 0, 3); "none" backpropagates (1, -0.5, 2):
** /usr/bin/python3 -c "import torch, torch.nn.functional as F; x=torch.tensor([[1.0,-2.0,0.5,0.0],[3.0,0.25,-1.0,2.0],
**   [-0.5,1.5,2.5,-3.0]],requires_grad=True); t=torch.tensor([2,0,3]); l=F.cross_entropy(x,t,label_smoothing=LS,
**   reduction=RED); (l if RED!='none' else (l*torch.tensor([1.0,-0.5,2.0])).sum()).backward(); print(l, x.grad)"
** for LS in (0.0, 0.1) and RED in ('mean', 'sum', 'none'); the same with F.nll_loss(x, t, reduction=RED).
*/
static void test_class_loss_pytorch_reference(void **state) {
  (void)state;
  static const double want_ce_loss[3][2][3] = {
    {{2.476237535}, {2.457487345}},
    {{7.428712368}, {7.372462273}},
    {{1.205173135, 0.371648431, 5.851891041}, {1.267673016, 0.565398455, 5.539390564}}};
  static const double want_ce_grad[3][2][12] = {
    {{0.164674342, 0.008198654, -0.233453304, 0.060580306, -0.103467785, 0.014694816, 0.004210135, 0.084562808,
      0.011672693, 0.086250186, 0.234452307, -0.332375199},
     {0.156341001, -0.000134681, -0.208453268, 0.052246965, -0.078467794, 0.006361479, -0.004123199, 0.076229461,
      0.003339359, 0.077916846, 0.226118952, -0.307375163}},
    {{0.494023025, 0.024595961, -0.700359881, 0.18174091, -0.310403347, 0.044084445, 0.012630405, 0.253688425,
      0.035018079, 0.258750558, 0.703356922, -0.997125566},
     {0.469022989, -0.000404041, -0.625359833, 0.156740904, -0.235403389, 0.019084439, -0.012369597, 0.228688389,
      0.010018077, 0.233750537, 0.678356886, -0.922125518}},
    {{0.494023025, 0.024595961, -0.700359881, 0.18174091, 0.155201674, -0.022042222, -0.006315202, -0.126844212,
      0.070036158, 0.517501116, 1.406713843, -1.994251132},
     {0.469022989, -0.000404041, -0.625359833, 0.156740904, 0.117701694, -0.009542219, 0.006184799, -0.114344195,
      0.020036153, 0.467501074, 1.356713772, -1.844251037}}};
  static const double want_nll_loss[3][3] = {{-0.166666672}, {-0.5}, {-0.5, -3.0, 3.0}};
  static const double want_nll_grad[3][12] = {{0, 0, -0.333333343, 0, -0.333333343, 0, 0, 0, 0, 0, 0, -0.333333343},
                                              {0, 0, -1.0, 0, -1.0, 0, 0, 0, 0, 0, 0, -1.0},
                                              {0, 0, -1.0, 0, 0.5, 0, 0, 0, 0, 0, 0, -2.0}};
  dn_tensor *x = dn_test_from(2, (int64_t[]){3, 4}, (float[]){1, -2, 0.5f, 0, 3, 0.25f, -1, 2, -0.5f, 1.5f, 2.5f, -3});
  dn_tensor *t = int_tensor(1, (int64_t[]){3}, (int32_t[]){3, 1, 4});   /* 1-based, as from Lua */
  dn_tensor *g_none = dn_test_from(1, (int64_t[]){3}, (float[]){1, -0.5f, 2});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  for (int r = 0; r < 3; r++)
    for (int nll = 0; nll < 2; nll++)
      for (int s = 0; s < (nll ? 1 : 2); s++) {
        dn_tensor *l;
        if (nll) DN_OK_OR_FAIL(dn_nll_loss(&l, x, t, 1, REDUCTIONS[r]));
        else DN_OK_OR_FAIL(dn_cross_entropy(&l, x, t, 1, s ? 0.1 : 0.0, REDUCTIONS[r]));
        assert_string_equal(dn_grad_fn_name(l), nll ? "nll_loss" : "cross_entropy");
        DN_OK_OR_FAIL(dn_backward(l, REDUCTIONS[r] == DN_REDUCTION_NONE ? g_none : NULL, false));
        const double *want_l = nll ? want_nll_loss[r] : want_ce_loss[r][s];
        const double *want_g = nll ? want_nll_grad[r] : want_ce_grad[r][s];
        for (int i = 0; i < dn_tensor_numel(l); i++)
          assert_float_equal(dn_test_at(l, i), want_l[i], 1e-5 * (1 + fabs(want_l[i])));
        for (int i = 0; i < 12; i++)
          assert_float_equal(dn_test_at(x->grad, i), want_g[i], 1e-5 * (1 + fabs(want_g[i])));
        dn_tensor_release(x->grad);
        x->grad = NULL;
        dn_tensor_release(l);
      }
  RELEASE(x, t, g_none);
}

typedef struct class_ctx {
  const dn_tensor *target;
  double smoothing;
  dn_reduction reduction;
  bool nll;
} class_ctx;

static dn_status apply_class_loss(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const class_ctx *c = ctx;
  if (c->nll) return dn_nll_loss(out, in[0], c->target, 0, c->reduction);
  return dn_cross_entropy(out, in[0], c->target, 0, c->smoothing, c->reduction);
}

static void test_class_loss_gradients(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(4, 2, (int64_t[]){4, 3}), *xn = dn_test_noncontiguous(x);
  dn_tensor *v = dn_test_random(5, 1, (int64_t[]){5}), *tv;
  dn_tensor *t = int_tensor(1, (int64_t[]){4}, (int32_t[]){2, 0, 1, 2}), *tn = strided_ints(t);
  DN_OK_OR_FAIL(dn_tensor_full(&tv, DN_I32, 0, NULL, 4));
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(xn, true));
  DN_OK_OR_FAIL(dn_requires_grad_(v, true));
  const double smoothing[] = {0, 0.1, 0.3};
  for (size_t r = 0; r < 3; r++)
    for (int nll = 0; nll < 2; nll++)
      for (int s = 0; s < (nll ? 1 : 3); s++) {
        class_ctx c = {t, smoothing[s], REDUCTIONS[r], nll};
        gradcheck(apply_class_loss, &c, (dn_tensor *[]){x}, 1);
        class_ctx cn = {tn, smoothing[s], REDUCTIONS[r], nll};
        gradcheck(apply_class_loss, &cn, (dn_tensor *[]){xn}, 1);
        class_ctx cv = {tv, smoothing[s], REDUCTIONS[r], nll};
        gradcheck(apply_class_loss, &cv, (dn_tensor *[]){v}, 1);
      }
  /* "none" with a strided (broadcast) incoming gradient */
  dn_tensor *one, *gb, *gd;
  DN_OK_OR_FAIL(dn_tensor_full(&one, DN_F32, 1, (int64_t[]){1}, 0.7));
  DN_OK_OR_FAIL(dn_broadcast_to(&gb, one, 1, (int64_t[]){4}));
  DN_OK_OR_FAIL(dn_clone(&gd, gb));
  for (int nll = 0; nll < 2; nll++) {
    dn_tensor *l, *want = NULL, *got = NULL;
    class_ctx c = {t, 0.2, DN_REDUCTION_NONE, nll};
    DN_OK_OR_FAIL(apply_class_loss(&l, (dn_tensor *[]){xn}, &c));
    dn_test_node_backward(l, gd, &want);
    dn_test_node_backward(l, gb, &got);
    dn_test_assert_close(got, want, 0);
    RELEASE(l, want, got);
  }
  /* no node without grad mode, and none for a logits tensor that does not require grad */
  dn_tensor *l, *plain = dn_test_random(6, 2, (int64_t[]){4, 3});
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_cross_entropy(&l, x, t, 0, 0, DN_REDUCTION_MEAN));
  dn_set_grad_enabled(mode);
  assert_null(l->grad_fn);
  dn_tensor_release(l);
  DN_OK_OR_FAIL(dn_cross_entropy(&l, plain, t, 0, 0, DN_REDUCTION_MEAN));
  assert_null(l->grad_fn);
  dn_tensor_release(l);
  /* changing the target in place after the forward is caught by backward */
  DN_OK_OR_FAIL(dn_cross_entropy(&l, x, t, 0, 0, DN_REDUCTION_SUM));
  DN_OK_OR_FAIL(dn_tensor_set(t, (int64_t[]){0}, 1));
  DN_EXPECT_ERROR(dn_backward(l, NULL, false), DN_EINVAL, "modified in place");
  RELEASE(x, xn, v, tv, t, tn, one, gb, gd, l, plain);
}

static void test_class_loss_errors(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 2, (int64_t[]){3, 4}), *l = (dn_tensor *)&l;
  dn_tensor *t = int_tensor(1, (int64_t[]){3}, (int32_t[]){0, 1, 2});
  dn_tensor *t_big = int_tensor(1, (int64_t[]){3}, (int32_t[]){0, 4, 2});
  dn_tensor *t_neg = int_tensor(1, (int64_t[]){3}, (int32_t[]){0, 1, -1});
  dn_tensor *t_short = int_tensor(1, (int64_t[]){2}, (int32_t[]){0, 1});
  dn_tensor *t_float = dn_test_from(1, (int64_t[]){3}, (float[]){0, 1, 2});
  dn_tensor *x3 = dn_test_random(2, 3, (int64_t[]){2, 3, 4}), *v = dn_test_random(3, 1, (int64_t[]){4}), *xi;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 2, (int64_t[]){3, 4}));
  DN_EXPECT_ERROR(dn_cross_entropy(&l, x, t_big, 0, 0, DN_REDUCTION_MEAN), DN_ERANGE,
                  "cross_entropy: target 4 at position 1 is out of range for 4 classes (valid: 0..3)");
  assert_null(l);
  DN_EXPECT_ERROR(dn_cross_entropy(&l, x, t_neg, 0, 0, DN_REDUCTION_MEAN), DN_ERANGE, "target -1 at position 2");
  /* from Lua (base 1): 0 is out of range and positions count from 1 */
  DN_EXPECT_ERROR(dn_nll_loss(&l, x, t, 1, DN_REDUCTION_MEAN), DN_ERANGE,
                  "nll_loss: target 0 at position 1 is out of range for 4 classes (valid: 1..4)");
  DN_EXPECT_ERROR(dn_cross_entropy(&l, x, t_float, 0, 0, DN_REDUCTION_MEAN), DN_ETYPE,
                  "cross_entropy: target must be int32 class indices (got float32)");
  DN_EXPECT_ERROR(dn_nll_loss(&l, xi, t, 0, DN_REDUCTION_MEAN), DN_ETYPE, "nll_loss: input must be float32 (got int32)");
  DN_EXPECT_ERROR(dn_cross_entropy(&l, x, t_short, 0, 0, DN_REDUCTION_MEAN), DN_ESHAPE,
                  "cross_entropy: input [3,4] and target [2] do not match (expected target [3])");
  DN_EXPECT_ERROR(dn_cross_entropy(&l, v, t, 0, 0, DN_REDUCTION_MEAN), DN_ESHAPE,
                  "input [4] and target [3] do not match (expected target [] (0-dim))");
  DN_EXPECT_ERROR(dn_cross_entropy(&l, x3, t, 0, 0, DN_REDUCTION_MEAN), DN_ESHAPE,
                  "cross_entropy: input must be [N, C] or [C] (got shape [2,3,4])");
  DN_EXPECT_ERROR(dn_cross_entropy(&l, x, t, 0, 1.5, DN_REDUCTION_MEAN), DN_EINVAL,
                  "cross_entropy: label_smoothing must be in [0, 1] (got 1.5)");
  DN_EXPECT_ERROR(dn_cross_entropy(&l, x, t, 0, -0.1, DN_REDUCTION_MEAN), DN_EINVAL, "label_smoothing");
  DN_EXPECT_ERROR(dn_cross_entropy(&l, x, t, 0, NAN, DN_REDUCTION_MEAN), DN_EINVAL, "(got nan)");
  DN_EXPECT_ERROR(dn_cross_entropy(&l, x, t, 0, 0, (dn_reduction)7), DN_EINVAL,
                  "cross_entropy: unknown reduction 7 (use mean, sum or none)");
  DN_EXPECT_ERROR(dn_nll_loss(&l, x, t, 0, (dn_reduction)-1), DN_EINVAL, "nll_loss: unknown reduction -1");
  RELEASE(x, t, t_big, t_neg, t_short, t_float, x3, v, xi);
}

/* --- MSE and BCE with logits ------------------------------------------------------------------ */

static dn_status apply_pointwise(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const int *c = ctx;   /* {bce, reduction} */
  return c[0] ? dn_bce_with_logits(out, in[0], in[1], (dn_reduction)c[1])
              : dn_mse_loss(out, in[0], in[1], (dn_reduction)c[1]);
}

static void check_pointwise(dn_tensor *x, dn_tensor *t, dn_reduction r, bool bce) {
  dn_tensor *got, *want = pointwise_loss_ref(x, t, r, bce);
  DN_OK_OR_FAIL(apply_pointwise(&got, (dn_tensor *[]){x, t}, (int[]){bce, r}));
  dn_test_assert_close(got, want, 1e-5);
  RELEASE(got, want);
}

static void test_pointwise_values(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(7, 2, (int64_t[]){6, 5}), *t = dn_test_random(8, 2, (int64_t[]){6, 5});
  dn_tensor *big = dn_test_random(9, 1, (int64_t[]){20000}), *big_t = dn_test_random(10, 1, (int64_t[]){20000});
  DN_OK_OR_FAIL(dn_binary_scalar_(t, DN_MUL, 0.25));    /* BCE targets in [0, 1] */
  DN_OK_OR_FAIL(dn_binary_scalar_(t, DN_ADD, 0.5));
  DN_OK_OR_FAIL(dn_binary_scalar_(big_t, DN_MUL, 0.25));
  DN_OK_OR_FAIL(dn_binary_scalar_(big_t, DN_ADD, 0.5));
  dn_tensor *xn = dn_test_noncontiguous(x), *tn = dn_test_noncontiguous(t), *s0, *s1, *e;
  DN_OK_OR_FAIL(dn_tensor_full(&s0, DN_F32, 0, NULL, -1.5));
  DN_OK_OR_FAIL(dn_tensor_full(&s1, DN_F32, 0, NULL, 0.25));
  DN_OK_OR_FAIL(dn_tensor_zeros(&e, DN_F32, 2, (int64_t[]){0, 3}));
  for (size_t r = 0; r < 3; r++)
    for (int bce = 0; bce < 2; bce++) {
      check_pointwise(x, t, REDUCTIONS[r], bce);
      check_pointwise(xn, t, REDUCTIONS[r], bce);
      check_pointwise(x, tn, REDUCTIONS[r], bce);
      check_pointwise(big, big_t, REDUCTIONS[r], bce);
      check_pointwise(s0, s1, REDUCTIONS[r], bce);
    }
  /* empty: mean NaN, sum 0 */
  dn_tensor *l;
  DN_OK_OR_FAIL(dn_mse_loss(&l, e, e, DN_REDUCTION_MEAN));
  assert_true(isnan(dn_test_at(l, 0)));
  dn_tensor_release(l);
  DN_OK_OR_FAIL(dn_bce_with_logits(&l, e, e, DN_REDUCTION_SUM));
  assert_true(dn_test_at(l, 0) == 0);
  dn_tensor_release(l);
  /* BCE stays finite for huge logits: log(1 + exp(1e4)) would overflow */
  dn_tensor *hx = dn_test_from(1, (int64_t[]){2}, (float[]){1e4f, -1e4f});
  dn_tensor *ht = dn_test_from(1, (int64_t[]){2}, (float[]){0, 0});
  DN_OK_OR_FAIL(dn_bce_with_logits(&l, hx, ht, DN_REDUCTION_NONE));
  assert_float_equal(dn_test_at(l, 0), 1e4, 1e-3);
  assert_float_equal(dn_test_at(l, 1), 0, 1e-30);
  RELEASE(x, t, big, big_t, xn, tn, s0, s1, e, l, hx, ht);
}

/*
** PyTorch: a = [[0.5,-1,2],[1.5,0,-0.25]], b = [[0,1,1],[1,0.5,0]], both requiring grad:
** /usr/bin/python3 -c "import torch, torch.nn.functional as F; a=torch.tensor([[0.5,-1.0,2.0],[1.5,0.0,-0.25]],
**   requires_grad=True); b=torch.tensor([[0.0,1.0,1.0],[1.0,0.5,0.0]],requires_grad=True); l=F.mse_loss(a,b,
**   reduction=RED); l.backward(); print(l.item(), a.grad, b.grad)"   (and F.binary_cross_entropy_with_logits)
*/
static void test_pointwise_pytorch_reference(void **state) {
  (void)state;
  static const double want_loss[2][2] = {{0.96875, 5.8125}, {0.647461116, 3.884766579}};
  static const double want_da[2][2][6] = {
    {{0.166666672, -0.666666687, 0.333333343, 0.166666672, -0.166666672, -0.083333336},
     {1.0, -4.0, 2.0, 1.0, -1.0, -0.5}},
    {{0.103743225, -0.1218431, -0.019867161, -0.03040426, 0.0, 0.072970584},
     {0.622459352, -0.731058598, -0.119202971, -0.182425559, 0.0, 0.437823504}}};
  static const double want_db[2][2][6] = {
    {{-0.166666672, 0.666666687, -0.333333343, -0.166666672, 0.166666672, 0.083333336},
     {-1.0, 4.0, -2.0, -1.0, 1.0, 0.5}},
    {{-0.083333336, 0.166666672, -0.333333343, -0.25, 0.0, 0.041666668}, {-0.5, 1.0, -2.0, -1.5, 0.0, 0.25}}};
  dn_tensor *a = dn_test_from(2, (int64_t[]){2, 3}, (float[]){0.5f, -1, 2, 1.5f, 0, -0.25f});
  dn_tensor *b = dn_test_from(2, (int64_t[]){2, 3}, (float[]){0, 1, 1, 1, 0.5f, 0});
  DN_OK_OR_FAIL(dn_requires_grad_(a, true));
  DN_OK_OR_FAIL(dn_requires_grad_(b, true));
  for (int bce = 0; bce < 2; bce++)
    for (int r = 0; r < 2; r++) {
      dn_tensor *l;
      DN_OK_OR_FAIL(apply_pointwise(&l, (dn_tensor *[]){a, b}, (int[]){bce, REDUCTIONS[r]}));
      assert_string_equal(dn_grad_fn_name(l), bce ? "bce_with_logits" : "mse_loss");
      DN_OK_OR_FAIL(dn_backward(l, NULL, false));
      assert_float_equal(dn_test_at(l, 0), want_loss[bce][r], 1e-5 * want_loss[bce][r]);
      for (int i = 0; i < 6; i++) {
        assert_float_equal(dn_test_at(a->grad, i), want_da[bce][r][i], 1e-5 * (1 + fabs(want_da[bce][r][i])));
        assert_float_equal(dn_test_at(b->grad, i), want_db[bce][r][i], 1e-5 * (1 + fabs(want_db[bce][r][i])));
      }
      RELEASE(a->grad, b->grad, l);
      a->grad = b->grad = NULL;
    }
  RELEASE(a, b);
}

static void test_pointwise_gradients(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(11, 2, (int64_t[]){3, 4}), *t = dn_test_random(12, 2, (int64_t[]){3, 4});
  DN_OK_OR_FAIL(dn_binary_scalar_(t, DN_MUL, 0.25));
  DN_OK_OR_FAIL(dn_binary_scalar_(t, DN_ADD, 0.5));
  dn_tensor *xn = dn_test_noncontiguous(x), *s0, *s1;
  DN_OK_OR_FAIL(dn_tensor_full(&s0, DN_F32, 0, NULL, 0.8));
  DN_OK_OR_FAIL(dn_tensor_full(&s1, DN_F32, 0, NULL, 0.3));
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(xn, true));
  DN_OK_OR_FAIL(dn_requires_grad_(s0, true));
  for (int bce = 0; bce < 2; bce++)
    for (size_t r = 0; r < 3; r++) {
      int ctx[2] = {bce, REDUCTIONS[r]};
      for (int t_grad = 0; t_grad < 2; t_grad++) {   /* the target requires grad or not */
        DN_OK_OR_FAIL(dn_requires_grad_(t, t_grad));
        gradcheck(apply_pointwise, ctx, (dn_tensor *[]){x, t}, 2);
        gradcheck(apply_pointwise, ctx, (dn_tensor *[]){xn, t}, 2);
      }
      gradcheck(apply_pointwise, ctx, (dn_tensor *[]){s0, s1}, 2);
      /* only the target requires grad */
      DN_OK_OR_FAIL(dn_requires_grad_(x, false));
      gradcheck(apply_pointwise, ctx, (dn_tensor *[]){x, t}, 2);
      DN_OK_OR_FAIL(dn_requires_grad_(x, true));
    }
  /* "none" with broadcast and transposed incoming gradients */
  dn_tensor *gv = dn_test_random(13, 1, (int64_t[]){4}), *gb, *gd, *gt;
  DN_OK_OR_FAIL(dn_broadcast_to(&gb, gv, 2, (int64_t[]){3, 4}));
  DN_OK_OR_FAIL(dn_clone(&gd, gb));
  gt = dn_test_noncontiguous(gd);
  for (int bce = 0; bce < 2; bce++) {
    dn_tensor *l, *want[2] = {NULL, NULL}, *got_b[2] = {NULL, NULL}, *got_t[2] = {NULL, NULL};
    DN_OK_OR_FAIL(apply_pointwise(&l, (dn_tensor *[]){xn, t}, (int[]){bce, DN_REDUCTION_NONE}));
    dn_test_node_backward(l, gd, want);
    dn_test_node_backward(l, gb, got_b);
    dn_test_node_backward(l, gt, got_t);
    for (int k = 0; k < 2; k++) {
      dn_test_assert_close(got_b[k], want[k], 0);
      dn_test_assert_close(got_t[k], want[k], 0);
    }
    RELEASE(l, want[0], want[1], got_b[0], got_b[1], got_t[0], got_t[1]);
  }
  RELEASE(x, t, xn, s0, s1, gv, gb, gd, gt);
}

static void test_pointwise_errors(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(1, 1, (int64_t[]){3}), *b = dn_test_random(2, 1, (int64_t[]){4}), *ai;
  dn_tensor *l = (dn_tensor *)&l;
  DN_OK_OR_FAIL(dn_tensor_zeros(&ai, DN_I32, 1, (int64_t[]){3}));
  DN_EXPECT_ERROR(dn_mse_loss(&l, a, b, DN_REDUCTION_MEAN), DN_ESHAPE,
                  "mse_loss: input [3] and target [4] must have the same shape");
  assert_null(l);
  DN_EXPECT_ERROR(dn_bce_with_logits(&l, a, b, DN_REDUCTION_SUM), DN_ESHAPE, "bce_with_logits: input [3] and target [4]");
  DN_EXPECT_ERROR(dn_mse_loss(&l, a, ai, DN_REDUCTION_MEAN), DN_ETYPE,
                  "mse_loss: expects float32 tensors (got input float32, target int32)");
  DN_EXPECT_ERROR(dn_bce_with_logits(&l, ai, a, DN_REDUCTION_MEAN), DN_ETYPE, "bce_with_logits: expects float32");
  DN_EXPECT_ERROR(dn_mse_loss(&l, a, a, (dn_reduction)3), DN_EINVAL, "mse_loss: unknown reduction 3");
  RELEASE(a, b, ai);
}

static void test_reduction_parse(void **state) {
  (void)state;
  dn_reduction r = (dn_reduction)-1;
  assert_true(dn_reduction_parse("mean", &r) && r == DN_REDUCTION_MEAN);
  assert_true(dn_reduction_parse("sum", &r) && r == DN_REDUCTION_SUM);
  assert_true(dn_reduction_parse("none", &r) && r == DN_REDUCTION_NONE);
  assert_false(dn_reduction_parse("avg", &r));
  assert_false(dn_reduction_parse("", &r));
  assert_true(r == DN_REDUCTION_NONE);   /* untouched on failure */
}

/* Large enough for parallel loops: losses and gradients bit-identical on 1 and 2 threads. */
static void test_threads_bit_identical(void **state) {
  (void)state;
  int64_t rows = 600, classes = 100;
  dn_tensor *x = dn_test_random(21, 2, (int64_t[]){rows, classes}), *xn = dn_test_noncontiguous(x);
  dn_tensor *t = dn_test_random(22, 2, (int64_t[]){rows, classes}), *labels;
  DN_OK_OR_FAIL(dn_tensor_new(&labels, DN_I32, 1, &rows));
  for (int64_t i = 0; i < rows; i++) ((int32_t *)dn_tensor_data(labels))[i] = (int32_t)((i * 37) % classes);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_requires_grad_(xn, true));
  DN_OK_OR_FAIL(dn_requires_grad_(t, true));
  int saved = dn_get_num_threads();
  for (int op = 0; op < 4; op++)
    for (int layout = 0; layout < 2; layout++)
      for (size_t r = 0; r < 3; r++) {
        dn_tensor *in = layout ? xn : x, *results[2][3];
        for (int run = 0; run < 2; run++) {
          DN_OK_OR_FAIL(dn_set_num_threads(run + 1));
          dn_tensor *l, *g = NULL;
          if (op == 0) DN_OK_OR_FAIL(dn_cross_entropy(&l, in, labels, 0, 0.1, REDUCTIONS[r]));
          else if (op == 1) DN_OK_OR_FAIL(dn_nll_loss(&l, in, labels, 0, REDUCTIONS[r]));
          else DN_OK_OR_FAIL(apply_pointwise(&l, (dn_tensor *[]){in, t}, (int[]){op == 3, REDUCTIONS[r]}));
          if (REDUCTIONS[r] == DN_REDUCTION_NONE) g = dn_test_random(23, l->ndim, l->shape);
          DN_OK_OR_FAIL(dn_backward(l, g, false));
          dn_tensor_release(g);
          results[run][0] = l;
          results[run][1] = in->grad;
          results[run][2] = t->grad;
          in->grad = t->grad = NULL;
        }
        for (int k = 0; k < 3; k++) {
          if (!results[0][k]) continue;
          size_t bytes = (size_t)dn_tensor_numel(results[0][k]) * sizeof(float);
          assert_memory_equal(dn_tensor_data(results[0][k]), dn_tensor_data(results[1][k]), bytes);
          RELEASE(results[0][k], results[1][k]);
        }
      }
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
  RELEASE(x, xn, t, labels);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_class_loss_values),   cmocka_unit_test(test_cross_entropy_stable),
    cmocka_unit_test(test_class_loss_pytorch_reference), cmocka_unit_test(test_class_loss_gradients),
    cmocka_unit_test(test_class_loss_errors),   cmocka_unit_test(test_pointwise_values),
    cmocka_unit_test(test_pointwise_pytorch_reference), cmocka_unit_test(test_pointwise_gradients),
    cmocka_unit_test(test_pointwise_errors),    cmocka_unit_test(test_reduction_parse),
    cmocka_unit_test(test_threads_bit_identical),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
