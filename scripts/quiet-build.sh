#!/bin/sh
# Runs a build with its output in a log file (`make run`): on success prints
# only the warnings found in it (with a few lines of context), on failure all
# of it, and exits with the build's status.
#
#   sh scripts/quiet-build.sh LOG COMMAND [ARG...]
set -u

[ $# -ge 2 ] || { echo "usage: sh scripts/quiet-build.sh LOG COMMAND [ARG...]" >&2; exit 2; }
log=$1
shift
mkdir -p "$(dirname "$log")"
echo "building (the first build takes a few minutes; log: $log)"
"$@" > "$log" 2>&1
status=$?
if [ "$status" -ne 0 ]; then
  cat "$log" >&2
  echo "the build failed (exit status $status; log: $log)" >&2
  exit "$status"
fi
# GCC/Clang "file:line: warning:", CMake "CMake Warning", make's "warning:" lines.
grep -E -A4 'warning:|CMake Warning|CMake Deprecation Warning' "$log" || true
exit 0
