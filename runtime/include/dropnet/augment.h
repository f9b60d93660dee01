/*
** Data augmentation of image batches: random crops of the zero-padded (or
** fill-padded) images and random horizontal flips, one random choice per
** image, in one pass over the batch. They are data transforms, not layers:
** the result is a new contiguous float32 tensor that never records a node
** and never requires grad, whatever the input does.
**
** A batch is x [N, ..., H, W] (at least 3 dims): dim 0 counts the images,
** the last two are their height and width, and the dims between are the
** channels (none for [N, H, W]); every channel of an image gets the same
** choice. Any layout is accepted (a non-contiguous x is read through a
** contiguous copy).
**
** Reproducibility contract (changing any of this changes every result):
** - Image n draws from Philox block (offset + n) of stream 2 under the
**   generator's seed (rand/randn/randperm use stream 0, dropout stream 1):
**   words w0..w3. Every call advances the offset by N blocks, whatever the
**   padding, sizes or p, so a batch's choices depend only on the
**   generator's state and on n, never on the thread count.
** - Under a batch shard (rng.h) of samples [first, first + count) of
**   total, N must be count, image n draws block (offset + first + n) and
**   the offset advances by total: the full batch's images first.. exactly.
** - dn_random_crop: with the padded image Hp = H + 2 pad_h by Wp = W + 2 pad_w
**   and the crop out_h x out_w, top = (w0 * (Hp - out_h + 1)) >> 32 and
**   left = (w1 * (Wp - out_w + 1)) >> 32 (64-bit products: Lemire's
**   multiply without rejection, a bias below (Hp - out_h + 1) / 2^32).
**   Output (i, j) of every channel is padded pixel (top + i, left + j):
**   input (top + i - pad_h, left + j - pad_w) where that lies inside the
**   image, else `fill`.
** - dn_random_hflip: image n is flipped iff (w0 >> 8) * 2^-24 < p (the
**   uniform value dn_tensor_rand would make of w0): p = 0 never flips, p = 1
**   always does. A flipped image's output (i, j) is input (i, W - 1 - j).
*/
#ifndef DROPNET_AUGMENT_H
#define DROPNET_AUGMENT_H

#include "dropnet/rng.h"
#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* The Philox stream of the augmentation draws. */
#define DN_AUGMENT_STREAM 2

/* A random out_h x out_w crop of each image padded by pad_h rows above and
   below and pad_w columns left and right with `fill` (torchvision's
   RandomCrop(size, padding) with constant padding): out [N, ..., out_h, out_w].
   x float32; 1 <= out_h <= H + 2 pad_h, 1 <= out_w <= W + 2 pad_w, pads >= 0,
   padded sides at most 2^31 - 1; fill a finite float32 value. */
DN_API dn_status dn_random_crop(dn_tensor **out, const dn_tensor *x, int64_t out_h, int64_t out_w, int64_t pad_h,
                                int64_t pad_w, double fill, dn_rng *rng);
/* Each image mirrored left to right with probability p in [0, 1]
   (torchvision's RandomHorizontalFlip(p)): out has x's shape. x float32. */
DN_API dn_status dn_random_hflip(dn_tensor **out, const dn_tensor *x, double p, dn_rng *rng);

DN_END_DECLS

#endif
