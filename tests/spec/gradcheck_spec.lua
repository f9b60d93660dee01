-- One table-driven gradient check for every differentiable op of the tensor
-- API, the nn kernels exposed in C and the dropnet.nn layers and losses:
-- central finite differences (tests/spec/gradcheck.lua) against autograd, on
-- random shapes from a seeded generator, broadcasting operands and
-- non-contiguous inputs (transposed or strided leaves, and :t() / :narrow()
-- / :transpose() inside the function).
local dn = require "dropnet"
local core = require "dropnet.core"
local G = require "gradcheck"
local H = require "helpers"

local SEED = 20240613
local ALL_LAYOUTS = {"contiguous", "transposed", "strided"}

-- --- the table ----------------------------------------------------------------------
--
-- A row: name; build(r, layout) -> list of inputs (leaves requiring grad are
-- checked, other inputs must get no gradient) and an optional context;
-- fn(inputs, context) -> one float32 tensor; layouts (default: all three);
-- opts for G.check (eps, rtol, atol).

local ROWS, NN_ROWS = {}, {}   -- the tensor API and core.nn_*; the dropnet.nn modules

local function add_row(list, name, build, fn, extra)
  local r = {name = name, build = build, fn = fn, layouts = ALL_LAYOUTS}
  for k, v in pairs(extra or {}) do r[k] = v end
  list[#list + 1] = r
end

local function row(...) add_row(ROWS, ...) end
local function nn_row(...) add_row(NN_ROWS, ...) end

-- A per-row seed from the row's name, so adding a row changes no other.
local function seed_of(name)
  local h = SEED
  for i = 1, #name do h = (h * 31 + name:byte(i)) % 2147483647 end
  return h
end

-- Random sizes for a row's shape letters: m, n, k, b in 2..4.
local function sizes(r)
  return {m = r:int(2, 4), n = r:int(2, 4), k = r:int(2, 4), b = r:int(2, 3)}
end

-- A shape pattern ({"m", 1}) resolved with a row's sizes.
local function shape(sz, pattern)
  local s = {}
  for i, v in ipairs(pattern) do s[i] = type(v) == "string" and assert(sz[v], v) or v end
  return s
end

local function pattern_str(p)
  local parts = {}
  for i, v in ipairs(p) do parts[i] = tostring(v) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- --- element-wise: binary ops, tensor with tensor ---------------------------------------

local SHAPE_PAIRS = {
  {{"m", "n"}, {"m", "n"}},
  {{"m", 1}, {1, "n"}},        -- both broadcast
  {{"m", "n"}, {"n"}},         -- a leading dim added
  {{"n"}, {"m", "n"}},
  {{"b", 1, "n"}, {"m", 1}},
  {{"m", "n"}, {}},            -- a 0-dim operand
}

local BINARY = {
  {"add", function(a, b) return a + b end, "any", "any"},
  {"sub", function(a, b) return a - b end, "any", "any"},
  {"mul", function(a, b) return a * b end, "any", "any"},
  {"div", function(a, b) return a / b end, "any", "away0"},
  {"pow", function(a, b) return a ^ b end, "positive", "any"},
  {"maximum", function(a, b) return a:maximum(b) end, "lattice_a", "lattice_b"},
  {"minimum", function(a, b) return dn.minimum(a, b) end, "lattice_a", "lattice_b"},
}

for _, op in ipairs(BINARY) do
  local name, f, kind_a, kind_b = op[1], op[2], op[3], op[4]
  for _, pair in ipairs(SHAPE_PAIRS) do
    row(string.format("%s %s x %s", name, pattern_str(pair[1]), pattern_str(pair[2])), function(r, layout)
      local sz = sizes(r)
      return {G.random_leaf(r, shape(sz, pair[1]), kind_a, layout),
              G.random_leaf(r, shape(sz, pair[2]), kind_b, layout)}
    end, function(x) return f(x[1], x[2]) end)
  end
  -- one operand a constant: it must get no gradient
  row(name .. " with a constant second operand", function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.m, sz.n}, kind_a, layout), G.tensor(G.values(r, {sz.n}, kind_b), layout)}
  end, function(x) return f(x[1], x[2]) end)
  row(name .. " with a constant first operand", function(r, layout)
    local sz = sizes(r)
    return {G.tensor(G.values(r, {sz.m, 1}, kind_a), layout), G.random_leaf(r, {1, sz.n}, kind_b, layout)}
  end, function(x) return f(x[1], x[2]) end)
  -- operands made non-contiguous inside the function
  row(name .. " of a :t() and a :narrow()", function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.n, sz.m}, kind_a, layout), G.random_leaf(r, {sz.m, sz.n + 2}, kind_b, layout)}
  end, function(x) return f(x[1]:t(), x[2]:narrow(2, 2, x[1]:size(1))) end)
end

-- the method and functional forms
for _, name in ipairs {"add", "sub", "mul", "div", "pow"} do
  local kind_a = name == "pow" and "positive" or "any"
  local kind_b = name == "div" and "away0" or "any"
  row(name .. " as a method", function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.m, sz.n}, kind_a, layout), G.random_leaf(r, {sz.n}, kind_b, layout)}
  end, function(x) return x[1][name](x[1], x[2]) end, {layouts = {"contiguous"}})
  row("dn." .. name, function(r)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.m, 1}, kind_a), G.random_leaf(r, {sz.n}, kind_b)}
  end, function(x) return dn[name](x[1], x[2]) end, {layouts = {"contiguous"}})
end

-- the same tensor on both sides
local SAME_TWICE = {
  {"x * x", function(x) return x * x end},
  {"x / x", function(x) return x / x end},
  {"x ^ x", function(x) return x ^ x end},
  {"x - x * x", function(x) return x - x * x end},
}
for _, c in ipairs(SAME_TWICE) do
  row(c[1], function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.m, sz.n}, "positive", layout)}
  end, function(x) return c[2](x[1]) end)
end

-- --- element-wise: a tensor and a number, both orders --------------------------------------

