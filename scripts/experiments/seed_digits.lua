-- scripts/experiments/seed_digits.lua — the experiment dropnet started from, done right: an MLP on the
-- 8x8 digits trained twice from the same initial weights on the same batches, once without dropout and
-- once with it, and the train and test loss of both runs per epoch in one figure, with the gradient
-- norm of each layer.
--
--   dropnet scripts/experiments/seed_digits.lua [--quick] [--out DIR] [--seed N] [--threads N]
--
-- Writes to --out (default runs/<timestamp>/): metrics.csv (per run and epoch: losses and accuracies
-- measured in eval mode on the whole train and test sets, and the mean gradient norm of each layer's
-- weight over the epoch's steps), loss.svg (the figure) and grad_norms.svg.
local dn = require "dropnet"
local nn, optim, data, plot = dn.nn, dn.optim, dn.data, dn.plot
local run = require "dropnet.run"

local usage = [[
usage: dropnet scripts/experiments/seed_digits.lua [options]

An MLP 64-256-256-10 on the 1,797 8x8 digits (1,297 train / 500 test), trained without and with
dropout from the same initial weights; writes the loss curves of both runs and per-layer gradient norms.

options:
  --epochs N     epochs per run (default 100; --quick: 20)
  --dropout P    dropout on the hidden layers of the dropout run (default 0.5)
  --lr X         SGD learning rate, momentum 0.9, cosine schedule (default 0.05)
  --quick        a short run (20 epochs)
  --seed N       random seed (default 1)
  --threads N    threads (default 2)
  --out DIR      output directory (default runs/<timestamp>)
  --help         this text
]]

local ok, opts = pcall(run.parse_args, arg, {{"epochs", "int"}, {"dropout", "num", 0.5}, {"lr", "num", 0.05},
  {"quick", "flag", false}, {"seed", "int", 1}, {"threads", "int", 2}, {"out", "string"}})
if not ok then
  io.stderr:write("seed_digits.lua: ", opts, "\n")
  os.exit(2)
end
if opts.help then
  io.write(usage)
  os.exit(0)
end
local function fail(fmt, ...)
  io.stderr:write("seed_digits.lua: ", string.format(fmt, ...), "\n")
  os.exit(2)
end
opts.epochs = opts.epochs or (opts.quick and 20 or 100)
if opts.epochs < 1 then fail("--epochs must be at least 1 (got %d)", opts.epochs) end
if opts.dropout < 0 or opts.dropout >= 1 then fail("--dropout must be in [0, 1) (got %g)", opts.dropout) end
if opts.threads < 1 then fail("--threads must be at least 1 (got %d)", opts.threads) end
dn.set_num_threads(opts.threads)
local out_ok, out = pcall(run.directory, opts.out)
if not out_ok then fail("%s", out) end

local digits = data.digits()
local train_set, test_set = data.random_split(digits, 1297, {generator = dn.Generator(opts.seed + 1000)})
local BATCH = 32
local LAYERS = {"1", "2", "3"}   -- the three Linear layers, input to output

local function build(p)
  dn.manual_seed(opts.seed)   -- the same initial weights in both runs (dropout draws no weights)
  local model = nn.Sequential()
  model:add(nn.Linear(64, 256)):add(nn.ReLU())
  if p > 0 then model:add(nn.Dropout(p)) end
  model:add(nn.Linear(256, 256)):add(nn.ReLU())
  if p > 0 then model:add(nn.Dropout(p)) end
  model:add(nn.Linear(256, 10))
  local linears = {}
  for _, m in ipairs(model:modules()) do
    if nn.isinstance(m, nn.Linear) then linears[#linears + 1] = m end
  end
  return model, linears
end

-- Loss and accuracy over a whole set in eval mode (so both runs are measured the same way).
local function measure(model, set, loss_fn)
  model:eval()
  local x, y = set:tensor(1), set:tensor(2)
  local loss, acc
  dn.no_grad(function()
    local logits = model(x)
    loss = loss_fn(logits, y):item()
    acc = logits:argmax(2):eq(y):float():mean():item()
  end)
  model:train()
  return loss, acc
end

local columns = {"run", "epoch", "train_loss", "test_loss", "train_acc", "test_acc"}
for _, l in ipairs(LAYERS) do columns[#columns + 1] = "grad_norm_layer" .. l end
local log = run.csv(out .. "/metrics.csv", columns)

local function train(name, p)
  local model, linears = build(p)
  local opt = optim.SGD(model:parameters(), {lr = opts.lr, momentum = 0.9})
  local schedule = optim.lr_scheduler.CosineAnnealingLR(opt, {T_max = opts.epochs})
  local loss_fn = nn.CrossEntropyLoss()
  local loader = data.DataLoader(train_set, {batch_size = BATCH, shuffle = true,
    generator = dn.Generator(opts.seed)})   -- the same batches in both runs
  local history = {}
  local bar = run.progress(string.format("%-10s", name), opts.epochs, {unit_name = "epochs"})
  for epoch = 1, opts.epochs do
    local norms, steps = {0, 0, 0}, 0
    for x, y in loader:iter() do
      local loss = loss_fn(model(x), y)
      opt:zero_grad()
      loss:backward()
      for i, layer in ipairs(linears) do norms[i] = norms[i] + optim.grad_norm({layer.weight}) end
      steps = steps + 1
      opt:step()
    end
    schedule:step()
    local h = {run = name, epoch = epoch}
    h.train_loss, h.train_acc = measure(model, train_set, loss_fn)
    h.test_loss, h.test_acc = measure(model, test_set, loss_fn)
    for i, l in ipairs(LAYERS) do h["grad_norm_layer" .. l] = norms[i] / steps end
    history[epoch] = h
    log:add(h)
    bar:update(epoch, string.format("train %.4f  test %.4f", h.train_loss, h.test_loss))
  end
  bar:close()
  return history
end

print(string.format("dropnet %s: MLP 64-256-256-10 on the 8x8 digits (%d train / %d test), SGD lr %g (cosine) "
  .. "momentum 0.9, batch %d, %d epochs; writing to %s/", dn.version, #train_set, #test_set, opts.lr, BATCH,
  opts.epochs, out))
local t0 = dn.clock()
local runs = {
  {name = "no dropout", history = train("no dropout", 0)},
  {name = string.format("dropout %g", opts.dropout), history = train("dropout", opts.dropout)},
}

local function column(history, key)
  local v = {}
  for i, h in ipairs(history) do v[i] = h[key] end
  return v
end

local loss_series, grad_charts = {}, {}
for _, r in ipairs(runs) do
  loss_series[#loss_series + 1] = {name = r.name .. ": train", y = column(r.history, "train_loss"), dash = true}
  loss_series[#loss_series + 1] = {name = r.name .. ": test", y = column(r.history, "test_loss")}
end
for i, l in ipairs(LAYERS) do
  local series = {}
  for _, r in ipairs(runs) do
    series[#series + 1] = {name = r.name, y = column(r.history, "grad_norm_layer" .. l)}
  end
  grad_charts[i] = {title = string.format("Layer %s (%s)", l, ({"64-256", "256-256", "256-10"})[i]),
    x_label = "epoch", y_label = "mean ||dL/dW||", series = series, log_y = true}
end
plot.save(out .. "/loss.svg", plot.line_chart{title = "MLP on the 8x8 digits: loss with and without dropout",
  x_label = "epoch", y_label = "cross-entropy (eval mode)", series = loss_series, log_y = true})
plot.save(out .. "/grad_norms.svg", plot.panels(grad_charts, {columns = 3,
  title = "Gradient norm of each layer's weight, mean over the epoch's steps"}))

print(string.format("%-12s  %10s  %9s  %10s  %9s  %14s", "run", "train loss", "test loss", "train acc", "test acc",
  "best test loss"))
for _, r in ipairs(runs) do
  local last, best, best_epoch = r.history[#r.history], math.huge, 0
  for _, h in ipairs(r.history) do if h.test_loss < best then best, best_epoch = h.test_loss, h.epoch end end
  print(string.format("%-12s  %10.4f  %9.4f  %10.4f  %9.4f  %8.4f (ep %d)", r.name, last.train_loss, last.test_loss,
    last.train_acc, last.test_acc, best, best_epoch))
end
print(string.format("done in %s; outputs in %s/ (metrics.csv, loss.svg, grad_norms.svg)",
  run.format_time(dn.clock() - t0), out))
