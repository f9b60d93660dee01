/*
** The runtime's own team of threads, in place of OpenMP's (issue 11).
**
** Why not OpenMP: a training step runs some tens of parallel regions with
** short gaps of Lua between them. libgomp's workers either sleep between
** regions (OMP_WAIT_POLICY=PASSIVE: every region pays a futex wake-up of
** 10-70 us) or spin for a round count (300,000 by default: 2.1x slower with
** one busy process beside us, and ~4x the CPU time under a plain lua5.4,
** where nothing sets the policy). And a region waits for all its threads:
** when a worker is descheduled, the whole step waits for it.
**
** What this pool does instead:
** - Workers spin for a time budget (SPIN_NS, not a round count: a pause
**   costs ~14x more cycles on some cores than on others), then sleep on a
**   futex. Between regions of one step they are awake; after the step they
**   go to sleep soon. A worker that finds it was descheduled while spinning
**   (the machine is oversubscribed) stops spinning at once: spinning then
**   takes CPU from whoever else runs.
** - Tasks are claimed, not assigned: the caller and the workers take the
**   next task from one counter. A worker that wakes late finds its share
**   done by the caller; nothing waits for a thread that has not started.
**   Since a task's result depends only on its number (pool.h), the same
**   tasks give the same results whoever runs them.
** - The caller waits for tasks still running by spinning for the same
**   budget, then on a futex the last task's thread wakes.
**
** One job is in flight at a time; the claim word carries the job's number,
** so a worker that arrives after its job finished cannot take a task of the
** next one. Workers are started when first needed (never in a process that
** does not run threads) and block asynchronous signals, so that SIGINT
** reaches the script's thread.
*/
#define _GNU_SOURCE
#include "pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dropnet/parallel.h"
#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spin this long for the next job or for running tasks before sleeping.
   Longer than the gaps between a step's regions (~1-30 us of Lua and small
   ops), short enough that an idle library costs nothing noticeable. */
#define SPIN_NS 100000
/* A gap this long between two clock reads of a spin means we were
   descheduled: someone else wants the CPU. */
#define PREEMPTED_NS 1000000
/* The largest team: dn_set_num_threads' limit. */
#define MAX_WORKERS (DN_MAX_THREADS - 1)

static struct {
  pthread_mutex_t lock;          /* one job at a time */
  _Atomic uint64_t claim;        /* job number << 32 | tasks << 16 | next task */
  atomic_uint done;              /* tasks of the job finished; futex word of a sleeping caller */
  atomic_uint job;               /* number of the last job published; futex word of sleeping workers */
  atomic_int sleeping;           /* workers asleep (or about to be) on job */
  atomic_int caller_sleeping;    /* the caller is asleep (or about to be) on done */
  atomic_int helpers;            /* workers that may join the job: the team size - 1 */
  dn_task_fn *fn;                /* the job; stable from publication until done == tasks */
  void *ctx;
  unsigned csr_bits;
  int started;                   /* workers started */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local bool in_task;

static long futex(atomic_uint *word, int op, unsigned value) {
  return syscall(SYS_futex, (unsigned *)word, op | FUTEX_PRIVATE_FLAG, value, NULL, NULL, 0);
}

/*
** Contention: another process wants our CPUs. The signs: a spinning worker
** finds it was descheduled, or the caller, done with the tasks it took,
** waits long for one a worker holds. Until CONTENDED_NS after either,
** dn_pool_contended() says so: workers sleep as soon as their job is done
** instead of spinning, which would take CPU time from the caller's thread,
** and small work stays on one thread (internal.h, gemm.c), where it costs
** only its own time instead of a wait for a worker.
** Measured on the Sapphire Rapids machine, samples/s, 3 alternated pairs
** against the thresholds of before (small work always on one thread,
** workers always spinning): small MLP (784-64-10) quiet 337-344k against
** 250-257k; with one `yes` beside it 148-219k against 173-251k (splitting
** without this detection: ~173k); reference MLP with `yes` beside it
** 11.8-13.1k against 10.7-10.9k, quiet unchanged.
** (Counting involuntary context switches instead was tried: a busy
** neighbour preempts our threads only some 10-30 times a second here, too
** rarely to tell.)
*/
#define CONTENDED_WAIT_NS 300000
#define CONTENDED_NS 100000000

static _Atomic uint64_t contended_until;

static void note_contention(void) {
  atomic_store_explicit(&contended_until, dn_now_ns() + CONTENDED_NS, memory_order_relaxed);
}

/* waited: the caller's wait for workers' tasks; own: the time it took for its own. */
static void note_wait(uint64_t waited, uint64_t own) {
  if (waited > CONTENDED_WAIT_NS && waited > own / 2) note_contention();
}

void dn_pool_set_contended(bool on) {
  if (on) note_contention();
  else atomic_store_explicit(&contended_until, 0, memory_order_relaxed);
}

bool dn_pool_contended(void) {
  uint64_t until = atomic_load_explicit(&contended_until, memory_order_relaxed);
  return until != 0 && dn_now_ns() < until;
}

/* Spins while *word == value for at most SPIN_NS; false when it timed out
   or we were descheduled (noted as contention) with the value unchanged. */
static bool spin_while(atomic_uint *word, unsigned value) {
  uint64_t last = 0, start = 0;
  for (unsigned i = 1;; i++) {
    if (atomic_load_explicit(word, memory_order_acquire) != value) return true;
    CPU_RELAX();
    if (i % 64 == 0) {
      uint64_t t = dn_now_ns();
      if (!start) start = t;
      else if (t - last > PREEMPTED_NS) {
        note_contention();
        return false;
      } else if (t - start > SPIN_NS) return false;
      last = t;
    }
  }
}

/* Takes and runs tasks of job number `job` until none is left. */
static void run_tasks(unsigned job, bool is_worker) {
  uint64_t w = atomic_load_explicit(&pool.claim, memory_order_acquire);
  for (;;) {
    unsigned tasks = (unsigned)(w >> 16) & 0xffffu, next = (unsigned)w & 0xffffu;
    if ((unsigned)(w >> 32) != job || next >= tasks) return;
    if (!atomic_compare_exchange_weak_explicit(&pool.claim, &w, w + 1, memory_order_acq_rel, memory_order_acquire))
      continue;
    /* The task is ours: the job cannot finish, nor its fields change, before we count it done. */
    if (is_worker) dn_fpmode_set_bits(pool.csr_bits);
    in_task = true;
    pool.fn(pool.ctx, (int)next, (int)tasks);
    in_task = false;
    if (atomic_fetch_add(&pool.done, 1) + 1 == tasks && atomic_load(&pool.caller_sleeping))
      futex(&pool.done, FUTEX_WAKE, 1);
    w = atomic_load_explicit(&pool.claim, memory_order_acquire);
  }
}

static void *worker_main(void *arg) {
  int index = (int)(intptr_t)arg;   /* 1..MAX_WORKERS */
  /* Started for the job about to be published or just published: look at
     the claim word at once, which names the job it belongs to. */
  unsigned seen = atomic_load(&pool.job);
  if (index <= atomic_load_explicit(&pool.helpers, memory_order_relaxed))
    run_tasks((unsigned)(atomic_load(&pool.claim) >> 32), true);
  for (;;) {
    /* Contended, sleep at once: a spinning worker would take CPU time from the caller. */
    if (dn_pool_contended() ? atomic_load(&pool.job) == seen : !spin_while(&pool.job, seen)) {
      /* Announce the sleep before the last look, so a publisher that bumps
         job after that look sees us and wakes us (both sides seq_cst). */
      atomic_fetch_add(&pool.sleeping, 1);
      while (atomic_load(&pool.job) == seen) futex(&pool.job, FUTEX_WAIT, seen);
      atomic_fetch_sub(&pool.sleeping, 1);
    }
    seen = atomic_load(&pool.job);
    if (index <= atomic_load_explicit(&pool.helpers, memory_order_relaxed)) run_tasks(seen, true);
  }
  return NULL;
}

/* A forked child has the lock and counters of the parent but none of its threads. */
static void forget_workers(void) {
  pthread_mutex_init(&pool.lock, NULL);
  pool.started = 0;
  atomic_store(&pool.sleeping, 0);
  atomic_store(&pool.caller_sleeping, 0);
}

/* Starts workers up to `want` (called with the lock held); returns how many run. */
static int start_workers(int want) {
  static bool registered;   /* the fork handler; guarded by the lock like the rest */
  if (want > MAX_WORKERS) want = MAX_WORKERS;
  if (pool.started >= want) return want;
  if (!registered) registered = pthread_atfork(NULL, NULL, forget_workers) == 0;
  /* Asynchronous signals (SIGINT, SIGTERM, ...) go to the application's
     threads; faults stay deliverable here, so a crash in a task is reported
     (by a sanitizer too) rather than forced past a blocked handler. */
  sigset_t all, old;
  sigfillset(&all);
  int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
  for (size_t i = 0; i < sizeof faults / sizeof *faults; i++) sigdelset(&all, faults[i]);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  while (pool.started < want) {
    pthread_t thread;
    if (pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)(pool.started + 1)) != 0) break;
    pool.started++;
  }
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return pool.started;
}

