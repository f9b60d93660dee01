-- dropnet.optim: each optimizer against its textbook formula (computed here in
-- plain Lua, double precision) and against PyTorch 1.13 numbers, param groups,
-- state_dict round trips, schedules, clipping, max-norm and bad inputs.
local dn = require "dropnet"
local optim = require "dropnet.optim"
local H = require "helpers"

-- The toy problem: a [2,3] parameter and a fixed gradient per step.
local P0 = {{0.5, -1.0, 1.5}, {2.0, -0.25, 0.0}}
local G = {
  {{0.1, -0.2, 0.3}, {-0.4, 0.5, -0.6}},
  {{0.7, 0.1, -0.3}, {0.2, -0.8, 0.4}},
  {{-0.5, 0.6, 0.2}, {0.9, 0.3, -0.1}},
}

--[==[ PyTorch 1.13 reference values (Debian's python3-torch), made by:

import torch
P0 = [[0.5, -1.0, 1.5], [2.0, -0.25, 0.0]]
G = [[[0.1, -0.2, 0.3], [-0.4, 0.5, -0.6]],
     [[0.7, 0.1, -0.3], [0.2, -0.8, 0.4]],
     [[-0.5, 0.6, 0.2], [0.9, 0.3, -0.1]]]
def run(make):
    p = torch.tensor(P0, requires_grad=True)
    opt = make([p])
    out = []
    for g in G:
        p.grad = torch.tensor(g)
        opt.step()
        out.append(p.detach().clone().tolist())
    return out
cases = {
  "sgd_momentum_dampening": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
  "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
  "sgd_maximize": lambda ps: torch.optim.SGD(ps, lr=0.2, momentum=0.5, maximize=True),
  "adam_l2": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1),
  "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
  "adam_betas": lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.5, 0.9), eps=1e-3),
  "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=0.01),
  "rmsprop_centered_momentum": lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-6,
                                                              weight_decay=0.01, momentum=0.5, centered=True),
}
for name, make in cases.items(): print(name, run(make))
# schedules: the lr after construction, then after each of 7 sched.step()
def sched(make, n=7):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    s = make(opt)
    lrs = [opt.param_groups[0]['lr']]
    for _ in range(n):
        opt.step(); s.step(); lrs.append(opt.param_groups[0]['lr'])
    return lrs
S = torch.optim.lr_scheduler
print(sched(lambda o: S.StepLR(o, step_size=3, gamma=0.5)))
print(sched(lambda o: S.ExponentialLR(o, gamma=0.9)))
print(sched(lambda o: S.CosineAnnealingLR(o, T_max=5, eta_min=0.01)))
print(sched(lambda o: S.LinearLR(o, start_factor=0.25, total_iters=4)))
a = torch.zeros(2, 3, requires_grad=True); b = torch.zeros(3, requires_grad=True)
a.grad = torch.tensor(G[0]); b.grad = torch.tensor([1.0, -2.0, 0.5])
print(torch.nn.utils.clip_grad_norm_([a, b], 1.0).item(), a.grad.tolist(), b.grad.tolist())
w = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0], [1.0, 1.0, 1.0]])
print(torch.renorm(w, 2, 0, 1.5).tolist())
p1 = torch.tensor(P0, requires_grad=True); p2 = torch.tensor([1.0, -1.0], requires_grad=True)
opt = torch.optim.Adam([{"params": [p1]}, {"params": [p2], "lr": 0.1, "betas": (0.8, 0.99)}], lr=0.01)
for g in G:
    p1.grad = torch.tensor(g); p2.grad = torch.tensor([g[0][0], g[1][1]])
    opt.step()
