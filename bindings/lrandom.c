/*
** Generators and random tensors. A Generator is a Philox key and counter
** offset, and optionally a batch shard (configuration, not state: seeding
** and set_state keep it); the module keeps one default generator
** (dn.manual_seed seeds it).
*/
#include <string.h>

#include "ldn.h"

#define DEFAULT_SEED 0x5EEDull

static dn_rng *check_generator(lua_State *L, int arg) { return luaL_checkudata(L, arg, DN_GENERATOR_MT); }

static dn_rng *push_generator(lua_State *L, uint64_t seed) {
  dn_rng *g = lua_newuserdatauv(L, sizeof *g, 0);
  dn_rng_seed(g, seed);
  luaL_setmetatable(L, DN_GENERATOR_MT);
  return g;
}

static uint64_t check_seed(lua_State *L, int arg) {
  lua_Integer s = dn_lua_check_integer(L, arg, "seed");
  return (uint64_t)s;   /* negative seeds are taken as their two's-complement bits */
}

/* dn.Generator([seed]) */
static int l_generator(lua_State *L) {
  push_generator(L, lua_isnoneornil(L, 1) ? DEFAULT_SEED : check_seed(L, 1));
  return 1;
}

/* Seeds g, keeping its batch shard. */
static void reseed(dn_rng *g, uint64_t seed) {
  g->seed = seed;
  g->offset = 0;
}

static int g_manual_seed(lua_State *L) {
  dn_rng *g = check_generator(L, 1);
  reseed(g, check_seed(L, 2));
  lua_settop(L, 1);
  return 1;
}

static int g_initial_seed(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_generator(L, 1)->seed);
  return 1;
}

/* State as a plain table {seed = s, offset = o}: easy to print and to checkpoint. */
static int push_state(lua_State *L, const dn_rng *g) {
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)g->seed);
  lua_setfield(L, -2, "seed");
  lua_pushinteger(L, (lua_Integer)g->offset);
  lua_setfield(L, -2, "offset");
  return 1;
}

static void read_state(lua_State *L, int arg, dn_rng *g, const char *fname) {
  if (!lua_istable(L, arg))
    dn_lua_error(L, "%s: state must be a table {seed = ..., offset = ...} (got %s)", fname, luaL_typename(L, arg));
  dn_rng s = *g;   /* the shard stays */
  const char *fields[2] = {"seed", "offset"};
  uint64_t *dst[2] = {&s.seed, &s.offset};
  for (int i = 0; i < 2; i++) {
    lua_getfield(L, arg, fields[i]);
    int isnum;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    if (!isnum) dn_lua_error(L, "%s: state.%s must be an integer (got %s)", fname, fields[i], luaL_typename(L, -1));
    *dst[i] = (uint64_t)v;
    lua_pop(L, 1);
  }
  *g = s;
}

static int g_get_state(lua_State *L) { return push_state(L, check_generator(L, 1)); }

static int g_set_state(lua_State *L) {
  dn_rng *g = check_generator(L, 1);
  read_state(L, 2, g, "set_state");
  lua_settop(L, 1);
  return 1;
}

/* g:set_shard(skip, count, total): this process's samples are skip+1 .. skip+count of
   every batch of total; g:set_shard(nil) clears. */
static int g_set_shard(lua_State *L) {
  dn_rng *g = check_generator(L, 1);
  if (lua_isnoneornil(L, 2)) {
    dn_rng_clear_shard(g);
  } else {
    lua_Integer skip = dn_lua_check_integer(L, 2, "skip");
    lua_Integer count = dn_lua_check_integer(L, 3, "count");
    lua_Integer total = dn_lua_check_integer(L, 4, "total");
    if (dn_rng_set_shard(g, skip, count, total) != DN_OK) {
      const char *msg = dn_last_error(), *colon = strstr(msg, ": ");
      dn_lua_error(L, "Generator:set_shard: %s", colon ? colon + 2 : msg);
    }
  }
  lua_settop(L, 1);
  return 1;
}

