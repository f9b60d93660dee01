/*
** Atomic file replacement (see atomic_file.h). The stream (stdio or zlib)
** writes through a dup of the temporary file's descriptor, so the original
** descriptor stays open for the fsync once the stream is closed.
*/
#define _POSIX_C_SOURCE 200809L
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The process umask without changing it: umask(2) can only be read by
   setting it, which races with other threads creating files. Linux reports
   it in /proc/self/status; elsewhere assume the common 022. */
static mode_t current_umask(void) {
  mode_t mask = 022;
  FILE *status = fopen("/proc/self/status", "r");
  if (!status) return mask;
  char line[256];
  while (fgets(line, sizeof line, status)) {
    if (!strncmp(line, "Umask:", 6)) {
      mask = (mode_t)(strtoul(line + 6, NULL, 8) & 0777);
      break;
    }
  }
  fclose(status);
  return mask;
}

static void reset(dn_atomic_file *f) {
  free(f->path);
  free(f->temp_path);
  f->path = f->temp_path = NULL;
  f->fd = -1;
  f->plain = NULL;
  f->gz = NULL;
}

void dn_atomic_abort(dn_atomic_file *f) {
  if (f->plain) fclose(f->plain);
  if (f->gz) gzclose((gzFile)f->gz);
  if (f->fd >= 0) close(f->fd);
  if (f->temp_path) unlink(f->temp_path);
  reset(f);
}

/* Aborts and records "op: what path: strerror(err)". */
static dn_status fail_errno(dn_atomic_file *f, const char *what, int err) {
  dn_status st = dn_fail(DN_EIO, "%s: %s %s: %s", f->op, what, f->path ? f->path : "?", strerror(err));
  dn_atomic_abort(f);
  return st;
}

dn_status dn_atomic_open(dn_atomic_file *f, const char *op, const char *path, bool gzip) {
  f->op = op;
  f->path = f->temp_path = NULL;
  f->fd = -1;
  f->plain = NULL;
  f->gz = NULL;
  if (!path || !*path) return dn_fail(DN_EINVAL, "%s: empty path", op);
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  if (!*base) return dn_fail(DN_EINVAL, "%s: %s names a directory, not a file", op, path);
  struct stat target;
  bool target_exists = stat(path, &target) == 0;
  if (target_exists && S_ISDIR(target.st_mode))
    return dn_fail(DN_EIO, "%s: %s is a directory", op, path);

  size_t dir_length = (size_t)(base - path);
  size_t base_length = strlen(base);
  static const char suffix[] = ".tmp-XXXXXX";
  f->path = strdup(path);
  f->temp_path = malloc(dir_length + 1 + base_length + sizeof suffix);
  if (!f->path || !f->temp_path) {
    reset(f);
    return dn_fail(DN_ENOMEM, "%s: out of memory", op);
  }
  /* "<dir>/.<name>.tmp-XXXXXX": same directory (rename stays on one file system), hidden. */
  memcpy(f->temp_path, path, dir_length);
  f->temp_path[dir_length] = '.';
  memcpy(f->temp_path + dir_length + 1, base, base_length);
  memcpy(f->temp_path + dir_length + 1 + base_length, suffix, sizeof suffix);

  f->fd = mkstemp(f->temp_path);
  if (f->fd < 0) {
    int err = errno;
    free(f->temp_path);
    f->temp_path = NULL;   /* nothing was created: nothing to unlink */
    return fail_errno(f, "cannot create a temporary file beside", err);
  }
  /* mkstemp makes the file 0600; a replaced file keeps its mode, a new one gets the usual 0666 & ~umask. */
  mode_t mode = target_exists ? (target.st_mode & 07777) : (0666 & ~current_umask());
  if (fchmod(f->fd, mode) != 0) return fail_errno(f, "cannot set the mode of the temporary file for", errno);

  int stream_fd = dup(f->fd);
  if (stream_fd < 0) return fail_errno(f, "cannot open a stream for", errno);
  if (gzip) {
    f->gz = gzdopen(stream_fd, "wb");
    if (!f->gz) {
      close(stream_fd);
      return fail_errno(f, "cannot start gzip compression for", ENOMEM);
    }
  } else {
    f->plain = fdopen(stream_fd, "wb");
    if (!f->plain) {
      int err = errno;
      close(stream_fd);
      return fail_errno(f, "cannot open a stream for", err);
    }
  }
  return DN_OK;
}

dn_status dn_atomic_write(dn_atomic_file *f, const void *data, size_t n) {
  if (!f->temp_path) return dn_fail(DN_EIO, "%s: write to a file that is not open", f->op);
  if (f->plain) {
    if (n && fwrite(data, 1, n, f->plain) != n) return fail_errno(f, "error writing", errno);
    return DN_OK;
  }
  const char *bytes = data;
  while (n > 0) {
    unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
    if (gzwrite((gzFile)f->gz, bytes, chunk) != (int)chunk) {
      int zerr;
      const char *msg = gzerror((gzFile)f->gz, &zerr);
      dn_status st = dn_fail(DN_EIO, "%s: error writing %s: %s", f->op, f->path,
                             zerr == Z_ERRNO ? strerror(errno) : msg);
      dn_atomic_abort(f);
      return st;
    }
    bytes += chunk;
    n -= chunk;
  }
  return DN_OK;
}

/* fsync of the directory makes the rename durable. Some file systems refuse
   fsync on a directory (EINVAL): nothing more can be done there. */
static int sync_directory(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir;
  if (!slash) dir = strdup(".");
  else if (slash == path) dir = strdup("/");
  else dir = strndup(path, (size_t)(slash - path));
  if (!dir) return ENOMEM;
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  free(dir);
  if (fd < 0) return errno;
  int err = fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
  close(fd);
  return err;
}

dn_status dn_atomic_commit(dn_atomic_file *f) {
  if (!f->temp_path) return dn_fail(DN_EIO, "%s: commit of a file that is not open", f->op);
  if (f->plain) {
    FILE *plain = f->plain;
    f->plain = NULL;
    int flushed = fflush(plain) == 0 ? 0 : errno;
    int closed = fclose(plain) == 0 ? 0 : errno;
    if (flushed || closed) return fail_errno(f, "error writing", flushed ? flushed : closed);
  } else {
    gzFile gz = f->gz;
    f->gz = NULL;
    int zerr = gzclose(gz);
    if (zerr != Z_OK)
      return fail_errno(f, "error finishing the gzip stream of", zerr == Z_ERRNO ? errno : EIO);
  }
  if (fsync(f->fd) != 0) return fail_errno(f, "cannot fsync", errno);
  int fd = f->fd;
  f->fd = -1;
  if (close(fd) != 0) return fail_errno(f, "error closing", errno);
  if (rename(f->temp_path, f->path) != 0) return fail_errno(f, "cannot rename the temporary file over", errno);
  free(f->temp_path);
  f->temp_path = NULL;   /* renamed: nothing left to remove */
  int err = sync_directory(f->path);
  if (err) return fail_errno(f, "written, but cannot fsync the directory of", err);
  reset(f);
  return DN_OK;
}
