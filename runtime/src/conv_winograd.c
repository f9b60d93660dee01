/*
** A 3x3 stride-1 convolution's y, dx and dw by Winograd's F(2x2, 3x3) (Lavin
** and Gray 2016): each 2x2 block of outputs (a tile) from its 4x4 patch of
** the zero-padded input d as Y = A^T [(G w G^T) . (B^T d B)] A. Across
** channels the elementwise product becomes 16 products, one per position
** xi of the 4x4 transformed tile: M_xi [m, tiles] = U_xi [m, k] @ V_xi [k,
** tiles], U = G w G^T per (output, input) channel pair, V = B^T d B per
** (input channel, tile). 16 k multiply-adds per tile and output channel
** instead of the direct 36 k: 2.25x fewer (the 32 -> 64 layer on 14x14
** maps, with the columns this layout wastes: 1.8M against the shifted
** products' 3.9M per image). The transforms are additions only.
**
** dx is the same computation on the gradient: dx[c] = sum over o of g[o]
** correlated with w[o, c] rotated by 180 degrees, padded by 2 - padding.
**
** Layout: an image's padded plane is stored as four phase planes (even or
** odd row, even or odd column), each (TY + 2) x (TX + 1): the 16 values of
** tile (a, b)'s patch, at rows 2a..2a+3 and columns 2b..2b+3, are then each
** at one fixed offset from a * (TX + 1) + b in one of the phase planes, and
** the input transform takes 8 tiles of a row at a time as vector adds. A
** task's images follow one another as the columns of the 16 products (image
** i's tile (a, b) is column i * cols + a * TX + b: no column is wasted, not
** even at the end of a row of tiles), held in a ring of V columns: as soon
** as nr columns are in, gemm.h's products over rows (every lane kept)
** compute that tile of columns, position by position (V's tile of one
** position stays in L1 for all output channels), and the output transform
** writes the tile's outputs into y (or dx), a run of tiles of one row at a
** time. So V takes a few hundred KB whatever the batch, and no columns are
** wasted to round images to tiles. (mr channels at a time for all 16
** positions, the products then in L1, measured no faster.) Columns used to
** be numbered a * (TX + 1) + b, one junk tile a row (an eighth of the
** products on 14x14 maps); the 32 -> 64 layer's forward and backward took
** 0.83 and 0.86 of their time without it (AVX2, 2 threads, Zen 5, 8
** alternated pairs each).
**
** Where the time goes (AVX2, the small CNN's training step, 2 threads,
** perf): the 16 products 18%, the copy into the phase planes and the input
** transform 5.4%, the output transform 2.9% and its stores 3.7% (they wait
** on y's and dx's new lines). With AVX-512's twice faster products the
** transforms weigh twice as much: it takes these products where both sides
** have 32 channels or more (dn_conv_winograd_fits).
**
** dw (below, "dw") takes the same input transform and the gradient's dM
** into 16 direct-kernel products per image, where the layer has enough
** channels and tiles (dn_conv_winograd_dw_fits).
**
** Bits: an output is the same additions of the same products whatever
** images share its products or which thread computes it, so they do not
** depend on the thread count; they differ from the direct paths' (the
** rounding of a different sum: the tests compare within 1e-4) and between
** the AVX-512 and AVX2 kernels, as the direct paths' already do.
*/
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>   /* SSE2, in every x86-64: the phase planes' split of a row; AVX2 or AVX-512 where the build
                            has them: the outputs' interleave */
#endif

#include "blas.h"
#include "conv_geom.h"
#include "dropnet/alloc.h"
#include "gemm.h"
#include "store_first.h"

dn_conv_shifted_mode dn_conv_winograd_force = DN_SHIFTED_AUTO;

#ifdef DN_HAVE_GEMM

/* The transforms' 16 positions, xi = 4 i + j */
enum { XI = 16 };
/* A ring of transformed inputs past this many floats (a large image): the shifted products or im2col. */
#define MAX_V_FLOATS ((int64_t)1 << 20)
/* Fewer input channels than this: the shifted products, the transforms weigh too much against the products
   (AVX2, 2 threads, Zen 5, forward / backward ms, shifted -> Winograd: 16 -> 16 at 32x32, batch 64: 2.0 -> 2.6-2.9,
   4.2-4.4 -> 4.9-5.0; 16 -> 32 at 56x56, batch 16: 3.0-3.1 -> 3.2, 6.2 -> 6.3-6.4; with more: 64 -> 64 at 28x28,
   batch 32: 10.7 -> 8.5-8.6, 22.8 -> 19.6-20.3; 128 -> 128 at 7x7, batch 128: 14.9-15.2 -> 13.0-13.1, 29-30 ->
   27; 64 -> 32 at 56x56, batch 8: 5.7 -> 4.5-4.8, 12.8 -> 11.4-11.6). */
#define MIN_K 32

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

