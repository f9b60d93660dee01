/*
** The first block of a small CNN in one op (norm.h,
** dn_conv2d_batch_norm_relu_max_pool2d_dropout2d): a convolution of images
** that need no gradient, batch norm, ReLU, a 2x2 max pool and channel
** dropout, without ever writing the convolution's output to memory.
**
** In the chain the convolution writes y [N, C, OH, OW] (12.8 MB for 32
** channels of 28x28 at batch 128) and the batch norm reads it back three
** times: for the pool in forward, for its sums and for dx in backward. With
** few taps (K = Cin * KH * KW <= 27) both directions need far less:
** - Statistics. With X the [M, K] patches of the batch (M = N OH OW), s
**   their column sums and G = X^T X their Gram matrix (in double, per chunk
**   of images then in chunk order), channel c's y = X w_c + b_c has mean
**   w_c . s / M + b_c and sum of squared deviations w_c^T G w_c -
**   (w_c . s)^2 / M: batch norm's statistics without y.
** - Forward. Each image's outputs are computed into a task's scratch (an
**   FMA chain over the taps from a zero-padded frame), normalized with ReLU,
**   pooled and dropped there, as norm.c's pooled form does from memory; the
**   node keeps each window's argmax code (a byte, DN_WINDOW_NONE where ReLU
**   zeroed it or its plane was dropped) and y at the argmax. A dropped
**   channel's outputs are not computed.
** - Backward. dz, the gradient at batch norm's output, is the pooled
**   gradient (times the dropout's scale) at each window's argmax and zero
**   elsewhere, so batch norm's sums need the windows only: sum dz and sum dz
**   (y - mean) over the argmaxes. The convolution's dweight is sum over
**   positions of dy X with dy = k (dz - shift - xs (y - mean)) (norm.c's dx),
**   which is k (A - shift s - xs Yc) with A = sum dz X, a gather of K values
**   at each argmax, and Yc = sum (y - mean) X = G w_c - (w_c . s) s / M,
**   known from forward. Its bias's gradient is k (sum dz - shift M).
** Sums are in double, each in a fixed order (images, then windows), so the
** bits do not depend on the thread count; they differ from the chain's by
** rounding, as the statistics are those of the exact convolution.
*/
#include <math.h>
#include <string.h>

#include "blas.h"
#include "dropnet/alloc.h"
#include "dropnet/autograd.h"
#include "dropnet/norm.h"
#include "dropout_mask.h"
#include "graph.h"
#include "internal.h"
#include "norm_checks.h"
#include "norm_run.h"
#include "pool.h"
#include "shape.h"
#include "unpool_2x2.h"

#define OP "conv2d_batch_norm_relu_max_pool2d_dropout2d"

enum { MAX_TAPS = 27, CHUNK_IMAGES = 8 };
#define MAX_FRAME ((int64_t)1 << 24)   /* floats of an image's zero-padded frame, at most (64 MB) */
/* The floats of the build's widest vector register: GCC vectors wider than it are kept in memory, a store and
   a reload per operation (an AVX2 build ran the convolution 4x slower with 16-float vectors). */
#if defined(__AVX512F__)
#define VEC_FLOATS 16
#elif defined(__AVX__)
#define VEC_FLOATS 8
#else
#define VEC_FLOATS 4
#endif
/* conv_planes: channels, vectors of positions and positions at a time, and the zeros its last vectors of a row may
   read past the frame (fewer than CONV_POS) */
enum { CONV_CHANNELS = 4, CONV_VEC = VEC_FLOATS, CONV_VECS = 2, CONV_POS = CONV_VECS * CONV_VEC,
       FRAME_SLACK = CONV_POS };
enum { SAVED_X = 0, SAVED_CODES = 1, SAVED_Y_AT = 2, SAVED_BLOB = 3 };
enum { NODE_TRAINING = 0, NODE_PAD_H = 1, NODE_PAD_W = 2 };
enum { NODE_SCALE = 0 };
/* The blob's doubles (a byte tensor): s [K], then per channel mean, invstd, batch norm's weight and Yc [K]. */
enum { CH_MEAN = 0, CH_INVSTD = 1, CH_WEIGHT = 2, CH_YC = 3 };

typedef struct block_geom {
  int64_t n, cin, c, oh, ow, ph_out, pw_out;   /* batch, channels in and out, conv output, pooled output */
  int64_t h, w, pad_h, pad_w, fh, fw;          /* the input, its padding, the zero-padded frame */
  int64_t taps;
  int32_t off[MAX_TAPS];   /* tap t = (ci, ki, kj)'s offset in the frame */
} block_geom;

static inline int64_t positions(const block_geom *g) { return g->oh * g->ow; }
static inline int64_t windows(const block_geom *g) { return g->ph_out * g->pw_out; }
static inline int64_t frame_floats(const block_geom *g) { return g->cin * g->fh * g->fw + FRAME_SLACK; }
static inline int64_t blob_doubles(const block_geom *g) { return g->taps + g->c * (CH_YC + g->taps); }

/* The block's geometry from the input's and conv_weight's shapes and the padding (checked: check_args). */
static void geometry(block_geom *g, const int64_t xs[4], const int64_t ws[4], const int64_t padding[2]) {
  int64_t fh = xs[2] + 2 * padding[0], fw = xs[3] + 2 * padding[1], oh = fh - ws[2] + 1, ow = fw - ws[3] + 1;
  *g = (block_geom){.n = xs[0], .cin = xs[1], .c = ws[0], .oh = oh, .ow = ow, .ph_out = oh / 2, .pw_out = ow / 2,
                    .h = xs[2], .w = xs[3], .pad_h = padding[0], .pad_w = padding[1], .fh = fh, .fw = fw,
                    .taps = ws[1] * ws[2] * ws[3]};
  int64_t t = 0;
  for (int64_t ci = 0; ci < g->cin; ci++)
    for (int64_t ki = 0; ki < ws[2]; ki++)
      for (int64_t kj = 0; kj < ws[3]; kj++) g->off[t++] = (int32_t)((ci * g->fh + ki) * g->fw + kj);
}

