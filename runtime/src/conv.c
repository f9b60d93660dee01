/*
** Convolution (NCHW, float32): y = conv(x, w) + b, PyTorch's cross-correlation
** with stride, zero padding, dilation and groups.
**
** A batch element (an image) is one task's from start to end. Its output
** rows are cut into slabs whose im2col fits SLAB_FLOATS (a 32 -> 64 channel
** 3x3 layer on 14x14 maps is one slab per image); for each slab and group
** one sgemm on the task's own thread computes w_g @ col_g, col [in * KH *
** KW, slab positions] being the receptive fields (zeros where the padding
** is), and writes the slab's outputs straight into y [O, OH * OW]. The
** forward's col is never stored: its rows go straight into the sgemm's
** packed panels (col_source). The bias is added while the image's outputs
** are still in cache. Backward, per slab:
**   dx += col2im(w_g^T @ g_g)            one sgemm per group
**   dw_part += g_g @ col_g^T             im2col again (col is not kept)
**   db_part[o] += sum of g over the slab   in double
** except that a stride-1 convolution with at least 16 input channels per
** group takes dw from KH * KW products of a channels-last copy of the
** image, whole images at a time, without im2col (conv_dw_shifts.c).
** The batch is cut into parts (a function of its size alone, never of the
** thread count); a part's dw and db sum its images in order, and the parts
** are added in order at the end. So every value is computed by one fixed
** sequence of operations: the bits do not depend on the thread count.
**
** Why an image per thread: col and the sgemm's packed panels stay in the
** core's L2, the sgemm writes y in its own layout, and nothing waits for a
** parallel region per step. The earlier scheme (one sgemm on all threads
** over a chunk of images, then copies between [O, images * positions] and
** NCHW) ran the 32 -> 64 layer at 150 GFLOP/s forward and 142 backward on
** 2 threads of the Sapphire Rapids; an image's [64, 288] @ [288, 196] alone
** runs at ~146 GFLOP/s on one core.
**
** On our AVX-512 kernel, a stride-1 convolution with one group and enough
** channels takes y and dx (each decided apart) from products over a
** zero-padded frame of the image, or of its gradient (conv_shifted.c): no
** im2col, packing of col or col2im at all, for 16/14 of the multiply-adds on
** 14x14 maps. The small CNN's training step: 2.7% faster (its 32 -> 64
** layer's dx ~10%, forward ~2%; 10 alternated pairs, 0.943-0.996). dw
** keeps its own paths (by shifts: conv_dw_shifts.c). A 3x3 one with no
** dilation takes y and dx by Winograd's F(2x2, 3x3) instead, on the AVX2
** kernel with 32 channels on the side read, on AVX-512 with 32 on both
** sides (conv_winograd.c): a task's images one after another through
** its cursor, each finished (bias, ReLU, sums) once its outputs are all
** written; dx is written as the task's images complete, at the latest by
** its flush after the last. Such a layer with 32 channels or more on both
** sides and enough tiles per image takes dw from the same transforms too
** (dn_conv_winograd_dw): each part of the batch adds its images' 16
** transformed products into its own copy of dU, and the parts are added in
** order before dw = G^T dU G.
**
** Same-width convolutions (stride 1, 3x3 with padding 1) read the image
** through a map of where each kernel position falls inside it (inside_map):
** the forward's panels and backward's col are masked copies of x's planes.
** With dn_conv2d_relu the ReLU rides on the bias pass, and its backward on
** each image's gradient before the products (the bits of the two ops).
** dn_conv2d_stats also takes each output row's sums for the batch norm that
** follows (row_stats.h) on that pass, so the batch norm does not read the
** whole output once more for its statistics.
**
** col is never saved between forward and backward: recomputing it costs one
** copy of x's receptive fields, keeping it would hold KH * KW copies of x
** per layer until backward. Scratch (col, dcol, the forward's rows, the sgemm's panels) comes
** from dn_alloc, one part per task, before the parallel region.
**
** Depthwise convolutions (one input channel per group: groups = in) skip
** im2col: a group's sgemm would be [out/G, KH*KW] @ [KH*KW, OH*OW], too thin
** to run near the GEMM's speed (measured, N 8, C 1024, 28x28, 3x3: 3.7
** GFLOP/s against 78 for a dense conv of the same FLOPs, 20x slower). Their
** direct loops are in conv_depthwise.c; db is summed here as for the others.
**
** dn_conv1d is the same kernel over a height of 1: x [N, C, L] is read as
** [N, C, 1, L] through its strides, w [O, C/G, K] as [O, C/G, 1, K].
*/
#include <stdio.h>
#include <string.h>

#include "blas.h"
#include "conv_geom.h"
#include "deferred.h"
#include "dropnet/conv.h"
#include "graph.h"
#include "internal.h"
#include "lanes.h"
#include "pool.h"
#include "row_stats.h"
#include "shape.h"

enum { SAVED_X = 0, SAVED_W = 1, SAVED_Y = 2 };   /* y: conv + ReLU's output */
/* node->ints: stride, padding and dilation as {rows, columns}, then groups */
enum { NODE_STRIDE = 0, NODE_PADDING = 2, NODE_DILATION = 4, NODE_GROUPS = 6, NODE_RELU = 7 };

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* --- one slab of an image: im2col and col2im --------------------------------------- */

/*
** Stride 1 with the output as wide as the input (padding "same", as 3x3 with
** padding 1): a row of col over consecutive output rows is x's plane read at
** a constant offset, so im2col is one long copy per row of col (then zeros
** where the padding columns are) and col2im one long add, instead of a
** short copy per output row (14-28 floats: most of the time went to the
** loops' ends). Measured on the small CNN's 32 -> 64 layer (batch 128, 2
** threads, scripts/bench/conv.lua): forward 5.05 -> 3.96 ms, forward +
** backward 14.3 -> 11.5 ms.
*/
static bool same_width(const conv_geom *g) {
  return g->stride[0] == 1 && g->stride[1] == 1 && g->out_w == g->in_w;
}

/* The flat offset from output (oh, ow) to input (ih, iw) for kernel (ki, kj). */
static int64_t shift_of(const conv_geom *g, int64_t ki, int64_t kj) {
  return (ki * g->dil[0] - g->pad[0]) * g->in_w + kj * g->dil[1] - g->pad[1];
}

/* For kernel (ki, kj) and output rows [oh0, oh1): the columns [lo, hi) and
   rows [a, b) (a >= b: none) that read inside the input. */
static void shifted_rows(const conv_geom *g, int64_t ki, int64_t kj, int64_t oh0, int64_t oh1, int64_t *lo,
                         int64_t *hi, int64_t *a, int64_t *b) {
  valid_columns(g, kj, lo, hi);
  int64_t first = g->pad[0] - ki * g->dil[0];   /* oh + ki * dh - ph = 0 */
  *a = first > oh0 ? first : oh0;
  *b = first + g->in_h < oh1 ? first + g->in_h : oh1;
  if (*lo == *hi) *b = *a;
}

/* Zeros in columns [0, lo) and [hi, out_w) of `rows` rows of width out_w:
   a store or two per row, which GCC would otherwise turn into two calls to
   memset per row (measured: 6% of a forward of the 32 -> 64 layer). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
static void zero_padding_columns(const conv_geom *g, float *d, int64_t rows, int64_t lo, int64_t hi) {
  for (int64_t oh = 0; oh < rows; oh++, d += g->out_w) {
    for (int64_t ow = 0; ow < lo; ow++) d[ow] = 0.0f;
    for (int64_t ow = hi; ow < g->out_w; ow++) d[ow] = 0.0f;
  }
}

/* Row r = (c, ki, kj) of col for output rows [oh0, oh1) of image x, into
   dst [(oh1 - oh0) * OW]: x[c, oh*sh + ki*dh - ph, ow*sw + kj*dw - pw] over
   (oh, ow). zeroed: dst holds a row of the same (ki, kj) and slab of
   another image or channel, whose rows of padding (shifted planes) are
   zeros already: they depend on nothing else. */
