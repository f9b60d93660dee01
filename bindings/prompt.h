/*
** The interactive prompt of the dropnet command (bindings/prompt.c). Part of
** the command only: neither the runtime nor the Lua module dropnet/core.so
** includes it, so only the command links GNU readline.
*/
#ifndef DN_PROMPT_H
#define DN_PROMPT_H

#include <lua.h>

/* Runs the prompt on standard input until the end of input; `progname`
   prefixes error messages. Errors in statements are reported, not raised. */
void dn_prompt_run(lua_State *L, const char *progname);

/* The message handler of the command's protected calls (scripts and prompt
   statements): the error, or its __tostring, plus a traceback. */
int dn_prompt_msghandler(lua_State *L);

/* A sentence for --help: whether this build has line editing. */
const char *dn_prompt_features(void);

#endif
