/*
** dropnet's own single-precision GEMM for AVX-512 machines (gemm.c).
**
** Same contract as dn_blas_sgemm (blas.h): row-major
** C[m,n] = alpha * op(A) @ op(B) + beta * C, A stored as [k,m] when trans_a,
** B stored as [n,k] when trans_b; m, n, k >= 1; lda/ldb/ldc >= the stored
** row length. beta == 0 never reads C (NaN in C does not propagate), as BLAS.
** Results are bit-identical for any thread count: each element sums its k
** products in the same order whoever computes it. Returns false, having
** written nothing, when its packing buffers cannot be allocated.
**
** Not installed. Only built when the compiler targets AVX-512F; blas.c
** chooses between it and OpenBLAS.
*/
#ifndef DROPNET_GEMM_H
#define DROPNET_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#if defined(__AVX512F__) && defined(__AVX512VL__)
#define DN_HAVE_GEMM_AVX512 1
bool dn_gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
#endif

#endif
