/* What dn_safetensors_load accepts, dn_safetensors_save must write and
   dn_safetensors_load read back identically: the same tensor names with the
   same dtypes, shapes and bytes, and the same metadata. The writer may
   reorder tensors (it groups them by element size), so both sides are
   compared sorted by name. */
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>

static int by_name(const void *a, const void *b) {
  return strcmp(((const dn_named_tensor *)a)->name, ((const dn_named_tensor *)b)->name);
}

static int by_key(const void *a, const void *b) {
  return strcmp(((const dn_metadata_entry *)a)->key, ((const dn_metadata_entry *)b)->key);
}

static void compare(dn_safetensors *first, dn_safetensors *second) {
  if (first->count != second->count)
    fuzz_fail("safetensors round trip: %d tensors became %d", first->count, second->count);
  if (first->metadata_count != second->metadata_count)
    fuzz_fail("safetensors round trip: %d metadata entries became %d", first->metadata_count,
              second->metadata_count);
  /* The results are ours: sorting them in place changes nothing they own. */
  if (first->count > 0) {
    qsort(first->tensors, (size_t)first->count, sizeof *first->tensors, by_name);
    qsort(second->tensors, (size_t)second->count, sizeof *second->tensors, by_name);
  }
  for (int i = 0; i < first->count; i++) {
    if (strcmp(first->tensors[i].name, second->tensors[i].name))
      fuzz_fail("safetensors round trip: tensor '%s' became '%s'", first->tensors[i].name, second->tensors[i].name);
    fuzz_same_tensor(first->tensors[i].name, first->tensors[i].tensor, second->tensors[i].tensor);
  }
  if (first->metadata_count > 0) {
    qsort(first->metadata, (size_t)first->metadata_count, sizeof *first->metadata, by_key);
    qsort(second->metadata, (size_t)second->metadata_count, sizeof *second->metadata, by_key);
  }
  for (int i = 0; i < first->metadata_count; i++)
    if (strcmp(first->metadata[i].key, second->metadata[i].key) ||
        strcmp(first->metadata[i].value, second->metadata[i].value))
      fuzz_fail("safetensors round trip: metadata '%s' became '%s'", first->metadata[i].key,
                second->metadata[i].key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *path, *copy;
  if (!path) {
    path = fuzz_path("input.safetensors");
    copy = fuzz_path("copy.safetensors");
  }
  fuzz_write_file(path, data, size);
  fuzz_begin();
  dn_safetensors *first;
  if (dn_safetensors_load(&first, path) == DN_OK) {
    if (dn_safetensors_save(copy, first->tensors, first->count, first->metadata, first->metadata_count) != DN_OK)
      fuzz_fail("safetensors_save refused what safetensors_load returned (%d tensors, %d metadata): %s",
                first->count, first->metadata_count, dn_last_error());
    dn_safetensors *second;
    if (dn_safetensors_load(&second, copy) != DN_OK)
      fuzz_fail("safetensors_load refused what safetensors_save wrote: %s", dn_last_error());
    compare(first, second);
    dn_safetensors_free(second);
    dn_safetensors_free(first);
  }
  fuzz_end();
  return 0;
}
