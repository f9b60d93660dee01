/*
** dropnet's sgemm kernels (dn_gemm in gemm.c with the AVX-512 and the AVX2
** kernel) and dn_blas_sgemm (blas.c, what matmul calls) against a
** double-precision reference, OpenBLAS's cblas_sgemm, and themselves on
** other thread counts.
**
** A kernel this CPU lacks is skipped (dn_gemm_kernel_supported); without
** DN_HAVE_GEMM (not x86-64) the checks run through dn_blas_sgemm alone.
** DROPNET_SGEMM=openblas or =avx2 in the environment sends dn_blas_sgemm to
** OpenBLAS or the AVX2 kernel (blas.c), for running the checks on that path.
**
** A and B (and C unless it is guarded) are sized exactly, so a sanitizer
** build catches reads past their last element; they start 64-byte aligned or
** one float off it; everything in them outside op(A), op(B) and the C window
** is NaN or a NaN sentinel, which must neither reach the results nor be
** written.
*/
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include <cblas.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "gemm.h"

/* |got - want| <= REL_TOL * sum_p |alpha a_ip b_pj| (+ |beta c_ij|) + ABS_TOL */
#define REL_TOL 1e-5
#define ABS_TOL 1e-6
/* Products up to this many multiply-adds are checked element by element;
   bigger ones on edge rows/columns and random samples. */
#define FULL_CHECK_LIMIT 8e6
#define RANDOM_SAMPLES 1024

typedef void (*gemm_fn)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

typedef struct {
  const char *name;
  gemm_fn fn;
  int every;          /* runs 1 in `every` of the many small cases */
  const void *kernel; /* the dn_gemm_kernel it runs, skipped where the CPU lacks it; NULL: always runs */
} gemm_impl;

#ifdef DN_HAVE_GEMM
/* dn_blas_sgemm hands products to a kernel of dn_gemm (unless
   DROPNET_SGEMM=openblas), which runs every case of its own: a third of the
   small cases here. */
static const gemm_impl BLAS = {"dn_blas_sgemm", dn_blas_sgemm, 3, NULL};

/* dn_gemm returns false only when its packing buffers cannot be allocated:
   never expected here. Each kernel runs every case three ways: the path the
   shape picks, forced packed, and forced unpacked (direct or dot wherever
   the transposes allow them, gemm.h's dn_gemm_force_path); the AVX-512
   kernel also with x @ W^T as (W @ x^T)^T (micro_t) wherever it applies. */
#define KERNEL_IMPL(NAME, kernel, path)                                                                        \
  static void gemm_##NAME(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a, \
                          int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {        \
    dn_gemm_force_path = path;                                                                                 \
    bool ok = dn_gemm(&kernel, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);                \
    dn_gemm_force_path = DN_GEMM_AUTO;                                                                         \
    if (!ok)                                                                                                   \
      fail_msg("dn_gemm (%s) returned false (m=%" PRId64 " n=%" PRId64 " k=%" PRId64 ")", kernel.name, m, n, k); \
  }                                                                                                            \
  static const gemm_impl NAME = {"dn_gemm " #NAME, gemm_##NAME, 1, &kernel};
KERNEL_IMPL(AVX512, dn_gemm_kernel_avx512, DN_GEMM_AUTO)
KERNEL_IMPL(AVX512_PACKED, dn_gemm_kernel_avx512, DN_GEMM_PACKED)
KERNEL_IMPL(AVX512_DIRECT, dn_gemm_kernel_avx512, DN_GEMM_DIRECT)
KERNEL_IMPL(AVX512_WT, dn_gemm_kernel_avx512, DN_GEMM_WT)
KERNEL_IMPL(AVX2, dn_gemm_kernel_avx2, DN_GEMM_AUTO)
KERNEL_IMPL(AVX2_PACKED, dn_gemm_kernel_avx2, DN_GEMM_PACKED)
KERNEL_IMPL(AVX2_DIRECT, dn_gemm_kernel_avx2, DN_GEMM_DIRECT)
/* the sparse path on dense operands: every term listed, every shape and edge of the other paths */
KERNEL_IMPL(AVX512_SPARSE, dn_gemm_kernel_avx512, DN_GEMM_SPARSE)
KERNEL_IMPL(AVX2_SPARSE, dn_gemm_kernel_avx2, DN_GEMM_SPARSE)
#else
static const gemm_impl BLAS = {"dn_blas_sgemm", dn_blas_sgemm, 1, NULL};
#endif

/* --- deterministic values: xorshift64* ----------------------------------------- */

static uint64_t rng_seed(uint64_t seed) {
  /* splitmix64, so neighbouring seeds give unrelated streams (and never 0) */
  uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z ? z : 1;
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [-1, 1), 24 bits: exact in float. */
static float rng_unit(uint64_t *s) { return (float)((double)(rng_next(s) >> 40) / 8388608.0 - 1.0); }

static float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* Padding of A and B, and the C window's contents when beta == 0 must not be read. */
#define QNAN_BITS 0x7FC00000u
/* Around the C window: a NaN with a payload, compared bit for bit. */
#define SENTINEL_BITS 0xFFA5A5A5u

/* --- one product: operands, buffers, reference ------------------------------------ */

typedef struct {
  bool ta, tb;
  int64_t m, n, k;
  int64_t pad_a, pad_b, pad_c; /* leading dim = stored row length + pad */
  float alpha, beta;
  int off_a, off_b, off_c;     /* floats past a 64-byte boundary (0 or 1) */
  bool guard;                  /* sentinel rows before and after C (else C's buffer is exact) */
} gemm_case;

typedef struct {
  gemm_case cs;
  int64_t lda, ldb, ldc;
  float *a_buf, *b_buf, *c_buf; /* the allocations */
  const float *a, *b;
  float *c;
  size_t c_len;                 /* floats in c_buf */
  int64_t c_pre;                /* floats of c_buf before c */
  float *c_init;                /* c_buf's contents before the call */
  double *ad, *bd;              /* op(A) as [m,k] and op(B)^T as [n,k], in double */
  uint64_t rng;
} problem;

static int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }
static int64_t floor_div(int64_t v, int64_t by) { return v >= 0 ? v / by : -((-v + by - 1) / by); }

static float *alloc_floats(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) != 0) fail_msg("out of memory (%zu floats)", n);
  return p;
}

