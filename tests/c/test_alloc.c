/* The caching allocator: alignment, reuse, and a training-like step that
   makes no system allocation once the first step has warmed the cache. */
#include "testutil.h"

#include "internal.h"
#include "pool.h"

#include <string.h>

static void test_alignment_and_reuse(void **state) {
  (void)state;
  dn_alloc_stats before, after;
  dn_alloc_get_stats(&before);
  void *p = dn_alloc(1000);
  assert_non_null(p);
  assert_true((uintptr_t)p % 64 == 0);
  memset(p, 0xab, 1000);
  dn_free(p);
  void *q = dn_alloc(990);   /* same size class: the cached block comes back */
  assert_ptr_equal(p, q);
  dn_free(q);
  dn_alloc_get_stats(&after);
  assert_true(after.cache_hits >= before.cache_hits + 1);
  assert_int_equal(after.live_bytes, before.live_bytes);
  void *z = dn_alloc(0);
  assert_non_null(z);
  dn_free(z);
  dn_free(NULL);
}

static void test_neighbouring_classes_do_not_share_blocks(void **state) {
  (void)state;
  /* a cached 64-byte block must not serve an 80-byte request */
  void *p = dn_alloc(64);
  dn_free(p);
  char *q = dn_alloc(80);
  assert_ptr_not_equal(p, q);
  memset(q, 1, 80);
  dn_free(q);
}

static void test_sizes_are_rounded_up_tightly(void **state) {
  (void)state;
  /* every size gets a block at least that large (writing it all is safe under ASan) */
  size_t sizes[] = {1, 63, 64, 65, 100, 1023, 1024, 1025, 4097, 100000, 3 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    dn_alloc_stats a, b;
    dn_alloc_get_stats(&a);
    char *p = dn_alloc(sizes[i]);
    assert_non_null(p);
    memset(p, 1, sizes[i]);
    dn_alloc_get_stats(&b);
    size_t got = b.live_bytes - a.live_bytes;
    assert_true(got >= sizes[i]);
    assert_true(got <= (sizes[i] < 64 ? 64 : sizes[i] + sizes[i] / 4 + 1));   /* at most 25% slack */
    dn_free(p);
  }
}

static void test_empty_cache_returns_memory(void **state) {
  (void)state;
  void *p = dn_alloc(1 << 20);
  dn_free(p);
  dn_alloc_stats s;
  dn_alloc_get_stats(&s);
  assert_true(s.cached_bytes >= (1 << 20));
  dn_alloc_empty_cache();
  dn_alloc_get_stats(&s);
  assert_int_equal(s.cached_bytes, 0);
}

/* One step of a two-layer MLP's forward plus the gradient-shaped work
   (matmuls with transposed views, broadcasting, reductions, batch gather). */
