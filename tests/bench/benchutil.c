#define _POSIX_C_SOURCE 200809L
#include "benchutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

double dn_bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double dn_bench_median(double *values, int count) {
  qsort(values, (size_t)count, sizeof *values, compare_doubles);
  return count % 2 ? values[count / 2] : 0.5 * (values[count / 2 - 1] + values[count / 2]);
}

void dn_bench_check(dn_status st, const char *what) {
  if (st != DN_OK) {
    fprintf(stderr, "%s: %s failed: %s\n", dn_bench_name, what, dn_last_error());
    exit(1);
  }
}
