/*
** dropnet's own sgemm (contract in gemm.h): the blocked driver and its
** threading, shared by the kernels of gemm_avx512.c and gemm_avx2.c, which
** bring their micro-tile (mr x nr), block sizes and packing (gemm.h's
** dn_gemm_kernel). blas.c picks one at run time or leaves products to
** OpenBLAS.
**
** Why our own: the OpenBLAS that Debian 12 ships (0.3.21) predates the
** AVX-512 cores it runs on here; its Haswell (AVX2) kernels reach at most
** half of what 512-bit FMA units can do, and every step of a dense model
** spends most of its time here. On machines without AVX-512 (Zen 3) the
** AVX2 kernel keeps the same driver, and results independent of the thread
** count, at OpenBLAS's speed or better.
**
** Measured on the 2-core Sapphire Rapids (KVM guest, other jobs running:
** medians of alternating rounds in quiet spells), GFLOP/s and % of the FMA
** peak that tests/bench/roofs.c probes (512-bit: 214 on 1 thread, 430 on
** 2; 256-bit: 114, 228):
**   product (M K N, op)        avx512 1T   avx512 2T   avx2 1T    avx2 2T
**   x@W^T  128  784 1024 A@Bt  132 (62%)   289 (67%)   93 (82%)  188 (83%)
**   x@W^T  128 1024 1024 A@Bt  131 (61%)   278 (65%)   92 (81%)  180 (79%)
**   g@W    128 1024 1024 A@B   138 (64%)   287 (67%)   96 (84%)  184 (81%)
**   g^T@x 1024  128  784 At@B  146 (68%)   297 (69%)  103 (90%)  199 (87%)
**   g^T@x 1024  128 1024 At@B  150 (70%)   305 (71%)  103 (90%)  199 (87%)
** (The x@W^T rows predate wt_run, which now takes them on AVX-512 where
** they run on one thread: 121 -> 131 and 131 -> 141 on one core in
** alternating rounds of one session.)
** Products too small for packing to pay take unpacked paths (gemm_direct.h,
** unpacked_path below); one core, thread CPU time, medians of 3
** alternating rounds, packed -> unpacked:
**   product (M K N, op)        avx512         avx2
**   x3@W3^T 128 1024   10 A@Bt  40 -> 138 dot  50 -> 84 dot
**   g3@W3   128   10 1024 A@B   packed (m 128: a wash)
**   g3^T@x3  10  128 1024 At@B  52 -> 133      60 -> 83
**   x1@W1^T  32  784   64 A@Bt  80 -> 134 dot  72 -> 93 dot  (784-64-10)
**   g1^T@x1  64   32  784 At@B 106 -> 139      packed (m 64 > 16)
**   x2@W2^T  32   64   10 A@Bt  34 -> 45 dot   26 -> 42 dot
**   g2@W2    32   10   64 A@B   60 -> 72       packed (m 32 > 16)
**   g2^T@x2  10   32   64 At@B  45 -> 85       35 -> 60
** OpenBLAS (cblas_sgemm, its own threads): 128-146 on 1 thread, 240-300 on
** 2; pinned to its Haswell kernels 92-97 and 167-179. Where the AVX-512
** time goes at M = 128, one core: packing B 14-16% (B, 3-4 MB, does not fit
** L2 and each element serves only 128 rows: a pass over memory at ~15 GB/s),
** packing A 2%; the micro-kernels run at ~80% of peak (all panels packed
** beforehand), against 85-91% for the same kernel with its panels in L1. Tried without gain (within
** the noise, or slower): KC 192-512, NC 256-1024, 12x32 and 14x32 tiles,
** unrolling k, packing B's panels one at a time with the next one's source
** prefetched, prefetching the next B block during the kernels.
**
** Measured in the real loop (1 thread, tests/bench/bench_gemm_shape, thread
** CPU time, medians of 3-5 alternating rounds; perf with cpu-clock, the
** guest has no PMU): [128,784]@[1024,784]^T spends 80% in the kernels, 17%
** packing B (its loads wait on W, 3.2 MB, read at about one core's DRAM
** rate), 2% packing A; [1000,784]@[1024,784]^T 91%, 4%, 3%: at 124 and 144
** GFLOP/s overall the kernels run at ~75% of peak. Handing every call a C
** tile that stays hot (the same 8 rows of a scratch [8, 1024], C's row
** stride kept) gives 124 -> 132 and 144 -> 156 GFLOP/s: C's lines cost 6-8%
** (not ~2%, as a scratch tile measured before), yet neither through L1 sets
** nor through a latency that prefetching hides. Tried there without gain:
** prefetching the next call's C tile as well (T0 or T1); KC 400 (-9%, -3%)
** and 800 (-7%, -3%); MC 128 or 512; the ir loop outside jr (-3%); k
** super-blocks with the whole kb x nr B panel and a ~1 MB A block packed at
** once, C's column kept across the k blocks (-2% at M = 128; 136 -> 115 at
** M = 1000, B then packed once per A block); prefetching the next B block's
** source towards L2 a few lines per kernel call (-7%), or 8-16 source rows
** ahead inside the transposing pack (-3%).
**
** Tried for the unpacked paths without gain: prefetching direct's C tile
** (as micro does), the row tiles outside the column tiles, packing x^T for
** wt_run on all threads (2 threads, 9 rounds: 240 and 246-248 GFLOP/s
** either way); g @ W through wt_run as well, W's columns broadcast (each k
** step a row 4 KB on, where no prefetcher follows): 84-92 against 130-138
** packed at m 128; an AVX2 micro_t (4 x 24 tile, C through 4 x 4
** transposes, kc 192: C's tile round-trips 5 times at k 784) ran at 77-79
** against 87-93 packed on [128,784|1024] @ [1024,784|1024]^T, so the AVX2
** kernel has none.
**
** The scheme is the usual packed GEMM (Goto; BLIS's loop names): for a block
** of kc rows of op(B) and nc columns, copy it into panels of nr columns
** (kc x nr, contiguous); for a block of mc rows of op(A), copy it into panels
** of mr rows (kc x mr); then the micro-kernel keeps the mr x nr tile in
** registers over the kc products. Packing turns every transpose case into
** the same kernel, and zero-padded panels make ragged edges ordinary; masked
** stores write only the window of C.
**
** Threads take disjoint ranges of whole panels (columns when there are
** enough, else rows); every element of C sums its products in the same
** order (k blocks in turn, p within a block), so the result does not depend
** on the thread count.
*/
#include "gemm.h"

