--- dropnet.nn: modules, containers, layers, activations, losses, the dropout
-- family and MC dropout (nn.mc_predict), weight initialization (nn.init) and
-- the functional forms (nn.functional).
--
--   local nn = require "dropnet.nn"       -- or (require "dropnet").nn
--   local model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
--   local loss = nn.CrossEntropyLoss()(model(x), y)
--
-- New layers: see the comment at the top of dropnet/nn/module.lua.
local base = require "dropnet.nn.module"

local nn = {
  Module = base.Module,
  Parameter = base.Parameter,
  is_parameter = base.is_parameter,
  is_module = base.is_module,
  isinstance = base.isinstance,
  init = require "dropnet.nn.initializers",
  functional = require "dropnet.nn.functional",
}

for _, family in ipairs {"dropnet.nn.containers", "dropnet.nn.layers", "dropnet.nn.conv", "dropnet.nn.activations",
                         "dropnet.nn.losses", "dropnet.nn.dropout"} do
  for name, cls in pairs(require(family)) do nn[name] = cls end
end
for name, cls in pairs(require "dropnet.nn.pooling") do nn[name] = cls end
for name, cls in pairs(require "dropnet.nn.normalization") do nn[name] = cls end
nn.DataParallel = require("dropnet.nn.parallel").DataParallel

return nn
