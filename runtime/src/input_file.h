/*
** Opening a file for one of the readers (IDX, CSV, safetensors). Not
** installed.
*/
#ifndef DROPNET_INPUT_FILE_H
#define DROPNET_INPUT_FILE_H

#include <stdint.h>

#include "dropnet/error.h"

/*
** Opens path read-only (close-on-exec) and checks that it is a regular
** file: a reader checks sizes against the file, and /dev/zero, a FIFO or a
** directory has no size to check against (and may never end). On success
** *fd is open and *size is the file's size; on failure nothing is open and
** the message reads "<op>: cannot open <path>: <reason>", "<op>: cannot stat
** <path>: <reason>" or "<op>: <path> is not a regular file".
*/
dn_status dn_open_regular_file(const char *op, const char *path, int *fd, int64_t *size);

#endif
