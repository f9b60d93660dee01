/*
** Data-parallel collectives over MPI: all-reduce, broadcast, barrier.
**
** The layer owns a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN, so
** its traffic never mixes with the program's own MPI calls and a failing
** call comes back as a status instead of aborting every process.
**
** A list of tensors travels as one fused buffer: packed, exchanged, and
** copied back only when every step succeeded, so a failed call leaves the
** tensors as they were. Before any data moves, one small all-reduce makes
** the ranks agree: that no rank rejected its input and that all passed the
** same total size and the same op or root. A bad argument on one rank thus
** fails the call on all of them, where the data collective would hang or
** truncate.
**
** Determinism: MPI_Allreduce with MPI_SUM may add in an order that depends
** on the algorithm Open MPI picks (message size, process placement), so
** the sum would not be reproducible. Instead the ranks' buffers are
** gathered on rank 0, which adds them in rank order (r0 + r1 + r2 ...) and
** broadcasts the result: every rank gets the same bits, and so does every
** run with the same number of processes. The cost is rank 0's bandwidth
** (N buffers in, one out): simple and correct first; a fixed-order
** reduce-scatter would spread the work. Buffers go in chunks, which bounds
** rank 0's gather buffer and keeps MPI's int counts in range.
**
** Timeouts: every collective is started without blocking and waited for by
** dn_dist_wait, which gives up after the layer's timeout (30 minutes unless
** set, PyTorch's default): a rank that hangs, or is gone while its process
** lingers, becomes an error on the others instead of an endless wait. The
** collective is then left unfinished, so the layer refuses every later call
** (the ranks are out of step); the script ends, and mpirun stops the job.
** (A rank whose process ends is caught sooner: mpirun stops the job at once.)
**
** Without MPI (DN_HAVE_MPI undefined) every entry point but
** dn_dist_available fails with DN_EUNSUPPORTED.
*/
#include <limits.h>
#include <string.h>
#include <time.h>

#include "dropnet/alloc.h"
#include "dropnet/dist.h"
#include "internal.h"
#include "shape.h"

#ifdef DN_HAVE_MPI

#include "dist_mpi.h"

/* Elements a chunk of the all-reduce carries: rank 0 gathers world size x 16 MB at most. */
#define REDUCE_CHUNK ((int64_t)1 << 22)
/* Bytes a chunk of the broadcast carries (MPI counts are int). */
#define BROADCAST_CHUNK ((int64_t)1 << 30)

enum { NEVER_STARTED, RUNNING, FINALIZED };
static int state = NEVER_STARTED;
static bool started_mpi;   /* dn_dist_init called MPI_Init (so finalize ends it) */
static MPI_Comm comm = MPI_COMM_NULL;
static int world_rank, world_size;
static double timeout_seconds = DN_DIST_DEFAULT_TIMEOUT;
static bool timed_out;   /* a collective was abandoned: the ranks are out of step */

MPI_Comm dn_dist_comm(void) { return comm; }
int dn_dist_my_rank(void) { return world_rank; }
int dn_dist_ranks(void) { return world_size; }

dn_status dn_dist_mpi_fail(const char *fn, const char *call, int err) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(err, text, &len) != MPI_SUCCESS) len = 0;
  text[len < 0 ? 0 : len] = '\0';
  return dn_fail(DN_EDIST, "%s: %s failed: %s", fn, call, len > 0 ? text : "unknown MPI error");
}

/* For the local queries (rank, world size): they still answer after a timeout. */
static dn_status need_started(const char *fn) {
  if (state == RUNNING) return DN_OK;
  if (state == FINALIZED) return dn_fail(DN_EINVAL, "%s: the distributed layer was finalized", fn);
  return dn_fail(DN_EINVAL, "%s: not initialized (call dist.init first)", fn);
}

dn_status dn_dist_need_running(const char *fn) {
  if (state == RUNNING && timed_out)
    return dn_fail(DN_EDIST, "%s: an earlier collective timed out, so the ranks are out of step; restart the run", fn);
  if (state == RUNNING) return DN_OK;
  if (state == FINALIZED) return dn_fail(DN_EINVAL, "%s: the distributed layer was finalized", fn);
  return dn_fail(DN_EINVAL, "%s: not initialized (call dist.init first)", fn);
}

double dn_dist_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

