/*
** Gradient hooks from Lua: t:register_hook(fn), dn.hook_aliases(tensors, fn)
** and their handles (handle:remove()), over the runtime's C hooks.
**
** The runtime calls a hook in the middle of dn_backward, so a Lua error must
** never longjmp through it: the trampoline runs the Lua function under
** lua_pcall on the thread that called backward, turns a failure into a
** status, and leaves the error object on that thread's stack, from where
** t:backward() raises it again once the engine has cleaned up. So the hook's
** own error (message, position) is what the caller sees.
**
** A hook's Lua function is held by a registry reference that the hook owns:
** it is released when the hook is removed or its tensor (for a result, its
** node) is freed. That can happen deep inside any release, where no Lua call
** is safe, so the free callback only queues the reference; the queue is
** emptied (luaL_unref) by the next tensor __gc, handle call or backward.
*/
#include <stdlib.h>

#include "ldn.h"

#define DN_HOOK_HANDLE_MT "dropnet.HookHandle"

/* What the runtime holds as a hook's userdata. */
typedef struct lua_hook {
  int ref;                  /* the Lua function, in the registry */
  bool group;               /* dn.hook_aliases: gradients as a table */
  lua_State *main;          /* the state's main thread: whose registry ref is */
  struct lua_hook *next;    /* in the queue of freed hooks */
} lua_hook;

typedef struct hook_handle {
  dn_hook *h;
} hook_handle;

/* The thread running backward (hooks run there), and the freed hooks waiting for their unref. Lua
   states are driven by one OS thread at a time, as the runtime's graphs are. */
static _Thread_local lua_State *backward_thread;
static _Thread_local lua_hook *freed_hooks;

static lua_State *main_thread(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  return main;
}

static void queue_free(void *userdata) {
  lua_hook *h = userdata;
  h->next = freed_hooks;
  freed_hooks = h;
}

/* Releases the registry references of L's freed hooks (those of other states stay queued). Neither
   luaL_unref nor the reads here allocate, so this never raises. */
void dn_lua_flush_hooks(lua_State *L) {
  if (!freed_hooks) return;
  lua_State *main = main_thread(L);
  lua_hook **link = &freed_hooks;
  while (*link) {
    lua_hook *h = *link;
    if (h->main != main) {
      link = &h->next;
      continue;
    }
    *link = h->next;
    luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
    free(h);
  }
}

/* --- the trampoline ---------------------------------------------------------------- */

typedef struct hook_call {
  int ref;
  bool group;
  int n;
  dn_tensor *const *grads;
  dn_tensor **reps;
} hook_call;

/* A new userdata holding another reference to t. */
static void push_grad(lua_State *L, dn_tensor *t) {
  dn_ltensor *u = dn_lua_new_tensor_slot(L);
  u->t = dn_tensor_retain(t);
}

/* The replacement at the top (nil: none) as c->reps[i], or a Lua error. */
static void take_replacement(lua_State *L, hook_call *c, int i) {
  if (lua_isnil(L, -1)) return;
  dn_ltensor *u = luaL_testudata(L, -1, DN_TENSOR_MT);
  if (!u || !u->t) {
    const char *got = u ? "a closed tensor" : dn_lua_typename(L, -1);
    if (c->group)
      dn_lua_error(L, "hook_aliases: item %d of a hook's result must be a tensor or nil (got %s)", i + 1, got);
    dn_lua_error(L, "register_hook: a hook must return a tensor or nil (got %s)", got);
  }
  c->reps[i] = dn_tensor_retain(u->t);
}

/* Under lua_pcall: calls the hook and collects its replacements (their shapes are the runtime's
   to check). */