static void describe(const problem *pr, const char *who, char *out, size_t size) {
  const gemm_case *cs = &pr->cs;
  snprintf(out, size,
           "%s: m=%" PRId64 " n=%" PRId64 " k=%" PRId64 " trans_a=%d trans_b=%d lda=%" PRId64 " ldb=%" PRId64
           " ldc=%" PRId64 " alpha=%g beta=%g offsets(a,b,c)=%d,%d,%d%s",
           who, cs->m, cs->n, cs->k, cs->ta, cs->tb, pr->lda, pr->ldb, pr->ldc, (double)cs->alpha, (double)cs->beta,
           cs->off_a, cs->off_b, cs->off_c, cs->guard ? " guarded" : "");
}

/* A [rows, cols] matrix with row stride ld in an exact buffer, `off` floats
   past alignment; the padding is NaN. */
static float *make_operand(uint64_t *rng, int64_t rows, int64_t cols, int64_t ld, int off, float **buf) {
  size_t len = (size_t)off + (size_t)((rows - 1) * ld + cols);
  float *base = alloc_floats(len);
  for (size_t i = 0; i < len; i++) base[i] = bits_to_float(QNAN_BITS);
  float *p = base + off;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t q = 0; q < cols; q++) p[r * ld + q] = rng_unit(rng);
  *buf = base;
  return p;
}

static void problem_init(problem *pr, const gemm_case *cs, uint64_t seed) {
  memset(pr, 0, sizeof *pr);
  pr->cs = *cs;
  pr->rng = rng_seed(seed);
  int64_t m = cs->m, n = cs->n, k = cs->k;
  int64_t a_rows = cs->ta ? k : m, a_cols = cs->ta ? m : k;
  int64_t b_rows = cs->tb ? n : k, b_cols = cs->tb ? k : n;
  pr->lda = a_cols + cs->pad_a;
  pr->ldb = b_cols + cs->pad_b;
  pr->ldc = n + cs->pad_c;
  pr->a = make_operand(&pr->rng, a_rows, a_cols, pr->lda, cs->off_a, &pr->a_buf);
  pr->b = make_operand(&pr->rng, b_rows, b_cols, pr->ldb, cs->off_b, &pr->b_buf);

  /* C: [guard][window (m-1)*ldc + n][guard]; the pre-guard keeps c's alignment */
  int64_t guard = cs->guard ? round_up(pr->ldc + 7, 16) : 0;
  pr->c_pre = cs->off_c + guard;
  pr->c_len = (size_t)(pr->c_pre + (m - 1) * pr->ldc + n + guard);
  pr->c_buf = alloc_floats(pr->c_len);
  pr->c = pr->c_buf + pr->c_pre;
  for (size_t i = 0; i < pr->c_len; i++) pr->c_buf[i] = bits_to_float(SENTINEL_BITS);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++)
      /* beta == 0: NaN, which must not be read; else old values to scale */
      pr->c[i * pr->ldc + j] = cs->beta == 0.0f ? bits_to_float(QNAN_BITS) : rng_unit(&pr->rng);
  pr->c_init = malloc(pr->c_len * sizeof(float));
  assert_non_null(pr->c_init);
  memcpy(pr->c_init, pr->c_buf, pr->c_len * sizeof(float));

  pr->ad = malloc((size_t)(m * k) * sizeof(double));
  pr->bd = malloc((size_t)(n * k) * sizeof(double));
  assert_non_null(pr->ad);
  assert_non_null(pr->bd);
  for (int64_t i = 0; i < m; i++)
    for (int64_t p = 0; p < k; p++) pr->ad[i * k + p] = cs->ta ? pr->a[p * pr->lda + i] : pr->a[i * pr->lda + p];
  for (int64_t j = 0; j < n; j++)
    for (int64_t p = 0; p < k; p++) pr->bd[j * k + p] = cs->tb ? pr->b[j * pr->ldb + p] : pr->b[p * pr->ldb + j];
}

static void problem_free(problem *pr) {
  free(pr->a_buf);
  free(pr->b_buf);
  free(pr->c_buf);
  free(pr->c_init);
  free(pr->ad);
  free(pr->bd);
}

/* Puts C's buffer back as it was before any call. */
static void problem_reset(problem *pr) { memcpy(pr->c_buf, pr->c_init, pr->c_len * sizeof(float)); }

static void problem_run(problem *pr, const gemm_impl *impl) {
  const gemm_case *cs = &pr->cs;
  impl->fn(cs->ta, cs->tb, cs->m, cs->n, cs->k, cs->alpha, pr->a, pr->lda, pr->b, pr->ldb, cs->beta, pr->c, pr->ldc);
}

/* The old C value at (i, j). */
static float c_old(const problem *pr, int64_t i, int64_t j) { return pr->c_init[pr->c_pre + i * pr->ldc + j]; }

/* Reference value and error bound of element (i, j). */
static void reference(const problem *pr, int64_t i, int64_t j, double *want, double *bound) {
  const gemm_case *cs = &pr->cs;
  const double *x = pr->ad + i * cs->k, *y = pr->bd + j * cs->k;
  double sum = 0, abs_sum = 0;
  /* summation order is free in double: let the compiler vectorize */
#pragma omp simd reduction(+ : sum, abs_sum)
  for (int64_t p = 0; p < cs->k; p++) {
    double t = x[p] * y[p];
    sum += t;
    abs_sum += fabs(t);
  }
  double alpha = cs->alpha, beta = cs->beta;
  *want = alpha * sum;
  *bound = fabs(alpha) * abs_sum;
  if (cs->beta != 0.0f) {
    double old = c_old(pr, i, j);
    *want += beta * old;
    *bound += fabs(beta * old);
  }
}

typedef struct {
  const problem *pr;
  int64_t checked, bad;
  int64_t bad_i, bad_j;
  double got, want, tol;
} verdict;

static void check_element(verdict *v, int64_t i, int64_t j) {
  const problem *pr = v->pr;
  double want, bound;
  reference(pr, i, j, &want, &bound);
  double got = pr->c[i * pr->ldc + j], tol = REL_TOL * bound + ABS_TOL;
  v->checked++;
  if (!(fabs(got - want) <= tol)) {
    if (v->bad++ == 0) {
      v->bad_i = i;
      v->bad_j = j;
      v->got = got;
      v->want = want;
      v->tol = tol;
    }
  }
}

/* Every element outside the window bit-identical to before; every element
   inside finite (the inputs are). */
