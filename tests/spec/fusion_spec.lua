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

-- A small CNN: BatchNorm2d, ReLU and MaxPool2d(2) after the convolution (one fused step), BatchNorm1d then
-- ReLU in the head (one fused step); opts: the batch norm layers' options.
-- (its 5x5 convolution has 50 taps an output: more than the fused first block takes, so that the other rules
-- run on it)
local function cnn(opts)
  return nn.Sequential(nn.Conv2d(2, 4, 5, {padding = 2}), nn.BatchNorm2d(4, opts), nn.ReLU(), nn.MaxPool2d(2),
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

-- One SGD step of model on x (a 5-sample batch, targets 1 2 3 1 2) through forward(model, x): the output and
-- the gradients of x and of every parameter (false: none), before the step.
local TARGET = dn.tensor({1, 2, 3, 1, 2}, "int32")
local function sgd_step(model, opt, forward, x)
  local xin = x:detach():requires_grad_()
  local y = forward(model, xin)
  opt:zero_grad()
  nn.CrossEntropyLoss()(y, TARGET):backward()
  local grads = {xin.grad}
  for _, p in ipairs(model:parameters()) do grads[#grads + 1] = p.grad or false end
  opt:step()
  return y, grads
end

-- Asserts one step's outputs y, gradients g and the models' parameters hold the same bits fused and plain.
local function assert_same_step(what, y1, g1, y2, g2, fused, plain)
  assert_bits(y1, y2, what .. ": output")
  assert.are.equal(#g2, #g1)
  for i = 1, #g1 do assert_bits(g1[i], g2[i], what .. ": gradient " .. i) end
  local p1, p2 = fused:parameters(), plain:parameters()
  for i = 1, #p1 do assert_bits(p1[i], p2[i], what .. ": parameter " .. i) end
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
    assert.are.same({1, 3, 1, 1, 2, 1}, step_sizes(model))
    assert.equal("batch_norm_relu", nn.Sequential(model[1], model[2], model[3])(x).grad_fn)
    model:eval()
    assert.are.same({1, 3, 1, 1, 2, 1}, step_sizes(model))
    model:mc()
    assert.are.same({1, 3, 1, 1, 2, 1}, step_sizes(model))
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

  it("gives the bits of BatchNorm, ReLU (and MaxPool2d) one by one through SGD steps, eval and MC modes", function()
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
      local function same_step(what, seed)
        what = cfg.name .. ", " .. what
        dn.manual_seed(seed)
        local x = dn.randn(5, 2, 6, 6)
        local y1, g1 = sgd_step(fused, opt_fused, function(m, v) return m(v) end, x)
        local y2, g2 = sgd_step(plain, opt_plain, unfused, x)
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
      assert.are.same({1, 3, 1, 1, 2, 1}, step_sizes(fused))
      if cfg.opts == nil then
        assert.are.equal(4, fused[2].num_batches_tracked:item())
        assert.are.equal(4, fused[7].num_batches_tracked:item())
      end
    end
  end)

  it("fuses BatchNorm2d, ReLU and MaxPool2d only for a 2x2 pool at stride 2, in every mode", function()
    local function block(pool) return nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), pool) end
    local x = dn.randn(4, 3, 6, 8)
    local function grad_fn(model) return model(x:detach():requires_grad_()).grad_fn end
    local fused_pools = {
      {"MaxPool2d(2)", nn.MaxPool2d(2)},
      {"MaxPool2d({2, 2})", nn.MaxPool2d({2, 2})},
      {"stride 2", nn.MaxPool2d(2, {stride = 2})},
      {"every option at its 2x2 value", nn.MaxPool2d({2, 2}, {stride = {2, 2}, padding = {0, 0}, dilation = 1,
        ceil_mode = false})},
    }
    for _, c in ipairs(fused_pools) do
      local model = block(c[2])
      assert.are.same({3}, step_sizes(model), c[1])
      assert.equal("batch_norm_relu_max_pool2d", grad_fn(model), c[1])
      model:eval()
      assert.are.same({3}, step_sizes(model), c[1] .. ", eval")
      assert.equal("batch_norm_relu_max_pool2d", grad_fn(model), c[1] .. ", eval")
      model:mc()
      assert.are.same({3}, step_sizes(model), c[1] .. ", mc")
    end
    -- any other pool: BatchNorm2d and ReLU fused, the pool alone
    local other_pools = {
      {"MaxPool2d(3)", nn.MaxPool2d(3)},
      {"stride 1", nn.MaxPool2d(2, {stride = 1})},
      {"stride {2, 1}", nn.MaxPool2d(2, {stride = {2, 1}})},
      {"padding 1", nn.MaxPool2d(2, {padding = 1})},
      {"dilation 2", nn.MaxPool2d(2, {dilation = 2})},
      {"ceil_mode", nn.MaxPool2d(2, {ceil_mode = true})},
      {"kernel {2, 3}", nn.MaxPool2d({2, 3}, {stride = 2})},
      {"AvgPool2d(2)", nn.AvgPool2d(2)},
      {"a subclass", nn.MaxPool2d:extend("MyPool")(2)},
    }
    for _, c in ipairs(other_pools) do
      local model = block(c[2])
      assert.are.same({2, 1}, step_sizes(model), c[1])
      assert.are_not.equal("batch_norm_relu_max_pool2d", grad_fn(model), c[1])
    end
    local replaced = nn.MaxPool2d(2)
    replaced.forward = function(self, v) return nn.MaxPool2d.forward(self, v) end
    assert.are.same({2, 1}, step_sizes(block(replaced)))
    assert.are.same({2, 1}, step_sizes(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU(), nn.MaxPool2d(2))))
  end)

  it("plans again when a MaxPool2d's sizes change, and checks a size table edited in place", function()
    local model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2))
    local pool = model[3]
    local function changes(what, edit, sizes)
      edit()
      assert.are.same(sizes, step_sizes(model), what)
    end
    changes("ceil_mode on", function() pool.ceil_mode = true end, {2, 1})
    changes("ceil_mode off", function() pool.ceil_mode = false end, {3})
    changes("stride 1", function() pool.stride = 1 end, {2, 1})
    changes("stride {2, 2}", function() pool.stride = {2, 2} end, {3})
    changes("padding 1", function() pool.padding = 1 end, {2, 1})
    changes("padding 0", function() pool.padding = 0 end, {3})
    changes("dilation 2", function() pool.dilation = 2 end, {2, 1})
    changes("dilation 1", function() pool.dilation = 1 end, {3})
    changes("kernel 3", function() pool.kernel_size = 3 end, {2, 1})
    changes("kernel {2, 2}", function() pool.kernel_size = {2, 2} end, {3})
    -- a table edited in place changes no watched field: the plan is kept, the fused step runs the layers
    pool.kernel_size[2] = 3
    assert.are.same({3}, step_sizes(model))
    local x = dn.randn(4, 3, 6, 8)
    local y = model(x:detach():requires_grad_())
    assert.equal("max_pool2d", y.grad_fn)
    assert.are.same({4, 3, 3, 3}, y:shape())
    assert_bits(y, unfused(model, x), "kernel {2, 3} edited in place")
  end)

  it("raises the layers' own errors through the fused BatchNorm2d, ReLU and MaxPool2d", function()
    local function fails(x, message)
      local model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2))
      local ok, err = pcall(model, x)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(message, 1, true), tostring(err))
      -- the layers one by one raise the same message (with the position of the line that called them)
      local plain_ok, plain_err = pcall(unfused, model, x)
      assert.is_false(plain_ok)
      plain_err = tostring(plain_err):gsub("^[^\n:]+:%d+: ", "", 1)
      assert.truthy(tostring(err):find(plain_err, 1, true), tostring(err) .. " vs " .. plain_err)
    end
    fails(dn.randn(2, 3, 6), "Sequential: layer 1 (BatchNorm2d): BatchNorm2d: input must be [N, C, H, W]")
    fails(dn.randn(2, 4, 6, 6), "BatchNorm2d: input has 4 channels, expected num_features = 3")
    fails(dn.randn(2, 3, 1, 6), "max_pool2d: kernel size 2x2 is larger than the padded input")
    fails(dn.randn(2, 3, 6, 1), "max_pool2d: kernel size 2x2 is larger than the padded input")
  end)

  it("gives the bits of BatchNorm2d, ReLU and MaxPool2d one by one: odd planes, SGD steps, every mode", function()
    -- A convolution, the three layers (planes of 7x9: a row and a column in no window), a Linear; the same
    -- state copied, one run through the plan, one layer by layer; the pool 2x2 (the three fused) or 3x3 at
    -- stride 2 (BatchNorm2d and ReLU fused, the pool alone), both 3x4 outputs.
    local configs = {
      {name = "MaxPool2d(2)", pool = {2}, sizes = {1, 3, 1, 1}},
      {name = "MaxPool2d(2), affine false", pool = {2}, opts = {affine = false}, sizes = {1, 3, 1, 1}},
      {name = "MaxPool2d(2), no running statistics", pool = {2}, opts = {track_running_stats = false},
       sizes = {1, 3, 1, 1}},
      {name = "MaxPool2d(3, stride 2)", pool = {3, {stride = 2}}, sizes = {1, 2, 1, 1, 1}},
      -- a Dropout2d after the pool (its own generator in each copy, in the same state): the four fused while
      -- it draws (train, MC), the three and the dropout alone in eval
      {name = "MaxPool2d(2), Dropout2d(0.5)", pool = {2}, drop = {0.5}, sizes = {1, 4, 1, 1}},
      {name = "MaxPool2d(2), Dropout2d(0.3, scale test)", pool = {2}, drop = {0.3, {scale = "test"}},
       sizes = {1, 4, 1, 1}},
      {name = "MaxPool2d(2), no running statistics, Dropout2d(0.5)", pool = {2}, drop = {0.5},
       opts = {track_running_stats = false}, sizes = {1, 4, 1, 1}},
      {name = "MaxPool2d(3, stride 2), Dropout2d(0.5)", pool = {3, {stride = 2}}, drop = {0.5},
       sizes = {1, 2, 1, 1, 1, 1}},
    }
    for _, cfg in ipairs(configs) do
      local function model_of()
        local layers = {nn.Conv2d(2, 4, 5, {padding = 2}), nn.BatchNorm2d(4, cfg.opts), nn.ReLU(),
          nn.MaxPool2d(table.unpack(cfg.pool))}
        if cfg.drop then
          local p, opts = cfg.drop[1], cfg.drop[2] or {}
          layers[#layers + 1] = nn.Dropout2d(p, {scale = opts.scale, generator = dn.Generator(5)})
        end
        layers[#layers + 1] = nn.Flatten()
        layers[#layers + 1] = nn.Linear(4 * 3 * 4, 3)
        return nn.Sequential(table.unpack(layers))
      end
      dn.manual_seed(21)
      local fused, plain = model_of(), model_of()
      plain:load_state_dict(fused:state_dict())
      local function sgd(model) return optim.SGD(model:parameters(), {lr = 0.05, momentum = 0.9}) end
      local opt_fused, opt_plain = sgd(fused), sgd(plain)
      for step, mode in ipairs {"train", "train", "eval", "mc", "train"} do
        local what = string.format("%s, step %d (%s)", cfg.name, step, mode)
        fused[mode](fused)
        plain[mode](plain)
        local x = dn.randn(5, 2, 7, 9)
        local y1, g1 = sgd_step(fused, opt_fused, function(m, v) return m(v) end, x)
        local y2, g2 = sgd_step(plain, opt_plain, unfused, x)
        assert_same_step(what, y1, g1, y2, g2, fused, plain)
        local b1, b2 = fused:named_buffers(), plain:named_buffers()
        assert.are.equal(#b2, #b1)
        for i = 1, #b1 do
          if b1[i][2]:dtype() == "int32" then
            assert.are.equal(b2[i][2]:item(), b1[i][2]:item(), what .. ": " .. b1[i][1])
          else
            assert_bits(b1[i][2], b2[i][2], what .. ": " .. b1[i][1])
          end
        end
      end
      assert.are.same(cfg.sizes, step_sizes(fused), cfg.name)
    end
  end)
  it("fuses BatchNorm2d, ReLU, MaxPool2d and Dropout2d while the dropout draws", function()
    local model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout2d(0.4))
    local x = dn.randn(4, 3, 6, 8)
    local function grad_fn() return model(x:detach():requires_grad_()).grad_fn end
    assert.are.same({4}, step_sizes(model))
    assert.equal("batch_norm_relu_max_pool2d_dropout2d", grad_fn())
    model:eval()   -- the dropout does not draw: the three fused, the dropout alone
    assert.are.same({3, 1}, step_sizes(model))
    assert.equal("batch_norm_relu_max_pool2d", grad_fn())
    model:mc()
    assert.are.same({4}, step_sizes(model))
    model:train()
    model[4].p = 0
    assert.are.same({3, 1}, step_sizes(model))
    model[4].p = 0.2
    assert.are.same({4}, step_sizes(model))
    model[4].p = 1.5   -- not fused: the layer raises its own error
    assert.are.same({3, 1}, step_sizes(model))
    local ok, err = pcall(model, x)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("Dropout2d: p must be", 1, true), tostring(err))
    model[4].p = 0.2
    model[3].stride = 1   -- another pool: BatchNorm2d and ReLU fused, the pool and the dropout alone
    assert.are.same({2, 1, 1}, step_sizes(model))
    model[3].stride = 2
    assert.are.same({4}, step_sizes(model))
    local sub = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout2d:extend("MyDrop")(0.4))
    assert.are.same({3, 1}, step_sizes(sub))
    local other = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.4))
    assert.are.same({3, 1}, step_sizes(other))
    -- a plane smaller than the window: the layers one by one, with their errors
    local tiny_ok, tiny_err = pcall(model, dn.randn(2, 3, 1, 6))
    assert.is_false(tiny_ok)
    assert.truthy(tostring(tiny_err):find("max_pool2d: kernel size 2x2 is larger than the padded input", 1, true))
  end)

  it("checks F.batch_norm_relu_max_pool2d_dropout2d's arguments, naming it", function()
    local F = nn.functional
    local x = dn.randn(2, 3, 4, 4)
    local function fails(message, ...)
      local ok, err = pcall(F.batch_norm_relu_max_pool2d_dropout2d, ...)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(message, 1, true), tostring(err))
    end
    fails("batch_norm_relu_max_pool2d_dropout2d: p must be", x, nil, nil, 1.5, {training = true})
    fails("batch_norm_relu_max_pool2d_dropout2d: p must be", x, nil, nil, "half", {training = true})
    fails("batch_norm_relu_max_pool2d_dropout2d: scale must be one of", x, nil, nil, 0.5,
      {training = true, scale = "tested"})
    fails("batch_norm_relu_max_pool2d_dropout2d: unknown option", x, nil, nil, 0.5, {training = true, rate = 1})
    fails("batch_norm_relu_max_pool2d_dropout2d: generator", x, nil, nil, 0.5, {training = true, generator = 3})
    fails("batch_norm_relu_max_pool2d_dropout2d: eval mode (training false) needs running_mean", x, nil, nil, 0.5)
    fails("batch_norm_relu_max_pool2d_dropout2d: input must be [N, C, H, W] with H >= 2 and W >= 2",
      dn.randn(2, 3, 4), nil, nil, 0.5, {training = true})
    -- p = 0 draws nothing: the pool's output and the generator where it was
    local g = dn.Generator(3)
    local before = g:get_state()
    local y = F.batch_norm_relu_max_pool2d_dropout2d(x, nil, nil, 0, {training = true, generator = g})
    assert_bits(y, F.batch_norm_relu_max_pool2d(x, nil, nil, {training = true}), "p = 0")
    assert.are.same(before, g:get_state())
  end)

  it("runs a Conv2d / Conv1d before a batch norm as F.conv2d_stats / F.conv1d_stats, the batch norm its own step",
    function()
    local stats_rule
    for _, rule in ipairs(fusion.RULES) do
      if rule.next then stats_rule = rule end
    end
    local function first_is_stats(model) return fusion.plan(model)[1].forward == stats_rule.forward end
    -- (75 taps an output: not the fused first block's convolution)
    local m2 = nn.Sequential(nn.Conv2d(3, 4, 5, {padding = 2}), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
    assert.are.same({1, 3}, step_sizes(m2))
    assert.is_true(first_is_stats(m2))
    local m1 = nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4), nn.ReLU())
    assert.are.same({1, 2}, step_sizes(m1))
    assert.is_true(first_is_stats(m1))
    -- only while the batch norm takes the batch's statistics: not in eval or MC mode, unless it keeps none
    m2:eval()
    assert.is_false(first_is_stats(m2))
    m2:mc()
    assert.is_false(first_is_stats(m2))
    m2[2].track_running_stats = false
    assert.is_true(first_is_stats(m2))
    m2[2].track_running_stats = true
    m2:train()
    assert.is_true(first_is_stats(m2))
    -- no batch norm after it, a subclass, a hooked convolution: the plain layer
    assert.is_false(first_is_stats(nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2))))
    assert.is_false(first_is_stats(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d:extend("MyBN")(4))))
    assert.is_false(first_is_stats(nn.Sequential(nn.Conv2d:extend("MyConv")(3, 4, 3), nn.BatchNorm2d(4))))
    local hooked = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    hooked[1]:register_forward_hook(function() end)
    assert.is_false(first_is_stats(hooked))
    -- the last layer: nothing follows
    assert.is_false(first_is_stats(nn.Sequential(nn.Conv2d(3, 4, 3))))
    -- the layer's errors are its own
    local ok, err = pcall(m2, dn.randn(2, 5, 6, 6))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("Conv2d", 1, true), tostring(err))
    -- F.conv2d_stats: F.conv2d's values, node and errors under its own name
    local F = nn.functional
    local x, w = dn.randn(2, 3, 5, 5), dn.randn(4, 3, 3, 3)
    assert_bits(F.conv2d_stats(x, w, nil, {padding = 1}), F.conv2d(x, w, nil, {padding = 1}), "conv2d_stats")
    local x1, w1 = dn.randn(2, 3, 7), dn.randn(4, 3, 3)
    assert_bits(F.conv1d_stats(x1, w1, nil, {padding = 1}), F.conv1d(x1, w1, nil, {padding = 1}), "conv1d_stats")
    local bad_ok, bad = pcall(F.conv2d_stats, x, w, nil, {stride = 0})
    assert.is_false(bad_ok)
    assert.truthy(tostring(bad):find("conv2d_stats", 1, true), tostring(bad))
    local bad3_ok, bad3 = pcall(F.conv2d_stats, dn.randn(3, 5, 5), w)
    assert.is_false(bad3_ok)
    assert.truthy(tostring(bad3):find("conv2d", 1, true), tostring(bad3))
  end)

  it("fuses Conv1d / Conv2d then ReLU, and not a subclass, a replaced forward or a hooked layer", function()
    local function grad_fn(model, x) return model(x:detach():requires_grad_()).grad_fn end
    local conv2 = nn.Sequential(nn.Conv2d(2, 3, 3, {padding = 1}), nn.ReLU())
    assert.are.same({2}, step_sizes(conv2))
    assert.equal("conv2d_relu", grad_fn(conv2, dn.randn(2, 2, 5, 5)))
    local conv1 = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU())
    assert.are.same({2}, step_sizes(conv1))
    assert.equal("conv1d_relu", grad_fn(conv1, dn.randn(2, 2, 7)))
    conv2:eval()
    assert.are.same({2}, step_sizes(conv2))
    assert.equal("conv2d_relu", grad_fn(conv2, dn.randn(2, 2, 5, 5)))
    local sub = nn.Sequential(nn.Conv2d:extend("MyConv")(2, 3, 3), nn.ReLU())
    assert.are.same({1, 1}, step_sizes(sub))
    local replaced = nn.Conv2d(2, 3, 3)
    replaced.forward = function(self, v) return nn.Conv2d.forward(self, v) end
    assert.are.same({1, 1}, step_sizes(nn.Sequential(replaced, nn.ReLU())))
    local hooked = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU())
    hooked[2]:register_forward_hook(function() end)
    assert.are.same({1, 1}, step_sizes(hooked))
    assert.equal("relu", grad_fn(hooked, dn.randn(2, 2, 5, 5)))
    -- the layer's own checks and messages
    H.assert_error(function() conv2(dn.randn(2, 5, 5)) end, "Conv2d: input must be")
    H.assert_error(function() conv2(dn.randn(1, 4, 5, 5)) end, "conv2d_relu: input [1,4,5,5] has 4 channels")
  end)

  it("gives the bits of Conv2d / Conv1d and ReLU one by one: SGD steps, even kernels with padding same", function()
    -- A network without batch norm: each convolution and its ReLU fused (one with groups, one with an even
    -- kernel and padding "same", whose output is narrowed after the fused call), a 1-D one on the rows.
    local function model_of()
      return nn.Sequential(nn.Conv2d(2, 4, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, {2, 3}, {padding = "same", groups = 2}), nn.ReLU(), nn.Flatten(3),
        nn.Conv1d(4, 3, 3, {bias = false}), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 13, 3))
    end
    dn.manual_seed(22)
    local fused, plain = model_of(), model_of()
    plain:load_state_dict(fused:state_dict())
    assert.are.same({2, 1, 2, 1, 2, 1, 1}, step_sizes(fused))
    local opt_fused = optim.SGD(fused:parameters(), {lr = 0.05, momentum = 0.9})
    local opt_plain = optim.SGD(plain:parameters(), {lr = 0.05, momentum = 0.9})
    for step = 1, 4 do
      local what = string.format("step %d", step)
      local x = dn.randn(5, 2, 7, 10)
      local y1, g1 = sgd_step(fused, opt_fused, function(m, v) return m(v) end, x)
      local y2, g2 = sgd_step(plain, opt_plain, unfused, x)
      assert_same_step(what, y1, g1, y2, g2, fused, plain)
    end
  end)

  -- Asserts tensors a (fused) and b (the layers one by one) agree up to rounding: max |a - b| <= 1e-4 (max |ref|
  -- + 1e-3), ref b unless given (a value that is 0 but for rounding is compared at the scale of another).
  local function assert_close(a, b, what, ref)
    assert.are.same(b:shape(), a:shape(), what .. ": shape")
    local va, vb = a:reshape(a:numel()):totable(), b:reshape(b:numel()):totable()
    local vr = ref and ref:reshape(ref:numel()):totable() or vb
    local diff, big = 0, 0
    for i = 1, #va do diff = math.max(diff, math.abs(va[i] - vb[i])) end
    for i = 1, #vr do big = math.max(big, math.abs(vr[i])) end
    assert(diff <= 1e-4 * (big + 1e-3), string.format("%s: differs by %g (largest value %g)", what, diff, big))
  end

  -- A first block on gray images (9 taps an output), its dropout on its own generator, and a head.
  local function first_cnn(drop_p, seed)
    return nn.Sequential(nn.Conv2d(1, 6, 3, {padding = 1}), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
      nn.Dropout2d(drop_p, {generator = dn.Generator(seed)}), nn.Flatten(), nn.Linear(6 * 4 * 5, 3))
  end

  it("fuses a first Conv2d (few taps, images without gradient), BatchNorm2d, ReLU, MaxPool2d and Dropout2d",
    function()
    dn.manual_seed(5)
    local fused, plain = first_cnn(0.3, 9), first_cnn(0.3, 9)
    plain:load_state_dict(fused:state_dict())
    assert.are.same({5, 1, 1}, step_sizes(fused))
    local other = first_cnn(0.3, 9)
    local block = nn.Sequential(other[1], other[2], other[3], other[4], other[5])
    assert.equal("conv2d_batch_norm_relu_max_pool2d_dropout2d", block(dn.rand(2, 1, 8, 10)).grad_fn)
    -- training steps: values, gradients and buffers as the layers one by one give them, up to rounding
    local opt_fused = optim.SGD(fused:parameters(), {lr = 0.05, momentum = 0.9})
    local opt_plain = optim.SGD(plain:parameters(), {lr = 0.05, momentum = 0.9})
    plain[5].generator:set_state(fused[5].generator:get_state())
    for step = 1, 3 do
      local x = dn.rand(5, 1, 8, 10)
      local y1, y2 = fused(x), unfused(plain, x)
      assert_close(y1, y2, "step " .. step .. ": output")
      for _, pair in ipairs {{opt_fused, y1}, {opt_plain, y2}} do
        pair[1]:zero_grad()
        nn.CrossEntropyLoss()(pair[2], TARGET):backward()
      end
      -- (the convolution's bias, 2: the batch norm after it makes its gradient 0 but for rounding)
      local p1, p2 = fused:parameters(), plain:parameters()
      for i = 1, #p1 do
        assert_close(p1[i].grad, p2[i].grad, "step " .. step .. ": gradient " .. i, i == 2 and p2[1].grad or nil)
      end
      opt_fused:step()
      opt_plain:step()
    end
    assert_close(fused[2].running_mean, plain[2].running_mean, "running_mean")
    assert_close(fused[2].running_var, plain[2].running_var, "running_var")
    assert.equal(plain[2].num_batches_tracked:item(), fused[2].num_batches_tracked:item())
    assert.are.same(plain[5].generator:get_state(), fused[5].generator:get_state())
    -- eval: the dropout does not draw, the four fused (the running statistics); MC: the five again
    fused:eval()
    plain:eval()
    assert.are.same({4, 1, 1, 1}, step_sizes(fused))
    local x = dn.rand(4, 1, 8, 10)
    assert_close(fused(x), unfused(plain, x), "eval")
    fused:mc()
    assert.are.same({5, 1, 1}, step_sizes(fused))
  end)

  it("runs the first block's layers as the other rules do where its op does not apply", function()
    -- an input that needs a gradient (a convolution inside a network): the bits of the layers one by one
    dn.manual_seed(6)
    local fused, plain = first_cnn(0.3, 4), first_cnn(0.3, 4)
    plain:load_state_dict(fused:state_dict())
    local opt_fused = optim.SGD(fused:parameters(), {lr = 0.05, momentum = 0.9})
    local opt_plain = optim.SGD(plain:parameters(), {lr = 0.05, momentum = 0.9})
    for _, mode in ipairs {"train", "eval", "mc"} do
      fused[mode](fused)
      plain[mode](plain)
      local x = dn.rand(5, 1, 8, 10)
      local y1, g1 = sgd_step(fused, opt_fused, function(m, v) return m(v) end, x)
      local y2, g2 = sgd_step(plain, opt_plain, unfused, x)
      assert_same_step(mode, y1, g1, y2, g2, fused, plain)
    end
    -- convolutions the op does not take: more than 27 taps, stride, dilation, groups, padding "same"
    local function first(conv)
      return step_sizes(nn.Sequential(conv, nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)))[1]
    end
    assert.equal(4, first(nn.Conv2d(3, 4, 3, {padding = 1})))
    assert.equal(1, first(nn.Conv2d(2, 4, 5, {padding = 2})))
    assert.equal(1, first(nn.Conv2d(1, 4, 3, {stride = 2})))
    assert.equal(1, first(nn.Conv2d(1, 4, 3, {dilation = 2})))
    assert.equal(1, first(nn.Conv2d(2, 4, 3, {groups = 2})))
    assert.equal(1, first(nn.Conv2d(1, 4, 3, {padding = "same"})))
    -- the layers' own errors: images of the wrong channel count, a plane too small for the window
    local model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
    local ok, err = pcall(model, dn.rand(2, 3, 8, 8))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("Conv2d", 1, true), tostring(err))
    ok, err = pcall(model, dn.rand(2, 1, 3, 8))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("max_pool2d", 1, true), tostring(err))
  end)

  it("checks F.conv2d_batch_norm_relu_max_pool2d_dropout2d's arguments, naming it", function()
    local F = nn.functional
    local name = "conv2d_batch_norm_relu_max_pool2d_dropout2d"
    local x, w = dn.rand(2, 1, 6, 6), dn.randn(4, 1, 3, 3)
    local function fails(message, ...)
      local ok, err = pcall(F.conv2d_batch_norm_relu_max_pool2d_dropout2d, ...)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(name .. ": " .. message, 1, true), tostring(err))
    end
    fails("p must be", x, w, nil, nil, nil, 1.5, {training = true})
    fails("unknown option", x, w, nil, nil, nil, 0.5, {training = true, stride = 2})
    fails("padding", x, w, nil, nil, nil, 0.5, {training = true, padding = -1})
    fails("the input must not require grad", x:detach():requires_grad_(), w, nil, nil, nil, 0, {training = true})
    fails("input [2,1,6,6] has 1 channels", x, dn.randn(4, 2, 3, 3), nil, nil, nil, 0, {training = true})
    fails("conv_weight [4,4,3,3] has 36 taps", dn.rand(2, 4, 6, 6), dn.randn(4, 4, 3, 3), nil, nil, nil, 0,
      {training = true})
    fails("eval mode (training false) needs running_mean", x, w, nil, nil, nil, 0)
    -- p = 0 draws nothing: the generator where it was; padding as {h, w}
    local g = dn.Generator(3)
    local before = g:get_state()
    local y = F.conv2d_batch_norm_relu_max_pool2d_dropout2d(x, w, nil, nil, nil, 0,
      {training = true, generator = g, padding = {1, 1}})
    assert.are.same({2, 4, 3, 3}, y:shape())
    assert.are.same(before, g:get_state())
  end)
end)
