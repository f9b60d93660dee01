--- dropnet: tensors, autograd, layers and dropout, computed in C.
-- `local dn = require "dropnet"` returns this table; nothing is global.
local core = require "dropnet.core"

local dn = {}
for name, value in pairs(core) do dn[name] = value end

--- True when `x` is a dropnet tensor.
function dn.is_tensor(x)
  return getmetatable(x) == core.Tensor
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
