/* Gradient hooks in the engine (dn_register_hook, dn_hook_aliases): when they
   run and with what, replacements, order, removal, lifetimes, errors, and that
   every byte comes back (the allocator's live bytes). */
#include "testutil.h"

#include <string.h>

#include "graph.h"
#include "hook.h"

/* What a test hook does and what it saw. */
typedef struct probe {
  int id;
  int calls;
  int frees;
  double scale;            /* != 1: replaces the gradients by grad * scale */
  int replace_index;       /* group hooks: the one gradient to scale (-1: all) */
  bool fill_missing;       /* group hooks: returns zeros [3] for the gradients that are missing */
  bool fail;               /* returns an error */
  bool bad_shape;          /* replaces by a tensor of the wrong shape */
  bool remove_self;        /* removes its own handle while running */
  dn_hook *handle;
  dn_tensor *leaf;         /* when set: whether its .grad was NULL during the call */
  bool leaf_grad_was_null;
  bool grad_mode_seen;
  int frees_seen_in_call;
  int n_seen;
  dn_tensor *seen[4];      /* clones of the last gradients seen (NULL where none) */
} probe;

static int order_log[16];
static int order_n;

static void probe_forget(probe *p) {
  for (int i = 0; i < 4; i++) {
    dn_tensor_release(p->seen[i]);
    p->seen[i] = NULL;
  }
}

static dn_status probe_fn(void *userdata, int n, dn_tensor *const *grads, dn_tensor **reps) {
  probe *p = userdata;
  p->calls++;
  p->n_seen = n;
  p->grad_mode_seen = dn_grad_enabled();
  if (order_n < 16) order_log[order_n++] = p->id;
  if (p->leaf) p->leaf_grad_was_null = p->leaf->grad == NULL;
  probe_forget(p);
  for (int i = 0; i < n && i < 4; i++)
    if (grads[i]) DN_OK_OR_FAIL(dn_clone(&p->seen[i], grads[i]));
  if (p->remove_self) {
    dn_hook_remove(p->handle);
    p->frees_seen_in_call = p->frees;
  }
  if (p->fail) return dn_fail(DN_EINVAL, "probe %d: refused", p->id);
  if (p->bad_shape) return dn_tensor_zeros(&reps[0], DN_F32, 1, (int64_t[]){2});
  for (int i = 0; i < n && p->scale != 1; i++) {
    if (p->replace_index >= 0 && i != p->replace_index) continue;
    if (grads[i]) DN_OK_OR_FAIL(dn_binary_scalar(&reps[i], DN_MUL, grads[i], p->scale, false));
  }
  for (int i = 0; i < n && p->fill_missing; i++)
    if (!grads[i]) DN_OK_OR_FAIL(dn_tensor_zeros(&reps[i], DN_F32, 1, (int64_t[]){3}));
  return DN_OK;
}

static void probe_free(void *userdata) { ((probe *)userdata)->frees++; }

static probe new_probe(int id) { return (probe){.id = id, .scale = 1, .replace_index = -1}; }

static dn_tensor *leaf3(float a, float b, float c) {
  dn_tensor *x = dn_test_from(1, (int64_t[]){3}, (float[]){a, b, c});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  return x;
}

static dn_tensor *ones3(void) { return dn_test_from(1, (int64_t[]){3}, (float[]){1, 1, 1}); }

static void assert_values(const dn_tensor *t, const float *want, int n) {
  assert_non_null(t);
  assert_int_equal(dn_tensor_numel(t), n);
  for (int i = 0; i < n; i++) assert_float_equal(dn_test_at(t, i), want[i], 1e-6);
}

static void release_all(dn_tensor **list, size_t n) {
  for (size_t i = 0; i < n; i++) dn_tensor_release(list[i]);
}
#define RELEASE(...)                                   \
  do {                                                 \
    dn_tensor *list_[] = {__VA_ARGS__};                \
    release_all(list_, sizeof list_ / sizeof *list_);  \
  } while (0)

static size_t live_bytes(void) {
  dn_alloc_stats s;
  dn_alloc_get_stats(&s);
  return s.live_bytes;
}

