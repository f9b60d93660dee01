/*
** One team of threads for the whole runtime: its own pool runs every
** parallel loop and the matrix products (OpenBLAS, where it is used, runs
** inside the pool's tasks). Idle workers spin for ~0.1 ms, then sleep; the
** same threads compute in one floating-point mode: denormal floats flushed
** to zero unless switched off. Results never depend on the thread count.
*/
#ifndef DROPNET_PARALLEL_H
#define DROPNET_PARALLEL_H

#include <stdbool.h>

#include "dropnet/error.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* The largest thread count. */
#define DN_MAX_THREADS 1024

/* 1 <= n <= DN_MAX_THREADS: the threads (the calling one included) that
   parallel loops and products use from the next call on. */
DN_API dn_status dn_set_num_threads(int n);
/* The thread count set last; until then OMP_NUM_THREADS if it is set to a
   number, else the CPUs the process may run on. */
DN_API int dn_get_num_threads(void);

/*
** Denormal floats flushed to zero, on by default: FTZ (a result below
** FLT_MIN, ~1.18e-38, becomes 0) and DAZ (an input below FLT_MIN is read as
** 0). Off, kernels compute with IEEE denormals, at up to ~100 cycles per
** operation on Intel cores. Where the mode applies:
** - the calling thread, during each runtime call that computes, converts
**   numbers or runs threads (arithmetic, reductions, products, losses,
**   optimizers, dn_backward, dropout, random and index ops, clone, to_dtype,
**   copy_, fill_, and dn_tensor_from_doubles, _full, _arange, _set); the
**   caller's FTZ and DAZ bits are back on return, so your own code between
**   calls keeps its mode. Views, element reads (dn_tensor_get, _item),
**   formatting and files leave values as stored;
** - the runtime's worker threads, which take the calling thread's mode
**   with every piece of work they do for it.
** x86 only (MXCSR): elsewhere the mode is never on and the switch does
** nothing. Returns whether the mode is supported, as PyTorch's
** torch.set_flush_denormal does.
*/
DN_API bool dn_set_flush_denormal(bool flush);
/* Whether denormals are flushed (false where unsupported). */
DN_API bool dn_get_flush_denormal(void);

/* Code of your own in the runtime's mode on the calling thread:
     unsigned saved = dn_fpmode_enter();  ...  dn_fpmode_leave(saved);
   enter sets FTZ and DAZ as dn_get_flush_denormal() says and returns the
   caller's bits; leave puts them back (other MXCSR bits, such as exception
   flags raised in between, are kept). Pairs nest. */
DN_API unsigned dn_fpmode_enter(void);
DN_API void dn_fpmode_leave(unsigned saved);

DN_END_DECLS

#endif
