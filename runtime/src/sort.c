/*
** Sorting and order statistics: sort, topk, median, quantile, and the
** histogram histc.
**
** Every op orders the elements of a lane (the elements along dim at fixed
** other coordinates) by a 32-bit key whose unsigned order is the order of
** the values: float bits with negative values inverted and the sign bit
** set on the others, -0 read as +0 (they tie, as in PyTorch), every NaN the
** largest key (above +inf, as PyTorch sorts it); int32 with its sign bit
** flipped; uint8 as it is. Descending order inverts the key. Ties keep their
** index order (a stable sort: torch.sort(stable=True)), and the same rule
** picks among ties everywhere: which equal values topk keeps, which element
** is the median. Keys are read from the bits, so the floating-point mode
** (denormals flushed) does not change an order.
**
** Sorting is an LSD radix sort of (key, position) pairs, 8 bits a pass,
** skipping the passes where every key has the same byte; short lanes use
** insertion sort. Selection (topk below half the lane, median) is a radix
** select: byte histograms of the shrinking set of candidates find the k-th
** key T and how many keys lie below it in at most four passes, then one
** walk in index order takes the keys below T and the first ties. That is
** O(n) whatever the data, where a quickselect needs a pivot rule.
** Measured on this 2-core machine (one thread, randn [64, 100000] along
** dim 2, machine shared): sort 99 ms (torch.sort 550 ms, stable 760 ms),
** topk(10) 17-30 ms against the full sort's 99 (torch.topk 18 ms), median
** 17-24 ms (torch.median 115 ms).
**
** Lanes are independent and each is handled by one thread from start to
** end: results do not depend on the thread count.
**
** Autograd: the values of sort, topk and median over a dim send their
** gradient back through the indices (a scatter into zeros); median of all
** elements shares it among the elements equal to it, as PyTorch does;
** quantile sends (1 - w) and w of it to the two elements it interpolates.
** histc records nothing.
*/
#include <float.h>
#include <math.h>
#include <string.h>

#include "dropnet/sort.h"
#include "graph.h"
#include "internal.h"
#include "shape.h"

/* --- keys ----------------------------------------------------------------------------- */

#define NAN_KEY UINT32_MAX

/* The order key of float bits b (see the header comment). */
static inline uint32_t float_key(uint32_t b) {
  uint32_t magnitude = b & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return NAN_KEY;
  if (magnitude == 0) return 0x80000000u;
  return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}

/* Keys of n elements of a (storage offset off, `stride` apart), xor flip. */
static void lane_keys(uint32_t *keys, const dn_tensor *a, int64_t off, int64_t stride, int64_t n, uint32_t flip) {
  switch (a->dtype) {
    case DN_F32: {
      const uint32_t *bits = (const uint32_t *)a->storage->data + off;
      for (int64_t j = 0; j < n; j++) keys[j] = float_key(bits[j * stride]) ^ flip;
      break;
    }
    case DN_I32: {
      const uint32_t *bits = (const uint32_t *)a->storage->data + off;
      for (int64_t j = 0; j < n; j++) keys[j] = (bits[j * stride] ^ 0x80000000u) ^ flip;
      break;
    }
    case DN_U8: {
      const uint8_t *v = (const uint8_t *)a->storage->data + off;
      for (int64_t j = 0; j < n; j++) keys[j] = (uint32_t)v[j * stride] ^ flip;
      break;
    }
  }
}

/* --- sorting and selection of one lane ------------------------------------------------ */

/* Below this many pairs insertion sort beats the radix passes. */
#define INSERTION_MAX 32

/*
** Sorts n (key, position) pairs by key, stably; tkeys, tpos: scratch of n.
** Returns 0 when the result is in keys/pos, 1 when it is in tkeys/tpos.
*/
static int sort_pairs(uint32_t *keys, uint32_t *pos, uint32_t *tkeys, uint32_t *tpos, int64_t n) {
  if (n <= INSERTION_MAX) {
    for (int64_t i = 1; i < n; i++) {
      uint32_t k = keys[i], p = pos[i];
      int64_t j = i;
      for (; j > 0 && keys[j - 1] > k; j--) {
        keys[j] = keys[j - 1];
        pos[j] = pos[j - 1];
      }
      keys[j] = k;
      pos[j] = p;
    }
    return 0;
  }
  int64_t counts[4][256];
  memset(counts, 0, sizeof counts);
  for (int64_t i = 0; i < n; i++) {
    uint32_t k = keys[i];
    counts[0][k & 255]++;
    counts[1][(k >> 8) & 255]++;
    counts[2][(k >> 16) & 255]++;
    counts[3][k >> 24]++;
  }
  uint32_t *from_keys = keys, *from_pos = pos, *to_keys = tkeys, *to_pos = tpos;
  int where = 0;
  for (int b = 0; b < 4; b++) {
    int shift = 8 * b;
    if (counts[b][(keys[0] >> shift) & 255] == n) continue;   /* every key has this byte */
    int64_t next[256], sum = 0;
    for (int c = 0; c < 256; c++) {
      next[c] = sum;
      sum += counts[b][c];
    }
    for (int64_t i = 0; i < n; i++) {
      int64_t at = next[(from_keys[i] >> shift) & 255]++;
      to_keys[at] = from_keys[i];
      to_pos[at] = from_pos[i];
    }
    uint32_t *swap = from_keys;
    from_keys = to_keys;
    to_keys = swap;
    swap = from_pos;
    from_pos = to_pos;
    to_pos = swap;
    where ^= 1;
  }
  return where;
}

