-- luacheck (Debian's lua-check) over the Lua library, the scripts and the specs:
--   luacheck bindings/lua scripts tests/spec      (ctest runs it as lint/luacheck)
std = "lua54"
max_line_length = 120
files["tests/spec"] = {std = "+busted"}
-- `not (x >= 0)` is how the library rejects NaN along with the out-of-range values: keep it.
ignore = {"581"}
-- methods that do not use self (Module:extra_repr and the like) are methods all the same
self = false
