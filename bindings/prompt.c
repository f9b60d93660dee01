/*
** The interactive prompt of the dropnet command (`dropnet -i`), after lua.c
** 5.4: a line is first tried as `return <line>` so an expression prints its
** value; an incomplete statement continues on the next line under `>>`.
**
** With GNU readline (DN_HAVE_READLINE, found by CMake, linked into the command
** only) and a terminal on standard input and output: line editing, history
** kept in $HOME/.dropnet_history, and TAB completion of global names and of
** fields and methods after `.` and `:`. Otherwise lines are read plainly, so
** a script piped into `dropnet -i` runs as before.
**
** Ctrl-C while a statement runs: lua.c's technique. The SIGINT handler only
** sets a count hook; the hook raises "interrupted!" at the next Lua
** instruction, so a long C kernel finishes first. The handler resets itself
** (SA_RESETHAND): a second Ctrl-C ends the command as usual. Ctrl-C while a
** line is being typed drops the line and shows a fresh prompt.
*/
#define _POSIX_C_SOURCE 200809L
#include "prompt.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "dropnet/dropnet.h"

#ifdef DN_HAVE_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif

#define HISTORY_FILE ".dropnet_history"
#define HISTORY_MAX 1000   /* entries kept; the file is cut to its last 2 * HISTORY_MAX lines (a time stamp and a line each) */

enum { READ_OK, READ_END, READ_INTERRUPTED };

typedef struct prompt {
  lua_State *L;
  const char *progname;
  int editing;          /* readline on a terminal */
  char *history_path;   /* NULL: no history file ($HOME unset, or no readline) */
  int history_warned;   /* bits: 1 read, 2 write; each failure is reported once */
  int history_written;
} prompt;

/* --- signals ------------------------------------------------------------------ */

static lua_State *volatile running_L;     /* the state a SIGINT stops */
static volatile sig_atomic_t sigint_seen;   /* a SIGINT came while reading a line */
static struct sigaction sigint_before;     /* restored between statements */

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/* Lua allows lua_sethook in a signal handler: the hook runs at the next
   instruction, in the interpreter's own time. */
static void on_sigint_running(int sig) {
  (void)sig;
  lua_sethook(running_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

static void on_sigint_reading(int sig) {
  (void)sig;
  sigint_seen = 1;
}

static void set_sigint(void (*handler)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = flags;   /* no SA_RESTART: a read or select returns EINTR */
  sigaction(SIGINT, &sa, NULL);
}

static void restore_sigint(void) { sigaction(SIGINT, &sigint_before, NULL); }

/* --- running a statement -------------------------------------------------------- */

int dn_prompt_msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void report(prompt *p, int status) {
  if (status == LUA_OK) return;
  const char *msg = lua_tostring(p->L, -1);
  fflush(stdout);
  fprintf(stderr, "%s: %s\n", p->progname, msg ? msg : "(error object is not a string)");
  fflush(stderr);
  lua_pop(p->L, 1);
}

/* Calls the function on top with SIGINT stopping it; leaves its results. */
static int run_chunk(lua_State *L, int nargs) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, dn_prompt_msghandler);
  lua_insert(L, base);
  running_L = L;
  set_sigint(on_sigint_running, SA_RESETHAND);
  int status = lua_pcall(L, nargs, LUA_MULTRET, base);
  restore_sigint();
  lua_sethook(L, NULL, 0, 0);   /* a Ctrl-C that came after the last instruction */
  lua_remove(L, base);
  return status;
}

static void print_results(prompt *p) {
  lua_State *L = p->L;
  int n = lua_gettop(L);
  if (n == 0) return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  lua_getglobal(L, "print");
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK) {
    lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1));
    lua_remove(L, -2);
    report(p, LUA_ERRRUN);
  }
}

/* --- history ---------------------------------------------------------------------- */

#ifdef DN_HAVE_READLINE
static void history_warn(prompt *p, int bit, const char *what, int err) {
  if (p->history_warned & bit) return;
  p->history_warned |= bit;
  fprintf(stderr, "%s: warning: cannot %s the history file %s: %s (history is kept for this session only)\n",
          p->progname, what, p->history_path, strerror(err));
  fflush(stderr);
}

