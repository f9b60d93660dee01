/*
** dropnet's own sgemm for AVX-512 machines (contract in gemm.h).
**
** Why our own: this machine's CPU has 512-bit FMA units, but the OpenBLAS
** that Debian 12 ships (0.3.21) predates it, and the environment pins it to
** its Haswell (AVX2) kernels because newer kernel choices compute wrong
** results or crash on it. Those kernels top out at half of what the FMA
** units can do; every step of a dense model spends most of its time here.
** Measured (build/bench_matmul, 128x784x1024): 199 GFLOP/s on one core
** (91% of the 219 a register-only FMA loop reaches), 330-360 on two;
** OpenBLAS's Haswell kernels 105 and 165.
**
** The scheme is the usual packed GEMM (Goto; BLIS's loop names): for a block
** of kc rows of op(B) and nc columns, copy it into panels of NR columns
** (kc x NR, contiguous); for a block of mc rows of op(A), copy it into panels
** of MR rows (kc x MR); then an MR x NR micro-kernel keeps 16 zmm
** accumulators in registers over the kc products. Packing turns every
** transpose case into the same kernel, and zero-padded panels make ragged
** edges ordinary; masked stores write only the window of C.
**
** Threads take disjoint ranges of whole panels (columns when there are
** enough, else rows); every element of C sums its products in the same
** order (k blocks in turn, p within a block), so the result does not depend
** on the thread count.
*/
#include "gemm.h"

#ifdef DN_HAVE_GEMM_AVX512

#include <immintrin.h>

#include "dropnet/alloc.h"
#include "dropnet/parallel.h"
#include "pool.h"

#define MR 8      /* rows of the micro-kernel: 8 x 2 accumulators + 2 B rows */
#define NR 32     /* columns: two zmm */
#define KC 256    /* B micro-panel kc x NR = 32 KB stays in L1 */
#define MC 256    /* A block mc x kc = 256 KB stays in L2 */
#define NC 1024   /* B block kc x nc = 1 MB */

/* Below this many multiply-adds one thread is faster: waking a sleeping
   (OMP_WAIT_POLICY=PASSIVE) worker costs 10-70 us here, while 1.5M
   multiply-adds take 20-40 us on one thread (measured: 32x784x64 in 22 us
   on 1 thread, 35-91 us on 2; 128x256x784 in 307 us on 1, 205-244 on 2).
   The overhead-bound model b (784-64-10) trains ~40% faster with it. */
#define SMALL_PRODUCT 4194304.0

typedef struct gemm_args {
  bool trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  const float *a, *b;
  float *c;
} gemm_args;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

/* dst row i (stride ds) = column i of the 8 x 8 block at src (row stride ss). */
static inline void transpose_8x8(const float *src, int64_t ss, float *dst, int64_t ds) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss), r2 = _mm256_loadu_ps(src + 2 * ss),
         r3 = _mm256_loadu_ps(src + 3 * ss), r4 = _mm256_loadu_ps(src + 4 * ss), r5 = _mm256_loadu_ps(src + 5 * ss),
         r6 = _mm256_loadu_ps(src + 6 * ss), r7 = _mm256_loadu_ps(src + 7 * ss);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
         t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
         u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
         u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
         u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* One row of W values (W = 8 or 32) from src, zero beyond `count`. */
static inline void copy_row(float *d, const float *s, int64_t count, int64_t W) {
  if (W == 32) {
    if (count >= 32) {
      _mm512_store_ps(d, _mm512_loadu_ps(s));
      _mm512_store_ps(d + 16, _mm512_loadu_ps(s + 16));
    } else {
      __mmask16 lo = count >= 16 ? 0xFFFF : (__mmask16)((1u << count) - 1);
      __mmask16 hi = count > 16 ? (__mmask16)((1u << (count - 16)) - 1) : 0;
      _mm512_store_ps(d, _mm512_maskz_loadu_ps(lo, s));
      _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(hi, s + 16));
    }
  } else {
    __mmask8 m = count >= 8 ? 0xFF : (__mmask8)((1u << count) - 1);
    _mm256_store_ps(d, _mm256_maskz_loadu_ps(m, s));
  }
}

