-- Hooks on tensors (Tensor:register_hook, dn.hook_aliases) and on modules (forward pre-hooks, forward
-- hooks, full backward hooks): what they see and when, replacements, order, removal, errors raised
-- from backward, lifetimes under the collector, and a fused Sequential seen exactly as the unfused one.
-- Oracles: hand-derived gradients (d(x*x)/dx = 2x, ...) and plain Lua loops (H.matmul2) for Linear.
local dn = require "dropnet"
local H = require "helpers"
local nn = dn.nn
local fusion = require "dropnet.nn.fusion"

local function full_gc()
  for _ = 1, 4 do collectgarbage() end
end

-- Asserts a and b (tensors) hold the same float32 bits.
local function assert_bits(a, b, what)
  assert(dn.is_tensor(a) and dn.is_tensor(b), what .. ": two tensors expected")
  assert.are.same(a:shape(), b:shape(), what .. ": shape")
  local va, vb = a:reshape(a:numel()):totable(), b:reshape(b:numel()):totable()
  for i = 1, #va do
    if string.pack("<f", va[i]) ~= string.pack("<f", vb[i]) then
      error(string.format("%s: element %d: %.9g vs %.9g", what, i, va[i], vb[i]), 2)
    end
  end
end

local function leaf(values) return dn.tensor(values, {requires_grad = true}) end

-- Counts the keys of a weak table after a full collection.
local function survivors(weak)
  full_gc()
  local n = 0
  for _ in pairs(weak) do n = n + 1 end
  return n
end

