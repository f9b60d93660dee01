-- Files from Lua: IDX and CSV readers, safetensors save/load, and their errors.
local dn = require "dropnet"
local H = require "helpers"

local dir

local function path(name) return dir .. "/" .. name end

local function write(name, bytes)
  H.write_file(path(name), bytes)
  return path(name)
end

local read = H.read_file

local function temp_files()
  local n = 0
  local ls = assert(io.popen("ls -a '" .. dir .. "'"))
  for name in ls:lines() do
    if name:find(".tmp-", 1, true) then n = n + 1 end
  end
  ls:close()
  return n
end

setup(function()
  dir = H.make_tempdir()
end)

teardown(function()
  H.remove_dir(dir)
end)

describe("idx", function()
  it("reads a hand-made file", function()
    -- ubyte [2,3], written byte by byte here
    local p = write("u8.idx", string.pack(">BBBBI4I4", 0, 0, 8, 2, 2, 3) .. string.char(0, 1, 2, 253, 254, 255))
    local t = dn.idx_read(p)
    H.assert_shape(t, {2, 3}, "uint8")
    H.assert_same(t, {{0, 1, 2}, {253, 254, 255}})
    -- float32 big-endian
    p = write("f32.idx", string.pack(">BBBBI4ff", 0, 0, 0x0D, 1, 2, 1.5, -0.25))
    t = dn.idx_read(p)
    H.assert_shape(t, {2}, "float32")
    H.assert_same(t, {1.5, -0.25})
  end)

  it("round-trips every dtype, plain and gzip", function()
    local cases = {
      {dn.tensor({{1.5, -2}, {3.25, 1e-3}}), "float32"},
      {dn.tensor({{-7, 0, 70000}}, "int32"), "int32"},
      {dn.tensor({0, 128, 255}, "uint8"), "uint8"},
    }
    for i, case in ipairs(cases) do
      for _, suffix in ipairs{".idx", ".idx.gz"} do
        local p = path("rt" .. i .. suffix)
        dn.idx_write(p, case[1])
        local back = dn.idx_read(p)
        H.assert_shape(back, case[1]:shape(), case[2])
        H.assert_same(back, case[1])
      end
    end
    assert.are.equal("\31\139", read(path("rt1.idx.gz")):sub(1, 2))   -- gzip magic
    local view = dn.tensor{{1, 2, 3}, {4, 5, 6}}:t()
    dn.idx_write(path("view.idx"), view)
    H.assert_same(dn.idx_read(path("view.idx")), {{1, 4}, {2, 5}, {3, 6}})
  end)

  it("names the file and the problem", function()
    local p = write("cut.idx", string.pack(">BBBBI4I4I4", 0, 0, 8, 3, 60000, 28, 28) .. string.rep("\0", 1000))
    H.assert_error(function() return dn.idx_read(p) end,
      {p, "truncated: header says 60000x28x28 ubyte (47040000 bytes) but the data has 1000 bytes"})
    p = write("magic.idx", "PK\3\4....")
    H.assert_error(function() return dn.idx_read(p) end, {p, "not an IDX file"})
    H.assert_error(function() return dn.idx_read(path("missing.idx")) end, {"cannot open", "missing.idx"})
    H.assert_error(function() return dn.idx_read() end, {"bad argument #1 to 'idx_read'", "string expected"})
    H.assert_error(function() return dn.idx_write(path("x.idx"), {1, 2}) end,
      {"bad argument #2 to 'idx_write'", "Tensor expected, got table"})
    H.assert_error(function() return dn.idx_write(path("x.idx"), dn.tensor(1)) end, {"0-dim"})
    H.assert_error(function() return dn.idx_read("a\0b") end, {"zero byte"})
  end)
end)