print(p1.tolist(), p2.tolist())
]==]
local TORCH = {
  sgd_momentum_dampening = {
    {{0.4894999861717224, -0.9789999723434448, 1.468500018119812},
     {2.0380001068115234, -0.2997500002384186, 0.06000000238418579}},
    {{0.41660943627357483, -0.9682188630104065, 1.4658284187316895},
     {2.052366018295288, -0.27225521206855774, 0.0779460072517395}},
    {{0.3956330120563507, -1.0116444826126099, 1.4441046714782715},
     {1.9824481010437012, -0.2742648720741272, 0.10302725434303284}},
  },
  sgd_nesterov = {
    {{0.48095250129699707, -0.9619050025939941, 1.4428575038909912},
     {2.075809955596924, -0.3449762463569641, 0.11400000005960464}},
    {{0.339786559343338, -0.9645731449127197, 1.4753596782684326},
     {2.069931745529175, -0.233433336019516, 0.08658916503190994}},
    {{0.3707265853881836, -1.0719261169433594, 1.439536452293396},
     {1.9115381240844727, -0.26203808188438416, 0.11691632121801376}},
  },
  sgd_maximize = {
    {{0.5199999809265137, -1.0399999618530273, 1.5600000619888306},
     {1.9199999570846558, -0.15000000596046448, -0.12000000476837158}},
    {{0.6699999570846558, -1.0399999618530273, 1.53000009059906},
     {1.9199999570846558, -0.2600000202655792, -0.10000000894069672}},
    {{0.6449999809265137, -0.9199999570846558, 1.5550000667572021},
     {2.0999999046325684, -0.2550000250339508, -0.11000000685453415}},
  },
  adam_l2 = {
    {{0.49000000953674316, -0.9900000095367432, 1.4900000095367432},
     {2.009999990463257, -0.25999999046325684, 0.009999999776482582}},
    {{0.48138824105262756, -0.9833242893218994, 1.4860161542892456},
     {2.0063297748565674, -0.25688743591308594, 0.011433777399361134}},
    {{0.4789131283760071, -0.9861617684364319, 1.4797512292861938},
     {1.9993433952331543, -0.2563437521457672, 0.013399516232311726}},
  },
  adamw = {
    {{0.4895000159740448, -0.9890000224113464, 1.4884999990463257},
     {2.008000135421753, -0.25975000858306885, 0.009999999776482582}},
    {{0.4806967079639435, -0.9853476881980896, 1.4875378608703613},
     {2.008655548095703, -0.2567291259765625, 0.011435205116868019}},
    {{0.47865909337997437, -0.9896305799484253, 1.4836927652359009},
     {2.001840591430664, -0.2563755512237549, 0.013408517464995384}},
  },
  adam_betas = {
    {{0.45049506425857544, -0.9502487778663635, 1.45016610622406},
     {2.049875259399414, -0.29990020394325256, 0.04991680756211281}},
    {{0.4018072783946991, -0.9502487778663635, 1.4667774438858032},
     {2.049875259399414, -0.27276912331581116, 0.043325476348400116}},
    {{0.4088250994682312, -0.9946762919425964, 1.4534754753112793},
     {2.007089376449585, -0.2740286588668823, 0.046839822083711624}},
  },
  rmsprop = {
    {{0.40000009536743164, -0.9000000357627869, 1.4000000953674316},
     {2.0999999046325684, -0.34999996423721313, 0.09999997913837433}},
    {{0.30099526047706604, -0.9449013471603394, 1.4708881378173828},
     {2.055098533630371, -0.2650807797908783, 0.044336948543787}},
    {{0.35892754793167114, -1.038708209991455, 1.4279848337173462},
     {1.965385913848877, -0.2955627739429474, 0.058187998831272125}},
  },
  rmsprop_centered_momentum = {
    {{0.4666677415370941, -0.9666671752929688, 1.4666670560836792},
     {2.0333330631256104, -0.2833331227302551, 0.033333148807287216}},
    {{0.4165073335170746, -0.9631943702697754, 1.4718384742736816},
     {2.0334396362304688, -0.2725384533405304, 0.03177109733223915}},
    {{0.41021230816841125, -0.9922981858253479, 1.4590562582015991},
     {2.0035057067871094, -0.277226060628891, 0.03573845699429512}},
  },
  StepLR = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025},
  ExponentialLR = {0.1, 0.09000000000000001, 0.08100000000000002, 0.07290000000000002, 0.06561000000000002,
    0.05904900000000002, 0.05314410000000002, 0.04782969000000002},
  CosineAnnealingLR = {0.1, 0.09140576474687263, 0.06890576474687263, 0.04109423525312736, 0.018594235253127367, 0.01,
    0.018594235253127367, 0.04109423525312739},
  LinearLR = {0.025, 0.043750000000000004, 0.06250000000000001, 0.08125000000000002, 0.10000000000000002,
    0.10000000000000002, 0.10000000000000002, 0.10000000000000002},
  clip_total = 2.4819347858428955,
  clip_a = {{0.04029113054275513, -0.08058226108551025, 0.12087339907884598},
    {-0.1611645221710205, 0.20145565271377563, -0.24174679815769196}},
  clip_b = {0.40291130542755127, -0.8058226108551025, 0.20145565271377563},
  renorm = {{0.9000000357627869, 1.2000000476837158, 0.0}, {0.30000001192092896, 0.4000000059604645, 0.0},
    {0.8660253882408142, 0.8660253882408142, 0.8660253882408142}},
  groups_p1 = {{0.48012927174568176, -0.9926048517227173, 1.488168716430664},
    {2.007857084274292, -0.25714200735092163, 0.013429952785372734}},
  groups_p2 = {0.8033939003944397, -1.065288782119751},
}

-- --- helpers ---------------------------------------------------------------------------------

local function param(values)
  local p = dn.tensor(values or P0)
  p:requires_grad_(true)
  return p
end

-- Steps `opt` (over the single parameter p) once per gradient; returns p's
-- values after each step.
local function run_steps(opt, p, grads)
  local out = {}
  for s, g in ipairs(grads) do
    p.grad = dn.tensor(g)
    opt:step()
    out[s] = p:totable()
  end
  return out
end

local function run(make)
  local p = param()
  return run_steps(make({p}), p, G)
end

-- The float32 value of every gradient, as the kernels see them.
local function f32_grads()
  return H.map(G, H.f32)
end

