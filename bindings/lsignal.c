/*
** Ctrl-C as a request, for scripts that want to stop cleanly: after
** dn.catch_interrupt() a SIGINT only sets a flag, which the script polls
** between steps (dn.interrupted()) to finish the step, save and exit. A
** second SIGINT while the first is pending restores the default action and
** raises the signal again, so the process dies at once as if nothing had been
** caught: a user who presses Ctrl-C twice is never held up by the save (an
** atomic writer leaves the previous file intact). dn.release_interrupt() puts
** back whatever handled SIGINT before (the default action, or lua.c's
** "interrupted!" hook under plain lua5.4).
**
** Process-wide state: a signal disposition belongs to the process, not to a
** Lua state. The pool's workers block SIGINT (pool.c); a thread that does not
** (OpenBLAS's) may run the handler, which only touches a sig_atomic_t.
** Lives in the module, not the runtime: catching signals is the
** application's business, and the runtime is a library.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "ldn.h"

static volatile sig_atomic_t interrupt_pending;
static struct sigaction previous;   /* what handled SIGINT before catch_interrupt */
static bool catching;

static void on_interrupt(int sig) {
  if (interrupt_pending) {
    /* the second Ctrl-C: the default action, delivered when this handler returns */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  interrupt_pending = 1;
}

/* dn.catch_interrupt(): from now on a SIGINT sets a flag (dn.interrupted()). */
static int l_catch_interrupt(lua_State *L) {
  interrupt_pending = 0;
  if (catching) return 0;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  /* a read or write in progress goes on rather than failing with EINTR */
  action.sa_flags = SA_RESTART;
  if (sigaction(SIGINT, &action, &previous) != 0)
    return luaL_error(L, "catch_interrupt: cannot set a SIGINT handler (%s)", strerror(errno));
  catching = true;
  return 0;
}

/* dn.release_interrupt(): SIGINT is handled as before catch_interrupt. */
static int l_release_interrupt(lua_State *L) {
  if (!catching) return 0;
  if (sigaction(SIGINT, &previous, NULL) != 0)
    return luaL_error(L, "release_interrupt: cannot restore the SIGINT handler (%s)", strerror(errno));
  catching = false;
  interrupt_pending = 0;
  return 0;
}

/* dn.interrupted([wait]): whether a SIGINT arrived since catch_interrupt; with
   `wait` seconds, sleeps until one arrives or the time is up (a signal ends the
   sleep early: nanosleep returns EINTR). */
static int l_interrupted(lua_State *L) {
  lua_Number wait = 0;
  if (!lua_isnoneornil(L, 1)) {
    if (lua_type(L, 1) != LUA_TNUMBER) {
      const char *msg = lua_pushfstring(L, "wait must be a number of seconds (got %s)", dn_lua_typename(L, 1));
      return luaL_argerror(L, 1, msg);
    }
    wait = lua_tonumber(L, 1);
    if (!(wait >= 0) || !isfinite(wait))
      return luaL_argerror(L, 1, lua_pushfstring(L, "wait must be a finite number >= 0 (got %f)", wait));
  }
  /* a century is forever here, and keeps the end time within time_t (math.maxinteger seconds does not) */
  if (wait > 3.2e9) wait = 3.2e9;
  struct timespec now, end;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double end_s = (double)now.tv_sec + (double)now.tv_nsec * 1e-9 + (double)wait;
  end.tv_sec = (time_t)end_s;
  end.tv_nsec = (long)((end_s - (double)end.tv_sec) * 1e9);
  while (catching && !interrupt_pending && wait > 0) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec)) break;
    /* short slices: a signal that lands between the test and the sleep costs at most one */
    struct timespec slice = {0, 10 * 1000 * 1000};
    nanosleep(&slice, NULL);
  }
  lua_pushboolean(L, catching && interrupt_pending);
  return 1;
}

static const luaL_Reg functions[] = {
  {"catch_interrupt", l_catch_interrupt}, {"release_interrupt", l_release_interrupt},
  {"interrupted", l_interrupted}, {NULL, NULL}};

void dn_lua_open_signal(lua_State *L) {
  luaL_setfuncs(L, functions, 0);
}
