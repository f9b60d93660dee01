--- dropnet.run: the plumbing every experiment script needs — a run
-- directory, a CSV table rewritten atomically, a progress bar on a terminal,
-- durations as text — so that a 30-line script writes what scripts/train.lua
-- writes.
--
--   local run = require "dropnet.run"
--   local out = run.directory(opts.out)            -- runs/<timestamp>/ by default, checked writable
--   local log = run.csv(out .. "/metrics.csv", {"epoch", "loss"})
--   local bar = run.progress("epoch 1/5", #loader)
--   for i, x, y in ... do ... bar:update(i, string.format("loss %.4f", loss)) end
--   bar:close()
--   log:add{1, 0.53}
local dn = require "dropnet"
local check = require "dropnet.check"

local fail, describe = check.fail, check.describe
-- What a script's command-line user is told (a bad option, an output directory
-- in the way) carries no "file:line: ": the user ran a command, the line of
-- the script that called run.* would only be noise on their terminal.
local function tell(fmt, ...) error(string.format(fmt, ...), 0) end

local run = {}

--- The run directory: `out`, or runs/<YYYYmmdd-HHMMSS> when nil, created
-- with its parents and checked writable before any work is done.
-- @treturn string the directory
function run.directory(out)
  if out ~= nil and (type(out) ~= "string" or out == "") then
    fail("run.directory: out must be a non-empty string or nil (got %s)", describe(out))
  end
  out = out or os.date("runs/%Y%m%d-%H%M%S")
  local ok, err = pcall(dn.mkdir, out)
  if not ok then tell("run.directory: cannot use %s as the output directory (%s)", out, err) end
  local probe = out .. "/.dropnet-write-test"
  ok, err = pcall(dn.write_file, probe, "")
  if not ok then tell("run.directory: cannot write into %s (%s)", out, err) end
  os.remove(probe)
  return out
end