/* The product's sizes: source (x, or dx's g), output (y, or dx), the source's zero rows and columns before it. */
static void sizes(const conv_geom *g, bool dx, int64_t *src_h, int64_t *src_w, int64_t *out_h, int64_t *out_w,
                  int64_t *pad_h, int64_t *pad_w) {
  *src_h = dx ? g->out_h : g->in_h;
  *src_w = dx ? g->out_w : g->in_w;
  *out_h = dx ? g->in_h : g->out_h;
  *out_w = dx ? g->in_w : g->out_w;
  *pad_h = dx ? 2 - g->pad[0] : g->pad[0];
  *pad_w = dx ? 2 - g->pad[1] : g->pad[1];
}

/* The input transform's vectors: VL tiles of a row at a time, stored whole (the lanes past the row's end land
   where the next row's tiles, or free columns, go). */
enum { VL = 8 };
typedef float vf __attribute__((vector_size(VL * sizeof(float))));

/* V's ring: room for an image's columns next to a tile's worth not yet computed and a vector's spill, in whole
   tiles; its rows are VL floats longer (the spill at the ring's end). */
static int64_t ring_of(int64_t cols, int64_t nr) { return (nr - 1 + cols + VL - 1 + nr - 1) / nr * nr; }

/* A 3x3 stride-1 convolution with one group, no dilation, padding up to 2 and something to compute. */
static bool winograd_shape(const conv_geom *g) {
  return g->k_h == 3 && g->k_w == 3 && g->stride[0] == 1 && g->stride[1] == 1 && g->dil[0] == 1 && g->dil[1] == 1 &&
         g->groups == 1 && g->in_ch >= 1 && g->out_ch >= 1 && g->pad[0] <= 2 && g->pad[1] <= 2 && g->out_h >= 1 &&
         g->out_w >= 1;
}

bool dn_conv_winograd_fits(const conv_geom *g, bool dx) {
  const dn_gemm_kernel *kern = dn_blas_rows_kernel();
  if (!kern || dn_conv_winograd_force == DN_SHIFTED_NEVER || !winograd_shape(g)) return false;
  int64_t m = dx ? g->in_ch : g->out_ch, k = dx ? g->out_ch : g->in_ch;
  int64_t src_h, src_w, out_h, out_w, pad_h, pad_w;
  sizes(g, dx, &src_h, &src_w, &out_h, &out_w, &pad_h, &pad_w);
  /* With AVX-512's twice wider products, only where m is 32 or more too: the transforms weigh more against
     them (2 threads of a Zen 5, shifted -> Winograd, forward / backward ms, 3 runs: 32 -> 64 at 14x14, batch
     128: 3.1-3.4 -> 2.5-2.6 / 6.0-6.4 -> 5.5-5.8; 64 -> 64 at 28x28, batch 32: 5.3-6.4 -> 4.0-4.2 / 11.6-14.0
     -> 10.2-10.4; 128 -> 128 at 7x7: 6.4-6.7 -> 5.9-6.2 / 13.9-14.5 -> 13.3-13.8; 64 -> 32 at 56x56, batch 8,
     about even; but 16 -> 32's dx (m = 16) at 56x56, batch 16: backward 3.7-4.4 -> 4.1-4.5). A tile's 4
     outputs: too many wasted below 4 x 4 outputs. */
  bool avx512 = kern != &dn_gemm_kernel_avx2;
  if (dn_conv_winograd_force != DN_SHIFTED_ALWAYS &&
      (m < (avx512 ? MIN_K : kern->mr) || k < MIN_K || out_h < 4 || out_w < 4))
    return false;
  int64_t cols = (out_h + 1) / 2 * ((out_w + 1) / 2);
  return XI * k * (ring_of(cols, kern->nr) + VL) <= MAX_V_FLOATS && m * k <= MAX_V_FLOATS;
}

/* s's sizes and its table of places (dx: the source is the gradient); false: out of memory. */
static bool geometry(dn_conv_winograd *s, const conv_geom *g, bool dx) {
  const dn_gemm_kernel *kern = dn_blas_rows_kernel();
  int64_t src_h, src_w, out_h, out_w, pad_h, pad_w;
  sizes(g, dx, &src_h, &src_w, &out_h, &out_w, &pad_h, &pad_w);
  int64_t ty = (out_h + 1) / 2, tx = (out_w + 1) / 2, wide = tx + 1, cols = ty * tx, nr = kern->nr;
  *s = (dn_conv_winograd){.kernel = kern, .m = dx ? g->in_ch : g->out_ch, .k = dx ? g->out_ch : g->in_ch,
                          .src_h = src_h, .src_w = src_w, .out_h = out_h, .out_w = out_w, .pad_h = pad_h,
                          .pad_w = pad_w, .tx = tx, .wide = wide, .plane = round16((ty + 2) * wide + VL),
                          .cols = cols, .ring = ring_of(cols, nr), .rs = ring_of(cols, nr) + VL};
  if (!(s->place = dn_alloc((size_t)(src_h * src_w) * sizeof *s->place))) return false;
  for (int64_t h = 0; h < src_h; h++)
    for (int64_t x = 0; x < src_w; x++) {
      int64_t fr = h + pad_h, fc = x + pad_w;
      s->place[h * src_w + x] = (int32_t)((2 * (fr % 2) + fc % 2) * s->plane + fr / 2 * wide + fc / 2);
    }
  return true;
}

