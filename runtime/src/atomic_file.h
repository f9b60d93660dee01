/*
** Atomic file replacement: the data goes to a temporary file in the target's
** directory, which is flushed, fsync'ed and renamed over the target, and the
** directory is fsync'ed so the rename itself is durable. A failure at any
** step (or dn_atomic_abort) removes the temporary file and leaves the old
** target untouched; a process killed mid-write leaves at worst a stray
** ".<name>.tmp-XXXXXX" beside an intact target, which the next successful
** commit of the same target removes (see remove_stale_temporaries in
** atomic_file.c for what counts as abandoned). Not installed.
*/
#ifndef DROPNET_ATOMIC_FILE_H
#define DROPNET_ATOMIC_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "dropnet/error.h"

typedef struct dn_atomic_file {
  const char *op;        /* "safetensors", "idx": prefixes messages */
  char *path;            /* the target */
  char *temp_path;       /* NULL once committed or aborted */
  int fd;
  int lock_fd;           /* holds flock(LOCK_EX) on the temporary until it is renamed or removed */
  FILE *plain;           /* one of plain / gz is open */
  void *gz;              /* a gzFile when the output is gzip-compressed */
} dn_atomic_file;

/* Creates the temporary file beside path; gzip compresses what is written. */
dn_status dn_atomic_open(dn_atomic_file *f, const char *op, const char *path, bool gzip);
/* Appends n bytes; on failure the file is aborted (no further call needed). */
dn_status dn_atomic_write(dn_atomic_file *f, const void *data, size_t n);
/* Flushes, fsyncs and renames over the target; on failure the file is aborted. */
dn_status dn_atomic_commit(dn_atomic_file *f);
/* Discards the temporary file (idempotent). */
void dn_atomic_abort(dn_atomic_file *f);

#endif
