-- Tensor math against plain-Lua references on small random tables.
local dn = require "dropnet"
local H = require "helpers"

math.randomseed(20240611)

local function b01(c) return c and 1 or 0 end

-- Reference of every binary op, in double precision.
local BINARY = {
  add = function(x, y) return x + y end,
  sub = function(x, y) return x - y end,
  mul = function(x, y) return x * y end,
  div = function(x, y) return x / y end,
  maximum = function(x, y) return math.max(x, y) end,
  minimum = function(x, y) return math.min(x, y) end,
}
local COMPARE = {
  eq = function(x, y) return b01(x == y) end,
  ne = function(x, y) return b01(x ~= y) end,
  lt = function(x, y) return b01(x < y) end,
  le = function(x, y) return b01(x <= y) end,
  gt = function(x, y) return b01(x > y) end,
  ge = function(x, y) return b01(x >= y) end,
}
local METAMETHOD = {
  add = function(a, b) return a + b end,
  sub = function(a, b) return a - b end,
  mul = function(a, b) return a * b end,
  div = function(a, b) return a / b end,
  pow = function(a, b) return a ^ b end,
}

-- Values whose magnitude is at least 0.5 (safe divisors).
local function away_from_zero(shape)
  return H.map(H.rand_values(shape, -2, 2), function(v)
    local s = v < 0 and -1 or 1
    return s * (0.5 + math.abs(v))
  end)
end

-- Pairs of operand shapes, including broadcasting and 0-dim operands.
local SHAPE_PAIRS = {
  {{2, 3}, {2, 3}},
  {{3, 1}, {1, 4}},
  {{2, 3}, {3}},
  {{3}, {2, 3}},
  {{2, 1, 4}, {3, 1}},
  {{2, 3}, {}},
  {{}, {2, 3}},
  {{4}, {4}},
}

-- The tensor for `values` in three layouts: contiguous, strided, and (2-D) transposed.
local function layouts(values, dtype)
  local shape = H.shape_of(values)
  local out = {{"contiguous", dn.tensor(values, dtype)}}
  if #shape >= 1 then out[#out + 1] = {"strided", H.noncontig(values, dtype)} end
  if #shape == 2 then out[#out + 1] = {"transposed", dn.tensor(H.transpose(values), dtype):t()} end
  return out
end

local function shape_name(s) return "[" .. table.concat(s, ",") .. "]" end

