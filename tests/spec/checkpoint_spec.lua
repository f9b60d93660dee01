-- dropnet.checkpoint round trips nested state exactly and rejects what it cannot store;
-- dn.isatty and dn.clock, the small helpers scripts use.
local dn = require "dropnet"
local checkpoint = require "dropnet.checkpoint"
local H = require "helpers"

describe("dropnet.checkpoint", function()
  local dir
  setup(function() dir = H.make_tempdir() end)
  teardown(function() H.remove_dir(dir) end)

  it("round trips tensors, integers, floats, booleans, strings and empty tables", function()
    local path = dir .. "/state.safetensors"
    local w = dn.tensor{{1.5, -2}, {3, 4}}
    checkpoint.save(path, {
      model = {["1.weight"] = w}, epoch = 7, lr = 0.1, nan = 0 / 0, inf = -math.huge, flag = false,
      name = "run a/b?", list = {10, 20, {x = 1}}, empty = {}, rng = dn.get_rng_state()})
    local s = checkpoint.load(path)
    assert.are.same(w:totable(), s.model["1.weight"]:totable())
    assert.are.equal(7, s.epoch)
    assert.are.equal("integer", math.type(s.epoch))
    assert.are.equal(0.1, s.lr)
    assert.is_true(s.nan ~= s.nan)
    assert.are.equal(-math.huge, s.inf)
    assert.are.equal(false, s.flag)
    assert.are.equal("run a/b?", s.name)
    assert.are.same({10, 20, {x = 1}}, s.list)
    assert.are.same({}, s.empty)
    assert.are.same(dn.get_rng_state(), s.rng)
  end)

  it("rejects what it cannot store, naming the place", function()
    local path = dir .. "/bad.safetensors"
    assert.has_error(function() checkpoint.save(path, 3) end, "checkpoint.save: state must be a table")
    assert.has_error(function() checkpoint.save(1, {}) end, "checkpoint.save: path must be a string")
    local ok, err = pcall(checkpoint.save, path, {a = {f = print}})
    assert.is_false(ok)
    assert.truthy(err:find("value of type function at 'a/f'", 1, true), err)
    ok, err = pcall(checkpoint.save, path, {["x/y"] = 1})
    assert.is_false(ok)
    assert.truthy(err:find("key 'x/y'", 1, true), err)
    local cycle = {}
    cycle.self = cycle
    ok, err = pcall(checkpoint.save, path, cycle)
    assert.is_false(ok)
    assert.truthy(err:find("a cycle at 'self'", 1, true), err)
    assert.is_nil(io.open(path))   -- nothing written
  end)

  it("rejects a safetensors file that is not a checkpoint, and missing files", function()
    local path = dir .. "/plain.safetensors"
    dn.save(path, {w = dn.ones(2)})
    local ok, err = pcall(checkpoint.load, path)
    assert.is_false(ok)
    assert.truthy(err:find("is not a dropnet checkpoint", 1, true), err)
    ok, err = pcall(checkpoint.load, dir .. "/missing.safetensors")
    assert.is_false(ok)
    assert.truthy(err:find("missing.safetensors", 1, true), err)
  end)
end)

describe("dn.isatty and dn.clock", function()
  it("tell a file from a terminal and reject other arguments", function()
    local f = assert(io.tmpfile())
    assert.is_false(dn.isatty(f))
    f:close()
    assert.has_error(function() dn.isatty("stderr") end)
    assert.has_error(function() dn.isatty() end)
  end)

  it("measures forward in time", function()
    local t0 = dn.clock()
    assert.is_true(dn.clock() >= t0)
  end)
end)
