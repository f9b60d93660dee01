/*
** A stride-1 convolution's y and dx as products over shifted rows (gemm.h's
** dn_gemm_rows), without im2col and without col2im.
**
** Forward: the image is copied into a frame, each channel a plane of
** Hf x Wf = (H + 2 ph) x (W + pw) floats whose border stays zero (each
** row's pw zeros serve as the previous row's right padding too). Output
** (oh, ow) of kernel offset (ki, kj) reads the plane at (oh + ki dh) * Wf +
** ow + kj dw, that is at t + shift(ki, kj) for the "wide" position t = oh *
** Wf + ow: row (c, ki, kj) of im2col's col is the frame itself from c's
** plane + shift(ki, kj) on, read in place. So y = w @ col is one product
** whose B rows are offsets into the frame; wide positions with ow >= OW
** (Wf - OW of each row) are computed and dropped, and the kept ones are
** stored compacted into y. This replaces the copy of every receptive field
** into the sgemm's panels (the 32 -> 64 layer on 14x14 maps: 17% of its
** forward) and the ragged last panel of 4 positions in 32 (6%), for 15/14
** of the multiply-adds.
**
** dx is the same product the other way: dx[c, ih, iw] = sum over (o, ki,
** kj) of w[o, c, ki, kj] g[o, ih - ki dh + ph, iw - kj dw + pw]. With g
** copied into a frame of Hg x Wg = (H + (KH - 1) dh) x (W + (KW - 1) dw)
** floats (less the zero columns a row can share with the next, as the
** forward's), row oh of g at row oh + (KH - 1) dh - ph (and likewise columns),
** the gradient read for (ih, iw) is at wide position t = ih * Wg + iw plus
** ((KH - 1 - ki) dh) * Wg + (KW - 1 - kj) dw, zero where g has no output:
** dx = w^T @ (B rows at those offsets), k = O * KH * KW. col2im's adds,
** dcol [C KH KW, positions] and packing g go away.
**
** Each element is one FMA chain over its k products in a fixed order (w's
** (c, ki, kj) forward, (o, ki, kj) for dx), a function of the shapes alone,
** so the bits do not depend on the thread count; they differ from the
** im2col path's, whose k blocks are summed separately. Our AVX-512 kernel
** stores a tile's kept columns by a masked compress, the AVX2 kernel by a
** lane permute and a masked store; OpenBLAS keeps im2col.
*/
#include <string.h>

#include "blas.h"
#include "conv_geom.h"
#include "dropnet/alloc.h"
#include "gemm.h"

dn_conv_shifted_mode dn_conv_shifted_force = DN_SHIFTED_AUTO;

#ifdef DN_HAVE_GEMM

/* Frames past this many floats per task (a large image) take im2col, which works in slabs. */
#define MAX_FRAME_FLOATS ((int64_t)1 << 20)
/* Below these the im2col path is as fast or faster (one core, batch 128,
   forward and dx alone, shifted against im2col, ms): a product's rows
   fill the kernel's tile, mr rows (AVX-512, 8 rows: dx of 2 -> 16 and
   3 -> 16 channels, 3x3: 1.2 -> 2.2, 2.1 -> 3.0; 4 -> 16: 2.0 -> 2.4, 4 ->
   8: 1.4 -> 1.1; AVX2, 4 rows: 2 -> 16 1.25 -> 1.50, 4 -> 16 2.1 -> 1.5,
   4 -> 8 1.3 -> 0.7), and its depth gives the stores of a tile enough
   products (AVX-512: forward of 1 -> 32 at 28x28, k = 9: 1.1 -> 2.0; 2 ->
   16, k = 18: 0.87 -> 0.78; 3 -> 16: 1.52 -> 1.48; AVX2: 1 -> 32 1.34 ->
   1.23). Wider, AVX-512: 32 -> 64 at 14x14 forward 8.4 -> 8.3, dx 9.4 ->
   8.5; 8 -> 16 at 28x28 3.0 -> 2.4, 3.8 -> 2.6; 64 -> 8 at 14x14 4.6 ->
   3.0, 6.1 -> 2.3; 5x5 16 -> 32 6.5 -> 6.0, 8.1 -> 6.2; 1x1 64 -> 64 2.9
   -> 3.1, 3.5 -> 2.9. AVX2 (DROPNET_SGEMM=avx2 on the same core): 32 -> 64
   11.4 -> 10.1, 10.9 -> 10.3; 8 -> 16 4.4 -> 2.6, 3.8 -> 2.6; 64 -> 8 7.3
   -> 2.8, 5.7 -> 2.7; 5x5 16 -> 32 9.5 -> 7.4, 8.0 -> 7.4. */
