/* The Philox generator, rand, randn, randperm: known answers, the block
   mapping of the reproducibility contract, statistics and bad inputs. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"

/* Random123's known-answer vectors for philox4x32_10: counter words,
   key words, expected output words. The first three are the kat_vectors
   of the Random123 distribution (zeros, all ones, digits of pi); the rest
   come from its extended table (single counter bits under small keys). */
static const uint32_t philox_kat[][10] = {
  {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
   0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
  {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
   0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
  {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
   0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
  {0x00000001, 0x00000000, 0x00000000, 0x00000000, 0x00000001, 0x00000000,
   0xac08141b, 0xdfc5ccbe, 0x79c07a47, 0xa7f66093},
  {0x00000000, 0x00000000, 0x00000000, 0x00000001, 0x00000000, 0x00000001,
   0x96b27e8c, 0x28826d0f, 0x66d958ef, 0x081509dc},
  {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0x00000000, 0xffffffff,
   0x08f7720c, 0x845ee9e0, 0x502ccd3d, 0xa9a00e27},
  {0x00000000, 0x00000000, 0x00000000, 0xffffffff, 0x00000000, 0x80000000,
   0x09812238, 0x47b8470d, 0x3e0d0a26, 0x92d96c9a},
};
#define KAT_COUNT (sizeof philox_kat / sizeof *philox_kat)

static uint64_t join64(uint32_t lo, uint32_t hi) { return (uint64_t)lo | (uint64_t)hi << 32; }

static void test_philox_known_answers(void **state) {
  (void)state;
  for (size_t v = 0; v < KAT_COUNT; v++) {
    const uint32_t *k = philox_kat[v];
    uint32_t out[4];
    /* public entry: block = words 0,1; stream = words 2,3; key = words 4,5 */
    dn_philox4x32(join64(k[4], k[5]), join64(k[0], k[1]), join64(k[2], k[3]), out);
    for (int w = 0; w < 4; w++)
      if (out[w] != k[6 + w]) fail_msg("vector %zu word %d: %08x, expected %08x", v, w, out[w], k[6 + w]);
    /* inline round function */
    uint32_t c[4] = {k[0], k[1], k[2], k[3]};
    dn_philox4x32_10(c, k[4], k[5]);
    assert_memory_equal(c, k + 6, sizeof c);
    /* lane-parallel version: the vector's block must appear in every lane */
    uint64_t block = join64(k[0], k[1]);
    for (int lane = 0; lane < DN_PHILOX_LANES; lane += 5) {
      uint32_t lanes[4][DN_PHILOX_LANES];
      dn_philox_blocks(lanes, join64(k[4], k[5]), block - (uint64_t)lane, join64(k[2], k[3]));
      for (int w = 0; w < 4; w++) assert_int_equal(lanes[w][lane], k[6 + w]);
    }
  }
}

static void test_seed(void **state) {
  (void)state;
  dn_rng rng = {.seed = 123, .offset = 456};
  dn_rng_seed(&rng, 0xDEADBEEFCAFEull);
  assert_true(rng.seed == 0xDEADBEEFCAFEull);
  assert_true(rng.offset == 0);
}

/* rand's contract, computed naively from dn_philox4x32. */
static float expected_uniform(const dn_rng *rng, int64_t i) {
  uint32_t x[4];
  dn_philox4x32(rng->seed, rng->offset + (uint64_t)(i / 4), 0, x);
  return (float)((double)(x[i % 4] >> 8) / 16777216.0);
}

/* randn's contract, computed naively. */
static float expected_normal(const dn_rng *rng, int64_t i) {
  uint32_t x[4];
  dn_philox4x32(rng->seed, rng->offset + (uint64_t)(i / 4), 0, x);
  int pair = (int)(i % 4) / 2;
  double u1 = ((double)(x[2 * pair] >> 8) + 1.0) / 16777216.0;
  double u2 = (double)(x[2 * pair + 1] >> 8) / 16777216.0;
  double r = sqrt(-2.0 * log(u1));
  double a = 2.0 * 3.14159265358979323846 * u2;
  return (float)(i % 2 == 0 ? r * cos(a) : r * sin(a));
}

static void test_rand_follows_contract(void **state) {
  (void)state;
  /* sizes around the lane group (16 blocks = 64 values) and partial blocks */
  int64_t sizes[] = {1, 3, 4, 7, 63, 64, 65, 130, 1001};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    dn_rng rng;
    dn_rng_seed(&rng, 42 + s);
    rng.offset = 5;   /* a generator that has already been used */
    dn_rng before = rng;
    dn_tensor *u, *z;
    DN_OK_OR_FAIL(dn_tensor_rand(&u, &rng, 1, &sizes[s]));
    assert_true(rng.offset == before.offset + (uint64_t)(sizes[s] + 3) / 4);
    for (int64_t i = 0; i < sizes[s]; i++) {
      float want = expected_uniform(&before, i);
      if (dn_test_at(u, i) != want) fail_msg("rand n=%lld [%lld]: %.9g vs %.9g", (long long)sizes[s],
                                             (long long)i, dn_test_at(u, i), want);
    }
    before = rng;
    DN_OK_OR_FAIL(dn_tensor_randn(&z, &rng, 1, &sizes[s]));
    assert_true(rng.offset == before.offset + (uint64_t)(sizes[s] + 3) / 4);
    for (int64_t i = 0; i < sizes[s]; i++) {
      float want = expected_normal(&before, i);
      if (dn_test_at(z, i) != want) fail_msg("randn n=%lld [%lld]: %.9g vs %.9g", (long long)sizes[s],
                                             (long long)i, dn_test_at(z, i), want);
    }
    dn_tensor_release(u);
    dn_tensor_release(z);
  }
}

static void test_rand_shapes(void **state) {
  (void)state;
  dn_rng rng;
  dn_rng_seed(&rng, 7);
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_rand(&t, &rng, 3, (int64_t[]){2, 3, 5}));
  assert_int_equal(t->ndim, 3);
  assert_int_equal(t->shape[2], 5);
  assert_true(dn_tensor_is_contiguous(t));
  assert_int_equal(t->dtype, DN_F32);
  assert_true(rng.offset == 8);   /* ceil(30 / 4) */
  dn_tensor_release(t);

  DN_OK_OR_FAIL(dn_tensor_rand(&t, &rng, 0, NULL));   /* 0-dim: one value, one block */
  assert_int_equal(t->ndim, 0);
  assert_true(rng.offset == 9);
  double v = dn_test_at(t, 0);
  assert_true(v >= 0 && v < 1);
  dn_tensor_release(t);

  DN_OK_OR_FAIL(dn_tensor_randn(&t, &rng, 2, (int64_t[]){0, 4}));   /* empty: consumes nothing */
  assert_int_equal(dn_tensor_numel(t), 0);
  assert_true(rng.offset == 9);
  dn_tensor_release(t);
}

static dn_tensor *rand_1d(dn_status (*make)(dn_tensor **, dn_rng *, int, const int64_t *), dn_rng *rng,
                          int64_t n) {
  dn_tensor *t;
  DN_OK_OR_FAIL(make(&t, rng, 1, &n));
  return t;
}

static void test_streams_are_reproducible_and_continue(void **state) {
  (void)state;
  dn_status (*makers[2])(dn_tensor **, dn_rng *, int, const int64_t *) = {dn_tensor_rand, dn_tensor_randn};
  for (int m = 0; m < 2; m++) {
    dn_rng a, b, c;
    dn_rng_seed(&a, 2024);
    dn_rng_seed(&b, 2024);
    dn_rng_seed(&c, 2025);
    dn_tensor *ta = rand_1d(makers[m], &a, 16), *tb = rand_1d(makers[m], &b, 16), *tc = rand_1d(makers[m], &c, 16);
    assert_memory_equal(dn_tensor_data(ta), dn_tensor_data(tb), 16 * sizeof(float));
    int same = 0;
    for (int i = 0; i < 16; i++) same += dn_test_at(ta, i) == dn_test_at(tc, i);
    assert_true(same < 2);

    /* 8 then 8 from a fresh generator equals 16 at once */
    dn_rng d;
    dn_rng_seed(&d, 2024);
    dn_tensor *first = rand_1d(makers[m], &d, 8), *second = rand_1d(makers[m], &d, 8);
    assert_memory_equal(dn_tensor_data(first), dn_tensor_data(ta), 8 * sizeof(float));
    assert_memory_equal(dn_tensor_data(second), (float *)dn_tensor_data(ta) + 8, 8 * sizeof(float));
    assert_true(d.offset == a.offset);

    /* a partial block is skipped: 5 values consume 2 blocks, the next call starts at block 2 */
    dn_rng e;
    dn_rng_seed(&e, 2024);
    dn_tensor *five = rand_1d(makers[m], &e, 5), *next = rand_1d(makers[m], &e, 4);
    assert_memory_equal(dn_tensor_data(five), dn_tensor_data(ta), 5 * sizeof(float));
    assert_memory_equal(dn_tensor_data(next), (float *)dn_tensor_data(ta) + 8, 4 * sizeof(float));

    /* seeds differing only in the high word give other numbers */
    dn_rng hi;
    dn_rng_seed(&hi, 2024 + ((uint64_t)1 << 32));
    dn_tensor *th = rand_1d(makers[m], &hi, 16);
    same = 0;
    for (int i = 0; i < 16; i++) same += dn_test_at(ta, i) == dn_test_at(th, i);
    assert_true(same < 2);

    dn_tensor *list[] = {ta, tb, tc, first, second, five, next, th};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
  }
}

#define BIG_N 1000000

static void test_rand_statistics(void **state) {
  (void)state;
  dn_rng rng;
  dn_rng_seed(&rng, 99);
  dn_tensor *t = rand_1d(dn_tensor_rand, &rng, BIG_N);
  const float *u = dn_tensor_data(t);
  double sum = 0, sum_sq = 0;
  int64_t bins[16] = {0};
  float lo = 1, hi = 0;
  for (int64_t i = 0; i < BIG_N; i++) {
    float x = u[i];
    if (x < lo) lo = x;
    if (x > hi) hi = x;
    sum += x;
    sum_sq += (double)x * x;
    bins[(int)(x * 16)]++;
  }
  assert_true(lo >= 0.0f && hi < 1.0f);
  double mean = sum / BIG_N, var = sum_sq / BIG_N - mean * mean;
  /* 5 sigma: sd(mean) = sqrt(1/12/n); sd(var) = sqrt((1/80 - 1/144)/n) */
  assert_true(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / BIG_N));
  assert_true(fabs(var - 1.0 / 12) < 5 * sqrt((1.0 / 80 - 1.0 / 144) / BIG_N));
  /* each of 16 bins within 5 binomial sigma */
  double p = 1.0 / 16, sd = sqrt(BIG_N * p * (1 - p));
  for (int b = 0; b < 16; b++)
    if (fabs(bins[b] - BIG_N * p) > 5 * sd) fail_msg("bin %d has %lld values", b, (long long)bins[b]);
  dn_tensor_release(t);
}

