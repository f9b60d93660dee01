--[[
dropnet.nn.dropout: the dropout family as modules, and MC dropout.

  nn.Dropout(p = 0.5[, {scale = "inverted" | "test", generator = g}])
  nn.Dropout1d / Dropout2d / Dropout3d(p[, opts])   whole channels of [N,C,L] / [N,C,H,W] / [N,C,D,H,W]
  nn.LockedDropout(p[, opts])                       one mask per sequence, reused over T of [T,N,F]
  nn.AlphaDropout(p[, {generator = g}])             keeps SELU's mean and variance
  nn.GaussianDropout(p[, {generator = g}])          multiplicative N(1, p/(1-p)) noise, p < 1
  nn.DropConnect(linear, p[, {generator = g}])      drops the weights of an nn.Linear
  nn.DropBlock2d(p, block_size[, {generator = g}])  zeroes whole blocks of [N,C,H,W] / [C,H,W] maps
  nn.DropBlockSchedule(modules, {start, stop, steps}) ramps the DropBlock2d modules' p linearly
  nn.mc_predict(model, x, T[, {generator = g}])     predictive mean and variance over T MC passes

Every module draws only in training and MC mode (Module:is_stochastic());
in eval, and whenever p is 0, it returns its input itself without drawing.
`p` is a public field that may change between steps (schedules): it is
checked at every forward. Masks come from the module's own generator when
it has one ({generator = dn.Generator(seed)}), else from the global default
generator (dn.manual_seed seeds it). The kernels keep no mask between
forward and backward: backward regenerates it from the generator's counter.

scale = "inverted" (default) scales kept values by 1/(1-p) in training and is
the identity in eval; scale = "test" is the convention of Srivastava et al.
(2014): kept values unscaled in training, everything multiplied by 1-p in eval.
--]]
local dn = require "dropnet"
local base = require "dropnet.nn.module"
local layers = require "dropnet.nn.layers"
local F = require "dropnet.nn.functional"
local check = require "dropnet.check"
local U = require "dropnet.nn.util"

local Module = base.Module

local function check_p(p, where, below_one) return check.probability(where, "p", p, below_one) end

local M = {}

-- A module class that draws random numbers from self.generator (nil: the
-- default generator). mc_predict's generator option relies on this mark.
local function random_class(name)
  local cls = Module:extend(name)
  cls.uses_generator = true
  M[name] = cls
  return cls
end

-- p (default 0.5) and the options of a constructor; sets self.p, self.scale
-- (when scaled) and self.generator.
local function setup(self, p, opts, scaled, below_one)
  local name = self.__name
  if p == nil then p = 0.5 end
  self.p = check_p(p, name, below_one)
  opts = check.options(name, "options", opts, scaled and {"scale", "generator"} or {"generator"})
  if scaled then self.scale = check.choice(name, "scale", opts.scale or "inverted", {"inverted", "test"}) end
  self.generator = check.generator(name, opts.generator)
end

local function scaled_repr(self)
  local s = "p=" .. U.fmt(self.p)
  if self.scale ~= "inverted" then s = s .. string.format(", scale=%q", self.scale) end
  return s
end

local function p_repr(self) return "p=" .. U.fmt(self.p) end

local TEST_SCALE = {scale = "test"}

-- forward of a scaled variant, fn one of F.dropout, F.dropout1d, ...:
-- fn(x, p, true, {scale, generator}) when stochastic and p > 0; otherwise x
-- itself or, for scale = "test" in eval, fn's eval transform x * (1-p).
local function scaled_forward(self, x, fn)
  local p = check_p(self.p, self.__name)
  if p == 0 then return x end
  if self:is_stochastic() then return fn(x, p, true, {scale = self.scale, generator = self.generator}) end
  if self.scale == "test" then return fn(x, p, false, TEST_SCALE) end
  return x
end

-- --- Dropout ------------------------------------------------------------------------

local Dropout = random_class("Dropout")

--- nn.Dropout([p = 0.5[, {scale = "inverted" | "test", generator = g}]])
function Dropout:init(p, opts) setup(self, p, opts, true) end