describe("binary ops", function()
  for _, pair in ipairs(SHAPE_PAIRS) do
    local sa, sb = pair[1], pair[2]
    it("arithmetic " .. shape_name(sa) .. " with " .. shape_name(sb), function()
      local av = dn.tensor(H.rand_values(sa)):totable()
      local bv = dn.tensor(away_from_zero(sb)):totable()
      for _, la in ipairs(layouts(av)) do
        for _, lb in ipairs(layouts(bv)) do
          local a, b = la[2], lb[2]
          for name, ref in pairs(BINARY) do
            local what = name .. " " .. la[1] .. " " .. lb[1]
            local r = a[name](a, b)
            assert.are.equal("float32", r:dtype(), what)
            H.assert_close(r, H.binary(av, bv, ref), 1e-5, 1e-6, what)
            H.assert_close(dn[name](a, b), r, 0, 0, what .. " (functional)")
          end
          for name, mm in pairs(METAMETHOD) do
            if name ~= "pow" then
              H.assert_close(mm(a, b), H.binary(av, bv, BINARY[name]), 1e-5, 1e-6, "metamethod " .. name)
            end
          end
        end
      end
    end)

    it("comparisons " .. shape_name(sa) .. " with " .. shape_name(sb), function()
      -- small integers so that equal elements occur
      local av = H.rand_ints(sa, -2, 2)
      local bv = H.rand_ints(sb, -2, 2)
      for _, la in ipairs(layouts(av)) do
        for _, lb in ipairs(layouts(bv)) do
          for name, ref in pairs(COMPARE) do
            local r = la[2][name](la[2], lb[2])
            assert.are.equal("float32", r:dtype(), name)
            H.assert_same(r, H.binary(av, bv, ref), name .. " " .. la[1] .. " " .. lb[1])
          end
        end
      end
    end)
  end

  it("pow with tensors and numbers", function()
    local av = dn.tensor(H.rand_values({3, 4}, 0.1, 3)):totable()
    local ev = dn.tensor(H.rand_values({4}, -2, 2)):totable()
    local a, e = dn.tensor(av), dn.tensor(ev)
    H.assert_close(a:pow(e), H.binary(av, ev, function(x, y) return x ^ y end), 1e-5, 1e-6)
    H.assert_close(a:pow(2), H.map(av, function(x) return x * x end), 1e-6, 1e-6)
    H.assert_close(a ^ 2, H.map(av, function(x) return x * x end), 1e-6, 1e-6)
    H.assert_close(a ^ 0.5, H.map(av, math.sqrt), 1e-6, 1e-6)
    H.assert_close(2 ^ e, H.map(ev, function(x) return 2 ^ x end), 1e-5, 1e-6)
    H.assert_close(dn.pow(a, -1), H.map(av, function(x) return 1 / x end), 1e-5, 1e-6)
  end)

  it("numbers on either side of each arithmetic operator", function()
    local av = dn.tensor(away_from_zero({2, 3})):totable()
    for _, l in ipairs(layouts(av)) do
      local a = l[2]
      local function check(got, f, what) H.assert_close(got, H.map(av, f), 1e-5, 1e-6, what .. " " .. l[1]) end
      check(a + 2, function(x) return x + 2 end, "t + 2")
      check(2 + a, function(x) return 2 + x end, "2 + t")
      check(a - 2, function(x) return x - 2 end, "t - 2")
      check(2 - a, function(x) return 2 - x end, "2 - t")
      check(a * 3, function(x) return x * 3 end, "t * 3")
      check(3 * a, function(x) return 3 * x end, "3 * t")
      check(a / 4, function(x) return x / 4 end, "t / 4")
      check(1 / a, function(x) return 1 / x end, "1 / t")
      check(a ^ 2, function(x) return x ^ 2 end, "t ^ 2")
      check(2 ^ a, function(x) return 2 ^ x end, "2 ^ t")
      check(-a, function(x) return -x end, "-t")
      check(a:add(2), function(x) return x + 2 end, "t:add(2)")
      check(dn.sub(2, a), function(x) return 2 - x end, "dn.sub(2, t)")
      check(dn.div(1, a), function(x) return 1 / x end, "dn.div(1, t)")
      check(a:maximum(0), function(x) return math.max(x, 0) end, "t:maximum(0)")
      check(a:minimum(0), function(x) return math.min(x, 0) end, "t:minimum(0)")
      check(a:gt(0), function(x) return b01(x > 0) end, "t:gt(0)")
      check(dn.lt(0, a), function(x) return b01(0 < x) end, "dn.lt(0, t)")
      check(a:eq(av[1][1]), function(x) return b01(x == av[1][1]) end, "t:eq(x)")
      check(a:max(dn.zeros(3)), function(x) return math.max(x, 0) end, "t:max(tensor)")
      check(a:min(dn.zeros(3)), function(x) return math.min(x, 0) end, "t:min(tensor)")
    end
  end)

  it("0-dim results of 0-dim operands", function()
    local r = dn.tensor(2) * dn.tensor(3)
    H.assert_shape(r, {})
    assert.are.equal(6, r:item())
  end)

  it("empty tensors", function()
    H.assert_shape(dn.zeros(0, 3) + dn.zeros(3), {0, 3})
    H.assert_shape(dn.zeros(0) * 2, {0})
  end)
end)

