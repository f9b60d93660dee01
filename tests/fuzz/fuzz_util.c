/* The harnesses' shared helpers (see fuzz_util.h). */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* UBSan stops at its first report (as ASan does), also when a harness is run
   by hand. UBSan is built recoverable so that UBSAN_OPTIONS (read after this)
   can take suppressions=FILE to fuzz past a known, not yet fixed report. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

static char directory[4096];
static size_t live_at_begin;

_Noreturn void fuzz_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "dropnet fuzz finding: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

/* Removes the private directory and what the harness left in it. */
static void remove_directory(void) {
  DIR *dir = opendir(directory);
  if (dir) {
    struct dirent *e;
    while ((e = readdir(dir))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char path[sizeof directory + 256];
      snprintf(path, sizeof path, "%s/%s", directory, e->d_name);
      unlink(path);
    }
    closedir(dir);
  }
  rmdir(directory);
}

static bool usable_directory(const char *dir) {
  struct stat info;
  return dir && *dir && stat(dir, &info) == 0 && S_ISDIR(info.st_mode) && access(dir, W_OK | X_OK) == 0;
}

static void make_directory(void) {
  const char *candidates[] = {getenv("DN_FUZZ_TMPDIR"), "/dev/shm", getenv("TMPDIR"), "/tmp"};
  for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
    if (!usable_directory(candidates[i])) continue;
    snprintf(directory, sizeof directory, "%s/dropnet-fuzz-XXXXXX", candidates[i]);
    if (mkdtemp(directory)) {
      atexit(remove_directory);
      return;
    }
  }
  fprintf(stderr, "fuzz: cannot create a temporary directory: %s\n", strerror(errno));
  exit(2);
}

const char *fuzz_path(const char *name) {
  if (!directory[0]) make_directory();
  size_t n = strlen(directory) + 1 + strlen(name) + 1;
  char *path = malloc(n);
  if (!path) {
    fprintf(stderr, "fuzz: out of memory\n");
    exit(2);
  }
  snprintf(path, n, "%s/%s", directory, name);
  return path;
}

void fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "fuzz: cannot open %s: %s\n", path, strerror(errno));
    exit(2);
  }
  while (size > 0) {
    ssize_t put = write(fd, data, size);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
      exit(2);
    }
    data += put;
    size -= (size_t)put;
  }
  if (close(fd) != 0) {
    fprintf(stderr, "fuzz: cannot close %s: %s\n", path, strerror(errno));
    exit(2);
  }
}

void fuzz_begin(void) {
  dn_alloc_stats stats;
  dn_alloc_get_stats(&stats);
  live_at_begin = stats.live_bytes;
}

void fuzz_end(void) {
  dn_alloc_stats stats;
  dn_alloc_get_stats(&stats);
  if (stats.live_bytes != live_at_begin)
    fuzz_fail("leak: %zu bytes of the caching allocator still live after the input (%zu before)", stats.live_bytes,
              live_at_begin);
  dn_alloc_empty_cache();
}

void fuzz_same_tensor(const char *what, const dn_tensor *a, const dn_tensor *b) {
  char sa[160], sb[160];
  if (a->dtype != b->dtype)
    fuzz_fail("%s: dtype %s became %s", what, dn_dtype_name(a->dtype), dn_dtype_name(b->dtype));
  if (!dn_same_shape(a, b))
    fuzz_fail("%s: shape %s became %s", what, dn_shape_str(a, sa, sizeof sa), dn_shape_str(b, sb, sizeof sb));
  if (!dn_tensor_is_contiguous(a) || !dn_tensor_is_contiguous(b))
    fuzz_fail("%s: a tensor read from a file is not contiguous", what);
  size_t nbytes = (size_t)dn_tensor_numel(a) * dn_dtype_size(a->dtype);
  if (nbytes && memcmp(dn_tensor_data(a), dn_tensor_data(b), nbytes) != 0)
    fuzz_fail("%s: the data of %s %s changed", what, dn_shape_str(a, sa, sizeof sa), dn_dtype_name(a->dtype));
}
