/*
** A stride-1 convolution's weight gradient without im2col: one image's
**   dw[o, c, ki, kj] = sum over positions p of g[o, p] * x[c, p + offset(ki, kj)]
** as KH * KW products of a channels-last copy of the image.
**
** The image is copied once into xt [Hp * Wp + slack, C] (channels last,
** its padding rows and columns zero: Hp = H + 2 * pad, Wp = W + 2 * pad),
** and the gradient into gp [O, OH * Wp] (each output row widened to Wp with
** zeros). Then position k = oh * Wp + ow of gp reads xt row k + ki * dil *
** Wp + kj * dil for kernel offset (ki, kj): the offset's B operand is xt
** itself from that row on, [OH * Wp, C] with row stride C, and
**   dw_q [O/G, C/G] (+)= gp_g [O/G, OH * Wp] @ xt_q,g [OH * Wp, C/G]
** is a plain sgemm whose B is read in place. The im2col it replaces wrote
** KH * KW copies of the image, [C * KH * KW, OH * OW], which the sgemm then
** packed transposed (a third of the 32 -> 64 layer's backward beside the
** products). The widened rows cost (Wp - OW) / OW more multiply-adds (2/14
** at 14x14 with padding 1), whose gradient is 0: each element's chain of
** FMAs is the im2col product's with exact zeros added, the same bits for
** finite inputs. xt's rows past a row's end wrap to the next row, and the
** last rows read the zeroed slack: only zeros of gp meet them.
**
** dw_q goes to a part buffer in [G][KH][O/G][KW][C/G] order; conv.c's sum
** of the parts reads it back into [O, C/G, KH, KW].
**
** With our own sgemm kernels, B's rows need not be Wp apart: the products
** take gn itself, [O, OH * OW], over the valid positions only, B's row for
** position (oh, ow) at xt row oh * Wp + ow (+ the offset) through a table
** (dn_conv_dw_shifts_offsets). The same terms in the same order without the
** widening's zeros: the same bits for finite inputs, (Wp - OW) / OW fewer
** multiply-adds, no widened copy of the gradient, and an infinite input no
** longer meets a widened zero.
**
** Through the table, with one group and no column dilation, a kernel row's
** KW offsets are one product: B's row for position k is xt's rows k .. k +
** KW - 1, KW * C contiguous values, so dw_ki [O, KW * C] = gn @ that (a
** BLAS refuses such overlapping rows: ldb < n). The same terms per element
** in the same order, so the same bits; the columns come in one piece of
** KW * C (96 for 32 channels and 3x3) instead of KW pieces of C, which on
** AVX2's 24-column tiles was 32 = 24 + a tile of 8 computed as 24: the 32
** -> 64 layer's dw on one core 16.4 -> 10.3 ms (AVX2 build, this Xeon).
** Only then: where C is a whole number of the kernel's tiles (AVX-512's
** 32) the wider C's stores made model c's step 1.2% slower.
*/
#include <stdint.h>
#include <string.h>

#include "blas.h"
#include "conv_geom.h"
#include "dropnet/alloc.h"

/* The padded plane's width and height, and gp's row length (OH * Wp). */
static int64_t padded_w(const conv_geom *g) { return g->in_w + 2 * g->pad[1]; }
static int64_t padded_h(const conv_geom *g) { return g->in_h + 2 * g->pad[0]; }

bool dn_conv_dw_shifts_fits(const conv_geom *g) {
  /* stride 1 (the shifts), and enough channels per group for the products' columns */
  return g->stride[0] == 1 && g->stride[1] == 1 && g->in_ch / g->groups >= DN_DW_SHIFTS_MIN_CHANNELS &&
         !depthwise(g);
}

int64_t dn_conv_dw_shifts_xt_floats(const conv_geom *g) {
  int64_t slack = (g->k_w - 1) * g->dil[1] + 1;   /* the last row's reads past its end */
  return (padded_h(g) * padded_w(g) + slack) * g->in_ch;
}

