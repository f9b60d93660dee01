-- scripts/train.lua end to end on small generated data (never the real dataset):
-- outputs, bit-identical resume, and bad options.
local dn = require "dropnet"
local checkpoint = require "dropnet.checkpoint"
local H = require "helpers"

local BIN = os.getenv("DROPNET_BIN")
local SOURCE = os.getenv("DROPNET_SOURCE_DIR") or "."
local TRAIN = SOURCE .. "/scripts/train.lua"

local quote = H.quote

local function run(args)
  local cmd = string.format("%s %s %s 2>&1", quote(BIN), quote(TRAIN), args)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

local read = H.read_file

-- The loss/accuracy columns of metrics.csv (timings differ between runs).
local function model_metrics(path)
  local rows = {}
  for line in read(path):gmatch("[^\n]+") do
    local fields = {}
    for f in line:gmatch("[^,]+") do fields[#fields + 1] = f end
    rows[#rows + 1] = table.concat(fields, ",", 1, 6)
  end
  return rows
end

describe("scripts/train.lua", function()
  if not BIN then
    pending("DROPNET_BIN is not set: point it at the built dropnet executable")
    return
  end
  local dir

  setup(function()
    dir = H.make_tempdir()
    assert(os.execute("mkdir " .. quote(dir .. "/data")))
    -- 320 training and 80 test images of two easy-to-tell classes, in IDX files
    local g = dn.Generator(5)
    for _, split in ipairs({{"train", 320}, {"t10k", 80}}) do
      local name, n = split[1], split[2]
      local labels = (dn.rand(n, g) * 2):int()                       -- 0 or 1
      local images = (dn.rand(n, 28, 28, g) * 100 + labels:float():view(n, 1, 1) * 120):int():to("uint8")
      dn.idx_write(dir .. "/data/" .. name .. "-images-idx3-ubyte.gz", images)
      dn.idx_write(dir .. "/data/" .. name .. "-labels-idx1-ubyte.gz", labels:to("uint8"))
    end
  end)

  teardown(function()
    H.remove_dir(dir)
  end)

  local common = "--hidden 16,8 --batch-size 32 --lr 0.01 --threads 2 --quiet --data "

  it("trains, reports and writes metrics, a plot and a checkpoint", function()
    local out, code = run(common .. quote(dir .. "/data") .. " --epochs 3 --out " .. quote(dir .. "/full"))
    assert.are.equal(0, code, out)
    assert.truthy(out:match("test accuracy (%d%.%d+) after 3 epochs"), out)
    local acc = tonumber(out:match("test accuracy (%d%.%d+)"))
    assert.is_true(acc > 0.9, "easy data should be learned: " .. out)
    local metrics = model_metrics(dir .. "/full/metrics.csv")
    assert.are.equal(4, #metrics)   -- header + 3 epochs
    assert.truthy(metrics[1]:match("^epoch,train_loss,train_acc"))
    local svg = dir .. "/full/train.svg"
    assert.is_true(os.execute("xmllint --noout " .. quote(svg)) == true, "train.svg must be well-formed XML")
    local text = read(svg)
    assert.truthy(text:find("Loss", 1, true))
    assert.truthy(text:find("Accuracy", 1, true))
    local _, polylines = text:gsub("<polyline", "")
    assert.is_true(polylines >= 4, "train and test curves for loss and accuracy")
    local state = checkpoint.load(dir .. "/full/checkpoint.safetensors")
    assert.are.equal(3, state.epoch)
    assert.are.equal(16, state.model["2.weight"]:size(1))
    assert.is_not_nil(state.optim.state)
    assert.is_not_nil(state.rng.offset)
  end)

  it("resumed after epoch 1 ends with bit-identical weights and metrics", function()
    local data = quote(dir .. "/data")
    local out, code = run(common .. data .. " --epochs 3 --stop-after 1 --out " .. quote(dir .. "/resumed"))
    assert.are.equal(0, code, out)
    out, code = run("--quiet --resume " .. quote(dir .. "/resumed/checkpoint.safetensors"))
    assert.are.equal(0, code, out)
    local a = dn.load(dir .. "/full/checkpoint.safetensors")
    local b = dn.load(dir .. "/resumed/checkpoint.safetensors")
    local names = 0
    for name, t in pairs(a) do
      names = names + 1
      assert.is_not_nil(b[name], name)
      assert.are.same(t:shape(), b[name]:shape())
      assert.are.equal(0, (t:float() - b[name]:float()):abs():max():item(), name .. " differs after resume")
    end
    assert.is_true(names > 6)
    assert.are.same(model_metrics(dir .. "/full/metrics.csv"), model_metrics(dir .. "/resumed/metrics.csv"))
  end)

  -- The outputs go through dn.write_file: a failed write stops the run with exit code 2 and a message
  -- naming the file, and never leaves an empty or partial file in its place.
  it("stops with a message naming the file when an output cannot be written (a full disk)", function()
    -- RLIMIT_FSIZE 0 with SIGXFSZ ignored: every write to a regular file fails (EFBIG), as on a full disk
    local out_dir = dir .. "/full-disk"
    local cmd = string.format("sh -c %s 2>&1", quote(string.format("trap '' XFSZ; ulimit -f 0; exec %s %s %s",
      quote(BIN), quote(TRAIN), common .. quote(dir .. "/data") .. " --epochs 1 --out " .. quote(out_dir))))
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local _, _, code = p:close()
    assert.are.equal(2, code, out)
    assert.truthy(out:find("train.lua: dn.write_file: error writing " .. out_dir .. "/metrics.csv: File too large", 1,
      true), out)
    assert.is_nil(io.open(out_dir .. "/metrics.csv"), "no empty metrics.csv is left behind")
    local ls = assert(io.popen("ls -A " .. quote(out_dir)))
    assert.are.equal("", ls:read("a"), "no temporary file is left behind")
    ls:close()
  end)

  it("stops with a message when something is in the way of an output", function()
    local out_dir = dir .. "/blocked"
    assert(os.execute("mkdir -p " .. quote(out_dir .. "/train.svg")))   -- a directory where the plot goes
    local out, code = run(common .. quote(dir .. "/data") .. " --epochs 1 --out " .. quote(out_dir))
    assert.are.equal(2, code, out)
    assert.truthy(out:find("train.lua: dn.write_file: " .. out_dir .. "/train.svg is a directory", 1, true), out)
    out, code = run(common .. quote(dir .. "/data") .. " --epochs 1 --out /dev/null/run")
    assert.are.equal(2, code, out)
    assert.truthy(out:find("train.lua: cannot create the output directory /dev/null/run", 1, true), out)
  end)

  it("rejects bad options with a message and exit code 2", function()
    local cases = {
      {"--epochs 0", "--epochs must be >= 1"},
      {"--dropout 1.5", "--dropout must be in"},
      {"--optimizer lbfgs", "--optimizer must be"},
      {"--hidden 10,x", "--hidden must be a list"},
      {"--bogus 1", "unknown option '--bogus'"},
      {"--lr", "needs a value"},
      {"--epochs 2.5", "needs a whole number"},
    }
    for _, case in ipairs(cases) do
      local out, code = run(case[1])
      assert.are.equal(2, code, case[1] .. ": " .. out)
      assert.truthy(out:find(case[2], 1, true), case[1] .. ": " .. out)
    end
  end)

  it("names the data directory and how to get the files when they are missing", function()
    local out, code = run("--quiet --data " .. quote(dir .. "/nowhere"))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("dataset-fashion-mnist", 1, true), out)
    assert.truthy(out:find(dir .. "/nowhere", 1, true), out)
  end)

  it("prints usage with --help", function()
    local out, code = run("--help")
    assert.are.equal(0, code)
    assert.truthy(out:find("usage: dropnet scripts/train.lua", 1, true))
  end)
end)
