--[[
dropnet.nn.module: the Module base class and nn.Parameter.

Defining a layer
----------------
  local MyLayer = nn.Module:extend("MyLayer")       -- the name is what print(model) shows

  function MyLayer:init(n_in, n_out)                 -- called by MyLayer(n_in, n_out)
    self.fc = nn.Linear(n_in, n_out)                 -- a module: registered as a child
    self.scale = nn.Parameter(dn.ones(n_out))        -- a Parameter: registered, requires grad
    self:register_buffer("count", dn.zeros(1))       -- state that is saved but not trained
    self.note = "anything else is a plain field"
  end

  function MyLayer:forward(x)                        -- model(x) calls forward
    return self.fc(x) * self.scale                   -- tensor ops: backward comes for free
  end

  function MyLayer:extra_repr() return "scaled" end  -- optional: text inside MyLayer(...)

A subclass of a subclass works the same way (Sub = MyLayer:extend("Sub")); call
the parent's constructor with MyLayer.init(self, ...) when Sub:init overrides it.
Parameters, buffers and children are kept in registration order, so
parameters() and state_dict() list them in the order they were assigned.
Plain fields may hold anything; assigning a tensor that is not a Parameter to
a parameter's name is an error (use nn.Parameter, or nil to remove it).

Mode: every module has `self.mode`, one of "train", "eval" and "mc", and
`self.training` (true only in "train"). train(), eval() and mc() walk all
modules and set both through Module:_set_mode(mode). "mc" (Monte Carlo
dropout) is eval for every layer except the stochastic ones: dropout layers
stay random at inference, and their backward masks the gradient exactly as
the forward masked the values. A stochastic layer asks `self:is_stochastic()`.
--]]
local dn = require "dropnet"
local check = require "dropnet.check"
local module_hooks = require "dropnet.nn.hooks"

local M = {}
local byte = string.byte

-- --- Parameters ---------------------------------------------------------------

-- Tensors made by nn.Parameter; weak so a dropped parameter is collected.
local parameter_set = setmetatable({}, {__mode = "k"})

--- nn.Parameter(t[, requires_grad = true]): marks the tensor t (detached
-- first when it has a history) as a trainable parameter and returns it.
function M.Parameter(t, requires_grad)
  if not dn.is_tensor(t) then
    check.fail("Parameter: a tensor expected (got %s)", check.describe(t))
  end
  if requires_grad == nil then requires_grad = true end
  check.bool("Parameter", "requires_grad", requires_grad)
  if not t.is_leaf then t = t:detach() end
  if t.requires_grad ~= requires_grad then t:requires_grad_(requires_grad) end
  parameter_set[t] = true
  return t
end

--- True when t was made by nn.Parameter (or registered as a parameter).
function M.is_parameter(t)
  return parameter_set[t] == true
end

-- --- ordered stores -----------------------------------------------------------

-- Each kind of member (parameters, buffers, children) lives in a map plus a
-- list of its names in registration order.
-- Marks name as a field that may read as nil (set to nil on purpose), so
-- that reading it is never refused as a misspelling (Module.__index).
local function declare_nil(self, name)
  local declared = rawget(self, "_declared")
  if not declared then
    declared = {}
    rawset(self, "_declared", declared)
  end
  declared[name] = true
end

