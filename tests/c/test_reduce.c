/* The reductions of reduce.c (sum, mean, var/std, max/min, argmax/argmin;
   all elements and over one dim) against naive reference loops: layouts,
   dtypes (int32 exact sums and overflow, uint8), ties and NaN, empty and
   0-dim tensors, every bad argument's message; their gradients by finite
   differences on random shapes, dims, keepdim and layouts, ties, zero std,
   exact values, accumulation and what records a node. How the engine
   computes them (blocks, lanes, columns, precision, thread counts) is in
   test_reduce_engine.c; the references both use are in testutil_reduce.c. */
#include "testutil.h"
#include "testutil_reduce.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "graph.h"

/* --- tests ------------------------------------------------------------------- */

static void test_all_reductions_layouts(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(1, 3, (int64_t[]){7, 9, 11});
  dn_tensor *nc = dn_test_noncontiguous(a), *perm, *nar, *big, *bigt;
  DN_OK_OR_FAIL(dn_permute(&perm, a, (int[]){2, 0, 1}));
  DN_OK_OR_FAIL(dn_narrow(&nar, a, 1, 2, 5));
  check_every_all(a);
  check_every_all(nc);
  check_every_all(perm);
  check_every_all(nar);
  /* several blocks, parallel, and a strided gather across block edges */
  big = dn_test_random(2, 2, (int64_t[]){300, 401});
  DN_OK_OR_FAIL(dn_t(&bigt, big));
  check_every_all(big);
  check_every_all(bigt);
  /* an expanded view (stride 0) */
  dn_tensor *row = dn_test_random(3, 2, (int64_t[]){1, 5}), *ex;
  DN_OK_OR_FAIL(dn_broadcast_to(&ex, row, 2, (int64_t[]){4, 5}));
  check_every_all(ex);
  RELEASE(a, nc, perm, nar, big, bigt, row, ex);
}

static void test_all_reductions_int32(void **state) {
  (void)state;
  dn_tensor *a = random_ints(4, 3, (int64_t[]){5, 6, 7}), *nc = dn_test_noncontiguous(a);
  check_every_all(a);
  check_every_all(nc);
  dn_tensor *r;
  dn_tensor *b = ints_from(1, (int64_t[]){4}, (int32_t[]){3, -7, 10, 1});
  DN_OK_OR_FAIL(dn_sum_all(&r, b));
  assert_int_equal(r->dtype, DN_I32);
  assert_true(scalar(r) == 7);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_mean_all(&r, b));
  assert_int_equal(r->dtype, DN_F32);
  assert_true(scalar(r) == 1.75);
  dn_tensor_release(r);
  /* exact sums beyond float precision */
  dn_tensor *c = ints_from(1, (int64_t[]){3}, (int32_t[]){16777217, 1, -5});
  DN_OK_OR_FAIL(dn_sum_all(&r, c));
  assert_true(scalar(r) == 16777213);
  dn_tensor_release(r);
  RELEASE(a, nc, b, c);
}

static void test_int32_sum_overflow(void **state) {
  (void)state;
  dn_tensor *a = ints_from(2, (int64_t[]){2, 2}, (int32_t[]){INT32_MAX, -5, 1, 5});
  dn_tensor *b = ints_from(1, (int64_t[]){2}, (int32_t[]){INT32_MIN, -1});
  dn_tensor *r = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_sum_all(&r, a), DN_ERANGE, "sum: result overflows int32 (input of shape [2,2])");
  assert_null(r);
  DN_EXPECT_ERROR(dn_sum_all(&r, b), DN_ERANGE, "overflows int32");
  r = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_sum_dim(&r, a, 0, false), DN_ERANGE, "overflows int32");
  assert_null(r);
  DN_OK_OR_FAIL(dn_sum_dim(&r, a, 1, false));   /* the rows fit, the columns do not */
  assert_true(dn_test_at(r, 0) == INT32_MAX - 5 && dn_test_at(r, 1) == 6);
  dn_tensor_release(r);
  DN_EXPECT_ERROR(dn_sum_dim(&r, b, 0, true), DN_ERANGE, "overflows int32");
  /* the mean does not overflow: it is float32 */
  DN_OK_OR_FAIL(dn_mean_all(&r, a));
  assert_true(fabs(scalar(r) - ((double)INT32_MAX + 1) / 4) < 1);
  dn_tensor_release(r);
  RELEASE(a, b);
}

