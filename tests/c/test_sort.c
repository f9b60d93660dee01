/*
** sort, topk, median, quantile and histc against plain references (a stable
** insertion sort on doubles with NaN last), their gradients, threads and
** errors.
*/
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) \
  release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

static uint64_t rng_state;
static uint64_t next_random(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* float32 values drawn from a small set with ties, signed zeros, infinities and NaN (when nan). */
static dn_tensor *tied_values(uint64_t seed, int ndim, const int64_t *shape, bool nan) {
  static const float pool[] = {-2.5f, -1.0f, -0.0f, 0.0f, 0.5f, 0.5f, 1.0f, 3.0f, INFINITY, -INFINITY, 1e-40f};
  rng_state = seed * 0x9E3779B97F4A7C15ull + 3;
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_F32, ndim, shape));
  float *v = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) {
    uint64_t r = next_random() % 13;
    v[i] = r < 11 ? pool[r] : (nan && r == 11 ? NAN : (float)(next_random() % 1000) / 64.0f - 7.0f);
  }
  return t;
}

/* float32 values 0.1 apart in a seeded order: no two within a finite-difference step. */
static dn_tensor *distinct_values(uint64_t seed, int ndim, const int64_t *shape) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_F32, ndim, shape));
  int64_t n = dn_tensor_numel(t);
  float *v = dn_tensor_data(t);
  for (int64_t i = 0; i < n; i++) v[i] = (float)(0.1 * (double)i - 0.05 * (double)n + 0.013);
  rng_state = seed * 0x9E3779B97F4A7C15ull + 5;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(next_random() % (uint64_t)(i + 1));
    float x = v[i];
    v[i] = v[j];
    v[j] = x;
  }
  return t;
}

/* --- the reference: a lane as (value, position) pairs, stably sorted ------------------------------ */

typedef struct pair {
  double v;
  int64_t at;
} pair;

/* a before b in ascending order (NaN last, -0 equal to +0)? */
static bool before(double a, double b) {
  if (isnan(a)) return false;
  if (isnan(b)) return true;
  return a < b;
}

/* Lane (o, i) of t along dim: n pairs, stably sorted (descending: by the reversed relation). */
static void ref_lane(const dn_tensor *t, int dim, int64_t lane, bool descending, pair *p, int64_t *n) {
  int64_t len = t->ndim ? t->shape[dim] : 1, inner = 1;
  for (int d = dim + 1; d < t->ndim; d++) inner *= t->shape[d];
  int64_t o = lane / inner, i = lane % inner;
  for (int64_t j = 0; j < len; j++) {
    p[j].v = dn_test_at(t, (o * len + j) * inner + i);
    p[j].at = j;
  }
  for (int64_t j = 1; j < len; j++) {
    pair x = p[j];
    int64_t k = j;
    while (k > 0 && (descending ? before(p[k - 1].v, x.v) : before(x.v, p[k - 1].v))) {
      p[k] = p[k - 1];
      k--;
    }
    p[k] = x;
  }
  *n = len;
}

static int64_t lane_count(const dn_tensor *t, int dim) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++)
    if (d != dim) n *= t->shape[d];
  return n;
}

/* Position in a [.., m, ..] output of element j of lane `lane` along dim. */
static int64_t out_at(const dn_tensor *t, int dim, int64_t lane, int64_t m, int64_t j) {
  int64_t inner = 1;
  for (int d = dim + 1; d < t->ndim; d++) inner *= t->shape[d];
  return (lane / inner * m + j) * inner + lane % inner;
}

/* Same value, NaN equal to NaN, and -0 apart from +0 (values are copied, never computed). */
static void assert_same_value(double got, double want, const char *what, int64_t at) {
  if (isnan(want) && isnan(got)) return;
  if (got != want || signbit(got) != signbit(want))
    fail_msg("%s: element %lld is %.9g, expected %.9g", what, (long long)at, got, want);
}

static void check_sort(const dn_tensor *a, int dim, bool descending) {
  dn_tensor *values, *indices;
  DN_OK_OR_FAIL(dn_sort(&values, &indices, a, dim, descending, 1));
  int d = dim < 0 ? dim + (a->ndim ? a->ndim : 1) : dim;
  assert_true(dn_same_shape(values, a) && dn_same_shape(indices, a));
  assert_int_equal(values->dtype, a->dtype);
  assert_int_equal(indices->dtype, DN_I32);
  int64_t len = a->ndim ? a->shape[d] : 1, n;
  pair *p = malloc((size_t)(len ? len : 1) * sizeof *p);
  for (int64_t lane = 0; lane < (len ? lane_count(a, d) : 0); lane++) {
    ref_lane(a, d, lane, descending, p, &n);
    for (int64_t j = 0; j < n; j++) {
      int64_t at = out_at(a, d, lane, n, j);
      assert_same_value(dn_test_at(values, at), p[j].v, "sort values", at);
      if ((int64_t)dn_test_at(indices, at) != p[j].at + 1)
        fail_msg("sort indices: element %lld is %g, expected %lld", (long long)at, dn_test_at(indices, at),
                 (long long)(p[j].at + 1));
    }
  }
  free(p);
  RELEASE(values, indices);
}

