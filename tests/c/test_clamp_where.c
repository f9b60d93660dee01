/* clamp, where and masked_fill (clamp_where.c) against naive
   double-precision loops: bounds (one-sided, NaN, int32 saturation, a
   non-integral bound making float32), conditions and masks of every dtype
   with broadcasting and dtype promotion, masked_fill_ in place (a mask in the
   tensor's own memory, version bump, the in-place rules), their errors, and
   their gradients by finite differences (broadcast operands, a condition or
   mask requiring grad gets none). */
#include "testutil.h"
#include "testutil_elementwise.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "graph.h"
#include "internal.h"

/* --- clamp and where ----------------------------------------------------------------------- */

static double ref_clamp(double x, double lo, double hi) {
  if (!isnan(lo) && x < lo) return lo;
  if (!isnan(hi) && x > hi) return hi;
  return x;
}

static void check_clamp(const dn_tensor *a, double lo, double hi, dn_dtype want_dtype) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_clamp(&out, a, lo, hi));
  expect_shape(out, a->ndim, a->shape);
  assert_int_equal(out->dtype, want_dtype);
  for (int64_t i = 0; i < dn_tensor_numel(a); i++) {
    double want = ref_clamp(dn_test_at(a, i), lo, hi);
    if (want_dtype == DN_F32) want = (float)want;
    expect_close(dn_test_at(out, i), want, out->dtype, "clamp", i);
  }
  dn_tensor_release(out);
}

static void test_clamp(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(110, 2, (int64_t[]){4, 6}), *an = dn_test_noncontiguous(a);
  const double bounds[][2] = {{-0.5, 0.5}, {NAN, 0.25}, {-1, NAN}, {NAN, NAN}, {0.3, 0.3}, {-INFINITY, 1}};
  for (size_t k = 0; k < sizeof bounds / sizeof bounds[0]; k++) {
    check_clamp(a, bounds[k][0], bounds[k][1], DN_F32);
    check_clamp(an, bounds[k][0], bounds[k][1], DN_F32);
  }
  dn_tensor *special = dn_test_from(1, (int64_t[]){4}, (float[]){NAN, INFINITY, -INFINITY, 0.5f}), *out;
  DN_OK_OR_FAIL(dn_clamp(&out, special, -1, 1));
  assert_true(isnan(dn_test_at(out, 0)) && dn_test_at(out, 1) == 1 && dn_test_at(out, 2) == -1 &&
              dn_test_at(out, 3) == 0.5);
  dn_tensor_release(out);

  dn_tensor *ints = random_ints(111, 2, (int64_t[]){3, 5}, 10);
  check_clamp(ints, -3, 4, DN_I32);
  check_clamp(ints, NAN, 0, DN_I32);
  check_clamp(ints, -1e12, 1e12, DN_I32);   /* bounds beyond int32 saturate */
  check_clamp(ints, -INFINITY, 2, DN_I32);
  check_clamp(ints, -0.5, 2, DN_F32);       /* a non-integral bound makes float32 */

  out = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_clamp(&out, a, 1, -1), DN_EINVAL, "clamp: lower bound 1 is greater than upper bound -1");
  assert_null(out);
  dn_tensor *mask;
  DN_OK_OR_FAIL(dn_tensor_zeros(&mask, DN_U8, 1, (int64_t[]){2}));
  DN_EXPECT_ERROR(dn_clamp(&out, mask, 0, 1), DN_ETYPE, "clamp: uint8");
  dn_tensor_release(a);
  dn_tensor_release(an);
  dn_tensor_release(special);
  dn_tensor_release(ints);
  dn_tensor_release(mask);
}

static void check_where(const dn_tensor *cond, const dn_tensor *a, const dn_tensor *b, int ndim,
                        const int64_t *shape, dn_dtype want_dtype) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_where(&out, cond, a, b));
  expect_shape(out, ndim, shape);
  assert_int_equal(out->dtype, want_dtype);
  for (int64_t i = 0; i < dn_tensor_numel(out); i++) {
    double c = bcast_at(cond, ndim, shape, i);
    double want = c != 0 ? bcast_at(a, ndim, shape, i) : bcast_at(b, ndim, shape, i);   /* NaN is nonzero */
    expect_close(dn_test_at(out, i), want, out->dtype, "where", i);
  }
  dn_tensor_release(out);
}

