-- The dropout family from Lua: core bindings, nn modules, functional forms,
-- reproducibility and memory (MC dropout: mc_dropout_spec.lua).
--
-- Statistical checks use bounds of 6 standard deviations (or wider): a
-- correct kernel fails one with probability below 1e-8, while a kernel with
-- the wrong keep probability, scale or variance misses them by far. Exact
-- checks compare against plain Lua loops over the values (and the keep mask
-- the generator would draw, from core.dropout_mask), never against the
-- kernel under test.
local dn = require "dropnet"
local nn = require "dropnet.nn"
local core = require "dropnet.core"
local H = require "helpers"

local F = nn.functional

-- The scale a kept element gets with inverted scaling: 1/(1-p) of p rounded
-- to a multiple of 2^-16, as a float32.
local function keep_scale(p)
  local threshold = math.floor(p * 65536 + 0.5)
  return H.f32(65536 / (65536 - threshold))
end

local count_nonzero, assert_binomial, same = H.count_nonzero, H.assert_binomial, H.same_values

local function mean_and_var(t)
  return t:mean():item(), t:var(false):item()
end

describe("core dropout bindings", function()
  it("return the input's own userdata when the runtime returns the input", function()
    local x = dn.randn(4, 5)
    assert.are.equal(x, core.dropout(x, 0))
    assert.are.equal(x, core.dropout_channels(x, 0))
    assert.are.equal(x, core.alpha_dropout(x, 0))
    assert.are.equal(x, core.gaussian_dropout(x, 0))
    assert.are.equal(x, core.dropout_eval(x, 0.5))
    assert.are.equal(x, core.dropout_eval(x, 0.5, "inverted"))
    assert.are.equal(x, core.dropout_eval(x, 0, "test"))
    assert.are_not.equal(x, core.dropout(x, 0.5))
  end)

  it("dropout_eval with test scaling multiplies by 1-p", function()
    local values = H.rand_values({3, 4})
    local x, xv = H.tensor_and_values(values)
    local y = core.dropout_eval(x, 0.25, "test")
    H.assert_same(y, H.map(xv, function(v) return H.f32(v * 0.75) end))
  end)

  it("dropout_mask does not advance the generator and is the mask dropout draws", function()
    local g = dn.Generator(11)
    local state = g:get_state()
    local mask = core.dropout_mask({40, 50}, 0.3, g)
    assert.are.equal("uint8", mask:dtype())
    assert.are.same(state, g:get_state())
    local y = core.dropout(dn.ones(40, 50), 0.3, g)
    assert.are_not.same(state, g:get_state())
    local s = keep_scale(0.3)
    H.assert_same(y, H.map(mask:totable(), function(m) return m == 1 and s or 0 end))
  end)

  it("take the generator as a Generator, an options table or nil", function()
    local a = core.dropout(dn.ones(1000), 0.5, dn.Generator(3))
    local b = core.dropout(dn.ones(1000), 0.5, {generator = dn.Generator(3)})
    assert.is_true(same(a, b))
    dn.manual_seed(3)
    local c = core.dropout(dn.ones(1000), 0.5)
    dn.manual_seed(3)
    assert.is_true(same(c, core.dropout(dn.ones(1000), 0.5, nil, "inverted")))
  end)

  it("reject bad arguments with the op's name", function()
    local x = dn.ones(3)
    H.assert_error(function() core.dropout(x, "0.5") end, {"p must be a number (got string)"})
    H.assert_error(function() core.dropout(x, 1.5) end, {"dropout: p must be in [0, 1] (got 1.5)"})
    H.assert_error(function() core.dropout(x, 0 / 0) end, {"dropout: p must be in [0, 1]"})
    H.assert_error(function() core.dropout(x, -0.1) end, {"dropout: p must be in [0, 1] (got -0.1)"})
    H.assert_error(function() core.dropout(x, 0.5, nil, "paper") end,
      {"unknown scaling 'paper' (use \"inverted\" or \"test\")"})
    H.assert_error(function() core.dropout(x, 0.5, 7) end, {"Generator or options table expected"})
    H.assert_error(function() core.dropout(dn.ones(3, "int32"), 0.5) end, {"dropout: input must be float32"})
    H.assert_error(function() core.gaussian_dropout(x, 1) end, {"gaussian_dropout: p must be < 1"})
    H.assert_error(function() core.dropout_locked(dn.ones(3, 4), 0.5) end,
      {"dropout_locked: input must be 3-D [T, N, F] (got shape [3,4])"})
    H.assert_error(function() core.dropout_channels(x, 0.5) end, {"dropout_channels: input must have at least 2 dims"})
    H.assert_error(function() core.dropconnect_linear(dn.ones(2, 3), dn.ones(4, 5), nil, 0.5) end,
      {"dropconnect_linear: input [2,3] and weight [4,5] do not match"})
    H.assert_error(function() core.dropout_mask({2, -1}, 0.5) end, {"dropout_mask"})
  end)
end)

