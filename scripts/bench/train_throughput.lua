-- scripts/bench/train_throughput.lua — training throughput of the reference model,
-- the same loop as shared/peers/torch_mlp_train.py measures for PyTorch.
--
--   dropnet [--no-flush-denormal] scripts/bench/train_throughput.lua [--model a|b|c] [--epochs 4] [--threads 2]
--
-- Model a: Dropout(0.2), Linear 784-1024, ReLU, Dropout(0.5), Linear 1024-1024, ReLU,
-- Dropout(0.5), Linear 1024-10; batch 128. Model b: Linear 784-64, ReLU, Dropout(0.5),
-- Linear 64-10; batch 32 (overhead-bound). Model c (issue 13): the images as [N,1,28,28],
-- Conv2d 1-32 3x3 pad 1, BatchNorm2d, ReLU, MaxPool2d 2, Dropout2d(0.1), the same with 32-64,
-- Flatten, Linear 3136-128, ReLU, Dropout(0.5), Linear 128-10; batch 128. All: cross-entropy, SGD lr 0.05 momentum 0.9,
-- pixels in [0,1], reshuffled every epoch, last partial batch kept. The timed region is
-- the training loop (shuffle, gather, forward, backward, step, loss:item()); dropnet keeps
-- the images as uint8 and its gather converts each batch to float32 (PyTorch gathers
-- float32 rows). The test evaluation after each epoch, in batches of 1000, is outside it,
-- as in the PyTorch script. The SUMMARY line
-- gives the median of epochs 2 and later (with one epoch, that epoch): the first is not
-- the steady state (it pays one-time costs, and it was the fastest while momentum buffers
-- had not yet decayed into denormals; issue 11).
--
-- --distributed (under `mpirun -np N`) trains with nn.DataParallel and the distributed loader: the
-- same global batch split over the ranks; rank 0 prints, its samples/s counting every rank's samples,
-- and its SUMMARY adds the time a step waited for the gradients' exchange (scripts/bench/distributed.sh).
--
-- --infer adds, after training, the eval throughput as torch_mlp_train.py --infer
-- measures it: eval mode, no_grad, batch 1000 over the 10k test images, two
-- warm-up passes, then the median of --infer-reps timed passes (an INFER line).
local dn = require "dropnet"
local nn, optim, data = dn.nn, dn.optim, dn.data