static void check_window(const problem *pr, const char *what) {
  char desc[320];
  int64_t m = pr->cs.m, n = pr->cs.n, ldc = pr->ldc, nonfinite = 0, first_i = -1, first_j = -1;
  for (size_t q = 0; q < pr->c_len; q++) {
    int64_t rel = (int64_t)q - pr->c_pre;
    bool inside = rel >= 0 && rel / ldc < m && rel % ldc < n;
    if (inside) {
      if (!isfinite(pr->c_buf[q]) && nonfinite++ == 0) {
        first_i = rel / ldc;
        first_j = rel % ldc;
      }
    } else if (float_bits(pr->c_buf[q]) != float_bits(pr->c_init[q])) {
      describe(pr, what, desc, sizeof desc);
      fail_msg("%s: wrote outside the C window at offset %" PRId64 " from c (row %" PRId64 ", col %" PRId64
               "): bits 0x%08" PRIx32 ", were 0x%08" PRIx32,
               desc, rel, floor_div(rel, ldc), rel - floor_div(rel, ldc) * ldc,
               float_bits(pr->c_buf[q]), float_bits(pr->c_init[q]));
    }
  }
  if (nonfinite) {
    describe(pr, what, desc, sizeof desc);
    fail_msg("%s: %" PRId64 " non-finite results, first at (%" PRId64 ", %" PRId64 ") = %g", desc, nonfinite,
             first_i, first_j, (double)pr->c[first_i * ldc + first_j]);
  }
}

/* C against the reference: all elements of small products; of big ones the
   rows and columns at micro-tile edges plus random samples. */
static void check_result(problem *pr, const char *what) {
  check_window(pr, what);
  int64_t m = pr->cs.m, n = pr->cs.n;
  verdict v = {.pr = pr};
  if ((double)m * (double)n * (double)pr->cs.k <= FULL_CHECK_LIMIT) {
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) check_element(&v, i, j);
  } else {
    int64_t rows[] = {0, 1, 3, 4, 5, 7, 8, 9, m / 2, m - 9, m - 8, m - 5, m - 4, m - 1};
    int64_t cols[] = {0, 1, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, n / 2, n - 33, n - 32, n - 25, n - 24, n - 1};
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
      if (rows[r] >= 0 && rows[r] < m)
        for (int64_t j = 0; j < n; j++) check_element(&v, rows[r], j);
    for (size_t q = 0; q < sizeof cols / sizeof *cols; q++)
      if (cols[q] >= 0 && cols[q] < n)
        for (int64_t i = 0; i < m; i++) check_element(&v, i, cols[q]);
    for (int s = 0; s < RANDOM_SAMPLES; s++) {
      int64_t i = (int64_t)(rng_next(&pr->rng) % (uint64_t)m), j = (int64_t)(rng_next(&pr->rng) % (uint64_t)n);
      check_element(&v, i, j);
    }
  }
  if (v.bad) {
    char desc[320];
    describe(pr, what, desc, sizeof desc);
    fail_msg("%s: %" PRId64 " of %" PRId64 " checked elements off; first (%" PRId64 ", %" PRId64
             "): got %.9g want %.9g (|diff| %.3g > tol %.3g)",
             desc, v.bad, v.checked, v.bad_i, v.bad_j, v.got, v.want, fabs(v.got - v.want), v.tol);
  }
}

/* Runs one case through impl and checks it against the reference. */
static void run_and_check(const gemm_impl *impl, const gemm_case *cs, uint64_t seed) {
  problem pr;
  problem_init(&pr, cs, seed);
  problem_run(&pr, impl);
  check_result(&pr, impl->name);
  problem_free(&pr);
}

/* run_and_check for one of the many small cases: a fixed pseudo-random
   1/impl->every of them. */
static void run_small_case(const gemm_impl *impl, const gemm_case *cs, uint64_t seed) {
  if (rng_seed(seed ^ 0x5A5Aull) % (uint64_t)impl->every == 0) run_and_check(impl, cs, seed);
}

/* --- thread count: saved by the setup, restored by the teardown (also on failure) - */

static int saved_threads;

static int save_threads(void **state) {
  (void)state;
  saved_threads = dn_get_num_threads();
  return 0;
}

static int restore_threads(void **state) {
  (void)state;
  return dn_set_num_threads(saved_threads) == DN_OK ? 0 : -1;
}

/* --- the tests (each takes the implementation as its state) ----------------------- */

/* Every test starts here: a kernel's own tests are skipped when the CPU lacks
   its instructions, and under DROPNET_SGEMM (which only steers
   dn_blas_sgemm: the plain run has done them). */
static const gemm_impl *require_kernel(void **state) {
  const gemm_impl *impl = *state;
#ifdef DN_HAVE_GEMM
  if (impl->kernel && !dn_gemm_kernel_supported(impl->kernel)) {
    print_message("%s: skipped, this CPU lacks the kernel's instructions\n", impl->name);
    skip();
  }
  if (impl->kernel && getenv("DROPNET_SGEMM")) skip();
#endif
  return impl;
}

static const int64_t SMALL[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 49, 65};
#define N_SMALL (sizeof SMALL / sizeof *SMALL)

/* (m, n, k) of the real model's products: [128,784]@[784,1024], [128,1024]@[1024,10],
   and the backward products of those layers. */
static const int64_t MODEL[][3] = {{128, 1024, 784}, {128, 10, 1024}, {1024, 784, 128}, {10, 1024, 128}};

/* Every tail of the 8x32 (AVX-512) and 4x24 (AVX2) micro-kernels (m and n
   from 1 to past two tiles) with short k, each with all four transposes;
   alternately aligned and one float off. */
static void test_small_shapes(void **state) {
  const gemm_impl *impl = require_kernel(state);
  uint64_t seed = 1;
  for (size_t x = 0; x < N_SMALL; x++)
    for (size_t y = 0; y < N_SMALL; y++)
      for (size_t z = 0; z < N_SMALL; z++)
        for (int t = 0; t < 4; t++) {
          gemm_case cs = {.ta = t & 1, .tb = t >> 1, .m = SMALL[x], .n = SMALL[y], .k = SMALL[z], .alpha = 1,
                          .beta = 0, .off_a = (int)((x + z + t) & 1), .off_b = (int)((y + z) & 1),
                          .off_c = (int)((x + y + t / 2) & 1)};
          run_small_case(impl, &cs, seed++);
        }
}

