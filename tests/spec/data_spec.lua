-- dropnet.data: file wrappers, Fashion-MNIST loading (on small generated IDX
-- files, never the real dataset), TensorDataset, random_split and DataLoader.
local dn = require "dropnet"
local data = require "dropnet.data"
local H = require "helpers"

local dir   -- a fresh temporary directory for the whole file

local quote = H.quote

local function mkdir(name)
  local p = dir .. "/" .. name
  assert(os.execute("mkdir -p " .. quote(p)))
  return p
end

setup(function()
  dir = H.make_tempdir()
end)

teardown(function()
  H.remove_dir(dir)
end)

-- --- generated Fashion-MNIST files ------------------------------------------------

-- Pixel (r, c) of image i (all 1-based); image 1 starts with 255 and 51.
local function pixel(i, r, c)
  if i == 1 and r == 1 and c == 1 then return 255 end
  if i == 1 and r == 1 and c == 2 then return 51 end
  return (i * 37 + r * 11 + c * 3) % 256
end

local function images_table(n, rows, cols)
  return H.build({n, rows or 28, cols or 28}, function(idx) return pixel(idx[1], idx[2], idx[3]) end)
end

--- Writes the files of one split into directory d: n images and the given
--- 0-based labels; suffix "" or ".gz".
local function write_split(d, split, labels, suffix, options)
  options = options or {}
  local prefix = split == "train" and "train" or "t10k"
  local n = options.images or #labels
  local images = n > 0 and dn.tensor(images_table(n, options.rows, options.cols), "uint8")
    or dn.zeros({0, options.rows or 28, options.cols or 28}, "uint8")
  dn.idx_write(d .. "/" .. prefix .. "-images-idx3-ubyte" .. (suffix or ""), images)
  dn.idx_write(d .. "/" .. prefix .. "-labels-idx1-ubyte" .. (suffix or ""),
    dn.tensor(labels, options.label_dtype or "uint8"))
end

local TRAIN_LABELS = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 0}
local TEST_LABELS = {9, 8, 7, 0, 1}

