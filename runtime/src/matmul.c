/*
** Matrix products (float32) through sgemm.
**
** An operand reaches sgemm without a copy whenever its matrices have one unit
** stride and the other stride at least the matrix's width: a contiguous
** matrix, a narrowed one (leading dim > size) and a transposed one (sgemm's
** transpose flag) all qualify. Only other layouts (both strides > 1, stride 0
** from expand) are copied first. A batch of 1, or a batch expanded with
** stride 0, is reduced to one matrix used for every batch.
**
** Autograd: matmul records a node; its backward is two more products
** (dA = G B^T, dB = A^T G) through the same operands with the transpose
** flags flipped, so transposed operands are never copied. Where an operand
** served every batch, its gradient sums over the batch: one sgemm over the
** folded batch when the layout allows, else sgemms accumulating in order.
** matmul_into writes into an existing tensor and is not differentiable;
** dn_matmul_into_plain is its body for kernels, without the checks.
*/
#include <limits.h>
#include <string.h>

#include "blas.h"
#include "dropnet/matmul.h"
#include "graph.h"
#include "internal.h"

/* One operand as sgemm sees it: a batch of [rows, cols] matrices. */
typedef struct operand {
  dn_tensor *t;          /* owned: the tensor itself, a view of it or a contiguous copy */
  const float *data;     /* matrix 0 */
  int64_t rows, cols;
  int64_t batch;         /* 1: the same matrix serves every batch */
  int64_t batch_stride;  /* elements between matrices when batch > 1 */
  bool trans;            /* stored as [cols, rows] */
  int64_t ld;            /* row stride of the stored matrix */
} operand;

/*
** How a [rows, cols] matrix with strides (row_stride, col_stride) goes to
** sgemm; false when it has to be copied. The stride of a dim of size 1 is
** never used, so it does not count.
*/
static bool blas_layout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride, bool *trans,
                        int64_t *ld) {
  int64_t min_ld_plain = cols > 1 ? cols : 1, min_ld_trans = rows > 1 ? rows : 1;
  if ((cols == 1 || col_stride == 1) && (rows == 1 || row_stride >= min_ld_plain)) {
    *trans = false;
    *ld = rows == 1 ? min_ld_plain : row_stride;
  } else if ((rows == 1 || row_stride == 1) && (cols == 1 || col_stride >= min_ld_trans)) {
    *trans = true;
    *ld = cols == 1 ? min_ld_trans : col_stride;
  } else {
    return false;
  }
  return *ld <= INT_MAX;
}

static void operand_release(operand *o) {
  dn_tensor_release(o->t);
  o->t = NULL;
}

/*
** Fills o from t (2-D or 3-D float32, no dim empty): reduces a broadcast
** batch to one matrix and copies t when its matrices cannot go to sgemm as
** they are. Takes no reference to t on failure.
*/
static dn_status operand_init(operand *o, dn_tensor *t) {
  memset(o, 0, sizeof *o);
  dn_status st;
  if (t->ndim == 3 && (t->shape[0] == 1 || t->stride[0] == 0)) {   /* matrix 0, a plain alias */
    st = dn_tensor_alias(&o->t, t, 2, t->shape + 1, t->stride + 1, t->offset);
    if (st) return st;
  } else {
    o->t = dn_tensor_retain(t);
  }
  int nd = o->t->ndim;
  o->rows = o->t->shape[nd - 2];
  o->cols = o->t->shape[nd - 1];
  o->batch = nd == 3 ? o->t->shape[0] : 1;
  if (!blas_layout(o->rows, o->cols, o->t->stride[nd - 2], o->t->stride[nd - 1], &o->trans, &o->ld)) {
    dn_tensor *copy;
    st = dn_plain_contiguous(&copy, o->t);
    if (st) {
      operand_release(o);
      return st;
    }
    dn_tensor_release(o->t);
    o->t = copy;
    o->trans = false;
    o->ld = o->cols;
  }
  o->batch_stride = nd == 3 ? o->t->stride[0] : 0;
  o->data = DN_F32_AT(o->t, o->t->offset);
  return DN_OK;
}