/* The shapes the model runs, all four transposes (sampled reference). */
static void test_model_shapes(void **state) {
  const gemm_impl *impl = require_kernel(state);
  for (size_t s = 0; s < sizeof MODEL / sizeof *MODEL; s++)
    for (int t = 0; t < 4; t++) {
      gemm_case cs = {.ta = t & 1, .tb = t >> 1, .m = MODEL[s][0], .n = MODEL[s][1], .k = MODEL[s][2],
                      .alpha = 1, .beta = 0, .off_c = t == 3};
      run_and_check(impl, &cs, 100 + s * 4 + (size_t)t);
    }
}

/* k across and just past the k blocks (256/512), with tails that are not
   multiples of 8; m and n past the row and column blocks (256, 1024). */
static void test_long_k_and_blocks(void **state) {
  const gemm_impl *impl = require_kernel(state);
  static const int64_t ks[] = {255, 256, 257, 300, 512, 513, 777, 1030};
  static const int64_t mn[][2] = {{17, 33}, {65, 63}, {8, 32}, {1, 70}, {9, 1}};
  uint64_t seed = 1000;
  for (size_t x = 0; x < sizeof ks / sizeof *ks; x++)
    for (size_t y = 0; y < sizeof mn / sizeof *mn; y++)
      for (int t = 0; t < 4; t++) {
        gemm_case cs = {.ta = t & 1, .tb = t >> 1, .m = mn[y][0], .n = mn[y][1], .k = ks[x], .alpha = 1,
                        .beta = 0, .off_a = (int)((x + y) & 1), .off_b = t & 1, .off_c = (int)(y & 1)};
        run_small_case(impl, &cs, seed++);
      }
  static const int64_t big[][3] = {{257, 1100, 129}, {300, 70, 600}, {129, 2050, 40}, {1000, 33, 65}, {520, 1030, 300}};
  for (size_t s = 0; s < sizeof big / sizeof *big; s++)
    for (int t = 0; t < 4; t++) {
      gemm_case cs = {.ta = t & 1, .tb = t >> 1, .m = big[s][0], .n = big[s][1], .k = big[s][2], .alpha = 1,
                      .beta = 0.5f, .off_a = t & 1, .off_b = (int)(s & 1), .off_c = t >> 1};
      run_and_check(impl, &cs, seed++);
    }
}

/* lda/ldb/ldc past the row length: the padding (NaN in A and B) must not be
   used, and C's padding columns and the rows around the window (sentinels)
   must stay bit-for-bit. */
static void test_leading_dims(void **state) {
  const gemm_impl *impl = require_kernel(state);
  static const int64_t shapes[][3] = {{1, 1, 1}, {7, 9, 3}, {17, 33, 31}, {8, 32, 8}, {33, 65, 300}, {65, 17, 777},
                                      {128, 10, 1024}};
  static const int64_t pads[][3] = {{5, 5, 5}, {1, 0, 3}, {0, 7, 0}, {16, 16, 16}};
  static const float betas[] = {0, 0.25f, 1, 0};
  uint64_t seed = 2000;
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (size_t p = 0; p < sizeof pads / sizeof *pads; p++)
      for (int t = 0; t < 4; t++) {
        gemm_case cs = {.ta = t & 1, .tb = t >> 1, .m = shapes[s][0], .n = shapes[s][1], .k = shapes[s][2],
                        .pad_a = pads[p][0], .pad_b = pads[p][1], .pad_c = pads[p][2], .alpha = 1, .beta = betas[p],
                        .off_a = (int)(p & 1), .off_b = (int)((p + (size_t)t) & 1), .off_c = (int)((s + p) & 1),
                        .guard = true};
        run_small_case(impl, &cs, seed++);
      }
  /* the big model product with padded leading dims, both transposes */
  for (int t = 0; t < 4; t++) {
    gemm_case cs = {.ta = t & 1, .tb = t >> 1, .m = 128, .n = 1024, .k = 784, .pad_a = 5, .pad_b = 5, .pad_c = 5,
                    .alpha = 1, .beta = t == 2 ? 1.0f : 0.0f, .off_a = 1, .off_c = 1, .guard = true};
    run_and_check(impl, &cs, seed++);
  }
}

/* alpha in {1, 0.5, -2} x beta in {0, 1, 0.25}: C = alpha AB + beta C_old,
   and with beta == 0 the NaN-filled C is not read. Ragged rows with a last
   column panel of 1-16 (196: micro's half-width path) and of 17-31 (212,
   over two k blocks). */
static void test_alpha_beta(void **state) {
  const gemm_impl *impl = require_kernel(state);
  static const int64_t shapes[][3] = {{1, 1, 1}, {9, 17, 33}, {33, 31, 300}, {40, 63, 520}, {128, 10, 1024},
                                      {300, 40, 20}, {12, 196, 40}, {70, 212, 300}};
  static const float alphas[] = {1, 0.5f, -2}, betas[] = {0, 1, 0.25f};
  uint64_t seed = 3000;
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int t = 0; t < 4; t++)
      for (size_t x = 0; x < 3; x++)
        for (size_t y = 0; y < 3; y++) {
          gemm_case cs = {.ta = t & 1, .tb = t >> 1, .m = shapes[s][0], .n = shapes[s][1], .k = shapes[s][2],
                          .alpha = alphas[x], .beta = betas[y], .pad_c = (int64_t)y, .off_a = (int)(x & 1),
                          .off_b = (int)(y & 1), .off_c = t & 1, .guard = y == 2};
          run_small_case(impl, &cs, seed++);
        }
}

/* One case on 1 thread, then on 2, 3 and 4: the same bits (the contract);
   the result also checked against the reference. */
static void check_threads_bit_identical(const gemm_impl *impl, const gemm_case *cs, uint64_t seed) {
  problem pr;
  problem_init(&pr, cs, seed);
  DN_OK_OR_FAIL(dn_set_num_threads(1));
  problem_run(&pr, impl);
  check_result(&pr, impl->name);
  float *one = malloc(pr.c_len * sizeof(float));
  assert_non_null(one);
  memcpy(one, pr.c_buf, pr.c_len * sizeof(float));
  for (int threads = 2; threads <= 4; threads++) {
    DN_OK_OR_FAIL(dn_set_num_threads(threads));
    problem_reset(&pr);
    problem_run(&pr, impl);
    for (size_t q = 0; q < pr.c_len; q++)
      if (float_bits(pr.c_buf[q]) != float_bits(one[q])) {
        char desc[320];
        describe(&pr, impl->name, desc, sizeof desc);
        int64_t rel = (int64_t)q - pr.c_pre;
        fail_msg("%s: %d threads differ from 1 thread at (%" PRId64 ", %" PRId64 "): %.9g vs %.9g", desc, threads,
                 rel / pr.ldc, rel % pr.ldc, (double)pr.c_buf[q], (double)one[q]);
      }
  }
  free(one);
  problem_free(&pr);
}

