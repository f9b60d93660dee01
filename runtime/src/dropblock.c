/*
** DropBlock (dropblock.h says what it computes and the contract of its
** bits): argument checks, the mask walk, the forward and its backward.
**
** The mask is never materialized. A plane is walked row by row, keeping one
** integer per column: last[c], the latest row r' at which a block anchored
** at some row r' covers column c (a block anchored at (i, j) covers columns
** j .. j+bs-1 of row i and of the bs-1 rows below). Element (r, c) is then
** dropped iff last[c] > r - bs. At each row r that is also a row of block
** anchors, the row's decisions are drawn (dn_dropout_keep_span) and each
** block found sets last[] over its bs columns: O(W) per row whatever bs is
** (a column already set for this row is not set again). So the mask costs
** W integers of scratch per task and one pass of decisions, like a dropout
** mask, and backward can walk it again instead of keeping it.
**
** The forward walks twice: once to count the kept elements of the whole
** tensor (the scale needs them all before any value is written), once to
** write y = kept ? x * scale : 0. Backward walks once, with the saved
** scale. Each walk splits the planes over tasks (dn_parallel, dn_split):
** a plane's values depend on nothing but its index, and the per-task
** counts are integers, so neither the split nor the order of the sum can
** change a bit. Scratch is allocated before the parallel loop.
*/
#include <stdio.h>
#include <string.h>

#include "dropnet/dropblock.h"
#include "dropout_mask.h"
#include "graph.h"
#include "internal.h"
#include "shape.h"

/* Decisions buffered per read (a multiple of DN_DROPOUT_SPAN_ALIGN, so
   refills start on a generator call) and the most one read may ask for. */
#define READ_SPAN 4096
#define READ_CHUNK (READ_SPAN - DN_DROPOUT_SPAN_ALIGN)
_Static_assert(READ_SPAN % DN_DROPOUT_SPAN_ALIGN == 0, "refills must start on a generator call");

/* node->ints and node->scalars */
enum { NODE_SEED, NODE_OFFSET, NODE_BLOCK, NODE_THRESHOLD, NODE_BASE };
enum { NODE_SCALE };

/* One input's sizes: planes = N * C maps of height x width, and the grid
   of block anchors. */
typedef struct block_geom {
  int64_t planes, height, width, block;
  int64_t anchor_rows, anchor_cols;   /* H - bs + 1, W - bs + 1 */
} block_geom;

typedef enum block_pass {
  PASS_COUNT,   /* kept elements per task into kept[] */
  PASS_APPLY,   /* dst = kept ? src * scale : 0 */
  PASS_KEEP     /* keep_dst = kept (uint8) */
} block_pass;

typedef struct block_job {
  const block_geom *g;
  block_pass pass;
  float *dst;
  const float *src;
  uint8_t *keep_dst;
  float scale;
  int64_t base;   /* decision of plane 0's first anchor (a batch shard's; 0 without) */
  uint64_t seed, offset;
  uint32_t threshold;
  int64_t *last;   /* tasks x width: each task's last[] */
  int64_t *kept;   /* tasks: PASS_COUNT's counts */
} block_job;

/* --- the mask walk ------------------------------------------------------------------ */

/* A window of decisions [first, end) as keep bytes (1 = no block there),
   in the generator's numbering (base included). */
typedef struct decision_window {
  int64_t first, end;
  uint8_t keep[READ_SPAN];
} decision_window;

/* Keep bytes of decisions [k, k + len), len <= READ_CHUNK, refilling the
   window from a generator-call boundary when they are not all in it. */
static const uint8_t *decisions(decision_window *w, const block_job *job, int64_t k, int64_t len) {
  if (k < w->first || k + len > w->end) {
    int64_t total = job->base + job->g->planes * job->g->anchor_rows * job->g->anchor_cols;
    w->first = k - k % DN_DROPOUT_SPAN_ALIGN;
    w->end = total - w->first < READ_SPAN ? total : w->first + READ_SPAN;
    dn_dropout_keep_span(w->keep, w->first, w->end - w->first, job->seed, job->offset, job->threshold);
  }
  return w->keep + (k - w->first);
}

