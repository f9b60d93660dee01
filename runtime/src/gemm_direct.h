/*
** gemm.c's unpacked paths, written once and included by each kernel's file
** (gemm_avx512.c, gemm_avx2.c) after it has defined its vector type and
** operations (DV_*, dv_*) and tile sizes; compiled for that file's
** instruction set. Contract: dn_gemm_direct_fn in gemm.h.
**
** direct: op(B) stored along N (!trans_b): each k step loads DV_COLS values
** of a B row in place (masked at the ragged edge) and broadcasts op(A)'s
** elements from wherever they are (two strides), so neither operand is
** copied. Every element sums its products in k order in one FMA chain from
** zero, then alpha * sum (+ beta * C fused), as the packed micro-kernels do:
** when k fits one k block of the packed path the bits are the same.
**
** dot: both operands contiguous along k (op(A) = A, op(B) = B^T: x @ W^T):
** DOT_R rows of A by DOT_J rows of B, vectors along k, horizontal sums at
** the end. Its sums run in another order than the other paths' (lane
** partial sums), a function of k alone.
*/
#ifndef DROPNET_GEMM_DIRECT_H
#define DROPNET_GEMM_DIRECT_H

#if !defined(DV_LANES) || !defined(DR) || !defined(DV) || !defined(DOT_R) || !defined(DOT_J)
#error "gemm_direct.h: define the vector operations and tile sizes before including it"
#endif

#define DV_COLS (DV * DV_LANES)

static inline int64_t direct_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* ROWS rows from i, columns [j, j + cols), cols <= DV_COLS; FULL: cols ==
   DV_COLS; PREFETCH: the next tile's next_cols columns of B too; OFFSETS:
   B's rows at d->b_off (else ldb apart); UNIT: op(A)'s rows 1 apart (A^T:
   the rows' elements of a k step side by side, their addresses constant
   offsets of one pointer; with the row stride a variable, the eight
   addresses took eight registers and spilled: g^T @ x, 64 x 32 by 32 x 784,
   one thread, Zen 4: 88 -> 103 GFLOP/s). */
static inline __attribute__((always_inline)) void direct_tile(const dn_gemm_direct_args *d, int64_t i, int64_t j,
                                                              int cols, int next_cols, const int ROWS,
                                                              const bool FULL, const bool PREFETCH,
                                                              const bool OFFSETS, const bool UNIT) {
  DV_T acc[DR][DV];
  dv_mask mask[DV];
#pragma GCC unroll 16
  for (int v = 0; v < DV; v++) mask[v] = dv_mask_of(cols - v * DV_LANES);
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 16
    for (int v = 0; v < DV; v++) acc[r][v] = dv_zero();
  float *c = d->c + i * d->ldc + j;
  const int64_t rs = d->a_rs, ps = d->a_ps, ldb = d->ldb, k = d->k;
  /* rows r and r + 4 of op(A) from two pointers at the offsets 0, rs, 2 rs and 3 rs (address modes: an index
     times 4 or 8): with eight pointers, or offsets r * rs, GCC kept some in vector registers and moved one to a
     general register before half the broadcasts (the Winograd dw's products [64, 49] @ [49, 64], AVX-512, one
     Zen 4 core, `BENCH_GEMM_PATH=direct bench_gemm_shape 1 avx512 64 49 64 0 0`: 75-81 -> 84-90 GFLOP/s of thread
     time) */
  const float *a = d->a + i * rs, *a4 = a + (ROWS > 4 ? 4 * rs : 0), *b = d->b + j;
  const int64_t rs3 = 3 * rs;
  const int32_t *off = d->b_off;
  /* the vectors the tile's columns reach; those past them are not loaded, multiplied or stored */
  const int live = (cols + DV_LANES - 1) / DV_LANES;
  for (int64_t p = 0; p < k; p++) {
    DV_T bv[DV];
    const float *bp = OFFSETS ? d->b + j + off[p] : b;
#pragma GCC unroll 16
    for (int v = 0; v < DV; v++)
      /* whole vectors where the edge does not cut them: AVX2's masked loads are slow on AMD's cores */
      bv[v] = FULL || cols - v * DV_LANES >= DV_LANES ? dv_load(bp + v * DV_LANES)
              : v < live                             ? dv_load_mask(bp + v * DV_LANES, mask[v])
                                                     : dv_zero();
    /* kept in registers: GCC otherwise folds each load into every row's FMA, ROWS loads of a vector per step
       instead of one (as in dot_tile below); AVX2's 4 x 24 tile then waited on the loads (Winograd dw's
       [32, 490] @ [490, 64], one Zen 4 core: 50 -> 95-102 GFLOP/s; AVX-512: 66 -> 83 at [32, 49] @ [49, 64]) */
#pragma GCC unroll 16
    for (int v = 0; v < DV; v++) __asm__("" : "+v"(bv[v]));
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; r++) {
      const float *base = r < 4 ? a : a4;
      int q = r & 3;
      DV_T av = dv_bcast(UNIT ? a + r : base + (q == 0 ? 0 : q == 1 ? rs : q == 2 ? 2 * rs : rs3));
#pragma GCC unroll 16
      for (int v = 0; v < DV; v++)
        if (FULL || v < live) acc[r][v] = dv_fma(av, bv[v], acc[r][v]);
    }
    if (PREFETCH) {
      _mm_prefetch((const char *)(b + DV_COLS), _MM_HINT_T0);
      _mm_prefetch((const char *)(b + DV_COLS + next_cols - 1), _MM_HINT_T0);
    }
    a += ps;
    a4 += ps;
    b += ldb;
  }
  DV_T va = dv_set1(d->alpha), vb = dv_set1(d->beta);
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 16
    for (int v = 0; v < DV; v++) {
      /* a vector the edge does not cut is stored whole: AMD's cores run AVX2's masked stores as microcode */
      float *cp = c + r * d->ldc + v * DV_LANES;
      bool whole = FULL || cols - v * DV_LANES >= DV_LANES;
      DV_T x = dv_mul(acc[r][v], va);
      if (d->beta != 0.0f) x = dv_fma(whole ? dv_load(cp) : dv_load_mask(cp, mask[v]), vb, x);
      if (whole) dv_store(cp, x);
      else if (cols > v * DV_LANES) dv_store_mask(cp, mask[v], x);
    }
}

