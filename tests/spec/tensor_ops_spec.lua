-- The tensor ops the analysis of gradients needs (issue 14): t:norm, dn.cat,
-- dn.stack, t:cumsum, t:masked_fill / masked_fill_, t:zero_. Values and
-- gradients match PyTorch 1.13 (the script that printed them is in the comment
-- below); defaults, negative dims, layouts, dtypes, empty inputs, in-place
-- rules, thread counts and every argument error are checked here. Finite
-- difference checks are rows of gradcheck_spec.lua; the kernels' own tests are
-- tests/c/test_vector_norm.c, test_join.c, test_scan.c, test_clamp_where.c
-- and test_copy.c.
local dn = require "dropnet"
local H = require "helpers"

local RTOL, ATOL = 1e-5, 1e-6

-- luacheck: push ignore 631 (the generating script and its output, pasted as they are)
--[==[ Reference values: /usr/bin/python3 this script > ref.txt, pasted into REF below.
import torch
torch.set_default_dtype(torch.float32)
def T(v): return torch.tensor(v, dtype=torch.float32)
def lua(t):
    if isinstance(t, torch.Tensor): t = t.detach().double().tolist()
    if isinstance(t, list): return "{" + ", ".join(lua(v) for v in t) + "}"
    if t == float("inf"): return "math.huge"
    return "%.9g" % t
out = []
def emit(name, v): out.append("  %s = %s," % (name, lua(v)))
X = T([[0.5, -1.2, 0.0, 2.0], [-0.7, 0.1, -0.4, 1.5], [1.1, -2.0, 0.8, -2.0]])
G = T([[0.3, -0.5, 0.2, 0.7], [0.6, 0.4, -0.3, -0.2], [-0.4, 0.1, 0.9, 0.3]])
# norms: all elements (gradient for backward(1.5)), dim 1 (backward G[:, 0]), dim 0 keepdim (backward G[0:1])
for name, p in [("2", 2), ("1", 1), ("3", 3), ("0_5", 0.5), ("inf", float("inf")), ("0", 0)]:
    x = X.clone().requires_grad_(); y = torch.linalg.vector_norm(x, p)
    emit("norm_%s" % name, y.item())
    if p != 0: y.backward(T(1.5)); emit("norm_%s_grad" % name, x.grad)
    x = X.clone().requires_grad_(); y = torch.linalg.vector_norm(x, p, dim=1)
    emit("norm_%s_dim2" % name, y)
    if p != 0: y.backward(G[:, 0]); emit("norm_%s_dim2_grad" % name, x.grad)
    x = X.clone().requires_grad_(); y = torch.linalg.vector_norm(x, p, dim=0, keepdim=True)
    emit("norm_%s_dim1_keep" % name, y)
    if p != 0: y.backward(G[0:1]); emit("norm_%s_dim1_keep_grad" % name, x.grad)
# cumsum along each dim, gradient for backward(G)
for d in [0, 1]:
    x = X.clone().requires_grad_(); y = torch.cumsum(x, d); y.backward(G)
    emit("cumsum_%d" % (d + 1), y); emit("cumsum_%d_grad" % (d + 1), x.grad)
# masked_fill with a broadcast mask, gradient for backward(G)
M = torch.tensor([True, False, True, False])
x = X.clone().requires_grad_(); y = x.masked_fill(M, -9.5); y.backward(G)
emit("masked_fill", y); emit("masked_fill_grad", x.grad)
# cat and stack: gradients of the pieces for backward of arange
A, B = X[:, :2].clone().requires_grad_(), X[:, 2:].clone().requires_grad_()
y = torch.cat([B, A, B], 1); y.backward(torch.arange(18.).reshape(3, 6))
emit("cat", y); emit("cat_grad_a", A.grad); emit("cat_grad_b", B.grad)
A, B = X[0].clone().requires_grad_(), X[1].clone().requires_grad_()
y = torch.stack([A, B, A], 1); y.backward(torch.arange(12.).reshape(4, 3))
emit("stack", y); emit("stack_grad_a", A.grad); emit("stack_grad_b", B.grad)
print("\n".join(out))
]==]
local REF = {
  norm_2 = 4.29534626,
  norm_2_grad = {{0.174607575, -0.419058204, 0, 0.6984303}, {-0.244450599, 0.0349215157, -0.139686063, 0.523822725}, {0.384136677, -0.6984303, 0.279372126, -0.6984303}},
  norm_2_dim2 = {2.38537216, 1.70587218, 3.13847113},
  norm_2_dim2_grad = {{0.0628832728, -0.150919855, 0, 0.251533091}, {-0.246208385, 0.0351726264, -0.140690506, 0.527589381}, {-0.140195653, 0.254901171, -0.10196048, 0.254901171}},
  norm_2_dim1_keep = {{1.39642406, 2.33452344, 0.89442718, 3.20156217}},
  norm_2_dim1_keep_grad = {{0.107417226, 0.257011771, 0, 0.437286526}, {-0.150384113, -0.0214176476, -0.0894427225, 0.327964872}, {0.236317918, 0.428352952, 0.178885445, -0.437286526}},
  norm_1 = 12.3000002,
  norm_1_grad = {{1.5, -1.5, 0, 1.5}, {-1.5, 1.5, -1.5, 1.5}, {1.5, -1.5, 1.5, -1.5}},
  norm_1_dim2 = {3.70000005, 2.70000005, 5.89999962},
  norm_1_dim2_grad = {{0.300000012, -0.300000012, 0, 0.300000012}, {-0.600000024, 0.600000024, -0.600000024, 0.600000024}, {-0.400000006, 0.400000006, -0.400000006, 0.400000006}},
  norm_1_dim1_keep = {{2.30000019, 3.30000019, 1.20000005, 5.5}},
  norm_1_dim1_keep_grad = {{0.300000012, 0.5, 0, 0.699999988}, {-0.300000012, -0.5, -0.200000003, 0.699999988}, {0.300000012, 0.5, 0.200000003, -0.699999988}},
  norm_3 = 3.15747809,
  norm_3_grad = {{0.0376140885, -0.216657162, 0, 0.601825416}, {-0.0737236068, 0.00150456361, -0.0240730178, 0.338526785}, {0.182052195, -0.601825416, 0.096292071, -0.601825416}},
  norm_3_dim2 = {2.14382601, 1.55816019, 2.61309958},
  norm_3_dim2_grad = {{0.0163185727, -0.0939949825, 0, 0.261097163}, {-0.121094145, 0.00247130939, -0.0395409502, 0.556044579}, {-0.0708815902, 0.234319299, -0.0374910906, 0.234319299}},
  norm_3_dim1_keep = {{1.21621513, 2.13479447, 0.832033515, 2.68584275}},
  norm_3_dim1_keep_grad = {{0.0507037938, 0.157986641, 0, 0.388147563}, {-0.0993794352, -0.00109712954, -0.0462240912, 0.218333006}, {0.245406374, 0.438851774, 0.184896365, -0.388147563}},
  norm_0_5 = 120.967354,
  norm_0_5_grad = {{23.3313751, -15.060338, 0, 11.6656876}, {-19.7186108, 52.1705475, -26.0852737, 13.4703751}, {15.730011, -11.6656876, 18.4450741, -11.6656876}},
  norm_0_5_dim2 = {10.34758, 9.06063271, 22.7687702},
  norm_0_5_dim2_grad = {{1.36475801, -0.88094753, 0, 0.682379007}, {-2.15864635, 5.71124125, -2.85562062, 1.47463608}, {-1.81984103, 1.34963024, -2.13395286, 1.34963024}},
  norm_0_5_dim1_keep = {{6.72144794, 7.98563433, 2.33137059, 16.4282036}},
  norm_0_5_dim1_keep_grad = {{1.0999366, 1.28983474, 0, 2.00621772}, {-0.929616153, -4.46811914, -0.482842684, 2.31658077}, {0.741577148, 0.999101758, 0.341421366, -2.00621772}},
  norm_inf = 2,
  norm_inf_grad = {{0, -0, 0, 0.5}, {-0, 0, -0, 0}, {0, -0.5, 0, -0.5}},
  norm_inf_dim2 = {2, 1.5, 2},
  norm_inf_dim2_grad = {{0, -0, 0, 0.300000012}, {-0, 0, -0, 0.600000024}, {-0, 0.200000003, -0, 0.200000003}},
  norm_inf_dim1_keep = {{1.10000002, 2, 0.800000012, 2}},
  norm_inf_dim1_keep_grad = {{0, 0, 0, 0.349999994}, {-0, -0, -0, 0}, {0.300000012, 0.5, 0.200000003, -0.349999994}},
  norm_0 = 11,
  norm_0_dim2 = {3, 4, 4},
  norm_0_dim1_keep = {{3, 3, 2, 3}},
  cumsum_1 = {{0.5, -1.20000005, 0, 2}, {-0.199999988, -1.10000002, -0.400000006, 3.5}, {0.900000036, -3.10000014, 0.400000006, 1.5}},
  cumsum_1_grad = {{0.5, 7.4505806e-09, 0.799999952, 0.800000012}, {0.200000018, 0.5, 0.599999964, 0.100000009}, {-0.400000006, 0.100000001, 0.899999976, 0.300000012}},
  cumsum_2 = {{0.5, -0.700000048, -0.700000048, 1.29999995}, {-0.699999988, -0.599999964, -1, 0.5}, {1.10000002, -0.899999976, -0.0999999642, -2.0999999}},
  cumsum_2_grad = {{0.699999988, 0.399999976, 0.899999976, 0.699999988}, {0.5, -0.100000009, -0.5, -0.200000003}, {0.899999976, 1.29999995, 1.20000005, 0.300000012}},
  masked_fill = {{-9.5, -1.20000005, -9.5, 2}, {-9.5, 0.100000001, -9.5, 1.5}, {-9.5, -2, -9.5, -2}},
  masked_fill_grad = {{0, -0.5, 0, 0.699999988}, {0, 0.400000006, 0, -0.200000003}, {0, 0.100000001, 0, 0.300000012}},
  cat = {{0, 2, 0.5, -1.20000005, 0, 2}, {-0.400000006, 1.5, -0.699999988, 0.100000001, -0.400000006, 1.5}, {0.800000012, -2, 1.10000002, -2, 0.800000012, -2}},
  cat_grad_a = {{2, 3}, {8, 9}, {14, 15}},
  cat_grad_b = {{4, 6}, {16, 18}, {28, 30}},
  stack = {{0.5, -0.699999988, 0.5}, {-1.20000005, 0.100000001, -1.20000005}, {0, -0.400000006, 0}, {2, 1.5, 2}},
  stack_grad_a = {2, 8, 14, 20},
  stack_grad_b = {1, 4, 7, 10},
}
-- luacheck: pop

