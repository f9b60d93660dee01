/*
** dropnet's own single-precision GEMM (gemm.c: the blocked driver and its
** threading; gemm_avx512.c, gemm_avx2.c: the micro-kernels and packing of
** each instruction set; gemm_pack.h: the packing both share;
** gemm_direct.h: the unpacked paths for small products, both share).
**
** Same contract as dn_blas_sgemm (blas.h): row-major
** C[m,n] = alpha * op(A) @ op(B) + beta * C, A stored as [k,m] when trans_a,
** B stored as [n,k] when trans_b; m, n, k >= 1; lda/ldb/ldc >= the stored
** row length. beta == 0 never reads C (NaN in C does not propagate), as BLAS.
** Results are bit-identical for any thread count: each element sums its k
** products in the same order whoever computes it (they differ between
** kernels, and between the packed and unpacked paths, which the shape
** picks; the sparse path, which op(A)'s zeros pick, gives the bits of the
** path it stands in for). Returns false, having written nothing, when its
** packing buffers cannot be allocated (the unpacked paths allocate nothing).
**
** Not installed. The kernels are compiled for their instruction sets
** whatever the build targets (per-file options, CMakeLists.txt) and chosen at
** run time: blas.c asks dn_gemm_kernel_supported before using one.
*/
#ifndef DROPNET_GEMM_H
#define DROPNET_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DN_HAVE_GEMM 1

/* Packs a len x width block whose element (p, w) sits at src[p * along +
   w * across] into panels of the kernel's width: panel q holds columns
   [q W, q W + W) as len rows of W values at dst + q * W * len, zeros beyond
   width. */
typedef void (*dn_gemm_pack_fn)(const float *src, int64_t along, int64_t across, int64_t len, int64_t width,
                                float *dst);
/* C[rows, cols] (<= mr x nr, row stride ldc) = alpha * (ap panel @ bp panel)
   + beta * C; beta == 0 does not read C. */
typedef void (*dn_gemm_micro_fn)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int rows,
                                 int cols, float alpha, float beta);

/* C^T[rows, cols] (<= mr x nr) = alpha * (A rows read in place, a[r * a_rs
   + p], @ bp panel) + beta * C^T, with C^T(r, q) at c[q * ldc + r]; beta ==
   0 does not read C. */
typedef void (*dn_gemm_micro_t_fn)(int64_t kc, const float *a, int64_t a_rs, const float *bp, float *c, int64_t ldc,
                                   int rows, int cols, float alpha, float beta);

/* A product for the unpacked paths (gemm_direct.h): op(A)(r, p) =
   a[r * a_rs + p * a_ps]; op(B)(p, j) = b[p * ldb + j] for direct, or
   b[b_off[p] + j] where b_off is given (direct only: rows anywhere),
   b[j * ldb + p] for dot (a_ps == 1 there). */
typedef struct dn_gemm_direct_args {
  int64_t k;
  const float *a;
  int64_t a_rs, a_ps;
  const float *b;
  int64_t ldb;
  const int32_t *b_off;
  float *c;
  int64_t ldc;
  float alpha, beta;
} dn_gemm_direct_args;
/* C[i0:i1, j0:j1] = alpha * op(A) @ op(B) + beta * C over all of k; beta ==
   0 does not read C. Each element's bits depend on k alone, not on the
   region. */
typedef void (*dn_gemm_direct_fn)(const dn_gemm_direct_args *d, int64_t i0, int64_t i1, int64_t j0, int64_t j1);

/*
** Products over shifted rows (gemm_rows.c; a stride-1 convolution read from
** a zero-padded frame of its input, conv_shifted.c): op(B) row p is
** b + off[p], read in place, and the columns are "wide" positions t =
** oh * wide_w + ow of which those with ow < out_w are kept, stored
** compacted at oh * out_w + ow. A tile's columns [t0, t0 + nr) come in
** vectors of the kernel's rows_lanes (16 or 8); dn_gemm_rows_map says, per
** vector, which lanes are kept (bit l: column t0 + v * lanes + l) and where
** the first kept one goes (the kept ones are consecutive there: a row's last
** kept column and the next row's first are neighbours in C).
*/
#define DN_GEMM_ROWS_VECS 3   /* vectors per tile, at most (AVX2's 24 columns: 3 of 8) */
typedef struct dn_gemm_rows_map {
  int64_t at[DN_GEMM_ROWS_VECS];
  uint32_t keep[DN_GEMM_ROWS_VECS];
  uint32_t pick[DN_GEMM_ROWS_VECS];   /* vectors of 8 lanes: the kept lanes in order, 4 bits each (a permute) */
} dn_gemm_rows_map;
/* C[rows (<= mr), the tile's kept columns] = ap panel (mr rows packed as
   pack_a lays out one k block of k) @ the rows b + off[p] (from column t0,
   b already advanced by t0); C row r at c + r * ldc. Overwrites C. */