static void im2col_row(const conv_geom *g, image x, int64_t r, int64_t oh0, int64_t oh1, float *dst, bool zeroed) {
  int64_t kk = g->k_h * g->k_w, c = r / kk, ki = r % kk / g->k_w, kj = r % g->k_w, lo, hi;
  if (same_width(g) && x.sw == 1 && x.sh == g->in_w) {
    int64_t a, b;
    shifted_rows(g, ki, kj, oh0, oh1, &lo, &hi, &a, &b);
    if (a >= b) {
      if (!zeroed) memset(dst, 0, (size_t)((oh1 - oh0) * g->out_w) * sizeof *dst);
      return;
    }
    if (!zeroed) {
      memset(dst, 0, (size_t)((a - oh0) * g->out_w) * sizeof *dst);
      memset(dst + (b - oh0) * g->out_w, 0, (size_t)((oh1 - b) * g->out_w) * sizeof *dst);
    }
    float *d = dst + (a - oh0) * g->out_w;
    /* from the first element read: input (a + ki * dh - ph, lo + kj * dw - pw), inside x */
    const float *src = x.data + c * x.sc + a * g->in_w + shift_of(g, ki, kj) + lo;
    memcpy(d + lo, src, (size_t)((b - a) * g->out_w - lo - (g->out_w - hi)) * sizeof *d);
    zero_padding_columns(g, d, b - a, lo, hi);
    return;
  }
  valid_columns(g, kj, &lo, &hi);
  int64_t iw0 = kj * g->dil[1] - g->pad[1], step = g->stride[1] * x.sw;
  for (int64_t oh = oh0; oh < oh1; oh++, dst += g->out_w) {
    int64_t ih = oh * g->stride[0] + ki * g->dil[0] - g->pad[0];
    if (ih < 0 || ih >= g->in_h || lo == hi) {
      memset(dst, 0, (size_t)g->out_w * sizeof *dst);
      continue;
    }
    const float *sp = x.data + c * x.sc + ih * x.sh + (lo * g->stride[1] + iw0) * x.sw;
    for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
    if (step == 1) {
      memcpy(dst + lo, sp, (size_t)(hi - lo) * sizeof *dst);
    } else {
      for (int64_t ow = lo; ow < hi; ow++, sp += step) dst[ow] = *sp;
    }
    for (int64_t ow = hi; ow < g->out_w; ow++) dst[ow] = 0.0f;
  }
}

/* col [rows, ld]: every row of the slab (zeroed as for im2col_row). */
static void im2col_slab(const conv_geom *g, image x, int64_t oh0, int64_t oh1, float *col, int64_t ld, bool zeroed) {
  for (int64_t r = 0; r < g->in_ch * g->k_h * g->k_w; r++) im2col_row(g, x, r, oh0, oh1, col + r * ld, zeroed);
}

/*
** The forward's op(B), a group's rows of col for one slab, packed straight
** from the image (dn_blas_sgemm_here_b): each row is built in a small
** buffer, one per (ki, kj) so that its rows of padding stay zero from one
** channel and image to the next, then copied into the sgemm's panels. col
** itself is never written, and the sgemm does not read it back to pack it
** (32 -> 64 layer forward, batch 128, 2 threads, other jobs running,
** alternated: 7.8-8.0 -> 6.9-7.5 ms).
*/
typedef struct col_source {
  const conv_geom *g;
  image x;
  int64_t oh0, oh1, group;
  float *rows;            /* KH * KW rows of the slab's positions */
  bool zeroed;            /* rows' padding zero for this slab already */
  const uint8_t *inside;  /* inside_map's, or NULL */
} col_source;

/*
** Same-width convolutions over contiguous planes: col's row (c, ki, kj) at
** output position q is x's plane c at q + shift_of(ki, kj) where the kernel
** reads inside the input, else 0. inside [KH * KW][positions] says where (1,
** a function of the shape alone), so the panels are filled straight from
** the image, one selected copy per value: the row-by-row im2col into a
** buffer, its zeroing of padding columns and the copy into the panels took
** a third of the 32 -> 64 layer's forward.
*/
static bool direct_source(const conv_geom *g, image x) { return same_width(g) && x.sw == 1 && x.sh == g->in_w; }

static uint8_t *inside_map(const conv_geom *g) {
  int64_t kk = g->k_h * g->k_w;
  uint8_t *m = dn_alloc((size_t)(kk * g->positions));
  for (int64_t q = 0; m && q < kk; q++) {
    int64_t ki = q / g->k_w, kj = q % g->k_w, lo, hi;
    valid_columns(g, kj, &lo, &hi);
    for (int64_t oh = 0; oh < g->out_h; oh++) {
      int64_t ih = oh + ki * g->dil[0] - g->pad[0];   /* stride 1 */
      for (int64_t ow = 0; ow < g->out_w; ow++)
        m[q * g->positions + oh * g->out_w + ow] = ih >= 0 && ih < g->in_h && ow >= lo && ow < hi;
    }
  }
  return m;
}

/* d[i] = x[at + i] where inside[i], else 0, for i < w; zeros to width. x is
   read only where inside (at + i may lie before or past the tensor). Inlined
   at the kernels' widths: masked vector loads. */
static DN_ALWAYS_INLINE void select_copy(float *restrict d, const float *restrict x, int64_t at,
                                         const uint8_t *restrict inside, int64_t w, int64_t width) {
#pragma omp simd
  for (int64_t i = 0; i < w; i++) d[i] = inside[i] ? x[at + i] : 0.0f;
  for (int64_t i = w; i < width; i++) d[i] = 0.0f;
}

static void col_source_direct(const col_source *s, int64_t pc, int64_t kc, int64_t jc, int64_t nc, int64_t width,
                              float *dst) {
  const conv_geom *g = s->g;
  int64_t kk = g->k_h * g->k_w, first = s->oh0 * g->out_w + jc;   /* the image's position of panel column 0 */
  for (int64_t p = 0; p < kc; p++) {
    int64_t r = s->group * g->group_rows + pc + p, c = r / kk, q = r % kk;
    int64_t at = c * s->x.sc + shift_of(g, q / g->k_w, q % g->k_w) + first;
    const uint8_t *inside = s->inside + q * g->positions + first;
    for (int64_t j0 = 0; j0 < nc; j0 += width) {
      float *d = dst + j0 * kc + p * width;
      int64_t w = nc - j0 < width ? nc - j0 : width;
      if (w == 32 && width == 32) select_copy(d, s->x.data, at + j0, inside + j0, 32, 32);
      else if (w == 24 && width == 24) select_copy(d, s->x.data, at + j0, inside + j0, 24, 24);
      else select_copy(d, s->x.data, at + j0, inside + j0, w, width);
    }
  }
}

/* im2col_slab for a direct_source, through the map: each row one selected copy. */
static void im2col_direct(const conv_geom *g, image x, const uint8_t *inside, int64_t oh0, int64_t oh1, float *col,
                          int64_t ld) {
  int64_t kk = g->k_h * g->k_w, first = oh0 * g->out_w, cols = (oh1 - oh0) * g->out_w;
  for (int64_t r = 0; r < g->in_ch * kk; r++) {
    int64_t c = r / kk, q = r % kk, at = c * x.sc + shift_of(g, q / g->k_w, q % g->k_w) + first;
    select_copy(col + r * ld, x.data, at, inside + q * g->positions + first, cols, cols);
  }
}

static void col_source_pack(void *ctx, int64_t pc, int64_t kc, int64_t jc, int64_t nc, int64_t width, float *dst) {
  const col_source *s = ctx;
  const conv_geom *g = s->g;
  if (s->inside && direct_source(g, s->x)) {
    col_source_direct(s, pc, kc, jc, nc, width, dst);
    return;
  }
  int64_t kk = g->k_h * g->k_w, cols = (s->oh1 - s->oh0) * g->out_w;
  for (int64_t p = 0; p < kc; p++) {
    int64_t r = s->group * g->group_rows + pc + p;
    float *row = s->rows + r % kk * cols;
    im2col_row(g, s->x, r, s->oh0, s->oh1, row, s->zeroed);
    for (int64_t j0 = 0; j0 < nc; j0 += width) {
      float *d = dst + j0 * kc + p * width;   /* panel j0 / width */
      const float *src = row + jc + j0;
      int64_t w = nc - j0 < width ? nc - j0 : width;
      /* whole panels of the kernels' widths as copies of constant size (inlined) */
      if (w == 32 && width == 32) {
        memcpy(d, src, 32 * sizeof *d);
      } else if (w == 24 && width == 24) {
        memcpy(d, src, 24 * sizeof *d);
      } else {
        for (int64_t i = 0; i < w; i++) d[i] = src[i];
        for (int64_t i = w; i < width; i++) d[i] = 0.0f;
      }
    }
  }
}

