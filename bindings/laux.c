/*
** The helpers every binding file uses (declared in ldn.h), apart from the
** libraries as Lua's lauxlib.c is: tensor userdata, argument checks, status
** conversion, the default generator, and telling the collector about C memory.
** The files that register functions (ltensor.c, lops.c, ...) use only these
** and the runtime's public API.
*/
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "ldn.h"

/* --- tensor userdata and memory accounting ---------------------------------- */

/*
** Lua's collector cannot see C memory: a tensor userdata is a few bytes to
** Lua while it holds megabytes here, so a loop could pile up garbage without
** bound. After each full collection we allow a budget of new tensor bytes
** before the next one: at least 16 MB, an eighth of what is live (so a big
** dataset does not make every step collect), and twice Lua's own heap (so a
** big Lua heap is not traversed too often). Measured on the main job: peak
** RSS 644 MB when the budget was "live doubles", 423 MB with this one, at the
** same speed.
*/
#define DN_GC_MIN_BUDGET ((size_t)16 << 20)
static size_t gc_threshold = DN_GC_MIN_BUDGET;

void dn_lua_account_memory(lua_State *L) {
  dn_alloc_stats s;
  dn_alloc_get_stats(&s);
  if (s.live_bytes < gc_threshold) return;
  lua_gc(L, LUA_GCCOLLECT);
  dn_alloc_get_stats(&s);
  size_t budget = DN_GC_MIN_BUDGET;
  size_t lua_bytes = (size_t)lua_gc(L, LUA_GCCOUNT) * 1024;
  if (s.live_bytes / 8 > budget) budget = s.live_bytes / 8;
  if (2 * lua_bytes > budget) budget = 2 * lua_bytes;
  gc_threshold = s.live_bytes + budget;
}

/*
** Tensors die young: a training step makes some tens of them and drops them
** all by the end of the next. Lua's generational mode (set when the library
** opens, lcore.c) collects young objects without traversing the rest of the
** heap, and a young collection after each backward frees the last step's
** tensors while their headers and blocks are still in cache; the next step
** gets the same blocks back from the allocator. Left to the budget above, a
** few hundred steps' tensors were freed at once, cold, and every step wrote
** to memory the cache had not seen for a while. Once per step: a second
** collection where the DataLoader makes a batch made the batch itself (alive
** across two collections) old, to wait for a full cycle. In incremental mode
** (a script's collectgarbage("incremental")) this is one small step; none
** while a script has stopped the collector (an explicit step would run).
*/
void dn_lua_collect_young(lua_State *L) {
  if (lua_gc(L, LUA_GCISRUNNING)) lua_gc(L, LUA_GCSTEP, 0);
}

dn_ltensor *dn_lua_new_tensor_slot(lua_State *L) {
  dn_lua_account_memory(L);
  dn_ltensor *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->t = NULL;
  luaL_setmetatable(L, DN_TENSOR_MT);
  return u;
}

void dn_lua_push_tensor(lua_State *L, dn_tensor *t) {
  dn_ltensor *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->t = t;
  luaL_setmetatable(L, DN_TENSOR_MT);
}

dn_tensor *dn_lua_test_tensor(lua_State *L, int arg) {
  dn_ltensor *u = luaL_testudata(L, arg, DN_TENSOR_MT);
  if (u && !u->t) luaL_argerror(L, arg, "tensor has been closed");
  return u ? u->t : NULL;
}

dn_tensor *dn_lua_check_tensor(lua_State *L, int arg) {
  dn_ltensor *u = luaL_testudata(L, arg, DN_TENSOR_MT);
  if (!u) {
    const char *msg = lua_pushfstring(L, "Tensor expected, got %s", luaL_typename(L, arg));
    luaL_argerror(L, arg, msg);
  }
  if (!u->t) luaL_argerror(L, arg, "tensor has been closed");
  return u->t;
}

dn_tensor **dn_lua_check_tensor_list(lua_State *L, int arg, const char *fname, int *count) {
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_Unsigned n = lua_rawlen(L, arg);
  if (n > INT_MAX) luaL_argerror(L, arg, "too many tensors");
  dn_tensor **items = lua_newuserdatauv(L, (n ? n : 1) * sizeof *items, 0);
  for (lua_Unsigned i = 1; i <= n; i++) {
    lua_rawgeti(L, arg, (lua_Integer)i);
    items[i - 1] = dn_lua_test_tensor(L, -1);
    if (!items[i - 1])
      dn_lua_error(L, "%s: item %d of the list is a %s, Tensor expected", fname, (int)i, dn_lua_typename(L, -1));
    lua_pop(L, 1);
  }
  *count = (int)n;
  return items;
}

const char *dn_lua_typename(lua_State *L, int arg) {
  if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING) {
    const char *name = lua_tostring(L, -1);
    lua_pop(L, 1);   /* the metatable keeps the string alive */
    return name;
  }
  if (lua_type(L, arg) != LUA_TNONE && luaL_getmetafield(L, arg, "__name") != LUA_TNIL) lua_pop(L, 1);
  return luaL_typename(L, arg);
}

/* --- errors at the user's line --------------------------------------------------- */

/* The registry field where dropnet/check.lua leaves the chunkname prefix of the library's files
   ("@dropnet/" under the dropnet command). Absent (the C module loaded alone): no frame is skipped. */
#define DN_LIBRARY_SOURCE_KEY "dropnet.library_source"

