/*
** The Tensor userdata: lifetime, constructors, shape queries, views,
** indexing, conversion to and from Lua tables, printing.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ldn.h"

/* A shape that must be the last argument (view, reshape, expand); -1 allowed. */
static int check_shape_last(lua_State *L, int arg, int64_t *shape) {
  int ndim = dn_lua_check_shape_min(L, arg, shape, -1);
  int next = lua_istable(L, arg) ? arg + 1 : arg + ndim;
  if (!lua_isnone(L, next))
    luaL_argerror(L, next, lua_pushfstring(L, "size expected, got %s", luaL_typename(L, next)));
  return ndim;
}

/* A dtype name at arg, or dflt when absent. */
static dn_dtype opt_dtype(lua_State *L, int arg, dn_dtype dflt) {
  if (lua_isnoneornil(L, arg)) return dflt;
  const char *name = luaL_checkstring(L, arg);
  dn_dtype dtype;
  if (!dn_dtype_parse(name, &dtype))
    luaL_argerror(L, arg, lua_pushfstring(L, "unknown dtype '%s' (use \"float32\" or \"int32\")", name));
  return dtype;
}

static int tensor_gc(lua_State *L) {
  dn_ltensor *u = luaL_checkudata(L, 1, DN_TENSOR_MT);
  dn_tensor_release(u->t);
  u->t = NULL;
  dn_lua_flush_hooks(L);   /* the hooks that went with the tensor or its graph */
  return 0;
}

/* --- constructors ------------------------------------------------------------ */

/* Walks a nested table: fills shape on the first path, checks every row. */
typedef struct nested {
  int ndim;
  int64_t shape[DN_MAX_DIMS];
  double *values;
  int64_t count;
} nested;

static void nested_shape(lua_State *L, int idx, nested *n) {
  n->ndim = 0;
  lua_pushvalue(L, idx);
  while (lua_istable(L, -1)) {
    if (n->ndim >= DN_MAX_DIMS) dn_lua_error(L, "tensor: nesting deeper than %d dims", DN_MAX_DIMS);
    n->shape[n->ndim++] = (int64_t)lua_rawlen(L, -1);
    if (lua_rawlen(L, -1) == 0) break;
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
}

static void nested_fill(lua_State *L, int idx, nested *n, int depth, char *path, size_t pathlen) {
  if (depth == n->ndim) {
    int isnum;
    lua_Number v = lua_tonumberx(L, idx, &isnum);
    if (!isnum)
      dn_lua_error(L, "tensor: element %s must be a number (got %s)", pathlen ? path : "[]", luaL_typename(L, idx));
    n->values[n->count++] = v;
    return;
  }
  if (!lua_istable(L, idx))
    dn_lua_error(L, "tensor: element %s must be a table of %d items (got %s)", pathlen ? path : "[]",
               (int)n->shape[depth], luaL_typename(L, idx));
  int64_t len = (int64_t)lua_rawlen(L, idx);
  if (len != n->shape[depth])
    dn_lua_error(L, "tensor: row %s has %d items, expected %d (rows must all have the same length)",
               pathlen ? path : "[]", (int)len, (int)n->shape[depth]);
  for (int64_t i = 1; i <= len; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i);
    size_t l = pathlen + (size_t)snprintf(path + pathlen, pathlen < 256 ? 256 - pathlen : 0, "[%lld]",
                                          (long long)i);
    nested_fill(L, lua_gettop(L), n, depth + 1, path, l < 255 ? l : 255);
    path[pathlen] = '\0';
    lua_pop(L, 1);
  }
}