dn_status dn_dist_wait(const char *fn, const char *call, int count, MPI_Request *reqs) {
  double deadline = dn_dist_now() + timeout_seconds;
  for (unsigned spins = 0;; spins++) {
    int done = 0, err = MPI_Testall(count, reqs, &done, MPI_STATUSES_IGNORE);
    if (err != MPI_SUCCESS) return dn_dist_mpi_fail(fn, call, err);
    if (done) return DN_OK;
    if (spins % 256 == 255 && dn_dist_now() > deadline) {
      timed_out = true;
      return dn_fail(DN_EDIST,
                     "%s: %s: no word from the other ranks for %g s (a rank hangs, or is gone while its process "
                     "lingers); the ranks are out of step, restart the run (dist.set_timeout sets the limit)",
                     fn, call, timeout_seconds);
    }
  }
}

dn_status dn_dist_set_timeout(double seconds) {
  if (!(seconds > 0.0 && seconds <= 1e9))
    return dn_fail(DN_EINVAL, "dist.set_timeout: seconds must be > 0 and at most 1e9 (got %g)", seconds);
  timeout_seconds = seconds;
  return DN_OK;
}

double dn_dist_timeout(void) { return timeout_seconds; }

bool dn_dist_available(void) { return true; }

bool dn_dist_is_initialized(void) { return state == RUNNING; }

dn_status dn_dist_init(void) {
  static const char fn[] = "dist.init";
  if (state == RUNNING) return DN_OK;
  if (state == FINALIZED)
    return dn_fail(DN_EINVAL, "%s: cannot start again after dist.finalize (MPI starts once per process)", fn);
  int initialized = 0, finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return dn_fail(DN_EINVAL, "%s: MPI was already finalized by the program", fn);
  MPI_Initialized(&initialized);
  if (!initialized) {
    /* Only the thread that called init calls MPI (the pool's workers never do). */
    int provided = 0;
    int err = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (err != MPI_SUCCESS) return dn_dist_mpi_fail(fn, "MPI_Init_thread", err);
    started_mpi = true;
  }
  int err = MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  if (err != MPI_SUCCESS) return dn_dist_mpi_fail(fn, "MPI_Comm_dup", err);
  err = MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  if (err == MPI_SUCCESS) err = MPI_Comm_rank(comm, &world_rank);
  if (err == MPI_SUCCESS) err = MPI_Comm_size(comm, &world_size);
  if (err != MPI_SUCCESS) {
    MPI_Comm_free(&comm);
    return dn_dist_mpi_fail(fn, "setting up the communicator", err);
  }
  state = RUNNING;
  return DN_OK;
}

dn_status dn_dist_finalize(void) {
  if (state != RUNNING) return DN_OK;
  state = FINALIZED;
  /* MPI_Finalize would wait for the abandoned collective: the process ends without it (mpirun then stops
     the job) */
  if (timed_out)
    return dn_fail(DN_EDIST, "dist.finalize: an earlier collective timed out; MPI is left as it is, end the process");
  int err = MPI_Comm_free(&comm);
  if (err != MPI_SUCCESS) return dn_dist_mpi_fail("dist.finalize", "MPI_Comm_free", err);
  if (started_mpi) {
    err = MPI_Finalize();
    if (err != MPI_SUCCESS) return dn_dist_mpi_fail("dist.finalize", "MPI_Finalize", err);
  }
  return DN_OK;
}

dn_status dn_dist_rank(int *rank) {
  if (!rank) return dn_fail(DN_EINVAL, "dist.rank: rank is NULL");
  dn_status st = need_started("dist.rank");
  if (st != DN_OK) return st;
  *rank = world_rank;
  return DN_OK;
}

dn_status dn_dist_world_size(int *size) {
  if (!size) return dn_fail(DN_EINVAL, "dist.world_size: size is NULL");
  dn_status st = need_started("dist.world_size");
  if (st != DN_OK) return st;
  *size = world_size;
  return DN_OK;
}

dn_status dn_dist_barrier(void) {
  dn_status st = dn_dist_need_running("dist.barrier");
  if (st != DN_OK) return st;
  MPI_Request req;
  int err = MPI_Ibarrier(comm, &req);
  if (err != MPI_SUCCESS) return dn_dist_mpi_fail("dist.barrier", "MPI_Ibarrier", err);
  return dn_dist_wait("dist.barrier", "MPI_Ibarrier", 1, &req);
}

