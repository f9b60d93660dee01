/*
** gemm.c's AVX-512 kernel: an 8 x 32 micro-tile in 16 zmm accumulators
** (8 rows x 2 vectors), fed per k step by 2 vector loads of the B panel and
** 8 broadcasts of the A panel; masked loads and stores handle the C window's
** ragged edges. Compiled with AVX-512F/VL whatever the build targets
** (CMakeLists.txt); gemm.c runs it only where dn_gemm_kernel_supported says so.
**
** Why 8 x 32: with its panels in L1 it runs at 180-195 GFLOP/s of the 215
** a register-only FMA loop reaches on one Sapphire Rapids core (85-91%);
** 12 x 32 and 14 x 32 measured the same within the noise (183-196), and 8
** divides the model's batch of 128 (12 or 14 would compute 3-9% of padding
** rows). Unrolling k by 2 or 4 changed nothing measurable. 8 x 48 (24
** accumulators, 11 loads per 24 FMAs, KC 160): 1-5% faster on one thread,
** 2-6% slower on two (the 1024 columns split into 22 panels).
** Edge tiles of <= 16 columns on 8 accumulators (micro_lo), one core:
** 64x288x196 124 -> 130, At@B 288x64x196 135 -> 140; full tiles the same.
*/
#include "gemm.h"

#include <math.h>

#ifdef DN_HAVE_GEMM

#define MR 8
#define NR 32

#include "gemm_pack.h"   /* pack_a, pack_b for these MR, NR */

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
      v0 = _mm512_fmadd_ps(_mm512_loadu_ps(cr), vb, v0);                              \
      v1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(hi, cr + 16), vb, v1);               \
    }                                                                                 \
    _mm512_storeu_ps(cr, v0);                                                         \
    _mm512_mask_storeu_ps(cr + 16, hi, v1);                                           \
  }

/* A tile of at most 16 columns (the last panel where N mod 32 is 1-16: 196,
   784) as micro computes its first vector per row, so the same bits, without
   the FMAs on the panel's zero padding; the panel stays NR wide. Not inlined:
   that moved micro's loop, full tiles then ran 1-2% slower (as they do with
   the loop 64-byte aligned). */
#define ROW_FMA_LO(r) c##r##0 = _mm512_fmadd_ps(_mm512_set1_ps(ap[r]), b0, c##r##0)
#define ROW_STORE_LO(r)                                                               \
  if (r < rows) {                                                                     \
    float *cr = c + (r) * ldc;                                                        \
    __m512 v0 = _mm512_mul_ps(c##r##0, va);                                           \
    if (beta != 0.0f) v0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lo, cr), vb, v0);    \
    _mm512_mask_storeu_ps(cr, lo, v0);                                                \
  }

static __attribute__((noinline)) void micro_lo(int64_t kc, const float *restrict ap, const float *restrict bp,
                                                float *c, int64_t ldc, int rows, int cols, float alpha, float beta) {
  __m512 c00 = _mm512_setzero_ps(), c10 = c00, c20 = c00, c30 = c00, c40 = c00, c50 = c00, c60 = c00, c70 = c00;
  for (int64_t p = 0; p < kc; p++) {
    __m512 b0 = _mm512_load_ps(bp);
    ROW_FMA_LO(0); ROW_FMA_LO(1); ROW_FMA_LO(2); ROW_FMA_LO(3);
    ROW_FMA_LO(4); ROW_FMA_LO(5); ROW_FMA_LO(6); ROW_FMA_LO(7);
    ap += MR;
    bp += NR;
  }
  __mmask16 lo = (__mmask16)((1u << cols) - 1);
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  ROW_STORE_LO(0) ROW_STORE_LO(1) ROW_STORE_LO(2) ROW_STORE_LO(3)
  ROW_STORE_LO(4) ROW_STORE_LO(5) ROW_STORE_LO(6) ROW_STORE_LO(7)
}

