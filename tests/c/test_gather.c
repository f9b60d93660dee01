/* gather and scatter_add against plain coordinate loops, their gradients, threads and errors. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void release_all(dn_tensor **list, size_t count) {
  for (size_t i = 0; i < count; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...) \
  release_all((dn_tensor *[]){__VA_ARGS__}, sizeof((dn_tensor *[]){__VA_ARGS__}) / sizeof(dn_tensor *))

static dn_tensor *int_tensor(int ndim, const int64_t *shape, const int32_t *values) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_from_data(&t, DN_I32, ndim, shape, values));
  return t;
}

/* An int32 tensor of shape with values in [base, base + size), from a seeded xorshift. */
static dn_tensor *random_index(uint64_t seed, int ndim, const int64_t *shape, int64_t size, int64_t base) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_I32, ndim, shape));
  int32_t *v = dn_tensor_data(t);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 7;
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v[i] = (int32_t)((int64_t)(x % (uint64_t)size) + base);
  }
  return t;
}

/* Row-major coordinates of element i of a shape (a 0-dim shape has none). */
static void coords_of(int ndim, const int64_t *shape, int64_t i, int64_t *c) {
  for (int d = ndim - 1; d >= 0; d--) {
    c[d] = i % shape[d];
    i /= shape[d];
  }
}

/* Row-major position of coordinates c in t. */
static int64_t position_of(const dn_tensor *t, const int64_t *c) {
  int64_t p = 0;
  for (int d = 0; d < t->ndim; d++) p = p * t->shape[d] + c[d];
  return p;
}

/* out == a.gather(dim, index), element by element and bit for bit. */
static void check_gather(const dn_tensor *a, int dim, const dn_tensor *index, int64_t base) {
  dn_tensor *out;
  DN_OK_OR_FAIL(dn_gather(&out, a, dim, index, base));
  assert_int_equal(out->dtype, a->dtype);
  assert_true(dn_same_shape(out, index));
  int d = dim < 0 ? dim + a->ndim : dim;
  for (int64_t i = 0; i < dn_tensor_numel(index); i++) {
    int64_t c[DN_MAX_DIMS];
    coords_of(index->ndim, index->shape, i, c);
    if (index->ndim) c[d] = (int64_t)dn_test_at(index, i) - base;
    assert_true(dn_test_at(out, i) == dn_test_at(a, position_of(a, c)));
  }
  dn_tensor_release(out);
}

/*
** out == a.scatter_add(dim, index, src) bit for bit: the reference adds the
** terms in float32 in index's row-major order, the order the kernel promises.
** The in-place form on a copy gives the same bits.
*/
static void check_scatter_add(const dn_tensor *a, int dim, const dn_tensor *index, const dn_tensor *src,
                              int64_t base) {
  int64_t n = dn_tensor_numel(a);
  double *ref = malloc((size_t)(n ? n : 1) * sizeof *ref);
  for (int64_t i = 0; i < n; i++) ref[i] = dn_test_at(a, i);
  int d = dim < 0 ? dim + a->ndim : dim;
  for (int64_t i = 0; i < dn_tensor_numel(index); i++) {
    int64_t c[DN_MAX_DIMS];
    coords_of(index->ndim, index->shape, i, c);
    double term = dn_test_at(src, position_of(src, c));
    if (index->ndim) c[d] = (int64_t)dn_test_at(index, i) - base;
    int64_t p = position_of(a, c);
    ref[p] = a->dtype == DN_F32 ? (double)((float)ref[p] + (float)term) : ref[p] + term;
  }
  dn_tensor *out, *copy;
  DN_OK_OR_FAIL(dn_scatter_add(&out, a, dim, index, src, base));
  DN_OK_OR_FAIL(dn_clone(&copy, a));
  DN_OK_OR_FAIL(dn_scatter_add_(copy, dim, index, src, base));
  assert_true(dn_same_shape(out, a));
  for (int64_t i = 0; i < n; i++) {
    if (dn_test_at(out, i) != ref[i])
      fail_msg("element %lld: %.9g, expected %.9g", (long long)i, dn_test_at(out, i), ref[i]);
    assert_true(dn_test_at(copy, i) == ref[i]);
  }
  free(ref);
  RELEASE(out, copy);
}

/* A transposed view of a fresh copy of t (last two dims swapped and back): same values, strides out of order. */
static dn_tensor *strided(const dn_tensor *t) { return dn_test_noncontiguous(t); }

