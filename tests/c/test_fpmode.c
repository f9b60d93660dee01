/*
** Denormals flushed to zero (FTZ + DAZ): on by default in the calling thread
** during runtime calls and in every worker of the pool while it works for
** such a call, off when switched off, the caller's own mode back after every
** call. MXCSR is read directly inside the pool's tasks. Also run with DROPNET_SGEMM=openblas (tests/CMakeLists.txt),
** so OpenBLAS's products are checked as well as dropnet's own sgemm.
*/
#define _GNU_SOURCE
#include "testutil.h"

#include "pool.h"

#include <float.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <sys/single_threaded.h>
#endif

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#else
#define HAVE_MXCSR 0
#endif

#define FTZ_DAZ 0x8040u    /* MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero) */
#define EXCEPTION_FLAGS 0x3fu

static unsigned csr(void) {
#if HAVE_MXCSR
  return _mm_getcsr();
#else
  return 0;
#endif
}

static void set_csr(unsigned v) {
#if HAVE_MXCSR
  _mm_setcsr(v);
#else
  (void)v;
#endif
}

static int setup(void **state) {
  if (!HAVE_MXCSR) return 0;
  dn_set_flush_denormal(true);
  return dn_test_reset_modes(state);
}

static int teardown(void **state) {
  (void)state;
  dn_set_flush_denormal(true);
  return 0;
}

/* Each task records its thread's FTZ/DAZ bits, then waits until all tasks
   have started: they can only all finish on n threads at once. */
typedef struct probe {
  atomic_int arrived;
  unsigned bits[8];
  pid_t tid[8];
  bool timed_out;
} probe;

static void probe_task(void *ctx, int t, int tasks) {
  probe *p = ctx;
  p->bits[t] = csr() & FTZ_DAZ;
  p->tid[t] = gettid();
  atomic_fetch_add(&p->arrived, 1);
  time_t deadline = time(NULL) + 10;
  while (atomic_load(&p->arrived) < tasks && !(p->timed_out = time(NULL) > deadline)) sched_yield();
}

/* The bits every worker of an n-thread team computes with for a runtime
   call in the current mode (dn_fpmode_enter is what each entry point does). */
static void assert_workers(int n, unsigned want, const char *when) {
  probe p = {0};
  DN_OK_OR_FAIL(dn_set_num_threads(n));
  unsigned saved = dn_fpmode_enter();
  dn_parallel(n, probe_task, &p);
  dn_fpmode_leave(saved);
  assert_false(p.timed_out);
  for (int t = 0; t < n; t++) {
    if (p.bits[t] != want) fail_msg("%s: task %d of %d has FTZ/DAZ bits %#x, expected %#x", when, t, n, p.bits[t], want);
    for (int u = 0; u < t; u++)
      if (p.tid[t] == p.tid[u]) fail_msg("%s: tasks %d and %d ran on one thread", when, u, t);
  }
  if ((csr() & FTZ_DAZ) != 0) fail_msg("%s: the calling thread has FTZ/DAZ bits %#x after the call", when, csr() & FTZ_DAZ);
}

static dn_tensor *full(int64_t n, float value) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_new(&t, DN_F32, 1, &n));
  float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < n; i++) d[i] = value;
  return t;
}

/* x * 1 over n elements: threads = n / 32768 up to the thread count. */
static void multiply_by_one(int64_t n) {
  dn_tensor *x = full(n, 1.0f), *y;
  DN_OK_OR_FAIL(dn_binary_scalar(&y, DN_MUL, x, 1.0, false));
  dn_tensor_release(x);
  dn_tensor_release(y);
}

/* Runs first, before anything sets a mode or a thread count: a small call
   creates no thread, and the workers work in the mode. */
static void test_default_is_on(void **state) {
  (void)state;
  if (!HAVE_MXCSR) {
    assert_false(dn_get_flush_denormal());
    assert_false(dn_set_flush_denormal(true));
    skip();
  }
  assert_true(dn_get_flush_denormal());
  multiply_by_one(10);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  assert_true(__libc_single_threaded);
#endif
  assert_workers(2, FTZ_DAZ, "by default");
}

