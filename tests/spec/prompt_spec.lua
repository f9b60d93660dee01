-- The prompt of the `dropnet` command (`dropnet -i`) driven through a pseudo-terminal, as a person
-- types at it: `script` (util-linux) runs the command on a pty and copies the keys written to its
-- standard input there, and everything the command shows into a file that the spec reads as the
-- screen. Every step waits for what it expects before the next keys go out (generous timeouts),
-- so the spec does not depend on the machine's speed. HOME is a fresh directory: the history file
-- starts empty and no ~/.inputrc applies.
local BIN = os.getenv("DROPNET_BIN")
local H = require "helpers"

local quote, read_file = H.quote, H.read_file

local function skip(why)
  describe("the dropnet prompt", function() pending(why) end)
end

if not BIN or BIN == "" then
  return skip("DROPNET_BIN is not set: point it at the built dropnet executable to run these specs")
end
if not os.execute("command -v script >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1") then
  return skip("`script` (util-linux) or `timeout` (coreutils) is missing: no pseudo-terminal to drive the prompt")
end
do
  local help = io.popen(quote(BIN) .. " --help"):read("a")
  if help:find("built without readline", 1, true) then
    return skip("this dropnet is built without readline (Debian: libreadline-dev, then rebuild): "
      .. "no line editing, history or completion to test")
  end
end

local UP, TAB, CTRL_C, CTRL_D, CTRL_U = "\27[A", "\t", "\3", "\4", "\21"
local TIMEOUT = 60   -- seconds for one expected text; a hang fails the spec, never the suite

-- Starts `dropnet -i` on a pty with HOME = home. Returns a session: send(keys), expect(text) and
-- finish() (Ctrl-D, then the exit status).
local sessions = 0
local function start(home)
  sessions = sessions + 1   -- a screen file per session: never read an earlier session's screen
  local screen = string.format("%s/screen%d.txt", home, sessions)
  -- `script -c` runs the command through $SHELL; dash (Debian's /bin/sh, what CI's
  -- environment gives) stays as its parent in the terminal's foreground group, and a Ctrl-C
  -- would kill that shell, not test the prompt: exec replaces it
  local command = "exec " .. quote(BIN) .. " -i"
  local pipe = assert(io.popen(table.concat({
    "HOME=" .. quote(home), "INPUTRC=/dev/null", "TERM=xterm",
    "timeout", tostring(TIMEOUT * 4), "script", "-qfec", quote(command), "/dev/null",
    ">", quote(screen), "2>&1"}, " "), "w"))
  local s = {pos = 1}

  function s.send(keys)
    pipe:write(keys)
    pipe:flush()
  end

  -- Waits until `text` shows on the screen after what earlier calls consumed; consumes it.
  function s.expect(text)
    local deadline, shown = os.time() + TIMEOUT, ""
    repeat
      local f = io.open(screen, "rb")
      if f then
        shown = f:read("a")
        f:close()
      end
      local _, last = shown:find(text, s.pos, true)
      if last then
        s.pos = last + 1
        return
      end
      os.execute("sleep 0.05")
    until os.time() > deadline
    error(string.format("timed out waiting for %q; the screen after the last match:\n%s", text,
      shown:sub(s.pos)), 2)
  end

  -- Types a line, expects `result` then the next prompt.
  function s.run(line, result)
    s.send(line .. "\r")
    if result then s.expect(result) end
    s.expect("> ")
  end

  function s.finish()
    s.send(CTRL_D)
    local ok, how, code = pipe:close()
    return ok and 0 or (how == "signal" and 128 + code or code), read_file(screen)
  end

  s.expect("> ")
  return s
end