local USAGE = [[
usage: dropnet [--no-flush-denormal] scripts/bench/train_throughput.lua [options]
  --model a|b|c  a: 784-1024-1024-10 with dropout, batch 128 (default);
                 b: 784-64-10 with dropout, batch 32 (the small, overhead-bound MLP);
                 c: the small CNN (two conv + batch norm + pool + Dropout2d blocks), batch 128
  --epochs N     epochs to train (default 4; the summary is the median of epochs 2..N)
  --batch N      the (global) batch size instead of the model's
  --threads N    dropnet's thread count (default 2)
  --seed N       seed of the default generator (default 1)
  --lr X         SGD learning rate (default 0.05; momentum 0.9)
  --data DIR     Fashion-MNIST directory (default: DROPNET_DATA, then Debian's)
  --infer        afterwards, eval throughput at batch 1000 over the test set (INFER line)
  --infer-reps N timed inference passes, median reported (default 7)
  --samples N    train on the first N training samples only (smoke tests; the
                 figures then compare with nothing)
  --distributed  data-parallel over MPI (run under mpirun -np N): rank 0 reports
  --bucket-mb X  DataParallel's bucket size in MB (default 25)
dropnet's --no-flush-denormal computes with denormal floats instead of flushing them.]]

local o = {model = "a", epochs = 4, threads = 2, seed = 1, lr = 0.05, data = nil, infer = false,
  ["infer-reps"] = 7, samples = nil, distributed = false, ["bucket-mb"] = 25}
local optional = {data = true, samples = true, batch = true}
local i = 1
if arg[1] == "--help" or arg[1] == "-h" then
  print(USAGE)
  os.exit(0)
end
while i <= #arg do
  local key, value = arg[i]:match("^%-%-(.+)$"), arg[i + 1]
  if not key or o[key] == nil and not optional[key] then error("train_throughput.lua: unknown option " .. arg[i], 0) end
  if key == "infer" or key == "distributed" then
    o[key] = true
    i = i + 1
  else
    if value == nil then error("train_throughput.lua: option " .. arg[i] .. " needs a value", 0) end
    o[key] = tonumber(value) or value
    i = i + 2
  end
end
dn.set_num_threads(o.threads)
dn.manual_seed(o.seed)

local train = data.fashion_mnist{split = "train", dir = o.data}
local test = data.fashion_mnist{split = "test", dir = o.data}
if o.samples and o.samples < #train then
  train = train:subset(dn.arange(1, o.samples + 1):int())   -- the first N samples, still bytes
end
local model, batch
if o.model == "a" then
  model = nn.Sequential(nn.Dropout(0.2), nn.Linear(784, 1024), nn.ReLU(), nn.Dropout(0.5),
    nn.Linear(1024, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10))
  batch = 128
elseif o.model == "b" then
  model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))
  batch = 32
elseif o.model == "c" then
  model = nn.Sequential(nn.Unflatten(2, {1, 28, 28}),
    nn.Conv2d(1, 32, 3, {padding = 1}), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout2d(0.1),
    nn.Conv2d(32, 64, 3, {padding = 1}), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout2d(0.1),
    nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
  batch = 128
else
  error("train_throughput.lua: --model must be a, b or c, not " .. tostring(o.model), 0)
end
if o.batch ~= nil then
  if math.type(o.batch) ~= "integer" or o.batch < 1 then
    error("train_throughput.lua: --batch must be a positive integer, not " .. tostring(o.batch), 0)
  end
  batch = o.batch
end
local opt = optim.SGD(model:parameters(), {lr = o.lr, momentum = 0.9})
local loss_fn = nn.CrossEntropyLoss()
local loader = data.DataLoader(train, {batch_size = batch, shuffle = true, distributed = o.distributed})
local dist = o.distributed and dn.distributed or nil
local stepper = dist and nn.DataParallel(model, {bucket_mb = o["bucket-mb"]}) or model
local leader = not dist or dist.rank() == 0
local print = leader and print or function() end
-- evaluated in batches of 1000, as the PyTorch script does
local test_loader = data.DataLoader(test, {batch_size = 1000})
print(string.format("# dropnet %s, model %s, batch %d, %d threads%s, sgemm: %s, flush_denormal=%s",
  dn.version, o.model, batch, o.threads, dist and string.format(" x %d processes", dist.world_size()) or "",
  dn.matmul_backend(), tostring(dn.get_flush_denormal())))

local times, waits = {}, {}
for epoch = 1, o.epochs do
  local wait0 = dist and stepper:comm_stats().wait_seconds or 0
  model:train()
  local t0 = dn.clock()
  local total, batches = 0, 0
  for x, y in loader:iter() do
    local loss = loss_fn(stepper(x), y)
    opt:zero_grad()
    loss:backward()
    opt:step()
    total = total + loss:item()
    batches = batches + 1
  end
  local dt = dn.clock() - t0
  times[epoch] = dt
  waits[epoch] = dist and (stepper:comm_stats().wait_seconds - wait0) / dt or 0
  model:eval()
  local correct = 0
  dn.no_grad(function()
    for x, y in test_loader:iter() do correct = correct + model(x):argmax(2):eq(y):sum():item() end
  end)
  local acc = correct / #test
  print(string.format("epoch %2d  time %7.3fs  %9.0f samples/s  train_loss %.4f  test_acc %.4f", epoch, dt,
    #train / dt, total / batches, acc))
end
-- The median of epochs 2..N (the mean of the middle two for an even count).
local steady = {table.unpack(times, #times > 1 and 2 or 1)}
table.sort(steady)
local n = #steady
local median = n % 2 == 1 and steady[(n + 1) // 2] or (steady[n // 2] + steady[n // 2 + 1]) / 2
local which = #times > 2 and ("epochs 2-" .. #times) or ("epoch " .. #times)
local waiting = ""
if dist then
  local w = {table.unpack(waits, #waits > 1 and 2 or 1)}
  table.sort(w)
  waiting = string.format(", processes=%d, waiting on the exchange %.1f%% of the epoch (median)", dist.world_size(),
    100 * w[(#w + 1) // 2])
end
print(string.format("SUMMARY model=%s threads=%d batch=%d flush_denormal=%s: median epoch %.3fs (%s), %.0f samples/s%s",
  o.model, o.threads, batch, tostring(dn.get_flush_denormal()), median, which, #train / median, waiting))

if o.infer then
  -- As torch_mlp_train.py --infer: eval mode, no_grad, batches of 1000 over the test set,
  -- sliced from a float32 tensor as PyTorch's are (the byte conversion is not timed).
  model:eval()
  local test_x = test:tensor(1)
  local rows = test_x:size(1)
  local function pass()
    for first = 1, rows, 1000 do
      local out = model(test_x:narrow(1, first, math.min(1000, rows - first + 1)))
      out:close()
    end
  end
  local rates = {}
  dn.no_grad(function()
    for _ = 1, 2 do pass() end   -- warm-up
    for r = 1, o["infer-reps"] do
      local t0 = dn.clock()
      pass()
      rates[r] = rows / (dn.clock() - t0)
    end
  end)
  table.sort(rates)
  local k = #rates
  local med = k % 2 == 1 and rates[(k + 1) // 2] or (rates[k // 2] + rates[k // 2 + 1]) / 2
  print(string.format("INFER model=%s eval, batch 1000, no_grad, threads=%d: median %.0f samples/s (min %.0f max %.0f, "
    .. "%d passes over %dk test images)", o.model, o.threads, med, rates[1], rates[k], k, rows // 1000))
end
if dist then dist.finalize() end