/* topk against the sort reference: its first k, or (unsorted) those k in index order. */
static void check_topk(const dn_tensor *a, int dim, int64_t k, bool largest, bool sorted) {
  dn_tensor *values, *indices;
  DN_OK_OR_FAIL(dn_topk(&values, &indices, a, k, dim, largest, sorted, 0));
  int d = dim < 0 ? dim + (a->ndim ? a->ndim : 1) : dim;
  int64_t len = a->ndim ? a->shape[d] : 1, n;
  if (a->ndim) assert_int_equal(values->shape[d], k);
  pair *p = malloc((size_t)(len ? len : 1) * sizeof *p);
  for (int64_t lane = 0; lane < (len ? lane_count(a, d) : 0); lane++) {
    ref_lane(a, d, lane, largest, p, &n);
    if (!sorted) {   /* the first k by position */
      for (int64_t x = 1; x < k; x++)
        for (int64_t y = x; y > 0 && p[y - 1].at > p[y].at; y--) {
          pair t = p[y];
          p[y] = p[y - 1];
          p[y - 1] = t;
        }
    }
    for (int64_t j = 0; j < k; j++) {
      int64_t at = out_at(a, d, lane, k, j);
      assert_same_value(dn_test_at(values, at), p[j].v, "topk values", at);
      if ((int64_t)dn_test_at(indices, at) != p[j].at)
        fail_msg("topk(k=%lld, largest=%d, sorted=%d) indices: element %lld is %g, expected %lld", (long long)k,
                 largest, sorted, (long long)at, dn_test_at(indices, at), (long long)p[j].at);
    }
  }
  free(p);
  RELEASE(values, indices);
}

/* median along dim: the lower middle of the stable sort, or the lane's first NaN. */
static void check_median(const dn_tensor *a, int dim, bool keepdim) {
  dn_tensor *values, *indices;
  DN_OK_OR_FAIL(dn_median_dim(&values, &indices, a, dim, keepdim, 1));
  int d = dim < 0 ? dim + (a->ndim ? a->ndim : 1) : dim;
  assert_int_equal(values->ndim, a->ndim == 0 ? 0 : keepdim ? a->ndim : a->ndim - 1);
  int64_t len = a->ndim ? a->shape[d] : 1, n;
  pair *p = malloc((size_t)(len ? len : 1) * sizeof *p);
  for (int64_t lane = 0; lane < lane_count(a, d); lane++) {
    ref_lane(a, d, lane, false, p, &n);
    pair want = p[(n - 1) / 2];
    if (isnan(p[n - 1].v)) {   /* the first NaN in index order */
      want.at = INT64_MAX;
      for (int64_t j = 0; j < n; j++)
        if (isnan(p[j].v) && p[j].at < want.at) want = p[j];
    }
    assert_same_value(dn_test_at(values, lane), want.v, "median values", lane);
    assert_int_equal((int64_t)dn_test_at(indices, lane), want.at + 1);
  }
  free(p);
  RELEASE(values, indices);
}

/* torch.quantile's arithmetic in float32, on the reference's sorted lane, in the runtime's
   floating-point mode (denormals flushed, as the kernel computes). */
static double ref_quantile(const pair *p, int64_t n, float q) {
  unsigned saved = dn_fpmode_enter();
  float last = (float)(n - 1), rank = isnan(p[n - 1].v) ? last : q * last;
  int64_t lo = (int64_t)rank, hi = (int64_t)ceilf(rank);
  float w = rank - (float)lo, a = (float)p[lo].v, b = (float)p[hi].v;
  float value = w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
  dn_fpmode_leave(saved);
  return value;
}

static void check_quantile(const dn_tensor *a, int dim, bool all, const float *q, int64_t q_count, bool q_vector,
                           bool keepdim) {
  dn_tensor *levels, *out, *flat = NULL;
  DN_OK_OR_FAIL(dn_tensor_from_data(&levels, DN_F32, q_vector ? 1 : 0, &q_count, q));
  if (all) DN_OK_OR_FAIL(dn_quantile_all(&out, a, levels, keepdim));
  else DN_OK_OR_FAIL(dn_quantile_dim(&out, a, levels, dim, keepdim));
  const dn_tensor *src = a;
  int d = dim < 0 ? dim + (a->ndim ? a->ndim : 1) : dim;
  if (all) {   /* the reference walks one lane of every element */
    DN_OK_OR_FAIL(dn_reshape(&flat, (dn_tensor *)a, 1, (int64_t[]){dn_tensor_numel(a)}));
    src = flat;
    d = 0;
  }
  int64_t lanes = lane_count(src, d), len = src->ndim ? src->shape[d] : 1, n;
  assert_int_equal(dn_tensor_numel(out), lanes * q_count);
  if (q_vector) assert_int_equal(out->shape[0], q_count);
  pair *p = malloc((size_t)len * sizeof *p);
  for (int64_t lane = 0; lane < lanes; lane++) {
    ref_lane(src, d, lane, false, p, &n);
    for (int64_t i = 0; i < q_count; i++) {
      double want = ref_quantile(p, n, q[i]), got = dn_test_at(out, i * lanes + lane);
      /* (within an ulp: the compiler may fuse the lerp's multiply-add here or there) */
      if (!(got == want || fabs(got - want) <= 1.2e-7 * fabs(want) || (isnan(got) && isnan(want))))
        fail_msg("quantile %g of lane %lld: %.9g, expected %.9g", (double)q[i], (long long)lane, got, want);
    }
  }
  free(p);
  RELEASE(levels, out, flat);
}

