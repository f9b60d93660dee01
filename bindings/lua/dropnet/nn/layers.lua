--- Layers with parameters or shape logic: Linear, Flatten, Identity.
local dn = require "dropnet"
local base = require "dropnet.nn.module"
local init = require "dropnet.nn.initializers"
local F = require "dropnet.nn.functional"
local check = require "dropnet.check"
local U = require "dropnet.nn.util"

local Module, Parameter = base.Module, base.Parameter

local M = {}

-- --- Linear ------------------------------------------------------------------------

local Linear = Module:extend("Linear")
M.Linear = Linear
Linear.uses_generator = true   -- DropConnect masks come from self.generator

--- nn.Linear(in_features, out_features[, {bias = true, activation = nil, dropconnect = nil, generator = g}]):
-- y = x @ weight^T + bias, weight [out, in] as in PyTorch. activation
-- ("relu", "tanh", "sigmoid") is applied inside the same fused kernel.
-- dropconnect = p drops each weight with probability p in training and MC
-- mode (a fresh mask per forward; gradients reach only the kept weights);
-- `self.dropconnect` may change between steps. generator initializes the
-- weights and draws the DropConnect masks (default: the global generator).
function Linear:init(in_features, out_features, opts)
  self.in_features = check.int("Linear", "in_features", in_features, 1)
  self.out_features = check.int("Linear", "out_features", out_features, 1)
  opts = check.options("Linear", "options", opts, {"bias", "activation", "dropconnect", "generator"})
  local bias = opts.bias
  if bias == nil then bias = true end
  check.bool("Linear", "bias", bias)
  if opts.activation ~= nil then
    check.choice("Linear", "activation", opts.activation, {"relu", "tanh", "sigmoid"})
  end
  self.activation = opts.activation
  check.generator("Linear", opts.generator)
  self.dropconnect = nil   -- declared: the fusion plan reads it at every call
  if opts.dropconnect ~= nil then
    self.dropconnect = check.probability("Linear", "dropconnect", opts.dropconnect)
  end
  self.generator = opts.generator
  self.weight = Parameter(dn.zeros(self.out_features, self.in_features))
  if bias then self.bias = Parameter(dn.zeros(self.out_features)) end
  self:reset_parameters({generator = opts.generator})
end

--- PyTorch's default: kaiming_uniform_(a = sqrt(5)) on the weight, which is
-- U(-1/sqrt(in), 1/sqrt(in)), and the same bound for the bias.
function Linear:reset_parameters(opts)
  opts = check.options("Linear:reset_parameters", "options", opts, {"generator"})
  init.kaiming_uniform_(self.weight, {a = math.sqrt(5), generator = opts.generator})
  if self.bias then
    local bound = 1 / math.sqrt(self.in_features)
    init.uniform_(self.bias, -bound, bound, {generator = opts.generator})
  end
  return self
end

--- Linear:forward_with_activation(x, activation): the layer, then
-- activation (nil, "relu", "tanh", "sigmoid") fused into its kernel. With
-- DropConnect drawing, the activation follows the masked layer. forward is
-- this with self.activation; nn.Sequential's fusion of a Linear and the
-- activation layer after it (dropnet.nn.fusion) is this with the layer's.
function Linear:forward_with_activation(x, activation)
  local p = self.dropconnect
  if p == nil then return F.linear(x, self.weight, self.bias, activation) end
  check.probability("Linear", "dropconnect", p)
  return F.dropconnect_linear(x, self.weight, self.bias, p, self:is_stochastic(),
    {generator = self.generator, activation = activation})
end

function Linear:forward(x)
  return Linear.forward_with_activation(self, x, self.activation)
end

function Linear:extra_repr()
  local s = string.format("in_features=%d, out_features=%d, bias=%s", self.in_features, self.out_features,
    tostring(self.bias ~= nil))
  if self.activation then s = s .. ", activation=" .. self.activation end
  if self.dropconnect ~= nil then s = s .. ", dropconnect=" .. U.fmt(self.dropconnect) end
  return s