--- "42s", "3m05s" or "1h02m" for a number of seconds.
function run.format_time(seconds)
  if not check.is_finite(seconds) or seconds < 0 then
    fail("run.format_time: seconds must be a finite number >= 0 (got %s)", describe(seconds))
  end
  seconds = math.floor(seconds + 0.5)
  if seconds >= 3600 then return string.format("%dh%02dm", seconds // 3600, seconds % 3600 // 60) end
  if seconds >= 60 then return string.format("%dm%02ds", seconds // 60, seconds % 60) end
  return string.format("%ds", seconds)
end

-- --- command-line options --------------------------------------------------------------

local KINDS = {int = "a whole number", num = "a number", string = "a value", flag = true}

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = {[0] = i}
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- Parses a script's arguments (`arg`) against `spec`, a list of
-- {name, kind, default} with kind "int", "num", "string" or "flag" (a name
-- "batch_size" is written --batch-size). Accepts `--name value` and
-- `--name=value`; a flag takes no value. `--help` gives `help = true`.
-- Errors name the option and, for a misspelt one, the closest known name.
-- @treturn table the options, defaults filled in
-- @treturn table the names given on the command line (name -> true)
function run.parse_args(argv, spec)
  if type(argv) ~= "table" then fail("run.parse_args: argv must be a table (got %s)", describe(argv)) end
  if type(spec) ~= "table" then fail("run.parse_args: spec must be a list (got %s)", describe(spec)) end
  local kinds, opts, given, names = {}, {}, {}, {}
  for i, entry in ipairs(spec) do
    local name, kind = type(entry) == "table" and entry[1], type(entry) == "table" and entry[2]
    if type(name) ~= "string" or not KINDS[kind] then
      fail("run.parse_args: spec[%d] must be {name, \"int\"|\"num\"|\"string\"|\"flag\", default} (got %s)", i,
        describe(entry))
    end
    kinds[name], opts[name] = kind, entry[3]
    names[#names + 1] = name
  end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      opts.help, given.help = true, true
    elseif type(a) == "string" and a:sub(1, 2) == "--" then
      local key, value = a:sub(3), nil
      local eq = key:find("=", 1, true)
      if eq then key, value = key:sub(1, eq - 1), key:sub(eq + 1) end
      key = key:gsub("-", "_")
      local kind = kinds[key]
      if not kind then
        local best, best_d
        for _, n in ipairs(names) do
          local d = distance(key, n)
          if not best_d or d < best_d then best, best_d = n, d end
        end
        local hint = best and best_d <= math.max(2, #key // 3)
          and string.format(" (did you mean --%s?)", (best:gsub("_", "-"))) or ""
        tell("unknown option '%s'%s; see --help", a, hint)
      end
      if kind == "flag" then
        if value then tell("option '--%s' takes no value (got '%s')", (key:gsub("_", "-")), value) end
        opts[key] = true
      else
        if not value then
          value = argv[i + 1]
          if value == nil then tell("option '%s' needs %s", a, KINDS[kind]) end
          i = i + 1
        end
        if kind == "int" or kind == "num" then
          local n = tonumber(value)
          if not n or (kind == "int" and math.tointeger(n) == nil) then
            tell("option '--%s' needs %s (got '%s')", (key:gsub("_", "-")), KINDS[kind], value)
          end
          value = kind == "int" and math.tointeger(n) or n
        end
        opts[key] = value
      end
      given[key] = true
    else
      tell("unexpected argument '%s'; see --help", tostring(a))
    end
    i = i + 1
  end
  return opts, given
end

-- --- CSV --------------------------------------------------------------------------------

local Csv = {}
Csv.__index = Csv

local function csv_field(v)
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then return string.format("%.9g", v) end
  local s = tostring(v)
  if s:find('[,"\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

--- A CSV table at `path` with the given column names, rewritten whole and
-- atomically (dn.write_file) at every :add, so a run stopped at any moment
-- leaves a complete file.
function run.csv(path, columns)
  if type(path) ~= "string" then fail("run.csv: path must be a string (got %s)", describe(path)) end
  if type(columns) ~= "table" or #columns == 0 then
    fail("run.csv: columns must be a non-empty list of names (got %s)", describe(columns))
  end
  local names = {}
  for i, c in ipairs(columns) do
    if type(c) ~= "string" then fail("run.csv: columns[%d] must be a string (got %s)", i, describe(c)) end
    names[i] = csv_field(c)
  end
  local self = setmetatable({path = path, columns = columns, lines = {table.concat(names, ",")}}, Csv)
  self:_write()
  return self
end

function Csv:_write()
  dn.write_file(self.path, table.concat(self.lines, "\n") .. "\n")
end

--- Adds a row: a list in column order, or a table keyed by column name.
function Csv:add(row)
  if type(row) ~= "table" then fail("Csv:add: row must be a table (got %s)", describe(row)) end
  local fields = {}
  for i, name in ipairs(self.columns) do
    local v = row[name]
    if v == nil then v = row[i] end
    if v == nil then fail("Csv:add: no value for column '%s' (column %d)", name, i) end
    fields[i] = csv_field(v)
  end
  self.lines[#self.lines + 1] = table.concat(fields, ",")
  self:_write()
  return self
end

-- --- progress ---------------------------------------------------------------------------

local Progress = {}
Progress.__index = Progress

--- A progress bar of `total` steps drawn in place on stderr when it is a
-- terminal (redrawn at most 10 times a second), silent otherwise (a log
-- file gets no control characters). options: `enabled` (default: stderr is
-- a terminal), `unit` (what a step counts for the rate, e.g. 128 samples per
-- batch; default 1), `unit_name` (default "steps").
function run.progress(label, total, options)
  if type(label) ~= "string" then fail("run.progress: label must be a string (got %s)", describe(label)) end
  check.int("run.progress", "total", total, 0)
  options = check.options("run.progress", "options", options, {"enabled", "unit", "unit_name"})
  local enabled = options.enabled
  if enabled == nil then enabled = dn.isatty(io.stderr) else check.bool("run.progress", "enabled", enabled) end
  local unit = options.unit == nil and 1 or options.unit
  if not check.is_finite(unit) or unit <= 0 then
    fail("run.progress: unit must be a number > 0 (got %s)", describe(unit))
  end
  return setmetatable({label = label, total = total, enabled = enabled, unit = unit,
    unit_name = options.unit_name or "steps", t0 = dn.clock(), last = -1}, Progress)
end

--- Shows `done` of the total steps, with an optional status text.
function Progress:update(done, status)
  if not self.enabled then return end
  local now = dn.clock()
  if done < self.total and now - self.last < 0.1 then return end
  self.last = now
  local width, elapsed = 28, math.max(now - self.t0, 1e-9)
  local filled = self.total > 0 and math.floor(width * math.min(done, self.total) / self.total) or width
  local eta = (self.total - done) * elapsed / math.max(done, 1)
  io.stderr:write(string.format("\r\27[K%s [%s%s] %d/%d  %s%s%.0f %s/s  ETA %s", self.label,
    string.rep("=", filled), string.rep(" ", width - filled), done, self.total, status or "",
    status and "  " or "", done * self.unit / elapsed, self.unit_name, run.format_time(math.max(eta, 0))))
  io.stderr:flush()
end

--- Clears the bar's line (the next print starts on a clean line).
function Progress:close()
  if not self.enabled then return end
  io.stderr:write("\r\27[K")
  io.stderr:flush()
end

return run
