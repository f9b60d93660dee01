/* Data augmentation (augment.c, the contract of augment.h) against a naive
   reference built on Philox: every crop offset and flip decision exactly,
   padding filled with exact zeros (or the fill value), the padded image
   itself when the crop is the padded size, the flip fraction, generator
   advance, layouts (3-D, 5-D, non-contiguous), empty batches, no autograd,
   the same bits for 1, 2, 3 and 4 threads, and every bad argument. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dropnet/augment.h"

static dn_rng make_rng(uint64_t seed, uint64_t offset) {
  dn_rng rng;
  dn_rng_seed(&rng, seed);
  rng.offset = offset;
  return rng;
}

/* float32 x [n, c, h, w] with x[n,c,i,j] = 1 + n*1e4 + c*1e3 + i*50 + j: every value distinct and nonzero. */
static dn_tensor *images(int64_t n, int64_t c, int64_t h, int64_t w) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_F32, 4, (int64_t[]){n, c, h, w}));
  float *p = dn_tensor_data(t);
  for (int64_t a = 0; a < n; a++)
    for (int64_t b = 0; b < c; b++)
      for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < w; j++) p[((a * c + b) * h + i) * w + j] = (float)(1 + a * 10000 + b * 1000 + i * 50 + j);
  return t;
}

/* The contract's draws of image n. */
static void ref_words(const dn_rng *rng, int64_t n, uint32_t w[4]) {
  dn_philox4x32(rng->seed, rng->offset + (uint64_t)n, DN_AUGMENT_STREAM, w);
}

static int64_t ref_position(uint32_t w, int64_t range) { return (int64_t)(((uint64_t)w * (uint64_t)range) >> 32); }

static bool ref_flipped(const dn_rng *rng, int64_t n, double p) {
  uint32_t w[4];
  ref_words(rng, n, w);
  return (double)(w[0] >> 8) * 0x1p-24 < p;
}

/* Naive crop of contiguous x [N, C, H, W] by the contract; top/left of each image in tops/lefts. */
static void ref_crop(const dn_tensor *x, const dn_rng *rng, int64_t oh, int64_t ow, int64_t ph, int64_t pw,
                     float fill, float *want, int64_t *tops, int64_t *lefts) {
  int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  const float *src = dn_tensor_data(x);
  for (int64_t n = 0; n < N; n++) {
    uint32_t w[4];
    ref_words(rng, n, w);
    int64_t top = ref_position(w[0], H + 2 * ph - oh + 1), left = ref_position(w[1], W + 2 * pw - ow + 1);
    if (tops) tops[n] = top;
    if (lefts) lefts[n] = left;
    for (int64_t c = 0; c < C; c++)
      for (int64_t i = 0; i < oh; i++)
        for (int64_t j = 0; j < ow; j++) {
          int64_t r = top + i - ph, s = left + j - pw;
          want[((n * C + c) * oh + i) * ow + j] = r >= 0 && r < H && s >= 0 && s < W
                                                     ? src[((n * C + c) * H + r) * W + s] : fill;
        }
  }
}