/* Row `row` of anchors (decisions from k on): last[c] = row over every block's columns. */
static void mark_blocks(const block_job *job, decision_window *w, int64_t k, int64_t row, int64_t *last) {
  const block_geom *g = job->g;
  int64_t marked = 0;   /* columns below this are set for this row already */
  for (int64_t j0 = 0; j0 < g->anchor_cols; j0 += READ_CHUNK) {
    int64_t len = g->anchor_cols - j0 < READ_CHUNK ? g->anchor_cols - j0 : READ_CHUNK;
    const uint8_t *keep = decisions(w, job, k + j0, len);
    for (int64_t m = 0; m < len; m++) {
      if (keep[m]) continue;
      int64_t from = j0 + m > marked ? j0 + m : marked, to = j0 + m + g->block;
      for (int64_t c = from; c < to; c++) last[c] = row;
      marked = to;
    }
  }
}

/* One plane's walk; returns its kept count for PASS_COUNT. */
static int64_t walk_plane(const block_job *job, int64_t plane, int64_t *last, decision_window *w) {
  const block_geom *g = job->g;
  int64_t width = g->width, bs = g->block;
  bool any = job->threshold > 0;   /* threshold 0: no block anywhere */
  for (int64_t c = 0; c < width; c++) last[c] = -bs;   /* no block reaches row 0 */
  int64_t kept = 0, k = job->base + plane * g->anchor_rows * g->anchor_cols;
  for (int64_t r = 0; r < g->height; r++) {
    if (any && r < g->anchor_rows) mark_blocks(job, w, k + r * g->anchor_cols, r, last);
    int64_t above = r - bs;   /* dropped iff last[c] > above */
    int64_t at = (plane * g->height + r) * width;
    switch (job->pass) {
      case PASS_COUNT: {
        int64_t row_kept = 0;
#pragma omp simd reduction(+ : row_kept)
        for (int64_t c = 0; c < width; c++) row_kept += last[c] <= above;
        kept += row_kept;
        break;
      }
      case PASS_APPLY: {
        float *dst = job->dst + at, scale = job->scale;
        const float *src = job->src + at;
#pragma omp simd
        for (int64_t c = 0; c < width; c++) dst[c] = last[c] > above ? 0.0f : src[c] * scale;
        break;
      }
      case PASS_KEEP: {
        uint8_t *dst = job->keep_dst + at;
#pragma omp simd
        for (int64_t c = 0; c < width; c++) dst[c] = last[c] <= above;
        break;
      }
    }
  }
  return kept;
}

static void block_task(void *ctx, int task, int tasks) {
  const block_job *job = ctx;
  int64_t *last = job->last + (int64_t)task * job->g->width;
  decision_window w;
  w.first = w.end = 0;   /* empty */
  int64_t kept = 0;
  for (int64_t plane = dn_split(job->g->planes, task, tasks); plane < dn_split(job->g->planes, task + 1, tasks);
       plane++)
    kept += walk_plane(job, plane, last, &w);
  if (job->pass == PASS_COUNT) job->kept[task] = kept;
}

/*
** Runs the walks `passes` one after another over every plane, with one
** allocation of scratch for them all. After a PASS_COUNT, *kept is the
** whole tensor's kept count and job->scale = numel / kept (0 when nothing
** is kept), for the passes after it.
*/
static dn_status run_walks(const char *op, block_job *job, const block_pass *passes, int n_passes, int64_t *kept) {
  const block_geom *g = job->g;
  int64_t numel = g->planes * g->height * g->width;
  if (numel == 0) {
    if (kept) *kept = 0;
    return DN_OK;
  }
  int tasks = dn_threads_for(numel), parts = dn_threads_most_for(numel);   /* parts: internal.h */
  if (tasks > g->planes) tasks = (int)g->planes;
  if (parts > g->planes) parts = (int)g->planes;
  int64_t words;
  if (!dn_size_mul(parts, g->width + 1, &words) || !(job->last = dn_alloc((size_t)words * sizeof(int64_t))))
    return dn_fail(DN_ENOMEM, "%s: out of memory for %d rows of %lld columns of scratch", op, parts,
                   (long long)g->width);
  job->kept = job->last + (int64_t)parts * g->width;
  for (int i = 0; i < n_passes; i++) {
    job->pass = passes[i];
    dn_parallel(tasks, block_task, job);
    if (passes[i] == PASS_COUNT) {
      int64_t total = 0;
      for (int t = 0; t < tasks; t++) total += job->kept[t];
      *kept = total;
      job->scale = total ? (float)((double)numel / (double)total) : 0.0f;
    }
  }
  dn_free(job->last);
  job->last = job->kept = NULL;
  return DN_OK;
}

/* --- arguments ------------------------------------------------------------------------ */

