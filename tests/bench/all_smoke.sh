#!/bin/sh
# ctest bench/all_smoke: scripts/bench/all.sh --smoke runs through and prints
# every section and summary row, without PyTorch (the peers directory does not
# exist), and leaves no busy neighbour behind. The figures themselves are not
# checked: a smoke run's mean nothing.
#   sh tests/bench/all_smoke.sh SOURCE_DIR DROPNET_BIN
set -eu
src=$1 bin=$2
out=$(mktemp "${TMPDIR:-/tmp}/all_smoke.XXXXXX")
trap 'rm -f "$out"' EXIT
fail() { echo "all_smoke: $*" >&2; echo "--- output:" >&2; cat "$out" >&2; exit 1; }

sh "$src/scripts/bench/all.sh" --smoke --peers /nonexistent/peers --dropnet "$bin" > "$out" 2>&1 ||
  fail "all.sh --smoke failed (exit $?)"

for line in '== machine' 'cpu: ' 'kernel: ' 'dropnet: ' \
  'pytorch: skipped: no torch_mlp_train.py and torch_dropout_bench.py in /nonexistent/peers' \
  '== roofs' 'copy  memcpy ' '== reference MLP training (model a' '== reference MLP against the roofs' \
  'median % of GEMM roof: ' '== reference MLP training beside a busy neighbour' '== small MLP training (model b' \
  '== inference at batch 1000' '== small CNN training (model c' '== small CNN inference at batch 1000' '== dropout fwd, 16M floats' '== dropout fwd+bwd, 16M floats' \
  '== dropout fwd, 128x1024 floats' '== dropout fwd+bwd, 128x1024 floats' '== start-up' '== peak RSS' \
  '== per-epoch spread' '== summary' 'PyTorch skipped: '; do
  grep -qF -- "$line" "$out" || fail "no line with: $line"
done
# every summary row carries a number for dropnet
for row in 'reference MLP training (samples/s)' 'reference MLP, % of GEMM roof' 'reference MLP, busy neighbour' \
  'small MLP training (samples/s)' 'inference, batch 1000 (samples/s)' 'dropout fwd 16M (G elements/s)' \
  'dropout fwd+bwd 16M (G elements/s)' 'dropout fwd 128x1024 (G elements/s)' \
  'dropout fwd+bwd 128x1024 (G elements/s)' 'start-up (ms)' 'peak RSS (MiB)' \
  'epoch spread: reference MLP (model a)' 'epoch spread: small MLP (model b)' 'small CNN training (samples/s)' \
  'small CNN inference, batch 1000 (samples/s)' 'epoch spread: small CNN (model c)'; do
  awk -v row="$row" 'index($0, row) == 1 { print substr($0, 47) }' "$out" | grep -Eq '^ *[0-9][0-9.]*' ||
    fail "summary row without a dropnet figure: $row"
done
# the busy neighbour is gone
pid=$(sed -n 's/^(busy neighbour: yes > \/dev\/null, pid \([0-9]*\),.*/\1/p' "$out")
[ -n "$pid" ] || fail "no busy-neighbour line"
if kill -0 "$pid" 2> /dev/null && [ "$(cat /proc/"$pid"/comm 2> /dev/null)" = yes ]; then
  kill "$pid"
  fail "the busy neighbour (pid $pid) was left running"
fi
# bad options are refused
if sh "$src/scripts/bench/all.sh" --pairs 0 --dropnet "$bin" > /dev/null 2>&1; then fail "--pairs 0 was accepted"; fi
if sh "$src/scripts/bench/all.sh" --bogus > /dev/null 2>&1; then fail "--bogus was accepted"; fi
echo "all_smoke: ok"
