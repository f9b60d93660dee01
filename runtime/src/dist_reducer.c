/*
** Data-parallel gradient reduction (dist.h): leaf hooks note each
** parameter's gradient, a bucket's exchange starts without blocking once all
** its gradients are there, and an end-of-backward callback finishes it.
**
** An exchange, for W ranks: each gradient is cut into W slices and rank s
** owns slice s. Phase 1 (scatter): every rank sends slice s to rank s and
** receives its own slice from every other rank. The owner then adds the W
** copies weighted, in rank order, one element at a time (the same bits
** whatever the arrival order). Phase 2 (gather): the owner sends its summed
** slice to all, and receives the others' summed slices into place. Each rank
** sends and receives (W-1)/W of the gradients twice, as a ring would, and
** the sums are spread over the ranks. Messages are tagged by bucket and
** phase, so buckets may be in flight in any order.
**
** No copy in or out: a gradient is exchanged in the tensor the engine then
** makes the parameter's .grad (on_grad says when that is certain); only
** gradient accumulation, shared gradients and unused parameters go through
** a private copy. The weights are applied by the owner as it sums.
**
** Open MPI moves a message only inside MPI calls (no progress thread), so
** every hook call tests the buckets in flight: a bucket advances between the
** layers of backward, and the end of backward waits for what is left.
*/
#include <math.h>
#include <string.h>

#include "dropnet/alloc.h"
#include "dropnet/autograd.h"
#include "dropnet/dist.h"
#include "internal.h"

#ifdef DN_HAVE_MPI

#include "dist_mpi.h"
#include "hook.h"

enum { IDLE, SCATTER, GATHER, DONE };

typedef struct bucket {
  int first, count;           /* its parameters: order[first .. first + count) */
  int pending;                /* of them, not ready in this backward */
  int phase;
  int nreqs;
  MPI_Request *reqs;          /* 2 (W-1) per parameter */
  float *scratch;             /* the other ranks' copies of this rank's slices, per parameter (W-1) x slice */
} bucket;

typedef struct watch {        /* a hook's userdata: which parameter */
  struct dn_dist_reducer *r;
  int index;
} watch;

/* Where a parameter's gradient is exchanged this backward. */
enum { NOT_READY, IN_GRAD, IN_TEMP_NEW, IN_TEMP_ADD };

struct dn_dist_reducer {
  int count;
  dn_tensor **params;         /* owned references */
  dn_hook **hooks;
  watch *watches;
  int *order;                 /* parameters in bucket order (reverse registration order) */
  int *bucket_of;
  int64_t *scratch_at;        /* per parameter, its place in its bucket's scratch */
  int *where;                 /* per parameter, NOT_READY / IN_GRAD / IN_TEMP_* */
  float **data;               /* per parameter, the floats exchanged in place */
  dn_tensor **grad_seen;      /* IN_GRAD: the engine's gradient tensor, which becomes .grad (not owned) */
  dn_tensor **temp;           /* IN_TEMP_*: a private copy (owned) */
  bucket *buckets;
  int nbuckets;
  int rank, ranks;
  float *weights;             /* per rank */
  bool active;                /* a backward reached a hook and queued finish */
  bool broken;                /* a backward failed with an exchange in flight */
  dn_dist_reducer_stats stats;
};

/* Slice s of n elements cut in W: [start, start + len). */
static void slice(int64_t n, int ranks, int s, int64_t *start, int64_t *len) {
  int64_t a = n * s / ranks, b = n * (s + 1) / ranks;
  *start = a;
  *len = b - a;
}

static int tag_of(int b, int phase) { return 2 * b + (phase == GATHER); }

/* Posts bucket b's messages of one phase, parameter by parameter (every rank in the same order, so
   messages of one tag match in order). */
