/*
** Tensor math from Lua: arithmetic (methods and metamethods), element-wise
** functions, comparisons, reductions, norms and cumulative sums, masked
** fills, joining (cat, stack), matmul and index ops.
*/
#include <math.h>

#include "ldn.h"

/* --- binary ops: tensor op tensor, tensor op number, number op tensor -------------- */

static int push_binary(lua_State *L, dn_binop op, int arg_a, int arg_b) {
  dn_tensor *a = dn_lua_test_tensor(L, arg_a), *b = dn_lua_test_tensor(L, arg_b);
  dn_ltensor *r;
  if (a && b) {
    r = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, dn_binary(&r->t, op, a, b));
  } else if (a && lua_type(L, arg_b) == LUA_TNUMBER) {
    r = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, dn_binary_scalar(&r->t, op, a, lua_tonumber(L, arg_b), false));
  } else if (b && lua_type(L, arg_a) == LUA_TNUMBER) {
    r = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, dn_binary_scalar(&r->t, op, b, lua_tonumber(L, arg_a), true));
  } else {
    int bad = a || lua_type(L, arg_a) == LUA_TNUMBER ? arg_b : arg_a;
    return dn_lua_error(L, "%s: expected a tensor or a number (got %s)", dn_binop_name(op), luaL_typename(L, bad));
  }
  return 1;
}

#define BINARY(name, op) \
  static int name(lua_State *L) { return push_binary(L, op, 1, 2); }
BINARY(m_add, DN_ADD)
BINARY(m_sub, DN_SUB)
BINARY(m_mul, DN_MUL)
BINARY(m_div, DN_DIV)
BINARY(m_pow, DN_POW)
BINARY(m_eq, DN_EQ)
BINARY(m_ne, DN_NE)
BINARY(m_lt, DN_LT)
BINARY(m_le, DN_LE)
BINARY(m_gt, DN_GT)
BINARY(m_ge, DN_GE)
BINARY(m_maximum, DN_MAXIMUM)
BINARY(m_minimum, DN_MINIMUM)

static int push_binary_inplace(lua_State *L, dn_binop op) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  dn_tensor *b = dn_lua_test_tensor(L, 2);
  if (b) dn_lua_check_status(L, dn_binary_(a, op, b));
  else dn_lua_check_status(L, dn_binary_scalar_(a, op, luaL_checknumber(L, 2)));
  lua_settop(L, 1);
  return 1;
}

#define BINARY_INPLACE(name, op) \
  static int name(lua_State *L) { return push_binary_inplace(L, op); }
BINARY_INPLACE(m_add_, DN_ADD)
BINARY_INPLACE(m_sub_, DN_SUB)
BINARY_INPLACE(m_mul_, DN_MUL)
BINARY_INPLACE(m_div_, DN_DIV)

/* --- unary ops -------------------------------------------------------------------------- */

static int push_unary(lua_State *L, dn_unop op) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_unary(&r->t, op, a));
  return 1;
}

#define UNARY(name, op) \
  static int name(lua_State *L) { return push_unary(L, op); }
UNARY(m_neg, DN_NEG)
UNARY(m_exp, DN_EXP)
UNARY(m_log, DN_LOG)
UNARY(m_sqrt, DN_SQRT)
UNARY(m_abs, DN_ABS)
UNARY(m_relu, DN_RELU)
UNARY(m_sigmoid, DN_SIGMOID)
UNARY(m_tanh, DN_TANH)

static int m_unm(lua_State *L) { return push_unary(L, DN_NEG); }

/* t:clamp(lo, hi): nil for no bound on that side */
static int m_clamp(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  double lo = lua_isnoneornil(L, 2) ? NAN : luaL_checknumber(L, 2);
  double hi = lua_isnoneornil(L, 3) ? NAN : luaL_checknumber(L, 3);
  if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3))
    return dn_lua_error(L, "clamp: give at least one of min and max");
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_clamp(&r->t, a, lo, hi));
  return 1;
}