/*
** The k-th smallest of n keys (1 <= k <= n) in *t and the number of keys
** below it in *below; candidates: scratch of n.
*/
static void select_key(const uint32_t *keys, int64_t n, int64_t k, uint32_t *candidates, uint32_t *t,
                       int64_t *below) {
  const uint32_t *from = keys;
  int64_t count = n, less = 0;
  uint32_t prefix = 0;
  for (int b = 3; b >= 0; b--) {
    int shift = 8 * b;
    int64_t hist[256];
    memset(hist, 0, sizeof hist);
    for (int64_t i = 0; i < count; i++) hist[(from[i] >> shift) & 255]++;
    int64_t wanted = k - less;
    int c = 0;
    while (hist[c] < wanted) {
      wanted -= hist[c];
      less += hist[c];
      c++;
    }
    prefix |= (uint32_t)c << shift;
    if (b == 0) break;
    int64_t kept = 0;   /* the candidates left: keys with this byte (in place once from == candidates) */
    for (int64_t i = 0; i < count; i++)
      if (((from[i] >> shift) & 255) == (uint32_t)c) candidates[kept++] = from[i];
    from = candidates;
    count = kept;
  }
  *t = prefix;
  *below = less;
}

/* --- lanes ------------------------------------------------------------------------------ */

/*
** The lanes of a along dim, numbered row-major over the other dims: lane l
** is (o, i) with o over the dims before dim and i over the `inner` elements
** after it, so l = o * inner + i.
*/
typedef struct lanes_of {
  const dn_tensor *a;
  int64_t count, length, stride, inner;
  int kept_ndim;
  int64_t kept_shape[DN_MAX_DIMS], kept_stride[DN_MAX_DIMS];
} lanes_of;

/* dim: a dim of a (0 for a 0-dim a); all: one lane of every element, a contiguous. */
static void lanes_init(lanes_of *g, const dn_tensor *a, int dim, bool all) {
  memset(g, 0, sizeof *g);
  g->a = a;
  g->count = g->inner = g->stride = 1;
  if (all || a->ndim == 0) {
    g->length = dn_tensor_numel(a);
    return;
  }
  g->length = a->shape[dim];
  g->stride = a->stride[dim];
  for (int d = 0; d < a->ndim; d++) {
    if (d == dim) continue;
    g->kept_shape[g->kept_ndim] = a->shape[d];
    g->kept_stride[g->kept_ndim++] = a->stride[d];
    g->count *= a->shape[d];
    if (d > dim) g->inner *= a->shape[d];
  }
}

/* Storage offset of lane l's first element. */
static int64_t lane_offset(const lanes_of *g, int64_t l) {
  int64_t off = g->a->offset;
  for (int d = g->kept_ndim - 1; d >= 0; d--) {
    off += (l % g->kept_shape[d]) * g->kept_stride[d];
    l /= g->kept_shape[d];
  }
  return off;
}

/* Element `from` (storage offset) of src into element `to` (storage offset) of dst, same dtype. */
static inline void copy_element(dn_tensor *dst, int64_t to, const dn_tensor *src, int64_t from) {
  if (src->dtype == DN_U8) ((uint8_t *)dst->storage->data)[to] = ((const uint8_t *)src->storage->data)[from];
  else ((uint32_t *)dst->storage->data)[to] = ((const uint32_t *)src->storage->data)[from];
}

typedef enum lane_op { OP_SORT, OP_TOPK, OP_MEDIAN, OP_QUANTILE } lane_op;

typedef struct lane_job {
  lane_op op;
  lanes_of g;
  uint32_t flip;              /* ~0 for descending (sort) or largest (topk) */
  int64_t k;                  /* topk */
  bool sorted;                /* topk */
  int64_t base;               /* of the indices */
  dn_tensor *values, *indices;   /* new, contiguous: [.., n or k, ..] or the reduced shape */
  const float *q;             /* quantile: q_count levels */
  int64_t q_count;
  int32_t *lo, *hi;           /* quantile: [q_count, lanes] positions in the lane */
  float *weight;              /* quantile: [q_count, lanes] */
  uint32_t *scratch;          /* 4 * length per task */
} lane_job;

/* Writes m pairs (positions in lane l) as the lane's slice of values and indices ([.., m, ..] outputs). */
static void write_lane(const lane_job *j, int64_t l, int64_t off, const uint32_t *pos, int64_t m) {
  const lanes_of *g = &j->g;
  int64_t inner = g->inner, first = (l / inner) * m * inner + l % inner;
  int32_t *indices = dn_tensor_data(j->indices);
  for (int64_t t = 0; t < m; t++) {
    copy_element(j->values, first + t * inner, g->a, off + (int64_t)pos[t] * g->stride);
    indices[first + t * inner] = (int32_t)(pos[t] + j->base);
  }
}

/* Sorts the lane at storage offset off by key xor flip in scratch s; *keys and the returned positions
   point at the result. */