/* The geometry of a checked [N, C, H, W] or [C, H, W] shape and block size. */
static block_geom geometry(int ndim, const int64_t *shape, int64_t block_size) {
  int64_t h = shape[ndim - 2], w = shape[ndim - 1];
  return (block_geom){.planes = ndim == 4 ? shape[0] * shape[1] : shape[0], .height = h, .width = w,
                      .block = block_size, .anchor_rows = h - block_size + 1, .anchor_cols = w - block_size + 1};
}

/* The shape's dims and the block size, or the error naming op and the shape (shape_text). */
static dn_status check_geometry(const char *op, int ndim, const int64_t *shape, int64_t block_size,
                                const char *shape_text) {
  if (ndim != 3 && ndim != 4)
    return dn_fail(DN_ESHAPE, "%s: input must be 4-D [N, C, H, W] or 3-D [C, H, W] (got shape %s)", op,
                   shape_text);
  int64_t h = shape[ndim - 2], w = shape[ndim - 1], smaller = h < w ? h : w;
  if (block_size < 1) return dn_fail(DN_EINVAL, "%s: block_size must be >= 1 (got %lld)", op, (long long)block_size);
  if (block_size > smaller)
    return dn_fail(DN_ESHAPE, "%s: block_size %lld does not fit the %lld x %lld feature maps of input %s (must be <= "
                   "min(H, W) = %lld)", op, (long long)block_size, (long long)h, (long long)w, shape_text,
                   (long long)smaller);
  return DN_OK;
}

/* gamma's 16-bit threshold (dropblock.h): p = 1 places a block everywhere. */
static uint32_t anchor_threshold(double p, const block_geom *g) {
  if (p >= 1.0) return DN_DROPOUT_FULL_THRESHOLD;
  double bs = (double)g->block;
  double gamma = p * (double)g->height * (double)g->width /
                 (bs * bs * (double)g->anchor_rows * (double)g->anchor_cols);
  return dn_dropout_threshold(gamma);
}

static int64_t anchor_count(const block_geom *g) { return g->planes * g->anchor_rows * g->anchor_cols; }

/*
** The whole batch's geometry under rng's batch shard (rng.h): *all has
** total * C planes and *base is the first local anchor's decision (0 and
** *all = *g without a shard). A 3-D input has no batch: an error under a
** shard.
*/
static dn_status shard_geometry(const char *op, const dn_rng *rng, int ndim, const int64_t *shape,
                                const char *shape_text, const block_geom *g, block_geom *all, int64_t *base) {
  *all = *g;
  *base = 0;
  if (ndim == 3) return dn_dropout_no_batch(op, rng, shape_text);
  int64_t first, total, planes, plane_size, numel;
  dn_status st = dn_rng_batch(op, rng, shape[0], &first, &total);
  if (st) return st;
  /* the whole batch's elements fit, so do its anchors and first's */
  if (!dn_size_mul(total, shape[1], &planes) || !dn_size_mul(g->height, g->width, &plane_size) ||
      !dn_size_mul(planes, plane_size, &numel))
    return dn_fail(DN_ESHAPE, "%s: a batch of %lld samples like input %s is too large", op, (long long)total,
                   shape_text);
  all->planes = planes;
  *base = first * shape[1] * g->anchor_rows * g->anchor_cols;
  return DN_OK;
}

/* --- forward and backward ---------------------------------------------------------------- */

static dn_status dropblock_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  block_geom g = geometry(node->in_ndim[0], node->in_shape[0], node->ints[NODE_BLOCK]);
  dn_tensor *gc, *dx;
  dn_status st = dn_contiguous(&gc, grad);
  if (st) return st;
  st = dn_tensor_new(&dx, DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (!st) {
    block_job job = {.g = &g, .dst = dn_tensor_data(dx), .src = dn_tensor_data(gc),
                     .scale = (float)node->scalars[NODE_SCALE], .seed = (uint64_t)node->ints[NODE_SEED],
                     .offset = (uint64_t)node->ints[NODE_OFFSET], .threshold = (uint32_t)node->ints[NODE_THRESHOLD],
                     .base = node->ints[NODE_BASE]};
    st = run_walks("dropblock2d", &job, (const block_pass[]){PASS_APPLY}, 1, NULL);
    if (st) dn_tensor_release(dx);
    else grad_in[0] = dx;
  }
  dn_tensor_release(gc);
  return st;
}

static const dn_node_type dropblock_node = {.name = "dropblock2d", .backward = dropblock_backward};

