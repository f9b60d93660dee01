-- Denormal floats flushed to zero in dropnet's kernels (FTZ + DAZ), by default,
-- and never in Lua's own arithmetic: the mode is set only while dropnet's C code
-- runs, including after a call that raises an error. (The C tests read MXCSR in
-- every worker: tests/c/test_fpmode.c.)
local dn = require "dropnet"

local SUPPORTED = dn.get_flush_denormal()   -- the default: on wherever the CPU has the mode (x86)

-- Lua's doubles below 2.2e-308, computed at run time (constant expressions
-- would be folded when the chunk is compiled). DAZ or FTZ would make each 0.
local function lua_keeps_denormals()
  local two, e, tiny, one = 2, -1074, tonumber("1e-310"), 1
  return two ^ e > 0 and tiny * one ~= 0 and tiny / two > 0 and tiny + 0.0 * one == tiny
end

describe("denormal floats", function()
  local function when_supported()
    if not SUPPORTED then pending("no FTZ/DAZ mode on this CPU (not x86)") end
    return SUPPORTED
  end

  after_each(function()
    if SUPPORTED then dn.set_flush_denormal(true) end
  end)

  it("are flushed by default", function()
    if not when_supported() then return end
    assert.is_true(dn.get_flush_denormal())
    assert.is_true(dn.set_flush_denormal(false))
    assert.is_false(dn.get_flush_denormal())
    assert.is_true(dn.set_flush_denormal(true))
    assert.is_true(dn.get_flush_denormal())
  end)

  it("stay in Lua's own arithmetic before and after calls into dropnet", function()
    assert.is_true(lua_keeps_denormals())
    local nn, optim = dn.nn, dn.optim
    dn.set_num_threads(2)
    assert.is_true(lua_keeps_denormals())
    local model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))
    assert.is_true(lua_keeps_denormals())
    local opt = optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
    local labels = {}
    for i = 1, 300 do labels[i] = i % 10 + 1 end
    local x, y = dn.randn(300, 784), dn.tensor(labels, "int32")
    local loss = nn.CrossEntropyLoss()(model(x), y)
    assert.is_true(lua_keeps_denormals())
    opt:zero_grad()
    loss:backward()
    assert.is_true(lua_keeps_denormals())
    opt:step()
    assert.is_true(lua_keeps_denormals())
    local _ = loss:item() + x:sum():item() + x:matmul(x:t()):mean():item() + #tostring(x)
    assert.is_true(lua_keeps_denormals())
    if SUPPORTED then
      dn.set_flush_denormal(false)
      assert.is_true(lua_keeps_denormals())
      dn.set_flush_denormal(true)
      assert.is_true(lua_keeps_denormals())
    end
  end)

  it("stay in Lua's own arithmetic after a dropnet call that raises an error", function()
    local a, b = dn.ones(2, 3), dn.ones(4, 5)
    local failing = {
      function() return a + b end,                            -- a runtime error (status from the kernel)
      function() return a:matmul(b) end,
      function() return dn.ones(2, 3):sum(7) end,             -- an argument error in the binding
      function() return dn.set_flush_denormal("yes") end,
      function() return dn.nn.Linear(-1, 3) end,              -- an error from the Lua library
      function() return dn.tensor{1, "x"} end,
      function() return dn.full({200000}, 1e-40):fill_("x") end,
    }
    for i, f in ipairs(failing) do
      local ok = pcall(f)
      assert.is_false(ok, "call " .. i .. " should fail")
      assert.is_true(lua_keeps_denormals(), "after failing call " .. i)
    end
  end)

  it("are 0 in and out of kernels by default, kept when switched off", function()
    if not when_supported() then return end
    dn.set_num_threads(2)
    local tiny = 1e-40
    assert.are.equal(0, dn.tensor{tiny}[1])        -- converted into float32 in the mode
    assert.are.equal(0, dn.full({3}, tiny)[2])
    dn.set_flush_denormal(false)
    local x = dn.tensor{tiny, -tiny, 1}
    local stored = x[1]                             -- 1e-40 rounded to float32's denormal grid
    assert.is_true(stored > 0 and math.abs(stored - tiny) < 1e-44)
    assert.are.equal(stored, (x * 1)[1])
    assert.are.equal(-stored, (x + 0)[2])
    assert.are.equal(stored / 2, (x / 2)[1])
    assert.are.equal(1, (x:narrow(1, 1, 2):sum() + 1):item())
    local big = dn.full({200000}, tiny)             -- split over both threads
    assert.are.equal(stored, (big * 1):min():item())

    dn.set_flush_denormal(true)
    assert.are.equal(stored, x[1])                  -- reading back keeps the stored value
    assert.are.equal(0, (x * 1)[1])
    assert.are.equal(0, (x + 0)[2])
    assert.are.equal(0, (x * 1e30)[1])              -- DAZ: the input reads as 0
    assert.are.equal(0, x:narrow(1, 1, 2):sum():item())
    assert.are.equal(1, x:view(1, 3):matmul(dn.ones(3, 1)):item())   -- 0 + 0 + 1
    assert.are.equal(0, (big * 1):max():item())     -- every element, on every thread
    assert.are.equal(0, (dn.full({3}, 2e-38) * 0.5)[1])   -- FTZ: a denormal result is 0
    assert.are.equal(stored, x:clone()[1])          -- copies move values unchanged
  end)

  it("take a boolean switch", function()
    for _, bad in ipairs({"yes", 1, {}}) do
      local ok, err = pcall(dn.set_flush_denormal, bad)
      assert.is_false(ok)
      assert.truthy(err:find("set_flush_denormal", 1, true), err)
      assert.truthy(err:find("must be a boolean (got " .. type(bad) .. ")", 1, true), err)
    end
    local ok, err = pcall(dn.set_flush_denormal)
    assert.is_false(ok)
    assert.truthy(err:find("must be a boolean (got no value)", 1, true), err)
    assert.are.equal(SUPPORTED, dn.get_flush_denormal())   -- unchanged by the failed calls
  end)
end)