static void history_open(prompt *p) {
  const char *home = getenv("HOME");
  if (!home || !*home) return;
  size_t n = strlen(home) + sizeof "/" HISTORY_FILE;
  p->history_path = malloc(n);
  if (!p->history_path) return;
  snprintf(p->history_path, n, "%s/%s", home, HISTORY_FILE);
  /* timestamps mark where an entry starts, so a statement of several lines
     comes back as one entry */
  history_write_timestamps = 1;
  history_comment_char = '#';   /* timestamps are written as #<seconds> */
  history_multiline_entries = 1;   /* readline 8 also infers it from the timestamps */
  stifle_history(HISTORY_MAX);
  int err = read_history(p->history_path);
  if (err != 0 && err != ENOENT) history_warn(p, 1, "read", err);
}

/* Adds a statement to the history and to the file at once, so a session
   that ends by os.exit or a signal keeps it. */
static void history_add(prompt *p, const char *statement) {
  if (!p->editing || !*statement) return;
  HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last && strcmp(last->line, statement) == 0) return;
  add_history(statement);
  if (!p->history_path) return;
  int err = append_history(1, p->history_path);
  if (err == ENOENT) err = write_history(p->history_path);
  if (err != 0) history_warn(p, 2, "write", err);
  else p->history_written = 1;
}

static void history_close(prompt *p) {
  if (p->history_path && p->history_written) history_truncate_file(p->history_path, 2 * HISTORY_MAX);
  free(p->history_path);
  p->history_path = NULL;
}
#else
static void history_add(prompt *p, const char *statement) { (void)p, (void)statement; }
static void history_close(prompt *p) { (void)p; }
#endif

/* --- completion ------------------------------------------------------------------- */

#ifdef DN_HAVE_READLINE
static const char *const lua_keywords[] = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
  "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while", NULL};

static lua_State *completion_L;   /* readline's callbacks take no context */

typedef struct matches { char **items; size_t n, cap; } matches;
static matches found;   /* filled by complete(), handed out by next_match() */

static int is_keyword(const char *s) {
  for (const char *const *k = lua_keywords; *k; k++)
    if (strcmp(*k, s) == 0) return 1;
  return 0;
}

static int is_name(const char *s, size_t n) {
  if (n == 0 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return 0;
  for (size_t i = 1; i < n; i++)
    if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9')))
      return 0;
  return 1;
}

static void add_match(const char *head, size_t nhead, const char *name) {
  if (found.n == found.cap) {
    size_t cap = found.cap ? 2 * found.cap : 64;
    char **items = realloc(found.items, cap * sizeof *items);
    if (!items) return;
    found.items = items;
    found.cap = cap;
  }
  size_t nname = strlen(name);
  char *s = malloc(nhead + nname + 1);
  if (!s) return;
  memcpy(s, head, nhead);
  memcpy(s + nhead, name, nname + 1);
  found.items[found.n++] = s;
}

/* Replaces the metatable on top by the table to look in next: its __index
   when that is a table; else (an __index function, as dropnet's modules and
   tensors have) the metatable itself, where a class keeps its methods. */
static void next_table(lua_State *L) {
  lua_pushliteral(L, "__index");
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TTABLE) lua_remove(L, -2);
  else lua_pop(L, 1);
}

/* The field `key` of the value at `idx` without running code: a raw field of
   a table, else the metatable's __index when that is a table (followed a few
   levels). Pushes the value, or nil. */
static void peek_field(lua_State *L, int idx, const char *key) {
  idx = lua_absindex(L, idx);
  lua_pushvalue(L, idx);
  for (int depth = 0; depth < 16; depth++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushstring(L, key);
      lua_rawget(L, -2);
      if (!lua_isnil(L, -1)) {
        lua_remove(L, -2);
        return;
      }
      lua_pop(L, 1);
    }
    if (!lua_getmetatable(L, -1)) break;
    lua_remove(L, -2);   /* the value looked in */
    next_table(L);
  }
  lua_pop(L, 1);
  lua_pushnil(L);
}

/* Adds the string keys of the table on top that start with `part` (methods
   only when `methods_only`). */
static void add_keys(lua_State *L, const char *head, size_t nhead, const char *part, int methods_only) {
  size_t npart = strlen(part);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING && (!methods_only || lua_type(L, -1) == LUA_TFUNCTION)) {
      size_t n;
      const char *k = lua_tolstring(L, -2, &n);
      /* metamethods and class internals (__index, __name) only when asked for */
      int hidden = strncmp(k, "__", 2) == 0 && strncmp(part, "__", 2) != 0;
      if (!hidden && n >= npart && strncmp(k, part, npart) == 0 && is_name(k, n) && !is_keyword(k))
        add_match(head, nhead, k);
    }
    lua_pop(L, 1);
  }
}

