/*
** One threading model for the whole runtime: OpenMP runs our loops and
** OpenBLAS is the OpenMP build, so both share one pool and one thread count.
** The same threads compute in one floating-point mode: denormal floats
** flushed to zero unless switched off.
*/
#ifndef DROPNET_PARALLEL_H
#define DROPNET_PARALLEL_H

#include <stdbool.h>

#include "dropnet/error.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* n >= 1; sets our loops and OpenBLAS together. */
DN_API dn_status dn_set_num_threads(int n);
/* The thread count set last (OpenMP's default until then). */
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
** - the OpenMP workers of the calling thread, all the time (OpenBLAS runs
**   on them too): a thread libgomp creates inherits the mode from the
**   runtime call that starts the region; workers that exist already are set
**   when this switch or the thread count changes and at a thread's first
**   runtime call. Workers created by OpenMP regions of your own, outside
**   runtime calls, start in your mode: call dn_set_flush_denormal again
**   after such a region grew the team.
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
