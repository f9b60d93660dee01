/*
** DropBlock (Ghiasi, Lin and Le, "DropBlock: A regularization method for
** convolutional networks", NeurIPS 2018): dropout of contiguous square
** regions of a feature map, as the authors' reference code computes it.
** A member of the dropout family: the same counter-based generator, no mask
** kept between forward and backward, the same bits for any thread count.
**
** x is [N, C, H, W] or unbatched [C, H, W] (read as N = 1), float32; bs is
** the block size, 1 <= bs <= min(H, W). In training (or MC) mode:
** - Each plane (n, c) has a grid of (H - bs + 1) x (W - bs + 1) block
**   positions: exactly the places where a whole bs x bs block fits inside
**   the map. Position (i, j) is the block's top-left corner (its anchor):
**   the block covers rows i .. i+bs-1 and columns j .. j+bs-1. (The
**   reference samples the block's centre (i + bs/2, j + bs/2), integer
**   division, and zeroes it with a SAME-padded bs x bs min-pool: the same
**   blocks.)
** - Each position is a block, independently, with probability
**     gamma = p * H * W / (bs^2 * (H - bs + 1) * (W - bs + 1))
**   (the paper's formula with H and W apart; gamma <= p). Every element
**   covered by at least one block is dropped (the mask is 0 there), the
**   others are kept (1). Blocks overlap freely, so the dropped fraction is
**   a little below p (the formula counts overlapping blocks twice).
** - y = x * mask * scale, scale = (float)(numel / kept), kept the number of
**   kept elements of the whole tensor (the reference's mask.numel() /
**   mask.sum()); dropped elements are exactly 0 (a select: x = inf or NaN
**   gives 0 too). Nothing kept: y and the gradient are all zeros (scale 0).
** - Backward: dx = grad * mask * scale, the same mask and scale.
** - p = 0 returns x itself (no copy, no draw). p = 1 is defined as
**   dropping every element (zeros, zero gradients), although the formula
**   would give gamma < 1 when 1 < bs < min(H, W).
**
** Reproducibility contract (dropout.h's generator contract applies):
** - gamma is rounded to threshold = round(gamma * 65536) (half away from
**   zero, in double), 65536 for p = 1. Decision k uses the 16 bits of
**   dropout decision k (Philox stream 1, block offset + k/8) and places a
**   block iff bits < threshold. (The rounding moves gamma by at most 2^-17,
**   so the expected dropped fraction by at most bs^2 * 2^-17: 3.7e-4 for
**   bs = 7; a gamma below 2^-17 places no block.)
** - Decision k = ((n * C + c) * (H - bs + 1) + i) * (W - bs + 1) + j for
**   the block anchored at (i, j) of plane (n, c).
** - A forward advances the generator's offset by ceil(decisions / 8)
**   blocks, decisions = N * C * (H - bs + 1) * (W - bs + 1), whatever p > 0
**   is (p = 1 too); p = 0 draws nothing. Backward regenerates the mask from
**   the (seed, offset) saved in the node, which holds no tensor: only the
**   generator position, bs, the threshold and the scale.
** Planes are computed whole, one task each: the thread count never changes
** a value, and the kept count is an exact integer sum.
*/
#ifndef DROPNET_DROPBLOCK_H
#define DROPNET_DROPBLOCK_H

#include "dropnet/rng.h"
#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* DropBlock in training (or MC) mode, as above; *out a new contiguous tensor (or x itself for
   p = 0), NULL on failure. Eval mode is the identity: do not call it there. */
DN_API dn_status dn_dropblock2d(dn_tensor **out, dn_tensor *x, double p, int64_t block_size, dn_rng *rng);

/* Inspection: the uint8 mask (1 = kept) that dn_dropblock2d would draw for an input of this shape
   with this generator state, p and block size, without advancing the generator (all ones for
   p = 0). The scale is numel / (number of ones). */
DN_API dn_status dn_dropblock2d_mask(dn_tensor **mask, const dn_rng *rng, int ndim, const int64_t *shape, double p,
                                     int64_t block_size);

DN_END_DECLS

#endif
