/* dn_safetensors_load on any bytes: an error is fine, a crash, a sanitizer
   report or a leak is not. */
#include "fuzz_util.h"

static dn_safetensors unset;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *path;
  if (!path) path = fuzz_path("input.safetensors");
  fuzz_write_file(path, data, size);
  fuzz_begin();
  dn_safetensors *st = &unset;   /* the reader must set *out, NULL on failure */
  if (dn_safetensors_load(&st, path) == DN_OK) {
    for (int i = 0; i < st->count; i++)
      if (!st->tensors[i].name || !st->tensors[i].tensor || !dn_tensor_is_contiguous(st->tensors[i].tensor))
        fuzz_fail("safetensors_load returned a bad entry %d", i);
    dn_safetensors_free(st);
  } else if (st) {
    fuzz_fail("safetensors_load failed but left a result in *out");
  }
  fuzz_end();
  return 0;
}