static void micro(int64_t kc, const float *restrict ap, const float *restrict bp, float *c, int64_t ldc, int rows,
                  int cols, float alpha, float beta) {
  /* C's tile comes in while the products run, not after them (measured 1-4%
     on the model's shapes, whose C is in L2 between k blocks) */
  for (int r = 0; r < rows; r++) {
    _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + cols - 1), _MM_HINT_T0);
  }
  if (cols <= 16) {
    micro_lo(kc, ap, bp, c, ldc, rows, cols, alpha, beta);
    return;
  }
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  for (int64_t p = 0; p < kc; p++) {
    __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
    ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3);
    ROW_FMA(4); ROW_FMA(5); ROW_FMA(6); ROW_FMA(7);
    ap += MR;
    bp += NR;
  }
  __mmask16 hi = (__mmask16)((1u << (cols - 16)) - 1);   /* cols 17-32 here */
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  ROW_STORE(0) ROW_STORE(1) ROW_STORE(2) ROW_STORE(3)
  ROW_STORE(4) ROW_STORE(5) ROW_STORE(6) ROW_STORE(7)
}

/* gemm.c's transposed x @ W^T: the tile of C^T = W @ x^T, W's rows (8
   columns of C) broadcast in place from a (row stride a_rs), x^T packed
   (bp, a 32-wide panel: 32 rows of C); C stored transposed, 8 x 8 blocks
   through a scratch tile. rows: columns of C (<= 8); cols: rows of C (<= 32). */