describe("dtypes", function()
  local i = dn.tensor({1, 2, 3}, "int32")
  local j = dn.tensor({2, 2, -2}, "int32")
  local f = dn.tensor{0.5, 1, 1.5}

  local function check(t, dtype, values, what)
    assert.are.equal(dtype, t:dtype(), what)
    H.assert_close(t, values, 1e-6, 1e-7, what)
  end

  it("int32 op int32 stays int32, except div", function()
    check(i + j, "int32", {3, 4, 1}, "add")
    check(i - j, "int32", {-1, 0, 5}, "sub")
    check(i * j, "int32", {2, 4, -6}, "mul")
    check(i:maximum(j), "int32", {2, 2, 3}, "maximum")
    check(i / j, "float32", {0.5, 1, -1.5}, "div")
    check(i:pow(2), "int32", {1, 4, 9}, "pow 2")
    check(i ^ -1, "float32", {1, 0.5, 1 / 3}, "pow -1")
    check(i:eq(j), "int32", {0, 1, 0}, "eq")
    check(i:lt(j), "int32", {1, 0, 0}, "lt")
  end)

  it("int32 with numbers", function()
    check(i + 1, "int32", {2, 3, 4}, "i + 1")
    check(10 - i, "int32", {9, 8, 7}, "10 - i")
    check(i * 2, "int32", {2, 4, 6}, "i * 2")
    check(i * 2.5, "float32", {2.5, 5, 7.5}, "i * 2.5")
    check(i + 0.5, "float32", {1.5, 2.5, 3.5}, "i + 0.5")
    check(i / 2, "float32", {0.5, 1, 1.5}, "i / 2")
    check(1 / i, "float32", {1, 0.5, 1 / 3}, "1 / i")
    check(-i, "int32", {-1, -2, -3}, "-i")
    check(i:gt(1), "int32", {0, 1, 1}, "i:gt(1)")
  end)

  it("int32 mixed with float32 gives float32", function()
    check(i + f, "float32", {1.5, 3, 4.5}, "i + f")
    check(f * i, "float32", {0.5, 2, 4.5}, "f * i")
    check(i:lt(f), "float32", {0, 0, 0}, "i < f")
  end)

  it("unary functions", function()
    check(j:abs(), "int32", {2, 2, 2}, "abs")
    check(j:neg(), "int32", {-2, -2, 2}, "neg")
    check(j:relu(), "int32", {2, 2, 0}, "relu")
    check(i:exp(), "float32", {math.exp(1), math.exp(2), math.exp(3)}, "exp")
    check(i:sqrt(), "float32", {1, math.sqrt(2), math.sqrt(3)}, "sqrt")
    check(i:log(), "float32", {0, math.log(2), math.log(3)}, "log")
    check(j:clamp(-1, 1), "int32", {1, 1, -1}, "clamp")
  end)

  it("reductions", function()
    assert.are.equal("int32", i:sum():dtype())
    assert.are.equal(6, i:sum():item())
    assert.are.equal("integer", math.type(i:sum():item()))
    assert.are.equal("float32", i:mean():dtype())
    assert.are.equal(2, i:mean():item())
    assert.are.equal("int32", i:max():dtype())
    assert.are.equal(3, i:max():item())
    assert.are.equal(1, i:min():item())
    local m = dn.tensor({{1, 5}, {7, 2}}, "int32")
    check(m:sum(1), "int32", {8, 7}, "sum(1)")
    local v, idx = m:max(2)
    check(v, "int32", {5, 7}, "max(2) values")
    check(idx, "int32", {2, 1}, "max(2) indices")
  end)

  it("int32 results outside the int32 range are an error naming the op, not a wrap-around", function()
    local max = dn.tensor({2147483647, 1}, "int32")
    local min = dn.tensor({-2147483648, 1}, "int32")
    H.assert_error(function() return max + 1 end, {"add: int32 overflow: 2147483647 + 1 is outside the int32 range"})
    H.assert_error(function() return min - 1 end, {"sub: int32 overflow: -2147483648 - 1"})
    H.assert_error(function() return max * max end, {"mul: int32 overflow: 2147483647 * 2147483647"})
    H.assert_error(function() return dn.tensor({2}, "int32") ^ 31 end, {"pow: int32 overflow: 2 ^ 31"})
    H.assert_error(function() return -min end, {"neg: int32 overflow: -(-2147483648)"})
    H.assert_error(function() return min:abs() end, {"abs: int32 overflow: abs(-2147483648)"})
    H.assert_error(function() max:add_(1) end, {"add_: int32 overflow"})
    H.assert_error(function() min:mul_(-1) end, {"mul_: int32 overflow: -2147483648 * -1"})
    H.assert_same(max, {2147483647, 1})   -- a failed in-place op leaves the tensor as it was
    H.assert_same(min, {-2147483648, 1})
    check(max + 0, "int32", {2147483647, 1}, "the limits themselves fit")
    check(dn.tensor({-2}, "int32") ^ 31, "int32", {-2147483648}, "(-2)^31 fits")
    check(max:float() + 1, "float32", {2147483648, 2}, "float32 does not overflow")
  end)

  it("in-place ops keep the dtype", function()
    local k = dn.tensor({1, 2}, "int32")
    k:add_(3)
    check(k, "int32", {4, 5}, "add_")
    local g = dn.tensor{1, 2}
    g:add_(dn.tensor({1, 1}, "int32"))
    check(g, "float32", {2, 3}, "float add_ int")
  end)
end)

