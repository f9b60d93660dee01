/*
** The dropnet command: a Lua 5.4 interpreter with dropnet built in.
**   dropnet [options] [script.lua [args...]]
** Like lua.c, script arguments go to the global `arg` (arg[0] is the script)
** and to the chunk's `...`; errors print a traceback and exit non-zero.
*/
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "dropnet/dropnet.h"
#include "prompt.h"

int luaopen_dropnet_core(lua_State *L);

typedef struct dn_embedded { const char *name, *chunkname, *source; size_t size; } dn_embedded;
extern const dn_embedded dn_embedded_lua[];

static const char *progname = "dropnet";

static void usage(FILE *f) {
  fprintf(f,
          "usage: %s [options] [script.lua [args...]]\n"
          "Runs a Lua 5.4 script with the dropnet library built in (require \"dropnet\").\n"
          "\n"
          "options:\n"
          "  -e CODE        run CODE (may be repeated; runs before the script)\n"
          "  -i             interactive prompt after the script (the prompt alone with no script)\n"
          "  -l MODULE      require MODULE into a global of that name before running\n"
          "  --threads N    use N threads for dropnet's loops and OpenBLAS\n"
          "  --seed N       seed dropnet's default generator with N\n"
          "  --no-flush-denormal\n"
          "                 compute with denormal floats instead of flushing them to zero\n"
          "  --no-sparse-matmul\n"
          "                 multiply every zero too (the same results, slower where most are zero)\n"
          "  --version      print the version and exit\n"
          "  --help         print this help and exit\n"
          "  -              read the script from standard input\n"
          "\n"
          "With no script and no -e, the prompt starts when standard input is a terminal.\n"
          "%s",
          progname, dn_prompt_features());
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, dn_prompt_msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

/* package.preload for dropnet.core and each embedded Lua library file. */
static int load_embedded(lua_State *L) {
  const dn_embedded *e = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbufferx(L, e->source, e->size, e->chunkname, "t") != LUA_OK) return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

static void preload_dropnet(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_dropnet_core);
  lua_setfield(L, -2, "dropnet.core");
  for (const dn_embedded *e = dn_embedded_lua; e->name; e++) {
    lua_pushlightuserdata(L, (void *)e);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, e->name);
  }
  lua_pop(L, 1);
}

/* Runs `dropnet.<fn>(value)` e.g. set_num_threads, manual_seed; value is
   an integer, or a boolean when is_bool. */
static int call_dropnet(lua_State *L, const char *fn, int is_bool, lua_Integer value) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "dropnet");
  int status = docall(L, 1, 1);
  if (status != LUA_OK) return report(L, status);
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  if (is_bool) lua_pushboolean(L, (int)value);
  else lua_pushinteger(L, value);
  return report(L, docall(L, 1, 0));
}