#ifdef DN_HAVE_GEMM

#include <math.h>

#include "dropnet/alloc.h"
#include "dropnet/parallel.h"
#include "pool.h"

/* Below SMALL_PRODUCT multiply-adds one thread is faster; below
   CONTENDED_PRODUCT too while a trial found one thread faster for small work
   (solo_trial.c) or other processes keep our workers waiting
   (dn_pool_contended): a worker descheduled mid-task stalls the product for
   a time slice, while 1.5M multiply-adds take 20-40 us on one thread. With
   the pool's workers spinning between the regions of a step, the small MLP
   (784-64-10, batch 32, products of 0.1-1.6M) trains ~33% faster on a quiet
   machine with its products and loops split (pool.c, on contention). */
#define SMALL_PRODUCT 262144.0
#define CONTENDED_PRODUCT 4194304.0

/* The threads a product of m x n x k multiply-adds runs on. */
static int product_threads(int64_t m, int64_t n, int64_t k) {
  double work = (double)m * (double)n * (double)k;
  bool solo = dn_pool_solo();   /* for every product: the trials count them */
  bool small = work <= SMALL_PRODUCT || (work <= CONTENDED_PRODUCT && (dn_pool_contended() || solo));
  return small ? 1 : dn_get_num_threads();
}

typedef struct gemm_args {
  const dn_gemm_kernel *kern;
  bool trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  const float *a, *b;
  float *c;
  int64_t kc_full;           /* k block size: a function of k alone */
  bool split_n;              /* tasks split columns, else rows */
  int64_t units;             /* panels to split */
  float *buffer;             /* the tasks' packing buffers, one part each */
  size_t a_floats, b_floats; /* of each part */
  dn_gemm_b_source *b_source; /* packs op(B) itself, or NULL */
  void *b_ctx;
  const float *a_packed;     /* all of op(A) packed beforehand (dn_gemm_pack_a), or NULL */
} gemm_args;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

bool dn_gemm_kernel_supported(const dn_gemm_kernel *kernel) {
  __builtin_cpu_init();
  for (int i = 0; kernel->cpu_features[i]; i++) {
    /* __builtin_cpu_supports takes only literal names */
    const char *f = kernel->cpu_features[i];
    bool ok = !__builtin_strcmp(f, "avx512f") ? __builtin_cpu_supports("avx512f")
            : !__builtin_strcmp(f, "avx512vl") ? __builtin_cpu_supports("avx512vl")
            : !__builtin_strcmp(f, "avx2") ? __builtin_cpu_supports("avx2")
            : !__builtin_strcmp(f, "fma") ? __builtin_cpu_supports("fma")
            : false;
    if (!ok) return false;
  }
  return true;
}

/* op(A)[ic:ic+mc, pc:pc+kc] into mr-row panels, each kc x mr. */
static void pack_a(const gemm_args *g, int64_t ic, int64_t mc, int64_t pc, int64_t kc, float *dst) {
  int64_t along = g->trans_a ? g->lda : 1, across = g->trans_a ? 1 : g->lda;
  g->kern->pack_a(g->a + ic * across + pc * along, along, across, kc, mc, dst);
}

