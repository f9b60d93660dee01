/* The per-thread last error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dropnet/error.h"
#include "internal.h"

static _Thread_local char last_message[512];

const char *dn_last_error(void) { return last_message; }

const char *dn_status_name(dn_status s) {
  switch (s) {
    case DN_OK: return "ok";
    case DN_EINVAL: return "invalid argument";
    case DN_ESHAPE: return "shape mismatch";
    case DN_ETYPE: return "wrong dtype";
    case DN_ERANGE: return "index out of range";
    case DN_ENOMEM: return "out of memory";
    case DN_EIO: return "i/o error";
    case DN_EFORMAT: return "malformed file";
    case DN_EUNSUPPORTED: return "not supported by this build";
    case DN_EDIST: return "distributed error";
  }
  return "unknown status";
}

dn_status dn_fail(dn_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_message, sizeof last_message, fmt, ap);
  va_end(ap);
  return s;
}

dn_status dn_fail_as(dn_status s, const char *op) {
  char message[sizeof last_message];
  const char *prev = last_message;
  if (!strncmp(prev, "tensor: ", 8)) prev += 8;
  snprintf(message, sizeof message, "%s", prev);
  return dn_fail(s, "%s: %s", op, message);
}
