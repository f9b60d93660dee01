/*
** bench_gemm_roof [threads] [--model a|b] [--reps N]: the sgemm rate at the
** shapes of one training step of scripts/bench/train_throughput.lua's model a
** (784-1024-1024-10, batch 128; the default) or b (784-64-10, batch 32), the
** GEMM roof of that training. Each product the fused linear layer
** (runtime/src/linear.c) runs: forward y = x @ W:t(), backward dx = g @ W
** (not for the first layer, whose input needs no gradient) and dW = g:t() @ x,
** through dn_matmul_into (dropnet's sgemm, dn_matmul_backend()) into
** preallocated outputs, in step order, N steps after 3 warm-up steps (default
** 101 for a, 1001 for b). Prints each product's median GFLOP/s and a STEP line
** with their sum: the GEMM time of one step, so that batch / that time is the
** GEMM roof in samples/s (scripts/bench/all.sh reads it), and the step's GEMM
** FLOPs over that time is the measured sgemm rate at the model's shapes.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "dropnet/dropnet.h"

#define WARMUP 3

const char *dn_bench_name = "bench_gemm_roof";

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
      fprintf(stderr, "bench_gemm_roof: out of memory\n");
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
         "(sgemm: %s), %d thread%s, median of %d steps\n",
         model, (long long)batch, dn_matmul_backend(), dn_get_num_threads(), dn_get_num_threads() == 1 ? "" : "s", reps);
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
  fprintf(stderr, "usage: bench_gemm_roof [threads >= 1] [--model a|b] [--reps N]\n");
  return 2;
}

int main(int argc, char **argv) {
  int threads = 2;
  char model = 'a';
  long reps = 0;
  for (int i = 1; i < argc; i++) {
    char *end;
    if (!strcmp(argv[i], "--model")) {
      if (i + 1 >= argc || (strcmp(argv[i + 1], "a") && strcmp(argv[i + 1], "b"))) return usage();
      model = argv[++i][0];
    } else if (!strcmp(argv[i], "--reps")) {
      if (i + 1 >= argc) return usage();
      reps = strtol(argv[++i], &end, 10);
      if (!*argv[i] || *end || reps < 1 || reps > 100000) return usage();
    } else {
      long v = strtol(argv[i], &end, 10);
      if (!*argv[i] || *end || v < 1 || v > 1024) return usage();
      threads = (int)v;
    }
  }
  if (dn_set_num_threads(threads) != DN_OK) {
    fprintf(stderr, "bench_gemm_roof: %s\n", dn_last_error());
    return usage();
  }
  dn_rng rng;
  dn_rng_seed(&rng, 42);
  bench_step(model, reps ? (int)reps : model == 'a' ? 101 : 1001, &rng);
  return 0;
}
