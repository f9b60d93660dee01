/*
** Checked shape arithmetic (see shape.h for the invariant it keeps).
*/
#include <stdio.h>

#include "shape.h"

char *dn_shape_text(char *buf, size_t size, int ndim, const int64_t *shape) {
  size_t used = 0;
  buf[0] = '\0';
  used += (size_t)snprintf(buf + used, size - used, "[");
  for (int d = 0; d < ndim && used < size; d++)
    used += (size_t)snprintf(buf + used, size - used, d ? ",%lld" : "%lld", (long long)shape[d]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

dn_status dn_shape_check(const char *op, int ndim, const int64_t *shape, int64_t *numel) {
  if (ndim < 0 || ndim > DN_MAX_DIMS)
    return dn_fail(DN_EINVAL, "%s: number of dims must be 0..%d (got %d)", op, DN_MAX_DIMS, ndim);
  int64_t n = 1, extent = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0)
      return dn_fail(DN_EINVAL, "%s: size of dim %d must be >= 0 (got %lld)", op, d + 1, (long long)shape[d]);
    if (!dn_size_mul(extent, shape[d] ? shape[d] : 1, &extent)) {
      char sb[200];
      return dn_fail(DN_EINVAL, "%s: shape %s is too large (its sizes, counting 0 as 1, multiply past 2^40)", op,
                     dn_shape_text(sb, sizeof sb, ndim, shape));
    }
    n *= shape[d];   /* n <= extent: cannot overflow */
  }
  if (numel) *numel = n;
  return DN_OK;
}
