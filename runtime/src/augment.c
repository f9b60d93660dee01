/*
** Data augmentation: random crops of padded images and random horizontal
** flips of a batch (dropnet/augment.h states the contract).
**
** Image n's choice is a pure function of (seed, offset + first + n): one
** Philox block of the augmentation stream, computed by whichever task
** copies that image; first is 0, or the generator's batch shard's first
** sample (rng.h), and the offset advances by the whole batch's size. The
** parallel loop is one dn_parallel_rows over whole images, so the bits are
** the same for any thread count. The padding is never
** materialized: an output row is a run of fill values, a memcpy of the
** input row's overlap with the window (reversed for a flip), and fill again.
*/
#include <float.h>
#include <stdio.h>
#include <string.h>

#include "dropnet/augment.h"
#include "internal.h"
#include "philox.h"

/* Largest padded side: crop positions are drawn with 32-bit words. */
#define MAX_SIDE INT32_MAX

/* The geometry of one call: planes per image, input and output plane sizes. */
typedef struct augment_job {
  const float *src;
  float *dst;
  const dn_rng *rng;
  int64_t first;    /* the batch shard's first image (0 without) */
  int64_t planes;   /* channels per image (1 for [N, H, W]) */
  int64_t in_h, in_w, out_h, out_w;
  int64_t pad_h, pad_w;
  uint64_t range_h, range_w;   /* crop positions: [0, range) */
  float fill;
  uint32_t threshold;   /* flip iff (w0 >> 8) < threshold; 2^24 for p = 1 */
  bool crop;            /* crop, or flip */
} augment_job;

/* (w * range) >> 32: a position in [0, range), range <= 2^32. */
static inline int64_t position(uint32_t w, uint64_t range) { return (int64_t)(((uint64_t)w * range) >> 32); }

static void fill_run(float *dst, int64_t n, float v) {
  for (int64_t i = 0; i < n; i++) dst[i] = v;
}

/* One plane of a crop: out_h rows of out_w from the padded plane at (top, left). */
static void crop_plane(const augment_job *j, float *dst, const float *src, int64_t top, int64_t left) {
  /* columns [c0, c1) of the window read input columns [c0 + left - pad_w, ...) */
  int64_t first = j->pad_w - left;   /* window column of input column 0 */
  int64_t c0 = first > 0 ? first : 0;
  int64_t c1 = first + j->in_w < j->out_w ? first + j->in_w : j->out_w;
  if (c1 < c0) c1 = c0;
  for (int64_t i = 0; i < j->out_h; i++) {
    float *row = dst + i * j->out_w;
    int64_t r = top + i - j->pad_h;
    if (r < 0 || r >= j->in_h || c0 == c1) {
      fill_run(row, j->out_w, j->fill);
      continue;
    }
    fill_run(row, c0, j->fill);
    memcpy(row + c0, src + r * j->in_w + (c0 - first), (size_t)(c1 - c0) * sizeof(float));
    fill_run(row + c1, j->out_w - c1, j->fill);
  }
}

/* One plane mirrored left to right. */
static void flip_plane(const augment_job *j, float *dst, const float *src) {
  int64_t w = j->in_w;
  for (int64_t i = 0; i < j->in_h; i++) {
    const float *in = src + i * w;
    float *row = dst + i * w;
    for (int64_t c = 0; c < w; c++) row[c] = in[w - 1 - c];
  }
}

static void augment_images(const void *ctx, int64_t n0, int64_t n1) {
  const augment_job *j = ctx;
  int64_t in_plane = j->in_h * j->in_w, out_plane = j->out_h * j->out_w;
  for (int64_t n = n0; n < n1; n++) {
    uint32_t w[4];
    dn_philox_block(w, j->rng->seed, j->rng->offset + (uint64_t)(j->first + n), DN_AUGMENT_STREAM);
    const float *src = j->src + n * j->planes * in_plane;
    float *dst = j->dst + n * j->planes * out_plane;
    if (j->crop) {
      int64_t top = position(w[0], j->range_h), left = position(w[1], j->range_w);
      for (int64_t c = 0; c < j->planes; c++) crop_plane(j, dst + c * out_plane, src + c * in_plane, top, left);
    } else if ((w[0] >> 8) < j->threshold) {
      for (int64_t c = 0; c < j->planes; c++) flip_plane(j, dst + c * out_plane, src + c * in_plane);
    } else if (j->planes * in_plane > 0) {
      memcpy(dst, src, (size_t)(j->planes * in_plane) * sizeof(float));
    }
  }
}

/* x's dtype and layout; fills planes, in_h, in_w. */
static dn_status check_images(const char *op, const dn_tensor *x, dn_rng *rng, augment_job *j) {
  char xs[128];
  if (!x) return dn_fail(DN_EINVAL, "%s: x is NULL", op);
  if (!rng) return dn_fail(DN_EINVAL, "%s: generator is NULL", op);
  dn_status st = dn_check_float(op, "x", x);
  if (st) return st;
  if (x->ndim < 3)
    return dn_fail(DN_ESHAPE, "%s: x must be a batch of images [N, C, H, W] or [N, H, W] (got shape %s)", op,
                   dn_shape_str(x, xs, sizeof xs));
  j->in_h = x->shape[x->ndim - 2];
  j->in_w = x->shape[x->ndim - 1];
  j->planes = 1;
  for (int d = 1; d < x->ndim - 2; d++) j->planes *= x->shape[d];   /* within 2^40: x's extent is */
  return DN_OK;
}

