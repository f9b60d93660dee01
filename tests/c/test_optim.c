/*
** Optimizer updates, max-norm and gradient clipping against textbook formulas
** computed here in double (torch.optim's documented algorithms), step by step
** with a different gradient at every step.
*/
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N 11       /* elements of the toy parameter */
#define STEPS 5

/* --- helpers ------------------------------------------------------------------------------ */

static void to_doubles(double *out, const dn_tensor *t) {
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) out[i] = dn_test_at(t, i);
}

/* Every element of t within tol (relative, absolute near 0) of ref. */
static void assert_matches(const dn_tensor *t, const double *ref, double tol, const char *what, int step) {
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) {
    double x = dn_test_at(t, i);
    if (!(fabs(x - ref[i]) <= tol * (1 + fabs(ref[i]))))
      fail_msg("%s, step %d, element %lld: got %.9g, expected %.9g", what, step, (long long)i, x, ref[i]);
  }
}

static void assert_bits_equal(const dn_tensor *a, const dn_tensor *b) {
  assert_int_equal(dn_tensor_numel(a), dn_tensor_numel(b));
  assert_memory_equal(dn_tensor_data(a), dn_tensor_data(b), (size_t)dn_tensor_numel(a) * sizeof(float));
}

static dn_tensor *zeros_like(const dn_tensor *t) {
  dn_tensor *z;
  DN_OK_OR_FAIL(dn_tensor_zeros(&z, DN_F32, t->ndim, t->shape));
  return z;
}

static dn_tensor *clone_of(const dn_tensor *t) {
  dn_tensor *c;
  DN_OK_OR_FAIL(dn_clone(&c, t));
  return c;
}

/* The gradient of step s: a different deterministic pattern each step. */
static dn_tensor *grad_at(int step, int ndim, const int64_t *shape) {
  return dn_test_random(100 + (uint64_t)step, ndim, shape);
}

/* --- SGD ---------------------------------------------------------------------------------- */

/* torch.optim.SGD's documented algorithm, in double. */
static void sgd_reference(double *p, double *buf, const double *grad, int64_t n, const dn_sgd_options *o,
                          bool first) {
  for (int64_t i = 0; i < n; i++) {
    double d = o->maximize ? -grad[i] : grad[i];
    if (o->weight_decay != 0) d += o->weight_decay * p[i];
    if (o->momentum != 0) {
      buf[i] = first ? d : o->momentum * buf[i] + (1 - o->dampening) * d;
      d = o->nesterov ? d + o->momentum * buf[i] : buf[i];
    }
    p[i] -= o->lr * d;
  }
}

static void check_sgd(const dn_sgd_options *o, const char *what) {
  int64_t shape[] = {N};
  dn_tensor *param = dn_test_random(1, 1, shape), *buf = zeros_like(param);
  double p[N], b[N] = {0}, g[N];
  to_doubles(p, param);
  for (int s = 0; s < STEPS; s++) {
    dn_tensor *grad = grad_at(s, 1, shape);
    to_doubles(g, grad);
    DN_OK_OR_FAIL(dn_sgd_step(param, grad, o->momentum != 0 ? buf : NULL, o, s == 0));
    sgd_reference(p, b, g, N, o, s == 0);
    assert_matches(param, p, 2e-6, what, s);
    if (o->momentum != 0) assert_matches(buf, b, 2e-6, what, s);
    dn_tensor_release(grad);
  }
  dn_tensor_release(param);
  dn_tensor_release(buf);
}

static void test_sgd_variants(void **state) {
  (void)state;
  check_sgd(&(dn_sgd_options){.lr = 0.1}, "plain");
  check_sgd(&(dn_sgd_options){.lr = 0.05, .weight_decay = 0.01}, "weight decay");
  check_sgd(&(dn_sgd_options){.lr = 0.1, .momentum = 0.9}, "momentum");
  check_sgd(&(dn_sgd_options){.lr = 0.1, .momentum = 0.8, .dampening = 0.3, .weight_decay = 0.02}, "dampening");
  check_sgd(&(dn_sgd_options){.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4}, "nesterov");
  check_sgd(&(dn_sgd_options){.lr = 0.2, .momentum = 0.5, .maximize = true}, "maximize");
}

/* The first step copies the gradient into the buffer (no dampening applied),
   later steps do; checked by hand on one element. */
