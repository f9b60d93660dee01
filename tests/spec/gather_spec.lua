-- Tensor:gather, Tensor:scatter_add and Tensor:scatter_add_ (PyTorch's semantics, 1-based index
-- values): values and gradients against PyTorch, layouts, threads, the in-place form and errors.
-- The finite-difference checks are rows of gradcheck_spec.lua.
local dn = require "dropnet"
local H = require "helpers"

-- luacheck: push ignore 631 (the generating script and its output, pasted as they are)
--[==[ Reference values: /usr/bin/python3 this script > ref.txt, pasted into REF below.
import torch
def lua(t):
    if isinstance(t, torch.Tensor): t = t.detach().double().tolist()
    if isinstance(t, list): return "{" + ", ".join(lua(v) for v in t) + "}"
    return "%.9g" % t
def emit(name, v): print("  %s = %s," % (name, lua(v)))
A = torch.tensor([[0.5, -1.25, 2.0, 0.75], [1.5, 0.25, -0.5, -2.0], [-1.0, 3.0, 0.125, 1.0]])
I1 = torch.tensor([[3, 0, 3], [1, 1, 2], [0, 3, 3]])          # Lua: +1
I0 = torch.tensor([[2, 0, 1, 2], [1, 1, 0, 0]])
G1 = torch.tensor([[0.3, -0.7, 1.1], [0.2, 0.5, -0.4], [0.9, -0.1, 0.6]])
G0 = torch.tensor([[0.3, -0.7, 1.1, 0.2], [0.5, -0.4, 0.9, -0.1]])
for name, dim, idx, g in [("gather_dim2", 1, I1, G1), ("gather_dim1", 0, I0, G0)]:
    a = A.clone().requires_grad_(); y = a.gather(dim, idx); y.backward(g)
    emit(name, y); emit(name + "_grad", a.grad)
S = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0], [13.0, 14.0, 15.0, 16.0]])
GS = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.9, 1.0, 1.1, 1.2]])
for name, dim, idx in [("scatter_dim2", 1, I1), ("scatter_dim1", 0, I0)]:
    # src cut to index's shape: torch 1.13 cannot differentiate a larger src (dropnet pads with 0)
    a = A.clone().requires_grad_(); s = S[:idx.shape[0], :idx.shape[1]].clone().requires_grad_()
    y = a.scatter_add(dim, idx, s); y.backward(GS)
    emit(name, y); emit(name + "_grad_self", a.grad); emit(name + "_grad_src", s.grad)
]==]
local REF = {
  gather_dim2 = {{0.75, 0.5, 0.75}, {0.25, 0.25, -0.5}, {-1, 1, 1}},
  gather_dim2_grad = {{-0.699999988, 0, 0, 1.4000001}, {0, 0.699999988, -0.400000006, 0}, {0.899999976, 0, 0, 0.5}},
  gather_dim1 = {{-1, -1.25, -0.5, 1}, {1.5, 0.25, 2, 0.75}},
  gather_dim1_grad = {{0, -0.699999988, 0.899999976, -0.100000001}, {0.5, -0.400000006, 1.10000002, 0}, {0.300000012, 0, 0, 0.200000003}},
  scatter_dim2 = {{2.5, -1.25, 2, 4.75}, {1.5, 11.25, 6.5, -2}, {8, 3, 0.125, 22}},
  scatter_dim2_grad_self = {{0.100000001, 0.200000003, 0.300000012, 0.400000006}, {0.5, 0.600000024, 0.699999988, 0.800000012}, {0.899999976, 1, 1.10000002, 1.20000005}},
  scatter_dim2_grad_src = {{0.400000006, 0.100000001, 0.400000006}, {0.600000024, 0.600000024, 0.699999988}, {0.899999976, 1.20000005, 1.20000005}},
  scatter_dim1 = {{0.5, 0.75, 9, 8.75}, {6.5, 6.25, 2.5, -2}, {0, 3, 0.125, 5}},
  scatter_dim1_grad_self = {{0.100000001, 0.200000003, 0.300000012, 0.400000006}, {0.5, 0.600000024, 0.699999988, 0.800000012}, {0.899999976, 1, 1.10000002, 1.20000005}},
  scatter_dim1_grad_src = {{0.899999976, 0.200000003, 0.699999988, 1.20000005}, {0.5, 0.600000024, 0.300000012, 0.400000006}},
}
-- luacheck: pop