static const uint32_t *sorted_lane(const lane_job *j, int64_t off, uint32_t flip, uint32_t *s,
                                   const uint32_t **keys) {
  int64_t n = j->g.length;
  uint32_t *k = s, *pos = s + n, *tkeys = s + 2 * n, *tpos = s + 3 * n;
  lane_keys(k, j->g.a, off, j->g.stride, n, flip);
  for (int64_t i = 0; i < n; i++) pos[i] = (uint32_t)i;
  bool moved = sort_pairs(k, pos, tkeys, tpos, n);
  *keys = moved ? tkeys : k;
  return moved ? tpos : pos;
}

static void sort_lane(const lane_job *j, int64_t l, uint32_t *s) {
  int64_t off = lane_offset(&j->g, l);
  const uint32_t *keys;
  write_lane(j, l, off, sorted_lane(j, off, j->flip, s, &keys), j->g.length);
}

/*
** topk: a full sort when sorted output is wanted of at least half the lane
** (selection would cost as much), else select the k-th key T and walk the
** lane in index order taking the keys below T and the first ties: that is
** the unsorted result; sorting those k pairs stably gives the same order as
** the full sort's first k.
*/
static void topk_lane(const lane_job *j, int64_t l, uint32_t *s) {
  int64_t n = j->g.length, k = j->k, off = lane_offset(&j->g, l);
  if (k == 0) return;
  if (j->sorted && 2 * k >= n) {
    const uint32_t *keys;
    write_lane(j, l, off, sorted_lane(j, off, j->flip, s, &keys), k);
    return;
  }
  uint32_t *keys = s, *candidates = s + n, *picked_keys = s + 2 * n, *picked_pos = s + 3 * n;
  lane_keys(keys, j->g.a, off, j->g.stride, n, j->flip);
  uint32_t t;
  int64_t below;
  select_key(keys, n, k, candidates, &t, &below);
  int64_t ties = k - below, m = 0;
  for (int64_t i = 0; i < n && m < k; i++) {
    uint32_t key = keys[i];
    if (key < t || (key == t && ties-- > 0)) {
      picked_keys[m] = key;
      picked_pos[m++] = (uint32_t)i;
    }
  }
  const uint32_t *pos = picked_pos;
  if (j->sorted && sort_pairs(picked_keys, picked_pos, keys, candidates, k)) pos = candidates;
  write_lane(j, l, off, pos, k);
}

/* The lower median, at sorted position (n - 1) / 2; NaN (the first one) if the lane holds one. */
static void median_lane(const lane_job *j, int64_t l, uint32_t *s) {
  int64_t n = j->g.length, off = lane_offset(&j->g, l), at = -1;
  uint32_t *keys = s, *candidates = s + n;
  lane_keys(keys, j->g.a, off, j->g.stride, n, 0);
  if (j->g.a->dtype == DN_F32) {
    for (int64_t i = 0; i < n && at < 0; i++)
      if (keys[i] == NAN_KEY) at = i;
  }
  if (at < 0) {
    uint32_t t;
    int64_t below;
    select_key(keys, n, (n - 1) / 2 + 1, candidates, &t, &below);
    int64_t rank = (n - 1) / 2 + 1 - below;   /* the rank-th key equal to t, in index order */
    for (int64_t i = 0; i < n && at < 0; i++)
      if (keys[i] == t && --rank == 0) at = i;
  }
  copy_element(j->values, l, j->g.a, off + at * j->g.stride);
  ((int32_t *)dn_tensor_data(j->indices))[l] = (int32_t)(at + j->base);
}

/*
** Quantile q of a sorted lane, as torch.quantile's default (linear)
** interpolation computes it in float32: rank = q (n - 1), the values at
** floor(rank) and ceil(rank) interpolated by w = rank - floor(rank) with
** PyTorch's lerp (from the nearer end); a lane holding NaN gives its last
** sorted element, a NaN.
*/
static void quantile_lane(const lane_job *j, int64_t l, uint32_t *s) {
  int64_t n = j->g.length, off = lane_offset(&j->g, l);
  const uint32_t *keys, *pos = sorted_lane(j, off, 0, s, &keys);
  bool nan = keys[n - 1] == NAN_KEY;
  const float *x = (const float *)j->g.a->storage->data + off;
  float *out = dn_tensor_data(j->values), last = (float)(n - 1);
  for (int64_t i = 0; i < j->q_count; i++) {
    float rank = nan ? last : j->q[i] * last;
    /* (float)(n - 1) may round up past n - 1 in lanes longer than 2^24 */
    int64_t lo = (int64_t)rank, hi = (int64_t)ceilf(rank), e = i * j->g.count + l;
    if (hi > n - 1) hi = n - 1;
    if (lo > n - 1) lo = n - 1;
    float w = rank - (float)lo, a = x[(int64_t)pos[lo] * j->g.stride], b = x[(int64_t)pos[hi] * j->g.stride];
    out[e] = w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
    j->lo[e] = (int32_t)pos[lo];
    j->hi[e] = (int32_t)pos[hi];
    j->weight[e] = w;
  }
}

