--[[
The hostile-input runner: runs driver.lua in child processes over chunks of
call indices, each under `timeout` and with bounded memory, and turns every
crash, sanitizer report and hang into a finding with the exact call that
caused it, printed as code and as a one-line replay command.

  lua5.4 tests/hostile/runner.lua [options]
    --calls N          calls to run (default: DN_HOSTILE_CALLS, else 20000)
    --seed S           the stream (default: DN_HOSTILE_SEED, else 1)
    --from A           first call index (default 0)
    --chunk C          calls per child process (default 500)
    --call-seconds T   a call running longer is a hang (default 10, 30 under a sanitizer)
    --lua CMD          the interpreter (default lua5.4; build/dropnet also works)
    --keep DIR         keep the walk (catalog.lua) and findings.txt in DIR
    --max-findings M   stop after M findings (default 20)

Environment: LUA_PATH_5_4 / LUA_CPATH_5_4 as for the specs; DN_HOSTILE_SKIP
(see driver.lua) to run past known bugs; DN_HOSTILE_MEMORY_MB caps a child's
memory (default 4096): `ulimit -v` normally, ASan's allocator limits when
DN_HOSTILE_PRELOAD names the sanitizer runtimes to preload (the sanitizer
build sets it: lua5.4 itself is not instrumented).

Exit status: 0 when every call returned or raised, 1 on findings, 2 when the
harness itself failed.
--]]
local script_dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."

local function abs(path)
  if path:sub(1, 1) == "/" then return path end
  local p = io.popen("pwd")
  local cwd = p:read("l")
  p:close()
  return cwd .. "/" .. path
end
script_dir = abs(script_dir)
local DRIVER = script_dir .. "/driver.lua"

-- --- options -------------------------------------------------------------------

local preload = os.getenv("DN_HOSTILE_PRELOAD")
if preload == "" then preload = nil end
local opts = {
  calls = math.tointeger(tonumber(os.getenv("DN_HOSTILE_CALLS") or "")) or 20000,
  seed = math.tointeger(tonumber(os.getenv("DN_HOSTILE_SEED") or "")) or 1,
  from = 0, chunk = 500, call_seconds = preload and 30 or 10, lua = "lua5.4", max_findings = 20,
  memory_mb = math.tointeger(tonumber(os.getenv("DN_HOSTILE_MEMORY_MB") or "")) or 4096,
}
do
  local i = 1
  while arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == "--calls" then opts.calls = math.tointeger(tonumber(v))
    elseif a == "--seed" then opts.seed = math.tointeger(tonumber(v))
    elseif a == "--from" then opts.from = math.tointeger(tonumber(v))
    elseif a == "--chunk" then opts.chunk = math.tointeger(tonumber(v))
    elseif a == "--call-seconds" then opts.call_seconds = tonumber(v)
    elseif a == "--lua" then opts.lua = v
    elseif a == "--keep" then opts.keep = v
    elseif a == "--max-findings" then opts.max_findings = math.tointeger(tonumber(v))
    else
      io.stderr:write("hostile runner: unknown option " .. a .. "\n")
      os.exit(2)
    end
    if v == nil then
      io.stderr:write("hostile runner: " .. a .. " needs a value\n")
      os.exit(2)
    end
    i = i + 2
  end
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function last_line(path)
  local s = read(path)
  return s:match("([^\n]+)\n?$")
end

local scratch = capture("mktemp -d -t dropnet-hostile.XXXXXX")
if scratch == "" then
  io.stderr:write("hostile runner: mktemp failed\n")
  os.exit(2)
end
local keep = opts.keep and abs(opts.keep)
if keep then os.execute("mkdir -p " .. q(keep)) end
local catalog = (keep or scratch) .. "/catalog.lua"   -- the walk, read by every child and replay
os.remove(catalog)
local avoid_file = scratch .. "/avoid.txt"
local progress = scratch .. "/progress.txt"
local work = scratch .. "/work"   -- the children's working directory: every file they write lands here
os.execute("mkdir -p " .. q(work))

