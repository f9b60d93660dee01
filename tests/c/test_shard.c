/*
** Batch shards in the generator (rng.h): a generator holding samples
** [first, first + count) of a batch of total draws, for a count-sample
** input, exactly what the same op draws for those rows of the total-sample
** input from the same state, and advances the offset as that op does.
** Every per-sample op is run on the whole batch and on shards (unaligned
** firsts, pieces covering the batch) and compared bit for bit: outputs,
** input gradients, offsets after; at 1 and 2 threads.
*/
#include "testutil.h"
#include "testutil_dropout.h"

#include <string.h>

#include "dropnet/augment.h"
#include "dropnet/dropblock.h"
#include "dropnet/dropout.h"

typedef enum op_kind {
  OP_DROPOUT, OP_ALPHA, OP_GAUSSIAN, OP_CHANNELS, OP_LOCKED, OP_DROPBLOCK, OP_LINEAR, OP_CROP, OP_HFLIP,
  OP_MASK, OP_BLOCK_MASK
} op_kind;

static const char *const op_names[] = {"dropout", "alpha_dropout", "gaussian_dropout", "dropout_channels",
                                       "dropout_locked", "dropblock2d", "linear_relu_dropout", "random_crop",
                                       "random_hflip", "dropout_mask", "dropblock2d_mask"};

/* One op on a batch: x's shape with the batch size at dim `batch_dim`. */
typedef struct op_case {
  op_kind kind;
  int ndim;
  int64_t shape[4];   /* shape[batch_dim] is replaced by the batch size */
  int batch_dim;
  double p;
  int64_t extra;      /* dropblock: block size; linear: out features */
} op_case;

static bool differentiable(op_kind k) { return k <= OP_LINEAR; }

/* y = op(x) with rng; w and b for the linear layer. */
static dn_status run(const op_case *c, dn_tensor **y, dn_tensor *x, dn_tensor *w, dn_tensor *b, dn_rng *rng) {
  switch (c->kind) {
    case OP_DROPOUT: return dn_dropout(y, x, c->p, rng, DN_DROPOUT_INVERTED);
    case OP_ALPHA: return dn_alpha_dropout(y, x, c->p, rng);
    case OP_GAUSSIAN: return dn_gaussian_dropout(y, x, c->p, rng);
    case OP_CHANNELS: return dn_dropout_channels(y, x, c->p, rng, DN_DROPOUT_INVERTED);
    case OP_LOCKED: return dn_dropout_locked(y, x, c->p, rng, DN_DROPOUT_INVERTED);
    case OP_DROPBLOCK: return dn_dropblock2d(y, x, c->p, c->extra, rng);
    case OP_LINEAR: return dn_linear_relu_dropout(y, x, w, b, c->p, rng, DN_DROPOUT_INVERTED);
    case OP_CROP: return dn_random_crop(y, x, x->shape[2] - 1, x->shape[3], 2, 1, 0.5, rng);
    case OP_HFLIP: return dn_random_hflip(y, x, c->p, rng);
    case OP_MASK: return dn_dropout_mask(y, rng, x->ndim, x->shape, c->p);
    case OP_BLOCK_MASK: return dn_dropblock2d_mask(y, rng, x->ndim, x->shape, c->p, c->extra);
  }
  return DN_EINVAL;
}

static void float_bits_equal(const char *what, const dn_tensor *local, dn_tensor *full, int dim, int64_t first,
                             int64_t count) {
  dn_tensor *rows;
  DN_OK_OR_FAIL(dn_narrow(&rows, full, dim, first, count));
  assert_int_equal(dn_tensor_numel(rows), dn_tensor_numel(local));
  for (int64_t i = 0; i < dn_tensor_numel(local); i++) {
    float a = (float)dn_test_at(local, i), e = (float)dn_test_at(rows, i);
    if (memcmp(&a, &e, sizeof a))
      fail_msg("%s: element %lld of the shard is %.9g, the full batch's row has %.9g", what, (long long)i, a, e);
  }
  dn_tensor_release(rows);
}

