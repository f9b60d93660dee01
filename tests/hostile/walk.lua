--[[
The API walk: every public callable of `require "dropnet"`, found from the
library itself so that a new function, method, class or option is covered
without editing this file.

1. Static walk. From the module table, breadth first with sorted keys: every
   function (the first path that reaches it names it), every table
   (submodules, classes, the Tensor metatable and its __methods /
   __properties / __setters) and the metatable of every table. The lazy
   submodules (dn.nn, dn.optim, ...) are loaded first through dn's own
   __index; modules no table reaches (dropnet.checkpoint) are found among
   the files of the dropnet directory (or package.preload in the dropnet
   command) and walked from `require("name")`.
2. Objects. Every function and class is called with plausible argument
   lists (pool.lua's `benign`, then with each object found so far); any
   result with a metatable is an object kind (Tensor, Generator, each nn
   class, optimizers, schedules, datasets, loaders, state dicts, ...),
   remembered with the code that made it. Three rounds, so that objects made
   from objects (a schedule needs an optimizer) are found too.
3. Members of each kind, from its metatable: methods (the __index chain,
   and a __methods table), metamethods (every __ function in the
   metatable), properties and setters (__properties, __setters), and the
   fields of a table object (module parameters, p, training, ...).
4. One valid call of every function and method, when a plausible argument
   list gives one, and the option names each accepts: a probe table
   {hostile_probe = 1} at each position makes the library's option check
   list the known keys ("unknown option 'hostile_probe' (known: a, b)"); a
   "<key> is required" error adds the key and tries again.

The result is a plain table (the catalog) that the driver turns into calls;
it holds code strings only, so it can be cached in a file and printed.
--]]
local P = require "pool"

local W = {}

-- Never called: none so far. A name here must be a function that
-- legitimately ends the process, kills, or never returns whatever its
-- arguments (an os.exit-like call); say why next to it.
W.deny = {}

-- Arguments that are loop counts the caller chose: a call whose argument at
-- that position is a number above 2^16 is not run (it would be a long loop
-- by request, not a hang). Other values (0, -1, NaN, 0.5, a string, ...)
-- still are.
W.loop_counts = {
  ["dn.nn.mc_predict"] = 3,   -- mc_predict(model, x, T): T forward passes of the model
  ["dn.interrupted"] = 1,     -- interrupted(wait): waits that many seconds for a Ctrl-C, by design
}

local KEYWORDS = {}
for k in ([[and break do else elseif end false for function goto if in local nil not or repeat return then
  true until while]]):gmatch("%a+") do KEYWORDS[k] = true end

local function is_ident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil and not KEYWORDS[k]
end
W.is_ident = is_ident

--- base.k, base["k"] or base[1]
function W.index_code(base, k)
  if is_ident(k) then return base .. "." .. k end
  if type(k) == "string" then return base .. "[" .. string.format("%q", k) .. "]" end
  return base .. "[" .. tostring(k) .. "]"
end

local function sorted_keys(t)
  local keys = {}
  for k in next, t do
    if type(k) == "string" or math.type(k) == "integer" then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    if type(a) ~= type(b) then return type(a) == "number" end
    return a < b
  end)
  return keys
end
W.sorted_keys = sorted_keys

-- Tables of the standard library are not the API under test.
local function std_tables()
  local s = {[_G] = true, [package.loaded] = true, [package.preload] = true, [package] = true}
  for _, name in ipairs {"string", "table", "math", "io", "os", "coroutine", "debug", "utf8"} do
    if _G[name] then s[_G[name]] = true end
  end
  return s
end

