/*
** Status codes and the last error message.
** Every runtime entry point that can fail on user input returns a dn_status
** and, on failure, leaves a message naming the op and what was wrong.
*/
#ifndef DROPNET_ERROR_H
#define DROPNET_ERROR_H

#include "dropnet/export.h"

DN_BEGIN_DECLS

typedef enum dn_status {
  DN_OK = 0,
  DN_EINVAL,   /* bad argument value (negative size, NaN, bad dim, ...) */
  DN_ESHAPE,   /* shapes do not fit together */
  DN_ETYPE,    /* wrong dtype for this op */
  DN_ERANGE,   /* index out of range */
  DN_ENOMEM,   /* allocation failed */
  DN_EIO,      /* file could not be read or written */
  DN_EFORMAT,  /* file contents are malformed */
  DN_EUNSUPPORTED, /* not in this build (the distributed layer without MPI) */
  DN_EDIST     /* a collective failed: MPI reported an error, or another rank's input was rejected */
} dn_status;

/* The message of the last failure on this thread ("" if none). Borrowed:
   valid until the next failing call on the same thread. */
DN_API const char *dn_last_error(void);

/* Short name of a status ("invalid argument", ...). */
DN_API const char *dn_status_name(dn_status s);

/* Records a failure and returns `s`, so kernels can `return dn_fail(...)`. */
DN_API dn_status dn_fail(dn_status s, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 2, 3)))
#endif
  ;

DN_END_DECLS

#endif
