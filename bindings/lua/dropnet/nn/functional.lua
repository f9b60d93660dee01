--- dropnet.nn.functional: the layers and losses as plain functions of
-- tensors (the modules call these). Every one is differentiable; the
-- arithmetic happens in C. Dims are 1-based, negative from the end.
local core = require "dropnet.core"
local check = require "dropnet.check"
local U = require "dropnet.nn.util"

local F = {}

local REDUCTIONS = {"mean", "sum", "none"}
local ACTIVATIONS = {"relu", "tanh", "sigmoid"}
-- the options of the calls (lists made once: some calls are on every training step)
local REDUCTION_OPTIONS, CROSS_ENTROPY_OPTIONS = {"reduction"}, {"reduction", "label_smoothing"}
local DROPOUT_OPTIONS, GENERATOR_OPTION = {"scale", "generator"}, {"generator"}
local DROPCONNECT_OPTIONS = {"generator", "activation"}

-- The reduction of a loss call: a string, or {reduction = ...}; "mean" by default.
local function reduction_of(opts, fname, known)
  if type(opts) == "string" then return check.choice(fname, "reduction", opts, REDUCTIONS) end
  opts = check.options(fname, "options", opts, known or REDUCTION_OPTIONS)
  return check.choice(fname, "reduction", opts.reduction or "mean", REDUCTIONS), opts
end

-- --- activations ------------------------------------------------------------------

function F.relu(x) return core.relu(x) end
function F.sigmoid(x) return core.sigmoid(x) end
function F.tanh(x) return core.tanh(x) end

--- leaky_relu(x[, negative_slope = 0.01])
function F.leaky_relu(x, negative_slope)
  if negative_slope == nil then negative_slope = 0.01 end
  return core.nn_leaky_relu(x, check.number("leaky_relu", "negative_slope", negative_slope))
end

--- elu(x[, alpha = 1])
function F.elu(x, alpha)
  if alpha == nil then alpha = 1.0 end
  return core.nn_elu(x, check.number("elu", "alpha", alpha))
end

--- selu(x): the self-normalizing constants of Klambauer et al. 2017.
function F.selu(x) return core.nn_selu(x) end

--- gelu(x[, approximate = "none" | "tanh"]) (or {approximate = ...})
function F.gelu(x, approximate)
  if type(approximate) == "table" then
    approximate = check.options("gelu", "options", approximate, {"approximate"}).approximate
  end
  approximate = check.choice("gelu", "approximate", approximate or "none", {"none", "tanh"})
  return core.nn_gelu(x, approximate == "tanh")
end

--- softmax(x[, dim = -1])
function F.softmax(x, dim)
  return core.nn_softmax(x, dim or -1)
end

--- log_softmax(x[, dim = -1])
function F.log_softmax(x, dim)
  return core.nn_log_softmax(x, dim or -1)
end

-- --- layers -------------------------------------------------------------------------

--- linear(x, weight[, bias[, activation]]): act(x @ weight^T + bias) in one
-- fused kernel; weight is [out, in]; activation nil, "relu", "tanh" or "sigmoid".
function F.linear(x, weight, bias, activation)
  if activation ~= nil then check.choice("linear", "activation", activation, ACTIVATIONS) end
  return core.nn_linear(x, weight, bias, activation)
end

-- --- convolutions -----------------------------------------------------------------------

local CONV_OPTIONS = {"stride", "padding", "dilation", "groups"}
local CONV_NAMES = {"conv1d", "conv2d"}
local PADDING_WORDS = {"same", "valid"}

-- v as n integers >= min (a list): one integer for every dim, or a list of n ({h, w}).
local function conv_ints(where, what, v, n, min)
  if type(v) == "number" then
    local i = check.int(where, what, v, min)
    return n == 2 and {i, i} or {i}
  end
  if type(v) ~= "table" or #v ~= n then
    check.fail("%s: %s must be an integer or a list of %d integers%s (got %s)", where, what, n,
      n == 2 and " {h, w}" or "", check.describe(v))
  end
  local r = {}
  for d = 1, n do r[d] = check.int(where, string.format("%s[%d]", what, d), v[d], min) end
  return r
