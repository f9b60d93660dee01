-- scripts/bench/dropout.lua — dropout throughput against the memory-bandwidth roof.
--
--   lua5.4 scripts/bench/dropout.lua [threads = 2] [--torch-gelems X[,Y]] [--rounds N] [--seconds S]
--
-- On 16M floats and on [128, 1024], in the same run: (a) a plain copy of the
-- tensor into a preallocated one (dst:copy_(src), one parallel memcpy: the
-- bandwidth roof), (b) the dropout forward (core.dropout and
-- nn.functional.dropout in training, p = 0.5), (c) forward + backward:
-- y = F.dropout(x, 0.5, true) with x requiring grad, then y:backward(g).
-- Each figure is the median of --rounds samples, a sample timing enough calls
-- to take ~--seconds (default 0.2 s); the cases of one size take their samples in turn (round
-- robin), so a noisy neighbour slows all of them alike. Bytes count the useful traffic as PyTorch's peer script
-- (shared/peers/torch_dropout_bench.py) does: 8 B per element per pass (one
-- float read, one written), so copy and forward move 8 B/element and
-- forward + backward 16 B/element. --torch-gelems X is PyTorch's F.dropout
-- forward+backward rate on this machine (G elements/s, e.g. from that script,
-- same thread count) on 16M floats, and Y on [128,1024], for the comparison lines.
local dn = require "dropnet"
local core = require "dropnet.core"
local F = require("dropnet.nn").functional

local threads, torch_gelems, rounds, seconds = 2, {}, 9, 0.2
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--torch-gelems" then
      local list = assert(arg[i + 1], "--torch-gelems needs a number (or two, comma-separated)")
      for v in list:gmatch("[^,]+") do
        torch_gelems[#torch_gelems + 1] = assert(tonumber(v), "--torch-gelems: not a number: " .. v)
      end
      i = i + 1
    elseif a == "--rounds" then
      rounds = assert(math.tointeger(tonumber(arg[i + 1])), "--rounds needs an integer")
      i = i + 1
    elseif a == "--seconds" then
      seconds = assert(tonumber(arg[i + 1]), "--seconds needs a number")
      i = i + 1
    elseif tonumber(a) then
      threads = math.tointeger(tonumber(a)) or error("thread count must be an integer")
    else
      error("usage: dropout.lua [threads] [--torch-gelems X[,Y]] [--rounds N] [--seconds S]")
    end
    i = i + 1
  end
end

dn.set_num_threads(threads)
dn.manual_seed(1)

local TARGET_SECONDS = seconds

local function median(xs)
  local s = table.move(xs, 1, #xs, 1, {})
  table.sort(s)
  return s[(#s + 1) // 2]
end

-- Calls of fn per sample (~TARGET_SECONDS), found by doubling; the runs
-- also warm up the allocator's cache.
local function calibrate(fn)
  local calls = 1
  while true do
    local t0 = dn.clock()
    for _ = 1, calls do fn() end
    local dt = dn.clock() - t0
    if dt > TARGET_SECONDS / 4 then return math.max(1, math.floor(calls * TARGET_SECONDS / dt)) end
    calls = calls * 2
  end
end

-- Median seconds per call of each case's function, sampled round robin.
local function time_cases(cases)
  local calls, samples = {}, {}
  for i, c in ipairs(cases) do
    calls[i], samples[i] = calibrate(c[3]), {}
  end
  for r = 1, rounds do
    for i, c in ipairs(cases) do
      local fn = c[3]
      local t0 = dn.clock()
      for _ = 1, calls[i] do fn() end
      samples[i][r] = (dn.clock() - t0) / calls[i]
    end
  end
  local t = {}
  for i = 1, #cases do t[i] = median(samples[i]) end
  return t
end

local function bench(label, shape, torch_rate)
  local x = dn.randn(shape)
  local dst = dn.empty(shape)
  local xg = x:clone():requires_grad_()
  local g = dn.randn(shape)
  local n = x:numel()

  -- Results are closed at once: the storage goes back to the allocator's
  -- cache for the next call instead of waiting for Lua's collector.
  local cases = {
    {"copy (dst:copy_(src))", 8, function() dst:copy_(x) end},
    {"dropout fwd (core.dropout)", 8, function() core.dropout(x, 0.5):close() end},
    {"dropout fwd (F.dropout)", 8, function() F.dropout(x, 0.5, true):close() end},
    {"dropout fwd+bwd (F.dropout)", 16, function()
      local y = F.dropout(xg, 0.5, true)
      y:backward(g)
      y:close()
      xg.grad = nil   -- as torch.autograd.grad: no accumulation into an old gradient
    end},
  }
  print(string.format("\n%s (%d floats), %d threads, median of %d", label, n, dn.get_num_threads(), rounds))
  print(string.format("  %-30s %10s %9s %10s %9s", "", "us/call", "GB/s", "Gelem/s", "% copy"))
  local rate, times = {}, time_cases(cases)
  for i, c in ipairs(cases) do
    local t = times[i]
    local gbs = c[2] * n / t / 1e9
    rate[c[1]] = {gbs = gbs, gelems = n / t / 1e9}
    local copy = rate[cases[1][1]].gbs
    print(string.format("  %-30s %10.1f %9.2f %10.3f %8.0f%%", c[1], t * 1e6, gbs, n / t / 1e9, 100 * gbs / copy))
  end
  local fb = rate["dropout fwd+bwd (F.dropout)"].gelems
  print(string.format("  forward (core.dropout) at %.0f%% of the copy's bandwidth",
    100 * rate["dropout fwd (core.dropout)"].gbs / rate[cases[1][1]].gbs))
  if torch_rate then
    print(string.format("  PyTorch F.dropout fwd+bwd measured by shared/peers/torch_dropout_bench.py: "
      .. "%.3f G elements/s;"
      .. " dropnet %.3f G elements/s = %.1fx", torch_rate, fb, fb / torch_rate))
  end
end

print(string.format("dropnet %s dropout benchmark (p = 0.5; GB/s count 8 B per element per pass)", dn.version))
bench("16M floats", {16 * 1024 * 1024}, torch_gelems[1])
bench("[128,1024]", {128, 1024}, torch_gelems[2])