/* dn.tensor(values[, dtype | {dtype=..., requires_grad=...}]) */
static int l_tensor(lua_State *L) {
  dn_dtype dtype = DN_F32;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "dtype");
    dtype = opt_dtype(L, lua_gettop(L), DN_F32);
    lua_pop(L, 1);
  } else {
    dtype = opt_dtype(L, 2, DN_F32);
  }
  if (lua_type(L, 1) == LUA_TNUMBER) {
    double v = lua_tonumber(L, 1);
    dn_ltensor *r = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, dn_tensor_from_doubles(&r->t, dtype, 0, NULL, &v));
    return 1;
  }
  if (dn_lua_test_tensor(L, 1)) {
    dn_ltensor *r = dn_lua_new_tensor_slot(L);
    dn_tensor *src = dn_lua_check_tensor(L, 1);
    dn_lua_check_status(L, dn_tensor_new(&r->t, dtype, src->ndim, src->shape));
    dn_lua_check_status(L, dn_copy_(r->t, src));
    return 1;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  bool requires_grad = false;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "requires_grad");
    requires_grad = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  nested n;
  nested_shape(L, 1, &n);
  int64_t numel;   /* table lengths are borders: a sparse table can claim 2^40 items */
  dn_lua_check_status(L, dn_shape_check("tensor", n.ndim, n.shape, &numel));
  /* the buffer is a userdata so an error below cannot leak it */
  n.values = lua_newuserdatauv(L, (size_t)(numel ? numel : 1) * sizeof(double), 0);
  n.count = 0;
  char path[256] = "";
  nested_fill(L, 1, &n, 0, path, 0);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_tensor_from_doubles(&r->t, dtype, n.ndim, n.shape, n.values));
  if (requires_grad) dn_lua_check_status(L, dn_requires_grad_(r->t, true));
  return 1;
}

/* Shape from arg onwards, then an optional dtype after it. */
static int shape_and_dtype(lua_State *L, int arg, int64_t *shape, dn_dtype *dtype) {
  int ndim = dn_lua_check_shape(L, arg, shape);
  int next = lua_istable(L, arg) ? arg + 1 : arg + ndim;
  *dtype = opt_dtype(L, next, DN_F32);
  return ndim;
}

static int l_zeros(lua_State *L) {
  int64_t shape[DN_MAX_DIMS];
  dn_dtype dtype;
  int ndim = shape_and_dtype(L, 1, shape, &dtype);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_tensor_zeros(&r->t, dtype, ndim, shape));
  return 1;
}

static int l_ones(lua_State *L) {
  int64_t shape[DN_MAX_DIMS];
  dn_dtype dtype;
  int ndim = shape_and_dtype(L, 1, shape, &dtype);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_tensor_ones(&r->t, dtype, ndim, shape));
  return 1;
}

static int l_empty(lua_State *L) {
  int64_t shape[DN_MAX_DIMS];
  dn_dtype dtype;
  int ndim = shape_and_dtype(L, 1, shape, &dtype);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_tensor_zeros(&r->t, dtype, ndim, shape));   /* never expose garbage to Lua */
  return 1;
}

/* dn.full(shape_table, value[, dtype]) */
static int l_full(lua_State *L) {
  int64_t shape[DN_MAX_DIMS];
  luaL_checktype(L, 1, LUA_TTABLE);
  int ndim = dn_lua_check_shape(L, 1, shape);
  double v = luaL_checknumber(L, 2);
  dn_dtype dtype = opt_dtype(L, 3, DN_F32);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_tensor_full(&r->t, dtype, ndim, shape, v));
  return 1;
}

/* dn.arange([start,] end[, step][, dtype]) */
static int l_arange(lua_State *L) {
  int nnum = 0;
  while (lua_type(L, nnum + 1) == LUA_TNUMBER) nnum++;
  if (nnum == 0) luaL_argerror(L, 1, "number expected (end, or start and end)");
  double start = 0, end, step = 1;
  if (nnum == 1) end = lua_tonumber(L, 1);
  else {
    start = lua_tonumber(L, 1);
    end = lua_tonumber(L, 2);
    if (nnum >= 3) step = lua_tonumber(L, 3);
  }
  dn_dtype dtype = opt_dtype(L, nnum + 1, DN_F32);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_tensor_arange(&r->t, dtype, start, end, step));
  return 1;
}

/* dn.eye(n[, m][, dtype]) */
static int l_eye(lua_State *L) {
  lua_Integer n = dn_lua_check_integer(L, 1, "n");
  lua_Integer m = lua_type(L, 2) == LUA_TNUMBER ? dn_lua_check_integer(L, 2, "m") : n;
  dn_dtype dtype = opt_dtype(L, lua_type(L, 2) == LUA_TNUMBER ? 3 : 2, DN_F32);
  if (n < 0 || m < 0) luaL_argerror(L, n < 0 ? 1 : 2, "size must be >= 0");
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_tensor_eye(&r->t, dtype, n, m));
  return 1;
}

/* --- queries ----------------------------------------------------------------- */

