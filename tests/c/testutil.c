#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "conv_geom.h"
#include "graph.h"

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

/* Storage index of the element at row-major position i (honours strides). */
static int64_t storage_offset(const dn_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    off += (i % t->shape[d]) * t->stride[d];
    i /= t->shape[d];
  }
  return off;
}

double dn_test_at(const dn_tensor *t, int64_t i) {
  int64_t off = storage_offset(t, i);
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

/* sum(f(in) * weights) in double, computed with grad mode off. */
static double weighted_output(dn_test_fn f, const void *ctx, dn_tensor *const *in, const dn_tensor *weights) {
  bool mode = dn_set_grad_enabled(false);
  dn_tensor *out;
  DN_OK_OR_FAIL(f(&out, in, ctx));
  dn_set_grad_enabled(mode);
  double sum = 0;
  for (int64_t i = 0; i < dn_tensor_numel(out); i++) sum += dn_test_at(out, i) * dn_test_at(weights, i);
  dn_tensor_release(out);
  return sum;
}

/* Compares input k's grad with central differences, element by element. */
static void check_input(const char *what, dn_test_fn f, const void *ctx, dn_tensor *const *in, int k,
                        const dn_tensor *weights, double eps, double rtol, double atol) {
  dn_tensor *x = in[k];
  char xs[128], gs[128];
  if (!x->requires_grad) {
    if (x->grad) fail_msg("%s: input %d does not require grad but got one", what, k);
    return;
  }
  if (!x->grad) fail_msg("%s: input %d (shape %s) got no gradient", what, k, dn_shape_str(x, xs, sizeof xs));
  if (!dn_same_shape(x->grad, x) || x->grad->dtype != DN_F32)
    fail_msg("%s: input %d: gradient of shape %s (%s) for an input of shape %s", what, k,
             dn_shape_str(x->grad, gs, sizeof gs), dn_dtype_name(x->grad->dtype), dn_shape_str(x, xs, sizeof xs));
  float *data = x->storage->data;
  for (int64_t e = 0; e < dn_tensor_numel(x); e++) {
    int64_t off = storage_offset(x, e);
    float orig = data[off], up = (float)(orig + eps), down = (float)(orig - eps);
    data[off] = up;
    double f_up = weighted_output(f, ctx, in, weights);
    data[off] = down;
    double f_down = weighted_output(f, ctx, in, weights);
    data[off] = orig;
    double numeric = (f_up - f_down) / ((double)up - (double)down), analytic = dn_test_at(x->grad, e);
    if (!(fabs(analytic - numeric) <= atol + rtol * fabs(numeric)))
      fail_msg("%s: input %d (shape %s) element %lld: backward %.7g, finite differences %.7g", what, k,
               dn_shape_str(x, xs, sizeof xs), (long long)e, analytic, numeric);
  }
}

void dn_test_gradcheck(const char *what, dn_test_fn f, const void *ctx, int n_in, dn_tensor *const *in,
                       double eps, double rtol, double atol) {
  bool any_requires_grad = false;
  for (int k = 0; k < n_in; k++) {
    if (!in[k]) continue;
    dn_tensor_release(in[k]->grad);
    in[k]->grad = NULL;
    any_requires_grad |= in[k]->requires_grad;
  }
  if (!any_requires_grad) fail_msg("%s: no input requires grad: nothing to check", what);
  dn_tensor *out;
  DN_OK_OR_FAIL(f(&out, in, ctx));
  if (!out->requires_grad || !out->grad_fn)
    fail_msg("%s: the result records no autograd node", what);
  dn_tensor *weights = dn_test_random(99, out->ndim, out->shape);
  DN_OK_OR_FAIL(dn_backward(out, weights, false));
  dn_tensor_release(out);
  for (int k = 0; k < n_in; k++)
    if (in[k]) check_input(what, f, ctx, in, k, weights, eps, rtol, atol);
  dn_tensor_release(weights);
}

void dn_test_node_backward(dn_tensor *y, dn_tensor *grad, dn_tensor **grad_in) {
  if (!y->grad_fn) fail_msg("node backward: the tensor records no node");
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(y->grad_fn->type->backward(y->grad_fn, grad, grad_in));
  dn_set_grad_enabled(mode);
}

/* --- files ------------------------------------------------------------------------ */

static char tempdir[64];

int dn_test_reset_modes(void **state) {
  static int initial_threads = 0;
  (void)state;
  if (initial_threads == 0) initial_threads = dn_get_num_threads();
  dn_set_grad_enabled(true);
  dn_conv_shifted_force = DN_SHIFTED_AUTO;
  dn_conv_winograd_force = DN_SHIFTED_AUTO;
  return dn_set_num_threads(initial_threads) == DN_OK ? 0 : -1;
}

int dn_test_tempdir_setup(void **state) {
  (void)state;
  strcpy(tempdir, "/tmp/dn_test_XXXXXX");
  return mkdtemp(tempdir) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *info, int flag, struct FTW *ftw) {
  (void)info, (void)flag, (void)ftw;
  return remove(path);
}

int dn_test_tempdir_teardown(void **state) {
  (void)state;
  return nftw(tempdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *dn_test_tempdir(void) { return tempdir; }

const char *dn_test_path(const char *name) {
  static char buf[4][256];
  static int next;
  char *p = buf[next++ % 4];
  snprintf(p, 256, "%s/%s", tempdir, name);
  return p;
}

void dn_test_write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

unsigned char *dn_test_read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *data = malloc((size_t)size + 1);
  assert_non_null(data);
  assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
  data[size] = 0;
  fclose(f);
  *n = (size_t)size;
  return data;
}

int dn_test_count_temp_files(void) {
  DIR *d = opendir(tempdir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp-")) n++;
  closedir(d);
  return n;
}
