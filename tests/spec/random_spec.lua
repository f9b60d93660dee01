-- Random tensors: reproducibility, generator state, distributions, thread independence.
-- Statistics are computed in plain Lua from totable(), independently of the
-- reduction kernels; bounds are many standard errors wide, so a correct
-- generator passes with overwhelming probability and a broken one fails.
local dn = require "dropnet"
local H = require "helpers"

local function moments(values)
  local n, s, s2 = #values, 0, 0
  for i = 1, n do s = s + values[i] end
  local mean = s / n
  for i = 1, n do s2 = s2 + (values[i] - mean) ^ 2 end
  return mean, math.sqrt(s2 / (n - 1))
end

describe("seeding", function()
  it("the same seed gives the same numbers", function()
    dn.manual_seed(5)
    local a, an = dn.rand(3, 4), dn.randn(7)
    dn.manual_seed(5)
    local b, bn = dn.rand(3, 4), dn.randn(7)
    H.assert_same(a, b:totable())
    H.assert_same(an, bn:totable())
    dn.manual_seed(5)
    H.assert_same(dn.rand({3, 4}), a:totable())
  end)

  it("different seeds give different numbers", function()
    dn.manual_seed(1)
    local a = H.flatten(dn.rand(16):totable())
    dn.manual_seed(2)
    local b = H.flatten(dn.rand(16):totable())
    local same = 0
    for i = 1, 16 do if a[i] == b[i] then same = same + 1 end end
    assert.is_true(same < 2)
  end)

  it("consecutive draws differ", function()
    dn.manual_seed(3)
    local a, b = dn.rand(16), dn.rand(16)
    assert.are_not.same(a:totable(), b:totable())
  end)

  it("a generator seeded like the default one draws the same numbers", function()
    dn.manual_seed(42)
    local a = dn.randn(10)
    local g = dn.Generator(42)
    H.assert_same(dn.randn(10, g), a:totable())
    assert.are.equal(42, g:initial_seed())
    g:manual_seed(42)
    H.assert_same(dn.randn(10, g), a:totable())
  end)

  it("draws of multiples of 4 concatenate (counter contract)", function()
    local g = dn.Generator(9)
    local whole = H.flatten(dn.rand(12, g):totable())
    g:manual_seed(9)
    local first, second = H.flatten(dn.rand(8, g):totable()), H.flatten(dn.rand(4, g):totable())
    for i = 1, 8 do assert.are.equal(whole[i], first[i]) end
    for i = 1, 4 do assert.are.equal(whole[8 + i], second[i]) end
  end)
end)

describe("generator state", function()
  it("save and restore reproduce a Generator's draws", function()
    local g = dn.Generator(123)
    dn.rand(5, g)
    local s = g:get_state()
    assert.are.equal("table", type(s))
    assert.are.equal("integer", math.type(s.seed))
    assert.are.equal("integer", math.type(s.offset))
    local x = dn.randn(2, 3, g)
    local y = dn.rand(4, {generator = g})
    g:set_state(s)
    H.assert_same(dn.randn(2, 3, g), x:totable())
    H.assert_same(dn.rand(4, {generator = g}), y:totable())
  end)

  it("save and restore reproduce the default generator's draws", function()
    dn.manual_seed(77)
    dn.rand(3)
    local s = dn.get_rng_state()
    local x = dn.rand(10)
    local p = dn.randperm(10)
    dn.set_rng_state(s)
    H.assert_same(dn.rand(10), x:totable())
    H.assert_same(dn.randperm(10), p:totable())
  end)

  it("a state survives a round trip through another generator", function()
    local g = dn.Generator(5)
    dn.rand(100, g)
    local h = dn.Generator(999)
    h:set_state(g:get_state())
    H.assert_same(dn.rand(8, h), dn.rand(8, g):totable())
  end)

  it("a private generator does not touch the default one", function()
    dn.manual_seed(8)
    local before = dn.get_rng_state()
    local g = dn.Generator(8)
    dn.rand(100, g)
    dn.randn(10, {generator = g})
    dn.randperm(10, g)
    assert.are.same(before, dn.get_rng_state())
  end)

  it("the offset advances with the numbers drawn", function()
    local g = dn.Generator(1)
    local o = g:get_state().offset
    dn.rand(10, g)
    assert.is_true(g:get_state().offset > o)
  end)

  it("generators print", function()
    assert.truthy(tostring(dn.Generator(3)):find("Generator", 1, true))
  end)
end)