end

-- --- Flatten ---------------------------------------------------------------------------

local Flatten = Module:extend("Flatten")
M.Flatten = Flatten

--- nn.Flatten([start_dim = 2[, end_dim = -1]]): merges dims start..end
-- (1-based, negative from the end) into one; the batch dim 1 is kept.
function Flatten:init(start_dim, end_dim)
  self.start_dim = check.int("Flatten", "start_dim", start_dim or 2)
  self.end_dim = check.int("Flatten", "end_dim", end_dim or -1)
  if self.start_dim == 0 or self.end_dim == 0 then
    check.error("Flatten: dims are 1-based (negative from the end); 0 is not a dim")
  end
end

function Flatten:forward(x)
  check.tensor("Flatten", x)
  local shape = x:shape()
  local n = #shape
  local s = self.start_dim < 0 and self.start_dim + n + 1 or self.start_dim
  local e = self.end_dim < 0 and self.end_dim + n + 1 or self.end_dim
  if s < 1 or s > n or e < 1 or e > n or s > e then
    check.fail("Flatten: dims %d..%d out of range for a %d-D input of shape [%s]", self.start_dim,
      self.end_dim, n, table.concat(shape, ","))
  end
  local new_shape, merged = {}, 1
  for d = 1, s - 1 do new_shape[#new_shape + 1] = shape[d] end
  for d = s, e do merged = merged * shape[d] end
  new_shape[#new_shape + 1] = merged
  for d = e + 1, n do new_shape[#new_shape + 1] = shape[d] end
  return x:reshape(new_shape)
end

function Flatten:extra_repr()
  return string.format("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim)
end

-- --- Unflatten -------------------------------------------------------------------------

local Unflatten = Module:extend("Unflatten")
M.Unflatten = Unflatten

--- nn.Unflatten(dim, sizes): splits dim (1-based, negative from the end) into the
-- sizes of the table (their product must equal that dim's size); the inverse of Flatten.
function Unflatten:init(dim, sizes)
  self.dim = check.int("Unflatten", "dim", dim)
  if self.dim == 0 then check.error("Unflatten: dims are 1-based (negative from the end); 0 is not a dim") end
  if type(sizes) ~= "table" or #sizes == 0 then
    check.error("Unflatten: sizes must be a non-empty table of positive integers, got " .. type(sizes))
  end
  self.sizes = {}
  for k, v in ipairs(sizes) do
    self.sizes[k] = check.int("Unflatten", "sizes[" .. k .. "]", v)
    if v < 1 then check.fail("Unflatten: sizes[%d] must be positive, got %d", k, v) end
  end
end

function Unflatten:forward(x)
  check.tensor("Unflatten", x)
  local shape = x:shape()
  local n = #shape
  local d = self.dim < 0 and self.dim + n + 1 or self.dim
  if d < 1 or d > n then
    check.fail("Unflatten: dim %d out of range for a %d-D input of shape [%s]", self.dim, n,
      table.concat(shape, ","))
  end
  local product = 1
  for _, v in ipairs(self.sizes) do product = product * v end
  if product ~= shape[d] then
    check.fail("Unflatten: sizes [%s] (product %d) do not split dim %d of size %d (input [%s])",
      table.concat(self.sizes, ","), product, self.dim, shape[d], table.concat(shape, ","))
  end
  local new_shape = {}
  for k = 1, d - 1 do new_shape[#new_shape + 1] = shape[k] end
  for _, v in ipairs(self.sizes) do new_shape[#new_shape + 1] = v end
  for k = d + 1, n do new_shape[#new_shape + 1] = shape[k] end
  return x:reshape(new_shape)
end

function Unflatten:extra_repr()
  return string.format("dim=%d, sizes={%s}", self.dim, table.concat(self.sizes, ", "))
end

-- --- Identity ----------------------------------------------------------------------------

local Identity = Module:extend("Identity")
M.Identity = Identity

--- nn.Identity(): returns its input (arguments to the constructor are ignored).
function Identity:forward(x)
  return x
end

return M