static void mlp_step(dn_tensor *data, dn_tensor *w1, dn_tensor *b1, dn_tensor *w2, dn_rng *rng) {
  dn_tensor *perm, *x, *h, *hb, *r, *o, *loss, *w2t, *g, *gw;
  DN_OK_OR_FAIL(dn_randperm(&perm, rng, 64, 0));
  DN_OK_OR_FAIL(dn_index_select(&x, data, 0, perm, 0));
  DN_OK_OR_FAIL(dn_matmul(&h, x, w1));          /* [64,128] */
  DN_OK_OR_FAIL(dn_add(&hb, h, b1));            /* bias broadcast */
  DN_OK_OR_FAIL(dn_unary(&r, DN_RELU, hb));
  DN_OK_OR_FAIL(dn_matmul(&o, r, w2));          /* [64,10] */
  DN_OK_OR_FAIL(dn_sum_all(&loss, o));
  DN_OK_OR_FAIL(dn_t(&w2t, w2));
  DN_OK_OR_FAIL(dn_matmul(&g, o, w2t));         /* [64,128], like a backward */
  dn_tensor *rt;
  DN_OK_OR_FAIL(dn_t(&rt, r));
  DN_OK_OR_FAIL(dn_matmul(&gw, rt, o));         /* [128,10] */
  dn_tensor *list[] = {perm, x, h, hb, r, o, loss, w2t, g, rt, gw};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_training_step_allocates_nothing_after_the_first(void **state) {
  (void)state;
  dn_tensor *data = dn_test_random(1, 2, (int64_t[]){256, 784});
  dn_tensor *w1 = dn_test_random(2, 2, (int64_t[]){784, 128});
  dn_tensor *b1 = dn_test_random(3, 1, (int64_t[]){128});
  dn_tensor *w2 = dn_test_random(4, 2, (int64_t[]){128, 10});
  dn_rng rng;
  dn_rng_seed(&rng, 7);
  mlp_step(data, w1, b1, w2, &rng);
  dn_alloc_stats warm, later;
  dn_alloc_get_stats(&warm);
  for (int step = 0; step < 20; step++) mlp_step(data, w1, b1, w2, &rng);
  dn_alloc_get_stats(&later);
  assert_int_equal(later.sys_allocs, warm.sys_allocs);
  assert_true(later.cache_hits > warm.cache_hits);
  assert_int_equal(later.live_bytes, warm.live_bytes);
  dn_tensor *list[] = {data, w1, b1, w2};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/*
** Contention (pool.c) and a trial's verdict (solo_trial.c) move small work
** onto one thread; the per-task scratch is still allocated for the team's
** count of threads, so that a call's allocations depend on its shapes
** alone: a step that runs contended after one that did not (or the reverse)
** finds its blocks cached. (It did not: CI's parallel suite once saw a batch
** norm's scratch of one part instead of two, a new size class, in a step
** after the first.) The second batch norm is small only for a solo verdict.
*/
static void contention_ops(int64_t extra) {
  int64_t c = 8 + extra, n = 64 + extra;
  dn_tensor *x = dn_test_random(11, 4, (int64_t[]){4, c, 16, 16}), *y = NULL, *g = NULL;
  dn_tensor *a = dn_test_random(12, 2, (int64_t[]){n, 200}), *p = NULL;
  dn_tensor *b = dn_test_random(13, 2, (int64_t[]){200, n + 40});
  dn_tensor *xd = dn_test_random(14, 4, (int64_t[]){2, 4 + extra, 16, 16}), *d = NULL;
  dn_tensor *w = dn_test_random(15, 4, (int64_t[]){4 + extra, 1, 3, 3});
  /* wide rows: the dropblock's scratch (a row per task) is a size class of its own */
  dn_tensor *xb = dn_test_random(16, 4, (int64_t[]){2, 2, 8, 500 + 7 * extra}), *blocks = NULL;
  dn_tensor *lanes = dn_test_random(17, 2, (int64_t[]){n, 256}), *m = NULL, *mi = NULL, *h = NULL;
  dn_rng rng;
  dn_rng_seed(&rng, 5);
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d(&y, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  DN_OK_OR_FAIL(dn_tensor_ones(&g, DN_F32, 4, y->shape));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  dn_tensor *xs = dn_test_random(18, 4, (int64_t[]){4, c, 40, 40}), *ys = NULL, *gs = NULL;
  assert_true(dn_tensor_numel(xs) > DN_CONTENDED_GRAIN && dn_tensor_numel(xs) < DN_SOLO_GRAIN);
  DN_OK_OR_FAIL(dn_requires_grad_(xs, true));
  DN_OK_OR_FAIL(dn_batch_norm_relu_max_pool2d(&ys, xs, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
  DN_OK_OR_FAIL(dn_tensor_ones(&gs, DN_F32, 4, ys->shape));
  DN_OK_OR_FAIL(dn_backward(ys, gs, false));
  DN_OK_OR_FAIL(dn_matmul(&p, a, b));
  DN_OK_OR_FAIL(dn_conv2d(&d, xd, w, NULL, (int64_t[]){1, 1}, (int64_t[]){1, 1}, (int64_t[]){1, 1}, 4 + extra));
  DN_OK_OR_FAIL(dn_dropblock2d(&blocks, xb, 0.2, 3, &rng));
  DN_OK_OR_FAIL(dn_median_dim(&m, &mi, lanes, 1, false, 0));
  DN_OK_OR_FAIL(dn_histc(&h, NULL, lanes, 10, -2, 2));
  dn_tensor *list[] = {x, y, g, xs, ys, gs, a, b, p, xd, w, d, xb, blocks, lanes, m, mi, h};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void set_contended(int on) { dn_pool_set_contended(on); }

/* As if a trial had found one thread faster for small work (on), or not. */
static void set_solo(int on) { dn_pool_set_solo(on); }

static void test_allocations_do_not_depend_on_contention(void **state) {
  (void)state;
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  void (*set[])(int) = {set_contended, set_solo};
  for (int way = 0; way < 2; way++)
    for (int on_first = 0; on_first < 2; on_first++) {
      int64_t extra = 1 + 2 * way + on_first;   /* shapes of their own for each order: nothing cached from before */
      set[way](on_first);
      contention_ops(extra);
      dn_alloc_stats warm, later;
      dn_alloc_get_stats(&warm);
      set[way](!on_first);
      contention_ops(extra);
      dn_alloc_get_stats(&later);
      assert_int_equal(later.sys_allocs, warm.sys_allocs);
      assert_int_equal(later.live_bytes, warm.live_bytes);
      set[way](false);
    }
  dn_pool_set_solo(-1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_alignment_and_reuse),
    cmocka_unit_test(test_neighbouring_classes_do_not_share_blocks),
    cmocka_unit_test(test_sizes_are_rounded_up_tightly),
    cmocka_unit_test(test_empty_cache_returns_memory),
    cmocka_unit_test(test_training_step_allocates_nothing_after_the_first),
    cmocka_unit_test(test_allocations_do_not_depend_on_contention),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