#define MIN_K 16

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

/* The frame's sizes for the forward (dx false) or dx: plane width and height, and where the data starts.
   A row's zero columns on the right are the next row's on the left: a read past the end of a row lands
   in the next one's left zeros, so the frame keeps min(left, right) fewer columns than the padded
   plane has. That drops a junk wide column per row (3x3, padding 1 on 14x14 maps: 209 wide columns
   instead of 222, 9 tiles of 24 instead of 10) for the same products in the same order. */
static void frame_dims(const conv_geom *g, bool dx, int64_t *wf, int64_t *hf, int64_t *top, int64_t *left) {
  int64_t data_w;
  if (dx) {
    *wf = g->in_w + (g->k_w - 1) * g->dil[1];
    *hf = g->in_h + (g->k_h - 1) * g->dil[0];
    *top = (g->k_h - 1) * g->dil[0] - g->pad[0];
    *left = (g->k_w - 1) * g->dil[1] - g->pad[1];
    data_w = g->out_w;
  } else {
    *wf = g->in_w + 2 * g->pad[1];
    *hf = g->in_h + 2 * g->pad[0];
    *top = g->pad[0];
    *left = g->pad[1];
    data_w = g->in_w;
  }
  int64_t right = *wf - *left - data_w;
  *wf -= *left < right ? *left : right;
}

/* The product's output sizes: y's for the forward, x's for dx. */
static void out_dims(const conv_geom *g, bool dx, int64_t *oh, int64_t *ow) {
  *oh = dx ? g->in_h : g->out_h;
  *ow = dx ? g->in_w : g->out_w;
}

/* Floats per plane: the plane, and as far as the last tile of wide columns reads from its furthest row. */
static int64_t plane_floats(const conv_geom *g, const dn_gemm_kernel *kern, bool dx) {
  int64_t wf, hf, top, left, oh, ow;
  frame_dims(g, dx, &wf, &hf, &top, &left);
  out_dims(g, dx, &oh, &ow);
  int64_t reach = (g->k_h - 1) * g->dil[0] * wf + (g->k_w - 1) * g->dil[1] +
                  dn_gemm_rows_tiles(kern, wf, oh, ow) * kern->nr;
  return round16(hf * wf > reach ? hf * wf : reach);
}

bool dn_conv_shifted_fits(const conv_geom *g, bool dx) {
  const dn_gemm_kernel *kern = dn_blas_rows_kernel();
  if (!kern || dn_conv_shifted_force == DN_SHIFTED_NEVER) return false;
  /* stride 1, one group; padding within the kernel's span (dx's frame holds all of g) */
  if (g->stride[0] != 1 || g->stride[1] != 1 || g->groups != 1 || g->in_ch < 1 || g->out_ch < 1 ||
      g->pad[0] > (g->k_h - 1) * g->dil[0] || g->pad[1] > (g->k_w - 1) * g->dil[1])
    return false;
  int64_t m = dx ? g->in_ch : g->out_ch, k = (dx ? g->out_ch : g->in_ch) * g->k_h * g->k_w;
  if (dn_conv_shifted_force != DN_SHIFTED_ALWAYS && (m < kern->mr || k < MIN_K)) return false;
  return (dx ? g->out_ch : g->in_ch) * plane_floats(g, kern, dx) <= MAX_FRAME_FLOATS;
}

int64_t dn_conv_shifted_frame_floats(const conv_geom *g, bool dx) {
  const dn_gemm_kernel *kern = dn_blas_rows_kernel();
  return (dx ? g->out_ch : g->in_ch) * plane_floats(g, kern, dx);
}

