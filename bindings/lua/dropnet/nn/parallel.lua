--- nn.DataParallel: data-parallel training over MPI (dn.distributed), one
-- process per rank, each with its own copy of the model and its own share of
-- every global batch.
--
--   dist.init()                                  -- or let DataParallel start it
--   local model = nn.DataParallel(build_model())
--   for x, y in data.DataLoader(train, {batch_size = 128, shuffle = true, distributed = true}):iter() do
--     opt:zero_grad()
--     loss_fn(model(x), y):backward()            -- gradients summed over the ranks during backward
--     opt:step()                                 -- the same step on every rank
--   end
--
-- What a rank does, and why:
-- - At the start every rank takes rank 0's parameters and buffers (one
--   broadcast), so the copies start equal; equal steps keep them equal.
-- - At each training forward the ranks tell each other their sample counts
--   (dist.batch_shard): rank r holds samples [skip + 1, skip + count] of a
--   global batch of `total`, ranks in order, as the distributed loader hands
--   them out. The model's generators carry that shard during the forward, so
--   every dropout mask is the slice of the mask one process would draw for the
--   whole batch (Generator:set_shard).
-- - Backward hands each parameter's gradient to the C reducer
--   (dist.Reducer), which sums weight x gradient over the ranks in buckets,
--   in rank order, while backward goes on; with reduction "mean" (a loss that
--   averages over its batch) rank r's weight is its count / total, so the sum is the
--   gradient of the mean over the global batch, the one process's gradient
--   up to the order of the float sums. With "sum" the weight is 1.
-- BatchNorm's batch statistics stay per rank (as in PyTorch's
-- DistributedDataParallel without SyncBatchNorm); its running statistics are
-- rank 0's, broadcast before each training forward.
local dn = require "dropnet"
local base = require "dropnet.nn.module"
local check = require "dropnet.check"

local Module, is_module = base.Module, base.is_module

local M = {}

local DataParallel = Module:extend("DataParallel")
M.DataParallel = DataParallel

local DEFAULT_BUCKET_MB = 25   -- PyTorch DDP's bucket_cap_mb

--- nn.DataParallel(model[, {bucket_mb = 25, batch_dim = 1, reduction = "mean", broadcast_buffers = true}])
function DataParallel:init(model, opts)
  local where = "DataParallel"
  if not is_module(model) then check.fail("%s: expected a module (got %s)", where, check.describe(model)) end
  opts = check.options(where, "options", opts, {"bucket_mb", "batch_dim", "reduction", "broadcast_buffers"})
  local bucket_mb = DEFAULT_BUCKET_MB
  if opts.bucket_mb ~= nil then bucket_mb = check.number(where, "bucket_mb", opts.bucket_mb) end
  if not (bucket_mb > 0 and bucket_mb < 1e6) then
    check.fail("%s: bucket_mb must be a number of megabytes > 0 (got %s)", where, check.describe(opts.bucket_mb))
  end
  local batch_dim = 1
  if opts.batch_dim ~= nil then batch_dim = check.int(where, "batch_dim", opts.batch_dim, 1) end
  local reduction = opts.reduction == nil and "mean" or opts.reduction
  if reduction ~= "mean" and reduction ~= "sum" then
    check.fail("%s: reduction must be \"mean\" or \"sum\" (got %s)", where, check.describe(opts.reduction))
  end
  local broadcast_buffers = true
  if opts.broadcast_buffers ~= nil then
    broadcast_buffers = check.bool(where, "broadcast_buffers", opts.broadcast_buffers)
  end

  local dist = dn.distributed
  if not dist.is_initialized() then dist.init() end   -- a world of one process without mpirun
  self.module = model
  self.batch_dim, self.reduction, self.broadcast_buffers = batch_dim, reduction, broadcast_buffers
  self.bucket_mb = bucket_mb
  local start = model:parameters()
  for _, b in ipairs(model:buffers()) do start[#start + 1] = b end
  dist.broadcast(start, 0)
  self._reducer = dist.Reducer(model:parameters(), math.floor(bucket_mb * 1048576 + 0.5))
end

-- The generators the model's random layers draw from: their own, and the default one.
local function generators_of(model)
  local list, seen = {dn.default_generator()}, {}
  for _, m in ipairs(model:modules()) do
    local g = m.uses_generator and m.generator
    if g and not seen[g] then
      seen[g] = true
      list[#list + 1] = g
    end
  end
  return list
end

function DataParallel:forward(...)
  local model = self.module
  if not (self.training and dn.is_grad_enabled()) then return model(...) end
  local x = ...
  if not dn.is_tensor(x) then
    check.fail("DataParallel: the first input must be a tensor whose dimension %d counts the samples (got %s)",
      self.batch_dim, check.describe(x))
  end
  if self.batch_dim > x:dim() then
    check.fail("DataParallel: batch_dim %d is past the input's %d dimensions", self.batch_dim, x:dim())
  end
  local dist = dn.distributed
  local count = x:size(self.batch_dim)
  local skip, total, counts = dist.batch_shard(count)
  for r, c in ipairs(counts) do   -- every rank sees the counts, so every rank stops here, none waits for it
    if c == 0 then
      check.fail("DataParallel: rank %d has no samples of the global batch (%d samples over %d ranks); "
        .. "use a batch size of at least the number of ranks, or drop_last", r - 1, total, dist.world_size())
    end
  end
  local weights = {}
  for r, c in ipairs(counts) do weights[r] = self.reduction == "mean" and c / total or 1 end
  self._reducer:set_weights(weights)
  if self.broadcast_buffers then
    local buffers = model:buffers()
    if #buffers > 0 then dist.broadcast(buffers, 0) end
  end
  local gens = generators_of(model)
  local before = {}
  for i, g in ipairs(gens) do
    before[i] = table.pack(g:shard())
    g:set_shard(skip, count, total)
  end
  local result = table.pack(pcall(model, ...))   -- through the model's hooks, if any
  for i, g in ipairs(gens) do
    if before[i][1] == nil then g:clear_shard() else g:set_shard(table.unpack(before[i], 1, 3)) end
  end
  if not result[1] then error(result[2], 0) end
  return table.unpack(result, 2, result.n)
end

--- The reducer's counters: {buckets, elements, steps, wait_seconds, reduce_seconds}.
function DataParallel:comm_stats()
  return self._reducer:stats()
end

function DataParallel:extra_repr()
  return string.format("world_size=%d, bucket_mb=%g, reduction=%s", dn.distributed.world_size(), self.bucket_mb,
    self.reduction)
end

return M
