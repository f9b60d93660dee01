-- Every Lua example in README.md runs without error (their output is not checked,
-- only that a newcomer copying them gets no error).
local source_dir = os.getenv("DROPNET_SOURCE_DIR") or "."

local function lua_blocks(path)
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  local blocks = {}
  for code in text:gmatch("```lua\n(.-)```") do blocks[#blocks + 1] = code end
  return blocks
end

describe("README.md", function()
  local blocks = lua_blocks(source_dir .. "/README.md")

  it("has Lua examples", function()
    assert.is_true(#blocks >= 2)
  end)

  for i, code in ipairs(blocks) do
    it("example " .. i .. " runs", function()
      local printed = {}
      local env = setmetatable({print = function(...) printed[#printed + 1] = select("#", ...) end},
        {__index = _G})
      local chunk = assert(load(code, "=README example " .. i, "t", env))
      chunk()
      assert.is_true(#printed > 0)
    end)
  end
end)
