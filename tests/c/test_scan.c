/* cumsum (scan.c) against a naive reference that adds in double in order
   and rounds each output to float32 (the kernel's arithmetic, so the
   results must be equal): every dim of 1-D to 3-D tensors, negative dims,
   non-contiguous inputs, int32 and uint8 (int32 results, exact, an overflow
   an error), empty and 0-dim inputs, bit-identical results for 1 and 2
   threads, bad dims; gradients by finite differences and exactly (the
   reversed cumsum). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include "graph.h"

#define RELEASE(...)                                                         \
  do {                                                                       \
    dn_tensor *list_[] = {__VA_ARGS__};                                      \
    for (size_t i_ = 0; i_ < sizeof list_ / sizeof list_[0]; i_++) dn_tensor_release(list_[i_]); \
  } while (0)

/* r == cumsum(a, dim), element by element (float32: the same double sums, rounded). */
static void expect_cumsum(const dn_tensor *r, const dn_tensor *a, int dim) {
  int64_t outer = 1, size = a->ndim ? a->shape[dim] : 1, inner = 1;
  for (int d = 0; d < dim; d++) outer *= a->shape[d];
  for (int d = dim + 1; d < a->ndim; d++) inner *= a->shape[d];
  assert_true(dn_same_shape(r, a));
  assert_int_equal(r->dtype, a->dtype == DN_F32 ? DN_F32 : DN_I32);
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t i = 0; i < inner; i++) {
      double acc = 0;
      for (int64_t s = 0; s < size; s++) {
        int64_t e = (o * size + s) * inner + i;
        acc += dn_test_at(a, e);
        double want = a->dtype == DN_F32 ? (double)(float)acc : acc, got = dn_test_at(r, e);
        if (got != want) fail_msg("cumsum dim %d element %lld: %.9g, expected %.9g", dim, (long long)e, got, want);
      }
    }
  }
}

static void check_every_dim(const dn_tensor *a) {
  for (int dim = 0; dim < (a->ndim ? a->ndim : 1); dim++) {
    dn_tensor *r;
    DN_OK_OR_FAIL(dn_cumsum(&r, a, dim));
    expect_cumsum(r, a, dim);
    dn_tensor_release(r);
    DN_OK_OR_FAIL(dn_cumsum(&r, a, dim - (a->ndim ? a->ndim : 1)));   /* the same dim from the end */
    expect_cumsum(r, a, dim);
    dn_tensor_release(r);
  }
}

static void test_values(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(1, 3, (int64_t[]){3, 5, 7}), *an = dn_test_noncontiguous(a), *perm;
  DN_OK_OR_FAIL(dn_permute(&perm, a, (int[]){2, 0, 1}));
  check_every_dim(a);
  check_every_dim(an);
  check_every_dim(perm);
  dn_tensor *v = dn_test_random(2, 1, (int64_t[]){9}), *vn = dn_test_noncontiguous(v);
  check_every_dim(v);
  check_every_dim(vn);
  /* wide rows: more columns than one work item holds */
  dn_tensor *w = dn_test_random(3, 2, (int64_t[]){3, 1300});
  check_every_dim(w);
  /* by hand, and float32 rounding of double sums: 1e8 + 1 + ... stays exact in double */
  dn_tensor *h = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6}), *r;
  DN_OK_OR_FAIL(dn_cumsum(&r, h, 1));
  const float want1[6] = {1, 3, 6, 4, 9, 15};
  for (int i = 0; i < 6; i++) assert_true(dn_test_at(r, i) == want1[i]);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_cumsum(&r, h, 0));
  const float want0[6] = {1, 2, 3, 5, 7, 9};
  for (int i = 0; i < 6; i++) assert_true(dn_test_at(r, i) == want0[i]);
  dn_tensor_release(r);
  dn_tensor *c = dn_test_from(1, (int64_t[]){4}, (float[]){1e8f, 1, 1, -1e8f});
  DN_OK_OR_FAIL(dn_cumsum(&r, c, 0));
  assert_true(dn_test_at(r, 3) == 2);   /* a float32 running sum would give 0 */
  dn_tensor_release(r);
  RELEASE(a, an, perm, v, vn, w, h, c);
}

static void test_integers(void **state) {
  (void)state;
  dn_tensor *f = dn_test_random(4, 2, (int64_t[]){4, 6}), *i, *u, *f2, *r;
  DN_OK_OR_FAIL(dn_binary_scalar(&f2, DN_MUL, f, 50, false));
  DN_OK_OR_FAIL(dn_to_dtype(&i, f2, DN_I32));
  check_every_dim(i);
  dn_tensor *in = dn_test_noncontiguous(i);
  check_every_dim(in);
  DN_OK_OR_FAIL(dn_binary_scalar_(f2, DN_ADD, 100));
  DN_OK_OR_FAIL(dn_to_dtype(&u, f2, DN_U8));
  check_every_dim(u);   /* uint8 sums give int32 */
  /* int32 sums leaving the range: an error, nothing returned */
  dn_tensor *big;
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&big, DN_I32, 2, (int64_t[]){2, 2}, (double[]){2147483647.0, -5, 1, 5}));
  r = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_cumsum(&r, big, 0), DN_ERANGE,
                  "cumsum: a sum overflows int32 (input of shape [2,2]); convert to float32 first");
  assert_null(r);
  DN_OK_OR_FAIL(dn_cumsum(&r, big, 1));   /* the rows fit */
  assert_true(dn_test_at(r, 0) == 2147483647.0 && dn_test_at(r, 1) == 2147483642.0 && dn_test_at(r, 2) == 1 &&
              dn_test_at(r, 3) == 6);
  RELEASE(r, f, f2, i, in, u, big);
}