/* op(B)[pc:pc+kc, jc:jc+nc] into nr-column panels, each kc x nr. */
static void pack_b(const gemm_args *g, int64_t pc, int64_t kc, int64_t jc, int64_t nc, float *dst) {
  if (g->b_source) {
    g->b_source(g->b_ctx, pc, kc, jc, nc, g->kern->nr, dst);
    return;
  }
  int64_t along = g->trans_b ? 1 : g->ldb, across = g->trans_b ? g->ldb : 1;
  g->kern->pack_b(g->b + pc * along + jc * across, along, across, kc, nc, dst);
}

/* The rows [i0, i1) and columns [j0, j1) of C, with this task's buffers. */
static void gemm_region(const gemm_args *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1, float *apack,
                        float *bpack) {
  const dn_gemm_kernel *kern = g->kern;
  int64_t mr = kern->mr, nr = kern->nr, mc_max = kern->mc, nc_max = kern->nc;
  for (int64_t jc = j0; jc < j1; jc += nc_max) {
    int64_t nc = min64(nc_max, j1 - jc);
    for (int64_t pc = 0; pc < g->k; pc += g->kc_full) {
      int64_t kc = min64(g->kc_full, g->k - pc);
      float beta = pc == 0 ? g->beta : 1.0f;   /* later k blocks add to the partial sums */
      pack_b(g, pc, kc, jc, nc, bpack);
      for (int64_t ic = i0; ic < i1; ic += mc_max) {
        int64_t mc = min64(mc_max, i1 - ic);
        const float *ap = apack;
        if (g->a_packed) ap = g->a_packed + pc * round_up(g->m, mr) + ic * kc;
        else pack_a(g, ic, mc, pc, kc, apack);
        for (int64_t jr = 0; jr < nc; jr += nr)
          for (int64_t ir = 0; ir < mc; ir += mr)
            kern->micro(kc, ap + ir * kc, bpack + jr * kc, g->c + (ic + ir) * g->ldc + jc + jr, g->ldc,
                        (int)min64(mr, mc - ir), (int)min64(nr, nc - jr), g->alpha, beta);
      }
    }
  }
}

/* Part t of nt of the product: a range of whole panels, whichever thread
   runs it, with part t of the packing buffers. */
static void gemm_task(void *ctx, int t, int nt) {
  const gemm_args *g = ctx;
  int64_t first = g->units * t / nt, last = g->units * (t + 1) / nt;
  int64_t i0 = 0, i1 = g->m, j0 = 0, j1 = g->n;
  if (g->split_n) {
    j0 = first * g->kern->nr;
    j1 = min64(last * g->kern->nr, g->n);
  } else {
    i0 = first * g->kern->mr;
    i1 = min64(last * g->kern->mr, g->m);
  }
  float *apack = g->buffer + (size_t)t * (g->a_floats + g->b_floats), *bpack = apack + g->a_floats;
  if (i0 < i1 && j0 < j1) gemm_region(g, i0, i1, j0, j1, apack, bpack);
}

static bool gemm_run(const dn_gemm_kernel *kern, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                     float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                     int64_t ldc) {
  gemm_args g = {.kern = kern, .trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k, .lda = lda,
                 .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta, .a = a, .b = b, .c = c};
  /* k blocks of equal size (a function of k alone, so of the shape alone). */
  g.kc_full = ceil_div(k, ceil_div(k, kern->kc));
  int64_t panels_m = ceil_div(m, kern->mr), panels_n = ceil_div(n, kern->nr);
  double work = (double)m * (double)n * (double)k;
  int threads = product_threads(m, n, k);
  /* Split columns when every thread gets a panel, else rows. */
  g.split_n = panels_n >= threads;
  g.units = g.split_n ? panels_n : panels_m;
  if (threads > g.units) threads = (int)g.units;
  /* Buffers for as many threads as run uncontended, so that the allocation
     depends on the shape alone (internal.h, dn_threads_most_for). */
  int most = work <= SMALL_PRODUCT ? 1 : dn_get_num_threads();
  int64_t most_units = panels_n >= most ? panels_n : panels_m;
  if (most > most_units) most = (int)most_units;
  if (most < threads) most = threads;
  /* Whole cache lines per buffer, so every panel is 64-byte aligned. The
     buffers are allocated here, not by the tasks, so that failing leaves C
     untouched (blas.c then hands the product to OpenBLAS). */
  g.a_floats = (size_t)round_up(round_up(min64(m, kern->mc), kern->mr) * g.kc_full, 16);
  g.b_floats = (size_t)round_up(round_up(min64(n, kern->nc), kern->nr) * g.kc_full, 16);
  g.buffer = dn_alloc((g.a_floats + g.b_floats) * sizeof(float) * (size_t)most);
  if (!g.buffer) return false;
  dn_parallel(threads, gemm_task, &g);
  dn_free(g.buffer);
  return true;
}

/* Packing floats for one thread's product of this shape: its A and B blocks,
   whole cache lines each (gemm.h, dn_gemm_here). */