static dn_status post(const char *fn, dn_dist_reducer *r, int b, int phase) {
  bucket *k = &r->buckets[b];
  MPI_Comm comm = dn_dist_comm();
  int tag = tag_of(b, phase), n = 0, err = MPI_SUCCESS;
  for (int j = 0; j < k->count && err == MPI_SUCCESS; j++) {
    int i = r->order[k->first + j];
    int64_t numel = dn_tensor_numel(r->params[i]), mine, mylen;
    slice(numel, r->ranks, r->rank, &mine, &mylen);
    float *data = r->data[i], *scratch = k->scratch + r->scratch_at[i];
    for (int s = 0, slot = 0; s < r->ranks && err == MPI_SUCCESS; s++) {
      if (s == r->rank) continue;
      int64_t start, len;
      slice(numel, r->ranks, s, &start, &len);
      if (phase == SCATTER) {
        err = MPI_Irecv(scratch + (int64_t)slot * mylen, (int)mylen, MPI_FLOAT, s, tag, comm, &k->reqs[n++]);
        if (err == MPI_SUCCESS) err = MPI_Isend(data + start, (int)len, MPI_FLOAT, s, tag, comm, &k->reqs[n++]);
      } else {
        err = MPI_Irecv(data + start, (int)len, MPI_FLOAT, s, tag, comm, &k->reqs[n++]);
        if (err == MPI_SUCCESS) err = MPI_Isend(data + mine, (int)mylen, MPI_FLOAT, s, tag, comm, &k->reqs[n++]);
      }
      slot++;
    }
  }
  k->nreqs = n;
  k->phase = phase;
  return err == MPI_SUCCESS ? DN_OK : dn_dist_mpi_fail(fn, phase == SCATTER ? "MPI_Isend (scatter)" : "MPI_Isend (gather)", err);
}

/* acc = w src (first) or acc += w src: one rank's term. restrict and simd because GCC kept this scalar
   otherwise (it cannot rule out that src and acc overlap), and the sums are a third of the exchange's time. */
static void add_weighted(float *restrict acc, const float *restrict src, float w, int64_t n, bool first) {
  if (first) {
#pragma omp simd
    for (int64_t e = 0; e < n; e++) acc[e] = w * src[e];
  } else {
#pragma omp simd
    for (int64_t e = 0; e < n; e++) acc[e] += w * src[e];
  }
}

/* This rank's slice of each parameter = the ranks' copies weighted and added in rank order. */
static void sum_slices(dn_dist_reducer *r, bucket *k) {
  enum { CHUNK = 1024 };
  float acc[CHUNK];
  for (int j = 0; j < k->count; j++) {
    int i = r->order[k->first + j];
    int64_t mine, mylen;
    slice(dn_tensor_numel(r->params[i]), r->ranks, r->rank, &mine, &mylen);
    float *own = r->data[i] + mine;
    const float *scratch = k->scratch + r->scratch_at[i];
    for (int64_t i0 = 0; i0 < mylen; i0 += CHUNK) {
      int64_t n = mylen - i0 < CHUNK ? mylen - i0 : CHUNK;
      for (int s = 0, slot = 0; s < r->ranks; s++) {
        const float *src = s == r->rank ? own + i0 : scratch + (int64_t)slot++ * mylen + i0;
        add_weighted(acc, src, r->weights[s], n, s == 0);
      }
      memcpy(own + i0, acc, (size_t)n * sizeof *acc);
    }
  }
}