-- Names of the dropnet modules a user can require: files of the dropnet
-- directory (plain lua5.4) or package.preload entries (the dropnet command).
local function module_names()
  local names, seen = {}, {}
  local function add(n)
    if not seen[n] and n ~= "dropnet.core" then seen[n] = true names[#names + 1] = n end
  end
  for name in pairs(package.preload) do
    if type(name) == "string" and name:match("^dropnet%.") then add(name) end
  end
  local init = package.searchpath("dropnet", package.path)
  if init then
    local dir = init:match("^(.*)/init%.lua$")
    local p = dir and io.popen("find '" .. dir .. "' -name '*.lua' 2>/dev/null")
    if p then
      for file in p:lines() do
        local rel = file:sub(#dir + 2):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
        if rel ~= "init" then add("dropnet." .. rel) end   -- init.lua is dropnet itself
      end
      p:close()
    end
  end
  table.sort(names)
  return names
end

-- Loads the lazy submodules of a module table: the upvalue tables of its
-- metatable's __index that map names to strings (dn's lazy_modules).
local function load_lazy(t)
  local mt = getmetatable(t)
  local idx = type(mt) == "table" and rawget(mt, "__index")
  if type(idx) ~= "function" then return end
  for i = 1, 255 do
    local name, v = debug.getupvalue(idx, i)
    if not name then break end
    if type(v) == "table" then
      for _, k in ipairs(sorted_keys(v)) do
        if type(v[k]) == "string" and rawget(t, k) == nil then
          local _ = t[k]   -- the __index loads and stores it
        end
      end
    end
  end
end

--- The static walk. Returns {functions = {{name, code, parent, fn}}, tables = {[t] = code},
--- classes = {{name, code, t}}, roots = {...}}.
function W.static(dn)
  local std = std_tables()
  local tables, fn_seen = {}, {}
  local functions, classes = {}, {}
  local queue = {}
  local function push(code, t)
    if tables[t] or std[t] then return end
    tables[t] = code
    queue[#queue + 1] = {code, t}
  end
  load_lazy(dn)
  push("dn", dn)
  local modules = module_names()
  local head = 1
  local function drain()
    while head <= #queue do
      local code, t = queue[head][1], queue[head][2]
      head = head + 1
      if type(t) == "table" then
        for _, k in ipairs(sorted_keys(t)) do
          local v = rawget(t, k)
          local vcode = W.index_code(code, k)
          if type(v) == "function" then
            if not fn_seen[v] then
              fn_seen[v] = true
              functions[#functions + 1] = {name = vcode, code = vcode, parent = code, key = k, fn = v}
            end
          elseif type(v) == "table" then
            local vmt = getmetatable(v)
            if type(vmt) == "table" and rawget(vmt, "__call") and not tables[v] then
              classes[#classes + 1] = {name = vcode, code = vcode, t = v}
            end
            push(vcode, v)
          end
        end
      end
      local mt = getmetatable(t)
      if type(mt) == "table" then push("getmetatable(" .. code .. ")", mt) end
    end
  end
  drain()
  -- modules no table reaches
  for _, name in ipairs(modules) do
    local ok, m = pcall(require, name)
    if ok and type(m) == "table" and not tables[m] then
      push("require(" .. string.format("%q", name) .. ")", m)
      drain()
    end
  end
  return {functions = functions, classes = classes, tables = tables, modules = modules}
end

-- --- running code ---------------------------------------------------------------

--- Compiles code (a chunk) in env; raises on a syntax error (a harness bug).
function W.compile(code, env)
  local f, err = load(code, "=hostile", "t", env)
  if not f then error("hostile: cannot compile generated code: " .. err .. "\n" .. code, 0) end
  return f
end

--- Runs code in env after reset(); returns ok, {results...} or ok=false, message.
function W.run(code, env, reset)
  reset()
  local f = W.compile(code, env)
  local res = table.pack(pcall(f))
  if not res[1] then
    local ok, msg = pcall(tostring, res[2])
    return false, ok and msg or "(error object)"
  end
  return true, table.move(res, 2, res.n, 1, {n = res.n - 1})
end

-- --- members of an object kind ------------------------------------------------

local function function_keys(t, out, seen)
  for _, k in ipairs(sorted_keys(t)) do
    if type(k) == "string" and type(rawget(t, k)) == "function" and not k:match("^__") and not seen[k] then
      seen[k] = true
      out[#out + 1] = k
    end
  end
end

--- Methods, metamethods, properties and setters of objects with metatable mt.
function W.members(mt)
  local methods, seen = {}, {}
  if type(rawget(mt, "__methods")) == "table" then function_keys(rawget(mt, "__methods"), methods, seen) end
  local idx = rawget(mt, "__index")
  local t = type(idx) == "table" and idx or mt   -- a function __index: classes are their own metatables
  local visited = {}
  while type(t) == "table" and not visited[t] do
    visited[t] = true
    function_keys(t, methods, seen)
    local m = getmetatable(t)
    local nxt = type(m) == "table" and rawget(m, "__index") or nil
    t = type(nxt) == "table" and nxt or nil
  end
  table.sort(methods)
  local metamethods = {}
  for _, k in ipairs(sorted_keys(mt)) do
    if type(k) == "string" and k:match("^__") and type(rawget(mt, k)) == "function" then
      metamethods[#metamethods + 1] = k
    end
  end
  local function names_of(field)
    local out = {}
    if type(rawget(mt, field)) == "table" then
      for _, k in ipairs(sorted_keys(rawget(mt, field))) do
        if type(k) == "string" then out[#out + 1] = k end
      end
    end
    return out
  end
  return methods, metamethods, names_of("__properties"), names_of("__setters")
end

--- Data fields of a table object: its raw string keys and those of its
--- raw table fields named _x (a module's _parameters, _buffers, _modules,
--- _attributes), kept when obj[k] reads back non-nil and is not a function.
local function fields_of(obj)
  local out, seen = {}, {}
  if type(obj) ~= "table" then return out end
  local function consider(k)
    if type(k) == "string" and is_ident(k) and not seen[k] and not k:match("^_") then
      seen[k] = true
      local ok, v = pcall(function() return obj[k] end)
      if ok and v ~= nil and type(v) ~= "function" then out[#out + 1] = k end
    end
  end
  for _, k in ipairs(sorted_keys(obj)) do
    consider(k)
    local v = rawget(obj, k)
    if type(k) == "string" and k:match("^_") and type(v) == "table" and getmetatable(v) == nil then
      for _, k2 in ipairs(sorted_keys(v)) do consider(k2) end
    end
  end
  table.sort(out)
  return out
end

-- --- discovery ------------------------------------------------------------------

local function join(args)
  return table.concat(args, ", ")
end

local function split_benign(s)
  -- the benign lists are flat: a top-level comma split is enough for them
  local args, depth, cur = {}, 0, {}
  if s == "" then return args end
  for ch in s:gmatch(".") do
    if ch == "(" or ch == "{" then depth = depth + 1 elseif ch == ")" or ch == "}" then depth = depth - 1 end
    if ch == "," and depth == 0 then
      args[#args + 1] = table.concat(cur):match("^%s*(.-)%s*$")
      cur = {}
    else
      cur[#cur + 1] = ch
    end
  end
  args[#args + 1] = table.concat(cur):match("^%s*(.-)%s*$")
  return args
end
W.split_args = split_benign

-- code as a prefix expression (what may stand before :m() or .f): a name
-- followed by .name, :name(...), (...) and [...] stays as it is; anything
-- else is parenthesized.
function W.prefix(code)
  local pos = code:match("^[%a_][%w_]*()") or code:match("^%b()()")
  while pos and pos <= #code do
    local c = code:sub(pos, pos)
    if c == "." then pos = code:match("^[%a_][%w_]*()", pos + 1)
    elseif c == ":" then
      pos = code:match("^[%a_][%w_]*()", pos + 1)
      pos = pos and code:match("^%b()()", pos)
    elseif c == "(" then pos = code:match("^%b()()", pos)
    elseif c == "[" then pos = code:match("^%b[]()", pos)
    else pos = nil end
  end
  if pos then return code end
  return "(" .. code .. ")"
end

local PROBE_KEY = "hostile_probe"
local HEAVY_BYTES = 16 << 20

--- The whole walk: returns the catalog (plain data).
function W.catalog(dn, env, reset, opts)
  opts = opts or {}
  local log = opts.log or function() end
  local trace, avoid = opts.trace, opts.avoid or {}
  local run = function(code, ...)
    if avoid[code] then return false, "hostile: not run (it crashed an earlier walk)" end
    if trace then trace(code) end
    return W.run(code, ...)
  end
  local static = W.static(dn)
  local kinds, kind_of_mt, kind_by_key = {}, {}, {}
  local callables, skipped = {}, {}
  local library_tables = static.tables

  -- an object kind for value v made by code (origin: the function that made it)
  local function note_object(v, code, origin, bytes)
    local tv = type(v)
    if tv ~= "table" and tv ~= "userdata" then return end
    if library_tables[v] then return end   -- a module or class of the library itself
    local mt = getmetatable(v)
    if type(mt) ~= "table" then return end
    local kind = kind_of_mt[mt]
    if not kind then
      -- a fresh metatable per call (state dicts): one kind per set of metatable keys
      local ok, again = run("return " .. code, env, reset)
      local stable = ok and type(again[1]) == tv and getmetatable(again[1]) == mt
      local key = mt
      if not stable then
        local names = {}
        for k in pairs(mt) do names[#names + 1] = tostring(k) end
        table.sort(names)
        key = "fresh metatable {" .. table.concat(names, ", ") .. "}"
      end
      kind = kind_of_mt[key]
      if not kind then
        local name = type(rawget(mt, "__name")) == "string" and rawget(mt, "__name") or origin .. " result"
        if kind_by_key[name] then name = name .. " (" .. origin .. ")" end
        kind = {name = name, made_by = {}, mt = mt, userdata = tv == "userdata"}
        kind_of_mt[key] = kind
        kind_by_key[name] = kind
        kinds[#kinds + 1] = kind
        log("kind " .. name .. " from " .. code)
      end
    end
    -- one way per function, for now: the shortest that passes arguments
    -- (dn.ones(4) rather than dn.ones()); the cheapest are chosen below
    local best = kind.made_by[origin]
    local function rank(c) return (c:sub(-2) == "()" and 1e6 or 0) + #c end
    if not best or rank(code) < rank(best.code) then
      kind.made_by[origin] = {code = code, heavy = (bytes or 0) > HEAVY_BYTES}
      if tv == "table" and not kind.fields then kind.fields = fields_of(v) end
    end
  end

  -- Up to 8 ways to make a kind, one per function that makes it: light ones
  -- (calls build a fresh object every time; a whole dataset is not light),
  -- shortest first. Memory, not time, decides: the catalog must not depend
  -- on the build or the machine's load.
  local function choose_ctors(made_by)
    local list, direct = {}, false
    for origin in pairs(made_by) do direct = direct or origin:sub(-2) ~= "()" end
    for _, origin in ipairs(sorted_keys(made_by)) do
      -- what a method returns ("forward()": Identity returns its argument) only
      -- when no function makes the kind
      if not direct or origin:sub(-2) ~= "()" then list[#list + 1] = made_by[origin] end
    end
    table.sort(list, function(a, b)
      if a.heavy ~= b.heavy then return b.heavy end
      if #a.code ~= #b.code then return #a.code < #b.code end
      return a.code < b.code
    end)
    local out = {}
    for i = 1, math.min(8, #list) do
      if i == 1 or not list[i].heavy then out[#out + 1] = list[i].code end
    end
    return out
  end

  -- bytes of the tensors in v (a tensor, or tables holding tensors, a few levels deep)
  local function tensor_bytes(v, depth, seen)
    if dn.is_tensor(v) then
      local ok, n = pcall(v.numel, v)
      return ok and n * 4 or 0
    end
    if type(v) ~= "table" or depth > 3 or seen[v] then return 0 end
    seen[v] = true
    local total = 0
    for _, x in next, v do total = total + tensor_bytes(x, depth + 1, seen) end
    return total
  end

  -- tries code; on success notes the objects among its results
  local function try(code, origin)
    local ok, res = run("return " .. code, env, reset)
    if ok then
      for i = 1, math.min(res.n, 3) do
        local c = i == 1 and code or string.format("(select(%d, %s))", i, code)
        if i == 1 and res.n > 1 then c = "(" .. code .. ")" end
        note_object(res[i], c, origin, tensor_bytes(res[i], 0, {}))
      end
    end
    return ok, res
  end

  -- argument lists to try: objects found so far (cheapest constructor), then the benign ones
  local function candidates(with_objects, rests)
    local list = {{}}   -- no arguments first
    if with_objects then
      for _, kind in ipairs(kinds) do
        local ctor = kind.ctors and kind.ctors[1] or choose_ctors(kind.made_by)[1]
        for _, rest in ipairs(rests or P.benign_after_object) do
          list[#list + 1] = rest == "" and {ctor} or {ctor, table.unpack(split_benign(rest))}
        end
      end
    end
    for _, s in ipairs(P.benign) do list[#list + 1] = split_benign(s) end
    return list
  end

  -- "<key> is required": add key = 1 to the last table argument (or append one)
  local function with_required(args, msg)
    local key = type(msg) == "string" and msg:match(": ([%a_][%w_]*) is required")
    if not key then return nil end
    local out = table.move(args, 1, #args, 1, {})
    local last = out[#out]
    if last and last:match("^{.*}$") then
      local inner = last:sub(2, -2)
      out[#out] = "{" .. (inner == "" and "" or inner .. ", ") .. key .. " = 1}"
    else
      out[#out + 1] = "{" .. key .. " = 1}"
    end
    return out
  end

  -- Valid argument lists of a call, up to `want` of them with different
  -- lengths (dn.zeros(), dn.zeros(4), dn.zeros(4, 3)), trying every
  -- candidate unless `want` are found. Also: whether a valid call returned
  -- an object with metatable same_mt (a view or copy of the object: t:t(),
  -- t:narrow(...)), and functions returned by valid calls (iterators).
  local returned = {}
  local function find_valid(call_of, origin, cands, want, result_origin, valids, same_mt, first_success)
    valids = valids or {}
    local arity, derived, succeeded = {}, false, false
    for _, v in ipairs(valids) do arity[#v] = true end
    for _, args in ipairs(cands) do
      if #valids >= want or (first_success and succeeded) then break end
      local a = args
      for _ = 1, 4 do
        local ok, res = try(call_of(a), result_origin or origin)
        if ok then
          succeeded = true
          if not arity[#a] then
            arity[#a] = true
            valids[#valids + 1] = a
          end
          local r1 = res.n >= 1 and res[1] or nil
          if type(r1) == "function" and not returned[origin] and not library_tables[r1] then
            returned[origin] = {producer = call_of(a)}
          end
          if same_mt and (type(r1) == "userdata" or type(r1) == "table") and getmetatable(r1) == same_mt then
            derived = derived or a
          end
          break
        end
        a = with_required(a, res)
        if not a then break end
      end
    end
    return valids, derived
  end

  -- option names accepted at each position (1..4), from the library's own messages
  local function probe_options(call_of, valid)
    local keys = {}
    for p = 1, 4 do
      local args = {}
      for i = 1, p - 1 do args[i] = valid and valid[i] or "nil" end
      args[p] = "{" .. PROBE_KEY .. " = 1}"
      local ok, msg = run("return " .. call_of(args), env, reset)
      local list = not ok and msg:match("unknown [%w ]+ '" .. PROBE_KEY .. "' %(known: ([^)]*)%)")
      if list then
        local ks = {}
        for k in list:gmatch("[^,%s]+") do
          if is_ident(k) then ks[#ks + 1] = k end
        end
        if #ks > 0 then keys[p] = ks end
      end
    end
    return next(keys) and keys or nil
  end

  -- a name for a function value: the path that reaches it, else where it is defined
  local names_of_fns = {}
  for _, f in ipairs(static.functions) do names_of_fns[f.fn] = f.name end
  local function fn_name(f)
    if type(f) ~= "function" then return tostring(f) end
    if names_of_fns[f] then return names_of_fns[f] end
    local info = debug.getinfo(f, "S")
    local name = info.what == "C" and "C function " .. tostring(f) or (info.short_src .. ":" .. info.linedefined)
    names_of_fns[f] = name
    return name
  end

  -- 1. functions and constructors
  local fn_entries = {}
  for _, f in ipairs(static.functions) do
    fn_entries[#fn_entries + 1] = {type = "function", name = f.name, code = f.code, parent = f.parent,
      key = f.key}
  end
  for _, c in ipairs(static.classes) do
    fn_entries[#fn_entries + 1] = {type = "constructor", name = c.name, code = c.code}
  end
  for _, e in ipairs(fn_entries) do
    if W.deny[e.name] then e.denied = true end
    -- metamethods are not called directly to find valid calls (the driver does call them)
    e.no_walk = e.key ~= nil and tostring(e.key):match("^__") ~= nil
  end
  for round = 1, 3 do
    log(string.format("round %d: %d kinds", round, #kinds))
    local cands = candidates(round > 1)
    for _, e in ipairs(fn_entries) do
      if not e.denied and not e.no_walk then
        -- round 1 tries everything (every success may be a new kind); later
        -- rounds, with objects as arguments, stop at a first success
        local known = round > 1 and e.valids and #e.valids > 0
        e.valids = find_valid(function(args) return e.code .. "(" .. join(args) .. ")" end, e.name, cands,
          math.huge, nil, e.valids, nil, known)
        if #e.valids > 4 then e.valids = table.move(e.valids, 1, 4, 1, {}) end
      end
    end
  end
  for _, e in ipairs(fn_entries) do
    if e.valids and #e.valids == 0 then e.valids = nil end
    e.valid = e.valids and e.valids[1]
  end
  for _, e in ipairs(fn_entries) do
    if not e.denied then
      if not e.no_walk then e.options = probe_options(function(args) return e.code .. "(" .. join(args) .. ")" end, e.valid) end
      e.no_walk = nil
      callables[#callables + 1] = e
    end
  end

  -- 2. members of each kind (kinds found here are walked too, in turn)
  local k = 1
  while k <= #kinds do
    local kind = kinds[k]
    k = k + 1
    kind.ctors = choose_ctors(kind.made_by)
    local ctors = kind.ctors
    local methods, metamethods, properties, setters = W.members(kind.mt)
    kind.methods, kind.metamethods, kind.properties, kind.setters = methods, metamethods, properties, setters
    local self_code = W.prefix(ctors[1])
    local cands = candidates(true, {""})
    -- what the object's own argument-free methods return, as arguments of
    -- its other methods (load_state_dict(o:state_dict()), set_state(g:get_state()))
    local own = {}
    kind.valid, kind.derived = {}, {}
    local pending = {}
    for _, m in ipairs(methods) do
      local origin = kind.name .. ":" .. m
      local result_origin = m .. "()"
      local call_of = function(args)
        return self_code .. ":" .. m .. "(" .. join(args) .. ")"
      end
      local entry = {type = "method", name = origin, kind = kind.name, method = m}
      if not is_ident(m) then
        skipped[#skipped + 1] = origin .. " (not a name: no o:m() syntax)"
      elseif not W.deny[origin] then
        local valids, derived = find_valid(call_of, origin, cands, 3, result_origin, nil, kind.mt)
        if #valids > 0 then
          entry.valids, entry.valid = valids, valids[1]
          kind.valid[m] = valids[1]
          for _, v in ipairs(valids) do
            if #v == 0 then own[#own + 1] = {self_code .. ":" .. m .. "()"} end
          end
        else
          pending[#pending + 1] = {entry, call_of, result_origin}
        end
        if derived then kind.derived[#kind.derived + 1] = m .. "(" .. join(derived) .. ")" end
        callables[#callables + 1] = entry
      end
    end
    for _, p in ipairs(pending) do
      local entry, call_of, result_origin = p[1], p[2], p[3]
      local valids = find_valid(call_of, entry.name, own, 1, result_origin)
      if #valids > 0 then
        entry.valids, entry.valid = valids, valids[1]
        kind.valid[entry.method] = valids[1]
      end
    end
    for _, c in ipairs(callables) do
      if c.kind == kind.name and c.type == "method" then
        c.options = probe_options(function(args) return self_code .. ":" .. c.method .. "(" .. join(args) .. ")" end,
          c.valid)
      end
    end
    -- the function behind each member: classes share Module's methods and metamethods
    for _, c in ipairs(callables) do
      if c.kind == kind.name and c.type == "method" then
        local ok, res = run("return " .. self_code .. "." .. c.method, env, reset)
        c.same = "method " .. (ok and fn_name(res[1]) or c.name)
      end
    end
    for _, mm in ipairs(metamethods) do
      local id = fn_name(rawget(kind.mt, mm))
      callables[#callables + 1] = {type = "metamethod", name = kind.name .. "." .. mm, kind = kind.name, method = mm,
        same = "metamethod " .. id}
      callables[#callables + 1] = {type = "operator", name = kind.name .. " " .. mm .. " (operator)",
        kind = kind.name, method = mm, same = "operator " .. id}
    end
    for _, p in ipairs(properties) do
      callables[#callables + 1] = {type = "property", name = kind.name .. "." .. p .. " (get)", kind = kind.name,
        method = p}
    end
    for _, s in ipairs(setters) do
      callables[#callables + 1] = {type = "setter", name = kind.name .. "." .. s .. " = v", kind = kind.name,
        method = s}
    end
    for _, f in ipairs(kind.fields or {}) do
      callables[#callables + 1] = {type = "field", name = kind.name .. "." .. f .. " = v (field)",
        kind = kind.name, method = f, same = "field " .. f}
    end
  end
  -- functions returned by valid calls (iterators)
  for _, origin in ipairs(sorted_keys(returned)) do
    callables[#callables + 1] = {type = "returned", name = origin .. " -> function", producer = returned[origin].producer}
  end

  -- Weights: every distinct function gets the same share of the calls,
  -- split among the kinds that share it (Module:train on 30 classes gets
  -- what Linear:forward gets alone).
  local group_size = {}
  for _, c in ipairs(callables) do
    c.same = c.same or c.name
    group_size[c.same] = (group_size[c.same] or 0) + 1
  end
  for _, c in ipairs(callables) do
    c.weight = 1 / group_size[c.same]
    c.same = nil
  end

  local denied = {}
  for _, e in ipairs(fn_entries) do if e.denied then denied[#denied + 1] = e.name end end
  local out_kinds = {}
  for i, kd in ipairs(kinds) do
    out_kinds[i] = {name = kd.name, ctors = kd.ctors, methods = kd.methods, metamethods = kd.metamethods,
      properties = kd.properties, setters = kd.setters, fields = kd.fields or {}, valid = kd.valid,
      derived = kd.derived,
      userdata = kd.userdata}
  end
  return {kinds = out_kinds, callables = callables, denied = denied, skipped = skipped, modules = static.modules}
end

-- --- the catalog as a file ------------------------------------------------------------

local function serialize(v, out, indent)
  local t = type(v)
  if t == "string" then out[#out + 1] = string.format("%q", v)
  elseif t == "number" or t == "boolean" or t == "nil" then out[#out + 1] = tostring(v)
  elseif t == "table" then
    out[#out + 1] = "{\n"
    local n = #v
    for i = 1, n do
      out[#out + 1] = indent .. "  "
      serialize(v[i], out, indent .. "  ")
      out[#out + 1] = ",\n"
    end
    for _, k in ipairs(sorted_keys(v)) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then
        out[#out + 1] = indent .. "  [" .. (type(k) == "string" and string.format("%q", k) or tostring(k)) .. "] = "
        serialize(v[k], out, indent .. "  ")
        out[#out + 1] = ",\n"
      end
    end
    out[#out + 1] = indent .. "}"
  else
    error("hostile: cannot serialize a " .. t)
  end
end

function W.save(catalog, path)
  local out = {"return "}
  serialize(catalog, out, "")
  out[#out + 1] = "\n"
  local f = assert(io.open(path, "w"))
  f:write(table.concat(out))
  f:close()
end

function W.load(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local src = f:read("a")
  f:close()
  return assert(load(src, "=" .. path, "t", {}))()
end

return W
