/*
** Random tensors from the counter-based generator (philox.h). Every value
** is a pure function of (seed, offset, element index) -- the mapping is
** spelled out in dropnet/rng.h -- so the parallel loops split blocks among
** threads in any way and still give the same bits.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "philox.h"
#include "dropnet/rng.h"

/* rand, randn and randperm draw from stream 0 of the generator's key. */
#define MAIN_STREAM 0

#define TWO_PI 6.283185307179586476925286766559

void dn_rng_seed(dn_rng *rng, uint64_t seed) {
  *rng = (dn_rng){.seed = seed};
}

/* first/count/total of a shard, or an error naming op (fields set by hand are checked too). */
static dn_status check_shard(const char *op, int64_t first, int64_t count, int64_t total) {
  if (first < 0 || count < 1 || total < 1 || count > total || first > total - count)
    return dn_fail(DN_EINVAL, "%s: a shard needs 0 <= first, 1 <= count and first + count <= total (got first %lld, "
                   "count %lld, total %lld)", op, (long long)first, (long long)count, (long long)total);
  return DN_OK;
}

dn_status dn_rng_set_shard(dn_rng *rng, int64_t first, int64_t count, int64_t total) {
  if (!rng) return dn_fail(DN_EINVAL, "rng_set_shard: generator is NULL");
  dn_status st = check_shard("rng_set_shard", first, count, total);
  if (st) return st;
  rng->shard_first = first;
  rng->shard_count = count;
  rng->shard_total = total;
  return DN_OK;
}

void dn_rng_clear_shard(dn_rng *rng) {
  if (!rng) return;
  rng->shard_first = rng->shard_count = rng->shard_total = 0;
}

dn_status dn_rng_batch(const char *op, const dn_rng *rng, int64_t n, int64_t *first, int64_t *total) {
  *first = 0;
  *total = n;
  if (!rng || rng->shard_count == 0) return DN_OK;
  dn_status st = check_shard(op, rng->shard_first, rng->shard_count, rng->shard_total);
  if (st) return st;
  if (n != rng->shard_count)
    return dn_fail(DN_ESHAPE, "%s: the generator holds samples %lld..%lld of a batch of %lld (%lld samples), but the "
                   "input's batch dimension has size %lld", op, (long long)rng->shard_first + 1,
                   (long long)(rng->shard_first + rng->shard_count), (long long)rng->shard_total,
                   (long long)rng->shard_count, (long long)n);
  *first = rng->shard_first;
  *total = rng->shard_total;
  return DN_OK;
}

void dn_philox4x32(uint64_t key, uint64_t block, uint64_t stream, uint32_t out[4]) {
  dn_philox_block(out, key, block, stream);
}

/* The top 24 bits of x as a float in [0, 1): exact, never 1.0. */
static inline float uniform_from_bits(uint32_t x) { return (float)(x >> 8) * 0x1p-24f; }

/* Four N(0,1) values from one block: Box-Muller on the word pairs (0,1)
   and (2,3). u1 is in (0, 1] so the log is finite; double keeps the
   transform accurate to the float result. */
static inline void normals_from_block(float z[4], const uint32_t x[4]) {
  for (int pair = 0; pair < 2; pair++) {
    double u1 = (double)((x[2 * pair] >> 8) + 1) * 0x1p-24;
    double u2 = (double)(x[2 * pair + 1] >> 8) * 0x1p-24;
    double radius = sqrt(-2.0 * log(u1));
    double angle = TWO_PI * u2;
    z[2 * pair] = (float)(radius * cos(angle));
    z[2 * pair + 1] = (float)(radius * sin(angle));
  }
}

/* Elements [4*b0, min(4*b1, n)) of a rand tensor: element i is word i%4 of
   block offset + i/4. Full lane groups go through the vectorized blocks. */
static void fill_uniform(float *dst, int64_t n, const dn_rng *rng, int64_t b0, int64_t b1) {
  int64_t full_blocks = n / 4;
  int64_t b = b0;
  for (; b + DN_PHILOX_LANES <= b1 && b + DN_PHILOX_LANES <= full_blocks; b += DN_PHILOX_LANES) {
    uint32_t words[4][DN_PHILOX_LANES];
    dn_philox_blocks(words, rng->seed, rng->offset + (uint64_t)b, MAIN_STREAM);
    float *out = dst + 4 * b;
    for (int l = 0; l < DN_PHILOX_LANES; l++)
      for (int w = 0; w < 4; w++) out[4 * l + w] = uniform_from_bits(words[w][l]);
  }
  for (; b < b1; b++) {
    uint32_t x[4];
    dn_philox_block(x, rng->seed, rng->offset + (uint64_t)b, MAIN_STREAM);
    for (int w = 0; w < 4 && 4 * b + w < n; w++) dst[4 * b + w] = uniform_from_bits(x[w]);
  }
}

/* Elements [4*b0, min(4*b1, n)) of a randn tensor (same block mapping). */
static void fill_normal(float *dst, int64_t n, const dn_rng *rng, int64_t b0, int64_t b1) {
  int64_t full_blocks = n / 4;
  int64_t b = b0;
  for (; b + DN_PHILOX_LANES <= b1 && b + DN_PHILOX_LANES <= full_blocks; b += DN_PHILOX_LANES) {
    uint32_t words[4][DN_PHILOX_LANES];
    dn_philox_blocks(words, rng->seed, rng->offset + (uint64_t)b, MAIN_STREAM);
    for (int l = 0; l < DN_PHILOX_LANES; l++) {
      uint32_t x[4] = {words[0][l], words[1][l], words[2][l], words[3][l]};
      normals_from_block(dst + 4 * (b + l), x);
    }
  }
  for (; b < b1; b++) {
    uint32_t x[4];
    float z[4];
    dn_philox_block(x, rng->seed, rng->offset + (uint64_t)b, MAIN_STREAM);
    normals_from_block(z, x);
    for (int w = 0; w < 4 && 4 * b + w < n; w++) dst[4 * b + w] = z[w];
  }
}

