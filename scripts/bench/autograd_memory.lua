-- scripts/bench/autograd_memory.lua — does a long training loop keep memory flat?
-- Trains a small MLP (raw tensor ops + autograd + optim.SGD) for N steps and
-- prints the process's resident memory and the runtime's live bytes at
-- checkpoints. Flat numbers mean graphs are freed and Lua's collector keeps
-- up with C memory it cannot see.
--   dropnet scripts/bench/autograd_memory.lua [steps=10000]
local dn = require "dropnet"
local optim = require "dropnet.optim"

local steps = tonumber(arg[1]) or 10000
dn.manual_seed(1)

local function rss_mb()
  local f = io.open("/proc/self/statm")
  if not f then return 0 end
  local pages = f:read("*n") and f:read("*n")
  f:close()
  return pages * 4096 / 2^20
end

local x = dn.randn(64, 784)
local y = (dn.rand(64) * 10):int() + 1
local w1 = (dn.randn(256, 784) * 0.05):requires_grad_()
local b1 = dn.zeros(256):requires_grad_()
local w2 = (dn.randn(10, 256) * 0.05):requires_grad_()
local b2 = dn.zeros(10):requires_grad_()
local opt = optim.SGD({w1, b1, w2, b2}, {lr = 0.05, momentum = 0.9})

print(string.format("%8s  %10s  %12s  %s", "step", "RSS (MB)", "live (MB)", "loss"))
local t0 = dn.clock()
for step = 1, steps do
  local h = dn.nn_linear(x, w1, b1, "relu")
  local logits = dn.nn_linear(h, w2, b2)
  local loss = dn.nn_cross_entropy(logits, y, 0, "mean")
  opt:zero_grad()
  loss:backward()
  opt:step()
  if step == 1 or step % (steps // 10) == 0 then
    print(string.format("%8d  %10.1f  %12.2f  %.4f", step, rss_mb(), dn.memory_stats().live_bytes / 2^20,
      loss:item()))
  end
end
print(string.format("%d steps in %.1f s", steps, dn.clock() - t0))
