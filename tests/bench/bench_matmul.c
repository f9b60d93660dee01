/*
** bench_matmul [threads]: dn_matmul (its kernel: dn_matmul_backend(), our
** own AVX-512 sgemm where the build targets it) against a direct
** cblas_sgemm (OpenBLAS, as the environment configures it) into a
** preallocated buffer, same inputs, same thread count (dn_set_num_threads
** sets both our OpenMP team and OpenBLAS). dn_matmul is timed with its
** output allocation and release (the caching allocator serves it after the
** first call). Prints median GFLOP/s and dropnet's overhead.
** The benchmark may call cblas directly: it is not the runtime.
*/
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "benchutil.h"
#include "dropnet/dropnet.h"

#define WARMUP 3

const char *dn_bench_name = "bench_matmul";

/* One row of the table: A [m,k] @ B [k,n], B given as W:t() (W [n,k]) when transposed. */
static void bench_case(int64_t m, int64_t k, int64_t n, bool transposed, int reps, dn_rng *rng) {
  dn_tensor *a, *w, *b, *out;
  dn_bench_check(dn_tensor_randn(&a, rng, 2, (int64_t[]){m, k}), "randn");
  if (transposed) {
    dn_bench_check(dn_tensor_randn(&w, rng, 2, (int64_t[]){n, k}), "randn");
    dn_bench_check(dn_t(&b, w), "t");
  } else {
    dn_bench_check(dn_tensor_randn(&w, rng, 2, (int64_t[]){k, n}), "randn");
    b = dn_tensor_retain(w);
  }
  float *direct = dn_alloc((size_t)(m * n) * sizeof *direct);
  if (!direct) {
    fprintf(stderr, "bench_matmul: out of memory\n");
    exit(1);
  }
  const float *a_data = dn_tensor_data(a), *w_data = dn_tensor_data(w);
  double *t_dropnet = malloc((size_t)reps * sizeof *t_dropnet), *t_direct = malloc((size_t)reps * sizeof *t_direct);

  /* alternate the two so drifting machine load hits both alike */
  for (int r = -WARMUP; r < reps; r++) {
    double t0 = dn_bench_now();
    dn_bench_check(dn_matmul(&out, a, b), "matmul");
    dn_tensor_release(out);
    double t1 = dn_bench_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transposed ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, 1.0f,
                a_data, (int)k, w_data, (int)(transposed ? k : n), 0.0f, direct, (int)n);
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
  printf("%5lld %5lld %5lld  %-9s %10.1f %10.1f %+9.1f%% %11.2e\n", (long long)m, (long long)k, (long long)n,
         transposed ? "A@W:t()" : "A@B", flops / med_dropnet * 1e-9, flops / med_direct * 1e-9,
         (med_dropnet / med_direct - 1.0) * 100.0, max_diff);
  free(t_dropnet);
  free(t_direct);
  dn_free(direct);
  dn_tensor_release(a);
  dn_tensor_release(w);
  dn_tensor_release(b);
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  if (dn_set_num_threads(threads) != DN_OK) {
    fprintf(stderr, "usage: bench_matmul [threads >= 1]\n%s\n", dn_last_error());
    return 2;
  }
  dn_rng rng;
  dn_rng_seed(&rng, 42);
  printf("matmul, %d thread%s, median of repeated runs after %d warm-up runs\n", threads, threads == 1 ? "" : "s",
         WARMUP);
  const char *coretype = getenv("OPENBLAS_CORETYPE");
  printf("dropnet = dn_matmul (sgemm: %s); openblas = cblas_sgemm (OPENBLAS_CORETYPE=%s)\n", dn_matmul_backend(),
         coretype ? coretype : "(unset)");
  printf("%5s %5s %5s  %-9s %10s %10s %10s %11s\n", "M", "K", "N", "case", "dropnet", "openblas", "overhead",
         "max |diff|");
  printf("%5s %5s %5s  %-9s %10s %10s %10s %11s\n", "", "", "", "", "GFLOP/s", "GFLOP/s", "", "");
  bench_case(128, 784, 1024, false, 41, &rng);
  bench_case(128, 784, 1024, true, 41, &rng);
  bench_case(1024, 1024, 1024, false, 11, &rng);
  bench_case(1024, 1024, 1024, true, 11, &rng);
  printf("overhead = dropnet/openblas - 1 on median times (negative: dropnet faster)\n");
  return 0;
}
