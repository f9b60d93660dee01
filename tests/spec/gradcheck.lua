-- Central finite-difference gradient checks at the Lua API level.
--
--   local G = require "gradcheck"
--   local ok, report = G.check(function(x) return x[1] * x[2] end, {a, b})
--
-- The loss is sum(out * w) for fixed random weights w (so every output
-- element counts); its gradient through autograd is compared with central
-- differences computed in double from the float32 values read back with
-- :totable(). These plain-Lua loops are the independent oracle: they never
-- call the backward under test.
local dn = require "dropnet"
local H = require "helpers"

local G = {}

G.defaults = {eps = 1e-2, rtol = 1e-2, atol = 1e-3, weight_seed = 4242, max_reported = 3}

-- --- a seeded generator, independent of math.random -------------------------------

local Rng = {}
Rng.__index = Rng

--- A generator (SplitMix64) whose sequence depends only on `seed`.
function G.rng(seed)
  return setmetatable({state = math.tointeger(seed) or 1}, Rng)
end

-- The next 53 random bits as a float in [0, 1).
function Rng:float()
  self.state = self.state + 0x9E3779B97F4A7C15
  local z = self.state
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  z = z ~ (z >> 31)
  return (z >> 11) / 9007199254740992.0
end

--- Uniform in [lo, hi).
function Rng:uniform(lo, hi) return lo + (hi - lo) * self:float() end

--- Integer uniform in [lo, hi].
function Rng:int(lo, hi) return lo + math.floor(self:float() * (hi - lo + 1)) end

