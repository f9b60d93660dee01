-- Tensor:sort, topk, median, quantile and histc, dn.histogram: values, indices and gradients
-- against PyTorch (torch.sort(stable=True): ties keep their order; NaN sorts as the largest),
-- the choices PyTorch leaves open (which of equal values topk and median pick: the lower index,
-- as a stable sort orders them), threads, and errors. The C tests (tests/c/test_sort.c) check
-- every op against plain references; the finite-difference checks are rows of gradcheck_spec.lua.
local dn = require "dropnet"
local H = require "helpers"

local NAN = 0 / 0

-- luacheck: push ignore 631 (the generating script and its output, pasted as they are)
--[==[ Reference values: /usr/bin/python3 this script > ref.txt, pasted into REF below.
import torch
def lua(t):
    if isinstance(t, torch.Tensor): t = t.detach().double().tolist()
    if isinstance(t, list): return "{" + ", ".join(lua(v) for v in t) + "}"
    if t != t: return "NAN"
    return "%.9g" % t
def emit(name, v): print("  %s = %s," % (name, lua(v)))
X = torch.tensor([[0.5, -1.25, 2.0, 0.75, 1.5], [1.75, 0.25, -0.5, -2.0, 3.0], [-1.0, 3.5, 0.125, 1.0, 0.0]])
W = torch.tensor([0.3, -0.7, 1.1, 0.2, 0.5, -0.4, 0.9, -0.1, 0.6, 0.8, 0.05, -0.3, 0.4, 1.2, -0.9])
def run(name, f):
    x = X.clone().requires_grad_(); out = f(x)
    v, i = (out, None) if isinstance(out, torch.Tensor) else (out[0], out[1])
    v.backward(W[:v.numel()].reshape(v.shape))   # the first numel weights, in the output's shape
    emit(name, v)
    if i is not None: emit(name + "_indices", i + 1)    # Lua: 1-based
    emit(name + "_grad", x.grad)
run("sort_dim2", lambda x: x.sort(dim=1, stable=True))
run("sort_dim1_desc", lambda x: x.sort(dim=0, descending=True, stable=True))
run("topk_3", lambda x: x.topk(3))
run("topk_2_dim1_smallest", lambda x: x.topk(2, 0, largest=False))
run("median", lambda x: x.median())
run("median_dim2", lambda x: x.median(1))
run("median_dim1_keepdim", lambda x: x.median(0, keepdim=True))
Q = torch.tensor([0.1, 0.5, 0.75, 1.0])
run("quantile_dim2", lambda x: torch.quantile(x, Q, dim=1))
run("quantile_all_03", lambda x: torch.quantile(x, 0.3))
run("quantile_dim1_keepdim_06", lambda x: torch.quantile(x, 0.6, dim=0, keepdim=True))
N = torch.tensor([3.0, float("nan"), 1.0, 2.0, float("nan"), 1.0])
v, i = N.sort(stable=True); emit("nan_sort", v); emit("nan_sort_indices", i + 1)
v, i = N.sort(descending=True, stable=True); emit("nan_sort_desc", v); emit("nan_sort_desc_indices", i + 1)
emit("nan_median", N.median()); emit("nan_quantile", torch.quantile(N, 0.5))
HV = torch.tensor([-1.7, -1.5, -0.3, 0.0, 0.2, 0.4, 0.9, 1.0, 1.25, 1.75, 1.9, 2.5, float("nan")])
assert torch.linspace(-1.5, 1.75, 8)[-1] == 1.75 and torch.linspace(-1.7, 2.5, 5)[-1] == 2.5
# (torch 1.13 counts a NaN in the first bin; dropnet leaves NaN out, so the NaN is not given here)
emit("histc_7", torch.histc(HV[:-1], 7, -1.5, 1.75)); emit("histc_4_data", torch.histc(HV[:-1], 4))
hist, edges = torch.histogram(HV[:-1], 4); emit("histogram_4", hist); emit("histogram_4_edges", edges)
hist, edges = torch.histogram(HV[:-1], 5, range=(-1.0, 1.5), density=True); emit("histogram_5_density", hist); emit("histogram_5_edges", edges)
]==]
local REF = {
  sort_dim2 = {{-1.25, 0.5, 0.75, 1.5, 2}, {-2, -0.5, 0.25, 1.75, 3}, {-1, 0, 0.125, 1, 3.5}},
  sort_dim2_indices = {{2, 1, 4, 5, 3}, {4, 3, 2, 1, 5}, {1, 5, 3, 4, 2}},
  sort_dim2_grad = {{-0.699999988, 0.300000012, 0.5, 1.10000002, 0.200000003}, {0.600000024, -0.100000001, 0.899999976, -0.400000006, 0.800000012}, {0.0500000007, -0.899999976, 0.400000006, 1.20000005, -0.300000012}},
  sort_dim1_desc = {{1.75, 3.5, 2, 1, 3}, {0.5, 0.25, 0.125, 0.75, 1.5}, {-1, -1.25, -0.5, -2, 0}},
  sort_dim1_desc_indices = {{2, 3, 1, 3, 2}, {1, 2, 3, 1, 1}, {3, 1, 2, 2, 3}},
  sort_dim1_desc_grad = {{-0.400000006, -0.300000012, 1.10000002, 0.600000024, 0.800000012}, {0.300000012, 0.899999976, 0.400000006, 1.20000005, 0.5}, {0.0500000007, -0.699999988, -0.100000001, 0.200000003, -0.899999976}},
  topk_3 = {{2, 1.5, 0.75}, {3, 1.75, 0.25}, {3.5, 1, 0.125}},
  topk_3_indices = {{3, 5, 4}, {5, 1, 2}, {2, 4, 3}},
  topk_3_grad = {{0, 0, 0.300000012, 1.10000002, -0.699999988}, {0.5, -0.400000006, 0, 0, 0.200000003}, {0, 0.899999976, 0.600000024, -0.100000001, 0}},
  topk_2_dim1_smallest = {{-1, -1.25, -0.5, -2, 0}, {0.5, 0.25, 0.125, 0.75, 1.5}},
  topk_2_dim1_smallest_indices = {{3, 1, 2, 2, 3}, {1, 2, 3, 1, 1}},
  topk_2_dim1_smallest_grad = {{-0.400000006, -0.699999988, 0, 0.600000024, 0.800000012}, {0, 0.899999976, 1.10000002, 0.200000003, 0}, {0.300000012, 0, -0.100000001, 0, 0.5}},
  median = 0.5,
  median_grad = {{0.300000012, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}},
  median_dim2 = {0.75, 0.25, 0.125},
  median_dim2_indices = {4, 2, 3},
  median_dim2_grad = {{0, 0, 0, 0.300000012, 0}, {0, -0.699999988, 0, 0, 0}, {0, 0, 1.10000002, 0, 0}},
  median_dim1_keepdim = {{0.5, 0.25, 0.125, 0.75, 1.5}},
  median_dim1_keepdim_indices = {{1, 2, 3, 1, 1}},
  median_dim1_keepdim_grad = {{0.300000012, 0, 0, 0.200000003, 0.5}, {0, -0.699999988, 0, 0, 0}, {0, 0, 1.10000002, 0, 0}},
  quantile_dim2 = {{-0.550000012, -1.39999998, -0.600000024}, {0.75, 0.25, 0.125}, {1.5, 1.75, 1}, {2, 3, 3.5}},
  quantile_dim2_grad = {{0.120000005, 0.180000007, 0.800000012, 0.200000003, 0.899999976}, {-0.100000001, 0.5, -0.280000001, -0.420000017, 0.0500000007}, {0.660000026, -0.300000012, -0.400000006, 0.600000024, 0.440000027}},
  quantile_all_03 = 0.0250000358,
  quantile_all_03_grad = {{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {0, 0, 0.0600000881, 0, 0.23999992}},
  quantile_dim1_keepdim_06 = {{0.75000006, 0.900000155, 0.500000119, 0.800000012, 1.80000007}},
  quantile_dim1_keepdim_06_grad = {{0.239999995, 0, 0.220000058, 0.159999996, 0.399999976}, {0.0600000173, -0.559999943, 0, 0, 0.100000024}, {0, -0.14000003, 0.879999995, 0.0400000103, 0}},
  nan_sort = {1, 1, 2, 3, NAN, NAN},
  nan_sort_indices = {3, 6, 4, 1, 2, 5},
  nan_sort_desc = {NAN, NAN, 3, 2, 1, 1},
  nan_sort_desc_indices = {2, 5, 1, 4, 3, 6},
  nan_median = NAN,
  nan_quantile = NAN,
  histc_7 = {1, 0, 1, 2, 1, 3, 1},
  histc_4_data = {2, 3, 4, 3},
  histogram_4 = {2, 4, 3, 3},
  histogram_4_edges = {-1.70000005, -0.650000095, 0.400000095, 1.45000005, 2.5},
  histogram_5_density = {0, 0.285714298, 0.857142866, 0.285714298, 0.571428597},
  histogram_5_edges = {-1, -0.5, 0, 0.5, 1, 1.5},
}
-- luacheck: pop

local X = {{0.5, -1.25, 2.0, 0.75, 1.5}, {1.75, 0.25, -0.5, -2.0, 3.0}, {-1.0, 3.5, 0.125, 1.0, 0.0}}
local W = {0.3, -0.7, 1.1, 0.2, 0.5, -0.4, 0.9, -0.1, 0.6, 0.8, 0.05, -0.3, 0.4, 1.2, -0.9}
local N = {3, NAN, 1, 2, NAN, 1}

-- The script's backward weights: the first numel values of W, in t's shape.
local function weights_like(t)
  if t:dim() == 0 then return dn.tensor(W[1]) end
  return dn.tensor(table.move(W, 1, t:numel(), 1, {})):reshape(t:shape())
end

local CASES = {
  {"sort_dim2", function(x) return x:sort(2) end},
  {"sort_dim1_desc", function(x) return x:sort(1, true) end},
  {"topk_3", function(x) return x:topk(3) end},
  {"topk_2_dim1_smallest", function(x) return x:topk(2, 1, false) end},
  {"median", function(x) return x:median() end},
  {"median_dim2", function(x) return x:median(2) end},
  {"median_dim1_keepdim", function(x) return x:median(1, true) end},
  {"quantile_dim2", function(x) return x:quantile(dn.tensor {0.1, 0.5, 0.75, 1.0}, 2) end},
  {"quantile_all_03", function(x) return x:quantile(0.3) end},
  {"quantile_dim1_keepdim_06", function(x) return x:quantile(0.6, 1, true) end},
}

describe("sort, topk, median and quantile", function()
  it("match PyTorch: values, indices and gradients", function()
    for _, c in ipairs(CASES) do
      local name = c[1]
      for _, layout in ipairs {"contiguous", "transposed"} do
        local x = dn.tensor(X)
        if layout == "transposed" then x = x:t():contiguous():t() end
        x:requires_grad_()
        local values, indices = c[2](x)
        H.assert_close(values, REF[name], 1e-6, 1e-7, name .. " " .. layout)
        if REF[name .. "_indices"] then
          assert.equal("int32", indices:dtype())
          H.assert_same(indices, REF[name .. "_indices"], name .. " indices")
        end
        values:backward(weights_like(values))
        H.assert_close(x.grad, REF[name .. "_grad"], 1e-6, 1e-6, name .. " gradient " .. layout)
      end
    end
  end)

  it("sort NaN as the largest value, equal values in their order", function()
    local values, indices = dn.tensor(N):sort()
    H.assert_same(values, REF.nan_sort)
    H.assert_same(indices, REF.nan_sort_indices)
    values, indices = dn.sort(dn.tensor(N), 1, true)
    H.assert_same(values, REF.nan_sort_desc)
    H.assert_same(indices, REF.nan_sort_desc_indices)
    H.assert_same(dn.tensor(N):median(), REF.nan_median)
    H.assert_same(dn.tensor(N):quantile(0.5), REF.nan_quantile)
    -- NaN counts as the largest in topk too, and median over a dim gives a lane's first NaN
    local top, at = dn.tensor(N):topk(2)
    H.assert_same(top, {NAN, NAN})
    H.assert_same(at, {2, 5})
    local m, where = dn.tensor({N, {4, 1, 2, 3, 5, 6}}):median(2)
    H.assert_same(m, {NAN, 3})
    H.assert_same(where, {2, 4})
  end)

  it("pick the lower index among equal values, where PyTorch leaves the choice open", function()
    local t = dn.tensor {2, 5, 1, 5, 2, 1}
    local values, indices = t:topk(3)
    H.assert_same(values, {5, 5, 2})
    H.assert_same(indices, {2, 4, 1})
    values, indices = t:topk(3, 1, false)
    H.assert_same(values, {1, 1, 2})
    H.assert_same(indices, {3, 6, 1})
    -- sorted = false: the same picks, in index order
    values, indices = t:topk(3, -1, true, false)
    H.assert_same(values, {2, 5, 5})
    H.assert_same(indices, {1, 2, 4})
    -- the lower median of 1, 1, 2, 2, 5, 5 is the first 2 in sorted order: position 1
    local m, at = t:median(1)
    assert.equal(2, m:item())
    assert.equal(1, at:item())
  end)

  it("work on int32, 0-dim and empty tensors", function()
    local ints = dn.tensor({7, -3, 7, 0}, "int32")
    local values, indices = ints:sort(1, true)
    assert.equal("int32", values:dtype())
    H.assert_same(values, {7, 7, 0, -3})
    H.assert_same(indices, {1, 3, 4, 2})
    assert.equal(0, ints:median():item())
    H.assert_same((ints:topk(1)), {7})
    local s = dn.tensor(2.5)
    assert.equal(2.5, s:sort():item())
    assert.equal(2.5, s:median(1):item())
    assert.equal(2.5, s:quantile(0.7):item())
    H.assert_shape(dn.zeros(2, 0):sort(2), {2, 0}, "float32")
    H.assert_shape(dn.zeros(0, 3):topk(2), {0, 2}, "float32")
    assert.is_true(dn.zeros(0):median():item() ~= dn.zeros(0):median():item())   -- NaN, as PyTorch
  end)

  it("place quantiles first and keep dims as PyTorch does", function()
    local x = dn.tensor(X)
    H.assert_shape(x:quantile(dn.tensor {0.2, 0.8}), {2}, "float32")
    H.assert_shape(x:quantile(dn.tensor {0.2, 0.8}, 2, true), {2, 3, 1}, "float32")
    H.assert_shape(x:quantile(0.5, nil, true), {1, 1}, "float32")
    H.assert_shape(x:quantile(dn.tensor(0.5), 1), {5}, "float32")
    H.assert_shape(x:median(2, true), {3, 1}, "float32")
    -- the median is quantile 0.5 when the count is odd
    H.assert_same(x:median(2), x:quantile(0.5, 2))
  end)

  it("give the same results whatever the thread count", function()
    local threads = dn.get_num_threads()
    dn.manual_seed(11)
    local x = dn.randn(64, 3000)
    local results = {}
    for _, t in ipairs {1, 2} do
      dn.set_num_threads(t)
      local values, indices = x:sort(2)
      local top, at = x:topk(5, 2)
      local m, mi = x:median(1)
      results[t] = {values, indices, top, at, m, mi, x:quantile(dn.tensor {0.1, 0.9}, 2), x:histc(64)}
    end
    dn.set_num_threads(threads)
    for k = 1, #results[1] do assert.is_true(H.same_values(results[1][k], results[2][k]), "output " .. k) end
  end)

  it("name what is wrong", function()
    local x = dn.tensor(X)
    H.assert_error(function() return x:topk(6) end,
      {"topk: k must be in [0, 5], the size of the dim (shape [3,5]; got 6)"})
    H.assert_error(function() return x:sort(3) end, {"dim 3 out of range for a 2-D tensor"})
    H.assert_error(function() return x:sort(1, "yes") end, {"descending must be a boolean (got string)"})
    H.assert_error(function() return x:quantile(1.5) end, {"quantile: q must be in [0, 1] (got 1.5)"})
    H.assert_error(function() return x:quantile("half") end, {"q must be a number or a tensor (got string)"})
    H.assert_error(function() return x:quantile(dn.tensor {{0.5}}) end,
      {"quantile: q must be a number or a 1-D tensor (got shape [1,1])"})
    H.assert_error(function() return dn.zeros(0):quantile(0.5) end, {"quantile: input is empty"})
    H.assert_error(function() return dn.tensor({1, 2}, "int32"):quantile(0.5) end,
      {"quantile: input must be float32 (got int32)"})
    H.assert_error(function() return dn.zeros(2, 0):median(2) end,
      {"median: cannot take the median along a dim of size 0 (shape [2,0])"})
  end)
end)

describe("histc and histogram", function()
  local HV = {-1.7, -1.5, -0.3, 0.0, 0.2, 0.4, 0.9, 1.0, 1.25, 1.75, 1.9, 2.5}

  it("count as torch.histc", function()
    local with_nan = table.move(HV, 1, #HV, 1, {})
    with_nan[#with_nan + 1] = NAN
    -- NaN is left out (torch 1.13 counts it in the first bin, through undefined behaviour)
    H.assert_same(dn.histc(dn.tensor(with_nan), 7, -1.5, 1.75), REF.histc_7)
    H.assert_same(dn.histc(dn.tensor(HV), 7, -1.5, 1.75), REF.histc_7)
    H.assert_same(dn.tensor(HV):histc(4), REF.histc_4_data)
    local counts, edges = dn.histc(dn.tensor(HV), 4)
    H.assert_close(edges, REF.histogram_4_edges, 1e-6, 1e-7)
    H.assert_same(counts:sum(), #HV)
    H.assert_shape(dn.histc(dn.tensor(HV)), {100}, "float32")                -- PyTorch's default bins
    H.assert_same(dn.histc(dn.tensor {2, 2}, 4), {0, 0, 2, 0})               -- range [1, 3]
    H.assert_same(dn.histc(dn.tensor(HV):view(3, 4):t(), 4), REF.histc_4_data)   -- any layout
  end)

  it("histogram gives histc's counts with the edges, and densities", function()
    local counts, edges = dn.histogram(dn.tensor(HV), {bins = 4})
    -- histc's rule puts 0.4 in the third bin; torch.histogram puts it below its edge 0.400000095
    H.assert_same(counts, REF.histc_4_data)
    H.assert_close(edges, REF.histogram_4_edges, 1e-6, 1e-7)
    local density, edges5 = dn.histogram(dn.tensor(HV), {bins = 5, range = {-1, 1.5}, density = true})
    H.assert_close(density, REF.histogram_5_density, 1e-6, 1e-7)
    H.assert_same(edges5, REF.histogram_5_edges)
    H.assert_shape(dn.histogram(dn.tensor(HV)), {10}, "float32")
    H.assert_error(function() return dn.histogram(dn.tensor(HV), {bins = 0}) end,
      {"histogram: bins must be an integer >= 1 (got 0)"})
    H.assert_error(function() return dn.histogram(dn.tensor(HV), {range = {1}}) end,
      {"histogram: range must be a table {min, max}"})
    H.assert_error(function() return dn.histogram(dn.tensor(HV), {range = {1, 1}}) end,
      {"histogram: range must have min < max (got {1, 1})"})
    H.assert_error(function() return dn.histogram({1, 2}) end, {"histogram: a tensor expected (got table)"})
  end)

  it("name what is wrong", function()
    local t = dn.tensor(HV)
    H.assert_error(function() return t:histc(0) end, {"histc: bins must be in [1, 2^40) (got 0)"})
    H.assert_error(function() return t:histc(4, 2, 1) end, {"histc: max must be larger than min (got min 2, max 1)"})
    H.assert_error(function() return t:histc(4, 0, 1 / 0) end, {"histc: range [0, inf] is not finite in float32"})
    H.assert_error(function() return dn.tensor {1, NAN}:histc(4) end, {"histc: range [nan, nan] is not finite"})
    H.assert_error(function() return dn.tensor({1}, "int32"):histc() end, {"histc: input must be float32 (got int32)"})
  end)
end)
