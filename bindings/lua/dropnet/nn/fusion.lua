--[[
dropnet.nn.fusion: the fusion rules of nn.Sequential, and the plans it
compiles from them.

A rule replaces a run of consecutive layers by one fused call that gives the
same values, gradients and generator advance as the layers one by one:

  pattern   the layers' classes, in order; an entry may list several classes
            (any of them). Classes match exactly: a subclass may change
            forward, so it is never fused.
  watch     per position, the fields of the layer that `applies` reads (the
            plan is compiled again when one of them changes)
  next      optional: the class (or list) of the layer after the run, which
            the rule needs but leaves to the next step; `applies` gets it
            as its last argument, and `watch_next` lists its fields read
  applies(m1, m2, ...) -> boolean: whether the run may be fused now
  forward(x, m1, m2, ...) -> y: the fused call, through nn.functional

The rules: Linear, ReLU, Dropout (while the dropout draws); Linear then
ReLU, Tanh or Sigmoid; BatchNorm2d, ReLU, MaxPool2d (a 2x2 pool at stride
2) and Dropout2d (while it draws); BatchNorm2d, ReLU, MaxPool2d; BatchNorm1d
or BatchNorm2d then ReLU; a Conv1d or Conv2d before a batch norm (it leaves
the batch norm its statistics' sums); Conv1d or Conv2d then ReLU.

Adding a fusion (convolution + ReLU + channel dropout, say) is one more
entry in RULES. At each position the first rule that matches wins, so
longer runs come first.

A plan is the list of steps of one Sequential: a fused run or one layer. It
is compiled on the first forward and kept until something it was decided
from changes: the children (added, removed, replaced or reordered), a
watched field of a matched layer (Linear.activation, Dropout.p, the
training/mode flags that eval(), train() and mc() set, ...), a layer's
forward replaced on the instance, or hooks added to or removed from a layer.
A run with a layer that has hooks (dropnet.nn.hooks) is not fused: the
hooks see each layer's own call, input, output and gradients, bit for bit
those of the layers one by one (the rest of the run may still match a
shorter rule). Checking that costs a few table reads per
forward. What a fused call reads when it runs (weights, bias, generator,
scale, requires_grad) is read at every call, so it needs no new plan.
--]]
local dn = require "dropnet"
local check = require "dropnet.check"
local F = require "dropnet.nn.functional"
local layers = require "dropnet.nn.layers"
local activations = require "dropnet.nn.activations"
local dropout = require "dropnet.nn.dropout"
local normalization = require "dropnet.nn.normalization"
local pooling = require "dropnet.nn.pooling"
local conv = require "dropnet.nn.conv"

local Linear, Dropout, Dropout2d = layers.Linear, dropout.Dropout, dropout.Dropout2d
local ReLU, Tanh, Sigmoid = activations.ReLU, activations.Tanh, activations.Sigmoid
local BatchNorm1d, BatchNorm2d = normalization.BatchNorm1d, normalization.BatchNorm2d
local MaxPool2d = pooling.MaxPool2d
local Conv1d, Conv2d = conv.Conv1d, conv.Conv2d
-- The fused forms of each convolution's forward.
local CONV_RELU = {[Conv1d] = F.conv1d_relu, [Conv2d] = F.conv2d_relu}
local CONV_STATS = {[Conv1d] = F.conv1d_stats, [Conv2d] = F.conv2d_stats}

local M = {}

-- The activation the Linear kernel applies itself, by activation class.
local FUSED_ACTIVATION = {[ReLU] = "relu", [Tanh] = "tanh", [Sigmoid] = "sigmoid"}

-- A Dropout that draws at its next forward: training or MC mode, and a valid
-- p > 0 (an invalid p is not fused, so the layer itself raises its error).
local function draws(drop)
  local p = drop.p
  return type(p) == "number" and p > 0 and p <= 1 and drop:is_stochastic()
end

-- Whether a pool's size field v (an integer or {h, w}; nil: `default`) is valid and n in both dims, as
-- F.max_pool2d reads it. An invalid field is not fused, so the layer itself raises its error.
local function pair_is(v, default, n)
  if v == nil then v = default end
  local ok, h, w = pcall(check.pair, "MaxPool2d", "size", v, 0)
  return ok and h == n and w == n
end

-- Whether MaxPool2d `pool` is F.batch_norm_relu_max_pool2d's pool: kernel 2x2, stride 2x2 (the kernel size
-- when nil), no padding or dilation, floor mode.
local function pool_2x2(pool)
  local kernel = pool.kernel_size
  return pair_is(kernel, nil, 2) and pair_is(pool.stride, kernel, 2) and pair_is(pool.padding, 0, 0)
    and pair_is(pool.dilation, 1, 1) and not pool.ceil_mode