static void test_max_min_all_ties_nan(void **state) {
  (void)state;
  dn_tensor *r;
  dn_tensor *ties = dn_test_from(1, (int64_t[]){6}, (float[]){1, 5, -2, 5, -2, 0});
  DN_OK_OR_FAIL(dn_argmax_all(&r, ties, 0));
  assert_true(scalar(r) == 1);   /* first of the two 5s */
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_argmin_all(&r, ties, 1));
  assert_true(scalar(r) == 3);   /* first of the two -2s, 1-based */
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_max_all(&r, ties));
  assert_true(scalar(r) == 5);
  dn_tensor_release(r);

  dn_tensor *nan = dn_test_from(1, (int64_t[]){5}, (float[]){1, 9, NAN, -4, NAN});
  DN_OK_OR_FAIL(dn_max_all(&r, nan));
  assert_true(isnan(scalar(r)));
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_min_all(&r, nan));
  assert_true(isnan(scalar(r)));
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_argmax_all(&r, nan, 0));
  assert_true(scalar(r) == 2);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_argmin_all(&r, nan, 1));
  assert_true(scalar(r) == 3);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_sum_all(&r, nan));
  assert_true(isnan(scalar(r)));
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_var_all(&r, nan, 1));
  assert_true(isnan(scalar(r)));
  dn_tensor_release(r);

  /* across blocks: the max in a later block, a tie in an even later one, a NaN last */
  int64_t n = 20000;
  dn_tensor *big;
  DN_OK_OR_FAIL(dn_tensor_zeros(&big, DN_F32, 1, &n));
  float *d = dn_tensor_data(big);
  d[5000] = 3;
  d[15000] = 3;
  d[9000] = -3;
  d[12000] = -3;
  DN_OK_OR_FAIL(dn_argmax_all(&r, big, 0));
  assert_true(scalar(r) == 5000);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_argmin_all(&r, big, 0));
  assert_true(scalar(r) == 9000);
  dn_tensor_release(r);
  d[19999] = NAN;
  DN_OK_OR_FAIL(dn_argmin_all(&r, big, 0));
  assert_true(scalar(r) == 19999);
  dn_tensor_release(r);

  /* dtype is kept */
  dn_tensor *ints = ints_from(1, (int64_t[]){3}, (int32_t[]){-4, 8, 8});
  DN_OK_OR_FAIL(dn_max_all(&r, ints));
  assert_int_equal(r->dtype, DN_I32);
  assert_true(scalar(r) == 8);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_argmax_all(&r, ints, 0));
  assert_true(scalar(r) == 1);
  dn_tensor_release(r);
  RELEASE(ties, nan, big, ints);
}

static void test_empty_and_scalar_all(void **state) {
  (void)state;
  dn_tensor *e, *ei, *r = (dn_tensor *)1;
  DN_OK_OR_FAIL(dn_tensor_new(&e, DN_F32, 2, (int64_t[]){3, 0}));
  DN_OK_OR_FAIL(dn_tensor_new(&ei, DN_I32, 1, (int64_t[]){0}));
  DN_OK_OR_FAIL(dn_sum_all(&r, e));
  assert_true(scalar(r) == 0);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_sum_all(&r, ei));
  assert_int_equal(r->dtype, DN_I32);
  assert_true(scalar(r) == 0);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_mean_all(&r, e));
  assert_true(isnan(scalar(r)));
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_var_all(&r, e, 0));
  assert_true(isnan(scalar(r)));
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_std_all(&r, ei, 1));
  assert_true(isnan(scalar(r)));
  dn_tensor_release(r);
  r = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_max_all(&r, e), DN_EINVAL, "max: cannot reduce an empty tensor");
  assert_null(r);
  DN_EXPECT_ERROR(dn_min_all(&r, ei), DN_EINVAL, "min: cannot reduce an empty tensor");
  DN_EXPECT_ERROR(dn_argmax_all(&r, e, 0), DN_EINVAL, "argmax: cannot reduce an empty tensor");
  DN_EXPECT_ERROR(dn_argmin_all(&r, e, 1), DN_EINVAL, "argmin: cannot reduce an empty tensor");

  /* a 0-dim tensor and a single element: var with correction 1 is NaN */
  dn_tensor *s;
  DN_OK_OR_FAIL(dn_tensor_full(&s, DN_F32, 0, NULL, 2.5));
  check_every_all(s);
  DN_OK_OR_FAIL(dn_var_all(&r, s, 1));
  assert_true(isnan(scalar(r)));
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_var_all(&r, s, 0));
  assert_true(scalar(r) == 0);
  dn_tensor_release(r);
  /* correction larger than the count */
  dn_tensor *two = dn_test_from(1, (int64_t[]){2}, (float[]){1, 3});
  DN_OK_OR_FAIL(dn_var_all(&r, two, 2));
  assert_true(isnan(scalar(r)));
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_std_all(&r, two, 1));
  assert_true(fabs(scalar(r) - sqrt(2.0)) < 1e-6);
  dn_tensor_release(r);
  RELEASE(e, ei, s, two);
}

