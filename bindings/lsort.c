/*
** Sorting and order statistics from Lua: sort, topk, median, quantile, and
** histc. Dims and indices are 1-based, as everywhere in the Lua API.
*/
#include "ldn.h"

/* An optional boolean argument (nil or absent: def). */
static bool opt_boolean(lua_State *L, int arg, bool def, const char *what) {
  if (lua_isnoneornil(L, arg)) return def;
  if (!lua_isboolean(L, arg)) {
    const char *msg = lua_pushfstring(L, "%s must be a boolean (got %s)", what, dn_lua_typename(L, arg));
    luaL_argerror(L, arg, msg);
  }
  return lua_toboolean(L, arg);
}

/* An optional dim argument (nil or absent: the last dim). */
static int opt_dim(lua_State *L, int arg, int ndim) {
  if (lua_isnoneornil(L, arg)) return ndim > 0 ? ndim - 1 : 0;
  return dn_lua_check_dim(L, arg, ndim);
}

/* t:sort([dim = -1[, descending = false]]): values, 1-based int32 indices; stable */
static int m_sort(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  int dim = opt_dim(L, 2, a->ndim);
  bool descending = opt_boolean(L, 3, false, "descending");
  dn_ltensor *values = dn_lua_new_tensor_slot(L);
  dn_ltensor *indices = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_sort(&values->t, &indices->t, a, dim, descending, 1));
  return 2;
}

/* t:topk(k[, dim = -1[, largest = true[, sorted = true]]]): values, 1-based int32 indices */
static int m_topk(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  lua_Integer k = dn_lua_check_integer(L, 2, "k");
  int dim = opt_dim(L, 3, a->ndim);
  bool largest = opt_boolean(L, 4, true, "largest");
  bool sorted = opt_boolean(L, 5, true, "sorted");
  dn_ltensor *values = dn_lua_new_tensor_slot(L);
  dn_ltensor *indices = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_topk(&values->t, &indices->t, a, (int64_t)k, dim, largest, sorted, 1));
  return 2;
}

/* t:median(): 0-dim; t:median(dim[, keepdim]): values, 1-based int32 indices */
static int m_median(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  if (lua_isnoneornil(L, 2)) {
    dn_ltensor *r = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, dn_median_all(&r->t, a));
    return 1;
  }
  int dim = dn_lua_check_dim(L, 2, a->ndim);
  bool keepdim = opt_boolean(L, 3, false, "keepdim");
  dn_ltensor *values = dn_lua_new_tensor_slot(L);
  dn_ltensor *indices = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_median_dim(&values->t, &indices->t, a, dim, keepdim, 1));
  return 2;
}

/* t:quantile(q[, dim[, keepdim = false]]): q a number or a 0-dim / 1-D float32 tensor */
static int m_quantile(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  dn_tensor *q = dn_lua_test_tensor(L, 2);
  if (!q) {
    if (lua_type(L, 2) != LUA_TNUMBER) {
      const char *msg = lua_pushfstring(L, "q must be a number or a tensor (got %s)", dn_lua_typename(L, 2));
      return luaL_argerror(L, 2, msg);
    }
    double level = lua_tonumber(L, 2);
    /* held by a userdata so that a later error cannot leak it */
    dn_ltensor *holder = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, dn_tensor_from_doubles(&holder->t, DN_F32, 0, NULL, &level));
    lua_replace(L, 2);
    q = holder->t;
  }
  bool all = lua_isnoneornil(L, 3);
  int dim = all ? 0 : dn_lua_check_dim(L, 3, a->ndim);
  bool keepdim = opt_boolean(L, 4, false, "keepdim");
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, all ? dn_quantile_all(&r->t, a, q, keepdim) : dn_quantile_dim(&r->t, a, q, dim, keepdim));
  return 1;
}

/* dn.histc(t[, bins = 100[, min = 0[, max = 0]]]): float32 counts and the bins' edges */
static int m_histc(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  lua_Integer bins = lua_isnoneornil(L, 2) ? 100 : dn_lua_check_integer(L, 2, "bins");
  double min = luaL_optnumber(L, 3, 0), max = luaL_optnumber(L, 4, 0);
  dn_ltensor *counts = dn_lua_new_tensor_slot(L);
  dn_ltensor *edges = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_histc(&counts->t, &edges->t, a, (int64_t)bins, min, max));
  return 2;
}

static const luaL_Reg sort_methods[] = {
  {"sort", m_sort}, {"topk", m_topk}, {"median", m_median}, {"quantile", m_quantile}, {"histc", m_histc},
  {NULL, NULL}};

/* Functional forms dn.sort(t, ...) ... dn.histc(t, ...) share the methods. */
void dn_lua_open_sort(lua_State *L) {
  luaL_getmetatable(L, DN_TENSOR_MT);
  lua_getfield(L, -1, "__methods");
  luaL_setfuncs(L, sort_methods, 0);
  lua_pop(L, 2);
  luaL_setfuncs(L, sort_methods, 0);   /* module table */
}
