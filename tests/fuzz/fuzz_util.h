/*
** What every harness shares. The readers take paths, so each input is
** written to a file in a private directory made once per process (under
** $DN_FUZZ_TMPDIR, else /dev/shm, else $TMPDIR, else /tmp) and reused; it
** is removed at exit, but a crash leaves it (run.sh points DN_FUZZ_TMPDIR at
** a scratch directory it removes itself).
** A reader's error is a normal outcome; a finding is a crash, a sanitizer
** report, a leak or a broken round trip (fuzz_fail aborts, so libFuzzer
** keeps the input).
*/
#ifndef DN_FUZZ_UTIL_H
#define DN_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dropnet/dropnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* dir/name in the process's private directory; malloc'd once, kept for the
   process (harnesses keep it in a static). */
const char *fuzz_path(const char *name);
/* Replaces the file at path with data[0, size); aborts if the file system fails. */
void fuzz_write_file(const char *path, const uint8_t *data, size_t size);

/* Reports a finding and aborts. */
_Noreturn void fuzz_fail(const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 1, 2)))
#endif
  ;

/* Call at the start and the end of each input: the end checks that every
   tensor allocated since the start was released, then empties the caching
   allocator so ASan sees freed blocks as freed (use after free) and
   libFuzzer's leak check sees each block as a malloc. */
void fuzz_begin(void);
void fuzz_end(void);

/* fuzz_csv's first input byte: bit 0 is skip_header, bits 1-3 pick the delimiter. */
static inline char fuzz_csv_delimiter(uint8_t options) {
  static const char delimiters[8] = {',', ';', '\t', ' ', '|', ':', '#', '\x1f'};
  return delimiters[(options >> 1) & 7];
}
static inline bool fuzz_csv_skip_header(uint8_t options) { return options & 1; }

/* The same dtype, shape and bytes (both contiguous), or a finding naming what. */
void fuzz_same_tensor(const char *what, const dn_tensor *a, const dn_tensor *b);

#endif
