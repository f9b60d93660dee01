-- nn.Sequential runs the plan that dropnet.nn.fusion compiles from its rules:
-- the plan is compiled once, compiled again when anything it was decided from
-- changes, and gives the bits of the unfused chain (values, gradients,
-- generator offsets, parameters after optimizer steps).
local dn = require "dropnet"
local H = require "helpers"
local nn, optim = dn.nn, dn.optim
local fusion = require "dropnet.nn.fusion"

-- The layers one by one: nothing fused.
local function unfused(model, x)
  for _, m in ipairs(model) do x = m(x) end
  return x
end

-- The sizes of the plan's steps: {3, 3, 1} is two fused triples and one layer.
local function step_sizes(model)
  local sizes = {}
  for i, step in ipairs(fusion.plan(model)) do sizes[i] = #step end
  return sizes
end

-- What the main job trains (input dropout, two hidden blocks), small.
local function mlp(g)
  return nn.Sequential(nn.Dropout(0.1, {generator = g}), nn.Linear(12, 16), nn.ReLU(),
    nn.Dropout(0.3, {generator = g}), nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.5, {scale = "test"}),
    nn.Linear(16, 5))
end

-- A small CNN: BatchNorm2d then ReLU after the convolution, BatchNorm1d then ReLU in the head (each pair
-- one fused step); opts: the batch norm layers' options.
local function cnn(opts)
  return nn.Sequential(nn.Conv2d(2, 4, 3, {padding = 1}), nn.BatchNorm2d(4, opts), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(4 * 3 * 3, 6), nn.BatchNorm1d(6, opts), nn.ReLU(), nn.Linear(6, 3))
end

-- Asserts a and b (tensors) hold the same float32 bits: -0 is not 0, NaN is NaN.
local function assert_bits(a, b, what)
  assert.are.same(a:shape(), b:shape(), what .. ": shape")
  local va, vb = a:reshape(a:numel()):totable(), b:reshape(b:numel()):totable()
  for i = 1, #va do
    if string.pack("<f", va[i]) ~= string.pack("<f", vb[i]) then
      error(string.format("%s: element %d: %.9g (fused) vs %.9g (unfused)", what, i, va[i], vb[i]), 2)
    end
  end
end

