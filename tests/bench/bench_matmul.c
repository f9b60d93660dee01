/*
** bench_matmul [threads]: dn_matmul (its kernel: dn_matmul_backend(), our
** own AVX-512 sgemm where the build targets it) against a direct
** cblas_sgemm (OpenBLAS, as the environment configures it) into a
** preallocated buffer, same inputs, same thread count (dn_set_num_threads
** sets both our OpenMP team and OpenBLAS). dn_matmul is timed with its
** output allocation and release (the caching allocator serves it after the
** first call). Prints median GFLOP/s and dropnet's overhead.
** The benchmark may call cblas directly: it is not the runtime.
**
** bench_matmul [threads] --step a|b: instead, the sgemm rate at the shapes of
** one training step of scripts/bench/train_throughput.lua's model a
** (784-1024-1024-10, batch 128) or b (784-64-10, batch 32): each product the
** fused linear layer (runtime/src/linear.c) runs, forward y = x @ W:t(),
** backward dx = g @ W (not for the first layer, whose input needs no
** gradient) and dW = g:t() @ x, through dn_matmul_into into preallocated
** outputs; median time of each, and a STEP line with their sum: the GEMM
** time of a step, so batch / that time is the GEMM roof in samples/s.
** --reps N: the number of steps timed (default 101 for a, 1001 for b).
*/
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* --- the products of one training step (--step) ------------------------------ */

typedef struct {
  const char *what;
  int64_t m, k, n;
  bool trans_a, trans_b;
  dn_tensor *a, *b, *out;   /* a and b are transposed views where trans_a / trans_b */
  double *times;
} step_gemm;

/* operand [rows, cols], or a transposed view of a [cols, rows] tensor */
static dn_tensor *operand(int64_t rows, int64_t cols, bool trans, dn_rng *rng) {
  dn_tensor *t, *v;
  dn_bench_check(dn_tensor_randn(&t, rng, 2, trans ? (int64_t[]){cols, rows} : (int64_t[]){rows, cols}), "randn");
  if (!trans) return t;
  dn_bench_check(dn_t(&v, t), "t");
  dn_tensor_release(t);
  return v;
}

static void bench_step(char model, int reps, dn_rng *rng) {
  const int64_t a_widths[] = {784, 1024, 1024, 10}, b_widths[] = {784, 64, 10};
  const int64_t *widths = model == 'a' ? a_widths : b_widths;
  int layers = model == 'a' ? 3 : 2;
  int64_t batch = model == 'a' ? 128 : 32;
  step_gemm gemms[9];
  static char names[9][48];
  int count = 0;
#define ADD_GEMM(m_, k_, n_, ta, tb, ...)                                            \
  do {                                                                                \
    snprintf(names[count], sizeof names[count], __VA_ARGS__);                         \
    gemms[count] = (step_gemm){names[count], m_, k_, n_, ta, tb, NULL, NULL, NULL, NULL}; \
    count++;                                                                          \
  } while (0)
  for (int l = 0; l < layers; l++) {
    int64_t in = widths[l], out = widths[l + 1];
    ADD_GEMM(batch, in, out, false, true, "fwd   x%d @ W%d:t()", l + 1, l + 1);
    if (l > 0) ADD_GEMM(batch, out, in, false, false, "bwd   g%d @ W%d", l + 1, l + 1);
    ADD_GEMM(out, batch, in, true, false, "bwd   g%d:t() @ x%d", l + 1, l + 1);
  }
#undef ADD_GEMM
  for (int i = 0; i < count; i++) {
    step_gemm *g = &gemms[i];
    g->a = operand(g->m, g->k, g->trans_a, rng);
    g->b = operand(g->k, g->n, g->trans_b, rng);
    dn_bench_check(dn_tensor_zeros(&g->out, DN_F32, 2, (int64_t[]){g->m, g->n}), "zeros");
    g->times = malloc((size_t)reps * sizeof *g->times);
    if (!g->times) {
      fprintf(stderr, "bench_matmul: out of memory\n");
      exit(1);
    }
  }
  /* the products in step order, over and over, as training runs them */
  for (int r = -WARMUP; r < reps; r++) {
    for (int i = 0; i < count; i++) {
      step_gemm *g = &gemms[i];
      double t0 = dn_bench_now();
      dn_bench_check(dn_matmul_into(g->out, g->a, g->b, 1.0f, 0.0f), "matmul_into");
      if (r >= 0) g->times[r] = dn_bench_now() - t0;
    }
  }
  printf("training step of model %c (batch %lld): the products of its linear layers, dn_matmul_into "
         "(sgemm: %s), median of %d steps\n",
         model, (long long)batch, dn_matmul_backend(), reps);
  printf("%5s %5s %5s  %-20s %10s %10s\n", "M", "K", "N", "product", "GFLOP/s", "us");
  double total_flops = 0, total_seconds = 0;
  for (int i = 0; i < count; i++) {
    step_gemm *g = &gemms[i];
    double flops = 2.0 * (double)g->m * (double)g->n * (double)g->k, t = dn_bench_median(g->times, reps);
    total_flops += flops;
    total_seconds += t;
    printf("%5lld %5lld %5lld  %-20s %10.1f %10.1f\n", (long long)g->m, (long long)g->k, (long long)g->n, g->what,
           flops / t * 1e-9, t * 1e6);
    dn_tensor_release(g->a);
    dn_tensor_release(g->b);
    dn_tensor_release(g->out);
    free(g->times);
  }
  printf("STEP model=%c batch=%lld gemm_flops=%.0f gemm_seconds=%.6f gflops=%.1f roof_samples_per_s=%.0f\n", model,
         (long long)batch, total_flops, total_seconds, total_flops / total_seconds * 1e-9,
         (double)batch / total_seconds);
}

static int usage(void) {
  fprintf(stderr, "usage: bench_matmul [threads >= 1] [--step a|b [--reps N]]\n");
  return 2;
}

int main(int argc, char **argv) {
  int threads = 2;
  char step = 0;
  long step_reps = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--step")) {
      if (i + 1 >= argc || (strcmp(argv[i + 1], "a") && strcmp(argv[i + 1], "b"))) return usage();
      step = argv[++i][0];
    } else if (!strcmp(argv[i], "--reps")) {
      char *end;
      if (i + 1 >= argc) return usage();
      step_reps = strtol(argv[++i], &end, 10);
      if (!*argv[i] || *end || step_reps < 1 || step_reps > 100000) return usage();
    } else {
      char *end;
      long v = strtol(argv[i], &end, 10);
      if (!*argv[i] || *end || v < 1 || v > 1024) return usage();
      threads = (int)v;
    }
  }
  if (dn_set_num_threads(threads) != DN_OK) {
    fprintf(stderr, "bench_matmul: %s\n", dn_last_error());
    return usage();
  }
  dn_rng rng;
  dn_rng_seed(&rng, 42);
  if (step) {
    bench_step(step, step_reps ? (int)step_reps : step == 'a' ? 101 : 1001, &rng);
    return 0;
  }
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