/*
** The fused linear's shard output against the contract: the sgemm's
** blocking depends on the batch size, so rows of the whole batch's product
** need not be bitwise those of the shard's. The random part is checked
** exactly instead: element (r, o) is relu(x w^T + b) * scale (the shard's
** own linear layer) iff the whole batch's decision (first + r) * out + o
** keeps, else 0.
*/
static void linear_matches_contract(const dn_tensor *ys, dn_tensor *xs, dn_tensor *w, dn_tensor *b,
                                    const dn_rng *start, int64_t first, double p) {
  dn_tensor *plain, *detached;
  DN_OK_OR_FAIL(dn_detach(&detached, xs));
  DN_OK_OR_FAIL(dn_linear(&plain, detached, w, b, DN_ACT_RELU));
  float scale = ref_scale(p, DN_DROPOUT_INVERTED);
  int64_t out = w->shape[0];
  for (int64_t i = 0; i < dn_tensor_numel(ys); i++) {
    float want = ref_keep(start, first * out + i, p) ? (float)dn_test_at(plain, i) * scale : 0.0f;
    float got = (float)dn_test_at(ys, i);
    if (memcmp(&got, &want, sizeof got))
      fail_msg("linear_relu_dropout: element %lld of the shard is %.9g, the contract says %.9g", (long long)i, got,
               want);
  }
  dn_tensor_release(plain);
  dn_tensor_release(detached);
}

static dn_tensor *shaped(const op_case *c, int64_t batch, uint64_t seed) {
  int64_t shape[4];
  memcpy(shape, c->shape, sizeof shape);
  shape[c->batch_dim] = batch;
  return nonzero_random(seed, c->ndim, shape);
}

/*
** The op on the whole batch of `total`, then on every shard in pieces
** (first, count pairs): shard outputs, x gradients and offsets after must
** equal the whole batch's. A shard's input is given contiguous and as a
** strided view (a narrow of the whole batch's x, transposed copies).
*/
static void check_pieces(const op_case *c, int64_t total, int n_pieces, const int64_t (*pieces)[2]) {
  const uint64_t seed = 0xD15C0 + (uint64_t)c->kind, offset = 5;
  bool grad = differentiable(c->kind);
  dn_tensor *x = shaped(c, total, seed ^ 0x77), *w = NULL, *b = NULL, *y, *g = NULL;
  if (c->kind == OP_LINEAR) {
    w = dn_test_random(seed + 1, 2, (int64_t[]){c->extra, c->shape[1]});
    b = dn_test_random(seed + 2, 1, (int64_t[]){c->extra});
  }
  if (grad) DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  dn_rng full = make_rng(seed, offset);
  DN_OK_OR_FAIL(run(c, &y, x, w, b, &full));
  if (grad) {
    g = nonzero_random(seed + 3, y->ndim, y->shape);
    DN_OK_OR_FAIL(dn_backward(y, g, false));
  }
  int ydim = c->kind == OP_LINEAR ? 0 : c->batch_dim;
  for (int k = 0; k < n_pieces; k++) {
    int64_t first = pieces[k][0], count = pieces[k][1];
    dn_tensor *view, *detached, *xs, *ys, *gs = NULL;
    DN_OK_OR_FAIL(dn_narrow(&view, x, c->batch_dim, first, count));
    DN_OK_OR_FAIL(dn_detach(&detached, view));
    DN_OK_OR_FAIL(dn_clone(&xs, detached));   /* contiguous, a leaf of its own */
    dn_tensor_release(detached);
    dn_tensor_release(view);
    dn_tensor *strided = dn_test_noncontiguous(xs);
    if (grad) DN_OK_OR_FAIL(dn_requires_grad_(xs, true));
    dn_rng shard = make_rng(seed, offset);
    DN_OK_OR_FAIL(dn_rng_set_shard(&shard, first, count, total));
    DN_OK_OR_FAIL(run(c, &ys, xs, w, b, &shard));
    dn_rng start = make_rng(seed, offset);
    if (c->kind == OP_LINEAR) linear_matches_contract(ys, xs, w, b, &start, first, c->p);
    else float_bits_equal(op_names[c->kind], ys, y, ydim, first, count);
    assert_int_equal(shard.offset, full.offset);
    assert_int_equal(shard.shard_first, first);   /* the op leaves the configuration alone */
    if (grad) {
      DN_OK_OR_FAIL(dn_narrow(&gs, g, ydim, first, count));
      DN_OK_OR_FAIL(dn_backward(ys, gs, false));
      if (c->kind == OP_LINEAR) {   /* gs's masked rows through another sgemm: close, not bitwise */
        dn_tensor *rows;
        DN_OK_OR_FAIL(dn_narrow(&rows, x->grad, 0, first, count));
        dn_test_assert_close(xs->grad, rows, 1e-5);
        dn_tensor_release(rows);
      } else {
        float_bits_equal(op_names[c->kind], xs->grad, x->grad, c->batch_dim, first, count);
      }
      dn_tensor_release(gs);
    }
    dn_tensor_release(ys);
    /* the same from a strided input */
    shard = make_rng(seed, offset);
    DN_OK_OR_FAIL(dn_rng_set_shard(&shard, first, count, total));
    DN_OK_OR_FAIL(run(c, &ys, strided, w, b, &shard));
    if (c->kind == OP_LINEAR) linear_matches_contract(ys, strided, w, b, &start, first, c->p);
    else float_bits_equal(op_names[c->kind], ys, y, ydim, first, count);
    dn_tensor_release(ys);
    dn_tensor_release(strided);
    dn_tensor_release(xs);
  }
  dn_tensor_release(g);
  dn_tensor_release(y);
  dn_tensor_release(b);
  dn_tensor_release(w);
  dn_tensor_release(x);
}