/* Runs the job over x's images into a new [N, ..., out_h, out_w] tensor;
   advances rng by N (by the batch's size under a shard). */
static dn_status run(const char *op, dn_tensor **out, const dn_tensor *x, dn_rng *rng, augment_job *j) {
  int64_t total;
  dn_status st = dn_rng_batch(op, rng, x->shape[0], &j->first, &total);
  if (st) return st;
  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 2] = j->out_h;
  shape[x->ndim - 1] = j->out_w;
  dn_tensor *result, *dense = NULL;
  st = dn_tensor_new(&result, DN_F32, x->ndim, shape);
  if (st) return dn_fail_as(st, op);
  int64_t images = x->shape[0];
  if (dn_tensor_numel(result) > 0) {
    st = dn_plain_contiguous(&dense, x);
    if (st) {
      dn_tensor_release(result);
      return st;
    }
    static const float nothing = 0.0f;   /* an empty image (H or W 0) is never read */
    j->src = dn_tensor_numel(dense) > 0 ? dn_tensor_data(dense) : &nothing;
    j->dst = dn_tensor_data(result);
    j->rng = rng;
    dn_parallel_rows(images, j->planes * (j->out_h * j->out_w + j->in_h * j->in_w), augment_images, j);
    dn_tensor_release(dense);
  }
  rng->offset += (uint64_t)total;
  *out = result;
  return DN_OK;
}

dn_status dn_random_crop(dn_tensor **out, const dn_tensor *x, int64_t out_h, int64_t out_w, int64_t pad_h,
                         int64_t pad_w, double fill, dn_rng *rng) {
  DN_FPMODE_SCOPE();
  const char *op = "random_crop";
  *out = NULL;
  augment_job j = {.crop = true};
  dn_status st = check_images(op, x, rng, &j);
  if (st) return st;
  char xs[128];
  if (pad_h < 0 || pad_w < 0 || pad_h > MAX_SIDE || pad_w > MAX_SIDE)
    return dn_fail(DN_EINVAL, "%s: padding %lldx%lld must be in [0, %d]", op, (long long)pad_h, (long long)pad_w,
                   MAX_SIDE);
  /* in <= 2^40 and pad <= 2^31: no overflow */
  int64_t padded_h = j.in_h + 2 * pad_h, padded_w = j.in_w + 2 * pad_w;
  if (padded_h > MAX_SIDE || padded_w > MAX_SIDE)
    return dn_fail(DN_ESHAPE, "%s: the padded image %lldx%lld (x %s, padding %lldx%lld) has a side longer than %d",
                   op, (long long)padded_h, (long long)padded_w, dn_shape_str(x, xs, sizeof xs), (long long)pad_h,
                   (long long)pad_w, MAX_SIDE);
  if (out_h < 1 || out_w < 1 || out_h > padded_h || out_w > padded_w)
    return dn_fail(DN_ESHAPE, "%s: crop size %lldx%lld must be at least 1x1 and at most the padded image %lldx%lld "
                   "(x %s, padding %lldx%lld)", op, (long long)out_h, (long long)out_w, (long long)padded_h,
                   (long long)padded_w, dn_shape_str(x, xs, sizeof xs), (long long)pad_h, (long long)pad_w);
  if (!(fill >= -FLT_MAX && fill <= FLT_MAX))
    return dn_fail(DN_EINVAL, "%s: fill must be a finite float32 value (got %g)", op, fill);
  j.out_h = out_h;
  j.out_w = out_w;
  j.pad_h = pad_h;
  j.pad_w = pad_w;
  j.range_h = (uint64_t)(padded_h - out_h + 1);
  j.range_w = (uint64_t)(padded_w - out_w + 1);
  j.fill = (float)fill;
  return run(op, out, x, rng, &j);
}

dn_status dn_random_hflip(dn_tensor **out, const dn_tensor *x, double p, dn_rng *rng) {
  DN_FPMODE_SCOPE();
  const char *op = "random_hflip";
  *out = NULL;
  augment_job j = {.crop = false};
  dn_status st = check_images(op, x, rng, &j);
  if (st) return st;
  if (!(p >= 0.0 && p <= 1.0)) return dn_fail(DN_EINVAL, "%s: p must be in [0, 1] (got %g)", op, p);
  j.out_h = j.in_h;
  j.out_w = j.in_w;
  /* (w0 >> 8) * 2^-24 < p  <=>  (w0 >> 8) < ceil(p * 2^24), exactly (p * 2^24 is exact in double) */
  j.threshold = (uint32_t)ceil(p * 16777216.0);
  return run(op, out, x, rng, &j);
}
