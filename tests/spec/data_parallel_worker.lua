-- One rank of tests/spec/data_parallel_spec.lua, run alone (a world of one process: the reference) or under
-- mpirun. Trains a small dropout MLP with nn.DataParallel and the distributed loader for 50 steps and writes,
-- into <dir>/rank<r>.txt (dir: the first argument), one line per step with the input dropout's keep mask of this
-- rank's rows ("mask <step> <first global row> <0/1 text>"), and at the end every parameter as %a values
-- ("weights <values>"), the reducer's counters and "done". The model mixes a plain dropout (hooked, so it runs
-- alone), a Linear + ReLU + Dropout chain (the fused kernel) and a DropConnect-free head; the batch size does not
-- divide the data, so the last batch of each epoch is smaller and splits unevenly.
local dn = require "dropnet"
local nn, data, optim = dn.nn, dn.data, dn.optim
local dist = dn.distributed

local bucket_mb = tonumber(arg[2] or "0.002")   -- small buckets: several per step, each started on its own
local die_at = tonumber(arg[3])                   -- rank 1 fails at this step (a rank that dies)
dist.init()
local rank = dist.rank()
local out = assert(io.open(arg[1] .. "/rank" .. rank .. ".txt", "w"))

dn.manual_seed(11)
local g = dn.Generator(5)   -- the data, the same on every rank
local x = dn.randn({90, 12}, g)
local y = dn.randn({90, 4}, g):argmax(2)
local ds = data.TensorDataset(x, y)

local input_dropout = nn.Dropout(0.3)
local model = nn.Sequential(input_dropout, nn.Linear(12, 24), nn.ReLU(), nn.Dropout(0.5), nn.Linear(24, 24),
  nn.ReLU(), nn.Dropout(0.25), nn.Linear(24, 4))
local dp = nn.DataParallel(model, {bucket_mb = bucket_mb})
local opt = optim.SGD(model:parameters(), {lr = 0.2, momentum = 0.9})
local loss_fn = nn.CrossEntropyLoss()
local loader = data.DataLoader(ds, {batch_size = 16, shuffle = true, distributed = true})

local step, skip = 0, 0
input_dropout:register_forward_hook(function(_, inputs, output)
  local keep = output:ne(0):to("int32"):reshape(-1):totable()
  out:write(string.format("mask %d %d %s\n", step, skip, table.concat(keep)))
  -- the input is randn: a zero output is a dropped element
  assert(inputs[1]:eq(0):sum():item() == 0)
end)

while step < 50 do
  for xb, yb in loader:iter() do
    step = step + 1
    if step == die_at and rank == 1 then error("rank 1 fails on purpose at step " .. step) end
    skip = dist.batch_shard(xb:size(1))   -- where this rank's rows sit in the global batch (for the mask lines)
    opt:zero_grad()
    loss_fn(dp(xb), yb):backward()
    opt:step()
    if step == 50 then break end
  end
end

local parts = {}
for _, p in ipairs(model:parameters()) do
  for _, v in ipairs(p:reshape(-1):totable()) do parts[#parts + 1] = string.format("%a", v) end
end
out:write("weights ", table.concat(parts, ","), "\n")
local s = dp:comm_stats()
out:write(string.format("stats %d %d %d\n", s.buckets, s.elements, s.steps))
out:write("done\n")
out:close()
dist.finalize()
