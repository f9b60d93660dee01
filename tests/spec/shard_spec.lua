-- Batch shards in the generator (Generator:set_shard, issue 16): a process
-- holding samples skip+1 .. skip+count of a batch of total draws exactly the
-- random bits one process draws for those rows, and advances the offset as
-- the whole batch does. The oracle is the same op on the whole batch from
-- the same state (and, for the fused linear layer, whose matrix product may
-- round differently for another batch size, the whole batch's dropout_mask).
local dn = require "dropnet"
local core = require "dropnet.core"
local data = require "dropnet.data"
local F = require("dropnet.nn").functional
local H = require "helpers"
local G = require "gradcheck"

local SEED = 2024

-- x's rows first+1 .. first+count along dim (1-based), as a new contiguous leaf.
local function rows(x, dim, first, count) return x:narrow(dim, first + 1, count):contiguous() end

-- Each op: the input's shape with the batch size at `dim` (1-based), and a
-- call op(x, generator). Differentiable ones are checked in their gradient.
local OPS = {
  {"dropout", {0, 13}, 1, function(x, g) return F.dropout(x, 0.4, true, {generator = g}) end, true},
  {"dropout (parallel)", {0, 3001}, 1, function(x, g) return F.dropout(x, 0.5, true, {generator = g}) end, true},
  {"alpha_dropout", {0, 5}, 1, function(x, g) return F.alpha_dropout(x, 0.3, true, {generator = g}) end, true},
  {"gaussian_dropout", {0, 3}, 1, function(x, g) return F.gaussian_dropout(x, 0.3, true, {generator = g}) end, true},
  {"dropout1d", {0, 3, 4}, 1, function(x, g) return F.dropout1d(x, 0.5, true, {generator = g}) end, true},
  {"dropout2d", {0, 5, 2, 3}, 1, function(x, g) return F.dropout2d(x, 0.4, true, {generator = g}) end, true},
  {"locked_dropout", {3, 0, 5}, 2, function(x, g) return F.locked_dropout(x, 0.5, true, {generator = g}) end, true},
  {"dropblock2d", {0, 3, 5, 6}, 1, function(x, g) return F.dropblock2d(x, 0.3, 3, true, {generator = g}) end, true},
  {"RandomCrop", {0, 2, 5, 4}, 1,
    function(x, g) return data.RandomCrop({4, 4}, {padding = {2, 1}, generator = g})(x) end},
  {"RandomHorizontalFlip", {0, 2, 3, 4}, 1,
    function(x, g) return data.RandomHorizontalFlip({p = 0.5, generator = g})(x) end},
  {"dropout_mask", {0, 13}, 1, function(x, g) return core.dropout_mask(x:shape(), 0.3, g) end},
  {"dropblock2d_mask", {0, 3, 5, 6}, 1, function(x, g) return core.dropblock2d_mask(x:shape(), 0.3, 3, g) end},
}

-- Shards of 7 (unaligned firsts, the batch in 2 and 3 pieces) and of 5.
local PIECES = {
  [7] = {{3, 2}, {0, 3}, {3, 4}, {0, 2}, {2, 3}, {5, 2}, {6, 1}},
  [5] = {{0, 1}, {1, 2}, {3, 2}, {4, 1}},
}

local function input(shape, dim, total)
  local s = {table.unpack(shape)}
  s[dim] = total
  return dn.randn(s, dn.Generator(99))
end

describe("Generator:set_shard", function()
  local threads
  before_each(function() threads = dn.get_num_threads() end)
  after_each(function()
    dn.set_num_threads(threads)
    dn.default_generator():clear_shard()
  end)

  for _, nthreads in ipairs({1, 2}) do
    for _, op in ipairs(OPS) do
      local name, shape, dim, fn, differentiable = table.unpack(op)
      it(name .. ": shards draw the whole batch's rows (" .. nthreads .. " thread(s))", function()
        dn.set_num_threads(nthreads)
        for total, pieces in pairs(PIECES) do
          local x = input(shape, dim, total)
          if differentiable then x:requires_grad_() end
          local whole = dn.Generator(SEED):set_state({seed = SEED, offset = 3})
          local y = fn(x, whole)
          local g
          if differentiable then
            g = dn.randn(y:shape(), dn.Generator(5))
            y:backward(g)
          end
          for _, piece in ipairs(pieces) do
            local first, count = piece[1], piece[2]
            local mine = dn.Generator(SEED):set_state({seed = SEED, offset = 3}):set_shard(first, count, total)
            local xs = rows(x:detach(), dim, first, count)
            if differentiable then xs:requires_grad_() end
            local ys = fn(xs, mine)
            local what = string.format("%s, samples %d..%d of %d", name, first + 1, first + count, total)
            H.assert_same(ys, rows(y:detach(), dim, first, count), what)
            assert.are.equal(whole:get_state().offset, mine:get_state().offset)
            if differentiable then
              ys:backward(rows(g, dim, first, count))
              H.assert_same(xs.grad, rows(x.grad, dim, first, count), what .. " (gradient)")
            end
            -- a strided input (transposed storage) draws the same
            local t = xs:detach():transpose(1, xs:dim()):contiguous():transpose(1, xs:dim())
            if count > 1 then assert.is_false(t:is_contiguous()) end
            mine:set_state({seed = SEED, offset = 3})
            H.assert_same(fn(t, mine), rows(y:detach(), dim, first, count), what .. " (strided)")
          end
        end
      end)
    end
  end

  it("linear_relu_dropout: a shard keeps exactly the whole batch's decisions for its rows", function()
    local total, out = 7, 13
    local x, w, b = input({0, 4}, 1, total), dn.randn({out, 4}, dn.Generator(1)), dn.randn({out}, dn.Generator(2))
    local whole = dn.Generator(SEED)
    local keep = core.dropout_mask({total, out}, 0.5, whole):float()   -- the whole batch's mask, 1 = kept
    F.linear_relu_dropout(x, w, b, 0.5, true, {generator = whole})
    for _, piece in ipairs(PIECES[total]) do
      local first, count = piece[1], piece[2]
      local mine = dn.Generator(SEED):set_shard(first, count, total)
      local xs = rows(x, 1, first, count)
      local ys = F.linear_relu_dropout(xs, w, b, 0.5, true, {generator = mine})
      -- p = 0.5: the scale 2 is exact, so the product below is the kernel's value
      H.assert_same(ys, F.linear(xs, w, b, "relu") * 2 * rows(keep, 1, first, count))
      assert.are.equal(whole:get_state().offset, mine:get_state().offset)
    end
  end)

  it("works on the default generator", function()
    local x = input({0, 5}, 1, 6)
    dn.manual_seed(8)
    local y = F.dropout(x, 0.5)
    local after = dn.get_rng_state().offset
    dn.manual_seed(8)
    assert.are.equal(dn.default_generator(), dn.default_generator():set_shard(4, 2, 6))
    H.assert_same(F.dropout(rows(x, 1, 4, 2), 0.5), rows(y, 1, 4, 2))
    assert.are.equal(after, dn.get_rng_state().offset)
    local msg = H.error_of(F.dropout, x, 0.5)
    assert.truthy(msg:find("dropout: the generator holds samples 5..6 of a batch of 6 (2 samples), but the input's "
      .. "batch dimension has size 6", 1, true), msg)
  end)

  it("leaves rand, randn, randperm and DropConnect's weight mask alone", function()
    local plain, sharded = dn.Generator(4), dn.Generator(4):set_shard(1, 2, 9)
    H.assert_same(dn.rand(5, 3, sharded), dn.rand(5, 3, plain))
    H.assert_same(dn.randn(5, 3, sharded), dn.randn(5, 3, plain))
    H.assert_same(dn.randperm(11, sharded), dn.randperm(11, plain))
    local x, w = dn.randn(2, 4), dn.randn(3, 4)
    H.assert_same(F.dropconnect_linear(x, w, nil, 0.5, true, {generator = sharded}),
      F.dropconnect_linear(x, w, nil, 0.5, true, {generator = plain}))
    assert.are.same(plain:get_state(), sharded:get_state())
  end)

  it("shard(), clearing, and a state that stays {seed, offset}", function()
    local g = dn.Generator(3)
    assert.is_nil(g:shard())
    assert.are.equal(g, g:set_shard(0, 2, 4))
    assert.are.same({0, 2, 4}, {g:shard()})
    assert.are.same({seed = 3, offset = 0}, g:get_state())
    assert.are.equal("dropnet.Generator(seed=3, offset=0, shard=0+2/4)", tostring(g))
    g:set_state({seed = 5, offset = 7})   -- configuration, not state: the shard stays
    g:manual_seed(6)
    assert.are.same({0, 2, 4}, {g:shard()})
    g:set_shard(nil)
    assert.is_nil(g:shard())
    g:set_shard(1, 1, 2):clear_shard()
    assert.is_nil(g:shard())
    F.dropout(dn.randn(3, 2), 0.5, true, {generator = g})   -- whole batches again
    assert.are.equal("dropnet.Generator(seed=6, offset=1)", tostring(g))
  end)

  it("rejects bad shards and inputs that are not the shard", function()
    local g = dn.Generator(1)
    for _, bad in ipairs({{-1, 2, 5}, {0, 0, 5}, {4, 2, 5}, {1, math.maxinteger, math.maxinteger}}) do
      local msg = H.error_of(g.set_shard, g, table.unpack(bad))
      assert.truthy(msg:find("Generator:set_shard: a shard needs 0 <= first, 1 <= count and first + count <= total",
        1, true), msg)
    end
    assert.truthy(H.error_of(g.set_shard, g, 1.5, 2, 3):find("skip must be an integer", 1, true))
    assert.truthy(H.error_of(g.set_shard, g, 1, "x", 3):find("count must be an integer", 1, true))
    assert.truthy(H.error_of(g.set_shard, g, 1, 2):find("total must be an integer", 1, true))
    assert.is_nil(g:shard())
    g:set_shard(64, 64, 128)
    local msg = H.error_of(F.dropout, dn.randn(32, 3), 0.5, true, {generator = g})
    assert.truthy(msg:find("dropout: the generator holds samples 65..128 of a batch of 128 (64 samples), but the "
      .. "input's batch dimension has size 32", 1, true), msg)
    msg = H.error_of(F.locked_dropout, dn.randn(64, 32, 2), 0.5, true, {generator = g})
    assert.truthy(msg:find("locked_dropout: the generator holds samples 65..128", 1, true)
      or msg:find("dropout_locked: the generator holds samples 65..128", 1, true), msg)
    msg = H.error_of(F.dropblock2d, dn.randn(64, 5, 5), 0.5, 2, true, {generator = g})
    assert.truthy(msg:find("dropblock2d: the generator holds samples 65..128 of a batch of 128, but input [64,5,5] "
      .. "has no batch dimension", 1, true), msg)
    msg = H.error_of(F.linear_relu_dropout, dn.randn(4), dn.randn(3, 4), nil, 0.5, true, {generator = g})
    assert.truthy(msg:find("has no batch dimension", 1, true), msg)
    assert.truthy(H.error_of(data.RandomHorizontalFlip({generator = g}), dn.randn(3, 2, 2))
      :find("random_hflip: the generator holds", 1, true))
    assert.are.equal(0, g:get_state().offset)   -- no failed call drew
  end)
end)

describe("sharded dropout gradients by finite differences", function()
  -- the same state at every evaluation: a fixed mask, a piecewise smooth op
  local cases = {
    {"dropout", {2, 5}, function(x, g) return F.dropout(x, 0.4, true, {generator = g}) end},
    {"gaussian_dropout", {2, 3}, function(x, g) return F.gaussian_dropout(x, 0.3, true, {generator = g}) end},
    {"dropout1d", {2, 3, 2}, function(x, g) return F.dropout1d(x, 0.5, true, {generator = g}) end},
    {"locked_dropout", {3, 2, 5}, function(x, g) return F.locked_dropout(x, 0.4, true, {generator = g}) end},
    {"dropblock2d", {2, 1, 4, 5}, function(x, g) return F.dropblock2d(x, 0.4, 2, true, {generator = g}) end},
  }
  for _, case in ipairs(cases) do
    for _, layout in ipairs({"contiguous", "transposed"}) do
      it(case[1] .. " on samples 4..5 of 7 (" .. layout .. ")", function()
        local gen = dn.Generator(123):set_shard(3, 2, 7)
        local x = G.random_leaf(G.rng(7), case[2], "any", layout)
        G.assert(case[1], function(inputs)
          gen:set_state({seed = 123, offset = 1})
          return case[3](inputs[1], gen)
        end, {x})
      end)
    end
  end
end)