int64_t dn_conv_dw_shifts_gp_floats(const conv_geom *g) { return g->out_ch * g->out_h * padded_w(g); }

/* xt's interior = image x, channels last; its padding untouched (zero). */
static void channels_last(const conv_geom *g, image x, float *xt) {
  int64_t c_count = g->in_ch, wp = padded_w(g);
  for (int64_t c = 0; c < c_count; c++)
    for (int64_t h = 0; h < g->in_h; h++) {
      const float *src = x.data + c * x.sc + h * x.sh;
      float *d = xt + ((h + g->pad[0]) * wp + g->pad[1]) * c_count + c;
      for (int64_t w = 0; w < g->in_w; w++) d[w * c_count] = src[w * x.sw];
    }
}

/* gp's rows = gn's (contiguous [O, OH * OW]) widened to Wp; the widening untouched (zero). */
static void widened_rows(const conv_geom *g, const float *gn, float *gp) {
  int64_t wp = padded_w(g);
  for (int64_t r = 0; r < g->out_ch * g->out_h; r++)
    memcpy(gp + r * wp, gn + r * g->out_w, (size_t)g->out_w * sizeof *gp);
}

bool dn_conv_dw_shifts_offsets(const conv_geom *g, int32_t **out) {
  *out = NULL;
  int64_t wp = padded_w(g);
  if (!dn_blas_here_offsets_available() || dn_conv_dw_shifts_xt_floats(g) > INT32_MAX) return true;
  if (!(*out = dn_alloc((size_t)g->positions * sizeof **out))) return false;
  for (int64_t oh = 0; oh < g->out_h; oh++)
    for (int64_t ow = 0; ow < g->out_w; ow++) (*out)[oh * g->out_w + ow] = (int32_t)((oh * wp + ow) * g->in_ch);
  return true;
}

/* A kernel row's offsets as one product (its KW shifts' columns adjacent in
   xt's rows) where the channels leave a ragged column tile; through the
   table of rows only: a BLAS refuses B's rows overlapping (ldb < n). */
static bool whole_rows(const conv_geom *g, const int32_t *off) {
  int mr, nr;
  dn_blas_here_tile(&mr, &nr);
  return off && g->groups == 1 && g->dil[1] == 1 && g->in_ch % nr != 0;
}

void dn_conv_dw_shifts(const conv_geom *g, image x, const float *gn, float *xt, float *gp, float *dw, bool first,
                       float *pack, const int32_t *off) {
  int64_t og = g->out_ch / g->groups, cg = g->in_ch / g->groups, wp = padded_w(g), k = g->out_h * wp;
  int64_t kw = g->k_w, pieces = whole_rows(g, off) ? 1 : kw, n = kw / pieces * cg, ldc = kw * cg;
  float beta = first ? 0.0f : 1.0f;
  channels_last(g, x, xt);
  if (!off) widened_rows(g, gn, gp);
  for (int64_t grp = 0; grp < g->groups; grp++)
    for (int64_t ki = 0; ki < g->k_h; ki++)
      for (int64_t kj = 0; kj < kw; kj += kw / pieces) {
        const float *b = xt + (ki * g->dil[0] * wp + kj * g->dil[1]) * g->in_ch + grp * cg;
        float *c = dw + (grp * g->k_h + ki) * og * ldc + kj * cg;
        if (off)
          dn_blas_sgemm_here_offsets(false, og, n, g->positions, 1.0f, gn + grp * og * g->positions, g->positions,
                                     b, off, beta, c, ldc);
        else
          dn_blas_sgemm_here(false, false, og, n, k, 1.0f, gp + grp * og * k, k, b, g->in_ch, beta, c, ldc, pack,
                             NULL);
      }
}

size_t dn_conv_dw_shifts_pack_floats(const conv_geom *g) {
  return dn_blas_here_floats(g->out_ch / g->groups, g->in_ch / g->groups, g->out_h * padded_w(g));
}
