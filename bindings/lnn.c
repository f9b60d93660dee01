/*
** Layer and loss kernels from Lua, as core.nn_* functions: the fused linear
** layer, the activations and the losses. The Lua library (dropnet.nn) builds
** its modules on these names. Dims and class targets are 1-based here.
*/
#include <string.h>

#include "ldn.h"

/* Class targets from Lua start at 1 (Torch7's convention). */
#define LUA_TARGET_BASE 1

/* An activation name at arg ("none", "relu", "tanh", "sigmoid"); nil means none. */
static dn_activation check_activation(lua_State *L, int arg) {
  static const char *const names[] = {"none", "relu", "tanh", "sigmoid"};
  static const dn_activation acts[] = {DN_ACT_NONE, DN_ACT_RELU, DN_ACT_TANH, DN_ACT_SIGMOID};
  if (lua_isnoneornil(L, arg)) return DN_ACT_NONE;
  const char *name = luaL_checkstring(L, arg);
  for (int i = 0; i < 4; i++)
    if (!strcmp(name, names[i])) return acts[i];
  return (dn_activation)luaL_argerror(
    L, arg, lua_pushfstring(L, "unknown activation '%s' (use \"none\", \"relu\", \"tanh\" or \"sigmoid\")", name));
}

/* A reduction name at arg; nil means "mean". */
static dn_reduction check_reduction(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return DN_REDUCTION_MEAN;
  const char *name = luaL_checkstring(L, arg);
  dn_reduction reduction;
  if (!dn_reduction_parse(name, &reduction))
    luaL_argerror(L, arg, lua_pushfstring(L, "unknown reduction '%s' (use \"mean\", \"sum\" or \"none\")", name));
  return reduction;
}

/* core.nn_linear(x, w, b_or_nil, act_or_nil) */
static int l_linear(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1), *w = dn_lua_check_tensor(L, 2);
  dn_tensor *b = lua_isnoneornil(L, 3) ? NULL : dn_lua_check_tensor(L, 3);
  dn_activation act = check_activation(L, 4);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_linear(&r->t, x, w, b, act));
  return 1;
}

/* core.nn_leaky_relu(x, negative_slope = 0.01) */
static int l_leaky_relu(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  double slope = luaL_optnumber(L, 2, 0.01);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_leaky_relu(&r->t, x, slope));
  return 1;
}

/* core.nn_elu(x, alpha = 1) */
static int l_elu(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  double alpha = luaL_optnumber(L, 2, 1.0);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_elu(&r->t, x, alpha));
  return 1;
}

/* core.nn_selu(x) */
static int l_selu(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_selu(&r->t, x));
  return 1;
}

/* core.nn_gelu(x, approximate): a boolean (true: tanh form), or PyTorch's "none"/"tanh" */
static int l_gelu(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  bool tanh_form;
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *name = lua_tostring(L, 2);
    if (!strcmp(name, "tanh")) tanh_form = true;
    else if (!strcmp(name, "none")) tanh_form = false;
    else return luaL_argerror(L, 2, lua_pushfstring(L, "unknown approximation '%s' (use \"none\" or \"tanh\")", name));
  } else {
    tanh_form = lua_toboolean(L, 2);
  }
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_gelu(&r->t, x, tanh_form));
  return 1;
}

static int push_softmax(lua_State *L, bool log_space) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  int dim = dn_lua_check_dim(L, 2, x->ndim);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, log_space ? dn_log_softmax(&r->t, x, dim) : dn_softmax(&r->t, x, dim));
  return 1;
}

/* core.nn_softmax(x, dim), core.nn_log_softmax(x, dim): dim 1-based, negative from the end */
static int l_softmax(lua_State *L) { return push_softmax(L, false); }
static int l_log_softmax(lua_State *L) { return push_softmax(L, true); }

/* core.nn_cross_entropy(logits, target, label_smoothing = 0, reduction = "mean") */
static int l_cross_entropy(lua_State *L) {
  dn_tensor *logits = dn_lua_check_tensor(L, 1), *target = dn_lua_check_tensor(L, 2);
  double smoothing = luaL_optnumber(L, 3, 0.0);
  dn_reduction reduction = check_reduction(L, 4);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_cross_entropy(&r->t, logits, target, LUA_TARGET_BASE, smoothing, reduction));
  return 1;
}

/* core.nn_nll_loss(log_probs, target, reduction = "mean") */
static int l_nll_loss(lua_State *L) {
  dn_tensor *log_probs = dn_lua_check_tensor(L, 1), *target = dn_lua_check_tensor(L, 2);
  dn_reduction reduction = check_reduction(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_nll_loss(&r->t, log_probs, target, LUA_TARGET_BASE, reduction));
  return 1;
}

/* core.nn_mse_loss(input, target, reduction = "mean") */
static int l_mse_loss(lua_State *L) {
  dn_tensor *input = dn_lua_check_tensor(L, 1), *target = dn_lua_check_tensor(L, 2);
  dn_reduction reduction = check_reduction(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_mse_loss(&r->t, input, target, reduction));
  return 1;
}

/* core.nn_bce_with_logits(logits, target, reduction = "mean") */
static int l_bce_with_logits(lua_State *L) {
  dn_tensor *logits = dn_lua_check_tensor(L, 1), *target = dn_lua_check_tensor(L, 2);
  dn_reduction reduction = check_reduction(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_bce_with_logits(&r->t, logits, target, reduction));
  return 1;
}

static const luaL_Reg nn_functions[] = {
  {"nn_linear", l_linear},
  {"nn_leaky_relu", l_leaky_relu}, {"nn_elu", l_elu}, {"nn_selu", l_selu}, {"nn_gelu", l_gelu},
  {"nn_softmax", l_softmax}, {"nn_log_softmax", l_log_softmax},
  {"nn_cross_entropy", l_cross_entropy}, {"nn_nll_loss", l_nll_loss},
  {"nn_mse_loss", l_mse_loss}, {"nn_bce_with_logits", l_bce_with_logits},
  {NULL, NULL}};

void dn_lua_open_nn(lua_State *L) { luaL_setfuncs(L, nn_functions, 0); }
