-- Data augmentation: data.RandomCrop, data.RandomHorizontalFlip, data.Compose,
-- the DataLoader's transform option, and the kernels under them
-- (dn.random_crop, dn.random_hflip). The exact Philox draws are tested in C
-- (tests/c/test_augment.c); here every output is checked against the images
-- it came from, by search over the positions a crop may take.
local dn = require "dropnet"
local data = require "dropnet.data"
local H = require "helpers"

-- [n, c, h, w] images with distinct nonzero values 1 + ((i*c + k)*h + r)*w + s (0-based).
local function images(n, c, h, w)
  return dn.arange(1, n * c * h * w + 1):float():view(n, c, h, w)
end

-- The padded image i (1-based) of x [N, C, H, W] as a nested table [C][H+2p][W+2q].
local function padded(x, i, ph, pw, fill)
  local v = x:totable()[i]
  local out = {}
  for c = 1, #v do
    out[c] = {}
    local h, w = #v[c], #v[c][1]
    for r = 1, h + 2 * ph do
      out[c][r] = {}
      for s = 1, w + 2 * pw do
        local rr, ss = r - ph, s - pw
        out[c][r][s] = (rr >= 1 and rr <= h and ss >= 1 and ss <= w) and v[c][rr][ss] or fill
      end
    end
  end
  return out
end