/* --- sort ---------------------------------------------------------------------------------------- */

static void test_sort_known_values(void **state) {
  (void)state;
  /* torch.tensor([3., nan, 1., 2., nan, 1.]).sort(stable=True) and (descending=True, stable=True) */
  dn_tensor *x = dn_test_from(1, (int64_t[]){6}, (float[]){3, NAN, 1, 2, NAN, 1}), *values, *indices;
  DN_OK_OR_FAIL(dn_sort(&values, &indices, x, 0, false, 0));
  int32_t asc[] = {2, 5, 3, 0, 1, 4}, desc[] = {1, 4, 0, 3, 2, 5};
  assert_memory_equal(dn_tensor_data(indices), asc, sizeof asc);
  assert_true(dn_test_at(values, 0) == 1 && dn_test_at(values, 3) == 3 && isnan(dn_test_at(values, 5)));
  RELEASE(values, indices);
  DN_OK_OR_FAIL(dn_sort(&values, &indices, x, -1, true, 0));
  assert_memory_equal(dn_tensor_data(indices), desc, sizeof desc);
  assert_true(isnan(dn_test_at(values, 0)) && dn_test_at(values, 2) == 3 && dn_test_at(values, 5) == 1);
  /* values or indices alone */
  dn_tensor *only;
  DN_OK_OR_FAIL(dn_sort(NULL, &only, x, 0, true, 1));
  for (int i = 0; i < 6; i++) assert_int_equal((int)dn_test_at(only, i), desc[i] + 1);
  dn_tensor_release(only);
  DN_OK_OR_FAIL(dn_sort(&only, NULL, x, 0, false, 1));
  assert_true(dn_test_at(only, 1) == 1);
  RELEASE(x, values, indices, only);
}

static void test_sort_against_reference(void **state) {
  (void)state;
  /* lanes below and above the insertion-sort length, every dim, both orders, both layouts */
  const int64_t shapes[][3] = {{7, 1, 1}, {200, 1, 1}, {5, 90, 1}, {3, 4, 70}, {40, 3, 5}};
  const int ndims[] = {1, 1, 2, 3, 3};
  for (int s = 0; s < 5; s++) {
    dn_tensor *a = tied_values((uint64_t)s + 1, ndims[s], shapes[s], true), *nc = dn_test_noncontiguous(a);
    for (int dim = 0; dim < ndims[s]; dim++)
      for (int desc = 0; desc < 2; desc++) {
        check_sort(a, dim, desc);
        check_sort(nc, dim - ndims[s], desc);
      }
    RELEASE(a, nc);
  }
  /* a long lane where one key alone differs in its low byte: that radix pass must run */
  dn_tensor *almost;
  DN_OK_OR_FAIL(dn_tensor_full(&almost, DN_F32, 1, (int64_t[]){100}, 1.0));
  ((float *)dn_tensor_data(almost))[3] = nextafterf(1.0f, 2.0f);
  ((float *)dn_tensor_data(almost))[7] = nextafterf(1.0f, 0.0f);
  check_sort(almost, 0, false);
  check_sort(almost, 0, true);
  check_topk(almost, 0, 1, true, true);
  check_topk(almost, 0, 1, false, false);
  dn_tensor_release(almost);
  /* int32 (with its extremes) and uint8 */
  int32_t ints[] = {5, INT32_MIN, -3, 5, INT32_MAX, 0, -3, 7, INT32_MIN, 1};
  dn_tensor *i32, *steps, *halves, *bytes;
  DN_OK_OR_FAIL(dn_tensor_from_data(&i32, DN_I32, 1, (int64_t[]){10}, ints));
  check_sort(i32, 0, false);
  check_sort(i32, 0, true);
  DN_OK_OR_FAIL(dn_tensor_arange(&steps, DN_F32, 0, 300, 1));
  DN_OK_OR_FAIL(dn_binary_scalar(&halves, DN_MUL, steps, 0.5, false));   /* 0 .. 149.5: pairs of equal bytes */
  DN_OK_OR_FAIL(dn_to_dtype(&bytes, halves, DN_U8));
  check_sort(bytes, 0, true);
  check_sort(bytes, 0, false);
  /* 0-dim, and empty lanes or no lanes */
  dn_tensor *scalar, *no_cols, *no_rows;
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, -1.5));
  DN_OK_OR_FAIL(dn_tensor_zeros(&no_cols, DN_F32, 2, (int64_t[]){3, 0}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&no_rows, DN_F32, 2, (int64_t[]){0, 3}));
  check_sort(scalar, 0, false);
  check_sort(scalar, -1, true);
  check_sort(no_cols, 1, false);
  check_sort(no_rows, 1, true);
  check_sort(no_cols, 0, false);
  RELEASE(i32, steps, halves, bytes, scalar, no_cols, no_rows);
}

