--- Call generation: (seed, index) -> one call of one callable of the
-- catalog, as a small Lua program (the exact code the driver runs and the
-- reproducer it prints). Nothing here depends on anything but the seed, the
-- index and the catalog, so `--replay N` rebuilds call N exactly.
local P = require "pool"
local W = require "walk"

local G = {}

-- splitmix64 (Lua integers wrap): a stream of 64-bit values per (seed, index)
local GOLDEN = 0x9E3779B97F4A7C15
local function mix(z)
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end

--- r(n): an integer in 1..n from the stream of call `index`.
function G.stream(seed, index)
  local state = mix(mix(seed * GOLDEN) ~ index)
  return function(n)
    state = state + GOLDEN
    return (mix(state) >> 1) % n + 1
  end
end

local BINARY = {__add = "+", __sub = "-", __mul = "*", __div = "/", __mod = "%", __pow = "^", __idiv = "//",
  __band = "&", __bor = "|", __bxor = "~", __shl = "<<", __shr = ">>", __concat = "..", __eq = "==",
  __lt = "<", __le = "<="}
local UNARY = {__unm = "-", __bnot = "~", __len = "#"}

local function copy(list)
  return table.move(list, 1, #list, 1, {})
end

--- A generator of calls over catalog: gen(seed, index) -> {name, type, program, display}.
-- typeof(code) names the type of the value code makes ("number", "string",
-- "table", "tensor", ...): mutations replace a value by one of the same type
-- more often than not.
function G.new(catalog, typeof)
  local kinds = {}
  for _, k in ipairs(catalog.kinds) do kinds[k.name] = k end
  local callables = catalog.callables
  local by_type = {}
  for _, code in ipairs(P.hostile) do
    local t = typeof(code)
    by_type[t] = by_type[t] or {}
    table.insert(by_type[t], code)
  end

  local function hostile(r)
    if r(100) <= 85 then return P.hostile[r(#P.hostile)] end
    local k = catalog.kinds[r(#catalog.kinds)]   -- an object of any kind
    return k.ctors[r(#k.ctors)]
  end

  -- a hostile value of type t, usually
  local function typed(r, t)
    local list = by_type[t]
    if list and r(100) <= 75 then return list[r(#list)] end
    return hostile(r)
  end

  -- one number written in code replaced by a hostile number (dn.randn(2, 4)
  -- -> dn.randn(2, 1 << 62), {lr = 0.1} -> {lr = (0/0)}); nil when code has none
  local function mutate_number(r, code)
    if code:find("function", 1, true) then return nil end   -- loop bounds and the like stay as they are
    local spots, i = {}, 1
    while true do
      local s, e = code:find("%d+%.?%d*", i)
      if not s then break end
      local before, after = code:sub(s - 1, s - 1), code:sub(e + 1, e + 1)
      local exponent = code:sub(s - 2, s - 1):match("^[eE][-+]$")
      local _, quotes = code:sub(1, s - 1):gsub('"', "")
      if not before:match("[%w_%.]") and not after:match("[%w_]") and not exponent and quotes % 2 == 0 then
        spots[#spots + 1] = {s, e + 1}
      end
      i = e + 1
    end
    if #spots == 0 or not by_type.number then return nil end
    local spot = spots[r(#spots)]
    local n = by_type.number[r(#by_type.number)]
    if spot[1] == 1 and spot[2] == #code + 1 then return n end
    return code:sub(1, spot[1] - 1) .. "(" .. n .. ")" .. code:sub(spot[2])
  end

  local function object(r, kind)
    return kind.ctors[r(#kind.ctors)]
  end

  -- {key = hostile, ...} with 1..3 of the keys the callable accepts at that position
  local function options_table(r, keys)
    local parts, used = {}, {}
    for _ = 1, r(3) do
      local k = keys[r(#keys)]
      if not used[k] then
        used[k] = true
        parts[#parts + 1] = k .. " = " .. (r(100) <= 80 and hostile(r) or "1")
      end
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  end

  local function with_options(r, args, options)
    local positions = {}
    for p in pairs(options) do positions[#positions + 1] = p end
    table.sort(positions)
    local p = positions[r(#positions)]
    for i = 1, p - 1 do args[i] = args[i] or (r(2) == 1 and "nil" or hostile(r)) end
    args[p] = options_table(r, options[p])
    return args
  end

  -- 0..4 arguments: a valid list mutated (same-type values, numbers inside
  -- the code, one more or one less argument, options), an options table
  -- with hostile values, a valid list as it is, or hostile values only
  local function arguments(r, c)
    local valids, options = c.valids, c.options
    local mode = r(100)
    if valids and mode <= 50 then
      local args = copy(valids[r(#valids)])
      -- the types of the valid values (typeof only ever runs catalog and pool code)
      local types = {}
      for i, a in ipairs(args) do types[i] = typeof(a) end
      for _ = 1, r(3) do
        local m = r(100)
        if m <= 35 and #args > 0 then
          local p = r(#args)
          args[p] = typed(r, types[p])
        elseif m <= 55 and #args > 0 then
          local p = r(#args)
          args[p] = mutate_number(r, args[p]) or typed(r, types[p])
        elseif m <= 65 and #args < 5 then
          args[#args + 1] = #args > 0 and typed(r, types[#args]) or hostile(r)
          types[#args] = types[#args - 1]
        elseif m <= 72 and #args > 0 then
          args[#args], types[#args] = nil, nil
        elseif m <= 80 and options then
          with_options(r, args, options)
        else
          args[r(#args + 1)] = hostile(r)
        end
      end
      for i = 1, #args do args[i] = args[i] or "nil" end
      return args
    elseif options and mode <= 60 then
      return with_options(r, valids and copy(valids[r(#valids)]) or {}, options)
    elseif valids and mode <= 64 then
      return copy(valids[r(#valids)])
    end
    local args = {}
    for i = 1, r(5) - 1 do args[i] = hostile(r) end
    return args
  end

  -- args with one of them (or one more) replaced by `var` or a view of it:
  -- the same storage twice in one call (t:copy_(t:t()), dn.add(o, o))
  local function view_of(r, kind, var)
    local derived = kind.derived or {}
    if #derived == 0 then return var end
    local d = derived[r(#derived)]
    if r(2) == 1 then d = mutate_number(r, d) or d end   -- narrow(1, 1, 2) -> narrow(1, 2, 2): a partial overlap
    return var .. ":" .. d
  end

  local function alias(r, kind, args, var)
    local v = r(3) > 1 and view_of(r, kind, var) or var
    local p = r(math.min(#args + 1, 4))
    args[p] = v
    for i = 1, #args do args[i] = args[i] or "nil" end
    return args
  end

  -- "o:m(valid args)" for a method of kind that has a valid call, else "o"
  local function follow_up(r, kind, var)
    local names = {}
    for _, m in ipairs(kind.methods) do
      if kind.valid[m] then names[#names + 1] = m end
    end
    if #names == 0 or r(100) <= 30 then return var end
    local m = names[r(#names)]
    return var .. ":" .. m .. "(" .. table.concat(kind.valid[m], ", ") .. ")"
  end

  local function call(fn_code, args)
    return fn_code .. "(" .. table.concat(args, ", ") .. ")"
  end

  -- the number code makes, when it is a plain number above 2^16
  local function huge_count(code)
    if code == nil or typeof(code) ~= "number" then return false end
    local f = load("return " .. code, "=count", "t", {math = math})
    local ok, v = pcall(f or error)
    return ok and type(v) == "number" and v > 65536
  end

  local function build(c, r)
    local kind = c.kind and kinds[c.kind]
    if c.type == "function" or c.type == "constructor" then
      local args = arguments(r, c)
      local count_at = W.loop_counts[c.name]
      if count_at and huge_count(args[count_at]) then
        return "return " .. call(c.code, args), "a loop count above 2^16 (W.loop_counts)"
      end
      if r(100) <= 8 then
        -- an object and its views among the arguments
        local k = catalog.kinds[r(#catalog.kinds)]
        if r(2) == 1 then k = kinds["dropnet.Tensor"] or k end
        return "local o = " .. object(r, k) .. "\nreturn " .. call(c.code, alias(r, k, args, "o"))
      end
      if c.parent and W.is_ident(c.key) and not count_at and r(100) <= 15 then
        -- as a method of the table that holds it (dn.nn.Module:extend(...))
        return "return " .. W.prefix(c.parent) .. ":" .. c.key .. "(" .. table.concat(args, ", ") .. ")"
      end
      return "return " .. call(c.code, args)
    elseif c.type == "method" then
      local args = arguments(r, c)
      local obj = object(r, kind)
      local mode = r(100)
      if mode <= 12 then
        -- the object, or a view of it, with itself or a view of it among the arguments
        local self_expr = r(2) == 1 and view_of(r, kind, "o") or "o"
        return "local o = " .. obj .. "\nreturn " .. call(self_expr .. ":" .. c.method, alias(r, kind, args, "o"))
      elseif mode <= 80 then
        return "return " .. call(W.prefix(obj) .. ":" .. c.method, args)
      end
      table.insert(args, 1, hostile(r))   -- the method of a valid object, on a hostile self
      return "return " .. call(W.prefix(obj) .. "." .. c.method, args)
    elseif c.type == "metamethod" then
      local args = {}
      for i = 1, r(5) - 1 do
        args[i] = (i == 1 and r(2) == 1 or r(4) == 1) and object(r, kind) or hostile(r)
      end
      return "return " .. call("getmetatable(" .. object(r, kind) .. ")." .. c.method, args)
    elseif c.type == "operator" then
      local mm = c.method
      local a = object(r, kind)
      if BINARY[mm] then
        local b = r(4) == 1 and object(r, kind) or hostile(r)
        if r(2) == 1 then a, b = b, a end
        return "return " .. W.prefix(a) .. " " .. BINARY[mm] .. " " .. W.prefix(b)
      elseif UNARY[mm] then
        return "return " .. UNARY[mm] .. W.prefix(a)
      elseif mm == "__tostring" then
        return "return tostring(" .. a .. ")"
      elseif mm == "__index" then
        return "return " .. W.prefix(a) .. "[" .. hostile(r) .. "]"
      elseif mm == "__newindex" then
        return "local o = " .. a .. "\no[" .. hostile(r) .. "] = " .. hostile(r) .. "\nreturn " .. follow_up(r, kind, "o")
      elseif mm == "__call" then
        return "return " .. call(W.prefix(a), arguments(r, {}))
      elseif mm == "__close" then
        return "local o = " .. a .. "\ndo local c <close> = o end\nreturn " .. follow_up(r, kind, "o")
      elseif mm == "__gc" then
        return "local o = " .. a .. "\ngetmetatable(o).__gc(o)\nreturn " .. follow_up(r, kind, "o")
      elseif mm == "__pairs" then
        return "local o = " .. a .. "\nfor _ in pairs(o) do end\nreturn o"
      end
      return "return " .. call("getmetatable(" .. a .. ")." .. mm, {a, hostile(r)})
    elseif c.type == "property" then
      local obj = object(r, kind)
      if r(100) <= 80 then return "return " .. W.prefix(obj) .. "." .. c.method end
      return "return " .. call("getmetatable(" .. obj .. ").__properties." .. c.method, {hostile(r)})
    elseif c.type == "setter" then
      local obj = object(r, kind)
      if r(100) <= 80 then
        return "local o = " .. obj .. "\no." .. c.method .. " = " .. hostile(r) .. "\nreturn " .. follow_up(r, kind, "o")
      end
      return "return " .. call("getmetatable(" .. obj .. ").__setters." .. c.method, {hostile(r), hostile(r)})
    elseif c.type == "field" then
      return "local o = " .. object(r, kind) .. "\no." .. c.method .. " = " .. hostile(r) .. "\nreturn " ..
        follow_up(r, kind, "o")
    elseif c.type == "returned" then
      return "local f = " .. c.producer .. "\nreturn " .. call("f", arguments(r, {}))
    end
    error("hostile: unknown callable type " .. tostring(c.type))
  end

  -- callables drawn by weight (cumulative sums, binary search)
  local cumulative, total = {}, 0
  for i, c in ipairs(callables) do
    total = total + (c.weight or 1)
    cumulative[i] = total
  end
  local function pick(r)
    local x = (r(1 << 30) - 0.5) / (1 << 30) * total
    local lo, hi = 1, #callables
    while lo < hi do
      local mid = (lo + hi) // 2
      if cumulative[mid] < x then lo = mid + 1 else hi = mid end
    end
    return callables[lo]
  end

  -- Even calls go round every callable in an order shuffled by the seed
  -- (N calls reach every one of them N / (2 * #callables) times); odd calls
  -- draw by weight.
  local orders = {}
  local function order_of(seed)
    if not orders[seed] then
      local r, perm = G.stream(seed, -1), {}
      for i = 1, #callables do perm[i] = i end
      for i = #perm, 2, -1 do
        local j = r(i)
        perm[i], perm[j] = perm[j], perm[i]
      end
      orders[seed] = perm
    end
    return orders[seed]
  end

  return function(seed, index)
    local r = G.stream(seed, index)
    local c
    if index % 2 == 0 then
      c = callables[order_of(seed)[(index // 2) % #callables + 1]]
    else
      c = pick(r)
    end
    local program, not_run = build(c, r)
    local display = program:match("^return ([^\n]*)$") or program
    return {name = c.name, type = c.type, program = program, display = display, not_run = not_run}
  end
end

return G
