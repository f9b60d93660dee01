-- DropBlock from Lua: core.dropblock2d and core.dropblock2d_mask, F.dropblock2d,
-- nn.DropBlock2d (training, eval, MC), nn.DropBlockSchedule, errors naming
-- the layer, the same bits for any thread count, and the statistics of the
-- dropped fraction.
--
-- As in dropout_spec.lua: statistical bounds are 6 standard deviations (a
-- correct kernel fails one with probability below 1e-8), and exact checks
-- compare against plain Lua loops over the values and the mask the
-- generator would draw (core.dropblock2d_mask), never against the kernel
-- under test alone.
local dn = require "dropnet"
local nn = require "dropnet.nn"
local core = require "dropnet.core"
local checkpoint = require "dropnet.checkpoint"
local H = require "helpers"

local F = nn.functional
local same = H.same_values

-- gamma rounded as the contract says (dropblock.h): round(gamma * 65536) / 65536
local function block_probability(p, h, w, bs)
  local gamma = p * h * w / (bs * bs * (h - bs + 1) * (w - bs + 1))
  return math.floor(gamma * 65536 + 0.5) / 65536
end

-- The exact expected dropped fraction of an h x w map: element (r, c) is
-- covered by n_r * n_c block positions, each a block with probability q.
local function expected_dropped(h, w, bs, q)
  local function covering(i, size) return math.min(i, size - bs) - math.max(0, i - bs + 1) + 1 end
  local sum = 0
  for r = 0, h - 1 do
    for c = 0, w - 1 do sum = sum + 1 - (1 - q) ^ (covering(r, h) * covering(c, w)) end
  end
  return sum / (h * w)
end

-- The flat list of a nested table's leaves (row-major).
local flatten = H.flatten

