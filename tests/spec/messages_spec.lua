-- Messages that teach (issue 15): a PyTorch habit gets told the dropnet way,
-- ranges read 1-based and closed, misspelt fields are refused with the right
-- name, and every error names the user's line, not a line of the library.
local dn = require "dropnet"
local H = require "helpers"

local nn = dn.nn
local expect = H.assert_error

-- Positions are "file:line: "; this file's name is what a user's script would show.
local function at_this_file(err)
  return err:find("^[^:]*messages_spec%.lua:%d+: ") ~= nil
end

describe("PyTorch habits", function()
  it("optim.Adam(model) asks for model:parameters()", function()
    local model = nn.Sequential(nn.Linear(3, 2))
    expect(function() return dn.optim.Adam(model) end,
      {"Adam: params must be a list of tensors, not the module Sequential (pass model:parameters())"})
    expect(function() return dn.optim.SGD({{params = model}}, {lr = 0.1}) end,
      {"SGD: got the module Sequential where parameters were expected (pass model:parameters())"})
  end)

  it("dn.save(path, model) asks for model:state_dict()", function()
    local err = expect(function() return dn.save(os.tmpname(), nn.Linear(2, 2)) end,
      {"save: got the module Linear; pass model:state_dict() to save its tensors"})
    assert.is_nil(err:find("_parameters", 1, true), err)
  end)

  it("t[0] says that indices start at 1", function()
    local m, v = dn.tensor{{1, 2}, {3, 4}}, dn.tensor{1, 2}
    expect(function() return m[0] end, {"index: index 0 out of range for dim 1 of size 2 (indices start at 1"})
    expect(function() return v[0] end, {"index: index 0 out of range for a tensor of size 2 (indices start at 1"})
    expect(function() v[0] = 1 end, {"newindex: index 0", "(indices start at 1"})
    expect(function() return m:select(2, 0) end, {"select: index 0", "(indices start at 1"})
    expect(function() return m:narrow(1, 0, 1) end, {"narrow: start 0", "(start is 1-based)"})
    -- an index past the end gets no such hint: it is not the 0-based habit
    local err = expect(function() return v[3] end, {"index: index 3 out of range"})
    assert.is_nil(err:find("start at 1", 1, true), err)
  end)

  it("index ranges are written 1-based and closed", function()
    local t = dn.tensor{{1, 2}, {3, 4}}
    expect(function() return t:index_select(1, dn.tensor({1, 3}, "int32")) end,
      {"index_select: index 3 at position 2 is out of range [1, 2] for a dim of size 2"})
    expect(function() return dn.zeros(0, 2):index_select(1, dn.tensor({1}, "int32")) end,
      {"index_select: index 1 at position 1 is out of range (no valid index) for a dim of size 0"})
  end)

  it("a missing Fashion-MNIST directory reads right for a script and for scripts/train.lua", function()
    local err = expect(function() return dn.data.fashion_mnist{dir = "/nonexistent/dropnet"} end,
      {"/nonexistent/dropnet", "pass dir = DIR to data.fashion_mnist (scripts/train.lua: --data DIR)",
       "DROPNET_DATA=DIR"})
    assert.is_nil(err:find("pass dir = ...", 1, true), err)
  end)
end)

describe("error positions", function()
  -- no tail calls below: a tail call replaces the caller's frame, and Lua then has no line of it to name
  it("errors of the Lua library name the caller's line", function()
    local err = H.error_of(function() local m = nn.Linear(0.5, 2); return m end)
    assert.truthy(at_this_file(err), err)
    assert.truthy(err:find("Linear: in_features must be an integer >= 1 (got 0.5)", 1, true), err)
    err = H.error_of(function() local l = nn.CrossEntropyLoss()(dn.zeros(2, 3), dn.zeros(2)); return l end)
    assert.truthy(at_this_file(err), err)
    assert.is_nil(err:find("dropnet/", 1, true), err)
    err = H.error_of(function() local o = dn.optim.SGD({dn.zeros(1)}, {lr = -1}); return o end)
    assert.truthy(at_this_file(err), err)
  end)

  it("errors of the C module met inside the library name the caller's line", function()
    local model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    local line = debug.getinfo(1, "l").currentline + 1
    local err = H.error_of(function() local y = model(dn.zeros(2, 5)); return y end)
    assert.truthy(err:find("messages_spec.lua:" .. line .. ": Sequential: layer 1 (Linear): linear:", 1, true), err)
    -- a user's module calling the library: the user's forward line
    local Mine = nn.Module:extend("Mine")
    local forward_line = debug.getinfo(1, "l").currentline + 1
    function Mine:forward(x) local y = x:matmul(dn.zeros(7, 1)); return y end
    err = H.error_of(function() local y = Mine()(dn.zeros(2, 3)); return y end)
    assert.truthy(err:find("messages_spec.lua:" .. forward_line .. ": matmul:", 1, true), err)
  end)

  it("errors of the C module called directly keep the caller's line", function()
    local err = H.error_of(function() local y = dn.zeros(2, 3):matmul(dn.zeros(4, 5)); return y end)
    assert.truthy(at_this_file(err), err)
  end)
end)

