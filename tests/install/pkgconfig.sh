#!/bin/sh
# ctest install/pkgconfig: `make install PREFIX=...` of the already built
# build tree into a temporary prefix, then what a C user does with it.
#
#   sh tests/install/pkgconfig.sh SOURCE_DIR BUILD_DIR
#
# Checks: the installed files (public headers only, each one compiling on its
# own; both libraries; dropnet.pc; the Lua module and library; the command;
# the man page); C programs built with `pkg-config --cflags --libs dropnet`
# (tests/install/c_api_example.c, whose output is compared, and the complete
# programs in README.md's "Use from C" and docs/c-api.md) against the shared library and, with
# `pkg-config --static`, against libdropnet.a; the prefix moved elsewhere
# (dropnet.pc is relocatable); the installed module from a plain lua5.4.
#
# The layout comes from CMake through the environment (DN_TEST_LIBDIR,
# DN_TEST_INCLUDEDIR, DN_TEST_BINDIR, DN_TEST_MANDIR, DN_TEST_LUADIR,
# DN_TEST_LUA_LIBDIR, all relative to the prefix); DN_TEST_CFLAGS adds
# compiler flags (the sanitizers' in a DN_SANITIZE build), DN_TEST_PRELOAD is
# LD_PRELOAD for lua5.4 loading an instrumented module.
set -eu

src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
libdir=${DN_TEST_LIBDIR:-lib}
includedir=${DN_TEST_INCLUDEDIR:-include}
bindir=${DN_TEST_BINDIR:-bin}
mandir=${DN_TEST_MANDIR:-share/man}
luadir=${DN_TEST_LUADIR:-share/lua/5.4}
lualibdir=${DN_TEST_LUA_LIBDIR:-lib/lua/5.4}
cflags=${DN_TEST_CFLAGS:-}
preload=${DN_TEST_PRELOAD:-}
cc=${CC:-cc}
version=$(tr -d ' \n' < "$src/VERSION")