/* c = beta * c over count elements; beta 0 clears (as sgemm: NaN in c does not survive). */
static void scale_output(float *c, int64_t count, float beta) {
  if (beta == 0.0f) {
    memset(c, 0, (size_t)count * sizeof *c);
  } else if (beta != 1.0f) {
    for (int64_t i = 0; i < count; i++) c[i] *= beta;
  }
}

/*
** c[batch] = alpha * a[batch] @ b[batch] + beta * c[batch] for `batches`
** contiguous [n, m] outputs. When a is a real batch over one shared b and
** its matrices lie evenly one after another, the batch is folded into the
** rows of a single sgemm (a Linear layer over [B, T, F] input).
*/
static void run_gemm(float *c, const operand *a, const operand *b, int64_t batches, float alpha, float beta) {
  int64_t n = a->rows, k = a->cols, m = b->cols;
  if (a->batch > 1 && b->batch == 1 && !a->trans && a->batch_stride == n * a->ld &&
      dn_blas_fits(batches * n, m, k, a->ld, b->ld, m)) {
    dn_blas_sgemm(false, b->trans, batches * n, m, k, alpha, a->data, a->ld, b->data, b->ld, beta, c, m);
    return;
  }
  for (int64_t i = 0; i < batches; i++) {
    const float *ai = a->data + (a->batch > 1 ? i * a->batch_stride : 0);
    const float *bi = b->data + (b->batch > 1 ? i * b->batch_stride : 0);
    dn_blas_sgemm(a->trans, b->trans, n, m, k, alpha, ai, a->ld, bi, b->ld, beta, c + i * n * m, m);
  }
}

static dn_status check_f32(const char *op, const dn_tensor *a, const dn_tensor *b) {
  if (a->dtype != DN_F32 || b->dtype != DN_F32)
    return dn_fail(DN_ETYPE, "%s: expects float32 tensors (got %s and %s)", op, dn_dtype_name(a->dtype),
                   dn_dtype_name(b->dtype));
  return DN_OK;
}

static dn_status mismatch(const char *op, const dn_tensor *a, const dn_tensor *b, int64_t ka, int64_t kb) {
  char sa[128], sb[128];
  return dn_fail(DN_ESHAPE, "%s: shapes %s and %s do not match (%lld != %lld)", op, dn_shape_str(a, sa, sizeof sa),
                 dn_shape_str(b, sb, sizeof sb), (long long)ka, (long long)kb);
}

static dn_status too_large(const char *op, const dn_tensor *a, const dn_tensor *b) {
  char sa[128], sb[128];
  return dn_fail(DN_EINVAL, "%s: shapes %s and %s are too large for BLAS (a size above %d)", op,
                 dn_shape_str(a, sa, sizeof sa), dn_shape_str(b, sb, sizeof sb), INT_MAX);
}

/* Both operands as 2-D/3-D plain aliases: a 1-D a is a row [1,k], a 1-D b a column [k,1]. */
static dn_status promote_vectors(dn_tensor **a2, dn_tensor **b2, dn_tensor *a, dn_tensor *b) {
  *b2 = NULL;
  dn_status st = dn_matrix_alias(a2, a, 0);
  if (st) return st;
  st = dn_matrix_alias(b2, b, 1);
  if (st) {
    dn_tensor_release(*a2);
    *a2 = NULL;
  }
  return st;
}

/* The operand op(x)^T: the same stored matrices with the flag flipped (holds no reference). */
static operand transposed(const operand *o) {
  operand r = *o;
  r.t = NULL;
  r.rows = o->cols;
  r.cols = o->rows;
  r.trans = !o->trans;
  return r;
}

