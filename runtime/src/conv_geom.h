/*
** What the convolution files share (conv.c: im2col + sgemm; conv_depthwise.c:
** the depthwise loops): a convolution's sizes, a batch element as an image,
** and the output columns a kernel column reads inside the input.
*/
#ifndef DN_CONV_GEOM_H
#define DN_CONV_GEOM_H

#include "internal.h"

/* One convolution's sizes, a 1-D one with in_h = k_h = out_h = 1. */
typedef struct conv_geom {
  int64_t batch, in_ch, out_ch, groups;
  int64_t in_h, in_w, k_h, k_w, out_h, out_w;
  int64_t stride[2], pad[2], dil[2];
  int64_t group_rows;   /* rows of col per group: in/G * KH * KW */
  int64_t positions;    /* OH * OW */
} conv_geom;

/* One batch element of x as im2col reads it: [C, H, W] with element strides. */
typedef struct image {
  const float *data;
  int64_t sc, sh, sw;
} image;

/* Batch element n of x (float32, [N, C, H, W] or [N, C, L]) as an image. */
static inline image image_of(const dn_tensor *x, int64_t n) {
  const float *base = DN_F32_AT(x, x->offset + n * x->stride[0]);
  if (x->ndim == 3) return (image){base, x->stride[1], 0, x->stride[2]};
  return (image){base, x->stride[1], x->stride[2], x->stride[3]};
}

/* ow in [*lo, *hi) reads a column inside [0, in_w) for kernel column kj. */
static inline void valid_columns(const conv_geom *g, int64_t kj, int64_t *lo, int64_t *hi) {
  int64_t shift = kj * g->dil[1] - g->pad[1];   /* iw = ow * stride + shift */
  int64_t s = g->stride[1];
  int64_t first = shift >= 0 ? 0 : (-shift + s - 1) / s;
  int64_t last = g->in_w - shift <= 0 ? 0 : (g->in_w - shift + s - 1) / s;   /* first ow past the input */
  if (last > g->out_w) last = g->out_w;
  if (first > last) first = last;
  *lo = first;
  *hi = last;
}

/* One input channel per group (groups = in) and few output channels per
   group: the direct loops. With many (a first layer: 1 -> 32 channels) the
   group's sgemm is wide enough: measured, N 64, 1 -> 32, 28x28, 5x5: 69
   GFLOP/s by im2col against 6 by the direct loops. */
#define MAX_DEPTHWISE_MULTIPLIER 4
static inline bool depthwise(const conv_geom *g) {
  return g->in_ch == g->groups && g->out_ch <= MAX_DEPTHWISE_MULTIPLIER * g->groups;
}

/* The depthwise passes (conv_depthwise.c), for checked sizes with batch,
   channels and kernel not empty: w contiguous [O, 1, KH, KW], grad
   contiguous [N, O, OH, OW], outputs contiguous; op names the caller in a
   message (DN_ENOMEM for scratch). */
dn_status dn_depthwise_forward(const char *op, const conv_geom *g, const dn_tensor *x, const float *w, const float *b,
                               float *y);
dn_status dn_depthwise_dx(const char *op, const conv_geom *g, const float *w, const float *grad, float *dx);
dn_status dn_depthwise_dw(const char *op, const conv_geom *g, const dn_tensor *x, const float *grad, float *dw);

/*
** A stride-1 convolution's dw by shifted products of a channels-last copy
** of the image (conv_dw_shifts.c), for geometries where
** dn_conv_dw_shifts_fits. Per task: xt and gp of the sizes below, zeroed
** once before the task's first image (their padding is never written),
** and the sgemm's pack buffer. dn_conv_dw_shifts adds image x's terms
** (gradient gn, contiguous [O, OH * OW]) to dw, [G][KH][O/G][KW][C/G]
** (first: writes them). dn_conv_dw_shifts_offsets makes the table of xt's
** rows by which our kernels take the products over the valid positions
** alone (*out NULL where products go to OpenBLAS: gp then; false: out of
** memory); pass it, or NULL, as off (with it gp is not read).
*/
#define DN_DW_SHIFTS_MIN_CHANNELS 16
bool dn_conv_dw_shifts_fits(const conv_geom *g);
int64_t dn_conv_dw_shifts_xt_floats(const conv_geom *g);
int64_t dn_conv_dw_shifts_gp_floats(const conv_geom *g);
size_t dn_conv_dw_shifts_pack_floats(const conv_geom *g);
bool dn_conv_dw_shifts_offsets(const conv_geom *g, int32_t **out);
void dn_conv_dw_shifts(const conv_geom *g, image x, const float *gn, float *xt, float *gp, float *dw, bool first,
                       float *pack, const int32_t *off);

/*
** A stride-1 convolution's y and dx as products over shifted rows of a
** zero-padded frame (conv_shifted.c), for geometries where
** dn_conv_shifted_fits (our AVX-512 or AVX2 kernel, stride 1, one group,
** padding within the kernel's span, enough channels: asked for y and dx
** apart). dn_conv_shifted_init packs w for the forward
** or for dx (dx: true) and the frame's offsets, a function of the shapes;
** per task a frame of dn_conv_shifted_frame_floats, zeroed once before its
** first image (its border is never written). dn_conv_shifted_forward writes
** image x's outputs y [O, OH * OW]; dn_conv_shifted_dx image n's dx
** [C, H * W] from its gradient gn, contiguous [O, OH * OW] (both overwrite).
*/
typedef enum dn_conv_shifted_mode {
  DN_SHIFTED_AUTO,     /* where it fits and pays (enough rows of A and of B) */
  DN_SHIFTED_NEVER,    /* im2col always (tests, benchmarks) */
  DN_SHIFTED_ALWAYS,   /* wherever it fits, however small (tests) */
} dn_conv_shifted_mode;
extern dn_conv_shifted_mode dn_conv_shifted_force;

