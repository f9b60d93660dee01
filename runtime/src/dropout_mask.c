/*
** The dropout family's random kernels: keep/drop decisions from a
** counter-based generator (Philox4x32-10), the masked passes built on them,
** and gaussian dropout's noise. dropout.c (the ops and their nodes) and
** linear.c (the fused linear + ReLU + dropout layer) run them; nothing here
** records a node or allocates.
**
** Reproducibility contract (changing any of this changes every mask):
** - A keep/drop decision k uses 16 random bits: block (offset + k/8) of
**   Philox stream 1 under the generator's seed (rand/randn use stream 0, so
**   a dropout call and a rand call never share counters), word (k%8)/2,
**   low 16 bits for even k and high 16 bits for odd k. Decision k is "keep"
**   iff bits >= threshold, threshold = round(p * 65536) (half away from
**   zero), so p is used as threshold/65536 everywhere, scales included.
** - dropout: decision k is element k (row-major). dropout_channels on
**   [N, C, *]: decision n*C + c for the whole channel. dropout_locked on
**   [T, N, F]: decision n*F + f at every t. dropconnect_linear: decision k
**   is element k of the weight [out, in]. alpha_dropout and
**   linear_relu_dropout (on its output): as dropout.
** - Kept elements are x * scale with scale = (float)(1 / (1 - threshold/65536))
**   for INVERTED and 1 for TEST_TIME; dropped elements are exactly 0 (a
**   select, not a multiply: x = inf or NaN still gives 0).
** - gaussian_dropout: z_i is randn's element i (rng.h: block offset + i/4,
**   Box-Muller, rounded to float) but on stream 1, and y_i = x_i * noise_i
**   with noise_i = (float)(1 + sqrt(p/(1-p)) z_i) in double, p as given (no
**   rounding: there is no threshold).
** - dropblock2d (dropblock.c): decision k is the block anchored at centre
**   position k of the planes' centre grids; "keep" means no block there.
** - After a forward the offset advances by ceil(decisions/8) blocks
**   (ceil(n/4) for gaussian). p = 0 and eval draw nothing.
** - Backward regenerates the decisions from (seed, offset) saved in the
**   node (and the shard's base below): no mask bytes are kept.
** - Batch shards (rng.h): with a shard [first, first + count) of total, an
**   op whose input has `per` decisions (normals for gaussian) per sample
**   uses decision first*per + k where the whole batch would use k, and
**   advances the offset by ceil(total*per/8) blocks (ceil(total*per/4) for
**   gaussian): the decisions of the full batch's rows first .. first+count-1.
**   per: the sample's elements (dropout, alpha, gaussian, the fused
**   linear's output row), its channels C (dropout_channels), its features F
**   (dropout_locked, sample = dim 1), its C * anchor rows * anchor columns
**   (dropblock2d). first*per is in general no multiple of 8 or 4, so every
**   kernel takes a base decision index; without a shard the base is 0 and
**   the code is the same. DropBlock's scale counts the kept elements of the
**   whole batch (every process walks every sample's decisions once more).
**
** Speed. The decision bits come from a hand-vectorized Philox (AVX-512 or
** AVX2 intrinsics, else the portable dn_philox_blocks; all three give the
** same bits, tested) that emits 128 decisions per call, transposed into
** element order, followed by a plain select loop the compiler vectorizes.
** Measured on this project's 2-core AMD EPYC (Zen 5, AVX-512), gcc 12:
** - gcc's own vectorization of dn_philox_blocks widens lanes to 64 bits and
**   uses vpmullq: ~2 G decisions/s with 2 threads. The intrinsics (even/odd
**   vpmuludq merged by one masked shuffle): ~10-12 G decisions/s.
** - 16 bits per decision: half the Philox work of 32 bits per element.
** - A software prefetch of the input 4 KB ahead: without it the hardware
**   prefetcher fell behind while the core was busy in Philox rounds and the
**   forward on 16M floats ran at ~30% of a parallel memcpy; with it at
**   82-106% (bench_dropout, 1 and 2 threads, same run). Non-temporal stores
**   were slower. In-cache tensors ([128,1024]) are generator-bound at
**   ~35-40% of an in-cache copy (~4-5 G elements/s).
*/
#include <math.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "dropnet/alloc.h"
#include "dropout_mask.h"
#include "internal.h"
#include "philox.h"
#include "shape.h"