dn_status dn_conv_winograd_init(dn_conv_winograd *s, const conv_geom *g, const float *w, bool dx, const char *op) {
  bool placed = geometry(s, g, dx);
  const dn_gemm_kernel *kern = s->kernel;
  int64_t mr = kern->mr, panels = (s->m + mr - 1) / mr;
  s->u = dn_alloc((size_t)(XI * panels * mr * s->k) * sizeof *s->u);
  s->off = dn_alloc((size_t)s->k * sizeof *s->off);
  s->full = dn_alloc(sizeof *s->full);
  if (!placed || !s->u || !s->off || !s->full) {
    dn_conv_winograd_free(s);
    return dn_fail(DN_ENOMEM, "%s: out of memory for its Winograd products' weight and tables", op);
  }
  for (int64_t p = 0; p < s->k; p++) s->off[p] = (int32_t)(p * s->rs);
  /* every lane kept, in place */
  int lanes = kern->rows_lanes;
  *s->full = (dn_gemm_rows_map){0};
  for (int v = 0; v < kern->nr / lanes; v++) {
    s->full->at[v] = v * lanes;
    s->full->keep[v] = lanes >= 32 ? 0xffffffffu : (1u << lanes) - 1;
    for (int l = 0; lanes <= 8 && l < lanes; l++) s->full->pick[v] |= (uint32_t)l << (4 * l);
  }
  /* U = G w G^T, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], into panels of mr rows per xi:
     u[((xi * panels + q) * k + p) * mr + r] = U_xi[q mr + r, p]. dx: w[o, c] rotated, m = C, k = O. */
  static const double gm[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  memset(s->u, 0, (size_t)(XI * panels * mr * s->k) * sizeof *s->u);
  for (int64_t row = 0; row < s->m; row++)
    for (int64_t p = 0; p < s->k; p++) {
      double f[3][3], t[4][3];
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
          f[i][j] = dx ? w[((p * g->in_ch + row) * 3 + 2 - i) * 3 + 2 - j] : w[((row * g->in_ch + p) * 3 + i) * 3 + j];
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) t[i][j] = gm[i][0] * f[0][j] + gm[i][1] * f[1][j] + gm[i][2] * f[2][j];
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
          double v = t[i][0] * gm[j][0] + t[i][1] * gm[j][1] + t[i][2] * gm[j][2];
          s->u[((((int64_t)(4 * i + j) * panels + row / mr) * s->k + p) * mr + row % mr)] = (float)v;
        }
    }
  return DN_OK;
}

void dn_conv_winograd_free(dn_conv_winograd *s) {
  dn_free(s->u);
  dn_free(s->off);
  dn_free(s->full);
  dn_free(s->place);
  s->place = NULL;
  s->u = NULL;
  s->off = NULL;
  s->full = NULL;
}

/* Output channels rounded up to the transforms' vectors: dM's rows and the gradient's transposed rows. */
static int64_t dw_row(const dn_conv_winograd *s) { return (s->m + VL - 1) / VL * VL; }

/* A task's scratch: the phase planes of one image, V_GAP floats, V's ring [16][k][rs], then for y and dx a
   tile's M [m][16][nr] (mt) and its outputs [m][4][nr] (yt), for dw (below) the gradient transposed (gt) and
   its transform dM (dm). V_GAP takes the stray lanes before V's first row (load) and keeps V 64-byte aligned. */
enum { V_GAP = 16 };
typedef struct scratch {
  float *planes, *v;
  float *mt, *yt;   /* y and dx */
  float *gt, *dm;   /* dw */
} scratch;

static scratch scratch_of(const dn_conv_winograd *s, float *base, bool dw) {
  scratch b = {0};
  b.planes = base;
  b.v = b.planes + 4 * s->k * s->plane + V_GAP;
  if (dw) {
    b.gt = b.v + XI * s->k * s->rs;
    b.dm = b.gt + round16((s->out_h * s->out_w + 1) * dw_row(s));
  } else {
    b.mt = b.v + XI * s->k * s->rs;
    b.yt = b.mt + XI * round16(s->m) * s->kernel->nr;
  }
  return b;
}

int64_t dn_conv_winograd_task_floats(const dn_conv_winograd *s) {
  int64_t nr = s->kernel->nr;
  return 4 * s->k * s->plane + V_GAP + XI * s->k * s->rs + XI * round16(s->m) * nr + 4 * s->m * nr;
}

static inline vf vload(const float *p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], of VL tiles of a row: d[r][q], the patch's value
   (r, q) of each, is phase plane (r % 2, q % 2) of the channel's planes pc from u + (r / 2) wide + q / 2 on (u
   the first tile's place in the planes). The sums are exact sign flips and the adds of the 4 x 4 transform,
   row by row of B^T d, then by columns. Position xi's VL values go to dst + xi * vs, each row's four as soon as
   they are made (all sixteen held at once spilled the addresses' registers). */
static DN_ALWAYS_INLINE void transform_tiles(const float *pc, int64_t plane, int64_t wide, int64_t u, float *dst,
                                             int64_t vs) {
  vf d[4][4];
#pragma GCC unroll 4
  for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) d[r][q] = vload(pc + (2 * (r % 2) + q % 2) * plane + u + r / 2 * wide + q / 2);
  /* row i of B^T d: d[a] + sign d[b] */
  static const int ra[4] = {0, 1, 2, 1}, rb[4] = {2, 2, 1, 3};
  static const float sign[4] = {-1.0f, 1.0f, -1.0f, -1.0f};
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    vf e[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) e[q] = d[ra[i]][q] + sign[i] * d[rb[i]][q];
    vf v[4] = {e[0] - e[2], e[1] + e[2], e[2] - e[1], e[1] - e[3]};
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) memcpy(dst + (4 * i + j) * vs, &v[j], sizeof v[j]);
  }
}