/* 1 to 4 threads give the same bits, the model's shapes included, and
   shapes above gemm.c's one-thread limit (4M multiply-adds, so the threads
   split them) with m, n or k of 1, odd sizes past the blocks, too few column
   panels for every thread (the threads split the rows), alpha and beta,
   padded leading dims; every case with all four transposes. */
static void test_threads_bit_identical(void **state) {
  const gemm_impl *impl = require_kernel(state);
  static const gemm_case cases[] = {
    {.m = 128, .n = 1024, .k = 784, .alpha = 1},
    {.m = 1024, .n = 784, .k = 128, .alpha = 1},
    {.m = 128, .n = 1024, .k = 784, .alpha = 1, .beta = 1},
    {.m = 65, .n = 63, .k = 777, .alpha = -2, .beta = 0.25f, .off_a = 1},
    {.m = 33, .n = 1030, .k = 17, .alpha = 0.5f, .pad_c = 5, .off_c = 1, .guard = true},
    {.m = 257, .n = 1100, .k = 300, .alpha = 1, .pad_a = 3, .pad_b = 1, .off_b = 1},
    {.m = 1000, .n = 33, .k = 300, .alpha = 1, .beta = 1},
    {.m = 700, .n = 10, .k = 1024, .alpha = 1},
    {.m = 1, .n = 4099, .k = 1025, .alpha = 1, .beta = 0.5f, .guard = true},
    {.m = 4099, .n = 1, .k = 1025, .alpha = -1, .pad_c = 2, .guard = true},
    {.m = 2053, .n = 2051, .k = 1, .alpha = 2, .beta = 1, .pad_a = 1, .pad_b = 3},
    {.m = 129, .n = 1031, .k = 777, .alpha = 0.5f, .beta = -1, .pad_c = 7, .off_a = 1, .off_c = 1, .guard = true},
    {.m = 7, .n = 9, .k = 3, .alpha = 1},
    /* the unpacked paths' shapes, split by the threads too (past 4M multiply-adds) */
    {.m = 10, .n = 1024, .k = 500, .alpha = 1, .beta = 1},
    {.m = 64, .n = 1031, .k = 255, .alpha = 0.5f, .pad_c = 3, .off_b = 1, .guard = true},
    {.m = 1000, .n = 10, .k = 784, .alpha = 1},
    {.m = 31, .n = 333, .k = 1023, .alpha = -1, .beta = 0.25f, .off_a = 1},
    {.m = 100, .n = 1030, .k = 600, .alpha = 1, .beta = 1, .pad_c = 3, .guard = true},
  };
  uint64_t seed = 4000;
  for (size_t s = 0; s < sizeof cases / sizeof *cases; s++)
    for (int t = 0; t < 4; t++) {
      gemm_case cs = cases[s];
      cs.ta = t & 1;
      cs.tb = t >> 1;
      check_threads_bit_identical(impl, &cs, seed++);
    }
}

/* Agreement with OpenBLAS's cblas_sgemm on every element, within float
   rounding of both (bound from the same product on |A|, |B| by OpenBLAS). */
static void test_matches_openblas(void **state) {
  const gemm_impl *impl = require_kernel(state);
  static const gemm_case cases[] = {
    {.tb = true, .m = 128, .n = 1024, .k = 784, .alpha = 1},
    {.ta = true, .m = 1024, .n = 784, .k = 128, .alpha = 1},
    {.m = 128, .n = 10, .k = 1024, .alpha = 1, .beta = 1},
    {.ta = true, .tb = true, .m = 65, .n = 63, .k = 777, .alpha = -2, .beta = 0.25f, .pad_a = 5, .pad_b = 5,
     .pad_c = 5, .off_a = 1, .off_c = 1, .guard = true},
    {.m = 33, .n = 17, .k = 1030, .alpha = 0.5f, .off_b = 1},
  };
  for (size_t s = 0; s < sizeof cases / sizeof *cases; s++) {
    const gemm_case *cs = &cases[s];
    problem pr;
    problem_init(&pr, cs, 5000 + s);
    problem_run(&pr, impl);
    check_window(&pr, impl->name);
    float *ours = malloc(pr.c_len * sizeof(float));
    assert_non_null(ours);
    memcpy(ours, pr.c_buf, pr.c_len * sizeof(float));
    problem_reset(&pr);
    enum CBLAS_TRANSPOSE op_a = cs->ta ? CblasTrans : CblasNoTrans, op_b = cs->tb ? CblasTrans : CblasNoTrans;
    cblas_sgemm(CblasRowMajor, op_a, op_b, (int)cs->m, (int)cs->n, (int)cs->k, cs->alpha, pr.a, (int)pr.lda, pr.b,
                (int)pr.ldb, cs->beta, pr.c, (int)pr.ldc);
    /* |alpha| |op(A)| |op(B)|, from the double copies (tight, no transposes) */
    int64_t m = cs->m, n = cs->n, k = cs->k;
    float *abs_a = malloc((size_t)(m * k) * sizeof(float)), *abs_b = malloc((size_t)(n * k) * sizeof(float));
    float *bound = malloc((size_t)(m * n) * sizeof(float));
    assert_non_null(abs_a);
    assert_non_null(abs_b);
    assert_non_null(bound);
    for (int64_t q = 0; q < m * k; q++) abs_a[q] = (float)fabs(pr.ad[q]);
    for (int64_t q = 0; q < n * k; q++) abs_b[q] = (float)fabs(pr.bd[q]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, fabsf(cs->alpha), abs_a, (int)k,
                abs_b, (int)k, 0.0f, bound, (int)n);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double got = ours[pr.c_pre + i * pr.ldc + j], want = pr.c[i * pr.ldc + j];
        double old_part = cs->beta != 0.0f ? fabs(cs->beta * c_old(&pr, i, j)) : 0.0; /* C is NaN when beta == 0 */
        double tol = 2 * REL_TOL * (bound[i * n + j] + old_part) + 2 * ABS_TOL;
        if (!(fabs(got - want) <= tol)) {
          char desc[320];
          describe(&pr, impl->name, desc, sizeof desc);
          fail_msg("%s: differs from cblas_sgemm at (%" PRId64 ", %" PRId64 "): %.9g vs %.9g (tol %.3g)", desc, i, j,
                   got, want, tol);
        }
      }
    free(abs_a);
    free(abs_b);
    free(bound);
    free(ours);
    problem_free(&pr);
  }
}