/*
** c = sum over the batch of x[i] @ y[i]: the gradient of an operand that
** served every batch. When x is stored transposed and both are batches of
** consecutive matrices, the sum is one product over the batch folded into
** k (dB = A^T G for A [B, n, k] and a shared B); else one sgemm per batch,
** accumulating in batch order.
*/
static void gemm_batch_sum(float *c, const operand *x, const operand *y, int64_t batches) {
  int64_t rows = x->rows, cols = y->cols, k = x->cols;
  if (x->trans && !y->trans && x->batch > 1 && y->batch > 1 && x->batch_stride == k * x->ld &&
      y->batch_stride == k * y->ld && dn_blas_fits(rows, cols, batches * k, x->ld, y->ld, cols)) {
    dn_blas_sgemm(true, false, rows, cols, batches * k, 1.0f, x->data, x->ld, y->data, y->ld, 0.0f, c, cols);
    return;
  }
  for (int64_t i = 0; i < batches; i++) {
    const float *xi = x->data + (x->batch > 1 ? i * x->batch_stride : 0);
    const float *yi = y->data + (y->batch > 1 ? i * y->batch_stride : 0);
    dn_blas_sgemm(x->trans, y->trans, rows, cols, k, 1.0f, xi, x->ld, yi, y->ld, i ? 1.0f : 0.0f, c, cols);
  }
}

/*
** dA = G @ B^T and dB = A^T @ G per batch, with 1-D operands as a row (a)
** or a column (b) and G viewed as [batch, n, m]. The gradients are written
** straight into new tensors of the inputs' shapes (the promoted layouts of
** a 1-D input are the same memory). SAVED_A is a (for dB), SAVED_B is b (for dA).
*/
enum { SAVED_A, SAVED_B };

static dn_status matmul_backward(dn_node *node, dn_tensor *grad, dn_tensor **grad_in) {
  int nda = node->in_ndim[0], ndb = node->in_ndim[1];
  const int64_t *sa = node->in_shape[0], *sb = node->in_shape[1];
  int64_t n = nda == 1 ? 1 : sa[nda - 2], k = sa[nda - 1], m = ndb == 1 ? 1 : sb[ndb - 1];
  int64_t batch_a = nda == 3 ? sa[0] : 1, batch_b = ndb == 3 ? sb[0] : 1;
  int64_t batches = batch_a == 1 ? batch_b : batch_a;
  dn_tensor *da = NULL, *db = NULL, *g = NULL, *g3 = NULL, *a2 = NULL, *b2 = NULL, *saved;
  operand og, oa, ob;
  memset(&og, 0, sizeof og);
  memset(&oa, 0, sizeof oa);
  memset(&ob, 0, sizeof ob);
  dn_status st = DN_OK;
  if (node->needs_grad[0] && (st = dn_tensor_new(&da, DN_F32, nda, sa))) goto done;
  if (node->needs_grad[1] && (st = dn_tensor_new(&db, DN_F32, ndb, sb))) goto done;
  if (batches == 0 || n == 0 || m == 0 || k == 0) {
    /* an empty sum of products: zero gradients */
    if (da) scale_output(dn_tensor_data(da), dn_tensor_numel(da), 0.0f);
    if (db) scale_output(dn_tensor_data(db), dn_tensor_numel(db), 0.0f);
    goto done;
  }
  if ((st = dn_plain_contiguous(&g, grad))) goto done;
  bool batched = nda == 3 || ndb == 3;
  int64_t g_shape[3] = {batches, n, m}, g_stride[3] = {n * m, m, 1};
  st = dn_tensor_alias(&g3, g, batched ? 3 : 2, g_shape + !batched, g_stride + !batched, g->offset);
  if (st || (st = operand_init(&og, g3))) goto done;
  if (da) {
    if ((st = dn_node_saved(node, SAVED_B, &saved)) || (st = dn_matrix_alias(&b2, saved, 1)) || (st = operand_init(&ob, b2)))
      goto done;
    operand bt = transposed(&ob);
    if (batch_a == batches) run_gemm(dn_tensor_data(da), &og, &bt, batches, 1.0f, 0.0f);
    else gemm_batch_sum(dn_tensor_data(da), &og, &bt, batches);
  }
  if (db) {
    if ((st = dn_node_saved(node, SAVED_A, &saved)) || (st = dn_matrix_alias(&a2, saved, 0)) || (st = operand_init(&oa, a2)))
      goto done;
    operand at = transposed(&oa);
    if (batch_b == batches) run_gemm(dn_tensor_data(db), &at, &og, batches, 1.0f, 0.0f);
    else gemm_batch_sum(dn_tensor_data(db), &at, &og, batches);
  }
done:
  operand_release(&og);
  operand_release(&oa);
  operand_release(&ob);
  dn_tensor_release(a2);
  dn_tensor_release(b2);
  dn_tensor_release(g3);
  dn_tensor_release(g);
  if (st) {
    dn_tensor_release(da);
    dn_tensor_release(db);
    return st;
  }
  grad_in[0] = da;
  grad_in[1] = db;
  return DN_OK;
}
static const dn_node_type matmul_node = {.name = "matmul", .backward = matmul_backward};