end
F._conv_ints = conv_ints

--- The options of an n-d convolution ({stride, padding, dilation, groups},
-- unknown keys left to the caller) as lists, padding a list or "same" /
-- "valid". Shared with nn.Conv1d/Conv2d, which check them when built.
function F._conv_options(where, n, opts)
  local o = {
    stride = conv_ints(where, "stride", opts.stride or 1, n, 1),
    dilation = conv_ints(where, "dilation", opts.dilation or 1, n, 1),
    groups = check.int(where, "groups", opts.groups or 1, 1),
  }
  local padding = opts.padding or 0
  if type(padding) == "string" then
    o.padding = check.choice(where, "padding", padding, PADDING_WORDS)
    for d = 1, n do
      if padding == "same" and o.stride[d] ~= 1 then
        check.fail("%s: padding \"same\" needs stride 1 (got stride {%s}), as in PyTorch", where,
          table.concat(o.stride, ", "))
      end
    end
  else
    o.padding = conv_ints(where, "padding", padding, n, 0)
  end
  return o
end

-- conv1d (n = 1) or conv2d (n = 2) with checked options, then ReLU when relu; stats: the output carries its
-- rows' sums for the batch norm after it (F.conv2d_stats).
-- padding "same" with an odd total (dilation * (k - 1)) pads the larger half
-- on both sides and drops the output's first row or column: PyTorch puts the
-- extra zero at the end.
local function conv(n, x, weight, bias, o, relu, stats)
  local pad, trim = o.padding, nil
  if pad == "valid" then
    pad = {0, 0}
  elseif pad == "same" then
    pad = {0, 0}
    if core.Tensor == getmetatable(weight) and weight:dim() == n + 2 then
      for d = 1, n do
        local total = o.dilation[d] * (weight:size(d + 2) - 1)
        pad[d] = (total + 1) // 2
        if total % 2 == 1 then
          trim = trim or {}
          trim[d] = true
        end
      end
    end
  end
  local y
  if n == 2 then
    y = core.nn_conv2d(x, weight, bias, o.stride[1], o.stride[2], pad[1], pad[2], o.dilation[1], o.dilation[2],
      o.groups, relu, stats)
  else
    y = core.nn_conv1d(x, weight, bias, o.stride[1], pad[1], o.dilation[1], o.groups, relu, stats)
  end
  if trim then
    for d = 1, n do
      if trim[d] then y = y:narrow(d + 2, 2, y:size(d + 2) - 1) end
    end
  end
  return y
end

--- conv2d(x, weight[, bias[, opts]]): x [N, C, H, W], weight [out, C/groups,
-- kh, kw], bias [out] or nil; opts {stride = 1, padding = 0, dilation = 1,
-- groups = 1}, each an integer or {h, w}; padding may be "same" (stride 1)
-- or "valid".
function F.conv2d(x, weight, bias, opts)
  local o = F._conv_options(CONV_NAMES[2], 2, check.options("conv2d", "options", opts, CONV_OPTIONS))
  return conv(2, x, weight, bias, o)
end

--- conv1d(x, weight[, bias[, opts]]): x [N, C, L], weight [out, C/groups, k]; opts as conv2d's, integers.
function F.conv1d(x, weight, bias, opts)
  local o = F._conv_options(CONV_NAMES[1], 1, check.options("conv1d", "options", opts, CONV_OPTIONS))
  return conv(1, x, weight, bias, o)
end

--- conv2d_relu(x, weight[, bias[, opts]]): F.relu(F.conv2d(x, weight, bias, opts)) in one pass over
-- each image's outputs, the same bits (values and gradients).
function F.conv2d_relu(x, weight, bias, opts)
  local o = F._conv_options("conv2d_relu", 2, check.options("conv2d_relu", "options", opts, CONV_OPTIONS))
  return conv(2, x, weight, bias, o, true)