/* --- topk ------------------------------------------------------------------------------------------ */

static void test_topk_against_reference(void **state) {
  (void)state;
  /* k from 0 to n: selection (k below half the lane, or unsorted) and the full sort give the same picks */
  const int64_t shapes[][2] = {{300, 1}, {4, 150}, {150, 4}, {6, 9}};
  const int ndims[] = {1, 2, 2, 2};
  for (int s = 0; s < 4; s++) {
    dn_tensor *a = tied_values((uint64_t)s + 20, ndims[s], shapes[s], true), *nc = dn_test_noncontiguous(a);
    for (int dim = 0; dim < ndims[s]; dim++) {
      int64_t n = shapes[s][dim], ks[] = {0, 1, 2, n / 4, n / 2 - 1, n / 2, n - 1, n};
      for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (int largest = 0; largest < 2; largest++)
          for (int sorted = 0; sorted < 2; sorted++) {
            check_topk(a, dim, ks[ki], largest, sorted);
            if (ki % 3 == 0) check_topk(nc, dim, ks[ki], largest, sorted);
          }
    }
    RELEASE(a, nc);
  }
  /* a lane of one value: ties all the way down */
  dn_tensor *same, *nans, *scalar;
  DN_OK_OR_FAIL(dn_tensor_full(&same, DN_F32, 1, (int64_t[]){100}, 2.0));
  DN_OK_OR_FAIL(dn_tensor_full(&nans, DN_F32, 1, (int64_t[]){100}, NAN));
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, 4));
  for (int64_t k = 0; k <= 100; k += 7) {
    check_topk(same, 0, k, true, true);
    check_topk(nans, 0, k, false, false);
  }
  check_topk(scalar, 0, 1, true, true);
  /* int32 */
  dn_tensor *ints;
  DN_OK_OR_FAIL(dn_tensor_from_data(&ints, DN_I32, 1, (int64_t[]){6}, (int32_t[]){4, -1, 4, INT32_MAX, 0, -9}));
  check_topk(ints, 0, 3, true, true);
  check_topk(ints, 0, 2, false, false);
  RELEASE(same, nans, scalar, ints);
}

/* --- median ---------------------------------------------------------------------------------------- */

static void test_median(void **state) {
  (void)state;
  const int64_t shapes[][3] = {{9, 1, 1}, {8, 1, 1}, {5, 70, 1}, {3, 4, 6}};
  const int ndims[] = {1, 1, 2, 3};
  for (int s = 0; s < 4; s++) {
    dn_tensor *a = tied_values((uint64_t)s + 40, ndims[s], shapes[s], s != 1), *nc = dn_test_noncontiguous(a);
    for (int dim = 0; dim < ndims[s]; dim++) {
      check_median(a, dim, false);
      check_median(nc, dim, true);
    }
    RELEASE(a, nc);
  }
  /* torch.tensor([3., 1., 2., 1.]).median() is 1: the lower of the two middle values */
  dn_tensor *x = dn_test_from(1, (int64_t[]){4}, (float[]){3, 1, 2, 1}), *m, *nan_x, *empty, *ints, *values, *indices;
  DN_OK_OR_FAIL(dn_median_all(&m, x));
  assert_int_equal(m->ndim, 0);
  assert_true(dn_test_at(m, 0) == 1);
  dn_tensor_release(m);
  /* stable: the lower middle of 1 (position 1), 1 (position 3), 2, 3 is the second 1, as PyTorch says */
  DN_OK_OR_FAIL(dn_median_dim(&values, &indices, x, 0, false, 0));
  assert_true(dn_test_at(values, 0) == 1 && dn_test_at(indices, 0) == 3);
  nan_x = dn_test_from(1, (int64_t[]){3}, (float[]){1, NAN, 0});
  DN_OK_OR_FAIL(dn_median_all(&m, nan_x));
  assert_true(isnan(dn_test_at(m, 0)));
  dn_tensor_release(m);
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 2, (int64_t[]){0, 3}));
  DN_OK_OR_FAIL(dn_median_all(&m, empty));   /* PyTorch: NaN */
  assert_true(isnan(dn_test_at(m, 0)));
  dn_tensor_release(m);
  check_median(empty, 1, false);             /* no lanes: an empty result */
  DN_OK_OR_FAIL(dn_tensor_from_data(&ints, DN_I32, 1, (int64_t[]){5}, (int32_t[]){7, -2, 7, 3, 100}));
  DN_OK_OR_FAIL(dn_median_all(&m, ints));
  assert_int_equal(m->dtype, DN_I32);
  assert_true(dn_test_at(m, 0) == 7);
  check_median(ints, 0, true);
  RELEASE(x, m, nan_x, empty, ints, values, indices);
}