-- The (top, left) positions (0-based) of every window of image y (table [C][oh][ow]) in the padded image p.
local function positions(p, y)
  local found = {}
  local oh, ow = #y[1], #y[1][1]
  for top = 0, #p[1] - oh do
    for left = 0, #p[1][1] - ow do
      local same = true
      for c = 1, #y do
        for r = 1, oh do
          for s = 1, ow do
            if p[c][top + r][left + s] ~= y[c][r][s] then same = false end
          end
        end
      end
      if same then found[#found + 1] = {top, left} end
    end
  end
  return found
end

-- An image (nested table [C][H][W]) mirrored left to right.
local function mirror_table(v)
  local out = {}
  for c = 1, #v do
    out[c] = {}
    for r = 1, #v[c] do
      local row, flipped = v[c][r], {}
      for s = 1, #row do flipped[s] = row[#row + 1 - s] end
      out[c][r] = flipped
    end
  end
  return out
end

-- Image i of x [N, C, H, W] mirrored left to right, as a nested table.
local function mirrored(x, i)
  return mirror_table(x:totable()[i])
end

describe("data.RandomCrop", function()
  it("crops every image at its own position of the zero-padded image", function()
    local x = images(40, 2, 5, 6)
    local y = data.RandomCrop({5, 6}, {padding = 2, generator = dn.Generator(3)})(x)
    H.assert_shape(y, {40, 2, 5, 6}, "float32")
    local ys, seen = y:totable(), {}
    for i = 1, 40 do
      local found = positions(padded(x, i, 2, 2, 0), ys[i])
      assert.are.equal(1, #found, "image " .. i .. " is one window of its padded image")
      seen[found[1][1] .. "," .. found[1][2]] = true
    end
    local distinct = 0
    for _ in pairs(seen) do distinct = distinct + 1 end
    assert.is_true(distinct >= 10, "40 crops take many of the 25 positions (" .. distinct .. ")")
  end)

  it("pads with exact zeros, or with the fill value", function()
    local x = images(3, 1, 2, 2)
    -- the crop is the whole padded image: the same for every draw
    local y = data.RandomCrop(4, {padding = 1})(x)
    H.assert_same(y[1][1], {{0, 0, 0, 0}, {0, 1, 2, 0}, {0, 3, 4, 0}, {0, 0, 0, 0}})
    assert.are.equal(12, H.count_nonzero(y), "12 pixels, the rest padding")
    for _, row in ipairs(y:totable()[3][1]) do
      for _, v in ipairs(row) do
        if v == 0 then assert.are.equal(math.huge, 1 / v, "+0.0, not -0.0") end
      end
    end
    y = data.RandomCrop({2, 4}, {padding = {0, 1}, fill = -0.5})(x)
    H.assert_same(y[2][1], {{-0.5, 5, 6, -0.5}, {-0.5, 7, 8, -0.5}})
  end)

  it("takes flat batches [N, C*H*W] with the image shape, and gives flat batches back", function()
    local x = images(6, 1, 4, 4)
    local flat = x:view(6, 16)
    local crop = data.RandomCrop(3, {padding = 1, shape = {1, 4, 4}, generator = dn.Generator(9)})
    local y = crop(flat)
    H.assert_shape(y, {6, 9})
    local again = data.RandomCrop(3, {padding = 1, generator = dn.Generator(9)})(x)
    H.assert_same(y, again:view(6, 9), "the same crops as of the [N, C, H, W] batch")
    -- {H, W} for one channel; [N, H, W] batches
    H.assert_same(data.RandomCrop(3, {padding = 1, shape = {4, 4}, generator = dn.Generator(9)})(flat), y)
    H.assert_same(data.RandomCrop(3, {padding = 1, generator = dn.Generator(9)})(x:view(6, 4, 4)):view(6, 9), y)
    -- a non-contiguous flat batch gives the same
    local nc = flat:t():contiguous():t()
    assert.is_false(nc:is_contiguous())
    H.assert_same(data.RandomCrop(3, {padding = 1, shape = {1, 4, 4}, generator = dn.Generator(9)})(nc), y)
  end)

  it("never changes its input and gives results that do not require grad", function()
    local x = images(4, 1, 3, 3):requires_grad_()
    local before = x:detach():clone()
    local y = data.RandomCrop(3, {padding = 2})(x)
    H.assert_same(x:detach(), before)
    assert.is_false(y.requires_grad)
  end)
end)

describe("data.RandomHorizontalFlip", function()
  it("mirrors each image or keeps it, about half of them with p = 0.5", function()
    local x = images(400, 2, 3, 4)
    local y = data.RandomHorizontalFlip({generator = dn.Generator(4)})(x)
    local ys, flipped = y:totable(), 0
    local xs = x:totable()
    for i = 1, 400 do
      if H.same_values(dn.tensor(ys[i]), dn.tensor(mirrored(x, i))) then
        flipped = flipped + 1
      else
        assert.are.same(xs[i], ys[i], "image " .. i .. " is either mirrored or kept")
      end
    end
    H.assert_binomial(flipped, 400, 0.5, "flipped images")
  end)

  it("flips none with p = 0 and all with p = 1", function()
    local x = images(5, 1, 2, 3)
    H.assert_same(data.RandomHorizontalFlip({p = 0})(x), x)
    local y = data.RandomHorizontalFlip({p = 1})(x)
    H.assert_same(y[1][1], {{3, 2, 1}, {6, 5, 4}})
    local flat = data.RandomHorizontalFlip({p = 1, shape = {1, 2, 3}})(x:view(5, 6))
    H.assert_same(flat, y:view(5, 6))
  end)
end)

describe("augmentation draws", function()
  local function augment(g)
    return data.Compose{data.RandomCrop(8, {padding = 2, generator = g}), data.RandomHorizontalFlip({generator = g})}
  end

  it("repeat for a seed, a generator state or dn.manual_seed, and differ between batches", function()
    local x = images(32, 3, 8, 8)
    local a = augment(dn.Generator(5))(x)
    H.assert_same(augment(dn.Generator(5))(x), a)
    local g = dn.Generator(5)
    local first, second = augment(g)(x), augment(g)(x)
    H.assert_same(first, a)
    assert.is_false(H.same_values(first, second), "the next batch draws again")
    -- with the default generator
    dn.manual_seed(77)
    local d1 = augment()(x)
    local state = dn.get_rng_state()
    local d2 = augment()(x)
    dn.manual_seed(77)
    H.assert_same(augment()(x), d1)
    dn.set_rng_state(state)
    H.assert_same(augment()(x), d2)
  end)

  it("advance the generator by one block per image and call", function()
    local g = dn.Generator(1)
    local x = images(10, 1, 4, 4)
    data.RandomCrop(4, {padding = 1, generator = g})(x)
    assert.are.equal(10, g:get_state().offset)
    data.RandomHorizontalFlip({p = 0, generator = g})(x)
    assert.are.equal(20, g:get_state().offset)
  end)

  it("give the same bits for any thread count", function()
    local threads = dn.get_num_threads()
    local x = dn.randn(256, 3, 32, 32, dn.Generator(2))
    local results = {}
    for t = 1, 4 do
      dn.set_num_threads(t)
      results[t] = augment(dn.Generator(8))(x)
    end
    dn.set_num_threads(threads)
    for t = 2, 4 do
      assert.are.equal(0, (results[t] - results[1]):abs():max():item(), t .. " threads")
      assert.is_true(H.same_values(results[t], results[1]), t .. " threads")
    end
  end)
end)

describe("data.Compose", function()
  it("applies the transforms in order, functions included", function()
    local x = images(2, 1, 2, 2)
    local c = data.Compose{function(t) return t * 2 end, data.RandomHorizontalFlip({p = 1}),
      function(t) return t + 1 end}
    H.assert_same(c(x)[1][1], {{5, 3}, {9, 7}})
    assert.truthy(tostring(c):find("RandomHorizontalFlip(p=1)", 1, true))
    H.assert_same(data.Compose{}(x), x)
  end)

  it("rejects what is not a list of callables", function()
    H.assert_error(function() return data.Compose(3) end, {"Compose: transforms must be a list"})
    H.assert_error(function() return data.Compose{data.RandomHorizontalFlip(), 4} end,
      {"Compose: transforms[2] must be a function or a callable transform (got 4)"})
    H.assert_error(function() return data.Compose{x = print} end, {"Compose: transforms must be a list (found key"})
    H.assert_error(function() return data.Compose{function() return 1 end}(dn.zeros(1, 1, 2, 2)) end,
      {"Compose: transforms[1] returned 1, a tensor expected"})
  end)
end)

describe("DataLoader with a transform", function()
  local x = images(10, 1, 4, 4):view(10, 16)
  local y = dn.arange(1, 11):int()
  local ds = data.TensorDataset(x, y)
  local augment = data.Compose{data.RandomCrop(4, {padding = 1, shape = {1, 4, 4}}),
    data.RandomHorizontalFlip{shape = {1, 4, 4}}}

  it("applies it to the inputs of every batch, not to the labels", function()
    local g = dn.Generator(6)
    local loader = data.DataLoader(ds, {batch_size = 4, shuffle = true, generator = g, transform = augment})
    assert.truthy(tostring(loader):find("transform", 1, true))
    assert.are.equal(augment, loader.transform)
    dn.manual_seed(3)
    local plain = data.DataLoader(ds, {batch_size = 4, shuffle = true, generator = dn.Generator(6)})
    local batches = {}
    for xb, yb in plain:iter() do batches[#batches + 1] = {xb, yb} end
    local k = 0
    for xb, yb in loader:iter() do
      k = k + 1
      H.assert_shape(xb, {yb:size(1), 16}, "float32")
      H.assert_same(yb, batches[k][2], "the labels are left alone")
      assert.is_false(H.same_values(xb, batches[k][1]), "the inputs are augmented")
      -- every image is a crop of its padded image, maybe mirrored
      local rows = xb:view(-1, 1, 4, 4):totable()
      local src = batches[k][1]:view(-1, 1, 4, 4)
      for i = 1, #rows do
        local p = padded(src, i, 1, 1, 0)
        assert.is_true(#positions(p, rows[i]) + #positions(p, mirror_table(rows[i])) >= 1, "image " .. i)
      end
    end
    assert.are.equal(3, k)
  end)

  it("replays an epoch from the saved default generator state (crops and flips included)", function()
    local loader = data.DataLoader(ds, {batch_size = 4, shuffle = true, transform = augment})
    dn.manual_seed(11)
    local state = dn.get_rng_state()
    local first = {}
    for xb in loader:iter() do first[#first + 1] = xb end
    dn.set_rng_state(state)
    local k = 0
    for xb in loader:iter() do
      k = k + 1
      H.assert_same(xb, first[k])
    end
  end)

  it("is off by default and for loaders not given one", function()
    local loader = data.DataLoader(ds, {batch_size = 10})
    assert.is_nil(loader.transform)
    for xb in loader:iter() do H.assert_same(xb, x) end
  end)

  it("rejects a transform that is not callable or returns no tensor", function()
    H.assert_error(function() return data.DataLoader(ds, {transform = "crop"}) end,
      {"DataLoader: transform must be a function or a callable transform (got \"crop\")"})
    local loader = data.DataLoader(ds, {batch_size = 5, transform = function() return nil end})
    H.assert_error(function() for _ in loader:iter() do end end,
      {"DataLoader: the transform returned nil, a tensor expected"})
  end)
end)

describe("transform errors name the function and what was wrong", function()
  it("for bad options", function()
    local cases = {
      {function() return data.RandomCrop() end,
        "RandomCrop: size must be an integer or a pair {height, width} (got nil)"},
      {function() return data.RandomCrop(0) end, "RandomCrop: size must be an integer >= 1 (got 0)"},
      {function() return data.RandomCrop({3}) end, "RandomCrop: size must be an integer or a pair"},
      {function() return data.RandomCrop(2.5) end, "RandomCrop: size must be an integer >= 1 (got 2.5)"},
      {function() return data.RandomCrop(3, {padding = -1}) end, "RandomCrop: padding must be an integer >= 0"},
      {function() return data.RandomCrop(3, {fill = 0 / 0}) end, "RandomCrop: fill must be a finite number"},
      {function() return data.RandomCrop(3, {shape = {28}}) end, "RandomCrop: shape must be {C, H, W} or {H, W}"},
      {function() return data.RandomCrop(3, {shape = {1, 0, 28}}) end, "RandomCrop: shape[2] must be an integer >= 1"},
      {function() return data.RandomCrop(3, {pad = 1}) end, "RandomCrop: unknown option 'pad' (known: fill, generator"},
      {function() return data.RandomCrop(3, {generator = 1}) end, "RandomCrop: generator must be a dropnet.Generator"},
      {function() return data.RandomCrop(32, {padding = 1, shape = {1, 28, 28}}) end,
        "RandomCrop: crop size 32x32 is larger than the padded image 30x30 (image 28x28, padding 1x1)"},
      {function() return data.RandomHorizontalFlip({p = 1.5}) end,
        "RandomHorizontalFlip: p must be a number in [0, 1] (got 1.5)"},
      {function() return data.RandomHorizontalFlip(0.5) end, "RandomHorizontalFlip: options must be a table"},
      {function() return data.RandomHorizontalFlip({prob = 1}) end, "RandomHorizontalFlip: unknown option 'prob'"},
    }
    for _, case in ipairs(cases) do H.assert_error(case[1], {case[2]}) end
  end)

  it("for bad batches", function()
    local crop = data.RandomCrop(4, {padding = 1})
    H.assert_error(function() return crop(dn.zeros(3, 16)) end,
      {"RandomCrop: a flat batch [3,16] needs the image shape: pass shape = {C, H, W}"})
    H.assert_error(function() return crop(dn.zeros(16)) end, {"RandomCrop: x must be a batch of images",
      "(got shape [16])"})
    H.assert_error(function() return crop("x") end, {"RandomCrop: a tensor expected (got \"x\")"})
    H.assert_error(function() return crop(dn.zeros(2, 1, 1, 2)) end,
      {"RandomCrop: crop size 4x4 is larger than the padded image 3x4 (image 1x2, padding 1x1)"})
    H.assert_error(function() return data.RandomCrop(3, {shape = {1, 4, 4}})(dn.zeros(2, 15)) end,
      {"RandomCrop: shape {1,4,4} has 16 values per image, but the batch [2,15] has 15"})
    H.assert_error(function() return data.RandomCrop(3, {shape = {1, 4, 4}})(dn.zeros(2, 1, 5, 4)) end,
      {"RandomCrop: the batch [2,1,5,4] does not end with the image shape {1,4,4}"})
    H.assert_error(function() return data.RandomHorizontalFlip()(dn.zeros(2, 4, 4):int()) end,
      {"random_hflip: x must be float32 (got int32)"})
  end)

  it("for the kernels", function()
    local x = dn.zeros(2, 1, 4, 4)
    H.assert_error(function() return dn.random_crop(x, 5, 4, 0, 0, 0) end,
      {"random_crop: crop size 5x4 must be at least 1x1 and at most the padded image 4x4 (x [2,1,4,4], padding 0x0)"})
    H.assert_error(function() return dn.random_crop(x, 4, 4, 0, 0, "zero") end, {"fill must be a number (got string)"})
    H.assert_error(function() return dn.random_crop(x, 4, 4, 0.5, 0, 0) end, {"padding height must be an integer"})
    H.assert_error(function() return dn.random_hflip(x, 2) end, {"random_hflip: p must be in [0, 1] (got 2)"})
    H.assert_error(function() return dn.random_hflip(x, 0.5, 3) end, {"Generator or options table expected"})
    -- a generator or {generator = g} in the last place
    H.assert_same(dn.random_hflip(images(3, 1, 2, 2), 0.5, dn.Generator(2)),
      dn.random_hflip(images(3, 1, 2, 2), 0.5, {generator = dn.Generator(2)}))
  end)
end)