static inline __attribute__((always_inline)) void direct_tile_rows(const dn_gemm_direct_args *d, int64_t i,
                                                                   int64_t j, int cols, int next_cols, int rows,
                                                                   const bool FULL, const bool PREFETCH,
                                                                   const bool OFFSETS) {
  bool unit = d->a_rs == 1;
  switch (rows) {
#define DIRECT_ROWS(n)                                                                        \
  case n:                                                                                     \
    if (unit) direct_tile(d, i, j, cols, next_cols, n, FULL, PREFETCH, OFFSETS, true);        \
    else direct_tile(d, i, j, cols, next_cols, n, FULL, PREFETCH, OFFSETS, false);            \
    break;
    DIRECT_ROWS(1) DIRECT_ROWS(2) DIRECT_ROWS(3) DIRECT_ROWS(4)
#if DR > 4
    DIRECT_ROWS(5) DIRECT_ROWS(6) DIRECT_ROWS(7) DIRECT_ROWS(8)
#endif
#if DR > 8
#error "gemm_direct.h: DR up to 8"
#endif
#undef DIRECT_ROWS
  default: break;
  }
}

/* C[i0:i1, j0:j1]: column tiles outer (a B panel, k x DV_COLS, is read
   from memory once and from L1 by every row tile after the first), rows
   in near-equal tiles of at most DR (10 rows: 5 + 5, not 8 + 2). The first
   row tile prefetches the next B panel: its rows, often 4 KB apart, are
   each a new page, where the hardware prefetchers do not follow (measured
   on [10,128]@[128,1024] with the operands evicted before each call, 7
   alternating rounds: 64 -> 73 GFLOP/s; 128 -> 126 with them in cache). */
static void direct(const dn_gemm_direct_args *d, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  int64_t tiles = (i1 - i0 + DR - 1) / DR;
  for (int64_t j = j0; j < j1; j += DV_COLS) {
    int cols = (int)direct_min(DV_COLS, j1 - j);
    for (int64_t t = 0; t < tiles; t++) {
      int64_t i = i0 + (i1 - i0) * t / tiles, rows = i0 + (i1 - i0) * (t + 1) / tiles - i;
      int next = (int)direct_min(DV_COLS, j1 - j - cols);
      if (d->b_off) {   /* rows anywhere: no next panel to prefetch along */
        if (cols == DV_COLS) direct_tile_rows(d, i, j, cols, 0, (int)rows, true, false, true);
        else direct_tile_rows(d, i, j, cols, 0, (int)rows, false, false, true);
      } else if (t == 0 && next > 0) {
        direct_tile_rows(d, i, j, cols, next, (int)rows, true, true, false);
      } else if (cols == DV_COLS) {
        direct_tile_rows(d, i, j, cols, 0, (int)rows, true, false, false);
      } else {
        direct_tile_rows(d, i, j, cols, 0, (int)rows, false, false, false);
      }
    }
  }
}

