--- Pooling modules: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, MaxPool1d,
-- AvgPool1d. Thin wrappers over nn.functional: the options are checked once
-- here (the same checks and words as the functions) and kept as fields.
local base = require "dropnet.nn.module"
local check = require "dropnet.check"
local F = require "dropnet.nn.functional"

local Module = base.Module

local M = {}

local MAX_OPTIONS = {"stride", "padding", "dilation", "ceil_mode"}
local AVG_OPTIONS = {"stride", "padding", "ceil_mode", "count_include_pad"}

-- A size field for extra_repr: "2" or "(2, 3)".
local function size_str(v)
  if type(v) == "table" then return string.format("(%d, %d)", v[1], v[2]) end
  return tostring(v)
end

-- The sizes and flags of a pool's fields, checked with the class's name.
local SIZE_MIN = {kernel_size = 1, stride = 1, padding = 0, dilation = 1}
local function check_fields(name, fields, known, one_d)
  for _, key in ipairs {"kernel_size", table.unpack(known)} do
    local v = fields[key]
    if SIZE_MIN[key] == nil then
      check.bool(name, key, v)
    elseif one_d then
      check.int(name, key, v, SIZE_MIN[key])
    else
      check.pair(name, key, v, SIZE_MIN[key])
    end
  end
end

-- A pool class: name, its function, its options (with defaults) and whether
-- sizes are single integers (1-d).
local function pool_class(name, fn, known, defaults, one_d)
  local cls = Module:extend(name)
  M[name] = cls
  function cls:init(kernel_size, opts)
    opts = check.options(name, "options", opts, known)
    self.kernel_size = kernel_size
    self.stride = opts.stride == nil and kernel_size or opts.stride
    for _, key in ipairs(known) do
      if key ~= "stride" then
        local v = opts[key]
        if v == nil then v = defaults[key] end
        self[key] = v
      end
    end
    check_fields(name, self, known, one_d)
  end
  function cls:_options()
    local o = {}
    for _, key in ipairs(known) do o[key] = self[key] end
    return o
  end
  function cls:forward(x) return fn(x, self.kernel_size, self:_options()) end
  function cls:extra_repr()
    local parts = {"kernel_size=" .. size_str(self.kernel_size)}
    for _, key in ipairs(known) do
      local v = self[key]
      parts[#parts + 1] = key .. "=" .. (type(v) == "boolean" and tostring(v) or size_str(v))
    end
    return table.concat(parts, ", ")
  end
  return cls
end

--- nn.MaxPool2d(kernel_size[, {stride = kernel_size, padding = 0, dilation = 1, ceil_mode = false}])
pool_class("MaxPool2d", F.max_pool2d, MAX_OPTIONS, {padding = 0, dilation = 1, ceil_mode = false})
--- nn.AvgPool2d(kernel_size[, {stride = kernel_size, padding = 0, ceil_mode = false, count_include_pad = true}])
pool_class("AvgPool2d", F.avg_pool2d, AVG_OPTIONS, {padding = 0, ceil_mode = false, count_include_pad = true})
--- nn.MaxPool1d(kernel_size[, opts]): integers; options as MaxPool2d.
pool_class("MaxPool1d", F.max_pool1d, MAX_OPTIONS, {padding = 0, dilation = 1, ceil_mode = false}, true)
--- nn.AvgPool1d(kernel_size[, opts]): integers; options as AvgPool2d.
pool_class("AvgPool1d", F.avg_pool1d, AVG_OPTIONS, {padding = 0, ceil_mode = false, count_include_pad = true}, true)

--- nn.AdaptiveAvgPool2d(output_size): an integer or {h, w}.
local AdaptiveAvgPool2d = Module:extend("AdaptiveAvgPool2d")
M.AdaptiveAvgPool2d = AdaptiveAvgPool2d
function AdaptiveAvgPool2d:init(output_size)
  check.pair("AdaptiveAvgPool2d", "output_size", output_size, 1)
  self.output_size = output_size
end
function AdaptiveAvgPool2d:forward(x) return F.adaptive_avg_pool2d(x, self.output_size) end
function AdaptiveAvgPool2d:extra_repr() return "output_size=" .. size_str(self.output_size) end

return M