/* dx (one image, contiguous [C, H, W]) += the entries of col [rows, ld] that
   im2col_slab read from it for output rows [oh0, oh1), in the fixed order
   (c, ki, kj, oh, ow). */
static void col2im_slab(const conv_geom *g, float *col, int64_t ld, int64_t oh0, int64_t oh1, float *dx) {
  int64_t plane = g->in_h * g->in_w, sw = g->stride[1];
  if (same_width(g)) {
    /* col's entries that im2col would have zeroed are made zero, so that one
       long add per row of col leaves the other rows' columns as they were */
    for (int64_t c = 0; c < g->in_ch; c++)
      for (int64_t ki = 0; ki < g->k_h; ki++)
        for (int64_t kj = 0; kj < g->k_w; kj++) {
          int64_t lo, hi, a, b;
          shifted_rows(g, ki, kj, oh0, oh1, &lo, &hi, &a, &b);
          if (a >= b) continue;
          float *src = col + ((c * g->k_h + ki) * g->k_w + kj) * ld + (a - oh0) * g->out_w;
          float *d = dx + c * plane + a * g->in_w + shift_of(g, ki, kj) + lo;   /* the first element written */
          zero_padding_columns(g, src, b - a, lo, hi);
          int64_t len = (b - a) * g->out_w - lo - (g->out_w - hi);
          src += lo;
#pragma omp simd
          for (int64_t k = 0; k < len; k++) d[k] += src[k];
        }
    return;
  }
  for (int64_t c = 0; c < g->in_ch; c++)
    for (int64_t ki = 0; ki < g->k_h; ki++)
      for (int64_t kj = 0; kj < g->k_w; kj++) {
        const float *src = col + ((c * g->k_h + ki) * g->k_w + kj) * ld;
        int64_t lo, hi;
        valid_columns(g, kj, &lo, &hi);
        int64_t iw0 = kj * g->dil[1] - g->pad[1];
        for (int64_t oh = oh0; oh < oh1; oh++, src += g->out_w) {
          int64_t ih = oh * g->stride[0] + ki * g->dil[0] - g->pad[0];
          if (ih < 0 || ih >= g->in_h || lo == hi) continue;
          float *row = dx + c * plane + ih * g->in_w + lo * sw + iw0;
          if (sw == 1) {
#pragma omp simd
            for (int64_t k = 0; k < hi - lo; k++) row[k] += src[lo + k];
          } else {
            for (int64_t k = 0; k < hi - lo; k++) row[k * sw] += src[lo + k];
          }
        }
      }
}

/* --- the tasks ----------------------------------------------------------------------- */

/* Output rows per slab: its col within SLAB_FLOATS (512 KiB, with the
   sgemm's panels of it within a core's L2), at least one row. A function of
   the shapes alone. */
#define SLAB_FLOATS ((int64_t)128 << 10)
static int64_t slab_rows(const conv_geom *g) {
  int64_t per_row = g->in_ch * g->k_h * g->k_w * g->out_w;
  int64_t r = per_row > 0 ? SLAB_FLOATS / per_row : g->out_h;
  return r < 1 ? 1 : min64(r, g->out_h);
}

/* Backward's parts of the batch: at most PARTS (so up to PARTS threads
   share a backward), and their copies of dw within PARTS_DW_FLOATS. A
   function of the shapes alone, never of the thread count. */
#define PARTS 8
#define PARTS_DW_FLOATS ((int64_t)4 << 20)
static int64_t parts_of(const conv_geom *g) {
  int64_t parts = min64(g->batch, PARTS), wn = g->out_ch * g->group_rows;
  if (wn > 0 && parts * wn > PARTS_DW_FLOATS) parts = max64(1, PARTS_DW_FLOATS / wn);
  return parts;
}

/* One pass over the batch, forward or backward. */
typedef struct conv_job {
  const conv_geom *g;
  int64_t slab;                   /* output rows per slab */
  const dn_tensor *x;             /* forward, and backward's dw: any strides */
  const float *w, *bias, *grad;   /* contiguous; grad [N, O, positions] */
  const float *w_packed;          /* each group's w (forward) or w^T (dx) packed once, or NULL */
  const uint8_t *inside;          /* inside_map (forward, and backward's im2col for dw), or NULL */
  const dn_conv_shifted *shifted; /* the forward's y or backward's dx by shifted products, or NULL */
  const dn_conv_winograd *winograd; /* the forward's y or backward's dx by Winograd's products, or NULL */
  const int32_t *dw_rows;         /* dw by shifts over the valid positions (dn_conv_dw_shifts_offsets), or NULL */
  const dn_conv_winograd *dw_wino; /* dw by Winograd's transforms: parts of transformed gradients, or NULL */
  bool relu;                      /* forward: ReLU on the outputs (after the bias) */
  double *row_sums;               /* forward: each output row's sums for a batch norm (row_stats.h), or NULL */
  const float *relu_y;            /* backward: conv + ReLU's output [N, O, positions]; grad is read through
                                     ReLU's backward at it, image by image into the task's gbuf; or NULL */
  const dn_deferred *deferred;    /* backward: grad's values, written image by image into gbuf (deferred.h),
                                     or NULL */
  int64_t w_packed_size;          /* floats per group */
  float *y, *dx;                  /* contiguous, or NULL */
  float *dw;                      /* [parts][O * group_rows] (dw itself with one part), or NULL */
  bool dw_t;                      /* dw's parts hold each group's block transposed, [group_rows, O/G] */
  bool dw_shifts;                 /* dw by conv_dw_shifts.c: parts in its [G][KH][O/G][KW][C/G] order */
  double *db;                     /* [parts][O][LANES], zeroed, or NULL */
  int64_t parts;
  float *scratch;                 /* task t's: col, the sgemm's panels, dcol, the forward's rows, ... */
  int64_t col_floats, pack_floats, dcol_floats, rows_floats, g_floats, xt_floats, gp_floats, fill_floats, frame_floats,
          wino_floats, dw_wino_floats;
  int64_t task_floats;
} conv_job;

/* Task t's parts of the scratch. */
typedef struct task_buffers {
  float *col, *pack, *dcol, *rows, *g, *xt, *gp, *fill, *frame, *wino, *dw_wino;   /* xt, gp: dw by shifts; fill:
                      the deferred grad's; frame: the shifted products'; wino: Winograd's; dw_wino: its dw's */
} task_buffers;

static task_buffers buffers_of(const conv_job *j, int t) {
  task_buffers b;
  b.col = j->scratch + t * j->task_floats;
  b.pack = b.col + j->col_floats;
  b.dcol = b.pack + j->pack_floats;
  b.rows = b.dcol + j->dcol_floats;
  b.g = b.rows + j->rows_floats;
  b.xt = b.g + j->g_floats;
  b.gp = b.xt + j->xt_floats;
  b.fill = b.gp + j->gp_floats;
  b.frame = b.fill + j->fill_floats;
  b.wino = b.frame + j->frame_floats;
  b.dw_wino = b.wino + j->wino_floats;
  return b;
}

/* Group k's packed w (or w^T), or NULL. */
static const float *packed_w(const conv_job *j, int64_t k) {
  return j->w_packed ? j->w_packed + k * j->w_packed_size : NULL;
}

