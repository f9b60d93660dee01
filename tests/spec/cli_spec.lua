-- The `dropnet` command (path in DROPNET_BIN; the ctest registration sets it).
local BIN = os.getenv("DROPNET_BIN")

if not BIN or BIN == "" then
  describe("the dropnet command", function()
    pending("DROPNET_BIN is not set: point it at the built dropnet executable to run these specs")
  end)
  return
end

local dn = require "dropnet"
local H = require "helpers"

local quote, read_file, write_file = H.quote, H.read_file, H.write_file

-- Runs dropnet with the given argument list (and optional stdin text and
-- environment assignment such as "NAME=value"); returns exit code, stdout, stderr.
local function run(args, stdin, env)
  local out, err = os.tmpname(), os.tmpname()
  local parts = {quote(BIN)}
  if env then table.insert(parts, 1, "env " .. quote(env)) end
  for _, a in ipairs(args) do parts[#parts + 1] = quote(a) end
  local cmd = table.concat(parts, " ") .. " > " .. quote(out) .. " 2> " .. quote(err)
  local input
  if stdin then
    input = os.tmpname()
    write_file(input, stdin)
    cmd = cmd .. " < " .. quote(input)
  else
    cmd = cmd .. " < /dev/null"
  end
  local ok, how, code = os.execute(cmd)
  local stdout, stderr = read_file(out), read_file(err)
  os.remove(out)
  os.remove(err)
  if input then os.remove(input) end
  if how == "signal" then code = 128 + code end
  if ok then code = 0 end
  return code, stdout, stderr
end

-- A temporary script file holding `text`.
local function script(text)
  local base = os.tmpname()   -- creates the file: take its unique name, not the file
  os.remove(base)
  local path = base .. ".lua"
  write_file(path, text)
  return path
end

describe("the dropnet command", function()
  it("--version prints the version", function()
    local code, out = run({"--version"})
    assert.are.equal(0, code)
    assert.truthy(out:find("dropnet 0.1.0", 1, true), out)
    assert.are.equal(1, select(2, out:gsub("\n", "")))
  end)

  it("--help shows the usage", function()
    local code, out = run({"--help"})
    assert.are.equal(0, code)
    assert.truthy(out:find("usage:", 1, true), out)
    for _, opt in ipairs{"-e", "-i", "--threads", "--seed", "--no-flush-denormal", "--no-sparse-matmul", "--version",
      "--help"} do
      assert.truthy(out:find(opt, 1, true), opt)
    end
  end)

  it("-e runs code with dropnet available", function()
    local code, out, err = run({"-e", 'print(require("dropnet").ones(2,2):sum():item())'})
    assert.are.equal(0, code, err)
    assert.are.equal("4.0\n", out)
  end)

  it("runs several -e in order", function()
    local code, out = run({"-e", "x = 20", "-e", "print(x + 1)"})
    assert.are.equal(0, code)
    assert.are.equal("21\n", out)
  end)

  it("passes script arguments in arg and ...", function()
    local path = script([[
      print(select("#", ...), ...)
      print(arg[0], arg[1], arg[2], #arg)
    ]])
    local code, out, err = run({path, "one", "two words"})
    os.remove(path)
    assert.are.equal(0, code, err)
    assert.are.equal("2\tone\ttwo words\n" .. path .. "\tone\ttwo words\t2\n", out)
  end)

  it("puts options before the script at negative arg indices", function()
    local path = script("print(arg[-1], arg[-2], arg[1])")
    local code, out, err = run({"--seed", "5", path, "x"})
    os.remove(path)
    assert.are.equal(0, code, err)
    assert.are.equal("5\t--seed\tx\n", out)
  end)

  it("a script's require of the library works", function()
    local path = script([[
      local dn = require "dropnet"
      local t = dn.tensor{{1, 2}, {3, 4}}
      io.write(string.format("%g %s", t:matmul(t):sum():item(), dn.version))
    ]])
    local code, out, err = run({path})
    os.remove(path)
    assert.are.equal(0, code, err)
    assert.are.equal("54 0.1.0", out)
  end)

  it("--seed N gives the same numbers as manual_seed(N)", function()
    local code, out, err = run({"--seed", "3", "-e", [[
      local v = require("dropnet").randn(5):totable()
      for i = 1, #v do io.write(string.format("%.9g ", v[i])) end
    ]]})
    assert.are.equal(0, code, err)
    dn.manual_seed(3)
    local v = dn.randn(5):totable()
    local want = {}
    for i = 1, #v do want[i] = string.format("%.9g ", v[i]) end
    assert.are.equal(table.concat(want), out)
  end)

  it("--threads N sets the thread count", function()
    local code, out = run({"--threads", "1", "-e", 'print(require("dropnet").get_num_threads())'})
    assert.are.equal(0, code)
    assert.are.equal("1\n", out)
    code, out = run({"--threads", "2", "-e", 'print(require("dropnet").get_num_threads())'})
    assert.are.equal(0, code)
    assert.are.equal("2\n", out)
  end)

  it("--no-flush-denormal computes with denormals", function()
    local code_text = 'local dn = require("dropnet"); '
      .. 'print(dn.get_flush_denormal(), (dn.full({3}, 2e-38) * 0.5)[1] > 0)'
    local code, out, err = run({"-e", code_text})
    assert.are.equal(0, code, err)
    local supported = out == "true\tfalse\n"
    if not supported then assert.are.equal("false\ttrue\n", out) end   -- no FTZ/DAZ on this CPU
    code, out, err = run({"--no-flush-denormal", "-e", code_text})
    assert.are.equal(0, code, err)
    assert.are.equal("false\ttrue\n", out)
  end)

  it("--no-sparse-matmul multiplies every zero", function()
    local code_text = 'print(require("dropnet").get_sparse_matmul())'
    local code, out, err = run({"-e", code_text})
    assert.are.equal(0, code, err)
    assert.are.equal("true\n", out)
    code, out, err = run({"--no-sparse-matmul", "-e", code_text})
    assert.are.equal(0, code, err)
    assert.are.equal("false\n", out)
  end)

  it("DROPNET_SGEMM=openblas picks OpenBLAS, and both kernels give the same products", function()
    -- Elements of a product whose every element sums 1000 terms.
    local code_text = [[
      local dn = require "dropnet"
      dn.manual_seed(5)
      local a, b = dn.randn(37, 1000), dn.randn(45, 1000)
      print(dn.matmul_backend())
      local c = a:matmul(b:t())
      for i = 1, 37, 3 do print(string.format("%.9g %.9g", c[i][i], c[i][45 - i])) end
    ]]
    local function numbers(text)
      local list = {}
      for v in text:gmatch("%S+") do list[#list + 1] = tonumber(v) end
      return list
    end
    local code, default_out, err = run({"-e", code_text})
    assert.are.equal(0, code, err)
    local backend, default_values = default_out:match("^([^\n]*)\n(.*)$")
    assert.truthy(backend == "dropnet avx512" or backend == "dropnet avx2" or backend == "openblas", default_out)
    local blas_out
    code, blas_out, err = run({"-e", code_text}, nil, "DROPNET_SGEMM=openblas")
    assert.are.equal(0, code, err)
    local blas_backend, blas_values = blas_out:match("^([^\n]*)\n(.*)$")
    assert.are.equal("openblas", blas_backend)
    local got, want = numbers(default_values), numbers(blas_values)
    assert.are.equal(26, #want)
    assert.are.equal(#want, #got)
    for i = 1, #want do
      assert.truthy(math.abs(got[i] - want[i]) <= 1e-4 * (1 + math.abs(want[i])),
        i .. ": " .. got[i] .. " vs " .. want[i])
    end
  end)

  it("rejects bad --threads and --seed values", function()
    for _, args in ipairs{{"--threads", "0"}, {"--threads", "x"}, {"--seed", "-1"}, {"--seed", "1.5"}, {"--threads"}} do
      local code, _, err = run(args)
      assert.are_not.equal(0, code, table.concat(args, " "))
      assert.truthy(err:find(args[1], 1, true), err)
    end
  end)

  it("a script error exits non-zero with a traceback", function()
    local path = script([[
      local function inner() error("boom at depth") end
      inner()
    ]])
    local code, out, err = run({path})
    os.remove(path)
    assert.are_not.equal(0, code)
    assert.truthy(err:find("boom at depth", 1, true), err)
    assert.truthy(err:find("stack traceback", 1, true), err)
    assert.truthy(err:find("inner", 1, true), err)
    assert.are.equal("", out)
  end)

  it("a dropnet error in -e exits non-zero with its message", function()
    local code, _, err = run({"-e", 'local dn = require "dropnet"; dn.zeros(2, 3):matmul(dn.zeros(4, 5))'})
    assert.are_not.equal(0, code)
    assert.truthy(err:find("matmul: shapes [2,3] and [4,5] do not match (3 != 4)", 1, true), err)
    assert.truthy(err:find("stack traceback", 1, true), err)
  end)

  it("a syntax error exits non-zero", function()
    local code, _, err = run({"-e", "this is not lua"})
    assert.are_not.equal(0, code)
    assert.truthy(err:find("command line", 1, true), err)
  end)

  it("a missing script exits non-zero", function()
    local code, _, err = run({"/nonexistent/dir/script.lua"})
    assert.are_not.equal(0, code)
    assert.truthy(err:find("script.lua", 1, true), err)
  end)

  it("an unknown option exits non-zero", function()
    local code, out, err = run({"--no-such-option"})
    assert.are_not.equal(0, code)
    assert.truthy(err:find("unknown option", 1, true), err)
    assert.truthy(err:find("--no-such-option", 1, true), err)
    assert.are.equal("", out)
  end)

  it("-i evaluates expressions from standard input", function()
    local code, out, err = run({"-i"}, "1+1\n")
    assert.are.equal(0, code, err)
    local found = false
    for line in out:gmatch("[^\n]+") do
      if line:gsub("^[> ]+", "") == "2" then found = true end
    end
    assert.is_true(found, out)
  end)

  it("-i has dn loaded and continues incomplete statements", function()
    local code, out, err = run({"-i"}, "function f(x)\nreturn x * 3 end\nprint(f(dn.ones(2):sum():item()))\n")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("6.0", 1, true), out)
  end)

  it("-i reports errors and keeps going", function()
    local code, out, err = run({"-i"}, "error('oops')\nprint(40 + 2)\n")
    assert.are.equal(0, code)
    assert.truthy(err:find("oops", 1, true), err)
    assert.truthy(out:find("42", 1, true), out)
  end)

  it("runs a script from standard input", function()
    local code, out, err = run({}, "print(require('dropnet').arange(4):sum():item())\n")
    assert.are.equal(0, code, err)
    assert.are.equal("6.0\n", out)
    code, out = run({"-"}, "print(1 + 2)\n")
    assert.are.equal(0, code)
    assert.are.equal("3\n", out)
  end)

  it("-l requires a module into a global", function()
    local code, out, err = run({"-l", "dropnet", "-e", "print(dropnet.version)"})
    assert.are.equal(0, code, err)
    assert.are.equal("0.1.0\n", out)
  end)
end)
