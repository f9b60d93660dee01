/* The distributed layer (dist.c) in one process, without mpirun: MPI makes a
   world of size 1, where all-reduce (sum and mean) and broadcast leave the
   values as they were, through the same fused path as N ranks. The tests run
   in order, since MPI starts once per process: errors before init, init
   (twice), the collectives on lists (several tensors, empty ones, an empty
   list, any dtype for broadcast), bad input (which leaves the tensors as they
   were), then finalize (twice) and what fails after it. A build without MPI
   checks that every call says so. The values over 2 ranks are checked by
   tests/spec/distributed_spec.lua under mpirun. */
#include "testutil.h"

#include <math.h>
#include <string.h>

static bool bits_equal(const dn_tensor *a, const float *want, int64_t n) {
  return dn_tensor_numel(a) == n && (n == 0 || !memcmp(dn_tensor_data(a), want, (size_t)n * sizeof(float)));
}

static void test_without_mpi(void **state) {
  if (dn_dist_available()) skip();
  int v = 0;
  dn_tensor *t = dn_test_from(1, (int64_t[]){1}, (float[]){1});
  DN_EXPECT_ERROR(dn_dist_init(), DN_EUNSUPPORTED, "dist.init: built without MPI");
  DN_EXPECT_ERROR(dn_dist_rank(&v), DN_EUNSUPPORTED, "dist.rank: built without MPI");
  DN_EXPECT_ERROR(dn_dist_world_size(&v), DN_EUNSUPPORTED, "dist.world_size: built without MPI");
  DN_EXPECT_ERROR(dn_dist_all_reduce(&t, 1, DN_DIST_SUM), DN_EUNSUPPORTED, "dist.all_reduce: built without MPI");
  DN_EXPECT_ERROR(dn_dist_broadcast(&t, 1, 0), DN_EUNSUPPORTED, "dist.broadcast: built without MPI");
  DN_EXPECT_ERROR(dn_dist_barrier(), DN_EUNSUPPORTED, "dist.barrier: built without MPI");
  DN_EXPECT_ERROR(dn_dist_finalize(), DN_EUNSUPPORTED, "dist.finalize: built without MPI");
  DN_EXPECT_ERROR(dn_dist_set_timeout(5), DN_EUNSUPPORTED, "dist.set_timeout: built without MPI");
  assert_true(dn_dist_timeout() == DN_DIST_DEFAULT_TIMEOUT);
  assert_false(dn_dist_is_initialized());
  dn_tensor_release(t);
}

static void test_before_init(void **state) {
  if (!dn_dist_available()) skip();
  int v = 0;
  dn_tensor *t = dn_test_from(1, (int64_t[]){1}, (float[]){1});
  assert_false(dn_dist_is_initialized());
  DN_EXPECT_ERROR(dn_dist_rank(&v), DN_EINVAL, "dist.rank: not initialized");
  DN_EXPECT_ERROR(dn_dist_world_size(&v), DN_EINVAL, "dist.world_size: not initialized");
  DN_EXPECT_ERROR(dn_dist_all_reduce(&t, 1, DN_DIST_SUM), DN_EINVAL, "dist.all_reduce: not initialized");
  DN_EXPECT_ERROR(dn_dist_broadcast(&t, 1, 0), DN_EINVAL, "dist.broadcast: not initialized");
  DN_EXPECT_ERROR(dn_dist_barrier(), DN_EINVAL, "dist.barrier: not initialized");
  /* the timeout: set before init, checked */
  assert_true(dn_dist_timeout() == 1800.0);
  DN_EXPECT_ERROR(dn_dist_set_timeout(0), DN_EINVAL, "dist.set_timeout: seconds must be > 0 and at most 1e9 (got 0)");
  DN_EXPECT_ERROR(dn_dist_set_timeout(-1), DN_EINVAL, "dist.set_timeout: seconds must be > 0");
  DN_EXPECT_ERROR(dn_dist_set_timeout(NAN), DN_EINVAL, "dist.set_timeout: seconds must be > 0");
  DN_EXPECT_ERROR(dn_dist_set_timeout(INFINITY), DN_EINVAL, "dist.set_timeout: seconds must be > 0");
  DN_OK_OR_FAIL(dn_dist_set_timeout(0.25));
  assert_true(dn_dist_timeout() == 0.25);
  DN_OK_OR_FAIL(dn_dist_set_timeout(DN_DIST_DEFAULT_TIMEOUT));
  dn_tensor_release(t);
}