local SCALAR = {
  {"x + 1.25", function(x) return x + 1.25 end, "any"},
  {"1.25 + x", function(x) return 1.25 + x end, "any"},
  {"x - 0.5", function(x) return x - 0.5 end, "any"},
  {"0.5 - x", function(x) return 0.5 - x end, "any"},
  {"x * -3", function(x) return x * -3 end, "any"},
  {"-3 * x", function(x) return -3 * x end, "any"},
  {"x / -0.8", function(x) return x / -0.8 end, "any"},
  {"2 / x", function(x) return 2 / x end, "away0"},
  {"x ^ 2", function(x) return x ^ 2 end, "any"},
  {"x ^ 3", function(x) return x ^ 3 end, "any"},
  {"x ^ 0.5", function(x) return x ^ 0.5 end, "positive"},
  {"x ^ -1.5", function(x) return x ^ -1.5 end, "positive"},
  {"2 ^ x", function(x) return 2 ^ x end, "any"},
  {"0.7 ^ x", function(x) return 0.7 ^ x end, "any"},
  {"x:pow(2.5)", function(x) return x:pow(2.5) end, "positive"},
  {"x:add(2)", function(x) return x:add(2) end, "any"},
  {"x:sub(2)", function(x) return x:sub(2) end, "any"},
  {"x:mul(0.25)", function(x) return x:mul(0.25) end, "any"},
  {"x:div(4)", function(x) return x:div(4) end, "any"},
  {"x:maximum(0.1)", function(x) return x:maximum(0.1) end, "lattice_a"},
  {"x:minimum(0.1)", function(x) return x:minimum(0.1) end, "lattice_a"},
}
for _, c in ipairs(SCALAR) do
  row(c[1], function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.m, sz.n}, c[3], layout)}
  end, function(x) return c[2](x[1]) end)
end

-- --- element-wise: unary, clamp, where --------------------------------------------------------

local UNARY = {
  {"-x", function(x) return -x end, "any"},
  {"neg", function(x) return x:neg() end, "any"},
  {"dn.neg", function(x) return dn.neg(x) end, "any"},
  {"exp", function(x) return x:exp() end, "any"},
  {"log", function(x) return x:log() end, "positive"},
  {"sqrt", function(x) return x:sqrt() end, "positive"},
  {"abs", function(x) return x:abs() end, "away0"},
  {"relu", function(x) return x:relu() end, "away0"},
  {"sigmoid", function(x) return x:sigmoid() end, "any"},
  {"tanh", function(x) return x:tanh() end, "any"},
}
local UNARY_SHAPES = {{"m", "n"}, {"b", "m", "n"}, {"n"}, {}}
for _, c in ipairs(UNARY) do
  for _, p in ipairs(UNARY_SHAPES) do
    row(c[1] .. " " .. pattern_str(p), function(r, layout)
      return {G.random_leaf(r, shape(sizes(r), p), c[3], layout)}
    end, function(x) return c[2](x[1]) end)
  end
end

-- clamp: values on a lattice at least 0.15 from either bound
local function clamp_value(r) return -1.55 + 0.4 * r:int(0, 8) end
for _, bounds in ipairs {{-0.5, 0.7}, {-0.5, nil}, {nil, 0.7}} do
  row(string.format("clamp(%s, %s)", tostring(bounds[1]), tostring(bounds[2])), function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.m, sz.n}, clamp_value, layout)}
  end, function(x) return x[1]:clamp(bounds[1], bounds[2]) end)
end

-- where: the condition broadcast with both branches; numbers as branches
local function alternating(n)
  local c = {}
  for i = 1, n do c[i] = {i % 2} end
  return c
end
row("where {m,1} {1,n} {n}", function(r, layout)
  local sz = sizes(r)
  return {G.tensor(alternating(sz.m)), G.random_leaf(r, {1, sz.n}, "any", layout),
          G.random_leaf(r, {sz.n}, "any", layout)}
end, function(x) return dn.where(x[1], x[2], x[3]) end)
row("where int32 condition, number branch", function(r, layout)
  local sz = sizes(r)
  return {G.ints(alternating(sz.m)), G.random_leaf(r, {sz.m, sz.n}, "any", layout)}
end, function(x) return dn.where(x[1], x[2], 0.5) end)
row("where condition from a comparison", function(r, layout)
  local sz = sizes(r)
  local a = G.random_leaf(r, {sz.m, sz.n}, "away0", layout)
  return {a, G.random_leaf(r, {sz.m, sz.n}, "any", layout)}
end, function(x) return dn.where(x[1]:detach():gt(0), x[1], x[2]) end)

-- --- reductions ---------------------------------------------------------------------------------

local REDUCE = {
  {"sum()", function(x) return x:sum() end},
  {"sum(1)", function(x) return x:sum(1) end},
  {"sum(2, keepdim)", function(x) return x:sum(2, true) end},
  {"sum(-1)", function(x) return x:sum(-1) end},
  {"dn.sum(x, 3, keepdim)", function(x) return dn.sum(x, 3, true) end},
  {"mean()", function(x) return x:mean() end},
  {"mean(1, keepdim)", function(x) return x:mean(1, true) end},
  {"mean(2)", function(x) return x:mean(2) end},
  {"mean(-1)", function(x) return x:mean(-1) end},
  {"var()", function(x) return x:var() end},
  {"var(false)", function(x) return x:var(false) end},
  {"var(1)", function(x) return x:var(1) end},
  {"var(2, keepdim)", function(x) return x:var(2, true) end},
  {"var(-1, false, biased)", function(x) return x:var(-1, false, false) end},
  {"std()", function(x) return x:std() end},
  {"std(false)", function(x) return x:std(false) end},
  {"std(1)", function(x) return x:std(1) end},
  {"std(3, keepdim, biased)", function(x) return x:std(3, true, false) end},
  {"max()", function(x) return x:max() end, "distinct"},
  {"max(1)", function(x) return (x:max(1)) end, "distinct"},
  {"max(2, keepdim)", function(x) return (x:max(2, true)) end, "distinct"},
  {"min()", function(x) return x:min() end, "distinct"},
  {"min(3)", function(x) return (x:min(3)) end, "distinct"},
  {"min(-1, keepdim)", function(x) return (x:min(-1, true)) end, "distinct"},
}
for _, c in ipairs(REDUCE) do
  row(c[1], function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.b, sz.m, sz.n}, c[3] or "any", layout)}
  end, function(x) return c[2](x[1]) end)
end
row("sum(2) of a :transpose(1, 3)", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.b, sz.m, sz.n}, "any", layout)}
end, function(x) return x[1]:transpose(1, 3):sum(2) end)
row("max(1) of a :t()", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "distinct", layout)}
end, function(x) return (x[1]:t():max(1)) end)

-- --- norms, cumsum, masked_fill ------------------------------------------------------------------