static int m_shape(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  lua_createtable(L, t->ndim, 0);
  for (int d = 0; d < t->ndim; d++) {
    lua_pushinteger(L, t->shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
  return 1;
}

static int m_size(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  if (lua_isnoneornil(L, 2)) return m_shape(L);
  lua_pushinteger(L, t->shape[dn_lua_check_dim(L, 2, t->ndim)]);
  return 1;
}

static int m_stride(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    lua_pushinteger(L, t->stride[dn_lua_check_dim(L, 2, t->ndim)]);
    return 1;
  }
  lua_createtable(L, t->ndim, 0);
  for (int d = 0; d < t->ndim; d++) {
    lua_pushinteger(L, t->stride[d]);
    lua_rawseti(L, -2, d + 1);
  }
  return 1;
}

static int m_dim(lua_State *L) {
  lua_pushinteger(L, dn_lua_check_tensor(L, 1)->ndim);
  return 1;
}

static int m_numel(lua_State *L) {
  lua_pushinteger(L, dn_tensor_numel(dn_lua_check_tensor(L, 1)));
  return 1;
}

static int m_dtype(lua_State *L) {
  lua_pushstring(L, dn_dtype_name(dn_lua_check_tensor(L, 1)->dtype));
  return 1;
}

static int m_is_contiguous(lua_State *L) {
  lua_pushboolean(L, dn_tensor_is_contiguous(dn_lua_check_tensor(L, 1)));
  return 1;
}

static void push_value(lua_State *L, dn_dtype dtype, double v) {
  if (dtype == DN_F32) lua_pushnumber(L, v);
  else lua_pushinteger(L, (lua_Integer)v);
}

static int m_item(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  double v;
  dn_lua_check_status(L, dn_tensor_item(t, &v));
  push_value(L, t->dtype, v);
  return 1;
}

static void totable_rec(lua_State *L, const dn_tensor *t, int depth, int64_t *index) {
  if (depth == t->ndim) {
    double v;
    dn_tensor_get(t, index, &v);
    push_value(L, t->dtype, v);
    return;
  }
  luaL_checkstack(L, 4, "tensor too deep");
  lua_createtable(L, (int)t->shape[depth], 0);
  for (int64_t i = 0; i < t->shape[depth]; i++) {
    index[depth] = i;
    totable_rec(L, t, depth + 1, index);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* An empty tensor still costs a table per leading row ([2^39, 0] is 2^39 empty
   tables): refuse shapes whose nesting alone would exhaust memory. */
#define DN_TOTABLE_MAX_TABLES ((int64_t)1 << 28)

static int m_totable(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  int64_t tables = 1;   /* tables at depth d+1 are the rows of dims 0..d */
  for (int d = 0, last = t->ndim - 1; d < last && tables > 0; d++) {
    if (t->shape[d] > DN_TOTABLE_MAX_TABLES / tables) {
      char sb[160];
      return dn_lua_error(L, "totable: a tensor of shape %s would need more than 2^28 Lua tables",
                        dn_shape_str(t, sb, sizeof sb));
    }
    tables *= t->shape[d];
  }
  int64_t index[DN_MAX_DIMS] = {0};
  totable_rec(L, t, 0, index);
  return 1;
}

static int m_tostring(lua_State *L) {
  dn_ltensor *u = luaL_checkudata(L, 1, DN_TENSOR_MT);
  if (!u->t) {
    lua_pushliteral(L, "dropnet.Tensor (closed)");
    return 1;
  }
  char *s = dn_tensor_format(u->t);
  if (!s) return dn_lua_error(L, "tostring: out of memory");
  lua_pushstring(L, s);
  free(s);
  return 1;
}

static int m_len(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  if (t->ndim == 0) return dn_lua_error(L, "len: a 0-dim tensor has no length (use numel or item)");
  lua_pushinteger(L, t->shape[0]);
  return 1;
}

/* --- views --------------------------------------------------------------------- */

static int m_view(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  int64_t shape[DN_MAX_DIMS];
  int ndim = check_shape_last(L, 2, shape);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_view(&r->t, t, ndim, shape));
  return 1;
}

static int m_reshape(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  int64_t shape[DN_MAX_DIMS];
  int ndim = check_shape_last(L, 2, shape);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_reshape(&r->t, t, ndim, shape));
  return 1;
}

static int m_transpose(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  int d0 = dn_lua_check_dim(L, 2, t->ndim), d1 = dn_lua_check_dim(L, 3, t->ndim);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_transpose(&r->t, t, d0, d1));
  return 1;
}

