/*
** Data-parallel gradient reduction (dist.h): buckets filled by leaf hooks,
** exchanged without blocking while backward goes on, finished by an
** end-of-backward callback.
**
** A bucket's exchange, for W ranks: the bucket is cut into W slices and
** rank s owns slice s. Phase 1 (scatter): every rank sends slice s to rank s
** and receives its own slice from every other rank. The owner then adds the
** W copies in rank order, one element at a time (the same bits whatever the
** arrival order). Phase 2 (gather): the owner sends its summed slice to all,
** and receives the others' summed slices into place. Each rank sends and
** receives (W-1)/W of the bucket twice, as a ring would, and the sums are
** spread over the ranks. Messages are tagged by bucket and phase, so buckets
** may be in flight in any order.
**
** Open MPI moves a message only inside MPI calls (no progress thread), so
** every hook call tests the buckets in flight: a bucket advances between the
** layers of backward, and the end of backward waits for what is left.
*/
#include <math.h>
#include <string.h>
#include <time.h>

#include "dropnet/alloc.h"
#include "dropnet/autograd.h"
#include "dropnet/dist.h"
#include "internal.h"

#ifdef DN_HAVE_MPI

#include "dist_mpi.h"

enum { IDLE, SCATTER, GATHER, DONE };

typedef struct bucket {
  int64_t offset, numel;      /* elements of the flat buffer */
  int params;                 /* parameters in it */
  int pending;                /* of them, not ready in this backward */
  int phase;
  int nreqs;
  MPI_Request *reqs;          /* 2 (W-1) */
  float *scratch;             /* the other ranks' copies of this rank's slice: (W-1) x slice */
} bucket;

typedef struct watch {        /* a hook's userdata: which parameter */
  struct dn_dist_reducer *r;
  int index;
} watch;