/* Image n's channels, zero-padded, into frame. */
static void fill_frame(const block_geom *g, const float *x, int64_t n, float *frame) {
  memset(frame, 0, (size_t)frame_floats(g) * sizeof *frame);
  for (int64_t ci = 0; ci < g->cin; ci++)
    for (int64_t i = 0; i < g->h; i++)
      memcpy(frame + (ci * g->fh + i + g->pad_h) * g->fw + g->pad_w, x + ((n * g->cin + ci) * g->h + i) * g->w,
             (size_t)g->w * sizeof *x);
}

/* Output position (oh, ow)'s place in the frame: its taps are there + off[t]. */
static inline int64_t frame_at(const block_geom *g, int64_t oh, int64_t ow) { return oh * g->fw + ow; }

/* The row stride of the planes of an image's outputs in forward's scratch: whole vectors of conv_planes. */
static inline int64_t image_w(const block_geom *g) { return (g->ow + CONV_POS - 1) / CONV_POS * CONV_POS; }

/*
** Channels pick[0 .. nb) (nb <= CONV_CHANNELS) of one image from its frame,
** into their planes of y (plane c at y + c * OH * image_w: OH rows of
** image_w floats, the columns past OW junk). Per row, CONV_VECS vectors of
** CONV_VEC positions at a time (GCC vectors as wide as the build's
** registers), each channel's an FMA chain over the taps from 0, then the
** bias; the frame's values at a tap are loaded once for the nb channels and
** each channel's weight once for the vectors, so that a tap's loads and
** broadcasts (CONV_VECS + nb) feed CONV_VECS * nb FMAs (one vector: 5 for 4,
** and an AVX2 build waited on them); the sums stay in registers (a float
** array here went through memory at every tap). A row's last vectors read
** on past the row, into the frame's slack (FRAME_SLACK) at the end, and
** write whole vectors (a copy of a row's own length compiled to a rep movs,
** a third of the time).
*/
typedef float conv_vec __attribute__((vector_size(CONV_VEC * sizeof(float))));
_Static_assert(CONV_CHANNELS == 4 && CONV_VECS == 2, "conv_planes names its sums a0..a3, b0..b3");

/* A channel's two vectors of sums, plus its bias, to d (named, not from an array: GCC put an array of them on
   the stack and copied each back in halves, waiting on the stores: 40% of conv_planes on an AVX2 build) */
static DN_ALWAYS_INLINE void conv_put(float *d, conv_vec lo, conv_vec hi, const float *bias) {
  if (bias) lo += *bias, hi += *bias;
  memcpy(d, &lo, sizeof lo);
  memcpy(d + CONV_VEC, &hi, sizeof hi);
}

static void conv_planes(const block_geom *g, const float *frame, const float *w, const float *bias,
                        const int64_t *pick, int64_t nb, float *y) {
  int64_t taps = g->taps, iw = image_w(g), plane = g->oh * iw;
  float wl[CONV_CHANNELS][MAX_TAPS] = {{0}};   /* the block's weights, zeros for channels past nb */
  for (int64_t b = 0; b < nb; b++) memcpy(wl[b], w + pick[b] * taps, (size_t)taps * sizeof **wl);
  for (int64_t oh = 0; oh < g->oh; oh++) {
    const float *f = frame + frame_at(g, oh, 0);
    for (int64_t ow0 = 0; ow0 < g->ow; ow0 += CONV_POS) {
      conv_vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
      for (int64_t t = 0; t < taps; t++) {
        conv_vec u, v;
        memcpy(&u, f + ow0 + g->off[t], sizeof u);
        memcpy(&v, f + ow0 + CONV_VEC + g->off[t], sizeof v);
        float w0 = wl[0][t], w1 = wl[1][t], w2 = wl[2][t], w3 = wl[3][t];
        a0 += w0 * u;   /* FMAs where the build has them */
        b0 += w0 * v;
        a1 += w1 * u;
        b1 += w1 * v;
        a2 += w2 * u;
        b2 += w2 * v;
        a3 += w3 * u;
        b3 += w3 * v;
      }
      float *at = y + oh * iw + ow0;
      conv_put(at + pick[0] * plane, a0, b0, bias ? bias + pick[0] : NULL);   /* nb >= 1 */
      if (nb > 1) conv_put(at + pick[1] * plane, a1, b1, bias ? bias + pick[1] : NULL);
      if (nb > 2) conv_put(at + pick[2] * plane, a2, b2, bias ? bias + pick[2] : NULL);
      if (nb > 3) conv_put(at + pick[3] * plane, a3, b3, bias ? bias + pick[3] : NULL);
    }
  }
}

/* Positions of a row of patches, rounded up to whole vectors of moment_vec (the rest zeros). */
static inline int64_t patch_stride(const block_geom *g) { return (positions(g) + 7) / 8 * 8; }

/* Image n's patches as K rows of OH * OW values (im2col) from its frame, rows patch_stride(g) apart (a loop: a
   memcpy of a row's length compiled to a rep movs). */
static void patches(const block_geom *g, const float *frame, float *restrict cols) {
  int64_t s = positions(g), ld = patch_stride(g);
  for (int64_t t = 0; t < g->taps; t++) {
    for (int64_t oh = 0; oh < g->oh; oh++) {
      const float *restrict f = frame + frame_at(g, oh, 0) + g->off[t];
      float *restrict d = cols + t * ld + oh * g->ow;
#pragma omp simd
      for (int64_t ow = 0; ow < g->ow; ow++) d[ow] = f[ow];
    }
    for (int64_t p = s; p < ld; p++) cols[t * ld + p] = 0.0f;
  }
}