/* With 2 and 3 threads: every worker in the mode, and out of it when switched off. */
static void test_every_worker(void **state) {
  (void)state;
  if (!HAVE_MXCSR) skip();
  for (int n = 2; n <= 3; n++) {
    multiply_by_one(n * 32768);
    assert_workers(n, FTZ_DAZ, "on");
    dn_set_flush_denormal(false);
    assert_workers(n, 0, "switched off");
    dn_set_flush_denormal(true);
    assert_workers(n, FTZ_DAZ, "switched on again");
  }
  /* a worker keeps no mode of its own: one that last worked in the mode
     works without it for a caller whose mode is off */
  assert_workers(3, FTZ_DAZ, "3 threads");
  dn_set_flush_denormal(false);
  assert_workers(2, 0, "3 -> 2 threads, switched off");
  dn_set_flush_denormal(true);
}

/* The calling thread: in the mode between dn_fpmode_enter and _leave, its own bits after. */
static void test_calling_thread(void **state) {
  (void)state;
  if (!HAVE_MXCSR) skip();
  unsigned before = csr();
  assert_int_equal(before & FTZ_DAZ, 0);
  unsigned saved = dn_fpmode_enter();
  assert_int_equal(csr() & FTZ_DAZ, FTZ_DAZ);
  unsigned inner = dn_fpmode_enter();   /* pairs nest */
  dn_fpmode_leave(inner);
  assert_int_equal(csr() & FTZ_DAZ, FTZ_DAZ);
  dn_fpmode_leave(saved);
  assert_int_equal(csr(), before);

  /* switched off, the runtime clears the bits a caller set, and gives them back */
  dn_set_flush_denormal(false);
  set_csr(before | FTZ_DAZ);
  saved = dn_fpmode_enter();
  assert_int_equal(csr() & FTZ_DAZ, 0);
  dn_fpmode_leave(saved);
  assert_int_equal(csr() & FTZ_DAZ, FTZ_DAZ);
  multiply_by_one(100);
  assert_int_equal(csr() & ~EXCEPTION_FLAGS, (before | FTZ_DAZ) & ~EXCEPTION_FLAGS);
  set_csr(before);
  dn_set_flush_denormal(true);

  /* a runtime call, failing or not, leaves the caller's mode as it was */
  multiply_by_one(100);
  assert_int_equal(csr() & ~EXCEPTION_FLAGS, before & ~EXCEPTION_FLAGS);
  dn_tensor *a = full(3, 1.0f), *b = full(4, 1.0f), *c = NULL;
  DN_EXPECT_ERROR(dn_binary(&c, DN_ADD, a, b), DN_ESHAPE, "add");
  assert_int_equal(csr() & ~EXCEPTION_FLAGS, before & ~EXCEPTION_FLAGS);
  dn_tensor_release(a);
  dn_tensor_release(b);
  set_csr(before);
}

/* Every element of t equals want (bit for bit, as floats compare). */
static void assert_all(const dn_tensor *t, float want, const char *what) {
  const float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(t); i++)
    if (!(d[i] == want)) fail_msg("%s: element %lld is %g, expected %g", what, (long long)i, (double)d[i], (double)want);
}

/* Denormal inputs: x * 1 is 0 with the flush on, x itself with it off; small (the
   calling thread alone) and large (every thread) tensors. */
static void test_elementwise_and_reduction(void **state) {
  (void)state;
  if (!HAVE_MXCSR) skip();
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  const float tiny = ldexpf(1.0f, -140);   /* a denormal: below FLT_MIN = 2^-126 */
  int64_t sizes[2] = {7, 200000};
  for (int k = 0; k < 2; k++) {
    dn_tensor *x = full(sizes[k], tiny), *y, *s;
    for (int on = 1; on >= 0; on--) {
      dn_set_flush_denormal(on);
      DN_OK_OR_FAIL(dn_binary_scalar(&y, DN_MUL, x, 1.0, false));
      assert_all(y, on ? 0.0f : tiny, on ? "x * 1, flush on" : "x * 1, flush off");
      dn_tensor_release(y);
      DN_OK_OR_FAIL(dn_sum_all(&s, x));
      float want = on ? 0.0f : (float)sizes[k] * tiny;   /* exact: 200000 * 2^-140 < 2^-122 is a normal float */
      assert_all(s, want, on ? "sum, flush on" : "sum, flush off");
      dn_tensor_release(s);
    }
    dn_tensor_release(x);
  }
  dn_set_flush_denormal(true);
}

/* Products of 2^-70 * 2^-70 = 2^-140 are denormal; 256 of them add up to 2^-132,
   still denormal and exact. With FTZ each product is 0: every output is 0. */
