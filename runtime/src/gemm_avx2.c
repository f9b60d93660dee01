/*
** gemm.c's AVX2 + FMA kernel, for machines without AVX-512 (AMD Zen 3): a
** 4 x 24 micro-tile in 12 ymm accumulators (4 rows x 3 vectors), fed per k
** step by 3 vector loads of the B panel and 4 broadcasts of the A panel; all
** 16 ymm registers, no spills (checked in the object code). Masked loads and
** stores handle the C window's ragged edges. Compiled with AVX2 and FMA and
** without AVX-512 whatever the build targets (CMakeLists.txt), so it runs
** here as it would on such a machine.
**
** Why 4 x 24 and not the classic 6 x 16: measured here (one Sapphire Rapids
** core, DROPNET_SGEMM=avx2, thread CPU time, 7 alternating rounds) 3-5%
** faster on every model shape (e.g. [128,784]@[784,1024]^T 89 against 85
** GFLOP/s, of a 114 GFLOP/s 256-bit FMA peak): 4 divides the batch of 128
** where 6 computes 3% of padding rows, and it loads less per FMA (7 loads
** per 12 FMAs against 8). OpenBLAS's Haswell kernels: 87 on that shape.
*/
#include "gemm.h"

#include <math.h>

#ifdef DN_HAVE_GEMM

#define MR 4
#define NR 24

#include "gemm_pack.h"   /* pack_a, pack_b for these MR, NR */

#define ROW_FMA(r)                                     \
  do {                                                 \
    __m256 a_ = _mm256_broadcast_ss(ap + (r));         \
    c##r##0 = _mm256_fmadd_ps(a_, b0, c##r##0);        \
    c##r##1 = _mm256_fmadd_ps(a_, b1, c##r##1);        \
    c##r##2 = _mm256_fmadd_ps(a_, b2, c##r##2);        \
  } while (0)

/* AMD's cores (Zen 2 to 4) run a ymm masked store as microcode, many times a plain store's cost (on a Zen 4,
   half of micro's time in conv 1 -> 32's forward, k = 9): masks only where a vector is cut, by the C window's
   edge or the rows map. n: the vector's lanes to store, from lane 0. */
static inline __m256 load_lanes(const float *p, __m256i m, int n) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}

static inline void store_lanes(float *p, __m256i m, int n, __m256 v) {
  if (n >= 8) _mm256_storeu_ps(p, v);
  else if (n > 0) _mm256_maskstore_ps(p, m, v);
}

#define ROW_STORE(r)                                                                  \
  if (r < rows) {                                                                     \
    float *cr = c + (r) * ldc;                                                        \
    __m256 v0 = _mm256_mul_ps(c##r##0, va), v1 = _mm256_mul_ps(c##r##1, va);          \
    __m256 v2 = _mm256_mul_ps(c##r##2, va);                                           \
    if (beta != 0.0f) {                                                               \
      v0 = _mm256_fmadd_ps(load_lanes(cr, m0, cols), vb, v0);                         \
      v1 = _mm256_fmadd_ps(load_lanes(cr + 8, m1, cols - 8), vb, v1);                 \
      v2 = _mm256_fmadd_ps(load_lanes(cr + 16, m2, cols - 16), vb, v2);               \
    }                                                                                 \
    store_lanes(cr, m0, cols, v0);                                                    \
    store_lanes(cr + 8, m1, cols - 8, v1);                                            \
    store_lanes(cr + 16, m2, cols - 16, v2);                                          \
  }

static void micro(int64_t kc, const float *restrict ap, const float *restrict bp, float *c, int64_t ldc, int rows,
                  int cols, float alpha, float beta) {
  for (int r = 0; r < rows; r++) {
    _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + NR - 1), _MM_HINT_T0);
  }
  /* The loop needs all 16 ymm registers (12 sums, 3 vectors of B, A's broadcast). alpha and beta arrive in
     two of them and gcc kept them there across the loop, spilling a sum to the stack (its FMA chain then ran
     through memory: 43 GFLOP/s on one Zen 4 core, [128,784] @ [1024,784]^T); through memory they free theirs.
     Without the asm, gcc folds B's loads into every FMA (12 loads a k step, not 3): 57 GFLOP/s. */
  volatile float alpha_mem = alpha, beta_mem = beta;
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00, c20 = c00, c21 = c00,
         c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  for (int64_t p = 0; p < kc; p++) {
    __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8), b2 = _mm256_load_ps(bp + 16);
    __asm__("" : "+x"(b0), "+x"(b1), "+x"(b2));
    ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3);
    ap += MR;
    bp += NR;
  }
  alpha = alpha_mem;
  beta = beta_mem;
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), lanes);
  __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8), lanes);
  __m256i m2 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 16), lanes);
  __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  ROW_STORE(0) ROW_STORE(1) ROW_STORE(2) ROW_STORE(3)
}

/* gemm.h's rows: the 4 x 24 tile of micro, B's three vectors per k step
   loaded in place from row p's offset (unaligned). AVX2 has no compress:
   each vector's kept columns are moved to its front by a lane permute (the
   map's pick) and stored by a masked store of that many lanes. */
