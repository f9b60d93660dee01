-- scripts/train.lua end to end on small generated data (never the real dataset):
-- outputs, bit-identical resume, and bad options, for the MLP and for --model cnn.
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

-- Runs `interpreter` TRAIN args in the background with the script's test hook DROPNET_TRAIN_PAUSE set, so
-- that it waits for a signal after step `step` of epoch `epoch`; sends it SIGINT once it waits there (not
-- timing-dependent) and returns its output and exit status.
local function run_interrupted(interpreter, args, epoch, step, tag)
  local ready = os.tmpname()
  os.remove(ready)
  local log = ready .. ".log"
  local script = string.format("DROPNET_TRAIN_PAUSE=%s %s %s %s >%s 2>&1 & echo $!; wait $!; echo \"status $?\"",
    quote(epoch .. ":" .. step .. ":" .. ready), interpreter, quote(TRAIN), args, quote(log))
  local p = assert(io.popen("sh -c " .. quote(script)))
  local pid = assert(p:read("l"), tag)
  for _ = 1, 600 do   -- at most a minute
    local f = io.open(ready)
    if f then f:close() break end
    os.execute("sleep 0.1")
  end
  os.execute("kill -INT " .. pid)
  local status = tonumber(p:read("a"):match("status (%d+)"))
  p:close()
  local out = read(log)
  os.remove(ready)
  os.remove(log)
  return out, status
end

-- Asserts the tensors of two checkpoints are equal bit for bit; returns how many there are.
local function assert_same_checkpoints(path_a, path_b)
  local a, b = dn.load(path_a), dn.load(path_b)
  local names = 0
  for name, t in pairs(a) do
    names = names + 1
    assert.is_not_nil(b[name], name)
    assert.are.same(t:shape(), b[name]:shape())
    assert.are.equal(0, (t:float() - b[name]:float()):abs():max():item(), name .. " differs after resume")
  end
  return names
