/*
** Checked shape arithmetic. Every place that accepts sizes from a user or a
** file (constructors, views, reshape, expand, narrow, readers) goes through
** these, so no product of sizes, stride or byte count can overflow int64:
** two heap overflows came from `start + length` and a wrapped product.
**
** The invariant they keep: every tensor's extent -- the product of its sizes
** with 0 counted as 1 -- is at most DN_MAX_NUMEL. The extent bounds the
** contiguous strides too, so a zero-element shape like [0, 2^62, 4] is
** refused rather than given a stride that wraps.
*/
#ifndef DROPNET_SHAPE_H
#define DROPNET_SHAPE_H

#include <stdbool.h>
#include <stdint.h>

#include "dropnet/tensor.h"

/* 2^40 elements: byte counts (x4) and stride products stay far from 2^63. */
#define DN_MAX_NUMEL ((int64_t)1 << 40)

/* a * b for sizes in [0, DN_MAX_NUMEL]; false (and *out untouched) when the
   product passes DN_MAX_NUMEL. */
static inline bool dn_size_mul(int64_t a, int64_t b, int64_t *out) {
  int64_t p;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &p) || p > DN_MAX_NUMEL) return false;
  *out = p;
  return true;
}

/* a + b for sizes in [0, DN_MAX_NUMEL], likewise. */
static inline bool dn_size_add(int64_t a, int64_t b, int64_t *out) {
  int64_t s;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &s) || s > DN_MAX_NUMEL) return false;
  *out = s;
  return true;
}

/* True when [start, start + length) lies inside [0, size); never overflows. */
static inline bool dn_range_fits(int64_t start, int64_t length, int64_t size) {
  return start >= 0 && length >= 0 && start <= size && length <= size - start;
}

/* Indices base .. base + count - 1 (an op returning int32 indices counted
   from base, 1 for Lua) must fit int32; else an error naming the op. */
static inline dn_status dn_check_index_base(const char *name, int64_t base, int64_t count) {
  if (base < 0) return dn_fail(DN_EINVAL, "%s: index base must be >= 0 (got %lld)", name, (long long)base);
  if (count > 0 && base > (int64_t)INT32_MAX - (count - 1))
    return dn_fail(DN_ERANGE, "%s: indices from %lld to %lld do not fit int32", name, (long long)base,
                   (long long)(base + count - 1));
  return DN_OK;
}

/* dn_shape_check (tensor.h, public: the bindings check shapes with it too)
   enforces the invariant. */

/* Writes "[a,b,c]" into buf (truncated to size). */
char *dn_shape_text(char *buf, size_t size, int ndim, const int64_t *shape);

#endif