/*
** Each group's w (forward: [O/G, group_rows]) or w^T (dx) packed once for
** all images' products (they packed it again for each image: 3-5% of the
** 32 -> 64 layer's time). *out stays NULL where the products take no
** packed operand (OpenBLAS).
*/
static dn_status pack_weight(conv_job *j, const char *op, bool transposed, float **out) {
  const conv_geom *g = j->g;
  int64_t og = g->out_ch / g->groups, kg = g->group_rows, m = transposed ? kg : og, k = transposed ? og : kg;
  size_t size = dn_blas_here_a_floats(m, k);
  *out = NULL;
  if (size == 0) return DN_OK;
  if (!(*out = dn_alloc(size * (size_t)g->groups * sizeof **out)))
    return dn_fail(DN_ENOMEM, "%s: out of memory for its packed weight", op);
  for (int64_t grp = 0; grp < g->groups; grp++)
    dn_blas_here_pack_a(transposed, m, k, j->w + grp * og * kg, kg, *out + grp * (int64_t)size);
  j->w_packed = *out;
  j->w_packed_size = (int64_t)size;
  return DN_OK;
}

/* The products' og and kg, zero when a group has no outputs or no inputs. */
static bool has_products(const conv_geom *g) { return g->out_ch > 0 && g->group_rows > 0; }

/* Output row o of an image after the products: the bias and ReLU. */
static void finish_row(const conv_job *j, float *row, int64_t o, int64_t l) {
  float v = j->bias ? j->bias[o] : 0.0f;
  if (j->bias && !j->relu) {
#pragma omp simd
    for (int64_t p = 0; p < l; p++) row[p] += v;
  } else if (j->relu && j->bias) {   /* ReLU as the runtime's (v < 0 keeps NaN and -0) */
#pragma omp simd
    for (int64_t p = 0; p < l; p++) row[p] = row[p] + v < 0.0f ? 0.0f : row[p] + v;
  } else if (j->relu) {   /* no bias adds nothing, not 0 (which would turn -0 into 0) */
#pragma omp simd
    for (int64_t p = 0; p < l; p++) row[p] = row[p] < 0.0f ? 0.0f : row[p];
  }
}

/* Image n's outputs after the products: the bias, ReLU, a batch norm's sums, two rows at a time while they
   are in L1 (an image's outputs, 50 KB for 64 channels of 14x14, are not) */
static void finish_image(const conv_job *j, int64_t n) {
  const conv_geom *g = j->g;
  int64_t l = g->positions, rows = g->out_ch;
  float *y = j->y + n * rows * l;
  double *sums = j->row_sums ? j->row_sums + n * rows * ROW_STATS_SUMS : NULL;
  int64_t o = 0;
  for (; o + 1 < rows; o += 2) {
    finish_row(j, y + o * l, o, l);
    finish_row(j, y + (o + 1) * l, o + 1, l);
    if (sums)
      dn_row_sums_pair(y + o * l, y + (o + 1) * l, l, sums + o * ROW_STATS_SUMS, sums + (o + 1) * ROW_STATS_SUMS);
  }
  if (o < rows) {
    finish_row(j, y + o * l, o, l);
    if (sums) dn_row_sums(y + o * l, l, sums + o * ROW_STATS_SUMS);
  }
}

/* Image n's outputs. */
static void forward_image(const conv_job *j, int64_t n, float *rows, float *pack, float *frame, bool zeroed) {
  const conv_geom *g = j->g;
  int64_t og = g->out_ch / g->groups, kg = g->group_rows, l = g->positions;
  float *y = j->y + n * g->out_ch * l;
  if (!has_products(g)) memset(y, 0, (size_t)(g->out_ch * l) * sizeof *y);   /* no inputs: only the bias */
  if (j->shifted) dn_conv_shifted_forward(j->shifted, g, image_of(j->x, n), frame, y);
  for (int64_t oh0 = 0; has_products(g) && !j->shifted && oh0 < g->out_h; oh0 += j->slab) {
    int64_t oh1 = min64(oh0 + j->slab, g->out_h), cols = (oh1 - oh0) * g->out_w, at = oh0 * g->out_w;
    for (int64_t k = 0; k < g->groups; k++) {
      /* a group's rows cover every (ki, kj) before the next group's start */
      col_source src = {g, image_of(j->x, n), oh0, oh1, k, rows, (zeroed || k > 0) && j->slab == g->out_h,
                        j->inside};
      dn_blas_sgemm_here_b(false, og, cols, kg, 1.0f, j->w + k * og * kg, kg, col_source_pack, &src, 0.0f,
                           y + k * og * l + at, l, pack, packed_w(j, k));
    }
  }
  finish_image(j, n);
}

static void forward_task(void *ctx, int t, int nt) {
  const conv_job *j = ctx;
  task_buffers b = buffers_of(j, t);
  memset(b.frame, 0, (size_t)j->frame_floats * sizeof *b.frame);   /* the frame's border: never written */
  memset(b.wino, 0, (size_t)j->wino_floats * sizeof *b.wino);      /* the phase planes' border likewise */
  int64_t n0 = dn_split(j->g->batch, t, nt), n1 = dn_split(j->g->batch, t + 1, nt);
  if (j->winograd) {   /* the images' outputs come as their columns complete: each finished then */
    dn_conv_winograd_cursor cur = {b.wino, j->y + n0 * j->g->out_ch * j->g->positions, 0, 0};
    int64_t finished = n0;
    for (int64_t n = n0; n < n1; n++)
      for (int64_t done = n0 + dn_conv_winograd_push(j->winograd, &cur, image_of(j->x, n)); finished < done;)
        finish_image(j, finished++);
    dn_conv_winograd_flush(j->winograd, &cur);
    while (finished < n1) finish_image(j, finished++);
    return;
  }
  for (int64_t n = n0; n < n1; n++) forward_image(j, n, b.rows, b.pack, b.frame, n > n0);
}

/* Image n's dx, and its terms of its part's dw (first: the part's first
   image, which writes rather than adds) and db. */
static void backward_image(const conv_job *j, int64_t n, bool first, float *dw, double *db, float *col, float *pack,
                           float *dcol, float *gbuf, float *xt, float *gp, float *fill, float *frame,
                           dn_conv_winograd_cursor *wino, float *dw_wino, bool zeroed) {
  const conv_geom *g = j->g;
  int64_t og = g->out_ch / g->groups, kg = g->group_rows, l = g->positions;
  const float *gn = gbuf;
  if (j->deferred)   /* the image's rows of a deferred gradient (a batch norm's dx), written where read next */
    j->deferred->fill(j->deferred, n * g->out_ch, (n + 1) * g->out_ch, gbuf, fill);
  else
    gn = j->grad + n * g->out_ch * l;   /* (a deferred gradient has no data to point into) */
  if (j->relu_y) {
    /* ReLU's backward (lanes.h, 0 where y <= 0), the image's gradient while it stays in cache */
    const float *y = j->relu_y + n * g->out_ch * l;
#pragma omp simd
    for (int64_t e = 0; e < g->out_ch * l; e++) gbuf[e] = relu_grad(gn[e], y[e]);
    gn = gbuf;
  }
  float *dx = j->dx ? j->dx + n * g->in_ch * g->in_h * g->in_w : NULL;
  if (dx && j->shifted) {
    dn_conv_shifted_dx(j->shifted, g, gn, frame, dx);
    dx = NULL;   /* written */
  }
  if (dx && j->winograd) {   /* written as its columns complete, at the latest by the task's flush */
    dn_conv_winograd_push(j->winograd, wino, (image){gn, l, g->out_w, 1});
    dx = NULL;
  }
  if (dx) memset(dx, 0, (size_t)(g->in_ch * g->in_h * g->in_w) * sizeof *dx);
  float *dw_col = j->dw_shifts || j->dw_wino ? NULL : dw;   /* dw through im2col, slab by slab */
  for (int64_t oh0 = 0; has_products(g) && (dx || dw_col) && oh0 < g->out_h; oh0 += j->slab) {
    int64_t oh1 = min64(oh0 + j->slab, g->out_h), cols = (oh1 - oh0) * g->out_w, at = oh0 * g->out_w;
    if (dx) {
      for (int64_t k = 0; k < g->groups; k++)
        dn_blas_sgemm_here(true, false, kg, cols, og, 1.0f, j->w + k * og * kg, kg, gn + k * og * l + at, l, 0.0f,
                           dcol + k * kg * cols, cols, pack, packed_w(j, k));
      col2im_slab(g, dcol, cols, oh0, oh1, dx);
    }
    if (dw_col) {
      image xn = image_of(j->x, n);
      if (j->inside && direct_source(g, xn)) im2col_direct(g, xn, j->inside, oh0, oh1, col, cols);
      else im2col_slab(g, xn, oh0, oh1, col, cols, zeroed && j->slab == g->out_h);
      float beta = first && oh0 == 0 ? 0.0f : 1.0f;
      for (int64_t k = 0; k < g->groups; k++) {
        const float *gk = gn + k * og * l + at, *ck = col + k * kg * cols;
        if (j->dw_t)
          dn_blas_sgemm_here(false, true, kg, og, cols, 1.0f, ck, cols, gk, l, beta, dw + k * og * kg, og, pack, NULL);
        else
          dn_blas_sgemm_here(false, true, og, kg, cols, 1.0f, gk, l, ck, cols, beta, dw + k * og * kg, kg, pack, NULL);
      }
    }
  }
  if (dw && j->dw_shifts && has_products(g))
    dn_conv_dw_shifts(g, image_of(j->x, n), gn, xt, gp, dw, first, pack, j->dw_rows);
  if (dw && j->dw_wino) dn_conv_winograd_dw(j->dw_wino, image_of(j->x, n), gn, dw_wino, dw, first);
  for (int64_t o = 0; db && o < g->out_ch; o++) lanes_sum(db + o * LANES, gn + o * l, l);
}

