/*
** The thread pool (pool.c): every task once, on distinct threads when there
** are threads, nested and concurrent calls, sleeping workers woken, a forked
** child, the range splits, the trials of small work solo or split.
*/
#define _GNU_SOURCE
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "pool.h"

#define MAX_PROBE 8

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Each task waits until all have started: they can only all finish if each
   runs on a thread of its own at the same time. */
typedef struct probe {
  atomic_int arrived;
  pid_t tid[MAX_PROBE];
  bool timed_out;
} probe;

static void probe_task(void *ctx, int t, int tasks) {
  probe *p = ctx;
  p->tid[t] = gettid();
  atomic_fetch_add(&p->arrived, 1);
  double deadline = seconds() + 10;
  while (atomic_load(&p->arrived) < tasks)
    if (seconds() > deadline) {
      p->timed_out = true;
      return;
    }
}

/* n tasks ran at once on n distinct threads, the caller's among them. */
static void assert_team(int n) {
  probe p = {0};
  dn_parallel(n, probe_task, &p);
  assert_false(p.timed_out);
  bool caller_seen = false;
  for (int i = 0; i < n; i++) {
    caller_seen |= p.tid[i] == gettid();
    for (int j = 0; j < i; j++)
      if (p.tid[i] == p.tid[j]) fail_msg("tasks %d and %d of %d ran on the same thread", j, i, n);
  }
  assert_true(caller_seen);
}

static void test_team_of_distinct_threads(void **state) {
  (void)state;
  for (int n = 2; n <= 4; n++) {
    DN_OK_OR_FAIL(dn_set_num_threads(n));
    assert_team(n);
  }
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  assert_team(2);
}

/* After the workers fell asleep (the spin budget is ~0.1 ms), a call wakes them. */
static void test_sleeping_workers_wake(void **state) {
  (void)state;
  DN_OK_OR_FAIL(dn_set_num_threads(3));
  for (int round = 0; round < 20; round++) {
    assert_team(3);
    usleep(round % 2 ? 2000 : 50);
  }
}

typedef struct counts {
  atomic_int ran[DN_MAX_TASKS];
  atomic_int nested;
} counts;

static void count_task(void *ctx, int t, int tasks) {
  counts *c = ctx;
  (void)tasks;
  atomic_fetch_add(&c->ran[t], 1);
}

static void nested_task(void *ctx, int t, int tasks) {
  counts *c = ctx;
  (void)t, (void)tasks;
  counts *inner = calloc(1, sizeof *inner);
  assert_non_null(inner);
  dn_parallel(16, count_task, inner);   /* runs inline: its tasks on this thread, in order */
  for (int i = 0; i < 16; i++) assert_int_equal(atomic_load(&inner->ran[i]), 1);
  free(inner);
  atomic_fetch_add(&c->nested, 1);
}

static void test_every_task_once(void **state) {
  (void)state;
  counts *c = calloc(1, sizeof *c);
  assert_non_null(c);
  int sizes[] = {1, 2, 3, 7, 64, 1000, DN_MAX_TASKS};
  for (int threads = 1; threads <= 3; threads++) {
    DN_OK_OR_FAIL(dn_set_num_threads(threads));
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
      memset(c, 0, sizeof *c);
      dn_parallel(sizes[s], count_task, c);
      for (int t = 0; t < DN_MAX_TASKS; t++)
        if (atomic_load(&c->ran[t]) != (t < sizes[s]))
          fail_msg("%d threads, %d tasks: task %d ran %d times", threads, sizes[s], t, atomic_load(&c->ran[t]));
    }
    memset(c, 0, sizeof *c);
    dn_parallel(5, nested_task, c);
    assert_int_equal(atomic_load(&c->nested), 5);
  }
  free(c);
}

/* Two threads of the application start parallel calls at once, many times:
   one gets the pool, the other runs its tasks itself; all complete. */
static void *caller_thread(void *arg) {
  counts *c = arg;
  for (int i = 0; i < 2000; i++) dn_parallel(8, count_task, c);
  return NULL;
}

static void test_concurrent_callers(void **state) {
  (void)state;
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  counts *c[2] = {calloc(1, sizeof(counts)), calloc(1, sizeof(counts))};
  assert_non_null(c[0]);
  assert_non_null(c[1]);
  pthread_t other;
  assert_int_equal(pthread_create(&other, NULL, caller_thread, c[1]), 0);
  caller_thread(c[0]);
  pthread_join(other, NULL);
  for (int k = 0; k < 2; k++) {
    for (int t = 0; t < 8; t++) assert_int_equal(atomic_load(&c[k]->ran[t]), 2000);
    free(c[k]);
  }
}

