--- Normalization modules: BatchNorm1d, BatchNorm2d. The statistics live in
-- buffers (running_mean, running_var, num_batches_tracked), so they are in
-- state_dict() and in checkpoints; the arithmetic is F.batch_norm's.
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
local function batch_norm_forward(self, x)
  if x:shape()[2] ~= self.num_features then
    check.fail("%s: input has %d channels, expected num_features = %d (input shape [%s])", self.__name,
      x:shape()[2], self.num_features, table.concat(x:shape(), ","))
  end
  local y = F.batch_norm(x, self.running_mean, self.running_var, {weight = self.weight, bias = self.bias,
    training = self.training or not self.track_running_stats, momentum = self.momentum, eps = self.eps})
  if self.training and self.track_running_stats then
    dn.no_grad(function() self.num_batches_tracked:add_(1) end)
  end
  return y
end

local function batch_norm_class(name, dims, layout)
  local cls = Module:extend(name)
  M[name] = cls
  function cls:init(num_features, opts) batch_norm_init(self, name, num_features, opts) end
  function cls:forward(x)
    check.tensor(name, x)
    if not dims[x:dim()] then
      check.fail("%s: input must be %s (got shape [%s])", name, layout, table.concat(x:shape(), ","))
    end
    return batch_norm_forward(self, x)
  end
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
    if self.affine then
      dn.no_grad(function()
        self.weight:fill_(1)
        self.bias:fill_(0)
      end)
    end
    return self
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

return M
