--- dropnet.data: data files, datasets and a shuffling batch loader.
-- Every numeric step runs in C: the readers (IDX, CSV), the gathering of
-- shuffled batches (`index_select`, one call per tensor per batch) and, for a
-- dataset stored as bytes (Fashion-MNIST's images), the uint8 -> float32
-- conversion of each batch, fused with its gathering (`byte_rows_to_float`).
-- Lua only decides which rows go into which batch, with tensors of indices.
-- The augmentation transforms (RandomCrop, RandomHorizontalFlip) are one C
-- call per batch too (`random_crop`, `random_hflip`), each image's random
-- choice drawn from a generator.
--
--   local data = require "dropnet.data"
--   local train = data.fashion_mnist{split = "train"}   -- images kept as uint8
--   local loader = data.DataLoader(train, {batch_size = 128, shuffle = true})
--   for x, y in loader:iter() do ... end        -- x float32 [128,784], y int32 [128]
--   local augment = data.Compose{data.RandomCrop(28, {padding = 2, shape = {1, 28, 28}}),
--     data.RandomHorizontalFlip{shape = {1, 28, 28}}}
--   loader = data.DataLoader(train, {batch_size = 128, shuffle = true, transform = augment})
--
-- Data files are found in `dir`, else in the directory named by the
-- DROPNET_DATA environment variable, else where Debian's package installs them.
local dn = require "dropnet"
local core = require "dropnet.core"
local check = require "dropnet.check"

local data = {}

-- --- checks ------------------------------------------------------------------------

local fail, describe = check.fail, check.describe

--- "[2,3]" for a tensor's shape.
local function shape_string(t)
  return "[" .. table.concat(t:shape(), ",") .. "]"
end

local function check_path(where, path)
  if type(path) ~= "string" then fail("%s: path must be a string (got %s)", where, describe(path)) end
  return path
end

-- --- files -------------------------------------------------------------------------

--- Reads an IDX file (the MNIST family's format), plain or gzip-compressed.
-- The header is checked against the file before any data is read; errors
-- name the file and what is wrong with it.
-- @tparam string path file name (gzip when the content is gzip, whatever the name)
-- @treturn Tensor uint8, int32 or float32, shaped as the header says
function data.idx(path)
  return core.idx_read(check_path("data.idx", path))
end

--- Reads a numeric CSV file into a float32 matrix.
-- @tparam string path file name
-- @tparam[opt] table options `delimiter` (one character, default ","),
--   `header` (true to skip the first line, default false)
-- @treturn Tensor float32 [rows, cols]
function data.csv(path, options)
  check_path("data.csv", path)
  options = check.options("data.csv", "options", options, {"delimiter", "header"})
  if options.delimiter ~= nil and (type(options.delimiter) ~= "string" or #options.delimiter ~= 1) then
    fail("data.csv: delimiter must be a one-character string (got %s)", describe(options.delimiter))
  end
  if options.header ~= nil then check.bool("data.csv", "header", options.header) end
  return core.csv_read(path, options)
end

-- --- TensorDataset -----------------------------------------------------------------

local TensorDataset = {}
TensorDataset.__index = TensorDataset
TensorDataset.__name = "dropnet.data.TensorDataset"

--- A dataset made of tensors that share their first dimension: sample i is
-- row i of every tensor (e.g. images [N,784] and labels [N]).
-- @tparam Tensor ... one or more tensors, each with at least one dim
-- @treturn TensorDataset with fields `tensors` (the list), `n` (the samples)
--   and `byte_tables` (see `set_byte_table`; empty)
-- @usage local ds = data.TensorDataset(x, y); print(#ds)
function data.TensorDataset(...)
  local count = select("#", ...)
  if count == 0 then fail("TensorDataset: expected at least one tensor") end
  local tensors = {...}
  for i = 1, count do
    local t = tensors[i]
    if not dn.is_tensor(t) then fail("TensorDataset: argument %d is %s, a tensor expected", i, describe(t)) end
    if t:dim() == 0 then fail("TensorDataset: tensor %d is 0-dim (a dataset needs a first dim to index)", i) end
  end
  local n = tensors[1]:shape()[1]
  for i = 2, count do
    local rows = tensors[i]:shape()[1]
    if rows ~= n then
      fail("TensorDataset: tensor %d has %d rows but tensor 1 has %d (shapes %s and %s): the first dims must agree",
        i, rows, n, shape_string(tensors[i]), shape_string(tensors[1]))
    end
  end
  return setmetatable({tensors = tensors, n = n, byte_tables = {}}, TensorDataset)
end

--- Stores tensor k as bytes and gives it out as float32: from now on every
-- sample, batch and subset shows tensor k as `table[b + 1]` for each byte b,
-- computed in C per batch, while `ds.tensors[k]` stays uint8 (a quarter of
-- the memory of float32). Build the table with tensor ops, e.g.
-- `dn.arange(0, 256):float():div_(255)`: a batch then holds exactly the
-- values those ops give on the whole tensor.
-- @tparam integer k which tensor (1-based); it must be uint8
-- @tparam Tensor|nil table float32 [256] (copied), or nil to give tensor k out as it is again
-- @treturn TensorDataset the dataset itself
function TensorDataset:set_byte_table(k, table)
  local where = "TensorDataset:set_byte_table"
  if getmetatable(self) ~= TensorDataset then fail("%s: expected a TensorDataset (got %s)", where, describe(self)) end
  local index = math.type(k) == "float" and math.tointeger(k) or k
  if math.type(index) ~= "integer" or index < 1 or index > #self.tensors then
    fail("%s: k must be an integer in [1, %d], a tensor of the dataset (got %s)", where, #self.tensors, describe(k))
  end
  if table == nil then
    self.byte_tables[index] = nil
    return self
  end
  local t = self.tensors[index]
  if t:dtype() ~= "uint8" then
    fail("%s: tensor %d is %s %s; a byte table needs a uint8 tensor", where, index, t:dtype(), shape_string(t))
  end
  if not dn.is_tensor(table) or table:dtype() ~= "float32" or table:dim() ~= 1 or table:size(1) ~= 256 then
    fail("%s: table must be a float32 tensor of shape [256], one value per byte (got %s)", where,
      dn.is_tensor(table) and table:dtype() .. " " .. shape_string(table) or describe(table))
  end
  -- copied so that a later change of the caller's tensor cannot change the dataset
  self.byte_tables[index] = table:detach():clone()
  return self
end

-- Tensor k's rows at index (1-D int32; nil: every row of `t`, a narrowed view
-- of tensor k), as the dataset gives them out.
local function rows_of(ds, k, t, index)
  local lut = ds.byte_tables[k]
  if lut then return dn.byte_rows_to_float(t, index, lut) end
  if index then return t:index_select(1, index) end
  return t
end

--- Tensor k as a whole, as samples and batches show it: `ds.tensors[k]`
-- itself, or for a tensor with a byte table a new float32 tensor of its
-- shape (4 bytes per element: the memory the byte storage saves).
-- @tparam integer k which tensor (1-based)
-- @treturn Tensor
function TensorDataset:tensor(k)
  local where = "TensorDataset:tensor"
  if getmetatable(self) ~= TensorDataset then fail("%s: expected a TensorDataset (got %s)", where, describe(self)) end
  local index = math.type(k) == "float" and math.tointeger(k) or k
  if math.type(index) ~= "integer" or index < 1 or index > #self.tensors then
    fail("%s: k must be an integer in [1, %d], a tensor of the dataset (got %s)", where, #self.tensors, describe(k))
  end
  return rows_of(self, index, self.tensors[index], nil)
end

--- Number of samples (`#ds` gives the same).
-- @treturn integer
function TensorDataset:size() return self.n end

function TensorDataset:__len() return self.n end

function TensorDataset:__tostring()
  local parts = {}
  for i, t in ipairs(self.tensors) do
    parts[i] = t:dtype() .. " " .. shape_string(t) .. (self.byte_tables[i] and " as float32" or "")
  end
  return string.format("dropnet.data.TensorDataset(%d samples: %s)", self.n, table.concat(parts, ", "))
end

--- Sample i: row i of every tensor, as views of one row (shape [1, ...]),
-- in the order the tensors were given. The views share memory with the
-- dataset, except for a tensor with a byte table: its row is a new float32 tensor.
-- @tparam integer i 1-based sample index
-- @return one tensor per dataset tensor
function TensorDataset:get(i)
  local index = math.type(i) == "float" and math.tointeger(i) or i
  if math.type(index) ~= "integer" or index < 1 or index > self.n then
    fail("TensorDataset:get: index must be an integer in [1, %d] (got %s)", self.n, describe(i))
  end
  local rows = {}
  for k, t in ipairs(self.tensors) do rows[k] = rows_of(self, k, t:narrow(1, index, 1), nil) end
  return table.unpack(rows, 1, #self.tensors)
end

--- A new dataset with the given samples, in the given order (gathered in C,
-- so the result owns its memory). Byte tensors stay bytes, with the same byte tables.
-- @tparam Tensor|table index 1-D int32 tensor (or a list) of 1-based sample indices
-- @treturn TensorDataset
function TensorDataset:subset(index)
  if type(index) == "table" and not dn.is_tensor(index) then index = dn.tensor(index, "int32") end
  if not dn.is_tensor(index) then
    fail("TensorDataset:subset: index must be an int32 tensor or a list of integers (got %s)", describe(index))
  end
  if index:dtype() ~= "int32" or index:dim() ~= 1 then
    fail("TensorDataset:subset: index must be a 1-D int32 tensor (got %s %s)", index:dtype(), shape_string(index))
  end
  local gathered = {}
  for k, t in ipairs(self.tensors) do gathered[k] = t:index_select(1, index) end
  local ds = data.TensorDataset(table.unpack(gathered, 1, #self.tensors))
  for k, lut in pairs(self.byte_tables) do ds.byte_tables[k] = lut end   -- never changed in place: shared
  return ds
end

local function check_dataset(where, ds)
  if getmetatable(ds) ~= TensorDataset then fail("%s: expected a TensorDataset (got %s)", where, describe(ds)) end
  return ds
end

--- Splits a dataset at random into two disjoint datasets of `n_first` and
-- `#ds - n_first` samples (e.g. a validation set carved from the training set).
-- The split is a permutation drawn from the generator: the same generator
-- state gives the same split.
-- @tparam TensorDataset ds
-- @tparam integer n_first size of the first part, 0..#ds
-- @tparam[opt] table options `generator` (default: `dn.default_generator()`)
-- @treturn TensorDataset the first `n_first` samples of the permutation
-- @treturn TensorDataset the rest
function data.random_split(ds, n_first, options)
  local where = "random_split"
  check_dataset(where, ds)
  local first = check.int(where, "n_first", n_first, 0)
  if first > ds.n then fail("%s: n_first must be at most the dataset size %d (got %d)", where, ds.n, first) end
  options = check.options(where, "options", options, {"generator"})
  local g = check.generator(where, options.generator) or dn.default_generator()
  local perm = dn.randperm(ds.n, g)
  return ds:subset(perm:narrow(1, 1, first)), ds:subset(perm:narrow(1, first + 1, ds.n - first))
end

-- --- transforms --------------------------------------------------------------------

--- True for a function or a value whose metatable has a __call function.
local function is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and type(rawget(mt, "__call")) == "function"
end

local function list_string(list)
  return "{" .. table.concat(list, ",") .. "}"
end

--- The `shape` option of a transform: nil, or a copy of {C, H, W} / {H, W}
-- (positive integers), the shape of one image of a flat batch.
local function check_image_shape(where, shape)
  if shape == nil then return nil end
  if type(shape) ~= "table" or (#shape ~= 2 and #shape ~= 3) then
    fail("%s: shape must be {C, H, W} or {H, W}, the shape of one image (got %s)", where, describe(shape))
  end
  local copy = {}
  for i = 1, #shape do copy[i] = check.int(where, string.format("shape[%d]", i), shape[i], 1) end
  for key in pairs(shape) do
    if math.type(key) ~= "integer" or key < 1 or key > #shape then
      fail("%s: shape must be a list {C, H, W} or {H, W} (found key %s)", where, describe(key))
    end
  end
  return copy
end

--- A size or padding option: an integer or a pair {height, width}, as {h, w}.
local function check_pair(where, what, v, min)
  if type(v) == "table" then
    if #v ~= 2 then fail("%s: %s must be an integer or a pair {height, width} (got a table of %d values)", where,
      what, #v) end
    return {check.int(where, what .. "[1] (height)", v[1], min), check.int(where, what .. "[2] (width)", v[2], min)}
  end
  if v == nil or type(v) ~= "number" then
    fail("%s: %s must be an integer or a pair {height, width} (got %s)", where, what, describe(v))
  end
  local n = check.int(where, what, v, min)
  return {n, n}
end

--- The batch x as images [N, ..., H, W] for the C kernels, and a function
-- giving a result back in x's layout. A flat batch [N, D] is viewed (or
-- copied, if its strides need it) as [N, C, H, W] through `shape`, and its
-- results flattened again; a batch of 3 or more dims is used as it is, and
-- must end with `shape` when one is given.
local function image_batch(where, x, shape)
  check.tensor(where, x)
  local dims = x:dim()
  if dims == 2 then
    if not shape then
      fail("%s: a flat batch %s needs the image shape: pass shape = {C, H, W}, e.g. {1, 28, 28}", where,
        shape_string(x))
    end
    local c, h, w = 1, shape[#shape - 1], shape[#shape]
    if #shape == 3 then c = shape[1] end
    local n, d = x:size(1), x:size(2)
    if c * h * w ~= d then
      fail("%s: shape %s has %d values per image, but the batch %s has %d", where, list_string(shape), c * h * w,
        shape_string(x), d)
    end
    return x:reshape(n, c, h, w), function(y)
      local ys, per_image = y:shape(), 1
      for i = 2, #ys do per_image = per_image * ys[i] end
      return y:reshape(n, per_image)
    end
  end
  if dims < 3 then
    fail("%s: x must be a batch of images [N, C, H, W] or [N, H, W], or a flat batch [N, D] with the shape option "
      .. "(got %s %s)", where, dims == 0 and "a 0-dim tensor" or "shape", dims == 0 and "" or shape_string(x))
  end
  if shape then
    local xs = x:shape()
    local match = #xs - 1 >= #shape
    for i = 1, #shape do match = match and xs[#xs - #shape + i] == shape[i] end
    if not match then
      fail("%s: the batch %s does not end with the image shape %s", where, shape_string(x), list_string(shape))
    end
  end
  return x, function(y) return y end
end

local RandomCrop = {}
RandomCrop.__index = RandomCrop
RandomCrop.__name = "dropnet.data.RandomCrop"

--- Random crops of padded images (torchvision's RandomCrop with constant
-- padding), for batches: each image of a batch gets its own crop position,
-- drawn from the generator (one Philox block per image: the same bits for
-- any thread count). `crop(x)` returns a new tensor and never changes x; the
-- result does not require grad.
-- @tparam integer|table size the crop, size x size or {height, width}
-- @tparam[opt] table options `padding` (integer or {height, width} added on
--   each side, default 0), `fill` (the padding's value, default 0),
--   `shape` ({C, H, W} or {H, W}: the image shape of flat batches [N, C*H*W]),
--   `generator` (default: the default generator when the transform is applied)
-- @treturn RandomCrop a callable: `crop(x)` for x [N, ..., H, W] or flat [N, D]
-- @usage local crop = data.RandomCrop(28, {padding = 2, shape = {1, 28, 28}}); x = crop(x)
function data.RandomCrop(size, options)
  local where = "RandomCrop"
  local pair = check_pair(where, "size", size, 1)
  options = check.options(where, "options", options, {"padding", "fill", "shape", "generator"})
  local padding = {0, 0}
  if options.padding ~= nil then padding = check_pair(where, "padding", options.padding, 0) end
  local fill = 0
  if options.fill ~= nil then fill = check.number(where, "fill", options.fill) end
  local shape = check_image_shape(where, options.shape)
  if shape then
    local h, w = shape[#shape - 1], shape[#shape]
    if pair[1] > h + 2 * padding[1] or pair[2] > w + 2 * padding[2] then
      fail("%s: crop size %dx%d is larger than the padded image %dx%d (image %dx%d, padding %dx%d)", where, pair[1],
        pair[2], h + 2 * padding[1], w + 2 * padding[2], h, w, padding[1], padding[2])
    end
  end
  return setmetatable({size = pair, padding = padding, fill = fill, shape = shape,
    generator = check.generator(where, options.generator)}, RandomCrop)
end

function RandomCrop:__call(x)
  local where = "RandomCrop"
  local images, restore = image_batch(where, x, self.shape)
  local h, w = images:size(images:dim() - 1), images:size(images:dim())
  local ph, pw = self.padding[1], self.padding[2]
  if self.size[1] > h + 2 * ph or self.size[2] > w + 2 * pw then
    fail("%s: crop size %dx%d is larger than the padded image %dx%d (image %dx%d, padding %dx%d)", where,
      self.size[1], self.size[2], h + 2 * ph, w + 2 * pw, h, w, ph, pw)
  end
  return restore(core.random_crop(images, self.size[1], self.size[2], ph, pw, self.fill, self.generator))
end

function RandomCrop:__tostring()
  return string.format("dropnet.data.RandomCrop(size=%dx%d, padding=%dx%d, fill=%s%s)", self.size[1], self.size[2],
    self.padding[1], self.padding[2], tostring(self.fill), self.shape and ", shape=" .. list_string(self.shape) or "")
end

local RandomHorizontalFlip = {}
RandomHorizontalFlip.__index = RandomHorizontalFlip
RandomHorizontalFlip.__name = "dropnet.data.RandomHorizontalFlip"

--- Random horizontal flips (torchvision's RandomHorizontalFlip), for
-- batches: each image is mirrored left to right with probability p, drawn
-- from the generator per image. `flip(x)` returns a new tensor of x's shape.
-- @tparam[opt] table options `p` (in [0, 1], default 0.5), `shape` (as for
--   RandomCrop), `generator`
-- @treturn RandomHorizontalFlip a callable: `flip(x)`
function data.RandomHorizontalFlip(options)
  local where = "RandomHorizontalFlip"
  options = check.options(where, "options", options, {"p", "shape", "generator"})
  local p = 0.5
  if options.p ~= nil then
    p = options.p
    if not check.is_finite(p) or p < 0 or p > 1 then fail("%s: p must be a number in [0, 1] (got %s)", where,
      describe(p)) end
  end
  return setmetatable({p = p, shape = check_image_shape(where, options.shape),
    generator = check.generator(where, options.generator)}, RandomHorizontalFlip)
end

function RandomHorizontalFlip:__call(x)
  local images, restore = image_batch("RandomHorizontalFlip", x, self.shape)
  return restore(core.random_hflip(images, self.p, self.generator))
end

function RandomHorizontalFlip:__tostring()
  return string.format("dropnet.data.RandomHorizontalFlip(p=%s%s)", tostring(self.p),
    self.shape and ", shape=" .. list_string(self.shape) or "")
end

local Compose = {}
Compose.__index = Compose
Compose.__name = "dropnet.data.Compose"

--- Transforms applied one after the other: `compose(x)` is
-- `tn(...t2(t1(x)))`. Each is a transform of this module or any function
-- (or callable value) from a tensor to a tensor.
-- @tparam table transforms the list, in order (copied)
-- @treturn Compose a callable
function data.Compose(transforms)
  local where = "Compose"
  if type(transforms) ~= "table" or getmetatable(transforms) ~= nil then
    fail("%s: transforms must be a list of transforms (got %s)", where, describe(transforms))
  end
  local list = {}
  for i = 1, #transforms do
    if not is_callable(transforms[i]) then
      fail("%s: transforms[%d] must be a function or a callable transform (got %s)", where, i,
        describe(transforms[i]))
    end
    list[i] = transforms[i]
  end
  for key in pairs(transforms) do
    if math.type(key) ~= "integer" or key < 1 or key > #transforms then
      fail("%s: transforms must be a list (found key %s)", where, describe(key))
    end
  end
  return setmetatable({transforms = list}, Compose)
end

function Compose:__call(x)
  for i, t in ipairs(self.transforms) do
    x = t(x)
    if not dn.is_tensor(x) then fail("Compose: transforms[%d] returned %s, a tensor expected", i, describe(x)) end
  end
  return x
end

function Compose:__tostring()
  local parts = {}
  for i, t in ipairs(self.transforms) do parts[i] = tostring(t) end
  return "dropnet.data.Compose{" .. table.concat(parts, ", ") .. "}"
end

-- --- DataLoader --------------------------------------------------------------------

local DataLoader = {}
DataLoader.__index = DataLoader
DataLoader.__name = "dropnet.data.DataLoader"

--- Batches of a TensorDataset.
-- Without shuffling a batch is a `narrow` view of each tensor (no copy). With
-- shuffling, each epoch (each `iter()` call) draws a permutation of the
-- samples from the generator, and each batch is gathered in C with one
-- `index_select` per tensor. A tensor with a byte table comes out, either
-- way, as a new float32 batch gathered and converted in one C call
-- (`dn.byte_rows_to_float`). Since the permutation is drawn when `iter()` is
-- called, saving the generator state (`g:get_state()`) before an epoch and
-- restoring it (`g:set_state(s)`) replays that epoch exactly: same batches
-- in the same order.
-- @tparam TensorDataset ds
-- @tparam[opt] table options
--   `batch_size` (integer >= 1, default 1),
--   `shuffle` (default false),
--   `drop_last` (drop the last batch when it is smaller than batch_size; default false),
--   `generator` (a Generator for shuffling; default: `dn.default_generator()`
--   as it is when each epoch starts),
--   `transform` (a function or callable transform, e.g. `data.Compose{...}`,
--   applied to the first tensor of every batch, the inputs; default none),
--   `distributed` (default false: with true, for data-parallel training under
--   `mpirun`, every rank draws the same permutation, forms the same global
--   batches of `batch_size` samples (the last one as without it, drop_last
--   included), and takes its own contiguous share of each, ranks in order:
--   rank r of W gets samples floor(r*n/W)+1 .. floor((r+1)*n/W) of a batch of
--   n. The transform then draws, through the generators' batch shard, the
--   values one process would draw for those samples.)
-- @treturn DataLoader with `#loader` batches per epoch
-- @usage for x, y in data.DataLoader(ds, {batch_size = 64, shuffle = true}):iter() do ... end
function data.DataLoader(ds, options)
  local where = "DataLoader"
  check_dataset(where, ds)
  options = check.options(where, "options", options,
    {"batch_size", "shuffle", "drop_last", "generator", "transform", "distributed"})
  local batch_size = 1
  if options.batch_size ~= nil then batch_size = check.int(where, "batch_size", options.batch_size, 1) end
  local shuffle = options.shuffle ~= nil and check.bool(where, "shuffle", options.shuffle) or false
  local drop_last = options.drop_last ~= nil and check.bool(where, "drop_last", options.drop_last) or false
  if options.transform ~= nil and not is_callable(options.transform) then
    fail("%s: transform must be a function or a callable transform (got %s)", where, describe(options.transform))
  end
  local rank, ranks
  if options.distributed ~= nil and check.bool(where, "distributed", options.distributed) then
    local dist = dn.distributed
    if not dist.is_initialized() then dist.init() end   -- a world of one process without mpirun
    rank, ranks = dist.rank(), dist.world_size()
  end
  return setmetatable({
    dataset = ds, batch_size = batch_size, shuffle = shuffle, drop_last = drop_last,
    generator = check.generator(where, options.generator), transform = options.transform,
    rank = rank, ranks = ranks,
  }, DataLoader)
end

--- Number of batches per epoch (`#loader` gives the same).
-- @treturn integer
function DataLoader:num_batches()
  local n, b = self.dataset.n, self.batch_size
  if self.drop_last then return n // b end
  return (n + b - 1) // b
end

function DataLoader:__len() return self:num_batches() end

function DataLoader:__tostring()
  return string.format("dropnet.data.DataLoader(%d samples, batch_size=%d, shuffle=%s, drop_last=%s%s%s: %d batches)",
    self.dataset.n, self.batch_size, tostring(self.shuffle), tostring(self.drop_last),
    self.transform and ", transform" or "",
    self.ranks and string.format(", distributed: rank %d of %d", self.rank, self.ranks) or "", self:num_batches())
end

-- The generators a transform draws from: its own (and those of a Compose's parts), and the default one.
local function transform_generators(transform, list, seen)
  list, seen = list or {dn.default_generator()}, seen or {}
  if type(transform) == "table" then
    local g = rawget(transform, "generator")
    if g and not seen[g] then
      seen[g] = true
      list[#list + 1] = g
    end
    for _, t in ipairs(rawget(transform, "transforms") or {}) do transform_generators(t, list, seen) end
  end
  return list
end

-- transform(x) with the generators holding this rank's share of the global batch.
local function sharded_transform(transform, x, skip, total)
  local gens, before = transform_generators(transform), {}
  for i, g in ipairs(gens) do
    before[i] = table.pack(g:shard())
    g:set_shard(skip, x:size(1), total)
  end
  local ok, y = pcall(transform, x)
  for i, g in ipairs(gens) do
    if before[i][1] == nil then g:clear_shard() else g:set_shard(table.unpack(before[i], 1, 3)) end
  end
  if not ok then error(y, 0) end
  return y
end

--- One epoch: an iterator for a generic `for`, giving each batch's tensors
-- (one per dataset tensor, in the dataset's order), the first one passed
-- through the loader's transform if it has one. Draws the epoch's
-- permutation now when shuffling; a transform draws when its batch is made.
-- @return iterator function
-- @usage for x, y in loader:iter() do ... end
function DataLoader:iter()
  local ds = self.dataset
  local tensors, count = ds.tensors, #ds.tensors
  local n, batch_size, batches = self.dataset.n, self.batch_size, self:num_batches()
  local transform = self.transform
  local perm
  if self.shuffle then perm = dn.randperm(n, self.generator or dn.default_generator()) end
  local k = 0
  return function()
    if k >= batches then return nil end
    local start = k * batch_size + 1
    local length = math.min(batch_size, n - start + 1)
    local global = length
    k = k + 1
    local skip = 0
    if self.ranks then   -- this rank's contiguous share of the global batch
      skip = global * self.rank // self.ranks
      start, length = start + skip, global * (self.rank + 1) // self.ranks - skip
    end
    local batch = {}
    if perm then
      local index = perm:narrow(1, start, length)
      for i = 1, count do batch[i] = rows_of(ds, i, tensors[i], index) end
    else
      for i = 1, count do batch[i] = rows_of(ds, i, tensors[i]:narrow(1, start, length), nil) end
    end
    if transform then
      local x
      if self.ranks and self.ranks > 1 then x = sharded_transform(transform, batch[1], skip, global)
      else x = transform(batch[1]) end
      if not dn.is_tensor(x) then fail("DataLoader: the transform returned %s, a tensor expected", describe(x)) end
      batch[1] = x
    end
    return table.unpack(batch, 1, count)
  end
end

--- `loader()` is `loader:iter()`: `for x, y in loader() do ... end`.
function DataLoader:__call() return self:iter() end

-- --- Fashion-MNIST -----------------------------------------------------------------

--- Class names by label (label 1 is "T-shirt/top").
data.class_names = {
  fashion_mnist = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot"},
  digits = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
}

local FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

-- Mean and standard deviation of the 47,040,000 training pixels scaled to
-- [0,1]; computed once from Debian's train-images-idx3-ubyte.gz with a
-- float64 histogram of the byte values (population std), and checked against
-- dropnet's own float32 mean()/std() of the scaled tensor.
local FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860406, 0.3530242

local FASHION_MNIST_FILES = {
  train = {images = "train-images-idx3-ubyte", labels = "train-labels-idx1-ubyte"},
  test = {images = "t10k-images-idx3-ubyte", labels = "t10k-labels-idx1-ubyte"},
}

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The directory to read from and how it was chosen: the first that is set
-- of the `dir` argument, DROPNET_DATA, the Debian package's directory. An
-- explicit choice is never silently replaced by another directory.
local function data_directory(dir)
  if dir ~= nil then return dir, "the dir argument; --data DIR of scripts/train.lua" end
  local env = os.getenv("DROPNET_DATA")
  if env and env ~= "" then return env, "the DROPNET_DATA variable" end
  return FASHION_MNIST_DIR, "the default directory"
end

--- Path of base or base.gz in dir, or nil.
local function find_file(dir, base)
  for _, name in ipairs{base, base .. ".gz"} do
    local path = dir .. "/" .. name
    if file_exists(path) then return path end
  end
  return nil
end

--- Normalization constants from the `normalize` option, or nil for none.
local function normalization(where, normalize)
  if normalize == nil or normalize == false then return nil end
  if normalize == true then return FASHION_MNIST_MEAN, FASHION_MNIST_STD end
  if type(normalize) ~= "table" then
    fail("%s: normalize must be true, false or {mean = m, std = s} (got %s)", where, describe(normalize))
  end
  check.options(where .. ": normalize", "options", normalize, {"mean", "std"})
  local mean, std = normalize.mean, normalize.std
  if not check.is_finite(mean) then
    fail("%s: normalize.mean must be a finite number (got %s)", where, describe(mean))
  end
  if not check.is_finite(std) or std <= 0 then
    fail("%s: normalize.std must be a finite number > 0 (got %s)", where, describe(std))
  end
  return mean, std
end

--- Fashion-MNIST (Zalando's 28x28 grey clothing images, 10 classes) as a
-- TensorDataset of images x and labels y. The images stay uint8 (47 MB for
-- the training set instead of 188 MB as float32): `ds.tensors[1]` holds the
-- bytes, and a byte table turns them into float32 pixels in each sample and
-- batch; `ds:tensor(1)` gives them all as float32.
--
-- Files: train-images-idx3-ubyte, train-labels-idx1-ubyte (split "train",
-- 60,000 samples), t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte ("test",
-- 10,000), plain or with ".gz". They are read from `dir` when given, else
-- from $DROPNET_DATA when set, else from /usr/share/datasets/fashion-mnist,
-- where Debian's package dataset-fashion-mnist installs them.
-- @tparam[opt] table options
--   `split` ("train" or "test", default "train"),
--   `dir` (directory of the files),
--   `normalize` (false: pixels in [0,1]; true: (x - 0.2860406) / 0.3530242,
--   the training set's mean and std; or {mean = m, std = s}; default false),
--   `flatten` (true: x is [N,784]; false: [N,1,28,28]; default true)
-- @treturn TensorDataset x uint8 [N,784] or [N,1,28,28] given out as float32,
--   y int32 [N] with labels 1..10 (`data.class_names.fashion_mnist[y]` names them)
function data.fashion_mnist(options)
  local where = "fashion_mnist"
  options = check.options(where, "options", options, {"split", "dir", "normalize", "flatten"})
  local split = options.split == nil and "train" or options.split
  local files = FASHION_MNIST_FILES[split]
  if not files then fail("%s: split must be \"train\" or \"test\" (got %s)", where, describe(split)) end
  if options.dir ~= nil and type(options.dir) ~= "string" then
    fail("%s: dir must be a string (got %s)", where, describe(options.dir))
  end
  local mean, std = normalization(where, options.normalize)
  local flatten = true
  if options.flatten ~= nil then flatten = check.bool(where, "flatten", options.flatten) end

  local dir, chosen_by = data_directory(options.dir)
  local images_path, labels_path = find_file(dir, files.images), find_file(dir, files.labels)
  if not images_path or not labels_path then
    local missing = {}
    if not images_path then missing[#missing + 1] = files.images .. "(.gz)" end
    if not labels_path then missing[#missing + 1] = files.labels .. "(.gz)" end
    -- worded for both readers: a script writer passes dir, a user of scripts/train.lua passes --data
    fail("%s: the %s split is missing: looked for %s in %s (%s). To get the files: install Debian's package "
      .. "dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or name the directory that holds them: "
      .. "pass dir = DIR to data.fashion_mnist (scripts/train.lua: --data DIR), or set DROPNET_DATA=DIR",
      where, split, table.concat(missing, " and "), dir, chosen_by)
  end

  local images, labels = core.idx_read(images_path), core.idx_read(labels_path)
  local ishape, lshape = images:shape(), labels:shape()
  if images:dtype() ~= "uint8" or #ishape ~= 3 or ishape[2] ~= 28 or ishape[3] ~= 28 then
    fail("%s: %s holds %s %s, expected uint8 images [N,28,28]", where, images_path, images:dtype(),
      shape_string(images))
  end
  if labels:dtype() ~= "uint8" or #lshape ~= 1 then
    fail("%s: %s holds %s %s, expected uint8 labels [N]", where, labels_path, labels:dtype(), shape_string(labels))
  end
  local n = ishape[1]
  if lshape[1] ~= n then
    fail("%s: %s has %d images but %s has %d labels", where, images_path, n, labels_path, lshape[1])
  end

  local y = labels:int()
  if n > 0 then   -- uint8 labels cannot be negative: the largest is the one to check
    local high = y:max():item()
    if high > 9 then fail("%s: %s: labels must be in 0..9 (found %d)", where, labels_path, high) end
  end
  y:add_(1)

  -- the ops the whole float32 tensor used to go through, applied to the 256
  -- byte values: each batch holds bit for bit the pixels they gave
  local pixels = dn.arange(0, 256):float():div_(255)
  if mean then pixels:sub_(mean):div_(std) end
  local x = flatten and images:view(n, 28 * 28) or images:view(n, 1, 28, 28)
  return data.TensorDataset(x, y):set_byte_table(1, pixels)
end

-- --- the 8x8 digits ----------------------------------------------------------------

local DIGITS_SAMPLES = 1797

--- The 1,797 8x8 handwritten digits (UCI "Optical Recognition of Handwritten
-- Digits", CC BY 4.0; the copy scikit-learn ships), shipped with the library
-- (dropnet/data/digits.lua), so no file is needed.
-- @tparam[opt] table options `flatten` (true: x is [1797,64]; false: [1797,1,8,8]; default true)
-- @treturn TensorDataset x float32 pixels in [0,1] (the 0..16 counts / 16), y int32 [1797] with labels
--   1..10 for the digits 0..9 (`data.class_names.digits[y]` names them)
function data.digits(options)
  local where = "digits"
  options = check.options(where, "options", options, {"flatten"})
  local flatten = true
  if options.flatten ~= nil then flatten = check.bool(where, "flatten", options.flatten) end
  -- each value is stored as the letter string.char(97 + value), a sample per line
  local text = require("dropnet.data.digits"):gsub("\n", "")
  local rows = dn.tensor({text:byte(1, -1)}, "uint8"):view(DIGITS_SAMPLES, 65)
  local x = rows:narrow(2, 1, 64):float():sub_(97):div_(16)
  local y = rows:narrow(2, 65, 1):int():view(DIGITS_SAMPLES):sub_(96)
  if not flatten then x = x:view(DIGITS_SAMPLES, 1, 8, 8) end
  return data.TensorDataset(x, y)
end

return data
