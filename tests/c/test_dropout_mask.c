/* The dropout family's random kernels (dropout_mask.c, the reproducibility
   contract of dropout.h) against a naive reference built on Philox: every
   decision and scale for sizes and counter offsets that wrap, the kept
   fraction and the mean with ~6-sigma bounds, masks that differ between
   steps and generators and repeat for a seed or a saved state, dropout's
   own Philox stream, the same bits for 1 and 2 threads (every variant,
   forward and backward), and dn_dropout_mask. */
#include "testutil.h"
#include "testutil_dropout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dropnet/dropout.h"
#include "graph.h"

/* --- the contract ------------------------------------------------------------------------- */

static void test_dropout_follows_contract(void **state) {
  (void)state;
  int64_t sizes[] = {1, 7, 8, 9, 127, 128, 129, 1000, 40000 /* parallel */};
  /* offsets where the block counter's low word and the whole counter wrap */
  uint64_t offsets[] = {0, 5, 0xFFFFFFF9ull, UINT64_MAX - 20};
  double ps[] = {0.3, 0.5, 0.999};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
    for (size_t o = 0; o < sizeof offsets / sizeof *offsets; o++)
      for (size_t q = 0; q < sizeof ps / sizeof *ps; q++)
        for (int scaling = 0; scaling < 2; scaling++) {
          dn_rng rng = make_rng(0x0123456789ABCDEFull + s, offsets[o]), before = rng;
          dn_tensor *x = nonzero_random(s + 1, 1, &sizes[s]), *y;
          DN_OK_OR_FAIL(dn_dropout(&y, x, ps[q], &rng, (dn_dropout_scaling)scaling));
          assert_true(rng.offset == before.offset + blocks(sizes[s], 8));
          float scale = ref_scale(ps[q], (dn_dropout_scaling)scaling);
          const float *xd = dn_tensor_data(x), *yd = dn_tensor_data(y);
          for (int64_t i = 0; i < sizes[s]; i++) {
            float want = ref_keep(&before, i, ps[q]) ? xd[i] * scale : 0.0f;
            if (memcmp(&yd[i], &want, sizeof want))
              fail_msg("n=%lld offset=%llu p=%g [%lld]: %.9g, expected %.9g", (long long)sizes[s],
                       (unsigned long long)offsets[o], ps[q], (long long)i, yd[i], want);
          }
          dn_tensor_release(x);
          dn_tensor_release(y);
        }
}

/* --- statistics ------------------------------------------------------------------------------ */

static void test_kept_fraction(void **state) {
  (void)state;
  int64_t n = BIG;
  dn_tensor *x = filled(1, &n, 1.0);
  dn_rng rng = make_rng(2024, 0);
  double ps[] = {0.1, 0.5, 0.9};
  for (size_t q = 0; q < 3; q++) {   /* p changes between calls on one generator, like a schedule */
    double keep = 1.0 - ref_threshold(ps[q]) / 65536.0;
    dn_tensor *y;
    DN_OK_OR_FAIL(dn_dropout(&y, x, ps[q], &rng, DN_DROPOUT_INVERTED));
    const float *d = dn_tensor_data(y);
    int64_t kept = 0, pairs = 0, across = 0;
    for (int64_t i = 0; i < n; i++) kept += d[i] != 0;
    /* the two halves of a word and neighbouring blocks must be independent */
    for (int64_t i = 0; i + 1 < n; i += 2) pairs += d[i] != 0 && d[i + 1] != 0;
    for (int64_t i = 7; i + 1 < n; i += 8) across += d[i] != 0 && d[i + 1] != 0;
    double sd = sqrt(n * keep * (1 - keep));
    if (fabs(kept - n * keep) > SIGMAS * sd)
      fail_msg("p=%g: kept %lld of %lld, expected %.0f +- %.0f", ps[q], (long long)kept, (long long)n, n * keep,
               SIGMAS * sd);
    double both = keep * keep, m2 = n / 2.0, m8 = n / 8.0;
    assert_true(fabs(pairs - m2 * both) <= SIGMAS * sqrt(m2 * both * (1 - both)));
    assert_true(fabs(across - m8 * both) <= SIGMAS * sqrt(m8 * both * (1 - both)));
    dn_tensor_release(y);
  }
  dn_tensor_release(x);
}