static bool bits_equal(const dn_tensor *a, const dn_tensor *b) {
  if (dn_tensor_numel(a) != dn_tensor_numel(b) || a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  for (int64_t i = 0; i < dn_tensor_numel(a); i++) {
    float x = (float)dn_test_at(a, i), y = (float)dn_test_at(b, i);
    if (memcmp(&x, &y, sizeof x)) return false;
  }
  return true;
}

static void assert_matches(const dn_tensor *got, const float *want, const char *what) {
  assert_true(dn_tensor_is_contiguous(got));
  const float *g = dn_tensor_data(got);
  for (int64_t i = 0; i < dn_tensor_numel(got); i++)
    if (memcmp(&g[i], &want[i], sizeof(float)))
      fail_msg("%s: element %lld is %.9g, expected %.9g", what, (long long)i, g[i], want[i]);
}

/* --- random_crop ------------------------------------------------------------------------------ */

static void test_crop_follows_contract(void **state) {
  (void)state;
  struct { int64_t n, c, h, w, oh, ow, ph, pw; float fill; } cases[] = {
    {9, 1, 28, 28, 28, 28, 2, 2, 0.0f},     /* Fashion-MNIST with padding 2 */
    {7, 3, 8, 10, 8, 10, 4, 4, 0.0f},       /* CIFAR-style padding 4 on a small image */
    {5, 2, 6, 7, 3, 4, 0, 0, 0.0f},         /* a smaller crop without padding */
    {6, 2, 5, 5, 7, 3, 1, 3, -0.81f},       /* asymmetric sizes and pads, a fill value */
    {4, 1, 3, 3, 9, 9, 3, 3, 0.0f},         /* the crop is the padded image */
    {4, 1, 2, 2, 4, 4, 5, 5, 0.0f},         /* padding wider than the image: crops of padding only */
    {300, 2, 12, 12, 12, 12, 2, 2, 0.0f},   /* parallel */
  };
  uint64_t offsets[] = {0, 0xFFFFFFFDull, UINT64_MAX - 2};   /* the block counter wraps */
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
    for (size_t o = 0; o < 3; o++) {
      __typeof__(cases[0]) c = cases[k];
      dn_tensor *x = images(c.n, c.c, c.h, c.w), *y;
      dn_rng rng = make_rng(0xC0FFEE + k, offsets[o]), before = rng;
      DN_OK_OR_FAIL(dn_random_crop(&y, x, c.oh, c.ow, c.ph, c.pw, c.fill, &rng));
      assert_true(rng.seed == before.seed && rng.offset == before.offset + (uint64_t)c.n);
      assert_int_equal(y->ndim, 4);
      assert_true(y->shape[0] == c.n && y->shape[1] == c.c && y->shape[2] == c.oh && y->shape[3] == c.ow);
      float *want = test_malloc((size_t)dn_tensor_numel(y) * sizeof(float));
      int64_t tops[300], lefts[300];
      ref_crop(x, &before, c.oh, c.ow, c.ph, c.pw, c.fill, want, tops, lefts);
      char what[64];
      snprintf(what, sizeof what, "case %zu offset %zu", k, o);
      assert_matches(y, want, what);
      /* each image's crop found back from its values: the offsets are exact, not merely consistent */
      const float *yd = dn_tensor_data(y);
      for (int64_t n = 0; n < c.n; n++) {
        assert_true(tops[n] >= 0 && tops[n] <= c.h + 2 * c.ph - c.oh);
        assert_true(lefts[n] >= 0 && lefts[n] <= c.w + 2 * c.pw - c.ow);
        for (int64_t i = 0; i < c.oh; i++)
          for (int64_t j = 0; j < c.ow; j++) {
            int64_t r = tops[n] + i - c.ph, s = lefts[n] + j - c.pw;
            float v = yd[((n * c.c) * c.oh + i) * c.ow + j];
            if (r >= 0 && r < c.h && s >= 0 && s < c.w) assert_true(v == (float)(1 + n * 10000 + r * 50 + s));
            else assert_true(v == c.fill);
          }
      }
      test_free(want);
      dn_tensor_release(x);
      dn_tensor_release(y);
    }
}

/* Padding is exact zeros: +0.0f bit patterns, and the crop of the padded size is the padded image. */
static void test_crop_padding_is_zeros(void **state) {
  (void)state;
  dn_tensor *x = images(3, 2, 4, 5), *y;
  dn_rng rng = make_rng(7, 0);
  DN_OK_OR_FAIL(dn_random_crop(&y, x, 8, 9, 2, 2, 0.0, &rng));
  const float *yd = dn_tensor_data(y), *xd = dn_tensor_data(x);
  uint32_t zero = 0;
  for (int64_t n = 0; n < 3; n++)
    for (int64_t c = 0; c < 2; c++)
      for (int64_t i = 0; i < 8; i++)
        for (int64_t j = 0; j < 9; j++) {
          const float *v = &yd[((n * 2 + c) * 8 + i) * 9 + j];
          if (i < 2 || i >= 6 || j < 2 || j >= 7) assert_memory_equal(v, &zero, sizeof zero);
          else assert_true(*v == xd[((n * 2 + c) * 4 + i - 2) * 5 + j - 2]);
        }
  dn_tensor_release(y);
  /* a -0.0 fill is kept as -0.0 */
  DN_OK_OR_FAIL(dn_random_crop(&y, x, 8, 9, 2, 2, -0.0, &rng));
  assert_true(signbit(((const float *)dn_tensor_data(y))[0]));
  dn_tensor_release(y);
  /* no padding and the full size: a copy of x whatever the draws */
  DN_OK_OR_FAIL(dn_random_crop(&y, x, 4, 5, 0, 0, 0.0, &rng));
  assert_true(bits_equal(x, y));
  assert_true(dn_tensor_data(y) != dn_tensor_data(x));
  dn_tensor_release(y);
  dn_tensor_release(x);
}

/* Every position of the padded image shows up, roughly equally often. */
static void test_crop_positions_uniform(void **state) {
  (void)state;
  int64_t n = 9000;
  dn_tensor *x = images(n, 1, 1, 1), *y;
  dn_rng rng = make_rng(11, 3);
  /* a 1x1 image padded by 1, cropped 1x1: 9 positions, the image at the centre */
  DN_OK_OR_FAIL(dn_random_crop(&y, x, 1, 1, 1, 1, 0.0, &rng));
  const float *yd = dn_tensor_data(y);
  int64_t centre = 0;
  for (int64_t i = 0; i < n; i++) centre += yd[i] != 0.0f;
  /* 1/9 of 9000 = 1000, sd ~30: within 6 sigma */
  assert_true(centre > 820 && centre < 1180);
  dn_tensor_release(y);
  dn_tensor_release(x);
}

/* --- random_hflip -------------------------------------------------------------------------------- */

static void test_flip_follows_contract(void **state) {
  (void)state;
  double ps[] = {0.0, 0.25, 0.5, 1.0, 0x1p-24, 1.0 - 0x1p-24};
  for (size_t q = 0; q < sizeof ps / sizeof *ps; q++) {
    int64_t N = 200, C = 2, H = 3, W = 5;
    dn_tensor *x = images(N, C, H, W), *y;
    dn_rng rng = make_rng(99 + q, 0xFFFFFFF0ull), before = rng;
    DN_OK_OR_FAIL(dn_random_hflip(&y, x, ps[q], &rng));
    assert_true(rng.offset == before.offset + (uint64_t)N);
    assert_true(y->ndim == 4 && y->shape[3] == W);
    const float *xd = dn_tensor_data(x), *yd = dn_tensor_data(y);
    int64_t flipped = 0;
    for (int64_t n = 0; n < N; n++) {
      bool f = ref_flipped(&before, n, ps[q]);
      flipped += f;
      for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < H; i++)
          for (int64_t j = 0; j < W; j++) {
            int64_t base = ((n * C + c) * H + i) * W;
            float want = xd[base + (f ? W - 1 - j : j)];
            if (memcmp(&yd[base + j], &want, sizeof want))
              fail_msg("p=%g image %lld (%s): %.9g, expected %.9g", ps[q], (long long)n, f ? "flipped" : "kept",
                       yd[base + j], want);
          }
    }
    if (ps[q] == 0.0) assert_int_equal(flipped, 0);
    if (ps[q] == 1.0) assert_int_equal(flipped, N);
    dn_tensor_release(x);
    dn_tensor_release(y);
  }
}

