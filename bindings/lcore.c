/* luaopen_dropnet_core: the module table, threads, memory statistics, clock. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "ldn.h"

DN_API int luaopen_dropnet_core(lua_State *L);

static int l_set_num_threads(lua_State *L) {
  lua_Integer n = dn_lua_check_integer(L, 1, "thread count");
  if (n < 1 || n > 1024) return luaL_argerror(L, 1, "thread count must be 1..1024");
  dn_lua_check_status(L, dn_set_num_threads((int)n));
  return 0;
}

static int l_get_num_threads(lua_State *L) {
  lua_pushinteger(L, dn_get_num_threads());
  return 1;
}

/* Argument 1, which must be a boolean (`what` names it in the error). */
static bool check_boolean(lua_State *L, const char *what) {
  if (lua_type(L, 1) != LUA_TBOOLEAN) {
    const char *msg = lua_pushfstring(L, "%s must be a boolean (got %s)", what, dn_lua_typename(L, 1));
    luaL_argerror(L, 1, msg);
  }
  return lua_toboolean(L, 1);
}

/* dn.set_flush_denormal(flush): returns whether the CPU supports the mode. */
static int l_set_flush_denormal(lua_State *L) {
  lua_pushboolean(L, dn_set_flush_denormal(check_boolean(L, "flush")));
  return 1;
}

static int l_get_flush_denormal(lua_State *L) {
  lua_pushboolean(L, dn_get_flush_denormal());
  return 1;
}

/* dn.set_sparse_matmul(on): returns the previous setting. */
static int l_set_sparse_matmul(lua_State *L) {
  lua_pushboolean(L, dn_set_sparse_matmul(check_boolean(L, "on")));
  return 1;
}

static int l_get_sparse_matmul(lua_State *L) {
  lua_pushboolean(L, dn_get_sparse_matmul());
  return 1;
}

static int l_matmul_backend(lua_State *L) {
  lua_pushstring(L, dn_matmul_backend());
  return 1;
}

/* dn.memory_stats(): the caching allocator's counters, as a table */
static int l_memory_stats(lua_State *L) {
  dn_alloc_stats s;
  dn_alloc_get_stats(&s);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)s.sys_allocs);
  lua_setfield(L, -2, "sys_allocs");
  lua_pushinteger(L, (lua_Integer)s.sys_frees);
  lua_setfield(L, -2, "sys_frees");
  lua_pushinteger(L, (lua_Integer)s.cache_hits);
  lua_setfield(L, -2, "cache_hits");
  lua_pushinteger(L, (lua_Integer)s.live_bytes);
  lua_setfield(L, -2, "live_bytes");
  lua_pushinteger(L, (lua_Integer)s.cached_bytes);
  lua_setfield(L, -2, "cached_bytes");
  lua_pushinteger(L, (lua_Integer)s.peak_live_bytes);
  lua_setfield(L, -2, "peak_live_bytes");
  return 1;
}

static int l_empty_cache(lua_State *L) {
  lua_gc(L, LUA_GCCOLLECT);
  dn_alloc_empty_cache();
  return 0;
}

/* dn.clock(): wall-clock seconds from a monotonic clock (os.clock counts CPU time
   of every thread, which misleads when timing parallel code). */
static int l_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

/* dn.isatty(file): whether a Lua file (io.stderr, ...) is a terminal, so scripts
   can draw progress bars for people and plain lines for logs. */
static int l_isatty(lua_State *L) {
  luaL_Stream *stream = luaL_checkudata(L, 1, LUA_FILEHANDLE);
  lua_pushboolean(L, stream->closef != NULL && isatty(fileno(stream->f)));
  return 1;
}

static const luaL_Reg core_functions[] = {
  {"clock", l_clock}, {"isatty", l_isatty},
  {"set_num_threads", l_set_num_threads}, {"get_num_threads", l_get_num_threads},
  {"set_flush_denormal", l_set_flush_denormal}, {"get_flush_denormal", l_get_flush_denormal},
  {"matmul_backend", l_matmul_backend}, {"set_sparse_matmul", l_set_sparse_matmul},
  {"get_sparse_matmul", l_get_sparse_matmul},
  {"memory_stats", l_memory_stats}, {"empty_cache", l_empty_cache}, {NULL, NULL}};

int luaopen_dropnet_core(lua_State *L) {
  luaL_checkversion(L);
  lua_gc(L, LUA_GCGEN, 0, 0);   /* tensors die young (laux.c, dn_lua_collect_young) */
  luaL_newlib(L, core_functions);
  lua_pushstring(L, DN_VERSION);
  lua_setfield(L, -2, "version");
  dn_lua_open_tensor(L);
  dn_lua_open_ops(L);
  dn_lua_open_random(L);
  dn_lua_open_autograd(L);
  dn_lua_open_hook(L);
  dn_lua_open_nn(L);
  dn_lua_open_dropout(L);
  dn_lua_open_optim(L);
  dn_lua_open_io(L);
  dn_lua_open_conv(L);
  dn_lua_open_pool(L);
  dn_lua_open_norm(L);
  dn_lua_open_augment(L);
  dn_lua_open_sort(L);
  dn_lua_open_signal(L);
  dn_lua_open_dist(L);
  return 1;
}
