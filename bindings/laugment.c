/*
** Data augmentation from Lua, as core.random_crop and core.random_hflip
** (dropnet.data builds its RandomCrop and RandomHorizontalFlip transforms on
** them). A generator argument may be a dropnet.Generator, an options table
** {generator = g} or nil (the default generator).
*/
#include "ldn.h"

/* A number at arg (its range is checked by the runtime, which names the op). */
static double check_number(lua_State *L, int arg, const char *what) {
  if (lua_type(L, arg) != LUA_TNUMBER)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s must be a number (got %s)", what, dn_lua_typename(L, arg)));
  return lua_tonumber(L, arg);
}

/* core.random_crop(x, out_h, out_w, pad_h, pad_w, fill[, generator]) */
static int l_random_crop(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  lua_Integer out_h = dn_lua_check_integer(L, 2, "crop height");
  lua_Integer out_w = dn_lua_check_integer(L, 3, "crop width");
  lua_Integer pad_h = dn_lua_check_integer(L, 4, "padding height");
  lua_Integer pad_w = dn_lua_check_integer(L, 5, "padding width");
  double fill = check_number(L, 6, "fill");
  dn_rng *rng = dn_lua_opt_rng(L, 7);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_random_crop(&r->t, x, out_h, out_w, pad_h, pad_w, fill, rng));
  return 1;
}

/* core.random_hflip(x, p[, generator]) */
static int l_random_hflip(lua_State *L) {
  dn_tensor *x = dn_lua_check_tensor(L, 1);
  double p = check_number(L, 2, "p");
  dn_rng *rng = dn_lua_opt_rng(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_random_hflip(&r->t, x, p, rng));
  return 1;
}

static const luaL_Reg augment_functions[] = {
  {"random_crop", l_random_crop}, {"random_hflip", l_random_hflip}, {NULL, NULL}};

void dn_lua_open_augment(lua_State *L) { luaL_setfuncs(L, augment_functions, 0); }