end

-- Whether x is [N, C, H, W] with a whole 2x2 window (else the layers one by one raise their own errors).
local function has_window(x)
  return dn.is_tensor(x) and x:dim() == 4 and x:size(3) >= 2 and x:size(4) >= 2
end

-- F.batch_norm_relu_max_pool2d_dropout2d with Dropout2d drop's p, generator and scale, in batch_norm's form (the
-- layer's forward_with calls it so).
local function with_dropout2d(drop)
  local p, dropout_opts = drop.p, {generator = drop.generator, scale = drop.scale}
  return function(x, running_mean, running_var, opts)
    for k, v in pairs(opts) do dropout_opts[k] = v end
    return F.batch_norm_relu_max_pool2d_dropout2d(x, running_mean, running_var, p, dropout_opts)
  end
end

-- Whether Conv2d c is F.conv2d_batch_norm_relu_max_pool2d_dropout2d's convolution: stride and dilation 1, one
-- group, padding given as sizes, at most 27 taps per output (the C op's limit).
local function first_block_conv(c)
  local k, pad = c.kernel_size, c.padding
  return type(pad) == "table" and c.groups == 1 and c.stride[1] == 1 and c.stride[2] == 1
    and c.dilation[1] == 1 and c.dilation[2] == 1 and c.in_channels * k[1] * k[2] <= 27
end

-- Whether x is what the fused first block takes from Conv2d c and BatchNorm2d bn: images [N, C, H, W] of c's
-- channels that need no gradient, big enough for a 2x2 window after the convolution and small enough for its
-- per-image buffer (2^24 values padded), and bn made for c's outputs (else first_block_fallback runs the layers,
-- and they raise their own errors).
local function first_block_input(x, c, bn)
  if not (dn.is_tensor(x) and x:dim() == 4 and x:size(2) == c.in_channels) then return false end
  if x.requires_grad and dn.is_grad_enabled() then return false end
  local k, pad = c.kernel_size, c.padding
  local fh, fw = x:size(3) + 2 * pad[1], x:size(4) + 2 * pad[2]
  return fh - k[1] + 1 >= 2 and fw - k[2] + 1 >= 2 and fh * fw * x:size(2) <= 1 << 24
    and bn.num_features == c.out_channels
end

-- The watched fields of a first block's Conv2d and of a pool.
local FIRST_CONV_FIELDS = {"stride", "padding", "dilation", "groups", "kernel_size", "in_channels"}
local POOL_FIELDS = {"kernel_size", "stride", "padding", "dilation", "ceil_mode"}

-- The first block's op with Conv2d c, BatchNorm2d bn (its modes and running statistics as its forward_with
-- gives them) and a channel dropout of p (0: none).
local function first_block(x, c, bn, p, generator, scale)
  local training = bn.training or not bn.track_running_stats
  local y = F.conv2d_batch_norm_relu_max_pool2d_dropout2d(x, c.weight, c.bias, bn.running_mean, bn.running_var, p,
    {padding = c.padding, weight = bn.weight, bias = bn.bias, training = training, momentum = bn.momentum,
     eps = bn.eps, generator = generator, scale = scale})
  if bn.training and bn.track_running_stats then
    dn.no_grad(function() bn.num_batches_tracked:add_(1) end)
  end
  return y
end