describe("the dropnet prompt", function()
  local home
  before_each(function() home = H.make_tempdir() end)
  after_each(function() H.remove_dir(home) end)

  it("prints the value of an expression and runs statements of several lines", function()
    local s = start(home)
    s.run("1 + 41", "42")                                -- the typed text "1 + 41" has no "42"
    s.send("for i = 1, 2 do\r")
    s.expect(">> ")
    s.send("io.write('ro', 'und ', i, '\\n')\r")
    s.expect(">> ")
    s.run("end", "round 2")
    assert.are.equal(0, (s.finish()))
  end)

  it("recalls history with the Up arrow and keeps it in ~/.dropnet_history", function()
    local s = start(home)
    s.run('print("from" .. "history")', "fromhistory")
    s.run("1 + 41", "42")
    s.send(UP .. "\r")                                   -- the last line again
    s.expect("42")
    s.expect("> ")
    assert.are.equal(0, (s.finish()))
    local history = read_file(home .. "/.dropnet_history")
    assert.truthy(history:find('print("from" .. "history")', 1, true), history)
    assert.truthy(history:find("1 + 41", 1, true), history)

    -- a new session recalls the previous one's lines from the file
    s = start(home)
    s.send(UP .. UP .. "\r")
    s.expect("fromhistory")
    s.expect("> ")
    assert.are.equal(0, (s.finish()))
  end)

  it("keeps a statement of several lines as one history entry", function()
    local s = start(home)
    s.send("for i = 1, 2 do\r")
    s.expect(">> ")
    s.send("io.write('it', 'er ', i, '\\n')\r")
    s.expect(">> ")
    s.run("end", "iter 2")
    assert.are.equal(0, (s.finish()))
    s = start(home)
    s.send(UP .. "\r")
    s.expect("iter 1")
    s.expect("iter 2")
    s.expect("> ")
    assert.are.equal(0, (s.finish()))
  end)

  it("Ctrl-C stops a running statement and returns to the prompt", function()
    local s = start(home)
    -- "spinning" shows once the loop runs: the typed text has it in two pieces
    s.send("io.write('spin', 'ning\\n'); io.flush(); while true do end\r")
    s.expect("spinning")
    s.send(CTRL_C)
    s.expect("interrupted!")
    s.expect("> ")
    s.run("print(6 * 7)", "42")                           -- the session goes on
    assert.are.equal(0, (s.finish()))
  end)

  it("Ctrl-C inside dn.no_grad leaves grad mode as it was", function()
    local s = start(home)
    s.send("dn.no_grad(function() io.write('spin', 'ning\\n'); io.flush(); while true do end end)\r")
    s.expect("spinning")
    s.send(CTRL_C)
    s.expect("interrupted!")
    s.expect("> ")
    s.run("dn.is_grad_enabled()", "true")
    assert.are.equal(0, (s.finish()))
  end)

  it("Ctrl-C while typing drops the line and gives a new prompt", function()
    local s = start(home)
    s.send("error('never run')")
    s.send(CTRL_C)
    s.expect("> ")
    s.run("100 + 23", "123")
    local code, screen = s.finish()
    assert.are.equal(0, code)
    assert.falsy(screen:find("stdin:1: never run", 1, true), screen)
  end)

  -- The terminal drops typed keys that a Ctrl-C follows; readline, told they had come, then
  -- waited for a key with the SIGINT held back (7 of 100 tries hung before read_key).
  it("Ctrl-C right after typing gives a new prompt, again and again", function()
    local s = start(home)
    for i = 1, 40 do
      s.send("x = " .. i)
      for _ = 1, (i % 4) * 20000 do end   -- a Ctrl-C at various moments after the keys
      s.send(CTRL_C)
      s.expect("> ")
    end
    s.run("x", "nil")   -- no line ran
    assert.are.equal(0, (s.finish()))
  end)

  it("completes global names, table fields and methods with TAB", function()
    local s = start(home)
    s.run("dn.zer" .. TAB .. "(2):sum():item()", "0.0")  -- dn.zer<TAB> gives dn.zeros
    s.run("t = dn.ones(37)")
    s.run("t:nume" .. TAB .. "()", "37")                 -- a tensor's method
    s.run("dn.nn.Line" .. TAB .. " ~= nil", "true")       -- a submodule's field
    s.run("tostr" .. TAB .. "(12 * 3)", "36")             -- a global
    s.run("m = dn.nn.Linear(2, 3)")
    s.run("type(m:paramet" .. TAB .. "())", "table")      -- a module's method, found in its class
    local code, screen = s.finish()
    assert.are.equal(0, code)
    assert.truthy(screen:find("dn.zeros(2)", 1, true), screen)
  end)

  it("completion runs no code: __index functions are not called", function()
    local s = start(home)
    s.run("probe = setmetatable({}, {__index = function() calls = (calls or 0) + 1 end})")
    s.send("probe.ab" .. TAB .. "probe.ab.c" .. TAB .. CTRL_U)
    s.run("rawequal(calls, nil)", "true")
    assert.are.equal(0, (s.finish()))
  end)

  it("warns in one line when the history file cannot be written, and goes on", function()
    -- a directory where the file should be: writing it fails whoever runs the spec (root too)
    assert(os.execute("mkdir " .. quote(home .. "/.dropnet_history")))
    local s = start(home)
    s.run("1 + 41", "42")
    s.run("2 + 40", "42")
    local code, screen = s.finish()
    assert.are.equal(0, code)
    local _, warnings = screen:gsub("cannot write the history file", "")
    assert.are.equal(1, warnings, screen)
  end)
end)
