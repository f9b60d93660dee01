/*
** The thread count and the floating-point mode of the runtime's threads.
** The threads themselves are pool.c's; OpenBLAS, where it still computes,
** runs single-threaded inside our tasks (blas.c).
**
** The mode: denormals flushed to zero (FTZ and DAZ in MXCSR), by default.
** Weights whose gradient is exactly 0 have momentum and Adam buffers that
** decay geometrically through the denormal range, and an Intel core takes
** ~100 cycles per operation on a denormal: 56% of all cycles of the small
** MLP went to sgd's update (issue 11).
**
** Where the mode is set, and why there:
** - The calling thread only for the duration of a runtime call:
**   DN_FPMODE_SCOPE() (internal.h) at the top of each entry point that
**   computes, converts numbers or starts a parallel loop sets the mode,
**   and a cleanup variable puts the caller's FTZ/DAZ bits back on every
**   return. The runtime never calls into Lua, so no Lua error (a longjmp)
**   can skip that restore, and Lua's own arithmetic on doubles, which FTZ
**   and DAZ would change too, never runs in our mode. A wrapper around each
**   Lua binding instead would have its restore skipped by every luaL_error;
**   catching those takes a pcall per call, which also renames the function
**   in "bad argument" messages.
** - Workers run nothing but our tasks; each takes the caller's bits with
**   the task (pool.c), so they always compute as the caller does.
** Cost per outermost call, measured on the Sapphire Rapids machine: ~16 ns
** with the flush on, ~10 ns of it the two MXCSR writes (the mode differs
** from Lua's), ~6 ns with it off; lost in the noise of a ~700 ns Lua binding
** call. Nested calls find the mode set and write nothing. Only FTZ and DAZ
** are touched: rounding mode and exception flags stay the caller's.
*/
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#define FTZ_DAZ 0x8040u   /* MXCSR bit 15: flush to zero; bit 6: denormals are zero */
#else
#define HAVE_MXCSR 0
#define FTZ_DAZ 0u
#endif

#include "dropnet/parallel.h"
#include "internal.h"

/* 0: not set yet; the default is read on first use. Threads racing to the
   default store the same value. */
static atomic_int num_threads;

/* The bits kernels run with: FTZ_DAZ or 0. */
static atomic_uint mode_bits = FTZ_DAZ;

unsigned dn_fpmode_bits(void) {
#if HAVE_MXCSR
  return _mm_getcsr() & FTZ_DAZ;
#else
  return 0;
#endif
}

void dn_fpmode_set_bits(unsigned bits) {
#if HAVE_MXCSR
  unsigned csr = _mm_getcsr(), want = (csr & ~FTZ_DAZ) | bits;
  if (want != csr) _mm_setcsr(want);
#else
  (void)bits;
#endif
}

/* OMP_NUM_THREADS when set to a count (what users of OpenMP programs, and
   PyTorch's, expect), else the CPUs this process may run on. */
static int default_threads(void) {
  const char *env = getenv("OMP_NUM_THREADS");
  if (env && *env) {
    char *end;
    long n = strtol(env, &end, 10);
    if (n >= 1 && (*end == '\0' || *end == ',')) return n < DN_MAX_THREADS ? (int)n : DN_MAX_THREADS;
  }
  cpu_set_t set;
  int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  return n < DN_MAX_THREADS ? n : DN_MAX_THREADS;
}

dn_status dn_set_num_threads(int n) {
  if (n < 1 || n > DN_MAX_THREADS)
    return dn_fail(DN_EINVAL, "set_num_threads: thread count must be 1..%d (got %d)", DN_MAX_THREADS, n);
  atomic_store(&num_threads, n);
  return DN_OK;
}

int dn_get_num_threads(void) {
  int n = atomic_load_explicit(&num_threads, memory_order_relaxed);
  if (n == 0) {
    n = default_threads();
    atomic_store_explicit(&num_threads, n, memory_order_relaxed);
  }
  return n;
}

bool dn_set_flush_denormal(bool flush) {
  if (!HAVE_MXCSR) return false;
  atomic_store(&mode_bits, flush ? FTZ_DAZ : 0u);
  return true;
}

bool dn_get_flush_denormal(void) { return HAVE_MXCSR && atomic_load(&mode_bits) != 0; }

unsigned dn_fpmode_enter(void) {
  unsigned saved = dn_fpmode_bits();
  dn_fpmode_set_bits(atomic_load_explicit(&mode_bits, memory_order_relaxed));
  return saved;
}

void dn_fpmode_leave(unsigned saved) { dn_fpmode_set_bits(saved & FTZ_DAZ); }

/* --- splitting [0, n) over the team -------------------------------------------- */

/*
** The one driver of the runtime's loops over ranges: pieces are cut by
** dn_split at multiples of align, from n and the task count alone, so a
** piece never depends on which thread runs it. pool.c runs the tasks.
*/
typedef struct range_job {
  dn_range_fn *fn;
  const void *ctx;
  int64_t n, align;
} range_job;

static void range_task(void *ctx, int task, int tasks) {
  const range_job *r = ctx;
  int64_t units = (r->n + r->align - 1) / r->align;
  int64_t begin = dn_split(units, task, tasks) * r->align, end = dn_split(units, task + 1, tasks) * r->align;
  if (end > r->n) end = r->n;
  if (begin < end) r->fn(r->ctx, begin, end);
}

void dn_parallel_split(int64_t n, int64_t align, int tasks, dn_range_fn *fn, const void *ctx) {
  if (n <= 0) return;
  if (align < 1) align = 1;
  int64_t units = (n + align - 1) / align;
  if (tasks > units) tasks = (int)units;
  if (tasks <= 1) {
    fn(ctx, 0, n);
    return;
  }
  range_job r = {fn, ctx, n, align};
  dn_parallel(tasks, range_task, &r);
}

void dn_parallel_range(int64_t n, int64_t align, dn_range_fn *fn, const void *ctx) {
  dn_parallel_split(n, align, dn_threads_for(n), fn, ctx);
}

void dn_parallel_rows(int64_t rows, int64_t row_size, dn_range_fn *fn, const void *ctx) {
  int64_t work = rows * (row_size > 1 ? row_size : 1);   /* <= 2^40 (shape.h): no overflow */
  dn_parallel_split(rows, 1, dn_threads_for(work), fn, ctx);
}
