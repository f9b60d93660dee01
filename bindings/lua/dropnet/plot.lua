--- dropnet.plot: small, dependency-free SVG line charts (training curves,
-- gradient statistics). Pure Lua: it needs neither the C module nor a display.
--
--   local plot = require "dropnet.plot"
--   local svg = plot.line_chart{title = "Loss", x_label = "epoch", y_label = "loss",
--     series = {{name = "train", y = train_loss}, {name = "test", y = test_loss, dash = true}}}
--   plot.save("runs/x/loss.svg", svg)
--
-- Values may be Lua lists of numbers or 1-D tensors. NaN and infinite values
-- (and values <= 0 on a log axis) leave a gap in the line. Colors come from the
-- Okabe-Ito palette (color-blind safe), assigned by series name, so a series
-- named "test" has the same color in every panel of plot.panels.
local check = require "dropnet.check"
local axes = require "dropnet.plot.axis"

local plot = {}

--- The default series colors (Okabe-Ito), in the order they are handed out.
-- Yellow comes last: it is the hardest to see on white.
plot.palette = {"#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"}

local FONT_FAMILY = "DejaVu Sans, Helvetica, Arial, sans-serif"
local TICK_FONT, LABEL_FONT, TITLE_FONT, LEGEND_FONT = 12, 13, 15, 12
local CHAR_WIDTH = 0.6     -- average glyph advance in em: text widths are estimated, not measured
local TICK_LENGTH, TICK_GAP = 4, 4
local LINE_WIDTH, MARKER_RADIUS, MAX_MARKED_POINTS = 2, 3, 30
local DEFAULT_DASH = "6,4"
local TEXT_COLOR, AXIS_COLOR, GRID_COLOR = "#262626", "#4d4d4d", "#e5e5e5"
-- a point further than this many axis lengths outside the range is drawn at
-- that distance: keeps coordinates finite and short, and is never visible
local FAR = 1e6

local floor, ceil, max, min, abs = math.floor, math.ceil, math.max, math.min, math.abs
local log10 = function(v) return math.log(v, 10) end

-- --- checks --------------------------------------------------------------------------

local fail, describe, is_finite = check.fail, check.describe, check.is_finite

