#include <math.h>
#include <string.h>

#include "testutil.h"

void dn_test_expect_error(dn_status st, dn_status want, const char *needle, const char *text) {
  if (st == DN_OK) fail_msg("%s succeeded; expected an error containing '%s'", text, needle);
  if (st != want)
    fail_msg("%s: status %s, expected %s (message: %s)", text, dn_status_name(st), dn_status_name(want),
             dn_last_error());
  if (!strstr(dn_last_error(), needle))
    fail_msg("%s: message '%s' does not contain '%s'", text, dn_last_error(), needle);
}

dn_tensor *dn_test_random(uint64_t seed, int ndim, const int64_t *shape) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_F32, ndim, shape));
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    d[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 4.0 - 2.0);
  }
  return t;
}

dn_tensor *dn_test_from(int ndim, const int64_t *shape, const float *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_F32, ndim, shape, values));
  return t;
}

double dn_test_at(const dn_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    off += (i % t->shape[d]) * t->stride[d];
    i /= t->shape[d];
  }
  switch (t->dtype) {
    case DN_F32: return ((float *)t->storage->data)[off];
    case DN_I32: return ((int32_t *)t->storage->data)[off];
    case DN_U8: return ((uint8_t *)t->storage->data)[off];
  }
  return 0;
}

void dn_test_assert_close(const dn_tensor *a, const dn_tensor *b, double tol) {
  char sa[128], sb[128];
  if (!dn_same_shape(a, b))
    fail_msg("shapes differ: %s vs %s", dn_shape_str(a, sa, sizeof sa), dn_shape_str(b, sb, sizeof sb));
  for (int64_t i = 0; i < dn_tensor_numel(a); i++) {
    double x = dn_test_at(a, i), y = dn_test_at(b, i);
    if (isnan(x) && isnan(y)) continue;
    if (x == y) continue;
    if (!(fabs(x - y) <= tol * (1 + fabs(y)))) fail_msg("element %lld: %.9g vs %.9g", (long long)i, x, y);
  }
}

dn_tensor *dn_test_noncontiguous(const dn_tensor *t) {
  /* Store the data transposed in the last two dims (or reversed stride for 1-D),
     then return a view presenting the original logical layout. */
  dn_tensor *c;
  if (t->ndim < 2) {
    /* a 1-D tensor: take every second element of a doubled buffer */
    int64_t n = t->ndim ? t->shape[0] : 1, shape2 = 2 * n;
    dn_tensor *big;
    DN_OK_OR_FAIL(dn_tensor_zeros(&big, t->dtype, 1, &shape2));
    dn_tensor *v;
    DN_OK_OR_FAIL(dn_view(&v, big, 2, (int64_t[]){n, 2}));
    DN_OK_OR_FAIL(dn_select(&c, v, 1, 0));
    DN_OK_OR_FAIL(dn_copy_(c, t));
    dn_tensor_release(v);
    dn_tensor_release(big);
    if (t->ndim == 0) {
      dn_tensor *s;
      DN_OK_OR_FAIL(dn_view(&s, c, 0, NULL));
      dn_tensor_release(c);
      return s;
    }
    return c;
  }
  dn_tensor *tt, *store, *back;
  DN_OK_OR_FAIL(dn_transpose(&tt, (dn_tensor *)t, t->ndim - 2, t->ndim - 1));
  DN_OK_OR_FAIL(dn_clone(&store, tt));           /* contiguous in transposed order */
  DN_OK_OR_FAIL(dn_transpose(&back, store, t->ndim - 2, t->ndim - 1));
  dn_tensor_release(tt);
  dn_tensor_release(store);
  return back;
}
