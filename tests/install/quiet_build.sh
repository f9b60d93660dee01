#!/bin/sh
# ctest install/quiet_build: `make run` builds through scripts/quiet-build.sh,
# which keeps the build's output in a log and shows only its warnings, or all
# of it when the build fails. Checked with stand-in builds.
#
#   sh tests/install/quiet_build.sh SOURCE_DIR
set -eu

src=$(cd "$1" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/dropnet-quiet.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() {
  echo "quiet build check: $*" >&2
  exit 1
}

# A build that succeeds: 100 lines of progress and one warning with context.
cat > "$work/ok.sh" <<'SH'
i=1
while [ $i -le 100 ]; do echo "[ $i%] Built target part$i"; i=$((i + 1)); done
echo "runtime/src/x.c:12:7: warning: unused variable 'n' [-Wunused-variable]"
echo "   12 |   int n;"
SH
sh "$src/scripts/quiet-build.sh" "$work/logs/ok.log" sh "$work/ok.sh" > "$work/ok.out" 2>&1 ||
  fail "a successful build returned failure: $(cat "$work/ok.out")"
[ "$(grep -c 'Built target' "$work/ok.out" || true)" = 0 ] || fail "progress lines were shown: $(head -3 "$work/ok.out")"
grep -q "warning: unused variable 'n'" "$work/ok.out" || fail "the warning was not shown"
grep -q "int n;" "$work/ok.out" || fail "the warning's context was not shown"
grep -q "log: $work/logs/ok.log" "$work/ok.out" || fail "the log's path was not named"
[ "$(wc -l < "$work/logs/ok.log")" = 102 ] || fail "the log does not hold the whole output"
[ "$(wc -l < "$work/ok.out")" -le 4 ] || fail "more than the warning was shown: $(cat "$work/ok.out")"

# A build that fails: everything shown, the build's status returned.
cat > "$work/bad.sh" <<'SH'
echo "[ 10%] Building C object runtime/src/x.c.o"
echo "runtime/src/x.c:3:1: error: expected ';' before '}' token"
exit 2
SH
status=0
sh "$src/scripts/quiet-build.sh" "$work/logs/bad.log" sh "$work/bad.sh" > "$work/bad.out" 2>&1 || status=$?
[ "$status" = 2 ] || fail "a failed build returned $status, not its status 2"
grep -q "Building C object" "$work/bad.out" || fail "the failed build's output was not shown"
grep -q "error: expected ';'" "$work/bad.out" || fail "the error was not shown"
grep -q "the build failed" "$work/bad.out" || fail "no word that the build failed"

# make run goes through it.
grep -q 'quiet-build.sh $(BUILD)/build.log $(MAKE) build' "$src/Makefile" || fail "make run does not use quiet-build.sh"
echo "quiet build check: ok"