describe("misspelt fields", function()
  it("of a tensor are refused with the right name", function()
    local t = dn.zeros(2)
    expect(function() return t.requires_gard end,
      {"a tensor has no field 'requires_gard' (did you mean requires_grad?)"})
    expect(function() return t.numle end, {"(did you mean numel?)"})
  end)

  it("of a module are refused with the right name", function()
    local model = nn.Linear(3, 2)
    local err = expect(function() return model.weigth end, {"Linear: no field 'weigth' (did you mean weight?)"})
    assert.truthy(at_this_file(err), err)
    expect(function() return model.trainig end, {"(did you mean training?)"})
    expect(function() return model:paramters() end, {"(did you mean parameters?)"})
    local seq = nn.Sequential(model)
    expect(function() return seq.trian end, {"Sequential: no field 'trian' (did you mean train?)"})
  end)

  it("a missing field far from every name still reads as nil (optional fields are probed so)", function()
    local model = nn.Linear(3, 2, {bias = false})
    assert.is_nil(model.bias)
    assert.is_nil(model.no_such_thing_at_all)
    assert.is_nil(model[7])
    assert.is_nil(model._private_probe)
  end)

  it("a field set to nil on purpose is never refused", function()
    local Cache = nn.Module:extend("Cache")
    function Cache:init() self.weight = nn.Parameter(dn.zeros(1)); self.weigh = nil end
    function Cache:forward(x) return x end
    local c = Cache()
    assert.is_nil(c.weigh)
  end)
end)

describe("printing", function()
  it("a 0-dim tensor takes one line", function()
    assert.are.equal("tensor(3.5000)", tostring(dn.tensor{3.5}:sum()))
    assert.are.equal("tensor(7, dtype=int32)", tostring(dn.tensor({7}, "int32"):sum()))
  end)

  it("shows requires_grad and grad_fn", function()
    local x = dn.tensor{1, 2}:requires_grad_()
    assert.truthy(tostring(x):find("dropnet.Tensor of shape [2], float32, requires_grad=true", 1, true), tostring(x))
    local y = x * 2
    local s = tostring(y)
    assert.truthy(s:find(", grad_fn=<" .. y.grad_fn .. ">", 1, true), s)
    local total = y:sum()
    assert.are.equal("tensor(6.0000, grad_fn=<" .. total.grad_fn .. ">)", tostring(total))
    assert.is_nil(tostring(dn.tensor{1}):find("requires_grad", 1, true))
  end)

  it("tonumber cannot convert a tensor (Lua 5.4 has no metamethod for it): item does", function()
    assert.is_nil(tonumber(dn.tensor{3}))
    assert.are.equal(3, dn.tensor{3}:item())
  end)
end)

describe("a module's optional fields", function()
  it("read as nil at once the second time (no edit-distance search per read), and a new field is seen", function()
    local l = nn.Linear(2, 2, {bias = false})
    assert.is_nil(l.my_cache_of_things)   -- no name near it: no misspelling, remembered
    assert.is_true(rawget(l, "_misses").my_cache_of_things)
    l.extra = 1   -- setting a field forgets the misses: 'extr' is now a misspelling of it
    assert.is_nil(rawget(l, "_misses"))
    local ok, err = pcall(function() return l.extr end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("did you mean extra?", 1, true))
  end)
end)