static void test_sgd_first_step_rule(void **state) {
  (void)state;
  dn_tensor *p = dn_test_from(1, (int64_t[]){1}, (float[]){1.0f});
  dn_tensor *g = dn_test_from(1, (int64_t[]){1}, (float[]){2.0f});
  dn_tensor *buf = dn_test_from(1, (int64_t[]){1}, (float[]){123.0f});   /* ignored on the first step */
  dn_sgd_options o = {.lr = 0.5, .momentum = 0.9, .dampening = 0.5};
  DN_OK_OR_FAIL(dn_sgd_step(p, g, buf, &o, true));
  assert_true(dn_test_at(buf, 0) == 2.0);            /* buf = g */
  assert_true(dn_test_at(p, 0) == 0.0);              /* 1 - 0.5*2 */
  DN_OK_OR_FAIL(dn_sgd_step(p, g, buf, &o, false));
  assert_true(fabs(dn_test_at(buf, 0) - 2.8) < 1e-6); /* 0.9*2 + 0.5*2 */
  assert_true(fabs(dn_test_at(p, 0) + 1.4) < 1e-6);
  /* momentum 0: the buffer argument may be NULL and is not touched when given */
  DN_OK_OR_FAIL(dn_sgd_step(p, g, NULL, &(dn_sgd_options){.lr = 1}, false));
  assert_true(fabs(dn_test_at(p, 0) + 3.4) < 1e-6);
  DN_OK_OR_FAIL(dn_sgd_step(p, g, buf, &(dn_sgd_options){.lr = 1}, false));
  assert_true(fabs(dn_test_at(buf, 0) - 2.8) < 1e-6);
  dn_tensor_release(p);
  dn_tensor_release(g);
  dn_tensor_release(buf);
}

/* --- Adam / AdamW ----------------------------------------------------------------------------- */

static void adam_reference(double *p, double *m, double *v, const double *grad, int64_t n, int64_t step,
                           const dn_adam_options *o) {
  double bc1 = 1 - pow(o->beta1, (double)step), bc2 = 1 - pow(o->beta2, (double)step);
  for (int64_t i = 0; i < n; i++) {
    double g = o->maximize ? -grad[i] : grad[i];
    if (o->decoupled_weight_decay) p[i] *= 1 - o->lr * o->weight_decay;
    else g += o->weight_decay * p[i];
    m[i] = o->beta1 * m[i] + (1 - o->beta1) * g;
    v[i] = o->beta2 * v[i] + (1 - o->beta2) * g * g;
    double mhat = m[i] / bc1, vhat = v[i] / bc2;
    p[i] -= o->lr * mhat / (sqrt(vhat) + o->eps);
  }
}

/* Runs STEPS steps, checks each against the reference; returns the final param. */
static dn_tensor *run_adam(const dn_adam_options *o, const char *what) {
  int64_t shape[] = {N};
  dn_tensor *param = dn_test_random(2, 1, shape), *m = zeros_like(param), *v = zeros_like(param);
  double p[N], rm[N] = {0}, rv[N] = {0}, g[N];
  to_doubles(p, param);
  for (int s = 1; s <= STEPS; s++) {
    dn_tensor *grad = grad_at(s, 1, shape);
    to_doubles(g, grad);
    DN_OK_OR_FAIL(dn_adam_step(param, grad, m, v, s, o));
    adam_reference(p, rm, rv, g, N, s, o);
    assert_matches(param, p, 2e-6, what, s);
    assert_matches(m, rm, 2e-6, what, s);
    assert_matches(v, rv, 2e-6, what, s);
    dn_tensor_release(grad);
  }
  dn_tensor_release(m);
  dn_tensor_release(v);
  return param;
}

static void test_adam_and_adamw(void **state) {
  (void)state;
  dn_adam_options adam = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  dn_tensor *a0 = run_adam(&adam, "adam");
  adam.weight_decay = 0.1;
  dn_tensor *a1 = run_adam(&adam, "adam + L2");
  dn_adam_options adamw = adam;
  adamw.decoupled_weight_decay = true;
  dn_tensor *w1 = run_adam(&adamw, "adamw");
  /* with decay the two differ; without it they are the same update */
  double diff = 0;
  for (int64_t i = 0; i < N; i++) diff = fmax(diff, fabs(dn_test_at(a1, i) - dn_test_at(w1, i)));
  assert_true(diff > 1e-4);
  adamw.weight_decay = 0;
  dn_tensor *w0 = run_adam(&adamw, "adamw without decay");
  assert_bits_equal(a0, w0);
  dn_tensor *mx = run_adam(&(dn_adam_options){.lr = 3e-2, .beta1 = 0.5, .beta2 = 0.9, .eps = 1e-3,
                                              .weight_decay = 0.05, .decoupled_weight_decay = true,
                                              .maximize = true},
                           "adamw maximize, large eps");
  dn_tensor *b0 = run_adam(&(dn_adam_options){.lr = 1e-3, .beta1 = 0, .beta2 = 0, .eps = 1e-8}, "betas 0");
  dn_tensor_release(a0);
  dn_tensor_release(a1);
  dn_tensor_release(w1);
  dn_tensor_release(w0);
  dn_tensor_release(mx);
  dn_tensor_release(b0);
}

