-- dn.catch_interrupt / dn.interrupted / dn.release_interrupt: Ctrl-C as a flag, a second Ctrl-C as the
-- default action, under the dropnet command and under plain lua5.4. Each case runs in a child process that
-- sends SIGINT to itself (kill through io.popen: os.execute's system() would ignore SIGINT while it waits).
local dn = require "dropnet"
local H = require "helpers"

local BIN = os.getenv("DROPNET_BIN")
local quote = H.quote

-- The child's own pid and a function that sends it SIGINT.
local PRELUDE = [[
local dn = require "dropnet"
local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
local function ctrl_c() io.popen("kill -INT " .. pid):close() end
io.stdout:setvbuf("no")
]]

-- Runs code in `interpreter`; returns its output and the exit status as the shell sees it (130 for SIGINT).
local function child(interpreter, code)
  local cmd = string.format("sh -c %s 2>&1", quote(string.format("%s -e %s; echo \"status $?\"", interpreter,
    quote(PRELUDE .. code))))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  local status = tonumber(out:match("status (%d+)\n$"))
  return out, status
end

local interpreters = {{"lua5.4", "lua5.4"}}
if BIN then interpreters[#interpreters + 1] = {"the dropnet command", quote(BIN)} end

describe("Ctrl-C", function()
  for _, it_case in ipairs(interpreters) do
    local name, interpreter = it_case[1], it_case[2]

    it("is a flag after dn.catch_interrupt, under " .. name, function()
      local out, status = child(interpreter, [[
        dn.catch_interrupt()
        print("before", dn.interrupted())
        ctrl_c()
        print("after", dn.interrupted(5))
        dn.catch_interrupt()
        print("cleared", dn.interrupted())
        dn.release_interrupt()
        print("released", dn.interrupted())
      ]])
      assert.are.equal(0, status, out)
      assert.truthy(out:find("before\tfalse\nafter\ttrue\ncleared\tfalse\nreleased\tfalse\n", 1, true), out)
    end)

    it("ends the process at once on a second SIGINT, under " .. name, function()
      local out, status = child(interpreter, [[
        dn.catch_interrupt()
        ctrl_c()
        print("first", dn.interrupted(5))
        ctrl_c()
        dn.interrupted(5)
        print("still running")
      ]])
      assert.are.equal(130, status, out)
      assert.truthy(out:find("first\ttrue\n", 1, true), out)
      assert.is_nil(out:find("still running", 1, true), out)
    end)

    it("is handled as before after dn.release_interrupt, under " .. name, function()
      local out, status = child(interpreter, [[
        dn.catch_interrupt()
        dn.release_interrupt()
        local ok, err = pcall(function() ctrl_c(); for _ = 1, 1e9 do end end)
        print("survived", ok, err)
      ]])
      if interpreter == "lua5.4" then
        -- lua.c's own handler is back: the running code stops with "interrupted!"
        assert.truthy(out:find("survived\tfalse\t.*interrupted!"), out)
        assert.are.equal(0, status, out)
      else
        assert.are.equal(130, status, out)
        assert.is_nil(out:find("survived", 1, true), out)
      end
    end)
  end

  it("waits for a SIGINT no longer than asked", function()
    dn.catch_interrupt()
    local t0 = dn.clock()
    assert.is_false(dn.interrupted(0.05))
    local waited = dn.clock() - t0
    assert.is_true(waited >= 0.05 and waited < 2, tostring(waited))
    dn.release_interrupt()
    t0 = dn.clock()
    assert.is_false(dn.interrupted(5))   -- not catching: nothing to wait for
    assert.is_true(dn.clock() - t0 < 1)
  end)

  it("rejects a bad wait", function()
    H.assert_error(function() dn.interrupted("soon") end, {"bad argument #1 to 'interrupted'",
      "wait must be a number of seconds (got string)"})
    H.assert_error(function() dn.interrupted(-1) end, {"wait must be a finite number >= 0"})
    H.assert_error(function() dn.interrupted(0 / 0) end, {"wait must be a finite number >= 0"})
    H.assert_error(function() dn.interrupted(math.huge) end, {"wait must be a finite number >= 0"})
    dn.release_interrupt()   -- releasing when not catching is a no-op
  end)
end)
