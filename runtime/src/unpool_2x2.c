/*
** The 2x2 max pool's backward from window codes (unpool_2x2.h): a plane's
** gradient rebuilt from the pooled gradient and each window's argmax code,
** for the fused batch norm blocks (norm.c, conv_first_block.c).
*/
#include <string.h>

#include "internal.h"
#include "unpool_2x2.h"

/* vector permutes where the build has them (dn_unpool_2x2_row) */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define UNPOOL_AVX512 1
#elif defined(__AVX2__)
#define UNPOOL_AVX2 1
#endif
#if defined(UNPOOL_AVX512) || defined(UNPOOL_AVX2)
#include <immintrin.h>
#endif
#include "store_first.h"

/*
** Row r's gradient as the unfused chain hands it to batch norm + ReLU's
** backward, with ReLU's backward applied, into plane (S floats). Max pool's
** backward zeroes the plane and adds each output's gradient (after a
** dropout, g * scale: its backward on a kept row; a dropped row's windows
** have none) at its window's argmax: the argmax gets 0 + g (which turns -0
** into +0, and flushes a denormal g under FTZ, as the chain's add does),
** the window's other three positions +0. A window whose output ReLU zeroed
** (DN_WINDOW_NONE) gets +0 everywhere, which is what ReLU's backward makes
** of its gradient. Written window by window, all four positions with
** selects, in runs of a constant number of windows that the compiler
** vectorizes whole; a row's last run overlaps the one before rather than
** leaving a scalar remainder (rewriting a window writes the same values). A scatter with a
** branch on the mask, or a loop over a row's own 14 or 7 windows, took
** longer than the pass saved. A row or column in no window is never
** written: the plane's zeros from before the pass.
*/
#ifndef UNPOOL_AVX2   /* (the AVX2 unpool_row takes rows of any width) */
static DN_ALWAYS_INLINE void unpool_windows(float *r0, float *r1, const float *g, const uint8_t *code,
                                            int64_t windows, float scale) {
#pragma omp simd
  for (int64_t ow = 0; ow < windows; ow++) {
    int32_t at = code[ow];   /* 0, 1 top row, 2, 3 bottom; DN_WINDOW_NONE: masked */
    float gs = g[ow] * scale;   /* scale 1 (no dropout): g itself */
    float v = 0.0f + gs;
    r0[2 * ow] = at == 0 ? v : 0.0f;
    r0[2 * ow + 1] = at == 1 ? v : 0.0f;
    r1[2 * ow] = at == 2 ? v : 0.0f;
    r1[2 * ow + 1] = at == 3 ? v : 0.0f;
  }
}

static void unpool_row_runs(float *plane, const dn_unpool_2x2 *j, int64_t r) {
  int64_t in_w = j->in_w, out_w = j->out_w, out = j->out_h * out_w;
  int64_t run = out_w >= 16 ? 16 : out_w >= 8 ? 8 : out_w >= 4 ? 4 : out_w;   /* windows per run */
  for (int64_t oh = 0; oh < j->out_h; oh++) {
    const float *g = j->g + r * out + oh * out_w;
    const uint8_t *code = j->codes + r * out + oh * out_w;
    float *r0 = plane + 2 * oh * in_w, *r1 = r0 + in_w;
    for (int64_t ow0 = 0; ow0 < out_w; ow0 += run) {
      int64_t k = ow0 + run <= out_w ? ow0 : out_w - run;   /* the last run ends at the row's end */
      float *a = r0 + 2 * k, *b = r1 + 2 * k;
      if (run == 16) unpool_windows(a, b, g + k, code + k, 16, j->scale);
      else if (run == 8) unpool_windows(a, b, g + k, code + k, 8, j->scale);
      else if (run == 4) unpool_windows(a, b, g + k, code + k, 4, j->scale);
      else unpool_windows(a, b, g + k, code + k, run, j->scale);
    }
  }
}

#endif

