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
** - Batch shards (data-parallel runs): a generator may hold samples
**   [first, first + count) of a batch of `total` samples. Then every
**   per-sample random op (the dropout family but dropconnect_linear,
**   dropblock2d, random_crop, random_hflip, and the mask inspectors that take
**   a shape) requires its input's batch dimension (dim 0; dim 1 for
**   dropout_locked [T, N, F]) to have size count, and draws exactly what it
**   would draw for those samples of a `total`-sample input from the same
**   state: with `per` decisions per sample, local decision k is global
**   decision first*per + k. The offset advances as the full-batch op's does,
**   so every process's next op starts at the same offset. Unbatched inputs
**   and other sizes fail. rand, randn, randperm and dropconnect's weight mask
**   are not per-sample and ignore the shard. The shard is configuration, not
**   state: seed and offset are the generator's whole state.
*/
#ifndef DROPNET_RNG_H
#define DROPNET_RNG_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

typedef struct dn_rng {
  uint64_t seed;     /* the Philox key */
  uint64_t offset;   /* next unused 128-bit counter block */
  /* batch shard: samples [shard_first, shard_first + shard_count) of
     shard_total; all 0 = none (a zero-initialized generator has none) */
  int64_t shard_first, shard_count, shard_total;
} dn_rng;

/* Key = seed, offset = 0, no shard: the generator's first state for that seed. */
DN_API void dn_rng_seed(dn_rng *rng, uint64_t seed);
/* This process holds samples [first, first + count) of a batch of total:
   0 <= first, 1 <= count, first + count <= total. */
DN_API dn_status dn_rng_set_shard(dn_rng *rng, int64_t first, int64_t count, int64_t total);
/* Back to no shard (whole batches). */
DN_API void dn_rng_clear_shard(dn_rng *rng);
/* The batch a per-sample op draws for, given its batch dimension's size n:
   without a shard first 0 and total n; with one, first and total of the
   shard, or an error naming op when n != count. */
DN_API dn_status dn_rng_batch(const char *op, const dn_rng *rng, int64_t n, int64_t *first, int64_t *total);
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
