/* Helpers shared by the reduction tests (test_reduce.c, test_reduce_engine.c):
   a naive reference of every reduction, checks of a whole result against it,
   input makers, and the gradient of one reduction case. Linked into those two
   programs only (tests/CMakeLists.txt). Include after testutil.h. */
#ifndef DN_TESTUTIL_REDUCE_H
#define DN_TESTUTIL_REDUCE_H

#include <stdbool.h>

typedef enum kind { SUM, MEAN, VAR, STD, MAX, MIN } kind;

void release_all(dn_tensor **list, size_t n);
#define RELEASE(...)                                                            \
  do {                                                                          \
    dn_tensor *list_[] = {__VA_ARGS__};                                         \
    release_all(list_, sizeof list_ / sizeof *list_);                           \
  } while (0)

/* The value of a 0-dim tensor. */
double scalar(const dn_tensor *t);
dn_tensor *ints_from(int ndim, const int64_t *shape, const int32_t *values);
/* Random int32 values in [-50, 50]. */
dn_tensor *random_ints(uint64_t seed, int ndim, const int64_t *shape);

/* Reference of one reduction over `count` values read with dn_test_at at
   positions first + k * step. Returns the value; *at gets the max/min index. */
double reference(const dn_tensor *a, int64_t first, int64_t step, int64_t count, kind k, int correction,
                 int64_t *at);
bool close_enough(double got, double want, double tol);
dn_dtype expected_dtype(kind k, dn_dtype in);
/* Runs a dim reduction and checks shape, dtype, values and indices. */
void check_dim(const dn_tensor *a, kind k, int dim, bool keepdim, int correction, int64_t base);
/* Every kind over every dim (positive and negative), with and without keepdim. */
void check_all_dims(const dn_tensor *a);
/* An all-element reduction checked against the reference. */
void check_all(const dn_tensor *a, kind k, int correction);
void check_every_all(const dn_tensor *a);

/* --- gradient cases ---------------------------------------------------------------- */

enum { OP_SUM, OP_MEAN, OP_VAR, OP_STD, OP_MAX, OP_MIN };
extern const char *const op_names[6];

typedef struct reduce_case {
  int op;
  bool all;
  int dim;
  bool keepdim;
  int correction;
} reduce_case;

/* The reduction of case ctx (a reduce_case) on in[0]: a dn_test_fn. */
dn_status reduce_op(dn_tensor **out, dn_tensor *const *in, const void *ctx);
/* Gradient of op on x for the output gradient g (x becomes a leaf that requires grad). */
dn_tensor *grad_of(const reduce_case *c, dn_tensor *x, const dn_tensor *g);

#endif