for d in "$libdir" "$includedir" "$bindir" "$mandir" "$luadir" "$lualibdir"; do
  case "$d" in
    /*) echo "install dir $d is absolute: an install into a temporary prefix would write outside it; skipped"
        exit 77 ;;
  esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/dropnet-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() {
  echo "install check: $*" >&2
  exit 1
}
prefix="$work/prefix"

# The Makefile's way (it runs cmake --install --prefix); the build is up to date.
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$src" install BUILD="$build" PREFIX="$prefix" \
  > "$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "make install failed"; }

# --- the files -----------------------------------------------------------------------
for f in "$libdir/libdropnet.so" "$libdir/libdropnet.so.$version" "$libdir/libdropnet.a" \
         "$libdir/pkgconfig/dropnet.pc" "$includedir/dropnet/dropnet.h" "$includedir/dropnet/version.h" \
         "$lualibdir/dropnet/core.so" "$luadir/dropnet/init.lua" "$luadir/dropnet/nn/init.lua" \
         "$bindir/dropnet" "$mandir/man1/dropnet.1" "share/doc/dropnet/lua-api.md"; do
  [ -e "$prefix/$f" ] || fail "$f was not installed"
done

# Exactly the public headers: runtime/include/dropnet/*.h and the generated version.h.
expected=$( (cd "$src/runtime/include/dropnet" && ls -- *.h; echo version.h) | sort)
installed=$(cd "$prefix/$includedir/dropnet" && find . -type f | sed "s|^\./||" | sort)
[ "$expected" = "$installed" ] || fail "installed headers differ from the public ones:
$installed
expected:
$expected"
if grep -l "cblas\|lua\.h\|internal\.h" "$prefix/$includedir/dropnet/"*.h; then
  fail "a public header includes OpenBLAS, Lua or internal headers"
fi

# Each header on its own (and twice: include guards), strict C11.
for h in "$prefix/$includedir/dropnet/"*.h; do
  name=$(basename "$h")
  # (the typedef: export.h alone declares nothing, and C forbids an empty file)
  printf '#include <dropnet/%s>\n#include <dropnet/%s>\ntypedef int header_check;\n' "$name" "$name" \
    > "$work/header.c"
  # shellcheck disable=SC2086
  $cc -std=c11 -Wall -Wextra -Wpedantic -Werror $cflags -fsyntax-only -I"$prefix/$includedir" "$work/header.c" ||
    fail "dropnet/$name does not compile on its own"
done

grep -q "dropnet $version" "$prefix/$mandir/man1/dropnet.1" || fail "the man page does not carry version $version"
if grep -q "@[A-Z_]*@" "$prefix/$mandir/man1/dropnet.1"; then fail "the man page has unsubstituted @VARIABLES@"; fi

# --- C programs through pkg-config -------------------------------------------------------
PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
export PKG_CONFIG_PATH
[ "$(pkg-config --modversion dropnet)" = "$version" ] || fail "pkg-config --modversion is not $version"

expected_output="version $version $version
matmul 19 22 43 50
loss 134 made by sum from matmul
grad 11 15 11 15
dropout scaled, mask regenerated
error shape mismatch: matmul: shapes [2,2] and [3,5] do not match (2 != 3)"

# The complete programs among the ```c blocks of README.md ("Use from C") and
# docs/c-api.md: each must build and run.
mkdir "$work/doc-examples"
for doc in README.md docs/c-api.md; do
  base=$(basename "$doc" .md)
  awk -v out="$work/doc-examples/$base" '/^```c$/ { n++; inside = 1; next } inside && /^```/ { inside = 0; next }
    inside { print > (out "-" n ".c") }' "$src/$doc"
done
for f in "$work/doc-examples/"*.c; do
  grep -q "int main(" "$f" || rm "$f"
done
ls "$work/doc-examples/"README-*.c > /dev/null 2>&1 || fail "README.md has no complete \`\`\`c example"

# builds and runs the two programs against the prefix; $1 names the round
check_programs() {
  # shellcheck disable=SC2046,SC2086
  $cc -std=c11 -Wall -Wextra -Werror $cflags -o "$work/example" "$src/tests/install/c_api_example.c" \
    $(pkg-config --cflags --libs dropnet) || fail "$1: the example does not build"
  out=$(LD_LIBRARY_PATH="$prefix/$libdir" "$work/example") || fail "$1: the example failed: $out"
  [ "$out" = "$expected_output" ] || fail "$1: the example printed
$out
expected
$expected_output"
  for f in "$work/doc-examples/"*.c; do
    name=$(basename "$f" .c)
    # shellcheck disable=SC2046,SC2086
    $cc -std=c11 -Wall -Wextra -Werror $cflags -o "$work/doc-example" "$f" \
      $(pkg-config --cflags --libs dropnet) || fail "$1: the example $name (a \`\`\`c block) does not build"
    out=$(LD_LIBRARY_PATH="$prefix/$libdir" "$work/doc-example") || fail "$1: the example $name failed: $out"
    [ -n "$out" ] || fail "$1: the example $name printed nothing"
    echo "$1: $name: $(echo "$out" | head -n 1)"
  done
}
check_programs "shared library"

# C++: the headers declare everything extern "C", so a C++ program links too.
if command -v c++ > /dev/null 2>&1; then
  printf '#include <dropnet/dropnet.h>\n#include <cstdio>\nint main() {\n  dn_tensor *t = nullptr;\n  if (dn_tensor_ones(&t, DN_F32, 1, (const int64_t[]){3})) return 1;\n  std::printf("%%lld\\n", (long long)dn_tensor_numel(t));\n  dn_tensor_release(t);\n  return 0;\n}\n' > "$work/example.cpp"
  # shellcheck disable=SC2046,SC2086
  c++ -std=c++17 -Wall -Wextra -Werror $cflags -o "$work/example-cpp" "$work/example.cpp" \
    $(pkg-config --cflags --libs dropnet) || fail "C++: the example does not build"
  out=$(LD_LIBRARY_PATH="$prefix/$libdir" "$work/example-cpp") || fail "C++: the example failed: $out"
  [ "$out" = "3" ] || fail "C++: the example printed '$out', expected 3"
fi

# Static: libdropnet.a and Libs.private (no LD_LIBRARY_PATH: nothing of the prefix at run time).
static_libs=$(pkg-config --static --libs dropnet | sed 's/-ldropnet\b/-l:libdropnet.a/')
# shellcheck disable=SC2046,SC2086
$cc -std=c11 -Wall -Wextra -Werror $cflags -o "$work/example-static" "$src/tests/install/c_api_example.c" \
  $(pkg-config --cflags dropnet) $static_libs || fail "static link with pkg-config --static failed"
out=$("$work/example-static") || fail "the statically linked example failed: $out"
[ "$out" = "$expected_output" ] || fail "the statically linked example printed
$out"
if command -v ldd > /dev/null && ldd "$work/example-static" | grep -q libdropnet; then
  fail "the static build still loads libdropnet.so"
fi
echo "static library: ok"

# The prefix moved elsewhere: dropnet.pc finds it from its own location.
mv "$prefix" "$work/moved"
prefix="$work/moved"
PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
case "$(pkg-config --cflags dropnet)" in
  *"$work/moved/"*) ;;
  *) fail "pkg-config --cflags after moving the prefix: $(pkg-config --cflags dropnet)" ;;
esac
check_programs "moved prefix"

# --- the Lua side of the install -------------------------------------------------------------
out=$("$prefix/$bindir/dropnet" -e 'local dn = require "dropnet"; print(dn.ones(2, 2):sum():item())')
[ "$out" = "4.0" ] || fail "the installed dropnet command printed '$out'"
case "$("$prefix/$bindir/dropnet" --version)" in
  "dropnet $version "*) ;;
  *) fail "the installed dropnet --version: $("$prefix/$bindir/dropnet" --version)" ;;
esac
# lua5.4 is not instrumented: in a sanitizer build it preloads the runtimes
# and cannot have its (uninstrumented) allocations checked for leaks
lua_env=""
if [ -n "$preload" ]; then lua_env="LD_PRELOAD=$preload ASAN_OPTIONS=detect_leaks=0"; fi
# shellcheck disable=SC2086
out=$(env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_4 \
  LUA_PATH="$prefix/$luadir/?.lua;$prefix/$luadir/?/init.lua" LUA_CPATH="$prefix/$lualibdir/?.so" $lua_env \
  lua5.4 -e 'local dn = require "dropnet"; local nn = dn.nn
    print(dn.ones(2, 2):sum():item(), #nn.Linear(2, 3):parameters(), package.searchpath("dropnet.core", package.cpath))')
expected_lua=$(printf '4.0\t2\t%s' "$prefix/$lualibdir/dropnet/core.so")
[ "$out" = "$expected_lua" ] || fail "lua5.4 with the installed module printed '$out'"
echo "install check: ok"