static void test_known_values(void **state) {
  (void)state;
  /* torch.tensor([[1., 2.], [3., 4.]]).gather(1, torch.tensor([[0, 0, 1], [1, 0, 0]])) */
  dn_tensor *a = dn_test_from(2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4}), *out;
  dn_tensor *index = int_tensor(2, (int64_t[]){2, 3}, (int32_t[]){1, 1, 2, 2, 1, 1});
  DN_OK_OR_FAIL(dn_gather(&out, a, 1, index, 1));
  float want[] = {1, 1, 2, 4, 3, 3};
  for (int i = 0; i < 6; i++) assert_true(dn_test_at(out, i) == want[i]);
  dn_tensor_release(out);
  /* dim 0 with an index smaller than a: [[a[1][0], a[0][1]]] */
  dn_tensor *rows = int_tensor(2, (int64_t[]){1, 2}, (int32_t[]){1, 0});
  DN_OK_OR_FAIL(dn_gather(&out, a, 0, rows, 0));
  assert_true(dn_test_at(out, 0) == 3 && dn_test_at(out, 1) == 2);
  dn_tensor_release(out);

  /* torch.zeros(2, 3).scatter_add(1, torch.tensor([[0, 0], [2, 2]]), torch.ones(3, 3)): src larger than index */
  dn_tensor *zeros, *ones, *cols = int_tensor(2, (int64_t[]){2, 2}, (int32_t[]){0, 0, 2, 2});
  DN_OK_OR_FAIL(dn_tensor_zeros(&zeros, DN_F32, 2, (int64_t[]){2, 3}));
  DN_OK_OR_FAIL(dn_tensor_ones(&ones, DN_F32, 2, (int64_t[]){3, 3}));
  DN_OK_OR_FAIL(dn_scatter_add(&out, zeros, 1, cols, ones, 0));
  float sums[] = {2, 0, 0, 0, 0, 2};
  for (int i = 0; i < 6; i++) assert_true(dn_test_at(out, i) == sums[i]);
  RELEASE(a, index, rows, zeros, ones, cols, out);
}

static void test_gather_shapes_and_layouts(void **state) {
  (void)state;
  const int64_t shapes[][3] = {{7, 1, 1}, {4, 5, 1}, {3, 4, 5}};
  const int ndims[] = {1, 2, 3};
  for (int s = 0; s < 3; s++) {
    int ndim = ndims[s];
    dn_tensor *a = dn_test_random((uint64_t)s + 1, ndim, shapes[s]), *a_nc = strided(a);
    for (int dim = 0; dim < ndim; dim++) {
      /* index: smaller than a in the other dims, longer along dim */
      int64_t ishape[3];
      for (int d = 0; d < ndim; d++) ishape[d] = d == dim ? shapes[s][d] + 3 : (shapes[s][d] + 1) / 2;
      dn_tensor *index = random_index((uint64_t)(10 * s + dim), ndim, ishape, shapes[s][dim], 1);
      dn_tensor *index_nc = strided(index);
      check_gather(a, dim, index, 1);
      check_gather(a_nc, dim, index, 1);
      check_gather(a, dim - ndim, index_nc, 1);   /* a negative dim */
      check_gather(a_nc, dim, index_nc, 1);
      RELEASE(index, index_nc);
    }
    RELEASE(a, a_nc);
  }
  /* int32 and uint8 inputs are copied as they are */
  dn_tensor *f = dn_test_random(9, 2, (int64_t[]){4, 6}), *scaled, *ints, *abs_ints, *bytes;
  DN_OK_OR_FAIL(dn_binary_scalar(&scaled, DN_MUL, f, 50, false));
  DN_OK_OR_FAIL(dn_to_dtype(&ints, scaled, DN_I32));
  DN_OK_OR_FAIL(dn_unary(&abs_ints, DN_ABS, ints));
  DN_OK_OR_FAIL(dn_to_dtype(&bytes, abs_ints, DN_U8));
  dn_tensor *index = random_index(3, 2, (int64_t[]){4, 9}, 6, 0);
  check_gather(ints, 1, index, 0);
  check_gather(bytes, 1, index, 0);
  /* 0-dim, and empty indices */
  dn_tensor *scalar, *scalar_index, *none, *out;
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, 2.5));
  DN_OK_OR_FAIL(dn_tensor_full(&scalar_index, DN_I32, 0, NULL, 1));
  check_gather(scalar, 0, scalar_index, 1);
  check_gather(scalar, -1, scalar_index, 1);
  none = int_tensor(2, (int64_t[]){0, 3}, (int32_t[]){0});
  DN_OK_OR_FAIL(dn_gather(&out, f, 1, none, 0));
  assert_int_equal(out->shape[0], 0);
  assert_int_equal(out->shape[1], 3);
  RELEASE(f, scaled, ints, abs_ints, bytes, index, scalar, scalar_index, none, out);
}

