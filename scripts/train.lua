-- scripts/train.lua — the main job: a dropout MLP (or a small CNN) on Fashion-MNIST.
--
--   dropnet scripts/train.lua [options]        (dropnet scripts/train.lua --help)
--
-- --model mlp (the default) trains 784-1024-1024-10 with ReLU, dropout on the
-- input and hidden layers. --model cnn trains a convolutional network on the
-- same 28x28 images (nn.Unflatten to [N,1,28,28]): one block per --channels
-- entry, each --convs-per-block times Conv2d 3x3 (padding 1, no bias) +
-- BatchNorm2d + ReLU, then MaxPool2d 2 and Dropout2d(--conv-dropout); then
-- Flatten, Linear to each --hidden width + ReLU + Dropout(--dropout), and
-- Linear to 10. --augment (either model) crops every training image at random
-- from it padded by 2 black pixels and mirrors half of them
-- (data.RandomCrop, data.RandomHorizontalFlip); evaluation never augments.
--
-- Both use Adam with a cosine learning-rate schedule, and report train and
-- test loss/accuracy every epoch. Writes to --out (default runs/<timestamp>/):
-- metrics.csv, train.svg (loss and accuracy curves) and
-- checkpoint.safetensors (model, optimizer, generator, epoch, options --
-- the model kind and architecture included), each written atomically after
-- every epoch (a write that fails, e.g. on a full disk, stops the run with
-- exit code 2 and keeps the previous epoch's file); --resume continues a run
-- exactly, rebuilding the model the checkpoint was made with. Ctrl-C ends the
-- step under way, writes the checkpoint with the place in the epoch and
-- prints the --resume command (exit status 130); a second Ctrl-C ends the
-- process at once. Options are --key value or --key=value (run.parse_args).
--
-- The defaults of both models were chosen on a validation split carved from
-- the training set (--validation 10000), never on the test set; see README.md.
-- The CNN's: channels 32,64 with one conv in the first block and two in the
-- second, conv dropout 0.2, hidden 256, dropout 0.5, 20 epochs (the run fits
-- in 10 minutes on a 2-core machine, with room for a slower one).
local dn = require "dropnet"
local nn, optim, data, plot = dn.nn, dn.optim, dn.data, dn.plot
local checkpoint = require "dropnet.checkpoint"
local run = require "dropnet.run"

-- Defaults that depend on --model, applied to the options not given (nor read from a checkpoint).
local model_defaults = {
  mlp = {epochs = 20, dropout = 0.3, input_dropout = 0.1, hidden = "1024,1024"},
  cnn = {epochs = 20, dropout = 0.5, input_dropout = 0, hidden = "256"},
}

-- Options that only the CNN reads.
local CNN_ONLY = {"channels", "convs_per_block", "conv_dropout"}

-- Options a checkpoint written before --model existed lacks, with the values its run had.
local LEGACY = {model = "mlp", augment = false}

local usage = [[
usage: dropnet scripts/train.lua [options]

Trains a dropout MLP (or a small CNN) on Fashion-MNIST and prints the test accuracy.
Options take --key value or --key=value. Ctrl-C ends the step, saves a checkpoint and prints
the command that resumes it; a second Ctrl-C stops at once.

options:
  --model NAME          mlp | cnn (default mlp)
  --epochs N            epochs to train (default 20)
  --batch-size N        samples per step (default 128)
  --lr X                learning rate (default 0.001)
  --optimizer NAME      adam | adamw | sgd (default adam)
  --momentum X          SGD momentum (default 0.9; Nesterov)
  --weight-decay X      weight decay (default 0)
  --schedule NAME       cosine | none (default cosine)
  --dropout P           dropout on hidden (fully connected) layers (default 0.3; cnn: 0.5)
  --input-dropout P     dropout on the input pixels (default 0.1; cnn: 0)
  --hidden W1,W2,...    hidden (fully connected) layer widths (default 1024,1024; cnn: 256)
  --channels C1,C2,...  cnn: one conv block per entry with that many channels, each ending in a
                        2x2 max-pool, at most 4 blocks (default 32,64)
  --convs-per-block N   cnn: 3x3 conv + batch norm + ReLU layers per block, or one count per block
                        (N1,N2,...; default 1,2)
  --conv-dropout P      cnn: channel dropout (Dropout2d) after each block (default 0.2)
  --augment             random crops (padding 2) and horizontal flips of the training images
  --max-norm C          max-norm constraint on each unit's incoming weights, fully connected
                        layers only (default 0: off)
  --validation N        hold out N training samples and report on them instead of the test set
  --no-normalize        pixels in [0,1] without mean/std normalization
  --seed N              random seed (default 1)
  --threads N           threads for dropnet and OpenBLAS (default 2)
  --data DIR            directory with the Fashion-MNIST files (default: $DROPNET_DATA or
                        /usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist)
  --out DIR             output directory (default runs/<timestamp>)
  --resume FILE         continue from a checkpoint (its options, the model included, are used; --epochs
                        may extend the run, which changes the learning-rate schedule from there on)
  --stop-after N        stop after epoch N as if interrupted (continue later with --resume)
  --track               record each layer's gradient norms, update ratio and active/dead units every
                        --track-every steps into track.csv and track.svg (dropnet.analysis.track)
  --track-every N       steps between tracked steps (default 100)
  --distributed         data-parallel training over MPI: mpirun -np N dropnet scripts/train.lua
                        --distributed ...; each rank trains on its share of every batch and draws the
                        masks one process would (the same steps as one process); rank 0 alone prints
                        and writes; threads per rank default to 1; a checkpoint resumes with any N
  --quiet               print only the final result (and where a resumed or interrupted run is)
  --help                this text
]]

-- --- options -----------------------------------------------------------------------

local function fail(fmt, ...)
  io.stderr:write("train.lua: ", string.format(fmt, ...), "\n")
  os.exit(2)
end

-- The options for run.parse_args: {name, kind, default} (--batch-size is batch_size). The options whose
-- default depends on --model (model_defaults) have none here.
local OPTIONS = {
  {"model", "string", "mlp"}, {"epochs", "int"}, {"batch_size", "int", 128}, {"lr", "num", 1e-3},
  {"optimizer", "string", "adam"}, {"momentum", "num", 0.9}, {"weight_decay", "num", 0},
  {"schedule", "string", "cosine"},
  {"dropout", "num"}, {"input_dropout", "num"}, {"hidden", "string"}, {"channels", "string", "32,64"},
  {"convs_per_block", "string", "1,2"}, {"conv_dropout", "num", 0.2}, {"augment", "flag", false},
  {"max_norm", "num", 0}, {"validation", "int", 0}, {"no_normalize", "flag", false}, {"seed", "int", 1},
  {"threads", "int", 2}, {"data", "string"}, {"out", "string"}, {"resume", "string"}, {"stop_after", "int"},
  {"track", "flag", false}, {"track_every", "int", 100}, {"quiet", "flag", false},
  {"distributed", "flag", false},
}

-- `--key value` and `--key=value`; an unknown option names the nearest known one (run.parse_args).
local function parse_args(argv)
  local ok, opts, given = pcall(run.parse_args, argv, OPTIONS)
  if not ok then fail("%s", opts) end
  if opts.help then
    io.write(usage)
    os.exit(0)
  end
  opts.help, given.help = nil, nil
  -- a checkpoint's options hold `normalize`, as they always have
  opts.normalize, given.normalize = not opts.no_normalize, given.no_normalize
  opts.no_normalize, given.no_normalize = nil, nil
  return opts, given
end

-- A comma-separated list of whole numbers >= 1, e.g. "1024,1024" (empty for ""), or nil.
local function parse_widths(text)
  local widths = {}
  for w in tostring(text):gmatch("[^,]+") do
    local n = math.tointeger(tonumber(w))
    if not n or n < 1 then return nil end
    widths[#widths + 1] = n
  end
  return widths
end

-- The model's defaults for the options still unset (--model checked first).
local function apply_model_defaults(o, given)
  if o.model ~= "mlp" and o.model ~= "cnn" then fail("--model must be mlp or cnn (got '%s')", tostring(o.model)) end
  for k, v in pairs(model_defaults[o.model]) do
    if o[k] == nil then o[k] = v end
  end
  if o.model == "mlp" then
    for _, k in ipairs(CNN_ONLY) do
      if given[k] then fail("--%s applies to --model cnn only", (k:gsub("_", "-"))) end
    end
  end
end

local function check_options(o)
  if o.epochs < 1 then fail("--epochs must be >= 1") end
  if o.batch_size < 1 then fail("--batch-size must be >= 1") end
  if not (o.lr > 0) then fail("--lr must be > 0") end
  for _, k in ipairs({"dropout", "input_dropout", "conv_dropout"}) do
    if not (o[k] >= 0 and o[k] < 1) then fail("--%s must be in [0, 1)", (k:gsub("_", "-"))) end
  end
  if o.optimizer ~= "adam" and o.optimizer ~= "adamw" and o.optimizer ~= "sgd" then
    fail("--optimizer must be adam, adamw or sgd (got '%s')", o.optimizer)
  end
  if o.schedule ~= "cosine" and o.schedule ~= "none" then fail("--schedule must be cosine or none") end
  if o.threads < 1 then fail("--threads must be >= 1") end
  if (o.track_every or 100) < 1 then fail("--track-every must be >= 1") end
  if o.validation < 0 or o.validation >= 60000 then fail("--validation must be in [0, 60000)") end
  local widths = parse_widths(o.hidden)
  if not widths then fail("--hidden must be a list of widths like 1024,1024 (got '%s')", o.hidden) end
  if #widths == 0 then fail("--hidden needs at least one width") end
  local channels = parse_widths(o.channels)
  if not channels then fail("--channels must be a list of channel counts like 32,64 (got '%s')", o.channels) end
  if #channels == 0 then fail("--channels needs at least one block") end
  -- each block halves the image (28, 14, 7, 3, 1): a fifth would leave nothing
  if #channels > 4 then
    fail("--channels: at most 4 blocks fit a 28x28 image, each halving it (got %d: '%s')", #channels, o.channels)
  end
  -- one count for every block, or one per block (a checkpoint may hold a number)
  local convs = parse_widths(o.convs_per_block)
  if not convs or #convs == 0 then
    fail("--convs-per-block must be a whole number >= 1 or a list like 1,2 (got '%s')", tostring(o.convs_per_block))
  end
  if #convs == 1 then
    for i = 2, #channels do convs[i] = convs[1] end
  elseif #convs ~= #channels then
    fail("--convs-per-block: %d counts for %d blocks (--channels %s)", #convs, #channels, o.channels)
  end
  return widths, channels, convs
end

-- --- model, optimizer, schedule ---------------------------------------------------------

-- The fully connected layers from fan_in features: each width + ReLU + dropout, then 10 logits.
local function add_classifier(layers, fan_in, widths, o)
  for _, w in ipairs(widths) do
    layers[#layers + 1] = nn.Linear(fan_in, w)
    layers[#layers + 1] = nn.ReLU()
    layers[#layers + 1] = nn.Dropout(o.dropout)
    fan_in = w
  end
  layers[#layers + 1] = nn.Linear(fan_in, 10)
  return layers
end

local function build_mlp(widths, o)
  return nn.Sequential(table.unpack(add_classifier({nn.Dropout(o.input_dropout)}, 784, widths, o)))
end

-- The CNN takes the same [N,784] batches as the MLP. The convolutions carry no bias: the batch
-- norm right after them adds its own.
local function build_cnn(widths, channels, convs, o)
  local layers = {nn.Dropout(o.input_dropout), nn.Unflatten(2, {1, 28, 28})}
  local in_channels, side = 1, 28
  for b, c in ipairs(channels) do
    for _ = 1, convs[b] do
      layers[#layers + 1] = nn.Conv2d(in_channels, c, 3, {padding = 1, bias = false})
      layers[#layers + 1] = nn.BatchNorm2d(c)
      layers[#layers + 1] = nn.ReLU()
      in_channels = c
    end
    layers[#layers + 1] = nn.MaxPool2d(2)
    layers[#layers + 1] = nn.Dropout2d(o.conv_dropout)
    side = side // 2
  end
  layers[#layers + 1] = nn.Flatten()
  return nn.Sequential(table.unpack(add_classifier(layers, in_channels * side * side, widths, o)))
end

local function build_model(widths, channels, convs, o)
  if o.model == "cnn" then return build_cnn(widths, channels, convs, o) end
  return build_mlp(widths, o)
end

-- "MLP 784-1024-1024-10" or "CNN 1x28x28-[32]-[64]-128-10": for the log and the plot's title.
local function model_name(widths, channels, convs, o)
  if o.model ~= "cnn" then return string.format("MLP 784-%s-10", table.concat(widths, "-")) end
  local blocks = {}
  for i, c in ipairs(channels) do
    blocks[i] = "[" .. (convs[i] > 1 and (convs[i] .. "x") or "") .. c .. "]"
  end
  return string.format("CNN 1x28x28-%s-%s-10", table.concat(blocks, "-"), table.concat(widths, "-"))
end

-- The training batches' augmentation (--augment): crops of the images padded by 2 pixels of
-- the value a black pixel has (its byte table's entry for 0: zero padding before normalization,
-- as torchvision pads images), and horizontal flips, drawn from the default generator (so the
-- checkpoint's generator state covers them). nil without --augment.
local function augmentation(o, train_set)
  if not o.augment then return nil end
  local pixels = train_set.byte_tables[1]
  local black = pixels and pixels:narrow(1, 1, 1):item() or 0
  local shape = {1, 28, 28}
  return data.Compose{data.RandomCrop(28, {padding = 2, fill = black, shape = shape}),
    data.RandomHorizontalFlip({p = 0.5, shape = shape})}
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

-- --- evaluation ------------------------------------------------------------------------------

-- In batches of EVAL_BATCH: the whole test set at once would hold 10,000-row activations
-- (40 MB per hidden layer), and the byte-stored images are converted batch by batch.
local EVAL_BATCH = 1000

-- Sums of the ranks' loss, correct count and sample count (as they are alone).
local function sum_over_ranks(dist, loss_sum, correct, seen)
  if not dist then return loss_sum, correct, seen end
  local t = dist.all_reduce(dn.tensor({loss_sum, correct, seen}), "sum"):totable()
  return t[1], t[2], t[3]
end

-- With --distributed each rank evaluates its share of the set (a distributed loader) and the sums are added.
local function evaluate(model, loader, loss_fn, dist)
  model:eval()
  local loss_sum, correct, seen = 0, 0, 0
  dn.no_grad(function()
    for x, y in loader:iter() do
      local n = y:size(1)
      if n > 0 then
        local logits = model(x)
        loss_sum = loss_sum + loss_fn(logits, y):item() * n
        correct = correct + logits:argmax(2):eq(y):sum():item()
        seen = seen + n
      end
    end
  end)
  model:train()
  loss_sum, correct, seen = sum_over_ranks(dist, loss_sum, correct, seen)
  return loss_sum / seen, correct / seen
end

-- --- outputs ---------------------------------------------------------------------------------

-- metrics.csv names the evaluation columns as the console does: test_loss and test_acc, or
-- val_loss and val_acc with --validation. (The history keeps eval_loss and eval_acc, which
-- checkpoints hold.)
local function csv_header(short)
  return string.format("epoch,train_loss,train_acc,%s_loss,%s_acc,lr,seconds,samples_per_s", short, short)
end

-- Every output goes through the library's atomic writer (temporary file, fsync, rename; any
-- write, close or rename error is an error naming the file): a failed write stops the run with
-- a message and exit code 2, and leaves the previous epoch's file in place.
local function write_file(path, text)
  local ok, err = pcall(dn.write_file, path, text)
  if not ok then fail("%s", err) end
end

local function write_metrics(path, history, short)
  local lines = {csv_header(short)}
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

-- --- Ctrl-C ------------------------------------------------------------------------------------

-- s quoted for a POSIX shell when it needs to be.
local function shell_word(s)
  if s:match("^[%w_%-%./=:,+@]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The command line that continues from `path`: this interpreter with its own options (arg[-n]..arg[-1],
-- as lua.c and dropnet build `arg`), this script, --resume. The checkpoint holds every other option.
local function resume_command(path)
  local first = 0
  while arg[first - 1] ~= nil do first = first - 1 end
  local words = {}
  for i = first, 0 do words[#words + 1] = shell_word(arg[i]) end
  words[#words + 1] = "--resume"
  words[#words + 1] = shell_word(path)
  return table.concat(words, " ")
end

-- After the first Ctrl-C (dn.catch_interrupt) the run ends its step, saves the checkpoint and stops
-- here with exit status 130, as a shell reports a process ended by SIGINT.
local function stop_interrupted(where, path)
  -- on a terminal, off the line where it echoed ^C
  io.stderr:write(string.format("%strain.lua: interrupted %s; saved %s\ncontinue with: %s\n",
    dn.isatty(io.stderr) and "\n" or "", where, path, resume_command(path)))
  os.exit(130)
end

-- A test hook: DROPNET_TRAIN_PAUSE=E:S:FILE makes the run, after step S of epoch E, create FILE and wait
-- (up to a minute) for a SIGINT, so that a test interrupts it at a known step whatever the timing.
local function pause_hook()
  local e, s, file = (os.getenv("DROPNET_TRAIN_PAUSE") or ""):match("^(%d+):(%d+):(.+)$")
  if not e then return nil end
  return {epoch = math.tointeger(tonumber(e)), step = math.tointeger(tonumber(s)), file = file}
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
    stop_after = true, distributed = true}
  for k, v in pairs(state.options) do if not (keep[k] and given[k]) then opts[k] = v end end
  for k, v in pairs(LEGACY) do if state.options[k] == nil then opts[k] = v end end
end
apply_model_defaults(opts, given)
local widths, channels, convs = check_options(opts)

-- --distributed: one process per rank under mpirun; rank 0 (the leader) alone prints and writes.
local dist
if opts.distributed then
  dist = dn.distributed
  if not dist.available() then
    fail("--distributed: this dropnet is built without MPI (Debian: libopenmpi-dev and openmpi-bin, then rebuild)")
  end
  local ok, err = pcall(dist.init)
  if not ok then fail("--distributed: %s", err) end
  -- one thread per rank unless told: mpirun -np N places N ranks on N cores
  if not given.threads then opts.threads = 1 end
end
local rank, ranks = dist and dist.rank() or 0, dist and dist.world_size() or 1
local leader = rank == 0
dn.set_num_threads(opts.threads)
dn.manual_seed(opts.seed)
local say = (opts.quiet or not leader) and function() end or print

-- the output directory is checked before the data loads (the leader's: the others write nothing)
do
  local ok, out = true, opts.out
  if leader then ok, out = pcall(run.directory, opts.out or (state and opts.resume:match("^(.*)/[^/]*$")) or nil) end
  if not ok then fail("%s", out) end
  opts.out = out or "(rank 0's directory)"
end
local checkpoint_path = opts.out .. "/checkpoint.safetensors"

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
-- the evaluation's name in the console's header and the CSV's columns
local eval_short = opts.validation > 0 and "val" or "test"
local eval_loader = data.DataLoader(eval_set, {batch_size = EVAL_BATCH, distributed = dist ~= nil})

local model = build_model(widths, channels, convs, opts)
local opt = build_optimizer(model:parameters(), opts)
local loss_fn = nn.CrossEntropyLoss()
local loader = data.DataLoader(train_set, {batch_size = opts.batch_size, shuffle = true,
  transform = augmentation(opts, train_set), distributed = dist ~= nil})
local batches = #loader
-- partial: where in its epoch a checkpoint written on Ctrl-C stopped (nil after a whole epoch)
local history, first_epoch, partial = {}, 1, nil
if state then
  model:load_state_dict(state.model)
  opt:load_state_dict(state.optim)
  dn.set_rng_state(state.rng)
  history = state.history or {}
  first_epoch = state.epoch + 1
  partial = state.partial
  if partial and (partial.epoch ~= first_epoch or not (partial.step >= 1 and partial.step < batches)) then
    fail("%s stopped at step %s of epoch %s, which a run of %d steps per epoch after epoch %d cannot continue",
      opts.resume, tostring(partial.step), tostring(partial.epoch), batches, state.epoch)
  end
  -- said even with --quiet: one line, and what a resumed run does is not obvious
  if not leader then -- luacheck: ignore 542
  elseif first_epoch > opts.epochs then
    print(string.format("checkpoint %s is at epoch %d of %d: nothing to do", opts.resume, state.epoch, opts.epochs))
  elseif partial then
    print(string.format("resuming %s at epoch %d of %d, step %d of %d", opts.resume, first_epoch, opts.epochs,
      partial.step + 1, batches))
  else
    print(string.format("resuming %s at epoch %d of %d", opts.resume, first_epoch, opts.epochs))
  end
end

-- the model the training steps call: with --distributed its DataParallel wrapper, which starts from rank 0's
-- parameters and sums the gradients over the ranks (model itself is what the checkpoints hold)
local train_model = dist and nn.DataParallel(model) or model
-- a checkpoint from before --track lacks both options
local tracker = leader and opts.track and dn.analysis.track(model, {every = opts.track_every or 100, out = opts.out})
  or nil
local done_steps = batches * (first_epoch - 1) + (partial and partial.step or 0)
local schedule = build_schedule(opt, opts, batches * opts.epochs, done_steps)
local interactive = leader and not opts.quiet and dn.isatty(io.stderr)
if opts.model == "cnn" then
  say(string.format("dropnet %s: %s, dropout %.2f input / %.2f conv / %.2f hidden%s, %s lr %g (%s), batch %d, "
    .. "%d threads%s", dn.version, model_name(widths, channels, convs, opts), opts.input_dropout, opts.conv_dropout,
    opts.dropout, opts.augment and ", augmented" or "", opts.optimizer, opts.lr, opts.schedule, opts.batch_size,
    opts.threads, dist and string.format(" x %d processes", ranks) or ""))
else
  say(string.format("dropnet %s: MLP 784-%s-10, dropout %.2f input / %.2f hidden%s, %s lr %g (%s), batch %d, "
    .. "%d threads%s", dn.version, table.concat(widths, "-"), opts.input_dropout, opts.dropout,
    opts.augment and ", augmented" or "", opts.optimizer, opts.lr, opts.schedule, opts.batch_size, opts.threads,
    dist and string.format(" x %d processes", ranks) or ""))
end
say(string.format("data: %d training samples, %d %s samples; writing to %s/", #train_set, #eval_set, eval_name,
  opts.out))
say(string.format("%5s  %10s  %9s  %10s  %9s  %7s  %9s", "epoch", "train loss", "train acc", eval_short ..
  " loss", eval_short .. " acc", "seconds", "samples/s"))

-- The checkpoint after `done` whole epochs, and with `within` the state of the epoch under way.
local function save_checkpoint(done, within)
  if not leader then return end
  local saved_opts = {}
  -- how a run was launched is not what it trains: a checkpoint resumes with or without --distributed
  for k, v in pairs(opts) do
    if k ~= "resume" and k ~= "stop_after" and k ~= "distributed" then saved_opts[k] = v end
  end
  local saved, save_err = pcall(checkpoint.save, checkpoint_path, {
    model = model:state_dict(), optim = opt:state_dict(), rng = dn.get_rng_state(), epoch = done,
    options = saved_opts, history = history, partial = within})
  if not saved then fail("%s", save_err) end
end

local pause = pause_hook()
local run_t0 = dn.clock()
local last_epoch = opts.stop_after and math.min(opts.stop_after, opts.epochs) or opts.epochs
-- Under mpirun a Ctrl-C reaches mpirun, which stops every rank: the last epoch's checkpoint stays. (Ranks that
-- stopped at different steps could not write one checkpoint.)
if not dist then dn.catch_interrupt() end
for epoch = first_epoch, last_epoch do
  local bar = run.progress(string.format("epoch %d/%d", epoch, opts.epochs), batches,
    {enabled = interactive, unit = opts.batch_size, unit_name = "samples"})
  -- The epoch's shuffle is drawn from the default generator when the epoch starts: its state then,
  -- saved with a mid-epoch checkpoint, draws the same permutation again on resume.
  local resumed = partial and partial.epoch == epoch and partial or nil
  partial = nil
  local epoch_rng = resumed and resumed.rng or dn.get_rng_state()
  if resumed then dn.set_rng_state(resumed.rng) end
  local next_batch = loader:iter()
  local b, loss_sum, correct, seen, seconds_before = 0, 0, 0, 0, 0
  if resumed then
    -- skip the batches already trained on (an augmentation's draws are undone by the state set next)
    for _ = 1, resumed.step do next_batch() end
    dn.set_rng_state(state.rng)
    b, loss_sum, correct, seen = resumed.step, resumed.loss_sum, resumed.correct, resumed.seen
    seconds_before = resumed.seconds
  end
  local t0 = dn.clock()
  local lr = opts.lr
  model:train()
  for x, y in next_batch do
    lr = opt.param_groups[1].lr
    local logits = train_model(x)
    local loss = loss_fn(logits, y)
    opt:zero_grad()
    loss:backward()
    opt:step()
    if schedule then schedule:step() end
    if tracker then tracker:step() end
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
    bar:update(b, string.format("loss %.4f", loss_sum / seen))
    if pause and pause.epoch == epoch and pause.step == b then
      write_file(pause.file, "")
      dn.interrupted(60)
    end
    -- after the epoch's last step the epoch is finished first (below)
    if b < batches and not dist and dn.interrupted() then
      bar:close()
      save_checkpoint(epoch - 1, {epoch = epoch, step = b, rng = epoch_rng, loss_sum = loss_sum, correct = correct,
        seen = seen, seconds = seconds_before + dn.clock() - t0})
      stop_interrupted(string.format("in epoch %d of %d after step %d of %d", epoch, opts.epochs, b, batches),
        checkpoint_path)
    end
  end
  local seconds = seconds_before + dn.clock() - t0
  bar:close()
  loss_sum, correct, seen = sum_over_ranks(dist, loss_sum, correct, seen)
  local eval_loss, eval_acc = evaluate(model, eval_loader, loss_fn, dist)
  local h = {epoch = epoch, train_loss = loss_sum / seen, train_acc = correct / seen, eval_loss = eval_loss,
    eval_acc = eval_acc, lr = lr, seconds = seconds, samples_per_s = seen / seconds}
  history[#history + 1] = h
  say(string.format("%5d  %10.4f  %9.4f  %10.4f  %9.4f  %7.1f  %9.0f", epoch, h.train_loss, h.train_acc, eval_loss,
    eval_acc, seconds, h.samples_per_s))
  if leader then
    write_metrics(opts.out .. "/metrics.csv", history, eval_short)
    write_plot(opts.out .. "/train.svg", history, eval_name, opts.model == "cnn"
      and string.format("dropnet: %s on Fashion-MNIST", model_name(widths, channels, convs, opts))
      or string.format("dropnet: 784-%s-10 on Fashion-MNIST", table.concat(widths, "-")))
  end
  save_checkpoint(epoch, nil)
  if epoch < last_epoch and not dist and dn.interrupted() then
    stop_interrupted(string.format("after epoch %d of %d", epoch, opts.epochs), checkpoint_path)
  end
end
if not dist then dn.release_interrupt() end

if tracker then tracker:close() end
local last = history[#history]
if last and leader then
  print(string.format("%s accuracy %.4f after %d epochs (%s of training); outputs in %s/", eval_name, last.eval_acc,
    last.epoch, run.format_time(dn.clock() - run_t0), opts.out))
end
-- what the gradients' exchange cost rank 0: the time a step waited for it at the end of backward
if dist and leader and not opts.quiet and ranks > 1 then
  local s, trained = train_model:comm_stats(), 0
  for _, h in ipairs(history) do trained = trained + h.seconds end
  if s.steps > 0 and trained > 0 then
    print(string.format("gradient exchange: %d buckets, %.2f ms per step waiting (%.1f%% of training time), "
      .. "%.2f ms per step in the reducer", s.buckets, 1e3 * s.wait_seconds / s.steps, 100 * s.wait_seconds / trained,
      1e3 * s.reduce_seconds / s.steps))
  end
end
-- every rank ends MPI: mpirun counts a rank that exits without it as failed
if dist then dist.finalize() end
