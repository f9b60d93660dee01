--[[
dropnet.nn.hooks: a module's hooks (PyTorch's names and semantics) and the
call that runs them. module.lua puts the registration functions on Module and
sends Module.__call here when a module has hooks.

  m:register_forward_pre_hook(fn(module, input))           may return a new input
  m:register_forward_hook(fn(module, input, output))       may return a new output
  m:register_full_backward_hook(fn(module, grad_input, grad_output))
                                                            may return a new grad_input

`input` is the call's argument list, a table with `n` (input[1] is the tensor
for the usual one-argument module); a pre-hook returns a table (the new
argument list) or one value (the one argument). grad_input and grad_output
are tables with `n` too: the gradients with respect to each argument (nil for
arguments that are not tensors or get no gradient) and to the output.

A full backward hook is built as PyTorch builds it: the tensor arguments go
into the forward as aliases made by dn.hook_aliases, and so does the output,
so the gradient of the output and the module's own part of each input's
gradient are seen where they pass (the output's first, then the inputs', all
inputs at once) and the inputs' can be replaced before they flow on. With no
input requiring grad the hooks run once the output's gradient is known, with
grad_input all nil, and may not replace it.

The hooks live in the raw field `_hooks`: false, or the three lists of
entries {fn =, removed =}, the whole table replaced on each change so a call
keeps the lists it started with and a Sequential's fusion plan (which watches
the field) sees the change: a fused run of layers containing a module with
hooks runs unfused, so every hook sees the layer's own input, output and
gradients. A handle's `remove` marks the entry (the running call skips it) and
drops it from the lists. Without hooks a call costs one rawget.
--]]
local dn = require "dropnet"
local check = require "dropnet.check"

local pack, unpack = table.pack, table.unpack

local M = {}

local KINDS = {"forward_pre", "forward", "backward"}