--- One element of a list.
function Rng:pick(list) return list[self:int(1, #list)] end

--- A random permutation of 0..n-1.
function Rng:perm(n)
  local p = {}
  for i = 1, n do p[i] = i - 1 end
  for i = n, 2, -1 do
    local j = self:int(1, i)
    p[i], p[j] = p[j], p[i]
  end
  return p
end

-- --- input values --------------------------------------------------------------------

local function numel(shape)
  local n = 1
  for i = 1, #shape do n = n * shape[i] end
  return n
end

-- Value kinds that keep finite differences away from kinks, poles and ties
-- (i is the 0-based row-major position, n the element count).
local KINDS = {
  any = function(r) return r:uniform(-2, 2) end,
  away0 = function(r)                        -- |x| in [0.3, 2]: abs, relu, divisors
    local v = r:uniform(0.3, 2)
    return r:float() < 0.5 and -v or v
  end,
  positive = function(r) return r:uniform(0.5, 2) end,      -- log, sqrt, pow bases
  prob = function(r) return r:uniform(0.1, 0.9) end,        -- BCE targets
  small = function(r) return r:uniform(-0.5, 0.5) end,
  -- maximum/minimum pairs: a and b lattices 0.2 apart, never within eps of each other
  lattice_a = function(r) return -1.6 + 0.4 * r:int(0, 8) end,
  lattice_b = function(r) return -1.4 + 0.4 * r:int(0, 7) end,
}

--- A nested table of the given shape and value kind, every value a float32.
-- kind: a name from KINDS above, "distinct" (a random order of values 0.1
-- apart: no ties within a step, for max/min) or a function(r) -> value.
function G.values(r, shape, kind)
  kind = kind or "any"
  if kind == "distinct" then
    local n = numel(shape)
    local perm, k = r:perm(n), 0
    local function next_value()
      k = k + 1
      return H.f32(-0.05 * n + 0.1 * perm[k] + 0.013)
    end
    if #shape == 0 then return next_value() end
    return H.build(shape, next_value)
  end
  local gen = kind
  if type(kind) ~= "function" then gen = assert(KINDS[kind], "gradcheck: unknown value kind " .. tostring(kind)) end
  if #shape == 0 then return H.f32(gen(r)) end
  return H.build(shape, function() return H.f32(gen(r)) end)
end

-- --- tensors in a layout ------------------------------------------------------------------

--- A float32 tensor holding `values`, stored in `layout`:
-- "contiguous"; "transposed" (last two dims stored swapped: strides out of
-- order; 1-D and 0-dim fall back to "strided"); "strided" (every stride
-- doubled and an offset, through a trailing dim of size 2; 0-dim stays contiguous).
-- The result is a leaf (it records nothing), whatever its layout.
function G.tensor(values, layout)
  layout = layout or "contiguous"
  local shape = H.shape_of(values)
  if layout == "transposed" and #shape < 2 then layout = "strided" end
  if #shape == 0 or layout == "contiguous" then return dn.tensor(values) end
  if layout == "transposed" then
    return dn.tensor(values):transpose(-1, -2):contiguous():transpose(-1, -2)
  end
  assert(layout == "strided", "gradcheck: unknown layout " .. tostring(layout))
  local padded = table.move(shape, 1, #shape, 1, {})
  padded[#padded + 1] = 2
  local view = dn.zeros(padded):select(-1, 2)
  view:copy_(dn.tensor(values))
  return view
end

--- A leaf that requires grad (see G.tensor for layouts).
function G.leaf(values, layout)
  return G.tensor(values, layout):requires_grad_(true)
end

--- Random leaf of a shape, value kind and layout.
function G.random_leaf(r, shape, kind, layout)
  return G.leaf(G.values(r, shape, kind), layout)
end

--- An int32 tensor (class targets, indices).
function G.ints(values)
  return dn.tensor(values, "int32")
end

-- --- the check ------------------------------------------------------------------------------

local function flat_values(t)
  local v = t:totable()
  if type(v) == "number" then return {v} end
  return H.flatten(v)
end

-- A view of the element of t at 0-based row-major position i.
local function element_view(t, i)
  local shape = t:shape()
  local e = t
  for d = 1, #shape do
    local stride = numel({table.unpack(shape, d + 1)})
    e = e:select(1, i // stride + 1)
    i = i % stride
  end
  return e
end

local function shape_str(t)
  return "{" .. table.concat(t:shape(), ",") .. "}"
end

-- sum(out * weights) in double, with grad mode off.
local function weighted_output(fn, inputs, weights)
  local out = dn.no_grad(fn, inputs)
  local values, s = flat_values(out), 0
  for i = 1, #values do s = s + values[i] * weights[i] end
  return s
end

--- Checks fn(inputs) (inputs: a list of tensors; fn returns one float32
-- tensor) by central differences. opts: eps, rtol, atol, weight_seed,
-- max_reported (mismatching elements listed per input).
-- Returns true, or false and a report naming every kind of mismatch found:
-- the result does not require grad, an input requiring grad gets none or one of
-- the wrong shape, an input not requiring grad gets one, or a gradient
-- element differs from its finite difference by more than atol + rtol * |fd|.
function G.check(fn, inputs, opts)
  opts = opts or {}
  local eps = opts.eps or G.defaults.eps
  local rtol, atol = opts.rtol or G.defaults.rtol, opts.atol or G.defaults.atol
  local max_reported = opts.max_reported or G.defaults.max_reported
  local problems = {}
  local function report(fmt, ...) problems[#problems + 1] = string.format(fmt, ...) end

  local any_requires_grad = false
  for _, t in ipairs(inputs) do
    if dn.is_tensor(t) then
      t.grad = nil
      any_requires_grad = any_requires_grad or t.requires_grad
    end
  end
  if not any_requires_grad then return false, "no input requires grad: nothing to check" end

  local out = fn(inputs)
  if not dn.is_tensor(out) then return false, "the function returned " .. type(out) .. ", not a tensor" end
  if out:dtype() ~= "float32" then return false, "the result is " .. out:dtype() .. ", not float32" end
  -- (a result may be a leaf itself: x:contiguous() of a contiguous x is x)
  if not out.requires_grad then return false, "the result does not require grad: nothing was recorded" end
  local wr = G.rng(opts.weight_seed or G.defaults.weight_seed)
  local weight_values = G.values(wr, out:shape(), "any")
  local weights = flat_values(dn.tensor(weight_values))
  out:backward(dn.tensor(weight_values))
  out = nil   -- luacheck: ignore 311 (the graph's last reference goes before the checks below)

  for k, x in ipairs(inputs) do
    if not dn.is_tensor(x) or x:dtype() ~= "float32" then
      if dn.is_tensor(x) and x.grad ~= nil then report("input %d (%s) got a gradient", k, x:dtype()) end
    elseif not x.requires_grad then
      if x.grad ~= nil then report("input %d does not require grad but got a gradient", k) end
    elseif x.grad == nil then
      report("input %d (shape %s) requires grad but got no gradient", k, shape_str(x))
    elseif shape_str(x.grad) ~= shape_str(x) or x.grad:dtype() ~= "float32" then
      report("input %d: gradient of shape %s (%s) for an input of shape %s", k, shape_str(x.grad),
        x.grad:dtype(), shape_str(x))
    else
      local analytic, original = flat_values(x.grad), flat_values(x)
      local mismatches = 0
      for i = 1, #original do
        local e = dn.no_grad(element_view, x, i - 1)
        local up, down = H.f32(original[i] + eps), H.f32(original[i] - eps)
        dn.no_grad(e.fill_, e, up)
        local f_up = weighted_output(fn, inputs, weights)
        dn.no_grad(e.fill_, e, down)
        local f_down = weighted_output(fn, inputs, weights)
        dn.no_grad(e.fill_, e, original[i])
        local numeric = (f_up - f_down) / (up - down)
        if not (math.abs(analytic[i] - numeric) <= atol + rtol * math.abs(numeric)) then
          mismatches = mismatches + 1
          if mismatches <= max_reported then
            report("input %d (shape %s) element %d: backward %.7g, finite differences %.7g", k, shape_str(x), i,
              analytic[i], numeric)
          end
        end
      end
      if mismatches > max_reported then
        report("input %d: %d mismatching elements of %d in all", k, mismatches, #original)
      end
    end
  end
  if #problems > 0 then return false, table.concat(problems, "\n") end
  return true
end

--- G.check, raising an error with the report (prefixed by `name`) on a mismatch.
function G.assert(name, fn, inputs, opts)
  local ok, report = G.check(fn, inputs, opts)
  if not ok then error(name .. ": gradient check failed:\n" .. report, 2) end
  return true
end

return G