static void micro_t(int64_t kc, const float *restrict a, int64_t a_rs, const float *restrict bp, float *c,
                    int64_t ldc, int rows, int cols, float alpha, float beta) {
  for (int q = 0; q < cols; q++) _mm_prefetch((const char *)(c + q * ldc), _MM_HINT_T0);
  const float *a0 = a, *a1 = a + a_rs, *a2 = a + 2 * a_rs, *a3 = a + 3 * a_rs, *a4 = a + 4 * a_rs,
              *a5 = a + 5 * a_rs, *a6 = a + 6 * a_rs, *a7 = a + 7 * a_rs;
  /* rows past the edge read the last row again (not stored) */
  if (rows < 8) {
    const float *last = a + (rows - 1) * a_rs;
    if (rows < 2) a1 = last;
    if (rows < 3) a2 = last;
    if (rows < 4) a3 = last;
    if (rows < 5) a4 = last;
    if (rows < 6) a5 = last;
    if (rows < 7) a6 = last;
    a7 = last;
  }
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
#define ROW_FMA_T(r)                                   \
  do {                                                 \
    __m512 a_ = _mm512_set1_ps(a##r[p]);               \
    c##r##0 = _mm512_fmadd_ps(a_, b0, c##r##0);        \
    c##r##1 = _mm512_fmadd_ps(a_, b1, c##r##1);        \
  } while (0)
  for (int64_t p = 0; p < kc; p++) {
    __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
    ROW_FMA_T(0); ROW_FMA_T(1); ROW_FMA_T(2); ROW_FMA_T(3);
    ROW_FMA_T(4); ROW_FMA_T(5); ROW_FMA_T(6); ROW_FMA_T(7);
    bp += NR;
  }
#undef ROW_FMA_T
  float t[8 * 32] __attribute__((aligned(64)));
  __m512 va = _mm512_set1_ps(alpha);
#define ROW_OUT(r)                                                   \
  _mm512_store_ps(t + 32 * (r), _mm512_mul_ps(c##r##0, va));          \
  _mm512_store_ps(t + 32 * (r) + 16, _mm512_mul_ps(c##r##1, va));
  ROW_OUT(0) ROW_OUT(1) ROW_OUT(2) ROW_OUT(3) ROW_OUT(4) ROW_OUT(5) ROW_OUT(6) ROW_OUT(7)
#undef ROW_OUT
  __mmask8 m = (__mmask8)((1u << rows) - 1);
  __m256 vb = _mm256_set1_ps(beta);
  for (int q0 = 0; q0 < cols; q0 += 8) {
    float o[64] __attribute__((aligned(32)));
    const float *r_[8] = {t + q0, t + 32 + q0, t + 64 + q0, t + 96 + q0,
                          t + 128 + q0, t + 160 + q0, t + 192 + q0, t + 224 + q0};
    transpose_8x8(r_, o, 8);
    int qn = cols - q0 < 8 ? cols - q0 : 8;
    for (int q = 0; q < qn; q++) {
      float *cq = c + (q0 + q) * ldc;
      __m256 v = _mm256_load_ps(o + 8 * q);
      if (beta != 0.0f) v = _mm256_fmadd_ps(_mm256_maskz_loadu_ps(m, cq), vb, v);
      _mm256_mask_storeu_ps(cq, m, v);
    }
  }
}

/* gemm.h's rows: the 8 x 32 tile of micro, B's two vectors per k step
   loaded in place from row p's offset (unaligned), and each row's kept
   columns compressed into place (register compress, then a masked store:
   the compress to memory is slow on some cores). */
static void rows_tile(int64_t k, const float *restrict ap, const float *b, const int32_t *restrict off, float *c,
                      int64_t ldc, int rows, const dn_gemm_rows_map *map) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  for (int64_t p = 0; p < k; p++) {
    const float *bp = b + off[p];
    __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
    ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3);
    ROW_FMA(4); ROW_FMA(5); ROW_FMA(6); ROW_FMA(7);
    ap += MR;
  }
  __mmask16 k0 = (__mmask16)map->keep[0], k1 = (__mmask16)map->keep[1];
  __mmask16 n0 = (__mmask16)((1u << __builtin_popcount(k0)) - 1), n1 = (__mmask16)((1u << __builtin_popcount(k1)) - 1);
  int64_t at0 = map->at[0], at1 = map->at[1];
#define ROW_KEEP(r)                                                                   \
  if (r < rows) {                                                                     \
    float *cr = c + (r) * ldc;                                                        \
    _mm512_mask_storeu_ps(cr + at0, n0, _mm512_maskz_compress_ps(k0, c##r##0));       \
    _mm512_mask_storeu_ps(cr + at1, n1, _mm512_maskz_compress_ps(k1, c##r##1));       \
  }
  ROW_KEEP(0) ROW_KEEP(1) ROW_KEEP(2) ROW_KEEP(3) ROW_KEEP(4) ROW_KEEP(5) ROW_KEEP(6) ROW_KEEP(7)
#undef ROW_KEEP
}

/* The unpacked paths (gemm_direct.h): an 8 x 32 tile as the packed one;
   dot's 4 x 5 (20 accumulators, 9 loads per 20 FMAs). */
#define DV_T __m512
#define DV_LANES 16
#define DR 8
#define DV 2
#define DOT_R 4
#define DOT_J 5
typedef __mmask16 dv_mask;
static inline dv_mask dv_mask_of(int n) { return (dv_mask)(n >= 16 ? 0xFFFFu : n <= 0 ? 0u : (1u << n) - 1); }
static inline __m512 dv_zero(void) { return _mm512_setzero_ps(); }
static inline __m512 dv_set1(float x) { return _mm512_set1_ps(x); }
static inline __m512 dv_bcast(const float *p) { return _mm512_set1_ps(*p); }
static inline __m512 dv_load(const float *p) { return _mm512_loadu_ps(p); }
static inline __m512 dv_load_mask(const float *p, dv_mask m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void dv_store(float *p, __m512 v) { _mm512_storeu_ps(p, v); }
static inline void dv_store_mask(float *p, dv_mask m, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }
static inline __m512 dv_fma(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
static inline __m512 dv_mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
static inline float dv_hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

#include "gemm_direct.h"

/* The sparse path (gemm_sparse.h): rows of 8 vectors, 128 columns of C. */
#define SP_V 8
static inline unsigned dv_nonzero_bits(const float *p, int n) {
  __m512 v = n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(dv_mask_of(n), p);
  return _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);   /* NaN counts: unordered */
}
#include "gemm_sparse.h"

/* KC: the B micro-panel, kc x NR = 32 KB, stays in L1 (48 KB on Sapphire
   Rapids and Zen 5); MC: the A block, mc x kc = 256 KB, in L2; NC: the B
   block kc x nc = 1 MB. KC 192-512 measured alike here on the model's shapes. */
const dn_gemm_kernel dn_gemm_kernel_avx512 = {
  .name = "avx512", .cpu_features = {"avx512f", "avx512vl", NULL},
  .mr = MR, .nr = NR, .kc = 288, .mc = 256, .nc = 1024,
  .pack_a = pack_a, .pack_b = pack_b, .micro = micro,
  .direct_cols = DV_COLS, .direct_max_m = 64, .dot_rows = DOT_R, .dot_cols = DOT_J,
  .direct = direct, .dot = dot, .micro_t = micro_t, .rows = rows_tile, .rows_lanes = 16,
  .sparse_cols = SP_COLS, .sparse_lanes = DV_LANES, .sparse_count = sparse_count, .sparse_lists = sparse_lists,
  .sparse_pack = sparse_pack, .sparse = sparse,
};

#endif
