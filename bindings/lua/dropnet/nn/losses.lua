--- Loss modules, called as loss_fn(input, target). Class targets are int32
-- indices starting at 1 (Torch7's convention).
local base = require "dropnet.nn.module"
local F = require "dropnet.nn.functional"
local check = require "dropnet.check"
local U = require "dropnet.nn.util"

local Module = base.Module

local M = {}

local REDUCTIONS = {"mean", "sum", "none"}

-- A loss class whose options are `known` (reduction always among them).
local function loss_class(name, known)
  local cls = Module:extend(name)
  cls.init = function(self, opts)
    if type(opts) == "string" then opts = {reduction = opts} end
    opts = check.options(name, "options", opts, known)
    self.reduction = check.choice(name, "reduction", opts.reduction or "mean", REDUCTIONS)
  end
  cls.extra_repr = function(self)
    if self.reduction == "mean" then return "" end
    return string.format("reduction=%q", self.reduction)
  end
  M[name] = cls
  return cls
end

--- nn.CrossEntropyLoss([{label_smoothing = 0, reduction = "mean"}]): fused
-- log-softmax + NLL over logits [N, C] and int32 targets [N] in 1..C.
local CrossEntropyLoss = loss_class("CrossEntropyLoss", {"reduction", "label_smoothing"})
local base_init = CrossEntropyLoss.init
function CrossEntropyLoss:init(opts)
  base_init(self, opts)
  local smoothing = type(opts) == "table" and opts.label_smoothing or 0
  check.number("CrossEntropyLoss", "label_smoothing", smoothing)
  if smoothing < 0 or smoothing > 1 then
    check.fail("CrossEntropyLoss: label_smoothing must be in [0, 1] (got %s)", U.fmt(smoothing))
  end
  self.label_smoothing = smoothing
end
function CrossEntropyLoss:forward(input, target)
  return F.cross_entropy(input, target, {label_smoothing = self.label_smoothing, reduction = self.reduction})
end
function CrossEntropyLoss:extra_repr()
  local parts = {}
  if self.label_smoothing ~= 0 then parts[#parts + 1] = "label_smoothing=" .. U.fmt(self.label_smoothing) end
  if self.reduction ~= "mean" then parts[#parts + 1] = string.format("reduction=%q", self.reduction) end
  return table.concat(parts, ", ")
end

--- nn.NLLLoss([{reduction = "mean"}]): log-probabilities [N, C], int32 targets [N] in 1..C.
local NLLLoss = loss_class("NLLLoss", {"reduction"})
function NLLLoss:forward(input, target)
  return F.nll_loss(input, target, self.reduction)
end

--- nn.MSELoss([{reduction = "mean"}])
local MSELoss = loss_class("MSELoss", {"reduction"})
function MSELoss:forward(input, target)
  return F.mse_loss(input, target, self.reduction)
end

--- nn.BCEWithLogitsLoss([{reduction = "mean"}]): sigmoid + binary cross
-- entropy in one stable kernel; target in [0, 1], the shape of the logits.
local BCEWithLogitsLoss = loss_class("BCEWithLogitsLoss", {"reduction"})
function BCEWithLogitsLoss:forward(input, target)
  return F.binary_cross_entropy_with_logits(input, target, self.reduction)
end

return M
