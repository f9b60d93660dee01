-- scripts/experiments/dropout_gradients.lua — what dropout does to gradient propagation, measured:
-- sweeps of the dropout rate, its placement and its timing on MLPs over the 8x8 digits and Fashion-MNIST,
-- several seeds, and a report (report.md with tables and SVG figures) that states each prediction from
-- the literature next to the measurement and whether they agree.
--
--   dropnet scripts/experiments/dropout_gradients.lua [--quick] [--out DIR] [--seed N] [--threads N]
--
-- Measurements (details in the report it writes):
--   M1  gradient variance across dropout masks against alpha = p/(1-p) (Kingma et al. 2015)
--   M2  gradient direction variance and direction error over early training, and the final training loss,
--       for no / early / full dropout (Liu et al. 2023)
--   M3  activation sparsity, mean activation and co-adaptation against p (Srivastava et al. 2014)
--   M4  Monte Carlo averaging over k masks against weight scaling; predictive variance on misclassified
--       against correct inputs (Srivastava et al. 2014; Gal and Ghahramani 2016)
--   M5  per-layer gradient signal-to-noise ratio against p
--   plus per-layer gradient norms over training and the generalization gap against p.
local dn = require "dropnet"
local nn, optim, data, plot, analysis = dn.nn, dn.optim, dn.data, dn.plot, dn.analysis
local run = require "dropnet.run"