static void test_mean_preserved(void **state) {
  (void)state;
  int64_t n = BIG;
  dn_tensor *x = dn_test_random(5, 1, &n);
  dn_rng rng = make_rng(77, 0);
  double ps[] = {0.1, 0.5, 0.9};
  for (size_t q = 0; q < 3; q++) {
    dn_tensor *y;
    DN_OK_OR_FAIL(dn_dropout(&y, x, ps[q], &rng, DN_DROPOUT_INVERTED));
    const float *xd = dn_tensor_data(x), *yd = dn_tensor_data(y);
    double p = ref_threshold(ps[q]) / 65536.0, diff = 0, var = 0;
    for (int64_t i = 0; i < n; i++) {
      diff += (double)yd[i] - xd[i];
      var += (double)xd[i] * xd[i] * p / (1 - p);   /* Var(y_i) = x_i^2 p/(1-p) */
    }
    if (fabs(diff) > SIGMAS * sqrt(var)) fail_msg("p=%g: sum(y - x) = %g, bound %g", ps[q], diff, SIGMAS * sqrt(var));
    dn_tensor_release(y);
  }
  dn_tensor_release(x);
}

/* --- reproducibility ----------------------------------------------------------------------------- */

static void test_masks_differ_and_repeat(void **state) {
  (void)state;
  int64_t n = 8192;
  dn_tensor *x = filled(1, &n, 1.0), *y1, *y2, *y3, *y4;
  dn_rng a = make_rng(100, 0), b = make_rng(101, 0), a2 = make_rng(100, 0);
  DN_OK_OR_FAIL(dn_dropout(&y1, x, 0.5, &a, DN_DROPOUT_INVERTED));   /* step 1 */
  DN_OK_OR_FAIL(dn_dropout(&y2, x, 0.5, &a, DN_DROPOUT_INVERTED));   /* step 2 (or the next layer) */
  DN_OK_OR_FAIL(dn_dropout(&y3, x, 0.5, &b, DN_DROPOUT_INVERTED));   /* another generator */
  DN_OK_OR_FAIL(dn_dropout(&y4, x, 0.5, &a2, DN_DROPOUT_INVERTED));  /* the same seed again */
  assert_true(bits_equal(y1, y4));
  const dn_tensor *others[2] = {y2, y3};
  for (int o = 0; o < 2; o++) {
    int64_t agree = 0;
    for (int64_t i = 0; i < n; i++) agree += (dn_test_at(y1, i) != 0) == (dn_test_at(others[o], i) != 0);
    /* independent masks agree on half the positions */
    assert_true(fabs(agree - n / 2.0) <= SIGMAS * sqrt(n / 4.0));
  }
  /* dropout's stream is not rand's: the same counters give other bits */
  dn_rng r = make_rng(100, 0);
  dn_tensor *u;
  DN_OK_OR_FAIL(dn_tensor_rand(&u, &r, 1, (int64_t[]){4}));
  uint32_t words[4];
  dn_philox4x32(100, 0, 0, words);
  assert_true((float)dn_test_at(u, 0) == (float)((words[0] >> 8) * 0x1p-24));   /* stream 0 */
  int differ = 0;
  for (int64_t k = 0; k < 8; k++) differ += ref_bits(&(dn_rng){.seed = 100}, k) != (uint16_t)(words[k / 2] >> (16 * (k % 2)));
  assert_true(differ >= 6);
  dn_tensor *list[] = {x, y1, y2, y3, y4, u};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

static void test_state_save_restore(void **state) {
  (void)state;
  int64_t n = 100000;
  dn_tensor *x = dn_test_random(1, 1, &n), *first, *second, *again;
  dn_rng rng = make_rng(9, 0);
  DN_OK_OR_FAIL(dn_dropout(&first, x, 0.5, &rng, DN_DROPOUT_INVERTED));
  dn_rng saved = rng;   /* a generator's state is its value */
  DN_OK_OR_FAIL(dn_dropout(&second, x, 0.5, &rng, DN_DROPOUT_INVERTED));
  rng = saved;
  DN_OK_OR_FAIL(dn_dropout(&again, x, 0.5, &rng, DN_DROPOUT_INVERTED));
  assert_true(bits_equal(second, again));
  assert_false(bits_equal(first, second));
  dn_tensor *list[] = {x, first, second, again};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++) dn_tensor_release(list[i]);
}

