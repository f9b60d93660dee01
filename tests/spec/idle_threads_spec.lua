-- The library's threads under whatever interpreter loads it (issue 15, item 3).
-- busted runs these under plain lua5.4, where nothing sets a wait policy: the
-- module must not spin its workers between calls (pool.c spins ~0.1 ms, then
-- sleeps), and no second team (OpenMP's, OpenBLAS's) may start beside ours,
-- also when OpenBLAS computes the products (DROPNET_SGEMM=openblas).
local dn = require "dropnet"
local H = require "helpers"

-- /proc/self/stat of this process: CPU seconds (user + system) and threads.
local TICKS = tonumber(io.popen("getconf CLK_TCK"):read("l")) or 100
local function self_stat()
  local f = assert(io.open("/proc/self/stat"))
  local line = f:read("a")
  f:close()
  -- fields after "(comm)": state is field 3, utime 14, stime 15, num_threads 20
  local rest, fields = line:match("%) (.*)$"), {}
  for v in rest:gmatch("%S+") do fields[#fields + 1] = v end
  return (tonumber(fields[12]) + tonumber(fields[13])) / TICKS, tonumber(fields[18])
end

-- Work that runs on the pool: a product and a training step's worth of ops.
local function busy()
  local a, b = dn.rand(384, 384), dn.rand(384, 384)
  for _ = 1, 4 do a = (a:matmul(b) * (1 / 384)):relu() end
  return a:sum():item()
end

describe("the library's threads under plain lua5.4", function()
  if not io.open("/proc/self/stat") then
    it("are checked through /proc", function() pending("no /proc/self/stat here") end)
    return
  end

  it("sleep when no call runs: an idle half second costs almost no CPU", function()
    dn.set_num_threads(2)
    busy()
    local cpu0 = self_stat()
    assert(os.execute("sleep 0.5"))   -- the script's thread waits; only the workers could burn CPU
    local cpu1 = self_stat()
    -- one worker spinning would cost ~0.5 s; sleeping ones a few wake-ups at most
    assert.is_true(cpu1 - cpu0 < 0.08, ("idle CPU %.2f s"):format(cpu1 - cpu0))
  end)

  it("are the pool's only: threads - 1 workers, no OpenMP or OpenBLAS team", function()
    local script = [[
      local dn = require "dropnet"
      dn.set_num_threads(2)
      local a = dn.rand(512, 512)
      for _ = 1, 3 do a = a:matmul(a) * (1 / 512) end
      local f = io.open("/proc/self/stat"); local line = f:read("a"); f:close()
      local fields = {}
      for v in line:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = v end
      print(fields[18], dn.matmul_backend())]]
    for _, sgemm in ipairs({"", "openblas"}) do
      local cmd = ("env -u OMP_NUM_THREADS DROPNET_SGEMM=%s lua5.4 -e %s 2>&1"):format(sgemm, H.quote(script))
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      p:close()
      local threads = tonumber(out:match("^(%d+)"))
      assert.is_not_nil(threads, out)
      -- the script's thread and one worker
      assert.are.equal(2, threads, ("DROPNET_SGEMM=%s: %s"):format(sgemm, out))
    end
  end)
end)
