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

#define LANES 8

/* LANES doubles as one value, so the partial sums stay in registers. */
typedef double lanes __attribute__((vector_size(LANES * sizeof(double))));

static inline lanes lanes_load(const double *p) {
  lanes v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void lanes_store(double *p, lanes v) { memcpy(p, &v, sizeof v); }

typedef float float_lanes __attribute__((vector_size(LANES * sizeof(float))));

/* x[0..LANES) widened to double. */
static inline lanes lanes_of(const float *x) {
  float_lanes f;
  memcpy(&f, x, sizeof f);
  return __builtin_convertvector(f, lanes);
}

/* acc += x */
static inline void lanes_sum(double acc[LANES], const float *x, int64_t n) {
  int64_t s = 0;
  lanes a = lanes_load(acc);
  for (; s + LANES <= n; s += LANES) a += lanes_of(x + s);
  lanes_store(acc, a);
  for (; s < n; s++) acc[s % LANES] += x[s];
}

/* acc += (x - mean)^2 */
static inline void lanes_sq_dev(double acc[LANES], const float *x, int64_t n, double mean) {
  int64_t s = 0;
  lanes a = lanes_load(acc);
  for (; s + LANES <= n; s += LANES) {
    lanes v = lanes_of(x + s) - mean;
    a += v * v;
  }
  lanes_store(acc, a);
  for (; s < n; s++) acc[s % LANES] += (x[s] - mean) * (x[s] - mean);
}

/* acc_d += x - k, acc_sq += (x - k)^2: one pass for a mean and a variance. */
static inline void lanes_shifted(double acc_d[LANES], double acc_sq[LANES], const float *x, int64_t n, double k) {
  int64_t s = 0;
  lanes a = lanes_load(acc_d), b = lanes_load(acc_sq);
  for (; s + LANES <= n; s += LANES) {
    lanes v = lanes_of(x + s) - k;
    a += v;
    b += v * v;
  }
  lanes_store(acc_d, a);
  lanes_store(acc_sq, b);
  for (; s < n; s++) {
    acc_d[s % LANES] += x[s] - k;
    acc_sq[s % LANES] += (x[s] - k) * (x[s] - k);
  }
}

/*
** ReLU's backward of the gradient g at the ReLU's output y: g, or +0 where
** y <= 0 (a NaN output passes g), the runtime's relu backward (unary.c) bit
** for bit. A bit mask rather than a select: gcc does not vectorize a float
** select whose result feeds double arithmetic (linear.c's zero_unless).
*/
static inline __attribute__((always_inline)) float relu_grad(float g, float y) {
  uint32_t bits;
  memcpy(&bits, &g, sizeof bits);
  bits &= -(uint32_t)!(y <= 0.0f);
  memcpy(&g, &bits, sizeof g);
  return g;
}

typedef int32_t int_lanes __attribute__((vector_size(LANES * sizeof(int32_t))));

/* g[0..LANES), each through relu_grad at y[0..LANES) when y is given, widened to double. */
static inline __attribute__((always_inline)) lanes lanes_of_grad(const float *g, const float *y) {
  if (!y) return lanes_of(g);
  float_lanes gf, yf;
  int_lanes bits;
  memcpy(&gf, g, sizeof gf);
  memcpy(&yf, y, sizeof yf);
  memcpy(&bits, &gf, sizeof bits);
  bits &= ~(yf <= 0.0f);   /* a vector comparison: -1 where true */
  memcpy(&gf, &bits, sizeof gf);
  return __builtin_convertvector(gf, lanes);
}

/* acc_g += g', acc_gx += g' * (x - mean), g' = g, or relu_grad(g, y) when
   y (ReLU's output over these elements) is given. */
static inline __attribute__((always_inline)) void lanes_g_gx(double acc_g[LANES], double acc_gx[LANES],
                                                             const float *g, const float *y, const float *x,
                                                             int64_t n, double mean) {
  int64_t s = 0;
  lanes a = lanes_load(acc_g), b = lanes_load(acc_gx);
  for (; s + LANES <= n; s += LANES) {
    lanes gv = lanes_of_grad(g + s, y ? y + s : NULL);
    a += gv;
    b += gv * (lanes_of(x + s) - mean);
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