static void rows_tile(int64_t k, const float *restrict ap, const float *b, const int32_t *restrict off, float *c,
                      int64_t ldc, int rows, const dn_gemm_rows_map *map) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00, c20 = c00, c21 = c00,
         c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  for (int64_t p = 0; p < k; p++) {
    const float *bp = b + off[p];
    __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8), b2 = _mm256_loadu_ps(bp + 16);
    ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3);
    ap += MR;
  }
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i nibble = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  __m256i p0 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)map->pick[0]), nibble), _mm256_set1_epi32(7));
  __m256i p1 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)map->pick[1]), nibble), _mm256_set1_epi32(7));
  __m256i p2 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)map->pick[2]), nibble), _mm256_set1_epi32(7));
  int n0 = __builtin_popcount(map->keep[0]), n1 = __builtin_popcount(map->keep[1]);
  int n2 = __builtin_popcount(map->keep[2]);
  __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n0), lanes);
  __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n1), lanes);
  __m256i m2 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n2), lanes);
  int64_t at0 = map->at[0], at1 = map->at[1], at2 = map->at[2];
  /* a whole vector kept: its pick is the identity */
#define ROW_KEEP(r)                                                                                       \
  if (r < rows) {                                                                                         \
    float *cr = c + (r) * ldc;                                                                            \
    store_lanes(cr + at0, m0, n0, n0 == 8 ? c##r##0 : _mm256_permutevar8x32_ps(c##r##0, p0));             \
    store_lanes(cr + at1, m1, n1, n1 == 8 ? c##r##1 : _mm256_permutevar8x32_ps(c##r##1, p1));             \
    store_lanes(cr + at2, m2, n2, n2 == 8 ? c##r##2 : _mm256_permutevar8x32_ps(c##r##2, p2));             \
  }
  ROW_KEEP(0) ROW_KEEP(1) ROW_KEEP(2) ROW_KEEP(3)
#undef ROW_KEEP
}

/* The unpacked paths (gemm_direct.h): a 4 x 24 tile as the packed one;
   dot's 4 x 3 (12 accumulators, 3 + 1 vectors loaded: all 16 ymm
   registers, no spill). 3 x 3's 9 FMA chains left the FMA units waiting on
   the chains' latency (5 cycles on Zen 3, 4 on Zen 4, two FMAs a cycle):
   one Zen 4 core, old -> new GFLOP/s, x @ W^T 32 x 784 by 64 x 784 95 ->
   104, 8 x 784 by 1024 x 784 80 -> 99, n 10 alike or faster (dot's bits
   are a function of k alone, whatever the tile). */
#define DV_T __m256
#define DV_LANES 8
#define DR 4
#define DV 3
#define DOT_R 4
#define DOT_J 3
typedef __m256i dv_mask;
static inline dv_mask dv_mask_of(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __m256 dv_zero(void) { return _mm256_setzero_ps(); }
static inline __m256 dv_set1(float x) { return _mm256_set1_ps(x); }
static inline __m256 dv_bcast(const float *p) { return _mm256_broadcast_ss(p); }
static inline __m256 dv_load(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 dv_load_mask(const float *p, dv_mask m) { return _mm256_maskload_ps(p, m); }
static inline void dv_store(float *p, __m256 v) { _mm256_storeu_ps(p, v); }
static inline void dv_store_mask(float *p, dv_mask m, __m256 v) { _mm256_maskstore_ps(p, m, v); }
static inline __m256 dv_fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
static inline __m256 dv_mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
static inline float dv_hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

#include "gemm_direct.h"

/* The sparse path (gemm_sparse.h): rows of 8 vectors, 64 columns of C. */
#define SP_V 8
static inline unsigned dv_nonzero_bits(const float *p, int n) {
  __m256 v = n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, dv_mask_of(n));
  return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));   /* NaN counts */
}
#include "gemm_sparse.h"

/* KC: the B micro-panel, kc x NR = 18 KB, stays in L1 with room for the A
   panel on Zen 3 (32 KB; KC 192 and 256 measured alike here, 48 KB); MC:
   the A block, mc x kc = 96 KB, in L2 (512 KB on Zen 3); NC: the B block,
   kc x nc = 774 KB, in L2/L3. */
const dn_gemm_kernel dn_gemm_kernel_avx2 = {
  .name = "avx2", .cpu_features = {"avx2", "fma", NULL},
  .mr = MR, .nr = NR, .kc = 192, .mc = 128, .nc = 1032,
  .pack_a = pack_a, .pack_b = pack_b, .micro = micro,
  .direct_cols = DV_COLS, .direct_max_m = 16, .dot_rows = DOT_R, .dot_cols = DOT_J,
  .direct = direct, .dot = dot, .rows = rows_tile, .rows_lanes = 8,
  .sparse_cols = SP_COLS, .sparse_lanes = DV_LANES, .sparse_count = sparse_count, .sparse_lists = sparse_lists,
  .sparse_pack = sparse_pack, .sparse = sparse,
};

#endif
