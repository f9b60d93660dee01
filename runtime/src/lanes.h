/*
** Double sums of float32 data in LANES independent partial sums ("lanes"):
** element s of a run goes to lane s % LANES, the lanes are combined in a
** fixed pairwise order at the end. A plain double running sum is one
** dependent add per element (4 cycles each); the lanes are vector adds (a
** GCC/clang vector type: one zmm, or two ymm on AVX2 builds). A run is
** summed by one task in a fixed order, so the bits do not depend on the
** thread count. Used by the normalizations and the convolution's bias
** gradient; lanes_g_gx applies a ReLU's backward on the way (batch norm +
** ReLU).
*/
#ifndef DN_LANES_H
#define DN_LANES_H

#include <stdint.h>
#include <string.h>

#include "internal.h"

#define LANES 8

/* The lanes as LANE_VECS vectors of VEC_LANES doubles: one zmm on AVX-512
   builds; two ymm elsewhere, because without AVX-512 gcc keeps a 64-byte
   vector's partial sums in memory (a store and a reload per add: the
   convolution's and batch norm's sums ran 3-8x slower on an AVX2 build).
   The lanes and their order are the same either way. */
#ifdef __AVX512F__
#define LANE_VECS 1
#else
#define LANE_VECS 2
#endif
#define VEC_LANES (LANES / LANE_VECS)
#if LANE_VECS == 2 && defined(__AVX__)
#include <immintrin.h>
#endif

typedef double dvec __attribute__((vector_size(VEC_LANES * sizeof(double))));
typedef float fvec __attribute__((vector_size(VEC_LANES * sizeof(float))));
typedef int32_t ivec __attribute__((vector_size(VEC_LANES * sizeof(int32_t))));

/* LANES doubles in registers: partial sums, or values widened from float. */
typedef struct lanes {
  dvec v[LANE_VECS];
} lanes;

/* Vector by vector: a copy of the whole array kept the lanes on the stack (no registers for them). */
static inline lanes lanes_load(const double *p) {
  lanes a;
  for (int h = 0; h < LANE_VECS; h++) {
    dvec v;
    memcpy(&v, p + h * VEC_LANES, sizeof v);
    a.v[h] = v;
  }
  return a;
}

static inline void lanes_store(double *p, lanes a) {
  for (int h = 0; h < LANE_VECS; h++) {
    dvec v = a.v[h];
    memcpy(p + h * VEC_LANES, &v, sizeof v);
  }
}

/* f widened to double (gcc's own conversion of 4 floats went 2 at a time through xmm halves). */
static inline dvec dvec_widen(fvec f) {
#if LANE_VECS == 2 && defined(__AVX__)
  return (dvec)_mm256_cvtps_pd((__m128)f);
#else
  return __builtin_convertvector(f, dvec);
#endif
}

/* x[0..LANES) widened to double. */
static inline lanes lanes_of(const float *x) {
  lanes a;
  for (int h = 0; h < LANE_VECS; h++) {
    fvec f;
    memcpy(&f, x + h * VEC_LANES, sizeof f);
    a.v[h] = dvec_widen(f);
  }
  return a;
}

/* acc += x */
static inline void lanes_sum(double acc[LANES], const float *x, int64_t n) {
  int64_t s = 0;
  lanes a = lanes_load(acc);
  for (; s + LANES <= n; s += LANES) {
    lanes v = lanes_of(x + s);
    for (int h = 0; h < LANE_VECS; h++) a.v[h] += v.v[h];
  }
  lanes_store(acc, a);
  for (; s < n; s++) acc[s % LANES] += x[s];
}

/* acc += (x - mean)^2 */
static inline void lanes_sq_dev(double acc[LANES], const float *x, int64_t n, double mean) {
  int64_t s = 0;
  lanes a = lanes_load(acc);
  for (; s + LANES <= n; s += LANES) {
    lanes v = lanes_of(x + s);
    for (int h = 0; h < LANE_VECS; h++) {
      dvec d = v.v[h] - mean;
      a.v[h] += d * d;
    }
  }
  lanes_store(acc, a);
  for (; s < n; s++) acc[s % LANES] += (x[s] - mean) * (x[s] - mean);
}

/* lanes_shifted's step: x[0..LANES) into the partial sums */
static inline void lanes_shifted_step(lanes *a, lanes *b, const float *x, double k) {
  lanes v = lanes_of(x);
  for (int h = 0; h < LANE_VECS; h++) {
    dvec d = v.v[h] - k;
    a->v[h] += d;
    b->v[h] += d * d;
  }
}