/*
** The patches' column sums s [K] and Gram matrix G [K][K] (both triangles)
** of images [n0, n1), in double; frame and cols: scratch. Eight positions
** at a time (MOMENT_LANES at once): the K rows' values converted to double once, then every pair's
** product added into its own vector of sums (the pairs' K (K + 1) / 2
** vectors; dot products pair by pair converted each value K times over).
*/
enum { MOMENT_LANES = VEC_FLOATS / 2 };   /* doubles a register holds */
typedef float moment_fvec __attribute__((vector_size(MOMENT_LANES * sizeof(float))));
typedef double moment_vec __attribute__((vector_size(MOMENT_LANES * sizeof(double))));
static void image_moments(const block_geom *g, const float *x, int64_t n0, int64_t n1, float *frame, float *cols,
                          double *s, double *gram) {
  int64_t k = g->taps, ld = patch_stride(g);
  moment_vec acc[MAX_TAPS * (MAX_TAPS + 1) / 2 + MAX_TAPS];   /* the pairs (a <= b), then the sums */
  int64_t pairs = k * (k + 1) / 2;
  memset(acc, 0, sizeof acc);
  for (int64_t n = n0; n < n1; n++) {
    fill_frame(g, x, n, frame);
    patches(g, frame, cols);
    for (int64_t p = 0; p < ld; p += MOMENT_LANES) {
      moment_vec xv[MAX_TAPS];
      for (int64_t a = 0; a < k; a++) {
        moment_fvec f;
        memcpy(&f, cols + a * ld + p, sizeof f);
        xv[a] = __builtin_convertvector(f, moment_vec);
      }
      int64_t i = 0;
      for (int64_t a = 0; a < k; a++) {
        for (int64_t b = a; b < k; b++) acc[i++] += xv[a] * xv[b];
        acc[pairs + a] += xv[a];
      }
    }
  }
  int64_t i = 0;
  for (int64_t a = 0; a < k; a++) {
    for (int64_t b = a; b < k; b++, i++) {
      double t = 0;
      for (int l = 0; l < MOMENT_LANES; l++) t += acc[i][l];
      gram[a * k + b] = gram[b * k + a] = t;
    }
    double t = 0;
    for (int l = 0; l < MOMENT_LANES; l++) t += acc[pairs + a][l];
    s[a] = t;
  }
}

typedef struct moments_job {
  const block_geom *g;
  const float *x;
  double *parts;   /* per chunk of CHUNK_IMAGES images: s [K] then G [K][K] */
  float *frames;   /* per chunk: a frame and the patches */
} moments_job;

static void moments_chunks(const void *ctx, int64_t c0, int64_t c1) {
  const moments_job *j = ctx;
  int64_t k = j->g->taps, part = k + k * k;
  for (int64_t ch = c0; ch < c1; ch++) {
    int64_t n0 = ch * CHUNK_IMAGES, n1 = n0 + CHUNK_IMAGES < j->g->n ? n0 + CHUNK_IMAGES : j->g->n;
    double *p = j->parts + ch * part;
    float *frame = j->frames + ch * (frame_floats(j->g) + k * patch_stride(j->g));
    image_moments(j->g, j->x, n0, n1, frame, frame + frame_floats(j->g), p, p + k);
  }
}

/* s [K] and G [K][K] of the whole batch: chunks in parallel, summed in chunk order. */
static dn_status batch_moments(const block_geom *g, const float *x, double *s, double *gram) {
  int64_t k = g->taps, chunks = (g->n + CHUNK_IMAGES - 1) / CHUNK_IMAGES, part = k + k * k;
  double *parts = dn_alloc((size_t)(chunks * part) * sizeof *parts);
  float *frames = dn_alloc((size_t)(chunks * (frame_floats(g) + k * patch_stride(g))) * sizeof *frames);
  if (!parts || !frames) {
    dn_free(parts);
    dn_free(frames);
    return dn_fail(DN_ENOMEM, "%s: out of memory for the moments of %lld images", OP, (long long)g->n);
  }
  moments_job j = {g, x, parts, frames};
  dn_parallel_rows(chunks, CHUNK_IMAGES * positions(g) * (k * k / 2 + k), moments_chunks, &j);
  memset(s, 0, (size_t)k * sizeof *s);
  memset(gram, 0, (size_t)(k * k) * sizeof *gram);
  for (int64_t ch = 0; ch < chunks; ch++) {
    const double *p = parts + ch * part;
    for (int64_t a = 0; a < k; a++) s[a] += p[a];
    for (int64_t a = 0; a < k * k; a++) gram[a] += p[k + a];
  }
  dn_free(parts);
  dn_free(frames);
  return DN_OK;
}

/* --- forward ------------------------------------------------------------------------------ */

typedef struct forward_job {
  const block_geom *g;
  const float *x, *w, *b;     /* contiguous; b may be NULL */
  const double *param;        /* [C][3]: mean, invstd * weight, bias of each channel's normalized outputs */
  float *y;                   /* [N, C, PH, PW] */
  uint8_t *codes;             /* the same, or NULL: no node */
  float *y_at;                /* the same: the convolution's output at each window's argmax, or NULL */
  const uint8_t *keep;        /* the dropout's decision of each row (n, c), or NULL */
  float scale;
  float *scratch;             /* per task: the frame, the image's outputs, a normalized plane (each + slack) */
  int64_t scratch_floats, frame_part, image_part, plane_part;
} forward_job;

