/*
** The caching allocator behind every tensor's storage.
** Freed blocks go back to a size-bucketed cache instead of the system, so a
** training step of a fixed model reuses the blocks of the step before and
** makes no system allocation after the first one.
*/
#ifndef DROPNET_ALLOC_H
#define DROPNET_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "dropnet/export.h"

DN_BEGIN_DECLS

typedef struct dn_alloc_stats {
  uint64_t sys_allocs;     /* blocks obtained from the system, ever */
  uint64_t sys_frees;      /* blocks given back to the system, ever */
  uint64_t cache_hits;     /* requests served from the cache */
  size_t live_bytes;       /* bytes handed out and not yet freed */
  size_t cached_bytes;     /* bytes held in the cache, free for reuse */
  size_t peak_live_bytes;
} dn_alloc_stats;

/* 64-byte aligned; NULL on failure (no message is set). size 0 is valid. */
DN_API void *dn_alloc(size_t size);
/* Returns a block from dn_alloc to the cache; NULL is a no-op. */
DN_API void dn_free(void *ptr);
/* A consistent snapshot of the counters. */
DN_API void dn_alloc_get_stats(dn_alloc_stats *stats);
/* Gives every cached block back to the system. */
DN_API void dn_alloc_empty_cache(void);

DN_END_DECLS

#endif
