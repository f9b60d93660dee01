--- Normalization modules: BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm.
-- BatchNorm's statistics live in buffers (running_mean, running_var,
-- num_batches_tracked), so they are in state_dict() and in checkpoints; the
-- arithmetic is nn.functional's.
local dn = require "dropnet"
local base = require "dropnet.nn.module"
local check = require "dropnet.check"
local F = require "dropnet.nn.functional"

local Module, Parameter = base.Module, base.Parameter

local M = {}

local OPTIONS = {"eps", "momentum", "affine", "track_running_stats"}

-- The constructor shared by the classes: num_features channels, the options
-- with PyTorch's defaults; weight 1 and bias 0 when affine.
local function batch_norm_init(self, name, num_features, opts)
  self.num_features = check.int(name, "num_features", num_features, 1)
  opts = check.options(name, "options", opts, OPTIONS)
  self.eps = check.nonneg(name, "eps", opts.eps == nil and 1e-5 or opts.eps)
  local momentum = opts.momentum
  if momentum == nil then momentum = 0.1 end
  self.momentum = check.probability(name, "momentum", momentum)
  for _, key in ipairs {"affine", "track_running_stats"} do
    local v = opts[key]
    if v == nil then v = true end
    self[key] = check.bool(name, key, v)
  end
  if self.affine then
    self.weight = Parameter(dn.ones(self.num_features))
    self.bias = Parameter(dn.zeros(self.num_features))
  end
  if self.track_running_stats then
    self:register_buffer("running_mean", dn.zeros(self.num_features))
    self:register_buffer("running_var", dn.ones(self.num_features))
    self:register_buffer("num_batches_tracked", dn.zeros({}, "int32"))
  end
end

-- In training the batch's statistics (and the running ones updated); in eval
-- and MC mode the running statistics, or the batch's without them.
-- batch_norm: F.batch_norm, or F.batch_norm_relu for the layer and a ReLU
-- after it (dropnet.nn.fusion).
local function batch_norm_forward(self, x, batch_norm)
  if x:shape()[2] ~= self.num_features then
    check.fail("%s: input has %d channels, expected num_features = %d (input shape [%s])", self.__name,
      x:shape()[2], self.num_features, table.concat(x:shape(), ","))
  end
  local y = batch_norm(x, self.running_mean, self.running_var, {weight = self.weight, bias = self.bias,
    training = self.training or not self.track_running_stats, momentum = self.momentum, eps = self.eps})
  if self.training and self.track_running_stats then
    dn.no_grad(function() self.num_batches_tracked:add_(1) end)
  end
  return y
end

-- weight 1 and bias 0 again.
local function reset_affine(self)
  if self.weight then
    dn.no_grad(function()
      self.weight:fill_(1)
      self.bias:fill_(0)
    end)
  end
  return self
end

local function batch_norm_class(name, dims, layout)
  local cls = Module:extend(name)
  M[name] = cls
  function cls:init(num_features, opts) batch_norm_init(self, name, num_features, opts) end
  --- cls:forward_with(x, batch_norm): the layer's forward with batch_norm
  -- (F.batch_norm, or F.batch_norm_relu: the layer then ReLU, fused) as its
  -- arithmetic; forward is this with F.batch_norm.
  function cls:forward_with(x, batch_norm)
    check.tensor(name, x)
    if not dims[x:dim()] then
      check.fail("%s: input must be %s (got shape [%s])", name, layout, table.concat(x:shape(), ","))
    end
    return batch_norm_forward(self, x, batch_norm)
  end
  function cls:forward(x) return cls.forward_with(self, x, F.batch_norm) end
  --- Running mean 0, variance 1, no batch counted.
  function cls:reset_running_stats()
    if self.track_running_stats then
      dn.no_grad(function()
        self.running_mean:fill_(0)
        self.running_var:fill_(1)
        self.num_batches_tracked:fill_(0)
      end)
    end
    return self
  end
  --- The running statistics reset, weight 1 and bias 0.
  function cls:reset_parameters()
    self:reset_running_stats()
    return reset_affine(self)
  end
  function cls:extra_repr()
    return string.format("%d, eps=%g, momentum=%g, affine=%s, track_running_stats=%s", self.num_features, self.eps,
      self.momentum, tostring(self.affine), tostring(self.track_running_stats))
  end
  return cls