static void test_flip_fraction(void **state) {
  (void)state;
  int64_t N = 20000;
  dn_tensor *x, *y;   /* every image is the row {0, 1} */
  DN_OK_OR_FAIL(dn_tensor_new(&x, DN_F32, 4, (int64_t[]){N, 1, 1, 2}));
  for (int64_t n = 0; n < N; n++) {
    ((float *)dn_tensor_data(x))[2 * n] = 0.0f;
    ((float *)dn_tensor_data(x))[2 * n + 1] = 1.0f;
  }
  dn_rng rng = make_rng(5, 0);
  DN_OK_OR_FAIL(dn_random_hflip(&y, x, 0.3, &rng));
  const float *yd = dn_tensor_data(y);
  int64_t flipped = 0;
  for (int64_t n = 0; n < N; n++) flipped += yd[2 * n] > yd[2 * n + 1];
  /* 6000 expected, sd ~65 */
  assert_true(flipped > 5600 && flipped < 6400);
  dn_tensor_release(y);
  dn_tensor_release(x);
}

/* Successive calls draw fresh choices; a saved state replays them. */
static void test_draws_differ_and_repeat(void **state) {
  (void)state;
  dn_tensor *x = images(64, 1, 6, 6), *a, *b, *c;
  dn_rng rng = make_rng(3, 0), saved = rng;
  DN_OK_OR_FAIL(dn_random_crop(&a, x, 6, 6, 2, 2, 0.0, &rng));
  DN_OK_OR_FAIL(dn_random_crop(&b, x, 6, 6, 2, 2, 0.0, &rng));
  assert_false(bits_equal(a, b));
  DN_OK_OR_FAIL(dn_random_crop(&c, x, 6, 6, 2, 2, 0.0, &saved));
  assert_true(bits_equal(a, c));
  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(c);
  dn_tensor_release(x);
}

