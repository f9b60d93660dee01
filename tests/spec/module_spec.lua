-- The nn Module protocol: classes, registration, traversal order, modes,
-- state dicts, printing, containers and their errors.
local dn = require "dropnet"
local nn = require "dropnet.nn"
local H = require "helpers"

local function names_of(pairs_list)
  local out = {}
  for i, p in ipairs(pairs_list) do out[i] = p[1] end
  return out
end

local function shapes_of(list)
  local out = {}
  for i, t in ipairs(list) do out[i] = table.concat(t:shape(), "x") end
  return out
end

-- A small user layer used throughout: a Linear child, its own parameter and a buffer.
local Scaled = nn.Module:extend("Scaled")
function Scaled:init(n_in, n_out)
  self.fc = nn.Linear(n_in, n_out)
  self.scale = nn.Parameter(dn.ones(n_out))
  self:register_buffer("steps", dn.zeros(1))
end
function Scaled:forward(x)
  return self.fc(x) * self.scale
end

describe("nn.Module classes", function()
  it("are reached as dn.nn and as require 'dropnet.nn'", function()
    assert.are.equal(nn, dn.nn)
    assert.are.equal(nn.Linear, dn.nn.Linear)
    assert.is_nil(rawget(_G, "nn"))
  end)

  it("extend makes a class whose call runs init and whose instances call forward", function()
    local Double = nn.Module:extend("Double")
    function Double:init(k) self.k = k end
    function Double:forward(x) return x * self.k end
    local m = Double(2)
    assert.is_true(nn.is_module(m))
    assert.is_false(nn.is_module(Double))
    assert.are.equal(2, m.k)
    H.assert_same(m(dn.tensor({1, 2})), {2, 4})
    assert.are.equal("Double()", tostring(m))
    assert.is_true(m.training)
  end)

  it("subclasses inherit methods and can call the parent's init", function()
    local Base = nn.Module:extend("Base")
    function Base:init(n) self.n = n end
    function Base:describe() return "base " .. self.n end
    local Sub = Base:extend("Sub")
    function Sub:init(n, extra)
      Base.init(self, n)
      self.extra = extra
    end
    local s = Sub(3, "x")
    assert.are.equal("base 3", s:describe())
    assert.are.equal("x", s.extra)
    assert.are.equal(Base, Sub.super)
    assert.is_true(nn.isinstance(s, Sub))
    assert.is_true(nn.isinstance(s, Base))
    assert.is_true(nn.isinstance(s, nn.Module))
    assert.is_false(nn.isinstance(s, nn.Linear))
    assert.is_true(nn.isinstance(nn.Linear(2, 2), nn.Module))
  end)

  it("a module without forward says so", function()
    local m = nn.Module:extend("NoForward")()
    H.assert_error(function() m(dn.zeros(1)) end, {"NoForward: forward is not defined"})
  end)

  it("extend checks its arguments", function()
    H.assert_error(function() nn.Module:extend() end, {"extend: a class name (string) expected (got nil)"})
    H.assert_error(function() nn.Linear(2, 2):extend("X") end, {"extend: call it on a class"})
  end)
end)

