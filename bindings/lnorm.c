/*
** Normalization kernels from Lua, as core.nn_batch_norm,
** core.nn_batch_norm_relu, core.nn_batch_norm_relu_max_pool2d,
** core.nn_layer_norm and core.nn_group_norm. The
** Lua library (F.batch_norm, nn.BatchNorm2d, nn.LayerNorm, ...) applies the
** defaults and chooses between batch and running statistics.
*/
#include "ldn.h"

/* A tensor argument, or NULL for nil. */
static dn_tensor *opt_tensor(lua_State *L, int arg) {
  return lua_isnoneornil(L, arg) ? NULL : dn_lua_check_tensor(L, arg);
}

/* The arguments of core.nn_batch_norm and its fused forms, passed to fn. */
static int batch_norm_call(lua_State *L, dn_status (*fn)(dn_tensor **, dn_tensor *, dn_tensor *, dn_tensor *,
                                                         dn_tensor *, dn_tensor *, bool, double, double)) {
  dn_tensor *x = dn_lua_check_tensor(L, 1), *weight = opt_tensor(L, 2), *bias = opt_tensor(L, 3);
  dn_tensor *running_mean = opt_tensor(L, 4), *running_var = opt_tensor(L, 5);
  bool training = lua_toboolean(L, 6);
  double momentum = luaL_checknumber(L, 7), eps = luaL_checknumber(L, 8);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, fn(&r->t, x, weight, bias, running_mean, running_var, training, momentum, eps));
  return 1;
}

/* core.nn_batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps); nil for no tensor */
static int l_batch_norm(lua_State *L) { return batch_norm_call(L, dn_batch_norm); }

/* core.nn_batch_norm_relu(...): the same arguments, relu(batch_norm(...)) in one op */
static int l_batch_norm_relu(lua_State *L) { return batch_norm_call(L, dn_batch_norm_relu); }

/* core.nn_batch_norm_relu_max_pool2d(...): the same arguments, x [N, C, H, W], max_pool2d(relu(batch_norm(...)),
   2) in one op */
static int l_batch_norm_relu_max_pool2d(lua_State *L) { return batch_norm_call(L, dn_batch_norm_relu_max_pool2d); }

/* core.nn_layer_norm(x, normalized_shape, weight, bias, eps); normalized_shape a table of sizes */
static int l_layer_norm(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int64_t shape[DN_MAX_DIMS];
  int ndim = dn_lua_check_shape(L, 2, shape);
  dn_tensor *weight = opt_tensor(L, 3), *bias = opt_tensor(L, 4);
  double eps = luaL_checknumber(L, 5);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_layer_norm(&r->t, x, ndim, shape, weight, bias, eps));
  return 1;
}

/* core.nn_group_norm(x, groups, weight, bias, eps) */
static int l_group_norm(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  int64_t groups = dn_lua_check_integer(L, 2, "num_groups");
  dn_tensor *weight = opt_tensor(L, 3), *bias = opt_tensor(L, 4);
  double eps = luaL_checknumber(L, 5);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_group_norm(&r->t, x, groups, weight, bias, eps));
  return 1;
}

static const luaL_Reg norm_functions[] = {
  {"nn_batch_norm", l_batch_norm}, {"nn_batch_norm_relu", l_batch_norm_relu},
  {"nn_batch_norm_relu_max_pool2d", l_batch_norm_relu_max_pool2d}, {"nn_layer_norm", l_layer_norm},
  {"nn_group_norm", l_group_norm},
  {NULL, NULL}};

void dn_lua_open_norm(lua_State *L) { luaL_setfuncs(L, norm_functions, 0); }