-- The expected scaled pixels of the generated images, [n, 784].
local function expected_pixels(n, f)
  f = f or function(v) return v / 255 end
  return H.build({n, 784}, function(idx)
    local k = idx[2] - 1
    return H.f32(f(pixel(idx[1], k // 28 + 1, k % 28 + 1)))
  end)
end

local good   -- a directory holding both splits (train plain, test gzip)

local function good_dir()
  if not good then
    good = mkdir("good")
    write_split(good, "train", TRAIN_LABELS, "")
    write_split(good, "test", TEST_LABELS, ".gz")
  end
  return good
end

describe("data.fashion_mnist", function()
  it("scales pixels to [0,1] exactly and shifts labels to 1..10", function()
    local ds = data.fashion_mnist{dir = good_dir()}   -- split defaults to "train"
    assert.are.equal(#TRAIN_LABELS, #ds)
    local x, y = ds:tensor(1), ds.tensors[2]
    H.assert_shape(x, {#TRAIN_LABELS, 784}, "float32")
    H.assert_shape(y, {#TRAIN_LABELS}, "int32")
    assert.are.equal(1.0, x[1][1])
    assert.are.equal(H.f32(0.2), x[1][2])
    H.assert_same(x, expected_pixels(#TRAIN_LABELS))
    H.assert_same(y, H.map(TRAIN_LABELS, function(v) return v + 1 end))
  end)

  it("reads gzip files and the test split", function()
    local ds = data.fashion_mnist{split = "test", dir = good_dir()}
    assert.are.equal(#TEST_LABELS, ds:size())
    H.assert_same(ds:tensor(1), expected_pixels(#TEST_LABELS))
    H.assert_same(ds.tensors[2], {10, 9, 8, 1, 2})
  end)

  it("keeps the image layout with flatten = false", function()
    local ds = data.fashion_mnist{split = "test", dir = good_dir(), flatten = false}
    H.assert_shape(ds.tensors[1], {#TEST_LABELS, 1, 28, 28}, "uint8")
    local x = ds:tensor(1)
    H.assert_shape(x, {#TEST_LABELS, 1, 28, 28}, "float32")
    H.assert_same(x, H.build({#TEST_LABELS, 1, 28, 28}, function(idx)
      return H.f32(pixel(idx[1], idx[3], idx[4]) / 255)
    end))
  end)

  it("normalizes with the training statistics or given ones", function()
    local ds = data.fashion_mnist{dir = good_dir(), normalize = true}
    H.assert_close(ds:tensor(1), expected_pixels(#TRAIN_LABELS, function(v)
      return (v / 255 - 0.2860406) / 0.3530242
    end), 1e-6, 1e-6)
    ds = data.fashion_mnist{dir = good_dir(), normalize = {mean = 0.5, std = 0.25}}
    H.assert_close(ds:tensor(1), expected_pixels(#TRAIN_LABELS, function(v)
      return (v / 255 - 0.5) / 0.25
    end), 1e-6, 1e-6)
    ds = data.fashion_mnist{dir = good_dir(), normalize = false}
    H.assert_same(ds:tensor(1), expected_pixels(#TRAIN_LABELS))
  end)

  -- What fashion_mnist gave before it kept the bytes: the whole set converted by
  -- tensor ops. Every batch of the byte dataset must equal its rows bit for bit.
  local function converted_whole(d, split, mean, std)
    local prefix = split == "train" and "train" or "t10k"
    local suffix = split == "train" and "" or ".gz"
    local images = data.idx(d .. "/" .. prefix .. "-images-idx3-ubyte" .. suffix)
    local x = images:float():div_(255)
    if mean then x:sub_(mean):div_(std) end
    return x:view(images:size(1), 784)
  end

  -- Equal float32 tensors, element by element in C (eq would take -0 for 0, but no path
  -- here makes a -0, and no NaN).
  local function assert_bits(a, b)
    assert.are.same(a:shape(), b:shape())
    assert.are.equal(a:numel(), a:eq(b):int():sum():item())
  end

  it("keeps the images as uint8 and gives batches equal bit for bit to the converted set", function()
    for _, case in ipairs{{}, {normalize = true}, {normalize = {mean = 0.5, std = 0.25}}} do
      for _, split in ipairs{"train", "test"} do
        local ds = data.fashion_mnist{dir = good_dir(), split = split, normalize = case.normalize}
        H.assert_shape(ds.tensors[1], {#ds, 784}, "uint8")
        H.assert_shape(ds.byte_tables[1], {256}, "float32")
        local mean, std
        if case.normalize == true then mean, std = 0.2860406, 0.3530242
        elseif case.normalize then mean, std = case.normalize.mean, case.normalize.std end
        local whole = converted_whole(good_dir(), split, mean, std)
        assert_bits(ds:tensor(1), whole)
        for _, shuffle in ipairs{false, true} do
          local loader = data.DataLoader(ds, {batch_size = 4, shuffle = shuffle, generator = dn.Generator(3)})
          local old = data.DataLoader(data.TensorDataset(whole, ds.tensors[2]),
            {batch_size = 4, shuffle = shuffle, generator = dn.Generator(3)})
          local it_old = old:iter()
          for x, y in loader:iter() do
            local x_old, y_old = it_old()
            H.assert_shape(x, x_old:shape(), "float32")
            assert_bits(x, x_old)
            H.assert_same(y, y_old)
          end
          assert.is_nil(it_old())
        end
        assert_bits(ds:get(2), whole:narrow(1, 2, 1))
      end
    end
  end)

  it("prefers the plain file when both plain and gzip exist", function()
    local d = mkdir("both")
    write_split(d, "train", {1, 2}, "")
    write_split(d, "train", {3, 4, 5}, ".gz")
    H.assert_same(data.fashion_mnist{dir = d}.tensors[2], {2, 3})
  end)

  it("says where it looked and how to get the files when they are missing", function()
    local empty = mkdir("empty")
    local err = H.assert_error(function() return data.fashion_mnist{dir = empty} end, {
      "fashion_mnist", "train", empty, "the dir argument",
      "train-images-idx3-ubyte(.gz)", "train-labels-idx1-ubyte(.gz)",
      "install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
      "pass dir = DIR to data.fashion_mnist (scripts/train.lua: --data DIR)", "set DROPNET_DATA=DIR"})
    -- the caller's line (here helpers.lua: data_spec's function tail-calls), not the library's
    assert.truthy(err:find("^[^:]*spec/[%w_]+%.lua:%d+: fashion_mnist:"), err)
    -- only the labels missing: only they are named
    local half = mkdir("half")
    dn.idx_write(half .. "/t10k-images-idx3-ubyte", dn.tensor(images_table(2), "uint8"))
    err = H.assert_error(function() return data.fashion_mnist{dir = half, split = "test"} end,
      {"t10k-labels-idx1-ubyte(.gz)", half})
    assert.is_nil(err:find("t10k-images", 1, true))
  end)

  it("rejects images and labels that disagree, and labels out of 0..9", function()
    local d = mkdir("count")
    write_split(d, "train", {1, 2, 3}, "", {images = 4})
    H.assert_error(function() return data.fashion_mnist{dir = d} end,
      {d .. "/train-images-idx3-ubyte has 4 images", d .. "/train-labels-idx1-ubyte has 3 labels"})

    d = mkdir("labels")
    write_split(d, "train", {0, 9, 10, 2}, ".gz")
    H.assert_error(function() return data.fashion_mnist{dir = d} end,
      {"train-labels-idx1-ubyte.gz", "labels must be in 0..9", "found 10"})
    write_split(d, "test", {0, 255}, "")
    H.assert_error(function() return data.fashion_mnist{dir = d, split = "test"} end, {"found 255"})
  end)

  it("rejects files of the wrong shape or type", function()
    local d = mkdir("shape")
    write_split(d, "train", {1, 2}, "", {rows = 27})
    H.assert_error(function() return data.fashion_mnist{dir = d} end,
      {"train-images-idx3-ubyte holds uint8 [2,27,28], expected uint8 images [N,28,28]"})
    d = mkdir("dtype")
    write_split(d, "train", {1, 2}, "", {label_dtype = "int32"})
    H.assert_error(function() return data.fashion_mnist{dir = d} end,
      {"train-labels-idx1-ubyte holds int32 [2], expected uint8 labels [N]"})
    d = mkdir("corrupt")
    write_split(d, "train", {1, 2}, "")
    local f = assert(io.open(d .. "/train-labels-idx1-ubyte", "ab"))
    f:write("x")
    f:close()
    H.assert_error(function() return data.fashion_mnist{dir = d} end, {d .. "/train-labels-idx1-ubyte", "trailing"})
  end)

  it("reads an empty split", function()
    local d = mkdir("zero")
    write_split(d, "train", {}, "")
    local ds = data.fashion_mnist{dir = d}
    assert.are.equal(0, #ds)
    H.assert_shape(ds.tensors[1], {0, 784}, "uint8")
    H.assert_shape(ds:tensor(1), {0, 784}, "float32")
    H.assert_shape(ds.tensors[2], {0}, "int32")
  end)

  it("checks its options", function()
    local d = good_dir()
    H.assert_error(function() return data.fashion_mnist{dir = d, split = "valid"} end,
      {'split must be "train" or "test" (got "valid")'})
    H.assert_error(function() return data.fashion_mnist{dir = d, batch = 3} end,
      {"unknown option 'batch' (known: dir, flatten, normalize, split)"})
    H.assert_error(function() return data.fashion_mnist{dir = 3} end, {"dir must be a string (got 3)"})
    H.assert_error(function() return data.fashion_mnist{dir = d, normalize = "yes"} end,
      {"normalize must be true, false or {mean = m, std = s}"})
    H.assert_error(function() return data.fashion_mnist{dir = d, normalize = {mean = 0.5, std = 0}} end,
      {"normalize.std must be a finite number > 0 (got 0"})
    H.assert_error(function() return data.fashion_mnist{dir = d, normalize = {std = 1}} end,
      {"normalize.mean must be a finite number (got nil)"})
    H.assert_error(function() return data.fashion_mnist{dir = d, normalize = {mean = 0, std = 1, m = 2}} end,
      {"unknown option 'm'"})
    H.assert_error(function() return data.fashion_mnist{dir = d, flatten = 1} end,
      {"flatten must be true or false (got 1)"})
    H.assert_error(function() return data.fashion_mnist("train") end, {"options must be a table"})
  end)

  it("names the ten classes", function()
    local names = data.class_names.fashion_mnist
    assert.are.equal(10, #names)
    assert.are.equal("T-shirt/top", names[1])
    assert.are.equal("Sneaker", names[8])
    assert.are.equal("Ankle boot", names[10])
  end)

  it("is dn.data", function()
    assert.are.equal(data, dn.data)
  end)
end)

-- The DROPNET_DATA variable: Lua cannot set it, so run the dropnet command.
describe("data.fashion_mnist and DROPNET_DATA", function()
  local BIN = os.getenv("DROPNET_BIN")
  if not BIN or BIN == "" then
    pending("DROPNET_BIN is not set: point it at the built dropnet executable to run these specs")
    return
  end

  -- Runs `dropnet -e code` with DROPNET_DATA set to value; returns code, stdout, stderr.
  local function run(value, code)
    local out, err = os.tmpname(), os.tmpname()
    local cmd = string.format("DROPNET_DATA=%s %s -e %s > %s 2> %s < /dev/null", quote(value), quote(BIN),
      quote(code), quote(out), quote(err))
    local ok, _, status = os.execute(cmd)
    local function slurp(p)
      local f = assert(io.open(p, "rb"))
      local s = f:read("a")
      f:close()
      os.remove(p)
      return s
    end
    return ok and 0 or status, slurp(out), slurp(err)
  end

  it("reads the files from $DROPNET_DATA", function()
    local code, out, err = run(good_dir(), [[
      local ds = require("dropnet").data.fashion_mnist{split = "test"}
      print(#ds, ds.tensors[2]:sum():item(), ds:get(1)[1][1])]])
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("5\t30\t1.0\n", out)
  end)

  it("names the variable when its directory lacks the files", function()
    local empty = mkdir("env-empty")
    local code, _, err = run(empty, 'require("dropnet").data.fashion_mnist{}')
    assert.are_not.equal(0, code)
    assert.truthy(err:find(empty .. " (the DROPNET_DATA variable)", 1, true), err)
    assert.truthy(err:find("apt-get install dataset-fashion-mnist", 1, true), err)
  end)

  it("lets the dir argument win over the variable", function()
    local code, out, err = run(mkdir("env-ignored"), string.format([[
      print(#require("dropnet").data.fashion_mnist{dir = %q})]], good_dir()))
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal(#TRAIN_LABELS .. "\n", out)
  end)
end)

-- --- files -------------------------------------------------------------------------

describe("data.idx and data.csv", function()
  it("read files and name them in errors", function()
    local p = dir .. "/small.idx.gz"
    dn.idx_write(p, dn.tensor({{1, 2}, {3, 4}}, "int32"))
    local t = data.idx(p)
    H.assert_shape(t, {2, 2}, "int32")
    H.assert_same(t, {{1, 2}, {3, 4}})
    H.assert_error(function() return data.idx(dir .. "/none.idx") end, {dir .. "/none.idx"})
    H.assert_error(function() return data.idx(5) end, {"data.idx: path must be a string (got 5)"})

    p = dir .. "/small.csv"
    local f = assert(io.open(p, "wb"))
    f:write("a;b\n1.5;2\n-3;4e1\n")
    f:close()
    t = data.csv(p, {delimiter = ";", header = true})
    H.assert_shape(t, {2, 2}, "float32")
    H.assert_same(t, {{1.5, 2}, {-3, 40}})
    H.assert_error(function() return data.csv(p) end, {p})   -- the header is not a number
    H.assert_error(function() return data.csv(p, {sep = ";"}) end, {"data.csv: unknown option 'sep'"})
    H.assert_error(function() return data.csv(p, {delimiter = ";;"}) end, {"delimiter must be a one-character"})
    H.assert_error(function() return data.csv(p, {header = "yes"}) end, {"header must be true or false"})
  end)
end)

-- --- TensorDataset -----------------------------------------------------------------

-- x [n,2] with row i = {i, -i}; y [n] = i (int32): a batch's rows can be told apart and paired.
local function numbered(n)
  local x = dn.tensor(H.build({n, 2}, function(idx) return idx[2] == 1 and idx[1] or -idx[1] end))
  if n == 0 then x = dn.zeros(0, 2) end
  local y = n > 0 and dn.arange(1, n + 1):int() or dn.zeros({0}, "int32")
  return data.TensorDataset(x, y)
end

describe("data.TensorDataset", function()
  it("holds tensors that share their first dim", function()
    local x, y = dn.zeros(4, 3), dn.tensor({5, 6, 7, 8}, "int32")
    local ds = data.TensorDataset(x, y)
    assert.are.equal(4, #ds)
    assert.are.equal(4, ds:size())
    assert.are.equal(x, ds.tensors[1])
    assert.are.equal(y, ds.tensors[2])
    assert.are.equal("dropnet.data.TensorDataset(4 samples: float32 [4,3], int32 [4])", tostring(ds))
  end)

  it("gives sample i as one-row views", function()
    local ds = numbered(5)
    local xi, yi = ds:get(3)
    H.assert_shape(xi, {1, 2}, "float32")
    H.assert_shape(yi, {1}, "int32")
    H.assert_same(xi, {{3, -3}})
    H.assert_same(yi, {3})
    xi:fill_(0)   -- a view: the dataset sees the change
    H.assert_same(ds.tensors[1][3], {0, 0})
    H.assert_same(select(2, ds:get(5.0)), {5})
    for _, bad in ipairs{0, 6, 1.5, "2"} do
      H.assert_error(function() return ds:get(bad) end, {"TensorDataset:get: index must be an integer in [1, 5]"})
    end
  end)

  it("gathers subsets", function()
    local ds = numbered(6)
    local sub = ds:subset(dn.tensor({6, 2, 2}, "int32"))
    assert.are.equal(3, #sub)
    H.assert_same(sub.tensors[1], {{6, -6}, {2, -2}, {2, -2}})
    H.assert_same(sub.tensors[2], {6, 2, 2})
    sub = ds:subset{4, 1}
    H.assert_same(sub.tensors[2], {4, 1})
    assert.are.equal(0, #ds:subset(dn.tensor({}, "int32")))
    H.assert_error(function() return ds:subset(dn.tensor{1, 2}) end,
      {"TensorDataset:subset: index must be a 1-D int32 tensor (got float32 [2])"})
    H.assert_error(function() return ds:subset(dn.tensor({{1}}, "int32")) end, {"(got int32 [1,1])"})
    H.assert_error(function() return ds:subset(dn.tensor({7}, "int32")) end, {"index 7", "out of range"})
    H.assert_error(function() return ds:subset(3) end, {"index must be an int32 tensor or a list"})
  end)

  it("rejects tensors whose first dims differ, and non-tensors", function()
    H.assert_error(function() return data.TensorDataset(dn.zeros(6, 3), dn.zeros(5)) end,
      {"TensorDataset: tensor 2 has 5 rows but tensor 1 has 6 (shapes [5] and [6,3])"})
    H.assert_error(function() return data.TensorDataset(dn.zeros(2), dn.zeros(2), dn.zeros(3, 1)) end,
      {"tensor 3 has 3 rows"})
    H.assert_error(function() return data.TensorDataset() end, {"at least one tensor"})
    H.assert_error(function() return data.TensorDataset(dn.zeros(2), {1, 2}) end,
      {"argument 2 is table, a tensor expected"})
    H.assert_error(function() return data.TensorDataset(dn.tensor(3)) end, {"tensor 1 is 0-dim"})
  end)
end)

-- --- random_split -------------------------------------------------------------------

describe("data.random_split", function()
  it("splits into disjoint parts that cover the dataset, rows kept paired", function()
    local ds = numbered(20)
    for _, first in ipairs{0, 1, 7, 20} do
      local a, b = data.random_split(ds, first, {generator = dn.Generator(3)})
      assert.are.equal(first, #a)
      assert.are.equal(20 - first, #b)
      local seen = {}
      for _, part in ipairs{a, b} do
        local xs, ys = part.tensors[1]:totable(), part.tensors[2]:totable()
        for i, id in ipairs(ys) do
          assert.is_nil(seen[id])
          seen[id] = true
          assert.are.same({id, -id}, xs[i])
        end
      end
      for id = 1, 20 do assert.is_true(seen[id]) end
    end
  end)

  it("is reproducible from the generator and random otherwise", function()
    local ds = numbered(30)
    local a1 = data.random_split(ds, 10, {generator = dn.Generator(5)})
    local a2 = data.random_split(ds, 10, {generator = dn.Generator(5)})
    local a3 = data.random_split(ds, 10, {generator = dn.Generator(6)})
    H.assert_same(a1.tensors[2], a2.tensors[2])
    assert.are_not.same(a1.tensors[2]:totable(), a3.tensors[2]:totable())
    dn.manual_seed(11)
    local d1 = data.random_split(ds, 10)
    dn.manual_seed(11)
    local d2 = data.random_split(ds, 10)
    H.assert_same(d1.tensors[2], d2.tensors[2])
  end)

  it("checks its arguments", function()
    local ds = numbered(4)
    H.assert_error(function() return data.random_split(ds, 5) end,
      {"random_split: n_first must be at most the dataset size 4 (got 5)"})
    H.assert_error(function() return data.random_split(ds, -1) end, {"n_first must be an integer >= 0 (got -1)"})
    H.assert_error(function() return data.random_split(ds, 1.5) end, {"n_first must be an integer >= 0 (got 1.5)"})
    H.assert_error(function() return data.random_split(ds, 1, {seed = 1}) end, {"unknown option 'seed'"})
    H.assert_error(function() return data.random_split(ds, 1, {generator = 7}) end,
      {"generator must be a dropnet.Generator (got 7)"})
    H.assert_error(function() return data.random_split({}, 1) end, {"random_split: expected a TensorDataset"})
  end)
end)

-- --- byte tables -------------------------------------------------------------------

describe("dn.byte_rows_to_float", function()
  local bytes = dn.tensor({{0, 255, 51}, {102, 1, 2}, {3, 4, 5}}, "uint8")
  local table_ = dn.arange(0, 256):float():div_(255)

  it("gathers rows and maps each byte through the table", function()
    local x = dn.byte_rows_to_float(bytes, dn.tensor({3, 1, 3}, "int32"), table_)
    H.assert_shape(x, {3, 3}, "float32")
    H.assert_same(x, bytes:float():div_(255):index_select(1, dn.tensor({3, 1, 3}, "int32")))
    H.assert_same(bytes:byte_rows_to_float(nil, table_), bytes:float():div_(255))
    H.assert_same(bytes:narrow(1, 2, 2):byte_rows_to_float(nil, dn.arange(0, 256):float():neg()),
      {{-102, -1, -2}, {-3, -4, -5}})
    assert.is_false(dn.byte_rows_to_float(bytes, nil, table_:clone():requires_grad_()).requires_grad)
  end)

  it("names itself and what is wrong", function()
    H.assert_error(function() return dn.byte_rows_to_float(bytes:float(), nil, table_) end,
      {"byte_rows_to_float: src must be uint8 (got float32)"})
    H.assert_error(function() return dn.byte_rows_to_float(bytes, dn.tensor({4}, "int32"), table_) end,
      {"byte_rows_to_float: index 4 at position 1 is out of range [1, 3]"})
    H.assert_error(function() return dn.byte_rows_to_float(bytes, dn.tensor({1}), table_) end,
      {"byte_rows_to_float: index must be int32 (got float32)"})
    H.assert_error(function() return dn.byte_rows_to_float(bytes, nil, dn.zeros(255)) end,
      {"byte_rows_to_float: table must have shape [256]", "(got [255])"})
    H.assert_error(function() return dn.byte_rows_to_float(bytes, nil, table_:int()) end,
      {"byte_rows_to_float: table must be float32 (got int32)"})
    H.assert_error(function() return dn.byte_rows_to_float(bytes, nil) end, {"byte_rows_to_float", "Tensor expected"})
  end)
end)

describe("TensorDataset:set_byte_table", function()
  -- x [n,2] uint8 with row i = {i, 2i}; y = i
  local function byte_numbered(n)
    local x = dn.tensor(H.build({n, 2}, function(idx) return idx[1] * idx[2] end), "uint8")
    return data.TensorDataset(x, dn.arange(1, n + 1):int())
  end
  local halves = dn.arange(0, 256):float():div_(2)

  it("gives the bytes out as float32 in samples, batches, subsets and tensor()", function()
    local ds = byte_numbered(6)
    assert.are.equal(ds, ds:set_byte_table(1, halves))
    assert.are.equal("dropnet.data.TensorDataset(6 samples: uint8 [6,2] as float32, int32 [6])", tostring(ds))
    H.assert_shape(ds.tensors[1], {6, 2}, "uint8")
    H.assert_same(ds:get(3), {{1.5, 3}})
    H.assert_same(ds:tensor(1), {{0.5, 1}, {1, 2}, {1.5, 3}, {2, 4}, {2.5, 5}, {3, 6}})
    assert.are.equal(ds.tensors[2], ds:tensor(2))
    for _, shuffle in ipairs{false, true} do
      local seen = 0
      for x, y in data.DataLoader(ds, {batch_size = 4, shuffle = shuffle}):iter() do
        H.assert_shape(x, {y:size(1), 2}, "float32")
        H.assert_same(x:select(2, 1), y:float():div(2))
        seen = seen + y:size(1)
      end
      assert.are.equal(6, seen)
    end
    local sub = ds:subset{5, 2}
    H.assert_shape(sub.tensors[1], {2, 2}, "uint8")
    H.assert_same(sub:tensor(1), {{2.5, 5}, {1, 2}})
    local a, b = data.random_split(ds, 4, {generator = dn.Generator(1)})
    H.assert_shape(a.tensors[1], {4, 2}, "uint8")
    H.assert_same(b:tensor(1):select(2, 1), b.tensors[2]:float():div(2))
  end)

  it("copies the table, and nil removes it", function()
    local ds = byte_numbered(2)
    local t = halves:clone()
    ds:set_byte_table(1, t)
    t:fill_(7)
    H.assert_same(ds:get(2), {{1, 2}})
    ds:set_byte_table(1, nil)
    H.assert_shape(ds:get(2), {1, 2}, "uint8")
    assert.are.equal(ds.tensors[1], ds:tensor(1))
  end)

  it("checks its arguments", function()
    local ds = byte_numbered(2)
    H.assert_error(function() return ds:set_byte_table(2, halves) end,
      {"TensorDataset:set_byte_table: tensor 2 is int32 [2]; a byte table needs a uint8 tensor"})
    H.assert_error(function() return ds:set_byte_table(3, halves) end, {"k must be an integer in [1, 2]"})
    H.assert_error(function() return ds:set_byte_table(1, dn.zeros(10)) end,
      {"table must be a float32 tensor of shape [256]", "(got float32 [10])"})
    H.assert_error(function() return ds:set_byte_table(1, {1, 2}) end, {"table must be a float32 tensor"})
    H.assert_error(function() return ds.set_byte_table({}, 1, halves) end, {"expected a TensorDataset"})
    H.assert_error(function() return ds:tensor(0) end, {"TensorDataset:tensor: k must be an integer in [1, 2]"})
  end)
end)

-- --- DataLoader --------------------------------------------------------------------

-- One epoch's batches as lists of sample ids, checking that x rows match y in each batch.
local function epoch(loader)
  local batches = {}
  for x, y in loader:iter() do
    local xs, ys = x:totable(), y:totable()
    assert.are.equal(#ys, #xs)
    for i, id in ipairs(ys) do assert.are.same({id, -id}, xs[i]) end
    batches[#batches + 1] = ys
  end
  return batches
end

describe("data.DataLoader", function()
  it("visits every sample once per epoch, with and without shuffle and drop_last", function()
    for _, n in ipairs{1, 10, 12} do
      local ds = numbered(n)
      for _, batch_size in ipairs{1, 3, 4, 5, 10, 12, 13} do
        for _, shuffle in ipairs{false, true} do
          for _, drop_last in ipairs{false, true} do
            local loader = data.DataLoader(ds, {batch_size = batch_size, shuffle = shuffle, drop_last = drop_last,
              generator = dn.Generator(n * 100 + batch_size)})
            local full, rest = n // batch_size, n % batch_size
            local expected_batches = full + ((rest > 0 and not drop_last) and 1 or 0)
            assert.are.equal(expected_batches, #loader)
            for _ = 1, 2 do
              local batches = epoch(loader)
              assert.are.equal(expected_batches, #batches)
              local seen, order = {}, {}
              for b, ids in ipairs(batches) do
                assert.are.equal(b <= full and batch_size or rest, #ids)
                for _, id in ipairs(ids) do
                  assert.is_nil(seen[id], "sample seen twice")
                  seen[id] = true
                  order[#order + 1] = id
                end
              end
              assert.are.equal(drop_last and full * batch_size or n, #order)
              if not shuffle then
                for i, id in ipairs(order) do assert.are.equal(i, id) end
              elseif not drop_last then
                for id = 1, n do assert.is_true(seen[id]) end
              end
            end
          end
        end
      end
    end
  end)

  it("gives batches of the right shapes and dtypes", function()
    local ds = data.TensorDataset(dn.zeros(10, 1, 2, 3), dn.zeros(10, 4), dn.arange(1, 11):int())
    for _, shuffle in ipairs{false, true} do
      local count = 0
      for a, b, c, extra in data.DataLoader(ds, {batch_size = 4, shuffle = shuffle})() do
        local rows = count < 2 and 4 or 2
        H.assert_shape(a, {rows, 1, 2, 3}, "float32")
        H.assert_shape(b, {rows, 4}, "float32")
        H.assert_shape(c, {rows}, "int32")
        assert.is_nil(extra)
        count = count + 1
      end
      assert.are.equal(3, count)
    end
  end)

  it("gives views without shuffle (no copy)", function()
    local ds = numbered(6)
    local it = data.DataLoader(ds, {batch_size = 4}):iter()
    local _, y2 = it(), select(2, it())
    H.assert_same(y2, {5, 6})
    y2:fill_(0)
    H.assert_same(ds.tensors[2], {1, 2, 3, 4, 0, 0})
    assert.is_nil(it())
  end)

  it("replays shuffled epochs from the generator", function()
    local ds = numbered(50)
    local function loader(g) return data.DataLoader(ds, {batch_size = 7, shuffle = true, generator = g}) end
    -- the same seed gives the same batches, epoch after epoch
    local l1, l2 = loader(dn.Generator(42)), loader(dn.Generator(42))
    local e1, e2 = epoch(l1), epoch(l2)
    assert.are.same(e1, e2)
    local e1b = epoch(l1)
    assert.are.same(e1b, epoch(l2))
    -- successive epochs differ (the same permutation twice has probability 1/50!)
    assert.are_not.same(e1, e1b)
    -- another seed gives other batches
    assert.are_not.same(e1, epoch(loader(dn.Generator(43))))
    -- saving the state before an epoch and restoring it replays that epoch
    local g = dn.Generator(9)
    local l = loader(g)
    epoch(l)
    local state = g:get_state()
    local third = epoch(l)
    epoch(l)
    g:set_state(state)
    assert.are.same(third, epoch(l))
    -- without a generator: the default one, as seeded when the epoch starts
    local ld = loader(nil)
    dn.manual_seed(123)
    local d1 = epoch(ld)
    dn.manual_seed(123)
    assert.are.same(d1, epoch(ld))
  end)

  it("draws the permutation when the epoch starts", function()
    local g = dn.Generator(1)
    local l = data.DataLoader(numbered(8), {batch_size = 8, shuffle = true, generator = g})
    local before = g:get_state().offset
    local it = l:iter()
    local after = g:get_state().offset
    assert.is_true(after > before)
    it()
    assert.are.equal(after, g:get_state().offset)   -- batches draw nothing more
    -- not shuffling draws nothing
    local unshuffled = data.DataLoader(numbered(8), {batch_size = 3, generator = g})
    for _ in unshuffled:iter() do end
    assert.are.equal(after, g:get_state().offset)
  end)

  it("handles empty datasets and batches larger than the dataset", function()
    local empty = data.DataLoader(numbered(0), {batch_size = 4, shuffle = true})
    assert.are.equal(0, #empty)
    for _ in empty:iter() do error("no batch expected") end
    local small = numbered(3)
    assert.are.equal(1, #data.DataLoader(small, {batch_size = 8}))
    assert.are.equal(0, #data.DataLoader(small, {batch_size = 8, drop_last = true}))
    for _ in data.DataLoader(small, {batch_size = 8, drop_last = true}):iter() do error("no batch expected") end
  end)

  it("defaults to batches of one, in order", function()
    local l = data.DataLoader(numbered(3))
    assert.are.equal(3, #l)
    assert.are.same({{1}, {2}, {3}}, epoch(l))
    assert.are.equal(
      "dropnet.data.DataLoader(3 samples, batch_size=1, shuffle=false, drop_last=false: 3 batches)", tostring(l))
  end)

  it("checks its arguments", function()
    local ds = numbered(4)
    H.assert_error(function() return data.DataLoader(ds, {batch_size = 0}) end,
      {"DataLoader: batch_size must be an integer >= 1 (got 0)"})
    H.assert_error(function() return data.DataLoader(ds, {batch_size = -2}) end, {"(got -2)"})
    H.assert_error(function() return data.DataLoader(ds, {batch_size = 2.5}) end,
      {"batch_size must be an integer >= 1 (got 2.5)"})
    H.assert_error(function() return data.DataLoader(ds, {batch_size = "8"}) end, {'(got "8")'})
    assert.are.equal(2, data.DataLoader(ds, {batch_size = 2.0}).batch_size)
    H.assert_error(function() return data.DataLoader(ds, {batchsize = 8}) end,
      {"DataLoader: unknown option 'batchsize' "
        .. "(known: batch_size, distributed, drop_last, generator, shuffle, transform)"})
    H.assert_error(function() return data.DataLoader(ds, {shuffle = 1}) end, {"shuffle must be true or false (got 1)"})
    H.assert_error(function() return data.DataLoader(ds, {drop_last = "no"}) end, {"drop_last must be true or false"})
    H.assert_error(function() return data.DataLoader(ds, {generator = {}}) end,
      {"generator must be a dropnet.Generator (got table)"})
    H.assert_error(function() return data.DataLoader(ds, 8) end, {"DataLoader: options must be a table (got 8)"})
    H.assert_error(function() return data.DataLoader(dn.zeros(4)) end,
      {"DataLoader: expected a TensorDataset (got a tensor)"})
  end)
end)

describe("data.digits", function()
  -- Checksums computed with Python from the CSV the data came from (Debian python3-sklearn 1.2.1,
  -- sklearn/datasets/data/digits.csv.gz): the 0..16 pixel counts sum to 561718, the 0..9 labels to 8070.
  it("holds the 1,797 digits with pixels in [0,1] and labels 1..10", function()
    local ds = data.digits()
    local x, y = ds.tensors[1], ds.tensors[2]
    assert.same({1797, 64}, x:shape())
    assert.same({1797}, y:shape())
    assert.equal("float32", x:dtype())
    assert.equal("int32", y:dtype())
    assert.equal(561718, x:sum():item() * 16)   -- /16 is exact in float32, and so is the sum
    assert.equal(8070 + 1797, y:sum():item())
    assert.equal(0, x:min():item())
    assert.equal(1, x:max():item())
    assert.equal(1, y:min():item())
    assert.equal(10, y:max():item())
    -- the first sample is a 0, the second a 1 (the CSV's first two rows)
    assert.equal(1, y[1])
    assert.equal(2, y[2])
    assert.equal(13 / 16, x[1][4])
    assert.same({"0", "9"}, {data.class_names.digits[y[1]], data.class_names.digits[10]})
  end)

  it("keeps the image layout with flatten = false and checks its options", function()
    local ds = data.digits{flatten = false}
    assert.same({1797, 1, 8, 8}, ds.tensors[1]:shape())
    assert.equal(13 / 16, ds.tensors[1][1][1][1][4])
    H.assert_error(function() return data.digits{flatten = 1} end, {"digits", "flatten"})
    H.assert_error(function() return data.digits{split = "train"} end, {"digits", "split"})
  end)

  it("splits and loads like any TensorDataset", function()
    local train, test = data.random_split(data.digits(), 1297)
    assert.equal(1297, #train)
    assert.equal(500, #test)
    local n = 0
    for x, y in data.DataLoader(test, {batch_size = 128}):iter() do
      n = n + x:shape()[1]
      assert.equal(64, x:shape()[2])
      assert.equal(x:shape()[1], y:shape()[1])
    end
    assert.equal(500, n)
  end)
end)