static int call_protected(lua_State *L) {
  hook_call *c = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  if (!c->group) {
    push_grad(L, c->grads[0]);
    lua_call(L, 1, 1);
    take_replacement(L, c, 0);
    return 0;
  }
  lua_createtable(L, c->n, 1);
  for (int i = 0; i < c->n; i++) {
    if (!c->grads[i]) continue;
    push_grad(L, c->grads[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushinteger(L, c->n);
  lua_setfield(L, -2, "n");
  lua_call(L, 1, 1);
  if (lua_isnil(L, -1)) return 0;
  if (!lua_istable(L, -1))
    return dn_lua_error(L, "hook_aliases: a hook must return a table of gradients or nil (got %s)",
                      dn_lua_typename(L, -1));
  for (int i = 0; i < c->n; i++) {
    lua_rawgeti(L, -1, i + 1);
    take_replacement(L, c, i);
    lua_pop(L, 1);
  }
  return 0;
}

static dn_status trampoline(void *userdata, int n, dn_tensor *const *grads, dn_tensor **reps) {
  const lua_hook *h = userdata;   /* read now: the hook may remove itself */
  lua_State *L = backward_thread;
  if (!L) return dn_fail(DN_EINVAL, "backward: a Lua hook ran outside t:backward()");
  if (!lua_checkstack(L, 4)) return dn_fail(DN_ENOMEM, "backward: no Lua stack left to run a hook");
  hook_call c = {h->ref, h->group, n, grads, reps};
  lua_pushcfunction(L, call_protected);
  lua_pushlightuserdata(L, &c);
  if (lua_pcall(L, 1, 0, 0) == LUA_OK) return DN_OK;
  for (int i = 0; i < n; i++) {   /* the ones taken before the error */
    dn_tensor_release(reps[i]);
    reps[i] = NULL;
  }
  /* the error object stays on the stack for dn_lua_backward */
  return dn_fail(DN_EINVAL, "backward: a hook raised an error: %s",
                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
}

dn_status dn_lua_backward(lua_State *L, dn_tensor *t, const dn_tensor *grad, bool retain_graph) {
  int top = lua_gettop(L);
  lua_State *outer = backward_thread;   /* a hook may call backward itself */
  backward_thread = L;
  dn_status st = dn_backward(t, grad, retain_graph);
  backward_thread = outer;
  dn_lua_flush_hooks(L);
  if (st && lua_gettop(L) > top) {
    lua_settop(L, top + 1);   /* the hook's error */
    lua_error(L);
  }
  lua_settop(L, top);
  return st;
}

/* --- registration ---------------------------------------------------------------------- */

static hook_handle *push_handle(lua_State *L) {
  hook_handle *hd = lua_newuserdatauv(L, sizeof *hd, 0);
  hd->h = NULL;
  luaL_setmetatable(L, DN_HOOK_HANDLE_MT);
  return hd;
}

/* The function at arg as a registry reference inside a new lua_hook. */
static lua_hook *new_lua_hook(lua_State *L, int arg, bool group, const char *fname) {
  lua_pushvalue(L, arg);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_hook *h = malloc(sizeof *h);
  if (!h) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    dn_lua_error(L, "%s: out of memory", fname);
  }
  h->ref = ref;
  h->group = group;
  h->main = main_thread(L);
  h->next = NULL;
  return h;
}

/* Undoes new_lua_hook after the runtime refused the registration, then raises its error. */
static int refused(lua_State *L, lua_hook *h, dn_status st) {
  luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
  free(h);
  return dn_lua_check_status(L, st);
}

/* t:register_hook(fn) -> handle */
static int m_register_hook(lua_State *L) {
  dn_tensor *t = dn_lua_check_tensor(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  dn_lua_flush_hooks(L);
  hook_handle *hd = push_handle(L);
  lua_hook *h = new_lua_hook(L, 2, false, "register_hook");
  dn_status st = dn_register_hook(&hd->h, t, trampoline, h, queue_free);
  if (st) return refused(L, h, st);
  return 1;
}

/* dn.hook_aliases(tensors, fn) -> aliases, handle */
static int l_hook_aliases(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if (n < 1 || n > 4096)
    return luaL_argerror(L, 1, lua_pushfstring(L, "1 to 4096 tensors expected (got %I)", n));
  dn_lua_flush_hooks(L);
  /* the inputs and outputs in a userdata, and the result's slots made first: nothing below the
     registration can raise */
  dn_tensor **ins = lua_newuserdatauv(L, 2 * (size_t)n * sizeof *ins, 0);
  dn_tensor **outs = ins + n;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    dn_ltensor *u = luaL_testudata(L, -1, DN_TENSOR_MT);
    if (!u || !u->t)
      return luaL_argerror(L, 1, lua_pushfstring(L, "item %I must be a tensor (got %s)", i,
                                                 u ? "a closed tensor" : dn_lua_typename(L, -1)));
    ins[i - 1] = u->t;   /* kept alive by the argument table */
    lua_pop(L, 1);
  }
  lua_createtable(L, (int)n, 0);
  int result = lua_gettop(L);
  for (lua_Integer i = 1; i <= n; i++) {
    dn_lua_new_tensor_slot(L);
    lua_rawseti(L, result, i);
  }
  hook_handle *hd = push_handle(L);
  lua_hook *h = new_lua_hook(L, 2, true, "hook_aliases");
  dn_status st = dn_hook_aliases(outs, &hd->h, (int)n, ins, trampoline, h, queue_free);
  if (st) return refused(L, h, st);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, result, i);
    ((dn_ltensor *)lua_touserdata(L, -1))->t = outs[i - 1];
    lua_pop(L, 1);
  }
  dn_lua_flush_hooks(L);   /* nothing required grad: the hook is gone already */
  lua_pushvalue(L, result);
  lua_insert(L, -2);
  return 2;
}

/* --- handles ------------------------------------------------------------------------------- */

static hook_handle *check_handle(lua_State *L) { return luaL_checkudata(L, 1, DN_HOOK_HANDLE_MT); }

/* handle:remove(): the hook never runs again (a no-op the second time) */
static int h_remove(lua_State *L) {
  hook_handle *hd = check_handle(L);
  dn_hook_remove(hd->h);
  dn_lua_flush_hooks(L);
  return 0;
}

/* __close removes, as leaving PyTorch's `with handle:` does; __gc only lets go of the handle. */
static int h_close(lua_State *L) { return h_remove(L); }

static int h_gc(lua_State *L) {
  hook_handle *hd = check_handle(L);
  dn_hook_release(hd->h);
  hd->h = NULL;
  dn_lua_flush_hooks(L);
  return 0;
}

static const luaL_Reg handle_methods[] = {{"remove", h_remove}, {NULL, NULL}};
static const luaL_Reg handle_meta[] = {{"__gc", h_gc}, {"__close", h_close}, {NULL, NULL}};
static const luaL_Reg tensor_methods[] = {{"register_hook", m_register_hook}, {NULL, NULL}};
static const luaL_Reg functions[] = {{"hook_aliases", l_hook_aliases}, {NULL, NULL}};

void dn_lua_open_hook(lua_State *L) {
  luaL_newmetatable(L, DN_HOOK_HANDLE_MT);
  luaL_setfuncs(L, handle_meta, 0);
  luaL_newlib(L, handle_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_getmetatable(L, DN_TENSOR_MT);
  lua_getfield(L, -1, "__methods");
  luaL_setfuncs(L, tensor_methods, 0);
  lua_pop(L, 2);
  luaL_setfuncs(L, functions, 0);
}