end

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
    -- 320 training and 80 test images of two easy-to-tell classes, in IDX files
    H.write_fake_fashion_mnist(dir .. "/data", {train = 320, test = 80, classes = 2, noise = 100, step = 120, seed = 5})
  end)

  teardown(function()
    H.remove_dir(dir)
  end)

  local common = "--hidden 16,8 --batch-size 32 --lr 0.01 --threads 2 --quiet --data "

  it("tracks the layers with --track", function()
    local out, code = run(common .. quote(dir .. "/data") .. " --epochs 2 --track --track-every 7 --out " ..
      quote(dir .. "/tracked"))
    assert.are.equal(0, code, out)
    local csv = read(dir .. "/tracked/track.csv")
    assert.truthy(csv:match("^step,layer,weight_grad_norm"), csv)
    -- 320 samples / 32 = 10 steps per epoch, 20 steps: steps 1, 8, 15; three Linear layers
    local _, lines = csv:gsub("\n", "")
    assert.are.equal(1 + 3 * 3, lines, csv)
    assert.is_true(os.execute("xmllint --noout " .. quote(dir .. "/tracked/track.svg")) == true)
    -- the tracked run takes the same steps as the untracked one
    local plain, plain_code = run(common .. quote(dir .. "/data") .. " --epochs 2 --out " .. quote(dir .. "/untracked"))
    assert.are.equal(0, plain_code, plain)
    assert.same(model_metrics(dir .. "/untracked/metrics.csv"), model_metrics(dir .. "/tracked/metrics.csv"))
    out, code = run("--track-every 0")
    assert.are.equal(2, code)
    assert.truthy(out:find("--track-every must be >= 1", 1, true), out)
  end)

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

  -- Ctrl-C: the step ends, the checkpoint holds the place in the epoch (and the epoch's shuffle), the message
  -- says where and how to go on, exit status 130; the resumed run ends as the uninterrupted one.
  it("saves the place in the epoch on Ctrl-C and resumes it bit-identically", function()
    local path = dir .. "/interrupted/checkpoint.safetensors"
    local out, status = run_interrupted(quote(BIN), common .. quote(dir .. "/data") .. " --epochs 3 --out "
      .. quote(dir .. "/interrupted"), 2, 3, "mlp")
    assert.are.equal(130, status, out)
    assert.truthy(out:find("train.lua: interrupted in epoch 2 of 3 after step 3 of 10; saved " .. path .. "\n", 1,
      true), out)
    local command = out:match("\ncontinue with: ([^\n]+)\n")
    assert.are.equal(string.format("%s %s --resume %s", BIN, TRAIN, path), command)
    local state = checkpoint.load(path)
    assert.are.equal(1, state.epoch)
    assert.are.equal(1, #state.history)
    assert.are.equal(2, state.partial.epoch)
    assert.are.equal(3, state.partial.step)
    assert.are.equal(3 * 32, state.partial.seen)
    assert.are.equal(2, #model_metrics(dir .. "/interrupted/metrics.csv"))   -- header + epoch 1
    -- the command it printed, as printed
    local p = assert(io.popen(command .. " 2>&1"))
    out = p:read("a")
    local ok = p:close()
    assert.is_true(ok, out)
    assert.truthy(out:find("resuming " .. path .. " at epoch 2 of 3, step 4 of 10\n", 1, true), out)
    assert.is_true(assert_same_checkpoints(dir .. "/full/checkpoint.safetensors", path) > 6)
    assert.is_nil(checkpoint.load(path).partial)
    assert.are.same(model_metrics(dir .. "/full/metrics.csv"), model_metrics(dir .. "/interrupted/metrics.csv"))
  end)

  it("says from which epoch it resumes", function()
    local out, code = run(common .. quote(dir .. "/data") .. " --epochs 1 --out " .. quote(dir .. "/one"))
    assert.are.equal(0, code, out)
    local path = dir .. "/one/checkpoint.safetensors"
    out, code = run("--epochs 2 --resume " .. quote(path))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("resuming " .. path .. " at epoch 2 of 2\n", 1, true), out)
    out, code = run("--resume " .. quote(path))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("checkpoint " .. path .. " is at epoch 2 of 2: nothing to do", 1, true), out)
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
    assert.truthy(out:find("train.lua: run.directory: cannot use /dev/null/run as the output directory", 1, true), out)
  end)

  it("rejects bad options with a message and exit code 2", function()
    local cases = {
      {"--epochs 0", "--epochs must be >= 1"},
      {"--dropout 1.5", "--dropout must be in"},
      {"--optimizer lbfgs", "--optimizer must be"},
      {"--hidden 10,x", "--hidden must be a list"},
      {"--bogus 1", "unknown option '--bogus'"},
      {"--lr", "option '--lr' needs a number"},
      {"--epoch 2", "train.lua: unknown option '--epoch' (did you mean --epochs?); see --help"},
      {"--batchsize=64", "train.lua: unknown option '--batchsize=64' (did you mean --batch-size?)"},
      {"--epochs=two", "train.lua: option '--epochs' needs a whole number (got 'two')"},
      {"--quiet=yes", "train.lua: option '--quiet' takes no value (got 'yes')"},
      {"--epochs 2.5", "needs a whole number"},
    }
    for _, case in ipairs(cases) do
      local out, code = run(case[1])
      assert.are.equal(2, code, case[1] .. ": " .. out)
      assert.truthy(out:find(case[2], 1, true), case[1] .. ": " .. out)
    end
  end)

  it("takes --key=value as well as --key value, and names the CSV columns as the console does", function()
    local out, code = run("--hidden=16,8 --batch-size=32 --lr=0.01 --threads=2 --data=" .. quote(dir .. "/data")
      .. " --epochs=2 --validation=80 --out=" .. quote(dir .. "/equals"))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("epoch  train loss  train acc    val loss    val acc", 1, true), out)
    assert.truthy(out:find("validation accuracy %d%.%d+ after 2 epochs"), out)
    local lines = {}
    for line in read(dir .. "/equals/metrics.csv"):gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,samples_per_s", lines[1])
    assert.are.equal(3, #lines)
    local state = checkpoint.load(dir .. "/equals/checkpoint.safetensors")
    assert.are.equal(2, state.epoch)
    assert.are.equal(2, state.options.epochs)
    assert.are.equal(80, state.options.validation)
    assert.are.same({16, 784}, state.model["2.weight"]:shape())
    -- without --validation the columns are the test set's, as the console's "test loss"
    assert.are.equal("epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,samples_per_s",
      read(dir .. "/full/metrics.csv"):match("^[^\n]+"))
  end)

  it("checks --out before it loads the data", function()
    local out, code = run("--quiet --data " .. quote(dir .. "/nowhere") .. " --out /dev/null/run")
    assert.are.equal(2, code, out)
    assert.truthy(out:find("train.lua: run.directory: cannot use /dev/null/run as the output directory", 1, true), out)
    assert.is_nil(out:find("fashion_mnist", 1, true), out)
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
    for _, option in ipairs({"--model", "--channels", "--convs-per-block", "--conv-dropout", "--augment"}) do
      assert.truthy(out:find("\n  " .. option .. " ", 1, true), option .. " is not in --help")
    end
  end)

  -- --model cnn: a small network (two blocks of 4 and 8 channels, 16 hidden units) so that the
  -- runs take a fraction of a second.
  local cnn = "--model cnn --channels 4,8 --convs-per-block 1 --hidden 16 --batch-size 32 --lr 0.01 --threads 2 "
    .. "--quiet --data "

  it("trains a CNN with --model cnn and records the model in the checkpoint", function()
    local out, code = run(cnn .. quote(dir .. "/data") .. " --epochs 2 --out " .. quote(dir .. "/cnn"))
    assert.are.equal(0, code, out)
    local acc = tonumber(out:match("test accuracy (%d%.%d+) after 2 epochs"))
    assert.is_not_nil(acc, out)
    assert.is_true(acc > 0.9, "easy data should be learned: " .. out)
    assert.are.equal(3, #model_metrics(dir .. "/cnn/metrics.csv"))
    assert.is_true(os.execute("xmllint --noout " .. quote(dir .. "/cnn/train.svg")) == true)
    assert.truthy(read(dir .. "/cnn/train.svg"):find("CNN 1x28x28-[4]-[8]-16-10", 1, true))
    local state = checkpoint.load(dir .. "/cnn/checkpoint.safetensors")
    assert.are.equal("cnn", state.options.model)
    assert.are.equal("4,8", tostring(state.options.channels))
    assert.is_false(state.options.augment)
    -- Dropout, Unflatten, then Conv2d 1->4 3x3 without bias and its BatchNorm2d (with running statistics)
    assert.are.same({4, 1, 3, 3}, state.model["3.weight"]:shape())
    assert.is_nil(state.model["3.bias"])
    assert.are.same({4}, state.model["4.running_mean"]:shape())
    assert.are.same({8, 4, 3, 3}, state.model["8.weight"]:shape())
    assert.are.same({16, 8 * 7 * 7}, state.model["14.weight"]:shape())
    assert.are.same({10, 16}, state.model["17.weight"]:shape())
  end)

  it("builds the blocks --channels and --convs-per-block ask for, and augments with --augment", function()
    local data = quote(dir .. "/data")
    local out, code = run(cnn .. data .. " --epochs 1 --channels 2,3,4 --convs-per-block 2 --conv-dropout 0 "
      .. "--dropout 0 --augment --out " .. quote(dir .. "/cnn-deep"))
    assert.are.equal(0, code, out)
    local state = checkpoint.load(dir .. "/cnn-deep/checkpoint.safetensors")
    assert.is_true(state.options.augment)
    local convs = {}
    for _, t in pairs(state.model) do
      if t:dim() == 4 then convs[#convs + 1] = table.concat(t:shape(), "x") end
    end
    table.sort(convs)
    assert.are.same({"2x1x3x3", "2x2x3x3", "3x2x3x3", "3x3x3x3", "4x3x3x3", "4x4x3x3"}, convs)
    -- 28 -> 14 -> 7 -> 3 after three pools
    local fc
    for _, t in pairs(state.model) do
      if t:dim() == 2 and t:size(1) == 16 then fc = t end
    end
    assert.are.same({16, 4 * 3 * 3}, fc:shape())
    -- one count per block
    out, code = run(cnn .. data .. " --epochs 1 --channels 2,3 --convs-per-block 1,2 --conv-dropout 0 "
      .. "--dropout 0 --out " .. quote(dir .. "/cnn-mixed"))
    assert.are.equal(0, code, out)
    local mixed = {}
    for _, t in pairs(checkpoint.load(dir .. "/cnn-mixed/checkpoint.safetensors").model) do
      if t:dim() == 4 then mixed[#mixed + 1] = table.concat(t:shape(), "x") end
    end
    table.sort(mixed)
    assert.are.same({"2x1x3x3", "3x2x3x3", "3x3x3x3"}, mixed)
    -- the same run without --augment trains on other batches
    out, code = run(cnn .. data .. " --epochs 1 --channels 2,3,4 --convs-per-block 2 --conv-dropout 0 "
      .. "--dropout 0 --out " .. quote(dir .. "/cnn-deep-plain"))
    assert.are.equal(0, code, out)
    assert.are_not.same(model_metrics(dir .. "/cnn-deep/metrics.csv"),
      model_metrics(dir .. "/cnn-deep-plain/metrics.csv"))
  end)

  it("resumes a CNN with --augment after epoch 1 to bit-identical weights, statistics and metrics", function()
    local data = quote(dir .. "/data")
    local extra = " --epochs 2 --convs-per-block 2 --augment --out "
    local out, code = run(cnn .. data .. extra .. quote(dir .. "/cnn-full"))
    assert.are.equal(0, code, out)
    out, code = run(cnn .. data .. extra .. quote(dir .. "/cnn-resumed") .. " --stop-after 1")
    assert.are.equal(0, code, out)
    assert.are.equal(1, checkpoint.load(dir .. "/cnn-resumed/checkpoint.safetensors").epoch)
    -- the checkpoint's options rebuild the CNN: nothing about the model is given again
    out, code = run("--quiet --resume " .. quote(dir .. "/cnn-resumed/checkpoint.safetensors"))
    assert.are.equal(0, code, out)
    local a = dn.load(dir .. "/cnn-full/checkpoint.safetensors")
    local b = dn.load(dir .. "/cnn-resumed/checkpoint.safetensors")
    local names = 0
    for name, t in pairs(a) do
      names = names + 1
      assert.is_not_nil(b[name], name)
      assert.are.same(t:shape(), b[name]:shape())
      assert.are.equal(0, (t:float() - b[name]:float()):abs():max():item(), name .. " differs after resume")
    end
    assert.is_true(names > 20)
    assert.are.same(model_metrics(dir .. "/cnn-full/metrics.csv"), model_metrics(dir .. "/cnn-resumed/metrics.csv"))
  end)

  it("resumes a CNN with --augment interrupted in its first epoch under plain lua5.4 bit-identically", function()
    local out_dir = dir .. "/cnn-interrupted"
    local path = out_dir .. "/checkpoint.safetensors"
    local out, status = run_interrupted("lua5.4", cnn .. quote(dir .. "/data")
      .. " --epochs 2 --convs-per-block 2 --augment --out " .. quote(out_dir), 1, 2, "cnn")
    assert.are.equal(130, status, out)
    assert.truthy(out:find("train.lua: interrupted in epoch 1 of 2 after step 2 of 10; saved " .. path, 1, true), out)
    local command = out:match("\ncontinue with: ([^\n]+)\n")
    assert.are.equal(string.format("lua5.4 %s --resume %s", TRAIN, path), command)
    local state = checkpoint.load(path)
    assert.are.equal(0, state.epoch)
    assert.are.same({}, state.history)
    assert.are.equal(2, state.partial.step)
    local p = assert(io.popen(command .. " 2>&1"))
    out = p:read("a")
    assert.is_true(p:close(), out)
    assert.truthy(out:find("resuming " .. path .. " at epoch 1 of 2, step 3 of 10\n", 1, true), out)
    assert.is_true(assert_same_checkpoints(dir .. "/cnn-full/checkpoint.safetensors", path) > 20)
    assert.are.same(model_metrics(dir .. "/cnn-full/metrics.csv"), model_metrics(out_dir .. "/metrics.csv"))
  end)

  it("resumes a checkpoint written before --model existed as the MLP it is", function()
    local out, code = run(common .. quote(dir .. "/data") .. " --epochs 2 --stop-after 1 --out "
      .. quote(dir .. "/old"))
    assert.are.equal(0, code, out)
    local path = dir .. "/old/checkpoint.safetensors"
    local state = checkpoint.load(path)
    for _, k in ipairs({"model", "channels", "convs_per_block", "conv_dropout", "augment"}) do
      state.options[k] = nil
    end
    checkpoint.save(path, state)
    -- --augment on the command line does not change the run either: its options come from the checkpoint
    out, code = run("--quiet --augment --resume " .. quote(path))
    assert.are.equal(0, code, out)
    state = checkpoint.load(path)
    assert.are.equal(2, state.epoch)
    assert.are.equal("mlp", state.options.model)
    assert.is_false(state.options.augment)
    assert.are.same({16, 784}, state.model["2.weight"]:shape())
    assert.are.equal(3, #model_metrics(dir .. "/old/metrics.csv"))
  end)

  it("rejects bad CNN options with a message and exit code 2", function()
    local cases = {
      {"--model rnn", "train.lua: --model must be mlp or cnn (got 'rnn')"},
      {"--model", "option '--model' needs a value"},
      {"--model cnn --channels 8,x", "train.lua: --channels must be a list of channel counts like 32,64 (got '8,x')"},
      {"--model cnn --channels 0", "--channels must be a list of channel counts"},
      {"--model cnn --channels ,", "train.lua: --channels needs at least one block"},
      {"--model cnn --channels 8,8,8,8,8", "train.lua: --channels: at most 4 blocks fit a 28x28 image"},
      {"--model cnn --convs-per-block 0", "train.lua: --convs-per-block must be a whole number >= 1 or a list"},
      {"--model cnn --convs-per-block 1.5", "train.lua: --convs-per-block must be a whole number >= 1 or a list"},
      {"--model cnn --channels 8,16 --convs-per-block 1,2,1", "train.lua: --convs-per-block: 3 counts for 2 blocks"},
      {"--model cnn --conv-dropout 1", "train.lua: --conv-dropout must be in [0, 1)"},
      {"--model cnn --hidden 0", "train.lua: --hidden must be a list of widths"},
      {"--channels 8", "train.lua: --channels applies to --model cnn only"},
      {"--conv-dropout 0.2", "train.lua: --conv-dropout applies to --model cnn only"},
      {"--model mlp --convs-per-block 2", "train.lua: --convs-per-block applies to --model cnn only"},
      {"--augment yes", "unexpected argument 'yes'"},
    }
    for _, case in ipairs(cases) do
      local out, code = run(case[1])
      assert.are.equal(2, code, case[1] .. ": " .. out)
      assert.truthy(out:find(case[2], 1, true), case[1] .. ": " .. out)
    end
  end)
end)
