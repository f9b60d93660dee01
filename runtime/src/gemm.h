/*
** dropnet's own single-precision GEMM (gemm.c: the blocked driver and its
** threading; gemm_avx512.c, gemm_avx2.c: the micro-kernels and packing of
** each instruction set; gemm_pack.h: the packing both share).
**
** Same contract as dn_blas_sgemm (blas.h): row-major
** C[m,n] = alpha * op(A) @ op(B) + beta * C, A stored as [k,m] when trans_a,
** B stored as [n,k] when trans_b; m, n, k >= 1; lda/ldb/ldc >= the stored
** row length. beta == 0 never reads C (NaN in C does not propagate), as BLAS.
** Results are bit-identical for any thread count: each element sums its k
** products in the same order whoever computes it (they differ between
** kernels). Returns false, having written nothing, when its packing buffers
** cannot be allocated.
**
** Not installed. The kernels are compiled for their instruction sets
** whatever the build targets (per-file options, CMakeLists.txt) and chosen at
** run time: blas.c asks dn_gemm_kernel_supported before using one.
*/
#ifndef DROPNET_GEMM_H
#define DROPNET_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DN_HAVE_GEMM 1

/* Packs a len x width block whose element (p, w) sits at src[p * along +
   w * across] into panels of the kernel's width: panel q holds columns
   [q W, q W + W) as len rows of W values at dst + q * W * len, zeros beyond
   width. */
typedef void (*dn_gemm_pack_fn)(const float *src, int64_t along, int64_t across, int64_t len, int64_t width,
                                float *dst);
/* C[rows, cols] (<= mr x nr, row stride ldc) = alpha * (ap panel @ bp panel)
   + beta * C; beta == 0 does not read C. */
typedef void (*dn_gemm_micro_fn)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int rows,
                                 int cols, float alpha, float beta);

typedef struct dn_gemm_kernel {
  const char *name;          /* dn_matmul_backend's "dropnet <name>" */
  const char *cpu_features[3]; /* __builtin_cpu_supports names it needs, NULL-ended */
  int mr, nr;                /* the micro-tile: rows of op(A), columns of op(B) */
  int kc, mc, nc;            /* blocks: k, rows of A per packed block, columns of B */
  dn_gemm_pack_fn pack_a;    /* into mr-wide panels */
  dn_gemm_pack_fn pack_b;    /* into nr-wide panels */
  dn_gemm_micro_fn micro;
} dn_gemm_kernel;

extern const dn_gemm_kernel dn_gemm_kernel_avx512, dn_gemm_kernel_avx2;

/* Whether this CPU (and OS) runs the kernel's instructions. */
bool dn_gemm_kernel_supported(const dn_gemm_kernel *kernel);

bool dn_gemm(const dn_gemm_kernel *kernel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
#endif

#endif
