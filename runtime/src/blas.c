/*
** The only file that calls cblas_*.
**
** Threading: OpenBLAS's own threads split a product where the thread count
** says, and its kernels round the tiles at those seams differently, so one
** sgemm on 1 and on 2 threads differs in the last bits (measured here with
** OpenBLAS 0.3.21: [300,200] @ [200,150]). Instead the output is cut into
** tiles whose size depends on the shape only, our pool's tasks run the
** tiles, and each tile is one sgemm that OpenBLAS, set to one thread, runs
** on the thread of the task. Results are then
** the same for any thread count, and as fast as OpenBLAS's own threading
** (measured on this 2-core machine, 128x784x1024 and 1024^3: 2 threads 2-10%
** faster; 1 thread 3-6% slower, the price of packing panels per tile).
** Tiles go to threads in static blocks (neighbouring tiles share panels of A
** and B in cache): dynamic hand-out measured 7-9% slower.
**
** On a machine with AVX-512, or else AVX2 and FMA, products go to our own
** sgemm instead (gemm.c), whatever CPU the build targeted: the kernel is
** chosen at first use from what this CPU runs. DROPNET_SGEMM=openblas asks
** for OpenBLAS, =avx2 or =avx512 for that kernel (where the CPU has it; else
** the choice stays automatic), for comparison and tests;
** dn_matmul_backend() names the one in use.
*/
#include <cblas.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "dropnet/matmul.h"
#include "gemm.h"
#include "internal.h"

void openblas_set_num_threads(int num_threads);   /* OpenBLAS's own API */

/* Tiles are at most MAX_TILE wide, and are halved down to MIN_TILE while
   there are fewer than TARGET_TILES of them. Narrower tiles cost ~5% (each
   tile packs its own panels); 128..256 run at OpenBLAS's full speed here. */
#define MAX_TILE 256
#define MIN_TILE 128
#define TARGET_TILES 8

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

bool dn_blas_fits(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
  return fits_int(m) && fits_int(n) && fits_int(k) && fits_int(lda) && fits_int(ldb) && fits_int(ldc);
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Tile sizes for an [m, n] output: a function of the shape alone. */
static void choose_tiles(int64_t m, int64_t n, int64_t *tile_m, int64_t *tile_n) {
  int64_t tm = MAX_TILE, tn = MAX_TILE;
  while (ceil_div(m, tm) * ceil_div(n, tn) < TARGET_TILES) {
    bool split_n = tn > MIN_TILE && n > tn / 2, split_m = tm > MIN_TILE && m > tm / 2;
    if (split_n && (tn >= tm || !split_m)) tn /= 2;
    else if (split_m) tm /= 2;
    else break;
  }
  *tile_m = tm;
  *tile_n = tn;
}

/* Below this many multiply-adds OpenBLAS runs on one thread by itself (its
   GEMM_MULTITHREAD_THRESHOLD), so the product is deterministic without
   tiles, and a parallel region would cost more than the product. */
#define SMALL_PRODUCT (65536.0 * 4)

#ifdef DN_HAVE_GEMM
/* The kernel in use, NULL for OpenBLAS; chosen on first use (threads racing
   to it store the same value). */
static const dn_gemm_kernel *_Atomic chosen_kernel;
static atomic_bool kernel_chosen;

static const dn_gemm_kernel *choose_kernel(void) {
  const char *choice = getenv("DROPNET_SGEMM");
  if (choice && strcmp(choice, "openblas") == 0) return NULL;
  if (choice && strcmp(choice, "avx2") == 0 && dn_gemm_kernel_supported(&dn_gemm_kernel_avx2))
    return &dn_gemm_kernel_avx2;
  if (dn_gemm_kernel_supported(&dn_gemm_kernel_avx512)) return &dn_gemm_kernel_avx512;
  if (dn_gemm_kernel_supported(&dn_gemm_kernel_avx2)) return &dn_gemm_kernel_avx2;
  return NULL;
}

static const dn_gemm_kernel *own_kernel(void) {
  if (!atomic_load_explicit(&kernel_chosen, memory_order_acquire)) {
    atomic_store_explicit(&chosen_kernel, choose_kernel(), memory_order_relaxed);
    atomic_store_explicit(&kernel_chosen, true, memory_order_release);
  }
  return atomic_load_explicit(&chosen_kernel, memory_order_relaxed);
}
#endif

bool dn_blas_here_offsets_available(void) {
#ifdef DN_HAVE_GEMM
  return own_kernel() != NULL;
#else
  return false;
#endif
}

void dn_blas_sgemm_here_offsets(bool trans_a, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                                int64_t lda, const float *b, const int32_t *b_off, float beta, float *c, int64_t ldc) {
#ifdef DN_HAVE_GEMM
  dn_gemm_here_offsets(own_kernel(), trans_a, m, n, k, alpha, a, lda, b, b_off, beta, c, ldc);
#else
  (void)trans_a, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)b_off, (void)beta;
  (void)c, (void)ldc;
#endif
}

