/*
** bench_matmul [threads] [reps scale]: dn_matmul (its kernel:
** dn_matmul_backend(), dropnet's own sgemm on AVX-512 or AVX2 machines)
** against a direct cblas_sgemm (OpenBLAS, as the environment configures it:
** OPENBLAS_CORETYPE) into a preallocated buffer, same inputs, same thread
** count (dn_set_num_threads sets both our OpenMP team and OpenBLAS), on the
** products of the reference MLP (784-1024-1024-10, batch 128) with the
** transposes its Linear layers pass, then 1024^3. dn_matmul is timed with
** its output allocation and release (the caching allocator serves it after
** the first call). Prints median GFLOP/s, each as % of the FMA peak that
** roofs.c probes with the same thread count (dropnet: of the width its
** kernel uses; OpenBLAS: of the widest the CPU has), and dropnet's overhead.
** The benchmark may call cblas directly: it is not the runtime.
*/
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "roofs.h"
#include "dropnet/dropnet.h"

#define WARMUP 3

const char *dn_bench_name = "bench_matmul";

static double peak_ours, peak_widest;

/* A [rows, cols] operand, or the transposed view of a stored [cols, rows] one. */
static dn_tensor *operand(dn_rng *rng, int64_t rows, int64_t cols, bool trans, dn_tensor **stored) {
  dn_tensor *t;
  dn_bench_check(dn_tensor_randn(stored, rng, 2, trans ? (int64_t[]){cols, rows} : (int64_t[]){rows, cols}),
                 "randn");
  if (trans) dn_bench_check(dn_t(&t, *stored), "t");
  else t = dn_tensor_retain(*stored);
  return t;
}

/* One row of the table: op(A) [m,k] @ op(B) [k,n], op = transposed view when ta / tb. */
static void bench_case(const char *what, int64_t m, int64_t k, int64_t n, bool ta, bool tb, int reps, dn_rng *rng) {
  dn_tensor *a_stored, *b_stored, *out;
  dn_tensor *a = operand(rng, m, k, ta, &a_stored), *b = operand(rng, k, n, tb, &b_stored);
  float *direct = dn_alloc((size_t)(m * n) * sizeof *direct);
  if (!direct) {
    fprintf(stderr, "bench_matmul: out of memory\n");
    exit(1);
  }
  const float *a_data = dn_tensor_data(a_stored), *b_data = dn_tensor_data(b_stored);
  int lda = (int)(ta ? m : k), ldb = (int)(tb ? k : n);
  double *t_dropnet = malloc((size_t)reps * sizeof *t_dropnet), *t_direct = malloc((size_t)reps * sizeof *t_direct);

  /* alternate the two so drifting machine load hits both alike */
  for (int r = -WARMUP; r < reps; r++) {
    double t0 = dn_bench_now();
    dn_bench_check(dn_matmul(&out, a, b), "matmul");
    dn_tensor_release(out);
    double t1 = dn_bench_now();
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
                1.0f, a_data, lda, b_data, ldb, 0.0f, direct, (int)n);
    double t2 = dn_bench_now();
    if (r >= 0) {
      t_dropnet[r] = t1 - t0;
      t_direct[r] = t2 - t1;
    }
  }

  /* the two must agree (up to summation order) */
  dn_bench_check(dn_matmul(&out, a, b), "matmul");
  const float *got = dn_tensor_data(out);
  double max_diff = 0;
  for (int64_t i = 0; i < m * n; i++) max_diff = fmax(max_diff, fabs((double)got[i] - (double)direct[i]));
  dn_tensor_release(out);

  double flops = 2.0 * (double)m * (double)n * (double)k;
  double med_dropnet = dn_bench_median(t_dropnet, reps), med_direct = dn_bench_median(t_direct, reps);
  double g_dropnet = flops / med_dropnet * 1e-9, g_direct = flops / med_direct * 1e-9;
  char ops[16];
  snprintf(ops, sizeof ops, "%s@%s", ta ? "At" : "A", tb ? "Bt" : "B");
  printf("%-9s %5lld %5lld %5lld %-6s %8.1f %5.0f%% %8.1f %5.0f%% %+8.1f%% %10.2e\n", what, (long long)m, (long long)k,
         (long long)n, ops, g_dropnet, 100.0 * g_dropnet / peak_ours, g_direct, 100.0 * g_direct / peak_widest,
         (med_dropnet / med_direct - 1.0) * 100.0, max_diff);
  free(t_dropnet);
  free(t_direct);
  dn_free(direct);
  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(a_stored);
  dn_tensor_release(b_stored);
}