/* --- leaves ------------------------------------------------------------------------------ */

static void test_leaf_hook_sees_gradient_before_grad_and_replaces_it(void **state) {
  (void)state;
  size_t before = live_bytes();
  dn_tensor *x = leaf3(1, 2, 3), *y, *g = ones3();
  probe p = new_probe(1);
  p.scale = 10;
  p.leaf = x;
  DN_OK_OR_FAIL(dn_register_hook(NULL, x, probe_fn, &p, probe_free));
  DN_OK_OR_FAIL(dn_mul(&y, x, x));   /* dy/dx = 2x */
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  assert_int_equal(p.calls, 1);
  assert_int_equal(p.n_seen, 1);
  assert_true(p.leaf_grad_was_null);
  assert_false(p.grad_mode_seen);
  assert_values(p.seen[0], (float[]){2, 4, 6}, 3);
  assert_values(x->grad, (float[]){20, 40, 60}, 3);
  probe_forget(&p);
  RELEASE(y, g);
  assert_int_equal(p.frees, 0);
  dn_tensor_release(x);   /* the hook goes with its tensor */
  assert_int_equal(p.frees, 1);
  assert_int_equal(live_bytes(), before);
}

static void test_leaf_used_twice_sees_the_sum_once(void **state) {
  (void)state;
  dn_tensor *x = leaf3(1, 2, 3), *sq, *y, *g = ones3();
  probe p = new_probe(1);
  DN_OK_OR_FAIL(dn_register_hook(NULL, x, probe_fn, &p, probe_free));
  DN_OK_OR_FAIL(dn_mul(&sq, x, x));
  DN_OK_OR_FAIL(dn_add(&y, sq, x));   /* dy/dx = 2x + 1, through two nodes */
  DN_OK_OR_FAIL(dn_backward(y, g, true));
  assert_int_equal(p.calls, 1);
  assert_values(p.seen[0], (float[]){3, 5, 7}, 3);
  assert_values(x->grad, (float[]){3, 5, 7}, 3);
  /* retain_graph: again; the hook sees this backward's gradient, .grad accumulates */
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  assert_int_equal(p.calls, 2);
  assert_values(p.seen[0], (float[]){3, 5, 7}, 3);
  assert_values(x->grad, (float[]){6, 10, 14}, 3);
  probe_forget(&p);
  RELEASE(x, sq, y, g);
  assert_int_equal(p.frees, 1);
}

static void test_leaf_root_runs_its_hooks(void **state) {
  (void)state;
  dn_tensor *x = dn_test_from(0, NULL, (float[]){3});
  DN_OK_OR_FAIL(dn_requires_grad_(x, true));
  probe p = new_probe(1);
  p.scale = -2;
  DN_OK_OR_FAIL(dn_register_hook(NULL, x, probe_fn, &p, probe_free));
  DN_OK_OR_FAIL(dn_backward(x, NULL, false));
  assert_int_equal(p.calls, 1);
  assert_values(x->grad, (float[]){-2}, 1);
  probe_forget(&p);
  dn_tensor_release(x);
  assert_int_equal(p.frees, 1);
}

/* --- results of ops ----------------------------------------------------------------------------- */

static void test_nonleaf_hook_replaces_the_gradient_flowing_on(void **state) {
  (void)state;
  dn_tensor *x = leaf3(1, 2, 3), *c, *sq, *y, *g = ones3();
  DN_OK_OR_FAIL(dn_clone(&c, x));
  probe p = new_probe(1);
  p.scale = 3;
  DN_OK_OR_FAIL(dn_register_hook(NULL, c, probe_fn, &p, probe_free));
  DN_OK_OR_FAIL(dn_mul(&sq, c, c));
  DN_OK_OR_FAIL(dn_add(&y, sq, c));   /* c used twice: dy/dc = 2c + 1 */
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  assert_int_equal(p.calls, 1);
  assert_values(p.seen[0], (float[]){3, 5, 7}, 3);
  assert_values(x->grad, (float[]){9, 15, 21}, 3);
  assert_null(c->grad);   /* a hook does not make an op's result keep its gradient */
  probe_forget(&p);
  RELEASE(x, sq, y, g);
  assert_int_equal(p.frees, 0);   /* c's node is still held by c */
  dn_tensor_release(c);
  assert_int_equal(p.frees, 1);
}

