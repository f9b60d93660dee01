/*
** Matrix products (float32): dropnet's own sgemm (runtime/src/gemm.c), its
** AVX-512 kernel on a CPU with AVX-512, else its AVX2 kernel on a CPU with
** AVX2 and FMA, chosen at run time whatever the build targets; OpenBLAS's
** sgemm otherwise, or when the environment variable DROPNET_SGEMM=openblas
** asks for it (DROPNET_SGEMM=avx2 asks for the AVX2 kernel).
** Transposed views go to sgemm as transposes, not copies.
*/
#ifndef DROPNET_MATMUL_H
#define DROPNET_MATMUL_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* [n,k] x [k,m] -> [n,m];  [b,n,k] x [b,k,m] -> [b,n,m] (a batch of 1 on
   either side broadcasts; a 2-D operand is used for every batch);
   1-D operands as in torch.matmul (vector dot/matrix-vector). */
DN_API dn_status dn_matmul(dn_tensor **out, dn_tensor *a, dn_tensor *b);

/* out = beta * out + alpha * op(a) @ op(b) into an existing contiguous
   float32 [n,m] tensor (no allocation); a, b 2-D, transposed views welcome.
   Not differentiable (it records nothing): with grad mode on it fails when
   out, a or b requires grad. */
DN_API dn_status dn_matmul_into(dn_tensor *out, dn_tensor *a, dn_tensor *b, float alpha, float beta);

/* The sgemm in use: "dropnet avx512", "dropnet avx2" or "openblas". */
DN_API const char *dn_matmul_backend(void);

/* Whether dropnet's sgemm skips the zeros of the left operand of a product
   when most of it is zero (ReLU's and dropout's outputs, and the gradients
   that flow back through them): on by default. The results are the same
   bits either way (each sum drops only terms 0 * b that add nothing, and a
   block of the other operand holding an infinity or NaN runs every term);
   only the speed changes. Returns the previous setting. No effect with the
   OpenBLAS backend. */
DN_API bool dn_set_sparse_matmul(bool on);
DN_API bool dn_get_sparse_matmul(void);

DN_END_DECLS

#endif
