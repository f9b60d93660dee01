/*
** dn_bench_fma_peak (fma_peak.h). Each thread keeps ACC independent
** accumulators, enough to cover the FMA latency (4 cycles) on two FMA ports
** (Intel's 4 x 2 = 8 in flight; 12 leaves room). The kernels carry target
** attributes, so the probe builds without -march=native and is chosen at run
** time by __builtin_cpu_supports.
*/
#include "fma_peak.h"

#include <immintrin.h>
#include <omp.h>

#include "benchutil.h"

#define ACC 12
#define ITERS 2000000L /* per run and thread: 24M FMAs, ~10-30 ms */
#define RUNS 5

static volatile float sink;

/* ACC named accumulators (an array would live in memory at -O2). */
#define FMA_LOOP(type, set1, fmadd, add, first)                                                          \
  type x = set1(1.0f), y = set1(0.999999f);                                                              \
  type a0 = set1(0), a1 = set1(1), a2 = set1(2), a3 = set1(3), a4 = set1(4), a5 = set1(5), a6 = set1(6),  \
       a7 = set1(7), a8 = set1(8), a9 = set1(9), a10 = set1(10), a11 = set1(11);                          \
  for (long it = 0; it < ITERS; it++) {                                                                  \
    a0 = fmadd(a0, y, x); a1 = fmadd(a1, y, x); a2 = fmadd(a2, y, x); a3 = fmadd(a3, y, x);              \
    a4 = fmadd(a4, y, x); a5 = fmadd(a5, y, x); a6 = fmadd(a6, y, x); a7 = fmadd(a7, y, x);              \
    a8 = fmadd(a8, y, x); a9 = fmadd(a9, y, x); a10 = fmadd(a10, y, x); a11 = fmadd(a11, y, x);          \
  }                                                                                                      \
  a0 = add(add(add(a0, a1), add(a2, a3)), add(add(a4, a5), add(a6, a7)));                                \
  sink = first(add(a0, add(add(a8, a9), add(a10, a11))));

__attribute__((target("avx512f"))) static void run512(void) {
  FMA_LOOP(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_cvtss_f32)
}

__attribute__((target("avx2,fma"))) static void run256(void) {
  FMA_LOOP(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_cvtss_f32)
}

double dn_bench_fma_peak(int threads, int width_bits) {
  __builtin_cpu_init();
  void (*run)(void);
  if (width_bits == 512 && __builtin_cpu_supports("avx512f")) run = run512;
  else if (width_bits == 256 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) run = run256;
  else return 0.0;
  double flops = 2.0 * (width_bits / 32) * ACC * (double)ITERS * threads, best = 0.0;
  for (int r = 0; r < RUNS; r++) {
    double t0 = dn_bench_now();
#pragma omp parallel num_threads(threads)
    run();
    double rate = flops / (dn_bench_now() - t0) * 1e-9;
    if (rate > best) best = rate;
  }
  return best;
}
