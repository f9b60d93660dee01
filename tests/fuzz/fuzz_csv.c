/* dn_csv_read on any bytes. The first input byte picks the delimiter and
   skip_header (fuzz_csv_delimiter in fuzz_util.h); the rest is the file. An
   error is fine. */
#include "fuzz_util.h"

static dn_tensor unset;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *path;
  if (!path) path = fuzz_path("input.csv");
  if (size < 1) return 0;
  char delimiter = fuzz_csv_delimiter(data[0]);
  bool skip_header = fuzz_csv_skip_header(data[0]);
  fuzz_write_file(path, data + 1, size - 1);
  fuzz_begin();
  dn_tensor *t = &unset;   /* the reader must set *out, NULL on failure */
  if (dn_csv_read(&t, path, delimiter, skip_header) == DN_OK) {
    if (t->dtype != DN_F32 || t->ndim != 2 || !dn_tensor_is_contiguous(t))
      fuzz_fail("csv_read returned a %d-dim %s tensor, not a contiguous float32 matrix", t->ndim,
                dn_dtype_name(t->dtype));
    dn_tensor_release(t);
  } else if (t) {
    fuzz_fail("csv_read failed but left a tensor in *out");
  }
  fuzz_end();
  return 0;
}