static void lane_task(void *ctx, int task, int tasks) {
  const lane_job *j = ctx;
  uint32_t *s = j->scratch + (size_t)task * 4 * (size_t)j->g.length;
  for (int64_t l = dn_split(j->g.count, task, tasks); l < dn_split(j->g.count, task + 1, tasks); l++) {
    switch (j->op) {
      case OP_SORT: sort_lane(j, l, s); break;
      case OP_TOPK: topk_lane(j, l, s); break;
      case OP_MEDIAN: median_lane(j, l, s); break;
      case OP_QUANTILE: quantile_lane(j, l, s); break;
    }
  }
}

/* Runs j over every lane: one task per thread, each with its own scratch. */
static dn_status lane_run(lane_job *j, const char *name) {
  if (j->g.count == 0 || j->g.length == 0) return DN_OK;
  int tasks = dn_threads_for(j->g.count * j->g.length), parts = dn_threads_most_for(j->g.count * j->g.length);
  if (tasks > j->g.count) tasks = (int)j->g.count;
  if (parts > j->g.count) parts = (int)j->g.count;   /* parts: internal.h */
  j->scratch = dn_alloc((size_t)parts * 4 * (size_t)j->g.length * sizeof *j->scratch);
  if (!j->scratch) return dn_fail(DN_ENOMEM, "%s: out of memory for the lanes' scratch", name);
  dn_parallel(tasks, lane_task, j);
  dn_free(j->scratch);
  j->scratch = NULL;
  return DN_OK;
}

/* --- checks ----------------------------------------------------------------------------- */

/* dim wrapped (a 0-dim tensor accepts 0 and -1, as in PyTorch). */
static dn_status check_dim(const char *name, const dn_tensor *a, int *dim) {
  char sb[128];
  int d = a->ndim == 0 && *dim == -1 ? 0 : *dim;
  if (!dn_wrap_dim(&d, a->ndim))
    return dn_fail(DN_EINVAL, "%s: dim %d out of range for a %d-D tensor of shape %s", name, *dim, a->ndim,
                   dn_shape_str(a, sb, sizeof sb));
  *dim = d;
  return DN_OK;
}

/* --- backward through the indices ------------------------------------------------------- */

/* Node layout of sort, topk and median over a dim: ints and saved slot. */
enum { SEL_DIM, SEL_BASE, SEL_KEEPDIM };
enum { SAVED_SEL_INDICES };

/* t as a view with a dim of size 1 inserted at dim. */
static dn_status unsqueeze_alias(dn_tensor **out, dn_tensor *t, int dim) {
  int64_t shape[DN_MAX_DIMS], stride[DN_MAX_DIMS];
  int n = 0;
  for (int d = 0; d <= t->ndim; d++) {
    if (d == dim) {
      shape[n] = 1;
      stride[n++] = 0;
    }
    if (d < t->ndim) {
      shape[n] = t->shape[d];
      stride[n++] = t->stride[d];
    }
  }
  return dn_tensor_alias(out, t, n, shape, stride, t->offset);
}

/* The gradient goes to the selected elements: zeros with grad scattered through the indices. */
static dn_status selected_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  int dim = (int)node->ints[SEL_DIM], ndim = node->in_ndim[0];
  dn_tensor *indices, *dx, *index_view = NULL, *grad_view = NULL;
  dn_status st = dn_node_saved(node, SAVED_SEL_INDICES, &indices);
  if (!st) st = dn_tensor_zeros(&dx, DN_F32, ndim, node->in_shape[0]);
  if (st) return st;
  if (!node->ints[SEL_KEEPDIM] && ndim > 0) {   /* median without keepdim: the reduced dim back as 1 */
    st = unsqueeze_alias(&index_view, indices, dim);
    if (!st) st = unsqueeze_alias(&grad_view, grad, dim);
  } else {
    index_view = dn_tensor_retain(indices);
    grad_view = dn_tensor_retain(grad);
  }
  if (!st) dn_scatter_add_into(dx, dim, index_view, grad_view, node->ints[SEL_BASE]);
  dn_tensor_release(index_view);
  dn_tensor_release(grad_view);
  if (st) {
    dn_tensor_release(dx);
    return st;
  }
  grad_in[0] = dx;
  return DN_OK;
}

static const dn_node_type sort_node = {.name = "sort", .backward = selected_backward};
static const dn_node_type topk_node = {.name = "topk", .backward = selected_backward};
static const dn_node_type median_dim_node = {.name = "median", .backward = selected_backward};

/* Records a selecting node on values (indices counting from base along dim). */
static dn_status record_selection(dn_tensor *values, const dn_node_type *type, const dn_tensor *a, int dim,
                                  bool keepdim, const dn_tensor *indices, int64_t base) {
  dn_node *node;
  dn_status st = dn_record(values, type, 1, &a, &node);
  if (st || !node) return st;
  node->ints[SEL_DIM] = dim;
  node->ints[SEL_BASE] = base;
  node->ints[SEL_KEEPDIM] = keepdim;
  return dn_node_save(node, SAVED_SEL_INDICES, indices);
}

/* Hands values/indices to the caller (either may be NULL) or releases them. */
static void hand_over(dn_tensor **values, dn_tensor **indices, dn_tensor *v, dn_tensor *i) {
  if (values) *values = v;
  else dn_tensor_release(v);
  if (indices) *indices = i;
  else dn_tensor_release(i);
}

/* --- sort and topk ------------------------------------------------------------------------ */