-- the environment a child needs, also printed in replay commands
local function sanitizer_env()
  local mb = opts.memory_mb
  -- one allocation at most a quarter of the budget, all of them half (ASan's
  -- shadow and quarantine take the rest): a huge request fails at once
  -- instead of being filled slowly by instrumented code
  return "ASAN_OPTIONS=" .. q("detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=" .. mb // 4 ..
    ":soft_rss_limit_mb=" .. mb // 2 .. ":exitcode=86:handle_abort=1") ..
    " UBSAN_OPTIONS=" .. q("print_stacktrace=1:halt_on_error=1:exitcode=87") .. " LD_PRELOAD=" .. q(preload)
end

local function lua_env()
  local parts = {}
  for _, name in ipairs {"LUA_PATH_5_4", "LUA_CPATH_5_4", "DN_HOSTILE_SKIP"} do
    local v = os.getenv(name)
    if v then parts[#parts + 1] = name .. "=" .. q(v) end
  end
  return table.concat(parts, " ")
end

-- Runs the driver with args in the work directory; returns a result table.
local extra_env = ""
local function run_driver(args, seconds)
  local out, err = scratch .. "/stdout.txt", scratch .. "/stderr.txt"
  os.remove(progress)
  local limits = "trap '' XFSZ; ulimit -f 409600; "   -- 200 MB per file: a runaway writer gets EFBIG
  local launch
  if preload then
    launch = "env " .. extra_env .. " " .. sanitizer_env() .. " " .. q(opts.lua)
  else
    limits = limits .. "ulimit -v " .. (opts.memory_mb * 1024) .. "; "
    launch = "env " .. extra_env .. " " .. q(opts.lua)
  end
  -- A watchdog polls the progress file, which the driver touches before
  -- every call: unchanged for call_seconds means one call is hanging, and
  -- the child is stopped at once (exit 125). `timeout` stays as a backstop.
  local cmd = limits .. "cd " .. q(work) .. " || exit 99\n" ..
    "timeout -k 5 " .. string.format("%d", math.ceil(seconds)) .. " " .. launch .. " " .. q(DRIVER) ..
    " --dir " .. q(work) .. " --catalog " .. q(catalog) .. " --progress " .. q(progress) ..
    " --call-seconds " .. opts.call_seconds .. " " .. args .. " >" .. q(out) .. " 2>" .. q(err) .. " &\n" ..
    "pid=$!; stalled=\n" ..
    "while kill -0 $pid 2>/dev/null; do\n" ..
    "  sleep 0.2\n" ..
    "  if [ -f " .. q(progress) .. " ] && [ $(( $(date +%s) - $(stat -c %Y " .. q(progress) .. ") )) -gt " ..
    string.format("%d", math.ceil(opts.call_seconds)) .. " ]; then\n" ..
    "    stalled=1; kill -TERM $pid 2>/dev/null; break\n" ..
    "  fi\n" ..
    "done\n" ..
    "wait $pid; rc=$?\n" ..
    "if [ -n \"$stalled\" ]; then exit 125; fi\n" ..
    "exit $rc\n"
  local t0 = os.time()
  local ok, how, code = os.execute("sh -c " .. q(cmd) .. " 2>/dev/null")   -- no "Segmentation fault" from sh
  local r = {ok = ok, how = how, code = code, stdout = read(out), stderr = read(err), seconds = os.time() - t0}
  local serr = r.stderr
  if serr:find("ERROR: AddressSanitizer", 1, true) or serr:find("ERROR: LeakSanitizer", 1, true) then
    r.class = "sanitizer (ASan)"
  elseif serr:find("runtime error:", 1, true) or serr:find("UndefinedBehaviorSanitizer", 1, true) then
    r.class = "sanitizer (UBSan)"
  elseif how == "signal" then
    r.class = "crash (signal " .. code .. ")"
  elseif how == "exit" and code == 125 then
    r.class = "hang (a call ran longer than " .. opts.call_seconds .. " s)"
  elseif how == "exit" and (code == 124 or code == 137) then
    r.class = "hang (no return within the time limit)"
  elseif how == "exit" and code == 3 then
    r.class = "hang (a call ran longer than " .. opts.call_seconds .. " s)"
  elseif how == "exit" and code > 128 then
    r.class = "crash (signal " .. (code - 128) .. ")"
  elseif how == "exit" and code ~= 0 then
    r.class = "crash (exit status " .. code .. ")"
  elseif not r.stdout:find("HOSTILE DONE", 1, true) and not r.stdout:find("hostile walk:", 1, true) and
      not r.stdout:find("-- r", 1, true) then
    r.class = "crash (ended without finishing)"
  end
  if serr:find("hostile driver", 1, true) or serr:find("hostile: ", 1, true) then r.harness = true end
  return r
end

-- --- findings -----------------------------------------------------------------------

local findings, by_signature = {}, {}
local log_lines = {}
local function say(s)
  print(s)
  log_lines[#log_lines + 1] = s
  io.stdout:flush()
end

-- The interesting part of a child's stderr: the sanitizer's first lines
-- and first frames in dropnet or Lua, or the last lines.
local function excerpt(stderr)
  local lines = {}
  for line in stderr:gmatch("[^\n]+") do lines[#lines + 1] = line end
  local out = {}
  for i, line in ipairs(lines) do
    if line:find("ERROR: AddressSanitizer") or line:find("runtime error:") or line:find("SUMMARY:") or
        (line:match("^%s+#%d+ ") and #out < 14) then
      out[#out + 1] = line
    end
    if i > 400 then break end
  end
  if #out == 0 then
    for i = math.max(1, #lines - 5), #lines do out[#out + 1] = lines[i] end
  end
  return out
end

-- Where it happened: the first stack frame in dropnet's code, else the UBSan line.
local function location(stderr)
  local ub = stderr:match("([%w_/%.%-]+:%d+:%d+): runtime error")
  if ub then return ub end
  for frame in stderr:gmatch("#%d+ 0x%x+ in ([^\n]+)") do
    if frame:find("/runtime/", 1, true) or frame:find("/bindings/", 1, true) then
      return (frame:gsub(" %(.-%)$", ""))
    end
  end
  return nil
end

-- The call as the driver prints it: its name and its code.
local function print_call(index)
  local out = run_driver("--seed " .. opts.seed .. " --print " .. index, 120).stdout
  local name = out:match("^%-%- hostile call %d+ %(seed %d+%): (.-) %[") or "?"
  return name, (out:gsub("^%-%- [^\n]*\n", ""):gsub("\n+$", ""))
end

local function replay_command(index)
  return lua_env() .. (preload and (" " .. sanitizer_env()) or "") .. " " .. opts.lua .. " " .. DRIVER ..
    " --catalog " .. catalog .. " --seed " .. opts.seed .. " --replay " .. index
end

local function record(index, r, note)
  local name, call = print_call(index)
  local loc = location(r.stderr)
  local sig = r.class .. " | " .. name .. " | " .. tostring(loc)
  local f = by_signature[sig]
  if not f then
    f = {signature = sig, class = r.class, name = name, location = loc, calls = {}, excerpt = excerpt(r.stderr)}
    by_signature[sig] = f
    findings[#findings + 1] = f
  end
  f.calls[#f.calls + 1] = {index = index, code = call, note = note}
  say(string.format("FINDING %s at call %d: %s%s", r.class, index, name, note and (" (" .. note .. ")") or ""))
  for line in call:gmatch("[^\n]+") do say("    " .. line) end
end

-- Confirms a failure seen in chunk [lo, ...) whose last call started was k:
-- call k alone, else the shortest run [s, k] that still fails (bisection).
local function narrow(lo, k, first)
  local solo = run_driver("--seed " .. opts.seed .. " --replay " .. k, opts.call_seconds * 2 + 10)
  if solo.class then
    record(k, solo)
    return
  end
  local function fails(s)
    local r = run_driver(string.format("--seed %d --from %d --to %d", opts.seed, s, k + 1),
      (k + 1 - s) * 0.2 + opts.call_seconds * 2 + 60)
    return r.class and r or nil
  end
  local r = fails(lo)
  if not r then
    local name, call = print_call(k)
    say(string.format("NOTE: %s in calls %d..%d did not happen again when replayed", first.class, lo, k))
    findings[#findings + 1] = {class = first.class .. ", not reproduced", name = name,
      calls = {{index = k, code = call, note = "last call started; chunk from " .. lo}}, excerpt = excerpt(first.stderr)}
    return
  end
  local good, bad = k, lo   -- [good, k] passes, [bad, k] fails
  while good - bad > 1 do
    local mid = (good + bad) // 2
    local m = fails(mid)
    if m then bad, r = mid, m else good = mid end
  end
  record(k, r, string.format("only after calls %d..%d: run them with --from %d --to %d", bad, k - 1, bad, k + 1))
end

-- --- the walk -------------------------------------------------------------------------

local t_start = os.time()
local avoid = {}
local walk
for _ = 1, 20 do
  local f = assert(io.open(avoid_file, "w"))
  for _, code in ipairs(avoid) do f:write(code, "\n") end
  f:close()
  extra_env = "DN_HOSTILE_AVOID=" .. q(avoid_file)
  walk = run_driver("--discover", 900)
  extra_env = ""
  if not walk.class then break end
  local code = last_line(progress)
  if not code or walk.harness then
    io.stderr:write("hostile runner: the API walk failed:\n" .. walk.stderr .. walk.stdout .. "\n")
    os.exit(2)
  end
  -- a call the walk made crashed: a finding; the walk runs again without it
  local display = code:gsub("^return ", ""):gsub("\\n", "\n")
  say(string.format("FINDING %s during the API walk: %s", walk.class, display))
  findings[#findings + 1] = {class = walk.class, name = "(API walk)", location = location(walk.stderr),
    calls = {{index = -1, code = display}}, excerpt = excerpt(walk.stderr)}
  avoid[#avoid + 1] = code
  os.remove(catalog)
end
local stop = opts.from + opts.calls
if walk.class then
  say("hostile: the API walk still crashes after 20 attempts; no calls run (the findings so far follow)")
  stop = opts.from
else
  say(walk.stdout:match("hostile walk: [^\n]*") or "hostile walk: ?")
  say(string.format("seed %d, calls %d..%d, chunks of %d, %s", opts.seed, opts.from, opts.from + opts.calls - 1,
    opts.chunk, preload and "sanitizer runtimes preloaded" or ("ulimit -v " .. opts.memory_mb .. " MB")))
end

-- --- the calls --------------------------------------------------------------------------

local totals = {ran = 0, raised = 0, skipped = 0, notrun = 0}
local slowest, slowest_at = 0, nil
local pos = opts.from
while pos < stop and #findings < opts.max_findings do
  local hi = math.min(pos + opts.chunk, stop)
  local r = run_driver(string.format("--seed %d --from %d --to %d", opts.seed, pos, hi),
    math.max(120, (hi - pos) * 0.2) + opts.call_seconds)
  local done = r.stdout:match("HOSTILE DONE ([^\n]*)")
  if done then
    for key, n in done:gmatch("(%a+)=(%d+)") do totals[key] = (totals[key] or 0) + tonumber(n) end
    local s, at = done:match("slowest=([%d%.]+)@(%d+)")
    if s and tonumber(s) > slowest then slowest, slowest_at = tonumber(s), at end
  end
  if not r.class then
    pos = hi
  elseif r.harness then
    io.stderr:write("hostile runner: the driver failed:\n" .. r.stderr .. "\n")
    os.exit(2)
  else
    local k = math.tointeger(tonumber(last_line(progress) or ""))
    if not k then
      io.stderr:write("hostile runner: a child failed before its first call:\n" .. r.stderr .. "\n")
      os.exit(2)
    end
    -- calls before k in this chunk ran; count them so the totals stay right
    totals.ran = totals.ran + (k - pos)
    narrow(pos, k, r)
    pos = k + 1
  end
end

-- --- report ------------------------------------------------------------------------------

local elapsed = os.time() - t_start
say("")
say(string.format("hostile: %d calls ran (%d raised a Lua error) in %d s; %d skipped by DN_HOSTILE_SKIP, %d not run " ..
  "(huge loop counts); slowest call %.2f s (#%s)", totals.ran, totals.raised, elapsed, totals.skipped,
  totals.notrun or 0, slowest, tostring(slowest_at)))
if #findings == 0 then
  say("hostile: no crash, no sanitizer report, no hang")
else
  say(string.format("hostile: %d finding(s)%s:", #findings,
    #findings >= opts.max_findings and " (stopped at --max-findings)" or ""))
  for i, f in ipairs(findings) do
    say("")
    say(string.format("[%d] %s in %s%s (%d call(s))", i, f.class, f.name, f.location and (" at " .. f.location) or "",
      #f.calls))
    for j, c in ipairs(f.calls) do
      if j > 3 then break end
      if c.index < 0 then say("  a call of the API walk:")
      else say(string.format("  call %d%s:", c.index, c.note and (" (" .. c.note .. ")") or "")) end
      for line in c.code:gmatch("[^\n]+") do say("      " .. line) end
    end
    if f.calls[1].index >= 0 then say("  replay: " .. replay_command(f.calls[1].index)) end
    if f.calls[1].note and f.calls[1].note:find("only after") then say("  (the replay above runs the call alone)") end
    for _, line in ipairs(f.excerpt) do say("  | " .. line) end
  end
end
if keep then
  local fh = io.open(keep .. "/findings.txt", "w")
  if fh then
    fh:write(table.concat(log_lines, "\n"), "\n")
    fh:close()
  end
end
-- the catalog stays while the replay commands above need it
if keep or #findings == 0 then os.execute("rm -rf " .. q(scratch)) end
os.exit(#findings == 0 and 0 or 1)