/* --- layouts, empty batches, autograd --------------------------------------------------------------- */

static void test_layouts(void **state) {
  (void)state;
  dn_tensor *x = images(4, 3, 6, 5), *y, *z;
  /* non-contiguous: a transposed copy viewed back gives the same result */
  dn_tensor *nc = dn_test_noncontiguous(x);
  assert_false(dn_tensor_is_contiguous(nc));
  dn_rng r1 = make_rng(8, 0), r2 = r1;
  DN_OK_OR_FAIL(dn_random_crop(&y, x, 5, 4, 1, 2, 0.0, &r1));
  DN_OK_OR_FAIL(dn_random_crop(&z, nc, 5, 4, 1, 2, 0.0, &r2));
  assert_true(bits_equal(y, z));
  dn_tensor_release(y);
  dn_tensor_release(z);
  DN_OK_OR_FAIL(dn_random_hflip(&y, x, 0.5, &r1));
  DN_OK_OR_FAIL(dn_random_hflip(&z, nc, 0.5, &r2));
  assert_true(bits_equal(y, z));
  dn_tensor_release(y);
  dn_tensor_release(z);
  /* [N, H, W] and [N, 3, 1, H, W]: the dims between N and H are channels, cropped alike */
  dn_tensor *x3, *x5;
  DN_OK_OR_FAIL(dn_view(&x3, x, 3, (int64_t[]){12, 6, 5}));
  DN_OK_OR_FAIL(dn_view(&x5, x, 5, (int64_t[]){4, 3, 1, 6, 5}));
  dn_rng r3 = make_rng(9, 0), r4 = r3, r5 = r3;
  DN_OK_OR_FAIL(dn_random_crop(&y, x3, 4, 4, 1, 1, 0.0, &r3));
  assert_true(y->ndim == 3 && y->shape[0] == 12 && y->shape[1] == 4 && y->shape[2] == 4);
  float want[12 * 16];
  dn_tensor *x3as4;
  DN_OK_OR_FAIL(dn_view(&x3as4, x, 4, (int64_t[]){12, 1, 6, 5}));
  ref_crop(x3as4, &r4, 4, 4, 1, 1, 0.0f, want, NULL, NULL);
  assert_matches(y, want, "[N, H, W]");
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_random_crop(&y, x5, 4, 4, 1, 1, 0.0, &r5));
  assert_true(y->ndim == 5 && y->shape[1] == 3 && y->shape[2] == 1);
  float want5[4 * 3 * 16];
  dn_rng r6 = make_rng(9, 0);
  ref_crop(x, &r6, 4, 4, 1, 1, 0.0f, want5, NULL, NULL);
  assert_matches(y, want5, "[N, 3, 1, H, W]");
  dn_tensor_release(y);
  dn_tensor_release(x3);
  dn_tensor_release(x3as4);
  dn_tensor_release(x5);
  dn_tensor_release(nc);
  dn_tensor_release(x);
}