/* Floats of one part's dw: dw itself, or Winograd's transformed dU where dw_wino is given. */
static int64_t dw_part_floats(const conv_geom *g, const dn_conv_winograd *dw_wino) {
  return dw_wino ? dn_conv_winograd_dw_part_floats(dw_wino) : g->out_ch * g->group_rows;
}

static void backward_task(void *ctx, int t, int nt) {
  const conv_job *j = ctx;
  const conv_geom *g = j->g;
  task_buffers b = buffers_of(j, t);
  bool zeroed = false;   /* col's rows of padding: written by this task's first image */
  /* the shifts' padding: never written */
  memset(b.xt, 0, (size_t)(j->xt_floats + j->gp_floats) * sizeof *b.xt);
  memset(b.fill, 0, (size_t)j->fill_floats * sizeof *b.fill);   /* zeroed once (deferred.h) */
  memset(b.frame, 0, (size_t)j->frame_floats * sizeof *b.frame);   /* the frame's border: never written */
  /* the phase planes' borders (Winograd's y or dx, and its dw) likewise */
  memset(b.wino, 0, (size_t)(j->wino_floats + j->dw_wino_floats) * sizeof *b.wino);
  /* Winograd's dx: the task's images are consecutive, from its first part's first on */
  int64_t p0 = dn_split(j->parts, t, nt), first = dn_split(g->batch, (int)p0, (int)j->parts);
  dn_conv_winograd_cursor wino = {b.wino, j->dx ? j->dx + first * g->in_ch * g->in_h * g->in_w : NULL, 0, 0};
  for (int64_t p = dn_split(j->parts, t, nt); p < dn_split(j->parts, t + 1, nt); p++) {
    float *dw = j->dw ? j->dw + p * dw_part_floats(g, j->dw_wino) : NULL;
    double *db = j->db ? j->db + p * g->out_ch * LANES : NULL;
    int64_t n0 = dn_split(g->batch, (int)p, (int)j->parts), n1 = dn_split(g->batch, (int)p + 1, (int)j->parts);
    for (int64_t n = n0; n < n1; n++, zeroed = true) {
      backward_image(j, n, n == n0, dw, db, b.col, b.pack, b.dcol, b.g, b.xt, b.gp, b.fill, b.frame, &wino,
                     b.dw_wino, zeroed);
    }
  }
  if (j->dx && j->winograd) dn_conv_winograd_flush(j->winograd, &wino);
}

/* The sgemm's packing floats for the forward's or backward's products of a slab of `cols` positions. */
static int64_t pack_floats(const conv_geom *g, int64_t cols, bool forward) {
  if (!has_products(g)) return 0;
  int64_t og = g->out_ch / g->groups, kg = g->group_rows;
  if (forward) return (int64_t)dn_blas_here_b_floats(og, cols, kg);
  size_t f = 0, d = dn_blas_here_floats(kg, cols, og),
         w = dn_blas_here_floats(og, kg, cols), wt = dn_blas_here_floats(kg, og, cols);
  size_t most = f > d ? f : d;
  most = most > w ? most : w;
  return (int64_t)(most > wt ? most : wt);
}

static int64_t whole_lines(int64_t floats) { return (floats + 15) / 16 * 16; }

/* j->scratch for `tasks` tasks (forward, or backward with col for dw and
   dcol for dx), each part whole cache lines. */
static dn_status task_scratch(conv_job *j, const char *op, int tasks, bool forward, bool col, bool dcol) {
  const conv_geom *g = j->g;
  int64_t slab_cols = j->slab * g->out_w, last_cols = (g->out_h - (g->out_h - 1) / j->slab * j->slab) * g->out_w;
  int64_t rows = g->in_ch * g->k_h * g->k_w, col_size = whole_lines(rows * slab_cols);
  j->col_floats = col ? col_size : 0;
  j->dcol_floats = dcol ? col_size : 0;
  bool direct = !j->shifted && !j->winograd;
  bool products = forward ? direct : col || dcol;   /* the im2col path's sgemms */
  j->rows_floats = forward && direct ? whole_lines(g->k_h * g->k_w * slab_cols) : 0;
  j->g_floats = j->relu_y || j->deferred ? whole_lines(g->out_ch * g->positions) : 0;
  j->xt_floats = j->dw_shifts ? whole_lines(dn_conv_dw_shifts_xt_floats(g)) : 0;
  j->gp_floats = j->dw_shifts && !j->dw_rows ? whole_lines(dn_conv_dw_shifts_gp_floats(g)) : 0;
  j->pack_floats = products
                     ? whole_lines(max64(pack_floats(g, slab_cols, forward), pack_floats(g, last_cols, forward)))
                     : 0;
  if (j->dw_shifts) j->pack_floats = max64(j->pack_floats, whole_lines((int64_t)dn_conv_dw_shifts_pack_floats(g)));
  j->fill_floats = j->deferred ? whole_lines(j->deferred->scratch_floats) : 0;
  j->frame_floats = j->shifted ? whole_lines(dn_conv_shifted_frame_floats(g, !forward)) : 0;
  j->wino_floats = j->winograd ? whole_lines(dn_conv_winograd_task_floats(j->winograd)) : 0;
  j->dw_wino_floats = j->dw_wino ? whole_lines(dn_conv_winograd_dw_task_floats(j->dw_wino)) : 0;
  j->task_floats = j->col_floats + j->pack_floats + j->dcol_floats + j->rows_floats + j->g_floats + j->xt_floats +
                   j->gp_floats + j->fill_floats + j->frame_floats + j->wino_floats + j->dw_wino_floats;
  int64_t total;
  if (!dn_size_mul(j->task_floats, tasks, &total) || !(j->scratch = dn_alloc((size_t)max64(total, 1) * sizeof(float))))
    return dn_fail(DN_ENOMEM, "%s: out of memory for %d tasks' im2col buffers of [%lld, %lld]", op, tasks,
                   (long long)rows, (long long)slab_cols);
  return DN_OK;
}

/* Tasks for `units` of work: one per thread, at most one per unit. */
static int tasks_for(int64_t units) { return (int)min64(dn_get_num_threads(), units); }

/* --- shared pieces ------------------------------------------------------------------ */

/* The sizes from x's and w's shapes (3-D for conv1d, 4-D for conv2d) and the
   options, stride/padding/dilation as {rows, columns}. */
static void geom_init(conv_geom *g, int ndim, const int64_t *xs, const int64_t *ws, const int64_t *stride,
                      const int64_t *pad, const int64_t *dil, int64_t groups) {
  bool one_d = ndim == 3;
  g->batch = xs[0];
  g->in_ch = xs[1];
  g->out_ch = ws[0];
  g->groups = groups;
  g->in_h = one_d ? 1 : xs[2];
  g->in_w = xs[ndim - 1];
  g->k_h = one_d ? 1 : ws[2];
  g->k_w = ws[ndim - 1];
  for (int i = 0; i < 2; i++) {
    g->stride[i] = stride[i];
    g->pad[i] = pad[i];
    g->dil[i] = dil[i];
  }
  g->out_h = (g->in_h + 2 * pad[0] - dil[0] * (g->k_h - 1) - 1) / stride[0] + 1;
  g->out_w = (g->in_w + 2 * pad[1] - dil[1] * (g->k_w - 1) - 1) / stride[1] + 1;
  g->group_rows = ws[1] * g->k_h * g->k_w;
  g->positions = g->out_h * g->out_w;
}

