-- The Tensor userdata: constructors, shapes, views, indexing, conversion, printing.
local dn = require "dropnet"
local H = require "helpers"

describe("the README example", function()
  it("gives the documented values", function()
    dn.manual_seed(7)
    local a = dn.tensor{{1, 2, 3}, {4, 5, 6}}
    H.assert_shape(a, {2, 3}, "float32")
    local b = dn.randn(3, 4)
    local c = a:matmul(b)
    assert.are.same({2, 4}, c:shape())
    assert.are.equal(2, c:shape()[1])
    assert.are.equal(4, c:size(2))
    assert.are.equal(2, c:dim())
    assert.are.equal(8, c:numel())
    assert.are.equal(2, #c)
    H.assert_close(c, H.matmul2(a:totable(), b:totable()), 1e-5, 1e-5)
    H.assert_close(dn.matmul(a, b), c)

    assert.are.equal(6.0, a[2][3])
    assert.are.equal("float", math.type(a[2][3]))
    assert.are.equal("6.0", tostring(a[2][3]))
    assert.are.equal(15.0, a[2]:sum():item())
    assert.are.equal("15.0", tostring(a[2]:sum():item()))

    H.assert_same(a:t():contiguous():view(6), {1, 4, 2, 5, 3, 6})
    H.assert_close((a + 1) * 2 - a / 3, {{4 - 1 / 3, 6 - 2 / 3, 8 - 1}, {10 - 4 / 3, 12 - 5 / 3, 14 - 2}})
    H.assert_close(a:exp():log(), a:totable(), 1e-5, 1e-5)
    H.assert_same(a:sum(2), {6, 15})
    H.assert_close(a:mean(), 3.5)
    local values, indices = a:max(2)
    H.assert_same(values, {3, 6})
    H.assert_same(indices, {3, 3})
    assert.are.equal("int32", indices:dtype())
    H.assert_same(a:argmax(2), {3, 3})
    assert.are.equal("int32", a:argmax(2):dtype())

    local i = dn.tensor({1, 2, 3}, "int32")
    assert.are.equal("int32", i:dtype())
    assert.truthy(tostring(i):find("int32", 1, true))
  end)

  it("prints without error", function()
    local a = dn.tensor{{1, 2, 3}, {4, 5, 6}}
    for _, x in ipairs{a, a:t(), a:sum(), a:max(2), dn.zeros(0), dn.zeros(2, 0, 3), dn.randn(40, 40)} do
      assert.are.equal("string", type(tostring(x)))
    end
  end)
end)

describe("module", function()
  it("reports its version", function()
    assert.are.equal("0.1.0", dn.version)
  end)

  it("sets no global when required", function()
    -- a fresh interpreter: this busted process has already loaded everything
    local code = [[
      local before = {}
      for k in pairs(_G) do before[k] = true end
      require "dropnet"
      local new = {}
      for k in pairs(_G) do if not before[k] then new[#new + 1] = tostring(k) end end
      io.write("new globals: [", table.concat(new, ","), "]")
    ]]
    local p = assert(io.popen("lua5.4 -e '" .. code:gsub("'", "'\\''") .. "' 2>&1"))
    local out = p:read("a")
    p:close()
    assert.are.equal("new globals: []", out)
  end)

  it("recognizes tensors", function()
    assert.is_true(dn.is_tensor(dn.zeros(1)))
    assert.is_false(dn.is_tensor({}))
    assert.is_false(dn.is_tensor(1))
  end)

  it("sets and gets the thread count", function()
    local old = dn.get_num_threads()
    dn.set_num_threads(1)
    assert.are.equal(1, dn.get_num_threads())
    dn.set_num_threads(2)
    assert.are.equal(2, dn.get_num_threads())
    dn.set_num_threads(old)
  end)

  it("reports memory statistics that follow allocations", function()
    local s = dn.memory_stats()
    for _, k in ipairs{"sys_allocs", "sys_frees", "cache_hits", "live_bytes", "cached_bytes", "peak_live_bytes"} do
      assert.are.equal("integer", math.type(s[k]), k)
      assert.is_true(s[k] >= 0, k)
    end
    local big = dn.zeros(1024, 1024)
    local after = dn.memory_stats()
    assert.is_true(after.live_bytes >= s.live_bytes + 4 * 1024 * 1024)
    assert.is_true(after.peak_live_bytes >= after.live_bytes)
    big:close()
    assert.is_true(dn.memory_stats().live_bytes <= after.live_bytes - 4 * 1024 * 1024)
  end)

  it("lets the collector keep up with C memory in a loop", function()
    -- a tensor userdata is a few bytes to Lua: without the module's accounting
    -- these 100 dropped 4 MB tensors would all stay alive until a full collection
    collectgarbage()
    local start = dn.memory_stats().live_bytes
    local peak = start
    for _ = 1, 100 do
      local t = dn.zeros(1024, 1024)   -- luacheck: ignore 231 (alive while live_bytes is read)
      peak = math.max(peak, dn.memory_stats().live_bytes)
      t = nil
    end
    assert.is_true(peak - start < 256 * 1024 * 1024, "peak growth " .. (peak - start))
  end)

  it("frees a training step's tensors by the end of the next step (generational mode, young collections)", function()
    -- loading dropnet set the generational mode (collectgarbage returns the mode it leaves)
    assert.are.equal("generational", collectgarbage("generational"))
    local nn = dn.nn
    local model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    local x, y = dn.rand(64, 256), dn.ones(64, "int32")
    local function step()
      local loss = nn.functional.cross_entropy(model(x), y)
      loss:backward()
      for _, p in ipairs(model:parameters()) do p.grad = nil end
    end
    step()
    collectgarbage()
    local start = dn.memory_stats().live_bytes
    local peak = start
    -- each step leaves ~130 KB of dead tensors that only the collector frees (the activations' userdata);
    -- left to the budget of full collections (16 MB), 60 steps piled up 8 MB of them
    for _ = 1, 60 do
      step()
      peak = math.max(peak, dn.memory_stats().live_bytes)
    end
    assert.is_true(peak - start < 4 * 1024 * 1024, "peak growth " .. (peak - start))
    -- a stopped collector stays stopped: backward collects nothing then
    collectgarbage("stop")
    local before = dn.memory_stats().live_bytes
    for _ = 1, 20 do step() end
    assert.is_false(collectgarbage("isrunning"))
    assert.is_true(dn.memory_stats().live_bytes - before > 1024 * 1024)
    collectgarbage("restart")
    -- the default mode back: the accounting still collects (the loop test above), and steps still work
    assert.are.equal("generational", collectgarbage("incremental"))
    step()
    collectgarbage("generational")
  end)

  it("empty_cache returns cached blocks to the system", function()
    dn.zeros(1000):close()
    assert.is_true(dn.memory_stats().cached_bytes > 0)
    dn.empty_cache()
    assert.are.equal(0, dn.memory_stats().cached_bytes)
  end)
end)

describe("constructors", function()
  it("tensor from nested tables", function()
    local t = dn.tensor{{{1, 2}, {3, 4}, {5, 6}}}
    H.assert_shape(t, {1, 3, 2}, "float32")
    H.assert_same(t, {{{1, 2}, {3, 4}, {5, 6}}})
    H.assert_shape(dn.tensor{1.5, -2}, {2}, "float32")
    H.assert_shape(dn.tensor({}), {0}, "float32")
    H.assert_shape(dn.tensor({{}}), {1, 0}, "float32")
    H.assert_shape(dn.tensor({1, 2}, {dtype = "int32"}), {2}, "int32")
    H.assert_shape(dn.tensor({1, 2}, "int"), {2}, "int32")
    H.assert_shape(dn.tensor({1, 2}, "float"), {2}, "float32")
  end)

  it("tensor from a number is 0-dim", function()
    local t = dn.tensor(3.5)
    H.assert_shape(t, {}, "float32")
    assert.are.equal(3.5, t:item())
    assert.are.equal(7, dn.tensor(7, "int32"):item())
  end)

  it("tensor from a tensor copies (and converts)", function()
    local a = dn.tensor{1, 2, 3}
    local b = dn.tensor(a)
    b[1] = 10
    H.assert_same(a, {1, 2, 3})
    local c = dn.tensor(a, "int32")
    assert.are.equal("int32", c:dtype())
    H.assert_same(c, {1, 2, 3})
  end)

  it("stores float32 values", function()
    local t = dn.tensor{0.1}
    assert.are.equal(H.f32(0.1), t[1])
    assert.are_not.equal(0.1, t[1])
  end)

  it("zeros, ones, empty and full", function()
    H.assert_same(dn.zeros(2, 3), {{0, 0, 0}, {0, 0, 0}})
    H.assert_same(dn.zeros({2, 3}), {{0, 0, 0}, {0, 0, 0}})
    H.assert_shape(dn.zeros(2, 3, "int32"), {2, 3}, "int32")
    H.assert_shape(dn.zeros({2, 3}, "int32"), {2, 3}, "int32")
    H.assert_shape(dn.zeros(), {}, "float32")
    H.assert_shape(dn.zeros(0), {0})
    H.assert_same(dn.ones(2, 2), {{1, 1}, {1, 1}})
    H.assert_same(dn.ones({2, 3}), {{1, 1, 1}, {1, 1, 1}})
    H.assert_shape(dn.ones(4, "int32"), {4}, "int32")
    H.assert_same(dn.empty(2, 2), {{0, 0}, {0, 0}})
    H.assert_same(dn.full({2, 3}, 7), {{7, 7, 7}, {7, 7, 7}})
    H.assert_shape(dn.full({2, 3}, 7, "int32"), {2, 3}, "int32")
    H.assert_same(dn.full({2}, -2.5), {-2.5, -2.5})
  end)

  it("arange", function()
    H.assert_same(dn.arange(0, 10), {0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
    H.assert_same(dn.arange(4), {0, 1, 2, 3})
    H.assert_same(dn.arange(1, 2, 0.25), {1, 1.25, 1.5, 1.75})
    H.assert_same(dn.arange(5, 0, -2), {5, 3, 1})
    H.assert_shape(dn.arange(3, 3), {0})
    local i = dn.arange(0, 4, "int32")
    H.assert_shape(i, {4}, "int32")
    H.assert_same(i, {0, 1, 2, 3})
    assert.are.equal("int32", dn.arange(3, "int32"):dtype())
  end)

  it("eye", function()
    H.assert_same(dn.eye(3), {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}})
    H.assert_same(dn.eye(2, 3), {{1, 0, 0}, {0, 1, 0}})
    H.assert_shape(dn.eye(3, "int32"), {3, 3}, "int32")
    H.assert_shape(dn.eye(2, 4, "int32"), {2, 4}, "int32")
    H.assert_shape(dn.eye(0), {0, 0})
  end)
end)

describe("shape queries", function()
  local t = dn.zeros(2, 3, 4)
  it("shape, size, dim, numel, #, stride", function()
    assert.are.same({2, 3, 4}, t:shape())
    assert.are.same({2, 3, 4}, t:size())
    assert.are.equal(3, t:size(2))
    assert.are.equal(4, t:size(-1))
    assert.are.equal(2, t:size(-3))
    assert.are.equal(3, t:dim())
    assert.are.equal(24, t:numel())
    assert.are.equal(2, #t)
    assert.are.same({12, 4, 1}, t:stride())
    assert.are.equal(4, t:stride(2))
    assert.are.same({1, 12, 4}, t:permute(3, 1, 2):stride())
  end)
end)

describe("views", function()
  local function base() return dn.tensor{{1, 2, 3}, {4, 5, 6}} end

  it("view and reshape of a contiguous tensor share storage", function()
    local a = base()
    local v = a:view(6)
    H.assert_same(v, {1, 2, 3, 4, 5, 6})
    v[1] = 100
    assert.are.equal(100, a[1][1])
    local r = a:reshape(3, 2)
    H.assert_same(r, {{100, 2}, {3, 4}, {5, 6}})
    r[3][2] = -6
    assert.are.equal(-6, a[2][3])
    H.assert_shape(a:view(-1), {6})
    H.assert_shape(a:view(3, -1), {3, 2})
    H.assert_shape(a:view({1, 6}), {1, 6})
    H.assert_shape(a:reshape({-1}), {6})
  end)

  it("reshape of a non-contiguous tensor copies", function()
    local a = base()
    local r = a:t():reshape(6)
    H.assert_same(r, {1, 4, 2, 5, 3, 6})
    r[1] = 100
    assert.are.equal(1, a[1][1])
  end)

  it("transpose, t and permute are views", function()
    local a = base()
    local t = a:t()
    H.assert_same(t, {{1, 4}, {2, 5}, {3, 6}})
    assert.is_false(t:is_contiguous())
    t[3][1] = 30
    assert.are.equal(30, a[1][3])
    H.assert_same(a:transpose(1, 2), a:t():totable())
    H.assert_same(a:transpose(-1, -2), a:t():totable())
    local c = dn.arange(24):view(2, 3, 4)
    local p = c:permute(3, 1, 2)
    H.assert_shape(p, {4, 2, 3})
    for _, idx in ipairs(H.indices({4, 2, 3})) do
      assert.are.equal(c[idx[2]][idx[3]][idx[1]], p[idx[1]][idx[2]][idx[3]])
    end
    H.assert_same(c:permute(-1, 1, 2), p:totable())
  end)

  it("narrow and select are views", function()
    local a = base()
    local n = a:narrow(2, 2, 2)
    H.assert_same(n, {{2, 3}, {5, 6}})
    n:fill_(0)
    H.assert_same(a, {{1, 0, 0}, {4, 0, 0}})
    local s = a:select(2, 1)
    H.assert_same(s, {1, 4})
    s[2] = 40
    assert.are.equal(40, a[2][1])
    H.assert_same(a:select(1, -1), {40, 0, 0})
    H.assert_shape(a:narrow(1, 1, 0), {0, 3})
  end)

  it("unsqueeze, squeeze and expand", function()
    local a = base()
    H.assert_shape(a:unsqueeze(1), {1, 2, 3})
    H.assert_shape(a:unsqueeze(3), {2, 3, 1})
    H.assert_shape(a:unsqueeze(-1), {2, 3, 1})
    local u = a:unsqueeze(2)
    H.assert_shape(u, {2, 1, 3})
    H.assert_shape(u:squeeze(), {2, 3})
    H.assert_shape(u:squeeze(2), {2, 3})
    H.assert_shape(u:squeeze(1), {2, 1, 3})
    H.assert_shape(dn.zeros(1, 1):squeeze(), {})
    u[1][1][1] = 11
    assert.are.equal(11, a[1][1])
    local col = dn.tensor{{1}, {2}}
    local e = col:expand(2, 3)
    H.assert_same(e, {{1, 1, 1}, {2, 2, 2}})
    H.assert_same(dn.tensor{1, 2, 3}:expand({2, 3}), {{1, 2, 3}, {1, 2, 3}})
    col[2][1] = 7
    H.assert_same(e, {{1, 1, 1}, {7, 7, 7}})
  end)

  it("contiguous copies only when needed", function()
    local a = base()
    assert.is_true(a:is_contiguous())
    local same = a:contiguous()
    same[1][1] = 10
    assert.are.equal(10, a[1][1])   -- no copy: shares storage
    local t = a:t()
    local c = t:contiguous()
    assert.is_true(c:is_contiguous())
    H.assert_same(c, t:totable())
    c[1][1] = -1
    assert.are.equal(10, a[1][1])   -- a copy
    assert.is_true(a:narrow(1, 2, 1):is_contiguous())
    assert.is_false(a:narrow(2, 1, 2):is_contiguous())
  end)

  it("clone, copy_ and fill_", function()
    local a = base()
    local c = a:clone()
    c[1][1] = 50
    assert.are.equal(1, a[1][1])
    local t = a:t():clone()
    assert.is_true(t:is_contiguous())
    H.assert_same(t, {{1, 4}, {2, 5}, {3, 6}})
    local z = dn.zeros(2, 3)
    assert.are.equal(z, z:copy_(a))
    H.assert_same(z, a:totable())
    z:copy_(dn.tensor{7, 8, 9})   -- broadcast
    H.assert_same(z, {{7, 8, 9}, {7, 8, 9}})
    z:copy_(dn.tensor({1, 2, 3}, "int32"))   -- converts
    H.assert_same(z, {{1, 2, 3}, {1, 2, 3}})
    assert.are.equal(z, z:fill_(2.5))
    H.assert_same(z, {{2.5, 2.5, 2.5}, {2.5, 2.5, 2.5}})
    local tv = a:t()
    tv:copy_(dn.tensor{{1, 2}, {3, 4}, {5, 6}})   -- into a non-contiguous view
    H.assert_same(a, {{1, 3, 5}, {2, 4, 6}})
  end)

  it("copy_ refuses views of the same memory that partially overlap, and expanded destinations", function()
    local a = dn.arange(10)
    H.assert_error(function() a:narrow(1, 1, 8):copy_(a:narrow(1, 3, 8)) end,
      {"copy_: the source [8] and the destination [8] are views of the same memory that partially overlap"})
    H.assert_error(function() a:narrow(1, 3, 8):copy_(a:narrow(1, 1, 8)) end, {"partially overlap"})
    local m = a:narrow(1, 1, 4):view(2, 2)
    H.assert_error(function() m:copy_(m:t()) end, {"partially overlap"})
    H.assert_error(function() m[1] = m:t()[1] end, {"partially overlap"})   -- row 1 and column 1 share m[1][1]
    H.assert_same(a, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
    assert.are.equal(a, a:copy_(a))   -- the exact self-copy is a no-op
    a:narrow(1, 1, 5):copy_(a:narrow(1, 6, 5))   -- disjoint parts of one storage
    H.assert_same(a, {5, 6, 7, 8, 9, 5, 6, 7, 8, 9})
    local pairs_ = a:view(5, 2)
    pairs_:select(2, 1):copy_(pairs_:select(2, 2))   -- interleaved, no shared element
    H.assert_same(a, {6, 6, 8, 8, 5, 5, 7, 7, 9, 9})
    H.assert_error(function() dn.zeros(1, 4):expand(3, 4):copy_(dn.randn(3, 4)) end,
      {"copy_: cannot write into an expanded tensor of shape [3,4]"})
  end)
end)

describe("indexing", function()
  it("t[i] of a 1-D tensor is a number; of an N-D tensor a view", function()
    local v = dn.tensor{10, 20, 30}
    assert.are.equal(10, v[1])
    assert.are.equal(30, v[3])
    assert.are.equal(30, v[-1])
    assert.are.equal(10, v[-3])
    local a = dn.tensor{{1, 2, 3}, {4, 5, 6}}
    local row = a[2]
    assert.is_true(dn.is_tensor(row))
    H.assert_same(row, {4, 5, 6})
    H.assert_same(a[-2], {1, 2, 3})
    row[1] = 40
    assert.are.equal(40, a[2][1])
  end)

  it("int32 elements are Lua integers", function()
    local v = dn.tensor({1, -2, 3}, "int32")
    assert.are.equal(-2, v[2])
    assert.are.equal("integer", math.type(v[2]))
    assert.are.equal("integer", math.type(v:sum():item()))
  end)

  it("t[i] = number sets an element or fills a row", function()
    local v = dn.zeros(3)
    v[2] = 5
    v[-1] = 7
    H.assert_same(v, {0, 5, 7})
    local a = dn.zeros(2, 3)
    a[1] = 9
    H.assert_same(a, {{9, 9, 9}, {0, 0, 0}})
    a[2][3] = 4
    H.assert_same(a, {{9, 9, 9}, {0, 0, 4}})
  end)

  it("t[i] = tensor copies into the row", function()
    local a = dn.zeros(2, 3)
    a[2] = dn.tensor{1, 2, 3}
    H.assert_same(a, {{0, 0, 0}, {1, 2, 3}})
    a[1] = dn.tensor{5}   -- broadcast
    H.assert_same(a, {{5, 5, 5}, {1, 2, 3}})
    local b = dn.zeros(2, 2, 2)
    b[1] = dn.tensor{{1, 2}, {3, 4}}
    H.assert_same(b, {{{1, 2}, {3, 4}}, {{0, 0}, {0, 0}}})
    local i = dn.zeros(3, "int32")
    i[2] = 7
    H.assert_same(i, {0, 7, 0})
  end)

  it("unknown fields are errors that suggest the right name", function()
    local a = dn.zeros(2)
    H.assert_error(function() return a.no_such_method end,
      {"index: a tensor has no field 'no_such_method' (its methods and properties are listed in docs/lua-api.md)"})
    H.assert_error(function() return a.requires_gard end,
      {"index: a tensor has no field 'requires_gard' (did you mean requires_grad?)"})
    H.assert_error(function() return a:sumn() end, {"no field 'sumn' (did you mean sum?)"})
    H.assert_error(function() return a.shpe end, {"(did you mean shape?)"})
    H.assert_error(function() return a[true] end, {"index: a tensor has no field boolean"})
    -- the position is the reading line
    local err = H.error_of(function() local g = a.gard; return g end)
    assert.truthy(err:find("^[^:]*tensor_spec%.lua:%d+: index: a tensor has no field 'gard' %(did you mean grad%?%)"),
      err)
    -- the fields that exist still read as before, nil included
    assert.is_nil(a.grad)
    assert.is_nil(a.grad_fn)
    assert.is_false(a.requires_grad)
  end)
end)

describe("conversion", function()
  it("totable round trip", function()
    local values = {{{1.5, -2}, {3, 4}}, {{0, 0.25}, {-7, 8}}}
    local t = dn.tensor(values)
    H.assert_same(t:totable(), values)
    H.assert_same(dn.tensor(t:totable()), values)
    local ints = dn.tensor({{1, 2}, {3, 4}}, "int32"):totable()
    assert.are.same({{1, 2}, {3, 4}}, ints)
    assert.are.equal("integer", math.type(ints[2][1]))
    assert.are.equal("float", math.type(t:totable()[1][1][2]))
    assert.are.same({}, dn.zeros(0):totable())
    assert.are.equal(6.0, dn.tensor{1, 2, 3}:sum():totable())
  end)

  it("totable of a non-contiguous view", function()
    local a = dn.tensor{{1, 2, 3}, {4, 5, 6}}
    assert.are.same({{1, 4}, {2, 5}, {3, 6}}, a:t():totable())
    assert.are.same({{2}, {5}}, a:narrow(2, 2, 1):totable())
  end)

  it("float, int and to", function()
    local f = dn.tensor{1.7, -1.7, 2}
    local i = f:int()
    assert.are.equal("int32", i:dtype())
    H.assert_same(i, {1, -1, 2})   -- truncation toward zero
    local back = i:float()
    assert.are.equal("float32", back:dtype())
    H.assert_same(back, {1, -1, 2})
    assert.are.equal("int32", f:to("int32"):dtype())
    assert.are.equal("float32", i:to("float32"):dtype())
  end)

  it("to an int dtype refuses NaN, infinities and values out of range", function()
    H.assert_error(function() return dn.tensor{3e9}:int() end,
      {"to_dtype: value 3000000000 at position 1 is not representable as int32"})
    H.assert_error(function() return dn.tensor{1, 300}:to("uint8") end,
      {"to_dtype: value 300 at position 2 is not representable as uint8"})
    H.assert_error(function() return dn.tensor({-1}, "int32"):to("uint8") end, {"value -1 at position 1"})
    H.assert_error(function() return dn.tensor{0, 0 / 0}:int() end, {"value nan at position 2"})
    H.assert_error(function() return dn.tensor{math.huge}:int() end, {"value inf at position 1"})
    H.assert_error(function() return dn.tensor(dn.tensor{5e9}, "int32") end, {"value 5000000000 at position 1"})
    local i = dn.zeros(2, 3, "int32")
    H.assert_error(function() i:copy_(dn.tensor{1, 2, 1e10}) end,
      {"copy_: value 1e+10 at position 3 is not representable as int32"})
    H.assert_same(i, {{0, 0, 0}, {0, 0, 0}})   -- nothing written
    H.assert_error(function() i:fill_(3e9) end, {"fill_: value 3e+09 is not representable as int32"})
    H.assert_error(function() dn.zeros(2, "uint8"):fill_(300) end, {"not representable as uint8"})
    H.assert_error(function() return dn.arange(2147483640, 2147483650, "int32") end,
      {"arange: value 2147483649 at position 10 is not representable as int32"})
    H.assert_error(function() return dn.arange(250, 260, "uint8") end, {"arange: value 259 at position 10"})
    H.assert_error(function() return dn.arange(0, 1e300, 1e-300) end, {"are too many"})
    H.assert_same(dn.tensor{255.9, -0.9}:to("uint8"), {255, 0})   -- in range: truncated toward zero
    H.assert_same(dn.arange(2147483645, 2147483648, "int32"), {2147483645, 2147483646, 2147483647})
  end)

  it("item of a one-element tensor", function()
    assert.are.equal(3, dn.tensor{{3}}:item())
    assert.are.equal(2.5, dn.tensor(2.5):item())
  end)
end)

describe("0-dim tensors", function()
  it("come from full reductions", function()
    local s = dn.tensor{{1, 2}, {3, 4}}:sum()
    assert.are.equal(0, s:dim())
    assert.are.same({}, s:shape())
    assert.are.equal(1, s:numel())
    assert.are.equal(10.0, s:item())
    assert.are.equal("float32", s:dtype())
    H.assert_shape(s + 1, {})
    assert.are.equal(11, (s + 1):item())
    assert.has_error(function() return #s end)
  end)
end)

describe("tostring", function()
  it("shows the values, shape and dtype", function()
    local s = tostring(dn.tensor{{1, 2, 3}, {4, 5, 6}})
    assert.truthy(s:find("shape [2,3], float32", 1, true), s)
    for v = 1, 6 do assert.truthy(s:find(string.format("%d.0000", v), 1, true), s) end
    local i = tostring(dn.tensor({1, 2, 3}, "int32"))
    assert.truthy(i:find("shape [3], int32", 1, true), i)
    assert.falsy(i:find("1.0", 1, true), i)   -- integers print without decimals
    for v = 1, 3 do assert.truthy(i:find(tostring(v), 1, true), i) end
    local neg = tostring(dn.tensor{-1.5})
    assert.truthy(neg:find("-1.5000", 1, true), neg)
    local special = tostring(dn.tensor{0 / 0, 1 / 0, -1 / 0})
    for _, word in ipairs{"nan", "inf", "-inf"} do assert.truthy(special:find(word, 1, true), special) end
    -- a 0-dim tensor on one line, as PyTorch prints it
    assert.are.equal("tensor(3.0000)", tostring(dn.tensor{1, 2}:sum()))
    assert.are.equal("tensor(3, dtype=int32)", tostring(dn.tensor({1, 2}, "int32"):sum()))
  end)

  it("summarizes large tensors", function()
    local s = tostring(dn.zeros(100, 100))
    assert.truthy(s:find("...", 1, true))
    assert.truthy(s:find("shape [100,100], float32", 1, true))
    assert.is_true(#s < 2000)
  end)
end)

describe("<close>", function()
  it("releases the tensor at the end of the scope", function()
    local outer
    do
      local t <close> = dn.zeros(2)
      outer = t
      H.assert_same(t, {0, 0})
    end
    local err = H.error_of(function() return outer:sum() end)
    assert.truthy(err:find("closed", 1, true), err)
    assert.truthy(tostring(outer):find("closed", 1, true))
  end)

  it("close() releases too, and twice is harmless", function()
    local t = dn.zeros(2)
    t:close()
    t:close()
    assert.has_error(function() return t[1] end)
    assert.has_error(function() return t + 1 end)
  end)

  it("a view outlives its closed base", function()
    local base = dn.tensor{1, 2, 3}
    local v = base:narrow(1, 2, 2)
    base:close()
    collectgarbage()
    H.assert_same(v, {2, 3})
  end)
end)
