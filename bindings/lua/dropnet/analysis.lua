--- dropnet.analysis: measurements of what dropout does to the gradients and
-- activations of a model, the project's question. Every statistic is a few
-- tensor ops in C; Lua only loops over masks, batches and parameters.
--
--   local analysis = require "dropnet.analysis"
--   local per, total = analysis.gradient_noise(model, nn.functional.cross_entropy, x, y,
--     {masks = 32, batches = loader})
--   print(per["1.weight"].snr, total.variance_ratio, total.direction_error)
--   print(analysis.coadaptation(hidden).mean_abs_correlation, analysis.activation_stats(hidden).sparsity)
local dn = require "dropnet"
local check = require "dropnet.check"

local fail, describe = check.fail, check.describe

local analysis = {}

-- --- the model's state, kept and put back ------------------------------------------------

-- What measuring changes: every module's mode, the buffers (batch norm's
-- running statistics move in a training-mode forward), the parameters'
-- gradients and the default generator (each mask draws from it).
local function save_state(model)
  local s = {modes = {}, buffers = {}, grads = {}, rng = dn.get_rng_state()}
  for _, m in ipairs(model:modules()) do s.modes[m] = {rawget(m, "mode"), rawget(m, "training")} end
  for _, nb in ipairs(model:named_buffers()) do s.buffers[#s.buffers + 1] = {nb[2], nb[2]:clone()} end
  for _, p in ipairs(model:parameters()) do s.grads[p] = p.grad or false end
  return s
end

local function restore_state(s)
  -- the modes as they were, module by module (a user may have set a
  -- sub-module's mode apart from its parent's), so not through _set_mode
  for m, mode in pairs(s.modes) do
    rawset(m, "mode", mode[1])
    rawset(m, "training", mode[2])
  end
  dn.no_grad(function()
    for _, b in ipairs(s.buffers) do b[1]:copy_(b[2]) end
  end)
  for p, g in pairs(s.grads) do p.grad = g or nil end
  dn.set_rng_state(s.rng)
end

-- Runs fn() with the model's state saved, and puts it back whether fn
-- returns or raises.
local function with_state_restored(model, fn)
  local s = save_state(model)
  local ok, a, b = pcall(fn)
  restore_state(s)
  if not ok then error(a, 0) end
  return a, b
end

-- --- gradients ---------------------------------------------------------------------------

-- The gradient of loss_fn(model(x), y) with respect to each of params (a
-- tensor of zeros for a parameter the loss does not reach).
local function gradients(where, model, loss_fn, x, y, params)
  for _, p in ipairs(params) do p.grad = nil end
  local loss = loss_fn(model(x), y)
  if not dn.is_tensor(loss) or loss:numel() ~= 1 then
    fail("%s: loss_fn must return a one-element tensor (got %s)", where, describe(loss))
  end
  loss:backward()
  local g = {}
  for i, p in ipairs(params) do
    g[i] = p.grad or dn.zeros(table.unpack(p:shape()))
    p.grad = nil
  end
  return g
end

local function dot(a, b) return (a * b):sum():item() end

-- acc[i] += n * g[i] for a list of tensors (acc[i] made at the first call).
local function add_scaled(acc, g, n)
  for i, gi in ipairs(g) do
    if acc[i] then acc[i]:add_(gi * n) else acc[i] = gi * n end
  end
end

-- Running mean and sum of squared deviations of vectors (Welford's update:
-- no cancellation when the deviations are small against the mean).
local function welford_add(acc, k, g)
  for i, gi in ipairs(g) do
    if k == 1 then
      acc.mean[i] = gi:clone()
      acc.m2[i] = 0
    else
      local delta = gi - acc.mean[i]
      acc.mean[i]:add_(delta / k)
      acc.m2[i] = acc.m2[i] + dot(delta, gi - acc.mean[i])
    end
  end
end

-- The batches option as a list of {x, y}: a DataLoader (anything with
-- :iter()) or a Lua list of {x, y} pairs.
local function batch_list(where, batches)
  local list = {}
  if type(batches) == "table" and type(batches.iter) == "function" then
    for bx, by in batches:iter() do list[#list + 1] = {bx, by} end
  elseif type(batches) == "table" then
    for i, b in ipairs(batches) do
      if type(b) ~= "table" or not dn.is_tensor(b[1]) then
        fail("%s: batches[%d] must be a pair {x, y} with x a tensor (got %s)", where, i, describe(b))
      end
      list[i] = b
    end
  else
    fail("%s: batches must be a DataLoader or a list of {x, y} pairs (got %s)", where, describe(batches))
  end
  if #list < 2 then
    fail("%s: batches must give at least 2 batches for a variance across minibatches (got %d)", where, #list)
  end
  return list
end

local function check_model_and_loss(where, model, loss_fn)
  local nn = require "dropnet.nn"
  if not nn.is_module(model) then fail("%s: model must be a module (got %s)", where, describe(model)) end
  if type(loss_fn) ~= "function" and not (getmetatable(loss_fn) or {}).__call then
    fail("%s: loss_fn must be a function (got %s)", where, describe(loss_fn))
  end
end

--- Gradient noise of a model on one batch: the gradient's spread over
-- dropout masks, and (with `batches`) over minibatches without dropout.
-- See docs/lua-api.md for the definitions; the model's modes, buffers,
-- gradients and the default generator are as before when it returns.
-- @param model a Module
-- @tparam function loss_fn loss_fn(output, y) -> a one-element tensor
-- @param x, y the batch (y is passed to loss_fn as it is)
-- @tparam[opt] table options `masks` (K >= 2, default 16), `batches` (a DataLoader or a list of {x, y})
-- @treturn table per named parameter: norm, mask_variance, snr, and with batches batch_variance,
--   variance_ratio, cosine, direction_error
-- @treturn table the same over all parameters together
function analysis.gradient_noise(model, loss_fn, x, y, options)
  local where = "analysis.gradient_noise"
  check_model_and_loss(where, model, loss_fn)
  if not dn.is_tensor(x) then fail("%s: x must be a tensor (got %s)", where, describe(x)) end
  options = check.options(where, "options", options, {"masks", "batches"})
  local masks = options.masks == nil and 16 or check.int(where, "masks", options.masks, 2)
  local batches = options.batches ~= nil and batch_list(where, options.batches) or nil

  local names, params = {}, {}
  for _, np in ipairs(model:named_parameters()) do
    if np[2].requires_grad then
      names[#names + 1], params[#params + 1] = np[1], np[2]
    end
  end
  if #params == 0 then fail("%s: the model has no parameter that requires grad", where) end

  return with_state_restored(model, function()
    -- without dropout, over minibatches: their spread and the full-data gradient
    local full, over_batches
    if batches then
      model:eval()
      over_batches = {mean = {}, m2 = {}}
      full = {}
      local rows = 0
      for k, b in ipairs(batches) do
        local g = gradients(where, model, loss_fn, b[1], b[2], params)
        welford_add(over_batches, k, g)
        local n = b[1]:shape()[1] or 1   -- a loss averaged over the batch: weight by its rows
        add_scaled(full, g, n)
        rows = rows + n
      end
      for i = 1, #full do full[i]:div_(rows) end
    end

    -- with dropout, one batch, K masks
    model:train()
    local over_masks = {mean = {}, m2 = {}}
    local cos_sum, cos_total_sum = {}, 0
    local full_sq = {}
    if full then for i, f in ipairs(full) do full_sq[i] = dot(f, f) end end
    for k = 1, masks do
      local g = gradients(where, model, loss_fn, x, y, params)
      welford_add(over_masks, k, g)
      if full then
        local d_all, g_all, f_all = 0, 0, 0
        for i, gi in ipairs(g) do
          local d, gg = dot(gi, full[i]), dot(gi, gi)
          cos_sum[i] = (cos_sum[i] or 0) + d / math.sqrt(gg * full_sq[i])
          d_all, g_all, f_all = d_all + d, g_all + gg, f_all + full_sq[i]
        end
        cos_total_sum = cos_total_sum + d_all / math.sqrt(g_all * f_all)
      end
    end

    local per, total = {}, {norm = 0, mask_variance = 0}
    local bv_total = 0
    for i, name in ipairs(names) do
      local m = over_masks.mean[i]
      local r = {mask_variance = over_masks.m2[i] / (masks - 1)}
      -- ||mean||^2 overestimates ||E g||^2 by the variance of the mean,
      -- mask_variance / K: subtract it (an unbiased estimate; 0 if negative)
      local sq = math.max(0, dot(m, m) - r.mask_variance / masks)
      r.norm = math.sqrt(sq)
      r.snr = sq / r.mask_variance
      total.norm = total.norm + sq
      total.mask_variance = total.mask_variance + r.mask_variance
      if batches then
        r.batch_variance = over_batches.m2[i] / (#batches - 1)
        r.variance_ratio = r.mask_variance / r.batch_variance
        r.cosine = cos_sum[i] / masks
        r.direction_error = 1 - r.cosine
        bv_total = bv_total + r.batch_variance
      end
      per[name] = r
    end
    total.snr = total.norm / total.mask_variance
    total.norm = math.sqrt(total.norm)
    if batches then
      total.batch_variance = bv_total
      total.variance_ratio = total.mask_variance / bv_total
      total.cosine = cos_total_sum / masks
      total.direction_error = 1 - total.cosine
    end
    return per, total
  end)
end

-- Cosine of two gradients given as lists of tensors (all parameters as one vector).
local function list_cosine(a, b)
  local ab, aa, bb = 0, 0, 0
  for i = 1, #a do
    ab, aa, bb = ab + dot(a[i], b[i]), aa + dot(a[i], a[i]), bb + dot(b[i], b[i])
  end
  return ab / math.sqrt(aa * bb)
end

--- How much the direction of the gradient moves between minibatches under
-- dropout, and how far it is from the full-data gradient without dropout
-- (Liu et al. 2023, "Dropout reduces underfitting"): the gradient g_b of each
-- batch in training mode (each batch its own masks), and h, the gradient over
-- `opts.full` (default: the same batches) in eval mode, rows weighted.
-- @treturn table {direction_variance = mean over pairs of 1 - cos(g_b, g_c),
--   direction_error = mean over b of 1 - cos(g_b, h), batches = B}
function analysis.gradient_direction(model, loss_fn, batches, options)
  local where = "analysis.gradient_direction"
  check_model_and_loss(where, model, loss_fn)
  local list = batch_list(where, batches)
  options = check.options(where, "options", options, {"full"})
  local full_list = options.full ~= nil and batch_list(where, options.full) or list
  local params = {}
  for _, p in ipairs(model:parameters()) do if p.requires_grad then params[#params + 1] = p end end
  if #params == 0 then fail("%s: the model has no parameter that requires grad", where) end

  return with_state_restored(model, function()
    model:eval()
    local full, rows = {}, 0
    for _, b in ipairs(full_list) do
      local g = gradients(where, model, loss_fn, b[1], b[2], params)
      local n = b[1]:shape()[1] or 1
      add_scaled(full, g, n)
      rows = rows + n
    end
    for i = 1, #full do full[i]:div_(rows) end
    model:train()
    local grads, err = {}, 0
    for k, b in ipairs(list) do
      grads[k] = gradients(where, model, loss_fn, b[1], b[2], params)
      err = err + (1 - list_cosine(grads[k], full))
    end
    local pairs_sum, pairs_n = 0, 0
    for a = 1, #grads do
      for b = a + 1, #grads do
        pairs_sum, pairs_n = pairs_sum + (1 - list_cosine(grads[a], grads[b])), pairs_n + 1
      end
    end
    return {direction_variance = pairs_sum / pairs_n, direction_error = err / #grads, batches = #grads}
  end)
end

-- --- activations -------------------------------------------------------------------------

-- h as a [N, units] matrix without its graph (more dims are the units).
local function unit_matrix(where, h)
  if not dn.is_tensor(h) or h:dtype() ~= "float32" then
    fail("%s: activations must be a float32 tensor (got %s)", where, describe(h))
  end
  if h:dim() < 2 or h:numel() == 0 then
    fail("%s: activations must be [N, units...] with N >= 1 and units >= 1 (got %d dims, %d elements)", where,
      h:dim(), h:numel())
  end
  local n = h:shape()[1]
  return h:detach():reshape(n, h:numel() // n), n
end

--- Co-adaptation of hidden units: the mean absolute Pearson correlation
-- between the activations of every pair of units over the batch (Srivastava
-- et al. 2014 argue dropout lowers it). Units constant over the batch have
-- no correlation and are left out.
-- @tparam Tensor h activations [N, units...] (N >= 2)
-- @treturn table {mean_abs_correlation, units (used), constant (left out)}
function analysis.coadaptation(h)
  local where = "analysis.coadaptation"
  local z, n = unit_matrix(where, h)
  if n < 2 then fail("%s: need at least 2 samples for a correlation (got 1)", where) end
  local units = z:shape()[2]
  local c = z - z:mean(1, true)
  local sd = (c * c):mean(1, true):sqrt()
  local varies = sd:gt(0)                       -- 1 for a unit that varies, else 0
  local m = varies:sum():item()
  if m < 2 then
    return {mean_abs_correlation = 0 / 0, units = m, constant = units - m}
  end
  -- standardized columns; a constant unit's column is 0 (divided by 1)
  local zs = c:div(sd + (1 - varies)):mul(varies)
  local corr = zs:t():matmul(zs):div(n)         -- [units, units], diagonal 1 for a varying unit
  local diagonal = (zs * zs):sum():item() / n
  local off = corr:abs():sum():item() - diagonal
  return {mean_abs_correlation = off / (m * (m - 1)), units = m, constant = units - m}
end

--- Sparsity of activations (Srivastava et al. 2014, figure 8: with dropout
-- the mean activation of an autoencoder's ReLU units fell from ~2.0 to ~0.7
-- and most units were zero most of the time).
-- @tparam Tensor h activations [N, units...]
-- @tparam[opt] table options `threshold` (an activation <= threshold counts as inactive; default 0)
-- @treturn table {mean (activation), sparsity (fraction of activations inactive), dead (fraction of
--   units inactive on every sample), active_per_sample (mean fraction of units active)}
function analysis.activation_stats(h, options)
  local where = "analysis.activation_stats"
  local z = unit_matrix(where, h)
  options = check.options(where, "options", options, {"threshold"})
  local threshold = options.threshold == nil and 0 or options.threshold
  if not check.is_finite(threshold) then
    fail("%s: threshold must be a finite number (got %s)", where, describe(threshold))
  end
  local active = z:gt(threshold)                -- 1 where active
  local sparsity = 1 - active:mean():item()
  local dead = 1 - active:max(1):mean():item()  -- a unit whose column has no 1
  return {mean = z:mean():item(), sparsity = sparsity, dead = dead, active_per_sample = 1 - sparsity}
end

-- --- tracking a training run ------------------------------------------------------------------

local Tracker = {}
Tracker.__index = Tracker

local TRACK_COLUMNS = {"step", "layer", "weight_grad_norm", "output_grad_norm", "update_ratio", "active_fraction",
  "dead_fraction"}

--- Watches the layers of a model during training: every `every` steps,
-- per layer, the gradient norm of its weight, the norm of the gradient
-- reaching its output (the backward signal), the update/weight ratio
-- ||W_after - W_before|| / ||W_before||, the fraction of its outputs above 0
-- (what a following ReLU lets through) and the fraction of dead units
-- (never above 0 over the batch). Hooks are set only for the sampled steps
-- (a step in between runs as if untracked). Call tracker:step() once per
-- training step, after the optimizer's step; tracker:close() at the end.
-- @param model a Module
-- @tparam[opt] table options `every` (steps between samples, default 100), `out` (a directory: track.csv
--   is written as it goes and track.svg at close; nil: nothing written), `layers` (a list of modules;
--   default: every module with a weight of 2 or more dims)
function analysis.track(model, options)
  local where = "analysis.track"
  local nn = require "dropnet.nn"
  if not nn.is_module(model) then fail("%s: model must be a module (got %s)", where, describe(model)) end
  options = check.options(where, "options", options, {"every", "out", "layers"})
  local every = options.every == nil and 100 or check.int(where, "every", options.every, 1)
  if options.out ~= nil and type(options.out) ~= "string" then
    fail("%s: out must be a directory name (got %s)", where, describe(options.out))
  end
  local names = {}
  for _, nm in ipairs(model:named_modules()) do names[nm[2]] = nm[1] == "" and "model" or nm[1] end
  local layers = {}
  if options.layers ~= nil then
    if type(options.layers) ~= "table" then fail("%s: layers must be a list of modules", where) end
    for i, m in ipairs(options.layers) do
      if not nn.is_module(m) or not names[m] then
        fail("%s: layers[%d] must be a module of the model (got %s)", where, i, describe(m))
      end
      if not (dn.is_tensor(rawget(m, "_parameters").weight)) then
        fail("%s: layers[%d] (%s) has no weight to track", where, i, names[m])
      end
      layers[#layers + 1] = {name = names[m], module = m}
    end
  else
    for _, nm in ipairs(model:named_modules()) do
      local w = rawget(nm[2], "_parameters").weight
      if dn.is_tensor(w) and w:dim() >= 2 then layers[#layers + 1] = {name = names[nm[2]], module = nm[2]} end
    end
  end
  if #layers == 0 then fail("%s: the model has no layer with a weight to track", where) end
  local self = setmetatable({model = model, every = every, layers = layers, steps = 0, records = {},
    handles = {}, captured = {}, out = options.out}, Tracker)
  if self.out then
    local run = require "dropnet.run"
    self.out = run.directory(self.out)
    self.csv = run.csv(self.out .. "/track.csv", TRACK_COLUMNS)
  end
  self:_arm()
  return self
end

-- Sets the forward hooks that capture the next training step.
function Tracker:_arm()
  for _, layer in ipairs(self.layers) do
    local m = layer.module
    self.handles[#self.handles + 1] = m:register_forward_hook(function(_, _, output)
      -- an evaluation pass between steps is not a training step; only a step's first call counts
      if not m.training or self.captured[layer] or not dn.is_tensor(output) then return end
      local rec = {weight_before = dn.no_grad(function() return m.weight:clone() end)}
      dn.no_grad(function()
        local n = output:shape()[1] or 1
        local on = output:detach():reshape(n, output:numel() // math.max(n, 1)):gt(0)
        rec.active_fraction = on:mean():item()
        -- a unit: a feature of [N, F], a channel of [N, C, ...]
        local units = output:dim() >= 2 and output:shape()[2] or 1
        local per_unit = on:reshape(n, units, on:numel() // math.max(n * units, 1))
        rec.dead_fraction = 1 - per_unit:max(3):max(1):mean():item()
      end)
      if output.requires_grad then
        output:register_hook(function(g)
          rec.output_grad_norm = g:norm():item()
        end)
      end
      self.captured[layer] = rec
    end)
  end
end

function Tracker:_disarm()
  for _, h in ipairs(self.handles) do h:remove() end
  self.handles, self.captured = {}, {}
end

--- Ends a training step: on a sampled step, records each layer (after the
-- optimizer's step, so the update is known) and removes the hooks.
function Tracker:step()
  if #self.handles > 0 then
    for _, layer in ipairs(self.layers) do
      local rec = self.captured[layer]
      if rec then
        local m = layer.module
        local w, g = m.weight, m.weight.grad
        local row = {step = self.steps + 1, layer = layer.name, weight_grad_norm = g and g:norm():item() or 0 / 0,
          output_grad_norm = rec.output_grad_norm or 0 / 0, active_fraction = rec.active_fraction,
          dead_fraction = rec.dead_fraction}
        local before = rec.weight_before:norm():item()
        row.update_ratio = dn.no_grad(function() return (w - rec.weight_before):norm():item() end) / before
        self.records[#self.records + 1] = row
        if self.csv then self.csv:add(row) end
      end
    end
    self:_disarm()
  end
  self.steps = self.steps + 1
  if self.steps % self.every == 0 then self:_arm() end
end

--- The records so far: a list of {step, layer, weight_grad_norm, output_grad_norm, update_ratio,
-- active_fraction, dead_fraction}.
function Tracker:rows()
  local copy = {}
  for i, r in ipairs(self.records) do copy[i] = r end
  return copy
end

--- Removes the hooks and, with `out`, draws track.svg: one panel per
-- statistic, a line per layer against the step. Returns the records.
function Tracker:close()
  self:_disarm()
  if self.out and #self.records > 0 then
    local plot = require "dropnet.plot"
    local panels = {}
    local specs = {{"weight_grad_norm", "weight gradient norm", true}, {"output_grad_norm",
      "gradient norm at the output", true}, {"update_ratio", "update / weight", true},
      {"active_fraction", "active fraction", false}, {"dead_fraction", "dead units", false}}
    for _, spec in ipairs(specs) do
      local series = {}
      for _, layer in ipairs(self.layers) do
        local xs, ys = {}, {}
        for _, r in ipairs(self.records) do
          if r.layer == layer.name then xs[#xs + 1], ys[#ys + 1] = r.step, r[spec[1]] end
        end
        series[#series + 1] = {name = "layer " .. layer.name, x = xs, y = ys}
      end
      panels[#panels + 1] = {title = spec[2], x_label = "step", series = series, log_y = spec[3]}
    end
    plot.save(self.out .. "/track.svg", plot.panels(panels, {columns = 3, title = "Layers during training"}))
  end
  return self:rows()
end

return analysis
