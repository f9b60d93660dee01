/*
** gemm.c's AVX2 + FMA kernel, for machines without AVX-512 (AMD Zen 3): a
** 6 x 16 micro-tile in 12 ymm accumulators (6 rows x 2 vectors), fed per k
** step by 2 vector loads of the B panel and 6 broadcasts of the A panel; 15
** of the 16 ymm registers. Masked loads and stores handle the C window's
** ragged edges. Compiled with AVX2 and FMA and without AVX-512 whatever the
** build targets (CMakeLists.txt), so it runs as it would on such a machine.
*/
#include "gemm.h"

#ifdef DN_HAVE_GEMM

#include "gemm_pack.h"

#define MR 6
#define NR 16

static void pack_a(const float *src, int64_t along, int64_t across, int64_t len, int64_t width, float *dst) {
  pack_block(src, along, across, len, width, dst, MR);
}

static void pack_b(const float *src, int64_t along, int64_t across, int64_t len, int64_t width, float *dst) {
  pack_block(src, along, across, len, width, dst, NR);
}

#define ROW_FMA(r)                                     \
  do {                                                 \
    __m256 a_ = _mm256_broadcast_ss(ap + (r));         \
    c##r##0 = _mm256_fmadd_ps(a_, b0, c##r##0);        \
    c##r##1 = _mm256_fmadd_ps(a_, b1, c##r##1);        \
  } while (0)

#define ROW_STORE(r)                                                                  \
  if (r < rows) {                                                                     \
    float *cr = c + (r) * ldc;                                                        \
    __m256 v0 = _mm256_mul_ps(c##r##0, va), v1 = _mm256_mul_ps(c##r##1, va);          \
    if (beta != 0.0f) {                                                               \
      v0 = _mm256_fmadd_ps(_mm256_maskload_ps(cr, lo), vb, v0);                       \
      v1 = _mm256_fmadd_ps(_mm256_maskload_ps(cr + 8, hi), vb, v1);                   \
    }                                                                                 \
    _mm256_maskstore_ps(cr, lo, v0);                                                  \
    _mm256_maskstore_ps(cr + 8, hi, v1);                                              \
  }

static void micro(int64_t kc, const float *restrict ap, const float *restrict bp, float *c, int64_t ldc, int rows,
                  int cols, float alpha, float beta) {
  for (int r = 0; r < rows; r++) {
    _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + NR - 1), _MM_HINT_T0);
  }
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t p = 0; p < kc; p++) {
    __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
    ROW_FMA(0); ROW_FMA(1); ROW_FMA(2);
    ROW_FMA(3); ROW_FMA(4); ROW_FMA(5);
    ap += MR;
    bp += NR;
  }
  /* lane x of a mask is on (sign bit set) when x < the columns it covers */
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), lanes);
  __m256i hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8), lanes);
  __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  ROW_STORE(0) ROW_STORE(1) ROW_STORE(2)
  ROW_STORE(3) ROW_STORE(4) ROW_STORE(5)
}

/* KC: the B micro-panel, kc x NR = 16 KB, stays in L1 (32 KB on Zen 3);
   MC: the A block, mc x kc = 144 KB, in L2 (512 KB); NC: the B block. */
const dn_gemm_kernel dn_gemm_kernel_avx2 = {
  .name = "avx2", .cpu_features = {"avx2", "fma", NULL},
  .mr = MR, .nr = NR, .kc = 256, .mc = 144, .nc = 1024,
  .pack_a = pack_a, .pack_b = pack_b, .micro = micro,
};

#endif