/* A child forked after the workers started has none of them: it starts its own. */
static void test_forked_child(void **state) {
  (void)state;
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  assert_team(2);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    probe p = {0};
    dn_parallel(2, probe_task, &p);
    _exit(p.timed_out || p.tid[0] == p.tid[1] ? 1 : 0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_team(2);
}

/* One thread: the caller runs the tasks. */
static void test_one_thread_inline(void **state) {
  (void)state;
  DN_OK_OR_FAIL(dn_set_num_threads(1));
  counts *c = calloc(1, sizeof *c);
  assert_non_null(c);
  dn_parallel(4, count_task, c);
  for (int t = 0; t < 4; t++) assert_int_equal(atomic_load(&c->ran[t]), 1);
  free(c);
  DN_OK_OR_FAIL(dn_set_num_threads(2));
}

static void test_split(void **state) {
  (void)state;
  int64_t ns[] = {0, 1, 5, 16, 1000003, (int64_t)1 << 40};
  for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
    for (int parts = 1; parts <= 1024; parts = parts * 3 + 1) {
      int64_t n = ns[i];
      assert_int_equal(dn_split(n, 0, parts), 0);
      assert_int_equal(dn_split(n, parts, parts), n);
      for (int t = 0; t < parts; t++) {
        int64_t size = dn_split(n, t + 1, parts) - dn_split(n, t, parts);
        if (size < n / parts || size > n / parts + 1)
          fail_msg("n %lld, %d parts: part %d has %lld", (long long)n, parts, t, (long long)size);
      }
    }
}

/* dn_parallel_range covers [0, n) once, in pieces that start at multiples of align. */
typedef struct cover {
  atomic_uchar *seen;
  int64_t align;
  atomic_int bad_start;
} cover;

static void cover_range(const void *ctx, int64_t begin, int64_t end) {
  const cover *c = ctx;
  if (begin % c->align) atomic_store((atomic_int *)&c->bad_start, 1);
  for (int64_t i = begin; i < end; i++) atomic_fetch_add(&c->seen[i], 1);
}

static void test_range_cover(void **state) {
  (void)state;
  DN_OK_OR_FAIL(dn_set_num_threads(3));
  int64_t n = 1000001;
  cover c = {calloc((size_t)n, 1), 16, 0};
  assert_non_null(c.seen);
  dn_parallel_range(n, 16, cover_range, &c);
  for (int64_t i = 0; i < n; i++)
    if (atomic_load(&c.seen[i]) != 1) fail_msg("element %lld covered %d times", (long long)i, c.seen[i]);
  assert_int_equal(atomic_load(&c.bad_start), 0);
  memset(c.seen, 0, (size_t)n);
  dn_parallel_rows(1000, 1000, cover_range, &(cover){c.seen, 1, 0});
  for (int64_t i = 0; i < 1000; i++) assert_int_equal(atomic_load(&c.seen[i]), 1);
  free(c.seen);
}

/* The thread count is checked: 1..DN_MAX_THREADS, the message names the function. */
static void test_thread_count_checked(void **state) {
  (void)state;
  DN_EXPECT_ERROR(dn_set_num_threads(0), DN_EINVAL, "set_num_threads: thread count must be 1..1024 (got 0)");
  DN_EXPECT_ERROR(dn_set_num_threads(DN_MAX_THREADS + 1), DN_EINVAL, "set_num_threads: thread count must be 1..1024");
  DN_OK_OR_FAIL(dn_set_num_threads(3));
  assert_int_equal(dn_get_num_threads(), 3);
  DN_OK_OR_FAIL(dn_set_num_threads(2));
}

/* The verdict: solo only when every pair of windows (split, solo, solo,
   split, split, solo) ran faster solo, by more than the noise. */
static void test_solo_verdict(void **state) {
  (void)state;
  assert_true(dn_solo_verdict((double[]){100, 120, 121, 99, 101, 119}));
  assert_false(dn_solo_verdict((double[]){100, 120, 121, 99, 125, 119}));   /* the last pair ran faster split */
  assert_false(dn_solo_verdict((double[]){120, 100, 99, 121, 119, 101}));
  assert_false(dn_solo_verdict((double[]){100, 101, 101, 100, 100, 101}));  /* within the noise */
  assert_false(dn_solo_verdict((double[]){0, 0, 0, 0, 0, 0}));
  assert_false(dn_solo_verdict((double[]){100, NAN, NAN, 100, 100, NAN}));
}

static void busy_for(double s) {
  double until = seconds() + s;
  while (seconds() < until) {
  }
}

/* A loop whose split costs what `split_s` says per task, and whose single
   task costs `solo_s`: a stand-in for work whose best way the trial must find. */
typedef struct costs {
  double split_s, solo_s;
} costs;

static void costed_task(void *ctx, int t, int tasks) {
  const costs *c = ctx;
  (void)t;
  busy_for(tasks == 1 ? c->solo_s : c->split_s);
}

/* Runs the loop (a size that splits unless solo) until a trial gives the
   verdict `want` (the loop's threads then) or three trials have not; returns
   the threads the loop then gets. Three tries: a loaded machine (the suite
   runs in parallel) can stall the caller through a whole window. */
static int threads_after_trials(costs c, int want) {
  int64_t n = DN_SOLO_GRAIN / 2;
  assert_true(n >= DN_CONTENDED_GRAIN);   /* contention does not move it onto one thread */
  dn_pool_set_solo(-1);
  for (int tries = 0; tries < 3; tries++) {
    int before = dn_pool_solo_trials();
    double deadline = seconds() + 20;
    while (dn_pool_solo_trials() == before) {
      dn_parallel(dn_threads_for(n), costed_task, &c);
      if (seconds() > deadline) fail_msg("no trial ended within 20 s");
    }
    if (dn_threads_for(n) == want) break;
    dn_pool_set_solo(-1);   /* the next trial at once */
  }
  return dn_threads_for(n);
}

/* The trial keeps small work on one thread when that ran faster and splits
   it when that did (each case from a fresh start: trials are seconds apart).
   Whichever thread runs the tasks, the costs make one way faster. */
static void test_solo_trial_picks_the_faster_way(void **state) {
  (void)state;
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  costs solo_faster = {.split_s = 100e-6, .solo_s = 20e-6}, split_faster = {.split_s = 40e-6, .solo_s = 120e-6};
  assert_int_equal(threads_after_trials(solo_faster, 1), 1);
  assert_int_equal(threads_after_trials(split_faster, 2), 2);
  assert_int_equal(threads_after_trials(solo_faster, 1), 1);
  /* large loops split whatever the verdict */
  assert_int_equal(dn_threads_for(DN_SOLO_GRAIN), 2);
  dn_pool_set_solo(0);
  assert_int_equal(dn_threads_for(DN_SOLO_GRAIN / 2), 2);
  dn_pool_set_solo(-1);
}

/* Ops at sizes a verdict moves onto one thread (loops of 8K-256K elements,
   products of 0.3-4M multiply-adds), forward and backward. */
static void verdict_sized_ops(void) {
  dn_tensor *a = dn_test_random(21, 2, (int64_t[]){64, 600}), *b = dn_test_random(22, 2, (int64_t[]){600, 80});
  dn_tensor *x = dn_test_random(23, 4, (int64_t[]){4, 8, 40, 40});
  dn_tensor *s = NULL, *m = NULL, *n = NULL, *p = NULL, *y = NULL, *g = NULL, *d = NULL;
  dn_rng rng;
  dn_rng_seed(&rng, 3);
  DN_OK_OR_FAIL(dn_sum_dim(&s, a, 1, false));
  DN_OK_OR_FAIL(dn_mean_dim(&m, a, 0, false));
  DN_OK_OR_FAIL(dn_vector_norm_dim(&n, a, 2, 1, false));
  DN_OK_OR_FAIL(dn_matmul(&p, a, b));
  DN_OK_OR_FAIL(dn_dropout(&d, a, 0.5, &rng, DN_DROPOUT_INVERTED));
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d(&y, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  DN_OK_OR_FAIL(dn_tensor_ones(&g, DN_F32, 4, y->shape));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  dn_tensor *list[] = {a, b, x, s, m, n, p, y, g, d};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* A trial compares the rates of thread decisions, so the same work must
   make as many of them split as solo. */
static void test_decisions_do_not_depend_on_the_verdict(void **state) {
  (void)state;
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  uint64_t made[2];
  for (int solo = 0; solo < 2; solo++) {
    dn_pool_set_solo(solo);
    uint64_t before = dn_pool_solo_decisions();
    verdict_sized_ops();
    made[solo] = dn_pool_solo_decisions() - before;
  }
  dn_pool_set_solo(-1);
  assert_true(made[0] > 0);
  if (made[0] != made[1]) fail_msg("%llu decisions split, %llu solo", (unsigned long long)made[0],
                                   (unsigned long long)made[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_team_of_distinct_threads),
    cmocka_unit_test(test_sleeping_workers_wake),
    cmocka_unit_test(test_every_task_once),
    cmocka_unit_test(test_concurrent_callers),
    cmocka_unit_test(test_forked_child),
    cmocka_unit_test(test_one_thread_inline),
    cmocka_unit_test(test_split),
    cmocka_unit_test(test_range_cover),
    cmocka_unit_test(test_thread_count_checked),
    cmocka_unit_test(test_solo_verdict),
    cmocka_unit_test(test_solo_trial_picks_the_faster_way),
    cmocka_unit_test(test_decisions_do_not_depend_on_the_verdict),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
