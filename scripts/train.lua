-- scripts/train.lua — the main job: a dropout MLP on Fashion-MNIST.
--
--   dropnet scripts/train.lua [options]        (dropnet scripts/train.lua --help)
--
-- Trains 784-1024-1024-10 with ReLU, dropout on the input and hidden layers,
-- Adam with a cosine learning-rate schedule, and reports train and test
-- loss/accuracy every epoch. Writes to --out (default runs/<timestamp>/):
-- metrics.csv, train.svg (loss and accuracy curves) and
-- checkpoint.safetensors (model, optimizer, generator, epoch, options),
-- each written atomically after every epoch (a write that fails, e.g. on a
-- full disk, stops the run with exit code 2 and keeps the previous epoch's
-- file); --resume continues a run exactly.
--
-- The defaults were chosen on a validation split carved from the training
-- set (--validation 10000), never on the test set; see README.md.
local dn = require "dropnet"
local nn, optim, data, plot = dn.nn, dn.optim, dn.data, dn.plot
local checkpoint = require "dropnet.checkpoint"

local defaults = {
  epochs = 20, batch_size = 128, lr = 1e-3, momentum = 0.9, weight_decay = 0,
  dropout = 0.3, input_dropout = 0.1, hidden = "1024,1024", optimizer = "adam",
  schedule = "cosine", max_norm = 0, seed = 1, threads = 2, data = nil, out = nil,
  resume = nil, validation = 0, normalize = true, quiet = false, stop_after = nil,
}

local usage = [[
usage: dropnet scripts/train.lua [options]

Trains a dropout MLP on Fashion-MNIST and prints the test accuracy.

options:
  --epochs N            epochs to train (default 20)
  --batch-size N        samples per step (default 128)
  --lr X                learning rate (default 0.001)
  --optimizer NAME      adam | adamw | sgd (default adam)
  --momentum X          SGD momentum (default 0.9; Nesterov)
  --weight-decay X      weight decay (default 0)
  --schedule NAME       cosine | none (default cosine)
  --dropout P           dropout on hidden layers (default 0.3)
  --input-dropout P     dropout on the input pixels (default 0.1)
  --hidden W1,W2,...    hidden layer widths (default 1024,1024)
  --max-norm C          max-norm constraint on each unit's incoming weights (default 0: off)
  --validation N        hold out N training samples and report on them instead of the test set
  --no-normalize        pixels in [0,1] without mean/std normalization
  --seed N              random seed (default 1)
  --threads N           threads for dropnet and OpenBLAS (default 2)
  --data DIR            directory with the Fashion-MNIST files (default: $DROPNET_DATA or
                        /usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist)
  --out DIR             output directory (default runs/<timestamp>)
  --resume FILE         continue from a checkpoint (its options are used; --epochs may extend the run,
                        which changes the learning-rate schedule from there on)
  --stop-after N        stop after epoch N as if interrupted (continue later with --resume)
  --quiet               print only the final result
  --help                this text
]]

-- --- options -----------------------------------------------------------------------

local function fail(fmt, ...)
  io.stderr:write("train.lua: ", string.format(fmt, ...), "\n")
  os.exit(2)
end

local function parse_args(argv)
  local opts, given = {}, {}
  for k, v in pairs(defaults) do opts[k] = v end
  local numbers = {epochs = "int", batch_size = "int", lr = "num", momentum = "num", weight_decay = "num",
    dropout = "num", input_dropout = "num", max_norm = "num", seed = "int", threads = "int", validation = "int",
    stop_after = "int"}
  local strings = {hidden = true, optimizer = true, schedule = true, data = true, out = true, resume = true}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      io.write(usage)
      os.exit(0)
    elseif a == "--quiet" then
      opts.quiet, given.quiet = true, true
    elseif a == "--no-normalize" then
      opts.normalize, given.normalize = false, true
    elseif a:sub(1, 2) == "--" then
      local key = a:sub(3):gsub("-", "_")
      local v = argv[i + 1]
      if not numbers[key] and not strings[key] then fail("unknown option '%s' (see --help)", a) end
      if v == nil then fail("option '%s' needs a value", a) end
      if numbers[key] then
        local n = tonumber(v)
        if not n or (numbers[key] == "int" and math.tointeger(n) == nil) then
          fail("option '%s' needs %s (got '%s')", a, numbers[key] == "int" and "a whole number" or "a number", v)
        end
        opts[key] = numbers[key] == "int" and math.tointeger(n) or n
      else
        opts[key] = v
      end
      given[key] = true
      i = i + 1
    else
      fail("unexpected argument '%s' (see --help)", a)
    end
    i = i + 1
  end
  return opts, given