static void test_dims_3d_layouts(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(5, 3, (int64_t[]){3, 4, 5});
  dn_tensor *nc = dn_test_noncontiguous(a), *perm, *nar, *tr;
  DN_OK_OR_FAIL(dn_permute(&perm, a, (int[]){1, 2, 0}));   /* [4,5,3], no unit stride last */
  DN_OK_OR_FAIL(dn_narrow(&nar, a, 2, 1, 3));              /* [3,4,3], rows with gaps */
  DN_OK_OR_FAIL(dn_transpose(&tr, a, 0, 2));               /* [5,4,3] */
  check_all_dims(a);
  check_all_dims(nc);
  check_all_dims(perm);
  check_all_dims(nar);
  check_all_dims(tr);
  /* an expanded dim (stride 0) */
  dn_tensor *row = dn_test_random(6, 3, (int64_t[]){2, 1, 3}), *ex;
  DN_OK_OR_FAIL(dn_broadcast_to(&ex, row, 3, (int64_t[]){2, 4, 3}));
  check_all_dims(ex);
  /* 1-D and 4-D */
  dn_tensor *v = dn_test_random(7, 1, (int64_t[]){13}), *h = dn_test_random(8, 4, (int64_t[]){2, 3, 2, 4});
  check_all_dims(v);
  check_all_dims(h);
  RELEASE(a, nc, perm, nar, tr, row, ex, v, h);
}

static void test_dims_int32(void **state) {
  (void)state;
  dn_tensor *a = random_ints(9, 3, (int64_t[]){3, 4, 5}), *nc = dn_test_noncontiguous(a), *tr;
  DN_OK_OR_FAIL(dn_transpose(&tr, a, 0, 1));
  check_all_dims(a);
  check_all_dims(nc);
  check_all_dims(tr);
  /* many ties in small ints: the first occurrence wins on every path */
  dn_tensor *big = random_ints(10, 2, (int64_t[]){40, 30});
  for (int64_t i = 0; i < 1200; i++) ((int32_t *)big->storage->data)[i] %= 3;
  check_dim(big, MAX, 0, false, 0, 0);
  check_dim(big, MIN, 1, true, 0, 1);
  /* lanes over several blocks */
  dn_tensor *lng = random_ints(15, 2, (int64_t[]){3, 9000});
  for (int k = SUM; k <= MIN; k++) {
    check_dim(lng, (kind)k, 1, false, 1, 0);
    check_dim(lng, (kind)k, 0, false, 1, 1);
  }
  check_every_all(lng);
  RELEASE(a, nc, tr, big, lng);
}

static void test_dim_max_min_ties_and_nan(void **state) {
  (void)state;
  /* rows:    [1 5 5 NaN 5]  [2 2 -1 -1 NaN]  [4 NaN 9 NaN 0] */
  dn_tensor *a = dn_test_from(2, (int64_t[]){3, 5},
                              (float[]){1, 5, 5, NAN, 5, 2, 2, -1, -1, NAN, 4, NAN, 9, NAN, 0});
  dn_tensor *v, *i;
  DN_OK_OR_FAIL(dn_max_dim(&v, &i, a, 1, false, 0));
  assert_true(isnan(dn_test_at(v, 0)) && isnan(dn_test_at(v, 1)) && isnan(dn_test_at(v, 2)));
  assert_true(dn_test_at(i, 0) == 3 && dn_test_at(i, 1) == 4 && dn_test_at(i, 2) == 1);
  RELEASE(v, i);
  /* columns (the vectorized path): [1 2 4] [5 2 NaN] [5 -1 9] [NaN -1 NaN] [5 NaN 0] */
  DN_OK_OR_FAIL(dn_max_dim(&v, &i, a, 0, true, 1));
  assert_int_equal(v->ndim, 2);
  assert_int_equal(v->shape[0], 1);
  double want_v[5] = {4, NAN, 9, NAN, NAN}, want_i[5] = {3, 3, 3, 1, 2};
  for (int k = 0; k < 5; k++) {
    assert_true(isnan(want_v[k]) ? isnan(dn_test_at(v, k)) : dn_test_at(v, k) == want_v[k]);
    assert_true(dn_test_at(i, k) == want_i[k]);
  }
  RELEASE(v, i);
  DN_OK_OR_FAIL(dn_min_dim(&v, &i, a, 0, false, 0));
  double want_mv[5] = {1, NAN, -1, NAN, NAN}, want_mi[5] = {0, 2, 1, 0, 1};
  for (int k = 0; k < 5; k++) {
    assert_true(isnan(want_mv[k]) ? isnan(dn_test_at(v, k)) : dn_test_at(v, k) == want_mv[k]);
    assert_true(dn_test_at(i, k) == want_mi[k]);
  }
  RELEASE(v, i);

  /* ties without NaN, both paths */
  dn_tensor *t = dn_test_from(2, (int64_t[]){3, 3}, (float[]){7, 1, 7, 7, 1, 3, 0, 1, 7});
  DN_OK_OR_FAIL(dn_max_dim(&v, &i, t, 1, false, 0));
  assert_true(dn_test_at(i, 0) == 0 && dn_test_at(i, 1) == 0 && dn_test_at(i, 2) == 2);
  RELEASE(v, i);
  DN_OK_OR_FAIL(dn_min_dim(&v, &i, t, 0, false, 0));
  assert_true(dn_test_at(i, 0) == 2 && dn_test_at(i, 1) == 0 && dn_test_at(i, 2) == 1);
  RELEASE(v, i);

  /* either output may be skipped */
  DN_OK_OR_FAIL(dn_max_dim(NULL, &i, t, 0, false, 0));
  assert_int_equal(i->dtype, DN_I32);
  assert_true(dn_test_at(i, 0) == 0);
  dn_tensor_release(i);
  DN_OK_OR_FAIL(dn_min_dim(&v, NULL, t, -1, false, 0));
  assert_true(dn_test_at(v, 1) == 1);
  dn_tensor_release(v);
  RELEASE(a, t);
}

