-- Shared helpers for the dropnet busted specs.
-- The reference computations here are plain Lua loops on nested tables: they
-- are the independent oracle the tensor kernels are checked against, so they
-- must never call the op under test.
local dn = require "dropnet"

local H = {}

-- --- values -----------------------------------------------------------------

--- x rounded to the nearest float32 (what a float32 tensor stores).
function H.f32(x)
  return (string.unpack("<f", string.pack("<f", x)))
end

--- Shape of a nested table ({} for a plain number).
function H.shape_of(x)
  local shape = {}
  while type(x) == "table" do
    shape[#shape + 1] = #x
    x = x[1]
  end
  return shape
end

--- Applies f to every leaf of a nested table (or to a number).
function H.map(x, f)
  if type(x) ~= "table" then return f(x) end
  local r = {}
  for i = 1, #x do r[i] = H.map(x[i], f) end
  return r
end

--- Every multi-index (1-based) of shape, row-major, as a list of tables.
function H.indices(shape)
  local out, idx, n = {}, {}, 1
  for d = 1, #shape do
    idx[d] = 1
    n = n * shape[d]
  end
  if n == 0 then return out end
  for _ = 1, n do
    out[#out + 1] = table.move(idx, 1, #idx, 1, {})
    for d = #shape, 1, -1 do
      idx[d] = idx[d] + 1
      if idx[d] <= shape[d] then break end
      idx[d] = 1
    end
  end
  return out
end

--- Element of a nested table at a multi-index.
function H.get(x, idx)
  for d = 1, #idx do x = x[idx[d]] end
  return x
end

--- Sets the element of a nested table at a multi-index.
function H.set(x, idx, v)
  if #idx == 0 then return v end
  for d = 1, #idx - 1 do x = x[idx[d]] end
  x[idx[#idx]] = v
end

--- A nested table of the given shape filled by f(idx).
function H.build(shape, f)
  local function rec(d, idx)
    if d > #shape then return f(table.move(idx, 1, #idx, 1, {})) end
    local r = {}
    for i = 1, shape[d] do
      idx[d] = i
      r[i] = rec(d + 1, idx)
    end
    idx[d] = nil
    return r
  end
  return rec(1, {})
end

--- Flattens a nested table row-major.
function H.flatten(x, out)
  out = out or {}
  if type(x) ~= "table" then
    out[#out + 1] = x
    return out
  end
  for i = 1, #x do H.flatten(x[i], out) end
  return out
end

-- --- random inputs (Lua's own generator: independent of dropnet's) ---------

--- Random nested table of float-ish values in [lo, hi) with 3 decimals.
function H.rand_values(shape, lo, hi)
  lo, hi = lo or -2, hi or 2
  return H.build(shape, function()
    return math.floor((lo + (hi - lo) * math.random()) * 1000 + 0.5) / 1000
  end)
end

--- Random nested table of integers in [lo, hi].
function H.rand_ints(shape, lo, hi)
  return H.build(shape, function() return math.random(lo, hi) end)
end

--- A tensor of the given values and its exact stored values read back.
function H.tensor_and_values(values, dtype)
  local t = dn.tensor(values, dtype)
  return t, t:totable()
end

--- A non-contiguous tensor holding `values`: every stride doubled, made by
--- selecting one half of a trailing dim of size 2 (works for any ndim >= 1).
function H.noncontig(values, dtype)
  local shape = H.shape_of(values)
  local padded = table.move(shape, 1, #shape, 1, {})
  padded[#padded + 1] = 2
  local base = dn.zeros(padded, dtype)
  local view = base:select(-1, 1)
  view:copy_(dn.tensor(values, dtype))
  return view
end

--- Transpose of a 2-D nested table.
function H.transpose(x)
  local r = {}
  for j = 1, #x[1] do
    r[j] = {}
    for i = 1, #x do r[j][i] = x[i][j] end
  end
  return r
end

-- --- reference ops on nested tables ------------------------------------------

--- Broadcast shape of two shapes (NumPy rules), or nil.
function H.broadcast_shape(sa, sb)
  local n = math.max(#sa, #sb)
  local out = {}
  for i = 1, n do
    local a = sa[#sa - n + i] or 1
    local b = sb[#sb - n + i] or 1
    if a ~= b and a ~= 1 and b ~= 1 then return nil end
    out[i] = a == 1 and b or a
  end
  return out
end

-- Element of x (shape sx) seen broadcast at the output index idx.
local function broadcast_get(x, sx, idx)
  if type(x) ~= "table" then return x end
  local lead = #idx - #sx
  for d = 1, #sx do
    local i = sx[d] == 1 and 1 or idx[lead + d]
    x = x[i]
  end
  return x
end

--- f(a, b) element-wise with broadcasting; a and b are nested tables or numbers.
function H.binary(a, b, f)
  local sa, sb = H.shape_of(a), H.shape_of(b)
  local shape = assert(H.broadcast_shape(sa, sb), "reference: shapes do not broadcast")
  if #shape == 0 then return f(a, b) end
  return H.build(shape, function(idx) return f(broadcast_get(a, sa, idx), broadcast_get(b, sb, idx)) end)
end

--- f(c, a, b) element-wise with broadcasting of all three.
function H.ternary(c, a, b, f)
  local sc, sa, sb = H.shape_of(c), H.shape_of(a), H.shape_of(b)
  local shape = assert(H.broadcast_shape(assert(H.broadcast_shape(sc, sa)), sb))
  if #shape == 0 then return f(c, a, b) end
  return H.build(shape, function(idx)
    return f(broadcast_get(c, sc, idx), broadcast_get(a, sa, idx), broadcast_get(b, sb, idx))
  end)
end

--- Reduces x along dim (1-based, negative from the end) with
--- fold(list_of_values) -> value. keepdim keeps a size-1 dim.
function H.reduce_dim(x, dim, keepdim, fold)
  local shape = H.shape_of(x)
  if dim < 0 then dim = dim + #shape + 1 end
  local out_shape = {}
  for d = 1, #shape do
    if d ~= dim then out_shape[#out_shape + 1] = shape[d]
    elseif keepdim then out_shape[#out_shape + 1] = 1 end
  end
  local function along(idx)
    local full, k = {}, 1
    for d = 1, #shape do
      if d == dim then
        full[d] = 0
        if keepdim then k = k + 1 end
      else
        full[d] = idx[k]
        k = k + 1
      end
    end
    local values = {}
    for i = 1, shape[dim] do
      full[dim] = i
      values[i] = H.get(x, full)
    end
    return fold(values)
  end
  if #out_shape == 0 then return along({}) end
  return H.build(out_shape, along)
end

function H.sum_list(v)
  local s = 0
  for i = 1, #v do s = s + v[i] end
  return s
end

function H.mean_list(v) return H.sum_list(v) / #v end

function H.var_list(v, correction)
  correction = correction or 1
  local m = H.mean_list(v)
  local s = 0
  for i = 1, #v do s = s + (v[i] - m) ^ 2 end
  return s / (#v - correction)
end

--- Max (or min with sign -1) and its first 1-based position.
function H.extreme_list(v, sign)
  local best, at = v[1], 1
  for i = 2, #v do
    if sign * v[i] > sign * best then best, at = v[i], i end
  end
  return best, at
end

--- Matrix product of 2-D nested tables.
function H.matmul2(a, b)
  local n, k, m = #a, #b, #b[1]
  assert(#a[1] == k, "reference matmul: inner sizes differ")
  local r = {}
  for i = 1, n do
    r[i] = {}
    for j = 1, m do
      local s = 0
      for p = 1, k do s = s + a[i][p] * b[p][j] end
      r[i][j] = s
    end
  end
  return r
end

-- --- assertions ----------------------------------------------------------------

local function fmt_path(path)
  local parts = {}
  for i = 1, #path do parts[i] = "[" .. path[i] .. "]" end
  return #parts > 0 and table.concat(parts) or "(scalar)"
end

-- Compares nested tables/numbers; returns nil or a message naming the first difference.
local function compare(actual, expected, rtol, atol, path)
  if type(expected) == "table" then
    if type(actual) ~= "table" then
      return string.format("%s: expected a table of %d items, got %s", fmt_path(path), #expected, tostring(actual))
    end
    if #actual ~= #expected then
      return string.format("%s: expected %d items, got %d", fmt_path(path), #expected, #actual)
    end
    for i = 1, #expected do
      path[#path + 1] = i
      local msg = compare(actual[i], expected[i], rtol, atol, path)
      path[#path] = nil
      if msg then return msg end
    end
    return nil
  end
  if type(actual) ~= "number" then
    return string.format("%s: expected %s, got %s", fmt_path(path), tostring(expected), tostring(actual))
  end
  if expected ~= expected then   -- NaN
    if actual ~= actual then return nil end
    return string.format("%s: expected nan, got %.9g", fmt_path(path), actual)
  end
  if expected == actual then return nil end   -- also equal infinities
  if math.abs(actual - expected) <= atol + rtol * math.abs(expected) then return nil end
  return string.format("%s: expected %.9g, got %.9g (diff %.3g, rtol %g, atol %g)", fmt_path(path), expected,
    actual, math.abs(actual - expected), rtol, atol)
end

local function as_values(x)
  if dn.is_tensor(x) then return x:totable() end
  return x
end

--- Asserts that actual (tensor, table or number) is close to expected.
function H.assert_close(actual, expected, rtol, atol, what)
  rtol, atol = rtol or 1e-5, atol or 1e-6
  local msg = compare(as_values(actual), as_values(expected), rtol, atol, {})
  if msg then error((what and (what .. ": ") or "") .. msg, 2) end
  return true
end

--- Asserts exact equality of values (tensor, table or number).
function H.assert_same(actual, expected, what)
  local msg = compare(as_values(actual), as_values(expected), 0, 0, {})
  if msg then error((what and (what .. ": ") or "") .. msg, 2) end
  return true
end

--- Asserts that a tensor has the given shape (and dtype when given).
-- Number of nonzero elements of t (a tensor op: the count is the statistic,
-- the oracle is the binomial distribution).
function H.count_nonzero(t)
  return t:ne(0):sum():item()
end

-- Asserts that k successes out of n trials fit Binomial(n, q) within 6 sd.
function H.assert_binomial(k, n, q, what)
  local sd = math.sqrt(n * q * (1 - q))
  if math.abs(k - n * q) > 6 * sd then
    error(string.format("%s: %d of %d, expected %.1f +- %.1f (6 sd)", what or "count", k, n, n * q, 6 * sd), 2)
  end
end

-- True when two tensors are equal element by element (exactly).
function H.same_values(a, b)
  return a:eq(b):sum():item() == a:numel()
end

function H.assert_shape(t, shape, dtype)
  local got = t:shape()
  local ok = #got == #shape
  for i = 1, #shape do ok = ok and got[i] == shape[i] end
  if not ok then
    error(string.format("expected shape {%s}, got {%s}", table.concat(shape, ","), table.concat(got, ",")), 2)
  end
  if dtype and t:dtype() ~= dtype then error(string.format("expected dtype %s, got %s", dtype, t:dtype()), 2) end
  return true
end

--- The error message raised by fn(...) (fails if fn does not raise).
function H.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("expected an error, but the call succeeded", 2) end
  return tostring(err)
end

--- msg without the "file:line: " that errors carry in front (the user's line).
function H.strip_position(msg)
  return (tostring(msg):gsub("^[^\n:]+:%d+: ", "", 1))
end

--- Asserts fn raises an error whose message contains every plain string in `parts`.
function H.assert_error(fn, parts)
  local ok, err = pcall(fn)
  if ok then error("expected an error containing '" .. table.concat(parts, "', '") .. "', but none was raised", 2) end
  err = tostring(err)
  for _, p in ipairs(parts) do
    if not err:find(p, 1, true) then
      error(string.format("error message %q does not contain %q", err, p), 2)
    end
  end
  return err
end

--- s quoted for a POSIX shell.
function H.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- The whole contents of a file.
function H.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- Writes bytes to a file, replacing it.
function H.write_file(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

--- A fresh empty directory under the system's temporary directory.
function H.make_tempdir()
  local dir = os.tmpname()   -- creates a file: take its unique name, not the file
  os.remove(dir)
  assert(os.execute("mkdir " .. H.quote(dir)))
  return dir
end

--- Writes a stand-in for Fashion-MNIST into dir (created): gzip IDX files of o.train training and o.test
-- test 28x28 images whose label k in 0..o.classes-1 adds k * o.step to uniform noise in [0, o.noise), drawn
-- from dn.Generator(o.seed). Tests never read the real data set.
function H.write_fake_fashion_mnist(dir, o)
  assert(os.execute("mkdir -p " .. H.quote(dir)))
  local g = dn.Generator(o.seed)
  for _, split in ipairs({{"train", o.train}, {"t10k", o.test}}) do
    local name, n = split[1], split[2]
    local labels = (dn.rand(n, g) * o.classes):int()
    local images = (dn.rand(n, 28, 28, g) * o.noise + labels:float():view(n, 1, 1) * o.step):int():to("uint8")
    dn.idx_write(dir .. "/" .. name .. "-images-idx3-ubyte.gz", images)
    dn.idx_write(dir .. "/" .. name .. "-labels-idx1-ubyte.gz", labels:to("uint8"))
  end
end

--- Removes dir and everything in it.
function H.remove_dir(dir)
  if dir then os.execute("rm -rf " .. H.quote(dir)) end
end

return H
