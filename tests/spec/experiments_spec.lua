-- The experiment scripts (scripts/experiments/) end to end in their --quick form: they run, write their
-- files, and every table has numbers.
local H = require "helpers"

local BIN = os.getenv("DROPNET_BIN")
local SOURCE = os.getenv("DROPNET_SOURCE_DIR") or "."
local quote = H.quote
local read = H.read_file

local function run(script, args)
  local cmd = string.format("%s %s %s 2>&1", quote(BIN), quote(SOURCE .. "/scripts/experiments/" .. script), args)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

-- Rows of a CSV file as lists of fields (no quoted fields in these files).
local function csv_rows(path)
  local rows = {}
  for line in read(path):gmatch("[^\n]+") do
    local fields = {}
    for f in (line .. ","):gmatch("([^,]*),") do fields[#fields + 1] = f end
    rows[#rows + 1] = fields
  end
  return rows
end

local function well_formed(path)
  return os.execute("xmllint --noout " .. quote(path)) == true
end

describe("scripts/experiments/seed_digits.lua", function()
  if not BIN then
    pending("DROPNET_BIN is not set: point it at the built dropnet executable")
    return
  end
  local dir
  setup(function() dir = H.make_tempdir() end)
  teardown(function() H.remove_dir(dir) end)

  it("trains both runs and writes the metrics and the two figures", function()
    local out, code = run("seed_digits.lua", "--quick --epochs 6 --threads 1 --out " .. quote(dir .. "/seed"))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("no dropout", 1, true), out)
    assert.truthy(out:find("dropout 0.5", 1, true), out)
    local rows = csv_rows(dir .. "/seed/metrics.csv")
    assert.same({"run", "epoch", "train_loss", "test_loss", "train_acc", "test_acc", "grad_norm_layer1",
      "grad_norm_layer2", "grad_norm_layer3"}, rows[1])
    assert.equal(1 + 2 * 6, #rows)
    for i = 2, #rows do
      for j = 3, #rows[i] do
        local v = tonumber(rows[i][j])
        assert.is_true(v ~= nil and v == v and v >= 0, "row " .. i .. " column " .. rows[1][j] .. ": " .. rows[i][j])
      end
    end
    -- both runs learn the digits (eval-mode accuracy on the test set after 6 epochs)
    assert.is_true(tonumber(rows[7][6]) > 0.8, table.concat(rows[7], ","))
    assert.is_true(tonumber(rows[13][6]) > 0.8, table.concat(rows[13], ","))
    -- the same first batches from the same weights: dropout changes the gradients from the first epoch
    assert.are_not.equal(rows[2][7], rows[8][7])
    for _, svg in ipairs({"loss.svg", "grad_norms.svg"}) do
      assert.is_true(well_formed(dir .. "/seed/" .. svg), svg .. " must be well-formed XML")
    end
    local loss_svg = read(dir .. "/seed/loss.svg")
    local _, lines = loss_svg:gsub("<polyline", "")
    assert.equal(4, lines)
  end)

  it("is the same run for the same seed", function()
    local _, c1 = run("seed_digits.lua", "--epochs 2 --threads 2 --out " .. quote(dir .. "/a"))
    local _, c2 = run("seed_digits.lua", "--epochs 2 --threads 1 --out " .. quote(dir .. "/b"))
    assert.equal(0, c1)
    assert.equal(0, c2)
    assert.equal(read(dir .. "/a/metrics.csv"), read(dir .. "/b/metrics.csv"))
  end)

  it("explains bad options", function()
    local out, code = run("seed_digits.lua", "--epoch 3")
    assert.equal(2, code)
    assert.truthy(out:find("seed_digits.lua: unknown option '--epoch' (did you mean --epochs?)", 1, true), out)
    out, code = run("seed_digits.lua", "--dropout 1")
    assert.equal(2, code)
    assert.truthy(out:find("--dropout must be in [0, 1)", 1, true), out)
    out, code = run("seed_digits.lua", "--out /dev/null/x")
    assert.equal(2, code)
    assert.truthy(out:find("cannot use /dev/null/x as the output directory", 1, true), out)
    out, code = run("seed_digits.lua", "--help")
    assert.equal(0, code)
    assert.truthy(out:find("usage: dropnet scripts/experiments/seed_digits.lua", 1, true), out)
  end)
end)

describe("scripts/experiments/dropout_gradients.lua", function()
  if not BIN then
    pending("DROPNET_BIN is not set: point it at the built dropnet executable")
    return
  end
  local dir
  setup(function()
    dir = H.make_tempdir()
    -- 10 classes, each a brightness band plus noise, hard enough that some test images are misclassified
    -- (M4 compares the variance on wrong and right predictions)
    H.write_fake_fashion_mnist(dir .. "/data", {train = 600, test = 200, classes = 10, noise = 160, step = 10,
      seed = 9})
  end)
  teardown(function() H.remove_dir(dir) end)

  it("writes a report whose every table has numbers, the figures and the raw tables (--quick)", function()
    local out, code = run("dropout_gradients.lua", "--quick --threads 2 --data " .. quote(dir .. "/data") ..
      " --out " .. quote(dir .. "/report"))
    assert.are.equal(0, code, out)
    local report = read(dir .. "/report/report.md")
    for _, section in ipairs({"## 8x8 digits", "## Fashion-MNIST", "### M1", "### M2", "### M3", "### M4", "### M5",
        "generalization gap", "Placement"}) do
      assert.truthy(report:find(section, 1, true), "missing section " .. section)
    end
    local _, verdicts = report:gsub("%*%*agrees%*%*", "")
    local _, disagreements = report:gsub("%*%*does not agree%*%*", "")
    assert.equal(2 * 10, verdicts + disagreements)   -- 10 verdicts per dataset
    -- every table row: each cell after the first has a number, none is NaN
    local rows = 0
    for line in report:gmatch("[^\n]+") do
      if line:match("^| ") and not line:match("^| %-%-%-") and not line:match("^| p |") and not line:match("^| k |")
          and not line:match("^| dropout") and not line:match("^| |") then
        rows = rows + 1
        local cells = {}
        for cell in line:gmatch("|([^|]*)") do cells[#cells + 1] = cell end
        for i = 2, #cells do
          if cells[i]:match("%S") then
            assert.truthy(cells[i]:match("%d"), "a cell without a number: " .. line)
            assert.falsy(cells[i]:lower():match("nan"), "NaN in: " .. line)
          end
        end
      end
    end
    assert.is_true(rows >= 2 * 25, "table rows: " .. rows)
    for _, name in ipairs({"m1_variance", "m2_direction", "m3_activations", "m4_mc", "m5_snr", "grad_norms"}) do
      for _, tag in ipairs({"digits", "fashion"}) do
        local svg = string.format("%s/report/%s_%s.svg", dir, name, tag)
        assert.is_true(well_formed(svg), svg .. " must be well-formed XML")
        assert.truthy(report:find(string.format("(%s_%s.svg)", name, tag), 1, true), name .. " not in the report")
      end
    end
    for _, csv in ipairs({"runs", "noise", "direction", "activations", "mc"}) do
      local rows_csv = csv_rows(string.format("%s/report/%s.csv", dir, csv))
      assert.is_true(#rows_csv > 2, csv .. ".csv has no rows")
    end
  end)

  it("explains bad options", function()
    local out, code = run("dropout_gradients.lua", "--datasets cifar --out " .. quote(dir .. "/x"))
    assert.equal(2, code)
    assert.truthy(out:find("unknown dataset 'cifar'", 1, true), out)
    out, code = run("dropout_gradients.lua", "--seeds 1")
    assert.equal(2, code)
    assert.truthy(out:find("--seeds must be at least 2", 1, true), out)
    out, code = run("dropout_gradients.lua", "--qiuck")
    assert.equal(2, code)
    assert.truthy(out:find("did you mean --quick?", 1, true), out)
  end)
end)