/* The list's total size in bytes (float32 only when float_only), or a status naming the bad tensor. */
static dn_status check_list(const char *fn, dn_tensor *const *tensors, int count, bool float_only, int64_t *bytes) {
  *bytes = 0;
  if (count < 0) return dn_fail(DN_EINVAL, "%s: count must be >= 0 (got %d)", fn, count);
  if (count > 0 && !tensors) return dn_fail(DN_EINVAL, "%s: tensors is NULL", fn);
  for (int k = 0; k < count; k++) {
    const dn_tensor *t = tensors[k];
    if (!t) return dn_fail(DN_EINVAL, "%s: tensor %d of %d is NULL", fn, k + 1, count);
    if (float_only && t->dtype != DN_F32)
      return dn_fail(DN_ETYPE, "%s: tensor %d of %d is %s, expected float32", fn, k + 1, count,
                     dn_dtype_name(t->dtype));
    if (!dn_tensor_is_contiguous(t))
      return dn_fail(DN_EINVAL, "%s: tensor %d of %d is not contiguous (call contiguous() first)", fn, k + 1, count);
    int64_t size;
    if (!dn_size_mul(dn_tensor_numel(t), (int64_t)dn_dtype_size(t->dtype), &size) || !dn_size_add(*bytes, size, bytes))
      return dn_fail(DN_EINVAL, "%s: the list holds too many elements", fn);
  }
  return DN_OK;
}

static void pack(unsigned char *buffer, dn_tensor *const *tensors, int count) {
  for (int k = 0; k < count; k++) {
    size_t n = (size_t)dn_tensor_numel(tensors[k]) * dn_dtype_size(tensors[k]->dtype);
    if (n) memcpy(buffer, dn_tensor_data(tensors[k]), n);
    buffer += n;
  }
}

static void unpack(dn_tensor *const *tensors, int count, const unsigned char *buffer) {
  for (int k = 0; k < count; k++) {
    size_t n = (size_t)dn_tensor_numel(tensors[k]) * dn_dtype_size(tensors[k]->dtype);
    if (n) memcpy(dn_tensor_data(tensors[k]), buffer, n);
    buffer += n;
    dn_bump_version(tensors[k]);
  }
}

/* Every rank tells the others whether its input was accepted, its size (in unit) and its op or root (param). Returns
   DN_OK when all agree; otherwise local (when this rank failed: its message stays) or DN_EDIST. */
dn_status dn_dist_agree(const char *fn, dn_status local, int64_t size, const char *unit, int64_t param,
                        const char *param_name) {
  int64_t v[5] = {local != DN_OK, size, -size, param, -param};
  MPI_Request req;
  int err = MPI_Iallreduce(MPI_IN_PLACE, v, 5, MPI_INT64_T, MPI_MAX, comm, &req);
  dn_status waited = err == MPI_SUCCESS ? dn_dist_wait(fn, "MPI_Iallreduce (agreement)", 1, &req) : DN_OK;
  if (local != DN_OK) return local;
  if (err != MPI_SUCCESS) return dn_dist_mpi_fail(fn, "MPI_Iallreduce (agreement)", err);
  if (waited != DN_OK) return waited;
  if (v[0]) return dn_fail(DN_EDIST, "%s: another rank's arguments were rejected (see its message)", fn);
  if (v[1] != -v[2])
    return dn_fail(DN_EDIST, "%s: the ranks passed lists of different sizes (%lld to %lld %s; this rank %lld)", fn,
                   (long long)-v[2], (long long)v[1], unit, (long long)size);
  if (v[3] != -v[4])
    return dn_fail(DN_EDIST, "%s: the ranks passed different %s (%lld to %lld)", fn, param_name, (long long)-v[4],
                   (long long)v[3]);
  return DN_OK;
}

