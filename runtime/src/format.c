/*
** Tensor printing, in the spirit of PyTorch and Torch7:
**
**   [[ 1.0000,  2.0000,  3.0000],
**    [ 4.0000,  5.0000,  6.0000]]
**   dropnet.Tensor of shape [2,3], float32
**
** Every printed value is right-aligned in one common width, with a column
** kept for the sign. Floats use 4 decimals, or %.4e when the magnitudes
** need it; int32 and uint8 print as integers; nan, inf, -inf as such.
** Tensors of more than SUMMARY_THRESHOLD elements show EDGE_ITEMS items at
** each end of every long dim, with "..." between. Rows wrap at LINE_WIDTH.
** Slices of 3-D and deeper tensors are separated by blank lines.
**
** A 0-dim tensor takes one line, as PyTorch prints it: tensor(3.5000), or
** tensor(7, dtype=int32). The autograd state follows the dtype, as PyTorch
** shows it: ", grad_fn=<MulBackward>" on a result of recorded ops,
** ", requires_grad=true" on a leaf that requires grad ("true": Lua's word).
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dropnet/autograd.h"
#include "internal.h"

#define SUMMARY_THRESHOLD 1000
#define EDGE_ITEMS 3
#define LINE_WIDTH 80

/* A growing string; `failed` sticks after an allocation failure. */
typedef struct text {
  char *data;
  size_t len, cap;
  bool failed;
} text;

static void text_append(text *s, const char *str, size_t n) {
  if (s->failed) return;
  if (s->len + n + 1 > s->cap) {
    size_t cap = s->cap ? s->cap : 256;
    while (s->len + n + 1 > cap) cap *= 2;
    char *data = realloc(s->data, cap);
    if (!data) {
      s->failed = true;
      return;
    }
    s->data = data;
    s->cap = cap;
  }
  memcpy(s->data + s->len, str, n);
  s->len += n;
  s->data[s->len] = '\0';
}

static void text_puts(text *s, const char *str) { text_append(s, str, strlen(str)); }

static void text_repeat(text *s, char c, int count) {
  for (int i = 0; i < count; i++) text_append(s, &c, 1);
}

typedef enum number_style { STYLE_INTEGER, STYLE_FIXED, STYLE_SCIENTIFIC } number_style;

typedef struct layout {
  bool summarize;      /* show only EDGE_ITEMS at each end of long dims */
  number_style style;
  int width;           /* common width of every printed value */
} layout;

/* One value as text, with a leading space in place of a minus sign. */
static void format_value(char *buf, size_t size, double v, number_style style) {
  if (style == STYLE_INTEGER) snprintf(buf, size, "% lld", (long long)v);
  else if (isnan(v)) snprintf(buf, size, " nan");
  else if (isinf(v)) snprintf(buf, size, v > 0 ? " inf" : "-inf");
  else if (style == STYLE_FIXED) snprintf(buf, size, "% .4f", v);
  else snprintf(buf, size, "% .4e", v);
}

/* Whether dim `dim` is cut to EDGE_ITEMS at each end. */
static bool is_cut(const dn_tensor *t, const layout *lay, int dim) {
  return lay->summarize && t->shape[dim] > 2 * EDGE_ITEMS;
}

/* Index of the k-th shown item of dim `dim`, or -1 for the "..." marker. */
static int64_t shown_index(const dn_tensor *t, const layout *lay, int dim, int64_t k) {
  if (!is_cut(t, lay, dim)) return k;
  if (k < EDGE_ITEMS) return k;
  if (k == EDGE_ITEMS) return -1;
  return t->shape[dim] - (2 * EDGE_ITEMS + 1 - k);
}

static int64_t shown_count(const dn_tensor *t, const layout *lay, int dim) {
  return is_cut(t, lay, dim) ? 2 * EDGE_ITEMS + 1 : t->shape[dim];
}

/* Magnitudes of the shown values: they decide fixed vs scientific. */
typedef struct value_stats {
  double max_abs;        /* over finite values */
  double min_abs_nonzero;
  bool any_finite_nonzero;
} value_stats;

static void gather_stats(const dn_tensor *t, const layout *lay, int dim, int64_t off, value_stats *st) {
  if (dim == t->ndim) {
    double v = dn_load(t, off);
    if (!isfinite(v) || v == 0) return;
    double a = fabs(v);
    if (a > st->max_abs) st->max_abs = a;
    if (!st->any_finite_nonzero || a < st->min_abs_nonzero) st->min_abs_nonzero = a;
    st->any_finite_nonzero = true;
    return;
  }
  int64_t count = shown_count(t, lay, dim);
  for (int64_t k = 0; k < count; k++) {
    int64_t i = shown_index(t, lay, dim, k);
    if (i >= 0) gather_stats(t, lay, dim + 1, off + i * t->stride[dim], st);
  }
}

