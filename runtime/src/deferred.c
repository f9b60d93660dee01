/* Deferred gradients: materializing one (deferred.h). */
#include <string.h>

#include "deferred.h"
#include "internal.h"
#include "shape.h"

typedef struct materialize_job {
  const dn_deferred *d;
  float *dst, *scratch;
  int64_t stride;   /* floats of scratch per task */
} materialize_job;

static void materialize_task(void *ctx, int task, int tasks) {
  const materialize_job *j = ctx;
  const dn_deferred *d = j->d;
  int64_t r0 = dn_split(d->rows, task, tasks), r1 = dn_split(d->rows, task + 1, tasks);
  if (r0 < r1) d->fill(d, r0, r1, j->dst + r0 * d->row_len, j->scratch + task * j->stride);
}

dn_status dn_deferred_materialize(dn_tensor *t) {
  dn_deferred *d = t->deferred;
  if (!d) return DN_OK;
  /* a task per thread, over rows in memory order; the scratch for the uncontended count (internal.h) */
  int64_t work = 3 * d->rows * d->row_len;
  int tasks = dn_threads_for(work), parts = dn_threads_most_for(work);
  if (tasks > d->rows) tasks = (int)d->rows;
  if (parts > d->rows) parts = (int)d->rows;
  dn_storage *s = t->storage;
  if (!s->data && !(s->data = dn_alloc(s->nbytes)))
    return dn_fail(DN_ENOMEM, "backward: out of memory allocating a gradient of %zu bytes", s->nbytes);
  materialize_job j = {d, dn_tensor_data(t), NULL, (d->scratch_floats + 15) / 16 * 16};
  if (tasks >= 1) {
    int64_t floats;
    if (!dn_size_mul(j.stride, parts, &floats) ||
        !(j.scratch = dn_alloc((size_t)(floats > 0 ? floats : 1) * sizeof(float))))
      return dn_fail(DN_ENOMEM, "backward: out of memory for scratch to write a gradient of %lld rows",
                     (long long)d->rows);
    memset(j.scratch, 0, (size_t)floats * sizeof *j.scratch);
    dn_parallel(tasks, materialize_task, &j);
    dn_free(j.scratch);
  }
  t->deferred = NULL;
  dn_deferred_release(d);
  return DN_OK;
}

void dn_deferred_release(dn_deferred *d) {
  if (d) d->release(d);
}