/*
** 16 windows of a row pair (POOL_CHUNK; the caller's buffers let the last
** ones read on): the 2x2 maxima of the normalized rows p0, p1 with
** max_pool_2x2.h's comparisons in its order (the first maximum wins, a NaN
** replaces it), times the dropout's scale, into yo; with `routes`, each
** window's code (DN_WINDOW_NONE where the maximum is <= 0: ReLU zeroed the
** window) and the convolution's output y0, y1 at its argmax. Constant
** length: the compiler vectorizes the selects whole (a loop over a row's own
** windows stayed scalar).
*/
enum { POOL_CHUNK = 16 };
static DN_ALWAYS_INLINE void pool_chunk(const float *p0, const float *p1, const float *y0, const float *y1,
                                        float scale, float *restrict yo, uint8_t *restrict co,
                                        float *restrict ya, bool routes) {
  int32_t kb[POOL_CHUNK];   /* the codes as int32 first: a byte store in the loop kept it scalar */
#pragma omp simd
  for (int w = 0; w < POOL_CHUNK; w++) {
    float a = p0[2 * w], b = p0[2 * w + 1], c = p1[2 * w], d = p1[2 * w + 1], m = a;
    float va = y0[2 * w], vb = y0[2 * w + 1], vc = y1[2 * w], vd = y1[2 * w + 1], v = va;   /* loads first */
    int32_t k = 0;
    bool tb = b > m || b != b;
    m = tb ? b : m, k = tb ? 1 : k, v = tb ? vb : v;
    bool tc = c > m || c != c;
    m = tc ? c : m, k = tc ? 2 : k, v = tc ? vc : v;
    bool td = d > m || d != d;
    m = td ? d : m, k = td ? 3 : k, v = td ? vd : v;
    yo[w] = m * scale;
    if (routes) {
      kb[w] = m <= 0.0f ? DN_WINDOW_NONE : k;
      ya[w] = v;
    }
  }
  if (routes)
    for (int w = 0; w < POOL_CHUNK; w++) co[w] = (uint8_t)kb[w];
}

/* Row r's windows from its normalized plane and the convolution's outputs yc; straight into the outputs
   while a chunk ends inside the image's rows (a later row overwrites what spills), else through buffers. */
static void pool_plane(const forward_job *j, int64_t r, const float *plane, const float *yc, float scale,
                       bool routes) {
  const block_geom *g = j->g;
  int64_t out = windows(g), image_end = (r / g->c + 1) * g->c * out;
  int64_t iw = image_w(g);
  for (int64_t i = 0; i < g->ph_out; i++) {
    const float *p0 = plane + 2 * i * iw, *p1 = p0 + iw, *y0 = yc + 2 * i * iw, *y1 = y0 + iw;
    for (int64_t w0 = 0; w0 < g->pw_out; w0 += POOL_CHUNK) {
      int64_t at = r * out + i * g->pw_out + w0, len = g->pw_out - w0 < POOL_CHUNK ? g->pw_out - w0 : POOL_CHUNK;
      const float *a0 = p0 + 2 * w0, *a1 = p1 + 2 * w0, *b0 = y0 + 2 * w0, *b1 = y1 + 2 * w0;
      if (at + POOL_CHUNK <= image_end) {
        if (routes) pool_chunk(a0, a1, b0, b1, scale, j->y + at, j->codes + at, j->y_at + at, true);
        else pool_chunk(a0, a1, b0, b1, scale, j->y + at, NULL, NULL, false);
        continue;
      }
      float yb[POOL_CHUNK], vb[POOL_CHUNK];
      uint8_t cb[POOL_CHUNK];
      pool_chunk(a0, a1, b0, b1, scale, yb, cb, vb, true);
      for (int64_t k = 0; k < len; k++) {
        j->y[at + k] = yb[k];
        if (routes) j->codes[at + k] = cb[k], j->y_at[at + k] = vb[k];
      }
    }
  }
}

static void forward_task(void *ctx, int task, int tasks) {
  const forward_job *j = ctx;
  const block_geom *g = j->g;
  float *frame = j->scratch + task * j->scratch_floats, *img = frame + j->frame_part, *plane = img + j->image_part;
  int64_t s = g->oh * image_w(g), out = windows(g);   /* s: a plane of the image's outputs, with its junk columns */
  for (int64_t n = dn_split(g->n, task, tasks); n < dn_split(g->n, task + 1, tasks); n++) {
    fill_frame(g, j->x, n, frame);
    /* the kept channels, CONV_CHANNELS at a time: a dropped channel's outputs would never be read */
    for (int64_t c = 0; c < g->c;) {
      int64_t pick[CONV_CHANNELS], nb = 0;
      for (; c < g->c && nb < CONV_CHANNELS; c++)
        if (!j->keep || j->keep[n * g->c + c]) pick[nb++] = c;
      if (nb > 0) conv_planes(g, frame, j->w, j->b, pick, nb, img);
    }
    for (int64_t c = 0; c < g->c; c++) {
      int64_t r = n * g->c + c;
      if (j->keep && !j->keep[r]) {   /* dropped: zeros, and no gradient to route */
        memset(j->y + r * out, 0, (size_t)out * sizeof *j->y);
        if (j->codes) memset(j->codes + r * out, DN_WINDOW_NONE, (size_t)out);
        if (j->y_at) memset(j->y_at + r * out, 0, (size_t)out * sizeof *j->y_at);
        continue;
      }
      const double *p = j->param + 3 * c;
      dn_norm_forward_run(plane, img + c * s, s, p[0], p[1], p[2], true);
      pool_plane(j, r, plane, img + c * s, j->keep ? j->scale : 1.0f, j->codes != NULL);
    }
  }
}

/* --- backward ----------------------------------------------------------------------------- */

typedef struct backward_job {
  const block_geom *g;
  const float *x, *grad, *y_at;
  const uint8_t *codes;
  const double *blob;
  bool training;
  float scale;
  float *dconv_w, *dconv_b, *dweight, *dbias;   /* or NULL: not wanted */
  double *sums;        /* [N * C][2]: each row's sum dz and sum dz (y - mean) */
  float *parts;        /* [N][C][K]: each image's A = dz planes @ patches^T, when dconv_w is wanted */
  float *scratch;      /* per task: frame, patches [K][S], dz planes [C][S], the product's buffer */
  int64_t scratch_floats, frame_part, cols_part, dz_part;
} backward_job;

