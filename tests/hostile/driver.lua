--[[
The hostile-input driver: runs calls [from, to) of the stream defined by a
seed, each in pcall, in the current process. A call may return or raise;
anything else (a crash, a sanitizer report, a hang) is what the runner
(runner.lua) watches for from outside.

  lua5.4 tests/hostile/driver.lua [options]
    --seed S          the stream (default 1)
    --from A --to B   call indices A .. B-1 (default 0 .. 1000)
    --replay N        print call N and run it alone (with its error, if any)
    --print N         print call N without running it
    --catalog FILE    read the API walk from FILE, or write it there first
    --discover        only walk the API (into --catalog), print the counts
    --list            print every callable and object kind the walk found
    --progress FILE   write "index" before each call (the runner reads the last)
    --dir DIR         work in DIR (default: a new temporary directory, removed after)
    --call-seconds T  a call that returns after more than T seconds is a hang (default 10)
    --trace           print each call's index, seconds, memory and outcome on stderr
    --check           only build and compile calls --from .. --to (a test of the generator)

DN_HOSTILE_SKIP="narrow,reshape,code:2^62" skips calls whose callable name
contains one of the words (or, with "code:", whose program contains the
text): a local way to run past known bugs. Skipped calls still take their
index, so the numbering never changes.
--]]
local script_dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = script_dir .. "/?.lua;" .. package.path

local dn = require "dropnet"
local W = require "walk"
local G = require "calls"

-- --- options -------------------------------------------------------------------

local opts = {seed = 1, from = 0, to = 1000, call_seconds = 10}
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    local function value()
      i = i + 1
      if arg[i] == nil then error("hostile driver: " .. a .. " needs a value", 0) end
      return arg[i]
    end
    if a == "--seed" then opts.seed = math.tointeger(tonumber(value()))
    elseif a == "--from" then opts.from = math.tointeger(tonumber(value()))
    elseif a == "--to" then opts.to = math.tointeger(tonumber(value()))
    elseif a == "--replay" then opts.replay = math.tointeger(tonumber(value()))
    elseif a == "--print" then opts.print = math.tointeger(tonumber(value()))
    elseif a == "--catalog" then opts.catalog = value()
    elseif a == "--progress" then opts.progress = value()
    elseif a == "--dir" then opts.dir = value()
    elseif a == "--call-seconds" then opts.call_seconds = tonumber(value())
    elseif a == "--discover" then opts.discover = true
    elseif a == "--list" then opts.list = true
    elseif a == "--trace" then opts.trace = true
    elseif a == "--check" then opts.check = true
    else error("hostile driver: unknown option " .. a, 0) end
    i = i + 1
  end
  if not opts.seed or not opts.from or not opts.to then error("hostile driver: bad --seed/--from/--to", 0) end
end

-- --- the working directory ------------------------------------------------------------

-- Calls write files (dn.save("x", ...)) relative to the process's directory,
-- which Lua cannot change: the driver runs in --dir, or starts itself again
-- in a new temporary directory (removed afterwards).
local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function cwd()
  local p = assert(io.popen("pwd"))
  local d = p:read("l")
  p:close()
  return d
