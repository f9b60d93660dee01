/*
** bench_roofs [--threads N] [--copy-mib M] [--seconds S] [--reps R]: the
** machine's roofs (roofs.h): peak FMA rate at 512 bits (where the CPU has
** AVX-512F) and 256 bits (AVX2 + FMA), and memcpy bandwidth, each on 1
** thread and on N (default: the online CPUs). One line per figure:
**
**   fma   avx512  2 threads     245.3 GFLOP/s
**   copy  memcpy  2 threads      21.4 GB/s
**
** (scripts/bench/all.sh reads these lines by their first four fields.)
** The copy buffer defaults to 4x the last-level cache, at least 256 MiB and
** at most 1 GiB (two of them are allocated).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roofs.h"

#define MIB ((size_t)1 << 20)

static void usage(void) {
  fprintf(stderr, "usage: bench_roofs [--threads N] [--copy-mib M] [--seconds S] [--reps R]\n");
  exit(2);
}

static double number(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (!*s || *end || !(v > 0)) usage();
  return v;
}

static void fma_line(int width, const char *name, int threads, double seconds, int reps) {
  if (!dn_roof_fma_supported(width)) {
    printf("fma   %-7s %2d thread%-2s %10s (this CPU lacks %s)\n", name, threads, threads == 1 ? "" : "s", "n/a",
           width == DN_ROOF_FMA512 ? "AVX-512F" : "AVX2+FMA");
    return;
  }
  printf("fma   %-7s %2d thread%-2s %10.1f GFLOP/s\n", name, threads, threads == 1 ? "" : "s",
         dn_roof_fma_gflops(width, threads, seconds, reps));
  fflush(stdout);
}

int main(int argc, char **argv) {
  int threads = dn_roof_online_cpus(), reps = 5;
  double seconds = 0.1;
  size_t llc = dn_roof_llc_bytes(), copy_bytes = 4 * llc;
  if (copy_bytes < 256 * MIB) copy_bytes = 256 * MIB;
  if (copy_bytes > 1024 * MIB) copy_bytes = 1024 * MIB;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "--threads"))
      threads = (int)number(argv[++i]);
    else if (!strcmp(argv[i], "--copy-mib"))
      copy_bytes = (size_t)number(argv[++i]) * MIB;
    else if (!strcmp(argv[i], "--seconds"))
      seconds = number(argv[++i]);
    else if (!strcmp(argv[i], "--reps"))
      reps = (int)number(argv[++i]);
    else
      usage();
  }
  if (threads < 1 || reps < 1) usage();

  printf("roofs: best of %d runs; %d online CPUs; last-level cache %zu MiB; FMA = 2 FLOPs per lane\n", reps,
         dn_roof_online_cpus(), llc / MIB);
  int counts[2] = {1, threads}, ncounts = threads == 1 ? 1 : 2;
  for (int c = 0; c < ncounts; c++) fma_line(DN_ROOF_FMA512, "avx512", counts[c], seconds, reps);
  for (int c = 0; c < ncounts; c++) fma_line(DN_ROOF_FMA256, "avx2", counts[c], seconds, reps);
  double gbs[2];
  if (!dn_roof_copy_gbs(copy_bytes, counts, ncounts, reps, gbs)) {
    fprintf(stderr, "bench_roofs: cannot allocate two buffers of %zu MiB\n", copy_bytes / MIB);
    return 1;
  }
  for (int c = 0; c < ncounts; c++)
    printf("copy  %-7s %2d thread%-2s %10.1f GB/s (%zu MiB buffer%s; bytes read + written)\n", "memcpy", counts[c],
           counts[c] == 1 ? "" : "s", gbs[c], copy_bytes / MIB,
           llc && copy_bytes < 2 * llc ? ", NOT >> last-level cache" : "");
  return 0;
}