static void test_matmul(void **state) {
  (void)state;
  if (!HAVE_MXCSR) skip();
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  const int64_t shape[2] = {256, 256};
  dn_tensor *a, *c;
  DN_OK_OR_FAIL(dn_tensor_full(&a, DN_F32, 2, shape, ldexp(1.0, -70)));
  for (int on = 1; on >= 0; on--) {
    dn_set_flush_denormal(on);
    DN_OK_OR_FAIL(dn_matmul(&c, a, a));
    assert_all(c, on ? 0.0f : ldexpf(1.0f, -132), on ? "matmul, flush on" : "matmul, flush off");
    dn_tensor_release(c);
  }
  dn_tensor_release(a);
  dn_set_flush_denormal(true);
}

/* Every element of t is 0 or a normal float: no denormal. */
static void assert_no_denormal(const dn_tensor *t, const char *what) {
  const float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(t); i++)
    if (d[i] != 0 && fabsf(d[i]) < FLT_MIN) fail_msg("%s: element %lld is a denormal, %g", what, (long long)i, (double)d[i]);
}

/*
** Optimizer state that decays with zero gradients (factor 0.5 per step here,
** from 2^-120: below FLT_MIN = 2^-126 after 7 steps) becomes 0, not a
** denormal, with the flush on and also with it off (optim.c flushes it
** itself); the parameters are the same bits either way.
*/
static void test_optimizer_state_never_denormal(void **state) {
  (void)state;
  if (!HAVE_MXCSR) skip();
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  int64_t n = 100000;
  dn_tensor *params[2][3];
  for (int on = 1; on >= 0; on--) {
    dn_set_flush_denormal(on);
    const char *mode = on ? "flush on" : "flush off";
    dn_tensor *g = full(n, 0.0f);
    dn_tensor *p = full(n, 1.0f), *buf = full(n, ldexpf(1.0f, -120));
    dn_sgd_options sgd = {.lr = 0.1, .momentum = 0.5};
    dn_tensor *pa = full(n, 1.0f), *m = full(n, ldexpf(1.0f, -120)), *v = full(n, ldexpf(1.0f, -100));
    dn_adam_options adam = {.lr = 0.1, .beta1 = 0.5, .beta2 = 0.5, .eps = 1e-8};
    dn_tensor *pr = full(n, 1.0f), *sq = full(n, ldexpf(1.0f, -120)), *rbuf = full(n, ldexpf(1.0f, -120));
    dn_rmsprop_options rms = {.lr = 0.1, .alpha = 0.5, .eps = 1e-8, .momentum = 0.5};
    for (int step = 1; step <= 40; step++) {
      DN_OK_OR_FAIL(dn_sgd_step(p, g, buf, &sgd, false));
      DN_OK_OR_FAIL(dn_adam_step(pa, g, m, v, step, &adam));
      DN_OK_OR_FAIL(dn_rmsprop_step(pr, g, sq, rbuf, NULL, &rms));
      assert_no_denormal(buf, mode);
      assert_no_denormal(m, mode);
      assert_no_denormal(v, mode);
      assert_no_denormal(sq, mode);
      assert_no_denormal(rbuf, mode);
    }
    assert_all(buf, 0.0f, "sgd momentum");
    assert_all(m, 0.0f, "adam exp_avg");
    assert_all(v, 0.0f, "adam exp_avg_sq");
    params[on][0] = p, params[on][1] = pa, params[on][2] = pr;
    dn_tensor *state_tensors[] = {g, buf, m, v, sq, rbuf};
    for (size_t k = 0; k < sizeof state_tensors / sizeof *state_tensors; k++) dn_tensor_release(state_tensors[k]);
  }
  for (int k = 0; k < 3; k++) {
    assert_memory_equal(dn_tensor_data(params[0][k]), dn_tensor_data(params[1][k]), (size_t)n * sizeof(float));
    dn_tensor_release(params[0][k]);
    dn_tensor_release(params[1][k]);
  }
  dn_set_flush_denormal(true);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown(test_default_is_on, teardown),
    cmocka_unit_test_setup_teardown(test_every_worker, setup, teardown),
    cmocka_unit_test_setup_teardown(test_calling_thread, setup, teardown),
    cmocka_unit_test_setup_teardown(test_elementwise_and_reduction, setup, teardown),
    cmocka_unit_test_setup_teardown(test_matmul, setup, teardown),
    cmocka_unit_test_setup_teardown(test_optimizer_state_never_denormal, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