enum { LOAD_AHEAD = 2 };
/* Image src's transform into the ring's columns from `at` on (wrapping at its end). */
static void load(const dn_conv_winograd *s, image src, int64_t at, float *planes, float *v) {
  int64_t wide = s->wide, plane = s->plane, vs = s->k * s->rs, tx = s->tx, ty = s->cols / tx;
  for (int64_t c = 0; c < s->k; c++) {
    float *pc = planes + 4 * c * plane;
    /* the source plane two channels on: x and g (MBs) come from L3 or memory, a channel's rows are a short
       stream that the copy below waited on */
    if (c + LOAD_AHEAD < s->k && src.sw == 1)
      for (int64_t h = 0; h < s->src_h; h++) {
        const float *r = src.data + (c + LOAD_AHEAD) * src.sc + h * src.sh;
        __builtin_prefetch(r);
        __builtin_prefetch(r + s->src_w - 1);
      }
    /* the padded plane's (fr, fc) goes to phase plane (fr % 2, fc % 2) at (fr / 2, fc / 2) (s->place); the
       rest stays 0 */
    const int32_t *restrict place = s->place;
    if (src.sw == 1) {   /* a row's even and odd columns apart, 8 at a time by two shuffles */
      for (int64_t h = 0; h < s->src_h; h++) {
        const float *restrict r = src.data + c * src.sc + h * src.sh;
        float *restrict even = pc + place[h * s->src_w];
        float *restrict odd = s->src_w > 1 ? pc + place[h * s->src_w + 1] : even;   /* (none: never written) */
        int64_t pairs = s->src_w / 2, q = 0;
        for (; pairs >= 4 && q < pairs; q += 4) {
          if (q + 4 > pairs) q = pairs - 4;   /* the last 4 pairs again, overlapping: the same values */
          __m128 a = _mm_loadu_ps(r + 2 * q), b = _mm_loadu_ps(r + 2 * q + 4);
          _mm_storeu_ps(even + q, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
          _mm_storeu_ps(odd + q, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
        }
        for (; q < pairs; q++) {
          even[q] = r[2 * q];
          odd[q] = r[2 * q + 1];
        }
        if (s->src_w % 2) even[pairs] = r[s->src_w - 1];
      }
    } else {
      for (int64_t h = 0; h < s->src_h; h++)
        for (int64_t x = 0; x < s->src_w; x++)
          pc[place[h * s->src_w + x]] = src.data[c * src.sc + h * src.sh + x * src.sw];
    }
    /* tile (a, b) is column at + a tx + b of the ring (wrapping at its end), its patch at a wide + b in the
       planes; VL tiles at a time, stored whole */
    float *vc = v + c * s->rs;
    for (int64_t a = 0; a < ty; a++)
      for (int64_t b = 0; b < tx; b += VL) {
        int64_t col = at + a * tx + b, n = tx - b < VL ? tx - b : VL;
        if (col >= s->ring) col -= s->ring;
        transform_tiles(pc, plane, wide, a * wide + b, vc + col, vs);
        if (col + n > s->ring)   /* across the ring's end: the lanes past it again from column 0 (those before it
                                    land in the previous row's spill, or the V_GAP floats before V) */
          transform_tiles(pc, plane, wide, a * wide + b, vc + col - s->ring, vs);
      }
  }
}

/* Y = A^T M A, A^T = [1 1 1 0; 0 1 -1 -1], for n columns: m[xi] the columns' M at position xi, y[4] the
   outputs (0, 0), (0, 1), (1, 0), (1, 1). */
static void output_tile(const float *const m[XI], float *const y[4], int64_t n) {
  const float *restrict m0 = m[0], *restrict m1 = m[1], *restrict m2 = m[2], *restrict m3 = m[3];
  const float *restrict m4 = m[4], *restrict m5 = m[5], *restrict m6 = m[6], *restrict m7 = m[7];
  const float *restrict m8 = m[8], *restrict m9 = m[9], *restrict m10 = m[10], *restrict m11 = m[11];
  const float *restrict m12 = m[12], *restrict m13 = m[13], *restrict m14 = m[14], *restrict m15 = m[15];
  float *restrict y0 = y[0], *restrict y1 = y[1], *restrict y2 = y[2], *restrict y3 = y[3];
#pragma omp simd
  for (int64_t l = 0; l < n; l++) {
    /* each row's A^T combinations: p = m_i0 + m_i1 + m_i2, q = m_i1 - m_i2 - m_i3 */
    float p0 = m0[l] + m1[l] + m2[l], q0 = m1[l] - m2[l] - m3[l];
    float p1 = m4[l] + m5[l] + m6[l], q1 = m5[l] - m6[l] - m7[l];
    float p2 = m8[l] + m9[l] + m10[l], q2 = m9[l] - m10[l] - m11[l];
    float p3 = m12[l] + m13[l] + m14[l], q3 = m13[l] - m14[l] - m15[l];
    y0[l] = p0 + p1 + p2;
    y1[l] = q0 + q1 + q2;
    y2[l] = p1 - p2 - p3;
    y3[l] = q1 - q2 - q3;
  }
}

/* A run's outputs in one row: d[2 i] = left[i], d[2 i + 1] = right[i] for its tiles with both columns, the left
   alone for the last if it has one (an odd width). Eight tiles at a time by a lane shuffle, the run's end by
   masked loads and a masked store (AVX2: store_first.h), in a few instructions where the scalar loop took dozens for
   the seven-tile runs of 14x14 maps. (Most of this function's time, 12% of the 32 -> 64 layer's forward on one
   thread of a Zen 4, was its stores' wait on y's lines: tile's prefetch halved it.) */
static void interleave(float *restrict d, const float *restrict left, const float *restrict right, int64_t len,
                       int64_t pairs) {
  int64_t outs = pairs + len;   /* 2 pairs, and the single left one */
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const __m512i zip = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  for (int64_t i = 0; i < len; i += 8) {
    int64_t n = len - i < 8 ? len - i : 8, o = outs - 2 * i < 16 ? outs - 2 * i : 16;
    __mmask8 in = (__mmask8)((1u << n) - 1);
    __m512 l = _mm512_castps256_ps512(_mm256_maskz_loadu_ps(in, left + i));
    __m512 r = _mm512_castps256_ps512(_mm256_maskz_loadu_ps(in, right + i));
    _mm512_mask_storeu_ps(d + 2 * i, (__mmask16)((1u << o) - 1), _mm512_permutex2var_ps(l, zip, r));
  }
#elif defined(__AVX2__)
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t i = 0; i < len; i += 8) {
    int64_t n = len - i < 8 ? len - i : 8, o = outs - 2 * i < 16 ? outs - 2 * i : 16;
    __m256i in = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lanes);
    __m256 l = _mm256_maskload_ps(left + i, in), r = _mm256_maskload_ps(right + i, in);
    __m256 lo = _mm256_unpacklo_ps(l, r), hi = _mm256_unpackhi_ps(l, r);   /* tiles 0 1 4 5, 2 3 6 7 */
    store_first(d + 2 * i, _mm256_permute2f128_ps(lo, hi, 0x20), o);
    store_first(d + 2 * i + 8, _mm256_permute2f128_ps(lo, hi, 0x31), o - 8);
  }
#else
  for (int64_t i = 0; i < pairs; i++) {
    d[2 * i] = left[i];
    d[2 * i + 1] = right[i];
  }
  if (pairs < len) d[2 * pairs] = left[pairs];
  (void)outs;
#endif
}

