/*
** Convolutions from Lua, as core.nn_conv2d and core.nn_conv1d. The Lua library
** (F.conv2d, nn.Conv2d, ...) resolves options such as padding = "same" and
** passes plain integers here.
*/
#include "ldn.h"

/* core.nn_conv2d(x, w, b_or_nil, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups[, relu[, stats]]):
   relu: dn_conv2d_relu; else stats: dn_conv2d_stats */
static int l_conv2d(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1), *w = dn_lua_check_tensor(L, 2);
  dn_tensor *b = lua_isnoneornil(L, 3) ? NULL : dn_lua_check_tensor(L, 3);
  int64_t stride[2] = {dn_lua_check_integer(L, 4, "stride"), dn_lua_check_integer(L, 5, "stride")};
  int64_t padding[2] = {dn_lua_check_integer(L, 6, "padding"), dn_lua_check_integer(L, 7, "padding")};
  int64_t dilation[2] = {dn_lua_check_integer(L, 8, "dilation"), dn_lua_check_integer(L, 9, "dilation")};
  int64_t groups = dn_lua_check_integer(L, 10, "groups");
  bool relu = lua_toboolean(L, 11), stats = lua_toboolean(L, 12);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, (relu ? dn_conv2d_relu : stats ? dn_conv2d_stats : dn_conv2d)(&r->t, x, w, b, stride, padding,
                                                                                      dilation, groups));
  return 1;
}

/* core.nn_conv1d(x, w, b_or_nil, stride, padding, dilation, groups[, relu[, stats]]), as core.nn_conv2d */
static int l_conv1d(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1), *w = dn_lua_check_tensor(L, 2);
  dn_tensor *b = lua_isnoneornil(L, 3) ? NULL : dn_lua_check_tensor(L, 3);
  int64_t stride = dn_lua_check_integer(L, 4, "stride"), padding = dn_lua_check_integer(L, 5, "padding");
  int64_t dilation = dn_lua_check_integer(L, 6, "dilation"), groups = dn_lua_check_integer(L, 7, "groups");
  bool relu = lua_toboolean(L, 8), stats = lua_toboolean(L, 9);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, (relu ? dn_conv1d_relu : stats ? dn_conv1d_stats : dn_conv1d)(&r->t, x, w, b, stride, padding,
                                                                                      dilation, groups));
  return 1;
}

static const luaL_Reg conv_functions[] = {{"nn_conv2d", l_conv2d}, {"nn_conv1d", l_conv1d}, {NULL, NULL}};

void dn_lua_open_conv(lua_State *L) { luaL_setfuncs(L, conv_functions, 0); }