-- --- textbook formulas (torch.optim's documented algorithms), element by element --------------

local function sgd_reference(o)
  local lr, mu, damp, wd = o.lr, o.momentum or 0, o.dampening or 0, o.weight_decay or 0
  local p, buf, out = H.flatten(P0), {}, {}
  for s, grad in ipairs(f32_grads()) do
    local g = H.flatten(grad)
    for i = 1, #p do
      local d = o.maximize and -g[i] or g[i]
      d = d + wd * p[i]
      if mu ~= 0 then
        buf[i] = s == 1 and d or mu * buf[i] + (1 - damp) * d
        d = o.nesterov and d + mu * buf[i] or buf[i]
      end
      p[i] = p[i] - lr * d
    end
    out[s] = {table.unpack(p)}
  end
  return out
end

local function adam_reference(o)
  local lr, b1, b2, eps, wd = o.lr, o.betas[1], o.betas[2], o.eps, o.weight_decay
  local p, m, v, out = H.flatten(P0), {}, {}, {}
  for i = 1, #p do m[i], v[i] = 0, 0 end
  for s, grad in ipairs(f32_grads()) do
    local g = H.flatten(grad)
    for i = 1, #p do
      local gi = g[i]
      if o.decoupled then p[i] = p[i] * (1 - lr * wd) else gi = gi + wd * p[i] end
      m[i] = b1 * m[i] + (1 - b1) * gi
      v[i] = b2 * v[i] + (1 - b2) * gi * gi
      local mhat, vhat = m[i] / (1 - b1 ^ s), v[i] / (1 - b2 ^ s)
      p[i] = p[i] - lr * mhat / (math.sqrt(vhat) + eps)
    end
    out[s] = {table.unpack(p)}
  end
  return out
end

local function rmsprop_reference(o)
  local lr, alpha, eps, wd, mu = o.lr, o.alpha, o.eps, o.weight_decay, o.momentum
  local p, sq, ga, buf, out = H.flatten(P0), {}, {}, {}, {}
  for i = 1, #p do sq[i], ga[i], buf[i] = 0, 0, 0 end
  for s, grad in ipairs(f32_grads()) do
    local g = H.flatten(grad)
    for i = 1, #p do
      local gi = g[i] + wd * p[i]
      sq[i] = alpha * sq[i] + (1 - alpha) * gi * gi
      local avg
      if o.centered then
        ga[i] = alpha * ga[i] + (1 - alpha) * gi
        avg = math.sqrt(sq[i] - ga[i] * ga[i]) + eps
      else
        avg = math.sqrt(sq[i]) + eps
      end
      if mu > 0 then
        buf[i] = mu * buf[i] + gi / avg
        p[i] = p[i] - lr * buf[i]
      else
        p[i] = p[i] - lr * gi / avg
      end
    end
    out[s] = {table.unpack(p)}
  end
  return out
end

local function assert_steps(actual, expected, rtol, what)
  for s = 1, #expected do
    H.assert_close(H.flatten(actual[s]), H.flatten(expected[s]), rtol or 1e-5, 1e-6, (what or "") .. " step " .. s)
  end
end

-- --- SGD --------------------------------------------------------------------------------------------

describe("optim.SGD", function()
  it("is reachable as dn.optim", function()
    assert.are.equal(optim, dn.optim)
  end)

  it("matches the formula: plain, weight decay, momentum with dampening, Nesterov, maximize", function()
    local cases = {
      {lr = 0.1},
      {lr = 0.05, weight_decay = 0.01},
      {lr = 0.1, momentum = 0.9},
      {lr = 0.1, momentum = 0.8, dampening = 0.3, weight_decay = 0.02},
      {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 5e-4},
      {lr = 0.2, momentum = 0.5, maximize = true},
    }
    for _, o in ipairs(cases) do
      assert_steps(run(function(ps) return optim.SGD(ps, o) end), sgd_reference(o))
    end
  end)

  it("matches PyTorch 1.13", function()
    assert_steps(run(function(ps)
      return optim.SGD(ps, {lr = 0.1, momentum = 0.9, dampening = 0.1, weight_decay = 0.01})
    end), TORCH.sgd_momentum_dampening, 1e-5, "momentum + dampening")
    assert_steps(run(function(ps)
      return optim.SGD(ps, {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 5e-4})
    end), TORCH.sgd_nesterov, 1e-5, "nesterov")
    assert_steps(run(function(ps) return optim.SGD(ps, {lr = 0.2, momentum = 0.5, maximize = true}) end),
      TORCH.sgd_maximize, 1e-5, "maximize")
  end)

  it("trains through autograd: loss:backward() then step()", function()
    local p = param({{1, -2}, {3, 0.5}})
    local opt = optim.SGD({p}, {lr = 0.25})
    local loss = (p * p):sum()
    opt:zero_grad()
    loss:backward()
    opt:step()
    H.assert_close(p, {{0.5, -1}, {1.5, 0.25}})   -- p - 0.25 * 2p
    assert.is_true(p.requires_grad)
    assert.is_nil(p.grad_fn)
  end)

  it("skips parameters without a gradient; zero_grad clears or zeros the gradients", function()
    local a, b = param({1, 2}), param({3, 4})
    local opt = optim.SGD({a, b}, {lr = 1, momentum = 0.9})
    a.grad = dn.tensor({0.5, 0.5})
    opt:step()
    H.assert_same(a, {0.5, 1.5})
    H.assert_same(b, {3, 4})
    assert.is_nil(opt.state[b])
    opt:zero_grad(false)
    H.assert_same(a.grad, {0, 0})
    assert.is_nil(b.grad)
    opt:zero_grad()
    assert.is_nil(a.grad)
    opt:step()   -- no gradients at all: nothing happens
    H.assert_same(a, {0.5, 1.5})
  end)

  it("returns the closure's loss from step(closure)", function()
    local p = param({2})
    local opt = optim.SGD({p}, {lr = 0.1})
    local loss = opt:step(function()
      opt:zero_grad()
      local l = (p * p):sum()
      l:backward()
      return l
    end)
    H.assert_close(loss, 4)
    H.assert_close(p, {1.6})
  end)

  it("rejects bad options and parameters with errors naming SGD", function()
    local p = param()
    H.assert_error(function() optim.SGD({p}) end, {"SGD: lr is required"})
    H.assert_error(function() optim.SGD({p}, {lr = -0.1}) end, {"SGD: lr must be a finite number >= 0 (got -0.1)"})
    H.assert_error(function() optim.SGD({p}, {lr = "0.1"}) end, {"SGD: lr must be", "\"0.1\""})
    H.assert_error(function() optim.SGD({p}, {lr = 0.1, nesterov = true}) end,
      {"SGD: Nesterov momentum requires a momentum > 0 and zero dampening"})
    H.assert_error(function() optim.SGD({p}, {lr = 0.1, momentum = 0.9, dampening = 0.5, nesterov = true}) end,
      {"zero dampening", "dampening 0.5"})
    H.assert_error(function() optim.SGD({p}, {lr = 0.1, momentun = 0.9}) end,
      {"SGD: unknown option 'momentun'", "momentum"})
    H.assert_error(function() optim.SGD({p}, {lr = 0.1, nesterov = 1}) end, {"SGD: nesterov must be true or false"})
    H.assert_error(function() optim.SGD({}, {lr = 0.1}) end, {"SGD: got an empty parameter list"})
    H.assert_error(function() optim.SGD({p, 3}, {lr = 0.1}) end, {"SGD: parameter 2 is 3, a tensor expected"})
    H.assert_error(function() optim.SGD("p", {lr = 0.1}) end, {"SGD: params must be"})
    H.assert_error(function() optim.SGD({p, p}, {lr = 0.1}) end, {"SGD: parameter 2 appears more than once"})
    H.assert_error(function() optim.SGD({dn.tensor({1, 2}, "int32")}, {lr = 0.1}) end,
      {"SGD: parameter 1 is int32, float32 expected"})
    H.assert_error(function() optim.SGD({p * 2}, {lr = 0.1}) end, {"SGD: parameter 1 is not a leaf tensor"})
    H.assert_error(function() optim.SGD({p}, {lr = 0.1}):step(3) end, {"SGD:step: closure must be a function"})
    -- a gradient of the wrong shape cannot even be attached
    local opt = optim.SGD({p}, {lr = 0.1})
    opt.param_groups[1].lr = -1
    p.grad = dn.zeros(2, 3)
    H.assert_error(function() opt:step() end, {"sgd: lr must be a finite number >= 0 (got -1)"})
  end)
end)

-- --- Adam / AdamW ------------------------------------------------------------------------------------

describe("optim.Adam and optim.AdamW", function()
  it("match the formula: bias correction, eps after the square root, L2 vs decoupled decay", function()
    local cases = {
      {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0},
      {lr = 0.01, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0.1},
      {lr = 0.05, betas = {0.5, 0.9}, eps = 1e-3, weight_decay = 0},
    }
    for _, o in ipairs(cases) do
      assert_steps(run(function(ps) return optim.Adam(ps, o) end), adam_reference(o), 1e-5, "Adam")
      local w = {lr = o.lr, betas = o.betas, eps = o.eps, weight_decay = o.weight_decay, decoupled = true}
      assert_steps(run(function(ps) return optim.AdamW(ps, o) end), adam_reference(w), 1e-5, "AdamW")
    end
  end)

  it("match PyTorch 1.13", function()
    assert_steps(run(function(ps) return optim.Adam(ps, {lr = 0.01, weight_decay = 0.1}) end), TORCH.adam_l2, 1e-5,
      "Adam L2")
    assert_steps(run(function(ps) return optim.AdamW(ps, {lr = 0.01, weight_decay = 0.1}) end), TORCH.adamw, 1e-5,
      "AdamW")
    assert_steps(run(function(ps) return optim.Adam(ps, {lr = 0.05, betas = {0.5, 0.9}, eps = 1e-3}) end),
      TORCH.adam_betas, 1e-5, "betas")
  end)

  it("differ only through the weight decay", function()
    local adam = run(function(ps) return optim.Adam(ps, {lr = 0.01, weight_decay = 0.1}) end)
    local adamw = run(function(ps) return optim.AdamW(ps, {lr = 0.01, weight_decay = 0.1}) end)
    assert.is_true(math.abs(adam[3][1][1] - adamw[3][1][1]) > 1e-5)
    H.assert_same(run(function(ps) return optim.Adam(ps) end),
      run(function(ps) return optim.AdamW(ps, {weight_decay = 0}) end))
    local p = param()
    assert.are.equal(0.01, optim.AdamW({p}).param_groups[1].weight_decay)
    assert.are.equal(0, optim.Adam({p}).param_groups[1].weight_decay)
  end)

  it("keep the step count in the state", function()
    local p = param()
    local opt = optim.Adam({p})
    run_steps(opt, p, G)
    assert.are.equal(3, opt.state[p].step)
    H.assert_shape(opt.state[p].exp_avg, {2, 3})
  end)

  it("reject bad betas, eps and options", function()
    local p = param()
    H.assert_error(function() optim.Adam({p}, {betas = {1, 0.999}}) end, {"Adam: betas[1] must be in [0, 1) (got 1)"})
    H.assert_error(function() optim.AdamW({p}, {betas = {0.9, -0.1}}) end, {"AdamW: betas[2] must be in [0, 1)"})
    H.assert_error(function() optim.Adam({p}, {betas = 0.9}) end, {"Adam: betas must be a pair"})
    H.assert_error(function() optim.Adam({p}, {eps = -1}) end, {"Adam: eps must be"})
    H.assert_error(function() optim.Adam({p}, {lr = -1}) end, {"Adam: lr must be"})
    H.assert_error(function() optim.Adam({p}, {amsgrad = true}) end, {"Adam: unknown option 'amsgrad'"})
  end)
end)

-- --- RMSprop -----------------------------------------------------------------------------------------

describe("optim.RMSprop", function()
  it("matches the formula: plain, weight decay, momentum, centered", function()
    local cases = {
      {lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0},
      {lr = 1e-2, alpha = 0.9, eps = 1e-6, weight_decay = 0.1, momentum = 0},
      {lr = 1e-2, alpha = 0.9, eps = 1e-8, weight_decay = 0, momentum = 0.9},
      {lr = 1e-2, alpha = 0.9, eps = 1e-8, weight_decay = 0, momentum = 0, centered = true},
      {lr = 1e-2, alpha = 0.8, eps = 1e-4, weight_decay = 0.01, momentum = 0.5, centered = true},
    }
    for _, o in ipairs(cases) do
      assert_steps(run(function(ps) return optim.RMSprop(ps, o) end), rmsprop_reference(o), 1e-5, "RMSprop")
    end
  end)

  it("matches PyTorch 1.13", function()
    assert_steps(run(function(ps) return optim.RMSprop(ps) end), TORCH.rmsprop, 1e-5, "defaults")
    assert_steps(run(function(ps)
      return optim.RMSprop(ps, {lr = 0.01, alpha = 0.9, eps = 1e-6, weight_decay = 0.01, momentum = 0.5,
        centered = true})
    end), TORCH.rmsprop_centered_momentum, 1e-5, "centered + momentum")
  end)

  it("rejects bad options", function()
    local p = param()
    H.assert_error(function() optim.RMSprop({p}, {alpha = -0.5}) end, {"RMSprop: alpha must be"})
    H.assert_error(function() optim.RMSprop({p}, {centered = "yes"}) end, {"RMSprop: centered must be true or false"})
    H.assert_error(function() optim.RMSprop({p}, {beta = 0.5}) end, {"RMSprop: unknown option 'beta'"})
  end)
end)

-- --- parameter groups -----------------------------------------------------------------------------------

describe("parameter groups", function()
  it("override the defaults per group (PyTorch 1.13 numbers)", function()
    local p1, p2 = param(), param({1, -1})
    local opt = optim.Adam({{params = {p1}}, {params = {p2}, lr = 0.1, betas = {0.8, 0.99}}}, {lr = 0.01})
    assert.are.equal(0.01, opt.param_groups[1].lr)
    assert.are.equal(0.1, opt.param_groups[2].lr)
    assert.are.same({0.9, 0.999}, opt.param_groups[1].betas)
    for _, g in ipairs(G) do
      p1.grad = dn.tensor(g)
      p2.grad = dn.tensor({g[1][1], g[2][2]})
      opt:step()
    end
    H.assert_close(p1, TORCH.groups_p1)
    H.assert_close(p2, TORCH.groups_p2)
  end)

  it("take a changed lr at the next step, and can be added later", function()
    local a, b = param({1}), param({1})
    local opt = optim.SGD({a}, {lr = 0.1})
    opt:add_param_group({params = b, lr = 0.5})
    opt.param_groups[1].lr = 1
    a.grad, b.grad = dn.tensor({1}), dn.tensor({1})
    opt:step()
    H.assert_same(a, {0})
    H.assert_same(b, {0.5})
    H.assert_error(function() opt:add_param_group({params = {a}}) end, {"appears more than once"})
    H.assert_error(function() opt:add_param_group({params = {param({1})}, lr = -1}) end,
      {"SGD (group 3): lr must be"})
    assert.are.equal(2, #opt.param_groups)   -- the failed group was not added
  end)

  it("are validated per group", function()
    local p = param()
    H.assert_error(function() optim.SGD({{params = {p}}}) end, {"SGD (group 1): lr is required"})
    H.assert_error(function() optim.SGD({{params = {p}, lr = 0.1, foo = 1}}) end, {"SGD: unknown option 'foo'"})
    H.assert_error(function() optim.SGD({{params = {}}}, {lr = 0.1}) end, {"SGD: got an empty parameter list"})
    H.assert_error(function() optim.SGD({{params = {p}}, 5}, {lr = 0.1}) end,
      {"SGD: a parameter group must be a table"})
  end)

  it("print like PyTorch's optimizers", function()
    local s = tostring(optim.SGD({param()}, {lr = 0.1, momentum = 0.9}))
    assert.truthy(s:find("SGD (", 1, true))
    assert.truthy(s:find("Parameter Group 1", 1, true))
    assert.truthy(s:find("momentum: 0.9", 1, true))
  end)
end)

-- --- state_dict -------------------------------------------------------------------------------------------

describe("state_dict / load_state_dict", function()
  local makers = {
    SGD = function(ps) return optim.SGD(ps, {lr = 0.1, momentum = 0.9, nesterov = true}) end,
    Adam = function(ps) return optim.Adam(ps, {lr = 0.01}) end,
    AdamW = function(ps) return optim.AdamW(ps, {lr = 0.01}) end,
    RMSprop = function(ps) return optim.RMSprop(ps, {momentum = 0.5, centered = true}) end,
  }
  local grads = {G[1], G[2], G[3], G[2], G[1]}

  for name, make in pairs(makers) do
    it("continues " .. name .. " exactly as if never interrupted", function()
      local p = param()
      local opt = make({p})
      local straight = run_steps(opt, p, grads)

      local q = param()
      local first = make({q})
      run_steps(first, q, {grads[1], grads[2]})
      local sd = first:state_dict()
      run_steps(first, q, {grads[3]})   -- the saved state must not follow later steps
      local resumed_param = param(straight[2])
      local second = make({resumed_param})
      second:load_state_dict(sd)
      local rest = run_steps(second, resumed_param, {grads[3], grads[4], grads[5]})
      for s = 3, 5 do H.assert_same(rest[s - 2], straight[s], name .. " step " .. s) end
    end)
  end

  it("is a plain table of indices, options and cloned buffers", function()
    local a, b, c = param(), param({1, 2}), param({3})
    local opt = optim.Adam({{params = {a, b}}, {params = {c}, lr = 0.5}})
    a.grad = dn.tensor(G[1])
    opt:step()
    local sd = opt:state_dict()
    assert.are.same({1, 2}, sd.param_groups[1].params)
    assert.are.same({3}, sd.param_groups[2].params)
    assert.are.equal(0.5, sd.param_groups[2].lr)
    assert.are.same({0.9, 0.999}, sd.param_groups[1].betas)
    assert.are.equal(1, sd.state[1].step)
    assert.is_nil(sd.state[2])
    assert.is_true(dn.is_tensor(sd.state[1].exp_avg))
    local before = sd.state[1].exp_avg:totable()
    opt:step()
    H.assert_same(sd.state[1].exp_avg, before)
    sd.param_groups[1].betas[1] = 0.5   -- a copy, not the optimizer's own table
    assert.are.equal(0.9, opt.param_groups[1].betas[1])
  end)

  it("restores group options", function()
    local p = param()
    local opt = optim.SGD({p}, {lr = 0.1})
    opt.param_groups[1].lr = 0.05
    local sd = opt:state_dict()
    local other = optim.SGD({param()}, {lr = 0.1})
    other:load_state_dict(sd)
    assert.are.equal(0.05, other.param_groups[1].lr)
  end)

  it("rejects state that does not fit, changing nothing", function()
    local p = param()
    local opt = optim.SGD({p}, {lr = 0.1, momentum = 0.9})
    p.grad = dn.tensor(G[1])
    opt:step()
    local sd = opt:state_dict()
    local small = optim.SGD({param({1, 2})}, {lr = 0.1, momentum = 0.9})
    H.assert_error(function() small:load_state_dict(sd) end,
      {"SGD:load_state_dict: state 'momentum_buffer' of parameter 1 has shape [2,3], the parameter has shape [2]"})
    assert.is_nil(next(small.state))
    local two = optim.SGD({p, param({1})}, {lr = 0.1})
    H.assert_error(function() two:load_state_dict(sd) end,
      {"SGD:load_state_dict: saved parameter group 1 has 1 parameters, this optimizer's has 2"})
    local grouped = optim.SGD({{params = {p}}, {params = {param({1})}}}, {lr = 0.1})
    H.assert_error(function() grouped:load_state_dict(sd) end,
      {"SGD:load_state_dict: the saved state has 1 parameter groups, this optimizer has 2"})
    H.assert_error(function() opt:load_state_dict(5) end, {"SGD:load_state_dict: a table with state"})
    sd.state[1].momentum_buffer = dn.tensor({{1, 2, 3}, {4, 5, 6}}, "int32")
    H.assert_error(function() opt:load_state_dict(sd) end, {"must be a float32 tensor"})
    sd.state[1] = {exp_avg = dn.zeros(2, 3)}
    H.assert_error(function() opt:load_state_dict(sd) end, {"SGD:load_state_dict: unknown state 'exp_avg'"})
    sd.state[1] = nil
    sd.param_groups[1].lr = -1
    H.assert_error(function() opt:load_state_dict(sd) end, {"SGD:load_state_dict (group 1): lr must be"})
    assert.are.equal(0.1, opt.param_groups[1].lr)
    assert.is_not_nil(opt.state[p].momentum_buffer)
  end)
end)

-- --- schedules --------------------------------------------------------------------------------------------

-- The lr after construction, then after each of n sched:step().
local function lr_sequence(make, n)
  local opt = optim.SGD({param({0})}, {lr = 0.1})
  local sched = make(opt)
  local lrs = {opt.param_groups[1].lr}
  for _ = 1, n do
    sched:step()
    lrs[#lrs + 1] = opt.param_groups[1].lr
  end
  return lrs, sched, opt
end

describe("optim.lr_scheduler", function()
  local S = optim.lr_scheduler

  it("StepLR, ExponentialLR, CosineAnnealingLR and LinearWarmup match PyTorch 1.13", function()
    H.assert_close(lr_sequence(function(o) return S.StepLR(o, {step_size = 3, gamma = 0.5}) end, 7), TORCH.StepLR,
      1e-12, 0)
    H.assert_close(lr_sequence(function(o) return S.ExponentialLR(o, {gamma = 0.9}) end, 7), TORCH.ExponentialLR,
      1e-12, 0)
    H.assert_close(lr_sequence(function(o) return S.CosineAnnealingLR(o, {T_max = 5, eta_min = 0.01}) end, 7),
      TORCH.CosineAnnealingLR, 1e-12, 1e-15)
    H.assert_close(lr_sequence(function(o) return S.LinearWarmup(o, {warmup_steps = 4, start_factor = 0.25}) end, 7),
      TORCH.LinearLR, 1e-12, 0)
  end)

  it("follow their closed forms", function()
    local lrs = lr_sequence(function(o) return S.CosineAnnealingLR(o, {T_max = 10}) end, 10)
    for t = 0, 10 do H.assert_close(lrs[t + 1], 0.1 * (1 + math.cos(math.pi * t / 10)) / 2, 1e-12, 1e-15) end
    lrs = lr_sequence(function(o) return S.StepLR(o, {step_size = 2}) end, 6)
    for t = 0, 6 do H.assert_close(lrs[t + 1], 0.1 * 0.1 ^ (t // 2), 1e-12, 0) end
    lrs = lr_sequence(function(o) return S.LinearWarmup(o, {warmup_steps = 3}) end, 5)
    H.assert_close(lrs, {0.1 / 3, 0.1 * 5 / 9, 0.1 * 7 / 9, 0.1, 0.1, 0.1}, 1e-12, 0)
  end)

  it("set every group from its own base lr; get_last_lr lists them", function()
    local opt = optim.SGD({{params = {param({0})}}, {params = {param({0})}, lr = 1}}, {lr = 0.1})
    local sched = S.ExponentialLR(opt, {gamma = 0.5})
    sched:step()
    sched:step()
    H.assert_close(sched:get_last_lr(), {0.025, 0.25}, 1e-12, 0)
    assert.are.equal(0.1, opt.param_groups[1].initial_lr)
  end)

  it("round-trip their state", function()
    local _, sched, opt = lr_sequence(function(o) return S.StepLR(o, {step_size = 2, gamma = 0.5}) end, 3)
    local sd = sched:state_dict()
    assert.are.equal(3, sd.last_epoch)
    local opt2 = optim.SGD({param({0})}, {lr = 0.1})
    local sched2 = S.StepLR(opt2, {step_size = 7})
    opt2:load_state_dict(opt:state_dict())
    sched2:load_state_dict(sd)
    assert.are.equal(2, sched2.step_size)
    for _ = 1, 4 do
      sched:step()
      sched2:step()
      assert.are.equal(opt.param_groups[1].lr, opt2.param_groups[1].lr)
    end
    H.assert_error(function() sched2:load_state_dict({last_epoch = -1, base_lrs = {0.1}, last_values = {}}) end,
      {"StepLR:load_state_dict: last_epoch must be an integer >= 0"})
    H.assert_error(function() sched2:load_state_dict({last_epoch = 1, base_lrs = {}, last_values = {}}) end,
      {"StepLR:load_state_dict: base_lrs must list one value per parameter group"})
  end)

  it("reject bad options", function()
    local opt = optim.SGD({param()}, {lr = 0.1})
    H.assert_error(function() S.StepLR(opt, {gamma = 0.5}) end, {"StepLR: step_size is required"})
    H.assert_error(function() S.StepLR(opt, {step_size = 0}) end, {"StepLR: step_size must be an integer >= 1"})
    H.assert_error(function() S.StepLR(opt, {step_size = 1.5}) end, {"StepLR: step_size must be an integer"})
    H.assert_error(function() S.ExponentialLR(opt) end, {"ExponentialLR: gamma is required"})
    H.assert_error(function() S.ExponentialLR(opt, {gamma = -1}) end, {"ExponentialLR: gamma must be"})
    H.assert_error(function() S.CosineAnnealingLR(opt, {T_max = 5, eta = 0}) end,
      {"CosineAnnealingLR: unknown option 'eta'"})
    H.assert_error(function() S.LinearWarmup(opt, {warmup_steps = 5, start_factor = 2}) end,
      {"LinearWarmup: start_factor must be in [0, 1]"})
    H.assert_error(function() S.StepLR({}, {step_size = 1}) end, {"StepLR: an optimizer expected"})
  end)
end)

describe("MomentumRamp", function()
  it("ramps SGD momentum linearly from `from` to `to`, then holds", function()
    local p = param({0})
    local opt = optim.SGD({p}, {lr = 0.1, momentum = 0.9})
    local ramp = optim.lr_scheduler.MomentumRamp(opt, {steps = 4})
    local seen = {opt.param_groups[1].momentum}
    for _ = 1, 6 do
      ramp:step()
      seen[#seen + 1] = opt.param_groups[1].momentum
    end
    H.assert_close(seen, {0.5, 0.6225, 0.745, 0.8675, 0.99, 0.99, 0.99}, 1e-12, 1e-15)
    H.assert_close(ramp:get_last_momentum(), {0.99}, 1e-12, 0)
    assert.are.same({0.1}, ramp:get_last_lr())
  end)

  it("drives the update: SGD steps use the ramped momentum", function()
    local p = param({0})
    local opt = optim.SGD({p}, {lr = 1, momentum = 0.9})
    local ramp = optim.MomentumRamp(opt, {from = 0.5, to = 0.7, steps = 2})
    local buf, x = 0, 0
    for s = 1, 4 do
      local mu = opt.param_groups[1].momentum
      p.grad = dn.tensor({1})
      opt:step()
      buf = s == 1 and 1 or mu * buf + 1
      x = x - buf
      H.assert_close(p, {x}, 1e-6, 1e-6)
      ramp:step()
    end
  end)

  it("ramps Adam's beta1 and rejects optimizers without momentum", function()
    local opt = optim.Adam({param()})
    local ramp = optim.MomentumRamp(opt, {from = 0.8, to = 0.9, steps = 2})
    ramp:step()
    H.assert_close(opt.param_groups[1].betas, {0.85, 0.999}, 1e-12, 0)
    H.assert_error(function() optim.MomentumRamp(opt, {steps = 2, to = 1}) end,
      {"MomentumRamp: beta1 must stay below 1"})
    H.assert_error(function() optim.MomentumRamp(opt, {}) end, {"MomentumRamp: steps is required"})
  end)
end)

-- --- clipping and max-norm ---------------------------------------------------------------------------------

describe("optim.clip_grad_norm_", function()
  it("matches PyTorch 1.13 and the formula", function()
    local a, b, c = param({{0, 0, 0}, {0, 0, 0}}), param({0, 0, 0}), param({0})
    a.grad, b.grad = dn.tensor(G[1]), dn.tensor({1.0, -2.0, 0.5})   -- c has no gradient
    local total = optim.clip_grad_norm_({a, b, c}, 1.0)
    H.assert_close(total, TORCH.clip_total, 1e-6, 0)
    H.assert_close(a.grad, TORCH.clip_a)
    H.assert_close(b.grad, TORCH.clip_b)
    assert.is_nil(c.grad)
    -- formula: the norm of all gradients together, scaled by max_norm / (total + 1e-6)
    local sum = 0
    for _, v in ipairs(H.flatten(H.map(G[1], H.f32))) do sum = sum + v * v end
    sum = sum + 1 + 4 + 0.25
    H.assert_close(total, math.sqrt(sum), 1e-6, 0)
    H.assert_close(optim.grad_norm({a, b, c}), 1.0, 1e-5, 0)
  end)

  it("leaves gradients under the limit untouched", function()
    local p = param({0, 0})
    p.grad = dn.tensor({0.3, 0.4})
    H.assert_close(optim.clip_grad_norm_(p, 1), 0.5, 1e-6, 0)
    H.assert_same(p.grad, dn.tensor({0.3, 0.4}):totable())
    p.grad = dn.tensor({30, 40})
    H.assert_close(optim.clip_grad_norm_(p, math.huge), 50, 1e-6, 0)   -- no limit: only the norm
    H.assert_same(p.grad, {30, 40})
    assert.are.equal(0, optim.clip_grad_norm_({param({1})}, 1))   -- no gradients: norm 0
  end)

  it("rejects bad arguments", function()
    local p = param({0})
    H.assert_error(function() optim.clip_grad_norm_({p}, -1) end, {"clip_grad_norm_: max_norm must be a number >= 0"})
    H.assert_error(function() optim.clip_grad_norm_({p}, 0 / 0) end, {"clip_grad_norm_: max_norm must be"})
    H.assert_error(function() optim.clip_grad_norm_({p}, "1") end, {"clip_grad_norm_: max_norm must be"})
    H.assert_error(function() optim.clip_grad_norm_({p, {}}, 1) end, {"clip_grad_norm_: parameter 2 is table"})
    H.assert_error(function() optim.clip_grad_norm_(4, 1) end, {"clip_grad_norm_: params must be"})
    H.assert_error(function() dn.clip_grad_norm_({p, 2}, 1) end,
      {"clip_grad_norm_: item 2 of the list is a number, Tensor expected"})
    H.assert_error(function() dn.total_norm({dn.tensor({1}, "int32")}) end,
      {"total_norm: tensor 1 of 1 (shape [1]) is int32, float32 expected"})
  end)
end)

describe("optim.max_norm_", function()
  it("rescales only the rows over the limit (PyTorch's renorm numbers)", function()
    local w = dn.tensor({{3, 4, 0}, {0.3, 0.4, 0}, {1, 1, 1}})
    local before = w:totable()
    assert.are.equal(w, optim.max_norm_(w, 1.5))
    H.assert_close(w, TORCH.renorm, 1e-6, 1e-7)
    H.assert_same(w[2], before[2])   -- under the limit: untouched, bit for bit
    local f = 1.5 / (5 + 1e-7)
    H.assert_close(w[1], {3 * f, 4 * f, 0}, 1e-6, 1e-7)
  end)

  it("works on a weight that requires grad and on conv-shaped weights", function()
    local w = param({{{1, 2}, {2, 0}}, {{0.1, 0.1}, {0.1, 0.1}}})   -- [2, 2, 2]: unit 1 has norm 3
    optim.max_norm_(w, 1)
    H.assert_close(w[1], {{1 / 3, 2 / 3}, {2 / 3, 0}}, 1e-6, 1e-7)
    H.assert_same(w[2], dn.tensor({{0.1, 0.1}, {0.1, 0.1}}):totable())
  end)

  it("rejects bad arguments", function()
    H.assert_error(function() optim.max_norm_(dn.tensor({1, 2}), 1) end,
      {"max_norm_: weight must have at least 2 dims"})
    H.assert_error(function() optim.max_norm_(dn.zeros(2, 2), -1) end, {"max_norm_: max_norm must be"})
    H.assert_error(function() optim.max_norm_({}, 1) end, {"max_norm_: weight must be a tensor (got table)"})
    H.assert_error(function() optim.max_norm_(dn.zeros(2, 2, "int32"), 1) end,
      {"max_norm_: weight must be float32 (got int32)"})
    H.assert_error(function() optim.max_norm_(dn.zeros(3, 2):t(), 1) end,
      {"max_norm_: weight of shape [2,3] must be contiguous"})
  end)
end)

describe("core bindings", function()
  it("check option types with clear errors", function()
    local p, g = dn.zeros(2), dn.zeros(2)
    H.assert_error(function() dn.optim_sgd_step(p, g, nil, {lr = "x"}, true) end, {"option 'lr' must be a number"})
    H.assert_error(function() dn.optim_adam_step(p, g, dn.zeros(2), dn.zeros(2), 1, {maximize = 1}) end,
      {"option 'maximize' must be a boolean"})
    H.assert_error(function() dn.optim_adam_step(p, g, dn.zeros(2), dn.zeros(2), 1.5, {}) end,
      {"step must be an integer"})
    H.assert_error(function() dn.optim_rmsprop_step(p, g, dn.zeros(3), nil, nil, {}) end,
      {"rmsprop: square_avg of shape [3] does not match param of shape [2]"})
    H.assert_error(function() dn.optim_sgd_step(p, g, nil, nil, true) end, {"table expected"})
  end)
end)