/* Consecutive tiles of one row of outputs of one image among a tile of columns. */
typedef struct run {
  int64_t col;          /* its first column in the tile */
  int64_t at;           /* its first output: image (task-relative) i's [m][out_h * out_w] from cur->out on */
  int64_t len, pairs;   /* its tiles, those with both output columns (the last can have one: odd widths) */
  bool down;            /* its tiles have their bottom row of outputs (not the last of an odd height) */
} run;

/* The runs of global columns [t0, end) (nr at most). */
static int runs_of(const dn_conv_winograd *s, int64_t t0, int64_t end, run *runs) {
  int count = 0;
  int64_t image_out = s->m * s->out_h * s->out_w;
  for (int64_t col = t0; col < end;) {
    int64_t i = col / s->cols, u = col % s->cols, a = u / s->tx, b = u % s->tx;
    int64_t len = s->tx - b < end - col ? s->tx - b : end - col;
    int64_t pairs = len - (s->out_w % 2 && b + len == s->tx);
    runs[count++] = (run){.col = col - t0, .at = i * image_out + 2 * a * s->out_w + 2 * b, .len = len,
                          .pairs = pairs, .down = 2 * a + 1 < s->out_h};
    col += len;
  }
  return count;
}

/* Global columns [t0, end) (nr at most, t0 a multiple of nr): their 16 products, then their outputs channel
   by channel (columns past end are computed from stale or zero V and dropped). */