static void test_empty_and_scalar(void **state) {
  (void)state;
  dn_tensor *e, *s, *r;
  DN_OK_OR_FAIL(dn_tensor_new(&e, DN_F32, 2, (int64_t[]){0, 3}));
  DN_OK_OR_FAIL(dn_cumsum(&r, e, 0));
  assert_true(r->ndim == 2 && r->shape[0] == 0 && r->shape[1] == 3);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_cumsum(&r, e, 1));
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_tensor_full(&s, DN_F32, 0, NULL, 2.5));
  DN_OK_OR_FAIL(dn_cumsum(&r, s, 0));
  assert_true(r->ndim == 0 && dn_test_at(r, 0) == 2.5);
  dn_tensor_release(r);
  DN_OK_OR_FAIL(dn_cumsum(&r, s, -1));
  assert_true(r->ndim == 0 && dn_test_at(r, 0) == 2.5);
  dn_tensor_release(r);
  dn_tensor *a = dn_test_random(5, 2, (int64_t[]){2, 3});
  r = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_cumsum(&r, a, 2), DN_EINVAL, "cumsum: dim 2 out of range for a 2-D tensor of shape [2,3]");
  DN_EXPECT_ERROR(dn_cumsum(&r, a, -3), DN_EINVAL, "cumsum: dim -3 out of range");
  DN_EXPECT_ERROR(dn_cumsum(&r, s, 1), DN_EINVAL, "cumsum: dim 1 out of range for a 0-D tensor");
  assert_null(r);
  RELEASE(e, s, a);
}

static void test_threads(void **state) {
  (void)state;
  int threads = dn_get_num_threads();
  dn_tensor *a = dn_test_random(6, 2, (int64_t[]){400, 900});
  for (int dim = 0; dim < 2; dim++) {
    dn_tensor *r[2];
    for (int t = 0; t < 2; t++) {
      DN_OK_OR_FAIL(dn_set_num_threads(t + 1));
      DN_OK_OR_FAIL(dn_cumsum(&r[t], a, dim));
    }
    DN_OK_OR_FAIL(dn_set_num_threads(threads));
    assert_memory_equal(dn_tensor_data(r[0]), dn_tensor_data(r[1]), (size_t)dn_tensor_numel(a) * sizeof(float));
    RELEASE(r[0], r[1]);
  }
  dn_tensor_release(a);
}

/* --- gradients ------------------------------------------------------------------ */

static dn_status f_cumsum(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  return dn_cumsum(out, in[0], *(const int *)ctx);
}

static void test_gradients(void **state) {
  (void)state;
  for (int nc = 0; nc < 2; nc++) {
    dn_tensor *r = dn_test_random(7, 3, (int64_t[]){2, 3, 4});
    dn_tensor *x = nc ? dn_test_noncontiguous(r) : dn_tensor_retain(r);
    DN_OK_OR_FAIL(dn_requires_grad_(x, true));
    for (int dim = -3; dim < 3; dim++) {
      char label[32];
      snprintf(label, sizeof label, "cumsum dim %d", dim);
      dn_test_gradcheck(label, f_cumsum, &dim, 1, &x, 1e-2, 1e-3, 1e-4);
    }
    RELEASE(r, x);
  }
  /* exactly: the reversed cumsum of the gradient */
  dn_tensor *x = dn_test_from(1, (int64_t[]){4}, (float[]){1, 2, 3, 4}), *y, *g;
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_cumsum(&y, x, 0));
  assert_string_equal(dn_grad_fn_name(y), "cumsum");
  g = dn_test_from(1, (int64_t[]){4}, (float[]){1, 10, 100, 1000});
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  const float want[4] = {1111, 1110, 1100, 1000};
  for (int i = 0; i < 4; i++) assert_true(dn_test_at(x->grad, i) == want[i]);
  /* int32 records nothing */
  dn_tensor *i32, *yi;
  DN_OK_OR_FAIL(dn_to_dtype(&i32, x, DN_I32));
  DN_OK_OR_FAIL(dn_cumsum(&yi, i32, 0));
  assert_false(yi->requires_grad);
  RELEASE(x, y, g, i32, yi);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_values),
    cmocka_unit_test(test_integers),
    cmocka_unit_test(test_empty_and_scalar),
    cmocka_unit_test_setup(test_threads, dn_test_reset_modes),
    cmocka_unit_test_setup(test_gradients, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