/* Around the unpacked paths' tiles and thresholds (gemm.c's
   unpacked_path): the direct tile's rows in near-equal parts (m 9-17,
   63-65), its 32 / 24 columns, dot's 4 x 5 / 3 x 3 tiles and k tails past
   whole vectors; m 32/33 and n 32/33 at the dot threshold, k 256/257 at
   direct's; all four transposes, alpha, beta 0 and 1, ldc > n. */
static void test_unpacked_shapes(void **state) {
  const gemm_impl *impl = require_kernel(state);
  static const int64_t shapes[][3] = {
    {128, 10, 1024}, {128, 1024, 10}, {10, 1024, 128}, {32, 64, 784}, {64, 784, 32}, {32, 10, 64}, {32, 64, 10},
    {10, 64, 32}, {9, 33, 7}, {17, 49, 31}, {63, 25, 256}, {64, 31, 257}, {65, 7, 9}, {33, 33, 100}, {32, 32, 1},
    {1, 11, 300}, {6, 6, 17}, {7, 4099, 3}, {129, 9, 33}, {5, 97, 1025},
    /* x @ W^T as (W @ x^T)^T: m up to 128, W's 64-row slabs and k blocks, ragged 8 x 32 tiles */
    {128, 1024, 784}, {100, 75, 513}, {33, 131, 257}, {127, 65, 1}, {65, 1001, 300},
  };
  static const float alphas[] = {1, -0.5f}, betas[] = {0, 1};
  uint64_t seed = 6000;
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int t = 0; t < 4; t++)
      for (int x = 0; x < 2; x++) {
        gemm_case cs = {.ta = t & 1, .tb = t >> 1, .m = shapes[s][0], .n = shapes[s][1], .k = shapes[s][2],
                        .alpha = alphas[x], .beta = betas[(s + (size_t)t + (size_t)x) & 1], .pad_c = x ? 3 : 0,
                        .off_a = (int)(s & 1), .off_b = x, .off_c = t & 1, .guard = x == 1};
        run_and_check(impl, &cs, seed++);
      }
}

#ifdef DN_HAVE_GEMM
/* direct sums each element in one FMA chain from zero in k order, as the
   packed micro-kernels do within a k block: where k fits one block the two
   paths give the same bits (a check that both compute what gemm.h says). */
static void test_direct_matches_packed(void **state) {
  const gemm_impl *impl = *state;
  const dn_gemm_kernel *kern = impl->kernel;
  if (!dn_gemm_kernel_supported(kern)) skip();
  static const int64_t shapes[][3] = {{10, 1024, 128}, {64, 784, 32}, {33, 65, 190}, {7, 9, 3}, {128, 10, 10},
                                      {12, 196, 40}};
  uint64_t seed = 7000;
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int beta = 0; beta < 2; beta++) {
        gemm_case cs = {.ta = ta, .m = shapes[s][0], .n = shapes[s][1], .k = shapes[s][2], .alpha = 0.75f,
                        .beta = beta ? 1.0f : 0.0f, .pad_c = 2, .off_a = 1, .guard = true};
        assert_true(cs.k <= kern->kc);
        problem pr;
        problem_init(&pr, &cs, seed++);
        float *c_out[2];
        for (int path = 0; path < 2; path++) {
          problem_reset(&pr);
          dn_gemm_force_path = path ? DN_GEMM_DIRECT : DN_GEMM_PACKED;
          bool ok = dn_gemm(kern, cs.ta, cs.tb, cs.m, cs.n, cs.k, cs.alpha, pr.a, pr.lda, pr.b, pr.ldb, cs.beta, pr.c,
                            pr.ldc);
          dn_gemm_force_path = DN_GEMM_AUTO;
          assert_true(ok);
          check_result(&pr, impl->name);
          c_out[path] = malloc(pr.c_len * sizeof(float));
          assert_non_null(c_out[path]);
          memcpy(c_out[path], pr.c_buf, pr.c_len * sizeof(float));
        }
        for (size_t q = 0; q < pr.c_len; q++)
          if (float_bits(c_out[0][q]) != float_bits(c_out[1][q])) {
            char desc[320];
            describe(&pr, impl->name, desc, sizeof desc);
            fail_msg("%s: direct differs from packed at offset %zu: %.9g vs %.9g", desc, q, (double)c_out[1][q],
                     (double)c_out[0][q]);
          }
        free(c_out[0]);
        free(c_out[1]);
        problem_free(&pr);
      }
}

/* dn_gemm_here_offsets (B's rows through a table: a convolution's dw over
   the valid positions of a padded image) gives the direct path's bits, B's
   rows moved anywhere (here: reversed, with gaps) and the table saying
   where; column tails, row tails, alpha and beta included. */
static void test_offsets_match_direct(void **state) {
  const gemm_impl *impl = *state;
  const dn_gemm_kernel *kern = impl->kernel;
  if (!dn_gemm_kernel_supported(kern)) skip();
  static const int64_t shapes[][3] = {{64, 32, 196}, {8, 16, 49}, {13, 40, 7}, {1, 1, 1}, {33, 65, 100}};
  uint64_t seed = 7500;
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int beta = 0; beta < 2; beta++) {
        gemm_case cs = {.ta = ta, .m = shapes[s][0], .n = shapes[s][1], .k = shapes[s][2], .alpha = 0.75f,
                        .beta = beta ? 1.0f : 0.0f, .pad_c = 2, .off_a = 1, .guard = true};
        problem pr;
        problem_init(&pr, &cs, seed++);
        float *want = malloc(pr.c_len * sizeof(float));
        assert_non_null(want);
        problem_reset(&pr);
        dn_gemm_force_path = DN_GEMM_DIRECT;
        assert_true(dn_gemm(kern, cs.ta, false, cs.m, cs.n, cs.k, cs.alpha, pr.a, pr.lda, pr.b, pr.ldb, cs.beta, pr.c,
                            pr.ldc));
        dn_gemm_force_path = DN_GEMM_AUTO;
        check_result(&pr, impl->name);
        memcpy(want, pr.c_buf, pr.c_len * sizeof(float));
        /* B's row p at slot k - 1 - p of a buffer with a gap of 3 floats between rows */
        int64_t stride = cs.n + 3;
        float *moved = calloc((size_t)(cs.k * stride), sizeof(float));
        int32_t *off = malloc((size_t)cs.k * sizeof *off);
        assert_non_null(moved);
        assert_non_null(off);
        for (int64_t p = 0; p < cs.k; p++) {
          off[p] = (int32_t)((cs.k - 1 - p) * stride);
          memcpy(moved + off[p], pr.b + p * pr.ldb, (size_t)cs.n * sizeof(float));
        }
        problem_reset(&pr);
        dn_gemm_here_offsets(kern, cs.ta, cs.m, cs.n, cs.k, cs.alpha, pr.a, pr.lda, moved, off, cs.beta, pr.c,
                             pr.ldc);
        for (size_t q = 0; q < pr.c_len; q++)
          if (float_bits(want[q]) != float_bits(pr.c_buf[q]))
            fail_msg("%s, m %lld n %lld k %lld, ta %d, beta %d: offsets differ from direct at %zu: %.9g vs %.9g",
                     impl->name, (long long)cs.m, (long long)cs.n, (long long)cs.k, ta, beta, q,
                     (double)pr.c_buf[q], (double)want[q]);
        free(moved);
        free(off);
        free(want);
        problem_free(&pr);
      }
}