dn_status dn_dropblock2d(dn_tensor **out, dn_tensor *x, double p, int64_t block_size, dn_rng *rng) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  const char *op = "dropblock2d";
  dn_status st = dn_check_float(op, "input", x);
  if (!st) st = dn_dropout_check_p(op, p);
  if (!st && !rng) st = dn_fail(DN_EINVAL, "%s: generator is NULL", op);
  if (st) return st;
  char xs[128];
  st = check_geometry(op, x->ndim, x->shape, block_size, dn_shape_str(x, xs, sizeof xs));
  if (st) return st;
  block_geom g = geometry(x->ndim, x->shape, block_size), all;
  int64_t base;
  st = shard_geometry(op, rng, x->ndim, x->shape, xs, &g, &all, &base);
  if (st) return st;
  if (p == 0.0) {
    *out = dn_tensor_retain(x);
    return DN_OK;
  }
  dn_tensor *src, *y;
  st = dn_plain_contiguous(&src, x);
  if (st) return st;
  st = dn_tensor_new(&y, DN_F32, x->ndim, x->shape);
  if (st) {
    dn_tensor_release(src);
    return st;
  }
  uint64_t seed = rng->seed, offset = rng->offset;
  uint32_t threshold = anchor_threshold(p, &g);
  block_job job = {.g = &g, .dst = dn_tensor_data(y), .src = dn_tensor_data(src), .seed = seed, .offset = offset,
                   .threshold = threshold, .base = base};
  int64_t kept;
  if (all.planes == g.planes) {
    st = run_walks(op, &job, (const block_pass[]){PASS_COUNT, PASS_APPLY}, 2, &kept);
  } else {
    /* a batch shard: the scale counts the whole batch's kept elements, so
       the other samples' decisions are walked too (counted, not applied) */
    block_job counter = {.g = &all, .seed = seed, .offset = offset, .threshold = threshold};
    st = run_walks(op, &counter, (const block_pass[]){PASS_COUNT}, 1, &kept);
    job.scale = counter.scale;
    if (!st) st = run_walks(op, &job, (const block_pass[]){PASS_APPLY}, 1, NULL);
  }
  dn_tensor_release(src);
  dn_node *node = NULL;
  if (!st) st = dn_record(y, &dropblock_node, 1, (const dn_tensor *[]){x}, &node);
  if (st) {
    dn_tensor_release(y);
    return st;
  }
  if (node) {
    node->ints[NODE_SEED] = (int64_t)seed;
    node->ints[NODE_OFFSET] = (int64_t)offset;
    node->ints[NODE_BLOCK] = block_size;
    node->ints[NODE_THRESHOLD] = threshold;
    node->ints[NODE_BASE] = base;
    node->scalars[NODE_SCALE] = job.scale;
  }
  rng->offset += dn_dropout_blocks(anchor_count(&all));
  *out = y;
  return DN_OK;
}

/* --- inspection -------------------------------------------------------------------------- */

dn_status dn_dropblock2d_mask(dn_tensor **mask, const dn_rng *rng, int ndim, const int64_t *shape, double p,
                              int64_t block_size) {
  DN_FPMODE_SCOPE();
  *mask = NULL;
  const char *op = "dropblock2d_mask";
  if (!rng) return dn_fail(DN_EINVAL, "%s: generator is NULL", op);
  dn_status st = dn_dropout_check_p(op, p);
  if (st) return st;
  if (ndim > 0 && !shape) return dn_fail(DN_EINVAL, "%s: shape is NULL for %d dims", op, ndim);
  /* the tensor first: it validates the sizes (negative, too many) */
  st = dn_tensor_new(mask, DN_U8, ndim, shape);
  if (st) return dn_fail_as(st, op);
  char ms[128];
  st = check_geometry(op, ndim, shape, block_size, dn_shape_str(*mask, ms, sizeof ms));
  block_geom g, all;
  int64_t base;
  if (!st) {
    g = geometry(ndim, shape, block_size);
    st = shard_geometry(op, rng, ndim, shape, ms, &g, &all, &base);
  }
  if (!st) {
    /* p = 0 keeps everything, like dn_dropblock2d (which draws nothing then) */
    block_job job = {.g = &g, .keep_dst = dn_tensor_data(*mask), .seed = rng->seed, .offset = rng->offset,
                     .threshold = p == 0.0 ? 0 : anchor_threshold(p, &g), .base = base};
    st = run_walks(op, &job, (const block_pass[]){PASS_KEEP}, 1, NULL);
  }
  if (st) {
    dn_tensor_release(*mask);
    *mask = NULL;
  }
  return st;
}