/* --- RMSprop ----------------------------------------------------------------------------------- */

static void rmsprop_reference(double *p, double *sq, double *buf, double *ga, const double *grad, int64_t n,
                              const dn_rmsprop_options *o) {
  for (int64_t i = 0; i < n; i++) {
    double g = o->maximize ? -grad[i] : grad[i];
    g += o->weight_decay * p[i];
    sq[i] = o->alpha * sq[i] + (1 - o->alpha) * g * g;
    double avg;
    if (o->centered) {
      ga[i] = o->alpha * ga[i] + (1 - o->alpha) * g;
      avg = sqrt(sq[i] - ga[i] * ga[i]) + o->eps;
    } else {
      avg = sqrt(sq[i]) + o->eps;
    }
    if (o->momentum > 0) {
      buf[i] = o->momentum * buf[i] + g / avg;
      p[i] -= o->lr * buf[i];
    } else {
      p[i] -= o->lr * g / avg;
    }
  }
}

static void check_rmsprop(const dn_rmsprop_options *o, const char *what) {
  int64_t shape[] = {N};
  dn_tensor *param = dn_test_random(3, 1, shape), *sq = zeros_like(param), *buf = zeros_like(param),
            *ga = zeros_like(param);
  double p[N], rs[N] = {0}, rb[N] = {0}, ra[N] = {0}, g[N];
  to_doubles(p, param);
  for (int s = 0; s < STEPS; s++) {
    dn_tensor *grad = grad_at(s, 1, shape);
    to_doubles(g, grad);
    DN_OK_OR_FAIL(dn_rmsprop_step(param, grad, sq, o->momentum > 0 ? buf : NULL, o->centered ? ga : NULL, o));
    rmsprop_reference(p, rs, rb, ra, g, N, o);
    /* centered: sqrt(s - a*a) loses digits to cancellation in float32 */
    assert_matches(param, p, o->centered ? 2e-5 : 2e-6, what, s);
    assert_matches(sq, rs, 2e-6, what, s);
    if (o->momentum > 0) assert_matches(buf, rb, o->centered ? 2e-5 : 2e-6, what, s);
    if (o->centered) assert_matches(ga, ra, 2e-6, what, s);
    dn_tensor_release(grad);
  }
  dn_tensor_release(param);
  dn_tensor_release(sq);
  dn_tensor_release(buf);
  dn_tensor_release(ga);
}

static void test_rmsprop_variants(void **state) {
  (void)state;
  check_rmsprop(&(dn_rmsprop_options){.lr = 1e-2, .alpha = 0.99, .eps = 1e-8}, "plain");
  check_rmsprop(&(dn_rmsprop_options){.lr = 1e-2, .alpha = 0.9, .eps = 1e-6, .weight_decay = 0.1}, "decay");
  check_rmsprop(&(dn_rmsprop_options){.lr = 1e-2, .alpha = 0.9, .eps = 1e-8, .momentum = 0.9}, "momentum");
  check_rmsprop(&(dn_rmsprop_options){.lr = 1e-2, .alpha = 0.9, .eps = 1e-8, .centered = true}, "centered");
  check_rmsprop(&(dn_rmsprop_options){.lr = 1e-2, .alpha = 0.8, .eps = 1e-4, .momentum = 0.5, .centered = true,
                                      .weight_decay = 0.01, .maximize = true},
                "centered + momentum");
}

/* --- max-norm ------------------------------------------------------------------------------------- */