function Dropout:forward(x)
  return scaled_forward(self, check.tensor(self.__name, x), F.dropout)
end

Dropout.extra_repr = scaled_repr

-- --- channel dropout ------------------------------------------------------------------

-- Dropout1d/2d/3d: one decision per (n, c) zeroes the whole channel.
local function channel_class(name, ndim, layout, fn)
  local cls = random_class(name)
  cls.init = function(self, p, opts) setup(self, p, opts, true) end
  cls.forward = function(self, x)
    return scaled_forward(self, check.input(self.__name, x, ndim, layout), fn)
  end
  cls.extra_repr = scaled_repr
  return cls
end

channel_class("Dropout1d", 3, "[N, C, L]", F.dropout1d)
channel_class("Dropout2d", 4, "[N, C, H, W]", F.dropout2d)
channel_class("Dropout3d", 5, "[N, C, D, H, W]", F.dropout3d)

-- --- LockedDropout ------------------------------------------------------------------

local LockedDropout = random_class("LockedDropout")

--- nn.LockedDropout([p = 0.5[, opts]]): variational dropout on [T, N, F]:
-- one mask per (n, f), the same at every time step. Options as Dropout.
function LockedDropout:init(p, opts) setup(self, p, opts, true) end

function LockedDropout:forward(x)
  return scaled_forward(self, check.input(self.__name, x, 3, "[T, N, F]"), F.locked_dropout)
end

LockedDropout.extra_repr = scaled_repr

-- --- AlphaDropout, GaussianDropout ---------------------------------------------------

-- Unscaled variants: fn(x, p, true, {generator}) when stochastic and p > 0, else x.
local function unscaled_class(name, fn, below_one)
  local cls = random_class(name)
  cls.init = function(self, p, opts) setup(self, p, opts, false, below_one) end
  cls.forward = function(self, x)
    check.tensor(self.__name, x)
    local p = check_p(self.p, self.__name, below_one)
    if p == 0 or not self:is_stochastic() then return x end
    return fn(x, p, true, {generator = self.generator})
  end
  cls.extra_repr = p_repr
  return cls
end

--- nn.AlphaDropout([p = 0.5[, {generator = g}]]): dropped units take SELU's
-- negative saturation value, then an affine map restores zero mean and unit
-- variance (Klambauer et al. 2017).
unscaled_class("AlphaDropout", F.alpha_dropout)
--- nn.GaussianDropout([p = 0.5[, {generator = g}]]): x * N(1, p/(1-p)), p < 1.
unscaled_class("GaussianDropout", F.gaussian_dropout, true)

-- --- DropConnect ---------------------------------------------------------------------

local DropConnect = random_class("DropConnect")

--- nn.DropConnect(linear, [p = 0.5[, {generator = g}]]): the nn.Linear
-- `linear` with each weight dropped with probability p (and the kept ones
-- scaled by 1/(1-p)) at every forward in training and MC mode; the plain
-- layer in eval. Its parameters are the wrapped layer's (child "linear").
-- Same as nn.Linear(in, out, {dropconnect = p}).
function DropConnect:init(linear, p, opts)
  if not base.isinstance(linear, layers.Linear) then
    check.fail("DropConnect: an nn.Linear expected (got %s)", check.describe(linear))
  end
  if linear.dropconnect ~= nil then
    check.error("DropConnect: the Linear already drops its weights (dropconnect = " .. U.fmt(linear.dropconnect) .. ")")
  end
  self.linear = linear
  setup(self, p, opts, false)
end

function DropConnect:forward(x)
  local linear = self.linear
  local p = check_p(self.p, self.__name)
  return F.dropconnect_linear(x, linear.weight, linear.bias, p, self:is_stochastic(),
    {generator = self.generator, activation = linear.activation})
end

DropConnect.extra_repr = p_repr

-- --- DropBlock --------------------------------------------------------------------------

local DropBlock2d = random_class("DropBlock2d")
local GENERATOR_ONLY = {"generator"}

