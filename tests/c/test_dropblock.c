/* DropBlock (dropblock.c): the contract of dropblock.h against a naive
   reference built from the raw Philox bits (testutil_dropout.c), the shape
   of the dropped regions (whole bs x bs blocks inside the map), the dropped
   fraction against its exact expectation, the normalisation, forward and
   backward with one mask, finite differences, the same bits for 1, 2 and 3
   threads, p = 0, p = 1, empty inputs and every bad argument. */
#include "testutil.h"
#include "testutil_dropout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dropnet/dropblock.h"
#include "graph.h"

/* --- reference: dropblock.h's contract, computed naively ------------------------------- */

/* gamma's threshold as the header states it (the formula written out again here) */
static uint32_t ref_block_threshold(double p, int64_t h, int64_t w, int64_t bs) {
  if (p >= 1.0) return 65536;
  double gamma = p * (double)(h * w) / ((double)(bs * bs) * (double)(h - bs + 1) * (double)(w - bs + 1));
  return (uint32_t)llround(gamma * 65536.0);
}

/* The keep mask (1 = kept) of `planes` h x w maps, malloc'd; *kept its ones. */
static uint8_t *ref_block_mask(const dn_rng *state, int64_t planes, int64_t h, int64_t w, int64_t bs, double p,
                               int64_t *kept) {
  int64_t n = planes * h * w, rows = h - bs + 1, cols = w - bs + 1;
  uint8_t *mask = malloc((size_t)(n > 0 ? n : 1));
  memset(mask, 1, (size_t)n);
  uint32_t threshold = ref_block_threshold(p, h, w, bs);
  for (int64_t plane = 0; plane < planes; plane++)
    for (int64_t i = 0; i < rows; i++)
      for (int64_t j = 0; j < cols; j++) {
        int64_t k = (plane * rows + i) * cols + j;
        if (ref_bits(state, k) >= threshold) continue;   /* no block anchored here */
        for (int64_t r = i; r < i + bs; r++)
          for (int64_t c = j; c < j + bs; c++) mask[(plane * h + r) * w + c] = 0;
      }
  *kept = 0;
  for (int64_t i = 0; i < n; i++) *kept += mask[i];
  return mask;
}

/* The scale of the contract: (float)(numel / kept), 0 when nothing is kept. */
static float ref_block_scale(int64_t numel, int64_t kept) {
  return kept ? (float)((double)numel / (double)kept) : 0.0f;
}

static int64_t numel_of(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  return n;
}

/* --- forward: the contract, bit for bit -------------------------------------------------- */

static void check_contract(int ndim, const int64_t *shape, int64_t bs, double p, uint64_t seed, uint64_t offset) {
  int64_t h = shape[ndim - 2], w = shape[ndim - 1], n = numel_of(ndim, shape), planes = n / (h * w);
  dn_tensor *x = nonzero_random(seed, ndim, shape), *y;
  dn_rng rng = make_rng(seed, offset), before = rng;
  DN_OK_OR_FAIL(dn_dropblock2d(&y, x, p, bs, &rng));
  /* the generator advanced by the anchor decisions, 8 per block */
  assert_true(rng.offset == before.offset + blocks(planes * (h - bs + 1) * (w - bs + 1), 8));
  int64_t kept;
  uint8_t *mask = ref_block_mask(&before, planes, h, w, bs, p, &kept);
  float scale = ref_block_scale(n, kept);
  for (int64_t i = 0; i < n; i++) {
    float want = mask[i] ? (float)dn_test_at(x, i) * scale : 0.0f, got = (float)dn_test_at(y, i);
    if (memcmp(&want, &got, sizeof want))
      fail_msg("shape %lldx%lld bs %lld p %g: element %lld is %.9g, expected %.9g (mask %d)", (long long)h,
               (long long)w, (long long)bs, p, (long long)i, got, want, mask[i]);
  }
  /* the inspection function gives the same mask without drawing */
  dn_tensor *m;
  dn_rng again = before;
  DN_OK_OR_FAIL(dn_dropblock2d_mask(&m, &again, ndim, shape, p, bs));
  assert_true(again.offset == before.offset);
  assert_int_equal(m->dtype, DN_U8);
  assert_memory_equal(dn_tensor_data(m), mask, (size_t)n);
  free(mask);
  dn_tensor_release(m);
  dn_tensor_release(y);
  dn_tensor_release(x);
}