/* The sort or topk of a along dim into [.., m, ..] outputs (m = n for sort, k for topk). */
static dn_status order_dim(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int dim, int64_t k,
                           bool reverse, bool sorted, int64_t base, lane_op op) {
  DN_FPMODE_SCOPE();
  if (values) *values = NULL;
  if (indices) *indices = NULL;
  const char *name = op == OP_SORT ? "sort" : "topk";
  char sb[128];
  dn_status st = check_dim(name, a, &dim);
  if (st) return st;
  lane_job j;
  memset(&j, 0, sizeof j);
  lanes_init(&j.g, a, dim, false);
  if (op == OP_TOPK && a->ndim == 0 && k != 1)
    return dn_fail(DN_EINVAL, "topk: k must be 1 for a 0-dim tensor (got %lld)", (long long)k);
  if (op == OP_TOPK && (k < 0 || k > j.g.length))
    return dn_fail(DN_EINVAL, "topk: k must be in [0, %lld], the size of the dim (shape %s; got %lld)",
                   (long long)j.g.length, dn_shape_str(a, sb, sizeof sb), (long long)k);
  if ((st = dn_check_index_base(name, base, j.g.length))) return st;
  int64_t shape[DN_MAX_DIMS];
  memcpy(shape, a->shape, sizeof shape);
  if (a->ndim > 0 && op == OP_TOPK) shape[dim] = k;
  if ((st = dn_tensor_new(&j.values, a->dtype, a->ndim, shape))) return st;
  if ((st = dn_tensor_new(&j.indices, DN_I32, a->ndim, shape))) {
    dn_tensor_release(j.values);
    return st;
  }
  j.op = op;
  j.flip = reverse ? UINT32_MAX : 0;
  j.k = k;
  j.sorted = sorted;
  j.base = base;
  st = lane_run(&j, name);
  if (!st) st = record_selection(j.values, op == OP_SORT ? &sort_node : &topk_node, a, dim, true, j.indices, base);
  if (st) {
    dn_tensor_release(j.values);
    dn_tensor_release(j.indices);
    return st;
  }
  hand_over(values, indices, j.values, j.indices);
  return DN_OK;
}

dn_status dn_sort(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int dim, bool descending,
                  int64_t base) {
  return order_dim(values, indices, a, dim, 0, descending, true, base, OP_SORT);
}

dn_status dn_topk(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int64_t k, int dim, bool largest,
                  bool sorted, int64_t base) {
  return order_dim(values, indices, a, dim, k, largest, sorted, base, OP_TOPK);
}

/* --- median ------------------------------------------------------------------------------------ */

dn_status dn_median_dim(dn_tensor **values, dn_tensor **indices, const dn_tensor *a, int dim, bool keepdim,
                        int64_t base) {
  DN_FPMODE_SCOPE();
  if (values) *values = NULL;
  if (indices) *indices = NULL;
  char sb[128];
  dn_status st = check_dim("median", a, &dim);
  if (st) return st;
  lane_job j;
  memset(&j, 0, sizeof j);
  lanes_init(&j.g, a, dim, false);
  if (j.g.length == 0 && j.g.count > 0)
    return dn_fail(DN_EINVAL, "median: cannot take the median along a dim of size 0 (shape %s)",
                   dn_shape_str(a, sb, sizeof sb));
  if ((st = dn_check_index_base("median", base, j.g.length))) return st;
  /* keepdim leaves the reduced dim as 1; a 0-dim input stays 0-dim */
  int64_t shape[DN_MAX_DIMS];
  int ndim = 0;
  for (int d = 0; d < a->ndim; d++) {
    if (d != dim) shape[ndim++] = a->shape[d];
    else if (keepdim) shape[ndim++] = 1;
  }
  if ((st = dn_tensor_new(&j.values, a->dtype, ndim, shape))) return st;
  if ((st = dn_tensor_new(&j.indices, DN_I32, ndim, shape))) {
    dn_tensor_release(j.values);
    return st;
  }
  j.op = OP_MEDIAN;
  j.base = base;
  st = lane_run(&j, "median");
  if (!st) st = record_selection(j.values, &median_dim_node, a, dim, keepdim, j.indices, base);
  if (st) {
    dn_tensor_release(j.values);
    dn_tensor_release(j.indices);
    return st;
  }
  hand_over(values, indices, j.values, j.indices);
  return DN_OK;
}

/* median of all elements: scalars[MEDIAN_VALUE] the result, saved[SAVED_MEDIAN_INPUT] the input. */
enum { MEDIAN_VALUE };
enum { SAVED_MEDIAN_INPUT };

/* The gradient shared evenly by the elements equal to the median (the NaNs when it is NaN). */
static dn_status median_all_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  dn_tensor *saved, *x, *dx;
  dn_status st = dn_node_saved(node, SAVED_MEDIAN_INPUT, &saved);
  if (!st) st = dn_plain_contiguous(&x, saved);
  if (st) return st;
  if ((st = dn_tensor_new(&dx, DN_F32, node->in_ndim[0], node->in_shape[0]))) {
    dn_tensor_release(x);
    return st;
  }
  const float *xs = dn_tensor_data(x);
  float *d = dn_tensor_data(dx), median = (float)node->scalars[MEDIAN_VALUE];
  int64_t n = dn_tensor_numel(x), count = 0;
  bool nan = isnan(median);
  for (int64_t i = 0; i < n; i++) count += nan ? isnan(xs[i]) != 0 : xs[i] == median;
  float share = count ? (float)dn_load(grad, grad->offset) / (float)count : 0.0f;
  for (int64_t i = 0; i < n; i++) d[i] = (nan ? isnan(xs[i]) != 0 : xs[i] == median) ? share : 0.0f;
  dn_tensor_release(x);
  grad_in[0] = dx;
  return DN_OK;
}
static const dn_node_type median_all_node = {.name = "median", .backward = median_all_backward};

