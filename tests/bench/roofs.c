/* Machine roofs: FMA peak and copy bandwidth (see roofs.h). */
#define _GNU_SOURCE
#include "roofs.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DN_ROOF_X86 1
#else
#define DN_ROOF_X86 0
#endif

/* Independent accumulators per thread: FMA latency 4 cycles x 2 ports needs 8;
   12 leaves headroom for 5-cycle latencies and still fits the 16 registers of AVX2. */
#define ACCUMULATORS 12

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Keeps the accumulators' values alive so the loops are not optimized away. */
static volatile float sink;

#if DN_ROOF_X86
#define FMA_BODY(type, set1, fmadd, add, first_lane)                                                   \
  type acc[ACCUMULATORS];                                                                               \
  for (int j = 0; j < ACCUMULATORS; j++) acc[j] = set1(1.0f + 0.001f * (float)j);                      \
  /* a = a * x + y with x < 1 converges to y / (1 - x): no overflow, no denormals */                    \
  const type x = set1(0.9999999f), y = set1(1e-7f);                                                    \
  for (long i = 0; i < iters; i++) {                                                                    \
    acc[0] = fmadd(acc[0], x, y);                                                                       \
    acc[1] = fmadd(acc[1], x, y);                                                                       \
    acc[2] = fmadd(acc[2], x, y);                                                                       \
    acc[3] = fmadd(acc[3], x, y);                                                                       \
    acc[4] = fmadd(acc[4], x, y);                                                                       \
    acc[5] = fmadd(acc[5], x, y);                                                                       \
    acc[6] = fmadd(acc[6], x, y);                                                                       \
    acc[7] = fmadd(acc[7], x, y);                                                                       \
    acc[8] = fmadd(acc[8], x, y);                                                                       \
    acc[9] = fmadd(acc[9], x, y);                                                                       \
    acc[10] = fmadd(acc[10], x, y);                                                                     \
    acc[11] = fmadd(acc[11], x, y);                                                                     \
  }                                                                                                     \
  type total = acc[0];                                                                                  \
  for (int j = 1; j < ACCUMULATORS; j++) total = add(total, acc[j]);                                    \
  sink = first_lane(total);

__attribute__((target("avx512f"))) static void fma_loop_512(long iters) {
  FMA_BODY(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_cvtss_f32)
}

__attribute__((target("avx2,fma"))) static void fma_loop_256(long iters) {
  FMA_BODY(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_cvtss_f32)
}
#endif

bool dn_roof_fma_supported(int width_bits) {
#if DN_ROOF_X86
  __builtin_cpu_init();
  if (width_bits == DN_ROOF_FMA512) return __builtin_cpu_supports("avx512f");
  if (width_bits == DN_ROOF_FMA256) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return false;
}

/* --- running a function on n threads, timed from a common start ------------- */

typedef struct {
  pthread_barrier_t *start;
  void (*fn)(void *arg, int index, int count);
  void *arg;
  int index, count;
  double began, ended;
} worker;

static void *worker_main(void *p) {
  worker *w = p;
  pthread_barrier_wait(w->start);
  w->began = now();
  w->fn(w->arg, w->index, w->count);
  w->ended = now();
  return NULL;
}

/* Wall seconds from the first thread's start to the last one's end (each thread
   reads the clock itself: the main thread may be descheduled on a busy machine);
   -1 on failure. */
static double run_threads(int count, void (*fn)(void *, int, int), void *arg) {
  pthread_barrier_t start;
  pthread_t *ids = calloc((size_t)count, sizeof *ids);
  worker *workers = calloc((size_t)count, sizeof *workers);
  if (!ids || !workers || pthread_barrier_init(&start, NULL, (unsigned)count + 1) != 0) {
    free(ids);
    free(workers);
    return -1;
  }
  int started = 0;
  for (; started < count; started++) {
    workers[started] = (worker){&start, fn, arg, started, count, 0, 0};
    if (pthread_create(&ids[started], NULL, worker_main, &workers[started]) != 0) break;
  }
  double seconds = -1;
  if (started == count) {
    pthread_barrier_wait(&start);
    for (int i = 0; i < count; i++) pthread_join(ids[i], NULL);
    double began = workers[0].began, ended = workers[0].ended;
    for (int i = 1; i < count; i++) {
      if (workers[i].began < began) began = workers[i].began;
      if (workers[i].ended > ended) ended = workers[i].ended;
    }
    seconds = ended - began;
  } else {
    /* cannot happen on a sane system; the started threads are stuck at the barrier */
    abort();
  }
  pthread_barrier_destroy(&start);
  free(ids);
  free(workers);
  return seconds;
}

