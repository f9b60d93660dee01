/*
** Autograd from Lua: t.grad, t.requires_grad, t.grad_fn, t.is_leaf,
** t:requires_grad_(), t:backward(), t:detach(), dn.no_grad(fn).
*/
#include "ldn.h"

/* --- properties (read through __index, written through __newindex) -------- */

static int p_grad(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  if (!t->grad) lua_pushnil(L);
  else dn_lua_push_tensor(L, dn_tensor_retain(t->grad));
  return 1;
}

static int p_requires_grad(lua_State *L) {
  lua_pushboolean(L, dn_lua_check_tensor(L, 1)->requires_grad);
  return 1;
}

static int p_grad_fn(lua_State *L) {
  const char *name = dn_grad_fn_name(dn_lua_check_tensor(L, 1));
  if (name) lua_pushstring(L, name);
  else lua_pushnil(L);
  return 1;
}

static int p_is_leaf(lua_State *L) {
  lua_pushboolean(L, dn_lua_check_tensor(L, 1)->grad_fn == NULL);
  return 1;
}

/* t.grad = g | nil */
static int s_grad(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  if (lua_isnil(L, 2)) {
    dn_tensor_release(t->grad);
    t->grad = NULL;
    return 0;
  }
  dn_tensor *g = dn_lua_check_tensor(L, 2);
  if (!dn_same_shape(t, g) || g->dtype != DN_F32) {
    char ts[128], gs[128];
    return dn_lua_error(L, "grad: a gradient of shape %s (%s) does not fit a tensor of shape %s",
                      dn_shape_str(g, gs, sizeof gs), dn_dtype_name(g->dtype), dn_shape_str(t, ts, sizeof ts));
  }
  dn_tensor_retain(g);
  dn_tensor_release(t->grad);
  t->grad = g;
  return 0;
}

static int s_requires_grad(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  dn_lua_check_status(L, dn_requires_grad_(t, lua_toboolean(L, 2)));
  return 0;
}

/* --- methods ------------------------------------------------------------------ */

static int m_requires_grad_(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  bool on = lua_isnoneornil(L, 2) ? true : (luaL_checktype(L, 2, LUA_TBOOLEAN), lua_toboolean(L, 2));
  dn_lua_check_status(L, dn_requires_grad_(t, on));
  lua_settop(L, 1);
  return 1;
}

/* t:backward([grad][, {retain_graph = bool}]) */
static int m_backward(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  int opts = 2;
  dn_tensor *grad = NULL;
  if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2)) {
    grad = dn_lua_check_tensor(L, 2);
    opts = 3;
  } else if (lua_isnil(L, 2)) {
    opts = 3;
  }
  bool retain = false;
  if (lua_istable(L, opts)) {
    lua_getfield(L, opts, "retain_graph");
    retain = lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, opts)) {
    return luaL_argerror(L, opts, "options table expected ({retain_graph = true})");
  }
  dn_lua_check_status(L, dn_lua_backward(L, t, grad, retain));
  dn_lua_account_memory(L);
  dn_lua_collect_young(L);
  return 0;
}

static int m_detach(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_detach(&r->t, t));
  return 1;
}

/* --- grad mode ---------------------------------------------------------------- */

/* Calls the function at 1 with the rest as arguments in the given grad mode,
   restoring the previous mode even when it raises. */
static int call_with_grad_mode(lua_State *L, bool enabled) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  bool previous = dn_set_grad_enabled(enabled);
  int nargs = lua_gettop(L) - 1;
  int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
  dn_set_grad_enabled(previous);
  if (status != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

static int l_no_grad(lua_State *L) { return call_with_grad_mode(L, false); }
static int l_enable_grad(lua_State *L) { return call_with_grad_mode(L, true); }

static int l_is_grad_enabled(lua_State *L) {
  lua_pushboolean(L, dn_grad_enabled());
  return 1;
}

static int l_set_grad_enabled(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  lua_pushboolean(L, dn_set_grad_enabled(lua_toboolean(L, 1)));
  return 1;
}

static const luaL_Reg properties[] = {
  {"grad", p_grad}, {"requires_grad", p_requires_grad}, {"grad_fn", p_grad_fn}, {"is_leaf", p_is_leaf},
  {NULL, NULL}};
static const luaL_Reg setters[] = {{"grad", s_grad}, {"requires_grad", s_requires_grad}, {NULL, NULL}};
static const luaL_Reg methods[] = {
  {"requires_grad_", m_requires_grad_}, {"backward", m_backward}, {"detach", m_detach}, {NULL, NULL}};
static const luaL_Reg functions[] = {
  {"no_grad", l_no_grad}, {"enable_grad", l_enable_grad}, {"is_grad_enabled", l_is_grad_enabled},
  {"set_grad_enabled", l_set_grad_enabled}, {NULL, NULL}};

void dn_lua_open_autograd(lua_State *L) {
  luaL_getmetatable(L, DN_TENSOR_MT);
  lua_getfield(L, -1, "__properties");
  luaL_setfuncs(L, properties, 0);
  lua_pop(L, 1);
  lua_getfield(L, -1, "__setters");
  luaL_setfuncs(L, setters, 0);
  lua_pop(L, 1);
  lua_getfield(L, -1, "__methods");
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 2);
  luaL_setfuncs(L, functions, 0);
}