static void test_hooks_run_in_order_and_chain_replacements(void **state) {
  (void)state;
  dn_tensor *x = leaf3(1, 2, 3), *c, *y, *g = ones3();
  DN_OK_OR_FAIL(dn_clone(&c, x));
  probe a = new_probe(1), b = new_probe(2), d = new_probe(3);
  a.scale = 2;
  b.scale = 5;
  dn_hook *hb;
  DN_OK_OR_FAIL(dn_register_hook(NULL, c, probe_fn, &a, probe_free));
  DN_OK_OR_FAIL(dn_register_hook(&hb, c, probe_fn, &b, probe_free));
  DN_OK_OR_FAIL(dn_register_hook(NULL, c, probe_fn, &d, probe_free));
  DN_OK_OR_FAIL(dn_mul(&y, c, c));
  order_n = 0;
  DN_OK_OR_FAIL(dn_backward(y, g, true));
  assert_int_equal(order_n, 3);
  assert_int_equal(order_log[0], 1);
  assert_int_equal(order_log[1], 2);
  assert_int_equal(order_log[2], 3);
  assert_values(b.seen[0], (float[]){4, 8, 12}, 3);     /* after a's x2 */
  assert_values(d.seen[0], (float[]){20, 40, 60}, 3);   /* after b's x5 */
  assert_values(x->grad, (float[]){20, 40, 60}, 3);
  /* removed: b never runs again and is freed at once; the handle stays valid */
  dn_hook_remove(hb);
  assert_int_equal(b.frees, 1);
  dn_hook_remove(hb);   /* twice is a no-op */
  assert_int_equal(b.frees, 1);
  order_n = 0;
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  assert_int_equal(order_n, 2);
  assert_int_equal(order_log[0], 1);
  assert_int_equal(order_log[1], 3);
  assert_int_equal(b.calls, 1);
  assert_values(x->grad, (float[]){20 + 4, 40 + 8, 60 + 12}, 3);
  /* a hook registered after a removal prunes the removed one from the list */
  probe e = new_probe(4);
  DN_OK_OR_FAIL(dn_register_hook(NULL, c, probe_fn, &e, probe_free));
  assert_int_equal(c->grad_fn->hooks->count, 3);
  probe_forget(&a);
  probe_forget(&b);
  probe_forget(&d);
  RELEASE(x, c, y, g);
  assert_int_equal(a.frees, 1);
  assert_int_equal(b.frees, 1);
  assert_int_equal(d.frees, 1);
  assert_int_equal(e.frees, 1);
  dn_hook_remove(hb);   /* after its tensor is gone: a no-op */
  assert_int_equal(b.frees, 1);
  dn_hook_release(hb);
}

static void test_handle_outlives_or_dies_before_its_tensor(void **state) {
  (void)state;
  size_t before = live_bytes();
  dn_tensor *x = leaf3(1, 2, 3);
  probe p = new_probe(1), q = new_probe(2);
  dn_hook *hp, *hq;
  DN_OK_OR_FAIL(dn_register_hook(&hp, x, probe_fn, &p, probe_free));
  DN_OK_OR_FAIL(dn_register_hook(&hq, x, probe_fn, &q, probe_free));
  dn_hook_release(hp);   /* the handle goes, the hook stays */
  assert_int_equal(p.frees, 0);
  dn_tensor *y, *g = ones3();
  DN_OK_OR_FAIL(dn_mul(&y, x, x));
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  assert_int_equal(p.calls, 1);
  assert_int_equal(q.calls, 1);
  probe_forget(&p);
  probe_forget(&q);
  RELEASE(x, y, g);   /* for q the tensor goes first */
  assert_int_equal(p.frees, 1);
  assert_int_equal(q.frees, 1);
  dn_hook_remove(hq);
  assert_int_equal(q.frees, 1);
  dn_hook_release(hq);
  dn_hook_release(NULL);
  dn_hook_remove(NULL);
  assert_int_equal(live_bytes(), before);
}