struct dn_dist_reducer {
  int count;
  dn_tensor **params;         /* owned references */
  dn_hook **hooks;
  watch *watches;
  int64_t *offset;            /* per parameter, in flat */
  int *bucket_of;
  bool *ready, *had_grad;
  float *flat;
  bucket *buckets;
  int nbuckets;
  int rank, ranks;
  float weight;
  bool active;                /* a backward reached a hook and queued finish */
  bool broken;                /* a backward failed with an exchange in flight */
  dn_dist_reducer_stats stats;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Slice s of n elements cut in W: [start, start + len). */
static void slice(int64_t n, int ranks, int s, int64_t *start, int64_t *len) {
  int64_t a = n * s / ranks, b = n * (s + 1) / ranks;
  *start = a;
  *len = b - a;
}

static int tag_of(int b, int phase) { return 2 * b + (phase == GATHER); }

static dn_status post(const char *fn, dn_dist_reducer *r, int b, int phase) {
  bucket *k = &r->buckets[b];
  float *data = r->flat + k->offset;
  int64_t mine, mylen;
  slice(k->numel, r->ranks, r->rank, &mine, &mylen);
  MPI_Comm comm = dn_dist_comm();
  int tag = tag_of(b, phase), n = 0, err = MPI_SUCCESS;
  for (int s = 0, slot = 0; s < r->ranks && err == MPI_SUCCESS; s++) {
    if (s == r->rank) continue;
    int64_t start, len;
    slice(k->numel, r->ranks, s, &start, &len);
    if (phase == SCATTER) {
      err = MPI_Irecv(k->scratch + (int64_t)slot * mylen, (int)mylen, MPI_FLOAT, s, tag, comm, &k->reqs[n++]);
      if (err == MPI_SUCCESS) err = MPI_Isend(data + start, (int)len, MPI_FLOAT, s, tag, comm, &k->reqs[n++]);
    } else {
      err = MPI_Irecv(data + start, (int)len, MPI_FLOAT, s, tag, comm, &k->reqs[n++]);
      if (err == MPI_SUCCESS) err = MPI_Isend(data + mine, (int)mylen, MPI_FLOAT, s, tag, comm, &k->reqs[n++]);
    }
    slot++;
  }
  k->nreqs = n;
  k->phase = phase;
  return err == MPI_SUCCESS ? DN_OK : dn_dist_mpi_fail(fn, phase == SCATTER ? "MPI_Isend (scatter)" : "MPI_Isend (gather)", err);
}

/* This rank's slice = the W copies added in rank order. */
static void sum_slice(dn_dist_reducer *r, bucket *k) {
  int64_t mine, mylen;
  slice(k->numel, r->ranks, r->rank, &mine, &mylen);
  float *own = r->flat + k->offset + mine;
  enum { CHUNK = 1024 };
  float acc[CHUNK];
  for (int64_t i0 = 0; i0 < mylen; i0 += CHUNK) {
    int64_t n = mylen - i0 < CHUNK ? mylen - i0 : CHUNK;
    for (int s = 0, slot = 0; s < r->ranks; s++) {
      const float *src = s == r->rank ? own + i0 : k->scratch + (int64_t)slot++ * mylen + i0;
      if (s == 0) memcpy(acc, src, (size_t)n * sizeof *acc);
      else
        for (int64_t i = 0; i < n; i++) acc[i] += src[i];
    }
    memcpy(own + i0, acc, (size_t)n * sizeof *acc);
  }
}

/* Moves bucket b on when its messages are done; with wait, blocks until it is DONE. */
static dn_status advance(const char *fn, dn_dist_reducer *r, int b, bool wait) {
  bucket *k = &r->buckets[b];
  while (k->phase == SCATTER || k->phase == GATHER) {
    int done = 1, err;
    if (wait) err = MPI_Waitall(k->nreqs, k->reqs, MPI_STATUSES_IGNORE);
    else err = MPI_Testall(k->nreqs, k->reqs, &done, MPI_STATUSES_IGNORE);
    if (err != MPI_SUCCESS) return dn_dist_mpi_fail(fn, wait ? "MPI_Waitall" : "MPI_Testall", err);
    if (!done) return DN_OK;
    if (k->phase == GATHER) {
      k->phase = DONE;
    } else {
      sum_slice(r, k);
      dn_status st = post(fn, r, b, GATHER);
      if (st) return st;
    }
  }
  return DN_OK;
}

static dn_status poll_all(const char *fn, dn_dist_reducer *r) {
  for (int b = 0; b < r->nbuckets; b++) {
    dn_status st = advance(fn, r, b, false);
    if (st) return st;
  }
  return DN_OK;
}

/* dst = weight x src over n floats (zeros for weight 0, so a NaN of an empty batch does not spread). */
static void scaled_copy(float *dst, const float *src, int64_t n, float weight) {
  if (weight == 1.0f) memcpy(dst, src, (size_t)n * sizeof *dst);
  else if (weight == 0.0f) memset(dst, 0, (size_t)n * sizeof *dst);
  else
    for (int64_t i = 0; i < n; i++) dst[i] = weight * src[i];
}

static dn_status finish(void *userdata, bool ok);

static dn_status start_backward(dn_dist_reducer *r) {
  dn_status st = dn_queue_backward_callback(finish, r);
  if (st) return st;
  r->active = true;
  memset(r->ready, 0, (size_t)r->count * sizeof *r->ready);
  memset(r->had_grad, 0, (size_t)r->count * sizeof *r->had_grad);
  for (int b = 0; b < r->nbuckets; b++) {
    r->buckets[b].pending = r->buckets[b].params;
    r->buckets[b].phase = IDLE;
  }
  return DN_OK;
}

/* A parameter's summed gradient of this backward: into its bucket, which starts when it is full. */
static dn_status on_grad(void *userdata, int n, dn_tensor *const *grads, dn_tensor **replacements) {
  static const char fn[] = "DataParallel backward";
  watch *w = userdata;
  dn_dist_reducer *r = w->r;
  const dn_tensor *g = n == 1 ? grads[0] : NULL;
  if (!g) return DN_OK;
  if (r->broken)
    return dn_fail(DN_EDIST, "%s: an earlier backward failed while gradients were being exchanged, so the ranks are "
                             "out of step; restart the run", fn);
  if (r->ranks == 1) {   /* nothing to exchange: only the weight */
    if (r->weight == 1.0f) return DN_OK;
    dn_status st = dn_tensor_new(&replacements[0], DN_F32, g->ndim, g->shape);
    if (st) return st;
    dn_tensor *contiguous = NULL;
    if (!dn_tensor_is_contiguous(g) && (st = dn_plain_clone(&contiguous, g)) != DN_OK) {
      dn_tensor_release(replacements[0]);
      replacements[0] = NULL;
      return st;
    }
    scaled_copy(dn_tensor_data(replacements[0]), dn_tensor_data(contiguous ? contiguous : g), dn_tensor_numel(g),
                r->weight);
    dn_tensor_release(contiguous);
    return DN_OK;
  }
  double t0 = now();
  dn_status st = r->active ? DN_OK : start_backward(r);
  if (st) return st;
  int i = w->index;
  if (r->ready[i]) return dn_fail(DN_EINVAL, "%s: parameter %d got two gradients in one backward", fn, i + 1);
  dn_tensor *contiguous = NULL;
  if (!dn_tensor_is_contiguous(g)) {
    st = dn_plain_clone(&contiguous, g);
    if (st) return st;
    g = contiguous;
  }
  scaled_copy(r->flat + r->offset[i], dn_tensor_data(g), dn_tensor_numel(g), r->weight);
  dn_tensor_release(contiguous);
  /* With a .grad from an earlier backward, the engine would add the local gradient to it: it adds zeros
     instead, and finish adds the sum over the ranks. */
  if (r->params[i]->grad) {
    r->had_grad[i] = true;
    st = dn_tensor_zeros(&replacements[0], DN_F32, r->params[i]->ndim, r->params[i]->shape);
    if (st) return st;
  }
  r->ready[i] = true;
  int b = r->bucket_of[i];
  if (--r->buckets[b].pending == 0) st = post(fn, r, b, SCATTER);
  if (!st) st = poll_all(fn, r);
  r->stats.reduce_seconds += now() - t0;
  return st;
}

/* The end of backward: every bucket started and finished, the sums into .grad. */
static dn_status finish(void *userdata, bool ok) {
  static const char fn[] = "DataParallel backward";
  dn_dist_reducer *r = userdata;
  r->active = false;
  if (!ok) {
    for (int b = 0; b < r->nbuckets; b++)
      if (r->buckets[b].phase == SCATTER || r->buckets[b].phase == GATHER) r->broken = true;
    return DN_OK;
  }
  double t0 = now();
  dn_status st = DN_OK;
  /* parameters this rank did not use: zeros in their slots, and their buckets go too */
  for (int i = 0; i < r->count; i++) {
    if (r->ready[i]) continue;
    memset(r->flat + r->offset[i], 0, (size_t)dn_tensor_numel(r->params[i]) * sizeof(float));
    r->buckets[r->bucket_of[i]].pending--;
  }
  for (int b = 0; b < r->nbuckets && !st; b++)
    if (r->buckets[b].phase == IDLE) st = post(fn, r, b, SCATTER);
  double t1 = now();
  for (int b = 0; b < r->nbuckets && !st; b++) st = advance(fn, r, b, true);
  r->stats.wait_seconds += now() - t1;
  if (st) {
    r->broken = true;
    return st;
  }
  for (int i = 0; i < r->count && !st; i++) {
    dn_tensor *p = r->params[i];
    const float *sum = r->flat + r->offset[i];
    int64_t n = dn_tensor_numel(p);
    if (!p->grad) {
      st = dn_tensor_new(&p->grad, DN_F32, p->ndim, p->shape);
      if (!st) memcpy(dn_tensor_data(p->grad), sum, (size_t)n * sizeof(float));
    } else if (r->ready[i] && !r->had_grad[i]) {
      /* .grad is this backward's local gradient (contiguous: the engine's own copy): replaced */
      memcpy(dn_tensor_data(p->grad), sum, (size_t)n * sizeof(float));
      dn_bump_version(p->grad);
    } else {
      float *grad = dn_tensor_data(p->grad);
      for (int64_t k = 0; k < n; k++) grad[k] += sum[k];
      dn_bump_version(p->grad);
    }
  }
  r->stats.steps++;
  r->stats.reduce_seconds += now() - t0;
  return st;
}

static void free_reducer(dn_dist_reducer *r) {
  if (!r) return;
  for (int i = 0; i < r->count; i++) {
    if (r->hooks && r->hooks[i]) {
      dn_hook_remove(r->hooks[i]);
      dn_hook_release(r->hooks[i]);
    }
    if (r->params && r->params[i]) dn_tensor_release(r->params[i]);
  }
  for (int b = 0; r->buckets && b < r->nbuckets; b++) {
    dn_free(r->buckets[b].reqs);
    dn_free(r->buckets[b].scratch);
  }
  dn_free(r->buckets);
  dn_free(r->flat);
  dn_free(r->ready);
  dn_free(r->had_grad);
  dn_free(r->bucket_of);
  dn_free(r->offset);
  dn_free(r->watches);
  dn_free(r->hooks);
  dn_free(r->params);
  dn_free(r);
}

void dn_dist_reducer_free(dn_dist_reducer *r) { free_reducer(r); }

/* Checks the list; *elements = the total. */
static dn_status check_params(const char *fn, dn_tensor *const *params, int count, int64_t bucket_bytes,
                              int64_t *elements) {
  *elements = 0;
  if (count < 0) return dn_fail(DN_EINVAL, "%s: count must be >= 0 (got %d)", fn, count);
  if (count > 0 && !params) return dn_fail(DN_EINVAL, "%s: params is NULL", fn);
  if (bucket_bytes < 1) return dn_fail(DN_EINVAL, "%s: bucket size must be >= 1 byte (got %lld)", fn, (long long)bucket_bytes);
  for (int i = 0; i < count; i++) {
    const dn_tensor *p = params[i];
    if (!p) return dn_fail(DN_EINVAL, "%s: parameter %d of %d is NULL", fn, i + 1, count);
    if (p->dtype != DN_F32)
      return dn_fail(DN_ETYPE, "%s: parameter %d of %d is %s, expected float32", fn, i + 1, count, dn_dtype_name(p->dtype));
    if (!p->requires_grad)
      return dn_fail(DN_EINVAL, "%s: parameter %d of %d does not require grad", fn, i + 1, count);
    if (p->grad_fn) return dn_fail(DN_EINVAL, "%s: parameter %d of %d is not a leaf", fn, i + 1, count);
    for (int j = 0; j < i; j++)
      if (params[j] == p) return dn_fail(DN_EINVAL, "%s: parameter %d is parameter %d again", fn, i + 1, j + 1);
    int64_t n = dn_tensor_numel(p);
    if (n > INT32_MAX / 2) return dn_fail(DN_EINVAL, "%s: parameter %d is too large for one MPI message", fn, i + 1);
    *elements += n;
  }
  return DN_OK;
}

/* Buckets in reverse parameter order, each closed when the next parameter would take it past bucket_bytes
   (a parameter larger than that is a bucket alone). */
static dn_status make_buckets(const char *fn, dn_dist_reducer *r, int64_t bucket_bytes) {
  int64_t cap = bucket_bytes / (int64_t)sizeof(float);
  if (cap < 1) cap = 1;
  r->buckets = dn_alloc((size_t)(r->count > 0 ? r->count : 1) * sizeof *r->buckets);
  if (!r->buckets) return dn_fail(DN_ENOMEM, "%s: out of memory", fn);
  memset(r->buckets, 0, (size_t)(r->count > 0 ? r->count : 1) * sizeof *r->buckets);
  int64_t at = 0;
  for (int i = r->count - 1; i >= 0; i--) {
    int64_t n = dn_tensor_numel(r->params[i]);
    bucket *k = r->nbuckets ? &r->buckets[r->nbuckets - 1] : NULL;
    if (!k || (k->numel > 0 && k->numel + n > cap) || k->numel + n > INT32_MAX / 2) {
      k = &r->buckets[r->nbuckets++];
      k->offset = at;
    }
    r->offset[i] = at;
    r->bucket_of[i] = r->nbuckets - 1;
    k->numel += n;
    k->params++;
    at += n;
  }
  for (int b = 0; b < r->nbuckets; b++) {
    bucket *k = &r->buckets[b];
    int64_t start, len;
    slice(k->numel, r->ranks, r->rank, &start, &len);
    k->reqs = dn_alloc((size_t)(2 * (r->ranks - 1) + 1) * sizeof *k->reqs);
    k->scratch = dn_alloc((size_t)((r->ranks - 1) * len + 1) * sizeof(float));
    if (!k->reqs || !k->scratch) return dn_fail(DN_ENOMEM, "%s: out of memory for the buckets", fn);
  }
  return DN_OK;
}

dn_status dn_dist_reducer_new(dn_dist_reducer **out, dn_tensor *const *params, int count, int64_t bucket_bytes) {
  static const char fn[] = "DataParallel";
  if (!out) return dn_fail(DN_EINVAL, "%s: out is NULL", fn);
  *out = NULL;
  dn_status st = dn_dist_need_running(fn);
  if (st) return st;
  int64_t elements = 0;
  dn_status local = check_params(fn, params, count, bucket_bytes, &elements);
  dn_dist_reducer *r = NULL;
  if (!local) {
    r = dn_alloc(sizeof *r);
    if (r) {
      memset(r, 0, sizeof *r);
      r->count = count;
      r->rank = dn_dist_my_rank();
      r->ranks = dn_dist_ranks();
      r->weight = 1.0f / (float)r->ranks;
      size_t n = (size_t)(count > 0 ? count : 1);
      r->params = dn_alloc(n * sizeof *r->params);
      r->hooks = dn_alloc(n * sizeof *r->hooks);
      r->watches = dn_alloc(n * sizeof *r->watches);
      r->offset = dn_alloc(n * sizeof *r->offset);
      r->bucket_of = dn_alloc(n * sizeof *r->bucket_of);
      r->ready = dn_alloc(n * sizeof *r->ready);
      r->had_grad = dn_alloc(n * sizeof *r->had_grad);
      r->flat = dn_alloc((size_t)(elements > 0 ? elements : 1) * sizeof(float));
      if (r->params && r->hooks) {
        memset(r->params, 0, n * sizeof *r->params);
        memset(r->hooks, 0, n * sizeof *r->hooks);
      }
      if (!r->params || !r->hooks || !r->watches || !r->offset || !r->bucket_of || !r->ready || !r->had_grad || !r->flat)
        local = dn_fail(DN_ENOMEM, "%s: out of memory for %lld gradient elements", fn, (long long)elements);
    } else {
      local = dn_fail(DN_ENOMEM, "%s: out of memory", fn);
    }
    for (int i = 0; !local && i < count; i++) r->params[i] = dn_tensor_retain(params[i]);
    if (!local) local = make_buckets(fn, r, bucket_bytes);
  }
  /* the same parameter sizes and bucket size on every rank, or the messages would not match */
  st = dn_dist_agree(fn, local, elements, "gradient elements", bucket_bytes, "bucket sizes");
  for (int i = 0; !st && i < count; i++) {
    r->watches[i] = (watch){r, i};
    st = dn_register_hook(&r->hooks[i], r->params[i], on_grad, &r->watches[i], NULL);
  }
  if (st) {
    free_reducer(r);
    return st;
  }
  r->stats.buckets = r->nbuckets;
  r->stats.elements = elements;
  *out = r;
  return DN_OK;
}

dn_status dn_dist_reducer_set_weight(dn_dist_reducer *r, double weight) {
  if (!r) return dn_fail(DN_EINVAL, "DataParallel: reducer is NULL");
  if (!(weight >= 0.0 && weight <= 1e30))
    return dn_fail(DN_EINVAL, "DataParallel: weight must be finite and >= 0 (got %g)", weight);
  r->weight = (float)weight;
  return DN_OK;
}

void dn_dist_reducer_get_stats(const dn_dist_reducer *r, dn_dist_reducer_stats *stats) {
  if (!stats) return;
  memset(stats, 0, sizeof *stats);
  if (r) *stats = r->stats;
}

dn_status dn_dist_batch_shard(int64_t count, int64_t *skip, int64_t *total) {
  static const char fn[] = "dist.batch_shard";
  if (!skip || !total) return dn_fail(DN_EINVAL, "%s: skip or total is NULL", fn);
  dn_status st = dn_dist_need_running(fn);
  if (st) return st;
  int ranks = dn_dist_ranks(), me = dn_dist_my_rank();
  /* a bad count on one rank still takes part in the all-gather, then fails on every rank */
  int64_t mine = count >= 0 ? count : -1, *all = dn_alloc((size_t)ranks * sizeof *all);
  int64_t fallback[1];
  int err = MPI_Allgather(&mine, 1, MPI_INT64_T, all ? all : fallback, all ? 1 : 0, MPI_INT64_T, dn_dist_comm());
  if (!all) return dn_fail(DN_ENOMEM, "%s: out of memory", fn);
  if (err != MPI_SUCCESS) {
    dn_free(all);
    return dn_dist_mpi_fail(fn, "MPI_Allgather", err);
  }
  *skip = *total = 0;
  for (int s = 0; s < ranks; s++) {
    if (all[s] < 0) {
      dn_free(all);
      return count < 0 ? dn_fail(DN_EINVAL, "%s: count must be >= 0 (got %lld)", fn, (long long)count)
                       : dn_fail(DN_EDIST, "%s: rank %d passed a negative count", fn, s);
    }
    if (s < me) *skip += all[s];
    *total += all[s];
  }
  dn_free(all);
  return DN_OK;
}

#else   /* built without MPI */

static dn_status unsupported(const char *fn) {
  return dn_fail(DN_EUNSUPPORTED, "%s: built without MPI (install Debian's libopenmpi-dev and openmpi-bin, then rebuild)",
                 fn);
}

dn_status dn_dist_batch_shard(int64_t count, int64_t *skip, int64_t *total) {
  (void)count, (void)skip, (void)total;
  return unsupported("dist.batch_shard");
}
dn_status dn_dist_reducer_new(dn_dist_reducer **out, dn_tensor *const *params, int count, int64_t bucket_bytes) {
  (void)params, (void)count, (void)bucket_bytes;
  if (out) *out = NULL;
  return unsupported("DataParallel");
}
void dn_dist_reducer_free(dn_dist_reducer *r) { (void)r; }
dn_status dn_dist_reducer_set_weight(dn_dist_reducer *r, double weight) {
  (void)r, (void)weight;
  return unsupported("DataParallel");
}
void dn_dist_reducer_get_stats(const dn_dist_reducer *r, dn_dist_reducer_stats *stats) {
  (void)r;
  if (stats) memset(stats, 0, sizeof *stats);
}

#endif