-- p < 2 has a kink (or an infinite curvature) at 0: values away from it; the inf-norm needs no ties
local NORMS = {
  {"norm()", function(x) return x:norm() end, "any"},
  {"norm(2, 2)", function(x) return x:norm(2, 2) end, "any"},
  {"norm(2, -1, keepdim)", function(x) return x:norm(2, -1, true) end, "any"},
  {"norm(1)", function(x) return x:norm(1) end, "away0"},
  {"norm(1, 1)", function(x) return x:norm(1, 1) end, "away0"},
  {"norm(3, 3)", function(x) return x:norm(3, 3) end, "any"},
  {"norm(0.5, 2)", function(x) return x:norm(0.5, 2) end, "away0"},
  {"norm(1.5)", function(x) return x:norm(1.5) end, "away0"},
  {"norm(4, 1, keepdim)", function(x) return x:norm(4, 1, true) end, "any"},
  {"norm(inf)", function(x) return x:norm(math.huge) end, "distinct"},
  {"norm(inf, 2)", function(x) return x:norm(math.huge, 2) end, "distinct"},
  {"dn.norm(x, 2, 3)", function(x) return dn.norm(x, 2, 3) end, "any"},
  {"cumsum(1)", function(x) return x:cumsum(1) end, "any"},
  {"cumsum(2)", function(x) return x:cumsum(2) end, "any"},
  {"dn.cumsum(x, -1)", function(x) return dn.cumsum(x, -1) end, "any"},
}
for _, c in ipairs(NORMS) do
  row(c[1], function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.b, sz.m, sz.n}, c[3], layout)}
  end, function(x) return c[2](x[1]) end)
end
row("norm(2, 1) of a :t()", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout)}
end, function(x) return x[1]:t():norm(2, 1) end)
row("cumsum(1) of a :t()", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout)}
end, function(x) return x[1]:t():cumsum(1) end)
row("masked_fill {m,n} mask", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.tensor(G.values(r, {sz.m, sz.n}, "any"), layout):gt(0)}
end, function(x) return x[1]:masked_fill(x[2], -0.5) end)
row("masked_fill broadcast {n} mask, int32", function(r, layout)
  local sz = sizes(r)
  local mask = {}
  for i = 1, sz.n do mask[i] = i % 2 end
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.ints(mask)}
end, function(x) return dn.masked_fill(x[1], x[2], 2) end)
row("masked_fill of a {1,n} input by a {m,n} mask", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {1, sz.n}, "any", layout), G.tensor(G.values(r, {sz.m, sz.n}, "any")):lt(0)}
end, function(x) return x[1]:masked_fill(x[2], 0) end)

-- --- cat and stack ------------------------------------------------------------------------------------

row("cat of two along dim 1", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.random_leaf(r, {sz.k, sz.n}, "any", layout)}
end, function(x) return dn.cat({x[1], x[2]}) end)
row("cat of five along dim 2, one constant", function(r, layout)
  local sz = sizes(r)
  local list = {}
  for i = 1, 5 do
    local piece = {sz.m, i}
    list[i] = i == 4 and G.tensor(G.values(r, piece), layout) or G.random_leaf(r, piece, "any", layout)
  end
  return list
end, function(x) return dn.cat(x, 2) end)
row("cat of one leaf three times, a :t() and a 1-D empty tensor", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.m}, "any", layout)}
end, function(x) return dn.cat({x[1], x[1]:t(), dn.zeros(0), x[1] * 2}, -1) end)
for _, dim in ipairs {1, 2, 3, -1} do
  row("stack of three along dim " .. dim, function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.random_leaf(r, {sz.m, sz.n}, "any", layout),
            G.random_leaf(r, {sz.m, sz.n}, "any", layout)}
  end, function(x) return dn.stack(x, dim) end)
end
row("stack of 0-dim tensors", function(r)
  return {G.random_leaf(r, {}, "any"), G.random_leaf(r, {}, "any"), G.random_leaf(r, {}, "any"),
          G.random_leaf(r, {}, "any")}
end, function(x) return dn.stack(x) end, {layouts = {"contiguous"}})

-- --- matmul and index_select -----------------------------------------------------------------------

local MATMUL = {
  {"{m,k} @ {k,n}", {"m", "k"}, {"k", "n"}, function(a, b) return a:matmul(b) end},
  {"t({k,m}) @ {k,n}", {"k", "m"}, {"k", "n"}, function(a, b) return a:t():matmul(b) end},
  {"{m,k} @ t({n,k})", {"m", "k"}, {"n", "k"}, function(a, b) return a:matmul(b:t()) end},
  {"t({k,m}) @ t({n,k})", {"k", "m"}, {"n", "k"}, function(a, b) return dn.matmul(a:t(), b:t()) end},
  {"{b,m,k} @ {b,k,n}", {"b", "m", "k"}, {"b", "k", "n"}, function(a, b) return a:matmul(b) end},
  {"{b,m,k} @ transpose({b,n,k})", {"b", "m", "k"}, {"b", "n", "k"},
   function(a, b) return a:matmul(b:transpose(2, 3)) end},
  {"{b,m,k} @ {k,n}", {"b", "m", "k"}, {"k", "n"}, function(a, b) return a:matmul(b) end},
  {"{m,k} @ {b,k,n}", {"m", "k"}, {"b", "k", "n"}, function(a, b) return a:matmul(b) end},
  {"{k} @ {k,n}", {"k"}, {"k", "n"}, function(a, b) return a:matmul(b) end},
  {"{m,k} @ {k}", {"m", "k"}, {"k"}, function(a, b) return a:matmul(b) end},
  {"{k} @ {k}", {"k"}, {"k"}, function(a, b) return a:matmul(b) end},
  {"narrow({m,k+1}) @ {k,n}", {"m", "k+1"}, {"k", "n"},
   function(a, b) return a:narrow(2, 2, b:size(1)):matmul(b) end},
}
for _, c in ipairs(MATMUL) do
  row("matmul " .. c[1], function(r, layout)
    local sz = sizes(r)
    sz["k+1"] = sz.k + 1
    return {G.random_leaf(r, shape(sz, c[2]), "any", layout), G.random_leaf(r, shape(sz, c[3]), "any", layout)}
  end, function(x) return c[4](x[1], x[2]) end)
end
row("matmul with a constant operand", function(r, layout)
  local sz = sizes(r)
  return {G.tensor(G.values(r, {sz.m, sz.k}), layout), G.random_leaf(r, {sz.k, sz.n}, "any", layout)}
end, function(x) return x[1]:matmul(x[2]) end)

row("index_select(1) with repeated indices", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.ints({1, sz.m, 1, 2})}
end, function(x) return x[1]:index_select(1, x[2]) end)
row("index_select(2) with repeated indices", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.ints({sz.n, 1, sz.n})}
end, function(x) return x[1]:index_select(2, x[2]) end)
row("index_select(-1) of 3-D", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.b, sz.m, sz.n}, "any", layout), G.ints({2, 2, 1})}
end, function(x) return dn.index_select(x[1], -1, x[2]) end)