describe("nn.Module registration", function()
  it("assignment registers parameters and children; plain values stay plain fields", function()
    local m = Scaled(3, 2)
    m.note = "hello"
    m.cache = dn.zeros(2)                      -- a plain tensor is a field, not a parameter
    assert.are.equal("hello", m.note)
    -- a module's own parameters come before its children's (PyTorch's order)
    assert.are.same({"scale", "fc.weight", "fc.bias"}, names_of(m:named_parameters()))
    assert.are.same({"steps"}, names_of(m:named_buffers()))
    assert.is_true(nn.is_parameter(m.scale))
    assert.is_false(nn.is_parameter(m.cache))
    assert.is_true(m.scale.requires_grad)
  end)

  it("parameters() follows registration order, own parameters before children's", function()
    local Net = nn.Module:extend("Net")
    function Net:init()
      self.b = nn.Linear(4, 3)
      self.gain = nn.Parameter(dn.ones(3))
      self.a = nn.Linear(3, 2, {bias = false})
    end
    local m = Net()
    assert.are.same({"gain", "b.weight", "b.bias", "a.weight"}, names_of(m:named_parameters()))
    assert.are.same({"3", "3x4", "3", "2x3"}, shapes_of(m:parameters()))
    assert.are.equal(4, #m:parameters())
  end)

  it("a shared parameter or module is listed once", function()
    local shared = nn.Linear(2, 2)
    local m = nn.Sequential(shared, nn.ReLU(), shared)
    assert.are.same({"1.weight", "1.bias"}, names_of(m:named_parameters()))
    assert.are.equal(3, #m:children())
    assert.are.equal(3, #m:modules())           -- self, the Linear once, the ReLU
  end)

  it("reassigning and removing members", function()
    local m = Scaled(2, 2)
    m.scale = nil
    assert.is_nil(m.scale)
    assert.are.same({"fc.weight", "fc.bias"}, names_of(m:named_parameters()))
    m.fc = nn.Linear(2, 5)
    assert.are.same({"fc.weight", "fc.bias"}, names_of(m:named_parameters()))
    assert.are.same({5, 2}, m.fc.weight:shape())
    m.fc = nil
    assert.are.same({}, m:parameters())
    m.extra = 5
    m.extra = nn.Identity()                      -- a field becomes a child
    assert.are.equal(1, #m:children())
  end)

  it("a child replaced keeps its place, so a Sequential runs it where it was", function()
    local seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    seq[2] = nn.Tanh()
    local names = {}
    for i, c in ipairs(seq:named_children()) do names[i] = c[1] .. ":" .. c[2].__name end
    assert.are.same({"1:Linear", "2:Tanh", "3:Linear"}, names)
    assert.are.same({1, 1}, seq(dn.ones(1, 2)):shape())
  end)

  it("assigning a non-Parameter to a parameter's name is an error", function()
    local m = nn.Linear(2, 2)
    H.assert_error(function() m.weight = dn.zeros(2, 2) end,
      {"Linear: cannot assign a plain tensor to parameter 'weight' (nn.Parameter or nil expected)"})
    H.assert_error(function() m.weight = 3 end, {"cannot assign 3 to parameter 'weight'"})
    local s = nn.Sequential(nn.ReLU())
    H.assert_error(function() s[1] = "relu" end, {"cannot assign \"relu\" to child module '1'"})
  end)

  it("register_parameter, register_buffer and add_module", function()
    local m = nn.Module()
    local w = m:register_parameter("w", dn.zeros(2))
    assert.is_true(nn.is_parameter(w))
    assert.is_true(w.requires_grad)
    m:register_buffer("running", dn.ones(2))
    m:register_buffer("scratch", dn.ones(3), false)
    m:add_module("head", nn.Linear(2, 1))
    assert.are.same({"w", "head.weight", "head.bias"}, names_of(m:named_parameters()))
    assert.are.same({"running", "scratch"}, names_of(m:named_buffers()))
    local keys = getmetatable(m:state_dict()).keys
    assert.are.same({"w", "running", "head.weight", "head.bias"}, keys)   -- scratch is not persistent
    H.assert_error(function() m:register_parameter("a.b", dn.zeros(1)) end,
      {"name must be a non-empty string without '.'"})
    H.assert_error(function() m:register_parameter("p", 3) end, {"a tensor or nil expected for 'p' (got 3)"})
    H.assert_error(function() m:add_module("x", 3) end, {"add_module: a module expected for 'x' (got 3)"})
    H.assert_error(function() nn.Parameter({1, 2}) end, {"Parameter: a tensor expected (got table)"})
  end)

  it("nn.Parameter detaches a tensor with a history", function()
    local a = dn.ones(2):requires_grad_()
    local b = a * 2
    local p = nn.Parameter(b)
    assert.is_true(p.is_leaf)
    assert.is_true(p.requires_grad)
    H.assert_same(p, {2, 2})
    local frozen = nn.Parameter(dn.ones(2), false)
    assert.is_false(frozen.requires_grad)
  end)

  it("children, named_children, modules and named_modules", function()
    local inner = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    local m = nn.Sequential(nn.Linear(3, 2), inner)
    assert.are.same({1, 2}, names_of(m:named_children()))
    assert.are.same({"", "1", "2", "2.1", "2.2"}, names_of(m:named_modules()))
    assert.are.equal(inner, m:children()[2])
    local visited = {}
    m:apply(function(mod) visited[#visited + 1] = mod.__name end)
    assert.are.same({"Linear", "Linear", "Tanh", "Sequential", "Sequential"}, visited)
  end)
end)

describe("nn.Module modes and gradients", function()
  it("train and eval reach every module; model.training tells the mode", function()
    local m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Linear(2, 1)))
    assert.is_true(m.training)
    assert.are.equal(m, m:eval())
    for _, mod in ipairs(m:modules()) do assert.is_false(mod.training) end
    m[2]:train()
    assert.is_false(m.training)
    assert.is_true(m[2][1].training)
    m:train()
    for _, mod in ipairs(m:modules()) do assert.is_true(mod.training) end
    m:train(false)
    assert.is_false(m[2][2].training)
    H.assert_error(function() m:train("yes") end, {"Sequential.train: mode must be true or false (got \"yes\")"})
  end)

  it("zero_grad removes gradients, or zeroes them in place", function()
    local m = nn.Linear(3, 2)
    local x = dn.tensor({{1, 2, 3}})
    m(x):sum():backward()
    assert.is_not_nil(m.weight.grad)
    m:zero_grad(false)
    H.assert_same(m.weight.grad, {{0, 0, 0}, {0, 0, 0}})
    H.assert_same(m.bias.grad, {0, 0})
    m:zero_grad()
    assert.is_nil(m.weight.grad)
    assert.is_nil(m.bias.grad)
  end)

  it("requires_grad_(false) freezes every parameter", function()
    local m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    m:requires_grad_(false)
    for _, p in ipairs(m:parameters()) do assert.is_false(p.requires_grad) end
    m:requires_grad_()
    for _, p in ipairs(m:parameters()) do assert.is_true(p.requires_grad) end
  end)

  it("a user module composed of tensor ops gets its backward for free", function()
    -- y = sum(tanh(x @ w^T + b) * scale): gradients checked against the closed form.
    local Layer = nn.Module:extend("TanhLayer")
    function Layer:init()
      self.w = nn.Parameter(dn.tensor({{0.5, -0.25}, {0.1, 0.3}, {-0.4, 0.2}}))   -- [3, 2]
      self.b = nn.Parameter(dn.tensor({0.1, -0.2, 0.05}))
      self.scale = nn.Parameter(dn.tensor({1.5, -0.5, 2.0}))
    end
    function Layer:forward(x)
      return (x:matmul(self.w:t()) + self.b):tanh() * self.scale
    end
    local m = Layer()
    local xv = {{1.0, 2.0}, {-0.5, 0.25}}
    m(dn.tensor(xv)):sum():backward()
    local w, b, s = m.w:totable(), m.b:totable(), m.scale:totable()
    local dw, db, ds = {{0, 0}, {0, 0}, {0, 0}}, {0, 0, 0}, {0, 0, 0}
    for n = 1, 2 do
      for j = 1, 3 do
        local z = b[j] + xv[n][1] * w[j][1] + xv[n][2] * w[j][2]
        local e = math.exp(2 * z)
        local t = (e - 1) / (e + 1)   -- tanh(z): math.tanh is gone since Lua 5.3
        ds[j] = ds[j] + t
        local dz = s[j] * (1 - t * t)
        db[j] = db[j] + dz
        dw[j][1] = dw[j][1] + dz * xv[n][1]
        dw[j][2] = dw[j][2] + dz * xv[n][2]
      end
    end
    H.assert_close(m.w.grad, dw, 1e-5)
    H.assert_close(m.b.grad, db, 1e-5)
    H.assert_close(m.scale.grad, ds, 1e-5)
  end)

  it("a user module containing nn layers trains its own and its children's parameters", function()
    local m = Scaled(3, 2)
    m(dn.tensor({{1, -1, 0.5}})):sum():backward()
    for _, p in ipairs(m:named_parameters()) do
      assert.is_not_nil(p[2].grad, p[1] .. " has no gradient")
    end
    assert.is_nil(m.steps.grad)
  end)
end)

describe("nn.Module state dicts", function()
  local function model() return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), Scaled(4, 2)) end

  it("state_dict lists parameters and buffers in model order, detached, sharing storage", function()
    local m = model()
    local sd = m:state_dict()
    local keys = {}
    for k in pairs(sd) do keys[#keys + 1] = k end
    assert.are.same({"1.weight", "1.bias", "3.scale", "3.steps", "3.fc.weight", "3.fc.bias"}, keys)
    assert.are.same(keys, getmetatable(sd).keys)
    assert.is_false(sd["1.weight"].requires_grad)
    H.assert_same(sd["1.weight"], m[1].weight)
    sd["3.steps"]:fill_(7)                        -- same storage as the model's buffer
    H.assert_same(m[3].steps, {7})
    sd.extra = dn.zeros(1)                        -- keys added later come after the model's
    sd["1.bias"] = nil
    keys = {}
    for k in pairs(sd) do keys[#keys + 1] = k end
    assert.are.same({"1.weight", "3.scale", "3.steps", "3.fc.weight", "3.fc.bias", "extra"}, keys)
  end)

  it("load_state_dict round trip copies every value in place", function()
    local a, b = model(), model()
    local weight_before = b[1].weight
    a[3].steps:fill_(3)
    local result = b:load_state_dict(a:state_dict())
    assert.are.same({}, result.missing_keys)
    assert.are.same({}, result.unexpected_keys)
    for name, t in pairs(a:state_dict()) do H.assert_same(b:state_dict()[name], t, name) end
    assert.are.equal(weight_before, b[1].weight)  -- the same tensor object, updated in place
    assert.is_true(b[1].weight.requires_grad)
    assert.is_true(b[1].weight.is_leaf)
  end)

  it("load_state_dict accepts nested tables of numbers", function()
    local m = nn.Linear(2, 2)
    m:load_state_dict({weight = {{1, 2}, {3, 4}}, bias = {0.5, -0.5}})
    H.assert_same(m.weight, {{1, 2}, {3, 4}})
    H.assert_same(m.bias, {0.5, -0.5})
  end)

  it("strict loading names missing and unexpected keys, and copies nothing", function()
    local m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    local before = m[1].weight:clone()
    local err = H.assert_error(function()
      m:load_state_dict({["1.weight"] = dn.zeros(2, 2), ["2.weight"] = dn.zeros(1, 2), extra = dn.zeros(1),
                         ["2.bais"] = dn.zeros(1)})
    end, {})
    assert.are.equal('load_state_dict (Sequential): missing keys "1.bias", "2.bias"; '
      .. 'unexpected keys "2.bais", "extra"', H.strip_position(err))
    H.assert_same(m[1].weight, before)
  end)

  it("shape mismatches are errors even when not strict", function()
    local m = nn.Linear(3, 2)
    local err = H.assert_error(function()
      m:load_state_dict({weight = dn.zeros(3, 2), bias = dn.zeros(2)}, {strict = false})
    end, {})
    assert.are.equal('load_state_dict (Linear): size mismatch for "weight": the state dict has shape [3,2], '
      .. 'the model [2,3]', H.strip_position(err))
    H.assert_error(function() m:load_state_dict({weight = "w", bias = dn.zeros(2)}) end,
      {'value for "weight" must be a tensor (got "w")'})
    H.assert_error(function() m:load_state_dict(5) end,
      {"load_state_dict (Linear): a table of tensors expected (got 5)"})
    H.assert_error(function() m:load_state_dict({}, {strict = false, strct = 1}) end, {"unknown option 'strct'"})
  end)

  it("non-strict loading reports missing and unexpected keys", function()
    local m = nn.Linear(2, 2)
    local r = m:load_state_dict({weight = dn.ones(2, 2), other = dn.ones(1)}, {strict = false})
    assert.are.same({"bias"}, r.missing_keys)
    assert.are.same({"other"}, r.unexpected_keys)
    H.assert_same(m.weight, {{1, 1}, {1, 1}})
  end)
end)

describe("nn.Module printing", function()
  it("prints a model like PyTorch does", function()
    local m = nn.Sequential(
      nn.Flatten(),
      nn.Linear(784, 256), nn.ReLU(),
      nn.Sequential(nn.Linear(256, 64, {bias = false}), nn.LeakyReLU(0.2)),
      nn.Linear(64, 10, {activation = "tanh"}), nn.LogSoftmax(-1))
    assert.are.equal([[
Sequential(
  (1): Flatten(start_dim=2, end_dim=-1)
  (2): Linear(in_features=784, out_features=256, bias=true)
  (3): ReLU()
  (4): Sequential(
    (1): Linear(in_features=256, out_features=64, bias=false)
    (2): LeakyReLU(negative_slope=0.2)
  )
  (5): Linear(in_features=64, out_features=10, bias=true, activation=tanh)
  (6): LogSoftmax(dim=-1)
)]], tostring(m))
  end)

  it("prints a user module's children and extra_repr", function()
    local m = Scaled(3, 2)
    function m.extra_repr() return "gain=2" end
    assert.are.equal("Scaled(\n  gain=2\n  (fc): Linear(in_features=3, out_features=2, bias=true)\n)", tostring(m))
    assert.are.equal("Sequential()", tostring(nn.Sequential()))
    assert.are.equal("ModuleList(\n  (1): ReLU()\n)", tostring(nn.ModuleList{nn.ReLU()}))
  end)
end)

describe("nn containers", function()
  it("Sequential takes modules as arguments or as a list, and add appends", function()
    local a = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    local b = nn.Sequential({nn.Linear(2, 3), nn.ReLU()})
    assert.are.equal(2, #a)
    assert.are.equal(2, #b)
    assert.are.equal(b, b:add(nn.Linear(3, 1)))
    assert.are.equal(3, #b)
    local classes = {}
    for i, layer in ipairs(b) do classes[i] = layer.__name end
    assert.are.same({"Linear", "ReLU", "Linear"}, classes)
    H.assert_shape(b(dn.zeros(5, 2)), {5, 1})
    H.assert_same(nn.Sequential()(dn.tensor({1, 2})), {1, 2})    -- empty: identity
  end)

  it("Sequential rejects what is not a module", function()
    H.assert_error(function() nn.Sequential(nn.ReLU(), 5) end, {"Sequential: argument 2 is not a module (got 5)"})
    H.assert_error(function() nn.Sequential(nn.ReLU()):add(nn.Linear) end,
      {"Sequential:add: argument 1 is not a module (got class Linear)"})
  end)

  it("Sequential errors name the failing layer's index and type", function()
    local m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(5, 2))
    local err = H.assert_error(function() m(dn.zeros(2, 4)) end, {})
    -- the kernel's message, with the input shape the layer saw
    -- at the line that called the model (this file), not a line of the library
    assert.truthy(err:find("^[^:]*module_spec%.lua:%d+: Sequential: layer 3 %(Linear%): linear: "), err)
    assert.truthy(err:find("[2,3]", 1, true), err)
    assert.truthy(err:find("[2,5]", 1, true), err)
    -- an error raised in user code keeps its position, in front
    local Fail = nn.Module:extend("Fail")
    function Fail:forward() error("bad input") end
    err = H.error_of(nn.Sequential(Fail()), dn.zeros(1))
    assert.truthy(err:find("^[^:]*module_spec%.lua:%d+: Sequential: layer 1 %(Fail%): bad input$"), err)
    local Boom = nn.Module:extend("Boom")
    function Boom:forward() error("kaboom", 0) end
    local nested = nn.Sequential(nn.Identity(), nn.Sequential(nn.Identity(), Boom()))
    assert.are.equal("Sequential: layer 2 (Sequential): Sequential: layer 2 (Boom): kaboom",
      H.error_of(nested, dn.zeros(1)))
  end)

  it("ModuleList is indexable, has a length and works with ipairs", function()
    local Net = nn.Module:extend("Stack")
    function Net:init(sizes)
      self.layers = nn.ModuleList()
      for i = 1, #sizes - 1 do self.layers:append(nn.Linear(sizes[i], sizes[i + 1])) end
    end
    function Net:forward(x)
      for _, layer in ipairs(self.layers) do x = layer(x):tanh() end
      return x
    end
    local net = Net({4, 3, 2})
    assert.are.equal(2, #net.layers)
    assert.are.equal(3, net.layers[1].out_features)
    assert.are.same({"layers.1.weight", "layers.1.bias", "layers.2.weight", "layers.2.bias"},
      names_of(net:named_parameters()))
    H.assert_shape(net(dn.zeros(5, 4)), {5, 2})
    local list = nn.ModuleList{nn.ReLU()}:extend({nn.Tanh(), nn.Sigmoid()})
    assert.are.equal(3, #list)
    assert.are.equal("Sigmoid", list[3].__name)
    H.assert_error(function() list(dn.zeros(1)) end, {"ModuleList: has no forward"})
    H.assert_error(function() list:extend(5) end, {"ModuleList:extend: a list of modules expected (got 5)"})
    local MyList = nn.ModuleList:extend("MyList")     -- extend on the class still subclasses
    assert.are.equal(0, #MyList())
  end)

  it("ModuleList:extend with itself appends its modules once (was an endless loop)", function()
    local relu, tanh = nn.ReLU(), nn.Tanh()
    local list = nn.ModuleList{relu, tanh}
    -- a count hook turns the old endless loop into a failure instead of a hang
    debug.sethook(function() error("ModuleList:extend(self) does not end", 2) end, "", 1e7)
    local ok, result = pcall(list.extend, list, list)
    debug.sethook()
    assert(ok, result)
    assert.are.equal(list, result)
    assert.are.equal(4, #list)
    assert.are.same({relu, tanh, relu, tanh}, {list[1], list[2], list[3], list[4]})
  end)
end)