/* Standard normal CDF. */
static double normal_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

static void test_randn_statistics(void **state) {
  (void)state;
  dn_rng rng;
  dn_rng_seed(&rng, 31337);
  dn_tensor *t = rand_1d(dn_tensor_randn, &rng, BIG_N);
  const float *z = dn_tensor_data(t);
  double sum = 0, sum_sq = 0, sum_4 = 0;
  double edges[] = {-3, -2, -1, -0.5, 0, 0.5, 1, 2, 3};
  enum { NBINS = sizeof edges / sizeof *edges + 1 };
  int64_t bins[NBINS] = {0};
  for (int64_t i = 0; i < BIG_N; i++) {
    double x = z[i];
    assert_true(isfinite(x));
    sum += x;
    sum_sq += x * x;
    sum_4 += x * x * x * x;
    int b = 0;
    while (b < NBINS - 1 && x >= edges[b]) b++;
    bins[b]++;
  }
  double mean = sum / BIG_N, second = sum_sq / BIG_N, fourth = sum_4 / BIG_N;
  /* 5 sigma: sd(mean) = 1/sqrt(n), sd(E z^2) = sqrt(2/n), sd(E z^4) = sqrt(96/n) */
  assert_true(fabs(mean) < 5 / sqrt(BIG_N));
  assert_true(fabs(second - 1) < 5 * sqrt(2.0 / BIG_N));
  assert_true(fabs(fourth - 3) < 5 * sqrt(96.0 / BIG_N));
  for (int b = 0; b < NBINS; b++) {
    double lo = b == 0 ? -INFINITY : edges[b - 1], hi = b == NBINS - 1 ? INFINITY : edges[b];
    double p = normal_cdf(hi) - normal_cdf(lo), sd = sqrt(BIG_N * p * (1 - p));
    if (fabs(bins[b] - BIG_N * p) > 5 * sd)
      fail_msg("bin [%g, %g) has %lld values, expected %.0f", lo, hi, (long long)bins[b], BIG_N * p);
  }
  dn_tensor_release(t);
}