describe("Tensor:register_hook", function()
  it("sees a leaf's gradient before .grad and may replace it", function()
    local x = leaf{1, 2, 3}
    local seen, grad_then, grad_mode
    local h = x:register_hook(function(g)
      seen, grad_then, grad_mode = g:clone(), x.grad, dn.is_grad_enabled()
      return g * 10
    end)
    assert.are.equal("dropnet.HookHandle", getmetatable(h).__name)
    ;(x * x):sum():backward()
    H.assert_same(seen, {2, 4, 6})
    assert.is_nil(grad_then)
    assert.is_false(grad_mode)
    H.assert_same(x.grad, {20, 40, 60})
    -- returning nil keeps the gradient
    local y = leaf{1, 2, 3}
    y:register_hook(function() end)
    ;(y * y):sum():backward()
    H.assert_same(y.grad, {2, 4, 6})
  end)

  it("runs several hooks in registration order, each on the last one's result", function()
    local x = leaf{1, 2, 3}
    local log = {}
    x:register_hook(function(g) log[#log + 1] = "a" return g * 2 end)
    x:register_hook(function(g) log[#log + 1] = "b:" .. g[1] end)
    x:register_hook(function(g) log[#log + 1] = "c:" .. g[1] return g + 1 end)
    ;(x * x):sum():backward()
    assert.are.same({"a", "b:4.0", "c:4.0"}, log)
    H.assert_same(x.grad, {5, 9, 13})
  end)

  it("is removed by handle:remove() (twice is fine), by <close>, not by dropping the handle", function()
    local x = leaf{1, 2}
    local calls = {a = 0, b = 0, c = 0}
    local a = x:register_hook(function() calls.a = calls.a + 1 end)
    x:register_hook(function() calls.b = calls.b + 1 end)   -- handle dropped at once
    do
      local c <close> = x:register_hook(function() calls.c = calls.c + 1 end)
      ;(x * x):sum():backward()
      assert.is_truthy(c)
    end
    full_gc()
    ;(x * x):sum():backward()
    a:remove()
    a:remove()
    ;(x * x):sum():backward()
    assert.are.same({a = 2, b = 3, c = 1}, calls)
  end)

  it("sees a result's gradient once, summed over its uses, before the op that made it", function()
    local x = leaf{1, 2, 3}
    local c = x * 2
    local calls, seen = 0, nil
    c:register_hook(function(g)
      calls = calls + 1
      seen = g:clone()
      return g * 3
    end)
    local y = (c * c + c):sum()   -- dy/dc = 2c + 1
    y:backward({retain_graph = true})
    assert.are.equal(1, calls)
    H.assert_same(seen, {5, 9, 13})
    H.assert_same(x.grad, {30, 54, 78})   -- 3 * (2c + 1) * dc/dx (2)
    assert.is_nil(c.grad)
    -- retain_graph: the hooks run again on the next backward
    y:backward()
    assert.are.equal(2, calls)
    H.assert_same(x.grad, {60, 108, 156})
  end)

  it("sees a leaf used twice once, with the sum", function()
    local x = leaf{1, 2, 3}
    local calls, seen = 0, nil
    x:register_hook(function(g) calls = calls + 1 seen = g:clone() end)
    ;(x * x + x * 3):sum():backward()
    assert.are.equal(1, calls)
    H.assert_same(seen, {5, 7, 9})
    H.assert_same(x.grad, {5, 7, 9})
  end)

  it("keeps running when the result it is on was collected", function()
    local x = leaf{1, 2}
    local calls = 0
    local loss
    do
      local c = x * 2
      c:register_hook(function() calls = calls + 1 end)
      loss = (c * c):sum()
    end
    full_gc()
    loss:backward()
    assert.are.equal(1, calls)
  end)

  it("raises a hook's error from backward, as it was, and leaves the graph usable", function()
    local x = leaf{1, 2, 3}
    local c = x * 2
    local h = c:register_hook(function() error("boom in a hook") end)
    local y = (c * c):sum()
    local ok, err = pcall(y.backward, y, {retain_graph = true})
    assert.is_false(ok)
    assert.matches("hooks_spec.lua:%d+: boom in a hook", err)
    assert.is_nil(x.grad)
    h:remove()
    y:backward()
    H.assert_same(x.grad, {8, 16, 24})
    -- an error object that is not a string comes back as the same object
    local z = leaf{1}
    local object = {reason = "table error"}
    z:register_hook(function() error(object) end)
    local ok2, err2 = pcall(function() (z * 2):sum():backward() end)
    assert.is_false(ok2)
    assert.are.equal(object, err2)
    -- a hook that yields cannot (a C call boundary): an error, not a crash
    local w = leaf{1}
    w:register_hook(function() coroutine.yield() end)
    local co = coroutine.wrap(function() return pcall(function() (w * 2):sum():backward() end) end)
    local ok3, err3 = co()
    assert.is_false(ok3)
    assert.matches("yield", tostring(err3))
  end)

  it("checks what a hook returns and where it is registered", function()
    local x = leaf{1, 2, 3}
    local h = x:register_hook(function() return dn.zeros(2) end)
    H.assert_error(function() (x * x):sum():backward() end,
      {"backward: a hook returned a gradient of shape [2] (float32) for a tensor of shape [3]"})
    h:remove()
    h = x:register_hook(function() return "nope" end)
    H.assert_error(function() (x * x):sum():backward() end,
      {"register_hook: a hook must return a tensor or nil (got string)"})
    h:remove()
    h = x:register_hook(function() return dn.zeros(3, "int32") end)
    H.assert_error(function() (x * x):sum():backward() end, {"of shape [3] (int32) for a tensor of shape [3]"})
    h:remove()
    assert.is_nil(x.grad)
    H.assert_error(function() dn.ones(2):register_hook(function() end) end,
      {"register_hook: cannot register a hook on a tensor that does not require grad"})
    H.assert_error(function() x:register_hook(42) end, {"function expected, got number"})
    H.assert_error(function() x.register_hook(42, print) end, {"Tensor expected, got number"})
  end)

  it("lets go of a hook's function with its tensor or graph, and not before", function()
    local weak = setmetatable({}, {__mode = "k"})
    local w = leaf{1, 2}
    do
      local fn = function() end
      weak[fn] = "on a live leaf, handle dropped"
      w:register_hook(fn)
    end
    assert.are.equal(1, survivors(weak))
    local calls = 0
    w:register_hook(function() calls = calls + 1 end)
    full_gc()
    ;(w * w):sum():backward()
    assert.are.equal(1, calls)
    w = nil   -- luacheck: ignore 311
    assert.are.equal(0, survivors(weak))
    -- on a result: released with the graph
    do
      local x = leaf{1, 2}
      local c = x * 2
      local fn = function() end
      weak[fn] = "on a result"
      c:register_hook(fn)
      local y = (c * c):sum()
      y:backward()
    end
    assert.are.equal(0, survivors(weak))
    -- removed: released at once, even while its tensor lives
    local p = leaf{1}
    local fn = function() end
    weak[fn] = "removed"
    local h = p:register_hook(fn)
    fn = nil   -- luacheck: ignore 311
    assert.are.equal(1, survivors(weak))
    h:remove()
    assert.are.equal(0, survivors(weak))
  end)

  it("sees the gradients of a Linear's parameters, fused or not, bit for bit", function()
    local function run(fused)
      dn.manual_seed(5)
      local model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
      local x = dn.randn(5, 4)
      local seen = {}
      model[1].weight:register_hook(function(g) seen.w = g:clone() end)
      model[1].bias:register_hook(function(g) seen.b = g:clone() return g * 0 end)
      local out = fused and model(x) or model[3](model[2](model[1](x)))
      out:sum():backward()
      return seen, model, x
    end
    local fused, model = run(true)
    local unfused = run(false)
    assert_bits(fused.w, unfused.w, "weight gradient")
    assert_bits(fused.b, unfused.b, "bias gradient")
    H.assert_same(model[1].bias.grad, {0, 0, 0})   -- replaced before .grad
    assert_bits(model[1].weight.grad, fused.w, ".grad is what the hook saw")
  end)
end)

describe("dn.hook_aliases", function()
  it("shows the gradients of all its aliases at once and replaces them", function()
    local a, b, k = leaf{1, 2, 3}, leaf{4, 5, 6}, dn.ones(3)
    local calls, seen = 0, nil
    local aliases, handle = dn.hook_aliases({a, b, k}, function(grads)
      calls = calls + 1
      seen = grads
      return {nil, grads[2] * 10}
    end)
    assert.are.equal("backward_hook", aliases[1].grad_fn)
    assert.is_nil(aliases[3].grad_fn)
    assert.are.equal("dropnet.HookHandle", getmetatable(handle).__name)
    ;(aliases[1] * aliases[2] + aliases[1]):sum():backward()
    assert.are.equal(1, calls)
    assert.are.equal(3, seen.n)
    H.assert_same(seen[1], {5, 6, 7})
    H.assert_same(seen[2], {1, 2, 3})
    assert.is_nil(seen[3])
    H.assert_same(a.grad, {5, 6, 7})
    H.assert_same(b.grad, {10, 20, 30})
  end)

  it("checks its arguments and the hook's result", function()
    local a = leaf{1, 2}
    H.assert_error(function() dn.hook_aliases({}, print) end, {"1 to 4096 tensors expected (got 0)"})
    H.assert_error(function() dn.hook_aliases({a, 3}, print) end, {"item 2 must be a tensor (got number)"})
    H.assert_error(function() dn.hook_aliases(a, print) end, {"table expected"})
    H.assert_error(function() dn.hook_aliases({a}) end, {"function expected"})
    local out = dn.hook_aliases({a}, function() return 5 end)
    H.assert_error(function() (out[1] * 2):sum():backward() end,
      {"hook_aliases: a hook must return a table of gradients or nil (got number)"})
    out = dn.hook_aliases({a}, function() return {"x"} end)
    H.assert_error(function() (out[1] * 2):sum():backward() end,
      {"hook_aliases: item 1 of a hook's result must be a tensor or nil (got string)"})
  end)
end)

-- --- modules --------------------------------------------------------------------------------

-- A module with two tensor inputs and a number: a * b * s + a.
local Pair = nn.Module:extend("Pair")
function Pair:forward(a, b, s) return a * b * s + a end

describe("Module hooks", function()
  it("forward pre-hooks see and may replace the arguments", function()
    local lin = nn.Linear(3, 2)
    local x = dn.randn(4, 3)
    local seen
    local h = lin:register_forward_pre_hook(function(m, input)
      seen = {m = m, n = input.n, x = input[1]}
      return input[1] * 2
    end)
    local y = lin(x)
    assert.are.equal(lin, seen.m)
    assert.are.equal(1, seen.n)
    assert.are.equal(x, seen.x)
    H.assert_same(y, lin:forward(x * 2))
    h:remove()
    H.assert_same(lin(x), lin:forward(x))
    -- a table replaces the whole argument list
    local pair = Pair()
    pair:register_forward_pre_hook(function(_, input)
      assert.are.equal(3, input.n)
      return {input[2], input[1], 10}
    end)
    H.assert_same(pair(dn.tensor{1, 2}, dn.tensor{3, 4}, 1), {33, 84})   -- b * a * 10 + b
  end)

  it("forward hooks see the input and output and may replace the output", function()
    local relu = nn.ReLU()
    local x = dn.tensor{-1, 2}
    local seen
    relu:register_forward_hook(function(m, input, output) seen = {m, input[1], output} end)
    local h = relu:register_forward_hook(function(_, _, output) return output + 1 end)
    local y = relu(x)
    assert.are.equal(relu, seen[1])
    assert.are.equal(x, seen[2])
    H.assert_same(seen[3], {0, 2})
    H.assert_same(y, {1, 3})
    h:remove()
    H.assert_same(relu(x), {0, 2})
    H.assert_error(function() relu:register_forward_hook("f") end,
      {"ReLU.register_forward_hook: a function expected (got \"f\")"})
  end)

  it("run in registration order; a removal takes effect at once, even during a call", function()
    local m = nn.Identity()
    local log, hb = {}, nil
    m:register_forward_hook(function() log[#log + 1] = "a" hb:remove() end)
    hb = m:register_forward_hook(function() log[#log + 1] = "b" end)
    m:register_forward_pre_hook(function() log[#log + 1] = "pre" end)
    m(dn.ones(1))
    m(dn.ones(1))
    assert.are.same({"pre", "a", "pre", "a"}, log)
  end)

  it("full backward hooks get grad_input and grad_output of a Linear, as computed by hand", function()
    dn.manual_seed(3)
    local lin = nn.Linear(3, 2)
    local xv = H.rand_values({4, 3}, -1, 1)
    local wv = H.rand_values({4, 2}, -1, 1)   -- dL/dy: loss = sum(y * w)
    local x = dn.tensor(xv, {requires_grad = true})
    local seen
    lin:register_full_backward_hook(function(m, grad_input, grad_output)
      seen = {m = m, gi = grad_input, go = grad_output}
    end)
    ;(lin(x) * dn.tensor(wv)):sum():backward()
    assert.are.equal(lin, seen.m)
    assert.are.equal(1, seen.gi.n)
    assert.are.equal(1, seen.go.n)
    H.assert_close(seen.go[1], H.map(wv, H.f32), 0, 0)
    local expected = H.matmul2(H.map(wv, H.f32), lin.weight:totable())   -- dL/dx = dL/dy @ W
    H.assert_close(seen.gi[1], expected, 1e-6, 1e-6)
    H.assert_same(x.grad, seen.gi[1])
  end)

  it("full backward hooks may replace grad_input, which is what flows on", function()
    local model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
    local x = dn.randn(2, 3):requires_grad_()
    local into_first
    model[1]:register_full_backward_hook(function(_, _, grad_output) into_first = grad_output[1] end)
    model[3]:register_full_backward_hook(function(_, grad_input) return {grad_input[1] * 0 + 1} end)
    model(x):sum():backward()
    -- Tanh's backward got ones: the first layer's output gradient is 1 - tanh(h)^2
    local h = model[1](x)
    H.assert_close(into_first, (1 - h:tanh() * h:tanh()), 1e-6, 1e-6)
    -- with no input requiring grad: grad_input is all nil and may not be replaced
    local lin = nn.Linear(3, 1)
    local seen
    lin:register_full_backward_hook(function(_, gi, go) seen = {gi, go} end)
    lin(dn.randn(2, 3)):sum():backward()
    assert.are.equal(1, seen[1].n)
    assert.is_nil(seen[1][1])
    H.assert_same(seen[2][1], {{1}, {1}})
    local lin2 = nn.Linear(3, 1)
    lin2:register_full_backward_hook(function() return {dn.zeros(2, 3)} end)
    H.assert_error(function() lin2(dn.randn(2, 3)):sum():backward() end,
      {"Linear: a full backward hook returned a gradient for input 1, but no input requires grad"})
  end)

  it("full backward hooks see every input of a module at once", function()
    local pair = Pair()
    local a, b = leaf{1, 2}, leaf{3, 4}
    local calls, seen = 0, nil
    pair:register_full_backward_hook(function(_, gi, go)
      calls = calls + 1
      seen = {gi = gi, go = go}
      return {gi[1] * 10, nil, nil, n = 3}   -- a's gradient replaced, b's kept
    end)
    pair(a, b, 2):sum():backward()
    assert.are.equal(1, calls)
    assert.are.equal(3, seen.gi.n)
    H.assert_same(seen.gi[1], {7, 9})   -- b * s + 1
    H.assert_same(seen.gi[2], {2, 4})   -- a * s
    assert.is_nil(seen.gi[3])
    H.assert_same(seen.go[1], {1, 1})
    H.assert_same(a.grad, {70, 90})
    H.assert_same(b.grad, {2, 4})
    local bad = Pair()
    bad:register_full_backward_hook(function() return {nil, nil, dn.ones(1)} end)
    H.assert_error(function() bad(leaf{1}, leaf{1}, 1):sum():backward() end,
      {"Pair: a full backward hook returned a gradient for input 3, which has none"})
    bad = Pair()
    bad:register_full_backward_hook(function() return {n = 2} end)
    H.assert_error(function() bad(leaf{1}, leaf{1}, 1):sum():backward() end,
      {"Pair: a full backward hook returned 2 gradients for 3 inputs"})
    bad = Pair()
    bad:register_full_backward_hook(function() error("module hook failed") end)
    H.assert_error(function() bad(leaf{1}, leaf{1}, 1):sum():backward() end, {"module hook failed"})
  end)

  it("do nothing under no_grad beyond the forward hooks", function()
    local lin = nn.Linear(2, 2)
    local calls = 0
    lin:register_full_backward_hook(function() calls = calls + 1 end)
    local y = dn.no_grad(function() return lin(dn.ones(1, 2)) end)
    assert.is_false(y.requires_grad)
    assert.are.equal(0, calls)
  end)

  it("let go of their closures with the model, and leave a training loop's memory flat", function()
    local weak = setmetatable({}, {__mode = "k"})
    do
      local model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
      for _, m in ipairs(model:children()) do
        local f = function() end
        weak[f] = true
        m:register_full_backward_hook(f)
        m:register_forward_hook(f)
      end
      model(dn.randn(3, 4)):sum():backward()
    end
    assert.are.equal(0, survivors(weak))
    local model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
    for _, m in ipairs(model:children()) do m:register_full_backward_hook(function() end) end
    for _, p in ipairs(model:parameters()) do p:register_hook(function() end) end
    local x = dn.randn(3, 4)
    local function steps(n)
      for _ = 1, n do
        model:zero_grad()
        model(x):sum():backward()
      end
      full_gc()
      return dn.memory_stats().live_bytes, collectgarbage("count")
    end
    local bytes0, kb0 = steps(20)
    local bytes1, kb1 = steps(200)
    assert.are.equal(bytes0, bytes1)
    assert.is_true(kb1 < kb0 + 64, string.format("Lua heap grew from %.0f to %.0f KB", kb0, kb1))
  end)
end)

-- --- fusion ----------------------------------------------------------------------------------

describe("hooks in a fused Sequential", function()
  -- Linear+ReLU+Dropout fused twice, then a Linear: what fusion_spec's model trains.
  local function mlp()
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 8), nn.ReLU(), nn.Dropout(0.5),
      nn.Linear(8, 3))
  end

  local function step_sizes(model)
    local sizes = {}
    for i, step in ipairs(fusion.plan(model)) do sizes[i] = #step end
    return sizes
  end

  it("leaves a run unfused while one of its layers has a hook, and no longer", function()
    local model = mlp()
    model(dn.randn(2, 6))
    assert.are.same({3, 3, 1}, step_sizes(model))
    local h = model[6]:register_forward_hook(function() end)   -- the second run's Dropout
    assert.are.same({3, 2, 1, 1}, step_sizes(model))            -- Linear+ReLU still fused
    local g = model[2]:register_full_backward_hook(function() end)
    assert.are.same({1, 1, 1, 2, 1, 1}, step_sizes(model))
    h:remove()
    assert.are.same({1, 1, 1, 3, 1}, step_sizes(model))
    g:remove()
    assert.are.same({3, 3, 1}, step_sizes(model))
    model:register_forward_hook(function() end)   -- on the container: its runs stay fused
    assert.are.same({3, 3, 1}, step_sizes(model))
  end)

  it("gives hooks inside fused runs the unfused layers' inputs, outputs and gradients, bit for bit", function()
    dn.manual_seed(11)
    local hooked = mlp()
    local plain = mlp()
    plain:load_state_dict(hooked:state_dict())
    local x = dn.randn(5, 6)
    -- every layer hooked: what each sees
    local seen = {}
    for i, m in ipairs(hooked:children()) do
      seen[i] = {}
      m:register_forward_hook(function(_, input, output) seen[i].input, seen[i].output = input[1], output end)
      m:register_full_backward_hook(function(_, gi, go) seen[i].gi, seen[i].go = gi[1], go[1] end)
    end
    dn.manual_seed(99)
    local xa = x:clone():requires_grad_()
    local out = hooked(xa)
    out:sum():backward()
    -- the reference: the plain model's layers one by one, tensor hooks on what flows between them
    dn.manual_seed(99)
    local xb = x:clone():requires_grad_()
    local ref, acts = {}, {[0] = xb}
    for i, m in ipairs(plain:children()) do
      ref[i] = {}
      acts[i] = m(acts[i - 1])
      acts[i]:register_hook(function(g) ref[i].go = g:clone() end)
    end
    xb:register_hook(function(g) ref[0] = g:clone() end)
    acts[#acts]:sum():backward()
    for i = 1, #acts do
      assert_bits(seen[i].input, acts[i - 1], "layer " .. i .. " input")
      assert_bits(seen[i].output, acts[i], "layer " .. i .. " output")
      assert_bits(seen[i].go, ref[i].go, "layer " .. i .. " grad_output")
      assert_bits(seen[i].gi, i == 1 and ref[0] or ref[i - 1].go, "layer " .. i .. " grad_input")
    end
    -- and the model's results are the fused model's without hooks
    dn.manual_seed(99)
    local xc = x:clone():requires_grad_()
    plain:zero_grad()
    local out_fused = plain(xc)
    assert.are.same({3, 3, 1}, step_sizes(plain))
    out_fused:sum():backward()
    assert_bits(out, out_fused, "output")
    assert_bits(xa.grad, xc.grad, "input gradient")
    local pa, pb = hooked:parameters(), plain:parameters()
    for k = 1, #pa do assert_bits(pa[k].grad, pb[k].grad, "parameter " .. k .. " gradient") end
  end)
end)
