/*
** Atomic file replacement (see atomic_file.h). The stream (stdio or zlib)
** writes through a dup of the temporary file's descriptor, so the original
** descriptor stays open for the fsync once the stream is closed. A third
** descriptor holds an flock on the temporary from just after its creation
** until it is renamed or removed: it tells remove_stale_temporaries that a
** writer is still alive.
*/
#define _POSIX_C_SOURCE 200809L
#include "atomic_file.h"
#include "dropnet/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* A temporary last modified this long before ours, unlocked, is abandoned
   (see remove_stale_temporaries). */
#define STALE_SECONDS 60

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
  f->fd = f->lock_fd = -1;
  f->plain = NULL;
  f->gz = NULL;
}

void dn_atomic_abort(dn_atomic_file *f) {
  if (f->plain) fclose(f->plain);
  if (f->gz) gzclose((gzFile)f->gz);
  if (f->fd >= 0) close(f->fd);
  if (f->temp_path) unlink(f->temp_path);
  if (f->lock_fd >= 0) close(f->lock_fd);   /* after the unlink: the lock covers the file's whole life */
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
  f->fd = f->lock_fd = -1;
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
  /* Best effort: without the lock (a file system without flock) the age rule
     alone protects this file from another writer's clean-up. */
  f->lock_fd = open(f->temp_path, O_RDONLY | O_CLOEXEC);
  if (f->lock_fd >= 0 && flock(f->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    close(f->lock_fd);
    f->lock_fd = -1;
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

/* The directory part of path ("." or "/" at the ends); NULL when out of memory. */
static char *directory_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

/* fsync of the directory makes the rename durable. Some file systems refuse
   fsync on a directory (EINVAL): nothing more can be done there. */
static int sync_directory(const char *path) {
  char *dir = directory_of(path);
  if (!dir) return ENOMEM;
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  free(dir);
  if (fd < 0) return errno;
  int err = fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
  close(fd);
  return err;
}

/* The six characters mkstemp puts in place of XXXXXX: ASCII letters and digits. */
static bool is_mkstemp_suffix(const char *s) {
  for (int i = 0; i < 6; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
  }
  return s[6] == '\0';
}

/* Removes directory entry name (a candidate temporary) if it is abandoned; see below. */
static void remove_if_abandoned(int dir_fd, const char *name, time_t newest) {
  struct stat listed, opened, again;
  if (fstatat(dir_fd, name, &listed, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (!S_ISREG(listed.st_mode) || listed.st_uid != geteuid()) return;
  if (listed.st_mtime > newest - STALE_SECONDS) return;
  int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return;
  /* the same file as listed, no writer holding it, and still under this name */
  if (fstat(fd, &opened) == 0 && opened.st_dev == listed.st_dev && opened.st_ino == listed.st_ino &&
      flock(fd, LOCK_EX | LOCK_NB) == 0 && fstatat(dir_fd, name, &again, AT_SYMLINK_NOFOLLOW) == 0 &&
      again.st_dev == opened.st_dev && again.st_ino == opened.st_ino)
    unlinkat(dir_fd, name, 0);
  close(fd);
}

/*
** A process killed inside a write leaves ".<name>.tmp-XXXXXX" behind, and
** nothing else would ever remove it (a killed training run left 149 MB in
** 12 kills). After a successful commit of path, the temporaries of the same
** target are removed when they are certainly abandoned:
**  - the name is exactly "." + the target's name + ".tmp-" + six letters or
**    digits (what mkstemp makes of our pattern), in the target's directory;
**  - it is a regular file (not a symlink, not a directory) owned by us;
**  - no writer holds its flock: every writer locks its temporary from just
**    after mkstemp until the rename or unlink, and the kernel drops the lock
**    when the writer dies, so a lock we can take means the writer is gone;
**  - and it was last modified more than STALE_SECONDS before our own
**    temporary was. The lock alone leaves a writer unprotected between its
**    mkstemp and its flock (microseconds, but a new file is never that old),
**    and does not protect a writer of an older dropnet, which takes no lock
**    but keeps its file's mtime fresh while it writes. Comparing with our
**    own temporary's mtime uses one clock, the file system's, so the clock
**    skew of a network file system does not matter.
** Anything else is left alone, and nothing here can fail the save.
*/
static void remove_stale_temporaries(const char *path, time_t newest) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t base_length = strlen(base);
  char *dir = directory_of(path);
  DIR *d = dir ? opendir(dir) : NULL;
  free(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *name = e->d_name;
    if (name[0] == '.' && !strncmp(name + 1, base, base_length) && !strncmp(name + 1 + base_length, ".tmp-", 5) &&
        is_mkstemp_suffix(name + 1 + base_length + 5))
      remove_if_abandoned(dirfd(d), name, newest);
  }
  closedir(d);
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
  struct stat written;   /* its mtime dates the other temporaries (remove_stale_temporaries) */
  if (fstat(f->fd, &written) != 0) return fail_errno(f, "cannot stat the temporary file for", errno);
  int fd = f->fd;
  f->fd = -1;
  if (close(fd) != 0) return fail_errno(f, "error closing", errno);
  if (rename(f->temp_path, f->path) != 0) return fail_errno(f, "cannot rename the temporary file over", errno);
  free(f->temp_path);
  f->temp_path = NULL;   /* renamed: nothing left to remove */
  if (f->lock_fd >= 0) close(f->lock_fd);
  f->lock_fd = -1;
  int err = sync_directory(f->path);
  if (err) return fail_errno(f, "written, but cannot fsync the directory of", err);
  remove_stale_temporaries(f->path, written.st_mtime);
  reset(f);
  return DN_OK;
}

dn_status dn_write_file(const char *path, const void *data, size_t n) {
  if (!path) return dn_fail(DN_EINVAL, "write_file: path is NULL");
  if (!data && n) return dn_fail(DN_EINVAL, "write_file: data is NULL");
  dn_atomic_file f;
  dn_status st = dn_atomic_open(&f, "write_file", path, false);
  if (!st) st = dn_atomic_write(&f, data, n);
  if (!st) st = dn_atomic_commit(&f);
  return st;
}

/* mkdir -p: each missing component of path is created (mode 0777 less the
   umask); an existing directory is fine, an existing file is not. */
dn_status dn_make_directory(const char *path) {
  if (!path) return dn_fail(DN_EINVAL, "make_directory: path is NULL");
  size_t n = strlen(path);
  if (n == 0) return dn_fail(DN_EINVAL, "make_directory: path is empty");
  if (n >= PATH_MAX) return dn_fail(DN_EINVAL, "make_directory: path is longer than %d bytes", PATH_MAX - 1);
  char buf[PATH_MAX];
  memcpy(buf, path, n + 1);
  /* every prefix that ends before a '/', then the whole path */
  for (size_t i = 1; i <= n; i++) {
    if (i < n && buf[i] != '/') continue;
    char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
      int err = errno;
      return dn_fail(DN_EIO, "make_directory: cannot create %s: %s", buf, strerror(err));
    }
    buf[i] = saved;
  }
  struct stat sb;
  if (stat(path, &sb) != 0) return dn_fail(DN_EIO, "make_directory: cannot stat %s: %s", path, strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return dn_fail(DN_EIO, "make_directory: %s exists and is not a directory", path);
  return DN_OK;
}
