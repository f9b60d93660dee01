-- MC dropout from Lua: a model's dropout kept on at inference (mc()), T
-- stochastic passes, their predictive mean and variance. Split from
-- dropout_spec.lua (the family's modules and kernels), whose statistical
-- conventions it keeps: bounds of 6 standard deviations, exact checks against
-- the mask the generator draws.
local dn = require "dropnet"
local nn = require "dropnet.nn"
local H = require "helpers"

local count_nonzero, assert_binomial, same = H.count_nonzero, H.assert_binomial, H.same_values

describe("MC dropout mode", function()
  -- Records the mode it saw, like a future BatchNorm choosing its statistics.
  local Probe = nn.Module:extend("Probe")
  function Probe:forward(x)
    self.seen = {self.mode, self.training}
    return x
  end

  it("model:mc() sets mode \"mc\" everywhere; training is true only in train mode", function()
    local m = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), Probe())
    assert.are.equal("train", m.mode)
    assert.are.equal(m, m:mc())
    for _, mod in ipairs(m:modules()) do
      assert.are.equal("mc", mod.mode)
      assert.is_false(mod.training)
    end
    m(dn.ones(2, 3))
    assert.are.same({"mc", false}, m[3].seen)
    m:eval()
    assert.are.equal("eval", m[2].mode)
    m:train()
    assert.are.equal("train", m[2].mode)
    assert.is_true(m[2].training)
    m[2]:mc()   -- per module
    assert.are.equal("train", m.mode)
    assert.are.equal("mc", m[2].mode)
    H.assert_error(function() m:_set_mode("test") end,
      {"Sequential: mode must be \"train\", \"eval\" or \"mc\" (got \"test\")"})
  end)

  it("keeps dropout stochastic at inference", function()
    local d = nn.Dropout(0.5):mc()
    local x = dn.ones(10000)
    local y1, y2 = d(x), d(x)
    assert.are_not.equal(x, y1)
    assert_binomial(count_nonzero(y1), 10000, 0.5, "kept")
    assert.is_false(same(y1, y2))
    -- every family member
    assert.are_not.equal(x, nn.AlphaDropout(0.5):mc()(x))
    assert.are_not.equal(x, nn.GaussianDropout(0.5):mc()(x))
    local x4 = dn.ones(4, 8, 2, 2)
    assert.are_not.equal(x4, nn.Dropout2d(0.5):mc()(x4))
  end)

  it("masks the backward exactly as the forward (grad of sum(y) is zero where y was dropped)", function()
    local m = 4000
    local d = nn.Sequential(nn.Dropout(0.5)):mc()
    local x = dn.tensor(H.rand_values({m}, 0.1, 2), {requires_grad = true})
    local y = d(x)
    y:sum():backward()
    local xv, yv, gv = x:totable(), y:totable(), x.grad:totable()
    local dropped = 0
    for i = 1, m do
      if yv[i] == 0 then
        dropped = dropped + 1
        assert.are.equal(0, gv[i])
      else
        assert.are.equal(H.f32(xv[i] * 2), yv[i])
        assert.are.equal(2, gv[i])
      end
    end
    assert_binomial(dropped, m, 0.5, "dropped")
  end)

  it("mc_predict's mean matches eval output of a linear model within a statistical bound; variance > 0",
    function()
      local D, N, T, p = 50, 4, 400, 0.5
      dn.manual_seed(2)
      local model = nn.Sequential(nn.Dropout(p), nn.Linear(D, 1))
      local x = dn.tensor(H.rand_values({N, D}))
      local eval_out = model:eval()(x):totable()
      model:train()
      local mean, var = nn.mc_predict(model, x, T, {generator = dn.Generator(9)})
      H.assert_shape(mean, {N, 1})
      H.assert_shape(var, {N, 1})
      assert.is_false(mean.requires_grad)
      local xv, wv = x:totable(), model[2].weight:totable()[1]
      local mv, vv = mean:totable(), var:totable()
      for i = 1, N do
        -- one pass: sum_j w_j x_j m_j / (1-p), variance p/(1-p) sum_j (w_j x_j)^2
        local var_pass = 0
        for j = 1, D do var_pass = var_pass + (wv[j] * xv[i][j]) ^ 2 end
        var_pass = var_pass * p / (1 - p)
        local bound = 6 * math.sqrt(var_pass / T) + 1e-4
        assert.is_true(math.abs(mv[i][1] - eval_out[i][1]) < bound,
          string.format("row %d: mean %g, eval %g, bound %g", i, mv[i][1], eval_out[i][1], bound))
        assert.is_true(vv[i][1] > 0)
        assert.is_true(vv[i][1] > 0.5 * var_pass and vv[i][1] < 1.6 * var_pass,
          string.format("row %d: variance %g, expected %g", i, vv[i][1], var_pass))
      end
      -- the generator option makes the passes repeatable, and is given back
      local mean2, var2 = nn.mc_predict(model, x, T, {generator = dn.Generator(9)})
      assert.is_true(same(mean, mean2) and same(var, var2))
      assert.is_nil(model[1].generator)
    end)

  it("mc_predict restores every module's mode, also after an error", function()
    local model = nn.Sequential(nn.Dropout(0.5), nn.Linear(3, 2), nn.Dropout(0.2))
    model:eval()
    model[3]:train()
    local x = dn.randn(2, 3)
    local mean, var = nn.mc_predict(model, x, 3)
    H.assert_shape(mean, {2, 2})
    H.assert_shape(var, {2, 2})
    assert.are.equal("eval", model.mode)
    assert.are.equal("eval", model[1].mode)
    assert.is_false(model[1].training)
    assert.are.equal("train", model[3].mode)
    assert.is_true(model[3].training)

    local Failing = nn.Module:extend("Failing")
    function Failing:init() self.calls = 0 end
    function Failing:forward(input)
      self.calls = self.calls + 1
      if self.calls == 3 then error("boom on pass 3", 0) end
      return input
    end
    local bad = nn.Sequential(nn.Dropout(0.5), Failing()):train()
    H.assert_error(function() nn.mc_predict(bad, dn.ones(2, 2), 5) end, {"boom on pass 3"})
    assert.are.equal("train", bad.mode)
    assert.is_true(bad[1].training)
    assert.is_true(dn.is_grad_enabled())
    H.assert_error(function() nn.mc_predict(model, x, 0) end, {"mc_predict: T must be an integer >= 1 (got 0)"})
    H.assert_error(function() nn.mc_predict({}, x, 2) end, {"mc_predict: a module expected (got table)"})
  end)

  it("mc_predict with T = 1 gives the pass itself and zero variance", function()
    local model = nn.Sequential(nn.Dropout(0.5, {generator = dn.Generator(4)}))
    local x = dn.randn(100)
    local mean, var = nn.mc_predict(model, x, 1)
    local replay = nn.Dropout(0.5, {generator = dn.Generator(4)})(x)
    assert.is_true(same(mean, replay))
    assert.are.equal(0, var:abs():sum():item())
  end)
end)