/* Zeroes all but a fraction `density` of op(A)'s elements (a quarter of the zeros -0), as ReLU and dropout
   leave an activation or a gradient. */
static void sparsify(problem *pr, double density) {
  const gemm_case *cs = &pr->cs;
  float *a = (float *)pr->a;
  for (int64_t i = 0; i < cs->m; i++)
    for (int64_t p = 0; p < cs->k; p++) {
      float *x = cs->ta ? &a[p * pr->lda + i] : &a[i * pr->lda + p];
      uint64_t r = rng_next(&pr->rng);
      if ((double)(r >> 11) * 0x1.0p-53 >= density) *x = (r & 3) ? 0.0f : -0.0f;
      pr->ad[i * cs->k + p] = *x;
    }
}

/* C's whole buffer after the product by `path` on `threads` threads (malloc'ed). */
static float *run_path(const dn_gemm_kernel *kern, problem *pr, dn_gemm_path path, int threads) {
  const gemm_case *cs = &pr->cs;
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
  problem_reset(pr);
  dn_gemm_force_path = path;
  bool ok = dn_gemm(kern, cs->ta, cs->tb, cs->m, cs->n, cs->k, cs->alpha, pr->a, pr->lda, pr->b, pr->ldb, cs->beta,
                    pr->c, pr->ldc);
  dn_gemm_force_path = DN_GEMM_AUTO;
  assert_true(ok);
  float *out = malloc(pr->c_len * sizeof(float));
  assert_non_null(out);
  memcpy(out, pr->c_buf, pr->c_len * sizeof(float));
  return out;
}

static void assert_same_bits(const problem *pr, const float *want, const float *got, const char *what) {
  for (size_t q = 0; q < pr->c_len; q++)
    if (float_bits(want[q]) != float_bits(got[q])) {
      char desc[320];
      describe(pr, what, desc, sizeof desc);
      int64_t rel = (int64_t)q - pr->c_pre;
      fail_msg("%s: differs from the path it replaces at (%" PRId64 ", %" PRId64 "): 0x%08" PRIx32 " vs 0x%08" PRIx32,
               desc, floor_div(rel, pr->ldc), rel - floor_div(rel, pr->ldc) * pr->ldc, float_bits(got[q]),
               float_bits(want[q]));
    }
}

/* The sparse path gives the packed path's bits (gemm_sparse.h says why) on operands as ReLU and dropout leave
   them: densities from none to all, -0 among the zeros, the model's shapes and ragged ones over several k blocks
   and sub-blocks, all four transposes, alpha and beta, 1 and 2 threads; and on the model's shapes the automatic
   choice (the sparse path where op(A) is sparse) too. */
static void test_sparse_matches_packed(void **state) {
  const gemm_impl *impl = *state;
  const dn_gemm_kernel *kern = impl->kernel;
  if (!dn_gemm_kernel_supported(kern)) skip();
  static const int64_t shapes[][3] = {{128, 1024, 784}, {1024, 784, 128}, {128, 1024, 1024}, {33, 200, 517},
                                      {300, 129, 70}, {7, 9, 3}, {64, 131, 1000}};
  static const double densities[] = {0, 0.07, 0.3, 1};
  uint64_t seed = 8000;
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int t = 0; t < 4; t++) {
      double density = densities[(s + (size_t)t) % 4];
      gemm_case cs = {.ta = t & 1, .tb = t >> 1, .m = shapes[s][0], .n = shapes[s][1], .k = shapes[s][2],
                      .alpha = t == 1 ? -0.5f : 1.0f, .beta = (t & 2) ? 1.0f : 0.0f, .pad_c = t, .off_a = t & 1,
                      .guard = true};
      problem pr;
      problem_init(&pr, &cs, seed++);
      sparsify(&pr, density);
      float *want = run_path(kern, &pr, DN_GEMM_PACKED, 1);
      check_result(&pr, impl->name);
      for (int threads = 1; threads <= 2; threads++) {
        float *got = run_path(kern, &pr, DN_GEMM_SPARSE, threads);
        assert_same_bits(&pr, want, got, "sparse");
        free(got);
        if (s < 3) {   /* the model's shapes: the automatic choice is the packed path's bits, sparse or not */
          got = run_path(kern, &pr, DN_GEMM_AUTO, threads);
          assert_same_bits(&pr, want, got, "automatic");
          free(got);
        }
      }
      free(want);
      problem_free(&pr);
    }
  /* where the shape picks direct, the automatic choice keeps direct's bits: while k fits one k block (a small
     layer's g^T @ x) they are the packed path's, and it may take the sparse path; past it (the last shape) it
     must not */
  static const int64_t direct_shapes[][3] = {{64, 784, 32}, {16, 1000, 150}, {4, 1000, 600}};
  for (size_t s = 0; s < sizeof direct_shapes / sizeof *direct_shapes; s++)
    for (int ta = 0; ta < 2; ta++) {
      gemm_case cs = {.ta = ta, .m = direct_shapes[s][0], .n = direct_shapes[s][1], .k = direct_shapes[s][2],
                      .alpha = 1, .beta = ta ? 1.0f : 0.0f, .guard = true};
      problem pr;
      problem_init(&pr, &cs, seed++);
      sparsify(&pr, 0.05);
      float *want = run_path(kern, &pr, DN_GEMM_DIRECT, 1);
      check_result(&pr, impl->name);
      for (int threads = 1; threads <= 2; threads++) {
        float *got = run_path(kern, &pr, DN_GEMM_AUTO, threads);
        assert_same_bits(&pr, want, got, "automatic, direct's shape");
        free(got);
      }
      free(want);
      problem_free(&pr);
    }
}

