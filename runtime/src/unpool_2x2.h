/*
** The 2x2 max pool's backward for the fused blocks that pool from a
** task's scratch (norm.c's batch norm + ReLU + max pool, conv_first_block.c):
** each window's argmax is kept as a code, one byte (its place in the window:
** 0, 1 top row, 2, 3 bottom row; DN_WINDOW_NONE where ReLU zeroed the
** window's output, or its plane was dropped: no gradient to route). Not
** installed.
*/
#ifndef DN_UNPOOL_2X2_H
#define DN_UNPOOL_2X2_H

#include <stdint.h>

enum { DN_WINDOW_NONE = 255 };

/* Rows r of out_h x out_w windows: the pooled gradient g and the codes (row r at r * out_h * out_w), the
   planes' width in_w, and the factor of g on its way into a plane (a dropout's scale, else 1). */
typedef struct dn_unpool_2x2 {
  const float *g;
  const uint8_t *codes;
  int64_t in_w, out_h, out_w;
  float scale;
} dn_unpool_2x2;

/* Row r's plane (2 out_h rows of in_w floats written; rows and columns in no window are not written): 0 + g *
   scale at each window's argmax, +0 at its other places and in every place of a WINDOW_NONE window. */
void dn_unpool_2x2_row(float *plane, const dn_unpool_2x2 *j, int64_t r);

#endif