--- nn.DropBlock2d(p, block_size[, {generator = g}]): DropBlock (Ghiasi et al.
-- 2018) on [N, C, H, W] or [C, H, W]: in training and MC mode, whole
-- block_size x block_size blocks of each feature map are zeroed (see
-- F.dropblock2d) and the rest scaled by numel / kept. `p` and `block_size`
-- are public fields, checked at every forward (DropBlockSchedule sets p).
function DropBlock2d:init(p, block_size, opts)
  local name = self.__name
  self.p = check_p(p, name)
  self.block_size = check.int(name, "block_size", block_size, 1)
  opts = check.options(name, "options", opts, GENERATOR_ONLY)
  self.generator = check.generator(name, opts.generator)
end

-- The input and block size are checked in every mode, so a layer that does
-- not fit its input fails in eval as well.
function DropBlock2d:forward(x)
  local name = self.__name
  local p = check_p(self.p, name)
  local block_size = F._dropblock_input(name, x, self.block_size)
  if p == 0 or not self:is_stochastic() then return x end
  return F.dropblock2d(x, p, block_size, true, {generator = self.generator})
end

function DropBlock2d:extra_repr() return p_repr(self) .. ", block_size=" .. U.fmt(self.block_size) end

-- A schedule of p: a plain object (not a module), like optim's schedules.
local DropBlockSchedule = {}
DropBlockSchedule.__index = DropBlockSchedule
DropBlockSchedule.__name = "DropBlockSchedule"

local SCHEDULE_OPTIONS = {"start", "stop", "steps"}

-- The DropBlock2d modules of `modules` (one module or a list; each searched
-- with its descendants), each once, in model order.
local function dropblock_modules(where, modules)
  local list = base.is_module(modules) and {modules} or modules
  if type(list) ~= "table" or getmetatable(list) ~= nil then
    check.fail("%s: a module or a list of modules expected (got %s)", where, check.describe(modules))
  end
  local found, seen = {}, {}
  for i, m in ipairs(list) do
    if not base.is_module(m) then
      check.fail("%s: modules[%d] must be a module (got %s)", where, i, check.describe(m))
    end
    for _, sub in ipairs(m:modules()) do
      if base.isinstance(sub, DropBlock2d) and not seen[sub] then
        seen[sub] = true
        found[#found + 1] = sub
      end
    end
  end
  if #found == 0 then check.fail("%s: no nn.DropBlock2d among the modules given", where) end
  return found
end

-- start, stop and steps checked (stop and steps required), as a table.
local function schedule_values(where, t)
  if t.stop == nil then check.fail("%s: stop is required", where) end
  if t.steps == nil then check.fail("%s: steps is required", where) end
  return {start = check.probability(where, "start", t.start == nil and 0 or t.start),
    stop = check.probability(where, "stop", t.stop), steps = check.int(where, "steps", t.steps, 1)}
end

--[[
nn.DropBlockSchedule(modules, {start = 0, stop =, steps =}) -> schedule

The linear schedule of the DropBlock paper: p goes from `start` to `stop`
over `steps` calls of schedule:step(), then stays at `stop`. `modules` is
one module or a list: every nn.DropBlock2d among them and their descendants
is driven. The value for step 0 is set when the schedule is made (as optim's
schedules do); state_dict() / load_state_dict() for checkpoints.
--]]
function M.DropBlockSchedule(modules, opts)
  local where = "DropBlockSchedule"
  local targets = dropblock_modules(where, modules)
  local values = schedule_values(where, check.options(where, "options", opts, SCHEDULE_OPTIONS))
  local self = setmetatable({modules = targets, start = values.start, stop = values.stop, steps = values.steps,
    last_step = 0}, DropBlockSchedule)
  self:_apply()
  return self
end

--- The p of step `step` (default: the current one): start + (stop - start) *
--- min(step, steps) / steps, exactly `stop` from `steps` on.
function DropBlockSchedule:get_p(step)
  step = step == nil and self.last_step or check.int("DropBlockSchedule:get_p", "step", step, 0)
  if step >= self.steps then return self.stop end
  local p = self.start + (self.stop - self.start) * step / self.steps
  -- rounding must not leave [start, stop]: p is checked as a probability at every forward
  return math.max(math.min(p, math.max(self.start, self.stop)), math.min(self.start, self.stop))
end

function DropBlockSchedule:_apply()
  local p = self:get_p()
  for _, m in ipairs(self.modules) do m.p = p end
end

--- Advances by one step and sets every module's p. Returns the new p.
function DropBlockSchedule:step()
  self.last_step = self.last_step + 1
  self:_apply()
  return self:get_p()
end

--- {last_step =, start =, stop =, steps =}: a plain table (checkpoint.save stores it).
function DropBlockSchedule:state_dict()
  return {last_step = self.last_step, start = self.start, stop = self.stop, steps = self.steps}
end

--- Restores a state_dict() and sets the modules' p for its step.
function DropBlockSchedule:load_state_dict(sd)
  local where = "DropBlockSchedule:load_state_dict"
  if type(sd) ~= "table" then check.fail("%s: a table expected (got %s)", where, check.describe(sd)) end
  local last_step = check.int(where, "last_step", sd.last_step, 0)
  local values = schedule_values(where, sd)
  self.start, self.stop, self.steps, self.last_step = values.start, values.stop, values.steps, last_step
  self:_apply()
end

-- --- MC dropout ----------------------------------------------------------------------

-- Every module's mode and training flag, to be put back exactly (a model may
-- mix modes, e.g. eval with one layer in training).
local function save_modes(model)
  local saved = {}
  for i, m in ipairs(model:modules()) do saved[i] = {m, rawget(m, "mode"), rawget(m, "training")} end
  return saved