/*
** Packs a len x width block whose element (p, w) sits at
** src[p * along + w * across] into panels of W columns: panel q holds
** columns [qW, qW + W) as len rows of W values at dst + q * W * len, zero
** beyond `width`. The same routine packs both operands ("k rows of W
** values"), whichever way the source is laid out.
**
** Loop orders matter more than instructions here: rows 4 KB apart (a
** 1024-float matrix) or panels 32 KB apart all map to one L1 set, and
** touching more of them at once than the cache has ways makes every line
** come in again. Measured: dealing each source row of a 1024 x 1024 block
** out to all 32 panels ran at 16 GB/s, 4 panels at a time at 47 GB/s; A's
** 8-row panels of a [128, 1024] gradient, 14 GB/s 32 at a time, 51 GB/s 8.
*/
#define PACK_GROUP_BYTES 512    /* of each source row per pass */
#define PACK_GROUP_STREAMS 8    /* panels written per pass, at most */
static void pack_block(const float *src, int64_t along, int64_t across, int64_t len, int64_t width, float *dst,
                       int64_t W) {
  if (across == 1) {
    /* Each p is a contiguous run of `width` values: a few panels at a time,
       walking every p. */
    int64_t group = min64(PACK_GROUP_STREAMS, PACK_GROUP_BYTES / (W * (int64_t)sizeof(float)));
    for (int64_t q0 = 0; q0 * W < width; q0 += group) {
      int64_t q1 = min64(q0 + group, ceil_div(width, W));
      for (int64_t p = 0; p < len; p++)
        for (int64_t q = q0; q < q1; q++)
          copy_row(dst + (q * len + p) * W, src + p * along + q * W, width - q * W, W);
    }
    return;
  }
  /* Each w is a contiguous run along p (along == 1): transpose 8 x 8 blocks,
     8 source rows at a time, each walked to the end before the next 8. */
  int64_t len8 = len / 8 * 8;
  for (int64_t q = 0; q * W < width; q++) {
    const float *s = src + q * W * across;
    float *d = dst + q * W * len;
    int64_t cols = min64(W, width - q * W), w = 0;
    for (; w + 8 <= cols; w += 8) {
      for (int64_t p = 0; p < len8; p += 8) transpose_8x8(s + w * across + p, across, d + p * W + w, W);
      for (int64_t p = len8; p < len; p++)
        for (int64_t x = w; x < w + 8; x++) d[p * W + x] = s[x * across + p];
    }
    if (w == W) continue;
    /* Ragged panel: the last columns one by one, then zeros to the width. */
    for (int64_t p = 0; p < len; p++) {
      float *row = d + p * W;
      for (int64_t x = w; x < cols; x++) row[x] = s[x * across + p];
      for (int64_t x = cols; x < W; x++) row[x] = 0.0f;
    }
  }
}

/* op(A)[ic:ic+mc, pc:pc+kc] into MR-row panels, each kc x MR. */
static void pack_a(const gemm_args *g, int64_t ic, int64_t mc, int64_t pc, int64_t kc, float *dst) {
  int64_t along = g->trans_a ? g->lda : 1, across = g->trans_a ? 1 : g->lda;
  pack_block(g->a + ic * across + pc * along, along, across, kc, mc, dst, MR);
}

/* op(B)[pc:pc+kc, jc:jc+nc] into NR-column panels, each kc x NR. */
static void pack_b(const gemm_args *g, int64_t pc, int64_t kc, int64_t jc, int64_t nc, float *dst) {
  int64_t along = g->trans_b ? 1 : g->ldb, across = g->trans_b ? g->ldb : 1;
  pack_block(g->b + pc * along + jc * across, along, across, kc, nc, dst, NR);
}

#define ROW_FMA(r)                                     \
  do {                                                 \
    __m512 a_ = _mm512_set1_ps(ap[r]);                 \
    c##r##0 = _mm512_fmadd_ps(a_, b0, c##r##0);        \
    c##r##1 = _mm512_fmadd_ps(a_, b1, c##r##1);        \
  } while (0)

#define ROW_STORE(r)                                                                  \
  if (r < rows) {                                                                     \
    float *cr = c + (r) * ldc;                                                        \
    __m512 v0 = _mm512_mul_ps(c##r##0, va), v1 = _mm512_mul_ps(c##r##1, va);          \
    if (beta != 0.0f) {                                                               \
      v0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lo, cr), vb, v0);                    \
      v1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(hi, cr + 16), vb, v1);               \
    }                                                                                 \
    _mm512_mask_storeu_ps(cr, lo, v0);                                                \
    _mm512_mask_storeu_ps(cr + 16, hi, v1);                                           \
  }

