/*
** One threading model for the whole runtime: OpenMP runs our loops and
** OpenBLAS is the OpenMP build, so both share one pool and one thread count.
*/
#ifndef DROPNET_PARALLEL_H
#define DROPNET_PARALLEL_H

#include "dropnet/error.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* n >= 1; sets our loops and OpenBLAS together. */
DN_API dn_status dn_set_num_threads(int n);
/* The thread count set last (OpenMP's default until then). */
DN_API int dn_get_num_threads(void);

DN_END_DECLS

#endif