#define DROPOUT_STREAM 1
#define DECISIONS_PER_BLOCK DN_DROPOUT_DECISIONS_PER_BLOCK
#define GROUP (DN_PHILOX_LANES * DECISIONS_PER_BLOCK)   /* decisions per generator call */
#define FULL_THRESHOLD DN_DROPOUT_FULL_THRESHOLD        /* p = 1: nothing kept */
#define PREFETCH_AHEAD 1024                             /* elements (4 KB) */
#define CACHE_LINE_FLOATS 16
/* Every pass is split over threads at multiples of GROUP (dn_parallel_range):
   a value depends only on its index, so the split never changes a result. */

/* --- decision bits ------------------------------------------------------------ */

#if defined(__AVX512F__)
/* High 32 bits of the 32x32 products c * m, lane-wise: even lanes from one
   vpmuludq, odd lanes from another, merged by one masked shuffle. */
static inline __m512i mulhi_epu32_512(__m512i c, __m512i m) {
  __m512i even = _mm512_mul_epu32(c, m);
  __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);
  return _mm512_mask_shuffle_epi32(odd, 0x5555, even, _MM_PERM_CDAB);
}

/* Blocks first_block .. first_block+15 (lane l = block first_block + l). */
static inline void group_bits(uint16_t bits[GROUP], uint64_t seed, uint64_t first_block) {
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)first_block), lane);
  __m512i high = _mm512_set1_epi32((int)(uint32_t)(first_block >> 32));
  __mmask16 carry = _mm512_cmplt_epu32_mask(c0, lane);   /* the low word wrapped */
  __m512i c1 = _mm512_mask_add_epi32(high, carry, high, _mm512_set1_epi32(1));
  __m512i c2 = _mm512_set1_epi32(DROPOUT_STREAM), c3 = _mm512_setzero_si512();
  const __m512i m0 = _mm512_set1_epi32((int)DN_PHILOX_M0), m1 = _mm512_set1_epi32((int)DN_PHILOX_M1);
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma GCC unroll 10
  for (int r = 0; r < 10; r++) {
    if (r) {
      k0 += DN_PHILOX_W0;
      k1 += DN_PHILOX_W1;
    }
    __m512i hi0 = mulhi_epu32_512(c0, m0), lo0 = _mm512_mullo_epi32(c0, m0);
    __m512i hi1 = mulhi_epu32_512(c2, m1), lo1 = _mm512_mullo_epi32(c2, m1);
    c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32((int)k0), 0x96);   /* 3-way xor */
    c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32((int)k1), 0x96);
    c1 = lo1;
    c3 = lo0;
  }
  /* word-major lanes -> block-major words: a 4x16 transpose */
  __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
  __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
  __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);   /* blocks 0,4,8,12 / 1,5,9,13 */
  __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);   /* blocks 2,6,10,14 / 3,7,11,15 */
  __m512i a = _mm512_shuffle_i32x4(u0, u1, 0x88), b = _mm512_shuffle_i32x4(u2, u3, 0x88);
  __m512i c = _mm512_shuffle_i32x4(u0, u1, 0xDD), d = _mm512_shuffle_i32x4(u2, u3, 0xDD);
  /* little-endian: the 16-bit halves of block l's words are bits[8l .. 8l+7] */
  _mm512_storeu_si512((void *)(bits + 0), _mm512_shuffle_i32x4(a, b, 0x88));
  _mm512_storeu_si512((void *)(bits + 32), _mm512_shuffle_i32x4(c, d, 0x88));
  _mm512_storeu_si512((void *)(bits + 64), _mm512_shuffle_i32x4(a, b, 0xDD));
  _mm512_storeu_si512((void *)(bits + 96), _mm512_shuffle_i32x4(c, d, 0xDD));
}

