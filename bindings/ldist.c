/*
** dn.distributed: the MPI collectives of runtime/src/dist.c from Lua. Ranks
** count from 0, as MPI and PyTorch count them (a rank is not an index).
** Collectives take one tensor or a list of tensors, change them in place and
** return what they were given.
** Nothing finalizes MPI when the Lua state closes: a rank ending on an error
** would wait in MPI_Finalize for ranks that wait for it in a collective,
** where exiting without it lets mpirun stop them all and say why.
*/
#include <limits.h>
#include <string.h>

#include "ldn.h"

/* The tensors of argument 1, one tensor or a list of them. */
static dn_tensor **check_tensors(lua_State *L, const char *fname, int *count) {
  dn_tensor *t = dn_lua_test_tensor(L, 1);
  if (t) {
    /* a userdata on the stack, as the list's array is */
    dn_tensor **items = lua_newuserdatauv(L, sizeof *items, 0);
    items[0] = t;
    *count = 1;
    return items;
  }
  if (!lua_istable(L, 1))
    dn_lua_error(L, "%s: expected a tensor or a list of tensors (got %s)", fname, dn_lua_typename(L, 1));
  return dn_lua_check_tensor_list(L, 1, fname, count);
}

/* dist.available(): true when dropnet was built with MPI. */
static int l_available(lua_State *L) {
  lua_pushboolean(L, dn_dist_available());
  return 1;
}

/* dist.init(): starts MPI (a world of size 1 without mpirun); again is a no-op. */
static int l_init(lua_State *L) {
  dn_lua_check_status(L, dn_dist_init());
  return 0;
}

/* dist.finalize(): ends MPI; again is a no-op. */
static int l_finalize(lua_State *L) {
  dn_lua_check_status(L, dn_dist_finalize());
  return 0;
}

/* dist.set_timeout(seconds): how long a collective waits for the other ranks. */
static int l_set_timeout(lua_State *L) {
  if (lua_type(L, 1) != LUA_TNUMBER)
    return luaL_error(L, "dist.set_timeout: seconds must be a number (got %s)", luaL_typename(L, 1));
  dn_lua_check_status(L, dn_dist_set_timeout(lua_tonumber(L, 1)));
  return 0;
}

/* dist.timeout(): the limit in seconds. */
static int l_timeout(lua_State *L) {
  lua_pushnumber(L, dn_dist_timeout());
  return 1;
}

/* dist.is_initialized(): between init and finalize. */
static int l_is_initialized(lua_State *L) {
  lua_pushboolean(L, dn_dist_is_initialized());
  return 1;
}

/* dist.rank(): 0 .. world_size() - 1. */
static int l_rank(lua_State *L) {
  int rank = 0;
  dn_lua_check_status(L, dn_dist_rank(&rank));
  lua_pushinteger(L, rank);
  return 1;
}

/* dist.world_size(): the number of processes. */
static int l_world_size(lua_State *L) {
  int size = 0;
  dn_lua_check_status(L, dn_dist_world_size(&size));
  lua_pushinteger(L, size);
  return 1;
}

/* dist.all_reduce(t_or_list[, op = "sum"]): "sum" or "mean" over the ranks, in place; returns its argument. */
static int l_all_reduce(lua_State *L) {
  static const char *const ops[] = {"sum", "mean", NULL};
  lua_settop(L, 2);   /* the list's array is pushed above the arguments */
  int count = 0;
  dn_tensor **tensors = check_tensors(L, "dist.all_reduce", &count);
  dn_dist_op op = DN_DIST_SUM;
  if (!lua_isnoneornil(L, 2)) {
    const char *name = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    int k = 0;
    while (name && ops[k] && strcmp(ops[k], name)) k++;
    if (!name || !ops[k])
      return dn_lua_error(L, "dist.all_reduce: op must be \"sum\" or \"mean\" (got %s)",
                          name ? lua_pushfstring(L, "\"%s\"", name) : dn_lua_typename(L, 2));
    op = k == 0 ? DN_DIST_SUM : DN_DIST_MEAN;
  }
  dn_lua_check_status(L, dn_dist_all_reduce(tensors, count, op));
  lua_pushvalue(L, 1);
  return 1;
}

/* dist.broadcast(t_or_list, root): root's tensors copied into every rank's, in place; returns its argument. */
static int l_broadcast(lua_State *L) {
  lua_settop(L, 2);
  int count = 0;
  dn_tensor **tensors = check_tensors(L, "dist.broadcast", &count);
  lua_Integer root = dn_lua_check_integer(L, 2, "root");
  if (root < 0 || root > INT_MAX) return dn_lua_error(L, "dist.broadcast: root %I out of range", (LUAI_UACINT)root);
  dn_lua_check_status(L, dn_dist_broadcast(tensors, count, (int)root));
  lua_pushvalue(L, 1);
  return 1;
}

/* dist.barrier(): returns once every rank has called it. */
static int l_barrier(lua_State *L) {
  dn_lua_check_status(L, dn_dist_barrier());
  return 0;
}

/* dist.batch_shard(count): this rank's place in a batch split over the ranks in rank order:
   skip (the samples of the ranks before it), total, and the list of every rank's count. */
