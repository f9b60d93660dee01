-- nn.DataParallel and the distributed loader over MPI: tests/spec/data_parallel_worker.lua trains the same
-- dropout MLP alone (one process, the reference) and under `mpirun -np 2` and `-np 3`. With the same seed the
-- ranks draw, for their rows, exactly the dropout masks the one process draws for the whole batch, and end
-- (after 50 steps, uneven last batches included) with the one process's weights up to the order of float sums;
-- all ranks hold the same bits, and a repeated run gives the same bits again.
local dn = require "dropnet"
local H = require "helpers"

local dist = dn.distributed
local quote, read_file = H.quote, H.read_file

local SOURCE = os.getenv("DROPNET_SOURCE_DIR") or "."
local WORKER = SOURCE .. "/tests/spec/data_parallel_worker.lua"
-- as in distributed_spec.lua: root in a container needs these
local MPIRUN = "mpirun --oversubscribe --allow-run-as-root --mca btl_vader_single_copy_mechanism none"

-- Runs the worker alone (np nil) or under mpirun; returns per rank {masks = {[step] = {first, bits}}, weights,
-- stats}.
local function run(np, bucket_mb)
  local dir = H.make_tempdir()
  local launcher = np and string.format("%s -np %d ", MPIRUN, np) or ""
  local cmd = string.format("timeout 120 %slua5.4 %s %s %s > %s/log 2>&1", launcher, quote(WORKER), quote(dir),
    bucket_mb or "", quote(dir))
  local ok = os.execute(cmd)
  local log = read_file(dir .. "/log")
  assert(ok, "the worker failed (" .. cmd .. "):\n" .. log)
  local results = {}
  for rank = 0, (np or 1) - 1 do
    local path = string.format("%s/rank%d.txt", dir, rank)
    local text = read_file(path)
    os.remove(path)
    local r = {masks = {}}
    for step, first, bits in text:gmatch("mask (%d+) (%d+) (%d+)\n") do
      r.masks[tonumber(step)] = {first = tonumber(first), bits = bits}
    end
    r.weights = text:match("weights ([^\n]*)\n")
    r.stats = text:match("stats ([^\n]*)\n")
    assert(text:find("done\n", 1, true), "rank " .. rank .. " did not finish:\n" .. text .. "\n" .. log)
    results[rank] = r
  end
  os.remove(dir .. "/log")
  os.remove(dir)
  return results
end

-- Runs the worker under mpirun with rank 1 failing at step 10: returns whether it succeeded, its log and the
-- seconds it took.
local function run_dying(np)
  local dir = H.make_tempdir()
  local cmd = string.format("timeout 60 %s -np %d lua5.4 %s %s 0.002 10 > %s/log 2>&1", MPIRUN, np, quote(WORKER),
    quote(dir), quote(dir))
  local t0 = os.time()
  local ok = os.execute(cmd)
  local log = read_file(dir .. "/log")
  for rank = 0, np - 1 do os.remove(string.format("%s/rank%d.txt", dir, rank)) end
  os.remove(dir .. "/log")
  os.remove(dir)
  return ok, log, os.time() - t0
end