static void test_contract(void **state) {
  (void)state;
  check_contract(4, (int64_t[]){2, 3, 7, 9}, 3, 0.3, 1, 0);
  check_contract(4, (int64_t[]){2, 3, 7, 9}, 4, 0.5, 2, 12345);   /* even block size */
  check_contract(4, (int64_t[]){3, 4, 5, 8}, 5, 0.4, 3, 7);       /* bs = min(H, W): one row of anchors */
  check_contract(4, (int64_t[]){2, 2, 6, 6}, 6, 0.5, 4, 0);       /* bs = H = W: whole planes, gamma = p */
  check_contract(4, (int64_t[]){2, 5, 11, 3}, 1, 0.25, 5, 99);    /* bs = 1: element dropout */
  check_contract(3, (int64_t[]){5, 13, 17}, 3, 0.2, 6, 3);        /* unbatched [C, H, W] */
  check_contract(4, (int64_t[]){1, 2, 40, 300}, 7, 0.35, 7, 0);   /* rows longer than a window of decisions */
  check_contract(4, (int64_t[]){1, 1, 3, 5000}, 2, 0.3, 8, 0);    /* a row of 4999 anchors: several windows */
  check_contract(4, (int64_t[]){1, 1, 3, 5000}, 3, 0.999, 9, 0);  /* most anchors placed */
}

