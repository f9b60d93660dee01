/*
** bench_dropout [threads]: dn_dropout forward and forward+backward against a
** plain parallel memcpy of the same tensor into a preallocated buffer (the
** memory-bandwidth roof), same thread count, same run. Bytes count what the
** kernels read and write: 8 per element for the copy and the forward (read
** x, write y), 16 for forward+backward (plus read g, write grad_in).
** Forward is timed with its output allocation and release (the caching
** allocator serves it after the first call). Forward+backward is timed two
** ways: "fwd+bwd" calls the node's backward function directly, as the engine
** does for a gradient arriving from the next layer; "fwd+dn_backward" calls
** dn_backward(y, g), which first copies the seed gradient g (engine work, in
** the time but not in the byte count). Prints median times.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "dropnet/dropnet.h"
#include "dropnet/dropout.h"
#include "graph.h"   /* the node's backward function, for the kernel-level timing */
#include "pool.h"

#define WARMUP 3
#define PYTORCH_FWD_BWD_GELEMS 0.036   /* PyTorch 1.13 F.dropout on 16M floats, issue 4 */

const char *dn_bench_name = "bench_dropout";

typedef struct copy_job {
  float *dst;
  const float *src;
} copy_job;

static void copy_range(const void *ctx, int64_t i0, int64_t i1) {
  const copy_job *j = ctx;
  memcpy(j->dst + i0, j->src + i0, (size_t)(i1 - i0) * sizeof *j->dst);
}

/* dst = src, split among `threads` on the runtime's pool, as the kernels split their work. */
static void parallel_copy(float *dst, const float *src, int64_t n, int threads) {
  copy_job job = {dst, src};
  dn_parallel_split(n, 16, threads, copy_range, &job);
}

static void print_row(const char *name, const char *op, double seconds, int64_t n, double bytes_per_element,
                      double copy_gbs) {
  double gbs = bytes_per_element * (double)n / seconds * 1e-9;
  printf("%-12s %-15s %9.3f %9.1f %9.3f", name, op, seconds * 1e3, gbs, (double)n / seconds * 1e-9);
  if (copy_gbs > 0) printf(" %8.0f%%", gbs / copy_gbs * 100.0);
  else printf(" %9s", "");
  printf("\n");
}

static void bench_case(const char *name, int ndim, const int64_t *shape, int reps, int threads, double p) {
  dn_rng rng;
  dn_rng_seed(&rng, 42);
  dn_tensor *x, *g;
  dn_bench_check(dn_tensor_randn(&x, &rng, ndim, shape), "randn");
  dn_bench_check(dn_tensor_randn(&g, &rng, ndim, shape), "randn");
  dn_bench_check(dn_requires_grad_(x, true), "requires_grad_");
  int64_t n = dn_tensor_numel(x);
  float *copy = dn_alloc((size_t)n * sizeof *copy);
  double *t_copy = malloc((size_t)reps * sizeof *t_copy), *t_fwd = malloc((size_t)reps * sizeof *t_fwd);
  double *t_both = malloc((size_t)reps * sizeof *t_both), *t_engine = malloc((size_t)reps * sizeof *t_engine);
  if (!copy || !t_copy || !t_fwd || !t_both || !t_engine) {
    fprintf(stderr, "bench_dropout: out of memory\n");
    exit(1);
  }
  memset(copy, 0, (size_t)n * sizeof *copy);   /* touch the pages once */

  /* interleave the four so drifting machine load hits all alike */
  for (int r = -WARMUP; r < reps; r++) {
    double t0 = dn_bench_now();
    parallel_copy(copy, dn_tensor_data(x), n, threads);
    double t1 = dn_bench_now();
    bool grad_mode = dn_set_grad_enabled(false);   /* forward alone records no node */
    dn_tensor *y;
    dn_bench_check(dn_dropout(&y, x, p, &rng, DN_DROPOUT_INVERTED), "dropout");
    dn_tensor_release(y);
    dn_set_grad_enabled(grad_mode);
    double t2 = dn_bench_now();
    dn_bench_check(dn_dropout(&y, x, p, &rng, DN_DROPOUT_INVERTED), "dropout");
    dn_tensor *grad_in[DN_NODE_INPUTS] = {NULL};
    grad_mode = dn_set_grad_enabled(false);   /* backward functions run with grad mode off */
    dn_bench_check(y->grad_fn->type->backward(y->grad_fn, g, grad_in), "dropout backward");
    dn_set_grad_enabled(grad_mode);
    dn_tensor_release(grad_in[0]);
    dn_tensor_release(y);
    double t3 = dn_bench_now();
    dn_bench_check(dn_dropout(&y, x, p, &rng, DN_DROPOUT_INVERTED), "dropout");
    dn_bench_check(dn_backward(y, g, false), "backward");
    dn_tensor_release(y);
    double t4 = dn_bench_now();
    dn_tensor_release(x->grad);   /* the next backward writes a fresh gradient */
    x->grad = NULL;
    if (r >= 0) {
      t_copy[r] = t1 - t0;
      t_fwd[r] = t2 - t1;
      t_both[r] = t3 - t2;
      t_engine[r] = t4 - t3;
    }
  }
  double copy_s = dn_bench_median(t_copy, reps), fwd_s = dn_bench_median(t_fwd, reps), both_s = dn_bench_median(t_both, reps);
  double engine_s = dn_bench_median(t_engine, reps);
  double copy_gbs = 8.0 * (double)n / copy_s * 1e-9;
  print_row(name, "memcpy", copy_s, n, 8.0, 0);
  print_row(name, "forward", fwd_s, n, 8.0, copy_gbs);
  print_row(name, "fwd+bwd", both_s, n, 16.0, copy_gbs);
  print_row(name, "fwd+dn_backward", engine_s, n, 16.0, copy_gbs);
  printf("%-12s fwd+bwd = %.0fx, fwd+dn_backward = %.0fx PyTorch 1.13's %.3f G elements/s (issue 4)\n", "",
         (double)n / both_s * 1e-9 / PYTORCH_FWD_BWD_GELEMS, (double)n / engine_s * 1e-9 / PYTORCH_FWD_BWD_GELEMS,
         PYTORCH_FWD_BWD_GELEMS);
  free(t_copy);
  free(t_fwd);
  free(t_both);
  free(t_engine);
  dn_free(copy);
  dn_tensor_release(x);
  dn_tensor_release(g);
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  if (dn_set_num_threads(threads) != DN_OK) {
    fprintf(stderr, "usage: bench_dropout [threads >= 1]\n%s\n", dn_last_error());
    return 2;
  }
  double p = 0.5;
  printf("dropout p = %.1f, %d thread%s, median of repeated runs after %d warm-up runs\n", p, threads,
         threads == 1 ? "" : "s", WARMUP);
  printf("%-12s %-15s %9s %9s %9s %9s\n", "tensor", "op", "ms", "GB/s", "Gelem/s", "of copy");
  bench_case("16M", 1, (int64_t[]){16 << 20}, 21, threads, p);
  bench_case("[128,1024]", 2, (int64_t[]){128, 1024}, 301, threads, p);
  printf("GB/s counts bytes read + written: 8 per element forward and copy, 16 forward+backward;\n");
  printf("\"of copy\" compares GB/s with memcpy's\n");
  return 0;
}