/* --- backward ----------------------------------------------------------------------- */

/* The geometry a node was recorded with. */
static void node_geom(conv_geom *g, const dn_node *node) {
  geom_init(g, node->in_ndim[0], node->in_shape[0], node->in_shape[1], node->ints + NODE_STRIDE,
            node->ints + NODE_PADDING, node->ints + NODE_DILATION, node->ints[NODE_GROUPS]);
}

/* dw[e] = the parts' dw[e] added in part order, for e in [e0, e1); with
   transposed parts, e = (group, o, r) is read at (group, r, o); with the
   shifts' parts, e = (group, o, c, q) at (group, q, o, c), q the kernel
   offset (kk of them). */
typedef struct parts_job {
  const float *parts;
  int64_t count, size;
  bool transposed, shifts;
  int64_t og, kg, kk, kw;
  float *dw;
} parts_job;

static void sum_parts(const void *ctx, int64_t e0, int64_t e1) {
  const parts_job *j = ctx;
  for (int64_t e = e0; e < e1; e++) {
    int64_t at = e;
    if (j->transposed) {
      int64_t block = j->og * j->kg, in = e % block;
      at = e - in + in % j->kg * j->og + in / j->kg;
    } else if (j->shifts) {   /* from [KH][O/G][KW][C/G] */
      int64_t block = j->og * j->kg, in = e % block, cg = j->kg / j->kk;
      int64_t o = in / j->kg, c = in % j->kg / j->kk, q = in % j->kk, ki = q / j->kw, kj = q % j->kw;
      at = e - in + ((ki * j->og + o) * j->kw + kj) * cg + c;
    }
    float s = j->parts[at];
    for (int64_t p = 1; p < j->count; p++) s += j->parts[p * j->size + at];
    j->dw[e] = s;
  }
}

/* Whether dw's products pad less as dw^T = col @ g^T than as g @ col^T (a
   first layer's 1 x 3 x 3 rows: [32, 9] pads 9 columns to the kernel's 32,
   [9, 32] pads 9 rows to 16). */
static bool dw_transposed(const conv_geom *g) {
  int mr, nr;
  dn_blas_here_tile(&mr, &nr);
  int64_t og = g->out_ch / g->groups, kg = g->group_rows;
  double as_is = (double)((og + mr - 1) / mr * mr) * (double)((kg + nr - 1) / nr * nr);
  double transposed = (double)((kg + mr - 1) / mr * mr) * (double)((og + nr - 1) / nr * nr);
  return transposed < 0.75 * as_is;
}

/* dx, dw and db by parts of the batch (depthwise: dx and dw by its own loops). */
static dn_status conv_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  const char *op = node->type->name;
  conv_geom g;
  node_geom(&g, node);
  bool want_dx = node->needs_grad[0], want_dw = node->needs_grad[1], want_db = node->needs_grad[2];
  bool run = g.batch > 0 && g.out_ch > 0, dense = !depthwise(&g);
  dn_tensor *gc = NULL, *x = NULL, *w = NULL, *dx = NULL, *dw = NULL, *db = NULL, *wc = NULL;
  /* a deferred gradient is written image by image by the dense passes (the depthwise ones read it whole) */
  const dn_deferred *deferred = grad->deferred;
  dn_status st = DN_OK;
  if (deferred && !(run && dense && deferred->rows == g.batch * g.out_ch && deferred->row_len == g.positions)) {
    st = dn_deferred_materialize(grad);
    deferred = NULL;
  }
  if (!st) st = dn_plain_contiguous(&gc, grad);
  if (!st && want_dx) st = dn_node_saved(node, SAVED_W, &w);
  if (!st && want_dx) st = dn_plain_contiguous(&wc, w);
  if (!st && want_dw) st = dn_node_saved(node, SAVED_X, &x);
  if (!st && want_dx) st = (run ? dn_tensor_new : dn_tensor_zeros)(&dx, DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (!st && want_dw) st = dn_tensor_zeros(&dw, DN_F32, node->in_ndim[1], node->in_shape[1]);
  if (!st && want_db) st = dn_tensor_zeros(&db, DN_F32, node->in_ndim[2], node->in_shape[2]);
  const float *gd = st || deferred ? NULL : dn_tensor_data(gc);   /* a deferred gradient has no data yet */
  /* conv + ReLU: grad through ReLU's backward at the saved output, image by image in the dense passes */
  bool relu = node->ints[NODE_RELU] != 0;
  dn_tensor *y = NULL;
  float *g_relu = NULL;
  if (!st && relu && run) st = dn_node_saved(node, SAVED_Y, &y);
  if (!st && relu && run && !dense) {
    int64_t count = dn_tensor_numel(gc);
    const float *yd = dn_tensor_data(y);
    if (!(g_relu = dn_alloc((size_t)count * sizeof *g_relu)))
      st = dn_fail(DN_ENOMEM, "%s: out of memory for its gradient through ReLU", op);
    for (int64_t e = 0; !st && e < count; e++) g_relu[e] = relu_grad(gd[e], yd[e]);
    gd = g_relu;
  }
  if (!st && run && !dense && want_dx) st = dn_depthwise_dx(op, &g, dn_tensor_data(wc), gd, dn_tensor_data(dx));
  if (!st && run && !dense && want_dw) st = dn_depthwise_dw(op, &g, x, gd, dn_tensor_data(dw));
  conv_job j = {.g = &g, .slab = slab_rows(&g), .x = x, .w = wc ? dn_tensor_data(wc) : NULL, .grad = gd,
                .parts = parts_of(&g), .relu_y = relu && dense && y ? dn_tensor_data(y) : NULL,
                .deferred = deferred};
  float *dw_parts = NULL, *w_packed = NULL;
  int64_t wn = g.out_ch * g.group_rows;
  dn_conv_winograd dw_wino = {0};
  if (!st && run && dense && want_dx) j.dx = dn_tensor_data(dx);
  if (!st && run && dense && want_dw && wn > 0 && dn_conv_winograd_dw_fits(&g) &&
      !(st = dn_conv_winograd_dw_init(&dw_wino, &g, op)))
    j.dw_wino = &dw_wino;
  if (!st && run && dense && want_dw && wn > 0) {
    j.dw_shifts = !j.dw_wino && dn_conv_dw_shifts_fits(&g);
    j.dw_t = !j.dw_wino && !j.dw_shifts && dw_transposed(&g);
    if (j.parts == 1 && !j.dw_t && !j.dw_shifts && !j.dw_wino) j.dw = dn_tensor_data(dw);
    else if (!(j.dw = dw_parts = dn_alloc((size_t)(j.parts * dw_part_floats(&g, j.dw_wino)) * sizeof(float))))
      st = dn_fail(DN_ENOMEM, "%s: out of memory for %lld partial weight gradients", op, (long long)j.parts);
  }
  if (!st && run && want_db) {
    size_t size = (size_t)(j.parts * g.out_ch * LANES) * sizeof(double);
    if ((j.db = dn_alloc(size))) memset(j.db, 0, size);
    else st = dn_fail(DN_ENOMEM, "%s: out of memory for %lld partial bias gradients", op, (long long)j.parts);
  }
  uint8_t *inside = NULL;
  if (!st && j.dw && !j.dw_shifts && !j.dw_wino && direct_source(&g, image_of(x, 0)) &&
      !(j.inside = inside = inside_map(&g)))
    st = dn_fail(DN_ENOMEM, "%s: out of memory for its map of padding", op);
  int32_t *dw_rows = NULL;
  if (!st && j.dw_shifts && !dn_conv_dw_shifts_offsets(&g, &dw_rows))
    st = dn_fail(DN_ENOMEM, "%s: out of memory for its table of positions", op);
  j.dw_rows = dw_rows;
  dn_conv_shifted shifted = {0};
  dn_conv_winograd wino = {0};
  if (!st && j.dx && dn_conv_winograd_fits(&g, true)) {
    if (!(st = dn_conv_winograd_init(&wino, &g, j.w, true, op))) j.winograd = &wino;
  } else if (!st && j.dx && dn_conv_shifted_fits(&g, true) &&
             !(st = dn_conv_shifted_init(&shifted, &g, j.w, true, op))) {
    j.shifted = &shifted;
  }
  if (!st && (j.dx || j.dw || j.db)) {
    int tasks = tasks_for(j.parts);
    bool dx_direct = j.dx != NULL && !j.shifted && !j.winograd;
    st = task_scratch(&j, op, tasks, false, j.dw != NULL && !j.dw_shifts && !j.dw_wino, dx_direct);
    if (!st && dx_direct) st = pack_weight(&j, op, true, &w_packed);
    if (!st) dn_parallel(tasks, backward_task, &j);
  }
  if (!st && dw_parts && j.dw_wino) {
    dn_conv_winograd_dw_finish(j.dw_wino, dw_parts, j.parts, dn_tensor_data(dw));
  } else if (!st && dw_parts) {
    parts_job pj = {dw_parts, j.parts, wn, j.dw_t, j.dw_shifts, g.out_ch / g.groups, g.group_rows,
                    g.k_h * g.k_w, g.k_w, dn_tensor_data(dw)};
    dn_parallel_range(wn, 16, sum_parts, &pj);
  }
  for (int64_t o = 0; !st && j.db && o < g.out_ch; o++) {
    double acc[LANES] = {0};
    for (int64_t p = 0; p < j.parts; p++)
      for (int i = 0; i < LANES; i++) acc[i] += j.db[(p * g.out_ch + o) * LANES + i];
    ((float *)dn_tensor_data(db))[o] = (float)lanes_total(acc);
  }
  dn_conv_shifted_free(&shifted);
  dn_conv_winograd_free(&wino);
  dn_conv_winograd_free(&dw_wino);
  dn_free(dw_rows);
  dn_free(inside);
  dn_free(g_relu);
  dn_free(j.scratch);
  dn_free(j.db);
  dn_free(dw_parts);
  dn_free(w_packed);
  dn_tensor_release(wc);
  dn_tensor_release(gc);
  if (st) {
    dn_tensor_release(dx);
    dn_tensor_release(dw);
    dn_tensor_release(db);
    return st;
  }
  grad_in[0] = dx;
  grad_in[1] = dw;
  grad_in[2] = db;
  return DN_OK;
}
static const dn_node_type conv2d_node = {.name = "conv2d", .backward = conv_backward, .takes_deferred = true};
static const dn_node_type conv1d_node = {.name = "conv1d", .backward = conv_backward, .takes_deferred = true};
static const dn_node_type conv2d_relu_node = {.name = "conv2d_relu", .backward = conv_backward, .takes_deferred = true};
static const dn_node_type conv1d_relu_node = {.name = "conv1d_relu", .backward = conv_backward, .takes_deferred = true};

