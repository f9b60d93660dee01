--- dropnet.nn.functional: the layers and losses as plain functions of
-- tensors (the modules call these). Every one is differentiable; the
-- arithmetic happens in C. Dims are 1-based, negative from the end.
local core = require "dropnet.core"
local U = require "dropnet.nn.util"

local F = {}

local REDUCTIONS = {"mean", "sum", "none"}
local ACTIVATIONS = {"relu", "tanh", "sigmoid"}

-- The reduction of a loss call: a string, or {reduction = ...}; "mean" by default.
local function reduction_of(opts, fname, known)
  if type(opts) == "string" then return U.check_choice(opts, REDUCTIONS, fname, "reduction") end
  opts = U.check_options(opts, known or {"reduction"}, fname)
  return U.check_choice(opts.reduction or "mean", REDUCTIONS, fname, "reduction"), opts
end

-- --- activations ------------------------------------------------------------------

function F.relu(x) return core.relu(x) end
function F.sigmoid(x) return core.sigmoid(x) end
function F.tanh(x) return core.tanh(x) end

--- leaky_relu(x[, negative_slope = 0.01])
function F.leaky_relu(x, negative_slope)
  if negative_slope == nil then negative_slope = 0.01 end
  return core.nn_leaky_relu(x, U.check_number(negative_slope, "leaky_relu", "negative_slope"))
end

--- elu(x[, alpha = 1])
function F.elu(x, alpha)
  if alpha == nil then alpha = 1.0 end
  return core.nn_elu(x, U.check_number(alpha, "elu", "alpha"))
end

--- selu(x): the self-normalizing constants of Klambauer et al. 2017.
function F.selu(x) return core.nn_selu(x) end

--- gelu(x[, approximate = "none" | "tanh"]) (or {approximate = ...})
function F.gelu(x, approximate)
  if type(approximate) == "table" then
    approximate = U.check_options(approximate, {"approximate"}, "gelu").approximate
  end
  approximate = U.check_choice(approximate or "none", {"none", "tanh"}, "gelu", "approximate")
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
  if activation ~= nil then U.check_choice(activation, ACTIVATIONS, "linear", "activation") end
  return core.nn_linear(x, weight, bias, activation)
end

-- --- losses -----------------------------------------------------------------------------

--- cross_entropy(logits, target[, {label_smoothing = 0, reduction = "mean"}]):
-- logits [N, C], target [N] int32 class indices 1..C.
function F.cross_entropy(logits, target, opts)
  local reduction, o = reduction_of(opts, "cross_entropy", {"reduction", "label_smoothing"})
  local smoothing = o and o.label_smoothing or 0
  U.check_number(smoothing, "cross_entropy", "label_smoothing")
  if smoothing < 0 or smoothing > 1 then
    error(string.format("cross_entropy: label_smoothing must be in [0, 1] (got %s)", U.fmt(smoothing)), 0)
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

return F
