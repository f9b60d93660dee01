-- scripts/train.lua --distributed under `mpirun -np 2` on small generated data: the run takes one process's
-- steps (same masks, same samples; weights equal up to the order of float sums), rank 0 alone prints and
-- writes, and a checkpoint moves between process counts both ways. Also the CNN job with augmentation.
local dn = require "dropnet"
local H = require "helpers"

local BIN = os.getenv("DROPNET_BIN")
local SOURCE = os.getenv("DROPNET_SOURCE_DIR") or "."
local TRAIN = SOURCE .. "/scripts/train.lua"
-- as in distributed_spec.lua: root in a container needs these
local MPIRUN = "mpirun --oversubscribe --allow-run-as-root --mca btl_vader_single_copy_mechanism none"

local quote, read = H.quote, H.read_file

-- Runs train.lua alone (np nil) or under mpirun -np np with --distributed; returns its output and exit code.
local function run(np, args)
  local launcher = np and string.format("%s -np %d ", MPIRUN, np) or ""
  local cmd = string.format("timeout 300 %s%s %s %s%s 2>&1", launcher, quote(BIN), quote(TRAIN), args,
    np and " --distributed" or "")
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

-- The largest difference between two checkpoints' model tensors, relative to the largest value.
local function model_difference(path_a, path_b)
  local a, b = dn.load(path_a), dn.load(path_b)
  local worst, scale, names = 0, 0, 0
  for name, t in pairs(a) do
    if name:match("^model/") then
      names = names + 1
      assert.is_not_nil(b[name], name)
      worst = math.max(worst, (t:float() - b[name]:float()):abs():max():item())
      scale = math.max(scale, t:float():abs():max():item())
    end
  end
  assert.is_true(names > 0, "no model tensors in " .. path_a)
  return worst / scale
end

describe("scripts/train.lua --distributed", function()
  if not BIN then
    pending("DROPNET_BIN is not set: point it at the built dropnet executable")
    return
  end
  if not dn.distributed.available() or not os.execute("command -v mpirun > /dev/null 2>&1") then
    pending("no MPI (Debian: libopenmpi-dev, openmpi-bin): the distributed runs are skipped")
    return
  end
  local dir

  setup(function()
    dir = H.make_tempdir()
    -- 300 training and 80 test images (300 = 9 batches of 32 and one of 12, split 6 + 6)
    H.write_fake_fashion_mnist(dir .. "/data", {train = 300, test = 80, classes = 2, noise = 100, step = 120, seed = 5})
  end)

  teardown(function()
    H.remove_dir(dir)
  end)

  local function common() return "--hidden 16,8 --batch-size 32 --lr 0.01 --data " .. quote(dir .. "/data") end

  it("takes one process's steps on 2 processes; rank 0 alone prints and writes", function()
    local single, code = run(nil, common() .. " --threads 1 --epochs 3 --out " .. quote(dir .. "/one"))
    assert.are.equal(0, code, single)
    local two
    two, code = run(2, common() .. " --epochs 3 --out " .. quote(dir .. "/two"))
    assert.are.equal(0, code, two)
    -- one header, one line per epoch, one result: rank 1 says nothing
    local _, headers = two:gsub("train loss", "")
    assert.are.equal(1, headers, two)
    local _, results = two:gsub("test accuracy", "")
    assert.are.equal(1, results, two)
    assert.truthy(two:find("1 threads x 2 processes", 1, true), two)
    local difference = model_difference(dir .. "/one/checkpoint.safetensors", dir .. "/two/checkpoint.safetensors")
    assert.is_true(difference < 1e-4, "the 2-process run's weights differ from one process's by " .. difference)
    -- the metrics count every rank's samples: the same accuracies as one process
    local function accuracies(path)
      local rows = {}
      for line in read(path):gmatch("[^\n]+") do rows[#rows + 1] = line:match("^%d+,[^,]+,([^,]+),[^,]+,([^,]+)") end
      return rows
    end
    assert.same(accuracies(dir .. "/one/metrics.csv"), accuracies(dir .. "/two/metrics.csv"))
  end)

  it("resumes a 2-process checkpoint on 1 process and a 1-process checkpoint on 2", function()
    local out, code = run(2, common() .. " --epochs 3 --stop-after 1 --out " .. quote(dir .. "/from2"))
    assert.are.equal(0, code, out)
    out, code = run(nil, "--quiet --resume " .. quote(dir .. "/from2/checkpoint.safetensors"))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("resuming", 1, true), out)
    local difference = model_difference(dir .. "/one/checkpoint.safetensors", dir .. "/from2/checkpoint.safetensors")
    assert.is_true(difference < 1e-4, "2 then 1 process: weights differ by " .. difference)

    out, code = run(nil, common() .. " --threads 1 --epochs 3 --stop-after 2 --out " .. quote(dir .. "/from1"))
    assert.are.equal(0, code, out)
    out, code = run(2, "--quiet --resume " .. quote(dir .. "/from1/checkpoint.safetensors"))
    assert.are.equal(0, code, out)
    local _, said = out:gsub("resuming", "")
    assert.are.equal(1, said, out)   -- rank 0 alone
    difference = model_difference(dir .. "/one/checkpoint.safetensors", dir .. "/from1/checkpoint.safetensors")
    assert.is_true(difference < 1e-4, "1 then 2 processes: weights differ by " .. difference)
  end)

  it("runs the CNN job with augmentation on 2 processes as on one", function()
    local args = "--model cnn --channels 4 --convs-per-block 1 --hidden 8 --augment --batch-size 32 --lr 0.01 "
      .. "--epochs 1 --data " .. quote(dir .. "/data")
    local out, code = run(nil, args .. " --threads 1 --out " .. quote(dir .. "/cnn1"))
    assert.are.equal(0, code, out)
    out, code = run(2, args .. " --out " .. quote(dir .. "/cnn2"))
    assert.are.equal(0, code, out)
    -- batch norm's statistics are per rank (as without SyncBatchNorm): close, not equal
    local difference = model_difference(dir .. "/cnn1/checkpoint.safetensors", dir .. "/cnn2/checkpoint.safetensors")
    assert.is_true(difference < 0.2, "the CNN's weights differ by " .. difference)
  end)
end)