static void test_where(void **state) {
  (void)state;
  int64_t shape[2] = {3, 4};
  dn_tensor *condf = dn_test_from(2, shape, (float[]){1, 0, -0.0f, NAN, 2, 0, 0, 1, -1, 0, INFINITY, 0});
  dn_tensor *condi = random_ints(120, 2, shape, 1), *condu;
  DN_OK_OR_FAIL(dn_tensor_new(&condu, DN_U8, 2, shape));
  uint8_t *u = dn_tensor_data(condu);
  for (int i = 0; i < 12; i++) u[i] = (uint8_t)(i % 3 == 0 ? 0 : i * 20);
  dn_tensor *a = dn_test_random(121, 2, shape), *b = dn_test_random(122, 2, shape);
  dn_tensor *an = dn_test_noncontiguous(a), *condn = dn_test_noncontiguous(condf);
  const dn_tensor *conds[] = {condf, condi, condu, condn};
  for (int k = 0; k < 4; k++) {
    check_where(conds[k], a, b, 2, shape, DN_F32);
    check_where(conds[k], an, b, 2, shape, DN_F32);
  }

  /* three-way broadcast and dtype promotion */
  dn_tensor *c21 = dn_test_from(2, (int64_t[]){2, 1}, (float[]){1, 0});
  dn_tensor *a13 = dn_test_random(123, 2, (int64_t[]){1, 3}), *s = scalar_f32(7);
  dn_tensor *i13 = from_ints(2, (int64_t[]){1, 3}, (int32_t[]){4, 5, 6}), *i0 = from_ints(0, NULL, (int32_t[]){-1});
  check_where(c21, a13, s, 2, (int64_t[]){2, 3}, DN_F32);
  check_where(c21, i13, i0, 2, (int64_t[]){2, 3}, DN_I32);
  check_where(c21, i13, s, 2, (int64_t[]){2, 3}, DN_F32);
  check_where(s, i0, i13, 2, (int64_t[]){1, 3}, DN_I32);
  dn_tensor *empty;
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 2, (int64_t[]){0, 3}));
  check_where(empty, a13, s, 2, (int64_t[]){0, 3}, DN_F32);

  dn_tensor *out = (dn_tensor *)1, *b4 = dn_test_random(124, 1, (int64_t[]){4});
  DN_EXPECT_ERROR(dn_where(&out, c21, a13, b4), DN_ESHAPE,
                  "where: shapes [2,1] (condition), [1,3] and [4] cannot be broadcast together (dim 2: 3 vs 4)");
  assert_null(out);
  DN_EXPECT_ERROR(dn_where(&out, b4, a13, s), DN_ESHAPE, "where: shapes [4] (condition), [1,3] and []");
  DN_EXPECT_ERROR(dn_where(&out, c21, condu, s), DN_ETYPE, "where: uint8 tensors are not supported");
  DN_EXPECT_ERROR(dn_where(&out, c21, s, condu), DN_ETYPE, "where: uint8");

  dn_tensor_release(condf);
  dn_tensor_release(condi);
  dn_tensor_release(condu);
  dn_tensor_release(condn);
  dn_tensor_release(a);
  dn_tensor_release(an);
  dn_tensor_release(b);
  dn_tensor_release(c21);
  dn_tensor_release(a13);
  dn_tensor_release(s);
  dn_tensor_release(i13);
  dn_tensor_release(i0);
  dn_tensor_release(empty);
  dn_tensor_release(b4);
}

/* --- gradients ---------------------------------------------------------------------- */

static dn_status f_clamp(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const double *bounds = ctx;
  return dn_clamp(out, in[0], bounds[0], bounds[1]);
}