static int m_t(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_t(&r->t, t));
  return 1;
}

static int m_permute(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  int64_t dims64[DN_MAX_DIMS];
  int n = dn_lua_check_shape_min(L, 2, dims64, LUA_MININTEGER);   /* dims, checked below */
  if (n != t->ndim)
    return dn_lua_error(L, "permute: expected %d dims for a %d-D tensor (got %d)", t->ndim, t->ndim, n);
  int dims[DN_MAX_DIMS];
  for (int i = 0; i < n; i++) {
    int64_t d = dims64[i];
    if (d < -n || d > n || d == 0)
      return dn_lua_error(L, "permute: dim %I out of range for a %d-D tensor", (lua_Integer)d, n);
    dims[i] = d > 0 ? (int)d - 1 : (int)(d + n);
    for (int j = 0; j < i; j++)
      if (dims[j] == dims[i]) return dn_lua_error(L, "permute: dim %d appears twice", dims[i] + 1);
  }
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_permute(&r->t, t, dims));
  return 1;
}

/* t:narrow(dim, start, length): start is 1-based */
static int m_narrow(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  int dim = dn_lua_check_dim(L, 2, t->ndim);
  lua_Integer start = dn_lua_check_integer(L, 3, "start"), length = dn_lua_check_integer(L, 4, "length");
  lua_Integer size = t->shape[dim];
  if (start < 1 || length < 0 || start - 1 > size || length > size - (start - 1))   /* never overflows */
    return dn_lua_error(L, "narrow: start %I and length %I out of bounds for dim %d of size %I%s", start, length,
                      dim + 1, size, start == 0 ? " (start is 1-based)" : "");
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_narrow(&r->t, t, dim, start - 1, length));
  return 1;
}

/* What to add to "index i out of range ... of size n": a PyTorch habit (t[0]) gets told that Lua counts from 1. */
static const char *index_hint(lua_Integer index) {
  return index == 0 ? " (indices start at 1; -1 is the last)" : "";
}

/* Pushes t:select(dim, index) with a 1-based index (negative from the end). */
static int push_select(lua_State *L, dn_tensor *t, int dim, lua_Integer index, const char *fname) {
  if (t->ndim == 0) return dn_lua_error(L, "%s: cannot index a 0-dim tensor (use item)", fname);
  lua_Integer size = t->shape[dim];
  lua_Integer i = index < 0 ? index + size + 1 : index;
  if (i < 1 || i > size)
    return dn_lua_error(L, "%s: index %I out of range for dim %d of size %I%s", fname, index, dim + 1, size,
                      index_hint(index));
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_select(&r->t, t, dim, i - 1));
  return 1;
}

static int m_select(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  int dim = dn_lua_check_dim(L, 2, t->ndim);
  return push_select(L, t, dim, dn_lua_check_integer(L, 3, "index"), "select");
}

static int m_unsqueeze(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  lua_Integer d = dn_lua_check_integer(L, 2, "dim");
  int n = t->ndim + 1;
  if (d == 0 || d < -n || d > n)
    return dn_lua_error(L, "unsqueeze: dim %I out of range for a %d-D tensor (use 1..%d or -1..-%d)", d,
                      t->ndim, n, n);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_unsqueeze(&r->t, t, d > 0 ? (int)d - 1 : (int)(d + n)));
  return 1;
}

static int m_squeeze(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  int dim = lua_isnoneornil(L, 2) ? -1 : dn_lua_check_dim(L, 2, t->ndim);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_squeeze(&r->t, t, dim));
  return 1;
}

static int m_expand(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  int64_t shape[DN_MAX_DIMS];
  int ndim = check_shape_last(L, 2, shape);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_broadcast_to(&r->t, t, ndim, shape));
  return 1;
}

/* --- copies ------------------------------------------------------------------------ */

static int m_contiguous(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_contiguous(&r->t, t));
  return 1;
}

static int m_clone(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_clone(&r->t, t));
  return 1;
}

static int m_copy_(lua_State *L) {
  dn_tensor *dst = dn_lua_check_tensor(L, 1), *src = dn_lua_check_tensor(L, 2);
  dn_lua_check_status(L, dn_copy_(dst, src));
  lua_settop(L, 1);
  return 1;
}