describe("unary ops", function()
  local REF = {
    neg = function(x) return -x end,
    exp = math.exp,
    abs = math.abs,
    relu = function(x) return math.max(x, 0) end,
    sigmoid = function(x) return 1 / (1 + math.exp(-x)) end,
    tanh = function(x) return (math.exp(x) - math.exp(-x)) / (math.exp(x) + math.exp(-x)) end,
  }
  local POSITIVE = {log = math.log, sqrt = math.sqrt}

  it("match the reference on every layout", function()
    local xv = dn.tensor(H.rand_values({3, 4}, -3, 3)):totable()
    local pv = dn.tensor(H.rand_values({3, 4}, 0.01, 5)):totable()
    for name, ref in pairs(REF) do
      for _, l in ipairs(layouts(xv)) do
        local r = l[2][name](l[2])
        assert.are.equal("float32", r:dtype())
        H.assert_close(r, H.map(xv, ref), 1e-5, 1e-6, name .. " " .. l[1])
        H.assert_close(dn[name](l[2]), r, 0, 0, name .. " functional")
      end
    end
    for name, ref in pairs(POSITIVE) do
      for _, l in ipairs(layouts(pv)) do
        H.assert_close(l[2][name](l[2]), H.map(pv, ref), 1e-5, 1e-6, name .. " " .. l[1])
      end
    end
  end)

  it("handle extreme inputs", function()
    local x = dn.tensor{-100, 0, 100}
    H.assert_close(x:sigmoid(), {0, 0.5, 1}, 1e-6, 1e-30)
    H.assert_close(x:tanh(), {-1, 0, 1}, 1e-6, 0)
    local nan = dn.tensor{-1}:log()[1]
    assert.is_true(nan ~= nan)
    assert.are.equal(-math.huge, dn.tensor{0}:log()[1])
    local s = dn.tensor{-1}:sqrt()[1]
    assert.is_true(s ~= s)
    assert.are.equal(math.huge, dn.tensor{1000}:exp()[1])
  end)

  it("clamp with both, one or the other bound", function()
    local xv = dn.tensor(H.rand_values({4, 5}, -3, 3)):totable()
    for _, l in ipairs(layouts(xv)) do
      local x = l[2]
      H.assert_same(x:clamp(-1, 1), H.map(xv, function(v) return math.min(math.max(v, -1), 1) end), "both")
      H.assert_same(x:clamp(0), H.map(xv, function(v) return math.max(v, 0) end), "lo only")
      H.assert_same(x:clamp(nil, 0.5), H.map(xv, function(v) return math.min(v, H.f32(0.5)) end), "hi only")
      H.assert_same(x:clamp(0, nil), H.map(xv, function(v) return math.max(v, 0) end), "lo, nil")
    end
  end)
end)

