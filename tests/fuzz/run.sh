#!/bin/sh
# Runs the libFuzzer harnesses of a DN_FUZZ build one after another (one job
# each, never two at once) and fails if any of them finds something.
#
#   tests/fuzz/run.sh BUILD_DIR [HARNESS...]      (default: all five)
#
# FUZZ_SECONDS  time per harness (default 60)
# FUZZ_ARGS     more libFuzzer flags, e.g. "-runs=100000" or "-max_len=65536"
# UBSAN_OPTIONS / ASAN_OPTIONS pass through, e.g. UBSAN_OPTIONS=suppressions=FILE
#               to fuzz past a known report that is not fixed yet.
#
# Seeds are regenerated into BUILD_DIR/seeds/<format> by make_corpus; what a
# harness discovers is kept in BUILD_DIR/corpus/<harness> (read again next
# time); findings land in BUILD_DIR/findings/<harness>/, logs in BUILD_DIR/logs/.
set -eu

if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [HARNESS...]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
shift
source_dir=$(cd "$(dirname "$0")" && pwd)
seconds=${FUZZ_SECONDS:-60}
harnesses=${*:-fuzz_idx fuzz_idx_roundtrip fuzz_csv fuzz_safetensors fuzz_safetensors_roundtrip}

# The harnesses write their inputs to files: a private directory on tmpfs
# when there is one, removed at the end whatever happens.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  scratch=$(mktemp -d /dev/shm/dropnet-fuzz-run.XXXXXX)
else
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/dropnet-fuzz-run.XXXXXX")
fi
trap 'rm -rf "$scratch"' EXIT
# A background job ignores SIGINT in sh: pass an interrupt on to the harness.
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" || true; fi; exit 130' INT TERM
export DN_FUZZ_TMPDIR="$scratch"

"$build/tests/fuzz/make_corpus" "$build/seeds"
mkdir -p "$build/logs"

failed=""
for name in $harnesses; do
  case $name in
    fuzz_idx | fuzz_idx_roundtrip) format=idx ;;
    fuzz_csv) format=csv ;;
    fuzz_safetensors | fuzz_safetensors_roundtrip) format=safetensors ;;
    *) echo "run.sh: unknown harness $name" >&2; exit 2 ;;
  esac
  dict=""
  [ -f "$source_dir/$format.dict" ] && dict="-dict=$source_dir/$format.dict"
  mkdir -p "$build/corpus/$name" "$build/findings/$name"
  log="$build/logs/$name.log"
  echo "== $name: ${seconds}s, corpus $build/corpus/$name"
  # -timeout: an input taking 10 s is a hang (a finding); -jobs/-workers: none, one process.
  # shellcheck disable=SC2086
  "$build/tests/fuzz/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/findings/$name/" $dict ${FUZZ_ARGS:-} \
    "$build/corpus/$name" "$build/seeds/$format" >"$log" 2>&1 &
  pid=$!
  status=0
  wait "$pid" || status=$?
  pid=""
  if [ "$status" -eq 0 ]; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" | tr '\n' ' '
    echo
  else
    echo "!! $name found something (log: $log):"
    pattern='ERROR|runtime error|dropnet fuzz finding|SUMMARY|Test unit written'
    if grep -qE "$pattern" "$log"; then grep -E "$pattern" "$log" | head -n 20; else tail -n 5 "$log"; fi
    failed="$failed $name"
  fi
done

if [ -n "$failed" ]; then
  echo "fuzz: findings in:$failed (inputs in $build/findings/<harness>/)" >&2
  exit 1
fi
echo "fuzz: no findings"