const struct dn_gemm_kernel *dn_blas_rows_kernel(void) {
#ifdef DN_HAVE_GEMM
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel && kernel->rows) return kernel;
#endif
  return NULL;
}

const char *dn_matmul_backend(void) {
#ifdef DN_HAVE_GEMM
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel == &dn_gemm_kernel_avx512) return "dropnet avx512";
  if (kernel == &dn_gemm_kernel_avx2) return "dropnet avx2";
#endif
  return "openblas";
}

#ifdef DN_HAVE_GEMM
#define SPARSE_MATMUL dn_gemm_sparse_auto
#else
/* no sparse path without dropnet's sgemm: the setting is kept, and reported */
static bool sparse_matmul = true;
#define SPARSE_MATMUL sparse_matmul
#endif

bool dn_set_sparse_matmul(bool on) {
  bool was = SPARSE_MATMUL;
  SPARSE_MATMUL = on;
  return was;
}

bool dn_get_sparse_matmul(void) { return SPARSE_MATMUL; }

static enum CBLAS_TRANSPOSE op_of(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

/*
** OpenBLAS computes on the calling thread only: our pool runs the tiles.
** Its OpenMP build reads the calling thread's OpenMP thread count (the
** omp_get_max_threads ICV, per thread) at every call and starts a team of
** that size outside OpenMP regions, which all of ours are; setting the count
** sets that ICV, so each thread sets it once, before its first call.
*/
static void openblas_single_threaded(void) {
  static _Thread_local bool done;
  if (!done) {
    openblas_set_num_threads(1);
    done = true;
  }
}

typedef struct tile_job {
  enum CBLAS_TRANSPOSE op_a, op_b;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  const float *a, *b;
  float *c;
  int64_t tile_m, tile_n, tiles_n, tiles;
} tile_job;

/* Tiles [t*tiles/tasks, (t+1)*tiles/tasks), each one sgemm on this thread. */
static void tile_task(void *ctx, int task, int tasks) {
  const tile_job *j = ctx;
  for (int64_t t = dn_split(j->tiles, task, tasks); t < dn_split(j->tiles, task + 1, tasks); t++) {
    int64_t i = (t / j->tiles_n) * j->tile_m, col = (t % j->tiles_n) * j->tile_n;
    int64_t rows = j->m - i < j->tile_m ? j->m - i : j->tile_m, cols = j->n - col < j->tile_n ? j->n - col : j->tile_n;
    const float *a_tile = j->op_a == CblasTrans ? j->a + i : j->a + i * j->lda;
    const float *b_tile = j->op_b == CblasTrans ? j->b + col * j->ldb : j->b + col;
    openblas_single_threaded();
    cblas_sgemm(CblasRowMajor, j->op_a, j->op_b, (int)rows, (int)cols, (int)j->k, j->alpha, a_tile, (int)j->lda,
                b_tile, (int)j->ldb, j->beta, j->c + i * j->ldc + col, (int)j->ldc);
  }
}

void dn_blas_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
#ifdef DN_HAVE_GEMM
  /* Out of memory for its panels, it computes nothing: OpenBLAS then does. */
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel && dn_gemm(kernel, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
#endif
  openblas_single_threaded();
  if ((double)m * (double)n * (double)k <= SMALL_PRODUCT) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m,
                (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
    return;
  }
  tile_job job = {.op_a = op_of(trans_a), .op_b = op_of(trans_b), .m = m, .n = n, .k = k, .lda = lda, .ldb = ldb,
                  .ldc = ldc, .alpha = alpha, .beta = beta, .a = a, .b = b, .c = c};
  choose_tiles(m, n, &job.tile_m, &job.tile_n);
  job.tiles_n = ceil_div(n, job.tile_n);
  int64_t tiles = ceil_div(m, job.tile_m) * job.tiles_n;
  /* Whole tiles in static blocks per task: neighbouring tiles share panels
     of A and B in cache (dynamic hand-out of single tiles measured 7-9% slower). */
  int threads = dn_get_num_threads();
  int tasks = tiles < threads ? (int)tiles : threads;
  job.tiles = tiles;
  dn_parallel(tasks, tile_task, &job);
}

size_t dn_blas_here_floats(int64_t m, int64_t n, int64_t k) {
#ifdef DN_HAVE_GEMM
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel) return dn_gemm_here_floats(kernel, m, n, k);
#endif
  (void)m, (void)n, (void)k;
  return 0;
}

