#!/bin/sh
# ctest install/version: one version, from the VERSION file.
#
#   sh tests/install/version.sh SOURCE_DIR BUILD_DIR DROPNET_BIN CMAKE_PROJECT_VERSION
#
# VERSION must be what `dropnet --version` prints, CMake's project version,
# the generated version.h, dropnet.version in Lua (the built module and the
# command's embedded copy) and dropnet.pc; the rockspec is the development
# rock "scm-1" and says where the released rock's version comes from, and
# `luarocks new_version` turns it into dropnet-<VERSION>-1.rockspec.
set -eu

src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
bin=$3
cmake_version=$4
fail() {
  echo "version check: $*" >&2
  exit 1
}

version=$(tr -d ' \n' < "$src/VERSION")
echo "$version" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' || fail "VERSION holds '$version', not MAJOR.MINOR.PATCH"

[ "$cmake_version" = "$version" ] || fail "CMake's project version is $cmake_version, VERSION says $version"

out=$("$bin" --version)
case "$out" in
  "dropnet $version ("*) ;;
  *) fail "dropnet --version printed '$out', expected 'dropnet $version (Lua ...)'" ;;
esac
out=$("$bin" -e 'io.write(require("dropnet").version)')
[ "$out" = "$version" ] || fail "dropnet.version in the command is '$out'"
# (in a sanitizer build, lua5.4 preloads the runtimes: DN_TEST_PRELOAD)
lua_env=""
if [ -n "${DN_TEST_PRELOAD:-}" ]; then lua_env="LD_PRELOAD=$DN_TEST_PRELOAD ASAN_OPTIONS=detect_leaks=0"; fi
# shellcheck disable=SC2086
out=$(env -u LUA_INIT -u LUA_INIT_5_4 LUA_PATH_5_4="$src/bindings/lua/?.lua;$src/bindings/lua/?/init.lua" \
  LUA_CPATH_5_4="$build/lua/?.so" $lua_env \
  lua5.4 -e 'io.write(require("dropnet").version)')
[ "$out" = "$version" ] || fail "dropnet.version of the built module is '$out'"

grep -q "#define DN_VERSION \"$version\"" "$build/include/dropnet/version.h" ||
  fail "version.h does not define DN_VERSION \"$version\""
if [ -f "$build/dropnet.pc" ]; then
  grep -q "^Version: $version\$" "$build/dropnet.pc" || fail "dropnet.pc does not say Version: $version"
fi

rockspec="$src/rockspec/dropnet-scm-1.rockspec"
grep -q '^version = "scm-1"$' "$rockspec" || fail "the rockspec's version is not \"scm-1\""
grep -q '^package = "dropnet"$' "$rockspec" || fail "the rockspec's package is not \"dropnet\""
grep -q "^--.*VERSION file" "$rockspec" || fail "the rockspec does not say that its version comes from the VERSION file"

# The documented release step, offline (it only rewrites the rockspec).
work=$(mktemp -d "${TMPDIR:-/tmp}/dropnet-version.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && luarocks --lua-version=5.4 new_version "$rockspec" "$version" > /dev/null 2>&1) ||
  fail "luarocks new_version $rockspec $version failed"
grep -q "^version = \"$version-1\"" "$work/dropnet-$version-1.rockspec" ||
  fail "luarocks new_version did not write dropnet-$version-1.rockspec with version $version-1"
echo "version check: $version everywhere"