typedef void (*fill_fn)(float *dst, int64_t n, const dn_rng *rng, int64_t b0, int64_t b1);

/* Elements [begin, end) of a random tensor: blocks begin/4 up to the one
   holding element end - 1. */
typedef struct random_fill_job {
  fill_fn fill;
  float *dst;
  int64_t n;
  const dn_rng *rng;
} random_fill_job;

static void random_fill_range(const void *ctx, int64_t begin, int64_t end) {
  const random_fill_job *j = ctx;
  j->fill(j->dst, j->n, j->rng, begin / 4, (end + 3) / 4);
}

/* Shared body of rand and randn: validate, allocate, fill in parallel over
   blocks, then consume ceil(n/4) blocks of the stream. */
static dn_status random_tensor(const char *op, fill_fn fill, dn_tensor **out, dn_rng *rng, int ndim,
                               const int64_t *shape) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  if (!rng) return dn_fail(DN_EINVAL, "%s: generator is NULL", op);
  if (ndim > 0 && !shape) return dn_fail(DN_EINVAL, "%s: shape is NULL for %d dims", op, ndim);
  dn_tensor *t;
  dn_status st = dn_tensor_new(&t, DN_F32, ndim, shape);
  if (st) return dn_fail_as(st, op);
  int64_t n = dn_tensor_numel(t);
  int64_t blocks = (n + 3) / 4;
  /* Ranges start at whole groups of DN_PHILOX_LANES blocks, so that every
     task but the last fills vectorized throughout. */
  random_fill_job job = {fill, dn_tensor_data(t), n, rng};
  dn_parallel_range(n, 4 * DN_PHILOX_LANES, random_fill_range, &job);
  rng->offset += (uint64_t)blocks;
  *out = t;
  return DN_OK;
}

dn_status dn_tensor_rand(dn_tensor **out, dn_rng *rng, int ndim, const int64_t *shape) {
  return random_tensor("rand", fill_uniform, out, rng, ndim, shape);
}

dn_status dn_tensor_randn(dn_tensor **out, dn_rng *rng, int ndim, const int64_t *shape) {
  return random_tensor("randn", fill_normal, out, rng, ndim, shape);
}

/*
** Sequential 64-bit draws for randperm: draw k is block offset + k/2,
** words (2*(k%2), 2*(k%2)+1) as (low, high). `used` counts draws so the
** caller can consume exactly the blocks touched.
*/
typedef struct draw64 {
  const dn_rng *rng;
  uint64_t used;
  uint32_t words[4];
} draw64;

static uint64_t next_draw(draw64 *d) {
  uint64_t k = d->used++;
  if (k % 2 == 0) dn_philox_block(d->words, d->rng->seed, d->rng->offset + k / 2, MAIN_STREAM);
  int w = (int)(k % 2) * 2;
  return (uint64_t)d->words[w] | (uint64_t)d->words[w + 1] << 32;
}

/*
** Uniform integer in [0, range), range in [1, 2^32], by Lemire's
** multiply-and-reject ("Fast random integer generation in an interval",
** 2019): the high 64 bits of x * range, rejecting the few low products that
** would bias the result. range <= 2^32 lets the high half of the 128-bit
** product be built from 64-bit pieces without overflow.
*/
static uint64_t uniform_below(draw64 *d, uint64_t range) {
  for (;;) {
    uint64_t x = next_draw(d);
    uint64_t low = x * range;   /* low 64 bits of the product */
    /* reject when low < 2^64 mod range (only possible when low < range) */
    if (low < range && low < (0 - range) % range) continue;
    uint64_t high_part = (x >> 32) * range;
    uint64_t low_part = (x & 0xFFFFFFFFu) * range;
    return (high_part + (low_part >> 32)) >> 32;
  }
}

dn_status dn_randperm(dn_tensor **out, dn_rng *rng, int64_t n, int64_t base) {
  *out = NULL;
  if (!rng) return dn_fail(DN_EINVAL, "randperm: generator is NULL");
  if (n < 0 || n > INT32_MAX)
    return dn_fail(DN_EINVAL, "randperm: n must be in [0, %d] (got %lld)", INT32_MAX, (long long)n);
  if (n > 0 && (base < INT32_MIN || base > (int64_t)INT32_MAX - (n - 1)))
    return dn_fail(DN_EINVAL, "randperm: values [%lld, %lld) do not fit in int32", (long long)base,
                   (long long)base + n);
  dn_tensor *t;
  dn_status st = dn_tensor_new(&t, DN_I32, 1, &n);
  if (st) return dn_fail_as(st, "randperm");
  int32_t *perm = dn_tensor_data(t);
  for (int64_t i = 0; i < n; i++) perm[i] = (int32_t)(base + i);
  /* Fisher-Yates from the back: position i swaps with a uniform j in [0, i]. */
  draw64 d = {rng, 0, {0, 0, 0, 0}};
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)uniform_below(&d, (uint64_t)i + 1);
    int32_t tmp = perm[i];
    perm[i] = perm[j];
    perm[j] = tmp;
  }
  rng->offset += (d.used + 1) / 2;
  *out = t;
  return DN_OK;
}
