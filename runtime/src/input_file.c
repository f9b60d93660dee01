/*
** Opening a file for a reader (see input_file.h).
*/
#define _POSIX_C_SOURCE 200809L
#include "input_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

dn_status dn_open_regular_file(const char *op, const char *path, int *fd, int64_t *size) {
  *fd = -1;
  *size = 0;
  int opened = open(path, O_RDONLY | O_CLOEXEC);
  if (opened < 0) return dn_fail(DN_EIO, "%s: cannot open %s: %s", op, path, strerror(errno));
  struct stat info;
  if (fstat(opened, &info) != 0) {
    int err = errno;
    close(opened);
    return dn_fail(DN_EIO, "%s: cannot stat %s: %s", op, path, strerror(err));
  }
  if (!S_ISREG(info.st_mode)) {
    close(opened);
    return dn_fail(DN_EIO, "%s: %s is not a regular file", op, path);
  }
  *fd = opened;
  *size = (int64_t)info.st_size;
  return DN_OK;
}