/* An argument as a tensor: tensors as they are, numbers as 0-dim float32. */
static dn_tensor *tensor_or_number(lua_State *L, int arg, const char *fname, dn_tensor **owned) {
  *owned = NULL;
  dn_tensor *t = dn_lua_test_tensor(L, arg);
  if (t) return t;
  if (lua_type(L, arg) != LUA_TNUMBER)
    dn_lua_error(L, "%s: argument #%d must be a tensor or a number (got %s)", fname, arg, luaL_typename(L, arg));
  double v = lua_tonumber(L, arg);
  /* kept alive by a userdata so a later error cannot leak it */
  dn_ltensor *holder = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_tensor_from_doubles(&holder->t, DN_F32, 0, NULL, &v));
  lua_replace(L, arg);
  *owned = holder->t;
  return holder->t;
}

/* dn.where(cond, a, b) */
static int l_where(lua_State *L) {
  dn_tensor *cond = dn_lua_check_tensor(L, 1), *own_a, *own_b;
  dn_tensor *a = tensor_or_number(L, 2, "where", &own_a);
  dn_tensor *b = tensor_or_number(L, 3, "where", &own_b);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_where(&r->t, cond, a, b));
  return 1;
}

/* --- reductions ---------------------------------------------------------------------------- */

typedef dn_status (*reduce_all_fn)(dn_tensor **, const dn_tensor *);
typedef dn_status (*reduce_dim_fn)(dn_tensor **, const dn_tensor *, int, bool);

static int push_reduce(lua_State *L, reduce_all_fn all, reduce_dim_fn by_dim) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  if (lua_isnoneornil(L, 2)) {
    dn_ltensor *r = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, all(&r->t, a));
    return 1;
  }
  int dim = dn_lua_check_dim(L, 2, a->ndim);
  bool keepdim = lua_toboolean(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, by_dim(&r->t, a, dim, keepdim));
  return 1;
}

static int m_sum(lua_State *L) { return push_reduce(L, dn_sum_all, dn_sum_dim); }
static int m_mean(lua_State *L) { return push_reduce(L, dn_mean_all, dn_mean_dim); }

/* var/std([dim[, keepdim[, unbiased = true]]]) or var/std(unbiased) over all elements */
static int push_spread(lua_State *L, bool is_std) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  dn_ltensor *r;
  if (lua_isnoneornil(L, 2) || lua_isboolean(L, 2)) {
    int correction = lua_isboolean(L, 2) && !lua_toboolean(L, 2) ? 0 : 1;
    r = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, is_std ? dn_std_all(&r->t, a, correction) : dn_var_all(&r->t, a, correction));
    return 1;
  }
  int dim = dn_lua_check_dim(L, 2, a->ndim);
  bool keepdim = lua_toboolean(L, 3);
  int correction = lua_isnoneornil(L, 4) || lua_toboolean(L, 4) ? 1 : 0;
  r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, is_std ? dn_std_dim(&r->t, a, dim, keepdim, correction)
                                : dn_var_dim(&r->t, a, dim, keepdim, correction));
  return 1;
}
static int m_var(lua_State *L) { return push_spread(L, false); }
static int m_std(lua_State *L) { return push_spread(L, true); }

/* max/min(): 0-dim value; max/min(dim[, keepdim]): values, 1-based indices (Torch7) */
static int push_extreme(lua_State *L, bool is_max) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  if (lua_isnoneornil(L, 2)) {
    dn_ltensor *r = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, is_max ? dn_max_all(&r->t, a) : dn_min_all(&r->t, a));
    return 1;
  }
  if (dn_lua_test_tensor(L, 2)) return push_binary(L, is_max ? DN_MAXIMUM : DN_MINIMUM, 1, 2);
  int dim = dn_lua_check_dim(L, 2, a->ndim);
  bool keepdim = lua_toboolean(L, 3);
  dn_ltensor *values = dn_lua_new_tensor_slot(L);
  dn_ltensor *indices = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, is_max ? dn_max_dim(&values->t, &indices->t, a, dim, keepdim, 1)
                                : dn_min_dim(&values->t, &indices->t, a, dim, keepdim, 1));
  return 2;
}
static int m_max(lua_State *L) { return push_extreme(L, true); }
static int m_min(lua_State *L) { return push_extreme(L, false); }

static int push_arg_extreme(lua_State *L, bool is_max) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  dn_ltensor *r;
  if (lua_isnoneornil(L, 2)) {
    r = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, is_max ? dn_argmax_all(&r->t, a, 1) : dn_argmin_all(&r->t, a, 1));
    return 1;
  }
  int dim = dn_lua_check_dim(L, 2, a->ndim);
  bool keepdim = lua_toboolean(L, 3);
  r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, is_max ? dn_max_dim(NULL, &r->t, a, dim, keepdim, 1)
                                : dn_min_dim(NULL, &r->t, a, dim, keepdim, 1));
  return 1;
}
static int m_argmax(lua_State *L) { return push_arg_extreme(L, true); }
static int m_argmin(lua_State *L) { return push_arg_extreme(L, false); }