#elif defined(__AVX2__)
static inline __m256i mulhi_epu32_256(__m256i c, __m256i m) {
  __m256i even = _mm256_mul_epu32(c, m);
  __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
  return _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

/* Blocks first_block .. first_block+7 into bits[0 .. 63]. */
static inline void eight_blocks_bits(uint16_t bits[GROUP / 2], uint64_t seed, uint64_t first_block) {
  const __m256i lane = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
  const __m256i sign = _mm256_set1_epi32(INT32_MIN);
  __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)first_block), lane);
  /* the low word wrapped iff c0 < lane (unsigned; compared with the sign bit flipped) */
  __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(lane, sign), _mm256_xor_si256(c0, sign));
  __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32((int)(uint32_t)(first_block >> 32)), carry);
  __m256i c2 = _mm256_set1_epi32(DROPOUT_STREAM), c3 = _mm256_setzero_si256();
  const __m256i m0 = _mm256_set1_epi32((int)DN_PHILOX_M0), m1 = _mm256_set1_epi32((int)DN_PHILOX_M1);
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma GCC unroll 10
  for (int r = 0; r < 10; r++) {
    if (r) {
      k0 += DN_PHILOX_W0;
      k1 += DN_PHILOX_W1;
    }
    __m256i hi0 = mulhi_epu32_256(c0, m0), lo0 = _mm256_mullo_epi32(c0, m0);
    __m256i hi1 = mulhi_epu32_256(c2, m1), lo1 = _mm256_mullo_epi32(c2, m1);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32((int)k0));
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32((int)k1));
    c1 = lo1;
    c3 = lo0;
  }
  __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
  __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
  __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);   /* blocks 0,4 / 1,5 */
  __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);   /* blocks 2,6 / 3,7 */
  _mm256_storeu_si256((__m256i *)(bits + 0), _mm256_permute2x128_si256(u0, u1, 0x20));
  _mm256_storeu_si256((__m256i *)(bits + 16), _mm256_permute2x128_si256(u2, u3, 0x20));
  _mm256_storeu_si256((__m256i *)(bits + 32), _mm256_permute2x128_si256(u0, u1, 0x31));
  _mm256_storeu_si256((__m256i *)(bits + 48), _mm256_permute2x128_si256(u2, u3, 0x31));
}

static inline void group_bits(uint16_t bits[GROUP], uint64_t seed, uint64_t first_block) {
  eight_blocks_bits(bits, seed, first_block);
  eight_blocks_bits(bits + GROUP / 2, seed, first_block + 8);
}

#else
static inline void group_bits(uint16_t bits[GROUP], uint64_t seed, uint64_t first_block) {
  uint32_t words[4][DN_PHILOX_LANES];
  dn_philox_blocks(words, seed, first_block, DROPOUT_STREAM);
  for (int l = 0; l < DN_PHILOX_LANES; l++)
    for (int w = 0; w < 4; w++) {
      bits[8 * l + 2 * w] = (uint16_t)words[w][l];
      bits[8 * l + 2 * w + 1] = (uint16_t)(words[w][l] >> 16);
    }
}
#endif

/* --- masked element-wise kernel -------------------------------------------------- */

/*
** dst[i] = keep(base + d) ? src[i] * scale (+ shift) : fill, with
** d = i % period (elements in rows of `period` decisions; rows = 1 for
** dropout, T for locked dropout). dst may be src (in place). Thresholds 0 and 65536 keep or
** drop everything without generating bits.
*/
typedef struct mask_job {
  float *dst;
  const float *src;
  int64_t period;
  int64_t base;        /* decision of element 0 (a batch shard's first*per; 0 without) */
  uint64_t seed, offset;
  uint32_t threshold;
  bool affine;         /* alpha dropout: kept = src * scale + shift, dropped = fill */
  float scale, shift, fill;
} mask_job;

static inline void masked_segment(const mask_job *job, float *dst, const float *src, int64_t len,
                                  const uint16_t *bits) {
  uint32_t threshold = job->threshold;
  float scale = job->scale, shift = job->shift, fill = job->fill;
  if (job->affine) {
#pragma omp simd
    for (int64_t m = 0; m < len; m++)
      dst[m] = dn_keep_or(bits[m] >= threshold, src[m] * scale + shift, fill);
  } else {
#pragma omp simd
    for (int64_t m = 0; m < len; m++) dst[m] = dn_keep_or(bits[m] >= threshold, src[m] * scale, 0.0f);
  }
}

