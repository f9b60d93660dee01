/*
** Packing for gemm.c's kernels, written once and included by each kernel's
** file (gemm_avx512.c, gemm_avx2.c), so it is compiled for that file's
** instruction set with the panel width W a constant. Both have AVX: the 8 x 8
** transposes use it. The including file defines its micro-tile MR x NR
** first and gets its pack_a and pack_b (dn_gemm_kernel's) from here.
**
** pack_block (contract: dn_gemm_pack_fn in gemm.h) takes whichever way the
** source is laid out. Loop orders matter more than instructions here: rows
** 4 KB apart (a 1024-float matrix) or panels 32 KB apart all map to one L1
** set, and touching more of them at once than the cache has ways makes every
** line come in again. Measured: dealing each source row of a 1024 x 1024
** block out to all 32 panels ran at 16 GB/s, 4 panels at a time at 47 GB/s;
** A's 8-row panels of a [128, 1024] gradient, 14 GB/s 32 at a time, 51 GB/s 8.
*/
#ifndef DROPNET_GEMM_PACK_H
#define DROPNET_GEMM_PACK_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define PACK_GROUP_BYTES 512    /* of each source row per pass */
#define PACK_GROUP_STREAMS 8    /* panels written per pass, at most */

static inline int64_t pack_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* dst row i (stride ds) = value i of each of the 8 rows r[0..7], 8 values each. */
static inline __attribute__((always_inline)) void transpose_8x8(const float *const r_[8], float *dst, int64_t ds) {
  __m256 r0 = _mm256_loadu_ps(r_[0]), r1 = _mm256_loadu_ps(r_[1]), r2 = _mm256_loadu_ps(r_[2]),
         r3 = _mm256_loadu_ps(r_[3]), r4 = _mm256_loadu_ps(r_[4]), r5 = _mm256_loadu_ps(r_[5]),
         r6 = _mm256_loadu_ps(r_[6]), r7 = _mm256_loadu_ps(r_[7]);
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

/* One row of W values from s, zeros beyond count (a constant-size copy for
   full rows: vector moves). */
static inline __attribute__((always_inline)) void copy_row(float *d, const float *s, int64_t count, int64_t W) {
  if (count >= W) {
    memcpy(d, s, (size_t)W * sizeof(float));
  } else {
    for (int64_t x = 0; x < count; x++) d[x] = s[x];
    for (int64_t x = count; x < W; x++) d[x] = 0.0f;
  }
}

static inline __attribute__((always_inline)) void pack_block(const float *src, int64_t along, int64_t across,
                                                             int64_t len, int64_t width, float *dst, int64_t W) {
  if (across == 1) {
    /* Each p is a contiguous run of `width` values: a few panels at a time,
       walking every p. */
    int64_t group = pack_min(PACK_GROUP_STREAMS, PACK_GROUP_BYTES / (W * (int64_t)sizeof(float)));
    if (group < 1) group = 1;
    for (int64_t q0 = 0; q0 * W < width; q0 += group) {
      int64_t q1 = pack_min(q0 + group, (width + W - 1) / W);
      for (int64_t p = 0; p < len; p++)
        for (int64_t q = q0; q < q1; q++)
          copy_row(dst + (q * len + p) * W, src + p * along + q * W, width - q * W, W);
    }
    return;
  }
  /* Each w is a contiguous run along p (along == 1): 8 x 8 transposes, 8
     source rows at a time, each walked to the end before the next 8. A group
     of fewer than 8 (the ragged end, or a width W that is not a multiple of
     8) goes through a small buffer, reading its last row again for the
     missing ones. */
  int64_t len8 = len / 8 * 8;
  for (int64_t q = 0; q * W < width; q++) {
    const float *s = src + q * W * across;
    float *d = dst + q * W * len;
    int64_t cols = pack_min(W, width - q * W);
    for (int64_t w = 0; w < W; w += 8) {
      int64_t g = pack_min(8, cols - w); /* source rows in this group (<= 0: zeros) */
      int64_t take = pack_min(8, W - w);  /* values of each dst row it fills */
      if (g <= 0) { /* past the last column: zeros */
        for (int64_t p = 0; p < len; p++)
          for (int64_t x = 0; x < take; x++) d[p * W + w + x] = 0.0f;
        continue;
      }
      const float *rows[8];
      for (int x = 0; x < 8; x++) rows[x] = s + (w + (x < g ? x : g - 1)) * across;
      if (g == 8 && take == 8) {
        for (int64_t p = 0; p < len8; p += 8) {
          const float *r[8] = {rows[0] + p, rows[1] + p, rows[2] + p, rows[3] + p,
                               rows[4] + p, rows[5] + p, rows[6] + p, rows[7] + p};
          transpose_8x8(r, d + p * W + w, W);
        }
      } else {
        for (int64_t p = 0; p < len8; p += 8) {
          const float *r[8] = {rows[0] + p, rows[1] + p, rows[2] + p, rows[3] + p,
                               rows[4] + p, rows[5] + p, rows[6] + p, rows[7] + p};
          float out[64];
          transpose_8x8(r, out, 8);
          for (int64_t y = 0; y < 8; y++)
            for (int64_t x = 0; x < take; x++) d[(p + y) * W + w + x] = x < g ? out[8 * y + x] : 0.0f;
        }
      }
      for (int64_t p = len8; p < len; p++)
        for (int64_t x = 0; x < take; x++) d[p * W + w + x] = x < g ? s[(w + x) * across + p] : 0.0f;
    }
  }
}

#if !defined(MR) || !defined(NR)
#error "gemm_pack.h: define the kernel's MR and NR before including it"
#endif

/* The kernel's packers: A into MR-row panels, B into NR-column panels. */
static void pack_a(const float *src, int64_t along, int64_t across, int64_t len, int64_t width, float *dst) {
  pack_block(src, along, across, len, width, dst, MR);
}

static void pack_b(const float *src, int64_t along, int64_t across, int64_t len, int64_t width, float *dst) {
  pack_block(src, along, across, len, width, dst, NR);
}

#endif