static void test_max_norm(void **state) {
  (void)state;
  /* rows: norm 5 (over), norm 1 (under), zeros, norm exactly 2 (at the limit: kept) */
  float values[] = {3, 4, 0, 0.6f, 0, 0.8f, 0, 0, 0, 2, 0, 0};
  dn_tensor *w = dn_test_from(2, (int64_t[]){4, 3}, values);
  uint32_t version = w->storage->version;
  DN_OK_OR_FAIL(dn_max_norm_(w, 2.0));
  assert_true(w->storage->version != version);
  double scale = 2.0 / (5.0 + 1e-7);
  assert_true(fabs(dn_test_at(w, 0) - 3 * scale) < 1e-6 && fabs(dn_test_at(w, 1) - 4 * scale) < 1e-6);
  for (int i = 3; i < 12; i++) assert_true(dn_test_at(w, i) == values[i]);   /* untouched rows, bit for bit */
  dn_tensor_release(w);

  /* random [37, 53]: each row against its own norm; 4-D conv weights flatten per unit */
  int64_t shapes[][4] = {{37, 53, 1, 1}, {6, 2, 3, 3}};
  int ndims[] = {2, 4};
  for (int c = 0; c < 2; c++) {
    dn_tensor *x = dn_test_random(7, ndims[c], shapes[c]), *orig = clone_of(x);
    double limit = 2.5;
    DN_OK_OR_FAIL(dn_max_norm_(x, limit));
    int64_t rows = shapes[c][0], len = dn_tensor_numel(x) / rows;
    for (int64_t r = 0; r < rows; r++) {
      double ss = 0;
      for (int64_t i = 0; i < len; i++) ss += dn_test_at(orig, r * len + i) * dn_test_at(orig, r * len + i);
      double norm = sqrt(ss), f = norm > limit ? limit / (norm + 1e-7) : 1;
      for (int64_t i = 0; i < len; i++) {
        double want = f == 1 ? dn_test_at(orig, r * len + i) : (float)(dn_test_at(orig, r * len + i) * (float)f);
        assert_true(fabs(dn_test_at(x, r * len + i) - want) <= 1e-7 * (1 + fabs(want)));
      }
    }
    dn_tensor_release(x);
    dn_tensor_release(orig);
  }

  /* empty weight and max_norm 0 are fine */
  dn_tensor *e;
  DN_OK_OR_FAIL(dn_tensor_zeros(&e, DN_F32, 2, (int64_t[]){0, 4}));
  DN_OK_OR_FAIL(dn_max_norm_(e, 1));
  dn_tensor_release(e);
  dn_tensor *z = dn_test_from(2, (int64_t[]){1, 2}, (float[]){1, 1});
  DN_OK_OR_FAIL(dn_max_norm_(z, 0));
  assert_true(fabs(dn_test_at(z, 0)) < 1e-6);
  dn_tensor_release(z);
}

/* --- norms and clipping ---------------------------------------------------------------------------- */

static double sum_squares_ref(const dn_tensor *t) {
  double s = 0;
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) s += dn_test_at(t, i) * dn_test_at(t, i);
  return s;
}