/* result = a @ b for checked operands, batches >= 1 and no empty dim. */
static dn_status matmul_compute(dn_tensor *result, dn_tensor *a, dn_tensor *b, int64_t batches) {
  dn_tensor *a2, *b2;
  operand oa, ob;
  dn_status st = promote_vectors(&a2, &b2, a, b);
  if (st) return st;
  st = operand_init(&oa, a2);
  if (!st) {
    st = operand_init(&ob, b2);
    if (!st) {
      run_gemm(dn_tensor_data(result), &oa, &ob, batches, 1.0f, 0.0f);
      operand_release(&ob);
    }
    operand_release(&oa);
  }
  dn_tensor_release(b2);
  dn_tensor_release(a2);
  return st;
}

dn_status dn_matmul(dn_tensor **out, dn_tensor *a, dn_tensor *b) {
  DN_FPMODE_SCOPE();
  *out = NULL;
  dn_status st = check_f32("matmul", a, b);
  if (st) return st;
  char sa[128], sb[128];
  if (a->ndim < 1 || a->ndim > 3 || b->ndim < 1 || b->ndim > 3)
    return dn_fail(DN_ESHAPE, "matmul: expects 1-D, 2-D or 3-D tensors (got shapes %s and %s)",
                   dn_shape_str(a, sa, sizeof sa), dn_shape_str(b, sb, sizeof sb));
  int64_t ka = a->shape[a->ndim - 1], kb = b->shape[b->ndim == 1 ? 0 : b->ndim - 2];
  if (ka != kb) return mismatch("matmul", a, b, ka, kb);
  int64_t batch_a = a->ndim == 3 ? a->shape[0] : 1, batch_b = b->ndim == 3 ? b->shape[0] : 1;
  if (batch_a != batch_b && batch_a != 1 && batch_b != 1)
    return dn_fail(DN_ESHAPE, "matmul: shapes %s and %s do not match (batch %lld != %lld)",
                   dn_shape_str(a, sa, sizeof sa), dn_shape_str(b, sb, sizeof sb), (long long)batch_a,
                   (long long)batch_b);
  int64_t batches = batch_a == 1 ? batch_b : batch_a;
  int64_t n = a->ndim == 1 ? 1 : a->shape[a->ndim - 2];
  int64_t m = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
  int64_t k = ka;
  if (!dn_blas_fits(n, m, k, 0, 0, m)) return too_large("matmul", a, b);

  /* output: batch (if either side has one), then n unless a is 1-D, then m unless b is 1-D */
  int64_t shape[3];
  int ndim = 0;
  if (a->ndim == 3 || b->ndim == 3) shape[ndim++] = batches;
  if (a->ndim > 1) shape[ndim++] = n;
  if (b->ndim > 1) shape[ndim++] = m;
  dn_tensor *result;
  st = dn_tensor_new(&result, DN_F32, ndim, shape);
  if (st) return st;
  if (batches == 0 || n == 0 || m == 0 || k == 0) {
    /* no sgemm with empty dims: its leading dims would be 0 */
    scale_output(dn_tensor_data(result), batches * n * m, 0.0f);
  } else {
    st = matmul_compute(result, a, b, batches);   /* through plain aliases and copies: no graph */
  }
  dn_node *node = NULL;
  if (!st) st = dn_record(result, &matmul_node, 2, (const dn_tensor *[]){a, b}, &node);
  /* dA needs b, dB needs a: save only what an input that needs grad uses */
  if (!st && node && node->needs_grad[0]) st = dn_node_save(node, SAVED_B, b);
  if (!st && node && node->needs_grad[1]) st = dn_node_save(node, SAVED_A, a);
  if (st) {
    dn_tensor_release(result);
    return st;
  }
  *out = result;
  return DN_OK;
}