/* --- forward ------------------------------------------------------------------------ */

/* "[a,b]" for messages (1-D convolutions print their one value as "a"). */
static const char *pair_str(char *buf, size_t size, const int64_t *v, bool one_d) {
  if (one_d) snprintf(buf, size, "%lld", (long long)v[1]);
  else snprintf(buf, size, "[%lld,%lld]", (long long)v[0], (long long)v[1]);
  return buf;
}

/*
** Every argument of a convolution: dtypes, ranks (ndim 3 for conv1d, 4 for
** conv2d), options, channels and groups, bias, the kernel against the padded
** input, sizes sgemm can take. Options are {rows, columns}; a 1-D op's rows
** are all 1 and 0 and its messages show only the columns.
*/
static dn_status check_args(const char *op, int ndim, const dn_tensor *x, const dn_tensor *w, const dn_tensor *b,
                            const int64_t *stride, const int64_t *pad, const int64_t *dil, int64_t groups) {
  char xs[128], ws[128], bs[128], p1[48], p2[48], p3[48];
  bool one_d = ndim == 3;
  const char *layout = one_d ? "[N, C, L]" : "[N, C, H, W]";
  const char *wlayout = one_d ? "[out, in/groups, k]" : "[out, in/groups, kh, kw]";
  if (x->dtype != DN_F32 || w->dtype != DN_F32 || (b && b->dtype != DN_F32))
    return dn_fail(DN_ETYPE, "%s: expects float32 tensors (got input %s, weight %s%s%s)", op, dn_dtype_name(x->dtype),
                   dn_dtype_name(w->dtype), b ? ", bias " : "", b ? dn_dtype_name(b->dtype) : "");
  if (x->ndim != ndim)
    return dn_fail(DN_ESHAPE, "%s: input must be %d-D %s (got shape %s)", op, ndim, layout,
                   dn_shape_str(x, xs, sizeof xs));
  if (w->ndim != ndim)
    return dn_fail(DN_ESHAPE, "%s: weight must be %d-D %s (got shape %s)", op, ndim, wlayout,
                   dn_shape_str(w, ws, sizeof ws));
  if (stride[0] < 1 || stride[1] < 1)
    return dn_fail(DN_EINVAL, "%s: stride must be >= 1 (got %s)", op, pair_str(p1, sizeof p1, stride, one_d));
  if (dil[0] < 1 || dil[1] < 1)
    return dn_fail(DN_EINVAL, "%s: dilation must be >= 1 (got %s)", op, pair_str(p1, sizeof p1, dil, one_d));
  if (pad[0] < 0 || pad[1] < 0)
    return dn_fail(DN_EINVAL, "%s: padding must be >= 0 (got %s)", op, pair_str(p1, sizeof p1, pad, one_d));
  /* 2^40 (shape.h) bounds every size: the arithmetic below cannot overflow */
  if (stride[0] > DN_MAX_NUMEL || stride[1] > DN_MAX_NUMEL || dil[0] > DN_MAX_NUMEL || dil[1] > DN_MAX_NUMEL ||
      pad[0] > DN_MAX_NUMEL || pad[1] > DN_MAX_NUMEL)
    return dn_fail(DN_EINVAL, "%s: stride %s, padding %s or dilation %s is too large", op,
                   pair_str(p1, sizeof p1, stride, one_d), pair_str(p2, sizeof p2, pad, one_d),
                   pair_str(p3, sizeof p3, dil, one_d));
  if (groups < 1) return dn_fail(DN_EINVAL, "%s: groups must be >= 1 (got %lld)", op, (long long)groups);
  dn_shape_str(x, xs, sizeof xs);
  dn_shape_str(w, ws, sizeof ws);
  int64_t in = x->shape[1], out = w->shape[0];
  if (in % groups)
    return dn_fail(DN_ESHAPE, "%s: groups %lld does not divide the input's %lld channels (input %s)", op,
                   (long long)groups, (long long)in, xs);
  if (out % groups)
    return dn_fail(DN_ESHAPE, "%s: groups %lld does not divide the weight's %lld output channels (weight %s)", op,
                   (long long)groups, (long long)out, ws);
  if (w->shape[1] != in / groups)
    return dn_fail(DN_ESHAPE, "%s: input %s has %lld channels but weight %s expects %lld per group x %lld groups", op,
                   xs, (long long)in, ws, (long long)w->shape[1], (long long)groups);
  if (b && (b->ndim != 1 || b->shape[0] != out))
    return dn_fail(DN_ESHAPE, "%s: bias %s does not match weight %s (expected [%lld])", op,
                   dn_shape_str(b, bs, sizeof bs), ws, (long long)out);
  for (int i = one_d ? 1 : 0; i < 2; i++) {
    int64_t size = x->shape[ndim - 2 + i], k = w->shape[ndim - 2 + i];
    if (k < 1) return dn_fail(DN_ESHAPE, "%s: weight %s has an empty kernel", op, ws);
    int64_t extent, padded = size + 2 * pad[i];   /* <= 3 * 2^40 */
    if (!dn_size_mul(dil[i], k - 1, &extent) || extent + 1 > padded) {
      const char *dim = one_d ? "" : i ? " in width" : " in height";
      return dn_fail(DN_ESHAPE, "%s: kernel %s (%lld with dilation %lld) is larger than the padded input%s %lld "
                     "(input %s, padding %s)", op, ws, (long long)k, (long long)dil[i], dim, (long long)padded, xs,
                     pair_str(p1, sizeof p1, pad, one_d));
    }
  }
  conv_geom g;
  geom_init(&g, ndim, x->shape, w->shape, stride, pad, dil, groups);
  int64_t rows, out_numel;
  if (!dn_size_mul(g.in_ch * g.k_h, g.k_w, &rows) || !dn_size_mul(rows, g.positions, &rows) ||
      !dn_size_mul(g.batch * g.out_ch, g.positions, &out_numel) ||
      !dn_blas_fits(g.group_rows, g.positions, g.out_ch, g.group_rows, g.positions, g.positions))
    return dn_fail(DN_EINVAL, "%s: input %s and weight %s are too large to convolve", op, xs, ws);
  return DN_OK;
}