-- --- gather and scatter_add ------------------------------------------------------------------------

-- A nested table of int32 index values in [1, size] (repeats likely), of shape {rows, cols}.
local function index_values(r, rows, cols, size)
  local v = {}
  for i = 1, rows do
    v[i] = {}
    for j = 1, cols do v[i][j] = r:int(1, size) end
  end
  return v
end

row("gather(2) with repeated indices", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.ints(index_values(r, sz.m, sz.n + 2, sz.n))}
end, function(x) return x[1]:gather(2, x[2]) end)
row("gather(1) of an index smaller than the input", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.ints(index_values(r, sz.m + 1, sz.n - 1, sz.m))}
end, function(x) return dn.gather(x[1], 1, x[2]) end)
row("gather(-1) of a :t()", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.n, sz.m}, "any", layout), G.ints(index_values(r, sz.m, 3, sz.n))}
end, function(x) return x[1]:t():gather(-1, x[2]) end)
row("scatter_add(2), input and a larger src", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.ints(index_values(r, sz.m, sz.n + 1, sz.n)),
          G.random_leaf(r, {sz.m + 1, sz.n + 2}, "any", layout)}
end, function(x) return x[1]:scatter_add(2, x[2], x[3]) end)
row("scatter_add(1) into a constant", function(r, layout)
  local sz = sizes(r)
  return {G.tensor(G.values(r, {sz.m, sz.n}), layout), G.ints(index_values(r, 2 * sz.m, sz.n, sz.m)),
          G.random_leaf(r, {2 * sz.m, sz.n}, "any", layout)}
end, function(x) return dn.scatter_add(x[1], 1, x[2], x[3]) end)

-- --- sort, topk, median, quantile (values 0.1 apart: a step of eps keeps every order) ------------------

local ORDER = {
  {"sort(2)", {"m", "n"}, function(x) return (x:sort(2)) end},
  {"sort(1, descending)", {"m", "n"}, function(x) return (x:sort(1, true)) end},
  {"dn.sort of 3-D along dim 2", {"b", "m", "n"}, function(x) return (dn.sort(x, 2)) end},
  {"topk(2)", {"m", "n"}, function(x) return (x:topk(2)) end},
  {"topk(2, 1, smallest, unsorted)", {"m", "n"}, function(x) return (x:topk(2, 1, false, false)) end},
  {"median()", {"m", "n"}, function(x) return x:median() end},
  {"median(2)", {"m", "n"}, function(x) return (x:median(2)) end},
  {"median(1, keepdim) of 3-D", {"b", "m", "n"}, function(x) return (dn.median(x, 1, true)) end},
  {"quantile(0.3)", {"m", "n"}, function(x) return x:quantile(0.3) end},
  {"quantile({0, 0.4, 0.4, 1}, 2)", {"m", "n"}, function(x) return x:quantile(dn.tensor {0, 0.4, 0.4, 1}, 2) end},
  {"quantile(0.75, 1, keepdim)", {"m", "n"}, function(x) return dn.quantile(x, 0.75, 1, true) end},
  {"quantile(0.6, -1) of a :t()", {"m", "n"}, function(x) return x:t():quantile(0.6, -1) end},
}
for _, c in ipairs(ORDER) do
  row(c[1], function(r, layout)
    return {G.random_leaf(r, shape(sizes(r), c[2]), "distinct", layout)}
  end, function(x) return c[3](x[1]) end)
end

-- --- views and copies ------------------------------------------------------------------------------

local VIEWS = {
  {"view", {"b", "m", "n"}, function(x) return x:view(x:size(1) * x:size(2), x:size(3)) end, {"contiguous"}},
  {"view(-1)", {"m", "n"}, function(x) return x:view(-1) end, {"contiguous"}},
  {"view of 0-dim as {1}", {}, function(x) return x:view(1) end, {"contiguous"}},
  {"reshape", {"b", "m", "n"}, function(x) return x:reshape(x:size(3), -1) end},
  {"reshape {a,b,c} table", {"m", "n"}, function(x) return x:reshape({1, x:size(2), x:size(1)}) end},
  {"transpose(1, 3)", {"b", "m", "n"}, function(x) return x:transpose(1, 3) end},
  {"transpose(-1, -2)", {"b", "m", "n"}, function(x) return x:transpose(-1, -2) end},
  {"t 2-D", {"m", "n"}, function(x) return x:t() end},
  {"t 1-D", {"n"}, function(x) return x:t() end},
  {"permute", {"b", "m", "n"}, function(x) return x:permute(3, 1, 2) end},
  {"permute table", {"b", "m", "n"}, function(x) return x:permute({2, 3, 1}) end},
  {"narrow(2)", {"b", "m", "n"}, function(x) return x:narrow(2, 2, x:size(2) - 1) end},
  {"narrow(-1)", {"b", "m", "n"}, function(x) return x:narrow(-1, 1, 2) end},
  {"select(1)", {"b", "m", "n"}, function(x) return x:select(1, 2) end},
  {"select(-1, -1)", {"b", "m", "n"}, function(x) return x:select(-1, -1) end},
  {"select of 1-D", {"n"}, function(x) return x:select(1, 2) end},
  {"x[i]", {"m", "n"}, function(x) return x[2] end},
  {"unsqueeze(1)", {"m", "n"}, function(x) return x:unsqueeze(1) end},
  {"unsqueeze(-1)", {"m", "n"}, function(x) return x:unsqueeze(-1) end},
  {"squeeze()", {"m", 1, "n"}, function(x) return x:squeeze() end},
  {"squeeze(2)", {"m", 1, "n"}, function(x) return x:squeeze(2) end},
  {"expand {m,1}", {"m", 1}, function(x) return x:expand(3, x:size(1), 4) end},
  {"expand {n}", {"n"}, function(x) return x:expand(2, x:size(1)) end},
  {"expand 0-dim", {}, function(x) return x:expand(2, 3) end},
  {"contiguous", {"m", "n"}, function(x) return x:contiguous() end},
  {"contiguous of a :t()", {"m", "n"}, function(x) return x:t():contiguous() end},
  {"clone", {"b", "m", "n"}, function(x) return x:clone() end},
  {"narrow of a transpose, unsqueezed and expanded", {"m", "n"},
   function(x)
     local t = x:transpose(1, 2)
     return t:narrow(1, 2, t:size(1) - 1):unsqueeze(1):expand(2, t:size(1) - 1, t:size(2))
   end},
  {"two overlapping narrows", {"n", "m"},
   function(x) return x:narrow(1, 1, x:size(1) - 1) + x:narrow(1, 2, x:size(1) - 1) end},
  {"select of a reshape of a permute", {"b", "m", "n"},
   function(x) return x:permute(3, 2, 1):reshape(x:size(3), -1):select(2, 2) end},
}
for _, c in ipairs(VIEWS) do
  row(c[1], function(r, layout)
    return {G.random_leaf(r, shape(sizes(r), c[2]), "any", layout)}
  end, function(x) return c[3](x[1]) end, {layouts = c[4] or ALL_LAYOUTS})