local function store_set(self, kind, name, value)
  if rawget(self, "_misses") then rawset(self, "_misses", nil) end   -- see M._missing_field
  local map, order = rawget(self, kind), rawget(self, kind .. "_order")
  if value == nil then
    declare_nil(self, name)
    if map[name] ~= nil or order.has[name] then
      for i = 1, #order do
        if order[i] == name then table.remove(order, i) break end
      end
      order.has[name] = nil
    end
    map[name] = nil
    return
  end
  if not order.has[name] then
    order[#order + 1] = name
    order.has[name] = true
  end
  map[name] = value
end

local STORES = {"_parameters", "_buffers", "_modules"}

local function remove_everywhere(self, name)
  for _, kind in ipairs(STORES) do
    if rawget(self, kind)[name] ~= nil then store_set(self, kind, name, nil) end
  end
  rawget(self, "_attributes")[name] = nil
end

local function new_order() return {has = {}} end

-- --- the class system ---------------------------------------------------------

local Module = {__name = "Module"}
Module.__is_module_class = true

--- True when x is a module instance (not a class).
function M.is_module(x)
  if type(x) ~= "table" or rawget(x, "_modules") == nil then return false end
  local mt = getmetatable(x)
  return type(mt) == "table" and mt.__is_module_class == true
end
local is_module = M.is_module

--- True when the module x is an instance of cls or of a subclass of it.
function M.isinstance(x, cls)
  if not is_module(x) then return false end
  local c = getmetatable(x)
  while c do
    if c == cls then return true end
    c = rawget(c, "super")
  end
  return false
end

-- Instances: members are looked up among plain fields, parameters, buffers
-- and children, then in the class (so methods are found last but fields
-- holding functions still shadow them, as with plain Lua objects).
function Module.__index(self, key)
  local v = rawget(self, "_attributes")[key]
  if v ~= nil then return v end
  v = rawget(self, "_parameters")[key]
  if v ~= nil then return v end
  v = rawget(self, "_buffers")[key]
  if v ~= nil then return v end
  v = rawget(self, "_modules")[key]
  if v ~= nil then return v end
  v = getmetatable(self)[key]
  if v ~= nil then return v end
  -- optional fields read at every call (set to nil on purpose, or known to be no misspelling): at once
  local known = rawget(self, "_declared")
  if known and known[key] then return nil end
  known = rawget(self, "_misses")
  if known and known[key] then return nil end
  if type(key) ~= "string" or byte(key, 1) == 95 then return nil end   -- 95: "_", private probes
  return M._missing_field(self, key)
end

-- Names of a class and its ancestors (methods, class fields), by class.
local class_names = setmetatable({}, {__mode = "k"})
local function names_of_class(cls)
  local names = class_names[cls]
  if names then return names end
  names = {}
  local c = cls
  while type(c) == "table" do
    for k in next, c do
      if type(k) == "string" and k:byte(1) ~= 95 then names[k] = true end
    end
    c = rawget(c, "super")
  end
  class_names[cls] = names
  return names
end

-- A string field that no member or method of self has. Lua reads a missing
-- field as nil, and optional fields are probed so (`if self.bias then`); a
-- name one or two edits away from a real one (model.weigth) is a typo that
-- would read as nil far from where it was made, so it is refused with the
-- right name. Fields set to nil on purpose (self.cache = nil) read as nil.
-- Probes of optional fields run on every call of a layer (the fusion plan
-- reads `activation`, `dropconnect`, `generator` each step): a key found to
-- be no misspelling is remembered (_misses, cleared when a field is set), so
-- the next read is two table lookups, not an edit-distance search (which took
-- 30-90 us a read and halved a small MLP's training speed).
function M._missing_field(self, key)
  local declared = rawget(self, "_declared")
  if declared and declared[key] then return nil end
  local misses = rawget(self, "_misses")
  if misses and misses[key] then return nil end
  local suggestion = check.suggest(key, {rawget(self, "_attributes"), rawget(self, "_parameters"),
    rawget(self, "_buffers"), rawget(self, "_modules"), names_of_class(getmetatable(self)),
    {training = true, mode = true}})
  if suggestion then
    check.fail("%s: no field '%s' (did you mean %s?)", rawget(getmetatable(self), "__name") or "Module", key,
      suggestion)
  end
  if not misses then
    misses = {}
    rawset(self, "_misses", misses)
  end
  misses[key] = true
  return nil
end

-- Assignment registers modules and parameters; everything else is a plain field.
function Module.__newindex(self, key, value)
  -- a new name may turn a remembered miss into a misspelling of it
  if rawget(self, "_misses") then rawset(self, "_misses", nil) end
  if is_module(value) then
    -- a child replaced keeps its place (model[2] = nn.Tanh() in a Sequential)
    if rawget(self, "_modules")[key] == nil then remove_everywhere(self, key) end
    store_set(self, "_modules", key, value)
  elseif dn.is_tensor(value) and parameter_set[value] then
    remove_everywhere(self, key)
    store_set(self, "_parameters", key, value)
  elseif rawget(self, "_parameters")[key] ~= nil then
    if value ~= nil then
      -- an nn.Parameter is a tensor too: say which kind was given
      local got = dn.is_tensor(value) and "a plain tensor" or check.describe(value)
      check.fail("%s: cannot assign %s to parameter '%s' (nn.Parameter or nil expected)",
        self.__name, got, tostring(key))
    end
    store_set(self, "_parameters", key, nil)
  elseif rawget(self, "_buffers")[key] ~= nil then
    if value ~= nil and not dn.is_tensor(value) then
      check.fail("%s: cannot assign %s to buffer '%s' (a tensor or nil expected)",
        self.__name, check.describe(value), tostring(key))
    end
    store_set(self, "_buffers", key, value)
  elseif rawget(self, "_modules")[key] ~= nil then
    if value ~= nil then
      check.fail("%s: cannot assign %s to child module '%s' (a module or nil expected)",
        self.__name, check.describe(value), tostring(key))
    end
    store_set(self, "_modules", key, nil)
  else
    if value == nil then declare_nil(self, key) end
    rawget(self, "_attributes")[key] = value
  end
end

-- A call runs forward, through the hooks when the module has any (dropnet.nn.hooks).
function Module.__call(self, ...)
  local hooks = rawget(self, "_hooks")
  if not hooks then return self:forward(...) end
  return module_hooks.call(self, hooks, ...)
end

-- Metamethods are read raw from an instance's metatable, so every class
-- carries its own copy of them.
local METAMETHODS = {"__index", "__newindex", "__call", "__tostring", "__len"}

local function class_tostring(cls)
  return "dropnet.nn class " .. cls.__name
end

local function construct(cls, ...)
  local self = setmetatable({
    training = true,
    mode = "train",
    _attributes = {},
    _parameters = {}, _parameters_order = new_order(),
    _buffers = {}, _buffers_order = new_order(), _nonpersistent = {},
    _modules = {}, _modules_order = new_order(),
    _hooks = false,   -- raw, so a fusion plan can watch it (dropnet.nn.hooks)
  }, cls)
  self:init(...)
  return self
end

setmetatable(Module, {__call = construct, __tostring = class_tostring})

--- Cls:extend(name): a new class inheriting from Cls; instances are made by
-- calling the class, which runs its init method.
function Module:extend(name)
  if type(name) ~= "string" or name == "" then
    check.fail("extend: a class name (string) expected (got %s)", check.describe(name))
  end
  if rawget(self, "_modules") ~= nil then
    check.error("extend: call it on a class (nn.Module:extend), not on a module instance")
  end
  local cls = {}
  for _, k in ipairs(METAMETHODS) do cls[k] = self[k] end
  cls.__name = name
  cls.super = self
  return setmetatable(cls, {__index = self, __call = construct, __tostring = class_tostring})
end

--- Constructor body; subclasses override it.
function Module:init() end

function Module:forward()
  check.fail("%s: forward is not defined (define %s:forward)", self.__name, self.__name)
end

-- --- registration ------------------------------------------------------------

local function check_name(self, name, fname)
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    check.fail("%s.%s: name must be a non-empty string without '.' (got %s)", self.__name, fname,
      check.describe(name))
  end
end

--- Registers t (marked as a Parameter) under name; nil removes it. Returns t.
function Module:register_parameter(name, t)
  check_name(self, name, "register_parameter")
  if t == nil then
    store_set(self, "_parameters", name, nil)
    return nil
  end
  if not dn.is_tensor(t) then
    check.fail("%s.register_parameter: a tensor or nil expected for '%s' (got %s)", self.__name, name,
      check.describe(t))
  end
  if not parameter_set[t] then t = M.Parameter(t) end
  remove_everywhere(self, name)
  store_set(self, "_parameters", name, t)
  return t
end

--- Registers a buffer: state saved in state_dict (unless persistent is
-- false) but not returned by parameters(). Returns t.
function Module:register_buffer(name, t, persistent)
  check_name(self, name, "register_buffer")
  if t ~= nil and not dn.is_tensor(t) then
    check.fail("%s.register_buffer: a tensor or nil expected for '%s' (got %s)", self.__name, name,
      check.describe(t))
  end
  if persistent == nil then persistent = true end
  remove_everywhere(self, name)
  store_set(self, "_buffers", name, t)
  rawget(self, "_nonpersistent")[name] = (t ~= nil and not persistent) or nil
  return t
end

--- Registers a child module under name (same as self[name] = module).
function Module:add_module(name, module)
  if type(name) ~= "number" then check_name(self, name, "add_module") end
  if module ~= nil and not is_module(module) then
    check.fail("%s.add_module: a module expected for '%s' (got %s)", self.__name, tostring(name),
      check.describe(module))
  end
  remove_everywhere(self, name)
  store_set(self, "_modules", name, module)
  return module
end

-- --- traversal ------------------------------------------------------------------

local function join(prefix, name)
  if prefix == "" then return tostring(name) end
  return prefix .. "." .. tostring(name)
end

-- Calls visit(module, prefix) for self and every descendant, pre-order,
-- each module once.
local function walk(self, visit)
  local seen = {}
  local function rec(m, prefix)
    if seen[m] then return end
    seen[m] = true
    visit(m, prefix)
    local order, mods = rawget(m, "_modules_order"), rawget(m, "_modules")
    for _, name in ipairs(order) do rec(mods[name], join(prefix, name)) end
  end
  rec(self, "")
end

-- {name, tensor} pairs of one store over the whole tree, each tensor once.
local function named_members(self, kind, keep)
  local out, seen = {}, {}
  walk(self, function(m, prefix)
    local order, map = rawget(m, kind .. "_order"), rawget(m, kind)
    for _, name in ipairs(order) do
      local t = map[name]
      if not seen[t] and (keep == nil or keep(m, name)) then
        seen[t] = true
        out[#out + 1] = {join(prefix, name), t}
      end
    end
  end)
  return out
end

local function values_of(pairs_list)
  local out = {}
  for i, p in ipairs(pairs_list) do out[i] = p[2] end
  return out
end

--- Every parameter of the module tree in registration order: {{"1.weight", t}, ...}.
function Module:named_parameters()
  return named_members(self, "_parameters")
end

--- Every parameter of the module tree in registration order.
function Module:parameters()
  return values_of(named_members(self, "_parameters"))
end

function Module:named_buffers()
  return named_members(self, "_buffers")
end

function Module:buffers()
  return values_of(named_members(self, "_buffers"))
end

--- Direct children as {name, module} pairs.
function Module:named_children()
  local out = {}
  local mods = rawget(self, "_modules")
  for _, name in ipairs(rawget(self, "_modules_order")) do out[#out + 1] = {name, mods[name]} end
  return out
end

function Module:children()
  return values_of(self:named_children())
end

--- self and every descendant, pre-order, as {name, module} ("" for self).
function Module:named_modules()
  local out = {}
  walk(self, function(m, prefix) out[#out + 1] = {prefix, m} end)
  return out
end

function Module:modules()
  return values_of(self:named_modules())
end

--- Calls fn(m) on every descendant and then on self (children first, as
-- PyTorch does, so an init function sees leaves before containers). Returns self.
function Module:apply(fn)
  for _, child in ipairs(self:children()) do child:apply(fn) end
  fn(self)
  return self
end

-- --- mode ---------------------------------------------------------------------------

local MODES = {train = true, eval = true, mc = true}

--- Sets `mode` ("train", "eval" or "mc"; true and false stand for "train"
-- and "eval") and `training` (mode == "train") on self and every
-- descendant. The one place modes are set. Returns self.
function Module:_set_mode(mode)
  if mode == true then mode = "train" elseif mode == false then mode = "eval" end
  if not MODES[mode] then
    check.fail("%s: mode must be \"train\", \"eval\" or \"mc\" (got %s)", self.__name,
      check.describe(mode))
  end
  local training = mode == "train"
  for _, m in ipairs(self:modules()) do
    rawset(m, "mode", mode)
    rawset(m, "training", training)
  end
  return self
end

--- train([mode = true]): training mode (false is eval). Returns self.
function Module:train(mode)
  if mode == nil then mode = true end
  check.bool(self.__name .. ".train", "mode", mode)
  return self:_set_mode(mode)
end

--- Evaluation mode. Returns self.
function Module:eval()
  return self:_set_mode("eval")
end

--- MC dropout mode: eval for every layer, except that dropout layers keep
-- drawing masks (forward and backward). Returns self.
function Module:mc()
  return self:_set_mode("mc")
end

--- True when a random layer should draw: in training, and in MC mode.
-- (`training` is read first so a direct `m.training = true` still counts.)
function Module:is_stochastic()
  return rawget(self, "training") == true or rawget(self, "mode") == "mc"
end

--- Sets requires_grad on every parameter (false freezes them). Returns self.
function Module:requires_grad_(flag)
  if flag == nil then flag = true end
  check.bool(self.__name .. ".requires_grad_", "flag", flag)
  for _, p in ipairs(self:parameters()) do p:requires_grad_(flag) end
  return self
end

--- Clears the gradients: removes them (default), or fills them with zeros
-- when set_to_none is false.
function Module:zero_grad(set_to_none)
  if set_to_none == nil then set_to_none = true end
  for _, p in ipairs(self:parameters()) do
    local g = p.grad
    if g then
      if set_to_none then p.grad = nil
      else dn.no_grad(g.fill_, g, 0) end
    end
  end
end

-- --- hooks ---------------------------------------------------------------------------

--- Hooks on the module's calls (dropnet.nn.hooks): each returns a handle whose remove() unregisters it.
-- fn(module, input) before forward; its result, when not nil, replaces the argument list.
Module.register_forward_pre_hook = module_hooks.register_forward_pre_hook
-- fn(module, input, output) after forward; its result, when not nil, replaces the output.
Module.register_forward_hook = module_hooks.register_forward_hook
-- fn(module, grad_input, grad_output) in backward; its result, when not nil, replaces grad_input.
Module.register_full_backward_hook = module_hooks.register_full_backward_hook

-- --- state ---------------------------------------------------------------------------

-- Parameters then persistent buffers of each module, pre-order: the entries
-- of a state dict, as {name, live tensor} pairs.
local function state_entries(self)
  local out = {}
  walk(self, function(m, prefix)
    for _, name in ipairs(rawget(m, "_parameters_order")) do
      out[#out + 1] = {join(prefix, name), rawget(m, "_parameters")[name]}
    end
    local nonpersistent = rawget(m, "_nonpersistent")
    for _, name in ipairs(rawget(m, "_buffers_order")) do
      if not nonpersistent[name] then out[#out + 1] = {join(prefix, name), rawget(m, "_buffers")[name]} end
    end
  end)
  return out
end

-- pairs() over a state dict: its keys in model order, then any keys added later.
local function ordered_pairs(sd)
  local keys = getmetatable(sd).keys
  local i, listed = 0, {}
  for _, k in ipairs(keys) do listed[k] = true end
  local extra_key = nil
  local in_extra = false
  return function()
    if not in_extra then
      while i < #keys do
        i = i + 1
        local k = keys[i]
        local v = rawget(sd, k)
        if v ~= nil then return k, v end
      end
      in_extra = true
    end
    repeat
      local v
      extra_key, v = next(sd, extra_key)
      if extra_key ~= nil and not listed[extra_key] then return extra_key, v end
    until extra_key == nil
    return nil
  end, sd, nil
end

--- The module's parameters and persistent buffers as a plain table
-- name -> tensor (detached, sharing storage with the model). pairs() visits
-- the names in model order; the list is also getmetatable(sd).keys.
function Module:state_dict()
  local sd, keys = {}, {}
  for _, e in ipairs(state_entries(self)) do
    if sd[e[1]] == nil then keys[#keys + 1] = e[1] end
    sd[e[1]] = e[2]:detach()
  end
  return setmetatable(sd, {keys = keys, __pairs = ordered_pairs})
end

local function shape_str(shape)
  return "[" .. table.concat(shape, ",") .. "]"
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local function quoted_list(names)
  local q = {}
  for i, n in ipairs(names) do q[i] = string.format("%q", n) end
  return table.concat(q, ", ")
end

--- Copies the tensors of sd (a state dict; values may also be nested tables
-- of numbers) into the model in place. opts.strict (default true) makes
-- missing and unexpected keys an error; shape mismatches are always an
-- error. Nothing is copied when there is an error. Returns
-- {missing_keys = {...}, unexpected_keys = {...}}.
function Module:load_state_dict(sd, opts)
  local where = "load_state_dict (" .. self.__name .. ")"
  if type(sd) ~= "table" then
    check.fail("%s: a table of tensors expected (got %s)", where, check.describe(sd))
  end
  opts = check.options(where, "options", opts, {"strict"})
  local strict = opts.strict
  if strict == nil then strict = true end
  local entries = state_entries(self)
  local expected, missing, unexpected, problems, copies = {}, {}, {}, {}, {}
  for _, e in ipairs(entries) do
    local name, target = e[1], e[2]
    expected[name] = true
    local v = sd[name]
    if v == nil then
      missing[#missing + 1] = name
    else
      if type(v) == "table" and not dn.is_tensor(v) then
        local ok, t = pcall(dn.tensor, v)
        if not ok then
          problems[#problems + 1] = string.format("value for %q is not a tensor: %s", name, tostring(t))
        end
        v = ok and t or nil
      elseif not dn.is_tensor(v) then
        problems[#problems + 1] = string.format("value for %q must be a tensor (got %s)", name, check.describe(v))
        v = nil
      end
      if v then
        local want, got = target:shape(), v:shape()
        if not same_shape(want, got) then
          problems[#problems + 1] = string.format("size mismatch for %q: the state dict has shape %s, the model %s",
            name, shape_str(got), shape_str(want))
        else
          copies[#copies + 1] = {target, v}
        end
      end
    end
  end
  for k in pairs(sd) do
    if not expected[k] then unexpected[#unexpected + 1] = tostring(k) end
  end
  table.sort(unexpected)
  if strict then
    if #missing > 0 then table.insert(problems, 1, "missing keys " .. quoted_list(missing)) end
    if #unexpected > 0 then
      table.insert(problems, #missing > 0 and 2 or 1, "unexpected keys " .. quoted_list(unexpected))
    end
  end
  if #problems > 0 then check.error(where .. ": " .. table.concat(problems, "; ")) end
  dn.no_grad(function()
    for _, c in ipairs(copies) do c[1]:copy_(c[2]) end
  end)
  return {missing_keys = missing, unexpected_keys = unexpected}
end

-- --- printing --------------------------------------------------------------------------

--- Text shown inside Name(...); layers override it.
function Module:extra_repr()
  return ""
end

-- Indents every line after the first by two spaces.
local function add_indent(s)
  return (s:gsub("\n", "\n  "))
end

--- Prints like PyTorch: Name(extra) or Name(\n  (child): ...\n).
function Module:__tostring()
  local extra = self:extra_repr() or ""
  local lines = {}
  local n_extra = 0
  if extra ~= "" then
    for line in (extra .. "\n"):gmatch("(.-)\n") do
      lines[#lines + 1] = line
      n_extra = n_extra + 1
    end
  end
  local children = self:named_children()
  for _, c in ipairs(children) do
    lines[#lines + 1] = "(" .. tostring(c[1]) .. "): " .. add_indent(tostring(c[2]))
  end
  local s = self.__name .. "("
  if #lines > 0 then
    if n_extra == 1 and #children == 0 then s = s .. lines[1]
    else s = s .. "\n  " .. table.concat(lines, "\n  ") .. "\n" end
  end
  return s .. ")"
end

M.Module = Module
return M
