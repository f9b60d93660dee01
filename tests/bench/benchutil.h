/* Timing helpers shared by the C benchmarks. */
#ifndef DN_BENCHUTIL_H
#define DN_BENCHUTIL_H

#include "dropnet/dropnet.h"

/* Wall-clock seconds from a monotonic clock. */
double dn_bench_now(void);
/* Median of values (sorts them in place). */
double dn_bench_median(double *values, int count);
/* Exits with the runtime's message, naming the benchmark and the step, when st fails. */
void dn_bench_check(dn_status st, const char *what);
/* The benchmark's name for those messages. */
extern const char *dn_bench_name;

#endif
