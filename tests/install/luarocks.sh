#!/bin/sh
# ctest install/luarocks: the rock, as a user gets it.
#
#   sh tests/install/luarocks.sh SOURCE_DIR [OPENBLAS_DIR]
#
# `luarocks make rockspec/dropnet-scm-1.rockspec` into a temporary tree, from a
# copy of the source tree (LuaRocks builds in the directory it runs in and
# leaves build.luarocks/ there), with an empty directory as the only rocks
# server, so any attempt to download something fails the test. Then, with
# only that tree's paths: `require "dropnet"` from a plain lua5.4, and the
# installed dropnet command running scripts/train.lua for one epoch on tiny
# generated IDX files. OPENBLAS_DIR, when given, is where the installed
# binaries must find libopenblas.so.0 (the OpenMP build).
set -eu

src=$(cd "$1" && pwd)
openblas_dir=${2:-}
version=$(tr -d ' \n' < "$src/VERSION")

work=$(mktemp -d "${TMPDIR:-/tmp}/dropnet-luarocks.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() {
  echo "luarocks check: $*" >&2
  exit 1
}

# The source as a clean clone has it: no build trees, no outputs of runs.
mkdir "$work/src" "$work/no-server" "$work/data"
tar -C "$src" --exclude=./.git --exclude='./build*' --exclude=./runs -cf - . | tar -C "$work/src" -xf -

tree="$work/tree"
echo "luarocks make into $tree"
# cmake --build reads CMAKE_BUILD_PARALLEL_LEVEL: LuaRocks' backend passes no -j.
if ! (cd "$work/src" && CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) luarocks --lua-version=5.4 \
      --only-server="$work/no-server" make --tree "$tree" rockspec/dropnet-scm-1.rockspec) \
      > "$work/luarocks.log" 2>&1; then
  cat "$work/luarocks.log" >&2
  fail "luarocks make failed"
fi
grep -q "dropnet scm-1 is now installed" "$work/luarocks.log" || fail "no 'now installed' line in the log"

# What the tree holds: the command, the C module, the Lua library, and no C
# library (LuaRocks would have deployed it as a Lua module).
for f in bin/dropnet lib/lua/5.4/dropnet/core.so share/lua/5.4/dropnet/init.lua \
         share/lua/5.4/dropnet/nn/init.lua share/lua/5.4/dropnet/optim.lua; do
  [ -f "$tree/$f" ] || fail "$f is not in the tree"
done
stray=$(cd "$tree/lib/lua/5.4" && find . -type f ! -path ./dropnet/core.so)
[ -z "$stray" ] || fail "unexpected files deployed as Lua modules: $stray"
luarocks --lua-version=5.4 --tree "$tree" list --porcelain | grep -q "^dropnet[[:space:]]scm-1[[:space:]]" ||
  fail "luarocks list does not show dropnet scm-1"

# Only the tree's paths from here on (the ctest environment of the Lua specs
# points LUA_PATH_5_4 at the source tree; lua5.4 would prefer it).
unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
eval "$(luarocks --lua-version=5.4 --tree "$tree" path)"
cd "$work"

out=$(lua5.4 -e 'local dn = require "dropnet"; print(dn.ones(2, 2):sum():item())')
[ "$out" = "4.0" ] || fail "lua5.4 printed '$out', expected 4.0"
where=$(lua5.4 -e 'print(package.searchpath("dropnet.core", package.cpath))')
[ "$where" = "$tree/lib/lua/5.4/dropnet/core.so" ] || fail "dropnet.core loads from $where"
out=$(lua5.4 -e 'local dn = require "dropnet"
  local nn, optim, data, plot = dn.nn, dn.optim, dn.data, dn.plot
  local ckpt = require "dropnet.checkpoint"
  local model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
  print(dn.version, #model:parameters(), type(optim.SGD), type(data.DataLoader), type(plot.line_chart),
    type(ckpt.save))' | tr '\t' ' ')
[ "$out" = "$version 2 function function function function" ] || fail "the Lua library from the tree: '$out'"

bin=$(command -v dropnet)
[ "$bin" = "$tree/bin/dropnet" ] || fail "dropnet resolves to $bin, not the tree's"
out=$(dropnet --version)
case "$out" in
  "dropnet $version "*) ;;
  *) fail "dropnet --version printed '$out', expected 'dropnet $version ...'" ;;
esac
if [ -n "$openblas_dir" ] && command -v ldd > /dev/null; then
  ldd "$bin" | grep -q "libopenblas.so.0 => $openblas_dir/" ||
    fail "the installed command does not load OpenBLAS from $openblas_dir: $(ldd "$bin" | grep openblas)"
fi

# Tiny Fashion-MNIST-shaped files (two easy classes), written by the installed module.
lua5.4 - "$work/data" <<'EOF'
local dn = require "dropnet"
local g = dn.Generator(5)
for _, split in ipairs({{"train", 96}, {"t10k", 32}}) do
  local name, n = split[1], split[2]
  local labels = (dn.rand(n, g) * 2):int()
  local images = (dn.rand(n, 28, 28, g) * 100 + labels:float():view(n, 1, 1) * 120):int():to("uint8")
  dn.idx_write(arg[1] .. "/" .. name .. "-images-idx3-ubyte.gz", images)
  dn.idx_write(arg[1] .. "/" .. name .. "-labels-idx1-ubyte.gz", labels:to("uint8"))
end
EOF

cd "$work/src"
echo "dropnet scripts/train.lua --epochs 1 (tiny data)"
if ! dropnet scripts/train.lua --epochs 1 --data "$work/data" --hidden 16 --batch-size 32 --threads 2 \
     --out "$work/run" --quiet > "$work/train.log" 2>&1; then
  cat "$work/train.log" >&2
  fail "dropnet scripts/train.lua failed"
fi
cat "$work/train.log"
grep -q "^test accuracy [0-9.]* after 1 epochs" "$work/train.log" || fail "no final accuracy line"
for f in metrics.csv train.svg checkpoint.safetensors; do
  [ -s "$work/run/$f" ] || fail "the run did not write $f"
done
echo "luarocks check: ok"
