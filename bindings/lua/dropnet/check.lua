--- dropnet.check: the argument and option checks shared by the Lua library
-- (dropnet.nn, dropnet.data, dropnet.optim, dropnet.plot), so that every
-- module words its errors the same way. Internal: not part of the public API.
--
-- Every check takes (where, what, value, ...): `where` names the function
-- ("Linear", "DataLoader"), `what` the argument ("in_features"). A check
-- returns the value (converted where it says so) or raises
-- "<where>: <what> must be ... (got <value>)" at the user's line (check.where):
-- the message is about the caller's argument, not about a line of the library.
local check = {}

-- The C module's tensor and generator metatables, found on first need.
-- Tensors and generators exist only once dropnet.core is loaded, so it is
-- looked up in package.loaded, not required: dropnet.plot stays pure Lua
-- (loading it loads no C module), and no require cycle with dropnet can form.
local tensor_mt, generator_mt
local function core_metatables()
  if tensor_mt == nil then
    local core = package.loaded["dropnet.core"]
    if type(core) == "table" then tensor_mt, generator_mt = core.Tensor, getmetatable(core.default_generator()) end
  end
  return tensor_mt, generator_mt
end

-- The chunkname prefix of the library's files: "@dropnet/" under the dropnet
-- command (embedded files), "@/…/lua/dropnet/" under plain lua5.4. Every file of
-- the library is found through the same path entry as this one.
local LIBRARY_SOURCE = debug.getinfo(1, "S").source:match("^(@.*)check%.lua$")
-- The C module reads it from the registry, so its errors skip the library's
-- frames too (bindings/laux.c, dn_lua_where).
if LIBRARY_SOURCE then debug.getregistry()["dropnet.library_source"] = LIBRARY_SOURCE end