describe("core.dropblock2d", function()
  it("returns the input's own userdata for p = 0 and a new tensor otherwise", function()
    local x = dn.randn(2, 3, 6, 6)
    assert.are.equal(x, core.dropblock2d(x, 0, 3))
    assert.are_not.equal(x, core.dropblock2d(x, 0.5, 3))
  end)

  it("draws the mask dropblock2d_mask shows, scaled by numel / kept over the whole batch", function()
    local g = dn.Generator(11)
    local shape = {3, 4, 9, 10}
    local state = g:get_state()
    local mask = core.dropblock2d_mask(shape, 0.3, 3, g)
    assert.are.equal("uint8", mask:dtype())
    assert.are.same(state, g:get_state())   -- inspection draws nothing
    local x = dn.tensor(H.rand_values(shape, 0.5, 2))
    local y = core.dropblock2d(x, 0.3, 3, g)
    assert.are_not.same(state, g:get_state())
    local m, xv, yv = flatten(mask:totable()), flatten(x:totable()), flatten(y:totable())
    local kept = 0
    for i = 1, #m do kept = kept + m[i] end
    assert.is_true(kept > 0 and kept < #m)
    local scale = H.f32(#m / kept)
    for i = 1, #m do assert.are.equal(m[i] == 1 and H.f32(xv[i] * scale) or 0, yv[i]) end
  end)

  it("zeroes whole blocks of block_size x block_size that lie inside the map", function()
    local h, w, bs = 13, 17, 4
    local mask = core.dropblock2d_mask({2, 3, h, w}, 0.4, bs, dn.Generator(5)):totable()
    local dropped = 0
    for n = 1, 2 do
      for c = 1, 3 do
        local m = mask[n][c]
        for r = 1, h do
          for col = 1, w do
            if m[r][col] == 0 then
              dropped = dropped + 1
              -- some block anchored at (i, j), inside the map, covers (r, col) and is all zeros
              local covered = false
              for i = math.max(1, r - bs + 1), math.min(r, h - bs + 1) do
                for j = math.max(1, col - bs + 1), math.min(col, w - bs + 1) do
                  local whole = true
                  for a = i, i + bs - 1 do
                    for b = j, j + bs - 1 do whole = whole and m[a][b] == 0 end
                  end
                  covered = covered or whole
                end
              end
              assert(covered, string.format("element (%d, %d) of plane (%d, %d) is in no whole block", r, col, n, c))
            end
          end
        end
      end
    end
    assert.is_true(dropped > 0)
  end)

  it("takes the generator as a Generator, an options table or nil", function()
    local x = dn.ones(2, 3, 8, 8)
    local a = core.dropblock2d(x, 0.5, 3, dn.Generator(3))
    local b = core.dropblock2d(x, 0.5, 3, {generator = dn.Generator(3)})
    assert.is_true(same(a, b))
    dn.manual_seed(3)
    local c = core.dropblock2d(x, 0.5, 3)
    assert.is_true(same(a, c))
  end)

  it("rejects bad arguments naming dropblock2d", function()
    local x = dn.ones(2, 3, 4, 6)
    H.assert_error(function() core.dropblock2d(x, "0.5", 3) end, {"p must be a number (got string)"})
    H.assert_error(function() core.dropblock2d(x, 1.5, 3) end, {"dropblock2d: p must be in [0, 1] (got 1.5)"})
    H.assert_error(function() core.dropblock2d(x, 0.5, 2.5) end, {"block_size must be an integer (got 2.5)"})
    H.assert_error(function() core.dropblock2d(x, 0.5, 0) end, {"dropblock2d: block_size must be >= 1 (got 0)"})
    H.assert_error(function() core.dropblock2d(x, 0.5, 5) end,
      {"dropblock2d: block_size 5 does not fit the 4 x 6 feature maps of input [2,3,4,6] (must be <= min(H, W) = 4)"})
    H.assert_error(function() core.dropblock2d(dn.ones(4, 6), 0.5, 3) end,
      {"dropblock2d: input must be 4-D [N, C, H, W] or 3-D [C, H, W] (got shape [4,6])"})
    H.assert_error(function() core.dropblock2d_mask({2, 3, 4, 6}, 0.5, 7) end,
      {"dropblock2d_mask: block_size 7 does not fit"})
  end)
end)

describe("F.dropblock2d", function()
  it("is the kernel in training (the default) and x itself otherwise", function()
    local x = dn.ones(2, 3, 8, 8)
    assert.are.equal(x, F.dropblock2d(x, 0.5, 3, false))
    assert.are.equal(x, F.dropblock2d(x, 0, 3))
    local g = dn.Generator(8)
    local state = g:get_state()
    local y = F.dropblock2d(x, 0.5, 3, true, {generator = g})
    g:set_state(state)
    assert.is_true(same(y, F.dropblock2d(x, 0.5, 3, nil, {generator = g})))
    g:set_state(state)
    assert.is_true(same(y, core.dropblock2d(x, 0.5, 3, g)))
  end)

  it("accepts unbatched [C, H, W] input as one batch element", function()
    local x = dn.randn(4, 10, 12)
    local y = F.dropblock2d(x, 0.3, 3, true, {generator = dn.Generator(2)})
    H.assert_shape(y, {4, 10, 12})
    local y4 = F.dropblock2d(x:view(1, 4, 10, 12), 0.3, 3, true, {generator = dn.Generator(2)})
    assert.is_true(same(y, y4:view(4, 10, 12)))
  end)

  it("checks its arguments in every mode", function()
    local x = dn.ones(2, 3, 4, 6)
    H.assert_error(function() F.dropblock2d(x, 0.5, 5, false) end,
      {"dropblock2d: block_size 5 does not fit the 4 x 6 feature maps of input [2,3,4,6]"})
    H.assert_error(function() F.dropblock2d(x, 2, 3, false) end, {"dropblock2d: p must be a number in [0, 1] (got 2)"})
    H.assert_error(function() F.dropblock2d(x, 0.5, nil) end,
      {"dropblock2d: block_size must be an integer >= 1 (got nil)"})
    H.assert_error(function() F.dropblock2d(dn.ones(3), 0.5, 1) end, {"dropblock2d: input must be 4-D"})
    H.assert_error(function() F.dropblock2d(x, 0.5, 3, true, {scale = "test"}) end,
      {"dropblock2d: unknown option 'scale' (known: generator)"})
    H.assert_error(function() F.dropblock2d(x, 0.5, 3, "yes") end, {"dropblock2d: training must be true or false"})
  end)
end)

describe("nn.DropBlock2d", function()
  it("draws in training, is the identity in eval and draws in MC mode", function()
    local d = nn.DropBlock2d(0.3, 3, {generator = dn.Generator(1)})
    assert.are.equal("DropBlock2d(p=0.3, block_size=3)", tostring(d))
    assert.is_true(d.uses_generator)
    local x = dn.ones(4, 8, 12, 12)
    local y = d(x)
    assert.are_not.equal(x, y)
    assert.is_true(H.count_nonzero(y) < x:numel())
    d:eval()
    assert.are.equal(x, d(x))
    d:mc()
    local y1, y2 = d(x), d(x)
    assert.are_not.equal(x, y1)
    assert.is_false(same(y1, y2))   -- a fresh mask at every pass
    -- inside a model in MC mode, next to Dropout
    local model = nn.Sequential(nn.Conv2d(2, 4, 3, {padding = 1}), nn.DropBlock2d(0.3, 3), nn.Dropout(0.2))
    model:mc()
    local xin = dn.randn(2, 2, 10, 10)
    assert.is_false(same(model(xin), model(xin)))
    model:eval()
    assert.is_true(same(model(xin), model(xin)))
  end)

  it("takes part in nn.mc_predict, drawing from the lent generator", function()
    local model = nn.Sequential(nn.Conv2d(1, 2, 3, {padding = 1}), nn.DropBlock2d(0.3, 3))
    local x = dn.randn(2, 1, 8, 8)
    local m1, v1 = nn.mc_predict(model, x, 5, {generator = dn.Generator(4)})
    local m2, v2 = nn.mc_predict(model, x, 5, {generator = dn.Generator(4)})
    assert.is_true(same(m1, m2) and same(v1, v2))
    assert.is_true(v1:max():item() > 0)
    assert.are.equal("train", model.mode)
    assert.is_nil(model[2].generator)   -- given back
  end)

  it("reads p and block_size at every forward; p = 0 returns the input", function()
    local d = nn.DropBlock2d(0, 3)
    local x = dn.ones(2, 3, 9, 9)
    assert.are.equal(x, d(x))
    d.p = 1
    assert.are.equal(0, H.count_nonzero(d(x)))   -- p = 1: everything dropped
    d.p = 0.5
    d.block_size = 9
    local y = d(x):totable()
    for n = 1, 2 do
      for c = 1, 3 do   -- block_size = H = W: whole maps, each dropped or kept
        local v = flatten(y[n][c])
        for i = 2, #v do assert.are.equal(v[1], v[i]) end
      end
    end
    d.p = 1.5
    H.assert_error(function() d(x) end, {"DropBlock2d: p must be a number in [0, 1] (got 1.5)"})
    d.p = 0.5
    d.block_size = 10
    H.assert_error(function() d(x) end,
      {"DropBlock2d: block_size 10 does not fit the 9 x 9 feature maps of input [2,3,9,9] (must be <= min(H, W) = 9)"})
    d:eval()   -- checked in eval too
    H.assert_error(function() d(x) end, {"DropBlock2d: block_size 10 does not fit"})
  end)

  it("rejects bad arguments naming DropBlock2d", function()
    H.assert_error(function() nn.DropBlock2d(2, 3) end, {"DropBlock2d: p must be a number in [0, 1] (got 2)"})
    H.assert_error(function() nn.DropBlock2d(nil, 3) end, {"DropBlock2d: p must be a number in [0, 1] (got nil)"})
    H.assert_error(function() nn.DropBlock2d(0.1) end, {"DropBlock2d: block_size must be an integer >= 1 (got nil)"})
    H.assert_error(function() nn.DropBlock2d(0.1, 0) end, {"DropBlock2d: block_size must be an integer >= 1 (got 0)"})
    H.assert_error(function() nn.DropBlock2d(0.1, 3, {scale = "test"}) end,
      {"DropBlock2d: unknown option 'scale' (known: generator)"})
    H.assert_error(function() nn.DropBlock2d(0.1, 3, {generator = 1}) end, {"DropBlock2d: generator must be"})
    local d = nn.DropBlock2d(0.1, 3)
    H.assert_error(function() d(dn.ones(3, 4)) end,
      {"DropBlock2d: input must be 4-D [N, C, H, W] or 3-D [C, H, W] (got shape [3,4])"})
    H.assert_error(function() d(dn.ones(1, 2, 3, 4, 5)) end, {"DropBlock2d: input must be 4-D"})
    H.assert_error(function() d({}) end, {"DropBlock2d: a tensor expected"})
  end)

  it("masks the backward exactly as the forward", function()
    local d = nn.DropBlock2d(0.4, 3, {generator = dn.Generator(12)})
    local x = dn.tensor(H.rand_values({2, 3, 10, 11}, 0.5, 2), {requires_grad = true})
    local y = d(x)
    assert.are.equal("dropblock2d", y.grad_fn)
    assert.are.equal(0, core.dropout_saved_mask_bytes(y))
    y:sum():backward()
    local xv, yv, gv = flatten(x:totable()), flatten(y:totable()), flatten(x.grad:totable())
    local kept = 0
    for i = 1, #yv do
      if yv[i] ~= 0 then kept = kept + 1 end
    end
    local scale = H.f32(#yv / kept)
    for i = 1, #yv do
      assert.are.equal(yv[i] == 0 and 0 or scale, gv[i])   -- grad of sum(y) = mask * scale
      assert.are.equal(H.f32(xv[i] * gv[i]), yv[i])        -- y = x * that
    end
  end)

  it("has gradients that match finite differences for a fixed generator state", function()
    local G = require "gradcheck"
    local gen = dn.Generator(123)
    local state = gen:get_state()
    local function replay(inputs)
      gen:set_state(state)
      return core.dropblock2d(inputs[1], 0.4, 2, gen)
    end
    for _, layout in ipairs({"contiguous", "strided", "transposed"}) do
      G.assert("dropblock2d (" .. layout .. ")", replay, {G.random_leaf(G.rng(9), {2, 3, 5, 6}, "any", layout)})
    end
  end)
end)

describe("DropBlock determinism and statistics", function()
  it("gives identical outputs and gradients with 1, 2 and 3 threads", function()
    local before = dn.get_num_threads()
    local gen = dn.Generator(99)
    local layer = nn.DropBlock2d(0.3, 5, {generator = gen})
    local x, g = dn.randn(16, 32, 24, 24), dn.randn(16, 32, 24, 24)
    local state = gen:get_state()
    local outs, grads = {}, {}
    for threads = 1, 3 do
      dn.set_num_threads(threads)
      gen:set_state(state)
      local xx = x:detach():requires_grad_()
      local y = layer(xx)
      y:backward(g)
      outs[threads], grads[threads] = y:detach(), xx.grad
    end
    dn.set_num_threads(before)
    for threads = 2, 3 do
      assert.is_true(same(outs[1], outs[threads]), "outputs differ with " .. threads .. " threads")
      assert.is_true(same(grads[1], grads[threads]), "gradients differ with " .. threads .. " threads")
    end
    assert.is_false(same(outs[1], x))
  end)

  it("drops the expected fraction (p = 0.1, block_size = 3, 28 x 28 maps, many channels)", function()
    local n, c, h, w, bs, p = 16, 512, 28, 28, 3, 0.1
    local y = F.dropblock2d(dn.ones(n, c, h, w), p, bs, true, {generator = dn.Generator(2018)})
    local numel = n * c * h * w
    local dropped = numel - H.count_nonzero(y)
    -- the exact expectation, and Efron-Stein's bound on the variance of a
    -- plane's dropped count: m positions, each changing it by <= bs^2
    local q = block_probability(p, h, w, bs)
    local m = (h - bs + 1) * (w - bs + 1)
    local mean = numel * expected_dropped(h, w, bs, q)
    local sd = math.sqrt(n * c * m * q * (1 - q)) * bs * bs
    assert(math.abs(dropped - mean) <= 6 * sd,
      string.format("%d dropped of %d, expected %.1f +- %.1f (6 sd)", dropped, numel, mean, 6 * sd))
    -- ~ p: gamma makes the expected block area p; overlaps make the fraction a little less
    local fraction = dropped / numel
    assert.is_true(fraction > 0.9 * p and fraction < p, "dropped fraction " .. fraction)
    -- normalised: the mean of the output is 1
    assert.is_true(math.abs(y:mean():item() - 1) < 1e-5)
  end)

  it("uses H and W apart in gamma (non-square maps)", function()
    local n, c, h, w, bs, p = 8, 256, 10, 40, 5, 0.25
    local y = F.dropblock2d(dn.ones(n, c, h, w), p, bs, true, {generator = dn.Generator(7)})
    local numel = n * c * h * w
    local dropped = numel - H.count_nonzero(y)
    local q = block_probability(p, h, w, bs)
    local mean = numel * expected_dropped(h, w, bs, q)
    local sd = math.sqrt(n * c * (h - bs + 1) * (w - bs + 1) * q * (1 - q)) * bs * bs
    assert(math.abs(dropped - mean) <= 6 * sd,
      string.format("%d dropped of %d, expected %.1f +- %.1f (6 sd)", dropped, numel, mean, 6 * sd))
  end)
end)

describe("nn.DropBlockSchedule", function()
  it("ramps p linearly from start to stop over steps, then stays", function()
    local a, b = nn.DropBlock2d(0.5, 3), nn.DropBlock2d(0.5, 5)
    local model = nn.Sequential(nn.Conv2d(1, 2, 3), a, nn.ReLU(), nn.Sequential(b))
    local s = nn.DropBlockSchedule(model, {stop = 0.2, steps = 4})
    assert.are.same({a, b}, s.modules)
    assert.are.equal(0, a.p)   -- step 0 is set when the schedule is made
    local expected = {0.05, 0.1, 0.15, 0.2, 0.2, 0.2}
    for _, want in ipairs(expected) do
      local p = s:step()
      assert.is_true(math.abs(p - want) < 1e-15)
      assert.are.equal(p, a.p)
      assert.are.equal(p, b.p)
      assert.are.equal(p, s:get_p())
    end
    assert.are.equal(0.2, a.p)   -- exactly stop at the end
    assert.are.equal(6, s.last_step)
    assert.are.equal(0.1, s:get_p(2))
    -- a start, a decreasing ramp, a list of modules
    local c = nn.DropBlock2d(0, 2)
    local down = nn.DropBlockSchedule({c}, {start = 0.3, stop = 0.1, steps = 2})
    assert.are.equal(0.3, c.p)
    down:step()
    assert.is_true(math.abs(c.p - 0.2) < 1e-15)
    down:step()
    assert.are.equal(0.1, c.p)
  end)

  it("is checkpointable: state_dict and load_state_dict, through checkpoint.save", function()
    local d = nn.DropBlock2d(0, 3)
    local s = nn.DropBlockSchedule(d, {start = 0.05, stop = 0.25, steps = 10})
    for _ = 1, 3 do s:step() end
    local dir = H.make_tempdir()
    local path = dir .. "/schedule.safetensors"
    checkpoint.save(path, {schedule = s:state_dict()})
    local loaded = checkpoint.load(path).schedule
    H.remove_dir(dir)
    assert.are.same({last_step = 3, start = 0.05, stop = 0.25, steps = 10}, loaded)
    local d2 = nn.DropBlock2d(0, 3)
    local s2 = nn.DropBlockSchedule(d2, {stop = 0.9, steps = 2})
    s2:load_state_dict(loaded)
    assert.are.equal(d.p, d2.p)
    s:step()
    s2:step()
    assert.are.equal(d.p, d2.p)
    H.assert_error(function() s2:load_state_dict({last_step = -1, stop = 0.1, steps = 1}) end,
      {"DropBlockSchedule:load_state_dict: last_step must be an integer >= 0 (got -1)"})
    H.assert_error(function() s2:load_state_dict(5) end, {"DropBlockSchedule:load_state_dict: a table expected"})
  end)

  it("rejects bad arguments", function()
    local d = nn.DropBlock2d(0, 3)
    H.assert_error(function() nn.DropBlockSchedule(nn.Linear(2, 2), {stop = 0.1, steps = 1}) end,
      {"DropBlockSchedule: no nn.DropBlock2d among the modules given"})
    H.assert_error(function() nn.DropBlockSchedule(5, {stop = 0.1, steps = 1}) end,
      {"DropBlockSchedule: a module or a list of modules expected (got 5)"})
    H.assert_error(function() nn.DropBlockSchedule({d, 3}, {stop = 0.1, steps = 1}) end,
      {"DropBlockSchedule: modules[2] must be a module (got 3)"})
    H.assert_error(function() nn.DropBlockSchedule(d, {steps = 1}) end, {"DropBlockSchedule: stop is required"})
    H.assert_error(function() nn.DropBlockSchedule(d, {stop = 0.1}) end, {"DropBlockSchedule: steps is required"})
    H.assert_error(function() nn.DropBlockSchedule(d, {stop = 1.5, steps = 1}) end,
      {"DropBlockSchedule: stop must be a number in [0, 1] (got 1.5)"})
    H.assert_error(function() nn.DropBlockSchedule(d, {start = -1, stop = 0.1, steps = 1}) end,
      {"DropBlockSchedule: start must be a number in [0, 1] (got -1)"})
    H.assert_error(function() nn.DropBlockSchedule(d, {stop = 0.1, steps = 0}) end,
      {"DropBlockSchedule: steps must be an integer >= 1 (got 0)"})
    H.assert_error(function() nn.DropBlockSchedule(d, {stop = 0.1, steps = 1, warmup = 2}) end,
      {"DropBlockSchedule: unknown option 'warmup' (known: start, steps, stop)"})
  end)
end)
