--- Convolution layers: Conv1d, Conv2d (NCHW, PyTorch's layouts and initialization).
local dn = require "dropnet"
local base = require "dropnet.nn.module"
local init = require "dropnet.nn.initializers"
local F = require "dropnet.nn.functional"
local check = require "dropnet.check"

local Module, Parameter = base.Module, base.Parameter

local M = {}

local OPTIONS = {"stride", "padding", "dilation", "groups", "bias", "padding_mode", "generator"}

-- The shared constructor of an n-d convolution named `name`.
local function conv_init(self, name, n, in_channels, out_channels, kernel_size, opts)
  self.in_channels = check.int(name, "in_channels", in_channels, 1)
  self.out_channels = check.int(name, "out_channels", out_channels, 1)
  self.kernel_size = F._conv_ints(name, "kernel_size", kernel_size, n, 1)
  opts = check.options(name, "options", opts, OPTIONS)
  local o = F._conv_options(name, n, opts)
  self.stride, self.padding, self.dilation, self.groups = o.stride, o.padding, o.dilation, o.groups
  if self.in_channels % self.groups ~= 0 or self.out_channels % self.groups ~= 0 then
    check.fail("%s: groups %d must divide in_channels %d and out_channels %d", name, self.groups,
      self.in_channels, self.out_channels)
  end
  local mode = opts.padding_mode or "zeros"
  if mode ~= "zeros" then
    check.fail("%s: padding_mode must be \"zeros\" (got %s; \"reflect\", \"replicate\" and \"circular\" are not "
      .. "supported yet)", name, check.describe(mode))
  end
  self.padding_mode = mode
  local bias = opts.bias
  if bias == nil then bias = true end
  check.bool(name, "bias", bias)
  check.generator(name, opts.generator)
  local shape = {self.out_channels, self.in_channels // self.groups}
  for d = 1, n do shape[d + 2] = self.kernel_size[d] end
  self.weight = Parameter(dn.zeros(shape))
  if bias then self.bias = Parameter(dn.zeros(self.out_channels)) end
  self:reset_parameters({generator = opts.generator})
end

-- PyTorch's default: kaiming_uniform_(a = sqrt(5)) on the weight, U(-1/sqrt(fan_in),
-- 1/sqrt(fan_in)) with fan_in = in/groups * kernel elements, and the same bound for the bias.
local function conv_reset(self, name, opts)
  opts = check.options(name .. ":reset_parameters", "options", opts, {"generator"})
  init.kaiming_uniform_(self.weight, {a = math.sqrt(5), generator = opts.generator})
  if self.bias then
    local fan_in = init.fans(self.weight)
    local bound = fan_in > 0 and 1 / math.sqrt(fan_in) or 0
    init.uniform_(self.bias, -bound, bound, {generator = opts.generator})
  end
  return self
end

local function list_str(v)
  if type(v) == "string" then return string.format("%q", v) end
  return "{" .. table.concat(v, ", ") .. "}"
end

local function conv_repr(self)
  local s = string.format("%d, %d, kernel_size=%s, stride=%s", self.in_channels, self.out_channels,
    list_str(self.kernel_size), list_str(self.stride))
  if type(self.padding) == "string" or self.padding[1] ~= 0 or (self.padding[2] or 0) ~= 0 then
    s = s .. ", padding=" .. list_str(self.padding)
  end
  if self.dilation[1] ~= 1 or (self.dilation[2] or 1) ~= 1 then s = s .. ", dilation=" .. list_str(self.dilation) end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if not self.bias then s = s .. ", bias=false" end
  return s
end

local function conv_opts(self)
  return {stride = self.stride, padding = self.padding, dilation = self.dilation, groups = self.groups}
end

-- --- Conv2d ----------------------------------------------------------------------------

local Conv2d = Module:extend("Conv2d")
M.Conv2d = Conv2d

--- nn.Conv2d(in_channels, out_channels, kernel_size[, {stride = 1, padding = 0,
-- dilation = 1, groups = 1, bias = true, padding_mode = "zeros", generator = g}]):
-- sizes an integer or {h, w}; padding also "same" (stride 1) or "valid".
-- weight [out, in/groups, kh, kw], bias [out], initialized as PyTorch does.
function Conv2d:init(in_channels, out_channels, kernel_size, opts)
  conv_init(self, "Conv2d", 2, in_channels, out_channels, kernel_size, opts)
end

function Conv2d:reset_parameters(opts) return conv_reset(self, "Conv2d", opts) end

--- Conv2d:forward_with(x, conv): the layer's forward with conv (F.conv2d, or F.conv2d_relu: the layer then
-- ReLU, fused) as its arithmetic; forward is this with F.conv2d.
function Conv2d:forward_with(x, conv)
  check.input("Conv2d", x, 4, "[N, C, H, W]")
  return conv(x, self.weight, self.bias, conv_opts(self))
end

function Conv2d:forward(x) return Conv2d.forward_with(self, x, F.conv2d) end

Conv2d.extra_repr = conv_repr

-- --- Conv1d ----------------------------------------------------------------------------

local Conv1d = Module:extend("Conv1d")
M.Conv1d = Conv1d

--- nn.Conv1d(in_channels, out_channels, kernel_size[, opts]): Conv2d's options, integers.
function Conv1d:init(in_channels, out_channels, kernel_size, opts)
  conv_init(self, "Conv1d", 1, in_channels, out_channels, kernel_size, opts)
end

function Conv1d:reset_parameters(opts) return conv_reset(self, "Conv1d", opts) end

--- Conv1d:forward_with(x, conv): as Conv2d's, with F.conv1d or F.conv1d_relu.
function Conv1d:forward_with(x, conv)
  check.input("Conv1d", x, 3, "[N, C, L]")
  return conv(x, self.weight, self.bias, conv_opts(self))
end

function Conv1d:forward(x) return Conv1d.forward_with(self, x, F.conv1d) end

Conv1d.extra_repr = conv_repr

return M