local function set_of(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

local function check_text(where, key, v)
  if v == nil or type(v) == "string" then return v end
  if type(v) == "number" then return tostring(v) end
  fail("%s: %s must be a string (got %s)", where, key, describe(v))
end

local function check_size(where, key, v, default)
  if v == nil then return default end
  if type(v) ~= "number" or not is_finite(v) or v <= 0 then
    fail("%s: %s must be a finite number > 0 (got %s)", where, key, describe(v))
  end
  return v
end

local function check_range(where, key, v, positive)
  if v == nil then return nil end
  if type(v) ~= "table" or type(v[1]) ~= "number" or type(v[2]) ~= "number" or #v ~= 2 then
    fail("%s: %s must be a table {lo, hi} of two numbers (got %s)", where, key, describe(v))
  end
  local lo, hi = v[1], v[2]
  if not is_finite(lo) or not is_finite(hi) or not (lo < hi) then
    fail("%s: %s must have finite lo < hi (got {%s, %s})", where, key, describe(lo), describe(hi))
  end
  if hi - lo == math.huge or hi - lo < 1e-300 then
    fail("%s: %s {%s, %s} is too wide or too narrow to plot", where, key, describe(lo), describe(hi))
  end
  if positive and lo <= 0 then
    fail("%s: %s must be > 0 on a log axis (got {%s, %s})", where, key, describe(lo), describe(hi))
  end
  return {lo, hi}
end

-- Reads a list of numbers from a Lua list or a 1-D tensor (anything with :totable()).
local function read_values(where, what, v)
  local totable
  if type(v) == "userdata" or (type(v) == "table" and getmetatable(v) ~= nil) then
    local ok, method = pcall(function() return v.totable end)
    if ok and type(method) == "function" then totable = method end
  end
  if totable then
    local values = totable(v)
    local dims, probe = 0, values
    while type(probe) == "table" do
      dims = dims + 1
      probe = probe[1]
    end
    if dims ~= 1 then
      fail("%s: %s must be a 1-D tensor (got %d dims)", where, what, dims)
    end
    v = values
  end
  if type(v) ~= "table" then
    fail("%s: %s must be a list of numbers or a 1-D tensor (got %s)", where, what, describe(v))
  end
  local n = #v
  for i = 1, n do
    if type(v[i]) ~= "number" then
      fail("%s: %s[%d] is %s (expected a number)", where, what, i, describe(v[i]))
    end
  end
  return v, n
end

-- A dash pattern: true (the default dash), "6 4", "6,4" or {6, 4}; nil for solid.
local function check_dash(where, v)
  if v == nil or v == false then return nil end
  if v == true then return DEFAULT_DASH end
  local parts = {}
  if type(v) == "string" then
    for word in v:gmatch("[^%s,]+") do parts[#parts + 1] = tonumber(word) or word end
  elseif type(v) == "table" then
    for i = 1, #v do parts[i] = v[i] end
  else
    fail("%s: dash must be true, a string such as \"6 4\" or a list of numbers (got %s)", where, describe(v))
  end
  if #parts == 0 then fail("%s: dash %s has no lengths", where, describe(v)) end
  local any_positive = false
  for i, length in ipairs(parts) do
    if type(length) ~= "number" or not is_finite(length) or length < 0 then
      fail("%s: dash length %d must be a finite number >= 0 (got %s)", where, i, describe(length))
    end
    any_positive = any_positive or length > 0
    parts[i] = string.format("%.4g", length)
  end
  if not any_positive then fail("%s: dash lengths are all zero", where) end
  return table.concat(parts, ",")
end

local function check_color(where, v)
  if v == nil then return nil end
  if type(v) ~= "string" or not v:match("^[%w#(),.%% ]+$") then
    fail("%s: color must be a CSS color such as \"#0072B2\" or \"red\" (got %s)", where, describe(v))
  end
  return v
end

-- --- text and numbers -----------------------------------------------------------------

local XML_ENTITIES = {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;"}

--- s with invalid UTF-8 bytes replaced by U+FFFD: one bad byte would make
-- the whole document unreadable to an XML parser.
local function valid_utf8(s)
  if utf8.len(s) then return s end
  local parts, pos = {}, 1
  while true do
    local n, bad = utf8.len(s, pos)
    if n then
      parts[#parts + 1] = s:sub(pos)
      break
    end
    parts[#parts + 1] = s:sub(pos, bad - 1)
    parts[#parts + 1] = "\u{FFFD}"
    pos = bad + 1
  end
  return table.concat(parts)
end

--- Text safe inside an XML element or attribute.
local function escape(s)
  s = valid_utf8(s)
  -- control characters and U+FFFE/U+FFFF are not allowed anywhere in XML 1.0
  s = s:gsub("[\0-\8\11\12\14-\31]", "\u{FFFD}"):gsub("\xEF\xBF[\xBE\xBF]", "\u{FFFD}")
  return (s:gsub("[&<>\"']", XML_ENTITIES))
end

--- A coordinate: at most 2 decimals, no trailing zeros, never "-0".
local function num(v)
  local s = string.format("%.2f", v):gsub("0+$", ""):gsub("%.$", "")
  if s == "-0" then return "0" end
  return s
end

local function text_width(s, size)
  return (utf8.len(s) or #s) * size * CHAR_WIDTH
end

-- --- axes: ranges and ticks (dropnet/plot/axis.lua) -------------------------------------

local data_range = axes.data_range

-- An axis with its ticks (axes.make); tick labels are measured in the tick font.
local function tick_label_width(s) return text_width(s, TICK_FONT) end
local function make_axis(chart, axis_name, lo, hi, fixed, length, min_spacing)
  return axes.make(chart, axis_name, lo, hi, fixed, length, min_spacing, tick_label_width)
end

-- --- input ------------------------------------------------------------------------------

local CHART_KEYS = set_of{"title", "x_label", "y_label", "width", "height", "series", "x_range", "y_range",
  "legend", "log_y"}
local SERIES_KEYS = set_of{"name", "x", "y", "color", "dash"}
local LEGEND_PLACES = {"best", "top-right", "top-left", "bottom-right", "bottom-left"}

-- Checks chart options and returns the chart in a normalized form.
local function read_chart(where, opts)
  if type(opts) ~= "table" then fail("%s: expected a table of options (got %s)", where, describe(opts)) end
  check.options(where, "options", opts, CHART_KEYS)
  local chart = {
    title = check_text(where, "title", opts.title),
    x_label = check_text(where, "x_label", opts.x_label),
    y_label = check_text(where, "y_label", opts.y_label),
    width = check_size(where, "width", opts.width, 640),
    height = check_size(where, "height", opts.height, 400),
    series = {},
  }
  if opts.log_y ~= nil and type(opts.log_y) ~= "boolean" then
    fail("%s: log_y must be true or false (got %s)", where, describe(opts.log_y))
  end
  chart.log_y = opts.log_y == true
  chart.x_range = check_range(where, "x_range", opts.x_range, false)
  chart.y_range = check_range(where, "y_range", opts.y_range, chart.log_y)
  local legend = opts.legend
  if legend == nil then legend = "best" end
  if legend ~= false and not set_of(LEGEND_PLACES)[legend] then
    fail("%s: legend must be false or one of %s (got %s)", where, table.concat(LEGEND_PLACES, ", "), describe(legend))
  end
  chart.legend = legend

  local list = opts.series
  if list == nil then fail("%s: series is missing (expected a list of {name =, x =, y =})", where) end
  if type(list) ~= "table" then
    fail("%s: series must be a list of {name =, x =, y =} (got %s)", where, describe(list))
  end
  for i = 1, #list do
    local s = list[i]
    if type(s) ~= "table" then
      fail("%s: series %d must be a table {name =, x =, y =} (got %s)", where, i, describe(s))
    end
    local name = check_text(string.format("%s: series %d", where, i), "name", s.name) or string.format("series %d", i)
    local swhere = string.format("%s: series %d ('%s')", where, i, name)
    check.options(swhere, "series", s, SERIES_KEYS, "field")
    if s.y == nil then fail("%s: y is missing", swhere) end
    local y, n = read_values(swhere, "y", s.y)
    local x
    if s.x == nil then
      x = {}
      for k = 1, n do x[k] = k end
    else
      local nx
      x, nx = read_values(swhere, "x", s.x)
      if nx ~= n then fail("%s: x has %d values and y has %d", swhere, nx, n) end
    end
    local valid = {}
    for k = 1, n do valid[k] = is_finite(x[k]) and is_finite(y[k]) and (not chart.log_y or y[k] > 0) end
    chart.series[i] = {name = name, x = x, y = y, n = n, valid = valid,
      color = check_color(swhere, s.color), dash = check_dash(swhere, s.dash)}
  end
  return chart
end

-- Default colors: each chart takes palette colors in order, except that a
-- name seen in an earlier chart keeps its color (train is blue in every panel).
local function assign_colors(charts)
  local by_name = {}
  for _, chart in ipairs(charts) do
    local used, taken = {}, 0
    for _, s in ipairs(chart.series) do
      if not s.color and by_name[s.name] then
        s.color = by_name[s.name]
        used[s.color] = true
      end
    end
    for _, s in ipairs(chart.series) do
      if not s.color then
        if not by_name[s.name] then
          -- the next palette color this chart does not show yet (cycling when all are used)
          local color
          for k = 0, #plot.palette - 1 do
            local candidate = plot.palette[(taken + k) % #plot.palette + 1]
            if not used[candidate] then
              color, taken = candidate, taken + k + 1
              break
            end
          end
          if not color then
            color = plot.palette[taken % #plot.palette + 1]
            taken = taken + 1
          end
          by_name[s.name] = color
        end
        s.color = by_name[s.name]
        used[s.color] = true
      end
    end
  end
end

-- --- drawing ------------------------------------------------------------------------------

-- Position along an axis in [0, 1] inside the range (clamped far outside).
local function fraction(axis, v)
  local t
  if axis.log then
    t = (log10(v) - log10(axis.lo)) / (log10(axis.hi) - log10(axis.lo))
  else
    t = (v - axis.lo) / (axis.hi - axis.lo)
  end
  if t ~= t then return 0 end
  return max(-FAR, min(FAR, t))
end

-- Liang-Barsky: the parameter range [t0, t1] of segment a-b inside the box, or nil.
local function clip_range(box, ax, ay, bx, by)
  local t0, t1 = 0, 1
  local dx, dy = bx - ax, by - ay
  local checks = {{-dx, ax - box.x0}, {dx, box.x1 - ax}, {-dy, ay - box.y0}, {dy, box.y1 - ay}}
  for _, c in ipairs(checks) do
    local p, q = c[1], c[2]
    if p == 0 then
      if q < 0 then return nil end
    else
      local r = q / p
      if p < 0 then
        if r > t1 then return nil end
        if r > t0 then t0 = r end
      else
        if r < t0 then return nil end
        if r < t1 then t1 = r end
      end
    end
  end
  return t0, t1
end

-- The part of segment a-b inside the box, and whether each end was moved.
local function clip_segment(box, ax, ay, bx, by)
  local t0, t1 = clip_range(box, ax, ay, bx, by)
  if not t0 then return nil end
  local dx, dy = bx - ax, by - ay
  return ax + t0 * dx, ay + t0 * dy, ax + t1 * dx, ay + t1 * dy, t0 > 0, t1 < 1
end

local function inside(box, x, y)
  return x >= box.x0 and x <= box.x1 and y >= box.y0 and y <= box.y1
end

-- A series as runs of pixel points (flat {x1, y1, x2, y2, ...}) cut at gaps
-- (non-finite values) and at the plot box.
local function series_runs(s, to_px, to_py, box)
  local runs, current, prev_x, prev_y = {}, nil, nil, nil
  for i = 1, s.n do
    if s.valid[i] then
      local x, y = to_px(s.x[i]), to_py(s.y[i])
      if prev_x == nil then
        current = nil
        if inside(box, x, y) then
          current = {x, y}
          runs[#runs + 1] = current
        end
      else
        local ax, ay, bx, by, entered, left_box = clip_segment(box, prev_x, prev_y, x, y)
        if ax and ax == bx and ay == by and (entered or left_box) then
          ax = nil   -- only grazes the box
        end
        if ax then
          if current == nil or entered then
            current = {ax, ay}
            runs[#runs + 1] = current
          end
          if not left_box or bx ~= current[#current - 1] or by ~= current[#current] then
            current[#current + 1] = bx
            current[#current + 1] = by
          end
          if left_box then current = nil end
        else
          current = nil
        end
      end
      prev_x, prev_y = x, y
    else
      prev_x, prev_y, current = nil, nil, nil
    end
  end
  return runs
end

local function points_attr(run)
  local parts = {}
  for i = 1, #run, 2 do parts[#parts + 1] = num(run[i]) .. "," .. num(run[i + 1]) end
  return table.concat(parts, " ")
end

local function line_style(s)
  local style = string.format('stroke="%s" stroke-width="%s" stroke-linejoin="round" stroke-linecap="round"',
    escape(s.color), num(LINE_WIDTH))
  if s.dash then style = style .. string.format(' stroke-dasharray="%s"', s.dash) end
  return style
end

local function text(out, x, y, size, anchor, content, extra)
  out[#out + 1] = string.format('<text x="%s" y="%s" font-size="%s"%s%s>%s</text>', num(x), num(y), num(size),
    anchor and string.format(' text-anchor="%s"', anchor) or "", extra or "", escape(content))
end

-- Number of sampled line points that a legend box would hide.
local function legend_cover(runs_by_series, bx, by, bw, bh)
  local hidden = 0
  for _, runs in ipairs(runs_by_series) do
    for _, run in ipairs(runs) do
      for i = 1, #run, 2 do
        local x0, y0 = run[i], run[i + 1]
        local x1, y1 = run[i + 2] or x0, run[i + 3] or y0
        local steps = max(1, ceil(max(abs(x1 - x0), abs(y1 - y0)) / 4))
        if i + 2 > #run then steps = 1 end
        if steps <= 1024 then
          for k = 0, steps - 1 do
            local x, y = x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps
            if x >= bx and x <= bx + bw and y >= by and y <= by + bh then hidden = hidden + 1 end
          end
        else
          -- a long segment (a huge chart): count the samples k/steps inside the
          -- box from the part of the segment the box clips, not one by one
          local t0, t1 = clip_range({x0 = bx, y0 = by, x1 = bx + bw, y1 = by + bh}, x0, y0, x1, y1)
          if t0 then hidden = hidden + max(0, min(steps - 1, floor(t1 * steps)) - ceil(t0 * steps) + 1) end
        end
      end
    end
  end
  return hidden
end

local function draw_legend(out, chart, box, runs_by_series)
  local series = chart.series
  if chart.legend == false or #series == 0 then return end
  local row, pad, sample = LEGEND_FONT + 7, 8, 26
  local widest = 0
  for _, s in ipairs(series) do widest = max(widest, text_width(s.name, LEGEND_FONT)) end
  local w, h = pad + sample + 8 + widest + pad, pad - 2 + #series * row + pad - 2
  local margin = 8
  local places = {
    ["top-right"] = {box.x1 - margin - w, box.y0 + margin},
    ["top-left"] = {box.x0 + margin, box.y0 + margin},
    ["bottom-right"] = {box.x1 - margin - w, box.y1 - margin - h},
    ["bottom-left"] = {box.x0 + margin, box.y1 - margin - h},
  }
  local place = chart.legend
  if place == "best" then
    local fewest
    for _, name in ipairs({"top-right", "top-left", "bottom-left", "bottom-right"}) do
      local p = places[name]
      local hidden = legend_cover(runs_by_series, p[1], p[2], w, h)
      if not fewest or hidden < fewest then fewest, place = hidden, name end
    end
  end
  local lx, ly = places[place][1], places[place][2]
  out[#out + 1] = '<g class="legend">'
  out[#out + 1] = string.format('<rect x="%s" y="%s" width="%s" height="%s" rx="3" fill="#ffffff" fill-opacity="0.85"'
    .. ' stroke="#cccccc" stroke-width="1"/>', num(lx), num(ly), num(w), num(h))
  for i, s in ipairs(series) do
    local cy = ly + pad - 2 + (i - 0.5) * row
    out[#out + 1] = string.format('<g class="legend-entry" data-name="%s">', escape(s.name))
    out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" %s/>', num(lx + pad), num(cy),
      num(lx + pad + sample), num(cy), line_style(s))
    if s.n <= MAX_MARKED_POINTS then
      out[#out + 1] = string.format('<circle cx="%s" cy="%s" r="%s" fill="%s"/>', num(lx + pad + sample / 2), num(cy),
        num(MARKER_RADIUS), escape(s.color))
    end
    text(out, lx + pad + sample + 8, cy + LEGEND_FONT * 0.35, LEGEND_FONT, nil, s.name)
    out[#out + 1] = "</g>"
  end
  out[#out + 1] = "</g>"
end

-- Draws one chart into `out` (a list of SVG lines) in a width x height box at the origin.
local function draw_chart(where, out, chart)
  local W, H = chart.width, chart.height
  local top = chart.title and ceil(10 + TITLE_FONT + 10) or 12
  local bottom = ceil(TICK_LENGTH + TICK_GAP + TICK_FONT + (chart.x_label and 8 + LABEL_FONT or 0) + 10)
  local plot_h = floor(H - top - bottom)
  if plot_h < 20 then
    fail("%s: height %s leaves no room for the plot (%d px of axes, title and labels)", where, num(H), top + bottom)
  end

  -- y first: its tick labels decide the left margin, which decides the plot width
  local y_lo, y_hi
  if chart.y_range then
    y_lo, y_hi = chart.y_range[1], chart.y_range[2]
  else
    y_lo, y_hi = data_range(where, chart, "y")
  end
  local inset_y = chart.y_range and 0 or min(10, floor(plot_h * 0.03 + 0.5))
  local y_axis = make_axis(chart, "y", y_lo, y_hi, chart.y_range ~= nil, plot_h - 2 * inset_y, 2.8 * TICK_FONT)
  local widest = 0
  for _, t in ipairs(y_axis.ticks) do widest = max(widest, text_width(t[2], TICK_FONT)) end
  local left = ceil(10 + (chart.y_label and LABEL_FONT + 8 or 0) + widest + TICK_GAP + TICK_LENGTH)

  local x_lo, x_hi
  if chart.x_range then
    x_lo, x_hi = chart.x_range[1], chart.x_range[2]
  else
    x_lo, x_hi = data_range(where, chart, "x")
  end
  local right, plot_w, inset_x, x_axis = 16, nil, nil, nil
  for _ = 1, 2 do   -- the last tick label may need a wider right margin: measure, then redo
    plot_w = floor(W - left - right)
    if plot_w < 20 then
      fail("%s: width %s leaves no room for the plot (%d px of axes and labels)", where, num(W), left + right)
    end
    inset_x = chart.x_range and 0 or min(10, floor(plot_w * 0.03 + 0.5))
    x_axis = make_axis(chart, "x", x_lo, x_hi, chart.x_range ~= nil, plot_w - 2 * inset_x, 60)
    local last = x_axis.ticks[#x_axis.ticks]
    local need = last and ceil(text_width(last[2], TICK_FONT) / 2 - inset_x + 6) or 0
    if need <= right then break end
    right = need
  end

  local box = {x0 = left, y0 = top, x1 = left + plot_w, y1 = top + plot_h}
  local function to_px(v) return left + inset_x + fraction(x_axis, v) * (plot_w - 2 * inset_x) end
  local function to_py(v) return top + plot_h - inset_y - fraction(y_axis, v) * (plot_h - 2 * inset_y) end

  -- grid under everything
  out[#out + 1] = string.format('<g class="grid" stroke="%s" stroke-width="1" shape-rendering="crispEdges">',
    GRID_COLOR)
  for _, t in ipairs(x_axis.ticks) do
    local x = to_px(t[1])
    out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', num(x), num(box.y0), num(x), num(box.y1))
  end
  for _, t in ipairs(y_axis.ticks) do
    local y = to_py(t[1])
    out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', num(box.x0), num(y), num(box.x1), num(y))
  end
  out[#out + 1] = "</g>"

  -- series
  local runs_by_series = {}
  for i, s in ipairs(chart.series) do
    local runs = series_runs(s, to_px, to_py, box)
    runs_by_series[i] = runs
    out[#out + 1] = string.format('<g class="series" data-name="%s" fill="none" %s>', escape(s.name), line_style(s))
    for _, run in ipairs(runs) do out[#out + 1] = string.format('<polyline points="%s"/>', points_attr(run)) end
    -- markers: every point of a short series, else only points no line goes through
    local marks = {}
    local function mark(x, y)
      marks[#marks + 1] = string.format('<circle cx="%s" cy="%s" r="%s"/>', num(x), num(y), num(MARKER_RADIUS))
    end
    if s.n <= MAX_MARKED_POINTS then
      for k = 1, s.n do
        if s.valid[k] then
          local x, y = to_px(s.x[k]), to_py(s.y[k])
          if inside(box, x, y) then mark(x, y) end
        end
      end
    else
      for _, run in ipairs(runs) do
        if #run == 2 then mark(run[1], run[2]) end
      end
    end
    if #marks > 0 then
      out[#out + 1] = string.format('<g class="markers" fill="%s" stroke="none">', escape(s.color))
      out[#out + 1] = table.concat(marks, "\n")
      out[#out + 1] = "</g>"
    end
    out[#out + 1] = "</g>"
  end

  -- frame and ticks over the lines, as matplotlib draws its spines
  out[#out + 1] = string.format('<g class="axes" stroke="%s" stroke-width="1" shape-rendering="crispEdges">',
    AXIS_COLOR)
  out[#out + 1] = string.format('<rect x="%s" y="%s" width="%s" height="%s" fill="none"/>', num(box.x0), num(box.y0),
    num(plot_w), num(plot_h))
  for _, t in ipairs(x_axis.ticks) do
    local x = to_px(t[1])
    out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', num(x), num(box.y1), num(x),
      num(box.y1 + TICK_LENGTH))
  end
  for _, t in ipairs(y_axis.ticks) do
    local y = to_py(t[1])
    out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', num(box.x0 - TICK_LENGTH), num(y),
      num(box.x0), num(y))
  end
  out[#out + 1] = "</g>"

  out[#out + 1] = string.format('<g class="x-ticks" fill="%s">', TEXT_COLOR)
  for _, t in ipairs(x_axis.ticks) do
    text(out, to_px(t[1]), box.y1 + TICK_LENGTH + TICK_GAP + TICK_FONT * 0.8, TICK_FONT, "middle", t[2])
  end
  out[#out + 1] = "</g>"
  out[#out + 1] = string.format('<g class="y-ticks" fill="%s">', TEXT_COLOR)
  for _, t in ipairs(y_axis.ticks) do
    text(out, box.x0 - TICK_LENGTH - TICK_GAP, to_py(t[1]) + TICK_FONT * 0.35, TICK_FONT, "end", t[2])
  end
  out[#out + 1] = "</g>"

  local center_x, center_y = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
  if chart.x_label then
    text(out, center_x, box.y1 + TICK_LENGTH + TICK_GAP + TICK_FONT + 8 + LABEL_FONT * 0.8, LABEL_FONT, "middle",
      chart.x_label, string.format(' class="x-label" fill="%s"', TEXT_COLOR))
  end
  if chart.y_label then
    out[#out + 1] = string.format('<text class="y-label" transform="translate(%s,%s) rotate(-90)" font-size="%s"'
      .. ' text-anchor="middle" fill="%s">%s</text>', num(10 + LABEL_FONT * 0.8), num(center_y), num(LABEL_FONT),
      TEXT_COLOR, escape(chart.y_label))
  end
  if chart.title then
    text(out, center_x, 10 + TITLE_FONT * 0.8, TITLE_FONT, "middle", chart.title,
      string.format(' class="title" fill="%s"', TEXT_COLOR))
  end
  draw_legend(out, chart, box, runs_by_series)
end

local function document(width, height, title, body)
  local head = {
    '<?xml version="1.0" encoding="UTF-8"?>',
    string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s"'
      .. ' font-family="%s">', num(width), num(height), num(width), num(height), FONT_FAMILY),
  }
  if title then head[#head + 1] = "<title>" .. escape(title) .. "</title>" end
  head[#head + 1] = '<rect class="background" width="100%" height="100%" fill="#ffffff"/>'
  return table.concat(head, "\n") .. "\n" .. table.concat(body, "\n") .. "\n</svg>\n"
end

-- --- public API -----------------------------------------------------------------------------

--- A line chart as a standalone SVG document.
-- @tparam table opts the chart:
--   `title`, `x_label`, `y_label` (strings, optional);
--   `width`, `height` (pixels, default 640 x 400);
--   `series`, a list of `{name =, y =, x =, color =, dash =}`: `y` a list of
--   numbers or a 1-D tensor, `x` the same (default 1, 2, ..., #y), `color` a CSS
--   color (default: the palette, by name), `dash` true or a pattern such as "6 4";
--   `x_range`, `y_range` (`{lo, hi}`, default: the data, widened to nice ticks);
--   `legend`: "best" (default: the corner that hides the fewest points),
--   "top-right", "top-left", "bottom-right", "bottom-left", or false;
--   `log_y` (default false): a log10 y axis, values <= 0 are left out.
-- @treturn string the SVG text
-- @raise on bad options, naming the series and what is wrong
function plot.line_chart(opts)
  local chart = read_chart("line_chart", opts)
  assign_colors({chart})
  local body = {}
  draw_chart("line_chart", body, chart)
  return document(chart.width, chart.height, chart.title, body)
end

--- Several charts in one SVG, in a grid filled row by row.
-- @tparam table charts a list of line_chart options (their own width and height are ignored)
-- @tparam[opt] table opts `columns` (default 2), `width` and `height` of the whole
--   picture (default 480 x 360 per chart), `title` above all the charts
-- @treturn string the SVG text
-- @raise on bad options, naming the chart
function plot.panels(charts, opts)
  local where = "panels"
  if type(charts) ~= "table" or #charts == 0 then
    fail("%s: expected a non-empty list of chart options (got %s)", where, describe(charts))
  end
  opts = check.options(where, "options", opts or {}, {"columns", "width", "height", "title"})
  local columns = opts.columns or 2
  if math.type(columns) ~= "integer" and not (math.type(columns) == "float" and columns == floor(columns)) then
    fail("%s: columns must be an integer >= 1 (got %s)", where, describe(columns))
  end
  columns = math.tointeger(columns)
  if columns < 1 then fail("%s: columns must be an integer >= 1 (got %d)", where, columns) end
  columns = min(columns, #charts)
  local rows = ceil(#charts / columns)
  local width = check_size(where, "width", opts.width, 480 * columns)
  local height = check_size(where, "height", opts.height, 360 * rows)
  local title = check_text(where, "title", opts.title)
  local title_band = title and ceil(TITLE_FONT * 1.2 + 14) or 0
  local cell_w, cell_h = width / columns, (height - title_band) / rows

  local normalized = {}
  for i, chart_opts in ipairs(charts) do
    local chart = read_chart(string.format("%s: chart %d", where, i), chart_opts)
    chart.width, chart.height = cell_w, cell_h
    normalized[i] = chart
  end
  assign_colors(normalized)

  local body = {}
  if title then
    text(body, width / 2, 12 + TITLE_FONT * 1.2 * 0.8, TITLE_FONT * 1.2, "middle", title,
      string.format(' class="figure-title" fill="%s"', TEXT_COLOR))
  end
  for i, chart in ipairs(normalized) do
    local col, row = (i - 1) % columns, (i - 1) // columns
    body[#body + 1] = string.format('<g class="panel" transform="translate(%s,%s)">', num(col * cell_w),
      num(title_band + row * cell_h))
    draw_chart(string.format("%s: chart %d", where, i), body, chart)
    body[#body + 1] = "</g>"
  end
  return document(width, height, title, body)
end

--- Writes an SVG (or any text) to a file atomically with dn.write_file
-- (temporary file, fsync, rename): a reader never sees a half-written file,
-- and a failed write leaves the old file in place. The C module is loaded
-- here, on the first save, so that the charts themselves stay pure Lua.
-- @tparam string path the file to write
-- @tparam string svg the content
-- @treturn string path
-- @raise when the file cannot be written, naming the path
function plot.save(path, svg)
  if type(path) ~= "string" or path == "" then
    fail("save: path must be a non-empty string (got %s)", describe(path))
  end
  if type(svg) ~= "string" then fail("save: svg must be a string (got %s)", describe(svg)) end
  local dn = require "dropnet"
  -- a figure for a folder that does not exist yet: make it (as mkdir -p)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local made, why = pcall(dn.mkdir, dir)
    if not made then fail("save: cannot write '%s' (%s)", path, tostring(why)) end
  end
  local ok, err = pcall(dn.write_file, path, svg)
  if not ok then fail("save: cannot write '%s' (%s)", path, tostring(err)) end
  return path
end

return plot