/* y (new, contiguous [N, O, positions]) = conv(x, w) + b for checked arguments; row_sums: each output row's
   sums for a batch norm, or NULL. */
static dn_status compute(const char *op, dn_tensor *y, const conv_geom *g, dn_tensor *x, dn_tensor *w, dn_tensor *b,
                         bool relu, double *row_sums) {
  if (g->batch == 0 || g->out_ch == 0) return DN_OK;   /* y is empty */
  dn_tensor *wc = NULL, *bc = NULL;
  dn_status st = dn_plain_contiguous(&wc, w);
  if (!st && b) st = dn_plain_contiguous(&bc, b);
  const float *wd = st ? NULL : dn_tensor_data(wc), *bd = bc ? dn_tensor_data(bc) : NULL;
  if (!st && depthwise(g)) {
    st = dn_depthwise_forward(op, g, x, wd, bd, dn_tensor_data(y));   /* the bias is in */
    float *yd = dn_tensor_data(y);
    int64_t count = relu && !st ? dn_tensor_numel(y) : 0;
    for (int64_t e = 0; e < count; e++) yd[e] = yd[e] < 0.0f ? 0.0f : yd[e];
    /* the depthwise loops' outputs summed in a pass after them */
    dn_row_sums_job rj = {yd, g->positions, row_sums};
    if (!st && row_sums) dn_parallel_rows(g->batch * g->out_ch, g->positions, dn_row_sums_range, &rj);
  } else if (!st) {
    conv_job j = {.g = g, .slab = slab_rows(g), .x = x, .w = wd, .bias = bd, .y = dn_tensor_data(y), .parts = 1,
                  .relu = relu, .row_sums = row_sums};
    int tasks = tasks_for(g->batch);
    float *packed = NULL;
    uint8_t *inside = NULL;
    dn_conv_shifted shifted = {0};
    dn_conv_winograd wino = {0};
    if (dn_conv_winograd_fits(g, false)) {
      if (!(st = dn_conv_winograd_init(&wino, g, wd, false, op))) j.winograd = &wino;
    } else if (dn_conv_shifted_fits(g, false) && !(st = dn_conv_shifted_init(&shifted, g, wd, false, op))) {
      j.shifted = &shifted;
    }
    bool direct = !j.shifted && !j.winograd;
    if (!st) st = task_scratch(&j, op, tasks, true, false, false);
    if (!st && direct) st = pack_weight(&j, op, false, &packed);
    if (!st && direct && direct_source(g, image_of(x, 0)) && !(j.inside = inside = inside_map(g)))
      st = dn_fail(DN_ENOMEM, "%s: out of memory for its map of padding", op);
    if (!st) dn_parallel(tasks, forward_task, &j);
    dn_conv_shifted_free(&shifted);
    dn_conv_winograd_free(&wino);
    dn_free(inside);
    dn_free(packed);
    dn_free(j.scratch);
  }
  dn_tensor_release(bc);
  dn_tensor_release(wc);
  return st;
}

/* Checks, the output, the kernel, the node (ndim 3: conv1d, 4: conv2d); stats: the output carries its
   rows' sums for a batch norm (row_stats.h). */
static dn_status forward(dn_tensor **out, const dn_node_type *type, int ndim, dn_tensor *x, dn_tensor *w,
                         dn_tensor *b, const int64_t *stride, const int64_t *pad, const int64_t *dil, int64_t groups,
                         bool relu, bool stats) {
  *out = NULL;
  dn_status st = check_args(type->name, ndim, x, w, b, stride, pad, dil, groups);
  if (st) return st;
  conv_geom g;
  geom_init(&g, ndim, x->shape, w->shape, stride, pad, dil, groups);
  int64_t shape[4] = {g.batch, g.out_ch, ndim == 4 ? g.out_h : g.out_w, g.out_w};
  dn_tensor *y;
  st = dn_tensor_new(&y, DN_F32, ndim, shape);
  if (st) return st;
  dn_row_stats *sums = NULL;
  int64_t rows = g.batch * g.out_ch;
  if (stats && rows > 0 && g.positions > 0 && !(sums = dn_row_stats_new(rows, g.positions)))
    st = dn_fail(DN_ENOMEM, "%s: out of memory for the sums of %lld output rows", type->name, (long long)rows);
  if (!st) st = compute(type->name, y, &g, x, w, b, relu, sums ? sums->sums : NULL);
  if (!st && sums) {
    sums->version = y->storage->version;
    y->row_stats = sums;
  } else {
    dn_free(sums);
  }
  dn_node *node = NULL;
  if (!st) st = dn_record(y, type, 3, (const dn_tensor *[]){x, w, b}, &node);
  if (!st && node) {
    for (int i = 0; i < 2; i++) {
      node->ints[NODE_STRIDE + i] = stride[i];
      node->ints[NODE_PADDING + i] = pad[i];
      node->ints[NODE_DILATION + i] = dil[i];
    }
    node->ints[NODE_GROUPS] = groups;
    node->ints[NODE_RELU] = relu;
    if (node->needs_grad[1]) st = dn_node_save(node, SAVED_X, x);
    if (!st && node->needs_grad[0]) st = dn_node_save(node, SAVED_W, w);
    if (!st && relu) st = dn_node_save(node, SAVED_Y, y);
  }
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  *out = y;
  return DN_OK;
}

dn_status dn_conv2d(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, const int64_t stride[2],
                    const int64_t padding[2], const int64_t dilation[2], int64_t groups) {
  DN_FPMODE_SCOPE();
  return forward(out, &conv2d_node, 4, x, w, b, stride, padding, dilation, groups, false, false);
}

dn_status dn_conv2d_stats(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, const int64_t stride[2],
                          const int64_t padding[2], const int64_t dilation[2], int64_t groups) {
  DN_FPMODE_SCOPE();
  return forward(out, &conv2d_node, 4, x, w, b, stride, padding, dilation, groups, false, true);
}

dn_status dn_conv2d_relu(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, const int64_t stride[2],
                         const int64_t padding[2], const int64_t dilation[2], int64_t groups) {
  DN_FPMODE_SCOPE();
  return forward(out, &conv2d_relu_node, 4, x, w, b, stride, padding, dilation, groups, true, false);
}

dn_status dn_conv1d(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, int64_t stride, int64_t padding,
                    int64_t dilation, int64_t groups) {
  DN_FPMODE_SCOPE();
  return forward(out, &conv1d_node, 3, x, w, b, (int64_t[]){1, stride}, (int64_t[]){0, padding},
                 (int64_t[]){1, dilation}, groups, false, false);
}

dn_status dn_conv1d_stats(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, int64_t stride, int64_t padding,
                          int64_t dilation, int64_t groups) {
  DN_FPMODE_SCOPE();
  return forward(out, &conv1d_node, 3, x, w, b, (int64_t[]){1, stride}, (int64_t[]){0, padding},
                 (int64_t[]){1, dilation}, groups, false, true);
}

dn_status dn_conv1d_relu(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, int64_t stride, int64_t padding,
                         int64_t dilation, int64_t groups) {
  DN_FPMODE_SCOPE();
  return forward(out, &conv1d_relu_node, 3, x, w, b, (int64_t[]){1, stride}, (int64_t[]){0, padding},
                 (int64_t[]){1, dilation}, groups, true, false);
}