static void run_inline(int tasks, dn_task_fn *fn, void *ctx) {
  bool outer = !in_task;
  in_task = true;
  for (int t = 0; t < tasks; t++) fn(ctx, t, tasks);
  if (outer) in_task = false;
}

void dn_parallel(int tasks, dn_task_fn *fn, void *ctx) {
  if (tasks <= 0) return;
  if (tasks > DN_MAX_TASKS) tasks = DN_MAX_TASKS;   /* callers stay below; never more than the claim word holds */
  int threads = dn_get_num_threads();
  if (tasks == 1 || threads <= 1 || in_task || pthread_mutex_trylock(&pool.lock) != 0) {
    run_inline(tasks, fn, ctx);
    return;
  }
  int helpers = start_workers((threads < tasks ? threads : tasks) - 1);
  if (helpers == 0) {
    pthread_mutex_unlock(&pool.lock);
    run_inline(tasks, fn, ctx);
    return;
  }
  atomic_store_explicit(&pool.helpers, helpers, memory_order_relaxed);
  pool.fn = fn;
  pool.ctx = ctx;
  pool.csr_bits = dn_fpmode_bits();
  atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
  unsigned job = atomic_load_explicit(&pool.job, memory_order_relaxed) + 1;
  atomic_store_explicit(&pool.claim, (uint64_t)job << 32 | (uint64_t)tasks << 16, memory_order_release);
  atomic_store(&pool.job, job);
  if (atomic_load(&pool.sleeping) > 0) futex(&pool.job, FUTEX_WAKE, INT_MAX);

  uint64_t start = dn_now_ns();
  run_tasks(job, false);
  unsigned done = atomic_load(&pool.done);
  if (done != (unsigned)tasks) {
    uint64_t waiting = dn_now_ns();
    do {
      if (spin_while(&pool.done, done)) continue;
      atomic_store(&pool.caller_sleeping, 1);
      while ((done = atomic_load(&pool.done)) != (unsigned)tasks) futex(&pool.done, FUTEX_WAIT, done);
      atomic_store(&pool.caller_sleeping, 0);
    } while ((done = atomic_load(&pool.done)) != (unsigned)tasks);
    note_wait(dn_now_ns() - waiting, waiting - start);
  }
  pthread_mutex_unlock(&pool.lock);
}
