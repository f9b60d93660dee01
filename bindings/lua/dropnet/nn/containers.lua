--- Containers: Sequential (runs its layers in order) and ModuleList (holds
-- modules for a parent's forward). Children are keyed 1..n, so model[2],
-- #model and ipairs(model) work, and parameter names read "2.weight".
local base = require "dropnet.nn.module"
local check = require "dropnet.check"
local fusion = require "dropnet.nn.fusion"

local Module, is_module = base.Module, base.is_module

local M = {}

-- Appends module m as child #n+1 of container c.
local function append(c, m, where, argn)
  if not is_module(m) then
    check.fail("%s: argument %d is not a module (got %s)", where, argn, check.describe(m))
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
-- The error already names the user's line (check.where, and the C module's
-- errors alike): that "file:line: " moves to the front, where Lua and editors
-- look for it. A prefix pointing into this library says nothing to the user
-- and is dropped.
local function layer_error(name, m, err)
  if type(err) ~= "string" then error(err, 0) end
  err = err:gsub("^[^\n]-dropnet/nn/[%w_]+%.lua:%d+: ", "", 1)
  local position, rest = err:match("^([^\n:]+:%d+: )(.*)$")
  if not position then position, rest = "", err end
  error(string.format("%sSequential: layer %s (%s): %s", position, tostring(name), m.__name, rest), 0)
end

-- The layers run as the steps of the container's plan (dropnet.nn.fusion):
-- one layer, or a run of layers that a fusion rule turns into one call with
-- the same results. An error names the step's first layer.
function Sequential:forward(x)
  local plan = fusion.plan(self)
  for i = 1, #plan do
    local step = plan[i]
    local ok, y = pcall(step.forward, x, table.unpack(step))
    if not ok then layer_error(step.name, step.module, y) end
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
    check.fail("ModuleList:extend: a list of modules expected (got %s)", check.describe(list))
  end
  -- the modules first: list may be self (list:extend(list)), which grows as we append
  local modules = {}
  for i, m in ipairs(list) do modules[i] = m end
  for i, m in ipairs(modules) do append(self, m, "ModuleList:extend", i) end
  return self
end

ModuleList.__len = child_count

function ModuleList:forward()
  check.error("ModuleList: has no forward; call its modules from the parent's forward")
end

return M
