/*
** The dropout family: counter-based, mask-free kernels.
**
** A keep/drop decision for element i is a pure function of the generator's
** (seed, offset) at the time of the forward call and of i, so backward
** regenerates the mask instead of storing it (0 bytes per element between
** forward and backward), and the result does not depend on the thread count.
** Every forward advances the generator's offset past the counters it used,
** so successive calls (steps, layers) get fresh masks.
**
** p is rounded to a multiple of 2^-16 (the decision compares 16 random bits
** with a threshold); the scale is computed from the rounded p, so the
** expected output equals the input exactly. p = 0 returns the input itself
** (no copy, no draw); p = 1 gives zeros and zero gradients; p outside [0, 1]
** or NaN is an error. All forwards are differentiable (autograd nodes).
**
** Reproducibility contract (changing any of this changes every mask):
** - Decision k uses 16 bits: Philox block (offset + k/8) of stream 1 under
**   the generator's seed (rand/randn use stream 0), word (k%8)/2, the low
**   half for even k and the high half for odd k; keep iff the bits are >=
**   threshold = round(p * 65536). Every forward advances the offset by
**   ceil(decisions/8) blocks.
** - Decision k is element k (row-major) for dn_dropout, dn_alpha_dropout and
**   dn_dropout_mask; channel n*C + c for dn_dropout_channels; n*F + f (at
**   every t) for dn_dropout_locked; weight element k of [out, in] for
**   dn_dropconnect_linear.
** - Kept values are x * (float)(1/(1 - threshold/65536)) (INVERTED) or x
**   (TEST_TIME); dropped values are exactly 0, even for x = inf or NaN.
** - dn_gaussian_dropout: noise_i = (float)(1 + sqrt(p/(1-p)) z_i), z_i the
**   float N(0,1) that dn_tensor_randn would give for element i but drawn on
**   stream 1 (block offset + i/4); the offset advances by ceil(n/4).
** The thread count never changes a value.
*/
#ifndef DROPNET_DROPOUT_H
#define DROPNET_DROPOUT_H

#include "dropnet/rng.h"
#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

typedef enum dn_dropout_scaling {
  DN_DROPOUT_INVERTED = 0,   /* training: kept * 1/(1-p); eval: identity (PyTorch, Torch7) */
  DN_DROPOUT_TEST_TIME       /* training: kept as is; eval: * (1-p) (Srivastava et al. 2014) */
} dn_dropout_scaling;

/* Standard dropout in training (or MC) mode. */
DN_API dn_status dn_dropout(dn_tensor **out, dn_tensor *x, double p, dn_rng *rng, dn_dropout_scaling scaling);
/* Eval-mode transform for TEST_TIME scaling: x * (1-p) (identity for INVERTED, returned as x itself). */
DN_API dn_status dn_dropout_eval(dn_tensor **out, dn_tensor *x, double p, dn_dropout_scaling scaling);

/* Channel (spatial) dropout: x [N, C, *], one decision per (n, c) zeroes the whole channel.
   Dropout1d/2d/3d are this on [N,C,L] / [N,C,H,W] / [N,C,D,H,W]; any ndim >= 2 is accepted
   ([N, C] is element dropout with dn_dropout's decisions). */
DN_API dn_status dn_dropout_channels(dn_tensor **out, dn_tensor *x, double p, dn_rng *rng,
                                     dn_dropout_scaling scaling);
/* Variational / locked dropout: x [T, N, F], one mask per (n, f) reused at every step t. */
DN_API dn_status dn_dropout_locked(dn_tensor **out, dn_tensor *x, double p, dn_rng *rng,
                                   dn_dropout_scaling scaling);
/* Alpha dropout (Klambauer et al. 2017): dropped units set to -lambda*alpha of SELU, then an
   affine map keeps zero mean and unit variance of a standard normal input. */
DN_API dn_status dn_alpha_dropout(dn_tensor **out, dn_tensor *x, double p, dn_rng *rng);
/* Gaussian dropout: x * N(1, p/(1-p)) noise (Srivastava et al. 2014, section 10). p < 1. */
DN_API dn_status dn_gaussian_dropout(dn_tensor **out, dn_tensor *x, double p, dn_rng *rng);
/* DropConnect on a linear layer: y = x @ (w * M / (1-p))^T + b with M ~ Bernoulli(1-p) over
   w's elements; gradients reach only the kept weights. */
DN_API dn_status dn_dropconnect_linear(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, double p,
                                       dn_rng *rng);

/*
** The model case of an MLP layer in one call: y = dropout(relu(x @ w^T + b), p)
** with dn_dropout's decisions and generator advance, so its values and
** gradients are those of dn_linear(..., DN_ACT_RELU) followed by dn_dropout
** (bit for bit, tested). The dropout is applied in place on the layer's
** output while it is in cache, and backward needs no mask at all: an
** element's gradient flows (times the scale) exactly where its output is > 0,
** as the scale is positive. p = 0 draws nothing (dn_linear alone).
*/
DN_API dn_status dn_linear_relu_dropout(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, double p,
                                        dn_rng *rng, dn_dropout_scaling scaling);

/* Inspection: the uint8 keep mask (1 = kept) that dn_dropout would draw for numel
   elements with this generator state and p, without advancing the generator. */
DN_API dn_status dn_dropout_mask(dn_tensor **mask, const dn_rng *rng, int ndim, const int64_t *shape, double p);

/* Bytes a dropout node keeps between forward and backward for its mask (0: regenerated). */
DN_API size_t dn_dropout_saved_mask_bytes(const dn_tensor *out);

DN_END_DECLS

#endif