static void test_thread_count_does_not_matter(void **state) {
  (void)state;
  dn_status (*makers[2])(dn_tensor **, dn_rng *, int, const int64_t *) = {dn_tensor_rand, dn_tensor_randn};
  int64_t n = BIG_N + 3;   /* a partial last block too */
  for (int m = 0; m < 2; m++) {
    dn_rng a, b;
    dn_rng_seed(&a, 5);
    dn_rng_seed(&b, 5);
    a.offset = b.offset = 77;
    DN_OK_OR_FAIL(dn_set_num_threads(1));
    dn_tensor *one = rand_1d(makers[m], &a, n);
    DN_OK_OR_FAIL(dn_set_num_threads(2));
    dn_tensor *two = rand_1d(makers[m], &b, n);
    assert_memory_equal(dn_tensor_data(one), dn_tensor_data(two), (size_t)n * sizeof(float));
    assert_true(a.offset == b.offset);
    /* spot-check the parallel result against the contract */
    dn_rng start = {.seed = 5, .offset = 77};
    for (int64_t i = 0; i < n; i += 9973) {
      float want = m == 0 ? expected_uniform(&start, i) : expected_normal(&start, i);
      assert_true(dn_test_at(two, i) == want);
    }
    dn_tensor_release(one);
    dn_tensor_release(two);
  }
}

