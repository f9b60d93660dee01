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

/* Two rows' sums at once (the same bits as dn_row_sums of each; lanes_shifted_pair). */
static inline void dn_row_sums_pair(const float *x0, const float *x1, int64_t len, double out0[ROW_STATS_SUMS],
                                    double out1[ROW_STATS_SUMS]) {
  double acc_d[2][LANES] = {{0}}, acc_sq[2][LANES] = {{0}}, k0 = x0[0], k1 = x1[0];
  lanes_shifted_pair(acc_d, acc_sq, x0, x1, len, k0, k1);
  out0[0] = k0;
  out0[1] = lanes_total(acc_d[0]);
  out0[2] = lanes_total(acc_sq[0]);
  out1[0] = k1;
  out1[1] = lanes_total(acc_d[1]);
  out1[2] = lanes_total(acc_sq[1]);
}

/* Rows [r0, r1) of len values each, for dn_parallel_rows: a pass of its own over a tensor (a batch norm's
   input that carries no sums, a depthwise convolution's output). */
typedef struct dn_row_sums_job {
  const float *x;
  int64_t len;
  double *sums;   /* [rows][ROW_STATS_SUMS] */
} dn_row_sums_job;

static inline void dn_row_sums_range(const void *ctx, int64_t r0, int64_t r1) {
  const dn_row_sums_job *j = ctx;
  int64_t r = r0;
  for (; r + 1 < r1; r += 2)
    dn_row_sums_pair(j->x + r * j->len, j->x + (r + 1) * j->len, j->len, j->sums + r * ROW_STATS_SUMS,
                     j->sums + (r + 1) * ROW_STATS_SUMS);
  if (r < r1) dn_row_sums(j->x + r * j->len, j->len, j->sums + r * ROW_STATS_SUMS);
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