static int dostring(lua_State *L, const char *code, const char *name) {
  int status = luaL_loadbuffer(L, code, strlen(code), name);
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

/* Builds `arg` as lua.c does: script at 0, its args at 1.., options before at negatives. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int run_script(lua_State *L, char **argv, int argc, int script) {
  const char *fname = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = argc - script - 1;
    luaL_checkstack(L, n, "too many arguments to script");
    for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    status = docall(L, n, 0);
  }
  return report(L, status);
}

/* --- main ------------------------------------------------------------------------ */

static int parse_int(const char *s, lua_Integer *v) {
  char *end;
  long long x = strtoll(s, &end, 10);
  if (!*s || *end) return 0;
  *v = (lua_Integer)x;
  return 1;
}

typedef struct options {
  int interactive, script, threads_given, seed_given, no_flush_denormal, no_sparse_matmul;
  lua_Integer threads, seed;
} options;

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  options *o = lua_touserdata(L, 3);
  luaL_checkversion(L);
  luaL_openlibs(L);
  preload_dropnet(L);
  create_arg_table(L, argv, argc, o->script > 0 ? o->script : argc);
  if (o->threads_given && call_dropnet(L, "set_num_threads", 0, o->threads) != LUA_OK) return 0;
  if (o->seed_given && call_dropnet(L, "manual_seed", 0, o->seed) != LUA_OK) return 0;
  if (o->no_flush_denormal && call_dropnet(L, "set_flush_denormal", 1, 0) != LUA_OK) return 0;
  if (o->no_sparse_matmul && call_dropnet(L, "set_sparse_matmul", 1, 0) != LUA_OK) return 0;
  /* -e and -l in order */
  for (int i = 1; i < (o->script > 0 ? o->script : argc); i++) {
    if (strcmp(argv[i], "-e") == 0) {
      if (dostring(L, argv[++i], "=(command line)") != LUA_OK) return 0;
    } else if (strcmp(argv[i], "-l") == 0) {
      const char *mod = argv[++i];
      lua_getglobal(L, "require");
      lua_pushstring(L, mod);
      if (report(L, docall(L, 1, 1)) != LUA_OK) return 0;
      lua_setglobal(L, mod);
    } else if (strcmp(argv[i], "--threads") == 0 || strcmp(argv[i], "--seed") == 0) {
      i++;
    }
  }
  if (o->script > 0 && run_script(L, argv, argc, o->script) != LUA_OK) return 0;
  if (o->interactive) dn_prompt_run(L, progname);
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  options o = {0};
  int has_e = 0;
  if (argv[0] && argv[0][0]) progname = argv[0];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return EXIT_SUCCESS;
    } else if (strcmp(a, "--version") == 0 || strcmp(a, "-v") == 0) {
      printf("dropnet %s (%s)\n", DN_VERSION, LUA_RELEASE);
      return EXIT_SUCCESS;
    } else if (strcmp(a, "-i") == 0) {
      o.interactive = 1;
    } else if (strcmp(a, "--no-flush-denormal") == 0) {
      o.no_flush_denormal = 1;
    } else if (strcmp(a, "--no-sparse-matmul") == 0) {
      o.no_sparse_matmul = 1;
    } else if (strcmp(a, "-e") == 0 || strcmp(a, "-l") == 0 || strcmp(a, "--threads") == 0 ||
               strcmp(a, "--seed") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s: option '%s' needs an argument\n", progname, a);
        usage(stderr);
        return EXIT_FAILURE;
      }
      if (strcmp(a, "-e") == 0) has_e = 1;
      if (strcmp(a, "--threads") == 0) {
        if (!parse_int(argv[i + 1], &o.threads) || o.threads < 1) {
          fprintf(stderr, "%s: --threads needs a whole number >= 1 (got '%s')\n", progname, argv[i + 1]);
          return EXIT_FAILURE;
        }
        o.threads_given = 1;
      }
      if (strcmp(a, "--seed") == 0) {
        if (!parse_int(argv[i + 1], &o.seed) || o.seed < 0) {
          fprintf(stderr, "%s: --seed needs a whole number >= 0 (got '%s')\n", progname, argv[i + 1]);
          return EXIT_FAILURE;
        }
        o.seed_given = 1;
      }
      i++;
    } else if (strcmp(a, "--") == 0) {
      if (i + 1 < argc) o.script = i + 1;
      break;
    } else if (a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "%s: unknown option '%s'\n", progname, a);
      usage(stderr);
      return EXIT_FAILURE;
    } else {
      o.script = i;
      break;
    }
  }
  if (o.script == 0 && !has_e && !o.interactive) {
    if (isatty(0)) o.interactive = 1;
    else {
      /* like lua: with no script and input from a pipe, run standard input */
      static char dash[] = "-";
      char **nargv = malloc(sizeof(char *) * (size_t)(argc + 2));
      if (!nargv) return EXIT_FAILURE;
      for (int i = 0; i < argc; i++) nargv[i] = argv[i];
      nargv[argc] = dash;
      nargv[argc + 1] = NULL;
      argv = nargv;
      o.script = argc;
      argc++;
    }
  }
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "%s: cannot create Lua state: not enough memory\n", progname);
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  lua_pushlightuserdata(L, &o);
  int status = lua_pcall(L, 3, 1, 0);
  int ok = status == LUA_OK && lua_toboolean(L, -1);
  if (status != LUA_OK) report(L, status);
  lua_close(L);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