static void test_init_world_of_one(void **state) {
  if (!dn_dist_available()) skip();
  DN_OK_OR_FAIL(dn_dist_init());
  DN_OK_OR_FAIL(dn_dist_init());   /* idempotent */
  assert_true(dn_dist_is_initialized());
  int rank = -1, size = -1;
  DN_OK_OR_FAIL(dn_dist_rank(&rank));
  DN_OK_OR_FAIL(dn_dist_world_size(&size));
  assert_int_equal(rank, 0);
  assert_int_equal(size, 1);
  DN_OK_OR_FAIL(dn_dist_barrier());
}

static void test_all_reduce(void **state) {
  if (!dn_dist_available()) skip();
  dn_alloc_stats stats;
  dn_alloc_get_stats(&stats);
  size_t live = stats.live_bytes;   /* the fused buffers must be given back */
  const float va[6] = {1.5f, -2.25f, 3e-38f, 1e30f, -0.0f, 7};
  const float vb[1] = {0.1f};
  dn_tensor *a = dn_test_from(2, (int64_t[]){2, 3}, va);
  dn_tensor *b = dn_test_from(1, (int64_t[]){1}, vb);
  dn_tensor *empty = dn_test_from(2, (int64_t[]){0, 4}, NULL);
  dn_tensor *list[3] = {a, empty, b};
  uint32_t version = a->storage->version;
  for (int op = DN_DIST_SUM; op <= DN_DIST_MEAN; op++) {
    DN_OK_OR_FAIL(dn_dist_all_reduce(list, 3, (dn_dist_op)op));
    /* a world of one: the sum and the mean are the values themselves, to the bit (-0 stays -0) */
    assert_true(bits_equal(a, va, 6));
    assert_true(bits_equal(b, vb, 1));
    assert_int_equal(dn_tensor_numel(empty), 0);
  }
  assert_true(a->storage->version > version);   /* an in-place write, as autograd sees it */
  DN_OK_OR_FAIL(dn_dist_all_reduce(NULL, 0, DN_DIST_SUM));   /* the empty list */
  DN_OK_OR_FAIL(dn_dist_all_reduce(&empty, 1, DN_DIST_MEAN));
  /* a 0-dim tensor */
  dn_tensor *s = dn_test_from(0, NULL, (float[]){4});
  DN_OK_OR_FAIL(dn_dist_all_reduce(&s, 1, DN_DIST_MEAN));
  assert_true(dn_test_at(s, 0) == 4);
  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(empty);
  dn_tensor_release(s);
  dn_alloc_get_stats(&stats);
  assert_int_equal(stats.live_bytes, live);
}

static void test_broadcast(void **state) {
  if (!dn_dist_available()) skip();
  const float vf[3] = {1, 2, 3};
  dn_tensor *f = dn_test_from(1, (int64_t[]){3}, vf);
  dn_tensor *i, *u;
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&i, DN_I32, 1, (int64_t[]){2}, (double[]){-5, 6}));
  DN_OK_OR_FAIL(dn_tensor_from_doubles(&u, DN_U8, 1, (int64_t[]){1}, (double[]){200}));
  dn_tensor *list[3] = {f, i, u};
  DN_OK_OR_FAIL(dn_dist_broadcast(list, 3, 0));
  assert_true(bits_equal(f, vf, 3));
  assert_true(dn_test_at(i, 0) == -5 && dn_test_at(i, 1) == 6 && dn_test_at(u, 0) == 200);
  DN_OK_OR_FAIL(dn_dist_broadcast(NULL, 0, 0));
  DN_EXPECT_ERROR(dn_dist_broadcast(list, 3, 1), DN_ERANGE, "dist.broadcast: root 1 out of range for a world of 1");
  DN_EXPECT_ERROR(dn_dist_broadcast(list, 3, -1), DN_ERANGE, "dist.broadcast: root -1 out of range");
  dn_tensor_release(f);
  dn_tensor_release(i);
  dn_tensor_release(u);
}