static int g_clear_shard(lua_State *L) {
  dn_rng_clear_shard(check_generator(L, 1));
  lua_settop(L, 1);
  return 1;
}

/* g:shard() -> skip, count, total, or nil without a shard */
static int g_shard(lua_State *L) {
  dn_rng *g = check_generator(L, 1);
  if (g->shard_count == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, (lua_Integer)g->shard_first);
  lua_pushinteger(L, (lua_Integer)g->shard_count);
  lua_pushinteger(L, (lua_Integer)g->shard_total);
  return 3;
}

static int g_tostring(lua_State *L) {
  dn_rng *g = check_generator(L, 1);
  if (g->shard_count)
    lua_pushfstring(L, "dropnet.Generator(seed=%I, offset=%I, shard=%I+%I/%I)", (lua_Integer)g->seed,
                    (lua_Integer)g->offset, (lua_Integer)g->shard_first, (lua_Integer)g->shard_count,
                    (lua_Integer)g->shard_total);
  else
    lua_pushfstring(L, "dropnet.Generator(seed=%I, offset=%I)", (lua_Integer)g->seed, (lua_Integer)g->offset);
  return 1;
}

static int l_manual_seed(lua_State *L) {
  reseed(dn_lua_default_rng(L), check_seed(L, 1));
  return 0;
}

static int l_get_rng_state(lua_State *L) { return push_state(L, dn_lua_default_rng(L)); }

static int l_set_rng_state(lua_State *L) {
  read_state(L, 1, dn_lua_default_rng(L), "set_rng_state");
  return 0;
}

static int l_default_generator(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, DN_DEFAULT_GENERATOR_KEY);
  return 1;
}

typedef dn_status (*random_fn)(dn_tensor **, dn_rng *, int, const int64_t *);

/* dn.rand(2, 3[, generator | {generator = g}]) or dn.rand({2, 3}[, ...]) */
static int push_random(lua_State *L, random_fn fn) {
  int64_t shape[DN_MAX_DIMS];
  int ndim = dn_lua_check_shape(L, 1, shape);
  int next = lua_istable(L, 1) ? 2 : ndim + 1;
  dn_rng *g = dn_lua_opt_rng(L, next);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, fn(&r->t, g, ndim, shape));
  return 1;
}
static int l_rand(lua_State *L) { return push_random(L, dn_tensor_rand); }
static int l_randn(lua_State *L) { return push_random(L, dn_tensor_randn); }

/* dn.randperm(n[, generator]): a permutation of 1..n as int32 */
static int l_randperm(lua_State *L) {
  lua_Integer n = dn_lua_check_integer(L, 1, "n");
  dn_rng *g = dn_lua_opt_rng(L, 2);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_randperm(&r->t, g, n, 1));
  return 1;
}

static const luaL_Reg generator_methods[] = {
  {"manual_seed", g_manual_seed}, {"initial_seed", g_initial_seed}, {"get_state", g_get_state},
  {"set_state", g_set_state}, {"set_shard", g_set_shard}, {"clear_shard", g_clear_shard}, {"shard", g_shard},
  {NULL, NULL}};

static const luaL_Reg random_functions[] = {
  {"Generator", l_generator}, {"manual_seed", l_manual_seed}, {"get_rng_state", l_get_rng_state},
  {"set_rng_state", l_set_rng_state}, {"default_generator", l_default_generator}, {"rand", l_rand},
  {"randn", l_randn}, {"randperm", l_randperm}, {NULL, NULL}};

void dn_lua_open_random(lua_State *L) {
  luaL_newmetatable(L, DN_GENERATOR_MT);
  luaL_newlib(L, generator_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, g_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  push_generator(L, DEFAULT_SEED);
  lua_setfield(L, LUA_REGISTRYINDEX, DN_DEFAULT_GENERATOR_KEY);
  luaL_setfuncs(L, random_functions, 0);
}