local function values(text)
  local v = {}
  for item in text:gmatch("[^,]+") do v[#v + 1] = tonumber(item) end
  return v
end

local FEATURES = 12

-- Every rank's mask rows are the one process's rows for the same samples of the same step.
local function check_masks(single, results, np)
  for step = 1, 50 do
    local whole = single[0].masks[step]
    assert(whole, "the single process has no mask for step " .. step)
    local covered = 0
    for rank = 0, np - 1 do
      local part = results[rank].masks[step]
      assert(part, "rank " .. rank .. " has no mask for step " .. step)
      local from = part.first * FEATURES + 1
      assert.are.equal(whole.bits:sub(from, from + #part.bits - 1), part.bits,
        string.format("step %d, rank %d (rows from %d): a mask other than the one process's", step, rank, part.first))
      covered = covered + #part.bits
    end
    assert.are.equal(#whole.bits, covered, "the ranks' rows do not make up the batch at step " .. step)
  end
end

local function check_weights(single, results, np)
  local want = values(single[0].weights)
  for rank = 0, np - 1 do
    assert.are.equal(results[0].weights, results[rank].weights, "rank " .. rank .. " holds other weights than rank 0")
  end
  local got = values(results[0].weights)
  assert.are.equal(#want, #got)
  local worst, scale = 0, 0
  for i = 1, #want do
    worst = math.max(worst, math.abs(got[i] - want[i]))
    scale = math.max(scale, math.abs(want[i]))
  end
  assert.is_true(worst <= 1e-5 * scale, string.format("np = %d: weights differ by %g (largest weight %g)", np, worst,
    scale))
end

describe("nn.DataParallel", function()
  it("checks its arguments", function()
    H.assert_error(function() dn.nn.DataParallel(3) end, {"DataParallel: expected a module (got 3)"})
    H.assert_error(function() dn.nn.DataParallel(dn.nn.Linear(2, 2), {bucket_mb = 0}) end,
      {"DataParallel: bucket_mb must be a number of megabytes > 0"})
    H.assert_error(function() dn.nn.DataParallel(dn.nn.Linear(2, 2), {reduction = "max"}) end,
      {"DataParallel: reduction must be \"mean\" or \"sum\""})
    H.assert_error(function() dn.nn.DataParallel(dn.nn.Linear(2, 2), {bucket = 1}) end, {"DataParallel", "bucket"})
  end)

  if not dist.available() then
    pending("dropnet was built without MPI (Debian: libopenmpi-dev, openmpi-bin): DataParallel is not run")
    return
  end
  if not os.execute("command -v mpirun > /dev/null 2>&1") then
    pending("mpirun is not installed (Debian: openmpi-bin): the data-parallel runs are skipped")
    return
  end

  local single
  setup(function() single = run(nil) end)

  it("on 2 processes draws the one process's masks and takes its steps; repeated runs give the same bits", function()
    local two = run(2)
    check_masks(single, two, 2)
    check_weights(single, two, 2)
    assert.are.equal("3 1012 50", two[0].stats)   -- buckets of 0.002 MB: {b3, W3, b2}, {W2}, {b1, W1}
    local again = run(2)
    assert.are.equal(two[0].weights, again[0].weights, "two np = 2 runs differ")
  end)

  it("on 3 processes too (uneven shares), and with one bucket for all the gradients", function()
    local three = run(3)
    check_masks(single, three, 3)
    check_weights(single, three, 3)
    local one_bucket = run(2, "25")
    check_weights(single, one_bucket, 2)
    assert.are.equal("1 1012 50", one_bucket[0].stats)
  end)

  it("stops every rank with the failing rank's message when one rank dies, instead of hanging", function()
    local ok, log, seconds = run_dying(2)
    assert.is_falsy(ok)
    assert.truthy(log:find("rank 1 fails on purpose at step 10", 1, true), log)
    assert.truthy(log:find("mpirun", 1, true), log)   -- mpirun says which rank ended the job
    assert.is_true(seconds < 55, "the job took " .. seconds .. " s: the other rank waited for the dead one")
  end)

  it("stops every rank, not only the empty one, when a rank gets no samples of a batch", function()
    local dir = H.make_tempdir()
    local script = dir .. "/empty.lua"
    H.write_file(script, [[
      local dn = require "dropnet"
      local dist = dn.distributed
      dist.init()
      local dp = dn.nn.DataParallel(dn.nn.Linear(3, 2))
      local rows = dist.rank() == 0 and 1 or 0            -- a global batch of 1 over 2 ranks
      local ok, err = pcall(dp, dn.zeros({rows, 3}))
      local f = assert(io.open(arg[1] .. "/rank" .. dist.rank() .. ".txt", "w"))
      f:write(ok and "ran\n" or err .. "\n")
      f:close()
      dist.finalize()
    ]])
    local cmd = string.format("timeout 60 %s -np 2 lua5.4 %s %s > %s/log 2>&1", MPIRUN, quote(script), quote(dir),
      quote(dir))
    local ok = os.execute(cmd)
    local log = read_file(dir .. "/log")
    assert(ok, "the script failed (" .. cmd .. "):\n" .. log)
    for rank = 0, 1 do
      local text = read_file(string.format("%s/rank%d.txt", dir, rank))
      assert.truthy(text:find("DataParallel: rank 1 has no samples of the global batch (1 samples over 2 ranks)", 1,
        true), "rank " .. rank .. ": " .. text)
      os.remove(string.format("%s/rank%d.txt", dir, rank))
    end
    os.remove(script)
    os.remove(dir .. "/log")
    os.remove(dir)
  end)
end)
