#!/bin/sh
# A LuaRocks source rock of the working tree, made offline (`make rock`).
#
#   sh scripts/make-rock.sh SOURCE_DIR OUT_DIR
#
# rockspec/dropnet-scm-1.rockspec names the checkout itself as its source
# (git+file://.), which `luarocks make` never reads but `luarocks pack` tries
# to clone from a temporary directory, and fails. So this script:
#   1. copies the working tree (in a git checkout: the tracked files and the
#      untracked ones git does not ignore, as they are on disk; elsewhere,
#      everything but .git, build*/, runs/ and *.rock) into
#      OUT_DIR/dropnet-scm-1.tar.gz;
#   2. writes OUT_DIR/dropnet-scm-1.rockspec, the rockspec with that tarball
#      (by its absolute file:// URL) as its source;
#   3. runs `luarocks pack` on it: OUT_DIR/dropnet-scm-1.src.rock holds the
#      rockspec and the tarball, and `luarocks install` of it builds the
#      bundled copy (the URL is not read again), with no network.
set -eu

[ $# -eq 2 ] || { echo "usage: sh scripts/make-rock.sh SOURCE_DIR OUT_DIR" >&2; exit 2; }
src=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
name=dropnet-scm-1

work=$(mktemp -d "${TMPDIR:-/tmp}/dropnet-rock.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/$name"

if git -C "$src" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  # Files deleted from the work tree but not from the index are left out.
  (cd "$src" && git ls-files --cached --others --exclude-standard |
    while IFS= read -r f; do [ -e "$f" ] && printf '%s\n' "$f"; done) > "$work/files"
  tar -C "$src" -cf - -T "$work/files" | tar -C "$work/$name" -xf -
else
  tar -C "$src" --exclude=./.git --exclude='./build*' --exclude=./runs --exclude='*.rock' \
      --exclude='*.o' -cf - . | tar -C "$work/$name" -xf -
fi
[ -f "$work/$name/rockspec/$name.rockspec" ] || { echo "make-rock: no rockspec/$name.rockspec in $src" >&2; exit 1; }
tar -C "$work" -czf "$out/$name.tar.gz" "$name"

# The same rockspec, its source block replaced (the block is the only
# `source = {` ... `}` in the file).
awk -v url="file://$out/$name.tar.gz" -v dir="$name" '
  /^source = \{/ { print "source = {"; print "   -- written by `make rock`: the working tree when the rock was made"
                   print "   url = \"" url "\","; print "   dir = \"" dir "\","; print "}"; skip = 1; next }
  skip && /^\}/ { skip = 0; next }
  !skip { print }' "$work/$name/rockspec/$name.rockspec" > "$out/$name.rockspec"
grep -q "^   url = \"file://" "$out/$name.rockspec" || { echo "make-rock: no source block in the rockspec" >&2; exit 1; }

rm -f "$out/$name.src.rock"
if ! (cd "$out" && luarocks --lua-version=5.4 pack "$out/$name.rockspec") > "$work/pack.log" 2>&1; then
  cat "$work/pack.log" >&2
  echo "make-rock: luarocks pack failed" >&2
  exit 1
fi
[ -f "$out/$name.src.rock" ] || { cat "$work/pack.log" >&2; echo "make-rock: luarocks pack wrote no $name.src.rock" >&2; exit 1; }
echo "$out/$name.src.rock"