static dn_status f_where(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  (void)ctx;
  return dn_where(out, in[0], in[1], in[2]);
}

static void test_clamp_gradients(void **state) {
  (void)state;
  const double bounds[][2] = {{-0.5, 0.7}, {NAN, 0.2}, {-0.1, NAN}, {NAN, NAN}};
  int64_t shape[2] = {3, 4};
  for (size_t b = 0; b < 4; b++) {
    for (int layout = 0; layout < 2; layout++) {
      dn_tensor *x = input(50, 2, shape, LATTICE_A, layout, true);   /* >= 0.05 from every bound */
      float *d = x->storage->data;
      for (int64_t i = 0; i < (int64_t)(x->storage->nbytes / 4); i++) d[i] += 0.05f;
      char label[64];
      snprintf(label, sizeof label, "clamp bounds %zu layout %d", b, layout);
      gradcheck(label, f_clamp, bounds[b], 1, &x);
      dn_tensor_release(x);
    }
  }
}

static void test_where_gradients(void **state) {
  (void)state;
  int64_t cs[2] = {3, 1}, as[2] = {1, 4}, bs[1] = {4}, full[2] = {3, 4};
  const dn_dtype cond_types[] = {DN_U8, DN_I32, DN_F32};
  for (int t = 0; t < 3; t++) {
    for (int layout = 0; layout < 2; layout++) {
      dn_tensor *c01, *cond;
      DN_OK_OR_FAIL(dn_tensor_from_doubles(&c01, DN_F32, 2, cs, (double[]){1, 0, 1}));
      DN_OK_OR_FAIL(dn_to_dtype(&cond, c01, cond_types[t]));
      dn_tensor *in[3] = {cond, input(61, 2, as, ANY, layout, true), input(62, 1, bs, ANY, layout, true)};
      gradcheck("where", f_where, NULL, 3, in);
      /* a full-shape condition, a broadcast only in b */
      dn_tensor *signs = input(63, 2, full, ANY, layout, false), *cond2;
      DN_OK_OR_FAIL(dn_binary_scalar(&cond2, DN_GT, signs, 0, false));
      dn_tensor *a2 = input(64, 2, full, ANY, layout, true);
      dn_tensor *in2[3] = {cond2, a2, in[2]};
      gradcheck("where full", f_where, NULL, 3, in2);
      dn_tensor *list[] = {c01, cond, in[1], in[2], signs, cond2, a2};
      release_all(list, 7);
    }
  }
  /* a condition requiring grad gets none (it is not differentiable) */
  dn_tensor *cond = input(65, 1, bs, ANY, false, true), *a = input(66, 1, bs, ANY, false, true);
  dn_tensor *b = input(67, 1, bs, ANY, false, false), *y;
  DN_OK_OR_FAIL(dn_where(&y, cond, a, b));
  assert_string_equal(dn_grad_fn_name(y), "where");
  backward_ones(y);
  assert_null(cond->grad);
  assert_non_null(a->grad);
  assert_null(b->grad);
  dn_tensor *list[] = {cond, a, b, y};
  release_all(list, 4);
}

/* --- masked_fill ---------------------------------------------------------------------------- */

static void check_masked_fill(const dn_tensor *a, const dn_tensor *mask, double value, int ndim,
                              const int64_t *shape) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_masked_fill(&out, a, mask, value));
  expect_shape(out, ndim, shape);
  assert_int_equal(out->dtype, a->dtype);
  for (int64_t i = 0; i < dn_tensor_numel(out); i++) {
    double m = bcast_at(mask, ndim, shape, i);
    double want = m != 0 ? (a->dtype == DN_F32 ? (double)(float)value : value) : bcast_at(a, ndim, shape, i);
    expect_close(dn_test_at(out, i), want, out->dtype, "masked_fill", i);
  }
  dn_tensor_release(out);
}