struct dn_gemm_kernel;
struct dn_gemm_rows_map;
typedef struct dn_conv_shifted {
  const struct dn_gemm_kernel *kernel;
  int64_t m, k;                    /* the product's rows and depth */
  int64_t plane, wf, top, left;    /* floats per frame plane, its row length, where the data starts */
  int64_t tiles;                   /* tiles of wide columns */
  float *a;                        /* w (forward) or w^T (dx) packed */
  int32_t *off;                    /* [k]: B row p's offset in the frame */
  struct dn_gemm_rows_map *maps;   /* [tiles] */
} dn_conv_shifted;

bool dn_conv_shifted_fits(const conv_geom *g, bool dx);
int64_t dn_conv_shifted_frame_floats(const conv_geom *g, bool dx);
dn_status dn_conv_shifted_init(dn_conv_shifted *s, const conv_geom *g, const float *w, bool dx, const char *op);
void dn_conv_shifted_free(dn_conv_shifted *s);
void dn_conv_shifted_forward(const dn_conv_shifted *s, const conv_geom *g, image x, float *frame, float *y);
void dn_conv_shifted_dx(const dn_conv_shifted *s, const conv_geom *g, const float *gn, float *frame, float *dx);

/*
** A 3x3 stride-1 convolution's y and dx by Winograd's F(2x2, 3x3)
** (conv_winograd.c), for geometries where dn_conv_winograd_fits (our
** kernels, one group, no dilation, padding up to 2, enough channels and
** outputs: asked for y and dx apart; dn_conv_winograd_force as the shifted
** products' force). dn_conv_winograd_init transforms w for the forward or
** for dx. A task takes its images in order through a cursor: scratch of
** dn_conv_winograd_task_floats, zeroed once before its first image, and
** out, where the task's first image's outputs go ([m][out_h * out_w] an
** image, images one after another). dn_conv_winograd_push transforms the
** next source image (x, or dx's gradient [O, OH, OW]) and writes the
** outputs whose columns are complete; it returns how many of the task's
** images have all their outputs. dn_conv_winograd_flush writes the rest.
*/
extern dn_conv_shifted_mode dn_conv_winograd_force;
typedef struct dn_conv_winograd {
  const struct dn_gemm_kernel *kernel;
  int64_t m, k;                          /* output and input channels of the product */
  int64_t src_h, src_w, out_h, out_w;    /* the source image's and the output's sizes */
  int64_t pad_h, pad_w;                  /* zero rows and columns before the source */
  int64_t tx, wide, plane, cols;         /* tiles per row, + 1 (a phase plane's row), floats per phase plane,
                                            columns per image */
  int64_t ring, rs;                      /* V's columns (whole tiles of the kernel's nr), floats per V row */
  float *u;                              /* [16][m in panels of mr][k] transformed weight */
  int32_t *off;                          /* [k]: V row p's offset */
  int32_t *place;                        /* [src_h * src_w]: a source value's place in its channel's planes */
  struct dn_gemm_rows_map *full;         /* every lane kept in place */
} dn_conv_winograd;

typedef struct dn_conv_winograd_cursor {
  float *scratch;           /* the task's, zeroed before its first image */
  float *out;               /* the task's first image's outputs */
  int64_t images, done;     /* images pushed, columns whose outputs are written */
} dn_conv_winograd_cursor;

bool dn_conv_winograd_fits(const conv_geom *g, bool dx);
dn_status dn_conv_winograd_init(dn_conv_winograd *s, const conv_geom *g, const float *w, bool dx, const char *op);
void dn_conv_winograd_free(dn_conv_winograd *s);
int64_t dn_conv_winograd_task_floats(const dn_conv_winograd *s);
int64_t dn_conv_winograd_push(const dn_conv_winograd *s, dn_conv_winograd_cursor *cur, image src);
void dn_conv_winograd_flush(const dn_conv_winograd *s, dn_conv_winograd_cursor *cur);

/*
** dw by the same transforms, for geometries where dn_conv_winograd_dw_fits
** (as dn_conv_winograd_fits, enough input and output channels):
** dn_conv_winograd_dw_init sets the sizes (no weight). Per task scratch of
** dn_conv_winograd_dw_task_floats, zeroed once before its first image; per
** part of the batch dn_conv_winograd_dw_part_floats floats of transformed
** weight gradient. dn_conv_winograd_dw adds image x's terms (gradient g,
** contiguous [O, OH * OW]) to its part (first: writes them);
** dn_conv_winograd_dw_finish adds the count parts in order and writes dw
** [O, C, 3, 3] (a parallel pass; call it outside the tasks).
*/
bool dn_conv_winograd_dw_fits(const conv_geom *g);
dn_status dn_conv_winograd_dw_init(dn_conv_winograd *s, const conv_geom *g, const char *op);
int64_t dn_conv_winograd_dw_task_floats(const dn_conv_winograd *s);
int64_t dn_conv_winograd_dw_part_floats(const dn_conv_winograd *s);
void dn_conv_winograd_dw(const dn_conv_winograd *s, image x, const float *g, float *scratch, float *part, bool first);
void dn_conv_winograd_dw_finish(const dn_conv_winograd *s, const float *parts, int64_t count, float *dw);

#endif