describe("fusion plan", function()
  it("is compiled on the first forward and reused while nothing changes", function()
    local model = mlp()
    local x = dn.randn(4, 12)
    model(x)
    local plan = fusion.plan(model)
    model(x)
    model(x)
    assert.are.equal(plan, fusion.plan(model))
    assert.are.same({1, 3, 3, 1}, step_sizes(model))
    model:eval()
    assert.are.same({1, 2, 1, 2, 1, 1}, step_sizes(model))
    model:mc()
    assert.are.same({1, 3, 3, 1}, step_sizes(model))
  end)

  it("is compiled again when layers, modes, p or a rule's fields change", function()
    local model = mlp()
    local function changes(what, edit, sizes)
      local before = fusion.plan(model)
      edit()
      local after = fusion.plan(model)
      assert.are_not.equal(before, after, what .. ": the plan was kept")
      assert.are.same(sizes, step_sizes(model), what)
    end
    changes("p = 0", function() model[4].p = 0 end, {1, 2, 1, 3, 1})
    changes("p > 0 again", function() model[4].p = 0.2 end, {1, 3, 3, 1})
    changes("training set directly", function() model[7].training = false end, {1, 3, 2, 1, 1})
    changes("train()", function() model:train() end, {1, 3, 3, 1})
    changes("Linear.activation", function() model[2].activation = "tanh" end, {1, 1, 1, 1, 3, 1})
    changes("activation removed", function() model[2].activation = nil end, {1, 3, 3, 1})
    changes("Linear.dropconnect", function() model[5].dropconnect = 0.1 end, {1, 3, 2, 1, 1})
    changes("dropconnect removed", function() model[5].dropconnect = nil end, {1, 3, 3, 1})
    changes("a layer swapped", function() model[3] = nn.Tanh() end, {1, 2, 1, 3, 1})
    changes("a layer swapped back", function() model[3] = nn.ReLU() end, {1, 3, 3, 1})
    changes("a layer added", function() model:add(nn.ReLU()) end, {1, 3, 3, 2})
    changes("forward replaced on an instance", function()
      model[6].forward = function(_, v) return v:relu() end
    end, {1, 3, 1, 1, 1, 2})
    changes("forward restored", function() model[6].forward = nil end, {1, 3, 3, 2})
    -- a rule added to the table is used by containers compiled before
    local rules = fusion.RULES
    changes("a rule added", function()
      rules[#rules + 1] = {pattern = {nn.Linear, nn.ReLU}, watch = {{}, {}},
        applies = function() return false end, forward = function() end}
    end, {1, 3, 3, 2})
    rules[#rules] = nil
  end)

  it("keeps the plan when weights, generators or requires_grad change (read at every call)", function()
    local model = mlp()
    model(dn.randn(2, 12))
    local plan = fusion.plan(model)
    model[2].weight = nn.Parameter(dn.randn(16, 12))
    model[4].generator = dn.Generator(3)
    model:requires_grad_(false)
    assert.are.equal(plan, fusion.plan(model))
  end)

  it("gives the bits of the unfused chain through training, mode and p changes, and a swapped layer", function()
    -- Two copies with the same weights and generators, one run through the
    -- plan, one layer by layer; after each change both are edited alike.
    dn.manual_seed(5)
    local fused, plain = mlp(dn.Generator(7)), mlp(dn.Generator(7))
    plain:load_state_dict(fused:state_dict())
    local function sgd(model) return optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9}) end
    local opt_fused, opt_plain = sgd(fused), sgd(plain)
    local x, target = dn.randn(8, 12), dn.tensor({1, 2, 3, 4, 5, 1, 2, 3}, "int32")
    local loss_fn = nn.CrossEntropyLoss()
    local function run(model, opt, forward, seed)
      dn.manual_seed(seed)
      local xin = x:detach():requires_grad_()
      local y = forward(model, xin)
      opt:zero_grad()
      loss_fn(y, target):backward()
      local grads = {xin.grad}
      for _, p in ipairs(model:parameters()) do grads[#grads + 1] = p.grad or false end
      opt:step()
      return y, grads, dn.get_rng_state(), model[1].generator:get_state()
    end
    local function same_step(what, seed)
      local y1, g1, s1, l1 = run(fused, opt_fused, function(m, v) return m(v) end, seed)
      local y2, g2, s2, l2 = run(plain, opt_plain, unfused, seed)
      H.assert_same(y1, y2, what .. ": output")
      assert.are.equal(#g2, #g1)
      for i = 1, #g1 do
        if g2[i] then H.assert_same(g1[i], g2[i], what .. ": gradient " .. i) else assert.is_false(g1[i]) end
      end
      assert.are.same(s2, s1, what .. ": default generator")
      assert.are.same(l2, l1, what .. ": the layers' generator")
      for i, p in ipairs(fused:parameters()) do H.assert_same(p, plain:parameters()[i], what .. ": parameter " .. i) end
    end
    local function both(edit) edit(fused) edit(plain) end

    for s = 1, 3 do same_step("train", s) end
    both(function(m) m[4].p = 0.6 end)
    same_step("p changed", 4)
    both(function(m) m[7].p = 0 end)
    same_step("p = 0", 5)
    both(function(m) m[7].p = 1 end)
    same_step("p = 1", 6)
    both(function(m) m[7].p = 0.25 end)
    both(function(m) m:eval() end)
    same_step("eval", 7)
    both(function(m) m:mc() end)
    same_step("mc", 8)
    both(function(m) m:train() end)
    both(function(m) m[6] = nn.Sigmoid() end)
    same_step("ReLU swapped for Sigmoid", 9)
    both(function(m) m[6] = nn.ReLU() end)
    both(function(m) m[2]:requires_grad_(false) end)
    same_step("first Linear frozen", 10)
    both(function(m) m[5].dropconnect = 0.3 end)
    same_step("DropConnect on", 11)
    both(function(m) m[5].dropconnect = nil end)
    same_step("DropConnect off", 12)
    assert.are.same({1, 3, 3, 1}, step_sizes(fused))
  end)

  it("fuses BatchNorm1d / BatchNorm2d and ReLU in every mode, and not a subclass or a replaced forward", function()
    local model = cnn()
    local x = dn.randn(3, 2, 6, 6)
    model(x)
    assert.are.same({1, 2, 1, 1, 1, 2, 1}, step_sizes(model))
    assert.equal("batch_norm_relu", nn.Sequential(model[1], model[2], model[3])(x).grad_fn)
    model:eval()
    assert.are.same({1, 2, 1, 1, 1, 2, 1}, step_sizes(model))
    model:mc()
    assert.are.same({1, 2, 1, 1, 1, 2, 1}, step_sizes(model))
    local MyBatchNorm = nn.BatchNorm2d:extend("MyBatchNorm")
    assert.are.same({1, 1}, step_sizes(nn.Sequential(MyBatchNorm(4), nn.ReLU())))
    assert.are.same({1, 1}, step_sizes(nn.Sequential(nn.BatchNorm2d(4), nn.LeakyReLU())))
    model[2].forward = function(self, v) return nn.BatchNorm2d.forward(self, v) end
    assert.are.same({1, 1, 1, 1, 1, 1, 2, 1}, step_sizes(model))
    -- errors come from the layer's own checks, through the fused step
    local ok, err = pcall(cnn(), dn.randn(3, 2, 6))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("layer 1 (Conv2d)", 1, true), tostring(err))
    ok, err = pcall(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()), dn.randn(4, 5))
    assert.is_false(ok)
    assert.truthy(tostring(err):find(
      "Sequential: layer 1 (BatchNorm1d): BatchNorm1d: input has 5 channels, expected num_features = 3", 1, true),
      tostring(err))
    ok, err = pcall(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()), dn.randn(1, 3))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("batch_norm_relu: expected more than 1 value per channel when training", 1,
      true), tostring(err))
  end)

  it("gives the bits of BatchNorm then ReLU one by one through SGD steps, eval and MC modes", function()
    -- For each batch norm configuration two copies with the same state, one run through the plan, one layer
    -- by layer: the output, every gradient, the parameters after the step and the buffers (running statistics,
    -- num_batches_tracked) have the same bits.
    local configs = {
      {name = "default"},
      {name = "momentum 0.3, eps 1e-3", opts = {momentum = 0.3, eps = 1e-3}},
      {name = "affine false", opts = {affine = false}},
      {name = "track_running_stats false", opts = {track_running_stats = false}},
    }
    for _, cfg in ipairs(configs) do
      dn.manual_seed(11)
      local fused, plain = cnn(cfg.opts), cnn(cfg.opts)
      plain:load_state_dict(fused:state_dict())
      local function sgd(model) return optim.SGD(model:parameters(), {lr = 0.05, momentum = 0.9}) end
      local opt_fused, opt_plain = sgd(fused), sgd(plain)
      local loss_fn = nn.CrossEntropyLoss()
      local target = dn.tensor({1, 2, 3, 1, 2}, "int32")
      local function run(model, opt, forward, x)
        local xin = x:detach():requires_grad_()
        local y = forward(model, xin)
        opt:zero_grad()
        loss_fn(y, target):backward()
        local grads = {xin.grad}
        for _, p in ipairs(model:parameters()) do grads[#grads + 1] = p.grad or false end
        opt:step()
        return y, grads
      end
      local function same_step(what, seed)
        what = cfg.name .. ", " .. what
        dn.manual_seed(seed)
        local x = dn.randn(5, 2, 6, 6)
        local y1, g1 = run(fused, opt_fused, function(m, v) return m(v) end, x)
        local y2, g2 = run(plain, opt_plain, unfused, x)
        assert_bits(y1, y2, what .. ": output")
        assert.are.equal(#g2, #g1)
        for i = 1, #g1 do
          if g2[i] then assert_bits(g1[i], g2[i], what .. ": gradient " .. i) else assert.is_false(g1[i]) end
        end
        local p1, p2 = fused:parameters(), plain:parameters()
        for i = 1, #p1 do assert_bits(p1[i], p2[i], what .. ": parameter " .. i) end
        local b1, b2 = fused:named_buffers(), plain:named_buffers()
        assert.are.equal(#b2, #b1)
        for i = 1, #b1 do
          assert.are.equal(b2[i][1], b1[i][1])
          if b1[i][2]:dtype() == "int32" then
            assert.are.equal(b2[i][2]:item(), b1[i][2]:item(), what .. ": " .. b1[i][1])
          else
            assert_bits(b1[i][2], b2[i][2], what .. ": " .. b1[i][1])
          end
        end
      end
      for s = 1, 3 do same_step("train " .. s, s) end
      fused:eval()
      plain:eval()
      same_step("eval", 4)
      fused:mc()
      plain:mc()
      same_step("mc", 5)
      fused:train()
      plain:train()
      same_step("train again", 6)
      assert.are.same({1, 2, 1, 1, 1, 2, 1}, step_sizes(fused))
      if cfg.opts == nil then
        assert.are.equal(4, fused[2].num_batches_tracked:item())
        assert.are.equal(4, fused[7].num_batches_tracked:item())
      end
    end
  end)
end)