static void test_scatter_add_shapes_and_layouts(void **state) {
  (void)state;
  const int64_t shapes[][3] = {{7, 1, 1}, {4, 5, 1}, {3, 4, 5}};
  const int ndims[] = {1, 2, 3};
  for (int s = 0; s < 3; s++) {
    int ndim = ndims[s];
    dn_tensor *a = dn_test_random((uint64_t)s + 20, ndim, shapes[s]), *a_nc = strided(a);
    for (int dim = 0; dim < ndim; dim++) {
      /* index longer than a along dim (repeats add up), smaller elsewhere; src larger than index */
      int64_t ishape[3], sshape[3];
      for (int d = 0; d < ndim; d++) {
        ishape[d] = d == dim ? 2 * shapes[s][d] + 1 : (shapes[s][d] + 1) / 2;
        sshape[d] = ishape[d] + 1;
      }
      dn_tensor *index = random_index((uint64_t)(30 + 10 * s + dim), ndim, ishape, shapes[s][dim], 1);
      dn_tensor *src = dn_test_random((uint64_t)(40 + s), ndim, sshape);
      dn_tensor *index_nc = strided(index), *src_nc = strided(src);
      check_scatter_add(a, dim, index, src, 1);
      check_scatter_add(a_nc, dim, index_nc, src_nc, 1);
      check_scatter_add(a, dim - ndim, index, src_nc, 1);
      RELEASE(index, src, index_nc, src_nc);
    }
    RELEASE(a, a_nc);
  }
  /* 0-dim, and an empty index (a copy of a) */
  dn_tensor *scalar, *scalar_index, *scalar_src, *none, *a, *src;
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, 2.5));
  DN_OK_OR_FAIL(dn_tensor_full(&scalar_src, DN_F32, 0, NULL, -1));
  DN_OK_OR_FAIL(dn_tensor_full(&scalar_index, DN_I32, 0, NULL, 0));
  check_scatter_add(scalar, 0, scalar_index, scalar_src, 0);
  a = dn_test_random(50, 2, (int64_t[]){3, 4});
  src = dn_test_random(51, 2, (int64_t[]){3, 4});
  none = int_tensor(2, (int64_t[]){3, 0}, (int32_t[]){0});
  check_scatter_add(a, 1, none, src, 0);
  RELEASE(scalar, scalar_index, scalar_src, none, a, src);
}

/*
** Many terms per element (float sums whose value depends on their order):
** one thread and two give the same bits, equal to the row-major reference,
** on each way of cutting the work (whole outer positions, or columns when
** the outer positions are fewer than the threads).
*/
static void test_scatter_add_threads(void **state) {
  (void)state;
  struct {
    int64_t a[2], index[2];
    int dim;
  } cases[] = {
    {{4, 300}, {4, 60000}, 1},     /* outer positions of their own */
    {{300, 70}, {4000, 70}, 0},    /* one outer position: the columns are split */
    {{2, 5000}, {2, 40000}, 1},    /* fewer outer positions than threads: split columns of a long row */
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    dn_tensor *a = dn_test_random(60 + k, 2, cases[k].a), *src = dn_test_random(70 + k, 2, cases[k].index);
    dn_tensor *index = random_index(80 + k, 2, cases[k].index, cases[k].a[cases[k].dim], 0), *one, *two, *g1, *g2;
    DN_OK_OR_FAIL(dn_set_num_threads(1));
    DN_OK_OR_FAIL(dn_scatter_add(&one, a, cases[k].dim, index, src, 0));
    DN_OK_OR_FAIL(dn_gather(&g1, a, cases[k].dim, index, 0));
    DN_OK_OR_FAIL(dn_set_num_threads(2));
    DN_OK_OR_FAIL(dn_scatter_add(&two, a, cases[k].dim, index, src, 0));
    DN_OK_OR_FAIL(dn_gather(&g2, a, cases[k].dim, index, 0));
    assert_memory_equal(dn_tensor_data(one), dn_tensor_data(two), (size_t)dn_tensor_numel(a) * sizeof(float));
    assert_memory_equal(dn_tensor_data(g1), dn_tensor_data(g2), (size_t)dn_tensor_numel(index) * sizeof(float));
    check_scatter_add(a, cases[k].dim, index, src, 0);
    check_gather(a, cases[k].dim, index, 0);
    RELEASE(a, src, index, one, two, g1, g2);
  }
}