/* C[rows, cols] (<= MR x NR) = alpha * (ap panel @ bp panel) + beta * C. */
static void micro_kernel(int64_t kc, const float *restrict ap, const float *restrict bp, float *c, int64_t ldc,
                         int rows, int cols, float alpha, float beta) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  for (int64_t p = 0; p < kc; p++) {
    __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
    ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3);
    ROW_FMA(4); ROW_FMA(5); ROW_FMA(6); ROW_FMA(7);
    ap += MR;
    bp += NR;
  }
  __mmask16 lo = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
  __mmask16 hi = cols >= 32 ? 0xFFFF : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  ROW_STORE(0) ROW_STORE(1) ROW_STORE(2) ROW_STORE(3)
  ROW_STORE(4) ROW_STORE(5) ROW_STORE(6) ROW_STORE(7)
}

/* The rows [i0, i1) and columns [j0, j1) of C, with this thread's buffers. */
static void gemm_region(const gemm_args *g, int64_t kc_full, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                        float *apack, float *bpack) {
  for (int64_t jc = j0; jc < j1; jc += NC) {
    int64_t nc = min64(NC, j1 - jc);
    for (int64_t pc = 0; pc < g->k; pc += kc_full) {
      int64_t kc = min64(kc_full, g->k - pc);
      float beta = pc == 0 ? g->beta : 1.0f;   /* later k blocks add to the partial sums */
      pack_b(g, pc, kc, jc, nc, bpack);
      for (int64_t ic = i0; ic < i1; ic += MC) {
        int64_t mc = min64(MC, i1 - ic);
        pack_a(g, ic, mc, pc, kc, apack);
        for (int64_t jr = 0; jr < nc; jr += NR)
          for (int64_t ir = 0; ir < mc; ir += MR)
            micro_kernel(kc, apack + ir * kc, bpack + jr * kc, g->c + (ic + ir) * g->ldc + jc + jr, g->ldc,
                         (int)min64(MR, mc - ir), (int)min64(NR, nc - jr), g->alpha, beta);
      }
    }
  }
}

typedef struct gemm_job {
  const gemm_args *g;
  int64_t kc_full;
  bool split_n;
  int64_t units;             /* panels of columns (split_n) or of rows to share */
  float *buffer;             /* a_floats + b_floats per task */
  size_t a_floats, b_floats;
} gemm_job;

/* Part t of the panels, packed into part t of the buffer. */
static void gemm_task(void *ctx, int t, int tasks) {
  const gemm_job *j = ctx;
  const gemm_args *g = j->g;
  int64_t first = j->units * t / tasks, last = j->units * (t + 1) / tasks;
  int64_t i0 = 0, i1 = g->m, j0 = 0, j1 = g->n;
  if (j->split_n) {
    j0 = first * NR;
    j1 = min64(last * NR, g->n);
  } else {
    i0 = first * MR;
    i1 = min64(last * MR, g->m);
  }
  float *apack = j->buffer + (size_t)t * (j->a_floats + j->b_floats), *bpack = apack + j->a_floats;
  if (i0 < i1 && j0 < j1) gemm_region(g, j->kc_full, i0, i1, j0, j1, apack, bpack);
}

bool dn_gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  gemm_args g = {trans_a, trans_b, m, n, k, lda, ldb, ldc, alpha, beta, a, b, c};
  /* k blocks of equal size (a function of k alone, so of the shape alone). */
  int64_t kc_full = ceil_div(k, ceil_div(k, KC));
  int64_t panels_m = ceil_div(m, MR), panels_n = ceil_div(n, NR);
  int threads = (double)m * (double)n * (double)k <= SMALL_PRODUCT ? 1 : dn_get_num_threads();
  /* Split columns when every thread gets a panel, else rows. */
  bool split_n = panels_n >= threads;
  int64_t units = split_n ? panels_n : panels_m;
  if (threads > units) threads = (int)units;
  /* Whole cache lines per buffer, so every panel is 64-byte aligned. */
  size_t a_floats = (size_t)round_up(round_up(min64(m, MC), MR) * kc_full, 16);
  size_t b_floats = (size_t)round_up(round_up(min64(n, NC), NR) * kc_full, 16);
  float *buffer = dn_alloc((a_floats + b_floats) * sizeof(float) * (size_t)threads);
  if (!buffer) return false;
  gemm_job job = {&g, kc_full, split_n, units, buffer, a_floats, b_floats};
  dn_parallel(threads, gemm_task, &job);
  dn_free(buffer);
  return true;
}

#endif