describe("nn.Dropout", function()
  local n = 100000

  it("in training keeps a binomial fraction, scales kept values by 1/(1-p) and preserves the mean", function()
    local p = 0.3
    local d = nn.Dropout(p)
    local y = d(dn.ones(n))
    assert_binomial(count_nonzero(y), n, 1 - p, "kept")
    local s = keep_scale(p)
    assert.are.equal(count_nonzero(y), y:eq(s):sum():item())   -- every kept value is exactly the scale
    -- the mean of y is 1 with sd sqrt(p/(1-p)/n)
    assert.is_true(math.abs(y:mean():item() - 1) < 6 * math.sqrt(p / (1 - p) / n))
  end)

  it("defaults to p = 0.5 and prints like PyTorch", function()
    assert.are.equal(0.5, nn.Dropout().p)
    assert.are.equal("Dropout(p=0.5)", tostring(nn.Dropout()))
    assert.are.equal("Dropout(p=0.2, scale=\"test\")", tostring(nn.Dropout(0.2, {scale = "test"})))
    assert.are.equal("Dropout2d(p=0.1)", tostring(nn.Dropout2d(0.1)))
    assert.are.equal("LockedDropout(p=0.25)", tostring(nn.LockedDropout(0.25)))
    assert.are.equal("AlphaDropout(p=0.5)", tostring(nn.AlphaDropout()))
    assert.are.equal("GaussianDropout(p=0.3)", tostring(nn.GaussianDropout(0.3)))
  end)

  it("is the identity in eval and returns the same tensor object", function()
    local d = nn.Dropout(0.5):eval()
    local x = dn.randn(10)
    local g = dn.get_rng_state()
    assert.are.equal(x, d(x))
    assert.are.same(g, dn.get_rng_state())
  end)

  it("with p = 0 returns the same object and draws nothing", function()
    local gen = dn.Generator(5)
    local d = nn.Dropout(0, {generator = gen})
    local x = dn.randn(100)
    local state = gen:get_state()
    assert.are.equal(x, d(x))
    assert.are.same(state, gen:get_state())
  end)

  it("with p = 1 gives zeros and zero gradients", function()
    local x = dn.tensor({1, -2, 1e30, 3}, {requires_grad = true})
    local y = nn.Dropout(1)(x)
    H.assert_same(y, {0, 0, 0, 0})
    y:backward(dn.tensor({1, 2, 3, 4}))
    H.assert_same(x.grad, {0, 0, 0, 0})
  end)

  it("rejects a bad p, at construction and at forward, naming the module", function()
    H.assert_error(function() nn.Dropout(1.5) end, {"Dropout: p must be a number in [0, 1] (got 1.5)"})
    H.assert_error(function() nn.Dropout(-1) end, {"Dropout: p must be a number in [0, 1] (got -1)"})
    H.assert_error(function() nn.Dropout("half") end, {"Dropout: p must be a number in [0, 1] (got \"half\")"})
    H.assert_error(function() nn.Dropout2d(2) end, {"Dropout2d: p must be a number in [0, 1] (got 2)"})
    H.assert_error(function() nn.GaussianDropout(1) end, {"GaussianDropout: p must be a number in [0, 1) (got 1)"})
    local d = nn.Dropout(0.5)
    d.p = 0 / 0
    H.assert_error(function() d(dn.ones(3)) end, {"Dropout: p must be a number in [0, 1]"})
    d:eval()   -- checked in eval too: a schedule bug shows at once
    H.assert_error(function() d(dn.ones(3)) end, {"Dropout: p must be a number in [0, 1]"})
    local a = nn.AlphaDropout(0.5)
    a.p = 3
    H.assert_error(function() a(dn.ones(3)) end, {"AlphaDropout: p must be a number in [0, 1] (got 3)"})
    H.assert_error(function() nn.Dropout(0.5, {scale = "paper"}) end,
      {"Dropout: scale must be one of \"inverted\", \"test\" (got \"paper\")"})
    H.assert_error(function() nn.Dropout(0.5, {generator = 1}) end,
      {"Dropout: generator must be a dropnet.Generator (got 1)"})
    H.assert_error(function() nn.Dropout(0.5, {inplace = true}) end, {"Dropout: unknown option 'inplace'"})
    H.assert_error(function() nn.Dropout(0.5)({1, 2}) end, {"Dropout: a tensor expected (got table)"})
  end)

  it("scale = \"test\" keeps values unscaled in training and multiplies by 1-p in eval", function()
    local d = nn.Dropout(0.25, {scale = "test"})
    local values = H.rand_values({2000}, 0.5, 2)
    local x, xv = H.tensor_and_values(values)
    local yv = d(x):totable()
    local kept = 0
    for i = 1, #xv do
      assert.is_true(yv[i] == 0 or yv[i] == xv[i])
      if yv[i] ~= 0 then kept = kept + 1 end
    end
    assert_binomial(kept, #xv, 0.75, "kept")
    d:eval()
    H.assert_same(d(x), H.map(xv, function(v) return H.f32(v * 0.75) end))
  end)

  it("p may change between steps (a schedule)", function()
    local d = nn.Dropout(0.2)
    assert_binomial(count_nonzero(d(dn.ones(n))), n, 0.8, "p = 0.2")
    d.p = 0.8
    assert_binomial(count_nonzero(d(dn.ones(n))), n, 0.2, "p = 0.8")
    d.p = 0
    local x = dn.ones(10)
    assert.are.equal(x, d(x))
  end)

  it("gradient is mask * g / (1-p) exactly, with the mask of the forward", function()
    local p, m = 0.4, 3000
    local gen = dn.Generator(21)
    local d = nn.Dropout(p, {generator = gen})
    local mask = core.dropout_mask({m}, p, gen):totable()
    local x = dn.tensor(H.rand_values({m}, 0.1, 2), {requires_grad = true})
    local xv = x:totable()
    local gv = H.rand_values({m})
    local y = d(x)
    y:backward(dn.tensor(gv))
    local s = keep_scale(p)
    H.assert_same(y, H.build({m}, function(i) return mask[i[1]] == 1 and H.f32(xv[i[1]] * s) or 0 end))
    H.assert_same(x.grad, H.build({m}, function(i) return mask[i[1]] == 1 and H.f32(H.f32(gv[i[1]]) * s) or 0 end))
    assert.are.equal("dropout", y.grad_fn)
  end)

  it("masks differ across steps and across layers", function()
    local a, b = nn.Dropout(0.5), nn.Dropout(0.5)
    local x = dn.ones(n)
    local y1, y2, y3 = a(x), a(x), b(x)
    -- two independent masks disagree on half the elements
    assert_binomial(y1:ne(y2):sum():item(), n, 0.5, "steps")
    assert_binomial(y1:ne(y3):sum():item(), n, 0.5, "layers")
    local c = nn.Dropout(0.5, {generator = dn.Generator(1)})
    local e = nn.Dropout(0.5, {generator = dn.Generator(2)})
    assert_binomial(c(x):ne(e(x)):sum():item(), n, 0.5, "seeds")
  end)

  it("dn.manual_seed makes the default generator's masks repeat", function()
    local d = nn.Dropout(0.5)
    local x = dn.randn(5000)
    dn.manual_seed(1234)
    local y1 = d(x)
    dn.manual_seed(1234)
    assert.is_true(same(y1, d(x)))
  end)

  it("get_state/set_state replays the same mask (own and default generator)", function()
    local gen = dn.Generator(77)
    local d = nn.Dropout(0.5, {generator = gen})
    local x = dn.randn(5000)
    d(x)
    local state = gen:get_state()
    local y1 = d(x)
    assert.is_false(same(y1, d(x)))
    gen:set_state(state)
    assert.is_true(same(y1, d(x)))

    local dd = nn.Dropout(0.5)
    local s = dn.get_rng_state()
    local z1 = dd(x)
    dn.set_rng_state(s)
    assert.is_true(same(z1, dd(x)))
  end)

  it("per-module generators: models seeded alike agree, layers differ, the global state is not touched", function()
    local function model(seed)
      return nn.Sequential(
        nn.Dropout(0.5, {generator = dn.Generator(seed)}),
        nn.Dropout(0.5, {generator = dn.Generator(seed + 1)}))
    end
    local a, b = model(10), model(10)
    local x = dn.randn(5000)
    local global = dn.get_rng_state()
    local ya = a(x)
    dn.rand(100)   -- draws between the two runs change nothing for own generators
    assert.is_true(same(ya, b(x)))
    assert.is_true(same(a(x), b(x)))   -- the next steps agree too
    assert.is_false(same(a(x), a(x)))
    dn.set_rng_state(global)
    -- the two layers of one model draw different masks
    local ones = dn.ones(5000)
    local m1, m2 = a[1](ones), a[2](ones)
    assert_binomial(m1:ne(m2):sum():item(), 5000, 0.5, "layers")
  end)
end)

describe("channel dropout (Dropout1d/2d/3d)", function()
  local cases = {
    {nn.Dropout1d, {40, 50, 7}, "[N, C, L]"},
    {nn.Dropout2d, {40, 50, 3, 4}, "[N, C, H, W]"},
    {nn.Dropout3d, {20, 50, 2, 3, 2}, "[N, C, D, H, W]"},
  }
  for _, case in ipairs(cases) do
    local cls, shape, layout = case[1], case[2], case[3]
    it(cls.__name .. " zeros whole channels, keeps a binomial fraction, scales the rest", function()
      local p = 0.5
      local y = cls(p)(dn.ones(shape))
      local channels = shape[1] * shape[2]
      local per_channel = y:numel() // channels
      local flat = y:reshape({channels, per_channel}):totable()
      local kept = 0
      for c = 1, channels do
        local first = flat[c][1]
        assert.is_true(first == 0 or first == 2, "channel value " .. first)
        for k = 2, per_channel do assert.are.equal(first, flat[c][k]) end
        if first ~= 0 then kept = kept + 1 end
      end
      assert_binomial(kept, channels, 1 - p, "channels kept")
    end)

    it(cls.__name .. " checks the input's dims and is the identity in eval", function()
      local bad = {3, 4}
      H.assert_error(function() cls(0.5)(dn.ones(bad)) end,
        {cls.__name .. ": input must be " .. #shape .. "-D " .. layout .. " (got shape [3,4])"})
      local x = dn.ones(shape)
      assert.are.equal(x, cls(0.5):eval()(x))
    end)
  end

  it("gradient is zero on dropped channels and 1/(1-p) on kept ones; scale = \"test\" in eval", function()
    local x = dn.randn({8, 16, 3, 3}):requires_grad_()
    local y = nn.Dropout2d(0.5)(x)
    y:sum():backward()
    local yv, gv = y:totable(), x.grad:totable()
    for n = 1, 8 do
      for c = 1, 16 do
        local kept = yv[n][c][1][1] ~= 0
        for h = 1, 3 do
          for w = 1, 3 do assert.are.equal(kept and 2 or 0, gv[n][c][h][w]) end
        end
      end
    end
    local d = nn.Dropout2d(0.25, {scale = "test"}):eval()
    H.assert_close(d(dn.ones(2, 3, 2, 2)), dn.full({2, 3, 2, 2}, 0.75))
  end)
end)

describe("nn.LockedDropout", function()
  it("reuses one mask per (n, f) at every time step", function()
    local T, N, Fe = 6, 20, 100
    local y = nn.LockedDropout(0.5)(dn.ones(T, N, Fe))
    local yv = y:totable()
    local kept = 0
    for n = 1, N do
      for f = 1, Fe do
        local v = yv[1][n][f]
        assert.is_true(v == 0 or v == 2)
        for t = 2, T do assert.are.equal(v, yv[t][n][f]) end
        if v ~= 0 then kept = kept + 1 end
      end
    end
    assert_binomial(kept, N * Fe, 0.5, "kept")
  end)

  it("masks the gradient like the forward and requires [T, N, F]", function()
    local x = dn.randn(4, 3, 50):requires_grad_()
    local y = nn.LockedDropout(0.5)(x)
    y:sum():backward()
    local yv, gv = y:totable(), x.grad:totable()
    for t = 1, 4 do
      for n = 1, 3 do
        for f = 1, 50 do assert.are.equal(yv[t][n][f] ~= 0 and 2 or 0, gv[t][n][f]) end
      end
    end
    H.assert_error(function() nn.LockedDropout(0.5)(dn.ones(3, 4)) end,
      {"LockedDropout: input must be 3-D [T, N, F] (got shape [3,4])"})
  end)
end)

describe("nn.AlphaDropout and nn.GaussianDropout", function()
  local n = 200000

  it("AlphaDropout preserves the mean and variance of a standard normal input", function()
    for _, p in ipairs({0.1, 0.3}) do
      local x = dn.randn(n, dn.Generator(3))
      local y = nn.AlphaDropout(p, {generator = dn.Generator(4)})(x)
      local mean, var = mean_and_var(y)
      -- sd of the sample mean ~ 1/sqrt(n) = 0.0022, of the sample variance ~ 0.004
      assert.is_true(math.abs(mean) < 0.02, "mean " .. mean)
      assert.is_true(math.abs(var - 1) < 0.04, "variance " .. var)
      -- dropped elements all hold the same value a * alpha' + b
      local yv, xv = y:narrow(1, 1, 2000):totable(), x:narrow(1, 1, 2000):totable()
      local alpha = -1.7580993408473766   -- SELU's -lambda * alpha
      local pr = math.floor(p * 65536 + 0.5) / 65536   -- p as the kernel rounds it
      local a = 1 / math.sqrt((alpha ^ 2 * pr + 1) * (1 - pr))
      local b = -a * alpha * pr
      local fill = H.f32(a * alpha + b)
      local dropped = 0
      for i = 1, #yv do
        if math.abs(yv[i] - fill) < 1e-6 then dropped = dropped + 1
        else assert.is_true(math.abs(yv[i] - (a * xv[i] + b)) < 1e-5) end
      end
      assert_binomial(dropped, #yv, p, "dropped")
    end
  end)

  it("AlphaDropout is the identity in eval and for p = 0", function()
    local x = dn.randn(10)
    assert.are.equal(x, nn.AlphaDropout(0.5):eval()(x))
    assert.are.equal(x, nn.AlphaDropout(0)(x))
  end)

  it("GaussianDropout has mean 1 and variance p/(1-p) of the noise, and its gradient is the noise", function()
    local p = 0.3
    local x = dn.ones(n):requires_grad_()
    local y = nn.GaussianDropout(p, {generator = dn.Generator(8)})(x)
    local mean, var = mean_and_var(y)
    local want = p / (1 - p)
    assert.is_true(math.abs(mean - 1) < 6 * math.sqrt(want / n), "mean " .. mean)
    assert.is_true(math.abs(var - want) < 6 * want * math.sqrt(2 / n), "variance " .. var)
    y:sum():backward()
    assert.is_true(same(x.grad, y:detach()))   -- d(x * noise)/dx = noise
    local z = dn.randn(10)
    assert.are.equal(z, nn.GaussianDropout(0.5):eval()(z))
  end)
end)

describe("DropConnect", function()
  -- Reference y = x @ (w * mask * s)^T + b and the weight gradient of sum(y), in Lua loops.
  local function reference(xv, wv, bv, mask, s)
    local y, dw = {}, {}
    for o = 1, #wv do
      dw[o] = {}
      for j = 1, #wv[1] do
        local col = 0
        for i = 1, #xv do col = col + xv[i][j] end
        dw[o][j] = mask[o][j] == 1 and col * s or 0
      end
    end
    for i = 1, #xv do
      y[i] = {}
      for o = 1, #wv do
        local acc = bv[o]
        for j = 1, #wv[1] do
          if mask[o][j] == 1 then acc = acc + xv[i][j] * wv[o][j] * s end
        end
        y[i][o] = acc
      end
    end
    return y, dw
  end

  it("drops weights with the generator's mask; gradients reach only the kept weights", function()
    local gen = dn.Generator(31)
    local lin = nn.Linear(20, 10)
    local dc = nn.DropConnect(lin, 0.5, {generator = gen})
    local mask = core.dropout_mask({10, 20}, 0.5, gen):totable()
    local x = dn.tensor(H.rand_values({5, 20}))
    local y = dc(x)
    local y_ref, dw_ref = reference(x:totable(), lin.weight:totable(), lin.bias:totable(), mask, 2)
    H.assert_close(y, y_ref, 1e-5, 1e-5)
    y:sum():backward()
    local dw = lin.weight.grad:totable()
    for o = 1, 10 do
      for j = 1, 20 do
        if mask[o][j] == 0 then assert.are.equal(0, dw[o][j]) end
      end
    end
    H.assert_close(dw, dw_ref, 1e-5, 1e-5)
    H.assert_same(lin.bias.grad, H.build({10}, function() return 5 end))
    assert.are.equal(0, core.dropout_saved_mask_bytes(y))
  end)

  it("is the plain layer in eval and for p = 0; its parameters are the wrapped layer's", function()
    local lin = nn.Linear(6, 4)
    local dc = nn.DropConnect(lin, 0.5)
    assert.are.same({lin.weight, lin.bias}, dc:parameters())
    local x = dn.randn(3, 6)
    local plain = lin(x)
    local state = dn.get_rng_state()
    assert.is_true(same(plain, dc:eval()(x)))
    dc:train()
    dc.p = 0
    assert.is_true(same(plain, dc(x)))
    assert.are.same(state, dn.get_rng_state())
    assert.are.equal("DropConnect(\n  p=0.5\n  (linear): Linear(in_features=6, out_features=4, bias=true)\n)",
      tostring(nn.DropConnect(nn.Linear(6, 4), 0.5)))
  end)

  it("nn.Linear{dropconnect = p} draws the same masks as nn.DropConnect, also fused with an activation", function()
    local x = dn.randn(7, 12)
    local gen_a = dn.Generator(5)
    local a = nn.Linear(12, 9, {dropconnect = 0.4, generator = gen_a})
    local b = nn.Linear(12, 9)
    b:load_state_dict(a:state_dict())
    -- gen_a has drawn a's initial weights; give the wrapper's generator the same state
    local gen_b = dn.Generator(0)
    gen_b:set_state(gen_a:get_state())
    local dc = nn.DropConnect(b, 0.4, {generator = gen_b})
    local ya = a(x)
    assert.is_true(same(ya, dc(x)))
    assert.is_false(same(ya, b(x)))
    assert.are.equal("Linear(in_features=12, out_features=9, bias=true, dropconnect=0.4)", tostring(a))
    -- Sequential fuses Linear + ReLU into one kernel call: with DropConnect the
    -- ReLU must still follow the masked layer
    local fused = nn.Sequential(a, nn.ReLU())
    H.assert_same(fused(x), dc(x):relu())
    fused:eval()
    H.assert_same(fused(x), b(x):relu())
  end)

  it("rejects what it cannot wrap and a bad p", function()
    H.assert_error(function() nn.DropConnect(nn.ReLU(), 0.5) end, {"DropConnect: an nn.Linear expected (got ReLU)"})
    H.assert_error(function() nn.DropConnect(nn.Linear(2, 2), 1.5) end,
      {"DropConnect: p must be a number in [0, 1] (got 1.5)"})
    H.assert_error(function() nn.DropConnect(nn.Linear(2, 2, {dropconnect = 0.1}), 0.5) end,
      {"DropConnect: the Linear already drops its weights"})
    H.assert_error(function() nn.Linear(2, 2, {dropconnect = -1}) end,
      {"Linear: dropconnect must be a number in [0, 1] (got -1)"})
    local lin = nn.Linear(2, 2, {dropconnect = 0.5})
    lin.dropconnect = 2
    H.assert_error(function() lin(dn.ones(1, 2)) end, {"Linear: dropconnect must be a number in [0, 1] (got 2)"})
  end)
end)

describe("Linear, ReLU, Dropout in a Sequential (one fused kernel call)", function()
  -- The same layers run one by one (not through Sequential, so nothing is fused).
  local function one_by_one(model, x)
    for _, m in ipairs(model) do x = m(x) end
    return x
  end

  -- Output, gradients of x and every parameter, and the generator's state after one step.
  local function step(model, x, g, run)
    x = x:detach():requires_grad_()
    model:zero_grad()
    local y = run(model, x)
    y:backward(g)
    local grads = {x.grad}
    for _, p in ipairs(model:parameters()) do grads[#grads + 1] = p.grad end
    return y, grads, dn.get_rng_state()
  end

  local function assert_same_step(model, x, g)
    dn.manual_seed(11)
    local y1, g1, s1 = step(model, x, g, function(m, v) return m(v) end)
    dn.manual_seed(11)
    local y2, g2, s2 = step(model, x, g, one_by_one)
    assert.is_true(same(y1, y2), "outputs differ")
    assert.are.equal(#g2, #g1)
    for i = 1, #g1 do assert.is_true(same(g1[i], g2[i]), "gradient " .. i .. " differs") end
    assert.are.same(s2, s1)
    return y1
  end

  it("gives the bits of the three layers one by one, and draws the same", function()
    dn.manual_seed(1)
    local model = nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Dropout(0.3), nn.Linear(40, 50), nn.ReLU(),
      nn.Dropout(0.5, {scale = "test"}), nn.Linear(50, 7))
    local x, g = dn.randn(16, 30), dn.randn(16, 7)
    assert_same_step(model, x, g)
    -- p = 0 (no draw), 1 (all dropped), below 2^-17 (all kept), and a change between steps
    for _, p in ipairs({0, 1, 1e-6, 0.9}) do
      model[3].p, model[6].p = p, p
      assert_same_step(model, x, g)
    end
  end)

  it("is fused in MC mode, not in eval, and not for a subclass of Dropout", function()
    dn.manual_seed(2)
    local model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Dropout(0.4))
    local x, g = dn.randn(5, 8), dn.randn(5, 12)
    assert.are.equal("linear_relu_dropout", model(x).grad_fn)
    model:mc()
    assert.are.equal("linear_relu_dropout", model(x).grad_fn)
    assert_same_step(model, x, g)
    model:eval()
    local before = dn.get_rng_state()
    assert.are.equal("linear", model(x).grad_fn)
    assert.are.same(before, dn.get_rng_state())
    model:train()
    local MyDropout = nn.Dropout:extend("MyDropout")
    local sub = nn.Sequential(model[1], model[2], MyDropout(0.4))
    assert.are.equal("dropout", sub(x).grad_fn)
    assert_same_step(sub, x, g)
    -- a Linear with DropConnect, or another activation, is not fused with the dropout
    local dc = nn.Sequential(nn.Linear(8, 12, {dropconnect = 0.2}), nn.ReLU(), nn.Dropout(0.4))
    assert.are.equal("dropout", dc(x).grad_fn)
    local tanh = nn.Sequential(nn.Linear(8, 12), nn.Tanh(), nn.Dropout(0.4))
    assert.are.equal("dropout", tanh(x).grad_fn)
  end)

  it("dn.linear_relu_dropout rejects bad arguments, naming itself", function()
    local x, w = dn.randn(2, 3), dn.randn(4, 3)
    H.assert_error(function() dn.linear_relu_dropout(x, w, nil, 1.5) end,
      {"linear_relu_dropout: p must be in [0, 1] (got 1.5)"})
    H.assert_error(function() dn.linear_relu_dropout(x, w, nil, "a") end, {"linear_relu_dropout", "p must be a number"})
    H.assert_error(function() dn.linear_relu_dropout("x", w, nil, 0.5) end, {"linear_relu_dropout"})
    H.assert_error(function() dn.linear_relu_dropout(x, dn.randn(4, 5), nil, 0.5) end,
      {"linear: input [2,3] and weight [4,5] do not match"})
    H.assert_error(function() dn.linear_relu_dropout(x, w, nil, 0.5, nil, "sideways") end,
      {"unknown scaling 'sideways'"})
    H.assert_error(function() dn.linear_relu_dropout(x, w, nil, 0.5, 7) end, {"linear_relu_dropout"})
  end)

  it("uses the Dropout's own generator and names the Dropout layer in its errors", function()
    local model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Dropout(0.4, {generator = dn.Generator(5)}))
    local x = dn.randn(5, 8)
    local before = dn.get_rng_state()
    local y1 = model(x)
    assert.are.same(before, dn.get_rng_state())   -- the global generator did not move
    model[3].generator = dn.Generator(5)
    assert.is_true(same(y1, model(x)))
    model[3].p = 1.5
    H.assert_error(function() model(x) end, {"Sequential: layer 3 (Dropout): ", "p must be"})
    model[3].p = 0.4
    H.assert_error(function() model(dn.randn(5, 9)) end, {"Sequential: layer 1 (Linear): ", "do not match"})
  end)
end)

describe("nn.functional dropout forms", function()
  it("dropout: training false is x itself, or x * (1-p) with scale = \"test\"", function()
    local x = dn.tensor({1, 2, 4})
    assert.are.equal(x, F.dropout(x, 0.5, false))
    H.assert_same(F.dropout(x, 0.5, false, {scale = "test"}), {0.5, 1, 2})
    assert.are.equal(x, F.dropout(x, 0, true))
    local y = F.dropout(dn.ones(100000), 0.5)   -- training by default
    assert_binomial(count_nonzero(y), 100000, 0.5, "kept")
    local a = F.dropout(x, 0.5, true, {generator = dn.Generator(1)})
    assert.is_true(same(a, F.dropout(x, 0.5, true, {generator = dn.Generator(1)})))
    H.assert_error(function() F.dropout(x, 2) end, {"dropout: p must be a number in [0, 1] (got 2)"})
    H.assert_error(function() F.dropout(x, 0.5, "yes") end, {"dropout: training must be true or false"})
    H.assert_error(function() F.dropout(x, 0.5, true, {scale = "x"}) end, {"dropout: scale must be one of"})
  end)

  it("channel, locked, alpha, gaussian and dropconnect forms", function()
    local x4 = dn.ones(4, 6, 2, 2)
    assert.are.equal(x4, F.dropout2d(x4, 0.5, false))
    local y = F.dropout2d(x4, 0.5)
    for _, v in ipairs(H.flatten(y:totable())) do assert.is_true(v == 0 or v == 2) end
    H.assert_error(function() F.dropout1d(x4, 0.5) end,
      {"dropout1d: input must be 3-D [N, C, L] (got shape [4,6,2,2])"})
    H.assert_error(function() F.dropout3d(x4, 0.5) end, {"dropout3d: input must be 5-D [N, C, D, H, W]"})
    local s = dn.ones(5, 2, 3)
    local ls = F.locked_dropout(s, 0.5):totable()
    for t = 2, 5 do assert.are.same(ls[1], ls[t]) end
    H.assert_close(F.locked_dropout(s, 0.5, false, {scale = "test"}), dn.full({5, 2, 3}, 0.5))
    local z = dn.randn(10)
    assert.are.equal(z, F.alpha_dropout(z, 0.5, false))
    assert.are.equal(z, F.gaussian_dropout(z, 0.5, false))
    H.assert_error(function() F.gaussian_dropout(z, 1) end, {"gaussian_dropout: p must be a number in [0, 1) (got 1)"})
    H.assert_error(function() F.alpha_dropout(z, 0.5, true, {scale = "test"}) end,
      {"alpha_dropout: unknown option 'scale'"})
    local x, w, b = dn.randn(3, 5), dn.randn(4, 5), dn.randn(4)
    assert.is_true(same(F.dropconnect_linear(x, w, b, 0.5, false), F.linear(x, w, b)))
    assert.is_true(same(F.dropconnect_linear(x, w, nil, 0, true), F.linear(x, w)))
    local gen = dn.Generator(6)
    local mask = core.dropout_mask({4, 5}, 0.5, gen)
    H.assert_close(F.dropconnect_linear(x, w, b, 0.5, true, {generator = gen}), F.linear(x, w * mask:float() * 2, b))
  end)
end)

describe("dropout gradients by finite differences", function()
  local G = require "gradcheck"
  -- Each op replays the same generator state at every evaluation, so the
  -- mask is fixed and the op is a (piecewise) smooth function of its inputs.
  local function replaying(op)
    local gen = dn.Generator(123)
    local state = gen:get_state()
    return function(inputs)
      gen:set_state(state)
      return op(inputs, gen)
    end
  end
  local cases = {
    {"dropout", {{6, 7}}, function(i, g) return core.dropout(i[1], 0.3, g) end},
    {"dropout test scaling", {{6, 7}}, function(i, g) return core.dropout(i[1], 0.3, g, "test") end},
    {"dropout_channels", {{3, 4, 5}}, function(i, g) return core.dropout_channels(i[1], 0.5, g) end},
    {"dropout_locked", {{4, 3, 5}}, function(i, g) return core.dropout_locked(i[1], 0.5, g) end},
    {"alpha_dropout", {{6, 7}}, function(i, g) return core.alpha_dropout(i[1], 0.2, g) end},
    {"gaussian_dropout", {{6, 7}}, function(i, g) return core.gaussian_dropout(i[1], 0.2, g) end},
    {"dropconnect_linear", {{4, 6}, {5, 6}, {5}},
      function(i, g) return core.dropconnect_linear(i[1], i[2], i[3], 0.4, g) end},
    {"dropconnect_linear one sample, no bias", {{6}, {5, 6}},
      function(i, g) return core.dropconnect_linear(i[1], i[2], nil, 0.4, g) end},
  }
  for _, case in ipairs(cases) do
    for _, layout in ipairs({"contiguous", "strided", "transposed"}) do
      it(case[1] .. " (" .. layout .. ")", function()
        local r = G.rng(7)
        local inputs = {}
        for k, shape in ipairs(case[2]) do inputs[k] = G.random_leaf(r, shape, "any", layout) end
        G.assert(case[1], replaying(case[3]), inputs)
      end)
    end
  end
end)

describe("dropout determinism and memory", function()
  local n = 300000   -- large enough to run in parallel

  -- Output and input gradient of layer on x with the generator state `state`.
  local function run(layer, gen, state, x, g)
    gen:set_state(state)
    local xx = x:detach():requires_grad_()
    local y = layer(xx)
    y:backward(g)
    return y:detach(), xx.grad
  end

  local cases = {
    {"Dropout", function(gen) return nn.Dropout(0.3, {generator = gen}) end, {n}},
    {"Dropout2d", function(gen) return nn.Dropout2d(0.3, {generator = gen}) end, {30, 100, 10, 10}},
    {"LockedDropout", function(gen) return nn.LockedDropout(0.3, {generator = gen}) end, {30, 100, 100}},
    {"AlphaDropout", function(gen) return nn.AlphaDropout(0.3, {generator = gen}) end, {n}},
    {"GaussianDropout", function(gen) return nn.GaussianDropout(0.3, {generator = gen}) end, {n}},
  }
  for _, case in ipairs(cases) do
    it(case[1] .. ": identical outputs and gradients with 1 and 2 threads", function()
      local before = dn.get_num_threads()
      local gen = dn.Generator(99)
      local layer = case[2](gen)
      local x, g = dn.randn(case[3]), dn.randn(case[3])
      local state = gen:get_state()
      dn.set_num_threads(1)
      local y1, g1 = run(layer, gen, state, x, g)
      dn.set_num_threads(2)
      local y2, g2 = run(layer, gen, state, x, g)
      dn.set_num_threads(before)
      assert.is_true(same(y1, y2))
      assert.is_true(same(g1, g2))
      assert.is_false(same(y1, x))
    end)
  end

  it("DropConnect: the same weight mask with 1 and 2 threads", function()
    local before = dn.get_num_threads()
    local gen = dn.Generator(5)
    local lin = nn.Linear(600, 300)
    local dc = nn.DropConnect(lin, 0.5, {generator = gen})
    local x = dn.randn(8, 600)
    local state = gen:get_state()
    local masks = {}
    for threads = 1, 2 do
      dn.set_num_threads(threads)
      gen:set_state(state)
      lin:zero_grad()
      dc(x):sum():backward()
      masks[threads] = lin.weight.grad:ne(0)
    end
    dn.set_num_threads(before)
    assert.is_true(same(masks[1], masks[2]))
    assert_binomial(masks[1]:sum():item(), 600 * 300, 0.5, "kept weights")
  end)

  it("a training dropout layer keeps no mask bytes between forward and backward", function()
    local x = dn.randn(262144):requires_grad_()
    local layers = {
      nn.Dropout(0.5), nn.AlphaDropout(0.5), nn.GaussianDropout(0.5),
    }
    for _, layer in ipairs(layers) do
      local y = layer(x)
      assert.is_not_nil(y.grad_fn)
      assert.are.equal(0, core.dropout_saved_mask_bytes(y))
    end
    assert.are.equal(0, core.dropout_saved_mask_bytes(nn.Dropout2d(0.5)(x:view(64, 64, 8, 8))))
    assert.are.equal(0, core.dropout_saved_mask_bytes(nn.LockedDropout(0.5)(x:view(64, 64, 64))))
    -- the allocator agrees: the forward adds its output and a graph node, well under 1 bit per element
    collectgarbage()
    collectgarbage()
    local before = dn.memory_stats().live_bytes
    local y = nn.Dropout(0.5)(x)
    local held = dn.memory_stats().live_bytes - before - 4 * x:numel()
    assert.is_true(held < x:numel() / 8 / 8, "bytes held beyond the output: " .. held)
    y:sum():backward()
    assert.are.equal(0, core.dropout_saved_mask_bytes(dn.ones(3)))
  end)
end)