static void test_hook_may_remove_itself(void **state) {
  (void)state;
  dn_tensor *x = leaf3(1, 2, 3), *y, *g = ones3();
  probe p = new_probe(1);
  p.remove_self = true;
  p.scale = 2;
  DN_OK_OR_FAIL(dn_register_hook(&p.handle, x, probe_fn, &p, probe_free));
  DN_OK_OR_FAIL(dn_mul(&y, x, x));
  DN_OK_OR_FAIL(dn_backward(y, g, true));
  assert_int_equal(p.frees_seen_in_call, 0);   /* userdata kept until the call returned */
  assert_int_equal(p.frees, 1);
  assert_values(x->grad, (float[]){4, 8, 12}, 3);   /* its replacement still counts */
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  assert_int_equal(p.calls, 1);
  probe_forget(&p);
  dn_hook_release(p.handle);
  RELEASE(x, y, g);
  assert_int_equal(p.frees, 1);
}

/* --- errors -------------------------------------------------------------------------------------- */

static void test_failing_hook_stops_backward_cleanly(void **state) {
  (void)state;
  size_t before = live_bytes();
  dn_tensor *x = leaf3(1, 2, 3), *c, *cx, *y, *g = ones3();
  DN_OK_OR_FAIL(dn_clone(&c, x));
  probe p = new_probe(7);
  p.fail = true;
  dn_hook *h;
  DN_OK_OR_FAIL(dn_register_hook(&h, c, probe_fn, &p, probe_free));
  probe q = new_probe(8);   /* on the leaf: staged when c's hook fails, then dropped */
  DN_OK_OR_FAIL(dn_register_hook(NULL, x, probe_fn, &q, probe_free));
  DN_OK_OR_FAIL(dn_mul(&cx, c, x));
  DN_OK_OR_FAIL(dn_add(&y, cx, c));
  DN_EXPECT_ERROR(dn_backward(y, g, true), DN_EINVAL, "probe 7: refused");
  assert_null(x->grad);
  assert_int_equal(q.calls, 0);
  assert_null(x->hooks->staged);
  assert_false(x->hooks->staging);
  /* the graph is intact: without the failing hook the same backward works */
  dn_hook_remove(h);
  DN_OK_OR_FAIL(dn_backward(y, g, false));
  assert_values(x->grad, (float[]){3, 5, 7}, 3);   /* d(c*x + c)/dx with c = x: 2x + 1 */
  assert_int_equal(q.calls, 1);
  probe_forget(&p);
  probe_forget(&q);
  dn_hook_release(h);
  RELEASE(x, c, cx, y, g);
  assert_int_equal(p.frees, 1);
  assert_int_equal(q.frees, 1);
  assert_int_equal(live_bytes(), before);
}

/* --- end-of-backward callbacks (dn_queue_backward_callback) --- */

typedef struct callback_log {
  int calls[2];
  bool ok[2];
  bool grad_done;          /* x->grad was set when callback 0 ran */
  dn_tensor *x;
  dn_status result;        /* what callback 1 returns */
} callback_log;

static callback_log *cb_log;
enum { CB_ORDER_MAX = 16 };
static int cb_order[CB_ORDER_MAX], cb_order_n;   /* the order of the calls, the first CB_ORDER_MAX */

static dn_status callback0(void *userdata, bool ok) {
  callback_log *l = userdata;
  l->calls[0]++;
  l->ok[0] = ok;
  l->grad_done = l->x->grad != NULL;
  if (cb_order_n < CB_ORDER_MAX) cb_order[cb_order_n++] = 0;
  /* no more callbacks once they run */
  DN_EXPECT_ERROR(dn_queue_backward_callback(callback0, l), DN_EINVAL, "no backward is running");
  return DN_OK;
}