/* randperm's contract, written out: Fisher-Yates from the back with
   Lemire's rejection on 64-bit draws (draw k = block offset + k/2). */
static void expected_perm(int32_t *perm, int64_t n, int64_t base, dn_rng *rng) {
  for (int64_t i = 0; i < n; i++) perm[i] = (int32_t)(base + i);
  uint64_t draws = 0;
  for (int64_t i = n - 1; i > 0; i--) {
    uint64_t range = (uint64_t)i + 1, j;
    for (;;) {
      uint32_t x[4];
      dn_philox4x32(rng->seed, rng->offset + draws / 2, 0, x);
      int w = (int)(draws % 2) * 2;
      draws++;
      uint64_t r = join64(x[w], x[w + 1]);
      /* 128-bit product by 32-bit limbs: r * range = hi:lo */
      uint64_t r_lo = r & 0xffffffffu, r_hi = r >> 32;
      uint64_t p_lo = r_lo * range, p_hi = r_hi * range;
      uint64_t mid = (p_lo >> 32) + (p_hi & 0xffffffffu);
      uint64_t low = (p_lo & 0xffffffffu) | (mid << 32);
      uint64_t high = (p_hi >> 32) + (mid >> 32);
      uint64_t threshold = (UINT64_MAX - range + 1) % range;
      if (low >= threshold) {
        j = high;
        break;
      }
    }
    int32_t tmp = perm[i];
    perm[i] = perm[j];
    perm[j] = tmp;
  }
  rng->offset += (draws + 1) / 2;
}