static void test_empty_and_no_grad(void **state) {
  (void)state;
  dn_tensor *x, *y;
  /* no images: an empty result, the generator unmoved */
  DN_OK_OR_FAIL(dn_tensor_zeros(&x, DN_F32, 4, (int64_t[]){0, 1, 28, 28}));
  dn_rng rng = make_rng(1, 5);
  DN_OK_OR_FAIL(dn_random_crop(&y, x, 24, 24, 0, 0, 0.0, &rng));
  assert_true(y->shape[0] == 0 && y->shape[2] == 24 && rng.offset == 5);
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_random_hflip(&y, x, 0.5, &rng));
  assert_true(y->shape[0] == 0 && rng.offset == 5);
  dn_tensor_release(y);
  dn_tensor_release(x);
  /* no channels: nothing to copy, but each image still draws */
  DN_OK_OR_FAIL(dn_tensor_zeros(&x, DN_F32, 4, (int64_t[]){3, 0, 4, 4}));
  DN_OK_OR_FAIL(dn_random_crop(&y, x, 2, 2, 0, 0, 0.0, &rng));
  assert_true(dn_tensor_numel(y) == 0 && rng.offset == 8);
  dn_tensor_release(y);
  dn_tensor_release(x);
  /* images of height 0: the crops are all padding */
  DN_OK_OR_FAIL(dn_tensor_zeros(&x, DN_F32, 4, (int64_t[]){2, 1, 0, 3}));
  DN_OK_OR_FAIL(dn_random_crop(&y, x, 2, 3, 1, 0, 7.0, &rng));
  for (int64_t i = 0; i < 12; i++) assert_true(dn_test_at(y, i) == 7.0);
  dn_tensor_release(y);
  dn_tensor_release(x);
  /* a data transform: the result never requires grad */
  x = images(2, 1, 4, 4);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_random_crop(&y, x, 4, 4, 1, 1, 0.0, &rng));
  assert_false(y->requires_grad);
  assert_null(dn_grad_fn_name(y));
  dn_tensor_release(y);
  DN_OK_OR_FAIL(dn_random_hflip(&y, x, 1.0, &rng));
  assert_false(y->requires_grad);
  dn_tensor_release(y);
  dn_tensor_release(x);
}

/* --- threads ------------------------------------------------------------------------------------------ */

