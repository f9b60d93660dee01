/* Reductions against naive reference loops; layouts, dtypes, edge cases, errors. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum kind { SUM, MEAN, VAR, STD, MAX, MIN } kind;

static void release_all(dn_tensor **list, size_t n) {
  for (size_t i = 0; i < n; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...)                                                            \
  do {                                                                          \
    dn_tensor *list_[] = {__VA_ARGS__};                                         \
    release_all(list_, sizeof list_ / sizeof *list_);                           \
  } while (0)

static double scalar(const dn_tensor *t) {
  assert_int_equal(t->ndim, 0);
  return dn_test_at(t, 0);
}

static dn_tensor *ints_from(int ndim, const int64_t *shape, const int32_t *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_I32, ndim, shape, values));
  return t;
}

/* Random int32 values in [-50, 50]. */
static dn_tensor *random_ints(uint64_t seed, int ndim, const int64_t *shape) {
  dn_tensor *f = dn_test_random(seed, ndim, shape), *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_I32, ndim, shape));
  int32_t *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(f); i++) d[i] = (int32_t)lround(dn_test_at(f, i) * 25);
  dn_tensor_release(f);
  return t;
}

/* Reference of one reduction over `count` values read with dn_test_at at
   positions first + k * step. Returns the value; *at gets the max/min index. */
static double reference(const dn_tensor *a, int64_t first, int64_t step, int64_t count, kind k, int correction,
                        int64_t *at) {
  long double sum = 0;
  for (int64_t i = 0; i < count; i++) sum += dn_test_at(a, first + i * step);
  switch (k) {
    case SUM: return (double)sum;
    case MEAN: return count ? (double)(sum / count) : NAN;
    case VAR:
    case STD: {
      if (count - correction <= 0) return NAN;
      long double mean = sum / count, m2 = 0;
      for (int64_t i = 0; i < count; i++) {
        long double d = dn_test_at(a, first + i * step) - mean;
        m2 += d * d;
      }
      double v = (double)(m2 / (count - correction));
      return k == STD ? sqrt(v) : v;
    }
    case MAX:
    case MIN: {
      double best = dn_test_at(a, first);
      *at = 0;
      for (int64_t i = 1; i < count && !isnan(best); i++) {
        double x = dn_test_at(a, first + i * step);
        if (isnan(x) || (k == MAX ? x > best : x < best)) {
          best = x;
          *at = i;
        }
      }
      return best;
    }
  }
  return 0;
}

static bool close_enough(double got, double want, double tol) {
  if (isnan(want)) return isnan(got);
  return fabs(got - want) <= tol * (1 + fabs(want));
}

static dn_dtype expected_dtype(kind k, dn_dtype in) {
  if (k == SUM) return in == DN_F32 ? DN_F32 : DN_I32;
  if (k == MAX || k == MIN) return in;
  return DN_F32;
}

/* Runs a dim reduction and checks shape, dtype, values and indices. */
static void check_dim(const dn_tensor *a, kind k, int dim, bool keepdim, int correction, int64_t base) {
  dn_tensor *v = NULL, *idx = NULL;
  switch (k) {
    case SUM: DN_OK_OR_FAIL(dn_sum_dim(&v, a, dim, keepdim)); break;
    case MEAN: DN_OK_OR_FAIL(dn_mean_dim(&v, a, dim, keepdim)); break;
    case VAR: DN_OK_OR_FAIL(dn_var_dim(&v, a, dim, keepdim, correction)); break;
    case STD: DN_OK_OR_FAIL(dn_std_dim(&v, a, dim, keepdim, correction)); break;
    case MAX: DN_OK_OR_FAIL(dn_max_dim(&v, &idx, a, dim, keepdim, base)); break;
    case MIN: DN_OK_OR_FAIL(dn_min_dim(&v, &idx, a, dim, keepdim, base)); break;
  }
  int d = dim < 0 ? dim + a->ndim : dim;
  int64_t outer = 1, inner = 1, n = a->ndim ? a->shape[d] : 1;
  for (int e = 0; e < d; e++) outer *= a->shape[e];
  for (int e = d + 1; e < a->ndim; e++) inner *= a->shape[e];

  /* shape: kept dims, the reduced one as 1 with keepdim */
  assert_int_equal(v->dtype, expected_dtype(k, a->dtype));
  assert_int_equal(v->ndim, a->ndim == 0 ? 0 : keepdim ? a->ndim : a->ndim - 1);
  for (int e = 0, o = 0; e < a->ndim; e++) {
    if (e == d && !keepdim) continue;
    assert_int_equal(v->shape[o], e == d ? 1 : a->shape[e]);
    o++;
  }
  if (idx) {
    assert_int_equal(idx->dtype, DN_I32);
    assert_true(dn_same_shape(idx, v));
  }
  double tol = a->dtype == DN_F32 || k != SUM ? 2e-6 : 0;
  for (int64_t q = 0; q < outer; q++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t at = -1, j = q * inner + i;
      double want = reference(a, q * n * inner + i, inner, n, k, correction, &at);
      double got = dn_test_at(v, j);
      if (!close_enough(got, want, tol))
        fail_msg("kind %d dim %d output %lld: got %.9g, want %.9g", (int)k, dim, (long long)j, got, want);
      if (idx && (int64_t)dn_test_at(idx, j) != at + base)
        fail_msg("kind %d dim %d output %lld: index %g, want %lld", (int)k, dim, (long long)j, dn_test_at(idx, j),
                 (long long)(at + base));
    }
  RELEASE(v, idx);
}