void dn_lua_where(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, DN_LIBRARY_SOURCE_KEY);
  size_t prefix_len = 0;
  const char *prefix = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &prefix_len) : NULL;
  lua_Debug ar;
  bool inside = false;   /* passed through a library frame: C frames (pcall) on its way out are skipped too */
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    bool library = prefix && strncmp(ar.source, prefix, prefix_len) == 0;
    if (library || (inside && ar.what[0] == 'C')) {
      inside = true;
      continue;
    }
    lua_pop(L, 1);
    if (ar.currentline > 0) lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
    else lua_pushliteral(L, "");
    return;
  }
  lua_pop(L, 1);
  lua_pushliteral(L, "");
}

int dn_lua_error(lua_State *L, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  dn_lua_where(L);
  lua_pushvfstring(L, fmt, args);
  va_end(args);
  lua_concat(L, 2);
  return lua_error(L);
}

int dn_lua_check_status(lua_State *L, dn_status st) {
  if (st != DN_OK) return dn_lua_error(L, "%s", dn_last_error());
  return 0;
}

lua_Integer dn_lua_check_integer(lua_State *L, int arg, const char *what) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, arg, &isnum);
  if (!isnum) {
    const char *msg = lua_type(L, arg) == LUA_TNUMBER
                          ? lua_pushfstring(L, "%s must be an integer (got %s)", what, lua_tostring(L, arg))
                          : lua_pushfstring(L, "%s must be an integer (got %s)", what, dn_lua_typename(L, arg));
    luaL_argerror(L, arg, msg);
  }
  return v;
}

/* Sizes from arg (a table or numbers); each must be >= min_size (-1 lets view infer one). */
int dn_lua_check_shape_min(lua_State *L, int arg, int64_t *shape, lua_Integer min_size) {
  int ndim = 0;
  if (lua_istable(L, arg)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, arg);
    if (n > DN_MAX_DIMS) luaL_argerror(L, arg, lua_pushfstring(L, "at most %d dims", DN_MAX_DIMS));
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, arg, i);
      int isnum;
      lua_Integer v = lua_tointegerx(L, -1, &isnum);
      if (!isnum)
        luaL_argerror(L, arg, lua_pushfstring(L, "size %d must be an integer (got %s)", (int)i,
                                              lua_isnumber(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1)));
      lua_pop(L, 1);
      if (v < min_size)
        luaL_argerror(L, arg, lua_pushfstring(L, "size of dim %d must be >= 0%s (got %I)", (int)i,
                                              min_size < 0 ? " or -1" : "", v));
      shape[ndim++] = v;
    }
    return ndim;
  }
  for (int i = arg; lua_type(L, i) == LUA_TNUMBER; i++) {
    if (ndim >= DN_MAX_DIMS) luaL_argerror(L, i, lua_pushfstring(L, "at most %d dims", DN_MAX_DIMS));
    lua_Integer v = dn_lua_check_integer(L, i, "size");
    if (v < min_size)
      luaL_argerror(L, i, lua_pushfstring(L, "size of dim %d must be >= 0%s (got %I)", ndim + 1,
                                          min_size < 0 ? " or -1" : "", v));
    shape[ndim++] = v;
  }
  if (ndim == 0 && !lua_isnoneornil(L, arg) && lua_type(L, arg) != LUA_TSTRING)
    luaL_argerror(L, arg, lua_pushfstring(L, "shape expected (sizes or a table), got %s", luaL_typename(L, arg)));
  return ndim;
}

int dn_lua_check_shape(lua_State *L, int arg, int64_t *shape) { return dn_lua_check_shape_min(L, arg, shape, 0); }

int dn_lua_check_dim(lua_State *L, int arg, int ndim) {
  lua_Integer d = dn_lua_check_integer(L, arg, "dim");
  int n = ndim > 0 ? ndim : 1;
  if (d >= 1 && d <= n) return (int)d - 1;
  if (d <= -1 && d >= -n) return (int)(d + n);
  return luaL_argerror(L, arg, lua_pushfstring(L, "dim %I out of range for a %d-D tensor (use 1..%d or -1..-%d)",
                                               d, ndim, n, n));
}

/* --- generators --------------------------------------------------------------- */

dn_rng *dn_lua_default_rng(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, DN_DEFAULT_GENERATOR_KEY);
  dn_rng *g = lua_touserdata(L, -1);
  lua_pop(L, 1);   /* the registry keeps it alive */
  return g;
}

dn_rng *dn_lua_opt_rng(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return dn_lua_default_rng(L);
  dn_rng *g = luaL_testudata(L, arg, DN_GENERATOR_MT);
  if (g) return g;
  if (lua_istable(L, arg)) {
    /* a misspelt or foreign key ({requires_grad = true}) must not pass silently */
    for (lua_pushnil(L); lua_next(L, arg); lua_pop(L, 1))
      if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "generator") != 0) {
        lua_pop(L, 1);
        luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s' (the options table takes only generator)",
                                              luaL_tolstring(L, -1, NULL)));
      }
    lua_getfield(L, arg, "generator");
    g = lua_isnil(L, -1) ? dn_lua_default_rng(L) : luaL_testudata(L, -1, DN_GENERATOR_MT);
    lua_pop(L, 1);   /* kept alive by the options table */
    if (g) return g;
    luaL_argerror(L, arg, "options.generator must be a dropnet.Generator");
  }
  luaL_argerror(L, arg, lua_pushfstring(L, "Generator or options table expected, got %s", luaL_typename(L, arg)));
  return NULL;
}
