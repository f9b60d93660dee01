--- The values the hostile driver passes around, as Lua source. A value is
-- made by evaluating its code in a fresh chunk for every call, so a call can
-- never see a value an earlier call mutated, and the printed reproducer is
-- exactly the code that ran. `dn` is the only name the code may use besides
-- Lua's standard library.
local P = {}

-- Paths are relative: the driver runs in a scratch directory and remakes
-- there, before every call, small files the readers can open (hostile.idx,
-- hostile.csv, hostile.safetensors, hostile.ckpt) and symlinks to /dev/zero
-- and /dev/null (dev-zero, dev-null). Never an absolute path: a writer
-- renames its temp file over the target, which as root would replace
-- /dev/null itself.

--- The hostile pool: anything a caller could pass by mistake or malice.
P.hostile = {
  -- nil and booleans
  "nil", "true", "false",
  -- numbers: small, negative, fractional, NaN, infinities, 32/53/64-bit edges
  "0", "-1", "1", "2", "3", "0.5", "-0.5", "1.5", "0/0", "-(0/0)", "math.huge", "-math.huge",
  "2^31", "1 << 31", "-2^31 - 1", "-2147483649", "2^32", "2^53", "1 << 53", "2^63", "1 << 62",
  "(1 << 62) + 1", "1 << 40", "math.maxinteger", "math.mininteger", "math.maxinteger - 1",
  "1e300", "-1e300", "1e-300", "2^-149",
  -- strings: empty, names the API knows (dtypes, reductions, modes), paths, odd bytes
  '""', '"x"', '"float32"', '"int32"', '"uint8"', '"float64"', '"sum"', '"mean"', '"none"', '"relu"',
  '"tanh"', '"train"', '"eval"', '"mc"', '"inverted"', '"test"', '"grad"', '"requires_grad"', '"1"',
  '"0x1A"', '"nan"', '"a\\0b"', '"dev-zero"', '"dev-null"', '"."', '"no/such/dir/file"',
  '"hostile.idx"', '"hostile.csv"', '"hostile.safetensors"', '"hostile.ckpt"',
  '("x"):rep(100000)', '("\\255"):rep(64)',
  -- tables: empty, lists, ragged, holes, nested, cyclic, metatables that raise
  "{}", "{1, 2, 3}", "{2, 3}", "{0}", "{-1}", "{0, 3}", "{0/0}", "{math.huge}", "{math.maxinteger}",
  "{2^31, 2^31}", "{1 << 40, 1 << 40}", "{1 << 62, 0}", "{0, 1 << 62, 4}", "{{1}, {1, 2}}",
  "{{1, 2}, {3, 4}}", "{1, \"x\"}", "{[1] = 1, [3] = 3}", "{n = 1}", "{x = 1}", "{{}}",
  "{dn.ones(2)}", "{dn.ones(2), 1}", "{a = dn.ones(2)}",
  "(function() local t = {} for _ = 1, 300 do t = {t} end return t end)()",
  "(function() local t = {1} t[2] = t t.self = t return t end)()",
  "setmetatable({}, {__index = function() error(\"hostile __index\") end})",
  "setmetatable({1, 2}, {__len = function() error(\"hostile __len\") end})",
  "setmetatable({}, {__len = function() return math.maxinteger end})",
  "setmetatable({}, {__pairs = function() error(\"hostile __pairs\") end})",
  "setmetatable({}, {__name = \"dropnet.Tensor\"})",
  "setmetatable({}, {__tostring = function() error(\"hostile __tostring\") end})",
  -- functions, coroutines, files
  "function() end", "function(...) return ... end", "function() error(\"hostile function\") end",
  "function() return dn.ones(1) end", "error", "coroutine.create(function() end)",
  "(coroutine.running())", "io.stderr", "(function() local f = io.tmpfile() f:close() return f end)()",
  -- tensors: closed, empty, expanded (stride 0), transposed, int32, uint8, 0-dim, grad, views. The big
  -- expanded one has 2^20 elements: at 2^30 a legitimate full pass (argmin) took over the 30 s hang limit
  -- of the Debug ASan build on a busy machine; sizes near the int64 edge come from the number values.
  "(function() local t = dn.ones(2, 3) t:close() return t end)()",
  "dn.zeros(0)", "dn.zeros(0, 3)", "dn.zeros(3, 0)", "dn.ones(1, 4):expand(3, 4)",
  "dn.ones(1, 1):expand(1 << 10, 1 << 10)", "dn.randn(3, 2):t()", "dn.randn(2, 3, 4):transpose(1, 3)",
  "dn.arange(8):narrow(1, 3, 4)", "dn.tensor({1, 2, 3}, \"int32\")", "dn.tensor({{1}, {2}}, \"int32\")",
  "dn.tensor({2147483647, -2147483648}, \"int32\")", "dn.dropout_mask({4}, 0.5)", "dn.tensor(3)",
  "dn.tensor(0/0)", "dn.tensor({0/0, math.huge, -math.huge})", "dn.randn(3):requires_grad_()",
  "dn.randn(2, 4):requires_grad_() * 2", "dn.randn(2, 4)", "dn.randn(4)", "dn.randn(3, 4)",
  "dn.randn(2, 3, 4, 4)", "dn.zeros(1, 1, 1, 1, 1, 1, 1, 1)", "dn.eye(3)",
  -- library objects
  "dn.Generator(1)", "dn.default_generator()", "dn.nn.Linear(4, 3)", "dn.nn.Dropout(0.5)",
  "dn.nn.Sequential(dn.nn.Linear(4, 3), dn.nn.ReLU(), dn.nn.Dropout(0.5))", "dn.nn.Module",
  "dn.nn.Linear", "dn.nn.Parameter(dn.randn(3))",
  "dn.optim.SGD({dn.randn(3):requires_grad_()}, {lr = 0.1})",
  "dn.data.TensorDataset(dn.randn(4, 2), dn.tensor({1, 2, 3, 4}, \"int32\"))",
}

