/* The caching allocator: alignment, reuse, and a training-like step that
   makes no system allocation once the first step has warmed the cache. */
#include "testutil.h"

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

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_alignment_and_reuse),
    cmocka_unit_test(test_neighbouring_classes_do_not_share_blocks),
    cmocka_unit_test(test_sizes_are_rounded_up_tightly),
    cmocka_unit_test(test_empty_cache_returns_memory),
    cmocka_unit_test(test_training_step_allocates_nothing_after_the_first),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