/* --- quantile --------------------------------------------------------------------------------------- */

static void test_quantile(void **state) {
  (void)state;
  /* torch.quantile(torch.tensor([1., 2., 3., 4.]), torch.tensor([0.25, 0.5, 0.9])) */
  dn_tensor *x = dn_test_from(1, (int64_t[]){4}, (float[]){4, 1, 3, 2}), *q, *out;
  DN_OK_OR_FAIL(dn_tensor_from_data(&q, DN_F32, 1, (int64_t[]){3}, (float[]){0.25f, 0.5f, 0.9f}));
  DN_OK_OR_FAIL(dn_quantile_all(&out, x, q, false));
  assert_true(dn_test_at(out, 0) == 1.75 && dn_test_at(out, 1) == 2.5);
  assert_true(fabs(dn_test_at(out, 2) - 3.7) < 1e-6);
  RELEASE(out);

  const float levels[] = {0.0f, 0.1f, 0.25f, 0.5f, 0.7f, 0.999f, 1.0f, 0.5f};
  const int64_t shapes[][3] = {{9, 1, 1}, {5, 70, 1}, {3, 4, 6}};
  const int ndims[] = {1, 2, 3};
  for (int s = 0; s < 3; s++) {
    dn_tensor *a = tied_values((uint64_t)s + 60, ndims[s], shapes[s], s == 1), *nc = dn_test_noncontiguous(a);
    check_quantile(a, 0, true, levels, 8, true, false);
    check_quantile(nc, 0, true, levels + 3, 1, false, true);
    for (int dim = 0; dim < ndims[s]; dim++) {
      check_quantile(a, dim, false, levels, 8, true, dim % 2);
      check_quantile(nc, dim - ndims[s], false, levels + 2, 1, false, false);
    }
    RELEASE(a, nc);
  }
  /* shapes: q's dim first, keepdim */
  dn_tensor *m = dn_test_random(70, 2, (int64_t[]){2, 3}), *q0, *empty_q;
  DN_OK_OR_FAIL(dn_tensor_full(&q0, DN_F32, 0, NULL, 0.3));
  DN_OK_OR_FAIL(dn_quantile_dim(&out, m, q, 1, true));
  assert_int_equal(out->ndim, 3);
  assert_true(out->shape[0] == 3 && out->shape[1] == 2 && out->shape[2] == 1);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_quantile_all(&out, m, q0, true));
  assert_true(out->ndim == 2 && out->shape[0] == 1 && out->shape[1] == 1);
  dn_tensor_release(out);
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty_q, DN_F32, 1, (int64_t[]){0}));
  DN_OK_OR_FAIL(dn_quantile_dim(&out, m, empty_q, 0, false));
  assert_true(out->ndim == 2 && out->shape[0] == 0 && out->shape[1] == 3);
  RELEASE(x, q, out, m, q0, empty_q);
}

/* --- histc ------------------------------------------------------------------------------------------ */

/* counts == torch.histc's rule, element by element: ((x - lo) / (hi - lo)) * bins in float32. */
static void check_histc(const dn_tensor *a, int64_t bins, float lo, float hi) {
  dn_tensor *counts, *edges;
  DN_OK_OR_FAIL(dn_histc(&counts, &edges, a, bins, lo, hi));
  int64_t *want = calloc((size_t)bins, sizeof *want);
  for (int64_t i = 0; i < dn_tensor_numel(a); i++) {
    float x = (float)dn_test_at(a, i);
    if (!(x >= lo && x <= hi)) continue;
    float p = (x - lo) / (hi - lo) * (float)bins;
    want[p < (float)bins ? (int64_t)p : bins - 1]++;
  }
  for (int64_t b = 0; b < bins; b++)
    if (dn_test_at(counts, b) != (double)want[b])
      fail_msg("histc bin %lld: %g, expected %lld", (long long)b, dn_test_at(counts, b), (long long)want[b]);
  assert_true(dn_test_at(edges, 0) == lo && dn_test_at(edges, bins) == hi);
  for (int64_t b = 0; b < bins; b++) assert_true(dn_test_at(edges, b) < dn_test_at(edges, b + 1));
  free(want);
  RELEASE(counts, edges);
}