static void test_unbatched_and_views(void **state) {
  (void)state;
  /* [C, H, W] is [1, C, H, W]: the same values and advance */
  dn_tensor *x = nonzero_random(1, 3, (int64_t[]){4, 10, 12}), *x4, *y, *y4;
  DN_OK_OR_FAIL(dn_unsqueeze(&x4, x, 0));
  dn_rng a = make_rng(21, 5), b = a;
  DN_OK_OR_FAIL(dn_dropblock2d(&y, x, 0.3, 3, &a));
  DN_OK_OR_FAIL(dn_dropblock2d(&y4, x4, 0.3, 3, &b));
  assert_int_equal(y->ndim, 3);
  assert_int_equal(y4->ndim, 4);
  assert_memory_equal(dn_tensor_data(y), dn_tensor_data(y4), (size_t)dn_tensor_numel(y) * sizeof(float));
  assert_true(a.offset == b.offset);
  /* a non-contiguous input gives the values of its contiguous copy */
  dn_tensor *base = nonzero_random(2, 4, (int64_t[]){2, 3, 9, 8}), *nc = dn_test_noncontiguous(base), *yb, *yn;
  assert_false(dn_tensor_is_contiguous(nc));
  dn_rng c = make_rng(22, 0), d = c;
  DN_OK_OR_FAIL(dn_dropblock2d(&yb, base, 0.4, 2, &c));
  DN_OK_OR_FAIL(dn_dropblock2d(&yn, nc, 0.4, 2, &d));
  assert_true(bits_equal(yb, yn));
  assert_true(dn_tensor_is_contiguous(yn));
  dn_tensor *list[] = {x, x4, y, y4, base, nc, yb, yn};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* --- the dropped regions: whole blocks inside the map ------------------------------------ */

/*
** From the mask alone: every dropped element lies in some bs x bs block of
** dropped elements that is entirely inside the map (anchored at (i, j) with
** 0 <= i <= H - bs, 0 <= j <= W - bs). A kernel that dropped single
** elements, clipped blocks at the border or shifted them off the map fails.
** Returns false with the first element that is not so covered in *bad.
*/
static bool union_of_blocks(const uint8_t *keep, int64_t planes, int64_t h, int64_t w, int64_t bs, int64_t *bad) {
  for (int64_t plane = 0; plane < planes; plane++) {
    const uint8_t *m = keep + plane * h * w;
    for (int64_t r = 0; r < h; r++)
      for (int64_t c = 0; c < w; c++) {
        if (m[r * w + c]) continue;
        bool covered = false;
        int64_t i0 = r - bs + 1 > 0 ? r - bs + 1 : 0, i1 = r < h - bs ? r : h - bs;
        int64_t j0 = c - bs + 1 > 0 ? c - bs + 1 : 0, j1 = c < w - bs ? c : w - bs;
        for (int64_t i = i0; i <= i1 && !covered; i++)
          for (int64_t j = j0; j <= j1 && !covered; j++) {
            bool whole = true;
            for (int64_t a = i; a < i + bs && whole; a++)
              for (int64_t b = j; b < j + bs && whole; b++) whole = !m[a * w + b];
            covered = whole;
          }
        if (!covered) {
          *bad = (plane * h + r) * w + c;
          return false;
        }
      }
  }
  return true;
}

static void test_dropped_regions_are_whole_blocks(void **state) {
  (void)state;
  struct {
    int64_t shape[4], bs;
    double p;
  } cases[] = {
    {{4, 8, 20, 20}, 3, 0.2}, {{4, 8, 17, 23}, 4, 0.3}, {{2, 8, 12, 31}, 5, 0.5},
    {{2, 4, 9, 9}, 9, 0.5},   {{2, 4, 30, 30}, 7, 0.9},
  };
  for (size_t q = 0; q < sizeof cases / sizeof *cases; q++) {
    const int64_t *shape = cases[q].shape;
    int64_t h = shape[2], w = shape[3], planes = shape[0] * shape[1], n = planes * h * w, bs = cases[q].bs;
    /* through the op itself: a nonzero input, so a 0 output means dropped */
    dn_tensor *x = nonzero_random(q, 4, shape), *y;
    dn_rng rng = make_rng(300 + q, 0);
    DN_OK_OR_FAIL(dn_dropblock2d(&y, x, cases[q].p, bs, &rng));
    uint8_t *keep = malloc((size_t)n);
    int64_t dropped = 0;
    for (int64_t i = 0; i < n; i++) {
      keep[i] = dn_test_at(y, i) != 0;
      dropped += !keep[i];
    }
    assert_true(dropped > 0 && dropped < n);
    int64_t bad;
    if (!union_of_blocks(keep, planes, h, w, bs, &bad))
      fail_msg("bs %lld: dropped element %lld is in no whole %lldx%lld block inside the map", (long long)bs,
               (long long)bad, (long long)bs, (long long)bs);
    free(keep);
    dn_tensor_release(y);
    dn_tensor_release(x);
  }
  /* the check can fail: a lone dropped element, and a block clipped by the border */
  uint8_t map[36];
  int64_t bad;
  memset(map, 1, sizeof map);
  map[14] = 0;
  assert_false(union_of_blocks(map, 1, 6, 6, 2, &bad));
  assert_int_equal(bad, 14);
  assert_true(union_of_blocks(map, 1, 6, 6, 1, &bad));
  memset(map, 1, sizeof map);
  map[0] = map[1] = map[6] = map[7] = 0;   /* 2x2 in the corner: bs 3 would need it to extend past the border */
  assert_true(union_of_blocks(map, 1, 6, 6, 2, &bad));
  assert_false(union_of_blocks(map, 1, 6, 6, 3, &bad));
}

/* --- statistics: the dropped fraction and the normalisation ------------------------------ */

/*
** The exact expected dropped fraction: element (r, c) is covered by
** n_r * n_c anchors (n_r = anchors i with i <= r < i + bs), each a block with
** probability q, so it is dropped with probability 1 - (1 - q)^(n_r n_c).
*/
static double expected_dropped(int64_t h, int64_t w, int64_t bs, double q) {
  double sum = 0;
  for (int64_t r = 0; r < h; r++)
    for (int64_t c = 0; c < w; c++) {
      int64_t nr = (r < h - bs ? r : h - bs) - (r - bs + 1 > 0 ? r - bs + 1 : 0) + 1;
      int64_t nc = (c < w - bs ? c : w - bs) - (c - bs + 1 > 0 ? c - bs + 1 : 0) + 1;
      sum += 1 - pow(1 - q, (double)(nr * nc));
    }
  return sum / (double)(h * w);
}

/*
** Dropped elements over `planes` planes against their expectation, within 6
** standard deviations. The bound on the standard deviation is Efron-Stein's:
** the dropped count of a plane is a function of m independent anchors, each
** changing it by at most bs^2, so its variance is <= m q (1 - q) bs^4; planes
** are independent.
*/
static void check_fraction(int64_t n_batch, int64_t channels, int64_t h, int64_t w, int64_t bs, double p,
                           uint64_t seed) {
  int64_t shape[4] = {n_batch, channels, h, w}, planes = n_batch * channels, n = planes * h * w;
  dn_tensor *ones = filled(4, shape, 1.0), *y;
  dn_rng rng = make_rng(seed, 0);
  DN_OK_OR_FAIL(dn_dropblock2d(&y, ones, p, bs, &rng));
  const float *yd = dn_tensor_data(y);
  int64_t dropped = 0;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    dropped += yd[i] == 0.0f;
    sum += yd[i];
  }
  double q = ref_block_threshold(p, h, w, bs) / 65536.0;
  double m = (double)((h - bs + 1) * (w - bs + 1)), mean = (double)n * expected_dropped(h, w, bs, q);
  double sd = sqrt((double)planes * m * q * (1 - q)) * (double)(bs * bs);
  if (fabs((double)dropped - mean) > SIGMAS * sd)
    fail_msg("%lldx%lld bs %lld p %g: %lld dropped of %lld, expected %.1f +- %.1f (6 sd)", (long long)h, (long long)w,
             (long long)bs, p, (long long)dropped, (long long)n, mean, SIGMAS * sd);
  /* the normalisation: the kept values sum to numel (each is numel / kept) */
  float scale = ref_block_scale(n, n - dropped);
  for (int64_t i = 0; i < n; i++) assert_true(yd[i] == 0.0f || yd[i] == scale);
  assert_true(fabs(sum / (double)n - 1.0) <= 1e-6);
  dn_tensor_release(y);
  dn_tensor_release(ones);
}