static int m_fill_(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  lua_Number value = luaL_checknumber(L, 2);
  dn_lua_check_status(L, dn_fill_(t, value));
  lua_settop(L, 1);
  return 1;
}

static int m_zero_(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  dn_lua_check_status(L, dn_zero_(t));
  lua_settop(L, 1);
  return 1;
}

static int to_dtype(lua_State *L, dn_dtype dtype) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_to_dtype(&r->t, t, dtype));
  return 1;
}
static int m_float(lua_State *L) { return to_dtype(L, DN_F32); }
static int m_int(lua_State *L) { return to_dtype(L, DN_I32); }
static int m_to(lua_State *L) {
  dn_lua_check_tensor(L, 1);
  luaL_checkstring(L, 2);
  return to_dtype(L, opt_dtype(L, 2, DN_F32));
}

/* --- indexing: t[i] and t[i] = v ------------------------------------------------------ */

/* The edit distance of a and b (insertions, deletions, substitutions, swaps of neighbours: "gard" is one
   edit from "grad"), or limit + 1 once it exceeds limit. Names are short: rows of 64 cover every method
   name; longer keys are not compared. */
static int name_distance(const char *a, size_t la, const char *b, size_t lb, int limit) {
  if (la > 63 || lb > 63 || (la > lb ? la - lb : lb - la) > (size_t)limit) return limit + 1;
  int before[64] = {0}, prev[64], row[64];
  for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    row[0] = (int)i;
    int best = row[0];
    for (size_t j = 1; j <= lb; j++) {
      int d = prev[j - 1] + (a[i - 1] != b[j - 1]);
      if (prev[j] + 1 < d) d = prev[j] + 1;
      if (row[j - 1] + 1 < d) d = row[j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && before[j - 2] + 1 < d)
        d = before[j - 2] + 1;
      row[j] = d;
      if (d < best) best = d;
    }
    if (best > limit) return limit + 1;
    memcpy(before, prev, (lb + 1) * sizeof *prev);
    memcpy(prev, row, (lb + 1) * sizeof *prev);
  }
  return prev[lb];
}

/* t.key for a key that is no method or property: an error (a misspelt t.requires_gard would otherwise read
   as nil far from the typo), naming the closest key of the tables at stack indices methods and properties
   when one is at most 1 edit away (keys of up to 4 characters) or 2. */
static int unknown_field(lua_State *L, int methods, int properties) {
  size_t key_len;
  const char *key = lua_tolstring(L, 2, &key_len);
  if (lua_type(L, 2) != LUA_TSTRING)
    return dn_lua_error(L, "index: a tensor has no field %s (index with an integer, or call a method)",
                        luaL_typename(L, 2));
  int limit = key_len <= 4 ? 1 : 2, best_distance = limit + 1;
  const char *best = NULL;
  int tables[2] = {methods, properties};
  for (int k = 0; k < 2; k++) {
    lua_pushnil(L);
    while (lua_next(L, tables[k])) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING) continue;
      size_t len;
      const char *name = lua_tolstring(L, -1, &len);
      int d = name_distance(key, key_len, name, len, limit);
      if (d < best_distance || (d == best_distance && best && strcmp(name, best) < 0)) {
        best_distance = d;
        best = name;   /* the table keeps the string alive */
      }
    }
  }
  if (best)
    return dn_lua_error(L, "index: a tensor has no field '%s' (did you mean %s?)", key, best);
  return dn_lua_error(L, "index: a tensor has no field '%s' (its methods and properties are listed in "
                      "docs/lua-api.md)", key);
}

static int m_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER) {
    dn_tensor *t = dn_lua_check_tensor(L, 1);
    lua_Integer i = dn_lua_check_integer(L, 2, "index");
    if (t->ndim == 1) {
      lua_Integer size = t->shape[0], j = i < 0 ? i + size + 1 : i;
      if (j < 1 || j > size)
        return dn_lua_error(L, "index: index %I out of range for a tensor of size %I%s", i, size, index_hint(i));
      double v;
      dn_lua_check_status(L, dn_tensor_get(t, (int64_t[]){j - 1}, &v));
      push_value(L, t->dtype, v);
      return 1;
    }
    return push_select(L, t, 0, i, "index");
  }
  /* methods and properties live in the metatable's __methods table; self may be
     anything when __index is called directly, so check it is a tensor first */
  luaL_checkudata(L, 1, DN_TENSOR_MT);
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "__methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  if (!lua_isnil(L, -1)) return 1;
  /* properties: __properties[key](t) */
  lua_getfield(L, -3, "__properties");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  if (lua_isfunction(L, -1)) {
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
  }
  return unknown_field(L, lua_gettop(L) - 3, lua_gettop(L) - 1);
}

