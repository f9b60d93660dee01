--- dropnet.optim: optimizers whose updates run in C (one fused loop per
-- parameter), max-norm and gradient clipping, and learning-rate and momentum
-- schedules. Semantics follow torch.optim (PyTorch 1.13).
--
--   local opt = optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
--   opt:zero_grad(); loss:backward(); opt:step()
--
-- `params` is a list of tensors, or a list of parameter groups
-- `{ {params = {...}, lr = ...}, ... }` whose fields override the defaults.
-- opt.param_groups is public: a schedule (or the user) changes group.lr there.
local dn = require "dropnet"
local core = require "dropnet.core"
local check = require "dropnet.check"

local optim = {}

-- --- checks ------------------------------------------------------------------------

local fail, describe, is_finite = check.fail, check.describe, check.is_finite

-- A norm limit: a number >= 0, +inf meaning no limit (as in PyTorch).
local function check_limit(where, v)
  if type(v) ~= "number" or not (v >= 0) then
    fail("%s: max_norm must be a number >= 0 (got %s)", where, describe(v))
  end
end

--- A copy of an option value (betas tables are per group).
local function copy_value(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = x end
  return c
end

-- --- the optimizer protocol -----------------------------------------------------------

local Optimizer = {}
Optimizer.__index = Optimizer

--- A group's label in messages: "SGD" or "SGD (group 2)".
local function group_where(self, i)
  return (self._grouped or i > 1) and string.format("%s (group %d)", self.name, i) or self.name
end

--- Adds a parameter group (a table with `params`, a tensor or a list of
--- tensors, and option overrides), as PyTorch's add_param_group.
function Optimizer:add_param_group(group)
  local where = self.name
  if type(group) ~= "table" then
    fail("%s: a parameter group must be a table with params (got %s)", where, describe(group))
  end
  if check.is_module(group) or check.is_module(group.params) then
    local m = check.is_module(group) and group or group.params
    fail("%s: got the module %s where parameters were expected (pass model:parameters())", where, describe(m))
  end
  local known = {params = true, initial_lr = true}
  for _, k in ipairs(self._spec.known) do known[k] = true end
  check.options(where, "parameter group", group, known)
  local params = group.params
  if dn.is_tensor(params) then params = {params} end
  if type(params) ~= "table" then fail("%s: params must be a list of tensors (got %s)", where, describe(params)) end
  if #params == 0 then fail("%s: got an empty parameter list", where) end
  local list, seen = {}, {}
  for i, p in ipairs(params) do
    if not dn.is_tensor(p) then fail("%s: parameter %d is %s, a tensor expected", where, i, describe(p)) end
    if p:dtype() ~= "float32" then fail("%s: parameter %d is %s, float32 expected", where, i, p:dtype()) end
    if not p.is_leaf then fail("%s: parameter %d is not a leaf tensor (optimize the leaf, or detach())", where, i) end
    if self._members[p] or seen[p] then
      fail("%s: parameter %d appears more than once among the optimizer's parameters", where, i)
    end
    seen[p] = true
    list[i] = p
  end
  local g = {params = list}
  for k, v in pairs(group) do
    if k ~= "params" then g[k] = copy_value(v) end
  end
  for k, v in pairs(self.defaults) do
    if g[k] == nil then g[k] = copy_value(v) end
  end
  self._spec.validate(group_where(self, #self.param_groups + 1), g)
  for p in pairs(seen) do self._members[p] = true end
  self.param_groups[#self.param_groups + 1] = g
end

local function new_optimizer(spec, params, options)
  local where = spec.name
  options = check.options(where, "options", options, spec.known)
  local self = setmetatable({name = spec.name, _spec = spec, param_groups = {}, state = {}, _members = {}},
    Optimizer)
  -- what a group gets for the options it does not set itself
  self.defaults = {}
  for k, v in pairs(spec.defaults) do self.defaults[k] = copy_value(v) end
  for k, v in pairs(options) do self.defaults[k] = copy_value(v) end
  if dn.is_tensor(params) then
    params = {params}
  elseif check.is_module(params) then   -- PyTorch's habit is optim.Adam(model.parameters())
    fail("%s: params must be a list of tensors, not the module %s (pass model:parameters())", where,
      describe(params))
  elseif type(params) ~= "table" then
    fail("%s: params must be a list of tensors or of parameter groups (got %s)", where, describe(params))
  end
  if #params == 0 then fail("%s: got an empty parameter list", where) end
  if dn.is_tensor(params[1]) then
    self:add_param_group({params = params})
  else
    self._grouped = true
    for _, group in ipairs(params) do self:add_param_group(group) end
  end
  return self
end

--- Clears the gradients: sets every parameter's grad to nil (the default),
--- or fills existing grads with zeros when set_to_none is false.
function Optimizer:zero_grad(set_to_none)
  for _, group in ipairs(self.param_groups) do
    for _, p in ipairs(group.params) do
      if set_to_none == false then
        local g = p.grad
        if g then g:fill_(0) end
      else
        p.grad = nil
      end
    end
  end
end

--- One update of every parameter that has a gradient (parameters whose grad
--- is nil are skipped). An optional closure recomputes the loss first and its
--- result is returned, as in PyTorch.
function Optimizer:step(closure)
  local loss
  if closure ~= nil then
    if type(closure) ~= "function" then
      fail("%s:step: closure must be a function (got %s)", self.name, describe(closure))
    end
    loss = dn.enable_grad(closure)
  end
  local update = self._spec.update
  for _, group in ipairs(self.param_groups) do
    local opts = self._spec.options and self._spec.options(group) or group
    for _, p in ipairs(group.params) do
      local g = p.grad
      if g ~= nil then
        if not g:is_contiguous() then
          g = g:contiguous()
          p.grad = g
        end
        local st = self.state[p]
        if not st then
          st = {}
          self.state[p] = st
        end
        update(p, g, st, group, opts)
      end
    end
  end
  return loss
end

--- A plain table: {state = {[index] = {step = ..., buffers cloned}},
--- param_groups = {{lr = ..., ..., params = {indices}}}}; indices count the
--- parameters from 1 across groups, in order.
function Optimizer:state_dict()
  local index, groups, n = {}, {}, 0
  for gi, group in ipairs(self.param_groups) do
    local packed = {params = {}}
    for k, v in pairs(group) do
      if k ~= "params" then packed[k] = copy_value(v) end
    end
    for j, p in ipairs(group.params) do
      n = n + 1
      index[p] = n
      packed.params[j] = n
    end
    groups[gi] = packed
  end
  local state = {}
  for p, st in pairs(self.state) do
    local i = index[p]
    if i and next(st) ~= nil then
      local s = {}
      for k, v in pairs(st) do s[k] = dn.is_tensor(v) and v:clone() or v end
      state[i] = s
    end
  end
  return {state = state, param_groups = groups}
end

--- Restores options and state saved by state_dict. The saved groups must match
--- this optimizer's groups in number and sizes; buffers must match their
--- parameters' shapes. Nothing changes when the check fails.
function Optimizer:load_state_dict(sd)
  local where = self.name .. ":load_state_dict"
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.state) ~= "table" then
    fail("%s: a table with state and param_groups expected (got %s)", where, describe(sd))
  end
  local saved = sd.param_groups
  if #saved ~= #self.param_groups then
    fail("%s: the saved state has %d parameter groups, this optimizer has %d", where, #saved, #self.param_groups)
  end
  -- saved parameter id -> current parameter, by position (as PyTorch does)
  local param_of, new_groups = {}, {}
  for gi, group in ipairs(self.param_groups) do
    local sg = saved[gi]
    if type(sg) ~= "table" or type(sg.params) ~= "table" then
      fail("%s: saved parameter group %d has no params list", where, gi)
    end
    if #sg.params ~= #group.params then
      fail("%s: saved parameter group %d has %d parameters, this optimizer's has %d", where, gi, #sg.params,
        #group.params)
    end
    for j, id in ipairs(sg.params) do param_of[id] = group.params[j] end
    local g = {params = group.params}
    for k, v in pairs(sg) do
      if k ~= "params" then g[k] = copy_value(v) end
    end
    for k, v in pairs(self.defaults) do
      if g[k] == nil then g[k] = copy_value(v) end
    end
    self._spec.validate(where .. " (group " .. gi .. ")", g)
    new_groups[gi] = g
  end
  local new_state, state_keys = {}, self._spec.state_keys
  for id, s in pairs(sd.state) do
    local p = param_of[id] or param_of[tonumber(id)]
    if not p then fail("%s: state for parameter %s, which no saved group lists", where, tostring(id)) end
    if type(s) ~= "table" then fail("%s: state of parameter %s must be a table", where, tostring(id)) end
    local st = {}
    for k, v in pairs(s) do
      local kind = state_keys[k]
      if not kind then fail("%s: unknown state '%s' for parameter %s", where, tostring(k), tostring(id)) end
      if kind == "tensor" then
        if not dn.is_tensor(v) or v:dtype() ~= "float32" then
          fail("%s: state '%s' of parameter %s must be a float32 tensor (got %s)", where, k, tostring(id), describe(v))
        end
        local ps, vs = p:shape(), v:shape()
        local same = #ps == #vs
        for d = 1, #ps do same = same and ps[d] == vs[d] end
        if not same then
          fail("%s: state '%s' of parameter %s has shape [%s], the parameter has shape [%s]", where, k,
            tostring(id), table.concat(vs, ","), table.concat(ps, ","))
        end
        st[k] = v:clone()
      else
        st[k] = check.int(where, "state 'step' of parameter " .. tostring(id), v, 0)
      end
    end
    new_state[p] = st
  end
  for gi, g in ipairs(new_groups) do self.param_groups[gi] = g end
  self.state = new_state
end

function Optimizer:__tostring()
  local lines = {self.name .. " ("}
  for i, group in ipairs(self.param_groups) do
    lines[#lines + 1] = string.format("Parameter Group %d", i)
    local keys = {}
    for k in pairs(group) do
      if k ~= "params" then keys[#keys + 1] = k end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = group[k]
      if type(v) == "table" then v = "(" .. table.concat(v, ", ") .. ")" end
      lines[#lines + 1] = string.format("    %s: %s", k, tostring(v))
    end
  end
  lines[#lines + 1] = ")"
  return table.concat(lines, "\n")
end

local function zeros_like(p) return dn.zeros(p:shape()) end

-- --- SGD ---------------------------------------------------------------------------------

-- lr is known but has no default: every group must get one.
local SGD = {
  name = "SGD",
  known = {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"},
  defaults = {momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, maximize = false},
  state_keys = {momentum_buffer = "tensor"},
}

function SGD.validate(where, g)
  if g.lr == nil then fail("%s: lr is required (e.g. {lr = 0.1})", where) end
  check.nonneg(where, "lr", g.lr)
  check.nonneg(where, "momentum", g.momentum)
  if not is_finite(g.dampening) then
    fail("%s: dampening must be a finite number (got %s)", where, describe(g.dampening))
  end
  check.nonneg(where, "weight_decay", g.weight_decay)
  check.bool(where, "nesterov", g.nesterov)
  check.bool(where, "maximize", g.maximize)
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    fail("%s: Nesterov momentum requires a momentum > 0 and zero dampening (got momentum %s, dampening %s)", where,
      describe(g.momentum), describe(g.dampening))
  end
end

-- The first step with momentum starts the buffer at the gradient (PyTorch's rule).
function SGD.update(p, g, st, group)
  local buf, first = nil, false
  if group.momentum ~= 0 then
    buf = st.momentum_buffer
    if not buf then
      buf = zeros_like(p)
      first = true
    end
  end
  core.optim_sgd_step(p, g, buf, group, first)
  if first then st.momentum_buffer = buf end
end

--- optim.SGD(params, {lr = (required), momentum = 0, dampening = 0,
--- weight_decay = 0, nesterov = false, maximize = false})
function optim.SGD(params, options) return new_optimizer(SGD, params, options) end

-- --- Adam / AdamW ------------------------------------------------------------------------

local function adam_validate(where, g)
  check.nonneg(where, "lr", g.lr)
  check.nonneg(where, "eps", g.eps)
  check.nonneg(where, "weight_decay", g.weight_decay)
  check.bool(where, "maximize", g.maximize)
  local b = g.betas
  if type(b) ~= "table" or #b ~= 2 then fail("%s: betas must be a pair {beta1, beta2} (got %s)", where, describe(b)) end
  for i = 1, 2 do
    if not is_finite(b[i]) or b[i] < 0 or b[i] >= 1 then
      fail("%s: betas[%d] must be in [0, 1) (got %s)", where, i, describe(b[i]))
    end
  end
end

local function adam_spec(name, decoupled, weight_decay)
  local spec = {
    name = name,
    known = {"lr", "betas", "eps", "weight_decay", "maximize"},
    defaults = {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = weight_decay, maximize = false},
    state_keys = {step = "integer", exp_avg = "tensor", exp_avg_sq = "tensor"},
    validate = adam_validate,
  }
  function spec.options(group)
    return {lr = group.lr, beta1 = group.betas[1], beta2 = group.betas[2], eps = group.eps,
      weight_decay = group.weight_decay, maximize = group.maximize, decoupled_weight_decay = decoupled}
  end
  function spec.update(p, g, st, _, opts)
    if not st.exp_avg then
      st.step, st.exp_avg, st.exp_avg_sq = 0, zeros_like(p), zeros_like(p)
    end
    core.optim_adam_step(p, g, st.exp_avg, st.exp_avg_sq, st.step + 1, opts)
    st.step = st.step + 1
  end
  return spec
end

local ADAM, ADAMW = adam_spec("Adam", false, 0), adam_spec("AdamW", true, 1e-2)

--- optim.Adam(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, maximize = false})
--- (weight_decay adds wd * param to the gradient: L2 regularization)
function optim.Adam(params, options) return new_optimizer(ADAM, params, options) end

--- optim.AdamW(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 1e-2, maximize = false})
--- (decoupled decay: param *= 1 - lr * weight_decay before the Adam step)
function optim.AdamW(params, options) return new_optimizer(ADAMW, params, options) end

-- --- RMSprop -----------------------------------------------------------------------------

local RMSPROP = {
  name = "RMSprop",
  known = {"lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"},
  defaults = {lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0, centered = false, maximize = false},
  state_keys = {step = "integer", square_avg = "tensor", momentum_buffer = "tensor", grad_avg = "tensor"},
}

function RMSPROP.validate(where, g)
  for _, k in ipairs({"lr", "alpha", "eps", "weight_decay", "momentum"}) do check.nonneg(where, k, g[k]) end
  check.bool(where, "centered", g.centered)
  check.bool(where, "maximize", g.maximize)
end

function RMSPROP.update(p, g, st, group)
  if not st.square_avg then
    st.step, st.square_avg = 0, zeros_like(p)
  end
  if group.momentum > 0 and not st.momentum_buffer then st.momentum_buffer = zeros_like(p) end
  if group.centered and not st.grad_avg then st.grad_avg = zeros_like(p) end
  core.optim_rmsprop_step(p, g, st.square_avg, group.momentum > 0 and st.momentum_buffer or nil,
    group.centered and st.grad_avg or nil, group)
  st.step = st.step + 1
end

--- optim.RMSprop(params, {lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0,
--- centered = false, maximize = false})
function optim.RMSprop(params, options) return new_optimizer(RMSPROP, params, options) end

-- --- max-norm and gradient clipping ----------------------------------------------------

--- optim.max_norm_(weight, max_norm) -> weight: the max-norm constraint of
--- Srivastava et al. (2014). Each row of weight [out, in, ...] (one unit's
--- incoming weights) whose L2 norm exceeds max_norm is rescaled to it
--- (by max_norm / (norm + 1e-7), as torch.renorm); other rows are untouched.
--- Call it after opt:step().
function optim.max_norm_(weight, max_norm)
  if not dn.is_tensor(weight) then fail("max_norm_: weight must be a tensor (got %s)", describe(weight)) end
  check_limit("max_norm_", max_norm)
  return core.max_norm_(weight, max_norm)
end

-- The gradients of params (a tensor or a list of tensors), made contiguous in place.
local function grads_of(where, params)
  if dn.is_tensor(params) then params = {params} end
  if type(params) ~= "table" then fail("%s: params must be a list of tensors (got %s)", where, describe(params)) end
  local grads = {}
  for i, p in ipairs(params) do
    if not dn.is_tensor(p) then fail("%s: parameter %d is %s, a tensor expected", where, i, describe(p)) end
    local g = p.grad
    if g ~= nil then
      if not g:is_contiguous() then
        g = g:contiguous()
        p.grad = g
      end
      grads[#grads + 1] = g
    end
  end
  return grads
end

--- optim.clip_grad_norm_(params, max_norm) -> total_norm: scales the
--- gradients of params (those that have one) so that their norm, taken over
--- all of them together, is at most max_norm: by max_norm / (total + 1e-6)
--- when that is below 1 (PyTorch's clip_grad_norm_). Returns the norm before
--- clipping; a NaN or infinite norm is returned and nothing is scaled.
function optim.clip_grad_norm_(params, max_norm)
  check_limit("clip_grad_norm_", max_norm)
  return core.clip_grad_norm_(grads_of("clip_grad_norm_", params), max_norm)
end

--- optim.grad_norm(params) -> the L2 norm of all of params' gradients together.
function optim.grad_norm(params)
  return core.total_norm(grads_of("grad_norm", params))
end

-- --- schedules ------------------------------------------------------------------------------
--
-- A schedule sets a value of every parameter group (lr, or momentum) from a
-- closed form of its step count, like torch.optim.lr_scheduler: the value for
-- step 0 is set when the schedule is made, and each sched:step() (usually once
-- per epoch, after opt:step()) advances by one.

local Scheduler = {}
Scheduler.__index = Scheduler

-- A scheduler class: `config` lists its options as {name, default (nil:
-- required), check(where, key, v) -> v}; value(self, epoch, base) is the closed form.
local function scheduler_class(name, config, value, target)
  local class = setmetatable({name = name, _config = config, _value = value, _target = target or "lr"},
    {__index = Scheduler})
  class.__index = class
  return class
end

local function check_positive_int(where, key, v) return check.int(where, key, v, 1) end
local function check_fraction(where, key, v)
  if not is_finite(v) or v < 0 or v > 1 then fail("%s: %s must be in [0, 1] (got %s)", where, key, describe(v)) end
  return v
end

local function new_scheduler(class, opt, options)
  local where = class.name
  if getmetatable(opt) ~= Optimizer then fail("%s: an optimizer expected (got %s)", where, describe(opt)) end
  local known = {}
  for _, c in ipairs(class._config) do known[c[1]] = true end
  options = check.options(where, "options", options, known)
  local self = setmetatable({optimizer = opt, last_epoch = 0, base_lrs = {}}, class)
  for _, c in ipairs(class._config) do
    local key, default, check_value = c[1], c[2], c[3]
    local v = options[key]
    if v == nil then v = default end
    if v == nil then fail("%s: %s is required", where, key) end
    self[key] = check_value(where, key, v)
  end
  if class._init then class._init(self) end
  self:_apply()
  return self
end

-- Sets the target of every group for self.last_epoch.
function Scheduler:_apply()
  local last = {}
  for i, group in ipairs(self.optimizer.param_groups) do
    if self._target == "lr" and self.base_lrs[i] == nil then
      -- shared by every schedule of this optimizer, as torch's initial_lr
      if group.initial_lr == nil then group.initial_lr = group.lr end
      self.base_lrs[i] = group.initial_lr
    end
    local v = self:_value(self.last_epoch, self.base_lrs[i])
    if self._target == "lr" then
      group.lr = v
    elseif group.momentum ~= nil then
      group.momentum = v
    else
      group.betas[1] = v
    end
    last[i] = v
  end
  self._last_values = last
end

--- Advances the schedule by one step and updates the optimizer's groups.
function Scheduler:step()
  self.last_epoch = self.last_epoch + 1
  self:_apply()
end

--- The learning rate of each parameter group (a list): the values this
--- schedule set last (for MomentumRamp, the groups' current lr).
function Scheduler:get_last_lr()
  if self._target == "lr" then return copy_value(self._last_values) end
  local lrs = {}
  for i, group in ipairs(self.optimizer.param_groups) do lrs[i] = group.lr end
  return lrs
end

--- {last_epoch =, base_lrs =, last_values =, and the options}: a plain table.
function Scheduler:state_dict()
  local sd = {last_epoch = self.last_epoch, base_lrs = copy_value(self.base_lrs),
    last_values = copy_value(self._last_values)}
  for _, c in ipairs(self._config) do sd[c[1]] = self[c[1]] end
  return sd
end

--- Restores a state_dict (the optimizer's own state, lr included, comes from
--- the optimizer's load_state_dict, as in PyTorch).
function Scheduler:load_state_dict(sd)
  local where = self.name .. ":load_state_dict"
  if type(sd) ~= "table" then fail("%s: a table expected (got %s)", where, describe(sd)) end
  local last_epoch = check.int(where, "last_epoch", sd.last_epoch, 0)
  local groups = #self.optimizer.param_groups
  if type(sd.base_lrs) ~= "table" or (self._target == "lr" and #sd.base_lrs ~= groups) then
    fail("%s: base_lrs must list one value per parameter group (%d)", where, groups)
  end
  for i = 1, #sd.base_lrs do check.nonneg(where, "base_lrs[" .. i .. "]", sd.base_lrs[i]) end
  if type(sd.last_values) ~= "table" then fail("%s: last_values must be a list", where) end
  local values = {}
  for _, c in ipairs(self._config) do
    local key = c[1]
    if sd[key] ~= nil then values[key] = c[3](where, key, sd[key]) end
  end
  for k, v in pairs(values) do self[k] = v end
  self.last_epoch = last_epoch
  self.base_lrs = copy_value(sd.base_lrs)
  self._last_values = copy_value(sd.last_values)
end

local lr_scheduler = {}
optim.lr_scheduler = lr_scheduler

local STEP_LR = scheduler_class("StepLR", {{"step_size", nil, check_positive_int}, {"gamma", 0.1, check.nonneg}},
  function(self, epoch, base) return base * self.gamma ^ (epoch // self.step_size) end)

--- StepLR(opt, {step_size =, gamma = 0.1}): lr = base * gamma^floor(step / step_size).
function lr_scheduler.StepLR(opt, options) return new_scheduler(STEP_LR, opt, options) end

local EXPONENTIAL_LR = scheduler_class("ExponentialLR", {{"gamma", nil, check.nonneg}},
  function(self, epoch, base) return base * self.gamma ^ epoch end)

--- ExponentialLR(opt, {gamma =}): lr = base * gamma^step.
function lr_scheduler.ExponentialLR(opt, options) return new_scheduler(EXPONENTIAL_LR, opt, options) end

local COSINE_LR = scheduler_class("CosineAnnealingLR",
  {{"T_max", nil, check_positive_int}, {"eta_min", 0, check.nonneg}},
  function(self, epoch, base)
    return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
  end)

--- CosineAnnealingLR(opt, {T_max =, eta_min = 0}):
--- lr = eta_min + (base - eta_min) * (1 + cos(pi * step / T_max)) / 2.
function lr_scheduler.CosineAnnealingLR(opt, options) return new_scheduler(COSINE_LR, opt, options) end

local WARMUP_LR = scheduler_class("LinearWarmup",
  {{"warmup_steps", nil, check_positive_int}, {"start_factor", 1 / 3, check_fraction}},
  function(self, epoch, base)
    local t = math.min(epoch, self.warmup_steps) / self.warmup_steps
    return base * (self.start_factor + (1 - self.start_factor) * t)
  end)

--- LinearWarmup(opt, {warmup_steps =, start_factor = 1/3}): lr rises linearly
--- from start_factor * base to base over warmup_steps steps, then stays
--- (torch's LinearLR with end_factor 1).
function lr_scheduler.LinearWarmup(opt, options) return new_scheduler(WARMUP_LR, opt, options) end

local MOMENTUM_RAMP = scheduler_class("MomentumRamp",
  {{"from", 0.5, check.nonneg}, {"to", 0.99, check.nonneg}, {"steps", nil, check_positive_int}},
  function(self, epoch)
    return self.from + (self.to - self.from) * math.min(epoch, self.steps) / self.steps
  end, "momentum")

-- Every group must have a momentum (SGD, RMSprop) or betas (Adam: beta1 ramps).
function MOMENTUM_RAMP._init(self)
  for i, group in ipairs(self.optimizer.param_groups) do
    if group.momentum == nil then
      if type(group.betas) ~= "table" then
        fail("MomentumRamp: parameter group %d has neither momentum nor betas", i)
      end
      if self.from >= 1 or self.to >= 1 then
        fail("MomentumRamp: beta1 must stay below 1 (from %s, to %s)", describe(self.from), describe(self.to))
      end
    end
  end
end

--- The current momentum of each group (beta1 for Adam-style groups).
function MOMENTUM_RAMP:get_last_momentum() return copy_value(self._last_values) end

--- MomentumRamp(opt, {from = 0.5, to = 0.99, steps =}): the dropout paper's
--- recipe; momentum rises linearly from `from` to `to` over `steps` schedule
--- steps, then stays at `to`. Sets group.momentum (group.betas[1] for Adam).
function lr_scheduler.MomentumRamp(opt, options) return new_scheduler(MOMENTUM_RAMP, opt, options) end
optim.MomentumRamp = lr_scheduler.MomentumRamp

return optim