dn_status dn_median_all(dn_tensor **out, const dn_tensor *a) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  int64_t n = dn_tensor_numel(a);
  if (n == 0 && a->dtype != DN_F32)
    return dn_fail(DN_EINVAL, "median: an empty %s tensor has no median", dn_dtype_name(a->dtype));
  dn_tensor *x, *result;
  dn_status st = dn_plain_contiguous(&x, a);
  if (st) return st;
  lane_job j;
  memset(&j, 0, sizeof j);
  lanes_init(&j.g, x, 0, true);
  j.op = OP_MEDIAN;
  if (!(st = dn_tensor_new(&j.values, a->dtype, 0, NULL)) && !(st = dn_tensor_new(&j.indices, DN_I32, 0, NULL))) {
    if (n == 0) *(float *)dn_tensor_data(j.values) = NAN;   /* PyTorch's median of nothing */
    st = lane_run(&j, "median");
  }
  dn_tensor_release(x);
  dn_tensor_release(j.indices);
  result = j.values;
  dn_node *node = NULL;
  if (!st) st = dn_record(result, &median_all_node, 1, &a, &node);
  if (!st && node) {
    node->scalars[MEDIAN_VALUE] = dn_load(result, result->offset);
    st = dn_node_save(node, SAVED_MEDIAN_INPUT, a);
  }
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  *out = result;
  return DN_OK;
}

/* --- quantile ---------------------------------------------------------------------------------- */

/* Node layout: ints, saved slots. The positions and weights are [q_count, lanes]. */
enum { QUANT_DIM, QUANT_LANES, QUANT_COUNT };   /* QUANT_DIM -1: all elements; QUANT_COUNT: q's */
enum { SAVED_QUANT_LO, SAVED_QUANT_HI, SAVED_QUANT_WEIGHT };

typedef struct quantile_grad {
  float *dx;                          /* the input's shape, contiguous */
  const float *grad, *weight;         /* [q_count, lanes] */
  const int32_t *lo, *hi;
  int64_t lanes, length, inner, q_count;
} quantile_grad;

/* Lanes [l0, l1): each adds its quantiles' shares in order of q, into its own elements. */
static void quantile_grad_lanes(const void *ctx, int64_t l0, int64_t l1) {
  const quantile_grad *w = ctx;
  for (int64_t l = l0; l < l1; l++) {
    float *lane = w->dx + (l / w->inner) * w->length * w->inner + l % w->inner;
    for (int64_t i = 0; i < w->q_count; i++) {
      int64_t e = i * w->lanes + l;
      float g = w->grad[e], weight = w->weight[e];
      lane[(int64_t)w->lo[e] * w->inner] += g * (1.0f - weight);
      lane[(int64_t)w->hi[e] * w->inner] += g * weight;
    }
  }
}

static dn_status quantile_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  if (!node->needs_grad[0]) return DN_OK;
  dn_tensor *lo, *hi, *weight, *g = NULL, *dx = NULL;
  dn_status st = dn_node_saved(node, SAVED_QUANT_LO, &lo);
  if (!st) st = dn_node_saved(node, SAVED_QUANT_HI, &hi);
  if (!st) st = dn_node_saved(node, SAVED_QUANT_WEIGHT, &weight);
  if (!st) st = dn_plain_contiguous(&g, grad);
  if (!st) st = dn_tensor_zeros(&dx, DN_F32, node->in_ndim[0], node->in_shape[0]);
  if (st) {
    dn_tensor_release(g);
    return st;
  }
  int dim = (int)node->ints[QUANT_DIM];
  quantile_grad w = {.dx = dn_tensor_data(dx),
                     .grad = dn_tensor_data(g),
                     .weight = dn_tensor_data(weight),
                     .lo = dn_tensor_data(lo),
                     .hi = dn_tensor_data(hi),
                     .lanes = node->ints[QUANT_LANES],
                     .length = 1,
                     .inner = 1,
                     .q_count = node->ints[QUANT_COUNT]};
  for (int d = 0; d < node->in_ndim[0]; d++) {
    int64_t extent = node->in_shape[0][d];
    if (dim < 0 || d == dim) w.length *= extent;
    else if (d > dim) w.inner *= extent;
  }
  if (w.lanes > 0 && w.q_count > 0) dn_parallel_rows(w.lanes, 2 * w.q_count, quantile_grad_lanes, &w);
  dn_tensor_release(g);
  grad_in[0] = dx;
  return DN_OK;
}
static const dn_node_type quantile_node = {.name = "quantile", .backward = quantile_backward};

