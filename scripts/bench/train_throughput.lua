-- scripts/bench/train_throughput.lua — training throughput of the reference model,
-- the same loop as shared/peers/torch_mlp_train.py measures for PyTorch.
--
--   dropnet scripts/bench/train_throughput.lua [--model a|b] [--epochs 3] [--threads 2]
--
-- Model a: Dropout(0.2), Linear 784-1024, ReLU, Dropout(0.5), Linear 1024-1024, ReLU,
-- Dropout(0.5), Linear 1024-10; batch 128. Model b: Linear 784-64, ReLU, Dropout(0.5),
-- Linear 64-10; batch 32 (overhead-bound). Both: cross-entropy, SGD lr 0.05 momentum 0.9,
-- pixels in [0,1], reshuffled every epoch, last partial batch kept. The timed region is
-- the training loop (shuffle, gather, forward, backward, step, loss:item()); the test
-- evaluation after each epoch is outside it, as in the PyTorch script.
local dn = require "dropnet"
local nn, optim, data = dn.nn, dn.optim, dn.data

local o = {model = "a", epochs = 3, threads = 2, seed = 1, lr = 0.05, data = nil}
local i = 1
while i <= #arg do
  local key, value = arg[i]:match("^%-%-(.+)$"), arg[i + 1]
  if not key or o[key] == nil and key ~= "data" then error("train_throughput.lua: unknown option " .. arg[i], 0) end
  o[key] = tonumber(value) or value
  i = i + 2
end
dn.set_num_threads(o.threads)
dn.manual_seed(o.seed)

local train = data.fashion_mnist{split = "train", dir = o.data}
local test = data.fashion_mnist{split = "test", dir = o.data}
local model, batch
if o.model == "a" then
  model = nn.Sequential(nn.Dropout(0.2), nn.Linear(784, 1024), nn.ReLU(), nn.Dropout(0.5),
    nn.Linear(1024, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10))
  batch = 128
else
  model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))
  batch = 32
end
local opt = optim.SGD(model:parameters(), {lr = o.lr, momentum = 0.9})
local loss_fn = nn.CrossEntropyLoss()
local loader = data.DataLoader(train, {batch_size = batch, shuffle = true})
local test_x, test_y = table.unpack(test.tensors)
print(string.format("# dropnet %s, model %s, batch %d, %d threads, OMP_WAIT_POLICY=%s, sgemm: %s", dn.version, o.model,
  batch, o.threads, os.getenv("OMP_WAIT_POLICY") or "(unset)", dn.matmul_backend()))

local times = {}
for epoch = 1, o.epochs do
  model:train()
  local t0 = dn.clock()
  local total, batches = 0, 0
  for x, y in loader:iter() do
    local loss = loss_fn(model(x), y)
    opt:zero_grad()
    loss:backward()
    opt:step()
    total = total + loss:item()
    batches = batches + 1
  end
  local dt = dn.clock() - t0
  times[epoch] = dt
  model:eval()
  local acc = dn.no_grad(function() return model(test_x):argmax(2):eq(test_y):float():mean():item() end)
  print(string.format("epoch %2d  time %7.3fs  %9.0f samples/s  train_loss %.4f  test_acc %.4f", epoch, dt,
    #train / dt, total / batches, acc))
end
table.sort(times)
local median = times[(#times + 1) // 2]
print(string.format("SUMMARY model=%s threads=%d batch=%d: median epoch %.3fs, %.0f samples/s", o.model, o.threads,
  batch, median, #train / median))