/* The names one can write after the value at `idx`: its own keys when a table,
   then those of the tables next_table finds, and so on up (a class and its
   ancestors); for dropnet's tensors also the metatable's __methods (and with
   `.` its __properties) tables. */
static void add_fields(lua_State *L, int idx, const char *head, size_t nhead, const char *part, int methods_only) {
  lua_pushvalue(L, idx);
  for (int depth = 0; depth < 16; depth++) {
    if (lua_type(L, -1) == LUA_TTABLE) add_keys(L, head, nhead, part, methods_only);
    if (!lua_getmetatable(L, -1)) break;
    lua_remove(L, -2);
    static const char *const tables[] = {"__methods", "__properties"};
    for (int i = 0; i < (methods_only ? 1 : 2); i++) {
      lua_pushstring(L, tables[i]);
      lua_rawget(L, -2);
      if (lua_type(L, -1) == LUA_TTABLE) add_keys(L, head, nhead, part, methods_only);
      lua_pop(L, 1);
    }
    next_table(L);
  }
  lua_pop(L, 1);
}

/* Fills `found` with the completions of `text`, e.g. "dn.ze" or "t:nu":
   the path before the last `.` or `:` is looked up from the globals, the
   part after it is completed. */
static void complete(lua_State *L, const char *text) {
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 16)) return;
  const char *sep = NULL;
  for (const char *c = text; *c; c++)
    if (*c == '.' || *c == ':') sep = c;
  lua_pushglobaltable(L);
  if (!sep) {
    add_fields(L, -1, "", 0, text, 0);
    for (const char *const *k = lua_keywords; *k; k++)
      if (strncmp(*k, text, strlen(text)) == 0) add_match("", 0, *k);
    lua_settop(L, top);
    return;
  }
  /* walk the path: names separated by '.', a ':' only before the last part */
  const char *start = text;
  for (;;) {
    const char *end = start;
    while (*end && *end != '.' && *end != ':') end++;
    if (end > sep) break;
    if (!is_name(start, (size_t)(end - start)) || (*end == ':' && end != sep)) {
      lua_settop(L, top);
      return;
    }
    lua_pushlstring(L, start, (size_t)(end - start));
    const char *name = lua_tostring(L, -1);
    peek_field(L, -2, name);
    lua_remove(L, -2);   /* the name */
    lua_remove(L, -2);   /* the parent */
    if (lua_isnil(L, -1)) {
      lua_settop(L, top);
      return;
    }
    if (end == sep) break;
    start = end + 1;
  }
  add_fields(L, -1, text, (size_t)(sep - text) + 1, sep + 1, *sep == ':');
  lua_settop(L, top);
}

static char *next_match(const char *text, int state) {
  static size_t next;
  (void)text;
  if (state == 0) next = 0;
  if (next < found.n) {
    char *s = found.items[next];
    found.items[next++] = NULL;   /* readline frees what it is given */
    return s;
  }
  return NULL;
}

static char **attempt_completion(const char *text, int start, int end) {
  (void)start, (void)end;
  rl_attempted_completion_over = 1;   /* never file names */
  rl_completion_append_character = '\0';
  for (size_t i = 0; i < found.n; i++) free(found.items[i]);
  found.n = 0;
  complete(completion_L, text);
  return rl_completion_matches(text, next_match);
}
#endif

/* --- reading a line ---------------------------------------------------------------- */

static int read_plain(const char *prompt_text, char **line) {
  static char *buf;
  static size_t cap;
  fputs(prompt_text, stdout);
  fflush(stdout);
  sigint_seen = 0;
  set_sigint(on_sigint_reading, 0);
  ssize_t n = getline(&buf, &cap, stdin);
  restore_sigint();
  if (n < 0) {
    if (sigint_seen && ferror(stdin)) {
      clearerr(stdin);
      fputs("\n", stdout);
      return READ_INTERRUPTED;
    }
    return READ_END;
  }
  if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
  *line = strdup(buf);
  return *line ? READ_OK : READ_END;
}

#ifdef DN_HAVE_READLINE
static char *line_read;
static int line_done;
static sigset_t reading_unblocked;   /* read_edited's signal mask with SIGINT let through */

/* Waits until fd has input or a signal came (-1, EINTR), SIGINT let through only while waiting. */
static int wait_readable(int fd) {
  fd_set fds;
  FD_ZERO(&fds);
  FD_SET(fd, &fds);
  return pselect(fd + 1, &fds, NULL, NULL, NULL, &reading_unblocked);
}