typedef void (*dn_gemm_rows_fn)(int64_t k, const float *ap, const float *b, const int32_t *off, float *c,
                                int64_t ldc, int rows, const dn_gemm_rows_map *map);

/*
** The sparse path (gemm_sparse.h, gemm.c's sparse_run): op(A) mostly zero
** (ReLU and dropout leave most of a layer's activations, and of the
** gradients that flow back through them, at zero). Per k block of the packed
** path (same kc): each row's nonzeros listed, op(B)'s block packed sparse_cols
** wide, and each row's FMAs run over its nonzeros only.
*/
typedef struct dn_gemm_sparse_lists {
  int64_t m, kc, sub, nsub;  /* rows; the k block; its sub-blocks of sub rows of B (nsub of them) */
  int32_t *idx;              /* row r's entries at r * kc: B row offsets in the packed block (p * sparse_cols) */
  float *val;                /* and their values */
  int32_t *start;            /* row r's first entry of sub-block s at start[r * (nsub + 1) + s]; s = nsub: the end */
  int32_t *count;            /* scratch: m counts */
} dn_gemm_sparse_lists;
/* The lists of op(A)[0:m, 0:kc] (op(A)(r, p) = a[r * a_rs + p * a_ps], a_rs or a_ps 1): the nonzeros
   (NaN included) of each row in k order. */
typedef void (*dn_gemm_sparse_lists_fn)(const float *a, int64_t a_rs, int64_t a_ps, dn_gemm_sparse_lists *l);
/* The nonzeros of op(A)[rows r with r % step == 0, 0:k]: the density estimate. */
typedef int64_t (*dn_gemm_sparse_count_fn)(const float *a, int64_t a_rs, int64_t a_ps, int64_t m, int64_t k,
                                           int64_t step);
/* Packs op(B)[p, j] = src[p * along + j * across], p < kc, j < cols (<= sparse_cols), as kc rows of
   sparse_cols values (zeros past cols); returns whether every value is finite. */
typedef bool (*dn_gemm_sparse_pack_fn)(const float *src, int64_t along, int64_t across, int64_t kc, int64_t cols,
                                       float *dst);
typedef struct dn_gemm_sparse_args {
  const dn_gemm_sparse_lists *lists;
  const float *bp;           /* the packed block */
  float *carry;              /* m x sparse_cols partial sums between sub-blocks, 64-byte aligned */
  float *c;                  /* C's columns [j, j + cols) */
  int64_t ldc;
  int cols;
  float alpha, beta;         /* beta as the packed path applies it in this k block */
  const float *a;            /* every_term: op(A)'s block, read through a_rs, a_ps */
  int64_t a_rs, a_ps;
  bool every_term;           /* op(B) has a non-finite value: 0 * it is NaN, so no term is skipped */
} dn_gemm_sparse_args;
/* C[0:m, j:j+cols] for one k block: alpha * (the block's sums) + beta * C; beta == 0 does not read C. */
typedef void (*dn_gemm_sparse_fn)(const dn_gemm_sparse_args *s);

typedef struct dn_gemm_kernel {
  const char *name;          /* dn_matmul_backend's "dropnet <name>" */
  const char *cpu_features[3]; /* __builtin_cpu_supports names it needs, NULL-ended */
  int mr, nr;                /* the micro-tile: rows of op(A), columns of op(B) */
  int kc, mc, nc;            /* blocks: k, rows of A per packed block, columns of B */
  dn_gemm_pack_fn pack_a;    /* into mr-wide panels */
  dn_gemm_pack_fn pack_b;    /* into nr-wide panels */
  dn_gemm_micro_fn micro;
  int direct_cols;           /* direct's column tile (its rows come in near-equal tiles) */
  int direct_max_m;          /* direct up to this m (gemm.c's unpacked_path) */
  int dot_rows, dot_cols;    /* dot's tile */
  dn_gemm_direct_fn direct;  /* !trans_b, nothing packed */
  dn_gemm_direct_fn dot;     /* !trans_a && trans_b, nothing packed */
  dn_gemm_micro_t_fn micro_t; /* x @ W^T as (W @ x^T)^T, W not packed; NULL: none */
  dn_gemm_rows_fn rows;      /* products over shifted rows; NULL: none */
  int rows_lanes;            /* rows' vectors: lanes each (nr = rows_lanes * vectors, <= DN_GEMM_ROWS_VECS) */
  int sparse_cols, sparse_lanes; /* the sparse path's column chunk; its k sub-blocks are multiples of the lanes */
  dn_gemm_sparse_count_fn sparse_count;
  dn_gemm_sparse_lists_fn sparse_lists;
  dn_gemm_sparse_pack_fn sparse_pack;
  dn_gemm_sparse_fn sparse;
} dn_gemm_kernel;

extern const dn_gemm_kernel dn_gemm_kernel_avx512, dn_gemm_kernel_avx2;