static void test_histc(void **state) {
  (void)state;
  /* torch.histc(torch.tensor([1., 2., 3., 4.]), 4) and of a constant: the data's range, widened by 1 */
  dn_tensor *x = dn_test_from(1, (int64_t[]){4}, (float[]){1, 2, 3, 4}), *counts, *edges;
  DN_OK_OR_FAIL(dn_histc(&counts, &edges, x, 4, 0, 0));
  for (int b = 0; b < 4; b++) assert_true(dn_test_at(counts, b) == 1);
  assert_true(dn_test_at(edges, 1) == 1.75 && dn_test_at(edges, 4) == 4);
  RELEASE(counts, edges);
  dn_tensor *twos = dn_test_from(1, (int64_t[]){2}, (float[]){2, 2});
  DN_OK_OR_FAIL(dn_histc(&counts, NULL, twos, 4, 5, 5));
  assert_true(dn_test_at(counts, 2) == 2 && dn_test_at(counts, 0) == 0);
  RELEASE(counts);
  /* NaN and values outside are left out; max is in the last bin */
  dn_tensor *mixed = dn_test_from(1, (int64_t[]){6}, (float[]){1, NAN, 3, 4, -1, 4.5f});
  DN_OK_OR_FAIL(dn_histc(&counts, NULL, mixed, 4, 0, 4));
  float want[] = {0, 1, 0, 2};
  for (int b = 0; b < 4; b++) assert_true(dn_test_at(counts, b) == want[b]);
  RELEASE(counts);
  /* an empty tensor: zero counts over [min - 1, max + 1] */
  dn_tensor *empty;
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 1, (int64_t[]){0}));
  DN_OK_OR_FAIL(dn_histc(&counts, &edges, empty, 3, 0, 0));
  assert_true(dn_test_at(counts, 0) == 0 && dn_test_at(edges, 0) == -1 && dn_test_at(edges, 3) == 1);
  RELEASE(counts, edges);
  /* the rule on many values, at and next to every edge, any layout */
  dn_tensor *r = dn_test_random(80, 2, (int64_t[]){30, 40}), *rt;
  DN_OK_OR_FAIL(dn_t(&rt, r));
  check_histc(r, 7, -1.3f, 1.7f);
  check_histc(rt, 100, -2.0f, 2.0f);
  check_histc(r, 1, -0.5f, 0.5f);
  int64_t bins = 37;
  float lo = -0.77f, hi = 2.31f;
  dn_tensor *at_edges;
  DN_OK_OR_FAIL(dn_tensor_new(&at_edges, DN_F32, 1, (int64_t[]){3 * (bins + 1)}));
  float *v = dn_tensor_data(at_edges);
  for (int64_t b = 0; b <= bins; b++) {
    float e = lo + (hi - lo) * (float)b / (float)bins;
    v[3 * b] = e;
    v[3 * b + 1] = nextafterf(e, INFINITY);
    v[3 * b + 2] = nextafterf(e, -INFINITY);
  }
  check_histc(at_edges, bins, lo, hi);
  RELEASE(x, twos, mixed, empty, r, rt, at_edges);
}

/* --- threads ----------------------------------------------------------------------------------------- */

/* Every op on inputs big enough to go parallel: one thread and two give the same bits. */
static void test_threads(void **state) {
  (void)state;
  dn_tensor *a = tied_values(90, 2, (int64_t[]){64, 3000}, true), *q, *out[2][8];
  DN_OK_OR_FAIL(dn_tensor_from_data(&q, DN_F32, 1, (int64_t[]){3}, (float[]){0.1f, 0.5f, 0.77f}));
  for (int t = 0; t < 2; t++) {
    DN_OK_OR_FAIL(dn_set_num_threads(t + 1));
    DN_OK_OR_FAIL(dn_sort(&out[t][0], &out[t][1], a, 1, false, 1));
    DN_OK_OR_FAIL(dn_topk(&out[t][2], &out[t][3], a, 10, 1, true, true, 1));
    DN_OK_OR_FAIL(dn_median_dim(&out[t][4], &out[t][5], a, 0, false, 1));
    DN_OK_OR_FAIL(dn_quantile_dim(&out[t][6], a, q, 1, false));
    DN_OK_OR_FAIL(dn_histc(&out[t][7], NULL, a, 50, -3, 3));
  }
  for (int k = 0; k < 8; k++) {
    assert_int_equal(dn_tensor_numel(out[0][k]), dn_tensor_numel(out[1][k]));
    assert_memory_equal(dn_tensor_data(out[0][k]), dn_tensor_data(out[1][k]),
                        (size_t)dn_tensor_numel(out[0][k]) * 4);
  }
  check_topk(a, 1, 10, true, true);
  check_median(a, 0, false);
  for (int t = 0; t < 2; t++)
    for (int k = 0; k < 8; k++) dn_tensor_release(out[t][k]);
  RELEASE(a, q);
}

/* --- gradients ---------------------------------------------------------------------------------------- */

typedef struct order_case {
  int op, dim;
  int64_t k;
  bool flag;
  const dn_tensor *q;
} order_case;

enum { CASE_SORT, CASE_TOPK, CASE_MEDIAN, CASE_MEDIAN_ALL, CASE_QUANTILE, CASE_QUANTILE_ALL };

