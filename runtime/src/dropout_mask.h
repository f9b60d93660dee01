/*
** The dropout family's random kernels (dropout_mask.c, where the
** reproducibility contract is written): keep/drop decisions regenerated from
** (seed, offset), the masked passes, gaussian noise, and p's threshold and
** scale. For dropout.c, linear.c, dropblock.c and the ops that fuse a
** channel dropout; not installed. Nothing here records a node; only
** dn_dropout_channel_keep allocates.
*/
#ifndef DROPNET_DROPOUT_MASK_H
#define DROPNET_DROPOUT_MASK_H

#include <stdbool.h>
#include <stdint.h>

#include "dropnet/dropout.h"
#include "dropnet/rng.h"

/* Keep/drop decisions per Philox block (16 bits each), and the threshold
   of p = 1 (nothing kept). */
#define DN_DROPOUT_DECISIONS_PER_BLOCK 8
#define DN_DROPOUT_FULL_THRESHOLD 65536u

/* How decisions map to elements: ROWS, decision i % period for element i
   (period = numel for dropout, the step's size for locked dropout);
   CHANNELS, decision i / period (period = elements per channel). */
typedef enum dn_mask_layout { DN_MASK_ROWS, DN_MASK_CHANNELS } dn_mask_layout;

/* p's 16-bit threshold: round(p * 65536), half away from zero. */
uint32_t dn_dropout_threshold(double p);
/* The kept values' scale: 1/(1-p) of the rounded p for INVERTED (0 when
   nothing is kept), 1 for TEST_TIME. */
float dn_dropout_scale(uint32_t threshold, dn_dropout_scaling scaling);
/* The generator's advance (Philox blocks) for n decisions, and for n
   gaussian noise values. */
uint64_t dn_dropout_blocks(int64_t decisions);
uint64_t dn_gaussian_blocks(int64_t n);

/* A per-sample op's decision numbering under rng's batch shard (rng.h):
   batch = the input's batch size, per = decisions per sample; *base =
   first * per (0 without a shard) and *decisions = total * per, the
   full batch's count (the offset's advance). Errors name op. */
/* An input without a batch dimension (shape_text): an error naming op
   when rng holds a batch shard, else DN_OK. */
dn_status dn_dropout_no_batch(const char *op, const dn_rng *rng, const char *shape_text);
dn_status dn_dropout_shard(const char *op, const dn_rng *rng, int64_t batch, int64_t per, int64_t *base,
                           int64_t *decisions);

/* An op's fused channel dropout: one decision per row (n, c) of its [batch, channels, ...] output, numbered
   as dn_dropout_channels numbers them (under rng's batch shard, within the full batch). Checks the numbering
   whatever p (rng may be NULL when p is 0); p in (0, 1] (checked by the caller): out->keep [batch *
   channels] (1: kept) allocated here for the caller to dn_free, out->scale the kept values' scale and
   out->advance the generator's offset's advance, for the op to make once it succeeded; p 0: keep NULL,
   scale 1, advance 0. Errors name op. */
typedef struct dn_channel_keep {
  uint8_t *keep;
  float scale;
  uint64_t advance;
} dn_channel_keep;
dn_status dn_dropout_channel_keep(const char *op, const dn_rng *rng, int64_t batch, int64_t channels, double p,
                                  dn_dropout_scaling scaling, dn_channel_keep *out);
/* Checks naming op: p in [0, 1]; a known scaling; both and a generator. */
dn_status dn_dropout_check_p(const char *op, double p);
dn_status dn_dropout_check_scaling(const char *op, dn_dropout_scaling scaling);
dn_status dn_dropout_check_params(const char *op, double p, const dn_rng *rng, dn_dropout_scaling scaling);

/*
** dst[i] = keep ? src[i] * scale (+ shift when affine) : 0 (fill when
** affine) over numel contiguous elements, in parallel; dst may be src.
** The layout's decision d is the generator's decision base + d (a batch
** shard's offset into the full batch; 0 without). Thresholds 0 and 65536
** keep or drop everything without drawing bits.
*/
void dn_dropout_mask_run(float *dst, const float *src, int64_t numel, dn_mask_layout layout, int64_t period,
                         int64_t base, uint64_t seed, uint64_t offset, uint32_t threshold, bool affine, float scale,
                         float shift, float fill);

/* dn_dropout_mask_run's ROWS mask over elements [i0, i1) of data, in place,
   on the calling thread (for a pass that fuses it with other work): element
   i takes decision base + i. Spans whose base + i0 is a multiple of
   DN_DROPOUT_SPAN_ALIGN draw each random block once. */
#define DN_DROPOUT_SPAN_ALIGN 128
void dn_dropout_mask_span(float *data, int64_t i0, int64_t i1, int64_t base, uint64_t seed, uint64_t offset,
                          uint32_t threshold, float scale);

/* dst[i] = 1 where decision base + i keeps, else 0, for n bytes (dn_dropout_mask). */
void dn_dropout_keep_run(uint8_t *dst, int64_t n, int64_t base, uint64_t seed, uint64_t offset, uint32_t threshold);

/* The same for decisions [k0, k0 + n) into dst[0 .. n), on the calling
   thread, k0 anywhere (dropblock reads its centre grid a row at a time).
   Spans starting at multiples of DN_DROPOUT_SPAN_ALIGN draw each random
   block once. */
void dn_dropout_keep_span(uint8_t *dst, int64_t k0, int64_t n, uint64_t seed, uint64_t offset, uint32_t threshold);

/* dst[i] = src[i] * (float)(1 + sigma * z_(base+i)) over n contiguous
   elements, z_j standard normal as the contract says (gaussian dropout). */
void dn_gaussian_noise_run(float *dst, const float *src, int64_t n, int64_t base, uint64_t seed, uint64_t offset,
                           double sigma);

#endif
