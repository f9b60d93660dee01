/* Helpers for the cmocka tests. Include after cmocka.h's prerequisites. */
#ifndef DN_TESTUTIL_H
#define DN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dropnet/dropnet.h"

/* Asserts st == DN_OK, printing the runtime's message otherwise. */
#define DN_OK_OR_FAIL(call)                                                        \
  do {                                                                             \
    dn_status st_ = (call);                                                        \
    if (st_ != DN_OK) fail_msg("%s failed: %s", #call, dn_last_error());           \
  } while (0)

/* Asserts the call fails with `status` and its message contains `needle`. */
#define DN_EXPECT_ERROR(call, status, needle) dn_test_expect_error((call), (status), (needle), #call)
void dn_test_expect_error(dn_status st, dn_status want, const char *needle, const char *text);

/* A float32 tensor of the given shape filled with a deterministic pattern
   (values in [-2, 2], seeded). */
dn_tensor *dn_test_random(uint64_t seed, int ndim, const int64_t *shape);
/* A float32 tensor from literal values. */
dn_tensor *dn_test_from(int ndim, const int64_t *shape, const float *values);
/* Element at row-major position i of any tensor, as a double (honours strides). */
double dn_test_at(const dn_tensor *t, int64_t i);
/* Asserts every element of a and b is within tol (absolute + relative). */
void dn_test_assert_close(const dn_tensor *a, const dn_tensor *b, double tol);
/* A non-contiguous tensor with the same values as t: a transposed copy viewed back. */
dn_tensor *dn_test_noncontiguous(const dn_tensor *t);

/* The function under a gradient check: *out = f(in); ctx holds the case's parameters. */
typedef dn_status (*dn_test_fn)(dn_tensor **out, dn_tensor *const *in, const void *ctx);

/*
** Central finite-difference check of autograd. Runs f once with the grad
** mode as it is, back-propagates fixed random weights w (so every output
** element counts) and compares each input's .grad with central differences
** of sum(f(in) * w) in double, perturbing every element by +-eps (the step
** actually stored in float32 is the denominator). Passes when
** |backward - numeric| <= atol + rtol * |numeric|.
** Inputs that require grad must get a float32 grad of their own shape;
** inputs that do not must get none; NULL inputs are skipped. The result must
** record a node when any input requires grad. Old grads are cleared first.
*/
void dn_test_gradcheck(const char *what, dn_test_fn f, const void *ctx, int n_in, dn_tensor *const *in,
                       double eps, double rtol, double atol);

/* Calls y's node backward directly with grad (any layout: the engine itself
   hands a root gradient over as a contiguous copy), grad mode off. */
void dn_test_node_backward(dn_tensor *y, dn_tensor *grad, dn_tensor **grad_in);

/* cmocka setup: a failed test leaves early, maybe with grad mode off or
   another thread count; this starts each test with grad mode on and the
   thread count the program had when the first test began. */
int dn_test_reset_modes(void **state);


/* --- files: one temporary directory per test group ---------------------------- */

/* cmocka group setup/teardown: create a fresh directory under /tmp, and remove
   it with everything in it. */
int dn_test_tempdir_setup(void **state);
int dn_test_tempdir_teardown(void **state);
/* The directory's path. */
const char *dn_test_tempdir(void);
/* tempdir/name, in one of four rotating buffers (valid for four more calls). */
const char *dn_test_path(const char *name);
void dn_test_write_file(const char *path, const void *data, size_t n);
/* The whole file, malloc'd and NUL-terminated; its size in *n. */
unsigned char *dn_test_read_file(const char *path, size_t *n);
/* Leftover atomic-write temporaries (".tmp-" names) in the directory. */
int dn_test_count_temp_files(void);

#endif
