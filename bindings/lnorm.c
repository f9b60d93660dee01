/*
** Normalization kernels from Lua, as core.nn_batch_norm. The Lua library
** (F.batch_norm, nn.BatchNorm1d, nn.BatchNorm2d) applies the defaults and
** chooses between batch and running statistics.
*/
#include "ldn.h"

/* A tensor argument, or NULL for nil. */
static dn_tensor *opt_tensor(lua_State *L, int arg) {
  return lua_isnoneornil(L, arg) ? NULL : dn_lua_check_tensor(L, arg);
}

/* core.nn_batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps); nil for no tensor */
static int l_batch_norm(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1), *weight = opt_tensor(L, 2), *bias = opt_tensor(L, 3);
  dn_tensor *running_mean = opt_tensor(L, 4), *running_var = opt_tensor(L, 5);
  bool training = lua_toboolean(L, 6);
  double momentum = luaL_checknumber(L, 7), eps = luaL_checknumber(L, 8);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_batch_norm(&r->t, x, weight, bias, running_mean, running_var, training, momentum, eps));
  return 1;
}

static const luaL_Reg norm_functions[] = {{"nn_batch_norm", l_batch_norm}, {NULL, NULL}};

void dn_lua_open_norm(lua_State *L) { luaL_setfuncs(L, norm_functions, 0); }
