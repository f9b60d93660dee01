-- dropnet.analysis: each statistic against a case with a known answer.
local dn = require "dropnet"
local nn = require "dropnet.nn"
local optim = require "dropnet.optim"
local analysis = require "dropnet.analysis"
local H = require "helpers"

local function sum_loss(out) return out:sum() end
local function mean_loss(out) return out:mean() end

-- Sequential(Dropout(p), Linear(d, 1, no bias)) with the loss out:sum(): the
-- weight's gradient is sum_i m_i * x_i / (1 - p) over the rows, so its
-- variance over masks is p / (1 - p) * ||x||^2 and its mean is the rows' sum.
local function dropout_linear(p, d)
  return nn.Sequential(nn.Dropout(p), nn.Linear(d, 1, {bias = false}))
end

local function sq(t) return (t * t):sum():item() end

describe("analysis.gradient_noise", function()
  it("gives the variance over masks p/(1-p)*||x||^2, the mean gradient and its SNR", function()
    dn.manual_seed(11)
    local p, x = 0.2, dn.rand(4, 64)
    local per, total = analysis.gradient_noise(dropout_linear(p, 64), sum_loss, x, nil, {masks = 1000})
    local w = per["2.weight"]
    local predicted = p / (1 - p) * sq(x)
    -- with 1,000 masks the estimate's relative standard deviation is below 1%: 5% is > 5 sigma
    H.assert_close(w.mask_variance, predicted, 0.05, 0, "mask_variance")
    H.assert_close(w.norm, math.sqrt(sq(x:sum(1))), 0.02, 0, "norm of the mean gradient")
    H.assert_close(w.snr, w.norm ^ 2 / w.mask_variance, 1e-12, 0, "snr")
    -- one parameter: the total is the same
    assert.equal(w.mask_variance, total.mask_variance)
    H.assert_close(total.norm, w.norm, 1e-12, 0, "total norm")
  end)

  it("is an unbiased estimate even with two masks", function()
    -- the mean of 200 two-mask estimates (relative std ~0.9%); dividing by K
    -- instead of K - 1 would give half
    dn.manual_seed(5)
    local p, x = 0.2, dn.rand(1, 256)
    local model, sum, norm2 = dropout_linear(p, 256), 0, 0
    for i = 1, 200 do
      dn.manual_seed(1000 + i)   -- it restores the generator: a new seed, new masks
      local w = analysis.gradient_noise(model, sum_loss, x, nil, {masks = 2})["2.weight"]
      sum, norm2 = sum + w.mask_variance, norm2 + w.norm ^ 2
    end
    H.assert_close(sum / 200, p / (1 - p) * sq(x), 0.1, 0, "mean of two-mask estimates")
    -- E g = x: the squared norm of the mean of two draws alone would be 12.5% too large here
    H.assert_close(norm2 / 200, sq(x), 0.03, 0, "mean of two-mask estimates of ||E g||^2")
  end)

  it("gives exactly 0 without dropout (and an infinite SNR)", function()
    dn.manual_seed(2)
    local per, total = analysis.gradient_noise(dropout_linear(0, 16), sum_loss, dn.rand(3, 16), nil, {masks = 5})
    assert.equal(0, per["2.weight"].mask_variance)
    assert.equal(math.huge, per["2.weight"].snr)
    assert.equal(0, total.mask_variance)
  end)

  it("gives the variance over minibatches, the full-data gradient's cosine and their ratio", function()
    dn.manual_seed(7)
    local d = 8
    local model = dropout_linear(0.5, d)
    local batches, rows = {}, {}
    for b = 1, 4 do
      local bx = dn.rand(b + 1, d)   -- batches of different sizes
      batches[b] = {bx, nil}
      rows[b] = bx
    end
    local x = dn.rand(5, d)
    local per, total = analysis.gradient_noise(model, mean_loss, x, nil, {masks = 3, batches = batches})
    local w = per["2.weight"]
    -- without dropout the gradient of mean(x @ w^T) is the batch's mean row
    local g, mean = {}, dn.zeros(1, d)
    for b = 1, 4 do
      g[b] = rows[b]:mean(1, true)
      mean = mean + g[b] / 4
    end
    local var = 0
    for b = 1, 4 do var = var + sq(g[b] - mean) end
    H.assert_close(w.batch_variance, var / 3, 1e-5, 0, "batch_variance")
    H.assert_close(w.variance_ratio, w.mask_variance / w.batch_variance, 1e-12, 0, "variance_ratio")
    -- the full-data gradient: the mean row of all 14 rows; the three masks'
    -- gradients are the mean rows of x masked: their cosine with it, averaged
    local all = (rows[1]:sum(1, true) + rows[2]:sum(1, true) + rows[3]:sum(1, true) + rows[4]:sum(1, true)) / 14
    assert.is_true(w.cosine > 0 and w.cosine < 1)
    H.assert_close(w.direction_error, 1 - w.cosine, 1e-12, 0, "direction_error")
    assert.equal(w.cosine, total.cosine)
    -- with p = 0 the cosine is exact: cos(mean row of x, mean row of all)
    local per0 = analysis.gradient_noise(dropout_linear(0, d), mean_loss, x, nil, {masks = 2, batches = batches})
    local gx = x:mean(1, true)
    local model0 = per0["2.weight"]
    H.assert_close(model0.cosine, (gx * all):sum():item() / math.sqrt(sq(gx) * sq(all)), 1e-5, 0, "cosine")
  end)

  it("sums the parameters into the total and names them as named_parameters does", function()
    dn.manual_seed(9)
    local model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.3), nn.Linear(5, 3))
    local x, y = dn.randn(10, 6), dn.tensor({1, 2, 3, 1, 2, 3, 1, 2, 3, 1}, "int32")
    local per, total = analysis.gradient_noise(model, nn.functional.cross_entropy, x, y, {masks = 6})
    local names, var, norm2 = {}, 0, 0
    for _, np in ipairs(model:named_parameters()) do
      names[#names + 1] = np[1]
      local r = per[np[1]]
      assert.is_true(r.mask_variance > 0, np[1])
      var, norm2 = var + r.mask_variance, norm2 + r.norm ^ 2
    end
    assert.same({"1.weight", "1.bias", "4.weight", "4.bias"}, names)
    H.assert_close(total.mask_variance, var, 1e-12, 0, "total mask_variance")
    H.assert_close(total.norm, math.sqrt(norm2), 1e-12, 0, "total norm")
    H.assert_close(total.snr, norm2 / var, 1e-12, 0, "total snr")
    assert.is_nil(total.batch_variance)
  end)

  it("puts back the modes, buffers, gradients and the generator", function()
    dn.manual_seed(4)
    local model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 2))
    model:train()
    model[4]:eval()   -- a sub-module's own mode
    local x = dn.randn(8, 4)
    model(x):sum():backward()
    local grad_before = model[1].weight.grad:clone()
    local mean_before = model[2].running_mean:clone()
    local state = dn.get_rng_state()
    local expected_draw = dn.rand(3)
    dn.set_rng_state(state)
    analysis.gradient_noise(model, sum_loss, x, nil, {masks = 3, batches = {{x, nil}, {x, nil}}})
    assert.equal("train", model.mode)
    assert.equal("eval", model[4].mode)
    assert.is_false(model[4].training)
    assert.is_true(model[2].training)
    H.assert_same(model[2].running_mean, mean_before, "running_mean")
    H.assert_same(model[1].weight.grad, grad_before, "grad")
    H.assert_same(dn.rand(3), expected_draw, "the next draw")
  end)

  it("puts the state back when the loss raises, and checks its arguments", function()
    local model = dropout_linear(0.5, 4)
    model:eval()
    local x = dn.rand(2, 4)
    H.assert_error(function() analysis.gradient_noise(model, function() error("boom", 0) end, x) end, {"boom"})
    assert.equal("eval", model.mode)
    H.assert_error(function() analysis.gradient_noise({}, sum_loss, x) end,
      {"analysis.gradient_noise: model must be a module"})
    H.assert_error(function() analysis.gradient_noise(model, 3, x) end, {"loss_fn must be a function"})
    H.assert_error(function() analysis.gradient_noise(model, sum_loss, "x") end, {"x must be a tensor"})
    H.assert_error(function() analysis.gradient_noise(model, sum_loss, x, nil, {masks = 1}) end, {"masks"})
    H.assert_error(function() analysis.gradient_noise(model, sum_loss, x, nil, {mask = 4}) end, {"mask"})
    H.assert_error(function() analysis.gradient_noise(model, function() return 1 end, x) end,
      {"loss_fn must return a one-element tensor"})
    H.assert_error(function() analysis.gradient_noise(model, sum_loss, x, nil, {batches = {{x, nil}}}) end,
      {"at least 2 batches"})
    H.assert_error(function() analysis.gradient_noise(model, sum_loss, x, nil, {batches = {x, x}}) end,
      {"batches[1] must be a pair"})
    H.assert_error(function() analysis.gradient_noise(nn.ReLU(), sum_loss, x) end, {"no parameter"})
  end)
