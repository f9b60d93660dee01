-- dropnet.plot: the SVG is well-formed XML (checked by xmllint, an independent
-- XML parser), holds the expected series, ticks and legend, escapes its text,
-- and bad input is a clear error.
local dn = require "dropnet"
local plot = require "dropnet.plot"
local H = require "helpers"

local NAN, INF = 0 / 0, math.huge

local dir

setup(function()
  dir = H.make_tempdir()
end)

teardown(function()
  H.remove_dir(dir)
end)

local read = H.read_file

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Fails unless xmllint parses svg without complaint.
local function assert_well_formed(svg)
  if not os.execute("command -v xmllint >/dev/null 2>&1") then
    error("xmllint not found: the plot tests need it to check the SVG; install libxml2-utils "
      .. "(apt-get install libxml2-utils, or sh scripts/install-deps.sh)", 2)
  end
  local file, log = dir .. "/check.svg", dir .. "/xmllint.log"
  local f = assert(io.open(file, "wb"))
  f:write(svg)
  f:close()
  local ok = os.execute(string.format("xmllint --noout '%s' 2>'%s'", file, log))
  if not ok then error("xmllint rejects the SVG:\n" .. read(log), 2) end
  return true
end

-- Every attribute holding numbers is a compact decimal: no nan, inf or exponent.
local NUMERIC_ATTRIBUTES = {x = true, y = true, x1 = true, y1 = true, x2 = true, y2 = true, cx = true, cy = true,
  r = true, width = true, height = true, points = true, viewBox = true, ["font-size"] = true,
  ["stroke-width"] = true}
local function assert_numbers_compact(svg)
  for name, value in svg:gmatch('([%w-]+)="([^"]*)"') do
    if NUMERIC_ATTRIBUTES[name] and value ~= "100%" then
      for number in value:gmatch("[^%s,]+") do
        if not number:match("^%-?%d+$") and not number:match("^%-?%d+%.%d%d?$") then
          error(string.format("attribute %s=%q holds %q, not a compact number", name, value, number), 2)
        end
      end
    end
  end
  for transform in svg:gmatch('transform="([^"]*)"') do
    assert(not transform:find("nan") and not transform:find("inf"), transform)
  end
  return true
end