describe("distributions", function()
  it("rand is in [0, 1) with uniform moments", function()
    dn.manual_seed(2024)
    local x = dn.rand(100000)
    assert.are.equal("float32", x:dtype())
    local v = x:totable()
    local lo, hi, below_quarter = math.huge, -math.huge, 0
    for i = 1, #v do
      local e = v[i]
      if e < lo then lo = e end
      if e > hi then hi = e end
      if e < 0.25 then below_quarter = below_quarter + 1 end
    end
    assert.is_true(lo >= 0, "min " .. lo)
    assert.is_true(hi < 1, "max " .. hi)
    local mean, std = moments(v)
    -- standard error of the mean: 0.289 / sqrt(1e5) = 0.0009
    assert.is_true(math.abs(mean - 0.5) < 0.006, "mean " .. mean)
    assert.is_true(math.abs(std - math.sqrt(1 / 12)) < 0.005, "std " .. std)
    -- binomial(1e5, 0.25): sd 137
    assert.is_true(math.abs(below_quarter - 25000) < 1000, "below 0.25: " .. below_quarter)
  end)

  it("randn has mean 0, std 1 and normal tails", function()
    dn.manual_seed(2025)
    local v = dn.randn(100000):totable()
    local mean, std = moments(v)
    -- standard errors: mean 0.0032, std 0.0022
    assert.is_true(math.abs(mean) < 0.02, "mean " .. mean)
    assert.is_true(math.abs(std - 1) < 0.015, "std " .. std)
    local within1, beyond2, finite = 0, 0, true
    for i = 1, #v do
      local a = math.abs(v[i])
      if a <= 1 then within1 = within1 + 1 end
      if a > 2 then beyond2 = beyond2 + 1 end
      if v[i] ~= v[i] or a == math.huge then finite = false end
    end
    assert.is_true(finite)
    -- P(|z| <= 1) = 0.6827 (sd 147 counts), P(|z| > 2) = 0.0455 (sd 66 counts)
    assert.is_true(math.abs(within1 - 68269) < 1000, "within 1 sd: " .. within1)
    assert.is_true(math.abs(beyond2 - 4550) < 500, "beyond 2 sd: " .. beyond2)
  end)

  it("randn shapes and dtypes", function()
    H.assert_shape(dn.randn(2, 3, 4), {2, 3, 4}, "float32")
    H.assert_shape(dn.rand({5}), {5}, "float32")
    H.assert_shape(dn.rand(0), {0}, "float32")
    H.assert_shape(dn.randn(), {}, "float32")
  end)
end)

describe("randperm", function()
  it("is a permutation of 1..n", function()
    dn.manual_seed(4)
    for _, n in ipairs{1, 2, 10, 1000} do
      local p = dn.randperm(n)
      H.assert_shape(p, {n}, "int32")
      local v = p:totable()
      table.sort(v)
      for i = 1, n do assert.are.equal(i, v[i]) end
    end
    H.assert_shape(dn.randperm(0), {0}, "int32")
  end)

  it("shuffles (not the identity, differs between draws)", function()
    dn.manual_seed(5)
    local a, b = dn.randperm(50):totable(), dn.randperm(50):totable()
    local fixed = 0
    for i = 1, 50 do if a[i] == i then fixed = fixed + 1 end end
    assert.is_true(fixed < 10)
    assert.are_not.same(a, b)
  end)

  it("every position is roughly uniform", function()
    -- where element 1 lands over 4000 permutations of 4: 1000 each (sd 27)
    local g = dn.Generator(6)
    local counts = {0, 0, 0, 0}
    for _ = 1, 4000 do
      local p = dn.randperm(4, g)
      for i = 1, 4 do
        if p[i] == 1 then counts[i] = counts[i] + 1 end
      end
    end
    for i = 1, 4 do assert.is_true(math.abs(counts[i] - 1000) < 150, "position " .. i .. ": " .. counts[i]) end
  end)
end)

describe("thread count", function()
  it("gives identical rand and randn with 1 and 2 threads", function()
    local old = dn.get_num_threads()
    local function draw(threads)
      dn.set_num_threads(threads)
      dn.manual_seed(31)
      local u = dn.rand(1000000)
      local z = dn.randn(1000003)
      local p = dn.randperm(100000)
      return u, z, p
    end
    local u1, z1, p1 = draw(1)
    local u2, z2, p2 = draw(2)
    dn.set_num_threads(old)
    for _, i in ipairs{1, 2, 3, 4, 5, 32768, 32769, 500000, 999999, 1000000} do
      assert.are.equal(u1[i], u2[i], "rand element " .. i)
      assert.are.equal(z1[i], z2[i], "randn element " .. i)
    end
    assert.are.equal(z1[1000003], z2[1000003])
    assert.are.equal(0, u1:ne(u2):sum():item())
    assert.are.equal(0, z1:ne(z2):sum():item())
    assert.are.equal(0, p1:ne(p2):sum():item())
    assert.are.equal(string.format("%a", u1:sum():item()), string.format("%a", u2:sum():item()))
  end)
end)