local usage = [[
usage: dropnet scripts/experiments/dropout_gradients.lua [options]

Sweeps dropout (rate, placement, early dropout) on MLPs over the 8x8 digits and Fashion-MNIST, measures
what it does to gradients and activations, and writes report.md with tables and SVG figures.

options:
  --quick        the short version (about 2 minutes): fewer seeds, epochs and samples
  --datasets L   comma-separated: digits,fashion (default both)
  --seeds N      seeds per configuration (default 5; --quick: 2)
  --seed N       first seed (default 1)
  --threads N    threads (default 2)
  --data DIR     directory with the Fashion-MNIST files (default: $DROPNET_DATA or Debian's)
  --out DIR      output directory (default runs/<timestamp>)
  --help         this text
]]

local function fail(fmt, ...)
  io.stderr:write("dropout_gradients.lua: ", string.format(fmt, ...), "\n")
  os.exit(2)
end

local parsed, opts = pcall(run.parse_args, arg, {{"quick", "flag", false}, {"datasets", "string", "digits,fashion"},
  {"seeds", "int"}, {"seed", "int", 1}, {"threads", "int", 2}, {"data", "string"}, {"out", "string"}})
if not parsed then fail("%s", opts) end
if opts.help then
  io.write(usage)
  os.exit(0)
end
if opts.threads < 1 then fail("--threads must be at least 1 (got %d)", opts.threads) end
opts.seeds = opts.seeds or (opts.quick and 2 or 5)
if opts.seeds < 2 then fail("--seeds must be at least 2 for a confidence interval (got %d)", opts.seeds) end
dn.set_num_threads(opts.threads)
local made, out = pcall(run.directory, opts.out)
if not made then fail("%s", out) end

local RATES = {0, 0.1, 0.2, 0.3, 0.5, 0.7}
local MC_SAMPLES = opts.quick and {1, 2, 5, 10} or {1, 2, 5, 10, 20, 50}
local MASKS = opts.quick and 8 or 32         -- masks per gradient-noise estimate (M1, M5)
local PROBE_MASKS = opts.quick and 64 or 256 -- masks for M1's exact linear case (cheap)
local NOISE_BATCHES = opts.quick and 4 or 8  -- minibatches for the variance across minibatches
local EARLY_P = 0.1                          -- Liu et al. use small rates for early dropout
local PLACEMENT_P = 0.3
local BATCH = 64

-- --- data --------------------------------------------------------------------------------------

-- Each dataset: train and test TensorDatasets, input width, epochs, learning rate.
local function load_datasets()
  local sets = {}
  for name in opts.datasets:gmatch("[^,]+") do
    if name == "digits" then
      local train, test = data.random_split(data.digits(), 1297, {generator = dn.Generator(1000)})
      sets[#sets + 1] = {name = "digits", label = "8x8 digits", train = train, test = test, inputs = 64,
        hidden = 128, epochs = opts.quick and 15 or 40, lr = 0.05}
    elseif name == "fashion" then
      local ok, train = pcall(data.fashion_mnist, {split = "train", dir = opts.data, normalize = true})
      if not ok then fail("%s", train) end
      local test = data.fashion_mnist{split = "test", dir = opts.data, normalize = true}
      -- a subset keeps the sweep within its time budget; the test split is used whole (or its first part)
      local n_train = math.min(#train, opts.quick and 4000 or 30000)
      local n_test = math.min(#test, opts.quick and 2000 or 10000)
      train = train:subset(dn.arange(1, n_train + 1):int())
      test = test:subset(dn.arange(1, n_test + 1):int())
      sets[#sets + 1] = {name = "fashion", label = "Fashion-MNIST", train = train, test = test, inputs = 784,
        hidden = 256, epochs = opts.quick and 3 or 10, lr = 0.02}
    else
      fail("--datasets: unknown dataset '%s' (known: digits, fashion)", name)
    end
  end
  if #sets == 0 then fail("--datasets names no dataset") end
  return sets
end

-- --- models and training -------------------------------------------------------------------------

-- MLP inputs-hidden-hidden-10 with ReLU; dropout p_in on the input and p_hidden after each hidden layer
-- (modules kept, at p = 0 too, so every configuration has the same layout and the same initial weights).
local function build(ds, p_in, p_hidden, seed)
  dn.manual_seed(seed)
  local model = nn.Sequential(nn.Dropout(p_in), nn.Linear(ds.inputs, ds.hidden), nn.ReLU(), nn.Dropout(p_hidden),
    nn.Linear(ds.hidden, ds.hidden), nn.ReLU(), nn.Dropout(p_hidden), nn.Linear(ds.hidden, 10))
  return model
end
local LINEARS = {2, 5, 8}        -- positions of the Linear layers in the Sequential
local HIDDEN = {3, 6}            -- positions of the ReLUs whose outputs are the hidden activations
local DROPOUTS = {1, 4, 7}
local LAYER_NAMES = {"layer 1", "layer 2", "layer 3"}

local loss_fn = nn.CrossEntropyLoss()

-- Eval-mode loss and accuracy over a whole set.
local function measure(model, set)
  model:eval()
  local loss, acc = 0, 0
  dn.no_grad(function()
    for x, y in data.DataLoader(set, {batch_size = 1000}):iter() do
      local logits = model(x)
      local n = y:size(1)
      loss = loss + loss_fn(logits, y):item() * n
      acc = acc + logits:argmax(2):eq(y):sum():item()
    end
  end)
  model:train()
  return loss / #set, acc / #set
end

-- Fixed minibatches of a set (the first n batches of a seeded shuffle), as {x, y} pairs.
local function fixed_batches(set, n, seed)
  local list = {}
  for x, y in data.DataLoader(set, {batch_size = BATCH, shuffle = true, drop_last = true,
      generator = dn.Generator(seed)}):iter() do
    list[#list + 1] = {x, y}
    if #list == n then break end
  end
  return list
end

-- Trains one configuration; returns the model and per-epoch records. spec: p_in, p_hidden, seed, and
-- early (epochs with dropout on; after them every dropout module's p is set to 0), on_step(model, step).
local function train(ds, spec)
  local model = build(ds, spec.p_in, spec.p_hidden, spec.seed)
  local opt = optim.SGD(model:parameters(), {lr = ds.lr, momentum = 0.9})
  local schedule = optim.lr_scheduler.CosineAnnealingLR(opt, {T_max = ds.epochs})
  local loader = data.DataLoader(ds.train, {batch_size = BATCH, shuffle = true, generator = dn.Generator(spec.seed)})
  local history, step = {}, 0
  for epoch = 1, ds.epochs do
    if spec.early and epoch == spec.early + 1 then
      for _, i in ipairs(DROPOUTS) do model[i].p = 0 end
    end
    local norms, steps = {0, 0, 0}, 0
    for x, y in loader:iter() do
      if spec.on_step then spec.on_step(model, step) end
      local loss = loss_fn(model(x), y)
      opt:zero_grad()
      loss:backward()
      for k, i in ipairs(LINEARS) do norms[k] = norms[k] + optim.grad_norm({model[i].weight}) end
      steps, step = steps + 1, step + 1
      opt:step()
    end
    schedule:step()
    local h = {epoch = epoch}
    for k = 1, 3 do h["grad_norm_" .. k] = norms[k] / steps end
    history[epoch] = h
  end
  local final = {}
  final.train_loss, final.train_acc = measure(model, ds.train)
  final.test_loss, final.test_acc = measure(model, ds.test)
  return model, history, final
end

-- --- statistics --------------------------------------------------------------------------------

-- Two-sided 97.5% quantiles of Student's t for n - 1 degrees of freedom.
local T975 = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262}

-- Mean and half-width of the 95% confidence interval of a list of numbers.
local function mean_ci(v)
  local n, s = #v, 0
  for _, x in ipairs(v) do s = s + x end
  local m = s / n
  if n < 2 then return m, 0 / 0 end
  local ss = 0
  for _, x in ipairs(v) do ss = ss + (x - m) ^ 2 end
  local t = T975[n - 1] or 1.96
  return m, t * math.sqrt(ss / (n - 1) / n)
end

-- Least-squares slope of y on x.
local function slope(xs, ys)
  local n, mx, my = #xs, 0, 0
  for i = 1, n do mx, my = mx + xs[i] / n, my + ys[i] / n end
  local sxy, sxx = 0, 0
  for i = 1, n do sxy, sxx = sxy + (xs[i] - mx) * (ys[i] - my), sxx + (xs[i] - mx) ^ 2 end
  return sxy / sxx
end

local function fmt_ci(m, h, digits)
  local f = "%." .. (digits or 3) .. "f"
  if h ~= h then return string.format(f, m) end
  return string.format(f .. " ± " .. f, m, h)
end

local function fmt_g(v) return string.format("%.3g", v) end

-- "mean ± half-width" of a list of numbers.
local function ci(v, digits)
  local m, h = mean_ci(v)
  return fmt_ci(m, h, digits)
end

-- --- the run -----------------------------------------------------------------------------------

local t_start = dn.clock()
local datasets = load_datasets()
local seeds = {}
for i = 1, opts.seeds do seeds[i] = opts.seed + i - 1 end

local runs_csv = run.csv(out .. "/runs.csv", {"dataset", "config", "p_in", "p_hidden", "early", "seed",
  "train_loss", "test_loss", "train_acc", "test_acc", "gap"})
local noise_csv = run.csv(out .. "/noise.csv", {"dataset", "seed", "p", "layer", "norm", "mask_variance", "snr",
  "batch_variance", "variance_ratio"})
local direction_csv = run.csv(out .. "/direction.csv", {"dataset", "config", "seed", "step", "direction_variance",
  "direction_error"})
local activation_csv = run.csv(out .. "/activations.csv", {"dataset", "seed", "p", "layer", "mean", "sparsity",
  "dead", "mean_abs_correlation"})
local mc_csv = run.csv(out .. "/mc.csv", {"dataset", "seed", "k", "mc_accuracy", "scaling_accuracy",
  "variance_wrong", "variance_right"})

-- how many training runs, for the progress bar
local total_runs = #datasets * #seeds * (#RATES + 2 + 3)
local bar = run.progress("runs", total_runs, {unit_name = "runs"})
local done = 0
local function tick(text)
  done = done + 1
  bar:update(done, text)
end

local results = {}
for _, ds in ipairs(datasets) do
  local R = {ds = ds, sweep = {}, noise = {}, probe = {}, placement = {}, early = {}, activations = {}, mc = {}}
  results[#results + 1] = R
  for _, seed in ipairs(seeds) do
    local noise_x = fixed_batches(ds.train, NOISE_BATCHES + 1, seed + 500)
    local probe = noise_x[1]
    local minibatches = {table.unpack(noise_x, 2)}

    -- the p sweep (dropout after each hidden layer): final losses, gradient norms, activations, MC
    local base_model
    for _, p in ipairs(RATES) do
      local model, history, final = train(ds, {p_in = 0, p_hidden = p, seed = seed})
      if p == 0 then base_model = model end
      runs_csv:add{ds.name, "hidden", 0, p, 0, seed, final.train_loss, final.test_loss, final.train_acc,
        final.test_acc, final.test_loss - final.train_loss}
      R.sweep[p] = R.sweep[p] or {}
      table.insert(R.sweep[p], {history = history, final = final})
      -- M3: hidden activations on the test set in eval mode
      local x = ds.test:tensor(1):narrow(1, 1, math.min(#ds.test, 2000))
      model:eval()
      dn.no_grad(function()
        local h = x
        for i = 1, HIDDEN[#HIDDEN] do
          h = model[i](h)
          for k, j in ipairs(HIDDEN) do
            if i == j then
              local st, co = analysis.activation_stats(h), analysis.coadaptation(h)
              activation_csv:add{ds.name, seed, p, k, st.mean, st.sparsity, st.dead, co.mean_abs_correlation}
              R.activations[p] = R.activations[p] or {}
              R.activations[p][k] = R.activations[p][k] or {}
              table.insert(R.activations[p][k], {mean = st.mean, sparsity = st.sparsity, dead = st.dead,
                corr = co.mean_abs_correlation})
            end
          end
        end
      end)
      model:train()
      -- M4: MC averaging against weight scaling, for p = 0.5
      if p == 0.5 then
        local probs = nn.Sequential(model, nn.Softmax(2))
        local y = ds.test:tensor(2):narrow(1, 1, x:shape()[1])
        model:eval()
        local scaling_acc = dn.no_grad(function() return model(x):argmax(2):eq(y):float():mean():item() end)
        for _, k in ipairs(MC_SAMPLES) do
          local mean, var = nn.mc_predict(probs, x, k, {generator = dn.Generator(seed * 100 + k)})
          local pred = mean:argmax(2)
          local right = pred:eq(y):float()
          local spread = var:sum(2)                                  -- summed over the classes
          local n_right = right:sum():item()
          local n_wrong = right:numel() - n_right
          local v_right = n_right > 0 and (spread * right):sum():item() / n_right or 0 / 0
          local v_wrong = n_wrong > 0 and (spread * (1 - right)):sum():item() / n_wrong or 0 / 0
          mc_csv:add{ds.name, seed, k, n_right / right:numel(), scaling_acc, v_wrong, v_right}
          R.mc[k] = R.mc[k] or {}
          table.insert(R.mc[k], {acc = n_right / right:numel(), scaling = scaling_acc, v_wrong = v_wrong,
            v_right = v_right})
        end
      end
      tick(string.format("%s seed %d p %.1f", ds.name, seed, p))
    end

    -- M1, M5: gradient noise at the weights of the trained no-dropout model, for every p
    local state = base_model:state_dict()
    for _, p in ipairs(RATES) do
      if p > 0 then
        -- the exact case first: dropout on the input of a linear unit, loss = sum of outputs
        dn.manual_seed(seed)
        local probe_model = nn.Sequential(nn.Dropout(p), nn.Linear(ds.inputs, 1, {bias = false}))
        local x = probe[1]
        local exact = analysis.gradient_noise(probe_model, function(o) return o:sum() end, x, nil,
          {masks = PROBE_MASKS})["2.weight"].mask_variance
        R.probe[p] = R.probe[p] or {}
        table.insert(R.probe[p], exact / (p / (1 - p) * (x * x):sum():item()))
        local model = build(ds, 0, p, seed)
        model:load_state_dict(state)
        dn.manual_seed(seed * 7919 + math.floor(p * 100))
        local per = analysis.gradient_noise(model, loss_fn, probe[1], probe[2], {masks = MASKS, batches = minibatches})
        for k, i in ipairs(LINEARS) do
          local r = per[i .. ".weight"]
          noise_csv:add{ds.name, seed, p, k, r.norm, r.mask_variance, r.snr, r.batch_variance, r.variance_ratio}
          R.noise[p] = R.noise[p] or {}
          R.noise[p][k] = R.noise[p][k] or {}
          table.insert(R.noise[p][k], r)
        end
      end
    end

    -- placement: input only and both (hidden only is the sweep's p = PLACEMENT_P)
    for _, pl in ipairs({{"input", PLACEMENT_P, 0}, {"both", PLACEMENT_P, PLACEMENT_P}}) do
      local _, _, final = train(ds, {p_in = pl[2], p_hidden = pl[3], seed = seed})
      runs_csv:add{ds.name, pl[1], pl[2], pl[3], 0, seed, final.train_loss, final.test_loss, final.train_acc,
        final.test_acc, final.test_loss - final.train_loss}
      R.placement[pl[1]] = R.placement[pl[1]] or {}
      table.insert(R.placement[pl[1]], final)
      tick(string.format("%s seed %d %s", ds.name, seed, pl[1]))
    end

    -- M2: no / early / full dropout at EARLY_P, direction statistics over the first epoch
    local early_epochs = math.max(1, ds.epochs // 4)
    local direction_batches = fixed_batches(ds.train, 8, seed + 900)
    local full_batches = fixed_batches(ds.train, 16, seed + 901)
    local every = math.max(1, (#ds.train // BATCH) // 8)
    for _, cfg in ipairs({{"none", 0, nil}, {"early", EARLY_P, early_epochs}, {"full", EARLY_P, nil}}) do
      local points = {}
      local _, _, final = train(ds, {p_in = 0, p_hidden = cfg[2], seed = seed, early = cfg[3],
        on_step = function(model, step)
          if step % every == 0 and step <= 8 * every then
            local d = analysis.gradient_direction(model, loss_fn, direction_batches, {full = full_batches})
            direction_csv:add{ds.name, cfg[1], seed, step, d.direction_variance, d.direction_error}
            points[#points + 1] = d
          end
        end})
      runs_csv:add{ds.name, cfg[1] .. " dropout", 0, cfg[2], cfg[3] or (cfg[2] > 0 and ds.epochs or 0), seed,
        final.train_loss, final.test_loss, final.train_acc, final.test_acc, final.test_loss - final.train_loss}
      R.early[cfg[1]] = R.early[cfg[1]] or {}
      table.insert(R.early[cfg[1]], {points = points, final = final})
      tick(string.format("%s seed %d %s dropout", ds.name, seed, cfg[1]))
    end
  end
end
bar:close()

-- --- figures and the report -------------------------------------------------------------------------

local report = {}
local function say(fmt, ...) report[#report + 1] = select("#", ...) > 0 and string.format(fmt, ...) or fmt end
local function agree(ok) return ok and "**agrees**" or "**does not agree**" end

local function list_of(records, key)
  local v = {}
  for i, r in ipairs(records) do v[i] = r[key] end
  return v
end

say("# What dropout does to gradient propagation: measurements")
say("")
say("Generated by `dropnet scripts/experiments/dropout_gradients.lua%s` (dropnet %s, %d seeds, %s); do not edit by "
  .. "hand. Every number below is the mean over seeds with its 95%% confidence interval (Student's t). Models: MLP "
  .. "inputs-H-H-10 with ReLU, SGD (momentum 0.9, cosine schedule), batch %d; dropout after each hidden layer "
  .. "unless said otherwise. Raw numbers: `runs.csv`, `noise.csv`, `direction.csv`, `activations.csv`, `mc.csv`.",
  opts.quick and " --quick" or "", dn.version, #seeds, (function()
    local names = {}
    for _, R in ipairs(results) do
      names[#names + 1] = string.format("%s: %d train / %d test samples, H = %d, %d epochs", R.ds.label, #R.ds.train,
        #R.ds.test, R.ds.hidden, R.ds.epochs)
    end
    return table.concat(names, "; ")
  end)(), BATCH)
say("")

for _, R in ipairs(results) do
  local ds = R.ds
  local tag = ds.name
  say("## %s", ds.label)
  say("")

  -- M1
  say("### M1 — gradient variance across dropout masks against α = p/(1−p)")
  say("")
  say("Prediction (Srivastava et al. 2014; Kingma et al. 2015): inverted dropout multiplies a unit by noise of "
    .. "mean 1 and variance α = p/(1−p). For a linear unit behind the dropout, with the loss the sum of its "
    .. "outputs, the variance of its weight gradient across masks is exactly α‖x‖². In the MLP every weight's "
    .. "gradient is a product of two independent such noises (the dropout before the layer scales its input, the "
    .. "one after it the backward signal; for the first layer both act on the backward signal), whose variance "
    .. "is (1+α)² − 1 = α(2+α): to first order the variance grows like that. Measured with "
    .. "`analysis.gradient_noise` on one batch of %d: the exact case with %d masks (ratio measured / α‖x‖², 1 if "
    .. "it holds), and the MLP with %d masks at the weights of the trained no-dropout model (the same weights for "
    .. "every p; slope of log variance on log α(2+α), 1 if it holds).", BATCH, PROBE_MASKS, MASKS)
  say("")
  say("| p | α | exact case: measured / α‖x‖² | layer 1 variance | layer 2 variance | layer 3 variance |")
  say("| --- | --- | --- | --- | --- | --- |")
  local noise_rates = {}
  for _, p in ipairs(RATES) do if p > 0 then noise_rates[#noise_rates + 1] = p end end
  local probe_ok = true
  for _, p in ipairs(noise_rates) do
    local pm, ph = mean_ci(R.probe[p])
    if not (pm - ph <= 1.05 and pm + ph >= 0.95) then probe_ok = false end
    local line = string.format("| %.1f | %.3f | %s |", p, p / (1 - p), fmt_ci(pm, ph, 3))
    for k = 1, 3 do
      local m, h = mean_ci(list_of(R.noise[p][k], "mask_variance"))
      line = line .. " " .. fmt_g(m) .. " ± " .. fmt_g(h) .. " |"
    end
    say(line)
  end
  say("")
  local function two_masks(p)
    local a = p / (1 - p)
    return a * (2 + a)
  end
  local slopes_line = "| slope of log variance on log α(2+α) |"
  local slope_ok = true
  local m1_series = {}
  for k = 1, 3 do
    local per_seed = {}
    for s = 1, #seeds do
      local xs, ys = {}, {}
      for _, p in ipairs(noise_rates) do
        xs[#xs + 1] = math.log(two_masks(p))
        ys[#ys + 1] = math.log(R.noise[p][k][s].mask_variance)
      end
      per_seed[s] = slope(xs, ys)
    end
    local m, h = mean_ci(per_seed)
    slopes_line = slopes_line .. " " .. fmt_ci(m, h, 2) .. " |"
    if not (m - h <= 1.1 and m + h >= 0.9) then slope_ok = false end
    local xs, ys = {}, {}
    for i, p in ipairs(noise_rates) do
      xs[i], ys[i] = two_masks(p), (mean_ci(list_of(R.noise[p][k], "mask_variance")))
    end
    m1_series[k] = {name = LAYER_NAMES[k], x = xs, y = ys}
  end
  say("| | %s |", table.concat(LAYER_NAMES, " | "))
  say("| --- | --- | --- | --- |")
  say(slopes_line)
  say("")
  say("Verdict: the exact case %s with α‖x‖² (agreement: every ratio's CI meets [0.95, 1.05]); the MLP %s with "
    .. "the α(2+α) law (agreement: each layer's slope CI meets [0.9, 1.1]; a slope above 1 means the variance "
    .. "grows faster than the two-noise product predicts, e.g. because the mean backward signal itself changes "
    .. "with p).", agree(probe_ok), agree(slope_ok))
  say("")
  plot.save(string.format("%s/m1_variance_%s.svg", out, tag), plot.line_chart{
    title = ds.label .. ": gradient variance across masks", x_label = "α(2+α), α = p/(1−p)",
    y_label = "E‖g − E g‖² (log)", series = m1_series, log_y = true})
  say("![M1](m1_variance_%s.svg)", tag)
  say("")

  -- M5
  say("### M5 — per-layer gradient signal-to-noise ratio against p")
  say("")
  say("Prediction: the mean gradient hardly changes with p while the mask variance grows like α, so the SNR "
    .. "‖E g‖² / E‖g − E g‖² falls like 1/α (slope −1 of log SNR on log α). The variance across minibatches "
    .. "(eval mode, %d batches of %d) is the noise SGD has anyway: the ratio says how much dropout adds to it.",
    NOISE_BATCHES, BATCH)
  say("")
  say("| p | %s | %s |", table.concat(LAYER_NAMES, " SNR | ") .. " SNR",
    table.concat(LAYER_NAMES, " mask/batch variance | ") .. " mask/batch variance")
  say("| --- | --- | --- | --- | --- | --- | --- |")
  local m5_series = {}
  for k = 1, 3 do m5_series[k] = {name = LAYER_NAMES[k], x = {}, y = {}} end
  for i, p in ipairs(noise_rates) do
    local cells = {}
    for k = 1, 3 do
      local m, h = mean_ci(list_of(R.noise[p][k], "snr"))
      cells[#cells + 1] = fmt_g(m) .. " ± " .. fmt_g(h)
      m5_series[k].x[i], m5_series[k].y[i] = p / (1 - p), m
    end
    for k = 1, 3 do
      local m, h = mean_ci(list_of(R.noise[p][k], "variance_ratio"))
      cells[#cells + 1] = fmt_g(m) .. " ± " .. fmt_g(h)
    end
    say("| %.1f | %s |", p, table.concat(cells, " | "))
  end
  local snr_ok, snr_slopes = true, {}
  for k = 1, 3 do
    local per_seed = {}
    for s = 1, #seeds do
      local xs, ys = {}, {}
      for _, p in ipairs(noise_rates) do
        xs[#xs + 1] = math.log(p / (1 - p))
        ys[#ys + 1] = math.log(R.noise[p][k][s].snr)
      end
      per_seed[s] = slope(xs, ys)
    end
    local m, h = mean_ci(per_seed)
    snr_slopes[k] = fmt_ci(m, h, 2)
    if not (m - h <= -0.9 and m + h >= -1.1) then snr_ok = false end
  end
  say("")
  say("Slope of log SNR on log α: %s. Verdict: the measurement %s with the prediction (agreement: each slope's CI "
    .. "meets [−1.1, −0.9]).", table.concat(snr_slopes, ", "), agree(snr_ok))
  say("")
  plot.save(string.format("%s/m5_snr_%s.svg", out, tag), plot.line_chart{
    title = ds.label .. ": gradient SNR per layer", x_label = "α = p/(1−p)", y_label = "SNR (log)",
    series = m5_series, log_y = true})
  say("![M5](m5_snr_%s.svg)", tag)
  say("")

  -- M2
  say("### M2 — early dropout: gradient direction and final training loss")
  say("")
  say("Prediction (Liu et al. 2023): early in training, dropout lowers the gradient direction variance (mean "
    .. "pairwise cosine distance between minibatch gradients) and the direction error (cosine distance to the "
    .. "full-data gradient without dropout), and dropout used only early (here p = %.1f for the first %d of %d "
    .. "epochs) ends with a lower training loss than no dropout, while dropout throughout ends higher. Measured "
    .. "with `analysis.gradient_direction` (8 minibatches, full gradient over 16) at 9 points of the first epoch, "
    .. "averaged (early and full dropout are the same run until the early phase ends, so their direction "
    .. "statistics match); training loss in eval mode on the training set.", EARLY_P, math.max(1, ds.epochs // 4),
    ds.epochs)
  say("")
  say("| dropout | direction variance | direction error | final train loss | final test loss |")
  say("| --- | --- | --- | --- | --- |")
  local m2 = {}
  local m2_series = {}
  for _, name in ipairs({"none", "early", "full"}) do
    local dv, de, tl, te = {}, {}, {}, {}
    for s, rec in ipairs(R.early[name]) do
      local a, b = 0, 0
      for _, pt in ipairs(rec.points) do a, b = a + pt.direction_variance, b + pt.direction_error end
      dv[s], de[s] = a / #rec.points, b / #rec.points
      tl[s], te[s] = rec.final.train_loss, rec.final.test_loss
    end
    m2[name] = {dv = {mean_ci(dv)}, de = {mean_ci(de)}, tl = {mean_ci(tl)}}
    say("| %s | %s | %s | %s | %s |", name, ci(dv), ci(de), ci(tl, 4),
      ci(te, 4))
    local ys = {}
    for i = 1, #R.early[name][1].points do
      local v = {}
      for s, rec in ipairs(R.early[name]) do v[s] = rec.points[i].direction_error end
      ys[i] = mean_ci(v)
    end
    m2_series[#m2_series + 1] = {name = name, y = ys}
  end
  say("")
  local lower_var = m2.early.dv[1] < m2.none.dv[1]
  local lower_loss = m2.early.tl[1] < m2.none.tl[1]
  say("Verdict: direction variance with early dropout %s than without (%s); final training loss with early "
    .. "dropout %s than without: the measurement %s with the prediction on the variance and %s on the loss.",
    lower_var and "lower" or "not lower", lower_var and "as predicted" or "against the prediction",
    lower_loss and "lower" or "not lower", agree(lower_var), agree(lower_loss))
  say("")
  plot.save(string.format("%s/m2_direction_%s.svg", out, tag), plot.line_chart{
    title = ds.label .. ": direction error over the first epoch", x_label = "measurement (1/8 epoch apart)",
    y_label = "1 − cos(g_batch, g_full)", series = m2_series})
  say("![M2](m2_direction_%s.svg)", tag)
  say("")

  -- M3
  say("### M3 — activation sparsity, mean activation and co-adaptation against p")
  say("")
  say("Prediction (Srivastava et al. 2014, section 7.2 and figure 8): dropout makes hidden activations sparser "
    .. "and lowers the mean activation (an autoencoder's from about 2.0 to 0.7), and it reduces co-adaptation. "
    .. "Measured on the test set in eval mode (`analysis.activation_stats`, `analysis.coadaptation`).")
  say("")
  say("| p | layer 1 mean | layer 1 sparsity | layer 1 mean abs corr | layer 2 mean | layer 2 sparsity | "
    .. "layer 2 mean abs corr |")
  say("| --- | --- | --- | --- | --- | --- | --- |")
  local m3_mean, m3_sparse = {}, {}
  for k = 1, 2 do
    m3_mean[k] = {name = "layer " .. k, x = {}, y = {}}
    m3_sparse[k] = {name = "layer " .. k, x = {}, y = {}}
  end
  for i, p in ipairs(RATES) do
    local cells = {}
    for k = 1, 2 do
      local recs = R.activations[p][k]
      local mm = mean_ci(list_of(recs, "mean"))
      cells[#cells + 1] = ci(list_of(recs, "mean"))
      cells[#cells + 1] = ci(list_of(recs, "sparsity"))
      cells[#cells + 1] = ci(list_of(recs, "corr"))
      m3_mean[k].x[i], m3_mean[k].y[i] = p, mm
      m3_sparse[k].x[i], m3_sparse[k].y[i] = p, (mean_ci(list_of(recs, "sparsity")))
    end
    say("| %.1f | %s |", p, table.concat(cells, " | "))
  end
  say("")
  local function falls(k, key)
    return mean_ci(list_of(R.activations[0.5][k], key)) < mean_ci(list_of(R.activations[0][k], key))
  end
  local function rises(k, key)
    return mean_ci(list_of(R.activations[0.5][k], key)) > mean_ci(list_of(R.activations[0][k], key))
  end
  say("Verdict (p = 0.5 against p = 0, both layers): mean activation falls: %s; sparsity rises: %s; "
    .. "co-adaptation falls: %s.", agree(falls(1, "mean") and falls(2, "mean")),
    agree(rises(1, "sparsity") and rises(2, "sparsity")), agree(falls(1, "corr") and falls(2, "corr")))
  say("")
  plot.save(string.format("%s/m3_activations_%s.svg", out, tag), plot.panels({
    {title = "Mean activation", x_label = "p", y_label = "mean of ReLU outputs", series = m3_mean},
    {title = "Sparsity", x_label = "p", y_label = "fraction of zeros", series = m3_sparse}},
    {title = ds.label .. ": hidden activations against the dropout rate"}))
  say("![M3](m3_activations_%s.svg)", tag)
  say("")

  -- M4
  say("### M4 — Monte Carlo averaging against weight scaling (p = 0.5)")
  say("")
  say("Prediction (Srivastava et al. 2014, section 7.5): averaging the predictions of k sampled masks matches "
    .. "weight scaling (eval mode) at around k = 50; (Gal and Ghahramani 2016) the predictive variance is higher "
    .. "on misclassified inputs than on correct ones. Accuracy on up to 2,000 test samples; variance of the "
    .. "softmax outputs summed over classes (0 for k = 1: one sample has no spread).")
  say("")
  say("| k | MC accuracy | weight scaling accuracy | variance, misclassified | variance, correct |")
  say("| --- | --- | --- | --- | --- |")
  local mc_acc, mc_scale = {}, {}
  for i, k in ipairs(MC_SAMPLES) do
    local recs = R.mc[k]
    say("| %d | %s | %s | %s | %s |", k, ci(list_of(recs, "acc"), 4),
      ci(list_of(recs, "scaling"), 4), ci(list_of(recs, "v_wrong"), 4),
      ci(list_of(recs, "v_right"), 4))
    mc_acc[i], mc_scale[i] = (mean_ci(list_of(R.mc[k], "acc"))), (mean_ci(list_of(R.mc[k], "scaling")))
  end
  say("")
  local kmax = MC_SAMPLES[#MC_SAMPLES]
  local acc_k, acc_h = mean_ci(list_of(R.mc[kmax], "acc"))
  local scale_m = mean_ci(list_of(R.mc[kmax], "scaling"))
  local v_w = mean_ci(list_of(R.mc[kmax], "v_wrong"))
  local v_r = mean_ci(list_of(R.mc[kmax], "v_right"))
  local acc1 = mean_ci(list_of(R.mc[1], "acc"))
  say("Verdict: with k = %d, MC accuracy %s against weight scaling %.4f (%s: within its CI or above, and above "
    .. "k = 1's %.4f); predictive variance on misclassified inputs %.4f against %.4f on correct ones: %s.", kmax,
    fmt_ci(acc_k, acc_h, 4), scale_m, agree(acc_k + acc_h >= scale_m and acc_k > acc1), acc1, v_w, v_r,
    agree(v_w > v_r))
  say("")
  local kx = {}
  for i, k in ipairs(MC_SAMPLES) do kx[i] = k end
  plot.save(string.format("%s/m4_mc_%s.svg", out, tag), plot.line_chart{
    title = ds.label .. ": MC dropout against weight scaling", x_label = "masks averaged (k)",
    y_label = "test accuracy", series = {{name = "MC average", x = kx, y = mc_acc},
      {name = "weight scaling", x = kx, y = mc_scale, dash = true}}})
  say("![M4](m4_mc_%s.svg)", tag)
  say("")

  -- gradient norms and the generalization gap
  say("### Per-layer gradient norms over training, and the generalization gap against p")
  say("")
  say("Expected: without dropout the gradients vanish as the training loss goes to zero; dropout keeps them "
    .. "large (its noise does not vanish), and the gap between test and training loss shrinks as p grows until "
    .. "the model underfits.")
  say("")
  say("| p | final train loss | final test loss | gap (test − train) | test accuracy |")
  say("| --- | --- | --- | --- | --- |")
  local charts = {}
  for k = 1, 3 do charts[k] = {title = LAYER_NAMES[k], x_label = "epoch", y_label = "mean ‖dL/dW‖", series = {},
    log_y = true} end
  for _, p in ipairs(RATES) do
    local finals = {}
    for s, rec in ipairs(R.sweep[p]) do finals[s] = rec.final end
    local gaps = {}
    for s, f in ipairs(finals) do gaps[s] = f.test_loss - f.train_loss end
    say("| %.1f | %s | %s | %s | %s |", p, ci(list_of(finals, "train_loss"), 4),
      ci(list_of(finals, "test_loss"), 4), ci(gaps, 4),
      ci(list_of(finals, "test_acc"), 4))
    for k = 1, 3 do
      local ys = {}
      for e = 1, ds.epochs do
        local v = {}
        for s, rec in ipairs(R.sweep[p]) do v[s] = rec.history[e]["grad_norm_" .. k] end
        ys[e] = mean_ci(v)
      end
      table.insert(charts[k].series, {name = string.format("p = %.1f", p), y = ys})
    end
  end
  say("")
  say("Placement at p = %.1f:", PLACEMENT_P)
  say("")
  say("| dropout on | final train loss | final test loss | gap | test accuracy |")
  say("| --- | --- | --- | --- | --- |")
  local placements = {{"hidden", {}}, {"input", R.placement.input}, {"both", R.placement.both}}
  for s, rec in ipairs(R.sweep[PLACEMENT_P]) do placements[1][2][s] = rec.final end
  for _, pl in ipairs(placements) do
    local gaps = {}
    for s, f in ipairs(pl[2]) do gaps[s] = f.test_loss - f.train_loss end
    say("| %s | %s | %s | %s | %s |", pl[1], ci(list_of(pl[2], "train_loss"), 4),
      ci(list_of(pl[2], "test_loss"), 4), ci(gaps, 4),
      ci(list_of(pl[2], "test_acc"), 4))
  end
  say("")
  plot.save(string.format("%s/grad_norms_%s.svg", out, tag), plot.panels(charts, {columns = 3,
    title = ds.label .. ": gradient norm of each layer's weight, mean over each epoch's steps"}))
  say("![gradient norms](grad_norms_%s.svg)", tag)
  say("")
end

say("---")
say("")
say("References: N. Srivastava et al., Dropout: a simple way to prevent neural networks from overfitting, JMLR "
  .. "2014. D. P. Kingma, T. Salimans, M. Welling, Variational dropout and the local reparameterization trick, "
  .. "NeurIPS 2015. Y. Gal, Z. Ghahramani, Dropout as a Bayesian approximation, ICML 2016. Z. Liu et al., Dropout "
  .. "reduces underfitting, ICML 2023.")
say("")
say("Run time: %s on %d threads.", run.format_time(dn.clock() - t_start), opts.threads)
dn.write_file(out .. "/report.md", table.concat(report, "\n") .. "\n")
print(string.format("report: %s/report.md (%s)", out, run.format_time(dn.clock() - t_start)))
