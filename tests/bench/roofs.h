/*
** Machine roofs for the benchmarks: the peak FMA rate of the cores and the
** memory copy bandwidth, measured rather than computed from datasheets (the
** machines are VMs of varying kinds). Plain C11 + pthreads; no dropnet.
**
** FMA peak: a register-only loop of independent fused multiply-adds (enough
** accumulators to cover the FMA latency on both ports), 512-bit where the CPU
** has AVX-512F, 256-bit where it has AVX2 + FMA; the code for each width is
** compiled with a target attribute, so it builds and runs on any x86-64 and
** is only called after __builtin_cpu_supports says the CPU has it.
** One FMA counts 2 FLOPs per float lane.
**
** Copy bandwidth: memcpy of a buffer much larger than the last-level cache,
** each thread copying its own slice (its pages first-touched by that thread).
** GB/s count the bytes read plus the bytes written (2 x the buffer's size per
** copy), as scripts/bench/dropout.lua and PyTorch's peer script count theirs.
**
** Every figure is the best of `reps` timed runs: a roof is an upper bound,
** and on a noisy machine the best run is the closest estimate of it.
*/
#ifndef DN_ROOFS_H
#define DN_ROOFS_H

#include <stdbool.h>
#include <stddef.h>

/* Vector widths the FMA probe knows. */
enum { DN_ROOF_FMA256 = 256, DN_ROOF_FMA512 = 512 };

/* Whether this CPU can run the FMA probe of that width (AVX2+FMA for 256, AVX-512F for 512). */
bool dn_roof_fma_supported(int width_bits);

/* Peak FMA rate in GFLOP/s with `threads` threads, each running the probe
   for about `seconds` (best of `reps`); 0 when the width is not supported. */
double dn_roof_fma_gflops(int width_bits, int threads, double seconds, int reps);

/* memcpy bandwidth in GB/s (bytes read + written) over a buffer of `bytes`,
   for each of the `n` thread counts in threads[] (one pair of buffers for
   all), best of `reps` copies after one warm-up copy, into gbs[]; false when
   the buffers cannot be allocated. */
bool dn_roof_copy_gbs(size_t bytes, const int *threads, int n, int reps, double *gbs);

/* The last-level cache's size in bytes as the C library reports it (0 if unknown). */
size_t dn_roof_llc_bytes(void);

/* Online CPUs. */
int dn_roof_online_cpus(void);

#endif
