/*
** A batch norm's statistics as per-row partial sums: for each row (n, c)
** of an input read as [N, C, S], its first value k and, in double lanes
** (lanes.h), sum (x - k) and sum (x - k)^2. Batch norm merges a channel's
** rows in the order of n (norm.c). Whoever writes a tensor that a batch norm
** reads next may compute them while each row is in cache and leave them on
** the tensor (dn_tensor.row_stats: a convolution's output, dn_conv2d_stats);
** the batch norm then skips its own pass over the input, and as a row's
** sums are a function of the row's values alone, the bits are the same
** either way. Not installed.
*/
#ifndef DROPNET_ROW_STATS_H
#define DROPNET_ROW_STATS_H

#include "dropnet/alloc.h"
#include "dropnet/tensor.h"
#include "lanes.h"

enum { ROW_STATS_SUMS = 3 };   /* per row: k, sum (x - k), sum (x - k)^2 */

typedef struct dn_row_stats {
  uint32_t version;   /* the storage's version when the sums were taken */
  int64_t rows, len;
  double sums[];      /* [rows][ROW_STATS_SUMS] */
} dn_row_stats;

/* A row's sums (len >= 1). */
static inline void dn_row_sums(const float *x, int64_t len, double out[ROW_STATS_SUMS]) {
  double acc_d[LANES] = {0}, acc_sq[LANES] = {0}, k = x[0];
  lanes_shifted(acc_d, acc_sq, x, len, k);
  out[0] = k;
  out[1] = lanes_total(acc_d);
  out[2] = lanes_total(acc_sq);
}

/* Two rows' sums at once (each row's chain of adds overlaps the other's: a row alone waits on its adds),
   the bits of dn_row_sums on each. */
static inline void dn_row_sums2(const float *x0, const float *x1, int64_t len, double out0[ROW_STATS_SUMS],
                                double out1[ROW_STATS_SUMS]) {
  double k0 = x0[0], k1 = x1[0];
  lanes d0 = {0}, q0 = {0}, d1 = {0}, q1 = {0};
  int64_t s = 0;
  for (; s + LANES <= len; s += LANES) {
    lanes v0 = lanes_of(x0 + s) - k0, v1 = lanes_of(x1 + s) - k1;
    d0 += v0;
    q0 += v0 * v0;
    d1 += v1;
    q1 += v1 * v1;
  }
  double acc[4][LANES];
  lanes_store(acc[0], d0);
  lanes_store(acc[1], q0);
  lanes_store(acc[2], d1);
  lanes_store(acc[3], q1);
  for (int64_t t = s; t < len; t++) {   /* the tails, as lanes_shifted's */
    acc[0][t % LANES] += x0[t] - k0;
    acc[1][t % LANES] += (x0[t] - k0) * (x0[t] - k0);
    acc[2][t % LANES] += x1[t] - k1;
    acc[3][t % LANES] += (x1[t] - k1) * (x1[t] - k1);
  }
  out0[0] = k0, out0[1] = lanes_total(acc[0]), out0[2] = lanes_total(acc[1]);
  out1[0] = k1, out1[1] = lanes_total(acc[2]), out1[2] = lanes_total(acc[3]);
}

/* Room for rows rows of len values, version unset; NULL when out of memory. */
static inline dn_row_stats *dn_row_stats_new(int64_t rows, int64_t len) {
  dn_row_stats *s = dn_alloc(sizeof *s + (size_t)(rows * ROW_STATS_SUMS) * sizeof(double));
  if (s) s->rows = rows, s->len = len;
  return s;
}

/* t's sums for rows rows of len values, when t carries them and has not been written since; else NULL. */
static inline const double *dn_row_stats_of(const dn_tensor *t, int64_t rows, int64_t len) {
  const dn_row_stats *s = t->row_stats;
  if (!s || s->version != t->storage->version || s->rows != rows || s->len != len) return NULL;
  return s->sums;
}

#endif