static void test_dims_empty_and_scalar(void **state) {
  (void)state;
  dn_tensor *e, *r = (dn_tensor *)1, *i = (dn_tensor *)1;
  DN_OK_OR_FAIL(dn_tensor_new(&e, DN_F32, 3, (int64_t[]){2, 0, 3}));
  DN_OK_OR_FAIL(dn_sum_dim(&r, e, 1, false));
  assert_int_equal(r->ndim, 2);
  assert_int_equal(r->shape[0], 2);
  assert_int_equal(r->shape[1], 3);
  for (int k = 0; k < 6; k++) assert_true(dn_test_at(r, k) == 0);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_mean_dim(&r, e, -2, true));
  assert_int_equal(r->shape[1], 1);
  for (int k = 0; k < 6; k++) assert_true(isnan(dn_test_at(r, k)));
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_var_dim(&r, e, 1, false, 0));
  for (int k = 0; k < 6; k++) assert_true(isnan(dn_test_at(r, k)));
  dn_tensor_release(r);
  /* reducing a non-empty dim of an empty tensor gives an empty result */
  DN_OK_OR_FAIL(dn_max_dim(&r, &i, e, 2, false, 0));
  assert_int_equal(dn_tensor_numel(r), 0);
  assert_int_equal(r->shape[1], 0);
  RELEASE(r, i);
  DN_OK_OR_FAIL(dn_sum_dim(&r, e, 0, true));
  assert_int_equal(dn_tensor_numel(r), 0);
  dn_tensor_release(r);
  r = (dn_tensor *)1;
  i = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_max_dim(&r, &i, e, 1, false, 0), DN_EINVAL,
                  "max: cannot reduce dim 1 of size 0 (shape [2,0,3])");
  assert_null(r);
  assert_null(i);
  DN_EXPECT_ERROR(dn_min_dim(&r, NULL, e, -2, false, 0), DN_EINVAL, "min: cannot reduce dim -2 of size 0");

  /* a 0-dim tensor reduces over dim 0 or -1 to itself */
  dn_tensor *s;
  DN_OK_OR_FAIL(dn_tensor_full(&s, DN_F32, 0, NULL, -1.5));
  check_all_dims(s);
  DN_OK_OR_FAIL(dn_max_dim(&r, &i, s, -1, true, 1));
  assert_int_equal(r->ndim, 0);
  assert_true(scalar(r) == -1.5 && scalar(i) == 1);
  RELEASE(r, i);
  DN_EXPECT_ERROR(dn_sum_dim(&r, s, 1, false), DN_EINVAL, "sum: dim 1 out of range for a 0-D tensor of shape []");
  DN_EXPECT_ERROR(dn_sum_dim(&r, s, -2, false), DN_EINVAL, "out of range");
  RELEASE(e, s);
}

static void test_uint8(void **state) {
  (void)state;
  dn_tensor *m, *r;
  DN_OK_OR_FAIL(dn_tensor_from_data(&m, DN_U8, 2, (int64_t[]){2, 3}, (uint8_t[]){1, 0, 255, 1, 1, 0}));
  DN_OK_OR_FAIL(dn_sum_all(&r, m));
  assert_int_equal(r->dtype, DN_I32);
  assert_true(scalar(r) == 258);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_max_all(&r, m));
  assert_int_equal(r->dtype, DN_U8);
  assert_true(scalar(r) == 255);
  dn_tensor_release(r);
  check_all_dims(m);
  check_every_all(m);
  dn_tensor_release(m);
}