end

--- conv1d_relu(x, weight[, bias[, opts]]): F.relu(F.conv1d(x, weight, bias, opts)), as conv2d_relu.
function F.conv1d_relu(x, weight, bias, opts)
  local o = F._conv_options("conv1d_relu", 1, check.options("conv1d_relu", "options", opts, CONV_OPTIONS))
  return conv(1, x, weight, bias, o, true)
end

--- conv2d_stats(x, weight[, bias[, opts]]): F.conv2d, whose output also carries the sums of its rows that a
-- batch norm's statistics are made of, taken while each image's outputs are in cache: a batch norm of that
-- tensor then skips its own pass for them (the same bits). nn.Sequential uses it for a Conv2d followed by a
-- BatchNorm2d.
function F.conv2d_stats(x, weight, bias, opts)
  local o = F._conv_options("conv2d_stats", 2, check.options("conv2d_stats", "options", opts, CONV_OPTIONS))
  return conv(2, x, weight, bias, o, false, true)
end

--- conv1d_stats(x, weight[, bias[, opts]]): F.conv1d, as conv2d_stats (a Conv1d followed by a BatchNorm1d).
function F.conv1d_stats(x, weight, bias, opts)
  local o = F._conv_options("conv1d_stats", 1, check.options("conv1d_stats", "options", opts, CONV_OPTIONS))
  return conv(1, x, weight, bias, o, false, true)
end

-- --- dropout ----------------------------------------------------------------------------

local function check_p(p, where, below_one) return check.probability(where, "p", p, below_one) end

local SCALES = {"inverted", "test"}

-- training (default true), scale and generator of a dropout call.
local function dropout_args(training, opts, fname, known)
  if training == nil then training = true end
  check.bool(fname, "training", training)
  opts = check.options(fname, "options", opts, known or DROPOUT_OPTIONS)
  if opts.scale ~= nil then check.choice(fname, "scale", opts.scale, SCALES) end
  check.generator(fname, opts.generator)
  return training, opts
end

local function check_input(x, ndim, layout, where) return check.input(where, x, ndim, layout) end

--- dropout(x, p[, training = true[, {scale = "inverted" | "test", generator = g}]]):
-- in training each element is kept with probability 1-p and scaled by
-- 1/(1-p) ("inverted", the default) or left as is ("test"). Not training: x
-- itself, or x * (1-p) with scale = "test". p = 0 returns x itself and draws
-- nothing. The backward regenerates the mask from the generator's counter.
function F.dropout(x, p, training, opts)
  training, opts = dropout_args(training, opts, "dropout")
  check_p(p, "dropout")
  if training then return core.dropout(x, p, opts.generator, opts.scale) end
  return core.dropout_eval(x, p, opts.scale)
end

-- Channel dropout of an ndim-D input: whole channels x[n][c] are zeroed.
local function channel_dropout(fname, ndim, layout)
  return function(x, p, training, opts)
    training, opts = dropout_args(training, opts, fname)
    check_p(p, fname)
    check_input(x, ndim, layout, fname)
    if training then return core.dropout_channels(x, p, opts.generator, opts.scale) end
    return core.dropout_eval(x, p, opts.scale)
  end
end

--- dropout1d(x, p[, training[, opts]]): x [N, C, L]; options as dropout.
F.dropout1d = channel_dropout("dropout1d", 3, "[N, C, L]")
--- dropout2d(x, p[, training[, opts]]): x [N, C, H, W]; options as dropout.
F.dropout2d = channel_dropout("dropout2d", 4, "[N, C, H, W]")
--- dropout3d(x, p[, training[, opts]]): x [N, C, D, H, W]; options as dropout.
F.dropout3d = channel_dropout("dropout3d", 5, "[N, C, D, H, W]")

