/*
** The only file that calls cblas_*.
**
** Threading: OpenBLAS's own threads split a product where the thread count
** says, and its kernels round the tiles at those seams differently, so one
** sgemm on 1 and on 2 threads differs in the last bits (measured here with
** OpenBLAS 0.3.21: [300,200] @ [200,150]). Instead the output is cut into
** tiles whose size depends on the shape only, our OpenMP team runs the tiles,
** and each tile is one sgemm that OpenBLAS runs on the calling thread (its
** OpenMP build does so inside an active parallel region). Results are then
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

const char *dn_matmul_backend(void) {
#ifdef DN_HAVE_GEMM
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel == &dn_gemm_kernel_avx512) return "dropnet avx512";
  if (kernel == &dn_gemm_kernel_avx2) return "dropnet avx2";
#endif
  return "openblas";
}

void dn_blas_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
#ifdef DN_HAVE_GEMM
  /* Out of memory for its panels, it computes nothing: OpenBLAS then does. */
  const dn_gemm_kernel *kernel = own_kernel();
  if (kernel && dn_gemm(kernel, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
#endif
  if ((double)m * (double)n * (double)k <= SMALL_PRODUCT) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m,
                (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
    return;
  }
  int64_t tile_m, tile_n;
  choose_tiles(m, n, &tile_m, &tile_n);
  int64_t tiles_n = ceil_div(n, tile_n), tiles = ceil_div(m, tile_m) * tiles_n;
  /* With more than one thread the team has at least two, even for one tile:
     OpenBLAS keeps to the calling thread only inside an active region. */
  int threads = dn_get_num_threads();
  if (threads > tiles) threads = tiles < 2 ? 2 : (int)tiles;
  enum CBLAS_TRANSPOSE op_a = trans_a ? CblasTrans : CblasNoTrans, op_b = trans_b ? CblasTrans : CblasNoTrans;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < tiles; t++) {
    int64_t i = (t / tiles_n) * tile_m, j = (t % tiles_n) * tile_n;
    int64_t rows = m - i < tile_m ? m - i : tile_m, cols = n - j < tile_n ? n - j : tile_n;
    const float *a_tile = trans_a ? a + i : a + i * lda;
    const float *b_tile = trans_b ? b + j * ldb : b + j;
    cblas_sgemm(CblasRowMajor, op_a, op_b, (int)rows, (int)cols, (int)k, alpha, a_tile, (int)lda, b_tile, (int)ldb,
                beta, c + i * ldc + j, (int)ldc);
  }
}
