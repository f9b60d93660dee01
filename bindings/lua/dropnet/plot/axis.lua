--- dropnet.plot.axis: the axes of dropnet.plot's charts (internal, used by
-- dropnet.plot only): an axis's data range, and its ticks and their labels,
-- linear (multiples of 1, 2 or 5 times a power of ten) or log10. Pure Lua,
-- like dropnet.plot: it needs neither the C module nor a display.
local check = require "dropnet.check"

local axes = {}

local fail, describe = check.fail, check.describe
local floor, ceil, max, min, abs = math.floor, math.ceil, math.max, math.min, math.abs
local log10 = function(v) return math.log(v, 10) end

-- "1.50e+06" -> "1.5e6"
local function short_scientific(v, digits)
  local s = string.format("%." .. digits .. "e", v)
  local mantissa, exponent = s:match("^(.-)e(.*)$")
  if mantissa:find(".", 1, true) then mantissa = mantissa:gsub("0+$", ""):gsub("%.$", "") end
  return mantissa .. "e" .. math.tointeger(tonumber(exponent))
end

-- --- ticks --------------------------------------------------------------------------------

-- An axis: lo and hi (the data range drawn), ticks {value, label}, log flag.

--- Tick k of a linear step m * 10^e, computed so that 3 * 0.1 gives 0.3.
local function tick_value(k, m, e)
  if e >= 0 then return k * m * 10.0 ^ e end
  return k * m / 10.0 ^ -e
end

local function linear_labels(ticks, e)
  local largest = 0
  for _, t in ipairs(ticks) do largest = max(largest, abs(t[1])) end
  local scientific = largest >= 1e6 or (largest > 0 and largest < 1e-3)
  for _, t in ipairs(ticks) do
    local v = t[1]
    if v == 0 then
      t[2] = scientific and "0" or string.format("%." .. max(0, -e) .. "f", 0)
    elseif scientific then
      t[2] = short_scientific(v, max(0, floor(log10(abs(v)) + 1e-9) - e))
    else
      t[2] = string.format("%." .. max(0, -e) .. "f", v)
    end
  end
end

-- Ticks at multiples of 1, 2 or 5 times a power of ten, at most about
-- max_ticks of them; with `fixed` the range is kept, otherwise it grows to
-- the nearest ticks outside the data so the ticks cover it.
local function linear_axis(lo, hi, fixed, max_ticks)
  local span = hi - lo
  local raw = span / max(1, max_ticks)
  local e = floor(log10(raw))
  local m
  for _, candidate in ipairs({1, 2, 5, 10}) do
    m = candidate
    if span / (candidate * 10.0 ^ e) <= max_ticks + 1e-9 then break end
  end
  if m == 10 then m, e = 1, e + 1 end
  local step = m * 10.0 ^ e
  local k_lo, k_hi
  if fixed then
    k_lo, k_hi = ceil(lo / step - 1e-9), floor(hi / step + 1e-9)
  else
    k_lo, k_hi = floor(lo / step + 1e-9), ceil(hi / step - 1e-9)
    lo, hi = tick_value(k_lo, m, e), tick_value(k_hi, m, e)
  end
  local ticks = {}
  for k = k_lo, k_hi do ticks[#ticks + 1] = {tick_value(k, m, e)} end
  linear_labels(ticks, e)
  return {lo = lo, hi = hi, ticks = ticks}
end

local function log_label(v)
  if v >= 1 and v < 1e6 then return string.format("%.0f", v) end
  if v >= 1e-4 and v < 1 then return string.format("%.4g", v) end
  return short_scientific(v, 0)
end

-- Log ticks: 1-2-5 in every decade for short ranges, otherwise every d-th
-- decade, with d chosen so there are at most about max_ticks.
local function log_axis(lo, hi, fixed, max_ticks)
  local e_lo, e_hi = log10(lo), log10(hi)
  local values = {}
  if e_hi - e_lo <= 2.5 then
    local first, last = floor(e_lo + 1e-9) - 1, ceil(e_hi - 1e-9)
    for e = first, last do
      for _, m in ipairs({1, 2, 5}) do values[#values + 1] = m * 10.0 ^ e end
    end
  else
    local d = max(1, ceil((e_hi - e_lo) / max(1, max_ticks)))
    for e = floor(e_lo / d + 1e-9) * d, ceil(e_hi / d - 1e-9) * d, d do values[#values + 1] = 10.0 ^ e end
  end
  local ticks = {}
  if fixed then
    for _, v in ipairs(values) do
      if v >= lo * (1 - 1e-9) and v <= hi * (1 + 1e-9) then ticks[#ticks + 1] = {v, log_label(v)} end
    end
  else
    local new_lo, new_hi = values[1], values[#values]
    for _, v in ipairs(values) do
      if v <= lo * (1 + 1e-9) then new_lo = v end
    end
    for i = #values, 1, -1 do
      if values[i] >= hi * (1 - 1e-9) then new_hi = values[i] end
    end
    lo, hi = new_lo, new_hi
    for _, v in ipairs(values) do
      if v >= lo and v <= hi then ticks[#ticks + 1] = {v, log_label(v)} end
    end
  end
  return {lo = lo, hi = hi, ticks = ticks, log = true}
end

-- The data range of one axis over all drawable points, padded when it is a
-- single value; the default when there is no data.
function axes.data_range(where, chart, axis_name)
  local lo, hi = math.huge, -math.huge
  for _, s in ipairs(chart.series) do
    for i = 1, s.n do
      if s.valid[i] then
        local v = axis_name == "x" and s.x[i] or s.y[i]
        if v < lo then lo = v end
        if v > hi then hi = v end
      end
    end
  end
  local log = axis_name == "y" and chart.log_y
  if lo > hi then return log and 1 or 0, log and 10 or 1 end
  if log then
    -- beyond these the decade arithmetic under/overflows; such points are clipped
    lo, hi = min(max(lo, 1e-300), 1e299), max(min(hi, 1e300), 1e-299)
    if hi / lo < 1 + 1e-9 then lo, hi = lo / 2, hi * 2 end
    return lo, hi
  end
  if hi - lo == math.huge then
    fail("%s: %s values span too wide a range to plot (%s to %s)", where, axis_name, describe(lo), describe(hi))
  end
  if hi - lo <= 1e-12 * max(abs(lo), abs(hi)) or hi - lo < 1e-300 then
    local pad = abs(lo) > 1e-300 and abs(lo) * 0.1 or 1
    lo, hi = lo - pad, hi + pad
  end
  return lo, hi
end

-- Builds an axis for an axis length in pixels, at most one tick per
-- min_spacing pixels and never more than MAX_TICKS (a 2^31 px wide chart
-- would otherwise ask for millions, and the x loop below removes them one
-- at a time); on x, fewer ticks until the labels do not touch, a label s
-- being label_width(s) pixels wide.
local MAX_TICKS = 50
function axes.make(chart, axis_name, lo, hi, fixed, length, min_spacing, label_width)
  local max_ticks = max(2, min(MAX_TICKS, floor(length / min_spacing)))
  local axis
  while true do
    if axis_name == "y" and chart.log_y then
      axis = log_axis(lo, hi, fixed, max_ticks)
    else
      axis = linear_axis(lo, hi, fixed, max_ticks)
    end
    if axis_name ~= "x" or max_ticks <= 2 then break end
    local widest = 0
    for _, t in ipairs(axis.ticks) do widest = max(widest, label_width(t[2])) end
    if #axis.ticks < 2 or length / (#axis.ticks - 1) >= widest + 20 then break end
    max_ticks = max_ticks - 1
  end
  return axis
end

return axes