static void test_randperm_contract(void **state) {
  (void)state;
  int64_t sizes[] = {0, 1, 2, 3, 10, 1000, 60000};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    int64_t n = sizes[s], base = s % 2 ? 1 : -5;
    dn_rng rng, ref;
    dn_rng_seed(&rng, 1000 + s);
    rng.offset = 3;
    ref = rng;
    dn_tensor *p;
    DN_OK_OR_FAIL(dn_randperm(&p, &rng, n, base));
    assert_int_equal(p->dtype, DN_I32);
    assert_int_equal(p->ndim, 1);
    assert_int_equal(p->shape[0], n);
    int32_t *want = malloc((size_t)(n ? n : 1) * sizeof *want);
    char *seen = calloc((size_t)(n ? n : 1), 1);
    expected_perm(want, n, base, &ref);
    const int32_t *got = dn_tensor_data(p);
    for (int64_t i = 0; i < n; i++) {
      assert_int_equal(got[i], want[i]);
      int64_t k = got[i] - base;
      assert_true(k >= 0 && k < n && !seen[k]);   /* a permutation of [base, base+n) */
      seen[k] = 1;
    }
    assert_true(rng.offset == ref.offset);
    free(want);
    free(seen);
    dn_tensor_release(p);
  }
  /* same seed, same permutation; the next call continues the stream */
  dn_rng a, b;
  dn_rng_seed(&a, 8);
  dn_rng_seed(&b, 8);
  dn_tensor *p1, *p2, *p3;
  DN_OK_OR_FAIL(dn_randperm(&p1, &a, 50, 0));
  DN_OK_OR_FAIL(dn_randperm(&p2, &b, 50, 0));
  assert_memory_equal(dn_tensor_data(p1), dn_tensor_data(p2), 50 * sizeof(int32_t));
  assert_true(a.offset > 0);
  DN_OK_OR_FAIL(dn_randperm(&p3, &a, 50, 0));
  assert_memory_not_equal(dn_tensor_data(p1), dn_tensor_data(p3), 50 * sizeof(int32_t));
  dn_tensor_release(p1);
  dn_tensor_release(p2);
  dn_tensor_release(p3);

  /* the largest base that fits */
  DN_OK_OR_FAIL(dn_randperm(&p1, &a, 4, (int64_t)INT32_MAX - 3));
  int32_t mx = 0;
  for (int i = 0; i < 4; i++) mx = (int32_t)dn_test_at(p1, i) > mx ? (int32_t)dn_test_at(p1, i) : mx;
  assert_int_equal(mx, INT32_MAX);
  dn_tensor_release(p1);
}