static void test_masked_fill(void **state) {
  (void)state;
  int64_t shape[2] = {3, 4};
  dn_tensor *a = dn_test_random(130, 2, shape), *an = dn_test_noncontiguous(a);
  dn_tensor *mf = dn_test_from(2, shape, (float[]){1, 0, -0.0f, NAN, 2, 0, 0, 1, -1, 0, INFINITY, 0});
  dn_tensor *mi = random_ints(131, 2, shape, 1), *mu, *mn = dn_test_noncontiguous(mf);
  DN_OK_OR_FAIL(dn_tensor_new(&mu, DN_U8, 2, shape));
  uint8_t *u = dn_tensor_data(mu);
  for (int i = 0; i < 12; i++) u[i] = (uint8_t)(i % 3 == 0 ? 0 : i * 20);
  const dn_tensor *masks[] = {mf, mi, mu, mn};
  for (int k = 0; k < 4; k++) {
    check_masked_fill(a, masks[k], -7.5, 2, shape);
    check_masked_fill(an, masks[k], NAN, 2, shape);
  }
  /* broadcasting both ways (the result has the broadcast shape, as torch.masked_fill) */
  dn_tensor *row = dn_test_from(1, (int64_t[]){4}, (float[]){0, 1, 0, 1});
  dn_tensor *col = dn_test_random(132, 2, (int64_t[]){3, 1});
  check_masked_fill(a, row, 0.25, 2, shape);
  check_masked_fill(col, row, 0.25, 2, shape);
  dn_tensor *ints = random_ints(133, 2, shape, 9);
  check_masked_fill(ints, mu, -3, 2, shape);
  dn_tensor *empty;
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 2, (int64_t[]){0, 4}));
  check_masked_fill(empty, row, 1, 2, (int64_t[]){0, 4});

  /* in place: the same values; mask broadcast to t; a mask that is t itself */
  dn_tensor *c;
  DN_OK_OR_FAIL(dn_clone(&c, a));
  uint32_t version = c->storage->version;
  DN_OK_OR_FAIL(dn_masked_fill_(c, row, 0.25));
  assert_true(c->storage->version != version);
  for (int64_t i = 0; i < 12; i++)
    assert_true(dn_test_at(c, i) == (i % 2 ? 0.25f : dn_test_at(a, i)));
  dn_tensor *self = dn_test_from(1, (int64_t[]){4}, (float[]){0, 2, 0, -1});
  DN_OK_OR_FAIL(dn_masked_fill_(self, self, 5));
  assert_true(dn_test_at(self, 0) == 0 && dn_test_at(self, 1) == 5 && dn_test_at(self, 3) == 5);
  /* a mask in the tensor's own memory in another order is read before any write */
  dn_tensor *z = dn_test_from(1, (int64_t[]){4}, (float[]){0, 0, 0, 1}), *zr;
  DN_OK_OR_FAIL(dn_tensor_alias(&zr, z, 1, (int64_t[]){4}, (int64_t[]){-1}, 3));   /* z reversed */
  DN_OK_OR_FAIL(dn_masked_fill_(z, zr, 9));   /* the mask is [1, 0, 0, 0]: z[3] must not see z[0]'s 9 */
  assert_true(dn_test_at(z, 0) == 9 && dn_test_at(z, 1) == 0 && dn_test_at(z, 2) == 0 && dn_test_at(z, 3) == 1);
  dn_tensor *in = dn_test_noncontiguous(a);
  DN_OK_OR_FAIL(dn_masked_fill_(in, mf, 1));
  for (int64_t i = 0; i < 12; i++)
    assert_true(dn_test_at(in, i) == (dn_test_at(mf, i) != 0 ? 1 : dn_test_at(a, i)));

  /* errors */
  dn_tensor *out = (dn_tensor *)1, *b5 = dn_test_random(134, 1, (int64_t[]){5}), *leaf;
  DN_EXPECT_ERROR(dn_masked_fill(&out, a, b5, 0), DN_ESHAPE,
                  "masked_fill: the tensor's shape [3,4] and the mask's [5] cannot be broadcast together");
  assert_null(out);
  DN_EXPECT_ERROR(dn_masked_fill(&out, ints, row, 2.5), DN_EINVAL,
                  "masked_fill: value 2.5 is not representable as int32");
  DN_EXPECT_ERROR(dn_masked_fill(&out, a, row, 1e300), DN_EINVAL, "masked_fill: value 1e+300 is not representable");
  DN_EXPECT_ERROR(dn_masked_fill(&out, mu, row, 1), DN_ETYPE, "masked_fill: uint8 tensors are not supported");
  DN_EXPECT_ERROR(dn_masked_fill_(row, mf, 1), DN_ESHAPE,
                  "masked_fill_: the mask's shape [3,4] cannot be broadcast to the tensor's shape [4]");
  DN_EXPECT_ERROR(dn_masked_fill_(ints, row, 0.5), DN_EINVAL, "masked_fill_: value 0.5 is not representable");
  dn_tensor *ex;
  DN_OK_OR_FAIL(dn_broadcast_to(&ex, row, 2, shape));
  DN_EXPECT_ERROR(dn_masked_fill_(ex, mf, 1), DN_EINVAL, "masked_fill_: cannot write into an expanded tensor");
  DN_OK_OR_FAIL(dn_clone(&leaf, a));
  DN_OK_OR_FAIL(dn_requires_grad_(leaf, true));
  DN_EXPECT_ERROR(dn_masked_fill_(leaf, row, 1), DN_EINVAL, "masked_fill_: in-place operation on a tensor that requires grad");
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_masked_fill_(leaf, row, 1));   /* allowed under no_grad, as every in-place op */
  dn_set_grad_enabled(mode);
  dn_tensor *list[] = {a, an, mf, mi, mu, mn, row, col, ints, empty, c, self, z, zr, in, b5, ex, leaf};
  release_all(list, (int)(sizeof list / sizeof *list));
}