static void test_bad_inputs(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(30, 2, (int64_t[]){2, 3}), *r = (dn_tensor *)1, *i = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_sum_dim(&r, a, 3, false), DN_EINVAL,
                  "sum: dim 3 out of range for a 2-D tensor of shape [2,3]");
  assert_null(r);
  DN_EXPECT_ERROR(dn_mean_dim(&r, a, -3, true), DN_EINVAL, "mean: dim -3 out of range for a 2-D tensor");
  DN_EXPECT_ERROR(dn_var_dim(&r, a, 2, false, 1), DN_EINVAL, "var: dim 2 out of range");
  DN_EXPECT_ERROR(dn_std_dim(&r, a, 5, false, 1), DN_EINVAL, "std: dim 5 out of range");
  DN_EXPECT_ERROR(dn_max_dim(&r, &i, a, 2, false, 0), DN_EINVAL, "max: dim 2 out of range");
  assert_null(r);
  assert_null(i);
  DN_EXPECT_ERROR(dn_min_dim(&r, &i, a, -4, false, 0), DN_EINVAL, "min: dim -4 out of range");
  DN_EXPECT_ERROR(dn_var_dim(&r, a, 0, false, -1), DN_EINVAL, "var: correction must be >= 0 (got -1)");
  DN_EXPECT_ERROR(dn_std_all(&r, a, -2), DN_EINVAL, "std: correction must be >= 0 (got -2)");
  assert_null(r);
  DN_EXPECT_ERROR(dn_max_dim(NULL, NULL, a, 0, false, 0), DN_EINVAL, "max: no output requested");
  DN_EXPECT_ERROR(dn_max_dim(&r, &i, a, 0, false, -1), DN_EINVAL, "max: index base must be >= 0 (got -1)");
  DN_EXPECT_ERROR(dn_argmin_all(&r, a, -1), DN_EINVAL, "argmin: index base must be >= 0");
  DN_EXPECT_ERROR(dn_argmax_all(&r, a, INT32_MAX), DN_ERANGE,
                  "argmax: indices from 2147483647 to 2147483652 do not fit int32");
  DN_EXPECT_ERROR(dn_min_dim(&r, &i, a, 1, false, INT32_MAX - 1), DN_ERANGE, "do not fit int32");
  /* values only: the base is not used */
  DN_OK_OR_FAIL(dn_min_dim(&r, NULL, a, 1, false, -1));
  dn_tensor_release(r);
  dn_tensor_release(a);
}

/*
** Gradients of the reductions (sum, mean, var, std, max, min; all elements
** and over one dim): central finite differences on random shapes, dims,
** keepdim and layouts; ties, NaN, zero std; accumulation; determinism.
*/

/* --- finite-difference check ------------------------------------------------------- */

/* Makes every input a leaf that requires grad, then checks its grad against
   central differences (tolerance tol, relative and absolute). */
static void gradcheck(const char *what, dn_test_fn f, const void *ctx, int n_in, dn_tensor *const *in, double eps,
                      double tol) {
  for (int i = 0; i < n_in; i++) DN_OK_OR_FAIL(dn_requires_grad_(in[i], true));
  dn_test_gradcheck(what, f, ctx, n_in, in, eps, tol, tol);
}

static uint64_t rng_state = 12345;
static int64_t rnd(int64_t lo, int64_t hi) {   /* uniform in [lo, hi] */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return lo + (int64_t)(rng_state % (uint64_t)(hi - lo + 1));
}

/* Distinct values 0.05 apart in a random order (no ties within a finite-difference step). */
static dn_tensor *distinct_values(int ndim, const int64_t *shape) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_F32, ndim, shape));
  int64_t n = dn_tensor_numel(t);
  float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < n; i++) d[i] = (float)(0.05 * (double)(i - n / 2));
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = rnd(0, i);
    float v = d[i];
    d[i] = d[j];
    d[j] = v;
  }
  return t;
}

/* The same values in another layout: 0 contiguous, 1 transposed storage, 2 narrowed from a bigger tensor. */
static dn_tensor *with_layout(dn_tensor *x, int layout) {
  if (layout == 0) return dn_tensor_retain(x);
  if (layout == 1) return dn_test_noncontiguous(x);
  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  int d = x->ndim - 1;
  shape[d] += 3;
  dn_tensor *big = dn_test_random(7, x->ndim, shape), *narrow;
  DN_OK_OR_FAIL(dn_narrow(&narrow, big, d, 2, x->shape[d]));
  DN_OK_OR_FAIL(dn_copy_(narrow, x));
  dn_tensor_release(big);
  return narrow;
}