static int m_newindex(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  if (lua_type(L, 2) != LUA_TNUMBER) {
    /* property setters: __setters[key](t, v) */
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__setters");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    if (lua_isfunction(L, -1)) {
      lua_pushvalue(L, 1);
      lua_pushvalue(L, 3);
      lua_call(L, 2, 0);
      return 0;
    }
    return dn_lua_error(L, "newindex: cannot set field '%s' of a tensor", luaL_tolstring(L, 2, NULL));
  }
  lua_Integer i = dn_lua_check_integer(L, 2, "index");
  dn_lua_check_status(L, dn_check_inplace("newindex", t));
  if (t->ndim == 0) return dn_lua_error(L, "newindex: cannot index a 0-dim tensor (use fill_)");
  lua_Integer size = t->shape[0], j = i < 0 ? i + size + 1 : i;
  if (j < 1 || j > size)
    return dn_lua_error(L, "newindex: index %I out of range for dim 1 of size %I%s", i, size, index_hint(i));
  dn_tensor *row;
  dn_lua_check_status(L, dn_select(&row, t, 0, j - 1));
  dn_status st;
  if (lua_type(L, 3) == LUA_TNUMBER) {
    st = dn_fill_(row, lua_tonumber(L, 3));
  } else {
    dn_tensor *src = dn_lua_test_tensor(L, 3);
    if (!src) {
      dn_tensor_release(row);
      return dn_lua_error(L, "newindex: value must be a number or a tensor (got %s)", luaL_typename(L, 3));
    }
    st = dn_copy_(row, src);
  }
  dn_tensor_release(row);
  dn_lua_check_status(L, st);
  return 0;
}

static const luaL_Reg tensor_methods[] = {
  {"shape", m_shape}, {"size", m_size}, {"stride", m_stride}, {"dim", m_dim}, {"numel", m_numel},
  {"dtype", m_dtype}, {"is_contiguous", m_is_contiguous}, {"item", m_item}, {"totable", m_totable},
  {"view", m_view}, {"reshape", m_reshape}, {"transpose", m_transpose}, {"t", m_t}, {"permute", m_permute},
  {"narrow", m_narrow}, {"select", m_select}, {"unsqueeze", m_unsqueeze}, {"squeeze", m_squeeze},
  {"expand", m_expand}, {"contiguous", m_contiguous}, {"clone", m_clone}, {"copy_", m_copy_},
  {"fill_", m_fill_}, {"zero_", m_zero_}, {"float", m_float}, {"int", m_int}, {"to", m_to}, {"close", tensor_gc},
  {NULL, NULL}};

static const luaL_Reg tensor_meta[] = {
  {"__index", m_index}, {"__newindex", m_newindex}, {"__tostring", m_tostring}, {"__len", m_len},
  {"__gc", tensor_gc}, {"__close", tensor_gc}, {NULL, NULL}};

static const luaL_Reg tensor_functions[] = {
  {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"empty", l_empty}, {"full", l_full},
  {"arange", l_arange}, {"eye", l_eye}, {NULL, NULL}};

/* Creates the Tensor metatable (with __methods, __properties, __setters)
   and adds the constructors to the module table at the top of the stack. */
void dn_lua_open_tensor(lua_State *L) {
  luaL_newmetatable(L, DN_TENSOR_MT);
  luaL_setfuncs(L, tensor_meta, 0);
  lua_pushliteral(L, "dropnet.Tensor");
  lua_setfield(L, -2, "__name");
  luaL_newlib(L, tensor_methods);
  lua_setfield(L, -2, "__methods");
  lua_newtable(L);
  lua_setfield(L, -2, "__properties");
  lua_newtable(L);
  lua_setfield(L, -2, "__setters");
  lua_setfield(L, -2, "Tensor");   /* module.Tensor = the metatable */
  luaL_setfuncs(L, tensor_functions, 0);
}
