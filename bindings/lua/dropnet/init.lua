--- dropnet: tensors, autograd, layers and dropout, computed in C.
-- `local dn = require "dropnet"` returns this table; nothing is global.
local core = require "dropnet.core"
local check = require "dropnet.check"

local dn = {}
for name, value in pairs(core) do dn[name] = value end

--- True when `x` is a dropnet tensor.
function dn.is_tensor(x)
  return getmetatable(x) == core.Tensor
end

--- dn.histogram(t[, opts]): counts and bin edges of t's values, for plots and
-- reports. opts: bins (10), range ({min, max}; default the data's), density
-- (counts / (total * bin width)). The counting is dn.histc's, in C.
function dn.histogram(t, opts)
  opts = check.options("histogram", "options", opts, {"bins", "range", "density"})
  check.tensor("histogram", t)
  local bins = opts.bins == nil and 10 or check.int("histogram", "bins", opts.bins, 1)
  local lo, hi = 0, 0
  if opts.range ~= nil then
    local r = opts.range
    if type(r) ~= "table" or #r ~= 2 then
      check.fail("histogram: range must be a table {min, max} (got %s)", check.describe(r))
    end
    lo, hi = check.number("histogram", "range[1]", r[1]), check.number("histogram", "range[2]", r[2])
    if not (lo < hi) then check.fail("histogram: range must have min < max (got {%s, %s})", lo, hi) end
  end
  local counts, edges = core.histc(t, bins, lo, hi)
  if opts.density ~= nil and check.bool("histogram", "density", opts.density) then
    local width = (edges[bins + 1] - edges[1]) / bins
    counts = counts:div(counts:sum():item() * width)
  end
  return counts, edges
end

-- dn.nn, dn.optim, dn.data, dn.plot and dn.analysis load on first use: they require
-- "dropnet" themselves, so loading them here would be a cycle.
local lazy_modules = {nn = "dropnet.nn", optim = "dropnet.optim", data = "dropnet.data",
  plot = "dropnet.plot", analysis = "dropnet.analysis"}
setmetatable(dn, {__index = function(t, key)
  local name = lazy_modules[key]
  if not name then return nil end
  local m = require(name)
  rawset(t, key, m)
  return m
end})

return dn
