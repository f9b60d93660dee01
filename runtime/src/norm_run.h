/*
** Batch norm's output expression, shared by the ops that write it (norm.c,
** conv_first_block.c): one expression, so the same inputs give the same
** bits whichever op computes them. Not installed.
*/
#ifndef DROPNET_NORM_RUN_H
#define DROPNET_NORM_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* n outputs of a channel, (x - mean) * scale + b in float32 with the mean as a pair of floats (hi + lo: its
   double's value to about 48 bits), then ReLU as the runtime's (v < 0 keeps NaN and -0, unary.c) when relu.
   Inlined at a constant relu: one loop. */
static DN_ALWAYS_INLINE void dn_norm_forward_run(float *y, const float *x, int64_t n, double mean, double scale,
                                                 double b, bool relu) {
  float hi = (float)mean, lo = (float)(mean - hi), a = (float)scale, bf = (float)b;
#pragma omp simd
  for (int64_t s = 0; s < n; s++) {
    float v = (x[s] - hi - lo) * a + bf;
    y[s] = relu && v < 0.0f ? 0.0f : v;
  }
}

#endif