end)

describe("analysis.coadaptation", function()
  it("gives 1 for units that move together and leaves constant units out", function()
    local h = dn.tensor{{1, -1, 3, 2}, {2, -2, 3, 4}, {4, -4, 3, 8}, {7, -7, 3, 14}}   -- u, -u, constant, 2u
    local r = analysis.coadaptation(h)
    H.assert_close(r.mean_abs_correlation, 1, 1e-6, 0, "mean |corr|")
    assert.equal(3, r.units)
    assert.equal(1, r.constant)
  end)

  it("matches the pairwise correlations computed by hand", function()
    -- columns a, b, a + b over four samples: corr(a, b) = 0 by construction
    local h = dn.tensor{{1, 1, 2}, {1, -1, 0}, {-1, 1, 0}, {-1, -1, -2}}
    local r = analysis.coadaptation(h)
    -- |corr(a,b)| = 0, |corr(a,a+b)| = |corr(b,a+b)| = 1/sqrt(2)
    H.assert_close(r.mean_abs_correlation, (0 + 2 / math.sqrt(2)) / 3, 1e-6, 0, "mean |corr|")
    -- more dims are units: [4, 3, 1, 1] is the same
    H.assert_close(analysis.coadaptation(h:view(4, 3, 1, 1)).mean_abs_correlation, r.mean_abs_correlation, 0, 0,
      "4-D")
  end)

  it("checks its input", function()
    H.assert_error(function() analysis.coadaptation(dn.ones(1, 3)) end, {"analysis.coadaptation", "2 samples"})
    H.assert_error(function() analysis.coadaptation(dn.ones(3)) end, {"analysis.coadaptation", "[N, units"})
    H.assert_error(function() analysis.coadaptation(dn.ones(2, 2, "int32")) end, {"float32"})
    assert.is_true(analysis.coadaptation(dn.ones(3, 2)).mean_abs_correlation ~=
      analysis.coadaptation(dn.ones(3, 2)).mean_abs_correlation)   -- NaN: no unit varies
  end)
end)

