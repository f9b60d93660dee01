-- dropnet.run: run directory, CSV table, progress bar, durations.
local run = require "dropnet.run"
local H = require "helpers"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe("run.directory", function()
  it("creates the directory with its parents and leaves nothing in it", function()
    local base = tmpdir()
    local out = run.directory(base .. "/a/b")
    assert.equal(base .. "/a/b", out)
    assert.is_nil(io.open(out .. "/.dropnet-write-test"))
    assert.equal(out, run.directory(out))   -- an existing directory is fine
    os.remove(out)
    os.remove(base .. "/a")
    os.remove(base)
  end)

  it("names runs/<timestamp> when no directory is given", function()
    local out = run.directory()
    assert.truthy(out:match("^runs/%d%d%d%d%d%d%d%d%-%d%d%d%d%d%d$"), out)
    os.remove(out)
    os.remove("runs")   -- only if empty
  end)

  it("fails before any work on a directory it cannot create or write", function()
    H.assert_error(function() run.directory("/dev/null/run") end,
      {"run.directory: cannot use /dev/null/run as the output directory", "Not a directory"})
    H.assert_error(function() run.directory("/proc/dropnet-run") end, {"run.directory: cannot use /proc/dropnet-run"})
    H.assert_error(function() run.directory("") end, {"run.directory: out must be a non-empty string"})
    H.assert_error(function() run.directory(3) end, {"run.directory: out must be a non-empty string"})
  end)
end)

describe("run.csv", function()
  it("writes the header at once and rewrites the whole table at every row", function()
    local path = tmpdir() .. ".csv"
    local log = run.csv(path, {"epoch", "loss", "note"})
    assert.equal("epoch,loss,note\n", read(path))
    log:add{1, 0.1, "plain"}
    log:add{epoch = 2, loss = 1 / 3, note = 'say "hi", twice'}
    assert.equal('epoch,loss,note\n1,0.1,plain\n2,0.333333333,"say ""hi"", twice"\n', read(path))
    os.remove(path)
  end)

  it("checks its arguments and names a missing column", function()
    local path = tmpdir() .. ".csv"
    local log = run.csv(path, {"a", "b"})
    H.assert_error(function() log:add{1} end, {"Csv:add: no value for column 'b' (column 2)"})
    H.assert_error(function() log:add(1) end, {"Csv:add: row must be a table"})
    H.assert_error(function() run.csv(path, {}) end, {"run.csv: columns must be a non-empty list"})
    H.assert_error(function() run.csv(path, {"a", 2}) end, {"run.csv: columns[2] must be a string"})
    H.assert_error(function() run.csv(3, {"a"}) end, {"run.csv: path must be a string"})
    H.assert_error(function() run.csv("/dev/null/x.csv", {"a"}) end, {"write_file"})
    os.remove(path)
  end)
end)

describe("run.progress", function()
  -- captures what the bar writes to stderr
  -- (io.stderr is replaced for the call: luacheck's W122 is expected here)
  local function capture(fn)
    local written, real = {}, io.stderr
    local fake = {write = function(_, ...) for _, s in ipairs{...} do written[#written + 1] = s end end,
      flush = function() end}
    io.stderr = fake   -- luacheck: ignore 122
    local ok, err = pcall(fn)
    io.stderr = real   -- luacheck: ignore 122
    assert(ok, err)
    return table.concat(written)
  end

  it("draws the label, the count, the status and the rate in place", function()
    local text = capture(function()
      local bar = run.progress("epoch 2/5", 4, {enabled = true, unit = 128, unit_name = "samples"})
      bar:update(4, "loss 0.5000")
      bar:close()
    end)
    assert.truthy(text:find("\r\27[Kepoch 2/5 [============================] 4/4  loss 0.5000  ", 1, true), text)
    assert.truthy(text:find("samples/s  ETA 0s", 1, true), text)
    assert.equal("\r\27[K", text:sub(-4))
  end)

  it("is silent when disabled", function()
    local text = capture(function()
      local bar = run.progress("x", 3, {enabled = false})
      bar:update(1)
      bar:update(3, "done")
      bar:close()
    end)
    assert.equal("", text)
  end)

  it("checks its options", function()
    H.assert_error(function() run.progress(1, 2) end, {"run.progress: label must be a string"})
    H.assert_error(function() run.progress("x", -1) end, {"run.progress", "total"})
    H.assert_error(function() run.progress("x", 2, {unit = 0}) end, {"run.progress: unit must be a number > 0"})
    H.assert_error(function() run.progress("x", 2, {enabled = 1}) end, {"run.progress", "enabled"})
    H.assert_error(function() run.progress("x", 2, {colour = 1}) end, {"colour"})
  end)
end)

describe("run.format_time", function()
  it("writes seconds, minutes or hours", function()
    assert.equal("0s", run.format_time(0.2))
    assert.equal("42s", run.format_time(42))
    assert.equal("3m05s", run.format_time(185))
    assert.equal("1h02m", run.format_time(3725))
    H.assert_error(function() run.format_time(-1) end, {"run.format_time: seconds must be a finite number >= 0"})
  end)
end)

describe("run.parse_args", function()
  local SPEC = {{"out", "string"}, {"seed", "int", 1}, {"quick", "flag", false}, {"lr", "num", 0.1},
    {"batch_size", "int", 32}}

  it("reads --name value, --name=value and flags, with defaults and what was given", function()
    local o, given = run.parse_args({"--seed=3", "--quick", "--out", "x", "--batch-size", "64", "--lr", "1e-3"}, SPEC)
    assert.same({seed = 3, quick = true, out = "x", lr = 1e-3, batch_size = 64}, o)
    assert.equal("integer", math.type(o.seed))
    assert.same({seed = true, quick = true, out = true, batch_size = true, lr = true}, given)
    local d = run.parse_args({}, SPEC)
    assert.same({seed = 1, quick = false, lr = 0.1, batch_size = 32}, d)
    assert.is_true(run.parse_args({"--help"}, SPEC).help)
  end)

  it("names the bad option and suggests the closest known one", function()
    H.assert_error(function() run.parse_args({"--sede", "1"}, SPEC) end,
      {"unknown option '--sede' (did you mean --seed?); see --help"})
    H.assert_error(function() run.parse_args({"--batchsize=3"}, SPEC) end, {"did you mean --batch-size?"})
    H.assert_error(function() run.parse_args({"--zzzzzzzz"}, SPEC) end, {"unknown option '--zzzzzzzz'; see --help"})
    H.assert_error(function() run.parse_args({"--seed", "1.5"}, SPEC) end,
      {"option '--seed' needs a whole number (got '1.5')"})
    H.assert_error(function() run.parse_args({"--lr", "fast"}, SPEC) end, {"option '--lr' needs a number (got 'fast')"})
    H.assert_error(function() run.parse_args({"--seed"}, SPEC) end, {"option '--seed' needs a whole number"})
    H.assert_error(function() run.parse_args({"--quick=yes"}, SPEC) end, {"option '--quick' takes no value"})
    H.assert_error(function() run.parse_args({"data"}, SPEC) end, {"unexpected argument 'data'"})
    H.assert_error(function() run.parse_args({}, {{"x", "float"}}) end, {"run.parse_args: spec[1] must be"})
  end)
end)
