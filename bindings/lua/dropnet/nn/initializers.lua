--- nn.init: in-place weight initialization, following PyTorch's
-- torch.nn.init (same gains, fans and bounds). Every function fills its
-- tensor under no_grad, returns it, and takes an optional last argument
-- {generator = g} (the default generator otherwise). The random numbers come
-- from dn.rand / dn.randn, so a seeded generator gives reproducible weights.
local dn = require "dropnet"
local check = require "dropnet.check"
local U = require "dropnet.nn.util"

local I = {}

local function check_tensor(t, fname)
  if not dn.is_tensor(t) then
    check.fail("init.%s: a tensor expected (got %s)", fname, check.describe(t))
  end
end

local function generator_of(opts, fname)
  if opts == nil then return nil end
  return check.generator("init." .. fname, check.options("init." .. fname, "options", opts, {"generator"}).generator)
end

-- Writes values into t in place without recording the write.
local function assign(t, values)
  dn.no_grad(t.copy_, t, values)
  return t
end

--- uniform_(t[, a = 0[, b = 1]][, {generator = g}]): U(a, b).
function I.uniform_(t, a, b, opts)
  check_tensor(t, "uniform_")
  if type(a) == "table" then a, b, opts = nil, nil, a end
  if type(b) == "table" then b, opts = nil, b end
  a = check.number("init.uniform_", "a", a or 0)
  b = check.number("init.uniform_", "b", b or 1)
  if a > b then check.fail("init.uniform_: a must be <= b (got %s > %s)", U.fmt(a), U.fmt(b)) end
  local g = generator_of(opts, "uniform_")
  return assign(t, dn.rand(t:shape(), g) * (b - a) + a)
end

--- normal_(t[, mean = 0[, std = 1]][, {generator = g}]): N(mean, std^2).
function I.normal_(t, mean, std, opts)
  check_tensor(t, "normal_")
  if type(mean) == "table" then mean, std, opts = nil, nil, mean end
  if type(std) == "table" then std, opts = nil, std end
  mean = check.number("init.normal_", "mean", mean or 0)
  std = check.number("init.normal_", "std", std or 1)
  if std < 0 then check.fail("init.normal_: std must be >= 0 (got %s)", U.fmt(std)) end
  local g = generator_of(opts, "normal_")
  return assign(t, dn.randn(t:shape(), g) * std + mean)
end

--- constant_(t, value)
function I.constant_(t, value)
  check_tensor(t, "constant_")
  check.number("init.constant_", "value", value)
  dn.no_grad(t.fill_, t, value)
  return t
end

function I.zeros_(t)
  check_tensor(t, "zeros_")
  return I.constant_(t, 0)
end

function I.ones_(t)
  check_tensor(t, "ones_")
  return I.constant_(t, 1)
end

--- calculate_gain(nonlinearity[, param]): PyTorch's table of recommended gains.
function I.calculate_gain(nonlinearity, param)
  local linear_like = {linear = true, identity = true, sigmoid = true, conv1d = true, conv2d = true, conv3d = true,
    conv_transpose1d = true, conv_transpose2d = true, conv_transpose3d = true}
  if linear_like[nonlinearity] then return 1 end
  if nonlinearity == "tanh" then return 5 / 3 end
  if nonlinearity == "relu" then return math.sqrt(2) end
  if nonlinearity == "selu" then return 3 / 4 end
  if nonlinearity == "leaky_relu" then
    local slope = param
    if slope == nil then slope = 0.01 end
    check.number("init.calculate_gain", "negative_slope", slope)
    return math.sqrt(2 / (1 + slope * slope))
  end
  check.fail("init.calculate_gain: unsupported nonlinearity %s (use linear, sigmoid, tanh, relu, "
    .. "leaky_relu, selu)", check.describe(nonlinearity))
end

--- fans(t): fan_in, fan_out of a weight [out, in, k...] (PyTorch's convention).
function I.fans(t)
  local shape = t:shape()
  if #shape < 2 then
    check.fail("init: fan in and fan out need a tensor of at least 2 dims (got %d-D)", #shape)
  end
  local receptive = 1
  for d = 3, #shape do receptive = receptive * shape[d] end
  return shape[2] * receptive, shape[1] * receptive
end

-- Positional arguments or one options table.
local function gain_args(gain, opts, fname)
  if type(gain) == "table" then gain, opts = nil, gain end
  opts = check.options("init." .. fname, "options", opts, {"gain", "generator"})
  gain = gain or opts.gain or 1
  return check.number("init." .. fname, "gain", gain), check.generator("init." .. fname, opts.generator)
end

--- xavier_uniform_(t[, gain = 1][, {gain =, generator =}]): U(-a, a) with
-- a = gain * sqrt(6 / (fan_in + fan_out)).
function I.xavier_uniform_(t, gain, opts)
  check_tensor(t, "xavier_uniform_")
  local g, gen = gain_args(gain, opts, "xavier_uniform_")
  if t:numel() == 0 then return t end
  local fan_in, fan_out = I.fans(t)
  local bound = g * math.sqrt(6 / (fan_in + fan_out))
  return I.uniform_(t, -bound, bound, {generator = gen})
end

--- xavier_normal_(t[, gain = 1][, opts]): N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).
function I.xavier_normal_(t, gain, opts)
  check_tensor(t, "xavier_normal_")
  local g, gen = gain_args(gain, opts, "xavier_normal_")
  if t:numel() == 0 then return t end
  local fan_in, fan_out = I.fans(t)
  return I.normal_(t, 0, g * math.sqrt(2 / (fan_in + fan_out)), {generator = gen})
end

-- kaiming_*_(t, {a =, mode =, nonlinearity =, generator =}) or positionally
-- (t, a, mode, nonlinearity[, opts]): the std gain / sqrt(fan).
local function kaiming_std(t, a, mode, nonlinearity, opts, fname)
  if type(a) == "table" then opts, a = a, nil end
  opts = check.options("init." .. fname, "options", opts, {"a", "mode", "nonlinearity", "generator"})
  if a == nil then a = opts.a or 0 end
  mode = check.choice("init." .. fname, "mode", mode or opts.mode or "fan_in", {"fan_in", "fan_out"})
  nonlinearity = nonlinearity or opts.nonlinearity or "leaky_relu"
  check.number("init." .. fname, "a", a)
  local fan_in, fan_out = I.fans(t)
  local fan = mode == "fan_in" and fan_in or fan_out
  return I.calculate_gain(nonlinearity, a) / math.sqrt(fan), check.generator("init." .. fname, opts.generator)
end

--- kaiming_uniform_(t[, {a = 0, mode = "fan_in", nonlinearity = "leaky_relu", generator = g}]):
-- U(-b, b) with b = gain * sqrt(3 / fan).
function I.kaiming_uniform_(t, a, mode, nonlinearity, opts)
  check_tensor(t, "kaiming_uniform_")
  if t:numel() == 0 then return t end
  local std, gen = kaiming_std(t, a, mode, nonlinearity, opts, "kaiming_uniform_")
  local bound = math.sqrt(3) * std
  return I.uniform_(t, -bound, bound, {generator = gen})
end

--- kaiming_normal_(t[, opts]): N(0, std^2) with std = gain / sqrt(fan).
function I.kaiming_normal_(t, a, mode, nonlinearity, opts)
  check_tensor(t, "kaiming_normal_")
  if t:numel() == 0 then return t end
  local std, gen = kaiming_std(t, a, mode, nonlinearity, opts, "kaiming_normal_")
  return I.normal_(t, 0, std, {generator = gen})
end

return I