dn_status dn_conv_shifted_init(dn_conv_shifted *s, const conv_geom *g, const float *w, bool dx, const char *op) {
  const dn_gemm_kernel *kern = dn_blas_rows_kernel();
  int64_t kk = g->k_h * g->k_w, wf, hf, top, left, oh, ow;
  frame_dims(g, dx, &wf, &hf, &top, &left);
  out_dims(g, dx, &oh, &ow);
  *s = (dn_conv_shifted){.kernel = kern, .m = dx ? g->in_ch : g->out_ch, .k = (dx ? g->out_ch : g->in_ch) * kk,
                         .plane = plane_floats(g, kern, dx), .wf = wf, .top = top, .left = left,
                         .tiles = dn_gemm_rows_tiles(kern, wf, oh, ow)};
  int64_t mr = kern->mr, panels = (s->m + mr - 1) / mr;
  s->a = dn_alloc((size_t)(panels * mr * s->k) * sizeof *s->a);
  s->off = dn_alloc((size_t)s->k * sizeof *s->off);
  s->maps = dn_alloc((size_t)s->tiles * sizeof *s->maps);
  if (!s->a || !s->off || !s->maps) {
    dn_conv_shifted_free(s);
    return dn_fail(DN_ENOMEM, "%s: out of memory for its shifted products' weight and offsets", op);
  }
  /* row p of B: (channel of the frame, ki, kj) in w's order, forward (c, ki, kj), dx (o, ki, kj) */
  for (int64_t p = 0; p < s->k; p++) {
    int64_t ch = p / kk, ki = p % kk / g->k_w, kj = p % g->k_w;
    if (dx) ki = g->k_h - 1 - ki, kj = g->k_w - 1 - kj;
    s->off[p] = (int32_t)(ch * s->plane + ki * g->dil[0] * wf + kj * g->dil[1]);
  }
  dn_gemm_rows_maps(kern, wf, oh, ow, s->maps);
  /* A: panels of mr rows, k x mr each; forward A = w [O, C KH KW], dx A[c, (o, kk)] = w[o, c, kk] */
  for (int64_t q = 0; q < panels; q++)
    for (int64_t p = 0; p < s->k; p++)
      for (int64_t r = 0; r < mr; r++) {
        int64_t row = q * mr + r;
        float v = 0.0f;
        if (row < s->m) v = dx ? w[(p / kk * g->in_ch + row) * kk + p % kk] : w[row * s->k + p];
        s->a[(q * s->k + p) * mr + r] = v;
      }
  return DN_OK;
}

void dn_conv_shifted_free(dn_conv_shifted *s) {
  dn_free(s->a);
  dn_free(s->off);
  dn_free(s->maps);
  s->a = NULL;
  s->off = NULL;
  s->maps = NULL;
}

void dn_conv_shifted_forward(const dn_conv_shifted *s, const conv_geom *g, image x, float *frame, float *y) {
  for (int64_t c = 0; c < g->in_ch; c++)
    for (int64_t h = 0; h < g->in_h; h++) {
      const float *src = x.data + c * x.sc + h * x.sh;
      float *d = frame + c * s->plane + (h + s->top) * s->wf + s->left;
      if (x.sw == 1) memcpy(d, src, (size_t)g->in_w * sizeof *d);
      else for (int64_t w = 0; w < g->in_w; w++) d[w] = src[w * x.sw];
    }
  dn_gemm_rows(s->kernel, s->m, s->k, s->a, frame, s->off, s->maps, s->tiles, y, g->positions);
}

void dn_conv_shifted_dx(const dn_conv_shifted *s, const conv_geom *g, const float *gn, float *frame, float *dx) {
  for (int64_t o = 0; o < g->out_ch; o++)
    for (int64_t h = 0; h < g->out_h; h++)
      memcpy(frame + o * s->plane + (h + s->top) * s->wf + s->left, gn + (o * g->out_h + h) * g->out_w,
             (size_t)g->out_w * sizeof *frame);
  dn_gemm_rows(s->kernel, s->m, s->k, s->a, frame, s->off, s->maps, s->tiles, dx, g->in_h * g->in_w);
}

#else   /* no kernel of ours on this architecture: im2col always */

bool dn_conv_shifted_fits(const conv_geom *g, bool dx) {
  (void)g, (void)dx;
  return false;
}

int64_t dn_conv_shifted_frame_floats(const conv_geom *g, bool dx) {
  (void)g, (void)dx;
  return 0;
}

dn_status dn_conv_shifted_init(dn_conv_shifted *s, const conv_geom *g, const float *w, bool dx, const char *op) {
  (void)g, (void)w, (void)dx;
  *s = (dn_conv_shifted){0};
  return dn_fail(DN_EINVAL, "%s: no shifted products on this architecture", op);
}

void dn_conv_shifted_free(dn_conv_shifted *s) { (void)s; }

void dn_conv_shifted_forward(const dn_conv_shifted *s, const conv_geom *g, image x, float *frame, float *y) {
  (void)s, (void)g, (void)x, (void)frame, (void)y;
}

void dn_conv_shifted_dx(const dn_conv_shifted *s, const conv_geom *g, const float *gn, float *frame, float *dx) {
  (void)s, (void)g, (void)gn, (void)frame, (void)dx;
}

#endif
