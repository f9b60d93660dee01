#!/bin/sh
# ctest install/rock: `make rock` in a clone, then `luarocks install` of the
# source rock it made, offline.
#
#   sh tests/install/rock.sh SOURCE_DIR
#
# The clone is a copy of the source tree made a git repository (committed),
# with one untracked file, one ignored directory and one tracked file deleted,
# to check that the rock holds the working tree as git sees it. The only rocks
# server is an empty directory, so any download fails the test. Then, with
# only the tree's paths: `require "dropnet"` from a plain lua5.4, the dropnet
# command, and the man page where the README says (`man -l`).
set -eu

src=$(cd "$1" && pwd)
version=$(tr -d ' \n' < "$src/VERSION")

work=$(mktemp -d "${TMPDIR:-/tmp}/dropnet-rock.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() {
  echo "rock check: $*" >&2
  exit 1
}

mkdir "$work/clone" "$work/no-server"
tar -C "$src" --exclude=./.git --exclude='./build*' --exclude=./runs --exclude='*.rock' -cf - . |
  tar -C "$work/clone" -xf -
clone="$work/clone"
if command -v git > /dev/null; then
  git -C "$clone" init -q
  echo "committed, then deleted" > "$clone/DELETED-NOTE.txt"
  git -C "$clone" add -A
  git -C "$clone" -c user.name=test -c user.email=test@localhost commit -q -m "the tree under test"
  echo "not committed" > "$clone/UNTRACKED-NOTE.txt"
  mkdir "$clone/build-other" && echo junk > "$clone/build-other/junk.txt"   # ignored (/build*/)
  rm "$clone/DELETED-NOTE.txt"   # deleted, not yet committed: stays out of the rock
else
  echo "git is not installed: the rock is made from the plain directory"
  echo "not committed" > "$clone/UNTRACKED-NOTE.txt"
fi

echo "make rock"
if ! make -C "$clone" rock BUILD="$work/out" > "$work/make.log" 2>&1; then
  cat "$work/make.log" >&2
  fail "make rock failed"
fi
cat "$work/make.log"
rock="$work/out/rock/dropnet-scm-1.src.rock"
[ -f "$rock" ] || fail "no $rock"
grep -q "luarocks --lua-version=5.4 install --local $rock" "$work/make.log" || fail "make rock did not say how to install"

# What the rock holds: the rockspec and the tarball of the working tree.
unzip -Z1 "$rock" | sort > "$work/rock.list"
printf '%s\n' dropnet-scm-1.rockspec dropnet-scm-1.tar.gz | cmp -s - "$work/rock.list" ||
  fail "the rock holds $(tr '\n' ' ' < "$work/rock.list")"
tar -tzf "$work/out/rock/dropnet-scm-1.tar.gz" > "$work/tar.list"
for f in dropnet-scm-1/CMakeLists.txt dropnet-scm-1/rockspec/dropnet-scm-1.rockspec \
         dropnet-scm-1/docs/dropnet.1.in dropnet-scm-1/UNTRACKED-NOTE.txt; do
  grep -qx "$f" "$work/tar.list" || fail "$f is not in the rock's tarball"
done
if grep -q "build-other\|/\.git/" "$work/tar.list"; then fail "the tarball holds ignored files"; fi
if [ -d "$clone/.git" ] && grep -qx dropnet-scm-1/DELETED-NOTE.txt "$work/tar.list"; then
  fail "a file deleted from the work tree is in the tarball"
fi

# Install it from anywhere else: LuaRocks builds the bundled copy.
tree="$work/tree"
mkdir "$work/elsewhere"
cp "$rock" "$work/elsewhere/"
echo "luarocks install dropnet-scm-1.src.rock into $tree"
if ! (cd "$work/elsewhere" && CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) luarocks --lua-version=5.4 \
      --only-server="$work/no-server" install --tree "$tree" dropnet-scm-1.src.rock) > "$work/install.log" 2>&1; then
  cat "$work/install.log" >&2
  fail "luarocks install failed"
fi
grep -q "dropnet scm-1 is now installed" "$work/install.log" || fail "no 'now installed' line in the log"

unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
eval "$(luarocks --lua-version=5.4 --tree "$tree" path)"
cd "$work"
out=$(lua5.4 -e 'local dn = require "dropnet"
  local x = dn.ones(2, 3):requires_grad_()
  local loss = dn.nn.Linear(3, 2)(x):sum()
  loss:backward()
  print(dn.version, x.grad:size(1), x.grad:size(2))' | tr '\t' ' ')
[ "$out" = "$version 2 3" ] || fail "lua5.4 with the installed rock printed '$out'"
out=$(dropnet -e 'print(require("dropnet").ones(2, 2):sum():item())')
[ "$out" = "4.0" ] || fail "the installed dropnet command printed '$out'"

# The man page, where the README's `man -l` command finds it.
rockdir=$(luarocks --lua-version=5.4 --tree "$tree" show --rock-dir dropnet)
man_page="$rockdir/share/man/man1/dropnet.1"
[ -f "$man_page" ] || fail "no man page at $man_page"
head -n 20 "$man_page" | grep -q '^\.TH DROPNET 1' || fail "$man_page is not dropnet's man page"
if command -v man > /dev/null && command -v groff > /dev/null; then
  MANPAGER=cat MANWIDTH=80 man -l "$man_page" 2> /dev/null | grep -q "dropnet" || fail "man -l $man_page shows nothing"
fi
echo "rock check: ok"