/* Shards of 7 (unaligned firsts, the batch in 2 and 3 pieces) and of 5. */
static const int64_t pieces7[][2] = {{3, 2}, {0, 3}, {3, 4}, {0, 2}, {2, 3}, {5, 2}, {6, 1}, {0, 7}};
static const int64_t pieces5[][2] = {{0, 1}, {1, 2}, {3, 2}, {4, 1}};
#define N_PIECES(a) ((int)(sizeof a / sizeof *a))

static const op_case cases[] = {
  {OP_DROPOUT, 2, {0, 3}, 0, 0.4, 0},
  {OP_DROPOUT, 2, {0, 5}, 0, 0.4, 0},
  {OP_DROPOUT, 2, {0, 13}, 0, 0.3, 0},
  {OP_DROPOUT, 3, {0, 3, 1667}, 0, 0.5, 0},   /* a shard above the parallel grain */
  {OP_DROPOUT, 1, {0}, 0, 0.5, 0},
  {OP_ALPHA, 2, {0, 5}, 0, 0.3, 0},
  {OP_ALPHA, 2, {0, 13}, 0, 0.6, 0},
  {OP_GAUSSIAN, 2, {0, 3}, 0, 0.3, 0},
  {OP_GAUSSIAN, 2, {0, 5}, 0, 0.5, 0},
  {OP_GAUSSIAN, 3, {0, 13, 389}, 0, 0.2, 0},
  {OP_CHANNELS, 3, {0, 3, 4}, 0, 0.4, 0},
  {OP_CHANNELS, 4, {0, 5, 2, 3}, 0, 0.5, 0},
  {OP_CHANNELS, 2, {0, 13}, 0, 0.5, 0},   /* one element per channel: the ROWS layout */
  {OP_LOCKED, 3, {4, 0, 3}, 1, 0.4, 0},
  {OP_LOCKED, 3, {2, 0, 13}, 1, 0.5, 0},
  {OP_DROPBLOCK, 4, {0, 3, 5, 6}, 0, 0.3, 3},
  {OP_DROPBLOCK, 4, {0, 1, 4, 5}, 0, 0.5, 2},
  {OP_DROPBLOCK, 4, {0, 2, 40, 41}, 0, 0.2, 5},   /* the walk's windows refill */
  {OP_LINEAR, 2, {0, 4}, 0, 0.4, 3},
  {OP_LINEAR, 2, {0, 6}, 0, 0.5, 13},
  {OP_LINEAR, 2, {0, 7}, 0, 0.5, 1500},
  {OP_CROP, 4, {0, 2, 5, 4}, 0, 0.0, 0},
  {OP_HFLIP, 4, {0, 2, 3, 4}, 0, 0.5, 0},
  {OP_HFLIP, 3, {0, 3, 5}, 0, 0.5, 0},
  {OP_MASK, 2, {0, 5}, 0, 0.5, 0},
  {OP_MASK, 3, {0, 3, 13}, 0, 0.3, 0},
  {OP_BLOCK_MASK, 4, {0, 3, 5, 6}, 0, 0.3, 3},
};

