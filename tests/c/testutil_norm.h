/* Helpers shared by the batch norm tests that compare a fused op with the
   chain it replaces, bit for bit (test_norm.c: batch norm + ReLU;
   test_norm_pool.c: batch norm + ReLU + max pool): what a run leaves, and
   the comparison. Linked into those two programs only (tests/CMakeLists.txt).
   Include after testutil.h. */
#ifndef DN_TESTUTIL_NORM_H
#define DN_TESTUTIL_NORM_H

#include "dropnet/tensor.h"

/* Which tensors require grad in a fused-vs-chain run. */
enum { GRAD_X = 1, GRAD_W = 2, GRAD_B = 4 };

/* What a run leaves: the output, the running statistics, the gradients of x, weight, bias (NULL: none). */
enum { OUT_Y, OUT_RM, OUT_RV, OUT_DX, OUT_DW, OUT_DB, N_OUTS };

/* outs = contiguous copies of y, the running statistics and x's, weight's and bias's gradients (NULL where
   a tensor or gradient is missing). */
void norm_collect_outs(dn_tensor *outs[N_OUTS], dn_tensor *y, dn_tensor *running_mean, dn_tensor *running_var,
                       dn_tensor *x, dn_tensor *weight, dn_tensor *bias);
/* Fails naming `what` and the first output whose bits differ from `against`'s (or that one run lacks). */
void norm_assert_same_bits(dn_tensor *const a[N_OUTS], dn_tensor *const b[N_OUTS], const char *what,
                           const char *against);
void norm_release_outs(dn_tensor *outs[N_OUTS]);

#endif