static void measure_width(const dn_tensor *t, const layout *lay, int dim, int64_t off, int *width) {
  if (dim == t->ndim) {
    char buf[64];
    format_value(buf, sizeof buf, dn_load(t, off), lay->style);
    int len = (int)strlen(buf);
    if (len > *width) *width = len;
    return;
  }
  int64_t count = shown_count(t, lay, dim);
  for (int64_t k = 0; k < count; k++) {
    int64_t i = shown_index(t, lay, dim, k);
    if (i >= 0) measure_width(t, lay, dim + 1, off + i * t->stride[dim], width);
  }
}

static void emit_value(text *s, const dn_tensor *t, const layout *lay, int64_t off) {
  char buf[64];
  format_value(buf, sizeof buf, dn_load(t, off), lay->style);
  text_repeat(s, ' ', lay->width - (int)strlen(buf));
  text_puts(s, buf);
}

/* The sub-tensor at storage offset `off` spanning dims dim..ndim-1; the
   cursor is at column `dim` (one column per enclosing bracket). */
static void emit_dims(text *s, const dn_tensor *t, const layout *lay, int dim, int64_t off) {
  int64_t count = shown_count(t, lay, dim);
  text_puts(s, "[");
  if (dim == t->ndim - 1) {
    int per_line = (LINE_WIDTH - (dim + 1)) / (lay->width + 2);
    if (per_line < 1) per_line = 1;
    for (int64_t k = 0; k < count; k++) {
      if (k > 0 && k % per_line == 0) {
        text_puts(s, ",\n");
        text_repeat(s, ' ', dim + 1);
      } else if (k > 0) {
        text_puts(s, ", ");
      }
      int64_t i = shown_index(t, lay, dim, k);
      if (i < 0) text_puts(s, "...");
      else emit_value(s, t, lay, off + i * t->stride[dim]);
    }
  } else {
    for (int64_t k = 0; k < count; k++) {
      if (k > 0) {
        text_puts(s, ",");
        text_repeat(s, '\n', t->ndim - dim - 1);
        text_repeat(s, ' ', dim + 1);
      }
      int64_t i = shown_index(t, lay, dim, k);
      if (i < 0) text_puts(s, "...");
      else emit_dims(s, t, lay, dim + 1, off + i * t->stride[dim]);
    }
  }
  text_puts(s, "]");
}

/* The text, or NULL (freed) after an allocation failure. */
static char *finish(text *s) {
  if (s->failed) {
    free(s->data);
    return NULL;
  }
  return s->data;
}

/* ", grad_fn=<name>" or ", requires_grad=true" (nothing for a tensor outside autograd). */
static void emit_autograd(text *s, const dn_tensor *t) {
  const char *fn = dn_grad_fn_name(t);
  if (fn) {
    text_puts(s, ", grad_fn=<");
    text_puts(s, fn);
    text_puts(s, ">");
  } else if (t->requires_grad) {
    text_puts(s, ", requires_grad=true");
  }
}

char *dn_tensor_format(const dn_tensor *t) {
  if (!t) return NULL;
  text s = {NULL, 0, 0, false};
  int64_t numel = dn_tensor_numel(t);
  layout lay = {numel > SUMMARY_THRESHOLD, STYLE_INTEGER, 0};
  if (t->dtype == DN_F32 && numel > 0) {   /* an empty [2^39, 0] has nothing to look at */
    value_stats st = {0, 0, false};
    gather_stats(t, &lay, 0, t->offset, &st);
    bool scientific = st.any_finite_nonzero && (st.max_abs >= 1e8 || st.min_abs_nonzero < 1e-4 ||
                                                st.max_abs / st.min_abs_nonzero > 1e3);
    lay.style = scientific ? STYLE_SCIENTIFIC : STYLE_FIXED;
  }
  if (t->ndim == 0) {
    char buf[64];
    format_value(buf, sizeof buf, dn_load(t, t->offset), lay.style);
    text_puts(&s, "tensor(");
    text_puts(&s, buf + (buf[0] == ' '));   /* a lone value needs no sign column */
    if (t->dtype != DN_F32) {
      text_puts(&s, ", dtype=");
      text_puts(&s, dn_dtype_name(t->dtype));
    }
    emit_autograd(&s, t);
    text_puts(&s, ")");
    return finish(&s);
  }
  if (numel == 0) {
    text_puts(&s, "[]");
  } else {
    measure_width(t, &lay, 0, t->offset, &lay.width);
    emit_dims(&s, t, &lay, 0, t->offset);
  }
  char shape[DN_MAX_DIMS * 24 + 4];
  text_puts(&s, "\ndropnet.Tensor of shape ");
  text_puts(&s, dn_shape_str(t, shape, sizeof shape));
  text_puts(&s, ", ");
  text_puts(&s, dn_dtype_name(t->dtype));
  emit_autograd(&s, t);
  return finish(&s);
}