static int l_batch_shard(lua_State *L) {
  lua_Integer count = dn_lua_check_integer(L, 1, "count");
  int size = 1;
  if (dn_dist_is_initialized()) dn_lua_check_status(L, dn_dist_world_size(&size));
  int64_t skip = 0, total = 0, *counts = lua_newuserdatauv(L, (size_t)size * sizeof *counts, 0);
  dn_lua_check_status(L, dn_dist_batch_shard((int64_t)count, &skip, &total, counts));
  lua_pushinteger(L, (lua_Integer)skip);
  lua_pushinteger(L, (lua_Integer)total);
  lua_createtable(L, size, 0);
  for (int r = 0; r < size; r++) {
    lua_pushinteger(L, (lua_Integer)counts[r]);
    lua_rawseti(L, -2, r + 1);
  }
  return 3;
}

/* --- the gradient reducer under nn.DataParallel ------------------------------------------------- */

#define REDUCER_MT "dropnet.distributed.Reducer"

typedef struct lreducer {
  dn_dist_reducer *r;
} lreducer;

static lreducer *check_reducer(lua_State *L) {
  lreducer *u = luaL_checkudata(L, 1, REDUCER_MT);
  if (!u->r) dn_lua_error(L, "Reducer: closed");
  return u;
}

/* dist.Reducer(params, bucket_bytes): watches the parameters' gradients (collective: every rank, same list). */
static int l_reducer(lua_State *L) {
  lua_settop(L, 2);
  if (!lua_istable(L, 1))
    return dn_lua_error(L, "dist.Reducer: expected a list of parameters (got %s)", dn_lua_typename(L, 1));
  int count = 0;
  dn_tensor **params = dn_lua_check_tensor_list(L, 1, "dist.Reducer", &count);
  lua_Integer bytes = dn_lua_check_integer(L, 2, "bucket_bytes");
  lreducer *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->r = NULL;
  luaL_setmetatable(L, REDUCER_MT);
  dn_lua_check_status(L, dn_dist_reducer_new(&u->r, params, count, (int64_t)bytes));
  return 1;
}

/* reducer:set_weights({w0, w1, ...}): every rank's weight in the sum of gradients, in rank order. */
static int r_set_weights(lua_State *L) {
  lreducer *u = check_reducer(L);
  if (!lua_istable(L, 2))
    return dn_lua_error(L, "Reducer:set_weights: expected a list of weights, one per rank (got %s)",
                        dn_lua_typename(L, 2));
  lua_Integer n = luaL_len(L, 2);
  if (n < 1 || n > INT_MAX / 2) return dn_lua_error(L, "Reducer:set_weights: expected one weight per rank (got %I)",
                                                    (LUAI_UACINT)n);
  double *w = lua_newuserdatauv(L, (size_t)n * sizeof *w, 0);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, 2, k);
    if (!lua_isnumber(L, -1))
      return dn_lua_error(L, "Reducer:set_weights: weight %I is %s, a number expected", (LUAI_UACINT)k,
                          dn_lua_typename(L, -1));
    w[k - 1] = (double)lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  dn_lua_check_status(L, dn_dist_reducer_set_weights(u->r, w, (int)n));
  return 0;
}

/* reducer:stats(): {buckets, elements, steps, wait_seconds, reduce_seconds}. */
static int r_stats(lua_State *L) {
  lreducer *u = check_reducer(L);
  dn_dist_reducer_stats s;
  dn_dist_reducer_get_stats(u->r, &s);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, s.buckets);
  lua_setfield(L, -2, "buckets");
  lua_pushinteger(L, (lua_Integer)s.elements);
  lua_setfield(L, -2, "elements");
  lua_pushinteger(L, (lua_Integer)s.steps);
  lua_setfield(L, -2, "steps");
  lua_pushnumber(L, s.wait_seconds);
  lua_setfield(L, -2, "wait_seconds");
  lua_pushnumber(L, s.reduce_seconds);
  lua_setfield(L, -2, "reduce_seconds");
  return 1;
}

/* reducer:close() (and __gc, __close): the hooks go; gradients are local again. */
static int r_close(lua_State *L) {
  lreducer *u = luaL_checkudata(L, 1, REDUCER_MT);
  dn_dist_reducer_free(u->r);
  u->r = NULL;
  return 0;
}

static const luaL_Reg reducer_methods[] = {
  {"set_weights", r_set_weights}, {"stats", r_stats}, {"close", r_close}, {NULL, NULL}};
static const luaL_Reg reducer_meta[] = {{"__gc", r_close}, {"__close", r_close}, {NULL, NULL}};

static const luaL_Reg functions[] = {
  {"available", l_available}, {"init", l_init}, {"finalize", l_finalize}, {"is_initialized", l_is_initialized},
  {"rank", l_rank}, {"world_size", l_world_size}, {"all_reduce", l_all_reduce}, {"broadcast", l_broadcast},
  {"barrier", l_barrier}, {"batch_shard", l_batch_shard}, {"Reducer", l_reducer}, {"set_timeout", l_set_timeout},
  {"timeout", l_timeout}, {NULL, NULL}};

/* The module table's field `distributed` (dn.distributed). */
void dn_lua_open_dist(lua_State *L) {
  luaL_newmetatable(L, REDUCER_MT);
  luaL_setfuncs(L, reducer_meta, 0);
  luaL_newlib(L, reducer_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, functions);
  lua_setfield(L, -2, "distributed");
}
