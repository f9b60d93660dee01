/*
** gemm.c's sparse path, written once and included by each kernel's file after
** gemm_pack.h and its vector operations (DV_*, dv_*, as for gemm_direct.h),
** with SP_V, the accumulator vectors of a row (SP_COLS = SP_V * DV_LANES
** columns of C per chunk), and dv_nonzero_bits. Contracts: gemm.h's
** dn_gemm_sparse_*.
**
** Why: after ReLU and dropout most of a layer's activations are zero (the
** reference MLP's hidden layers keep 7-20% after one epoch, its dropped input
** 40%), and so are the gradients that flow back through the same masks. A
** dense product multiplies all those zeros; this one lists each row's
** nonzeros of op(A) per k block and runs, for each, one broadcast and SP_V
** FMAs against the block's op(B) row, which is packed SP_COLS wide and
** contiguous (the row's accumulators, SP_V vectors, live in registers).
**
** The same bits as the packed path: each element's FMA chain runs over the
** same k blocks in the same order, from +0, without its zero terms. A chain
** from +0 never holds -0 in round-to-nearest, and x + (+-0) == x for every
** other x, so dropping a term 0 * b changes nothing while b is finite; the
** store is the micro-kernels' (alpha * sum, then beta * C fused in). A block
** with a non-finite op(B) value (where 0 * b is NaN) runs every term.
** Denormals: with DAZ set (the default, dn_set_flush_denormal) the compare
** reads a denormal as zero, as the FMA does.
**
** The rows of a chunk's block, kc x SP_COLS (AVX-512: 128 KB at kc 256) do not
** fit L1, and a row's nonzeros land anywhere in it; the block is walked in
** sub-blocks of B's rows (sized by gemm.c for about a dozen nonzeros a row),
** every row of C in turn, its partial sums carried in a scratch between
** sub-blocks (a float stored and loaded is the same float, so the chain is
** unchanged). Measured on one Zen 4 core, [128, 1024] at 25% nonzero @
** [1024, 1024]: 1.58 ms without sub-blocks, 1.32 with sub-blocks of 64 rows,
** against 2.45 for the dense kernel (a first version of this file).
*/
#ifndef DROPNET_GEMM_SPARSE_H
#define DROPNET_GEMM_SPARSE_H

#if !defined(DV_LANES) || !defined(SP_V)
#error "gemm_sparse.h: define the vector operations and SP_V before including it"
#endif

#define SP_COLS (SP_V * DV_LANES)

/* The nonzeros of n values (n <= DV_LANES) from p. */
static inline int64_t sparse_popcount(const float *p, int n) { return __builtin_popcount(dv_nonzero_bits(p, n)); }

static inline int sparse_lanes(int64_t left) { return (int)(left < DV_LANES ? left : DV_LANES); }

static int64_t sparse_count(const float *a, int64_t a_rs, int64_t a_ps, int64_t m, int64_t k, int64_t step) {
  int64_t nonzero = 0;
  if (a_ps == 1) {   /* rows contiguous along k */
    for (int64_t r = 0; r < m; r += step)
      for (int64_t p = 0; p < k; p += DV_LANES) nonzero += sparse_popcount(a + r * a_rs + p, sparse_lanes(k - p));
    return nonzero;
  }
  /* op(A) = A^T: a stored row holds one k of every row of op(A); count every step-th stored row */
  for (int64_t p = 0; p < k; p += step)
    for (int64_t r = 0; r < m; r += DV_LANES) nonzero += sparse_popcount(a + p * a_ps + r, sparse_lanes(m - r));
  return nonzero;
}

static void sparse_lists(const float *a, int64_t a_rs, int64_t a_ps, dn_gemm_sparse_lists *l) {
  const int64_t m = l->m, kc = l->kc, sub = l->sub, nsub = l->nsub;
  int32_t *restrict idx = l->idx, *restrict start = l->start;
  float *restrict val = l->val;
  if (a_ps == 1) {
    for (int64_t r = 0; r < m; r++) {
      const float *row = a + r * a_rs;
      int32_t *ri = idx + r * kc, *rs = start + r * (nsub + 1);
      float *rv = val + r * kc;
      int32_t n = 0;
      for (int64_t p0 = 0; p0 < kc; p0 += DV_LANES) {
        if (p0 % sub == 0) rs[p0 / sub] = n;
        unsigned bits = dv_nonzero_bits(row + p0, sparse_lanes(kc - p0));
        while (bits) {
          int64_t p = p0 + __builtin_ctz(bits);
          ri[n] = (int32_t)(p * SP_COLS);
          rv[n++] = row[p];
          bits &= bits - 1;
        }
      }
      rs[nsub] = n;
    }
    return;
  }
  /* A^T: k outer, each stored row dealt out to the rows of op(A) it holds nonzeros of */
  int32_t *restrict count = l->count;
  for (int64_t r = 0; r < m; r++) count[r] = 0;
  for (int64_t p = 0; p < kc; p++) {
    if (p % sub == 0)
      for (int64_t r = 0; r < m; r++) start[r * (nsub + 1) + p / sub] = count[r];
    const float *row = a + p * a_ps;
    for (int64_t r0 = 0; r0 < m; r0 += DV_LANES) {
      unsigned bits = dv_nonzero_bits(row + r0, sparse_lanes(m - r0));
      while (bits) {
        int64_t r = r0 + __builtin_ctz(bits);
        int32_t e = count[r]++;
        idx[r * kc + e] = (int32_t)(p * SP_COLS);
        val[r * kc + e] = row[r];
        bits &= bits - 1;
      }
    }
  }
  for (int64_t r = 0; r < m; r++) start[r * (nsub + 1) + nsub] = count[r];
}