static void test_total_norm_and_clip(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(11, 2, (int64_t[]){5, 7}), *b = dn_test_random(12, 1, (int64_t[]){9000}),
            *c = dn_test_from(0, NULL, (float[]){3.0f}), *e;
  DN_OK_OR_FAIL(dn_tensor_zeros(&e, DN_F32, 1, (int64_t[]){0}));
  dn_tensor *list[] = {a, b, c, e};
  double want = sqrt(sum_squares_ref(a) + sum_squares_ref(b) + 9.0), norm;
  DN_OK_OR_FAIL(dn_total_norm(&norm, list, 4));
  assert_true(fabs(norm - want) <= 1e-12 * want);
  DN_OK_OR_FAIL(dn_total_norm(&norm, NULL, 0));
  assert_true(norm == 0);

  /* under the limit: nothing changes, bit for bit */
  dn_tensor *a0 = clone_of(a), *b0 = clone_of(b);
  double total;
  DN_OK_OR_FAIL(dn_clip_grad_norm_(list, 4, want * 2, &total));
  assert_true(fabs(total - want) <= 1e-12 * want);
  assert_bits_equal(a, a0);
  assert_bits_equal(b, b0);

  /* over the limit: every tensor scaled by max_norm / (total + 1e-6) */
  double limit = want / 4, coef = limit / (want + 1e-6);
  uint32_t version = a->storage->version;
  DN_OK_OR_FAIL(dn_clip_grad_norm_(list, 4, limit, &total));
  assert_true(a->storage->version != version);
  assert_true(fabs(total - want) <= 1e-12 * want);
  for (int64_t i = 0; i < 35; i++) assert_true(fabs(dn_test_at(a, i) - dn_test_at(a0, i) * coef) < 1e-6);
  for (int64_t i = 0; i < 9000; i++) assert_true(fabs(dn_test_at(b, i) - dn_test_at(b0, i) * coef) < 1e-6);
  assert_true(fabs(dn_test_at(c, 0) - 3 * coef) < 1e-6);
  DN_OK_OR_FAIL(dn_total_norm(&norm, list, 4));
  assert_true(fabs(norm - limit) < 1e-5 * limit);
  DN_OK_OR_FAIL(dn_clip_grad_norm_(list, 4, limit, NULL));   /* total_norm may be NULL */
  dn_tensor *a1 = clone_of(a);
  DN_OK_OR_FAIL(dn_clip_grad_norm_(list, 4, INFINITY, &total));   /* no limit: only the norm */
  assert_true(fabs(total - limit) < 1e-5 * limit);
  assert_bits_equal(a, a1);
  dn_tensor_release(a1);

  /* a non-finite norm is reported and leaves the gradients alone */
  dn_tensor *bad = dn_test_from(1, (int64_t[]){2}, (float[]){NAN, 1});
  DN_OK_OR_FAIL(dn_clip_grad_norm_(&bad, 1, 1.0, &total));
  assert_true(isnan(total) && dn_test_at(bad, 1) == 1);
  dn_tensor *inf = dn_test_from(1, (int64_t[]){2}, (float[]){INFINITY, 1});
  DN_OK_OR_FAIL(dn_clip_grad_norm_(&inf, 1, 1.0, &total));
  assert_true(isinf(total) && dn_test_at(inf, 1) == 1);

  dn_tensor *objs[] = {a, b, c, e, a0, b0, bad, inf};
  for (int k = 0; k < 8; k++) dn_tensor_release(objs[k]);
}

/* --- autograd: updates write parameters that require grad, record nothing --------------------------- */

static void test_updates_bypass_autograd(void **state) {
  (void)state;
  int64_t shape[] = {4};
  dn_tensor *p = dn_test_random(5, 1, shape), *g = grad_at(0, 1, shape), *m = zeros_like(p), *v = zeros_like(p),
            *buf = zeros_like(p);
  DN_OK_OR_FAIL(dn_requires_grad_(p, true));
  assert_true(dn_grad_enabled());
  uint32_t v0 = p->storage->version;
  DN_OK_OR_FAIL(dn_sgd_step(p, g, buf, &(dn_sgd_options){.lr = 0.1, .momentum = 0.9}, true));
  DN_OK_OR_FAIL(dn_adam_step(p, g, m, v, 1, &(dn_adam_options){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.99}));
  DN_OK_OR_FAIL(dn_rmsprop_step(p, g, v, NULL, NULL, &(dn_rmsprop_options){.lr = 0.1, .alpha = 0.9}));
  DN_OK_OR_FAIL(dn_clip_grad_norm_(&p, 1, 0.5, NULL));
  dn_tensor *w = dn_test_random(6, 2, (int64_t[]){2, 2});
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  DN_OK_OR_FAIL(dn_max_norm_(w, 0.1));
  assert_true(p->storage->version >= v0 + 4);
  assert_null(p->grad_fn);
  assert_null(w->grad_fn);
  assert_true(p->requires_grad && w->requires_grad);

  /* a graph that saved the parameter notices the update */
  dn_tensor *y, *loss;
  DN_OK_OR_FAIL(dn_binary(&y, DN_MUL, p, p));
  DN_OK_OR_FAIL(dn_sum_all(&loss, y));
  DN_OK_OR_FAIL(dn_sgd_step(p, g, NULL, &(dn_sgd_options){.lr = 0.1}, false));
  DN_EXPECT_ERROR(dn_backward(loss, NULL, false), DN_EINVAL, "modified");
  dn_tensor *objs[] = {p, g, m, v, buf, w, y, loss};
  for (int k = 0; k < 8; k++) dn_tensor_release(objs[k]);
}

/* --- scalars and empty parameters ------------------------------------------------------------------- */