/* Random shapes, dims (negative too), keepdim and layouts for op. */
static void check_op_randomly(int op, int trials, double eps) {
  for (int trial = 0; trial < trials; trial++) {
    int ndim = (int)rnd(1, 4);
    int64_t shape[DN_MAX_DIMS];
    for (int d = 0; d < ndim; d++) shape[d] = rnd(1, 4);
    reduce_case c = {op, trial % 4 == 0, (int)rnd(-ndim, ndim - 1), rnd(0, 1) == 1, (int)rnd(0, 1)};
    /* var/std need N - correction > 0 and a spread */
    int64_t n = c.all ? 1 : shape[c.dim < 0 ? c.dim + ndim : c.dim];
    if (c.all)
      for (int d = 0; d < ndim; d++) n *= shape[d];
    if ((op == OP_VAR || op == OP_STD) && n < 2) shape[c.dim < 0 ? c.dim + ndim : c.dim] = 3, n = 3;
    dn_tensor *base = op == OP_MAX || op == OP_MIN ? distinct_values(ndim, shape) : dn_test_random(trial, ndim, shape);
    dn_tensor *x = with_layout(base, trial % 3);
    char what[160];
    snprintf(what, sizeof what, "%s %s dim %d keepdim %d correction %d layout %d", op_names[op],
             c.all ? "all" : "over", c.dim, c.keepdim, c.correction, trial % 3);
    gradcheck(what, reduce_op, &c, 1, &x, eps, 2e-3);
    dn_tensor_release(x);
    dn_tensor_release(base);
  }
}

static void test_sum_mean_gradcheck(void **state) {
  (void)state;
  check_op_randomly(OP_SUM, 24, 1e-2);
  check_op_randomly(OP_MEAN, 24, 1e-2);
}

static void test_var_std_gradcheck(void **state) {
  (void)state;
  check_op_randomly(OP_VAR, 24, 1e-2);
  check_op_randomly(OP_STD, 24, 1e-3);
  /* correction 2, and a wide column layout (dim 0 of a [5, 300] matrix) */
  dn_tensor *x = dn_test_random(3, 2, (int64_t[]){5, 300});
  reduce_case c = {OP_VAR, false, 0, true, 2};
  gradcheck("var dim 0 correction 2", reduce_op, &c, 1, &x, 1e-2, 2e-3);
  c.op = OP_STD;
  c.keepdim = false;
  gradcheck("std dim 0 correction 2", reduce_op, &c, 1, &x, 1e-3, 2e-3);
  dn_tensor_release(x);
}

static void test_max_min_gradcheck(void **state) {
  (void)state;
  check_op_randomly(OP_MAX, 24, 1e-3);
  check_op_randomly(OP_MIN, 24, 1e-3);
}

static dn_tensor *grad_scalar(float v) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_full(&t, DN_F32, 0, NULL, v));
  return t;
}

/* max()/min() of all elements share the gradient evenly among ties (as PyTorch). */
static void test_max_all_ties(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, 5, -2, 5, 0, 5});
  dn_tensor *g = grad_scalar(3), *grad;
  reduce_case c = {OP_MAX, true, 0, false, 0};
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 6; i++) assert_true(dn_test_at(grad, i) == (dn_test_at(x, i) == 5 ? 1.0 : 0.0));
  dn_tensor_release(grad);
  c.op = OP_MIN;
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 6; i++) assert_true(dn_test_at(grad, i) == (i == 2 ? 3.0 : 0.0));
  dn_tensor_release(grad);
  dn_tensor_release(x);

  /* a NaN is the max: the NaNs share the gradient */
  x = dn_test_from(1, (int64_t[]){4}, (float[]){1, NAN, 2, NAN});
  c.op = OP_MAX;
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 4; i++) assert_true(dn_test_at(grad, i) == (i % 2 ? 1.5 : 0.0));
  dn_tensor_release(grad);
  dn_tensor_release(x);
  dn_tensor_release(g);
}

/* max/min over a dim: the whole gradient goes to the first extremum (the index returned). */
static void test_max_dim_ties(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 4}, (float[]){3, 7, 7, 1, 2, 2, 9, 9});
  dn_tensor *xt = dn_test_noncontiguous(x);   /* made before x requires grad: a leaf */
  dn_tensor *g = dn_test_from(1, (int64_t[]){2}, (float[]){10, 20});
  reduce_case c = {OP_MAX, false, -1, false, 0};
  dn_tensor *grad = grad_of(&c, x, g);
  const double want_max[8] = {0, 10, 0, 0, 0, 0, 20, 0};
  for (int64_t i = 0; i < 8; i++) assert_true(dn_test_at(grad, i) == want_max[i]);
  dn_tensor_release(grad);
  c.op = OP_MIN;
  grad = grad_of(&c, x, g);
  const double want_min[8] = {0, 0, 0, 10, 20, 0, 0, 0};
  for (int64_t i = 0; i < 8; i++) assert_true(dn_test_at(grad, i) == want_min[i]);
  dn_tensor_release(grad);
  dn_tensor_release(g);

  /* dim 0 with keepdim, a transposed layout, and indices asked for with base 1 */
  dn_tensor *values, *indices;
  DN_OK_OR_FAIL(dn_requires_grad_(xt, true));
  DN_OK_OR_FAIL(dn_max_dim(&values, &indices, xt, 0, true, 1));
  assert_false(indices->requires_grad);
  assert_null(indices->grad_fn);
  assert_string_equal(dn_grad_fn_name(values), "max");
  g = dn_test_from(2, (int64_t[]){1, 4}, (float[]){1, 2, 3, 4});
  DN_OK_OR_FAIL(dn_backward(values, g, false));
  const double want_dim0[8] = {1, 2, 0, 0, 0, 0, 3, 4};
  for (int64_t i = 0; i < 8; i++) assert_true(dn_test_at(xt->grad, i) == want_dim0[i]);
  dn_tensor_release(values);
  dn_tensor_release(indices);
  dn_tensor_release(g);
  dn_tensor_release(xt);
  dn_tensor_release(x);
}