static void test_scatter_add_int32(void **state) {
  (void)state;
  /* counting labels: zeros(4):scatter_add(0, labels, ones) */
  dn_tensor *counts, *labels = int_tensor(1, (int64_t[]){6}, (int32_t[]){3, 1, 3, 0, 3, 1}), *ones, *out;
  DN_OK_OR_FAIL(dn_tensor_zeros(&counts, DN_I32, 1, (int64_t[]){4}));
  DN_OK_OR_FAIL(dn_tensor_ones(&ones, DN_I32, 1, (int64_t[]){6}));
  DN_OK_OR_FAIL(dn_scatter_add(&out, counts, 0, labels, ones, 0));
  assert_int_equal(out->dtype, DN_I32);
  int32_t want[] = {1, 2, 0, 3};
  assert_memory_equal(dn_tensor_data(out), want, sizeof want);
  check_scatter_add(counts, 0, labels, ones, 0);

  /* an overflow is an error naming the terms, and the in-place form leaves its tensor as it was */
  dn_tensor *big, *twice = int_tensor(1, (int64_t[]){2}, (int32_t[]){0, 0});
  dn_tensor *bump = int_tensor(1, (int64_t[]){2}, (int32_t[]){1, 1});
  DN_OK_OR_FAIL(dn_tensor_full(&big, DN_I32, 1, (int64_t[]){2}, 2147483646));
  dn_tensor *none = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_scatter_add(&none, big, 0, twice, bump, 0), DN_ERANGE,
                  "scatter_add: int32 overflow: 2147483647 + 1 is outside the int32 range");
  assert_null(none);
  DN_EXPECT_ERROR(dn_scatter_add_(big, 0, twice, bump, 0), DN_ERANGE, "scatter_add_: int32 overflow");
  assert_true(dn_test_at(big, 0) == 2147483646 && dn_test_at(big, 1) == 2147483646);
  RELEASE(counts, labels, ones, out, big, twice, bump);
}

static void test_scatter_add_in_place(void **state) {
  (void)state;
  /* src is a itself: the terms are read before any is added */
  dn_tensor *a = dn_test_random(90, 2, (int64_t[]){3, 4}), *copy, *out;
  dn_tensor *index = random_index(91, 2, (int64_t[]){3, 4}, 4, 0);
  DN_OK_OR_FAIL(dn_clone(&copy, a));
  DN_OK_OR_FAIL(dn_scatter_add(&out, a, 1, index, copy, 0));
  uint32_t version = a->storage->version;
  DN_OK_OR_FAIL(dn_scatter_add_(a, 1, index, a, 0));
  assert_true(a->storage->version != version);   /* autograd sees the write */
  dn_test_assert_close(a, out, 0);
  /* int32 tensor indexing itself: the index is read from a copy too */
  dn_tensor *self = int_tensor(1, (int64_t[]){4}, (int32_t[]){1, 0, 3, 1}), *self_copy, *ones, *self_out;
  DN_OK_OR_FAIL(dn_clone(&self_copy, self));
  DN_OK_OR_FAIL(dn_tensor_ones(&ones, DN_I32, 1, (int64_t[]){4}));
  DN_OK_OR_FAIL(dn_scatter_add(&self_out, self_copy, 0, self_copy, ones, 0));
  DN_OK_OR_FAIL(dn_scatter_add_(self, 0, self, ones, 0));
  assert_memory_equal(dn_tensor_data(self), dn_tensor_data(self_out), 4 * sizeof(int32_t));

  /* no in-place write into a tensor that requires grad, from a src that does, or into an expanded tensor */
  dn_tensor *leaf = dn_test_random(92, 2, (int64_t[]){3, 4}), *row = dn_test_random(93, 2, (int64_t[]){1, 4}), *wide;
  DN_OK_OR_FAIL(dn_requires_grad_(leaf, true));
  DN_EXPECT_ERROR(dn_scatter_add_(leaf, 1, index, copy, 0), DN_EINVAL,
                  "scatter_add_: in-place operation on a tensor that requires grad");
  DN_EXPECT_ERROR(dn_scatter_add_(copy, 1, index, leaf, 0), DN_EINVAL, "scatter_add_: the source requires grad");
  DN_OK_OR_FAIL(dn_broadcast_to(&wide, row, 2, (int64_t[]){3, 4}));
  DN_EXPECT_ERROR(dn_scatter_add_(wide, 1, index, copy, 0), DN_EINVAL,
                  "scatter_add_: cannot write into an expanded tensor");
  RELEASE(a, copy, out, index, self, self_copy, ones, self_out, leaf, row, wide);
}