/* t:norm([p = 2[, dim[, keepdim]]]): p a number >= 0 (math.huge: the max); dim nil for all elements */
static int m_norm(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  double p = luaL_optnumber(L, 2, 2.0);
  dn_ltensor *r;
  if (lua_isnoneornil(L, 3)) {
    r = dn_lua_new_tensor_slot(L);
    dn_lua_check_status(L, dn_vector_norm_all(&r->t, a, p));
    return 1;
  }
  int dim = dn_lua_check_dim(L, 3, a->ndim);
  bool keepdim = lua_toboolean(L, 4);
  r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_vector_norm_dim(&r->t, a, p, dim, keepdim));
  return 1;
}

/* t:cumsum(dim) */
static int m_cumsum(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  int dim = dn_lua_check_dim(L, 2, a->ndim);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_cumsum(&r->t, a, dim));
  return 1;
}

/* --- masked fill ------------------------------------------------------------------------------- */

/* t:masked_fill(mask, value), t:masked_fill_(mask, value) */
static int m_masked_fill(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1), *mask = dn_lua_check_tensor(L, 2);
  double value = luaL_checknumber(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_masked_fill(&r->t, a, mask, value));
  return 1;
}

static int m_masked_fill_(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1), *mask = dn_lua_check_tensor(L, 2);
  double value = luaL_checknumber(L, 3);
  dn_lua_check_status(L, dn_masked_fill_(a, mask, value));
  lua_settop(L, 1);
  return 1;
}

/* --- joining ------------------------------------------------------------------------------------ */

/* dn.cat(tensors[, dim = 1]), dn.stack(tensors[, dim = 1]): dim is checked here against the dims it
   refers to (cat: the first tensor that is not 1-D and empty; stack: one more than the tensors') */
static int push_join(lua_State *L, bool stack) {
  lua_settop(L, 2);   /* the list's owner goes to 3 */
  int n;
  dn_tensor **items = dn_lua_check_tensor_list(L, 1, stack ? "stack" : "cat", &n);   /* pushes its owner */
  int ndim = 1;
  if (n > 0) ndim = stack ? items[0]->ndim + 1 : items[0]->ndim;
  for (int k = 0; !stack && k < n; k++) {
    if (!(items[k]->ndim == 1 && items[k]->shape[0] == 0)) {
      ndim = items[k]->ndim;
      break;
    }
  }
  int dim = lua_isnoneornil(L, 2) || n == 0 ? 0 : dn_lua_check_dim(L, 2, ndim);   /* an empty list: the runtime says so */
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  const dn_tensor *const *list = (const dn_tensor *const *)items;
  dn_lua_check_status(L, stack ? dn_stack(&r->t, list, n, dim) : dn_cat(&r->t, list, n, dim));
  return 1;
}
static int l_cat(lua_State *L) { return push_join(L, false); }
static int l_stack(lua_State *L) { return push_join(L, true); }

/* --- matmul and index ops -------------------------------------------------------------------- */

static int m_matmul(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1), *b = dn_lua_check_tensor(L, 2);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_matmul(&r->t, a, b));
  return 1;
}

/* t:index_select(dim, index): index is a 1-D int32 tensor of 1-based positions */
static int m_index_select(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  int dim = dn_lua_check_dim(L, 2, a->ndim);
  dn_tensor *index = dn_lua_check_tensor(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_index_select(&r->t, a, dim, index, 1));
  return 1;
}

/* t:gather(dim, index): index int32 of t's ndim holding 1-based positions along dim */
static int m_gather(lua_State *L) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  int dim = dn_lua_check_dim(L, 2, a->ndim);
  dn_tensor *index = dn_lua_check_tensor(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_gather(&r->t, a, dim, index, 1));
  return 1;
}