/* std backward is 0 where std is 0 (PyTorch masks it); N - correction <= 0 gives NaN. */
static void test_std_zero_and_no_dof(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 3}, (float[]){4, 4, 4, 1, 2, 3});
  dn_tensor *g = dn_test_from(1, (int64_t[]){2}, (float[]){1, 1});
  reduce_case c = {OP_STD, false, 1, false, 1};
  dn_tensor *grad = grad_of(&c, x, g);
  const double want[6] = {0, 0, 0, -0.5, 0, 0.5};   /* (x - 2) / (2 * 1) for the second row */
  for (int64_t i = 0; i < 6; i++) assert_true(fabs(dn_test_at(grad, i) - want[i]) < 1e-6);
  dn_tensor_release(grad);
  dn_tensor_release(g);

  c = (reduce_case){OP_VAR, false, 0, false, 2};   /* 2 rows, correction 2 */
  g = dn_test_from(1, (int64_t[]){3}, (float[]){1, 1, 1});
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 6; i++) assert_true(isnan(dn_test_at(grad, i)));
  dn_tensor_release(grad);
  dn_tensor_release(g);
  dn_tensor_release(x);
}

/* Values checked against hand-computed gradients, not only differences. */
static void test_exact_values(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, 2, 6, 0, 4, 8});
  dn_tensor *g = dn_test_from(1, (int64_t[]){3}, (float[]){1, 2, 4});
  reduce_case c = {OP_MEAN, false, 0, false, 0};
  dn_tensor *grad = grad_of(&c, x, g);
  const double mean_want[6] = {0.5, 1, 2, 0.5, 1, 2};
  for (int64_t i = 0; i < 6; i++) assert_true(dn_test_at(grad, i) == mean_want[i]);
  dn_tensor_release(grad);
  dn_tensor_release(g);

  /* var of all, correction 1: mean 3.5, N - 1 = 5, grad 2 (x - 3.5) / 5 */
  g = grad_scalar(1);
  c = (reduce_case){OP_VAR, true, 0, false, 1};
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 6; i++) assert_true(fabs(dn_test_at(grad, i) - 2 * (dn_test_at(x, i) - 3.5) / 5) < 1e-6);
  dn_tensor_release(grad);
  c.op = OP_SUM;
  grad = grad_of(&c, x, g);
  for (int64_t i = 0; i < 6; i++) assert_true(dn_test_at(grad, i) == 1);
  dn_tensor_release(grad);
  dn_tensor_release(g);
  dn_tensor_release(x);
}

/* 0-dim inputs and empty tensors. */
static void test_scalar_and_empty(void **state) {
  (void)state;
  dn_tensor *x = grad_scalar(2.5f), *g = grad_scalar(3), *grad;
  for (int op = OP_SUM; op <= OP_MIN; op++) {
    if (op == OP_VAR || op == OP_STD) continue;
    reduce_case c = {op, false, -1, false, 0};
    grad = grad_of(&c, x, g);
    assert_int_equal(grad->ndim, 0);
    assert_true(dn_test_at(grad, 0) == 3);
    dn_tensor_release(grad);
  }
  dn_tensor_release(g);
  dn_tensor_release(x);

  /* reducing a dim of size 0: the output has elements, the input's grad is empty */
  dn_tensor *e;
  DN_OK_OR_FAIL(dn_tensor_zeros(&e, DN_F32, 2, (int64_t[]){3, 0}));
  g = dn_test_random(1, 1, (int64_t[]){3});
  reduce_case c = {OP_SUM, false, 1, false, 0};
  grad = grad_of(&c, e, g);
  assert_int_equal(grad->ndim, 2);
  assert_int_equal(grad->shape[0], 3);
  assert_int_equal(grad->shape[1], 0);
  dn_tensor_release(grad);
  dn_tensor_release(g);
  g = grad_scalar(1);
  c = (reduce_case){OP_MEAN, true, 0, false, 0};
  grad = grad_of(&c, e, g);
  assert_int_equal(dn_tensor_numel(grad), 0);
  dn_tensor_release(grad);
  dn_tensor_release(g);
  dn_tensor_release(e);
}