static dn_status callback1(void *userdata, bool ok) {
  callback_log *l = userdata;
  l->calls[1]++;
  l->ok[1] = ok;
  if (cb_order_n < CB_ORDER_MAX) cb_order[cb_order_n++] = 1;
  /* sets its message when it fails: callback 0 ran just before and left one of its own */
  return l->result ? dn_fail(l->result, "callback 1: refused") : DN_OK;
}

/* A hook that queues both callbacks (on its first call in a backward), then fails when asked. */
static dn_status queueing_hook(void *userdata, int n, dn_tensor *const *grads, dn_tensor **reps) {
  (void)n, (void)grads, (void)reps;
  probe *p = userdata;
  p->calls++;
  DN_OK_OR_FAIL(dn_queue_backward_callback(callback0, cb_log));
  DN_OK_OR_FAIL(dn_queue_backward_callback(callback1, cb_log));
  return p->fail ? dn_fail(DN_EINVAL, "queueing hook: refused") : DN_OK;
}

static void test_backward_callbacks_run_at_the_end(void **state) {
  (void)state;
  size_t before = live_bytes();
  DN_EXPECT_ERROR(dn_queue_backward_callback(callback0, NULL), DN_EINVAL,
                  "queue_backward_callback: no backward is running");
  DN_EXPECT_ERROR(dn_queue_backward_callback(NULL, NULL), DN_EINVAL, "queue_backward_callback: fn is NULL");
  dn_tensor *x = leaf3(1, 2, 3), *y, *z, *g = ones3();
  callback_log l = {.x = x};
  cb_log = &l;
  cb_order_n = 0;
  probe p = new_probe(1);
  dn_hook *h;
  DN_OK_OR_FAIL(dn_register_hook(&h, x, queueing_hook, &p, NULL));
  DN_OK_OR_FAIL(dn_mul(&y, x, x));
  DN_OK_OR_FAIL(dn_add(&z, y, x));
  DN_OK_OR_FAIL(dn_backward(z, g, true));
  /* once each, in queue order, after the leaf's .grad was written */
  assert_int_equal(l.calls[0], 1);
  assert_int_equal(l.calls[1], 1);
  assert_true(l.ok[0] && l.ok[1]);
  assert_true(l.grad_done);
  assert_int_equal(cb_order[0], 0);
  assert_int_equal(cb_order[1], 1);
  /* a callback's error becomes the backward's */
  l.result = DN_EDIST;
  DN_EXPECT_ERROR(dn_backward(z, g, true), DN_EDIST, "callback 1: refused");
  assert_int_equal(l.calls[1], 2);
  l.result = DN_OK;
  /* a failing backward still runs them, with ok = false, and keeps its own error */
  p.fail = true;
  DN_EXPECT_ERROR(dn_backward(z, g, true), DN_EINVAL, "queueing hook: refused");
  assert_int_equal(l.calls[0], 3);
  assert_false(l.ok[0]);
  assert_false(l.ok[1]);
  /* a leaf as the root: the same */
  p.fail = false;
  DN_OK_OR_FAIL(dn_backward(x, g, false));
  assert_int_equal(l.calls[0], 4);
  assert_true(l.ok[0]);
  dn_hook_remove(h);
  dn_hook_release(h);
  RELEASE(x, y, z, g);
  assert_int_equal(live_bytes(), before);
}

