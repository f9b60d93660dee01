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

/* A sentence for --help: whether this build has line editing. */
const char *dn_prompt_features(void);

#endif