/*
** Sums over a row's windows (out of them, flat): sum dz and sum dz (y -
** mean), dz = 0 + g * scale where the code routes a gradient and 0 where it
** is DN_WINDOW_NONE (whatever g is there: the chain's pool never reads it).
** In float lanes of VEC_FLOATS windows (GCC vectors; the window's code masks the
** bits of dz), then the lanes in double in a fixed order. A plain loop with
** the select did not vectorize.
*/
typedef float win_vec __attribute__((vector_size(VEC_FLOATS * sizeof(float))));
typedef int32_t win_ivec __attribute__((vector_size(VEC_FLOATS * sizeof(int32_t))));
typedef uint8_t win_bytes __attribute__((vector_size(VEC_FLOATS)));
static void window_sums(const uint8_t *code, const float *g, const float *ya, int64_t out, float scale,
                        double mean, double *sums) {
  float hi = (float)mean, lo = (float)(mean - hi);
  win_vec s0 = {0}, s1 = {0};
  int64_t o0 = 0;
  for (; o0 + VEC_FLOATS <= out; o0 += VEC_FLOATS) {
    win_bytes cb;
    win_vec gv, yv;
    memcpy(&cb, code + o0, sizeof cb);
    memcpy(&gv, g + o0, sizeof gv);
    memcpy(&yv, ya + o0, sizeof yv);
    win_ivec live = __builtin_convertvector(cb, win_ivec) != DN_WINDOW_NONE;   /* -1 where a gradient goes */
    win_vec v = 0.0f + gv * scale;
    v = (win_vec)((win_ivec)v & live);
    s0 += v;
    s1 += v * (yv - hi - lo);
  }
  for (int l = 0; o0 + l < out; l++)   /* the last windows, each into its lane */
    if (code[o0 + l] != DN_WINDOW_NONE) {
      float v = 0.0f + g[o0 + l] * scale;
      s0[l] += v;
      s1[l] += v * (ya[o0 + l] - hi - lo);
    }
  double t0 = 0, t1 = 0;
  for (int l = 0; l < VEC_FLOATS; l++) t0 += s0[l], t1 += s1[l];
  sums[0] = t0;
  sums[1] = t1;
}

/* Images of task `task`: their rows' dz planes and sums, and (for dconv_w) A of each image, a product on
   this thread. */
static void backward_images(void *ctx, int task, int tasks) {
  const backward_job *j = ctx;
  const block_geom *g = j->g;
  int64_t k = g->taps, s = positions(g), width = CH_YC + k;
  float *frame = j->scratch + task * j->scratch_floats, *cols = frame + j->frame_part, *dz = cols + j->cols_part;
  float *buffer = dz + j->dz_part;
  int64_t out = windows(g);
  dn_unpool_2x2 u = {j->grad, j->codes, g->ow, g->ph_out, g->pw_out, j->scale};
  memset(dz, 0, (size_t)(g->c * s) * sizeof *dz);   /* rows and columns in no window: never written */
  for (int64_t n = dn_split(g->n, task, tasks); n < dn_split(g->n, task + 1, tasks); n++) {
    for (int64_t c = 0; c < g->c; c++) {
      int64_t r = n * g->c + c;
      window_sums(j->codes + r * out, j->grad + r * out, j->y_at + r * out, out, j->scale,
                  j->blob[k + c * width + CH_MEAN], j->sums + 2 * r);
      if (j->dconv_w) dn_unpool_2x2_row(dz + c * s, &u, r);
    }
    if (!j->dconv_w) continue;
    fill_frame(g, j->x, n, frame);
    patches(g, frame, cols);
    dn_blas_sgemm_here(false, true, g->c, k, s, 1.0f, dz, s, cols, patch_stride(g), 0.0f, j->parts + n * g->c * k, k,
                       buffer, NULL);
  }
}

/* Channels [c0, c1): the images' sums and products summed in the order of n, then the gradients. */
static void backward_channels(const void *ctx, int64_t c0, int64_t c1) {
  const backward_job *j = ctx;
  const block_geom *g = j->g;
  int64_t k = g->taps, width = CH_YC + k;
  double m = (double)(g->n * positions(g));
  for (int64_t c = c0; c < c1; c++) {
    double a[2 + MAX_TAPS] = {0};   /* sum dz, sum dz (y - mean), A [K] */
    for (int64_t n = 0; n < g->n; n++) {
      a[0] += j->sums[2 * (n * g->c + c)];
      a[1] += j->sums[2 * (n * g->c + c) + 1];
      if (j->dconv_w)
        for (int64_t t = 0; t < k; t++) a[2 + t] += j->parts[(n * g->c + c) * k + t];
    }
    const double *ch = j->blob + k + c * width;
    double invstd = ch[CH_INVSTD], kc = ch[CH_WEIGHT] * invstd;
    double shift = j->training && m > 0 ? a[0] / m : 0, xs = j->training && m > 0 ? a[1] * invstd * invstd / m : 0;
    if (j->dbias) j->dbias[c] = (float)a[0];
    if (j->dweight) j->dweight[c] = (float)(a[1] * invstd);
    if (j->dconv_b) j->dconv_b[c] = (float)(kc * (a[0] - shift * m));
    if (j->dconv_w)
      for (int64_t t = 0; t < k; t++)
        j->dconv_w[c * k + t] = (float)(kc * (a[2 + t] - shift * j->blob[t] - xs * ch[CH_YC + t]));
  }
}