/* C[i:i+rows, j:j+JS] (rows <= DOT_R; a row past the last reads the last
   one again, its sums not stored). */
static inline __attribute__((always_inline)) void dot_tile(const dn_gemm_direct_args *d, int64_t i, int rows,
                                                           int64_t j, const int JS) {
  DV_T acc[DOT_R][DOT_J];
  const float *ar[DOT_R], *br[DOT_J];
#pragma GCC unroll 16
  for (int r = 0; r < DOT_R; r++) {
    ar[r] = d->a + (i + (r < rows ? r : rows - 1)) * d->a_rs;
#pragma GCC unroll 16
    for (int q = 0; q < JS; q++) acc[r][q] = dv_zero();
  }
#pragma GCC unroll 16
  for (int q = 0; q < JS; q++) br[q] = d->b + (j + q) * d->ldb;
  int64_t k = d->k, k_full = k / DV_LANES * DV_LANES;
  for (int64_t p = 0; p < k_full; p += DV_LANES) {
    DV_T bv[DOT_J];
#pragma GCC unroll 16
    for (int q = 0; q < JS; q++) {
      bv[q] = dv_load(br[q] + p);
      /* kept in a register: GCC otherwise folds the load into each row's FMA, DOT_R loads of it per step
         instead of one, which a core with one 512-bit load a cycle (Zen 4) cannot feed (x @ W^T, 32 x 784 by
         64 x 784, one thread: ~70 -> ~100 GFLOP/s); the same for A's vector below */
      __asm__("" : "+v"(bv[q]));
    }
#pragma GCC unroll 16
    for (int r = 0; r < DOT_R; r++) {
      DV_T av = dv_load(ar[r] + p);
      __asm__("" : "+v"(av));
#pragma GCC unroll 16
      for (int q = 0; q < JS; q++) acc[r][q] = dv_fma(av, bv[q], acc[r][q]);
    }
  }
  if (k_full < k) {
    dv_mask mk = dv_mask_of((int)(k - k_full));
    DV_T bv[DOT_J];
#pragma GCC unroll 16
    for (int q = 0; q < JS; q++) bv[q] = dv_load_mask(br[q] + k_full, mk);
#pragma GCC unroll 16
    for (int r = 0; r < DOT_R; r++) {
      DV_T av = dv_load_mask(ar[r] + k_full, mk);
#pragma GCC unroll 16
      for (int q = 0; q < JS; q++) acc[r][q] = dv_fma(av, bv[q], acc[r][q]);
    }
  }
  float alpha = d->alpha, beta = d->beta;
#pragma GCC unroll 16
  for (int r = 0; r < DOT_R; r++)
    if (r < rows) {
      float *c = d->c + (i + r) * d->ldc + j;
#pragma GCC unroll 16
      for (int q = 0; q < JS; q++) {
        float x = dv_hsum(acc[r][q]) * alpha;
        c[q] = beta == 0.0f ? x : fmaf(c[q], beta, x);
      }
    }
}

/* C[i0:i1, j0:j1]: column groups of DOT_J outer (their rows of B stay in
   L1 while every row group of A streams past). */
static void dot(const dn_gemm_direct_args *d, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; j += DOT_J) {
    int js = (int)direct_min(DOT_J, j1 - j);
    for (int64_t i = i0; i < i1; i += DOT_R) {
      int rows = (int)direct_min(DOT_R, i1 - i);
      switch (js) {
#define DOT_COLS(n) \
  case n: dot_tile(d, i, rows, j, n); break;
        DOT_COLS(1) DOT_COLS(2) DOT_COLS(3)
#if DOT_J > 3
        DOT_COLS(4) DOT_COLS(5)
#endif
#if DOT_J > 5
#error "gemm_direct.h: DOT_J up to 5"
#endif
#undef DOT_COLS
      default: break;
      }
    }
  }
}

#endif
