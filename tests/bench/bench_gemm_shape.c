/*
** bench_gemm_shape threads kernel M K N ta tb [reps]: dn_gemm (gemm.c) with
** one kernel (avx512 | avx2) on one shape, C = op(A) @ op(B) (beta 0), op(A)
** [M,K] and op(B) [K,N], transposed storage where ta / tb is 1. Prints the
** median GFLOP/s by wall time and, with one thread, by the thread's CPU time
** (far less sensitive to other processes on a shared machine), after 3
** warm-up calls. For A/B comparisons of the driver and kernels.
** BENCH_GEMM_PATH=packed, =direct, =wt or =sparse in the environment forces
** that path (gemm.h's dn_gemm_force_path) where the transposes allow it,
** =dense keeps the automatic choice but never the sparse path;
** BENCH_GEMM_DENSITY=d zeroes all but a fraction d of A (GFLOP/s count the
** dense product's FLOPs);
** BENCH_GEMM_COLD=1 writes 32 MB between calls (not timed), so that the
** operands come from memory as in a training step, where the products
** before evict them.
*/
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "dropnet/dropnet.h"
#include "gemm.h"

const char *dn_bench_name = "bench_gemm_shape";

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *alloc_floats(int64_t count) {
  void *p = NULL;
  return posix_memalign(&p, 64, (size_t)count * sizeof(float)) ? NULL : p;
}

int main(int argc, char **argv) {
#ifdef DN_HAVE_GEMM
  if (argc < 8) {
    fprintf(stderr, "usage: bench_gemm_shape threads avx512|avx2 M K N ta tb [reps]\n");
    return 2;
  }
  int threads = atoi(argv[1]);
  const dn_gemm_kernel *kern = !strcmp(argv[2], "avx2") ? &dn_gemm_kernel_avx2 : &dn_gemm_kernel_avx512;
  int64_t m = atoll(argv[3]), k = atoll(argv[4]), n = atoll(argv[5]);
  bool ta = atoi(argv[6]) != 0, tb = atoi(argv[7]) != 0;
  int reps = argc > 8 ? atoi(argv[8]) : 50;
  const char *path = getenv("BENCH_GEMM_PATH");
  if (path && !strcmp(path, "packed")) dn_gemm_force_path = DN_GEMM_PACKED;
  if (path && !strcmp(path, "direct")) dn_gemm_force_path = DN_GEMM_DIRECT;
  if (path && !strcmp(path, "wt")) dn_gemm_force_path = DN_GEMM_WT;
  if (path && !strcmp(path, "sparse")) dn_gemm_force_path = DN_GEMM_SPARSE;
  if (path && !strcmp(path, "dense")) dn_gemm_sparse_auto = false;
  if (threads < 1 || m < 1 || k < 1 || n < 1 || reps < 1 || dn_set_num_threads(threads) != DN_OK) return 2;
  /* 64-byte aligned, as the runtime's tensors (alloc.c) */
  float *a = alloc_floats(m * k), *b = alloc_floats(k * n), *c = alloc_floats(m * n);
  double *wall = malloc((size_t)reps * sizeof(double)), *cpu = malloc((size_t)reps * sizeof(double));
  if (!a || !b || !c || !wall || !cpu) return 1;
  for (int64_t i = 0; i < m * k; i++) a[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
  for (int64_t i = 0; i < k * n; i++) b[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
  /* BENCH_GEMM_DENSITY=d keeps a fraction d of A nonzero (scattered as dropout's zeros are) */
  const char *density_env = getenv("BENCH_GEMM_DENSITY");
  if (density_env) {
    double density = atof(density_env);
    for (int64_t i = 0; i < m * k; i++)
      if ((double)((uint64_t)(i * 2654435761u) % 1000003u) >= density * 1000003.0) a[i] = 0.0f;
  }
  int64_t lda = ta ? m : k, ldb = tb ? k : n;
  const char *cold_env = getenv("BENCH_GEMM_COLD");
  size_t cold_len = cold_env && atoi(cold_env) ? (size_t)32 << 20 : 0;
  char *cold = cold_len ? malloc(cold_len) : NULL;
  for (int r = -3; r < reps; r++) {
    if (cold) memset(cold, r & 0xFF, cold_len);
    double w0 = dn_bench_now(), c0 = cpu_now();
    if (!dn_gemm(kern, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n)) return 1;
    double c1 = cpu_now(), w1 = dn_bench_now();
    if (r >= 0) {
      wall[r] = w1 - w0;
      cpu[r] = c1 - c0;
    }
  }
  double flops = 2.0 * (double)m * (double)n * (double)k;
  double tw = dn_bench_median(wall, reps), tc = dn_bench_median(cpu, reps);
  printf("%s %dT %lldx%lldx%lld ta=%d tb=%d: wall %.1f GFLOP/s (%.1f us)", kern->name, threads, (long long)m,
         (long long)k, (long long)n, ta, tb, flops / tw * 1e-9, tw * 1e6);
  if (threads == 1) printf(", cpu %.1f GFLOP/s", flops / tc * 1e-9);
  printf("\n");
  return 0;
#else
  (void)argc;
  (void)argv;
  return 0;
#endif
}