/*
** readline's read of a key (rl_getc_function). Readline reads a key and,
** when none is there, waits for one itself, with the signal mask it found
** (SIGINT blocked): when a Ctrl-C came just after read_edited saw the typed
** keys arrive, the terminal had already thrown them away with the Ctrl-C,
** and readline waited for a key with the SIGINT pending and blocked: the
** prompt hung (CI, twice; 7 of 100 tries of typing then Ctrl-C at once).
** Here the wait lets SIGINT through, the read does not block (the keys can
** vanish between the wait and the read), and once a SIGINT came readline
** gets a NUL (set-mark: harmless, the line is dropped next).
*/
static int read_key(FILE *in) {
  int fd = fileno(in);
  for (;;) {
    if (sigint_seen) return 0;
    if (wait_readable(fd) < 0) {
      if (errno == EINTR) continue;
      return EOF;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return EOF;
    unsigned char c;
    ssize_t n = read(fd, &c, 1);
    int saved = errno;
    fcntl(fd, F_SETFL, flags);
    if (n == 1) return c;
    if (n == 0 || (saved != EAGAIN && saved != EWOULDBLOCK && saved != EINTR)) return EOF;
  }
}

static void on_line(char *line) {
  line_read = line;
  line_done = 1;
  rl_callback_handler_remove();
}

/* readline's callback interface: the wait for input wakes up on SIGINT, so
   Ctrl-C can drop the line without readline's own handlers (which would
   re-raise the signal and end the command). SIGINT stays blocked except
   inside pselect, which unblocks it atomically: with select, a Ctrl-C that
   landed between the check of sigint_seen and the wait (a busy machine, the
   typed keys still being handled) was noticed only at the next key, and the
   prompt sat there. */
static int read_edited(const char *prompt_text, char **line) {
  line_read = NULL;
  line_done = 0;
  sigint_seen = 0;
  sigset_t block, before;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &before);
  reading_unblocked = before;
  sigdelset(&reading_unblocked, SIGINT);
  set_sigint(on_sigint_reading, 0);
  rl_callback_handler_install(prompt_text, on_line);
  int fd = fileno(rl_instream), status = READ_OK;
  while (!line_done) {
    /* (SIGINT is blocked here: one that comes after this check waits for pselect, which returns) */
    int r = sigint_seen ? 0 : wait_readable(fd);
    if (sigint_seen) {
      rl_free_line_state();
      rl_callback_sigcleanup();
      rl_echo_signal_char(SIGINT);
      rl_replace_line("", 0);
      rl_callback_handler_remove();
      using_history();
      fputs("\n", stdout);
      fflush(stdout);
      status = READ_INTERRUPTED;
      break;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      rl_callback_handler_remove();
      break;
    }
    rl_callback_read_char();
  }
  /* a SIGINT still pending meets on_sigint_reading (ignored, as it always was), then the old handler is back */
  sigprocmask(SIG_SETMASK, &before, NULL);
  restore_sigint();
  if (status == READ_INTERRUPTED) return status;
  if (!line_read) return READ_END;
  *line = line_read;
  return READ_OK;
}
#endif

static int read_line(prompt *p, const char *prompt_text, char **line) {
#ifdef DN_HAVE_READLINE
  if (p->editing) return read_edited(prompt_text, line);
#endif
  return read_plain(prompt_text, line);
}

/* --- the loop ------------------------------------------------------------------------- */