static void tile(const dn_conv_winograd *s, int64_t t0, int64_t end, const scratch *b, float *out) {
  const dn_gemm_kernel *kern = s->kernel;
  int64_t nr = kern->nr, mr = kern->mr, panels = (s->m + mr - 1) / mr, ow = s->out_w, plane = s->out_h * ow;
  int64_t vs = s->k * s->rs, at = t0 % s->ring;
  run runs[64];   /* at most nr: a run has a tile at least */
  int count = runs_of(s, t0, end, runs);
  /* M_xi [m, nr], row o at mt + (o * 16 + xi) * nr (an output channel's 16 rows together for the output
     transform): position by position, V's tile of one position stays in L1 */
  for (int xi = 0; xi < XI; xi++) {
    /* the lines this tile's outputs go to, for writing, a sixteenth of the channels per position: y and dx
       (MBs) come from L3 or memory, and the stores below waited on them */
    for (int64_t o = xi * s->m / XI; o < (xi + 1) * s->m / XI; o++)
      for (int k = 0; k < count; k++) {
        const char *p0 = (const char *)(out + o * plane + runs[k].at);
        const char *p1 = (const char *)(out + o * plane + runs[k].at + (runs[k].down ? ow : 0) + 2 * runs[k].len);
        for (const char *p = (const char *)((uintptr_t)p0 & ~(uintptr_t)63); p < p1; p += 64)
          __builtin_prefetch(p, 1, 3);
      }
    for (int64_t q = 0; q < panels; q++)
      kern->rows(s->k, s->u + (xi * panels + q) * s->k * mr, b->v + xi * vs + at, s->off,
                 b->mt + (q * mr * XI + xi) * nr, XI * nr, (int)(s->m - q * mr < mr ? s->m - q * mr : mr), s->full);
  }
  /* the outputs of every channel first, then their stores: a run starting inside one of output_tile's vectors
     read it back right after the store, before it reached the cache, and the load waited for it (a store to
     load forward fails across two stores) */
  for (int64_t o = 0; o < s->m; o++) {
    const float *m[XI];
    float *y[4];
    for (int xi = 0; xi < XI; xi++) m[xi] = b->mt + (o * XI + xi) * nr;
    for (int j = 0; j < 4; j++) y[j] = b->yt + (o * 4 + j) * nr;
    output_tile(m, y, nr);
  }
  for (int64_t o = 0; o < s->m; o++) {
    const float *yt = b->yt + o * 4 * nr;
    float *dst = out + o * plane;
    for (int k = 0; k < count; k++) {
      const run *rn = &runs[k];
      interleave(dst + rn->at, yt + rn->col, yt + nr + rn->col, rn->len, rn->pairs);
      if (rn->down) interleave(dst + rn->at + ow, yt + 2 * nr + rn->col, yt + 3 * nr + rn->col, rn->len, rn->pairs);
    }
  }
}

int64_t dn_conv_winograd_push(const dn_conv_winograd *s, dn_conv_winograd_cursor *cur, image src) {
  scratch b = scratch_of(s, cur->scratch, false);
  int64_t nr = s->kernel->nr;
  load(s, src, cur->images * s->cols % s->ring, b.planes, b.v);
  cur->images++;
  for (; cur->done + nr <= cur->images * s->cols; cur->done += nr) tile(s, cur->done, cur->done + nr, &b, cur->out);
  return cur->done / s->cols;
}

void dn_conv_winograd_flush(const dn_conv_winograd *s, dn_conv_winograd_cursor *cur) {
  scratch b = scratch_of(s, cur->scratch, false);
  int64_t end = cur->images * s->cols;
  if (cur->done < end) tile(s, cur->done, end, &b, cur->out);
  cur->done = end;
}

/* --- dw ------------------------------------------------------------------------------------
**
** dw by the same transforms: the forward's M_xi = U_xi V_xi gives, over the tiles of every image,
**   dU_xi [C, O] = sum over tiles t of V_xi [C, t] dM_xi [t, O],  dM = A dY A^T,
** dY a tile's 2x2 gradient (zero past the output's edges), and dw = G^T dU G per (o, c). The source
** is x (the forward's geometry: m = O, k = C), V as the forward's load writes it (channel rows,
** tiles along them), and dM per tile with the output channels along it, so that each position's
** product is the direct kernel's plain [C, T] @ [T, O] (A's rows and B's rows read in place,
** nothing packed: gemm_direct.h), added image after image into the part's dU. 16 * C * O
** multiply-adds per tile against the shifted products' 36 * C * O.
*/

/* Where dw takes these products by default: 32 channels or more on both sides, and per image at least
   DW_MIN_TILES tiles (the products' depth: 16 on 7x7 maps, 128 -> 128 channels, took 1.1-1.3x the shifts'
   time) and V and dM within DW_MAX_FLOATS (56x56 maps, 32 -> 32 channels: 800K floats, no faster). dw and db
   of a layer, in-process medians, Winograd's against the shifts' (AVX2 / AVX-512, 2 threads of a Zen 5, two
   runs each): 32 -> 64 at 14x14, batch 128: 0.75 / about even; 64 -> 64 at 14x14: 0.70 / 0.90; 128 -> 128
   at 14x14: 0.75 / 0.95; 64 -> 64 at 28x28, batch 32: 0.69 / 0.80; 32 -> 32 at 14x14: even. */
enum { DW_MIN_TILES = 32 };
#define DW_MAX_FLOATS ((int64_t)1 << 19)

bool dn_conv_winograd_dw_fits(const conv_geom *g) {
  const dn_gemm_kernel *kern = dn_blas_rows_kernel();
  if (!kern || dn_conv_winograd_force == DN_SHIFTED_NEVER || !winograd_shape(g)) return false;
  int64_t cols = (g->out_h + 1) / 2 * ((g->out_w + 1) / 2);
  if (dn_conv_winograd_force != DN_SHIFTED_ALWAYS &&
      (g->in_ch < MIN_K || g->out_ch < MIN_K || cols < DW_MIN_TILES ||
       XI * cols * (g->in_ch + g->out_ch) > DW_MAX_FLOATS))
    return false;
  return XI * g->in_ch * (ring_of(cols, kern->nr) + VL) <= MAX_V_FLOATS &&
         XI * (cols + g->out_h * g->out_w) * g->out_ch <= MAX_V_FLOATS && XI * g->in_ch * g->out_ch <= MAX_V_FLOATS;
}