/* q as a contiguous float32 copy with its checks: 0-dim or 1-D, every value in [0, 1]. */
static dn_status quantile_levels(dn_tensor **levels, const dn_tensor *q) {
  *levels = NULL;
  char sb[128];
  dn_status st = dn_check_float("quantile", "q", q);
  if (st) return st;
  if (q->ndim > 1)
    return dn_fail(DN_ESHAPE, "quantile: q must be a number or a 1-D tensor (got shape %s)",
                   dn_shape_str(q, sb, sizeof sb));
  if ((st = dn_plain_contiguous(levels, q))) return st;
  const float *v = dn_tensor_data(*levels);
  for (int64_t i = 0; i < dn_tensor_numel(q); i++) {
    if (!(v[i] >= 0.0f && v[i] <= 1.0f)) {
      dn_tensor_release(*levels);
      *levels = NULL;
      return dn_fail(DN_EINVAL, "quantile: q must be in [0, 1] (got %g)", (double)v[i]);
    }
  }
  return DN_OK;
}

/* The quantiles of a along dim, or of all elements when all; outputs [q_count?, reduced...]. */
static dn_status quantile(dn_tensor **out, const dn_tensor *a, const dn_tensor *q, int dim, bool all, bool keepdim) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = dn_check_float("quantile", "input", a);
  if (!st && !all) st = check_dim("quantile", a, &dim);
  if (st) return st;
  if (dn_tensor_numel(a) == 0) return dn_fail(DN_EINVAL, "quantile: input is empty");
  if (all) dim = -1;
  /* result: q's dim first (when q is 1-D), then a's dims with dim (all: every dim) removed or kept as 1 */
  int64_t shape[DN_MAX_DIMS + 1];
  int ndim = 0;
  if (q->ndim == 1) shape[ndim++] = q->shape[0];
  for (int d = 0; d < a->ndim; d++) {
    if (!all && d != dim) shape[ndim++] = a->shape[d];
    else if (keepdim) shape[ndim++] = 1;
  }
  if (ndim > DN_MAX_DIMS)
    return dn_fail(DN_EINVAL, "quantile: the result would have %d dims (at most %d)", ndim, DN_MAX_DIMS);
  dn_tensor *levels, *x = NULL, *lo = NULL, *hi = NULL, *weight = NULL;
  if ((st = quantile_levels(&levels, q))) return st;
  lane_job j;
  memset(&j, 0, sizeof j);
  if (all) st = dn_plain_contiguous(&x, a);
  else x = dn_tensor_retain((dn_tensor *)a);
  if (!st) {
    lanes_init(&j.g, x, dim, all);
    int64_t stats_shape[2] = {dn_tensor_numel(q), j.g.count};
    if (!(st = dn_tensor_new(&j.values, DN_F32, ndim, shape)) && !(st = dn_tensor_new(&lo, DN_I32, 2, stats_shape)) &&
        !(st = dn_tensor_new(&hi, DN_I32, 2, stats_shape)) && !(st = dn_tensor_new(&weight, DN_F32, 2, stats_shape))) {
      j.op = OP_QUANTILE;
      j.q = dn_tensor_data(levels);
      j.q_count = dn_tensor_numel(levels);
      j.lo = dn_tensor_data(lo);
      j.hi = dn_tensor_data(hi);
      j.weight = dn_tensor_data(weight);
      if (j.q_count > 0) st = lane_run(&j, "quantile");
    }
  }
  dn_node *node = NULL;
  if (!st) st = dn_record(j.values, &quantile_node, 1, &a, &node);
  if (!st && node) {
    node->ints[QUANT_DIM] = dim;
    node->ints[QUANT_LANES] = j.g.count;
    node->ints[QUANT_COUNT] = j.q_count;
    if (!(st = dn_node_save(node, SAVED_QUANT_LO, lo)) && !(st = dn_node_save(node, SAVED_QUANT_HI, hi)))
      st = dn_node_save(node, SAVED_QUANT_WEIGHT, weight);
  }
  dn_tensor_release(levels);
  dn_tensor_release(x);
  dn_tensor_release(lo);
  dn_tensor_release(hi);
  dn_tensor_release(weight);
  if (st) {
    dn_tensor_release(j.values);
    return st;
  }
  *out = j.values;
  return DN_OK;
}

dn_status dn_quantile_all(dn_tensor **out, const dn_tensor *a, const dn_tensor *q, bool keepdim) {
  return quantile(out, a, q, 0, true, keepdim);
}

dn_status dn_quantile_dim(dn_tensor **out, const dn_tensor *a, const dn_tensor *q, int dim, bool keepdim) {
  return quantile(out, a, q, dim, false, keepdim);
}

/* --- histc ------------------------------------------------------------------------------------- */

typedef struct histc_job {
  const float *x;
  int64_t n, bins;
  float lo, hi, range, fbins;
  int64_t *counts;     /* [tasks, bins] */
  float *mins, *maxs;  /* [tasks]: the data's extrema, when asked for */
} histc_job;

/* Element i's bin as torch.histc finds it: ((x - lo) / (hi - lo)) * bins in float32, max in the last bin. */
static inline int64_t bin_of(const histc_job *j, float x) {
  float p = (x - j->lo) / j->range * j->fbins;
  return p < j->fbins ? (int64_t)p : j->bins - 1;   /* (a NaN from an infinite range lands last) */
}

