-- dn.distributed: the MPI collectives. tests/spec/distributed_worker.lua runs
-- as one process (a world of size 1) and under `mpirun -np 2`; its results
-- are checked here against values computed by hand for the world size N:
-- rank r's tensor of n elements holds i + r / 2 (i = 1 .. n), so the sum is
-- N i + (N - 1) N / 4 and the mean i + (N - 1) / 4, exactly in float32.
-- Two np = 2 runs must give the same bits. Argument errors are checked in
-- this process, where MPI never starts (MPI starts once per process, and
-- other specs may share it).
local dn = require "dropnet"
local H = require "helpers"

local dist = dn.distributed
local quote, read_file = H.quote, H.read_file

local SOURCE = os.getenv("DROPNET_SOURCE_DIR") or "."
local WORKER = SOURCE .. "/tests/spec/distributed_worker.lua"
-- As root in a container Open MPI refuses to start without --allow-run-as-root, and its shared-memory
-- transport's single-copy mechanism (CMA) is not permitted: copy through the shared buffers instead.
local MPIRUN = "mpirun --oversubscribe --allow-run-as-root --mca btl_vader_single_copy_mechanism none"

local function has_mpirun() return os.execute("command -v mpirun > /dev/null 2>&1") end

-- Runs the worker alone (np nil) or under mpirun; returns {[rank] = {[case] = text}} and the log.
local function run(np)
  local dir = H.make_tempdir()
  local launcher = np and string.format("%s -np %d ", MPIRUN, np) or ""
  local cmd = string.format("timeout 120 %slua5.4 %s %s > %s/log 2>&1", launcher, quote(WORKER), quote(dir), quote(dir))
  local ok = os.execute(cmd)
  local log = read_file(dir .. "/log")
  assert(ok, "the worker failed (" .. cmd .. "):\n" .. log)
  local results = {}
  for rank = 0, (np or 1) - 1 do
    local text = read_file(string.format("%s/rank%d.txt", dir, rank))
    os.remove(string.format("%s/rank%d.txt", dir, rank))
    results[rank] = {}
    for r, case, values in text:gmatch("(%d+) (%S+) ?([^\n]*)\n") do
      assert(tonumber(r) == rank, "rank file " .. rank .. " holds a line of rank " .. r)
      results[rank][case] = values
    end
    assert(results[rank].done, "rank " .. rank .. " did not finish:\n" .. text .. "\n" .. log)
  end
  os.remove(dir .. "/log")
  os.remove(dir)
  return results, log
end

-- "v1,v2,..." as the worker writes them (%a: exact).
local function encode(values)
  local parts = {}
  for i, v in ipairs(values) do parts[i] = string.format("%a", v) end
  return table.concat(parts, ",")
end

local function range(n, f)
  local out = {}
  for i = 1, n do out[i] = f(i) end
  return out
end

-- Every rank's results against the hand-computed values for a world of N.
local function check_values(results, N)
  local root = N - 1
  for rank = 0, N - 1 do
    local got = results[rank]
    for _, n in ipairs {0, 1, 5, 1000} do
      assert.are.equal(encode(range(n, function(i) return N * i + (N - 1) * N / 4 end)), got["sum" .. n],
        "sum of " .. n .. " on rank " .. rank)
      assert.are.equal(encode(range(n, function(i) return i + (N - 1) / 4 end)), got["mean" .. n],
        "mean of " .. n .. " on rank " .. rank)
    end
    assert.are.equal(encode(range(3, function(i) return N * i + (N - 1) * N / 4 end)), got.sumlist1)
    assert.are.equal(encode(range(7, function(i) return -(N * i + (N - 1) * N / 4) end)), got.sumlist3)
    assert.are.equal(encode(range(3, function(i) return i + (N - 1) / 4 end)), got.meanlist1)
    assert.are.equal(encode(range(7, function(i) return -(i + (N - 1) / 4) end)), got.meanlist3)
    assert.are.equal(encode {0}, got.big, "the sum over more than one chunk")
    assert.are.equal(encode {10 + root, 20 + root}, got.bcast_f)
    assert.are.equal(encode {root, -root}, got.bcast_i)
    assert.are.equal(encode {N, N}, got.after)
    assert.are.equal(results[0].noisy, got.noisy, "rank " .. rank .. " got other bits than rank 0")
  end
