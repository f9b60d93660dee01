/*
** The FMA peak of this machine, probed: a register-only loop of independent
** fused multiply-adds (no loads, no stores) on `threads` OpenMP threads at
** once, 512-bit (AVX-512F) or 256-bit (AVX2 + FMA) wide. What a compute-bound
** kernel can reach at best, at the clock the cores run under that load, so
** benchmarks can print "% of peak" next to GFLOP/s.
*/
#ifndef DN_FMA_PEAK_H
#define DN_FMA_PEAK_H

/* GFLOP/s (an FMA counts 2) of `threads` threads together, the best of a few
   short runs; 0 when the CPU lacks the instructions of that width. width_bits
   is 512 or 256. Takes ~0.1-0.2 s. */
double dn_bench_fma_peak(int threads, int width_bits);

#endif