#ifdef UNPOOL_AVX512
/*
** unpool_row for rows of at most 16 windows (a small CNN's 7 and 14) with
** AVX-512: a row's windows are one vector of g (times the scale, plus 0, as
** unpool_windows) and one of indices; each chunk of 16 positions of a plane
** row takes its windows' by a permute and keeps g where the index is the
** position: the same values. unpool_windows' runs are 4 or 8 windows on
** such rows (a quarter or half of a vector) and interleave their stores by
** shuffles. Model c's training step: 1.3% faster (8 alternated pairs,
** 0.950-1.011); what remains of the pass waits on g and the indices.
*/
void dn_unpool_2x2_row(float *plane, const dn_unpool_2x2 *j, int64_t r) {
  int64_t in_w = j->in_w, out_w = j->out_w, out = j->out_h * out_w;
  if (out_w > 16) {
    unpool_row_runs(plane, j, r);
    return;
  }
  __mmask16 windows = (__mmask16)((1u << out_w) - 1);
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i half = _mm512_srli_epi32(iota, 1);   /* position -> its window */
  const __m512i column = _mm512_and_si512(iota, _mm512_set1_epi32(1));   /* a position's column in its window */
  __m512 scale = _mm512_set1_ps(j->scale), zero = _mm512_setzero_ps();
  for (int64_t oh = 0; oh < j->out_h; oh++) {
    const float *g = j->g + r * out + oh * out_w;
    __m512 gv = _mm512_add_ps(zero, _mm512_mul_ps(_mm512_maskz_loadu_ps(windows, g), scale));
    __m512i cv = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(windows, j->codes + r * out + oh * out_w));
    for (int64_t dy = 0; dy < 2; dy++) {
      int64_t row = (2 * oh + dy) * in_w;
      __m512i want = _mm512_add_epi32(column, _mm512_set1_epi32((int32_t)(2 * dy)));   /* the code of each lane */
      for (int64_t w0 = 0; w0 < 2 * out_w; w0 += 16) {
        __m512i sel = _mm512_add_epi32(half, _mm512_set1_epi32((int32_t)(w0 / 2)));
        __mmask16 hit = _mm512_cmpeq_epi32_mask(_mm512_permutexvar_epi32(sel, cv), want);
        int64_t n = 2 * out_w - w0 < 16 ? 2 * out_w - w0 : 16;
        _mm512_mask_storeu_ps(plane + row + w0, (__mmask16)((1u << n) - 1),
                              _mm512_maskz_mov_ps(hit, _mm512_permutexvar_ps(sel, gv)));
      }
    }
  }
}
#elif defined(UNPOOL_AVX2)
/*
** The same with AVX2 (Zen 3), for rows of any width: 8 windows at a time
** (4 on rows of fewer than 8 windows), their g (times the scale, plus 0)
** and their codes loaded once, spread to the positions of both plane rows
** by permutes, and g kept where the code is the position's; a row's last
** run overlaps the one before (rewriting a window writes the same values),
** so only rows of fewer than 4 windows take partial loads and stores.
** unpool_windows' runs compiled to scalar stores on such a build: model c's
** unpool took 18% of a training step of the AVX2 build, against 4% for the
** AVX-512 one; a first version staging a row's g and codes in small
** buffers stalled on store forwarding (7%); 4 windows at a time with partial
** ones at a row's end took twice the AVX-512 build's time (model c, one
** thread, a Zen 4).
*/
static inline __m128i codes4(const uint8_t *code, int64_t n) {
  uint32_t word = 0;
  if (n >= 4) memcpy(&word, code, 4);
  else
    for (int64_t i = 0; i < n; i++) word |= (uint32_t)code[i] << (8 * i);
  return _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)word));
}

/* Windows' g (gv) and codes (cv) spread by sel to 8 positions of each plane row from r0 (rows in_w apart). */
static inline void unpool_8(float *r0, int64_t in_w, __m256 gv, __m256i cv, __m256i sel, const __m256i want[2],
                            int64_t n) {
  gv = _mm256_permutevar8x32_ps(gv, sel);
  cv = _mm256_permutevar8x32_epi32(cv, sel);
  for (int dy = 0; dy < 2; dy++)   /* plain stores: a masked one was 40% of this pass on a Zen 4 */
    store_first(r0 + dy * in_w, _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(cv, want[dy])), gv), n);
}

void dn_unpool_2x2_row(float *plane, const dn_unpool_2x2 *j, int64_t r) {
  int64_t in_w = j->in_w, out_w = j->out_w, out = j->out_h * out_w;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m128i lane4 = _mm_setr_epi32(0, 1, 2, 3);
  const __m256i half = _mm256_srli_epi32(lane, 1);   /* position -> its window of 4 */
  const __m256i upper = _mm256_add_epi32(half, _mm256_set1_epi32(4));   /* the same for windows 4..7 */
  const __m256i column = _mm256_and_si256(lane, _mm256_set1_epi32(1));   /* a position's column in its window */
  const __m256i want[2] = {column, _mm256_add_epi32(column, _mm256_set1_epi32(2))};   /* the codes per plane row */
  const __m256 scale8 = _mm256_set1_ps(j->scale), zero8 = _mm256_setzero_ps();
  const __m128 scale = _mm_set1_ps(j->scale), zero = _mm_setzero_ps();
  for (int64_t oh = 0; oh < j->out_h; oh++) {
    const float *g = j->g + r * out + oh * out_w;
    const uint8_t *code = j->codes + r * out + oh * out_w;
    float *r0 = plane + 2 * oh * in_w;
    if (out_w >= 8) {
      for (int64_t w0 = 0; w0 < out_w; w0 += 8) {
        int64_t w = w0 + 8 <= out_w ? w0 : out_w - 8;   /* the last run ends at the row's end */
        __m256 gv = _mm256_add_ps(zero8, _mm256_mul_ps(_mm256_loadu_ps(g + w), scale8));
        __m256i cv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(code + w)));
        unpool_8(r0 + 2 * w, in_w, gv, cv, half, want, 8);
        unpool_8(r0 + 2 * w + 8, in_w, gv, cv, upper, want, 8);
      }
      continue;
    }
    for (int64_t w0 = 0; w0 < out_w; w0 += 4) {
      int64_t w = out_w < 4 || w0 + 4 <= out_w ? w0 : out_w - 4, n = out_w - w < 4 ? out_w - w : 4;
      __m128 g4 = n == 4 ? _mm_loadu_ps(g + w) : _mm_maskload_ps(g + w, _mm_cmpgt_epi32(_mm_set1_epi32((int)n), lane4));
      g4 = _mm_add_ps(zero, _mm_mul_ps(g4, scale));
      unpool_8(r0 + 2 * w, in_w, _mm256_castps128_ps256(g4), _mm256_castsi128_si256(codes4(code + w, n)), half, want,
               2 * n);
    }
  }
}
#else
void dn_unpool_2x2_row(float *plane, const dn_unpool_2x2 *j, int64_t r) { unpool_row_runs(plane, j, r); }
#endif