static dn_status block_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  dn_tensor *x, *codes, *y_at, *blob, *gc = NULL;
  dn_status st = dn_node_saved(node, SAVED_X, &x);
  if (!st) st = dn_node_saved(node, SAVED_CODES, &codes);
  if (!st) st = dn_node_saved(node, SAVED_Y_AT, &y_at);
  if (!st) st = dn_node_saved(node, SAVED_BLOB, &blob);
  if (!st) st = dn_plain_contiguous(&gc, grad);
  for (int i = 1; i < 5 && !st; i++)
    if (node->needs_grad[i]) st = dn_tensor_new(&grad_in[i], DN_F32, node->in_ndim[i], node->in_shape[i]);
  block_geom g = {0};
  if (!st) geometry(&g, node->in_shape[0], node->in_shape[1], (const int64_t[2]){node->ints[NODE_PAD_H],
                                                                                  node->ints[NODE_PAD_W]});
  int64_t k = g.taps, s = positions(&g), work = g.n * g.c * s * (k + 1);
  int most = dn_threads_most_for(work) < g.n ? dn_threads_most_for(work) : (int)(g.n > 0 ? g.n : 1);
  int tasks = dn_threads_for(work) < most ? dn_threads_for(work) : most;
  backward_job j = {.g = &g};
  j.frame_part = (frame_floats(&g) + 15) / 16 * 16;
  j.cols_part = (k * patch_stride(&g) + 15) / 16 * 16;
  j.dz_part = (g.c * s + 15) / 16 * 16;
  j.scratch_floats = j.frame_part + j.cols_part + j.dz_part + (int64_t)(dn_blas_here_floats(g.c, k, s) + 15) / 16 * 16;
  if (!st && !((j.sums = dn_alloc((size_t)(2 * g.n * g.c + 1) * sizeof *j.sums)) &&
               (j.parts = dn_alloc((size_t)(g.n * g.c * k + 1) * sizeof *j.parts)) &&
               (j.scratch = dn_alloc((size_t)(most * j.scratch_floats) * sizeof *j.scratch))))
    st = dn_fail(DN_ENOMEM, "%s: out of memory for its backward's scratch", node->type->name);
  if (!st) {
    j.x = dn_tensor_data(x), j.grad = dn_tensor_data(gc), j.y_at = dn_tensor_data(y_at);
    j.codes = dn_tensor_data(codes);
    j.blob = dn_tensor_data(blob);
    j.training = node->ints[NODE_TRAINING] != 0, j.scale = (float)node->scalars[NODE_SCALE];
    j.dconv_w = grad_in[1] ? dn_tensor_data(grad_in[1]) : NULL;
    j.dconv_b = grad_in[2] ? dn_tensor_data(grad_in[2]) : NULL;
    j.dweight = grad_in[3] ? dn_tensor_data(grad_in[3]) : NULL;
    j.dbias = grad_in[4] ? dn_tensor_data(grad_in[4]) : NULL;
    if (g.n > 0) dn_parallel(tasks, backward_images, &j);
    dn_parallel_rows(g.c, 2 * g.n * (k + 2), backward_channels, &j);
  }
  dn_free(j.scratch);
  dn_free(j.parts);
  dn_free(j.sums);
  dn_tensor_release(gc);
  return st;
}

static const dn_node_type block_node = {.name = OP, .backward = block_backward};

/* --- checks and the entry point ----------------------------------------------------------- */

/* The arguments' checks; *g their geometry. */
static dn_status check_args(block_geom *g, const dn_tensor *x, const dn_tensor *cw, const dn_tensor *cb,
                            const int64_t padding[2], const dn_tensor *weight, const dn_tensor *bias,
                            const dn_tensor *running_mean, const dn_tensor *running_var, bool training,
                            double momentum, double eps) {
  char xs[128], ws[128];
  dn_status st = dn_check_float(OP, "input", x);
  if (!st) st = dn_check_float(OP, "conv_weight", cw);
  if (st) return st;
  if (x->ndim != 4)
    return dn_fail(DN_ESHAPE, "%s: input must be [N, C, H, W] (got shape %s)", OP, dn_shape_str(x, xs, sizeof xs));
  if (cw->ndim != 4)
    return dn_fail(DN_ESHAPE, "%s: conv_weight must be [out, in, KH, KW] (got shape %s)", OP,
                   dn_shape_str(cw, ws, sizeof ws));
  if (x->requires_grad && dn_grad_enabled())
    return dn_fail(DN_EINVAL, "%s: the input must not require grad (the fused block gives no input gradient)", OP);
  if (cw->shape[1] != x->shape[1])
    return dn_fail(DN_ESHAPE, "%s: input %s has %lld channels, conv_weight %s expects %lld", OP,
                   dn_shape_str(x, xs, sizeof xs), (long long)x->shape[1], dn_shape_str(cw, ws, sizeof ws),
                   (long long)cw->shape[1]);
  for (int i = 0; i < 4; i++)
    if (cw->shape[i] == 0 || (i > 0 && x->shape[i] == 0))
      return dn_fail(DN_ESHAPE, "%s: empty dim in input %s or conv_weight %s (only the batch N may be 0)", OP,
                     dn_shape_str(x, xs, sizeof xs), dn_shape_str(cw, ws, sizeof ws));
  int64_t taps = cw->shape[1] * cw->shape[2] * cw->shape[3];
  if (taps > MAX_TAPS)
    return dn_fail(DN_ESHAPE, "%s: conv_weight %s has %lld taps per output (in * KH * KW); at most %d", OP,
                   dn_shape_str(cw, ws, sizeof ws), (long long)taps, MAX_TAPS);
  if (padding[0] < 0 || padding[1] < 0)
    return dn_fail(DN_EINVAL, "%s: padding must be >= 0 (got {%lld, %lld})", OP, (long long)padding[0],
                   (long long)padding[1]);
  /* an image's zero-padded frame is per-task scratch, addressed by int32 offsets */
  int64_t fh, fw, frame;
  if (!dn_size_add(x->shape[2], 2 * (padding[0] < MAX_FRAME ? padding[0] : MAX_FRAME), &fh) ||
      !dn_size_add(x->shape[3], 2 * (padding[1] < MAX_FRAME ? padding[1] : MAX_FRAME), &fw) ||
      !dn_size_mul(fh, fw, &frame) || !dn_size_mul(frame, x->shape[1], &frame) || frame > MAX_FRAME)
    return dn_fail(DN_ESHAPE, "%s: input %s padded by {%lld, %lld} is too large for the fused block (at most %lld "
                   "values an image)", OP, dn_shape_str(x, xs, sizeof xs), (long long)padding[0],
                   (long long)padding[1], (long long)MAX_FRAME);
  int64_t oh = fh - cw->shape[2] + 1, ow = fw - cw->shape[3] + 1;
  if (oh < 2 || ow < 2)
    return dn_fail(DN_ESHAPE,
                   "%s: input %s padded by {%lld, %lld} under conv_weight %s gives %lldx%lld outputs; the 2x2 pool "
                   "needs at least 2x2",
                   OP, dn_shape_str(x, xs, sizeof xs), (long long)padding[0], (long long)padding[1],
                   dn_shape_str(cw, ws, sizeof ws), (long long)oh, (long long)ow);
  int64_t c = cw->shape[0];
  const char *per = "output channel of conv_weight";
  st = dn_batch_norm_check_channels(OP, "conv_bias", cb, c, per);
  if (!st) st = dn_batch_norm_check_channels(OP, "weight", weight, c, per);
  if (!st) st = dn_batch_norm_check_channels(OP, "bias", bias, c, per);
  if (!st) st = dn_batch_norm_check_channels(OP, "running_mean", running_mean, c, per);
  if (!st) st = dn_batch_norm_check_channels(OP, "running_var", running_var, c, per);
  if (st) return st;
  st = dn_batch_norm_check_state(OP, running_mean, running_var, training, momentum, eps);
  if (st) return st;
  geometry(g, x->shape, cw->shape, padding);
  return DN_OK;
}