/* The same with one decision for the whole segment. */
static void constant_segment(const mask_job *job, float *dst, const float *src, int64_t len, bool keep) {
  float scale = job->scale, shift = job->affine ? job->shift : 0.0f, fill = job->affine ? job->fill : 0.0f;
  if (!keep) {
#pragma omp simd
    for (int64_t m = 0; m < len; m++) dst[m] = fill;
  } else if (job->affine) {
#pragma omp simd
    for (int64_t m = 0; m < len; m++) dst[m] = src[m] * scale + shift;
  } else {
#pragma omp simd
    for (int64_t m = 0; m < len; m++) dst[m] = src[m] * scale;
  }
}

static void mask_range(const void *opaque, int64_t i0, int64_t i1) {
  const mask_job *job = opaque;
  bool constant = job->threshold == 0 || job->threshold >= FULL_THRESHOLD;
  _Alignas(64) uint16_t bits[GROUP];
  int64_t cached_group = -1;
  int64_t d = i0 % job->period;   /* element i's decision within its row */
  for (int64_t i = i0; i < i1;) {
    int64_t k = job->base + d;      /* ... and in the generator's numbering */
    int64_t group = k / GROUP, in_group = k - group * GROUP;
    int64_t len = GROUP - in_group;
    if (len > job->period - d) len = job->period - d;
    if (len > i1 - i) len = i1 - i;
    if (constant) {
      constant_segment(job, job->dst + i, job->src + i, len, job->threshold == 0);
    } else {
      if (i + PREFETCH_AHEAD + len <= i1)
        for (int64_t m = 0; m < len; m += CACHE_LINE_FLOATS) __builtin_prefetch(job->src + i + PREFETCH_AHEAD + m);
      if (group != cached_group) {
        group_bits(bits, job->seed, job->offset + (uint64_t)group * DN_PHILOX_LANES);
        cached_group = group;
      }
      masked_segment(job, job->dst + i, job->src + i, len, bits + in_group);
    }
    i += len;
    d += len;
    if (d == job->period) d = 0;
  }
}

/* --- channel kernel ----------------------------------------------------------------- */

/* dst = keep(base + i / channel_size) ? src * scale : 0, one decision per channel. */
typedef struct channel_job {
  float *dst;
  const float *src;
  int64_t channel_size;
  int64_t base;   /* decision of channel 0 */
  uint64_t seed, offset;
  uint32_t threshold;
  float scale;
} channel_job;

static void channel_range(const void *opaque, int64_t i0, int64_t i1) {
  const channel_job *job = opaque;
  _Alignas(64) uint16_t bits[GROUP];
  int64_t cached_group = -1;
  int64_t k = i0 / job->channel_size, pos = i0 - k * job->channel_size;
  mask_job segment = {.scale = job->scale};
  for (int64_t i = i0; i < i1; k++, pos = 0) {
    int64_t len = job->channel_size - pos;
    if (len > i1 - i) len = i1 - i;
    bool keep;
    if (job->threshold == 0 || job->threshold >= FULL_THRESHOLD) {
      keep = job->threshold == 0;
    } else {
      int64_t decision = job->base + k, group = decision / GROUP;
      if (group != cached_group) {
        group_bits(bits, job->seed, job->offset + (uint64_t)group * DN_PHILOX_LANES);
        cached_group = group;
      }
      keep = bits[decision - group * GROUP] >= job->threshold;
    }
    constant_segment(&segment, job->dst + i, job->src + i, len, keep);
    i += len;
  }
}

/* --- drivers ----------------------------------------------------------------------- */

void dn_dropout_mask_run(float *dst, const float *src, int64_t numel, dn_mask_layout layout, int64_t period,
                         int64_t base, uint64_t seed, uint64_t offset, uint32_t threshold, bool affine, float scale,
                         float shift, float fill) {
  if (numel == 0) return;
  if (layout == DN_MASK_CHANNELS) {
    channel_job job = {dst, src, period, base, seed, offset, threshold, scale};
    dn_parallel_range(numel, GROUP, channel_range, &job);
  } else {
    mask_job job = {dst, src, period, base, seed, offset, threshold, affine, scale, shift, fill};
    dn_parallel_range(numel, GROUP, mask_range, &job);
  }
}