static void test_bad_replacements_and_arguments(void **state) {
  (void)state;
  dn_tensor *x = leaf3(1, 2, 3), *y, *g = ones3();
  probe p = new_probe(1);
  p.bad_shape = true;
  dn_hook *h;
  DN_OK_OR_FAIL(dn_register_hook(&h, x, probe_fn, &p, probe_free));
  DN_OK_OR_FAIL(dn_mul(&y, x, x));
  DN_EXPECT_ERROR(dn_backward(y, g, true), DN_ESHAPE,
                  "backward: a hook returned a gradient of shape [2] (float32) for a tensor of shape [3]");
  assert_null(x->grad);
  dn_hook_remove(h);
  dn_hook_release(h);
  /* not requiring grad, NULL arguments: a failed registration keeps nothing */
  dn_tensor *plain = ones3();
  probe q = new_probe(2);
  DN_EXPECT_ERROR(dn_register_hook(&h, plain, probe_fn, &q, probe_free), DN_EINVAL,
                  "register_hook: cannot register a hook on a tensor that does not require grad");
  assert_null(h);
  DN_EXPECT_ERROR(dn_register_hook(&h, x, NULL, &q, probe_free), DN_EINVAL, "the hook function is NULL");
  DN_EXPECT_ERROR(dn_register_hook(&h, NULL, probe_fn, &q, probe_free), DN_EINVAL, "the tensor is NULL");
  dn_tensor *outs[2];
  DN_EXPECT_ERROR(dn_hook_aliases(outs, &h, 0, (dn_tensor *[]){x}, probe_fn, &q, probe_free), DN_EINVAL,
                  "hook_aliases: expected 1 to 4096 tensors (got 0)");
  DN_EXPECT_ERROR(dn_hook_aliases(outs, &h, 2, (dn_tensor *[]){x, NULL}, probe_fn, &q, probe_free), DN_EINVAL,
                  "hook_aliases: tensor 2 is NULL");
  assert_null(outs[0]);
  DN_EXPECT_ERROR(dn_hook_aliases(outs, &h, 1, (dn_tensor *[]){x}, NULL, &q, probe_free), DN_EINVAL,
                  "hook_aliases: the hook function is NULL");
  assert_int_equal(q.frees, 0);
  probe_forget(&p);
  RELEASE(x, y, g, plain);
}

/* --- groups: dn_hook_aliases ------------------------------------------------------------------- */

static void test_aliases_show_all_gradients_at_once(void **state) {
  (void)state;
  size_t before = live_bytes();
  dn_tensor *a = leaf3(1, 2, 3), *b = leaf3(4, 5, 6), *k = ones3(), *outs[3];
  probe p = new_probe(1);
  p.scale = 10;
  p.replace_index = 1;
  dn_hook *h;
  DN_OK_OR_FAIL(dn_hook_aliases(outs, &h, 3, (dn_tensor *[]){a, b, k}, probe_fn, &p, probe_free));
  assert_string_equal(dn_grad_fn_name(outs[0]), "backward_hook");
  assert_ptr_equal(outs[0]->storage, a->storage);
  assert_null(outs[2]->grad_fn);   /* k requires no grad: a plain alias */
  dn_tensor *ab, *y, *g = ones3();
  DN_OK_OR_FAIL(dn_mul(&ab, outs[0], outs[1]));
  DN_OK_OR_FAIL(dn_add(&y, ab, outs[0]));   /* dy/da = b + 1, dy/db = a */
  DN_OK_OR_FAIL(dn_backward(y, g, true));
  assert_int_equal(p.calls, 1);
  assert_int_equal(p.n_seen, 3);
  assert_values(p.seen[0], (float[]){5, 6, 7}, 3);
  assert_values(p.seen[1], (float[]){1, 2, 3}, 3);
  assert_null(p.seen[2]);
  assert_values(a->grad, (float[]){5, 6, 7}, 3);
  assert_values(b->grad, (float[]){10, 20, 30}, 3);   /* replaced */
  DN_OK_OR_FAIL(dn_backward(y, g, false));   /* once per backward */
  assert_int_equal(p.calls, 2);
  /* a replacement for the one that got no gradient */
  dn_tensor *outs2[3], *y2;
  dn_hook *h2;
  probe q = new_probe(2);
  q.fill_missing = true;
  DN_OK_OR_FAIL(dn_hook_aliases(outs2, &h2, 3, (dn_tensor *[]){a, b, k}, probe_fn, &q, probe_free));
  DN_OK_OR_FAIL(dn_mul(&y2, outs2[0], outs2[1]));
  DN_EXPECT_ERROR(dn_backward(y2, g, false), DN_EINVAL,
                  "backward: a hook returned a gradient for tensor 3 of 3, which received none");
  probe_forget(&p);
  probe_forget(&q);
  dn_hook_release(h);
  dn_hook_release(h2);
  RELEASE(a, b, k, outs[0], outs[1], outs[2], ab, y, g, outs2[0], outs2[1], outs2[2], y2);
  assert_int_equal(p.frees, 1);
  assert_int_equal(q.frees, 1);
  assert_int_equal(live_bytes(), before);
}