static void test_bad_input(void **state) {
  if (!dn_dist_available()) skip();
  dn_tensor *a = dn_test_random(3, 2, (int64_t[]){3, 4});
  dn_tensor *before;
  DN_OK_OR_FAIL(dn_clone(&before, a));
  dn_tensor *tr = dn_test_noncontiguous(a);
  dn_tensor *i32;
  DN_OK_OR_FAIL(dn_to_dtype(&i32, a, DN_I32));
  dn_tensor *with_null[2] = {a, NULL};
  dn_tensor *with_int[2] = {a, i32};
  dn_tensor *with_view[2] = {a, tr};
  DN_EXPECT_ERROR(dn_dist_all_reduce(NULL, 1, DN_DIST_SUM), DN_EINVAL, "dist.all_reduce: tensors is NULL");
  DN_EXPECT_ERROR(dn_dist_all_reduce(&a, -1, DN_DIST_SUM), DN_EINVAL, "dist.all_reduce: count must be >= 0 (got -1)");
  DN_EXPECT_ERROR(dn_dist_all_reduce(with_null, 2, DN_DIST_SUM), DN_EINVAL, "dist.all_reduce: tensor 2 of 2 is NULL");
  DN_EXPECT_ERROR(dn_dist_all_reduce(with_int, 2, DN_DIST_SUM), DN_ETYPE,
                  "dist.all_reduce: tensor 2 of 2 is int32, expected float32");
  DN_EXPECT_ERROR(dn_dist_all_reduce(with_view, 2, DN_DIST_MEAN), DN_EINVAL,
                  "dist.all_reduce: tensor 2 of 2 is not contiguous");
  DN_EXPECT_ERROR(dn_dist_all_reduce(&a, 1, (dn_dist_op)7), DN_EINVAL, "dist.all_reduce: unknown op 7");
  DN_EXPECT_ERROR(dn_dist_broadcast(with_view, 2, 0), DN_EINVAL, "dist.broadcast: tensor 2 of 2 is not contiguous");
  DN_EXPECT_ERROR(dn_dist_broadcast(with_null, 2, 0), DN_EINVAL, "dist.broadcast: tensor 2 of 2 is NULL");
  DN_EXPECT_ERROR(dn_dist_broadcast(&a, -2, 0), DN_EINVAL, "dist.broadcast: count must be >= 0");
  DN_EXPECT_ERROR(dn_dist_rank(NULL), DN_EINVAL, "dist.rank: rank is NULL");
  DN_EXPECT_ERROR(dn_dist_world_size(NULL), DN_EINVAL, "dist.world_size: size is NULL");
  /* a rejected list is left as it was */
  dn_test_assert_close(a, before, 0);
  /* the layer still works after the errors */
  DN_OK_OR_FAIL(dn_dist_all_reduce(&a, 1, DN_DIST_SUM));
  dn_test_assert_close(a, before, 0);
  dn_tensor_release(a);
  dn_tensor_release(before);
  dn_tensor_release(tr);
  dn_tensor_release(i32);
}

/* The gradient reducer in a world of one: nothing is exchanged; gradients are scaled by the rank's weight,
   accumulate as without it, and every byte comes back. */