describe("csv_read", function()
  it("reads numbers with the default and custom options", function()
    local p = write("a.csv", "1,2,3\r\n4.5, -6 ,7e1\r\n")
    local t = dn.csv_read(p)
    H.assert_shape(t, {2, 3}, "float32")
    H.assert_same(t, {{1, 2, 3}, {4.5, -6, 70}})
    p = write("b.csv", "x;y\n1;2\n3;4")
    H.assert_same(dn.csv_read(p, {delimiter = ";", header = true}), {{1, 2}, {3, 4}})
    H.assert_shape(dn.csv_read(write("h.csv", "x,y\n"), {header = true}), {0, 2})
  end)

  it("reports line and column", function()
    local p = write("bad.csv", "1,2\n3,x\n")
    H.assert_error(function() return dn.csv_read(p) end, {p, "line 2, column 2: not a number: \"x\""})
    p = write("ragged.csv", "1,2\n3\n")
    H.assert_error(function() return dn.csv_read(p) end, {"line 2: 1 fields, expected 2 (as on line 1)"})
  end)

  it("reads finite decimal numbers only: hexadecimal, inf and nan are refused", function()
    local p = write("hex.csv", "1,2\n0x1A,4\n")
    H.assert_error(function() return dn.csv_read(p) end,
      {p, "line 2, column 1: \"0x1A\" is a hexadecimal number (only decimal numbers are read)"})
    p = write("inf.csv", "1,inf\n")
    H.assert_error(function() return dn.csv_read(p) end, {"line 1, column 2: \"inf\" is not a finite number"})
    p = write("nan.csv", "1,2\n3,NaN\n")
    H.assert_error(function() return dn.csv_read(p) end, {"line 2, column 2: \"NaN\" is not a finite number"})
  end)

  it("checks its options", function()
    local p = write("ok.csv", "1\n")
    H.assert_error(function() return dn.csv_read(p, {delimiter = ";;"}) end,
      {"bad argument #2 to 'csv_read'", "options.delimiter must be a one-character string"})
    H.assert_error(function() return dn.csv_read(p, {delimiter = 44}) end, {"one-character string"})
    H.assert_error(function() return dn.csv_read(p, {header = 1}) end, {"options.header must be a boolean"})
    H.assert_error(function() return dn.csv_read(p, "x") end, {"bad argument #2 to 'csv_read'", "table expected"})
    H.assert_error(function() return dn.csv_read(p, {delimiter = "."}) end, {"cannot separate numbers"})
  end)

  it("refuses what is not a regular file, as the other readers do", function()
    H.assert_error(function() return dn.csv_read("/dev/zero") end, {"csv: /dev/zero is not a regular file"})
    H.assert_error(function() return dn.csv_read(dir) end, {"is not a regular file"})
    H.assert_error(function() return dn.idx_read("/dev/zero") end, {"idx: /dev/zero is not a regular file"})
    H.assert_error(function() return dn.load("/dev/zero") end, {"safetensors: /dev/zero is not a regular file"})
  end)
end)

