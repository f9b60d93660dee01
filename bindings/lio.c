/*
** Files: IDX and CSV readers, safetensors save/load, atomic write_file.
** core.save(path, {name = tensor, ...}, {key = "value", ...}) writes the
** tensors in sorted name order (the same table always gives the same file);
** core.load(path) returns the tensors table and the metadata table.
*/
#include <stdlib.h>
#include <string.h>

#include "ldn.h"

/* Owns a dn_safetensors while its tensors move into Lua, so a Lua error midway frees the rest. */
#define SAFETENSORS_BOX_MT "dropnet.SafetensorsBox"

typedef struct safetensors_box {
  dn_safetensors *st;
} safetensors_box;

static int box_gc(lua_State *L) {
  safetensors_box *box = luaL_checkudata(L, 1, SAFETENSORS_BOX_MT);
  dn_safetensors_free(box->st);
  box->st = NULL;
  return 0;
}

/* A path argument: a string without embedded zeros (the C side would cut it). */
static const char *check_path(lua_State *L, int arg) {
  size_t length;
  const char *path = luaL_checklstring(L, arg, &length);
  if (strlen(path) != length) luaL_argerror(L, arg, "path contains a zero byte");
  return path;
}

/* core.idx_read(path) -> tensor (uint8, int32 or float32, shaped like the file) */
static int l_idx_read(lua_State *L) {
  const char *path = check_path(L, 1);
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_idx_read(&r->t, path));
  return 1;
}

/* core.idx_write(path, tensor): gzip when path ends in ".gz" */
static int l_idx_write(lua_State *L) {
  const char *path = check_path(L, 1);
  dn_tensor *t = dn_lua_check_tensor(L, 2);
  dn_lua_check_status(L, dn_idx_write(path, t));
  return 0;
}

/* core.csv_read(path [, {delimiter = ",", header = false}]) -> float32 [rows, cols] */
static int l_csv_read(lua_State *L) {
  const char *path = check_path(L, 1);
  char delimiter = ',';
  bool header = false;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "delimiter") != LUA_TNIL) {
      size_t length;
      const char *d = lua_tolstring(L, -1, &length);
      if (lua_type(L, -1) != LUA_TSTRING || length != 1)
        luaL_argerror(L, 2, "options.delimiter must be a one-character string");
      delimiter = d[0];
    }
    if (lua_getfield(L, 2, "header") != LUA_TNIL) {
      if (!lua_isboolean(L, -1)) luaL_argerror(L, 2, "options.header must be a boolean");
      header = lua_toboolean(L, -1);
    }
    lua_pop(L, 2);
  }
  dn_ltensor *r = dn_lua_new_tensor_slot(L);
  dn_lua_check_status(L, dn_csv_read(&r->t, path, delimiter, header));
  return 1;
}

/* dn.write_file(path, data): data (a string, any bytes) replaces path atomically, through
   the runtime's one atomic writer (temporary file, fsync, rename). Its messages start with
   "write_file: " and name the path; they are raised as "dn.write_file: ...", the name Lua
   code calls (plot.save and scripts/train.lua write through it). */
static int l_write_file(lua_State *L) {
  const char *path = check_path(L, 1);
  luaL_checktype(L, 2, LUA_TSTRING);
  size_t length;
  const char *data = lua_tolstring(L, 2, &length);
  if (dn_write_file(path, data, length) != DN_OK) return dn_lua_error(L, "dn.%s", dn_last_error());
  return 0;
}

/* dn.mkdir(path): the directory and its missing parents (mkdir -p), no shell involved */
static int l_mkdir(lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);   /* a number would name a directory by accident */
  const char *path = check_path(L, 1);
  if (dn_make_directory(path) != DN_OK)   /* the runtime's message, under the name Lua code calls */
    return dn_lua_error(L, "dn.mkdir: %s", dn_last_error() + strlen("make_directory: "));
  return 0;
}

static int compare_tensor_names(const void *a, const void *b) {
  return strcmp(((const dn_named_tensor *)a)->name, ((const dn_named_tensor *)b)->name);
}

static int compare_metadata_keys(const void *a, const void *b) {
  return strcmp(((const dn_metadata_entry *)a)->key, ((const dn_metadata_entry *)b)->key);
}

/* Entries of the table at arg (for sizing the arrays). */
static int count_entries(lua_State *L, int arg) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    lua_pop(L, 1);
    if (n == INT32_MAX) dn_lua_error(L, "save: too many entries");
    n++;
  }
  return n;
}

/* The string key at -2 during lua_next, checked (no conversion: that would break lua_next). */
static const char *check_key(lua_State *L, const char *what) {
  if (lua_type(L, -2) != LUA_TSTRING)
    dn_lua_error(L, "save: %s must be strings (got %s)", what, luaL_typename(L, -2));
  size_t length;
  const char *key = lua_tolstring(L, -2, &length);
  if (strlen(key) != length) dn_lua_error(L, "save: %s must not contain zero bytes", what);
  return key;
}