end

-- --- composites ----------------------------------------------------------------------------------------

row("two-layer perceptron from ops", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.b, sz.m}, "any", layout), G.random_leaf(r, {sz.m, sz.k}, "small", layout),
          G.random_leaf(r, {sz.k}, "small", layout), G.random_leaf(r, {sz.k, 2}, "any", layout)}
end, function(x) return (x[1]:matmul(x[2]) + x[3]):tanh():matmul(x[4]):sigmoid() end)
row("softmax from ops", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout)}
end, function(x)
  local e = (x[1] - x[1]:max(2, true)):exp()
  return e / e:sum(2, true)
end)
row("layer norm from ops", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n + 2}, "any", layout)}
end, function(x)
  local centered = x[1] - x[1]:mean(-1, true)
  return centered / (x[1]:var(-1, true, false) + 1e-5):sqrt()
end)

-- --- nn kernels exposed in C (core.nn_*) -------------------------------------------------------------------

-- Pre-activations x @ w^T + b in double (plain Lua), for keeping relu's kink away.
local function linear_ref(xv, wv, bv)
  local rows = type(xv[1]) == "table" and xv or {xv}
  local z = {}
  for i = 1, #rows do
    for j = 1, #wv do
      local s = bv and bv[j] or 0
      for p = 1, #wv[j] do s = s + rows[i][p] * wv[j][p] end
      z[#z + 1] = s
    end
  end
  return z
end

-- Values for x, w, b whose pre-activations are all at least `margin` from 0
-- (a step of eps in any input moves them by less than that).
local function linear_values(r, x_shape, w_shape, with_bias, margin)
  for _ = 1, 200 do
    local xv, wv = G.values(r, x_shape, "any"), G.values(r, w_shape, "small")
    local bv = with_bias and G.values(r, {w_shape[1]}, "small") or nil
    local ok = true
    for _, z in ipairs(linear_ref(xv, wv, bv)) do
      if math.abs(z) < margin then ok = false end
    end
    if ok then return xv, wv, bv end
  end
  error("linear_values: no draw kept the pre-activations away from 0")
end

for _, act in ipairs {"none", "relu", "tanh", "sigmoid"} do
  local act_arg = act ~= "none" and act or nil
  for _, variant in ipairs {"bias", "no bias", "1-D input", "constant input"} do
    row(string.format("core.nn_linear %s, %s", act, variant), function(r, layout)
      local sz = sizes(r)
      local x_shape = variant == "1-D input" and {sz.k} or {sz.b, sz.k}
      local xv, wv, bv = linear_values(r, x_shape, {sz.n, sz.k}, variant ~= "no bias", 0.1)
      local x = variant == "constant input" and G.tensor(xv, layout) or G.leaf(xv, layout)
      return {x, G.leaf(wv, layout), bv and G.leaf(bv, layout) or nil}
    end, function(x) return core.nn_linear(x[1], x[2], x[3], act_arg) end)
  end
end

-- convolutions: x [b, in, h, w] (or [b, in, w]), weight [out, in/groups, kh, kw]; options per row
local CONVS = {
  {"core.nn_conv2d plain", 2, {in_ch = 2, out = 3, k = {2, 3}}, {1, 1, 0, 0, 1, 1, 1}},
  {"core.nn_conv2d stride, padding, dilation", 2, {in_ch = 2, out = 2, k = {2, 2}}, {2, 1, 1, 2, 1, 2, 1}},
  {"core.nn_conv2d groups", 2, {in_ch = 4, out = 2, k = {3, 1}}, {1, 2, 1, 0, 1, 1, 2}},
  {"core.nn_conv2d depthwise", 2, {in_ch = 3, out = 3, k = {2, 2}}, {1, 1, 1, 1, 1, 1, 3}},
  {"core.nn_conv1d", 1, {in_ch = 2, out = 4, k = {3}}, {2, 1, 2, 2}},
}
for _, c in ipairs(CONVS) do
  local name, n, sz, o = c[1], c[2], c[3], c[4]
  for _, bias in ipairs {true, false} do
    row(string.format("%s, bias %s", name, tostring(bias)), function(r, layout)
      local b = r:int(1, 2)
      local x_shape = n == 2 and {b, sz.in_ch, r:int(4, 5), r:int(4, 6)} or {b, sz.in_ch, r:int(6, 8)}
      local w_shape = {sz.out, sz.in_ch // o[#o]}
      for d = 1, n do w_shape[d + 2] = sz.k[d] end
      return {G.random_leaf(r, x_shape, "any", layout), G.random_leaf(r, w_shape, "any", layout),
              bias and G.random_leaf(r, {sz.out}, "any", layout) or nil}
    end, function(x)
      if n == 2 then return core.nn_conv2d(x[1], x[2], x[3], table.unpack(o)) end
      return core.nn_conv1d(x[1], x[2], x[3], table.unpack(o))
    end)
  end
end

local ACTIVATIONS = {
  {"nn_leaky_relu default slope", function(x) return core.nn_leaky_relu(x) end, "away0"},
  {"nn_leaky_relu 0.2", function(x) return core.nn_leaky_relu(x, 0.2) end, "away0"},
  {"nn_leaky_relu -0.5", function(x) return core.nn_leaky_relu(x, -0.5) end, "away0"},
  {"nn_elu", function(x) return core.nn_elu(x) end, "away0"},
  {"nn_elu 0.7", function(x) return core.nn_elu(x, 0.7) end, "away0"},
  {"nn_selu", function(x) return core.nn_selu(x) end, "away0"},
  {"nn_gelu exact", function(x) return core.nn_gelu(x) end, "any"},
  {"nn_gelu 'none'", function(x) return core.nn_gelu(x, "none") end, "any"},
  {"nn_gelu tanh", function(x) return core.nn_gelu(x, true) end, "any"},
  {"nn_gelu 'tanh'", function(x) return core.nn_gelu(x, "tanh") end, "any"},
}
for _, c in ipairs(ACTIVATIONS) do
  for _, p in ipairs {{"b", "m", "n"}, {}} do
    row(c[1] .. " " .. pattern_str(p), function(r, layout)
      return {G.random_leaf(r, shape(sizes(r), p), c[3], layout)}
    end, function(x) return c[2](x[1]) end)
  end
end

for _, kernel in ipairs {"nn_softmax", "nn_log_softmax"} do
  for _, dim in ipairs {1, 2, 3, -1} do
    row(string.format("%s dim %d", kernel, dim), function(r, layout)
      local sz = sizes(r)
      return {G.random_leaf(r, {sz.b, sz.m, sz.n}, "any", layout)}
    end, function(x) return core[kernel](x[1], dim) end)
  end
  row(kernel .. " 1-D", function(r, layout)
    return {G.random_leaf(r, {sizes(r).n + 2}, "any", layout)}
  end, function(x) return core[kernel](x[1], 1) end)
end

-- Pooling: random sizes with distinct values ("distinct": no ties for max within eps).
local POOLS = {
  {"nn_max_pool2d 2x2", {"b", "m", 4, 5}, function(x) return core.nn_max_pool2d(x, 2, 2, 2, 2, 0, 0, 1, 1, false) end},
  {"nn_max_pool2d 3x2 pad dilation ceil", {"b", "m", 5, 6},
    function(x) return core.nn_max_pool2d(x, 3, 2, 2, 1, 1, 1, 1, 2, true) end},
  {"nn_max_pool2d unbatched", {"m", 5, 5}, function(x) return core.nn_max_pool2d(x, 3, 3, 2, 2, 1, 1, 1, 1, true) end},
  {"nn_avg_pool2d pad ceil", {"b", "m", 5, 6},
    function(x) return core.nn_avg_pool2d(x, 3, 3, 2, 2, 1, 1, true, true) end},
  {"nn_avg_pool2d pad excluded", {"b", "m", 5, 6},
    function(x) return core.nn_avg_pool2d(x, 3, 2, 2, 2, 1, 1, true, false) end},
  {"nn_adaptive_avg_pool2d", {"b", "m", 5, 7}, function(x) return core.nn_adaptive_avg_pool2d(x, 3, 4) end},
  {"nn_max_pool1d", {"b", "m", 9}, function(x) return core.nn_max_pool1d(x, 3, 2, 1, 2, true) end},
  {"nn_avg_pool1d", {"b", "m", 9}, function(x) return core.nn_avg_pool1d(x, 3, 2, 1, true, false) end},
}
for _, c in ipairs(POOLS) do
  row(c[1], function(r, layout)
    return {G.random_leaf(r, shape(sizes(r), c[2]), "distinct", layout)}
  end, function(x) return c[3](x[1]) end)
end

-- Batch normalization: x [b, m, ...], channels m ([5, m] for 2-D: with 2 values per channel the output
-- is +-1, too flat for finite differences). The running statistics are constants (variance > 0),
-- updated in place by the training rows, whose output does not read them.
local BATCH_NORMS = {
  {"train", {5, "m"}, true, true}, {"train", {"b", "m", "n"}, true, true},
  {"train", {"b", "m", "n", "k"}, true, true}, {"train", {"b", "m", "n", "k"}, false, true},
  {"eval", {"b", "m", "n"}, true, false}, {"eval", {"b", "m", "n", "k"}, false, false},
}
for _, c in ipairs(BATCH_NORMS) do
  local mode, pattern, affine, training = c[1], c[2], c[3], c[4]
  row(string.format("nn_batch_norm %s %s%s", mode, pattern_str(pattern), affine and " affine" or ""),
    function(r, layout)
      local sz = sizes(r)
      local ch = {sz.m}
      return {G.random_leaf(r, shape(sz, pattern), "any", layout),
              affine and G.random_leaf(r, ch, "any", layout) or false,
              affine and G.random_leaf(r, ch, "any", layout) or false,
              G.tensor(G.values(r, ch, "any"), layout),
              G.tensor(G.values(r, ch, function(g) return 0.5 + g:float() end), layout)}
    end, function(x)
      return core.nn_batch_norm(x[1], x[2] or nil, x[3] or nil, x[4], x[5], training, 0.1, 1e-5)
    end)
end

-- Layer norm over the last dims of x; group norm of x [b, 2m, ...] in groups (2: m channels each, or 2m:
-- one channel each). Affine parameters of the normalized shape / [C], or none.
local ROW_NORMS = {
  {"nn_layer_norm last dim", {"b", "m", 6}, function() return {6} end},
  {"nn_layer_norm last two dims", {"b", "m", "n"}, function(sz) return {sz.m, sz.n} end},
  {"nn_group_norm 2 groups", {"b", "c", "n"}, 2},
  {"nn_group_norm a group per channel", {"b", "c", "n", "k"}, "c"},
}
for _, c in ipairs(ROW_NORMS) do
  for _, affine in ipairs {true, false} do
    row(string.format("%s%s", c[1], affine and " affine" or ""), function(r, layout)
      local sz = sizes(r)
      sz.c = 2 * sz.m
      local layer = type(c[3]) == "function"
      local pshape = layer and c[3](sz) or {sz.c}
      local groups = not layer and (c[3] == "c" and sz.c or c[3]) or nil
      local inputs = {G.random_leaf(r, shape(sz, c[2]), "any", layout),
                      affine and G.random_leaf(r, pshape, "any", layout) or false,
                      affine and G.random_leaf(r, pshape, "any", layout) or false}
      return inputs, {layer = layer, pshape = pshape, groups = groups}
    end, function(x, ctx)
      if ctx.layer then return core.nn_layer_norm(x[1], ctx.pshape, x[2] or nil, x[3] or nil, 1e-5) end
      return core.nn_group_norm(x[1], ctx.groups, x[2] or nil, x[3] or nil, 1e-5)
    end)
  end
end

-- Class targets 1..classes for `n` rows.
local function targets(r, n, classes)
  local t = {}
  for i = 1, n do t[i] = r:int(1, classes) end
  return G.ints(t)
end

for _, reduction in ipairs {false, "mean", "sum", "none"} do
  local rname = reduction or "default"
  for _, smoothing in ipairs {0, 0.1} do
    row(string.format("core.nn_cross_entropy smoothing %g, reduction %s", smoothing, rname), function(r, layout)
      local sz = sizes(r)
      return {G.random_leaf(r, {sz.m + 1, sz.n + 1}, "any", layout), targets(r, sz.m + 1, sz.n + 1)}
    end, function(x) return core.nn_cross_entropy(x[1], x[2], smoothing, reduction or nil) end)
  end
  row("core.nn_nll_loss reduction " .. rname, function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.m + 1, sz.n}, "any", layout), targets(r, sz.m + 1, sz.n)}
  end, function(x) return core.nn_nll_loss(x[1], x[2], reduction or nil) end)
  row("core.nn_mse_loss reduction " .. rname, function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.random_leaf(r, {sz.m, sz.n}, "any", layout)}
  end, function(x) return core.nn_mse_loss(x[1], x[2], reduction or nil) end)
  row("core.nn_bce_with_logits reduction " .. rname, function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.random_leaf(r, {sz.m, sz.n}, "prob", layout)}
  end, function(x) return core.nn_bce_with_logits(x[1], x[2], reduction or nil) end)