describe("in-place ops", function()
  it("add_, sub_, mul_, div_ with tensors and numbers return self", function()
    local av = dn.tensor(H.rand_values({2, 3})):totable()
    local bv = dn.tensor(away_from_zero({3})):totable()
    for name, ref in pairs{add_ = BINARY.add, sub_ = BINARY.sub, mul_ = BINARY.mul, div_ = BINARY.div} do
      local a, b = dn.tensor(av), dn.tensor(bv)
      assert.are.equal(a, a[name](a, b))
      H.assert_close(a, H.binary(av, bv, ref), 1e-5, 1e-6, name .. " tensor")
      a = dn.tensor(av)
      assert.are.equal(a, a[name](a, 4))
      H.assert_close(a, H.binary(av, 4, ref), 1e-5, 1e-6, name .. " number")
    end
  end)

  it("write through a view into its base", function()
    local base = dn.zeros(2, 3)
    base:t():add_(dn.tensor{{1, 2}, {3, 4}, {5, 6}})
    H.assert_same(base, {{1, 3, 5}, {2, 4, 6}})
    base:narrow(2, 2, 1):mul_(10)
    H.assert_same(base, {{1, 30, 5}, {2, 40, 6}})
    base[2]:sub_(1)
    H.assert_same(base, {{1, 30, 5}, {1, 39, 5}})
  end)
end)

describe("where", function()
  it("selects with broadcasting", function()
    local av = dn.tensor(H.rand_values({2, 3})):totable()
    local bv = dn.tensor(H.rand_values({2, 3})):totable()
    local cv = H.rand_ints({2, 3}, 0, 1)
    local pick = function(c, x, y) return c ~= 0 and x or y end
    local a, b, c = dn.tensor(av), dn.tensor(bv), dn.tensor(cv)
    H.assert_same(dn.where(c, a, b), H.ternary(cv, av, bv, pick))
    H.assert_same(dn.where(c:t():contiguous():t(), a:t():contiguous():t(), b), H.ternary(cv, av, bv, pick))
    H.assert_same(dn.where(c, a, 0), H.ternary(cv, av, 0, pick))
    H.assert_same(dn.where(c, 1, -1), H.ternary(cv, 1, -1, pick))
    local col = {{1}, {0}}
    H.assert_same(dn.where(dn.tensor(col), a, b), H.ternary(col, av, bv, pick))
    H.assert_same(dn.where(dn.tensor({1, 0, 1}, "int32"), a, b), H.ternary({1, 0, 1}, av, bv, pick))
    H.assert_same(dn.where(a:gt(0), a, 0), H.map(av, function(x) return math.max(x, 0) end))
  end)
end)

