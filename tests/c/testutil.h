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

#endif
