/*
** The dropout family (DropBlock included) from Lua, as core.* functions
** (dropnet.nn builds its modules and functional forms on them). A generator
** argument may be a dropnet.Generator, an options table {generator = g} or
** nil (the default generator). When the runtime hands back the input itself
** (p = 0, or eval with inverted scaling), the input's own userdata is
** returned, so `y == x` holds in Lua as well.
*/
#include <string.h>

#include "ldn.h"

/* p at arg: a Lua number (range and NaN are checked by the runtime, which names the op). */
static double check_p(lua_State *L, int arg) {
  if (lua_type(L, arg) != LUA_TNUMBER)
    luaL_argerror(L, arg, lua_pushfstring(L, "p must be a number (got %s)", dn_lua_typename(L, arg)));
  return lua_tonumber(L, arg);
}

/* A scaling name at arg: "inverted" (default, also for nil) or "test". */
static dn_dropout_scaling check_scaling(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return DN_DROPOUT_INVERTED;
  const char *name = luaL_checkstring(L, arg);
  if (!strcmp(name, "inverted")) return DN_DROPOUT_INVERTED;
  if (!strcmp(name, "test")) return DN_DROPOUT_TEST_TIME;
  return (dn_dropout_scaling)luaL_argerror(
    L, arg, lua_pushfstring(L, "unknown scaling '%s' (use \"inverted\" or \"test\")", name));
}

/*
** The result slot r (on top of the stack) after a successful call: when it
** holds the input x itself, replaces it with the input's userdata at x_arg.
*/
static int push_result(lua_State *L, dn_ltensor *r, const dn_tensor *x, int x_arg) {
  if (r->t == x) {
    dn_tensor_release(r->t);
    r->t = NULL;
    lua_pop(L, 1);
    lua_pushvalue(L, x_arg);
  }
  return 1;
}

typedef dn_status (*scaled_fn)(dn_tensor **, dn_tensor *, double, dn_rng *, dn_dropout_scaling);

/* fn(x, p, generator, scaling) with the arguments at 1..4 */
static int push_scaled(lua_State *L, scaled_fn fn) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  double p = check_p(L, 2);
  dn_rng *rng = dn_lua_opt_rng(L, 3);
  dn_dropout_scaling scaling = check_scaling(L, 4);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, fn(&r->t, x, p, rng, scaling));
  return push_result(L, r, x, 1);
}

/* core.dropout(x, p[, generator[, scaling]]) */
static int l_dropout(lua_State *L) { return push_scaled(L, dn_dropout); }
/* core.dropout_channels(x, p[, generator[, scaling]]): x [N, C, *] */
static int l_dropout_channels(lua_State *L) { return push_scaled(L, dn_dropout_channels); }
/* core.dropout_locked(x, p[, generator[, scaling]]): x [T, N, F] */
static int l_dropout_locked(lua_State *L) { return push_scaled(L, dn_dropout_locked); }

/* core.dropout_eval(x, p[, scaling]): x itself for inverted scaling, x * (1-p) for "test" */
static int l_dropout_eval(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  double p = check_p(L, 2);
  dn_dropout_scaling scaling = check_scaling(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_dropout_eval(&r->t, x, p, scaling));
  return push_result(L, r, x, 1);
}

typedef dn_status (*unscaled_fn)(dn_tensor **, dn_tensor *, double, dn_rng *);

static int push_unscaled(lua_State *L, unscaled_fn fn) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  double p = check_p(L, 2);
  dn_rng *rng = dn_lua_opt_rng(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, fn(&r->t, x, p, rng));
  return push_result(L, r, x, 1);
}

/* core.alpha_dropout(x, p[, generator]) */
static int l_alpha_dropout(lua_State *L) { return push_unscaled(L, dn_alpha_dropout); }
/* core.gaussian_dropout(x, p[, generator]) */
static int l_gaussian_dropout(lua_State *L) { return push_unscaled(L, dn_gaussian_dropout); }

/* core.dropconnect_linear(x, w, b_or_nil, p[, generator]) */
static int l_dropconnect_linear(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1), *w = dn_lua_check_tensor(L, 2);
  dn_tensor *b = lua_isnoneornil(L, 3) ? NULL : dn_lua_check_tensor(L, 3);
  double p = check_p(L, 4);
  dn_rng *rng = dn_lua_opt_rng(L, 5);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_dropconnect_linear(&r->t, x, w, b, p, rng));
  return 1;
}

/* core.linear_relu_dropout(x, w, b_or_nil, p[, generator[, scaling]]) */
static int l_linear_relu_dropout(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1), *w = dn_lua_check_tensor(L, 2);
  dn_tensor *b = lua_isnoneornil(L, 3) ? NULL : dn_lua_check_tensor(L, 3);
  double p = check_p(L, 4);
  dn_rng *rng = dn_lua_opt_rng(L, 5);
  dn_dropout_scaling scaling = check_scaling(L, 6);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_linear_relu_dropout(&r->t, x, w, b, p, rng, scaling));
  return 1;
}

/* core.batch_norm_relu_max_pool2d_dropout2d(x, weight, bias, running_mean, running_var, training, momentum, eps, p[,
   generator[, scaling]]): core.nn_batch_norm_relu_max_pool2d's arguments (nil for no tensor), then channel
   dropout's */
