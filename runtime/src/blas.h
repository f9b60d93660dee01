/*
** The one door to BLAS: every cblas_* call of the runtime goes through here
** (as Torch7's THBlas.c), so the BLAS's int-sized arguments are checked in
** one place and another BLAS is a one-file change. Not installed.
*/
#ifndef DROPNET_BLAS_H
#define DROPNET_BLAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when every value fits the BLAS's int arguments; callers check sizes
   and leading dims with it before allocating anything, and report the error. */
bool dn_blas_fits(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc);

/*
** Row-major C[m,n] = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T.
** A is [m,k] (stored as [k,m] when trans_a), B is [k,n] (stored as [n,k]
** when trans_b); lda/ldb/ldc are the row strides of the stored matrices,
** >= the stored row length. m, n, k >= 1; every value must pass
** dn_blas_fits. Results are bit-identical for any thread count.
*/
void dn_blas_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/*
** The same product on the calling thread alone, for work already split
** across the team (a convolution's images, one per task). buffer: at least
** dn_blas_here_floats(m, n, k) floats, 64-byte aligned (dn_alloc's), for
** our kernel's packing; OpenBLAS takes none (0). a_packed: op(A) packed by
** dn_blas_here_pack_a, or NULL. Bits depend on the shape alone.
*/
size_t dn_blas_here_floats(int64_t m, int64_t n, int64_t k);
void dn_blas_sgemm_here(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc, float *buffer,
                        const float *a_packed);
/* op(A) [m, k] packed once for many such products (a convolution's weight,
   for every image): dn_blas_here_a_floats(m, k) floats at dst (64-byte
   aligned), then passed as a_packed with the same a. Returns false, having
   packed nothing, where the products take no packed A (OpenBLAS: pass NULL). */
size_t dn_blas_here_a_floats(int64_t m, int64_t k);
bool dn_blas_here_pack_a(bool trans_a, int64_t m, int64_t k, const float *a, int64_t lda, float *dst);

/* The micro-tile of dn_blas_sgemm_here's kernel (rows of op(A), columns of
   op(B)): products are computed in whole tiles, so a caller may choose the
   orientation of a product (C or C^T) that pads less. 1 x 1 for OpenBLAS. */
void dn_blas_here_tile(int *mr, int *nr);

/*
** The same with op(B) [k, n] from a source that writes it packed (a
** convolution's im2col straight into the kernel's panels): source(ctx, pc,
** kc, jc, nc, width, dst) writes op(B)[pc:pc+kc, jc:jc+nc] as panels of
** `width` columns, panel q at dst + q * width * kc holding kc rows of width
** values, zeros past nc. For OpenBLAS it is called once with width n, which
** is op(B) itself, row-major, in buffer. buffer: at least
** dn_blas_here_b_floats(m, n, k) floats, 64-byte aligned.
*/
typedef void dn_blas_b_source(void *ctx, int64_t pc, int64_t kc, int64_t jc, int64_t nc, int64_t width, float *dst);
size_t dn_blas_here_b_floats(int64_t m, int64_t n, int64_t k);
void dn_blas_sgemm_here_b(bool trans_a, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          dn_blas_b_source *source, void *ctx, float beta, float *c, int64_t ldc, float *buffer,
                          const float *a_packed);

/* C[m, n] = alpha * op(A) @ B + beta * C on the calling thread, B's row p
   at b + b_off[p] (n values each): our kernels' direct path (gemm.h's
   dn_gemm_here_offsets), where dn_blas_here_offsets_available (not where
   products go to OpenBLAS, which has no such operand). */
bool dn_blas_here_offsets_available(void);
void dn_blas_sgemm_here_offsets(bool trans_a, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                                int64_t lda, const float *b, const int32_t *b_off, float beta, float *c, int64_t ldc);

/* Our kernel when it has products over shifted rows (gemm.h's
   dn_gemm_rows: AVX-512), else NULL (AVX2, OpenBLAS): a convolution then
   takes its im2col path. The kernel's own code, not a BLAS's: gemm.h. */
struct dn_gemm_kernel;
const struct dn_gemm_kernel *dn_blas_rows_kernel(void);

#endif