/* lanes_shifted's elements from s on, one at a time (the part short of a vector) */
static inline void lanes_shifted_tail(double acc_d[LANES], double acc_sq[LANES], const float *x, int64_t s,
                                      int64_t n, double k) {
  for (; s < n; s++) {
    acc_d[s % LANES] += x[s] - k;
    acc_sq[s % LANES] += (x[s] - k) * (x[s] - k);
  }
}

/* acc_d += x - k, acc_sq += (x - k)^2: one pass for a mean and a variance. */
static inline void lanes_shifted(double acc_d[LANES], double acc_sq[LANES], const float *x, int64_t n, double k) {
  int64_t s = 0;
  lanes a = lanes_load(acc_d), b = lanes_load(acc_sq);
  for (; s + LANES <= n; s += LANES) lanes_shifted_step(&a, &b, x + s, k);
  lanes_store(acc_d, a);
  lanes_store(acc_sq, b);
  lanes_shifted_tail(acc_d, acc_sq, x, s, n, k);
}

/* lanes_shifted of two runs of n at once, each run's sums bit for bit as lanes_shifted gives them: a lane's
   adds wait for each other (one chain per vector), so two runs side by side keep twice the adds in flight
   (a batch norm's row sums, the convolution's rows of one image) */
static inline void lanes_shifted_pair(double acc_d[2][LANES], double acc_sq[2][LANES], const float *x0,
                                      const float *x1, int64_t n, double k0, double k1) {
  int64_t s = 0;
  lanes a0 = lanes_load(acc_d[0]), b0 = lanes_load(acc_sq[0]), a1 = lanes_load(acc_d[1]), b1 = lanes_load(acc_sq[1]);
  for (; s + LANES <= n; s += LANES) {
    lanes_shifted_step(&a0, &b0, x0 + s, k0);
    lanes_shifted_step(&a1, &b1, x1 + s, k1);
  }
  lanes_store(acc_d[0], a0);
  lanes_store(acc_sq[0], b0);
  lanes_store(acc_d[1], a1);
  lanes_store(acc_sq[1], b1);
  lanes_shifted_tail(acc_d[0], acc_sq[0], x0, s, n, k0);
  lanes_shifted_tail(acc_d[1], acc_sq[1], x1, s, n, k1);
}

/*
** ReLU's backward of the gradient g at the ReLU's output y: g, or +0 where
** y <= 0 (a NaN output passes g), the runtime's relu backward (unary.c) bit
** for bit, by dn_keep_or's bit masks (its result feeds double sums).
*/
static inline __attribute__((always_inline)) float relu_grad(float g, float y) {
  return dn_keep_or(!(y <= 0.0f), g, 0.0f);
}

/* g[0..LANES), each through relu_grad at y[0..LANES) when y is given, widened to double. */
static inline __attribute__((always_inline)) lanes lanes_of_grad(const float *g, const float *y) {
  if (!y) return lanes_of(g);
  lanes a;
  for (int h = 0; h < LANE_VECS; h++) {
    fvec gf, yf;
    ivec bits;
    memcpy(&gf, g + h * VEC_LANES, sizeof gf);
    memcpy(&yf, y + h * VEC_LANES, sizeof yf);
    memcpy(&bits, &gf, sizeof bits);
    bits &= ~(yf <= 0.0f);   /* a vector comparison: -1 where true */
    memcpy(&gf, &bits, sizeof gf);
    a.v[h] = dvec_widen(gf);
  }
  return a;
}

/* acc_g += g', acc_gx += g' * (x - mean), g' = g, or relu_grad(g, y) when
   y (ReLU's output over these elements) is given. */
static inline __attribute__((always_inline)) void lanes_g_gx(double acc_g[LANES], double acc_gx[LANES],
                                                             const float *g, const float *y, const float *x,
                                                             int64_t n, double mean) {
  int64_t s = 0;
  lanes a = lanes_load(acc_g), b = lanes_load(acc_gx);
  for (; s + LANES <= n; s += LANES) {
    lanes gv = lanes_of_grad(g + s, y ? y + s : NULL), xv = lanes_of(x + s);
    for (int h = 0; h < LANE_VECS; h++) {
      a.v[h] += gv.v[h];
      b.v[h] += gv.v[h] * (xv.v[h] - mean);
    }
  }
  lanes_store(acc_g, a);
  lanes_store(acc_gx, b);
  for (; s < n; s++) {
    float gs = y ? relu_grad(g[s], y[s]) : g[s];
    acc_g[s % LANES] += gs;
    acc_gx[s % LANES] += gs * (x[s] - mean);
  }
}

/* The lanes' total, pairwise in a fixed order. */
static inline double lanes_total(const double acc[LANES]) {
  double t[LANES];
  memcpy(t, acc, sizeof t);
  for (int w = LANES / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; k++) t[k] += t[k + w];
  return t[0];
}

#endif