static void histc_count(void *ctx, int task, int tasks) {
  const histc_job *j = ctx;
  int64_t *counts = j->counts + (size_t)task * (size_t)j->bins;
  memset(counts, 0, (size_t)j->bins * sizeof *counts);
  for (int64_t i = dn_split(j->n, task, tasks); i < dn_split(j->n, task + 1, tasks); i++) {
    float x = j->x[i];
    if (x >= j->lo && x <= j->hi) counts[bin_of(j, x)]++;   /* NaN and values outside are left out */
  }
}

static void histc_extrema(void *ctx, int task, int tasks) {
  const histc_job *j = ctx;
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t i = dn_split(j->n, task, tasks); i < dn_split(j->n, task + 1, tasks); i++) {
    lo = dn_min_nan(lo, j->x[i]);
    hi = dn_max_nan(hi, j->x[i]);
  }
  j->mins[task] = lo;
  j->maxs[task] = hi;
}

dn_status dn_histc(dn_tensor **counts, dn_tensor **edges, const dn_tensor *a, int64_t bins, double min, double max) {
  DN_FPMODE_SCOPE();
  *counts = NULL;
  if (edges) *edges = NULL;
  dn_status st = dn_check_float("histc", "input", a);
  if (st) return st;
  if (bins < 1 || bins >= DN_MAX_NUMEL)
    return dn_fail(DN_EINVAL, "histc: bins must be in [1, 2^40) (got %lld)", (long long)bins);
  dn_tensor *x;
  if ((st = dn_plain_contiguous(&x, a))) return st;
  histc_job j = {.x = dn_tensor_data(x), .n = dn_tensor_numel(x), .bins = bins, .fbins = (float)bins};
  int tasks = dn_threads_for(j.n);
  /* min == max: the data's range (PyTorch), widened by 1 on each side if the data are all equal */
  if (min == max && j.n > 0) {
    float mins[DN_MAX_THREADS], maxs[DN_MAX_THREADS];
    j.mins = mins;
    j.maxs = maxs;
    dn_parallel(tasks, histc_extrema, &j);
    float lo = mins[0], hi = maxs[0];
    for (int t = 1; t < tasks; t++) {
      lo = dn_min_nan(lo, mins[t]);
      hi = dn_max_nan(hi, maxs[t]);
    }
    min = lo;
    max = hi;
  }
  if (min == max) {
    min -= 1;
    max += 1;
  }
  /* (a double beyond float32's range must not be converted: that is undefined) */
  if (!(fabs(min) <= FLT_MAX && fabs(max) <= FLT_MAX))   /* (fabs: a NaN prints as "nan", not "-nan") */
    st = dn_fail(DN_EINVAL, "histc: range [%g, %g] is not finite in float32", isnan(min) ? fabs(min) : min,
                 isnan(max) ? fabs(max) : max);
  else if (!(min < max))
    st = dn_fail(DN_EINVAL, "histc: max must be larger than min (got min %g, max %g)", min, max);
  else if (!((float)min < (float)max))
    st = dn_fail(DN_EINVAL, "histc: min %.9g and max %.9g are the same float32", min, max);
  if (!st) {
    j.lo = (float)min;
    j.hi = (float)max;
    j.range = j.hi - j.lo;
  }
  /* one histogram per task pays when each task has more elements than bins; the counts are allocated for the
     uncontended count of tasks (internal.h, dn_threads_most_for), of which tasks is 1 or all */
  int parts = dn_threads_most_for(j.n);
  if (bins > j.n / parts) parts = 1;
  if (tasks > parts) tasks = parts;
  dn_tensor *result = NULL, *edge_values = NULL;
  if (!st && (st = dn_tensor_new(&result, DN_F32, 1, (int64_t[]){bins}))) st = dn_fail_as(st, "histc");
  if (!st && edges && (st = dn_tensor_new(&edge_values, DN_F32, 1, (int64_t[]){bins + 1})))
    st = dn_fail_as(st, "histc");
  if (!st && !(j.counts = dn_alloc((size_t)parts * (size_t)bins * sizeof *j.counts)))
    st = dn_fail(DN_ENOMEM, "histc: out of memory for %lld bins", (long long)bins);
  if (!st) {
    dn_parallel(tasks, histc_count, &j);
    float *c = dn_tensor_data(result);
    for (int64_t b = 0; b < bins; b++) {
      int64_t sum = 0;
      for (int t = 0; t < tasks; t++) sum += j.counts[(size_t)t * (size_t)bins + (size_t)b];
      c[b] = (float)sum;
    }
    if (edge_values) {
      /* the float32 nearest to lo + i (hi - lo) / bins; the ends exact */
      float *e = dn_tensor_data(edge_values);
      double lo = j.lo, width = ((double)j.hi - lo) / (double)bins;
      for (int64_t b = 0; b <= bins; b++) e[b] = (float)(lo + width * (double)b);
      e[0] = j.lo;
      e[bins] = j.hi;
    }
  }
  dn_free(j.counts);
  dn_tensor_release(x);
  if (st) {
    dn_tensor_release(result);
    dn_tensor_release(edge_values);
    return st;
  }
  *counts = result;
  if (edges) *edges = edge_values;
  return DN_OK;
}