describe("analysis.activation_stats", function()
  it("counts inactive activations and dead units", function()
    local h = dn.tensor{{0, 2, 0, 1}, {0, 0, 0, 3}, {0, 4, 0, 0}}
    local r = analysis.activation_stats(h)
    H.assert_close(r.mean, 10 / 12, 1e-6, 0, "mean")
    H.assert_close(r.sparsity, 8 / 12, 1e-6, 0, "sparsity")
    H.assert_close(r.dead, 2 / 4, 1e-6, 0, "dead")
    H.assert_close(r.active_per_sample, 4 / 12, 1e-6, 0, "active_per_sample")
    H.assert_close(analysis.activation_stats(h, {threshold = 1.5}).sparsity, 9 / 12, 1e-6, 0, "threshold")
    H.assert_error(function() analysis.activation_stats(h, {threshold = 0 / 0}) end, {"threshold"})
    H.assert_error(function() analysis.activation_stats(h, {limit = 1}) end, {"limit"})
  end)
end)

describe("analysis.gradient_direction", function()
  it("gives the mean pairwise cosine distance of batch gradients and their distance to the full gradient", function()
    -- Linear(d, 1, no bias) and the loss mean(out): the gradient of a batch is its mean row
    dn.manual_seed(3)
    local d = 5
    local model = dropout_linear(0, d)
    local rows = {dn.rand(3, d), dn.rand(2, d), dn.rand(4, d)}
    local batches = {{rows[1], nil}, {rows[2], nil}, {rows[3], nil}}
    local r = analysis.gradient_direction(model, mean_loss, batches)
    local g = {rows[1]:mean(1, true), rows[2]:mean(1, true), rows[3]:mean(1, true)}
    local full = (rows[1]:sum(1, true) + rows[2]:sum(1, true) + rows[3]:sum(1, true)) / 9
    local function cos(a, b) return (a * b):sum():item() / math.sqrt(sq(a) * sq(b)) end
    local variance = ((1 - cos(g[1], g[2])) + (1 - cos(g[1], g[3])) + (1 - cos(g[2], g[3]))) / 3
    local err = ((1 - cos(g[1], full)) + (1 - cos(g[2], full)) + (1 - cos(g[3], full))) / 3
    H.assert_close(r.direction_variance, variance, 1e-4, 1e-7, "direction_variance")
    H.assert_close(r.direction_error, err, 1e-4, 1e-7, "direction_error")
    assert.equal(3, r.batches)
    -- a separate full set: the first batch alone
    local r1 = analysis.gradient_direction(model, mean_loss, batches, {full = {batches[1], batches[1]}})
    H.assert_close(r1.direction_error, ((1 - cos(g[2], g[1])) + (1 - cos(g[3], g[1]))) / 3, 1e-4, 1e-7, "error")
  end)

  it("grows with dropout, restores the state and checks its arguments", function()
    dn.manual_seed(8)
    local x = dn.rand(16, 10)
    local batches = {{x, nil}, {x, nil}, {x, nil}, {x, nil}}
    -- the same batch four times: without dropout the directions agree exactly
    local r0 = analysis.gradient_direction(dropout_linear(0, 10), mean_loss, batches)
    H.assert_close(r0.direction_variance, 0, 0, 1e-6, "no dropout")
    local model = dropout_linear(0.5, 10)
    model:eval()
    local r = analysis.gradient_direction(model, mean_loss, batches)
    assert.is_true(r.direction_variance > 1e-3, tostring(r.direction_variance))
    assert.equal("eval", model.mode)
    H.assert_error(function() analysis.gradient_direction(model, mean_loss, {batches[1]}) end, {"at least 2"})
    H.assert_error(function() analysis.gradient_direction(model, mean_loss, batches, {ful = 1}) end, {"ful"})
    H.assert_error(function() analysis.gradient_direction(3, mean_loss, batches) end, {"model must be a module"})
  end)
end)