static void test_aliases_without_grad_free_at_once(void **state) {
  (void)state;
  dn_tensor *k = ones3(), *x = leaf3(1, 2, 3), *out;
  probe p = new_probe(1);
  dn_hook *h;
  DN_OK_OR_FAIL(dn_hook_aliases(&out, &h, 1, &k, probe_fn, &p, probe_free));
  assert_int_equal(p.frees, 1);
  assert_non_null(h);
  dn_hook_remove(h);
  assert_int_equal(p.frees, 1);
  dn_hook_release(h);
  dn_tensor_release(out);
  /* grad mode off: no node either */
  probe q = new_probe(2);
  bool mode = dn_set_grad_enabled(false);
  DN_OK_OR_FAIL(dn_hook_aliases(&out, NULL, 1, &x, probe_fn, &q, probe_free));
  dn_set_grad_enabled(mode);
  assert_null(out->grad_fn);
  assert_int_equal(q.frees, 1);
  RELEASE(k, x, out);
}

/* A group on a result and one on the input, as a module's backward hook uses them: the output's runs
   first, the input's after the ops between them. */
static void test_aliases_order_output_before_inputs(void **state) {
  (void)state;
  dn_tensor *x = leaf3(1, 2, 3), *in, *y, *out, *loss;
  probe pi = new_probe(1), po = new_probe(2);
  DN_OK_OR_FAIL(dn_hook_aliases(&in, NULL, 1, &x, probe_fn, &pi, probe_free));
  DN_OK_OR_FAIL(dn_mul(&y, in, in));
  DN_OK_OR_FAIL(dn_hook_aliases(&out, NULL, 1, &y, probe_fn, &po, probe_free));
  DN_OK_OR_FAIL(dn_sum_all(&loss, out));
  order_n = 0;
  DN_OK_OR_FAIL(dn_backward(loss, NULL, false));
  assert_int_equal(order_n, 2);
  assert_int_equal(order_log[0], 2);
  assert_int_equal(order_log[1], 1);
  assert_values(po.seen[0], (float[]){1, 1, 1}, 3);
  assert_values(pi.seen[0], (float[]){2, 4, 6}, 3);
  assert_values(x->grad, (float[]){2, 4, 6}, 3);
  probe_forget(&pi);
  probe_forget(&po);
  RELEASE(x, in, y, out, loss);
  assert_int_equal(pi.frees, 1);
  assert_int_equal(po.frees, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_leaf_hook_sees_gradient_before_grad_and_replaces_it, dn_test_reset_modes),
    cmocka_unit_test_setup(test_leaf_used_twice_sees_the_sum_once, dn_test_reset_modes),
    cmocka_unit_test_setup(test_leaf_root_runs_its_hooks, dn_test_reset_modes),
    cmocka_unit_test_setup(test_nonleaf_hook_replaces_the_gradient_flowing_on, dn_test_reset_modes),
    cmocka_unit_test_setup(test_hooks_run_in_order_and_chain_replacements, dn_test_reset_modes),
    cmocka_unit_test_setup(test_handle_outlives_or_dies_before_its_tensor, dn_test_reset_modes),
    cmocka_unit_test_setup(test_hook_may_remove_itself, dn_test_reset_modes),
    cmocka_unit_test_setup(test_failing_hook_stops_backward_cleanly, dn_test_reset_modes),
    cmocka_unit_test_setup(test_backward_callbacks_run_at_the_end, dn_test_reset_modes),
    cmocka_unit_test_setup(test_bad_replacements_and_arguments, dn_test_reset_modes),
    cmocka_unit_test_setup(test_aliases_show_all_gradients_at_once, dn_test_reset_modes),
    cmocka_unit_test_setup(test_aliases_without_grad_free_at_once, dn_test_reset_modes),
    cmocka_unit_test_setup(test_aliases_order_output_before_inputs, dn_test_reset_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