-- The fixed inputs of the script above.
local X = {{0.5, -1.2, 0.0, 2.0}, {-0.7, 0.1, -0.4, 1.5}, {1.1, -2.0, 0.8, -2.0}}
local G = {{0.3, -0.5, 0.2, 0.7}, {0.6, 0.4, -0.3, -0.2}, {-0.4, 0.1, 0.9, 0.3}}

local function close(actual, expected, what) return H.assert_close(actual, expected, RTOL, ATOL, what) end
local function leaf(values) return dn.tensor(values, {requires_grad = true}) end
local function column(m, j)
  local c = {}
  for i = 1, #m do c[i] = m[i][j] end
  return c
end

-- Runs fn on a fresh leaf of X in three layouts, each back-propagating grad;
-- returns the results and input gradients of each.
local function in_layouts(fn, grad)
  local runs = {}
  for _, layout in ipairs {"contiguous", "transposed", "strided"} do
    local x
    if layout == "contiguous" then
      x = leaf(X)
    elseif layout == "transposed" then
      x = dn.tensor(H.transpose(X)):t():requires_grad_()
    else
      x = H.noncontig(X):requires_grad_()
    end
    local y = fn(x)
    if grad then y:backward(grad) end
    runs[#runs + 1] = {layout = layout, y = y, grad = x.grad}
  end
  return runs
end

describe("Tensor:norm", function()
  local PS = {{"2", 2}, {"1", 1}, {"3", 3}, {"0_5", 0.5}, {"inf", math.huge}, {"0", 0}}
  for _, case in ipairs(PS) do
    local name, p = case[1], case[2]
    it("matches PyTorch for p = " .. name .. " over all elements, dim 2 and dim 1 with keepdim", function()
      for _, run in ipairs(in_layouts(function(x) return x:norm(p) end, p ~= 0 and dn.tensor(1.5) or nil)) do
        H.assert_shape(run.y, {}, "float32")
        close(run.y:item(), REF["norm_" .. name], run.layout)
        if p ~= 0 then close(run.grad, REF["norm_" .. name .. "_grad"], run.layout .. " grad") end
      end
      for _, run in ipairs(in_layouts(function(x) return x:norm(p, 2) end,
        p ~= 0 and dn.tensor(column(G, 1)) or nil)) do
        H.assert_shape(run.y, {3})
        close(run.y, REF["norm_" .. name .. "_dim2"], run.layout)
        if p ~= 0 then close(run.grad, REF["norm_" .. name .. "_dim2_grad"], run.layout .. " grad") end
      end
      for _, run in ipairs(in_layouts(function(x) return dn.norm(x, p, -2, true) end,
        p ~= 0 and dn.tensor({G[1]}) or nil)) do
        H.assert_shape(run.y, {1, 4})
        close(run.y, REF["norm_" .. name .. "_dim1_keep"], run.layout)
        if p ~= 0 then close(run.grad, REF["norm_" .. name .. "_dim1_keep_grad"], run.layout .. " grad") end
      end
    end)
  end

  it("defaults to p = 2 over all elements; nil p with a dim is 2 too", function()
    local x = dn.tensor{{3, 4}, {0, 0}}
    assert.are.equal(5, x:norm():item())
    H.assert_same(x:norm(nil, 2), {5, 0})
    H.assert_same(x:norm(2, 1, false), {3, 4})
  end)

  it("is the per-layer gradient norm of the issue: w.grad:norm()", function()
    local w = dn.tensor({{1, -2}, {2, 4}}, {requires_grad = true})
    ;(w * w):sum():backward()
    close(w.grad:norm():item(), math.sqrt(4 + 16 + 16 + 64))
    close(w.grad:norm(2, 2), {math.sqrt(4 + 16), math.sqrt(16 + 64)})
  end)

  it("p = 0 counts non-zeros: the result requires grad but gives no gradient, as in PyTorch", function()
    local x = leaf(X)
    local y = x:norm(0)
    assert.are.equal(11, y:item())
    assert.is_true(y.requires_grad)
    y:backward()
    assert.is_nil(x.grad)
  end)

  it("sums in double: no overflow for large values (PyTorch 1.13 gives inf)", function()
    close(dn.tensor{1e30, -1e30}:norm():item(), 1e30 * math.sqrt(2), 1e-6)
    close(dn.tensor{3e38, 3e38, 1}:norm(10):item(), 3e38 * 2 ^ 0.1, 1e-6)
    assert.are.equal(math.huge, dn.tensor{3e38, 3e38}:norm():item())   -- the result itself overflows float32
  end)

  it("of nothing is 0; a 0-dim tensor's is its absolute value", function()
    for _, p in ipairs {0, 1, 2, 3, math.huge} do
      assert.are.equal(0, dn.zeros(0):norm(p):item())
      H.assert_same(dn.zeros(0, 3):norm(p, 1), {0, 0, 0})
      assert.are.equal(p == 0 and 1 or 2.5, dn.tensor(-2.5):norm(p):item())
      assert.are.equal(p == 0 and 1 or 2.5, dn.tensor(-2.5):norm(p, 1):item())
    end
    H.assert_shape(dn.zeros(0, 3):norm(2, 2, true), {0, 1})
  end)

  it("gives the same bits with 1 and 2 threads", function()
    local x = dn.randn(300, 500, dn.Generator(5))
    local before = dn.get_num_threads()
    local results = {}
    for threads = 1, 2 do
      dn.set_num_threads(threads)
      results[threads] = {x:norm(), x:norm(2, 1), x:norm(2, 2), x:t():norm(3), x:norm(math.huge, 1)}
    end
    dn.set_num_threads(before)
    for k = 1, #results[1] do assert.is_true(H.same_values(results[1][k], results[2][k]), "result " .. k) end
  end)

  it("rejects bad arguments with messages naming the problem", function()
    local x = dn.ones(2, 3)
    H.assert_error(function() return dn.ones(3, "int32"):norm() end, {"norm: input must be float32 (got int32)"})
    H.assert_error(function() return x:norm(-1) end, {"norm: p must be >= 0", "(got -1)"})
    H.assert_error(function() return x:norm(-math.huge) end, {"norm: p must be >= 0", "(got -inf)"})
    H.assert_error(function() return x:norm(0 / 0) end, {"norm: p must be >= 0"})
    H.assert_error(function() return x:norm("fro") end, {"bad argument #1 to 'norm'", "number expected"})
    H.assert_error(function() return x:norm(2, 3) end, {"dim 3 out of range for a 2-D tensor"})
    H.assert_error(function() return x:norm(2, 1.5) end, {"dim must be an integer"})
  end)
end)

describe("dn.cat and dn.stack", function()
  it("match PyTorch, values and gradients (an input used twice gets both slices)", function()
    local a = dn.tensor(X):narrow(2, 1, 2):contiguous():requires_grad_()
    local b = dn.tensor(X):narrow(2, 3, 2):contiguous():requires_grad_()
    local y = dn.cat({b, a, b}, 2)
    close(y, REF.cat)
    y:backward(dn.arange(18):float():view(3, 6))
    H.assert_same(a.grad, REF.cat_grad_a)
    H.assert_same(b.grad, REF.cat_grad_b)
    local r1, r2 = dn.tensor(X[1]):requires_grad_(), dn.tensor(X[2]):requires_grad_()
    local s = dn.stack({r1, r2, r1}, 2)
    close(s, REF.stack)
    s:backward(dn.arange(12):float():view(4, 3))
    H.assert_same(r1.grad, REF.stack_grad_a)
    H.assert_same(r2.grad, REF.stack_grad_b)
  end)

  it("join along dim 1 by default, any dim, negative dims from the end", function()
    local a, b = dn.tensor{{1, 2}}, dn.tensor{{3, 4}}
    H.assert_same(dn.cat({a, b}), {{1, 2}, {3, 4}})
    H.assert_same(dn.cat({a, b}, 2), {{1, 2, 3, 4}})
    H.assert_same(dn.cat({a, b}, -1), {{1, 2, 3, 4}})
    H.assert_same(dn.stack({a, b}), {{{1, 2}}, {{3, 4}}})
    H.assert_shape(dn.stack({a, b}, 2), {1, 2, 2})
    H.assert_shape(dn.stack({a, b}, 3), {1, 2, 2})
    H.assert_same(dn.stack({a, b}, -1), {{{1, 3}, {2, 4}}})
    H.assert_same(dn.stack({dn.tensor(1), dn.tensor(2)}), {1, 2})   -- 0-dim tensors make a vector
  end)

  it("take any number of tensors, non-contiguous ones and int32 ones", function()
    local list, want = {}, {}
    for i = 1, 12 do
      local v = {{i, -i}, {2 * i, 0}}
      list[i] = i % 3 == 0 and dn.tensor(H.transpose(v)):t() or dn.tensor(v)
      want[#want + 1] = v[1]
      want[#want + 1] = v[2]
    end
    H.assert_same(dn.cat(list), want)
    H.assert_shape(dn.stack(list, 3), {2, 2, 12})
    local ints = dn.cat({dn.tensor({1, 2}, "int32"), dn.tensor({3}, "int32")})
    H.assert_shape(ints, {3}, "int32")
    H.assert_same(ints, {1, 2, 3})
    H.assert_shape(dn.stack({dn.ones(2, "uint8"), dn.zeros(2, "uint8")}), {2, 2}, "uint8")
    assert.is_false(ints.requires_grad)
  end)

  it("skip 1-D empty tensors in cat, as PyTorch 1.13 does; other empty tensors join normally", function()
    local a = dn.ones(2, 3)
    H.assert_shape(dn.cat({dn.zeros(0), a, dn.zeros(0)}), {2, 3})
    H.assert_shape(dn.cat({dn.zeros(0), a}, 2), {2, 3})   -- dim refers to the first tensor not skipped
    H.assert_shape(dn.cat({dn.zeros(0), dn.zeros(0)}), {0})
    H.assert_shape(dn.cat({dn.zeros(0, 3), a}), {2, 3})
    H.assert_shape(dn.stack({dn.zeros(0), dn.zeros(0)}), {2, 0})
    local e = dn.zeros(0):requires_grad_()
    local x = dn.ones(2, 3):requires_grad_()
    dn.cat({x, e}):sum():backward()
    H.assert_shape(e.grad, {0})
    H.assert_same(x.grad, dn.ones(2, 3))
  end)

  it("give the same bits with 1 and 2 threads", function()
    local g = dn.Generator(3)
    local a, b = dn.randn(200, 70, g), dn.randn(90, 200, g):t()
    local before = dn.get_num_threads()
    dn.set_num_threads(1)
    local one = dn.cat({a, b, a}, 2)
    dn.set_num_threads(2)
    local two = dn.cat({a, b, a}, 2)
    dn.set_num_threads(before)
    assert.is_true(H.same_values(one, two))
    H.assert_same(one:narrow(2, 71, 90), b)
  end)

  it("reject bad arguments with messages naming the tensor", function()
    local a = dn.ones(2, 3)
    H.assert_error(function() return dn.cat({}) end, {"cat: expected a non-empty list of tensors"})
    H.assert_error(function() return dn.stack({}) end, {"stack: expected a non-empty list of tensors"})
    H.assert_error(function() return dn.cat({}, 5) end, {"cat: expected a non-empty list of tensors"})
    H.assert_error(function() return dn.cat(a) end, {"bad argument #1 to 'cat'", "table expected"})
    H.assert_error(function() return dn.cat({a, 3}) end, {"cat: item 2 of the list is a number, Tensor expected"})
    H.assert_error(function() return dn.cat({a, dn.ones(2, 3, "int32")}) end,
      {"cat: tensor 2 is int32 but tensor 1 is float32"})
    H.assert_error(function() return dn.cat({a, dn.ones(3, 3)}, 2) end,
      {"cat: tensor 2 has shape [3,3] but tensor 1 has [2,3]: sizes must match except along the joined dim 2"})
    H.assert_error(function() return dn.cat({a, dn.ones(3)}) end, {"cat: tensor 2 has 1 dims (shape [3])"})
    H.assert_error(function() return dn.cat({dn.tensor(1), dn.tensor(2)}) end,
      {"cat: tensor 1 is 0-dim and cannot be concatenated"})
    H.assert_error(function() return dn.cat({a, a}, 3) end, {"dim 3 out of range for a 2-D tensor"})
    H.assert_error(function() return dn.stack({a, a}, 4) end, {"dim 4 out of range for a 3-D tensor"})
    H.assert_error(function() return dn.stack({a, a}, 0) end, {"dim 0 out of range"})
    H.assert_error(function() return dn.stack({a, dn.ones(3, 2)}) end,
      {"stack: tensor 2 has shape [3,2] but tensor 1 has [2,3] (all must have one shape)"})
    local closed = dn.ones(2)
    closed:close()
    H.assert_error(function() return dn.cat({a, closed}) end, {"tensor has been closed"})
  end)
end)

describe("Tensor:cumsum", function()
  for dim = 1, 2 do
    it("matches PyTorch along dim " .. dim .. ", values and gradient", function()
      for _, run in ipairs(in_layouts(function(x) return x:cumsum(dim) end, dn.tensor(G))) do
        close(run.y, REF["cumsum_" .. dim], run.layout)
        close(run.grad, REF["cumsum_" .. dim .. "_grad"], run.layout .. " grad")
      end
      H.assert_same(dn.cumsum(dn.tensor(X), dim - 3), dn.tensor(X):cumsum(dim))
    end)
  end

  it("keeps int32 exact (int32 result, an overflow an error) and sums uint8 as int32", function()
    local i = dn.tensor({{1, 2, 3}, {4, 5, 6}}, "int32")
    H.assert_shape(i:cumsum(2), {2, 3}, "int32")
    H.assert_same(i:cumsum(2), {{1, 3, 6}, {4, 9, 15}})
    H.assert_same(dn.tensor({200, 100}, "uint8"):cumsum(1), {200, 300})
    H.assert_shape(dn.tensor({200, 100}, "uint8"):cumsum(1), {2}, "int32")
    H.assert_error(function() return dn.tensor({2147483647, 1}, "int32"):cumsum(1) end,
      {"cumsum: a sum overflows int32", "convert to float32 first"})
  end)

  it("handles empty and 0-dim tensors, and rejects bad dims", function()
    H.assert_shape(dn.zeros(0, 3):cumsum(1), {0, 3})
    assert.are.equal(2.5, dn.tensor(2.5):cumsum(1):item())
    H.assert_error(function() return dn.ones(2, 3):cumsum(3) end, {"dim 3 out of range for a 2-D tensor"})
    H.assert_error(function() return dn.ones(2, 3):cumsum() end, {"dim must be an integer (got no value)"})
  end)
end)

describe("Tensor:masked_fill and masked_fill_", function()
  it("match PyTorch with a broadcast mask, values and gradient (zero where filled)", function()
    local mask = dn.tensor{1, 0, 1, 0}
    for _, run in ipairs(in_layouts(function(x) return x:masked_fill(mask, -9.5) end, dn.tensor(G))) do
      close(run.y, REF.masked_fill, run.layout)
      close(run.grad, REF.masked_fill_grad, run.layout .. " grad")
    end
  end)

  it("take masks from comparisons and of any dtype (non-zero is true)", function()
    local x = dn.tensor{-2, -1, 0, 1, 2}
    H.assert_same(x:masked_fill(x:lt(0), 0), {0, 0, 0, 1, 2})
    H.assert_same(x:masked_fill(dn.tensor({0, 1, 0, 1, 0}, "int32"), 7), {-2, 7, 0, 7, 2})
    H.assert_same(x:masked_fill(dn.tensor({1, 0, 0, 0, 3}, "uint8"), 7), {7, -1, 0, 1, 7})
    H.assert_same(dn.masked_fill(x, x:gt(0), -1), {-2, -1, 0, -1, -1})
    -- the tensor broadcasts to the mask too, as torch.masked_fill
    H.assert_same(dn.tensor{1, 2}:masked_fill(dn.tensor{{1, 0}, {0, 1}}, 9), {{9, 2}, {1, 9}})
    H.assert_same(dn.tensor({1, 2}, "int32"):masked_fill(dn.tensor{0, 1}, -4), {1, -4})
  end)

  it("in place: returns the tensor, mask broadcast to it, the in-place rules of every _ method", function()
    local x = dn.tensor{{1, 2}, {3, 4}}
    local r = x:masked_fill_(dn.tensor{0, 1}, 0)
    assert.are.equal(x, r)
    H.assert_same(x, {{1, 0}, {3, 0}})
    H.assert_error(function() return x:masked_fill_(dn.ones(3, 2, 2), 1) end,
      {"masked_fill_: the mask's shape [3,2,2] cannot be broadcast to the tensor's shape [2,2]"})
    local w = dn.ones(3):requires_grad_()
    H.assert_error(function() return w:masked_fill_(dn.tensor{1, 0, 0}, 0) end,
      {"masked_fill_: in-place operation on a tensor that requires grad"})
    dn.no_grad(function() w:masked_fill_(dn.tensor{1, 0, 0}, 0) end)
    H.assert_same(w, {0, 1, 1})
    H.assert_error(function() return dn.ones(3):expand(2, 3):masked_fill_(dn.ones(3), 0) end,
      {"masked_fill_: cannot write into an expanded tensor"})
  end)

  it("rejects bad arguments", function()
    local x = dn.ones(2, 3)
    H.assert_error(function() return x:masked_fill(dn.ones(4), 0) end,
      {"masked_fill: the tensor's shape [2,3] and the mask's [4] cannot be broadcast together"})
    H.assert_error(function() return x:masked_fill(dn.ones(3)) end, {"bad argument #2 to 'masked_fill'"})
    H.assert_error(function() return x:masked_fill(1, 0) end, {"bad argument #1 to 'masked_fill'"})
    H.assert_error(function() return dn.ones(2, "int32"):masked_fill(dn.ones(2), 0.5) end,
      {"masked_fill: value 0.5 is not representable as int32"})
    H.assert_error(function() return dn.ones(2, "uint8"):masked_fill(dn.ones(2), 1) end,
      {"masked_fill: uint8 tensors are not supported"})
  end)
end)

describe("Tensor:zero_", function()
  it("zeroes in place and returns the tensor, any dtype and layout", function()
    local x = dn.tensor{{1, 2}, {3, 4}}
    assert.are.equal(x, x:zero_())
    H.assert_same(x, {{0, 0}, {0, 0}})
    local y = dn.tensor({{1, 2}, {3, 4}}, "int32")
    y:t():select(1, 2):zero_()   -- the second column
    H.assert_same(y, {{1, 0}, {3, 0}})
  end)

  it("zeroes a gradient between steps, and follows the in-place rules", function()
    local w = dn.ones(3):requires_grad_()
    ;(w * 2):sum():backward()
    w.grad:zero_()
    H.assert_same(w.grad, {0, 0, 0})
    ;(w * 3):sum():backward()
    H.assert_same(w.grad, {3, 3, 3})   -- accumulates into the zeroed gradient
    H.assert_error(function() return w:zero_() end, {"zero_: in-place operation on a tensor that requires grad"})
    dn.no_grad(function() w:zero_() end)
    H.assert_same(w, {0, 0, 0})
    H.assert_error(function() return dn.ones(3):expand(2, 3):zero_() end, {"zero_: cannot write into an expanded"})
  end)
end)
