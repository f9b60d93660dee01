/*
** The runtime's team of threads (pool.c): every parallel loop of the
** runtime and the GEMM run through dn_parallel. Not installed.
*/
#ifndef DROPNET_POOL_H
#define DROPNET_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Most tasks one dn_parallel call takes. */
#define DN_MAX_TASKS 4096

/*
** Part `task` of `tasks` of some work. What a task computes may depend on
** task and tasks only, never on the thread that runs it: any thread may
** take any task, which is what keeps results the same for any thread count
** and lets the caller do a late worker's share itself.
*/
typedef void dn_task_fn(void *ctx, int task, int tasks);

/*
** Runs fn(ctx, t, tasks) once for every t in [0, tasks), 1 <= tasks <=
** DN_MAX_TASKS, on up to dn_get_num_threads() threads (the calling thread
** is one of them), and returns when all have returned. The tasks run in
** order on the calling thread alone with one thread, inside a task (nested
** calls), or while another thread of the process runs a parallel call.
** Workers compute in the caller's floating-point mode (FTZ/DAZ bits).
*/
void dn_parallel(int tasks, dn_task_fn *fn, void *ctx);

/* Whether workers were recently late because other processes want the CPUs
   (pool.c): small work then runs on one thread. */
bool dn_pool_contended(void);

/* For tests: as if a busy neighbour had just kept a worker waiting (on), or
   as if none had for a while (off). */
void dn_pool_set_contended(bool on);

/*
** Whether small work (products up to 4M multiply-adds, loops below
** DN_SOLO_GRAIN elements) runs on the calling thread alone now: the verdict
** of the last trial of both ways (solo_trial.c). The trials count these
** calls, so call it once for every loop or product the runtime starts,
** however it then runs.
*/
bool dn_pool_solo(void);

/* The windows of a trial, and the verdict from their rates (true: solo). */
#define DN_SOLO_WINDOWS 6
bool dn_solo_verdict(const double rate[DN_SOLO_WINDOWS]);

/* For tests: verdict 1 solo or 0 split from now on, with no trials; -1
   split until a trial, which starts at the next calls. And the number of
   trials finished. */
void dn_pool_set_solo(int verdict);
int dn_pool_solo_trials(void);

/* For tests: the dn_pool_solo calls so far (with more than one thread). */
uint64_t dn_pool_solo_decisions(void);

/* The monotonic clock in nanoseconds: the pool's spins and the trials' windows. */
static inline uint64_t dn_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Start of part t of [0, n) cut into `parts` near-equal pieces (t = parts gives n). */
static inline int64_t dn_split(int64_t n, int t, int parts) { return n / parts * t + n % parts * t / parts; }

/*
** The range drivers (parallel.c), every loop's way onto the team.
** fn(ctx, begin, end) over [0, n) cut into dn_threads_for(n) pieces whose
** bounds are multiples of `align` (except n): for loops whose elements do
** not depend on each other.
*/
typedef void dn_range_fn(const void *ctx, int64_t begin, int64_t end);
void dn_parallel_range(int64_t n, int64_t align, dn_range_fn *fn, const void *ctx);

/* The same with the number of pieces chosen by the caller (at most one per
   align-sized unit). */
void dn_parallel_split(int64_t n, int64_t align, int tasks, dn_range_fn *fn, const void *ctx);

/* fn(ctx, begin, end) over rows [0, rows) of `row_size` elements each, cut
   into dn_threads_for(rows * row_size) pieces: for rows computed apart. */
void dn_parallel_rows(int64_t rows, int64_t row_size, dn_range_fn *fn, const void *ctx);

#endif