static void test_dropped_fraction(void **state) {
  (void)state;
  /* bs = 1 is element dropout with gamma = p: the dropped count is binomial */
  {
    int64_t shape[4] = {16, 64, 32, 32}, n = 16 * 64 * 32 * 32;
    dn_tensor *ones = filled(4, shape, 1.0), *y;
    dn_rng rng = make_rng(41, 0);
    DN_OK_OR_FAIL(dn_dropblock2d(&y, ones, 0.1, 1, &rng));
    int64_t dropped = 0;
    for (int64_t i = 0; i < n; i++) dropped += dn_test_at(y, i) == 0;
    double q = ref_threshold(0.1) / 65536.0;
    assert_true(fabs((double)dropped - (double)n * q) <= SIGMAS * sqrt((double)n * q * (1 - q)));
    dn_tensor_release(y);
    dn_tensor_release(ones);
  }
  /* the paper's case and non-square maps (H and W enter gamma apart) */
  check_fraction(32, 256, 28, 28, 3, 0.1, 42);
  check_fraction(32, 64, 12, 40, 5, 0.2, 43);
  check_fraction(8, 128, 16, 16, 7, 0.3, 44);
  /* the fraction is p to first order: a little less, from overlapping blocks */
  double q = ref_block_threshold(0.1, 28, 28, 3) / 65536.0, e = expected_dropped(28, 28, 3, q);
  assert_true(e > 0.09 && e < 0.1);
}

/* --- backward: the same mask ------------------------------------------------------------- */