static void test_randperm_uniformity(void **state) {
  (void)state;
  /* where value 0 lands in randperm(10), over many seeds: chi-square, 9 dof */
  enum { N = 10, TRIALS = 20000 };
  int64_t where[N] = {0};
  /* all 6 orders of randperm(3): chi-square, 5 dof */
  int64_t orders[6] = {0};
  for (int s = 0; s < TRIALS; s++) {
    dn_rng rng;
    dn_rng_seed(&rng, (uint64_t)s);
    dn_tensor *p;
    DN_OK_OR_FAIL(dn_randperm(&p, &rng, N, 0));
    for (int i = 0; i < N; i++)
      if (dn_test_at(p, i) == 0) where[i]++;
    dn_tensor_release(p);
    DN_OK_OR_FAIL(dn_randperm(&p, &rng, 3, 0));
    int a = (int)dn_test_at(p, 0), b = (int)dn_test_at(p, 1);
    orders[a * 2 + (b > (a == 0 ? 1 : 0) ? 1 : 0)]++;
    dn_tensor_release(p);
  }
  double chi = 0, e = (double)TRIALS / N;
  for (int i = 0; i < N; i++) chi += (where[i] - e) * (where[i] - e) / e;
  assert_true(chi < 45.0);   /* P(chi2_9 > 45) ~ 1e-6 */
  chi = 0;
  e = TRIALS / 6.0;
  for (int i = 0; i < 6; i++) chi += (orders[i] - e) * (orders[i] - e) / e;
  assert_true(chi < 36.0);   /* P(chi2_5 > 36) ~ 1e-6 */
}

static void test_bad_inputs(void **state) {
  (void)state;
  dn_rng rng;
  dn_rng_seed(&rng, 1);
  dn_tensor *t = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_tensor_rand(&t, NULL, 1, (int64_t[]){3}), DN_EINVAL, "rand: generator is NULL");
  assert_null(t);
  t = (dn_tensor *)1;
  DN_EXPECT_ERROR(dn_tensor_randn(&t, NULL, 1, (int64_t[]){3}), DN_EINVAL, "randn: generator is NULL");
  assert_null(t);
  DN_EXPECT_ERROR(dn_tensor_rand(&t, &rng, 2, (int64_t[]){2, -3}), DN_EINVAL, "rand: size of dim 2 must be >= 0");
  DN_EXPECT_ERROR(dn_tensor_randn(&t, &rng, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}), DN_EINVAL, "randn: number of dims");
  DN_EXPECT_ERROR(dn_tensor_rand(&t, &rng, -1, NULL), DN_EINVAL, "dims");
  DN_EXPECT_ERROR(dn_tensor_rand(&t, &rng, 2, NULL), DN_EINVAL, "rand: shape is NULL");
  DN_EXPECT_ERROR(dn_tensor_randn(&t, &rng, 2, (int64_t[]){(int64_t)1 << 40, 1 << 20}), DN_EINVAL, "too large");
  DN_EXPECT_ERROR(dn_randperm(&t, NULL, 3, 0), DN_EINVAL, "randperm: generator is NULL");
  DN_EXPECT_ERROR(dn_randperm(&t, &rng, -1, 0), DN_EINVAL, "randperm: n must be in [0, 2147483647] (got -1)");
  DN_EXPECT_ERROR(dn_randperm(&t, &rng, (int64_t)INT32_MAX + 1, 0), DN_EINVAL, "n must be in");
  DN_EXPECT_ERROR(dn_randperm(&t, &rng, 10, (int64_t)INT32_MAX - 8), DN_EINVAL,
                  "values [2147483639, 2147483649) do not fit in int32");
  DN_EXPECT_ERROR(dn_randperm(&t, &rng, 1, (int64_t)INT32_MIN - 1), DN_EINVAL, "do not fit in int32");
  assert_null(t);
  assert_true(rng.offset == 0);   /* failures consume nothing */
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_philox_known_answers),
    cmocka_unit_test(test_seed),
    cmocka_unit_test(test_rand_follows_contract),
    cmocka_unit_test(test_rand_shapes),
    cmocka_unit_test(test_streams_are_reproducible_and_continue),
    cmocka_unit_test(test_rand_statistics),
    cmocka_unit_test(test_randn_statistics),
    cmocka_unit_test(test_thread_count_does_not_matter),
    cmocka_unit_test(test_randperm_contract),
    cmocka_unit_test(test_randperm_uniformity),
    cmocka_unit_test(test_bad_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