/* A syntax error ending at <eof> means the statement goes on. Pops the message then. */
static int incomplete(lua_State *L, int status) {
  if (status != LUA_ERRSYNTAX) return 0;
  size_t lmsg;
  const char *msg = lua_tolstring(L, -1, &lmsg);
  static const char eof[] = "<eof>";
  if (lmsg >= sizeof eof - 1 && strcmp(msg + lmsg - (sizeof eof - 1), eof) == 0) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

/* Reads a statement and pushes its compiled chunk (or the error message);
   returns READ_END or READ_INTERRUPTED with nothing pushed. Text mode only: a
   stray escape byte is a syntax error, not a "binary chunk". */
static int read_statement(prompt *p, int *status) {
  lua_State *L = p->L;
  char *line;
  int r = read_line(p, "> ", &line);
  if (r != READ_OK) return r;
  if (!p->editing && strchr(line, '\033')) {
    /* an arrow key typed where lines are read plainly */
    free(line);
#ifdef DN_HAVE_READLINE
    static const char why[] = "line editing needs a terminal on standard input and output";
#else
    static const char why[] = "line editing needs a dropnet built with GNU readline";
#endif
    lua_pushfstring(L, "stdin: the line holds a terminal escape sequence (an arrow key?): %s", why);
    *status = LUA_ERRSYNTAX;
    return READ_OK;
  }
  lua_pushstring(L, line);
  free(line);
  /* first as an expression, so `1 + 1` prints 2 */
  const char *retline = lua_pushfstring(L, "return %s;", lua_tostring(L, 1));
  *status = luaL_loadbufferx(L, retline, strlen(retline), "=stdin", "t");
  lua_remove(L, -2);
  if (*status != LUA_OK) {
    lua_pop(L, 1);
    for (;;) {
      size_t len;
      const char *src = lua_tolstring(L, 1, &len);
      *status = luaL_loadbufferx(L, src, len, "=stdin", "t");
      if (!incomplete(L, *status)) break;
      r = read_line(p, ">> ", &line);
      if (r != READ_OK) {
        lua_settop(L, 0);
        return r;
      }
      lua_pushliteral(L, "\n");
      lua_pushstring(L, line);
      free(line);
      lua_concat(L, 3);
    }
  }
  history_add(p, lua_tostring(L, 1));
  lua_remove(L, 1);
  return READ_OK;
}

static void load_dropnet(prompt *p) {
  lua_State *L = p->L;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "dropnet");
  int status = run_chunk(L, 1);
  if (status != LUA_OK) {
    report(p, status);
    return;
  }
  lua_settop(L, 1);
  lua_setglobal(L, "dn");
  /* dn's submodules (dn.nn, dn.optim, ...) load on first use; load the
     built-in ones now so completion, which never runs code, sees them. */
  static const char load_submodules[] =
    "for name in pairs(package.preload) do\n"
    "  local k = name:match('^dropnet%.([%w_]+)$')\n"
    "  if k then pcall(function() return dn[k] end) end\n"
    "end";
  status = luaL_loadbufferx(L, load_submodules, sizeof load_submodules - 1, "=prompt", "t");
  if (status == LUA_OK) status = run_chunk(L, 0);
  report(p, status);
  lua_settop(L, 0);
}

const char *dn_prompt_features(void) {
#ifdef DN_HAVE_READLINE
  return "At a terminal the prompt edits lines with GNU readline: history in ~/.dropnet_history,\n"
         "TAB completes names, fields and methods; Ctrl-C stops the running statement.\n";
#else
  return "This dropnet is built without readline: the prompt reads plain lines, with no line\n"
         "editing, history or completion; Ctrl-C stops the running statement.\n";
#endif
}

/* The loop, in a Lua call of its own so the stack starts empty (the caller
   may have values on its stack). */
static int prompt_loop(lua_State *L) {
  prompt *pp = lua_touserdata(L, 1);
  prompt p = *pp;
  lua_settop(L, 0);
  sigaction(SIGINT, NULL, &sigint_before);
  int tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
#ifdef DN_HAVE_READLINE
  p.editing = tty;
  if (p.editing) {
    rl_readline_name = "dropnet";      /* for $if dropnet in ~/.inputrc */
    rl_catch_signals = 0;              /* read_edited handles SIGINT */
    rl_getc_function = read_key;       /* and read_key, while readline reads */
    rl_change_environment = 0;         /* leave LINES and COLUMNS unset for scripts */
    rl_completer_word_break_characters = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#";
    rl_attempted_completion_function = attempt_completion;
    completion_L = L;
    history_open(&p);
  }
#endif
  printf("dropnet %s (%s) -- dn = require \"dropnet\"; Ctrl-D to quit\n", DN_VERSION, LUA_RELEASE);
  if (tty && !p.editing) printf("(built without readline: no line editing, history or completion)\n");
  fflush(stdout);
  load_dropnet(&p);
  for (;;) {
    lua_settop(L, 0);
    int status = LUA_OK;
    int r = read_statement(&p, &status);
    if (r == READ_END) break;
    if (r == READ_INTERRUPTED) continue;
    if (status == LUA_OK) status = run_chunk(L, 0);
    if (status == LUA_OK) print_results(&p);
    else report(&p, status);
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  history_close(&p);
  return 0;
}

void dn_prompt_run(lua_State *L, const char *progname) {
  prompt p = {.L = L, .progname = progname};
  lua_pushcfunction(L, prompt_loop);
  lua_pushlightuserdata(L, &p);
  lua_call(L, 1, 0);
}
