/*
** A ymm's first n lanes stored without AVX2's masked store (vmaskmovps), which
** AMD's cores run as microcode: a whole, a half, a quarter and a single store
** as n needs them. For the ragged ends of rows (the pool's backward, the
** Winograd convolution's outputs). AVX2 builds only.
*/
#ifndef DN_STORE_FIRST_H
#define DN_STORE_FIRST_H

#if defined(__AVX2__)
#include <immintrin.h>
#include <stdint.h>

/* v's first n lanes to d (any n; none if n <= 0). */
static inline void store_first(float *d, __m256 v, int64_t n) {
  if (n >= 8) {
    _mm256_storeu_ps(d, v);
    return;
  }
  __m128 x = _mm256_castps256_ps128(v);
  if (n >= 4) {
    _mm_storeu_ps(d, x);
    x = _mm256_extractf128_ps(v, 1);
    d += 4, n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi((__m64 *)d, x);
    x = _mm_movehl_ps(x, x);
    d += 2, n -= 2;
  }
  if (n == 1) _mm_store_ss(d, x);
}
#endif

#endif
