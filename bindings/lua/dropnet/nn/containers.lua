--- Containers: Sequential (runs its layers in order) and ModuleList (holds
-- modules for a parent's forward). Children are keyed 1..n, so model[2],
-- #model and ipairs(model) work, and parameter names read "2.weight".
local base = require "dropnet.nn.module"
local check = require "dropnet.check"

local Module, is_module = base.Module, base.is_module

local M = {}

-- Appends module m as child #n+1 of container c.
local function append(c, m, where, argn)
  if not is_module(m) then
    error(string.format("%s: argument %d is not a module (got %s)", where, argn, check.describe(m)), 0)
  end
  c:add_module(#rawget(c, "_modules_order") + 1, m)
end

-- Accepts modules as arguments or as one list.
local function module_list_args(...)
  local n = select("#", ...)
  local first = ...
  if n == 1 and type(first) == "table" and not is_module(first) then return first, #first end
  return {...}, n
end

local function child_count(self)
  return #rawget(self, "_modules_order")
end

-- --- Sequential ----------------------------------------------------------------

local Sequential = Module:extend("Sequential")
M.Sequential = Sequential

--- nn.Sequential(m1, m2, ...) or nn.Sequential{m1, m2, ...}
function Sequential:init(...)
  local list, n = module_list_args(...)
  for i = 1, n do append(self, list[i], "Sequential", i) end
end

--- Appends a module; returns self (so calls chain).
function Sequential:add(m)
  append(self, m, "Sequential:add", 1)
  return self
end

Sequential.__len = child_count

-- The error of layer `name` re-raised with the layer's position and type.
-- A "file:line:" prefix pointing into this library (where the layer called
-- its kernel) says nothing to the user and is dropped; positions in user
-- code stay.
local function layer_error(name, m, err)
  if type(err) ~= "string" then error(err, 0) end
  err = err:gsub("^[^\n]-dropnet/nn/[%w_]+%.lua:%d+: ", "", 1)
  error(string.format("Sequential: layer %s (%s): %s", tostring(name), m.__name, err), 0)
end

-- A layer whose class defines forward_with_activation (Linear) followed by an
-- activation whose class defines fused_activation (ReLU, Tanh, Sigmoid) runs
-- as one fused kernel call. Both are read raw from the exact class so a
-- subclass overriding forward is never fused by mistake. The output is the
-- same as running the two layers one after the other.
local function fused_pair(m, nxt)
  if nxt == nil then return nil end
  local fwd = rawget(getmetatable(m), "forward_with_activation")
  if not fwd or m.activation ~= nil then return nil end
  local act = rawget(getmetatable(nxt), "fused_activation")
  if not act then return nil end
  return fwd, act
end

-- Linear, ReLU, Dropout in a row (exact classes; the Linear with neither an
-- activation of its own nor DropConnect) run as one kernel call while the
-- dropout draws: the same values, gradients and generator advance as the
-- three layers one by one, without the dropout's own pass over the output
-- and without regenerating its mask in backward.
local function fused_triple(m, relu, drop)
  if relu == nil or drop == nil then return nil end
  local fwd = rawget(getmetatable(m), "_forward_relu_dropout")
  if not fwd or m.activation ~= nil or m.dropconnect ~= nil then return nil end
  if rawget(getmetatable(relu), "fused_activation") ~= "relu" then return nil end
  local draw_p = rawget(getmetatable(drop), "_fused_draw_p")
  if not draw_p then return nil end
  return fwd, draw_p
end

function Sequential:forward(x)
  local order, mods = rawget(self, "_modules_order"), rawget(self, "_modules")
  local i, n = 1, #order
  while i <= n do
    local name = order[i]
    local m = mods[name]
    local fwd3, draw_p = fused_triple(m, mods[order[i + 1]], mods[order[i + 2]])
    local p = false
    if fwd3 then
      local drop_name = order[i + 2]
      local ok, res = pcall(draw_p, mods[drop_name])
      if not ok then layer_error(drop_name, mods[drop_name], res) end
      p = res
    end
    local fwd, act = fused_pair(m, mods[order[i + 1]])
    local ok, y
    if p then
      local drop = mods[order[i + 2]]
      ok, y = pcall(fwd3, m, x, p, drop.generator, drop.scale)
      i = i + 3
    elseif fwd then
      ok, y = pcall(fwd, m, x, act)
      i = i + 2
    else
      ok, y = pcall(m, x)
      i = i + 1
    end
    if not ok then layer_error(name, m, y) end
    x = y
  end
  return x
end

-- --- ModuleList --------------------------------------------------------------------

local ModuleList = Module:extend("ModuleList")
M.ModuleList = ModuleList

--- nn.ModuleList{m1, m2, ...} (or modules as arguments)
function ModuleList:init(...)
  local list, n = module_list_args(...)
  for i = 1, n do append(self, list[i], "ModuleList", i) end
end

--- Appends a module; returns self.
function ModuleList:append(m)
  append(self, m, "ModuleList:append", 1)
  return self
end

--- Appends every module of a list; returns self. (On the class itself,
-- ModuleList:extend("Name") still makes a subclass.)
function ModuleList:extend(list)
  if rawget(self, "_modules") == nil then return Module.extend(self, list) end
  if type(list) ~= "table" or is_module(list) and not base.isinstance(list, ModuleList) then
    error(string.format("ModuleList:extend: a list of modules expected (got %s)", check.describe(list)), 0)
  end
  -- the modules first: list may be self (list:extend(list)), which grows as we append
  local modules = {}
  for i, m in ipairs(list) do modules[i] = m end
  for i, m in ipairs(modules) do append(self, m, "ModuleList:extend", i) end
  return self
end

ModuleList.__len = child_count

function ModuleList:forward()
  error("ModuleList: has no forward; call its modules from the parent's forward", 0)
end

return M