static void test_threads_bit_identical(void **state) {
  (void)state;
  dn_tensor *x = images(256, 3, 32, 32);
  int threads = dn_get_num_threads();
  dn_tensor *crops[4], *flips[4];
  for (int t = 1; t <= 4; t++) {
    DN_OK_OR_FAIL(dn_set_num_threads(t));
    dn_rng rng = make_rng(42, 1000);
    DN_OK_OR_FAIL(dn_random_crop(&crops[t - 1], x, 32, 32, 4, 4, 0.0, &rng));
    DN_OK_OR_FAIL(dn_random_hflip(&flips[t - 1], crops[t - 1], 0.5, &rng));
    assert_true(rng.offset == 1000 + 2 * 256);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
  for (int t = 2; t <= 4; t++) {
    if (!bits_equal(crops[0], crops[t - 1])) fail_msg("crops differ between 1 and %d threads", t);
    if (!bits_equal(flips[0], flips[t - 1])) fail_msg("flips differ between 1 and %d threads", t);
  }
  for (int t = 0; t < 4; t++) {
    dn_tensor_release(crops[t]);
    dn_tensor_release(flips[t]);
  }
  dn_tensor_release(x);
}

/* --- errors --------------------------------------------------------------------------------------------- */

static void test_errors(void **state) {
  (void)state;
  dn_tensor *x = images(2, 1, 4, 4), *flat, *ints, *out = (dn_tensor *)1;
  DN_OK_OR_FAIL(dn_view(&flat, x, 2, (int64_t[]){2, 16}));
  DN_OK_OR_FAIL(dn_to_dtype(&ints, x, DN_I32));
  dn_rng rng = make_rng(1, 0), before = rng;
  DN_EXPECT_ERROR(dn_random_crop(&out, flat, 4, 4, 0, 0, 0, &rng), DN_ESHAPE,
                  "random_crop: x must be a batch of images [N, C, H, W] or [N, H, W] (got shape [2,16])");
  assert_null(out);
  DN_EXPECT_ERROR(dn_random_crop(&out, ints, 4, 4, 0, 0, 0, &rng), DN_ETYPE, "random_crop: x must be float32 (got int32)");
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 4, 4, 0, 0, 0, NULL), DN_EINVAL, "random_crop: generator is NULL");
  DN_EXPECT_ERROR(dn_random_crop(&out, NULL, 4, 4, 0, 0, 0, &rng), DN_EINVAL, "random_crop: x is NULL");
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 7, 4, 1, 1, 0, &rng), DN_ESHAPE,
                  "random_crop: crop size 7x4 must be at least 1x1 and at most the padded image 6x6 "
                  "(x [2,1,4,4], padding 1x1)");
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 0, 4, 0, 0, 0, &rng), DN_ESHAPE, "crop size 0x4");
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 4, -1, 0, 0, 0, &rng), DN_ESHAPE, "crop size 4x-1");
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 4, 4, -1, 0, 0, &rng), DN_EINVAL,
                  "random_crop: padding -1x0 must be in [0, 2147483647]");
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 4, 4, 0, (int64_t)1 << 40, 0, &rng), DN_EINVAL, "padding 0x1099511627776");
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 4, 4, 0, INT32_MAX, 0, &rng), DN_ESHAPE,
                  "random_crop: the padded image 4x4294967298 (x [2,1,4,4], padding 0x2147483647) has a side longer");
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 4, 4, 0, 0, NAN, &rng), DN_EINVAL,
                  "random_crop: fill must be a finite float32 value (got nan)");
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 4, 4, 0, 0, 1e39, &rng), DN_EINVAL, "fill must be a finite float32 value");
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 4, 4, 0, 0, -INFINITY, &rng), DN_EINVAL, "(got -inf)");
  /* a crop too big to allocate is refused naming the op */
  DN_EXPECT_ERROR(dn_random_crop(&out, x, 1 << 30, 1 << 30, 1 << 29, 1 << 29, 0, &rng), DN_EINVAL,
                  "random_crop: shape [2,1,1073741824,1073741824]");
  DN_EXPECT_ERROR(dn_random_hflip(&out, flat, 0.5, &rng), DN_ESHAPE, "random_hflip: x must be a batch of images");
  DN_EXPECT_ERROR(dn_random_hflip(&out, ints, 0.5, &rng), DN_ETYPE, "random_hflip: x must be float32 (got int32)");
  DN_EXPECT_ERROR(dn_random_hflip(&out, x, 1.5, &rng), DN_EINVAL, "random_hflip: p must be in [0, 1] (got 1.5)");
  DN_EXPECT_ERROR(dn_random_hflip(&out, x, -0.1, &rng), DN_EINVAL, "(got -0.1)");
  DN_EXPECT_ERROR(dn_random_hflip(&out, x, NAN, &rng), DN_EINVAL, "(got nan)");
  DN_EXPECT_ERROR(dn_random_hflip(&out, x, 0.5, NULL), DN_EINVAL, "random_hflip: generator is NULL");
  assert_null(out);
  /* a failed call draws nothing */
  assert_true(rng.offset == before.offset);
  dn_tensor_release(flat);
  dn_tensor_release(ints);
  dn_tensor_release(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_crop_follows_contract, dn_test_reset_modes),
    cmocka_unit_test_setup(test_crop_padding_is_zeros, dn_test_reset_modes),
    cmocka_unit_test_setup(test_crop_positions_uniform, dn_test_reset_modes),
    cmocka_unit_test_setup(test_flip_follows_contract, dn_test_reset_modes),
    cmocka_unit_test_setup(test_flip_fraction, dn_test_reset_modes),
    cmocka_unit_test_setup(test_draws_differ_and_repeat, dn_test_reset_modes),
    cmocka_unit_test_setup(test_layouts, dn_test_reset_modes),
    cmocka_unit_test_setup(test_empty_and_no_grad, dn_test_reset_modes),
    cmocka_unit_test_setup(test_threads_bit_identical, dn_test_reset_modes),
    cmocka_unit_test_setup(test_errors, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
