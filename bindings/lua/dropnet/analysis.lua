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
  local nn = require "dropnet.nn"
  if not nn.is_module(model) then fail("%s: model must be a module (got %s)", where, describe(model)) end
  if type(loss_fn) ~= "function" and not (getmetatable(loss_fn) or {}).__call then
    fail("%s: loss_fn must be a function (got %s)", where, describe(loss_fn))
  end
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
        for i, gi in ipairs(g) do
          if k == 1 then full[i] = gi * n else full[i]:add_(gi * n) end
        end
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
  local nn = require "dropnet.nn"
  if not nn.is_module(model) then fail("%s: model must be a module (got %s)", where, describe(model)) end
  if type(loss_fn) ~= "function" and not (getmetatable(loss_fn) or {}).__call then
    fail("%s: loss_fn must be a function (got %s)", where, describe(loss_fn))
  end
  local list = batch_list(where, batches)
  options = check.options(where, "options", options, {"full"})
  local full_list = options.full ~= nil and batch_list(where, options.full) or list
  local params = {}
  for _, p in ipairs(model:parameters()) do if p.requires_grad then params[#params + 1] = p end end
  if #params == 0 then fail("%s: the model has no parameter that requires grad", where) end

  return with_state_restored(model, function()
    model:eval()
    local full, rows = {}, 0
    for k, b in ipairs(full_list) do
      local g = gradients(where, model, loss_fn, b[1], b[2], params)
      local n = b[1]:shape()[1] or 1
      for i, gi in ipairs(g) do
        if k == 1 then full[i] = gi * n else full[i]:add_(gi * n) end
      end
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

return analysis