static void test_reducer_world_of_one(void **state) {
  if (!dn_dist_available()) skip();
  dn_alloc_stats before_stats;
  dn_alloc_get_stats(&before_stats);
  dn_tensor *w = dn_test_from(1, (int64_t[]){3}, (float[]){1, 2, 3}), *y, *g;
  DN_OK_OR_FAIL(dn_requires_grad_(w, true));
  dn_dist_reducer *r = NULL;
  DN_EXPECT_ERROR(dn_dist_reducer_new(&r, &w, 1, 0), DN_EINVAL, "DataParallel: bucket size must be >= 1 byte");
  DN_EXPECT_ERROR(dn_dist_reducer_new(&r, (dn_tensor *[]){w, w}, 2, 64), DN_EINVAL,
                  "DataParallel: parameter 2 is parameter 1 again");
  DN_OK_OR_FAIL(dn_dist_reducer_new(&r, &w, 1, 64));
  DN_EXPECT_ERROR(dn_dist_reducer_set_weights(r, (double[]){1, 1}, 2), DN_EINVAL, "expected one weight per rank (1)");
  DN_EXPECT_ERROR(dn_dist_reducer_set_weights(r, (double[]){-1}, 1), DN_EINVAL, "weight 1 must be finite and >= 0");
  /* weight 1: the gradient as backward made it (d sum(w*w) = 2w) */
  DN_OK_OR_FAIL(dn_mul(&y, w, w));
  DN_OK_OR_FAIL(dn_sum_all(&g, y));
  DN_OK_OR_FAIL(dn_dist_reducer_set_weights(r, (double[]){1}, 1));
  DN_OK_OR_FAIL(dn_backward(g, NULL, true));
  assert_true(bits_equal(w->grad, (float[]){2, 4, 6}, 3));
  /* weight 0.25, accumulated onto the previous gradient */
  DN_OK_OR_FAIL(dn_dist_reducer_set_weights(r, (double[]){0.25}, 1));
  DN_OK_OR_FAIL(dn_backward(g, NULL, true));
  assert_true(bits_equal(w->grad, (float[]){2.5f, 5, 7.5f}, 3));
  dn_dist_reducer_stats s;
  dn_dist_reducer_get_stats(r, &s);
  assert_int_equal(s.buckets, 1);
  assert_int_equal(s.elements, 3);
  assert_int_equal(s.steps, 0);   /* a world of one exchanges nothing */
  /* freed: the hook goes, gradients are local again */
  dn_dist_reducer_free(r);
  DN_OK_OR_FAIL(dn_backward(g, NULL, false));
  assert_true(bits_equal(w->grad, (float[]){4.5f, 9, 13.5f}, 3));
  dn_tensor_release(g);
  dn_tensor_release(y);
  dn_tensor_release(w);
  int64_t skip = -1, total = -1, counts[1] = {-1};
  DN_OK_OR_FAIL(dn_dist_batch_shard(5, &skip, &total, counts));
  assert_true(skip == 0 && total == 5 && counts[0] == 5);
  DN_EXPECT_ERROR(dn_dist_batch_shard(-1, &skip, &total, NULL), DN_EINVAL, "dist.batch_shard: count must be >= 0");
  dn_alloc_stats after_stats;
  dn_alloc_get_stats(&after_stats);
  assert_int_equal(after_stats.live_bytes, before_stats.live_bytes);
}

static void test_finalize(void **state) {
  if (!dn_dist_available()) skip();
  int v = 0;
  DN_OK_OR_FAIL(dn_dist_finalize());
  DN_OK_OR_FAIL(dn_dist_finalize());   /* idempotent */
  assert_false(dn_dist_is_initialized());
  DN_EXPECT_ERROR(dn_dist_init(), DN_EINVAL, "dist.init: cannot start again after dist.finalize");
  DN_EXPECT_ERROR(dn_dist_rank(&v), DN_EINVAL, "dist.rank: the distributed layer was finalized");
  DN_EXPECT_ERROR(dn_dist_barrier(), DN_EINVAL, "dist.barrier: the distributed layer was finalized");
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_without_mpi),
    cmocka_unit_test(test_before_init),
    cmocka_unit_test(test_init_world_of_one),
    cmocka_unit_test(test_all_reduce),
    cmocka_unit_test(test_broadcast),
    cmocka_unit_test(test_bad_input),
    cmocka_unit_test(test_reducer_world_of_one),
    cmocka_unit_test(test_finalize),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