-- Conv2d c, BatchNorm2d bn, ReLU, MaxPool2d pool (and Dropout2d drop, or nil) where the first block's op does not
-- take x (an input that needs a gradient: a convolution inside a network): run as the rules below would run them,
-- the convolution taking the batch norm's sums (F.conv2d_stats) and the rest fused as far as they fuse.
local function first_block_fallback(x, c, bn, relu, pool, drop)
  local stats = bn.training or not bn.track_running_stats
  local y = stats and getmetatable(c).forward_with(c, x, F.conv2d_stats) or c(x)
  local z
  if not (pool_2x2(pool) and has_window(y)) then
    z = pool(relu(bn(y)))
  elseif drop and draws(drop) then
    return getmetatable(bn).forward_with(bn, y, with_dropout2d(drop))
  else
    z = getmetatable(bn).forward_with(bn, y, F.batch_norm_relu_max_pool2d)
  end
  if drop then return drop(z) end
  return z
end

local RULES = {
  -- Conv2d on images that need no gradient (a network's first layer), BatchNorm2d, ReLU, a 2x2 max pool and a
  -- Dropout2d that draws: one op whose convolution output is never written to memory, neither in forward nor in
  -- backward (F.conv2d_batch_norm_relu_max_pool2d_dropout2d: the batch norm's statistics from the moments of
  -- the images' patches). Its values equal the layers' up to rounding, not bit for bit. The batch norm's modes
  -- and running statistics are the layer's own, as its forward_with gives them.
  {
    pattern = {Conv2d, BatchNorm2d, ReLU, MaxPool2d, Dropout2d},
    watch = {FIRST_CONV_FIELDS, {"training", "track_running_stats"}, {}, POOL_FIELDS, {"p", "training", "mode"}},
    applies = function(c, _, _, pool, drop) return first_block_conv(c) and pool_2x2(pool) and draws(drop) end,
    forward = function(x, c, bn, relu, pool, drop)
      if not (first_block_conv(c) and pool_2x2(pool) and first_block_input(x, c, bn)) then
        return first_block_fallback(x, c, bn, relu, pool, drop)
      end
      return first_block(x, c, bn, drop.p, drop.generator, drop.scale)
    end,
  },
  -- The same without the dropout (or with one that does not draw, in eval mode: it is then the identity, and
  -- the run's last layer is the pool).
  {
    pattern = {Conv2d, BatchNorm2d, ReLU, MaxPool2d},
    watch = {FIRST_CONV_FIELDS, {"training", "track_running_stats"}, {}, POOL_FIELDS},
    applies = function(c, _, _, pool) return first_block_conv(c) and pool_2x2(pool) end,
    forward = function(x, c, bn, relu, pool)
      if not (first_block_conv(c) and pool_2x2(pool) and first_block_input(x, c, bn)) then
        return first_block_fallback(x, c, bn, relu, pool)
      end
      return first_block(x, c, bn, 0)
    end,
  },
  -- Linear, ReLU, Dropout while the dropout draws: one kernel call, with the
  -- dropout applied in the Linear's pass over its output and no mask kept
  -- for backward.
  {
    pattern = {Linear, ReLU, Dropout},
    watch = {{"activation", "dropconnect"}, {}, {"p", "training", "mode"}},
    applies = function(linear, _, drop)
      return linear.activation == nil and linear.dropconnect == nil and draws(drop)
    end,
    forward = function(x, linear, _, drop)
      return F.linear_relu_dropout(x, linear.weight, linear.bias, drop.p, true,
        {generator = drop.generator, scale = drop.scale})
    end,
  },
  -- Linear then ReLU, Tanh or Sigmoid: the activation inside the Linear's kernel.
  {
    pattern = {Linear, {ReLU, Tanh, Sigmoid}},
    watch = {{"activation"}, {}},
    applies = function(linear) return linear.activation == nil end,
    forward = function(x, linear, act)
      return Linear.forward_with_activation(linear, x, FUSED_ACTIVATION[getmetatable(act)])
    end,
  },
  -- BatchNorm2d, ReLU, a 2x2 max pool at stride 2 and a Dropout2d that
  -- draws: the rule below with the channel dropout in the pass that pools
  -- (a dropped plane is not normalized at all) and no mask or pass of its
  -- own in backward (F.batch_norm_relu_max_pool2d_dropout2d).
  {
    pattern = {BatchNorm2d, ReLU, MaxPool2d, Dropout2d},
    watch = {{}, {}, {"kernel_size", "stride", "padding", "dilation", "ceil_mode"}, {"p", "training", "mode"}},
    applies = function(_, _, pool, drop) return pool_2x2(pool) and draws(drop) end,
    forward = function(x, bn, relu, pool, drop)
      if not (pool_2x2(pool) and has_window(x)) then return drop(pool(relu(bn(x)))) end
      return getmetatable(bn).forward_with(bn, x, with_dropout2d(drop))
    end,
  },
  -- BatchNorm2d, ReLU and a 2x2 max pool at stride 2: each plane normalized
  -- with the ReLU into a scratch buffer and pooled from there
  -- (F.batch_norm_relu_max_pool2d), so the batch norm's output is never
  -- written to memory; run by the batch norm layer's own forward, as the
  -- rule below. Any other pool leaves the first two to the rule below.
  {
    pattern = {BatchNorm2d, ReLU, MaxPool2d},
    watch = {{}, {}, {"kernel_size", "stride", "padding", "dilation", "ceil_mode"}},
    applies = function(_, _, pool) return pool_2x2(pool) end,
    forward = function(x, bn, relu, pool)
      -- checked again: a size table edited in place changes no watched field
      if not (pool_2x2(pool) and has_window(x)) then return pool(relu(bn(x))) end
      return getmetatable(bn).forward_with(bn, x, F.batch_norm_relu_max_pool2d)
    end,
  },
  -- BatchNorm1d or BatchNorm2d then ReLU: the ReLU in the batch norm's output
  -- pass and its mask inside the batch norm's backward (F.batch_norm_relu),
  -- run by the layer's own forward, so its checks, modes (train, eval, MC),
  -- running statistics, num_batches_tracked, track_running_stats and affine
  -- are the unfused layer's. Always applies: what differs between modes is
  -- read by that forward at every call.
  {
    pattern = {{BatchNorm1d, BatchNorm2d}, ReLU},
    watch = {{}, {}},
    applies = function() return true end,
    forward = function(x, bn) return getmetatable(bn).forward_with(bn, x, F.batch_norm_relu) end,
  },
  -- Conv1d or Conv2d followed by (not fused with) a batch norm: the
  -- convolution takes each output row's sums for the batch norm's statistics
  -- while the image's outputs are in cache (F.conv2d_stats), and the batch
  -- norm's own step skips its pass over them. `next`: the class the
  -- following layer must have; it is not part of the run.
  -- Only when the batch norm takes the batch's statistics (training, or no
  -- running statistics); in eval and MC mode it reads the running ones.
  {
    pattern = {{Conv1d, Conv2d}},
    next = {BatchNorm1d, BatchNorm2d},
    watch = {{}},
    watch_next = {"training", "track_running_stats"},
    applies = function(_, bn) return bn.training or not bn.track_running_stats end,
    forward = function(x, c)
      local cls = getmetatable(c)
      return cls.forward_with(c, x, CONV_STATS[cls])
    end,
  },
  -- Conv1d or Conv2d then ReLU: the ReLU in the pass that adds the bias to
  -- each image's outputs while they are in cache, and ReLU's backward on each
  -- image's gradient inside the convolution's backward (F.conv2d_relu), run
  -- by the layer's own forward (its checks and messages). A network without
  -- batch norm: the ReLU's own passes over memory are gone.
  {
    pattern = {{Conv1d, Conv2d}, ReLU},
    watch = {{}, {}},
    applies = function() return true end,
    forward = function(x, c)
      local cls = getmetatable(c)
      return cls.forward_with(c, x, CONV_RELU[cls])
    end,
  },
}
M.RULES = RULES

-- Whether module m is exactly of class `want`, or of one of the classes
-- listed in `want`.
local function of_class(m, want)
  local cls = getmetatable(m)
  if cls == want then return true end
  if want.__name ~= nil then return false end   -- a class, not a list
  for _, c in ipairs(want) do
    if c == cls then return true end
  end
  return false
end

-- Whether m runs its class's forward (not one replaced on the instance).
local function own_forward(m)
  return m.forward == getmetatable(m).forward
end

local function run_layer(x, m) return m(x) end

-- The plan of the children `order`/`mods` (a Sequential's _modules_order and
-- _modules): steps {forward =, name =, module = (the first layer), [1..k] =
-- the layers}, and what it was decided from (names, layers, watched fields).
local function compile(order, mods)
  local plan = {rule_count = #RULES, names = {}, layers = {},
                watch_stores = {}, watch_keys = {}, watch_values = {}}
  -- A watched field is read where an assignment to it lands: on the module
  -- itself for the raw fields (training, mode), else in its plain fields
  -- (module.lua's _attributes; a forward set on the instance lands there too).
  -- Plain table reads keep the per-forward check cheap.
  local function watch(m, key)
    local store = rawget(m, key) ~= nil and m or rawget(m, "_attributes")
    local k = #plan.watch_keys + 1
    plan.watch_stores[k], plan.watch_keys[k], plan.watch_values[k] = store, key, rawget(store, key)
  end
  local n = #order
  for i = 1, n do
    plan.names[i], plan.layers[i] = order[i], mods[order[i]]
  end
  local i = 1
  while i <= n do
    local step
    for _, rule in ipairs(RULES) do
      local pattern = rule.pattern
      local k = #pattern
      local run = {}
      for j = 1, k do
        local m = plan.layers[i + j - 1]
        if m == nil or not of_class(m, pattern[j]) then run = nil break end
        run[j] = m
      end
      local after = rule.next and plan.layers[i + k]
      if run and rule.next and (after == nil or not of_class(after, rule.next)) then run = nil end
      if run then
        local fits = true
        for j = 1, k do
          watch(run[j], "forward")
          watch(run[j], "_hooks")
          for _, key in ipairs(rule.watch[j]) do watch(run[j], key) end
          fits = fits and own_forward(run[j]) and not rawget(run[j], "_hooks")
        end
        for _, key in ipairs(rule.watch_next or {}) do watch(after, key) end
        run[k + 1] = after   -- applies' last argument (nil without `next`), then dropped from the run
        local applies = rule.applies(table.unpack(run, 1, k + 1))
        run[k + 1] = nil
        if fits and applies then
          step = run
          step.forward = rule.forward
          break
        end
      end
    end
    step = step or {plan.layers[i], forward = run_layer}
    step.name, step.module = order[i], plan.layers[i]
    plan[#plan + 1] = step
    i = i + #step
  end
  return plan
end

-- Whether plan still describes the children order/mods.
local function still_valid(plan, order, mods)
  local n = #order
  if n ~= #plan.names or plan.rule_count ~= #RULES then return false end
  local names, layers_of = plan.names, plan.layers
  for i = 1, n do
    local name = order[i]
    if name ~= names[i] or mods[name] ~= layers_of[i] then return false end
  end
  local stores, keys, values = plan.watch_stores, plan.watch_keys, plan.watch_values
  for k = 1, #keys do
    if rawget(stores[k], keys[k]) ~= values[k] then return false end
  end
  return true
end

-- Each container's plan; weak, so a dropped container takes its plan along.
local plans = setmetatable({}, {__mode = "k"})

--- The plan of Sequential `seq`: the one compiled before when it still holds,
-- else a new one.
function M.plan(seq)
  local order, mods = rawget(seq, "_modules_order"), rawget(seq, "_modules")
  local plan = plans[seq]
  if plan == nil or not still_valid(plan, order, mods) then
    plan = compile(order, mods)
    plans[seq] = plan
  end
  return plan
end

return M
