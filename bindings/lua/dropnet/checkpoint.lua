--- dropnet.checkpoint: save and load nested training state (model, optimizer,
-- generator, epoch, options, history) as one safetensors file.
--
--   checkpoint.save("run/checkpoint.safetensors", {
--     model = model:state_dict(), optim = opt:state_dict(),
--     rng = dn.get_rng_state(), epoch = 3, options = opts})
--   local state = checkpoint.load("run/checkpoint.safetensors")
--
-- Tensors go into the file as tensors named by their path ("model/1.weight",
-- "optim/state/#1/momentum_buffer"; "#n" is the integer key n). Numbers,
-- booleans and strings go into the safetensors metadata under the same paths,
-- typed so they come back exactly ("i:42", "f:0.1" printed with 17 digits,
-- "b:true", "s:text"); an empty table is "t:". The file is written atomically
-- (dn.save), so a run killed while saving keeps its previous checkpoint.
local dn = require "dropnet"
local check = require "dropnet.check"

local checkpoint = {}

local FORMAT_KEY, FORMAT = "__dropnet__", "checkpoint/1"

local function key_part(k, where)
  if math.type(k) == "integer" then return "#" .. k end
  if type(k) ~= "string" then
    check.fail("checkpoint.save: key of type %s at '%s' (only strings and integers)", type(k), where)
  end
  if k == "" or k:find("/", 1, true) or k:sub(1, 1) == "#" or k == FORMAT_KEY then
    check.fail("checkpoint.save: key '%s' at '%s' cannot be stored (empty, contains '/', or starts with '#')",
      k, where)
  end
  return k
end

local function encode_value(v, path)
  local t = math.type(v)
  if t == "integer" then return string.format("i:%d", v) end
  if t == "float" then
    if v ~= v then return "f:nan" end
    if v == math.huge then return "f:inf" end
    if v == -math.huge then return "f:-inf" end
    return string.format("f:%.17g", v)
  end
  if type(v) == "boolean" then return v and "b:true" or "b:false" end
  if type(v) == "string" then return "s:" .. v end
  check.fail("checkpoint.save: value of type %s at '%s' cannot be stored", type(v), path)
end

local function flatten(value, path, tensors, metadata, seen)
  if dn.is_tensor(value) then
    tensors[path] = value
  elseif type(value) == "table" then
    if seen[value] then check.fail("checkpoint.save: a cycle at '%s'", path) end
    seen[value] = true
    if next(value) == nil then metadata[path] = "t:" end
    for k, v in pairs(value) do
      local p = (path == "" and "" or path .. "/") .. key_part(k, path)
      flatten(v, p, tensors, metadata, seen)
    end
    seen[value] = nil
  else
    metadata[path] = encode_value(value, path)
  end
end

--- Saves a nested table of tensors, numbers, booleans and strings to path.
function checkpoint.save(path, state)
  if type(path) ~= "string" then check.error("checkpoint.save: path must be a string") end
  if type(state) ~= "table" then check.error("checkpoint.save: state must be a table") end
  local tensors, metadata = {}, {}
  flatten(state, "", tensors, metadata, {})
  metadata[FORMAT_KEY] = FORMAT
  dn.save(path, tensors, metadata)
end

local function decode_value(s, path, file)
  local kind, rest = s:sub(1, 2), s:sub(3)
  if kind == "i:" then
    local v = math.tointeger(tonumber(rest))
    if v then return v end
  elseif kind == "f:" then
    if rest == "nan" then return 0 / 0 end
    if rest == "inf" then return math.huge end
    if rest == "-inf" then return -math.huge end
    local v = tonumber(rest)
    if v then return v + 0.0 end
  elseif kind == "b:" then
    if rest == "true" or rest == "false" then return rest == "true" end
  elseif kind == "s:" then
    return rest
  elseif kind == "t:" then
    return {}
  end
  check.fail("checkpoint.load: %s: bad value '%s' at '%s'", file, s, path)
end

-- Sets root[path] = value, creating tables along the path.
local function place(root, path, value, file)
  local node = root
  local parts = {}
  for part in path:gmatch("[^/]+") do parts[#parts + 1] = part end
  for i, part in ipairs(parts) do
    local k = part:sub(1, 1) == "#" and math.tointeger(tonumber(part:sub(2))) or part
    if k == nil then check.fail("checkpoint.load: %s: bad key '%s'", file, path) end
    if i == #parts then
      node[k] = value
    else
      if node[k] == nil then node[k] = {} end
      if type(node[k]) ~= "table" then
        check.fail("checkpoint.load: %s: '%s' is both a value and a table", file, path)
      end
      node = node[k]
    end
  end
end

--- Loads a file written by checkpoint.save and returns the nested table.
function checkpoint.load(path)
  if type(path) ~= "string" then check.error("checkpoint.load: path must be a string") end
  local tensors, metadata = dn.load(path)
  if metadata[FORMAT_KEY] ~= FORMAT then
    check.fail("checkpoint.load: %s is not a dropnet checkpoint (no %s = %s in its metadata)", path,
      FORMAT_KEY, FORMAT)
  end
  local state = {}
  for name, t in pairs(tensors) do place(state, name, t, path) end
  for name, s in pairs(metadata) do
    if name ~= FORMAT_KEY then place(state, name, decode_value(s, name, path), path) end
  end
  return state
end

return checkpoint