/* t:scatter_add(dim, index, src) and t:scatter_add_(dim, index, src): 1-based index values */
static int push_scatter_add(lua_State *L, bool in_place) {
  dn_tensor *a = dn_lua_check_tensor(L, 1);
  int dim = dn_lua_check_dim(L, 2, a->ndim);
  dn_tensor *index = dn_lua_check_tensor(L, 3), *src = dn_lua_check_tensor(L, 4);
  if (in_place) {
    dn_lua_check_status(L, dn_scatter_add_(a, dim, index, src, 1));
    lua_settop(L, 1);
    return 1;
  }
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_scatter_add(&r->t, a, dim, index, src, 1));
  return 1;
}
static int m_scatter_add(lua_State *L) { return push_scatter_add(L, false); }
static int m_scatter_add_(lua_State *L) { return push_scatter_add(L, true); }

/* bytes:byte_rows_to_float(index, table): index 1-based, or nil for every row */
static int m_byte_rows_to_float(lua_State *L) {
  dn_tensor *src = dn_lua_check_tensor(L, 1);
  dn_tensor *index = lua_isnoneornil(L, 2) ? NULL : dn_lua_check_tensor(L, 2);
  dn_tensor *table = dn_lua_check_tensor(L, 3);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_byte_rows_to_float(&r->t, src, index, 1, table));
  return 1;
}

/* labels:one_hot(num_classes): labels int32, 1-based */
static int m_one_hot(lua_State *L) {
  dn_tensor *index = dn_lua_check_tensor(L, 1);
  lua_Integer n = dn_lua_check_integer(L, 2, "num_classes");
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_one_hot(&r->t, index, n, 1));
  return 1;
}

static const luaL_Reg op_methods[] = {
  {"add", m_add}, {"sub", m_sub}, {"mul", m_mul}, {"div", m_div}, {"pow", m_pow},
  {"eq", m_eq}, {"ne", m_ne}, {"lt", m_lt}, {"le", m_le}, {"gt", m_gt}, {"ge", m_ge},
  {"maximum", m_maximum}, {"minimum", m_minimum},
  {"add_", m_add_}, {"sub_", m_sub_}, {"mul_", m_mul_}, {"div_", m_div_},
  {"neg", m_neg}, {"exp", m_exp}, {"log", m_log}, {"sqrt", m_sqrt}, {"abs", m_abs},
  {"relu", m_relu}, {"sigmoid", m_sigmoid}, {"tanh", m_tanh}, {"clamp", m_clamp},
  {"sum", m_sum}, {"mean", m_mean}, {"var", m_var}, {"std", m_std},
  {"max", m_max}, {"min", m_min}, {"argmax", m_argmax}, {"argmin", m_argmin},
  {"norm", m_norm}, {"cumsum", m_cumsum}, {"masked_fill", m_masked_fill}, {"masked_fill_", m_masked_fill_},
  {"matmul", m_matmul}, {"index_select", m_index_select}, {"one_hot", m_one_hot},
  {"gather", m_gather}, {"scatter_add", m_scatter_add}, {"scatter_add_", m_scatter_add_},
  {"byte_rows_to_float", m_byte_rows_to_float}, {NULL, NULL}};

static const luaL_Reg op_meta[] = {
  {"__add", m_add}, {"__sub", m_sub}, {"__mul", m_mul}, {"__div", m_div}, {"__pow", m_pow},
  {"__unm", m_unm}, {NULL, NULL}};

/* Functional forms: dn.add(a, b), dn.exp(t), ... share the methods. */
static const char *const functional[] = {
  "add", "sub", "mul", "div", "pow", "eq", "ne", "lt", "le", "gt", "ge", "maximum", "minimum",
  "neg", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "clamp", "sum", "mean", "var", "std",
  "max", "min", "argmax", "argmin", "norm", "cumsum", "masked_fill", "matmul", "index_select", "one_hot",
  "gather", "scatter_add",
  "byte_rows_to_float", NULL};

void dn_lua_open_ops(lua_State *L) {
  luaL_getmetatable(L, DN_TENSOR_MT);
  luaL_setfuncs(L, op_meta, 0);
  lua_getfield(L, -1, "__methods");
  luaL_setfuncs(L, op_methods, 0);
  for (const char *const *name = functional; *name; name++) {
    lua_getfield(L, -1, *name);
    lua_setfield(L, -4, *name);   /* module table */
  }
  lua_pop(L, 2);
  lua_pushcfunction(L, l_where);
  lua_setfield(L, -2, "where");
  lua_pushcfunction(L, l_cat);
  lua_setfield(L, -2, "cat");
  lua_pushcfunction(L, l_stack);
  lua_setfield(L, -2, "stack");
}
