--- Small helpers shared by the nn modules: argument and option checks, and
-- number formatting for printed models. Internal to dropnet.nn.
local U = {}

--- A short description of v for error messages: numbers and strings show
-- their value, everything else its type.
function U.describe(v)
  if type(v) == "number" then return tostring(v) end
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" and (rawget(v, "__is_module_class") or rawget(v, "super")) then
    return "class " .. tostring(v.__name)
  end
  local mt = getmetatable(v)
  if type(mt) == "table" and type(rawget(mt, "__name")) == "string" then return mt.__name end
  return type(v)
end

--- Raises "<where>: unknown option 'x' (known: a, b)" when opts holds a key
-- not in `known`; returns opts, or an empty table for nil.
function U.check_options(opts, known, where)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(string.format("%s: options must be a table (got %s)", where, U.describe(opts)), 0)
  end
  for key in pairs(opts) do
    local found = false
    for _, k in ipairs(known) do
      if k == key then found = true break end
    end
    if not found then
      error(string.format("%s: unknown option '%s' (known: %s)", where, tostring(key), table.concat(known, ", ")), 0)
    end
  end
  return opts
end

--- v as an integer >= min (any integer when min is nil), or an error naming the argument.
function U.check_int(v, min, where, what)
  local i = math.type(v) == "float" and math.tointeger(v) or v
  if math.type(i) ~= "integer" or (min and i < min) then
    local req = not min and "an integer" or min == 1 and "a positive integer" or string.format("an integer >= %d", min)
    error(string.format("%s: %s must be %s (got %s)", where, what, req, U.describe(v)), 0)
  end
  return i
end

--- v as a finite number, or an error naming the argument.
function U.check_number(v, where, what)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
    error(string.format("%s: %s must be a finite number (got %s)", where, what, U.describe(v)), 0)
  end
  return v
end

--- v as a boolean, or an error naming the argument.
function U.check_bool(v, where, what)
  if type(v) ~= "boolean" then
    error(string.format("%s: %s must be true or false (got %s)", where, what, U.describe(v)), 0)
  end
  return v
end

--- One of the strings in `choices`, or an error listing them.
function U.check_choice(v, choices, where, what)
  for _, c in ipairs(choices) do
    if v == c then return v end
  end
  error(string.format("%s: %s must be one of \"%s\" (got %s)", where, what, table.concat(choices, "\", \""),
    U.describe(v)), 0)
end

local generator_mt = getmetatable(require("dropnet.core").default_generator())

--- v as a dropnet.Generator (nil allowed: the default generator), or an error.
function U.check_generator(v, where)
  if v ~= nil and getmetatable(v) ~= generator_mt then
    error(string.format("%s: generator must be a dropnet.Generator (got %s)", where, U.describe(v)), 0)
  end
  return v
end

--- A number as printed in a model summary: 0.01, 1, 1e-05.
function U.fmt(v)
  if math.type(v) == "integer" then return tostring(v) end
  return string.format("%.6g", v)
end

return U