/* core.save(path, {name = tensor, ...} [, {key = value, ...}]): values are strings or numbers
   (numbers as tostring gives them). The strings stay alive in the argument tables (and in an
   anchor table for converted numbers) until the runtime has written the file. */
static int l_save(lua_State *L) {
  const char *path = check_path(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  /* dn.save(path, model) is torch.save's habit; a module's fields are its internals, so name the fix instead */
  if (lua_getmetatable(L, 2)) {
    bool is_module = lua_getfield(L, -1, "__is_module_class") == LUA_TBOOLEAN && lua_toboolean(L, -1);
    if (is_module) {
      lua_getfield(L, -2, "__name");
      const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "Module";
      return dn_lua_error(L, "save: got the module %s; pass model:state_dict() to save its tensors "
                        "(or dropnet.checkpoint.save for a whole training state)", name);
    }
    lua_pop(L, 2);
  }
  bool has_metadata = !lua_isnoneornil(L, 3);
  if (has_metadata) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);

  int count = count_entries(L, 2);
  dn_named_tensor *tensors = lua_newuserdatauv(L, (size_t)count * sizeof *tensors + 1, 0);   /* index 4 */
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    const char *name = check_key(L, "tensor names");
    dn_ltensor *u = luaL_testudata(L, -1, DN_TENSOR_MT);
    if (!u) dn_lua_error(L, "save: '%s' must be a tensor (got %s)", name, dn_lua_typename(L, -1));
    if (!u->t) dn_lua_error(L, "save: tensor '%s' has been closed", name);
    tensors[i].name = name;
    tensors[i].tensor = u->t;
    i++;
    lua_pop(L, 1);
  }
  qsort(tensors, (size_t)count, sizeof *tensors, compare_tensor_names);

  int metadata_count = has_metadata ? count_entries(L, 3) : 0;
  dn_metadata_entry *metadata = lua_newuserdatauv(L, (size_t)metadata_count * sizeof *metadata + 1, 0);   /* 5 */
  lua_createtable(L, metadata_count, 0);   /* 6: anchors the strings made from numbers */
  i = 0;
  if (has_metadata) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      const char *key = check_key(L, "metadata keys");
      int type = lua_type(L, -1);
      if (type != LUA_TSTRING && type != LUA_TNUMBER)
        dn_lua_error(L, "save: metadata '%s' must be a string or a number (got %s)", key, luaL_typename(L, -1));
      lua_pushvalue(L, -1);
      size_t length;
      const char *value = lua_tolstring(L, -1, &length);   /* converts the copy, not the table's value */
      if (strlen(value) != length) dn_lua_error(L, "save: metadata '%s' must not contain zero bytes", key);
      lua_rawseti(L, 6, i + 1);
      metadata[i].key = key;
      metadata[i].value = value;
      i++;
      lua_pop(L, 1);
    }
    qsort(metadata, (size_t)metadata_count, sizeof *metadata, compare_metadata_keys);
  }
  dn_lua_check_status(L, dn_safetensors_save(path, tensors, count, metadata, metadata_count));
  return 0;
}

/* core.load(path) -> {name = tensor, ...}, {key = "value", ...} */
static int l_load(lua_State *L) {
  const char *path = check_path(L, 1);
  safetensors_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->st = NULL;
  luaL_setmetatable(L, SAFETENSORS_BOX_MT);
  dn_lua_check_status(L, dn_safetensors_load(&box->st, path));
  dn_safetensors *st = box->st;
  lua_createtable(L, 0, st->count);
  for (int i = 0; i < st->count; i++) {
    dn_ltensor *slot = dn_lua_new_tensor_slot(L);
    slot->t = st->tensors[i].tensor;   /* ownership moves to Lua */
    st->tensors[i].tensor = NULL;
    lua_setfield(L, -2, st->tensors[i].name);
  }
  lua_createtable(L, 0, st->metadata_count);
  for (int i = 0; i < st->metadata_count; i++) {
    lua_pushstring(L, st->metadata[i].value);
    lua_setfield(L, -2, st->metadata[i].key);
  }
  dn_safetensors_free(st);
  box->st = NULL;
  return 2;
}

static const luaL_Reg functions[] = {
  {"idx_read", l_idx_read}, {"idx_write", l_idx_write}, {"csv_read", l_csv_read},
  {"save", l_save},         {"load", l_load},           {"write_file", l_write_file},
  {"mkdir", l_mkdir},       {NULL, NULL}};

void dn_lua_open_io(lua_State *L) {
  if (luaL_newmetatable(L, SAFETENSORS_BOX_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, functions, 0);
}