/* outputs and input gradients of every variant with the current thread count */
static void run_all(dn_tensor **outs, dn_tensor **grads) {
  int64_t n = BIG + 37, shape4[4] = {8, 16, 64, 65}, shape3[3] = {9, 32, 4000};
  dn_tensor *inputs[VARIANTS];
  for (int v = 0; v < VARIANTS; v++) {
    if (v == 2) inputs[v] = dn_test_random(v, 4, shape4);
    else if (v == 3) inputs[v] = dn_test_random(v, 3, shape3);
    else inputs[v] = dn_test_random(v, 1, &n);
    leaf(inputs[v]);
    dn_rng rng = make_rng(1000 + v, 0xFFFFFFF0ull);
    DN_OK_OR_FAIL(run_variant(v, &outs[v], inputs[v], 0.37, &rng));
    dn_tensor *g = dn_test_random(50 + v, outs[v]->ndim, outs[v]->shape);
    DN_OK_OR_FAIL(dn_backward(outs[v], g, false));
    grads[v] = dn_tensor_retain(inputs[v]->grad);
    dn_tensor_release(g);
    dn_tensor_release(inputs[v]);
  }
  /* dropconnect with a weight large enough for a parallel mask */
  dn_tensor *x = leaf(dn_test_random(7, 2, (int64_t[]){16, 512})), *w = leaf(dn_test_random(8, 2, (int64_t[]){256, 512}));
  dn_rng rng = make_rng(77, 0);
  DN_OK_OR_FAIL(dn_dropconnect_linear(&outs[VARIANTS], x, w, NULL, 0.5, &rng));
  dn_tensor *g = dn_test_random(9, 2, (int64_t[]){16, 256});
  DN_OK_OR_FAIL(dn_backward(outs[VARIANTS], g, false));
  grads[VARIANTS] = dn_tensor_retain(w->grad);
  dn_tensor_release(g);
  dn_tensor_release(x);
  dn_tensor_release(w);
}

static void test_threads_bit_identical(void **state) {
  (void)state;
  dn_tensor *outs1[VARIANTS + 1], *grads1[VARIANTS + 1], *outs2[VARIANTS + 1], *grads2[VARIANTS + 1];
  int threads = dn_get_num_threads();
  DN_OK_OR_FAIL(dn_set_num_threads(1));
  run_all(outs1, grads1);
  DN_OK_OR_FAIL(dn_set_num_threads(2));
  run_all(outs2, grads2);
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
  for (int v = 0; v <= VARIANTS; v++) {
    if (!bits_equal(outs1[v], outs2[v])) fail_msg("variant %d: outputs differ between 1 and 2 threads", v);
    if (!bits_equal(grads1[v], grads2[v])) fail_msg("variant %d: gradients differ between 1 and 2 threads", v);
    dn_tensor_release(outs1[v]);
    dn_tensor_release(outs2[v]);
    dn_tensor_release(grads1[v]);
    dn_tensor_release(grads2[v]);
  }
}

/* --- inspection: dn_dropout_mask ------------------------------------------------------------------ */

static void test_dropout_mask(void **state) {
  (void)state;
  int64_t shape[2] = {129, 77};
  dn_tensor *x = nonzero_random(1, 2, shape), *y, *mask;
  double ps[] = {0.0, 0.3, 0.5, 1.0};
  for (int q = 0; q < 4; q++) {
    dn_rng rng = make_rng(4, 0xFFFFFFFEull), before = rng;
    DN_OK_OR_FAIL(dn_dropout_mask(&mask, &rng, 2, shape, ps[q]));
    assert_true(rng.offset == before.offset && rng.seed == before.seed);
    assert_int_equal(mask->dtype, DN_U8);
    assert_int_equal(mask->ndim, 2);
    DN_OK_OR_FAIL(dn_dropout(&y, x, ps[q], &rng, DN_DROPOUT_INVERTED));
    for (int64_t i = 0; i < 129 * 77; i++) {
      assert_true(dn_test_at(mask, i) == (dn_test_at(y, i) != 0));
      if (ps[q] > 0) assert_true(dn_test_at(mask, i) == ref_keep(&before, i, ps[q]));
    }
    dn_tensor_release(y);
    dn_tensor_release(mask);
  }
  /* a large one goes parallel; 0-dim and empty shapes */
  dn_rng rng = make_rng(5, 0);
  int64_t n = BIG;
  DN_OK_OR_FAIL(dn_dropout_mask(&mask, &rng, 1, &n, 0.5));
  for (int64_t i = 0; i < n; i += 997) assert_true(dn_test_at(mask, i) == ref_keep(&rng, i, 0.5));
  dn_tensor_release(mask);
  DN_OK_OR_FAIL(dn_dropout_mask(&mask, &rng, 0, NULL, 0.5));
  assert_int_equal(mask->ndim, 0);
  dn_tensor_release(mask);
  DN_OK_OR_FAIL(dn_dropout_mask(&mask, &rng, 2, (int64_t[]){0, 5}, 0.5));
  assert_int_equal(dn_tensor_numel(mask), 0);
  dn_tensor_release(mask);
  dn_tensor_release(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_dropout_follows_contract),
    cmocka_unit_test(test_kept_fraction),
    cmocka_unit_test(test_mean_preserved),
    cmocka_unit_test(test_masks_differ_and_repeat),
    cmocka_unit_test(test_state_save_restore),
    cmocka_unit_test(test_threads_bit_identical),
    cmocka_unit_test(test_dropout_mask),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