end
row("core.nn_bce_with_logits of log_softmax, constant targets", function(r, layout)
  local sz = sizes(r)
  return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.tensor(G.values(r, {sz.m, sz.n}, "prob"), layout)}
end, function(x) return core.nn_bce_with_logits(core.nn_log_softmax(x[1], 2), x[2], "sum") end)

-- --- running the table -------------------------------------------------------------------------------------

-- One busted test per row and layout.
local function run_rows(list)
  for _, rw in ipairs(list) do
    for _, layout in ipairs(rw.layouts) do
      local name = rw.name .. " (" .. layout .. ")"
      it(name, function()
        local inputs, context = rw.build(G.rng(seed_of(name)), layout)
        G.assert(name, function(x) return rw.fn(x, context) end, inputs, rw.opts)
      end)
    end
  end
end

describe("gradient check (central finite differences) of", function() run_rows(ROWS) end)

-- --- the dropnet.nn layers and losses --------------------------------------------------------------------------

local has_nn, nn = pcall(require, "dropnet.nn")

-- Sets a module's parameter to given values (no history).
local function set_param(p, values)
  dn.no_grad(function() p:copy_(dn.tensor(values)) end)
end

if has_nn then
  -- nn.Linear with each activation option; its parameters are inputs of the check.
  for _, act in ipairs {"none", "relu", "tanh", "sigmoid"} do
    for _, bias in ipairs {true, false} do
      nn_row(string.format("nn.Linear activation %s, bias %s", act, tostring(bias)), function(r, layout)
        local sz = sizes(r)
        local m = nn.Linear(sz.k, sz.n, {bias = bias, activation = act ~= "none" and act or nil})
        local xv, wv, bv = linear_values(r, {sz.b, sz.k}, {sz.n, sz.k}, bias, 0.1)
        set_param(m.weight, wv)
        if bias then set_param(m.bias, bv) end
        local inputs = {G.leaf(xv, layout)}
        for _, p in ipairs(m:parameters()) do inputs[#inputs + 1] = p end
        return inputs, m
      end, function(x, m) return m(x[1]) end)
    end
  end

  -- nn.Conv2d with padding "same" (an odd total: the trimmed output), nn.Conv1d; parameters are inputs.
  for _, spec in ipairs {{"nn.Conv2d padding same, kernel {2, 3}", function() return nn.Conv2d(2, 3, {2, 3},
                            {padding = "same"}) end, {2, 2, 4, 5}},
                         {"nn.Conv2d stride 2, groups 2", function() return nn.Conv2d(2, 4, 3,
                            {stride = 2, padding = 1, groups = 2}) end, {2, 2, 5, 5}},
                         {"nn.Conv1d padding same, dilation 2", function() return nn.Conv1d(2, 3, 2,
                            {padding = "same", dilation = 2}) end, {2, 2, 6}}} do
    nn_row(spec[1], function(r, layout)
      local m = spec[2]()
      local inputs = {G.random_leaf(r, spec[3], "any", layout)}
      for _, p in ipairs(m:parameters()) do inputs[#inputs + 1] = p end
      return inputs, m
    end, function(x, m) return m(x[1]) end)
  end

  -- Sequential: Linear + ReLU fused into one kernel call, then another Linear.
  nn_row("nn.Sequential(Linear, ReLU, Linear)", function(r, layout)
    local sz = sizes(r)
    local m = nn.Sequential(nn.Linear(sz.k, sz.m), nn.ReLU(), nn.Linear(sz.m, 2))
    local xv, wv, bv = linear_values(r, {sz.b, sz.k}, {sz.m, sz.k}, true, 0.1)
    set_param(m[1].weight, wv)
    set_param(m[1].bias, bv)
    local inputs = {G.leaf(xv, layout)}
    for _, p in ipairs(m:parameters()) do inputs[#inputs + 1] = p end
    return inputs, m
  end, function(x, m) return m(x[1]) end)
  nn_row("nn.Sequential(Flatten, Linear, Tanh, Linear, Sigmoid)", function(r, layout)
    local sz = sizes(r)
    local m = nn.Sequential(nn.Flatten(), nn.Linear(sz.m * sz.n, sz.k), nn.Tanh(), nn.Linear(sz.k, 2), nn.Sigmoid())
    local inputs = {G.random_leaf(r, {sz.b, sz.m, sz.n}, "any", layout)}
    for _, p in ipairs(m:parameters()) do inputs[#inputs + 1] = p end
    return inputs, m
  end, function(x, m) return m(x[1]) end)
  nn_row("nn.Sequential(Linear, GELU, Linear, LogSoftmax) into NLLLoss", function(r, layout)
    local sz = sizes(r)
    local m = nn.Sequential(nn.Linear(sz.k, sz.m), nn.GELU(), nn.Linear(sz.m, 3), nn.LogSoftmax(2))
    local inputs = {G.random_leaf(r, {sz.b, sz.k}, "any", layout)}
    for _, p in ipairs(m:parameters()) do inputs[#inputs + 1] = p end
    return inputs, {model = m, loss = nn.NLLLoss(), target = targets(r, sz.b, 3)}
  end, function(x, c) return c.loss(c.model(x[1]), c.target) end)

  -- a layer written in Lua by composing ops: its backward comes from autograd
  nn_row("a Module subclass composing ops", function(r, layout)
    local Scaled = nn.Module:extend("ScaledTanh")
    function Scaled:init(n)
      self.scale = nn.Parameter(dn.tensor(G.values(r, {n}, "any")))
      self.shift = nn.Parameter(dn.tensor(G.values(r, {n}, "small")))
    end
    function Scaled:forward(x) return (x * self.scale + self.shift):tanh() end
    local sz = sizes(r)
    local m = Scaled(sz.n)
    local inputs = {G.random_leaf(r, {sz.m, sz.n}, "any", layout)}
    for _, p in ipairs(m:parameters()) do inputs[#inputs + 1] = p end
    return inputs, m
  end, function(x, m) return m(x[1]) end)

  local MODULES = {
    {"nn.ReLU", function() return nn.ReLU() end, "away0"},
    {"nn.LeakyReLU()", function() return nn.LeakyReLU() end, "away0"},
    {"nn.LeakyReLU(0.2)", function() return nn.LeakyReLU(0.2) end, "away0"},
    {"nn.ELU()", function() return nn.ELU() end, "away0"},
    {"nn.ELU{alpha = 0.5}", function() return nn.ELU({alpha = 0.5}) end, "away0"},
    {"nn.SELU", function() return nn.SELU() end, "away0"},
    {"nn.GELU()", function() return nn.GELU() end, "any"},
    {"nn.GELU('tanh')", function() return nn.GELU("tanh") end, "any"},
    {"nn.Sigmoid", function() return nn.Sigmoid() end, "any"},
    {"nn.Tanh", function() return nn.Tanh() end, "any"},
    {"nn.Softmax()", function() return nn.Softmax() end, "any"},
    {"nn.Softmax(1)", function() return nn.Softmax(1) end, "any"},
    {"nn.LogSoftmax(2)", function() return nn.LogSoftmax(2) end, "any"},
    {"nn.Flatten", function() return nn.Flatten() end, "any"},
    {"nn.Flatten(1)", function() return nn.Flatten(1) end, "any"},
    {"nn.Identity", function() return nn.Identity() end, "any"},
  }
  for _, c in ipairs(MODULES) do
    nn_row(c[1], function(r, layout)
      local sz = sizes(r)
      return {G.random_leaf(r, {sz.b, sz.m, sz.n}, c[3], layout)}, c[2]()
    end, function(x, m) return m(x[1]) end)
  end

  for _, opts in ipairs {false, {label_smoothing = 0.1}, {reduction = "sum"},
                         {reduction = "none", label_smoothing = 0.2}} do
    local desc = opts and (opts.reduction or "mean") .. ", smoothing " .. (opts.label_smoothing or 0) or "defaults"
    nn_row("nn.CrossEntropyLoss " .. desc, function(r, layout)
      local sz = sizes(r)
      return {G.random_leaf(r, {sz.m + 1, sz.n + 1}, "any", layout), targets(r, sz.m + 1, sz.n + 1)},
        nn.CrossEntropyLoss(opts or nil)
    end, function(x, loss) return loss(x[1], x[2]) end)
  end
  for _, reduction in ipairs {"mean", "sum", "none"} do
    nn_row("nn.NLLLoss " .. reduction, function(r, layout)
      local sz = sizes(r)
      return {G.random_leaf(r, {sz.m + 1, sz.n}, "any", layout), targets(r, sz.m + 1, sz.n)},
        nn.NLLLoss({reduction = reduction})
    end, function(x, loss) return loss(x[1], x[2]) end)
    nn_row("nn.MSELoss " .. reduction, function(r, layout)
      local sz = sizes(r)
      return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.random_leaf(r, {sz.m, sz.n}, "any", layout)},
        nn.MSELoss(reduction)
    end, function(x, loss) return loss(x[1], x[2]) end)
    nn_row("nn.BCEWithLogitsLoss " .. reduction, function(r, layout)
      local sz = sizes(r)
      return {G.random_leaf(r, {sz.m, sz.n}, "any", layout), G.random_leaf(r, {sz.m, sz.n}, "prob", layout)},
        nn.BCEWithLogitsLoss({reduction = reduction})
    end, function(x, loss) return loss(x[1], x[2]) end)
  end
  nn_row("nn.functional.linear + cross_entropy", function(r, layout)
    local sz = sizes(r)
    return {G.random_leaf(r, {sz.b, sz.k}, "any", layout), G.random_leaf(r, {3, sz.k}, "small", layout),
            G.random_leaf(r, {3}, "small", layout), targets(r, sz.b, 3)}
  end, function(x)
    return nn.functional.cross_entropy(nn.functional.linear(x[1], x[2], x[3], "tanh"), x[4],
      {label_smoothing = 0.05})
  end)
end

describe("gradient check of the dropnet.nn layers and losses", function()
  if not has_nn then
    it("dropnet.nn", function() pending("dropnet.nn not available: " .. tostring(nn)) end)
    return
  end
  run_rows(NN_ROWS)
end)

-- --- the checker fails when it should ---------------------------------------------------------------------------

describe("the gradient checker", function()
  local r = G.rng(SEED)

  it("reports a backward that differs from the forward (x*x computed as x:detach()*x)", function()
    local x = G.random_leaf(r, {3, 4}, "away0", "transposed")
    local ok, report = G.check(function(i) return i[1]:detach() * i[1] end, {x})
    assert.is_false(ok)
    assert.truthy(report:find("backward", 1, true))
    assert.truthy(report:find("finite differences", 1, true))
    -- and the same row with the true product passes
    assert.is_true((G.check(function(i) return i[1] * i[1] end, {x})))
  end)

  it("reports a 5% error in a backward", function()
    local x = G.random_leaf(r, {3, 4}, "away0")
    -- forward 1.05 x^2, backward 2x
    local ok, report = G.check(function(i)
      local d = i[1]:detach()
      return i[1] * i[1] + d * d * 0.05
    end, {x})
    assert.is_false(ok)
    assert.truthy(report:find("element", 1, true))
  end)

  it("reports an input requiring grad that gets no gradient", function()
    local a, b = G.random_leaf(r, {2, 3}, "any"), G.random_leaf(r, {2, 3}, "any")
    local ok, report = G.check(function(i) return i[1] * i[2]:detach() end, {a, b})
    assert.is_false(ok)
    assert.truthy(report:find("input 2 (shape {2,3}) requires grad but got no gradient", 1, true))
  end)

  it("reports a gradient on an input that does not require grad", function()
    local a, c = G.random_leaf(r, {2, 3}, "any"), G.tensor(G.values(r, {2, 3}))
    local ok, report = G.check(function(i)
      i[2].grad = dn.ones(2, 3)       -- a stray gradient, as a broken engine might leave
      return i[1] * i[2]
    end, {a, c})
    assert.is_false(ok)
    assert.truthy(report:find("input 2 does not require grad but got a gradient", 1, true))
  end)

  it("reports a result that records nothing", function()
    local x = G.random_leaf(r, {2, 2}, "any")
    local ok, report = G.check(function(i) return i[1]:detach():exp() end, {x})
    assert.is_false(ok)
    assert.equal("the result does not require grad: nothing was recorded", report)
  end)

  it("leaves the inputs' values as they were", function()
    local x = G.random_leaf(r, {3, 2}, "any", "strided")
    local before = x:totable()
    G.check(function(i) return i[1]:tanh() end, {x})
    H.assert_same(x, before)
  end)
end)