static void test_backward_uses_forward_mask(void **state) {
  (void)state;
  int64_t shape[4] = {3, 5, 14, 15}, n = 3 * 5 * 14 * 15;
  /* grad of sum(y): scale where y was kept, 0 where dropped (y / x's pattern) */
  dn_tensor *x = leaf(nonzero_random(1, 4, shape)), *ones = filled(4, shape, 1.0), *y;
  dn_rng rng = make_rng(51, 2), before = rng;
  DN_OK_OR_FAIL(dn_dropblock2d(&y, x, 0.3, 3, &rng));
  assert_string_equal(dn_grad_fn_name(y), "dropblock2d");
  /* the node keeps no tensor: the mask is regenerated */
  for (int s = 0; s < DN_NODE_SAVED; s++) assert_null(y->grad_fn->saved[s]);
  assert_int_equal(dn_dropout_saved_mask_bytes(y), 0);
  DN_OK_OR_FAIL(dn_backward(y, ones, true));
  int64_t kept;
  uint8_t *mask = ref_block_mask(&before, 15, 14, 15, 3, 0.3, &kept);
  float scale = ref_block_scale(n, kept);
  assert_true(kept > 0 && kept < n);
  for (int64_t i = 0; i < n; i++) {
    float gx = (float)dn_test_at(x->grad, i), yv = (float)dn_test_at(y, i), xv = (float)dn_test_at(x, i);
    assert_true(gx == (mask[i] ? scale : 0.0f));
    assert_true(yv == xv * gx);   /* y = x * d sum(y) / dx */
  }
  /* any gradient: dx = g * mask * scale, bit for bit, though the generator moved on */
  dn_tensor *other, *g = dn_test_random(52, 4, shape);
  DN_OK_OR_FAIL(dn_dropblock2d(&other, x, 0.3, 3, &rng));   /* a later draw in between */
  dn_tensor_release(other);
  dn_tensor_release(x->grad);
  x->grad = NULL;
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  for (int64_t i = 0; i < n; i++) {
    float want = mask[i] ? (float)dn_test_at(g, i) * scale : 0.0f, got = (float)dn_test_at(x->grad, i);
    if (memcmp(&want, &got, sizeof want)) fail_msg("[%lld]: %.9g, expected %.9g", (long long)i, got, want);
  }
  free(mask);
  /* a non-contiguous (expanded) gradient */
  dn_tensor *one = filled(0, NULL, 1.0), *expanded, *y2, *x2 = leaf(nonzero_random(3, 4, shape));
  DN_OK_OR_FAIL(dn_broadcast_to(&expanded, one, 4, shape));
  DN_OK_OR_FAIL(dn_dropblock2d(&y2, x2, 0.3, 3, &rng));
  DN_OK_OR_FAIL(dn_backward(y2, expanded, false));
  for (int64_t i = 0; i < n; i++)
    assert_true((dn_test_at(y2, i) != 0) == (dn_test_at(x2->grad, i) != 0));
  /* no node under no_grad */
  bool previous = dn_set_grad_enabled(false);
  dn_tensor *y3;
  DN_OK_OR_FAIL(dn_dropblock2d(&y3, x2, 0.3, 3, &rng));
  dn_set_grad_enabled(previous);
  assert_null(y3->grad_fn);
  dn_tensor *list[] = {x, ones, y, g, one, expanded, y2, x2, y3};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* --- finite differences with a fixed generator state ------------------------------------- */

typedef struct fd_case {
  dn_rng state;
  double p;
  int64_t bs;
} fd_case;

static dn_status fd_dropblock(dn_tensor **out, dn_tensor *const *in, const void *ctx) {
  const fd_case *c = ctx;
  dn_rng rng = c->state;   /* every evaluation draws the same mask */
  return dn_dropblock2d(out, in[0], c->p, c->bs, &rng);
}

static void test_gradcheck(void **state) {
  (void)state;
  struct {
    int ndim;
    int64_t shape[4];
    fd_case c;
  } cases[] = {
    {4, {2, 3, 6, 7}, {{.seed = 2718, .offset = 3}, 0.4, 3}},
    {4, {1, 2, 5, 5}, {{.seed = 2719, .offset = 0}, 0.5, 2}},
    {3, {3, 4, 6}, {{.seed = 2720, .offset = 1}, 0.3, 4}},
  };
  for (size_t q = 0; q < sizeof cases / sizeof *cases; q++) {
    dn_tensor *x = leaf(dn_test_random(q, cases[q].ndim, cases[q].shape));
    dn_test_gradcheck("dropblock2d", fd_dropblock, &cases[q].c, 1, &x, 1e-2, 1e-3, 1e-3);
    dn_tensor_release(x);
  }
}

/* --- threads ------------------------------------------------------------------------------ */

static void run_threads(int threads, dn_tensor **y, dn_tensor **dx, dn_tensor **mask) {
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
  int64_t shape[4] = {8, 32, 40, 41};
  dn_tensor *x = leaf(dn_test_random(61, 4, shape)), *g = dn_test_random(62, 4, shape);
  dn_rng rng = make_rng(63, 0xFFFFFFF0ull), before = rng;
  DN_OK_OR_FAIL(dn_dropblock2d(y, x, 0.37, 7, &rng));
  DN_OK_OR_FAIL(dn_backward(*y, g, false));
  *dx = dn_tensor_retain(x->grad);
  DN_OK_OR_FAIL(dn_dropblock2d_mask(mask, &before, 4, shape, 0.37, 7));
  dn_tensor_release(x);
  dn_tensor_release(g);
}

static void test_threads_bit_identical(void **state) {
  (void)state;
  int threads = dn_get_num_threads();
  dn_tensor *y[3], *dx[3], *mask[3];
  for (int t = 0; t < 3; t++) run_threads(t + 1, &y[t], &dx[t], &mask[t]);
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
  int64_t n = dn_tensor_numel(mask[0]);
  for (int t = 1; t < 3; t++) {
    if (!bits_equal(y[0], y[t])) fail_msg("outputs differ between 1 and %d threads", t + 1);
    if (!bits_equal(dx[0], dx[t])) fail_msg("gradients differ between 1 and %d threads", t + 1);
    if (memcmp(dn_tensor_data(mask[0]), dn_tensor_data(mask[t]), (size_t)n))
      fail_msg("masks differ between 1 and %d threads", t + 1);
  }
  for (int t = 0; t < 3; t++) {
    dn_tensor_release(y[t]);
    dn_tensor_release(dx[t]);
    dn_tensor_release(mask[t]);
  }
}

/* --- p = 0, p = 1, empty -------------------------------------------------------------------- */

static void test_p0_and_p1(void **state) {
  (void)state;
  int64_t shape[4] = {2, 3, 8, 9};
  dn_tensor *x = leaf(dn_test_random(71, 4, shape)), *y;
  dn_rng rng = make_rng(1, 7);
  /* p = 0: x itself, no draw (eval mode is the caller's identity, like dropout's inverted eval) */
  DN_OK_OR_FAIL(dn_dropblock2d(&y, x, 0.0, 3, &rng));
  assert_ptr_equal(y, x);
  assert_true(rng.offset == 7);
  dn_tensor_release(y);
  /* p = 1: zeros and zero gradients (inf and NaN too: a select), the usual advance */
  float *xd = dn_tensor_data(x);
  xd[0] = INFINITY;
  xd[40] = NAN;
  int64_t bss[] = {1, 3, 8};
  for (int b = 0; b < 3; b++) {
    dn_rng r = make_rng(2, 0);
    dn_tensor *g = dn_test_random(72, 4, shape);
    DN_OK_OR_FAIL(dn_dropblock2d(&y, x, 1.0, bss[b], &r));
    assert_true(r.offset == blocks(6 * (8 - bss[b] + 1) * (9 - bss[b] + 1), 8));
    DN_OK_OR_FAIL(dn_backward(y, g, false));
    for (int64_t i = 0; i < dn_tensor_numel(y); i++) {
      assert_true(dn_test_at(y, i) == 0.0 && !signbit(dn_test_at(y, i)));
      assert_true(dn_test_at(x->grad, i) == 0.0);
    }
    dn_tensor_release(x->grad);
    x->grad = NULL;
    dn_tensor_release(y);
    dn_tensor_release(g);
    dn_tensor *m;
    DN_OK_OR_FAIL(dn_dropblock2d_mask(&m, &r, 4, shape, 1.0, bss[b]));
    for (int64_t i = 0; i < dn_tensor_numel(m); i++) assert_true(dn_test_at(m, i) == 0);
    dn_tensor_release(m);
  }
  /* p = 0 mask: all kept */
  dn_tensor *m;
  DN_OK_OR_FAIL(dn_dropblock2d_mask(&m, &rng, 4, shape, 0.0, 3));
  for (int64_t i = 0; i < dn_tensor_numel(m); i++) assert_true(dn_test_at(m, i) == 1);
  dn_tensor_release(m);
  /* an empty batch: an empty result, nothing drawn */
  dn_tensor *e = filled(4, (int64_t[]){0, 3, 5, 5}, 1.0), *ye;
  dn_rng r = make_rng(3, 10);
  DN_OK_OR_FAIL(dn_dropblock2d(&ye, e, 0.5, 2, &r));
  assert_int_equal(dn_tensor_numel(ye), 0);
  assert_int_equal(ye->ndim, 4);
  assert_true(r.offset == 10);
  dn_tensor_release(ye);
  dn_tensor_release(e);
  dn_tensor_release(x);
}

/* bs = 1 draws dn_dropout's decisions: the same mask as dn_dropout_mask at p */
static void test_block_size_one_is_dropout_mask(void **state) {
  (void)state;
  int64_t shape[4] = {3, 4, 10, 11};
  dn_rng rng = make_rng(81, 4);
  dn_tensor *a, *b;
  DN_OK_OR_FAIL(dn_dropblock2d_mask(&a, &rng, 4, shape, 0.35, 1));
  DN_OK_OR_FAIL(dn_dropout_mask(&b, &rng, 4, shape, 0.35));
  assert_memory_equal(dn_tensor_data(a), dn_tensor_data(b), (size_t)dn_tensor_numel(a));
  dn_tensor_release(a);
  dn_tensor_release(b);
}

/* --- bad inputs ----------------------------------------------------------------------------- */

static void test_bad_inputs(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 4, (int64_t[]){2, 3, 4, 6}), *y = NULL, *xi;
  DN_OK_OR_FAIL(dn_tensor_zeros(&xi, DN_I32, 4, (int64_t[]){2, 3, 4, 6}));
  dn_tensor *m2 = dn_test_random(2, 2, (int64_t[]){4, 6}), *m5 = dn_test_random(3, 5, (int64_t[]){1, 2, 3, 4, 6});
  dn_rng rng = make_rng(1, 0);
  double bad_p[] = {-0.1, 1.5, NAN, INFINITY};
  for (int q = 0; q < 4; q++) {
    y = x;
    DN_EXPECT_ERROR(dn_dropblock2d(&y, x, bad_p[q], 3, &rng), DN_EINVAL, "dropblock2d: p must be in [0, 1]");
    assert_null(y);   /* *out is NULL after a failure */
  }
  DN_EXPECT_ERROR(dn_dropblock2d(&y, x, 1.5, 3, &rng), DN_EINVAL, "(got 1.5)");
  DN_EXPECT_ERROR(dn_dropblock2d(&y, xi, 0.5, 3, &rng), DN_ETYPE, "dropblock2d: input must be float32 (got int32)");
  DN_EXPECT_ERROR(dn_dropblock2d(&y, x, 0.5, 3, NULL), DN_EINVAL, "dropblock2d: generator is NULL");
  DN_EXPECT_ERROR(dn_dropblock2d(&y, m2, 0.5, 3, &rng), DN_ESHAPE,
                  "dropblock2d: input must be 4-D [N, C, H, W] or 3-D [C, H, W] (got shape [4,6])");
  DN_EXPECT_ERROR(dn_dropblock2d(&y, m5, 0.5, 3, &rng), DN_ESHAPE, "(got shape [1,2,3,4,6])");
  DN_EXPECT_ERROR(dn_dropblock2d(&y, x, 0.5, 0, &rng), DN_EINVAL, "dropblock2d: block_size must be >= 1 (got 0)");
  DN_EXPECT_ERROR(dn_dropblock2d(&y, x, 0.5, -3, &rng), DN_EINVAL, "(got -3)");
  DN_EXPECT_ERROR(dn_dropblock2d(&y, x, 0.5, 5, &rng), DN_ESHAPE,
                  "dropblock2d: block_size 5 does not fit the 4 x 6 feature maps of input [2,3,4,6] (must be <= "
                  "min(H, W) = 4)");
  /* checked at p = 0 too, where nothing is drawn */
  DN_EXPECT_ERROR(dn_dropblock2d(&y, x, 0.0, 5, &rng), DN_ESHAPE, "block_size 5 does not fit");
  DN_EXPECT_ERROR(dn_dropblock2d(&y, m2, 0.0, 1, &rng), DN_ESHAPE, "4-D");
  DN_EXPECT_ERROR(dn_dropblock2d(&y, xi, 0.0, 3, &rng), DN_ETYPE, "dropblock2d");
  dn_tensor *zero_h = filled(4, (int64_t[]){2, 3, 0, 6}, 1.0);
  DN_EXPECT_ERROR(dn_dropblock2d(&y, zero_h, 0.5, 1, &rng), DN_ESHAPE, "must be <= min(H, W) = 0");
  assert_null(y);
  assert_true(rng.offset == 0);   /* failures draw nothing */

  /* the mask */
  DN_EXPECT_ERROR(dn_dropblock2d_mask(&y, NULL, 4, (int64_t[]){2, 3, 4, 6}, 0.5, 3), DN_EINVAL,
                  "dropblock2d_mask: generator is NULL");
  DN_EXPECT_ERROR(dn_dropblock2d_mask(&y, &rng, 4, (int64_t[]){2, 3, 4, 6}, 1.01, 3), DN_EINVAL,
                  "dropblock2d_mask: p must be in");
  DN_EXPECT_ERROR(dn_dropblock2d_mask(&y, &rng, 4, (int64_t[]){2, 3, 4, 6}, 0.5, 7), DN_ESHAPE,
                  "dropblock2d_mask: block_size 7 does not fit");
  DN_EXPECT_ERROR(dn_dropblock2d_mask(&y, &rng, 2, (int64_t[]){4, 6}, 0.5, 3), DN_ESHAPE, "must be 4-D");
  DN_EXPECT_ERROR(dn_dropblock2d_mask(&y, &rng, 4, (int64_t[]){2, -3, 4, 6}, 0.5, 3), DN_EINVAL,
                  "dropblock2d_mask: size of dim 2");
  DN_EXPECT_ERROR(dn_dropblock2d_mask(&y, &rng, 4, NULL, 0.5, 3), DN_EINVAL, "dropblock2d_mask: shape is NULL");
  assert_null(y);
  assert_true(rng.offset == 0);
  dn_tensor *list[] = {x, xi, m2, m5, zero_h};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_contract, dn_test_reset_modes),
    cmocka_unit_test_setup(test_unbatched_and_views, dn_test_reset_modes),
    cmocka_unit_test_setup(test_dropped_regions_are_whole_blocks, dn_test_reset_modes),
    cmocka_unit_test_setup(test_dropped_fraction, dn_test_reset_modes),
    cmocka_unit_test_setup(test_backward_uses_forward_mask, dn_test_reset_modes),
    cmocka_unit_test_setup(test_gradcheck, dn_test_reset_modes),
    cmocka_unit_test_setup(test_threads_bit_identical, dn_test_reset_modes),
    cmocka_unit_test_setup(test_p0_and_p1, dn_test_reset_modes),
    cmocka_unit_test_setup(test_block_size_one_is_dropout_mask, dn_test_reset_modes),
    cmocka_unit_test_setup(test_bad_inputs, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