static int l_batch_norm_relu_max_pool2d_dropout2d(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1), *t[4];
  for (int i = 0; i < 4; i++) t[i] = lua_isnoneornil(L, 2 + i) ? NULL : dn_lua_check_tensor(L, 2 + i);
  bool training = lua_toboolean(L, 6);
  double momentum = luaL_checknumber(L, 7), eps = luaL_checknumber(L, 8), p = check_p(L, 9);
  dn_rng *rng = dn_lua_opt_rng(L, 10);
  dn_dropout_scaling scaling = check_scaling(L, 11);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_batch_norm_relu_max_pool2d_dropout2d(&r->t, x, t[0], t[1], t[2], t[3], training, momentum,
                                                                 eps, p, rng, scaling));
  return 1;
}

/* core.conv2d_batch_norm_relu_max_pool2d_dropout2d(x, conv_weight, conv_bias, pad_h, pad_w, weight, bias,
   running_mean, running_var, training, momentum, eps, p[, generator[, scaling]]): the first block of a small
   CNN in one op (nil for no tensor) */
static int l_conv2d_batch_norm_relu_max_pool2d_dropout2d(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1), *cw = dn_lua_check_tensor(L, 2), *t[5];
  t[0] = lua_isnoneornil(L, 3) ? NULL : dn_lua_check_tensor(L, 3);
  int64_t padding[2] = {(int64_t)luaL_checkinteger(L, 4), (int64_t)luaL_checkinteger(L, 5)};
  for (int i = 1; i < 5; i++) t[i] = lua_isnoneornil(L, 5 + i) ? NULL : dn_lua_check_tensor(L, 5 + i);
  bool training = lua_toboolean(L, 10);
  double momentum = luaL_checknumber(L, 11), eps = luaL_checknumber(L, 12), p = check_p(L, 13);
  dn_rng *rng = dn_lua_opt_rng(L, 14);
  dn_dropout_scaling scaling = check_scaling(L, 15);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_conv2d_batch_norm_relu_max_pool2d_dropout2d(&r->t, x, cw, t[0], padding, t[1], t[2], t[3],
                                                                        t[4], training, momentum, eps, p, rng,
                                                                        scaling));
  return 1;
}

/* core.dropout_mask(shape, p[, generator]): the uint8 keep mask (1 = kept) that core.dropout
   would draw now for a tensor of that shape; the generator does not advance. */
static int l_dropout_mask(lua_State *L) {
  int64_t shape[DN_MAX_DIMS];
  luaL_checktype(L, 1, LUA_TTABLE);
  int ndim = dn_lua_check_shape(L, 1, shape);
  double p = check_p(L, 2);
  const dn_rng *rng = dn_lua_opt_rng(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_dropout_mask(&r->t, rng, ndim, shape, p));
  return 1;
}

/* core.dropblock2d(x, p, block_size[, generator]): x [N, C, H, W] or [C, H, W], training mode */
static int l_dropblock2d(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  double p = check_p(L, 2);
  int64_t block_size = dn_lua_check_integer(L, 3, "block_size");
  dn_rng *rng = dn_lua_opt_rng(L, 4);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_dropblock2d(&r->t, x, p, block_size, rng));
  return push_result(L, r, x, 1);
}

/* core.dropblock2d_mask(shape, p, block_size[, generator]): the uint8 keep mask core.dropblock2d
   would draw now for an input of that shape; the generator does not advance. */
static int l_dropblock2d_mask(lua_State *L) {
  int64_t shape[DN_MAX_DIMS];
  luaL_checktype(L, 1, LUA_TTABLE);
  int ndim = dn_lua_check_shape(L, 1, shape);
  double p = check_p(L, 2);
  int64_t block_size = dn_lua_check_integer(L, 3, "block_size");
  const dn_rng *rng = dn_lua_opt_rng(L, 4);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_dropblock2d_mask(&r->t, rng, ndim, shape, p, block_size));
  return 1;
}

/* core.dropout_saved_mask_bytes(y): bytes of mask y's dropout node keeps for backward */
static int l_dropout_saved_mask_bytes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)dn_dropout_saved_mask_bytes(dn_lua_check_tensor(L, 1)));
  return 1;
}

static const luaL_Reg dropout_functions[] = {
  {"dropout", l_dropout}, {"dropout_eval", l_dropout_eval}, {"dropout_channels", l_dropout_channels},
  {"dropout_locked", l_dropout_locked}, {"alpha_dropout", l_alpha_dropout},
  {"gaussian_dropout", l_gaussian_dropout}, {"dropconnect_linear", l_dropconnect_linear},
  {"linear_relu_dropout", l_linear_relu_dropout},
  {"batch_norm_relu_max_pool2d_dropout2d", l_batch_norm_relu_max_pool2d_dropout2d},
  {"conv2d_batch_norm_relu_max_pool2d_dropout2d", l_conv2d_batch_norm_relu_max_pool2d_dropout2d},
  {"dropout_mask", l_dropout_mask}, {"dropout_saved_mask_bytes", l_dropout_saved_mask_bytes},
  {"dropblock2d", l_dropblock2d}, {"dropblock2d_mask", l_dropblock2d_mask},
  {NULL, NULL}};

void dn_lua_open_dropout(lua_State *L) { luaL_setfuncs(L, dropout_functions, 0); }