dn_status dn_matmul_into(dn_tensor *out, dn_tensor *a, dn_tensor *b, float alpha, float beta) {
  DN_FPMODE_SCOPE();
  /* it writes into out behind the graph's back: refuse rather than give wrong gradients */
  if (dn_grad_enabled() && (out->requires_grad || a->requires_grad || b->requires_grad))
    return dn_fail(DN_EINVAL,
                   "matmul_into: not differentiable (it writes into an existing tensor) and %s requires grad; "
                   "use matmul, or call it with grad mode off (no_grad)",
                   out->requires_grad ? "out" : a->requires_grad ? "a" : "b");
  dn_status st = check_f32("matmul_into", a, b);
  if (st) return st;
  char sa[128], sb[128], so[128];
  if (a->ndim != 2 || b->ndim != 2)
    return dn_fail(DN_ESHAPE, "matmul_into: expects 2-D tensors (got shapes %s and %s)",
                   dn_shape_str(a, sa, sizeof sa), dn_shape_str(b, sb, sizeof sb));
  if (a->shape[1] != b->shape[0]) return mismatch("matmul_into", a, b, a->shape[1], b->shape[0]);
  int64_t n = a->shape[0], m = b->shape[1];
  if (out->dtype != DN_F32)
    return dn_fail(DN_ETYPE, "matmul_into: out must be float32 (got %s)", dn_dtype_name(out->dtype));
  if (out->ndim != 2 || out->shape[0] != n || out->shape[1] != m)
    return dn_fail(DN_ESHAPE, "matmul_into: out has shape %s, expected [%lld,%lld] for shapes %s and %s",
                   dn_shape_str(out, so, sizeof so), (long long)n, (long long)m, dn_shape_str(a, sa, sizeof sa),
                   dn_shape_str(b, sb, sizeof sb));
  if (!dn_tensor_is_contiguous(out))
    return dn_fail(DN_EINVAL, "matmul_into: out (shape %s) must be contiguous", dn_shape_str(out, so, sizeof so));
  return dn_matmul_into_plain(out, a, b, alpha, beta);
}

dn_status dn_matmul_into_plain(dn_tensor *out, dn_tensor *a, dn_tensor *b, float alpha, float beta) {
  int64_t n = a->shape[0], k = a->shape[1], m = b->shape[1];
  if (!dn_blas_fits(n, m, k, 0, 0, m)) return too_large("matmul_into", a, b);
  dn_status st;
  float *c = dn_tensor_data(out);
  if (n == 0 || m == 0) return DN_OK;
  if (k == 0) {
    scale_output(c, n * m, beta);
    dn_bump_version(out);
    return DN_OK;
  }
  /* sgemm must not read an operand it is writing: such an operand is copied */
  dn_tensor *a2 = NULL, *b2 = NULL;
  if (a->storage == out->storage) {
    if ((st = dn_plain_clone(&a2, a))) return st;
  } else {
    a2 = dn_tensor_retain(a);
  }
  if (b->storage == out->storage) {
    if ((st = dn_plain_clone(&b2, b))) goto done;
  } else {
    b2 = dn_tensor_retain(b);
  }
  operand oa, ob;
  st = operand_init(&oa, a2);
  if (st) goto done;
  st = operand_init(&ob, b2);
  if (st) {
    operand_release(&oa);
    goto done;
  }
  run_gemm(c, &oa, &ob, 1, alpha, beta);
  dn_bump_version(out);
  operand_release(&ob);
  operand_release(&oa);
done:
  dn_tensor_release(b2);
  dn_tensor_release(a2);
  return st;
}