--- Argument lists that are plausible for many functions: the walk tries
-- them, in this order, to find one valid call of every function and method
-- (the driver then mutates valid calls). Each is Lua source for 0 or more
-- comma-separated arguments. Objects found by the walk (modules,
-- optimizers, datasets, ...) are tried as well, alone and before these.
P.benign = {
  "", "4", "4, 3", "2", "1", "0.5", "true", "false",
  "dn.randn(2, 4)", "dn.randn(2, 4), 1", "dn.randn(2, 4), 2", "dn.randn(2, 4), 0.5",
  "dn.randn(2, 4), dn.randn(2, 4)", "dn.randn(2, 4), dn.randn(3, 4)",
  "dn.randn(2, 4), dn.randn(3, 4), dn.randn(3)", "dn.randn(2, 4), dn.randn(3, 4), dn.randn(3), 0.5",
  "dn.randn(2, 4), dn.tensor({1, 2}, \"int32\")", "dn.randn(3, 4), dn.tensor({1, 2, 3}, \"int32\")",
  "dn.randn(2, 4), dn.randn(4, 3)", "dn.rand(2, 4), dn.randn(2, 4), dn.randn(2, 4)",
  "dn.randn(3, 4), 1, dn.tensor({1, 2}, \"int32\")",
  "dn.randn(4), dn.randn(4), nil, {lr = 0.1}, true", "dn.randn(4), dn.randn(4), dn.zeros(4), dn.zeros(4), 1, {lr = 0.1}",
  "dn.randn(4), dn.randn(4), dn.zeros(4), nil, nil, {lr = 0.1}",
  "dn.randn(2, 4), dn.rand(2, 4)",
  "dn.randn(2, 3, 4)", "dn.randn(2, 3, 4), 0.5", "dn.randn(2, 3, 4, 4)", "dn.randn(2, 3, 4, 4), 0.5",
  "dn.randn(2, 3, 4, 4, 4)", "dn.randn(2, 3, 4, 4, 4), 0.5",
  "1, 2", "1, 1, 2", "2, 1", "-1", "{-1}", "-1, -1", "2, 2", "4, 4", "{2, 3}", "{2, 3}, 0.5", "{4}",
  "dn.tensor({1, 2, 3}, \"int32\"), 4", "1, dn.tensor({1, 2}, \"int32\")",
  "dn.randn(3):requires_grad_()", "{dn.randn(3):requires_grad_()}", "{dn.randn(3):requires_grad_()}, {lr = 0.1}",
  "{dn.randn(3):requires_grad_()}, 1", "dn.randn(3):requires_grad_(), 1",
  "\"relu\"", "\"hostile.idx\"", "\"hostile.csv\"", "\"hostile.safetensors\"", "\"hostile.ckpt\"",
  "\"out.safetensors\", {a = dn.ones(2)}", "\"out.idx\", dn.ones(2)", "\"out.ckpt\", {a = 1}",
  "\"out.svg\", \"<svg/>\"", "{series = {{y = {1, 2, 3}}}}", "{{series = {{y = {1, 2, 3}}}}}",
  "function() return dn.ones(1) end", "{seed = 1, offset = 0}", "\"x\"", "io.stderr",
  -- gather and scatter_add (a 2-D int32 index along dim 2)
  "dn.randn(2, 4), 2, dn.tensor({{1, 4}, {2, 2}}, \"int32\")",
  "dn.randn(2, 4), 2, dn.tensor({{1, 4}, {2, 2}}, \"int32\"), dn.randn(2, 3)",
  "2, dn.tensor({{1, 4}, {2, 2}}, \"int32\")", "2, dn.tensor({{1, 4}, {2, 2}}, \"int32\"), dn.randn(2, 3)",
}

-- Argument lists tried after an object's constructor code, as "<obj>, <rest>".
P.benign_after_object = {
  "", "dn.randn(2, 4)", "dn.randn(2, 4), 2", "0.5", "1", "{}", "dn.randn(2, 4), dn.randn(2, 4)",
}

return P