end
if not (opts.print or opts.list or opts.check) and cwd() ~= opts.dir then
  local here = cwd()
  local function absolute(path) return path:sub(1, 1) == "/" and path or here .. "/" .. path end
  local dir, made = opts.dir, false
  if not dir then
    local p = assert(io.popen("mktemp -d -t dropnet-hostile.XXXXXX"))
    dir, made = p:read("l"), true
    p:close()
  end
  local args = {}
  for i = 1, #arg do
    local v = arg[i]
    if arg[i - 1] == "--catalog" or arg[i - 1] == "--progress" then v = absolute(v) end
    args[i] = shell_quote(v)
  end
  if made then args[#args + 1] = "--dir " .. shell_quote(dir) end
  local ok, how, code = os.execute("cd " .. shell_quote(dir) .. " && exec " .. shell_quote(arg[-1] or "lua5.4") ..
    " " .. shell_quote(absolute(arg[0])) .. " " .. table.concat(args, " "))
  if made then os.execute("rm -rf " .. shell_quote(dir)) end
  if how == "signal" then os.exit(128 + code) end
  os.exit(code or (ok and 0 or 1))
end

-- Small files for the readers and symlinks to the devices (relative names
-- only; see pool.lua), made once and remade after any call whose program
-- names them (only such a call can have written over them).
local FIXTURES = {"hostile.idx", "hostile.safetensors", "hostile.ckpt", "hostile.csv", "dev-zero", "dev-null"}
local fixture_bytes
local function remake(name)
  local dev = name:match("^dev%-(%a+)$")
  if dev then
    os.remove(name)
    os.execute("ln -sf /dev/" .. dev .. " " .. name)
    return
  end
  local fh = io.open(name, "wb")
  if fh then
    fh:write(fixture_bytes[name])
    fh:close()
  end
end
local function fixtures(previous_program)
  if not fixture_bytes then
    local x = dn.tensor({{1, 2, 3}, {4, 5, 6}})
    dn.idx_write("hostile.idx", dn.tensor({1, 2, 3}, "int32"))
    dn.save("hostile.safetensors", {x = x}, {note = "hostile"})
    require("dropnet.checkpoint").save("hostile.ckpt", {model = {w = x}, epoch = 1})
    local f = assert(io.open("hostile.csv", "w"))
    f:write("1,2,3\n4,5,6\n")
    f:close()
    fixture_bytes = {}
    for _, name in ipairs(FIXTURES) do
      if name:match("^dev%-") then
        remake(name)
      else
        local fh = assert(io.open(name, "rb"))
        fixture_bytes[name] = fh:read("a")
        fh:close()
      end
    end
    return
  end
  if previous_program then
    for _, name in ipairs(FIXTURES) do
      if previous_program:find(name, 1, true) then remake(name) end
    end
  end
end

-- Global state a call may change, put back before every call so that a call
-- depends on its index only.
local initial_threads = dn.get_num_threads()
local function reset()
  dn.set_grad_enabled(true)
  dn.manual_seed(0x5EED)
  if dn.get_num_threads() ~= initial_threads then dn.set_num_threads(initial_threads) end
end

local env = setmetatable({dn = dn}, {__index = _G})

-- --- the catalog -----------------------------------------------------------------------

local function get_catalog()
  local cat = opts.catalog and W.load(opts.catalog)
  if cat then return cat end
  fixtures()
  local trace
  if opts.progress then
    local pf = assert(io.open(opts.progress, "w"))
    trace = function(code)
      pf:write((code:gsub("\n", "\\n")), "\n")   -- one line per try; the runner reads the last
      pf:flush()
    end
  end
  -- codes that crashed an earlier walk (the runner lists them): not run again
  local avoid = {}
  local af = os.getenv("DN_HOSTILE_AVOID") and io.open(os.getenv("DN_HOSTILE_AVOID"))
  if af then
    for line in af:lines() do avoid[line:gsub("\\n", "\n")] = true end
    af:close()
  end
  cat = W.catalog(dn, env, reset, {trace = trace, avoid = avoid,
    log = os.getenv("DN_HOSTILE_VERBOSE") and function(s) io.stderr:write(s, "\n") end})
  if opts.catalog then W.save(cat, opts.catalog) end
  return cat
end

local function counts(cat)
  local by = {}
  for _, c in ipairs(cat.callables) do by[c.type] = (by[c.type] or 0) + 1 end
  local parts = {}
  for _, t in ipairs {"function", "constructor", "method", "metamethod", "operator", "property", "setter", "field",
    "returned"} do
    parts[#parts + 1] = string.format("%s %d", t, by[t] or 0)
  end
  return string.format("%d callables (%s), %d object kinds", #cat.callables, table.concat(parts, ", "), #cat.kinds)
end

local catalog = get_catalog()

if opts.discover then
  print("hostile walk: " .. counts(catalog))
  os.exit(0)
end

if opts.list then
  print("hostile walk: " .. counts(catalog))
  print("modules: " .. table.concat(catalog.modules, ", "))
  if #catalog.denied > 0 then print("denied: " .. table.concat(catalog.denied, ", ")) end
  for _, k in ipairs(catalog.kinds) do
    print(string.format("kind %s  made by %s", k.name, table.concat(k.ctors, " | ")))
  end
  for _, c in ipairs(catalog.callables) do
    print(string.format("%-12s %s%s", c.type, c.name, c.valid and ("  valid: (" .. table.concat(c.valid, ", ") .. ")") or ""))
  end
  os.exit(0)
end

-- the type of the value code makes, for same-type mutations (cached: the
-- pool and the valid arguments are a few hundred codes)
local type_cache = {}
local function typeof(code)
  local t = type_cache[code]
  if t then return t end
  local ok, res = W.run("return " .. code, env, reset)
  local v = ok and res[1]
  t = not ok and "error" or dn.is_tensor(v) and "tensor" or type(v)
  type_cache[code] = t
  return t
end

local gen = G.new(catalog, typeof)

local skip_names, skip_code = {}, {}
for word in (os.getenv("DN_HOSTILE_SKIP") or ""):gmatch("[^,]+") do
  local code = word:match("^code:(.*)$")
  if code then skip_code[#skip_code + 1] = code else skip_names[#skip_names + 1] = word end
end
local function skipped(call)
  for _, w in ipairs(skip_names) do
    if call.name:find(w, 1, true) then return true end
  end
  for _, w in ipairs(skip_code) do
    if call.program:find(w, 1, true) then return true end
  end
  return false
end

-- --- running calls ------------------------------------------------------------------------

local function describe_results(res)
  for i = 1, math.min(res.n, 4) do
    pcall(tostring, res[i])   -- results print: __tostring of whatever came back
  end
end

local previous_program
local function run_call(call)
  reset()
  fixtures(previous_program)
  previous_program = call.program
  local f = W.compile(call.program, env)
  local t0 = dn.clock()
  local res = table.pack(pcall(f))
  if res[1] then
    describe_results(table.pack(table.unpack(res, 2, res.n)))
  elseif type(res[2]) == "string" and res[2]:find("not enough memory", 1, true) then
    collectgarbage()   -- the next call starts with the memory back
  end
  return res, dn.clock() - t0
end

if opts.print or opts.replay then
  local index = opts.print or opts.replay
  local call = gen(opts.seed, index)
  print(string.format("-- hostile call %d (seed %d): %s [%s]", index, opts.seed, call.name, call.type))
  print(call.program:gsub("^return ", "", 1):find("\n") and call.program or call.display)
  if call.not_run then print("-- not run: " .. call.not_run) end
  if opts.print or call.not_run then os.exit(0) end
  io.stdout:flush()
  if opts.progress then   -- the runner's watchdog reads it
    local pf = assert(io.open(opts.progress, "w"))
    pf:write(index, "\n")
    pf:close()
  end
  local res, seconds = run_call(call)
  if res[1] then
    print(string.format("-- returned (%.3f s)", seconds))
  else
    local ok, msg = pcall(tostring, res[2])
    print(string.format("-- raised (%.3f s): %s", seconds, ok and msg or "(error object)"))
  end
  if seconds > opts.call_seconds then
    io.stderr:write(string.format("HOSTILE SLOW %d %.1f\n", index, seconds))
    os.exit(3)
  end
  os.exit(0)
end

if opts.check then
  local by_type = {}
  for index = opts.from, opts.to - 1 do
    local call = gen(opts.seed, index)
    W.compile(call.program, env)
    by_type[call.type] = (by_type[call.type] or 0) + 1
  end
  local parts = {}
  for _, t in ipairs(W.sorted_keys(by_type)) do parts[#parts + 1] = t .. " " .. by_type[t] end
  print(string.format("HOSTILE CHECKED %d calls compile (%s)", opts.to - opts.from, table.concat(parts, ", ")))
  os.exit(0)
end

local progress = opts.progress and assert(io.open(opts.progress, "w"))
local ran, raised, skips, not_run = 0, 0, 0, 0
local slowest, slowest_index = 0, nil
for index = opts.from, opts.to - 1 do
  local call = gen(opts.seed, index)
  if call.not_run then
    not_run = not_run + 1
  elseif skipped(call) then
    skips = skips + 1
  else
    if progress then
      progress:write(index, "\n")
      progress:flush()
    end
    local res, seconds = run_call(call)
    ran = ran + 1
    if not res[1] then raised = raised + 1 end
    if seconds > slowest then slowest, slowest_index = seconds, index end
    if opts.trace then
      local msg = ""
      if not res[1] then
        local ok, m = pcall(tostring, res[2])
        msg = ": " .. (ok and m or "(error object)"):gsub("\n.*", ""):sub(1, 200)
      end
      io.stderr:write(string.format("%d %.3f s %d MB %s %s%s\n", index, seconds, dn.memory_stats().live_bytes >> 20,
        res[1] and "returned" or "raised", call.name, msg))
    end
    if seconds > opts.call_seconds then
      io.stderr:write(string.format("HOSTILE SLOW %d %.1f\n", index, seconds))
      os.exit(3)
    end
    if index % 64 == 63 then collectgarbage() end
  end
end
collectgarbage()
collectgarbage()
print(string.format("HOSTILE DONE ran=%d raised=%d skipped=%d notrun=%d slowest=%.3f@%s", ran, raised, skips,
  not_run, slowest, tostring(slowest_index)))
os.exit(0)
