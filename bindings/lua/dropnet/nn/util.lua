--- Number formatting for printed models, shared by the nn modules. Internal
-- to dropnet.nn (argument and option checks live in dropnet.check).
local U = {}

--- A number as printed in a model summary: 0.01, 1, 1e-05.
function U.fmt(v)
  if math.type(v) == "integer" then return tostring(v) end
  return string.format("%.6g", v)
end

return U