describe("reductions", function()
  local shapes = {{3, 4}, {2, 3, 4}}

  it("over all elements", function()
    for _, shape in ipairs(shapes) do
      local xv = dn.tensor(H.rand_values(shape)):totable()
      local flat = H.flatten(xv)
      for _, l in ipairs(layouts(xv)) do
        local x, what = l[2], l[1]
        H.assert_close(x:sum(), H.sum_list(flat), 1e-5, 1e-5, "sum " .. what)
        H.assert_close(x:mean(), H.mean_list(flat), 1e-5, 1e-6, "mean " .. what)
        H.assert_close(x:var(), H.var_list(flat, 1), 1e-5, 1e-6, "var " .. what)
        H.assert_close(x:var(false), H.var_list(flat, 0), 1e-5, 1e-6, "var(false) " .. what)
        H.assert_close(x:std(), math.sqrt(H.var_list(flat, 1)), 1e-5, 1e-6, "std " .. what)
        H.assert_close(x:std(false), math.sqrt(H.var_list(flat, 0)), 1e-5, 1e-6, "std(false) " .. what)
        local mx, imx = H.extreme_list(flat, 1)
        local mn, imn = H.extreme_list(flat, -1)
        H.assert_same(x:max(), mx, "max " .. what)
        H.assert_same(x:min(), mn, "min " .. what)
        assert.are.equal(imx, x:argmax():item(), "argmax " .. what)
        assert.are.equal(imn, x:argmin():item(), "argmin " .. what)
        assert.are.equal("int32", x:argmax():dtype())
        H.assert_shape(x:sum(), {})
      end
    end
  end)

  it("over dims 1, 2, -1 with and without keepdim", function()
    for _, shape in ipairs(shapes) do
      local xv = dn.tensor(H.rand_values(shape)):totable()
      for _, l in ipairs(layouts(xv)) do
        local x = l[2]
        for _, dim in ipairs{1, 2, -1, -#shape} do
          for _, keep in ipairs{false, true} do
            local what = string.format("%s dim %d keepdim %s", l[1], dim, tostring(keep))
            local function ref(fold) return H.reduce_dim(xv, dim, keep, fold) end
            H.assert_close(x:sum(dim, keep), ref(H.sum_list), 1e-5, 1e-5, "sum " .. what)
            H.assert_close(x:mean(dim, keep), ref(H.mean_list), 1e-5, 1e-6, "mean " .. what)
            H.assert_close(x:var(dim, keep), ref(function(v) return H.var_list(v, 1) end), 1e-5, 1e-6,
              "var " .. what)
            H.assert_close(x:var(dim, keep, false), ref(function(v) return H.var_list(v, 0) end), 1e-5, 1e-6,
              "var biased " .. what)
            H.assert_close(x:std(dim, keep), ref(function(v) return math.sqrt(H.var_list(v, 1)) end), 1e-5, 1e-6,
              "std " .. what)
            H.assert_close(x:std(dim, keep, false), ref(function(v) return math.sqrt(H.var_list(v, 0)) end), 1e-5,
              1e-6, "std biased " .. what)
            local mv, mi = x:max(dim, keep)
            H.assert_same(mv, ref(function(v) return (H.extreme_list(v, 1)) end), "max values " .. what)
            H.assert_same(mi, ref(function(v) return select(2, H.extreme_list(v, 1)) end), "max indices " .. what)
            assert.are.equal("int32", mi:dtype())
            local nv, ni = x:min(dim, keep)
            H.assert_same(nv, ref(function(v) return (H.extreme_list(v, -1)) end), "min values " .. what)
            H.assert_same(ni, ref(function(v) return select(2, H.extreme_list(v, -1)) end), "min indices " .. what)
            H.assert_same(x:argmax(dim, keep), mi:totable(), "argmax " .. what)
            H.assert_same(x:argmin(dim, keep), ni:totable(), "argmin " .. what)
          end
        end
      end
    end
  end)

  it("keepdim keeps a size-1 dim", function()
    local x = dn.zeros(2, 3, 4)
    H.assert_shape(x:sum(2), {2, 4})
    H.assert_shape(x:sum(2, true), {2, 1, 4})
    H.assert_shape(x:mean(-1, true), {2, 3, 1})
    H.assert_shape((x:max(1, true)), {1, 3, 4})
    H.assert_shape(x:argmax(3, true), {2, 3, 1})
  end)

  it("first occurrence wins ties, indices are 1-based", function()
    local x = dn.tensor{{1, 3, 3}, {2, 2, 1}, {5, 5, 5}}
    local _, imax = x:max(2)
    H.assert_same(imax, {2, 1, 1})
    local _, imin = x:min(2)
    H.assert_same(imin, {1, 3, 1})
    assert.are.equal(2, dn.tensor{1, 3, 3}:argmax():item())
    assert.are.equal(1, dn.tensor{4, 4}:argmin():item())
  end)

  it("NaN propagates through max and min", function()
    local x = dn.tensor{1, 0 / 0, 3}
    local mx, mn = x:max():item(), x:min():item()
    assert.is_true(mx ~= mx)
    assert.is_true(mn ~= mn)
  end)

  it("empty tensors sum to zero", function()
    assert.are.equal(0, dn.zeros(0):sum():item())
    H.assert_same(dn.zeros(0, 3):sum(1), {0, 0, 0})
  end)

  it("functional forms", function()
    local x = dn.tensor{{1, 2}, {3, 4}}
    assert.are.equal(10, dn.sum(x):item())
    H.assert_same(dn.sum(x, 1), {4, 6})
    H.assert_same(dn.mean(x, 2), {1.5, 3.5})
    H.assert_same(dn.argmax(x, 2), {2, 2})
  end)
end)

describe("matmul", function()
  local function rand(shape) return dn.tensor(H.rand_values(shape)):totable() end

  it("2-D in every layout", function()
    local av, bv = rand({3, 4}), rand({4, 5})
    local want = H.matmul2(av, bv)
    for _, la in ipairs(layouts(av)) do
      for _, lb in ipairs(layouts(bv)) do
        local r = la[2]:matmul(lb[2])
        H.assert_shape(r, {3, 5}, "float32")
        H.assert_close(r, want, 1e-5, 1e-5, la[1] .. " x " .. lb[1])
      end
    end
  end)

  it("narrowed operands (row stride larger than the row)", function()
    local big_a, big_b = rand({5, 7}), rand({6, 8})
    local a = dn.tensor(big_a):narrow(1, 2, 3):narrow(2, 3, 4)
    local b = dn.tensor(big_b):narrow(1, 2, 4):narrow(2, 2, 5)
    H.assert_close(a:matmul(b), H.matmul2(a:totable(), b:totable()), 1e-5, 1e-5)
    H.assert_close(a:t():t():matmul(b:t():contiguous():t()), H.matmul2(a:totable(), b:totable()), 1e-5, 1e-5)
  end)

  it("3-D batched, with batch broadcasting", function()
    local av, bv = rand({2, 3, 4}), rand({2, 4, 5})
    local r = dn.tensor(av):matmul(dn.tensor(bv))
    H.assert_shape(r, {2, 3, 5})
    H.assert_close(r, {H.matmul2(av[1], bv[1]), H.matmul2(av[2], bv[2])}, 1e-5, 1e-5)
    -- transposed batch members
    local at = dn.tensor(av):transpose(2, 3):contiguous():transpose(2, 3)
    H.assert_close(at:matmul(dn.tensor(bv)), r, 1e-5, 1e-5, "transposed batch")
    H.assert_close(H.noncontig(av):matmul(H.noncontig(bv)), r, 1e-5, 1e-5, "strided batch")
    -- a 2-D operand is used for every batch
    local m = rand({4, 5})
    H.assert_close(dn.tensor(av):matmul(dn.tensor(m)), {H.matmul2(av[1], m), H.matmul2(av[2], m)}, 1e-5, 1e-5)
    local l = rand({3, 4})
    H.assert_close(dn.tensor(l):matmul(dn.tensor(bv)), {H.matmul2(l, bv[1]), H.matmul2(l, bv[2])}, 1e-5, 1e-5)
    -- a batch of 1 broadcasts
    local one = rand({1, 3, 4})
    H.assert_close(dn.tensor(one):matmul(dn.tensor(bv)), {H.matmul2(one[1], bv[1]), H.matmul2(one[1], bv[2])},
      1e-5, 1e-5)
  end)

  it("1-D operands as in torch.matmul", function()
    local v, m, w = rand({4}), rand({4, 5}), rand({4})
    local r = dn.tensor(v):matmul(dn.tensor(m))
    H.assert_shape(r, {5})
    H.assert_close(r, H.matmul2({v}, m)[1], 1e-5, 1e-5)
    local m2 = rand({3, 4})
    local r2 = dn.tensor(m2):matmul(dn.tensor(w))
    H.assert_shape(r2, {3})
    H.assert_close(r2, H.flatten(H.matmul2(m2, H.transpose({w}))), 1e-5, 1e-5)
    local d = dn.tensor(v):matmul(dn.tensor(w))
    H.assert_shape(d, {})
    H.assert_close(d:item(), H.matmul2({v}, H.transpose({w}))[1][1], 1e-5, 1e-5)
  end)

  it("empty inner dim gives zeros", function()
    local r = dn.zeros(2, 0):matmul(dn.zeros(0, 3))
    H.assert_same(r, {{0, 0, 0}, {0, 0, 0}})
  end)
end)

describe("index_select and one_hot", function()
  it("index_select along each dim", function()
    local xv = dn.tensor(H.rand_values({4, 3})):totable()
    for _, l in ipairs(layouts(xv)) do
      local x = l[2]
      local rows = dn.tensor({3, 1, 3, 4}, "int32")
      local r = x:index_select(1, rows)
      H.assert_shape(r, {4, 3})
      H.assert_same(r, {xv[3], xv[1], xv[3], xv[4]}, "dim 1 " .. l[1])
      local cols = dn.tensor({2, 2, 1}, "int32")
      local want = H.build({4, 3}, function(idx) return xv[idx[1]][({2, 2, 1})[idx[2]]] end)
      H.assert_same(x:index_select(2, cols), want, "dim 2 " .. l[1])
      H.assert_same(x:index_select(-1, cols), want, "dim -1 " .. l[1])
      H.assert_same(dn.index_select(x, 1, rows), r:totable(), "functional")
      H.assert_shape(x:index_select(1, dn.zeros(0, "int32")), {0, 3})
    end
  end)

  it("index_select of int32 and 3-D tensors, with a strided index", function()
    local x = dn.arange(24, "int32"):view(2, 3, 4)
    local r = x:index_select(2, dn.tensor({3, 1}, "int32"))
    H.assert_shape(r, {2, 2, 4}, "int32")
    H.assert_same(r, {{x[1][3]:totable(), x[1][1]:totable()}, {x[2][3]:totable(), x[2][1]:totable()}})
    local idx = dn.tensor({{2, 9}, {1, 9}}, "int32"):select(2, 1)   -- stride 2
    H.assert_same(x:index_select(1, idx), {x[2]:totable(), x[1]:totable()})
  end)

  it("one_hot", function()
    local labels = dn.tensor({1, 3, 2, 3}, "int32")
    local r = labels:one_hot(4)
    H.assert_shape(r, {4, 4}, "float32")
    H.assert_same(r, {{1, 0, 0, 0}, {0, 0, 1, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}})
    local r2 = dn.tensor({{1, 2}, {2, 1}}, "int32"):one_hot(2)
    H.assert_shape(r2, {2, 2, 2})
    H.assert_same(r2, {{{1, 0}, {0, 1}}, {{0, 1}, {1, 0}}})
    H.assert_same(dn.one_hot(dn.tensor({2}, "int32"), 3), {{0, 1, 0}})
    H.assert_same(dn.tensor(2, "int32"):one_hot(3), {0, 1, 0})
  end)
end)

describe("thread count", function()
  it("never changes a result", function()
    local old = dn.get_num_threads()
    local function compute(threads)
      dn.set_num_threads(threads)
      local g = dn.Generator(11)
      local x = dn.randn(1024, 1024, g)
      local y = dn.rand(1024, 1024, g)
      local z = x * y + x:exp():clamp(nil, 5) - y:sqrt()
      local sums = {
        x:sum():item(), z:sum():item(), z:mean():item(), z:var():item(), z:std():item(),
        z:max():item(), z:argmax():item(), (x:gt(0)):sum():item(),
        z:sum(1):sum():item(), z:sum(2):sum():item(), z:var(1):sum():item(), z:mean(2):sum():item(),
        z:t():sum(2):sum():item(), (z:max(1)):sum():item(), (x[1] * y):sum():item(),
      }
      return sums, z
    end
    local s1, z1 = compute(1)
    local s2, z2 = compute(2)
    dn.set_num_threads(old)
    for k = 1, #s1 do
      assert.are.equal(string.format("%a", s1[k]), string.format("%a", s2[k]), "result " .. k)
    end
    assert.are.equal(0, (z1 - z2):abs():max():item())
  end)
end)