static void check_all(int threads) {
  DN_OK_OR_FAIL(dn_set_num_threads(threads));
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    check_pieces(&cases[i], 7, N_PIECES(pieces7), pieces7);
    check_pieces(&cases[i], 5, N_PIECES(pieces5), pieces5);
  }
}

static void test_shards_match_the_full_batch_1_thread(void **state) {
  (void)state;
  check_all(1);
}

static void test_shards_match_the_full_batch_2_threads(void **state) {
  (void)state;
  check_all(2);
}

/* A base large enough that the decision index passes 2^32 blocks' worth of
   bits is still the full batch's (the base is 64-bit throughout). */
static void test_far_shard(void **state) {
  (void)state;
  op_case c = {OP_DROPOUT, 2, {0, 3}, 0, 0.5, 0};
  int64_t total = (int64_t)1 << 36, first = total - 5;
  dn_tensor *x = shaped(&c, 2, 9), *y;
  dn_rng rng = make_rng(42, 1);
  DN_OK_OR_FAIL(dn_rng_set_shard(&rng, first, 2, total));
  DN_OK_OR_FAIL(dn_dropout(&y, x, c.p, &rng, DN_DROPOUT_INVERTED));
  dn_rng ref = make_rng(42, 1);
  float scale = ref_scale(c.p, DN_DROPOUT_INVERTED);
  for (int64_t i = 0; i < 6; i++) {
    float want = ref_keep(&ref, first * 3 + i, c.p) ? (float)dn_test_at(x, i) * scale : 0.0f;
    assert_true((float)dn_test_at(y, i) == want);
  }
  assert_int_equal(rng.offset, 1 + (uint64_t)(total * 3 / 8) + (total * 3 % 8 != 0));
  dn_tensor_release(y);
  dn_tensor_release(x);
}

/* dropconnect's weight mask and rand/randn/randperm are not per sample. */
static void test_not_per_sample_ops_ignore_the_shard(void **state) {
  (void)state;
  dn_tensor *x = dn_test_random(1, 2, (int64_t[]){2, 4}), *w = dn_test_random(2, 2, (int64_t[]){3, 4});
  dn_tensor *y1, *y2, *r1, *r2;
  dn_rng plain = make_rng(3, 2), sharded = make_rng(3, 2);
  DN_OK_OR_FAIL(dn_rng_set_shard(&sharded, 1, 2, 9));
  DN_OK_OR_FAIL(dn_dropconnect_linear(&y1, x, w, NULL, 0.5, &plain));
  DN_OK_OR_FAIL(dn_dropconnect_linear(&y2, x, w, NULL, 0.5, &sharded));
  float_bits_equal("dropconnect_linear", y2, y1, 0, 0, 2);
  assert_int_equal(plain.offset, sharded.offset);
  int64_t shape[2] = {5, 3};
  DN_OK_OR_FAIL(dn_tensor_rand(&r1, &plain, 2, shape));
  DN_OK_OR_FAIL(dn_tensor_rand(&r2, &sharded, 2, shape));
  float_bits_equal("rand", r2, r1, 0, 0, 5);
  dn_tensor_release(r1);
  dn_tensor_release(r2);
  DN_OK_OR_FAIL(dn_tensor_randn(&r1, &plain, 2, shape));
  DN_OK_OR_FAIL(dn_tensor_randn(&r2, &sharded, 2, shape));
  float_bits_equal("randn", r2, r1, 0, 0, 5);
  dn_tensor_release(r1);
  dn_tensor_release(r2);
  DN_OK_OR_FAIL(dn_randperm(&r1, &plain, 11, 0));
  DN_OK_OR_FAIL(dn_randperm(&r2, &sharded, 11, 0));
  for (int64_t i = 0; i < 11; i++) assert_true(dn_test_at(r1, i) == dn_test_at(r2, i));
  assert_int_equal(plain.offset, sharded.offset);
  dn_tensor_release(r1);
  dn_tensor_release(r2);
  dn_tensor_release(y1);
  dn_tensor_release(y2);
  dn_tensor_release(w);
  dn_tensor_release(x);
}