static void test_scalar_and_empty_params(void **state) {
  (void)state;
  dn_tensor *p = dn_test_from(0, NULL, (float[]){1.5f}), *g = dn_test_from(0, NULL, (float[]){-2.0f});
  dn_tensor *m = zeros_like(p), *v = zeros_like(p);
  DN_OK_OR_FAIL(dn_sgd_step(p, g, NULL, &(dn_sgd_options){.lr = 0.25}, true));
  assert_true(dn_test_at(p, 0) == 2.0);
  DN_OK_OR_FAIL(dn_adam_step(p, g, m, v, 1, &(dn_adam_options){.lr = 0.5, .beta1 = 0.9, .beta2 = 0.999}));
  assert_true(fabs(dn_test_at(p, 0) - 2.5) < 1e-6);   /* the first Adam step moves by lr */
  dn_tensor *objs[] = {p, g, m, v};
  for (int k = 0; k < 4; k++) dn_tensor_release(objs[k]);

  dn_tensor *ep, *eg, *es;
  DN_OK_OR_FAIL(dn_tensor_zeros(&ep, DN_F32, 2, (int64_t[]){3, 0}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&eg, DN_F32, 2, (int64_t[]){3, 0}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&es, DN_F32, 2, (int64_t[]){3, 0}));
  DN_OK_OR_FAIL(dn_sgd_step(ep, eg, es, &(dn_sgd_options){.lr = 0.1, .momentum = 0.9}, true));
  DN_OK_OR_FAIL(dn_adam_step(ep, eg, es, es, 3, &(dn_adam_options){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.9}));
  DN_OK_OR_FAIL(dn_rmsprop_step(ep, eg, es, NULL, NULL, &(dn_rmsprop_options){.lr = 0.1, .alpha = 0.9}));
  dn_tensor_release(ep);
  dn_tensor_release(eg);
  dn_tensor_release(es);
}

/* --- determinism across thread counts ----------------------------------------------------------------- */

/* Runs every update on a large parameter with `threads` threads; returns
   {sgd param, adam param, rmsprop param, clipped grad} and the total norm. */
static void run_all(dn_tensor **out, double *norm, int threads) {
  int64_t shape[] = {3, 40001};   /* large enough to go parallel, odd length */
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
  dn_tensor *g = dn_test_random(21, 2, shape);
  dn_tensor *p1 = dn_test_random(22, 2, shape), *b1 = zeros_like(p1);
  for (int s = 0; s < 3; s++)
    DN_OK_OR_FAIL(dn_sgd_step(p1, g, b1, &(dn_sgd_options){.lr = 0.1, .momentum = 0.9, .nesterov = true,
                                                           .weight_decay = 1e-3},
                              s == 0));
  dn_tensor *p2 = dn_test_random(22, 2, shape), *m = zeros_like(p2), *v = zeros_like(p2);
  for (int s = 1; s <= 3; s++)
    DN_OK_OR_FAIL(dn_adam_step(p2, g, m, v, s, &(dn_adam_options){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999,
                                                                  .eps = 1e-8, .weight_decay = 0.01,
                                                                  .decoupled_weight_decay = true}));
  dn_tensor *p3 = dn_test_random(22, 2, shape), *sq = zeros_like(p3), *b3 = zeros_like(p3), *ga = zeros_like(p3);
  for (int s = 0; s < 3; s++)
    DN_OK_OR_FAIL(dn_rmsprop_step(p3, g, sq, b3, ga, &(dn_rmsprop_options){.lr = 1e-2, .alpha = 0.99, .eps = 1e-8,
                                                                          .momentum = 0.9, .centered = true}));
  dn_tensor *c = clone_of(g), *w = dn_test_random(23, 2, (int64_t[]){40, 2000});
  dn_tensor *list[] = {c, p1, w};
  DN_OK_OR_FAIL(dn_total_norm(norm, list, 3));
  DN_OK_OR_FAIL(dn_clip_grad_norm_(list, 3, 1.0, NULL));
  DN_OK_OR_FAIL(dn_max_norm_(w, 3.0));
  out[0] = p1, out[1] = p2, out[2] = p3, out[3] = c, out[4] = w;
  dn_tensor *objs[] = {g, b1, m, v, sq, b3, ga};
  for (int k = 0; k < 7; k++) dn_tensor_release(objs[k]);
}

static void test_bit_identical_across_threads(void **state) {
  (void)state;
  int saved = dn_get_num_threads();
  dn_tensor *one[5], *two[5];
  double n1, n2;
  run_all(one, &n1, 1);
  run_all(two, &n2, 2);
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
  assert_true(n1 == n2);
  for (int k = 0; k < 5; k++) {
    assert_bits_equal(one[k], two[k]);
    dn_tensor_release(one[k]);
    dn_tensor_release(two[k]);
  }
}