/* --- FMA peak ---------------------------------------------------------------- */

typedef struct {
  int width;
  long iters;
} fma_job;

static void fma_worker(void *arg, int index, int count) {
  (void)index;
  (void)count;
#if DN_ROOF_X86
  const fma_job *job = arg;
  if (job->width == DN_ROOF_FMA512)
    fma_loop_512(job->iters);
  else
    fma_loop_256(job->iters);
#else
  (void)arg;
#endif
}

double dn_roof_fma_gflops(int width_bits, int threads, double seconds, int reps) {
  if (!dn_roof_fma_supported(width_bits) || threads < 1 || reps < 1) return 0;
  /* calibrate on one thread: double the iterations until a run takes a tenth of the target */
  fma_job job = {width_bits, 1 << 16};
  for (;;) {
    double t = run_threads(1, fma_worker, &job);
    if (t < 0) return 0;
    if (t > seconds / 10) {
      job.iters = (long)((double)job.iters * seconds / t) + 1;
      break;
    }
    job.iters *= 2;
  }
  double flops = 2.0 * (width_bits / 32) * ACCUMULATORS * (double)job.iters * threads, best = 0;
  for (int r = 0; r < reps; r++) {
    double t = run_threads(threads, fma_worker, &job);
    if (t > 0 && flops / t > best) best = flops / t;
  }
  return best * 1e-9;
}

/* --- copy bandwidth ---------------------------------------------------------- */

typedef struct {
  char *dst;
  const char *src;
  size_t bytes;
  bool init;   /* first touch: write both slices instead of copying */
} copy_job;

static void copy_worker(void *arg, int index, int count) {
  const copy_job *job = arg;
  /* slices on 4 KiB boundaries so each thread first-touches its own pages */
  size_t pages = (job->bytes + 4095) / 4096, lo = pages * (size_t)index / (size_t)count * 4096,
         hi = pages * (size_t)(index + 1) / (size_t)count * 4096;
  if (hi > job->bytes) hi = job->bytes;
  if (lo >= hi) return;
  if (job->init) {
    memset(job->dst + lo, 0, hi - lo);
    memset((char *)job->src + lo, 1, hi - lo);
  } else {
    memcpy(job->dst + lo, job->src + lo, hi - lo);
  }
}

bool dn_roof_copy_gbs(size_t bytes, const int *threads, int n, int reps, double *gbs) {
  if (n < 1 || reps < 1 || bytes == 0) return false;
  int most = 1;
  for (int i = 0; i < n; i++) {
    if (threads[i] < 1) return false;
    if (threads[i] > most) most = threads[i];
  }
  size_t rounded = (bytes + 4095) / 4096 * 4096;
  char *src = aligned_alloc(4096, rounded), *dst = aligned_alloc(4096, rounded);
  if (!src || !dst) {
    free(src);
    free(dst);
    return false;
  }
  /* first touch by the most threads, so the pages spread as they will be used */
  copy_job job = {dst, src, bytes, true};
  run_threads(most, copy_worker, &job);
  job.init = false;
  for (int i = 0; i < n; i++) {
    run_threads(threads[i], copy_worker, &job);   /* warm-up */
    double best = 0;
    for (int r = 0; r < reps; r++) {
      double t = run_threads(threads[i], copy_worker, &job);
      if (t > 0 && 2.0 * (double)bytes / t > best) best = 2.0 * (double)bytes / t;
    }
    gbs[i] = best * 1e-9;
  }
  sink = (float)dst[bytes / 2];
  free(src);
  free(dst);
  return true;
}

size_t dn_roof_llc_bytes(void) {
  long l3 = -1, l2 = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
  l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
#ifdef _SC_LEVEL2_CACHE_SIZE
  l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
  return l3 > 0 ? (size_t)l3 : l2 > 0 ? (size_t)l2 : 0;
}

int dn_roof_online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