end

local function check_options(o)
  if o.epochs < 1 then fail("--epochs must be >= 1") end
  if o.batch_size < 1 then fail("--batch-size must be >= 1") end
  if not (o.lr > 0) then fail("--lr must be > 0") end
  for _, k in ipairs({"dropout", "input_dropout"}) do
    if not (o[k] >= 0 and o[k] < 1) then fail("--%s must be in [0, 1)", k:gsub("_", "-")) end
  end
  if o.optimizer ~= "adam" and o.optimizer ~= "adamw" and o.optimizer ~= "sgd" then
    fail("--optimizer must be adam, adamw or sgd (got '%s')", o.optimizer)
  end
  if o.schedule ~= "cosine" and o.schedule ~= "none" then fail("--schedule must be cosine or none") end
  if o.threads < 1 then fail("--threads must be >= 1") end
  if o.validation < 0 or o.validation >= 60000 then fail("--validation must be in [0, 60000)") end
  local widths = {}
  for w in tostring(o.hidden):gmatch("[^,]+") do
    local n = math.tointeger(tonumber(w))
    if not n or n < 1 then fail("--hidden must be a list of widths like 1024,1024 (got '%s')", o.hidden) end
    widths[#widths + 1] = n
  end
  if #widths == 0 then fail("--hidden needs at least one width") end
  return widths
end

-- --- model, optimizer, schedule ---------------------------------------------------------

local function build_model(widths, o)
  local layers = {nn.Dropout(o.input_dropout)}
  local fan_in = 784
  for _, w in ipairs(widths) do
    layers[#layers + 1] = nn.Linear(fan_in, w)
    layers[#layers + 1] = nn.ReLU()
    layers[#layers + 1] = nn.Dropout(o.dropout)
    fan_in = w
  end
  layers[#layers + 1] = nn.Linear(fan_in, 10)
  return nn.Sequential(table.unpack(layers))
end

local function build_optimizer(params, o)
  if o.optimizer == "sgd" then
    return optim.SGD(params, {lr = o.lr, momentum = o.momentum, nesterov = o.momentum > 0,
      weight_decay = o.weight_decay})
  elseif o.optimizer == "adamw" then
    return optim.AdamW(params, {lr = o.lr, weight_decay = o.weight_decay})
  end
  return optim.Adam(params, {lr = o.lr, weight_decay = o.weight_decay})
end

-- The cosine schedule (optim.lr_scheduler.CosineAnnealingLR) over all `total` steps of the run,
-- stepped after every batch, from --lr down to 0; nil for --schedule none (the rate stays --lr).
-- Its rate is a closed form of the step count, so a resumed run, whose schedule is moved on to
-- the first step it runs (`done` steps), gets the same rates as an uninterrupted one. The base
-- rate is --lr: a checkpoint's parameter groups hold the rate of their last step.
local function build_schedule(opt, o, total, done)
  if o.schedule ~= "cosine" then return nil end
  for _, group in ipairs(opt.param_groups) do group.initial_lr = o.lr end
  local schedule = optim.lr_scheduler.CosineAnnealingLR(opt, {T_max = total})
  for _ = 1, done do schedule:step() end
  return schedule
end

-- --- progress ------------------------------------------------------------------------------

local function format_time(seconds)
  seconds = math.floor(seconds + 0.5)
  if seconds >= 60 then return string.format("%dm%02ds", seconds // 60, seconds % 60) end
  return string.format("%ds", seconds)
end

-- A progress bar redrawn in place on a terminal; nothing when output is a log.
local function progress_bar(enabled, epoch, epochs, batches)
  if not enabled then return function() end, function() end end
  local t0, last = dn.clock(), -1
  local function draw(done, samples, loss)
    local now = dn.clock()
    if done < batches and now - last < 0.1 then return end
    last = now
    local width = 28
    local filled = math.floor(width * done / batches)
    local rate = samples / math.max(now - t0, 1e-9)
    local eta = (batches - done) * (now - t0) / math.max(done, 1)
    io.stderr:write(string.format("\r\27[Kepoch %d/%d [%s%s] %d/%d  loss %.4f  %.0f samples/s  ETA %s",
      epoch, epochs, string.rep("=", filled), string.rep(" ", width - filled), done, batches, loss, rate,
      format_time(eta)))
    io.stderr:flush()
  end
  local function clear() io.stderr:write("\r\27[K") io.stderr:flush() end
  return draw, clear
end

-- --- evaluation ------------------------------------------------------------------------------

-- In batches of EVAL_BATCH: the whole test set at once would hold 10,000-row activations
-- (40 MB per hidden layer), and the byte-stored images are converted batch by batch.
local EVAL_BATCH = 1000

local function evaluate(model, loader, loss_fn)
  model:eval()
  local loss_sum, correct, seen = 0, 0, 0
  dn.no_grad(function()
    for x, y in loader:iter() do
      local logits = model(x)
      local n = y:size(1)
      loss_sum = loss_sum + loss_fn(logits, y):item() * n
      correct = correct + logits:argmax(2):eq(y):sum():item()
      seen = seen + n
    end
  end)
  model:train()
  return loss_sum / seen, correct / seen
end

-- --- outputs ---------------------------------------------------------------------------------

local CSV_HEADER = "epoch,train_loss,train_acc,eval_loss,eval_acc,lr,seconds,samples_per_s"

-- Every output goes through the library's atomic writer (temporary file, fsync, rename; any
-- write, close or rename error is an error naming the file): a failed write stops the run with
-- a message and exit code 2, and leaves the previous epoch's file in place.
local function write_file(path, text)
  local ok, err = pcall(dn.write_file, path, text)
  if not ok then fail("%s", err) end
end

local function write_metrics(path, history)
  local lines = {CSV_HEADER}
  for _, h in ipairs(history) do
    lines[#lines + 1] = string.format("%d,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f,%.1f", h.epoch, h.train_loss, h.train_acc,
      h.eval_loss, h.eval_acc, h.lr, h.seconds, h.samples_per_s)
  end
  write_file(path, table.concat(lines, "\n") .. "\n")
end

local function write_plot(path, history, eval_name, title)
  local epochs, series = {}, {train_loss = {}, eval_loss = {}, train_acc = {}, eval_acc = {}}
  for i, h in ipairs(history) do
    epochs[i] = h.epoch
    for k, list in pairs(series) do list[i] = h[k] end
  end
  write_file(path, plot.panels({
    {title = "Loss", x_label = "epoch", y_label = "cross-entropy",
     series = {{name = "train", x = epochs, y = series.train_loss},
               {name = eval_name, x = epochs, y = series.eval_loss}}},
    {title = "Accuracy", x_label = "epoch", y_label = "accuracy",
     series = {{name = "train", x = epochs, y = series.train_acc},
               {name = eval_name, x = epochs, y = series.eval_acc}}},
  }, {columns = 2, title = title}))
end

-- --- main --------------------------------------------------------------------------------------

local opts, given = parse_args(arg)
local state
if opts.resume then
  local ok, loaded = pcall(checkpoint.load, opts.resume)
  if not ok then fail("%s", loaded) end
  state = loaded
  -- the run's options come from the checkpoint; only these may change
  local keep = {epochs = true, out = true, resume = true, quiet = true, threads = true, data = true,
    stop_after = true}
  for k, v in pairs(state.options) do if not (keep[k] and given[k]) then opts[k] = v end end
end
local widths = check_options(opts)
dn.set_num_threads(opts.threads)
dn.manual_seed(opts.seed)
local say = opts.quiet and function() end or print

opts.out = opts.out or (state and opts.resume:match("^(.*)/[^/]*$")) or os.date("runs/%Y%m%d-%H%M%S")
if not os.execute(string.format("mkdir -p '%s'", opts.out:gsub("'", "'\\''"))) then
  fail("cannot create the output directory %s", opts.out)
end

local normalize = opts.normalize
local ok, train_set = pcall(data.fashion_mnist, {split = "train", dir = opts.data, normalize = normalize})
if not ok then fail("%s", train_set) end
local eval_set, eval_name
if opts.validation > 0 then
  train_set, eval_set = data.random_split(train_set, #train_set - opts.validation,
    {generator = dn.Generator(opts.seed + 1000)})
  eval_name = "validation"
else
  eval_set = data.fashion_mnist{split = "test", dir = opts.data, normalize = normalize}
  eval_name = "test"
end
local eval_loader = data.DataLoader(eval_set, {batch_size = EVAL_BATCH})

local model = build_model(widths, opts)
local opt = build_optimizer(model:parameters(), opts)
local loss_fn = nn.CrossEntropyLoss()
local loader = data.DataLoader(train_set, {batch_size = opts.batch_size, shuffle = true})
local history, first_epoch = {}, 1
if state then
  model:load_state_dict(state.model)
  opt:load_state_dict(state.optim)
  dn.set_rng_state(state.rng)
  history = state.history or {}
  first_epoch = state.epoch + 1
  if first_epoch > opts.epochs then
    say(string.format("checkpoint %s is at epoch %d of %d: nothing to do", opts.resume, state.epoch, opts.epochs))
  end
end

local batches = #loader
local schedule = build_schedule(opt, opts, batches * opts.epochs, batches * (first_epoch - 1))
local interactive = not opts.quiet and dn.isatty(io.stderr)
say(string.format("dropnet %s: MLP 784-%s-10, dropout %.2f input / %.2f hidden, %s lr %g (%s), batch %d, %d threads",
  dn.version, table.concat(widths, "-"), opts.input_dropout, opts.dropout, opts.optimizer, opts.lr, opts.schedule,
  opts.batch_size, opts.threads))
say(string.format("data: %d training samples, %d %s samples; writing to %s/", #train_set, #eval_set, eval_name,
  opts.out))
say(string.format("%5s  %10s  %9s  %10s  %9s  %7s  %9s", "epoch", "train loss", "train acc", eval_name:sub(1, 4) ..
  " loss", eval_name:sub(1, 4) .. " acc", "seconds", "samples/s"))

local run_t0 = dn.clock()
local last_epoch = opts.stop_after and math.min(opts.stop_after, opts.epochs) or opts.epochs
for epoch = first_epoch, last_epoch do
  local draw, clear = progress_bar(interactive, epoch, opts.epochs, batches)
  local t0 = dn.clock()
  local loss_sum, correct, seen, lr = 0, 0, 0, opts.lr
  model:train()
  local b = 0
  for x, y in loader:iter() do
    lr = opt.param_groups[1].lr
    local logits = model(x)
    local loss = loss_fn(logits, y)
    opt:zero_grad()
    loss:backward()
    opt:step()
    if schedule then schedule:step() end
    if opts.max_norm > 0 then
      for _, layer in ipairs(model:modules()) do
        if layer.weight and layer.weight:dim() == 2 then optim.max_norm_(layer.weight, opts.max_norm) end
      end
    end
    local n = y:size(1)
    loss_sum = loss_sum + loss:item() * n
    correct = correct + logits:argmax(2):eq(y):sum():item()
    seen = seen + n
    b = b + 1
    draw(b, seen, loss_sum / seen)
  end
  local seconds = dn.clock() - t0
  clear()
  local eval_loss, eval_acc = evaluate(model, eval_loader, loss_fn)
  local h = {epoch = epoch, train_loss = loss_sum / seen, train_acc = correct / seen, eval_loss = eval_loss,
    eval_acc = eval_acc, lr = lr, seconds = seconds, samples_per_s = seen / seconds}
  history[#history + 1] = h
  say(string.format("%5d  %10.4f  %9.4f  %10.4f  %9.4f  %7.1f  %9.0f", epoch, h.train_loss, h.train_acc, eval_loss,
    eval_acc, seconds, h.samples_per_s))
  write_metrics(opts.out .. "/metrics.csv", history)
  write_plot(opts.out .. "/train.svg", history, eval_name,
    string.format("dropnet: 784-%s-10 on Fashion-MNIST", table.concat(widths, "-")))
  local saved_opts = {}
  for k, v in pairs(opts) do if k ~= "resume" and k ~= "stop_after" then saved_opts[k] = v end end
  local saved, save_err = pcall(checkpoint.save, opts.out .. "/checkpoint.safetensors", {
    model = model:state_dict(), optim = opt:state_dict(), rng = dn.get_rng_state(), epoch = epoch,
    options = saved_opts, history = history})
  if not saved then fail("%s", save_err) end
end

local last = history[#history]
if last then
  print(string.format("%s accuracy %.4f after %d epochs (%s of training); outputs in %s/", eval_name, last.eval_acc,
    last.epoch, format_time(dn.clock() - run_t0), opts.out))
end