/* Per channel: the statistics (training: from the moments; the running ones updated), the output's
   parameters (param [C][3]) and the blob's channel entries. */
static void channel_stats(const block_geom *g, const float *w, const float *b, const float *weight,
                          const float *bias, dn_tensor *running_mean, dn_tensor *running_var, bool training,
                          double momentum, double eps, const double *s, const double *gram, double *param,
                          double *blob) {
  int64_t k = g->taps, width = CH_YC + k;
  double m = (double)(g->n * positions(g));
  memcpy(blob, s, (size_t)k * sizeof *s);
  for (int64_t c = 0; c < g->c; c++) {
    const float *wc = w + c * k;
    double *ch = blob + k + c * width, mean, var;
    if (training) {
      double ws = 0, wgw = 0;
      for (int64_t a = 0; a < k; a++) {
        double row = 0;
        for (int64_t bb = 0; bb < k; bb++) row += gram[a * k + bb] * wc[bb];
        ws += wc[a] * s[a];
        wgw += wc[a] * row;
        ch[CH_YC + a] = 0;   /* filled below: Yc = G w - (w . s) s / M */
      }
      double sq = wgw - ws * (ws / m);
      if (sq < 0) sq = 0;
      mean = ws / m + (b ? b[c] : 0.0);
      var = sq / m;
      for (int64_t a = 0; a < k; a++) {
        double row = 0;
        for (int64_t bb = 0; bb < k; bb++) row += gram[a * k + bb] * wc[bb];
        ch[CH_YC + a] = row - ws * s[a] / m;
      }
      if (running_mean) {
        float *rm = DN_F32_AT(running_mean, running_mean->offset + c * running_mean->stride[0]);
        float *rv = DN_F32_AT(running_var, running_var->offset + c * running_var->stride[0]);
        *rm = (float)(momentum * mean + (1 - momentum) * *rm);
        *rv = (float)(momentum * (sq / (m - 1)) + (1 - momentum) * *rv);
      }
    } else {
      mean = *DN_F32_AT(running_mean, running_mean->offset + c * running_mean->stride[0]);
      var = *DN_F32_AT(running_var, running_var->offset + c * running_var->stride[0]);
      for (int64_t a = 0; a < k; a++) ch[CH_YC + a] = 0;
    }
    double invstd = 1 / sqrt(var + eps), wt = weight ? weight[c] : 1.0;
    param[3 * c] = mean;
    param[3 * c + 1] = invstd * wt;
    param[3 * c + 2] = bias ? bias[c] : 0.0;
    ch[CH_MEAN] = mean;
    ch[CH_INVSTD] = invstd;
    ch[CH_WEIGHT] = wt;
  }
}