dn_status dn_dist_all_reduce(dn_tensor *const *tensors, int count, dn_dist_op op) {
  static const char fn[] = "dist.all_reduce";
  dn_status st = dn_dist_need_running(fn);
  if (st != DN_OK) return st;
  int64_t bytes = 0;
  dn_status local = check_list(fn, tensors, count, true, &bytes);
  if (local == DN_OK && op != DN_DIST_SUM && op != DN_DIST_MEAN)
    local = dn_fail(DN_EINVAL, "%s: unknown op %d (sum or mean)", fn, (int)op);
  int64_t total = bytes / (int64_t)sizeof(float);
  int64_t chunk = total < REDUCE_CHUNK ? total : REDUCE_CHUNK;
  float *fused = NULL, *gathered = NULL;
  if (local == DN_OK && total > 0) {
    fused = dn_alloc((size_t)bytes);
    if (world_rank == 0) gathered = dn_alloc((size_t)chunk * (size_t)world_size * sizeof(float));
    if (!fused || (world_rank == 0 && !gathered))
      local = dn_fail(DN_ENOMEM, "%s: out of memory for the fused buffer (%lld elements)", fn, (long long)total);
  }
  st = dn_dist_agree(fn, local, total, "elements", op, "ops");
  if (st == DN_OK && total > 0) pack((unsigned char *)fused, tensors, count);
  for (int64_t start = 0; st == DN_OK && start < total; start += chunk) {
    int n = (int)(total - start < chunk ? total - start : chunk);
    float *part = fused + start;
    MPI_Request req;
    int err = MPI_Igather(part, n, MPI_FLOAT, gathered, n, MPI_FLOAT, 0, comm, &req);
    st = err == MPI_SUCCESS ? dn_dist_wait(fn, "MPI_Igather", 1, &req) : dn_dist_mpi_fail(fn, "MPI_Igather", err);
    if (st != DN_OK) break;
    if (world_rank == 0) {
      /* rank order, one add at a time: the same bits whatever MPI did */
      memcpy(part, gathered, (size_t)n * sizeof(float));
      for (int r = 1; r < world_size; r++) {
        const float *theirs = gathered + (size_t)r * (size_t)n;
        for (int i = 0; i < n; i++) part[i] += theirs[i];
      }
      if (op == DN_DIST_MEAN) {
        float ranks = (float)world_size;
        for (int i = 0; i < n; i++) part[i] /= ranks;
      }
    }
    err = MPI_Ibcast(part, n, MPI_FLOAT, 0, comm, &req);
    st = err == MPI_SUCCESS ? dn_dist_wait(fn, "MPI_Ibcast", 1, &req) : dn_dist_mpi_fail(fn, "MPI_Ibcast", err);
  }
  if (st == DN_OK && total > 0) unpack(tensors, count, (const unsigned char *)fused);
  if (!timed_out) {   /* an abandoned collective may still own them */
    dn_free(gathered);
    dn_free(fused);
  }
  return st;
}

dn_status dn_dist_broadcast(dn_tensor *const *tensors, int count, int root) {
  static const char fn[] = "dist.broadcast";
  dn_status st = dn_dist_need_running(fn);
  if (st != DN_OK) return st;
  int64_t bytes = 0;
  dn_status local = check_list(fn, tensors, count, false, &bytes);
  if (local == DN_OK && (root < 0 || root >= world_size))
    local = dn_fail(DN_ERANGE, "%s: root %d out of range for a world of %d (ranks 0 .. %d)", fn, root, world_size,
                    world_size - 1);
  unsigned char *fused = NULL;
  if (local == DN_OK && bytes > 0) {
    fused = dn_alloc((size_t)bytes);
    if (!fused) local = dn_fail(DN_ENOMEM, "%s: out of memory for the fused buffer (%lld bytes)", fn, (long long)bytes);
  }
  st = dn_dist_agree(fn, local, bytes, "bytes", root, "roots");
  if (st == DN_OK && world_rank == root && bytes > 0) pack(fused, tensors, count);
  for (int64_t start = 0; st == DN_OK && start < bytes; start += BROADCAST_CHUNK) {
    int n = (int)(bytes - start < BROADCAST_CHUNK ? bytes - start : BROADCAST_CHUNK);
    MPI_Request req;
    int err = MPI_Ibcast(fused + start, n, MPI_BYTE, root, comm, &req);
    st = err == MPI_SUCCESS ? dn_dist_wait(fn, "MPI_Ibcast", 1, &req) : dn_dist_mpi_fail(fn, "MPI_Ibcast", err);
  }
  /* root's tensors already hold the data: no write, no version bump */
  if (st == DN_OK && world_rank != root && bytes > 0) unpack(tensors, count, fused);
  if (!timed_out) dn_free(fused);   /* an abandoned collective may still own it */
  return st;
}

#else   /* built without MPI */

static dn_status unsupported(const char *fn) {
  return dn_fail(DN_EUNSUPPORTED, "%s: built without MPI (install Debian's libopenmpi-dev and openmpi-bin, then rebuild)",
                 fn);
}

bool dn_dist_available(void) { return false; }
bool dn_dist_is_initialized(void) { return false; }
dn_status dn_dist_init(void) { return unsupported("dist.init"); }
dn_status dn_dist_set_timeout(double seconds) {
  (void)seconds;
  return unsupported("dist.set_timeout");
}
double dn_dist_timeout(void) { return DN_DIST_DEFAULT_TIMEOUT; }
dn_status dn_dist_finalize(void) { return unsupported("dist.finalize"); }
dn_status dn_dist_rank(int *rank) { return unsupported("dist.rank"); }
dn_status dn_dist_world_size(int *size) { return unsupported("dist.world_size"); }
dn_status dn_dist_barrier(void) { return unsupported("dist.barrier"); }
dn_status dn_dist_all_reduce(dn_tensor *const *tensors, int count, dn_dist_op op) {
  return unsupported("dist.all_reduce");
}
dn_status dn_dist_broadcast(dn_tensor *const *tensors, int count, int root) { return unsupported("dist.broadcast"); }

#endif