local function in_library(source)
  return LIBRARY_SOURCE ~= nil and source:sub(1, #LIBRARY_SOURCE) == LIBRARY_SOURCE
end

--- "file:line: " of the line an error should name: the innermost frame
-- outside the library (and outside C functions it went through, such as
-- pcall), which is the user's line that called into dropnet; "" when there is
-- none (a library call made from C). A position inside dropnet/nn/*.lua says
-- nothing to the user about which of their lines is wrong.
function check.where()
  local level = 2   -- the caller of where
  while true do
    local info = debug.getinfo(level, "Sl")
    if info == nil then return "" end
    if info.what ~= "C" and not in_library(info.source) then
      return info.currentline > 0 and string.format("%s:%d: ", info.short_src, info.currentline) or ""
    end
    level = level + 1
  end
end

--- Raises string.format(fmt, ...) at the user's line (check.where).
function check.fail(fmt, ...) error(check.where() .. string.format(fmt, ...), 0) end

--- Raises msg (a string) at the user's line, as check.fail does.
function check.error(msg) error(check.where() .. msg, 0) end

--- The edit distance (insertions, deletions, substitutions, swaps of
-- neighbours) between a and b, or limit + 1 as soon as it exceeds limit.
local function distance(a, b, limit)
  local la, lb = #a, #b
  if math.abs(la - lb) > limit then return limit + 1 end
  local before, prev = {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local row = {[0] = i}
    local best = i
    local ca = a:byte(i)
    for j = 1, lb do
      local cb = b:byte(j)
      local d = math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca == cb and 0 or 1))
      if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == cb then d = math.min(d, before[j - 2] + 1) end
      row[j] = d
      if d < best then best = d end
    end
    if best > limit then return limit + 1 end
    before, prev = prev, row
  end
  return prev[lb]
end

--- The name among the keys of the tables in `lists` (string keys only)
-- closest to key, when it is a likely misspelling: at most 1 edit away for
-- names of up to 4 characters, 2 beyond. nil when none is that close.
function check.suggest(key, lists)
  if type(key) ~= "string" then return nil end
  local limit = #key <= 4 and 1 or 2
  local best, best_d
  for _, list in ipairs(lists) do
    for name in pairs(list) do
      if type(name) == "string" and name ~= key then
        local d = distance(key, name, limit)
        if d <= limit and (best_d == nil or d < best_d or (d == best_d and name < best)) then
          best, best_d = name, d
        end
      end
    end
  end
  return best
end

--- v for a message: numbers and strings show their value, tensors are "a
-- tensor", nn classes "class <name>", other values their metatable's
-- __name, else their type.
function check.describe(v)
  if type(v) == "number" then return tostring(v) end
  if type(v) == "string" then return string.format("%q", v) end
  local mt = getmetatable(v)
  if mt ~= nil and mt == core_metatables() then return "a tensor" end
  if type(v) == "table" and (rawget(v, "__is_module_class") or rawget(v, "super")) then
    return "class " .. tostring(v.__name)
  end
  if type(mt) == "table" and type(rawget(mt, "__name")) == "string" then return mt.__name end
  return type(v)
end

--- True for an nn module instance (not a class): its class chain marks
-- itself with __is_module_class. Found without requiring dropnet.nn, which
-- requires this file.
function check.is_module(v)
  if type(v) ~= "table" or rawget(v, "_modules") == nil then return false end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__is_module_class == true
end

--- True for a number that is neither NaN nor infinite.
function check.is_finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

--- Catches misspelled options: raises "<where>: unknown <noun> 'key'
-- (known: a, b)" (names sorted; noun defaults to "option") for a key of t
-- not in `known`, a list or a set of names. Returns t, or {} for nil;
-- anything else raises "<where>: <what> must be a table" (what defaults to
-- "options").
function check.options(where, what, t, known, noun)
  if t == nil then return {} end
  if type(t) ~= "table" then
    check.fail("%s: %s must be a table (got %s)", where, what or "options", check.describe(t))
  end
  local is_list = known[1] ~= nil
  for key in pairs(t) do
    local found = not is_list and known[key]
    if is_list then   -- a short list: a scan allocates nothing (options are checked on hot paths)
      for _, k in ipairs(known) do
        if k == key then found = true break end
      end
    end
    if not found then
      local names = {}
      if is_list then
        for i, k in ipairs(known) do names[i] = k end
      else
        for k in pairs(known) do names[#names + 1] = k end
      end
      table.sort(names)
      check.fail("%s: unknown %s '%s' (known: %s)", where, noun or "option", tostring(key), table.concat(names, ", "))
    end
  end
  return t
end

--- v as an integer >= min (any integer when min is nil). Integer-valued
-- floats (2.0) are accepted and returned as integers.
function check.int(where, what, v, min)
  local i = math.type(v) == "float" and math.tointeger(v) or v
  if math.type(i) ~= "integer" or (min and i < min) then
    local req = min and string.format("an integer >= %d", min) or "an integer"
    check.fail("%s: %s must be %s (got %s)", where, what, req, check.describe(v))
  end
  return i
end

--- v as a finite number.
function check.number(where, what, v)
  if not check.is_finite(v) then
    check.fail("%s: %s must be a finite number (got %s)", where, what, check.describe(v))
  end
  return v
end

--- v as a finite number >= 0 (rates, decays, epsilons).
function check.nonneg(where, what, v)
  if not check.is_finite(v) or v < 0 then
    check.fail("%s: %s must be a finite number >= 0 (got %s)", where, what, check.describe(v))
  end
  return v
end

--- v as a boolean (nil is not accepted: callers apply their defaults first).
function check.bool(where, what, v)
  if type(v) ~= "boolean" then check.fail("%s: %s must be true or false (got %s)", where, what, check.describe(v)) end
  return v
end

--- v as one of the strings in the list `choices`.
function check.choice(where, what, v, choices)
  -- ipairs, not #: a table whose __len lies cannot make this loop run on (a hostile-walk finding)
  local names = {}
  for i, c in ipairs(choices) do
    if v == c then return v end
    names[i] = tostring(c)
  end
  check.fail("%s: %s must be one of \"%s\" (got %s)", where, what, table.concat(names, "\", \""), check.describe(v))
end

--- v as a dropnet.Generator, or nil (nil: the default generator, which the
-- caller looks up when it draws, not now).
function check.generator(where, v)
  if v == nil then return nil end
  local _, mt = core_metatables()
  if mt == nil or getmetatable(v) ~= mt then
    check.fail("%s: generator must be a dropnet.Generator (got %s)", where, check.describe(v))
  end
  return v
end

--- v as a tensor.
function check.tensor(where, v)
  local tensor = core_metatables()
  if tensor == nil or getmetatable(v) ~= tensor then
    check.fail("%s: a tensor expected (got %s)", where, check.describe(v))
  end
  return v
end

--- x as a tensor of ndim dims; layout ("[N, C, L]") names them in the
-- message "<where>: input must be 3-D [N, C, L] (got shape [2,3])".
function check.input(where, x, ndim, layout)
  check.tensor(where, x)
  if x:dim() ~= ndim then
    check.fail("%s: input must be %d-D %s (got shape [%s])", where, ndim, layout, table.concat(x:shape(), ","))
  end
  return x
end

--- p as a dropout probability: a number in [0, 1], or in [0, 1) when
-- below_one. `what` is "p" or a field such as "dropconnect".
function check.probability(where, what, p, below_one)
  if type(p) ~= "number" or p ~= p or p < 0 or p > 1 or (below_one and p == 1) then
    check.fail("%s: %s must be a number in [0, 1%s (got %s)", where, what, below_one and ")" or "]", check.describe(p))
  end
  return p
end

--- v as a pair of integers >= min: an integer n is {n, n}, a table {h, w}
-- its two entries (kernel sizes, strides, paddings). Returns h, w.
function check.pair(where, what, v, min)
  if type(v) == "table" and getmetatable(v) == nil then
    local count = 0
    for _ in pairs(v) do count = count + 1 end
    if count ~= 2 or v[1] == nil or v[2] == nil then
      check.fail("%s: %s must be an integer or a pair {h, w} (got a table of %d entries)", where, what, count)
    end
    return check.int(where, what .. "[1]", v[1], min), check.int(where, what .. "[2]", v[2], min)
  end
  if math.type(v) == nil then
    check.fail("%s: %s must be an integer or a pair {h, w} (got %s)", where, what, check.describe(v))
  end
  local n = check.int(where, what, v, min)
  return n, n
end

return check
