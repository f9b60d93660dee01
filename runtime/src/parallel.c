/*
** Thread count for our OpenMP loops and OpenBLAS together. OpenBLAS is
** linked in its OpenMP build, so both draw from one pool of threads and
** never spin against each other.
*/
#include <omp.h>

#include "dropnet/parallel.h"

void openblas_set_num_threads(int num_threads);   /* OpenBLAS's own API */

static int num_threads = 0;   /* 0: not set yet, use OpenMP's default */

dn_status dn_set_num_threads(int n) {
  if (n < 1) return dn_fail(DN_EINVAL, "set_num_threads: thread count must be >= 1 (got %d)", n);
  num_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  return DN_OK;
}

int dn_get_num_threads(void) {
  return num_threads > 0 ? num_threads : omp_get_max_threads();
}