/* Repetitions for a product of `flops`: about 0.2 s of dropnet's and OpenBLAS's runs together at 200 GFLOP/s. */
static int reps_for(double flops, double scale) {
  int reps = (int)(scale * 0.2 * 200e9 / 2 / flops);
  return reps < 5 ? 5 : reps > 401 ? 401 : reps | 1;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  double scale = argc > 2 ? atof(argv[2]) : 1.0;
  if (dn_set_num_threads(threads) != DN_OK || !(scale > 0)) {
    fprintf(stderr, "usage: bench_matmul [threads >= 1] [reps scale > 0]\n%s\n", dn_last_error());
    return 2;
  }
  dn_rng rng;
  dn_rng_seed(&rng, 42);
  const char *backend = dn_matmul_backend(), *coretype = getenv("OPENBLAS_CORETYPE");
  double p512 = dn_roof_fma_gflops(DN_ROOF_FMA512, threads, 0.2, 3), p256 = dn_roof_fma_gflops(DN_ROOF_FMA256, threads, 0.2, 3);
  peak_widest = p512 > 0 ? p512 : p256;
  peak_ours = strstr(backend, "avx2") ? p256 : strstr(backend, "avx512") ? p512 : peak_widest;
  printf("matmul, %d thread%s, median of repeated runs after %d warm-up runs\n", threads, threads == 1 ? "" : "s",
         WARMUP);
  printf("FMA peak (register-only loop, %d thread%s): 512-bit %.1f GFLOP/s, 256-bit %.1f GFLOP/s\n", threads,
         threads == 1 ? "" : "s", p512, p256);
  printf("dropnet = dn_matmul (sgemm: %s); openblas = cblas_sgemm (OPENBLAS_CORETYPE=%s)\n", backend,
         coretype ? coretype : "(unset)");
  printf("%-9s %5s %5s %5s %-6s %8s %6s %8s %6s %9s %10s\n", "product", "M", "K", "N", "op", "dropnet", "%peak",
         "openblas", "%peak", "overhead", "max |diff|");
  /* the reference MLP's products: y = x @ W:t(); dx = g @ W; dW = g:t() @ x */
  static const struct {
    const char *what;
    int64_t m, k, n;
    bool ta, tb;
  } cases[] = {
    {"fwd1", 128, 784, 1024, false, true},   {"fwd2", 128, 1024, 1024, false, true},
    {"fwd3", 128, 1024, 10, false, true},    {"dx2", 128, 1024, 1024, false, false},
    {"dx3", 128, 10, 1024, false, false},    {"dW1", 1024, 128, 784, true, false},
    {"dW2", 1024, 128, 1024, true, false},   {"dW3", 10, 128, 1024, true, false},
    {"square", 1024, 1024, 1024, false, false}, {"square", 1024, 1024, 1024, false, true},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    double flops = 2.0 * (double)cases[c].m * (double)cases[c].n * (double)cases[c].k;
    bench_case(cases[c].what, cases[c].m, cases[c].k, cases[c].n, cases[c].ta, cases[c].tb, reps_for(flops, scale),
               &rng);
  }
  printf("%%peak: dropnet of the FMA peak of its kernel's width, openblas of the widest\n");
  printf("overhead = dropnet/openblas - 1 on median times (negative: dropnet faster)\n");
  return 0;
}
