/*
** Optimizer kernels from Lua: the per-parameter update steps used by
** dropnet.optim, the max-norm constraint and gradient clipping.
** Hyperparameters come in an options table; absent fields take the defaults
** of the runtime's option structs (0 / false) unless noted.
*/
#include "ldn.h"

/* --- options tables ------------------------------------------------------------- */

/* Field `key` of the options table at arg as a number, or dflt when absent. */
static double opt_number(lua_State *L, int arg, const char *key, double dflt) {
  int type = lua_getfield(L, arg, key);
  double v = dflt;
  if (type == LUA_TNUMBER) v = lua_tonumber(L, -1);
  else if (type != LUA_TNIL)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a number (got %s)", key, luaL_typename(L, -1)));
  lua_pop(L, 1);
  return v;
}

static bool opt_bool(lua_State *L, int arg, const char *key, bool dflt) {
  int type = lua_getfield(L, arg, key);
  bool v = dflt;
  if (type == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (type != LUA_TNIL)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a boolean (got %s)", key, luaL_typename(L, -1)));
  lua_pop(L, 1);
  return v;
}

/* A tensor, or NULL when the argument is nil/absent. */
static dn_tensor *opt_tensor(lua_State *L, int arg) {
  return lua_isnoneornil(L, arg) ? NULL : dn_lua_check_tensor(L, arg);
}

/* --- update steps ------------------------------------------------------------------ */

/* core.optim_sgd_step(param, grad, buf_or_nil, opts, first_step) */
static int l_sgd_step(lua_State *L) {
  dn_tensor *param = dn_lua_check_tensor(L, 1), *grad = dn_lua_check_tensor(L, 2), *buf = opt_tensor(L, 3);
  luaL_checktype(L, 4, LUA_TTABLE);
  dn_sgd_options o = {
    .lr = opt_number(L, 4, "lr", 0), .momentum = opt_number(L, 4, "momentum", 0),
    .dampening = opt_number(L, 4, "dampening", 0), .weight_decay = opt_number(L, 4, "weight_decay", 0),
    .nesterov = opt_bool(L, 4, "nesterov", false), .maximize = opt_bool(L, 4, "maximize", false)};
  bool first_step = lua_toboolean(L, 5);
  dn_lua_check_status(L, dn_sgd_step(param, grad, buf, &o, first_step));
  return 0;
}

/* core.optim_adam_step(param, grad, exp_avg, exp_avg_sq, step, opts)
   (beta1 0.9, beta2 0.999, eps 1e-8 when absent) */
static int l_adam_step(lua_State *L) {
  dn_tensor *param = dn_lua_check_tensor(L, 1), *grad = dn_lua_check_tensor(L, 2),
            *exp_avg = dn_lua_check_tensor(L, 3), *exp_avg_sq = dn_lua_check_tensor(L, 4);
  lua_Integer step = dn_lua_check_integer(L, 5, "step");
  luaL_checktype(L, 6, LUA_TTABLE);
  dn_adam_options o = {
    .lr = opt_number(L, 6, "lr", 1e-3), .beta1 = opt_number(L, 6, "beta1", 0.9),
    .beta2 = opt_number(L, 6, "beta2", 0.999), .eps = opt_number(L, 6, "eps", 1e-8),
    .weight_decay = opt_number(L, 6, "weight_decay", 0),
    .decoupled_weight_decay = opt_bool(L, 6, "decoupled_weight_decay", false),
    .maximize = opt_bool(L, 6, "maximize", false)};
  dn_lua_check_status(L, dn_adam_step(param, grad, exp_avg, exp_avg_sq, (int64_t)step, &o));
  return 0;
}

/* core.optim_rmsprop_step(param, grad, square_avg, buf_or_nil, grad_avg_or_nil, opts)
   (alpha 0.99, eps 1e-8 when absent) */
static int l_rmsprop_step(lua_State *L) {
  dn_tensor *param = dn_lua_check_tensor(L, 1), *grad = dn_lua_check_tensor(L, 2),
            *square_avg = dn_lua_check_tensor(L, 3), *buf = opt_tensor(L, 4), *grad_avg = opt_tensor(L, 5);
  luaL_checktype(L, 6, LUA_TTABLE);
  dn_rmsprop_options o = {
    .lr = opt_number(L, 6, "lr", 1e-2), .alpha = opt_number(L, 6, "alpha", 0.99),
    .eps = opt_number(L, 6, "eps", 1e-8), .weight_decay = opt_number(L, 6, "weight_decay", 0),
    .momentum = opt_number(L, 6, "momentum", 0), .centered = opt_bool(L, 6, "centered", false),
    .maximize = opt_bool(L, 6, "maximize", false)};
  dn_lua_check_status(L, dn_rmsprop_step(param, grad, square_avg, buf, grad_avg, &o));
  return 0;
}

/* --- norms ------------------------------------------------------------------------- */

/* core.max_norm_(weight, max_norm) -> weight */
static int l_max_norm_(lua_State *L) {
  dn_tensor *w = dn_lua_check_tensor(L, 1);
  double max_norm = luaL_checknumber(L, 2);
  dn_lua_check_status(L, dn_max_norm_(w, max_norm));
  lua_settop(L, 1);
  return 1;
}

/* core.clip_grad_norm_(list_of_tensors, max_norm) -> total norm before clipping */
static int l_clip_grad_norm_(lua_State *L) {
  int count;
  dn_tensor **items = dn_lua_check_tensor_list(L, 1, "clip_grad_norm_", &count);
  double max_norm = luaL_checknumber(L, 2), total;
  dn_lua_check_status(L, dn_clip_grad_norm_(items, count, max_norm, &total));
  lua_pushnumber(L, total);
  return 1;
}

/* core.total_norm(list_of_tensors) -> L2 norm of all of them together */
static int l_total_norm(lua_State *L) {
  int count;
  dn_tensor **items = dn_lua_check_tensor_list(L, 1, "total_norm", &count);
  double norm;
  dn_lua_check_status(L, dn_total_norm(&norm, items, count));
  lua_pushnumber(L, norm);
  return 1;
}

static const luaL_Reg functions[] = {
  {"optim_sgd_step", l_sgd_step}, {"optim_adam_step", l_adam_step}, {"optim_rmsprop_step", l_rmsprop_step},
  {"max_norm_", l_max_norm_}, {"clip_grad_norm_", l_clip_grad_norm_}, {"total_norm", l_total_norm},
  {NULL, NULL}};

void dn_lua_open_optim(lua_State *L) { luaL_setfuncs(L, functions, 0); }