end

--- nn.BatchNorm1d(num_features[, {eps = 1e-5, momentum = 0.1, affine = true, track_running_stats = true}]):
-- x [N, C] or [N, C, L].
batch_norm_class("BatchNorm1d", {[2] = true, [3] = true}, "[N, C] or [N, C, L]")
--- nn.BatchNorm2d(num_features[, opts]): x [N, C, H, W].
batch_norm_class("BatchNorm2d", {[4] = true}, "[N, C, H, W]")

-- An affine pair: weight ones and bias zeros of shape, when affine.
local function affine_parameters(self, affine, shape)
  if affine then
    self.weight = Parameter(dn.ones(shape))
    self.bias = Parameter(dn.zeros(shape))
  end
end

--- nn.LayerNorm(normalized_shape[, {eps = 1e-5, elementwise_affine = true}]): normalizes over the last
-- dims, which must be normalized_shape (an integer or a list).
local LayerNorm = Module:extend("LayerNorm")
M.LayerNorm = LayerNorm
function LayerNorm:init(normalized_shape, opts)
  self.normalized_shape = F._normalized_shape("LayerNorm", normalized_shape)
  opts = check.options("LayerNorm", "options", opts, {"eps", "elementwise_affine"})
  self.eps = check.nonneg("LayerNorm", "eps", opts.eps == nil and 1e-5 or opts.eps)
  local affine = opts.elementwise_affine
  if affine == nil then affine = true end
  self.elementwise_affine = check.bool("LayerNorm", "elementwise_affine", affine)
  affine_parameters(self, affine, self.normalized_shape)
end
function LayerNorm:forward(x)
  return F.layer_norm(x, self.normalized_shape, {weight = self.weight, bias = self.bias, eps = self.eps})
end
LayerNorm.reset_parameters = reset_affine
function LayerNorm:extra_repr()
  return string.format("{%s}, eps=%g, elementwise_affine=%s", table.concat(self.normalized_shape, ", "), self.eps,
    tostring(self.elementwise_affine))
end

--- nn.GroupNorm(num_groups, num_channels[, {eps = 1e-5, affine = true}]): x [N, C, ...].
local GroupNorm = Module:extend("GroupNorm")
M.GroupNorm = GroupNorm
function GroupNorm:init(num_groups, num_channels, opts)
  self.num_groups = check.int("GroupNorm", "num_groups", num_groups, 1)
  self.num_channels = check.int("GroupNorm", "num_channels", num_channels, 1)
  if self.num_channels % self.num_groups ~= 0 then
    check.fail("GroupNorm: num_channels %d must be divisible by num_groups %d", self.num_channels, self.num_groups)
  end
  opts = check.options("GroupNorm", "options", opts, {"eps", "affine"})
  self.eps = check.nonneg("GroupNorm", "eps", opts.eps == nil and 1e-5 or opts.eps)
  local affine = opts.affine
  if affine == nil then affine = true end
  self.affine = check.bool("GroupNorm", "affine", affine)
  affine_parameters(self, affine, {self.num_channels})
end
function GroupNorm:forward(x)
  check.tensor("GroupNorm", x)
  if x:dim() < 2 or x:shape()[2] ~= self.num_channels then
    check.fail("GroupNorm: input must be [N, %d, ...] (got shape [%s])", self.num_channels,
      table.concat(x:shape(), ","))
  end
  return F.group_norm(x, self.num_groups, {weight = self.weight, bias = self.bias, eps = self.eps})
end
GroupNorm.reset_parameters = reset_affine
function GroupNorm:extra_repr()
  return string.format("%d, %d, eps=%g, affine=%s", self.num_groups, self.num_channels, self.eps,
    tostring(self.affine))
end

return M