/* --- gradients -------------------------------------------------------------------------- */

typedef struct pair_case {
  int dim;
  const dn_tensor *index;
} pair_case;

static dn_status gather_fn(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const pair_case *c = ctx;
  return dn_gather(out, in[0], c->dim, c->index, 1);
}

static dn_status scatter_add_fn(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const pair_case *c = ctx;
  return dn_scatter_add(out, in[0], c->dim, c->index, in[1], 1);
}

static void test_gradients(void **state) {
  (void)state;
  for (int dim = 0; dim < 3; dim++) {
    int64_t ashape[3] = {3, 4, 2}, ishape[3] = {2, 3, 2}, sshape[3] = {3, 4, 3};
    ishape[dim] = 5;   /* longer than a along dim: repeated indices add up in backward */
    if (sshape[dim] < 5) sshape[dim] = 5;
    dn_tensor *a = dn_test_random(100 + (uint64_t)dim, 3, ashape), *a_nc = strided(a);
    dn_tensor *src = dn_test_random(110 + (uint64_t)dim, 3, sshape), *src_nc = strided(src);
    dn_tensor *index = random_index(120 + (uint64_t)dim, 3, ishape, ashape[dim], 1), *index_nc = strided(index);
    pair_case c = {dim, index}, c_nc = {dim, index_nc};
    for (int k = 0; k < 2; k++) {
      dn_tensor *x = k ? a_nc : a, *s = k ? src_nc : src;
      DN_OK_OR_FAIL(dn_requires_grad_(x, true));
      DN_OK_OR_FAIL(dn_requires_grad_(s, true));
      dn_test_gradcheck("gather", gather_fn, k ? &c_nc : &c, 1, (dn_tensor *[]){x}, 1e-2, 1e-3, 1e-3);
      dn_test_gradcheck("scatter_add", scatter_add_fn, k ? &c_nc : &c, 2, (dn_tensor *[]){x, s}, 1e-2, 1e-3, 1e-3);
      /* one input at a time: the other gets no gradient */
      DN_OK_OR_FAIL(dn_requires_grad_(x, false));
      dn_test_gradcheck("scatter_add (src only)", scatter_add_fn, &c, 2, (dn_tensor *[]){x, s}, 1e-2, 1e-3, 1e-3);
    }
    RELEASE(a, a_nc, src, src_nc, index, index_nc);
  }
  /* src's gradient is 0 where index does not reach, and exact elsewhere: grad gathered */
  dn_tensor *a, *src = dn_test_random(130, 2, (int64_t[]){3, 3});
  dn_tensor *index = int_tensor(2, (int64_t[]){2, 2}, (int32_t[]){1, 1, 3, 3});
  DN_OK_OR_FAIL(dn_tensor_zeros(&a, DN_F32, 2, (int64_t[]){2, 3}));
  DN_OK_OR_FAIL(dn_requires_grad_(src, true));
  dn_tensor *out, *grad = dn_test_from(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
  DN_OK_OR_FAIL(dn_scatter_add(&out, a, 1, index, src, 1));
  DN_OK_OR_FAIL(dn_backward(out, grad, false));
  float want[] = {1, 1, 0, 6, 6, 0, 0, 0, 0};
  for (int i = 0; i < 9; i++) assert_true(dn_test_at(src->grad, i) == want[i]);
  RELEASE(a, src, index, out, grad);
}

/* --- errors --------------------------------------------------------------------------------- */

static void test_errors(void **state) {
  (void)state;
  dn_tensor *a = dn_test_random(140, 2, (int64_t[]){2, 3}), *out = (dn_tensor *)1;
  dn_tensor *flat = int_tensor(1, (int64_t[]){2}, (int32_t[]){0, 1});
  dn_tensor *high = int_tensor(2, (int64_t[]){2, 2}, (int32_t[]){0, 1, 3, 0});
  dn_tensor *wide = int_tensor(2, (int64_t[]){3, 1}, (int32_t[]){0, 1, 2});
  dn_tensor *ok = int_tensor(2, (int64_t[]){2, 2}, (int32_t[]){0, 1, 2, 0});
  dn_tensor *float_index = dn_test_from(2, (int64_t[]){1, 1}, (float[]){0});
  DN_EXPECT_ERROR(dn_gather(&out, a, 1, flat, 0), DN_ESHAPE, "gather: index has 1 dim, input has 2");
  assert_null(out);
  DN_EXPECT_ERROR(dn_gather(&out, a, 1, high, 0), DN_ERANGE,
                  "gather: index 3 at position 2 is out of range [0, 2] for a dim of size 3");
  DN_EXPECT_ERROR(dn_gather(&out, a, 1, ok, 1), DN_ERANGE, "gather: index 0 at position 1 is out of range [1, 3]");
  DN_EXPECT_ERROR(dn_gather(&out, a, 1, wide, 0), DN_ESHAPE,
                  "gather: index of shape [3,1] does not fit the input of shape [2,3] (it may be larger only along "
                  "the dim it indexes)");
  DN_EXPECT_ERROR(dn_gather(&out, a, 2, ok, 0), DN_EINVAL, "gather: dim 2 out of range for a 2-D tensor");
  DN_EXPECT_ERROR(dn_gather(&out, a, 1, float_index, 0), DN_ETYPE, "gather: index must be int32 (got float32)");

  dn_tensor *src = dn_test_random(141, 2, (int64_t[]){2, 2}), *small = dn_test_random(142, 2, (int64_t[]){2, 1});
  dn_tensor *vec = dn_test_random(143, 1, (int64_t[]){4}), *ints, *bytes;
  DN_OK_OR_FAIL(dn_tensor_zeros(&ints, DN_I32, 2, (int64_t[]){2, 2}));
  DN_OK_OR_FAIL(dn_tensor_zeros(&bytes, DN_U8, 2, (int64_t[]){2, 3}));
  DN_EXPECT_ERROR(dn_scatter_add(&out, a, 1, ok, small, 0), DN_ESHAPE,
                  "scatter_add: index of shape [2,2] is larger than src of shape [2,1]");
  DN_EXPECT_ERROR(dn_scatter_add(&out, a, 1, ok, vec, 0), DN_ESHAPE, "scatter_add: src has 1 dim, input has 2");
  DN_EXPECT_ERROR(dn_scatter_add(&out, a, 1, ok, ints, 0), DN_ETYPE,
                  "scatter_add: src is int32, input is float32 (they must match)");
  DN_EXPECT_ERROR(dn_scatter_add(&out, bytes, 1, ok, src, 0), DN_ETYPE,
                  "scatter_add: input must be float32 or int32 (got uint8)");
  DN_EXPECT_ERROR(dn_scatter_add(&out, a, 1, high, src, 0), DN_ERANGE, "scatter_add: index 3 at position 2");
  DN_EXPECT_ERROR(dn_scatter_add_(a, 1, high, src, 0), DN_ERANGE, "scatter_add_: index 3 at position 2");
  DN_EXPECT_ERROR(dn_scatter_add(&out, a, -3, ok, src, 0), DN_EINVAL, "scatter_add: dim -3 out of range");
  assert_null(out);
  /* an empty dim has no valid index */
  dn_tensor *empty = dn_test_random(144, 2, (int64_t[]){2, 0});
  DN_EXPECT_ERROR(dn_gather(&out, empty, 1, ok, 0), DN_ERANGE, "out of range (no valid index)");
  RELEASE(a, flat, high, wide, ok, float_index, src, small, vec, ints, bytes, empty);
}

int main(void) {
#define TEST(f) cmocka_unit_test_setup(f, dn_test_reset_modes)
  const struct CMUnitTest tests[] = {
    TEST(test_known_values),     TEST(test_gather_shapes_and_layouts), TEST(test_scatter_add_shapes_and_layouts),
    TEST(test_scatter_add_threads), TEST(test_scatter_add_int32),      TEST(test_scatter_add_in_place),
    TEST(test_gradients),        TEST(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
