-- LuaRocks rockspec of dropnet (the development rock, built from a checkout).
--
--   luarocks --lua-version=5.4 make rockspec/dropnet-scm-1.rockspec                 (system tree)
--   luarocks --lua-version=5.4 make --tree /tmp/t rockspec/dropnet-scm-1.rockspec   (any tree)
--
-- Run it from the top of the source tree: `luarocks make` builds the directory
-- it runs in (source.url below is not read) and needs no rocks server. It
-- installs the C module (lib/lua/5.4/dropnet/core.so), the Lua library
-- (share/lua/5.4/dropnet/) and the `dropnet` command (bin/dropnet) into the
-- tree; the C library, headers and pkg-config file come with `make install`.
-- The man page stays in the rock's directory, where LuaRocks keeps what it
-- does not deploy: man -l "$(luarocks --lua-version=5.4 show --rock-dir
-- dropnet)/share/man/man1/dropnet.1".
--
-- A source rock: `make rock` (scripts/make-rock.sh) packs the working tree
-- into build/rock/dropnet-scm-1.src.rock, offline, with a copy of this
-- rockspec whose source is that tarball; `luarocks install` of the .src.rock
-- builds the bundled copy. (`luarocks pack` of this file itself would clone
-- source.url from a temporary directory, where "." is no repository.)
--
-- Version: "scm-1" is LuaRocks' name for a development rock. The version of
-- the code is in the VERSION file, the single source of truth: CMake's
-- project version, `dropnet --version`, dropnet.version, version.h and
-- dropnet.pc all come from it. A released rock takes its version from VERSION
-- too: `luarocks new_version rockspec/dropnet-scm-1.rockspec "$(cat VERSION)"`
-- writes dropnet-<VERSION>-1.rockspec. tests/install/version.sh checks that
-- step and the version everywhere; tests/install/luarocks.sh `luarocks make`s
-- this rockspec into a temporary tree and runs what it installed, and
-- tests/install/rock.sh makes the source rock and installs it.
rockspec_format = "3.0"
package = "dropnet"
version = "scm-1"

source = {
   -- the checkout itself, for `luarocks make` (which does not read it); `make rock`
   -- writes a copy of this rockspec with a tarball of the working tree here
   url = "git+file://.",
}

description = {
   summary = "A neural-network runtime in C scripted from Lua 5.4, with fast, exact dropout",
   detailed = [[
dropnet is a neural-network runtime written in C and scripted in Lua 5.4:
tensors, kernels, reverse-mode autograd, optimizers and counter-based,
mask-free dropout live in a C library with its own sgemm kernels and thread
pool (OpenBLAS as a fallback); models and training loops are Lua scripts.
`require "dropnet"` from any Lua 5.4 interpreter, or run scripts with the
`dropnet` command.
]],
   labels = { "neural-network", "deep-learning", "tensor", "autograd", "dropout" },
}

dependencies = {
   "lua >= 5.4, < 5.5",
}

-- Checked by LuaRocks before the build. Debian keeps cblas.h under
-- include/x86_64-linux-gnu/, where LuaRocks does not look for headers, but
-- it does search lib/x86_64-linux-gnu/ for libraries: so the libraries are
-- what is checked (CMake finds the headers itself).
external_dependencies = {
   OPENBLAS = { library = "openblas" },
   ZLIB = { header = "zlib.h", library = "z" },
}

build = {
   type = "cmake",
   -- LuaRocks' cmake backend sets no install prefix of its own: CMake installs
   -- into the rock's directory ($(PREFIX)), the Lua files and the C module
   -- into the rock's lua/ and lib/ ($(LUADIR), $(LIBDIR)), the command into
   -- its bin/; LuaRocks then deploys lua/, lib/ and bin/ into the tree.
   variables = {
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      DN_LUADIR = "$(LUADIR)",
      DN_LIBDIR = "$(LIBDIR)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      CMAKE_BUILD_TYPE = "Release",
      BUILD_TESTING = "OFF",
      -- everything under $(LIBDIR) is deployed as a Lua module: keep
      -- libdropnet.so/.a and dropnet.pc out of the rock
      DN_INSTALL_DEVEL = "OFF",
   },
   copy_directories = { "docs" },
}