/* Every kind over every dim (positive and negative), with and without keepdim. */
static void check_all_dims(const dn_tensor *a) {
  for (int k = SUM; k <= MIN; k++)
    for (int dim = a->ndim ? -a->ndim : -1; dim < (a->ndim ? a->ndim : 1); dim++)
      for (int keep = 0; keep < 2; keep++) {
        check_dim(a, (kind)k, dim, keep, 1, keep);   /* base 1 with keepdim, 0 without */
        if (k == VAR || k == STD) check_dim(a, (kind)k, dim, keep, 0, 0);
      }
}

/* An all-element reduction checked against the reference. */
static void check_all(const dn_tensor *a, kind k, int correction) {
  dn_tensor *r = NULL;
  switch (k) {
    case SUM: DN_OK_OR_FAIL(dn_sum_all(&r, a)); break;
    case MEAN: DN_OK_OR_FAIL(dn_mean_all(&r, a)); break;
    case VAR: DN_OK_OR_FAIL(dn_var_all(&r, a, correction)); break;
    case STD: DN_OK_OR_FAIL(dn_std_all(&r, a, correction)); break;
    case MAX: DN_OK_OR_FAIL(dn_max_all(&r, a)); break;
    case MIN: DN_OK_OR_FAIL(dn_min_all(&r, a)); break;
  }
  assert_int_equal(r->ndim, 0);
  assert_int_equal(r->dtype, expected_dtype(k, a->dtype));
  int64_t at = -1;
  double want = reference(a, 0, 1, dn_tensor_numel(a), k, correction, &at);
  if (!close_enough(scalar(r), want, 2e-6)) fail_msg("kind %d: got %.9g, want %.9g", (int)k, scalar(r), want);
  dn_tensor_release(r);
  if (k == MAX || k == MIN) {
    for (int64_t base = 0; base < 2; base++) {
      DN_OK_OR_FAIL(k == MAX ? dn_argmax_all(&r, a, base) : dn_argmin_all(&r, a, base));
      assert_int_equal(r->dtype, DN_I32);
      assert_int_equal((int64_t)scalar(r), at + base);
      dn_tensor_release(r);
    }
  }
}

static void check_every_all(const dn_tensor *a) {
  for (int k = SUM; k <= MIN; k++) check_all(a, (kind)k, 1);
  check_all(a, VAR, 0);
  check_all(a, STD, 0);
}

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