static dn_status order_fn(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const order_case *c = ctx;
  switch (c->op) {
    case CASE_SORT: return dn_sort(out, NULL, in[0], c->dim, c->flag, 1);
    case CASE_TOPK: return dn_topk(out, NULL, in[0], c->k, c->dim, c->flag, true, 1);
    case CASE_MEDIAN: return dn_median_dim(out, NULL, in[0], c->dim, c->flag, 1);
    case CASE_MEDIAN_ALL: return dn_median_all(out, in[0]);
    case CASE_QUANTILE: return dn_quantile_dim(out, in[0], c->q, c->dim, c->flag);
    case CASE_QUANTILE_ALL: return dn_quantile_all(out, in[0], c->q, c->flag);
  }
  return DN_EINVAL;
}

static void test_gradients(void **state) {
  (void)state;
  dn_tensor *q;
  /* repeated levels add up; 0 and 1 hit the ends */
  DN_OK_OR_FAIL(dn_tensor_from_data(&q, DN_F32, 1, (int64_t[]){5}, (float[]){0.0f, 0.3f, 0.3f, 0.62f, 1.0f}));
  order_case cases[] = {
    {CASE_SORT, 1, 0, false, NULL},      {CASE_SORT, 0, 0, true, NULL},       {CASE_TOPK, 1, 2, true, NULL},
    {CASE_TOPK, 0, 3, false, NULL},      {CASE_MEDIAN, 1, 0, false, NULL},    {CASE_MEDIAN, 0, 0, true, NULL},
    {CASE_MEDIAN_ALL, 0, 0, false, NULL}, {CASE_QUANTILE, 1, 0, false, q},    {CASE_QUANTILE, 0, 0, true, q},
    {CASE_QUANTILE_ALL, 0, 0, false, q},
  };
  const char *names[] = {"sort", "sort descending", "topk", "topk smallest", "median", "median keepdim",
                         "median of all", "quantile", "quantile keepdim", "quantile of all"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dn_tensor *a = distinct_values(100 + i, 2, (int64_t[]){4, 5}), *nc = dn_test_noncontiguous(a);
    DN_OK_OR_FAIL(dn_requires_grad_(a, true));
    DN_OK_OR_FAIL(dn_requires_grad_(nc, true));
    dn_test_gradcheck(names[i], order_fn, &cases[i], 1, (dn_tensor *[]){a}, 1e-3, 1e-3, 1e-3);
    dn_test_gradcheck(names[i], order_fn, &cases[i], 1, (dn_tensor *[]){nc}, 1e-3, 1e-3, 1e-3);
    RELEASE(a, nc);
  }
  /* median of all with ties: the gradient is shared by the equal elements, as PyTorch does */
  dn_tensor *tied = dn_test_from(1, (int64_t[]){5}, (float[]){2, 1, 2, 5, 2}), *m, *one;
  DN_OK_OR_FAIL(dn_requires_grad_(tied, true));
  DN_OK_OR_FAIL(dn_median_all(&m, tied));
  DN_OK_OR_FAIL(dn_tensor_full(&one, DN_F32, 0, NULL, 1));
  DN_OK_OR_FAIL(dn_backward(m, one, false));
  float share[] = {1.0f / 3, 0, 1.0f / 3, 0, 1.0f / 3};
  for (int i = 0; i < 5; i++) assert_true(fabs(dn_test_at(tied->grad, i) - share[i]) < 1e-7);
  /* sort of a 0-dim tensor passes the gradient through */
  dn_tensor *scalar, *s;
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, 3));
  DN_OK_OR_FAIL(dn_requires_grad_(scalar, true));
  DN_OK_OR_FAIL(dn_sort(&s, NULL, scalar, 0, false, 1));
  DN_OK_OR_FAIL(dn_backward(s, one, false));
  assert_true(dn_test_at(scalar->grad, 0) == 1);
  RELEASE(q, tied, m, one, scalar, s);
}

/* --- errors ------------------------------------------------------------------------------------------- */