_Static_assert(DN_DROPOUT_SPAN_ALIGN % GROUP == 0, "spans must start on a generator call");

void dn_dropout_mask_span(float *data, int64_t i0, int64_t i1, int64_t base, uint64_t seed, uint64_t offset,
                          uint32_t threshold, float scale) {
  /* period = the span's end: decision base + i is element i's for every i in the span */
  mask_job job = {data, data, i1, base, seed, offset, threshold, false, scale, 0.0f, 0.0f};
  mask_range(&job, i0, i1);
}

void dn_dropout_keep_span(uint8_t *dst, int64_t k0, int64_t n, uint64_t seed, uint64_t offset, uint32_t threshold) {
  if (threshold == 0 || threshold >= FULL_THRESHOLD) {
    memset(dst, threshold == 0, (size_t)n);
    return;
  }
  _Alignas(64) uint16_t bits[GROUP];
  for (int64_t k = k0, end = k0 + n; k < end;) {
    int64_t group = k / GROUP, in_group = k - group * GROUP;
    int64_t len = GROUP - in_group < end - k ? GROUP - in_group : end - k;
    group_bits(bits, seed, offset + (uint64_t)group * DN_PHILOX_LANES);
    uint8_t *out = dst + (k - k0);
    const uint16_t *b = bits + in_group;
#pragma omp simd
    for (int64_t m = 0; m < len; m++) out[m] = b[m] >= threshold;
    k += len;
  }
}

typedef struct keep_job {
  uint8_t *dst;
  int64_t base;
  uint64_t seed, offset;
  uint32_t threshold;
} keep_job;

static void keep_range(const void *opaque, int64_t i0, int64_t i1) {
  const keep_job *job = opaque;
  dn_dropout_keep_span(job->dst + i0, job->base + i0, i1 - i0, job->seed, job->offset, job->threshold);
}

void dn_dropout_keep_run(uint8_t *dst, int64_t n, int64_t base, uint64_t seed, uint64_t offset, uint32_t threshold) {
  keep_job job = {dst, base, seed, offset, threshold};
  dn_parallel_range(n, GROUP, keep_range, &job);
}

/* --- gaussian noise ---------------------------------------------------------------- */

#define NORMALS_PER_BLOCK 4
#define TWO_PI 6.283185307179586476925286766559

/* dst[i] = src[i] * (float)(1 + sigma * z_(base+i)), z_j as randn's element j on stream 1. */
typedef struct gaussian_job {
  float *dst;
  const float *src;
  int64_t numel;
  int64_t base;
  uint64_t seed, offset;
  double sigma;
} gaussian_job;

static void gaussian_range(const void *opaque, int64_t i0, int64_t i1) {
  const gaussian_job *job = opaque;
  /* global numbering: element i is normal base + i */
  int64_t base = job->base, j0 = base + i0, j1 = base + i1;
  for (int64_t block = j0 / NORMALS_PER_BLOCK; block * NORMALS_PER_BLOCK < j1; block++) {
    uint32_t x[4];
    dn_philox_block(x, job->seed, job->offset + (uint64_t)block, DROPOUT_STREAM);
    for (int pair = 0; pair < 2; pair++) {
      double u1 = (double)((x[2 * pair] >> 8) + 1) * 0x1p-24;   /* (0, 1]: finite log */
      double u2 = (double)(x[2 * pair + 1] >> 8) * 0x1p-24;
      double radius = sqrt(-2.0 * log(u1)), angle = TWO_PI * u2;
      double z[2] = {radius * cos(angle), radius * sin(angle)};
      for (int h = 0; h < 2; h++) {
        int64_t j = block * NORMALS_PER_BLOCK + 2 * pair + h;
        if (j >= j0 && j < j1) job->dst[j - base] = job->src[j - base] * (float)(1.0 + job->sigma * (double)(float)z[h]);
      }
    }
  }
}

void dn_gaussian_noise_run(float *dst, const float *src, int64_t n, int64_t base, uint64_t seed, uint64_t offset,
                           double sigma) {
  gaussian_job job = {dst, src, n, base, seed, offset, sigma};
  dn_parallel_range(n, GROUP, gaussian_range, &job);
}