static void test_dims_long_lanes_and_wide_columns(void **state) {
  (void)state;
  /* lanes longer than a block (several partials combined), both dense and strided */
  dn_tensor *a = dn_test_random(11, 2, (int64_t[]){3, 9000}), *at;
  DN_OK_OR_FAIL(dn_t(&at, a));   /* [9000,3]: dim 0 lanes are dense, dim 1 lanes strided */
  for (int k = SUM; k <= MIN; k++) {
    check_dim(a, (kind)k, 1, false, 1, 0);
    check_dim(a, (kind)k, 0, true, 1, 1);
    check_dim(at, (kind)k, 0, false, 1, 1);
    check_dim(at, (kind)k, 1, false, 0, 0);
  }
  /* columns wider than a chunk, enough elements to run in parallel */
  dn_tensor *w = dn_test_random(12, 2, (int64_t[]){50, 1300});
  dn_tensor *w3 = dn_test_random(13, 3, (int64_t[]){4, 30, 700});
  for (int k = SUM; k <= MIN; k++) {
    check_dim(w, (kind)k, 0, false, 1, 0);
    check_dim(w3, (kind)k, 1, true, 1, 1);
    check_dim(w3, (kind)k, 0, false, 0, 0);
  }
  /* few long lanes split into blocks across threads */
  dn_tensor *l = dn_test_random(14, 2, (int64_t[]){1, 100000});
  for (int k = SUM; k <= MIN; k++) check_dim(l, (kind)k, 1, false, 1, 0);
  RELEASE(a, at, w, w3, l);
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

static void test_precision(void **state) {
  (void)state;
  /* 1e7 float 0.1s: a float accumulator would be far off */
  int64_t n = 10000000;
  dn_tensor *a, *r;
  DN_OK_OR_FAIL(dn_tensor_full(&a, DN_F32, 1, &n, 0.1));
  DN_OK_OR_FAIL(dn_sum_all(&r, a));
  assert_true(fabs(scalar(r) - 1e6) <= 1e-6 * 1e6);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_mean_all(&r, a));
  assert_true(fabs(scalar(r) - 0.1) <= 1e-7);
  dn_tensor_release(r);
  dn_tensor *row;
  DN_OK_OR_FAIL(dn_view(&row, a, 2, (int64_t[]){1, n}));
  DN_OK_OR_FAIL(dn_sum_dim(&r, row, 1, false));
  assert_true(fabs(dn_test_at(r, 0) - 1e6) <= 1e-6 * 1e6);
  RELEASE(r, row, a);

  /* variance of 1e4 + N(0,1): the naive sum-of-squares formula loses it all */
  int64_t m = 1 << 20;
  dn_tensor *x;
  DN_OK_OR_FAIL(dn_tensor_new(&x, DN_F32, 1, &m));
  float *d = dn_tensor_data(x);
  uint64_t s = 42;
  for (int64_t i = 0; i < m; i += 2) {   /* Box-Muller from a xorshift */
    double u[2];
    for (int k = 0; k < 2; k++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      u[k] = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
    }
    double rad = sqrt(-2 * log(u[0]));
    d[i] = (float)(1e4 + rad * cos(2 * 3.14159265358979323846 * u[1]));
    d[i + 1] = (float)(1e4 + rad * sin(2 * 3.14159265358979323846 * u[1]));
  }
  int64_t unused;
  double want = reference(x, 0, 1, m, VAR, 1, &unused);
  assert_true(fabs(want - 1) < 0.01);   /* the data is what we think */
  DN_OK_OR_FAIL(dn_var_all(&r, x, 1));
  assert_true(fabs(scalar(r) - want) <= 1e-5 * want);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_std_all(&r, x, 0));
  assert_true(fabs(scalar(r) - sqrt(want * (m - 1) / m)) <= 1e-5);
  dn_tensor_release(r);
  /* the same data as lanes and as columns */
  dn_tensor *rows, *cols;
  DN_OK_OR_FAIL(dn_view(&rows, x, 2, (int64_t[]){4, m / 4}));
  DN_OK_OR_FAIL(dn_view(&cols, x, 2, (int64_t[]){m / 4, 4}));
  check_dim(rows, VAR, 1, false, 1, 0);
  check_dim(cols, VAR, 0, false, 1, 0);
  check_dim(cols, STD, 0, false, 0, 0);
  RELEASE(rows, cols, x);
}

/* Runs f with 1 and with 2 threads and requires the same bytes. */
static void expect_same_bits(dn_status (*f)(dn_tensor **, const dn_tensor *, int), const dn_tensor *a, int arg) {
  dn_tensor *r1, *r2;
  DN_OK_OR_FAIL(dn_set_num_threads(1));
  DN_OK_OR_FAIL(f(&r1, a, arg));
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  DN_OK_OR_FAIL(f(&r2, a, arg));
  assert_true(dn_same_shape(r1, r2));
  assert_memory_equal(dn_tensor_data(r1), dn_tensor_data(r2), (size_t)dn_tensor_numel(r1) * sizeof(float));
  RELEASE(r1, r2);
}