describe("analysis.track", function()
  local function tmpdir()
    local d = os.tmpname()
    os.remove(d)
    return d
  end

  -- A step of SGD on model with the loss out:sum(); returns the first layer's weight gradient norm.
  local function sgd_step(model, opt, x)
    local loss = model(x):sum()
    opt:zero_grad()
    loss:backward()
    local g = model[1].weight.grad:norm():item()
    opt:step()
    return g
  end

  it("records each layer's gradients, update ratio and active units on the sampled steps", function()
    dn.manual_seed(6)
    local model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    dn.no_grad(function()
      model[1].weight:copy_(dn.tensor{{1, 0}, {-1, 0}, {0, 0}})
      model[1].bias:zero_()
    end)
    local lr = 0.01
    local opt = optim.SGD(model:parameters(), {lr = lr})
    local tracker = analysis.track(model, {every = 2})
    local x = dn.tensor{{1, 2}, {3, 4}, {-0.5, 1}, {2, 0}}
    local norms, before = {}, {}
    for step = 1, 5 do
      before[step] = model[1].weight:clone()
      norms[step] = sgd_step(model, opt, x)
      tracker:step()
      model:eval()
      model(x)   -- an evaluation between steps is not a step
      model:train()
    end
    local rows = tracker:close()
    local steps = {}
    for _, r in ipairs(rows) do if r.layer == "1" then steps[#steps + 1] = r.step end end
    assert.same({1, 3, 5}, steps)
    for _, r in ipairs(rows) do
      if r.layer == "1" then
        H.assert_close(r.weight_grad_norm, norms[r.step], 1e-6, 0, "weight_grad_norm")
        -- SGD: W moves by lr * grad
        H.assert_close(r.update_ratio, lr * norms[r.step] / before[r.step]:norm():item(), 1e-4, 0, "update_ratio")
        -- units x1, -x1 and 0 (bias 0): active on 3, 1 and 0 of the 4 rows, so 4/12 of the outputs
        -- are active and one unit of three is dead (the first step; later steps move the weights)
        if r.step == 1 then
          H.assert_close(r.active_fraction, 4 / 12, 1e-6, 0, "active_fraction")
          H.assert_close(r.dead_fraction, 1 / 3, 1e-6, 0, "dead_fraction")
        end
      else
        -- the last layer's output gradient is all ones (loss = sum): its norm is sqrt(4 * 2)
        H.assert_close(r.output_grad_norm, math.sqrt(8), 1e-6, 0, "output_grad_norm")
      end
    end
  end)

  it("leaves training as it was, bit for bit, and writes track.csv and track.svg", function()
    local function train(track)
      dn.manual_seed(12)
      local model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))
      local opt = optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
      local tracker = track and analysis.track(model, {every = 2, out = track})
      for _ = 1, 6 do
        local x = dn.randn(16, 6)
        sgd_step(model, opt, x)
        if tracker then tracker:step() end
      end
      if tracker then tracker:close() end
      return model
    end
    local dir = tmpdir()
    local plain, tracked = train(nil), train(dir)
    H.assert_same(tracked[1].weight, plain[1].weight, "weights after tracked training")
    H.assert_same(tracked[4].weight, plain[4].weight, "weights after tracked training")
    local csv = io.open(dir .. "/track.csv"):read("a")
    local header = "step,layer,weight_grad_norm,output_grad_norm,update_ratio,active_fraction,dead_fraction\n"
    assert.equal(header, csv:sub(1, #header))
    local _, lines = csv:gsub("\n", "")
    assert.equal(1 + 3 * 2, lines)   -- steps 1, 3, 5; two layers
    local svg = io.open(dir .. "/track.svg"):read("a")
    assert.truthy(svg:find("<svg", 1, true))
    os.remove(dir .. "/track.csv")
    os.remove(dir .. "/track.svg")
    os.remove(dir)
  end)

  it("sets no hook between samples and checks its arguments", function()
    local model = nn.Sequential(nn.Linear(2, 2))
    local tracker = analysis.track(model, {every = 3})
    assert.is_true(#tracker.handles > 0)
    tracker:step()
    assert.equal(0, #tracker.handles)
    tracker:close()
    H.assert_error(function() analysis.track(3) end, {"analysis.track: model must be a module"})
    H.assert_error(function() analysis.track(model, {every = 0}) end, {"analysis.track", "every"})
    H.assert_error(function() analysis.track(model, {each = 1}) end, {"each"})
    H.assert_error(function() analysis.track(nn.ReLU()) end, {"no layer with a weight"})
    H.assert_error(function() analysis.track(model, {layers = {nn.Linear(2, 2)}}) end,
      {"layers[1] must be a module of the model"})
  end)
end)
