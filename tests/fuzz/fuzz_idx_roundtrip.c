/* What dn_idx_read accepts, dn_idx_write must write and dn_idx_read read
   back identically: same dtype, shape and bytes. A gzip input is written
   back gzip-compressed (path ending in .gz), a plain one plain. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *path, *plain_copy, *gzip_copy;
  if (!path) {
    path = fuzz_path("input.idx");
    plain_copy = fuzz_path("copy.idx");
    gzip_copy = fuzz_path("copy.idx.gz");
  }
  fuzz_write_file(path, data, size);
  fuzz_begin();
  dn_tensor *first;
  if (dn_idx_read(&first, path) == DN_OK) {
    bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    const char *copy = gzip ? gzip_copy : plain_copy;
    char shape[160];
    if (dn_idx_write(copy, first) != DN_OK)
      fuzz_fail("idx_write refused a tensor idx_read returned (%s %s): %s", dn_shape_str(first, shape, sizeof shape),
                dn_dtype_name(first->dtype), dn_last_error());
    dn_tensor *second;
    if (dn_idx_read(&second, copy) != DN_OK)
      fuzz_fail("idx_read refused what idx_write wrote (%s %s, %s): %s", dn_shape_str(first, shape, sizeof shape),
                dn_dtype_name(first->dtype), gzip ? "gzip" : "plain", dn_last_error());
    fuzz_same_tensor("idx round trip", first, second);
    dn_tensor_release(second);
    dn_tensor_release(first);
  }
  fuzz_end();
  return 0;
}
