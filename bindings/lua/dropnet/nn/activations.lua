--- Activation modules: thin wrappers over nn.functional.
local base = require "dropnet.nn.module"
local check = require "dropnet.check"
local U = require "dropnet.nn.util"
local F = require "dropnet.nn.functional"

local Module = base.Module

local M = {}

-- An activation without options. (ReLU, Sigmoid and Tanh after a Linear in
-- a Sequential run inside the Linear's kernel: see dropnet.nn.fusion.)
local function simple(name, fn)
  local cls = Module:extend(name)
  cls.forward = function(_, x) return fn(x) end
  M[name] = cls
  return cls
end

simple("ReLU", F.relu)
simple("Sigmoid", F.sigmoid)
simple("Tanh", F.tanh)
simple("SELU", F.selu)

-- A number given directly or as opts[key]; dflt when absent.
local function number_arg(v, key, dflt, where)
  if type(v) == "table" then v = check.options(where, "options", v, {key})[key] end
  if v == nil then v = dflt end
  return check.number(where, key, v)
end

--- nn.LeakyReLU([negative_slope = 0.01]) (or {negative_slope = ...})
local LeakyReLU = Module:extend("LeakyReLU")
M.LeakyReLU = LeakyReLU
function LeakyReLU:init(negative_slope)
  self.negative_slope = number_arg(negative_slope, "negative_slope", 0.01, "LeakyReLU")
end
function LeakyReLU:forward(x) return F.leaky_relu(x, self.negative_slope) end
function LeakyReLU:extra_repr() return "negative_slope=" .. U.fmt(self.negative_slope) end

--- nn.ELU([alpha = 1]) (or {alpha = ...})
local ELU = Module:extend("ELU")
M.ELU = ELU
function ELU:init(alpha)
  self.alpha = number_arg(alpha, "alpha", 1.0, "ELU")
end
function ELU:forward(x) return F.elu(x, self.alpha) end
function ELU:extra_repr() return "alpha=" .. U.fmt(self.alpha) end

--- nn.GELU([{approximate = "none" | "tanh"}]) (or the string alone)
local GELU = Module:extend("GELU")
M.GELU = GELU
function GELU:init(opts)
  local approximate = opts
  if type(opts) == "table" then approximate = check.options("GELU", "options", opts, {"approximate"}).approximate end
  self.approximate = check.choice("GELU", "approximate", approximate or "none", {"none", "tanh"})
end
function GELU:forward(x) return F.gelu(x, self.approximate) end
function GELU:extra_repr() return string.format("approximate=%q", self.approximate) end

-- Softmax-like layers take one dim (1-based, negative from the end; default -1).
local function dim_layer(name, kernel)
  local cls = Module:extend(name)
  cls.init = function(self, dim)
    if type(dim) == "table" then dim = check.options(name, "options", dim, {"dim"}).dim end
    dim = check.int(name, "dim", dim or -1)
    if dim == 0 then check.error(name .. ": dims are 1-based (negative from the end); 0 is not a dim") end
    self.dim = dim
  end
  cls.forward = function(self, x) return kernel(x, self.dim) end
  cls.extra_repr = function(self) return "dim=" .. self.dim end
  M[name] = cls
  return cls
end

dim_layer("Softmax", F.softmax)
dim_layer("LogSoftmax", F.log_softmax)

return M