describe("save and load", function()
  local function sample()
    return {
      weight = dn.tensor{{1, 2, 3}, {4, 5, 6}},
      bias = dn.tensor{0.5, -0.5},
      step = dn.tensor(7),
      labels = dn.tensor({3, 1, 2}, "int32"),
      mask = dn.tensor({1, 0, 1}, "uint8"),
      empty = dn.zeros({0, 3}),
    }
  end

  it("round-trips tensors and metadata", function()
    local tensors = sample()
    local p = path("ckpt.safetensors")
    assert.is_nil(dn.save(p, tensors, {epoch = 3, lr = 0.5, name = "run \"1\"\n", note = ""}))
    local back, meta = dn.load(p)
    local names = {}
    for name, t in pairs(back) do
      names[#names + 1] = name
      H.assert_shape(t, tensors[name]:shape(), tensors[name]:dtype())
      H.assert_same(t, tensors[name])
    end
    table.sort(names)
    assert.are.same({"bias", "empty", "labels", "mask", "step", "weight"}, names)
    assert.are.same({epoch = "3", lr = "0.5", name = "run \"1\"\n", note = ""}, meta)
    -- without metadata
    dn.save(p, {x = dn.ones(2)})
    local t2, meta2 = dn.load(p)
    H.assert_same(t2.x, {1, 1})
    assert.are.same({}, meta2)
  end)

  it("writes the same bytes for the same table, names in sorted order", function()
    local a, b = path("det1.safetensors"), path("det2.safetensors")
    dn.save(a, sample(), {k = "v", a = "b"})
    dn.save(b, sample(), {a = "b", k = "v"})
    assert.are.equal(read(a), read(b))
    local bytes = read(a)
    local n = string.unpack("<I8", bytes)
    local header = bytes:sub(9, 8 + n)
    assert.are.equal(0, n % 8)
    local bias_at, weight_at = header:find('"bias"', 1, true), header:find('"weight"', 1, true)
    assert.is_true(bias_at < weight_at)
  end)

  it("is readable by a hand-written reader", function()
    local p = path("plain.safetensors")
    local w = dn.tensor{{1.25, -2}, {3, 4.5}}
    dn.save(p, {w = w})
    local bytes = read(p)
    local n = string.unpack("<I8", bytes)
    local header = bytes:sub(9, 8 + n)
    assert.is_truthy(header:find('"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}', 1, true))
    local values = {string.unpack("<ffff", bytes, 9 + n)}
    assert.are.same({1.25, -2, 3, 4.5}, {values[1], values[2], values[3], values[4]})
    assert.are.equal(8 + n + 16, #bytes)
  end)

  it("rejects bad arguments before writing anything", function()
    local p = path("args.safetensors")
    local t = dn.ones(2)
    H.assert_error(function() dn.save(p, {t}) end, {"tensor names must be strings (got number)"})
    H.assert_error(function() dn.save(p, {w = {1, 2}}) end, {"'w' must be a tensor (got table)"})
    H.assert_error(function() dn.save(p, {w = t}, {k = true}) end,
      {"metadata 'k' must be a string or a number (got boolean)"})
    H.assert_error(function() dn.save(p, {w = t}, {[1] = "x"}) end, {"metadata keys must be strings (got number)"})
    H.assert_error(function() dn.save(p, {w = t}, "x") end, {"bad argument #3 to 'save'", "table expected"})
    H.assert_error(function() dn.save(p, "x") end, {"bad argument #2 to 'save'", "table expected"})
    H.assert_error(function() dn.save(nil, {}) end, {"bad argument #1 to 'save'"})
    H.assert_error(function() dn.save(p, {__metadata__ = t}) end, {"reserved"})
    H.assert_error(function() dn.save(p, {[""] = t}) end, {"empty name"})
    local closed = dn.ones(2)
    closed:close()
    H.assert_error(function() dn.save(p, {c = closed}) end, {"tensor 'c' has been closed"})
    assert.is_nil(io.open(p, "rb"))
    assert.are.equal(0, temp_files())
  end)

  it("keeps the old file when a save fails, replaces it when one succeeds", function()
    local p = path("keep.safetensors")
    dn.save(p, {a = dn.ones(3)}, {epoch = 1})
    local before = read(p)
    H.assert_error(function() dn.save(p, {a = dn.zeros(3)}, {epoch = {}}) end, {"must be a string or a number"})
    assert.are.equal(before, read(p))
    H.assert_error(function() dn.save(dir .. "/no/such/dir/x.safetensors", {a = dn.ones(1)}) end,
      {"cannot create a temporary file"})
    assert.are.equal(0, temp_files())
    dn.save(p, {a = dn.zeros(3)}, {epoch = 2})
    local t, meta = dn.load(p)
    H.assert_same(t.a, {0, 0, 0})
    assert.are.equal("2", meta.epoch)
    assert.are.equal(0, temp_files())
  end)

  it("names the file and the problem in load errors", function()
    local function st_file(name, json, data)
      return write(name, string.pack("<I8", #json) .. json .. (data or ""))
    end
    local p = st_file("badjson.safetensors", '{"a":}')
    H.assert_error(function() return dn.load(p) end, {p, "bad JSON header"})
    p = st_file("f16.safetensors", '{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}', "\0\0")
    H.assert_error(function() return dn.load(p) end, {"unsupported dtype F16"})
    p = st_file("past.safetensors", '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', "\0\0\0\0")
    H.assert_error(function() return dn.load(p) end, {"past the end of the data"})
    p = write("short.safetensors", "\1\0")
    H.assert_error(function() return dn.load(p) end, {"file too short"})
    H.assert_error(function() return dn.load(path("none.safetensors")) end, {"cannot open"})
    -- dn.save refuses an empty name, so a file holding one is refused at load, not after
    p = st_file("noname.safetensors", '{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "\0\0\0\0")
    H.assert_error(function() return dn.load(p) end, {p, 'a tensor has an empty name ""'})
    H.assert_error(function() return dn.load() end, {"bad argument #1 to 'load'"})
  end)

  it("loads many tensors without leaking when collected", function()
    local p = path("many.safetensors")
    local tensors = {}
    for i = 1, 200 do tensors["t" .. i] = dn.full({10}, i) end
    dn.save(p, tensors)
    for _ = 1, 5 do
      local back = dn.load(p)
      assert.are.equal(50.0, back.t50[1])
    end
    collectgarbage()
  end)
end)

describe("write_file", function()
  it("replaces a file atomically with any bytes", function()
    local p = path("out.txt")
    assert.is_nil(dn.write_file(p, "first\n"))
    assert.are.equal("first\n", read(p))
    local bytes = "a\0b\255\n" .. string.rep("x", 100000)
    dn.write_file(p, bytes)
    assert.are.equal(bytes, read(p))
    dn.write_file(p, "")
    assert.are.equal("", read(p))
    assert.are.equal(0, temp_files())
  end)

  it("rejects bad arguments and unwritable paths, keeping the old file", function()
    local p = path("keep.txt")
    dn.write_file(p, "old")
    H.assert_error(function() dn.write_file(p, 5) end,
      {"bad argument #2 to 'write_file'", "string expected, got number"})
    H.assert_error(function() dn.write_file(p) end,
      {"bad argument #2 to 'write_file'", "string expected, got no value"})
    H.assert_error(function() dn.write_file(p, {}) end, {"bad argument #2 to 'write_file'"})
    H.assert_error(function() dn.write_file(nil, "x") end, {"bad argument #1 to 'write_file'"})
    H.assert_error(function() dn.write_file(p .. "\0x", "x") end, {"path contains a zero byte"})
    H.assert_error(function() dn.write_file("", "x") end, {"dn.write_file: empty path"})
    H.assert_error(function() dn.write_file(dir, "x") end, {"dn.write_file: " .. dir .. " is a directory"})
    H.assert_error(function() dn.write_file(dir .. "/", "x") end, {"names a directory, not a file"})
    H.assert_error(function() dn.write_file(dir .. "/no/such/dir/x.txt", "x") end,
      {"dn.write_file: cannot create a temporary file beside " .. dir .. "/no/such/dir/x.txt"})
    assert.are.equal("old", read(p))
    assert.are.equal(0, temp_files())
  end)

  it("reports a write that fails midway (a full disk) and keeps the old file", function()
    -- RLIMIT_FSIZE 0 with SIGXFSZ ignored: every write to a regular file fails with EFBIG,
    -- as a full disk fails with ENOSPC
    local p = path("full.txt")
    dn.write_file(p, "old")
    local script = string.format("local ok, err = pcall(require('dropnet').write_file, %q, 'new'); io.write(err)", p)
    local cmd = string.format("sh -c %s 2>&1", H.quote("trap '' XFSZ; ulimit -f 0; exec lua5.4 -e " .. H.quote(script)))
    local pipe = assert(io.popen(cmd))
    local out = pipe:read("a")
    pipe:close()
    assert.truthy(out:find("dn.write_file: error writing " .. p .. ": File too large", 1, true), out)
    assert.are.equal("old", read(p))
    assert.are.equal(0, temp_files())
  end)
end)

describe("mkdir", function()
  it("creates a directory with its parents and accepts one that exists", function()
    local d = path("mk/a/b")
    assert.is_nil(dn.mkdir(d))
    dn.mkdir(d)
    dn.write_file(d .. "/f.txt", "x")
    assert.are.equal("x", read(d .. "/f.txt"))
    os.remove(d .. "/f.txt")
    os.remove(d)
    os.remove(path("mk/a"))
    os.remove(path("mk"))
  end)

  it("names the component it cannot create and refuses a file", function()
    local f = path("plain.txt")
    dn.write_file(f, "x")
    H.assert_error(function() dn.mkdir(f) end, {"dn.mkdir: " .. f .. " exists and is not a directory"})
    H.assert_error(function() dn.mkdir(f .. "/sub") end, {"dn.mkdir: cannot create " .. f .. "/sub: Not a directory"})
    H.assert_error(function() dn.mkdir("") end, {"dn.mkdir: path is empty"})
    H.assert_error(function() dn.mkdir(3) end, {"bad argument #1", "string expected"})
    os.remove(f)
  end)
end)
