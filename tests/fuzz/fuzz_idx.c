/* dn_idx_read on any bytes (plain or gzip IDX): an error is fine, a crash, a
   sanitizer report or a leak is not. */
#include "fuzz_util.h"

static dn_tensor unset;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *path;
  if (!path) path = fuzz_path("input.idx");
  fuzz_write_file(path, data, size);
  fuzz_begin();
  dn_tensor *t = &unset;   /* the reader must set *out, NULL on failure */
  if (dn_idx_read(&t, path) == DN_OK) {
    if (t->ndim < 1 || t->ndim > DN_MAX_DIMS || !dn_tensor_is_contiguous(t))
      fuzz_fail("idx_read returned a %d-dim tensor that is %scontiguous", t->ndim,
                dn_tensor_is_contiguous(t) ? "" : "not ");
    dn_tensor_release(t);
  } else if (t) {
    fuzz_fail("idx_read failed but left a tensor in *out");
  }
  fuzz_end();
  return 0;
}
