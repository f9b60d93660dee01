-- scripts/train.lua — the main job.
-- Until the training stack lands (autograd, nn, data), this trains a softmax
-- classifier on synthetic, linearly separable data with hand-derived
-- gradients, all of it tensor ops computed in C. It prints the loss as it
-- goes and the final accuracy, which must reach 90% on this data (overlapping blobs).
local dn = require "dropnet"

local usage = [[
usage: dropnet scripts/train.lua [--steps N] [--lr X] [--seed N] [--quiet]
  --steps N   gradient steps (default 200)
  --lr X      learning rate (default 0.5)
  --seed N    random seed (default 1)
  --quiet     print only the final line
]]

local opts = {steps = 200, lr = 0.5, seed = 1, quiet = false}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--help" or a == "-h" then io.write(usage) os.exit(0)
  elseif a == "--quiet" then opts.quiet = true
  elseif a == "--steps" or a == "--lr" or a == "--seed" then
    local v = tonumber(arg[i + 1])
    if not v then io.stderr:write("train.lua: ", a, " needs a number\n", usage) os.exit(2) end
    opts[a:sub(3)] = v
    i = i + 1
  else
    io.stderr:write("train.lua: unknown option '", a, "'\n", usage) os.exit(2)
  end
  i = i + 1
end

dn.manual_seed(opts.seed)
local n, features, classes = 2048, 32, 4

-- Synthetic data: each class is a Gaussian blob around its own centre.
local centres = dn.randn(classes, features) * 0.5
local labels = (dn.rand(n) * classes):int() + 1                      -- int32 in 1..classes
local onehot = labels:one_hot(classes)                                 -- [n, classes]
local x = onehot:matmul(centres) + dn.randn(n, features)               -- [n, features]

local w = dn.zeros(features, classes)
local b = dn.zeros(classes)
local t0 = dn.clock()
local loss
for step = 1, opts.steps do
  -- forward: softmax(x w + b), stabilized by subtracting the row max
  local logits = x:matmul(w) + b
  local shifted = logits - logits:max(2, true)
  local e = shifted:exp()
  local probs = e / e:sum(2, true)
  loss = -(((probs:log()) * onehot):sum(2)):mean():item()
  -- backward by hand: dlogits = (probs - onehot) / n
  local g = (probs - onehot) / n
  w:sub_(x:t():matmul(g) * opts.lr)
  b:sub_(g:sum(1) * opts.lr)
  if not opts.quiet and (step == 1 or step % 50 == 0) then
    print(string.format("step %4d  loss %.4f", step, loss))
  end
end
local seconds = dn.clock() - t0

local predicted = (x:matmul(w) + b):argmax(2)
local accuracy = predicted:eq(labels):float():mean():item()
print(string.format("final loss %.4f  train accuracy %.4f  (%d steps, %.2f s)", loss, accuracy, opts.steps, seconds))
if accuracy < 0.9 then
  io.stderr:write("train.lua: accuracy below 0.9 — something is wrong in the runtime\n")
  os.exit(1)
end
