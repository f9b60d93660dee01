-- One rank of tests/spec/distributed_spec.lua, run under mpirun (or alone, a
-- world of size 1). Prints one line per result, "<rank> <case> <values>",
-- each value as %a (exact bits), into <dir>/rank<r>.txt (dir: the first
-- argument; a file per rank, as mpirun may mix the ranks' stdout); the spec checks them against values it
-- computes by hand for the world size. Rank r's inputs hold dyadic values
-- (exact sums) except in the "noisy" case, which exists for the repeated runs.
local dn = require "dropnet"
local dist = dn.distributed

dist.init()
dist.init()   -- again: a no-op
local rank, size = dist.rank(), dist.world_size()

local out = assert(io.open(arg[1] .. "/rank" .. rank .. ".txt", "w"))

local function emit(case, t)
  local parts = {}
  for i, v in ipairs(t:totable()) do parts[i] = string.format("%a", v) end
  out:write(rank, " ", case, " ", table.concat(parts, ","), "\n")
end

-- rank r's tensor of n elements: 1 + r / 2, 2 + r / 2, ... (dn.arange: no loop in Lua)
local function input(n) return dn.arange(1, n + 1):add(rank / 2) end

for _, op in ipairs {"sum", "mean"} do
  for _, n in ipairs {0, 1, 5, 1000} do
    local t = input(n)
    assert(dist.all_reduce(t, op) == t)
    emit(op .. n, t)
  end
  -- a list of three (one empty) through one fused buffer, and the empty list
  local list = {input(3), dn.zeros(0), input(7):mul(-1)}
  assert(dist.all_reduce(list, op) == list)
  emit(op .. "list1", list[1])
  emit(op .. "list3", list[3])
  dist.all_reduce({}, op)
end

-- more elements than one chunk of the reduction (2^22): checked here, against 2 * arange + (N - 1) N / 4 summed
local big_n = (1 << 22) + 3
local big = input(big_n)
dist.all_reduce({big}, "sum")
local want = dn.arange(1, big_n + 1):mul(size):add((size - 1) * size / 4)
emit("big", dn.tensor({big:sub(want):abs():max():item()}))

-- broadcast from the last rank: a float32 and an int32 tensor, in place
local root = size - 1
local f, i = dn.tensor({10 + rank, 20 + rank}), dn.tensor({rank, -rank}, "int32")
assert(dist.broadcast({f, i}, root)[1] == f)
emit("bcast_f", f)
emit("bcast_i", i)
dist.broadcast({}, 0)

-- values that round: the repeated runs compare these bits
local noisy = dn.arange(1, 201):div(7 + rank):add(0.1)
dist.all_reduce(noisy, "mean")
emit("noisy", noisy)

-- bad input on one rank fails the call on every rank, without a hang, and the layer goes on working
if size > 1 then
  local ok, err = pcall(dist.all_reduce, rank == 1 and dn.tensor({1}, "int32") or dn.tensor({1}))
  out:write(rank, " rejected ", tostring(not ok), " ", (err:gsub("\n", " ")), "\n")
  ok, err = pcall(dist.all_reduce, rank == 1 and dn.zeros(3) or dn.zeros(2))
  out:write(rank, " sizes ", tostring(not ok), " ", (err:gsub("\n", " ")), "\n")
  ok, err = pcall(dist.broadcast, dn.zeros(2), rank)
  out:write(rank, " roots ", tostring(not ok), " ", (err:gsub("\n", " ")), "\n")
end
local after = dn.ones(2)
dist.all_reduce(after)
emit("after", after)

out:write(rank, " done\n")
out:close()
dist.barrier()
dist.finalize()
dist.finalize()