-- self's hooks with `add` appended to `kind` and the removed entries left out; false when none is left.
local function rebuilt(hooks, kind, add)
  local new, any = {}, false
  for _, k in ipairs(KINDS) do
    local list = {}
    for _, e in ipairs(hooks and hooks[k] or {}) do
      if not e.removed then list[#list + 1] = e end
    end
    if k == kind and add then list[#list + 1] = add end
    any = any or #list > 0
    new[k] = list
  end
  return any and new
end

-- --- handles ---------------------------------------------------------------------------

local Handle = {__name = "dropnet.nn.HookHandle"}
Handle.__index = Handle

--- handle:remove(): the hook never runs again, from now on (a no-op the second time).
function Handle:remove()
  local entry = self._entry
  if entry.removed then return end
  entry.removed = true
  local m = self._module[1]
  if m ~= nil then rawset(m, "_hooks", rebuilt(rawget(m, "_hooks"))) end
end

-- `local h <close> = m:register_forward_hook(fn)`: removed at the end of the block (PyTorch's `with`).
Handle.__close = Handle.remove

local function register(self, kind, fname, fn)
  if type(fn) ~= "function" then
    check.fail("%s.%s: a function expected (got %s)", self.__name, fname, check.describe(fn))
  end
  local entry = {fn = fn, removed = false}
  rawset(self, "_hooks", rebuilt(rawget(self, "_hooks"), kind, entry))
  -- the module weakly: a kept handle does not keep its module
  return setmetatable({_entry = entry, _module = setmetatable({self}, {__mode = "v"})}, Handle)
end

function M.register_forward_pre_hook(self, fn)
  return register(self, "forward_pre", "register_forward_pre_hook", fn)
end

function M.register_forward_hook(self, fn)
  return register(self, "forward", "register_forward_hook", fn)
end

function M.register_full_backward_hook(self, fn)
  return register(self, "backward", "register_full_backward_hook", fn)
end

-- --- backward hooks ----------------------------------------------------------------------

-- A pre-hook's result as the argument list: a table that is not a tensor is the list, anything else
-- the one argument.
local function as_args(r)
  if type(r) == "table" then
    local n = r.n or #r
    local args = {n = n}
    for i = 1, n do args[i] = r[i] end
    return args
  end
  return {n = 1, r}
end

-- The user hooks of one call, in order, each seeing the last one's grad_input. With may_replace
-- false (no input requires grad) they must return nil or nothing but nils, as PyTorch requires.
local function run_backward_hooks(state, grad_input, grad_output, may_replace)
  local m = state.module
  for _, e in ipairs(state.entries) do
    if not e.removed then
      local r = e.fn(m, grad_input, grad_output)
      if r ~= nil then
        if type(r) ~= "table" then
          check.fail("%s: a full backward hook must return a table of gradients or nil (got %s)", m.__name,
            check.describe(r))
        end
        if r.n ~= nil and r.n ~= state.n then
          check.fail("%s: a full backward hook returned %s gradients for %d inputs", m.__name,
            check.describe(r.n), state.n)
        end
        local new = {n = state.n}
        for i = 1, state.n do
          local g = r[i]
          if g ~= nil and not dn.is_tensor(g) then
            check.fail("%s: gradient %d returned by a full backward hook must be a tensor or nil (got %s)",
              m.__name, i, check.describe(g))
          end
          if g ~= nil and grad_input[i] == nil then
            check.fail(may_replace
              and "%s: a full backward hook returned a gradient for input %d, which has none"
              or "%s: a full backward hook returned a gradient for input %d, but no input requires grad",
              m.__name, i)
          end
          new[i] = g
        end
        grad_input = new
      end
    end
  end
  return grad_input
end

-- The output's gradients (complete: the output's alias is reached first).
local function output_hook(state, grads)
  local grad_output = {n = state.n_out}
  for k = 1, state.n_out do grad_output[k] = grads[k] end
  if state.inputs_need_grad then
    state.grad_output = grad_output   -- for input_hook, in the same backward
  else
    run_backward_hooks(state, {n = state.n}, grad_output, false)
  end
end

-- The module's part of each input's gradient, all inputs at once; returns their replacements.
local function input_hook(state, grads)
  local grad_input = {n = state.n}
  for k, pos in ipairs(state.positions) do grad_input[pos] = grads[k] end
  local grad_output = state.grad_output or {n = state.n_out}
  state.grad_output = nil
  grad_input = run_backward_hooks(state, grad_input, grad_output, true)
  local reps = {}
  for k, pos in ipairs(state.positions) do reps[k] = grad_input[pos] end
  return reps
end

-- The tensor arguments replaced by aliases whose gradients input_hook sees. The closures hold `state`
-- (the module, the hook entries, positions), never a tensor of the graph: a hook's function lives as
-- long as the graph, so a tensor in it would keep the graph alive.
local function wrap_inputs(self, entries, args)
  local state = {module = self, entries = entries, n = args.n, positions = {}, n_out = 0,
                 inputs_need_grad = false}
  local tensors = {}
  for i = 1, args.n do
    local a = args[i]
    if dn.is_tensor(a) then
      state.positions[#state.positions + 1] = i
      tensors[#tensors + 1] = a
      state.inputs_need_grad = state.inputs_need_grad or a.requires_grad
    end
  end
  if #tensors == 0 then return args, state end
  local aliases = dn.hook_aliases(tensors, function(grads) return input_hook(state, grads) end)
  local wrapped = {n = args.n}
  for i = 1, args.n do wrapped[i] = args[i] end
  for k, pos in ipairs(state.positions) do wrapped[pos] = aliases[k] end
  return wrapped, state
end

-- The output (a tensor, or a list of tensors) through aliases whose gradients output_hook sees.
local function wrap_output(state, out)
  local list = dn.is_tensor(out) and {out} or out
  if type(list) ~= "table" or #list == 0 then return out end
  for i = 1, #list do
    if not dn.is_tensor(list[i]) then return out end
  end
  state.n_out = #list
  local aliases = dn.hook_aliases(list, function(grads) output_hook(state, grads) end)
  if dn.is_tensor(out) then return aliases[1] end
  return aliases
end

-- --- the call ----------------------------------------------------------------------------------

--- self(...) for a module with hooks: pre-hooks, the backward hooks' aliases, forward, forward hooks.
function M.call(self, hooks, ...)
  local args = pack(...)
  for _, e in ipairs(hooks.forward_pre) do
    if not e.removed then
      local r = e.fn(self, args)
      if r ~= nil then args = as_args(r) end
    end
  end
  local state
  if #hooks.backward > 0 and dn.is_grad_enabled() then args, state = wrap_inputs(self, hooks.backward, args) end
  local results = pack(self:forward(unpack(args, 1, args.n)))
  for _, e in ipairs(hooks.forward) do
    if not e.removed then
      local r = e.fn(self, args, results[1])
      if r ~= nil then
        results[1] = r
        if results.n == 0 then results.n = 1 end
      end
    end
  end
  if state then results[1] = wrap_output(state, results[1]) end
  return unpack(results, 1, results.n)
end

return M