dn_status dn_conv_winograd_dw_init(dn_conv_winograd *s, const conv_geom *g, const char *op) {
  if (!geometry(s, g, false)) {
    dn_conv_winograd_free(s);
    return dn_fail(DN_ENOMEM, "%s: out of memory for its Winograd weight gradient's tables", op);
  }
  return DN_OK;
}

/* scratch_of's layout for dw: the phase planes, V, gt [P + 1][row] (row P zero: the outputs past the edges) and
   dM [16][cols][row]. */
int64_t dn_conv_winograd_dw_task_floats(const dn_conv_winograd *s) {
  return 4 * s->k * s->plane + V_GAP + XI * s->k * s->rs + round16((s->out_h * s->out_w + 1) * dw_row(s)) +
         XI * s->cols * dw_row(s);
}

int64_t dn_conv_winograd_dw_part_floats(const dn_conv_winograd *s) { return XI * s->k * s->m; }

/* gt [p][o] = g [o][p] for the P positions, by 4 x 4 blocks transposed in registers (a scalar copy, each load
   from another line of g, took three quarters of this file's dw time beside the products). Row P and the
   columns past m keep the scratch's zeros. */
static void transpose_gradient(const dn_conv_winograd *s, const float *restrict g, float *restrict gt) {
  int64_t positions = s->out_h * s->out_w, row = dw_row(s), m4 = s->m / 4 * 4, p4 = positions / 4 * 4;
  for (int64_t o = 0; o < m4; o += 4) {
    const float *g0 = g + o * positions, *g1 = g0 + positions, *g2 = g1 + positions, *g3 = g2 + positions;
    for (int64_t p = 0; p < p4; p += 4) {
      __m128 r0 = _mm_loadu_ps(g0 + p), r1 = _mm_loadu_ps(g1 + p), r2 = _mm_loadu_ps(g2 + p), r3 = _mm_loadu_ps(g3 + p);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(gt + p * row + o, r0);
      _mm_storeu_ps(gt + (p + 1) * row + o, r1);
      _mm_storeu_ps(gt + (p + 2) * row + o, r2);
      _mm_storeu_ps(gt + (p + 3) * row + o, r3);
    }
    for (int64_t p = p4; p < positions; p++)
      for (int64_t q = o; q < o + 4; q++) gt[p * row + q] = g[q * positions + p];
  }
  for (int64_t o = m4; o < s->m; o++)
    for (int64_t p = 0; p < positions; p++) gt[p * row + o] = g[o * positions + p];
}

/* dM = A dY A^T, A = [1 0; 1 1; 1 -1; 0 -1], of every tile, VL output channels at a time: the rows of A dY
   are (y0j), (y0j + y1j), (y0j - y1j), (-y1j); a row (u, v) times A^T is (u, u + v, u - v, -v). */
static void gradient_transform(const dn_conv_winograd *s, const float *gt, float *dm) {
  int64_t ow = s->out_w, positions = s->out_h * ow, row = dw_row(s), cols = s->cols;
  for (int64_t t = 0; t < cols; t++) {
    int64_t a = t / s->tx, b = t % s->tx, p = 2 * a * ow + 2 * b;
    bool right = 2 * b + 1 < ow, down = 2 * a + 1 < s->out_h;
    const float *g00 = gt + p * row, *g01 = gt + (right ? p + 1 : positions) * row;
    const float *g10 = gt + (down ? p + ow : positions) * row;
    const float *g11 = gt + (right && down ? p + ow + 1 : positions) * row;
    for (int64_t o = 0; o < row; o += VL) {
      vf y00 = vload(g00 + o), y01 = vload(g01 + o), y10 = vload(g10 + o), y11 = vload(g11 + o);
      vf u[4] = {y00, y00 + y10, y00 - y10, -y10}, v[4] = {y01, y01 + y11, y01 - y11, -y11};
#pragma GCC unroll 4
      for (int i = 0; i < 4; i++) {
        vf e[4] = {u[i], u[i] + v[i], u[i] - v[i], -v[i]};
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) memcpy(dm + ((4 * i + j) * cols + t) * row + o, &e[j], sizeof e[j]);
      }
    }
  }
}

void dn_conv_winograd_dw(const dn_conv_winograd *s, image x, const float *g, float *task_scratch, float *part,
                         bool first) {
  scratch b = scratch_of(s, task_scratch, true);
  int64_t row = dw_row(s), vs = s->k * s->rs;
  load(s, x, 0, b.planes, b.v);   /* column 0 on: the ring never wraps (cols + VL - 1 <= rs) */
  transpose_gradient(s, g, b.gt);
  gradient_transform(s, b.gt, b.dm);
  for (int xi = 0; xi < XI; xi++) {
    dn_gemm_direct_args d = {.k = s->cols, .a = b.v + xi * vs, .a_rs = s->rs, .a_ps = 1, .b = b.dm + xi * s->cols * row,
                             .ldb = row, .c = part + xi * s->k * s->m, .ldc = s->m, .alpha = 1.0f,
                             .beta = first ? 0.0f : 1.0f};
    s->kernel->direct(&d, 0, s->k, 0, s->m);
  }
}

