/*
** The 2x2 max pool at stride 2 without padding, one plane at a time:
** pooling.c's fast path, and the pool of batch norm + ReLU + max pool
** (norm.c), which pools each normalized plane from a task's scratch rather
** than from memory. Not installed.
**
** The comparisons are max_plane's (pooling.c) in the same order, so the
** same values, indices and NaN rule: the first maximum in row-major window
** order wins (strict >), a NaN replaces the running maximum. Indices are
** int32 h * W + w within the plane. Written branch-free so that the
** compiler vectorizes a row of outputs: the general loop costs ~3 ns an
** input, most of a small CNN's step.
*/
#ifndef DN_MAX_POOL_2X2_H
#define DN_MAX_POOL_2X2_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* out_w outputs of a row from input rows r0, r1; base: the index of r0[0]; w: the plane's width. codes: ir
   gets the argmax's place in its window instead (0, 1: top row, 2, 3: bottom row). */
static DN_ALWAYS_INLINE void max_row_2x2(float *yr, int32_t *ir, const float *r0, const float *r1, int64_t out_w,
                                          int32_t base, int32_t w, bool with_idx, bool codes) {
#pragma omp simd
  for (int64_t ow = 0; ow < out_w; ow++) {
    float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1], m = a;
    int32_t at = 0, k = 0;
    bool tb = b > m || b != b;
    m = tb ? b : m, at = tb ? 1 : at, k = tb ? 1 : k;
    bool tc = c > m || c != c;
    m = tc ? c : m, at = tc ? w : at, k = tc ? 2 : k;
    bool td = d > m || d != d;
    m = td ? d : m, at = td ? w + 1 : at, k = td ? 3 : k;
    yr[ow] = m;
    if (with_idx) ir[ow] = codes ? k : base + 2 * (int32_t)ow + at;
  }
}

/*
** MAX_2X2_CHUNK outputs of a row at once (the body of max_row_2x2), from
** input rows read 2 * MAX_2X2_CHUNK floats wide: a loop of constant
** length, which the compiler vectorizes whole. A row's own length (7 or 14
** outputs in a small CNN) left nearly all of it to the vector loop's scalar
** remainder: 2x2 pools took as long on 14x14 maps as on 28x28 ones with
** twice the data. Lanes past the row's end read on into the buffer (the
** caller makes sure there is one) and their results are not kept.
*/
#define MAX_2X2_CHUNK 16
static DN_ALWAYS_INLINE void max_chunk_2x2(float *yr, int32_t *ir, const float *r0, const float *r1, int32_t base,
                                            int32_t w, bool with_idx, bool codes) {
  max_row_2x2(yr, ir, r0, r1, MAX_2X2_CHUNK, base, w, with_idx, codes);   /* inlined: the length a constant */
}

/* Floats readable past the end of a plane's input that let its last row be pooled by chunks too. */
static inline int64_t max_2x2_slack(int64_t out_w) {
  return (out_w + MAX_2X2_CHUNK - 1) / MAX_2X2_CHUNK * 2 * MAX_2X2_CHUNK;
}

/* Output row oh of a plane ([in_w]-wide input x, [out_h, out_w] outputs y and idx) by chunks; x_end: the end
   of the readable input. */
static DN_ALWAYS_INLINE void max_row_chunks(float *y, int32_t *idx, const float *x, const float *x_end,
                                            int64_t in_w, int64_t out_h, int64_t out_w, int64_t oh,
                                            bool with_idx, bool codes) {
  const float *r0 = x + 2 * oh * in_w, *r1 = r0 + in_w;
  int32_t base = (int32_t)(2 * oh * in_w), w = (int32_t)in_w;
  float *yr = y + oh * out_w;
  int32_t *ir = with_idx ? idx + oh * out_w : NULL;
  if (x_end - r1 < max_2x2_slack(out_w)) {   /* the last rows of the input: no reading on */
    max_row_2x2(yr, ir, r0, r1, out_w, base, w, with_idx, codes);
    return;
  }
  for (int64_t ow0 = 0; ow0 < out_w; ow0 += MAX_2X2_CHUNK) {
    /* straight into y while the chunk ends inside this plane's outputs (a
       later row overwrites what spills into it), else through a buffer */
    if (oh * out_w + ow0 + MAX_2X2_CHUNK <= out_h * out_w) {
      max_chunk_2x2(yr + ow0, with_idx ? ir + ow0 : NULL, r0 + 2 * ow0, r1 + 2 * ow0, base + 2 * (int32_t)ow0, w,
                    with_idx, codes);
      continue;
    }
    float yb[MAX_2X2_CHUNK];
    int32_t ib[MAX_2X2_CHUNK];
    max_chunk_2x2(yb, ib, r0 + 2 * ow0, r1 + 2 * ow0, base + 2 * (int32_t)ow0, w, with_idx, codes);
    for (int64_t k = 0; k < out_w - ow0 && k < MAX_2X2_CHUNK; k++) {
      yr[ow0 + k] = yb[k];
      if (with_idx) ir[ow0 + k] = ib[k];
    }
  }
}

/* y [out_h, out_w] = the 2x2 maxima of plane x [in_h, in_w] (2 * out_h <= in_h, 2 * out_w <= in_w), idx (or
   NULL) their argmax (codes: their places in the windows, max_row_2x2); x_end as max_row_chunks. */
static inline void max_plane_2x2(float *y, int32_t *idx, const float *x, const float *x_end, int64_t in_w,
                                 int64_t out_h, int64_t out_w, bool codes) {
  for (int64_t oh = 0; oh < out_h; oh++) {
    if (idx && codes) max_row_chunks(y, idx, x, x_end, in_w, out_h, out_w, oh, true, true);
    else if (idx) max_row_chunks(y, idx, x, x_end, in_w, out_h, out_w, oh, true, false);
    else max_row_chunks(y, NULL, x, x_end, in_w, out_h, out_w, oh, false, false);
  }
}

#endif