static void test_set_and_clear(void **state) {
  (void)state;
  dn_rng rng;
  memset(&rng, 0xAB, sizeof rng);
  dn_rng_seed(&rng, 7);   /* seeding leaves no shard, whatever was in memory */
  assert_int_equal(rng.shard_first, 0);
  assert_int_equal(rng.shard_count, 0);
  assert_int_equal(rng.shard_total, 0);
  DN_EXPECT_ERROR(dn_rng_set_shard(&rng, -1, 2, 5), DN_EINVAL, "rng_set_shard: a shard needs 0 <= first");
  DN_EXPECT_ERROR(dn_rng_set_shard(&rng, 0, 0, 5), DN_EINVAL, "got first 0, count 0, total 5");
  DN_EXPECT_ERROR(dn_rng_set_shard(&rng, 4, 2, 5), DN_EINVAL, "rng_set_shard");
  DN_EXPECT_ERROR(dn_rng_set_shard(&rng, INT64_MAX, INT64_MAX, INT64_MAX), DN_EINVAL, "rng_set_shard");
  DN_EXPECT_ERROR(dn_rng_set_shard(&rng, 1, INT64_MAX, INT64_MAX), DN_EINVAL, "rng_set_shard");
  DN_EXPECT_ERROR(dn_rng_set_shard(NULL, 0, 1, 1), DN_EINVAL, "rng_set_shard: generator is NULL");
  assert_int_equal(rng.shard_count, 0);   /* a failed call changes nothing */
  DN_OK_OR_FAIL(dn_rng_set_shard(&rng, 3, 2, 5));
  assert_int_equal(rng.seed, 7);
  assert_int_equal(rng.offset, 0);   /* configuration, not state */
  dn_rng_clear_shard(&rng);
  assert_int_equal(rng.shard_count, 0);
  /* cleared: the whole tensor is the batch again */
  dn_tensor *x = dn_test_random(1, 2, (int64_t[]){4, 3}), *y;
  DN_OK_OR_FAIL(dn_dropout(&y, x, 0.5, &rng, DN_DROPOUT_INVERTED));
  dn_tensor_release(y);
  /* a zero-initialized generator has no shard */
  dn_rng zero = {0};
  DN_OK_OR_FAIL(dn_dropout(&y, x, 0.5, &zero, DN_DROPOUT_INVERTED));
  dn_tensor_release(y);
  dn_tensor_release(x);
}