static dn_status sum_all_(dn_tensor **o, const dn_tensor *a, int arg) { (void)arg; return dn_sum_all(o, a); }
static dn_status mean_all_(dn_tensor **o, const dn_tensor *a, int arg) { (void)arg; return dn_mean_all(o, a); }
static dn_status var_all_(dn_tensor **o, const dn_tensor *a, int arg) { (void)arg; return dn_var_all(o, a, 1); }
static dn_status sum_dim_(dn_tensor **o, const dn_tensor *a, int dim) { return dn_sum_dim(o, a, dim, false); }
static dn_status mean_dim_(dn_tensor **o, const dn_tensor *a, int dim) { return dn_mean_dim(o, a, dim, true); }
static dn_status var_dim_(dn_tensor **o, const dn_tensor *a, int dim) { return dn_var_dim(o, a, dim, false, 1); }
static dn_status max_dim_(dn_tensor **o, const dn_tensor *a, int dim) {
  return dn_max_dim(NULL, o, a, dim, false, 0);
}

static void test_bit_identical_across_threads(void **state) {
  (void)state;
  int saved = dn_get_num_threads();
  dn_tensor *a = dn_test_random(21, 2, (int64_t[]){1100, 1000}), *at, *one;
  DN_OK_OR_FAIL(dn_t(&at, a));
  DN_OK_OR_FAIL(dn_view(&one, a, 2, (int64_t[]){1, 1100000}));
  dn_tensor *list[] = {a, at, one};
  for (size_t k = 0; k < 3; k++) {
    expect_same_bits(sum_all_, list[k], 0);
    expect_same_bits(mean_all_, list[k], 0);
    expect_same_bits(var_all_, list[k], 0);
    for (int dim = 0; dim < 2; dim++) {
      expect_same_bits(sum_dim_, list[k], dim);
      expect_same_bits(mean_dim_, list[k], dim);
      expect_same_bits(var_dim_, list[k], dim);
      expect_same_bits(max_dim_, list[k], dim);
    }
  }
  /* an ill-conditioned sum: its value depends on how partials are grouped,
     so any thread-dependent grouping shows */
  dn_tensor *ill = dn_test_random(22, 1, (int64_t[]){1100000}), *ill_row;
  float *d = dn_tensor_data(ill);
  d[0] = 1e30f;
  d[700000] = -1e30f;
  DN_OK_OR_FAIL(dn_view(&ill_row, ill, 2, (int64_t[]){1, 1100000}));
  expect_same_bits(sum_all_, ill, 0);
  expect_same_bits(mean_all_, ill, 0);
  expect_same_bits(var_all_, ill, 0);
  expect_same_bits(sum_dim_, ill_row, 1);
  expect_same_bits(var_dim_, ill_row, 1);
  RELEASE(ill, ill_row);

  /* and the parallel results are right */
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  check_dim(a, SUM, 0, false, 0, 0);
  check_dim(a, VAR, 1, false, 1, 0);
  check_dim(one, MEAN, 1, false, 0, 0);
  DN_OK_OR_FAIL(dn_set_num_threads(saved));
  RELEASE(a, at, one);
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

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_all_reductions_layouts),
    cmocka_unit_test(test_all_reductions_int32),
    cmocka_unit_test(test_int32_sum_overflow),
    cmocka_unit_test(test_max_min_all_ties_nan),
    cmocka_unit_test(test_empty_and_scalar_all),
    cmocka_unit_test(test_dims_3d_layouts),
    cmocka_unit_test(test_dims_int32),
    cmocka_unit_test(test_dims_long_lanes_and_wide_columns),
    cmocka_unit_test(test_dim_max_min_ties_and_nan),
    cmocka_unit_test(test_dims_empty_and_scalar),
    cmocka_unit_test(test_uint8),
    cmocka_unit_test(test_precision),
    cmocka_unit_test(test_bit_identical_across_threads),
    cmocka_unit_test(test_bad_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