/* --- parameters ---------------------------------------------------------------------- */

static uint64_t blocks_for(int64_t decisions, int64_t per_block) {
  return (uint64_t)((decisions + per_block - 1) / per_block);
}

uint64_t dn_dropout_blocks(int64_t decisions) { return blocks_for(decisions, DECISIONS_PER_BLOCK); }
uint64_t dn_gaussian_blocks(int64_t n) { return blocks_for(n, NORMALS_PER_BLOCK); }

dn_status dn_dropout_no_batch(const char *op, const dn_rng *rng, const char *shape_text) {
  if (!rng || rng->shard_count == 0) return DN_OK;
  return dn_fail(DN_ESHAPE, "%s: the generator holds samples %lld..%lld of a batch of %lld, but input %s has no batch "
                 "dimension (give it one of size %lld)", op, (long long)rng->shard_first + 1,
                 (long long)(rng->shard_first + rng->shard_count), (long long)rng->shard_total, shape_text,
                 (long long)rng->shard_count);
}

dn_status dn_dropout_shard(const char *op, const dn_rng *rng, int64_t batch, int64_t per, int64_t *base,
                           int64_t *decisions) {
  int64_t first, total;
  dn_status st = dn_rng_batch(op, rng, batch, &first, &total);
  if (st) return st;
  /* first < total, so first * per fits whenever total * per does */
  if (!dn_size_mul(total, per, decisions))
    return dn_fail(DN_ESHAPE, "%s: a batch of %lld samples with %lld random decisions each is too large", op,
                   (long long)total, (long long)per);
  *base = first * per;
  return DN_OK;
}

dn_status dn_dropout_channel_keep(const char *op, const dn_rng *rng, int64_t batch, int64_t channels, double p,
                                  dn_dropout_scaling scaling, dn_channel_keep *out) {
  *out = (dn_channel_keep){NULL, 1.0f, 0};
  int64_t base = 0, decisions = 0;
  dn_status st = dn_dropout_shard(op, rng, batch, channels, &base, &decisions);
  if (st || p == 0.0) return st;   /* p 0: the dropout would return its input, nothing drawn */
  int64_t rows = batch * channels;
  if (!(out->keep = dn_alloc((size_t)rows + 1)))
    return dn_fail(DN_ENOMEM, "%s: out of memory for %lld channel decisions", op, (long long)rows);
  uint32_t threshold = dn_dropout_threshold(p);
  dn_dropout_keep_span(out->keep, base, rows, rng->seed, rng->offset, threshold);
  out->scale = dn_dropout_scale(threshold, scaling);
  out->advance = dn_dropout_blocks(decisions);
  return DN_OK;
}

dn_status dn_dropout_check_p(const char *op, double p) {
  if (!(p >= 0.0 && p <= 1.0)) return dn_fail(DN_EINVAL, "%s: p must be in [0, 1] (got %g)", op, p);
  return DN_OK;
}

dn_status dn_dropout_check_scaling(const char *op, dn_dropout_scaling scaling) {
  if (scaling != DN_DROPOUT_INVERTED && scaling != DN_DROPOUT_TEST_TIME)
    return dn_fail(DN_EINVAL, "%s: unknown scaling %d (use inverted or test_time)", op, (int)scaling);
  return DN_OK;
}

uint32_t dn_dropout_threshold(double p) { return (uint32_t)llround(p * 65536.0); }

/* 1/(1-p) of the rounded p for INVERTED (0 when nothing is kept), 1 for TEST_TIME. */
float dn_dropout_scale(uint32_t threshold, dn_dropout_scaling scaling) {
  if (scaling == DN_DROPOUT_TEST_TIME) return 1.0f;
  if (threshold >= FULL_THRESHOLD) return 0.0f;
  return (float)(65536.0 / (double)(FULL_THRESHOLD - threshold));
}

dn_status dn_dropout_check_params(const char *op, double p, const dn_rng *rng, dn_dropout_scaling scaling) {
  dn_status st = dn_dropout_check_p(op, p);
  if (!st && !rng) st = dn_fail(DN_EINVAL, "%s: generator is NULL", op);
  if (!st) st = dn_dropout_check_scaling(op, scaling);
  return st;
}