local A = {{0.5, -1.25, 2.0, 0.75}, {1.5, 0.25, -0.5, -2.0}, {-1.0, 3.0, 0.125, 1.0}}
local I2 = {{4, 1, 4}, {2, 2, 3}, {1, 4, 4}}        -- PyTorch's I1 + 1
local I1 = {{3, 1, 2, 3}, {2, 2, 1, 1}}              -- PyTorch's I0 + 1
local G2 = {{0.3, -0.7, 1.1}, {0.2, 0.5, -0.4}, {0.9, -0.1, 0.6}}
local G1 = {{0.3, -0.7, 1.1, 0.2}, {0.5, -0.4, 0.9, -0.1}}
local S = {{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11, 12}, {13, 14, 15, 16}}
local GS = {{0.1, 0.2, 0.3, 0.4}, {0.5, 0.6, 0.7, 0.8}, {0.9, 1.0, 1.1, 1.2}}

local function ints(v) return dn.tensor(v, "int32") end

-- The top-left block of a nested table with the given rows and columns.
local function block(v, rows, cols)
  local out = {}
  for i = 1, rows do out[i] = table.move(v[i], 1, cols, 1, {}) end
  return out
end

describe("gather", function()
  it("matches PyTorch, with its gradient, along either dim", function()
    for _, c in ipairs {{2, I2, G2, "gather_dim2"}, {1, I1, G1, "gather_dim1"}} do
      local a = dn.tensor(A):requires_grad_()
      local y = a:gather(c[1], ints(c[2]))
      H.assert_same(y, REF[c[4]], c[4])
      y:backward(dn.tensor(c[3]))
      H.assert_close(a.grad, REF[c[4] .. "_grad"], 1e-6, 1e-7, c[4] .. " gradient")
      H.assert_same(dn.gather(dn.tensor(A), c[1], ints(c[2])), REF[c[4]], "dn.gather")
    end
  end)

  it("reads any layout, and negative dims count from the end", function()
    local a = dn.tensor(A):t():contiguous():t()
    assert.is_false(a:is_contiguous())
    local index = H.noncontig(I2, "int32")
    H.assert_same(a:gather(-1, index), REF.gather_dim2)
    H.assert_same(dn.tensor(A):gather(-2, ints(I1)), REF.gather_dim1)
  end)

  it("keeps int32 and uint8 values, and takes 0-dim and empty indices", function()
    local labels = dn.tensor({{5, 7, 9}, {2, 4, 6}}, "int32")
    H.assert_same(labels:gather(2, ints {{3}, {1}}), {{9}, {2}})
    assert.equal("int32", labels:gather(2, ints {{3}, {1}}):dtype())
    assert.equal("uint8", dn.tensor({{1, 2}}, "uint8"):gather(2, ints {{2, 2}}):dtype())
    assert.equal(2.5, dn.tensor(2.5):gather(1, dn.tensor(1, "int32")):item())
    H.assert_shape(dn.tensor(A):gather(2, dn.zeros({3, 0}, "int32")), {3, 0}, "float32")
  end)

  it("names what is wrong", function()
    local a = dn.tensor(A)
    H.assert_error(function() return a:gather(2, ints {{5}}) end,
      {"gather: index 5 at position 1 is out of range [1, 4] for a dim of size 4"})
    H.assert_error(function() return a:gather(2, ints {1, 2}) end, {"gather: index has 1 dim, input has 2"})
    H.assert_error(function() return a:gather(2, ints {{1}, {1}, {1}, {1}}) end,
      {"gather: index of shape [4,1] does not fit the input of shape [3,4]"})
    H.assert_error(function() return a:gather(2, dn.tensor {{1}}) end, {"gather: index must be int32 (got float32)"})
    H.assert_error(function() return a:gather(3, ints {{1}}) end, {"dim 3 out of range for a 2-D tensor"})
    -- (argument numbers as Lua counts them for a method call: the index is #2)
    H.assert_error(function() return a:gather(2, {{1}}) end,
      {"bad argument #2 to 'gather' (Tensor expected, got table)"})
  end)
end)

describe("scatter_add", function()
  it("matches PyTorch, with the gradients of the input and of src", function()
    for _, c in ipairs {{2, I2, "scatter_dim2"}, {1, I1, "scatter_dim1"}} do
      local a, s = dn.tensor(A):requires_grad_(), dn.tensor(S):requires_grad_()
      local y = a:scatter_add(c[1], ints(c[2]), s)
      H.assert_same(y, REF[c[3]], c[3])
      y:backward(dn.tensor(GS))
      H.assert_close(a.grad, REF[c[3] .. "_grad_self"], 1e-6, 1e-7, c[3] .. " input gradient")
      -- src is larger than index: its gradient is PyTorch's in index's block, 0 outside it
      local rows, cols = #c[2], #c[2][1]
      local g = s.grad:totable()
      H.assert_close(block(g, rows, cols), REF[c[3] .. "_grad_src"], 1e-6, 1e-7, c[3] .. " src gradient")
      assert.equal(0, s.grad:abs():sum():item() - dn.tensor(block(g, rows, cols)):abs():sum():item())
      H.assert_same(dn.scatter_add(dn.tensor(A), c[1], ints(c[2]), dn.tensor(S)), REF[c[3]], "dn.scatter_add")
    end
  end)

  it("counts int32 labels, and refuses an int32 overflow", function()
    local counts = dn.zeros(4, "int32"):scatter_add(1, ints {4, 2, 4, 1, 4, 2}, dn.ones(6, "int32"))
    H.assert_same(counts, {1, 2, 0, 3})
    assert.equal("int32", counts:dtype())
    local big = dn.full({2}, 2147483646, "int32")
    H.assert_error(function() return big:scatter_add(1, ints {1, 1}, dn.ones(2, "int32")) end,
      {"scatter_add: int32 overflow: 2147483647 + 1 is outside the int32 range"})
    H.assert_error(function() return big:scatter_add_(1, ints {1, 1}, dn.ones(2, "int32")) end, {"scatter_add_"})
    H.assert_same(big, {2147483646, 2147483646})
  end)

  it("scatter_add_ adds in place and returns the tensor, like scatter_add", function()
    local a = dn.tensor(A)
    local same = a:scatter_add_(2, ints(I2), dn.tensor(S))
    assert.equal(a, same)
    H.assert_same(a, REF.scatter_dim2)
    -- src may be the tensor itself: the terms are read before any is added
    local b = dn.tensor(A)
    b:scatter_add_(2, ints(I2), b)
    H.assert_same(b, dn.tensor(A):scatter_add(2, ints(I2), dn.tensor(A)))
    local leaf = dn.tensor(A):requires_grad_()
    H.assert_error(function() return leaf:scatter_add_(2, ints(I2), dn.tensor(S)) end,
      {"scatter_add_: in-place operation on a tensor that requires grad"})
    dn.no_grad(function() leaf:scatter_add_(2, ints(I2), dn.tensor(S)) end)
    H.assert_same(leaf, REF.scatter_dim2)
  end)

  it("sums in index order whatever the thread count", function()
    local threads = dn.get_num_threads()
    dn.manual_seed(7)
    local a, src = dn.randn(3, 500), dn.randn(3, 40000)
    local index = (dn.rand(3, 40000) * 500):int():add(1)
    local results = {}
    for _, t in ipairs {1, 2} do
      dn.set_num_threads(t)
      results[t] = a:scatter_add(2, index, src):totable()
    end
    dn.set_num_threads(threads)
    H.assert_same(results[1], results[2])
  end)

  it("names what is wrong", function()
    local a = dn.tensor(A)
    H.assert_error(function() return a:scatter_add(2, ints(I2), dn.ones(3, 2)) end,
      {"scatter_add: index of shape [3,3] is larger than src of shape [3,2]"})
    H.assert_error(function() return a:scatter_add(2, ints(I2), dn.ones({3, 3}, "int32")) end,
      {"scatter_add: src is int32, input is float32 (they must match)"})
    H.assert_error(function() return a:scatter_add(2, ints {{0}}, dn.ones(1, 1)) end,
      {"scatter_add: index 0 at position 1 is out of range [1, 4]"})
    H.assert_error(function() return dn.zeros(2, "uint8"):scatter_add(1, ints {1}, dn.ones(1, "uint8")) end,
      {"scatter_add: input must be float32 or int32 (got uint8)"})
    H.assert_error(function() return a:scatter_add(2, ints(I2)) end,
      {"bad argument #3 to 'scatter_add' (Tensor expected, got no value)"})
  end)
end)
