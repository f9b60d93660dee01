/*
** Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
** A number depends only on (seed, offset, element index): no hidden state,
** so results do not depend on thread count and can be regenerated.
** A generator is a plain value; every random op takes one explicitly and
** advances its offset by the counters it consumed.
**
** Reproducibility contract (changing any of this changes every result):
** - Philox counter = (block low 32, block high 32, stream low 32, stream
**   high 32), key = (seed low 32, seed high 32); rand, randn and randperm
**   use stream 0. Verified against Random123's known-answer vectors.
** - rand: element i (row-major) is word i%4 of block offset + i/4, as
**   (word >> 8) * 2^-24, in [0, 1) and never 1.0.
** - randn: element i comes from block offset + i/4 too; words (0,1) give
**   elements 4b, 4b+1 and words (2,3) give 4b+2, 4b+3 by Box-Muller:
**   u1 = ((w0 >> 8) + 1) * 2^-24 in (0, 1], u2 = (w1 >> 8) * 2^-24,
**   r = sqrt(-2 ln u1), values r cos(2 pi u2), r sin(2 pi u2) (in double,
**   rounded to float).
** - rand and randn advance offset by ceil(n/4), so when n is a multiple of
**   4, rand(n) then rand(m) equals rand(n+m) from the same state (and
**   likewise for randn). Thread count never changes a value.
** - randperm: Fisher-Yates from the back (i = n-1 .. 1 swaps with j uniform
**   in [0, i] by Lemire's unbiased multiply-and-reject on 64-bit draws);
**   draw k is block offset + k/2, words (2(k%2), 2(k%2)+1) as (low, high).
**   The offset advances by ceil(draws/2).
*/
#ifndef DROPNET_RNG_H
#define DROPNET_RNG_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

typedef struct dn_rng {
  uint64_t seed;     /* the Philox key */
  uint64_t offset;   /* next unused 128-bit counter block */
} dn_rng;

/* Key = seed, offset = 0: the generator's first state for that seed. */
DN_API void dn_rng_seed(dn_rng *rng, uint64_t seed);
/* One Philox4x32-10 block: 4 x 32 random bits for counter (block, stream). */
DN_API void dn_philox4x32(uint64_t key, uint64_t block, uint64_t stream, uint32_t out[4]);

/* U[0,1) float32 and N(0,1) float32 tensors. */
DN_API dn_status dn_tensor_rand(dn_tensor **out, dn_rng *rng, int ndim, const int64_t *shape);
DN_API dn_status dn_tensor_randn(dn_tensor **out, dn_rng *rng, int ndim, const int64_t *shape);
/* A random permutation of [base, base+n) as int32 (for shuffling);
   0 <= n <= INT32_MAX and every value must fit in int32. */
DN_API dn_status dn_randperm(dn_tensor **out, dn_rng *rng, int64_t n, int64_t base);

DN_END_DECLS

#endif