/* The op's work once its arguments are checked and the dropout's decisions drawn (keep NULL: none). */
static dn_status block(dn_tensor **out, const block_geom *g, dn_tensor *x, dn_tensor *cw, dn_tensor *cb,
                       dn_tensor *weight, dn_tensor *bias, dn_tensor *running_mean, dn_tensor *running_var,
                       bool training, double momentum, double eps, const uint8_t *keep, float scale) {
  int64_t shape[4] = {g->n, g->c, g->ph_out, g->pw_out}, k = g->taps;
  if (g->n == 0) running_mean = running_var = NULL;   /* nothing to learn from */
  dn_tensor *xc = NULL, *wc = NULL, *bc = NULL, *gw = NULL, *gb = NULL, *y = NULL, *codes = NULL, *y_at = NULL,
            *blob = NULL;
  dn_node *node = NULL;
  double *param = NULL, *moments = NULL;
  float *scratch = NULL;
  int64_t blob_bytes = blob_doubles(g) * (int64_t)sizeof(double);
  dn_status st = dn_plain_contiguous(&xc, x);
  if (!st) st = dn_plain_contiguous(&wc, cw);
  if (!st && cb) st = dn_plain_contiguous(&bc, cb);
  if (!st && weight) st = dn_plain_contiguous(&gw, weight);
  if (!st && bias) st = dn_plain_contiguous(&gb, bias);
  if (!st) st = dn_tensor_new(&y, DN_F32, 4, shape);
  if (!st) st = dn_tensor_new(&blob, DN_U8, 1, &blob_bytes);
  if (!st && !((param = dn_alloc((size_t)(3 * g->c + 1) * sizeof *param)) &&
               (moments = dn_alloc((size_t)(k + k * k) * sizeof *moments))))
    st = dn_fail(DN_ENOMEM, "%s: out of memory for %lld channels' parameters", OP, (long long)g->c);
  if (!st) st = dn_record(y, &block_node, 5, (const dn_tensor *[]){x, cw, cb, weight, bias}, &node);
  if (!st && node) st = dn_tensor_new(&codes, DN_U8, 4, shape);
  if (!st && node) st = dn_tensor_new(&y_at, DN_F32, 4, shape);
  forward_job fj = {0};
  /* scratch for the most tasks a call can take, so that what it allocates depends on the shapes alone */
  int64_t work = g->n * g->c * positions(g) * k;
  int most = dn_threads_most_for(work) < g->n ? dn_threads_most_for(work) : (int)(g->n > 0 ? g->n : 1);
  int tasks = dn_threads_for(work) < most ? dn_threads_for(work) : most;
  if (!st) {
    fj.frame_part = (frame_floats(g) + 15) / 16 * 16;
    fj.image_part = (g->c * g->oh * image_w(g) + 4 * POOL_CHUNK + 15) / 16 * 16;   /* + what pool_chunk reads on */
    fj.plane_part = (g->oh * image_w(g) + 4 * POOL_CHUNK + 15) / 16 * 16;
    fj.scratch_floats = fj.frame_part + fj.image_part + fj.plane_part;
    if (!(scratch = dn_alloc((size_t)(most * fj.scratch_floats) * sizeof *scratch)))
      st = dn_fail(DN_ENOMEM, "%s: out of memory for %d scratch buffers", OP, tasks);
    else
      memset(scratch, 0, (size_t)(most * fj.scratch_floats) * sizeof *scratch);   /* the pool's slack reads */
  }
  double *blob_doubles_at = st ? NULL : dn_tensor_data(blob);
  if (!st && training && g->n > 0) st = batch_moments(g, dn_tensor_data(xc), moments, moments + k);
  if (!st && !training) memset(moments, 0, (size_t)(k + k * k) * sizeof *moments);
  if (!st) {
    if (g->n == 0) {   /* an empty batch: a node whose backward gives zeros */
      memset(blob_doubles_at, 0, (size_t)blob_doubles(g) * sizeof(double));
    } else {
      channel_stats(g, dn_tensor_data(wc), bc ? dn_tensor_data(bc) : NULL, gw ? dn_tensor_data(gw) : NULL,
                    gb ? dn_tensor_data(gb) : NULL, running_mean, running_var, training, momentum, eps, moments,
                    moments + k, param, blob_doubles_at);
      fj = (forward_job){g, dn_tensor_data(xc), dn_tensor_data(wc), bc ? dn_tensor_data(bc) : NULL, param,
                         dn_tensor_data(y), codes ? dn_tensor_data(codes) : NULL, y_at ? dn_tensor_data(y_at) : NULL,
                         keep, scale, scratch, fj.scratch_floats, fj.frame_part, fj.image_part, fj.plane_part};
      dn_parallel(tasks, forward_task, &fj);
      if (training && running_mean) {
        dn_bump_version(running_mean);
        dn_bump_version(running_var);
      }
    }
  }
  if (!st && node) {
    node->ints[NODE_TRAINING] = training;
    node->ints[NODE_PAD_H] = g->pad_h;
    node->ints[NODE_PAD_W] = g->pad_w;
    node->scalars[NODE_SCALE] = keep ? scale : 1.0;
    st = dn_node_save(node, SAVED_X, xc);
    if (!st) st = dn_node_save(node, SAVED_CODES, codes);
    if (!st) st = dn_node_save(node, SAVED_Y_AT, y_at);
    if (!st) st = dn_node_save(node, SAVED_BLOB, blob);
  }
  dn_free(scratch);
  dn_free(moments);
  dn_free(param);
  dn_tensor_release(blob);
  dn_tensor_release(y_at);
  dn_tensor_release(codes);
  dn_tensor_release(gb);
  dn_tensor_release(gw);
  dn_tensor_release(bc);
  dn_tensor_release(wc);
  dn_tensor_release(xc);
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  *out = y;
  return DN_OK;
}

dn_status dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(dn_tensor **out, dn_tensor *x, dn_tensor *conv_weight,
                                                        dn_tensor *conv_bias, const int64_t padding[2],
                                                        dn_tensor *weight, dn_tensor *bias, dn_tensor *running_mean,
                                                        dn_tensor *running_var, bool training, double momentum,
                                                        double eps, double p, dn_rng *rng,
                                                        dn_dropout_scaling scaling) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  if (!x || !conv_weight || !padding)
    return dn_fail(DN_EINVAL, "%s: %s is NULL", OP, !x ? "input" : !conv_weight ? "conv_weight" : "padding");
  block_geom g;
  dn_status st = check_args(&g, x, conv_weight, conv_bias, padding, weight, bias, running_mean, running_var,
                            training, momentum, eps);
  if (!st) st = dn_dropout_check_p(OP, p);
  if (!st && p > 0) st = dn_dropout_check_params(OP, p, rng, scaling);
  dn_channel_keep drop = {0};
  if (!st) st = dn_dropout_channel_keep(OP, rng, g.n, g.c, p, scaling, &drop);
  if (st) return st;
  st = block(out, &g, x, conv_weight, conv_bias, weight, bias, running_mean, running_var, training, momentum, eps,
             drop.keep, drop.scale);
  dn_free(drop.keep);
  if (!st && p > 0) rng->offset += drop.advance;   /* (p 0: rng may be NULL) */
  return st;
}
