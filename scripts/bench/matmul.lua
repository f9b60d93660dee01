-- scripts/bench/matmul.lua — matmul throughput seen from Lua.
-- Prints GFLOP/s of dn.matmul for the reference sizes, including the cost of
-- the Lua call and the output allocation. The C benchmark `bench_matmul`
-- (built with the project) compares the runtime against a direct
-- cblas_sgemm call in the same process. DROPNET_SGEMM=openblas runs this
-- one on OpenBLAS instead of dropnet's AVX-512 kernel.
local dn = require "dropnet"

local threads = tonumber(arg[1]) or 2
dn.set_num_threads(threads)
dn.manual_seed(1)

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function bench(m, k, n, transposed)
  local a = dn.randn(m, k)
  local b = transposed and dn.randn(n, k):t() or dn.randn(k, n)
  local reps = math.max(3, math.floor(2e10 / (2 * m * k * n)))
  a:matmul(b)   -- warm-up: fills the allocator cache and OpenBLAS's buffers
  local times = {}
  for r = 1, 7 do
    local t0 = dn.clock()
    for _ = 1, reps do a:matmul(b) end
    times[r] = (dn.clock() - t0) / reps
  end
  local t = median(times)
  print(string.format("%5d x %5d x %5d%-4s  %8.3f ms  %7.1f GFLOP/s", m, k, n, transposed and " (B^T)" or "",
    t * 1e3, 2 * m * k * n / t / 1e9))
end

print(string.format("dn.matmul from Lua, %d threads, sgemm: %s (median of 7 runs)", threads, dn.matmul_backend()))
bench(128, 784, 1024)
bench(128, 784, 1024, true)
bench(1024, 1024, 1024)