/* x * 0 is NaN for an infinite or NaN x, +-0 otherwise: the sums of those say whether all were finite. SP_V
   sums, so that no FMA waits for the one before: with one sum the check ran at a vector per FMA latency, and
   packing x @ W^T's blocks took ~5% longer (AVX-512, one Zen 4 core, [128,1024] @ [1024,784]^T at 7%). */
static bool sparse_pack(const float *src, int64_t along, int64_t across, int64_t kc, int64_t cols, float *dst) {
  DV_T nan[SP_V], zero = dv_zero();
#pragma GCC unroll 16
  for (int v = 0; v < SP_V; v++) nan[v] = dv_zero();
  if (across == 1 && cols == SP_COLS) {
    /* whole rows of op(B) in place: copied and checked in one pass */
    for (int64_t p = 0; p < kc; p++)
#pragma GCC unroll 16
      for (int v = 0; v < SP_V; v++) {
        DV_T x = dv_load(src + p * along + v * DV_LANES);
        dv_store(dst + p * SP_COLS + v * DV_LANES, x);
        nan[v] = dv_fma(x, zero, nan[v]);
      }
  } else {
    pack_block(src, along, across, kc, cols, dst, SP_COLS);
    for (int64_t i = 0; i < kc * SP_COLS; i += SP_COLS)
#pragma GCC unroll 16
      for (int v = 0; v < SP_V; v++) nan[v] = dv_fma(dv_load(dst + i + v * DV_LANES), zero, nan[v]);
  }
  float s = 0.0f;
  for (int v = 0; v < SP_V; v++) s += dv_hsum(nan[v]);
  return s == s;
}

/* Row r's SP_V accumulators: from +0 or the carry; its terms of sub-block s (or, every_term, all kc of
   op(A)'s row); then into the carry, or (last) into C. */
static inline __attribute__((always_inline)) void sparse_row(const dn_gemm_sparse_args *s, int64_t r, int64_t sb,
                                                             bool first, bool last) {
  const dn_gemm_sparse_lists *l = s->lists;
  DV_T acc[SP_V];
  float *carry = s->carry + r * SP_COLS;
#pragma GCC unroll 16
  for (int v = 0; v < SP_V; v++) acc[v] = first ? dv_zero() : dv_load(carry + v * DV_LANES);
  if (s->every_term) {
    const float *a = s->a + r * s->a_rs;
    for (int64_t p = 0; p < l->kc; p++) {
      DV_T av = dv_set1(a[p * s->a_ps]);
      const float *b = s->bp + p * SP_COLS;
#pragma GCC unroll 16
      for (int v = 0; v < SP_V; v++) acc[v] = dv_fma(av, dv_load(b + v * DV_LANES), acc[v]);
    }
  } else {
    const int32_t *start = l->start + r * (l->nsub + 1);
    const int32_t *idx = l->idx + r * l->kc;
    const float *val = l->val + r * l->kc;
    for (int32_t e = start[sb]; e < start[sb + 1]; e++) {
      DV_T av = dv_set1(val[e]);
      const float *b = s->bp + idx[e];
#pragma GCC unroll 16
      for (int v = 0; v < SP_V; v++) acc[v] = dv_fma(av, dv_load(b + v * DV_LANES), acc[v]);
    }
  }
  if (!last) {
#pragma GCC unroll 16
    for (int v = 0; v < SP_V; v++) dv_store(carry + v * DV_LANES, acc[v]);
    return;
  }
  DV_T va = dv_set1(s->alpha), vb = dv_set1(s->beta);
  float *c = s->c + r * s->ldc;
#pragma GCC unroll 16
  for (int v = 0; v < SP_V; v++) {
    int n = s->cols - v * DV_LANES;
    if (n <= 0) break;
    DV_T x = dv_mul(acc[v], va);
    if (n >= DV_LANES) {
      if (s->beta != 0.0f) x = dv_fma(dv_load(c + v * DV_LANES), vb, x);
      dv_store(c + v * DV_LANES, x);
    } else {
      dv_mask mk = dv_mask_of(n);
      if (s->beta != 0.0f) x = dv_fma(dv_load_mask(c + v * DV_LANES, mk), vb, x);
      dv_store_mask(c + v * DV_LANES, mk, x);
    }
  }
}

static void sparse(const dn_gemm_sparse_args *s) {
  const dn_gemm_sparse_lists *l = s->lists;
  int64_t nsub = s->every_term ? 1 : l->nsub;
  for (int64_t sb = 0; sb < nsub; sb++) {
    bool first = sb == 0, last = sb == nsub - 1;
    if (first && last)
      for (int64_t r = 0; r < l->m; r++) sparse_row(s, r, sb, true, true);
    else if (first)
      for (int64_t r = 0; r < l->m; r++) sparse_row(s, r, sb, true, false);
    else if (last)
      for (int64_t r = 0; r < l->m; r++) sparse_row(s, r, sb, false, true);
    else
      for (int64_t r = 0; r < l->m; r++) sparse_row(s, r, sb, false, false);
  }
}

#endif