/* Moves bucket b on when its messages are done; with wait, blocks until it is DONE. */
static dn_status advance(const char *fn, dn_dist_reducer *r, int b, bool wait) {
  bucket *k = &r->buckets[b];
  while (k->phase == SCATTER || k->phase == GATHER) {
    int done = 1;
    if (wait) {
      dn_status st = dn_dist_wait(fn, k->phase == SCATTER ? "the gradients' exchange (scatter)"
                                                          : "the gradients' exchange (gather)", k->nreqs, k->reqs);
      if (st) return st;
    } else {
      int err = MPI_Testall(k->nreqs, k->reqs, &done, MPI_STATUSES_IGNORE);
      if (err != MPI_SUCCESS) return dn_dist_mpi_fail(fn, "MPI_Testall", err);
    }
    if (!done) return DN_OK;
    if (k->phase == GATHER) {
      k->phase = DONE;
    } else {
      sum_slices(r, k);
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

static dn_status finish(void *userdata, bool ok);

static dn_status start_backward(dn_dist_reducer *r) {
  dn_status st = dn_dist_need_running("DataParallel backward");   /* finalized, or a collective timed out */
  if (!st) st = dn_queue_backward_callback(finish, r);
  if (st) return st;
  r->active = true;
  for (int i = 0; i < r->count; i++) r->where[i] = NOT_READY;
  for (int b = 0; b < r->nbuckets; b++) {
    r->buckets[b].pending = r->buckets[b].count;
    r->buckets[b].phase = IDLE;
  }
  return DN_OK;
}

/* A private float32 copy of g (contiguous), or zeros of p's shape when g is NULL. */
static dn_status private_copy(dn_tensor **out, const dn_tensor *g, const dn_tensor *p) {
  if (!g) return dn_tensor_zeros(out, DN_F32, p->ndim, p->shape);
  dn_status st = dn_tensor_new(out, DN_F32, g->ndim, g->shape);
  if (st) return st;
  if (dn_tensor_is_contiguous(g)) {
    memcpy(dn_tensor_data(*out), dn_tensor_data(g), (size_t)dn_tensor_numel(g) * sizeof(float));
    return DN_OK;
  }
  dn_tensor_release(*out);
  return dn_plain_clone(out, g);
}

/*
** A parameter's summed gradient of this backward. Usually it is exchanged where it is: the engine is
** about to make this very tensor the parameter's .grad (no .grad yet, the tensor private and contiguous,
** and no later hook that could replace it), so the sums arrive in .grad with no copy in or out.
** Otherwise a private copy is exchanged and finish puts it in place; with a .grad from an earlier
** backward the engine adds zeros instead, and finish adds the sum (gradient accumulation).
*/
static dn_status on_grad(void *userdata, int n, dn_tensor *const *grads, dn_tensor **replacements) {
  static const char fn[] = "DataParallel backward";
  watch *w = userdata;
  dn_dist_reducer *r = w->r;
  dn_tensor *g = n == 1 ? grads[0] : NULL;
  if (!g) return DN_OK;
  if (r->broken)
    return dn_fail(DN_EDIST, "%s: an earlier backward failed while gradients were being exchanged, so the ranks are "
                             "out of step; restart the run", fn);
  int i = w->index;
  dn_tensor *p = r->params[i];
  if (r->ranks == 1) {   /* nothing to exchange: only the weight */
    if (r->weights[0] == 1.0f) return DN_OK;
    dn_status st = private_copy(&replacements[0], g, p);
    if (st) return st;
    float *d = dn_tensor_data(replacements[0]), weight = r->weights[0];
    for (int64_t e = 0, m = dn_tensor_numel(g); e < m; e++) d[e] *= weight;
    return DN_OK;
  }
  double t0 = dn_dist_now();
  dn_status st = r->active ? DN_OK : start_backward(r);
  if (st) return st;
  if (r->where[i] != NOT_READY) return dn_fail(DN_EINVAL, "%s: parameter %d got two gradients in one backward", fn, i + 1);
  bool taken_over = !p->grad && g->refcount == 1 && g->storage->refcount == 1 && dn_tensor_is_contiguous(g) &&
                    !g->grad_fn && g->dtype == DN_F32 && dn_hook_list_live_count(p->hooks) == 1;
  if (taken_over) {
    r->where[i] = IN_GRAD;
    r->grad_seen[i] = g;
    r->data[i] = dn_tensor_data(g);
  } else {
    st = private_copy(&r->temp[i], g, p);
    if (st) return st;
    r->where[i] = p->grad ? IN_TEMP_ADD : IN_TEMP_NEW;
    r->data[i] = dn_tensor_data(r->temp[i]);
    if (p->grad) {
      st = dn_tensor_zeros(&replacements[0], DN_F32, p->ndim, p->shape);
      if (st) return st;
    }
  }
  int b = r->bucket_of[i];
  if (--r->buckets[b].pending == 0) st = post(fn, r, b, SCATTER);
  if (!st) st = poll_all(fn, r);
  r->stats.reduce_seconds += dn_dist_now() - t0;
  return st;
}

static void drop_temps(dn_dist_reducer *r) {
  for (int i = 0; i < r->count; i++) {
    dn_tensor_release(r->temp[i]);
    r->temp[i] = NULL;
  }
}

/* The end of backward: every bucket started and finished, the sums in place. */
static dn_status finish(void *userdata, bool ok) {
  static const char fn[] = "DataParallel backward";
  dn_dist_reducer *r = userdata;
  r->active = false;
  if (!ok) {
    for (int b = 0; b < r->nbuckets; b++)
      if (r->buckets[b].phase == SCATTER || r->buckets[b].phase == GATHER) r->broken = true;
    if (!r->broken) drop_temps(r);   /* with messages in flight the buffers must outlive them */
    return DN_OK;
  }
  double t0 = dn_dist_now();
  dn_status st = DN_OK;
  /* parameters this rank did not use: zeros go, and their buckets too */
  for (int i = 0; i < r->count && !st; i++) {
    if (r->where[i] != NOT_READY) continue;
    st = private_copy(&r->temp[i], NULL, r->params[i]);
    if (st) break;
    r->where[i] = r->params[i]->grad ? IN_TEMP_ADD : IN_TEMP_NEW;
    r->data[i] = dn_tensor_data(r->temp[i]);
    r->buckets[r->bucket_of[i]].pending--;
  }
  for (int b = 0; b < r->nbuckets && !st; b++)
    if (r->buckets[b].phase == IDLE) st = post(fn, r, b, SCATTER);
  double t1 = dn_dist_now();
  for (int b = 0; b < r->nbuckets && !st; b++) st = advance(fn, r, b, true);
  r->stats.wait_seconds += dn_dist_now() - t1;
  if (st) {
    r->broken = true;
    return st;
  }
  for (int i = 0; i < r->count && !st; i++) {
    dn_tensor *p = r->params[i];
    switch (r->where[i]) {
      case IN_GRAD:
        /* the engine took the tensor over as .grad, as the hook checked */
        if (p->grad != r->grad_seen[i])
          st = dn_fail(DN_EINVAL, "%s: parameter %d's gradient went elsewhere (internal error)", fn, i + 1);
        else dn_bump_version(p->grad);
        break;
      case IN_TEMP_NEW:
        if (!p->grad) {
          p->grad = r->temp[i];
          r->temp[i] = NULL;
        } else {
          memcpy(dn_tensor_data(p->grad), r->data[i], (size_t)dn_tensor_numel(p) * sizeof(float));
          dn_bump_version(p->grad);
        }
        break;
      default: {   /* IN_TEMP_ADD */
        float *grad = dn_tensor_data(p->grad);
        const float *sum = r->data[i];
        for (int64_t e = 0, n = dn_tensor_numel(p); e < n; e++) grad[e] += sum[e];
        dn_bump_version(p->grad);
      }
    }
  }
  drop_temps(r);
  r->stats.steps++;
  r->stats.reduce_seconds += dn_dist_now() - t0;
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
    if (r->temp && !r->broken) dn_tensor_release(r->temp[i]);   /* broken: messages may still land in them */
  }
  for (int b = 0; r->buckets && b < r->nbuckets; b++) {
    dn_free(r->buckets[b].reqs);
    if (!r->broken) dn_free(r->buckets[b].scratch);
  }
  dn_free(r->buckets);
  dn_free(r->weights);
  dn_free(r->temp);
  dn_free(r->grad_seen);
  dn_free(r->data);
  dn_free(r->where);
  dn_free(r->scratch_at);
  dn_free(r->bucket_of);
  dn_free(r->order);
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
  int64_t cap = bucket_bytes / (int64_t)sizeof(float), numel = 0;
  if (cap < 1) cap = 1;
  size_t slots = (size_t)(r->count > 0 ? r->count : 1);
  r->buckets = dn_alloc(slots * sizeof *r->buckets);
  if (!r->buckets) return dn_fail(DN_ENOMEM, "%s: out of memory", fn);
  memset(r->buckets, 0, slots * sizeof *r->buckets);
  for (int j = 0; j < r->count; j++) {
    int i = r->count - 1 - j;
    int64_t n = dn_tensor_numel(r->params[i]);
    if (r->nbuckets == 0 || (numel > 0 && numel + n > cap)) {
      r->buckets[r->nbuckets++] = (bucket){.first = j};
      numel = 0;
    }
    bucket *k = &r->buckets[r->nbuckets - 1];
    int64_t mine, mylen;
    slice(n, r->ranks, r->rank, &mine, &mylen);
    r->order[j] = i;
    r->bucket_of[i] = r->nbuckets - 1;
    /* scratch_at counts within the bucket; summed up below */
    r->scratch_at[i] = (int64_t)(r->ranks - 1) * mylen;
    k->count++;
    numel += n;
  }
  for (int b = 0; b < r->nbuckets; b++) {
    bucket *k = &r->buckets[b];
    int64_t at = 0;
    for (int j = 0; j < k->count; j++) {
      int i = r->order[k->first + j];
      int64_t size = r->scratch_at[i];
      r->scratch_at[i] = at;
      at += size;
    }
    k->reqs = dn_alloc((size_t)(2 * (r->ranks - 1) * k->count + 1) * sizeof *k->reqs);
    k->scratch = dn_alloc((size_t)(at + 1) * sizeof(float));
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
      size_t n = (size_t)(count > 0 ? count : 1);
      r->params = dn_alloc(n * sizeof *r->params);
      r->hooks = dn_alloc(n * sizeof *r->hooks);
      r->temp = dn_alloc(n * sizeof *r->temp);
      r->watches = dn_alloc(n * sizeof *r->watches);
      r->order = dn_alloc(n * sizeof *r->order);
      r->bucket_of = dn_alloc(n * sizeof *r->bucket_of);
      r->scratch_at = dn_alloc(n * sizeof *r->scratch_at);
      r->where = dn_alloc(n * sizeof *r->where);
      r->data = dn_alloc(n * sizeof *r->data);
      r->grad_seen = dn_alloc(n * sizeof *r->grad_seen);
      r->weights = dn_alloc((size_t)r->ranks * sizeof *r->weights);
      if (r->params && r->hooks && r->temp) {
        memset(r->params, 0, n * sizeof *r->params);
        memset(r->hooks, 0, n * sizeof *r->hooks);
        memset(r->temp, 0, n * sizeof *r->temp);
      }
      if (!r->params || !r->hooks || !r->temp || !r->watches || !r->order || !r->bucket_of || !r->scratch_at ||
          !r->where || !r->data || !r->grad_seen || !r->weights)
        local = dn_fail(DN_ENOMEM, "%s: out of memory", fn);
      for (int s = 0; !local && s < r->ranks; s++) r->weights[s] = 1.0f / (float)r->ranks;
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

dn_status dn_dist_reducer_set_weights(dn_dist_reducer *r, const double *weights, int n) {
  if (!r) return dn_fail(DN_EINVAL, "DataParallel: reducer is NULL");
  if (!weights || n != r->ranks)
    return dn_fail(DN_EINVAL, "DataParallel: expected one weight per rank (%d), got %d", r->ranks, weights ? n : 0);
  for (int s = 0; s < n; s++)
    if (!(weights[s] >= 0.0 && weights[s] <= 1e30))
      return dn_fail(DN_EINVAL, "DataParallel: weight %d must be finite and >= 0 (got %g)", s + 1, weights[s]);
  for (int s = 0; s < n; s++) r->weights[s] = (float)weights[s];
  return DN_OK;
}

void dn_dist_reducer_get_stats(const dn_dist_reducer *r, dn_dist_reducer_stats *stats) {
  if (!stats) return;
  memset(stats, 0, sizeof *stats);
  if (r) *stats = r->stats;
}

dn_status dn_dist_batch_shard(int64_t count, int64_t *skip, int64_t *total, int64_t *counts) {
  static const char fn[] = "dist.batch_shard";
  if (!skip || !total) return dn_fail(DN_EINVAL, "%s: skip or total is NULL", fn);
  dn_status st = dn_dist_need_running(fn);
  if (st) return st;
  int ranks = dn_dist_ranks(), me = dn_dist_my_rank();
  /* a bad count on one rank still takes part in the all-gather, then fails on every rank */
  int64_t mine = count >= 0 ? count : -1, *all = dn_alloc((size_t)ranks * sizeof *all);
  int64_t fallback[1];
  MPI_Request req;
  int err = MPI_Iallgather(&mine, 1, MPI_INT64_T, all ? all : fallback, all ? 1 : 0, MPI_INT64_T, dn_dist_comm(),
                           &req);
  st = err == MPI_SUCCESS ? dn_dist_wait(fn, "MPI_Iallgather", 1, &req) : dn_dist_mpi_fail(fn, "MPI_Iallgather", err);
  if (!all) return dn_fail(DN_ENOMEM, "%s: out of memory", fn);
  if (st) return st;   /* all is left to the unfinished collective (a few bytes) */
  *skip = *total = 0;
  for (int s = 0; s < ranks; s++) {
    if (all[s] < 0) {
      dn_free(all);
      return count < 0 ? dn_fail(DN_EINVAL, "%s: count must be >= 0 (got %lld)", fn, (long long)count)
                       : dn_fail(DN_EDIST, "%s: rank %d passed a negative count", fn, s);
    }
    if (s < me) *skip += all[s];
    *total += all[s];
    if (counts) counts[s] = all[s];
  }
  dn_free(all);
  return DN_OK;
}

#else   /* built without MPI */

static dn_status unsupported(const char *fn) {
  return dn_fail(DN_EUNSUPPORTED, "%s: built without MPI (install Debian's libopenmpi-dev and openmpi-bin, then rebuild)",
                 fn);
}

dn_status dn_dist_batch_shard(int64_t count, int64_t *skip, int64_t *total, int64_t *counts) {
  (void)count, (void)skip, (void)total, (void)counts;
  return unsupported("dist.batch_shard");
}
dn_status dn_dist_reducer_new(dn_dist_reducer **out, dn_tensor *const *params, int count, int64_t bucket_bytes) {
  (void)params, (void)count, (void)bucket_bytes;
  if (out) *out = NULL;
  return unsupported("DataParallel");
}
void dn_dist_reducer_free(dn_dist_reducer *r) { (void)r; }
dn_status dn_dist_reducer_set_weights(dn_dist_reducer *r, const double *weights, int n) {
  (void)r, (void)weights, (void)n;
  return unsupported("DataParallel");
}
void dn_dist_reducer_get_stats(const dn_dist_reducer *r, dn_dist_reducer_stats *stats) {
  (void)r;
  if (stats) memset(stats, 0, sizeof *stats);
}

#endif