-- The series groups of a chart: {name =, color =, dash =, lines = {{{x, y}, ...}, ...}, markers = n}.
local function series_of(svg)
  local found = {}
  local pos = 1
  while true do
    local start, stop, attrs = svg:find('<g class="series" ([^>]*)>', pos)
    if not start then break end
    local finish = svg:find('<g class="series"', stop, true) or svg:find('<g class="axes"', stop, true)
    local body = svg:sub(stop + 1, finish - 1)
    local s = {name = attrs:match('data%-name="([^"]*)"'), color = attrs:match('stroke="([^"]*)"'),
      dash = attrs:match('stroke%-dasharray="([^"]*)"'), lines = {}, markers = 0}
    for points in body:gmatch('<polyline points="([^"]*)"') do
      local line = {}
      for pair in points:gmatch("%S+") do
        local x, y = pair:match("^([^,]+),([^,]+)$")
        line[#line + 1] = {assert(tonumber(x), pair), assert(tonumber(y), pair)}
      end
      s.lines[#s.lines + 1] = line
    end
    for _ in body:gmatch("<circle ") do s.markers = s.markers + 1 end
    found[#found + 1] = s
    pos = stop
  end
  return found
end

-- Tick labels of one axis ("x" or "y") as numbers, in drawing order.
local function ticks_of(svg, axis)
  local group = svg:match('<g class="' .. axis .. '%-ticks"[^>]*>(.-)</g>')
  assert(group, "no " .. axis .. " tick labels")
  local values = {}
  for label in group:gmatch("<text[^>]*>([^<]*)</text>") do values[#values + 1] = assert(tonumber(label), label) end
  return values
end

-- Pixel positions of the horizontal (y) or vertical (x) grid lines.
local function grid_of(svg, axis)
  local group = assert(svg:match('<g class="grid"[^>]*>(.-)</g>'))
  local positions = {}
  for x1, y1, x2, y2 in group:gmatch('<line x1="([^"]+)" y1="([^"]+)" x2="([^"]+)" y2="([^"]+)"/>') do
    if axis == "y" and y1 == y2 then positions[#positions + 1] = tonumber(y1) end
    if axis == "x" and x1 == x2 then positions[#positions + 1] = tonumber(x1) end
  end
  return positions
end

-- The plot frame: x0, y0, x1, y1.
local function frame_of(svg)
  local x, y, w, h = svg:match('<g class="axes"[^>]*>%s*<rect x="([^"]+)" y="([^"]+)" width="([^"]+)" height="([^"]+)"')
  x, y, w, h = tonumber(x), tonumber(y), tonumber(w), tonumber(h)
  return x, y, x + w, y + h
end

local function legend_names(svg)
  local names = {}
  for name in svg:gmatch('<g class="legend%-entry" data%-name="([^"]*)">') do names[#names + 1] = name end
  return names
end

--- Asserts that ticks are equally spaced by 1, 2 or 5 times a power of ten and cover [lo, hi].
local function assert_nice_ticks(ticks, lo, hi)
  assert(#ticks >= 2, "fewer than 2 ticks")
  local step = ticks[2] - ticks[1]
  assert(step > 0, "ticks not increasing")
  for i = 3, #ticks do
    local d = ticks[i] - ticks[i - 1]
    assert(math.abs(d - step) <= 1e-9 * math.abs(step), string.format("uneven ticks: %s", table.concat(ticks, " ")))
  end
  local e = math.floor(math.log(step, 10) + 1e-9)
  local m = step / 10 ^ e
  local nice = false
  for _, candidate in ipairs({1, 2, 5}) do nice = nice or math.abs(m - candidate) < 1e-6 end
  assert(nice, string.format("step %.17g is not 1, 2 or 5 times a power of ten", step))
  step = math.floor(m + 0.5) * 10.0 ^ e
  for _, t in ipairs(ticks) do
    local k = t / step
    assert(math.abs(k - math.floor(k + 0.5)) < 1e-6, string.format("tick %.17g is not a multiple of %g", t, step))
  end
  assert(ticks[1] <= lo + 1e-9 * math.abs(step), string.format("first tick %g above the data minimum %g", ticks[1], lo))
  assert(ticks[#ticks] >= hi - 1e-9 * math.abs(step),
    string.format("last tick %g below the data maximum %g", ticks[#ticks], hi))
  assert(#ticks <= 13, string.format("%d ticks is too many", #ticks))
  return true
end

local function range(n, f)
  local t = {}
  for i = 1, n do t[i] = f(i) end
  return t
end

describe("plot.line_chart", function()
  it("is a standalone, well-formed SVG document", function()
    local svg = plot.line_chart{title = "Loss", x_label = "epoch", y_label = "loss",
      series = {{name = "train", y = {0.9, 0.5, 0.4}}, {name = "test", y = {1.0, 0.7, 0.6}}}}
    assert_well_formed(svg)
    assert_numbers_compact(svg)
    assert.truthy(svg:find('^<%?xml version="1.0" encoding="UTF%-8"%?>\n<svg '))
    assert.truthy(svg:find('xmlns="http://www.w3.org/2000/svg"', 1, true))
    assert.truthy(svg:find('width="640" height="400" viewBox="0 0 640 400"', 1, true))
    assert.truthy(svg:find('<rect class="background" width="100%" height="100%" fill="#ffffff"/>', 1, true))
    assert.truthy(svg:find("<title>Loss</title>", 1, true))
    assert.truthy(svg:find(">epoch</text>", 1, true))
    assert.truthy(svg:find(">loss</text>", 1, true))
    assert.truthy(svg:find("</svg>\n$"))
    svg = plot.line_chart{width = 300, height = 200, series = {{y = {1, 2}}}}
    assert.truthy(svg:find('width="300" height="200" viewBox="0 0 300 200"', 1, true))
    assert_well_formed(svg)
  end)

  it("draws one polyline per series with one point per value, inside the frame", function()
    local a = range(10, function(i) return math.sin(i) end)
    local b = range(10, function(i) return i * i end)
    local svg = plot.line_chart{series = {{name = "a", y = a}, {name = "b", x = range(10, function(i) return -i end),
      y = b}, {name = "none", y = {}}}}
    assert_well_formed(svg)
    local series = series_of(svg)
    assert.are.equal(3, #series)
    assert.are.equal(1, #series[1].lines)
    assert.are.equal(10, #series[1].lines[1])
    assert.are.equal(1, #series[2].lines)
    assert.are.equal(10, #series[2].lines[1])
    assert.are.equal(0, #series[3].lines)
    assert.are.same({"a", "b", "none"}, legend_names(svg))   -- the empty series is still in the legend
    local x0, y0, x1, y1 = frame_of(svg)
    for _, s in ipairs({series[1], series[2]}) do
      for _, p in ipairs(s.lines[1]) do
        assert.is_true(p[1] >= x0 and p[1] <= x1 and p[2] >= y0 and p[2] <= y1)
      end
    end
    -- larger values are higher up (smaller y); b's x runs right to left
    local line = series[2].lines[1]
    for i = 2, 10 do
      assert.is_true(line[i][2] < line[i - 1][2])
      assert.is_true(line[i][1] < line[i - 1][1])
    end
  end)

  it("places values where the tick with that value is", function()
    local svg = plot.line_chart{series = {{name = "s", x = {0, 5, 10}, y = {0, 0.5, 1}}}}
    local ticks_y, grid_y = ticks_of(svg, "y"), grid_of(svg, "y")
    local ticks_x, grid_x = ticks_of(svg, "x"), grid_of(svg, "x")
    assert.are.equal(#ticks_y, #grid_y)
    assert.are.equal(#ticks_x, #grid_x)
    local line = series_of(svg)[1].lines[1]
    -- where the ticks say v is: linear between the first and the last grid line
    local function tick_pixel(ticks, grid, v)
      local n = #ticks
      return grid[1] + (v - ticks[1]) / (ticks[n] - ticks[1]) * (grid[n] - grid[1])
    end
    for i, v in ipairs({0, 0.5, 1}) do
      assert.is_true(math.abs(line[i][2] - tick_pixel(ticks_y, grid_y, v)) <= 0.01)
    end
    for i, v in ipairs({0, 5, 10}) do
      assert.is_true(math.abs(line[i][1] - tick_pixel(ticks_x, grid_x, v)) <= 0.01)
    end
    -- and the ticks themselves are evenly spaced on the page
    for i = 3, #grid_x do
      assert.is_true(math.abs((grid_x[i] - grid_x[i - 1]) - (grid_x[2] - grid_x[1])) <= 0.02)
    end
  end)

  it("labels nice ticks (1-2-5 steps) covering the data", function()
    local cases = {
      {0.0123, 0.0456}, {-3, 1700}, {0.297, 0.697}, {0.75, 0.93}, {1e6, 3.5e6}, {-2e-5, 7e-5}, {42, 42},
      {0, 0}, {-1, -1e-3}, {123456.5, 123457.25}, {2.30258, 2.30259},
    }
    for _, c in ipairs(cases) do
      local lo, hi = c[1], c[2]
      local svg = plot.line_chart{series = {{name = "s", x = {lo, (lo + hi) / 2, hi}, y = {hi, lo, (lo + hi) / 2}}}}
      assert_well_formed(svg)
      assert_numbers_compact(svg)
      assert_nice_ticks(ticks_of(svg, "y"), lo, hi)
      assert_nice_ticks(ticks_of(svg, "x"), lo, hi)
    end
    -- random ranges
    math.randomseed(7)
    for _ = 1, 40 do
      local scale = 10 ^ math.random(-6, 6)
      local lo = (math.random() - 0.5) * scale
      local hi = lo + math.random() * scale + scale * 1e-3
      local svg = plot.line_chart{series = {{name = "s", x = {lo, hi}, y = {lo, hi}}}}
      assert_nice_ticks(ticks_of(svg, "y"), lo, hi)
      assert_nice_ticks(ticks_of(svg, "x"), lo, hi)
    end
    -- the default x is 1..#y
    local svg = plot.line_chart{series = {{name = "s", y = range(20, function(i) return i end)}}}
    assert_nice_ticks(ticks_of(svg, "x"), 1, 20)
  end)

  it("keeps a given range and puts the ticks inside it", function()
    local svg = plot.line_chart{y_range = {0.8, 0.95}, x_range = {0, 10},
      series = {{name = "s", y = {0.85, 0.9, 0.93}}}}
    local ticks = ticks_of(svg, "y")
    assert.is_true(ticks[1] >= 0.8 - 1e-12 and ticks[#ticks] <= 0.95 + 1e-12)
    H.assert_close(ticks, {0.8, 0.82, 0.84, 0.86, 0.88, 0.9, 0.92, 0.94}, 0, 1e-12)
    local x0, y0, x1, y1 = frame_of(svg)
    local grid_y = grid_of(svg, "y")
    assert.is_true(math.abs(grid_y[1] - y1) < 0.01)   -- 0.8 on the bottom edge, 0.94 just under the top
    assert.is_true(math.abs(grid_y[#grid_y] - (y1 - (0.94 - 0.8) / (0.95 - 0.8) * (y1 - y0))) < 0.01)
    local grid_x = grid_of(svg, "x")
    assert.is_true(math.abs(grid_x[1] - x0) < 0.01 and math.abs(grid_x[#grid_x] - x1) < 0.01)
  end)

  it("clips lines that leave a given range at the frame", function()
    local svg = plot.line_chart{y_range = {0, 1}, series = {{name = "s", y = {0.5, 3, 0.5, 1e300, 0.5}}}}
    assert_well_formed(svg)
    assert_numbers_compact(svg)
    local x0, y0, x1, y1 = frame_of(svg)
    local lines = series_of(svg)[1].lines
    assert.are.equal(3, #lines)
    for _, line in ipairs(lines) do
      for _, p in ipairs(line) do assert.is_true(p[1] >= x0 and p[1] <= x1 and p[2] >= y0 - 1e-9 and p[2] <= y1) end
    end
    assert.are.equal(y0, lines[1][2][2])   -- leaves through the top edge
    assert.are.equal(y0, lines[2][1][2])   -- and comes back through it
  end)

  it("survives extreme values and ranges", function()
    for _, opts in ipairs({
      {log_y = true, series = {{name = "a", y = {1e-310, 1e-200, 1e308}}}},
      {log_y = true, series = {{name = "a", y = {5e-324}}}},
      {log_y = true, series = {{name = "a", y = {1.7e308}}}},
      {series = {{name = "a", y = {0, 1e-320}}}},
      {series = {{name = "a", y = {1e-310, 1e-310}}}},
      {series = {{name = "a", y = {1, 1e308}, x = {-1e307, 1e307}}}},
      {y_range = {0, 1}, series = {{name = "a", y = {-1.7e308, 1.7e308, 0.5}}}},
      {y_range = {1e9, 1e9 + 1e-3}, series = {{name = "a", y = {1e9, 2e9}}}},
    }) do
      local svg = plot.line_chart(opts)
      assert_well_formed(svg)
      assert_numbers_compact(svg)
    end
  end)

  it("draws a bounded number of ticks on a huge chart, quickly", function()
    -- one tick per 60 px, and the legend's hidden-point count sampling every
    -- 4 px, made 2^31 px wide charts (hostile input) run for minutes
    for _, size in ipairs({{1e7, 400}, {640, 1e7}, {2 ^ 31, 400}, {640, 2 ^ 31}, {1e300, 1e300}}) do
      local t0 = os.clock()
      local svg = plot.line_chart{width = size[1], height = size[2], series = {{name = "a", y = {1, 2, 3}}}}
      local panels = plot.panels({{series = {{y = {1, 2, 3}}}}}, {width = size[1], height = size[2]})
      assert.is_true(os.clock() - t0 < 5)
      assert.is_true(#ticks_of(svg, "x") <= 50 and #ticks_of(svg, "y") <= 50)
      if size[1] < 1e100 then assert.is_true(#svg < 100000 and #panels < 100000) end
      assert_well_formed(svg)
    end
  end)

  it("breaks lines at NaN and infinite values, never writing them", function()
    local svg = plot.line_chart{series = {
      {name = "y gaps", y = {1, 2, NAN, 4, 5, INF, 7, -INF, 9, 10, 11}},
      {name = "x gaps", x = {1, NAN, 3, 4}, y = {1, 2, 3, 4}},
      {name = "all nan", y = {NAN, NAN}},
    }}
    assert_well_formed(svg)
    assert_numbers_compact(svg)
    local series = series_of(svg)
    local counts = {}
    for i, line in ipairs(series[1].lines) do counts[i] = #line end
    assert.are.same({2, 2, 1, 3}, counts)
    -- a short series marks every drawn point (the isolated 7 too)
    assert.are.equal(8, series[1].markers)
    counts = {}
    for i, line in ipairs(series[2].lines) do counts[i] = #line end
    assert.are.same({1, 2}, counts)
    assert.are.equal(0, #series[3].lines)
    assert.are.same({"y gaps", "x gaps", "all nan"}, legend_names(svg))
  end)

  it("marks points of short series only, and isolated points always", function()
    local svg = plot.line_chart{series = {{name = "30", y = range(30, function(i) return i end)},
      {name = "31", y = range(31, function(i) return i end)},
      {name = "isolated", y = range(40, function(i) return i == 20 and 5 or NAN end)}}}
    local series = series_of(svg)
    assert.are.equal(30, series[1].markers)
    assert.are.equal(0, series[2].markers)
    assert.are.equal(1, series[3].markers)
    assert.are.equal(1, #series[3].lines[1])
  end)

  it("draws a single point, equal values and empty charts without dividing by zero", function()
    for _, series in ipairs({
      {{name = "one", y = {3}}},
      {{name = "zero", x = {0}, y = {0}}},
      {{name = "flat", y = {2, 2, 2}}},
      {{name = "empty", y = {}}},
      {},
    }) do
      local svg = plot.line_chart{title = "t", series = series}
      assert_well_formed(svg)
      assert_numbers_compact(svg)
      assert.is_true(#ticks_of(svg, "y") >= 2)
      assert.is_true(#ticks_of(svg, "x") >= 2)
    end
    local s = series_of(plot.line_chart{series = {{name = "one", y = {3}}}})[1]
    assert.are.equal(1, #s.lines[1])
    assert.are.equal(1, s.markers)
  end)

  it("escapes all text", function()
    local svg = plot.line_chart{title = [[<&> "q" 'a']], x_label = "x & y", y_label = "<b>",
      series = {{name = "a<b & c>\"'", y = {1, 2}}, {name = "bad utf8 \xff\xfe, control \1 char", y = {2, 1}}}}
    assert_well_formed(svg)
    assert.truthy(svg:find("&lt;&amp;&gt; &quot;q&quot; &apos;a&apos;", 1, true))
    assert.truthy(svg:find(">x &amp; y</text>", 1, true))
    assert.truthy(svg:find(">&lt;b&gt;</text>", 1, true))
    assert.truthy(svg:find(">a&lt;b &amp; c&gt;&quot;&apos;</text>", 1, true))
    assert.are.same({"a&lt;b &amp; c&gt;&quot;&apos;", "bad utf8 \u{FFFD}\u{FFFD}, control \u{FFFD} char"},
      legend_names(svg))
    assert.falsy(svg:find("<&>", 1, true))
    assert.falsy(svg:find("<b>", 1, true))
  end)

  it("reads values from 1-D tensors", function()
    local y, x = {0.5, 0.25, 0.125, 2}, {1, 2, 4, 8}
    local from_tables = plot.line_chart{series = {{name = "s", x = x, y = y}}}
    local from_tensors = plot.line_chart{series = {{name = "s", x = dn.tensor(x, "int32"), y = dn.tensor(y)}}}
    assert.are.equal(from_tables, from_tensors)
    H.assert_error(function() plot.line_chart{series = {{name = "s", y = dn.zeros({2, 3})}}} end,
      {"line_chart: series 1 ('s'): y must be a 1-D tensor (got 2 dims)"})
    H.assert_error(function() plot.line_chart{series = {{name = "s", y = dn.tensor(1.5)}}} end,
      {"line_chart: series 1 ('s'): y must be a 1-D tensor (got 0 dims)"})
  end)

  it("colors series from the palette by name, and honors color and dash", function()
    local svg = plot.line_chart{series = {{name = "a", y = {1, 2}}, {name = "b", y = {2, 1}, dash = true},
      {name = "c", y = {1, 1}, color = "#123456", dash = "2 1"}, {name = "d", y = {0, 1}, dash = {4, 2.5}}}}
    local series = series_of(svg)
    assert.are.equal(plot.palette[1], series[1].color)
    assert.are.equal(plot.palette[2], series[2].color)
    assert.are.equal("#123456", series[3].color)
    assert.are.equal(plot.palette[3], series[4].color)
    assert.is_nil(series[1].dash)
    assert.are.equal("6,4", series[2].dash)
    assert.are.equal("2,1", series[3].dash)
    assert.are.equal("4,2.5", series[4].dash)
    assert.truthy(svg:find('stroke-linejoin="round"', 1, true))
    -- the palette cycles
    local many = {}
    for i = 1, #plot.palette + 1 do many[i] = {name = "s" .. i, y = {i, i + 1}} end
    series = series_of(plot.line_chart{series = many})
    assert.are.equal(plot.palette[1], series[#plot.palette + 1].color)
  end)

  it("places the legend where asked, or where it hides the least", function()
    local rising = {{name = "up", y = range(20, function(i) return i end)}}
    local falling = {{name = "down", y = range(20, function(i) return -i end)}}
    local function legend_x(svg)
      return tonumber(assert(svg:match('<g class="legend">%s*<rect x="([^"]+)"')))
    end
    local function legend_y(svg)
      return tonumber(assert(svg:match('<g class="legend">%s*<rect x="[^"]+" y="([^"]+)"')))
    end
    local svg = plot.line_chart{series = falling}
    assert.is_true(legend_x(svg) > 320 and legend_y(svg) < 200)   -- top right: the falling line is not there
    svg = plot.line_chart{series = rising}
    assert.is_true(legend_x(svg) < 320 and legend_y(svg) < 200)   -- top left
    svg = plot.line_chart{series = rising, legend = "bottom-right"}
    assert.is_true(legend_x(svg) > 320 and legend_y(svg) > 200)
    svg = plot.line_chart{series = rising, legend = "bottom-left"}
    assert.is_true(legend_x(svg) < 320 and legend_y(svg) > 200)
    svg = plot.line_chart{series = rising, legend = false}
    assert.falsy(svg:find('class="legend"', 1, true))
    assert_well_formed(svg)
  end)

  it("draws a log y axis with power-of-ten ticks, leaving out values <= 0", function()
    local y = range(50, function(i) return 10 ^ (-i / 10) end)
    y[10], y[20] = 0, -1
    local svg = plot.line_chart{log_y = true, series = {{name = "g", y = y}}}
    assert_well_formed(svg)
    assert_numbers_compact(svg)
    local ticks = ticks_of(svg, "y")
    assert.is_true(ticks[1] <= 1e-5 and ticks[#ticks] >= 10 ^ -0.1)
    for _, t in ipairs(ticks) do
      local e = math.log(t, 10)
      assert.is_true(math.abs(e - math.floor(e + 0.5)) < 1e-9, "tick " .. t)
    end
    local counts = {}
    for i, line in ipairs(series_of(svg)[1].lines) do counts[i] = #line end
    assert.are.same({9, 9, 30}, counts)
    -- a short range gets 1-2-5 ticks
    ticks = ticks_of(plot.line_chart{log_y = true, series = {{name = "g", y = {0.3, 3}}}}, "y")
    assert.are.same({0.2, 0.5, 1, 2, 5}, ticks)
  end)

  it("is reachable as dn.plot", function()
    assert.are.equal(plot, dn.plot)
  end)
end)

describe("plot.panels", function()
  local loss = {title = "Loss", x_label = "epoch", y_label = "loss",
    series = {{name = "train", y = {0.9, 0.5, 0.4}}, {name = "test", y = {1.0, 0.7, 0.6}, dash = true}}}
  local accuracy = {title = "Accuracy", x_label = "epoch", y_label = "accuracy",
    series = {{name = "test", y = {0.7, 0.8, 0.85}, dash = true}, {name = "train", y = {0.6, 0.8, 0.9}}}}

  it("holds every chart in one well-formed SVG", function()
    local svg = plot.panels({loss, accuracy, loss}, {columns = 2, width = 900, height = 700, title = "run & co"})
    assert_well_formed(svg)
    assert_numbers_compact(svg)
    assert.truthy(svg:find('width="900" height="700" viewBox="0 0 900 700"', 1, true))
    local transforms = {}
    for t in svg:gmatch('<g class="panel" transform="translate%(([^)]*)%)">') do transforms[#transforms + 1] = t end
    assert.are.same({"0,32", "450,32", "0,366"}, transforms)   -- under a 32 px title band
    local titles = {}
    for t in svg:gmatch('<text [^>]*class="title"[^>]*>([^<]*)</text>') do titles[#titles + 1] = t end
    assert.are.same({"Loss", "Accuracy", "Loss"}, titles)
    assert.truthy(svg:find(">run &amp; co</text>", 1, true))
    local series = series_of(svg)
    assert.are.equal(6, #series)
    for _, s in ipairs(series) do assert.are.equal(3, #s.lines[1]) end
    assert.are.same({"train", "test", "test", "train", "train", "test"}, legend_names(svg))
  end)

  it("gives a series name the same color in every panel", function()
    local series = series_of(plot.panels({loss, accuracy}))
    assert.are.equal("train", series[1].name)
    assert.are.equal(series[1].color, series[4].color)
    assert.are.equal(series[2].color, series[3].color)
    assert.are_not.equal(series[1].color, series[2].color)
    -- new names in a later chart take the palette from the start, skipping colors the chart already shows
    series = series_of(plot.panels({loss, {series = {{name = "other", y = {1, 2}}}},
      {series = {{name = "new", y = {1, 2}}, {name = "train", y = {2, 1}}}}}))
    assert.are.equal(plot.palette[1], series[3].color)       -- "other"
    assert.are.equal(plot.palette[1], series[5].color)       -- "train" keeps blue
    assert.are.equal(plot.palette[2], series[4].color)       -- so "new" takes the next one
  end)

  it("defaults to 2 columns of 480 x 360, fewer columns for fewer charts", function()
    local svg = plot.panels({loss, accuracy, loss})
    assert.truthy(svg:find('width="960" height="720"', 1, true))
    svg = plot.panels({loss})
    assert.truthy(svg:find('width="480" height="360"', 1, true))
    svg = plot.panels({loss, accuracy}, {columns = 1})
    assert.truthy(svg:find('width="480" height="720"', 1, true))
  end)
end)

describe("plot.save", function()
  it("writes the file atomically, replacing an old one", function()
    local path = dir .. "/train.svg"
    local svg = plot.line_chart{series = {{name = "s", y = {1, 2}}}}
    assert.are.equal(path, plot.save(path, svg))
    assert.are.equal(svg, read(path))
    assert.is_false(exists(path .. ".tmp"))
    plot.save(path, "second")
    assert.are.equal("second", read(path))
    assert.is_false(exists(path .. ".tmp"))
  end)

  it("makes the folders a figure goes into", function()
    local path = dir .. "/new/figures/train.svg"
    assert.are.equal(path, plot.save(path, "x"))
    assert.are.equal("x", read(path))
  end)

  it("names the path when it cannot write", function()
    local file = dir .. "/a-file"
    plot.save(file, "x")
    local path = file .. "/dir/train.svg"   -- a folder cannot be made inside a file
    H.assert_error(function() plot.save(path, "x") end,
      {"save: cannot write '" .. path .. "' (", "cannot create " .. file .. "/dir: Not a directory"})
    H.assert_error(function() plot.save(nil, "x") end, {"save: path must be a non-empty string (got nil)"})
    H.assert_error(function() plot.save(dir .. "/x.svg", 5) end, {"save: svg must be a string (got 5)"})
    -- a directory in the way of the rename: the old content stays, no temp file is left
    local blocked = dir .. "/blocked"
    assert(os.execute("mkdir -p '" .. blocked .. "/inside'"))
    H.assert_error(function() plot.save(blocked, "x") end,
      {"save: cannot write '" .. blocked .. "' (dn.write_file: " .. blocked .. " is a directory)"})
    assert.is_false(exists(blocked .. ".tmp"))
    -- it writes through dn.write_file: no temporary is left beside the file (the writer's are hidden)
    for name in io.popen("ls -a '" .. dir .. "'"):lines() do
      assert.is_nil(name:find("%.tmp"), name)
    end
  end)
end)

describe("bad input", function()
  local ok_series = {{name = "s", y = {1, 2}}}
  local cases = {
    {{}, "line_chart: series is missing"},
    {{series = 5}, "line_chart: series must be a list of {name =, x =, y =} (got 5)"},
    {{series = {5}}, "line_chart: series 1 must be a table"},
    {{series = {{name = "train loss", y = range(10, tostring)}}},
      "line_chart: series 1 ('train loss'): y[1] is \"1\" (expected a number)"},
    {{series = {ok_series[1], {name = "test loss", x = range(10, function(i) return i end), y = range(9, math.sqrt)}}},
      "line_chart: series 2 ('test loss'): x has 10 values and y has 9"},
    {{series = {{name = "s", y = {1, 2, true}}}}, "line_chart: series 1 ('s'): y[3] is boolean (expected a number)"},
    {{series = {{name = "s", x = {1, "a"}, y = {1, 2}}}},
      "line_chart: series 1 ('s'): x[2] is \"a\" (expected a number)"},
    {{series = {{name = "s"}}}, "line_chart: series 1 ('s'): y is missing"},
    {{series = {{y = {1}, z = 2}}}, "line_chart: series 1 ('series 1'): unknown field 'z'"},
    {{series = {{name = {}, y = {1}}}}, "line_chart: series 1: name must be a string (got table)"},
    {{series = {{name = "s", y = "1 2"}}}, "line_chart: series 1 ('s'): y must be a list of numbers or a 1-D tensor"},
    {{series = ok_series, width = 0}, "line_chart: width must be a finite number > 0 (got 0)"},
    {{series = ok_series, width = -5}, "line_chart: width must be a finite number > 0 (got -5)"},
    {{series = ok_series, height = NAN}, "line_chart: height must be a finite number > 0"},
    {{series = ok_series, width = "640"}, "line_chart: width must be a finite number > 0 (got \"640\")"},
    {{series = ok_series, width = 40}, "line_chart: width 40 leaves no room for the plot"},
    {{series = ok_series, height = 60}, "line_chart: height 60 leaves no room for the plot"},
    {{series = ok_series, xlabel = "x"}, "line_chart: unknown option 'xlabel'"},
    {{series = ok_series, title = {}}, "line_chart: title must be a string (got table)"},
    {{series = ok_series, legend = "middle"}, "line_chart: legend must be false or one of best, top-right"},
    {{series = ok_series, legend = true}, "line_chart: legend must be false or one of"},
    {{series = ok_series, y_range = {1, 0}}, "line_chart: y_range must have finite lo < hi (got {1, 0})"},
    {{series = ok_series, x_range = {0, INF}}, "line_chart: x_range must have finite lo < hi"},
    {{series = ok_series, y_range = {0, 1e-310}}, "line_chart: y_range {0, 1e-310} is too wide or too narrow to plot"},
    {{series = ok_series, x_range = {-1e308, 1e308}},
      "line_chart: x_range {-1e+308, 1e+308} is too wide or too narrow"},
    {{series = ok_series, y_range = 1}, "line_chart: y_range must be a table {lo, hi} of two numbers (got 1)"},
    {{series = ok_series, log_y = true, y_range = {0, 1}}, "line_chart: y_range must be > 0 on a log axis"},
    {{series = ok_series, log_y = 1}, "line_chart: log_y must be true or false (got 1)"},
    {{series = {{name = "s", y = {1}, dash = "a b"}}}, "line_chart: series 1 ('s'): dash length 1 must be"},
    {{series = {{name = "s", y = {1}, dash = {0, 0}}}}, "line_chart: series 1 ('s'): dash lengths are all zero"},
    {{series = {{name = "s", y = {1}, color = "red\" onload=\"x"}}}, "line_chart: series 1 ('s'): color must be"},
    {{series = {{name = "s", x = {-1e308, 1e308}, y = {1, 2}}}}, "line_chart: x values span too wide a range to plot"},
  }

  it("raises clear errors naming the function and the series", function()
    for _, c in ipairs(cases) do
      H.assert_error(function() plot.line_chart(c[1]) end, {c[2]})
    end
    H.assert_error(function() plot.line_chart() end, {"line_chart: expected a table of options (got nil)"})
  end)

  it("names the chart in panels", function()
    local good = {series = ok_series}
    H.assert_error(function() plot.panels({good, {series = {{name = "a", x = {1}, y = {1, 2}}}}}) end,
      {"panels: chart 2: series 1 ('a'): x has 1 values and y has 2"})
    H.assert_error(function() plot.panels({}) end, {"panels: expected a non-empty list of chart options"})
    H.assert_error(function() plot.panels(nil) end, {"panels: expected a non-empty list of chart options (got nil)"})
    H.assert_error(function() plot.panels({good}, {columns = 0}) end,
      {"panels: columns must be an integer >= 1 (got 0)"})
    H.assert_error(function() plot.panels({good}, {columns = 1.5}) end, {"panels: columns must be an integer >= 1"})
    H.assert_error(function() plot.panels({good}, {width = -1}) end, {"panels: width must be a finite number > 0"})
    H.assert_error(function() plot.panels({good}, {rows = 2}) end, {"panels: unknown option 'rows'"})
    H.assert_error(function() plot.panels({good, good}, {width = 60}) end,
      {"panels: chart 1: width 30 leaves no room for the plot"})
  end)
end)
