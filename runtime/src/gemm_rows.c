/*
** gemm.h's products over shifted rows: which wide columns a tile keeps, and
** the loop over tiles and row panels around the kernel's rows function.
** Columns outer: a tile's reach into B (k rows of nr values, a few KB of a
** convolution's frame) stays in L1 while A's panels stream past from L2.
** Not installed.
*/
#include "gemm.h"

#ifdef DN_HAVE_GEMM

static int64_t wide_columns(int64_t wide_w, int64_t out_h, int64_t out_w) { return (out_h - 1) * wide_w + out_w; }

int64_t dn_gemm_rows_tiles(const dn_gemm_kernel *kernel, int64_t wide_w, int64_t out_h, int64_t out_w) {
  return (wide_columns(wide_w, out_h, out_w) + kernel->nr - 1) / kernel->nr;
}

void dn_gemm_rows_maps(const dn_gemm_kernel *kernel, int64_t wide_w, int64_t out_h, int64_t out_w,
                       dn_gemm_rows_map *maps) {
  int lanes = kernel->rows_lanes, vecs = kernel->nr / lanes;
  int64_t n = wide_columns(wide_w, out_h, out_w), tiles = dn_gemm_rows_tiles(kernel, wide_w, out_h, out_w);
  int64_t t = 0, oh = 0, ow = 0;   /* column t is wide row oh, column ow (walked, not divided) */
  for (int64_t q = 0; q < tiles; q++) {
    dn_gemm_rows_map *m = &maps[q];
    *m = (dn_gemm_rows_map){0};
    for (int v = 0; v < vecs; v++)
      for (int l = 0, kept = 0; l < lanes; l++, t++) {
        if (t < n && ow < out_w) {
          if (!kept) m->at[v] = oh * out_w + ow;
          m->keep[v] |= 1u << l;
          if (lanes <= 8) m->pick[v] |= (uint32_t)l << (4 * kept);
          kept++;
        }
        if (++ow == wide_w) ow = 0, oh++;
      }
  }
}

void dn_gemm_rows(const dn_gemm_kernel *kernel, int64_t m, int64_t k, const float *a_packed, const float *b,
                  const int32_t *off, const dn_gemm_rows_map *maps, int64_t tiles, float *c, int64_t ldc) {
  int64_t mr = kernel->mr, nr = kernel->nr;
  for (int64_t q = 0; q < tiles; q++)
    for (int64_t i = 0; i < m; i += mr)
      kernel->rows(k, a_packed + i * k, b + q * nr, off, c + i * ldc, ldc, (int)(m - i < mr ? m - i : mr), &maps[q]);
}

#endif