/* A zero of op(A) against an infinite or NaN op(B) value makes a NaN in the packed path (0 * inf); the sparse path
   sees the non-finite value while packing and runs every term of that block, so it makes the same NaN; a NaN in
   op(A) is a nonzero and propagates too. */
static void test_sparse_nonfinite(void **state) {
  const gemm_impl *impl = *state;
  const dn_gemm_kernel *kern = impl->kernel;
  if (!dn_gemm_kernel_supported(kern)) skip();
  uint64_t seed = 8500;
  for (int t = 0; t < 4; t++)
    for (int what = 0; what < 3; what++) {
      gemm_case cs = {.ta = t & 1, .tb = t >> 1, .m = 40, .n = 300, .k = 600, .alpha = 1, .beta = 0, .guard = true};
      problem pr;
      problem_init(&pr, &cs, seed++);
      sparsify(&pr, 0.1);
      /* op(A)(3, 450) is zero; op(B)(450, 77) infinite or NaN; or op(A)(5, 20) NaN */
      float *a = (float *)pr.a, *b = (float *)pr.b;
      a[cs.ta ? 450 * pr.lda + 3 : 3 * pr.lda + 450] = 0.0f;
      if (what < 2) b[cs.tb ? 77 * pr.ldb + 450 : 450 * pr.ldb + 77] = what ? NAN : -INFINITY;
      else a[cs.ta ? 20 * pr.lda + 5 : 5 * pr.lda + 20] = NAN;
      float *want = run_path(kern, &pr, DN_GEMM_PACKED, 1);
      int64_t i = what < 2 ? 3 : 5, j = what < 2 ? 77 : 0;
      assert_true(isnan(want[pr.c_pre + i * pr.ldc + j]));
      for (int threads = 1; threads <= 2; threads++) {
        float *got = run_path(kern, &pr, DN_GEMM_SPARSE, threads);
        assert_same_bits(&pr, want, got, "sparse, non-finite operand");
        free(got);
      }
      free(want);
      problem_free(&pr);
    }
}

/* The check for non-finite op(B) values keeps one sum per vector of a packed row: an infinity in any column of a
   chunk, in place (B not transposed) or packed from B^T, reaches it. Every fourth column of two chunks' width. */
static void test_sparse_nonfinite_every_column(void **state) {
  const gemm_impl *impl = *state;
  const dn_gemm_kernel *kern = impl->kernel;
  if (!dn_gemm_kernel_supported(kern)) skip();
  uint64_t seed = 8700;
  for (int tb = 0; tb < 2; tb++)
    for (int64_t col = 0; col < 2 * kern->sparse_cols; col += 4) {
      gemm_case cs = {.tb = tb, .m = 8, .n = 2 * kern->sparse_cols, .k = 40, .alpha = 1, .beta = 0, .guard = true};
      problem pr;
      problem_init(&pr, &cs, seed++);
      sparsify(&pr, 0.1);
      float *a = (float *)pr.a, *b = (float *)pr.b;
      a[2 * pr.lda + 17] = 0.0f;   /* op(A)(2, 17) against op(B)(17, col) */
      b[tb ? col * pr.ldb + 17 : 17 * pr.ldb + col] = INFINITY;
      float *want = run_path(kern, &pr, DN_GEMM_PACKED, 1);
      assert_true(isnan(want[pr.c_pre + 2 * pr.ldc + col]));
      float *got = run_path(kern, &pr, DN_GEMM_SPARSE, 1);
      assert_same_bits(&pr, want, got, "sparse, an infinity in op(B)");
      free(got);
      free(want);
      problem_free(&pr);
    }
}
#endif

#define GEMM_TEST(impl, f) {#impl "/" #f, f, NULL, NULL, (void *)&impl}
#define GEMM_THREAD_TEST(impl, f) {#impl "/" #f, f, save_threads, restore_threads, (void *)&impl}

#define KERNEL_TESTS(impl)                                                                               \
  GEMM_TEST(impl, test_small_shapes), GEMM_TEST(impl, test_model_shapes), GEMM_TEST(impl, test_long_k_and_blocks), \
    GEMM_TEST(impl, test_leading_dims), GEMM_TEST(impl, test_alpha_beta),                                      \
    GEMM_THREAD_TEST(impl, test_threads_bit_identical), GEMM_TEST(impl, test_matches_openblas),              \
    GEMM_TEST(impl, test_unpacked_shapes)

int main(void) {
  const struct CMUnitTest tests[] = {
#ifdef DN_HAVE_GEMM
    KERNEL_TESTS(AVX512),
    KERNEL_TESTS(AVX512_PACKED),
    KERNEL_TESTS(AVX512_DIRECT),
    KERNEL_TESTS(AVX512_WT),
    KERNEL_TESTS(AVX2),
    KERNEL_TESTS(AVX2_PACKED),
    KERNEL_TESTS(AVX2_DIRECT),
    GEMM_TEST(AVX512, test_direct_matches_packed),
    GEMM_TEST(AVX2, test_direct_matches_packed),
    GEMM_TEST(AVX512, test_offsets_match_direct),
    GEMM_TEST(AVX2, test_offsets_match_direct),
    KERNEL_TESTS(AVX512_SPARSE),
    KERNEL_TESTS(AVX2_SPARSE),
    GEMM_THREAD_TEST(AVX512, test_sparse_matches_packed),
    GEMM_THREAD_TEST(AVX2, test_sparse_matches_packed),
    GEMM_THREAD_TEST(AVX512, test_sparse_nonfinite),
    GEMM_THREAD_TEST(AVX2, test_sparse_nonfinite),
    GEMM_THREAD_TEST(AVX512, test_sparse_nonfinite_every_column),
    GEMM_THREAD_TEST(AVX2, test_sparse_nonfinite_every_column),
#endif
    /* the public path (what matmul calls), whichever kernel it picks */
    KERNEL_TESTS(BLAS),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
