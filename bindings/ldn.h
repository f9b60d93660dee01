/*
** Shared helpers of the Lua C module (dropnet.core), defined in laux.c.
** A binding checks its arguments, calls one runtime function, turns a failed
** status into a Lua error carrying the runtime's message, and pushes results.
*/
#ifndef DROPNET_LDN_H
#define DROPNET_LDN_H

#include <lauxlib.h>
#include <lua.h>

#include "dropnet/dropnet.h"

#define DN_TENSOR_MT "dropnet.Tensor"
#define DN_GENERATOR_MT "dropnet.Generator"
/* The registry field holding the default generator (made by dn_lua_open_random). */
#define DN_DEFAULT_GENERATOR_KEY "dropnet.default_generator"

/* Tensor userdata: one reference to a dn_tensor (NULL once released). */
typedef struct dn_ltensor {
  dn_tensor *t;
} dn_ltensor;

/* Pushes a new userdata owning `t` (steals the reference; t may not be NULL). */
void dn_lua_push_tensor(lua_State *L, dn_tensor *t);
/* Pushes a userdata holding NULL (for "create the tensor after the userdata exists",
   so an allocation can never leak if the push itself raises). */
dn_ltensor *dn_lua_new_tensor_slot(lua_State *L);
/* Argument arg as a live tensor, or a Lua error naming the function. */
dn_tensor *dn_lua_check_tensor(lua_State *L, int arg);
dn_tensor *dn_lua_test_tensor(lua_State *L, int arg);   /* NULL if not a tensor; error if closed */

/* The tensors of the list (a table) at arg, in an array that a userdata pushed on the stack owns (the
   collector frees it, so an error while reading cannot leak it). Borrowed: the list keeps them alive.
   Errors name fname and the item that is not a tensor. */
dn_tensor **dn_lua_check_tensor_list(lua_State *L, int arg, const char *fname, int *count);

/* Type name for messages: "dropnet.Tensor" rather than "userdata". */
const char *dn_lua_typename(lua_State *L, int arg);

/* luaL_error with the position of the user's line: the caller's "file:line: ", or when the caller is the
   Lua library (the dropnet Lua files), the innermost frame outside it, so that a shape error met in nn.Linear names
   the script's line that called the model. Every binding raises its errors through it. */
int dn_lua_error(lua_State *L, const char *fmt, ...);
/* Pushes that position ("" when there is none). */
void dn_lua_where(lua_State *L);

/* Raises the runtime's last error message when st != DN_OK. The usual shape:
     dn_ltensor *r = dn_lua_new_tensor_slot(L);
     dn_lua_check_status(L, dn_add(&r->t, a, b));
   (a failing call leaves r->t NULL, which __gc ignores). */
int dn_lua_check_status(lua_State *L, dn_status st);
/* An integer argument (rejects 2.5 and NaN with a message naming what). */
lua_Integer dn_lua_check_integer(lua_State *L, int arg, const char *what);
/* A shape either as a table {2,3} or as integers from arg onwards. Returns ndim. */
int dn_lua_check_shape(lua_State *L, int arg, int64_t *shape);
/* The same with each size >= min_size (-1 lets view infer one; LUA_MININTEGER leaves the
   check to the caller). */
int dn_lua_check_shape_min(lua_State *L, int arg, int64_t *shape, lua_Integer min_size);
/* A dim argument, 1-based from Lua (negative counts from the end), to a 0-based C dim. */
int dn_lua_check_dim(lua_State *L, int arg, int ndim);

/* The default generator (owned by the module, stored in the registry). */
dn_rng *dn_lua_default_rng(lua_State *L);
/* Argument arg as a Generator, or the default one when absent/nil. */
dn_rng *dn_lua_opt_rng(lua_State *L, int arg);

/* Tells the Lua collector about C memory growth (Lua cannot see it). */
void dn_lua_account_memory(lua_State *L);
/* A young collection (laux.c): at the end of a step, when its tensors have just died. */
void dn_lua_collect_young(lua_State *L);

/* dn_backward from Lua (t:backward): Lua hooks run on L, and the error a hook raised is raised again
   here, as it was; any other failure comes back as the status. lhook.c. */
dn_status dn_lua_backward(lua_State *L, dn_tensor *t, const dn_tensor *grad, bool retain_graph);
/* Releases the registry references of the Lua hooks freed since the last call (a hook can be freed
   where no Lua call is safe, so it is queued): tensor __gc and the hook functions call it. */
void dn_lua_flush_hooks(lua_State *L);

/* Registration of each area's functions into the module table at -1 and
   methods into the Tensor metatable's method table at -2. */
void dn_lua_open_tensor(lua_State *L);
void dn_lua_open_ops(lua_State *L);
void dn_lua_open_random(lua_State *L);
void dn_lua_open_autograd(lua_State *L);
void dn_lua_open_hook(lua_State *L);
void dn_lua_open_nn(lua_State *L);
void dn_lua_open_dropout(lua_State *L);
void dn_lua_open_optim(lua_State *L);
void dn_lua_open_io(lua_State *L);
void dn_lua_open_conv(lua_State *L);
void dn_lua_open_pool(lua_State *L);
void dn_lua_open_norm(lua_State *L);
void dn_lua_open_augment(lua_State *L);
void dn_lua_open_sort(lua_State *L);
void dn_lua_open_signal(lua_State *L);
void dn_lua_open_dist(lua_State *L);

#endif
