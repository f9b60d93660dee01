-- The reference documentation stays in sync with the code.
--
-- docs/lua-api.md: every public name of the Lua API, enumerated at run time
-- (the dropnet table, Tensor methods and properties, Generator, dropnet.nn and
-- its classes' methods, nn.functional, nn.init, dropnet.optim with its
-- optimizer and schedule objects, dropnet.data with its objects, dropnet.plot,
-- dropnet.checkpoint), has an entry: a heading holding its qualified name, as
-- `dn.zeros(` or `Tensor.grad`. Names starting with "_" are private. Every
-- option a function accepts (found by passing an unknown one and reading the
-- "known: ..." list of the error) is named in its entry; every function a
-- heading names exists; every ```lua example runs.
-- The C API: every DN_API declaration in runtime/include/dropnet/*.h has a
-- comment right above it (or above its group of declarations, or after it on
-- its line), and docs/c-api.md names every function.
-- The man page (docs/dropnet.1.in) covers every option of `dropnet --help`
-- and formats without warnings.
local dn = require "dropnet"
local H = require "helpers"
local checkpoint = require "dropnet.checkpoint"

local SOURCE = os.getenv("DROPNET_SOURCE_DIR") or "."
local BIN = os.getenv("DROPNET_BIN")

local read = H.read_file

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- --- docs/lua-api.md, parsed: headings (outside code fences) and sections ------------

local LUA_DOC_PATH = SOURCE .. "/docs/lua-api.md"
local lua_doc = read(LUA_DOC_PATH)
local doc_lines = {}
for line in (lua_doc .. "\n"):gmatch("(.-)\n") do doc_lines[#doc_lines + 1] = line end

local headings = {}   -- {level =, text =, line =}
do
  local fenced = false
  for i, line in ipairs(doc_lines) do
    if line:match("^```") then
      fenced = not fenced
    elseif not fenced then
      local hashes, text = line:match("^(#+)%s+(.*)$")
      if hashes then headings[#headings + 1] = {level = #hashes, text = text, line = i} end
    end
  end
end

-- The first heading naming `name`: as a call (name followed by "(") for a
-- function, as a whole name otherwise. Returns the heading and its index.
local function find_entry(name, is_function)
  local pattern = "%f[%w_%.:]" .. escape(name) .. (is_function and "%(" or "%f[^%w_]")
  for i, h in ipairs(headings) do
    if h.text:find(pattern) then return h, i end
  end
  return nil
end

-- The text of an entry: its heading down to the next heading of the same or a higher level.
local function section_of(name, is_function)
  local h, i = find_entry(name, is_function)
  if not h then return nil end
  local last = #doc_lines
  for j = i + 1, #headings do
    if headings[j].level <= h.level then
      last = headings[j].line - 1
      break
    end
  end
  return table.concat(doc_lines, "\n", h.line, last)
end

-- --- the public API at run time -----------------------------------------------------

local nn, optim, data, plot, analysis = dn.nn, dn.optim, dn.data, dn.plot, dn.analysis   -- the lazy modules
local F, init, lr_scheduler = nn.functional, nn.init, optim.lr_scheduler
local tensor_mt = getmetatable(dn.zeros(1))
local generator_methods = getmetatable(dn.Generator(1)).__index

local function public(name) return type(name) == "string" and name:sub(1, 1) ~= "_" end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    if public(k) then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

-- Required entries, in order: {name = "dn.zeros", is_function = true}.
local required, seen_required = {}, {}
local function need(name, is_function)
  if seen_required[name] then return end
  seen_required[name] = true
  required[#required + 1] = {name = name, is_function = is_function}
end

-- Every public key of t as prefix .. key (a call for functions).
local function need_all(prefix, t)
  for _, k in ipairs(sorted_keys(t)) do need(prefix .. k, type(t[k]) == "function") end
end

-- Functions found on an object's metatable chain (methods), as Class:method.
local function need_methods(prefix, t, skip)
  for _, k in ipairs(sorted_keys(t)) do
    if type(rawget(t, k)) == "function" and not (skip and skip[k]) then need(prefix .. k, true) end
  end
end

-- Plain fields of an instance, as Class.field.
local function need_fields(prefix, obj, skip)
  for _, k in ipairs(sorted_keys(obj)) do
    if type(rawget(obj, k)) ~= "function" and not (skip and skip[k]) then need(prefix .. k, false) end
  end
end

local MODULES = {"dropnet", "dropnet.nn", "dropnet.nn.functional", "dropnet.nn.init", "dropnet.optim",
  "dropnet.optim.lr_scheduler", "dropnet.data", "dropnet.plot", "dropnet.checkpoint",
  "dropnet.analysis", "dropnet.run", "dropnet.distributed"}

-- dropnet and the tensor
need_all("dn.", dn)
need_methods("Tensor:", tensor_mt.__methods)
for _, k in ipairs(sorted_keys(tensor_mt.__properties)) do need("Tensor." .. k, false) end
for _, k in ipairs(sorted_keys(tensor_mt.__setters)) do need("Tensor." .. k, false) end
need_methods("Generator:", generator_methods)
need_all("dist.", dn.distributed)

-- dropnet.nn: functions, classes, their own methods (the Module protocol's
-- init, forward and extra_repr are documented once, on Module)
local PROTOCOL = {init = true, forward = true, extra_repr = true}
local class_names = {}
for _, k in ipairs(sorted_keys(nn)) do
  local v = nn[k]
  if type(v) == "function" or (type(v) == "table" and rawget(v, "__is_module_class") ~= nil) then
    need("nn." .. k, true)
  elseif type(v) == "table" and rawget(v, "super") then
    need("nn." .. k, true)
    class_names[#class_names + 1] = k
  else
    need("nn." .. k, false)
  end
end
need_methods("Module:", nn.Module)
for _, k in ipairs(class_names) do need_methods(k .. ":", nn[k], PROTOCOL) end
need_fields("Module.", nn.Identity(), {})
need_all("F.", F)
need_all("nn.init.", init)

-- dropnet.optim: functions, the optimizer object, schedules and their objects
need_all("optim.", optim)
need_all("lr_scheduler.", lr_scheduler)
local param = dn.zeros(2):requires_grad_()
local sgd = optim.SGD({param}, {lr = 0.1, momentum = 0.9})
need_methods("Optimizer:", getmetatable(sgd))
need_fields("Optimizer.", sgd)
do
  local schedules = {
    lr_scheduler.StepLR(sgd, {step_size = 1}), lr_scheduler.ExponentialLR(sgd, {gamma = 0.5}),
    lr_scheduler.CosineAnnealingLR(sgd, {T_max = 2}), lr_scheduler.LinearWarmup(sgd, {warmup_steps = 2}),
    lr_scheduler.MomentumRamp(sgd, {steps = 2}),
  }
  for _, s in ipairs(schedules) do
    local class = getmetatable(s)
    local options = {}
    for _, c in ipairs(class._config) do options[c[1]] = true end
    need_methods(class.name .. ":", class)
    need_methods("Scheduler:", getmetatable(class).__index)
    need_fields("Scheduler.", s, options)
  end
end

-- nn.DropBlockSchedule's object
local dropblock_schedule = nn.DropBlockSchedule(nn.DropBlock2d(0, 1), {stop = 0.1, steps = 1})
need_methods("DropBlockSchedule:", getmetatable(dropblock_schedule))
need_fields("DropBlockSchedule.", dropblock_schedule)

-- dropnet.data and its objects
need_all("data.", data)
local ds = data.TensorDataset(dn.zeros(4, 2), dn.zeros(4))
need_methods("TensorDataset:", getmetatable(ds))
need_fields("TensorDataset.", ds)
local loader = data.DataLoader(ds, {batch_size = 2, generator = dn.Generator(1), transform = function(x) return x end})
need_methods("DataLoader:", getmetatable(loader))
need_fields("DataLoader.", loader)
-- the transforms, with every option set so that every field shows up
local crop = data.RandomCrop(2, {padding = 1, fill = 0, shape = {1, 2, 2}, generator = dn.Generator(1)})
local flip = data.RandomHorizontalFlip({p = 0.5, shape = {1, 2, 2}, generator = dn.Generator(1)})
local compose = data.Compose{crop, flip}
for name, t in pairs({RandomCrop = crop, RandomHorizontalFlip = flip, Compose = compose}) do
  need_methods(name .. ":", getmetatable(t))
  need_fields(name .. ".", t)
end

need_all("plot.", plot)
need_all("checkpoint.", checkpoint)
need_all("analysis.", analysis)
local tracker = analysis.track(nn.Linear(2, 2), {every = 1})
need_methods("Tracker:", getmetatable(tracker))
tracker:close()
local run = require "dropnet.run"
need_all("run.", run)
local run_csv = run.csv(os.tmpname(), {"a"})
need_methods("Csv:", getmetatable(run_csv))
local run_bar = run.progress("x", 1, {enabled = false})
need_methods("Progress:", getmetatable(run_bar))
os.remove(run_csv.path)

-- --- options, found by asking each function for the ones it knows ------------------------

local PROBE = {__probe__ = true}
local function known_options(fn)
  local ok, err = pcall(fn)
  assert(not ok, "the probe call succeeded")
  local list = tostring(err):match("unknown %a+ '__probe__' %(known: ([^)]*)%)")
  assert(list, "no 'unknown option' error: " .. tostring(err))
  local names = {}
  for name in list:gmatch("[%w_]+") do names[#names + 1] = name end
  return names
end

local x2, x3, x4, x5 = dn.zeros(2, 3), dn.zeros(2, 3, 4), dn.zeros(2, 3, 4, 4), dn.zeros(2, 3, 2, 2, 2)
local labels = dn.tensor({1, 2}, "int32")
local function w() return dn.zeros(3, 3) end
local momentum_opt = optim.SGD({dn.zeros(1):requires_grad_()}, {lr = 0.1, momentum = 0.5})

local PROBES = {
  {"dn.histogram", function() return dn.histogram(dn.zeros(2), PROBE) end},
  {"nn.Linear", function() return nn.Linear(2, 2, PROBE) end},
  {"analysis.gradient_noise",
    function() return analysis.gradient_noise(nn.Linear(3, 1), F.mse_loss, x2, x2, PROBE) end},
  {"analysis.activation_stats", function() return analysis.activation_stats(x2, PROBE) end},
  {"run.progress", function() return run.progress("x", 1, PROBE) end},
  {"analysis.track", function() return analysis.track(nn.Linear(2, 2), PROBE) end},
  {"Linear:reset_parameters", function() return nn.Linear(2, 2):reset_parameters(PROBE) end},
  {"nn.Dropout", function() return nn.Dropout(0.5, PROBE) end},
  {"nn.Dropout1d", function() return nn.Dropout1d(0.5, PROBE) end},
  {"nn.Dropout2d", function() return nn.Dropout2d(0.5, PROBE) end},
  {"nn.Dropout3d", function() return nn.Dropout3d(0.5, PROBE) end},
  {"nn.LockedDropout", function() return nn.LockedDropout(0.5, PROBE) end},
  {"nn.AlphaDropout", function() return nn.AlphaDropout(0.5, PROBE) end},
  {"nn.GaussianDropout", function() return nn.GaussianDropout(0.5, PROBE) end},
  {"nn.DropConnect", function() return nn.DropConnect(nn.Linear(2, 2), 0.5, PROBE) end},
  {"nn.DropBlock2d", function() return nn.DropBlock2d(0.1, 2, PROBE) end},
  {"nn.DropBlockSchedule", function() return nn.DropBlockSchedule(nn.DropBlock2d(0.1, 2), PROBE) end},
  {"nn.mc_predict", function() return nn.mc_predict(nn.Identity(), x2, 1, PROBE) end},
  {"nn.LeakyReLU", function() return nn.LeakyReLU(PROBE) end},
  {"nn.ELU", function() return nn.ELU(PROBE) end},
  {"nn.GELU", function() return nn.GELU(PROBE) end},
  {"nn.Softmax", function() return nn.Softmax(PROBE) end},
  {"nn.LogSoftmax", function() return nn.LogSoftmax(PROBE) end},
  {"nn.CrossEntropyLoss", function() return nn.CrossEntropyLoss(PROBE) end},
  {"nn.NLLLoss", function() return nn.NLLLoss(PROBE) end},
  {"nn.MSELoss", function() return nn.MSELoss(PROBE) end},
  {"nn.BCEWithLogitsLoss", function() return nn.BCEWithLogitsLoss(PROBE) end},
  {"Module:load_state_dict", function() return nn.Identity():load_state_dict({}, PROBE) end},
  {"nn.MaxPool2d", function() return nn.MaxPool2d(2, PROBE) end},
  {"nn.AvgPool2d", function() return nn.AvgPool2d(2, PROBE) end},
  {"nn.MaxPool1d", function() return nn.MaxPool1d(2, PROBE) end},
  {"nn.AvgPool1d", function() return nn.AvgPool1d(2, PROBE) end},
  {"F.max_pool2d", function() return F.max_pool2d(x4, 2, PROBE) end},
  {"F.avg_pool2d", function() return F.avg_pool2d(x4, 2, PROBE) end},
  {"F.max_pool1d", function() return F.max_pool1d(x3, 2, PROBE) end},
  {"F.avg_pool1d", function() return F.avg_pool1d(x3, 2, PROBE) end},
  {"nn.BatchNorm1d", function() return nn.BatchNorm1d(3, PROBE) end},
  {"nn.BatchNorm2d", function() return nn.BatchNorm2d(3, PROBE) end},
  {"F.batch_norm", function() return F.batch_norm(x2, nil, nil, PROBE) end},
  {"F.batch_norm_relu_max_pool2d", function() return F.batch_norm_relu_max_pool2d(x4, nil, nil, PROBE) end},
  {"nn.LayerNorm", function() return nn.LayerNorm(3, PROBE) end},
  {"nn.GroupNorm", function() return nn.GroupNorm(1, 3, PROBE) end},
  {"F.layer_norm", function() return F.layer_norm(x2, 3, PROBE) end},
  {"F.group_norm", function() return F.group_norm(x2, 1, PROBE) end},
  {"F.gelu", function() return F.gelu(x2, PROBE) end},
  {"F.dropout", function() return F.dropout(x2, 0.5, true, PROBE) end},
  {"F.dropout1d", function() return F.dropout1d(x3, 0.5, true, PROBE) end},
  {"F.dropout2d", function() return F.dropout2d(x4, 0.5, true, PROBE) end},
  {"F.dropout3d", function() return F.dropout3d(x5, 0.5, true, PROBE) end},
  {"F.locked_dropout", function() return F.locked_dropout(x3, 0.5, true, PROBE) end},
  {"F.dropblock2d", function() return F.dropblock2d(x4, 0.5, 2, true, PROBE) end},
  {"F.alpha_dropout", function() return F.alpha_dropout(x2, 0.5, true, PROBE) end},
  {"F.gaussian_dropout", function() return F.gaussian_dropout(x2, 0.5, true, PROBE) end},
  {"F.dropconnect_linear", function() return F.dropconnect_linear(x2, w(), nil, 0.5, true, PROBE) end},
  {"F.cross_entropy", function() return F.cross_entropy(x2, labels, PROBE) end},
  {"F.nll_loss", function() return F.nll_loss(x2, labels, PROBE) end},
  {"F.mse_loss", function() return F.mse_loss(x2, x2, PROBE) end},
  {"F.binary_cross_entropy_with_logits", function() return F.binary_cross_entropy_with_logits(x2, x2, PROBE) end},
  {"nn.init.uniform_", function() return init.uniform_(w(), PROBE) end},
  {"nn.init.normal_", function() return init.normal_(w(), PROBE) end},
  {"nn.init.xavier_uniform_", function() return init.xavier_uniform_(w(), PROBE) end},
  {"nn.init.xavier_normal_", function() return init.xavier_normal_(w(), PROBE) end},
  {"nn.init.kaiming_uniform_", function() return init.kaiming_uniform_(w(), PROBE) end},
  {"nn.init.kaiming_normal_", function() return init.kaiming_normal_(w(), PROBE) end},
  {"optim.SGD", function() return optim.SGD({param}, PROBE) end},
  {"optim.Adam", function() return optim.Adam({param}, PROBE) end},
  {"optim.AdamW", function() return optim.AdamW({param}, PROBE) end},
  {"optim.RMSprop", function() return optim.RMSprop({param}, PROBE) end},
  {"Optimizer:add_param_group", function() return sgd:add_param_group({params = {dn.zeros(1)}, __probe__ = 1}) end},
  {"lr_scheduler.StepLR", function() return lr_scheduler.StepLR(sgd, PROBE) end},
  {"lr_scheduler.ExponentialLR", function() return lr_scheduler.ExponentialLR(sgd, PROBE) end},
  {"lr_scheduler.CosineAnnealingLR", function() return lr_scheduler.CosineAnnealingLR(sgd, PROBE) end},
  {"lr_scheduler.LinearWarmup", function() return lr_scheduler.LinearWarmup(sgd, PROBE) end},
  {"lr_scheduler.MomentumRamp", function() return lr_scheduler.MomentumRamp(momentum_opt, PROBE) end},
  {"data.csv", function() return data.csv("never-read.csv", PROBE) end},
  {"data.random_split", function() return data.random_split(ds, 1, PROBE) end},
  {"data.DataLoader", function() return data.DataLoader(ds, PROBE) end},
  {"data.RandomCrop", function() return data.RandomCrop(2, PROBE) end},
  {"data.RandomHorizontalFlip", function() return data.RandomHorizontalFlip(PROBE) end},
  {"data.fashion_mnist", function() return data.fashion_mnist(PROBE) end},
  {"plot.line_chart", function() return plot.line_chart(PROBE) end},
  {"plot.line_chart", function() return plot.line_chart{series = {{y = {1}, __probe__ = true}}} end},
  {"plot.panels", function() return plot.panels({{series = {}}}, PROBE) end},
}

-- Options read by the C module, which ignores unknown keys: listed here.
local C_OPTIONS = {
  {"dn.tensor", {"dtype", "requires_grad"}},
  {"Tensor:backward", {"retain_graph"}},
  {"dn.csv_read", {"delimiter", "header"}},
  {"dn.rand", {"generator"}},
  {"dn.randn", {"generator"}},
  {"dn.optim_sgd_step", {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"}},
  {"dn.optim_adam_step", {"lr", "beta1", "beta2", "eps", "weight_decay", "decoupled_weight_decay", "maximize"}},
  {"dn.optim_rmsprop_step", {"lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"}},
}

local function option_named(section, option)
  local e = escape(option)
  return section:find("`" .. e .. "`", 1) ~= nil or section:find("%f[%w_]" .. e .. " =") ~= nil
end

-- --- the C headers ------------------------------------------------------------------------

-- Every header dropnet.h includes (version.h is generated), export.h and dropnet.h itself: a new header
-- is checked as soon as dropnet.h includes it.
local HEADERS = {"export", "dropnet"}
for name in read(SOURCE .. "/runtime/include/dropnet/dropnet.h"):gmatch('#include "dropnet/([%w_]+)%.h"') do
  if name ~= "version" and name ~= "export" then HEADERS[#HEADERS + 1] = name end
end

-- {name =, header =, line =, documented =} for every DN_API declaration.
local function c_declarations()
  local out = {}
  for _, header in ipairs(HEADERS) do
    local path = SOURCE .. "/runtime/include/dropnet/" .. header .. ".h"
    local lines = {}
    for line in io.lines(path) do lines[#lines + 1] = line end
    local in_decl, starts = {}, {}
    local i = 1
    while i <= #lines do
      if lines[i]:match("^DN_API") then
        starts[#starts + 1] = i
        while i < #lines and not lines[i]:find(";", 1, true) do
          in_decl[i] = true
          i = i + 1
        end
        in_decl[i] = true
      end
      i = i + 1
    end
    for _, s in ipairs(starts) do
      local text = table.concat(lines, " ", s, math.min(s + 3, #lines))
      local name = text:match("([%a_][%w_]*)%s*%(")
      local j = s - 1
      while j > 0 and in_decl[j] do j = j - 1 end
      local above = j > 0 and lines[j]:match("%*/%s*$") ~= nil
      local trailing = lines[s]:match(";%s*/%*.*%*/%s*$") ~= nil
      out[#out + 1] = {name = name, header = header, line = s, documented = above or trailing}
    end
  end
  return out
end

-- --- the specs --------------------------------------------------------------------------------

describe("docs/lua-api.md", function()
  it("has a heading for every module", function()
    local missing = {}
    for _, m in ipairs(MODULES) do
      if not find_entry(m, false) then missing[#missing + 1] = m end
    end
    assert(#missing == 0, "modules without a heading in docs/lua-api.md: " .. table.concat(missing, ", "))
  end)

  it("has an entry for every public function, class, method and field", function()
    assert.is_true(#required > 250, "the enumeration found only " .. #required .. " names")
    local missing = {}
    for _, r in ipairs(required) do
      if not find_entry(r.name, r.is_function) then
        missing[#missing + 1] = r.name .. (r.is_function and "(" or "")
      end
    end
    assert(#missing == 0, #missing .. " public names have no entry (a heading naming them) in docs/lua-api.md:\n  "
      .. table.concat(missing, "\n  "))
  end)

  it("names every option in the entry of the function that takes it", function()
    local problems, probed = {}, 0
    local function check(entry, options)
      local section = section_of(entry, true)
      if not section then
        problems[#problems + 1] = entry .. "(: no entry"
        return
      end
      for _, option in ipairs(options) do
        probed = probed + 1
        if not option_named(section, option) then
          problems[#problems + 1] = string.format("%s(: option '%s' is not mentioned", entry, option)
        end
      end
    end
    for _, p in ipairs(PROBES) do check(p[1], known_options(p[2])) end
    for _, c in ipairs(C_OPTIONS) do check(c[1], c[2]) end
    assert.is_true(probed > 120, "only " .. probed .. " options were checked")
    assert(#problems == 0, "options missing from docs/lua-api.md:\n  " .. table.concat(problems, "\n  "))
  end)

  it("documents only functions that exist", function()
    local scopes = {
      {"dn.", dn}, {"Tensor:", tensor_mt.__methods}, {"Generator:", generator_methods},
      {"nn.init.", init}, {"nn.", nn}, {"F.", F}, {"Module:", nn.Module}, {"optim.", optim},
      {"lr_scheduler.", lr_scheduler}, {"Optimizer:", getmetatable(sgd)}, {"data.", data},
      {"TensorDataset:", getmetatable(ds)}, {"DataLoader:", getmetatable(loader)}, {"plot.", plot},
      {"checkpoint.", checkpoint}, {"analysis.", analysis}, {"Tracker:", getmetatable(tracker)}, {"run.", run},
      {"Csv:", getmetatable(run_csv)},
      {"Progress:", getmetatable(run_bar)},
      {"Sequential:", nn.Sequential}, {"ModuleList:", nn.ModuleList},
      {"RandomCrop:", getmetatable(crop)}, {"RandomHorizontalFlip:", getmetatable(flip)},
      {"Compose:", getmetatable(compose)},
      {"Linear:", nn.Linear},
      {"Scheduler:", getmetatable(getmetatable(lr_scheduler.StepLR(sgd, {step_size = 1}))).__index},
      {"MomentumRamp:", getmetatable(lr_scheduler.MomentumRamp(momentum_opt, {steps = 1}))},
      {"DropBlockSchedule:", getmetatable(dropblock_schedule)},
    }
    local unknown = {}
    for _, h in ipairs(headings) do
      for _, scope in ipairs(scopes) do
        for name in h.text:gmatch("%f[%w_%.:]" .. escape(scope[1]) .. "([%w_]+)%(") do
          if scope[2][name] == nil then unknown[#unknown + 1] = scope[1] .. name .. "( in: " .. h.text end
        end
      end
    end
    assert(#unknown == 0, "headings name functions that do not exist:\n  " .. table.concat(unknown, "\n  "))
  end)

  it("has Lua examples that run", function()
    local blocks = {}
    for code in lua_doc:gmatch("```lua\n(.-)```") do blocks[#blocks + 1] = code end
    assert.is_true(#blocks >= 10, "expected examples in docs/lua-api.md")
    for i, code in ipairs(blocks) do
      local env = setmetatable({print = function() end}, {__index = _G})
      local chunk, err = load(code, "=docs/lua-api.md example " .. i, "t", env)
      assert(chunk, err)
      local ok, run_err = pcall(chunk)
      assert(ok, "example " .. i .. " failed: " .. tostring(run_err) .. "\n" .. code)
    end
  end)
end)

describe("the C API documentation", function()
  local declarations = c_declarations()

  it("finds the declarations", function()
    assert.is_true(#declarations > 100)
  end)

  it("has a comment on every DN_API declaration (above it, above its group, or on its line)", function()
    local bare = {}
    for _, d in ipairs(declarations) do
      if not d.documented then bare[#bare + 1] = string.format("%s.h:%d %s", d.header, d.line, d.name) end
    end
    assert(#bare == 0, "undocumented declarations:\n  " .. table.concat(bare, "\n  "))
  end)

  it("lists every function in docs/c-api.md", function()
    local c_doc = read(SOURCE .. "/docs/c-api.md")
    local missing = {}
    for _, d in ipairs(declarations) do
      if not c_doc:find("%f[%w_]" .. escape(d.name) .. "%f[^%w_]") then missing[#missing + 1] = d.name end
    end
    assert(#missing == 0, "functions missing from docs/c-api.md: " .. table.concat(missing, ", "))
  end)
end)

describe("the man page", function()
  local MAN_PATH = SOURCE .. "/docs/dropnet.1.in"
  local man = read(MAN_PATH)
  local plain = man:gsub("\\%-", "-")

  it("has the usual sections", function()
    for _, section in ipairs({"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "EXIT STATUS",
                              "EXAMPLES", "FILES", "SEE ALSO"}) do
      assert.truthy(man:find("\n%.SH " .. escape(section) .. "\n") or man:find('\n%.SH "' .. section .. '"'),
        "no .SH " .. section)
    end
    for _, variable in ipairs({"DROPNET_DATA", "OMP_NUM_THREADS", "DROPNET_SGEMM"}) do
      assert.truthy(man:find(variable, 1, true), variable .. " is not described")
    end
  end)

  it("describes every option of dropnet --help", function()
    if not BIN then
      pending("DROPNET_BIN is not set")
      return
    end
    local p = assert(io.popen("'" .. BIN:gsub("'", "'\\''") .. "' --help"))
    local help = p:read("a")
    p:close()
    local options = {}
    for option in help:gmatch("\n%s+(%-%-?[%w-]+)") do options[#options + 1] = option end
    assert.is_true(#options >= 7, "could not read the options from --help:\n" .. help)
    for _, option in ipairs(options) do
      if option ~= "-" then
        assert.truthy(plain:find("%.B[IR]? " .. escape(option) .. "%f[^%w-]"),
          "the man page has no .B/.BI entry for " .. option)
      end
    end
  end)

  it("formats without warnings", function()
    local groff = io.popen("command -v groff"):read("a")
    if groff == "" then
      pending("groff is not installed (Debian package groff-base)")
      return
    end
    -- (without the sanitizer runtimes a DN_SANITIZE build preloads into this process)
    local p = assert(io.popen("env -u LD_PRELOAD groff -man -Tutf8 -ww -z '" .. MAN_PATH:gsub("'", "'\\''")
      .. "' 2>&1"))
    local warnings = p:read("a")
    p:close()
    assert.are.equal("", warnings)
  end)
end)

-- --- docs/internals.md: the contributors' map names only files that exist --------------

describe("docs/internals.md", function()
  -- A bare name (`tensor.c`, `test_gemm.c`, `nn_spec.lua`) is looked up in the folders
  -- its kind lives in; a name with a slash is relative to the top or to the Lua library.
  local FOLDERS = {"runtime/src", "runtime/include/dropnet", "tests/c", "tests/spec", "bindings",
    "bindings/lua/dropnet", "bindings/lua/dropnet/nn", "docs", "tests/layers", "scripts"}

  local function exists(path)
    local f = io.open(SOURCE .. "/" .. path, "r")
    if f then f:close() end
    return f ~= nil
  end

  it("names only files that exist", function()
    local text = read(SOURCE .. "/docs/internals.md")
    local names = {}
    for _, pattern in ipairs{"`([%w_%./%-]+%.[ch])`", "`([%w_%./%-]+%.lua)`", "`([%w_%./%-]+%.md)`",
                             "`([%w_%./%-]+%.sh)`"} do
      for name in text:gmatch(pattern) do names[#names + 1] = name end
    end
    local absent = {}
    for _, name in ipairs(names) do
      local found = exists(name) or exists("bindings/lua/dropnet/" .. name)
      if not name:find("/") then
        for _, folder in ipairs(FOLDERS) do found = found or exists(folder .. "/" .. name) end
      end
      if not found then absent[#absent + 1] = name end
    end
    assert.is_true(#names >= 40, "read only " .. #names .. " file names from docs/internals.md")
    assert.are.same({}, absent)
  end)

  it("is linked from the README", function()
    assert.truthy(read(SOURCE .. "/README.md"):find("docs/internals.md", 1, true))
  end)
end)
