/* Helpers shared by the element-wise tests (test_elementwise.c, test_unary.c,
   test_binary.c, test_clamp_where.c): double-precision references, checks of
   a whole result against them, and input makers for forward and gradient
   tests. Linked into those four programs only (tests/CMakeLists.txt).
   Include after testutil.h. */
#ifndef DN_TESTUTIL_ELEMENTWISE_H
#define DN_TESTUTIL_ELEMENTWISE_H

#include <stdbool.h>

#define ALL_BINOPS 13
#define ALL_UNOPS 8

/* --- references and checks ----------------------------------------------------- */

double ref_binary(dn_binop op, double x, double y);
double ref_unary(dn_unop op, double x);
/* Element of t at row-major position i of the broadcast shape (ndim, shape). */
double bcast_at(const dn_tensor *t, int ndim, const int64_t *shape, int64_t i);
/* float32 results within 1e-6 relative (absolute near 0); int32 exact; NaN matches NaN. */
void expect_close(double got, double want, dn_dtype dtype, const char *what, int64_t i);
void expect_shape(const dn_tensor *t, int ndim, const int64_t *shape);
/* Runs dn_binary (dn_unary) and checks every element against the reference. */
void check_binary(dn_binop op, const dn_tensor *a, const dn_tensor *b, dn_dtype want_dtype);
void check_unary(dn_unop op, const dn_tensor *a, dn_dtype want_dtype);

/* --- forward inputs ------------------------------------------------------------- */

dn_tensor *from_ints(int ndim, const int64_t *shape, const int32_t *values);
/* Random small integers in [-limit, limit]. */
dn_tensor *random_ints(uint64_t seed, int ndim, const int64_t *shape, int limit);
/* |t| + 0.1, so pow/log/sqrt have real results. */
dn_tensor *positive(uint64_t seed, int ndim, const int64_t *shape);
dn_tensor *scalar_f32(float v);

/* --- gradient inputs and checks --------------------------------------------------- */

/* Value ranges that keep finite differences away from kinks, poles and ties. */
typedef enum value_kind {
  ANY,              /* [-2, 2] */
  AWAY_FROM_ZERO,   /* |x| in [0.2, 2] */
  POSITIVE,         /* [0.3, 1.9] */
  LATTICE_A,        /* -1.5 + 0.6k: never within 0.3 of LATTICE_B (max/min ties, clamp bounds) */
  LATTICE_B         /* -1.2 + 0.6k */
} value_kind;

/* A float32 leaf of the given kind, contiguous or not, requiring grad or not. */
dn_tensor *input(uint64_t seed, int ndim, const int64_t *shape, value_kind kind, bool noncontiguous,
                 bool requires_grad);
void release_all(dn_tensor **list, int n);
/* Every input element perturbed by 1e-3; tolerance 1e-2, relative and absolute. */
void gradcheck(const char *label, dn_test_fn f, const void *ctx, int n, dn_tensor *const *in);
/* Exact values at the points where PyTorch defines the derivative by convention. */
void expect_grad(const dn_tensor *t, const float *want, int n);
/* A 1-D float32 leaf requiring grad. */
dn_tensor *leaf_of(int n, const float *values);
/* Back-propagates ones of y's shape. */
void backward_ones(dn_tensor *y);

#endif
