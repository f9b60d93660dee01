-- dn.set_sparse_matmul: products skip the zeros of a mostly-zero left operand
-- (runtime/src/gemm_sparse.h), the same bits as multiplying every one. The C
-- tests check the path itself on every shape and edge (tests/c/test_gemm.c);
-- here, the switch, and whole training steps of a ReLU + dropout MLP whose
-- products take the sparse path (64 x 512 x 512 at ~15% nonzero) giving the
-- same weights to the last bit with it on and off.
local dn = require "dropnet"
local nn, optim = dn.nn, dn.optim

-- The parameters after `steps` SGD steps of a fixed model on fixed data.
local function train(steps)
  dn.manual_seed(11)
  local model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Dropout(0.7), nn.Linear(512, 512), nn.ReLU(),
    nn.Dropout(0.7), nn.Linear(512, 10))
  local opt = optim.SGD(model:parameters(), {lr = 0.05, momentum = 0.9})
  local loss_fn = nn.CrossEntropyLoss()
  local x = dn.randn(64, 256)
  local y = (dn.rand(64) * 10):int() + 1
  for _ = 1, steps do
    local loss = loss_fn(model(x), y)
    opt:zero_grad()
    loss:backward()
    opt:step()
  end
  return model:parameters()
end

local function same_bits(a, b)
  -- eq is false for NaN: count the places where both are NaN as equal
  local both_nan = a:ne(a):float() * b:ne(b):float()
  return (a:eq(b):float() + both_nan):sum():item() == a:numel()
end

describe("sparse matrix products", function()
  after_each(function() dn.set_sparse_matmul(true) end)

  it("are on by default, and the switch returns the previous setting", function()
    assert.is_true(dn.get_sparse_matmul())
    assert.is_true(dn.set_sparse_matmul(false))
    assert.is_false(dn.get_sparse_matmul())
    assert.is_false(dn.set_sparse_matmul(true))
    assert.is_true(dn.get_sparse_matmul())
  end)

  it("train to the same bits as dense products", function()
    local sparse = train(12)
    dn.set_sparse_matmul(false)
    local dense = train(12)
    assert.are.equal(#dense, #sparse)
    for i = 1, #dense do assert.is_true(same_bits(sparse[i], dense[i]), "parameter " .. i) end
  end)

  it("keep 0 * inf a NaN", function()
    dn.manual_seed(3)
    local h = nn.functional.dropout(dn.randn(128, 1024):relu(), 0.8, true)   -- ~10% nonzero
    local w = dn.randn(1024, 512)
    -- a row of w infinite: h's zeros in that column still meet it
    w[7] = dn.full({512}, math.huge)
    local sparse = h:matmul(w)
    dn.set_sparse_matmul(false)
    local dense = h:matmul(w)
    assert.is_true(dense:ne(dense):sum():item() > 0)
    assert.is_true(same_bits(sparse, dense))
  end)

  it("reject a switch that is not a boolean", function()
    local ok, err = pcall(dn.set_sparse_matmul, 1)
    assert.is_false(ok)
    assert.truthy(err:find("set_sparse_matmul", 1, true), err)
    assert.truthy(err:find("on must be a boolean (got number)", 1, true), err)
  end)
end)