--- locked_dropout(x, p[, training[, opts]]): x [T, N, F]; one mask per
-- (n, f) reused at every time step t (variational dropout); options as dropout.
function F.locked_dropout(x, p, training, opts)
  training, opts = dropout_args(training, opts, "locked_dropout")
  check_p(p, "locked_dropout")
  check_input(x, 3, "[T, N, F]", "locked_dropout")
  if training then return core.dropout_locked(x, p, opts.generator, opts.scale) end
  return core.dropout_eval(x, p, opts.scale)
end

--- alpha_dropout(x, p[, training = true[, {generator = g}]]): keeps the mean
-- and variance of a standard normal input (for SELU networks). x itself
-- when not training.
function F.alpha_dropout(x, p, training, opts)
  training, opts = dropout_args(training, opts, "alpha_dropout", GENERATOR_OPTION)
  check_p(p, "alpha_dropout")
  if training then return core.alpha_dropout(x, p, opts.generator) end
  return x
end

--- gaussian_dropout(x, p[, training = true[, {generator = g}]]): x times
-- N(1, p/(1-p)) noise, p in [0, 1). x itself when not training.
function F.gaussian_dropout(x, p, training, opts)
  training, opts = dropout_args(training, opts, "gaussian_dropout", GENERATOR_OPTION)
  check_p(p, "gaussian_dropout", true)
  if training then return core.gaussian_dropout(x, p, opts.generator) end
  return x
end

--- (internal) block_size as an integer after checking x as a DropBlock input
-- for `where` (nn.DropBlock2d, dropblock2d): [N, C, H, W] or [C, H, W] whose
-- maps hold a whole block_size x block_size block.
function F._dropblock_input(where, x, block_size)
  check.tensor(where, x)
  local shape = x:shape()
  local ndim = #shape
  if ndim ~= 3 and ndim ~= 4 then
    check.fail("%s: input must be 4-D [N, C, H, W] or 3-D [C, H, W] (got shape [%s])", where,
      table.concat(shape, ","))
  end
  block_size = check.int(where, "block_size", block_size, 1)
  local h, w = shape[ndim - 1], shape[ndim]
  local smaller = math.min(h, w)
  if block_size > smaller then
    check.fail("%s: block_size %d does not fit the %d x %d feature maps of input [%s] (must be <= min(H, W) = %d)",
      where, block_size, h, w, table.concat(shape, ","), smaller)
  end
  return block_size
end

--- dropblock2d(x, p, block_size[, training = true[, {generator = g}]]):
-- DropBlock (Ghiasi et al. 2018) of x [N, C, H, W] or [C, H, W]: in training,
-- block_size x block_size blocks, placed where they fit with probability
-- gamma = p*H*W / (bs^2 (H-bs+1)(W-bs+1)), are zeroed and the rest scaled by
-- numel / kept (over the whole tensor). x itself when not training or p = 0.
-- The backward regenerates the mask from the generator's counter.
function F.dropblock2d(x, p, block_size, training, opts)
  training, opts = dropout_args(training, opts, "dropblock2d", GENERATOR_OPTION)
  check_p(p, "dropblock2d")
  block_size = F._dropblock_input("dropblock2d", x, block_size)
  if training then return core.dropblock2d(x, p, block_size, opts.generator) end
  return x
end

local ACTIVATION_KERNELS = {relu = core.relu, tanh = core.tanh, sigmoid = core.sigmoid}