/* --- bad inputs ------------------------------------------------------------------------------------------ */

static void test_bad_inputs(void **state) {
  (void)state;
  int64_t shape[] = {2, 3};
  dn_tensor *p = dn_test_random(1, 2, shape), *g = dn_test_random(2, 2, shape), *s = zeros_like(p);
  dn_tensor *wrong = dn_test_random(3, 2, (int64_t[]){3, 2}), *nc = dn_test_noncontiguous(g), *i32;
  DN_OK_OR_FAIL(dn_tensor_zeros(&i32, DN_I32, 2, shape));
  dn_sgd_options sgd = {.lr = 0.1, .momentum = 0.9};

  DN_EXPECT_ERROR(dn_sgd_step(p, wrong, s, &sgd, true), DN_ESHAPE,
                  "sgd: grad of shape [3,2] does not match param of shape [2,3]");
  DN_EXPECT_ERROR(dn_sgd_step(p, g, wrong, &sgd, true), DN_ESHAPE, "sgd: momentum buffer of shape [3,2]");
  DN_EXPECT_ERROR(dn_sgd_step(i32, g, s, &sgd, true), DN_ETYPE, "sgd: param must be float32 (got int32)");
  DN_EXPECT_ERROR(dn_sgd_step(p, i32, s, &sgd, true), DN_ETYPE, "sgd: grad must be float32");
  DN_EXPECT_ERROR(dn_sgd_step(p, nc, s, &sgd, true), DN_EINVAL, "sgd: grad of shape [2,3] must be contiguous");
  DN_EXPECT_ERROR(dn_sgd_step(p, g, NULL, &sgd, true), DN_EINVAL, "needs a momentum buffer");
  DN_EXPECT_ERROR(dn_sgd_step(p, NULL, s, &sgd, true), DN_EINVAL, "sgd: grad is NULL");
  DN_EXPECT_ERROR(dn_sgd_step(p, g, s, NULL, true), DN_EINVAL, "options is NULL");
  DN_EXPECT_ERROR(dn_sgd_step(p, g, s, &(dn_sgd_options){.lr = -1}, true), DN_EINVAL,
                  "sgd: lr must be a finite number >= 0 (got -1)");
  DN_EXPECT_ERROR(dn_sgd_step(p, g, s, &(dn_sgd_options){.lr = NAN}, true), DN_EINVAL, "lr must be");
  DN_EXPECT_ERROR(dn_sgd_step(p, g, s, &(dn_sgd_options){.lr = 0.1, .momentum = -0.5}, true), DN_EINVAL,
                  "momentum must be");
  DN_EXPECT_ERROR(dn_sgd_step(p, g, s, &(dn_sgd_options){.lr = 0.1, .weight_decay = -1}, true), DN_EINVAL,
                  "weight_decay");
  DN_EXPECT_ERROR(dn_sgd_step(p, g, s, &(dn_sgd_options){.lr = 0.1, .nesterov = true}, true), DN_EINVAL,
                  "Nesterov momentum requires a momentum > 0 and zero dampening");
  dn_sgd_options damped_nesterov = {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true};
  DN_EXPECT_ERROR(dn_sgd_step(p, g, s, &damped_nesterov, true), DN_EINVAL, "zero dampening");

  dn_adam_options adam = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  DN_EXPECT_ERROR(dn_adam_step(p, g, s, wrong, 1, &adam), DN_ESHAPE, "adam: exp_avg_sq of shape [3,2]");
  DN_EXPECT_ERROR(dn_adam_step(p, g, s, s, 0, &adam), DN_EINVAL, "adam: step counts from 1 (got 0)");
  DN_EXPECT_ERROR(dn_adam_step(p, g, s, s, 1, &(dn_adam_options){.lr = 1e-3, .beta1 = 1, .beta2 = 0.9}), DN_EINVAL,
                  "adam: beta1 must be in [0, 1) (got 1)");
  DN_EXPECT_ERROR(dn_adam_step(p, g, s, s, 1, &(dn_adam_options){.lr = 1e-3, .beta1 = 0.9, .beta2 = -0.1,
                                                                 .decoupled_weight_decay = true}),
                  DN_EINVAL, "adamw: beta2 must be in [0, 1)");
  DN_EXPECT_ERROR(dn_adam_step(p, g, s, s, 1, &(dn_adam_options){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.9, .eps = -1}),
                  DN_EINVAL, "adam: eps must be");
  DN_EXPECT_ERROR(dn_adam_step(p, g, nc, s, 1, &adam), DN_EINVAL, "adam: exp_avg of shape [2,3] must be contiguous");

  dn_rmsprop_options rms = {.lr = 1e-2, .alpha = 0.99, .momentum = 0.9, .centered = true};
  DN_EXPECT_ERROR(dn_rmsprop_step(p, g, s, NULL, s, &rms), DN_EINVAL, "rmsprop: momentum 0.9 needs a momentum buffer");
  DN_EXPECT_ERROR(dn_rmsprop_step(p, g, s, s, NULL, &rms), DN_EINVAL, "rmsprop: centered needs a grad_avg buffer");
  DN_EXPECT_ERROR(dn_rmsprop_step(p, g, s, s, wrong, &rms), DN_ESHAPE, "rmsprop: grad_avg of shape [3,2]");
  DN_EXPECT_ERROR(dn_rmsprop_step(p, g, i32, NULL, NULL, &(dn_rmsprop_options){.lr = 1}), DN_ETYPE,
                  "rmsprop: square_avg must be float32");
  DN_EXPECT_ERROR(dn_rmsprop_step(p, g, s, NULL, NULL, &(dn_rmsprop_options){.lr = 1, .alpha = -1}), DN_EINVAL,
                  "rmsprop: alpha must be");

  dn_tensor *vec = dn_test_random(4, 1, (int64_t[]){5});
  DN_EXPECT_ERROR(dn_max_norm_(vec, 1), DN_ESHAPE, "max_norm_: weight must have at least 2 dims");
  DN_EXPECT_ERROR(dn_max_norm_(p, -1), DN_EINVAL, "max_norm_: max_norm must be a number >= 0 (got -1)");
  DN_EXPECT_ERROR(dn_max_norm_(p, NAN), DN_EINVAL, "max_norm_: max_norm");
  DN_EXPECT_ERROR(dn_max_norm_(i32, 1), DN_ETYPE, "max_norm_: weight must be float32");
  DN_EXPECT_ERROR(dn_max_norm_(nc, 1), DN_EINVAL, "must be contiguous");

  double norm;
  dn_tensor *list[] = {p, i32}, *list_nc[] = {p, nc}, *list_null[] = {p, NULL};
  DN_EXPECT_ERROR(dn_total_norm(&norm, list, 2), DN_ETYPE,
                  "total_norm: tensor 2 of 2 (shape [2,3]) is int32, float32 expected");
  DN_EXPECT_ERROR(dn_total_norm(&norm, list_nc, 2), DN_EINVAL,
                  "total_norm: tensor 2 of 2 (shape [2,3]) must be contiguous");
  DN_EXPECT_ERROR(dn_total_norm(&norm, list_null, 2), DN_EINVAL, "tensor 2 of 2 is NULL");
  DN_EXPECT_ERROR(dn_total_norm(&norm, NULL, 1), DN_EINVAL, "tensors is NULL");
  DN_EXPECT_ERROR(dn_total_norm(&norm, list, -1), DN_EINVAL, "count must be >= 0");
  DN_EXPECT_ERROR(dn_total_norm(NULL, list, 1), DN_EINVAL, "norm is NULL");
  DN_EXPECT_ERROR(dn_clip_grad_norm_(list, 2, 1.0, &norm), DN_ETYPE, "clip_grad_norm_: tensor 2 of 2");
  DN_EXPECT_ERROR(dn_clip_grad_norm_(list, 1, -1.0, &norm), DN_EINVAL, "clip_grad_norm_: max_norm must be a number >= 0");

  /* nothing was modified by the failed calls */
  dn_tensor *p0 = dn_test_random(1, 2, shape);
  assert_bits_equal(p, p0);
  dn_tensor *objs[] = {p, g, s, wrong, nc, i32, vec, p0};
  for (int k = 0; k < 8; k++) dn_tensor_release(objs[k]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_sgd_variants),
    cmocka_unit_test(test_sgd_first_step_rule),
    cmocka_unit_test(test_adam_and_adamw),
    cmocka_unit_test(test_rmsprop_variants),
    cmocka_unit_test(test_max_norm),
    cmocka_unit_test(test_total_norm_and_clip),
    cmocka_unit_test(test_updates_bypass_autograd),
    cmocka_unit_test(test_scalar_and_empty_params),
    cmocka_unit_test(test_bit_identical_across_threads),
    cmocka_unit_test(test_bad_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
