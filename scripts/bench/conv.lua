-- scripts/bench/conv.lua — the CNN layers' speed seen from Lua.
--
--   dropnet scripts/bench/conv.lua [--threads 2] [--reps 7]
--
-- For each layer: forward (no_grad) and forward + backward (all gradients the
-- layer would need in a network: the first layer's input needs none) in ms and
-- GFLOP/s (the convolution's multiply-adds counted as 2 FLOPs; backward as twice
-- the forward, once without dx), the median of --reps timed runs after a warm-up.
-- Layers: the two convolutions of the small CNN of train_throughput.lua --model c
-- (batch 128), its batch norm, ReLU, the two as nn.Sequential fuses them
-- (F.batch_norm_relu: against the sum of the two rows above), max pool, the
-- three as nn.Sequential fuses them (F.batch_norm_relu_max_pool2d: against the
-- fused pair plus max pool), each convolution then ReLU one by one and as
-- nn.Sequential fuses them (F.conv2d_relu: the CONV+RELU line gives the
-- ratios), and a depthwise 3x3 convolution next to a dense
-- one of the same FLOPs (N 8, 28x28: 1024 channels one per group against
-- 32 -> 32), whose ratio is the last line.
local dn = require "dropnet"
local nn = dn.nn

local o = {threads = 2, reps = 7}
local i = 1
while i <= #arg do
  local key = arg[i]:match("^%-%-(.+)$")
  if not key or o[key] == nil or not tonumber(arg[i + 1]) then
    error("conv.lua: usage: dropnet scripts/bench/conv.lua [--threads N] [--reps N] (got " .. arg[i] .. ")", 0)
  end
  o[key] = tonumber(arg[i + 1])
  i = i + 2
end
dn.set_num_threads(o.threads)
dn.manual_seed(1)

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- Median seconds of f over the reps, after two warm-up calls.
local function time(f)
  f()
  f()
  local times = {}
  for r = 1, o.reps do
    local t0 = dn.clock()
    f()
    times[r] = dn.clock() - t0
  end
  return median(times)
end

-- forward without a graph, then forward + backward; flops: the forward's (or 0: no GFLOP/s column).
local function bench(name, module, x, flops, needs_dx)
  x:requires_grad_(needs_dx)
  local fwd = time(function() dn.no_grad(function() module(x):close() end) end)
  local g
  local both = time(function()
    local y = module(x)
    g = g or dn.randn(table.unpack(y:shape()))
    y:backward(g)
    for _, p in ipairs(module:parameters()) do p.grad = nil end
    x.grad = nil
    y:close()
  end)
  local back_flops = flops * (needs_dx and 3 or 2)
  local rate = function(f, t) return flops > 0 and string.format("%7.1f", f / t / 1e9) or "      -" end
  print(string.format("%-44s %8.3f %s %8.3f %s", name, fwd * 1e3, rate(flops, fwd), both * 1e3, rate(back_flops, both)))
  return fwd, both
end

local function conv_flops(n, cin, cout, hw, k, groups) return 2 * n * cout * (cin // groups) * k * k * hw * hw end

print(string.format("# dropnet %s, %d threads, sgemm: %s, median of %d runs", dn.version, o.threads,
  dn.matmul_backend(), o.reps))
print(string.format("%-44s %8s %7s %8s %7s", "layer", "fwd ms", "GFLOP/s", "f+b ms", "GFLOP/s"))
bench("Conv2d 1->32 3x3 pad 1, 128x1x28x28", nn.Conv2d(1, 32, 3, {padding = 1}), dn.randn(128, 1, 28, 28),
  conv_flops(128, 1, 32, 28, 3, 1), false)
bench("Conv2d 32->64 3x3 pad 1, 128x32x14x14", nn.Conv2d(32, 64, 3, {padding = 1}), dn.randn(128, 32, 14, 14),
  conv_flops(128, 32, 64, 14, 3, 1), true)
bench("BatchNorm2d(32), 128x32x28x28", nn.BatchNorm2d(32), dn.randn(128, 32, 28, 28), 0, true)
bench("ReLU, 128x32x28x28", nn.ReLU(), dn.randn(128, 32, 28, 28), 0, true)
bench("BatchNorm2d(32) + ReLU fused, 128x32x28x28", nn.Sequential(nn.BatchNorm2d(32), nn.ReLU()),
  dn.randn(128, 32, 28, 28), 0, true)
bench("MaxPool2d(2), 128x32x28x28", nn.MaxPool2d(2), dn.randn(128, 32, 28, 28), 0, true)
bench("BatchNorm2d(32) + ReLU + MaxPool2d(2) fused", nn.Sequential(nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2)),
  dn.randn(128, 32, 28, 28), 0, true)
-- Conv2d then ReLU one by one (the layers called in turn) and as nn.Sequential fuses them (F.conv2d_relu)
local function conv_relu_rows(name, conv, x, flops, needs_dx)
  local chain = setmetatable({parameters = function() return conv:parameters() end},
    {__call = function(_, v) return nn.ReLU()(conv(v)) end})
  local _, one = bench(name .. " + ReLU, one by one", chain, x, flops, needs_dx)
  local _, fused = bench(name .. " + ReLU fused", nn.Sequential(conv, nn.ReLU()), x, flops, needs_dx)
  return one, fused
end
local one1, fused1 = conv_relu_rows("Conv2d 1->32", nn.Conv2d(1, 32, 3, {padding = 1}),
  dn.randn(128, 1, 28, 28), conv_flops(128, 1, 32, 28, 3, 1), false)
local one2, fused2 = conv_relu_rows("Conv2d 32->64", nn.Conv2d(32, 64, 3, {padding = 1}),
  dn.randn(128, 32, 14, 14), conv_flops(128, 32, 64, 14, 3, 1), true)
print(string.format("CONV+RELU fused forward+backward: %.2fx and %.2fx the time of the two layers one by one",
  fused1 / one1, fused2 / one2))
local _, dense = bench("dense Conv2d 32->32 3x3, 8x32x28x28", nn.Conv2d(32, 32, 3, {padding = 1}),
  dn.randn(8, 32, 28, 28), conv_flops(8, 32, 32, 28, 3, 1), true)
local _, depth = bench("depthwise Conv2d 1024 groups 3x3, 8x1024x28x28",
  nn.Conv2d(1024, 1024, 3, {padding = 1, groups = 1024}), dn.randn(8, 1024, 28, 28),
  conv_flops(8, 1024, 1024, 28, 3, 1024), true)
print(string.format("DEPTHWISE forward+backward: %.1fx the time of the dense conv of the same FLOPs (issue 13: <= 10x)",
  depth / dense))