--- dropconnect_linear(x, weight, bias, p[, training = true[, {generator = g, activation = nil}]]):
-- x @ (weight * M / (1-p))^T + bias with M ~ Bernoulli(1-p) over the weight's
-- elements; gradients reach only the kept weights. bias may be nil. Not
-- training (or p = 0): the plain linear layer. activation ("relu", "tanh",
-- "sigmoid") follows the masked layer (fused into the plain layer's kernel).
function F.dropconnect_linear(x, weight, bias, p, training, opts)
  training, opts = dropout_args(training, opts, "dropconnect_linear", DROPCONNECT_OPTIONS)
  check_p(p, "dropconnect_linear")
  local activation = opts.activation
  if activation ~= nil then check.choice("dropconnect_linear", "activation", activation, ACTIVATIONS) end
  if not training or p == 0 then return core.nn_linear(x, weight, bias, activation) end
  local y = core.dropconnect_linear(x, weight, bias, p, opts.generator)
  if activation then y = ACTIVATION_KERNELS[activation](y) end
  return y
end

--- linear_relu_dropout(x, weight, bias, p[, training = true[, {scale = "inverted" | "test", generator = g}]]):
-- dropout(relu(linear(x, weight, bias)), p) as one fused kernel call in
-- training: the same values, gradients and generator advance as the three
-- calls, without a pass of its own for the dropout and without a mask for
-- backward. Not training, or p = 0: linear with "relu", then the eval
-- transform of dropout (x * (1-p) with scale = "test"). nn.Sequential calls it
-- for a Linear, ReLU, Dropout run of layers (dropnet.nn.fusion).
function F.linear_relu_dropout(x, weight, bias, p, training, opts)
  training, opts = dropout_args(training, opts, "linear_relu_dropout")
  check_p(p, "linear_relu_dropout")
  if training and p > 0 then return core.linear_relu_dropout(x, weight, bias, p, opts.generator, opts.scale) end
  return core.dropout_eval(core.nn_linear(x, weight, bias, "relu"), p, opts.scale)
end

-- --- losses -----------------------------------------------------------------------------

--- cross_entropy(logits, target[, {label_smoothing = 0, reduction = "mean"}]):
-- logits [N, C], target [N] int32 class indices 1..C.
function F.cross_entropy(logits, target, opts)
  local reduction, o = reduction_of(opts, "cross_entropy", CROSS_ENTROPY_OPTIONS)
  local smoothing = o and o.label_smoothing or 0
  check.number("cross_entropy", "label_smoothing", smoothing)
  if smoothing < 0 or smoothing > 1 then
    check.fail("cross_entropy: label_smoothing must be in [0, 1] (got %s)", U.fmt(smoothing))
  end
  return core.nn_cross_entropy(logits, target, smoothing, reduction)
end

--- nll_loss(log_probs, target[, reduction]): log_probs [N, C], target [N] int32 1..C.
function F.nll_loss(log_probs, target, opts)
  return core.nn_nll_loss(log_probs, target, (reduction_of(opts, "nll_loss")))
end

--- mse_loss(input, target[, reduction])
function F.mse_loss(input, target, opts)
  return core.nn_mse_loss(input, target, (reduction_of(opts, "mse_loss")))
end

--- binary_cross_entropy_with_logits(logits, target[, reduction]): target in [0, 1].
function F.binary_cross_entropy_with_logits(logits, target, opts)
  return core.nn_bce_with_logits(logits, target, (reduction_of(opts, "binary_cross_entropy_with_logits")))
end

-- --- pooling (kernels in runtime/src/pooling.c) -------------------------------------------
-- Sizes are an integer or a pair {h, w} (1-d: an integer); stride defaults to
-- the kernel size, as in PyTorch. The C kernels check what depends on the input.

local MAX_POOL_OPTIONS = {"stride", "padding", "dilation", "ceil_mode"}
local AVG_POOL_OPTIONS = {"stride", "padding", "ceil_mode", "count_include_pad"}

-- The options of a pool call, checked: kernel, stride, padding as pairs (or
-- single integers for 1-d), then dilation, ceil_mode, count_include_pad.
local function pool_args(fname, kernel_size, opts, known, one_d)
  local function sizes(what, v, min)
    if one_d then return check.int(fname, what, v, min) end
    return check.pair(fname, what, v, min)
  end
  opts = check.options(fname, "options", opts, known)
  local kh, kw = sizes("kernel_size", kernel_size, 1)
  local sh, sw = sizes("stride", opts.stride == nil and kernel_size or opts.stride, 1)
  local ph, pw = sizes("padding", opts.padding or 0, 0)
  local dh, dw = sizes("dilation", opts.dilation or 1, 1)
  local ceil_mode = check.bool(fname, "ceil_mode", opts.ceil_mode or false)
  local include_pad = opts.count_include_pad
  if include_pad == nil then include_pad = true end
  check.bool(fname, "count_include_pad", include_pad)
  if one_d then return kh, sh, ph, dh, ceil_mode, include_pad end
  return kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode, include_pad
end

--- max_pool2d(x, kernel_size[, {stride = kernel_size, padding = 0, dilation = 1, ceil_mode = false}]):
-- x [N, C, H, W] or [C, H, W].
function F.max_pool2d(x, kernel_size, opts)
  local kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode = pool_args("max_pool2d", kernel_size, opts, MAX_POOL_OPTIONS)
  return core.nn_max_pool2d(x, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
end

--- avg_pool2d(x, kernel_size[, {stride = kernel_size, padding = 0, ceil_mode = false, count_include_pad = true}])
function F.avg_pool2d(x, kernel_size, opts)
  local kh, kw, sh, sw, ph, pw, _, _, ceil_mode, include_pad =
    pool_args("avg_pool2d", kernel_size, opts, AVG_POOL_OPTIONS)
  return core.nn_avg_pool2d(x, kh, kw, sh, sw, ph, pw, ceil_mode, include_pad)
end

--- max_pool1d(x, kernel_size[, opts]): x [N, C, L] or [C, L]; options as max_pool2d, integers.
function F.max_pool1d(x, kernel_size, opts)
  local k, s, p, d, ceil_mode = pool_args("max_pool1d", kernel_size, opts, MAX_POOL_OPTIONS, true)
  return core.nn_max_pool1d(x, k, s, p, d, ceil_mode)
end

--- avg_pool1d(x, kernel_size[, opts]): x [N, C, L] or [C, L]; options as avg_pool2d, integers.
function F.avg_pool1d(x, kernel_size, opts)
  local k, s, p, _, ceil_mode, include_pad = pool_args("avg_pool1d", kernel_size, opts, AVG_POOL_OPTIONS, true)
  return core.nn_avg_pool1d(x, k, s, p, ceil_mode, include_pad)
end

--- adaptive_avg_pool2d(x, output_size): output_size an integer or {h, w}.
function F.adaptive_avg_pool2d(x, output_size)
  local h, w = check.pair("adaptive_avg_pool2d", "output_size", output_size, 1)
  return core.nn_adaptive_avg_pool2d(x, h, w)
end

-- --- normalization (kernels in runtime/src/norm.c) -----------------------------------------

local BATCH_NORM_OPTIONS = {"weight", "bias", "training", "momentum", "eps"}

-- The arguments of core.nn_batch_norm (and its fused forms) from a
-- batch_norm-style call to fname: x, weight, bias, running_mean, running_var,
-- training, momentum, eps, the options checked.
local function batch_norm_args(fname, x, running_mean, running_var, opts)
  opts = check.options(fname, "options", opts, BATCH_NORM_OPTIONS)
  local given = {running_mean = running_mean, running_var = running_var, weight = opts.weight, bias = opts.bias}
  for _, what in ipairs {"running_mean", "running_var", "weight", "bias"} do
    if given[what] ~= nil then check.tensor(fname .. " (" .. what .. ")", given[what]) end
  end
  local training = opts.training
  if training == nil then training = false end
  check.bool(fname, "training", training)
  local momentum = opts.momentum
  if momentum == nil then momentum = 0.1 end
  check.probability(fname, "momentum", momentum)
  local eps = check.nonneg(fname, "eps", opts.eps == nil and 1e-5 or opts.eps)
  return x, opts.weight, opts.bias, running_mean, running_var, training, momentum, eps
end

--- batch_norm(x, running_mean, running_var[, {weight, bias, training = false, momentum = 0.1, eps = 1e-5}]):
-- x [N, C], [N, C, L] or [N, C, H, W], statistics per channel. training: the batch's, and the running
-- statistics (nil: none) updated in place; else the running statistics.
function F.batch_norm(x, running_mean, running_var, opts)
  return core.nn_batch_norm(batch_norm_args("batch_norm", x, running_mean, running_var, opts))
end

--- batch_norm_relu(x, running_mean, running_var[, opts]): F.relu(F.batch_norm(x, ...)) as one kernel call
-- (the same options), with the same bits: the ReLU in batch norm's output pass and its mask in batch norm's
-- backward. nn.Sequential uses it for a BatchNorm1d or BatchNorm2d followed by a ReLU (dropnet.nn.fusion).
function F.batch_norm_relu(x, running_mean, running_var, opts)
  return core.nn_batch_norm_relu(batch_norm_args("batch_norm_relu", x, running_mean, running_var, opts))
end

--- batch_norm_relu_max_pool2d(x, running_mean, running_var[, opts]): F.max_pool2d(F.batch_norm_relu(x, ...), 2)
-- as one kernel call (the same options), with the same bits, for x [N, C, H, W] with H, W >= 2: each plane is
-- normalized into a scratch buffer and pooled from there. nn.Sequential uses it for a BatchNorm2d, a ReLU and a
-- MaxPool2d(2) (dropnet.nn.fusion).
function F.batch_norm_relu_max_pool2d(x, running_mean, running_var, opts)
  return core.nn_batch_norm_relu_max_pool2d(batch_norm_args("batch_norm_relu_max_pool2d", x, running_mean,
    running_var, opts))
end

local BN_DROPOUT_OPTIONS = {"weight", "bias", "training", "momentum", "eps", "generator", "scale"}

--- batch_norm_relu_max_pool2d_dropout2d(x, running_mean, running_var, p[, opts]):
-- F.dropout2d(F.batch_norm_relu_max_pool2d(x, ...), p, true, {generator, scale}) as one kernel call, with the same
-- bits and generator advance: the dropout always draws (training's `training` option is the batch norm's). opts:
-- batch_norm's, and dropout's generator and scale ("inverted" | "test"). A dropped plane is written as zeros
-- without being normalized; backward needs no mask. nn.Sequential uses it for a BatchNorm2d, a ReLU, a
-- MaxPool2d(2) and a Dropout2d in training or MC mode (dropnet.nn.fusion).
function F.batch_norm_relu_max_pool2d_dropout2d(x, running_mean, running_var, p, opts)
  local fname = "batch_norm_relu_max_pool2d_dropout2d"
  opts = check.options(fname, "options", opts, BN_DROPOUT_OPTIONS)
  check_p(p, fname)
  local generator, scale = opts.generator, opts.scale
  if scale ~= nil then check.choice(fname, "scale", scale, SCALES) end
  check.generator(fname, generator)
  local bn = {weight = opts.weight, bias = opts.bias, training = opts.training, momentum = opts.momentum,
              eps = opts.eps}
  local xx, weight, bias, rm, rv, training, momentum, eps = batch_norm_args(fname, x, running_mean, running_var, bn)
  return core.batch_norm_relu_max_pool2d_dropout2d(xx, weight, bias, rm, rv, training, momentum, eps, p, generator,
    scale)
end

local FIRST_BLOCK_OPTIONS = {"padding", "weight", "bias", "training", "momentum", "eps", "generator", "scale"}

--- conv2d_batch_norm_relu_max_pool2d_dropout2d(x, conv_weight, conv_bias, running_mean, running_var, p[, opts]):
-- F.batch_norm_relu_max_pool2d_dropout2d(F.conv2d(x, conv_weight, conv_bias, {padding = opts.padding}), ...) as
-- one kernel call, for images x [N, C, H, W] that need no gradient and a convolution of stride 1 with at most 27
-- taps per output (C * KH * KW: 3x3 or 5x5 on gray images, 3x3 on RGB): its output is never written to memory,
-- its batch statistics come from the moments of the images' patches. Equal to the two calls up to rounding (not
-- bit for bit). opts: padding (an integer or {h, w}, default 0), then batch_norm_relu_max_pool2d_dropout2d's; p may
-- be 0 (no dropout). nn.Sequential uses it for a Conv2d on such an input followed by a BatchNorm2d, a ReLU, a
-- MaxPool2d(2) and a Dropout2d in training or MC mode (dropnet.nn.fusion).
function F.conv2d_batch_norm_relu_max_pool2d_dropout2d(x, conv_weight, conv_bias, running_mean, running_var, p,
                                                        opts)
  local fname = "conv2d_batch_norm_relu_max_pool2d_dropout2d"
  opts = check.options(fname, "options", opts, FIRST_BLOCK_OPTIONS)
  check_p(p, fname)
  check.tensor(fname .. " (conv_weight)", conv_weight)
  if conv_bias ~= nil then check.tensor(fname .. " (conv_bias)", conv_bias) end
  local ph, pw = check.pair(fname, "padding", opts.padding == nil and 0 or opts.padding, 0)
  local generator, scale = opts.generator, opts.scale
  if scale ~= nil then check.choice(fname, "scale", scale, SCALES) end
  check.generator(fname, generator)
  local bn = {weight = opts.weight, bias = opts.bias, training = opts.training, momentum = opts.momentum,
              eps = opts.eps}
  local xx, weight, bias, rm, rv, training, momentum, eps = batch_norm_args(fname, x, running_mean, running_var, bn)
  return core.conv2d_batch_norm_relu_max_pool2d_dropout2d(xx, conv_weight, conv_bias, ph, pw, weight, bias, rm, rv,
    training, momentum, eps, p, generator, scale)
end

local ROW_NORM_OPTIONS = {"weight", "bias", "eps"}

-- The weight, bias and eps of a layer_norm or group_norm call, checked.
local function row_norm_options(fname, opts)
  opts = check.options(fname, "options", opts, ROW_NORM_OPTIONS)
  for _, what in ipairs {"weight", "bias"} do
    if opts[what] ~= nil then check.tensor(fname .. " (" .. what .. ")", opts[what]) end
  end
  return opts.weight, opts.bias, check.nonneg(fname, "eps", opts.eps == nil and 1e-5 or opts.eps)
end

--- The sizes of a normalized_shape: an integer n ({n}) or a list of integers >= 1.
function F._normalized_shape(fname, shape)
  if math.type(shape) ~= nil then return {check.int(fname, "normalized_shape", shape, 1)} end
  if type(shape) ~= "table" or getmetatable(shape) ~= nil or #shape == 0 then
    check.fail("%s: normalized_shape must be an integer or a list of integers (got %s)", fname,
      check.describe(shape))
  end
  local out = {}
  for i, v in ipairs(shape) do out[i] = check.int(fname, "normalized_shape[" .. i .. "]", v, 1) end
  return out
end

--- layer_norm(x, normalized_shape[, {weight, bias, eps = 1e-5}]): x normalized over its last dims,
-- which must be normalized_shape (an integer or a list); weight and bias of that shape.
function F.layer_norm(x, normalized_shape, opts)
  local shape = F._normalized_shape("layer_norm", normalized_shape)
  local weight, bias, eps = row_norm_options("layer_norm", opts)
  return core.nn_layer_norm(x, shape, weight, bias, eps)
end

--- group_norm(x, num_groups[, {weight, bias, eps = 1e-5}]): x [N, C, ...], C channels in num_groups
-- groups; weight and bias [C].
function F.group_norm(x, num_groups, opts)
  check.int("group_norm", "num_groups", num_groups, 1)
  local weight, bias, eps = row_norm_options("group_norm", opts)
  return core.nn_group_norm(x, num_groups, weight, bias, eps)
end

return F