/* dw [O][C][3][3] of input channels [c0, c1): the parts' dU added in order, then G^T dU G in double,
   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], DW_LANES output channels at a time (vectors along them). */
typedef struct dw_finish_job {
  const dn_conv_winograd *s;
  const float *parts;
  int64_t count;
  float *dw;
} dw_finish_job;

enum { DW_LANES = 16 };

static void dw_finish_range(const void *ctx, int64_t c0, int64_t c1) {
  const dw_finish_job *j = ctx;
  int64_t size = XI * j->s->k * j->s->m, m = j->s->m, k = j->s->k;
  for (int64_t c = c0; c < c1; c++)
    for (int64_t o0 = 0; o0 < m; o0 += DW_LANES) {
      int64_t n = m - o0 < DW_LANES ? m - o0 : DW_LANES;
      double du[XI][DW_LANES], t[3][4][DW_LANES];
      for (int xi = 0; xi < XI; xi++) {
        const float *at = j->parts + (xi * k + c) * m + o0;
#pragma omp simd
        for (int64_t l = 0; l < n; l++) {
          float sum = at[l];
          for (int64_t p = 1; p < j->count; p++) sum += at[p * size + l];
          du[xi][l] = sum;
        }
      }
      /* t = G^T dU (row i weighs dU's rows by G's column i), then dw = t G the same way along the rows */
      for (int q = 0; q < 4; q++)
#pragma omp simd
        for (int64_t l = 0; l < n; l++) {
          double r0 = du[q][l], r1 = du[4 + q][l], r2 = du[8 + q][l], r3 = du[12 + q][l];
          t[0][q][l] = r0 + 0.5 * r1 + 0.5 * r2;
          t[1][q][l] = 0.5 * r1 - 0.5 * r2;
          t[2][q][l] = 0.5 * r1 + 0.5 * r2 + r3;
        }
      for (int i = 0; i < 3; i++)
        for (int64_t l = 0; l < n; l++) {
          float *w = j->dw + ((o0 + l) * k + c) * 9 + i * 3;
          double a0 = t[i][0][l], a1 = t[i][1][l], a2 = t[i][2][l], a3 = t[i][3][l];
          w[0] = (float)(a0 + 0.5 * a1 + 0.5 * a2);
          w[1] = (float)(0.5 * a1 - 0.5 * a2);
          w[2] = (float)(0.5 * a1 + 0.5 * a2 + a3);
        }
    }
}

void dn_conv_winograd_dw_finish(const dn_conv_winograd *s, const float *parts, int64_t count, float *dw) {
  dw_finish_job j = {s, parts, count, dw};
  dn_parallel_rows(s->k, XI * s->m * count, dw_finish_range, &j);
}

#else   /* no kernel of ours on this architecture */

bool dn_conv_winograd_fits(const conv_geom *g, bool dx) {
  (void)g, (void)dx;
  return false;
}

dn_status dn_conv_winograd_init(dn_conv_winograd *s, const conv_geom *g, const float *w, bool dx, const char *op) {
  (void)g, (void)w, (void)dx;
  *s = (dn_conv_winograd){0};
  return dn_fail(DN_EINVAL, "%s: no Winograd products on this architecture", op);
}

void dn_conv_winograd_free(dn_conv_winograd *s) { (void)s; }

int64_t dn_conv_winograd_task_floats(const dn_conv_winograd *s) {
  (void)s;
  return 0;
}

int64_t dn_conv_winograd_push(const dn_conv_winograd *s, dn_conv_winograd_cursor *cur, image src) {
  (void)s, (void)cur, (void)src;
  return 0;
}

void dn_conv_winograd_flush(const dn_conv_winograd *s, dn_conv_winograd_cursor *cur) { (void)s, (void)cur; }

bool dn_conv_winograd_dw_fits(const conv_geom *g) {
  (void)g;
  return false;
}

dn_status dn_conv_winograd_dw_init(dn_conv_winograd *s, const conv_geom *g, const char *op) {
  (void)g;
  *s = (dn_conv_winograd){0};
  return dn_fail(DN_EINVAL, "%s: no Winograd products on this architecture", op);
}

int64_t dn_conv_winograd_dw_task_floats(const dn_conv_winograd *s) {
  (void)s;
  return 0;
}

int64_t dn_conv_winograd_dw_part_floats(const dn_conv_winograd *s) {
  (void)s;
  return 0;
}

void dn_conv_winograd_dw(const dn_conv_winograd *s, image x, const float *g, float *task_scratch, float *part,
                         bool first) {
  (void)s, (void)x, (void)g, (void)task_scratch, (void)part, (void)first;
}

void dn_conv_winograd_dw_finish(const dn_conv_winograd *s, const float *parts, int64_t count, float *dw) {
  (void)s, (void)parts, (void)count, (void)dw;
}

#endif