static void test_accumulates_with_retain_graph(void **state) {
  (void)state;
  for (int op = OP_SUM; op <= OP_MIN; op++) {
    dn_tensor *x = distinct_values(3, (int64_t[]){3, 4, 5}), *out;
    DN_OK_OR_FAIL(dn_requires_grad_(x, true));
    reduce_case c = {op, false, 1, false, 1};
    DN_OK_OR_FAIL(reduce_op(&out, &x, &c));
    dn_tensor *g = dn_test_random(5, out->ndim, out->shape), *once;
    DN_OK_OR_FAIL(dn_backward(out, g, true));
    DN_OK_OR_FAIL(dn_clone(&once, x->grad));
    DN_OK_OR_FAIL(dn_backward(out, g, true));
    for (int64_t i = 0; i < dn_tensor_numel(x); i++) assert_true(dn_test_at(x->grad, i) == 2 * dn_test_at(once, i));
    dn_tensor_release(once);
    dn_tensor_release(g);
    dn_tensor_release(out);
    dn_tensor_release(x);
  }
}

static void test_what_records(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 2, (int64_t[]){3, 4}), *out, *values, *indices;
  DN_OK_OR_FAIL(dn_sum_dim(&out, x, 0, false));   /* x does not require grad */
  assert_false(out->requires_grad);
  assert_null(out->grad_fn);
  dn_tensor_release(out);

  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_var_all(&out, x, 1));
  assert_false(out->requires_grad);
  assert_null(out->grad_fn);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_max_dim(&values, NULL, x, 1, false, 0));
  assert_null(values->grad_fn);
  dn_tensor_release(values);
  dn_set_grad_enabled(mode);

  /* index outputs are int32 and not differentiable */
  DN_OK_OR_FAIL(dn_argmax_all(&out, x, 0));
  assert_false(out->requires_grad);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_min_dim(NULL, &indices, x, 0, false, 0));
  assert_false(indices->requires_grad);
  dn_tensor_release(indices);

  const char *names[] = {"sum", "mean", "var", "std", "max", "min"};
  for (int op = OP_SUM; op <= OP_MIN; op++) {
    reduce_case c = {op, op % 2 == 0, -1, true, 1};
    DN_OK_OR_FAIL(reduce_op(&out, &x, &c));
    assert_string_equal(dn_grad_fn_name(out), names[op]);
    dn_tensor_release(out);
  }

  /* var saves its input: an in-place change before backward is an error */
  DN_OK_OR_FAIL(dn_var_dim(&out, x, 1, false, 1));
  mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_tensor_set(x, (int64_t[]){0, 0}, 1.0));
  dn_set_grad_enabled(mode);
  dn_tensor *g = dn_test_random(2, 1, (int64_t[]){3});
  DN_EXPECT_ERROR(dn_backward(out, g, false), DN_EINVAL, "modified in place");
  dn_tensor_release(g);
  dn_tensor_release(out);
  /* sum saves nothing: the same change does not matter */
  DN_OK_OR_FAIL(dn_sum_all(&out, x));
  mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_tensor_set(x, (int64_t[]){0, 1}, 1.0));
  dn_set_grad_enabled(mode);
  DN_OK_OR_FAIL(dn_backward(out, NULL, false));
  dn_tensor_release(out);
  dn_tensor_release(x);
}

#define TEST(f) cmocka_unit_test_setup(f, dn_test_reset_modes)

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_all_reductions_layouts),
    cmocka_unit_test(test_all_reductions_int32),
    cmocka_unit_test(test_int32_sum_overflow),
    cmocka_unit_test(test_max_min_all_ties_nan),
    cmocka_unit_test(test_empty_and_scalar_all),
    cmocka_unit_test(test_dims_3d_layouts),
    cmocka_unit_test(test_dims_int32),
    cmocka_unit_test(test_dim_max_min_ties_and_nan),
    cmocka_unit_test(test_dims_empty_and_scalar),
    cmocka_unit_test(test_uint8),
    cmocka_unit_test(test_bad_inputs),
    TEST(test_sum_mean_gradcheck),
    TEST(test_var_std_gradcheck),
    TEST(test_max_min_gradcheck),
    TEST(test_max_all_ties),
    TEST(test_max_dim_ties),
    TEST(test_std_zero_and_no_dof),
    TEST(test_exact_values),
    TEST(test_scalar_and_empty),
    TEST(test_accumulates_with_retain_graph),
    TEST(test_what_records),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
