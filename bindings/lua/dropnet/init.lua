--- dropnet: tensors, autograd, layers and dropout, computed in C.
-- `local dn = require "dropnet"` returns this table; nothing is global.
local core = require "dropnet.core"

local dn = {}
for name, value in pairs(core) do dn[name] = value end

dn.version = core.version

--- True when `x` is a dropnet tensor.
function dn.is_tensor(x)
  return getmetatable(x) == core.Tensor
end

return dn