static void test_errors(void **state) {
  (void)state;
  dn_rng rng = make_rng(1, 0);
  DN_OK_OR_FAIL(dn_rng_set_shard(&rng, 64, 64, 128));
  dn_tensor *x32 = dn_test_random(1, 2, (int64_t[]){32, 3}), *y = NULL;
  DN_EXPECT_ERROR(dn_dropout(&y, x32, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE,
                  "dropout: the generator holds samples 65..128 of a batch of 128 (64 samples), but the input's "
                  "batch dimension has size 32");
  assert_null(y);
  DN_EXPECT_ERROR(dn_dropout(&y, x32, 0.0, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE, "dropout: the generator holds");
  DN_EXPECT_ERROR(dn_alpha_dropout(&y, x32, 0.5, &rng), DN_ESHAPE, "alpha_dropout: the generator holds");
  DN_EXPECT_ERROR(dn_gaussian_dropout(&y, x32, 0.5, &rng), DN_ESHAPE, "gaussian_dropout: the generator holds");
  DN_EXPECT_ERROR(dn_dropout_channels(&y, x32, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE,
                  "dropout_channels: the generator holds");
  dn_tensor *seq = dn_test_random(2, 3, (int64_t[]){64, 32, 2});   /* T = 64 is not the batch */
  DN_EXPECT_ERROR(dn_dropout_locked(&y, seq, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE,
                  "dropout_locked: the generator holds samples 65..128 of a batch of 128 (64 samples), but the "
                  "input's batch dimension has size 32");
  dn_tensor *img3 = dn_test_random(3, 3, (int64_t[]){64, 5, 5});   /* [C, H, W]: no batch */
  DN_EXPECT_ERROR(dn_dropblock2d(&y, img3, 0.5, 2, &rng), DN_ESHAPE,
                  "dropblock2d: the generator holds samples 65..128 of a batch of 128, but input [64,5,5] has no "
                  "batch dimension");
  DN_EXPECT_ERROR(dn_dropblock2d_mask(&y, &rng, 3, (int64_t[]){64, 5, 5}, 0.5, 2), DN_ESHAPE,
                  "dropblock2d_mask: the generator holds");
  dn_tensor *img4 = dn_test_random(4, 4, (int64_t[]){32, 1, 5, 5});
  DN_EXPECT_ERROR(dn_dropblock2d(&y, img4, 0.5, 2, &rng), DN_ESHAPE, "dropblock2d: the generator holds");
  DN_EXPECT_ERROR(dn_random_crop(&y, img4, 5, 5, 0, 0, 0.0, &rng), DN_ESHAPE, "random_crop: the generator holds");
  DN_EXPECT_ERROR(dn_random_hflip(&y, img4, 0.5, &rng), DN_ESHAPE, "random_hflip: the generator holds");
  DN_EXPECT_ERROR(dn_dropout_mask(&y, &rng, 2, (int64_t[]){32, 3}, 0.5), DN_ESHAPE, "dropout_mask: the generator holds");
  DN_EXPECT_ERROR(dn_dropout_mask(&y, &rng, 0, NULL, 0.5), DN_ESHAPE, "dropout_mask: the generator holds");
  dn_tensor *w = dn_test_random(5, 2, (int64_t[]){4, 3}), *v = dn_test_random(6, 1, (int64_t[]){3});
  DN_EXPECT_ERROR(dn_linear_relu_dropout(&y, x32, w, NULL, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE,
                  "linear_relu_dropout: the generator holds");
  DN_EXPECT_ERROR(dn_linear_relu_dropout(&y, v, w, NULL, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE,
                  "linear_relu_dropout: the generator holds samples 65..128 of a batch of 128, but input [3] has no "
                  "batch dimension");
  dn_tensor *scalar;
  DN_OK_OR_FAIL(dn_tensor_full(&scalar, DN_F32, 0, NULL, 1.0));
  DN_EXPECT_ERROR(dn_dropout(&y, scalar, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE,
                  "dropout: the generator holds samples 65..128 of a batch of 128, but input [] has no batch");
  /* an empty batch is not the shard's either */
  dn_tensor *empty = dn_test_random(7, 2, (int64_t[]){0, 3});
  DN_EXPECT_ERROR(dn_dropout(&y, empty, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE, "has size 0");
  assert_int_equal(rng.offset, 0);   /* no failed call drew */
  /* a batch too large for 64-bit decision numbers */
  DN_OK_OR_FAIL(dn_rng_set_shard(&rng, 0, 32, INT64_MAX));
  DN_EXPECT_ERROR(dn_dropout(&y, x32, 0.5, &rng, DN_DROPOUT_INVERTED), DN_ESHAPE, "dropout: a batch of");
  dn_tensor *img32 = dn_test_random(8, 4, (int64_t[]){32, 1, 5, 5});
  DN_EXPECT_ERROR(dn_dropblock2d(&y, img32, 0.5, 2, &rng), DN_ESHAPE, "dropblock2d: a batch of");
  /* fields set by hand are checked before use */
  rng.shard_first = -3;
  DN_EXPECT_ERROR(dn_dropout(&y, x32, 0.5, &rng, DN_DROPOUT_INVERTED), DN_EINVAL, "dropout: a shard needs");
  /* dropconnect draws for the layer: a shard of another size is fine */
  dn_rng_clear_shard(&rng);
  DN_OK_OR_FAIL(dn_rng_set_shard(&rng, 0, 5, 9));
  DN_OK_OR_FAIL(dn_dropconnect_linear(&y, x32, w, NULL, 0.5, &rng));
  dn_tensor_release(y);
  dn_tensor_release(img32);
  dn_tensor_release(empty);
  dn_tensor_release(scalar);
  dn_tensor_release(v);
  dn_tensor_release(w);
  dn_tensor_release(img4);
  dn_tensor_release(img3);
  dn_tensor_release(seq);
  dn_tensor_release(x32);
}

/* --- finite differences on the sharded ops ------------------------------------------ */

typedef struct fd_ctx {
  op_case c;
  int64_t first, total;
} fd_ctx;

static dn_status sharded_fn(dn_tensor **out, dn_tensor *const *in, const void *opaque) {
  const fd_ctx *f = opaque;
  dn_rng rng = make_rng(77, 3);   /* the same mask at every evaluation */
  dn_status st = dn_rng_set_shard(&rng, f->first, in[0]->shape[f->c.batch_dim], f->total);
  if (st) return st;
  return run(&f->c, out, in[0], in[1], in[2], &rng);
}

static void test_gradcheck_sharded(void **state) {
  (void)state;
  static const fd_ctx fds[] = {
    {{OP_DROPOUT, 2, {2, 5}, 0, 0.4, 0}, 3, 7},
    {{OP_ALPHA, 2, {2, 5}, 0, 0.4, 0}, 3, 7},
    {{OP_GAUSSIAN, 2, {2, 3}, 0, 0.3, 0}, 1, 5},
    {{OP_CHANNELS, 3, {2, 3, 2}, 0, 0.5, 0}, 3, 7},
    {{OP_LOCKED, 3, {3, 2, 5}, 1, 0.4, 0}, 1, 5},
    {{OP_DROPBLOCK, 4, {2, 1, 4, 5}, 0, 0.4, 2}, 3, 7},
    {{OP_LINEAR, 2, {2, 4}, 0, 0.3, 5}, 3, 7},
  };
  for (size_t i = 0; i < sizeof fds / sizeof *fds; i++) {
    const op_case *c = &fds[i].c;
    dn_tensor *in[3] = {dn_test_random(10 + i, c->ndim, c->shape), NULL, NULL};
    if (c->kind == OP_LINEAR) {
      in[1] = dn_test_random(20 + i, 2, (int64_t[]){c->extra, c->shape[1]});
      in[2] = dn_test_random(30 + i, 1, (int64_t[]){c->extra});
      DN_OK_OR_FAIL(dn_requires_grad_(in[1], true));
      DN_OK_OR_FAIL(dn_requires_grad_(in[2], true));
    }
    DN_OK_OR_FAIL(dn_requires_grad_(in[0], true));
    dn_test_gradcheck(op_names[c->kind], sharded_fn, &fds[i], 3, in, 1e-3, 1e-2, 1e-3);
    for (int k = 0; k < 3; k++) dn_tensor_release(in[k]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_shards_match_the_full_batch_1_thread, dn_test_reset_modes),
    cmocka_unit_test_setup(test_shards_match_the_full_batch_2_threads, dn_test_reset_modes),
    cmocka_unit_test_setup(test_far_shard, dn_test_reset_modes),
    cmocka_unit_test_setup(test_not_per_sample_ops_ignore_the_shard, dn_test_reset_modes),
    cmocka_unit_test_setup(test_set_and_clear, dn_test_reset_modes),
    cmocka_unit_test_setup(test_errors, dn_test_reset_modes),
    cmocka_unit_test_setup(test_gradcheck_sharded, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