void dn_blas_sgemm_here(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc, float *buffer,
                        const float *a_packed) {
#ifdef DN_HAVE_GEMM
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel) {
    dn_gemm_here(kernel, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, buffer, a_packed);
    return;
  }
#endif
  (void)buffer, (void)a_packed;
  openblas_single_threaded();
  cblas_sgemm(CblasRowMajor, op_of(trans_a), op_of(trans_b), (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb,
              beta, c, (int)ldc);
}

void dn_blas_here_tile(int *mr, int *nr) {
#ifdef DN_HAVE_GEMM
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel) {
    *mr = kernel->mr;
    *nr = kernel->nr;
    return;
  }
#endif
  *mr = *nr = 1;   /* OpenBLAS: no padding to avoid that we know of */
}

size_t dn_blas_here_b_floats(int64_t m, int64_t n, int64_t k) {
#ifdef DN_HAVE_GEMM
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel) return dn_gemm_here_floats(kernel, m, n, k);
#endif
  (void)m;
  return (size_t)(k * n);
}

void dn_blas_sgemm_here_b(bool trans_a, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          dn_blas_b_source *source, void *ctx, float beta, float *c, int64_t ldc, float *buffer,
                          const float *a_packed) {
#ifdef DN_HAVE_GEMM
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel) {
    dn_gemm_here_b(kernel, trans_a, m, n, k, alpha, a, lda, source, ctx, beta, c, ldc, buffer, a_packed);
    return;
  }
#endif
  (void)a_packed;
  source(ctx, 0, k, 0, n, n, buffer);   /* one panel as wide as op(B): op(B) itself */
  openblas_single_threaded();
  cblas_sgemm(CblasRowMajor, op_of(trans_a), CblasNoTrans, (int)m, (int)n, (int)k, alpha, a, (int)lda, buffer, (int)n,
              beta, c, (int)ldc);
}

size_t dn_blas_here_a_floats(int64_t m, int64_t k) {
#ifdef DN_HAVE_GEMM
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel) return dn_gemm_a_floats(kernel, m, k);
#endif
  (void)m, (void)k;
  return 0;
}

bool dn_blas_here_pack_a(bool trans_a, int64_t m, int64_t k, const float *a, int64_t lda, float *dst) {
#ifdef DN_HAVE_GEMM
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel) {
    dn_gemm_pack_a(kernel, trans_a, m, k, a, lda, dst);
    return true;
  }
#endif
  (void)trans_a, (void)m, (void)k, (void)a, (void)lda, (void)dst;
  return false;
}
