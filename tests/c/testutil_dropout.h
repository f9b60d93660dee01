/* Helpers shared by the dropout tests (test_dropout.c, test_dropout_mask.c):
   the contract of dropout.h computed naively from Philox (decisions, scales,
   gaussian noise), generators at a given counter, inputs, and the six
   variants behind one call. Linked into those two programs only
   (tests/CMakeLists.txt). Include after testutil.h. */
#ifndef DN_TESTUTIL_DROPOUT_H
#define DN_TESTUTIL_DROPOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "dropnet/dropout.h"

#define STREAM 1
#define SIGMAS 6.0
/* elements of the large (parallel) cases */
#define BIG 1000000

/* --- reference: the contract of dropout.h, computed naively -------------------- */

uint32_t ref_threshold(double p);
/* The 16 random bits of decision k. */
uint16_t ref_bits(const dn_rng *state, int64_t k);
bool ref_keep(const dn_rng *state, int64_t k, double p);
float ref_scale(double p, dn_dropout_scaling scaling);
/* randn's value for element i, on stream 1 */
float ref_normal(const dn_rng *state, int64_t i);

/* --- helpers ------------------------------------------------------------------------ */

dn_rng make_rng(uint64_t seed, uint64_t offset);
dn_tensor *filled(int ndim, const int64_t *shape, double value);
/* values in [0.5, 2] with random signs: never 0, so a 0 output means dropped */
dn_tensor *nonzero_random(uint64_t seed, int ndim, const int64_t *shape);
/* t, now requiring grad. */
dn_tensor *leaf(dn_tensor *t);
bool bits_equal(const dn_tensor *a, const dn_tensor *b);
/* ceil(n / per) */
uint64_t blocks(int64_t n, int64_t per);

/* Variant 0 dropout, 1 dropout (test-time scaling), 2 channels, 3 locked,
   4 alpha, 5 gaussian. */
dn_status run_variant(int variant, dn_tensor **out, dn_tensor *x, double p, dn_rng *rng);
#define VARIANTS 6

#endif