end

describe("dn.distributed", function()
  it("says whether dropnet was built with MPI", function()
    assert.is_boolean(dist.available())
    if not dist.available() then
      assert.is_false(dist.is_initialized())
      for _, name in ipairs {"init", "rank", "world_size", "barrier", "finalize"} do
        H.assert_error(dist[name], {"dist." .. name .. ": built without MPI"})
      end
      H.assert_error(function() dist.all_reduce(dn.zeros(2), "sum") end, {"dist.all_reduce: built without MPI"})
      H.assert_error(function() dist.broadcast(dn.zeros(2), 0) end, {"dist.broadcast: built without MPI"})
    end
  end)

  it("checks its arguments (before MPI is started)", function()
    H.assert_error(function() dist.all_reduce(3) end,
      {"dist.all_reduce: expected a tensor or a list of tensors (got number)"})
    H.assert_error(function() dist.all_reduce({dn.zeros(2), "x"}) end,
      {"dist.all_reduce: item 2 of the list is a string, Tensor expected"})
    H.assert_error(function() dist.all_reduce(dn.zeros(2), "max") end,
      {"dist.all_reduce: op must be \"sum\" or \"mean\" (got \"max\")"})
    H.assert_error(function() dist.all_reduce(dn.zeros(2), 1) end,
      {"dist.all_reduce: op must be \"sum\" or \"mean\" (got number)"})
    H.assert_error(function() dist.broadcast(nil, 0) end,
      {"dist.broadcast: expected a tensor or a list of tensors (got nil)"})
    H.assert_error(function() dist.broadcast(dn.zeros(2), 0.5) end, {"root"})
    H.assert_error(function() dist.broadcast(dn.zeros(2)) end, {"root"})
    H.assert_error(function() dist.broadcast(dn.zeros(2), -1) end, {"dist.broadcast: root -1 out of range"})
    if dist.available() then
      assert.are.equal(1800, dist.timeout())   -- PyTorch's 30 minutes
      H.assert_error(function() dist.set_timeout(0) end,
        {"dist.set_timeout: seconds must be > 0 and at most 1e9 (got 0)"})
      H.assert_error(function() dist.set_timeout(0 / 0) end, {"dist.set_timeout: seconds must be > 0"})
      H.assert_error(function() dist.set_timeout("1") end, {"dist.set_timeout: seconds must be a number (got string)"})
      dist.set_timeout(60)
      assert.are.equal(60, dist.timeout())
      dist.set_timeout(1800)
      assert.is_false(dist.is_initialized())
      H.assert_error(dist.rank, {"dist.rank: not initialized (call dist.init first)"})
      H.assert_error(function() dist.all_reduce(dn.zeros(2)) end, {"dist.all_reduce: not initialized"})
    end
  end)

  if not dist.available() then
    pending("dropnet was built without MPI (Debian: libopenmpi-dev, openmpi-bin): the collectives are not run")
    return
  end

  it("works as a world of size 1 without mpirun", function()
    check_values(run(nil), 1)
  end)

  if not has_mpirun() then
    pending("mpirun is not installed (Debian: openmpi-bin): the np = 2 runs are skipped")
    return
  end

  it("sums, averages and broadcasts over 2 processes, the same bits in repeated runs", function()
    local first = run(2)
    check_values(first, 2)
    -- every case again, the noisy one (values that round) included
    local again = run(2)
    for rank = 0, 1 do
      for case, values in pairs(first[rank]) do
        assert.are.equal(values, again[rank][case], case .. " on rank " .. rank .. " differs between two runs")
      end
    end
  end)

  it("fails a call on every rank when one rank's arguments are bad, then goes on", function()
    local results = run(2)
    assert.matches("^true dist.all_reduce: another rank's arguments were rejected", results[0].rejected)
    assert.matches("^true dist.all_reduce: tensor 1 of 1 is int32, expected float32", results[1].rejected)
    for rank = 0, 1 do
      assert.matches("^true dist.all_reduce: the ranks passed lists of different sizes %(2 to 3 elements",
        results[rank].sizes)
      assert.matches("^true dist.broadcast: the ranks passed different roots %(0 to 1%)", results[rank].roots)
      assert.are.equal(encode {2, 2}, results[rank].after)
    end
  end)

  -- Rank 1 hangs (sleeps 30 s) before a collective or before backward; rank 0 gives up after its 1 s timeout
  -- with a message, refuses the next call, and ends; mpirun then stops the job.
  local HANG = [[
    local dn = require "dropnet"
    local dist, where, mode = dn.distributed, arg[1], arg[2]
    dist.init()
    dist.set_timeout(1)
    local ok, err
    if mode == "backward" then   -- the forward's collective done, rank 1 hangs before backward
      local out = dn.nn.DataParallel(dn.nn.Linear(3, 2))(dn.ones({2, 3}))
      if dist.rank() == 1 then os.execute("sleep 30") end
      ok, err = pcall(function() out:sum():backward() end)
    else
      if dist.rank() == 1 then os.execute("sleep 30") end
      ok, err = pcall(dist.all_reduce, dn.ones(4))
    end
    local _, again = pcall(dist.barrier)
    local f = assert(io.open(where .. "/rank" .. dist.rank() .. ".txt", "w"))
    f:write(tostring(ok), "\n", tostring(err), "\n", tostring(again), "\n")
    f:close()
    os.exit(1)   -- dist.finalize would fail too: MPI is left as it is
  ]]

  local function run_hanging(mode)
    local dir = H.make_tempdir()
    H.write_file(dir .. "/hang.lua", HANG)
    local cmd = string.format("timeout 60 %s -np 2 lua5.4 %s %s %s > %s/log 2>&1", MPIRUN, quote(dir .. "/hang.lua"),
      quote(dir), mode, quote(dir))
    local t0 = os.time()
    local ok = os.execute(cmd)
    local seconds = os.time() - t0
    local log = read_file(dir .. "/log")
    local f = io.open(dir .. "/rank0.txt")
    local text = f and f:read("a") or ""
    if f then f:close() end
    for _, name in ipairs {"rank0.txt", "rank1.txt", "hang.lua", "log"} do os.remove(dir .. "/" .. name) end
    os.remove(dir)
    return ok, text, log, seconds
  end

  it("turns a rank that hangs into an error on the others after dist.set_timeout's limit", function()
    for _, case in ipairs {
      {"collective", "dist.all_reduce: MPI_Iallreduce %(agreement%): no word from the other ranks for 1 s"},
      {"backward", "DataParallel backward: the gradients' exchange %(scatter%): no word from the other ranks for 1 s"},
    } do
      local ok, text, log, seconds = run_hanging(case[1])
      assert.is_falsy(ok)
      local okline, err, again = text:match("^(%S+)\n([^\n]*)\n([^\n]*)\n$")
      assert.are.equal("false", okline, case[1] .. ": " .. text .. "\n" .. log)
      assert.matches(case[2], err)
      assert.matches("restart the run %(dist.set_timeout sets the limit%)", err)
      assert.matches("^dist.barrier: an earlier collective timed out, so the ranks are out of step", again)
      assert.is_true(seconds < 25, case[1] .. ": the job took " .. seconds .. " s: it waited for the hanging rank")
    end
  end)
end)