static dn_status f_masked_fill(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  (void)ctx;
  return dn_masked_fill(out, in[0], in[1], -0.5);
}

static void test_masked_fill_gradients(void **state) {
  (void)state;
  const dn_dtype mask_types[] = {DN_U8, DN_I32, DN_F32};
  for (int t = 0; t < 3; t++) {
    for (int layout = 0; layout < 2; layout++) {
      dn_tensor *m01, *mask;
      DN_OK_OR_FAIL(dn_tensor_from_doubles(&m01, DN_F32, 2, (int64_t[]){3, 4},
                                           (double[]){1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1}));
      DN_OK_OR_FAIL(dn_to_dtype(&mask, m01, mask_types[t]));
      dn_tensor *x = input(140, 2, (int64_t[]){3, 4}, ANY, layout, true);
      gradcheck("masked_fill", f_masked_fill, NULL, 2, (dn_tensor *[]){x, mask});
      /* a broadcast input: its gradient is summed back */
      dn_tensor *xr = input(141, 2, (int64_t[]){1, 4}, ANY, layout, true);
      gradcheck("masked_fill broadcast", f_masked_fill, NULL, 2, (dn_tensor *[]){xr, mask});
      dn_tensor *list[] = {m01, mask, x, xr};
      release_all(list, 4);
    }
  }
  /* exact: zero where filled; a mask requiring grad gets none */
  dn_tensor *x = leaf_of(4, (float[]){1, 2, 3, 4}), *m = leaf_of(4, (float[]){0, 1, 0, 1}), *y;
  DN_OK_OR_FAIL(dn_masked_fill(&y, x, m, 0));
  assert_string_equal(dn_grad_fn_name(y), "masked_fill");
  backward_ones(y);
  expect_grad(x, (float[]){1, 0, 1, 0}, 4);
  assert_null(m->grad);
  dn_tensor *list[] = {x, m, y};
  release_all(list, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_clamp),
    cmocka_unit_test(test_where),
    cmocka_unit_test_setup(test_clamp_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_where_gradients, dn_test_reset_modes),
    cmocka_unit_test_setup(test_masked_fill, dn_test_reset_modes),
    cmocka_unit_test_setup(test_masked_fill_gradients, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
