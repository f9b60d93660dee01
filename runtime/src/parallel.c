/*
** Thread count for our OpenMP loops and OpenBLAS together. OpenBLAS is
** linked in its OpenMP build, so both draw from one pool of threads and
** never spin against each other.
**
** The floating-point mode of those threads: denormals flushed to zero (FTZ
** and DAZ in MXCSR), by default. Weights whose gradient is exactly 0 have
** momentum and Adam buffers that decay geometrically through the denormal
** range, and an Intel core takes ~100 cycles per operation on a denormal:
** 56% of all cycles of the small MLP went to sgd's update (issue 11).
**
** Where the mode is set, and why there:
** - The calling thread only for the duration of a runtime call:
**   DN_FPMODE_SCOPE() (internal.h) at the top of each entry point that
**   computes, converts numbers or starts a parallel region sets the mode,
**   and a cleanup variable puts the caller's FTZ/DAZ bits back on every
**   return. The runtime never calls into Lua, so no Lua error (a longjmp)
**   can skip that restore, and Lua's own arithmetic on doubles, which FTZ
**   and DAZ would change too, never runs in our mode. A wrapper around each
**   Lua binding instead would have its restore skipped by every luaL_error;
**   catching those takes a pcall per call, which also renames the function
**   in "bad argument" messages.
** - Workers run nothing but our loops and OpenBLAS's (same libgomp team), so
**   they keep the mode. A new thread inherits its creator's MXCSR, and
**   libgomp creates workers (again after a team shrank: it ends the surplus
**   ones) from the thread that starts the region, inside a runtime call, so
**   in the mode. Workers that exist already are set by a region over the
**   pool when the switch or the thread count changes, and at a thread's
**   first runtime call if the process has threads by then (libgomp's pool
**   belongs to the thread that starts the regions, so each caller thread
**   syncs its own). A process that never had a second thread has no pool,
**   and creating one just to set its mode would slow it down: glibc's
**   mutexes (the allocator's) take their multi-threaded path from then on,
**   and a 1-element op went from ~200 to ~300 ns (measured).
** Cost per outermost call, measured on the Sapphire Rapids machine: ~16 ns
** with the flush on, ~10 ns of it the two MXCSR writes (the mode differs
** from Lua's), ~6 ns with it off; lost in the noise of a ~700 ns Lua binding
** call. Nested calls find the mode set and write nothing. Only FTZ and DAZ
** are touched: rounding mode and exception flags stay the caller's.
** A pool of our own instead of OpenMP's must set the mode in its threads
** the same way.
*/
#include <stdatomic.h>

#include <omp.h>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#define FTZ_DAZ 0x8040u   /* MXCSR bit 15: flush to zero; bit 6: denormals are zero */
#else
#define HAVE_MXCSR 0
#define FTZ_DAZ 0u
#endif

/* True while the process has never had a second thread (glibc >= 2.32). */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#include <sys/single_threaded.h>
#define SINGLE_THREADED() (__libc_single_threaded != 0)
#else
#define SINGLE_THREADED() false
#endif

#include "dropnet/parallel.h"

void openblas_set_num_threads(int num_threads);   /* OpenBLAS's own API */

static int num_threads = 0;   /* 0: not set yet, use OpenMP's default */

/* The bits kernels run with: FTZ_DAZ or 0. */
static atomic_uint mode_bits = FTZ_DAZ;
/* Bumped when the workers need the mode set again; each thread remembers
   the generation its pool was last set for (0: never). */
static atomic_uint generation = 1;
static _Thread_local unsigned synced_generation;

static inline unsigned get_csr(void) {
#if HAVE_MXCSR
  return _mm_getcsr();
#else
  return 0;
#endif
}

/* Replaces the FTZ/DAZ bits of this thread's MXCSR with bits. */
static inline void set_bits(unsigned bits) {
#if HAVE_MXCSR
  unsigned csr = _mm_getcsr(), want = (csr & ~FTZ_DAZ) | bits;
  if (want != csr) _mm_setcsr(want);
#else
  (void)bits;
#endif
}

/* Sets the mode in every worker of the calling thread's pool (not in the
   calling thread itself, which DN_FPMODE_SCOPE handles). Without threads
   there is no pool: nothing to do, and the next call looks again. */
static void sync_workers(void) {
  if (!HAVE_MXCSR || SINGLE_THREADED() || omp_in_parallel()) return;
  unsigned gen = atomic_load(&generation), bits = atomic_load(&mode_bits);
  int n = dn_get_num_threads();
  if (n > 1) {
#pragma omp parallel num_threads(n)
    if (omp_get_thread_num() != 0) set_bits(bits);
  }
  synced_generation = gen;
}

dn_status dn_set_num_threads(int n) {
  if (n < 1) return dn_fail(DN_EINVAL, "set_num_threads: thread count must be >= 1 (got %d)", n);
  num_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  atomic_fetch_add(&generation, 1);
  sync_workers();
  return DN_OK;
}

int dn_get_num_threads(void) {
  return num_threads > 0 ? num_threads : omp_get_max_threads();
}

bool dn_set_flush_denormal(bool flush) {
  if (!HAVE_MXCSR) return false;
  atomic_store(&mode_bits, flush ? FTZ_DAZ : 0u);
  atomic_fetch_add(&generation, 1);
  sync_workers();
  return true;
}

bool dn_get_flush_denormal(void) { return HAVE_MXCSR && atomic_load(&mode_bits) != 0; }

unsigned dn_fpmode_enter(void) {
  unsigned saved = get_csr() & FTZ_DAZ;
  if (synced_generation != atomic_load_explicit(&generation, memory_order_relaxed)) sync_workers();
  set_bits(atomic_load_explicit(&mode_bits, memory_order_relaxed));
  return saved;
}

void dn_fpmode_leave(unsigned saved) { set_bits(saved & FTZ_DAZ); }
