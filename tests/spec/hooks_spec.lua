-- Hooks on tensors (Tensor:register_hook, dn.hook_aliases): what they see and when, replacements, order,
-- removal, errors raised from backward, lifetimes under the collector. Oracles: hand-derived gradients
-- (d(x*x)/dx = 2x, ...).
local dn = require "dropnet"
local H = require "helpers"
local nn = dn.nn

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
