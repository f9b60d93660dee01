/*
** Caching allocator. Sizes are rounded up to a size class (four classes per
** power of two, so at most 25% slack); a freed block goes onto its class's
** free list and the next request of that class reuses it. A 64-byte header
** in front of each block remembers its class and keeps the payload aligned.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dropnet/alloc.h"

#define ALIGN 64
#define HEADER ALIGN
#define MIN_SHIFT 6                      /* smallest class: 64 bytes */
#define NUM_CLASSES (1 + 4 * (48 - MIN_SHIFT))   /* class 0 is <= 64 bytes */

typedef struct block_header {
  struct block_header *next_free;        /* valid only while cached */
  size_t class_size;
  int class_index;
} block_header;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static block_header *free_lists[NUM_CLASSES];
static dn_alloc_stats stats;

/* Smallest class index whose size is >= size, and that size. */
static int size_class(size_t size, size_t *class_size) {
  if (size <= ((size_t)1 << MIN_SHIFT)) {
    *class_size = (size_t)1 << MIN_SHIFT;
    return 0;
  }
  int shift = 63 - __builtin_clzll((unsigned long long)(size - 1)); /* 2^shift < size <= 2^(shift+1) */
  size_t base = (size_t)1 << shift;
  size_t quarter = base / 4;
  size_t steps = (size - base + quarter - 1) / quarter;              /* 1..4 */
  int index = 1 + 4 * (shift - MIN_SHIFT) + (int)steps - 1;
  if (index >= NUM_CLASSES) return -1;
  *class_size = base + steps * quarter;
  return index;
}

void *dn_alloc(size_t size) {
  size_t class_size;
  int index = size_class(size, &class_size);
  if (index < 0) return NULL;
  pthread_mutex_lock(&lock);
  block_header *h = free_lists[index];
  if (h) {
    free_lists[index] = h->next_free;
    stats.cache_hits++;
    stats.cached_bytes -= class_size;
  } else {
    void *raw = NULL;
    if (posix_memalign(&raw, ALIGN, HEADER + class_size) != 0) {
      pthread_mutex_unlock(&lock);
      return NULL;
    }
    h = raw;
    h->class_size = class_size;
    h->class_index = index;
    stats.sys_allocs++;
  }
  h->next_free = NULL;
  stats.live_bytes += class_size;
  if (stats.live_bytes > stats.peak_live_bytes) stats.peak_live_bytes = stats.live_bytes;
  pthread_mutex_unlock(&lock);
  return (char *)h + HEADER;
}

void dn_free(void *ptr) {
  if (!ptr) return;
  block_header *h = (block_header *)((char *)ptr - HEADER);
  pthread_mutex_lock(&lock);
  h->next_free = free_lists[h->class_index];
  free_lists[h->class_index] = h;
  stats.live_bytes -= h->class_size;
  stats.cached_bytes += h->class_size;
  pthread_mutex_unlock(&lock);
}

void dn_alloc_get_stats(dn_alloc_stats *out) {
  pthread_mutex_lock(&lock);
  *out = stats;
  pthread_mutex_unlock(&lock);
}

void dn_alloc_empty_cache(void) {
  pthread_mutex_lock(&lock);
  for (int i = 0; i < NUM_CLASSES; i++) {
    while (free_lists[i]) {
      block_header *h = free_lists[i];
      free_lists[i] = h->next_free;
      stats.cached_bytes -= h->class_size;
      stats.sys_frees++;
      free(h);
    }
  }
  pthread_mutex_unlock(&lock);
}
