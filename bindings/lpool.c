/*
** Pooling kernels from Lua, as core.nn_*pool* functions. Sizes come flat,
** {height, width} pairs as two integers; the Lua library (nn.functional)
** turns ints and pairs into them and applies PyTorch's defaults.
*/
#include "ldn.h"

/* n integer arguments from arg onwards into v; what names them in errors. */
static void check_ints(lua_State *L, int arg, int n, int64_t *v, const char *what) {
  for (int i = 0; i < n; i++) v[i] = dn_lua_check_integer(L, arg + i, what);
}

/* core.nn_max_pool2d(x, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode) */
static int l_max_pool2d(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  int64_t k[2], s[2], p[2], d[2];
  check_ints(L, 2, 2, k, "kernel size");
  check_ints(L, 4, 2, s, "stride");
  check_ints(L, 6, 2, p, "padding");
  check_ints(L, 8, 2, d, "dilation");
  bool ceil_mode = lua_toboolean(L, 10);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_max_pool2d(&r->t, x, k, s, p, d, ceil_mode));
  return 1;
}

/* core.nn_avg_pool2d(x, kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad) */
static int l_avg_pool2d(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  int64_t k[2], s[2], p[2];
  check_ints(L, 2, 2, k, "kernel size");
  check_ints(L, 4, 2, s, "stride");
  check_ints(L, 6, 2, p, "padding");
  bool ceil_mode = lua_toboolean(L, 8), count_include_pad = lua_toboolean(L, 9);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_avg_pool2d(&r->t, x, k, s, p, ceil_mode, count_include_pad));
  return 1;
}

/* core.nn_adaptive_avg_pool2d(x, out_h, out_w) */
static int l_adaptive_avg_pool2d(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  int64_t size[2];
  check_ints(L, 2, 2, size, "output size");
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_adaptive_avg_pool2d(&r->t, x, size[0], size[1]));
  return 1;
}

/* core.nn_max_pool1d(x, kernel, stride, padding, dilation, ceil_mode) */
static int l_max_pool1d(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  int64_t v[4];
  check_ints(L, 2, 4, v, "kernel size, stride, padding and dilation");
  bool ceil_mode = lua_toboolean(L, 6);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_max_pool1d(&r->t, x, v[0], v[1], v[2], v[3], ceil_mode));
  return 1;
}

/* core.nn_avg_pool1d(x, kernel, stride, padding, ceil_mode, count_include_pad) */
static int l_avg_pool1d(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  int64_t v[3];
  check_ints(L, 2, 3, v, "kernel size, stride and padding");
  bool ceil_mode = lua_toboolean(L, 5), count_include_pad = lua_toboolean(L, 6);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_avg_pool1d(&r->t, x, v[0], v[1], v[2], ceil_mode, count_include_pad));
  return 1;
}

static const luaL_Reg pool_functions[] = {
  {"nn_max_pool2d", l_max_pool2d}, {"nn_avg_pool2d", l_avg_pool2d},
  {"nn_adaptive_avg_pool2d", l_adaptive_avg_pool2d},
  {"nn_max_pool1d", l_max_pool1d}, {"nn_avg_pool1d", l_avg_pool1d},
  {NULL, NULL}};

void dn_lua_open_pool(lua_State *L) { luaL_setfuncs(L, pool_functions, 0); }