/* Whether this CPU (and OS) runs the kernel's instructions. */
bool dn_gemm_kernel_supported(const dn_gemm_kernel *kernel);

/* Which path dn_gemm takes: chosen from the shape (and kernel) alone
   unless dn_gemm_force_path says otherwise (tests and benchmarks). */
typedef enum dn_gemm_path {
  DN_GEMM_AUTO,       /* the default: the shape decides */
  DN_GEMM_PACKED,     /* packed (or its narrow transpose) */
  DN_GEMM_DIRECT,     /* direct or dot where the transposes allow, else packed */
  DN_GEMM_WT,         /* !trans_a && trans_b: W unpacked (micro_t) where the kernel has it, else packed */
  DN_GEMM_SPARSE,     /* the sparse path whatever op(A)'s density (up to gemm.c's SPARSE_MAX_ROWS rows) */
} dn_gemm_path;
extern dn_gemm_path dn_gemm_force_path;
/* Whether dn_gemm takes the sparse path where op(A) is mostly zero (the same bits either way). */
extern bool dn_gemm_sparse_auto;

bool dn_gemm(const dn_gemm_kernel *kernel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* The packed product on the calling thread alone (inside a parallel task:
   a convolution's per-image products), packing into the caller's buffer of
   dn_gemm_here_floats(kernel, m, n, k) floats, 64-byte aligned. Same
   contract as dn_gemm otherwise; never fails. Its bits are dn_gemm's packed
   path's (a function of the shape alone). */
size_t dn_gemm_here_floats(const dn_gemm_kernel *kernel, int64_t m, int64_t n, int64_t k);
/* A source of op(B) that packs itself (a convolution's im2col, written
   straight into the panels): writes op(B)[pc:pc+kc, jc:jc+nc] as the
   kernel's pack_b lays it out, panels of `width` columns, panel q at dst +
   q * width * kc holding kc rows of width values, zeros past nc. */
typedef void dn_gemm_b_source(void *ctx, int64_t pc, int64_t kc, int64_t jc, int64_t nc, int64_t width, float *dst);
/* dn_gemm_here with op(B) from source (its values must not depend on the
   call's blocking). */
void dn_gemm_here_b(const dn_gemm_kernel *kernel, bool trans_a, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, dn_gemm_b_source *source, void *ctx, float beta, float *c,
                    int64_t ldc, float *buffer, const float *a_packed);
void dn_gemm_here(const dn_gemm_kernel *kernel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                  float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc, float *buffer, const float *a_packed);
/* All of op(A) [m, k] packed once, for products that share it (a
   convolution's weight, for every image): dn_gemm_a_floats(kernel, m, k)
   floats at dst. Passed as a_packed (else NULL), the products read it
   instead of packing A themselves. */
size_t dn_gemm_a_floats(const dn_gemm_kernel *kernel, int64_t m, int64_t k);
void dn_gemm_pack_a(const dn_gemm_kernel *kernel, bool trans_a, int64_t m, int64_t k, const float *a, int64_t lda,
                    float *dst);

/* The shifted-rows products (kernel->rows non-NULL), on the calling thread:
   dn_gemm_rows_tiles(kernel, wide_w, out_h, out_w) tiles of columns cover
   the (out_h - 1) * wide_w + out_w wide positions; their maps come from
   dn_gemm_rows_maps (a function of the four sizes). dn_gemm_rows then
   computes C[m, out_h * out_w] (row stride ldc) = A @ B, A packed whole as
   one k block: a_packed holds ceil(m / mr) panels of k x mr (row r of panel
   q at A's row q * mr + r; rows past m zero), B row p at b + off[p]; it
   reads b[off[p] + t] for t < tiles * nr, so the caller's buffer must
   reach that far. One FMA chain per element over p in order: its bits
   depend on m, k and the values alone. */
/* C[m, n] = alpha * op(A) @ B + beta * C by the direct path on the calling
   thread, B's row p at b + b_off[p] (n values; a stride-1 convolution's dw
   over the valid positions of a padded image: conv_dw_shifts.c). Its bits
   are those of the same product with B's rows stored ldb apart. */
void dn_gemm_here_offsets(const dn_gemm_kernel *kernel, bool trans_a, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *a, int64_t lda, const float *b, const int32_t *b_off, float beta, float *c,
                          int64_t ldc);

int64_t dn_gemm_rows_tiles(const dn_gemm_kernel *kernel, int64_t wide_w, int64_t out_h, int64_t out_w);
void dn_gemm_rows_maps(const dn_gemm_kernel *kernel, int64_t wide_w, int64_t out_h, int64_t out_w,
                       dn_gemm_rows_map *maps);
void dn_gemm_rows(const dn_gemm_kernel *kernel, int64_t m, int64_t k, const float *a_packed, const float *b,
                  const int32_t *off, const dn_gemm_rows_map *maps, int64_t tiles, float *c, int64_t ldc);
#endif

#endif