static void test_errors(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(110, 2, (int64_t[]){2, 3}), *v = (dn_tensor *)1, *i = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_sort(&v, &i, a, 2, false, 0), DN_EINVAL,
                  "sort: dim 2 out of range for a 2-D tensor of shape [2,3]");
  assert_null(v);
  assert_null(i);
  DN_EXPECT_ERROR(dn_topk(&v, &i, a, 4, 1, true, true, 0), DN_EINVAL,
                  "topk: k must be in [0, 3], the size of the dim (shape [2,3]; got 4)");
  DN_EXPECT_ERROR(dn_topk(&v, &i, a, -1, 1, true, true, 0), DN_EINVAL, "got -1)");
  dn_tensor *scalar, *empty, *ints, *q, *q2, *bad_q, *int_q;
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, 1));
  DN_EXPECT_ERROR(dn_topk(&v, &i, scalar, 0, 0, true, true, 0), DN_EINVAL,
                  "topk: k must be 1 for a 0-dim tensor (got 0)");
  DN_OK_OR_FAIL(dn_tensor_zeros(&empty, DN_F32, 2, (int64_t[]){2, 0}));
  DN_EXPECT_ERROR(dn_median_dim(&v, &i, empty, 1, false, 0), DN_EINVAL,
                  "median: cannot take the median along a dim of size 0 (shape [2,0])");
  DN_OK_OR_FAIL(dn_tensor_zeros(&ints, DN_I32, 1, (int64_t[]){0}));
  DN_EXPECT_ERROR(dn_median_all(&v, ints), DN_EINVAL, "median: an empty int32 tensor has no median");
  DN_EXPECT_ERROR(dn_sort(&v, &i, a, 1, false, INT32_MAX), DN_ERANGE,
                  "sort: indices from 2147483647 to 2147483649 do not fit int32");

  DN_OK_OR_FAIL(dn_tensor_full(&q, DN_F32, 0, NULL, 0.5));
  DN_OK_OR_FAIL(dn_tensor_zeros(&q2, DN_F32, 2, (int64_t[]){1, 1}));
  DN_OK_OR_FAIL(dn_tensor_from_data(&bad_q, DN_F32, 1, (int64_t[]){2}, (float[]){0.5f, 1.5f}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&int_q, DN_I32, 0, NULL));
  DN_EXPECT_ERROR(dn_quantile_all(&v, a, bad_q, false), DN_EINVAL,
                  "quantile: q must be in [0, 1] (got 1.5)");
  DN_EXPECT_ERROR(dn_quantile_all(&v, a, q2, false), DN_ESHAPE,
                  "quantile: q must be a number or a 1-D tensor (got shape [1,1])");
  DN_EXPECT_ERROR(dn_quantile_all(&v, a, int_q, false), DN_ETYPE, "quantile: q must be float32 (got int32)");
  DN_EXPECT_ERROR(dn_quantile_all(&v, empty, q, false), DN_EINVAL, "quantile: input is empty");
  DN_EXPECT_ERROR(dn_quantile_dim(&v, a, q, -3, false), DN_EINVAL, "quantile: dim -3 out of range");
  dn_tensor *int_a;
  DN_OK_OR_FAIL(dn_tensor_zeros(&int_a, DN_I32, 1, (int64_t[]){3}));
  DN_EXPECT_ERROR(dn_quantile_all(&v, int_a, q, false), DN_ETYPE, "quantile: input must be float32 (got int32)");
  dn_tensor *deep;
  DN_OK_OR_FAIL(dn_tensor_zeros(&deep, DN_F32, DN_MAX_DIMS, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 2}));
  dn_tensor *q_vec;
  DN_OK_OR_FAIL(dn_tensor_zeros(&q_vec, DN_F32, 1, (int64_t[]){2}));
  DN_EXPECT_ERROR(dn_quantile_dim(&v, deep, q_vec, 7, true), DN_EINVAL,
                  "quantile: the result would have 9 dims (at most 8)");

  DN_EXPECT_ERROR(dn_histc(&v, NULL, a, 0, 0, 0), DN_EINVAL, "histc: bins must be in [1, 2^40) (got 0)");
  DN_EXPECT_ERROR(dn_histc(&v, NULL, a, 10, 3, 1), DN_EINVAL, "histc: max must be larger than min (got min 3, max 1)");
  DN_EXPECT_ERROR(dn_histc(&v, NULL, a, 10, 0, INFINITY), DN_EINVAL, "histc: range [0, inf] is not finite in float32");
  DN_EXPECT_ERROR(dn_histc(&v, NULL, a, 10, 0, 1e39), DN_EINVAL, "is not finite in float32");
  DN_EXPECT_ERROR(dn_histc(&v, NULL, a, 10, 1, 1 + 1e-12), DN_EINVAL, "are the same float32");
  DN_EXPECT_ERROR(dn_histc(&v, NULL, int_a, 10, 0, 1), DN_ETYPE, "histc: input must be float32 (got int32)");
  dn_tensor *with_nan = dn_test_from(1, (int64_t[]){2}, (float[]){1, NAN});
  DN_EXPECT_ERROR(dn_histc(&v, NULL, with_nan, 10, 0, 0), DN_EINVAL, "histc: range [nan, nan] is not finite");
  assert_null(v);
  RELEASE(a, scalar, empty, ints, q, q2, bad_q, int_q, int_a, deep, q_vec, with_nan);
}

int main(void) {
#define TEST(f) cmocka_unit_test_setup(f, dn_test_reset_modes)
  const struct CMUnitTest tests[] = {
    TEST(test_sort_known_values), TEST(test_sort_against_reference), TEST(test_topk_against_reference),
    TEST(test_median),            TEST(test_quantile),                TEST(test_histc),
    TEST(test_threads),           TEST(test_gradients),               TEST(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