end

local function restore_modes(saved)
  for _, s in ipairs(saved) do
    rawset(s[1], "mode", s[2])
    rawset(s[1], "training", s[3])
  end
end

-- Lends generator g to every random module of the model without its own;
-- returns the modules to give it back to.
local function lend_generator(model, g)
  local borrowers = {}
  if g == nil then return borrowers end
  for _, m in ipairs(model:modules()) do
    if m.uses_generator and m.generator == nil then
      m.generator = g
      borrowers[#borrowers + 1] = m
    end
  end
  return borrowers
end

--[[
nn.mc_predict(model, x, T[, {generator = g}]) -> mean, variance

Monte Carlo dropout (Gal & Ghahramani 2016): T forward passes of x in MC
mode (dropout random, everything else as in eval) without recording a graph,
returning the predictive mean and the population variance (divided by T) of
the outputs, element-wise. Accumulated with Welford's update in tensor ops
(numerically stable; no sample is kept). The model's modes are restored
afterwards, also when a pass raises. generator draws the masks of every
random layer that has no generator of its own (default: those layers use
the global generator).
--]]
function M.mc_predict(model, x, T, opts)
  if not base.is_module(model) then
    check.fail("mc_predict: a module expected (got %s)", check.describe(model))
  end
  T = check.int("mc_predict", "T", T, 1)
  opts = check.options("mc_predict", "options", opts, {"generator"})
  check.generator("mc_predict", opts.generator)
  local saved = save_modes(model)
  local borrowers = lend_generator(model, opts.generator)
  local function passes()
    local mean, m2
    for t = 1, T do
      local y = model(x)
      if not dn.is_tensor(y) then
        check.fail("mc_predict: the model must return a tensor (got %s)", check.describe(y))
      end
      if t == 1 then
        mean, m2 = y:clone(), dn.zeros(y:shape())
      else
        local delta = y - mean
        mean:add_(delta / t)
        m2:add_(delta * (y - mean))
      end
    end
    return mean, m2:div_(T)
  end
  model:mc()
  local ok, mean, var = pcall(dn.no_grad, passes)
  restore_modes(saved)
  for _, m in ipairs(borrowers) do m.generator = nil end
  if not ok then error(mean, 0) end
  return mean, var
end

return M
