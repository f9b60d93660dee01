/* Helpers shared by the dropout tests: see testutil_dropout.h. */
#include "testutil.h"
#include "testutil_dropout.h"

#include <math.h>
#include <string.h>

/* --- reference: the contract of dropout.h, computed naively -------------------- */

uint32_t ref_threshold(double p) { return (uint32_t)llround(p * 65536.0); }

uint16_t ref_bits(const dn_rng *state, int64_t k) {
  uint32_t x[4];
  dn_philox4x32(state->seed, state->offset + (uint64_t)(k / 8), STREAM, x);
  uint32_t word = x[(k % 8) / 2];
  return (uint16_t)(k % 2 ? word >> 16 : word);
}

bool ref_keep(const dn_rng *state, int64_t k, double p) { return ref_bits(state, k) >= ref_threshold(p); }

float ref_scale(double p, dn_dropout_scaling scaling) {
  uint32_t t = ref_threshold(p);
  if (scaling == DN_DROPOUT_TEST_TIME) return 1.0f;
  return t >= 65536 ? 0.0f : (float)(65536.0 / (65536.0 - t));
}

/* randn's value for element i, on stream 1 */
float ref_normal(const dn_rng *state, int64_t i) {
  uint32_t x[4];
  dn_philox4x32(state->seed, state->offset + (uint64_t)(i / 4), STREAM, x);
  int pair = (int)(i % 4) / 2;
  double u1 = ((double)(x[2 * pair] >> 8) + 1.0) / 16777216.0;
  double u2 = (double)(x[2 * pair + 1] >> 8) / 16777216.0;
  double r = sqrt(-2.0 * log(u1)), a = 2.0 * 3.14159265358979323846 * u2;
  return (float)(i % 2 == 0 ? r * cos(a) : r * sin(a));
}

/* --- helpers ------------------------------------------------------------------------ */

dn_rng make_rng(uint64_t seed, uint64_t offset) {
  dn_rng r;
  dn_rng_seed(&r, seed);
  r.offset = offset;
  return r;
}

dn_tensor *filled(int ndim, const int64_t *shape, double value) {
  dn_tensor *t;
  DN_OK_OR_FAIL(dn_tensor_full(&t, DN_F32, ndim, shape, value));
  return t;
}

/* values in [0.5, 2] with random signs: never 0, so a 0 output means dropped */
dn_tensor *nonzero_random(uint64_t seed, int ndim, const int64_t *shape) {
  dn_tensor *t = dn_test_random(seed, ndim, shape);
  float *d = dn_tensor_data(t);
  for (int64_t i = 0; i < dn_tensor_numel(t); i++) d[i] = copysignf(0.5f + 0.75f * fabsf(d[i]), d[i]);
  return t;
}

dn_tensor *leaf(dn_tensor *t) {
  DN_OK_OR_FAIL(dn_requires_grad_(t, true));
  return t;
}

bool bits_equal(const dn_tensor *a, const dn_tensor *b) {
  if (!dn_same_shape(a, b)) return false;
  for (int64_t i = 0; i < dn_tensor_numel(a); i++) {
    float x = (float)dn_test_at(a, i), y = (float)dn_test_at(b, i);
    if (memcmp(&x, &y, sizeof x)) return false;
  }
  return true;
}

uint64_t blocks(int64_t n, int64_t per) { return (uint64_t)((n + per - 1) / per); }

dn_status run_variant(int variant, dn_tensor **out, dn_tensor *x, double p, dn_rng *rng) {
  switch (variant) {
    case 0: return dn_dropout(out, x, p, rng, DN_DROPOUT_INVERTED);
    case 1: return dn_dropout(out, x, p, rng, DN_DROPOUT_TEST_TIME);
    case 2: return dn_dropout_channels(out, x, p, rng, DN_DROPOUT_INVERTED);
    case 3: return dn_dropout_locked(out, x, p, rng, DN_DROPOUT_INVERTED);
    case 4: return dn_alpha_dropout(out, x, p, rng);
    default: return dn_gaussian_dropout(out, x, p, rng);
  }
}