static void here_sizes(const dn_gemm_kernel *kern, int64_t m, int64_t n, int64_t k, int64_t *kc_full, size_t *a_floats,
                       size_t *b_floats) {
  *kc_full = ceil_div(k, ceil_div(k, kern->kc));
  *a_floats = (size_t)round_up(round_up(min64(m, kern->mc), kern->mr) * *kc_full, 16);
  *b_floats = (size_t)round_up(round_up(min64(n, kern->nc), kern->nr) * *kc_full, 16);
}

size_t dn_gemm_here_floats(const dn_gemm_kernel *kern, int64_t m, int64_t n, int64_t k) {
  int64_t kc_full;
  size_t a_floats, b_floats;
  here_sizes(kern, m, n, k, &kc_full, &a_floats, &b_floats);
  return a_floats + b_floats;
}

static int unpacked_path(const dn_gemm_kernel *kern, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k);
static dn_gemm_direct_args direct_args(bool trans_a, int64_t k, float alpha, const float *a, int64_t lda,
                                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

void dn_gemm_here(const dn_gemm_kernel *kern, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                  float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc, float *buffer, const float *a_packed) {
  /* the unpacked paths as dn_gemm takes them (a first convolution's dw: [32, 784] @ [784, 9] as dot
     products along the positions, where packing transposed the image's gradient) */
  int path = a_packed ? 0 : unpacked_path(kern, trans_a, trans_b, m, n, k);
  if (path) {
    dn_gemm_direct_args d = direct_args(trans_a, k, alpha, a, lda, b, ldb, beta, c, ldc);
    (path == 2 ? kern->dot : kern->direct)(&d, 0, m, 0, n);
    return;
  }
  gemm_args g = {.kern = kern, .trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k, .lda = lda,
                 .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta, .a = a, .b = b, .c = c, .a_packed = a_packed};
  here_sizes(kern, m, n, k, &g.kc_full, &g.a_floats, &g.b_floats);
  gemm_region(&g, 0, m, 0, n, buffer, buffer + g.a_floats);
}

void dn_gemm_here_offsets(const dn_gemm_kernel *kern, bool trans_a, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *a, int64_t lda, const float *b, const int32_t *b_off, float beta, float *c,
                          int64_t ldc) {
  dn_gemm_direct_args d = direct_args(trans_a, k, alpha, a, lda, b, 0, beta, c, ldc);
  d.b_off = b_off;
  kern->direct(&d, 0, m, 0, n);
}

size_t dn_gemm_a_floats(const dn_gemm_kernel *kern, int64_t m, int64_t k) {
  return (size_t)(round_up(m, kern->mr) * k);
}

void dn_gemm_pack_a(const dn_gemm_kernel *kern, bool trans_a, int64_t m, int64_t k, const float *a, int64_t lda,
                    float *dst) {
  gemm_args g = {.kern = kern, .trans_a = trans_a, .m = m, .k = k, .lda = lda, .a = a};
  int64_t kc_full = ceil_div(k, ceil_div(k, kern->kc));   /* as here_sizes */
  for (int64_t pc = 0; pc < k; pc += kc_full) {
    int64_t kc = min64(kc_full, k - pc);
    for (int64_t ic = 0; ic < m; ic += kern->mc)
      pack_a(&g, ic, min64(kern->mc, m - ic), pc, kc, dst + pc * round_up(m, kern->mr) + ic * kc);
  }
}

void dn_gemm_here_b(const dn_gemm_kernel *kern, bool trans_a, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, dn_gemm_b_source *source, void *ctx, float beta, float *c,
                    int64_t ldc, float *buffer, const float *a_packed) {
  gemm_args g = {.kern = kern, .trans_a = trans_a, .m = m, .n = n, .k = k, .lda = lda, .ldc = ldc,
                 .alpha = alpha, .beta = beta, .a = a, .c = c, .b_source = source, .b_ctx = ctx,
                 .a_packed = a_packed};
  here_sizes(kern, m, n, k, &g.kc_full, &g.a_floats, &g.b_floats);
  gemm_region(&g, 0, m, 0, n, buffer, buffer + g.a_floats);
}

/*
** A narrow C (n well under the kernel's nr: the model's 10 classes) would
** mostly multiply padding columns; such a product runs as its transpose,
** C^T = op(B)^T op(A)^T, into a scratch [n, m] buffer, which is then added
** into C. Chosen from the shape alone, so results still do not depend on the
** thread count. Measured on [128,1024]@[1024,10]^T, one core, 3 alternating
** rounds: AVX-512 37-38 -> 41-51 GFLOP/s, AVX2 27-28 -> 47 (OpenBLAS's
** Haswell kernels: 47); [1000,300]@[300,33]: 131-136 -> 139-142.
*/
static bool narrow(const dn_gemm_kernel *kern, int64_t m, int64_t n) {
  double as_is = (double)round_up(m, kern->mr) * (double)round_up(n, kern->nr);
  double transposed = (double)round_up(n, kern->mr) * (double)round_up(m, kern->nr);
  return transposed < 0.75 * as_is;
}

dn_gemm_path dn_gemm_force_path = DN_GEMM_AUTO;

typedef struct direct_job {
  const dn_gemm_kernel *kern;
  dn_gemm_direct_fn fn;
  dn_gemm_direct_args d;
  int64_t m, n;
  bool split_n;              /* tasks split columns, else rows */
  int64_t unit, units;       /* columns or rows per unit; units to split */
} direct_job;

static void direct_task(void *ctx, int t, int nt) {
  const direct_job *j = ctx;
  int64_t end = j->split_n ? j->n : j->m;
  int64_t first = j->units * t / nt * j->unit, last = min64(j->units * (t + 1) / nt * j->unit, end);
  if (first >= last) return;
  if (j->split_n) j->fn(&j->d, 0, j->m, first, last);
  else j->fn(&j->d, first, last, 0, j->n);
}

/* The unpacked paths' operands: op(A) through its row and k strides. */
static dn_gemm_direct_args direct_args(bool trans_a, int64_t k, float alpha, const float *a, int64_t lda,
                                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  return (dn_gemm_direct_args){.k = k, .a = a, .a_rs = trans_a ? 1 : lda, .a_ps = trans_a ? lda : 1, .b = b,
                               .ldb = ldb, .c = c, .ldc = ldc, .alpha = alpha, .beta = beta};
}

/* Threads take whole tiles (the bits do not depend on the split). */
static void direct_run(const dn_gemm_kernel *kern, bool dot, bool trans_a, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                       int64_t ldc) {
  direct_job j = {.kern = kern, .fn = dot ? kern->dot : kern->direct, .m = m, .n = n,
                  .d = direct_args(trans_a, k, alpha, a, lda, b, ldb, beta, c, ldc)};
  int64_t col_unit = dot ? kern->dot_cols : kern->direct_cols, row_unit = dot ? kern->dot_rows : kern->mr;
  int threads = product_threads(m, n, k);
  /* each thread reads all of the operand whose dimension is not split: split
     the larger one (x3 @ W3^T, m 128, n 10: rows; 2 threads, 7 rounds: 141-143
     GFLOP/s split by columns, 141-251 by rows, the same median) */
  j.split_n = ceil_div(n, col_unit) >= threads && (n >= m || ceil_div(m, row_unit) < threads);
  j.unit = j.split_n ? col_unit : row_unit;
  j.units = ceil_div(j.split_n ? n : m, j.unit);
  if (threads > j.units) threads = (int)j.units;
  dn_parallel(threads, direct_task, &j);
}

/*
** x @ W^T (!trans_a && trans_b) as C^T = W @ x^T with W unpacked: W's rows
** are the broadcast operand, read in place (8 rows of W = 8 columns of C),
** and only x^T is packed, once per call for all threads ([k, m]: 400 KB at
** m 128, k 784, instead of W's 3.2 MB). Threads take whole 8-column blocks
** of C; each element sums its k blocks in order, as gemm_region.
** Loops: WT_ROWS rows of W (a 64 KB slab per k block, in L2 whatever W's
** row stride) by k block; in it, each x^T panel (kc x 32, 32 KB) stays in
** L1 while the slab's 8-row blocks stream past it. Measured (one core,
** thread CPU time, 5 alternating rounds, packed -> this): [128,784] @
** [1024,784]^T 120 -> 126 GFLOP/s, [128,1024] @ [1024,1024]^T 116 -> 130,
** m 64 106 -> 129, m 256 127 -> 121, m 1000 137 -> 104 (x^T, 3 MB, then
** comes from memory for every slab). Without the slabs (8 rows of W through
** all of k, every x^T panel from L2) 119-125 at m 128; by k block over all
** of W (its 1 MB slab, rows 4 KB apart, does not stay in L2) 111-113 at k
** 1024; prefetching W's rows ahead in the kernel: slower (101-110).
*/
#define WT_ROWS 64
/* x^T up to 512 KB (m 128, k 1024); at m 128, k 2048 and 4096 it measured
   120-129 against 133 and 119-123 against 113-126 packed. */
#define WT_MAX_XPACK (128 * 1024)
typedef struct wt_job {
  const dn_gemm_kernel *kern;
  int64_t m, n, k, kc_full, ldb, ldc;
  float alpha, beta;
  const float *w;
  const float *xpack;        /* x^T: per k block, ceil(m / nr) panels of kc x nr */
  float *c;
  int64_t units;             /* 8-column blocks of C */
} wt_job;

static void wt_task(void *ctx, int t, int nt) {
  const wt_job *g = ctx;
  const dn_gemm_kernel *kern = g->kern;
  int64_t mr = kern->mr, nr = kern->nr, m_panels = round_up(g->m, nr);
  int64_t j0 = g->units * t / nt * mr, j1 = min64(g->units * (t + 1) / nt * mr, g->n);
  for (int64_t jc = j0; jc < j1; jc += WT_ROWS) {
    int64_t jc1 = min64(jc + WT_ROWS, j1);
    for (int64_t pc = 0; pc < g->k; pc += g->kc_full) {
      int64_t kc = min64(g->kc_full, g->k - pc);
      float beta = pc == 0 ? g->beta : 1.0f;
      const float *xp = g->xpack + pc * m_panels;
      for (int64_t i = 0; i < g->m; i += nr)
        for (int64_t j = jc; j < jc1; j += mr)
          kern->micro_t(kc, g->w + j * g->ldb + pc, g->ldb, xp + i * kc, g->c + i * g->ldc + j, g->ldc,
                        (int)min64(mr, jc1 - j), (int)min64(nr, g->m - i), g->alpha, beta);
    }
  }
}

typedef struct xpack_job {
  const dn_gemm_kernel *kern;
  const float *a;
  int64_t lda, m, k, kc_full, panels;
  float *dst;
} xpack_job;

/* Part t of nt of x^T's panels (k block by k block, nr columns each). */
static void xpack_task(void *ctx, int t, int nt) {
  const xpack_job *x = ctx;
  int64_t nr = x->kern->nr, m_panels = x->panels * nr, units = x->panels * ceil_div(x->k, x->kc_full);
  for (int64_t u = units * t / nt; u < units * (t + 1) / nt; u++) {
    int64_t pc = u / x->panels * x->kc_full, i = u % x->panels * nr, kc = min64(x->kc_full, x->k - pc);
    x->kern->pack_b(x->a + i * x->lda + pc, 1, x->lda, kc, min64(nr, x->m - i), x->dst + pc * m_panels + i * kc);
  }
}

static bool wt_run(const dn_gemm_kernel *kern, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  wt_job g = {.kern = kern, .m = m, .n = n, .k = k, .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta, .w = b,
              .c = c};
  g.kc_full = ceil_div(k, ceil_div(k, kern->kc));
  int64_t m_panels = round_up(m, kern->nr);
  float *xpack = dn_alloc((size_t)(m_panels * k) * sizeof(float));
  if (!xpack) return false;
  g.xpack = xpack;
  int threads = product_threads(m, n, k);
  /* x^T's k blocks one after another, each as pack_b lays out op(B)[pc:pc+kc,
     0:m], one nr-column panel per task: packed by one thread, the others
     waited ~30 us of an ~800 us product */
  xpack_job xj = {.kern = kern, .a = a, .lda = lda, .m = m, .k = k, .kc_full = g.kc_full, .dst = xpack,
                  .panels = ceil_div(m, kern->nr)};
  dn_parallel(threads == 1 ? 1 : (int)min64(threads, xj.panels * ceil_div(k, g.kc_full)), xpack_task, &xj);
  g.units = ceil_div(n, kern->mr);
  if (threads > g.units) threads = (int)g.units;
  dn_parallel(threads, wt_task, &g);
  dn_free(xpack);
  return true;
}

/*
** The sparse path (gemm.h; kernels in gemm_sparse.h), taken where op(A) is
** mostly zero instead of the packed path, or of direct while k fits one k
** block (the bits are the same then): threads take whole column chunks
** (sparse_cols wide) of C; each lists the nonzeros of every row of op(A) for
** a k block (the lists are small: every thread makes its own rather than
** wait for one), then packs and runs its chunks of that block. k blocks in
** order, as gemm_region: the packed path's bits (gemm_sparse.h says why).
*/
/* Up to this fraction of nonzeros in op(A) (estimated from a quarter of its
   rows) the sparse path runs; from this many multiply-adds. */
#define SPARSE_DENSITY 0.3
#define SPARSE_MIN_WORK 1048576.0
/* Each thread holds lists for every row of op(A) (m x kc entries at most) and
   their partial sums (m x sparse_cols): up to this many rows (19 MB and 4 MB
   at AVX-512's kc and width), the packed path beyond. */
#define SPARSE_MAX_ROWS 8192
/* A row's nonzeros per sub-block, about: fewer, and loading and storing the
   row's partial sums costs more than the sub-block's rows of B staying in L1
   saves. Measured on one Zen 4 core at 7% / 19% nonzero, us, with 6, 12 and
   24: [1024,128]^T @ [128,1024] 605 / 1683, 499 / 1203, 611 / 1306; [128,1024]
   @ [1024,1024] 811 / 1346, 652 / 1048, 705 / 1014; [128,1024] @
   [1024,1024]^T 851 / 1666, 717 / 1139, 782 / 1203. */
#define SPARSE_PER_SUB 12.0

bool dn_gemm_sparse_auto = true;

typedef struct sparse_job {
  const dn_gemm_kernel *kern;
  int64_t m, n, k, kc_full, sub, a_rs, a_ps, along, across, ldc;
  float alpha, beta;
  const float *a, *b;
  float *c;
  int64_t units;             /* column chunks */
  char *buffer;              /* the tasks' parts */
  size_t part;               /* bytes of each */
} sparse_job;

/* A part's pieces: B's packed block, the carry, the lists (each whole cache lines). */
typedef struct sparse_part {
  float *bp, *carry, *val;
  int32_t *idx, *start, *count;
} sparse_part;

static size_t sparse_layout(const sparse_job *g, char *base, sparse_part *p) {
  int64_t w = g->kern->sparse_cols, m = g->m, kc = g->kc_full, nsub = ceil_div(kc, g->sub);
  size_t sizes[6] = {(size_t)round_up(kc * w, 16), (size_t)round_up(m * w, 16), (size_t)round_up(m * kc, 16),
                     (size_t)round_up(m * kc, 16), (size_t)round_up(m * (nsub + 1), 16), (size_t)round_up(m, 16)};
  size_t at = 0;
  char *ptr[6];
  for (int i = 0; i < 6; i++) {
    ptr[i] = base ? base + at : NULL;
    at += sizes[i] * sizeof(float);
  }
  if (p) *p = (sparse_part){(float *)ptr[0], (float *)ptr[1], (float *)ptr[2], (int32_t *)ptr[3], (int32_t *)ptr[4],
                            (int32_t *)ptr[5]};
  return at;
}

static void sparse_task(void *ctx, int t, int nt) {
  const sparse_job *g = ctx;
  const dn_gemm_kernel *kern = g->kern;
  int64_t first = g->units * t / nt, last = g->units * (t + 1) / nt, w = kern->sparse_cols;
  if (first >= last) return;
  sparse_part part;
  sparse_layout(g, g->buffer + (size_t)t * g->part, &part);
  for (int64_t pc = 0; pc < g->k; pc += g->kc_full) {
    int64_t kc = min64(g->kc_full, g->k - pc);
    dn_gemm_sparse_lists lists = {.m = g->m, .kc = kc, .sub = g->sub, .nsub = ceil_div(kc, g->sub),
                                  .idx = part.idx, .val = part.val, .start = part.start, .count = part.count};
    const float *a = g->a + pc * g->a_ps;
    kern->sparse_lists(a, g->a_rs, g->a_ps, &lists);
    for (int64_t u = first; u < last; u++) {
      int64_t j = u * w, cols = min64(w, g->n - j);
      bool finite = kern->sparse_pack(g->b + pc * g->along + j * g->across, g->along, g->across, kc, cols, part.bp);
      dn_gemm_sparse_args s = {.lists = &lists, .bp = part.bp, .carry = part.carry, .c = g->c + j, .ldc = g->ldc,
                               .cols = (int)cols, .alpha = g->alpha, .beta = pc == 0 ? g->beta : 1.0f, .a = a,
                               .a_rs = g->a_rs, .a_ps = g->a_ps, .every_term = !finite};
      kern->sparse(&s);
    }
  }
}

/* op(A)'s fraction of nonzeros, counted in every fourth row (of op(A), or of A's storage when transposed),
   or in all of them when there are few. */
static double density_of(const dn_gemm_kernel *kern, bool trans_a, int64_t m, int64_t k, const float *a,
                         int64_t lda) {
  int64_t rows = trans_a ? k : m, step = rows >= 64 ? 4 : 1, counted = ceil_div(rows, step);
  int64_t nonzero = trans_a ? kern->sparse_count(a, 1, lda, m, k, step) : kern->sparse_count(a, lda, 1, m, k, step);
  return (double)nonzero / ((double)counted * (double)(trans_a ? m : k));
}

static bool sparse_run(const dn_gemm_kernel *kern, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                       int64_t ldc, double density) {
  sparse_job g = {.kern = kern, .m = m, .n = n, .k = k, .a_rs = trans_a ? 1 : lda, .a_ps = trans_a ? lda : 1,
                  .along = trans_b ? 1 : ldb, .across = trans_b ? ldb : 1, .ldc = ldc, .alpha = alpha, .beta = beta,
                  .a = a, .b = b, .c = c};
  g.kc_full = ceil_div(k, ceil_div(k, kern->kc));   /* the packed path's k blocks */
  g.sub = kern->sparse_lanes;
  while (g.sub < g.kc_full && (double)g.sub * density < SPARSE_PER_SUB) g.sub *= 2;
  g.units = ceil_div(n, kern->sparse_cols);
  int threads = product_threads(m, n, k);
  if (threads > g.units) threads = (int)g.units;
  g.part = sparse_layout(&g, NULL, NULL);
  /* as many parts as run uncontended: the allocation does not depend on other processes */
  int most = (int)min64(dn_get_num_threads(), g.units);
  if (most < threads) most = threads;
  g.buffer = dn_alloc(g.part * (size_t)most);
  if (!g.buffer) return false;
  dn_parallel(threads, sparse_task, &g);
  dn_free(g.buffer);
  return true;
}

/*
** Which unpacked path, if any, the shape takes: 0 none, 1 direct, 2 dot.
** Packing pays where each packed element serves many micro-tiles: a packed
** B element serves m / mr of them. Measured (one core, thread CPU time,
** GFLOP/s packed -> unpacked, AVX-512):
**   direct, !trans_b, n = 1024: m <= 64 with k <= 256 wins (m 8: 36-62 ->
**   107-147; m 32: 77-113 -> 117-145; m 64: 95-131 -> 115-139); m 128 at k
**   10-48 a wash (90-129 both), at k >= 128 a loss (142-153 -> 124-141);
**   k 512 with ldb 1024 a loss from m 32 (88 -> 55): the k x 32 B panel,
**   rows 4 KB apart, no longer stays in L2 across the row tiles.
**   dot, !trans_a && trans_b: n <= 32 or m <= 32 wins at every m, k tried
**   (n 10: 32-48 -> 69-142; m 8, n 1024: 37 -> 87; m 32, n 1024: 65 ->
**   112); m, n >= 64 mixed (128 x 1024: 120 -> 90).
** AVX2 (4 x 24 direct tile, 3 x 3 dot): direct wins up to m 16 (k 32-256,
** n 1024: 50-70 -> 74-87), m 32 a wash, m 64 a loss (80-94 -> 57-82),
** hence the kernel's direct_max_m; dot as AVX-512 (n 10: 44 -> 75; m 128,
** n 32: 56 -> 82).
*/
static int unpacked_path(const dn_gemm_kernel *kern, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k) {
  if (dn_gemm_force_path == DN_GEMM_PACKED || dn_gemm_force_path == DN_GEMM_WT ||
      dn_gemm_force_path == DN_GEMM_SPARSE)
    return 0;
  if (dn_gemm_force_path == DN_GEMM_DIRECT) return !trans_b ? 1 : !trans_a ? 2 : 0;
  if (!trans_b && ((m <= kern->direct_max_m && k <= 256) || m <= kern->mr)) return 1;
  if (!trans_a && trans_b && (m <= 32 || n <= 32)) return 2;
  return 0;
}

bool dn_gemm(const dn_gemm_kernel *kern, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  int path = unpacked_path(kern, trans_a, trans_b, m, n, k);
  /* the sparse path where its bits are the path's it replaces: the packed path's, and direct's while k fits
     one k block (small layers' weight gradients, g^T @ x) */
  bool same_bits = !path || (path == 1 && k <= kern->kc);
  if (kern->sparse && m <= SPARSE_MAX_ROWS && (dn_gemm_force_path == DN_GEMM_SPARSE ||
                       (dn_gemm_force_path == DN_GEMM_AUTO && dn_gemm_sparse_auto && same_bits &&
                        !narrow(kern, m, n) && (double)m * (double)n * (double)k >= SPARSE_MIN_WORK))) {
    double density = density_of(kern, trans_a, m, k, a, lda);
    if (dn_gemm_force_path == DN_GEMM_SPARSE || density <= SPARSE_DENSITY)
      return sparse_run(kern, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, density);
  }
  /* wt_run where the product runs on one thread; on two the packed path
     measured faster on Zen 5 (2 threads, operands cold, 3 alternating rounds:
     [128,784] @ [1024,784]^T 244-260 -> 268-293 GFLOP/s, k 1024 259-288 ->
     294-306; one thread alike, 139-168 against 161-174; the reference MLP's
     training 1.05x, 0.98-1.08, 5 pairs). The Xeon's figures above point the
     same way, though from different sessions: wt_run 240-248 on two threads,
     packed 278-289 in the table. The same bits either way (test_gemm), so the
     choice may depend on the thread count. */
  if (!path && !trans_a && trans_b && kern->micro_t &&
      (dn_gemm_force_path == DN_GEMM_WT ||
       (dn_gemm_force_path == DN_GEMM_AUTO && m <= 128 && round_up(m, kern->nr) * k <= WT_MAX_XPACK &&
        product_threads(m, n, k) == 1)))
    return wt_run(kern, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (path) {
    direct_run(kern, path == 2, trans_a, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return true;
  }
  if (!narrow(kern, m, n)) return gemm_run(kern, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  float *t = dn_alloc((size_t)(m * n) * sizeof(float));
  if (!t) return false;
  /* op(B)^T is B's storage read the other way, and so is op(A)^T */
  bool ok = gemm_run(kern, !trans_b, !trans_a, n, m, k, alpha, b, ldb, a, lda, 0.0f, t, m);
  if (ok)
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++)
        /* as the kernels' stores: alpha * sum, then beta * C fused in; beta == 0 does not read C */
        c[i * ldc + j] = beta == 0.0f ? t[j * m + i] : fmaf(c[i * ldc + j], beta, t[j * m + i]);
  dn_free(t);
  return ok;
}

#endif
